//! The memory of inbound message ids already recorded, so a redelivered webhook is
//! recognised: two trees, one by (business, id) and one by expiry, pruned a few entries at
//! a time by the calls that add to it.

use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};

use crate::store::RememberedInbound;
use crate::{InboundDigest, InboundId, PhoneNumber, StoreError};

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
        let Some(value) = self.by_id.get(id_key(business, id.digest()))? else {
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
        self.put(id_key(business, id.digest()), received_at, until)?;
        self.prune(received_at)
    }

    /// Writes the entry under `key`, replacing (and unindexing) whatever was there.
    fn put(
        &self,
        key: [u8; 24],
        received_at: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
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
        Ok(())
    }

    /// Inserts an entry from elsewhere (an import) unless one is remembered at `now` for
    /// the same business and digest; an entry already expired at `now` is not inserted.
    /// Returns whether it was inserted.
    pub(super) fn insert(
        &self,
        _guard: &MutexGuard<'_, ()>,
        entry: RememberedInbound,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let now_ms = now.timestamp_millis();
        if entry.remember_until.timestamp_millis() <= now_ms {
            return Ok(false);
        }
        let key = id_key(entry.business, entry.digest);
        if let Some(old) = self.by_id.get(key)?
            && decode(&old).is_some_and(|(_, until)| until > now_ms)
        {
            return Ok(false);
        }
        self.put(key, entry.first_received_at, entry.remember_until)?;
        self.prune(now)?;
        Ok(true)
    }

    /// Every entry remembered at `now`, in key order (business, then digest). Unreadable
    /// entries are skipped with a warning, as [`SeenIds::check`] treats them as unseen.
    pub(super) fn remembered(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<RememberedInbound>, StoreError> {
        let now_ms = now.timestamp_millis();
        let mut found = Vec::new();
        for item in self.by_id.iter() {
            let (key, value) = item?;
            let entry = parse_key(&key).zip(decode(&value)).and_then(
                |((business, digest), (first, until))| {
                    Some(RememberedInbound {
                        business,
                        digest,
                        first_received_at: DateTime::from_timestamp_millis(first)?,
                        remember_until: DateTime::from_timestamp_millis(until)?,
                    })
                },
            );
            match entry {
                Some(entry) if entry.remember_until.timestamp_millis() > now_ms => {
                    found.push(entry);
                }
                Some(_) => {}
                None => tracing::warn!("skipping an unreadable seen-id entry"),
            }
        }
        Ok(found)
    }

    /// Forgets `id` for `business` (after a write that could not be made durable).
    pub(super) fn forget(
        &self,
        _guard: &MutexGuard<'_, ()>,
        business: PhoneNumber,
        id: &InboundId,
    ) -> Result<(), StoreError> {
        let key = id_key(business, id.digest());
        if let Some(old) = self.by_id.remove(key)?
            && let Some((_, until)) = decode(&old)
        {
            self.by_expiry.remove(expiry_key(until, &key))?;
        }
        Ok(())
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

/// `business ++ the id's digest` ([`InboundId::digest`]). The id itself is not needed,
/// only whether it was seen; a digest keeps every key 24 bytes whatever the id's length
/// (WhatsApp's are about 60 characters).
fn id_key(business: PhoneNumber, digest: InboundDigest) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&business.as_u64().to_be_bytes());
    key[8..].copy_from_slice(digest.as_bytes());
    key
}

/// The business and digest of a key written by [`id_key`].
fn parse_key(key: &[u8]) -> Option<(PhoneNumber, InboundDigest)> {
    let business = PhoneNumber::from_u64(u64::from_be_bytes(key.get(..8)?.try_into().ok()?))?;
    let digest: [u8; 16] = key.get(8..24)?.try_into().ok()?;
    (key.len() == 24).then_some((business, InboundDigest::from_bytes(digest)))
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
