//! Delivering a conversation's outbox when the customer writes back, and taking expired
//! messages out of it.

use std::sync::Arc;

use lipachat_api::MessageId;
use lipachat_session::{Conversation, QueuedMessage, SendDecision, Store};
use tracing::{info, warn};

use crate::claim::under_claim;
use crate::error::PolicyError;
use crate::ids::requeue_message_id;
use crate::outcome::{
    Delivered, DeliveryReport, DeliveryStop, ExpiredMessage, FailedMessage, PreviousOutcome,
};
use crate::reconciliation::Reconciler;
use crate::request::QueuedPayload;
use crate::shared::{CallTime, Shared};

/// What became of an expired message a replica met.
enum Expiry {
    /// This replica took it out and reports it.
    Expired(ExpiredMessage),
    /// Another replica took it out (delivered or expired it) after the outbox was read.
    Gone,
    /// Another replica holds its claim (delivering or expiring it) right now.
    ClaimedElsewhere,
}

/// What one step of a delivery pass did with one message.
enum Step {
    /// The message left the queue (delivered, expired, found gone, or taken out for good).
    Left,
    /// The pass stops here (the report says why).
    Stop,
}

/// The outbox's delivery: sends a conversation's queued messages, oldest first, while the
/// window is open, and takes expired ones out, each under its delivery claim so that of
/// several replicas one acts on a message at a time.
pub(crate) struct OutboxDelivery<'a, S> {
    shared: &'a Arc<Shared<S>>,
}

impl<'a, S: Store> OutboxDelivery<'a, S> {
    /// How many times one delivery run reads the outbox again for late arrivals.
    const PASSES: usize = 4;

    /// The delivery over the messenger's shared state.
    pub fn new(shared: &'a Arc<Shared<S>>) -> Self {
        Self { shared }
    }

    /// Delivers the conversation's queued messages (see [`crate::Messenger::deliver`]).
    pub async fn deliver(&self, conversation: Conversation) -> Result<DeliveryReport, PolicyError> {
        let mut report = DeliveryReport::default();
        if conversation.phone().is_none() {
            report.remaining = self.shared.store().queued(conversation).await?.len();
            if report.remaining > 0 {
                report.stopped = Some(DeliveryStop::NotAddressable);
            }
            return Ok(report);
        }
        // Messages queued while a pass runs (a send that raced a reply) would otherwise
        // wait for the next reply: after a pass that went through everything it saw, look
        // again, a few times at most.
        for _ in 0..Self::PASSES {
            let before = report.delivered.len() + report.expired.len() + report.failed.len();
            self.pass(conversation, &mut report).await?;
            let progressed =
                report.delivered.len() + report.expired.len() + report.failed.len() > before;
            if report.stopped.is_some() || !progressed {
                break;
            }
        }
        Ok(report)
    }

    /// One pass over the outbox as it is now.
    async fn pass(
        &self,
        conversation: Conversation,
        report: &mut DeliveryReport,
    ) -> Result<(), PolicyError> {
        let queued = self.shared.store().queued(conversation).await?;
        let mut remaining = queued.len();
        for entry in queued {
            // Each message is a call of its own: the clock is read once for it.
            let now = CallTime::read(&self.shared.sessions);
            match self.step(conversation, &entry, now, report).await? {
                Step::Left => remaining -= 1,
                Step::Stop => break,
            }
        }
        report.remaining = remaining;
        Ok(())
    }

    /// Expires, delivers or takes out one queued message.
    async fn step(
        &self,
        conversation: Conversation,
        entry: &QueuedMessage,
        now: CallTime,
        report: &mut DeliveryReport,
    ) -> Result<Step, PolicyError> {
        let message_id = entry.message_id;
        let payload = serde_json::from_str::<QueuedPayload>(&entry.payload);
        if self.has_expired(entry, now) {
            match self
                .expire(conversation, entry, payload.as_ref().ok(), now)
                .await?
            {
                Expiry::Expired(expired) => report.expired.push(expired),
                Expiry::Gone => {}
                Expiry::ClaimedElsewhere => {
                    report.stopped = Some(DeliveryStop::ClaimedElsewhere(message_id));
                    return Ok(Step::Stop);
                }
            }
            return Ok(Step::Left);
        }
        let payload = match payload {
            Ok(payload) => payload,
            Err(_) if let Some(kind) = later_kind(&entry.payload) => {
                warn!(%conversation, %message_id, kind, "queued message of a kind this release does not know: left queued for a release that does");
                report.stopped = Some(DeliveryStop::UnknownKind { message_id, kind });
                return Ok(Step::Stop);
            }
            Err(error) => {
                warn!(%conversation, %message_id, %error, "queued message unreadable: taking it out");
                self.shared
                    .store()
                    .dequeue(conversation, entry.message_id)
                    .await?;
                report.failed.push(FailedMessage {
                    message_id,
                    error: format!(
                        "the stored message is unreadable (no request was made): {error}"
                    ),
                });
                return Ok(Step::Left);
            }
        };
        let expires_at = match self.shared.sessions.decide_at(conversation, now.at).await? {
            SendDecision::Allowed { expires_at, .. } => expires_at,
            SendDecision::Refused { reason, .. } => {
                report.stopped = Some(DeliveryStop::WindowNotOpen(reason));
                return Ok(Step::Stop);
            }
        };
        let sent = || self.send_one(conversation, entry, payload, expires_at, now, report);
        let lease = self.shared.config.delivery_lease;
        match under_claim(self.shared, entry.message_id, now.at, lease, sent).await? {
            Some(step) => Ok(step),
            None => {
                report.stopped = Some(DeliveryStop::ClaimedElsewhere(message_id));
                Ok(Step::Stop)
            }
        }
    }

    /// The gateway refused the message as outside the window (answering 131047, or in a
    /// kept report), the window closed at `closed_at`: the closure is recorded, the
    /// message stays queued under a fresh `messageId` derived from `message_id` (the
    /// gateway may remember the refused one), and delivery stops.
    async fn refused(
        &self,
        conversation: Conversation,
        message_id: MessageId,
        closed_at: chrono::DateTime<chrono::Utc>,
        report: &mut DeliveryReport,
    ) -> Result<Step, PolicyError> {
        self.shared
            .sessions
            .record_gateway_closure_at(conversation, closed_at)
            .await?;
        self.shared
            .store()
            .reassign(conversation, message_id, requeue_message_id(message_id))
            .await?;
        report.stopped = Some(DeliveryStop::GatewayClosedWindow);
        Ok(Step::Stop)
    }

    /// Whether the message has waited past the outbox's time to live.
    fn has_expired(&self, entry: &QueuedMessage, now: CallTime) -> bool {
        entry.has_expired(self.shared.config.outbox_ttl, now.at)
    }

    /// Sends one claimed message.
    async fn send_one(
        &self,
        conversation: Conversation,
        entry: &QueuedMessage,
        payload: QueuedPayload,
        expires_at: chrono::DateTime<chrono::Utc>,
        now: CallTime,
        report: &mut DeliveryReport,
    ) -> Result<Step, PolicyError> {
        let message_id = entry.message_id;
        // Another replica may have delivered it between our read and our claim.
        if !self.still_queued(conversation, entry.message_id).await? {
            return Ok(Step::Left);
        }
        info!(%conversation, %message_id, kind = payload.message.kind(), "delivering queued message");
        let store = self.shared.store();
        match self
            .shared
            .client
            .send_free_form_before(
                conversation,
                message_id,
                &payload.message,
                self.shared.send_deadline(now, expires_at),
            )
            .await
        {
            Ok(receipt) => {
                // The gateway may already have reported this delivery as outside the
                // window, its status callback overtaking this answer (or this is the
                // redelivery, answered as a duplicate, of one whose outcome write failed):
                // the report was kept, and the message is refused as that report says,
                // before it leaves the outbox (a failed look leaves it queued).
                if let Some(wa_id) = receipt.wa_id.as_deref()
                    && let Some(at) = self.shared.early_report(conversation, wa_id).await?
                {
                    warn!(%conversation, %message_id, wa_id, "the gateway reported this delivery as outside the window before its answer: it stays queued with a fresh messageId");
                    return self
                        .refused(conversation, message_id, at.min(now.at), report)
                        .await;
                }
                // The message leaves the outbox in the same durable step as the outcome
                // saying it was delivered: a retry of the send then finds that outcome,
                // never an empty outbox and no outcome (and sends it again).
                let outcome = PreviousOutcome::delivered(
                    message_id,
                    receipt.wa_id.clone(),
                    payload.message,
                    now.at,
                );
                let outcome = self.shared.stored_for_horizon(payload.origin, &outcome);
                store
                    .dequeue_with_outcome(conversation, entry.message_id, outcome)
                    .await?;
                // A failed status naming this delivery that came after the look above
                // but before its outcome was stored found nothing: it was kept, and is
                // handled now, as that report would have been.
                let reconciler = Reconciler::new(self.shared);
                let wa_id = receipt.wa_id.as_deref();
                let handled = reconciler.after_outcome_stored(
                    conversation,
                    payload.origin,
                    message_id,
                    wa_id,
                    now,
                    false,
                );
                if handled.await?.is_some() {
                    report.stopped = Some(DeliveryStop::GatewayClosedWindow);
                    return Ok(Step::Stop);
                }
                info!(%conversation, %message_id, wa_id = receipt.wa_id.as_deref().unwrap_or(""), "delivered queued message");
                let pricing = self
                    .shared
                    .record_service_sent(conversation, message_id, receipt.wa_id.clone(), now.at)
                    .await?;
                report.delivered.push(Delivered {
                    message_id,
                    receipt,
                    queued_at: entry.queued_at,
                    pricing,
                });
                Ok(Step::Left)
            }
            Err(error) if error.is_window_closed() => {
                warn!(%conversation, %message_id, "gateway refused queued message as outside the window: it stays queued with a fresh messageId");
                // A refusal closes the window from the moment the request went out: a
                // reply recorded while it was in flight came after what the gateway judged.
                self.refused(conversation, message_id, now.at, report).await
            }
            // Only a message the gateway finds invalid can never be sent; any other failure
            // (a wrong or rotated key, an outage, an unexplained refusal) leaves it queued:
            // it is delivered later or reported when it expires, never silently dropped.
            Err(error) if !message_is_invalid(&error) => {
                warn!(%conversation, %message_id, %error, "delivery failed; the message stays queued");
                report.stopped = Some(DeliveryStop::SendFailed(error));
                Ok(Step::Stop)
            }
            Err(error) => {
                warn!(%conversation, %message_id, %error, "gateway refused queued message for good: taking it out");
                store.dequeue(conversation, entry.message_id).await?;
                report.failed.push(FailedMessage {
                    message_id,
                    error: format!("refused by the gateway as invalid: {error}"),
                });
                Ok(Step::Left)
            }
        }
    }

    /// Whether the message is still in the conversation's outbox.
    async fn still_queued(
        &self,
        conversation: Conversation,
        message_id: MessageId,
    ) -> Result<bool, PolicyError> {
        Ok(self
            .shared
            .store()
            .queued(conversation)
            .await?
            .iter()
            .any(|m| m.message_id == message_id))
    }

    /// Takes every expired message out of every outbox and reports them (see
    /// [`crate::Messenger::expire_queued`]).
    pub async fn expire_queued(&self) -> Result<Vec<ExpiredMessage>, PolicyError> {
        let mut expired = Vec::new();
        let now = CallTime::read(&self.shared.sessions);
        let store = self.shared.store();
        for conversation in store.conversations_with_queued().await? {
            for entry in store.queued(conversation).await? {
                if !self.has_expired(&entry, now) {
                    continue;
                }
                let payload = serde_json::from_str::<QueuedPayload>(&entry.payload).ok();
                // Taken out or held by another replica: it reports it, not us.
                if let Expiry::Expired(message) = self
                    .expire(conversation, &entry, payload.as_ref(), now)
                    .await?
                {
                    expired.push(message);
                }
            }
        }
        Ok(expired)
    }

    /// Takes an expired message out, under the same claim as delivery, so that of several
    /// replicas that meet it only one reports it expired, and none expires a message
    /// another is delivering (as a replica whose clock runs ahead could).
    async fn expire(
        &self,
        conversation: Conversation,
        entry: &QueuedMessage,
        payload: Option<&QueuedPayload>,
        now: CallTime,
    ) -> Result<Expiry, PolicyError> {
        let lease = self.shared.config.delivery_lease;
        let work = || self.expire_claimed(conversation, entry, payload, now);
        Ok(
            under_claim(self.shared, entry.message_id, now.at, lease, work)
                .await?
                .unwrap_or(Expiry::ClaimedElsewhere),
        )
    }

    async fn expire_claimed(
        &self,
        conversation: Conversation,
        entry: &QueuedMessage,
        payload: Option<&QueuedPayload>,
        now: CallTime,
    ) -> Result<Expiry, PolicyError> {
        // Another replica may have delivered or expired it between our read and our claim.
        if !self.still_queued(conversation, entry.message_id).await? {
            return Ok(Expiry::Gone);
        }
        let message_id = entry.message_id;
        warn!(%conversation, %message_id, queued_at = %entry.queued_at, "queued message expired undelivered");
        let store = self.shared.store();
        match payload {
            // Taken out in the same durable step as the outcome saying it expired.
            Some(payload) => {
                let outcome = PreviousOutcome::expired(message_id, now.at);
                let outcome = self.shared.stored_for_horizon(payload.origin, &outcome);
                store
                    .dequeue_with_outcome(conversation, entry.message_id, outcome)
                    .await?;
            }
            None => {
                store.dequeue(conversation, entry.message_id).await?;
            }
        }
        Ok(Expiry::Expired(ExpiredMessage {
            conversation,
            message_id,
            queued_at: entry.queued_at,
            message: payload.map(|p| p.message.clone()),
        }))
    }
}

/// The kind of a queued payload that is well formed but of a kind this release does not
/// know (a later release queued it), shortened; `None` for anything else.
fn later_kind(payload: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    let kind = value.get("message")?.get("kind")?.as_str()?;
    (!lipachat_api::FreeFormMessage::KINDS.contains(&kind)).then(|| kind.chars().take(64).collect())
}

/// Whether the gateway's answer says the message itself can never be sent.
fn message_is_invalid(error: &lipachat_api::ApiError) -> bool {
    matches!(
        error.root(),
        lipachat_api::ApiError::BadRequest { .. } | lipachat_api::ApiError::Invalid(_)
    )
}
