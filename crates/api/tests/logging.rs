//! What the client logs: each attempt with its messageId, endpoint, attempt number and
//! HTTP status, and never the key or the body.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use lipachat_api::{ApiKey, Client, ContactMessage, ContactPhone, MessageId, RetryPolicy};
use lipachat_session::Conversation;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "log-test-key-0c9d8e7f";

#[tokio::test(flavor = "current_thread")]
async fn attempts_are_logged_without_key_or_body() {
    let (captured, _guard) = lipachat_testkit::capture_log();

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/whatsapp/contact"))
        .respond_with(ResponseTemplate::new(500).set_body_string(format!("echo {KEY}")))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v1/whatsapp/contact"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": {"messageId": "m", "waId": "wamid.X", "status": "SENT", "statusDesc": "ok"},
            "status": "success", "message": "", "errors": null
        })))
        .mount(&server)
        .await;
    let client = Client::builder(ApiKey::new(KEY).unwrap())
        .base_url(&server.uri())
        .retry(RetryPolicy {
            max_retries: 2,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
        })
        .build()
        .unwrap();
    let id = MessageId::new();
    let card = ContactMessage::new(
        "Distinctive Card Name",
        vec![ContactPhone::new("254712345678".parse().unwrap(), "Cell")],
    )
    .unwrap();
    let receipt = client
        .send_contact(
            Conversation::parse("254110090747", "254712345678").unwrap(),
            id,
            &card,
        )
        .await
        .unwrap();
    assert_eq!(receipt.attempts, 2);

    let logs = captured.text();
    assert!(logs.contains(&id.to_string()), "no messageId in:\n{logs}");
    assert!(logs.contains("endpoint=\"contact\""), "{logs}");
    assert!(
        logs.contains("attempt=1") && logs.contains("attempt=2"),
        "{logs}"
    );
    assert!(logs.contains("http_status=500"), "{logs}");
    assert!(logs.contains("http_status=200"), "{logs}");
    assert!(!logs.contains(KEY), "the key was logged:\n{logs}");
    assert!(
        !logs.contains("Distinctive Card Name"),
        "the body was logged:\n{logs}"
    );
}
