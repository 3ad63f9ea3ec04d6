//! Free-form messages: every kind WhatsApp allows only inside the 24-hour window.

use serde::{Deserialize, Serialize};

use crate::contact::ContactMessage;
use crate::endpoint::Endpoint;
use crate::flow::FlowMessage;
use crate::interactive::{ButtonsMessage, ListMessage};
use crate::location_request::LocationRequestMessage;
use crate::media::MediaMessage;
use crate::text::TextMessage;

/// A message that may be sent only while the customer service window is open.
///
/// Stored (for an outbox) as `{"kind": "contact", "message": {...}}`; each inner message
/// re-validates itself when deserialised. The `kind` tag is what keeps stored copies
/// readable across versions: each kind added later is a new tag (`media`, `buttons`,
/// `list`, `location_request`, `flow`), and the tags and inner shapes of the earlier kinds
/// never change, so what an older release queued is read as it was written.
///
/// ```
/// use lipachat_api::{FreeFormMessage, TextMessage};
///
/// let message = FreeFormMessage::Text(TextMessage::new("Hello")?);
/// assert_eq!(message.kind(), "text");
/// assert_eq!(message.path(), "/api/v1/whatsapp/message/text");
/// let stored = serde_json::to_string(&message)?;
/// assert_eq!(stored, r#"{"kind":"text","message":{"body":"Hello"}}"#);
/// assert_eq!(serde_json::from_str::<FreeFormMessage>(&stored)?, message);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FreeFormMessage {
    /// A contact card.
    Contact(ContactMessage),
    /// A text message.
    Text(TextMessage),
    /// An image, video, audio, document or sticker by URL.
    Media(MediaMessage),
    /// Text with reply buttons.
    Buttons(ButtonsMessage),
    /// A list of rows in sections.
    List(ListMessage),
    /// A request for the customer's location.
    LocationRequest(LocationRequestMessage),
    /// A WhatsApp Flow.
    Flow(FlowMessage),
}

impl FreeFormMessage {
    /// Every stored kind name this release reads. A stored message of another kind was
    /// written by a later release: keep it for that release rather than discard it.
    pub const KINDS: [&'static str; 7] = [
        "contact",
        "text",
        "media",
        "buttons",
        "list",
        "location_request",
        "flow",
    ];

    /// The endpoint it is sent to.
    pub fn endpoint(&self) -> Endpoint {
        match self {
            Self::Contact(_) => Endpoint::Contact,
            Self::Text(_) => Endpoint::Text,
            Self::Media(_) => Endpoint::Media,
            Self::Buttons(_) => Endpoint::Buttons,
            Self::List(_) => Endpoint::List,
            Self::LocationRequest(_) => Endpoint::LocationRequest,
            Self::Flow(_) => Endpoint::Flow,
        }
    }

    /// The endpoint's path (`/api/v1/whatsapp/contact`, `/api/v1/whatsapp/message/text`).
    pub fn path(&self) -> &'static str {
        self.endpoint().path()
    }

    /// The kind's name, as stored: `contact`, `text`, `media`, `buttons`, `list`,
    /// `location_request` or `flow` (the endpoint's name).
    pub fn kind(&self) -> &'static str {
        self.endpoint().name()
    }

    /// What the message is, in words, for logs and command output: `contact card`,
    /// `text message`, `image`, `buttons message`, `list message`, `location request`,
    /// `flow message`.
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Contact(_) => "contact card",
            Self::Text(_) => "text message",
            Self::Media(media) => media.kind().name(),
            Self::Buttons(_) => "buttons message",
            Self::List(_) => "list message",
            Self::LocationRequest(_) => "location request",
            Self::Flow(_) => "flow message",
        }
    }
}

impl From<ContactMessage> for FreeFormMessage {
    fn from(message: ContactMessage) -> Self {
        Self::Contact(message)
    }
}

/// `From` for each kind's message type, so `message.into()` makes the free-form message.
macro_rules! free_form_from {
    ($($variant:ident($message:ty)),* $(,)?) => {$(
        impl From<$message> for FreeFormMessage {
            fn from(message: $message) -> Self {
                Self::$variant(message)
            }
        }
    )*};
}

free_form_from!(
    Text(TextMessage),
    Media(MediaMessage),
    Buttons(ButtonsMessage),
    List(ListMessage),
    LocationRequest(LocationRequestMessage),
    Flow(FlowMessage),
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contact::ContactPhone;

    #[test]
    fn stored_form_is_tagged_and_revalidated() {
        let card = ContactMessage::new(
            "Test User",
            vec![ContactPhone::new("254712345678".parse().unwrap(), "Cell")],
        )
        .unwrap();
        let message = FreeFormMessage::from(card);
        assert_eq!(message.kind(), "contact");
        assert_eq!(message.endpoint(), Endpoint::Contact);
        let json = serde_json::to_value(&message).unwrap();
        assert_eq!(json["kind"], "contact");
        assert_eq!(json["message"]["formatted_name"], "Test User");
        assert_eq!(
            serde_json::from_value::<FreeFormMessage>(json).unwrap(),
            message
        );
        for tampered in [
            r#"{"kind":"text","message":{"body":""}}"#,
            r#"{"kind":"contact","message":{"formatted_name":"A","phones":[]}}"#,
            r#"{"kind":"video","message":{}}"#,
            r#"{"kind":"text"}"#,
        ] {
            assert!(
                serde_json::from_str::<FreeFormMessage>(tampered).is_err(),
                "{tampered}"
            );
        }
    }
}
