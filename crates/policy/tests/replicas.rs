//! Two replicas of a bot sharing one Redis: two `Messenger<RedisStore>`s, each with its
//! own connection and its own HTTP client, one stand-in gateway and one manual clock,
//! under a thousand interleaved inbound messages, sends, concurrent deliveries of the same
//! conversation, and clock jumps between batches.
//!
//! What must hold: no free-form message reaches the gateway outside its window; every
//! queued message is reported delivered by exactly one replica (and requested from the
//! gateway exactly once) or reported expired by exactly one replica, never both; and
//! nothing is left queued once every customer has written again.
//!
//! Without `redis-server` (and `REQUIRE_REDIS` unset) the test prints a skip notice and
//! passes; `REPLICAS_SEED=N` replays another operation mix.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_api::{ApiKey, Client, MessageId, RetryPolicy, TemplateMessage, TextMessage};
use lipachat_policy::{
    Delivered, DeliveryReport, DeliveryStop, ExpiredMessage, Messenger, OnClosed, PolicyConfig,
    SendOutcome,
};
use lipachat_redis::RedisStore;
use lipachat_redis::test_server::RedisServer;
use lipachat_session::{Clock, Conversation, ManualClock, OutboxStore, Sessions};
use lipachat_testkit::{MessageKind, RequestOutcome, StandInGateway};
use tokio::task::JoinSet;

/// Operations in the run (a delivery race counts as one, though it is two calls).
const OPERATIONS: usize = 1_000;
/// Operations started together, then awaited, before the clock may move.
const BATCH: usize = 20;
/// Conversations: one business, this many customers.
const CUSTOMERS: u64 = 10;
/// Queued messages expire after this long, so some do within the run.
const TTL: TimeDelta = TimeDelta::hours(48);

fn start_time() -> DateTime<Utc> {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

/// A small deterministic generator (SplitMix64), so a failing mix can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn client(gateway: &StandInGateway) -> Client {
    Client::builder(ApiKey::new(gateway.api_key()).unwrap())
        .base_url(&gateway.base_url())
        // No retries: every request the gateway sees for a queued message is one delivery
        // attempt by one replica, so two requests mean two replicas sent it.
        .retry(RetryPolicy {
            max_retries: 0,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(5),
        })
        .request_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn replica(
    url: &str,
    gateway: &StandInGateway,
    clock: &ManualClock,
) -> Messenger<RedisStore> {
    // Each replica connects on its own: separate connections to the one server.
    let store = RedisStore::connect(url).await.unwrap();
    let config = PolicyConfig::default()
        .on_closed(OnClosed::Queue(
            TemplateMessage::new("contact_share", "en").unwrap(),
        ))
        .outbox_limit(100_000)
        .outbox_ttl(TTL);
    let sessions = Sessions::new(store).with_clock(clock.clone());
    Messenger::new(sessions, client(gateway), config)
}

/// What one call of one replica gave.
enum Event {
    Sent(MessageId),
    /// Queued, with what the send delivered or expired because a reply reopened the
    /// window meanwhile.
    Queued(MessageId, usize, Vec<Delivered>, Vec<ExpiredMessage>),
    Delivery(usize, DeliveryReport),
}

/// Everything the replicas reported, for the checks at the end.
#[derive(Default)]
struct Tally {
    sent: HashSet<MessageId>,
    queued: HashSet<MessageId>,
    /// For each queued message reported delivered: the replicas that reported it.
    delivered_by: HashMap<MessageId, Vec<usize>>,
    /// For each queued message reported expired: the replicas that reported it.
    expired_by: HashMap<MessageId, Vec<usize>>,
    claimed_elsewhere: usize,
    deliveries_run: usize,
}

impl Tally {
    fn add(&mut self, event: Event) {
        match event {
            Event::Sent(id) => assert!(self.sent.insert(id), "{id} sent twice"),
            Event::Queued(id, replica, delivered, expired) => {
                assert!(self.queued.insert(id), "{id} queued twice");
                for delivered in delivered {
                    self.delivered_by
                        .entry(delivered.message_id)
                        .or_default()
                        .push(replica);
                }
                for expired in expired {
                    self.expired_by
                        .entry(expired.message_id)
                        .or_default()
                        .push(replica);
                }
            }
            Event::Delivery(replica, report) => {
                self.deliveries_run += 1;
                assert!(report.failed.is_empty(), "failed: {:?}", report.failed);
                match report.stopped {
                    None | Some(DeliveryStop::WindowNotOpen(_)) => {}
                    Some(DeliveryStop::ClaimedElsewhere(_)) => self.claimed_elsewhere += 1,
                    Some(other) => panic!("delivery by replica {replica} stopped: {other:?}"),
                }
                for delivered in report.delivered {
                    self.delivered_by
                        .entry(delivered.message_id)
                        .or_default()
                        .push(replica);
                }
                for expired in report.expired {
                    self.expired_by
                        .entry(expired.message_id)
                        .or_default()
                        .push(replica);
                }
            }
        }
    }
}

fn conversation(index: u64) -> Conversation {
    Conversation::new(
        "254110090747".parse().unwrap(),
        format!("2547000000{index:02}").parse().unwrap(),
    )
}

/// The customer writes: the gateway first, then one replica records it (and delivers
/// that conversation's outbox), so a replica never sees a window the gateway has not.
async fn customer_writes(
    gateway: &StandInGateway,
    clock: &ManualClock,
    messenger: &Messenger<RedisStore>,
    replica: usize,
    chat: Conversation,
) -> Event {
    gateway.customer_writes(chat.business, chat.phone().unwrap());
    let report = messenger.on_inbound(chat, clock.now()).await.unwrap();
    Event::Delivery(replica, report.delivery)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_redis_keep_the_window_and_deliver_each_queued_message_once() {
    let Some(server) = RedisServer::start() else {
        eprintln!(
            "two replicas on one Redis: skipped, no redis-server (set REQUIRE_REDIS=1 to make this a failure)"
        );
        return;
    };
    let seed = std::env::var("REPLICAS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6c69_7061_6368_6174_u64);
    let started = Instant::now();
    let clock = ManualClock::at(start_time());
    let gateway = std::sync::Arc::new(
        StandInGateway::builder()
            .clock(clock.clone())
            .start()
            .await
            .unwrap(),
    );
    let url = server.url();
    let replicas = [
        replica(&url, &gateway, &clock).await,
        replica(&url, &gateway, &clock).await,
    ];
    let mut rng = Rng(seed);
    let mut tally = Tally::default();
    let mut done = 0usize;
    let mut jumps = 0usize;
    while done < OPERATIONS {
        let mut batch = JoinSet::new();
        for _ in 0..BATCH.min(OPERATIONS - done) {
            done += 1;
            let chat = conversation(rng.below(CUSTOMERS));
            let r = rng.below(2) as usize;
            let messenger = replicas[r].clone();
            match rng.below(100) {
                // A customer writes (rarely, so that windows close between writes).
                0..8 => {
                    let (gateway, clock) = (gateway.clone(), clock.clone());
                    batch.spawn(async move {
                        customer_writes(&gateway, &clock, &messenger, r, chat).await
                    });
                }
                // Both replicas deliver the same conversation at the same time.
                8..30 => {
                    let other = replicas[1 - r].clone();
                    batch.spawn(async move {
                        Event::Delivery(r, messenger.deliver(chat).await.unwrap())
                    });
                    batch.spawn(async move {
                        Event::Delivery(1 - r, other.deliver(chat).await.unwrap())
                    });
                }
                // A send from either replica: sent in an open window, else queued.
                _ => {
                    let text = TextMessage::new(format!("message {done}")).unwrap();
                    batch.spawn(async move {
                        match messenger.send_text(chat, text).await.unwrap() {
                            SendOutcome::Sent { message_id, .. } => Event::Sent(message_id),
                            SendOutcome::Queued {
                                message_id,
                                delivered,
                                expired,
                                ..
                            } => Event::Queued(message_id, r, delivered, expired),
                            other => panic!("unexpected outcome {other:?}"),
                        }
                    });
                }
            }
        }
        while let Some(event) = batch.join_next().await {
            tally.add(event.unwrap());
        }
        // The clock moves only between batches, so no send straddles a jump.
        if rng.below(100) < 35 {
            let hours = 1 + rng.below(30) as i64;
            let seconds = rng.below(3_600) as i64;
            clock.advance(TimeDelta::hours(hours) + TimeDelta::seconds(seconds));
            jumps += 1;
        }
    }

    // Messages queued while a customer's reply was being recorded can stay queued in an
    // open window until the next delivery: count them, as an observation.
    let mut waiting_in_open_window = 0usize;
    for index in 0..CUSTOMERS {
        let chat = conversation(index);
        let open = replicas[0]
            .sessions()
            .decide(chat)
            .await
            .unwrap()
            .is_allowed();
        if open {
            waiting_in_open_window += replicas[0]
                .sessions()
                .store()
                .queued(chat)
                .await
                .unwrap()
                .len();
        }
    }

    // Every customer writes once more; both replicas deliver at the same time.
    let mut last = JoinSet::new();
    for index in 0..CUSTOMERS {
        let chat = conversation(index);
        let r = (index % 2) as usize;
        let (gateway, clock) = (gateway.clone(), clock.clone());
        let (writer, other) = (replicas[r].clone(), replicas[1 - r].clone());
        last.spawn(async move { customer_writes(&gateway, &clock, &writer, r, chat).await });
        last.spawn(async move { Event::Delivery(1 - r, other.deliver(chat).await.unwrap()) });
    }
    while let Some(event) = last.join_next().await {
        tally.add(event.unwrap());
    }
    // 1. No free-form message outside the gateway's window.
    let refusals = gateway.refusals();
    assert!(
        refusals.is_empty(),
        "{} refused: {refusals:?}",
        refusals.len()
    );

    // 2. Each queued message: reported delivered by exactly one replica, or expired by
    //    exactly one, never both, never neither.
    let mut twice = Vec::new();
    for id in &tally.queued {
        let delivered = tally.delivered_by.get(id).map_or(0, Vec::len);
        let expired = tally.expired_by.get(id).map_or(0, Vec::len);
        if delivered + expired != 1 {
            twice.push(format!(
                "{id}: delivered by {:?}, expired by {:?}",
                tally.delivered_by.get(id),
                tally.expired_by.get(id)
            ));
        }
    }
    assert!(
        twice.is_empty(),
        "{} of {} queued messages not accounted for exactly once:\n{}",
        twice.len(),
        tally.queued.len(),
        twice.join("\n")
    );
    for id in tally.delivered_by.keys().chain(tally.expired_by.keys()) {
        assert!(tally.queued.contains(id), "{id} reported but never queued");
    }

    // 3. The gateway agrees: each delivered queued message was requested exactly once
    //    (no second replica sent it, even to be deduplicated), expired ones never; and
    //    every free-form message it delivered was sent directly or from the outbox.
    let mut requests: HashMap<String, Vec<RequestOutcome>> = HashMap::new();
    for request in gateway.requests() {
        if request.kind.is_some_and(MessageKind::is_free_form) {
            requests
                .entry(request.message_id().unwrap().to_owned())
                .or_default()
                .push(request.outcome);
        }
    }
    for id in tally.delivered_by.keys() {
        assert_eq!(
            requests.get(&id.to_string()).map(Vec::as_slice),
            Some(&[RequestOutcome::Delivered][..]),
            "queued message {id}"
        );
    }
    for id in tally.expired_by.keys() {
        assert_eq!(
            requests.get(&id.to_string()),
            None,
            "expired message {id} was sent"
        );
    }
    for id in &tally.sent {
        assert_eq!(
            requests.get(&id.to_string()).map(Vec::as_slice),
            Some(&[RequestOutcome::Delivered][..]),
            "sent message {id}"
        );
    }
    let free_form: Vec<String> = gateway
        .delivered()
        .into_iter()
        .filter(|m| m.kind.is_free_form())
        .map(|m| m.message_id)
        .collect();
    assert_eq!(free_form.len(), tally.sent.len() + tally.delivered_by.len());
    let known: HashSet<String> = tally
        .sent
        .iter()
        .chain(tally.delivered_by.keys())
        .map(ToString::to_string)
        .collect();
    for id in &free_form {
        assert!(
            known.contains(id),
            "the gateway delivered {id}, which no replica reported"
        );
    }

    // 4. Nothing is left queued.
    for messenger in &replicas {
        let left = messenger
            .sessions()
            .store()
            .conversations_with_queued()
            .await
            .unwrap();
        assert!(left.is_empty(), "still queued in {left:?}");
    }

    // The run exercised what it is about.
    let took = started.elapsed();
    eprintln!(
        "seed {seed:#x}: {OPERATIONS} operations, {jumps} clock jumps, {} sent, {} queued, {} delivered from the outbox, {} expired, {} delivery runs ({} stopped by the other replica's claim), {waiting_in_open_window} queued in an open window before the last replies, {} gateway requests, in {took:?}",
        tally.sent.len(),
        tally.queued.len(),
        tally.delivered_by.len(),
        tally.expired_by.len(),
        tally.deliveries_run,
        tally.claimed_elsewhere,
        gateway.request_count(),
    );
    assert!(
        tally.sent.len() >= 50,
        "too few direct sends to mean anything"
    );
    assert!(
        tally.delivered_by.len() >= 50,
        "too few outbox deliveries to mean anything"
    );
    assert!(!tally.expired_by.is_empty(), "no message expired");
    assert!(jumps >= 10);
}
