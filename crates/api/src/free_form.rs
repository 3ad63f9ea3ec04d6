//! Free-form messages: every kind WhatsApp allows only inside the 24-hour window.

use serde::{Deserialize, Serialize};

use crate::contact::ContactMessage;
use crate::endpoint::Endpoint;
use crate::text::TextMessage;

/// A message that may be sent only while the customer service window is open.
///
/// Stored (for an outbox) as `{"kind": "contact", "message": {...}}`; each inner message
/// re-validates itself when deserialised. New kinds (media, buttons) become new variants.
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
}

impl FreeFormMessage {
    /// The endpoint it is sent to.
    pub fn endpoint(&self) -> Endpoint {
        match self {
            Self::Contact(_) => Endpoint::Contact,
            Self::Text(_) => Endpoint::Text,
        }
    }

    /// The endpoint's path (`/api/v1/whatsapp/contact`, `/api/v1/whatsapp/message/text`).
    pub fn path(&self) -> &'static str {
        self.endpoint().path()
    }

    /// The kind's name, as stored: `contact` or `text`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Contact(_) => "contact",
            Self::Text(_) => "text",
        }
    }
}

impl From<ContactMessage> for FreeFormMessage {
    fn from(message: ContactMessage) -> Self {
        Self::Contact(message)
    }
}

impl From<TextMessage> for FreeFormMessage {
    fn from(message: TextMessage) -> Self {
        Self::Text(message)
    }
}

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
