//! What an inbound message carries: its content, what it replies to, the ad it came
//! from; read from WhatsApp's message objects and LipaChat's flat payloads alike.

use chrono::{DateTime, Utc};
use lipachat_session::{Bsuid, PhoneNumber};
use serde_json::{Map, Value};

use super::{InboundKind, Leaf, phone, shorten, text, timestamp};

/// The kind of a media message: the same type a sent [`MediaMessage`](crate::MediaMessage)
/// names its kind with.
pub use crate::media::MediaKind;

/// A media item the customer sent. WhatsApp gives a media `id` (to download through its
/// API) and, in newer versions, a `url`; LipaChat gives a `url`.
#[derive(Debug, Clone, PartialEq)]
pub struct Media {
    /// Which kind of media.
    pub kind: MediaKind,
    /// WhatsApp's media id, when given.
    pub id: Option<String>,
    /// Where to fetch it, when given (`url`, or `link`).
    pub url: Option<String>,
    /// Its MIME type (`image/jpeg`, `audio/ogg; codecs=opus`, ...), when given.
    pub mime_type: Option<String>,
    /// The caption the customer wrote, when any.
    pub caption: Option<String>,
    /// A document's file name, when given.
    pub filename: Option<String>,
    /// The file's SHA-256 (base64, as WhatsApp gives it), when given.
    pub sha256: Option<String>,
    /// For audio: whether it is a voice note, when the payload says.
    pub voice: Option<bool>,
    /// For a sticker: whether it is animated, when the payload says.
    pub animated: Option<bool>,
}

/// A shared location.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    /// Latitude in degrees, when readable (a number or a numeric string).
    pub latitude: Option<f64>,
    /// Longitude in degrees, when readable (LipaChat's docs spell it `longtitude`; both
    /// spellings are read).
    pub longitude: Option<f64>,
    /// The place's name, for a chosen place.
    pub name: Option<String>,
    /// The place's address, for a chosen place.
    pub address: Option<String>,
    /// A link to the place, when given.
    pub url: Option<String>,
}

/// One phone number on a shared contact card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactCardPhone {
    /// The number as written on the card (any spelling; not validated).
    pub phone: Option<String>,
    /// The WhatsApp id of that number, when it is on WhatsApp.
    pub wa_id: Option<String>,
    /// Its label (`CELL`, `HOME`, `WORK`, ...).
    pub label: Option<String>,
}

/// One email address on a shared contact card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactCardEmail {
    /// The address.
    pub email: Option<String>,
    /// Its label (`HOME`, `WORK`, ...).
    pub label: Option<String>,
}

/// A contact card the customer shared.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactCard {
    /// The name as shown (`name.formatted_name`, or LipaChat's `formattedName`).
    pub formatted_name: Option<String>,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Phone numbers.
    pub phones: Vec<ContactCardPhone>,
    /// Email addresses.
    pub emails: Vec<ContactCardEmail>,
    /// The whole card as sent (addresses, organisation, URLs, birthday, vCard, ...).
    pub raw: Value,
}

/// A reply to an interactive message.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum InteractiveReply {
    /// A tap on a reply button.
    Button {
        /// The button's id (set by the business when sending).
        id: Option<String>,
        /// The button's title.
        title: Option<String>,
    },
    /// A choice from a list.
    List {
        /// The row's id.
        id: Option<String>,
        /// The row's title.
        title: Option<String>,
        /// The row's description, when it had one.
        description: Option<String>,
    },
    /// A completed flow (WhatsApp's `nfm_reply`), or an address message.
    Flow {
        /// `flow`, `address_message`, ... when given.
        name: Option<String>,
        /// The text shown in the chat (`Sent` for a flow).
        body: Option<String>,
        /// The flow's answers, as the JSON text WhatsApp sent.
        response_json: Option<String>,
    },
    /// Another reply (a call permission reply, or one this crate does not know), or an
    /// interactive message whose reply object is missing.
    Other {
        /// Its `type`, when given.
        kind: Option<String>,
        /// The interactive object as sent (`null` when missing).
        raw: Value,
    },
}

/// One product in an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderItem {
    /// The product's id in the catalogue.
    pub product_retailer_id: Option<String>,
    /// How many.
    pub quantity: Option<u64>,
    /// The unit price as WhatsApp wrote it (a decimal number, kept as text so that no
    /// rounding happens).
    pub item_price: Option<String>,
    /// The currency (ISO 4217).
    pub currency: Option<String>,
}

/// An order from a catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// The catalogue's id.
    pub catalog_id: Option<String>,
    /// The text the customer added, when any.
    pub text: Option<String>,
    /// The products.
    pub items: Vec<OrderItem>,
}

/// An error WhatsApp attached (to an unsupported message, a call, a status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhatsAppError {
    /// The numeric code (131051 for an unsupported message type, ...).
    pub code: Option<u32>,
    /// The title.
    pub title: Option<String>,
    /// The message, when it differs from the title.
    pub message: Option<String>,
    /// `error_data.details`.
    pub details: Option<String>,
}

/// What a system message reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SystemChangeKind {
    /// `user_changed_number`: the user changed their phone number (a new BSUID comes with it).
    UserChangedNumber,
    /// `user_changed_user_id`: the user's business-scoped user id changed.
    UserChangedUserId,
    /// `customer_changed_number`: the older name of a number change.
    CustomerChangedNumber,
    /// `customer_identity_changed`: the user's identity key changed (reinstalled, new device).
    CustomerIdentityChanged,
    /// Another `type`, as given.
    Other(String),
}

impl SystemChangeKind {
    fn from_wire(name: &str) -> Self {
        match name.trim().to_ascii_lowercase().as_str() {
            "user_changed_number" => Self::UserChangedNumber,
            "user_changed_user_id" => Self::UserChangedUserId,
            "customer_changed_number" => Self::CustomerChangedNumber,
            "customer_identity_changed" => Self::CustomerIdentityChanged,
            _ => Self::Other(shorten(name)),
        }
    }
}

/// A system message: the user's number or identity changed. It is not written by the
/// user and never opens the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemChange {
    /// What changed (`system.type`), when given.
    pub kind: Option<SystemChangeKind>,
    /// The text WhatsApp shows (`User A changed from … to …`).
    pub body: Option<String>,
    /// The new phone number (`system.wa_id`, or the older `new_wa_id`), when given.
    pub new_phone: Option<PhoneNumber>,
    /// The new business-scoped user id (`system.user_id`), when given.
    pub new_user_id: Option<Bsuid>,
    /// The new parent business-scoped user id (`system.parent_user_id`), when given.
    pub new_parent_user_id: Option<Bsuid>,
    /// The previous business-scoped user id (`system.previous_user_id`), when given.
    pub previous_user_id: Option<Bsuid>,
}

impl SystemChange {
    /// Whether it reports a new phone number (`user_changed_number`, or the older
    /// `customer_changed_number`).
    pub fn is_number_change(&self) -> bool {
        matches!(
            self.kind,
            Some(SystemChangeKind::UserChangedNumber | SystemChangeKind::CustomerChangedNumber)
        )
    }

    /// Whether it reports a new business-scoped user id (`user_changed_user_id`).
    pub fn is_user_id_change(&self) -> bool {
        self.kind == Some(SystemChangeKind::UserChangedUserId)
    }
}

/// Who started a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CallDirection {
    /// The user called the business (`USER_INITIATED`).
    UserInitiated,
    /// The business called the user (`BUSINESS_INITIATED`).
    BusinessInitiated,
}

impl CallDirection {
    pub(super) fn from_wire(name: &str) -> Option<Self> {
        match name.trim().to_ascii_uppercase().as_str() {
            "USER_INITIATED" => Some(Self::UserInitiated),
            "BUSINESS_INITIATED" => Some(Self::BusinessInitiated),
            _ => None,
        }
    }
}

/// Which call webhook this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CallEventKind {
    /// The call is being set up (`event: connect`): for a user's call, before the
    /// business answers; for the business's call, before the user answers.
    Connect,
    /// The call ended (`event: terminate`), with its status and duration.
    Terminate,
    /// A status of a business-initiated call (`statuses[]` with `type: call`: `RINGING`,
    /// `ACCEPTED`, `REJECTED`).
    Status,
    /// Another `event`.
    Other,
}

/// A call event from WhatsApp's `calls` webhook field.
///
/// Per Meta's calling pages, a user-initiated call opens or renews the window whether or
/// not it is answered, and a business-initiated call does once the user accepts it; see
/// [`CallEvent::answered`] and [`WebhookParser::opens_window_for_call`](super::WebhookParser::opens_window_for_call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEvent {
    /// WhatsApp's call id (`wacid.…`), shared by a call's connect, status and terminate
    /// events.
    pub call_id: Option<String>,
    /// Which event.
    pub event: CallEventKind,
    /// Who started the call: given, or told by which side is the business number.
    pub direction: Option<CallDirection>,
    /// The status as given (`COMPLETED`, `FAILED`, `RINGING`, `ACCEPTED`, `REJECTED`).
    pub status: Option<String>,
    /// How long the call lasted, in seconds, for a terminated call.
    pub duration_seconds: Option<u64>,
    /// When the call was answered (`start_time`), for a terminated call.
    pub started_at: Option<DateTime<Utc>>,
    /// When the call ended (`end_time`), for a terminated call.
    pub ended_at: Option<DateTime<Utc>>,
    /// The errors WhatsApp attached, if any.
    pub errors: Vec<WhatsAppError>,
}

impl CallEvent {
    /// Whether the call was answered: `Some(true)` for an `ACCEPTED` status or a
    /// terminated call that lasted (a duration above 0, or a `start_time`), `Some(false)`
    /// for a `REJECTED` status or a terminated call with no duration and status `FAILED`
    /// (or a duration of 0); `None` while it is not known (a connect, a `RINGING` status).
    pub fn answered(&self) -> Option<bool> {
        let status = self.status.as_deref().map(str::to_ascii_uppercase);
        match self.event {
            CallEventKind::Status => match status.as_deref() {
                Some("ACCEPTED") => Some(true),
                Some("REJECTED") => Some(false),
                _ => None,
            },
            CallEventKind::Terminate => match (self.duration_seconds, self.started_at) {
                (Some(seconds), _) => Some(seconds > 0),
                (None, Some(_)) => Some(true),
                (None, None) if status.as_deref() == Some("FAILED") => Some(false),
                (None, None) => None,
            },
            CallEventKind::Connect | CallEventKind::Other => None,
        }
    }
}

/// What the customer sent.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum InboundContent {
    /// Text.
    Text {
        /// What the customer wrote (as sent, not trimmed).
        body: String,
    },
    /// An image, video, audio or voice note, document or sticker.
    Media(Media),
    /// A shared location.
    Location(Location),
    /// One or more shared contact cards.
    Contacts(Vec<ContactCard>),
    /// A reply to an interactive message.
    Interactive(InteractiveReply),
    /// A tap on a template's quick-reply button.
    Button {
        /// The payload the business set on the button.
        payload: Option<String>,
        /// The button's text.
        text: Option<String>,
    },
    /// A reaction to a message.
    Reaction {
        /// The emoji; `None` (or empty on the wire) when the customer removed a reaction.
        emoji: Option<String>,
        /// The id of the message reacted to.
        message_id: Option<String>,
    },
    /// An order from a catalogue.
    Order(Order),
    /// A message type WhatsApp does not support (yet).
    Unsupported {
        /// The type WhatsApp names in `unsupported.type`, when given.
        unsupported_type: Option<String>,
        /// WhatsApp's error detail (131051 "Message type unknown", ...).
        errors: Vec<WhatsAppError>,
    },
    /// The user's number or identity changed.
    System(SystemChange),
    /// A call (see [`CallEvent`]).
    Call(CallEvent),
    /// A kind this crate does not know, kept whole.
    Other {
        /// The payload's `type`.
        kind: String,
        /// The whole message object as sent.
        raw: Value,
    },
}

impl InboundContent {
    /// Whether it is a reaction that removes an earlier one (an empty emoji).
    pub fn is_reaction_removal(&self) -> bool {
        matches!(self, Self::Reaction { emoji: None, .. })
    }

    /// The text a customer wrote: a text body, a media caption, a button's or reply's
    /// title, an order's text.
    pub fn text(&self) -> Option<&str> {
        match self {
            Self::Text { body } => Some(body),
            Self::Media(media) => media.caption.as_deref(),
            Self::Button { text, .. } => text.as_deref(),
            Self::Interactive(
                InteractiveReply::Button { title, .. } | InteractiveReply::List { title, .. },
            ) => title.as_deref(),
            Self::Order(order) => order.text.as_deref(),
            _ => None,
        }
    }
}

/// The message another one replies to or was forwarded with (`context`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageContext {
    /// The id of the message replied to.
    pub message_id: Option<String>,
    /// Who sent the message replied to (a phone number, as given).
    pub from: Option<String>,
    /// Whether the message was forwarded.
    pub forwarded: bool,
    /// Whether it was forwarded more than five times.
    pub frequently_forwarded: bool,
    /// The product asked about, for a message sent from a product.
    pub referred_product: Option<ReferredProduct>,
}

/// A product a message refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferredProduct {
    /// The catalogue's id.
    pub catalog_id: Option<String>,
    /// The product's id in the catalogue.
    pub product_retailer_id: Option<String>,
}

/// The click-to-WhatsApp ad or post the customer came from (`referral`).
///
/// A `ctwa_clid` marks a free entry point conversation: the business's reply within 24
/// hours opens 72 hours of free messages (no permission beyond the 24-hour window).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referral {
    /// The ad's or post's URL.
    pub source_url: Option<String>,
    /// `ad` or `post`.
    pub source_type: Option<String>,
    /// The ad's or post's id.
    pub source_id: Option<String>,
    /// The ad's headline.
    pub headline: Option<String>,
    /// The ad's text.
    pub body: Option<String>,
    /// `image` or `video`.
    pub media_type: Option<String>,
    /// The image's URL.
    pub image_url: Option<String>,
    /// The video's URL.
    pub video_url: Option<String>,
    /// The video thumbnail's URL.
    pub thumbnail_url: Option<String>,
    /// The click id.
    pub ctwa_clid: Option<String>,
}

/// A string exactly as sent (not trimmed); `None` when absent or not a string.
fn raw_string(object: &Map<String, Value>, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|name| object.get(*name)?.as_str().map(str::to_owned))
}

/// A boolean, also from the strings `true`/`false`.
fn flag(object: &Map<String, Value>, name: &str) -> Option<bool> {
    match object.get(name)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A finite number, also from a numeric string.
fn number(object: &Map<String, Value>, names: &[&str]) -> Option<f64> {
    names.iter().find_map(|name| match object.get(*name)? {
        Value::Number(n) => n.as_f64().filter(|f| f.is_finite()),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    })
}

/// A whole non-negative number, also from a numeric string.
fn count(object: &Map<String, Value>, name: &str) -> Option<u64> {
    match object.get(name)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A business-scoped user id field; `None` when absent or malformed.
pub(super) fn bsuid(object: &Map<String, Value>, names: &[&str]) -> Option<Bsuid> {
    names
        .iter()
        .find_map(|name| bsuid_of(Leaf::of(object, name)))
}

/// [`bsuid`] of one field's value.
pub(super) fn bsuid_of(value: Leaf<'_>) -> Option<Bsuid> {
    value.trimmed().and_then(|raw| Bsuid::parse(&raw).ok())
}

/// The objects of an array field (non-objects skipped).
fn objects<'a>(
    object: &'a Map<String, Value>,
    name: &str,
) -> impl Iterator<Item = &'a Map<String, Value>> {
    object
        .get(name)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

/// WhatsApp's `errors` array (or a single `error` object).
pub(super) fn errors(object: &Map<String, Value>) -> Vec<WhatsAppError> {
    let single = object.get("error").and_then(Value::as_object);
    objects(object, "errors")
        .chain(single)
        .map(|error| {
            let title = text(error, &["title"]).map(|t| shorten(&t));
            let message = text(error, &["message"])
                .map(|m| shorten(&m))
                .filter(|m| Some(m) != title.as_ref());
            WhatsAppError {
                code: text(error, &["code"]).and_then(|c| c.parse().ok()),
                title,
                message,
                details: error
                    .get("error_data")
                    .and_then(Value::as_object)
                    .and_then(|data| text(data, &["details"]))
                    .or_else(|| text(error, &["details"]))
                    .map(|d| shorten(&d)),
            }
        })
        .collect()
}

/// The object holding a message's content: `message[type]`, else the message itself (a
/// flat payload with its fields at the top).
fn body_object<'a>(message: &'a Map<String, Value>, key: &str) -> &'a Map<String, Value> {
    message
        .get(key)
        .and_then(Value::as_object)
        .unwrap_or(message)
}

/// Reads a message's content, given its kind and its `type` as sent.
pub(super) fn read(
    kind: InboundKind,
    wire_type: &str,
    message: &Map<String, Value>,
) -> InboundContent {
    let key = wire_type.trim().to_ascii_lowercase();
    match kind {
        InboundKind::Text => InboundContent::Text {
            body: match message.get("text") {
                Some(Value::String(body)) => body.clone(),
                Some(Value::Object(text)) => raw_string(text, &["body"]).unwrap_or_default(),
                _ => raw_string(message, &["body", "message"]).unwrap_or_default(),
            },
        },
        InboundKind::Image => media(MediaKind::Image, body_object(message, "image")),
        InboundKind::Video => media(MediaKind::Video, body_object(message, "video")),
        InboundKind::Audio => {
            let key = if message.contains_key("voice") {
                "voice"
            } else {
                "audio"
            };
            let mut content = media(MediaKind::Audio, body_object(message, key));
            if let InboundContent::Media(media) = &mut content
                && media.voice.is_none()
                && key == "voice"
            {
                media.voice = Some(true);
            }
            content
        }
        InboundKind::Document => {
            let key = if message.contains_key("file") {
                "file"
            } else {
                "document"
            };
            media(MediaKind::Document, body_object(message, key))
        }
        InboundKind::Sticker => media(MediaKind::Sticker, body_object(message, "sticker")),
        InboundKind::Location => location(body_object(message, "location")),
        InboundKind::Contacts => InboundContent::Contacts(contact_cards(message)),
        InboundKind::Interactive => InboundContent::Interactive(interactive(message, &key)),
        InboundKind::Button => {
            let button = body_object(message, "button");
            InboundContent::Button {
                payload: text(button, &["payload"]),
                text: raw_string(button, &["text"]).filter(|t| !t.is_empty()),
            }
        }
        InboundKind::Reaction => {
            let reaction = body_object(message, "reaction");
            InboundContent::Reaction {
                emoji: raw_string(reaction, &["emoji"]).filter(|e| !e.trim().is_empty()),
                message_id: text(reaction, &["message_id", "messageId"]).map(|id| shorten(&id)),
            }
        }
        InboundKind::Order => InboundContent::Order(order(body_object(message, "order"))),
        InboundKind::Unsupported => InboundContent::Unsupported {
            unsupported_type: message
                .get("unsupported")
                .and_then(Value::as_object)
                .and_then(|u| text(u, &["type"])),
            errors: errors(message),
        },
        InboundKind::System => InboundContent::System(system(body_object(message, "system"))),
        InboundKind::Call | InboundKind::Unknown => InboundContent::Other {
            kind: shorten(wire_type),
            raw: Value::Object(message.clone()),
        },
    }
}

fn media(kind: MediaKind, object: &Map<String, Value>) -> InboundContent {
    InboundContent::Media(Media {
        kind,
        id: text(object, &["id"]),
        url: text(object, &["url", "link", "mediaUrl"]),
        mime_type: text(object, &["mime_type", "mimeType"]),
        caption: raw_string(object, &["caption"]).filter(|c| !c.is_empty()),
        filename: text(object, &["filename", "fileName"]),
        sha256: text(object, &["sha256"]),
        voice: flag(object, "voice"),
        animated: flag(object, "animated"),
    })
}

fn location(object: &Map<String, Value>) -> InboundContent {
    InboundContent::Location(Location {
        latitude: number(object, &["latitude", "lat"]),
        longitude: number(object, &["longitude", "longtitude", "lng"]),
        name: text(object, &["name"]),
        address: text(object, &["address"]),
        url: text(object, &["url"]),
    })
}

fn contact_cards(message: &Map<String, Value>) -> Vec<ContactCard> {
    let cards: Vec<&Map<String, Value>> = match message.get("contacts").or(message.get("contact")) {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_object).collect(),
        Some(Value::Object(card)) => vec![card],
        _ => Vec::new(),
    };
    cards
        .into_iter()
        .map(|card| {
            let name = card.get("name").and_then(Value::as_object);
            let from_name = |names: &[&str]| name.and_then(|n| text(n, names));
            ContactCard {
                formatted_name: from_name(&["formatted_name", "formattedName"]),
                first_name: from_name(&["first_name", "firstName"]),
                last_name: from_name(&["last_name", "lastName"]),
                phones: objects(card, "phones")
                    .map(|p| ContactCardPhone {
                        phone: text(p, &["phone"]),
                        wa_id: text(p, &["wa_id", "waId"]),
                        label: text(p, &["type"]),
                    })
                    .collect(),
                emails: objects(card, "emails")
                    .map(|e| ContactCardEmail {
                        email: text(e, &["email"]),
                        label: text(e, &["type"]),
                    })
                    .collect(),
                raw: Value::Object(card.clone()),
            }
        })
        .collect()
}

fn interactive(message: &Map<String, Value>, key: &str) -> InteractiveReply {
    // WhatsApp nests the reply in `interactive`; a flat payload may name the reply type
    // itself (`button_reply`, `list_reply`).
    let Some(interactive) = message
        .get("interactive")
        .and_then(Value::as_object)
        .or_else(|| (key != "interactive").then_some(message))
    else {
        return InteractiveReply::Other {
            kind: None,
            raw: Value::Null,
        };
    };
    let reply_type = text(interactive, &["type"]).unwrap_or_else(|| key.to_owned());
    let reply = |name: &str| {
        interactive
            .get(name)
            .and_then(Value::as_object)
            .unwrap_or(interactive)
    };
    match reply_type.to_ascii_lowercase().as_str() {
        "button_reply" | "button" => {
            let reply = reply("button_reply");
            InteractiveReply::Button {
                id: text(reply, &["id"]),
                title: raw_string(reply, &["title"]),
            }
        }
        "list_reply" | "list" => {
            let reply = reply("list_reply");
            InteractiveReply::List {
                id: text(reply, &["id"]),
                title: raw_string(reply, &["title"]),
                description: raw_string(reply, &["description"]),
            }
        }
        "nfm_reply" | "flow" => {
            let reply = reply("nfm_reply");
            InteractiveReply::Flow {
                name: text(reply, &["name"]),
                body: raw_string(reply, &["body"]),
                response_json: match reply.get("response_json") {
                    Some(Value::String(json)) => Some(json.clone()),
                    Some(other) if !other.is_null() => Some(other.to_string()),
                    _ => None,
                },
            }
        }
        _ => InteractiveReply::Other {
            kind: Some(shorten(&reply_type)),
            raw: Value::Object(interactive.clone()),
        },
    }
}

fn order(object: &Map<String, Value>) -> Order {
    Order {
        catalog_id: text(object, &["catalog_id"]),
        text: raw_string(object, &["text"]).filter(|t| !t.is_empty()),
        items: objects(object, "product_items")
            .map(|item| OrderItem {
                product_retailer_id: text(item, &["product_retailer_id"]),
                quantity: count(item, "quantity"),
                item_price: text(item, &["item_price"]),
                currency: text(item, &["currency"]),
            })
            .collect(),
    }
}

fn system(object: &Map<String, Value>) -> SystemChange {
    SystemChange {
        kind: text(object, &["type"]).map(|t| SystemChangeKind::from_wire(&t)),
        body: raw_string(object, &["body"]).map(|b| shorten(&b)),
        new_phone: phone(object, "wa_id")
            .ok()
            .flatten()
            .or_else(|| phone(object, "new_wa_id").ok().flatten()),
        new_user_id: bsuid(object, &["user_id"]),
        new_parent_user_id: bsuid(object, &["parent_user_id"]),
        previous_user_id: bsuid(object, &["previous_user_id"]),
    }
}

/// A message's `context`, when it has one.
pub(super) fn context(message: &Map<String, Value>) -> Option<MessageContext> {
    let context = message.get("context")?.as_object()?;
    Some(MessageContext {
        message_id: text(context, &["id", "message_id"]).map(|id| shorten(&id)),
        from: text(context, &["from"]).map(|f| shorten(&f)),
        forwarded: flag(context, "forwarded").unwrap_or(false),
        frequently_forwarded: flag(context, "frequently_forwarded").unwrap_or(false),
        referred_product: context
            .get("referred_product")
            .and_then(Value::as_object)
            .map(|product| ReferredProduct {
                catalog_id: text(product, &["catalog_id"]),
                product_retailer_id: text(product, &["product_retailer_id"]),
            }),
    })
}

/// A message's click-to-WhatsApp `referral`, when it has one.
pub(super) fn referral(message: &Map<String, Value>) -> Option<Referral> {
    let referral = message.get("referral")?.as_object()?;
    let field = |name: &str| text(referral, &[name]);
    Some(Referral {
        source_url: field("source_url"),
        source_type: field("source_type"),
        source_id: field("source_id"),
        headline: field("headline"),
        body: field("body"),
        media_type: field("media_type"),
        image_url: field("image_url"),
        video_url: field("video_url"),
        thumbnail_url: field("thumbnail_url"),
        ctwa_clid: field("ctwa_clid"),
    })
}

/// A call event from a `calls[]` item or a call status (`statuses[]` with `type: call`).
pub(super) fn call(
    call: &Map<String, Value>,
    event: CallEventKind,
    direction: Option<CallDirection>,
    received_at: DateTime<Utc>,
) -> CallEvent {
    CallEvent {
        call_id: text(call, &["id"]).map(|id| shorten(&id)),
        event,
        direction,
        status: text(call, &["status"]).map(|s| shorten(&s)),
        duration_seconds: count(call, "duration"),
        started_at: timestamp(call.get("start_time"), received_at),
        ended_at: timestamp(call.get("end_time"), received_at),
        errors: errors(call),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read_json(kind: &str, message: Value) -> InboundContent {
        let message = message.as_object().unwrap().clone();
        read(InboundKind::from_wire(kind), kind, &message)
    }

    #[test]
    fn media_of_every_kind() {
        let image = read_json(
            "image",
            json!({"type": "image", "image": {"id": "1", "mime_type": "image/jpeg", "sha256": "abc=", "caption": "look", "url": "https://x/1"}}),
        );
        assert_eq!(
            image,
            InboundContent::Media(Media {
                kind: MediaKind::Image,
                id: Some("1".into()),
                url: Some("https://x/1".into()),
                mime_type: Some("image/jpeg".into()),
                caption: Some("look".into()),
                filename: None,
                sha256: Some("abc=".into()),
                voice: None,
                animated: None,
            })
        );
        assert_eq!(image.text(), Some("look"));
        let voice = read_json(
            "audio",
            json!({"audio": {"id": "2", "voice": true, "mime_type": "audio/ogg; codecs=opus"}}),
        );
        assert!(matches!(
            voice,
            InboundContent::Media(Media {
                kind: MediaKind::Audio,
                voice: Some(true),
                ..
            })
        ));
        // A LipaChat-style flat `voice` type.
        let flat_voice = read_json("voice", json!({"voice": {"url": "https://x/v"}}));
        assert!(matches!(
            flat_voice,
            InboundContent::Media(Media {
                voice: Some(true),
                ..
            })
        ));
        let sticker = read_json(
            "sticker",
            json!({"sticker": {"id": "3", "animated": "true"}}),
        );
        assert!(matches!(
            sticker,
            InboundContent::Media(Media {
                kind: MediaKind::Sticker,
                animated: Some(true),
                ..
            })
        ));
        let document = read_json(
            "DOCUMENT",
            json!({"document": {"url": "https://x/d.pdf", "filename": "d.pdf", "caption": ""}}),
        );
        assert!(matches!(
            &document,
            InboundContent::Media(Media { kind: MediaKind::Document, filename: Some(f), caption: None, .. }) if f == "d.pdf"
        ));
    }

    #[test]
    fn text_body_is_kept_as_sent() {
        assert_eq!(
            read_json("text", json!({"text": {"body": "  hi  "}})),
            InboundContent::Text {
                body: "  hi  ".into()
            }
        );
        assert_eq!(
            read_json("TEXT", json!({"text": "Hello"})),
            InboundContent::Text {
                body: "Hello".into()
            }
        );
        assert_eq!(
            read_json("text", json!({})),
            InboundContent::Text {
                body: String::new()
            }
        );
    }

    #[test]
    fn locations_in_both_spellings() {
        let whatsapp = read_json(
            "location",
            json!({"location": {"latitude": 37.4611978, "longitude": -122.2164385, "name": "HQ", "address": "1 Hacker Way", "url": "https://maps"}}),
        );
        assert_eq!(
            whatsapp,
            InboundContent::Location(Location {
                latitude: Some(37.4611978),
                longitude: Some(-122.2164385),
                name: Some("HQ".into()),
                address: Some("1 Hacker Way".into()),
                url: Some("https://maps".into()),
            })
        );
        let lipachat = read_json(
            "LOCATION",
            json!({"latitude": "-1.28", "longtitude": "36.82"}),
        );
        assert!(
            matches!(lipachat, InboundContent::Location(Location { latitude: Some(la), longitude: Some(lo), .. }) if la == -1.28 && lo == 36.82)
        );
        let nonsense = read_json(
            "location",
            json!({"location": {"latitude": "north", "longitude": null}}),
        );
        assert!(matches!(
            nonsense,
            InboundContent::Location(Location {
                latitude: None,
                longitude: None,
                ..
            })
        ));
    }

    #[test]
    fn interactive_replies() {
        assert_eq!(
            read_json(
                "interactive",
                json!({"interactive": {"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes"}}})
            ),
            InboundContent::Interactive(InteractiveReply::Button {
                id: Some("yes".into()),
                title: Some("Yes".into())
            })
        );
        assert_eq!(
            read_json(
                "interactive",
                json!({"interactive": {"type": "list_reply", "list_reply": {"id": "r1", "title": "Row", "description": "d"}}})
            ),
            InboundContent::Interactive(InteractiveReply::List {
                id: Some("r1".into()),
                title: Some("Row".into()),
                description: Some("d".into())
            })
        );
        assert_eq!(
            read_json(
                "interactive",
                json!({"interactive": {"type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent", "response_json": "{\"a\":1}"}}})
            ),
            InboundContent::Interactive(InteractiveReply::Flow {
                name: Some("flow".into()),
                body: Some("Sent".into()),
                response_json: Some("{\"a\":1}".into())
            })
        );
        // A flat reply type, a future reply type, a missing reply object.
        assert!(matches!(
            read_json("button_reply", json!({"button_reply": {"id": "b"}})),
            InboundContent::Interactive(InteractiveReply::Button { id: Some(_), .. })
        ));
        assert!(matches!(
            read_json("interactive", json!({"interactive": {"type": "call_permission_reply", "call_permission_reply": {"response": "accept"}}})),
            InboundContent::Interactive(InteractiveReply::Other { kind: Some(k), .. }) if k == "call_permission_reply"
        ));
        assert_eq!(
            read_json("interactive", json!({"id": "x"})),
            InboundContent::Interactive(InteractiveReply::Other {
                kind: None,
                raw: Value::Null
            })
        );
    }

    #[test]
    fn reactions_and_their_removal() {
        let added = read_json(
            "reaction",
            json!({"reaction": {"message_id": "wamid.A", "emoji": "😮"}}),
        );
        assert!(!added.is_reaction_removal());
        assert_eq!(
            added,
            InboundContent::Reaction {
                emoji: Some("😮".into()),
                message_id: Some("wamid.A".into())
            }
        );
        for removal in [
            json!({"reaction": {"message_id": "wamid.A", "emoji": ""}}),
            json!({"reaction": {"message_id": "wamid.A"}}),
        ] {
            assert!(read_json("reaction", removal).is_reaction_removal());
        }
    }

    #[test]
    fn orders_keep_prices_as_written() {
        let content = read_json(
            "order",
            json!({"order": {"catalog_id": "354", "text": "", "product_items": [
                {"product_retailer_id": "HAMBURGER", "quantity": 3, "item_price": 30.5, "currency": "ILS"},
                {"product_retailer_id": "SODA", "quantity": "2", "item_price": "10", "currency": "ILS"}
            ]}}),
        );
        let InboundContent::Order(order) = content else {
            panic!("{content:?}")
        };
        assert_eq!(order.catalog_id.as_deref(), Some("354"));
        assert_eq!(order.text, None);
        assert_eq!(order.items[0].item_price.as_deref(), Some("30.5"));
        assert_eq!(order.items[1].quantity, Some(2));
    }

    #[test]
    fn unsupported_and_system() {
        let unsupported = read_json(
            "unsupported",
            json!({"type": "unsupported", "unsupported": {"type": "edit"}, "errors": [{"code": 131051, "title": "Message type unknown", "message": "Message type unknown", "error_data": {"details": "Message type is currently not supported."}}]}),
        );
        assert_eq!(
            unsupported,
            InboundContent::Unsupported {
                unsupported_type: Some("edit".into()),
                errors: vec![WhatsAppError {
                    code: Some(131051),
                    title: Some("Message type unknown".into()),
                    message: None,
                    details: Some("Message type is currently not supported.".into()),
                }],
            }
        );
        let InboundContent::System(change) = read_json(
            "system",
            json!({"system": {"body": "User A changed from 1 to 2", "wa_id": "972912345678", "user_id": "US.2", "type": "user_changed_number"}}),
        ) else {
            panic!()
        };
        assert!(change.is_number_change() && !change.is_user_id_change());
        assert_eq!(change.new_phone, Some("972912345678".parse().unwrap()));
        assert_eq!(change.new_user_id.as_ref().map(Bsuid::as_str), Some("US.2"));
        let InboundContent::System(change) = read_json(
            "system",
            json!({"system": {"type": "customer_changed_number", "new_wa_id": 972912345678u64, "user_id": "not a bsuid"}}),
        ) else {
            panic!()
        };
        assert!(change.is_number_change());
        assert_eq!(change.new_phone, Some("972912345678".parse().unwrap()));
        assert_eq!(change.new_user_id, None);
        let InboundContent::System(change) =
            read_json("system", json!({"system": {"type": "something_new"}}))
        else {
            panic!()
        };
        assert_eq!(
            change.kind,
            Some(SystemChangeKind::Other("something_new".into()))
        );
    }

    #[test]
    fn unknown_kinds_are_kept_whole() {
        let message = json!({"type": "hologram", "hologram": {"depth": 3}, "id": "wamid.H"});
        assert_eq!(
            read_json("hologram", message.clone()),
            InboundContent::Other {
                kind: "hologram".into(),
                raw: message
            }
        );
    }

    #[test]
    fn context_and_referral() {
        let message = json!({
            "context": {"from": "972123456789", "id": "wamid.Q", "forwarded": true,
                        "referred_product": {"catalog_id": "c", "product_retailer_id": "p"}},
            "referral": {"source_url": "https://fb/ad", "source_id": "ADID", "source_type": "ad", "headline": "H",
                         "body": "B", "media_type": "image", "image_url": "https://img", "ctwa_clid": "CLID"}
        });
        let message = message.as_object().unwrap();
        let context = context(message).unwrap();
        assert_eq!(context.message_id.as_deref(), Some("wamid.Q"));
        assert!(context.forwarded && !context.frequently_forwarded);
        assert_eq!(
            context
                .referred_product
                .unwrap()
                .product_retailer_id
                .as_deref(),
            Some("p")
        );
        let referral = referral(message).unwrap();
        assert_eq!(referral.ctwa_clid.as_deref(), Some("CLID"));
        assert_eq!(referral.source_type.as_deref(), Some("ad"));
        assert_eq!(referral.video_url, None);
    }

    #[test]
    fn calls_answered_or_not() {
        let received: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let read_call =
            |value: Value, event| call(value.as_object().unwrap(), event, None, received);
        let completed = read_call(
            json!({"id": "wacid.1", "status": "COMPLETED", "start_time": "1671644824", "end_time": "1671644944", "duration": 120}),
            CallEventKind::Terminate,
        );
        assert_eq!(completed.answered(), Some(true));
        assert_eq!(
            completed.started_at,
            DateTime::from_timestamp(1_671_644_824, 0)
        );
        assert_eq!(
            read_call(json!({"status": "FAILED"}), CallEventKind::Terminate).answered(),
            Some(false)
        );
        assert_eq!(
            read_call(
                json!({"status": "COMPLETED", "duration": 0}),
                CallEventKind::Terminate
            )
            .answered(),
            Some(false)
        );
        assert_eq!(
            read_call(json!({"status": "COMPLETED"}), CallEventKind::Terminate).answered(),
            None
        );
        assert_eq!(
            read_call(json!({"status": "ACCEPTED"}), CallEventKind::Status).answered(),
            Some(true)
        );
        assert_eq!(
            read_call(json!({"status": "rejected"}), CallEventKind::Status).answered(),
            Some(false)
        );
        assert_eq!(
            read_call(json!({"status": "RINGING"}), CallEventKind::Status).answered(),
            None
        );
        assert_eq!(
            read_call(json!({}), CallEventKind::Connect).answered(),
            None
        );
        let failed = read_call(
            json!({"errors": [{"code": 12455, "message": "ERROR_TITLE"}]}),
            CallEventKind::Terminate,
        );
        assert_eq!(failed.errors[0].code, Some(12455));
        assert_eq!(failed.errors[0].message.as_deref(), Some("ERROR_TITLE"));
    }
}
