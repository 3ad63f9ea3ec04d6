//! The gateway's memory of sends: windows, answers already given per `messageId`,
//! deliveries, refusals and pending status callbacks. Deciding a send is one short,
//! synchronous step under one lock, so concurrent retries of one `messageId` deliver once.

use std::collections::HashMap;

use axum::body::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::{Conversation, RuleError, WindowState};
use serde_json::Value;

use crate::record::{DeliveredMessage, Refusal};
use crate::window::{WindowBook, WindowRefusal};
use crate::wire::{self, SendRequest};

/// What became of a valid, authorised send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Delivered; answer with this success body.
    Delivered(Bytes),
    /// Already answered with success under this `messageId`: the same body again.
    Duplicate(Bytes),
    /// Outside the window, refused at once.
    Refused,
    /// Outside the window, answered with this success body and failed by status callback.
    FailedLater(Bytes),
}

/// A send prepared outside the lock: its `wamid.` and the answer it gets if it succeeds.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) send: SendRequest,
    pub(crate) wa_id: String,
    pub(crate) success: Bytes,
    pub(crate) body: Value,
    pub(crate) at: DateTime<Utc>,
}

#[derive(Debug)]
pub(crate) struct Ledger {
    windows: WindowBook,
    refusal: WindowRefusal,
    answered: HashMap<String, Bytes>,
    delivered: Vec<DeliveredMessage>,
    refusals: Vec<Refusal>,
    callbacks: Vec<Value>,
}

impl Ledger {
    pub(crate) fn new(window: TimeDelta, refusal: WindowRefusal) -> Result<Self, RuleError> {
        Ok(Self {
            windows: WindowBook::new(window)?,
            refusal,
            answered: HashMap::new(),
            delivered: Vec::new(),
            refusals: Vec::new(),
            callbacks: Vec::new(),
        })
    }

    /// Decides a valid, authorised send: duplicate, then window, then delivery.
    pub(crate) fn submit(&mut self, prepared: Prepared) -> Verdict {
        let Prepared {
            send,
            wa_id,
            success,
            body,
            at,
        } = prepared;
        if let Some(previous) = self.answered.get(&send.message_id) {
            return Verdict::Duplicate(previous.clone());
        }
        let conversation = Conversation::new(send.business, send.customer);
        if send.kind.is_free_form() && !self.windows.state(conversation, at).is_open() {
            let refusal = Refusal {
                kind: send.kind,
                business: send.business,
                customer: send.customer,
                message_id: send.message_id,
                mode: self.refusal,
                wa_id: None,
                at,
            };
            return match self.refusal {
                WindowRefusal::Immediate => {
                    self.refusals.push(refusal);
                    Verdict::Refused
                }
                WindowRefusal::StatusCallback => {
                    self.callbacks.push(wire::failed_status_callback(
                        send.business,
                        send.customer,
                        &wa_id,
                        at,
                    ));
                    self.answered
                        .insert(refusal.message_id.clone(), success.clone());
                    self.refusals.push(Refusal {
                        wa_id: Some(wa_id),
                        ..refusal
                    });
                    Verdict::FailedLater(success)
                }
            };
        }
        self.answered
            .insert(send.message_id.clone(), success.clone());
        self.delivered.push(DeliveredMessage {
            kind: send.kind,
            business: send.business,
            customer: send.customer,
            message_id: send.message_id,
            wa_id,
            body,
            delivered_at: at,
        });
        Verdict::Delivered(success)
    }

    pub(crate) fn customer_writes(&mut self, conversation: Conversation, at: DateTime<Utc>) {
        self.windows.customer_writes(conversation, at);
    }

    pub(crate) fn window_state(
        &self,
        conversation: Conversation,
        now: DateTime<Utc>,
    ) -> WindowState {
        self.windows.state(conversation, now)
    }

    pub(crate) fn delivered(&self) -> &[DeliveredMessage] {
        &self.delivered
    }

    pub(crate) fn refusals(&self) -> &[Refusal] {
        &self.refusals
    }

    pub(crate) fn take_callbacks(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.callbacks)
    }

    /// Forgets every answered `messageId`, delivery, refusal and pending callback,
    /// keeping the windows.
    pub(crate) fn forget_history(&mut self) {
        self.answered = HashMap::new();
        self.delivered = Vec::new();
        self.refusals = Vec::new();
        self.callbacks = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::MessageKind;

    fn prepared(kind: MessageKind, id: &str, wa_id: &str, at: DateTime<Utc>) -> Prepared {
        Prepared {
            send: SendRequest {
                kind,
                message_id: id.to_owned(),
                business: "254110090747".parse().unwrap(),
                customer: "254712345678".parse().unwrap(),
            },
            wa_id: wa_id.to_owned(),
            success: Bytes::copy_from_slice(wa_id.as_bytes()),
            body: Value::Null,
            at,
        }
    }

    #[test]
    fn duplicates_replay_the_first_answer() {
        let at: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let mut ledger = Ledger::new(TimeDelta::hours(24), WindowRefusal::Immediate).unwrap();
        let first = ledger.submit(prepared(MessageKind::Template, "m", "wamid.1", at));
        let second = ledger.submit(prepared(MessageKind::Template, "m", "wamid.2", at));
        assert_eq!(first, Verdict::Delivered(Bytes::from_static(b"wamid.1")));
        assert_eq!(second, Verdict::Duplicate(Bytes::from_static(b"wamid.1")));
        assert_eq!(ledger.delivered().len(), 1);
    }

    #[test]
    fn immediate_refusal_is_not_remembered_as_an_answer() {
        let at: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let mut ledger = Ledger::new(TimeDelta::hours(24), WindowRefusal::Immediate).unwrap();
        assert_eq!(
            ledger.submit(prepared(MessageKind::Text, "m", "wamid.1", at)),
            Verdict::Refused
        );
        let conversation = Conversation::parse("254110090747", "254712345678").unwrap();
        ledger.customer_writes(conversation, at);
        // A retry after the customer wrote is judged afresh.
        assert!(matches!(
            ledger.submit(prepared(MessageKind::Text, "m", "wamid.2", at)),
            Verdict::Delivered(_)
        ));
        assert_eq!(ledger.refusals().len(), 1);
        assert_eq!(ledger.delivered().len(), 1);
    }
}
