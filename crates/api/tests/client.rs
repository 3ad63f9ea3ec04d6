//! The client against a real HTTP server on 127.0.0.1 (wiremock).

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use lipachat_api::{
    ApiError, ApiKey, Client, ContactMessage, ContactPhone, FreeFormMessage, MessageId, Receipt,
    RetryPolicy, TemplateHeader, TemplateMessage, TextMessage,
};
use lipachat_session::Conversation;
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "test-key-7f3a9c1e5b";
const WA_ID: &str = "wamid.HBgMMjU0NzE3NzQ2NTY1FQIAEnRgSRjJGRkMzNkQ0QUVENTIxQ0NBAA==";
const CONTACT_PATH: &str = "/api/v1/whatsapp/contact";
const TEMPLATE_PATH: &str = "/api/v1/whatsapp/template";
const TEXT_PATH: &str = "/api/v1/whatsapp/message/text";

fn key() -> ApiKey {
    ApiKey::new(KEY).unwrap()
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(20),
    }
}

fn client(server: &MockServer) -> Client {
    Client::builder(key())
        .base_url(&server.uri())
        .retry(fast_retry())
        .request_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn conversation() -> Conversation {
    Conversation::parse("254110090747", "254712345678").unwrap()
}

fn id() -> MessageId {
    "ca739107-4b0d-4581-acb1-4c4af70555de".parse().unwrap()
}

fn card() -> ContactMessage {
    ContactMessage::new(
        "Test User",
        vec![ContactPhone::on_whatsapp(
            "254712345678".parse().unwrap(),
            "Cell",
        )],
    )
    .unwrap()
}

fn success(message_id: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "timestamp": "2023-08-06T01:27:56.825898971",
        "data": {
            "messageId": message_id,
            "waId": WA_ID,
            "status": "SENT",
            "statusDesc": "Message sent successfully"
        },
        "status": "success",
        "message": "",
        "errors": null
    }))
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap_or_default()
}

fn body_of(request: &Request) -> Value {
    serde_json::from_slice(&request.body).unwrap()
}

/// The seed's body as one line: each line trimmed, no space after a key's colon (its
/// strings hold no line breaks and no `": "`).
fn compact(seed: &str) -> String {
    seed.lines()
        .map(|line| line.trim().replace("\": ", "\":"))
        .collect()
}

/// Mounts one answer for every request to `path`.
async fn always(server: &MockServer, at: &str, response: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(at))
        .respond_with(response)
        .mount(server)
        .await;
}

#[tokio::test]
async fn contact_send_posts_the_seed_body_with_its_headers() {
    let server = MockServer::start().await;
    let expected = json!({
        "messageId": "ca739107-4b0d-4581-acb1-4c4af70555de",
        "to": "254712345678",
        "from": "254110090747",
        "name": { "formattedName": "Test User" },
        "phones": [ { "phone": "254712345678", "type": "Cell", "waId": "254712345678" } ]
    });
    Mock::given(method("POST"))
        .and(path(CONTACT_PATH))
        .and(header("apiKey", KEY))
        .and(header("content-type", "application/json"))
        .and(header("accept", "application/json"))
        .and(body_json(&expected))
        .respond_with(success("ca739107-4b0d-4581-acb1-4c4af70555de"))
        .expect(1)
        .mount(&server)
        .await;
    let receipt = client(&server)
        .send_contact(conversation(), id(), &card())
        .await
        .unwrap();
    assert_eq!(
        receipt,
        Receipt {
            message_id: id(),
            gateway_message_id: Some("ca739107-4b0d-4581-acb1-4c4af70555de".into()),
            wa_id: Some(WA_ID.into()),
            status: "SENT".into(),
            attempts: 1,
        }
    );
    let seen = requests(&server).await;
    assert_eq!(seen.len(), 1);
    assert_eq!(body_of(&seen[0]), expected);
    // The very bytes of the gateway's example, keys in its order.
    let seed = include_str!("fixtures/seeds/contact-request.json");
    assert_eq!(String::from_utf8_lossy(&seen[0].body), compact(seed));
    // Byte for byte, keys in the seed's order (messageId, to, from, name, phones).
    assert_eq!(
        std::str::from_utf8(&seen[0].body).unwrap(),
        r#"{"messageId":"ca739107-4b0d-4581-acb1-4c4af70555de","to":"254712345678","from":"254110090747","name":{"formattedName":"Test User"},"phones":[{"phone":"254712345678","type":"Cell","waId":"254712345678"}]}"#
    );
    assert_eq!(
        seen[0].headers.get("apikey").map(|v| v.as_bytes()),
        Some(KEY.as_bytes())
    );
}

#[tokio::test]
async fn template_send_posts_the_reference_body() {
    let server = MockServer::start().await;
    let template = TemplateMessage::new("contact_share", "en")
        .unwrap()
        .with_header(TemplateHeader::image("https://cdn.example.com/card.png").unwrap())
        .unwrap()
        .with_body_placeholders(["John", "2000"])
        .unwrap();
    let expected = json!({
        "messageId": "ca739107-4b0d-4581-acb1-4c4af70555de",
        "to": "254712345678",
        "from": "254110090747",
        "template": {
            "name": "contact_share",
            "languageCode": "en",
            "components": {
                "header": { "type": "IMAGE", "mediaUrl": "https://cdn.example.com/card.png" },
                "body": { "placeholders": ["John", "2000"] }
            }
        }
    });
    Mock::given(method("POST"))
        .and(path(TEMPLATE_PATH))
        .and(header("apiKey", KEY))
        .and(header("content-type", "application/json"))
        .and(body_json(&expected))
        .respond_with(success("ca739107-4b0d-4581-acb1-4c4af70555de"))
        .expect(1)
        .mount(&server)
        .await;
    let receipt = client(&server)
        .send_template(conversation(), id(), &template)
        .await
        .unwrap();
    assert_eq!(receipt.attempts, 1);
    assert_eq!(body_of(&requests(&server).await[0]), expected);
}

#[tokio::test]
async fn text_send_and_free_form_dispatch() {
    let server = MockServer::start().await;
    let expected_text = json!({
        "messageId": "ca739107-4b0d-4581-acb1-4c4af70555de",
        "to": "254712345678",
        "from": "254110090747",
        "message": "Here is our support desk."
    });
    Mock::given(method("POST"))
        .and(path(TEXT_PATH))
        .and(header("apiKey", KEY))
        .and(header("content-type", "application/json"))
        .and(body_json(&expected_text))
        .respond_with(success("ca739107-4b0d-4581-acb1-4c4af70555de"))
        .expect(2)
        .mount(&server)
        .await;
    always(&server, CONTACT_PATH, success("x")).await;
    let client = client(&server);
    let text = TextMessage::new("Here is our support desk.").unwrap();
    client.send_text(conversation(), id(), &text).await.unwrap();
    client
        .send_free_form(conversation(), id(), &FreeFormMessage::Text(text))
        .await
        .unwrap();
    let other = MessageId::new();
    client
        .send_free_form(conversation(), other, &FreeFormMessage::Contact(card()))
        .await
        .unwrap();
    let seen = requests(&server).await;
    let paths: Vec<&str> = seen.iter().map(|r| r.url.path()).collect();
    assert_eq!(paths, [TEXT_PATH, TEXT_PATH, CONTACT_PATH]);
    assert_eq!(body_of(&seen[2])["messageId"], other.to_string());
}

#[tokio::test]
async fn the_401_quirk_is_invalid_credentials_and_not_retried() {
    let server = MockServer::start().await;
    always(
        &server,
        CONTACT_PATH,
        ResponseTemplate::new(401).set_body_json(json!({
            "timestamp": "2023-08-06T20:49:48.455464058",
            "data": null,
            "status": "success",
            "message": "Invalid credentials",
            "errors": null
        })),
    )
    .await;
    let err = client(&server)
        .send_contact(conversation(), id(), &card())
        .await
        .unwrap_err();
    assert_eq!(err, ApiError::InvalidCredentials);
    assert!(!err.retry_later_may_help());
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn bad_request_is_typed_and_sent_exactly_once() {
    let server = MockServer::start().await;
    always(
        &server,
        CONTACT_PATH,
        ResponseTemplate::new(400).set_body_json(json!({
            "timestamp": "2023-08-06T17:50:35.701+00:00",
            "status": 400,
            "error": "Bad Request",
            "path": "/api/v1/whatsapp/contact"
        })),
    )
    .await;
    let err = client(&server)
        .send_contact(conversation(), id(), &card())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ApiError::BadRequest {
            error: "Bad Request".into(),
            path: Some("/api/v1/whatsapp/contact".into()),
        }
    );
    assert!(!err.retry_later_may_help());
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn other_client_errors_are_not_retried() {
    for status in [403, 404, 409, 422] {
        let server = MockServer::start().await;
        always(&server, TEXT_PATH, ResponseTemplate::new(status)).await;
        let err = client(&server)
            .send_text(conversation(), id(), &TextMessage::new("hi").unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ApiError::UnexpectedResponse { status: s, .. } if s == status),
            "{status}: {err:?}"
        );
        assert_eq!(requests(&server).await.len(), 1, "{status}");
    }
}

#[tokio::test]
async fn a_200_with_status_error_or_null_data_is_refused() {
    let cases = [
        (
            json!({"timestamp": "x", "data": null, "status": "error", "message": "Request failed.", "errors": null}),
            "Request failed.",
        ),
        (
            json!({"timestamp": "x", "data": null, "status": "success", "message": "Number not on WhatsApp", "errors": null}),
            "Number not on WhatsApp",
        ),
        (
            json!({"data": {"messageId": "m", "status": "FAILED", "statusDesc": "Template not approved"}, "status": "success"}),
            "FAILED: Template not approved",
        ),
    ];
    for (body, message) in cases {
        let server = MockServer::start().await;
        always(
            &server,
            CONTACT_PATH,
            ResponseTemplate::new(200).set_body_json(body.clone()),
        )
        .await;
        let err = client(&server)
            .send_contact(conversation(), id(), &card())
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ApiError::Refused {
                message: message.into()
            },
            "{body}"
        );
        assert_eq!(requests(&server).await.len(), 1);
    }
}

#[tokio::test]
async fn re_engagement_anywhere_is_window_closed_and_not_retried() {
    let cases = [
        ResponseTemplate::new(200).set_body_json(json!({
            "timestamp": "x", "data": null, "status": "error",
            "message": "(#131047) Re-engagement message", "errors": null
        })),
        ResponseTemplate::new(200).set_body_json(json!({
            "data": null, "status": "error", "message": "Request failed.",
            "errors": [{"code": 131047, "title": "Re-engagement message"}]
        })),
        ResponseTemplate::new(400).set_body_json(json!({
            "status": 400, "error": "Message failed: more than 24 hours have passed since the customer last replied",
            "path": CONTACT_PATH
        })),
        ResponseTemplate::new(500).set_body_string("WhatsApp error 131047"),
        ResponseTemplate::new(200).set_body_json(json!({
            "status": "success",
            "data": {"messageId": "m", "status": "FAILED", "statusDesc": "re-engagement required"}
        })),
    ];
    for response in cases {
        let server = MockServer::start().await;
        always(&server, CONTACT_PATH, response).await;
        let err = client(&server)
            .send_contact(conversation(), id(), &card())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ApiError::WindowClosed { .. }),
            "expected WindowClosed, got {err:?}"
        );
        assert!(err.is_window_closed());
        assert!(!err.retry_later_may_help());
        assert_eq!(requests(&server).await.len(), 1);
    }
}

#[tokio::test]
async fn window_closed_after_retries_is_still_recognised() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TEXT_PATH))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    always(
        &server,
        TEXT_PATH,
        ResponseTemplate::new(200).set_body_json(
            json!({"status": "error", "data": null, "message": "(#131047) Re-engagement message"}),
        ),
    )
    .await;
    let err = client(&server)
        .send_text(conversation(), id(), &TextMessage::new("hi").unwrap())
        .await
        .unwrap_err();
    assert!(err.is_window_closed(), "{err:?}");
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn two_500s_then_200_is_one_success_after_three_requests_with_one_message_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CONTACT_PATH))
        .respond_with(ResponseTemplate::new(500).set_body_string("internal error"))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    always(&server, CONTACT_PATH, success("ignored")).await;
    // No id given by the caller: the client's user makes one per logical send.
    let message_id = MessageId::new();
    let receipt = client(&server)
        .send_contact(conversation(), message_id, &card())
        .await
        .unwrap();
    assert_eq!(receipt.attempts, 3);
    assert_eq!(receipt.message_id, message_id);
    let seen = requests(&server).await;
    assert_eq!(seen.len(), 3);
    let ids: Vec<Value> = seen
        .iter()
        .map(|r| body_of(r)["messageId"].clone())
        .collect();
    assert!(
        ids.iter()
            .all(|i| *i == Value::String(message_id.to_string())),
        "{ids:?}"
    );
    assert!(seen.iter().all(|r| r.body == seen[0].body));
    assert_eq!(message_id.as_uuid().get_version_num(), 7);
}

#[tokio::test]
async fn retries_run_out_with_the_count_and_last_cause() {
    let server = MockServer::start().await;
    always(
        &server,
        CONTACT_PATH,
        ResponseTemplate::new(502).set_body_string("bad gateway"),
    )
    .await;
    let err = client(&server)
        .send_contact(conversation(), id(), &card())
        .await
        .unwrap_err();
    match &err {
        ApiError::RetriesExhausted { attempts, last } => {
            assert_eq!(*attempts, 4);
            assert_eq!(
                **last,
                ApiError::Unavailable {
                    status: 502,
                    excerpt: "bad gateway".into()
                }
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(err.retry_later_may_help());
    assert!(err.to_string().contains("4 attempts"), "{err}");
    assert_eq!(requests(&server).await.len(), 4);
}

#[tokio::test]
async fn request_timeout_408_is_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TEXT_PATH))
        .respond_with(ResponseTemplate::new(408))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    always(&server, TEXT_PATH, success("x")).await;
    let receipt = client(&server)
        .send_text(conversation(), id(), &TextMessage::new("hi").unwrap())
        .await
        .unwrap();
    assert_eq!(receipt.attempts, 2);
}

#[tokio::test]
async fn a_429_retry_after_is_honoured() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CONTACT_PATH))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    always(&server, CONTACT_PATH, success("x")).await;
    let client = Client::builder(key())
        .base_url(&server.uri())
        .retry(RetryPolicy {
            max_retries: 2,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_secs(3),
        })
        .build()
        .unwrap();
    let started = Instant::now();
    let receipt = client
        .send_contact(conversation(), id(), &card())
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(receipt.attempts, 2);
    assert!(
        waited >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured: {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "{waited:?}");
}

#[tokio::test]
async fn a_429_retry_after_is_capped_by_max_backoff() {
    let server = MockServer::start().await;
    always(
        &server,
        CONTACT_PATH,
        ResponseTemplate::new(429).insert_header("Retry-After", "3600"),
    )
    .await;
    let started = Instant::now();
    let err = client(&server)
        .send_contact(conversation(), id(), &card())
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    match err {
        ApiError::RetriesExhausted { attempts: 4, last } => assert_eq!(
            *last,
            ApiError::RateLimited {
                retry_after: Some(Duration::from_secs(3600))
            }
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_stalled_server_hits_the_timeout() {
    let server = MockServer::start().await;
    always(
        &server,
        TEXT_PATH,
        success("x").set_delay(Duration::from_secs(10)),
    )
    .await;
    let build = |retry| {
        Client::builder(key())
            .base_url(&server.uri())
            .request_timeout(Duration::from_millis(200))
            .retry(retry)
            .build()
            .unwrap()
    };
    let text = TextMessage::new("hi").unwrap();

    let started = Instant::now();
    let err = build(RetryPolicy::none())
        .send_text(conversation(), id(), &text)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ApiError::Timeout {
            after: Duration::from_millis(200)
        }
    );
    assert!(err.retry_later_may_help());
    assert!(started.elapsed() < Duration::from_secs(2));

    let started = Instant::now();
    let err = build(RetryPolicy {
        max_retries: 1,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(1),
    })
    .send_text(conversation(), id(), &text)
    .await
    .unwrap_err();
    assert_eq!(
        err,
        ApiError::RetriesExhausted {
            attempts: 2,
            last: Box::new(ApiError::Timeout {
                after: Duration::from_millis(200)
            })
        }
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_timed_out_attempt_is_retried_with_the_same_message_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TEXT_PATH))
        .respond_with(success("x").set_delay(Duration::from_secs(10)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    always(&server, TEXT_PATH, success("x")).await;
    let client = Client::builder(key())
        .base_url(&server.uri())
        .request_timeout(Duration::from_millis(300))
        .retry(fast_retry())
        .build()
        .unwrap();
    let receipt = client
        .send_text(conversation(), id(), &TextMessage::new("hi").unwrap())
        .await
        .unwrap();
    assert_eq!(receipt.attempts, 2);
    let seen = requests(&server).await;
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body, seen[1].body);
}

#[tokio::test]
async fn connection_refused_is_connect_and_retried() {
    // A port nothing listens on: bind, note the port, close.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let base = format!("http://127.0.0.1:{port}");
    let single = Client::builder(key())
        .base_url(&base)
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let err = single
        .send_contact(conversation(), id(), &card())
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Connect { .. }), "{err:?}");
    assert!(err.retry_later_may_help());
    let retried = Client::builder(key())
        .base_url(&base)
        .retry(RetryPolicy {
            max_retries: 2,
            ..fast_retry()
        })
        .build()
        .unwrap();
    let err = retried
        .send_contact(conversation(), id(), &card())
        .await
        .unwrap_err();
    match &err {
        ApiError::RetriesExhausted { attempts: 3, last } => {
            assert!(matches!(**last, ApiError::Connect { .. }), "{last:?}")
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{err:?}{err}").contains(KEY));
}

#[test]
fn plain_http_to_a_remote_host_is_refused_before_any_connection() {
    // Building fails, so no client exists that could connect; the decision is made from
    // the URL alone (example.com is never looked up: this test passes offline).
    for base in [
        "http://example.com",
        "http://example.com:80/api/v1",
        "http://192.0.2.1",
        "http://localhost.example.com",
    ] {
        let err = Client::builder(key()).base_url(base).build().unwrap_err();
        assert!(
            matches!(err, lipachat_api::BuildError::InsecureBaseUrl { .. }),
            "{base}: {err:?}"
        );
    }
}

#[tokio::test]
async fn base_url_forms_are_normalised() {
    let server = MockServer::start().await;
    always(&server, TEXT_PATH, success("x")).await;
    let text = TextMessage::new("hi").unwrap();
    for suffix in ["", "/", "/api/v1", "/api/v1/", "/api/v1/whatsapp"] {
        let client = Client::builder(key())
            .base_url(&format!("{}{suffix}", server.uri()))
            .build()
            .unwrap();
        assert_eq!(client.base_url().as_str(), server.uri());
        client.send_text(conversation(), id(), &text).await.unwrap();
    }
    let seen = requests(&server).await;
    assert_eq!(seen.len(), 5);
    assert!(seen.iter().all(|r| r.url.path() == TEXT_PATH));
    // `localhost` is loopback too.
    let port = server.address().port();
    let client = Client::builder(key())
        .base_url(&format!("http://localhost:{port}/api/v1"))
        .build()
        .unwrap();
    assert_eq!(
        client.base_url().as_str(),
        format!("http://localhost:{port}")
    );
}

#[tokio::test]
async fn non_json_and_oversized_bodies_are_unexpected_responses() {
    let server = MockServer::start().await;
    always(
        &server,
        TEXT_PATH,
        ResponseTemplate::new(200).set_body_string("<html><body>Welcome to nginx!</body></html>"),
    )
    .await;
    let err = client(&server)
        .send_text(conversation(), id(), &TextMessage::new("hi").unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ApiError::UnexpectedResponse {
            status: 200,
            excerpt: "<html><body>Welcome to nginx!</body></html>".into()
        }
    );

    // A success envelope padded past the limit: cut off, not buffered, not trusted.
    let server = MockServer::start().await;
    let huge = json!({
        "data": {"messageId": "m", "waId": WA_ID, "status": "SENT", "statusDesc": "x".repeat(2_000_000)},
        "status": "success"
    });
    always(
        &server,
        TEXT_PATH,
        ResponseTemplate::new(200).set_body_json(huge),
    )
    .await;
    let limited = Client::builder(key())
        .base_url(&server.uri())
        .max_response_bytes(4096)
        .build()
        .unwrap();
    let err = limited
        .send_text(conversation(), id(), &TextMessage::new("hi").unwrap())
        .await
        .unwrap_err();
    match &err {
        ApiError::UnexpectedResponse { status, excerpt } => {
            assert_eq!(*status, 200);
            assert!(excerpt.starts_with("{\"data\""), "{excerpt}");
            assert!(excerpt.len() < 1000, "excerpt is {} bytes", excerpt.len());
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.retry_later_may_help());

    // The same with the default limit (64 KiB) and garbage bytes.
    let server = MockServer::start().await;
    always(
        &server,
        TEXT_PATH,
        ResponseTemplate::new(200).set_body_bytes(vec![0xff; 1_000_000]),
    )
    .await;
    let err = client(&server)
        .send_text(conversation(), id(), &TextMessage::new("hi").unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ApiError::UnexpectedResponse { status: 200, excerpt } if excerpt.contains("cut off")),
        "{err:?}"
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = MockServer::start().await;
    always(
        &server,
        TEXT_PATH,
        ResponseTemplate::new(307).insert_header("Location", "http://127.0.0.1:9/elsewhere"),
    )
    .await;
    let err = client(&server)
        .send_text(conversation(), id(), &TextMessage::new("hi").unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::UnexpectedResponse { status: 307, .. }),
        "{err:?}"
    );
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn the_key_never_appears_in_errors_or_the_client() {
    let server = MockServer::start().await;
    // A hostile or buggy gateway echoing the key back in every shape.
    let echo = format!("your key {KEY} is wrong");
    let responses = [
        ResponseTemplate::new(401).set_body_string(echo.clone()),
        ResponseTemplate::new(400).set_body_json(json!({"error": echo, "path": format!("/{KEY}")})),
        ResponseTemplate::new(200)
            .set_body_json(json!({"status": "error", "data": null, "message": echo})),
        ResponseTemplate::new(200).set_body_json(
            json!({"status": "success", "data": {"status": "FAILED", "statusDesc": echo}}),
        ),
        ResponseTemplate::new(503).set_body_string(echo.clone()),
        ResponseTemplate::new(200).set_body_string(echo.clone()),
        ResponseTemplate::new(418).set_body_string(echo.clone()),
        ResponseTemplate::new(200)
            .set_body_json(json!({"status": "error", "message": format!("131047 for {KEY}")})),
    ];
    let client = client(&server);
    let mut seen = Vec::new();
    for response in responses {
        server.reset().await;
        always(&server, TEXT_PATH, response).await;
        let err = client
            .send_text(conversation(), id(), &TextMessage::new("hi").unwrap())
            .await
            .unwrap_err();
        seen.push(err);
    }
    assert_eq!(seen.len(), 8);
    for err in &seen {
        let shown = format!("{err:?} | {err} | {err:#?}");
        assert!(!shown.contains(KEY), "key leaked: {shown}");
    }
    let shown = format!("{client:?} {:?}", key());
    assert!(!shown.contains(KEY), "{shown}");
    assert!(shown.contains("ApiKey(***)"));
}

#[tokio::test]
async fn no_attempt_starts_after_the_send_deadline() {
    let server = MockServer::start().await;
    always(&server, CONTACT_PATH, ResponseTemplate::new(500)).await;
    let slow_backoff = Client::builder(key())
        .base_url(&server.uri())
        .retry(RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(400),
            max_backoff: Duration::from_secs(2),
        })
        .build()
        .unwrap();
    let message = FreeFormMessage::Contact(card());
    // A deadline that has passed: no request at all.
    let err = slow_backoff
        .send_free_form_before(conversation(), id(), &message, Instant::now())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::DeadlineReached {
                attempts: 0,
                last: None
            }
        ),
        "{err:?}"
    );
    assert!(requests(&server).await.is_empty());
    // 150 ms left: one attempt fails, the retry's back-off would pass the deadline.
    let started = Instant::now();
    let err = slow_backoff
        .send_free_form_before(
            conversation(),
            id(),
            &message,
            started + Duration::from_millis(150),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::DeadlineReached {
                attempts: 1,
                last: Some(_)
            }
        ),
        "{err:?}"
    );
    assert!(err.retry_later_may_help());
    assert_eq!(requests(&server).await.len(), 1);
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "did not wait past the deadline"
    );
}

#[tokio::test]
async fn an_attempt_is_cut_short_at_the_send_deadline() {
    let server = MockServer::start().await;
    always(
        &server,
        CONTACT_PATH,
        success("x").set_delay(Duration::from_secs(3)),
    )
    .await;
    let message = FreeFormMessage::Contact(card());
    let started = Instant::now();
    let err = client(&server)
        .send_free_form_before(
            conversation(),
            id(),
            &message,
            started + Duration::from_millis(300),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::DeadlineReached { attempts: 1, .. }),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the attempt's timeout was cut to the deadline"
    );
}
