//! What every part of the messenger shares: the session engine, the gateway client, the
//! policy, the instant a call reads once, and the outcomes stored per `messageId`.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_api::{Client, MessageId};
use lipachat_session::{Conversation, Sessions, Store, StoredOutcome};
use serde::Serialize;

use crate::catalog::TemplateCatalogs;
use crate::config::PolicyConfig;
use crate::error::PolicyError;
use crate::ids::early_report_id;
use crate::observer::Observers;
use crate::outcome::{OutcomeKind, PreviousOutcome};

/// The messenger's state, shared by its clones and by the parts of the send path (the
/// closed-window choice, the outbox delivery, the reconciliation of late reports).
pub(crate) struct Shared<S> {
    /// The session engine, on the real time; it owns the window rule.
    pub sessions: Sessions<S>,
    /// The gateway client.
    pub client: Client,
    /// The policy.
    pub config: PolicyConfig,
    /// The template catalogs templates are checked against.
    pub catalogs: TemplateCatalogs,
    /// Told of every send, withheld template and predicted pricing
    /// ([`crate::SendObserver`]).
    pub observers: Observers,
    /// The months whose service free tier this messenger has seen used up.
    pub spent_tiers: crate::messaging_limit::SpentTiers,
}

/// The time one call works at, read once when it starts: the wall-clock instant it
/// decides and stamps with, and the monotonic instant read with it, from which send
/// deadlines are measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallTime {
    /// The wall-clock time (the engine's clock).
    pub at: DateTime<Utc>,
    /// The monotonic clock, read with `at`.
    started: Instant,
}

impl CallTime {
    /// Reads the engine's clock, and the monotonic clock with it.
    pub fn read<S: Store>(sessions: &Sessions<S>) -> Self {
        Self {
            at: sessions.now(),
            started: Instant::now(),
        }
    }

    /// The monotonic instant at which the wall clock reads `until`. A time before the
    /// call is the call's start; one beyond the platform's `Instant` range is capped at a
    /// year.
    pub fn instant_of(&self, until: DateTime<Utc>) -> Instant {
        let left = (until - self.at).to_std().unwrap_or_default();
        self.started
            .checked_add(left)
            .or_else(|| {
                self.started
                    .checked_add(Duration::from_secs(365 * 24 * 3600))
            })
            .unwrap_or(self.started)
    }
}

impl<S: Store> Shared<S> {
    /// The store.
    pub fn store(&self) -> &S {
        self.sessions.store()
    }

    /// The last instant an attempt of a free-form send may start: the window's expiry
    /// less the engine's safety margin (retries must not carry a message past the point
    /// where it was allowed).
    pub fn send_deadline(&self, now: CallTime, expires_at: DateTime<Utc>) -> Instant {
        now.instant_of(self.sessions.rule().send_deadline(expires_at))
    }

    /// The outcome remembered for `message_id` in `conversation`.
    pub async fn previous_outcome(
        &self,
        conversation: Conversation,
        message_id: MessageId,
    ) -> Result<Option<PreviousOutcome>, PolicyError> {
        let Some(text) = self.store().outcome(conversation, message_id).await? else {
            return Ok(None);
        };
        parse_outcome(conversation, message_id, &text).map(Some)
    }

    /// The outcome whose WhatsApp message id is `wa_id`, with the caller's `messageId` it
    /// is stored under (see [`crate::Messenger::outcome_by_wa_id`]).
    pub async fn outcome_by_wa_id(
        &self,
        conversation: Conversation,
        wa_id: &str,
    ) -> Result<Option<(MessageId, PreviousOutcome)>, PolicyError> {
        let Some((key, text)) = self.store().outcome_by_wa_id(conversation, wa_id).await? else {
            return Ok(None);
        };
        let outcome = parse_outcome(conversation, key, &text)?;
        Ok((outcome.wa_id.as_deref() == Some(wa_id)).then_some((key, outcome)))
    }

    /// An outcome as the store keeps it, under the caller's `messageId` `key`, indexed by
    /// its WhatsApp id, kept for `keep_for`.
    pub fn stored_outcome(
        key: MessageId,
        outcome: &PreviousOutcome,
        keep_for: TimeDelta,
    ) -> StoredOutcome {
        StoredOutcome {
            message_id: key,
            text: to_json(outcome),
            wa_id: outcome.wa_id.clone(),
            keep_for,
        }
    }

    /// An outcome stored under `key` for the outcome horizon.
    pub fn stored_for_horizon(&self, key: MessageId, outcome: &PreviousOutcome) -> StoredOutcome {
        Self::stored_outcome(key, outcome, self.config.outcome_horizon)
    }

    /// Keeps a window-closed report naming WhatsApp's id `wa_id` that found no send
    /// stored with it (the send's answer may still be on its way), for the outcome
    /// horizon: stored as a refused outcome under [`early_report_id`], not indexed by the
    /// WhatsApp id, so only [`Shared::early_report`] finds it.
    pub async fn keep_early_report(
        &self,
        conversation: Conversation,
        wa_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), PolicyError> {
        let key = early_report_id(wa_id);
        let report = PreviousOutcome::refused(key, Some(wa_id.to_owned()), at);
        let stored = StoredOutcome {
            message_id: key,
            text: to_json(&report),
            wa_id: None,
            keep_for: self.config.outcome_horizon,
        };
        self.store().put_outcome(conversation, stored).await?;
        Ok(())
    }

    /// When the window-closed report kept by [`Shared::keep_early_report`] for `wa_id`
    /// says the failure happened, if one is kept.
    pub async fn early_report(
        &self,
        conversation: Conversation,
        wa_id: &str,
    ) -> Result<Option<DateTime<Utc>>, PolicyError> {
        let key = early_report_id(wa_id);
        Ok(self
            .previous_outcome(conversation, key)
            .await?
            .filter(|report| {
                report.kind == OutcomeKind::Refused && report.wa_id.as_deref() == Some(wa_id)
            })
            .map(|report| report.at))
    }

    /// Stores an outcome under the caller's `messageId`, kept for the outcome horizon.
    /// Status callbacks that name only WhatsApp's message id find it through its `wa_id`.
    pub async fn remember(
        &self,
        conversation: Conversation,
        key: MessageId,
        outcome: &PreviousOutcome,
    ) -> Result<(), PolicyError> {
        let outcome = self.stored_for_horizon(key, outcome);
        self.store().put_outcome(conversation, outcome).await?;
        Ok(())
    }
}

/// The conversation, when it has a phone number to send to; else
/// [`PolicyError::NotAddressable`].
pub(crate) fn addressable(conversation: Conversation) -> Result<Conversation, PolicyError> {
    match conversation.phone() {
        Some(_) => Ok(conversation),
        None => Err(PolicyError::NotAddressable { conversation }),
    }
}

fn parse_outcome(
    conversation: Conversation,
    key: MessageId,
    text: &str,
) -> Result<PreviousOutcome, PolicyError> {
    serde_json::from_str(text).map_err(|e| PolicyError::Corrupt {
        conversation,
        detail: format!("outcome of {key}: {e}"),
    })
}

/// The JSON a stored record keeps.
pub(crate) fn to_json<T: Serialize>(value: &T) -> String {
    // Serialising these plain data types cannot fail: no maps with non-string keys, no
    // custom serialisers that error.
    serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"unserialisable\":\"{e}\"}}"))
}
