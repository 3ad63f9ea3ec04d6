//! A store wrapper for tests: counts every call by operation and fails chosen calls, so
//! a test can prove what a caller does when one write fails, or how many store
//! operations a piece of work costs.
//!
//! Enabled by the cargo feature `conformance`, like the conformance suite.
//!
//! ```
//! use lipachat_session::instrumented::InstrumentedStore;
//! use lipachat_session::{Conversation, SledStore, StoreError, WindowStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = InstrumentedStore::new(SledStore::open(dir.path().join("db"))?);
//! let chat = Conversation::parse("254110090747", "254712345678")?;
//! store.fail_next("record_inbound", 1);
//! let error = store.record_inbound(chat, chrono::Utc::now()).await.unwrap_err();
//! assert!(matches!(error, StoreError::Backend(_)));
//! assert!(store.record_inbound(chat, chrono::Utc::now()).await.is_ok());
//! assert_eq!(store.calls("record_inbound"), 2);
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use crate::store::{
    Alias, IdentityStore, InboundReceipt, InboundUpdate, Invitation, MovedRecords, OutboxStore,
    QueuedMessage, RememberedInbound, StoredOutcome, WindowEntry, WindowStore,
};
use crate::{
    Bsuid, Conversation, Customer, GroupId, GroupRef, InboundId, MessageId, PhoneNumber,
    StoreError, UserRef, WindowRecord,
};

#[derive(Default)]
struct Book {
    /// Calls made, by operation name.
    calls: HashMap<&'static str, usize>,
    /// Calls still to fail, by operation name.
    failures: HashMap<&'static str, usize>,
}

/// A store that passes every call to `S`, counting calls per operation (the trait
/// method's name) and failing the next calls of an operation when told to, with
/// [`StoreError::Backend`], before they reach `S` (so a failed call changes nothing).
///
/// Cheap to clone; clones share the counts and the failures to come.
pub struct InstrumentedStore<S> {
    inner: S,
    book: Arc<Mutex<Book>>,
}

impl<S: Clone> Clone for InstrumentedStore<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            book: Arc::clone(&self.book),
        }
    }
}

impl<S> std::fmt::Debug for InstrumentedStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstrumentedStore").finish_non_exhaustive()
    }
}

impl<S> InstrumentedStore<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            book: Arc::default(),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the next `n` calls of `operation` (a trait method's name, such as
    /// `"put_outcome"`) fail without reaching the wrapped store.
    pub fn fail_next(&self, operation: &'static str, n: usize) {
        *self.book().failures.entry(operation).or_default() += n;
    }

    /// How many calls of `operation` were made (failed ones included).
    pub fn calls(&self, operation: &str) -> usize {
        self.book().calls.get(operation).copied().unwrap_or(0)
    }

    /// Every operation called so far, with its count.
    pub fn all_calls(&self) -> HashMap<&'static str, usize> {
        self.book().calls.clone()
    }

    /// Forgets the counts (failures to come stay armed).
    pub fn reset_counts(&self) {
        self.book().calls.clear();
    }

    /// Counts a call of `operation` and fails it if a failure is armed.
    fn enter(&self, operation: &'static str) -> Result<(), StoreError> {
        let mut book = self.book();
        *book.calls.entry(operation).or_default() += 1;
        match book.failures.get_mut(operation) {
            Some(left) if *left > 0 => {
                *left -= 1;
                Err(StoreError::Backend(format!(
                    "injected fault: {operation} failed"
                )))
            }
            _ => Ok(()),
        }
    }
}

impl<S: WindowStore> WindowStore for InstrumentedStore<S> {
    async fn record_inbound(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> Result<InboundUpdate, StoreError> {
        self.enter("record_inbound")?;
        self.inner.record_inbound(conversation, at).await
    }

    async fn record_inbound_once(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
        id: &InboundId,
        received_at: DateTime<Utc>,
        remember_until: DateTime<Utc>,
    ) -> Result<InboundReceipt, StoreError> {
        self.enter("record_inbound_once")?;
        self.inner
            .record_inbound_once(conversation, at, id, received_at, remember_until)
            .await
    }

    async fn remembered_inbound(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<RememberedInbound>, StoreError> {
        self.enter("remembered_inbound")?;
        self.inner.remembered_inbound(now).await
    }

    async fn remember_inbound(
        &self,
        entry: RememberedInbound,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.enter("remember_inbound")?;
        self.inner.remember_inbound(entry, now).await
    }

    async fn record_gateway_closure(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> Result<Option<WindowRecord>, StoreError> {
        self.enter("record_gateway_closure")?;
        self.inner.record_gateway_closure(conversation, at).await
    }

    async fn window(&self, conversation: Conversation) -> Result<Option<WindowRecord>, StoreError> {
        self.enter("window")?;
        self.inner.window(conversation).await
    }

    async fn inbound_between(
        &self,
        after: DateTime<Utc>,
        up_to: DateTime<Utc>,
    ) -> Result<Vec<(Conversation, WindowRecord)>, StoreError> {
        self.enter("inbound_between")?;
        self.inner.inbound_between(after, up_to).await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.enter("count")?;
        self.inner.count().await
    }

    async fn windows(&self) -> Result<Vec<WindowEntry>, StoreError> {
        self.enter("windows")?;
        self.inner.windows().await
    }

    async fn forget(&self, conversation: Conversation) -> Result<bool, StoreError> {
        self.enter("forget")?;
        self.inner.forget(conversation).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.enter("flush")?;
        self.inner.flush().await
    }
}

impl<S: OutboxStore> OutboxStore for InstrumentedStore<S> {
    async fn enqueue(
        &self,
        conversation: Conversation,
        message: QueuedMessage,
        limit: usize,
    ) -> Result<bool, StoreError> {
        self.enter("enqueue")?;
        self.inner.enqueue(conversation, message, limit).await
    }

    async fn queued(&self, conversation: Conversation) -> Result<Vec<QueuedMessage>, StoreError> {
        self.enter("queued")?;
        self.inner.queued(conversation).await
    }

    async fn dequeue(
        &self,
        conversation: Conversation,
        message_id: MessageId,
    ) -> Result<bool, StoreError> {
        self.enter("dequeue")?;
        self.inner.dequeue(conversation, message_id).await
    }

    async fn reassign(
        &self,
        conversation: Conversation,
        old: MessageId,
        new: MessageId,
    ) -> Result<bool, StoreError> {
        self.enter("reassign")?;
        self.inner.reassign(conversation, old, new).await
    }

    async fn conversations_with_queued(&self) -> Result<Vec<Conversation>, StoreError> {
        self.enter("conversations_with_queued")?;
        self.inner.conversations_with_queued().await
    }

    async fn claim(
        &self,
        message_id: MessageId,
        holder: Uuid,
        now: DateTime<Utc>,
        lease: TimeDelta,
    ) -> Result<bool, StoreError> {
        self.enter("claim")?;
        self.inner.claim(message_id, holder, now, lease).await
    }

    async fn release(&self, message_id: MessageId, holder: Uuid) -> Result<(), StoreError> {
        self.enter("release")?;
        self.inner.release(message_id, holder).await
    }

    async fn invitation(
        &self,
        conversation: Conversation,
    ) -> Result<Option<Invitation>, StoreError> {
        self.enter("invitation")?;
        self.inner.invitation(conversation).await
    }

    async fn invitations(&self) -> Result<Vec<(Conversation, Invitation)>, StoreError> {
        self.enter("invitations")?;
        self.inner.invitations().await
    }

    async fn set_invitation(
        &self,
        conversation: Conversation,
        invitation: Option<Invitation>,
    ) -> Result<(), StoreError> {
        self.enter("set_invitation")?;
        self.inner.set_invitation(conversation, invitation).await
    }

    async fn outcome(
        &self,
        conversation: Conversation,
        message_id: MessageId,
    ) -> Result<Option<String>, StoreError> {
        self.enter("outcome")?;
        self.inner.outcome(conversation, message_id).await
    }

    async fn outcome_by_wa_id(
        &self,
        conversation: Conversation,
        wa_id: &str,
    ) -> Result<Option<(MessageId, String)>, StoreError> {
        self.enter("outcome_by_wa_id")?;
        self.inner.outcome_by_wa_id(conversation, wa_id).await
    }

    async fn outcome_conversation(
        &self,
        business: Option<PhoneNumber>,
        message_id: MessageId,
    ) -> Result<Option<Conversation>, StoreError> {
        self.enter("outcome_conversation")?;
        self.inner.outcome_conversation(business, message_id).await
    }

    async fn outcomes(
        &self,
        conversation: Conversation,
    ) -> Result<Vec<(MessageId, String)>, StoreError> {
        self.enter("outcomes")?;
        self.inner.outcomes(conversation).await
    }

    async fn put_outcome(
        &self,
        conversation: Conversation,
        outcome: StoredOutcome,
    ) -> Result<(), StoreError> {
        self.enter("put_outcome")?;
        self.inner.put_outcome(conversation, outcome).await
    }

    async fn enqueue_with_outcome(
        &self,
        conversation: Conversation,
        message: QueuedMessage,
        limit: usize,
        outcome: StoredOutcome,
    ) -> Result<bool, StoreError> {
        self.enter("enqueue_with_outcome")?;
        self.inner
            .enqueue_with_outcome(conversation, message, limit, outcome)
            .await
    }

    async fn dequeue_with_outcome(
        &self,
        conversation: Conversation,
        message_id: MessageId,
        outcome: StoredOutcome,
    ) -> Result<bool, StoreError> {
        self.enter("dequeue_with_outcome")?;
        self.inner
            .dequeue_with_outcome(conversation, message_id, outcome)
            .await
    }
}

impl<S: IdentityStore> IdentityStore for InstrumentedStore<S> {
    async fn user_ref(&self, user: &Bsuid) -> Result<UserRef, StoreError> {
        self.enter("user_ref")?;
        self.inner.user_ref(user).await
    }

    async fn find_user_ref(&self, user: &Bsuid) -> Result<Option<UserRef>, StoreError> {
        self.enter("find_user_ref")?;
        self.inner.find_user_ref(user).await
    }

    async fn group_ref(&self, group: &GroupId) -> Result<GroupRef, StoreError> {
        self.enter("group_ref")?;
        self.inner.group_ref(group).await
    }

    async fn find_group_ref(&self, group: &GroupId) -> Result<Option<GroupRef>, StoreError> {
        self.enter("find_group_ref")?;
        self.inner.find_group_ref(group).await
    }

    async fn user_id(&self, user: UserRef) -> Result<Option<Bsuid>, StoreError> {
        self.enter("user_id")?;
        self.inner.user_id(user).await
    }

    async fn group_id(&self, group: GroupRef) -> Result<Option<GroupId>, StoreError> {
        self.enter("group_id")?;
        self.inner.group_id(group).await
    }

    async fn users(&self) -> Result<Vec<(UserRef, Bsuid)>, StoreError> {
        self.enter("users")?;
        self.inner.users().await
    }

    async fn groups(&self) -> Result<Vec<(GroupRef, GroupId)>, StoreError> {
        self.enter("groups")?;
        self.inner.groups().await
    }

    async fn record_alias(
        &self,
        business: PhoneNumber,
        user: &Bsuid,
        phone: PhoneNumber,
    ) -> Result<Option<PhoneNumber>, StoreError> {
        self.enter("record_alias")?;
        self.inner.record_alias(business, user, phone).await
    }

    async fn alias(
        &self,
        business: PhoneNumber,
        user: &Bsuid,
    ) -> Result<Option<PhoneNumber>, StoreError> {
        self.enter("alias")?;
        self.inner.alias(business, user).await
    }

    async fn aliases(&self) -> Result<Vec<Alias>, StoreError> {
        self.enter("aliases")?;
        self.inner.aliases().await
    }

    async fn move_customer(
        &self,
        business: PhoneNumber,
        from: Customer,
        to: Customer,
    ) -> Result<MovedRecords, StoreError> {
        self.enter("move_customer")?;
        self.inner.move_customer(business, from, to).await
    }
}

impl<S: crate::ConsentStore> crate::ConsentStore for InstrumentedStore<S> {
    async fn marketing_consent(
        &self,
        conversation: Conversation,
    ) -> Result<crate::MarketingConsent, StoreError> {
        self.enter("marketing_consent")?;
        self.inner.marketing_consent(conversation).await
    }

    async fn record_opt_out(
        &self,
        conversation: Conversation,
        opted_out: bool,
        at: DateTime<Utc>,
    ) -> Result<crate::MarketingConsent, StoreError> {
        self.enter("record_opt_out")?;
        self.inner.record_opt_out(conversation, opted_out, at).await
    }

    async fn extend_back_off(
        &self,
        conversation: Conversation,
        until: DateTime<Utc>,
    ) -> Result<crate::MarketingConsent, StoreError> {
        self.enter("extend_back_off")?;
        self.inner.extend_back_off(conversation, until).await
    }

    async fn free_entry_point(
        &self,
        conversation: Conversation,
    ) -> Result<Option<crate::FreeEntryPoint>, StoreError> {
        self.enter("free_entry_point")?;
        self.inner.free_entry_point(conversation).await
    }

    async fn record_referral(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> Result<crate::FreeEntryPoint, StoreError> {
        self.enter("record_referral")?;
        self.inner.record_referral(conversation, at).await
    }

    async fn record_business_reply(
        &self,
        conversation: Conversation,
        reply_at: DateTime<Utc>,
        until: DateTime<Utc>,
        within: TimeDelta,
    ) -> Result<Option<crate::FreeEntryPoint>, StoreError> {
        self.enter("record_business_reply")?;
        self.inner
            .record_business_reply(conversation, reply_at, until, within)
            .await
    }

    async fn confirm_free_entry_point(
        &self,
        conversation: Conversation,
        until: DateTime<Utc>,
        sent_at: DateTime<Utc>,
    ) -> Result<crate::FreeEntryPoint, StoreError> {
        self.enter("confirm_free_entry_point")?;
        self.inner
            .confirm_free_entry_point(conversation, until, sent_at)
            .await
    }

    async fn record_predicted_cost(&self, cost: crate::PredictedCost) -> Result<(), StoreError> {
        self.enter("record_predicted_cost")?;
        self.inner.record_predicted_cost(cost).await
    }

    async fn record_reported_pricing(
        &self,
        business: PhoneNumber,
        message_id: MessageId,
        pricing: crate::ReportedPricing,
    ) -> Result<(), StoreError> {
        self.enter("record_reported_pricing")?;
        self.inner
            .record_reported_pricing(business, message_id, pricing)
            .await
    }

    async fn cost_records(
        &self,
        business: Option<PhoneNumber>,
    ) -> Result<Vec<crate::CostRecord>, StoreError> {
        self.enter("cost_records")?;
        self.inner.cost_records(business).await
    }

    async fn reach_customer(
        &self,
        portfolio: &str,
        customer: u64,
        at: DateTime<Utc>,
        limit: u64,
        span: TimeDelta,
    ) -> Result<crate::Reach, StoreError> {
        self.enter("reach_customer")?;
        self.inner
            .reach_customer(portfolio, customer, at, limit, span)
            .await
    }

    async fn reached(
        &self,
        portfolio: &str,
        at: DateTime<Utc>,
        span: TimeDelta,
    ) -> Result<u64, StoreError> {
        self.enter("reached")?;
        self.inner.reached(portfolio, at, span).await
    }
}
