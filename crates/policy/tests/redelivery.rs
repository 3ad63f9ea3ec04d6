//! Redelivered webhooks: WhatsApp retries a webhook for days, out of order and sometimes
//! twice. A second copy of a customer's message records nothing, delivers nothing twice,
//! and tells the bot not to answer; a reply made again carries the same `messageId`.
//! Against the stand-in gateway on loopback, a sled store on disk and a manual clock.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_api::{
    ApiKey, Client, ContactMessage, ContactPhone, MessageId, RetryPolicy, TemplateMessage,
    WebhookEvent, WebhookParser,
};
use lipachat_policy::{
    Messenger, OnClosed, PolicyConfig, SendOutcome, SendRequest, WebhookOutcome,
};
use lipachat_session::{
    Clock, Conversation, InboundId, ManualClock, Sessions, SledStore, WindowRecord, WindowStore,
};
use lipachat_testkit::StandInGateway;

fn chat() -> Conversation {
    Conversation::parse("254110090747", "254712345678").unwrap()
}

/// A WhatsApp webhook with one text message from the customer, sent at `sent`.
fn webhook(id: &str, sent: DateTime<Utc>) -> Vec<u8> {
    serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "254110090747", "phone_number_id": "1"},
            "contacts": [{"profile": {"name": "Jane"}, "wa_id": "254712345678"}],
            "messages": [{"from": "254712345678", "id": id, "timestamp": sent.timestamp().to_string(),
                          "type": "text", "text": {"body": "hello"}}]
        }}]}]
    })
    .to_string()
    .into_bytes()
}

fn card() -> ContactMessage {
    ContactMessage::new(
        "Support",
        vec![ContactPhone::new("254700000001".parse().unwrap(), "Work")],
    )
    .unwrap()
}

fn client(gateway: &StandInGateway) -> Client {
    Client::builder(ApiKey::new(gateway.api_key()).unwrap())
        .base_url(&gateway.base_url())
        .retry(RetryPolicy {
            max_retries: 2,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        })
        .build()
        .unwrap()
}

struct Bot {
    gateway: StandInGateway,
    clock: ManualClock,
    messenger: Messenger<SledStore>,
    _dir: tempfile::TempDir,
}

async fn bot(horizon: TimeDelta, config: PolicyConfig) -> Bot {
    let clock = ManualClock::at("2026-11-23T10:00:00Z".parse().unwrap());
    let gateway = StandInGateway::builder()
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let client = client(&gateway);
    let dir = tempfile::tempdir().unwrap();
    let sessions = Sessions::new(SledStore::open(dir.path().join("db")).unwrap())
        .with_clock(clock.clone())
        .with_redelivery_horizon(horizon);
    Bot {
        messenger: Messenger::new(sessions, client, config),
        gateway,
        clock,
        _dir: dir,
    }
}

impl Bot {
    /// The webhook arrives now: parsed and handled as a bot does.
    async fn receive(&self, body: &[u8]) -> WebhookOutcome {
        let events = WebhookParser::default()
            .parse(body, self.clock.now())
            .unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(matches!(events[0], WebhookEvent::Inbound(_)));
        self.messenger.on_webhook_event(&events[0]).await.unwrap()
    }

    async fn window(&self) -> Option<WindowRecord> {
        self.messenger
            .sessions()
            .store()
            .window(chat())
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_redelivered_message_is_recognised_and_changes_nothing() {
    let invite = TemplateMessage::new("contact_share", "en").unwrap();
    let b = bot(
        TimeDelta::days(7),
        PolicyConfig::default().on_closed(OnClosed::Queue(invite)),
    )
    .await;
    // A card waits for the customer's reply.
    let queued = b.messenger.send_contact(chat(), card()).await.unwrap();
    assert!(matches!(queued, SendOutcome::Queued { .. }), "{queued:?}");

    let sent = b.clock.now() - TimeDelta::seconds(30);
    b.gateway
        .customer_writes_at(chat().business, chat().phone().unwrap(), sent);
    let body = webhook("wamid.HBgMMjU0NzEyMzQ1Njc4FQIAEhgUM0E", sent);
    let WebhookOutcome::Inbound(first) = b.receive(&body).await else {
        panic!("the first copy is an inbound message")
    };
    assert_eq!(
        first.delivery.delivered.len(),
        1,
        "the queued card went out"
    );
    let recorded = b.window().await;
    let free_form = b.gateway.free_form_delivered_to(chat().phone().unwrap());
    assert_eq!(free_form, 1);

    // Redelivered an hour later, then again two days later: nothing recorded, nothing
    // delivered again, and the bot is told.
    for later in [TimeDelta::hours(1), TimeDelta::days(2)] {
        b.clock.advance(later);
        let outcome = b.receive(&body).await;
        let WebhookOutcome::Duplicate {
            conversation,
            first_received_at,
            delivery,
        } = outcome
        else {
            panic!("a redelivered copy is a duplicate, got {outcome:?}")
        };
        assert_eq!(
            first_received_at,
            "2026-11-23T10:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(conversation, chat());
        assert!(delivery.delivered.is_empty());
        assert_eq!(b.window().await, recorded, "a duplicate records nothing");
    }
    let free_form = b.gateway.free_form_delivered_to(chat().phone().unwrap());
    assert_eq!(free_form, 1, "the card reached the customer once");
}

#[tokio::test]
async fn a_reply_made_again_after_the_memory_forgot_carries_the_same_message_id() {
    let b = bot(TimeDelta::minutes(10), PolicyConfig::default()).await;
    let sent = b.clock.now();
    b.gateway
        .customer_writes_at(chat().business, chat().phone().unwrap(), sent);
    let inbound = InboundId::new("wamid.REPLY-ME").unwrap();
    let body = webhook(inbound.as_str(), sent);
    let reply = || SendRequest::contact(chat(), card()).message_id(MessageId::reply_to(&inbound));

    assert!(matches!(b.receive(&body).await, WebhookOutcome::Inbound(_)));
    let first = b.messenger.send(reply()).await.unwrap();
    assert!(matches!(first, SendOutcome::Sent { .. }), "{first:?}");

    // Past the memory's horizon the redelivery looks new, and the bot answers again: the
    // reply's messageId is the same, so it is not sent a second time.
    b.clock.advance(TimeDelta::minutes(11));
    assert!(matches!(b.receive(&body).await, WebhookOutcome::Inbound(_)));
    let again = b.messenger.send(reply()).await.unwrap();
    assert!(matches!(again, SendOutcome::Duplicate(_)), "{again:?}");
    let to_customer = b.gateway.delivered_to(chat().phone().unwrap());
    assert_eq!(to_customer.len(), 1, "{to_customer:?}");
    assert_eq!(
        to_customer[0].message_id,
        MessageId::reply_to(&inbound).to_string()
    );
}

/// Two replicas on one Redis get the same webhook at the same moment (WhatsApp sent it
/// twice, a load balancer spread the copies): exactly one handles it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_redis_handle_one_copy() {
    use lipachat_redis::RedisStore;
    use lipachat_redis::test_server::RedisServer;

    let Some(server) = RedisServer::start() else {
        return;
    };
    let clock = ManualClock::at("2026-11-23T10:00:00Z".parse().unwrap());
    let gateway = StandInGateway::builder()
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let store = RedisStore::connect(&server.url()).await.unwrap();
        let client = client(&gateway);
        let sessions = Sessions::new(store).with_clock(clock.clone());
        replicas.push(Messenger::new(sessions, client, PolicyConfig::default()));
    }
    for round in 0..20 {
        let body = webhook(&format!("wamid.ROUND{round}"), clock.now());
        let events = WebhookParser::default().parse(&body, clock.now()).unwrap();
        let handles: Vec<_> = replicas
            .iter()
            .map(|replica| {
                let replica = replica.clone();
                let event = events[0].clone();
                tokio::spawn(async move { replica.on_webhook_event(&event).await.unwrap() })
            })
            .collect();
        let mut first = 0;
        let mut duplicate = 0;
        for handle in handles {
            match handle.await.unwrap() {
                WebhookOutcome::Inbound(_) => first += 1,
                WebhookOutcome::Duplicate { .. } => duplicate += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((first, duplicate), (1, 1), "round {round}");
    }
}
