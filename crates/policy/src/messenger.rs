//! The messenger: what a chatbot backend calls. It reads top-down: a send is decided with
//! the engine's window rule and sent ([`Messenger::send`]); a refused one goes to the
//! closed-window choice ([`ClosedWindow`]: reject, reroute or queue); the outbox is
//! delivered when the customer writes back ([`OutboxDelivery`]); a late window-closed
//! report is reconciled with the send it names ([`Reconciler`]).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use lipachat_api::{Client, ContactMessage, MessageId, TextMessage};
use lipachat_session::{
    Conversation, InboundId, RecordedOnce, RefusalReason, SendDecision, SessionError, Sessions,
    Store,
};
use tracing::{info, warn};

use crate::catalog::TemplateCatalogs;
use crate::claim::{Claimed, once_per_message_id};
use crate::closed_window::{ClosedWindow, Refusal};
use crate::config::{OnClosed, PolicyConfig};
use crate::delivery::OutboxDelivery;
use crate::error::PolicyError;
use crate::observer::Observers;
use crate::outcome::{
    DeliveryReport, DeliveryStop, ExpiredMessage, InboundHandled, InboundReport, PreviousOutcome,
    SendOutcome,
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
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (gateway, dir) = (lipachat_testkit::StandInGateway::start().await?, tempfile::tempdir()?);
    /// # let client = lipachat_api::Client::builder(lipachat_api::ApiKey::new(gateway.api_key())?).base_url(&gateway.base_url()).build()?;
    /// # let sessions = lipachat_session::Sessions::new(lipachat_session::SledStore::open(dir.path().join("db"))?);
    /// use lipachat_policy::{Messenger, OnClosed, PolicyConfig};
    ///
    /// let messenger = Messenger::new(sessions, client, PolicyConfig::default());
    /// assert_eq!(messenger.sessions().rule().margin(), chrono::TimeDelta::seconds(60));
    /// assert_eq!(messenger.client().base_url().as_str(), gateway.base_url());
    /// assert_eq!(messenger.config().on_closed_of("254110090747".parse()?), &OnClosed::Reject);
    /// # Ok(()) }
    /// ```
    pub fn new(sessions: Sessions<S>, client: Client, config: PolicyConfig) -> Self {
        let catalogs = TemplateCatalogs::new(config.catalog);
        Self {
            shared: Arc::new(Shared {
                sessions: sessions.on_real_time(),
                client,
                config,
                catalogs,
                observers: Observers::default(),
                spent_tiers: crate::messaging_limit::SpentTiers::default(),
            }),
        }
    }

    /// Tells `observer` of every send this messenger and its clones make from now on,
    /// whoever calls them: how each free-form send ([`Messenger::send`],
    /// [`Messenger::send_text`], [`Messenger::send_contact`]) and template send
    /// ([`Messenger::send_template`]) ended; and, on every send path (those, the reroute
    /// and invitation templates, and deliveries from the outbox), each template withheld by
    /// consent or a limit and each message's predicted pricing as it reaches the gateway.
    /// Deliveries of queued messages are not sends here: they are reported in their
    /// [`DeliveryReport`](crate::DeliveryReport)s. A webhook service counts its metrics
    /// this way.
    pub fn observe(&self, observer: std::sync::Arc<dyn crate::SendObserver>) {
        self.shared.observers.add(observer);
    }

    /// The session engine.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (gateway, dir) = (lipachat_testkit::StandInGateway::start().await?, tempfile::tempdir()?);
    /// # let client = lipachat_api::Client::builder(lipachat_api::ApiKey::new(gateway.api_key())?).base_url(&gateway.base_url()).build()?;
    /// # let sessions = lipachat_session::Sessions::new(lipachat_session::SledStore::open(dir.path().join("db"))?);
    /// use lipachat_policy::{Messenger, PolicyConfig};
    /// use lipachat_session::Conversation;
    ///
    /// let messenger = Messenger::new(sessions, client, PolicyConfig::default());
    /// let chat = Conversation::parse("254110090747", "254712345678")?;
    /// messenger.sessions().record_inbound_now(chat).await?;
    /// assert_eq!(messenger.sessions().state(chat).await?.name(), "open");
    /// # Ok(()) }
    /// ```
    pub fn sessions(&self) -> &Sessions<S> {
        &self.shared.sessions
    }

    /// The gateway client.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (gateway, dir) = (lipachat_testkit::StandInGateway::start().await?, tempfile::tempdir()?);
    /// # let client = lipachat_api::Client::builder(lipachat_api::ApiKey::new(gateway.api_key())?).base_url(&gateway.base_url()).build()?;
    /// # let sessions = lipachat_session::Sessions::new(lipachat_session::SledStore::open(dir.path().join("db"))?);
    /// use lipachat_policy::{Messenger, PolicyConfig};
    ///
    /// let messenger = Messenger::new(sessions, client, PolicyConfig::default());
    /// assert_eq!(messenger.client().max_in_flight(), lipachat_api::DEFAULT_MAX_IN_FLIGHT);
    /// # Ok(()) }
    /// ```
    pub fn client(&self) -> &Client {
        &self.shared.client
    }

    /// The policy.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (gateway, dir) = (lipachat_testkit::StandInGateway::start().await?, tempfile::tempdir()?);
    /// # let client = lipachat_api::Client::builder(lipachat_api::ApiKey::new(gateway.api_key())?).base_url(&gateway.base_url()).build()?;
    /// # let sessions = lipachat_session::Sessions::new(lipachat_session::SledStore::open(dir.path().join("db"))?);
    /// use lipachat_policy::{Messenger, PolicyConfig};
    ///
    /// let messenger = Messenger::new(sessions, client, PolicyConfig::default().outbox_limit(5));
    /// assert_eq!(messenger.config().outbox_limit_value(), 5);
    /// # Ok(()) }
    /// ```
    pub fn config(&self) -> &PolicyConfig {
        &self.shared.config
    }

    /// The template catalogs templates are checked against (shared by clones).
    pub fn catalogs(&self) -> &TemplateCatalogs {
        &self.shared.catalogs
    }

    /// Sends a contact card (see [`Messenger::send`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (gateway, dir) = (lipachat_testkit::StandInGateway::start().await?, tempfile::tempdir()?);
    /// # let client = lipachat_api::Client::builder(lipachat_api::ApiKey::new(gateway.api_key())?).base_url(&gateway.base_url()).build()?;
    /// # let sessions = lipachat_session::Sessions::new(lipachat_session::SledStore::open(dir.path().join("db"))?);
    /// use lipachat_api::{ContactMessage, ContactPhone};
    /// use lipachat_policy::{Messenger, PolicyConfig, SendOutcome};
    /// use lipachat_session::Conversation;
    ///
    /// let messenger = Messenger::new(sessions, client, PolicyConfig::default());
    /// let chat = Conversation::parse("254110090747", "254712345678")?;
    /// gateway.customer_writes(chat.business, chat.phone().unwrap());
    /// messenger.on_inbound(chat, messenger.sessions().now()).await?;
    /// let card = ContactMessage::new("Support", vec![ContactPhone::new("254700000001".parse()?, "Work")])?;
    /// let outcome = messenger.send_contact(chat, card).await?;
    /// assert!(matches!(outcome, SendOutcome::Sent { .. }));
    /// assert_eq!(gateway.delivered_to(chat.phone().unwrap()).len(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn send_contact(
        &self,
        conversation: Conversation,
        contact: ContactMessage,
    ) -> Result<SendOutcome, PolicyError> {
        self.send(SendRequest::contact(conversation, contact)).await
    }

    /// Sends a text message (see [`Messenger::send`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (gateway, dir) = (lipachat_testkit::StandInGateway::start().await?, tempfile::tempdir()?);
    /// # let client = lipachat_api::Client::builder(lipachat_api::ApiKey::new(gateway.api_key())?).base_url(&gateway.base_url()).build()?;
    /// # let sessions = lipachat_session::Sessions::new(lipachat_session::SledStore::open(dir.path().join("db"))?);
    /// use lipachat_api::TextMessage;
    /// use lipachat_policy::{Messenger, PolicyConfig, SendOutcome};
    /// use lipachat_session::{Conversation, RefusalReason};
    ///
    /// let messenger = Messenger::new(sessions, client, PolicyConfig::default());
    /// let chat = Conversation::parse("254110090747", "254712345678")?;
    /// // The customer never wrote: the default policy rejects, and nothing is sent.
    /// let outcome = messenger.send_text(chat, TextMessage::new("Hello")?).await?;
    /// assert!(matches!(outcome, SendOutcome::Rejected { reason: RefusalReason::NeverMessaged, .. }));
    /// assert_eq!(gateway.request_count(), 0);
    /// # Ok(()) }
    /// ```
    pub async fn send_text(
        &self,
        conversation: Conversation,
        text: TextMessage,
    ) -> Result<SendOutcome, PolicyError> {
        self.send(SendRequest::text(conversation, text)).await
    }

    /// What [`Messenger::send`] would do now, without sending or storing anything.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (gateway, dir) = (lipachat_testkit::StandInGateway::start().await?, tempfile::tempdir()?);
    /// # let client = lipachat_api::Client::builder(lipachat_api::ApiKey::new(gateway.api_key())?).base_url(&gateway.base_url()).build()?;
    /// # let sessions = lipachat_session::Sessions::new(lipachat_session::SledStore::open(dir.path().join("db"))?);
    /// use lipachat_api::{ContactMessage, ContactPhone, TemplateMessage};
    /// use lipachat_policy::{Messenger, OnClosed, PolicyConfig, SendRequest};
    /// use lipachat_session::Conversation;
    ///
    /// let invite = TemplateMessage::new("contact_share", "en")?;
    /// let messenger = Messenger::new(sessions, client, PolicyConfig::default().on_closed(OnClosed::Queue(invite)));
    /// let chat = Conversation::parse("254110090747", "254712345678")?;
    /// let card = ContactMessage::new("Support", vec![ContactPhone::new("254700000001".parse()?, "Work")])?;
    /// let plan = messenger.dry_run(&SendRequest::contact(chat, card)).await?;
    /// assert!(!plan.decision.is_allowed());
    /// assert_eq!(plan.on_closed, "queue");
    /// assert!(plan.body.as_str().starts_with(r#"{"messageId":"#));
    /// assert!(plan.template_body.is_some(), "the invitation would go instead");
    /// assert_eq!(gateway.request_count(), 0, "nothing was sent");
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (gateway, dir) = (lipachat_testkit::StandInGateway::start().await?, tempfile::tempdir()?);
    /// # let client = lipachat_api::Client::builder(lipachat_api::ApiKey::new(gateway.api_key())?).base_url(&gateway.base_url()).build()?;
    /// # let sessions = lipachat_session::Sessions::new(lipachat_session::SledStore::open(dir.path().join("db"))?);
    /// use lipachat_api::{ContactMessage, ContactPhone, MessageId};
    /// use lipachat_policy::{Messenger, PolicyConfig, SendOutcome, SendRequest};
    /// use lipachat_session::Conversation;
    ///
    /// let messenger = Messenger::new(sessions, client, PolicyConfig::default());
    /// let chat = Conversation::parse("254110090747", "254712345678")?;
    /// gateway.customer_writes(chat.business, chat.phone().unwrap());
    /// messenger.on_inbound(chat, messenger.sessions().now()).await?;
    /// let card = ContactMessage::new("Support", vec![ContactPhone::new("254700000001".parse()?, "Work")])?;
    /// // A handler that may be retried names its messageId; a retry sends nothing again.
    /// let id = MessageId::new();
    /// let first = messenger.send(SendRequest::contact(chat, card.clone()).message_id(id)).await?;
    /// assert!(matches!(first, SendOutcome::Sent { .. }));
    /// let retry = messenger.send(SendRequest::contact(chat, card).message_id(id)).await?;
    /// assert!(matches!(retry, SendOutcome::Duplicate(_)));
    /// assert_eq!(gateway.delivered_count(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn send(&self, request: SendRequest) -> Result<SendOutcome, PolicyError> {
        let observed = self.shared.observers.start(|| self.sessions().now());
        let result = self.send_unobserved(request).await;
        self.shared.observers.free_form_sent(observed, &result);
        result
    }

    /// [`Messenger::send`] before its observers are told.
    async fn send_unobserved(&self, request: SendRequest) -> Result<SendOutcome, PolicyError> {
        addressable(request.conversation())?;
        let now = CallTime::read(self.sessions());
        // Only a caller's own messageId can have been used before, or be in use by an
        // overlapping call; a fresh one has neither.
        //
        // Not boxed, here and below: the decision and the send make a future of about 2.4
        // KiB (the closed-window choice, an invitation and a catalog fetch, is boxed apart
        // as the rare path), and a heap block of 1 KiB or more per send took glibc's
        // large-allocation path (`malloc_consolidate`) on every send: about 2 % of a
        // guarded send's time. Held inline, `Messenger::send`'s future is a few KiB.
        let Some(message_id) = request.id() else {
            return self.send_now(&request, MessageId::new(), now).await;
        };
        let send = || self.send_now(&request, message_id, now);
        Ok(
            match once_per_message_id(&self.shared, request.conversation(), message_id, now, send)
                .await?
            {
                Claimed::Earlier(previous) => {
                    self.duplicate(request.conversation(), message_id, previous, now)
                        .await?
                }
                Claimed::Ran(outcome) => outcome,
            },
        )
    }

    /// A retried send finds the outcome an earlier call stored: that outcome, unless it
    /// says the message went to the gateway and a window-closed report for it is kept
    /// (the earlier call met it but could not handle it: a store failure, a claim held
    /// too long), in which case the message is handled now as the report says.
    async fn duplicate(
        &self,
        conversation: Conversation,
        key: MessageId,
        previous: PreviousOutcome,
        now: CallTime,
    ) -> Result<SendOutcome, PolicyError> {
        if previous.reached_the_gateway()
            && let Some(outcome) = Reconciler::new(&self.shared)
                .after_outcome_stored(
                    conversation,
                    key,
                    previous.message_id,
                    previous.wa_id.as_deref(),
                    now,
                    false,
                )
                .await?
        {
            return Ok(outcome);
        }
        Ok(SendOutcome::Duplicate(previous))
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
                // Boxed, here and below: the closed-window choice (an invitation, a
                // catalog fetch, a queued copy) is rare and large; inline, every send
                // would allocate and copy room for it (about 7 KiB, against 1.2 KiB).
                Box::pin(ClosedWindow::new(&self.shared).apply(request, refusal, now)).await
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
                    // A failed status naming this send may have come before this answer
                    // was handled (a slow link): it was kept, and is handled now.
                    if let Some(outcome) = Reconciler::new(&self.shared)
                        .after_outcome_stored(
                            conversation,
                            message_id,
                            message_id,
                            receipt.wa_id.as_deref(),
                            now,
                            request.id().is_some(),
                        )
                        .await?
                    {
                        return Ok(outcome);
                    }
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
                Box::pin(ClosedWindow::new(&self.shared).apply(request, refusal, now)).await
            }
            Err(source) => {
                warn!(%conversation, %message_id, error = %source, "send failed");
                Err(PolicyError::Send { message_id, source })
            }
        }
    }

    /// The outcome remembered for `message_id` in `conversation`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (gateway, dir) = (lipachat_testkit::StandInGateway::start().await?, tempfile::tempdir()?);
    /// # let client = lipachat_api::Client::builder(lipachat_api::ApiKey::new(gateway.api_key())?).base_url(&gateway.base_url()).build()?;
    /// # let sessions = lipachat_session::Sessions::new(lipachat_session::SledStore::open(dir.path().join("db"))?);
    /// use lipachat_api::{ContactMessage, ContactPhone, MessageId};
    /// use lipachat_policy::{Messenger, OutcomeKind, PolicyConfig, SendRequest};
    /// use lipachat_session::Conversation;
    ///
    /// let messenger = Messenger::new(sessions, client, PolicyConfig::default());
    /// let chat = Conversation::parse("254110090747", "254712345678")?;
    /// gateway.customer_writes(chat.business, chat.phone().unwrap());
    /// messenger.on_inbound(chat, messenger.sessions().now()).await?;
    /// let card = ContactMessage::new("Support", vec![ContactPhone::new("254700000001".parse()?, "Work")])?;
    /// let id = MessageId::new();
    /// messenger.send(SendRequest::contact(chat, card).message_id(id)).await?;
    /// let previous = messenger.previous_outcome(chat, id).await?.expect("remembered");
    /// assert_eq!(previous.kind, OutcomeKind::Sent);
    /// assert_eq!(messenger.previous_outcome(chat, MessageId::new()).await?, None);
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (gateway, dir) = (lipachat_testkit::StandInGateway::start().await?, tempfile::tempdir()?);
    /// # let client = lipachat_api::Client::builder(lipachat_api::ApiKey::new(gateway.api_key())?).base_url(&gateway.base_url()).build()?;
    /// # let sessions = lipachat_session::Sessions::new(lipachat_session::SledStore::open(dir.path().join("db"))?);
    /// use lipachat_api::{ContactMessage, ContactPhone, MessageId};
    /// use lipachat_policy::{Messenger, PolicyConfig, SendOutcome, SendRequest};
    /// use lipachat_session::Conversation;
    ///
    /// let messenger = Messenger::new(sessions, client, PolicyConfig::default());
    /// let chat = Conversation::parse("254110090747", "254712345678")?;
    /// gateway.customer_writes(chat.business, chat.phone().unwrap());
    /// messenger.on_inbound(chat, messenger.sessions().now()).await?;
    /// let card = ContactMessage::new("Support", vec![ContactPhone::new("254700000001".parse()?, "Work")])?;
    /// let id = MessageId::new();
    /// let SendOutcome::Sent { receipt, .. } = messenger.send(SendRequest::contact(chat, card).message_id(id)).await? else {
    ///     panic!("the window is open")
    /// };
    /// // A status callback naming only WhatsApp's id finds the send, and our messageId.
    /// let wa_id = receipt.wa_id.expect("the gateway names it");
    /// let (found, outcome) = messenger.outcome_by_wa_id(chat, &wa_id).await?.expect("indexed");
    /// assert_eq!((found, outcome.message_id), (id, id));
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (gateway, dir) = (lipachat_testkit::StandInGateway::start().await?, tempfile::tempdir()?);
    /// # let client = lipachat_api::Client::builder(lipachat_api::ApiKey::new(gateway.api_key())?).base_url(&gateway.base_url()).build()?;
    /// # let sessions = lipachat_session::Sessions::new(lipachat_session::SledStore::open(dir.path().join("db"))?);
    /// use lipachat_policy::{Messenger, PolicyConfig};
    /// use lipachat_session::Conversation;
    ///
    /// let messenger = Messenger::new(sessions, client, PolicyConfig::default());
    /// let chat = Conversation::parse("254110090747", "254712345678")?;
    /// let report = messenger.on_inbound(chat, messenger.sessions().now()).await?;
    /// assert!(report.recorded.opened, "the customer's message opened the window");
    /// assert!(report.delivery.delivered.is_empty(), "nothing was queued");
    /// assert!(messenger.sessions().decide(chat).await?.is_allowed());
    /// # Ok(()) }
    /// ```
    pub async fn on_inbound(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> Result<InboundReport, PolicyError> {
        let recorded = self.sessions().record_inbound(conversation, at).await?;
        info!(%conversation, %at, opened = recorded.opened, state = recorded.state.name(), "inbound message recorded");
        let delivery = self.deliver_after_recording(conversation).await?;
        Ok(InboundReport {
            conversation,
            recorded,
            delivery,
        })
    }

    /// The outbox delivery that follows a first copy's recording. The message is recorded
    /// (and, with an id, remembered) by then, so a store failure here must not fail the
    /// call: the sender's retry would be a duplicate and the message would never be
    /// handled. It is reported instead ([`DeliveryStop::StoreFailed`]); the queued
    /// messages stay queued for the next delivery run.
    pub(crate) async fn deliver_after_recording(
        &self,
        conversation: Conversation,
    ) -> Result<DeliveryReport, PolicyError> {
        match self.deliver(conversation).await {
            Err(PolicyError::Session(SessionError::Store(error))) => {
                warn!(%conversation, %error, "the inbound message is recorded, but delivering the queued messages failed; they stay queued");
                Ok(DeliveryReport {
                    stopped: Some(DeliveryStop::StoreFailed(error)),
                    ..DeliveryReport::default()
                })
            }
            other => other,
        }
    }

    /// Records an inbound message from the customer at `at`, once per platform message id
    /// `id` (see [`Sessions::record_inbound_once`]), then delivers that conversation's
    /// queued messages while the window is open.
    ///
    /// A redelivered copy records nothing and returns [`InboundHandled::Duplicate`]: do not
    /// answer it again. Its delivery still runs (it sends only what is queued, each
    /// message under its own `messageId`), so messages left queued by a first handling
    /// that crashed before delivering are not stranded.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (gateway, dir) = (lipachat_testkit::StandInGateway::start().await?, tempfile::tempdir()?);
    /// # let client = lipachat_api::Client::builder(lipachat_api::ApiKey::new(gateway.api_key())?).base_url(&gateway.base_url()).build()?;
    /// # let sessions = lipachat_session::Sessions::new(lipachat_session::SledStore::open(dir.path().join("db"))?);
    /// use lipachat_policy::{InboundHandled, Messenger, PolicyConfig};
    /// use lipachat_session::{Conversation, InboundId};
    ///
    /// let messenger = Messenger::new(sessions, client, PolicyConfig::default());
    /// let chat = Conversation::parse("254110090747", "254712345678")?;
    /// let id = InboundId::new("wamid.HBgMMjU0NzEyMzQ1Njc4FQIAEhgUM0E")?;
    /// let now = messenger.sessions().now();
    /// let first = messenger.on_inbound_once(chat, now, &id).await?;
    /// assert!(matches!(first, InboundHandled::First(_)));
    /// // The same webhook redelivered: recorded once, not to be answered again.
    /// let again = messenger.on_inbound_once(chat, now, &id).await?;
    /// assert!(matches!(again, InboundHandled::Duplicate { .. }));
    /// # Ok(()) }
    /// ```
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
                let delivery = self.deliver_after_recording(conversation).await?;
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
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (gateway, dir) = (lipachat_testkit::StandInGateway::start().await?, tempfile::tempdir()?);
    /// # let client = lipachat_api::Client::builder(lipachat_api::ApiKey::new(gateway.api_key())?).base_url(&gateway.base_url()).build()?;
    /// # let sessions = lipachat_session::Sessions::new(lipachat_session::SledStore::open(dir.path().join("db"))?);
    /// use lipachat_api::{ContactMessage, ContactPhone, TemplateMessage};
    /// use lipachat_policy::{Messenger, OnClosed, PolicyConfig, SendOutcome};
    /// use lipachat_session::Conversation;
    ///
    /// let invite = TemplateMessage::new("contact_share", "en")?;
    /// let messenger = Messenger::new(sessions, client, PolicyConfig::default().on_closed(OnClosed::Queue(invite)));
    /// let chat = Conversation::parse("254110090747", "254712345678")?;
    /// let card = ContactMessage::new("Support", vec![ContactPhone::new("254700000001".parse()?, "Work")])?;
    /// let queued = messenger.send_contact(chat, card).await?;
    /// assert!(matches!(queued, SendOutcome::Queued { .. }));
    /// // The reply is recorded without delivering (another process did, say); deliver now.
    /// gateway.customer_writes(chat.business, chat.phone().unwrap());
    /// messenger.sessions().record_inbound_now(chat).await?;
    /// let report = messenger.deliver(chat).await?;
    /// assert_eq!((report.delivered.len(), report.remaining), (1, 0));
    /// # Ok(()) }
    /// ```
    pub async fn deliver(&self, conversation: Conversation) -> Result<DeliveryReport, PolicyError> {
        OutboxDelivery::new(&self.shared)
            .deliver(conversation)
            .await
    }

    /// Takes every expired message out of every outbox and reports them (call it
    /// periodically; delivery also expires messages as it meets them). A message another
    /// replica is delivering or expiring right now is left to it and not reported here.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let clock = lipachat_session::ManualClock::at("2026-11-23T10:00:00Z".parse()?);
    /// # let (gateway, dir) = (lipachat_testkit::StandInGateway::builder().clock(clock.clone()).start().await?, tempfile::tempdir()?);
    /// # let client = lipachat_api::Client::builder(lipachat_api::ApiKey::new(gateway.api_key())?).base_url(&gateway.base_url()).build()?;
    /// # let sessions = lipachat_session::Sessions::new(lipachat_session::SledStore::open(dir.path().join("db"))?).with_clock(clock.clone());
    /// use chrono::TimeDelta;
    /// use lipachat_api::{ContactMessage, ContactPhone, TemplateMessage};
    /// use lipachat_policy::{Messenger, OnClosed, PolicyConfig};
    /// use lipachat_session::Conversation;
    ///
    /// let invite = TemplateMessage::new("contact_share", "en")?;
    /// let config = PolicyConfig::default().on_closed(OnClosed::Queue(invite)).outbox_ttl(TimeDelta::days(7));
    /// let messenger = Messenger::new(sessions, client, config);
    /// let chat = Conversation::parse("254110090747", "254712345678")?;
    /// let card = ContactMessage::new("Support", vec![ContactPhone::new("254700000001".parse()?, "Work")])?;
    /// messenger.send_contact(chat, card).await?;
    /// // A week passes without a reply: the message is taken out and reported, never lost
    /// // silently.
    /// clock.advance(TimeDelta::days(7));
    /// let expired = messenger.expire_queued().await?;
    /// assert_eq!(expired.len(), 1);
    /// assert_eq!(expired[0].conversation, chat);
    /// assert!(messenger.expire_queued().await?.is_empty());
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (gateway, dir) = (lipachat_testkit::StandInGateway::start().await?, tempfile::tempdir()?);
    /// # let client = lipachat_api::Client::builder(lipachat_api::ApiKey::new(gateway.api_key())?).base_url(&gateway.base_url()).build()?;
    /// # let sessions = lipachat_session::Sessions::new(lipachat_session::SledStore::open(dir.path().join("db"))?);
    /// use lipachat_api::{ContactMessage, ContactPhone, MessageId, TemplateMessage};
    /// use lipachat_policy::{Messenger, OnClosed, PolicyConfig, Reconciliation, SendOutcome, SendRequest};
    /// use lipachat_session::Conversation;
    ///
    /// let invite = TemplateMessage::new("contact_share", "en")?;
    /// let messenger = Messenger::new(sessions, client, PolicyConfig::default().on_closed(OnClosed::Queue(invite)));
    /// let chat = Conversation::parse("254110090747", "254712345678")?;
    /// gateway.customer_writes(chat.business, chat.phone().unwrap());
    /// messenger.on_inbound(chat, messenger.sessions().now()).await?;
    /// let card = ContactMessage::new("Support", vec![ContactPhone::new("254700000001".parse()?, "Work")])?;
    /// let id = MessageId::new();
    /// messenger.send(SendRequest::contact(chat, card).message_id(id)).await?;
    /// // A failed status callback says WhatsApp refused it as outside the window after all.
    /// let now = messenger.sessions().now();
    /// let reconciled = messenger.on_window_closed_report(chat, Some(id), None, now).await?;
    /// let Reconciliation::Handled { outcome } = reconciled else { panic!("the send is known here") };
    /// assert!(matches!(*outcome, SendOutcome::Queued { .. }), "queued again for the next reply");
    /// // The same report again changes nothing more.
    /// let again = messenger.on_window_closed_report(chat, Some(id), None, now).await?;
    /// assert!(matches!(again, Reconciliation::ClosureRecorded));
    /// # Ok(()) }
    /// ```
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

    use lipachat_api::{ApiKey, ContactPhone};
    use lipachat_session::{Conversation, SledStore};

    use super::*;

    /// The most a free-form send's whole future may take, in bytes. It is not boxed (a
    /// heap block of 1 KiB or more per send took glibc's large-allocation path), so a
    /// caller's future holds it inline, and every send builds it. About 4.2 KiB now.
    const SEND_AT_MOST: usize = 5120;

    /// The closed-window choice (an invitation, a catalog fetch, a queued copy) is rare
    /// and large: boxed apart, the common open-window send does not carry room for it
    /// (inline, it made the send's future about 7 KiB). The claim on a caller's
    /// `messageId` makes the send's future once, inside, not passed down by value through
    /// each `async fn` (which stored it once more at each: about 13.5 KiB).
    #[tokio::test]
    async fn a_send_future_is_small_with_or_without_a_callers_message_id() {
        let dir = tempfile::tempdir().unwrap();
        let client = Client::builder(ApiKey::new("size-test-key").unwrap())
            .base_url("http://127.0.0.1:9")
            .build()
            .unwrap();
        let sessions = Sessions::new(SledStore::open(dir.path().join("db")).unwrap());
        let messenger = Messenger::new(sessions, client, PolicyConfig::default());
        let chat = Conversation::parse("254110090747", "254712345678").unwrap();
        let card = ContactMessage::new(
            "Support",
            vec![ContactPhone::new("254700000001".parse().unwrap(), "Work")],
        )
        .unwrap();
        // One type whether the request names a `messageId` or not: one size covers both.
        let send = messenger.send(SendRequest::contact(chat, card).message_id(MessageId::new()));
        // Made, not run: its size is its type's, whatever it would do.
        let size = std::mem::size_of_val(&send);
        assert!(
            size <= SEND_AT_MOST,
            "a send's future takes {size} bytes (at most {SEND_AT_MOST})"
        );
    }
}
