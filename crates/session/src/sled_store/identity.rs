//! Identities in the sled store: the registry of user and group handles, aliases, and
//! moving everything stored for one customer to another.
//!
//! | tree         | key                                  | value                         |
//! |--------------|--------------------------------------|-------------------------------|
//! | `identities` | `u` ‖ business-scoped user id        | handle, u64 BE                |
//! | `identities` | `U` ‖ handle u64 BE                  | the user id                   |
//! | `identities` | `g` ‖ group id                       | handle, u64 BE                |
//! | `identities` | `G` ‖ handle u64 BE                  | the group id                  |
//! | `aliases`    | business u64 BE ‖ user id            | phone digits, as recorded     |
//!
//! Both trees are tracked by the integrity check. A handle is allocated under the
//! registry lock as the next after the largest one (starting at 1), and its two entries
//! are written in one sled batch, so a crash never leaves one without the other. A move
//! is one sled transaction over the windows, outbox, invitations, outcomes, consent and
//! free entry point trees, taken under the index locks of both conversations, the outbox
//! lock and the consent lock: it is applied
//! whole or not at all, crash included.

use std::convert::Infallible;
use std::sync::PoisonError;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionResult, TransactionError};

use super::{SledStore, codec, corrupt};
use crate::store::{Alias, MovedRecords, registry_alias_phone, registry_group, registry_user};
use crate::{
    Bsuid, Conversation, Customer, GroupId, GroupRef, MAX_GROUP_REFS, MAX_USER_REFS, PhoneNumber,
    StoreError, UserRef, WindowRecord,
};

/// A kind of handle.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    /// Users known by a business-scoped user id.
    User,
    /// Groups.
    Group,
}

impl Kind {
    fn forward_tag(self) -> u8 {
        match self {
            Self::User => b'u',
            Self::Group => b'g',
        }
    }

    fn reverse_tag(self) -> u8 {
        match self {
            Self::User => b'U',
            Self::Group => b'G',
        }
    }

    fn limit(self) -> u64 {
        match self {
            Self::User => MAX_USER_REFS,
            Self::Group => MAX_GROUP_REFS,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Group => "group",
        }
    }
}

fn forward_key(kind: Kind, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + id.len());
    key.push(kind.forward_tag());
    key.extend_from_slice(id.as_bytes());
    key
}

fn reverse_key(kind: Kind, handle: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = kind.reverse_tag();
    key[1..].copy_from_slice(&handle.to_be_bytes());
    key
}

fn alias_key(business: PhoneNumber, user: &Bsuid) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + user.as_str().len());
    key.extend_from_slice(&business.as_u64().to_be_bytes());
    key.extend_from_slice(user.as_str().as_bytes());
    key
}

fn corrupt_identity(record: String, detail: impl Into<String>) -> StoreError {
    StoreError::CorruptIdentity {
        record,
        detail: detail.into(),
    }
}

fn read_handle(bytes: &[u8], record: impl FnOnce() -> String) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| {
            corrupt_identity(
                record(),
                format!("a handle of {} bytes; expected 8", bytes.len()),
            )
        })
}

/// An alias's phone, stored as its digits.
fn read_phone(business: PhoneNumber, user: &str, bytes: &[u8]) -> Result<PhoneNumber, StoreError> {
    let text = String::from_utf8_lossy(bytes);
    registry_alias_phone(business, user, &text)
}

/// One key a transaction changed: the tree (0 windows, 1 outbox, 2 invitations,
/// 3 outcomes, 4 consent, 5 free entry point), the key, and its value before and after.
type Change = (usize, Vec<u8>, Option<sled::IVec>, Option<Vec<u8>>);

impl SledStore {
    /// The handle of `id`, if allocated.
    pub(super) fn find_handle(&self, kind: Kind, id: &str) -> Result<Option<u64>, StoreError> {
        self.inner
            .identities
            .get(forward_key(kind, id))?
            .map(|bytes| read_handle(&bytes, || format!("{} {id}", kind.name())))
            .transpose()
    }

    /// The handle of `id`, allocated if it has none: the next after the largest, its two
    /// entries in one batch, under the registry lock.
    pub(super) fn handle(&self, kind: Kind, id: &str) -> Result<u64, StoreError> {
        if let Some(handle) = self.find_handle(kind, id)? {
            return Ok(handle);
        }
        let _registry = self
            .inner
            .registry_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Another caller may have allocated it while this one waited.
        if let Some(handle) = self.find_handle(kind, id)? {
            return Ok(handle);
        }
        let next = match self
            .inner
            .identities
            .scan_prefix([kind.reverse_tag()])
            .next_back()
        {
            None => 1,
            Some(entry) => {
                let (key, _) = entry?;
                let last = read_handle(&key[1..], || format!("{} handle key", kind.name()))?;
                last.saturating_add(1)
            }
        };
        if next >= kind.limit() {
            return Err(StoreError::HandlesExhausted { kind: kind.name() });
        }
        let forward = forward_key(kind, id);
        let reverse = reverse_key(kind, next);
        let value = next.to_be_bytes();
        let mut batch = sled::Batch::default();
        batch.insert(&reverse[..], id.as_bytes());
        batch.insert(forward.as_slice(), &value[..]);
        let tree = &self.inner.identities;
        if let Err(error) = tree.for_transaction().apply_batch(batch) {
            tree.failed();
            return Err(error.into());
        }
        // Both keys were absent: checked under the registry lock, the only writer.
        tree.committed(&reverse, None, Some(id.as_bytes()));
        tree.committed(&forward, None, Some(&value));
        Ok(next)
    }

    /// The id a handle stands for, as text.
    pub(super) fn handle_id(&self, kind: Kind, handle: u64) -> Result<Option<String>, StoreError> {
        self.inner
            .identities
            .get(reverse_key(kind, handle))?
            .map(|bytes| {
                String::from_utf8(bytes.to_vec()).map_err(|e| {
                    corrupt_identity(format!("{}#{handle}", kind.name()), e.to_string())
                })
            })
            .transpose()
    }

    /// Every handle of a kind with its id, in handle order.
    pub(super) fn handles(&self, kind: Kind) -> Result<Vec<(u64, String)>, StoreError> {
        self.inner
            .identities
            .scan_prefix([kind.reverse_tag()])
            .map(|entry| {
                let (key, value) = entry?;
                let handle = read_handle(&key[1..], || format!("{} handle key", kind.name()))?;
                let id = String::from_utf8(value.to_vec()).map_err(|e| {
                    corrupt_identity(format!("{}#{handle}", kind.name()), e.to_string())
                })?;
                Ok((handle, id))
            })
            .collect()
    }

    pub(super) fn user_ref_now(&self, user: &Bsuid) -> Result<UserRef, StoreError> {
        let handle = self.handle(Kind::User, user.as_str())?;
        UserRef::new(handle).ok_or(StoreError::HandlesExhausted { kind: "user" })
    }

    pub(super) fn group_ref_now(&self, group: &GroupId) -> Result<GroupRef, StoreError> {
        let handle = self.handle(Kind::Group, group.as_str())?;
        GroupRef::new(handle).ok_or(StoreError::HandlesExhausted { kind: "group" })
    }

    pub(super) fn user_id_now(&self, user: UserRef) -> Result<Option<Bsuid>, StoreError> {
        self.handle_id(Kind::User, user.index())?
            .map(|id| registry_user(user.index(), &id).map(|(_, id)| id))
            .transpose()
    }

    pub(super) fn group_id_now(&self, group: GroupRef) -> Result<Option<GroupId>, StoreError> {
        self.handle_id(Kind::Group, group.index())?
            .map(|id| registry_group(group.index(), &id).map(|(_, id)| id))
            .transpose()
    }

    pub(super) fn record_alias_now(
        &self,
        business: PhoneNumber,
        user: &Bsuid,
        phone: PhoneNumber,
    ) -> Result<Option<PhoneNumber>, StoreError> {
        let old = self
            .inner
            .aliases
            .insert(alias_key(business, user), phone.digits().as_bytes())?;
        Ok(old.and_then(|bytes| {
            // An unreadable old value is replaced: the new fact is worth more.
            read_phone(business, user.as_str(), &bytes)
                .inspect_err(|error| tracing::warn!(%error, "replacing a corrupt alias"))
                .ok()
        }))
    }

    pub(super) fn alias_now(
        &self,
        business: PhoneNumber,
        user: &Bsuid,
    ) -> Result<Option<PhoneNumber>, StoreError> {
        self.inner
            .aliases
            .get(alias_key(business, user))?
            .map(|bytes| read_phone(business, user.as_str(), &bytes))
            .transpose()
    }

    pub(super) fn aliases_now(&self) -> Result<Vec<Alias>, StoreError> {
        self.inner
            .aliases
            .iter()
            .map(|entry| {
                let (key, value) = entry?;
                let unreadable =
                    || corrupt_identity("alias key".into(), "not a business number and a user id");
                let business = key
                    .get(..8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                    .and_then(PhoneNumber::from_u64)
                    .ok_or_else(unreadable)?;
                let user = std::str::from_utf8(&key[8..])
                    .ok()
                    .and_then(|id| Bsuid::parse(id).ok())
                    .ok_or_else(unreadable)?;
                let phone = read_phone(business, user.as_str(), &value)?;
                Ok(Alias {
                    business,
                    user,
                    phone,
                })
            })
            .collect()
    }

    /// Moves everything stored for (`business`, `from`) into (`business`, `to`): one sled
    /// transaction, under both conversations' index locks and the outbox lock, so no
    /// record, queued message or window change of either is written meanwhile (outcomes
    /// and invitations, written without a lock, are read just before: one written for
    /// `from` during the move stays with it, and is not lost). Not yet durable.
    pub(super) fn move_customer_now(
        &self,
        business: PhoneNumber,
        from: Customer,
        to: Customer,
    ) -> Result<MovedRecords, StoreError> {
        let mut moved = MovedRecords::default();
        if from == to {
            return Ok(moved);
        }
        let source = Conversation::with_customer(business, from);
        let target = Conversation::with_customer(business, to);
        let mut shards = self.inner.index.write_pair(&source, &target);
        let _outbox = self.lock_outbox();
        let _consent = self
            .inner
            .consent
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Every journaled outcome becomes a single entry, and none is journaled until the
        // move committed. Dropped first on every way out (with nothing to move too),
        // which tells the sweep of the single entries the unpack wrote.
        let journal = self.hold_unpacked_journal()?;

        // The window: an unreadable source stops the move before anything changes.
        let source_window = shards
            .shard(&source)
            .get(&source)
            .map_err(|detail| corrupt(source, detail))?;
        // An unreadable target is replaced, as a new inbound message replaces it.
        let target_window = shards.shard(&target).get(&target).unwrap_or(None);
        let merged: Option<WindowRecord> =
            source_window.map(|s| target_window.map_or(s, |t| t.merged_with(s)));

        let mut changes: Vec<Change> = Vec::new();
        if let Some(merged) = merged {
            changes.push((
                0,
                codec::window_key(target).to_vec(),
                None,
                Some(codec::encode_window(&merged)),
            ));
            changes.push((0, codec::window_key(source).to_vec(), None, None));
            moved.window = true;
        }

        // The outbox: appended after the target's messages, in order, without a
        // messageId the target holds (the first 16 bytes of a value).
        let message_id = |value: &[u8]| value.get(..16).map(<[u8]>::to_vec);
        let mut held: std::collections::HashSet<Vec<u8>> = self
            .inner
            .outbox
            .scan_prefix(target.to_key())
            .values()
            .map(|value| value.map(|v| message_id(&v)))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
        for entry in self.inner.outbox.scan_prefix(source.to_key()) {
            let (key, value) = entry?;
            let id = message_id(&value);
            if id.as_ref().is_none_or(|id| held.insert(id.clone())) {
                let sequence = self.inner.db.generate_id()?;
                changes.push((
                    1,
                    codec::outbox_key(target, sequence).to_vec(),
                    None,
                    Some(value.to_vec()),
                ));
                moved.queued += 1;
            }
            changes.push((1, key.to_vec(), None, None));
        }

        // The invitation: the later one is kept (an unreadable one loses to a readable).
        if let Some(invitation) = self.inner.invitations.get(source.to_key())? {
            let keep_source = match self.inner.invitations.get(target.to_key())? {
                None => true,
                Some(existing) => match (
                    codec::decode_invitation(&invitation),
                    codec::decode_invitation(&existing),
                ) {
                    (Ok(source), Ok(target)) => source.sent_at > target.sent_at,
                    (Ok(_), Err(_)) => true,
                    (Err(_), _) => false,
                },
            };
            if keep_source {
                changes.push((2, target.to_key().to_vec(), None, Some(invitation.to_vec())));
                moved.invitation = true;
            }
            changes.push((2, source.to_key().to_vec(), None, None));
        }

        // The outcomes: the target's own wins for a messageId both hold.
        for entry in self.inner.outcomes.scan_prefix(source.to_key()) {
            let (key, value) = entry?;
            if let Some(id) = key.get(16..32) {
                let mut target_key = target.to_key().to_vec();
                target_key.extend_from_slice(id);
                if self.inner.outcomes.get(&target_key)?.is_none() {
                    changes.push((3, target_key, None, Some(value.to_vec())));
                    moved.outcomes += 1;
                }
            }
            changes.push((3, key.to_vec(), None, None));
        }

        // The consent and free entry point records, merged with the target's.
        let consent_moved = self.move_consent_changes(source, target, &mut changes)?;
        moved.consent = consent_moved.0;
        moved.free_entry_point = consent_moved.1;

        if changes.is_empty() {
            return Ok(moved);
        }
        let trees = [
            &self.inner.windows,
            &self.inner.outbox,
            &self.inner.invitations,
            &self.inner.outcomes,
            &self.inner.consent.consent,
            &self.inner.consent.entry,
        ];
        for (tree, key, _, new) in &changes {
            if new.is_some() {
                trees[*tree].will_write(key);
            }
        }
        let result = (
            trees[0].for_transaction(),
            trees[1].for_transaction(),
            trees[2].for_transaction(),
            trees[3].for_transaction(),
            trees[4].for_transaction(),
            trees[5].for_transaction(),
        )
            .transaction(|(windows, outbox, invitations, outcomes, consent, entry)| {
                let tx = [windows, outbox, invitations, outcomes, consent, entry];
                let mut done = changes.clone();
                for (tree, key, old, new) in &mut done {
                    *old = match new {
                        Some(value) => tx[*tree].insert(key.as_slice(), value.as_slice())?,
                        None => tx[*tree].remove(key.as_slice())?,
                    };
                }
                ConflictableTransactionResult::<_, Infallible>::Ok(done)
            });
        let done = match result {
            Ok(done) => done,
            Err(TransactionError::Storage(error)) => {
                for tree in trees {
                    tree.failed();
                }
                return Err(error.into());
            }
            Err(TransactionError::Abort(never)) => match never {},
        };
        // The WhatsApp id index and the sweep read outcomes through the journal.
        drop(journal);
        for (tree, key, old, new) in &done {
            trees[*tree].committed(key, old.as_deref(), new.as_deref());
            // Outcomes are also indexed by WhatsApp id, in memory.
            if *tree == 3 {
                self.outcome_moved(key, old.as_deref(), new.as_deref());
            }
        }
        if let Some(merged) = merged {
            shards.shard(&target).put(target, &merged);
            shards.shard(&source).remove(&source);
        }
        Ok(moved)
    }

    /// The changes moving the consent and free entry point records of `source` into
    /// `target` (merged with the target's: [`crate::MarketingConsent::merged_with`],
    /// [`crate::FreeEntryPoint::merged_with`]); whether each moved. An unreadable record of
    /// either stops the move before anything changes. Under the consent lock.
    fn move_consent_changes(
        &self,
        source: Conversation,
        target: Conversation,
        changes: &mut Vec<Change>,
    ) -> Result<(bool, bool), StoreError> {
        let source_consent = self.stored_consent(source)?;
        let target_consent = self.stored_consent(target)?;
        let source_entry = self.read_entry(source)?;
        let target_entry = self.read_entry(target)?;
        let source_key = source.to_key().to_vec();
        let target_key = target.to_key().to_vec();
        let consent_moved = source_consent.is_some();
        if let Some(from) = source_consent {
            let merged = target_consent.map_or(from, |to| to.merged_with(from));
            changes.push((
                4,
                target_key.clone(),
                None,
                Some(merged.encode().into_bytes()),
            ));
            changes.push((4, source_key.clone(), None, None));
        }
        let entry_moved = source_entry.is_some();
        if let Some(from) = source_entry {
            let merged = target_entry.map_or(from, |to| to.merged_with(from));
            changes.push((5, target_key, None, Some(merged.encode().into_bytes())));
            changes.push((5, source_key, None, None));
        }
        Ok((consent_moved, entry_moved))
    }
}
