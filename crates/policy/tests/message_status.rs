//! LipaChat's `MESSAGE_STATUS` status callback names our `messageId` and no recipient: a
//! 131047 in its `statusDesc` is tied back by the send outcome stored under that id, and
//! closes the window as a WhatsApp failed status does. Driven from the fixture
//! (crates/api/tests/fixtures/webhooks/lipachat-message-status-failed-131047.json)
//! through parse → `Messenger::on_webhook_event`, after a real send to the stand-in
//! gateway on loopback, on sled and on Redis.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lipachat_api::{
    ApiKey, Client, ContactMessage, ContactPhone, RetryPolicy, TemplateMessage, WebhookEvent,
    WebhookParser,
};
use lipachat_policy::{
    Messenger, OnClosed, PolicyConfig, Reconciliation, SendOutcome, SendRequest, WebhookOutcome,
};
use lipachat_redis::test_server::RedisServer;
use lipachat_session::{
    Clock, ClosedCause, Conversation, ManualClock, PhoneNumber, Sessions, SledStore, Store,
    WindowState,
};
use lipachat_testkit::StandInGateway;
use serde_json::Value;

fn fixture() -> Value {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "api",
        "tests",
        "fixtures",
        "webhooks",
        "lipachat-message-status-failed-131047.json",
    ]
    .iter()
    .collect();
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn card() -> ContactMessage {
    ContactMessage::new(
        "Support",
        vec![ContactPhone::new("254700000001".parse().unwrap(), "Work")],
    )
    .unwrap()
}

fn business() -> PhoneNumber {
    "254110090747".parse().unwrap()
}

/// Sends a card to `customer` while the window is open, then receives the fixture's
/// MESSAGE_STATUS naming that send's `messageId` as failed with 131047, parsed with or
/// without the business number configured: the closure is recorded in that
/// conversation and the card is handled again (queued behind an invitation).
async fn failed_status_ties_back<S: Store + Clone>(
    store: S,
    customer: PhoneNumber,
    parser_knows_business: bool,
) {
    let clock = ManualClock::at(at("2026-11-30T10:00:00Z"));
    let gateway = StandInGateway::builder()
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let client = Client::builder(ApiKey::new(gateway.api_key()).unwrap())
        .base_url(&gateway.base_url())
        .retry(RetryPolicy {
            max_retries: 2,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        })
        .build()
        .unwrap();
    let invite = TemplateMessage::new("contact_share", "en").unwrap();
    let messenger = Messenger::new(
        Sessions::new(store).with_clock(clock.clone()),
        client,
        PolicyConfig::default().on_closed(OnClosed::Queue(invite)),
    );
    let conversation = Conversation::new(business(), customer);
    gateway.customer_writes(business(), customer);
    messenger
        .on_inbound(conversation, clock.now())
        .await
        .unwrap();
    let sent = messenger
        .send(SendRequest::contact(conversation, card()))
        .await
        .unwrap();
    let SendOutcome::Sent { message_id, .. } = sent else {
        panic!("sent while the window is open: {sent:?}")
    };
    assert_eq!(gateway.delivered_to(customer).len(), 1);

    // The gateway's report, a minute later: our messageId, no recipient, 131047 in text.
    clock.advance(chrono::TimeDelta::minutes(1));
    let mut body = fixture();
    body["messageStatus"]["messageId"] = message_id.to_string().into();
    let parser = if parser_knows_business {
        WebhookParser::default().with_business_number(business())
    } else {
        WebhookParser::default()
    };
    let events = parser
        .parse(body.to_string().as_bytes(), clock.now())
        .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        matches!(
            &events[0],
            WebhookEvent::WindowClosed { conversation: None, message_id: Some(id), .. }
                if *id == message_id
        ),
        "the report names no conversation, only our messageId: {:?}",
        events[0]
    );
    let outcome = messenger.on_webhook_event(&events[0]).await.unwrap();
    let WebhookOutcome::WindowClosed(Reconciliation::Handled { outcome }) = outcome else {
        panic!("the report ties back to the send and reconciles it: {outcome:?}")
    };
    assert!(
        matches!(*outcome, SendOutcome::Queued { .. }),
        "the card waits for the reply again: {outcome:?}"
    );
    assert!(matches!(
        messenger.sessions().state(conversation).await.unwrap(),
        WindowState::Closed {
            cause: ClosedCause::Gateway,
            ..
        }
    ));
    assert_eq!(
        messenger
            .sessions()
            .store()
            .queued(conversation)
            .await
            .unwrap()
            .len(),
        1
    );

    // A report naming a messageId no send here stored is still not tied to anything.
    let mut unknown = fixture();
    unknown["messageStatus"]["messageId"] = uuid::Uuid::new_v4().to_string().into();
    let events = parser
        .parse(unknown.to_string().as_bytes(), clock.now())
        .unwrap();
    let outcome = messenger.on_webhook_event(&events[0]).await.unwrap();
    assert!(matches!(outcome, WebhookOutcome::Ignored(_)), "{outcome:?}");
}

#[tokio::test]
async fn sled_a_lipachat_131047_status_closes_the_window_of_the_send_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    failed_status_ties_back(store.clone(), "254712345678".parse().unwrap(), false).await;
    failed_status_ties_back(store, "254712345679".parse().unwrap(), true).await;
}

#[tokio::test]
async fn redis_a_lipachat_131047_status_closes_the_window_of_the_send_it_names() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = lipachat_redis::RedisConfig::new(&server.url())
        .unwrap()
        .with_key_prefix("status")
        .unwrap()
        .connect()
        .await
        .unwrap();
    failed_status_ties_back(store.clone(), "254712345678".parse().unwrap(), false).await;
    failed_status_ties_back(store, "254712345679".parse().unwrap(), true).await;
}
