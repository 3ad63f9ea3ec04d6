//! The gateway's wire formats, parsed and written independently of any client crate.
//!
//! Requests are read from JSON by hand so that every rule names the field it checks; the
//! answers are written in the shapes the LipaChat documentation shows, timestamps included.

use std::fmt;

use chrono::{DateTime, Utc};
use lipachat_session::{MAX_DIGITS, MIN_DIGITS, PhoneNumber};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// WhatsApp's error code for a free-form send outside the customer service window.
pub const RE_ENGAGEMENT_CODE: u32 = 131_047;

/// The `message` of the stand-in's answer to a free-form send outside the window.
pub const RE_ENGAGEMENT_MESSAGE: &str = "(#131047) Re-engagement message: More than 24 hours have passed since the recipient last replied to the sender number.";

/// The longest text message WhatsApp accepts, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;

/// The prefix every send endpoint's path starts with.
pub const PATH_PREFIX: &str = "/api/v1/whatsapp/";

/// What kind of message a send endpoint carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageKind {
    /// `POST /api/v1/whatsapp/contact`: a contact card (free-form).
    Contact,
    /// `POST /api/v1/whatsapp/template`: an approved template, allowed outside the window.
    Template,
    /// `POST /api/v1/whatsapp/message/text`: a text message (free-form).
    Text,
    /// `POST /api/v1/whatsapp/media`: an image, video, audio, document or sticker (free-form).
    Media,
    /// `POST /api/v1/whatsapp/interactive/buttons`: text with reply buttons (free-form).
    Buttons,
    /// `POST /api/v1/whatsapp/interactive/list`: a list of rows in sections (free-form).
    List,
    /// `POST /api/v1/whatsapp/request_location`: a request for the customer's location
    /// (free-form).
    LocationRequest,
    /// `POST /api/v1/whatsapp/interactive/flows`: a WhatsApp Flow (free-form).
    Flow,
}

impl MessageKind {
    /// Every kind the stand-in serves.
    pub const ALL: [MessageKind; 8] = [
        Self::Contact,
        Self::Template,
        Self::Text,
        Self::Media,
        Self::Buttons,
        Self::List,
        Self::LocationRequest,
        Self::Flow,
    ];

    /// The endpoint's path, for example `/api/v1/whatsapp/contact`.
    pub fn path(self) -> &'static str {
        match self {
            Self::Contact => "/api/v1/whatsapp/contact",
            Self::Template => "/api/v1/whatsapp/template",
            Self::Text => "/api/v1/whatsapp/message/text",
            Self::Media => "/api/v1/whatsapp/media",
            Self::Buttons => "/api/v1/whatsapp/interactive/buttons",
            Self::List => "/api/v1/whatsapp/interactive/list",
            Self::LocationRequest => "/api/v1/whatsapp/request_location",
            Self::Flow => "/api/v1/whatsapp/interactive/flows",
        }
    }

    /// The kind served at `path`, if any (exact match, no trailing slash).
    pub fn from_path(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.path() == path)
    }

    /// Whether WhatsApp allows this kind only inside the 24-hour window: everything but a
    /// template.
    pub fn is_free_form(self) -> bool {
        !matches!(self, Self::Template)
    }

    /// A short name: `contact`, `template`, `text`, `media`, `buttons`, `list`,
    /// `location_request` or `flow`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Contact => "contact",
            Self::Template => "template",
            Self::Text => "text",
            Self::Media => "media",
            Self::Buttons => "buttons",
            Self::List => "list",
            Self::LocationRequest => "location_request",
            Self::Flow => "flow",
        }
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the stand-in answered a send with HTTP 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Violation {
    /// The `Content-Type` header is missing or is not `application/json`.
    ContentType,
    /// The body is not JSON, or is JSON but not an object.
    NotJson,
    /// `messageId` is missing, not a string, or blank.
    MessageId,
    /// `from` is missing or not 8 to 15 digits (country code first, no `+`).
    From,
    /// `to` is missing or not 8 to 15 digits (country code first, no `+`).
    To,
    /// A contact without a non-blank `name.formattedName`.
    ContactName,
    /// A contact whose `phones` is missing, not an array, or empty.
    ContactPhones,
    /// A contact `phones[]` entry without a non-blank `phone`, or whose `type` or `waId`
    /// is not a string.
    ContactPhone,
    /// A template whose `template` object is missing, or whose `template.name` is not
    /// lowercase letters, digits and `_`.
    TemplateName,
    /// A template without a non-blank `template.languageCode`.
    TemplateLanguage,
    /// A template whose `components` is present but not an object, or whose
    /// `components.body.placeholders` is not an array of strings.
    TemplateComponents,
    /// A text message whose `message` is missing, blank, or longer than 4096 characters.
    Text,
    /// A media message whose `mediaType` is not IMAGE, VIDEO, AUDIO, DOCUMENT or STICKER.
    MediaType,
    /// A media message whose `mediaUrl` is missing or not `https://`.
    MediaUrl,
    /// A media message with a `caption` on audio or a sticker, or one that is blank or
    /// longer than 1024 characters.
    MediaCaption,
    /// A media message with a `filename` on anything but a document, or one that is
    /// blank or longer than 255 characters.
    MediaFilename,
    /// A buttons message without a non-blank `text` of at most 1024 characters.
    ButtonsText,
    /// A buttons message without 1 to 3 buttons, each with a non-blank `id` (at most 256
    /// characters) and `title` (at most 20), ids unique.
    Buttons,
    /// A list without a non-blank `headerText` of at most 60 characters.
    ListHeader,
    /// A list without a non-blank `body` of at most 1024 characters.
    ListBody,
    /// A list without a non-blank `buttonText` of at most 20 characters.
    ListButtonText,
    /// A list whose `buttons` (its sections) are not 1 to 10, each with a non-blank
    /// `sectionTitle` of at most 24 characters and a non-empty `sectionItems` array.
    ListSections,
    /// A list whose rows are not 1 to 10 in all, or a row without a non-blank `id` (at
    /// most 200 characters) and `title` (at most 24), with a `description` over 72
    /// characters, or with an id already used.
    ListRows,
    /// A location request without a non-blank `text` of at most 1024 characters.
    LocationRequestText,
    /// A flow without a non-blank `text` of at most 1024 characters.
    FlowText,
    /// A flow without a non-blank `flowId`.
    FlowId,
    /// A flow without a non-blank `flowCta` of at most 30 characters.
    FlowCta,
    /// A flow without a non-blank `screen`.
    FlowScreen,
    /// A flow whose `data` is present but not an object.
    FlowData,
    /// A template create or update body the gateway would refuse (see
    /// [`StandInGateway::set_templates`](crate::StandInGateway::set_templates) for the
    /// rules).
    TemplateDraft,
    /// A template create for a name and language the business already has.
    TemplateExists,
    /// An upload that is not `multipart/form-data` with a non-empty `file` part that has
    /// a file name.
    UploadFile,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ContentType => "Content-Type is not application/json",
            Self::NotJson => "body is not a JSON object",
            Self::MessageId => "messageId is missing or blank",
            Self::From => "from is not 8 to 15 digits",
            Self::To => "to is not 8 to 15 digits",
            Self::ContactName => "name.formattedName is missing or blank",
            Self::ContactPhones => "phones is missing or empty",
            Self::ContactPhone => "a phones[] entry has no phone",
            Self::TemplateName => "template.name is not [a-z0-9_]+",
            Self::TemplateLanguage => "template.languageCode is missing or blank",
            Self::TemplateComponents => "template.components is malformed",
            Self::Text => "message is missing, blank or longer than 4096 characters",
            Self::MediaType => "mediaType is not IMAGE, VIDEO, AUDIO, DOCUMENT or STICKER",
            Self::MediaUrl => "mediaUrl is missing or not https",
            Self::MediaCaption => {
                "caption is not allowed on audio or stickers, or is blank or over 1024 characters"
            }
            Self::MediaFilename => {
                "filename is allowed only on documents, 1 to 255 characters"
            }
            Self::ButtonsText => "text is missing, blank or longer than 1024 characters",
            Self::Buttons => {
                "buttons must be 1 to 3, each with id (at most 256) and title (at most 20), ids unique"
            }
            Self::ListHeader => "headerText is missing, blank or longer than 60 characters",
            Self::ListBody => "body is missing, blank or longer than 1024 characters",
            Self::ListButtonText => "buttonText is missing, blank or longer than 20 characters",
            Self::ListSections => {
                "buttons must be 1 to 10 sections, each with sectionTitle (at most 24) and sectionItems"
            }
            Self::ListRows => {
                "rows must be 1 to 10 in all, each with id (at most 200), title (at most 24), description at most 72, ids unique"
            }
            Self::LocationRequestText => "text is missing, blank or longer than 1024 characters",
            Self::FlowText => "text is missing, blank or longer than 1024 characters",
            Self::FlowId => "flowId is missing or blank",
            Self::FlowCta => "flowCta is missing, blank or longer than 30 characters",
            Self::FlowScreen => "screen is missing or blank",
            Self::FlowData => "data is not an object",
            Self::TemplateDraft => "the template body is malformed or breaks a rule",
            Self::TemplateExists => "a template of that name and language exists",
            Self::UploadFile => "no non-empty multipart part named file with a file name",
        })
    }
}

/// A send that passed validation: who it goes from and to, under which `messageId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SendRequest {
    pub(crate) kind: MessageKind,
    pub(crate) message_id: String,
    pub(crate) business: PhoneNumber,
    pub(crate) customer: PhoneNumber,
}

/// Whether `content_type` names JSON (`application/json`, parameters allowed).
pub(crate) fn is_json_content_type(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Validates a send of `kind` whose body parsed as `body`.
pub(crate) fn validate(kind: MessageKind, body: &Value) -> Result<SendRequest, Violation> {
    let object = body.as_object().ok_or(Violation::NotJson)?;
    let message_id = non_blank(object.get("messageId")).ok_or(Violation::MessageId)?;
    let business = wire_number(object.get("from")).ok_or(Violation::From)?;
    let customer = wire_number(object.get("to")).ok_or(Violation::To)?;
    match kind {
        MessageKind::Contact => validate_contact(object)?,
        MessageKind::Template => validate_template(object)?,
        MessageKind::Text => validate_text(object)?,
        MessageKind::Media => validate_media(object)?,
        MessageKind::Buttons => validate_buttons(object)?,
        MessageKind::List => validate_list(object)?,
        MessageKind::LocationRequest => {
            within(object.get("text"), 1024).ok_or(Violation::LocationRequestText)?;
        }
        MessageKind::Flow => validate_flow(object)?,
    }
    Ok(SendRequest {
        kind,
        message_id: message_id.to_owned(),
        business,
        customer,
    })
}

/// A string field that is present and not blank.
fn non_blank(value: Option<&Value>) -> Option<&str> {
    value
        .and_then(Value::as_str)
        .filter(|text| !text.trim().is_empty())
}

/// A field that is absent, `null`, or a string.
fn optional_string(value: Option<&Value>) -> bool {
    matches!(value, None | Some(Value::Null | Value::String(_)))
}

/// A phone number as the gateway takes it: 8 to 15 ASCII digits, country code first.
fn wire_number(value: Option<&Value>) -> Option<PhoneNumber> {
    let text = value?.as_str()?;
    let digits_only = text.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || !(MIN_DIGITS..=MAX_DIGITS).contains(&text.len()) {
        return None;
    }
    PhoneNumber::parse(text).ok()
}

fn validate_contact(object: &Map<String, Value>) -> Result<(), Violation> {
    let name = object.get("name").and_then(Value::as_object);
    non_blank(name.and_then(|name| name.get("formattedName"))).ok_or(Violation::ContactName)?;
    let phones = object
        .get("phones")
        .and_then(Value::as_array)
        .filter(|phones| !phones.is_empty())
        .ok_or(Violation::ContactPhones)?;
    for entry in phones {
        let entry = entry.as_object().ok_or(Violation::ContactPhone)?;
        non_blank(entry.get("phone")).ok_or(Violation::ContactPhone)?;
        if !optional_string(entry.get("type")) || !optional_string(entry.get("waId")) {
            return Err(Violation::ContactPhone);
        }
    }
    Ok(())
}

fn validate_template(object: &Map<String, Value>) -> Result<(), Violation> {
    let template = object
        .get("template")
        .and_then(Value::as_object)
        .ok_or(Violation::TemplateName)?;
    let name = template
        .get("name")
        .and_then(Value::as_str)
        .ok_or(Violation::TemplateName)?;
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid_name {
        return Err(Violation::TemplateName);
    }
    non_blank(template.get("languageCode")).ok_or(Violation::TemplateLanguage)?;
    match template.get("components") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(components)) => {
            let placeholders = components
                .get("body")
                .and_then(Value::as_object)
                .and_then(|body| body.get("placeholders"));
            match placeholders {
                None | Some(Value::Null) => Ok(()),
                Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(()),
                Some(_) => Err(Violation::TemplateComponents),
            }
        }
        Some(_) => Err(Violation::TemplateComponents),
    }
}

fn validate_text(object: &Map<String, Value>) -> Result<(), Violation> {
    let text = non_blank(object.get("message")).ok_or(Violation::Text)?;
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(Violation::Text);
    }
    Ok(())
}

/// A string field that is present, not blank, and at most `max` characters long.
fn within(value: Option<&Value>, max: usize) -> Option<&str> {
    non_blank(value).filter(|text| text.chars().count() <= max)
}

/// An optional string field: absent or `null`, or within [`within`]'s rules.
fn optional_within(value: Option<&Value>, max: usize) -> bool {
    matches!(value, None | Some(Value::Null)) || within(value, max).is_some()
}

fn validate_media(object: &Map<String, Value>) -> Result<(), Violation> {
    let media_type = object.get("mediaType").and_then(Value::as_str);
    if !matches!(
        media_type,
        Some("IMAGE" | "VIDEO" | "AUDIO" | "DOCUMENT" | "STICKER")
    ) {
        return Err(Violation::MediaType);
    }
    let url = object.get("mediaUrl").and_then(Value::as_str);
    if !url.is_some_and(|url| url.len() > "https://".len() && url.starts_with("https://")) {
        return Err(Violation::MediaUrl);
    }
    let absent = |name: &str| matches!(object.get(name), None | Some(Value::Null));
    let captioned = matches!(media_type, Some("IMAGE" | "VIDEO" | "DOCUMENT"));
    if !(absent("caption") || captioned && optional_within(object.get("caption"), 1024)) {
        return Err(Violation::MediaCaption);
    }
    let document = media_type == Some("DOCUMENT");
    if !(absent("filename") || document && optional_within(object.get("filename"), 255)) {
        return Err(Violation::MediaFilename);
    }
    Ok(())
}

/// Every value is different.
fn unique<'a>(values: impl IntoIterator<Item = &'a str>) -> bool {
    let mut seen = std::collections::HashSet::new();
    values.into_iter().all(|value| seen.insert(value))
}

fn validate_buttons(object: &Map<String, Value>) -> Result<(), Violation> {
    within(object.get("text"), 1024).ok_or(Violation::ButtonsText)?;
    let buttons = object
        .get("buttons")
        .and_then(Value::as_array)
        .filter(|buttons| (1..=3).contains(&buttons.len()))
        .ok_or(Violation::Buttons)?;
    let ids: Option<Vec<&str>> = buttons
        .iter()
        .map(|button| {
            let button = button.as_object()?;
            within(button.get("title"), 20)?;
            within(button.get("id"), 256)
        })
        .collect();
    match ids {
        Some(ids) if unique(ids.iter().copied()) => Ok(()),
        _ => Err(Violation::Buttons),
    }
}

fn validate_list(object: &Map<String, Value>) -> Result<(), Violation> {
    within(object.get("headerText"), 60).ok_or(Violation::ListHeader)?;
    within(object.get("body"), 1024).ok_or(Violation::ListBody)?;
    within(object.get("buttonText"), 20).ok_or(Violation::ListButtonText)?;
    let sections = object
        .get("buttons")
        .and_then(Value::as_array)
        .filter(|sections| (1..=10).contains(&sections.len()))
        .ok_or(Violation::ListSections)?;
    let mut ids = Vec::new();
    for section in sections {
        let section = section.as_object().ok_or(Violation::ListSections)?;
        within(section.get("sectionTitle"), 24).ok_or(Violation::ListSections)?;
        let rows = section
            .get("sectionItems")
            .and_then(Value::as_array)
            .filter(|rows| !rows.is_empty())
            .ok_or(Violation::ListSections)?;
        for row in rows {
            let row = row.as_object().ok_or(Violation::ListRows)?;
            within(row.get("title"), 24).ok_or(Violation::ListRows)?;
            if !optional_within(row.get("description"), 72) {
                return Err(Violation::ListRows);
            }
            ids.push(within(row.get("id"), 200).ok_or(Violation::ListRows)?);
        }
    }
    if ids.len() > 10 || !unique(ids) {
        return Err(Violation::ListRows);
    }
    Ok(())
}

fn validate_flow(object: &Map<String, Value>) -> Result<(), Violation> {
    within(object.get("text"), 1024).ok_or(Violation::FlowText)?;
    non_blank(object.get("flowId")).ok_or(Violation::FlowId)?;
    within(object.get("flowCta"), 30).ok_or(Violation::FlowCta)?;
    non_blank(object.get("screen")).ok_or(Violation::FlowScreen)?;
    match object.get("data") {
        None | Some(Value::Null | Value::Object(_)) => Ok(()),
        Some(_) => Err(Violation::FlowData),
    }
}

/// The gateway's own timestamp format: a local date-time without zone, nanoseconds
/// (`2023-08-06T01:27:56.825898971`).
pub(crate) fn gateway_timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.9f").to_string()
}

/// The framework error pages' timestamp format (`2023-08-06T17:50:35.701+00:00`).
pub(crate) fn error_page_timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3f+00:00").to_string()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SentData<'a> {
    message_id: &'a str,
    wa_id: &'a str,
    status: &'static str,
    status_desc: &'static str,
}

#[derive(Serialize)]
struct Envelope<'a, D: Serialize> {
    timestamp: String,
    data: Option<D>,
    status: &'static str,
    message: &'a str,
    errors: Option<Value>,
}

#[derive(Serialize)]
struct ErrorPage<'a> {
    timestamp: String,
    status: u16,
    error: &'a str,
    path: &'a str,
}

fn to_bytes(value: &impl Serialize) -> Vec<u8> {
    // Serialising these plain structs cannot fail; an empty body would be the only fallout.
    serde_json::to_vec(value).unwrap_or_default()
}

/// The success envelope: `data.status` `SENT`, the caller's `messageId` echoed.
pub(crate) fn success_body(at: DateTime<Utc>, message_id: &str, wa_id: &str) -> Vec<u8> {
    to_bytes(&Envelope {
        timestamp: gateway_timestamp(at),
        data: Some(SentData {
            message_id,
            wa_id,
            status: "SENT",
            status_desc: "Message sent successfully",
        }),
        status: "success",
        message: "",
        errors: None,
    })
}

/// The 401 answer, with its quirk: the body says `"status": "success"`.
pub(crate) fn invalid_credentials_body(at: DateTime<Utc>) -> Vec<u8> {
    to_bytes(&Envelope::<()> {
        timestamp: gateway_timestamp(at),
        data: None,
        status: "success",
        message: "Invalid credentials",
        errors: None,
    })
}

/// The HTTP 200 answer to a template send the business's catalog refuses: WhatsApp's
/// error for it, as an error envelope.
pub(crate) fn template_rejected_body(at: DateTime<Utc>, code: u32, message: &str) -> Vec<u8> {
    to_bytes(&Envelope::<()> {
        timestamp: gateway_timestamp(at),
        data: None,
        status: "error",
        message,
        errors: Some(json!([{"code": code, "title": message}])),
    })
}

/// The HTTP 200 answer to a free-form send outside the window (WhatsApp error 131047).
pub(crate) fn re_engagement_body(at: DateTime<Utc>) -> Vec<u8> {
    to_bytes(&Envelope::<()> {
        timestamp: gateway_timestamp(at),
        data: None,
        status: "error",
        message: RE_ENGAGEMENT_MESSAGE,
        errors: Some(json!([{"code": RE_ENGAGEMENT_CODE, "title": "Re-engagement message"}])),
    })
}

/// A marketing error the stand-in answers templates with
/// ([`crate::StandInGateway::answer_templates_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MarketingAnswer {
    /// 131049: not delivered to maintain healthy ecosystem engagement.
    PerUserLimit,
    /// 131050: the user stopped marketing messages from the business.
    OptedOut,
}

/// The HTTP 200 error answer to a template refused with a marketing error.
pub(crate) fn marketing_refusal_body(at: DateTime<Utc>, answer: MarketingAnswer) -> Vec<u8> {
    let (code, message) = match answer {
        MarketingAnswer::PerUserLimit => (
            131_049,
            "(#131049) This message was not delivered to maintain healthy ecosystem engagement.",
        ),
        MarketingAnswer::OptedOut => (
            131_050,
            "(#131050) Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business.",
        ),
    };
    to_bytes(&Envelope::<()> {
        timestamp: gateway_timestamp(at),
        data: None,
        status: "error",
        message,
        errors: Some(json!([{"code": code, "title": message}])),
    })
}

/// The `pricing` a priced status callback carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPricingWire {
    /// `pricing.category` (`marketing`, `utility`, `authentication`, `service`).
    pub category: String,
    /// `pricing.type` (`regular`, `free_customer_service`, `free_entry_point`).
    pub pricing_type: String,
    /// `pricing.billable`.
    pub billable: bool,
    /// `conversation.expiration_timestamp`, sent only with `free_entry_point`.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A WhatsApp-shaped `delivered` status for `delivered`, with `pricing`.
pub(crate) fn priced_status_callback(
    delivered: &crate::record::DeliveredMessage,
    pricing: &StatusPricingWire,
) -> Value {
    let mut status = json!({
        "id": delivered.wa_id,
        "status": "delivered",
        "recipient_id": delivered.customer.digits(),
        "timestamp": delivered.delivered_at.timestamp().to_string(),
        "pricing": {
            "billable": pricing.billable,
            "pricing_model": "PMP",
            "category": pricing.category,
            "type": pricing.pricing_type,
        },
    });
    if let (Some(until), Some(object)) = (pricing.expires_at, status.as_object_mut())
        && pricing.pricing_type == "free_entry_point"
    {
        object.insert(
            "conversation".into(),
            json!({"id": "standin", "expiration_timestamp": until.timestamp().to_string()}),
        );
    }
    status_webhook(delivered.business, status)
}

/// A WhatsApp webhook body from `business` carrying the one status `status`.
fn status_webhook(business: PhoneNumber, status: Value) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "0",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {
                        "display_phone_number": business.digits(),
                        "phone_number_id": business.digits(),
                    },
                    "statuses": [status],
                },
            }],
        }],
    })
}

/// The gateway's generic failure, used for injected failures.
pub(crate) fn request_failed_body(at: DateTime<Utc>) -> Vec<u8> {
    to_bytes(&Envelope::<()> {
        timestamp: gateway_timestamp(at),
        data: None,
        status: "error",
        message: "Request failed.",
        errors: None,
    })
}

/// The framework error page: 400 Bad Request, 404, 405, 413.
pub(crate) fn error_page_body(at: DateTime<Utc>, status: u16, error: &str, path: &str) -> Vec<u8> {
    to_bytes(&ErrorPage {
        timestamp: error_page_timestamp(at),
        status,
        error,
        path,
    })
}

/// A WhatsApp-shaped status callback reporting the message `wa_id` failed with 131047.
pub(crate) fn failed_status_callback(
    business: PhoneNumber,
    customer: PhoneNumber,
    wa_id: &str,
    at: DateTime<Utc>,
) -> Value {
    status_webhook(
        business,
        json!({
            "id": wa_id,
            "status": "failed",
            "timestamp": at.timestamp().to_string(),
            "recipient_id": customer.digits(),
            "errors": [{
                "code": RE_ENGAGEMENT_CODE,
                "title": "Re-engagement message",
                "message": "Re-engagement message",
                "error_data": {
                    "details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number."
                }
            }]
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact() -> Value {
        json!({
            "messageId": "m-1",
            "from": "254110090747",
            "to": "254712345678",
            "name": {"formattedName": "Test User"},
            "phones": [{"phone": "254712345678", "type": "Cell", "waId": "254712345678"}]
        })
    }

    #[test]
    fn the_documented_contact_is_valid() {
        let send = validate(MessageKind::Contact, &contact()).unwrap();
        assert_eq!(send.message_id, "m-1");
        assert_eq!(send.business.digits(), "254110090747");
        assert_eq!(send.customer.digits(), "254712345678");
    }

    #[test]
    fn numbers_must_be_bare_digits() {
        for bad in [
            "+254712345678",
            "254 712 345 678",
            "1234567",
            "1234567890123456",
            "0712345678",
        ] {
            let mut body = contact();
            body["to"] = json!(bad);
            assert_eq!(
                validate(MessageKind::Contact, &body),
                Err(Violation::To),
                "{bad}"
            );
        }
        let mut body = contact();
        body["from"] = json!(254110090747_u64);
        assert_eq!(validate(MessageKind::Contact, &body), Err(Violation::From));
    }

    #[test]
    fn paths_round_trip() {
        for kind in MessageKind::ALL {
            assert_eq!(MessageKind::from_path(kind.path()), Some(kind));
            assert!(kind.path().starts_with(PATH_PREFIX));
        }
        assert_eq!(MessageKind::from_path("/api/v1/whatsapp/contact/"), None);
    }

    #[test]
    fn content_type_allows_parameters_only() {
        assert!(is_json_content_type(Some("application/json")));
        assert!(is_json_content_type(Some(
            "Application/JSON; charset=utf-8"
        )));
        assert!(!is_json_content_type(Some("text/plain")));
        assert!(!is_json_content_type(Some("application/jsonx")));
        assert!(!is_json_content_type(None));
    }

    #[test]
    fn timestamps_match_the_documented_formats() {
        let at: DateTime<Utc> = "2023-08-06T01:27:56.825898971Z".parse().unwrap();
        assert_eq!(gateway_timestamp(at), "2023-08-06T01:27:56.825898971");
        assert_eq!(error_page_timestamp(at), "2023-08-06T01:27:56.825+00:00");
    }
}
