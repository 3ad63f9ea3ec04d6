//! The API key never survives into an error, its Debug form or the log, in whatever form a
//! gateway echoes it back: as it is, JSON-escaped (`\"`, `\\`, `\/`, `\u0022`), or
//! percent-encoded (upper or lower hex, form encoding), against a real HTTP server on
//! 127.0.0.1 (wiremock).

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use lipachat_api::{ApiKey, Client, ContactMessage, ContactPhone, MessageId, RetryPolicy};
use lipachat_session::Conversation;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Keys holding every character that an encoding rewrites: `"`, `\`, `/`, `+`, `=`, and
/// `%` and `\u` sequences of their own.
const KEYS: [&str; 4] = [
    r#"sk_live_"quoted"\back\slash/path+plus=equals"#,
    r#"A+B/C=D"E\F-9f8e7d6c"#,
    r"pct%41%2f-and-\u0041-literal/9z",
    "plain-key-0123456789abcdef",
];

/// The key with each byte that `encode` picks written as `%XX`, in upper or lower hex.
fn percent(key: &str, upper: bool, encode: fn(u8) -> bool) -> String {
    key.bytes()
        .map(|b| match (encode(b), upper) {
            (false, _) => char::from(b).to_string(),
            (true, true) => format!("%{b:02X}"),
            (true, false) => format!("%{b:02x}"),
        })
        .collect()
}

/// Whether RFC 3986 would percent-encode the byte (it is outside the unreserved set).
fn reserved(b: u8) -> bool {
    !(b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// Every character as a JSON `\uXXXX` escape.
fn json_unicode(key: &str, upper: bool) -> String {
    key.chars()
        .map(|c| {
            if upper {
                format!("\\u{:04X}", u32::from(c))
            } else {
                format!("\\u{:04x}", u32::from(c))
            }
        })
        .collect()
}

/// The forms in which a gateway might echo `key`, each as it would appear in a body.
fn forms(key: &str) -> Vec<String> {
    let json = serde_json::to_string(key).unwrap();
    let json = json[1..json.len() - 1].to_owned();
    vec![
        key.to_owned(),
        json.clone(),
        json.replace('/', "\\/"),
        json_unicode(key, false),
        json_unicode(key, true),
        percent(key, true, reserved),
        percent(key, false, reserved),
        percent(key, true, |_| true),
        percent(key, false, |_| true),
        url::form_urlencoded::byte_serialize(key.as_bytes()).collect(),
    ]
}

/// Gateway answers that quote `echoed` (a form of the key) in each place an error keeps
/// text from: a plain-text 5xx, a 400's `error` and `path`, a refusal's `message`, a
/// 131047's detail, and an unexpected status.
fn answers(echoed: &str) -> Vec<ResponseTemplate> {
    vec![
        ResponseTemplate::new(500).set_body_string(format!("upstream refused apiKey={echoed}")),
        ResponseTemplate::new(400).set_body_string(format!(
            r#"{{"error": "invalid apiKey {echoed}", "path": "/api/v1/whatsapp/contact?apiKey={echoed}"}}"#
        )),
        ResponseTemplate::new(200).set_body_string(format!(
            r#"{{"status": "error", "message": "key {echoed} is suspended", "data": null}}"#
        )),
        ResponseTemplate::new(200).set_body_string(format!(
            r#"{{"status": "error", "message": "(#131047) Re-engagement message; key {echoed}", "data": null}}"#
        )),
        ResponseTemplate::new(418).set_body_string(format!("<p>teapot for {echoed}</p>")),
    ]
}

/// The conversation and contact card every send of these tests uses.
fn conversation_and_card() -> (Conversation, ContactMessage) {
    let conversation = Conversation::parse("254110090747", "254712345678").unwrap();
    let card = ContactMessage::new(
        "Card",
        vec![ContactPhone::new("254712345678".parse().unwrap(), "Cell")],
    )
    .unwrap();
    (conversation, card)
}

/// A client for `server` with `key`, making one attempt per send.
fn client_without_retries(key: &str, server: &MockServer) -> Client {
    Client::builder(ApiKey::new(key).unwrap())
        .base_url(&server.uri())
        .retry(RetryPolicy {
            max_retries: 0,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
        })
        .build()
        .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn a_key_echoed_in_any_encoding_is_redacted_from_errors_and_logs() {
    let (captured, _guard) = lipachat_testkit::capture_log();

    let server = MockServer::start().await;
    let (conversation, card) = conversation_and_card();
    let mut checked = 0;
    for key in KEYS {
        let client = client_without_retries(key, &server);
        let all_forms = forms(key);
        for echoed in &all_forms {
            for answer in answers(echoed) {
                server.reset().await;
                Mock::given(method("POST"))
                    .and(path("/api/v1/whatsapp/contact"))
                    .respond_with(answer)
                    .mount(&server)
                    .await;
                let error = client
                    .send_contact(conversation, MessageId::new(), &card)
                    .await
                    .unwrap_err();
                let shown = format!("{error}\n{error:?}\n{error:#?}");
                for form in &all_forms {
                    assert!(
                        !shown.contains(form.as_str()),
                        "key {key:?} echoed as {echoed:?} survives as {form:?} in:\n{shown}"
                    );
                }
                // What the error kept is still useful: the key's place is marked.
                assert!(shown.contains("***"), "{shown}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, KEYS.len() * 10 * 5);
    let logs = captured.text();
    assert!(logs.contains("send failed"), "nothing was logged:\n{logs}");
    for key in KEYS {
        for form in forms(key) {
            assert!(
                !logs.contains(form.as_str()),
                "key {key:?} logged as {form:?}"
            );
        }
    }
}

/// `key` HTML-escaped, as an HTML error page (a proxy's, a firewall's) quotes it: the
/// named references for `"`, `&`, `<`, `>`, `'`, or every character as a decimal or
/// hexadecimal reference.
fn html_forms(key: &str) -> Vec<String> {
    let named: String = key
        .chars()
        .map(|c| match c {
            '"' => "&quot;".to_owned(),
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '\'' => "&#39;".to_owned(),
            other => other.to_string(),
        })
        .collect();
    let decimal: String = key
        .chars()
        .map(|c| format!("&#{};", u32::from(c)))
        .collect();
    let hex: String = key
        .chars()
        .map(|c| format!("&#x{:X};", u32::from(c)))
        .collect();
    vec![named, decimal, hex]
}

#[tokio::test(flavor = "current_thread")]
async fn a_key_echoed_html_escaped_is_redacted() {
    let (captured, _guard) = lipachat_testkit::capture_log();
    let server = MockServer::start().await;
    let (conversation, card) = conversation_and_card();
    for key in [
        r#"sk_live_"quoted"\back\slash/path+plus=equals"#,
        r#"amp&lt<gt>'apos"-0123456789"#,
    ] {
        let client = client_without_retries(key, &server);
        let escaped = html_forms(key);
        for echoed in &escaped {
            server.reset().await;
            Mock::given(method("POST"))
                .and(path("/api/v1/whatsapp/contact"))
                .respond_with(
                    ResponseTemplate::new(403)
                        .set_body_string(format!("<html><p>key {echoed} is blocked</p></html>")),
                )
                .mount(&server)
                .await;
            let error = client
                .send_contact(conversation, MessageId::new(), &card)
                .await
                .unwrap_err();
            let shown = format!("{error}\n{error:?}");
            assert!(
                !shown.contains(echoed.as_str()),
                "key {key:?} echoed as {echoed:?} survives in:\n{shown}"
            );
            assert!(shown.contains("***"), "{shown}");
        }
        let logs = captured.text();
        for echoed in &escaped {
            assert!(
                !logs.contains(echoed.as_str()),
                "key {key:?} logged as {echoed:?}"
            );
        }
    }
}
