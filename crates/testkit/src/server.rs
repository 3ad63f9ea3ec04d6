//! The HTTP side: one handler that answers every request the way the gateway does, in the
//! gateway's order (faults, key, size, content type, JSON, validation, duplicate, window).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use lipachat_session::{Clock, PhoneNumber};
use serde_json::Value;

use crate::catalog::TemplateBook;
use crate::fault::{FaultPlan, InjectedFailure};
use crate::ledger::{Ledger, Prepared, Verdict};
use crate::record::{ApiKeyCheck, ReceivedRequest, RequestBody, RequestOutcome};
use crate::wire::{self, MarketingAnswer, MessageKind, Violation};

/// The largest request body the stand-in reads: 1 MiB. Longer bodies get HTTP 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The largest upload the stand-in reads at `POST /api/v1/template/upload/file`: 16 MiB
/// (WhatsApp's limit for a video; a larger document gets HTTP 413 here).
pub const MAX_UPLOAD_BYTES: usize = 16 * 1024 * 1024;

/// The prefix of the template endpoints' paths.
const TEMPLATE_PREFIX: &str = "/api/v1/template/";

/// The header that carries the key (header names are case-insensitive).
pub const API_KEY_HEADER: &str = "apiKey";

/// Everything the handler and the public handle share.
pub(crate) struct Shared {
    pub(crate) api_key: String,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) record_bodies: bool,
    pub(crate) wamids: WamidSource,
    pub(crate) faults: Mutex<FaultPlan>,
    pub(crate) ledger: Mutex<Ledger>,
    pub(crate) journal: Mutex<Vec<ReceivedRequest>>,
    /// Customers whose templates are answered with a marketing error (131049 or
    /// 131050), by customer.
    pub(crate) marketing_refusals: Mutex<std::collections::HashMap<PhoneNumber, MarketingAnswer>>,
    pub(crate) templates: Mutex<TemplateBook>,
    pub(crate) template_faults: Mutex<FaultPlan>,
    pub(crate) template_journal: Mutex<Vec<ReceivedRequest>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("api_key", &"<redacted>")
            .field("clock", &self.clock)
            .field("record_bodies", &self.record_bodies)
            .finish_non_exhaustive()
    }
}

/// Locks `mutex`, going on after a panic elsewhere (the data stay consistent: every
/// critical section is a few pushes and inserts).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Mints unique `wamid.` ids: a random prefix per gateway and a counter.
#[derive(Debug)]
pub(crate) struct WamidSource {
    prefix: String,
    next: AtomicU64,
}

impl WamidSource {
    pub(crate) fn new() -> Self {
        let random = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
        Self {
            prefix: format!("wamid.HBgM{}", &random[..16]),
            next: AtomicU64::new(1),
        }
    }

    fn mint(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}{n:012X}", self.prefix)
    }
}

/// The stand-in's router: every path goes to one handler, so every request is recorded.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(serve).with_state(shared)
}

/// An answer about to be sent.
struct Answer {
    status: StatusCode,
    body: Bytes,
    retry_after: Option<u64>,
    outcome: RequestOutcome,
}

impl Answer {
    fn new(status: StatusCode, body: impl Into<Bytes>, outcome: RequestOutcome) -> Self {
        Self {
            status,
            body: body.into(),
            retry_after: None,
            outcome,
        }
    }

    fn error_page(
        at: DateTime<Utc>,
        status: StatusCode,
        path: &str,
        outcome: RequestOutcome,
    ) -> Self {
        let reason = status.canonical_reason().unwrap_or("Error");
        Self::new(
            status,
            wire::error_page_body(at, status.as_u16(), reason, path),
            outcome,
        )
    }

    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            Body::from(self.body),
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

async fn serve(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let at = shared.clock.now();
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let api_key = match parts.headers.get(API_KEY_HEADER) {
        None => ApiKeyCheck::Missing,
        Some(value) if value.as_bytes() == shared.api_key.as_bytes() => ApiKeyCheck::Valid,
        Some(_) => ApiKeyCheck::Wrong,
    };
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    if let Some(rest) = path.strip_prefix(TEMPLATE_PREFIX) {
        let segments: Vec<String> = rest.split('/').map(str::to_owned).collect();
        return serve_template(
            &shared,
            parts,
            body,
            &path,
            &segments,
            api_key,
            content_type,
            at,
        )
        .await;
    }
    let kind = MessageKind::from_path(&path);

    let mut stall = None;
    let (answer, recorded_body) = match kind {
        None => (
            Answer::error_page(at, StatusCode::NOT_FOUND, &path, RequestOutcome::NotFound),
            RequestBody::NotKept,
        ),
        Some(_) if parts.method != Method::POST => (
            Answer::error_page(
                at,
                StatusCode::METHOD_NOT_ALLOWED,
                &path,
                RequestOutcome::MethodNotAllowed,
            ),
            RequestBody::NotKept,
        ),
        Some(kind) => {
            let faults = lock(&shared.faults).take();
            stall = faults.stall;
            // A read error is almost always the size limit; a client that broke off
            // mid-body never sees the answer anyway.
            let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES).await.ok();
            let incoming = Incoming {
                kind,
                path: &path,
                api_key,
                content_type: content_type.as_deref(),
                failure: faults.failure,
                at,
            };
            shared.answer_send(incoming, bytes)
        }
    };

    tracing::debug!(
        method = %parts.method,
        path,
        status = answer.status.as_u16(),
        outcome = ?answer.outcome,
        "stand-in gateway answered"
    );
    let record = ReceivedRequest {
        method: parts.method.to_string(),
        path,
        kind,
        api_key,
        content_type,
        body: if shared.record_bodies {
            recorded_body
        } else {
            RequestBody::NotKept
        },
        status: answer.status.as_u16(),
        outcome: answer.outcome,
        at,
    };
    lock(&shared.journal).push(record);
    if let Some(delay) = stall {
        tokio::time::sleep(delay).await;
    }
    answer.into_response()
}

/// The facts about a request to a send endpoint that decide its answer.
struct Incoming<'a> {
    kind: MessageKind,
    path: &'a str,
    api_key: ApiKeyCheck,
    content_type: Option<&'a str>,
    failure: Option<InjectedFailure>,
    at: DateTime<Utc>,
}

impl Shared {
    /// Answers a `POST` to a send endpoint whose body was read (`None`: too large).
    fn answer_send(&self, incoming: Incoming<'_>, bytes: Option<Bytes>) -> (Answer, RequestBody) {
        let at = incoming.at;
        let Some(bytes) = bytes else {
            let answer = Answer::error_page(
                at,
                StatusCode::PAYLOAD_TOO_LARGE,
                incoming.path,
                RequestOutcome::PayloadTooLarge,
            );
            // Even a too-large request answers to injected failures and the key first.
            return (
                self.pre_checks(&incoming).unwrap_or(answer),
                RequestBody::TooLarge,
            );
        };
        let parsed = if bytes.is_empty() {
            None
        } else {
            serde_json::from_slice::<Value>(&bytes).ok()
        };
        let recorded = match (&parsed, bytes.is_empty()) {
            (_, true) => RequestBody::Empty,
            (Some(value), false) if self.record_bodies => RequestBody::Json(value.clone()),
            (Some(_), false) => RequestBody::NotKept,
            (None, false) => RequestBody::Text(String::from_utf8_lossy(&bytes).into_owned()),
        };
        if let Some(answer) = self.pre_checks(&incoming) {
            return (answer, recorded);
        }
        let bad_request = |violation: Violation| {
            Answer::error_page(
                at,
                StatusCode::BAD_REQUEST,
                incoming.path,
                RequestOutcome::BadRequest(violation),
            )
        };
        if !wire::is_json_content_type(incoming.content_type) {
            return (bad_request(Violation::ContentType), recorded);
        }
        let Some(body) = parsed else {
            return (bad_request(Violation::NotJson), recorded);
        };
        let send = match wire::validate(incoming.kind, &body) {
            Ok(send) => send,
            Err(violation) => return (bad_request(violation), recorded),
        };
        if incoming.kind == MessageKind::Template
            && let Some(answer) = lock(&self.marketing_refusals).get(&send.customer).copied()
        {
            return (
                Answer::new(
                    StatusCode::OK,
                    wire::marketing_refusal_body(at, answer),
                    RequestOutcome::RefusedMarketing,
                ),
                recorded,
            );
        }
        if incoming.kind == MessageKind::Template
            && let Some(rejection) = lock(&self.templates).check_send(send.business, &body)
        {
            return (
                Answer::new(
                    StatusCode::OK,
                    wire::template_rejected_body(at, rejection.code, rejection.message),
                    RequestOutcome::TemplateRejected(rejection.code),
                ),
                recorded,
            );
        }
        let wa_id = self.wamids.mint();
        let success = Bytes::from(wire::success_body(at, &send.message_id, &wa_id));
        let prepared = Prepared {
            send,
            wa_id,
            success,
            body: if self.record_bodies {
                body
            } else {
                Value::Null
            },
            at,
        };
        let verdict = lock(&self.ledger).submit(prepared);
        let answer = match verdict {
            Verdict::Delivered(body) => {
                Answer::new(StatusCode::OK, body, RequestOutcome::Delivered)
            }
            Verdict::Duplicate(body) => {
                Answer::new(StatusCode::OK, body, RequestOutcome::Duplicate)
            }
            Verdict::FailedLater(body) => {
                Answer::new(StatusCode::OK, body, RequestOutcome::FailedOutsideWindow)
            }
            Verdict::Refused => Answer::new(
                StatusCode::OK,
                wire::re_engagement_body(at),
                RequestOutcome::RefusedOutsideWindow,
            ),
        };
        (answer, recorded)
    }

    /// The answers that come before the body is looked at: an injected failure, then the
    /// 401 quirk.
    fn pre_checks(&self, incoming: &Incoming<'_>) -> Option<Answer> {
        if let Some(failure) = incoming.failure {
            let status = StatusCode::from_u16(failure.status_code())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut answer = Answer::new(
                status,
                wire::request_failed_body(incoming.at),
                RequestOutcome::InjectedFailure,
            );
            answer.retry_after = failure.retry_after_secs();
            return Some(answer);
        }
        if incoming.api_key != ApiKeyCheck::Valid {
            return Some(Answer::new(
                StatusCode::UNAUTHORIZED,
                wire::invalid_credentials_body(incoming.at),
                RequestOutcome::InvalidCredentials,
            ));
        }
        None
    }
}

/// Answers a request to a template endpoint, in the gateway's order: injected failure,
/// key, size, then the endpoint itself ([`TemplateBook::answer`]). Recorded in the
/// template journal, not with the sends.
#[allow(clippy::too_many_arguments)]
async fn serve_template(
    shared: &Shared,
    parts: axum::http::request::Parts,
    body: Body,
    path: &str,
    segments: &[String],
    api_key: ApiKeyCheck,
    content_type: Option<String>,
    at: DateTime<Utc>,
) -> Response {
    let faults = lock(&shared.template_faults).take();
    let bytes = axum::body::to_bytes(body, MAX_UPLOAD_BYTES).await.ok();
    let incoming = Incoming {
        kind: MessageKind::Template,
        path,
        api_key,
        content_type: content_type.as_deref(),
        failure: faults.failure,
        at,
    };
    let recorded = match &bytes {
        None => RequestBody::TooLarge,
        Some(bytes) if bytes.is_empty() => RequestBody::Empty,
        Some(bytes) => match serde_json::from_slice::<Value>(bytes) {
            Ok(value) if shared.record_bodies => RequestBody::Json(value),
            Ok(_) => RequestBody::NotKept,
            Err(_) => RequestBody::Text(String::from_utf8_lossy(bytes).into_owned()),
        },
    };
    let answer = match (shared.pre_checks(&incoming), &bytes) {
        (Some(answer), _) => answer,
        (None, None) => Answer::error_page(
            at,
            StatusCode::PAYLOAD_TOO_LARGE,
            path,
            RequestOutcome::PayloadTooLarge,
        ),
        (None, Some(bytes)) => {
            let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
            let answered = lock(&shared.templates).answer(
                &parts.method,
                &segments,
                content_type.as_deref(),
                bytes,
                path,
                at,
            );
            Answer::new(answered.status, answered.body, answered.outcome)
        }
    };
    tracing::debug!(method = %parts.method, path, status = answer.status.as_u16(), outcome = ?answer.outcome, "stand-in gateway answered a template call");
    lock(&shared.template_journal).push(ReceivedRequest {
        method: parts.method.to_string(),
        path: path.to_owned(),
        kind: None,
        api_key,
        content_type,
        body: recorded,
        status: answer.status.as_u16(),
        outcome: answer.outcome,
        at,
    });
    if let Some(delay) = faults.stall {
        tokio::time::sleep(delay).await;
    }
    answer.into_response()
}
