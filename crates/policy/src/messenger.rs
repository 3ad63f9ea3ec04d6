//! The messenger: what a chatbot backend calls. It reads top-down: a send is decided with
//! the engine's window rule and sent ([`Messenger::send`]); a refused one goes to the
//! closed-window choice ([`ClosedWindow`]: reject, reroute or queue); the outbox is
//! delivered when the customer writes back ([`OutboxDelivery`]); a late window-closed
//! report is reconciled with the send it names ([`Reconciler`]).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use lipachat_api::{Client, ContactMessage, MessageId, TextMessage};
use lipachat_session::{
    Conversation, InboundId, RecordedOnce, RefusalReason, SendDecision, Sessions, Store,
};
use tracing::{info, warn};

use crate::claim::under_claim;
use crate::closed_window::{ClosedWindow, Refusal};
use crate::config::{OnClosed, PolicyConfig};
use crate::delivery::OutboxDelivery;
use crate::error::PolicyError;
use crate::ids::send_claim_id;
use crate::outcome::{
    DeliveryReport, ExpiredMessage, InboundHandled, InboundReport, PreviousOutcome, SendOutcome,
};
use crate::reconciliation::{Reconciler, Reconciliation};
use crate::request::{DryRun, SendRequest};
use crate::shared::{CallTime, Shared, addressable};

/// The send path a chatbot backend calls: decides at send time with the safety margin,
/// sends, or rejects / reroutes to a template / queues until the customer replies.
///
/// Cheap to clone; clones share the store and the HTTP connection pool.
pub struct Messenger<S> {
    pub(crate) shared: Arc<Shared<S>>,
}

impl<S> Clone for Messenger<S> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S> std::fmt::Debug for Messenger<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messenger")
            .field("client", &self.shared.client)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<S: Store> Messenger<S> {
    /// A send path over the session engine (whose store keeps windows and the outbox, and
    /// whose window rule decides every send), the gateway client and the policy. The send
    /// path runs on the real time: an examined clock ([`Sessions::with_examined_clock`])
    /// is dropped, since the gateway judges the window by the real time.
    pub fn new(sessions: Sessions<S>, client: Client, config: PolicyConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                sessions: sessions.on_real_time(),
                client,
                config,
            }),
        }
    }

    /// The session engine.
    pub fn sessions(&self) -> &Sessions<S> {
        &self.shared.sessions
    }

    /// The gateway client.
    pub fn client(&self) -> &Client {
        &self.shared.client
    }

    /// The policy.
    pub fn config(&self) -> &PolicyConfig {
        &self.shared.config
    }

    /// Sends a contact card (see [`Messenger::send`]).
    pub async fn send_contact(
        &self,
        conversation: Conversation,
        contact: ContactMessage,
    ) -> Result<SendOutcome, PolicyError> {
        self.send(SendRequest::contact(conversation, contact)).await
    }

    /// Sends a text message (see [`Messenger::send`]).
    pub async fn send_text(
        &self,
        conversation: Conversation,
        text: TextMessage,
    ) -> Result<SendOutcome, PolicyError> {
        self.send(SendRequest::text(conversation, text)).await
    }

    /// What [`Messenger::send`] would do now, without sending or storing anything.
    pub async fn dry_run(&self, request: &SendRequest) -> Result<DryRun, PolicyError> {
        DryRun::plan(self.sessions(), self.config(), request).await
    }

    /// Sends one free-form message, keeping WhatsApp's 24-hour rule.
    ///
    /// Decides at send time with the safety margin. Open: sends (every retry inside the
    /// client reuses the `messageId`). Not open: applies the closed-window choice (reject,
    /// template, or template and queue). A gateway answer of 131047 records the closure
    /// and is handled as a closed window. A `messageId` already sent, rerouted or queued
    /// within the outcome horizon ([`PolicyConfig::outcome_horizon`]) returns
    /// [`SendOutcome::Duplicate`] and sends nothing.
    ///
    /// Calls that name the same `messageId` never overlap: while one is in progress,
    /// another returns [`PolicyError::SendInProgress`] (retry it later: it then returns the
    /// first call's outcome), so a handler retried while its first attempt still runs
    /// cannot make the message reach the customer twice.
    ///
    /// A conversation without a phone number (a user known only by a business-scoped
    /// user id, a group) is [`PolicyError::NotAddressable`], before anything is read,
    /// stored or sent: the gateway offers no way to address it.
    pub async fn send(&self, request: SendRequest) -> Result<SendOutcome, PolicyError> {
        addressable(request.conversation())?;
        let now = CallTime::read(self.sessions());
        // Only a caller's own messageId can have been used before, or be in use by an
        // overlapping call; a fresh one has neither.
        let Some(message_id) = request.id() else {
            return self.send_now(&request, MessageId::new(), now).await;
        };
        let conversation = request.conversation();
        let claimed = async {
            // Under the claim no other call can be writing this id's outcome.
            match self.duplicate_of(conversation, message_id).await? {
                Some(duplicate) => Ok(duplicate),
                None => self.send_now(&request, message_id, now).await,
            }
        };
        let lease = self.config().send_lease;
        if let Some(outcome) = under_claim(
            &self.shared,
            send_claim_id(message_id),
            now.at,
            lease,
            claimed,
        )
        .await?
        {
            return Ok(outcome);
        }
        // Without the claim, the call holding it may have finished already.
        if let Some(duplicate) = self.duplicate_of(conversation, message_id).await? {
            return Ok(duplicate);
        }
        info!(%conversation, %message_id, "another call is sending this messageId; nothing sent");
        Err(PolicyError::SendInProgress { message_id })
    }

    /// [`SendOutcome::Duplicate`] when an outcome is remembered for `message_id`.
    async fn duplicate_of(
        &self,
        conversation: Conversation,
        message_id: MessageId,
    ) -> Result<Option<SendOutcome>, PolicyError> {
        let previous = self
            .shared
            .previous_outcome(conversation, message_id)
            .await?;
        Ok(previous.map(|previous| {
            info!(%conversation, %message_id, outcome = previous.kind.name(), "duplicate send: returning the earlier outcome");
            SendOutcome::Duplicate(previous)
        }))
    }

    /// [`Messenger::send`] with the `messageId` settled (and, for a caller's own,
    /// claimed): decides, then sends while the window is open, else applies the
    /// closed-window choice.
    async fn send_now(
        &self,
        request: &SendRequest,
        message_id: MessageId,
        now: CallTime,
    ) -> Result<SendOutcome, PolicyError> {
        let conversation = request.conversation();
        let kind = request.message().kind();
        match self.sessions().decide_at(conversation, now.at).await? {
            SendDecision::Allowed { expires_at, .. } => {
                info!(%conversation, %message_id, kind, decision = "open", %expires_at, "sending free-form message");
                self.send_open(request, message_id, expires_at, now).await
            }
            SendDecision::Refused { reason, state } => {
                info!(%conversation, %message_id, kind, decision = "closed", reason = reason.name(), state = state.name(), "free-form send not allowed now");
                let refusal = Refusal {
                    message_id,
                    reason,
                    state,
                    refused_by_gateway: None,
                };
                ClosedWindow::new(&self.shared)
                    .apply(request, refusal, now)
                    .await
            }
        }
    }

    /// Sends the free-form message into the open window closing at `expires_at`. A 131047
    /// answer records the closure and hands the send to the closed-window choice.
    async fn send_open(
        &self,
        request: &SendRequest,
        message_id: MessageId,
        expires_at: DateTime<Utc>,
        now: CallTime,
    ) -> Result<SendOutcome, PolicyError> {
        let conversation = request.conversation();
        let sent = self
            .client()
            .send_free_form_before(
                conversation,
                message_id,
                request.message(),
                self.shared.send_deadline(now, expires_at),
            )
            .await;
        match sent {
            Ok(receipt) => {
                info!(%conversation, %message_id, wa_id = receipt.wa_id.as_deref().unwrap_or(""), attempts = receipt.attempts, "sent");
                // An outcome serves a retry with the caller's own messageId, or a late
                // 131047 report that must requeue or reroute the message (which needs its
                // copy). A messageId made here, under a reject policy, has neither use: the
                // write is skipped, keeping the common send path free of store writes (a
                // late report still records the closure).
                let keep_copy = !matches!(request.on_closed_under(self.config()), OnClosed::Reject);
                if request.id().is_some() || keep_copy {
                    let copy = keep_copy.then(|| request.message().clone());
                    let outcome =
                        PreviousOutcome::sent(message_id, receipt.wa_id.clone(), copy, now.at);
                    self.shared
                        .remember(conversation, message_id, &outcome)
                        .await?;
                }
                let pricing = self
                    .shared
                    .record_service_sent(conversation, message_id, receipt.wa_id.clone(), now.at)
                    .await?;
                Ok(SendOutcome::Sent {
                    message_id,
                    receipt,
                    expires_at,
                    pricing,
                })
            }
            Err(error) if error.is_window_closed() => {
                warn!(%conversation, %message_id, "gateway refused the send as outside the window (131047): recording the closure");
                // A 131047 says the window was closed when the gateway judged the request,
                // which was before its answer is handled: the closure is recorded from the
                // call's instant, before the request went out, so a reply recorded while
                // it was in flight keeps the window it opened.
                let state = self
                    .sessions()
                    .record_gateway_closure_at(conversation, now.at)
                    .await?;
                let refusal = Refusal {
                    message_id,
                    reason: RefusalReason::ClosedByGateway,
                    state,
                    refused_by_gateway: Some(message_id),
                };
                ClosedWindow::new(&self.shared)
                    .apply(request, refusal, now)
                    .await
            }
            Err(source) => {
                warn!(%conversation, %message_id, error = %source, "send failed");
                Err(PolicyError::Send { message_id, source })
            }
        }
    }

    /// The outcome remembered for `message_id` in `conversation`.
    pub async fn previous_outcome(
        &self,
        conversation: Conversation,
        message_id: MessageId,
    ) -> Result<Option<PreviousOutcome>, PolicyError> {
        self.shared.previous_outcome(conversation, message_id).await
    }

    /// Finds the outcome of the send whose WhatsApp message id is `wa_id`, with the
    /// caller's `messageId` it is stored under: one indexed lookup (the store indexes the
    /// WhatsApp id written with each outcome). An outcome since replaced by another
    /// (the message requeued, then delivered under another WhatsApp id) is not found.
    pub async fn outcome_by_wa_id(
        &self,
        conversation: Conversation,
        wa_id: &str,
    ) -> Result<Option<(MessageId, PreviousOutcome)>, PolicyError> {
        self.shared.outcome_by_wa_id(conversation, wa_id).await
    }

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
    /// `id` (see [`Sessions::record_inbound_once`]), then delivers that conversation's
    /// queued messages while the window is open.
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
    /// ([`DeliveryStop::NotAddressable`](crate::DeliveryStop::NotAddressable)).
    pub async fn deliver(&self, conversation: Conversation) -> Result<DeliveryReport, PolicyError> {
        OutboxDelivery::new(&self.shared)
            .deliver(conversation)
            .await
    }

    /// Takes every expired message out of every outbox and reports them (call it
    /// periodically; delivery also expires messages as it meets them). A message another
    /// replica is delivering or expiring right now is left to it and not reported here.
    pub async fn expire_queued(&self) -> Result<Vec<ExpiredMessage>, PolicyError> {
        OutboxDelivery::new(&self.shared).expire_queued().await
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
        Reconciler::new(&self.shared)
            .on_window_closed_report(conversation, message_id, wa_id, at)
            .await
    }
}
