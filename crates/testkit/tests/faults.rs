//! Fault injection: failures and stalls for retry tests, and shutdown.

mod fixture;

use std::time::{Duration, Instant};

use fixture::{assert_success, business, contact, customer, send, url};
use lipachat_testkit::{InjectedFailure, MessageKind, RequestOutcome, StandInGateway};
use serde_json::Value;

async fn open_gateway() -> StandInGateway {
    let gateway = StandInGateway::start().await.expect("the stand-in starts");
    gateway.customer_writes(business(), customer());
    gateway
}

fn assert_request_failed(answer: &fixture::Answer, status: u16) {
    assert_eq!(answer.status, status);
    assert_eq!(answer.body["status"], "error");
    assert_eq!(answer.body["message"], "Request failed.");
    assert_eq!(answer.body["data"], Value::Null);
}

#[tokio::test]
async fn failures_answer_the_next_requests_then_a_retry_delivers_once() {
    let gateway = open_gateway().await;
    gateway.fail_next(2, 500);
    let body = contact("retry-1");
    assert_request_failed(&send(&gateway, MessageKind::Contact, &body).await, 500);
    assert_request_failed(&send(&gateway, MessageKind::Contact, &body).await, 500);
    assert!(gateway.delivered().is_empty());
    let wa_id = assert_success(
        &send(&gateway, MessageKind::Contact, &body).await,
        "retry-1",
    );
    assert_eq!(gateway.delivered().len(), 1);
    assert_eq!(gateway.delivered()[0].wa_id, wa_id);

    let requests = gateway.requests();
    let seen: Vec<(u16, RequestOutcome, Option<&str>)> = requests
        .iter()
        .map(|r| (r.status, r.outcome, r.message_id()))
        .collect();
    assert_eq!(
        seen,
        [
            (500, RequestOutcome::InjectedFailure, Some("retry-1")),
            (500, RequestOutcome::InjectedFailure, Some("retry-1")),
            (200, RequestOutcome::Delivered, Some("retry-1")),
        ]
    );
}

#[tokio::test]
async fn an_injected_failure_comes_before_the_key_check() {
    let gateway = open_gateway().await;
    gateway.fail_next(1, 503);
    let response = reqwest::Client::new()
        .post(url(&gateway, MessageKind::Contact))
        .json(&contact("no-key"))
        .send()
        .await
        .expect("an answer");
    assert_request_failed(&fixture::answer(response).await, 503);
}

#[tokio::test]
async fn a_429_carries_retry_after_in_whole_seconds() {
    let gateway = open_gateway().await;
    gateway.fail_next_with(
        1,
        InjectedFailure::status(429).retry_after(Duration::from_millis(1500)),
    );
    gateway.fail_next(1, 500);
    let limited = send(&gateway, MessageKind::Contact, &contact("rl")).await;
    assert_request_failed(&limited, 429);
    assert_eq!(
        limited
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("2")
    );
    let failed = send(&gateway, MessageKind::Contact, &contact("rl")).await;
    assert_request_failed(&failed, 500);
    assert!(failed.headers.get("retry-after").is_none());
    assert_success(
        &send(&gateway, MessageKind::Contact, &contact("rl")).await,
        "rl",
    );
}

#[tokio::test]
async fn a_failure_with_http_200_is_still_a_failure() {
    let gateway = open_gateway().await;
    gateway.fail_next(1, 200);
    let answer = send(&gateway, MessageKind::Contact, &contact("disguised")).await;
    assert_request_failed(&answer, 200);
    assert_eq!(gateway.delivered_count(), 0);
}

#[tokio::test]
async fn a_stall_delays_the_answer_only_for_the_next_requests() {
    let gateway = open_gateway().await;
    let delay = Duration::from_millis(300);
    gateway.stall_next(1, delay);
    let started = Instant::now();
    assert_success(
        &send(&gateway, MessageKind::Contact, &contact("s-1")).await,
        "s-1",
    );
    assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
    let started = Instant::now();
    assert_success(
        &send(&gateway, MessageKind::Contact, &contact("s-2")).await,
        "s-2",
    );
    assert!(started.elapsed() < delay, "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_client_timeout_during_a_stall_leaves_the_message_delivered_and_a_retry_deduplicated() {
    let gateway = open_gateway().await;
    gateway.stall_next(1, Duration::from_secs(2));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .expect("a client");
    let body = contact("lost-answer");
    let first = client
        .post(url(&gateway, MessageKind::Contact))
        .header("apiKey", gateway.api_key())
        .json(&body)
        .send()
        .await;
    assert!(first.expect_err("the answer is held back").is_timeout());
    assert_eq!(gateway.delivered_count(), 1);

    let retry = send(&gateway, MessageKind::Contact, &body).await;
    let wa_id = assert_success(&retry, "lost-answer");
    assert_eq!(gateway.delivered()[0].wa_id, wa_id);
    assert_eq!(gateway.delivered_count(), 1);
    assert_eq!(gateway.requests()[1].outcome, RequestOutcome::Duplicate);
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let gateway = open_gateway().await;
    let base_url = gateway.base_url();
    assert_success(
        &send(&gateway, MessageKind::Contact, &contact("before")).await,
        "before",
    );
    gateway.shutdown().await;
    let after = reqwest::Client::new()
        .post(format!("{base_url}{}", MessageKind::Contact.path()))
        .json(&contact("after"))
        .send()
        .await;
    assert!(after.expect_err("nothing listens").is_connect());
}

#[tokio::test]
async fn dropping_the_gateway_stops_serving() {
    let gateway = open_gateway().await;
    let base_url = gateway.base_url();
    drop(gateway);
    // The server stops on its own task; give it a moment.
    let mut refused = false;
    for _ in 0..50 {
        let attempt = reqwest::Client::new()
            .post(format!("{base_url}{}", MessageKind::Contact.path()))
            .send()
            .await;
        if attempt.is_err_and(|err| err.is_connect()) {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the port still answers after drop");
}
