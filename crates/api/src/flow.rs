//! A WhatsApp Flow (`POST /api/v1/whatsapp/interactive/flows`): text with a button that
//! opens the flow at a given screen, with optional initial data.

use lipachat_session::Conversation;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::MessageId;
use crate::error::ValidationError;
use crate::field::{self, Lines, named};
use crate::request::Addressing;

/// The longest text of a flow message, in characters.
pub const MAX_FLOW_TEXT_CHARS: usize = 1024;
/// The longest call to action (the button's text), in characters: WhatsApp's `flow_cta`
/// limit.
pub const MAX_FLOW_CTA_CHARS: usize = 30;
/// The longest flow id or screen name accepted, in characters. WhatsApp's flow ids are
/// numeric strings of about 16 digits and screen ids short names; 128 leaves room and
/// keeps a pasted document out.
pub const MAX_FLOW_ID_CHARS: usize = 128;
/// The most bytes the initial data may take as JSON: it rides in the request body, and
/// WhatsApp's flows carry small payloads.
pub const MAX_FLOW_DATA_BYTES: usize = 16 * 1024;

/// A flow message: the text, the flow's id, the call to action shown on its button, the
/// first screen, and optional initial data (a JSON object the first screen reads).
///
/// ```
/// use lipachat_api::FlowMessage;
///
/// let signup = FlowMessage::new("Sign up in two minutes", "1234567890123456", "Sign up", "WELCOME")?
///     .with_data(serde_json::json!({"plan": "basic"}))?;
/// assert_eq!(signup.screen(), "WELCOME");
/// assert!(FlowMessage::new("Text", "1234", "A call to action far over thirty characters", "WELCOME").is_err());
/// # Ok::<(), lipachat_api::ValidationError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "FlowRepr")]
pub struct FlowMessage {
    text: String,
    flow_id: String,
    cta: String,
    screen: String,
    // Boxed: most flows carry none, and a free-form message stays small without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Box<Map<String, Value>>>,
}

/// The unchecked shape [`FlowMessage`] is deserialised through.
#[derive(Deserialize)]
struct FlowRepr {
    text: String,
    flow_id: String,
    cta: String,
    screen: String,
    #[serde(default)]
    data: Option<Value>,
}

impl TryFrom<FlowRepr> for FlowMessage {
    type Error = ValidationError;

    fn try_from(repr: FlowRepr) -> Result<Self, Self::Error> {
        let message = Self::new(repr.text, repr.flow_id, repr.cta, repr.screen)?;
        match repr.data {
            Some(data) => message.with_data(data),
            None => Ok(message),
        }
    }
}

/// An identifier-like field: not blank, within the limit, no whitespace or control
/// characters.
fn check_identifier(name: &'static str, value: &str) -> Result<(), ValidationError> {
    field::required(named(name), value, MAX_FLOW_ID_CHARS, Lines::One)?;
    if value.chars().any(char::is_whitespace) {
        return Err(ValidationError::InvalidField {
            field: name.into(),
            reason: "must not contain spaces",
        });
    }
    Ok(())
}

impl FlowMessage {
    /// A flow message without initial data. `text` 1 to 1024 characters; `cta` 1 to 30
    /// characters on one line; `flow_id` and `screen` 1 to 128 characters without spaces.
    pub fn new(
        text: impl Into<String>,
        flow_id: impl Into<String>,
        cta: impl Into<String>,
        screen: impl Into<String>,
    ) -> Result<Self, ValidationError> {
        let (text, flow_id, cta, screen) = (text.into(), flow_id.into(), cta.into(), screen.into());
        field::required(named("text"), &text, MAX_FLOW_TEXT_CHARS, Lines::Many)?;
        check_identifier("flow id", &flow_id)?;
        field::required(
            named("call to action"),
            &cta,
            MAX_FLOW_CTA_CHARS,
            Lines::One,
        )?;
        check_identifier("screen", &screen)?;
        Ok(Self {
            text,
            flow_id,
            cta,
            screen,
            data: None,
        })
    }

    /// The same flow with initial data: a JSON object of at most 16 KiB.
    pub fn with_data(mut self, data: Value) -> Result<Self, ValidationError> {
        let Value::Object(data) = data else {
            return Err(ValidationError::InvalidField {
                field: "initial data".into(),
                reason: "must be a JSON object",
            });
        };
        let bytes = serde_json::to_vec(&data).map_or(usize::MAX, |bytes| bytes.len());
        if bytes > MAX_FLOW_DATA_BYTES {
            return Err(ValidationError::InvalidField {
                field: "initial data".into(),
                reason: "larger than 16 KiB as JSON",
            });
        }
        self.data = Some(Box::new(data));
        Ok(self)
    }

    /// The text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The flow's id.
    pub fn flow_id(&self) -> &str {
        &self.flow_id
    }

    /// The call to action on the flow's button.
    pub fn cta(&self) -> &str {
        &self.cta
    }

    /// The first screen.
    pub fn screen(&self) -> &str {
        &self.screen
    }

    /// The initial data, if any.
    pub fn data(&self) -> Option<&Map<String, Value>> {
        self.data.as_deref()
    }
}

/// Body of `POST /api/v1/whatsapp/interactive/flows`, in the documented field order:
/// `{messageId, from, to, text, flowId, flowCta, screen, data?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowRequest {
    /// `messageId`, `from` and `to`.
    #[serde(flatten)]
    pub addressing: Addressing,
    /// The text.
    pub text: String,
    /// The flow's id.
    pub flow_id: String,
    /// The call to action.
    pub flow_cta: String,
    /// The first screen.
    pub screen: String,
    /// The initial data, omitted when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl FlowRequest {
    /// The request for one send of `message` in `conversation`;
    /// [`ValidationError::NotAddressable`] when the customer has no phone number.
    pub fn new(
        conversation: Conversation,
        id: MessageId,
        message: &FlowMessage,
    ) -> Result<Self, ValidationError> {
        Ok(Self {
            addressing: Addressing::new(conversation, id)?,
            text: message.text.clone(),
            flow_id: message.flow_id.clone(),
            flow_cta: message.cta.clone(),
            screen: message.screen.clone(),
            data: message.data.as_deref().cloned().map(Value::Object),
        })
    }

    /// The conversation, id and (re-validated) flow this request carries.
    #[cfg(test)]
    pub(crate) fn into_parts(
        self,
    ) -> Result<(Conversation, MessageId, FlowMessage), ValidationError> {
        let message = FlowMessage::try_from(FlowRepr {
            text: self.text,
            flow_id: self.flow_id,
            cta: self.flow_cta,
            screen: self.screen,
            data: self.data,
        })?;
        Ok((
            self.addressing.conversation(),
            self.addressing.message_id,
            message,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_limits() {
        let ok = |cta: &str| FlowMessage::new("Text", "123", cta, "WELCOME");
        assert!(ok(&"c".repeat(30)).is_ok());
        assert!(matches!(
            ok(&"c".repeat(31)),
            Err(ValidationError::FieldTooLong {
                chars: 31,
                max: 30,
                ..
            })
        ));
        assert!(FlowMessage::new("Text", "12 3", "Go", "WELCOME").is_err());
        assert!(FlowMessage::new("Text", "123", "Go", "").is_err());
        assert!(FlowMessage::new("Text", "1".repeat(129), "Go", "S").is_err());
        let flow = ok("Go").unwrap();
        assert!(flow.clone().with_data(serde_json::json!([1])).is_err());
        let big = serde_json::json!({"k": "x".repeat(MAX_FLOW_DATA_BYTES)});
        assert!(flow.clone().with_data(big).is_err());
        let with = flow.with_data(serde_json::json!({"a": 1})).unwrap();
        let stored = serde_json::to_value(&with).unwrap();
        assert_eq!(serde_json::from_value::<FlowMessage>(stored).unwrap(), with);
    }
}
