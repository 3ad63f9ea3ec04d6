//! The memory of inbound message ids already recorded, so a redelivered webhook is
//! recognised: two trees, one by (business, id) and one by expiry, pruned a few entries at
//! a time by the calls that add to it.

use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};

use crate::{InboundId, PhoneNumber, StoreError};

/// How many expired ids one call removes at most; each call adds at most one, so the
/// memory never holds more than the ids of its horizon plus a short backlog.
const PRUNE_PER_CALL: usize = 8;

/// The two trees and the lock that makes check-and-insert one step.
pub(super) struct SeenIds {
    /// `business (u64 BE) ++ digest of the id (16 B)` → `first received (i64 ms BE) ++ remember until (i64 ms BE)`.
    by_id: sled::Tree,
    /// `remember until (ordered u64 BE) ++ business (u64 BE) ++ digest` → empty.
    by_expiry: sled::Tree,
    lock: Mutex<()>,
}

/// What the memory says of an id.
pub(super) enum Sighting {
    /// Not remembered: the caller records the message, then [`SeenIds::remember`]s it.
    New,
    /// Already remembered; first received then.
    Seen(DateTime<Utc>),
}

impl SeenIds {
    pub(super) fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Self {
            by_id: db.open_tree("seen_inbound")?,
            by_expiry: db.open_tree("seen_inbound_expiry")?,
            lock: Mutex::new(()),
        })
    }

    /// Takes the memory's lock: hold it from [`SeenIds::check`] to [`SeenIds::remember`] so
    /// concurrent callers with one id see each other.
    pub(super) fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `id` is remembered for `business` at `now`.
    pub(super) fn check(
        &self,
        _guard: &MutexGuard<'_, ()>,
        business: PhoneNumber,
        id: &InboundId,
        now: DateTime<Utc>,
    ) -> Result<Sighting, StoreError> {
        let Some(value) = self.by_id.get(id_key(business, id))? else {
            return Ok(Sighting::New);
        };
        match decode(&value) {
            Some((first, until)) if until > now.timestamp_millis() => Ok(Sighting::Seen(
                DateTime::from_timestamp_millis(first).unwrap_or(now),
            )),
            Some(_) => Ok(Sighting::New),
            None => {
                // An unreadable entry is forgotten rather than trusted: at worst a
                // redelivery is recorded again (recording is idempotent).
                tracing::warn!(%business, %id, "unreadable seen-id entry; treating the id as new");
                Ok(Sighting::New)
            }
        }
    }

    /// Remembers `id` for `business` from `received_at` until `until`, replacing an
    /// expired entry, and prunes a few expired ids.
    pub(super) fn remember(
        &self,
        _guard: &MutexGuard<'_, ()>,
        business: PhoneNumber,
        id: &InboundId,
        received_at: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let key = id_key(business, id);
        let until_ms = until.timestamp_millis();
        let mut value = [0u8; 16];
        value[..8].copy_from_slice(&received_at.timestamp_millis().to_be_bytes());
        value[8..].copy_from_slice(&until_ms.to_be_bytes());
        if let Some(old) = self.by_id.insert(key, &value)?
            && let Some((_, old_until)) = decode(&old)
        {
            self.by_expiry.remove(expiry_key(old_until, &key))?;
        }
        self.by_expiry.insert(expiry_key(until_ms, &key), &[])?;
        self.prune(received_at)
    }

    /// Removes up to [`PRUNE_PER_CALL`] ids whose memory ended at or before `now`.
    fn prune(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let bound = ordered(now.timestamp_millis()).to_be_bytes();
        let expired = self
            .by_expiry
            .range(..=&bound[..])
            .keys()
            .take(PRUNE_PER_CALL)
            .collect::<Result<Vec<_>, _>>()?;
        for key in expired {
            self.by_expiry.remove(&key)?;
            if let Some(id_key) = key.get(8..) {
                self.by_id.remove(id_key)?;
            }
        }
        Ok(())
    }

    /// How many ids are remembered (expired ones not yet pruned included).
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }
}

/// The namespace of the ids' digests: fixed, since the digests are stored.
const DIGEST_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6c69_7061_6368_6174_2d73_6565_6e31_0001);

/// `business ++ a 16-byte digest of the id` (a v5 UUID: SHA-1, truncated). The id itself
/// is not needed, only whether it was seen; a digest keeps every key 24 bytes whatever the
/// id's length (WhatsApp's are about 60 characters), and two ids sharing one digest is as
/// likely as a SHA-1 collision.
fn id_key(business: PhoneNumber, id: &InboundId) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&business.as_u64().to_be_bytes());
    key[8..]
        .copy_from_slice(uuid::Uuid::new_v5(&DIGEST_NAMESPACE, id.as_str().as_bytes()).as_bytes());
    key
}

fn expiry_key(until_ms: i64, id_key: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + id_key.len());
    key.extend_from_slice(&ordered(until_ms).to_be_bytes());
    key.extend_from_slice(id_key);
    key
}

/// Maps an `i64` to a `u64` that sorts the same way (big-endian bytes in key order).
fn ordered(ms: i64) -> u64 {
    (ms as u64) ^ (1 << 63)
}

fn decode(value: &[u8]) -> Option<(i64, i64)> {
    let first = i64::from_be_bytes(value.get(..8)?.try_into().ok()?);
    let until = i64::from_be_bytes(value.get(8..16)?.try_into().ok()?);
    Some((first, until))
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
    }
}
