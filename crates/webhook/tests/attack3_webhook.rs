//! Third hostile review of the serving side, run over real HTTP on 127.0.0.1 against a
//! sled store in a temp dir and the stand-in gateway: authenticated requests that declare
//! or stream a body past the limit (under `serve` and in a user's own axum server), a
//! message redelivered in the other envelope with its numbers written differently,
//! hostile identity changes and LipaChat bodies, odd JSON in real envelopes, a path token
//! that is not UTF-8, and admin `Authorization` headers in odd shapes.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::*;
use lipachat_session::WindowStore;
use lipachat_webhook::{Secret, sign};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long an answer that must come "at once" may take.
const AT_ONCE: Duration = Duration::from_secs(2);

fn app_secret() -> Secret {
    Secret::new("app secret", APP_SECRET).unwrap()
}

/// A harness under this crate's `serve`, or with the router mounted in a user's own
/// `axum::serve` app.
async fn harness(in_users_axum_server: bool) -> Harness {
    Harness::with(Options {
        in_users_axum_server,
        ..Options::default()
    })
    .await
}

/// Writes `bytes` on a new connection and answers the first bytes the server sends
/// within `within` (`None`: nothing came).
async fn first_answer(h: &Harness, bytes: &[u8], within: Duration) -> Option<String> {
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = vec![0u8; 1024];
    match tokio::time::timeout(within, stream.read(&mut answer)).await {
        Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&answer[..n]).into_owned()),
        _ => None,
    }
}

/// The heads of authenticated webhook POSTs (the right LipaChat token; a well-formed
/// WhatsApp signature) with `framing` (a `Content-Length` or `Transfer-Encoding` line).
fn authenticated_heads(framing: &str) -> [(&'static str, String); 2] {
    let signature = sign(&app_secret(), b"{}");
    [
        (
            "lipachat",
            format!(
                "POST /webhooks/lipachat/{LIPACHAT_TOKEN} HTTP/1.1\r\nHost: test\r\n\
                 Content-Type: application/json\r\n{framing}\r\n\r\n"
            ),
        ),
        (
            "whatsapp",
            format!(
                "POST /webhooks/whatsapp HTTP/1.1\r\nHost: test\r\n\
                 Content-Type: application/json\r\nX-Hub-Signature-256: {signature}\r\n\
                 {framing}\r\n\r\n"
            ),
        ),
    ]
}

/// An authenticated request declaring a body over the limit (1 MiB), none of which is
/// sent, is answered 413 at once.
async fn a_declared_length_over_the_limit_is_413_at_once(in_users_axum_server: bool) {
    let h = harness(in_users_axum_server).await;
    let framing = format!("Content-Length: {}", 2 * 1024 * 1024);
    for (route, head) in authenticated_heads(&framing) {
        let answer = first_answer(&h, head.as_bytes(), AT_ONCE).await;
        assert!(
            answer
                .as_deref()
                .is_some_and(|a| a.starts_with("HTTP/1.1 413")),
            "{route}: a declared 2 MiB body must be answered 413 at once, got {answer:?}"
        );
    }
    assert_eq!(h.store().count().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_serve_a_declared_length_over_the_limit_is_413_at_once() {
    a_declared_length_over_the_limit_is_413_at_once(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_users_axum_server_a_declared_length_over_the_limit_is_413_at_once() {
    a_declared_length_over_the_limit_is_413_at_once(true).await;
}

/// An authenticated chunked body that never ends is cut off with 413 once it passes the
/// limit, while the client is still sending; nothing is recorded.
async fn a_chunked_body_that_never_ends_is_cut_off_with_413(in_users_axum_server: bool) {
    let h = harness(in_users_axum_server).await;
    for (route, head) in authenticated_heads("Transfer-Encoding: chunked") {
        let stream = TcpStream::connect(h.addr).await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        writer.write_all(head.as_bytes()).await.unwrap();
        // 64 KiB chunks of a JSON string, for as long as the server takes them (at most
        // 64 MiB, far past the 1 MiB limit).
        let sender = tokio::spawn(async move {
            let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
            let mut sent = 0usize;
            while sent < 1024 {
                if writer.write_all(chunk.as_bytes()).await.is_err() {
                    break;
                }
                sent += 1;
            }
            sent
        });
        let mut answer = vec![0u8; 1024];
        let read = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut answer)).await;
        let answer = match read {
            Ok(Ok(n)) => String::from_utf8_lossy(&answer[..n]).into_owned(),
            other => panic!("{route}: no answer while the body kept coming: {other:?}"),
        };
        assert!(answer.starts_with("HTTP/1.1 413"), "{route}: {answer}");
        let sent = tokio::time::timeout(Duration::from_secs(10), sender)
            .await
            .unwrap_or_else(|_| panic!("{route}: the server kept reading the body"))
            .unwrap();
        assert!(sent < 1024, "{route}: the server read 64 MiB");
    }
    assert_eq!(h.store().count().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_serve_a_chunked_body_that_never_ends_is_cut_off_with_413() {
    a_chunked_body_that_never_ends_is_cut_off_with_413(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_users_axum_server_a_chunked_body_that_never_ends_is_cut_off_with_413() {
    a_chunked_body_that_never_ends_is_cut_off_with_413(true).await;
}

/// Waits for echoes to `customer` to settle; how many there are.
async fn settled_echo_count(h: &Harness, customer: &str) -> usize {
    h.wait_for_echoes(customer, 1).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    h.echoes_to(customer).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_redelivered_in_the_other_envelope_with_its_numbers_written_differently_is_handed_over_once()
 {
    let h = Harness::start().await;
    let customer = "254712340301";
    h.gateway.customer_writes(phone(BUSINESS), phone(customer));
    // LipaChat's flat body with both numbers in international form with a plus.
    let mut flat = lipachat_text("wamid.ENVELOPES", customer, "hello");
    flat["from"] = serde_json::json!(format!("+{customer}"));
    flat["to"] = serde_json::json!(format!("+{BUSINESS}"));
    assert_eq!(h.post_lipachat(&flat).await.status(), StatusCode::OK);
    // WhatsApp's nested copy of the same message, the business number as Meta displays
    // it (spaced, with a plus).
    let mut nested: serde_json::Value = serde_json::from_slice(&whatsapp_text(
        "wamid.ENVELOPES",
        customer,
        "hello",
        Utc::now().timestamp(),
    ))
    .unwrap();
    nested["entry"][0]["changes"][0]["value"]["metadata"]["display_phone_number"] =
        serde_json::json!("+254 110 090747");
    let body = serde_json::to_vec(&nested).unwrap();
    assert_eq!(h.post_whatsapp(&body).await.status(), StatusCode::OK);
    assert_eq!(settled_echo_count(&h, customer).await, 1);
}

/// WhatsApp's nested envelope around one `value`.
fn whatsapp_value(value: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }))
    .unwrap()
}

fn metadata() -> serde_json::Value {
    serde_json::json!({"display_phone_number": BUSINESS, "phone_number_id": "1"})
}

/// A system message from `from` reporting a number change to `new`.
fn number_change(id: &str, from: &str, new: serde_json::Value) -> Vec<u8> {
    whatsapp_value(serde_json::json!({
        "messaging_product": "whatsapp",
        "metadata": metadata(),
        "messages": [{
            "from": from, "id": id, "timestamp": Utc::now().timestamp().to_string(),
            "type": "system",
            "system": {"body": "changed", "wa_id": new, "type": "user_changed_number"},
        }],
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_number_changes_and_preferences_never_answer_500() {
    let h = Harness::start().await;
    let customer = "254712340302";
    // A window to move.
    h.gateway.customer_writes(phone(BUSINESS), phone(customer));
    let hello = whatsapp_text("wamid.HELLO302", customer, "hi", Utc::now().timestamp());
    assert_eq!(h.post_whatsapp(&hello).await.status(), StatusCode::OK);
    let mut bodies = Vec::new();
    for (n, new) in [
        serde_json::json!(customer),
        serde_json::json!(BUSINESS),
        serde_json::json!(""),
        serde_json::json!("not a number"),
        serde_json::json!(u64::MAX.to_string()),
        serde_json::json!(u64::MAX),
        serde_json::json!(-1),
        serde_json::json!(null),
        serde_json::json!("+"),
        serde_json::json!("9".repeat(400)),
    ]
    .into_iter()
    .enumerate()
    {
        bodies.push((
            format!("number change {n} to {new}"),
            number_change(&format!("wamid.SYS{n}"), customer, new),
        ));
    }
    // A change away from the business's own number, and a chain there and back in one
    // body.
    bodies.push((
        "from the business number".to_owned(),
        number_change("wamid.SYSB", BUSINESS, serde_json::json!("254712340303")),
    ));
    bodies.push((
        "there and back".to_owned(),
        whatsapp_value(serde_json::json!({
            "messaging_product": "whatsapp",
            "metadata": metadata(),
            "messages": [
                {"from": customer, "id": "wamid.SYSC1", "timestamp": "1700000000", "type": "system",
                 "system": {"wa_id": "254712340304", "type": "user_changed_number"}},
                {"from": "254712340304", "id": "wamid.SYSC2", "timestamp": "1700000001", "type": "system",
                 "system": {"wa_id": customer, "type": "customer_changed_number"}},
            ],
        })),
    ));
    // User id changes naming themselves, and preferences in odd shapes.
    bodies.push((
        "user id change to itself".to_owned(),
        whatsapp_value(serde_json::json!({
            "messaging_product": "whatsapp",
            "metadata": metadata(),
            "messages": [{"from": customer, "id": "wamid.SYSU", "timestamp": "1700000000",
                "type": "system", "system": {"type": "user_changed_user_id",
                "user_id": "KE.1", "previous_user_id": "KE.1"}}],
        })),
    ));
    for (n, preference) in [
        serde_json::json!({"wa_id": customer, "category": "marketing_messages", "value": "stop", "timestamp": u64::MAX}),
        serde_json::json!({"wa_id": BUSINESS, "category": "marketing_messages", "value": "resume", "timestamp": "-1"}),
        serde_json::json!({"user_id": "", "category": "marketing_messages", "value": "stop"}),
        serde_json::json!({"wa_id": customer, "user_id": "KE.2", "category": 5, "value": ["stop"]}),
    ]
    .into_iter()
    .enumerate()
    {
        bodies.push((
            format!("preference {n}"),
            serde_json::to_vec(&serde_json::json!({
                "object": "whatsapp_business_account",
                "entry": [{"id": "1", "changes": [{"field": "user_preferences", "value": {
                    "messaging_product": "whatsapp",
                    "metadata": metadata(),
                    "user_preferences": [preference],
                }}]}],
            }))
            .unwrap(),
        ));
    }
    for (what, body) in &bodies {
        let answer = h.post_whatsapp(body).await;
        let status = answer.status();
        let text = answer.text().await.unwrap();
        assert!(
            status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
            "{what}: {status} {text}"
        );
    }
    let health = h.http.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_lipachat_bodies_never_answer_500() {
    let h = Harness::start().await;
    let customer = "254712340305";
    let mut bodies: Vec<serde_json::Value> = Vec::new();
    for (field, value) in [
        ("messageId", serde_json::json!(null)),
        ("messageId", serde_json::json!(u64::MAX)),
        ("messageId", serde_json::json!("")),
        ("messageId", serde_json::json!({"nested": true})),
        ("from", serde_json::json!(u64::MAX)),
        ("from", serde_json::json!(254_712_340_305_u64)),
        ("from", serde_json::json!(2.547_123_403_05e11)),
        ("from", serde_json::json!("+")),
        ("from", serde_json::json!(BUSINESS)),
        ("from", serde_json::json!("2".repeat(10_000))),
        ("to", serde_json::json!(null)),
        ("to", serde_json::json!(customer)),
        ("to", serde_json::json!("0")),
        ("type", serde_json::json!("SYSTEM")),
        ("type", serde_json::json!("MESSAGE_STATUS")),
        ("type", serde_json::json!(7)),
        ("text", serde_json::json!({"body": {"body": "x"}})),
        ("text", serde_json::json!("\u{feff}\u{202e}STOP\u{0}")),
        ("timestamp", serde_json::json!(i64::MIN)),
        ("timestamp", serde_json::json!(1e308)),
        ("timestamp", serde_json::json!("9999-99-99")),
    ] {
        let mut body = lipachat_text("lc-hostile", customer, "x");
        body[field] = value;
        bodies.push(body);
    }
    // LipaChat status callbacks naming unknown and odd messages.
    for (status, id) in [
        ("FAILED", serde_json::json!("not-a-uuid")),
        ("FAILED", serde_json::json!(u64::MAX)),
        (
            "DELIVERED",
            serde_json::json!("00000000-0000-0000-0000-000000000000"),
        ),
        ("\u{0}", serde_json::json!("")),
    ] {
        bodies.push(serde_json::json!({
            "type": "MESSAGE_STATUS", "messageId": id, "status": status,
            "statusDesc": "(#131047) Re-engagement message; 131050 131049",
            "from": BUSINESS, "to": customer, "timestamp": u64::MAX,
        }));
    }
    for body in &bodies {
        let answer = h.post_lipachat(body).await;
        let status = answer.status();
        let text = answer.text().await.unwrap();
        assert!(
            status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
            "{body}: {status} {text}"
        );
        assert!(!text.contains(LIPACHAT_TOKEN), "{text}");
    }
    let health = h.http.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

/// Posts `body` raw (not re-encoded) to both webhook routes; the two statuses.
async fn post_raw_to_both(h: &Harness, body: &[u8]) -> [StatusCode; 2] {
    let lipachat = h
        .http
        .post(h.url(&format!("/webhooks/lipachat/{LIPACHAT_TOKEN}")))
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .status();
    [lipachat, h.post_whatsapp(body).await.status()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_json_in_real_envelopes_never_answers_500() {
    let h = Harness::start().await;
    let customer = "254712340306";
    let now = Utc::now().timestamp();
    let real = String::from_utf8(whatsapp_text("wamid.ODD", customer, "odd", now)).unwrap();
    let flat = lipachat_text("lc-odd", customer, "odd").to_string();
    let deep = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    let mut bodies: Vec<(String, Vec<u8>)> = Vec::new();
    // Nesting just under and over serde_json's limit, in a field nobody reads and in
    // the text itself.
    for depth in [100, 126, 127, 128, 129, 5_000] {
        bodies.push((
            format!("nested {depth} in an unknown field"),
            real.replacen(
                "{\"object\"",
                &format!("{{\"x\":{},\"object\"", deep(depth)),
                1,
            )
            .into_bytes(),
        ));
        bodies.push((
            format!("nested {depth} as the text"),
            flat.replacen("\"odd\"", &deep(depth), 1).into_bytes(),
        ));
    }
    // Duplicate keys: the id, the sender, the messages list, the whole envelope's object.
    for (what, from, to) in [
        (
            "duplicate id",
            "\"id\":\"wamid.ODD\"",
            "\"id\":\"wamid.ODD\",\"id\":\"wamid.ODD2\"",
        ),
        (
            "duplicate from",
            &format!("\"from\":\"{customer}\"") as &str,
            &format!("\"from\":\"{customer}\",\"from\":\"{BUSINESS}\"") as &str,
        ),
        (
            "duplicate object",
            "\"object\":\"whatsapp_business_account\"",
            "\"object\":\"whatsapp_business_account\",\"object\":\"page\"",
        ),
    ] {
        assert!(real.contains(from), "{what}");
        bodies.push((what.to_owned(), real.replacen(from, to, 1).into_bytes()));
    }
    bodies.push((
        "duplicate messageId".to_owned(),
        flat.replacen("\"messageId\"", "\"messageId\":\"lc-a\",\"messageId\"", 1)
            .into_bytes(),
    ));
    // Huge and odd numbers where numbers or strings are read.
    for number in [
        "1e400",
        "-1e400",
        "123456789012345678901234567890",
        "-0",
        "1E2",
        "0.5",
    ] {
        bodies.push((
            format!("timestamp {number}"),
            real.replacen(
                &format!("\"timestamp\":\"{now}\""),
                &format!("\"timestamp\":{number}"),
                1,
            )
            .into_bytes(),
        ));
        bodies.push((
            format!("from {number}"),
            flat.replacen(
                &format!("\"from\":\"{customer}\""),
                &format!("\"from\":{number}"),
                1,
            )
            .into_bytes(),
        ));
    }
    // Odd UTF-8: a BOM, an overlong slash, an encoded surrogate, a truncated sequence, a
    // lone continuation byte, inside the text.
    for (what, bytes) in [
        ("bom", &b"\xef\xbb\xbf"[..]),
        ("overlong", b"\xc0\xaf"),
        ("surrogate", b"\xed\xa0\x80"),
        ("truncated", b"\xe2\x82"),
        ("continuation", b"\x80"),
        ("nul", b"\\u0000"),
        ("escaped lone surrogate", b"\\udc00"),
    ] {
        let mut body = real.replacen("\"odd\"", "\"odd\u{1}\"", 1).into_bytes();
        let at = body.windows(4).position(|w| w == b"odd\x01").unwrap() + 3;
        body.splice(at..=at, bytes.iter().copied());
        bodies.push((format!("{what} in the text"), body.clone()));
        let mut with_bom = bytes.to_vec();
        with_bom.extend_from_slice(flat.as_bytes());
        bodies.push((format!("{what} before the body"), with_bom));
    }
    for (what, body) in &bodies {
        for (route, status) in ["lipachat", "whatsapp"]
            .into_iter()
            .zip(post_raw_to_both(&h, body).await)
        {
            assert!(
                status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
                "{what} on {route}: {status}"
            );
        }
    }
    let health = h.http.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_token_that_is_not_utf8_is_refused_before_its_body_and_never_echoed() {
    for in_users_axum_server in [false, true] {
        let h = harness(in_users_axum_server).await;
        for path in [
            format!("/webhooks/lipachat/{LIPACHAT_TOKEN}%FF"),
            format!("/webhooks/lipachat/%FF{LIPACHAT_TOKEN}"),
            "/webhooks/lipachat/%C0%AF".to_owned(),
        ] {
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
                 Content-Length: 1000000\r\n\r\n"
            );
            let answer = first_answer(&h, head.as_bytes(), AT_ONCE).await;
            let Some(answer) = answer else {
                panic!("{path} (own server: {in_users_axum_server}): no answer before the body");
            };
            assert!(
                answer.starts_with("HTTP/1.1 4"),
                "{path} (own server: {in_users_axum_server}): {answer}"
            );
            assert!(!answer.contains(LIPACHAT_TOKEN), "{answer}");
        }
        assert_eq!(h.store().count().await.unwrap(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_authorization_in_odd_shapes_authenticates_only_the_token_itself() {
    let h = Harness::start().await;
    let admin = |headers: &[&str]| {
        let mut request = h.http.get(h.url("/admin/pending"));
        for header in headers {
            request = request.header("authorization", *header);
        }
        request.send()
    };
    let right = format!("Bearer {ADMIN_TOKEN}");
    // Refused: a wrong token before the right one, and shapes holding more or other than
    // the token.
    for headers in [
        vec![
            "Bearer wrong-token-0123456789abcdef".to_owned(),
            right.clone(),
        ],
        vec![format!("Bearer {ADMIN_TOKEN} {ADMIN_TOKEN}")],
        vec![format!("Bearer {ADMIN_TOKEN},")],
        vec![format!("Bearer {ADMIN_TOKEN}\\n")],
        vec![format!("Bearer {ADMIN_TOKEN}%0A")],
        vec![format!("Bearer \"{ADMIN_TOKEN}\"")],
        vec![format!("Bearer={ADMIN_TOKEN}")],
        vec![format!("BearerBearer {ADMIN_TOKEN}")],
        vec![format!("Bearer {}", ADMIN_TOKEN.to_ascii_uppercase())],
    ] {
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let answer = admin(&headers).await.unwrap();
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "{headers:?}");
        assert!(!answer.text().await.unwrap().contains(ADMIN_TOKEN));
    }
    // A non-ASCII byte after the token (a no-break space, as obs-text) is not white
    // space: refused.
    let raw = format!(
        "GET /admin/pending HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Authorization: Bearer {ADMIN_TOKEN}\u{a0}\r\n\r\n"
    );
    let answer = first_answer(&h, raw.as_bytes(), AT_ONCE).await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 401") || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    // Accepted: the token with white space around it (a bare LF ending the line, two
    // spaces, trailing spaces and tabs), which is the token itself.
    for raw in [
        format!("Authorization: Bearer {ADMIN_TOKEN}\n"),
        format!("Authorization: Bearer  {ADMIN_TOKEN}\r\n"),
        format!("Authorization: Bearer {ADMIN_TOKEN} \t \r\n"),
    ] {
        let request =
            format!("GET /admin/pending HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{raw}\r\n");
        let answer = first_answer(&h, request.as_bytes(), AT_ONCE).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{raw:?}: {answer}");
    }
    let metrics = h.metrics_text().await;
    assert!(!metrics.contains(ADMIN_TOKEN));
    // Nothing was written by the admin routes.
    let conversation = lipachat_session::Conversation::new(phone(BUSINESS), phone(BUSINESS));
    assert!(h.store().window(conversation).await.unwrap().is_none());
}

/// A harness whose bot only counts the messages handed to it, by text.
async fn counting_harness() -> (
    std::sync::Arc<Harness>,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use lipachat_session::SledStore;
    use lipachat_webhook::{NewMessage, Reply};
    let handed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&handed);
    let h = Harness::with(Options {
        bot: None,
        configure: Box::new(move |builder| {
            builder.bot(move |message: NewMessage, _reply: Reply<SledStore>| {
                let seen = std::sync::Arc::clone(&seen);
                async move {
                    seen.lock()
                        .unwrap()
                        .push(message.text().unwrap_or_default().to_owned());
                }
            })
        }),
        ..Options::default()
    })
    .await;
    (std::sync::Arc::new(h), handed)
}

/// How many times `text` was handed to the bot, once handing over has settled.
async fn handed_over(handed: &std::sync::Mutex<Vec<String>>, text: &str) -> usize {
    let count = || handed.lock().unwrap().iter().filter(|t| *t == text).count();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while count() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_long_ago_or_dated_ahead_are_handed_over_once_however_often_redelivered() {
    let (h, handed) = counting_harness().await;
    let now = Utc::now().timestamp();
    let day = 86_400;
    for (n, sent_at) in [
        now - 6 * day - day / 2,
        now - 8 * day,
        now - 400 * day,
        now + day,
        now + 400 * day,
    ]
    .into_iter()
    .enumerate()
    {
        let customer = format!("25471234040{n}");
        let text = format!("dated {n}");
        let body = whatsapp_text(&format!("wamid.DATED{n}"), &customer, &text, sent_at);
        for _ in 0..3 {
            assert_eq!(h.post_whatsapp(&body).await.status(), StatusCode::OK);
        }
        let flat = lipachat_text(&format!("wamid.DATED{n}"), &customer, &text);
        assert_eq!(h.post_lipachat(&flat).await.status(), StatusCode::OK);
        assert_eq!(handed_over(&handed, &text).await, 1, "sent at {sent_at}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copies_in_both_envelopes_are_handed_over_once() {
    let (h, handed) = counting_harness().await;
    let customer = "254712340410";
    let nested = whatsapp_text(
        "wamid.BOTHRACE",
        customer,
        "race both",
        Utc::now().timestamp(),
    );
    let flat = lipachat_text("wamid.BOTHRACE", customer, "race both");
    let mut posts = Vec::new();
    for n in 0..24 {
        let h = std::sync::Arc::clone(&h);
        let nested = nested.clone();
        let flat = flat.clone();
        posts.push(tokio::spawn(async move {
            if n % 2 == 0 {
                h.post_whatsapp(&nested).await.status()
            } else {
                h.post_lipachat(&flat).await.status()
            }
        }));
    }
    for post in posts {
        assert_eq!(post.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(handed_over(&handed, "race both").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_admin_paths_and_queries_are_client_errors_never_500() {
    let h = Harness::start().await;
    let customer = "254712340420";
    for path in [
        "/admin/windows/+/+".to_owned(),
        "/admin/windows/0/0".to_owned(),
        format!("/admin/windows/{BUSINESS}/%FF"),
        format!("/admin/windows/{BUSINESS}/{}", "9".repeat(5_000)),
        format!("/admin/windows/{BUSINESS}/{}", u64::MAX),
        format!("/admin/windows/{BUSINESS}/{customer}/extra"),
        format!("/admin/pending/{BUSINESS}/%00"),
        format!("/admin/pending/%F0%9F%98%80/{customer}"),
        "/admin/windows?state=OPEN".to_owned(),
        "/admin/windows?state=open&state=closed".to_owned(),
        "/admin/windows?closing_within=-5".to_owned(),
        "/admin/windows?closing_within=1e3".to_owned(),
        "/admin/windows?closing_within=%FF".to_owned(),
        "/admin/windows?closing_within=18446744073709551616".to_owned(),
        "/admin/pending?x=%00".to_owned(),
    ] {
        let answer = h.admin(&path).await;
        let status = answer.status();
        let text = answer.text().await.unwrap();
        assert!(
            status.is_success() || status.is_client_error(),
            "{path}: {status} {text}"
        );
        assert!(!text.contains(ADMIN_TOKEN), "{text}");
    }
    let health = h.http.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_authenticated_body_is_cut_off_with_408_records_nothing_and_holds_no_one_up() {
    let h = Harness::with(Options {
        serving: lipachat_webhook::ServingConfig::default()
            .with_body_read_timeout(Duration::from_millis(300))
            .with_max_concurrent_requests(1),
        ..Options::default()
    })
    .await;
    let customer = "254712340421";
    h.gateway.customer_writes(phone(BUSINESS), phone(customer));
    let whole = lipachat_text("wamid.SLOW", customer, "slow").to_string();
    // Two slow clients with the right token (more than the one handler slot), each
    // sending half the body and then nothing.
    let mut slow = Vec::new();
    for _ in 0..2 {
        let head = format!(
            "POST /webhooks/lipachat/{LIPACHAT_TOKEN} HTTP/1.1\r\nHost: test\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            whole.len(),
            &whole[..whole.len() / 2]
        );
        let mut stream = TcpStream::connect(h.addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        slow.push(stream);
    }
    // Meanwhile a whole webhook from someone else is served at once.
    let other = "254712340422";
    h.gateway.customer_writes(phone(BUSINESS), phone(other));
    let served = tokio::time::timeout(
        Duration::from_millis(250),
        h.post_lipachat(&lipachat_text("wamid.FAST", other, "fast")),
    )
    .await
    .expect("a whole webhook waited behind slow bodies");
    assert_eq!(served.status(), StatusCode::OK);
    for mut stream in slow {
        let mut answer = vec![0u8; 256];
        let n = tokio::time::timeout(AT_ONCE, stream.read(&mut answer))
            .await
            .expect("no answer to a stalled body")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    assert!(!h.recorded(customer).await, "nothing of a cut-off body");
    h.assert_one_echo(other, "fast").await;
}

/// A service on an instrumented sled store (in `dir`) served on 127.0.0.1, whose bot
/// counts what it is handed; its address, the store and the count.
async fn instrumented_service(
    dir: &std::path::Path,
    gateway: &lipachat_testkit::StandInGateway,
) -> (
    std::net::SocketAddr,
    lipachat_session::instrumented::InstrumentedStore<lipachat_session::SledStore>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use lipachat_session::SledStore;
    use lipachat_session::instrumented::InstrumentedStore;
    use lipachat_webhook::{NewMessage, Reply, WebhookService};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let store = InstrumentedStore::new(SledStore::open(dir.join("sessions.db")).unwrap());
    let messenger = messenger_on(store.clone(), gateway);
    let handed = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&handed);
    let service = WebhookService::builder(messenger)
        .lipachat_token(lipachat_api::WebhookToken::new(LIPACHAT_TOKEN).unwrap())
        .whatsapp(
            Secret::new("verify token", VERIFY_TOKEN).unwrap(),
            app_secret(),
        )
        .bot(
            move |_message: NewMessage, _reply: Reply<InstrumentedStore<SledStore>>| {
                count.fetch_add(1, Ordering::SeqCst);
                async {}
            },
        )
        .build()
        .unwrap();
    let addr = serve_until_the_end(service.router(), service).await;
    (addr, store, handed)
}

/// One webhook body and the route it goes to.
struct Delivery {
    what: &'static str,
    path: String,
    body: Vec<u8>,
    signed: bool,
}

impl Delivery {
    /// Posts it, as the sender would: again after anything but a 200, up to five times;
    /// the last status.
    async fn deliver(&self, addr: std::net::SocketAddr) -> Vec<StatusCode> {
        let http = reqwest::Client::new();
        let mut statuses = Vec::new();
        for _ in 0..5 {
            let mut request = http
                .post(format!("http://{addr}{}", self.path))
                .header("content-type", "application/json")
                .body(self.body.clone());
            if self.signed {
                request = request.header("x-hub-signature-256", sign(&app_secret(), &self.body));
            }
            let status = request.send().await.unwrap().status();
            statuses.push(status);
            if status == StatusCode::OK {
                break;
            }
        }
        statuses
    }
}

fn deliveries() -> Vec<Delivery> {
    let customer = "254712340430";
    let mut referral: serde_json::Value = serde_json::from_slice(&whatsapp_text(
        "wamid.FAULTS2",
        customer,
        "STOP",
        Utc::now().timestamp(),
    ))
    .unwrap();
    referral["entry"][0]["changes"][0]["value"]["messages"][0]["referral"] = serde_json::json!({
        "source_url": "https://fb.me/ad", "source_id": "1", "source_type": "ad",
        "ctwa_clid": "clid-1",
    });
    vec![
        Delivery {
            what: "a LipaChat text",
            path: format!("/webhooks/lipachat/{LIPACHAT_TOKEN}"),
            body: lipachat_text("wamid.FAULTS1", customer, "hello")
                .to_string()
                .into_bytes(),
            signed: false,
        },
        Delivery {
            what: "a WhatsApp STOP from an ad",
            path: "/webhooks/whatsapp".to_owned(),
            body: serde_json::to_vec(&referral).unwrap(),
            signed: true,
        },
    ]
}

/// Delivers `delivery` to a fresh service whose `nth` call of `operation` strikes with
/// `fault`, the sender retrying until a 200; what went wrong, if anything (the message
/// must be handed to the bot exactly once and the last answer be 200).
async fn strike(
    delivery: &Delivery,
    gateway: &lipachat_testkit::StandInGateway,
    operation: &'static str,
    nth: usize,
    fault: lipachat_session::instrumented::Fault,
) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let (addr, store, handed) = instrumented_service(dir.path(), gateway).await;
    store.fault_at(operation, nth, fault);
    let statuses = delivery.deliver(addr).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let handed = handed.load(std::sync::atomic::Ordering::SeqCst);
    (handed != 1 || statuses.last() != Some(&StatusCode::OK)).then(|| {
        format!(
            "{}: {operation} #{nth} {fault:?}: answers {statuses:?}, handed over {handed}",
            delivery.what
        )
    })
}

/// Every store call a webhook makes, struck in turn (failing before it reaches the store,
/// or after it did its work with the answer lost), with the sender retrying until it gets
/// a 200: the message is handed to the bot exactly once, never lost, never twice. (The
/// inbound record's answer lost is the test below.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failure_at_any_call_of_a_webhook_hands_the_message_over_exactly_once() {
    use lipachat_session::instrumented::Fault;
    let gateway = lipachat_testkit::StandInGateway::start().await.unwrap();
    let mut failures = Vec::new();
    let mut struck = 0;
    for delivery in deliveries() {
        // The calls a clean delivery makes, in order.
        let dir = tempfile::tempdir().unwrap();
        let (addr, store, handed) = instrumented_service(dir.path(), &gateway).await;
        assert_eq!(delivery.deliver(addr).await, [StatusCode::OK]);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            handed.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "{}",
            delivery.what
        );
        let mut seen = std::collections::HashMap::<&str, usize>::new();
        for operation in store.order() {
            let nth = {
                let n = seen.entry(operation).or_default();
                *n += 1;
                *n
            };
            for fault in [Fault::Before, Fault::After] {
                if operation == "record_inbound_once" && fault == Fault::After {
                    continue;
                }
                struck += 1;
                failures.extend(strike(&delivery, &gateway, operation, nth, fault).await);
            }
        }
    }
    assert!(struck >= 4, "only {struck} calls struck");
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The inbound message's record is written (durably), then its answer is lost (a Redis
/// reply cut off after the script ran; a sled flush that failed after the write): the
/// webhook is answered 503 and the sender's retry finds the message already seen, so the
/// bot never got it. It is handed over once: the service remembers the message whose
/// handling failed and hands it over when its retry comes back as already seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_record_whose_answer_is_lost_still_hands_the_message_over_once() {
    let gateway = lipachat_testkit::StandInGateway::start().await.unwrap();
    let mut failures = Vec::new();
    for delivery in deliveries() {
        failures.extend(
            strike(
                &delivery,
                &gateway,
                "record_inbound_once",
                1,
                lipachat_session::instrumented::Fault::After,
            )
            .await,
        );
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
