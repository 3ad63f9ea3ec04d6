//! The HTTP client: one connection pool, validated sends, retries that reuse the
//! `messageId`.

use std::error::Error as _;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use lipachat_session::Conversation;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::contact::ContactMessage;
use crate::endpoint::{BaseUrl, Endpoint, EndpointUrls};
use crate::error::{ApiError, BuildError};
use crate::free_form::FreeFormMessage;
use crate::key::ApiKey;
use crate::request::{RequestBody, contact_body, free_form_body, template_body, text_body};
use crate::response::{RawResponse, Receipt, interpret};
use crate::retry::{RetryPolicy, parse_retry_after};
use crate::template::TemplateMessage;
use crate::text::TextMessage;
use lipachat_session::MessageId;

/// The environment variable holding the API key.
pub const API_KEY_VAR: &str = "LIPACHAT_API_KEY";
/// The environment variable holding the base URL (optional).
pub const BASE_URL_VAR: &str = "LIPACHAT_BASE_URL";
/// The default time allowed to open a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default time allowed for one attempt (connect, send, and read the answer).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The default limit on a response body; the rest is not read.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// The default cap on requests in flight to the gateway at once, per client (and its
/// clones).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 32;
/// The default number of idle connections kept open to the gateway for reuse: as many as
/// may be in flight ([`DEFAULT_MAX_IN_FLIGHT`]; a client built with another
/// [`ClientBuilder::max_in_flight`] keeps that many unless [`ClientBuilder::pool_max_idle`]
/// says otherwise). A pool keeping fewer closes the connections a burst returns beyond it,
/// and the next burst opens them again: a TCP handshake on the send path each time.
pub const DEFAULT_POOL_MAX_IDLE: usize = DEFAULT_MAX_IN_FLIGHT;
/// The default time an idle connection to the gateway is kept before it is closed.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Configures a [`Client`]. Made by [`Client::builder`] or [`ClientBuilder::from_env`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    key: ApiKey,
    base_url: Option<String>,
    connect_timeout: Duration,
    request_timeout: Duration,
    retry: RetryPolicy,
    max_response_bytes: usize,
    max_catalog_bytes: usize,
    max_in_flight: usize,
    /// `None`: as many as `max_in_flight`.
    pool_max_idle: Option<usize>,
    pool_idle_timeout: Duration,
}

impl ClientBuilder {
    /// A builder with the defaults: the production gateway, connect timeout 5 s, 15 s per
    /// attempt, [`RetryPolicy::default`], 64 KiB response limit, at most 32 requests in
    /// flight, as many idle connections kept for 30 s.
    pub fn new(key: ApiKey) -> Self {
        Self {
            key,
            base_url: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            retry: RetryPolicy::default(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_catalog_bytes: crate::catalog::DEFAULT_MAX_CATALOG_BYTES,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            pool_max_idle: None,
            pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
        }
    }

    /// A builder from `LIPACHAT_API_KEY` (required) and `LIPACHAT_BASE_URL` (optional,
    /// default `https://gateway.lipachat.com`).
    pub fn from_env() -> Result<Self, BuildError> {
        Self::from_env_with(|name| std::env::var(name).ok())
    }

    /// Like [`ClientBuilder::from_env`], reading variables through `lookup` (for tests and
    /// for configuration that is not the process environment).
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, BuildError> {
        let key = lookup(API_KEY_VAR)
            .filter(|k| !k.trim().is_empty())
            .ok_or(BuildError::MissingApiKey)?;
        let mut builder = Self::new(ApiKey::new(key)?);
        if let Some(base) = lookup(BASE_URL_VAR).filter(|b| !b.trim().is_empty()) {
            builder = builder.base_url(&base);
        }
        Ok(builder)
    }

    /// The gateway's base URL, such as `https://gateway.lipachat.com` (a trailing `/` or
    /// `/api/v1` is accepted). Checked by [`ClientBuilder::build`]: plain `http://` only to
    /// a loopback host.
    pub fn base_url(mut self, url: &str) -> Self {
        self.base_url = Some(url.to_owned());
        self
    }

    /// The time allowed to open a connection (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The time allowed for one attempt, from sending to the end of the answer (default
    /// 15 s). Each retry gets the full time again.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How failed attempts are retried (default: 3 retries from 250 ms, capped at 5 s).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The most bytes of a response body read (default 64 KiB); a longer body is cut off
    /// and reported as [`ApiError::UnexpectedResponse`].
    pub fn max_response_bytes(mut self, limit: usize) -> Self {
        self.max_response_bytes = limit.max(1);
        self
    }

    /// The most bytes of a template catalog answer read (default 4 MiB); a longer one is
    /// cut off and reported as [`ApiError::UnexpectedResponse`].
    pub fn max_catalog_bytes(mut self, limit: usize) -> Self {
        self.max_catalog_bytes = limit.max(1);
        self
    }

    /// The most requests in flight to the gateway at once, across this client and its
    /// clones (default 32; 0 counts as 1), so a burst of sends cannot open a connection
    /// each. A send waits for a free slot within its attempt's time (the request timeout,
    /// or less before a deadline); one that finds none in that time fails with
    /// [`ApiError::Busy`], having sent nothing, and is retried like a timeout.
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.max_in_flight = requests.max(1);
        self
    }

    /// How many idle connections to the gateway are kept open for reuse (default: as
    /// many as [`ClientBuilder::max_in_flight`], which bounds the connections in use).
    /// Fewer saves idle sockets, at the cost of a new connection for each send of a
    /// burst beyond them.
    pub fn pool_max_idle(mut self, connections: usize) -> Self {
        self.pool_max_idle = Some(connections);
        self
    }

    /// How long an idle connection to the gateway is kept before it is closed (default
    /// 30 s).
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// Checks the settings and builds the client (and its connection pool). No connection
    /// is made and no name is looked up here.
    pub fn build(self) -> Result<Client, BuildError> {
        let base = match &self.base_url {
            Some(url) => BaseUrl::parse(url)?,
            None => BaseUrl::default(),
        };
        let mut key_header = HeaderValue::from_str(self.key.expose_secret()).map_err(|_| {
            BuildError::Invalid(crate::error::ValidationError::ApiKey {
                reason: "not a valid header value",
            })
        })?;
        key_header.set_sensitive(true);
        let mut http = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(self.connect_timeout)
            .pool_max_idle_per_host(self.pool_max_idle.unwrap_or(self.max_in_flight))
            .pool_idle_timeout(self.pool_idle_timeout)
            // A redirect could carry the apiKey header to another host: never follow one.
            .redirect(reqwest::redirect::Policy::none())
            .https_only(!base.is_plain_http())
            .user_agent(concat!("lipachat-api/", env!("CARGO_PKG_VERSION")));
        if base.is_plain_http() {
            // A proxy would carry the clear-text key off this machine.
            http = http.no_proxy();
        }
        let http = http.build().map_err(|e| BuildError::HttpClient {
            detail: describe(&e, &self.key),
        })?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                key: self.key,
                key_header,
                urls: EndpointUrls::new(&base)?,
                base,
                connect_timeout: self.connect_timeout,
                request_timeout: self.request_timeout,
                retry: self.retry,
                max_response_bytes: self.max_response_bytes,
                max_catalog_bytes: self.max_catalog_bytes,
                in_flight: tokio::sync::Semaphore::new(self.max_in_flight),
                max_in_flight: self.max_in_flight,
            }),
        })
    }
}

/// A client for the LipaChat gateway. Build it once and clone it freely: clones share one
/// connection pool.
///
/// Every send takes the [`Conversation`] (its `business` is the gateway's `from`, its
/// `customer` the `to`) and the [`MessageId`] of the logical send: retries reuse it, and a
/// caller retrying later should reuse it too, so the gateway deduplicates.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    key: ApiKey,
    key_header: HeaderValue,
    base: BaseUrl,
    urls: EndpointUrls,
    connect_timeout: Duration,
    request_timeout: Duration,
    retry: RetryPolicy,
    max_response_bytes: usize,
    max_catalog_bytes: usize,
    /// One permit per request allowed in flight.
    in_flight: tokio::sync::Semaphore,
    max_in_flight: usize,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base)
            .field("key", &self.inner.key)
            .field("connect_timeout", &self.inner.connect_timeout)
            .field("request_timeout", &self.inner.request_timeout)
            .field("retry", &self.inner.retry)
            .field("max_response_bytes", &self.inner.max_response_bytes)
            .field("max_in_flight", &self.inner.max_in_flight)
            .finish()
    }
}

/// What one HTTP attempt ended with.
struct Attempt<T> {
    result: Result<T, ApiError>,
    http_status: Option<u16>,
    retry_after: Option<Duration>,
}

/// The `Content-Type` of a JSON body (a static header value: nothing is allocated or
/// checked per request).
pub(crate) fn json_content_type() -> HeaderValue {
    HeaderValue::from_static("application/json")
}

/// One request the client makes: what it sends, and which failures its retries repeat.
pub(crate) struct Call {
    /// The HTTP method.
    pub(crate) method: reqwest::Method,
    /// The full URL.
    pub(crate) url: reqwest::Url,
    /// The body and its `Content-Type`, if any; every retry sends the same bytes.
    pub(crate) body: Option<(bytes::Bytes, HeaderValue)>,
    /// What it is, for logs (`send`, `template catalog fetch`, ...).
    pub(crate) what: &'static str,
    /// Which failures are retried. A send is retried on every transient failure (the
    /// gateway deduplicates its `messageId`); a call the gateway cannot deduplicate only
    /// on those that prove it was not processed.
    pub(crate) retry_when: fn(&ApiError) -> bool,
    /// No attempt starts at or after it.
    pub(crate) deadline: Option<Instant>,
    /// The most bytes of the answer read; a longer answer is cut off and unexpected.
    pub(crate) max_response_bytes: usize,
}

impl Client {
    /// A builder for a client using `key`.
    pub fn builder(key: ApiKey) -> ClientBuilder {
        ClientBuilder::new(key)
    }

    /// A client from `LIPACHAT_API_KEY` and `LIPACHAT_BASE_URL`, with default settings.
    pub fn from_env() -> Result<Self, BuildError> {
        ClientBuilder::from_env()?.build()
    }

    /// The normalised base URL.
    pub fn base_url(&self) -> &BaseUrl {
        &self.inner.base
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.inner.retry
    }

    /// The time allowed per attempt.
    pub fn request_timeout(&self) -> Duration {
        self.inner.request_timeout
    }

    /// The time allowed to open a connection.
    pub fn connect_timeout(&self) -> Duration {
        self.inner.connect_timeout
    }

    /// The most requests in flight to the gateway at once.
    pub fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight
    }

    /// The key, for redacting it from what an answer reader keeps.
    pub(crate) fn key(&self) -> &ApiKey {
        &self.inner.key
    }

    /// The most bytes of a catalog answer read.
    pub(crate) fn max_catalog_bytes(&self) -> usize {
        self.inner.max_catalog_bytes
    }

    /// `{base}/api/v1/template/{segments...}`, each segment percent-encoded as a path
    /// segment (a template id comes from the gateway and is not trusted to be one).
    pub(crate) fn template_url(&self, segments: &[&str]) -> Result<reqwest::Url, ApiError> {
        // The base was checked when the client was built, so this is not expected; it is
        // still an error, never a panic.
        let invalid = || {
            ApiError::Invalid(crate::ValidationError::InvalidField {
                field: "template endpoint URL".to_owned(),
                reason: "the template endpoints under this base are not valid URLs",
            })
        };
        let mut url = reqwest::Url::parse(&format!("{}/api/v1/template", self.inner.base))
            .map_err(|_| invalid())?;
        url.path_segments_mut()
            .map_err(|()| invalid())?
            .extend(segments);
        Ok(url)
    }

    /// Sends a contact card (`POST /api/v1/whatsapp/contact`).
    pub async fn send_contact(
        &self,
        conversation: Conversation,
        id: MessageId,
        message: &ContactMessage,
    ) -> Result<Receipt, ApiError> {
        self.send_json(
            Endpoint::Contact,
            id,
            contact_body(conversation, id, message)?,
            None,
        )
        .await
    }

    /// Sends a text message (`POST /api/v1/whatsapp/message/text`).
    pub async fn send_text(
        &self,
        conversation: Conversation,
        id: MessageId,
        message: &TextMessage,
    ) -> Result<Receipt, ApiError> {
        self.send_json(
            Endpoint::Text,
            id,
            text_body(conversation, id, message)?,
            None,
        )
        .await
    }

    /// Sends an approved template (`POST /api/v1/whatsapp/template`), the one kind allowed
    /// outside the 24-hour window.
    pub async fn send_template(
        &self,
        conversation: Conversation,
        id: MessageId,
        message: &TemplateMessage,
    ) -> Result<Receipt, ApiError> {
        self.send_json(
            Endpoint::Template,
            id,
            template_body(conversation, id, message)?,
            None,
        )
        .await
    }

    /// Sends a free-form message to its endpoint.
    pub async fn send_free_form(
        &self,
        conversation: Conversation,
        id: MessageId,
        message: &FreeFormMessage,
    ) -> Result<Receipt, ApiError> {
        self.send_json(
            message.endpoint(),
            id,
            free_form_body(conversation, id, message)?,
            None,
        )
        .await
    }

    /// Sends a free-form message, making no attempt after `deadline`: no attempt starts at
    /// or after it, no retry waits past it, and each attempt's timeout is cut to the time
    /// left. The send path passes the window's expiry less the safety margin, so retries
    /// never carry a message past the point where it was allowed.
    pub async fn send_free_form_before(
        &self,
        conversation: Conversation,
        id: MessageId,
        message: &FreeFormMessage,
        deadline: Instant,
    ) -> Result<Receipt, ApiError> {
        self.send_json(
            message.endpoint(),
            id,
            free_form_body(conversation, id, message)?,
            Some(deadline),
        )
        .await
    }

    /// Posts `body` to `endpoint`, retrying transient failures with the same body (so the
    /// same `messageId`).
    async fn send_json(
        &self,
        endpoint: Endpoint,
        id: MessageId,
        body: RequestBody,
        deadline: Option<Instant>,
    ) -> Result<Receipt, ApiError> {
        let span = info_span!("lipachat_send", message_id = %id, endpoint = endpoint.name());
        let call = Call {
            method: reqwest::Method::POST,
            url: self.inner.urls.get(endpoint).clone(),
            // Shared, so each retry re-sends the same bytes without copying them.
            body: Some((body.into_bytes(), json_content_type())),
            what: "send",
            retry_when: ApiError::is_transient,
            deadline,
            max_response_bytes: self.inner.max_response_bytes,
        };
        let key = &self.inner.key;
        let (accepted, attempts) = self
            .call(call, |raw| interpret(raw, key))
            .instrument(span.clone())
            .await?;
        let _entered = span.enter();
        info!(
            attempts,
            gateway_status = %accepted.status,
            "gateway accepted the message"
        );
        if let Some(echoed) = &accepted.echoed_id
            && echoed.parse::<MessageId>().ok() != Some(id)
        {
            warn!("the gateway echoed a different messageId than was sent");
        }
        Ok(Receipt {
            message_id: id,
            gateway_message_id: accepted.echoed_id,
            wa_id: accepted.wa_id,
            status: accepted.status,
            attempts,
        })
    }

    /// Makes `call`, retrying the failures `call.retry_when` accepts with the same bytes
    /// under the retry policy (and the deadline, if any); `read` turns an answer into the
    /// result or the error it means. Returns the result and how many attempts it took.
    ///
    /// The exchange is not boxed. Its future is about 1.3 KiB, and a heap block that size
    /// per send took glibc's large-allocation path (`malloc_consolidate`) on every send;
    /// the callers whose futures nest several exchanges (the closed-window choice, the
    /// template sends) box their own.
    pub(crate) async fn call<T>(
        &self,
        call: Call,
        read: impl Fn(&RawResponse<'_>) -> Result<T, ApiError>,
    ) -> Result<(T, u32), ApiError> {
        let policy = self.inner.retry;
        let what = call.what;
        let mut attempt: u32 = 0;
        // Attempts that made a request (one that found no free slot made none).
        let mut requests: u32 = 0;
        let mut last_error: Option<ApiError> = None;
        loop {
            attempt += 1;
            let started = Instant::now();
            let mut timeout = self.inner.request_timeout;
            if let Some(deadline) = call.deadline {
                let left = deadline.saturating_duration_since(started);
                if left.is_zero() {
                    info!(attempt, "the {what}'s deadline passed; no further attempt");
                    return Err(ApiError::DeadlineReached {
                        attempts: requests,
                        last: last_error.map(Box::new),
                    });
                }
                timeout = timeout.min(left);
            }
            debug!(attempt, "sending to the gateway");
            let outcome = self.attempt(&call, timeout, &read).await;
            // Read in the log events only: a macro evaluates its fields only when its
            // event is enabled, and a clock read per send is not free.
            let elapsed_ms = || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            if !matches!(outcome.result, Err(ApiError::Busy { .. })) {
                requests += 1;
            }
            match outcome.result {
                Ok(value) => {
                    debug!(
                        attempt,
                        http_status = outcome.http_status,
                        elapsed_ms = elapsed_ms(),
                        "the gateway answered"
                    );
                    return Ok((value, attempt));
                }
                Err(error) if (call.retry_when)(&error) && attempt <= policy.max_retries => {
                    let error = reported(error, last_error.take());
                    let delay = policy.delay(attempt - 1, outcome.retry_after);
                    if let Some(deadline) = call.deadline
                        && Instant::now() + delay >= deadline
                    {
                        info!(attempt, %error, "attempt failed and the {what}'s deadline comes before a retry");
                        return Err(ApiError::DeadlineReached {
                            attempts: requests,
                            last: Some(Box::new(error)),
                        });
                    }
                    warn!(
                        attempt,
                        http_status = outcome.http_status,
                        elapsed_ms = elapsed_ms(),
                        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        %error,
                        "attempt failed; retrying with the same body"
                    );
                    tokio::time::sleep(delay).await;
                    last_error = Some(error);
                }
                Err(error) => {
                    let error = reported(error, last_error.take());
                    info!(
                        attempt,
                        http_status = outcome.http_status,
                        elapsed_ms = elapsed_ms(),
                        %error,
                        "{what} failed"
                    );
                    return Err(if attempt > 1 && error.is_transient() {
                        ApiError::RetriesExhausted {
                            attempts: requests,
                            last: Box::new(error),
                        }
                    } else {
                        error
                    });
                }
            }
        }
    }

    /// One HTTP request, bounded by the request timeout from start to the end of the body,
    /// the wait for a free request slot included (so a deadline is never passed waiting).
    async fn attempt<T>(
        &self,
        call: &Call,
        timeout: Duration,
        read: &impl Fn(&RawResponse<'_>) -> Result<T, ApiError>,
    ) -> Attempt<T> {
        let inner = &self.inner;
        let mut http_status = None;
        let mut retry_after = None;
        let mut slot_taken = false;
        let exchange = async {
            // The semaphore is never closed; were it, the request would go unlimited
            // rather than fail.
            let _slot = inner.in_flight.acquire().await;
            slot_taken = true;
            let mut request = inner
                .http
                .request(call.method.clone(), call.url.clone())
                .header("apiKey", inner.key_header.clone())
                .header(ACCEPT, HeaderValue::from_static("application/json"));
            if let Some((body, content_type)) = &call.body {
                request = request
                    .header(CONTENT_TYPE, content_type.clone())
                    .body(body.clone());
            }
            let mut response = request.send().await.map_err(|e| self.transport_error(&e))?;
            http_status = Some(response.status().as_u16());
            retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, Utc::now()));
            let (bytes, truncated) = read_limited(&mut response, call.max_response_bytes)
                .await
                .map_err(|e| self.transport_error(&e))?;
            Ok::<_, ApiError>((response.status().as_u16(), bytes, truncated))
        };
        let timed = tokio::time::timeout(timeout, exchange).await;
        let result = match timed {
            Err(_elapsed) if !slot_taken => Err(ApiError::Busy {
                limit: inner.max_in_flight,
                waited: timeout,
            }),
            Err(_elapsed) => Err(ApiError::Timeout { after: timeout }),
            Ok(Err(error)) => Err(error),
            Ok(Ok((status, bytes, truncated))) => read(&RawResponse {
                status,
                body: &bytes,
                truncated,
                retry_after,
            }),
        };
        Attempt {
            result,
            http_status,
            retry_after,
        }
    }

    /// Maps a reqwest error to one of ours, without its URL and with the key redacted.
    fn transport_error(&self, error: &reqwest::Error) -> ApiError {
        let detail = describe(error, &self.inner.key);
        if error.is_connect() {
            ApiError::Connect { detail }
        } else if error.is_timeout() {
            ApiError::Timeout {
                after: self.inner.request_timeout,
            }
        } else {
            ApiError::Transport { detail }
        }
    }
}

/// The error a send reports for an attempt: one that found no free slot (and so made no
/// request) after an attempt that made one reports that earlier request's error, since
/// that request may have reached the gateway and [`ApiError::Busy`] says nothing was sent.
fn reported(error: ApiError, earlier: Option<ApiError>) -> ApiError {
    match (error, earlier) {
        (ApiError::Busy { .. }, Some(earlier)) if !matches!(earlier, ApiError::Busy { .. }) => {
            earlier
        }
        (error, _) => error,
    }
}

/// An error and its causes on one line, without the URL, with the key redacted.
fn describe(error: &reqwest::Error, key: &ApiKey) -> String {
    let mut parts = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = cause.source();
    }
    if parts.is_empty() {
        parts.push(if error.is_connect() {
            "connection failed".to_owned()
        } else if error.is_body() || error.is_decode() {
            "reading the response failed".to_owned()
        } else {
            "request failed".to_owned()
        });
    }
    key.redact(&parts.join(": "))
}

/// The most a response buffer reserves before bytes arrive (the common answer is far
/// smaller; a longer one grows as it is read).
const PREALLOCATE_AT_MOST: usize = 16 * 1024;

/// Reads at most `limit` bytes of the body; the flag tells whether more was left unread.
async fn read_limited(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let expected = response
        .content_length()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0);
    // Sized from Content-Length for the common small answer, but never trusting it for
    // more than a small buffer: a hostile header must not allocate memory up front.
    let mut body = Vec::with_capacity(expected.min(limit).min(PREALLOCATE_AT_MOST));
    while let Some(chunk) = response.chunk().await? {
        let room = limit.saturating_sub(body.len());
        if chunk.len() > room {
            body.extend_from_slice(chunk.get(..room).unwrap_or_default());
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ApiKey {
        ApiKey::new("TOPSECRET").unwrap()
    }

    #[test]
    fn builder_defaults_and_checks() {
        let client = Client::builder(key()).build().unwrap();
        assert_eq!(client.base_url().as_str(), "https://gateway.lipachat.com");
        assert_eq!(client.request_timeout(), Duration::from_secs(15));
        assert_eq!(client.connect_timeout(), Duration::from_secs(5));
        assert_eq!(client.retry_policy(), RetryPolicy::default());
        let tuned = Client::builder(key())
            .connect_timeout(Duration::from_millis(750))
            .request_timeout(Duration::from_secs(3))
            .build()
            .unwrap();
        assert_eq!(tuned.connect_timeout(), Duration::from_millis(750));
        assert_eq!(tuned.request_timeout(), Duration::from_secs(3));
        let debug = format!("{client:?}");
        assert!(
            debug.contains("ApiKey(***)") && !debug.contains("TOPSECRET"),
            "{debug}"
        );
        assert!(matches!(
            Client::builder(key())
                .base_url("http://example.com")
                .build(),
            Err(BuildError::InsecureBaseUrl { .. })
        ));
    }

    #[test]
    fn from_env_reads_both_variables() {
        let builder = ClientBuilder::from_env_with(|name| match name {
            API_KEY_VAR => Some("TOPSECRET\n".into()),
            BASE_URL_VAR => Some("http://127.0.0.1:9/api/v1/".into()),
            _ => None,
        })
        .unwrap();
        let client = builder.build().unwrap();
        assert_eq!(client.base_url().as_str(), "http://127.0.0.1:9");
        let defaulted = ClientBuilder::from_env_with(|name| {
            (name == API_KEY_VAR).then(|| "TOPSECRET".to_owned())
        })
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(
            defaulted.base_url().as_str(),
            "https://gateway.lipachat.com"
        );
        assert!(matches!(
            ClientBuilder::from_env_with(|_| None),
            Err(BuildError::MissingApiKey)
        ));
        assert!(matches!(
            ClientBuilder::from_env_with(|_| Some(" ".into())),
            Err(BuildError::MissingApiKey)
        ));
        assert!(matches!(
            ClientBuilder::from_env_with(|_| Some("two words".into())),
            Err(BuildError::Invalid(_))
        ));
    }
}
