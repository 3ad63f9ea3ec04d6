//! Who the conversation is with, driven by real webhook bodies (the fixture corpus of
//! crates/api/tests/fixtures/webhooks, whose README cites each source) through parse →
//! store → decision: a user known only by a business-scoped user id, a group message, a
//! number change and a user-id change; then two replicas on one Redis receiving the same
//! user-id-only webhook. Against the stand-in gateway on loopback with a manual clock.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_api::{
    ApiKey, Client, ContactMessage, ContactPhone, MessageId, RetryPolicy, TemplateMessage,
    WebhookParser,
};
use lipachat_policy::{
    DeliveryStop, Messenger, OnClosed, PolicyConfig, PolicyError, SendOutcome, SendRequest,
    WebhookOutcome,
};
use lipachat_redis::RedisStore;
use lipachat_redis::test_server::RedisServer;
use lipachat_session::{
    Bsuid, Clock, ClosedCause, Conversation, Customer, GroupId, IdentityStore, ManualClock,
    OutboxStore, PhoneNumber, Sessions, SledStore, Store, WindowState, WindowStore,
};
use lipachat_testkit::StandInGateway;
use serde_json::Value;

/// A fixture body as JSON, to read or to vary.
fn fixture(name: &str) -> Value {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "api",
        "tests",
        "fixtures",
        "webhooks",
        name,
    ]
    .iter()
    .collect();
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The first message of a WhatsApp body.
fn message_of(body: &mut Value) -> &mut Value {
    &mut body["entry"][0]["changes"][0]["value"]["messages"][0]
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

fn invite() -> TemplateMessage {
    TemplateMessage::new("contact_share", "en").unwrap()
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

struct Bot<S> {
    gateway: Arc<StandInGateway>,
    clock: ManualClock,
    messenger: Messenger<S>,
}

async fn gateway(clock: &ManualClock) -> Arc<StandInGateway> {
    Arc::new(
        StandInGateway::builder()
            .clock(clock.clone())
            .start()
            .await
            .unwrap(),
    )
}

impl<S: Store + Clone> Bot<S> {
    fn over(store: S, gateway: Arc<StandInGateway>, clock: ManualClock) -> Self {
        let sessions = Sessions::new(store).with_clock(clock.clone());
        let config = PolicyConfig::default().on_closed(OnClosed::Queue(invite()));
        Self {
            messenger: Messenger::new(sessions, client(&gateway), config),
            gateway,
            clock,
        }
    }

    fn store(&self) -> &S {
        self.messenger.sessions().store()
    }

    /// Parses a body received now and handles its one event as a bot does.
    async fn receive(&self, body: &Value) -> WebhookOutcome {
        let events = WebhookParser::default()
            .parse(body.to_string().as_bytes(), self.clock.now())
            .unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        self.messenger.on_webhook_event(&events[0]).await.unwrap()
    }

    async fn state(&self, conversation: Conversation) -> WindowState {
        self.messenger.sessions().state(conversation).await.unwrap()
    }

    async fn user(&self, id: &str) -> Conversation {
        let id: Bsuid = id.parse().unwrap();
        let handle = self.store().find_user_ref(&id).await.unwrap().unwrap();
        Conversation::with_customer(business_of_user_fixture(), Customer::User(handle))
    }
}

async fn sled_bot(clock: ManualClock) -> (Bot<SledStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    (Bot::over(store, gateway(&clock).await, clock), dir)
}

/// meta-bsuid-contact-request.json's business number and user.
fn business_of_user_fixture() -> PhoneNumber {
    "15550783881".parse().unwrap()
}

const USER: &str = "US.13491208655302741918";
const USER_PHONE: &str = "16505551234";

#[tokio::test]
async fn a_user_known_only_by_id_has_a_window_of_their_own_and_joins_their_phone_later() {
    // Received a minute after the fixture's timestamp (2025-06-08T20:59:43Z).
    let clock = ManualClock::at(at("2025-06-08T21:00:43Z"));
    let (bot, _dir) = sled_bot(clock.clone()).await;
    let business = business_of_user_fixture();
    let phone_chat = Conversation::new(business, USER_PHONE.parse().unwrap());
    // Before anything: a card for the phone waits for a reply (the window is not open).
    let queued = bot
        .messenger
        .send(SendRequest::contact(phone_chat, card()))
        .await
        .unwrap();
    assert!(matches!(queued, SendOutcome::Queued { .. }), "{queued:?}");

    // The user writes with a username: no phone number, only the user id.
    let by_id = fixture("meta-bsuid-contact-request.json");
    let WebhookOutcome::Inbound(report) = bot.receive(&by_id).await else {
        panic!("recorded")
    };
    let user_chat = bot.user(USER).await;
    assert_eq!(report.conversation, user_chat);
    assert!(report.recorded.opened);
    assert!(bot.state(user_chat).await.is_open());
    // It is not the phone's window: the card still waits, and nothing was sent.
    assert!(!bot.state(phone_chat).await.is_open());
    assert_eq!(bot.store().queued(phone_chat).await.unwrap().len(), 1);
    assert!(bot.gateway.delivered_to(USER_PHONE.parse().unwrap()).len() == 1); // the invitation
    // The user's own conversation cannot be sent to: a typed error, before any request.
    let requests = bot.gateway.request_count();
    let refused = bot
        .messenger
        .send(SendRequest::contact(user_chat, card()))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, PolicyError::NotAddressable { conversation } if conversation == user_chat),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("no way to address"));
    let dry = bot
        .messenger
        .dry_run(&SendRequest::contact(user_chat, card()))
        .await
        .unwrap_err();
    assert!(matches!(dry, PolicyError::NotAddressable { .. }));
    assert_eq!(
        bot.gateway.request_count(),
        requests,
        "nothing was requested"
    );
    // The same webhook again is a redelivery.
    assert!(matches!(
        bot.receive(&by_id).await,
        WebhookOutcome::Duplicate { conversation, .. } if conversation == user_chat
    ));

    // Later the user writes with their phone and their id together: one person. The
    // user's conversation moves into the phone's, whose window opens: the card goes.
    clock.advance(TimeDelta::minutes(5));
    bot.gateway
        .customer_writes(business, USER_PHONE.parse().unwrap());
    let mut both = fixture("meta-bsuid-contact-request.json");
    message_of(&mut both)["from"] = USER_PHONE.into();
    message_of(&mut both)["from_user_id"] = USER.into();
    message_of(&mut both)["id"] = "wamid.second".into();
    message_of(&mut both)["timestamp"] = clock.now().timestamp().to_string().into();
    let WebhookOutcome::Inbound(report) = bot.receive(&both).await else {
        panic!("recorded")
    };
    assert_eq!(report.conversation, phone_chat);
    assert_eq!(report.delivery.delivered.len(), 1, "{:?}", report.delivery);
    assert_eq!(bot.store().window(user_chat).await.unwrap(), None);
    assert_eq!(bot.messenger.sessions().count().await.unwrap(), 1);
    assert_eq!(
        bot.store()
            .alias(business, &USER.parse().unwrap())
            .await
            .unwrap(),
        Some(USER_PHONE.parse().unwrap())
    );

    // Later messages under either identity find the phone's conversation; a redelivery
    // of the first still is one.
    assert!(matches!(
        bot.receive(&by_id).await,
        WebhookOutcome::Duplicate { conversation, .. } if conversation == phone_chat
    ));
    clock.advance(TimeDelta::minutes(1));
    let mut again = fixture("meta-bsuid-contact-request.json");
    message_of(&mut again)["id"] = "wamid.third".into();
    message_of(&mut again)["timestamp"] = clock.now().timestamp().to_string().into();
    let WebhookOutcome::Inbound(report) = bot.receive(&again).await else {
        panic!("recorded")
    };
    assert_eq!(report.conversation, phone_chat);
    assert_eq!(
        bot.store()
            .window(phone_chat)
            .await
            .unwrap()
            .unwrap()
            .last_inbound,
        clock.now()
    );
}

#[tokio::test]
async fn a_group_message_opens_the_group_s_window_never_the_member_s() {
    // meta-group-text-message.json: sent 2025-06-08T20:59:43Z by 16505551234.
    let clock = ManualClock::at(at("2025-06-08T21:00:00Z"));
    let (bot, _dir) = sled_bot(clock.clone()).await;
    let business = business_of_user_fixture();
    let member = Conversation::new(business, USER_PHONE.parse().unwrap());
    bot.messenger
        .send(SendRequest::contact(member, card()))
        .await
        .unwrap();
    let WebhookOutcome::Inbound(report) =
        bot.receive(&fixture("meta-group-text-message.json")).await
    else {
        panic!("recorded")
    };
    let group_id: GroupId = "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD"
        .parse()
        .unwrap();
    let group = bot
        .store()
        .find_group_ref(&group_id)
        .await
        .unwrap()
        .unwrap();
    let group_chat = Conversation::with_customer(business, Customer::Group(group));
    assert_eq!(report.conversation, group_chat);
    assert!(bot.state(group_chat).await.is_open());
    assert!(
        !bot.state(member).await.is_open(),
        "the member's 1:1 window stays shut"
    );
    assert_eq!(bot.store().queued(member).await.unwrap().len(), 1);
    assert!(report.delivery.stopped.is_none());
    // A group cannot be sent to.
    assert!(matches!(
        bot.messenger
            .send(SendRequest::contact(group_chat, card()))
            .await,
        Err(PolicyError::NotAddressable { .. })
    ));

    // A status of a message sent to the group ties back to the group: a 131047 there
    // closes the group's window (360dialog's group status, failed).
    let mut failed = fixture("360dialog-group-status-sent.json");
    let status = &mut failed["entry"][0]["changes"][0]["value"]["statuses"][0];
    status["status"] = "failed".into();
    status["timestamp"] = clock.now().timestamp().to_string().into();
    status["errors"] = serde_json::json!([{"code": 131047, "title": "Re-engagement message"}]);
    let outcome = bot.receive(&failed).await;
    assert!(
        matches!(outcome, WebhookOutcome::WindowClosed(_)),
        "{outcome:?}"
    );
    assert!(matches!(
        bot.state(group_chat).await,
        WindowState::Closed {
            cause: ClosedCause::Gateway,
            ..
        }
    ));
    assert!(!bot.state(member).await.is_open());
    // The plain status is about the group too, and changes nothing.
    let sent = bot
        .receive(&fixture("360dialog-group-status-sent.json"))
        .await;
    assert!(matches!(sent, WebhookOutcome::Ignored(_)), "{sent:?}");
}

#[tokio::test]
async fn a_number_change_moves_window_outbox_invitation_and_outcomes_and_opens_nothing() {
    // pywa-system-number-change.json: 972987654321 became 972912345678 at
    // 2025-07-30T04:55:15Z, for business 972123456789.
    let clock = ManualClock::at(at("2025-07-30T05:00:00Z"));
    let (bot, _dir) = sled_bot(clock.clone()).await;
    let business: PhoneNumber = "972123456789".parse().unwrap();
    let (old, new) = (
        Conversation::new(business, "972987654321".parse().unwrap()),
        Conversation::new(business, "972912345678".parse().unwrap()),
    );
    // The old number wrote two days ago (its window is closed), and a card waits for it
    // with an invitation sent.
    let sessions = bot.messenger.sessions();
    sessions
        .record_inbound(old, clock.now() - TimeDelta::days(2))
        .await
        .unwrap();
    let id = MessageId::new();
    let queued = bot
        .messenger
        .send(SendRequest::contact(old, card()).message_id(id))
        .await
        .unwrap();
    assert!(matches!(queued, SendOutcome::Queued { .. }));

    let outcome = bot
        .receive(&fixture("pywa-system-number-change.json"))
        .await;
    let WebhookOutcome::IdentityMoved { from, to, moved } = outcome else {
        panic!("moved: {outcome:?}")
    };
    assert_eq!((from, to), (old, new));
    assert!(moved.window && moved.queued == 1 && moved.invitation && moved.outcomes >= 1);
    assert_eq!(bot.store().window(old).await.unwrap(), None);
    assert!(bot.store().queued(old).await.unwrap().is_empty());
    assert_eq!(bot.store().invitation(old).await.unwrap(), None);
    // The system message opens nothing: the window it moved is as closed as it was.
    assert!(matches!(bot.state(new).await, WindowState::Closed { .. }));
    assert!(bot.store().invitation(new).await.unwrap().is_some());
    // The send's outcome moved too: a retry under the new number is a duplicate.
    let retried = bot
        .messenger
        .send(SendRequest::contact(new, card()).message_id(id))
        .await
        .unwrap();
    assert!(matches!(retried, SendOutcome::Duplicate(_)), "{retried:?}");
    // The customer writes from the new number: the card goes there.
    bot.gateway.customer_writes(business, new.phone().unwrap());
    let report = bot.messenger.on_inbound(new, clock.now()).await.unwrap();
    assert_eq!(report.delivery.delivered.len(), 1);
    // The invitation went to the old number; the card to the new one.
    assert_eq!(bot.gateway.delivered_to(new.phone().unwrap()).len(), 1);
}

#[tokio::test]
async fn a_user_id_change_moves_the_user_s_conversation_to_the_new_id() {
    // pywa-system-user-id-change.json: CO.1234567890 became MX.0987654321 at
    // 2025-07-30T04:55:15Z, for business 972123456789; no phone is known.
    let clock = ManualClock::at(at("2025-07-30T05:00:00Z"));
    let (bot, _dir) = sled_bot(clock.clone()).await;
    let business: PhoneNumber = "972123456789".parse().unwrap();
    // The user wrote under the previous id (the user-id fixture, for this business).
    let mut before = fixture("meta-bsuid-contact-request.json");
    before["entry"][0]["changes"][0]["value"]["metadata"]["display_phone_number"] =
        business.to_string().into();
    before["entry"][0]["changes"][0]["value"]["contacts"][0]["user_id"] = "CO.1234567890".into();
    message_of(&mut before)["timestamp"] = (clock.now() - TimeDelta::hours(1))
        .timestamp()
        .to_string()
        .into();
    let WebhookOutcome::Inbound(report) = bot.receive(&before).await else {
        panic!("recorded")
    };
    let previous = report.conversation;
    assert!(previous.customer.user().is_some());

    let outcome = bot
        .receive(&fixture("pywa-system-user-id-change.json"))
        .await;
    let WebhookOutcome::IdentityMoved { from, to, moved } = outcome else {
        panic!("moved: {outcome:?}")
    };
    assert_eq!(from, previous);
    let new_id: Bsuid = "MX.0987654321".parse().unwrap();
    let new_handle = bot.store().find_user_ref(&new_id).await.unwrap().unwrap();
    assert_eq!(
        to,
        Conversation::with_customer(business, Customer::User(new_handle))
    );
    assert!(moved.window);
    assert!(bot.state(to).await.is_open(), "the window moved whole");
    assert_eq!(bot.store().window(from).await.unwrap(), None);
    assert_eq!(bot.messenger.sessions().count().await.unwrap(), 1);
}

/// whatsapp-api-js's status, turned into a 131047 failure addressed by the user id alone
/// (no `recipient_id`), at `at`.
fn failed_by_user_id(at: DateTime<Utc>) -> Value {
    let mut body = fixture("whatsapp-api-js-sent-bsuid.json");
    let status = &mut body["entry"][0]["changes"][0]["value"]["statuses"][0];
    let status = status.as_object_mut().unwrap();
    status.remove("recipient_id");
    status.insert("status".into(), "failed".into());
    status.insert("timestamp".into(), at.timestamp().to_string().into());
    status.insert(
        "errors".into(),
        serde_json::json!([{"code": 131047, "title": "Re-engagement message"}]),
    );
    body["entry"][0]["changes"][0]["value"]
        .as_object_mut()
        .unwrap()
        .remove("contacts");
    body
}

#[tokio::test]
async fn a_status_addressed_by_user_id_ties_back_through_the_handle_then_the_alias() {
    // whatsapp-api-js's bodies: business 16505551111, user US.13491208655302741918 with
    // the phone 16315551181, in September 2017.
    let clock = ManualClock::at(at("2017-09-08T20:40:00Z"));
    let (bot, _dir) = sled_bot(clock.clone()).await;
    let business: PhoneNumber = "16505551111".parse().unwrap();
    // First the user writes by id alone (the contact-request fixture, for this business).
    let mut by_id = fixture("meta-bsuid-contact-request.json");
    by_id["entry"][0]["changes"][0]["value"]["metadata"]["display_phone_number"] =
        business.to_string().into();
    message_of(&mut by_id)["timestamp"] = clock.now().timestamp().to_string().into();
    let WebhookOutcome::Inbound(report) = bot.receive(&by_id).await else {
        panic!("recorded")
    };
    let user_chat = report.conversation;
    assert!(user_chat.customer.user().is_some());
    // A 131047 addressed by the user id closes the user's window.
    clock.advance(TimeDelta::minutes(1));
    let outcome = bot.receive(&failed_by_user_id(clock.now())).await;
    assert!(
        matches!(outcome, WebhookOutcome::WindowClosed(_)),
        "{outcome:?}"
    );
    assert!(matches!(
        bot.state(user_chat).await,
        WindowState::Closed {
            cause: ClosedCause::Gateway,
            ..
        }
    ));

    // The user writes with phone and id (whatsapp-api-js's incoming message): one
    // conversation, the phone's, open again.
    clock.advance(TimeDelta::minutes(1));
    let mut both = fixture("whatsapp-api-js-incoming-bsuid.json");
    message_of(&mut both)["timestamp"] = clock.now().timestamp().to_string().into();
    let WebhookOutcome::Inbound(report) = bot.receive(&both).await else {
        panic!("recorded")
    };
    let phone_chat = Conversation::new(business, "16315551181".parse().unwrap());
    assert_eq!(report.conversation, phone_chat);
    assert!(bot.state(phone_chat).await.is_open());
    assert_eq!(bot.store().window(user_chat).await.unwrap(), None);
    // The same kind of report, by the user id alone, now closes the phone's window.
    clock.advance(TimeDelta::minutes(1));
    bot.receive(&failed_by_user_id(clock.now())).await;
    assert!(matches!(
        bot.state(phone_chat).await,
        WindowState::Closed {
            cause: ClosedCause::Gateway,
            ..
        }
    ));
    // A report about a user id never met ties back to nothing, and creates nothing.
    let mut stranger = failed_by_user_id(clock.now());
    stranger["entry"][0]["changes"][0]["value"]["statuses"][0]["recipient_user_id"] =
        "US.999".into();
    let outcome = bot.receive(&stranger).await;
    assert!(matches!(outcome, WebhookOutcome::Ignored(_)), "{outcome:?}");
    assert_eq!(
        bot.store()
            .find_user_ref(&"US.999".parse().unwrap())
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn delivery_never_sends_to_a_conversation_without_a_phone() {
    let clock = ManualClock::at(at("2025-06-08T21:00:43Z"));
    let (bot, _dir) = sled_bot(clock.clone()).await;
    bot.receive(&fixture("meta-bsuid-contact-request.json"))
        .await;
    let user_chat = bot.user(USER).await;
    // A message queued for the user (as an import could bring) stays queued.
    bot.store()
        .enqueue(
            user_chat,
            lipachat_session::QueuedMessage {
                message_id: lipachat_api::MessageId::new(),
                queued_at: clock.now(),
                payload: "{}".into(),
            },
            10,
        )
        .await
        .unwrap();
    let report = bot.messenger.deliver(user_chat).await.unwrap();
    assert!(matches!(report.stopped, Some(DeliveryStop::NotAddressable)));
    assert_eq!(report.remaining, 1);
    assert_eq!(bot.store().queued(user_chat).await.unwrap().len(), 1);
    assert_eq!(bot.gateway.request_count(), 0);
}

async fn redis_store(server: &RedisServer) -> RedisStore {
    lipachat_redis::RedisConfig::new(&server.url())
        .unwrap()
        .with_key_prefix("identity")
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Two replicas, each with its own connection to one Redis, receive the same user-id-only
/// webhook at once: one records it, the other is told it is a redelivery; one handle, one
/// window. Then, for many users at once, one replica gets a message with the user id alone
/// while the other gets one naming the phone too: every user ends with one conversation,
/// the phone's, whichever lands first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_redis_agree_on_who_a_user_is() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let clock = ManualClock::at(at("2025-06-08T21:00:43Z"));
    let gateway = gateway(&clock).await;
    let a = Bot::over(redis_store(&server).await, gateway.clone(), clock.clone());
    let b = Bot::over(redis_store(&server).await, gateway, clock.clone());
    let body = fixture("meta-bsuid-contact-request.json");
    let (first, second) = tokio::join!(a.receive(&body), b.receive(&body));
    let recorded = [&first, &second]
        .iter()
        .filter(|o| matches!(o, WebhookOutcome::Inbound(_)))
        .count();
    let duplicates = [&first, &second]
        .iter()
        .filter(|o| matches!(o, WebhookOutcome::Duplicate { .. }))
        .count();
    assert_eq!((recorded, duplicates), (1, 1), "{first:?} {second:?}");
    let user_chat = a.user(USER).await;
    assert_eq!(
        b.user(USER).await,
        user_chat,
        "one handle for both replicas"
    );
    assert!(a.state(user_chat).await.is_open());
    assert_eq!(a.messenger.sessions().count().await.unwrap(), 1);

    // The race between the two identities, for 20 users at once.
    let business = business_of_user_fixture();
    let mut races = Vec::new();
    for n in 0..20u64 {
        let user = format!("US.{}", 7_000 + n);
        let phone = 16_505_550_000 + n;
        let mut by_id = fixture("meta-bsuid-contact-request.json");
        by_id["entry"][0]["changes"][0]["value"]["contacts"][0]["user_id"] = user.clone().into();
        message_of(&mut by_id)["id"] = format!("wamid.id-{n}").into();
        let mut by_both = by_id.clone();
        message_of(&mut by_both)["id"] = format!("wamid.both-{n}").into();
        message_of(&mut by_both)["from"] = phone.to_string().into();
        message_of(&mut by_both)["from_user_id"] = user.into();
        races.push((by_id, by_both, phone));
    }
    for (by_id, by_both, _) in &races {
        // Both at once: whichever of the two lands first, the user ends as one person.
        tokio::join!(a.receive(by_id), b.receive(by_both));
    }
    for (_, _, phone) in &races {
        let phone_chat = Conversation::new(business, PhoneNumber::from_u64(*phone).unwrap());
        assert!(a.state(phone_chat).await.is_open(), "{phone_chat}");
    }
    // The first user (only ever by id) and the 20 phones: no user conversation left.
    let windows = a.store().windows().await.unwrap();
    let by_user: Vec<Conversation> = windows
        .iter()
        .map(|(c, _)| *c)
        .filter(|c| c.customer.user().is_some())
        .collect();
    assert_eq!(
        (windows.len(), by_user.len()),
        (21, 1),
        "conversations left under a user id: {by_user:?}"
    );
}
