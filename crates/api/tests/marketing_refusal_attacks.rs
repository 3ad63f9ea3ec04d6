//! Hostile review of issue 16, second round: 131049 / 131050 recognition in the gateway's
//! answers. Recognised in `errors[].code` (number or string), in WhatsApp's wording, at
//! any HTTP status, never retried; and no false positive for ids or names that merely
//! contain the digits, or for a success. Through the real client against a mock gateway
//! on loopback.
//!
//! A test marked `#[ignore = "hole: ..."]` fails on the code it was written against: it
//! documents a hole, and passes once the hole is fixed.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::time::Duration;

use lipachat_api::{
    ApiError, ApiKey, Client, MarketingRefusal, MessageId, RetryPolicy, TemplateMessage,
    marketing_refusal_in_text,
};
use lipachat_session::Conversation;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn conversation() -> Conversation {
    Conversation::parse("254110090747", "254712345678").unwrap()
}

fn id() -> MessageId {
    "ca739107-4b0d-4581-acb1-4c4af70555de".parse().unwrap()
}

/// The answer to one template send with `status` and `body`: the error (if any) and how
/// many requests reached the gateway (retries allowed: 3).
async fn answer(status: u16, body: Value) -> (Result<(), ApiError>, usize) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .mount(&server)
        .await;
    let client = Client::builder(ApiKey::new("test-key-7f3a9c1e5b").unwrap())
        .base_url(&server.uri())
        .retry(RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
        })
        .request_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let template = TemplateMessage::new("spring_promo", "en").unwrap();
    let result = client
        .send_template(conversation(), id(), &template)
        .await
        .map(|_| ());
    let requests = server.received_requests().await.unwrap().len();
    (result, requests)
}

#[tokio::test]
async fn codes_in_every_shape_at_every_status_are_recognised_and_never_retried() {
    use MarketingRefusal::{Limit, OptedOut};
    for status in [200, 400, 403, 409, 422, 429, 500, 502, 503] {
        for (body, expected) in [
            (
                json!({"status": "error", "message": "Request failed.", "errors": [{"code": 131050}]}),
                OptedOut,
            ),
            (
                json!({"status": "error", "errors": [{"code": " 131049 "}]}),
                Limit,
            ),
            (
                json!({"status": "error", "error": {"error_data": {"details": "This message was not delivered to maintain healthy ecosystem engagement."}}}),
                Limit,
            ),
            (
                json!({"status": "error", "message": "The user has chosen to stop receiving marketing messages from you."}),
                OptedOut,
            ),
            (json!({"status": "error", "errorCode": "131050"}), OptedOut),
        ] {
            let (result, requests) = answer(status, body.clone()).await;
            let error = result.unwrap_err();
            assert_eq!(
                error.marketing_refusal(),
                Some(expected),
                "{status} {body}: {error:?}"
            );
            assert_eq!(requests, 1, "{status} {body}: retried");
        }
    }
}

#[tokio::test]
async fn ids_and_successes_holding_the_digits_are_no_refusal() {
    for (status, body) in [
        (
            200,
            json!({"status": "success", "data": {"status": "SENT", "messageId": "131050", "waId": "wamid.131049"}}),
        ),
        (
            200,
            json!({"status": "success", "message": "sent 131050", "data": {"status": "SENT", "messageId": id().to_string()}}),
        ),
        (
            400,
            json!({"status": "error", "message": "bad request", "data": {"messageId": "131050", "wa_id": "131049", "id": 131050}}),
        ),
        (
            400,
            json!({"status": "error", "message": "invalid recipient 2547131050123"}),
        ),
    ] {
        let (result, _) = answer(status, body.clone()).await;
        if let Err(error) = result {
            assert_eq!(
                error.marketing_refusal(),
                None,
                "{status} {body}: {error:?}"
            );
        }
    }
}

/// A template or reference whose *name* carries the digits after an underscore or a
/// hyphen ("promo_131050", "ref-131049") is an id, not the code: `has_token` treats only
/// ASCII letters and digits as part of a word, so `_` and `-` make the digits "stand
/// alone". A 404 "template promo_131050 not found" then records a marketing opt-out.
#[tokio::test]
async fn a_name_carrying_the_digits_after_an_underscore_is_no_refusal() {
    let (result, _) = answer(
        404,
        json!({"status": "error", "message": "Template promo_131050 does not exist in en"}),
    )
    .await;
    let error = result.unwrap_err();
    assert_eq!(error.marketing_refusal(), None, "{error:?}");
    assert_eq!(
        marketing_refusal_in_text("request ref-131049-a7 failed"),
        None
    );
}

/// A JSON code written as a float (131050.0) is the code: `as_u64` reads no float.
#[tokio::test]
async fn a_code_written_as_a_float_is_recognised() {
    let (result, requests) = answer(
        400,
        json!({"status": "error", "errors": [{"code": 131050.0}]}),
    )
    .await;
    let error = result.unwrap_err();
    assert_eq!(
        error.marketing_refusal(),
        Some(MarketingRefusal::OptedOut),
        "{error:?}"
    );
    assert_eq!(requests, 1);
}
