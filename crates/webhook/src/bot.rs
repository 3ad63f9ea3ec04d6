//! The bot's side: a handler given each new inbound message with a reply handle, run off
//! the request path from a bounded queue.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use lipachat_api::{
    ContactMessage, FreeFormMessage, InboundMessage, MessageId, TextMessage, ValidationError,
};
use lipachat_policy::{Messenger, OnClosed, PolicyError, SendOutcome, SendRequest};
use lipachat_session::{Conversation, InboundId, Store};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::{Instrument, field, info, info_span, warn};

use crate::metrics::WebhookMetrics;

/// A new inbound message (never a redelivered copy) handed to the bot: the parsed message
/// with its content, and the conversation the policy recorded it in.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The conversation it was recorded in: the sender's phone's for a 1:1 message (for a
    /// user known only by a business-scoped user id, the user's own, which cannot be sent
    /// to), the group's for a group message.
    pub conversation: Conversation,
    /// The message as parsed: sender, kind, content, context, profile name, times.
    pub message: InboundMessage,
}

impl NewMessage {
    /// The text the customer wrote (a text body, a caption, a button's or reply's title),
    /// if any.
    pub fn text(&self) -> Option<&str> {
        self.message.content.text()
    }
}

/// What the bot does with each new inbound message. Implemented for closures
/// `Fn(NewMessage, Reply<S>) -> impl Future<Output = ()>`.
///
/// Handlers run off the request path: the webhook is answered once the message is
/// recorded and queued, and each handler runs on its own task. A handler that panics is
/// logged; the others go on.
pub trait Bot<S: Store>: Send + Sync + 'static {
    /// Handles one new inbound message; `reply` sends through the guarded path.
    fn on_message(&self, message: NewMessage, reply: Reply<S>) -> impl Future<Output = ()> + Send;
}

impl<S, F, Fut> Bot<S> for F
where
    S: Store,
    F: Fn(NewMessage, Reply<S>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    fn on_message(&self, message: NewMessage, reply: Reply<S>) -> impl Future<Output = ()> + Send {
        self(message, reply)
    }
}

/// Why a reply was not sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// The message does not validate (an empty text, ...); nothing was sent.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The guarded send path failed (see [`PolicyError`]; retrying the same reply reuses
    /// its `messageId`).
    #[error(transparent)]
    Send(#[from] PolicyError),
}

/// Sends replies to one inbound message through the guarded path
/// ([`Messenger::send`]): the window is checked with the margin, and a closed window is
/// handled by the policy (reject by default: no free-form message reaches the gateway).
///
/// Each reply's `messageId` is derived from the inbound message's id
/// ([`MessageId::reply_to_nth`]: the first reply is the 0th, the next the 1st, ...), so a
/// reply made again for the same message (a redelivery after the memory forgot it, a
/// handler run again) is the same logical send and reaches the customer once. A reply
/// that fails keeps its number: calling again retries the same `messageId`. A message
/// without an id gets fresh ids.
#[derive(Debug)]
pub struct Reply<S> {
    messenger: Messenger<S>,
    conversation: Conversation,
    inbound: Option<InboundId>,
    next: u32,
}

impl<S: Store> Reply<S> {
    pub(crate) fn new(
        messenger: Messenger<S>,
        conversation: Conversation,
        inbound: Option<InboundId>,
    ) -> Self {
        Self {
            messenger,
            conversation,
            inbound,
            next: 0,
        }
    }

    /// The conversation replies go to.
    pub fn conversation(&self) -> Conversation {
        self.conversation
    }

    /// The `messageId` the next reply will carry.
    pub fn next_message_id(&self) -> MessageId {
        match &self.inbound {
            Some(inbound) => MessageId::reply_to_nth(inbound, self.next),
            None => MessageId::new(),
        }
    }

    /// The messenger, for anything beyond replying (a send to another conversation).
    pub fn messenger(&self) -> &Messenger<S> {
        &self.messenger
    }

    /// Replies with a text message.
    pub async fn text(&mut self, body: impl Into<String>) -> Result<SendOutcome, ReplyError> {
        let text = TextMessage::new(body)?;
        Ok(self.send(FreeFormMessage::Text(text), None).await?)
    }

    /// Replies with a contact card.
    pub async fn contact(&mut self, card: ContactMessage) -> Result<SendOutcome, ReplyError> {
        Ok(self.send(FreeFormMessage::Contact(card), None).await?)
    }

    /// Replies with `message`, under the policy's closed-window choice or `on_closed`.
    pub async fn send(
        &mut self,
        message: FreeFormMessage,
        on_closed: Option<OnClosed>,
    ) -> Result<SendOutcome, PolicyError> {
        let message_id = self.next_message_id();
        let mut request = SendRequest::new(self.conversation, message).message_id(message_id);
        if let Some(on_closed) = on_closed {
            request = request.on_closed(on_closed);
        }
        let span = info_span!(
            "send",
            conversation = %self.conversation,
            message_id = %message_id,
            outcome = field::Empty,
        );
        // Counted in the metrics by the messenger's send observer (the service's).
        let result = self.messenger.send(request).instrument(span.clone()).await;
        match &result {
            Ok(outcome) => {
                span.record("outcome", outcome.name());
                span.in_scope(|| {
                    info!(
                        outcome = outcome.name(),
                        "reply handled by the guarded path"
                    )
                });
                self.next += 1;
            }
            Err(error) => {
                span.record("outcome", "error");
                span.in_scope(|| warn!(%error, "reply failed"));
            }
        }
        result
    }
}

/// One message waiting for the bot.
pub(crate) struct Job {
    pub(crate) message: NewMessage,
}

/// The erased form of a [`Bot`], so the queue holds any.
trait DynBot<S>: Send + Sync {
    fn handle<'a>(
        &'a self,
        message: NewMessage,
        reply: Reply<S>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

impl<S: Store, B: Bot<S>> DynBot<S> for B {
    fn handle<'a>(
        &'a self,
        message: NewMessage,
        reply: Reply<S>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(self.on_message(message, reply))
    }
}

/// The bounded queue between the request path and the bot's handlers.
pub(crate) struct BotQueue {
    sender: mpsc::Sender<Job>,
    depth: DepthGauge,
}

/// The queue depth gauge: messages queued or reserved, read from the channel's count and
/// set under one lock, so that the webhooks' updates and the dispatcher's cannot leave a
/// stale value behind (one computing 0 before another's message arrived, then setting it
/// after that one set 1).
#[derive(Clone)]
struct DepthGauge {
    sender: mpsc::WeakSender<Job>,
    metrics: WebhookMetrics,
    lock: Arc<std::sync::Mutex<()>>,
}

impl DepthGauge {
    /// Sets the gauge to the queue's depth now.
    fn report(&self) {
        let _serialised = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let depth = self
            .sender
            .upgrade()
            .map_or(0, |sender| sender.max_capacity() - sender.capacity());
        self.metrics.queue_depth(depth);
    }
}

/// Stops the queue's dispatcher once everything queued has been handled.
pub(crate) struct BotRunner {
    stop: oneshot::Sender<()>,
    dispatcher: tokio::task::JoinHandle<()>,
}

impl BotRunner {
    /// Takes no more messages, lets every queued and running handler finish, and returns.
    pub(crate) async fn finish(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.dispatcher.await {
            warn!(%error, "the bot's dispatcher ended abnormally");
        }
    }
}

impl BotQueue {
    /// A queue of `capacity` messages handed to `bot`, at most `handlers` at once.
    /// Spawns the dispatcher on the current runtime.
    pub(crate) fn start<S: Store, B: Bot<S>>(
        bot: B,
        messenger: Messenger<S>,
        capacity: usize,
        handlers: usize,
        metrics: WebhookMetrics,
    ) -> (Self, BotRunner) {
        let (sender, receiver) = mpsc::channel(capacity);
        let (stop, stopped) = oneshot::channel();
        let bot: Arc<dyn DynBot<S>> = Arc::new(bot);
        let depth = DepthGauge {
            sender: sender.downgrade(),
            metrics,
            lock: Arc::default(),
        };
        let dispatcher = tokio::spawn(dispatch(
            receiver,
            stopped,
            bot,
            messenger,
            Arc::new(Semaphore::new(handlers)),
            depth.clone(),
        ));
        (Self { sender, depth }, BotRunner { stop, dispatcher })
    }

    /// Reserves room for `n` messages, all or none: `None` when the queue is full (or
    /// closed, or `n` is more than it can ever hold).
    pub(crate) fn reserve(&self, n: usize) -> Option<Reservation<'_>> {
        let permits = if n == 0 {
            Vec::new()
        } else {
            self.sender.try_reserve_many(n).ok()?.collect()
        };
        self.depth.report();
        Some(Reservation {
            permits: permits.into_iter(),
            queue: self,
        })
    }

    /// Hands a message to the bot through a reserved slot.
    pub(crate) fn hand_over(&self, permit: mpsc::Permit<'_, Job>, message: NewMessage) {
        permit.send(Job { message });
        self.depth.report();
    }
}

/// Slots reserved in the bot's queue ([`BotQueue::reserve`]); those not used to hand a
/// message over are given back when it is dropped, and the depth gauge follows.
pub(crate) struct Reservation<'a> {
    permits: std::vec::IntoIter<mpsc::Permit<'a, Job>>,
    queue: &'a BotQueue,
}

impl<'a> Reservation<'a> {
    /// The next reserved slot, if any is left.
    pub(crate) fn next_slot(&mut self) -> Option<mpsc::Permit<'a, Job>> {
        self.permits.next()
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        // Give the unused slots back first, then show the depth without them.
        self.permits = Vec::new().into_iter();
        self.queue.depth.report();
    }
}

async fn dispatch<S: Store>(
    mut receiver: mpsc::Receiver<Job>,
    mut stopped: oneshot::Receiver<()>,
    bot: Arc<dyn DynBot<S>>,
    messenger: Messenger<S>,
    handlers: Arc<Semaphore>,
    depth: DepthGauge,
) {
    let mut running = JoinSet::new();
    let mut stopping = false;
    loop {
        let job = tokio::select! {
            biased;
            _ = &mut stopped, if !stopping => {
                // Nothing new is accepted; what is queued (and what reserved slots
                // still hand over) is handled before `recv` answers `None`.
                receiver.close();
                stopping = true;
                continue;
            }
            job = receiver.recv() => job,
        };
        let Some(job) = job else { break };
        depth.report();
        // Waiting for a free handler leaves later messages in the queue, so a bot slower
        // than its webhooks fills the queue and the webhooks are answered 503.
        let Ok(slot) = Arc::clone(&handlers).acquire_owned().await else {
            break;
        };
        let bot = Arc::clone(&bot);
        let message = job.message;
        let inbound = message
            .message
            .message_id
            .as_deref()
            .and_then(InboundId::from_platform);
        let reply = Reply::new(messenger.clone(), message.conversation, inbound);
        let span = info_span!(
            "bot",
            conversation = %message.conversation,
            kind = message.message.kind.name(),
        );
        running.spawn(
            async move {
                bot.handle(message, reply).await;
                drop(slot);
            }
            .instrument(span),
        );
        while let Some(done) = running.try_join_next() {
            log_handler_end(done);
        }
    }
    while let Some(done) = running.join_next().await {
        log_handler_end(done);
    }
    depth.metrics.queue_depth(0);
}

fn log_handler_end(done: Result<(), tokio::task::JoinError>) {
    if let Err(error) = done {
        warn!(%error, "a bot handler panicked or was cancelled");
    }
}
