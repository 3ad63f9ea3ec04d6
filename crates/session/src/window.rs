//! The 24-hour rule: what a conversation's record means at a given instant.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// What the store keeps for one conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowRecord {
    /// The latest inbound message time recorded (millisecond precision).
    pub last_inbound: DateTime<Utc>,
    /// When the gateway last reported a free-form send as outside the window (WhatsApp
    /// error 131047). It closes the window from that instant until an inbound message
    /// timed after it is recorded.
    pub gateway_closed_at: Option<DateTime<Utc>>,
}

impl WindowRecord {
    /// A record holding only an inbound time.
    pub fn inbound(at: DateTime<Utc>) -> Self {
        Self {
            last_inbound: at,
            gateway_closed_at: None,
        }
    }

    /// The gateway closure that is still in force: one timed at or after the last inbound
    /// message (a later inbound message reopens the window).
    pub fn effective_gateway_closure(&self) -> Option<DateTime<Utc>> {
        self.gateway_closed_at.filter(|c| *c >= self.last_inbound)
    }

    /// This record after an inbound message at `at`: the inbound time only moves forward.
    pub fn with_inbound(self, at: DateTime<Utc>) -> Self {
        let last_inbound = self.last_inbound.max(at);
        Self {
            last_inbound,
            // A closure that a newer inbound message has overridden is dropped.
            gateway_closed_at: self.gateway_closed_at.filter(|c| *c >= last_inbound),
        }
    }

    /// The record of two merged into one (two identities found to be one person): the
    /// later inbound time, and the later gateway closure if it is still in force after it.
    ///
    /// ```
    /// use lipachat_session::WindowRecord;
    ///
    /// let t = |s: &str| s.parse().unwrap();
    /// let old = WindowRecord::inbound(t("2026-11-23T08:00:00Z")).with_gateway_closure(t("2026-11-23T09:00:00Z"));
    /// let new = WindowRecord::inbound(t("2026-11-23T10:00:00Z"));
    /// assert_eq!(old.merged_with(new), new); // the later message overrides the closure
    /// assert_eq!(new.merged_with(old), new);
    /// ```
    pub fn merged_with(self, other: Self) -> Self {
        let closure = match (self.gateway_closed_at, other.gateway_closed_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let merged = Self {
            last_inbound: self.last_inbound,
            gateway_closed_at: closure,
        };
        merged.with_inbound(other.last_inbound)
    }

    /// This record after the gateway reported the window closed at `at`.
    pub fn with_gateway_closure(self, at: DateTime<Utc>) -> Self {
        Self {
            last_inbound: self.last_inbound,
            gateway_closed_at: Some(self.gateway_closed_at.map_or(at, |c| c.max(at))),
        }
    }
}

/// Why a window is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClosedCause {
    /// The window's length has passed since the last inbound message.
    Expired,
    /// The gateway refused a free-form send as outside the window (131047).
    Gateway,
}

/// The state of a conversation's customer service window at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WindowState {
    /// Free-form messages may be sent until `expires_at`.
    Open {
        /// The latest inbound message.
        last_inbound: DateTime<Utc>,
        /// When the window closes (`last_inbound + window`).
        expires_at: DateTime<Utc>,
        /// Time left until `expires_at`.
        remaining: TimeDelta,
    },
    /// Only templates may be sent until the customer writes again.
    Closed {
        /// The latest inbound message.
        last_inbound: DateTime<Utc>,
        /// The instant the window closed.
        closed_since: DateTime<Utc>,
        /// What closed it.
        cause: ClosedCause,
    },
    /// The customer has never written to this business number (or was forgotten).
    Never,
}

impl WindowState {
    /// Whether the window is open.
    pub fn is_open(&self) -> bool {
        matches!(self, Self::Open { .. })
    }

    /// A short name: `open`, `closed` or `none`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Open { .. } => "open",
            Self::Closed { .. } => "closed",
            Self::Never => "none",
        }
    }

    /// The latest inbound message, if any.
    pub fn last_inbound(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Open { last_inbound, .. } | Self::Closed { last_inbound, .. } => {
                Some(*last_inbound)
            }
            Self::Never => None,
        }
    }
}

/// Why a free-form send is not allowed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RefusalReason {
    /// The customer never wrote to this business number.
    NeverMessaged,
    /// The window closed: more than the window's length since the last inbound message.
    Expired,
    /// The gateway reported the window closed.
    ClosedByGateway,
    /// The window is open but closes within the safety margin: a message sent now might
    /// arrive after it closed.
    ClosingWithinMargin,
}

impl RefusalReason {
    /// A short, stable name (`never_messaged`, `expired`, `closed_by_gateway`,
    /// `closing_within_margin`).
    pub fn name(self) -> &'static str {
        match self {
            Self::NeverMessaged => "never_messaged",
            Self::Expired => "expired",
            Self::ClosedByGateway => "closed_by_gateway",
            Self::ClosingWithinMargin => "closing_within_margin",
        }
    }
}

/// Whether a free-form message may be sent now: allowed or refused, nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendDecision {
    /// Send: the window stays open for longer than the margin.
    Allowed {
        /// When the window closes.
        expires_at: DateTime<Utc>,
        /// Time left until then.
        remaining: TimeDelta,
    },
    /// Do not send a free-form message; only a template may go.
    Refused {
        /// Why.
        reason: RefusalReason,
        /// The window's state at the instant of the decision.
        state: WindowState,
    },
}

impl SendDecision {
    /// Whether the send may go.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed { .. })
    }
}

/// A rule that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// The window length is zero or negative, or not a whole number of milliseconds.
    #[error("window length must be a positive number of milliseconds, got {0:?}")]
    Window(TimeDelta),
    /// The margin is negative or not shorter than the window.
    #[error("safety margin must be at least zero and shorter than the window, got {0:?}")]
    Margin(TimeDelta),
}

/// The window rule: its length (default 24 hours) and the safety margin kept before it
/// closes (default 60 seconds).
///
/// Open exactly when `now < last_inbound + window`: at exactly 24 hours it is closed. A
/// free-form send is allowed only when `now + margin < last_inbound + window`. The margin
/// covers the send's own delay and, because the inbound time is the receipt time where
/// the webhook carries no sender timestamp, the webhook's delay too.
///
/// ```
/// use chrono::TimeDelta;
/// use lipachat_session::{WindowRecord, WindowRule};
///
/// let rule = WindowRule::default();
/// let inbound = "2026-11-23T10:00:00Z".parse()?;
/// let record = WindowRecord::inbound(inbound);
/// assert!(rule.state(Some(&record), inbound + TimeDelta::hours(23)).is_open());
/// assert!(!rule.state(Some(&record), inbound + TimeDelta::hours(24)).is_open());
/// // One minute before closing, the margin already refuses a free-form send.
/// let late = inbound + TimeDelta::hours(24) - TimeDelta::seconds(30);
/// assert!(!rule.decide(Some(&record), late).is_allowed());
/// # Ok::<(), chrono::ParseError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowRule {
    window: TimeDelta,
    margin: TimeDelta,
}

impl Default for WindowRule {
    fn default() -> Self {
        Self {
            window: Self::DEFAULT_WINDOW,
            margin: Self::DEFAULT_MARGIN,
        }
    }
}

impl WindowRule {
    /// WhatsApp's customer service window: 24 hours.
    pub const DEFAULT_WINDOW: TimeDelta = TimeDelta::hours(24);
    /// The default safety margin: 60 seconds.
    pub const DEFAULT_MARGIN: TimeDelta = TimeDelta::seconds(60);

    /// A rule with the given window length and safety margin.
    pub fn new(window: TimeDelta, margin: TimeDelta) -> Result<Self, RuleError> {
        if window <= TimeDelta::zero() || window.subsec_nanos() % 1_000_000 != 0 {
            return Err(RuleError::Window(window));
        }
        if margin < TimeDelta::zero() || margin >= window {
            return Err(RuleError::Margin(margin));
        }
        Ok(Self { window, margin })
    }

    /// The same rule with another margin.
    pub fn with_margin(self, margin: TimeDelta) -> Result<Self, RuleError> {
        Self::new(self.window, margin)
    }

    /// The window length.
    pub fn window(&self) -> TimeDelta {
        self.window
    }

    /// The safety margin.
    pub fn margin(&self) -> TimeDelta {
        self.margin
    }

    /// The last instant a free-form send into a window closing at `expires_at` may start:
    /// the expiry less the margin (saturating at chrono's range).
    pub fn send_deadline(&self, expires_at: DateTime<Utc>) -> DateTime<Utc> {
        saturating_add(expires_at, -self.margin)
    }

    /// The window's state at `now` for a conversation's record (`None`: never messaged).
    pub fn state(&self, record: Option<&WindowRecord>, now: DateTime<Utc>) -> WindowState {
        let Some(record) = record else {
            return WindowState::Never;
        };
        let last_inbound = record.last_inbound;
        let expires_at = saturating_add(last_inbound, self.window);
        if let Some(closed) = record.effective_gateway_closure()
            && now >= closed
        {
            return WindowState::Closed {
                last_inbound,
                closed_since: closed.min(expires_at),
                cause: if closed < expires_at {
                    ClosedCause::Gateway
                } else {
                    ClosedCause::Expired
                },
            };
        }
        if now < expires_at {
            WindowState::Open {
                last_inbound,
                expires_at,
                remaining: expires_at - now,
            }
        } else {
            WindowState::Closed {
                last_inbound,
                closed_since: expires_at,
                cause: ClosedCause::Expired,
            }
        }
    }

    /// Whether a free-form message may be sent at `now`, keeping the safety margin.
    pub fn decide(&self, record: Option<&WindowRecord>, now: DateTime<Utc>) -> SendDecision {
        let state = self.state(record, now);
        match state {
            WindowState::Open {
                expires_at,
                remaining,
                ..
            } if remaining > self.margin => SendDecision::Allowed {
                expires_at,
                remaining,
            },
            WindowState::Open { .. } => SendDecision::Refused {
                reason: RefusalReason::ClosingWithinMargin,
                state,
            },
            WindowState::Closed { cause, .. } => SendDecision::Refused {
                reason: match cause {
                    ClosedCause::Gateway => RefusalReason::ClosedByGateway,
                    ClosedCause::Expired => RefusalReason::Expired,
                },
                state,
            },
            WindowState::Never => SendDecision::Refused {
                reason: RefusalReason::NeverMessaged,
                state,
            },
        }
    }
}

/// `at + by`, saturating at chrono's range instead of panicking (stored or configured
/// values can be extreme: a corrupt time, a "never" cool-down).
pub fn saturating_add(at: DateTime<Utc>, by: TimeDelta) -> DateTime<Utc> {
    at.checked_add_signed(by)
        .unwrap_or(if by < TimeDelta::zero() {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        })
}

/// Milliseconds since the Unix epoch, the store's time unit.
pub(crate) fn to_millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// The instant `millis` milliseconds after the Unix epoch, clamped to chrono's range.
pub(crate) fn from_millis(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).unwrap_or(if millis < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// `at` truncated to the millisecond, the precision the store keeps.
pub fn truncate_to_millis(at: DateTime<Utc>) -> DateTime<Utc> {
    from_millis(to_millis(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn boundary_is_closed_at_exactly_the_window() {
        let rule = WindowRule::default();
        let at = t("2026-11-23T10:00:00Z");
        let r = WindowRecord::inbound(at);
        let just_before = at + TimeDelta::hours(24) - TimeDelta::milliseconds(1);
        assert!(rule.state(Some(&r), just_before).is_open());
        assert_eq!(
            rule.state(Some(&r), at + TimeDelta::hours(24)),
            WindowState::Closed {
                last_inbound: at,
                closed_since: at + TimeDelta::hours(24),
                cause: ClosedCause::Expired
            }
        );
        assert_eq!(rule.state(None, at), WindowState::Never);
    }

    #[test]
    fn margin_refuses_near_the_end() {
        let rule = WindowRule::default();
        let at = t("2026-11-23T10:00:00Z");
        let r = WindowRecord::inbound(at);
        let end = at + TimeDelta::hours(24);
        assert!(
            rule.decide(Some(&r), end - TimeDelta::seconds(61))
                .is_allowed()
        );
        match rule.decide(Some(&r), end - TimeDelta::seconds(60)) {
            SendDecision::Refused { reason, state } => {
                assert_eq!(reason, RefusalReason::ClosingWithinMargin);
                assert!(state.is_open());
            }
            other => panic!("expected refusal, got {other:?}"),
        }
        assert!(matches!(
            rule.decide(None, end),
            SendDecision::Refused {
                reason: RefusalReason::NeverMessaged,
                ..
            }
        ));
    }

    #[test]
    fn gateway_closure_holds_until_a_later_inbound() {
        let rule = WindowRule::default();
        let at = t("2026-11-23T10:00:00Z");
        let closed = at + TimeDelta::hours(2);
        let r = WindowRecord::inbound(at).with_gateway_closure(closed);
        assert!(
            rule.state(Some(&r), closed - TimeDelta::seconds(1))
                .is_open()
        );
        assert!(matches!(
            rule.decide(Some(&r), closed),
            SendDecision::Refused {
                reason: RefusalReason::ClosedByGateway,
                ..
            }
        ));
        // A late webhook for an earlier message does not reopen it.
        let late = r.with_inbound(closed - TimeDelta::minutes(1));
        assert!(
            !rule
                .state(Some(&late), closed + TimeDelta::minutes(1))
                .is_open()
        );
        // An inbound message timed after the closure does.
        let reply = r.with_inbound(closed + TimeDelta::minutes(1));
        assert_eq!(reply.gateway_closed_at, None);
        assert!(
            rule.state(Some(&reply), closed + TimeDelta::minutes(2))
                .is_open()
        );
    }

    #[test]
    fn rule_validation() {
        assert!(WindowRule::new(TimeDelta::zero(), TimeDelta::zero()).is_err());
        assert!(WindowRule::new(TimeDelta::hours(1), TimeDelta::hours(1)).is_err());
        assert!(WindowRule::new(TimeDelta::hours(1), TimeDelta::seconds(-1)).is_err());
        assert!(WindowRule::new(TimeDelta::hours(1), TimeDelta::zero()).is_ok());
    }

    #[test]
    fn extreme_times_saturate_instead_of_panicking() {
        let rule = WindowRule::default();
        let record = WindowRecord::inbound(DateTime::<Utc>::MAX_UTC);
        assert!(
            !rule
                .state(Some(&record), DateTime::<Utc>::MAX_UTC)
                .is_open()
        );
        assert_eq!(
            saturating_add(DateTime::<Utc>::MAX_UTC, TimeDelta::MAX),
            DateTime::<Utc>::MAX_UTC
        );
        assert_eq!(
            saturating_add(DateTime::<Utc>::MIN_UTC, TimeDelta::MIN),
            DateTime::<Utc>::MIN_UTC
        );
    }

    #[test]
    fn millis_clamp() {
        assert_eq!(from_millis(i64::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(from_millis(i64::MIN), DateTime::<Utc>::MIN_UTC);
        assert_eq!(to_millis(from_millis(1_700_000_000_123)), 1_700_000_000_123);
    }
}
