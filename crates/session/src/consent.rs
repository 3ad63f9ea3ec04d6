//! What a store keeps about cost, consent and limits: a customer's marketing opt-out and
//! per-user marketing back-off, the free entry point window, each send's predicted and
//! reported pricing category, and a portfolio's unique customers reached outside the
//! customer service window in a moving span ([`ConsentStore`]).
//!
//! Like the other store traits this one persists facts and never decides: whether a send
//! is free, allowed or counted is the policy crate's rule. The read-modify-write steps
//! (keep the later opt-out, keep the longer back-off, open the free entry point window
//! once, count a customer once) are atomic in every store, so replicas sharing one store
//! agree. The records have one text form ([`MarketingConsent::encode`],
//! [`FreeEntryPoint::encode`]) that every store writes, and the change rules are written
//! once here ([`MarketingConsent::with_opt_out`] and its siblings); the Redis store's Lua
//! scripts apply the same rules to the same text.

use std::future::Future;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::{Conversation, Customer, MessageId, PhoneNumber, StoreError};

/// A WhatsApp pricing category: what the platform bills a delivered message as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PricingCategory {
    /// A free-form (non-template) message inside the customer service window.
    Service,
    /// A utility template (a transaction or account update).
    Utility,
    /// A marketing template.
    Marketing,
    /// An authentication (one-time password) template.
    Authentication,
}

impl PricingCategory {
    /// Every category, in a fixed order.
    pub const ALL: [Self; 4] = [
        Self::Service,
        Self::Utility,
        Self::Marketing,
        Self::Authentication,
    ];

    /// `service`, `utility`, `marketing` or `authentication`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::Utility => "utility",
            Self::Marketing => "marketing",
            Self::Authentication => "authentication",
        }
    }

    /// The category a name (any case, as the platform writes it: `MARKETING`,
    /// `marketing`) names, or `None`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|category| category.name().eq_ignore_ascii_case(name.trim()))
    }
}

impl std::fmt::Display for PricingCategory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A customer's marketing consent towards one business number, as stored.
///
/// The default (nothing stored) is: not opted out, no back-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MarketingConsent {
    /// Whether the customer stopped marketing messages from this business number.
    pub opted_out: bool,
    /// When the opt-out or opt-in now in force was made (the later change wins, so a
    /// redelivered old webhook does not undo a newer one).
    pub changed_at: Option<DateTime<Utc>>,
    /// Until when no marketing template may go after the platform's per-user marketing
    /// limit (error 131049); only ever extended. As a store answers it, the later of the
    /// customer's back-off (kept per customer, [`crate::back_off`]) and one stored in this
    /// record by a version that kept it per conversation.
    pub back_off_until: Option<DateTime<Utc>>,
}

impl MarketingConsent {
    /// This consent after an opt-out (`opted_out`) or opt-in made at `at` (to the
    /// millisecond): applied only when no later change is stored. Two changes made at the
    /// same millisecond end opted out whatever order they arrive in (the safe side), and
    /// repeating a change is harmless.
    pub fn with_opt_out(self, opted_out: bool, at: DateTime<Utc>) -> Self {
        let at = crate::window::truncate_to_millis(at);
        let opted_out = match self.changed_at {
            Some(changed) if changed > at => return self,
            Some(changed) if changed == at => opted_out || self.opted_out,
            _ => opted_out,
        };
        Self {
            opted_out,
            changed_at: Some(at),
            ..self
        }
    }

    /// The consent of a customer whose identity moved (a phone number change), merged
    /// from this one (the target's) and `other` (the source's), keeping the more
    /// protective of each part: opted out when either is, changed at the later of the
    /// two changes (so only an opt-in made after both undoes it), and the later back-off.
    pub fn merged_with(self, other: Self) -> Self {
        Self {
            opted_out: self.opted_out || other.opted_out,
            changed_at: self.changed_at.max(other.changed_at),
            back_off_until: self.back_off_until.max(other.back_off_until),
        }
    }

    /// This consent with the back-off lasting at least until `until`.
    pub fn with_back_off(self, until: DateTime<Utc>) -> Self {
        let until = crate::window::truncate_to_millis(until);
        Self {
            back_off_until: Some(self.back_off_until.map_or(until, |b| b.max(until))),
            ..self
        }
    }

    /// The stored text: `<0|1>:<changed ms>:<back-off ms>`, an absent time empty.
    pub fn encode(&self) -> String {
        format!(
            "{}:{}:{}",
            u8::from(self.opted_out),
            millis(self.changed_at),
            millis(self.back_off_until)
        )
    }

    /// Reads [`MarketingConsent::encode`]'s text; the error says what is wrong.
    pub fn decode(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let [flag, changed, back_off] = parts[..] else {
            return Err(format!(
                "marketing consent {text:?} does not have three fields"
            ));
        };
        let opted_out = match flag {
            "0" => false,
            "1" => true,
            other => return Err(format!("marketing opt-out flag {other:?} is not 0 or 1")),
        };
        Ok(Self {
            opted_out,
            changed_at: time(changed)?,
            back_off_until: time(back_off)?,
        })
    }
}

/// A conversation's free entry point window: the 72 hours (by default) of free messages
/// that a business's timely reply to a customer arriving from a click-to-WhatsApp ad
/// opens. A pricing window only: free-form messages still need the customer service
/// window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FreeEntryPoint {
    /// The latest inbound message carrying a click-to-WhatsApp referral (`ctwa_clid`).
    pub referral_at: Option<DateTime<Utc>>,
    /// When the business's reply opened the window (none before that reply).
    pub opened_at: Option<DateTime<Utc>>,
    /// When the window ends.
    pub until: Option<DateTime<Utc>>,
    /// Whether `until` is the platform's (a status whose pricing said free entry point
    /// gave `conversation.expiration_timestamp`); otherwise it is our prediction.
    pub confirmed: bool,
}

impl FreeEntryPoint {
    /// Whether the window is open at `at`.
    pub fn is_open_at(&self, at: DateTime<Utc>) -> bool {
        self.opened_at.is_some_and(|opened| opened <= at) && self.until.is_some_and(|u| at < u)
    }

    /// This record after a referral-carrying inbound message at `at`. A referral later
    /// than the one stored replaces it; a window that is no longer open at `at` is
    /// dropped, so the business's next timely reply opens a new one. An older referral
    /// (a redelivery) changes nothing.
    pub fn with_referral(self, at: DateTime<Utc>) -> Self {
        let at = crate::window::truncate_to_millis(at);
        if self.referral_at.is_some_and(|r| r >= at) {
            return self;
        }
        if self.is_open_at(at) {
            return Self {
                referral_at: Some(at),
                ..self
            };
        }
        Self {
            referral_at: Some(at),
            ..Self::default()
        }
    }

    /// This record after the business replied at `reply_at`: a window from `reply_at`
    /// until `until` opens when a referral is stored, none is open or pending for it,
    /// and the reply came no earlier than the referral and at most `within` after it.
    /// Otherwise unchanged.
    pub fn with_reply(
        self,
        reply_at: DateTime<Utc>,
        until: DateTime<Utc>,
        within: TimeDelta,
    ) -> Self {
        let reply_at = crate::window::truncate_to_millis(reply_at);
        let Some(referral_at) = self.referral_at else {
            return self;
        };
        if self.opened_at.is_some() || self.confirmed {
            return self;
        }
        if reply_at < referral_at || reply_at - referral_at > within {
            return self;
        }
        Self {
            opened_at: Some(reply_at),
            until: Some(crate::window::truncate_to_millis(until)),
            confirmed: false,
            ..self
        }
    }

    /// This record after a status said the window ends at `until` (its pricing type
    /// being free entry point): the end is the platform's from now on. A window not yet
    /// known to be open is taken as opened at `sent_at`, the confirmed message's send.
    ///
    /// An end the platform cannot have meant is not taken: one at or before the opening,
    /// or more than [`MAX_CONFIRMED_FREE_ENTRY_POINT`] after it (a broken or forged
    /// status would otherwise confirm an endless free window). The record is then
    /// unchanged (the prediction stays) and [`FreeEntryPoint::confirmation_in_range`]
    /// says why.
    pub fn with_confirmation(self, until: DateTime<Utc>, sent_at: DateTime<Utc>) -> Self {
        let opened = self
            .opened_at
            .unwrap_or(crate::window::truncate_to_millis(sent_at));
        if Self::confirmation_in_range(opened, until).is_err() {
            return self;
        }
        Self {
            opened_at: Some(opened),
            until: Some(crate::window::truncate_to_millis(until)),
            confirmed: true,
            ..self
        }
    }

    /// Whether a confirmed end `until` of a window opened at `opened` is one to take:
    /// after the opening and at most [`MAX_CONFIRMED_FREE_ENTRY_POINT`] after it. The
    /// error says what is wrong with it.
    pub fn confirmation_in_range(
        opened: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<(), String> {
        let until = crate::window::truncate_to_millis(until);
        if until <= opened {
            return Err(format!(
                "the confirmed end {until} is not after the window's opening {opened}"
            ));
        }
        if until - opened > MAX_CONFIRMED_FREE_ENTRY_POINT {
            return Err(format!(
                "the confirmed end {until} is more than {} h after the window's opening {opened}",
                MAX_CONFIRMED_FREE_ENTRY_POINT.num_minutes() as f64 / 60.0
            ));
        }
        Ok(())
    }

    /// The record kept when a customer's identity moved (a phone number change), of this
    /// one (the target's) and `other` (the source's): the one whose window ends later (a
    /// record with no window counts as ending earliest), then the one with the later
    /// referral; on a full tie, this one.
    pub fn merged_with(self, other: Self) -> Self {
        if (other.until, other.referral_at) > (self.until, self.referral_at) {
            other
        } else {
            self
        }
    }

    /// The stored text: `<referral ms>:<opened ms>:<until ms>:<0|1 confirmed>`.
    pub fn encode(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            millis(self.referral_at),
            millis(self.opened_at),
            millis(self.until),
            u8::from(self.confirmed)
        )
    }

    /// Reads [`FreeEntryPoint::encode`]'s text; the error says what is wrong.
    pub fn decode(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let [referral, opened, until, confirmed] = parts[..] else {
            return Err(format!(
                "free entry point {text:?} does not have four fields"
            ));
        };
        let confirmed = match confirmed {
            "0" => false,
            "1" => true,
            other => {
                return Err(format!(
                    "free entry point confirmation {other:?} is not 0 or 1"
                ));
            }
        };
        Ok(Self {
            referral_at: time(referral)?,
            opened_at: time(opened)?,
            until: time(until)?,
            confirmed,
        })
    }
}

/// The longest free entry point window a status may confirm, counted from the window's
/// opening: the platform's 72 hours plus the tolerated clock skew
/// ([`crate::SkewLimit::DEFAULT_MAX_SKEW`], 5 minutes).
pub const MAX_CONFIRMED_FREE_ENTRY_POINT: TimeDelta =
    match TimeDelta::hours(72).checked_add(&crate::SkewLimit::DEFAULT_MAX_SKEW) {
        Some(longest) => longest,
        None => TimeDelta::hours(72),
    };

/// A stored consent or free entry point record with its conversation, as
/// [`ConsentStore::marketing_consents`] and [`ConsentStore::free_entry_points`] list
/// them: an unreadable record is its error.
pub type ConsentEntry<T> = (Conversation, Result<T, StoreError>);

/// What a send was predicted to cost, recorded when it went to the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PredictedCost {
    /// The conversation the message went to.
    pub conversation: Conversation,
    /// The message's gateway `messageId`.
    pub message_id: MessageId,
    /// The message's WhatsApp id, when the gateway gave one (statuses name it).
    pub wa_id: Option<String>,
    /// When it was sent.
    pub sent_at: DateTime<Utc>,
    /// The predicted pricing category.
    pub category: PricingCategory,
    /// Whether it was predicted to be free.
    pub free: bool,
}

impl PredictedCost {
    /// The stored text (JSON).
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads [`PredictedCost::encode`]'s text; the error says what is wrong.
    pub fn decode(text: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(text).map_err(|e| format!("predicted cost: {e}"))
    }
}

impl ReportedPricing {
    /// The stored text (JSON).
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads [`ReportedPricing::encode`]'s text; the error says what is wrong.
    pub fn decode(text: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(text).map_err(|e| format!("reported pricing: {e}"))
    }
}

/// What a status webhook's `pricing` object reported for a sent message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedPricing {
    /// `pricing.category` as written (`marketing`, `utility`, … or a category this
    /// library does not know, such as `referral_conversion`).
    pub category: String,
    /// `pricing.type` (`regular`, `free_customer_service`, `free_entry_point`), when given.
    pub pricing_type: Option<String>,
    /// `pricing.billable` (deprecated by the platform), when given.
    pub billable: Option<bool>,
    /// When the status was recorded.
    pub reported_at: DateTime<Utc>,
}

/// A send's cost record: the prediction, and what the platform reported when it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostRecord {
    /// What was predicted at send time.
    pub predicted: PredictedCost,
    /// What a status reported, if one with pricing arrived.
    pub reported: Option<ReportedPricing>,
}

impl CostRecord {
    /// The UTC day the message was sent on.
    pub fn day(&self) -> NaiveDate {
        self.predicted.sent_at.date_naive()
    }
}

/// When a messaging limit count happens ([`ConsentStore::reach_customer`],
/// [`ConsentStore::reached`]).
///
/// A count read from the system clock may be stamped by a store on a shared server with
/// the server's clock instead (Redis does), so replicas whose clocks differ, or whose
/// clock steps while a send is under way, stamp and prune one moving span. A time a
/// simulation or a test gives is used as it is. A plain [`DateTime`] converts to
/// [`CountTime::Given`].
///
/// ```
/// use lipachat_session::{CountTime, ManualClock, SystemClock};
///
/// let now = chrono::Utc::now();
/// assert_eq!(CountTime::read_from(&SystemClock, now), CountTime::SystemNow(now));
/// let manual = ManualClock::at(now);
/// assert_eq!(CountTime::read_from(&manual, now), CountTime::Given(now));
/// assert_eq!(CountTime::from(now).time(), now);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountTime {
    /// Now, as a clock reading real time read it (any clock that is not simulated,
    /// [`crate::Clock::is_simulated`]): a store on a shared server may stamp the count
    /// with the server's own clock instead.
    SystemNow(DateTime<Utc>),
    /// A time given by a simulation or a test (a simulated clock such as
    /// [`crate::ManualClock`]): used as it is.
    Given(DateTime<Utc>),
}

impl CountTime {
    /// [`CountTime::clock_kind`] of a [`CountTime::SystemNow`].
    pub const REAL_CLOCK: &'static str = "real";
    /// [`CountTime::clock_kind`] of a [`CountTime::Given`].
    pub const SIMULATED_CLOCK: &'static str = "simulated";

    /// `at`, read from `clock`: [`CountTime::Given`] when `clock` is simulated
    /// ([`crate::Clock::is_simulated`]), else [`CountTime::SystemNow`].
    pub fn read_from(clock: &dyn crate::Clock, at: DateTime<Utc>) -> Self {
        if clock.is_simulated() {
            Self::Given(at)
        } else {
            Self::SystemNow(at)
        }
    }

    /// The time, as it was read or given.
    pub fn time(self) -> DateTime<Utc> {
        match self {
            Self::SystemNow(at) | Self::Given(at) => at,
        }
    }

    /// The kind of clock the time came from, as [`StoreError::MixedCountClocks`] names
    /// it: `real` for [`CountTime::SystemNow`], `simulated` for [`CountTime::Given`].
    ///
    /// [`StoreError::MixedCountClocks`]: crate::StoreError::MixedCountClocks
    pub fn clock_kind(self) -> &'static str {
        match self {
            Self::SystemNow(_) => Self::REAL_CLOCK,
            Self::Given(_) => Self::SIMULATED_CLOCK,
        }
    }

    /// The error refusing this count on `portfolio`, whose live counts were made on the
    /// other kind of clock ([`crate::StoreError::MixedCountClocks`]).
    pub fn mixed_with_the_other_kind(self, portfolio: &str) -> crate::StoreError {
        let held = match self {
            Self::SystemNow(_) => Self::SIMULATED_CLOCK,
            Self::Given(_) => Self::REAL_CLOCK,
        };
        crate::StoreError::MixedCountClocks {
            portfolio: portfolio.to_owned(),
            held,
            asked: self.clock_kind(),
        }
    }
}

impl From<DateTime<Utc>> for CountTime {
    fn from(at: DateTime<Utc>) -> Self {
        Self::Given(at)
    }
}

/// What counting a customer against a portfolio's messaging limit did
/// ([`ConsentStore::reach_customer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The customer was not counted in the span and now is; `reached` includes it.
    Counted {
        /// Unique customers reached in the span, now.
        reached: u64,
    },
    /// The customer was already counted in the span: reaching it again costs nothing
    /// against the limit (its time is moved to now).
    AlreadyCounted {
        /// Unique customers reached in the span.
        reached: u64,
    },
    /// The limit is reached and the customer is not among those counted: nothing was
    /// counted.
    LimitReached {
        /// Unique customers reached in the span.
        reached: u64,
    },
}

/// The longest portfolio name a store accepts, in bytes.
pub const MAX_PORTFOLIO_NAME_BYTES: usize = 64;

/// How the names of the monthly service counters begin (`svc.<business>.<YYYY-MM>`, one
/// member per message): counts a messenger makes on the times its messages were sent,
/// always [`CountTime::Given`]. A portfolio may not be named so (the policy refuses it).
pub const SERVICE_COUNTER_PREFIX: &str = "svc.";

/// The kind of clock ([`CountTime::clock_kind`]) a store takes a count on `portfolio`
/// as made on when the count holds entries but no kept kind (written by a release
/// before stores kept it): a service counter's ([`SERVICE_COUNTER_PREFIX`]) were counted
/// on given times, every other portfolio's on real clocks.
pub fn kind_of_an_unmarked_count(portfolio: &str) -> &'static str {
    if portfolio.starts_with(SERVICE_COUNTER_PREFIX) {
        CountTime::SIMULATED_CLOCK
    } else {
        CountTime::REAL_CLOCK
    }
}

/// Checks a portfolio name: 1 to [`MAX_PORTFOLIO_NAME_BYTES`] bytes of ASCII letters,
/// digits, `-`, `_` and `.`, so it is safe in any store's keys.
pub fn check_portfolio_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_PORTFOLIO_NAME_BYTES {
        return Err(format!(
            "portfolio name {name:?} must have 1 to {MAX_PORTFOLIO_NAME_BYTES} bytes"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "portfolio name {name:?} holds {c:?}; use letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

/// What a store keeps for cost, consent and limits (see the module documentation).
///
/// The opt-out is kept per conversation (business number and customer); the per-user
/// marketing back-off (131049) per customer, across business numbers
/// ([`crate::back_off`]). Every [`MarketingConsent`] a method answers is the
/// conversation's own record with its customer's back-off merged in
/// ([`MarketingConsent::with_customer_back_off`]), so a back-off recorded through one
/// business number holds for the customer on every other.
pub trait ConsentStore: Send + Sync + 'static {
    /// The marketing consent in force for the conversation: its own record (the default
    /// when none) with the customer's back-off merged in. An unreadable record of
    /// either is its error.
    fn marketing_consent(
        &self,
        conversation: Conversation,
    ) -> impl Future<Output = Result<MarketingConsent, StoreError>> + Send;

    /// Records a marketing opt-out (`opted_out`) or opt-in made at `at`, by
    /// [`MarketingConsent::with_opt_out`], atomically, for this conversation only (an
    /// opt-out is towards one business number); answers the consent now in force (as
    /// [`ConsentStore::marketing_consent`] does).
    fn record_opt_out(
        &self,
        conversation: Conversation,
        opted_out: bool,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<MarketingConsent, StoreError>> + Send;

    /// Extends the conversation's customer's back-off to at least `until`, atomically:
    /// the record is the customer's, so it holds for every business number
    /// ([`crate::back_off`]); an unreadable stored back-off is replaced. Answers the
    /// consent now in force for the conversation (as
    /// [`ConsentStore::marketing_consent`] does).
    fn extend_back_off(
        &self,
        conversation: Conversation,
        until: DateTime<Utc>,
    ) -> impl Future<Output = Result<MarketingConsent, StoreError>> + Send {
        async move {
            self.extend_customer_back_off(conversation.customer, until)
                .await?;
            self.marketing_consent(conversation).await
        }
    }

    /// Extends `customer`'s back-off to at least `until` (to the millisecond),
    /// atomically, however many callers (replicas on one Redis) extend it at once; an
    /// unreadable stored back-off is replaced. Answers the end now stored.
    fn extend_customer_back_off(
        &self,
        customer: Customer,
        until: DateTime<Utc>,
    ) -> impl Future<Output = Result<DateTime<Utc>, StoreError>> + Send;

    /// The customer's back-off end, if one is stored (ended or not).
    fn customer_back_off(
        &self,
        customer: Customer,
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>, StoreError>> + Send;

    /// Every stored customer back-off, each with its customer (an unreadable one as its
    /// error), for export; in no particular order. A store may drop records whose end
    /// passed long ago.
    fn customer_back_offs(
        &self,
    ) -> impl Future<Output = Result<Vec<crate::back_off::BackOffEntry>, StoreError>> + Send;

    /// Every stored marketing consent record, each with its conversation (an unreadable
    /// one as its error), for export; in no particular order. These are the
    /// conversations' own records, without their customers' back-offs (listed by
    /// [`ConsentStore::customer_back_offs`]); a back-off inside one was written by a
    /// version that kept it per conversation.
    fn marketing_consents(
        &self,
    ) -> impl Future<Output = Result<Vec<ConsentEntry<MarketingConsent>>, StoreError>> + Send;

    /// Every stored free entry point record, each with its conversation (an unreadable
    /// one as its error), for export; in no particular order.
    fn free_entry_points(
        &self,
    ) -> impl Future<Output = Result<Vec<ConsentEntry<FreeEntryPoint>>, StoreError>> + Send;

    /// The free entry point record of the conversation (`None` when none is stored).
    fn free_entry_point(
        &self,
        conversation: Conversation,
    ) -> impl Future<Output = Result<Option<FreeEntryPoint>, StoreError>> + Send;

    /// Records a referral-carrying inbound message at `at`
    /// ([`FreeEntryPoint::with_referral`]), atomically; answers the record now stored.
    fn record_referral(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<FreeEntryPoint, StoreError>> + Send;

    /// Records the business's reply at `reply_at` ([`FreeEntryPoint::with_reply`]),
    /// atomically, so of replicas replying at once exactly one opens the window;
    /// answers the record now stored (`None` when there is none: no referral).
    fn record_business_reply(
        &self,
        conversation: Conversation,
        reply_at: DateTime<Utc>,
        until: DateTime<Utc>,
        within: TimeDelta,
    ) -> impl Future<Output = Result<Option<FreeEntryPoint>, StoreError>> + Send;

    /// Records the platform's end of the window ([`FreeEntryPoint::with_confirmation`]),
    /// atomically; answers the record now stored.
    fn confirm_free_entry_point(
        &self,
        conversation: Conversation,
        until: DateTime<Utc>,
        sent_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<FreeEntryPoint, StoreError>> + Send;

    /// Stores a send's predicted cost (replacing one for the same `messageId`).
    fn record_predicted_cost(
        &self,
        cost: PredictedCost,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stores what a status reported for the message `message_id` of `business`
    /// (replacing an earlier report). Kept even when no prediction is stored.
    fn record_reported_pricing(
        &self,
        business: PhoneNumber,
        message_id: MessageId,
        pricing: ReportedPricing,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every stored cost record of `business` (every business's when `None`), each
    /// prediction with its report; reports without a prediction are left out.
    fn cost_records(
        &self,
        business: Option<PhoneNumber>,
    ) -> impl Future<Output = Result<Vec<CostRecord>, StoreError>> + Send;

    /// Counts `customer` (a [`crate::Customer::key`]) as reached at `at` by the
    /// portfolio `portfolio` ([`check_portfolio_name`]), unless `limit` unique customers
    /// were already reached in the span `span` before `at` — exactly, however many
    /// callers (replicas on one Redis) count at once. Customers last reached `span` or
    /// longer before `at` no longer count. A [`CountTime::SystemNow`] may be stamped
    /// with a shared server's clock instead of `at` (Redis).
    fn reach_customer(
        &self,
        portfolio: &str,
        customer: u64,
        at: impl Into<CountTime> + Send,
        limit: u64,
        span: TimeDelta,
    ) -> impl Future<Output = Result<Reach, StoreError>> + Send;

    /// How many unique customers the portfolio reached in the span before `at` (on a
    /// shared server's clock for a [`CountTime::SystemNow`], as for
    /// [`ConsentStore::reach_customer`]).
    fn reached(
        &self,
        portfolio: &str,
        at: impl Into<CountTime> + Send,
        span: TimeDelta,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// The key a report is stored under when the status names only WhatsApp's message id
/// (`wamid.`): a `messageId` derived from it, the same every time, which a prediction
/// carrying that WhatsApp id is paired with.
pub fn wa_id_key(wa_id: &str) -> MessageId {
    const WA_ID_NAMESPACE: uuid::Uuid =
        uuid::Uuid::from_u128(0x6c69_7061_6368_6174_0000_7761_6964_0001);
    MessageId::derived(WA_ID_NAMESPACE, &[wa_id.as_bytes()])
}

/// Pairs predictions with reports (by business number and `messageId`, else by the
/// prediction's WhatsApp id through [`wa_id_key`]), for store implementations listing
/// [`ConsentStore::cost_records`].
pub fn pair_cost_records(
    predicted: Vec<PredictedCost>,
    mut reported: std::collections::HashMap<(PhoneNumber, MessageId), ReportedPricing>,
) -> Vec<CostRecord> {
    let mut records: Vec<CostRecord> = predicted
        .into_iter()
        .map(|predicted| {
            let business = predicted.conversation.business;
            let report = reported
                .remove(&(business, predicted.message_id))
                .or_else(|| {
                    let wa_id = predicted.wa_id.as_deref()?;
                    reported.remove(&(business, wa_id_key(wa_id)))
                });
            CostRecord {
                predicted,
                reported: report,
            }
        })
        .collect();
    records.sort_by_key(|r| (r.predicted.sent_at, r.predicted.message_id));
    records
}

/// Logs (a warning) when a status's confirmed end `until` of the free entry point window
/// was not taken ([`FreeEntryPoint::with_confirmation`]): `stored` is the record after
/// the confirmation, `sent_at` the confirmed message's send. For store implementations.
pub fn warn_if_confirmation_refused(
    conversation: Conversation,
    stored: &FreeEntryPoint,
    until: DateTime<Utc>,
    sent_at: DateTime<Utc>,
) {
    if stored.confirmed && stored.until == Some(crate::window::truncate_to_millis(until)) {
        return;
    }
    let opened = stored
        .opened_at
        .unwrap_or(crate::window::truncate_to_millis(sent_at));
    let why = FreeEntryPoint::confirmation_in_range(opened, until)
        .err()
        .unwrap_or_else(|| "a confirmed end was not taken".to_owned());
    tracing::warn!(%conversation, %until, why, "ignoring a status's free entry point end: the prediction stays");
}

/// A store error for an unreadable consent or cost record of `conversation`.
pub fn corrupt_record(conversation: Conversation, what: &str, detail: String) -> StoreError {
    StoreError::Corrupt {
        conversation,
        detail: format!("{what}: {detail}"),
    }
}

fn millis(time: Option<DateTime<Utc>>) -> String {
    time.map(|t| t.timestamp_millis().to_string())
        .unwrap_or_default()
}

fn time(text: &str) -> Result<Option<DateTime<Utc>>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let ms: i64 = text
        .parse()
        .map_err(|_| format!("time {text:?} is not a number of milliseconds"))?;
    DateTime::from_timestamp_millis(ms)
        .map(Some)
        .ok_or_else(|| format!("time {ms} ms is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn the_later_opt_change_wins() {
        let consent = MarketingConsent::default()
            .with_opt_out(true, t("2026-12-01T10:00:00Z"))
            .with_opt_out(false, t("2026-12-01T09:00:00Z"));
        assert!(consent.opted_out);
        let consent = consent.with_opt_out(false, t("2026-12-01T11:00:00Z"));
        assert!(!consent.opted_out);
    }

    #[test]
    fn texts_round_trip_and_bad_ones_are_named() {
        let consent = MarketingConsent::default()
            .with_opt_out(true, t("2026-12-01T10:00:00Z"))
            .with_back_off(t("2026-12-02T10:00:00Z"));
        assert_eq!(MarketingConsent::decode(&consent.encode()), Ok(consent));
        let entry = FreeEntryPoint::default()
            .with_referral(t("2026-12-01T10:00:00Z"))
            .with_reply(
                t("2026-12-01T11:00:00Z"),
                t("2026-12-04T11:00:00Z"),
                TimeDelta::hours(24),
            );
        assert_eq!(FreeEntryPoint::decode(&entry.encode()), Ok(entry));
        assert!(
            MarketingConsent::decode("2::")
                .unwrap_err()
                .contains("flag")
        );
        assert!(
            FreeEntryPoint::decode("x:::0")
                .unwrap_err()
                .contains("milliseconds")
        );
        assert!(
            FreeEntryPoint::decode("1:2")
                .unwrap_err()
                .contains("four fields")
        );
    }

    #[test]
    fn a_late_reply_opens_no_window_and_a_second_reply_does_not_move_it() {
        let referral = FreeEntryPoint::default().with_referral(t("2026-12-01T10:00:00Z"));
        let late = referral.with_reply(
            t("2026-12-02T10:00:01Z"),
            t("2026-12-05T10:00:01Z"),
            TimeDelta::hours(24),
        );
        assert_eq!(late.opened_at, None);
        let opened = referral.with_reply(
            t("2026-12-01T12:00:00Z"),
            t("2026-12-04T12:00:00Z"),
            TimeDelta::hours(24),
        );
        let again = opened.with_reply(
            t("2026-12-01T13:00:00Z"),
            t("2026-12-04T13:00:00Z"),
            TimeDelta::hours(24),
        );
        assert_eq!(again, opened);
        assert!(opened.is_open_at(t("2026-12-04T11:59:59Z")));
        assert!(!opened.is_open_at(t("2026-12-04T12:00:00Z")));
    }

    #[test]
    fn a_merge_keeps_the_opt_out_the_later_back_off_and_the_later_window() {
        let out = MarketingConsent::default()
            .with_opt_out(true, t("2026-12-01T09:00:00Z"))
            .with_back_off(t("2026-12-01T12:00:00Z"));
        let back_in = MarketingConsent::default()
            .with_opt_out(false, t("2026-12-01T10:00:00Z"))
            .with_back_off(t("2026-12-02T12:00:00Z"));
        let merged = back_in.merged_with(out);
        assert_eq!(
            merged,
            out.merged_with(back_in),
            "a merge does not depend on sides"
        );
        assert!(merged.opted_out);
        assert_eq!(merged.changed_at, Some(t("2026-12-01T10:00:00Z")));
        assert_eq!(merged.back_off_until, Some(t("2026-12-02T12:00:00Z")));
        // Only an opt-in after both changes undoes it.
        assert!(
            merged
                .with_opt_out(false, t("2026-12-01T09:30:00Z"))
                .opted_out
        );
        assert!(
            !merged
                .with_opt_out(false, t("2026-12-01T10:00:01Z"))
                .opted_out
        );

        let referral = FreeEntryPoint::default().with_referral(t("2026-12-01T10:00:00Z"));
        let open = referral.with_reply(
            t("2026-12-01T11:00:00Z"),
            t("2026-12-04T11:00:00Z"),
            TimeDelta::hours(24),
        );
        let later_referral = FreeEntryPoint::default().with_referral(t("2026-12-01T12:00:00Z"));
        assert_eq!(
            later_referral.merged_with(open),
            open,
            "an open window wins"
        );
        assert_eq!(open.merged_with(later_referral), open);
        assert_eq!(referral.merged_with(later_referral), later_referral);
    }

    #[test]
    fn a_confirmed_end_out_of_range_is_not_taken() {
        let opened = t("2026-12-01T11:00:00Z");
        let open = FreeEntryPoint::default()
            .with_referral(t("2026-12-01T10:00:00Z"))
            .with_reply(opened, opened + TimeDelta::hours(72), TimeDelta::hours(24));
        for until in [
            t("2100-01-01T00:00:00Z"),
            opened + MAX_CONFIRMED_FREE_ENTRY_POINT + TimeDelta::milliseconds(1),
            opened,
            opened - TimeDelta::hours(1),
        ] {
            assert_eq!(open.with_confirmation(until, opened), open, "{until}");
            assert!(FreeEntryPoint::confirmation_in_range(opened, until).is_err());
        }
        let edge = opened + MAX_CONFIRMED_FREE_ENTRY_POINT;
        assert_eq!(open.with_confirmation(edge, opened).until, Some(edge));
        assert!(
            FreeEntryPoint::confirmation_in_range(opened, t("2100-01-01T00:00:00Z"))
                .unwrap_err()
                .contains("72.08")
        );
    }

    proptest::proptest! {
        /// Whatever order changes arrive in, the stored consent is the same: that of the
        /// latest time, opted out when any change at that time is an opt-out.
        #[test]
        fn opt_changes_end_the_same_in_any_arrival_order(
            (changes, order) in proptest::collection::vec((proptest::bool::ANY, 0i64..3), 1..8)
                .prop_flat_map(|changes| {
                    let n = changes.len();
                    (proptest::strategy::Just(changes), proptest::strategy::Just((0..n).collect::<Vec<_>>()).prop_shuffle())
                })
        ) {
            let t0 = t("2026-12-01T10:00:00Z");
            let fold = |indices: &mut dyn Iterator<Item = usize>| {
                indices.fold(MarketingConsent::default(), |consent, i| {
                    let (opted_out, at) = changes[i];
                    consent.with_opt_out(opted_out, t0 + TimeDelta::milliseconds(at))
                })
            };
            let in_order = fold(&mut (0..changes.len()));
            let shuffled = fold(&mut order.iter().copied());
            proptest::prop_assert_eq!(in_order, shuffled);
            let latest = changes.iter().map(|(_, at)| *at).max().unwrap_or(0);
            let expected = changes.iter().any(|(out, at)| *at == latest && *out);
            proptest::prop_assert_eq!(in_order.opted_out, expected);
        }
    }

    #[test]
    fn portfolio_names_are_checked() {
        assert!(check_portfolio_name("acme-main_1.x").is_ok());
        assert!(check_portfolio_name("").is_err());
        assert!(check_portfolio_name("a:b").unwrap_err().contains("':'"));
    }
}
