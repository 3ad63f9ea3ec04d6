//! What the gateway answered: the receipt of an accepted message, or the error it means.
//!
//! The rules, in order:
//!
//! 1. HTTP 401 is [`ApiError::InvalidCredentials`], whatever the body says (the gateway's
//!    401 body claims `"status": "success"`).
//! 2. A body that names WhatsApp's 131047 (see [`crate::reengagement`]) is
//!    [`ApiError::WindowClosed`], whatever the status. Then one that names 131049 or
//!    131050 (a number or code anywhere, e.g. only in `errors[].code`, or WhatsApp's
//!    wording) is [`ApiError::MarketingRefused`], whatever the status: never retried.
//! 3. HTTP 429 is [`ApiError::RateLimited`]; 408 and 5xx are [`ApiError::Unavailable`]
//!    (both retried by the client).
//! 4. HTTP 2xx is a success only with a JSON object whose `status` is `"success"`, whose
//!    `data` is an object, and whose `data.status` is `SENT` (any case). A `status` of
//!    `"error"`, a null `data` or another `data.status` is [`ApiError::Refused`]; a body that
//!    is not such an envelope is [`ApiError::UnexpectedResponse`].
//! 5. HTTP 400 with a JSON object is [`ApiError::BadRequest`] with its `error` (or
//!    `message`) and `path`.
//! 6. Anything else, or a body cut off at the size limit, is
//!    [`ApiError::UnexpectedResponse`] with the status and a short excerpt.

use std::time::Duration;

use serde_json::Value;

use crate::error::ApiError;
use crate::key::ApiKey;
use crate::reengagement;
use crate::success_answer::SuccessFields;
use lipachat_session::MessageId;

/// The longest excerpt of a body kept in an error, in characters.
const EXCERPT_CHARS: usize = 300;

/// The gateway accepted a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The `messageId` the message was sent with (the caller's; the gateway echoes it in
    /// `data.messageId`).
    pub message_id: MessageId,
    /// The gateway's `data.messageId`, as it answered (normally the same id; a
    /// difference is logged as a warning).
    pub gateway_message_id: Option<String>,
    /// WhatsApp's own message id (`data.waId`, a `wamid.`), which status callbacks name.
    pub wa_id: Option<String>,
    /// The gateway's `data.status` (`SENT`).
    pub status: String,
    /// How many HTTP requests this send took (1 unless retried).
    pub attempts: u32,
}

/// A gateway answer, read within the size limit.
#[derive(Debug)]
pub(crate) struct RawResponse<'a> {
    pub status: u16,
    pub body: &'a [u8],
    /// The body was longer than the limit and was cut off.
    pub truncated: bool,
    pub retry_after: Option<Duration>,
}

/// The accepted message's details, before the attempt count is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Accepted {
    pub wa_id: Option<String>,
    pub status: String,
    pub echoed_id: Option<String>,
}

/// The receipt fields of an accepted message's `data`.
fn accepted(data: &serde_json::Map<String, Value>, key: &ApiKey) -> Accepted {
    Accepted {
        wa_id: text_field(data, "waId").map(|s| key.redact(&s)),
        status: data
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        echoed_id: text_field(data, "messageId").map(|s| key.redact(&s)),
    }
}

/// The success envelope, read by serde where [`SuccessFields::read`] declines the body
/// (an escape in a string, say), without building a JSON tree.
#[derive(serde::Deserialize)]
struct SuccessEnvelope<'a> {
    #[serde(borrow)]
    status: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    data: Option<SuccessData<'a>>,
}

#[derive(serde::Deserialize)]
struct SuccessData<'a> {
    #[serde(borrow, rename = "messageId")]
    message_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, rename = "waId")]
    wa_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    status: Option<std::borrow::Cow<'a, str>>,
}

impl SuccessEnvelope<'_> {
    /// The fields a receipt is made of, as [`SuccessFields::read`] answers them.
    fn fields(&self) -> SuccessFields<'_> {
        let data = self.data.as_ref();
        SuccessFields {
            status: self.status.as_deref(),
            data_status: data.and_then(|d| d.status.as_deref()),
            message_id: data.and_then(|d| d.message_id.as_deref()),
            wa_id: data.and_then(|d| d.wa_id.as_deref()),
        }
    }
}

/// A clean success (2xx, `"status": "success"`, a data object whose status is SENT) is an
/// acceptance whatever else the body says, so it needs no search for 131047. Anything
/// else (or a body of another shape) goes the general way.
fn clean_success(raw: &RawResponse<'_>, key: &ApiKey) -> Option<Accepted> {
    if !(200..300).contains(&raw.status) || raw.truncated {
        return None;
    }
    let envelope: SuccessEnvelope<'_>;
    let fields = match SuccessFields::read(raw.body) {
        Some(fields) => fields,
        None => {
            envelope = serde_json::from_slice(raw.body).ok()?;
            envelope.fields()
        }
    };
    let sent = fields.data_status?;
    if !fields.status?.eq_ignore_ascii_case("success") || !sent.eq_ignore_ascii_case("sent") {
        return None;
    }
    let text = |value: Option<&str>| {
        value
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| key.redact(v))
    };
    Some(Accepted {
        wa_id: text(fields.wa_id),
        status: sent.to_owned(),
        echoed_id: text(fields.message_id),
    })
}

/// Interprets one answer. `key` is used only to redact it from anything kept.
pub(crate) fn interpret(raw: &RawResponse<'_>, key: &ApiKey) -> Result<Accepted, ApiError> {
    let status = raw.status;
    if status == 401 {
        return Err(ApiError::InvalidCredentials);
    }
    if let Some(accepted) = clean_success(raw, key) {
        return Ok(accepted);
    }
    // The key is taken out of the whole body, in every form it may be echoed in, before
    // any part of it is kept: a detail is shortened, and a cut through the key would leave
    // a piece no later redaction matches. ("***" keeps a JSON string valid.)
    let text = String::from_utf8_lossy(raw.body);
    let redacted = key.redact(&text);
    let body: std::borrow::Cow<'_, [u8]> = if redacted != text {
        std::borrow::Cow::Owned(redacted.into_bytes())
    } else {
        std::borrow::Cow::Borrowed(raw.body)
    };
    let json: Option<Value> = if raw.truncated {
        None
    } else {
        serde_json::from_slice(&body).ok()
    };
    let signal = match &json {
        Some(value) => reengagement::find_in_json(value),
        None => reengagement::find_in_text(&String::from_utf8_lossy(&body)),
    };
    if let Some(signal) = signal {
        return Err(ApiError::WindowClosed {
            detail: key.redact(&signal.detail),
        });
    }
    let refusal = match &json {
        Some(value) => reengagement::marketing_refusal_in_json(value),
        None => reengagement::marketing_refusal_in_text(&String::from_utf8_lossy(&body)),
    };
    if let Some(refusal) = refusal {
        return Err(ApiError::MarketingRefused {
            refusal,
            detail: excerpt(&body, raw.truncated, key),
        });
    }
    if !(200..300).contains(&status) {
        return Err(failure(raw, json.as_ref(), key));
    }
    let Some(Value::Object(envelope)) = &json else {
        return Err(unexpected(raw, key));
    };
    match envelope.get("status") {
        Some(Value::String(s)) if s.eq_ignore_ascii_case("success") => {}
        Some(Value::String(_)) => return Err(refused(envelope, key)),
        _ => return Err(unexpected(raw, key)),
    }
    let Some(Value::Object(data)) = envelope.get("data") else {
        return Err(refused(envelope, key));
    };
    let data_status = data.get("status").and_then(Value::as_str).unwrap_or("");
    if !data_status.eq_ignore_ascii_case("sent") {
        let message = text_field(data, "statusDesc")
            .or_else(|| text_field(envelope, "message"))
            .map(|m| format!("{data_status}: {m}"))
            .unwrap_or_else(|| {
                if data_status.is_empty() {
                    "the gateway's data has no status".to_owned()
                } else {
                    format!("data.status is {data_status}")
                }
            });
        return Err(ApiError::Refused {
            message: shorten(&key.redact(&message)),
        });
    }
    Ok(accepted(data, key))
}

/// [`ApiError::UnexpectedResponse`] for this answer.
fn unexpected(raw: &RawResponse<'_>, key: &ApiKey) -> ApiError {
    ApiError::UnexpectedResponse {
        status: raw.status,
        excerpt: excerpt(raw.body, raw.truncated, key),
    }
}

/// What an answer whose status is not 2xx (nor 401) means: 429 rate limiting, 408 and
/// 5xx unavailability, 400 a malformed request, anything else unexpected.
fn failure(raw: &RawResponse<'_>, json: Option<&Value>, key: &ApiKey) -> ApiError {
    match raw.status {
        429 => ApiError::RateLimited {
            retry_after: raw.retry_after,
        },
        status @ (408 | 500..=599) => ApiError::Unavailable {
            status,
            excerpt: excerpt(raw.body, raw.truncated, key),
        },
        400 => {
            let Some(Value::Object(body)) = json else {
                return unexpected(raw, key);
            };
            let error = text_field(body, "error")
                .or_else(|| text_field(body, "message"))
                .unwrap_or_else(|| "Bad Request".to_owned());
            ApiError::BadRequest {
                error: shorten(&key.redact(&error)),
                path: text_field(body, "path").map(|p| shorten(&key.redact(&p))),
            }
        }
        _ => unexpected(raw, key),
    }
}

/// Reads the answer to a call that is not a send (the template catalog, template
/// management, uploads): the gateway's envelope as a JSON object, when the status is
/// 2xx and the envelope's `status`, if it is a string, says `success`. The same errors as
/// a send's otherwise, except that nothing is searched for WhatsApp's 131047 (a
/// template's own text may well say "re-engagement").
pub(crate) fn read_envelope(
    raw: &RawResponse<'_>,
    key: &ApiKey,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    if raw.status == 401 {
        return Err(ApiError::InvalidCredentials);
    }
    let json: Option<Value> = if raw.truncated {
        None
    } else {
        serde_json::from_slice(raw.body).ok()
    };
    if !(200..300).contains(&raw.status) {
        return Err(failure(raw, json.as_ref(), key));
    }
    let Some(Value::Object(envelope)) = json else {
        return Err(unexpected(raw, key));
    };
    match envelope.get("status") {
        Some(Value::String(s)) if !s.eq_ignore_ascii_case("success") => {
            Err(refused(&envelope, key))
        }
        _ => Ok(envelope),
    }
}

/// A refusal's message: the envelope's `message`, else its `errors`, else a fallback.
fn refused(envelope: &serde_json::Map<String, Value>, key: &ApiKey) -> ApiError {
    let message = text_field(envelope, "message")
        .or_else(|| match envelope.get("errors") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        })
        .unwrap_or_else(|| "no message given".to_owned());
    ApiError::Refused {
        message: shorten(&key.redact(&message)),
    }
}

/// A non-empty string field.
fn text_field(map: &serde_json::Map<String, Value>, name: &str) -> Option<String> {
    map.get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The start of a body, lossily decoded, control characters blanked, the key redacted.
pub(crate) fn excerpt(body: &[u8], truncated: bool, key: &ApiKey) -> String {
    let text = key.redact(&String::from_utf8_lossy(body));
    let mut out = shorten(&text);
    if truncated {
        out.push_str(" (body cut off at the size limit)");
    }
    if out.is_empty() {
        out.push_str("(empty body)");
    }
    out
}

fn shorten(text: &str) -> String {
    let mut out: String = text
        .trim()
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.trim().chars().nth(EXCERPT_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
#[path = "attack13_success_answer.rs"]
mod attack13_success_answer;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> ApiKey {
        ApiKey::new("SECRET-KEY-123").unwrap()
    }

    fn run(status: u16, body: &Value) -> Result<Accepted, ApiError> {
        let bytes = body.to_string().into_bytes();
        interpret(
            &RawResponse {
                status,
                body: &bytes,
                truncated: false,
                retry_after: None,
            },
            &key(),
        )
    }

    #[test]
    fn a_clean_success_is_accepted_before_any_131047_search() {
        // The gateway said SENT: that decides, whatever text rides along.
        let body = json!({"status": "success", "message": "131047 re-engagement",
            "data": {"messageId": "m", "waId": "wamid.X", "status": "SENT"}});
        assert_eq!(run(200, &body).unwrap().wa_id.as_deref(), Some("wamid.X"));
        // Not SENT: the search still applies.
        let body = json!({"status": "success", "message": "(#131047) Re-engagement message",
            "data": {"status": "FAILED"}});
        assert!(matches!(
            run(200, &body),
            Err(ApiError::WindowClosed { .. })
        ));
    }

    fn run_text(status: u16, body: &str, truncated: bool) -> Result<Accepted, ApiError> {
        interpret(
            &RawResponse {
                status,
                body: body.as_bytes(),
                truncated,
                retry_after: None,
            },
            &key(),
        )
    }

    #[test]
    fn documented_success() {
        let body: Value = serde_json::from_str(crate::success_answer::tests::DOCUMENTED).unwrap();
        let accepted = run(200, &body).unwrap();
        assert_eq!(accepted.status, "SENT");
        assert_eq!(
            accepted.wa_id.as_deref(),
            Some("wamid.HBgMMjU0NzE3NzQ2NTY1FQIAEnRgSRjJGRkMzNkQ0QUVENTIxQ0NBAA==")
        );
        assert_eq!(
            accepted.echoed_id.as_deref(),
            Some("7addc006-07db-4fae-aac5-b285903b41d4")
        );
    }

    #[test]
    fn the_401_quirk() {
        let body = json!({"timestamp": "x", "data": null, "status": "success", "message": "Invalid credentials", "errors": null});
        assert_eq!(run(401, &body), Err(ApiError::InvalidCredentials));
        assert_eq!(run_text(401, "", false), Err(ApiError::InvalidCredentials));
    }

    #[test]
    fn refusals() {
        let generic = json!({"timestamp": "x", "data": null, "status": "error", "message": "Request failed.", "errors": null});
        assert_eq!(
            run(200, &generic),
            Err(ApiError::Refused {
                message: "Request failed.".into()
            })
        );
        let null_data =
            json!({"data": null, "status": "success", "message": "", "errors": ["bad number"]});
        assert_eq!(
            run(200, &null_data),
            Err(ApiError::Refused {
                message: "[\"bad number\"]".into()
            })
        );
        let failed = json!({"data": {"status": "FAILED", "statusDesc": "Number not on WhatsApp"}, "status": "success"});
        assert_eq!(
            run(200, &failed),
            Err(ApiError::Refused {
                message: "FAILED: Number not on WhatsApp".into()
            })
        );
        let no_status = json!({"data": {"messageId": "x"}, "status": "success"});
        assert!(matches!(
            run(200, &no_status),
            Err(ApiError::Refused { .. })
        ));
    }

    #[test]
    fn bad_request() {
        let body = json!({"timestamp": "2023-08-06T17:50:35.701+00:00", "status": 400, "error": "Bad Request", "path": "/api/v1/whatsapp/contact"});
        assert_eq!(
            run(400, &body),
            Err(ApiError::BadRequest {
                error: "Bad Request".into(),
                path: Some("/api/v1/whatsapp/contact".into())
            })
        );
        assert_eq!(
            run(
                400,
                &json!({"status": "error", "message": "to is required"})
            ),
            Err(ApiError::BadRequest {
                error: "to is required".into(),
                path: None
            })
        );
    }

    #[test]
    fn window_closed_wins_over_status() {
        for (status, body) in [
            (
                200,
                json!({"status": "error", "message": "(#131047) Re-engagement message", "data": null}),
            ),
            (
                400,
                json!({"status": 400, "error": "131047", "path": "/api/v1/whatsapp/contact"}),
            ),
            (500, json!({"errors": [{"code": 131047}]})),
            (
                200,
                json!({"status": "success", "data": {"status": "FAILED", "statusDesc": "Re-engagement message"}}),
            ),
        ] {
            assert!(
                matches!(run(status, &body), Err(ApiError::WindowClosed { .. })),
                "{status} {body}"
            );
        }
        assert!(matches!(
            run_text(502, "upstream said 131047", false),
            Err(ApiError::WindowClosed { .. })
        ));
    }

    /// 131049 / 131050 in any shape the gateway may wrap them in (the code only in
    /// `errors[].code`, as a string code, in WhatsApp's words, behind a 400 or a 5xx) is
    /// `MarketingRefused`, which is never retried; an id holding the digits is not.
    #[test]
    fn marketing_refusals_win_over_status_and_are_not_retried() {
        use crate::MarketingRefusal::{Limit, OptedOut};
        for (status, body, want) in [
            (
                200,
                json!({"status": "error", "message": "Request failed.", "errors": [{"code": 131050, "title": "x"}]}),
                OptedOut,
            ),
            (
                400,
                json!({"status": "error", "message": "Request failed.", "errors": [{"code": "131050"}]}),
                OptedOut,
            ),
            (500, json!({"error": "(#131049) not delivered"}), Limit),
            (
                502,
                json!({"error": {"message": "This message was not delivered to maintain healthy ecosystem engagement."}}),
                Limit,
            ),
            (
                200,
                json!({"status": "success", "data": {"status": "FAILED", "statusDesc": "Recipient has chosen to stop receiving marketing messages"}}),
                OptedOut,
            ),
        ] {
            let err = run(status, &body).unwrap_err();
            assert!(
                matches!(&err, ApiError::MarketingRefused { refusal, .. } if *refusal == want),
                "{status} {body}: {err:?}"
            );
            assert_eq!(err.marketing_refusal(), Some(want));
            assert!(!err.retry_later_may_help(), "{err}");
        }
        assert!(matches!(
            run_text(503, "upstream: 131049", false),
            Err(ApiError::MarketingRefused { refusal: Limit, .. })
        ));
        // Ids that hold the digits are not a refusal.
        assert!(matches!(
            run(500, &json!({"messageId": 131050, "error": "busy"})),
            Err(ApiError::Unavailable { .. })
        ));
    }

    #[test]
    fn retryable_statuses() {
        assert_eq!(
            run_text(429, "", false),
            Err(ApiError::RateLimited { retry_after: None })
        );
        assert!(matches!(
            run_text(503, "<html>busy</html>", false),
            Err(ApiError::Unavailable { status: 503, .. })
        ));
        assert!(matches!(
            run_text(408, "", false),
            Err(ApiError::Unavailable { status: 408, .. })
        ));
    }

    #[test]
    fn unexpected_bodies() {
        match run_text(200, "<html>hello</html>", false) {
            Err(ApiError::UnexpectedResponse { status, excerpt }) => {
                assert_eq!(status, 200);
                assert_eq!(excerpt, "<html>hello</html>");
            }
            other => panic!("{other:?}"),
        }
        match run_text(
            200,
            "{\"status\":\"success\",\"data\":{\"status\":\"SENT\"",
            true,
        ) {
            Err(ApiError::UnexpectedResponse { excerpt, .. }) => {
                assert!(excerpt.contains("cut off"), "{excerpt}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            run(200, &json!([1, 2])),
            Err(ApiError::UnexpectedResponse { .. })
        ));
        assert!(matches!(
            run(404, &json!({"status": 404, "error": "Not Found"})),
            Err(ApiError::UnexpectedResponse { status: 404, .. })
        ));
        assert!(matches!(
            run_text(302, "", false),
            Err(ApiError::UnexpectedResponse { status: 302, .. })
        ));
        match run_text(200, &"y".repeat(5000), false) {
            Err(ApiError::UnexpectedResponse { excerpt, .. }) => {
                assert_eq!(excerpt.chars().count(), EXCERPT_CHARS + 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_key_is_redacted_from_everything_kept() {
        let echoed = json!({"status": "error", "message": "bad key SECRET-KEY-123", "data": null});
        let err = run(200, &echoed).unwrap_err();
        assert!(!format!("{err:?} {err}").contains("SECRET-KEY-123"));
        let err = run_text(500, "key=SECRET-KEY-123", false).unwrap_err();
        assert!(!format!("{err:?} {err}").contains("SECRET-KEY-123"));
        let err = run(
            400,
            &json!({"error": "SECRET-KEY-123", "path": "/SECRET-KEY-123"}),
        )
        .unwrap_err();
        assert!(!format!("{err:?} {err}").contains("SECRET-KEY-123"));
    }

    proptest::proptest! {
        /// Wherever the key sits in a window-closed answer (across the point where the
        /// detail is cut, too), no piece of it reaches the error.
        #[test]
        fn no_piece_of_the_key_reaches_a_window_closed_error(
            padding in 0usize..420,
            as_json in proptest::prelude::any::<bool>(),
            percent_encoded in proptest::prelude::any::<bool>(),
        ) {
            let secret = key().expose_secret().to_owned();
            // Percent-encoded, the key is not found as it is: it must still be taken out
            // before the detail is cut.
            let echoed = if percent_encoded {
                secret.bytes().map(|b| format!("%{b:02X}")).collect()
            } else {
                secret.clone()
            };
            let message = format!("(#131047) Re-engagement {} {echoed} tail", "x".repeat(padding));
            let body = if as_json {
                json!({"status": "error", "message": message, "data": null}).to_string()
            } else {
                message
            };
            let raw = RawResponse { status: 200, body: body.as_bytes(), truncated: false, retry_after: None };
            let err = interpret(&raw, &key()).unwrap_err();
            proptest::prop_assert!(matches!(err, ApiError::WindowClosed { .. }), "{err:?}");
            let shown = format!("{err:?} {err}");
            let chars: Vec<char> = echoed.chars().collect();
            for piece in chars.windows(5) {
                let piece: String = piece.iter().collect();
                proptest::prop_assert!(!shown.contains(&piece), "{piece:?} in {shown}");
            }
        }

        #[test]
        fn interpret_never_panics_on_bytes(
            status in 100u16..600,
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            truncated in proptest::prelude::any::<bool>(),
        ) {
            let raw = RawResponse { status, body: &body, truncated, retry_after: None };
            if let Ok(accepted) = interpret(&raw, &key()) {
                proptest::prop_assert!((200..300).contains(&status));
                proptest::prop_assert!(accepted.status.eq_ignore_ascii_case("sent"));
            }
        }

        #[test]
        fn interpret_never_panics_on_envelopes(
            status in 100u16..600,
            top in "[a-z]{0,8}",
            message in ".{0,40}",
            data_status in proptest::option::of("[A-Za-z]{0,6}"),
            wa_id in proptest::option::of(".{0,20}"),
        ) {
            let data = data_status.map(|s| json!({"status": s, "waId": wa_id, "statusDesc": message}));
            let body = json!({"status": top, "message": message, "data": data}).to_string();
            let raw = RawResponse { status, body: body.as_bytes(), truncated: false, retry_after: None };
            let result = interpret(&raw, &key());
            if status == 401 {
                proptest::prop_assert_eq!(result, Err(ApiError::InvalidCredentials));
            } else if result.is_ok() {
                proptest::prop_assert!((200..300).contains(&status) && top == "success");
            }
        }
    }

    /// Bodies around the success envelope's shape, as JSON text: the four read fields
    /// (sometimes twice, sometimes of another kind), other fields with any value, strings
    /// with and without escapes, control or non-ASCII characters, random whitespace; then,
    /// sometimes, one byte changed, cut or added, so broken JSON is tried too.
    fn envelope_like() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let space = prop::sample::select(vec!["", "", " ", "\n\t ", "\r\n"]);
        let string = prop_oneof![
            4 => "[a-zA-Z0-9 .=:_-]{0,12}".prop_map(|s| format!("\"{s}\"")),
            1 => prop::sample::select(vec![
                r#""SENT""#, r#""success""#, r#""SuCCess""#, r#"" sent ""#, r#""a\"b""#,
                r#""s\u0065nt""#, "\"é✓\"", "\"\u{1}\"", r#""""#,
            ]).prop_map(str::to_owned),
        ];
        let scalar = prop_oneof![
            3 => string.clone(),
            1 => prop::sample::select(vec![
                "null", "true", "false", "0", "-12", "1.5e3", "2E-2", "01", "1.", "-", "nul",
            ]).prop_map(str::to_owned),
        ];
        let value = scalar.prop_recursive(3, 16, 4, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3)
                    .prop_map(|items| format!("[{}]", items.join(","))),
                prop::collection::vec(("[a-z]{1,3}", inner), 0..3).prop_map(|fields| {
                    let fields: Vec<String> =
                        fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                    format!("{{{}}}", fields.join(","))
                }),
            ]
        });
        let name = prop::sample::select(vec![
            "status",
            "data",
            "messageId",
            "waId",
            "statusDesc",
            "errors",
            "st\\u0061tus",
        ]);
        let data_field = (name.clone(), value.clone(), space.clone())
            .prop_map(|(n, v, w)| format!("{w}\"{n}\"{w}:{w}{v}{w}"));
        let data = prop_oneof![
            3 => prop::collection::vec(data_field, 0..5)
                .prop_map(|fields| format!("{{{}}}", fields.join(","))),
            1 => value.clone(),
        ];
        let top_field = prop_oneof![
            (space.clone(), data).prop_map(|(w, d)| format!("{w}\"data\"{w}:{w}{d}{w}")),
            (name, value, space.clone()).prop_map(|(n, v, w)| format!("{w}\"{n}\"{w}:{w}{v}{w}")),
        ];
        let body = (prop::collection::vec(top_field, 0..6), space)
            .prop_map(|(fields, w)| format!("{w}{{{}}}{w}", fields.join(",")).into_bytes());
        let edit = prop_oneof![
            3 => Just(None),
            1 => (any::<prop::sample::Index>(), any::<u8>(), 0..3_u8).prop_map(Some),
        ];
        (body, edit).prop_map(|(mut body, edit)| {
            if let Some((at, byte, how)) = edit {
                let at = at.index(body.len() + 1);
                match how {
                    0 if at < body.len() => body[at] = byte,
                    1 if at < body.len() => drop(body.remove(at)),
                    _ => body.insert(at, byte),
                }
            }
            body
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(2048))]

        /// The one-pass reader never answers differently from serde: a body it reads,
        /// serde reads to the same fields (a body it declines goes to serde anyway).
        #[test]
        fn the_one_pass_reader_agrees_with_serde(body in envelope_like()) {
            if let Some(fields) = SuccessFields::read(&body) {
                let envelope = serde_json::from_slice::<SuccessEnvelope<'_>>(&body);
                proptest::prop_assert!(envelope.is_ok(), "serde refuses {:?}", String::from_utf8_lossy(&body));
                let envelope = envelope.unwrap();
                proptest::prop_assert_eq!(envelope.fields(), fields);
            }
        }

        /// A success envelope as the gateway writes it, with any strings, ids and
        /// whitespace, is read in one pass (the common answer does not fall back to serde).
        #[test]
        fn a_plain_success_envelope_is_read_in_one_pass(
            wa_id in "[a-zA-Z0-9.=_-]{0,60}",
            message_id in "[a-f0-9-]{0,36}",
            extra in "[a-zA-Z0-9 ]{0,30}",
            pretty in proptest::bool::ANY,
        ) {
            let body = serde_json::json!({
                "timestamp": "2023-08-06T01:27:56.825898971",
                "data": {"messageId": message_id, "waId": wa_id, "status": "SENT", "statusDesc": extra},
                "status": "success", "message": "", "errors": null,
            });
            let text = if pretty { serde_json::to_vec_pretty(&body) } else { serde_json::to_vec(&body) }.unwrap();
            let fields = SuccessFields::read(&text);
            proptest::prop_assert_eq!(fields, Some(SuccessFields {
                status: Some("success"),
                data_status: Some("SENT"),
                message_id: Some(message_id.as_str()),
                wa_id: Some(wa_id.as_str()),
            }));
        }
    }
}
