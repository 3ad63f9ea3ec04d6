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
    if depth > MAX_DEPTH {
        return None;
    }
    let code_key = key.is_some_and(is_code_key);
    match value {
        Value::Number(n) => {
            let code = n.as_u64()?;
            let named = code == u64::from(REENGAGEMENT_CODE)
                || (code_key && code == u64::from(LEGACY_REENGAGEMENT_CODE));
            named.then(|| WindowClosedSignal {
                code: u32::try_from(code).unwrap_or(REENGAGEMENT_CODE),
                detail: format!("code {code}"),
            })
        }
        Value::String(s) => {
            if code_key {
                match s.trim() {
                    "131047" => {
                        return Some(WindowClosedSignal {
                            code: REENGAGEMENT_CODE,
                            detail: "code 131047".into(),
                        });
                    }
                    "470" => {
                        return Some(WindowClosedSignal {
                            code: LEGACY_REENGAGEMENT_CODE,
                            detail: "code 470".into(),
                        });
                    }
                    _ => {}
                }
            }
            find_in_text(s)
        }
        Value::Array(items) => items.iter().find_map(|v| search(v, key, depth + 1)),
        Value::Object(map) => map
            .iter()
            .filter(|(k, _)| !is_id_key(k))
            .find_map(|(k, v)| search(v, Some(k), depth + 1)),
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

/// Whether `token` occurs in `text` with no ASCII letter or digit right before or after.
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

/// Looks for 131049 or 131050 standing alone in text (as 131047 is looked for: not
/// inside a longer run of letters or digits, so ids that contain the digits do not count).
///
/// ```
/// use lipachat_api::{MarketingRefusal, marketing_refusal_in_text};
///
/// assert_eq!(marketing_refusal_in_text("Message failed: 131050"), Some(MarketingRefusal::OptedOut));
/// assert_eq!(marketing_refusal_in_text("(#131049) not delivered"), Some(MarketingRefusal::Limit));
/// assert_eq!(marketing_refusal_in_text("wamid.x1310490"), None);
/// ```
pub fn marketing_refusal_in_text(text: &str) -> Option<MarketingRefusal> {
    if has_token(text, "131050") {
        Some(MarketingRefusal::OptedOut)
    } else if has_token(text, "131049") {
        Some(MarketingRefusal::Limit)
    } else {
        None
    }
}

fn has_token(text: &str, token: &str) -> bool {
    let bytes = text.as_bytes();
    text.match_indices(token).any(|(start, _)| {
        let end = start + token.len();
        let before = start
            .checked_sub(1)
            .and_then(|i| bytes.get(i))
            .is_some_and(u8::is_ascii_alphanumeric);
        let after = bytes.get(end).is_some_and(u8::is_ascii_alphanumeric);
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
