//! [`ConsentStore`] on sled: five trees beside the window trees.
//!
//! - `consent`: conversation key → [`MarketingConsent::encode`]'s text;
//! - `free_entry_point`: conversation key → [`FreeEntryPoint::encode`]'s text;
//! - `predicted_costs`, `reported_pricing`: business (8 bytes) + `messageId` (16 bytes) →
//!   the JSON of a [`PredictedCost`] / [`ReportedPricing`];
//! - `reached`: portfolio name, a zero byte, customer key (8 bytes) → when it was last
//!   reached (epoch ms, 8 bytes big-endian).
//!
//! The five trees are tracked by the integrity check (their entries are tallied like the
//! window trees'). A move of a customer (`move_customer`) takes the consent and free
//! entry point records with it in its one transaction, under this module's lock.
//!
//! A sled store is open in one process only, so one lock makes every read-modify-write
//! here atomic; the write is durable (group commit) before the call returns, like the
//! store's other writes.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};

use super::SledStore;
use super::integrity::TrackedTree;
use crate::consent::{
    ConsentEntry, ConsentStore, CostRecord, FreeEntryPoint, MarketingConsent, PredictedCost, Reach,
    ReportedPricing, check_portfolio_name, corrupt_record, pair_cost_records,
    warn_if_confirmation_refused,
};
use crate::{Conversation, MessageId, PhoneNumber, StoreError};

/// The trees and the lock of the consent records, tracked by the integrity check like
/// the window trees.
pub(super) struct ConsentTrees {
    pub(super) consent: TrackedTree,
    pub(super) entry: TrackedTree,
    pub(super) predicted: TrackedTree,
    pub(super) reported: TrackedTree,
    pub(super) reached: TrackedTree,
    /// Held by every read-modify-write of a consent or free entry point record, and by
    /// a move of a customer.
    pub(super) lock: Mutex<()>,
}

impl ConsentTrees {
    /// The names of the trees, in the order [`ConsentTrees::new`] takes them (and the
    /// integrity check lists them).
    pub(super) const NAMES: [&'static str; 5] = [
        "consent",
        "free_entry_point",
        "predicted_costs",
        "reported_pricing",
        "reached",
    ];

    /// The consent trees, opened and tracked, in [`ConsentTrees::NAMES`] order.
    pub(super) fn new([consent, entry, predicted, reported, reached]: [TrackedTree; 5]) -> Self {
        Self {
            consent,
            entry,
            predicted,
            reported,
            reached,
            lock: Mutex::default(),
        }
    }
}

fn cost_key(business: PhoneNumber, message_id: MessageId) -> [u8; 24] {
    let mut key = [0; 24];
    key[..8].copy_from_slice(&business.as_u64().to_be_bytes());
    key[8..].copy_from_slice(message_id.as_bytes());
    key
}

fn reached_prefix(portfolio: &str) -> Result<Vec<u8>, StoreError> {
    check_portfolio_name(portfolio).map_err(|detail| StoreError::InvalidPortfolio { detail })?;
    let mut prefix = portfolio.as_bytes().to_vec();
    prefix.push(0);
    Ok(prefix)
}

/// Every record of a consent tree keyed by conversation, decoded by `decode`; a key that
/// names no conversation is skipped with a warning.
fn list_records<T>(
    tree: &TrackedTree,
    what: &str,
    decode: fn(&str) -> Result<T, String>,
) -> Result<Vec<ConsentEntry<T>>, StoreError> {
    let mut records = Vec::new();
    for entry in tree.iter() {
        let (key, value) = entry?;
        let Some(conversation) = Conversation::from_key(&key) else {
            tracing::warn!(key = ?key, what, "skipping a record whose key names no conversation");
            continue;
        };
        let record = text(&value)
            .and_then(decode)
            .map_err(|detail| corrupt_record(conversation, what, detail));
        records.push((conversation, record));
    }
    Ok(records)
}

fn text(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|_| "the stored value is not UTF-8".to_string())
}

impl SledStore {
    fn consent_trees(&self) -> &ConsentTrees {
        &self.inner.consent
    }

    fn read_consent(&self, conversation: Conversation) -> Result<MarketingConsent, StoreError> {
        Ok(self.stored_consent(conversation)?.unwrap_or_default())
    }

    /// The consent record stored for the conversation, if one is.
    pub(super) fn stored_consent(
        &self,
        conversation: Conversation,
    ) -> Result<Option<MarketingConsent>, StoreError> {
        self.consent_trees()
            .consent
            .get(conversation.to_key())?
            .map(|bytes| {
                text(&bytes)
                    .and_then(MarketingConsent::decode)
                    .map_err(|detail| corrupt_record(conversation, "marketing consent", detail))
            })
            .transpose()
    }

    /// The free entry point record stored for the conversation, if one is.
    pub(super) fn read_entry(
        &self,
        conversation: Conversation,
    ) -> Result<Option<FreeEntryPoint>, StoreError> {
        match self.consent_trees().entry.get(conversation.to_key())? {
            None => Ok(None),
            Some(bytes) => text(&bytes)
                .and_then(FreeEntryPoint::decode)
                .map(Some)
                .map_err(|detail| corrupt_record(conversation, "free entry point", detail)),
        }
    }

    /// Applies `change` to the stored consent under the lock, then waits for durability.
    async fn change_consent(
        &self,
        conversation: Conversation,
        change: impl FnOnce(MarketingConsent) -> MarketingConsent,
    ) -> Result<MarketingConsent, StoreError> {
        let now = {
            let _guard = self
                .consent_trees()
                .lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let now = change(self.read_consent(conversation)?);
            self.consent_trees()
                .consent
                .insert(conversation.to_key(), now.encode().as_bytes())?;
            now
        };
        self.durable().await?;
        Ok(now)
    }

    /// Applies `change` to the stored free entry point record under the lock.
    async fn change_entry(
        &self,
        conversation: Conversation,
        change: impl FnOnce(Option<FreeEntryPoint>) -> Option<FreeEntryPoint>,
    ) -> Result<Option<FreeEntryPoint>, StoreError> {
        let now = {
            let _guard = self
                .consent_trees()
                .lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let before = self.read_entry(conversation)?;
            let now = change(before);
            if now != before
                && let Some(record) = now
            {
                self.consent_trees()
                    .entry
                    .insert(conversation.to_key(), record.encode().as_bytes())?;
            }
            now
        };
        self.durable().await?;
        Ok(now)
    }

    /// Drops the portfolio's customers last reached at or before `cutoff` and answers
    /// the keys of those left, with their times. Under the lock.
    fn live_reached(&self, prefix: &[u8], cutoff: i64) -> Result<HashMap<u64, i64>, StoreError> {
        let mut live = HashMap::new();
        for entry in self.consent_trees().reached.scan_prefix(prefix) {
            let (key, value) = entry?;
            let customer = key[prefix.len()..].try_into().map(u64::from_be_bytes);
            let at = <[u8; 8]>::try_from(value.as_ref()).map(i64::from_be_bytes);
            match (customer, at) {
                (Ok(customer), Ok(at)) if at > cutoff => {
                    live.insert(customer, at);
                }
                _ => {
                    self.consent_trees().reached.remove(key)?;
                }
            }
        }
        Ok(live)
    }
}

impl ConsentStore for SledStore {
    async fn marketing_consent(
        &self,
        conversation: Conversation,
    ) -> Result<MarketingConsent, StoreError> {
        self.read_consent(conversation)
    }

    async fn record_opt_out(
        &self,
        conversation: Conversation,
        opted_out: bool,
        at: DateTime<Utc>,
    ) -> Result<MarketingConsent, StoreError> {
        self.change_consent(conversation, |c| c.with_opt_out(opted_out, at))
            .await
    }

    async fn extend_back_off(
        &self,
        conversation: Conversation,
        until: DateTime<Utc>,
    ) -> Result<MarketingConsent, StoreError> {
        self.change_consent(conversation, |c| c.with_back_off(until))
            .await
    }

    async fn marketing_consents(&self) -> Result<Vec<ConsentEntry<MarketingConsent>>, StoreError> {
        list_records(
            &self.consent_trees().consent,
            "marketing consent",
            MarketingConsent::decode,
        )
    }

    async fn free_entry_points(&self) -> Result<Vec<ConsentEntry<FreeEntryPoint>>, StoreError> {
        list_records(
            &self.consent_trees().entry,
            "free entry point",
            FreeEntryPoint::decode,
        )
    }

    async fn free_entry_point(
        &self,
        conversation: Conversation,
    ) -> Result<Option<FreeEntryPoint>, StoreError> {
        self.read_entry(conversation)
    }

    async fn record_referral(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> Result<FreeEntryPoint, StoreError> {
        let now = self
            .change_entry(conversation, |e| {
                Some(e.unwrap_or_default().with_referral(at))
            })
            .await?;
        Ok(now.unwrap_or_default())
    }

    async fn record_business_reply(
        &self,
        conversation: Conversation,
        reply_at: DateTime<Utc>,
        until: DateTime<Utc>,
        within: TimeDelta,
    ) -> Result<Option<FreeEntryPoint>, StoreError> {
        self.change_entry(conversation, |e| {
            e.map(|e| e.with_reply(reply_at, until, within))
        })
        .await
    }

    async fn confirm_free_entry_point(
        &self,
        conversation: Conversation,
        until: DateTime<Utc>,
        sent_at: DateTime<Utc>,
    ) -> Result<FreeEntryPoint, StoreError> {
        let now = self
            .change_entry(conversation, |e| {
                let now = e.unwrap_or_default().with_confirmation(until, sent_at);
                // A refused confirmation with nothing stored stores nothing.
                (e.is_some() || now.confirmed).then_some(now)
            })
            .await?
            .unwrap_or_default();
        warn_if_confirmation_refused(conversation, &now, until, sent_at);
        Ok(now)
    }

    async fn record_predicted_cost(&self, cost: PredictedCost) -> Result<(), StoreError> {
        let value = cost.encode();
        self.consent_trees().predicted.insert(
            cost_key(cost.conversation.business, cost.message_id),
            value.as_bytes(),
        )?;
        self.durable().await
    }

    async fn record_reported_pricing(
        &self,
        business: PhoneNumber,
        message_id: MessageId,
        pricing: ReportedPricing,
    ) -> Result<(), StoreError> {
        let value = pricing.encode();
        self.consent_trees()
            .reported
            .insert(cost_key(business, message_id), value.as_bytes())?;
        self.durable().await
    }

    async fn cost_records(
        &self,
        business: Option<PhoneNumber>,
    ) -> Result<Vec<CostRecord>, StoreError> {
        let prefix = business
            .map(|b| b.as_u64().to_be_bytes().to_vec())
            .unwrap_or_default();
        let trees = self.consent_trees();
        let mut predicted = Vec::new();
        for entry in trees.predicted.scan_prefix(&prefix) {
            let (key, value) = entry?;
            match PredictedCost::decode(&value) {
                Ok(cost) => predicted.push(cost),
                Err(error) => {
                    tracing::warn!(key = ?key, error, "skipping an unreadable predicted cost");
                }
            }
        }
        let mut reported = HashMap::new();
        for entry in trees.reported.scan_prefix(&prefix) {
            let (key, value) = entry?;
            let business = <[u8; 8]>::try_from(&key[..8.min(key.len())])
                .ok()
                .map(u64::from_be_bytes)
                .and_then(PhoneNumber::from_u64);
            let message_id = key.get(8..).and_then(MessageId::from_slice);
            match (business, message_id, ReportedPricing::decode(&value)) {
                (Some(business), Some(message_id), Ok(pricing)) => {
                    reported.insert((business, message_id), pricing);
                }
                _ => tracing::warn!(key = ?key, "skipping an unreadable reported pricing"),
            }
        }
        Ok(pair_cost_records(predicted, reported))
    }

    async fn reach_customer(
        &self,
        portfolio: &str,
        customer: u64,
        at: DateTime<Utc>,
        limit: u64,
        span: TimeDelta,
    ) -> Result<Reach, StoreError> {
        let prefix = reached_prefix(portfolio)?;
        let at_ms = at.timestamp_millis();
        let reach = {
            let _guard = self
                .consent_trees()
                .lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let live = self.live_reached(&prefix, at_ms - span.num_milliseconds())?;
            let reached = live.len() as u64;
            let mut key = prefix.clone();
            key.extend_from_slice(&customer.to_be_bytes());
            let reach = match live.get(&customer) {
                Some(_) => Reach::AlreadyCounted { reached },
                None if reached >= limit => Reach::LimitReached { reached },
                None => Reach::Counted {
                    reached: reached + 1,
                },
            };
            let previous = live.get(&customer).copied().unwrap_or(i64::MIN);
            if !matches!(reach, Reach::LimitReached { .. }) && at_ms > previous {
                self.consent_trees()
                    .reached
                    .insert(key, &at_ms.to_be_bytes()[..])?;
            }
            reach
        };
        self.durable().await?;
        Ok(reach)
    }

    async fn reached(
        &self,
        portfolio: &str,
        at: DateTime<Utc>,
        span: TimeDelta,
    ) -> Result<u64, StoreError> {
        let prefix = reached_prefix(portfolio)?;
        let cutoff = at.timestamp_millis() - span.num_milliseconds();
        let mut count = 0;
        for entry in self.consent_trees().reached.scan_prefix(&prefix) {
            let (_, value) = entry?;
            if <[u8; 8]>::try_from(value.as_ref())
                .map(i64::from_be_bytes)
                .is_ok_and(|t| t > cutoff)
            {
                count += 1;
            }
        }
        Ok(count)
    }
}
