//! The read-only admin routes, behind their own token (`Authorization: Bearer TOKEN`):
//! a window as `session-check --json status` prints it, a list of windows, the queued
//! messages. `session-check --remote URL` reads them.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::TimeDelta;
use lipachat_policy::consent::ConsentView;
use lipachat_session::view::{
    CLOSED_CAUSE_HEADER, ListedWindowView, PendingList, QueuedView, WindowList, WindowView,
    closed_cause_name, customer_name,
};
use lipachat_session::{
    Bsuid, Conversation, GroupId, PhoneNumber, SessionError, Sessions, Store, StoreError,
    WindowState,
};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::service::{Shared, plain};

/// The admin routes over `shared`, each behind the admin token.
pub(crate) fn routes<S: Store>(shared: Arc<Shared<S>>) -> Router<Arc<Shared<S>>> {
    Router::new()
        .route("/admin/windows", get(list::<S>))
        .route("/admin/windows/{business}/{customer}", get(status::<S>))
        .route("/admin/pending", get(pending_all::<S>))
        .route(
            "/admin/pending/{business}/{customer}",
            get(pending_one::<S>),
        )
        .route_layer(middleware::from_fn_with_state(shared, require_admin::<S>))
}

/// Refuses a request without the admin token (401), in constant time.
async fn require_admin<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
    let verified = match (&shared.admin_token, presented) {
        (Some(token), Some(presented)) => token.verify(presented.trim_ascii()),
        _ => false,
    };
    if !verified {
        shared.metrics.auth_failure("admin_token");
        warn!("admin request refused: missing or wrong bearer token");
        let mut response = plain(
            StatusCode::UNAUTHORIZED,
            "the admin routes need Authorization: Bearer <admin token>",
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    next.run(request).await
}

/// Who a route's CUSTOMER names, as `session-check` reads it.
enum CustomerName {
    Phone(PhoneNumber),
    User(Bsuid),
    Group(GroupId),
}

impl CustomerName {
    /// `group:ID` a group, a business-scoped user id a user, else a phone number.
    fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(group) = text.strip_prefix("group:") {
            return GroupId::parse(group)
                .map(Self::Group)
                .map_err(|e| format!("customer: {e}"));
        }
        if let Ok(user) = Bsuid::parse(text) {
            return Ok(Self::User(user));
        }
        PhoneNumber::parse(text).map(Self::Phone).map_err(|e| {
            format!("customer: {e} (a customer may also be a business-scoped user id, or group:ID)")
        })
    }

    /// The name output uses for a customer not known here.
    fn name(&self) -> String {
        match self {
            Self::Phone(phone) => phone.to_string(),
            Self::User(user) => user.to_string(),
            Self::Group(group) => format!("group:{group}"),
        }
    }

    /// The conversation it names, looking up only (a user or group never met names
    /// none).
    async fn find<S: Store>(
        &self,
        sessions: &Sessions<S>,
        business: PhoneNumber,
    ) -> Result<Option<Conversation>, SessionError> {
        match self {
            Self::Phone(phone) => Ok(Some(Conversation::new(business, *phone))),
            Self::User(user) => {
                sessions
                    .find_conversation(business, None, Some(user), None)
                    .await
            }
            Self::Group(group) => {
                sessions
                    .find_conversation(business, None, None, Some(group))
                    .await
            }
        }
    }
}

/// A 400 naming what was wrong with a route's argument.
fn bad_request(reason: String) -> Response {
    plain(StatusCode::BAD_REQUEST, reason)
}

/// A 503 for a store that failed.
fn store_failed(error: &dyn std::fmt::Display) -> Response {
    warn!(%error, "admin route: the store failed");
    plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "the store failed; retry later",
    )
}

/// BUSINESS and CUSTOMER from the path; a 400 saying what was wrong when they are not a
/// phone number and a customer.
struct PathPair {
    business: PhoneNumber,
    customer: CustomerName,
}

impl<St: Send + Sync> FromRequestParts<St> for PathPair {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Response> {
        let Path((business, customer)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let business = PhoneNumber::parse(business.trim())
            .map_err(|e| bad_request(format!("business: {e}")))?;
        let customer = CustomerName::parse(&customer).map_err(bad_request)?;
        Ok(Self { business, customer })
    }
}

/// What `GET /admin/windows/{business}/{customer}` answers: the window object with the
/// customer's marketing consent and free entry point window.
#[derive(Debug, Serialize)]
struct StatusObject {
    #[serde(flatten)]
    window: WindowView,
    #[serde(flatten)]
    consent: ConsentView,
}

/// `GET /admin/windows/{business}/{customer}`: the window as `session-check --json status`
/// prints it (the very object, with the consent fields), and why it is closed in the
/// `lipachat-closed-cause` header.
async fn status<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    PathPair { business, customer }: PathPair,
) -> Response {
    let sessions = shared.messenger.sessions();
    let looked_up = async {
        let found = customer.find(sessions, business).await?;
        let consent = ConsentView::of(sessions.store(), found, sessions.now()).await?;
        Ok::<_, SessionError>(match found {
            Some(conversation) => (
                sessions.state(conversation).await?,
                customer_name(sessions.store(), conversation.customer).await?,
                consent,
            ),
            None => (WindowState::Never, customer.name(), consent),
        })
    };
    let (state, name, consent) = match looked_up.await {
        Ok(found) => found,
        Err(error) => return store_failed(&error),
    };
    let mut response = Json(StatusObject {
        window: WindowView::new(business, name, &state),
        consent,
    })
    .into_response();
    if let Some(cause) = WindowView::closed_cause(&state) {
        response.headers_mut().insert(
            CLOSED_CAUSE_HEADER,
            HeaderValue::from_static(closed_cause_name(cause)),
        );
    }
    response
}

/// `GET /admin/windows`'s query.
#[derive(Debug, Deserialize)]
struct ListQuery {
    /// `open` or `closed`.
    state: Option<String>,
    /// Whole seconds: keep the open windows closing within them.
    closing_within: Option<i64>,
}

/// `GET /admin/windows?state=open|closed&closing_within=SECS`: every window, as
/// `session-check list` lists them.
async fn list<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => return bad_request(rejection.body_text()),
    };
    let keep_open = match query.state.as_deref() {
        None => None,
        Some("open") => Some(true),
        Some("closed") => Some(false),
        Some(other) => {
            return bad_request(format!("state: {other:?} is neither open nor closed"));
        }
    };
    if query.closing_within.is_some() && keep_open == Some(false) {
        return bad_request(
            "closing_within keeps open windows only; it cannot be combined with state=closed"
                .into(),
        );
    }
    // A span `TimeDelta` cannot hold (beyond about 292 million years) is a bad request,
    // not a panic.
    let closing_within = match query.closing_within.map(TimeDelta::try_seconds) {
        None => None,
        Some(Some(span)) => Some(span),
        Some(None) => {
            return bad_request(format!(
                "closing_within: {} seconds is out of range",
                query.closing_within.unwrap_or_default()
            ));
        }
    };
    match list_windows(shared.messenger.sessions(), keep_open, closing_within).await {
        Ok(list) => Json(list).into_response(),
        Err(error) => store_failed(&error),
    }
}

async fn list_windows<S: Store>(
    sessions: &Sessions<S>,
    keep_open: Option<bool>,
    closing_within: Option<TimeDelta>,
) -> Result<WindowList, SessionError> {
    let now = sessions.now();
    let mut unreadable = Vec::new();
    let found: Vec<(Conversation, WindowState)> = match closing_within {
        Some(span) => sessions.closing_within_at(span, now).await?,
        None => {
            let mut found = Vec::new();
            for (conversation, record) in sessions.store().windows().await? {
                match record {
                    Ok(record) => {
                        found.push((conversation, sessions.rule().state(Some(&record), now)));
                    }
                    Err(error) => unreadable.push(error.to_string()),
                }
            }
            found
        }
    };
    let mut windows = Vec::new();
    for (conversation, state) in found {
        let keep = match keep_open {
            None => true,
            Some(true) => state.is_open(),
            Some(false) => matches!(state, WindowState::Closed { .. }),
        };
        if keep {
            let name = customer_name(sessions.store(), conversation.customer).await?;
            windows.push(ListedWindowView::new(conversation.business, name, &state));
        }
    }
    Ok(WindowList {
        windows,
        unreadable,
    })
}

/// `GET /admin/pending`: every conversation's queued messages.
async fn pending_all<S: Store>(State(shared): State<Arc<Shared<S>>>) -> Response {
    let sessions = shared.messenger.sessions();
    let conversations = match sessions.store().conversations_with_queued().await {
        Ok(conversations) => conversations,
        Err(error) => return store_failed(&error),
    };
    pending_of(sessions, conversations).await
}

/// `GET /admin/pending/{business}/{customer}`: one conversation's queued messages.
async fn pending_one<S: Store>(
    State(shared): State<Arc<Shared<S>>>,
    PathPair { business, customer }: PathPair,
) -> Response {
    let sessions = shared.messenger.sessions();
    match customer.find(sessions, business).await {
        Ok(found) => pending_of(sessions, found.into_iter().collect()).await,
        Err(error) => store_failed(&error),
    }
}

async fn pending_of<S: Store>(
    sessions: &Sessions<S>,
    conversations: Vec<Conversation>,
) -> Response {
    let now = sessions.now();
    let store = sessions.store();
    let mut messages = Vec::new();
    for conversation in conversations {
        let read = async {
            let name = customer_name(store, conversation.customer).await?;
            let queued = store.queued(conversation).await?;
            Ok::<_, StoreError>((name, queued))
        };
        let (name, queued) = match read.await {
            Ok(read) => read,
            Err(error) => return store_failed(&error),
        };
        for message in &queued {
            messages.push(QueuedView::new(
                conversation.business,
                name.clone(),
                message,
                lipachat_policy::queued_content(message),
                now,
            ));
        }
    }
    Json(PendingList { messages }).into_response()
}
