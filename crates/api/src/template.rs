//! An approved template message (`POST /api/v1/whatsapp/template`), the only kind WhatsApp
//! lets a business send outside the 24-hour window.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// The longest template name WhatsApp accepts.
pub const MAX_TEMPLATE_NAME_CHARS: usize = 512;
/// The longest body placeholder accepted, in characters.
pub const MAX_BODY_PLACEHOLDER_CHARS: usize = 1024;
/// The longest text header placeholder accepted, in characters (WhatsApp's header limit).
pub const MAX_HEADER_TEXT_CHARS: usize = 60;
/// The longest media URL accepted, in bytes.
pub const MAX_MEDIA_URL_LEN: usize = 2048;

/// An absolute `https://` URL with a host and no user name or password, for a template's
/// media header. Stored in the normalised form the `url` crate gives it.
///
/// ```
/// use lipachat_api::MediaUrl;
///
/// assert!(MediaUrl::new("https://example.com/card.png").is_ok());
/// assert!(MediaUrl::new("http://example.com/card.png").is_err());
/// assert!(MediaUrl::new("https://user:pw@example.com/card.png").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MediaUrl(String);

impl MediaUrl {
    /// Checks and normalises a URL.
    pub fn new(url: &str) -> Result<Self, ValidationError> {
        if url.len() > MAX_MEDIA_URL_LEN {
            return Err(ValidationError::MediaUrl {
                reason: "longer than 2048 characters",
            });
        }
        let parsed = url::Url::parse(url.trim()).map_err(|_| ValidationError::MediaUrl {
            reason: "not an absolute URL",
        })?;
        if parsed.scheme() != "https" {
            return Err(ValidationError::MediaUrl {
                reason: "must use https://",
            });
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(ValidationError::MediaUrl {
                reason: "has no host",
            });
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(ValidationError::MediaUrl {
                reason: "must not carry a user name or password",
            });
        }
        let normalised = String::from(parsed);
        if normalised.len() > MAX_MEDIA_URL_LEN {
            return Err(ValidationError::MediaUrl {
                reason: "longer than 2048 characters",
            });
        }
        Ok(Self(normalised))
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MediaUrl {
    type Error = ValidationError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<MediaUrl> for String {
    fn from(url: MediaUrl) -> Self {
        url.0
    }
}

impl fmt::Display for MediaUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MediaUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MediaUrl({})", self.0)
    }
}

/// A template's header value for this send.
///
/// Stored as `{"type": "image", "url": "https://..."}` or `{"type": "text", "text": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TemplateHeader {
    /// The value of a text header's placeholder (at most 60 characters, no line breaks,
    /// tabs or more than four spaces in a row).
    Text {
        /// The value.
        text: String,
    },
    /// An image header.
    Image {
        /// Where WhatsApp fetches the image.
        url: MediaUrl,
    },
    /// A video header.
    Video {
        /// Where WhatsApp fetches the video.
        url: MediaUrl,
    },
    /// A document header.
    Document {
        /// Where WhatsApp fetches the document.
        url: MediaUrl,
    },
}

impl TemplateHeader {
    /// A text header value.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text { text: text.into() }
    }

    /// An image header from an `https://` URL.
    pub fn image(url: &str) -> Result<Self, ValidationError> {
        Ok(Self::Image {
            url: MediaUrl::new(url)?,
        })
    }

    /// A video header from an `https://` URL.
    pub fn video(url: &str) -> Result<Self, ValidationError> {
        Ok(Self::Video {
            url: MediaUrl::new(url)?,
        })
    }

    /// A document header from an `https://` URL.
    pub fn document(url: &str) -> Result<Self, ValidationError> {
        Ok(Self::Document {
            url: MediaUrl::new(url)?,
        })
    }

    /// The gateway's name for the header's type: `TEXT`, `IMAGE`, `VIDEO` or `DOCUMENT`.
    pub fn wire_type(&self) -> &'static str {
        match self {
            Self::Text { .. } => "TEXT",
            Self::Image { .. } => "IMAGE",
            Self::Video { .. } => "VIDEO",
            Self::Document { .. } => "DOCUMENT",
        }
    }

    /// The media URL, for a media header.
    pub fn media_url(&self) -> Option<&MediaUrl> {
        match self {
            Self::Text { .. } => None,
            Self::Image { url } | Self::Video { url } | Self::Document { url } => Some(url),
        }
    }

    fn validate(&self) -> Result<(), ValidationError> {
        match self {
            Self::Text { text } => {
                check_placeholder(text, MAX_HEADER_TEXT_CHARS).map_err(|reason| {
                    ValidationError::Placeholder {
                        place: "header".into(),
                        reason,
                    }
                })
            }
            // A `MediaUrl` is valid by construction and by deserialisation.
            Self::Image { .. } | Self::Video { .. } | Self::Document { .. } => Ok(()),
        }
    }
}

/// An approved template: its name, language, optional header and body placeholders.
///
/// WhatsApp refuses a placeholder that is empty, holds a line break or tab, or has more
/// than four spaces in a row (its error 132018); those are refused here before any request.
/// Deserialisation re-checks everything.
///
/// ```
/// use lipachat_api::{TemplateHeader, TemplateMessage};
///
/// let invitation = TemplateMessage::new("contact_share", "en")?
///     .with_header(TemplateHeader::image("https://example.com/card.png")?)?;
/// // Per send, fill the body's {{1}}, {{2}}:
/// let this_send = invitation.clone().with_body_placeholders(["John", "2000"])?;
/// assert_eq!(this_send.body_placeholders(), ["John", "2000"]);
/// assert!(TemplateMessage::new("Contact Share", "en").is_err());
/// assert!(TemplateMessage::new("contact_share", "english").is_err());
/// # Ok::<(), lipachat_api::ValidationError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TemplateMessageRepr")]
pub struct TemplateMessage {
    name: String,
    language: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    header: Option<TemplateHeader>,
    body_placeholders: Vec<String>,
}

/// The unchecked shape [`TemplateMessage`] is deserialised through.
#[derive(Deserialize)]
struct TemplateMessageRepr {
    name: String,
    language: String,
    #[serde(default)]
    header: Option<TemplateHeader>,
    #[serde(default)]
    body_placeholders: Vec<String>,
}

impl TryFrom<TemplateMessageRepr> for TemplateMessage {
    type Error = ValidationError;

    fn try_from(repr: TemplateMessageRepr) -> Result<Self, Self::Error> {
        let mut message = Self::new(repr.name, repr.language)?;
        if let Some(header) = repr.header {
            message = message.with_header(header)?;
        }
        message.with_body_placeholders(repr.body_placeholders)
    }
}

impl TemplateMessage {
    /// A template with no header and no placeholders.
    ///
    /// `name`: 1 to 512 characters of `[a-z0-9_]`. `language`: a WhatsApp language code,
    /// two or three lowercase letters with an optional `_` and two uppercase letters
    /// (`en`, `fil`, `en_US`, `pt_BR`).
    pub fn new(
        name: impl Into<String>,
        language: impl Into<String>,
    ) -> Result<Self, ValidationError> {
        let name = name.into();
        let language = language.into();
        check_template_name(&name)?;
        check_language(&language)?;
        Ok(Self {
            name,
            language,
            header: None,
            body_placeholders: Vec::new(),
        })
    }

    /// The same template with a header value (replacing any earlier one).
    pub fn with_header(mut self, header: TemplateHeader) -> Result<Self, ValidationError> {
        header.validate()?;
        self.header = Some(header);
        Ok(self)
    }

    /// The same template without a header.
    pub fn without_header(mut self) -> Self {
        self.header = None;
        self
    }

    /// The same template with these body placeholders (`{{1}}`, `{{2}}`, ... in order),
    /// replacing any earlier ones: the way to fill a stored template for one send.
    pub fn with_body_placeholders<I, S>(mut self, placeholders: I) -> Result<Self, ValidationError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let placeholders: Vec<String> = placeholders.into_iter().map(Into::into).collect();
        for (index, value) in placeholders.iter().enumerate() {
            check_body_placeholder(index, value)?;
        }
        self.body_placeholders = placeholders;
        Ok(self)
    }

    /// Appends one body placeholder.
    pub fn push_body_placeholder(
        &mut self,
        placeholder: impl Into<String>,
    ) -> Result<(), ValidationError> {
        let placeholder = placeholder.into();
        check_body_placeholder(self.body_placeholders.len(), &placeholder)?;
        self.body_placeholders.push(placeholder);
        Ok(())
    }

    /// The template's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The language code (the wire's `languageCode`).
    pub fn language(&self) -> &str {
        &self.language
    }

    /// The header value, if any.
    pub fn header(&self) -> Option<&TemplateHeader> {
        self.header.as_ref()
    }

    /// The body placeholders, in order.
    pub fn body_placeholders(&self) -> &[String] {
        &self.body_placeholders
    }
}

pub(crate) fn shortened(text: &str) -> String {
    text.chars().take(80).collect()
}

pub(crate) fn check_template_name(name: &str) -> Result<(), ValidationError> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > MAX_TEMPLATE_NAME_CHARS {
        Some("longer than 512 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        Some("only lowercase letters, digits and '_' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ValidationError::TemplateName {
            name: shortened(name),
            reason,
        }),
        None => Ok(()),
    }
}

pub(crate) fn check_language(code: &str) -> Result<(), ValidationError> {
    let (language, region) = match code.split_once('_') {
        Some((language, region)) => (language, Some(region)),
        None => (code, None),
    };
    let language_ok =
        (2..=3).contains(&language.len()) && language.bytes().all(|b| b.is_ascii_lowercase());
    let region_ok =
        region.is_none_or(|r| r.len() == 2 && r.bytes().all(|b| b.is_ascii_uppercase()));
    if language_ok && region_ok {
        Ok(())
    } else {
        Err(ValidationError::LanguageCode {
            code: shortened(code),
        })
    }
}

fn check_body_placeholder(index: usize, value: &str) -> Result<(), ValidationError> {
    check_placeholder(value, MAX_BODY_PLACEHOLDER_CHARS).map_err(|reason| {
        ValidationError::Placeholder {
            place: format!("body #{}", index + 1),
            reason,
        }
    })
}

/// WhatsApp's rules for a parameter's text (error 132018), plus a length limit.
fn check_placeholder(value: &str, max_chars: usize) -> Result<(), &'static str> {
    if value.trim().is_empty() {
        return Err("empty");
    }
    if value.chars().count() > max_chars {
        return Err("too long");
    }
    if value.chars().any(char::is_control) {
        return Err("line breaks, tabs and other control characters are not allowed");
    }
    if value.contains("     ") {
        return Err("more than four spaces in a row are not allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_languages() {
        for ok in ["contact_share", "a", "order_2", "x_1_y"] {
            assert!(check_template_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Contact", "contact-share", "contact share", "ñ"] {
            assert!(check_template_name(bad).is_err(), "{bad}");
        }
        assert!(check_template_name(&"a".repeat(513)).is_err());
        for ok in ["en", "fil", "en_US", "pt_BR", "zh_CN"] {
            assert!(check_language(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "e", "english", "EN", "en-US", "en_us", "en_USA", "en_", "_US",
        ] {
            assert!(check_language(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn placeholders_follow_whatsapp_rules() {
        let t = TemplateMessage::new("t", "en").unwrap();
        assert!(t.clone().with_body_placeholders(["a b", "2000"]).is_ok());
        for bad in ["", "  ", "a\nb", "a\tb", "a     b"] {
            let err = t.clone().with_body_placeholders(["fine", bad]).unwrap_err();
            assert!(
                matches!(&err, ValidationError::Placeholder { place, .. } if place == "body #2"),
                "{bad:?}: {err}"
            );
        }
        assert!(
            t.clone()
                .with_header(TemplateHeader::text("x".repeat(61)))
                .is_err()
        );
        assert!(t.clone().with_header(TemplateHeader::text("Hello")).is_ok());
        let mut t = t;
        t.push_body_placeholder("one").unwrap();
        assert!(t.push_body_placeholder("").is_err());
        assert_eq!(t.body_placeholders(), ["one"]);
    }

    #[test]
    fn media_urls() {
        assert_eq!(
            MediaUrl::new("https://Example.com/a b.png")
                .unwrap()
                .as_str(),
            "https://example.com/a%20b.png"
        );
        for bad in [
            "",
            "example.com/a.png",
            "ftp://example.com/a",
            "https://",
            "http://x.y/",
        ] {
            assert!(MediaUrl::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn storage_round_trip_and_revalidation() {
        let t = TemplateMessage::new("contact_share", "en_US")
            .unwrap()
            .with_header(TemplateHeader::document("https://example.com/a.pdf").unwrap())
            .unwrap()
            .with_body_placeholders(["John"])
            .unwrap();
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "name": "contact_share",
                "language": "en_US",
                "header": {"type": "document", "url": "https://example.com/a.pdf"},
                "body_placeholders": ["John"]
            })
        );
        assert_eq!(serde_json::from_value::<TemplateMessage>(json).unwrap(), t);
        for tampered in [
            serde_json::json!({"name": "Bad Name", "language": "en"}),
            serde_json::json!({"name": "ok", "language": "en", "header": {"type": "image", "url": "http://plain.example/a.png"}}),
            serde_json::json!({"name": "ok", "language": "en", "body_placeholders": ["a\nb"]}),
            serde_json::json!({"name": "ok", "language": "en", "header": {"type": "text", "text": ""}}),
        ] {
            assert!(serde_json::from_value::<TemplateMessage>(tampered).is_err());
        }
        let minimal: TemplateMessage =
            serde_json::from_value(serde_json::json!({"name": "ok", "language": "en"})).unwrap();
        assert_eq!(minimal, TemplateMessage::new("ok", "en").unwrap());
    }
}
