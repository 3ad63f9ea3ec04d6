//! The integrity check: what the store must hold, kept outside sled's files, and the
//! comparison with what sled hands back at open.
//!
//! Every tracked tree (windows, outbox, invitations, outcomes, identities, aliases, and
//! the consent trees: consent, free_entry_point, predicted_costs, reported_pricing,
//! reached) has a tally: its number of entries and the wrapping sum of a 64-bit hash of each entry (key and value). The sum does
//! not depend on the order of writes, so a write updates it in O(1) from the old and new
//! value (which sled returns), with two atomic additions and no lock of its own.
//!
//! sled recovers a damaged log by cutting it at the first bad record and replaying what
//! comes before, which is a consistent earlier state: a count or checksum kept *inside*
//! sled would be cut back with the data and would agree with it. The reference is
//! therefore kept outside sled's files:
//!
//! - `lipachat.integrity`, a small text file rewritten (atomically, by rename) at open and
//!   at clean shutdown. After a clean shutdown it holds every tree's tally and the
//!   checkpoint mark: the store must then hold exactly that.
//! - `lipachat.durable`, 16 bytes rewritten after each group-commit flush in durable mode:
//!   the checkpoint mark that flush made durable. The committer writes an increasing mark
//!   into sled just before each flush, so after an unclean shutdown the mark sled recovers
//!   must be at least the one in this file; a smaller one means sled lost writes it had
//!   acknowledged as durable.
//!
//! A clean shutdown also writes its record into sled (`integrity_seal`) as the last write
//! before the final flush. sled recovers a prefix of its log, so when the seal it hands
//! back equals the file, everything written before it is there: the trees other than
//! windows (which is read in full at every open anyway, for the index) need no scan. When
//! it differs, or after an unclean shutdown, or when asked, every tree is scanned.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;

use super::presence::KeyPresence;

/// The file holding the reference tallies and the shutdown state.
pub const INTEGRITY_FILE: &str = "lipachat.integrity";
/// The file holding the last checkpoint mark made durable.
pub const DURABLE_FILE: &str = "lipachat.durable";
/// The sled key (default tree) of the checkpoint mark.
pub const MARK_KEY: &[u8] = b"integrity_mark";
/// The sled key (default tree) of the seal: the integrity record written at a clean
/// shutdown, as the last write before the final flush.
pub const SEAL_KEY: &[u8] = b"integrity_seal";

const HEADER: &str = "lipachat integrity 1";
const SEED: u64 = 0x6c69_7061_6368_6174; // "lipachat"

/// The tracked trees, in the order they are reported.
pub const TREES: [&str; TREE_COUNT] = [
    "windows",
    "outbox",
    "invitations",
    "outcomes",
    "identities",
    "aliases",
    "consent",
    "free_entry_point",
    "predicted_costs",
    "reported_pricing",
    "reached",
    "back_off",
];

/// How many trees are tracked.
pub const TREE_COUNT: usize = 12;

/// How many trees every integrity record names: the first ones of [`TREES`], tracked
/// since the integrity check exists. A record written before the later ones were added
/// (`identities`, `aliases`, then the consent trees, then `back_off`) lacks their lines; those trees then
/// have no reference.
const TREES_IN_EVERY_RECORD: usize = 4;

/// murmur3's 64-bit finaliser: every input bit affects every output bit.
fn avalanche(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

fn absorb(mut state: u64, bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        state = avalanche(state ^ u64::from_le_bytes(word));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        state = avalanche(state ^ u64::from_le_bytes(word));
    }
    state
}

/// The hash of one entry. It is persisted (as part of the sums), so it must never change:
/// a unit test pins its value.
pub fn entry_hash(key: &[u8], value: &[u8]) -> u64 {
    let lengths = ((key.len() as u64) << 32) ^ value.len() as u64;
    let state = avalanche(SEED ^ lengths);
    avalanche(absorb(absorb(state, key), value))
}

/// One tree's number of entries and checksum (the wrapping sum of its entries' hashes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct TreeTally {
    /// How many entries the tree holds.
    pub entries: u64,
    /// The wrapping sum of a hash of each entry (key and value) over its entries.
    #[serde(serialize_with = "hex_checksum")]
    pub checksum: u64,
}

fn hex_checksum<S: serde::Serializer>(checksum: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format!("{checksum:016x}"))
}

impl TreeTally {
    /// Adds an entry.
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        self.entries = self.entries.wrapping_add(1);
        self.checksum = self.checksum.wrapping_add(entry_hash(key, value));
    }
}

/// The live tally of one tree, updated by every write.
#[derive(Debug, Default)]
pub struct Tally {
    entries: AtomicU64,
    checksum: AtomicU64,
}

impl Tally {
    /// A tally starting from what a scan found.
    pub fn starting_at(found: TreeTally) -> Self {
        Self {
            entries: AtomicU64::new(found.entries),
            checksum: AtomicU64::new(found.checksum),
        }
    }

    /// Records that `key` went from `old` to `new` (`None`: absent).
    pub fn changed(&self, key: &[u8], old: Option<&[u8]>, new: Option<&[u8]>) {
        let hash = |value: Option<&[u8]>| value.map_or(0, |value| entry_hash(key, value));
        let delta = hash(new).wrapping_sub(hash(old));
        match (old, new) {
            (None, Some(_)) => {
                self.entries.fetch_add(1, Ordering::Relaxed);
            }
            (Some(_), None) => {
                self.entries.fetch_sub(1, Ordering::Relaxed);
            }
            // An overwrite (the common write) leaves the count alone.
            _ => {}
        }
        if delta != 0 {
            self.checksum.fetch_add(delta, Ordering::Relaxed);
        }
    }

    /// The current value. Exact when no write is in progress (at shutdown).
    pub fn snapshot(&self) -> TreeTally {
        TreeTally {
            entries: self.entries.load(Ordering::Relaxed),
            checksum: self.checksum.load(Ordering::Relaxed),
        }
    }
}

/// A sled tree whose every write keeps its [`Tally`].
///
/// Writes go through [`TrackedTree::insert`] and [`TrackedTree::remove`], which take the
/// old value from sled's answer; the tree itself is not handed out. A new kind of write
/// (a sled transaction or batch) must update the tally the same way, with
/// [`Tally::changed`] for each key it changed, once it has committed; a write that does
/// not makes the next open after a clean shutdown report the tree as damaged.
pub struct TrackedTree {
    tree: sled::Tree,
    tally: Tally,
    uncertain: std::sync::Arc<AtomicBool>,
    /// The keys it may hold, for a tree whose lookups mostly miss (the outcomes).
    presence: Option<KeyPresence>,
}

impl TrackedTree {
    /// Wraps `tree`, whose content a scan found to be `found`. `uncertain` is shared by the
    /// store's trees: a failed write sets it, since sled may or may not have applied it.
    pub fn new(tree: sled::Tree, found: TreeTally, uncertain: std::sync::Arc<AtomicBool>) -> Self {
        Self {
            tree,
            tally: Tally::starting_at(found),
            uncertain,
            presence: None,
        }
    }

    /// Keeps the set of keys the tree may hold in memory, so [`TrackedTree::may_hold`]
    /// answers most misses without sled.
    pub fn with_presence(mut self) -> Self {
        self.presence = Some(KeyPresence::default());
        self
    }

    /// Whether the tree may hold `key`: `false` only when it does not (always `true`
    /// without [`TrackedTree::with_presence`]). The first call scans the tree's keys.
    pub fn may_hold(&self, key: &[u8]) -> bool {
        let Some(presence) = &self.presence else {
            return true;
        };
        presence.may_hold(key, |add| {
            for entry in self.tree.iter().keys() {
                add(&entry?);
            }
            Ok::<(), sled::Error>(())
        })
    }

    /// Tells the key set that `key` is about to be written by a transaction or batch
    /// (reported with [`TrackedTree::committed`] once it is done).
    pub fn will_write(&self, key: &[u8]) {
        if let Some(presence) = &self.presence {
            presence.note(key);
        }
    }

    /// After a write: the key set takes a key written, and is checked for size after a
    /// removal.
    fn written(&self, key: &[u8], new: Option<&[u8]>) {
        let Some(presence) = &self.presence else {
            return;
        };
        if new.is_some() {
            presence.note(key);
        } else {
            presence.shrink_to(self.tally.entries.load(Ordering::Relaxed));
        }
    }

    fn note<T>(&self, result: Result<T, sled::Error>) -> Result<T, sled::Error> {
        if result.is_err() {
            self.uncertain.store(true, Ordering::Relaxed);
        }
        result
    }

    /// Inserts, returning the old value, like [`sled::Tree::insert`].
    pub fn insert(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<sled::IVec>,
    ) -> Result<Option<sled::IVec>, sled::Error> {
        let key = key.as_ref();
        let value = value.into();
        self.will_write(key);
        let old = self.note(self.tree.insert(key, value.clone()))?;
        self.tally
            .changed(key, old.as_deref(), Some(value.as_ref()));
        self.written(key, Some(value.as_ref()));
        Ok(old)
    }

    /// Removes, returning the old value, like [`sled::Tree::remove`].
    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<Option<sled::IVec>, sled::Error> {
        let key = key.as_ref();
        let old = self.note(self.tree.remove(key))?;
        if old.is_some() {
            self.tally.changed(key, old.as_deref(), None);
            self.written(key, None);
        }
        Ok(old)
    }

    /// The value of `key`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<sled::IVec>, sled::Error> {
        self.tree.get(key)
    }

    /// The entries whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> sled::Iter {
        self.tree.scan_prefix(prefix)
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> sled::Iter {
        self.tree.iter()
    }

    /// Replaces `key`'s value `old` by `new` (removes it for `None`) only if it still is
    /// `old`, like [`sled::Tree::compare_and_swap`]; the tally follows a swap that happened.
    pub fn compare_and_swap(
        &self,
        key: impl AsRef<[u8]>,
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Result<(), sled::CompareAndSwapError>, sled::Error> {
        let key = key.as_ref();
        if new.is_some() {
            self.will_write(key);
        }
        let swapped = self.note(self.tree.compare_and_swap(key, old, new))?;
        if swapped.is_ok() && old != new {
            self.tally.changed(key, old, new);
            self.written(key, new);
        }
        Ok(swapped)
    }

    /// The entries from `range`, in key order.
    pub fn range<K: AsRef<[u8]>, R: std::ops::RangeBounds<K>>(&self, range: R) -> sled::Iter {
        self.tree.range(range)
    }

    /// Whether the tree holds no entry, by its tally: no sled read. A write not yet
    /// reported to the tally is missed, as a read made just before it would miss it.
    /// After a failed write (which sled may have applied without the tally knowing), the
    /// tally is not trusted: `false` until the store is opened again.
    pub fn holds_nothing(&self) -> bool {
        self.tally.entries.load(Ordering::Relaxed) == 0 && !self.uncertain.load(Ordering::Relaxed)
    }

    /// How many entries the tree holds.
    pub fn entry_count(&self) -> usize {
        self.tree.len()
    }

    /// The sled tree, for a transaction over several trees (or a batch): the caller
    /// announces each key it will write with [`TrackedTree::will_write`], reports each
    /// key the committed write changed with [`TrackedTree::committed`], and a failed one
    /// with [`TrackedTree::failed`].
    pub fn for_transaction(&self) -> &sled::Tree {
        &self.tree
    }

    /// Reports a change a committed transaction made to `key` (`None`: absent).
    pub fn committed(&self, key: &[u8], old: Option<&[u8]>, new: Option<&[u8]>) {
        if old != new {
            self.tally.changed(key, old, new);
            self.written(key, new);
        }
    }

    /// Reports a transaction that failed: sled may or may not have applied it.
    pub fn failed(&self) {
        self.uncertain.store(true, Ordering::Relaxed);
    }

    /// The tree's tally now.
    pub fn tally(&self) -> TreeTally {
        self.tally.snapshot()
    }
}

/// Reads every entry of `tree` and tallies it.
pub fn scan(tree: &sled::Tree) -> Result<TreeTally, sled::Error> {
    let mut tally = TreeTally::default();
    for entry in tree.iter() {
        let (key, value) = entry?;
        tally.add(&key, &value);
    }
    Ok(tally)
}

/// How the store was last closed, as its integrity file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LastShutdown {
    /// Closed cleanly: the store must hold exactly what the integrity file lists.
    Clean,
    /// Not closed (the process died, or the machine stopped): only the durable
    /// checkpoint can be checked.
    Unclean,
    /// The store has no integrity record yet: it was just created, or made by a version of
    /// lipachat before the integrity check (it is adopted as found).
    NoRecord,
    /// The store holds records but its integrity record (`lipachat.integrity`) is missing
    /// or unreadable: what it must hold is unknown, so it is reported damaged until
    /// accepted.
    RecordLost,
}

/// One tree's part of an [`IntegrityReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TreeReport {
    /// The tree's name (one of the store's eleven trees).
    pub tree: &'static str,
    /// What the tree must hold (after a clean shutdown); `None` when there is no reference.
    pub expected: Option<TreeTally>,
    /// What it holds.
    pub found: TreeTally,
}

impl TreeReport {
    /// Whether the tree holds what it must (or there is nothing to compare with).
    pub fn is_intact(&self) -> bool {
        self.expected.is_none_or(|expected| expected == self.found)
    }

    fn problem(&self) -> Option<String> {
        let expected = self.expected?;
        if expected == self.found {
            return None;
        }
        let (want, have) = (expected.entries, self.found.entries);
        let count = match want.cmp(&have) {
            std::cmp::Ordering::Greater => format!(
                "expected {want} entries, found {have} ({} missing)",
                want - have
            ),
            std::cmp::Ordering::Less => format!(
                "expected {want} entries, found {have} ({} unexpected)",
                have - want
            ),
            std::cmp::Ordering::Equal => {
                return Some(format!(
                    "{}: {have} entries as expected, but the checksum differs (some content changed)",
                    self.tree
                ));
            }
        };
        Some(format!("{}: {count}, checksum differs", self.tree))
    }
}

/// The durable checkpoint part of an [`IntegrityReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CheckpointReport {
    /// The mark the last flush before the shutdown made durable (the store must hold at
    /// least this one).
    pub durable: u64,
    /// The mark the store holds.
    pub found: u64,
}

/// What the integrity check at open found: per tree, what it must hold and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IntegrityReport {
    /// The database directory.
    pub path: PathBuf,
    /// How the store was last closed.
    pub last_shutdown: LastShutdown,
    /// Each tracked tree.
    pub trees: Vec<TreeReport>,
    /// The checkpoint check, when a checkpoint applies (after an unclean shutdown, or a
    /// clean one, where the mark must be the one sealed).
    pub checkpoint: Option<CheckpointReport>,
    /// Where the files were copied before sled's recovery touched them, if they were.
    pub backup: Option<PathBuf>,
    /// Whether every tree was read to find its tally. After a clean shutdown whose seal
    /// sled handed back intact, only the windows tree is read, and the others' tallies
    /// are the sealed ones.
    pub full_scan: bool,
}

impl IntegrityReport {
    /// Whether nothing is missing or different.
    pub fn is_intact(&self) -> bool {
        self.problems().is_empty()
    }

    /// Each thing found wrong, in words (empty when intact).
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self.trees.iter().filter_map(TreeReport::problem).collect();
        if self.last_shutdown == LastShutdown::RecordLost {
            problems.push(format!(
                "its integrity record {INTEGRITY_FILE} is missing or unreadable, so what it must hold is unknown (it holds {} entries)",
                self.trees.iter().map(|tree| tree.found.entries).sum::<u64>()
            ));
        }
        if let Some(checkpoint) = self.checkpoint
            && checkpoint_lost(self.last_shutdown, checkpoint)
        {
            problems.push(format!(
                "writes acknowledged as durable are missing: the last durable checkpoint was {}, the store holds only {}",
                checkpoint.durable, checkpoint.found
            ));
        }
        problems
    }
}

fn checkpoint_lost(last_shutdown: LastShutdown, checkpoint: CheckpointReport) -> bool {
    match last_shutdown {
        LastShutdown::Clean => checkpoint.found != checkpoint.durable,
        _ => checkpoint.found < checkpoint.durable,
    }
}

impl fmt::Display for IntegrityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let problems = self.problems();
        if problems.is_empty() {
            write!(f, "store {} is intact", self.path.display())?;
        } else {
            write!(
                f,
                "store {} is damaged: {}",
                self.path.display(),
                problems.join("; ")
            )?;
        }
        if let Some(backup) = &self.backup {
            write!(
                f,
                "; the files as they were before recovery are in {}",
                backup.display()
            )?;
        }
        Ok(())
    }
}

/// The content of `lipachat.integrity`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrityRecord {
    /// Whether the store was closed cleanly (the tallies are then the reference).
    pub clean: bool,
    /// The checkpoint mark at the time of writing.
    pub mark: u64,
    /// Each tracked tree's tally, in [`TREES`] order; `None` for a tree the record does
    /// not name (one written by a version that did not track it).
    pub trees: [Option<TreeTally>; TREE_COUNT],
}

impl IntegrityRecord {
    /// The record as written to the file (and, at a clean shutdown, into sled).
    pub fn render(&self) -> String {
        let mut text = format!(
            "{HEADER}\nshutdown {}\nmark {}\n",
            if self.clean { "clean" } else { "open" },
            self.mark
        );
        for (name, tally) in TREES.iter().zip(&self.trees) {
            if let Some(tally) = tally {
                text.push_str(&format!(
                    "tree {name} {} {:016x}\n",
                    tally.entries, tally.checksum
                ));
            }
        }
        let check = entry_hash(INTEGRITY_FILE.as_bytes(), text.as_bytes());
        text.push_str(&format!("check {check:016x}\n"));
        text
    }

    fn parse(text: &str) -> Result<Self, String> {
        let body_end = text
            .rfind("check ")
            .ok_or_else(|| "no check line".to_owned())?;
        let (body, check) = text.split_at(body_end);
        let check = check
            .trim()
            .strip_prefix("check ")
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .ok_or_else(|| "unreadable check line".to_owned())?;
        if check != entry_hash(INTEGRITY_FILE.as_bytes(), body.as_bytes()) {
            return Err("its check line does not match its content".to_owned());
        }
        let mut lines = body.lines();
        if lines.next() != Some(HEADER) {
            return Err(format!("the first line is not {HEADER:?}"));
        }
        let clean = match lines.next() {
            Some("shutdown clean") => true,
            Some("shutdown open") => false,
            other => return Err(format!("unreadable shutdown line {other:?}")),
        };
        let mark = lines
            .next()
            .and_then(|line| line.strip_prefix("mark "))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| "unreadable mark line".to_owned())?;
        let mut trees = [None; TREE_COUNT];
        let mut lines = lines.peekable();
        for (i, (name, slot)) in TREES.iter().zip(&mut trees).enumerate() {
            let named = format!("tree {name} ");
            let line = match lines.peek() {
                Some(line) if line.starts_with(&named) => lines.next().unwrap_or_default(),
                // A tree added after the record was written: no reference for it.
                _ if i >= TREES_IN_EVERY_RECORD => continue,
                other => {
                    return Err(format!(
                        "unreadable line for tree {name}: {:?}",
                        other.copied().unwrap_or_default()
                    ));
                }
            };
            let mut words = line[named.len()..].split(' ');
            let parsed = (|| {
                let entries = words.next()?.parse().ok()?;
                let checksum = u64::from_str_radix(words.next()?, 16).ok()?;
                words
                    .next()
                    .is_none()
                    .then_some(TreeTally { entries, checksum })
            })();
            *slot =
                Some(parsed.ok_or_else(|| format!("unreadable line for tree {name}: {line:?}"))?);
        }
        if let Some(extra) = lines.next() {
            return Err(format!("unexpected line {extra:?}"));
        }
        Ok(Self { clean, mark, trees })
    }

    /// Reads the record of the store at `dir`: `Ok(None)` when there is none.
    pub fn read(dir: &Path) -> Result<Option<Self>, (PathBuf, String)> {
        let path = dir.join(INTEGRITY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text).map(Some).map_err(|e| (path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err((path, e.to_string())),
        }
    }

    /// Replaces the record of the store at `dir`, durably: written to a temporary file,
    /// synced, renamed over the old one, and the directory synced.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let path = dir.join(INTEGRITY_FILE);
        let temporary = dir.join(format!("{INTEGRITY_FILE}.new"));
        let mut file = File::create(&temporary)?;
        file.write_all(self.render().as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temporary, &path)?;
        File::open(dir)?.sync_all()
    }
}

/// `lipachat.durable`: the last checkpoint mark a flush made durable.
pub struct DurableMark {
    file: File,
}

impl DurableMark {
    fn encode(mark: u64) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&mark.to_le_bytes());
        bytes[8..].copy_from_slice(
            &entry_hash(DURABLE_FILE.as_bytes(), &mark.to_le_bytes()).to_le_bytes(),
        );
        bytes
    }

    /// The mark recorded in the store at `dir`: `None` when there is none or it is
    /// unreadable (a torn write after a power loss), which only weakens the check.
    pub fn read(dir: &Path) -> Option<u64> {
        let bytes = std::fs::read(dir.join(DURABLE_FILE)).ok()?;
        let mark = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        (bytes.get(..16)? == Self::encode(mark)).then_some(mark)
    }

    /// Opens (or creates) the file and records `mark`, synced.
    pub fn create(dir: &Path, mark: u64) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(dir.join(DURABLE_FILE))?;
        file.write_all_at(&Self::encode(mark), 0)?;
        file.sync_all()?;
        Ok(Self { file })
    }

    /// Records `mark`, which a completed flush made durable. Not synced: it is written only
    /// after sled's data is on disk, so it never claims more than is there; a power loss
    /// can leave it older, which weakens the check without making it wrong.
    pub fn record(&self, mark: u64) -> std::io::Result<()> {
        self.file.write_all_at(&Self::encode(mark), 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The empty-tree shortcut trusts the tally only while no write has failed: a failed
    /// write may be in sled without the tally knowing.
    #[test]
    fn an_empty_tally_is_not_trusted_after_a_failed_write() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let uncertain = std::sync::Arc::new(AtomicBool::new(false));
        let tree = TrackedTree::new(
            db.open_tree("t").unwrap(),
            TreeTally::default(),
            std::sync::Arc::clone(&uncertain),
        );
        assert!(tree.holds_nothing());
        tree.insert(b"k", b"v".to_vec()).unwrap();
        assert!(!tree.holds_nothing());
        tree.remove(b"k").unwrap();
        assert!(tree.holds_nothing());
        tree.failed();
        assert!(!tree.holds_nothing(), "a failed write may have landed");
    }

    #[test]
    fn the_entry_hash_never_changes() {
        // Persisted sums depend on it: changing it makes every store look damaged.
        assert_eq!(entry_hash(b"", b""), 0xa000_9baf_6241_f9a0);
        assert_eq!(entry_hash(b"key", b"value"), 0x507f_0828_ab3a_1e85);
        assert_ne!(entry_hash(b"ke", b"yvalue"), entry_hash(b"key", b"value"));
        assert_ne!(entry_hash(b"key", b"value\0"), entry_hash(b"key", b"value"));
    }

    #[test]
    fn a_tally_is_independent_of_write_order() {
        let (a, b) = (Tally::default(), Tally::default());
        a.changed(b"x", None, Some(b"1"));
        a.changed(b"y", None, Some(b"2"));
        a.changed(b"x", Some(b"1"), Some(b"3"));
        b.changed(b"y", None, Some(b"2"));
        b.changed(b"x", None, Some(b"3"));
        assert_eq!(a.snapshot(), b.snapshot());
        let mut scanned = TreeTally::default();
        scanned.add(b"x", b"3");
        scanned.add(b"y", b"2");
        assert_eq!(a.snapshot(), scanned);
        a.changed(b"y", Some(b"2"), None);
        assert_eq!(a.snapshot().entries, 1);
    }

    #[test]
    fn the_record_round_trips_and_refuses_edits() {
        let record = IntegrityRecord {
            clean: true,
            mark: 42,
            trees: [
                Some(TreeTally {
                    entries: 300,
                    checksum: 0xdead_beef,
                }),
                Some(TreeTally::default()),
                Some(TreeTally::default()),
                Some(TreeTally {
                    entries: 1,
                    checksum: u64::MAX,
                }),
                Some(TreeTally::default()),
                Some(TreeTally {
                    entries: 2,
                    checksum: 7,
                }),
                Some(TreeTally {
                    entries: 3,
                    checksum: 11,
                }),
                Some(TreeTally::default()),
                Some(TreeTally::default()),
                Some(TreeTally::default()),
                Some(TreeTally {
                    entries: 4,
                    checksum: 13,
                }),
                Some(TreeTally {
                    entries: 5,
                    checksum: 17,
                }),
            ],
        };
        let text = record.render();
        assert_eq!(IntegrityRecord::parse(&text), Ok(record.clone()));
        let edited = text.replace("tree windows 300", "tree windows 301");
        assert!(IntegrityRecord::parse(&edited).is_err_and(|e| e.contains("does not match")));
        assert!(IntegrityRecord::parse("").is_err());
    }

    /// A record written before the identity trees were tracked (this text is what that
    /// version wrote) still reads: its four trees have their reference, the new ones none.
    #[test]
    fn a_record_of_the_previous_release_reads_without_the_new_trees() {
        let body = "lipachat integrity 1\nshutdown clean\nmark 9\ntree windows 2 00000000000000aa\ntree outbox 0 0000000000000000\ntree invitations 0 0000000000000000\ntree outcomes 1 00000000000000bb\n";
        let check = entry_hash(INTEGRITY_FILE.as_bytes(), body.as_bytes());
        let text = format!("{body}check {check:016x}\n");
        let record = IntegrityRecord::parse(&text).unwrap();
        assert!(record.clean);
        assert_eq!(record.mark, 9);
        assert_eq!(
            record.trees[0],
            Some(TreeTally {
                entries: 2,
                checksum: 0xaa
            })
        );
        assert_eq!(record.trees[3].map(|t| t.entries), Some(1));
        assert_eq!(record.trees[4..], [None; TREE_COUNT - 4]);
        // Rendered again, it is the same text: the missing trees stay unnamed.
        assert_eq!(record.render(), text);
        // A record must still name the first four trees.
        let short =
            "lipachat integrity 1\nshutdown clean\nmark 9\ntree windows 2 00000000000000aa\n";
        let check = entry_hash(INTEGRITY_FILE.as_bytes(), short.as_bytes());
        assert!(IntegrityRecord::parse(&format!("{short}check {check:016x}\n")).is_err());
    }

    /// A record written before the customer back-off tree was tracked (eleven trees)
    /// still reads: `back_off` has no reference, the others keep theirs.
    #[test]
    fn a_record_without_the_back_off_tree_reads() {
        let mut record = IntegrityRecord {
            clean: true,
            mark: 5,
            trees: [Some(TreeTally::default()); TREE_COUNT],
        };
        record.trees[TREE_COUNT - 1] = None;
        let text = record.render();
        assert!(!text.contains("back_off"), "{text}");
        let read = IntegrityRecord::parse(&text).unwrap();
        assert_eq!(read.trees[TREE_COUNT - 1], None);
        assert_eq!(read.trees[TREE_COUNT - 2], Some(TreeTally::default()));
        assert_eq!(read.render(), text);
    }

    /// A record written before the consent trees were tracked (six trees) still reads:
    /// the consent trees have no reference.
    #[test]
    fn a_record_without_the_consent_trees_reads() {
        let body = "lipachat integrity 1\nshutdown clean\nmark 3\ntree windows 2 00000000000000aa\ntree outbox 0 0000000000000000\ntree invitations 0 0000000000000000\ntree outcomes 1 00000000000000bb\ntree identities 1 0000000000000001\ntree aliases 0 0000000000000000\n";
        let check = entry_hash(INTEGRITY_FILE.as_bytes(), body.as_bytes());
        let text = format!("{body}check {check:016x}\n");
        let record = IntegrityRecord::parse(&text).unwrap();
        assert_eq!(record.trees[4].map(|t| t.entries), Some(1));
        assert_eq!(record.trees[6..], [None; TREE_COUNT - 6]);
        assert_eq!(record.render(), text);
    }
}
