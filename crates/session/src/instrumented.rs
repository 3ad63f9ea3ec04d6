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
//! assert!(matches!(error, StoreError::Backend { .. }));
//! assert!(error.retry_later_may_help());
//! assert!(store.record_inbound(chat, chrono::Utc::now()).await.is_ok());
//! assert_eq!(store.calls("record_inbound"), 2);
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

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

/// The name an injected failure gives as [`StoreError::Backend`]'s `backend`.
pub const INJECTED_BACKEND: &str = "injected";

/// How an injected fault strikes one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The call fails without reaching the wrapped store: nothing changes.
    Before,
    /// The call reaches the wrapped store and does its work, then its answer is lost: the
    /// caller gets an error for a change that was made.
    After,
    /// The call waits this long (a paused process, a slow link), then goes through.
    Pause(Duration),
}

/// What runs as a chosen call begins ([`InstrumentedStore::at_call`]).
type Hook = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Book {
    /// Calls made, by operation name.
    calls: HashMap<&'static str, usize>,
    /// Every call made, in order.
    order: Vec<&'static str>,
    /// Calls still to fail before reaching the store, by operation name.
    failures: HashMap<&'static str, usize>,
    /// The one numbered call of an operation to strike, and how.
    fault: Option<(&'static str, usize, Fault)>,
    /// Whether that fault struck.
    struck: bool,
    /// What to run as the `n`th call (of any operation) begins.
    hook: Option<(usize, Hook)>,
}

/// A store that passes every call to `S`, counting calls per operation (the trait
/// method's name) and in order, and failing chosen calls with [`StoreError::Backend`]
/// (backend [`INJECTED_BACKEND`], worth retrying): the next calls of an operation
/// ([`InstrumentedStore::fail_next`]), or one numbered call, before or after it reaches
/// `S`, or after a pause ([`InstrumentedStore::fault_at`]).
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

    /// Makes the `nth` call (from 1, counting every call of `operation` since the store
    /// was wrapped) strike with `fault`; replaces a fault chosen before.
    pub fn fault_at(&self, operation: &'static str, nth: usize, fault: Fault) {
        let mut book = self.book();
        book.fault = Some((operation, nth, fault));
        book.struck = false;
    }

    /// Whether the fault chosen with [`InstrumentedStore::fault_at`] struck.
    pub fn struck(&self) -> bool {
        self.book().struck
    }

    /// Runs `hook` as the `nth` call (from 1, of any operation) begins, before it reaches
    /// the wrapped store: a test kills its process there, for example.
    pub fn at_call(&self, nth: usize, hook: impl FnOnce() + Send + 'static) {
        self.book().hook = Some((nth, Box::new(hook)));
    }

    /// How many calls of `operation` were made (failed ones included).
    pub fn calls(&self, operation: &str) -> usize {
        self.book().calls.get(operation).copied().unwrap_or(0)
    }

    /// Every operation called so far, with its count.
    pub fn all_calls(&self) -> HashMap<&'static str, usize> {
        self.book().calls.clone()
    }

    /// Every call so far, in order.
    pub fn order(&self) -> Vec<&'static str> {
        self.book().order.clone()
    }

    /// Forgets the counts and the order (failures to come stay armed).
    pub fn reset_counts(&self) {
        let mut book = self.book();
        book.calls.clear();
        book.order.clear();
    }

    /// Counts a call of `operation`, runs the hook due at it, and strikes it if a fault
    /// is armed for it.
    async fn call<T>(
        &self,
        operation: &'static str,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let (hook, fault) = {
            let mut book = self.book();
            book.order.push(operation);
            let made = book.order.len();
            let hook = match book.hook.take() {
                Some((at, hook)) if at == made => Some(hook),
                other => {
                    book.hook = other;
                    None
                }
            };
            let count = book.calls.entry(operation).or_default();
            *count += 1;
            let nth = *count;
            let fault = match book.failures.get_mut(operation) {
                Some(left) if *left > 0 => {
                    *left -= 1;
                    Some(Fault::Before)
                }
                _ => match book.fault {
                    Some((chosen, at, fault)) if chosen == operation && at == nth => {
                        book.struck = true;
                        Some(fault)
                    }
                    _ => None,
                },
            };
            (hook, fault)
        };
        if let Some(hook) = hook {
            hook();
        }
        let injected = || {
            StoreError::backend_unavailable(
                INJECTED_BACKEND,
                format!("injected fault: {operation} failed"),
            )
        };
        match fault {
            None => work.await,
            Some(Fault::Before) => Err(injected()),
            Some(Fault::After) => {
                let _ = work.await;
                Err(injected())
            }
            Some(Fault::Pause(pause)) => {
                tokio::time::sleep(pause).await;
                work.await
            }
        }
    }
}

impl<S: WindowStore> WindowStore for InstrumentedStore<S> {
    async fn record_inbound(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> Result<InboundUpdate, StoreError> {
        self.call(
            "record_inbound",
            self.inner.record_inbound(conversation, at),
        )
        .await
    }

    async fn record_inbound_once(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
        id: &InboundId,
        received_at: DateTime<Utc>,
        remember_until: DateTime<Utc>,
    ) -> Result<InboundReceipt, StoreError> {
        self.call(
            "record_inbound_once",
            self.inner
                .record_inbound_once(conversation, at, id, received_at, remember_until),
        )
        .await
    }

    async fn remembered_inbound(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<RememberedInbound>, StoreError> {
        self.call("remembered_inbound", self.inner.remembered_inbound(now))
            .await
    }

    async fn remember_inbound(
        &self,
        entry: RememberedInbound,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.call("remember_inbound", self.inner.remember_inbound(entry, now))
            .await
    }

    async fn record_gateway_closure(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> Result<Option<WindowRecord>, StoreError> {
        self.call(
            "record_gateway_closure",
            self.inner.record_gateway_closure(conversation, at),
        )
        .await
    }

    async fn window(&self, conversation: Conversation) -> Result<Option<WindowRecord>, StoreError> {
        self.call("window", self.inner.window(conversation)).await
    }

    async fn inbound_between(
        &self,
        after: DateTime<Utc>,
        up_to: DateTime<Utc>,
    ) -> Result<Vec<(Conversation, WindowRecord)>, StoreError> {
        self.call("inbound_between", self.inner.inbound_between(after, up_to))
            .await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.call("count", self.inner.count()).await
    }

    async fn windows(&self) -> Result<Vec<WindowEntry>, StoreError> {
        self.call("windows", self.inner.windows()).await
    }

    async fn forget(&self, conversation: Conversation) -> Result<bool, StoreError> {
        self.call("forget", self.inner.forget(conversation)).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.call("flush", self.inner.flush()).await
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        self.call("check_writable", self.inner.check_writable())
            .await
    }
}

impl<S: OutboxStore> OutboxStore for InstrumentedStore<S> {
    async fn enqueue(
        &self,
        conversation: Conversation,
        message: QueuedMessage,
        limit: usize,
    ) -> Result<bool, StoreError> {
        self.call("enqueue", self.inner.enqueue(conversation, message, limit))
            .await
    }

    async fn queued(&self, conversation: Conversation) -> Result<Vec<QueuedMessage>, StoreError> {
        self.call("queued", self.inner.queued(conversation)).await
    }

    async fn dequeue(
        &self,
        conversation: Conversation,
        message_id: MessageId,
    ) -> Result<bool, StoreError> {
        self.call("dequeue", self.inner.dequeue(conversation, message_id))
            .await
    }

    async fn reassign(
        &self,
        conversation: Conversation,
        old: MessageId,
        new: MessageId,
    ) -> Result<bool, StoreError> {
        self.call("reassign", self.inner.reassign(conversation, old, new))
            .await
    }

    async fn conversations_with_queued(&self) -> Result<Vec<Conversation>, StoreError> {
        self.call(
            "conversations_with_queued",
            self.inner.conversations_with_queued(),
        )
        .await
    }

    async fn claim(
        &self,
        message_id: MessageId,
        holder: Uuid,
        now: DateTime<Utc>,
        lease: TimeDelta,
    ) -> Result<bool, StoreError> {
        self.call("claim", self.inner.claim(message_id, holder, now, lease))
            .await
    }

    async fn release(&self, message_id: MessageId, holder: Uuid) -> Result<(), StoreError> {
        self.call("release", self.inner.release(message_id, holder))
            .await
    }

    async fn invitation(
        &self,
        conversation: Conversation,
    ) -> Result<Option<Invitation>, StoreError> {
        self.call("invitation", self.inner.invitation(conversation))
            .await
    }

    async fn invitations(&self) -> Result<Vec<(Conversation, Invitation)>, StoreError> {
        self.call("invitations", self.inner.invitations()).await
    }

    async fn set_invitation(
        &self,
        conversation: Conversation,
        invitation: Option<Invitation>,
    ) -> Result<(), StoreError> {
        self.call(
            "set_invitation",
            self.inner.set_invitation(conversation, invitation),
        )
        .await
    }

    async fn outcome(
        &self,
        conversation: Conversation,
        message_id: MessageId,
    ) -> Result<Option<String>, StoreError> {
        self.call("outcome", self.inner.outcome(conversation, message_id))
            .await
    }

    async fn outcome_by_wa_id(
        &self,
        conversation: Conversation,
        wa_id: &str,
    ) -> Result<Option<(MessageId, String)>, StoreError> {
        self.call(
            "outcome_by_wa_id",
            self.inner.outcome_by_wa_id(conversation, wa_id),
        )
        .await
    }

    async fn outcome_conversation(
        &self,
        business: Option<PhoneNumber>,
        message_id: MessageId,
    ) -> Result<Option<Conversation>, StoreError> {
        self.call(
            "outcome_conversation",
            self.inner.outcome_conversation(business, message_id),
        )
        .await
    }

    async fn outcome_conversation_by_wa_id(
        &self,
        business: Option<PhoneNumber>,
        wa_id: &str,
    ) -> Result<Option<(Conversation, MessageId)>, StoreError> {
        self.call(
            "outcome_conversation_by_wa_id",
            self.inner.outcome_conversation_by_wa_id(business, wa_id),
        )
        .await
    }

    async fn outcomes(
        &self,
        conversation: Conversation,
    ) -> Result<Vec<(MessageId, String)>, StoreError> {
        self.call("outcomes", self.inner.outcomes(conversation))
            .await
    }

    async fn put_outcome(
        &self,
        conversation: Conversation,
        outcome: StoredOutcome,
    ) -> Result<(), StoreError> {
        self.call("put_outcome", self.inner.put_outcome(conversation, outcome))
            .await
    }

    async fn enqueue_with_outcome(
        &self,
        conversation: Conversation,
        message: QueuedMessage,
        limit: usize,
        outcome: StoredOutcome,
    ) -> Result<bool, StoreError> {
        self.call(
            "enqueue_with_outcome",
            self.inner
                .enqueue_with_outcome(conversation, message, limit, outcome),
        )
        .await
    }

    async fn dequeue_with_outcome(
        &self,
        conversation: Conversation,
        message_id: MessageId,
        outcome: StoredOutcome,
    ) -> Result<bool, StoreError> {
        self.call(
            "dequeue_with_outcome",
            self.inner
                .dequeue_with_outcome(conversation, message_id, outcome),
        )
        .await
    }
}

impl<S: IdentityStore> IdentityStore for InstrumentedStore<S> {
    async fn user_ref(&self, user: &Bsuid) -> Result<UserRef, StoreError> {
        self.call("user_ref", self.inner.user_ref(user)).await
    }

    async fn find_user_ref(&self, user: &Bsuid) -> Result<Option<UserRef>, StoreError> {
        self.call("find_user_ref", self.inner.find_user_ref(user))
            .await
    }

    async fn group_ref(&self, group: &GroupId) -> Result<GroupRef, StoreError> {
        self.call("group_ref", self.inner.group_ref(group)).await
    }

    async fn find_group_ref(&self, group: &GroupId) -> Result<Option<GroupRef>, StoreError> {
        self.call("find_group_ref", self.inner.find_group_ref(group))
            .await
    }

    async fn user_id(&self, user: UserRef) -> Result<Option<Bsuid>, StoreError> {
        self.call("user_id", self.inner.user_id(user)).await
    }

    async fn group_id(&self, group: GroupRef) -> Result<Option<GroupId>, StoreError> {
        self.call("group_id", self.inner.group_id(group)).await
    }

    async fn users(&self) -> Result<Vec<(UserRef, Bsuid)>, StoreError> {
        self.call("users", self.inner.users()).await
    }

    async fn groups(&self) -> Result<Vec<(GroupRef, GroupId)>, StoreError> {
        self.call("groups", self.inner.groups()).await
    }

    async fn record_alias(
        &self,
        business: PhoneNumber,
        user: &Bsuid,
        phone: PhoneNumber,
    ) -> Result<Option<PhoneNumber>, StoreError> {
        self.call(
            "record_alias",
            self.inner.record_alias(business, user, phone),
        )
        .await
    }

    async fn alias(
        &self,
        business: PhoneNumber,
        user: &Bsuid,
    ) -> Result<Option<PhoneNumber>, StoreError> {
        self.call("alias", self.inner.alias(business, user)).await
    }

    async fn aliases(&self) -> Result<Vec<Alias>, StoreError> {
        self.call("aliases", self.inner.aliases()).await
    }

    async fn move_customer(
        &self,
        business: PhoneNumber,
        from: Customer,
        to: Customer,
    ) -> Result<MovedRecords, StoreError> {
        self.call(
            "move_customer",
            self.inner.move_customer(business, from, to),
        )
        .await
    }
}

impl<S: crate::ConsentStore> crate::ConsentStore for InstrumentedStore<S> {
    async fn marketing_consent(
        &self,
        conversation: Conversation,
    ) -> Result<crate::MarketingConsent, StoreError> {
        self.call(
            "marketing_consent",
            self.inner.marketing_consent(conversation),
        )
        .await
    }

    async fn record_opt_out(
        &self,
        conversation: Conversation,
        opted_out: bool,
        at: DateTime<Utc>,
    ) -> Result<crate::MarketingConsent, StoreError> {
        self.call(
            "record_opt_out",
            self.inner.record_opt_out(conversation, opted_out, at),
        )
        .await
    }

    async fn extend_back_off(
        &self,
        conversation: Conversation,
        until: DateTime<Utc>,
    ) -> Result<crate::MarketingConsent, StoreError> {
        self.call(
            "extend_back_off",
            self.inner.extend_back_off(conversation, until),
        )
        .await
    }

    async fn extend_customer_back_off(
        &self,
        customer: crate::Customer,
        until: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, StoreError> {
        self.call(
            "extend_customer_back_off",
            self.inner.extend_customer_back_off(customer, until),
        )
        .await
    }

    async fn customer_back_off(
        &self,
        customer: crate::Customer,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.call("customer_back_off", self.inner.customer_back_off(customer))
            .await
    }

    async fn customer_back_offs(&self) -> Result<Vec<crate::back_off::BackOffEntry>, StoreError> {
        self.call("customer_back_offs", self.inner.customer_back_offs())
            .await
    }

    async fn marketing_consents(
        &self,
    ) -> Result<Vec<crate::consent::ConsentEntry<crate::MarketingConsent>>, StoreError> {
        self.call("marketing_consents", self.inner.marketing_consents())
            .await
    }

    async fn free_entry_points(
        &self,
    ) -> Result<Vec<crate::consent::ConsentEntry<crate::FreeEntryPoint>>, StoreError> {
        self.call("free_entry_points", self.inner.free_entry_points())
            .await
    }

    async fn free_entry_point(
        &self,
        conversation: Conversation,
    ) -> Result<Option<crate::FreeEntryPoint>, StoreError> {
        self.call(
            "free_entry_point",
            self.inner.free_entry_point(conversation),
        )
        .await
    }

    async fn record_referral(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> Result<crate::FreeEntryPoint, StoreError> {
        self.call(
            "record_referral",
            self.inner.record_referral(conversation, at),
        )
        .await
    }

    async fn record_business_reply(
        &self,
        conversation: Conversation,
        reply_at: DateTime<Utc>,
        until: DateTime<Utc>,
        within: TimeDelta,
    ) -> Result<Option<crate::FreeEntryPoint>, StoreError> {
        self.call(
            "record_business_reply",
            self.inner
                .record_business_reply(conversation, reply_at, until, within),
        )
        .await
    }

    async fn confirm_free_entry_point(
        &self,
        conversation: Conversation,
        until: DateTime<Utc>,
        sent_at: DateTime<Utc>,
    ) -> Result<crate::FreeEntryPoint, StoreError> {
        self.call(
            "confirm_free_entry_point",
            self.inner
                .confirm_free_entry_point(conversation, until, sent_at),
        )
        .await
    }

    async fn record_predicted_cost(&self, cost: crate::PredictedCost) -> Result<(), StoreError> {
        self.call(
            "record_predicted_cost",
            self.inner.record_predicted_cost(cost),
        )
        .await
    }

    async fn record_reported_pricing(
        &self,
        business: PhoneNumber,
        message_id: MessageId,
        pricing: crate::ReportedPricing,
    ) -> Result<(), StoreError> {
        self.call(
            "record_reported_pricing",
            self.inner
                .record_reported_pricing(business, message_id, pricing),
        )
        .await
    }

    async fn cost_records(
        &self,
        business: Option<PhoneNumber>,
    ) -> Result<Vec<crate::CostRecord>, StoreError> {
        self.call("cost_records", self.inner.cost_records(business))
            .await
    }

    async fn reach_customer(
        &self,
        portfolio: &str,
        customer: u64,
        at: impl Into<crate::CountTime> + Send,
        limit: u64,
        span: TimeDelta,
    ) -> Result<crate::Reach, StoreError> {
        let at = at.into();
        self.call(
            "reach_customer",
            self.inner
                .reach_customer(portfolio, customer, at, limit, span),
        )
        .await
    }

    async fn reached(
        &self,
        portfolio: &str,
        at: impl Into<crate::CountTime> + Send,
        span: TimeDelta,
    ) -> Result<u64, StoreError> {
        let at = at.into();
        self.call("reached", self.inner.reached(portfolio, at, span))
            .await
    }
}
