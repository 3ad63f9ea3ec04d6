//! The guarded send path.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use lipachat_api::{
    ApiError, Client, ContactMessage, FreeFormMessage, MessageId, TemplateMessage, TextMessage,
};
use lipachat_session::window::saturating_add;
use lipachat_session::{
    Conversation, Invitation, QueuedMessage, RefusalReason, SendDecision, Sessions, Store,
    StoredOutcome, WindowState,
};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use uuid::Uuid;

use crate::catalog::TemplateCatalogs;
use crate::config::{OnClosed, PolicyConfig};
use crate::error::PolicyError;
use crate::outcome::{OutcomeKind, PreviousOutcome, SendOutcome, TemplateSent};

/// Namespace of the `messageId`s derived from another id (UUID v5), so retries of one
/// logical send always derive the same ids.
const DERIVED_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c69_7061_6368_6174_2d70_6f6c_6963_7931);

/// The template `messageId` that goes with a free-form message's `messageId`: the same on
/// every retry of the logical send, so the gateway deduplicates a retried template.
pub fn template_message_id(message_id: MessageId) -> MessageId {
    derived(b"template", message_id.as_uuid().as_bytes())
}

/// The claim a call holds on a caller-given `messageId` while it sends (or handles a
/// report about) that message: one namespace, apart from the outbox's own claims.
pub(crate) fn send_claim_id(message_id: MessageId) -> Uuid {
    derived(b"send", message_id.as_uuid().as_bytes()).as_uuid()
}

/// The `messageId` a message is queued under after the gateway refused it under
/// `refused` as outside the window (131047): never `refused` itself (the gateway may
/// remember it and drop a retry), and the same on every replay of that refusal (a
/// retried call, a redelivered report), so a replay finds the message already queued
/// instead of queueing a second copy under another id.
pub(crate) fn requeue_message_id(refused: MessageId) -> MessageId {
    derived(b"requeue", refused.as_uuid().as_bytes())
}

pub(crate) fn derived(purpose: &[u8], from: &[u8]) -> MessageId {
    let mut name = Vec::with_capacity(purpose.len() + 1 + from.len());
    name.extend_from_slice(purpose);
    name.push(b':');
    name.extend_from_slice(from);
    MessageId::from_uuid(Uuid::new_v5(&DERIVED_ID_NAMESPACE, &name))
}

/// One free-form message to send.
///
/// ```
/// use lipachat_api::{ContactMessage, ContactPhone, MessageId};
/// use lipachat_policy::SendRequest;
/// use lipachat_session::{Conversation, PhoneNumber};
///
/// let chat = Conversation::parse("254110090747", "254712345678")?;
/// let card = ContactMessage::new("Support desk", vec![ContactPhone::new("254700000001".parse()?, "Work")])?;
/// let id = MessageId::new();
/// let request = SendRequest::contact(chat, card).message_id(id).placeholders(["Jane"]);
/// assert_eq!(request.id(), Some(id));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct SendRequest {
    conversation: Conversation,
    message: FreeFormMessage,
    message_id: Option<MessageId>,
    placeholders: Option<Vec<String>>,
    on_closed: Option<OnClosed>,
}

impl SendRequest {
    /// A request to send `message` in `conversation`.
    pub fn new(conversation: Conversation, message: FreeFormMessage) -> Self {
        Self {
            conversation,
            message,
            message_id: None,
            placeholders: None,
            on_closed: None,
        }
    }

    /// A contact card.
    pub fn contact(conversation: Conversation, contact: ContactMessage) -> Self {
        Self::new(conversation, FreeFormMessage::Contact(contact))
    }

    /// A text message.
    pub fn text(conversation: Conversation, text: TextMessage) -> Self {
        Self::new(conversation, FreeFormMessage::Text(text))
    }

    /// Uses this `messageId` (a bot handler that may be retried passes the same one each
    /// time); otherwise a new UUID v4 is made.
    pub fn message_id(mut self, id: MessageId) -> Self {
        self.message_id = Some(id);
        self
    }

    /// Body placeholders for the template, should one be sent (for example the customer's
    /// name), replacing the configured template's own.
    pub fn placeholders<I, T>(mut self, placeholders: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.placeholders = Some(placeholders.into_iter().map(Into::into).collect());
        self
    }

    /// Overrides the configured closed-window choice for this send.
    pub fn on_closed(mut self, on_closed: OnClosed) -> Self {
        self.on_closed = Some(on_closed);
        self
    }

    /// The closed-window choice that applies to this request under `config`.
    pub fn on_closed_under<'a>(&'a self, config: &'a PolicyConfig) -> &'a OnClosed {
        self.on_closed
            .as_ref()
            .unwrap_or_else(|| config.on_closed_of(self.conversation.business))
    }

    /// The `messageId` given, if any.
    pub fn id(&self) -> Option<MessageId> {
        self.message_id
    }

    /// The conversation.
    pub fn conversation(&self) -> Conversation {
        self.conversation
    }

    /// The message.
    pub fn message(&self) -> &FreeFormMessage {
        &self.message
    }
}

/// What a queued message's stored payload holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct QueuedPayload {
    /// The `messageId` the caller's send had (outcomes are stored under it).
    pub origin: MessageId,
    /// The message.
    pub message: FreeFormMessage,
}

/// What a send would do now, computed without sending or storing anything.
#[derive(Debug, Clone)]
pub struct DryRun {
    /// The decision now.
    pub decision: SendDecision,
    /// The `messageId` that would be used.
    pub message_id: MessageId,
    /// The closed-window choice that would apply if the window is not open.
    pub on_closed: &'static str,
    /// The exact JSON body of the free-form send.
    pub body: serde_json::Value,
    /// The exact JSON body of the template that would go instead, if the window is not
    /// open and the policy sends one (an invitation already sent for this closed window
    /// would make the real send skip it).
    pub template_body: Option<serde_json::Value>,
}

impl DryRun {
    /// Plans a send from the session engine and the policy alone: no client, so no API
    /// key is needed. A conversation without a phone number is
    /// [`PolicyError::NotAddressable`], as the send would be.
    pub async fn plan<S: Store>(
        sessions: &Sessions<S>,
        config: &PolicyConfig,
        request: &SendRequest,
    ) -> Result<Self, PolicyError> {
        let conversation = addressable(request.conversation)?;
        let not_addressable = |_| PolicyError::NotAddressable { conversation };
        let message_id = request.message_id.unwrap_or_else(MessageId::new);
        let record = sessions.store().window(request.conversation).await?;
        let decision = config.rule.decide(record.as_ref(), sessions.now());
        let on_closed = request.on_closed_under(config);
        let template_body = match (&decision, on_closed.template()) {
            (SendDecision::Refused { .. }, Some(template)) => {
                let template = match &request.placeholders {
                    Some(placeholders) => template
                        .clone()
                        .with_body_placeholders(placeholders.iter().cloned())?,
                    None => template.clone(),
                };
                Some(
                    lipachat_api::template_body(
                        request.conversation,
                        template_message_id(message_id),
                        &template,
                    )
                    .map_err(not_addressable)?,
                )
            }
            _ => None,
        };
        Ok(Self {
            decision,
            message_id,
            on_closed: on_closed.name(),
            body: lipachat_api::free_form_body(request.conversation, message_id, &request.message)
                .map_err(not_addressable)?,
            template_body,
        })
    }
}

/// What a call under the claim on a caller's `messageId` found or did.
pub(crate) enum Claimed<T> {
    /// An outcome was already stored for the id: the earlier call's.
    Earlier(PreviousOutcome),
    /// The call ran, with this result.
    Ran(T),
}

pub(crate) struct Inner<S> {
    pub sessions: Sessions<S>,
    pub client: Client,
    pub config: PolicyConfig,
    pub catalogs: TemplateCatalogs,
}

/// The send path a chatbot backend calls: decides at send time with the safety margin,
/// sends, or rejects / reroutes to a template / queues until the customer replies.
///
/// Cheap to clone; clones share the store and the HTTP connection pool.
pub struct Messenger<S> {
    pub(crate) inner: Arc<Inner<S>>,
}

impl<S> Clone for Messenger<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S> std::fmt::Debug for Messenger<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messenger")
            .field("client", &self.inner.client)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl<S: Store> Messenger<S> {
    /// A send path over the session engine (whose store keeps windows and the outbox), the
    /// gateway client and the policy. The policy's window rule replaces the engine's, and the
    /// send path runs on the real time: an examined clock ([`Sessions::with_examined_clock`])
    /// is dropped, since the gateway judges the window by the real time.
    pub fn new(sessions: Sessions<S>, client: Client, config: PolicyConfig) -> Self {
        // The gateway judges the window by the real time, so the send path decides and
        // stamps on it: an examined clock (a debug tool's --now) is dropped here.
        let sessions = sessions.with_rule(config.rule).on_real_time();
        let catalogs = TemplateCatalogs::new(config.catalog);
        Self {
            inner: Arc::new(Inner {
                sessions,
                client,
                config,
                catalogs,
            }),
        }
    }

    /// The session engine.
    pub fn sessions(&self) -> &Sessions<S> {
        &self.inner.sessions
    }

    /// The gateway client.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The policy.
    pub fn config(&self) -> &PolicyConfig {
        &self.inner.config
    }

    /// The template catalogs templates are checked against (shared by clones).
    pub fn catalogs(&self) -> &TemplateCatalogs {
        &self.inner.catalogs
    }

    pub(crate) fn store(&self) -> &S {
        self.inner.sessions.store()
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.inner.sessions.now()
    }

    /// The last instant an attempt of a free-form send may start: the window's expiry
    /// less the safety margin, as measured on the clock now (retries must not carry a
    /// message past the point where it was allowed).
    pub(crate) fn send_deadline(&self, expires_at: DateTime<Utc>) -> std::time::Instant {
        let left = saturating_add(expires_at, -self.inner.config.rule.margin()) - self.now();
        let now = std::time::Instant::now();
        // A window longer than the platform's Instant range is capped at a year.
        now.checked_add(left.to_std().unwrap_or_default())
            .or_else(|| now.checked_add(std::time::Duration::from_secs(365 * 24 * 3600)))
            .unwrap_or(now)
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

    fn on_closed<'a>(&'a self, request: &'a SendRequest) -> &'a OnClosed {
        request.on_closed_under(&self.inner.config)
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
        addressable(request.conversation)?;
        // Only a caller's own messageId can have been used before, or be in use by an
        // overlapping call; a fresh one has neither.
        let Some(message_id) = request.message_id else {
            return self.send_as(&request, MessageId::new()).await;
        };
        let send = self.send_as(&request, message_id);
        match self
            .under_send_claim(request.conversation, message_id, send)
            .await?
        {
            Claimed::Earlier(previous) => Ok(SendOutcome::Duplicate(previous)),
            Claimed::Ran(outcome) => Ok(outcome),
        }
    }

    /// Runs `run` under the claim on a caller's own `message_id`, unless an outcome is
    /// already stored for it (that earlier outcome is returned, and nothing runs) or
    /// another call holds the claim ([`PolicyError::SendInProgress`]).
    pub(crate) async fn under_send_claim<T>(
        &self,
        conversation: Conversation,
        message_id: MessageId,
        run: impl Future<Output = Result<T, PolicyError>>,
    ) -> Result<Claimed<T>, PolicyError> {
        let claim = self
            .try_claim(
                send_claim_id(message_id),
                self.now(),
                self.config().send_lease,
            )
            .await?;
        // Under the claim no other call can be writing this id's outcome; without it, the
        // call holding it may have finished already.
        if let Some(previous) = self.previous_outcome(conversation, message_id).await? {
            info!(%conversation, %message_id, outcome = previous.kind.name(), "duplicate send: returning the earlier outcome");
            if let Some(claim) = claim {
                claim.release().await;
            }
            return Ok(Claimed::Earlier(previous));
        }
        let Some(claim) = claim else {
            info!(%conversation, %message_id, "another call is sending this messageId; nothing sent");
            return Err(PolicyError::SendInProgress { message_id });
        };
        let result = run.await;
        claim.release().await;
        result.map(Claimed::Ran)
    }

    /// [`Messenger::send`] with the `messageId` settled (and, for a caller's own, claimed).
    async fn send_as(
        &self,
        request: &SendRequest,
        message_id: MessageId,
    ) -> Result<SendOutcome, PolicyError> {
        let conversation = request.conversation;
        let decision = self.inner.sessions.decide(conversation).await?;
        match decision {
            SendDecision::Allowed { expires_at, .. } => {
                info!(%conversation, %message_id, kind = request.message.kind(), decision = "open", %expires_at, "sending free-form message");
                // A 131047 says the window was closed when the gateway judged the
                // request, which was before its answer is handled: the closure is
                // recorded from when the request went out, so a reply recorded while it
                // was in flight (the gateway judged the request before the reply) keeps
                // the window it opened.
                let sent_at = self.now();
                match self
                    .inner
                    .client
                    .send_free_form_before(
                        conversation,
                        message_id,
                        &request.message,
                        self.send_deadline(expires_at),
                    )
                    .await
                {
                    Ok(receipt) => {
                        info!(%conversation, %message_id, wa_id = receipt.wa_id.as_deref().unwrap_or(""), attempts = receipt.attempts, "sent");
                        // An outcome serves a retry with the caller's own messageId, or a
                        // late 131047 report that must requeue or reroute the message
                        // (which needs its copy). A messageId made here, under a reject
                        // policy, has neither use: the write is skipped, keeping the common
                        // send path free of store writes (a late report still records
                        // the closure).
                        let keep_copy = !matches!(self.on_closed(request), OnClosed::Reject);
                        if request.message_id.is_some() || keep_copy {
                            self.remember(
                                conversation,
                                message_id,
                                PreviousOutcome {
                                    kind: OutcomeKind::Sent,
                                    message_id,
                                    wa_id: receipt.wa_id.clone(),
                                    template_message_id: None,
                                    at: self.now(),
                                    message: keep_copy.then(|| request.message.clone()),
                                },
                            )
                            .await?;
                        }
                        Ok(SendOutcome::Sent {
                            message_id,
                            receipt,
                            expires_at,
                        })
                    }
                    Err(error) if error.is_window_closed() => {
                        warn!(%conversation, %message_id, "gateway refused the send as outside the window (131047): recording the closure");
                        let state = self
                            .inner
                            .sessions
                            .record_gateway_closure_at(conversation, sent_at)
                            .await?;
                        self.closed(
                            request,
                            message_id,
                            RefusalReason::ClosedByGateway,
                            state,
                            Some(message_id),
                        )
                        .await
                    }
                    Err(source) => {
                        warn!(%conversation, %message_id, error = %source, "send failed");
                        Err(PolicyError::Send { message_id, source })
                    }
                }
            }
            SendDecision::Refused { reason, state } => {
                info!(%conversation, %message_id, kind = request.message.kind(), decision = "closed", reason = reason.name(), state = state.name(), "free-form send not allowed now");
                self.closed(request, message_id, reason, state, None).await
            }
        }
    }

    /// Applies the closed-window choice to the logical send `message_id`. `refused`: the
    /// id under which the gateway just refused it (131047). A queued copy is queued under
    /// an id derived from that one, else from `message_id` ([`requeue_message_id`]).
    pub(crate) async fn closed(
        &self,
        request: &SendRequest,
        message_id: MessageId,
        reason: RefusalReason,
        state: WindowState,
        refused: Option<MessageId>,
    ) -> Result<SendOutcome, PolicyError> {
        let conversation = request.conversation;
        match self.on_closed(request) {
            OnClosed::Reject => {
                info!(%conversation, %message_id, reason = reason.name(), "rejected");
                if refused.is_some() {
                    self.remember(
                        conversation,
                        message_id,
                        PreviousOutcome {
                            kind: OutcomeKind::Refused,
                            message_id,
                            wa_id: None,
                            template_message_id: None,
                            at: self.now(),
                            message: None,
                        },
                    )
                    .await?;
                }
                Ok(SendOutcome::Rejected {
                    message_id,
                    reason,
                    state,
                    refused_by_gateway: refused.is_some(),
                })
            }
            OnClosed::Template(template) => {
                let template = self.invite(request, message_id, template).await?;
                self.remember(
                    conversation,
                    message_id,
                    PreviousOutcome {
                        kind: OutcomeKind::Rerouted,
                        message_id,
                        wa_id: template.as_ref().and_then(|t| t.receipt.wa_id.clone()),
                        template_message_id: template.as_ref().map(|t| t.message_id),
                        at: self.now(),
                        message: None,
                    },
                )
                .await?;
                info!(%conversation, %message_id, template_sent = template.is_some(), "rerouted to a template");
                Ok(SendOutcome::Rerouted {
                    message_id,
                    template,
                    reason,
                    state,
                })
            }
            OnClosed::Queue(template) => {
                let limit = self.inner.config.outbox_limit;
                let queued = self.store().queued(conversation).await?;
                // One copy per logical send. Every copy this send queues carries its key
                // (`origin`), whatever `messageId` it waits under, and only a call holding
                // the key's claim queues one, so a copy found here was queued by an
                // earlier attempt whose outcome this call did not find (it expired, or a
                // store wrote the message without it): it is the message, not queued
                // again. Its outcome is written back alone: writing the message again
                // could put back a copy a delivery has just taken out.
                let origin_of = |entry: &QueuedMessage| {
                    serde_json::from_str::<QueuedPayload>(&entry.payload)
                        .is_ok_and(|payload| payload.origin == message_id)
                };
                if let Some(entry) = queued.iter().find(|entry| origin_of(entry)) {
                    let queued_id = MessageId::from_uuid(entry.message_id);
                    info!(%conversation, %message_id, queued_id = %queued_id, "already queued by an earlier attempt: not queued again");
                    let outcome = self.queued_outcome(queued_id, None);
                    let outcome =
                        Self::stored_outcome(message_id, &outcome, self.queued_keep_for());
                    self.store().put_outcome(conversation, outcome).await?;
                    return self
                        .queued(conversation, queued_id, None, reason, state)
                        .await;
                }
                if queued.len() >= limit {
                    warn!(%conversation, %message_id, limit, "outbox full");
                    return Err(PolicyError::OutboxFull {
                        conversation,
                        limit,
                    });
                }
                let template = self.invite(request, message_id, template).await?;
                // Every queued copy of one logical send gets the same id derived from the
                // id last used with the gateway (the caller's, or the one it refused), so
                // two calls that both reach this point (one stalled past its lease, one
                // retried) queue one message: the store keeps one entry per id. It is
                // never the caller's own id, which the gateway may remember as refused.
                let queued_id = requeue_message_id(refused.unwrap_or(message_id));
                let payload = QueuedPayload {
                    origin: message_id,
                    message: request.message.clone(),
                };
                let outcome =
                    self.queued_outcome(queued_id, template.as_ref().map(|t| t.message_id));
                // The message and the outcome saying it is queued are stored in one
                // durable step: a retry that found the message queued but no outcome
                // would queue it a second time.
                self.store()
                    .enqueue_with_outcome(
                        conversation,
                        QueuedMessage {
                            message_id: queued_id.as_uuid(),
                            queued_at: self.now(),
                            payload: to_json(&payload),
                        },
                        limit,
                        Self::stored_outcome(message_id, &outcome, self.queued_keep_for()),
                    )
                    .await?;
                info!(%conversation, %message_id, queued_id = %queued_id, template_sent = template.is_some(), "queued until the customer replies");
                self.queued(conversation, queued_id, template, reason, state)
                    .await
            }
        }
    }

    /// How long the outcome of a queued message is kept: the outcome horizon, or longer
    /// if the message may wait longer, so that a retry finds it while it waits.
    fn queued_keep_for(&self) -> chrono::TimeDelta {
        self.config().outcome_horizon.max(self.config().outbox_ttl)
    }

    /// The outcome of a send queued under `queued_id`.
    fn queued_outcome(&self, queued_id: MessageId, template: Option<MessageId>) -> PreviousOutcome {
        PreviousOutcome {
            kind: OutcomeKind::Queued,
            message_id: queued_id,
            wa_id: None,
            template_message_id: template,
            at: self.now(),
            message: None,
        }
    }

    /// [`SendOutcome::Queued`] for a message now queued under `queued_id`. A reply
    /// recorded between the decision and the enqueue delivered the outbox without this
    /// message; it is delivered now rather than at the next reply (a failure here leaves
    /// it queued, so it is only logged).
    async fn queued(
        &self,
        conversation: Conversation,
        queued_id: MessageId,
        template: Option<TemplateSent>,
        reason: RefusalReason,
        state: WindowState,
    ) -> Result<SendOutcome, PolicyError> {
        let (mut delivered, mut expired) = (Vec::new(), Vec::new());
        if self.inner.sessions.decide(conversation).await?.is_allowed() {
            match self.deliver(conversation).await {
                Ok(report) => {
                    info!(%conversation, delivered = report.delivered.len(), "window reopened while queueing: delivered");
                    (delivered, expired) = (report.delivered, report.expired);
                }
                Err(error) => {
                    warn!(%conversation, %error, "window reopened while queueing; delivery failed, the message stays queued")
                }
            }
        }
        Ok(SendOutcome::Queued {
            message_id: queued_id,
            template,
            reason,
            state,
            delivered,
            expired,
        })
    }

    /// Sends the invitation template unless one already went for this closed window within
    /// the cool-down (or another replica is sending it right now).
    async fn invite(
        &self,
        request: &SendRequest,
        message_id: MessageId,
        template: &TemplateMessage,
    ) -> Result<Option<TemplateSent>, PolicyError> {
        let conversation = request.conversation;
        let now = self.now();
        if self.invited_for_this_window(conversation, now).await? {
            info!(%conversation, %message_id, "invitation already sent for this closed window");
            return Ok(None);
        }
        // One invitation at a time per conversation, across replicas.
        let lock = derived(b"invitation-lock", &conversation.to_key()).as_uuid();
        let Some(claim) = self
            .try_claim(lock, now, self.config().delivery_lease)
            .await?
        else {
            info!(%conversation, %message_id, "another sender is inviting this conversation");
            return Ok(None);
        };
        // Read again under the claim: another sender may have invited between our first
        // read and the claim.
        let result = if self.invited_for_this_window(conversation, now).await? {
            Ok(None)
        } else {
            self.send_invitation(request, message_id, template, now)
                .await
                .map(Some)
        };
        claim.release().await;
        result
    }

    /// Whether an invitation already went for the current closed window, within the
    /// cool-down.
    async fn invited_for_this_window(
        &self,
        conversation: Conversation,
        now: DateTime<Utc>,
    ) -> Result<bool, PolicyError> {
        let Some(invitation) = self.store().invitation(conversation).await? else {
            return Ok(false);
        };
        let last_inbound = self
            .store()
            .window(conversation)
            .await?
            .map(|r| r.last_inbound);
        let for_this_window = last_inbound.is_none_or(|last| invitation.sent_at >= last);
        let cooldown_ends =
            saturating_add(invitation.sent_at, self.inner.config.invitation_cooldown);
        Ok(for_this_window && now < cooldown_ends)
    }

    async fn send_invitation(
        &self,
        request: &SendRequest,
        message_id: MessageId,
        template: &TemplateMessage,
        now: DateTime<Utc>,
    ) -> Result<TemplateSent, PolicyError> {
        let conversation = request.conversation;
        let template = match &request.placeholders {
            Some(placeholders) => template
                .clone()
                .with_body_placeholders(placeholders.iter().cloned())?,
            None => template.clone(),
        };
        let template_id = template_message_id(message_id);
        let sent = self
            .send_checked_template(conversation, message_id, template_id, &template)
            .await?;
        self.store()
            .set_invitation(
                conversation,
                Some(Invitation {
                    message_id: template_id.as_uuid(),
                    sent_at: now,
                }),
            )
            .await?;
        Ok(sent)
    }

    /// The outcome remembered for `message_id` in `conversation`.
    pub async fn previous_outcome(
        &self,
        conversation: Conversation,
        message_id: MessageId,
    ) -> Result<Option<PreviousOutcome>, PolicyError> {
        let Some(text) = self
            .store()
            .outcome(conversation, message_id.as_uuid())
            .await?
        else {
            return Ok(None);
        };
        parse_outcome(conversation, message_id.as_uuid(), &text).map(Some)
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
        let Some((key, text)) = self.store().outcome_by_wa_id(conversation, wa_id).await? else {
            return Ok(None);
        };
        let outcome = parse_outcome(conversation, key, &text)?;
        Ok((outcome.wa_id.as_deref() == Some(wa_id)).then(|| (MessageId::from_uuid(key), outcome)))
    }

    /// An outcome as the store keeps it, under the caller's `messageId` `key`, indexed by
    /// its WhatsApp id, kept for `keep_for`.
    pub(crate) fn stored_outcome(
        key: MessageId,
        outcome: &PreviousOutcome,
        keep_for: chrono::TimeDelta,
    ) -> StoredOutcome {
        StoredOutcome {
            message_id: key.as_uuid(),
            text: to_json(outcome),
            wa_id: outcome.wa_id.clone(),
            keep_for,
        }
    }

    /// Stores an outcome under the caller's `messageId`, kept for the outcome horizon.
    /// Status callbacks that name only WhatsApp's message id find it through its `wa_id`
    /// ([`Messenger::outcome_by_wa_id`]).
    pub(crate) async fn remember(
        &self,
        conversation: Conversation,
        key: MessageId,
        outcome: PreviousOutcome,
    ) -> Result<(), PolicyError> {
        let outcome = Self::stored_outcome(key, &outcome, self.config().outcome_horizon);
        self.store().put_outcome(conversation, outcome).await?;
        Ok(())
    }

    pub(crate) fn is_window_closed(error: &ApiError) -> bool {
        error.is_window_closed()
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
    key: Uuid,
    text: &str,
) -> Result<PreviousOutcome, PolicyError> {
    serde_json::from_str(text).map_err(|e| PolicyError::Corrupt {
        conversation,
        detail: format!("outcome of {key}: {e}"),
    })
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> String {
    // Serialising these plain data types cannot fail: no maps with non-string keys, no
    // custom serialisers that error.
    serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"unserialisable\":\"{e}\"}}"))
}
