//! A picture, video, voice note, document or sticker by URL (`POST /api/v1/whatsapp/media`).

use std::fmt;

use lipachat_session::Conversation;
use serde::{Deserialize, Serialize};

use crate::MessageId;
use crate::error::ValidationError;
use crate::field::{self, Lines, named};
use crate::request::Addressing;
use crate::template::MediaUrl;

/// WhatsApp's limit for a media caption, in characters.
pub const MAX_CAPTION_CHARS: usize = 1024;
/// The longest document file name accepted, in characters. WhatsApp publishes no limit;
/// 255 is what common file systems allow, so a longer name could not be saved as given.
pub const MAX_FILENAME_CHARS: usize = 255;

/// What kind of media a [`MediaMessage`] carries (the wire's `mediaType`), or an inbound
/// [`Media`](crate::webhook::Media) item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MediaKind {
    /// A picture (JPEG or PNG).
    Image,
    /// A video (MP4 or 3GPP).
    Video,
    /// A voice note or audio file; takes no caption. An inbound one may be a voice note
    /// (see [`Media::voice`](crate::webhook::Media::voice)).
    Audio,
    /// A document (PDF, spreadsheet, ...); the only kind with a file name.
    Document,
    /// A sticker (WebP); takes no caption. An inbound one may be animated (see
    /// [`Media::animated`](crate::webhook::Media::animated)).
    Sticker,
}

impl MediaKind {
    /// Every kind, in the gateway's order.
    pub const ALL: [MediaKind; 5] = [
        Self::Image,
        Self::Video,
        Self::Audio,
        Self::Document,
        Self::Sticker,
    ];

    /// The gateway's spelling: `IMAGE`, `VIDEO`, `AUDIO`, `DOCUMENT` or `STICKER`.
    pub fn wire_type(self) -> &'static str {
        match self {
            Self::Image => "IMAGE",
            Self::Video => "VIDEO",
            Self::Audio => "AUDIO",
            Self::Document => "DOCUMENT",
            Self::Sticker => "STICKER",
        }
    }

    /// The lowercase name: `image`, `video`, `audio`, `document` or `sticker`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Document => "document",
            Self::Sticker => "sticker",
        }
    }

    /// The kind of a wire or lowercase name, in any case.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.name().eq_ignore_ascii_case(name))
    }

    /// Whether WhatsApp shows a caption with it: not with audio or stickers.
    pub fn takes_caption(self) -> bool {
        !matches!(self, Self::Audio | Self::Sticker)
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A media message: the kind, an `https://` URL WhatsApp fetches it from, and for the
/// kinds that take them a caption (not audio or stickers, at most 1024 characters) and a
/// file name (documents only, at most 255 characters, no path).
///
/// Deserialisation re-checks everything.
///
/// ```
/// use lipachat_api::{MediaKind, MediaMessage};
///
/// let invoice = MediaMessage::new(MediaKind::Document, "https://example.com/inv.pdf")?
///     .with_caption("Your invoice")?
///     .with_filename("invoice-2026-11.pdf")?;
/// assert_eq!(invoice.filename(), Some("invoice-2026-11.pdf"));
/// let voice = MediaMessage::new(MediaKind::Audio, "https://example.com/hello.ogg")?;
/// assert!(voice.clone().with_caption("Hello").is_err());
/// assert!(voice.with_filename("hello.ogg").is_err());
/// assert!(MediaMessage::new(MediaKind::Image, "http://example.com/a.png").is_err());
/// # Ok::<(), lipachat_api::ValidationError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "MediaMessageRepr")]
pub struct MediaMessage {
    media_type: MediaKind,
    url: MediaUrl,
    #[serde(skip_serializing_if = "Option::is_none")]
    caption: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filename: Option<String>,
}

/// The unchecked shape [`MediaMessage`] is deserialised through.
#[derive(Deserialize)]
struct MediaMessageRepr {
    media_type: MediaKind,
    url: MediaUrl,
    #[serde(default)]
    caption: Option<String>,
    #[serde(default)]
    filename: Option<String>,
}

impl TryFrom<MediaMessageRepr> for MediaMessage {
    type Error = ValidationError;

    fn try_from(repr: MediaMessageRepr) -> Result<Self, Self::Error> {
        let mut message = Self {
            media_type: repr.media_type,
            url: repr.url,
            caption: None,
            filename: None,
        };
        if let Some(caption) = repr.caption {
            message = message.with_caption(caption)?;
        }
        if let Some(filename) = repr.filename {
            message = message.with_filename(filename)?;
        }
        Ok(message)
    }
}

impl MediaMessage {
    /// Media of `kind` at `url` (checked: absolute `https://`, a host, no credentials).
    pub fn new(kind: MediaKind, url: &str) -> Result<Self, ValidationError> {
        Ok(Self {
            media_type: kind,
            url: MediaUrl::new(url)?,
            caption: None,
            filename: None,
        })
    }

    /// The same media with a caption (replacing any earlier one).
    pub fn with_caption(mut self, caption: impl Into<String>) -> Result<Self, ValidationError> {
        let caption = caption.into();
        if !self.media_type.takes_caption() {
            return Err(ValidationError::FieldNotAllowed {
                field: "caption",
                reason: match self.media_type {
                    MediaKind::Audio => "on audio",
                    _ => "on a sticker",
                },
            });
        }
        field::required(named("caption"), &caption, MAX_CAPTION_CHARS, Lines::Many)?;
        self.caption = Some(caption);
        Ok(self)
    }

    /// The same document with a file name (replacing any earlier one): not blank, at most
    /// 255 characters, no `/`, `\` or control characters.
    pub fn with_filename(mut self, filename: impl Into<String>) -> Result<Self, ValidationError> {
        let filename = filename.into();
        if self.media_type != MediaKind::Document {
            return Err(ValidationError::FieldNotAllowed {
                field: "filename",
                reason: "except on documents",
            });
        }
        check_filename(&filename)?;
        self.filename = Some(filename);
        Ok(self)
    }

    /// The kind of media.
    pub fn kind(&self) -> MediaKind {
        self.media_type
    }

    /// Where WhatsApp fetches it.
    pub fn url(&self) -> &MediaUrl {
        &self.url
    }

    /// The caption, if any.
    pub fn caption(&self) -> Option<&str> {
        self.caption.as_deref()
    }

    /// The document's file name, if any.
    pub fn filename(&self) -> Option<&str> {
        self.filename.as_deref()
    }
}

/// A file name: not blank, at most 255 characters, no `/`, `\\` or control characters.
pub(crate) fn check_filename(filename: &str) -> Result<(), ValidationError> {
    field::required(named("filename"), filename, MAX_FILENAME_CHARS, Lines::One)?;
    if filename.contains(['/', '\\']) {
        return Err(ValidationError::InvalidField {
            field: "filename".into(),
            reason: "a file name, not a path: '/' and '\\' are not allowed",
        });
    }
    Ok(())
}

/// Body of `POST /api/v1/whatsapp/media`, in the documented field order:
/// `{messageId, from, to, mediaType, mediaUrl, caption?, filename?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaRequest {
    /// `messageId`, `from` and `to`.
    #[serde(flatten)]
    pub addressing: Addressing,
    /// `IMAGE`, `VIDEO`, `AUDIO`, `DOCUMENT` or `STICKER`.
    pub media_type: String,
    /// The `https://` URL.
    pub media_url: String,
    /// The caption, omitted when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// The document's file name, omitted when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

impl MediaRequest {
    /// The request for one send of `message` in `conversation`;
    /// [`ValidationError::NotAddressable`] when the customer has no phone number.
    pub fn new(
        conversation: Conversation,
        id: MessageId,
        message: &MediaMessage,
    ) -> Result<Self, ValidationError> {
        Ok(Self {
            addressing: Addressing::new(conversation, id)?,
            media_type: message.media_type.wire_type().to_owned(),
            media_url: message.url.as_str().to_owned(),
            caption: message.caption.clone(),
            filename: message.filename.clone(),
        })
    }

    /// The conversation, id and (re-validated) media this request carries.
    #[cfg(test)]
    pub(crate) fn into_parts(
        self,
    ) -> Result<(Conversation, MessageId, MediaMessage), ValidationError> {
        let kind = MediaKind::parse(&self.media_type)
            .filter(|kind| kind.wire_type() == self.media_type)
            .ok_or_else(|| ValidationError::InvalidField {
                field: "mediaType".into(),
                reason: "not IMAGE, VIDEO, AUDIO, DOCUMENT or STICKER",
            })?;
        let message = MediaMessageRepr {
            media_type: kind,
            url: MediaUrl::new(&self.media_url)?,
            caption: self.caption,
            filename: self.filename,
        };
        Ok((
            self.addressing.conversation(),
            self.addressing.message_id,
            MediaMessage::try_from(message)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://example.com/a.bin";

    #[test]
    fn captions_and_file_names_go_only_where_whatsapp_shows_them() {
        for kind in MediaKind::ALL {
            let media = MediaMessage::new(kind, URL).unwrap();
            assert_eq!(
                media.clone().with_caption("hi").is_ok(),
                kind.takes_caption()
            );
            assert_eq!(
                media.with_filename("a.pdf").is_ok(),
                kind == MediaKind::Document
            );
        }
        let image = MediaMessage::new(MediaKind::Image, URL).unwrap();
        assert!(image.clone().with_caption("x".repeat(1024)).is_ok());
        assert_eq!(
            image.clone().with_caption("x".repeat(1025)),
            Err(ValidationError::FieldTooLong {
                field: "caption".into(),
                chars: 1025,
                max: 1024
            })
        );
        assert!(image.with_caption("two\nlines").is_ok());
        let document = MediaMessage::new(MediaKind::Document, URL).unwrap();
        assert!(document.clone().with_filename("a".repeat(255)).is_ok());
        assert!(matches!(
            document.clone().with_filename("a".repeat(256)),
            Err(ValidationError::FieldTooLong { chars: 256, .. })
        ));
        for bad in ["", " ", "../etc/passwd", "a\\b.pdf", "a\nb.pdf"] {
            assert!(document.clone().with_filename(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn stored_form_round_trips_and_is_rechecked() {
        let media = MediaMessage::new(MediaKind::Document, URL)
            .unwrap()
            .with_caption("Invoice")
            .unwrap()
            .with_filename("inv.pdf")
            .unwrap();
        let json = serde_json::to_value(&media).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"media_type": "document", "url": URL, "caption": "Invoice", "filename": "inv.pdf"})
        );
        assert_eq!(serde_json::from_value::<MediaMessage>(json).unwrap(), media);
        for tampered in [
            serde_json::json!({"media_type": "audio", "url": URL, "caption": "no"}),
            serde_json::json!({"media_type": "image", "url": URL, "filename": "a.png"}),
            serde_json::json!({"media_type": "image", "url": "http://example.com/a.png"}),
            serde_json::json!({"media_type": "gif", "url": URL}),
        ] {
            assert!(serde_json::from_value::<MediaMessage>(tampered).is_err());
        }
    }
}
