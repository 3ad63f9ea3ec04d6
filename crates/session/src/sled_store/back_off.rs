//! The customer back-off (131049, [`crate::back_off`]) on sled: one tree, `back_off`,
//! customer key ([`Customer::key`], 8 bytes big-endian) → the back-off end's epoch
//! milliseconds as text ([`encode_back_off`]).
//!
//! The tree is tracked by the integrity check like the others. A sled store is open in
//! one process only, so one lock makes the extend (keep the later end) atomic. Entries
//! are not pruned: one per customer ever limited, a few bytes each.

use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};

use super::SledStore;
use super::integrity::TrackedTree;
use crate::back_off::{BackOffEntry, back_off_of, encode_back_off, extended_back_off};
use crate::{Conversation, Customer, MarketingConsent, StoreError};

/// The customer back-off tree and the lock of its read-modify-writes.
pub(super) struct BackOffTree {
    pub(super) tree: TrackedTree,
    lock: Mutex<()>,
}

impl BackOffTree {
    /// The tree's name (last in the integrity check's list).
    pub(super) const NAME: &'static str = "back_off";

    /// The customer back-off tree, opened and tracked.
    pub(super) fn new(tree: TrackedTree) -> Self {
        Self {
            tree,
            lock: Mutex::default(),
        }
    }
}

fn key(customer: Customer) -> [u8; 8] {
    customer.key().to_be_bytes()
}

impl SledStore {
    fn back_off_tree(&self) -> &BackOffTree {
        &self.inner.back_off
    }

    /// The customer's stored back-off end, if any.
    pub(super) fn read_customer_back_off(
        &self,
        customer: Customer,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.back_off_tree()
            .tree
            .get(key(customer))?
            .map(|bytes| back_off_of(customer, &String::from_utf8_lossy(&bytes)))
            .transpose()
    }

    /// `consent` (the conversation's own record) with its customer's back-off merged in.
    pub(super) fn with_customer_back_off(
        &self,
        conversation: Conversation,
        consent: MarketingConsent,
    ) -> Result<MarketingConsent, StoreError> {
        Ok(consent.with_customer_back_off(self.read_customer_back_off(conversation.customer)?))
    }

    /// [`crate::ConsentStore::extend_customer_back_off`]: under the lock (an unreadable
    /// stored end is replaced), then the durability wait when it wrote.
    pub(super) async fn extend_back_off_of(
        &self,
        customer: Customer,
        until: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, StoreError> {
        crate::back_off::check_back_off(customer)?;
        let (now, wrote) = {
            let tree = self.back_off_tree();
            let _guard = tree.lock.lock().unwrap_or_else(PoisonError::into_inner);
            let stored = self.read_customer_back_off(customer).unwrap_or(None);
            let now = extended_back_off(stored, until);
            let wrote = stored != Some(now);
            if wrote {
                tree.tree
                    .insert(key(customer), encode_back_off(now).as_bytes())?;
            }
            (now, wrote)
        };
        if wrote {
            self.durable().await?;
        }
        Ok(now)
    }

    /// Carries `from`'s back-off to `to` (a customer's identity moved within `business`):
    /// `to`'s becomes the later of the two. `from` keeps its own: the record is the
    /// customer's across business numbers, and another number may still know the
    /// customer by the old identity. An unreadable record of either stops the move
    /// before anything changes ([`StoreError::CorruptBackOff`]). Answers whether `to`'s
    /// changed. Not yet durable.
    pub(super) fn copy_back_off_now(
        &self,
        from: Customer,
        to: Customer,
    ) -> Result<bool, StoreError> {
        let tree = self.back_off_tree();
        let _guard = tree.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(source) = self.read_customer_back_off(from)? else {
            return Ok(false);
        };
        let target = self.read_customer_back_off(to)?;
        let now = extended_back_off(target, source);
        if target == Some(now) {
            return Ok(false);
        }
        tree.tree.insert(key(to), encode_back_off(now).as_bytes())?;
        Ok(true)
    }

    /// Every stored customer back-off; a key that names no customer is skipped with a
    /// warning.
    pub(super) fn list_customer_back_offs(&self) -> Result<Vec<BackOffEntry>, StoreError> {
        let mut entries = Vec::new();
        for entry in self.back_off_tree().tree.iter() {
            let (stored_key, value) = entry?;
            let customer = <[u8; 8]>::try_from(stored_key.as_ref())
                .ok()
                .map(u64::from_be_bytes)
                .and_then(Customer::from_key);
            let Some(customer) = customer else {
                tracing::warn!(key = ?stored_key, "skipping a back-off whose key names no customer");
                continue;
            };
            entries.push((
                customer,
                back_off_of(customer, &String::from_utf8_lossy(&value)),
            ));
        }
        Ok(entries)
    }
}
