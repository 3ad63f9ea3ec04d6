//! A request for the customer's location (`POST /api/v1/whatsapp/request_location`):
//! text with a "Send location" button.

use lipachat_session::Conversation;
use serde::{Deserialize, Serialize};

use crate::MessageId;
use crate::error::ValidationError;
use crate::field::{self, Lines, named};
use crate::request::Addressing;

/// The longest text of a location request, in characters.
pub const MAX_LOCATION_REQUEST_CHARS: usize = 1024;

/// Text asking the customer to share their location (1 to 1024 characters).
///
/// ```
/// use lipachat_api::LocationRequestMessage;
///
/// let ask = LocationRequestMessage::new("Where should we deliver?")?;
/// assert_eq!(ask.text(), "Where should we deliver?");
/// assert!(LocationRequestMessage::new("x".repeat(1025)).is_err());
/// # Ok::<(), lipachat_api::ValidationError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "LocationRequestRepr")]
pub struct LocationRequestMessage {
    text: String,
}

/// The unchecked shape [`LocationRequestMessage`] is deserialised through.
#[derive(Deserialize)]
struct LocationRequestRepr {
    text: String,
}

impl TryFrom<LocationRequestRepr> for LocationRequestMessage {
    type Error = ValidationError;

    fn try_from(repr: LocationRequestRepr) -> Result<Self, Self::Error> {
        Self::new(repr.text)
    }
}

impl LocationRequestMessage {
    /// A location request with this text.
    pub fn new(text: impl Into<String>) -> Result<Self, ValidationError> {
        let text = text.into();
        field::required(
            named("text"),
            &text,
            MAX_LOCATION_REQUEST_CHARS,
            Lines::Many,
        )?;
        Ok(Self { text })
    }

    /// The text.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// Body of `POST /api/v1/whatsapp/request_location`: `{messageId, from, to, text}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocationRequestRequest {
    /// `messageId`, `from` and `to`.
    #[serde(flatten)]
    pub addressing: Addressing,
    /// The text.
    pub text: String,
}

impl LocationRequestRequest {
    /// The request for one send of `message` in `conversation`;
    /// [`ValidationError::NotAddressable`] when the customer has no phone number.
    pub fn new(
        conversation: Conversation,
        id: MessageId,
        message: &LocationRequestMessage,
    ) -> Result<Self, ValidationError> {
        Ok(Self {
            addressing: Addressing::new(conversation, id)?,
            text: message.text.clone(),
        })
    }

    /// The conversation, id and (re-validated) message this request carries.
    #[cfg(test)]
    pub(crate) fn into_parts(
        self,
    ) -> Result<(Conversation, MessageId, LocationRequestMessage), ValidationError> {
        Ok((
            self.addressing.conversation(),
            self.addressing.message_id,
            LocationRequestMessage::new(self.text)?,
        ))
    }
}
