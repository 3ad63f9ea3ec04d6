//! The stand-in's own customer service windows, kept from the inbound messages it is told
//! about, and judged with the session crate's [`WindowRule`].

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::{Conversation, RuleError, WindowRecord, WindowRule, WindowState};

/// How the stand-in refuses a free-form send outside the window. WhatsApp does both: it
/// answers 131047 at once, or accepts the send and reports it failed later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WindowRefusal {
    /// Answer HTTP 200 with `"status": "error"` and error 131047; nothing is sent.
    #[default]
    Immediate,
    /// Answer HTTP 200 with the success envelope and a `wamid.`, then report that message
    /// failed (131047) in a status callback taken with
    /// [`StandInGateway::take_status_callbacks`](crate::StandInGateway::take_status_callbacks).
    /// Nothing reaches the customer.
    StatusCallback,
}

/// The last inbound time of every (business, customer) pair, and the rule that judges it.
#[derive(Debug)]
pub(crate) struct WindowBook {
    rule: WindowRule,
    records: HashMap<Conversation, WindowRecord>,
}

impl WindowBook {
    /// A book whose windows last `window`. The gateway keeps no safety margin: WhatsApp
    /// refuses only once the window has passed.
    pub(crate) fn new(window: TimeDelta) -> Result<Self, RuleError> {
        Ok(Self {
            rule: WindowRule::new(window, TimeDelta::zero())?,
            records: HashMap::new(),
        })
    }

    /// Records an inbound message at `at`: opens or renews the pair's window (the inbound
    /// time only moves forward).
    pub(crate) fn customer_writes(&mut self, conversation: Conversation, at: DateTime<Utc>) {
        self.records
            .entry(conversation)
            .and_modify(|record| *record = record.with_inbound(at))
            .or_insert_with(|| WindowRecord::inbound(at));
    }

    /// The pair's window at `now`.
    pub(crate) fn state(&self, conversation: Conversation, now: DateTime<Utc>) -> WindowState {
        self.rule.state(self.records.get(&conversation), now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_belong_to_the_pair_and_only_move_forward() {
        let mut book = WindowBook::new(TimeDelta::hours(24)).unwrap();
        let at: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let a = Conversation::parse("254110090747", "254712345678").unwrap();
        let b = Conversation::parse("254110090748", "254712345678").unwrap();
        book.customer_writes(a, at);
        assert!(book.state(a, at + TimeDelta::hours(23)).is_open());
        assert!(!book.state(b, at).is_open());
        // A late report of an older message does not shorten the window.
        book.customer_writes(a, at - TimeDelta::hours(5));
        assert!(book.state(a, at + TimeDelta::hours(23)).is_open());
        assert!(!book.state(a, at + TimeDelta::hours(24)).is_open());
    }

    #[test]
    fn invalid_windows_are_rejected() {
        assert!(WindowBook::new(TimeDelta::zero()).is_err());
    }
}
