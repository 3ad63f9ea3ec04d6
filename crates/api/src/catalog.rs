//! The account's template catalog (`GET /api/v1/template/{business number}`), and the
//! check of a template send against it.
//!
//! The gateway answers with its envelope and the templates under `data.data[]` (doubly
//! nested; `data` as the array itself is read too). Each template is read tolerantly: the
//! fields the check needs are `name`, `language` and `status`; `category`,
//! `rejected_reason`, `quality_score` and `components` (WhatsApp's array form) are read
//! when present, in snake or camel case. A template without a name or language is skipped
//! and counted ([`Catalog::skipped`]). No placeholder count is given, so the `{{1}}`,
//! `{{2}}` (or named `{{first_name}}`) markers of the body and header text are counted:
//! distinct markers, each one value to send.
//!
//! Statuses, categories and header formats keep the gateway's spelling (`APPROVED`,
//! `PAUSED`, `UTILITY`, `IMAGE`, ...); one this crate does not know is kept as given.

use std::collections::BTreeSet;
use std::fmt;

use lipachat_session::PhoneNumber;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::client::{Call, Client};
use crate::error::ApiError;
use crate::response::read_envelope;
use crate::template::{TemplateHeader, TemplateMessage};

/// Declares an enum of the gateway's upper-case names with a catch-all that keeps an
/// unknown spelling: parsing (any case), the spelling back, `Display` and `Serialize` as
/// that spelling.
macro_rules! gateway_names {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
            /// A name this crate does not know, as the gateway spelled it.
            Other(String),
        }

        impl $name {
            /// Reads the gateway's name, in any case; an unknown one is kept as given.
            pub fn parse(text: &str) -> Self {
                let trimmed = text.trim();
                $(if trimmed.eq_ignore_ascii_case($text) {
                    return Self::$variant;
                })*
                Self::Other(trimmed.to_owned())
            }

            /// The gateway's spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)*
                    Self::Other(text) => text,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}

gateway_names!(
    /// A template's category: what it is for, and what it costs.
    TemplateCategory {
        /// Promotions, offers, re-engagement.
        Marketing = "MARKETING",
        /// Updates about a transaction or account the customer asked for.
        Utility = "UTILITY",
        /// One-time passwords.
        Authentication = "AUTHENTICATION",
    }
);

gateway_names!(
    /// A template's review status. Only an approved template can be sent.
    TemplateStatus {
        /// Approved: it can be sent.
        Approved = "APPROVED",
        /// Waiting for review.
        Pending = "PENDING",
        /// Refused at review (see [`CatalogTemplate::rejected_reason`]).
        Rejected = "REJECTED",
        /// Paused by WhatsApp for low quality.
        Paused = "PAUSED",
        /// Disabled by WhatsApp.
        Disabled = "DISABLED",
        /// The business appealed a rejection.
        InAppeal = "IN_APPEAL",
    }
);

gateway_names!(
    /// What a template's header holds.
    HeaderFormat {
        /// Text, possibly with one placeholder.
        Text = "TEXT",
        /// An image, given at each send.
        Image = "IMAGE",
        /// A video, given at each send.
        Video = "VIDEO",
        /// A document, given at each send.
        Document = "DOCUMENT",
        /// A location, given at each send (the gateway documents no way to send one).
        Location = "LOCATION",
    }
);

impl HeaderFormat {
    /// The format a header value given at send time has.
    pub fn of(header: &TemplateHeader) -> Self {
        match header {
            TemplateHeader::Text { .. } => Self::Text,
            TemplateHeader::Image { .. } => Self::Image,
            TemplateHeader::Video { .. } => Self::Video,
            TemplateHeader::Document { .. } => Self::Document,
        }
    }
}

/// A template's header as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeaderSpec {
    /// What it holds.
    pub format: HeaderFormat,
    /// For a text header, how many placeholders its text has (0 or 1); 0 otherwise.
    pub placeholders: usize,
}

impl HeaderSpec {
    /// Whether a send must give a value for this header: a media or location header
    /// always, a text header when its text has a placeholder.
    pub fn takes_value(&self) -> bool {
        match self.format {
            HeaderFormat::Text => self.placeholders > 0,
            HeaderFormat::Image
            | HeaderFormat::Video
            | HeaderFormat::Document
            | HeaderFormat::Location => true,
            // An unknown format is not checked either way.
            HeaderFormat::Other(_) => false,
        }
    }
}

/// One template of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CatalogTemplate {
    /// The gateway's id (used to update it), when given.
    pub id: Option<String>,
    /// The template's name.
    pub name: String,
    /// Its language code (`en`, `en_US`, ...).
    pub language: String,
    /// Its category, as the gateway spells it; `None` when not given.
    pub category: Option<TemplateCategory>,
    /// Its review status, as the gateway spells it; `None` when not given (such a
    /// template is never taken for approved).
    pub status: Option<TemplateStatus>,
    /// Why it was rejected, when the gateway says.
    pub rejected_reason: Option<String>,
    /// Its quality score (`GREEN`, `YELLOW`, `RED`, `UNKNOWN`), when given.
    pub quality_score: Option<String>,
    /// Its header, if it has one.
    pub header: Option<HeaderSpec>,
    /// The body's text, with its markers.
    pub body_text: Option<String>,
    /// How many values the body takes (distinct `{{…}}` markers in its text).
    pub body_placeholders: usize,
}

impl CatalogTemplate {
    /// Whether the gateway reports it `APPROVED`.
    pub fn is_approved(&self) -> bool {
        self.status == Some(TemplateStatus::Approved)
    }

    /// Checks a send of this template: approved, as many body values as markers, and a
    /// header value exactly when the header takes one, of its format.
    pub fn check(&self, message: &TemplateMessage) -> Result<(), CatalogRefusal> {
        let (name, language) = (self.name.clone(), self.language.clone());
        if !self.is_approved() {
            return Err(CatalogRefusal::NotApproved {
                name,
                language,
                status: self
                    .status
                    .clone()
                    .unwrap_or_else(|| TemplateStatus::Other("(no status)".into())),
            });
        }
        let given = message.body_placeholders().len();
        if given != self.body_placeholders {
            return Err(CatalogRefusal::PlaceholderCount {
                name,
                language,
                expected: self.body_placeholders,
                given,
            });
        }
        let expected = self
            .header
            .as_ref()
            .filter(|header| header.takes_value())
            .map(|header| header.format.clone());
        let unchecked = matches!(
            &self.header,
            Some(HeaderSpec {
                format: HeaderFormat::Other(_),
                ..
            })
        );
        let given = message.header().map(HeaderFormat::of);
        if expected != given && !unchecked {
            return Err(CatalogRefusal::HeaderMismatch {
                name,
                language,
                expected,
                given,
            });
        }
        Ok(())
    }
}

/// Why a template send was refused before any request, against the business's catalog.
/// The check runs before sending because WhatsApp's own answers to these (132000
/// parameter mismatch, 132001 template missing, 132015/132016 paused or disabled) may come
/// only later, in a failed status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogRefusal {
    /// No template of that name is in the business's catalog.
    #[error("template {name:?} is not in the catalog of {business}")]
    UnknownTemplate {
        /// The business number whose catalog was checked.
        business: PhoneNumber,
        /// The template's name.
        name: String,
    },
    /// The template is in the catalog, but not in that language.
    #[error(
        "template {name:?} has no {language:?} version in the catalog of {business} (its languages: {})",
        available.join(", ")
    )]
    UnknownLanguage {
        /// The business number whose catalog was checked.
        business: PhoneNumber,
        /// The template's name.
        name: String,
        /// The language asked for.
        language: String,
        /// The languages it has.
        available: Vec<String>,
    },
    /// The template is not approved (pending, rejected, paused, disabled, ...).
    #[error(
        "template {name:?} ({language}) is {status}, not APPROVED: WhatsApp sends only approved templates"
    )]
    NotApproved {
        /// The template's name.
        name: String,
        /// Its language.
        language: String,
        /// Its status, as the gateway spells it.
        status: TemplateStatus,
    },
    /// The number of body values differs from the number of markers in its body.
    #[error(
        "template {name:?} ({language}) takes {expected} body placeholder value(s); {given} given"
    )]
    PlaceholderCount {
        /// The template's name.
        name: String,
        /// Its language.
        language: String,
        /// The markers in its body.
        expected: usize,
        /// The values given.
        given: usize,
    },
    /// A header value is missing, not wanted, or of another format than the header's.
    #[error(
        "template {name:?} ({language}) takes {}; {}",
        expected.as_ref().map_or_else(|| "no header value".to_owned(), |f| format!("a header value ({f})")),
        given.as_ref().map_or_else(|| "none was given".to_owned(), |f| format!("a header value ({f}) was given"))
    )]
    HeaderMismatch {
        /// The header format a value is needed for, or `None` when the template takes none.
        expected: Option<HeaderFormat>,
        /// The format given, or `None`.
        given: Option<HeaderFormat>,
        /// The template's name.
        name: String,
        /// Its language.
        language: String,
    },
}

/// A business number's templates, as the gateway listed them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Catalog {
    /// The business number.
    pub business: PhoneNumber,
    /// The templates, in the gateway's order.
    pub templates: Vec<CatalogTemplate>,
    /// Entries skipped because they had no name or language.
    pub skipped: usize,
}

impl Catalog {
    /// Reads the gateway's answer: the templates under `data.data[]` (or `data[]`).
    /// `None` when there is no such array.
    pub fn from_envelope(business: PhoneNumber, envelope: &Map<String, Value>) -> Option<Self> {
        let data = envelope.get("data")?;
        let entries = match data {
            Value::Array(entries) => entries,
            Value::Object(inner) => inner.get("data")?.as_array()?,
            _ => return None,
        };
        let mut templates = Vec::with_capacity(entries.len());
        let mut skipped = 0;
        for entry in entries {
            match entry.as_object().and_then(read_template) {
                Some(template) => templates.push(template),
                None => skipped += 1,
            }
        }
        Some(Self {
            business,
            templates,
            skipped,
        })
    }

    /// The template of that name and language (an approved one first, should the catalog
    /// list several).
    pub fn find(&self, name: &str, language: &str) -> Option<&CatalogTemplate> {
        let mut matching = self
            .templates
            .iter()
            .filter(|t| t.name == name && t.language == language);
        let first = matching.next()?;
        Some(if first.is_approved() {
            first
        } else {
            matching.find(|t| t.is_approved()).unwrap_or(first)
        })
    }

    /// Checks a send of `message` against the catalog (see [`CatalogTemplate::check`]),
    /// returning the template it matched.
    pub fn check(&self, message: &TemplateMessage) -> Result<&CatalogTemplate, CatalogRefusal> {
        let name = message.name();
        let Some(template) = self.find(name, message.language()) else {
            let available: BTreeSet<&str> = self
                .templates
                .iter()
                .filter(|t| t.name == name)
                .map(|t| t.language.as_str())
                .collect();
            return Err(if available.is_empty() {
                CatalogRefusal::UnknownTemplate {
                    business: self.business,
                    name: name.to_owned(),
                }
            } else {
                CatalogRefusal::UnknownLanguage {
                    business: self.business,
                    name: name.to_owned(),
                    language: message.language().to_owned(),
                    available: available.into_iter().map(str::to_owned).collect(),
                }
            });
        };
        template.check(message).map(|()| template)
    }
}

/// A string field under any of `names`.
fn string_of(object: &Map<String, Value>, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|name| object.get(*name))
        .and_then(|value| match value {
            Value::String(s) => Some(s.trim().to_owned()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .filter(|s| !s.is_empty())
}

/// One catalog entry; `None` without a name or language.
fn read_template(entry: &Map<String, Value>) -> Option<CatalogTemplate> {
    let name = string_of(entry, &["name"])?;
    let language = string_of(entry, &["language", "languageCode"])?;
    let quality_score = match entry
        .get("quality_score")
        .or_else(|| entry.get("qualityScore"))
    {
        Some(Value::Object(score)) => string_of(score, &["score"]),
        Some(Value::String(score)) if !score.trim().is_empty() => Some(score.trim().to_owned()),
        _ => None,
    };
    let mut template = CatalogTemplate {
        id: string_of(entry, &["id", "templateId"]),
        name,
        language,
        category: string_of(entry, &["category"]).map(|c| TemplateCategory::parse(&c)),
        status: string_of(entry, &["status"]).map(|s| TemplateStatus::parse(&s)),
        rejected_reason: string_of(entry, &["rejected_reason", "rejectedReason"]),
        quality_score,
        header: None,
        body_text: None,
        body_placeholders: 0,
    };
    let components = entry.get("components").and_then(Value::as_array);
    for component in components
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
    {
        let kind = string_of(component, &["type"]).unwrap_or_default();
        let text = string_of(component, &["text"]);
        if kind.eq_ignore_ascii_case("HEADER") {
            let format = string_of(component, &["format"])
                .map_or(HeaderFormat::Text, |f| HeaderFormat::parse(&f));
            let placeholders = match format {
                HeaderFormat::Text => text.as_deref().map_or(0, count_markers),
                _ => 0,
            };
            template.header = Some(HeaderSpec {
                format,
                placeholders,
            });
        } else if kind.eq_ignore_ascii_case("BODY") {
            template.body_placeholders = text.as_deref().map_or(0, count_markers);
            template.body_text = text;
        }
    }
    Some(template)
}

/// How many distinct `{{…}}` markers `text` has: positional (`{{1}}`) or named
/// (`{{first_name}}`), each one value to send.
pub fn count_markers(text: &str) -> usize {
    let mut markers = BTreeSet::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            break;
        };
        let inner = after[..close].trim();
        if !inner.is_empty()
            && inner
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            markers.insert(inner);
            rest = &after[close + 2..];
        } else {
            // Not a marker: look again from the next character.
            rest = &rest[open + 1..];
        }
    }
    markers.len()
}

/// The most bytes of a catalog answer read, by default: a catalog of a few hundred
/// templates, each with its components, fits well within it.
pub const DEFAULT_MAX_CATALOG_BYTES: usize = 4 * 1024 * 1024;

impl Client {
    /// Fetches `business`'s templates (`GET /api/v1/template/{business number}`).
    /// Connection failures, timeouts, 408, 429 and 5xx are retried under the client's
    /// retry policy (a read changes nothing). The answer may be up to
    /// [`ClientBuilder::max_catalog_bytes`](crate::ClientBuilder::max_catalog_bytes).
    pub async fn templates(&self, business: PhoneNumber) -> Result<Catalog, ApiError> {
        let call = Call {
            method: reqwest::Method::GET,
            url: self.template_url(&[business.digits().as_str()])?,
            body: None,
            what: "template catalog fetch",
            retry_when: ApiError::is_transient,
            deadline: None,
            max_response_bytes: self.max_catalog_bytes(),
        };
        let key = self.key();
        let span = tracing::info_span!("lipachat_templates", %business);
        let (catalog, _) = tracing::Instrument::instrument(
            self.call(call, |raw| {
                let envelope = read_envelope(raw, key)?;
                Catalog::from_envelope(business, &envelope).ok_or_else(|| {
                    ApiError::UnexpectedResponse {
                        status: raw.status,
                        excerpt: crate::response::excerpt(raw.body, raw.truncated, key),
                    }
                })
            }),
            span,
        )
        .await?;
        if catalog.skipped > 0 {
            tracing::warn!(%business, skipped = catalog.skipped, "catalog entries without a name or language were skipped");
        }
        Ok(catalog)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn business() -> PhoneNumber {
        "254110090747".parse().unwrap()
    }

    fn catalog() -> Catalog {
        let envelope = json!({
            "timestamp": null,
            "status": "success",
            "data": {"data": [
                {"id": "1", "name": "order_update", "language": "en", "category": "UTILITY",
                 "status": "APPROVED", "rejected_reason": "NONE",
                 "quality_score": {"score": "GREEN", "date": 1},
                 "components": [
                    {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["x"]}},
                    {"type": "BODY", "text": "Hi {{1}}, order {{2}} ships {{2}}.",
                     "example": {"body_text": [["Jane", "42"]]}},
                    {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Stop"}]}
                 ]},
                {"id": "2", "name": "order_update", "language": "fr", "category": "UTILITY",
                 "status": "PAUSED", "components": [{"type": "BODY", "text": "Salut {{1}} {{2}}"}]},
                {"id": "3", "name": "welcome", "language": "en", "category": "MARKETING",
                 "status": "APPROVED", "components": [
                    {"type": "HEADER", "format": "TEXT", "text": "Hello {{1}}"},
                    {"type": "BODY", "text": "Welcome aboard"}
                 ]},
                {"id": "4", "name": "static", "language": "en", "category": "SOMETHING_NEW",
                 "status": "APPROVED", "components": [
                    {"type": "HEADER", "format": "TEXT", "text": "News"},
                    {"type": "BODY", "text": "Nothing to fill"}
                 ]},
                {"id": "5", "language": "en"},
                "not an object"
            ]}
        });
        Catalog::from_envelope(business(), envelope.as_object().unwrap()).unwrap()
    }

    #[test]
    fn reads_the_documented_shape_tolerantly() {
        let catalog = catalog();
        assert_eq!(catalog.templates.len(), 4);
        assert_eq!(catalog.skipped, 2);
        let order = catalog.find("order_update", "en").unwrap();
        assert_eq!(order.category, Some(TemplateCategory::Utility));
        assert_eq!(
            order.status.as_ref().map(TemplateStatus::as_str),
            Some("APPROVED")
        );
        assert_eq!(order.quality_score.as_deref(), Some("GREEN"));
        assert_eq!(order.body_placeholders, 2);
        assert_eq!(
            order.header,
            Some(HeaderSpec {
                format: HeaderFormat::Image,
                placeholders: 0
            })
        );
        let new = catalog.find("static", "en").unwrap();
        assert_eq!(
            new.category.as_ref().map(TemplateCategory::as_str),
            Some("SOMETHING_NEW")
        );
        assert_eq!(
            serde_json::to_value(new).unwrap()["category"],
            json!("SOMETHING_NEW")
        );
    }

    #[test]
    fn markers_are_counted_once_each() {
        assert_eq!(count_markers("Hi {{1}}, {{2}} and {{1}}"), 2);
        assert_eq!(count_markers("Hi {{first_name}}"), 1);
        assert_eq!(count_markers("No {{ }} or {{a b}} or {{1"), 0);
        assert_eq!(count_markers("{{{1}}}"), 1);
        assert_eq!(count_markers(""), 0);
    }

    #[test]
    fn refusals() {
        let catalog = catalog();
        let t = |name: &str, language: &str| TemplateMessage::new(name, language).unwrap();
        let image = TemplateHeader::image("https://e.com/a.png").unwrap();
        let ok = t("order_update", "en")
            .with_header(image.clone())
            .unwrap()
            .with_body_placeholders(["Jane", "42"])
            .unwrap();
        assert_eq!(catalog.check(&ok).unwrap().id.as_deref(), Some("1"));
        assert!(matches!(
            catalog.check(&t("nope", "en")),
            Err(CatalogRefusal::UnknownTemplate { .. })
        ));
        match catalog.check(&t("order_update", "de")) {
            Err(CatalogRefusal::UnknownLanguage { available, .. }) => {
                assert_eq!(available, ["en", "fr"]);
            }
            other => panic!("{other:?}"),
        }
        let paused = catalog.check(&t("order_update", "fr")).unwrap_err();
        assert!(paused.to_string().contains("PAUSED"), "{paused}");
        let one_value = ok.clone().with_body_placeholders(["Jane"]).unwrap();
        assert!(matches!(
            catalog.check(&one_value),
            Err(CatalogRefusal::PlaceholderCount {
                expected: 2,
                given: 1,
                ..
            })
        ));
        let no_header = ok.clone().without_header();
        let refusal = catalog.check(&no_header).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "template \"order_update\" (en) takes a header value (IMAGE); none was given"
        );
        let video = ok
            .with_header(TemplateHeader::video("https://e.com/v.mp4").unwrap())
            .unwrap();
        assert!(matches!(
            catalog.check(&video),
            Err(CatalogRefusal::HeaderMismatch { .. })
        ));
        // A text header with a placeholder takes one value; a static one takes none.
        assert!(catalog.check(&t("welcome", "en")).is_err());
        let hello = t("welcome", "en")
            .with_header(TemplateHeader::text("Jane"))
            .unwrap();
        assert!(catalog.check(&hello).is_ok());
        assert!(catalog.check(&t("static", "en")).is_ok());
        let extra = t("static", "en")
            .with_header(TemplateHeader::text("x"))
            .unwrap();
        assert!(catalog.check(&extra).is_err());
    }

    #[test]
    fn an_answer_without_a_template_array_is_not_a_catalog() {
        for envelope in [
            json!({"status": "success"}),
            json!({"status": "success", "data": null}),
            json!({"status": "success", "data": {"items": []}}),
        ] {
            assert!(Catalog::from_envelope(business(), envelope.as_object().unwrap()).is_none());
        }
        let flat = json!({"status": "success", "data": [{"name": "a", "language": "en"}]});
        let catalog = Catalog::from_envelope(business(), flat.as_object().unwrap()).unwrap();
        assert_eq!(catalog.templates[0].status, None);
        assert!(!catalog.templates[0].is_approved());
    }
}
