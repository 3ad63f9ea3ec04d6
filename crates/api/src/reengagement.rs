//! Recognising WhatsApp's "window closed" signal (error 131047, "Re-engagement message")
//! in a gateway response or a webhook, whatever shape wraps it.
//!
//! LipaChat publishes no error table, so the signal is looked for structurally:
//!
//! * a number `131047` anywhere (or the string `"131047"` under a code key);
//! * `470` (WhatsApp's older code for the same thing) only as the value of a code key
//!   (`code`, `errorCode`, `error_code`), since the bare number is too common;
//! * in any string: the token `131047` standing alone (not inside a longer run of letters
//!   or digits), or the words "re-engagement" / "reengagement", or "24 hours have passed"
//!   (Meta's wording of the same error), ignoring case.
//!
//! Values under id-like keys (`messageId`, `waId`, `id`, `wamid`, `timestamp`, `from`, `to`,
//! `recipient_id`, `path`, `phone`, URLs) are skipped, so an id that happens to contain
//! `131047` is not mistaken for the signal.

use serde_json::Value;

/// WhatsApp's error code for a free-form send outside the 24-hour window.
pub const REENGAGEMENT_CODE: u32 = 131047;
/// WhatsApp's older (on-premises API) code for the same error.
pub const LEGACY_REENGAGEMENT_CODE: u32 = 470;

/// How deep into nested JSON the search goes.
const MAX_DEPTH: usize = 32;
/// The longest detail kept, in characters.
const MAX_DETAIL_CHARS: usize = 200;

/// A window-closed signal found in a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WindowClosedSignal {
    /// The code that named it (131047 or 470; 131047 when only the words named it).
    pub code: u32,
    /// The text or code that named it, shortened.
    pub detail: String,
}

/// Looks for the signal in a JSON value.
pub(crate) fn find_in_json(value: &Value) -> Option<WindowClosedSignal> {
    search(value, None, 0)
}

/// Looks for the signal in free text (a body that is not JSON, or one JSON string).
pub(crate) fn find_in_text(text: &str) -> Option<WindowClosedSignal> {
    let lower = text.to_ascii_lowercase();
    let named = [
        "re-engagement",
        "reengagement",
        "re engagement",
        "24 hours have passed",
    ]
    .iter()
    .any(|words| lower.contains(words))
        || has_token(text, "131047");
    named.then(|| WindowClosedSignal {
        code: REENGAGEMENT_CODE,
        detail: shorten(text),
    })
}

fn search(value: &Value, key: Option<&str>, depth: usize) -> Option<WindowClosedSignal> {
    search_with(
        value,
        key,
        depth,
        &|code, code_key| {
            let named = code == u64::from(REENGAGEMENT_CODE)
                || (code_key && code == u64::from(LEGACY_REENGAGEMENT_CODE));
            named.then(|| WindowClosedSignal {
                code: u32::try_from(code).unwrap_or(REENGAGEMENT_CODE),
                detail: format!("code {code}"),
            })
        },
        &find_in_text,
    )
}

/// Walks `value` (skipping id-like keys, at most [`MAX_DEPTH`] deep): `on_code` sees every
/// number (and every numeric string under a code key), told whether it sits under a code
/// key; `on_text` sees every other string. The first answer wins.
fn search_with<T>(
    value: &Value,
    key: Option<&str>,
    depth: usize,
    on_code: &dyn Fn(u64, bool) -> Option<T>,
    on_text: &dyn Fn(&str) -> Option<T>,
) -> Option<T> {
    if depth > MAX_DEPTH {
        return None;
    }
    let code_key = key.is_some_and(is_code_key);
    match value {
        // A code written as a whole float (`131050.0`) is the same code.
        Value::Number(n) => on_code(
            n.as_u64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(f))
                    .map(|f| f as u64)
            })?,
            code_key,
        ),
        Value::String(s) => {
            if code_key
                && let Ok(code) = s.trim().parse::<u64>()
                && let Some(found) = on_code(code, true)
            {
                return Some(found);
            }
            on_text(s)
        }
        Value::Array(items) => items
            .iter()
            .find_map(|v| search_with(v, key, depth + 1, on_code, on_text)),
        Value::Object(map) => map
            .iter()
            .filter(|(k, _)| !is_id_key(k))
            .find_map(|(k, v)| search_with(v, Some(k), depth + 1, on_code, on_text)),
        Value::Null | Value::Bool(_) => None,
    }
}

fn is_code_key(key: &str) -> bool {
    ["code", "errorcode", "error_code"]
        .iter()
        .any(|k| key.eq_ignore_ascii_case(k))
}

fn is_id_key(key: &str) -> bool {
    [
        "messageid",
        "message_id",
        "waid",
        "wa_id",
        "wamid",
        "id",
        "timestamp",
        "from",
        "to",
        "recipient_id",
        "recipientid",
        "path",
        "phone",
        "url",
        "mediaurl",
        "link",
    ]
    .iter()
    .any(|k| key.eq_ignore_ascii_case(k))
}

/// WhatsApp's error for the per-user marketing limit ("healthy ecosystem engagement").
pub const MARKETING_LIMIT_CODE: u32 = 131049;
/// WhatsApp's error for a user who stopped marketing messages from the business.
pub const MARKETING_OPT_OUT_CODE: u32 = 131050;

/// A marketing refusal named in a gateway answer or a status text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MarketingRefusal {
    /// 131049: the per-user marketing limit.
    Limit,
    /// 131050: the user opted out of marketing.
    OptedOut,
}

/// Looks for 131049 or 131050 in text: the code standing alone (as 131047 is looked for:
/// not inside a longer run of letters or digits, so ids that contain the digits do not
/// count), or WhatsApp's own wording of either error without its number ("…to maintain
/// healthy ecosystem engagement" for 131049; "…chosen to stop receiving marketing
/// messages…" for 131050), ignoring case.
///
/// ```
/// use lipachat_api::{MarketingRefusal, marketing_refusal_in_text};
///
/// assert_eq!(marketing_refusal_in_text("Message failed: 131050"), Some(MarketingRefusal::OptedOut));
/// assert_eq!(marketing_refusal_in_text("(#131049) not delivered"), Some(MarketingRefusal::Limit));
/// assert_eq!(
///     marketing_refusal_in_text("This message was not delivered to maintain healthy ecosystem engagement."),
///     Some(MarketingRefusal::Limit),
/// );
/// assert_eq!(marketing_refusal_in_text("wamid.x1310490"), None);
/// ```
pub fn marketing_refusal_in_text(text: &str) -> Option<MarketingRefusal> {
    let lower = text.to_lowercase();
    let words = |phrases: &[&str]| phrases.iter().any(|p| lower.contains(p));
    if has_token(text, "131050")
        || words(&[
            "stop receiving marketing",
            "stopped receiving marketing",
            "stopped marketing messages",
            "opted out of marketing",
        ])
    {
        Some(MarketingRefusal::OptedOut)
    } else if has_token(text, "131049") || words(&["healthy ecosystem engagement"]) {
        Some(MarketingRefusal::Limit)
    } else {
        None
    }
}

/// Looks for 131049 or 131050 anywhere in a JSON body, as [`find_in_json`] looks for
/// 131047: a number anywhere (or a numeric string under a code key, e.g. an `errors[]`
/// entry's `code`), or [`marketing_refusal_in_text`] in any string; id-like keys skipped.
pub(crate) fn marketing_refusal_in_json(value: &Value) -> Option<MarketingRefusal> {
    search_with(
        value,
        None,
        0,
        &|code, _| match u32::try_from(code).ok()? {
            MARKETING_OPT_OUT_CODE => Some(MarketingRefusal::OptedOut),
            MARKETING_LIMIT_CODE => Some(MarketingRefusal::Limit),
            _ => None,
        },
        &marketing_refusal_in_text,
    )
}

/// A byte that joins a token to its neighbours: an ASCII letter or digit, or `_` / `-`,
/// which join the parts of names (`promo_131050`, `ref-131049`).
fn is_word_byte(byte: &u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-')
}

/// Whether `token` occurs in `text` with no word byte ([`is_word_byte`]) right before or
/// after.
fn has_token(text: &str, token: &str) -> bool {
    let bytes = text.as_bytes();
    text.match_indices(token).any(|(start, _)| {
        let end = start + token.len();
        let before = start
            .checked_sub(1)
            .and_then(|i| bytes.get(i))
            .is_some_and(is_word_byte);
        let after = bytes.get(end).is_some_and(is_word_byte);
        !before && !after
    })
}

fn shorten(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_DETAIL_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(MAX_DETAIL_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_the_code_in_many_places() {
        for body in [
            json!({"status": "error", "message": "(#131047) Re-engagement message", "data": null}),
            json!({"status": "error", "message": "Request failed.", "errors": [{"code": 131047, "title": "x"}]}),
            json!({"errors": {"code": "131047"}}),
            json!({"data": {"status": "FAILED", "statusDesc": "Message failed: 131047"}}),
            json!({"message": "More than 24 hours have passed since the customer last replied"}),
            json!({"error": {"error_data": {"details": "REENGAGEMENT window"}}}),
            json!({"errors": [{"code": 470}]}),
            json!([[[{"code": 131047}]]]),
        ] {
            assert!(find_in_json(&body).is_some(), "{body}");
        }
        assert_eq!(
            find_in_json(&json!({"errorCode": 470})).map(|s| s.code),
            Some(470)
        );
    }

    #[test]
    fn ignores_ids_and_lookalikes() {
        for body in [
            json!({"data": {"messageId": "ab131047-0000-4000-8000-000000000000", "waId": "wamid.131047", "status": "SENT"}}),
            json!({"message": "sent 470 messages"}),
            json!({"count": 470}),
            json!({"message": "ref x1310470"}),
            json!({"message": "ref 1310471"}),
            json!({"timestamp": 131047}),
            json!(null),
            json!("plain"),
        ] {
            assert_eq!(find_in_json(&body), None, "{body}");
        }
    }

    #[test]
    fn text_tokens() {
        assert!(find_in_text("error 131047: window closed").is_some());
        assert!(find_in_text("<html>131047</html>").is_some());
        assert!(find_in_text("x131047").is_none());
        assert_eq!(find_in_text("é131047é").map(|s| s.code), Some(131047));
        let long = format!("131047 {}", "x".repeat(500));
        assert_eq!(find_in_text(&long).unwrap().detail.chars().count(), 201);
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut v = json!({"code": 131047});
        for _ in 0..100 {
            v = json!([v]);
        }
        assert_eq!(find_in_json(&v), None);
    }
}
