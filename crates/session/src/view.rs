//! The JSON shapes tools show a conversation's window and its queued messages in, kept in
//! one place so every tool answers the same objects: `session-check --json status` prints
//! a [`WindowView`], and a running bot's admin route (`GET /admin/windows/{business}/{customer}`,
//! `lipachat-webhook`) answers the very same object; `pending` and `/admin/pending` share
//! [`QueuedView`].

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    ClosedCause, Customer, IdentityStore, MessageId, PhoneNumber, QueuedMessage, StoreError,
    WindowState,
};

/// The HTTP header in which a running bot's admin route names why a window is closed
/// (`expired` or `gateway`), beside a [`WindowView`] body that, by contract, does not.
pub const CLOSED_CAUSE_HEADER: &str = "lipachat-closed-cause";

/// One conversation's window.
///
/// JSON, exactly these fields: `{"business", "customer", "state": "open"|"closed"|"none",
/// "last_inbound", "expires_at", "remaining_secs"}`. `expires_at` is when the window closes
/// (open) or closed (closed: the expiry, or the gateway's closure if that came first);
/// `remaining_secs` is whole seconds left, null unless open. Times are RFC 3339 UTC
/// ([`view_time`]). Why a window is closed is not a field (scripts that compare the object
/// see these fields and no others): [`WindowView::closed_cause`] tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowView {
    /// The business number.
    pub business: String,
    /// The customer, as tools name one: a phone's canonical digits, a user's
    /// business-scoped user id, `group:ID` for a group.
    pub customer: String,
    /// `open`, `closed` or `none`.
    pub state: String,
    /// The latest inbound message.
    pub last_inbound: Option<String>,
    /// When the window closes or closed.
    pub expires_at: Option<String>,
    /// Whole seconds left, when open.
    pub remaining_secs: Option<i64>,
}

impl WindowView {
    /// The view of `state` for the conversation of `business` with `customer` (named as
    /// tools name customers).
    pub fn new(business: PhoneNumber, customer: String, state: &WindowState) -> Self {
        let (expires_at, remaining_secs) = match state {
            WindowState::Open {
                expires_at,
                remaining,
                ..
            } => (Some(*expires_at), Some(remaining.num_seconds())),
            WindowState::Closed { closed_since, .. } => (Some(*closed_since), None),
            _ => (None, None),
        };
        Self {
            business: business.to_string(),
            customer,
            state: state.name().to_owned(),
            last_inbound: state.last_inbound().map(view_time),
            expires_at: expires_at.map(view_time),
            remaining_secs,
        }
    }

    /// Why `state` is closed; `None` when it is not closed.
    pub fn closed_cause(state: &WindowState) -> Option<ClosedCause> {
        match state {
            WindowState::Closed { cause, .. } => Some(*cause),
            _ => None,
        }
    }
}

/// A window in a list, with why it is closed (the list answers both, so a client can show
/// the cause; a [`WindowView`] alone leaves it out by contract).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedWindowView {
    /// The window.
    pub window: WindowView,
    /// Why it is closed; null unless closed.
    pub closed_cause: Option<ClosedCause>,
}

impl ListedWindowView {
    /// The listed view of `state` for the conversation of `business` with `customer`.
    pub fn new(business: PhoneNumber, customer: String, state: &WindowState) -> Self {
        Self {
            window: WindowView::new(business, customer, state),
            closed_cause: WindowView::closed_cause(state),
        }
    }
}

/// What a running bot's `GET /admin/windows` answers: the windows listed, and the stored
/// records that could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowList {
    /// The windows, in the store's order (soonest closing first when asked for those
    /// closing within a span).
    pub windows: Vec<ListedWindowView>,
    /// Stored records that could not be read, each with why.
    pub unreadable: Vec<String>,
}

/// What a running bot's `GET /admin/pending` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingList {
    /// The queued messages, conversation by conversation, oldest first in each.
    pub messages: Vec<QueuedView>,
}

/// The name of a closure's cause in the [`CLOSED_CAUSE_HEADER`]: `expired` or `gateway`.
pub fn closed_cause_name(cause: ClosedCause) -> &'static str {
    match cause {
        ClosedCause::Gateway => "gateway",
        _ => "expired",
    }
}

/// Reads a [`closed_cause_name`]; `None` for anything else.
pub fn parse_closed_cause(name: &str) -> Option<ClosedCause> {
    match name.trim() {
        "gateway" => Some(ClosedCause::Gateway),
        "expired" => Some(ClosedCause::Expired),
        _ => None,
    }
}

/// One queued message: `{"business", "customer", "message_id", "kind", "message",
/// "queued_at", "age_secs"}`, `age_secs` whole seconds since it was queued (negative when
/// examined at a time before). `kind` (`contact`, `text`, ...) and `message` (its content)
/// say what it is, both null when its stored form cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedView {
    /// The business number.
    pub business: String,
    /// The customer, named as in [`WindowView::customer`].
    pub customer: String,
    /// The `messageId` its delivery will use.
    pub message_id: MessageId,
    /// What kind of message it is (`contact`, `text`, ...), when its stored form can be read.
    #[serde(default)]
    pub kind: Option<String>,
    /// Its content (a card's `formatted_name` and `phones`, a text's `body`, ...), when its
    /// stored form can be read.
    #[serde(default)]
    pub message: Option<serde_json::Value>,
    /// When it was queued.
    pub queued_at: String,
    /// Whole seconds since it was queued, at the time examined.
    pub age_secs: i64,
}

impl QueuedView {
    /// The view of `message`, queued for `customer` of `business`, examined at `now`;
    /// `content` is its kind and content as read by the layer that wrote it (`None` when
    /// its stored form cannot be read).
    pub fn new(
        business: PhoneNumber,
        customer: String,
        message: &QueuedMessage,
        content: Option<(&str, serde_json::Value)>,
        now: DateTime<Utc>,
    ) -> Self {
        let (kind, content) = content
            .map(|(kind, value)| (kind.to_owned(), value))
            .unzip();
        Self {
            business: business.to_string(),
            customer,
            message_id: message.message_id,
            kind,
            message: content,
            queued_at: view_time(message.queued_at),
            age_secs: (now - message.queued_at).num_seconds(),
        }
    }
}

/// How tools name a conversation's customer: a phone's canonical digits, a user's
/// business-scoped user id, `group:ID` for a group, never a store's handle. A handle the
/// registry does not name shows as `user#N` / `group#N`.
pub async fn customer_name<S: IdentityStore>(
    store: &S,
    customer: Customer,
) -> Result<String, StoreError> {
    Ok(match customer {
        Customer::Phone(phone) => phone.to_string(),
        Customer::User(user) => match store.user_id(user).await? {
            Some(id) => id.to_string(),
            None => customer.to_string(),
        },
        Customer::Group(group) => match store.group_id(group).await? {
            Some(id) => format!("group:{id}"),
            None => customer.to_string(),
        },
    })
}

/// A time as RFC 3339 UTC with `Z`, to the millisecond the store keeps, with the
/// milliseconds only when they are not zero.
pub fn view_time(at: DateTime<Utc>) -> String {
    let format = if at.timestamp_subsec_millis() == 0 {
        SecondsFormat::Secs
    } else {
        SecondsFormat::Millis
    };
    at.to_rfc3339_opts(format, true)
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    #[test]
    fn the_window_object_has_exactly_the_contract_fields() {
        let Ok(business) = "254110090747".parse::<PhoneNumber>() else {
            panic!("a valid number");
        };
        let open = WindowView::new(
            business,
            "254712345678".to_owned(),
            &WindowState::Open {
                last_inbound: t("2026-11-23T10:00:00.250Z"),
                expires_at: t("2026-11-24T10:00:00.250Z"),
                remaining: TimeDelta::milliseconds(90_500),
            },
        );
        let json = serde_json::to_value(&open).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({"business": "254110090747", "customer": "254712345678",
                "state": "open", "last_inbound": "2026-11-23T10:00:00.250Z",
                "expires_at": "2026-11-24T10:00:00.250Z", "remaining_secs": 90})
        );
        let back: WindowView = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, open);
        let closed = WindowState::Closed {
            last_inbound: t("2026-11-23T10:00:00Z"),
            closed_since: t("2026-11-23T12:00:00Z"),
            cause: ClosedCause::Gateway,
        };
        let listed = ListedWindowView::new(business, "x".into(), &closed);
        assert_eq!(listed.closed_cause, Some(ClosedCause::Gateway));
        assert_eq!(
            listed.window.expires_at.as_deref(),
            Some("2026-11-23T12:00:00Z")
        );
        assert_eq!(listed.window.remaining_secs, None);
        assert_eq!(WindowView::closed_cause(&WindowState::Never), None);
        for cause in [ClosedCause::Gateway, ClosedCause::Expired] {
            assert_eq!(parse_closed_cause(closed_cause_name(cause)), Some(cause));
        }
        assert_eq!(parse_closed_cause("other"), None);
    }
}
