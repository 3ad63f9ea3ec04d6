//! The in-memory mirror of the `windows` tree: every conversation's record, and an
//! ordered index by last inbound time for the closing-soon query.
//!
//! It is rebuilt from sled at open and updated under the same shard lock as each sled
//! write, so it always equals what sled holds (see `docs/store.md` for why in memory).

use std::collections::{BTreeSet, HashMap};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use chrono::{DateTime, Utc};

use crate::window::{from_millis, to_millis};
use crate::{Conversation, WindowRecord};

const SHARDS: usize = 64;
const NO_CLOSURE: i64 = i64::MIN;

/// A record packed into 16 bytes.
#[derive(Clone, Copy)]
struct Slot {
    last_inbound: i64,
    gateway_closed_at: i64,
}

impl Slot {
    fn pack(record: &WindowRecord) -> Self {
        Self {
            last_inbound: to_millis(record.last_inbound),
            gateway_closed_at: record.gateway_closed_at.map_or(NO_CLOSURE, to_millis),
        }
    }

    fn unpack(self) -> WindowRecord {
        WindowRecord {
            last_inbound: from_millis(self.last_inbound),
            gateway_closed_at: (self.gateway_closed_at != NO_CLOSURE)
                .then(|| from_millis(self.gateway_closed_at)),
        }
    }
}

/// One shard of the index.
#[derive(Default)]
pub struct Shard {
    records: HashMap<Conversation, Slot>,
    corrupt: HashMap<Conversation, String>,
    by_inbound: BTreeSet<(i64, Conversation)>,
}

/// What the index knows of one conversation.
pub type Lookup = Result<Option<WindowRecord>, String>;

impl Shard {
    /// The record, `None` when absent, or the corruption detail.
    pub fn get(&self, conversation: &Conversation) -> Lookup {
        if let Some(detail) = self.corrupt.get(conversation) {
            return Err(detail.clone());
        }
        Ok(self.records.get(conversation).map(|slot| slot.unpack()))
    }

    /// Stores a record, replacing any previous one (or corruption mark).
    pub fn put(&mut self, conversation: Conversation, record: &WindowRecord) {
        self.corrupt.remove(&conversation);
        let slot = Slot::pack(record);
        if let Some(old) = self.records.insert(conversation, slot) {
            if old.last_inbound == slot.last_inbound {
                return;
            }
            self.by_inbound.remove(&(old.last_inbound, conversation));
        }
        self.by_inbound.insert((slot.last_inbound, conversation));
    }

    /// Marks a conversation's stored value as unreadable.
    pub fn put_corrupt(&mut self, conversation: Conversation, detail: String) {
        self.remove(&conversation);
        self.corrupt.insert(conversation, detail);
    }

    /// Removes a conversation; returns whether it was there.
    pub fn remove(&mut self, conversation: &Conversation) -> bool {
        let corrupt = self.corrupt.remove(conversation).is_some();
        match self.records.remove(conversation) {
            Some(old) => {
                self.by_inbound.remove(&(old.last_inbound, *conversation));
                true
            }
            None => corrupt,
        }
    }
}

/// The sharded index.
pub struct Index {
    shards: Box<[RwLock<Shard>]>,
}

impl Default for Index {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
        }
    }
}

impl Index {
    fn shard_of(conversation: &Conversation) -> usize {
        let mixed = (conversation.business.as_u64()
            ^ conversation.customer.as_u64().rotate_left(29))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (mixed >> 58) as usize % SHARDS
    }

    /// Read access to the shard holding `conversation`.
    pub fn read(&self, conversation: &Conversation) -> RwLockReadGuard<'_, Shard> {
        self.shards[Self::shard_of(conversation)]
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Write access to the shard holding `conversation`; the caller writes sled while
    /// holding it, which makes read-modify-write atomic per conversation.
    pub fn write(&self, conversation: &Conversation) -> RwLockWriteGuard<'_, Shard> {
        self.shards[Self::shard_of(conversation)]
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn shards(&self) -> impl Iterator<Item = RwLockReadGuard<'_, Shard>> {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Conversations with `after < last_inbound <= up_to`, oldest first.
    pub fn inbound_between(
        &self,
        after: DateTime<Utc>,
        up_to: DateTime<Utc>,
    ) -> Vec<(Conversation, WindowRecord)> {
        let (after, up_to) = (to_millis(after), to_millis(up_to));
        if after >= up_to {
            return Vec::new();
        }
        let mut found = Vec::new();
        for shard in self.shards() {
            let low = (after.saturating_add(1), Conversation::MIN);
            let high = (up_to, Conversation::MAX);
            for (_, conversation) in shard.by_inbound.range(low..=high) {
                if let Some(slot) = shard.records.get(conversation) {
                    found.push((*conversation, slot.unpack()));
                }
            }
        }
        found.sort_by_key(|(c, r)| (r.last_inbound, *c));
        found
    }

    /// How many conversations are known (corrupt ones included).
    pub fn len(&self) -> usize {
        self.shards()
            .map(|s| s.records.len() + s.corrupt.len())
            .sum()
    }

    /// Every conversation with its record or corruption detail, in key order.
    pub fn all(&self) -> Vec<(Conversation, Lookup)> {
        let mut all = Vec::with_capacity(self.len());
        for shard in self.shards() {
            all.extend(
                shard
                    .records
                    .iter()
                    .map(|(c, s)| (*c, Ok(Some(s.unpack())))),
            );
            all.extend(shard.corrupt.iter().map(|(c, d)| (*c, Err(d.clone()))));
        }
        all.sort_by_key(|(c, _)| *c);
        all
    }
}
