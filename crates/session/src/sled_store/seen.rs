//! The memory of inbound message ids already recorded, so a redelivered webhook is
//! recognised.
//!
//! On disk it is one tree ordered by expiry (`seen_inbound_expiry`): new ids are written
//! at its end, and expired ones are pruned from its start, a few entries at a time, by
//! the calls that add to it. In memory, a map by (business, digest) loaded at open
//! answers every check without reading the disk.
//!
//! The tree holds two kinds of entry, told apart by their key's length:
//! - one id (32-byte key: remembered until ‖ business ‖ digest → first received), written
//!   by schema version 2, by imports, and by stores in periodic mode;
//! - a batch (16-byte key: the latest remembered-until of its ids ‖ a number from
//!   [`sled::Db::generate_id`] → 40 bytes per id: remembered until ‖ business ‖ digest ‖
//!   first received), written since schema version 3 in durable mode: the ids remembered
//!   between two flushes of the group committer wait in memory ([`SeenIds::write_pending`])
//!   and are written as one entry just before the flush that makes them durable, so a
//!   flush of many inbound messages costs one insert for their ids, not one each. A batch
//!   is pruned once its latest id has expired.
//!
//! Stores written before schema version 2 also kept a tree by id (`seen_inbound`), with
//! an empty value in the expiry tree; opening one moves each of its entries into the
//! expiry tree's value and empties it (see [`SeenIds::open`]).

use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};

use super::codec::read_i64;
use super::memory_map::MemoryMap;
use crate::store::RememberedInbound;
use crate::{InboundDigest, InboundId, PhoneNumber, StoreError};

/// How many expired ids one call removes at most; each call adds at most one, so the
/// memory never holds more than the ids of its horizon plus a short backlog.
const PRUNE_PER_CALL: usize = 8;

/// The tree by id that stores before schema version 2 kept beside the expiry tree.
const LEGACY_BY_ID_TREE: &str = "seen_inbound";
/// The expiry tree.
const BY_EXPIRY_TREE: &str = "seen_inbound_expiry";

/// An id's key in memory: `business (u64 BE) ++ digest (16 B)`.
type IdKey = [u8; 24];

/// The length of a one-id entry's key: `remembered until ++ id key`.
const ONE_ID_KEY_LEN: usize = 32;
/// The length of a batch entry's key: `latest remembered until ++ batch number`.
const BATCH_KEY_LEN: usize = 16;
/// The length of one id in a batch's value: `remembered until ++ id key ++ first received`.
const BATCH_RECORD_LEN: usize = 40;

/// One id as a batch holds it.
type BatchRecord = [u8; BATCH_RECORD_LEN];

/// What is remembered of one id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Remembered {
    /// When it was first received, ms since the epoch.
    first_ms: i64,
    /// Until when it is remembered, ms since the epoch.
    until_ms: i64,
}

/// The memory's in-memory part: every id the expiry tree holds, by key. Held locked
/// from [`SeenIds::check`] to [`SeenIds::remember`] so concurrent callers with one id see
/// each other.
pub(super) struct Memory {
    by_id: MemoryMap<IdKey, Remembered>,
    /// No entry of the expiry tree ends before this (ms; `i64::MAX` when it is empty):
    /// until then a prune has nothing to do and reads nothing.
    earliest_until_ms: i64,
}

/// The expiry tree and the map that mirrors it.
pub(super) struct SeenIds {
    /// One-id and batch entries (see the module documentation).
    by_expiry: sled::Tree,
    /// Where batch numbers come from.
    db: sled::Db,
    memory: Mutex<Memory>,
    /// Whether new ids wait in [`SeenIds::pending`] for the group committer (durable mode)
    /// rather than being written at once (periodic mode, where nothing would write them).
    batched: bool,
    /// Ids remembered since the committer last wrote a batch. Taken after the memory's
    /// lock when both are held.
    pending: Mutex<Vec<BatchRecord>>,
}

/// What the memory says of an id.
pub(super) enum Sighting {
    /// Not remembered: the caller records the message, then [`SeenIds::remember`]s it.
    New,
    /// Already remembered; first received then.
    Seen(DateTime<Utc>),
}

impl SeenIds {
    /// Opens the memory: moves a legacy tree by id into the expiry tree (see the module
    /// documentation), then reads the expiry tree into memory. An entry that cannot be
    /// read, or one without its first-received time (left by a legacy store's crash
    /// between its two trees' writes, for an id it had already forgotten), is removed:
    /// it is treated as never seen, which at worst records a redelivery again.
    ///
    /// With `batched`, ids remembered from then on wait for [`SeenIds::write_pending`],
    /// which the group committer calls before each flush; without it each is written at
    /// once.
    pub(super) fn open(db: &sled::Db, batched: bool) -> Result<Self, StoreError> {
        let by_expiry = db.open_tree(BY_EXPIRY_TREE)?;
        if db
            .tree_names()
            .iter()
            .any(|name| name.as_ref() == LEGACY_BY_ID_TREE.as_bytes())
        {
            migrate_legacy(db, &by_expiry)?;
        }
        let mut by_id: MemoryMap<IdKey, Remembered> = MemoryMap::default();
        let mut unreadable = Vec::new();
        let mut earliest_until_ms = i64::MAX;
        for item in by_expiry.iter() {
            let (key, value) = item?;
            let Some(entry) = Entry::parse(&key, &value) else {
                unreadable.push(key);
                continue;
            };
            earliest_until_ms = earliest_until_ms.min(entry.key_until_ms());
            for (id_key, remembered) in entry.ids() {
                // Two entries for one id (a crash between writing a renewed one and
                // removing the one it replaced, or an expired id in a batch not yet
                // pruned beside its renewal): the later one is in force.
                by_id
                    .entry(id_key)
                    .and_modify(|held| {
                        if remembered.until_ms > held.until_ms {
                            *held = remembered;
                        }
                    })
                    .or_insert(remembered);
            }
        }
        if !unreadable.is_empty() {
            tracing::warn!(
                entries = unreadable.len(),
                "removing unreadable redelivery-memory entries; their ids count as unseen"
            );
            for key in unreadable {
                by_expiry.remove(key)?;
            }
        }
        Ok(Self {
            by_expiry,
            db: db.clone(),
            memory: Mutex::new(Memory {
                by_id,
                earliest_until_ms,
            }),
            batched,
            pending: Mutex::default(),
        })
    }

    fn lock_pending(&self) -> MutexGuard<'_, Vec<BatchRecord>> {
        // Every update of the list is one step: it stays consistent if a holder panicked.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the ids remembered since the last call as one batch entry (nothing when
    /// there are none). The group committer calls it before each flush, after it has
    /// noted which writers the flush covers: each of them added its id before it began
    /// to wait, so the flush makes the id durable with the writer's window.
    ///
    /// The list stays locked until the batch is in the tree, so a [`SeenIds::forget`] that
    /// no longer finds its id in the list finds it in the tree.
    pub(super) fn write_pending(&self) -> Result<(), sled::Error> {
        let mut pending = self.lock_pending();
        let Some(latest_until_ms) = pending.iter().map(record_until_ms).max() else {
            return Ok(());
        };
        let mut key = [0u8; BATCH_KEY_LEN];
        key[..8].copy_from_slice(&ordered(latest_until_ms).to_be_bytes());
        key[8..].copy_from_slice(&self.db.generate_id()?.to_be_bytes());
        self.by_expiry.insert(key, pending.as_flattened())?;
        pending.clear();
        Ok(())
    }

    /// Takes the memory's lock: hold it from [`SeenIds::check`] to [`SeenIds::remember`] so
    /// concurrent callers with one id see each other.
    pub(super) fn lock(&self) -> MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `id` is remembered for `business` at `now`. Reads memory only.
    pub(super) fn check(
        &self,
        memory: &Memory,
        business: PhoneNumber,
        id: &InboundId,
        now: DateTime<Utc>,
    ) -> Sighting {
        match memory.by_id.get(&id_key(business, id.digest())) {
            Some(held) if held.until_ms > now.timestamp_millis() => {
                Sighting::Seen(DateTime::from_timestamp_millis(held.first_ms).unwrap_or(now))
            }
            _ => Sighting::New,
        }
    }

    /// Remembers `id` for `business` from `received_at` until `until`, replacing an
    /// expired entry, and prunes a few expired ids.
    pub(super) fn remember(
        &self,
        memory: &mut Memory,
        business: PhoneNumber,
        id: &InboundId,
        received_at: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.put(
            memory,
            id_key(business, id.digest()),
            received_at.timestamp_millis(),
            until.timestamp_millis(),
            self.batched,
        )?;
        self.prune(memory, received_at)
    }

    /// Writes the entry under `key`, replacing whatever was remembered for it: the new
    /// entry is written before the old one is removed, so a crash between the two leaves
    /// both, of which the later is in force.
    ///
    /// With `batch`, the entry waits for [`SeenIds::write_pending`] instead; an entry it
    /// replaces stays where it was (in a batch it cannot be removed alone) and loses to
    /// the new one at open, the later being in force.
    fn put(
        &self,
        memory: &mut Memory,
        key: IdKey,
        first_ms: i64,
        until_ms: i64,
        batch: bool,
    ) -> Result<(), StoreError> {
        if batch {
            self.lock_pending()
                .push(batch_record(until_ms, &key, first_ms));
        } else {
            self.by_expiry
                .insert(expiry_key(until_ms, &key), &first_ms.to_be_bytes())?;
        }
        let replaced = memory.by_id.insert(key, Remembered { first_ms, until_ms });
        memory.earliest_until_ms = memory.earliest_until_ms.min(until_ms);
        if let Some(old) = replaced
            && old.until_ms != until_ms
            && !batch
        {
            self.by_expiry.remove(expiry_key(old.until_ms, &key))?;
        }
        Ok(())
    }

    /// Inserts an entry from elsewhere (an import) unless one is remembered at `now` for
    /// the same business and digest; an entry already expired at `now` is not inserted.
    /// Returns whether it was inserted.
    pub(super) fn insert(
        &self,
        memory: &mut Memory,
        entry: RememberedInbound,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let now_ms = now.timestamp_millis();
        if entry.remember_until.timestamp_millis() <= now_ms {
            return Ok(false);
        }
        let key = id_key(entry.business, entry.digest);
        if memory
            .by_id
            .get(&key)
            .is_some_and(|held| held.until_ms > now_ms)
        {
            return Ok(false);
        }
        self.put(
            memory,
            key,
            entry.first_received_at.timestamp_millis(),
            entry.remember_until.timestamp_millis(),
            false,
        )?;
        self.prune(memory, now)?;
        Ok(true)
    }

    /// Every entry remembered at `now`, in key order (business, then digest).
    pub(super) fn remembered(&self, now: DateTime<Utc>) -> Vec<RememberedInbound> {
        let now_ms = now.timestamp_millis();
        let memory = self.lock();
        let mut found: Vec<(IdKey, RememberedInbound)> = memory
            .by_id
            .iter()
            .filter(|(_, held)| held.until_ms > now_ms)
            .filter_map(|(key, held)| {
                let (business, digest) = parse_id_key(key)?;
                Some((
                    *key,
                    RememberedInbound {
                        business,
                        digest,
                        first_received_at: DateTime::from_timestamp_millis(held.first_ms)?,
                        remember_until: DateTime::from_timestamp_millis(held.until_ms)?,
                    },
                ))
            })
            .collect();
        found.sort_unstable_by_key(|(key, _)| *key);
        found.into_iter().map(|(_, entry)| entry).collect()
    }

    /// Forgets `id` for `business` (after a write that could not be made durable):
    /// removes it from the ids waiting for a batch, from its one-id entry, or from the
    /// batch it was written in (rewritten without it; rare, so the batches that may hold
    /// it, those ending at or after it, are read).
    pub(super) fn forget(
        &self,
        memory: &mut Memory,
        business: PhoneNumber,
        id: &InboundId,
    ) -> Result<(), StoreError> {
        let key = id_key(business, id.digest());
        let Some(held) = memory.by_id.remove(&key) else {
            return Ok(());
        };
        let record = batch_record(held.until_ms, &key, held.first_ms);
        {
            let mut pending = self.lock_pending();
            let before = pending.len();
            pending.retain(|waiting| *waiting != record);
            if pending.len() < before {
                return Ok(());
            }
        }
        self.by_expiry.remove(expiry_key(held.until_ms, &key))?;
        let from = ordered(held.until_ms).to_be_bytes();
        for item in self.by_expiry.range(&from[..]..) {
            let (batch_key, value) = item?;
            if batch_key.len() != BATCH_KEY_LEN {
                continue;
            }
            let Some(records) = batch_records(&value) else {
                continue;
            };
            if !records.contains(&record) {
                continue;
            }
            let kept: Vec<BatchRecord> = records.into_iter().filter(|r| *r != record).collect();
            if kept.is_empty() {
                self.by_expiry.remove(&batch_key)?;
            } else {
                self.by_expiry.insert(&batch_key, kept.as_flattened())?;
            }
        }
        Ok(())
    }

    /// Removes up to [`PRUNE_PER_CALL`] ids whose memory ended before `now`. Reads nothing
    /// while no entry has ended.
    fn prune(&self, memory: &mut Memory, now: DateTime<Utc>) -> Result<(), StoreError> {
        let now_ms = now.timestamp_millis();
        if memory.earliest_until_ms >= now_ms {
            return Ok(());
        }
        let bound = ordered(now_ms).to_be_bytes();
        let expired = self
            .by_expiry
            .range(..&bound[..])
            .take(PRUNE_PER_CALL)
            .collect::<Result<Vec<_>, _>>()?;
        for (key, value) in expired {
            self.by_expiry.remove(&key)?;
            let Some(entry) = Entry::parse(&key, &value) else {
                continue;
            };
            for (id_key, remembered) in entry.ids() {
                if memory
                    .by_id
                    .get(&id_key)
                    .is_some_and(|held| held.until_ms == remembered.until_ms)
                {
                    memory.by_id.remove(&id_key);
                }
            }
        }
        memory.earliest_until_ms = match self.by_expiry.first()? {
            Some((key, _)) => read_key_until(&key).unwrap_or(i64::MIN),
            None => i64::MAX,
        };
        Ok(())
    }

    /// How many ids are remembered (expired ones not yet pruned included).
    pub(super) fn len(&self) -> usize {
        self.lock().by_id.len()
    }
}

/// One entry of the expiry tree, read.
enum Entry {
    /// One id (schema version 2's only kind).
    One(IdKey, Remembered),
    /// A batch: the latest remembered-until (its key's) and its ids.
    Batch(i64, Vec<BatchRecord>),
}

impl Entry {
    /// Reads an entry by its key's length; `None` when it cannot be read (a key of
    /// another length, a time missing, a batch's value not whole records).
    fn parse(key: &[u8], value: &[u8]) -> Option<Self> {
        match key.len() {
            ONE_ID_KEY_LEN => {
                let (until_ms, id_key) = parse_expiry_key(key)?;
                let first_ms = read_i64(value)?;
                Some(Self::One(id_key, Remembered { first_ms, until_ms }))
            }
            BATCH_KEY_LEN => Some(Self::Batch(read_key_until(key)?, batch_records(value)?)),
            _ => None,
        }
    }

    /// The remembered-until its key sorts by.
    fn key_until_ms(&self) -> i64 {
        match self {
            Self::One(_, remembered) => remembered.until_ms,
            Self::Batch(latest, _) => *latest,
        }
    }

    /// Its ids and what is remembered of each.
    fn ids(&self) -> impl Iterator<Item = (IdKey, Remembered)> + '_ {
        let (one, batch) = match self {
            Self::One(key, remembered) => (Some((*key, *remembered)), &[][..]),
            Self::Batch(_, records) => (None, records.as_slice()),
        };
        one.into_iter().chain(batch.iter().map(parse_batch_record))
    }
}

/// One id as a batch holds it: `remembered until (i64 BE) ++ id key ++ first received
/// (i64 BE)`.
fn batch_record(until_ms: i64, key: &IdKey, first_ms: i64) -> BatchRecord {
    let mut record = [0u8; BATCH_RECORD_LEN];
    record[..8].copy_from_slice(&until_ms.to_be_bytes());
    record[8..32].copy_from_slice(key);
    record[32..].copy_from_slice(&first_ms.to_be_bytes());
    record
}

/// The remembered-until of a batch record.
fn record_until_ms(record: &BatchRecord) -> i64 {
    let mut until = [0u8; 8];
    until.copy_from_slice(&record[..8]);
    i64::from_be_bytes(until)
}

/// The id key and times of a batch record.
fn parse_batch_record(record: &BatchRecord) -> (IdKey, Remembered) {
    let mut key = [0u8; 24];
    key.copy_from_slice(&record[8..32]);
    let mut first = [0u8; 8];
    first.copy_from_slice(&record[32..]);
    (
        key,
        Remembered {
            first_ms: i64::from_be_bytes(first),
            until_ms: record_until_ms(record),
        },
    )
}

/// A batch's value as records; `None` unless it is a whole, non-zero number of them.
fn batch_records(value: &[u8]) -> Option<Vec<BatchRecord>> {
    if value.is_empty() || !value.len().is_multiple_of(BATCH_RECORD_LEN) {
        return None;
    }
    value
        .chunks_exact(BATCH_RECORD_LEN)
        .map(|chunk| chunk.try_into().ok())
        .collect()
}

/// The remembered-until an entry's key starts with (either kind).
fn read_key_until(key: &[u8]) -> Option<i64> {
    read_i64(key.get(..8)?).map(|until| unordered(until as u64))
}

/// Moves a legacy store's tree by id into the expiry tree: each entry's first-received
/// time becomes the value of its expiry entry (written anew, whether or not the expiry
/// tree had it), then the legacy tree is emptied and everything flushed. sled recovers a
/// prefix of its log, so after a crash the legacy tree is either still whole (and this
/// runs again: every write is repeated with the same value) or empty, with every value
/// written before it was emptied.
fn migrate_legacy(db: &sled::Db, by_expiry: &sled::Tree) -> Result<(), StoreError> {
    let legacy = db.open_tree(LEGACY_BY_ID_TREE)?;
    let mut moved = 0usize;
    let mut unreadable = 0usize;
    for item in legacy.iter() {
        let (key, value) = item?;
        let id_key: Option<IdKey> = key.as_ref().try_into().ok();
        let times = value
            .get(..8)
            .and_then(read_i64)
            .zip(value.get(8..).and_then(read_i64));
        match (id_key, times) {
            (Some(id_key), Some((first_ms, until_ms))) => {
                by_expiry.insert(expiry_key(until_ms, &id_key), &first_ms.to_be_bytes())?;
                moved += 1;
            }
            _ => unreadable += 1,
        }
    }
    legacy.clear()?;
    db.flush()?;
    if moved + unreadable > 0 {
        tracing::info!(
            moved,
            unreadable,
            "moved the redelivery memory to the expiry-ordered layout (schema version 2)"
        );
    }
    Ok(())
}

/// `business ++ the id's digest` ([`InboundId::digest`]). The id itself is not needed,
/// only whether it was seen; a digest keeps every key 24 bytes whatever the id's length
/// (WhatsApp's are about 60 characters).
fn id_key(business: PhoneNumber, digest: InboundDigest) -> IdKey {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&business.as_u64().to_be_bytes());
    key[8..].copy_from_slice(digest.as_bytes());
    key
}

/// The business and digest of a key written by [`id_key`].
fn parse_id_key(key: &IdKey) -> Option<(PhoneNumber, InboundDigest)> {
    let business = PhoneNumber::from_u64(u64::from_be_bytes(key[..8].try_into().ok()?))?;
    let digest: [u8; 16] = key[8..].try_into().ok()?;
    Some((business, InboundDigest::from_bytes(digest)))
}

fn expiry_key(until_ms: i64, id_key: &IdKey) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&ordered(until_ms).to_be_bytes());
    key[8..].copy_from_slice(id_key);
    key
}

/// The end of the memory and the id key of an expiry key.
fn parse_expiry_key(key: &[u8]) -> Option<(i64, IdKey)> {
    let id_key: IdKey = key.get(8..)?.try_into().ok()?;
    Some((read_key_until(key)?, id_key))
}

/// Maps an `i64` to a `u64` that sorts the same way (big-endian bytes in key order).
fn ordered(ms: i64) -> u64 {
    (ms as u64) ^ (1 << 63)
}

/// The inverse of [`ordered`].
fn unordered(value: u64) -> i64 {
    (value ^ (1 << 63)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_keys_sort_by_time_across_the_epoch() {
        let times = [-5_000i64, -1, 0, 1, 1_700_000_000_000];
        let keys: Vec<_> = times.iter().map(|t| ordered(*t).to_be_bytes()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        for t in times {
            assert_eq!(unordered(ordered(t)), t);
        }
    }

    /// A sled database in a new temporary directory (kept while the first is held).
    fn temp_db() -> (tempfile::TempDir, sled::Db) {
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let db = sled::open(dir.path().join("db")).unwrap_or_else(|error| panic!("{error}"));
        (dir, db)
    }

    fn business() -> PhoneNumber {
        PhoneNumber::from_u64(254_110_090_747).unwrap_or_else(|| unreachable!())
    }

    fn inbound(n: u32) -> InboundId {
        InboundId::new(&format!("wamid.{n}")).unwrap_or_else(|_| unreachable!())
    }

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap_or_else(|| unreachable!())
    }

    fn remember(seen: &SeenIds, n: u32) {
        let mut memory = seen.lock();
        seen.remember(&mut memory, business(), &inbound(n), at(0), at(60_000))
            .unwrap_or_else(|error| panic!("{error}"));
    }

    fn forget(seen: &SeenIds, n: u32) {
        let mut memory = seen.lock();
        seen.forget(&mut memory, business(), &inbound(n))
            .unwrap_or_else(|error| panic!("{error}"));
    }

    fn is_seen(seen: &SeenIds, n: u32) -> bool {
        let memory = seen.lock();
        matches!(
            seen.check(&memory, business(), &inbound(n), at(1)),
            Sighting::Seen(_)
        )
    }

    /// A forgotten id (its flush failed) leaves the list waiting for a batch, or the
    /// batch it was written in, and is not remembered after a reopen; the others are.
    #[test]
    fn a_forgotten_id_leaves_its_batch_or_the_waiting_list() {
        let (_dir, db) = temp_db();
        let seen = SeenIds::open(&db, true).unwrap_or_else(|error| panic!("{error}"));
        for n in 1..=3 {
            remember(&seen, n);
        }
        assert!(
            seen.by_expiry.is_empty(),
            "nothing written before the flush"
        );
        seen.write_pending()
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(seen.by_expiry.len(), 1, "three ids, one entry");
        remember(&seen, 4);
        forget(&seen, 2);
        forget(&seen, 4);
        seen.write_pending()
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(seen.by_expiry.len(), 1, "id 4 was never written");
        drop(seen);
        let seen = SeenIds::open(&db, true).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(
            (1..=4).map(|n| is_seen(&seen, n)).collect::<Vec<_>>(),
            [true, false, true, false]
        );
        forget(&seen, 1);
        forget(&seen, 3);
        assert!(seen.by_expiry.is_empty(), "an emptied batch is removed");
    }

    /// In periodic mode nothing would write a batch: each id is written at once.
    #[test]
    fn without_batches_an_id_is_written_at_once() {
        let (_dir, db) = temp_db();
        let seen = SeenIds::open(&db, false).unwrap_or_else(|error| panic!("{error}"));
        remember(&seen, 1);
        assert_eq!(seen.by_expiry.len(), 1);
        assert!(seen.lock_pending().is_empty());
        drop(seen);
        let seen = SeenIds::open(&db, false).unwrap_or_else(|error| panic!("{error}"));
        assert!(is_seen(&seen, 1));
    }

    /// A batch entry that cannot be read (not whole records, a key of another length) is
    /// removed at open; its neighbours are kept.
    #[test]
    fn an_unreadable_batch_is_removed_at_open() {
        let (_dir, db) = temp_db();
        let seen = SeenIds::open(&db, true).unwrap_or_else(|error| panic!("{error}"));
        remember(&seen, 1);
        seen.write_pending()
            .unwrap_or_else(|error| panic!("{error}"));
        let tree = seen.by_expiry.clone();
        drop(seen);
        let mut torn = [0u8; BATCH_KEY_LEN];
        torn[..8].copy_from_slice(&ordered(at(60_000).timestamp_millis()).to_be_bytes());
        torn[8..].copy_from_slice(&u64::MAX.to_be_bytes());
        tree.insert(torn, &[1u8; 39][..])
            .unwrap_or_else(|error| panic!("{error}"));
        tree.insert(&[9u8; 20][..], &[0u8; 40][..])
            .unwrap_or_else(|error| panic!("{error}"));
        let seen = SeenIds::open(&db, true).unwrap_or_else(|error| panic!("{error}"));
        assert!(is_seen(&seen, 1));
        assert_eq!(seen.len(), 1);
        assert_eq!(seen.by_expiry.len(), 1, "the unreadable entries are gone");
    }

    #[test]
    fn expiry_keys_round_trip_and_refuse_other_lengths() {
        let key = id_key(
            PhoneNumber::from_u64(254_110_090_747).unwrap_or_else(|| unreachable!()),
            InboundDigest::from_bytes([7; 16]),
        );
        let expiry = expiry_key(-42, &key);
        assert_eq!(parse_expiry_key(&expiry), Some((-42, key)));
        assert_eq!(parse_expiry_key(&expiry[..31]), None);
        assert_eq!(parse_expiry_key(&[expiry.as_slice(), &[0]].concat()), None);
    }
}
