//! The session engine: a store, a clock and the window rule, answering "may I send?".

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use crate::store::{InboundReceipt, InboundUpdate, WindowStore};
use crate::window::saturating_add;
use crate::{
    Clock, Conversation, FutureTimeError, InboundId, PhoneError, PhoneParser, SendDecision,
    SkewLimit, StoreError, StoredTime, SystemClock, WindowRule, WindowState,
};

/// A failure of the session engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// A time too far ahead of the real clock, or of the examined one, to be stored (see
    /// [`SkewLimit`]); nothing was stored.
    #[error(transparent)]
    FutureTime(#[from] FutureTimeError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What recording an inbound message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// The stored records before and after.
    pub update: InboundUpdate,
    /// The window's state now.
    pub state: WindowState,
    /// Whether this message opened a window that was not open (never messaged, expired or
    /// closed by the gateway): messages waiting for the customer's reply may now go.
    pub opened: bool,
}

/// What recording an inbound message by its platform id did
/// ([`Sessions::record_inbound_once`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordedOnce {
    /// The first copy of the message: recorded.
    First(Recorded),
    /// A redelivered copy of a message already recorded: nothing was stored. Do not answer
    /// it again.
    Duplicate {
        /// When the first copy was received.
        first_received_at: DateTime<Utc>,
        /// The window's state now.
        state: WindowState,
    },
}

impl RecordedOnce {
    /// Whether this copy was recorded (the first one).
    pub fn is_recorded(&self) -> bool {
        matches!(self, Self::First(_))
    }

    /// The window's state now.
    pub fn state(&self) -> WindowState {
        match self {
            Self::First(recorded) => recorded.state,
            Self::Duplicate { state, .. } => *state,
        }
    }
}

/// The session engine over a store.
///
/// ```
/// use chrono::TimeDelta;
/// use lipachat_session::{Conversation, ManualClock, Sessions, SledStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let clock = ManualClock::at("2026-11-23T10:00:00Z".parse()?);
/// let sessions = Sessions::new(SledStore::open(dir.path().join("db"))?).with_clock(clock.clone());
/// let chat = Conversation::parse("254110090747", "254712345678")?;
///
/// assert!(!sessions.decide(chat).await?.is_allowed()); // never messaged
/// let recorded = sessions.record_inbound_now(chat).await?;
/// assert!(recorded.opened);
/// assert!(sessions.decide(chat).await?.is_allowed());
/// clock.advance(TimeDelta::hours(24));
/// assert_eq!(sessions.state(chat).await?.name(), "closed");
/// # Ok(())
/// # }
/// ```
///
/// An engine is aligned to 128 bytes, so in an `Arc<Sessions<_>>` (or an app state that
/// holds one) it starts two cache lines after the reference counts. Each clone of the
/// `Arc` (a web framework clones its state for every request) writes those counts;
/// sharing a cache line with them, the engine's own fields were pulled from core to core
/// on every check, which cost about a quarter of a window check's throughput on two
/// cores (`docs/performance.md`). 128 rather than 64: Intel cores fetch lines in pairs.
#[derive(Debug, Clone)]
#[repr(align(128))]
pub struct Sessions<S> {
    store: S,
    /// The real time: stored times are bounded by it.
    clock: Arc<dyn Clock>,
    /// The time windows are examined at, when not the real time (a debug tool's `--now`).
    examined: Option<Arc<dyn Clock>>,
    rule: WindowRule,
    skew: SkewLimit,
    redelivery_horizon: TimeDelta,
    phones: PhoneParser,
}

impl<S: WindowStore> Sessions<S> {
    /// The default tolerated clock skew for stored times: 5 minutes
    /// ([`SkewLimit::DEFAULT_MAX_SKEW`]).
    pub const DEFAULT_MAX_SKEW: TimeDelta = SkewLimit::DEFAULT_MAX_SKEW;

    /// An engine over `store` with the system clock, the default rule (24 h window, 60 s
    /// margin) and a 5-minute skew tolerance.
    pub fn new(store: S) -> Self {
        Self {
            store,
            clock: Arc::new(SystemClock),
            examined: None,
            rule: WindowRule::default(),
            skew: SkewLimit::default(),
            redelivery_horizon: Self::DEFAULT_REDELIVERY_HORIZON,
            phones: PhoneParser::international(),
        }
    }

    /// Reads phone numbers written by people ([`Sessions::conversation`]) with a default
    /// country: national numbers (a leading trunk `0`, or that country's national length
    /// written without `+`) take it.
    pub fn with_default_country(mut self, phones: PhoneParser) -> Self {
        self.phones = phones;
        self
    }

    /// The phone parser of [`Sessions::conversation`].
    pub fn phones(&self) -> PhoneParser {
        self.phones
    }

    /// The conversation between two numbers written by people (a form, a command line),
    /// read with the default country if one is set ([`Sessions::with_default_country`]).
    pub fn conversation(&self, business: &str, customer: &str) -> Result<Conversation, PhoneError> {
        Ok(Conversation::new(
            self.phones.parse(business)?,
            self.phones.parse(customer)?,
        ))
    }

    /// How long an inbound message id is remembered by default: 7 days, as long as
    /// WhatsApp retries a webhook.
    pub const DEFAULT_REDELIVERY_HORIZON: TimeDelta = TimeDelta::days(7);

    /// Sets how long inbound message ids are remembered to recognise redeliveries,
    /// counted from receipt ([`Sessions::record_inbound_once`]). Negative spans count as 0.
    pub fn with_redelivery_horizon(mut self, horizon: TimeDelta) -> Self {
        self.redelivery_horizon = horizon.max(TimeDelta::zero());
        self
    }

    /// How long inbound message ids are remembered.
    pub fn redelivery_horizon(&self) -> TimeDelta {
        self.redelivery_horizon
    }

    /// Uses another clock as the real time (a test, a simulation): what "now" is when
    /// deciding and recording, and what times written to the store are bounded by.
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Examines windows at another clock's time (a debug tool's `--now`): decisions, states
    /// and the default time of a record follow it, while a time written is still refused
    /// beyond the skew ahead of the real clock ([`Sessions::with_clock`], else the system
    /// clock), and ahead of this one. A clock set into the future therefore cannot store
    /// its time; one set into the past records history. It is for examining, not for a
    /// send path: the gateway judges the window by the real time.
    pub fn with_examined_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.examined = Some(Arc::new(clock));
        self
    }

    /// The same engine on the real time alone: an examined clock
    /// ([`Sessions::with_examined_clock`]) is dropped. What sends works on the real time,
    /// as the gateway does.
    pub fn on_real_time(mut self) -> Self {
        self.examined = None;
        self
    }

    /// Uses another window rule (length and margin).
    pub fn with_rule(mut self, rule: WindowRule) -> Self {
        self.rule = rule;
        self
    }

    /// Sets how far ahead of the clock a stored time may be.
    pub fn with_max_skew(mut self, max_skew: TimeDelta) -> Self {
        self.skew = SkewLimit::new(max_skew);
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The window rule.
    pub fn rule(&self) -> WindowRule {
        self.rule
    }

    /// The clock windows are examined at: the examined clock if one was given, else the
    /// real clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        self.examined.as_ref().unwrap_or(&self.clock)
    }

    /// The time windows are examined at now ([`Sessions::clock`]'s).
    pub fn now(&self) -> DateTime<Utc> {
        self.clock().now()
    }

    /// Refuses a time about to be stored beyond the skew ahead of the real clock or of the
    /// examined one: the check every time this engine stores goes through, for callers
    /// that store other records with an event time (a marketing choice, say), so a
    /// future-dated one cannot pin its state forever.
    pub fn check_stored_time(
        &self,
        what: StoredTime,
        at: DateTime<Utc>,
    ) -> Result<(), SessionError> {
        Ok(self
            .skew
            .check_examined(what, at, self.clock.now(), self.now())?)
    }

    /// Records an inbound message sent (or received) at `at`.
    ///
    /// The stored time only moves forward. A time more than the skew tolerance ahead of
    /// the clock (the real one, or the examined one) is refused and nothing is stored.
    pub async fn record_inbound(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> Result<Recorded, SessionError> {
        self.check_stored_time(StoredTime::Inbound, at)?;
        let update = self.store.record_inbound(conversation, at).await?;
        // The state is told as of after the store answered, as `state` does.
        Ok(self.recorded(update, self.now()))
    }

    /// Records an inbound message sent (or received) at `at`, unless a message with the
    /// same platform `id` to the same business number was already recorded within the
    /// redelivery horizon ([`Sessions::with_redelivery_horizon`], counted from receipt on
    /// the real clock): then nothing is stored and [`RecordedOnce::Duplicate`] says so, so
    /// the bot does not answer a redelivered webhook twice.
    ///
    /// A time more than the skew tolerance ahead of the clock is refused and nothing is
    /// stored (the id is not remembered either).
    pub async fn record_inbound_once(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
        id: &InboundId,
    ) -> Result<RecordedOnce, SessionError> {
        self.check_stored_time(StoredTime::Inbound, at)?;
        let received_at = self.clock.now();
        let until = saturating_add(received_at, self.redelivery_horizon);
        // The states are told as of after the store answered, as `state` does.
        match self
            .store
            .record_inbound_once(conversation, at, id, received_at, until)
            .await?
        {
            InboundReceipt::Recorded(update) => {
                Ok(RecordedOnce::First(self.recorded(update, self.now())))
            }
            InboundReceipt::Duplicate { first_received_at } => Ok(RecordedOnce::Duplicate {
                first_received_at,
                state: self.state(conversation).await?,
            }),
        }
    }

    fn recorded(&self, update: InboundUpdate, now: DateTime<Utc>) -> Recorded {
        let before = self.rule.state(update.previous.as_ref(), now);
        let state = self.rule.state(Some(&update.current), now);
        Recorded {
            update,
            state,
            opened: !before.is_open() && state.is_open(),
        }
    }

    /// Records an inbound message received now.
    pub async fn record_inbound_now(
        &self,
        conversation: Conversation,
    ) -> Result<Recorded, SessionError> {
        self.record_inbound(conversation, self.now()).await
    }

    /// Records that the gateway refused a free-form send as outside the window, now.
    /// Returns the window's state afterwards.
    pub async fn record_gateway_closure(
        &self,
        conversation: Conversation,
    ) -> Result<WindowState, SessionError> {
        self.record_gateway_closure_at(conversation, self.now())
            .await
    }

    /// Records that the gateway refused a free-form send as outside the window at `at`
    /// (for a report that arrives later, the time of the failure). Returns the window's
    /// state now. A time more than the skew tolerance ahead of the clock (the real one, or
    /// the examined one) is refused and nothing is stored.
    pub async fn record_gateway_closure_at(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> Result<WindowState, SessionError> {
        self.check_stored_time(StoredTime::GatewayClosure, at)?;
        let record = self.store.record_gateway_closure(conversation, at).await?;
        Ok(self.rule.state(record.as_ref(), self.now()))
    }

    /// The window's state now.
    ///
    /// The clock is read after the store answers (as in [`Sessions::decide`]).
    pub async fn state(&self, conversation: Conversation) -> Result<WindowState, SessionError> {
        let record = self.store.window(conversation).await?;
        Ok(self.rule.state(record.as_ref(), self.now()))
    }

    /// The window's state at `at`.
    pub async fn state_at(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> Result<WindowState, SessionError> {
        let record = self.store.window(conversation).await?;
        Ok(self.rule.state(record.as_ref(), at))
    }

    /// Whether a free-form message may be sent now, keeping the safety margin.
    ///
    /// "Now" is read after the store answers, never before: the later instant is the
    /// stricter one (a window only gets closer to closing), and it is the cheaper order:
    /// with the clock read first, the benchmark's checks ran about a fifth slower (see
    /// `docs/performance.md`).
    pub async fn decide(&self, conversation: Conversation) -> Result<SendDecision, SessionError> {
        let record = self.store.window(conversation).await?;
        Ok(self.rule.decide(record.as_ref(), self.now()))
    }

    /// Whether a free-form message may be sent at `at`, keeping the safety margin.
    pub async fn decide_at(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> Result<SendDecision, SessionError> {
        let record = self.store.window(conversation).await?;
        Ok(self.rule.decide(record.as_ref(), at))
    }

    /// The open windows that close within `span` from now (`now < expiry <= now + span`),
    /// soonest first, answered from the store's index.
    pub async fn closing_within(
        &self,
        span: TimeDelta,
    ) -> Result<Vec<(Conversation, WindowState)>, SessionError> {
        self.closing_within_at(span, self.now()).await
    }

    /// Like [`Sessions::closing_within`], at a given instant.
    pub async fn closing_within_at(
        &self,
        span: TimeDelta,
        now: DateTime<Utc>,
    ) -> Result<Vec<(Conversation, WindowState)>, SessionError> {
        let window = self.rule.window();
        let found = self
            .store
            .inbound_between(
                saturating_add(now, -window),
                saturating_add(saturating_add(now, span), -window),
            )
            .await?;
        Ok(found
            .into_iter()
            .map(|(conversation, record)| (conversation, self.rule.state(Some(&record), now)))
            .filter(|(_, state)| state.is_open())
            .collect())
    }

    /// How many conversations the store knows.
    pub async fn count(&self) -> Result<u64, SessionError> {
        Ok(self.store.count().await?)
    }

    /// Erases everything stored for the conversation.
    pub async fn forget(&self, conversation: Conversation) -> Result<bool, SessionError> {
        Ok(self.store.forget(conversation).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SledStore;

    #[test]
    fn an_engine_in_an_arc_starts_clear_of_the_reference_counts() {
        let dir = tempfile::tempdir().unwrap();
        let sessions = Arc::new(Sessions::new(
            SledStore::open(dir.path().join("db")).unwrap(),
        ));
        // The counts are the two words before the value; 128-byte alignment puts the value
        // at least 128 bytes into the allocation.
        assert!(std::mem::align_of::<Sessions<SledStore>>() >= 128);
        assert_eq!(Arc::as_ptr(&sessions) as usize % 128, 0);
    }
}
