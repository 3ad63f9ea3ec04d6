//! [`serve`]: an accept loop over hyper's HTTP/1 connections with the limits of a
//! [`ServingConfig`], and the middleware that reads each request body whole, within its
//! time and size, when the handler asks for it, holding no handler slot meanwhile.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

/// The default time a client has to send a whole request head: 10 s.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The default time a client has to send a whole request body once its head is read:
/// 10 s.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The default time a write of an answer may make no progress (the client reads
/// nothing of it) before the connection is closed: 10 s.
pub const DEFAULT_WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The default largest request body: 1 MiB (a webhook body is a few KiB).
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// The default number of requests in handlers at once: 64.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 64;
/// The default number of open connections: 1024.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The default time requests in progress get to finish after shutdown begins: 30 s.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How long to wait before accepting again after the listener failed (for example, the
/// process ran out of file descriptors), so a persistent failure does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// The limits [`serve`] applies. Start from [`ServingConfig::default`] (the `DEFAULT_*`
/// constants) and change what the deployment needs.
///
/// Counts are at least 1: a setter given 0 uses 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingConfig {
    header_read_timeout: Duration,
    body_read_timeout: Duration,
    write_stall_timeout: Duration,
    body_limit: usize,
    max_concurrent_requests: usize,
    max_connections: usize,
    shutdown_grace: Duration,
}

impl Default for ServingConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            write_stall_timeout: DEFAULT_WRITE_STALL_TIMEOUT,
            body_limit: DEFAULT_BODY_LIMIT,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

impl ServingConfig {
    /// The time a client has to send a whole request head (request line and headers),
    /// counted from when the connection is ready for one: when it opens, and again after
    /// each response on a kept-alive connection, so it is also how long an idle
    /// connection stays open. Past it the connection is closed without an answer.
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// The time a client has to send the whole body, counted from when the handler first
    /// asks for it; past it the answer is `408 Request Timeout` and the connection is
    /// closed. The whole body is timed, not the gap between chunks, so a client dripping
    /// a byte at a time is cut off too.
    pub fn with_body_read_timeout(mut self, timeout: Duration) -> Self {
        self.body_read_timeout = timeout;
        self
    }

    /// How long writing an answer may make no progress before the connection is closed:
    /// a client that stops reading (for example one that sends request after request and
    /// reads none of the answers) would otherwise hold its connection, and its
    /// connection slot, for as long as it likes. A client that reads slowly but reads
    /// keeps its connection.
    pub fn with_write_stall_timeout(mut self, timeout: Duration) -> Self {
        self.write_stall_timeout = timeout;
        self
    }

    /// The largest request body, in bytes; a longer one is answered `413 Content Too
    /// Large` and the connection is closed (before any body byte is read when the
    /// declared `Content-Length` is already too long). Also the limit axum's body
    /// extractors apply.
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// How many requests may be in handlers at once. A request takes a slot once its
    /// head is read and gives it back while its body is read (then waits for one again),
    /// so a slow client never holds one.
    pub fn with_max_concurrent_requests(mut self, requests: usize) -> Self {
        self.max_concurrent_requests = requests.max(1);
        self
    }

    /// How many connections may be open at once. At the limit, no connection is accepted
    /// (clients wait in the operating system's listen queue) until one closes, so open
    /// file descriptors stay bounded. Keep it above
    /// [`ServingConfig::with_max_concurrent_requests`], so waiting requests do not keep
    /// handlers idle.
    pub fn with_max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// How long requests in progress get to finish once shutdown begins; connections
    /// still open after it are dropped.
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// The header read timeout.
    pub fn header_read_timeout(&self) -> Duration {
        self.header_read_timeout
    }

    /// The body read timeout.
    pub fn body_read_timeout(&self) -> Duration {
        self.body_read_timeout
    }

    /// The write stall timeout.
    pub fn write_stall_timeout(&self) -> Duration {
        self.write_stall_timeout
    }

    /// The body limit, in bytes.
    pub fn body_limit(&self) -> usize {
        self.body_limit
    }

    /// The most requests in handlers at once.
    pub fn max_concurrent_requests(&self) -> usize {
        self.max_concurrent_requests
    }

    /// The most open connections.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// The grace period at shutdown.
    pub fn shutdown_grace(&self) -> Duration {
        self.shutdown_grace
    }
}

/// What the body-reading middleware needs, shared by every request.
struct RequestLimits {
    body_read_timeout: Duration,
    body_limit: usize,
    handlers: Arc<Semaphore>,
}

/// Serves `router` on `listener` under `config` until `shutdown` completes, then stops
/// accepting, lets requests in progress finish (for at most the grace period) and
/// returns.
///
/// HTTP/1.1 only (with keep-alive); put TLS and HTTP/2 in a reverse proxy in front if
/// they are needed. Failures of single connections are logged at `debug`; a failing
/// listener (for example, out of file descriptors) is logged at `warn` and retried after
/// a second, so this never returns before `shutdown` completes.
pub async fn serve<F>(listener: TcpListener, router: Router, config: ServingConfig, shutdown: F)
where
    F: Future<Output = ()> + Send,
{
    let limits = Arc::new(RequestLimits {
        body_read_timeout: config.body_read_timeout,
        body_limit: config.body_limit,
        handlers: Arc::new(Semaphore::new(config.max_concurrent_requests)),
    });
    let app = router
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(middleware::from_fn_with_state(
            limits,
            read_body_within_limits,
        ));
    let service = TowerToHyperService::new(app);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .keep_alive(true);
    let connections = Arc::new(Semaphore::new(config.max_connections));
    let graceful = GracefulShutdown::new();
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        // A connection slot first: at the limit, nothing more is accepted.
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            slot = Arc::clone(&connections).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_closed) => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if is_one_connection_error(&error) => {
                debug!(%error, "a connection failed while being accepted");
                continue;
            }
            Err(error) => {
                warn!(%error, "accepting connections failed; trying again in 1 s");
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            debug!(%peer, %error, "could not set TCP_NODELAY");
        }
        let stream = WriteStallLimit::new(stream, config.write_stall_timeout);
        let connection =
            graceful.watch(http.serve_connection(TokioIo::new(stream), service.clone()));
        tasks.spawn(async move {
            if let Err(error) = connection.await {
                debug!(%peer, %error, "connection closed with an error");
            }
            drop(slot);
        });
        // Forget the connections that have ended, so the set holds only open ones.
        while tasks.try_join_next().is_some() {}
    }

    drop(listener);
    info!(
        open_connections = tasks.len(),
        "shutting down: no new connections; letting requests in progress finish"
    );
    tokio::select! {
        () = graceful.shutdown() => debug!("every connection closed"),
        () = tokio::time::sleep(config.shutdown_grace) => {
            warn!(grace_ms = u64::try_from(config.shutdown_grace.as_millis()).unwrap_or(u64::MAX),
                "connections still open after the shutdown grace period; dropping them");
        }
    }
    tasks.shutdown().await;
}

/// Errors that concern one connection only (the client gave up before it was
/// accepted); the listener itself is fine.
fn is_one_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Gives the request a handler slot and runs the rest of the router with its body
/// replaced by one that is read whole, within the body limit and the body read timeout,
/// when the handler first asks for it. The slot is given back while the body is read and
/// taken again once it is in memory, so a slow or stalled client never holds one; a route
/// that refuses a request on its head (a wrong token, a missing signature) answers
/// without the body ever being read. A body that could not be read is answered here
/// (408, 413 or 400, closing the connection), whatever the handler made of the failure.
async fn read_body_within_limits(
    State(limits): State<Arc<RequestLimits>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(refused) = refuse_a_declared_length_over(request.headers(), limits.body_limit) {
        return refused;
    }
    // The semaphore is never closed; were it, the request would run unlimited rather
    // than fail.
    let slot = Arc::clone(&limits.handlers).acquire_owned().await.ok();
    let (parts, body) = request.into_parts();
    if body.is_end_stream() {
        // Nothing to read: the handler runs in its slot.
        let response = next.run(Request::from_parts(parts, body)).await;
        drop(slot);
        return response;
    }
    let turn = Arc::new(RequestTurn::holding(slot));
    let body = Body::from_stream(futures_util::stream::once(read_whole(
        body,
        Arc::clone(&limits),
        Arc::clone(&turn),
    )));
    let response = next.run(Request::from_parts(parts, body)).await;
    let read = turn.finish();
    match read {
        BodyRead::Failed(BodyReadError::TooLarge { limit }) => too_large(limit),
        BodyRead::Failed(error @ BodyReadError::TimedOut { .. }) => {
            closing(StatusCode::REQUEST_TIMEOUT, format!("{error}\n"))
        }
        BodyRead::Failed(error @ BodyReadError::Unreadable) => {
            closing(StatusCode::BAD_REQUEST, format!("{error}\n"))
        }
        // Answered on its head alone: the unread body cannot be skipped reliably, so the
        // connection is closed after the answer.
        BodyRead::Unread | BodyRead::Reading => close_after(response),
        BodyRead::Read => response,
    }
}

/// Reads `body` whole for [`read_body_within_limits`]: gives back the request's handler
/// slot, reads within the limit and the timeout, then waits for a slot again.
async fn read_whole(
    body: Body,
    limits: Arc<RequestLimits>,
    turn: Arc<RequestTurn>,
) -> Result<Bytes, BodyReadError> {
    turn.update(|state| {
        state.slot = None;
        state.read = BodyRead::Reading;
    });
    let read = tokio::time::timeout(
        limits.body_read_timeout,
        Limited::new(body, limits.body_limit).collect(),
    )
    .await;
    let read = match read {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(BodyReadError::TooLarge {
                limit: limits.body_limit,
            })
        }
        Ok(Err(error)) => {
            debug!(%error, "reading a request body failed");
            Err(BodyReadError::Unreadable)
        }
        Err(_elapsed) => Err(BodyReadError::TimedOut {
            millis: limits.body_read_timeout.as_millis(),
        }),
    };
    match read {
        Ok(bytes) => {
            let slot = Arc::clone(&limits.handlers).acquire_owned().await.ok();
            turn.update(|state| {
                state.slot = slot;
                state.read = BodyRead::Read;
            });
            Ok(bytes)
        }
        Err(error) => {
            turn.update(|state| state.read = BodyRead::Failed(error));
            Err(error)
        }
    }
}

/// Why a request body could not be read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
enum BodyReadError {
    /// The body passed the body limit.
    #[error("the request body is over the limit of {limit} bytes")]
    TooLarge {
        /// The body limit, in bytes.
        limit: usize,
    },
    /// The body did not arrive whole within the body read timeout.
    #[error("the request body did not arrive within {millis} ms")]
    TimedOut {
        /// The body read timeout, in milliseconds.
        millis: u128,
    },
    /// The connection failed while the body was read.
    #[error("the request body could not be read")]
    Unreadable,
}

/// What became of a request's body.
#[derive(Debug, Clone, Copy, Default)]
enum BodyRead {
    /// The handler never asked for it.
    #[default]
    Unread,
    /// Being read (the handler gave up on it before it was whole).
    Reading,
    /// Read whole.
    Read,
    /// Could not be read whole.
    Failed(BodyReadError),
}

/// A request's handler slot (held while it is in the handler, given back while its body
/// is read) and what became of its body; shared by the middleware and the body.
struct RequestTurn {
    state: Mutex<TurnState>,
}

struct TurnState {
    slot: Option<OwnedSemaphorePermit>,
    read: BodyRead,
}

impl RequestTurn {
    fn holding(slot: Option<OwnedSemaphorePermit>) -> Self {
        Self {
            state: Mutex::new(TurnState {
                slot,
                read: BodyRead::Unread,
            }),
        }
    }

    fn update(&self, change: impl FnOnce(&mut TurnState)) {
        change(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Gives the slot back; what became of the body.
    fn finish(&self) -> BodyRead {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.slot = None;
        state.read
    }
}

/// `response`, closing the connection after it.
pub(crate) fn close_after(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// `413 Content Too Large` (closing the connection) when `headers` declare a
/// `Content-Length` over `limit`: the answer is given from the request head, before any
/// body byte is read.
pub(crate) fn refuse_a_declared_length_over(headers: &HeaderMap, limit: usize) -> Option<Response> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    declared
        .is_some_and(|length| length > limit as u64)
        .then(|| too_large(limit))
}

/// `413 Content Too Large`, closing the connection (the rest of the body is not read).
fn too_large(limit: usize) -> Response {
    closing(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is over the limit of {limit} bytes\n"),
    )
}

/// An error answer that also closes the connection: the request's body was not read to
/// its end, so the connection cannot carry another request.
fn closing(status: StatusCode, text: String) -> Response {
    close_after((status, text).into_response())
}

/// A connection whose writes fail once one has made no progress for the stall timeout:
/// hyper has no write timeout, and a client that reads nothing would keep a write pending
/// (and its connection open) forever.
struct WriteStallLimit<S> {
    inner: S,
    timeout: Duration,
    /// Running while a write (or flush) is pending; reset by any progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteStallLimit<S> {
    fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// Called when the inner write is pending: pending too until the stall timeout has
    /// passed since the first pending write without progress, then an error.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client read none of the answer for {} ms",
                    timeout.as_millis()
                ),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progressed<T>(
        &mut self,
        result: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => self.pending(cx),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStallLimit<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStallLimit<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progressed(result, cx)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.progressed(result, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.progressed(result, cx)
    }
}
