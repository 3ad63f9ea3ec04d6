//! [`WebhookService`]: the router a bot mounts or serves, its configuration, and its
//! shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lipachat_api::{WebhookError, WebhookEvent, WebhookParser, WebhookToken};
use lipachat_policy::{Messenger, PolicyError, SendObserver, WebhookOutcome};
use lipachat_session::{Store, StoreError};
use serde::Deserialize;
use tracing::{Instrument, debug, field, info_span, warn};

use crate::admin;
use crate::bot::{Bot, BotQueue, BotRunner, NewMessage};
use crate::error::ConfigError;
use crate::metrics::WebhookMetrics;
use crate::secret::Secret;
use crate::serving::{DEFAULT_BODY_LIMIT, close_after, refuse_a_declared_length_over};
use crate::signature::{PresentedSignature, SIGNATURE_HEADER, SignatureError};
use crate::unconfirmed::UnconfirmedInbound;

/// The default number of messages the bot's queue holds: 1024.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// The default number of bot handlers running at once: 16.
pub const DEFAULT_BOT_HANDLERS: usize = 16;
/// The longest `hub.challenge` echoed back, in bytes (Meta's is a short number).
pub const MAX_CHALLENGE_BYTES: usize = 1024;

/// Builds a [`WebhookService`]: which routes accept webhooks (LipaChat's path token,
/// WhatsApp's verify token and app secret), the admin token, the parser, the body limit
/// and the bot with its queue.
pub struct WebhookServiceBuilder<S> {
    messenger: Messenger<S>,
    lipachat_token: Option<WebhookToken>,
    whatsapp: Option<(Secret, Secret)>,
    admin_token: Option<Secret>,
    parser: WebhookParser,
    body_limit: usize,
    queue_capacity: usize,
    bot_handlers: usize,
    metrics: WebhookMetrics,
    start_bot: Option<BotStarter<S>>,
}

type BotStarter<S> =
    Box<dyn FnOnce(Messenger<S>, usize, usize, WebhookMetrics) -> (BotQueue, BotRunner) + Send>;

impl<S: Store> WebhookServiceBuilder<S> {
    /// `POST /webhooks/lipachat/{token}` accepts LipaChat's webhooks carrying `token`.
    pub fn lipachat_token(mut self, token: WebhookToken) -> Self {
        self.lipachat_token = Some(token);
        self
    }

    /// `GET /webhooks/whatsapp` answers the subscription handshake for `verify_token`, and
    /// `POST /webhooks/whatsapp` accepts WhatsApp's webhooks signed with `app_secret`.
    pub fn whatsapp(mut self, verify_token: Secret, app_secret: Secret) -> Self {
        self.whatsapp = Some((verify_token, app_secret));
        self
    }

    /// The read-only admin routes (`/admin/...`) answer requests carrying
    /// `Authorization: Bearer <token>`; without this they are not served.
    pub fn admin_token(mut self, token: Secret) -> Self {
        self.admin_token = Some(token);
        self
    }

    /// The parser webhooks are read with (default: [`WebhookParser::new`]); its size
    /// limit is raised to the body limit.
    pub fn parser(mut self, parser: WebhookParser) -> Self {
        self.parser = parser;
        self
    }

    /// The largest body accepted (default 1 MiB): a longer one is answered 413, from the
    /// request head when its `Content-Length` already says so (in any server), else once
    /// the body passes it. Serve with the same [`crate::ServingConfig::with_body_limit`]
    /// so the server's own limit agrees.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// How many new messages may wait for the bot (default 1024). When a webhook's new
    /// messages do not fit, it is answered 503 and nothing of it is recorded, so the
    /// sender's retry is applied once. A single body holding more inbound messages than the
    /// capacity can never fit and is answered 503 every time: keep the capacity well above
    /// the largest batch a sender posts.
    pub fn queue_capacity(mut self, messages: usize) -> Self {
        self.queue_capacity = messages;
        self
    }

    /// How many bot handlers run at once (default 16).
    pub fn bot_handlers(mut self, handlers: usize) -> Self {
        self.bot_handlers = handlers;
        self
    }

    /// The bot each new inbound message is handed to. Without one, webhooks are applied
    /// and nothing more.
    pub fn bot<B: Bot<S>>(mut self, bot: B) -> Self {
        self.start_bot = Some(Box::new(move |messenger, capacity, handlers, metrics| {
            BotQueue::start(bot, messenger, capacity, handlers, metrics)
        }));
        self
    }

    /// Checks the configuration and starts the bot's dispatcher (on the current tokio
    /// runtime).
    pub fn build(self) -> Result<WebhookService<S>, ConfigError> {
        if self.lipachat_token.is_none() && self.whatsapp.is_none() {
            return Err(ConfigError::NoWebhookRoute);
        }
        if self.queue_capacity == 0 {
            return Err(ConfigError::Zero {
                name: "the bot queue's capacity",
            });
        }
        if self.bot_handlers == 0 {
            return Err(ConfigError::Zero {
                name: "the number of bot handlers",
            });
        }
        // Every send of the messenger (and of its clones), withheld template and
        // predicted category is counted in this service's metrics.
        self.messenger
            .observe(Arc::new(self.metrics.clone()) as Arc<dyn SendObserver>);
        let (queue, runner) = match self.start_bot {
            Some(start) => {
                let (queue, runner) = start(
                    self.messenger.clone(),
                    self.queue_capacity,
                    self.bot_handlers,
                    self.metrics.clone(),
                );
                (Some(queue), Some(runner))
            }
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            parser: self.parser.with_max_body_bytes(self.body_limit),
            messenger: self.messenger,
            lipachat_token: self.lipachat_token,
            whatsapp: self.whatsapp,
            admin_token: self.admin_token,
            body_limit: self.body_limit,
            metrics: self.metrics,
            queue,
            unconfirmed: UnconfirmedInbound::default(),
        });
        Ok(WebhookService { shared, runner })
    }
}

/// What every request shares.
pub(crate) struct Shared<S> {
    pub(crate) messenger: Messenger<S>,
    parser: WebhookParser,
    lipachat_token: Option<WebhookToken>,
    whatsapp: Option<(Secret, Secret)>,
    pub(crate) admin_token: Option<Secret>,
    body_limit: usize,
    pub(crate) metrics: WebhookMetrics,
    queue: Option<BotQueue>,
    /// Inbound messages whose handling failed, so a retry's "already seen" may be our
    /// own lost answer.
    unconfirmed: UnconfirmedInbound,
}

/// The serving side of a bot: webhook routes for LipaChat and WhatsApp, health, metrics
/// and read-only admin routes, in one axum [`Router`] ([`WebhookService::router`]), with
/// the bot's queue behind it.
///
/// ```no_run
/// use lipachat_api::{ApiKey, Client, WebhookToken};
/// use lipachat_policy::{Messenger, PolicyConfig};
/// use lipachat_session::{Sessions, SledStore};
/// use lipachat_webhook::{NewMessage, Reply, ServingConfig, WebhookService, serve};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::from_env()?;
/// let sessions = Sessions::new(SledStore::open("sessions.db")?);
/// let messenger = Messenger::new(sessions, client, PolicyConfig::default());
/// let service = WebhookService::builder(messenger)
///     .lipachat_token(WebhookToken::new(std::env::var("LIPACHAT_WEBHOOK_TOKEN")?)?)
///     .bot(|message: NewMessage, mut reply: Reply<SledStore>| async move {
///         if let Some(text) = message.text() {
///             let _ = reply.text(format!("echo: {text}")).await;
///         }
///     })
///     .build()?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// let shutdown = async {
///     let _ = tokio::signal::ctrl_c().await;
/// };
/// serve(listener, service.router(), ServingConfig::default(), shutdown).await;
/// service.shutdown().await?; // handlers finish, the store is flushed
/// # Ok(())
/// # }
/// ```
pub struct WebhookService<S> {
    shared: Arc<Shared<S>>,
    runner: Option<BotRunner>,
}

impl<S> std::fmt::Debug for WebhookService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookService")
            .field("lipachat", &self.shared.lipachat_token.is_some())
            .field("whatsapp", &self.shared.whatsapp.is_some())
            .field("admin", &self.shared.admin_token.is_some())
            .field("bot", &self.runner.is_some())
            .finish_non_exhaustive()
    }
}

impl<S: Store> WebhookService<S> {
    /// A builder over the messenger every webhook is applied with and every reply sent
    /// through.
    pub fn builder(messenger: Messenger<S>) -> WebhookServiceBuilder<S> {
        WebhookServiceBuilder {
            messenger,
            lipachat_token: None,
            whatsapp: None,
            admin_token: None,
            parser: WebhookParser::new(),
            body_limit: DEFAULT_BODY_LIMIT,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            bot_handlers: DEFAULT_BOT_HANDLERS,
            metrics: WebhookMetrics::new(),
            start_bot: None,
        }
    }

    /// The routes:
    /// - `POST /webhooks/lipachat/{token}` (with a LipaChat token): a wrong token is 401;
    /// - `GET /webhooks/whatsapp` (the subscription handshake) and `POST
    ///   /webhooks/whatsapp` (signed with the app secret; missing or wrong: 401), with
    ///   WhatsApp's secrets;
    ///
    /// A wrong path token, and a missing or malformed signature header, are refused on
    /// the request head, before any of the body is read, with `Connection: close`: an
    /// unauthenticated client cannot make the server read or hold its body, whether the
    /// router runs under [`crate::serve`] or in the application's own axum server.
    /// - `GET /healthz` (200 when the store takes a durable write, else 503) and `GET /metrics`;
    /// - with an admin token, `GET /admin/windows/{business}/{customer}`,
    ///   `GET /admin/windows?state=open|closed&closing_within=SECS`, `GET /admin/pending`
    ///   and `GET /admin/pending/{business}/{customer}`.
    ///
    /// A webhook body is applied (windows recorded, closures, identity changes) before it
    /// is answered 200; a body that is not a webhook is 400 with the reason, a body over
    /// the limit 413 (from the request head, before any of the body is read, when its
    /// `Content-Length` says so), a store failure 503 (the sender retries; what was applied is not
    /// applied twice).
    pub fn router(&self) -> Router {
        let mut router = Router::new()
            .route("/healthz", get(healthz::<S>))
            .route("/metrics", get(metrics::<S>));
        if self.shared.lipachat_token.is_some() {
            router = router.route(
                "/webhooks/lipachat/{token}",
                axum::routing::post(lipachat_webhook::<S>),
            );
        }
        if self.shared.whatsapp.is_some() {
            router = router.route(
                "/webhooks/whatsapp",
                axum::routing::post(whatsapp_webhook::<S>).get(whatsapp_handshake::<S>),
            );
        }
        if self.shared.admin_token.is_some() {
            router = router.merge(admin::routes(Arc::clone(&self.shared)));
        }
        // One layer for the span and the head's length check, a plain tower layer: each
        // `from_fn` layer costs every request a clone of the routes below it and boxing.
        router
            .with_state(Arc::clone(&self.shared))
            .layer(DefaultBodyLimit::max(self.shared.body_limit))
            .layer(TraceRequestLayer {
                body_limit: self.shared.body_limit,
            })
    }

    /// The metrics this service keeps (what `GET /metrics` shows).
    pub fn metrics(&self) -> &WebhookMetrics {
        &self.shared.metrics
    }

    /// The messenger.
    pub fn messenger(&self) -> &Messenger<S> {
        &self.shared.messenger
    }

    /// Call once the server has stopped (after [`crate::serve`] returned): takes no more
    /// messages for the bot, lets queued and running handlers finish, then flushes the
    /// store.
    pub async fn shutdown(mut self) -> Result<(), StoreError> {
        if let Some(runner) = self.runner.take() {
            runner.finish().await;
        }
        self.shared.messenger.sessions().store().flush().await
    }
}

/// A span per request naming the route's pattern (never the path itself, which carries
/// LipaChat's token) and the answer's status; within it, the head check of every route:
/// a request whose declared `Content-Length` is over the body limit is answered 413 from
/// its head, closing the connection, whatever server the router runs in (under
/// [`crate::serve`] this is already done before routing).
///
/// A plain tower layer rather than `axum::middleware::from_fn`: that clones the whole
/// stack of routes below it and boxes it again for every request.
#[derive(Debug, Clone, Copy)]
struct TraceRequestLayer {
    body_limit: usize,
}

impl<I> tower_layer::Layer<I> for TraceRequestLayer {
    type Service = TraceRequest<I>;

    fn layer(&self, inner: I) -> TraceRequest<I> {
        TraceRequest {
            inner,
            body_limit: self.body_limit,
        }
    }
}

/// The service of [`TraceRequestLayer`].
#[derive(Debug, Clone)]
struct TraceRequest<I> {
    inner: I,
    body_limit: usize,
}

impl<I> tower_service::Service<Request> for TraceRequest<I>
where
    I: tower_service::Service<Request, Response = Response, Error = Infallible>,
    I::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The matched path is shared (an `Arc`): cloning it copies no text.
        let route = request.extensions().get::<MatchedPath>().cloned();
        let span = info_span!(
            "request",
            method = %request.method(),
            route = route.as_ref().map_or("unmatched", MatchedPath::as_str),
            status = field::Empty,
        );
        let answer = match refuse_a_declared_length_over(request.headers(), self.body_limit) {
            Some(refused) => Err(refused),
            None => Ok(self.inner.call(request).instrument(span.clone())),
        };
        Box::pin(async move {
            let response = match answer {
                Err(refused) => refused,
                Ok(handled) => handled.await?,
            };
            span.record("status", response.status().as_u16());
            span.in_scope(|| debug!("answered"));
            Ok(response)
        })
    }
}

/// A plain-text answer.
pub(crate) fn plain(status: StatusCode, text: impl Into<String>) -> Response {
    let mut text = text.into();
    text.push('\n');
    (status, text).into_response()
}

async fn healthz<S: Store>(State(shared): State<Arc<Shared<S>>>) -> Response {
    // One durable write of the store's own health record: a store that answers reads
    // but refuses writes (a full disk, Redis out of memory or a read-only replica)
    // refuses every webhook too.
    match shared.messenger.sessions().store().check_writable().await {
        Ok(()) => plain(StatusCode::OK, "ok"),
        Err(error) => {
            warn!(%error, "health check: the store did not answer");
            plain(StatusCode::SERVICE_UNAVAILABLE, "the store is unreachable")
        }
    }
}

async fn metrics<S: Store>(State(shared): State<Arc<Shared<S>>>) -> Response {
    let mut response = shared.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

/// `POST /webhooks/lipachat/{token}`. A wrong token is answered 401 from the request
/// head, before any of the body is read (an unauthenticated client cannot make the
/// server read or hold its body), closing the connection; the signature check of the
/// WhatsApp route works the same way.
async fn lipachat_webhook<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    Path(token): Path<String>,
    request: Request,
) -> Response {
    let verified = shared
        .lipachat_token
        .as_ref()
        .is_some_and(|expected| expected.verify(&token));
    if !verified {
        shared.metrics.auth_failure("token");
        warn!("LipaChat webhook refused: wrong token");
        return refused_on_head(StatusCode::UNAUTHORIZED, "unknown webhook token");
    }
    let body = match Bytes::from_request(request, &shared).await {
        Ok(body) => body,
        Err(rejection) => return rejection.into_response(),
    };
    apply(&shared, "lipachat", &body).await
}

/// A 401 for a bad signature, counted and logged (never with the signature).
fn refuse_signature<S>(shared: &Shared<S>, error: SignatureError) -> Response {
    let reason = match error {
        SignatureError::Missing => "signature_missing",
        SignatureError::Malformed => "signature_malformed",
        _ => "signature_mismatch",
    };
    shared.metrics.auth_failure(reason);
    warn!(
        reason = error.name(),
        "WhatsApp webhook refused: bad signature"
    );
    plain(StatusCode::UNAUTHORIZED, error.to_string())
}

/// An error answer given from the request head alone: the body is not read, so the
/// connection is closed after it.
fn refused_on_head(status: StatusCode, text: &'static str) -> Response {
    close_after(plain(status, text))
}

/// The subscription handshake's query.
#[derive(Debug, Deserialize)]
struct Handshake {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

async fn whatsapp_handshake<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    query: Result<Query<Handshake>, QueryRejection>,
) -> Response {
    let Some((verify_token, _)) = &shared.whatsapp else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let Ok(Query(query)) = query else {
        shared.metrics.auth_failure("verify_token");
        return plain(StatusCode::FORBIDDEN, "not a subscription request");
    };
    let subscribes = query.mode.as_deref() == Some("subscribe");
    let verified = query
        .verify_token
        .as_deref()
        .is_some_and(|token| verify_token.verify(token.as_bytes()));
    if !(subscribes && verified) {
        shared.metrics.auth_failure("verify_token");
        warn!(subscribes, "WhatsApp subscription handshake refused");
        return plain(
            StatusCode::FORBIDDEN,
            "not hub.mode=subscribe with the configured hub.verify_token",
        );
    }
    match query.challenge {
        Some(challenge) if challenge.len() <= MAX_CHALLENGE_BYTES => {
            let mut response = challenge.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        }
        Some(_) => plain(
            StatusCode::BAD_REQUEST,
            format!("hub.challenge is over {MAX_CHALLENGE_BYTES} bytes"),
        ),
        None => plain(StatusCode::BAD_REQUEST, "hub.challenge is missing"),
    }
}

/// `POST /webhooks/whatsapp`. A missing or malformed `X-Hub-Signature-256` is answered
/// 401 from the request head, before any of the body is read, closing the connection (an
/// unauthenticated client cannot make the server read or hold its body); a well-formed
/// one is checked against the body, once read, before it is parsed. (Checked here rather
/// than in a route layer: each `from_fn` layer costs every request a clone of the
/// service below it and a boxed future.)
async fn whatsapp_webhook<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    request: Request,
) -> Response {
    let Some((_, app_secret)) = &shared.whatsapp else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let header = request
        .headers()
        .get(SIGNATURE_HEADER)
        .map(HeaderValue::as_bytes);
    let signature = match PresentedSignature::from_header(header) {
        Ok(signature) => signature,
        Err(error) => return close_after(refuse_signature(&shared, error)),
    };
    let body = match Bytes::from_request(request, &shared).await {
        Ok(body) => body,
        Err(rejection) => return rejection.into_response(),
    };
    if let Err(error) = signature.verify(app_secret, &body) {
        return refuse_signature(&shared, error);
    }
    apply(&shared, "whatsapp", &body).await
}

/// Parses and applies one accepted body, handing each new inbound message to the bot.
///
/// Room in the bot's queue is reserved for every inbound message before anything is
/// recorded: when there is none, the answer is 503 and nothing was recorded, so the
/// sender's retry is applied (and handed over) once. A redelivered message is recorded
/// nothing and not handed over again, unless this process's own earlier attempt at it
/// failed (its record may have been written with the answer lost): then the retry that
/// finds it already seen hands it over ([`UnconfirmedInbound`]).
async fn apply<S: Store>(shared: &Shared<S>, source: &'static str, body: &[u8]) -> Response {
    let received_at = shared.messenger.sessions().now();
    let events = match shared.parser.parse(body, received_at) {
        Ok(events) => events,
        Err(error @ WebhookError::TooLarge { .. }) => {
            return plain(StatusCode::PAYLOAD_TOO_LARGE, error.to_string());
        }
        Err(error) => {
            debug!(%error, source, "not a webhook body");
            return plain(
                StatusCode::BAD_REQUEST,
                format!("not a webhook body: {error}"),
            );
        }
    };
    let inbound = events
        .iter()
        .filter(|event| matches!(event, WebhookEvent::Inbound(_)))
        .count();
    let mut slots = match &shared.queue {
        Some(queue) => match queue.reserve(inbound) {
            Some(slots) => Some(slots),
            None => {
                shared.metrics.queue_full();
                warn!(
                    source,
                    messages = inbound,
                    "the bot's queue is full: answering 503"
                );
                return plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the bot's queue is full; nothing was recorded; retry later",
                );
            }
        },
        None => None,
    };
    for event in &events {
        shared.metrics.event(source, event);
        let message = match event {
            WebhookEvent::Inbound(message) => Some(&**message),
            _ => None,
        };
        let outcome = match shared.messenger.on_webhook_event(event).await {
            Ok(outcome) => outcome,
            Err(error) => {
                // Whether it was recorded before the failure is unknown: if the retry
                // finds it already seen, it is handed over then.
                if let Some(message) = message {
                    shared.unconfirmed.failed(message);
                }
                return apply_failed(&error);
            }
        };
        let handed = match outcome {
            WebhookOutcome::Inbound(report) => {
                shared.metrics.delivery(&report.delivery);
                message.map(|message| {
                    shared.unconfirmed.take(message);
                    (report.conversation, message)
                })
            }
            WebhookOutcome::Duplicate {
                conversation,
                delivery,
                ..
            } => {
                shared.metrics.delivery(&delivery);
                // Seen before, by an attempt of ours whose answer was lost: never handed.
                match message.filter(|message| shared.unconfirmed.take(message)) {
                    Some(message) => Some((conversation, message)),
                    None => {
                        shared.metrics.duplicate();
                        None
                    }
                }
            }
            WebhookOutcome::WindowClosed(_) => {
                shared.metrics.closure();
                None
            }
            _ => None,
        };
        if let (Some((conversation, message)), Some(queue), Some(slot)) = (
            handed,
            &shared.queue,
            slots.as_mut().and_then(|slots| slots.next_slot()),
        ) {
            queue.hand_over(
                slot,
                NewMessage {
                    conversation,
                    message: message.clone(),
                },
            );
        }
    }
    // A static body: the answer to every accepted webhook allocates no text.
    (StatusCode::OK, "ok\n").into_response()
}

/// A failure applying an event: 503 when a retry may succeed (the store was busy or
/// unreachable), else 500. Events applied before it stay applied; the sender's retry finds
/// their messages already seen.
fn apply_failed(error: &PolicyError) -> Response {
    warn!(%error, "applying a webhook event failed");
    if error.retry_later_may_help() {
        plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the store is unavailable; retry later",
        )
    } else {
        plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the webhook could not be applied",
        )
    }
}
