//! Inbound webhooks: what customers sent, and what became of the messages we sent.
//!
//! [`WebhookParser::parse`] reads two shapes into one list of [`WebhookEvent`]s, in
//! payload order:
//!
//! * **LipaChat's flat payload** (one JSON object, or an array of them):
//!   * an inbound message: `{"messageId", "from", "to", "profileName", "type", ...}` where
//!     `from` is the customer and `to` the business. It carries no timestamp, so its
//!     inbound time is the time of receipt. (A `timestamp` in Unix seconds or
//!     milliseconds, or RFC 3339 with an offset, is used if present; a timestamp without
//!     a zone is ignored, since its zone is unknown.) `to` may be missing when the parser
//!     is given the business number ([`WebhookParser::with_business_number`]). Content:
//!     `TEXT` with `text` as a string; `IMAGE`, `VIDEO`, `AUDIO`, `DOCUMENT`, `STICKER`
//!     with `{caption, url}` under their lowercase name; `LOCATION` (`latitude`,
//!     `longtitude` or `longitude`, `name`, `address`, nested under `location` or not);
//!     `CONTACT` (`contacts` cards); `INTERACTIVE` (`interactive {type, button_reply |
//!     list_reply}`). A business-scoped user id is read from `fromUserId`/`from_user_id`
//!     /`userId`/`user_id`, a group from `groupId`/`group_id`.
//!   * the status callback `{"event": "MESSAGE_STATUS", "messageStatus": {"messageId",
//!     "waId", "status", "statusDesc", ...}}` (tied back by our `messageId`), and a bare
//!     status object (`status` a delivery status such as `sent`, `delivered`, `read`,
//!     `failed`, or `errors`, `error`, `code`, `errorCode` and no message `type`: this
//!     also reads a bare WhatsApp status object `{id, status, recipient_id, errors}`).
//!     When its `status`, `errors`, `error`, `code`, `errorCode`, `message`,
//!     `statusDesc`, `title`, `details` or `reason` names 131047 or 470 (the crate's
//!     page says how it is recognised), it becomes [`WebhookEvent::WindowClosed`].
//!     `messageId` is ours; `waId`, `wamid` or `id` is taken as WhatsApp's id when it starts with
//!     `wamid.`. The conversation is filled in only when the parser knows the business
//!     number (then `from`/`to`/`recipient_id` tell the customer); otherwise correlate by
//!     `message_id`.
//!   * the template status update `{"event": "TEMPLATE_STATUS", "templateStatus": {...}}`,
//!     as [`WebhookEvent::TemplateStatus`]; another `event` is one
//!     [`WebhookEvent::Ignored`].
//! * **WhatsApp's webhook** (`{"object": ..., "entry": [{"changes": [{"field", "value"}]}]}`),
//!   every entry and change in order, business number from
//!   `value.metadata.display_phone_number`:
//!   * `value.messages[]` become [`WebhookEvent::Inbound`]: the sender's phone (`from`,
//!     omitted for some users with a username) and business-scoped user ids
//!     (`from_user_id`, `from_parent_user_id`, else `value.contacts[]`'s `user_id`,
//!     `parent_user_id`), `group_id`, the sender's `timestamp`, the content, `context`,
//!     `referral`, and the profile name and username from `value.contacts[]`;
//!   * `value.statuses[]` become status events, or [`WebhookEvent::WindowClosed`] when
//!     their `errors` name 131047 or 470; the recipient is `recipient_id` (a phone, or
//!     the group id when `recipient_type` is `group`), `recipient_user_id`,
//!     `recipient_parent_user_id`; a placeholder or missing business or recipient
//!     leaves that field `None`;
//!   * `value.calls[]` (field `calls`: `connect` and `terminate`) and call statuses
//!     (`statuses[]` with `type: call`) become inbound events of kind
//!     [`InboundKind::Call`] (see [`WebhookParser::opens_window_for_call`]);
//!   * any other field (`smb_message_echoes`, `account_update`, template updates, ...) is
//!     one [`WebhookEvent::Ignored`] with its reason.
//!
//! Who the message is from: a [`Sender`] with a phone number, a business-scoped user id
//! ([`Bsuid`]), or both. A message in a group ([`InboundMessage::group`]) belongs to the
//! group's conversation, never to the sender's 1:1 window, and
//! [`InboundMessage::conversation`] is `Some` only for a 1:1 message whose sender's phone
//! is known.
//!
//! Phone numbers (`from`, `to`, `recipient_id`, `display_phone_number`, ...) may be JSON
//! strings in any form [`PhoneNumber`] accepts, or JSON numbers written as whole numbers
//! (`254712345678`). Any other JSON number (`254712345678.0`, `2.54712345678e11`,
//! `-254712345678`) is refused as [`WebhookError::InvalidField`] (an
//! [`WebhookEvent::Ignored`] item inside a batch), never read as the digits of its text;
//! so is a string holding such a number with a single decimal point (`"254712345678.0"`,
//! a float turned into text), while dots between groups (`"254.712.345.678"`) are read.
//!
//! A customer's own text is never searched for the 131047 signal, so a customer who writes
//! "131047" still opens the window.
//!
//! Which inbound kinds open the window is configurable; by default every message a
//! customer sends (text, media, location, contacts, interactive and button replies,
//! orders, unsupported messages) and calls open it, and reactions and unknown types do
//! not. System messages never do. Whether a message has an `id` does not matter: the id
//! only serves to recognise a redelivered copy.
//!
//! Bodies over the size limit (256 KiB by default), malformed JSON and shapes that are
//! neither are typed errors; items inside a batch that cannot be read become
//! [`WebhookEvent::Ignored`] so one bad item does not hide the others.

mod content;
mod lipachat;
mod whatsapp;
mod whatsapp_typed;

use std::borrow::Cow;
use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use lipachat_session::{Bsuid, Conversation, GroupId, MessageId, PhoneNumber, PhoneParser};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

pub use content::{
    CallDirection, CallEvent, CallEventKind, ContactCard, ContactCardEmail, ContactCardPhone,
    InboundContent, InteractiveReply, Location, Media, MediaKind, MessageContext, Order, OrderItem,
    Referral, ReferredProduct, SystemChange, SystemChangeKind, WhatsAppError,
};

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
    /// A reply to an interactive message (button, list or flow reply).
    Interactive,
    /// A tap on a template's quick-reply button.
    Button,
    /// An order from a catalogue.
    Order,
    /// A reaction (emoji) to a message.
    Reaction,
    /// A system message (number or identity change), not written by the customer.
    System,
    /// A message type WhatsApp does not support.
    Unsupported,
    /// A call (the `calls` webhook field).
    Call,
    /// A type this crate does not know.
    Unknown,
}

impl InboundKind {
    /// Every kind.
    pub const ALL: [InboundKind; 16] = [
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
        Self::Call,
        Self::Unknown,
    ];

    /// The kinds that open the window by default: everything a customer writes or sends
    /// (an unsupported message too: the customer sent it), and calls (under the call
    /// rules of [`WebhookParser::opens_window_for_call`]).
    pub const OPENING_BY_DEFAULT: [InboundKind; 13] = [
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
        Self::Unsupported,
        Self::Call,
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
            "interactive" | "button_reply" | "list_reply" | "nfm_reply" => Self::Interactive,
            "button" | "quick_reply" => Self::Button,
            "order" => Self::Order,
            "reaction" => Self::Reaction,
            "system" => Self::System,
            "unsupported" => Self::Unsupported,
            "call" => Self::Call,
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
            Self::Call => "call",
            Self::Unknown => "unknown",
        }
    }
}

/// Who sent an inbound message: a phone number, a business-scoped user id, or both.
///
/// Since 2026 a user with a username may arrive with no phone number (unless the business
/// exchanged a message or call with them in the last 30 days, or has them in its
/// contacts); the business-scoped user id is always sent. The sender of a system message
/// may be unknown (a user-id change names only ids).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Sender {
    /// The phone number (`from`, or the sender's `wa_id` in `contacts`), when given.
    pub phone: Option<PhoneNumber>,
    /// The business-scoped user id (`from_user_id`, or `user_id` in `contacts`).
    pub user_id: Option<Bsuid>,
    /// The parent business-scoped user id (`from_parent_user_id`, `parent_user_id`), for
    /// linked business portfolios.
    pub parent_user_id: Option<Bsuid>,
    /// The user's username (`contacts[].profile.username`), when they have one. A
    /// display name that can change: not an identity.
    pub username: Option<String>,
}

impl Sender {
    /// Whether nothing identifies the sender.
    pub fn is_unknown(&self) -> bool {
        self.phone.is_none() && self.user_id.is_none() && self.parent_user_id.is_none()
    }
}

/// A message (or call) a customer sent to a business number.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundMessage {
    /// The business number it was sent to (`to`, or the webhook's metadata).
    pub business: PhoneNumber,
    /// Who sent it.
    pub sender: Sender,
    /// The group it was sent in, for a group message: it opens the group's window, not
    /// the sender's.
    pub group: Option<GroupId>,
    /// The message's id (LipaChat's `messageId`, or WhatsApp's `wamid.`), when given;
    /// only needed to recognise a redelivered copy. A call has none: its id is
    /// [`CallEvent::call_id`], shared by the call's several events.
    pub message_id: Option<String>,
    /// What kind of message it is.
    pub kind: InboundKind,
    /// What the customer sent.
    pub content: InboundContent,
    /// The message it replies to, or its forwarded flags.
    pub context: Option<MessageContext>,
    /// The click-to-WhatsApp ad it came from.
    pub referral: Option<Referral>,
    /// The customer's WhatsApp profile name, when given.
    pub profile_name: Option<String>,
    /// When the customer sent it, when the payload says (WhatsApp's `timestamp`; for a
    /// call, when it was answered, else the event's time).
    pub sent_at: Option<DateTime<Utc>>,
    /// When the webhook was received.
    pub received_at: DateTime<Utc>,
    /// Whether it opens (or renews) the 24-hour window at [`InboundMessage::inbound_time`],
    /// per the parser's settings.
    pub opens_window: bool,
}

impl InboundMessage {
    /// The instant the window is counted from: the sender's timestamp when there is one,
    /// never later than the receipt; the receipt otherwise.
    pub fn inbound_time(&self) -> DateTime<Utc> {
        self.sent_at
            .map_or(self.received_at, |sent| sent.min(self.received_at))
    }

    /// The 1:1 phone conversation it belongs to: `Some` only for a message outside any
    /// group from a sender whose phone number is known. A group message belongs to the
    /// group; a message from a user known only by a business-scoped user id belongs to a
    /// conversation this phone-keyed type cannot name.
    pub fn conversation(&self) -> Option<Conversation> {
        match (&self.group, self.sender.phone) {
            (None, Some(customer)) => Some(Conversation::new(self.business, customer)),
            _ => None,
        }
    }
}

/// Who a status is about: the business number, and the recipient (a phone number, a
/// business-scoped user id, or a group), each when the payload tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Recipient {
    /// The business number the message was sent from.
    pub business: Option<PhoneNumber>,
    /// The recipient's phone number (`recipient_id` for an individual), when given and
    /// valid.
    pub phone: Option<PhoneNumber>,
    /// The recipient's business-scoped user id (`recipient_user_id`).
    pub user_id: Option<Bsuid>,
    /// The recipient's parent business-scoped user id (`recipient_parent_user_id`).
    pub parent_user_id: Option<Bsuid>,
    /// The group, for a message sent to a group (`recipient_type: group`).
    pub group: Option<GroupId>,
}

impl Recipient {
    /// The 1:1 phone conversation: `Some` only when both numbers are known and the
    /// message did not go to a group.
    pub fn conversation(&self) -> Option<Conversation> {
        match (&self.group, self.business, self.phone) {
            (None, Some(business), Some(customer)) => Some(Conversation::new(business, customer)),
            _ => None,
        }
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
            "read" | "seen" | "played" => Self::Read,
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
    /// The 1:1 phone conversation, when the payload (and the parser's configuration) tell
    /// it: the same as `recipient.conversation()`.
    pub conversation: Option<Conversation>,
    /// Who the status is about, as far as the payload tells.
    pub recipient: Recipient,
    /// Our `messageId`, when the callback names one (a `messageId` that is not a UUID
    /// names no send of ours and is left out).
    pub message_id: Option<MessageId>,
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
    /// The status's `pricing` object, when it has one (WhatsApp's own statuses do;
    /// LipaChat's status callback carries none).
    pub pricing: Option<StatusPricing>,
    /// `conversation.expiration_timestamp`, when given: the free entry point window's
    /// end when `pricing.type` is `free_entry_point` (older API versions carry it on
    /// ordinary statuses too, where it means nothing for pricing).
    pub conversation_expires_at: Option<DateTime<Utc>>,
}

/// A status's `pricing` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPricing {
    /// `category` as written, lowercased (`marketing`, `utility`, `authentication`,
    /// `service`, or another the platform adds).
    pub category: String,
    /// `type`, lowercased (`regular`, `free_customer_service`, `free_entry_point`), when
    /// given.
    pub pricing_type: Option<String>,
    /// `billable` (deprecated by the platform), when given.
    pub billable: Option<bool>,
}

impl StatusPricing {
    /// Whether the pricing type says the message is in a free entry point window.
    pub fn is_free_entry_point(&self) -> bool {
        self.pricing_type.as_deref() == Some("free_entry_point")
    }
}

/// A template's review status changed (LipaChat's `TEMPLATE_STATUS` callback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateStatusUpdate {
    /// The template's id, when given.
    pub template_id: Option<String>,
    /// The template's name, when given.
    pub template_name: Option<String>,
    /// The new status as given (`APPROVED`, `REJECTED`, `PAUSED`, ...).
    pub status: Option<String>,
    /// Why, when given (`statusDescription`).
    pub description: Option<String>,
    /// When it was reported (the payload carries no time: the receipt).
    pub at: DateTime<Utc>,
}

/// One event read from a webhook.
///
/// ```
/// use lipachat_api::{DeliveryStatus, MessageId, WebhookEvent, WebhookParser};
///
/// // One LipaChat delivery: a customer's message, then two status callbacks for ours.
/// let body = br#"[
///   {"messageId": "in-1", "from": "254712345678", "to": "254110090747", "type": "TEXT", "text": "Hi"},
///   {"event": "MESSAGE_STATUS", "messageStatus": {"messageId": "ca739107-4b0d-4581-acb1-4c4af70555de",
///     "waId": "wamid.HBgM", "status": "DELIVERED", "statusDesc": "Message delivered"}},
///   {"event": "MESSAGE_STATUS", "messageStatus": {"messageId": "0b2f6a7e-58c4-4d51-9d0e-3f3b7b1e0001",
///     "status": "FAILED", "statusDesc": "(#131047) Re-engagement message"}}
/// ]"#;
/// let received_at = "2026-11-23T10:00:00Z".parse()?;
/// let events = WebhookParser::default().parse(body, received_at)?;
/// let ours: MessageId = "0b2f6a7e-58c4-4d51-9d0e-3f3b7b1e0001".parse()?;
/// match &events[..] {
///     [WebhookEvent::Inbound(message), WebhookEvent::Status(status), WebhookEvent::WindowClosed { message_id, code, .. }] => {
///         // The customer wrote: the window opens, from the receipt (LipaChat sends no time).
///         assert!(message.opens_window);
///         assert_eq!(message.inbound_time(), received_at);
///         assert_eq!(message.content.text(), Some("Hi"));
///         assert_eq!(status.status, DeliveryStatus::Delivered);
///         assert_eq!(status.wa_id.as_deref(), Some("wamid.HBgM"));
///         // WhatsApp refused one of ours as outside the window, naming our messageId.
///         assert_eq!((*message_id, *code), (Some(ours), 131_047));
///     }
///     other => panic!("unexpected events: {other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum WebhookEvent {
    /// A customer sent a message, or called (boxed: it is much larger than the others).
    Inbound(Box<InboundMessage>),
    /// WhatsApp refused one of our messages as outside the 24-hour window (131047, or the
    /// older 470): the window is closed for this conversation from `at`.
    WindowClosed {
        /// The 1:1 phone conversation, when the payload tells it (never for a group).
        conversation: Option<Conversation>,
        /// Who the report is about, as far as the payload tells.
        recipient: Recipient,
        /// Our `messageId`, when the callback names one (a `messageId` that is not a
        /// UUID names no send of ours and is left out).
        message_id: Option<MessageId>,
        /// WhatsApp's message id (`wamid.`), when the callback names it.
        wa_id: Option<String>,
        /// When it was reported (the payload's timestamp, capped at receipt), else receipt.
        at: DateTime<Utc>,
        /// 131047 or 470.
        code: u32,
    },
    /// Another status for a message we sent (sent, delivered, read, failed).
    Status(StatusUpdate),
    /// A template's review status changed.
    TemplateStatus(TemplateStatusUpdate),
    /// A customer stopped or resumed marketing messages from the business number
    /// (WhatsApp's `user_preferences` webhook, category `marketing_messages`).
    MarketingPreference {
        /// The business number.
        business: PhoneNumber,
        /// Who chose: the customer's phone (`wa_id`), their business-scoped user id
        /// (`user_id`, for a user with a username whose phone the payload leaves out), or
        /// both; at least one.
        customer: Sender,
        /// `true` for stop, `false` for resume.
        opted_out: bool,
        /// When the customer chose (the payload's timestamp, capped at receipt).
        at: DateTime<Utc>,
    },
    /// Something that is none of these, or an item that could not be read (with why).
    Ignored {
        /// Why it was ignored.
        reason: String,
    },
}

impl WebhookEvent {
    /// The 1:1 phone conversation the event belongs to, when known.
    pub fn conversation(&self) -> Option<Conversation> {
        match self {
            Self::Inbound(message) => message.conversation(),
            Self::WindowClosed { conversation, .. } => *conversation,
            Self::Status(status) => status.conversation,
            Self::MarketingPreference {
                business, customer, ..
            } => customer
                .phone
                .map(|phone| Conversation::new(*business, phone)),
            Self::TemplateStatus(_) | Self::Ignored { .. } => None,
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
/// use lipachat_api::{InboundContent, InboundKind, WebhookEvent, WebhookParser};
///
/// let body = br#"{"messageId": "abc", "from": "254712345678", "to": "254110090747",
///                 "profileName": "Jane", "type": "TEXT", "text": "Hello"}"#;
/// let received = "2026-11-23T10:00:00Z".parse()?;
/// let events = WebhookParser::default().parse(body, received)?;
/// let WebhookEvent::Inbound(message) = &events[0] else { panic!("not inbound") };
/// let conversation = message.conversation().expect("a 1:1 message from a phone number");
/// assert_eq!(conversation.customer.to_string(), "254712345678");
/// assert_eq!(message.kind, InboundKind::Text);
/// assert_eq!(message.content, InboundContent::Text { body: "Hello".into() });
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
    unanswered_user_calls_open: bool,
    max_body_bytes: usize,
    business: Option<PhoneNumber>,
    phones: PhoneParser,
}

impl Default for WebhookParser {
    fn default() -> Self {
        Self {
            opening: InboundKind::OPENING_BY_DEFAULT.into_iter().collect(),
            unanswered_user_calls_open: true,
            max_body_bytes: DEFAULT_MAX_WEBHOOK_BYTES,
            business: None,
            phones: PhoneParser::international(),
        }
    }
}

impl WebhookParser {
    /// A parser with the defaults (see [`InboundKind::OPENING_BY_DEFAULT`], unanswered
    /// user calls opening the window, 256 KiB).
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

    /// The same parser deciding whether a user's call that was not answered opens the
    /// window (by default it does: Meta's calling pages say a user-initiated call opens or
    /// renews the window whether or not it is accepted). When it does not, a user's call
    /// opens the window once it is known to have been answered.
    pub fn with_unanswered_user_calls_opening(mut self, opens: bool) -> Self {
        self.unanswered_user_calls_open = opens;
        self
    }

    /// The same parser with another body size limit.
    pub fn with_max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body_bytes = limit;
        self
    }

    /// Reads national numbers (a leading trunk `0`) in LipaChat's flat payloads with a
    /// default country ([`PhoneParser::with_default_country`]), as a gateway configured for
    /// one country may send them. WhatsApp's own webhook carries international numbers
    /// only, and a number without a trunk `0` is always read as international, so a short
    /// foreign number is never taken for a national one.
    pub fn with_default_country(mut self, phones: PhoneParser) -> Self {
        self.phones = phones;
        self
    }

    /// The same parser knowing the business number the webhook belongs to: used when a
    /// payload does not name it (or names one that is not a phone number), and to tell
    /// the customer in a flat status callback.
    pub fn with_business_number(mut self, business: PhoneNumber) -> Self {
        self.business = Some(business);
        self
    }

    /// Whether a kind opens the window. A system message never does, whatever the set.
    pub fn opens_window(&self, kind: InboundKind) -> bool {
        kind != InboundKind::System && self.opening.contains(&kind)
    }

    /// Whether a call event opens the window (when [`InboundKind::Call`] is in the
    /// opening set): a user-initiated call does whether or not it was answered (unless
    /// [`WebhookParser::with_unanswered_user_calls_opening`] says otherwise, then once it
    /// is known to have been answered); a business-initiated call (or one whose direction
    /// is unknown) only once the user accepted it ([`CallEvent::answered`]).
    pub fn opens_window_for_call(&self, call: &CallEvent) -> bool {
        if !self.opens_window(InboundKind::Call) {
            return false;
        }
        match call.direction {
            Some(CallDirection::UserInitiated) => {
                call.answered() == Some(true) || self.unanswered_user_calls_open
            }
            _ => call.answered() == Some(true),
        }
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
        // The common shape (WhatsApp text messages) straight into the events; any other
        // body through the `serde_json::Value` walk, which reads it exactly as before.
        if let Some(events) = whatsapp_typed::parse(self, body, received_at) {
            return Ok(events);
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

/// One JSON value as the field readers see it: a string, a number, or anything else
/// (`null`, a boolean, an array, an object), which no reader takes as text. Both the
/// `serde_json::Value` walk and the typed WhatsApp reader ([`whatsapp_typed`]) hand their
/// fields to the same readers through it, so a field reads the same either way.
#[derive(Debug, Clone, Copy)]
enum Leaf<'v> {
    /// A JSON string, as sent (not trimmed).
    Text(&'v str),
    /// A JSON number.
    Number(&'v serde_json::Number),
    /// Anything else.
    Other,
}

impl<'v> Leaf<'v> {
    /// The field `name` of `object`; absent is [`Leaf::Other`].
    fn of(object: &'v Map<String, Value>, name: &str) -> Self {
        Self::from(object.get(name))
    }

    /// The text of a string (trimmed, non-empty) or number, borrowed where it can be.
    fn trimmed(self) -> Option<Cow<'v, str>> {
        match self {
            Self::Text(s) if !s.trim().is_empty() => Some(Cow::Borrowed(s.trim())),
            Self::Number(n) => Some(Cow::Owned(n.to_string())),
            _ => None,
        }
    }

    /// The text of a string (trimmed, non-empty) or number.
    fn text(self) -> Option<String> {
        self.trimmed().map(Cow::into_owned)
    }

    /// [`Leaf::text`] shortened for an event ([`shorten`]).
    fn short_text(self) -> Option<String> {
        self.trimmed().map(|text| shorten(&text))
    }
}

impl<'v> From<Option<&'v Value>> for Leaf<'v> {
    fn from(value: Option<&'v Value>) -> Self {
        match value {
            Some(Value::String(s)) => Self::Text(s),
            Some(Value::Number(n)) => Self::Number(n),
            _ => Self::Other,
        }
    }
}

/// A string field among `names`, trimmed and non-empty. Numbers are accepted as text.
fn text(object: &Map<String, Value>, names: &[&str]) -> Option<String> {
    names.iter().find_map(|name| Leaf::of(object, name).text())
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
    phone_with(&PhoneParser::international(), object, field)
}

/// [`phone`] read with `phones`: a national number (a leading trunk `0`) takes its default
/// country; otherwise the number is international.
fn phone_with(
    phones: &PhoneParser,
    object: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<PhoneNumber>, WebhookError> {
    phone_of(phones, Leaf::of(object, field), field)
}

/// [`phone_with`] of one field's value.
fn phone_of(
    phones: &PhoneParser,
    value: Leaf<'_>,
    field: &'static str,
) -> Result<Option<PhoneNumber>, WebhookError> {
    let raw = match value {
        Leaf::Number(n) => match n.as_u64() {
            Some(whole) => Cow::Owned(whole.to_string()),
            None => {
                return Err(WebhookError::InvalidField {
                    field,
                    detail: format!(
                        "the number {n} is not a phone number: a phone number written as a JSON number must be a whole number of digits, without sign, fraction or exponent"
                    ),
                });
            }
        },
        _ => match value.trimmed() {
            Some(raw) if is_decimal_rendering(&raw) => {
                return Err(WebhookError::InvalidField {
                    field,
                    detail: format!(
                        "{raw:?} is not a phone number: it is a number with a decimal point (a float written as text); a phone number must be a whole number of digits"
                    ),
                });
            }
            Some(raw) => raw,
            None => return Ok(None),
        },
    };
    phones
        .parse_international_or_trunk(&raw)
        .map(Some)
        .map_err(|e| WebhookError::InvalidField {
            field,
            detail: e.to_string(),
        })
}

/// Whether `raw` is a number written with one decimal point and nothing else but digits
/// (and a leading sign): `254712345678.0`, what a float turned into text gives. The phone
/// parser takes dots for separators between groups (`254.712.345.678`), so such a string
/// would otherwise be read as its digits, another valid number (`2547123456780`).
fn is_decimal_rendering(raw: &str) -> bool {
    let unsigned = raw.strip_prefix(['+', '-']).unwrap_or(raw);
    match unsigned.split_once('.') {
        Some((whole, fraction)) => {
            !whole.is_empty()
                && whole.bytes().all(|b| b.is_ascii_digit())
                && fraction.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// The earliest event time taken from a webhook: 2009-01-01, before WhatsApp existed. An
/// earlier timestamp (`0`, a negative number) is no real event's time; the event is
/// taken as happening when it was received (so a 131049 status dated 1970 cannot give a
/// back-off that is already over).
const EARLIEST_EVENT_SECS: i64 = 1_230_768_000;

/// A timestamp: Unix seconds (or milliseconds, when too large for seconds) as a number or
/// a numeric string, or RFC 3339 with an offset. Capped at `received_at`; none before
/// [`EARLIEST_EVENT_SECS`].
fn timestamp(value: Option<&Value>, received_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    timestamp_of(Leaf::from(value), received_at)
}

/// [`timestamp`] of one field's value.
fn timestamp_of(value: Leaf<'_>, received_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let from_number = |n: i64| {
        if n.unsigned_abs() >= 100_000_000_000 {
            DateTime::from_timestamp_millis(n)
        } else {
            DateTime::from_timestamp(n, 0)
        }
    };
    let at = match value {
        Leaf::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .and_then(from_number),
        Leaf::Text(s) => {
            let s = s.trim();
            match s.parse::<i64>() {
                Ok(n) => from_number(n),
                Err(_) => DateTime::parse_from_rfc3339(s)
                    .ok()
                    .map(|t| t.with_timezone(&Utc)),
            }
        }
        Leaf::Other => None,
    }?;
    (at.timestamp() >= EARLIEST_EVENT_SECS).then(|| at.min(received_at))
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
        assert!(parser.opens_window(InboundKind::Unsupported));
        assert!(parser.opens_window(InboundKind::Call));
        // A system message never opens the window, even when asked to.
        assert!(!parser.opens_window(InboundKind::System));
        assert!(
            !parser
                .clone()
                .with_opening(InboundKind::System, true)
                .opens_window(InboundKind::System)
        );
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
        // Before WhatsApp existed (0, negative): no event's time.
        assert_eq!(t(Value::from(0)), None);
        assert_eq!(t(Value::from("0")), None);
        assert_eq!(t(Value::from(-5)), None);
        assert_eq!(
            t(Value::from(EARLIEST_EVENT_SECS)),
            DateTime::from_timestamp(EARLIEST_EVENT_SECS, 0)
        );
    }
}
