//! Delivering the outbox when the customer writes back, expiry, and reconciliation with
//! the gateway's reports.

use chrono::{DateTime, Utc};
use lipachat_api::MessageId;
use lipachat_session::window::saturating_add;
use lipachat_session::{Conversation, InboundId, QueuedMessage, RecordedOnce, SendDecision, Store};
use tracing::{info, warn};

use crate::error::PolicyError;
use crate::messenger::{Messenger, QueuedPayload, SendRequest, requeue_message_id, send_claim_id};
use crate::outcome::{
    Delivered, DeliveryReport, DeliveryStop, ExpiredMessage, FailedMessage, InboundHandled,
    InboundReport, OutcomeKind, PreviousOutcome, SendOutcome,
};

/// What [`Messenger::on_window_closed_report`] did with a late "outside the window" report.
#[derive(Debug)]
#[non_exhaustive]
pub enum Reconciliation {
    /// The closure was recorded and the message it names was handled as if the window had
    /// been closed when it was sent.
    Handled {
        /// The outcome of handling it again (rejected, rerouted or queued).
        outcome: Box<SendOutcome>,
    },
    /// The closure was recorded, but no sent message with that id is known here (it may
    /// have been sent by other software, or its record was erased).
    ClosureRecorded,
}

/// What became of an expired message a replica met.
enum Expiry {
    /// This replica took it out and reports it.
    Expired(ExpiredMessage),
    /// Another replica took it out (delivered or expired it) after the outbox was read.
    Gone,
    /// Another replica holds its claim (delivering or expiring it) right now.
    ClaimedElsewhere,
}

impl<S: Store> Messenger<S> {
    /// Records an inbound message from the customer at `at` (the sender's timestamp, or
    /// the receipt time), then delivers that conversation's queued messages, in order,
    /// while the window is open.
    pub async fn on_inbound(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> Result<InboundReport, PolicyError> {
        let recorded = self.sessions().record_inbound(conversation, at).await?;
        info!(%conversation, %at, opened = recorded.opened, state = recorded.state.name(), "inbound message recorded");
        let delivery = self.deliver(conversation).await?;
        Ok(InboundReport {
            conversation,
            recorded,
            delivery,
        })
    }

    /// Records an inbound message from the customer at `at`, once per platform message id
    /// `id` (see [`Sessions::record_inbound_once`](lipachat_session::Sessions::record_inbound_once)),
    /// then delivers that conversation's queued messages while the window is open.
    ///
    /// A redelivered copy records nothing and returns [`InboundHandled::Duplicate`]: do not
    /// answer it again. Its delivery still runs (it sends only what is queued, each
    /// message under its own `messageId`), so messages left queued by a first handling
    /// that crashed before delivering are not stranded.
    pub async fn on_inbound_once(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
        id: &InboundId,
    ) -> Result<InboundHandled, PolicyError> {
        match self
            .sessions()
            .record_inbound_once(conversation, at, id)
            .await?
        {
            RecordedOnce::First(recorded) => {
                info!(%conversation, %at, inbound_id = %id, opened = recorded.opened, state = recorded.state.name(), "inbound message recorded");
                let delivery = self.deliver(conversation).await?;
                Ok(InboundHandled::First(InboundReport {
                    conversation,
                    recorded,
                    delivery,
                }))
            }
            RecordedOnce::Duplicate {
                first_received_at, ..
            } => {
                info!(%conversation, inbound_id = %id, %first_received_at, "redelivered inbound message: nothing recorded");
                let delivery = self.deliver(conversation).await?;
                Ok(InboundHandled::Duplicate {
                    first_received_at,
                    delivery,
                })
            }
        }
    }

    /// Delivers the conversation's queued messages, oldest first, while the window is open
    /// (margin kept). Expired messages are taken out and reported (under the delivery
    /// claim, so by one replica only). Each message keeps its `messageId` across attempts,
    /// so a crash between the gateway's acceptance and our bookkeeping can resend it but
    /// the gateway deduplicates it.
    ///
    /// A conversation without a phone number sends nothing: its messages stay queued
    /// ([`DeliveryStop::NotAddressable`]).
    pub async fn deliver(&self, conversation: Conversation) -> Result<DeliveryReport, PolicyError> {
        let mut report = DeliveryReport::default();
        if conversation.phone().is_none() {
            report.remaining = self.store().queued(conversation).await?.len();
            if report.remaining > 0 {
                report.stopped = Some(DeliveryStop::NotAddressable);
            }
            return Ok(report);
        }
        // Messages queued while a pass runs (a send that raced a reply) would otherwise
        // wait for the next reply: after a pass that went through everything it saw, look
        // again, a few times at most.
        for _ in 0..Self::DELIVERY_PASSES {
            let before = report.delivered.len() + report.expired.len() + report.failed.len();
            self.deliver_pass(conversation, &mut report).await?;
            let progressed =
                report.delivered.len() + report.expired.len() + report.failed.len() > before;
            if report.stopped.is_some() || !progressed {
                break;
            }
        }
        Ok(report)
    }

    /// How many times one delivery run reads the outbox again for late arrivals.
    const DELIVERY_PASSES: usize = 4;

    /// One pass over the outbox as it is now.
    async fn deliver_pass(
        &self,
        conversation: Conversation,
        report: &mut DeliveryReport,
    ) -> Result<(), PolicyError> {
        let queued = self.store().queued(conversation).await?;
        let mut remaining = queued.len();
        for entry in queued {
            let now = self.now();
            let message_id = MessageId::from_uuid(entry.message_id);
            let payload = serde_json::from_str::<QueuedPayload>(&entry.payload);
            if saturating_add(entry.queued_at, self.config().outbox_ttl) <= now {
                match self
                    .expire(conversation, &entry, payload.as_ref().ok(), now)
                    .await?
                {
                    Expiry::Expired(expired) => report.expired.push(expired),
                    Expiry::Gone => {}
                    Expiry::ClaimedElsewhere => {
                        report.stopped = Some(DeliveryStop::ClaimedElsewhere(message_id));
                        break;
                    }
                }
                remaining -= 1;
                continue;
            }
            let payload = match payload {
                Ok(payload) => payload,
                Err(_) if let Some(kind) = later_kind(&entry.payload) => {
                    warn!(%conversation, %message_id, kind, "queued message of a kind this release does not know: left queued for a release that does");
                    report.stopped = Some(DeliveryStop::UnknownKind { message_id, kind });
                    break;
                }
                Err(error) => {
                    warn!(%conversation, %message_id, %error, "queued message unreadable: taking it out");
                    self.store().dequeue(conversation, entry.message_id).await?;
                    report.failed.push(FailedMessage {
                        message_id,
                        error: format!(
                            "the stored message is unreadable (no request was made): {error}"
                        ),
                    });
                    remaining -= 1;
                    continue;
                }
            };
            let expires_at = match self.sessions().decide(conversation).await? {
                SendDecision::Allowed { expires_at, .. } => expires_at,
                SendDecision::Refused { reason, .. } => {
                    report.stopped = Some(DeliveryStop::WindowNotOpen(reason));
                    break;
                }
            };
            let Some(claim) = self
                .try_claim(entry.message_id, now, self.config().delivery_lease)
                .await?
            else {
                report.stopped = Some(DeliveryStop::ClaimedElsewhere(message_id));
                break;
            };
            let step = self
                .deliver_claimed(conversation, &entry, payload, expires_at, report)
                .await;
            claim.release().await;
            match step? {
                true => remaining -= 1,
                false => break,
            }
        }
        report.remaining = remaining;
        Ok(())
    }

    /// Sends one claimed message; `Ok(true)` when it left the queue, `Ok(false)` to stop.
    async fn deliver_claimed(
        &self,
        conversation: Conversation,
        entry: &QueuedMessage,
        payload: QueuedPayload,
        expires_at: DateTime<Utc>,
        report: &mut DeliveryReport,
    ) -> Result<bool, PolicyError> {
        let message_id = MessageId::from_uuid(entry.message_id);
        // Another replica may have delivered it between our read and our claim.
        if !self.still_queued(conversation, entry.message_id).await? {
            return Ok(true);
        }
        info!(%conversation, %message_id, kind = payload.message.kind(), "delivering queued message");
        // A refusal closes the window from the moment the request went out: a reply
        // recorded while it was in flight came after what the gateway judged.
        let sent_at = self.now();
        match self
            .client()
            .send_free_form_before(
                conversation,
                message_id,
                &payload.message,
                self.send_deadline(expires_at),
            )
            .await
        {
            Ok(receipt) => {
                // The message leaves the outbox in the same durable step as the outcome
                // saying it was delivered: a retry of the send then finds that outcome,
                // never an empty outbox and no outcome (and sends it again).
                let outcome = PreviousOutcome {
                    kind: OutcomeKind::Delivered,
                    message_id,
                    wa_id: receipt.wa_id.clone(),
                    template_message_id: None,
                    at: self.now(),
                    message: Some(payload.message),
                };
                self.store()
                    .dequeue_with_outcome(
                        conversation,
                        entry.message_id,
                        Self::stored_outcome(
                            payload.origin,
                            &outcome,
                            self.config().outcome_horizon_value(),
                        ),
                    )
                    .await?;
                info!(%conversation, %message_id, wa_id = receipt.wa_id.as_deref().unwrap_or(""), "delivered queued message");
                report.delivered.push(Delivered {
                    message_id,
                    receipt,
                    queued_at: entry.queued_at,
                });
                Ok(true)
            }
            Err(error) if Self::is_window_closed(&error) => {
                warn!(%conversation, %message_id, "gateway refused queued message as outside the window: it stays queued with a fresh messageId");
                self.sessions()
                    .record_gateway_closure_at(conversation, sent_at)
                    .await?;
                self.store()
                    .reassign(
                        conversation,
                        entry.message_id,
                        requeue_message_id(message_id).as_uuid(),
                    )
                    .await?;
                report.stopped = Some(DeliveryStop::GatewayClosedWindow);
                Ok(false)
            }
            // Only a message the gateway finds invalid can never be sent; any other failure
            // (a wrong or rotated key, an outage, an unexplained refusal) leaves it queued:
            // it is delivered later or reported when it expires, never silently dropped.
            Err(error) if !message_is_invalid(&error) => {
                warn!(%conversation, %message_id, %error, "delivery failed; the message stays queued");
                report.stopped = Some(DeliveryStop::SendFailed(error));
                Ok(false)
            }
            Err(error) => {
                warn!(%conversation, %message_id, %error, "gateway refused queued message for good: taking it out");
                self.store().dequeue(conversation, entry.message_id).await?;
                report.failed.push(FailedMessage {
                    message_id,
                    error: format!("refused by the gateway as invalid: {error}"),
                });
                Ok(true)
            }
        }
    }

    /// Whether the message is still in the conversation's outbox.
    async fn still_queued(
        &self,
        conversation: Conversation,
        message_id: uuid::Uuid,
    ) -> Result<bool, PolicyError> {
        Ok(self
            .store()
            .queued(conversation)
            .await?
            .iter()
            .any(|m| m.message_id == message_id))
    }

    /// Takes an expired message out, under the same claim as delivery, so that of several
    /// replicas that meet it only one reports it expired, and none expires a message
    /// another is delivering (as a replica whose clock runs ahead could).
    async fn expire(
        &self,
        conversation: Conversation,
        entry: &QueuedMessage,
        payload: Option<&QueuedPayload>,
        now: DateTime<Utc>,
    ) -> Result<Expiry, PolicyError> {
        let Some(claim) = self
            .try_claim(entry.message_id, now, self.config().delivery_lease)
            .await?
        else {
            return Ok(Expiry::ClaimedElsewhere);
        };
        let result = self.expire_claimed(conversation, entry, payload).await;
        claim.release().await;
        result
    }

    async fn expire_claimed(
        &self,
        conversation: Conversation,
        entry: &QueuedMessage,
        payload: Option<&QueuedPayload>,
    ) -> Result<Expiry, PolicyError> {
        // Another replica may have delivered or expired it between our read and our claim.
        if !self.still_queued(conversation, entry.message_id).await? {
            return Ok(Expiry::Gone);
        }
        let message_id = MessageId::from_uuid(entry.message_id);
        warn!(%conversation, %message_id, queued_at = %entry.queued_at, "queued message expired undelivered");
        match payload {
            // Taken out in the same durable step as the outcome saying it expired.
            Some(payload) => {
                let outcome = PreviousOutcome {
                    kind: OutcomeKind::Expired,
                    message_id,
                    wa_id: None,
                    template_message_id: None,
                    at: self.now(),
                    message: None,
                };
                let outcome = Self::stored_outcome(
                    payload.origin,
                    &outcome,
                    self.config().outcome_horizon_value(),
                );
                self.store()
                    .dequeue_with_outcome(conversation, entry.message_id, outcome)
                    .await?;
            }
            None => {
                self.store().dequeue(conversation, entry.message_id).await?;
            }
        }
        Ok(Expiry::Expired(ExpiredMessage {
            conversation,
            message_id,
            queued_at: entry.queued_at,
            message: payload.map(|p| p.message.clone()),
        }))
    }

    /// Takes every expired message out of every outbox and reports them (call it
    /// periodically; delivery also expires messages as it meets them). A message another
    /// replica is delivering or expiring right now is left to it and not reported here.
    pub async fn expire_queued(&self) -> Result<Vec<ExpiredMessage>, PolicyError> {
        let mut expired = Vec::new();
        let now = self.now();
        for conversation in self.store().conversations_with_queued().await? {
            for entry in self.store().queued(conversation).await? {
                if saturating_add(entry.queued_at, self.config().outbox_ttl) <= now {
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
        }
        Ok(expired)
    }

    /// Handles a report, arriving after the send was accepted (a failed status callback),
    /// that WhatsApp refused a message as outside the window (131047). Records the closure
    /// and handles the message it names as if the window had been closed at send time:
    /// rejected, rerouted to the template, or queued again with a fresh `messageId`
    /// (derived from the refused one, so a replay of the report queues nothing more).
    ///
    /// `message_id` is our `messageId` if the report names it; `wa_id` is WhatsApp's; `at`
    /// is when the failure happened (the closure is recorded then, never later than now,
    /// so a customer who wrote after the failure keeps the window the reply opened).
    ///
    /// A report is acted on once: it re-handles the message only while its stored outcome
    /// is still the send the report names, so a repeated webhook cannot requeue (and so
    /// deliver) it twice. It does so under the same claim as a send naming that
    /// `messageId`: while another call holds it (a copy of this report handled at the
    /// same moment), this one returns [`PolicyError::SendInProgress`] and changes nothing
    /// but the recorded closure; retried later, it finds the message already handled.
    pub async fn on_window_closed_report(
        &self,
        conversation: Conversation,
        message_id: Option<MessageId>,
        wa_id: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Reconciliation, PolicyError> {
        let state = self
            .sessions()
            .record_gateway_closure_at(conversation, at.min(self.now()))
            .await?;
        warn!(%conversation, message_id = ?message_id, wa_id = wa_id.unwrap_or(""), %at, "gateway reported a send as outside the window: closure recorded");
        let mut found = None;
        if let Some(id) = message_id {
            found = self
                .previous_outcome(conversation, id)
                .await?
                // Only while the stored outcome is this very send (not a later requeue
                // or redelivery of it under another id).
                .filter(|outcome| outcome.message_id == id)
                .map(|outcome| (id, outcome));
        }
        if found.is_none()
            && let Some(wa_id) = wa_id
        {
            found = self.outcome_by_wa_id(conversation, wa_id).await?;
        }
        let Some((key, previous)) = found else {
            return Ok(Reconciliation::ClosureRecorded);
        };
        if !reached_the_gateway(&previous) {
            return Ok(Reconciliation::ClosureRecorded);
        }
        // The same claim as a send naming this id: two copies of one report (a redelivered
        // webhook, two replicas) must not both requeue the message under fresh ids.
        let Some(claim) = self
            .try_claim(send_claim_id(key), self.now(), self.config().send_lease)
            .await?
        else {
            info!(%conversation, message_id = %key, "another call is handling this message; retry the report later");
            return Err(PolicyError::SendInProgress { message_id: key });
        };
        let result = self
            .handle_window_closed_claimed(conversation, key, previous.message_id, state)
            .await;
        claim.release().await;
        result
    }

    /// Handles the send stored under `key` as refused by the gateway, if the stored
    /// outcome is still that send (`sent_as`), read again under the claim.
    async fn handle_window_closed_claimed(
        &self,
        conversation: Conversation,
        key: MessageId,
        sent_as: MessageId,
        state: lipachat_session::WindowState,
    ) -> Result<Reconciliation, PolicyError> {
        let Some(previous) = self
            .previous_outcome(conversation, key)
            .await?
            .filter(|outcome| outcome.message_id == sent_as && reached_the_gateway(outcome))
        else {
            return Ok(Reconciliation::ClosureRecorded);
        };
        let reason = lipachat_session::RefusalReason::ClosedByGateway;
        let outcome = match previous.message {
            // Handled again under the caller's own messageId, so a retried call sees the
            // new outcome; a queued copy gets a fresh id (the gateway may deduplicate the old).
            Some(message) => {
                let request = SendRequest::new(conversation, message).message_id(key);
                self.closed(&request, key, reason, state, Some(sent_as))
                    .await?
            }
            // No copy was kept: the policy was to reject.
            None => {
                self.remember(
                    conversation,
                    key,
                    PreviousOutcome {
                        kind: OutcomeKind::Refused,
                        message_id: key,
                        wa_id: previous.wa_id,
                        template_message_id: None,
                        at: self.now(),
                        message: None,
                    },
                )
                .await?;
                SendOutcome::Rejected {
                    message_id: key,
                    reason,
                    state,
                    refused_by_gateway: true,
                }
            }
        };
        Ok(Reconciliation::Handled {
            outcome: Box::new(outcome),
        })
    }
}

/// The kind of a queued payload that is well formed but of a kind this release does not
/// know (a later release queued it), shortened; `None` for anything else.
fn later_kind(payload: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    let kind = value.get("message")?.get("kind")?.as_str()?;
    (!lipachat_api::FreeFormMessage::KINDS.contains(&kind)).then(|| kind.chars().take(64).collect())
}

/// Whether a stored outcome is a send the gateway accepted (sent at once, or delivered
/// from the outbox), the only kind a later window-closed report can concern.
fn reached_the_gateway(outcome: &PreviousOutcome) -> bool {
    matches!(outcome.kind, OutcomeKind::Sent | OutcomeKind::Delivered)
}

/// Whether the gateway's answer says the message itself can never be sent.
fn message_is_invalid(error: &lipachat_api::ApiError) -> bool {
    matches!(
        error.root(),
        lipachat_api::ApiError::BadRequest { .. } | lipachat_api::ApiError::Invalid(_)
    )
}
