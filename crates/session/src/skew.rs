//! The one rule for times written to a store: none may lie more than the tolerated clock
//! skew ahead of the real time.
//!
//! A time from the future would hold a window open (or closed, or a message queued) for as
//! long as it lies ahead, so every write path refuses one: the engine's records and
//! [`crate::export::import`]. "Ahead" is measured against the real clock (the system
//! clock, or the one a test or simulation gives [`crate::Sessions::with_clock`]), whatever
//! clock windows are examined at ([`crate::Sessions::with_examined_clock`], a debug tool's
//! `--now`): a clock set into the future cannot carry its time into the store. One set
//! into the past can, since examining history is what it is for; those times are checked
//! against it as well.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

use crate::window::saturating_add;

/// Which time was about to be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoredTime {
    /// A customer's inbound message.
    Inbound,
    /// The gateway's report that the window closed (WhatsApp 131047).
    GatewayClosure,
    /// When a message was queued for the customer's reply.
    Queued,
    /// When an invitation template was sent.
    InvitationSent,
    /// When the first copy of an inbound message was received (the redelivery memory).
    InboundReceipt,
    /// When a customer opted out of or back into marketing messages (an import).
    MarketingConsent,
    /// When a customer arrived through a click-to-WhatsApp ad (an import).
    Referral,
    /// When the business's reply opened a free entry point window (an import).
    BusinessReply,
}

impl StoredTime {
    /// How the time is named in messages: `inbound time`, `gateway closure time`,
    /// `queued time`, `invitation time`, `inbound receipt time`, `marketing consent time`,
    /// `referral time`, `business reply time`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Inbound => "inbound time",
            Self::GatewayClosure => "gateway closure time",
            Self::Queued => "queued time",
            Self::InvitationSent => "invitation time",
            Self::InboundReceipt => "inbound receipt time",
            Self::MarketingConsent => "marketing consent time",
            Self::Referral => "referral time",
            Self::BusinessReply => "business reply time",
        }
    }
}

impl std::fmt::Display for StoredTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A time refused because it lies too far ahead; nothing was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FutureTimeError {
    /// More than the tolerated skew ahead of the real clock.
    #[error(
        "{what} {} is more than {max_skew_secs} s ahead of the real clock ({}); nothing was stored",
        rfc3339(.at),
        rfc3339(.now)
    )]
    AheadOfRealClock {
        /// Which time it is.
        what: StoredTime,
        /// The time given.
        at: DateTime<Utc>,
        /// The real clock's time.
        now: DateTime<Utc>,
        /// The tolerated skew, in seconds.
        max_skew_secs: i64,
    },
    /// More than the tolerated skew ahead of the clock windows are examined at (one set
    /// into the past).
    #[error(
        "{what} {} is more than {max_skew_secs} s ahead of the clock ({}); nothing was stored",
        rfc3339(.at),
        rfc3339(.now)
    )]
    AheadOfClock {
        /// Which time it is.
        what: StoredTime,
        /// The time given.
        at: DateTime<Utc>,
        /// The examined clock's time.
        now: DateTime<Utc>,
        /// The tolerated skew, in seconds.
        max_skew_secs: i64,
    },
}

impl FutureTimeError {
    /// The time that was refused.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Self::AheadOfRealClock { at, .. } | Self::AheadOfClock { at, .. } => *at,
        }
    }
}

fn rfc3339(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// How far ahead of the clock a stored time may be (default 5 minutes): the clocks of the
/// sender, the gateway and this host never agree exactly.
///
/// ```
/// use chrono::{TimeDelta, Utc};
/// use lipachat_session::{SkewLimit, StoredTime};
///
/// let limit = SkewLimit::default();
/// let now = Utc::now();
/// assert!(limit.check(StoredTime::Inbound, now, now).is_ok());
/// // Examining windows a year ahead does not make a time a year ahead acceptable.
/// let next_year = now + TimeDelta::days(365);
/// assert!(limit.check_examined(StoredTime::Inbound, next_year, now, next_year).is_err());
/// // Examining them a week ago bounds the time too.
/// let last_week = now - TimeDelta::days(7);
/// assert!(limit.check_examined(StoredTime::Inbound, now, now, last_week).is_err());
/// assert!(limit.check_examined(StoredTime::Inbound, last_week, now, last_week).is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkewLimit {
    max_skew: TimeDelta,
}

impl Default for SkewLimit {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_SKEW)
    }
}

impl SkewLimit {
    /// The default tolerated skew: 5 minutes.
    pub const DEFAULT_MAX_SKEW: TimeDelta = TimeDelta::minutes(5);

    /// A limit tolerating `max_skew` ahead of the clock.
    pub fn new(max_skew: TimeDelta) -> Self {
        Self { max_skew }
    }

    /// The tolerated skew.
    pub fn max_skew(self) -> TimeDelta {
        self.max_skew
    }

    /// Refuses `at`, a `what` about to be stored, when it lies more than the skew ahead of
    /// `real_now`, the real clock's time.
    pub fn check(
        self,
        what: StoredTime,
        at: DateTime<Utc>,
        real_now: DateTime<Utc>,
    ) -> Result<(), FutureTimeError> {
        if at > saturating_add(real_now, self.max_skew) {
            return Err(FutureTimeError::AheadOfRealClock {
                what,
                at,
                now: real_now,
                max_skew_secs: self.max_skew.num_seconds(),
            });
        }
        Ok(())
    }

    /// Refuses `at` when it lies more than the skew ahead of `real_now`, or of
    /// `examined_now`, the time windows are being examined at.
    pub fn check_examined(
        self,
        what: StoredTime,
        at: DateTime<Utc>,
        real_now: DateTime<Utc>,
        examined_now: DateTime<Utc>,
    ) -> Result<(), FutureTimeError> {
        self.check(what, at, real_now)?;
        if at > saturating_add(examined_now, self.max_skew) {
            return Err(FutureTimeError::AheadOfClock {
                what,
                at,
                now: examined_now,
                max_skew_secs: self.max_skew.num_seconds(),
            });
        }
        Ok(())
    }
}
