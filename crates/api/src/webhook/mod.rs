//! Inbound webhooks: what customers sent, and what became of the messages we sent.
//!
//! [`WebhookParser::parse`] reads two shapes into one list of [`WebhookEvent`]s:
//!
//! * **LipaChat's flat payload** (one JSON object, or an array of them):
//!   * an inbound message: `{"messageId", "from", "to", "profileName", "type", ...}` where
//!     `from` is the customer and `to` the business. It carries no timestamp, so its
//!     inbound time is the time of receipt. (A `timestamp` in Unix seconds or
//!     milliseconds, or RFC 3339 with an offset, is used if present; a timestamp without
//!     a zone is ignored, since its zone is unknown.) `to` may be missing when the parser
//!     is given the business number ([`WebhookParser::with_business_number`]).
//!   * a status callback (shape unpublished, so read tolerantly): an object whose `status`
//!     is a delivery status (`sent`, `delivered`, `read`, `failed`, ...), or which has
//!     `errors`, `error`, `code` or `errorCode` and no message `type`. When its `status`,
//!     `errors`, `error`, `code`, `errorCode`, `message`, `statusDesc`, `title`, `details`
//!     or `reason` names 131047 or 470 (see [`crate::reengagement`]), it becomes
//!     [`WebhookEvent::WindowClosed`]. `messageId` is ours; `waId`, `wamid` or `id` is
//!     taken as WhatsApp's id when it starts with `wamid.`. The conversation is filled in
//!     only when the parser knows the business number (then `from`/`to`/`recipient` tell
//!     the customer); otherwise correlate by `message_id`.
//! * **WhatsApp's webhook** (`{"object": ..., "entry": [{"changes": [{"value": ...}]}]}`):
//!   `value.messages[]` become inbound events (business number from
//!   `value.metadata.display_phone_number`, customer from `from`, sender's `timestamp`,
//!   profile name from `value.contacts[]`); `value.statuses[]` become status events, or
//!   [`WebhookEvent::WindowClosed`] when their `errors` name 131047 or 470.
//!
//! Phone numbers (`from`, `to`, `recipient_id`, `display_phone_number`, ...) may be JSON
//! strings in any form [`PhoneNumber`] accepts, or JSON numbers written as whole numbers
//! (`254712345678`). Any other JSON number (`254712345678.0`, `2.54712345678e11`,
//! `-254712345678`) is refused as [`WebhookError::InvalidField`] (an
//! [`WebhookEvent::Ignored`] item inside a batch), never read as the digits of its text.
//!
//! A customer's own text is never searched for the 131047 signal, so a customer who writes
//! "131047" still opens the window.
//!
//! Which inbound kinds open the window is configurable; by default every message a
//! customer sends (text, media, location, contacts, interactive and button replies,
//! orders) opens it, and reactions, system messages, unsupported and unknown types do not.
//!
//! Bodies over the size limit (256 KiB by default), malformed JSON and shapes that are
//! neither are typed errors; items inside a WhatsApp batch that cannot be read become
//! [`WebhookEvent::Ignored`] so one bad item does not hide the others.

mod lipachat;
mod whatsapp;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use lipachat_session::{Conversation, PhoneNumber};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

/// The default limit on a webhook body: 256 KiB.
pub const DEFAULT_MAX_WEBHOOK_BYTES: usize = 256 * 1024;

/// What kind of message a customer sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum InboundKind {
    /// Text.
    Text,
    /// An image.
    Image,
    /// A video.
    Video,
    /// Audio or a voice note.
    Audio,
    /// A document.
    Document,
    /// A sticker.
    Sticker,
    /// A shared location.
    Location,
    /// One or more shared contact cards.
    Contacts,
    /// A reply to an interactive message (button or list reply).
    Interactive,
    /// A tap on a template's quick-reply button.
    Button,
    /// An order from a catalogue.
    Order,
    /// A reaction (emoji) to a message.
    Reaction,
    /// A system message (number change, ...), not written by the customer.
    System,
    /// A message type WhatsApp does not support.
    Unsupported,
    /// A type this crate does not know.
    Unknown,
}

impl InboundKind {
    /// Every kind.
    pub const ALL: [InboundKind; 15] = [
        Self::Text,
        Self::Image,
        Self::Video,
        Self::Audio,
        Self::Document,
        Self::Sticker,
        Self::Location,
        Self::Contacts,
        Self::Interactive,
        Self::Button,
        Self::Order,
        Self::Reaction,
        Self::System,
        Self::Unsupported,
        Self::Unknown,
    ];

    /// The kinds that open the window by default: everything a customer writes or sends.
    pub const OPENING_BY_DEFAULT: [InboundKind; 11] = [
        Self::Text,
        Self::Image,
        Self::Video,
        Self::Audio,
        Self::Document,
        Self::Sticker,
        Self::Location,
        Self::Contacts,
        Self::Interactive,
        Self::Button,
        Self::Order,
    ];

    /// Reads a payload's `type`, in any case (`TEXT`, `text`, `CONTACT`, `contacts`,
    /// `voice`, ...); unknown names give [`InboundKind::Unknown`].
    pub fn from_wire(name: &str) -> Self {
        match name.trim().to_ascii_lowercase().as_str() {
            "text" => Self::Text,
            "image" => Self::Image,
            "video" => Self::Video,
            "audio" | "voice" => Self::Audio,
            "document" | "file" => Self::Document,
            "sticker" => Self::Sticker,
            "location" => Self::Location,
            "contact" | "contacts" => Self::Contacts,
            "interactive" | "button_reply" | "list_reply" => Self::Interactive,
            "button" | "quick_reply" => Self::Button,
            "order" => Self::Order,
            "reaction" => Self::Reaction,
            "system" => Self::System,
            "unsupported" => Self::Unsupported,
            _ => Self::Unknown,
        }
    }

    /// The kind's name, as serialised (`text`, `image`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Document => "document",
            Self::Sticker => "sticker",
            Self::Location => "location",
            Self::Contacts => "contacts",
            Self::Interactive => "interactive",
            Self::Button => "button",
            Self::Order => "order",
            Self::Reaction => "reaction",
            Self::System => "system",
            Self::Unsupported => "unsupported",
            Self::Unknown => "unknown",
        }
    }
}

/// A message a customer sent to a business number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// The business number (the payload's `to`) and the customer (its `from`).
    pub conversation: Conversation,
    /// The message's id (LipaChat's `messageId`, or WhatsApp's `wamid.`).
    pub message_id: String,
    /// What the customer sent.
    pub kind: InboundKind,
    /// The customer's WhatsApp profile name, when given.
    pub profile_name: Option<String>,
    /// When the customer sent it, when the payload says (WhatsApp's `timestamp`).
    pub sent_at: Option<DateTime<Utc>>,
    /// When the webhook was received.
    pub received_at: DateTime<Utc>,
    /// Whether this kind opens (or renews) the 24-hour window, per the parser's set.
    pub opens_window: bool,
}

impl InboundMessage {
    /// The instant the window is counted from: the sender's timestamp when there is one,
    /// never later than the receipt; the receipt otherwise.
    pub fn inbound_time(&self) -> DateTime<Utc> {
        self.sent_at
            .map_or(self.received_at, |sent| sent.min(self.received_at))
    }
}

/// A delivery status reported for a message we sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeliveryStatus {
    /// Sent to WhatsApp.
    Sent,
    /// Delivered to the customer's phone.
    Delivered,
    /// Read by the customer.
    Read,
    /// Failed.
    Failed,
    /// Deleted.
    Deleted,
    /// Another status.
    Other,
}

impl DeliveryStatus {
    /// Reads a status name in any case; `None` for a name that is no delivery status.
    fn from_wire(name: &str) -> Option<Self> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "sent" | "accepted" | "queued" | "pending" => Self::Sent,
            "delivered" => Self::Delivered,
            "read" | "seen" => Self::Read,
            "failed" | "undelivered" | "rejected" | "error" | "expired" => Self::Failed,
            "deleted" => Self::Deleted,
            "warning" => Self::Other,
            _ => return None,
        })
    }
}

/// A status callback for a message we sent, other than "window closed".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// The conversation, when the payload (and the parser's configuration) tell it.
    pub conversation: Option<Conversation>,
    /// Our `messageId`, when the callback names it.
    pub message_id: Option<String>,
    /// WhatsApp's message id (`wamid.`), when the callback names it.
    pub wa_id: Option<String>,
    /// The status.
    pub status: DeliveryStatus,
    /// When it happened (the payload's timestamp, never later than receipt), else receipt.
    pub at: DateTime<Utc>,
    /// The first error code, for a failure.
    pub error_code: Option<u32>,
    /// The first error's title or message, shortened.
    pub error_title: Option<String>,
}

/// One event read from a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebhookEvent {
    /// A customer sent a message.
    Inbound(InboundMessage),
    /// WhatsApp refused one of our messages as outside the 24-hour window (131047, or the
    /// older 470): the window is closed for this conversation from `at`.
    WindowClosed {
        /// The conversation, when the payload tells it.
        conversation: Option<Conversation>,
        /// Our `messageId`, when the callback names it.
        message_id: Option<String>,
        /// WhatsApp's message id (`wamid.`), when the callback names it.
        wa_id: Option<String>,
        /// When it was reported (the payload's timestamp, capped at receipt), else receipt.
        at: DateTime<Utc>,
        /// 131047 or 470.
        code: u32,
    },
    /// Another status for a message we sent (sent, delivered, read, failed).
    Status(StatusUpdate),
    /// Something that is neither, or an item that could not be read (with why).
    Ignored {
        /// Why it was ignored.
        reason: String,
    },
}

impl WebhookEvent {
    /// The conversation the event belongs to, when known.
    pub fn conversation(&self) -> Option<Conversation> {
        match self {
            Self::Inbound(message) => Some(message.conversation),
            Self::WindowClosed { conversation, .. } => *conversation,
            Self::Status(status) => status.conversation,
            Self::Ignored { .. } => None,
        }
    }
}

/// Why a webhook body could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The body is over the parser's size limit.
    #[error("webhook body has {len} bytes; the limit is {limit}")]
    TooLarge {
        /// The body's length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The body is empty.
    #[error("webhook body is empty")]
    Empty,
    /// The body is not JSON.
    #[error("webhook body is not JSON: {detail}")]
    NotJson {
        /// The parser's message (position and cause; no content of the body).
        detail: String,
    },
    /// JSON, but neither LipaChat's nor WhatsApp's shape.
    #[error("webhook body has an unknown shape: {detail}")]
    UnknownShape {
        /// What was expected.
        detail: &'static str,
    },
    /// A field the event needs is missing.
    #[error("webhook payload has no {field}")]
    MissingField {
        /// The field's name.
        field: &'static str,
    },
    /// A field has a value that cannot be used (a phone number that is not one, ...).
    #[error("webhook payload's {field} is invalid: {detail}")]
    InvalidField {
        /// The field's name.
        field: &'static str,
        /// Why.
        detail: String,
    },
}

/// Reads inbound webhook bodies into [`WebhookEvent`]s.
///
/// ```
/// use lipachat_api::{InboundKind, WebhookEvent, WebhookParser};
///
/// let body = br#"{"messageId": "abc", "from": "254712345678", "to": "254110090747",
///                 "profileName": "Jane", "type": "TEXT", "text": "Hello"}"#;
/// let received = "2026-11-23T10:00:00Z".parse()?;
/// let events = WebhookParser::default().parse(body, received)?;
/// let WebhookEvent::Inbound(message) = &events[0] else { panic!("not inbound") };
/// assert_eq!(message.conversation.customer.to_string(), "254712345678");
/// assert_eq!(message.kind, InboundKind::Text);
/// assert!(message.opens_window);
/// assert_eq!(message.inbound_time(), received);
///
/// // Reactions do not open the window by default; this parser says they do.
/// let parser = WebhookParser::default().with_opening(InboundKind::Reaction, true);
/// assert!(parser.opens_window(InboundKind::Reaction));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookParser {
    opening: BTreeSet<InboundKind>,
    max_body_bytes: usize,
    business: Option<PhoneNumber>,
}

impl Default for WebhookParser {
    fn default() -> Self {
        Self {
            opening: InboundKind::OPENING_BY_DEFAULT.into_iter().collect(),
            max_body_bytes: DEFAULT_MAX_WEBHOOK_BYTES,
            business: None,
        }
    }
}

impl WebhookParser {
    /// A parser with the defaults (see [`InboundKind::OPENING_BY_DEFAULT`], 256 KiB).
    pub fn new() -> Self {
        Self::default()
    }

    /// The same parser with exactly these kinds opening the window.
    pub fn with_opening_kinds(mut self, kinds: impl IntoIterator<Item = InboundKind>) -> Self {
        self.opening = kinds.into_iter().collect();
        self
    }

    /// The same parser with one kind opening the window or not.
    pub fn with_opening(mut self, kind: InboundKind, opens: bool) -> Self {
        if opens {
            self.opening.insert(kind);
        } else {
            self.opening.remove(&kind);
        }
        self
    }

    /// The same parser with another body size limit.
    pub fn with_max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body_bytes = limit;
        self
    }

    /// The same parser knowing the business number the webhook belongs to: used when a
    /// flat inbound payload has no `to`, and to tell the customer in a flat status callback.
    pub fn with_business_number(mut self, business: PhoneNumber) -> Self {
        self.business = Some(business);
        self
    }

    /// Whether a kind opens the window.
    pub fn opens_window(&self, kind: InboundKind) -> bool {
        self.opening.contains(&kind)
    }

    /// The kinds that open the window.
    pub fn opening_kinds(&self) -> impl Iterator<Item = InboundKind> + '_ {
        self.opening.iter().copied()
    }

    /// Reads a webhook body received at `received_at`.
    pub fn parse(
        &self,
        body: &[u8],
        received_at: DateTime<Utc>,
    ) -> Result<Vec<WebhookEvent>, WebhookError> {
        if body.len() > self.max_body_bytes {
            return Err(WebhookError::TooLarge {
                len: body.len(),
                limit: self.max_body_bytes,
            });
        }
        if body.trim_ascii().is_empty() {
            return Err(WebhookError::Empty);
        }
        let value: Value = serde_json::from_slice(body).map_err(|e| WebhookError::NotJson {
            detail: e.to_string(),
        })?;
        self.parse_value(&value, received_at)
    }

    /// Reads an already-parsed JSON body (no size limit applies).
    pub fn parse_value(
        &self,
        value: &Value,
        received_at: DateTime<Utc>,
    ) -> Result<Vec<WebhookEvent>, WebhookError> {
        match value {
            Value::Object(object) if object.contains_key("entry") => {
                whatsapp::parse(self, object, received_at)
            }
            Value::Object(object) => Ok(vec![lipachat::parse(self, object, received_at)?]),
            Value::Array(items) => Ok(items
                .iter()
                .map(|item| match item {
                    Value::Object(object) => lipachat::parse(self, object, received_at)
                        .unwrap_or_else(|e| WebhookEvent::Ignored {
                            reason: e.to_string(),
                        }),
                    _ => WebhookEvent::Ignored {
                        reason: "an array item that is not an object".into(),
                    },
                })
                .collect()),
            _ => Err(WebhookError::UnknownShape {
                detail: "expected a JSON object (LipaChat's payload or WhatsApp's webhook)",
            }),
        }
    }
}

/// A string field among `names`, trimmed and non-empty. Numbers are accepted as text.
fn text(object: &Map<String, Value>, names: &[&str]) -> Option<String> {
    names.iter().find_map(|name| match object.get(*name)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// A phone number field: `Ok(None)` when absent, an error when present but invalid.
///
/// A JSON number is a phone only when it is a whole number written as one (digits only):
/// `254712345678.0`, `2.54712345678e11` or `-254712345678` is refused rather than read as
/// its text, whose digits (`2547123456780`) would make another, valid, number.
fn phone(
    object: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<PhoneNumber>, WebhookError> {
    let raw = match object.get(field) {
        Some(Value::Number(n)) => match n.as_u64() {
            Some(whole) => whole.to_string(),
            None => {
                return Err(WebhookError::InvalidField {
                    field,
                    detail: format!(
                        "the number {n} is not a phone number: a phone number written as a JSON number must be a whole number of digits, without sign, fraction or exponent"
                    ),
                });
            }
        },
        _ => match text(object, &[field]) {
            Some(raw) => raw,
            None => return Ok(None),
        },
    };
    raw.parse().map(Some).map_err(
        |e: lipachat_session::PhoneError| WebhookError::InvalidField {
            field,
            detail: e.to_string(),
        },
    )
}

/// A timestamp: Unix seconds (or milliseconds, when too large for seconds) as a number or
/// a numeric string, or RFC 3339 with an offset. Capped at `received_at`.
fn timestamp(value: Option<&Value>, received_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let from_number = |n: i64| {
        if n.unsigned_abs() >= 100_000_000_000 {
            DateTime::from_timestamp_millis(n)
        } else {
            DateTime::from_timestamp(n, 0)
        }
    };
    let at = match value? {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .and_then(from_number),
        Value::String(s) => {
            let s = s.trim();
            match s.parse::<i64>() {
                Ok(n) => from_number(n),
                Err(_) => DateTime::parse_from_rfc3339(s)
                    .ok()
                    .map(|t| t.with_timezone(&Utc)),
            }
        }
        _ => None,
    }?;
    Some(at.min(received_at))
}

/// A string shortened for an event.
fn shorten(text: &str) -> String {
    text.chars().take(200).collect()
}

/// A WhatsApp message id from one of `names`, when it looks like one (`wamid.`).
fn wamid(object: &Map<String, Value>, names: &[&str]) -> Option<String> {
    names.iter().find_map(|name| {
        object
            .get(*name)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| s.starts_with("wamid.") && s.len() <= 512)
            .map(str::to_owned)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_their_names() {
        for kind in InboundKind::ALL {
            assert_eq!(InboundKind::from_wire(kind.name()), kind);
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                Value::String(kind.name().into())
            );
        }
        assert_eq!(InboundKind::from_wire("CONTACT"), InboundKind::Contacts);
        assert_eq!(InboundKind::from_wire("hologram"), InboundKind::Unknown);
    }

    #[test]
    fn default_opening_set() {
        let parser = WebhookParser::default();
        for kind in InboundKind::ALL {
            let expected = InboundKind::OPENING_BY_DEFAULT.contains(&kind);
            assert_eq!(parser.opens_window(kind), expected, "{kind:?}");
        }
        assert!(!parser.opens_window(InboundKind::Reaction));
        assert!(!parser.opens_window(InboundKind::Unsupported));
        let only_text = parser.with_opening_kinds([InboundKind::Text]);
        assert_eq!(
            only_text.opening_kinds().collect::<Vec<_>>(),
            [InboundKind::Text]
        );
    }

    #[test]
    fn timestamps() {
        let received: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let t = |v: Value| timestamp(Some(&v), received);
        let earlier: DateTime<Utc> = "2026-11-23T09:00:00Z".parse().unwrap();
        let secs = earlier.timestamp();
        assert_eq!(t(Value::from(secs)), Some(earlier));
        assert_eq!(t(Value::from(secs.to_string())), Some(earlier));
        assert_eq!(t(Value::from(secs * 1000)), Some(earlier));
        assert_eq!(t(Value::from("2026-11-23T12:00:00+03:00")), Some(earlier));
        // Later than receipt: capped.
        assert_eq!(t(Value::from(secs + 7200)), Some(received));
        // No zone, nonsense, out of range: ignored.
        assert_eq!(t(Value::from("2026-11-23T09:00:00")), None);
        assert_eq!(t(Value::from("soon")), None);
        assert_eq!(t(Value::from(i64::MAX)), None);
        assert_eq!(t(Value::from(f64::MAX)), None);
        assert_eq!(timestamp(None, received), None);
    }
}
