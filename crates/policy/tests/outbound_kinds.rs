//! Every free-form kind through the guarded send path, against the stand-in gateway
//! (which enforces the limits and the window itself): sent while the window is open,
//! rejected without a request when it is not, queued behind one invitation and delivered
//! on the customer's reply from a sled store on disk and from a throwaway Redis, queued
//! again when the gateway refuses one as outside the window; and messages queued by the
//! previous release (contact cards and texts, in its stored form) still delivered.
//!
//! Without `redis-server` (and `REQUIRE_REDIS` unset) the Redis halves print a skip
//! notice and pass.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_api::{
    ButtonsMessage, ContactMessage, ContactPhone, FlowMessage, FreeFormMessage, ListMessage,
    ListRow, ListSection, LocationRequestMessage, MediaKind, MediaMessage, MessageId, ReplyButton,
    TemplateMessage, TextMessage,
};
use lipachat_policy::{Messenger, OnClosed, PolicyConfig, SendOutcome, SendRequest};
use lipachat_redis::RedisStore;
use lipachat_redis::test_server::RedisServer;
use lipachat_session::{
    Clock, Conversation, ManualClock, OutboxStore, QueuedMessage, RefusalReason, Sessions,
    SledStore, Store, WindowStore,
};
use lipachat_testkit::{MessageKind, RequestOutcome, StandInGateway};
use serde_json::json;

fn start_time() -> DateTime<Utc> {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

fn chat() -> Conversation {
    Conversation::parse("254110090747", "254712345678").unwrap()
}

/// One message of every kind, with the stand-in's name for its endpoint.
fn every_kind() -> Vec<(FreeFormMessage, MessageKind)> {
    vec![
        (
            ContactMessage::new(
                "Support",
                vec![ContactPhone::new("254700000001".parse().unwrap(), "Work")],
            )
            .unwrap()
            .into(),
            MessageKind::Contact,
        ),
        (
            TextMessage::new("Your order shipped").unwrap().into(),
            MessageKind::Text,
        ),
        (
            MediaMessage::new(MediaKind::Document, "https://example.com/invoice.pdf")
                .unwrap()
                .with_caption("Invoice")
                .unwrap()
                .with_filename("invoice.pdf")
                .unwrap()
                .into(),
            MessageKind::Media,
        ),
        (
            ButtonsMessage::new(
                "Did this help?",
                vec![ReplyButton::new("yes", "Yes"), ReplyButton::new("no", "No")],
            )
            .unwrap()
            .into(),
            MessageKind::Buttons,
        ),
        (
            ListMessage::new(
                "Branches",
                "Where do you pick up?",
                "Choose",
                vec![ListSection::new(
                    "Nairobi",
                    vec![ListRow::new("cbd", "CBD").with_description("Kenyatta Ave")],
                )],
            )
            .unwrap()
            .into(),
            MessageKind::List,
        ),
        (
            LocationRequestMessage::new("Where should we deliver?")
                .unwrap()
                .into(),
            MessageKind::LocationRequest,
        ),
        (
            FlowMessage::new("Sign up", "1234567890", "Start", "WELCOME")
                .unwrap()
                .with_data(json!({"plan": "basic"}))
                .unwrap()
                .into(),
            MessageKind::Flow,
        ),
    ]
}

struct Setup<S> {
    gateway: StandInGateway,
    clock: ManualClock,
    messenger: Messenger<S>,
}

async fn setup<S: Store>(store: S, on_closed: OnClosed) -> Setup<S> {
    let clock = ManualClock::at(start_time());
    let gateway = StandInGateway::builder()
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let sessions = Sessions::new(store).with_clock(clock.clone());
    let config = PolicyConfig::default().on_closed(on_closed);
    let messenger = Messenger::new(sessions, common::quick_client(&gateway), config);
    Setup {
        gateway,
        clock,
        messenger,
    }
}

impl<S: Store> Setup<S> {
    async fn customer_writes(&self) -> lipachat_policy::InboundReport {
        let chat = chat();
        self.gateway
            .customer_writes(chat.business, chat.phone().unwrap());
        self.messenger
            .on_inbound(chat, self.clock.now())
            .await
            .unwrap()
    }

    /// The bodies the gateway delivered for these kinds, in order, and their kinds.
    fn delivered_free_form(&self) -> Vec<(MessageKind, serde_json::Value)> {
        self.gateway
            .delivered()
            .into_iter()
            .filter(|m| m.kind.is_free_form())
            .map(|m| (m.kind, m.body))
            .collect()
    }
}

/// The exact body the client sends for `message` under `id`.
fn expected_body(message: &FreeFormMessage, id: &str) -> serde_json::Value {
    lipachat_api::free_form_body(chat(), id.parse().unwrap(), message)
        .unwrap()
        .to_value()
}

fn invite() -> TemplateMessage {
    TemplateMessage::new("contact_share", "en").unwrap()
}

#[tokio::test]
async fn every_kind_goes_while_the_window_is_open_and_none_when_it_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(
        SledStore::open(dir.path().join("db")).unwrap(),
        OnClosed::Reject,
    )
    .await;
    // Never messaged: every kind is rejected and nothing reaches the gateway.
    for (message, _) in every_kind() {
        let outcome = s
            .messenger
            .send(SendRequest::new(chat(), message))
            .await
            .unwrap();
        assert!(
            matches!(
                outcome,
                SendOutcome::Rejected {
                    reason: RefusalReason::NeverMessaged,
                    refused_by_gateway: false,
                    ..
                }
            ),
            "{outcome:?}"
        );
    }
    assert_eq!(s.gateway.request_count(), 0);

    s.customer_writes().await;
    for (message, kind) in every_kind() {
        let outcome = s
            .messenger
            .send(SendRequest::new(chat(), message.clone()))
            .await
            .unwrap();
        let SendOutcome::Sent { message_id, .. } = outcome else {
            panic!("{outcome:?}");
        };
        let delivered = s.gateway.delivered().pop().unwrap();
        assert_eq!(delivered.kind, kind);
        assert_eq!(
            delivered.body,
            expected_body(&message, &message_id.to_string())
        );
    }
    assert_eq!(s.delivered_free_form().len(), every_kind().len());

    // Within the margin of the window's end: refused locally, for every kind.
    s.clock
        .advance(TimeDelta::hours(24) - TimeDelta::seconds(30));
    for (message, _) in every_kind() {
        let outcome = s
            .messenger
            .send(SendRequest::new(chat(), message))
            .await
            .unwrap();
        assert_eq!(outcome.name(), "rejected");
    }
    assert_eq!(s.gateway.request_count(), every_kind().len());
}

/// Queues one of every kind behind one invitation, then delivers all of them, in order,
/// with the very bodies (and queued `messageId`s) they were queued with, when the
/// customer replies.
async fn queued_kinds_are_delivered_on_the_reply<S: Store>(store: S) {
    let s = setup(store, OnClosed::Queue(invite())).await;
    let mut queued = Vec::new();
    for (message, _) in every_kind() {
        let outcome = s
            .messenger
            .send(SendRequest::new(chat(), message.clone()))
            .await
            .unwrap();
        let SendOutcome::Queued { message_id, .. } = outcome else {
            panic!("{outcome:?}");
        };
        queued.push((message_id, message));
    }
    let templates = s
        .gateway
        .delivered()
        .iter()
        .filter(|m| m.kind == MessageKind::Template)
        .count();
    assert_eq!(templates, 1, "one invitation for the closed window");
    assert_eq!(
        s.messenger
            .sessions()
            .store()
            .queued(chat())
            .await
            .unwrap()
            .len(),
        every_kind().len()
    );

    let report = s.customer_writes().await;
    assert_eq!(report.delivery.delivered.len(), every_kind().len());
    assert!(
        report.delivery.failed.is_empty(),
        "{:?}",
        report.delivery.failed
    );
    let delivered = s.delivered_free_form();
    let kinds: Vec<MessageKind> = delivered.iter().map(|(kind, _)| *kind).collect();
    let expected: Vec<MessageKind> = every_kind().into_iter().map(|(_, kind)| kind).collect();
    assert_eq!(kinds, expected, "in the order they were queued");
    for ((_, body), (message_id, message)) in delivered.iter().zip(&queued) {
        assert_eq!(body, &expected_body(message, &message_id.to_string()));
    }
    assert!(
        s.messenger
            .sessions()
            .store()
            .queued(chat())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn queued_kinds_survive_the_sled_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    // Queued in one process's store, delivered from the same directory reopened.
    {
        let s = setup(SledStore::open(&path).unwrap(), OnClosed::Queue(invite())).await;
        for (message, _) in every_kind() {
            s.messenger
                .send(SendRequest::new(chat(), message))
                .await
                .unwrap();
        }
        s.messenger.sessions().store().flush().await.unwrap();
    }
    let store = SledStore::open(&path).unwrap();
    let payloads: Vec<String> = store
        .queued(chat())
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.payload)
        .collect();
    assert_eq!(payloads.len(), every_kind().len());
    for ((_, kind), payload) in every_kind().iter().zip(&payloads) {
        let stored: serde_json::Value = serde_json::from_str(payload).unwrap();
        assert_eq!(stored["message"]["kind"], kind.name(), "{payload}");
    }
    drop(store);
    let dir2 = tempfile::tempdir().unwrap();
    queued_kinds_are_delivered_on_the_reply(SledStore::open(dir2.path().join("db")).unwrap()).await;
    // And the reopened store delivers what the first process queued.
    let s = setup(SledStore::open(&path).unwrap(), OnClosed::Queue(invite())).await;
    let report = s.customer_writes().await;
    assert_eq!(report.delivery.delivered.len(), every_kind().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_kinds_survive_the_redis_store() {
    let Some(server) = RedisServer::start() else {
        eprintln!(
            "queued kinds on Redis: skipped, no redis-server (REQUIRE_REDIS=1 makes this a failure)"
        );
        return;
    };
    let store = RedisStore::connect(&server.url()).await.unwrap();
    queued_kinds_are_delivered_on_the_reply(store).await;
}

#[tokio::test]
async fn a_kind_the_gateway_refuses_as_outside_the_window_is_queued_again_and_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(
        SledStore::open(dir.path().join("db")).unwrap(),
        OnClosed::Queue(invite()),
    )
    .await;
    // Our store thinks the window is open; the gateway has not heard from the customer.
    s.messenger.on_inbound(chat(), s.clock.now()).await.unwrap();
    for (message, _) in every_kind() {
        let outcome = s
            .messenger
            .send(SendRequest::new(chat(), message.clone()))
            .await
            .unwrap();
        assert_eq!(outcome.name(), "queued", "{outcome:?}");
    }
    let refused: Vec<MessageKind> = s.gateway.refusals().iter().map(|r| r.kind).collect();
    let expected: Vec<MessageKind> = every_kind().into_iter().map(|(_, kind)| kind).collect();
    // The first refusal records the closure; the rest are queued without a request.
    assert_eq!(refused, expected[..1]);
    // The customer writes after the refusal (a closure holds until a later message).
    s.clock.advance(TimeDelta::seconds(1));
    let report = s.customer_writes().await;
    assert_eq!(report.delivery.delivered.len(), every_kind().len());
    let kinds: Vec<MessageKind> = s.delivered_free_form().iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, expected);
}

/// What the previous release wrote into an outbox: a contact card and a text message in
/// their stored form (the `kind` tags and inner shapes this release keeps as they were).
fn previous_release_payloads(origin: MessageId) -> [String; 2] {
    [
        format!(
            r#"{{"origin":"{origin}","message":{{"kind":"contact","message":{{"formatted_name":"Support","phones":[{{"phone":"254700000001","phone_type":"Work","wa_id":"254700000001"}}]}}}}}}"#
        ),
        format!(
            r#"{{"origin":"{origin}","message":{{"kind":"text","message":{{"body":"Still there?"}}}}}}"#
        ),
    ]
}

async fn old_entries_are_delivered<S: Store>(store: S) {
    let s = setup(store, OnClosed::Queue(invite())).await;
    let ids = [MessageId::new(), MessageId::new()];
    for (id, payload) in ids.iter().zip(previous_release_payloads(MessageId::new())) {
        let queued = QueuedMessage {
            message_id: *id,
            queued_at: s.clock.now(),
            payload,
        };
        assert!(
            s.messenger
                .sessions()
                .store()
                .enqueue(chat(), queued, 20)
                .await
                .unwrap()
        );
    }
    let report = s.customer_writes().await;
    assert!(
        report.delivery.failed.is_empty(),
        "{:?}",
        report.delivery.failed
    );
    assert_eq!(report.delivery.delivered.len(), 2);
    let delivered = s.delivered_free_form();
    assert_eq!(
        delivered[0].1,
        json!({"messageId": ids[0].to_string(), "to": "254712345678", "from": "254110090747",
               "name": {"formattedName": "Support"},
               "phones": [{"phone": "254700000001", "type": "Work", "waId": "254700000001"}]})
    );
    assert_eq!(delivered[1].0, MessageKind::Text);
    assert_eq!(delivered[1].1["message"], "Still there?");
    let requests = s.gateway.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.outcome == RequestOutcome::Delivered),
        "{requests:?}"
    );
}

#[tokio::test]
async fn entries_queued_by_the_previous_release_are_delivered_from_sled() {
    let dir = tempfile::tempdir().unwrap();
    old_entries_are_delivered(SledStore::open(dir.path().join("db")).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_queued_by_the_previous_release_are_delivered_from_redis() {
    let Some(server) = RedisServer::start() else {
        eprintln!("previous release's entries on Redis: skipped, no redis-server");
        return;
    };
    old_entries_are_delivered(RedisStore::connect(&server.url()).await.unwrap()).await;
}

/// A kind a later release adds (here `poll`) is not taken out of the outbox by this one:
/// it stays queued, in its place, and the delivery stops at it naming the kind, so the
/// replica that knows it delivers it.
async fn a_later_releases_kind_stays_queued<S: Store>(store: S) {
    let s = setup(store, OnClosed::Queue(invite())).await;
    let origin = MessageId::new();
    let later = QueuedMessage {
        message_id: MessageId::new(),
        queued_at: s.clock.now(),
        payload: format!(
            r#"{{"origin":"{origin}","message":{{"kind":"poll","message":{{"question":"Lunch?"}}}}}}"#
        ),
    };
    let store = s.messenger.sessions().store();
    assert!(store.enqueue(chat(), later.clone(), 20).await.unwrap());
    let report = s.customer_writes().await;
    assert!(
        report.delivery.failed.is_empty(),
        "{:?}",
        report.delivery.failed
    );
    assert!(
        matches!(
            &report.delivery.stopped,
            Some(lipachat_policy::DeliveryStop::UnknownKind { kind, .. }) if kind == "poll"
        ),
        "{:?}",
        report.delivery.stopped
    );
    assert_eq!(report.delivery.remaining, 1);
    let queued = store.queued(chat()).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].payload, later.payload, "kept as it was written");
    assert_eq!(s.gateway.request_count(), 0);
}

#[tokio::test]
async fn a_later_releases_kind_stays_queued_in_sled() {
    let dir = tempfile::tempdir().unwrap();
    a_later_releases_kind_stays_queued(SledStore::open(dir.path().join("db")).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_releases_kind_stays_queued_in_redis() {
    let Some(server) = RedisServer::start() else {
        eprintln!("a later release's kind on Redis: skipped, no redis-server");
        return;
    };
    a_later_releases_kind_stays_queued(RedisStore::connect(&server.url()).await.unwrap()).await;
}
