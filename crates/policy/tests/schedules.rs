//! Random schedules of inbound messages, sends, deliveries and clock jumps against the
//! stand-in gateway: no free-form message ever reaches it outside its window, and every
//! queued message is delivered exactly once after a reply or reported expired.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::TimeDelta;
use lipachat_api::{ApiKey, Client, MessageId, RetryPolicy, TemplateMessage, TextMessage};
use lipachat_policy::{Messenger, OnClosed, PolicyConfig, SendOutcome};
use lipachat_session::{Clock, Conversation, ManualClock, Sessions, SledStore};
use lipachat_testkit::StandInGateway;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Customer `0..3` writes.
    Writes(usize),
    /// Send a text to customer `0..3`.
    Send(usize),
    /// Run a delivery for customer `0..3`.
    Deliver(usize),
    /// Move the clock by this many minutes.
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..3usize).prop_map(Op::Writes),
        4 => (0..3usize).prop_map(Op::Send),
        1 => (0..3usize).prop_map(Op::Deliver),
        3 => prop_oneof![0..120i64, 1380..1500i64, 2000..4000i64].prop_map(Op::Advance),
    ]
}

async fn run(ops: Vec<Op>) {
    let clock = ManualClock::at("2026-11-23T10:00:00Z".parse().unwrap());
    let gateway = StandInGateway::builder()
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = Client::builder(ApiKey::new(gateway.api_key()).unwrap())
        .base_url(&gateway.base_url())
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let config = PolicyConfig::default()
        .on_closed(OnClosed::Queue(
            TemplateMessage::new("contact_share", "en").unwrap(),
        ))
        .outbox_limit(1000)
        .outbox_ttl(TimeDelta::days(2));
    let sessions =
        Sessions::new(SledStore::open(dir.path().join("db")).unwrap()).with_clock(clock.clone());
    let messenger = Messenger::new(sessions, client, config);
    let chats: Vec<Conversation> = (0..3)
        .map(|i| Conversation::parse("254110090747", &format!("25471234567{i}")).unwrap())
        .collect();

    let mut queued: HashSet<MessageId> = HashSet::new();
    let mut sent: HashSet<MessageId> = HashSet::new();
    let mut delivered: HashMap<MessageId, usize> = HashMap::new();
    let mut expired: HashSet<MessageId> = HashSet::new();
    let mut note = |report: lipachat_policy::DeliveryReport| {
        for d in report.delivered {
            *delivered.entry(d.message_id).or_default() += 1;
        }
        for e in report.expired {
            assert!(expired.insert(e.message_id), "expired twice");
        }
        assert!(report.failed.is_empty(), "{:?}", report.failed);
    };
    for op in ops {
        match op {
            Op::Writes(i) => {
                gateway.customer_writes(chats[i].business, chats[i].phone().unwrap());
                note(
                    messenger
                        .on_inbound(chats[i], clock.now())
                        .await
                        .unwrap()
                        .delivery,
                );
            }
            Op::Send(i) => {
                match messenger
                    .send_text(chats[i], TextMessage::new("hello").unwrap())
                    .await
                    .unwrap()
                {
                    SendOutcome::Sent { message_id, .. } => assert!(sent.insert(message_id)),
                    SendOutcome::Queued { message_id, .. } => assert!(queued.insert(message_id)),
                    other => panic!("unexpected outcome {other:?}"),
                }
            }
            Op::Deliver(i) => note(messenger.deliver(chats[i]).await.unwrap()),
            Op::Advance(minutes) => clock.advance(TimeDelta::minutes(minutes)),
        }
    }
    // Finally every customer replies: what is still queued goes out or has expired.
    clock.advance(TimeDelta::minutes(1));
    for chat in &chats {
        gateway.customer_writes(chat.business, chat.phone().unwrap());
        note(
            messenger
                .on_inbound(*chat, clock.now())
                .await
                .unwrap()
                .delivery,
        );
    }

    assert!(
        gateway.refusals().is_empty(),
        "a free-form message reached the gateway outside its window: {:?}",
        gateway.refusals()
    );
    let mut at_gateway: HashMap<String, usize> = HashMap::new();
    for m in gateway
        .delivered()
        .into_iter()
        .filter(|m| m.kind.is_free_form())
    {
        *at_gateway.entry(m.message_id).or_default() += 1;
    }
    for id in &queued {
        let times = delivered.get(id).copied().unwrap_or(0);
        assert!(
            (times == 1) ^ expired.contains(id),
            "queued {id}: delivered {times} times, expired: {}",
            expired.contains(id)
        );
        let expected = usize::from(times == 1);
        assert_eq!(
            at_gateway.get(&id.to_string()).copied().unwrap_or(0),
            expected
        );
    }
    for id in &sent {
        assert_eq!(at_gateway.get(&id.to_string()).copied(), Some(1));
    }
    assert_eq!(
        at_gateway.values().sum::<usize>(),
        sent.len() + delivered.len()
    );
    let _ = Duration::ZERO;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn schedules_keep_the_rule_and_deliver_exactly_once(ops in prop::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run(ops));
    }
}
