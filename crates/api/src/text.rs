//! A plain text message (`POST /api/v1/whatsapp/message/text`).

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// WhatsApp's limit for a text message body, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;

/// A text message: not only whitespace, at most 4096 characters (Unicode scalar values).
///
/// Deserialisation re-checks it.
///
/// ```
/// use lipachat_api::TextMessage;
///
/// let text = TextMessage::new("Here is the number you asked for.")?;
/// assert_eq!(text.body(), "Here is the number you asked for.");
/// assert!(TextMessage::new(" \n").is_err());
/// assert!(TextMessage::new("x".repeat(4097)).is_err());
/// # Ok::<(), lipachat_api::ValidationError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TextMessageRepr")]
pub struct TextMessage {
    body: String,
}

/// The unchecked shape [`TextMessage`] is deserialised through.
#[derive(Deserialize)]
struct TextMessageRepr {
    body: String,
}

impl TryFrom<TextMessageRepr> for TextMessage {
    type Error = ValidationError;

    fn try_from(repr: TextMessageRepr) -> Result<Self, Self::Error> {
        Self::new(repr.body)
    }
}

impl TextMessage {
    /// A text message; the body is sent as given.
    pub fn new(body: impl Into<String>) -> Result<Self, ValidationError> {
        let body = body.into();
        if body.trim().is_empty() {
            return Err(ValidationError::EmptyText);
        }
        let chars = body.chars().count();
        if chars > MAX_TEXT_CHARS {
            return Err(ValidationError::TextTooLong {
                chars,
                max: MAX_TEXT_CHARS,
            });
        }
        Ok(Self { body })
    }

    /// The text (the wire's `message`).
    pub fn body(&self) -> &str {
        &self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_counts_characters_not_bytes() {
        assert!(TextMessage::new("é".repeat(4096)).is_ok());
        assert_eq!(
            TextMessage::new("é".repeat(4097)),
            Err(ValidationError::TextTooLong {
                chars: 4097,
                max: 4096
            })
        );
        assert_eq!(TextMessage::new(""), Err(ValidationError::EmptyText));
    }

    #[test]
    fn deserialising_revalidates() {
        let ok: TextMessage = serde_json::from_str(r#"{"body":"hi"}"#).unwrap();
        assert_eq!(ok.body(), "hi");
        assert!(serde_json::from_str::<TextMessage>(r#"{"body":"  "}"#).is_err());
        assert!(serde_json::from_str::<TextMessage>(r#"{}"#).is_err());
    }
}
