//! Attacks from the pre-release review of the serving side, over real HTTP on 127.0.0.1
//! against a sled store in a temp dir and the stand-in gateway: forged and altered
//! signatures, copies of one message delivered concurrently or under two bodies, hostile
//! timestamps and ids, an admin query too large for a duration, and a store failure
//! between recording a message and answering the webhook.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::*;
use lipachat_api::WebhookToken;
use lipachat_policy::{Messenger, PolicyConfig};
use lipachat_session::instrumented::InstrumentedStore;
use lipachat_session::{Sessions, SledStore, WindowStore};
use lipachat_testkit::StandInGateway;
use lipachat_webhook::{NewMessage, Reply, Secret, ServingConfig, WebhookService, serve, sign};
use reqwest::StatusCode;

fn app_secret() -> Secret {
    Secret::new("app secret", APP_SECRET).unwrap()
}

/// POSTs `body` to the WhatsApp route with the given signature headers (in order).
async fn post_signed_with(h: &Harness, body: &[u8], signatures: &[&str]) -> StatusCode {
    let mut request = h.http.post(h.url("/webhooks/whatsapp")).body(body.to_vec());
    for signature in signatures {
        request = request.header("x-hub-signature-256", *signature);
    }
    request.send().await.unwrap().status()
}

/// Serves `router` on 127.0.0.1 until the test ends; its address.
async fn serve_on_loopback(router: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        router,
        ServingConfig::default(),
        std::future::pending(),
    ));
    addr
}

/// Waits a little for echoes that should not come, then returns how many there are.
async fn settled_echoes(h: &Harness, customer: &str) -> usize {
    h.wait_for_echoes(customer, 1).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    h.echoes_to(customer).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_that_are_not_the_bodys_own_are_refused_and_record_nothing() {
    let h = Harness::start().await;
    let customer = "254712340001";
    h.gateway.customer_writes(phone(BUSINESS), phone(customer));
    let body = whatsapp_text("wamid.SIGREVIEW", customer, "hi", Utc::now().timestamp());
    let good = sign(&app_secret(), &body);
    let hex = good.strip_prefix("sha256=").unwrap();
    let mut altered = body.clone();
    altered.extend_from_slice(b" ");
    let empty_key_signature = {
        // What a receiver with an empty (or missing) app secret would accept.
        use hmac::{Mac, digest::KeyInit};
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"").unwrap();
        mac.update(&body);
        let digest = mac.finalize().into_bytes();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256={hex}")
    };
    let sha1_style = format!("sha1={hex}");
    let upper_prefix = format!("SHA256={hex}");
    let no_prefix = hex.to_owned();
    let truncated = format!("sha256={}", &hex[..63]);
    let doubled = format!("sha256={hex}{hex}");
    for (what, signatures) in [
        ("no header", vec![]),
        ("empty header", vec![""]),
        ("sha1= prefix", vec![sha1_style.as_str()]),
        ("upper-case prefix", vec![upper_prefix.as_str()]),
        ("hex without prefix", vec![no_prefix.as_str()]),
        ("63 hex digits", vec![truncated.as_str()]),
        ("128 hex digits", vec![doubled.as_str()]),
        (
            "HMAC under an empty key",
            vec![empty_key_signature.as_str()],
        ),
        // The first header is the one checked: a forged first with the real one after.
        ("forged header first", vec!["sha256=00", good.as_str()]),
    ] {
        assert_eq!(
            post_signed_with(&h, &body, &signatures).await,
            StatusCode::UNAUTHORIZED,
            "{what}"
        );
    }
    // The body altered after signing (one trailing space): refused.
    assert_eq!(
        post_signed_with(&h, &altered, &[good.as_str()]).await,
        StatusCode::UNAUTHORIZED,
        "altered body"
    );
    assert_eq!(h.store().count().await.unwrap(), 0, "nothing recorded");
    // Upper-case hex is the same signature: accepted, and handled once.
    let upper_hex = format!("sha256={}", hex.to_ascii_uppercase());
    assert_eq!(
        post_signed_with(&h, &body, &[upper_hex.as_str()]).await,
        StatusCode::OK
    );
    assert_eq!(
        post_signed_with(&h, &body, &[good.as_str()]).await,
        StatusCode::OK
    );
    assert_eq!(settled_echoes(&h, customer).await, 1);
    // No refusal's answer or metric carries the signature or the secret.
    let refused = h
        .http
        .post(h.url("/webhooks/whatsapp"))
        .header("x-hub-signature-256", format!("sha256={}", "ab".repeat(32)))
        .body(body.clone())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let metrics = h.metrics_text().await;
    for text in [&refused, &metrics] {
        assert!(!text.contains(APP_SECRET), "{text}");
        assert!(!text.contains(&"ab".repeat(32)), "{text}");
        assert!(!text.contains(hex), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_path_and_admin_tokens_are_refused_without_echoing_them() {
    let h = Harness::start().await;
    let body = lipachat_text("in-tok", "254712340002", "hi");
    let near_misses = [
        format!("{LIPACHAT_TOKEN}x"),
        LIPACHAT_TOKEN[..LIPACHAT_TOKEN.len() - 1].to_owned(),
        LIPACHAT_TOKEN.to_ascii_uppercase(),
        format!("{LIPACHAT_TOKEN}%00"),
        format!("%20{LIPACHAT_TOKEN}"),
    ];
    for token in &near_misses {
        let answer = h
            .http
            .post(h.url(&format!("/webhooks/lipachat/{token}")))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = answer.status();
        let text = answer.text().await.unwrap();
        assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::NOT_FOUND,
            "{token}: {status} {text}"
        );
        assert!(!text.contains(LIPACHAT_TOKEN), "{text}");
    }
    assert_eq!(h.store().count().await.unwrap(), 0);
    for authorization in [
        format!("bearer {ADMIN_TOKEN}"),
        format!("Bearer {ADMIN_TOKEN}x"),
        format!("Bearer {}", &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1]),
        format!("Basic {ADMIN_TOKEN}"),
        ADMIN_TOKEN.to_owned(),
        "Bearer ".to_owned(),
    ] {
        let answer = h
            .http
            .get(h.url("/admin/pending"))
            .header("authorization", &authorization)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "{authorization}");
        assert!(!answer.text().await.unwrap().contains(ADMIN_TOKEN));
    }
    let metrics = h.metrics_text().await;
    assert!(!metrics.contains(LIPACHAT_TOKEN) && !metrics.contains(ADMIN_TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copies_of_one_body_are_handed_to_the_bot_once() {
    let h = Arc::new(Harness::start().await);
    let customer = "254712340003";
    h.gateway.customer_writes(phone(BUSINESS), phone(customer));
    let body = whatsapp_text("wamid.RACE", customer, "race", Utc::now().timestamp());
    let mut posts = Vec::new();
    for _ in 0..16 {
        let h = Arc::clone(&h);
        let body = body.clone();
        posts.push(tokio::spawn(async move {
            h.post_whatsapp(&body).await.status()
        }));
    }
    for post in posts {
        assert_eq!(post.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(settled_echoes(&h, customer).await, 1);
    let metrics = h.metrics_text().await;
    assert!(
        metrics.contains("lipachat_webhook_duplicates_total 15"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_id_in_two_bodies_or_twice_in_one_is_handed_over_once() {
    let h = Harness::start().await;
    let customer = "254712340004";
    h.gateway.customer_writes(phone(BUSINESS), phone(customer));
    let now = Utc::now().timestamp();
    // The same wamid through LipaChat's route and WhatsApp's.
    let lipachat = lipachat_text("wamid.BOTHROUTES", customer, "both");
    assert_eq!(h.post_lipachat(&lipachat).await.status(), StatusCode::OK);
    let whatsapp = whatsapp_text("wamid.BOTHROUTES", customer, "both", now);
    assert_eq!(h.post_whatsapp(&whatsapp).await.status(), StatusCode::OK);
    assert_eq!(settled_echoes(&h, customer).await, 1);

    // Two copies of one message in one body.
    let other = "254712340005";
    h.gateway.customer_writes(phone(BUSINESS), phone(other));
    let mut value: serde_json::Value =
        serde_json::from_slice(&whatsapp_text("wamid.TWICE", other, "twice", now)).unwrap();
    let messages = &mut value["entry"][0]["changes"][0]["value"]["messages"];
    let copy = messages[0].clone();
    messages.as_array_mut().unwrap().push(copy);
    let body = serde_json::to_vec(&value).unwrap();
    assert_eq!(h.post_whatsapp(&body).await.status(), StatusCode::OK);
    assert_eq!(settled_echoes(&h, other).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_timestamps_ids_and_shapes_never_answer_500_or_drop_the_connection() {
    let h = Harness::start().await;
    let customer = "254712340006";
    let message = |id: serde_json::Value, timestamp: serde_json::Value| {
        serde_json::json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": BUSINESS, "phone_number_id": "1"},
                "messages": [{"from": customer, "id": id, "timestamp": timestamp,
                              "type": "text", "text": {"body": "x"}}],
            }}]}],
        })
    };
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    for (n, timestamp) in [
        serde_json::json!("-1"),
        serde_json::json!(-99_999_999_999_999_i64),
        serde_json::json!(i64::MIN),
        serde_json::json!(i64::MAX),
        serde_json::json!(u64::MAX),
        serde_json::json!(1e308),
        serde_json::json!(-1e308),
        serde_json::json!("99999999999999999999999"),
        serde_json::json!("0000-01-01T00:00:00Z"),
        serde_json::json!("9999-12-31T23:59:59+14:00"),
        serde_json::json!(""),
        serde_json::json!(null),
        serde_json::json!({"a": 1}),
    ]
    .into_iter()
    .enumerate()
    {
        bodies.push(
            serde_json::to_vec(&message(
                serde_json::json!(format!("wamid.TS{n}")),
                timestamp,
            ))
            .unwrap(),
        );
    }
    for id in [
        serde_json::json!("wamid.\u{0}\u{1}"),
        serde_json::json!("x".repeat(10_000)),
        serde_json::json!(""),
        serde_json::json!(12345),
        serde_json::json!(["wamid.A"]),
    ] {
        bodies.push(serde_json::to_vec(&message(id, serde_json::json!("1700000000"))).unwrap());
    }
    // Failed statuses (131047 and others) naming unknown messages, odd recipients and
    // odd error lists.
    for (recipient, errors, timestamp) in [
        (
            serde_json::json!(customer),
            serde_json::json!([{"code": 131047}]),
            serde_json::json!(i64::MAX),
        ),
        (
            serde_json::json!(""),
            serde_json::json!([{"code": 131047}]),
            serde_json::json!("-1"),
        ),
        (
            serde_json::json!("not a phone"),
            serde_json::json!([{"code": "131047"}]),
            serde_json::json!(null),
        ),
        (
            serde_json::json!(254_712_340_006_u64),
            serde_json::json!({"code": 131047}),
            serde_json::json!(1e308),
        ),
        (
            serde_json::json!(customer),
            serde_json::json!([{"code": u64::MAX}, null, 5]),
            serde_json::json!("1700000000"),
        ),
    ] {
        bodies.push(
            serde_json::to_vec(&serde_json::json!({
                "object": "whatsapp_business_account",
                "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": BUSINESS, "phone_number_id": "1"},
                    "statuses": [{"id": "wamid.UNKNOWN", "status": "failed",
                                  "recipient_id": recipient, "timestamp": timestamp,
                                  "errors": errors}],
                }}]}],
            }))
            .unwrap(),
        );
    }
    // Deep nesting, a lone surrogate, non-UTF-8 bytes, a number too large for anything.
    bodies.push(format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes());
    bodies.push(br#"{"entry":[{"changes":[{"value":{"messages":[{"id":"\ud800"}]}}]}]}"#.to_vec());
    bodies.push(b"{\"entry\":[\xff\xfe]}".to_vec());
    bodies.push(format!("{{\"entry\":[{}]}}", "9".repeat(5000)).into_bytes());
    for body in &bodies {
        let status = h.post_whatsapp(body).await.status();
        assert!(
            status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
            "{status} for {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    // The server is still up and healthy.
    let health = h.http.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_closing_within_too_large_for_a_duration_is_a_400_not_a_panic() {
    let h = Harness::start().await;
    for secs in [i64::MAX, i64::MIN, i64::MAX / 1000 + 1] {
        let answer = h
            .admin(&format!("/admin/windows?closing_within={secs}"))
            .await;
        let status = answer.status();
        let text = answer.text().await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{secs}: {text}");
        assert!(text.contains("closing_within"), "{text}");
    }
    // The server still answers.
    assert_eq!(
        h.admin("/admin/windows?closing_within=3600").await.status(),
        StatusCode::OK
    );
}

/// Posts LipaChat's text with message id `id` from `customer` three times; how many
/// echoes reach the customer.
async fn echoes_after_three_copies(id: &str, customer: &str) -> usize {
    let h = Harness::start().await;
    h.gateway.customer_writes(phone(BUSINESS), phone(customer));
    let body = lipachat_text(id, customer, "copied");
    for _ in 0..3 {
        assert_eq!(h.post_lipachat(&body).await.status(), StatusCode::OK);
    }
    settled_echoes(&h, customer).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_message_with_a_long_id_is_answered_once() {
    let long_id = format!("in-{}", "7".repeat(300));
    assert_eq!(echoes_after_three_copies(&long_id, "254712340007").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_message_whose_id_has_a_control_character_is_answered_once() {
    assert_eq!(
        echoes_after_three_copies("in-\u{1}-ctl", "254712340009").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failure_after_recording_does_not_lose_the_message_for_the_bot() {
    let gateway = StandInGateway::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = gateway_client(&gateway);
    let store = InstrumentedStore::new(SledStore::open(dir.path().join("sessions.db")).unwrap());
    let messenger = Messenger::new(
        Sessions::new(store.clone()),
        client,
        PolicyConfig::default(),
    );
    let bot = EchoBot::open();
    let service = WebhookService::builder(messenger)
        .lipachat_token(WebhookToken::new(LIPACHAT_TOKEN).unwrap())
        .bot(
            move |message: NewMessage, reply: Reply<InstrumentedStore<SledStore>>| {
                echo(Arc::clone(&bot.gate), message, reply)
            },
        )
        .build()
        .unwrap();
    let addr = serve_on_loopback(service.router()).await;
    let customer = "254712340008";
    gateway.customer_writes(phone(BUSINESS), phone(customer));
    let body = lipachat_text("in-store-fails", customer, "are you there");
    let url = format!("http://{addr}/webhooks/lipachat/{LIPACHAT_TOKEN}");
    let http = reqwest::Client::new();
    // The outbox read that follows recording the message fails once (a Redis hiccup).
    // The message is recorded by then: the answer is 200 and the bot gets it (before the
    // fix: 503, and the sender's retry was a duplicate the bot never saw).
    store.fail_next("queued", 1);
    let first = http.post(&url).json(&body).send().await.unwrap().status();
    assert_eq!(first, StatusCode::OK, "recorded, and handed to the bot");
    // A redelivery of the same body is a duplicate, answered once in all.
    let again = http.post(&url).json(&body).send().await.unwrap().status();
    assert_eq!(again, StatusCode::OK);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while gateway.delivered_to(phone(customer)).is_empty() && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        gateway.delivered_to(phone(customer)).len(),
        1,
        "the customer's message reached the bot once and was answered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_output_of_the_service_and_the_bots_arguments_carries_no_secret() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let gateway = StandInGateway::start().await.unwrap();
    let api_key = gateway.api_key().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let messenger = Messenger::new(
        Sessions::new(SledStore::open(dir.path().join("sessions.db")).unwrap()),
        gateway_client(&gateway),
        PolicyConfig::default(),
    );
    let kept = Arc::clone(&seen);
    let service = WebhookService::builder(messenger)
        .lipachat_token(WebhookToken::new(LIPACHAT_TOKEN).unwrap())
        .whatsapp(
            Secret::new("verify token", VERIFY_TOKEN).unwrap(),
            app_secret(),
        )
        .admin_token(Secret::admin_token(ADMIN_TOKEN).unwrap())
        .bot(move |message: NewMessage, reply: Reply<SledStore>| {
            let kept = Arc::clone(&kept);
            async move {
                kept.lock()
                    .unwrap()
                    .push(format!("{message:?} {reply:?} {:?}", reply.messenger()));
            }
        })
        .build()
        .unwrap();
    let addr = serve_on_loopback(service.router()).await;
    let answer = reqwest::Client::new()
        .post(format!("http://{addr}/webhooks/lipachat/{LIPACHAT_TOKEN}"))
        .json(&lipachat_text("in-debug", "254712340010", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while seen.lock().unwrap().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut printed = seen.lock().unwrap().clone();
    assert_eq!(printed.len(), 1, "the bot got the message");
    printed.push(format!("{service:?} {:?}", service.metrics()));
    for text in &printed {
        for secret in [
            api_key.as_str(),
            LIPACHAT_TOKEN,
            VERIFY_TOKEN,
            APP_SECRET,
            ADMIN_TOKEN,
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}

/// Sends `head` (declaring a body just under the limit, none of which is sent) on a new
/// connection; the start of the answer, which must come within 2 s while the body is
/// still awaited.
async fn answer_to_a_head_alone(h: &Harness, head: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut answer)).await;
    match read {
        Ok(Ok(n)) => String::from_utf8_lossy(&answer[..n]).into_owned(),
        other => panic!("no answer within 2 s while the body was awaited: {other:?}"),
    }
}

fn head(path: &str, extra_headers: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         {extra_headers}Content-Length: {}\r\n\r\n",
        1024 * 1024 - 1
    )
}

/// The heads the webhook routes refuse without reading the body: a wrong LipaChat path
/// token, and a WhatsApp POST without a well-formed signature header.
async fn heads_are_refused_before_their_bodies_are_read(h: &Harness) {
    let signature = sign(&app_secret(), b"{}");
    for (what, head) in [
        (
            "wrong path token",
            head("/webhooks/lipachat/not-the-token-0123456789", ""),
        ),
        ("no signature header", head("/webhooks/whatsapp", "")),
        (
            "empty signature header",
            head("/webhooks/whatsapp", "X-Hub-Signature-256: \r\n"),
        ),
        (
            "sha1 signature header",
            head(
                "/webhooks/whatsapp",
                &format!(
                    "X-Hub-Signature-256: {}\r\n",
                    signature.replace("sha256=", "sha1=")
                ),
            ),
        ),
        (
            "63 hex digits",
            head(
                "/webhooks/whatsapp",
                &format!(
                    "X-Hub-Signature-256: {}\r\n",
                    &signature[..signature.len() - 1]
                ),
            ),
        ),
    ] {
        let answer = answer_to_a_head_alone(h, &head).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{what}: {answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{what}: the connection is closed after the answer: {answer}"
        );
    }
    // A well-formed signature passes the head check: the body is awaited (it is checked
    // against the signature once read), so no answer comes before it is sent.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let well_formed = head(
            "/webhooks/whatsapp",
            &format!("X-Hub-Signature-256: {signature}\r\n"),
        );
        let mut stream = tokio::net::TcpStream::connect(h.addr).await.unwrap();
        stream.write_all(well_formed.as_bytes()).await.unwrap();
        let mut byte = [0u8; 1];
        let early = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut byte)).await;
        assert!(
            early.is_err(),
            "answered before the body was sent: {early:?}"
        );
    }
    assert_eq!(h.store().count().await.unwrap(), 0, "nothing recorded");
    let metrics = h.metrics_text().await;
    assert!(metrics.contains("reason=\"token\""), "{metrics}");
    assert!(
        metrics.contains("reason=\"signature_missing\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("reason=\"signature_malformed\""),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_path_token_is_refused_before_its_body_is_read() {
    let h = Harness::start().await;
    let answer =
        answer_to_a_head_alone(&h, &head("/webhooks/lipachat/not-the-token-0123456789", "")).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whatsapp_post_without_a_well_formed_signature_header_is_refused_before_its_body_is_read()
{
    let h = Harness::start().await;
    let answer = answer_to_a_head_alone(&h, &head("/webhooks/whatsapp", "")).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_serve_unauthenticated_heads_are_refused_before_their_bodies_are_read() {
    let h = Harness::start().await;
    heads_are_refused_before_their_bodies_are_read(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_users_axum_server_unauthenticated_heads_are_refused_before_their_bodies_are_read() {
    let h = Harness::with(Options {
        in_users_axum_server: true,
        ..Options::default()
    })
    .await;
    let answer = h.http.get(h.url("/")).send().await.unwrap();
    assert_eq!(answer.text().await.unwrap(), "the user's own route");
    heads_are_refused_before_their_bodies_are_read(&h).await;
    // The router still serves whole requests there.
    let customer = "254712340099";
    h.gateway.customer_writes(phone(BUSINESS), phone(customer));
    let body = whatsapp_text("wamid.USERSERVER", customer, "hi", Utc::now().timestamp());
    assert_eq!(h.post_whatsapp(&body).await.status(), StatusCode::OK);
    h.assert_one_echo(customer, "hi").await;
}
