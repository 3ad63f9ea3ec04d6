//! Creating and updating templates (`POST /api/v1/template/{business number}`,
//! `PUT /api/v1/template/{business number}/{templateId}`) and uploading a template's
//! media file (`POST /api/v1/template/upload/file`, multipart field `file`).
//!
//! The body of a create or update, as the gateway documents it (note the singular
//! `component`): `{name, language, category, component: {header?: {format, text?,
//! example?}, body: {text, examples?}, footer?: {text}, buttons?: [{type, text, url? |
//! phoneNumber?}]}}`. The name of a phone button's number field is not shown in the
//! stored copy of the page; `phoneNumber` follows the gateway's camel case elsewhere.
//! What the gateway answers to a create, an update or an upload is not documented: the
//! id is looked for under `data` (`id`, `templateId`, `handle`, `fileId`, `mediaId`),
//! also one level deeper, or as `data` itself.
//!
//! None of these calls carries a `messageId`, so the gateway cannot deduplicate them: a
//! retry is made only after a failure that proves the request was not processed (no
//! connection, no free request slot, HTTP 429), never after a timeout or a 5xx.

use lipachat_session::PhoneNumber;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::catalog::{HeaderFormat, TemplateCategory, TemplateStatus, count_markers};
use crate::client::{Call, Client};
use crate::error::{ApiError, ValidationError};
use crate::field::{self, Lines, named};
use crate::media::check_filename;
use crate::request::RequestBody;
use crate::response::{excerpt, read_envelope};
use crate::template::{MAX_HEADER_TEXT_CHARS, MediaUrl, check_language, check_template_name};

/// WhatsApp's limit for a template body, in characters.
pub const MAX_TEMPLATE_BODY_CHARS: usize = 1024;
/// WhatsApp's limit for a footer, in characters.
pub const MAX_TEMPLATE_FOOTER_CHARS: usize = 60;
/// WhatsApp's limit for a button's text, in characters.
pub const MAX_TEMPLATE_BUTTON_CHARS: usize = 25;
/// The most buttons a template may have.
pub const MAX_TEMPLATE_BUTTONS: usize = 10;
/// The largest image a template header may carry (5 MB), per WhatsApp's media limits.
pub const MAX_IMAGE_BYTES: usize = 5 * 1024 * 1024;
/// The largest video a template header may carry (16 MB).
pub const MAX_VIDEO_BYTES: usize = 16 * 1024 * 1024;
/// The largest document a template header may carry (100 MB).
pub const MAX_DOCUMENT_BYTES: usize = 100 * 1024 * 1024;

/// A template's header, as created.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DraftHeader {
    /// Text (at most 60 characters), with an example value when it has a placeholder.
    Text {
        /// The text, with at most one `{{1}}` marker.
        text: String,
        /// The example value of its marker.
        example: Option<String>,
    },
    /// A media header: its format, and an example (the id an upload returned).
    Media {
        /// `IMAGE`, `VIDEO` or `DOCUMENT`.
        format: HeaderFormat,
        /// The uploaded example file's id ([`Client::upload_template_file`]).
        example: String,
    },
}

/// A template's button, as created.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DraftButton {
    /// A quick reply: the customer's tap comes back as a message.
    QuickReply {
        /// Its text (at most 25 characters).
        text: String,
    },
    /// Opens a web page.
    Url {
        /// Its text (at most 25 characters).
        text: String,
        /// The page (`https://`).
        url: MediaUrl,
    },
    /// Calls a number.
    PhoneNumber {
        /// Its text (at most 25 characters).
        text: String,
        /// The number called.
        phone: PhoneNumber,
    },
}

impl DraftButton {
    fn text(&self) -> &str {
        match self {
            Self::QuickReply { text } | Self::Url { text, .. } | Self::PhoneNumber { text, .. } => {
                text
            }
        }
    }
}

/// A template to create or update: checked as it is built against WhatsApp's rules
/// (name, language, a category WhatsApp knows, a body of 1 to 1024 characters with one
/// example per marker, header and footer at most 60 characters, at most 10 buttons of at
/// most 25 characters).
///
/// ```
/// use lipachat_api::{DraftButton, TemplateDraft};
/// use lipachat_api::TemplateCategory;
///
/// let draft = TemplateDraft::new("order_ready", "en", TemplateCategory::Utility, "Hi {{1}}, order {{2}} is ready.")?
///     .with_body_examples(["Jane", "A-42"])?
///     .with_footer("Reply STOP to opt out")?
///     .with_button(DraftButton::QuickReply { text: "Thanks".into() })?;
/// assert_eq!(draft.to_body()?.to_value()["component"]["body"]["examples"][1], "A-42");
/// assert!(TemplateDraft::new("Order Ready", "en", TemplateCategory::Utility, "Hi").is_err());
/// # Ok::<(), lipachat_api::ValidationError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateDraft {
    name: String,
    language: String,
    category: TemplateCategory,
    header: Option<DraftHeader>,
    body: String,
    body_examples: Vec<String>,
    footer: Option<String>,
    buttons: Vec<DraftButton>,
}

impl TemplateDraft {
    /// A draft with a body and nothing else. The category must be one WhatsApp knows
    /// (`MARKETING`, `UTILITY`, `AUTHENTICATION`).
    pub fn new(
        name: impl Into<String>,
        language: impl Into<String>,
        category: TemplateCategory,
        body: impl Into<String>,
    ) -> Result<Self, ValidationError> {
        let (name, language, body) = (name.into(), language.into(), body.into());
        check_template_name(&name)?;
        check_language(&language)?;
        if matches!(category, TemplateCategory::Other(_)) {
            return Err(ValidationError::InvalidField {
                field: "category".into(),
                reason: "must be MARKETING, UTILITY or AUTHENTICATION",
            });
        }
        field::required(named("body"), &body, MAX_TEMPLATE_BODY_CHARS, Lines::Many)?;
        Ok(Self {
            name,
            language,
            category,
            header: None,
            body,
            body_examples: Vec::new(),
            footer: None,
            buttons: Vec::new(),
        })
    }

    /// The example values of the body's markers, in order: exactly one per marker.
    pub fn with_body_examples<I, S>(mut self, examples: I) -> Result<Self, ValidationError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let examples: Vec<String> = examples.into_iter().map(Into::into).collect();
        for (index, example) in examples.iter().enumerate() {
            field::required(
                move || format!("body example #{}", index + 1),
                example,
                MAX_TEMPLATE_BODY_CHARS,
                Lines::One,
            )?;
        }
        let markers = count_markers(&self.body);
        field::count("body examples", examples.len(), markers, markers)?;
        self.body_examples = examples;
        Ok(self)
    }

    /// The same draft with a header (replacing any earlier one).
    pub fn with_header(mut self, header: DraftHeader) -> Result<Self, ValidationError> {
        match &header {
            DraftHeader::Text { text, example } => {
                field::required(
                    named("header text"),
                    text,
                    MAX_HEADER_TEXT_CHARS,
                    Lines::One,
                )?;
                let markers = count_markers(text);
                field::count("header text markers", markers, 0, 1)?;
                field::optional(
                    named("header example"),
                    example.as_deref(),
                    MAX_HEADER_TEXT_CHARS,
                    Lines::One,
                )?;
                field::count(
                    "header examples",
                    usize::from(example.is_some()),
                    markers,
                    markers,
                )?;
            }
            DraftHeader::Media { format, example } => {
                if !matches!(
                    format,
                    HeaderFormat::Image | HeaderFormat::Video | HeaderFormat::Document
                ) {
                    return Err(ValidationError::InvalidField {
                        field: "header format".into(),
                        reason: "a media header is IMAGE, VIDEO or DOCUMENT",
                    });
                }
                field::required(named("header example"), example, 1024, Lines::One)?;
            }
        }
        self.header = Some(header);
        Ok(self)
    }

    /// The same draft with a footer (at most 60 characters, one line).
    pub fn with_footer(mut self, footer: impl Into<String>) -> Result<Self, ValidationError> {
        let footer = footer.into();
        field::required(
            named("footer"),
            &footer,
            MAX_TEMPLATE_FOOTER_CHARS,
            Lines::One,
        )?;
        self.footer = Some(footer);
        Ok(self)
    }

    /// The same draft with one more button (at most 10, texts unique).
    pub fn with_button(mut self, button: DraftButton) -> Result<Self, ValidationError> {
        let index = self.buttons.len() + 1;
        field::required(
            move || format!("button #{index} text"),
            button.text(),
            MAX_TEMPLATE_BUTTON_CHARS,
            Lines::One,
        )?;
        field::count("buttons", index, 0, MAX_TEMPLATE_BUTTONS)?;
        self.buttons.push(button);
        field::unique("button text", self.buttons.iter().map(DraftButton::text))?;
        Ok(self)
    }

    /// The template's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The exact JSON body a create or update sends. Refused when the body has markers
    /// and no examples were given for them.
    pub fn to_body(&self) -> Result<RequestBody, ValidationError> {
        let markers = count_markers(&self.body);
        field::count("body examples", self.body_examples.len(), markers, markers)?;
        let header = self.header.as_ref().map(|header| match header {
            DraftHeader::Text { text, example } => WireHeader {
                format: "TEXT",
                text: Some(text),
                example: example.as_deref(),
            },
            DraftHeader::Media { format, example } => WireHeader {
                format: format.as_str(),
                text: None,
                example: Some(example),
            },
        });
        let wire = WireDraft {
            name: &self.name,
            language: &self.language,
            category: self.category.as_str(),
            component: WireComponent {
                header,
                body: WireBody {
                    text: &self.body,
                    examples: (!self.body_examples.is_empty()).then_some(&self.body_examples),
                },
                footer: self.footer.as_deref().map(|text| WireText { text }),
                buttons: (!self.buttons.is_empty()).then(|| {
                    self.buttons
                        .iter()
                        .map(|button| match button {
                            DraftButton::QuickReply { text } => WireButton {
                                kind: "QUICK_REPLY",
                                text,
                                url: None,
                                phone_number: None,
                            },
                            DraftButton::Url { text, url } => WireButton {
                                kind: "URL",
                                text,
                                url: Some(url.as_str()),
                                phone_number: None,
                            },
                            DraftButton::PhoneNumber { text, phone } => WireButton {
                                kind: "PHONE_NUMBER",
                                text,
                                url: None,
                                phone_number: Some(phone.digits()),
                            },
                        })
                        .collect()
                }),
            },
        };
        Ok(RequestBody::of(&wire))
    }
}

#[derive(Serialize)]
struct WireDraft<'a> {
    name: &'a str,
    language: &'a str,
    category: &'a str,
    component: WireComponent<'a>,
}

#[derive(Serialize)]
struct WireComponent<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    header: Option<WireHeader<'a>>,
    body: WireBody<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    footer: Option<WireText<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    buttons: Option<Vec<WireButton<'a>>>,
}

#[derive(Serialize)]
struct WireHeader<'a> {
    format: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    example: Option<&'a str>,
}

#[derive(Serialize)]
struct WireBody<'a> {
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    examples: Option<&'a Vec<String>>,
}

#[derive(Serialize)]
struct WireText<'a> {
    text: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireButton<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone_number: Option<String>,
}

/// What the gateway said about a template it created or updated.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TemplateSaved {
    /// The template's id, when the answer carried one.
    pub id: Option<String>,
    /// Its status (usually `PENDING`), when the answer carried one.
    pub status: Option<TemplateStatus>,
}

/// A media file for a template's header, to upload.
#[derive(Clone, PartialEq, Eq)]
pub struct TemplateFile {
    filename: String,
    content_type: &'static str,
    bytes: bytes::Bytes,
}

impl std::fmt::Debug for TemplateFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateFile")
            .field("filename", &self.filename)
            .field("content_type", &self.content_type)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl TemplateFile {
    /// A file of `content_type` (`image/jpeg`, `image/png`, `video/mp4` or
    /// `application/pdf`), not empty and within WhatsApp's size for its kind (5 MB for an
    /// image, 16 MB for a video, 100 MB for a document), under a file name (not blank, at
    /// most 255 characters, no path).
    pub fn new(
        filename: impl Into<String>,
        content_type: &str,
        bytes: impl Into<bytes::Bytes>,
    ) -> Result<Self, ValidationError> {
        let filename = filename.into();
        let bytes = bytes.into();
        check_filename(&filename)?;
        let (content_type, max) = match content_type.trim().to_ascii_lowercase().as_str() {
            "image/jpeg" => ("image/jpeg", MAX_IMAGE_BYTES),
            "image/png" => ("image/png", MAX_IMAGE_BYTES),
            "video/mp4" => ("video/mp4", MAX_VIDEO_BYTES),
            "application/pdf" => ("application/pdf", MAX_DOCUMENT_BYTES),
            _ => {
                return Err(ValidationError::InvalidField {
                    field: "content type".into(),
                    reason: "must be image/jpeg, image/png, video/mp4 or application/pdf",
                });
            }
        };
        if bytes.is_empty() {
            return Err(ValidationError::EmptyField {
                field: "file".into(),
            });
        }
        if bytes.len() > max {
            return Err(ValidationError::InvalidField {
                field: "file".into(),
                reason: match max {
                    MAX_IMAGE_BYTES => "larger than WhatsApp's 5 MB for an image",
                    MAX_VIDEO_BYTES => "larger than WhatsApp's 16 MB for a video",
                    _ => "larger than WhatsApp's 100 MB for a document",
                },
            });
        }
        Ok(Self {
            filename,
            content_type,
            bytes,
        })
    }

    /// The file name.
    pub fn filename(&self) -> &str {
        &self.filename
    }

    /// The content type.
    pub fn content_type(&self) -> &str {
        self.content_type
    }

    /// How many bytes it holds.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether it holds none (never, once built).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The `multipart/form-data` body with the file as field `file`, and its
    /// `Content-Type` (naming the boundary).
    pub fn to_multipart(&self) -> (bytes::Bytes, String) {
        let boundary = format!("lipachat-{}", uuid::Uuid::new_v4().simple());
        // The file name is one line (checked); a double quote would end the quoted
        // string, so it is percent-encoded as browsers do.
        let filename = self.filename.replace('"', "%22");
        let mut body = Vec::with_capacity(self.bytes.len() + 256);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: {}\r\n\r\n",
                self.content_type
            )
            .as_bytes(),
        );
        body.extend_from_slice(&self.bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        (
            bytes::Bytes::from(body),
            format!("multipart/form-data; boundary={boundary}"),
        )
    }
}

/// An uploaded file: the id to name it by in a template's media header example.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UploadedFile {
    /// The id the gateway answered with.
    pub id: String,
}

/// Whether a failure proves the request was not processed, so repeating it cannot make
/// a second template or upload: no connection, no free request slot, or HTTP 429.
fn not_processed(error: &ApiError) -> bool {
    matches!(
        error,
        ApiError::Connect { .. } | ApiError::Busy { .. } | ApiError::RateLimited { .. }
    )
}

/// A string (or number) under one of `names` in `data`, or one level deeper under `data`.
fn id_in(data: &Value, names: &[&str]) -> Option<String> {
    match data {
        Value::String(id) if !id.trim().is_empty() => Some(id.trim().to_owned()),
        Value::Object(object) => names
            .iter()
            .find_map(|name| match object.get(*name) {
                Some(Value::String(id)) if !id.trim().is_empty() => Some(id.trim().to_owned()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            })
            .or_else(|| object.get("data").and_then(|inner| id_in(inner, names))),
        _ => None,
    }
}

fn saved(envelope: &Map<String, Value>) -> TemplateSaved {
    let data = envelope.get("data").cloned().unwrap_or(Value::Null);
    let status = match &data {
        Value::Object(object) => object
            .get("status")
            .or_else(|| object.get("data").and_then(|d| d.get("status")))
            .and_then(Value::as_str)
            .map(TemplateStatus::parse),
        _ => None,
    };
    TemplateSaved {
        id: id_in(&data, &["id", "templateId"]),
        status,
    }
}

impl Client {
    /// Creates a template for `business` (`POST /api/v1/template/{business number}`).
    /// It is usually `PENDING` until WhatsApp reviews it.
    pub async fn create_template(
        &self,
        business: PhoneNumber,
        draft: &TemplateDraft,
    ) -> Result<TemplateSaved, ApiError> {
        let url = self.template_url(&[business.digits().as_str()])?;
        self.save_template(reqwest::Method::POST, url, draft, "template create")
            .await
    }

    /// Updates the template `template_id` of `business`
    /// (`PUT /api/v1/template/{business number}/{templateId}`) with the same body as a
    /// create.
    pub async fn update_template(
        &self,
        business: PhoneNumber,
        template_id: &str,
        draft: &TemplateDraft,
    ) -> Result<TemplateSaved, ApiError> {
        field::required(named("template id"), template_id, 256, Lines::One)?;
        let url = self.template_url(&[business.digits().as_str(), template_id])?;
        self.save_template(reqwest::Method::PUT, url, draft, "template update")
            .await
    }

    async fn save_template(
        &self,
        method: reqwest::Method,
        url: reqwest::Url,
        draft: &TemplateDraft,
        what: &'static str,
    ) -> Result<TemplateSaved, ApiError> {
        let body = draft.to_body()?;
        let call = Call {
            method,
            url,
            body: Some((body.into_bytes(), crate::client::json_content_type())),
            what,
            retry_when: not_processed,
            deadline: None,
            max_response_bytes: self.max_catalog_bytes(),
        };
        let key = self.key();
        let span = tracing::info_span!("lipachat_template", name = draft.name(), what);
        let (saved, _) = tracing::Instrument::instrument(
            self.call(call, |raw| read_envelope(raw, key).map(|e| saved(&e))),
            span,
        )
        .await?;
        Ok(saved)
    }

    /// Uploads a template's media file (`POST /api/v1/template/upload/file`, multipart
    /// field `file`) and returns the id the gateway gives it.
    pub async fn upload_template_file(
        &self,
        file: &TemplateFile,
    ) -> Result<UploadedFile, ApiError> {
        let (body, content_type) = file.to_multipart();
        // The boundary is made here of letters, digits and a dash: always a valid value.
        let content_type = reqwest::header::HeaderValue::from_str(&content_type).map_err(|_| {
            ApiError::Invalid(crate::ValidationError::InvalidField {
                field: "multipart content type".to_owned(),
                reason: "not a valid header value",
            })
        })?;
        let call = Call {
            method: reqwest::Method::POST,
            url: self.template_url(&["upload", "file"])?,
            body: Some((body, content_type)),
            what: "template file upload",
            retry_when: not_processed,
            deadline: None,
            max_response_bytes: self.max_catalog_bytes(),
        };
        let key = self.key();
        let span = tracing::info_span!(
            "lipachat_upload",
            filename = file.filename(),
            bytes = file.len()
        );
        let (uploaded, _) = tracing::Instrument::instrument(
            self.call(call, |raw| {
                let envelope = read_envelope(raw, key)?;
                let data = envelope.get("data").unwrap_or(&Value::Null);
                id_in(data, &["id", "handle", "fileId", "mediaId"])
                    .map(|id| UploadedFile { id })
                    .ok_or_else(|| ApiError::UnexpectedResponse {
                        status: raw.status,
                        excerpt: excerpt(raw.body, raw.truncated, key),
                    })
            }),
            span,
        )
        .await?;
        Ok(uploaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn draft() -> TemplateDraft {
        TemplateDraft::new(
            "order_ready",
            "en_US",
            TemplateCategory::Utility,
            "Hi {{1}}, order {{2}} is ready.",
        )
        .unwrap()
    }

    #[test]
    fn the_documented_body() {
        let full = draft()
            .with_body_examples(["Jane", "A-42"])
            .unwrap()
            .with_header(DraftHeader::Text {
                text: "Order {{1}}".into(),
                example: Some("A-42".into()),
            })
            .unwrap()
            .with_footer("Thanks for shopping")
            .unwrap()
            .with_button(DraftButton::QuickReply {
                text: "Stop".into(),
            })
            .unwrap()
            .with_button(DraftButton::Url {
                text: "Track".into(),
                url: MediaUrl::new("https://example.com/track").unwrap(),
            })
            .unwrap()
            .with_button(DraftButton::PhoneNumber {
                text: "Call us".into(),
                phone: "254700000001".parse().unwrap(),
            })
            .unwrap();
        assert_eq!(
            full.to_body().unwrap().to_value(),
            json!({
                "name": "order_ready", "language": "en_US", "category": "UTILITY",
                "component": {
                    "header": {"format": "TEXT", "text": "Order {{1}}", "example": "A-42"},
                    "body": {"text": "Hi {{1}}, order {{2}} is ready.", "examples": ["Jane", "A-42"]},
                    "footer": {"text": "Thanks for shopping"},
                    "buttons": [
                        {"type": "QUICK_REPLY", "text": "Stop"},
                        {"type": "URL", "text": "Track", "url": "https://example.com/track"},
                        {"type": "PHONE_NUMBER", "text": "Call us", "phoneNumber": "254700000001"}
                    ]
                }
            })
        );
        let media = draft()
            .with_body_examples(["a", "b"])
            .unwrap()
            .with_header(DraftHeader::Media {
                format: HeaderFormat::Image,
                example: "4::aW1hZ2U=".into(),
            })
            .unwrap();
        assert_eq!(
            media.to_body().unwrap().to_value()["component"]["header"],
            json!({"format": "IMAGE", "example": "4::aW1hZ2U="})
        );
    }

    #[test]
    fn draft_rules() {
        assert!(draft().to_body().is_err(), "markers without examples");
        assert!(draft().with_body_examples(["only one"]).is_err());
        assert!(TemplateDraft::new("x", "en", TemplateCategory::parse("SERVICE"), "Hi").is_err());
        assert!(
            TemplateDraft::new("x", "en", TemplateCategory::Marketing, "b".repeat(1025)).is_err()
        );
        assert!(
            TemplateDraft::new("x", "en", TemplateCategory::Marketing, "b".repeat(1024)).is_ok()
        );
        let plain = TemplateDraft::new("x", "en", TemplateCategory::Marketing, "Hi").unwrap();
        assert!(plain.clone().with_footer("f".repeat(61)).is_err());
        assert!(plain.clone().with_footer("f".repeat(60)).is_ok());
        let mut many = plain.clone();
        for i in 0..10 {
            many = many
                .with_button(DraftButton::QuickReply {
                    text: format!("b{i}"),
                })
                .unwrap();
        }
        assert!(matches!(
            many.with_button(DraftButton::QuickReply { text: "b10".into() }),
            Err(ValidationError::ItemCount {
                count: 11,
                max: 10,
                ..
            })
        ));
        assert!(
            plain
                .clone()
                .with_button(DraftButton::QuickReply {
                    text: "t".repeat(26)
                })
                .is_err()
        );
        assert!(
            plain
                .clone()
                .with_header(DraftHeader::Text {
                    text: "H {{1}}".into(),
                    example: None
                })
                .is_err()
        );
        assert!(
            plain
                .clone()
                .with_header(DraftHeader::Media {
                    format: HeaderFormat::Location,
                    example: "x".into()
                })
                .is_err()
        );
        let twice = plain
            .with_button(DraftButton::QuickReply {
                text: "Same".into(),
            })
            .unwrap();
        assert!(
            twice
                .with_button(DraftButton::QuickReply {
                    text: "Same".into()
                })
                .is_err()
        );
    }

    #[test]
    fn files_and_multipart() {
        assert!(TemplateFile::new("a.png", "image/png", vec![0u8; MAX_IMAGE_BYTES]).is_ok());
        assert!(TemplateFile::new("a.png", "image/png", vec![0u8; MAX_IMAGE_BYTES + 1]).is_err());
        assert!(TemplateFile::new("a.png", "image/gif", vec![1u8]).is_err());
        assert!(TemplateFile::new("a.png", "image/png", Vec::<u8>::new()).is_err());
        assert!(TemplateFile::new("../a.png", "image/png", vec![1u8]).is_err());
        let file =
            TemplateFile::new("say \"hi\".pdf", "Application/PDF", &b"%PDF-1.4"[..]).unwrap();
        assert_eq!(file.content_type(), "application/pdf");
        let (body, content_type) = file.to_multipart();
        let boundary = content_type
            .strip_prefix("multipart/form-data; boundary=")
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert_eq!(
            text,
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"say %22hi%22.pdf\"\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4\r\n--{boundary}--\r\n"
            )
        );
    }

    #[test]
    fn ids_are_found_where_the_gateway_may_put_them() {
        let names = ["id", "handle"];
        assert_eq!(id_in(&json!("h1"), &names).as_deref(), Some("h1"));
        assert_eq!(
            id_in(&json!({"handle": "h2"}), &names).as_deref(),
            Some("h2")
        );
        assert_eq!(
            id_in(&json!({"data": {"id": 7}}), &names).as_deref(),
            Some("7")
        );
        assert_eq!(id_in(&json!({"other": 1}), &names), None);
        assert_eq!(id_in(&json!(null), &names), None);
        let saved = saved(
            json!({"status": "success", "data": {"id": "t-1", "status": "PENDING"}})
                .as_object()
                .unwrap(),
        );
        assert_eq!(saved.id.as_deref(), Some("t-1"));
        assert_eq!(saved.status, Some(TemplateStatus::Pending));
    }
}
