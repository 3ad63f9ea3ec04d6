//! The exact JSON bodies the gateway receives, as typed structs and as pure functions.
//!
//! The client sends what these functions return, so a `--dry-run` that prints
//! [`free_form_body`] or [`template_body`] shows the very bytes a send would carry (minus
//! the `apiKey` header). The structs are the crate's own; they also deserialise, so the
//! crate's tests read a request back into the message it came from (re-validating
//! everything).

use lipachat_session::{Conversation, PhoneNumber};

/// The customer's phone number, the `to` of every request; a conversation without one
/// (a user known only by a business-scoped user id, a group) cannot be sent to.
pub(crate) fn recipient(conversation: Conversation) -> Result<PhoneNumber, ValidationError> {
    conversation
        .phone()
        .ok_or(ValidationError::NotAddressable { conversation })
}
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The fields the bodies of the newer send endpoints (media, buttons, list, location
/// request, flow) start with, in their documented order: `messageId`, `from`, `to`.
/// Flattened into each of those request structs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Addressing {
    /// The send's id, reused by every retry.
    pub message_id: MessageId,
    /// The business number.
    pub from: PhoneNumber,
    /// The customer.
    pub to: PhoneNumber,
}

impl Addressing {
    /// The addressing of one send in `conversation`; [`ValidationError::NotAddressable`]
    /// when the customer has no phone number.
    pub fn new(conversation: Conversation, id: MessageId) -> Result<Self, ValidationError> {
        Ok(Self {
            message_id: id,
            from: conversation.business,
            to: recipient(conversation)?,
        })
    }

    /// The conversation it addresses.
    #[cfg(test)]
    pub(crate) fn conversation(&self) -> Conversation {
        Conversation::new(self.from, self.to)
    }
}

use crate::contact::ContactMessage;
#[cfg(test)]
use crate::contact::ContactPhone;
use crate::error::ValidationError;
use crate::flow::FlowRequest;
use crate::free_form::FreeFormMessage;
use crate::interactive::{ButtonsRequest, ListRequest};
use crate::location_request::LocationRequestRequest;
use crate::media::MediaRequest;
#[cfg(test)]
use crate::template::MediaUrl;
use crate::template::{TemplateHeader, TemplateMessage};
use crate::text::TextMessage;
use lipachat_session::MessageId;

/// Body of `POST /api/v1/whatsapp/contact`, exactly as the gateway's page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContactRequest {
    /// The send's id, reused by every retry.
    pub message_id: MessageId,
    /// The customer.
    pub to: PhoneNumber,
    /// The business number.
    pub from: PhoneNumber,
    /// `{"formattedName": ...}`.
    pub name: ContactName,
    /// The card's phone numbers.
    pub phones: Vec<ContactRequestPhone>,
}

/// The `name` object of a contact request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContactName {
    /// The name shown in the chat.
    pub formatted_name: String,
}

/// One entry of a contact request's `phones`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContactRequestPhone {
    /// The number.
    pub phone: PhoneNumber,
    /// Cell, Home, Work, ...
    #[serde(rename = "type")]
    pub phone_type: String,
    /// The WhatsApp id, omitted when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<PhoneNumber>,
}

impl ContactRequest {
    /// The request for one send of `message` in `conversation` (`from` is the business,
    /// `to` the customer); [`ValidationError::NotAddressable`] when the customer has no
    /// phone number.
    pub fn new(
        conversation: Conversation,
        id: MessageId,
        message: &ContactMessage,
    ) -> Result<Self, ValidationError> {
        Ok(Self {
            message_id: id,
            to: recipient(conversation)?,
            from: conversation.business,
            name: ContactName {
                formatted_name: message.formatted_name().to_owned(),
            },
            phones: message
                .phones()
                .iter()
                .map(|p| ContactRequestPhone {
                    phone: p.phone,
                    phone_type: p.phone_type.clone(),
                    wa_id: p.wa_id,
                })
                .collect(),
        })
    }

    /// The conversation, id and (re-validated) card this request carries.
    #[cfg(test)]
    pub(crate) fn into_parts(
        self,
    ) -> Result<(Conversation, MessageId, ContactMessage), ValidationError> {
        let phones = self
            .phones
            .into_iter()
            .map(|p| ContactPhone {
                phone: p.phone,
                phone_type: p.phone_type,
                wa_id: p.wa_id,
            })
            .collect();
        let message = ContactMessage::new(self.name.formatted_name, phones)?;
        Ok((
            Conversation::new(self.from, self.to),
            self.message_id,
            message,
        ))
    }
}

/// Body of `POST /api/v1/whatsapp/message/text`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TextRequest {
    /// The send's id, reused by every retry.
    pub message_id: MessageId,
    /// The customer.
    pub to: PhoneNumber,
    /// The business number.
    pub from: PhoneNumber,
    /// The text.
    pub message: String,
}

impl TextRequest {
    /// The request for one send of `message` in `conversation`;
    /// [`ValidationError::NotAddressable`] when the customer has no phone number.
    pub fn new(
        conversation: Conversation,
        id: MessageId,
        message: &TextMessage,
    ) -> Result<Self, ValidationError> {
        Ok(Self {
            message_id: id,
            to: recipient(conversation)?,
            from: conversation.business,
            message: message.body().to_owned(),
        })
    }

    /// The conversation, id and (re-validated) text this request carries.
    #[cfg(test)]
    pub(crate) fn into_parts(
        self,
    ) -> Result<(Conversation, MessageId, TextMessage), ValidationError> {
        let message = TextMessage::new(self.message)?;
        Ok((
            Conversation::new(self.from, self.to),
            self.message_id,
            message,
        ))
    }
}

/// Body of `POST /api/v1/whatsapp/template`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TemplateRequest {
    /// The send's id, reused by every retry.
    pub message_id: MessageId,
    /// The customer.
    pub to: PhoneNumber,
    /// The business number.
    pub from: PhoneNumber,
    /// The template and its values.
    pub template: TemplateSpec,
}

/// The `template` object of a template request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TemplateSpec {
    /// The approved template's name.
    pub name: String,
    /// Its language.
    pub language_code: String,
    /// An object (not WhatsApp's array) with optional `header` and `body`.
    pub components: TemplateComponents,
}

/// The `components` object of a template request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TemplateComponents {
    /// The header value, omitted when the template has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderComponent>,
    /// The body's placeholders, omitted when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodyComponent>,
}

/// A template request's `header`: `{"type": "IMAGE", "mediaUrl": "https://..."}` for
/// media, `{"type": "TEXT", "parameter": ["..."]}` for text.
///
/// The media form is documented by the gateway and used by public clients; the text form
/// is what one public client sends and is not confirmed by the gateway's documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HeaderComponent {
    /// `TEXT`, `IMAGE`, `VIDEO` or `DOCUMENT`.
    #[serde(rename = "type")]
    pub header_type: String,
    /// The media's URL, for a media header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_url: Option<String>,
    /// The text value, for a text header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter: Option<Vec<String>>,
}

/// A template request's `body`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BodyComponent {
    /// The values of `{{1}}`, `{{2}}`, ... in order.
    pub placeholders: Vec<String>,
}

impl TemplateRequest {
    /// The request for one send of `message` in `conversation`;
    /// [`ValidationError::NotAddressable`] when the customer has no phone number.
    pub fn new(
        conversation: Conversation,
        id: MessageId,
        message: &TemplateMessage,
    ) -> Result<Self, ValidationError> {
        let to = recipient(conversation)?;
        let header = message.header().map(|header| match header {
            TemplateHeader::Text { text } => HeaderComponent {
                header_type: header.wire_type().to_owned(),
                media_url: None,
                parameter: Some(vec![text.clone()]),
            },
            TemplateHeader::Image { url }
            | TemplateHeader::Video { url }
            | TemplateHeader::Document { url } => HeaderComponent {
                header_type: header.wire_type().to_owned(),
                media_url: Some(url.as_str().to_owned()),
                parameter: None,
            },
        });
        let body = (!message.body_placeholders().is_empty()).then(|| BodyComponent {
            placeholders: message.body_placeholders().to_vec(),
        });
        Ok(Self {
            message_id: id,
            to,
            from: conversation.business,
            template: TemplateSpec {
                name: message.name().to_owned(),
                language_code: message.language().to_owned(),
                components: TemplateComponents { header, body },
            },
        })
    }

    /// The conversation, id and (re-validated) template this request carries.
    #[cfg(test)]
    pub(crate) fn into_parts(
        self,
    ) -> Result<(Conversation, MessageId, TemplateMessage), ValidationError> {
        let spec = self.template;
        let mut message = TemplateMessage::new(spec.name, spec.language_code)?;
        if let Some(header) = spec.components.header {
            let media = || -> Result<MediaUrl, ValidationError> {
                MediaUrl::new(header.media_url.as_deref().unwrap_or_default())
            };
            let header = match header.header_type.as_str() {
                "TEXT" => {
                    let mut values = header.parameter.clone().unwrap_or_default();
                    if values.len() != 1 {
                        return Err(ValidationError::Placeholder {
                            place: "header".into(),
                            reason: "a text header takes exactly one value",
                        });
                    }
                    TemplateHeader::Text {
                        text: values.remove(0),
                    }
                }
                "IMAGE" => TemplateHeader::Image { url: media()? },
                "VIDEO" => TemplateHeader::Video { url: media()? },
                "DOCUMENT" => TemplateHeader::Document { url: media()? },
                _ => {
                    return Err(ValidationError::Placeholder {
                        place: "header".into(),
                        reason: "unknown header type",
                    });
                }
            };
            message = message.with_header(header)?;
        }
        if let Some(body) = spec.components.body {
            message = message.with_body_placeholders(body.placeholders)?;
        }
        Ok((
            Conversation::new(self.from, self.to),
            self.message_id,
            message,
        ))
    }
}

/// The exact JSON body of one request, as the gateway receives it: compact, its keys in
/// the order of the gateway's reference (for a contact, `messageId`, `to`, `from`, `name`,
/// `phones`), since it is written straight from the request's fields, never through a
/// map. It serialises as that JSON (not as a string), so a `--dry-run` printing it shows
/// the very bytes a send would carry.
///
/// ```
/// use lipachat_api::{MessageId, TextMessage, text_body};
/// use lipachat_session::Conversation;
///
/// let conversation = Conversation::parse("254110090747", "254712345678")?;
/// let id: MessageId = "ca739107-4b0d-4581-acb1-4c4af70555de".parse()?;
/// let body = text_body(conversation, id, &TextMessage::new("Hello")?)?;
/// assert_eq!(
///     body.as_str(),
///     r#"{"messageId":"ca739107-4b0d-4581-acb1-4c4af70555de","to":"254712345678","from":"254110090747","message":"Hello"}"#
/// );
/// assert_eq!(body.to_value()["message"], "Hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RequestBody(String);

impl RequestBody {
    /// The body written from `request`'s fields, in their order.
    pub(crate) fn of<T: Serialize>(request: &T) -> Self {
        // These structs hold only strings, optional strings and lists of them, and
        // `PhoneNumber`/`MessageId` serialise as strings: serialising cannot fail.
        #[allow(clippy::expect_used)]
        Self(serde_json::to_string(request).expect("request bodies always serialise to JSON"))
    }

    /// The JSON text, exactly as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The body as a JSON value, to look into (a value's object keys are not kept in the
    /// wire order: compare [`RequestBody::as_str`] for that).
    pub fn to_value(&self) -> Value {
        // The text was written by serde_json from a request struct: it reads back.
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }

    /// The JSON text indented for people, keys still in wire order (as a `--dry-run`
    /// shows it): as serde_json's pretty printer writes it, two spaces a level, one
    /// member a line.
    pub fn pretty(&self) -> String {
        let mut out = String::with_capacity(self.0.len() * 2);
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        let mut chars = self.0.chars().peekable();
        let newline = |out: &mut String, depth: usize| {
            out.push('\n');
            out.push_str(&"  ".repeat(depth));
        };
        while let Some(c) = chars.next() {
            if in_string {
                out.push(c);
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => in_string = false,
                    _ => {}
                }
                continue;
            }
            match c {
                '"' => {
                    in_string = true;
                    out.push(c);
                }
                '{' | '[' => {
                    out.push(c);
                    // An empty object or array stays on its line.
                    if chars.peek().is_some_and(|next| matches!(next, '}' | ']')) {
                        continue;
                    }
                    depth += 1;
                    newline(&mut out, depth);
                }
                '}' | ']' => {
                    if !matches!(out.chars().last(), Some('{' | '[')) {
                        depth = depth.saturating_sub(1);
                        newline(&mut out, depth);
                    }
                    out.push(c);
                }
                ',' => {
                    out.push(c);
                    newline(&mut out, depth);
                }
                ':' => out.push_str(": "),
                _ => out.push(c),
            }
        }
        out
    }

    /// The JSON text, to send.
    pub(crate) fn into_bytes(self) -> bytes::Bytes {
        bytes::Bytes::from(self.0)
    }
}

impl std::fmt::Display for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RequestBody").field(&self.0).finish()
    }
}

/// Written as the JSON it is (keys in wire order), not as a string.
impl Serialize for RequestBody {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &serde_json::value::RawValue =
            serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

/// The exact JSON body of a contact send; [`ValidationError::NotAddressable`] when the
/// conversation has no phone number to send to (as for every body below).
///
/// ```
/// use lipachat_api::{contact_body, ContactMessage, ContactPhone, MessageId};
/// use lipachat_session::Conversation;
///
/// let conversation = Conversation::parse("254110090747", "254712345678")?;
/// let id: MessageId = "ca739107-4b0d-4581-acb1-4c4af70555de".parse()?;
/// let card = ContactMessage::new(
///     "Test User",
///     vec![ContactPhone::on_whatsapp("254712345678".parse()?, "Cell")],
/// )?;
/// assert_eq!(
///     contact_body(conversation, id, &card)?.to_value(),
///     serde_json::json!({
///         "messageId": "ca739107-4b0d-4581-acb1-4c4af70555de",
///         "to": "254712345678",
///         "from": "254110090747",
///         "name": { "formattedName": "Test User" },
///         "phones": [ { "phone": "254712345678", "type": "Cell", "waId": "254712345678" } ]
///     })
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn contact_body(
    conversation: Conversation,
    id: MessageId,
    message: &ContactMessage,
) -> Result<RequestBody, ValidationError> {
    ContactRequest::new(conversation, id, message).map(|request| RequestBody::of(&request))
}

/// The exact JSON body of a text send: `{messageId, to, from, message}`.
pub fn text_body(
    conversation: Conversation,
    id: MessageId,
    message: &TextMessage,
) -> Result<RequestBody, ValidationError> {
    TextRequest::new(conversation, id, message).map(|request| RequestBody::of(&request))
}

/// The exact JSON body of a template send:
/// `{messageId, to, from, template: {name, languageCode, components: {header?, body?}}}`.
pub fn template_body(
    conversation: Conversation,
    id: MessageId,
    message: &TemplateMessage,
) -> Result<RequestBody, ValidationError> {
    TemplateRequest::new(conversation, id, message).map(|request| RequestBody::of(&request))
}

/// The exact JSON body of a free-form send (sent to [`FreeFormMessage::path`]).
pub fn free_form_body(
    conversation: Conversation,
    id: MessageId,
    message: &FreeFormMessage,
) -> Result<RequestBody, ValidationError> {
    match message {
        FreeFormMessage::Contact(card) => contact_body(conversation, id, card),
        FreeFormMessage::Text(text) => text_body(conversation, id, text),
        FreeFormMessage::Media(media) => json_of(MediaRequest::new(conversation, id, media)),
        FreeFormMessage::Buttons(buttons) => {
            json_of(ButtonsRequest::new(conversation, id, buttons))
        }
        FreeFormMessage::List(list) => json_of(ListRequest::new(conversation, id, list)),
        FreeFormMessage::LocationRequest(ask) => {
            json_of(LocationRequestRequest::new(conversation, id, ask))
        }
        FreeFormMessage::Flow(flow) => json_of(FlowRequest::new(conversation, id, flow)),
    }
}

/// The JSON of a request that could be built.
fn json_of<T: Serialize>(
    request: Result<T, ValidationError>,
) -> Result<RequestBody, ValidationError> {
    request.map(|request| RequestBody::of(&request))
}

/// Reads a free-form request body back into its conversation, id and message (what a fake
/// gateway needs); the endpoint tells which kind to expect.
#[cfg(test)]
pub(crate) fn parse_free_form_body(
    endpoint: crate::endpoint::Endpoint,
    body: &Value,
) -> Result<(Conversation, MessageId, FreeFormMessage), ParseBodyError> {
    use crate::endpoint::Endpoint;
    match endpoint {
        Endpoint::Contact => {
            let request = ContactRequest::deserialize(body)?;
            let (c, id, m) = request.into_parts()?;
            Ok((c, id, FreeFormMessage::Contact(m)))
        }
        Endpoint::Text => {
            let request = TextRequest::deserialize(body)?;
            let (c, id, m) = request.into_parts()?;
            Ok((c, id, FreeFormMessage::Text(m)))
        }
        Endpoint::Media => {
            let (c, id, m) = MediaRequest::deserialize(body)?.into_parts()?;
            Ok((c, id, FreeFormMessage::Media(m)))
        }
        Endpoint::Buttons => {
            let (c, id, m) = ButtonsRequest::deserialize(body)?.into_parts()?;
            Ok((c, id, FreeFormMessage::Buttons(m)))
        }
        Endpoint::List => {
            let (c, id, m) = ListRequest::deserialize(body)?.into_parts()?;
            Ok((c, id, FreeFormMessage::List(m)))
        }
        Endpoint::LocationRequest => {
            let (c, id, m) = LocationRequestRequest::deserialize(body)?.into_parts()?;
            Ok((c, id, FreeFormMessage::LocationRequest(m)))
        }
        Endpoint::Flow => {
            let (c, id, m) = FlowRequest::deserialize(body)?.into_parts()?;
            Ok((c, id, FreeFormMessage::Flow(m)))
        }
        Endpoint::Template => Err(ParseBodyError::NotFreeForm),
    }
}

/// Why a request body could not be read back.
#[cfg(test)]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ParseBodyError {
    /// Not the JSON shape of the endpoint's request.
    #[error("not a request body of this endpoint: {0}")]
    Shape(#[from] serde_json::Error),
    /// The right shape, but a value the client would never send.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The template endpoint takes a template, not a free-form message.
    #[error("the template endpoint does not take free-form messages")]
    NotFreeForm,
}

#[cfg(test)]
#[path = "request_properties.rs"]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Endpoint;
    use serde_json::json;

    fn conversation() -> Conversation {
        Conversation::parse("254110090747", "254712345678").unwrap()
    }

    fn id() -> MessageId {
        "ca739107-4b0d-4581-acb1-4c4af70555de".parse().unwrap()
    }

    #[test]
    fn text_body_shape() {
        let text = TextMessage::new("Hello").unwrap();
        let body = text_body(conversation(), id(), &text).unwrap().to_value();
        assert_eq!(
            body,
            json!({
                "messageId": "ca739107-4b0d-4581-acb1-4c4af70555de",
                "to": "254712345678",
                "from": "254110090747",
                "message": "Hello"
            })
        );
        let (c, i, m) = parse_free_form_body(Endpoint::Text, &body).unwrap();
        assert_eq!(
            (c, i, m),
            (conversation(), id(), FreeFormMessage::Text(text))
        );
    }

    #[test]
    fn template_body_shapes() {
        let t = TemplateMessage::new("contact_share", "en")
            .unwrap()
            .with_header(TemplateHeader::image("https://example.com/a.png").unwrap())
            .unwrap()
            .with_body_placeholders(["John", "2000"])
            .unwrap();
        let body = template_body(conversation(), id(), &t).unwrap().to_value();
        assert_eq!(
            body,
            json!({
                "messageId": "ca739107-4b0d-4581-acb1-4c4af70555de",
                "to": "254712345678",
                "from": "254110090747",
                "template": {
                    "name": "contact_share",
                    "languageCode": "en",
                    "components": {
                        "header": { "type": "IMAGE", "mediaUrl": "https://example.com/a.png" },
                        "body": { "placeholders": ["John", "2000"] }
                    }
                }
            })
        );
        let back = TemplateRequest::deserialize(&body)
            .unwrap()
            .into_parts()
            .unwrap();
        assert_eq!(back, (conversation(), id(), t));

        let bare = TemplateMessage::new("hello_world", "en_US").unwrap();
        assert_eq!(
            template_body(conversation(), id(), &bare)
                .unwrap()
                .to_value()["template"],
            json!({"name": "hello_world", "languageCode": "en_US", "components": {}})
        );
        let text = bare.with_header(TemplateHeader::text("Jane")).unwrap();
        assert_eq!(
            template_body(conversation(), id(), &text)
                .unwrap()
                .to_value()["template"]["components"],
            json!({"header": {"type": "TEXT", "parameter": ["Jane"]}})
        );
    }

    /// The body of the gateway's own contact example (the seed), byte for byte as sent,
    /// keys in the page's order; indented, as serde_json indents it.
    #[test]
    fn the_contact_body_is_the_seeds() {
        let card = ContactMessage::new(
            "Test User",
            vec![crate::ContactPhone::on_whatsapp(
                "254712345678".parse().unwrap(),
                "Cell",
            )],
        )
        .unwrap();
        let body = contact_body(conversation(), id(), &card).unwrap();
        let seed = include_str!("../tests/fixtures/seeds/contact-request.json");
        let request = ContactRequest::new(conversation(), id(), &card).unwrap();
        assert_eq!(
            body.pretty(),
            serde_json::to_string_pretty(&request).unwrap()
        );
        let compact: String = seed
            .lines()
            .map(|line| line.trim().replace("\": ", "\":"))
            .collect();
        assert_eq!(body.as_str(), compact);
        assert_eq!(serde_json::to_string(&body).unwrap(), compact);
    }

    #[test]
    fn a_conversation_without_a_phone_has_no_body() {
        let business = conversation().business;
        let text = TextMessage::new("Hello").unwrap();
        for customer in [
            lipachat_session::Customer::User(lipachat_session::UserRef::new(1).unwrap()),
            lipachat_session::Customer::Group(lipachat_session::GroupRef::new(1).unwrap()),
        ] {
            let conversation = Conversation::with_customer(business, customer);
            let error = text_body(conversation, id(), &text).unwrap_err();
            assert_eq!(error, ValidationError::NotAddressable { conversation });
            assert!(error.to_string().contains("no way to address"), "{error}");
            let template = TemplateMessage::new("hello_world", "en_US").unwrap();
            assert!(template_body(conversation, id(), &template).is_err());
        }
    }

    #[test]
    fn reading_back_revalidates() {
        let tampered = json!({
            "messageId": "ca739107-4b0d-4581-acb1-4c4af70555de",
            "to": "254712345678", "from": "254110090747",
            "name": {"formattedName": ""},
            "phones": [{"phone": "254712345678", "type": "Cell"}]
        });
        assert!(matches!(
            parse_free_form_body(Endpoint::Contact, &tampered),
            Err(ParseBodyError::Invalid(ValidationError::EmptyName))
        ));
        assert!(matches!(
            parse_free_form_body(Endpoint::Contact, &json!({"message": "hi"})),
            Err(ParseBodyError::Shape(_))
        ));
        assert!(matches!(
            parse_free_form_body(Endpoint::Template, &json!({})),
            Err(ParseBodyError::NotFreeForm)
        ));
    }
}
