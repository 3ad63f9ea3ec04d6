//! The memory of inbound message ids already recorded, so a redelivered webhook is
//! recognised.
//!
//! On disk it is one tree ordered by expiry (`seen_inbound_expiry`): a new id is written
//! at its end, and expired ids are pruned from its start, a few at a time, by the calls
//! that add to it. In memory, a map by (business, digest) loaded at open answers every
//! check without reading the disk, so recording an inbound message by id costs one sled
//! insert beside the window's.
//!
//! Stores written before schema version 2 also kept a tree by id (`seen_inbound`), with
//! an empty value in the expiry tree; opening one moves each of its entries into the
//! expiry tree's value and empties it (see [`SeenIds::open`]).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};

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
    by_id: HashMap<IdKey, Remembered>,
    /// No entry of the expiry tree ends before this (ms; `i64::MAX` when it is empty):
    /// until then a prune has nothing to do and reads nothing.
    earliest_until_ms: i64,
}

/// The expiry tree and the map that mirrors it.
pub(super) struct SeenIds {
    /// `remember until (ordered u64 BE) ++ business (u64 BE) ++ digest` → `first received (i64 ms BE)`.
    by_expiry: sled::Tree,
    memory: Mutex<Memory>,
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
    pub(super) fn open(db: &sled::Db) -> Result<Self, StoreError> {
        let by_expiry = db.open_tree(BY_EXPIRY_TREE)?;
        if db
            .tree_names()
            .iter()
            .any(|name| name.as_ref() == LEGACY_BY_ID_TREE.as_bytes())
        {
            migrate_legacy(db, &by_expiry)?;
        }
        let mut by_id: HashMap<IdKey, Remembered> = HashMap::new();
        let mut unreadable = Vec::new();
        let mut earliest_until_ms = i64::MAX;
        for item in by_expiry.iter() {
            let (key, value) = item?;
            let Some((until_ms, id_key)) = parse_expiry_key(&key) else {
                unreadable.push(key);
                continue;
            };
            let Some(first_ms) = read_i64(&value) else {
                unreadable.push(key);
                continue;
            };
            earliest_until_ms = earliest_until_ms.min(until_ms);
            let entry = Remembered { first_ms, until_ms };
            // Two entries for one id (a crash between writing a renewed one and removing
            // the one it replaced): the later one is in force.
            by_id
                .entry(id_key)
                .and_modify(|held| {
                    if until_ms > held.until_ms {
                        *held = entry;
                    }
                })
                .or_insert(entry);
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
            memory: Mutex::new(Memory {
                by_id,
                earliest_until_ms,
            }),
        })
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
        )?;
        self.prune(memory, received_at)
    }

    /// Writes the entry under `key`, replacing whatever was remembered for it: the new
    /// entry is written before the old one is removed, so a crash between the two leaves
    /// both, of which the later is in force.
    fn put(
        &self,
        memory: &mut Memory,
        key: IdKey,
        first_ms: i64,
        until_ms: i64,
    ) -> Result<(), StoreError> {
        self.by_expiry
            .insert(expiry_key(until_ms, &key), &first_ms.to_be_bytes())?;
        let replaced = memory.by_id.insert(key, Remembered { first_ms, until_ms });
        memory.earliest_until_ms = memory.earliest_until_ms.min(until_ms);
        if let Some(old) = replaced
            && old.until_ms != until_ms
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

    /// Forgets `id` for `business` (after a write that could not be made durable).
    pub(super) fn forget(
        &self,
        memory: &mut Memory,
        business: PhoneNumber,
        id: &InboundId,
    ) -> Result<(), StoreError> {
        let key = id_key(business, id.digest());
        if let Some(held) = memory.by_id.remove(&key) {
            self.by_expiry.remove(expiry_key(held.until_ms, &key))?;
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
            .keys()
            .take(PRUNE_PER_CALL)
            .collect::<Result<Vec<_>, _>>()?;
        for key in expired {
            self.by_expiry.remove(&key)?;
            if let Some((until_ms, id_key)) = parse_expiry_key(&key)
                && memory
                    .by_id
                    .get(&id_key)
                    .is_some_and(|held| held.until_ms == until_ms)
            {
                memory.by_id.remove(&id_key);
            }
        }
        memory.earliest_until_ms = match self.by_expiry.first()? {
            Some((key, _)) => parse_expiry_key(&key).map_or(i64::MIN, |(until, _)| until),
            None => i64::MAX,
        };
        Ok(())
    }

    /// How many ids are remembered (expired ones not yet pruned included).
    pub(super) fn len(&self) -> usize {
        self.lock().by_id.len()
    }
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
    let until = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    let id_key: IdKey = key.get(8..)?.try_into().ok()?;
    Some((unordered(until), id_key))
}

/// Maps an `i64` to a `u64` that sorts the same way (big-endian bytes in key order).
fn ordered(ms: i64) -> u64 {
    (ms as u64) ^ (1 << 63)
}

/// The inverse of [`ordered`].
fn unordered(value: u64) -> i64 {
    (value ^ (1 << 63)) as i64
}

fn read_i64(bytes: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(bytes.try_into().ok()?))
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
