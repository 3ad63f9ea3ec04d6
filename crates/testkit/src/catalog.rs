//! The template endpoints: the catalog (`GET /api/v1/template/{business}`), creating
//! (`POST` there) and updating (`PUT /api/v1/template/{business}/{id}`) templates,
//! uploading a template's media file (`POST /api/v1/template/upload/file`, multipart
//! field `file`), and the check of a template send against the business's catalog.
//!
//! Read by hand, like the send endpoints, so that a mistake in a client's serialisation
//! shows as a 400 here instead of being mirrored.

use std::collections::{BTreeSet, HashMap};

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use lipachat_session::PhoneNumber;
use serde_json::{Map, Value, json};

use crate::wire::{self, Violation};

/// A template send the business's catalog refuses, with WhatsApp's error for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TemplateRejection {
    /// WhatsApp's error code: 132001 no such template (or language), 132015 paused,
    /// 132016 disabled, 132000 wrong number of parameters, 132012 a header of the wrong
    /// format (or missing).
    pub(crate) code: u32,
    /// Its text.
    pub(crate) message: &'static str,
}

/// A file uploaded to `POST /api/v1/template/upload/file`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UploadedTemplateFile {
    /// The id answered.
    pub id: String,
    /// The part's file name.
    pub filename: String,
    /// The part's `Content-Type`.
    pub content_type: String,
    /// The file's bytes.
    pub bytes: Vec<u8>,
}

/// Every business's templates as the stand-in lists them, and the files uploaded.
#[derive(Debug, Default)]
pub(crate) struct TemplateBook {
    catalogs: HashMap<PhoneNumber, Vec<Value>>,
    uploads: Vec<UploadedTemplateFile>,
    next_id: u64,
}

/// How an answer to a template endpoint ended, for the journal.
pub(crate) struct TemplateAnswer {
    pub(crate) status: StatusCode,
    pub(crate) body: Vec<u8>,
    pub(crate) outcome: crate::record::RequestOutcome,
}

/// An entry of a catalog, in the shape the gateway lists (WhatsApp's template object).
///
/// `header` is a header format (`TEXT`, `IMAGE`, `VIDEO`, `DOCUMENT`) and, for `TEXT`,
/// its text; the body's `{{n}}` markers are what a send must fill.
///
/// ```
/// use lipachat_testkit::template_entry;
///
/// let entry = template_entry("order_update", "en", "UTILITY", "APPROVED", Some(("IMAGE", "")), "Hi {{1}}");
/// assert_eq!(entry["components"][0]["format"], "IMAGE");
/// assert_eq!(entry["components"][1]["text"], "Hi {{1}}");
/// ```
pub fn template_entry(
    name: &str,
    language: &str,
    category: &str,
    status: &str,
    header: Option<(&str, &str)>,
    body: &str,
) -> Value {
    let mut components = Vec::new();
    if let Some((format, text)) = header {
        let mut header = json!({"type": "HEADER", "format": format});
        if format == "TEXT" {
            header["text"] = json!(text);
        }
        components.push(header);
    }
    components.push(json!({"type": "BODY", "text": body}));
    json!({
        "id": format!("{name}-{language}"),
        "name": name,
        "language": language,
        "category": category,
        "status": status,
        "rejected_reason": "NONE",
        "quality_score": {"score": "UNKNOWN", "date": null},
        "components": components,
    })
}

/// Distinct `{{…}}` markers in `text`.
fn markers(text: &str) -> usize {
    let mut found = BTreeSet::new();
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
            found.insert(inner.to_owned());
            rest = &after[close + 2..];
        } else {
            rest = &rest[open + 1..];
        }
    }
    found.len()
}

/// A component of `entry` of `kind` (`HEADER`, `BODY`).
fn component<'a>(entry: &'a Value, kind: &str) -> Option<&'a Value> {
    entry
        .get("components")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

fn str_of<'a>(value: &'a Value, name: &str) -> Option<&'a str> {
    value.get(name).and_then(Value::as_str)
}

impl TemplateBook {
    pub(crate) fn set(&mut self, business: PhoneNumber, entries: Vec<Value>) {
        self.catalogs.insert(business, entries);
    }

    pub(crate) fn get(&self, business: PhoneNumber) -> Option<Vec<Value>> {
        self.catalogs.get(&business).cloned()
    }

    /// Sets the status of every entry of that name and language; whether there was one.
    pub(crate) fn set_status(
        &mut self,
        business: PhoneNumber,
        name: &str,
        language: &str,
        status: &str,
    ) -> bool {
        let mut found = false;
        for entry in self.catalogs.get_mut(&business).into_iter().flatten() {
            if str_of(entry, "name") == Some(name) && str_of(entry, "language") == Some(language) {
                entry["status"] = json!(status);
                found = true;
            }
        }
        found
    }

    pub(crate) fn uploads(&self) -> Vec<UploadedTemplateFile> {
        self.uploads.clone()
    }

    /// Checks a template send (already valid in shape) against the business's catalog,
    /// if it has one; a business without one takes any template.
    pub(crate) fn check_send(
        &self,
        business: PhoneNumber,
        body: &Value,
    ) -> Option<TemplateRejection> {
        let catalog = self.catalogs.get(&business)?;
        let template = body.get("template")?;
        let name = str_of(template, "name")?;
        let language = str_of(template, "languageCode")?;
        let missing = TemplateRejection {
            code: 132_001,
            message: "(#132001) Template name does not exist in the translation",
        };
        let entry = catalog.iter().find(|e| {
            str_of(e, "name") == Some(name)
                && str_of(e, "language") == Some(language)
                && str_of(e, "status") == Some("APPROVED")
        });
        let Some(entry) = entry else {
            let status = catalog
                .iter()
                .find(|e| {
                    str_of(e, "name") == Some(name) && str_of(e, "language") == Some(language)
                })
                .and_then(|e| str_of(e, "status"));
            return Some(match status {
                Some("PAUSED") => TemplateRejection {
                    code: 132_015,
                    message: "(#132015) Template is paused due to low quality",
                },
                Some("DISABLED") => TemplateRejection {
                    code: 132_016,
                    message: "(#132016) Template has been disabled",
                },
                _ => missing,
            });
        };
        let components = template.get("components");
        let given = components
            .and_then(|c| c.get("body"))
            .and_then(|b| b.get("placeholders"))
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let expected = component(entry, "BODY")
            .and_then(|b| str_of(b, "text"))
            .map_or(0, markers);
        if given != expected {
            return Some(TemplateRejection {
                code: 132_000,
                message: "(#132000) Number of parameters does not match the expected number of params",
            });
        }
        let header = component(entry, "HEADER");
        let wanted = header.and_then(|h| match str_of(h, "format").unwrap_or("TEXT") {
            "TEXT" if str_of(h, "text").map_or(0, markers) == 0 => None,
            format => Some(format),
        });
        let sent = components
            .and_then(|c| c.get("header"))
            .and_then(|h| str_of(h, "type"));
        if wanted != sent {
            return Some(TemplateRejection {
                code: 132_012,
                message: "(#132012) Parameter format does not match format in the created template",
            });
        }
        None
    }

    /// Answers a request to a template endpoint (the key and faults already checked).
    /// `segments`: the path after `/api/v1/template/`.
    pub(crate) fn answer(
        &mut self,
        method: &axum::http::Method,
        segments: &[&str],
        content_type: Option<&str>,
        bytes: &[u8],
        path: &str,
        at: DateTime<Utc>,
    ) -> TemplateAnswer {
        use crate::record::RequestOutcome;
        use axum::http::Method;
        let page = |status: StatusCode, outcome| TemplateAnswer {
            status,
            body: wire::error_page_body(
                at,
                status.as_u16(),
                status.canonical_reason().unwrap_or("Error"),
                path,
            ),
            outcome,
        };
        let bad = |violation| {
            page(
                StatusCode::BAD_REQUEST,
                RequestOutcome::BadRequest(violation),
            )
        };
        let business = |segment: &str| -> Option<PhoneNumber> {
            let digits = segment.bytes().all(|b| b.is_ascii_digit());
            digits.then(|| segment.parse().ok()).flatten()
        };
        match (method, segments) {
            (&Method::POST, ["upload", "file"]) => match read_upload(content_type, bytes) {
                Some((filename, content_type, file)) => {
                    self.next_id += 1;
                    let id = format!("upload-{}", self.next_id);
                    self.uploads.push(UploadedTemplateFile {
                        id: id.clone(),
                        filename,
                        content_type,
                        bytes: file,
                    });
                    success(at, json!({"id": id}), RequestOutcome::FileUploaded)
                }
                None => bad(Violation::UploadFile),
            },
            (_, ["upload", "file"]) => page(
                StatusCode::METHOD_NOT_ALLOWED,
                RequestOutcome::MethodNotAllowed,
            ),
            (&Method::GET, [number]) => match business(number).and_then(|b| self.get(b)) {
                Some(entries) => {
                    success(at, json!({"data": entries}), RequestOutcome::CatalogListed)
                }
                None => page(StatusCode::NOT_FOUND, RequestOutcome::NotFound),
            },
            (&Method::POST, [number]) => {
                let Some(business) = business(number) else {
                    return page(StatusCode::NOT_FOUND, RequestOutcome::NotFound);
                };
                let Some(draft) = read_draft(content_type, bytes) else {
                    return bad(Violation::TemplateDraft);
                };
                let catalog = self.catalogs.entry(business).or_default();
                let taken = catalog.iter().any(|e| {
                    str_of(e, "name") == str_of(&draft, "name")
                        && str_of(e, "language") == str_of(&draft, "language")
                });
                if taken {
                    return bad(Violation::TemplateExists);
                }
                self.next_id += 1;
                let entry = entry_of(&draft, &format!("tpl-{}", self.next_id));
                catalog.push(entry.clone());
                success(at, entry, RequestOutcome::TemplateCreated)
            }
            (&Method::PUT, [number, id]) => {
                let Some(business) = business(number) else {
                    return page(StatusCode::NOT_FOUND, RequestOutcome::NotFound);
                };
                let Some(draft) = read_draft(content_type, bytes) else {
                    return bad(Violation::TemplateDraft);
                };
                let existing = self
                    .catalogs
                    .get_mut(&business)
                    .and_then(|c| c.iter_mut().find(|e| str_of(e, "id") == Some(*id)));
                match existing {
                    Some(entry) => {
                        *entry = entry_of(&draft, id);
                        success(at, entry.clone(), RequestOutcome::TemplateUpdated)
                    }
                    None => page(StatusCode::NOT_FOUND, RequestOutcome::NotFound),
                }
            }
            (_, [_] | [_, _]) => page(
                StatusCode::METHOD_NOT_ALLOWED,
                RequestOutcome::MethodNotAllowed,
            ),
            _ => page(StatusCode::NOT_FOUND, RequestOutcome::NotFound),
        }
    }
}

/// The success envelope around `data`.
fn success(
    at: DateTime<Utc>,
    data: Value,
    outcome: crate::record::RequestOutcome,
) -> TemplateAnswer {
    let body = json!({
        "timestamp": wire::gateway_timestamp(at),
        "data": data,
        "status": "success",
        "message": "",
        "errors": null,
    });
    TemplateAnswer {
        status: StatusCode::OK,
        body: serde_json::to_vec(&body).unwrap_or_default(),
        outcome,
    }
}

/// A catalog entry made from a valid draft, `PENDING` review.
fn entry_of(draft: &Value, id: &str) -> Value {
    let component = draft.get("component").cloned().unwrap_or(Value::Null);
    let mut components = Vec::new();
    if let Some(header) = component.get("header") {
        let mut item = json!({"type": "HEADER", "format": header.get("format").cloned().unwrap_or(json!("TEXT"))});
        if let Some(text) = header.get("text") {
            item["text"] = text.clone();
        }
        components.push(item);
    }
    components.push(json!({"type": "BODY", "text": component.get("body").and_then(|b| b.get("text")).cloned().unwrap_or(Value::Null)}));
    if let Some(footer) = component.get("footer") {
        components.push(
            json!({"type": "FOOTER", "text": footer.get("text").cloned().unwrap_or(Value::Null)}),
        );
    }
    if let Some(buttons) = component.get("buttons") {
        components.push(json!({"type": "BUTTONS", "buttons": buttons}));
    }
    json!({
        "id": id,
        "name": draft.get("name"),
        "language": draft.get("language"),
        "category": draft.get("category"),
        "status": "PENDING",
        "rejected_reason": "NONE",
        "quality_score": {"score": "UNKNOWN", "date": null},
        "components": components,
    })
}

/// A string field within 1 to `max` characters.
fn text_within<'a>(object: &'a Map<String, Value>, name: &str, max: usize) -> Option<&'a str> {
    object
        .get(name)
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty() && t.chars().count() <= max)
}

/// A create or update body, checked against WhatsApp's rules: a name of `[a-z0-9_]`, a
/// language, a known category, a body of 1 to 1024 characters with one example per
/// marker, a header (TEXT of at most 60 characters with an example per marker, or
/// IMAGE/VIDEO/DOCUMENT with an example), a footer of at most 60, at most 10 buttons of
/// a known type with a text of at most 25.
fn read_draft(content_type: Option<&str>, bytes: &[u8]) -> Option<Value> {
    if !wire::is_json_content_type(content_type) {
        return None;
    }
    let draft: Value = serde_json::from_slice(bytes).ok()?;
    let object = draft.as_object()?;
    let name = text_within(object, "name", 512)?;
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    text_within(object, "language", 16)?;
    if !matches!(
        object.get("category").and_then(Value::as_str),
        Some("MARKETING" | "UTILITY" | "AUTHENTICATION")
    ) {
        return None;
    }
    let component = object.get("component")?.as_object()?;
    let body = component.get("body")?.as_object()?;
    let text = text_within(body, "text", 1024)?;
    let examples = body.get("examples").map_or(Some(0), |e| {
        e.as_array()
            .filter(|e| e.iter().all(Value::is_string))
            .map(Vec::len)
    })?;
    if examples != markers(text) {
        return None;
    }
    if let Some(header) = component.get("header") {
        let header = header.as_object()?;
        match header.get("format").and_then(Value::as_str)? {
            "TEXT" => {
                let text = text_within(header, "text", 60)?;
                let example = usize::from(header.get("example").is_some_and(Value::is_string));
                if example != markers(text) {
                    return None;
                }
            }
            "IMAGE" | "VIDEO" | "DOCUMENT" => {
                text_within(header, "example", 1024)?;
            }
            _ => return None,
        }
    }
    if let Some(footer) = component.get("footer") {
        text_within(footer.as_object()?, "text", 60)?;
    }
    if let Some(buttons) = component.get("buttons") {
        let buttons = buttons.as_array().filter(|b| b.len() <= 10)?;
        for button in buttons {
            let button = button.as_object()?;
            text_within(button, "text", 25)?;
            match button.get("type").and_then(Value::as_str)? {
                "QUICK_REPLY" => {}
                "URL" => {
                    text_within(button, "url", 2048).filter(|u| u.starts_with("https://"))?;
                }
                "PHONE_NUMBER" => {
                    text_within(button, "phoneNumber", 16)?;
                }
                _ => return None,
            }
        }
    }
    Some(draft)
}

/// The `file` part of a `multipart/form-data` body: its file name, content type and
/// bytes. `None` for anything else (another content type, no boundary, no `file` part
/// with a file name, an empty file).
fn read_upload(content_type: Option<&str>, bytes: &[u8]) -> Option<(String, String, Vec<u8>)> {
    let content_type = content_type?;
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let boundary = params
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim_matches('"'))?;
    let delimiter = format!("--{boundary}");
    let mut rest = bytes;
    loop {
        let start = find(rest, delimiter.as_bytes())?;
        rest = &rest[start + delimiter.len()..];
        if rest.starts_with(b"--") {
            return None;
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let head_end = find(rest, b"\r\n\r\n")?;
        let head = std::str::from_utf8(&rest[..head_end]).ok()?;
        let content = &rest[head_end + 4..];
        let end = find(content, format!("\r\n{delimiter}").as_bytes())?;
        let part = &content[..end];
        let mut disposition = None;
        let mut part_type = "application/octet-stream".to_owned();
        for line in head.split("\r\n") {
            let (name, value) = line.split_once(':')?;
            if name.trim().eq_ignore_ascii_case("content-disposition") {
                disposition = Some(value.trim().to_owned());
            } else if name.trim().eq_ignore_ascii_case("content-type") {
                part_type = value.trim().to_owned();
            }
        }
        let disposition = disposition?;
        let field = |key: &str| {
            disposition
                .split(';')
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.trim_matches('"').to_owned())
        };
        if field("name").as_deref() == Some("file") {
            let filename = field("filename").filter(|f| !f.trim().is_empty())?;
            return (!part.is_empty()).then(|| (filename, part_type, part.to_vec()));
        }
        rest = &content[end..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_bodies() {
        let body = b"--b1\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--b1\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n--b1--\r\n";
        assert_eq!(
            read_upload(Some("multipart/form-data; boundary=b1"), body),
            Some(("a.png".into(), "image/png".into(), b"\x89PNG".to_vec()))
        );
        assert_eq!(
            read_upload(Some("multipart/form-data; boundary=zz"), body),
            None
        );
        assert_eq!(read_upload(Some("application/json"), body), None);
        assert_eq!(read_upload(None, body), None);
        let no_file =
            b"--b1\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--b1--\r\n";
        assert_eq!(
            read_upload(Some("multipart/form-data; boundary=b1"), no_file),
            None
        );
    }

    #[test]
    fn markers_and_drafts() {
        assert_eq!(markers("{{1}} {{2}} {{1}} {{x y}}"), 2);
        let ok = json!({"name": "a_1", "language": "en", "category": "UTILITY",
            "component": {"body": {"text": "Hi {{1}}", "examples": ["Jane"]}}});
        let bytes = serde_json::to_vec(&ok).unwrap();
        assert!(read_draft(Some("application/json"), &bytes).is_some());
        let no_example = json!({"name": "a_1", "language": "en", "category": "UTILITY",
            "component": {"body": {"text": "Hi {{1}}"}}});
        let bytes = serde_json::to_vec(&no_example).unwrap();
        assert!(read_draft(Some("application/json"), &bytes).is_none());
    }
}
