//! The `outcomes` tree, with an in-memory count of the keys it may hold, so that a lookup
//! of a `messageId` the store has never seen (every first send under a caller's own id)
//! reads nothing from sled.
//!
//! The count is per 64-bit slot of the key (a hash keyed at random when the store
//! opens), built by one scan of the tree at open and kept in step by every write, all of
//! which go through [`OutcomeTree`]: a write that may create a key counts it *before*
//! it goes into sled, and a key's count is taken back *after* sled says the key left
//! (removed) or already held a value (replaced: the key was counted by the write that
//! created it). So at every instant a slot's count is at least the number of its keys
//! in sled, whatever order concurrent writers run in, and "absent" is exact; "present"
//! may not be (two keys sharing a slot, or a write that failed, whose count is kept
//! since sled may or may not have applied it), and then the lookup reads sled as before.
//! sled holds a lock on the directory, so this process is the tree's only writer while
//! the store is open; what another process (or a killed one) left is read by the scan at
//! the next open.
//!
//! Memory: about 16 to 40 bytes per outcome stored (a `u64` slot and its count in a hash
//! map), expired outcomes included until the sweep removes them.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::integrity::{TrackedTree, TreeTally};

/// Shards of the count, so that concurrent sends rarely wait on one lock.
const SHARDS: usize = 16;

/// How many stored keys may have each slot: never fewer than sled holds.
struct KeyCounts {
    /// Keys the slot of a key, at random per open.
    hasher: RandomState,
    shards: [Mutex<HashMap<u64, u64>>; SHARDS],
}

impl KeyCounts {
    fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            shards: std::array::from_fn(|_| Mutex::default()),
        }
    }

    fn slot(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn shard(&self, slot: u64) -> MutexGuard<'_, HashMap<u64, u64>> {
        // The top bits pick the shard; the map hashes the whole slot again.
        let index = usize::try_from(slot >> 60).unwrap_or(0) % SHARDS;
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts `key` once more: before a write that may create it.
    fn add(&self, key: &[u8]) {
        let slot = self.slot(key);
        *self.shard(slot).entry(slot).or_insert(0) += 1;
    }

    /// Takes back one count of `key`: after it left sled, or after a write that did not
    /// create it.
    fn take_back(&self, key: &[u8]) {
        let slot = self.slot(key);
        let mut shard = self.shard(slot);
        if let Some(count) = shard.get_mut(&slot) {
            *count -= 1;
            if *count == 0 {
                shard.remove(&slot);
            }
        }
    }

    /// Whether sled may hold `key`: `false` only when it does not.
    fn may_hold(&self, key: &[u8]) -> bool {
        let slot = self.slot(key);
        self.shard(slot).contains_key(&slot)
    }

    /// Slots counted (for tests).
    #[cfg(test)]
    fn slots(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

/// The `outcomes` tree: a [`TrackedTree`] whose every write also keeps the count of the
/// keys it may hold (see the module's documentation). The tree itself is not handed out
/// for writing except through [`OutcomeTree::for_transaction`], which counts the keys a
/// transaction will insert first.
pub(super) struct OutcomeTree {
    tree: TrackedTree,
    counts: KeyCounts,
}

impl OutcomeTree {
    /// Wraps `tree`, counting the keys it holds now (one scan).
    pub(super) fn new(tree: TrackedTree) -> Result<Self, sled::Error> {
        let counts = KeyCounts::new();
        for key in tree.iter().keys() {
            counts.add(&key?);
        }
        Ok(Self { tree, counts })
    }

    /// Whether the tree may hold `key`: `false` only when it does not, so a lookup need
    /// not read sled.
    pub(super) fn may_hold(&self, key: &[u8]) -> bool {
        self.counts.may_hold(key)
    }

    /// The value of `key` (read from sled).
    pub(super) fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<sled::IVec>, sled::Error> {
        self.tree.get(key)
    }

    /// Inserts, returning the old value, like [`sled::Tree::insert`].
    pub(super) fn insert(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<sled::IVec>,
    ) -> Result<Option<sled::IVec>, sled::Error> {
        let key = key.as_ref();
        self.counts.add(key);
        // A failed write keeps its count: sled may have applied it.
        let old = self.tree.insert(key, value)?;
        if old.is_some() {
            self.counts.take_back(key);
        }
        Ok(old)
    }

    /// Removes, returning the old value, like [`sled::Tree::remove`].
    pub(super) fn remove(&self, key: impl AsRef<[u8]>) -> Result<Option<sled::IVec>, sled::Error> {
        let key = key.as_ref();
        let old = self.tree.remove(key)?;
        if old.is_some() {
            self.counts.take_back(key);
        }
        Ok(old)
    }

    /// Swaps `key`'s value from `old` to `new` (`None`: absent) if it still is `old`,
    /// as [`TrackedTree::compare_and_swap`] does, counting `new` first.
    pub(super) fn compare_and_swap(
        &self,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Result<(), sled::CompareAndSwapError>, sled::Error> {
        if new.is_some() {
            self.counts.add(key);
        }
        let swapped = self.tree.compare_and_swap(key, old, new)?;
        // Swapped: a key that held a value was counted by the write that made it. Not
        // swapped: nothing was written, and the count taken for `new` goes back.
        let counted_twice = match swapped {
            Ok(()) => old.is_some(),
            Err(_) => new.is_some(),
        };
        if counted_twice {
            self.counts.take_back(key);
        }
        Ok(swapped)
    }

    /// The sled tree, for a transaction over several trees: `inserting` are the keys the
    /// transaction will insert, counted now, before it runs. The caller reports every
    /// key the committed transaction wrote with [`OutcomeTree::committed`] (an inserted
    /// key too when its old value was the same), and a failed one with
    /// [`OutcomeTree::failed`].
    pub(super) fn for_transaction<'a>(
        &self,
        inserting: impl IntoIterator<Item = &'a [u8]>,
    ) -> &sled::Tree {
        for key in inserting {
            self.counts.add(key);
        }
        self.tree.for_transaction()
    }

    /// Reports a write a committed transaction made to `key` (`None`: absent).
    pub(super) fn committed(&self, key: &[u8], old: Option<&[u8]>, new: Option<&[u8]>) {
        if old.is_some() {
            self.counts.take_back(key);
        }
        self.tree.committed(key, old, new);
    }

    /// Reports a transaction that failed: sled may or may not have applied it, so the
    /// counts it took are kept.
    pub(super) fn failed(&self) {
        self.tree.failed();
    }

    /// The entries whose key starts with `prefix`, in key order.
    pub(super) fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> sled::Iter {
        self.tree.scan_prefix(prefix)
    }

    /// Every entry, in key order.
    pub(super) fn iter(&self) -> sled::Iter {
        self.tree.iter()
    }

    /// The entries from `range`, in key order.
    pub(super) fn range<K: AsRef<[u8]>, R: std::ops::RangeBounds<K>>(
        &self,
        range: R,
    ) -> sled::Iter {
        self.tree.range(range)
    }

    /// How many entries the tree holds.
    pub(super) fn entry_count(&self) -> usize {
        self.tree.entry_count()
    }

    /// The tree's tally now.
    pub(super) fn tally(&self) -> TreeTally {
        self.tree.tally()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use super::*;

    fn tree(dir: &tempfile::TempDir) -> OutcomeTree {
        let db = sled::open(dir.path().join("db")).unwrap_or_else(|e| panic!("{e}"));
        let tree = db.open_tree("outcomes").unwrap_or_else(|e| panic!("{e}"));
        let tracked =
            TrackedTree::new(tree, TreeTally::default(), Arc::new(AtomicBool::new(false)));
        OutcomeTree::new(tracked).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every way of writing keeps "absent" exact and gives back what it counted, so the
    /// count ends where sled does.
    #[test]
    fn every_write_keeps_the_count_in_step_with_sled() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let tree = tree(&dir);
        let ok = |result: Result<Option<sled::IVec>, sled::Error>| {
            result.unwrap_or_else(|e| panic!("{e}"))
        };
        assert!(!tree.may_hold(b"a"));
        ok(tree.insert(b"a", &b"1"[..]));
        ok(tree.insert(b"a", &b"2"[..]));
        assert!(tree.may_hold(b"a"));
        assert_eq!(tree.counts.slots(), 1, "a replaced key is counted once");
        // A swap that does not happen writes nothing and counts nothing.
        let cas = |key: &[u8], old: Option<&[u8]>, new: Option<&[u8]>| {
            tree.compare_and_swap(key, old, new)
                .unwrap_or_else(|e| panic!("{e}"))
                .is_ok()
        };
        assert!(!cas(b"b", Some(b"x"), Some(b"y")));
        assert!(!tree.may_hold(b"b"));
        assert!(cas(b"b", None, Some(b"y")));
        assert!(cas(b"b", Some(b"y"), Some(b"z")));
        assert!(tree.may_hold(b"b"));
        assert!(cas(b"b", Some(b"z"), None));
        assert!(!tree.may_hold(b"b"));
        // A transaction's inserted keys are counted before it, and given back by what
        // it reports.
        let sled_tree = tree.for_transaction([&b"c"[..], &b"a"[..]]);
        let olds = sled_tree
            .transaction(|tx| {
                Ok::<_, sled::transaction::ConflictableTransactionError>((
                    tx.insert(&b"c"[..], &b"3"[..])?,
                    tx.insert(&b"a"[..], &b"4"[..])?,
                ))
            })
            .unwrap_or_else(|e| panic!("{e}"));
        tree.committed(b"c", olds.0.as_deref(), Some(b"3"));
        tree.committed(b"a", olds.1.as_deref(), Some(b"4"));
        assert!(tree.may_hold(b"c"));
        assert_eq!(tree.counts.slots(), 2);
        assert_eq!(ok(tree.remove(b"a")).as_deref(), Some(&b"4"[..]));
        assert_eq!(ok(tree.remove(b"a")), None);
        assert_eq!(ok(tree.remove(b"c")).as_deref(), Some(&b"3"[..]));
        assert!(!tree.may_hold(b"a") && !tree.may_hold(b"c"));
        assert_eq!(tree.counts.slots(), 0, "nothing left counted");
    }

    /// Writers racing on a few keys (inserts, swaps and removes in any order) never
    /// leave a key in sled that the count says is absent, at any instant a reader looks.
    #[test]
    fn racing_writers_never_hide_a_stored_key() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let tree = Arc::new(tree(&dir));
        let keys: Vec<[u8; 1]> = (0..4).map(|k| [k]).collect();
        let writers: Vec<_> = (0..4u8)
            .map(|writer| {
                let (tree, keys) = (Arc::clone(&tree), keys.clone());
                std::thread::spawn(move || {
                    // A small xorshift: which key, which write, and whether a swap removes.
                    let mut state = u64::from(writer) + 1;
                    let mut next = move |below: u64| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state % below
                    };
                    for n in 0..20_000u32 {
                        let key = &keys[usize::try_from(next(4)).unwrap_or(0)];
                        // Every value written is new, so the same value read twice was
                        // there all along.
                        let mut value = [writer; 5];
                        value[1..].copy_from_slice(&n.to_be_bytes());
                        match next(3) {
                            0 => {
                                tree.insert(key, &value[..])
                                    .unwrap_or_else(|e| panic!("{e}"));
                            }
                            1 => {
                                tree.remove(key).unwrap_or_else(|e| panic!("{e}"));
                            }
                            _ => {
                                let old = tree.get(key).unwrap_or_else(|e| panic!("{e}"));
                                let new = (next(2) == 0).then_some(&value[..]);
                                let _ = tree
                                    .compare_and_swap(key, old.as_deref(), new)
                                    .unwrap_or_else(|e| panic!("{e}"));
                            }
                        }
                    }
                })
            })
            .collect();
        // The reader: a key holding the same value before and after the count was read
        // was in sled all along, so the count must not have said absent.
        let mut looked = 0;
        while writers.iter().any(|writer| !writer.is_finished()) {
            for key in &keys {
                let before = tree.get(key).unwrap_or_else(|e| panic!("{e}"));
                if !tree.may_hold(key) {
                    let after = tree.get(key).unwrap_or_else(|e| panic!("{e}"));
                    assert!(
                        before.is_none() || before != after,
                        "key {key:?} was stored throughout, and the count said absent"
                    );
                }
                looked += 1;
            }
        }
        for writer in writers {
            writer
                .join()
                .unwrap_or_else(|_| panic!("a writer panicked"));
        }
        assert!(looked > 0);
        for key in &keys {
            let stored = tree.get(key).unwrap_or_else(|e| panic!("{e}")).is_some();
            assert_eq!(tree.may_hold(key), stored, "at rest, the count is exact");
        }
    }
}
