//! Attacks on commit 66cc2a4: a window-closed report that finds no send is kept under a
//! key derived from its WhatsApp id, and the send or delivery that stores an outcome with
//! that id handles it "under the send's claim (taken otherwise)".
//!
//! The three losses below were holes on 66cc2a4 (each test's description says what
//! happened then); they pass since: a call that finds a kept report waits a little for a
//! claim another call holds (then answers `SendInProgress` rather than success), a retry
//! that finds a sent or delivered outcome looks for a kept report too, and a delivery
//! looks for one before the message leaves the outbox (a failed look leaves it queued).
//! The last tests (two copies of a report on two replicas racing the send's answer at
//! three moments) were added after: they fail when the report is not kept (seen), and
//! held against two planted double-making changes (a requeue under a random id, and the
//! re-handling filter loosened), which the report's lookup by identity still stopped.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use lipachat_api::{ApiKey, Client, MessageId, RetryPolicy, WebhookParser};
use lipachat_policy::{Messenger, OnClosed, PolicyConfig, PolicyError, SendOutcome, SendRequest};
use lipachat_redis::RedisStore;
use lipachat_redis::test_server::RedisServer;
use lipachat_session::instrumented::{Fault, InstrumentedStore};
use lipachat_session::{Sessions, SledStore, Store};
use lipachat_testkit::{StandInGateway, WindowRefusal};

mod common;
use common::{card, chat, customer, invite};

/// Leases long enough that a claim held by one call outlives the race below.
const LEASE: TimeDelta = TimeDelta::seconds(5);

/// How long the stand-in holds back its answer to one request.
const IN_FLIGHT: Duration = Duration::from_millis(400);

fn client(gateway: &StandInGateway) -> Client {
    Client::builder(ApiKey::new(gateway.api_key()).unwrap())
        .base_url(&gateway.base_url())
        .retry(RetryPolicy {
            max_retries: 1,
            initial_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(2),
        })
        .request_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn queue_config() -> PolicyConfig {
    PolicyConfig::default()
        .on_closed(OnClosed::Queue(invite()))
        .send_lease(LEASE)
        .delivery_lease(LEASE)
}

/// A stand-in gateway that accepts a send the customer's window does not allow and fails
/// it by status callback (131047), as WhatsApp does.
async fn callback_gateway() -> Arc<StandInGateway> {
    Arc::new(
        StandInGateway::builder()
            .refusal(WindowRefusal::StatusCallback)
            .start()
            .await
            .unwrap(),
    )
}

/// Two replicas on `store`: one that handles the status callbacks (the reporter), and one
/// whose store calls a test can make fail (through the returned `InstrumentedStore`).
fn reporter_and_flaky<S: Store + Clone>(
    store: S,
    gateway: &StandInGateway,
) -> (
    Messenger<S>,
    InstrumentedStore<S>,
    Messenger<InstrumentedStore<S>>,
) {
    let reporter = Messenger::new(
        Sessions::new(store.clone()),
        client(gateway),
        queue_config(),
    );
    let flaky = InstrumentedStore::new(store);
    let messenger = Messenger::new(
        Sessions::new(flaky.clone()),
        client(gateway),
        queue_config(),
    );
    (reporter, flaky, messenger)
}

/// Retries `attempt` until it succeeds (at most 40 times).
async fn until_ok<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, PolicyError>>,
{
    let mut errors = Vec::new();
    for _ in 0..40 {
        match attempt().await {
            Ok(value) => return value,
            Err(error) => {
                errors.push(error.to_string());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    panic!("{what} never succeeded: {errors:?}");
}

/// Handles every status callback the stand-in sent, twice (a redelivered webhook).
async fn handle_callbacks<S: Store>(messenger: &Messenger<S>, gateway: &StandInGateway) -> usize {
    let parser = WebhookParser::new();
    let callbacks = gateway.take_status_callbacks();
    for callback in &callbacks {
        let events = parser
            .parse(callback.to_string().as_bytes(), Utc::now())
            .unwrap();
        for _ in 0..2 {
            for event in &events {
                until_ok("the status callback", || messenger.on_webhook_event(event)).await;
            }
        }
    }
    callbacks.len()
}

/// The customer replies; everything left is handled; how many free-form copies reached
/// the customer.
async fn after_the_reply<S: Store>(messenger: &Messenger<S>, gateway: &StandInGateway) -> usize {
    gateway.customer_writes(chat().business, customer());
    until_ok("the customer's reply", || {
        messenger.on_inbound(chat(), messenger.sessions().now())
    })
    .await;
    for _ in 0..4 {
        handle_callbacks(messenger, gateway).await;
        until_ok("a delivery", || messenger.deliver(chat())).await;
    }
    gateway.free_form_delivered_to(customer())
}

/// Our store hears of a message from the customer that the gateway does not count.
async fn believed_open<S: Store>(messenger: &Messenger<S>) {
    let at = messenger.sessions().now() - TimeDelta::seconds(2);
    messenger
        .sessions()
        .record_inbound(chat(), at)
        .await
        .unwrap();
}

macro_rules! on_both_stores {
    ($(#[$attr:meta])* $sled:ident, $redis:ident, $scenario:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $(#[$attr])*
        async fn $sled() {
            let dir = tempfile::tempdir().unwrap();
            $scenario(SledStore::open(dir.path().join("db")).unwrap()).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $(#[$attr])*
        async fn $redis() {
            let Some(server) = RedisServer::start() else {
                return;
            };
            $scenario(RedisStore::connect(&server.url()).await.unwrap()).await;
        }
    };
}

// ---------------------------------------------------------------------------------------
// Claim 1/4: a delivery that finds a kept report gives up when the send claim on the
// message's origin is held, assuming the holder handles the report; a caller retrying its
// send with the same messageId holds that claim only to read the earlier outcome.
// ---------------------------------------------------------------------------------------

/// A message queued under the caller's `messageId` is delivered; the gateway accepts it
/// and fails it by status callback (131047), and the callback overtakes the delivery's
/// answer: it finds no send and is kept. Meanwhile the caller retries its send with the
/// same `messageId` (an ordinary retried handler): the retry holds the send claim on that
/// id while it reads the earlier outcome (a slow read here). The delivery stores its
/// outcome, finds the kept report, cannot take the claim, and records the message
/// delivered; the retry only returns the duplicate, and the report was acknowledged:
/// nothing handles it any more, and the message never reaches the customer.
async fn kept_report_while_a_retry_holds_the_claim<S: Store + Clone>(store: S) {
    let gateway = callback_gateway().await;
    let messenger = Messenger::new(
        Sessions::new(store.clone()),
        client(&gateway),
        queue_config(),
    );
    // The caller's retry runs on a replica whose outcome reads are slow.
    let slow = InstrumentedStore::new(store);
    slow.fault_at("outcome", 1, Fault::Pause(Duration::from_millis(900)));
    let retrying = Messenger::new(Sessions::new(slow), client(&gateway), queue_config());
    let id = MessageId::new();
    let send = SendRequest::contact(chat(), card()).message_id(id);
    // Nothing known of the customer: queued at once under its own id.
    let queued = messenger.send(send.clone()).await.unwrap();
    assert_eq!(queued.name(), "queued", "{queued:?}");
    believed_open(&messenger).await;
    gateway.stall_next(1, IN_FLIGHT);
    let before = gateway.request_count();
    let delivering = tokio::spawn({
        let messenger = messenger.clone();
        async move { messenger.deliver(chat()).await }
    });
    tokio::time::sleep(IN_FLIGHT / 4).await;
    assert_eq!(
        gateway.request_count(),
        before + 1,
        "the gateway judged the delivery"
    );
    // The report overtakes the delivery's answer: kept.
    assert_eq!(handle_callbacks(&messenger, &gateway).await, 1);
    // The caller retries its send while the delivery's answer is on its way.
    let retry = tokio::spawn(async move { retrying.send(send).await });
    let delivered = delivering.await.unwrap().unwrap();
    let retried = retry.await.unwrap().unwrap();
    // The retry answers the earlier outcome, or (when it read the delivered outcome and
    // the kept report before the delivery could handle it) the message queued again.
    assert!(
        matches!(
            retried,
            SendOutcome::Duplicate(_) | SendOutcome::Queued { .. }
        ),
        "{retried:?}"
    );
    eprintln!("delivery: {delivered:?}");
    assert_eq!(
        after_the_reply(&messenger, &gateway).await,
        1,
        "the failed delivery reaches the customer after the reply"
    );
}

on_both_stores!(
    sled_a_kept_report_met_while_a_retry_holds_the_claim_still_gets_through,
    redis_a_kept_report_met_while_a_retry_holds_the_claim_still_gets_through,
    kept_report_while_a_retry_holds_the_claim
);

// ---------------------------------------------------------------------------------------
// Claim 1/4: one failed store call after the outcome is stored. The kept report is looked
// for once; if that look (or its handling) fails, the call fails after the outcome was
// stored, and its retry finds the outcome and never looks again.
// ---------------------------------------------------------------------------------------

/// A send under the caller's `messageId` is accepted and failed by a status callback
/// that overtakes its answer (kept). The send stores its outcome, then the one read that
/// looks for the kept report fails (a dropped connection): the send answers an error.
/// The caller retries with the same `messageId` and gets the stored "sent" back as a
/// duplicate; the report was acknowledged; the message never reaches the customer.
async fn send_whose_look_for_the_report_fails<S: Store + Clone>(store: S) {
    let gateway = callback_gateway().await;
    let (reporter, flaky, messenger) = reporter_and_flaky(store, &gateway);
    believed_open(&messenger).await;
    let id = MessageId::new();
    let send = SendRequest::contact(chat(), card()).message_id(id);
    flaky.reset_counts();
    // The send reads its messageId's outcome once before sending (none), once after
    // storing its own (the kept report's key): the second read fails.
    flaky.fault_at("outcome", 2, Fault::Before);
    gateway.stall_next(1, IN_FLIGHT);
    let before = gateway.request_count();
    let sending = tokio::spawn({
        let messenger = messenger.clone();
        let send = send.clone();
        async move { messenger.send(send).await }
    });
    tokio::time::sleep(IN_FLIGHT / 4).await;
    assert_eq!(
        gateway.request_count(),
        before + 1,
        "the gateway judged the send"
    );
    assert_eq!(handle_callbacks(&reporter, &gateway).await, 1);
    let first = sending.await.unwrap();
    assert!(flaky.struck(), "the look for the kept report failed");
    assert!(first.is_err(), "{first:?}");
    let retried = until_ok("the retried send", || messenger.send(send.clone())).await;
    eprintln!("retried: {retried:?}");
    assert_eq!(
        after_the_reply(&messenger, &gateway).await,
        1,
        "the failed send reaches the customer after the reply"
    );
}

on_both_stores!(
    sled_a_send_whose_look_for_the_kept_report_fails_still_gets_through,
    redis_a_send_whose_look_for_the_kept_report_fails_still_gets_through,
    send_whose_look_for_the_report_fails
);

/// The same on the delivery side: the delivery's answer is overtaken by the report
/// (kept); the delivery takes the message out of the outbox with its outcome, then its
/// look for the kept report fails: the delivery answers an error, the next finds an
/// empty outbox, and the message never reaches the customer.
async fn delivery_whose_look_for_the_report_fails<S: Store + Clone>(store: S) {
    let gateway = callback_gateway().await;
    let (reporter, flaky, messenger) = reporter_and_flaky(store, &gateway);
    let queued = messenger
        .send(SendRequest::contact(chat(), card()).message_id(MessageId::new()))
        .await
        .unwrap();
    assert_eq!(queued.name(), "queued", "{queued:?}");
    believed_open(&messenger).await;
    flaky.reset_counts();
    // The delivery's first read of an outcome is the kept report's key.
    flaky.fault_at("outcome", flaky.calls("outcome") + 1, Fault::Before);
    gateway.stall_next(1, IN_FLIGHT);
    let before = gateway.request_count();
    let delivering = tokio::spawn({
        let messenger = messenger.clone();
        async move { messenger.deliver(chat()).await }
    });
    tokio::time::sleep(IN_FLIGHT / 4).await;
    assert_eq!(
        gateway.request_count(),
        before + 1,
        "the gateway judged the delivery"
    );
    assert_eq!(handle_callbacks(&reporter, &gateway).await, 1);
    let first = delivering.await.unwrap();
    eprintln!("first delivery: {first:?}; calls {:?}", flaky.order());
    assert!(flaky.struck(), "the look for the kept report failed");
    assert!(first.is_err(), "{first:?}");
    assert_eq!(
        after_the_reply(&messenger, &gateway).await,
        1,
        "the failed delivery reaches the customer after the reply"
    );
}

on_both_stores!(
    sled_a_delivery_whose_look_for_the_kept_report_fails_still_gets_through,
    redis_a_delivery_whose_look_for_the_kept_report_fails_still_gets_through,
    delivery_whose_look_for_the_report_fails
);

// ---------------------------------------------------------------------------------------
// Claim 5: hostile reports. Held: nothing panics, and a send afterwards is unaffected.
// ---------------------------------------------------------------------------------------

/// Reports naming a WhatsApp id that no send has: empty, one byte, 1 MiB, control and
/// non-ASCII characters, JSON and Redis syntax; and one naming only a `messageId` of
/// ours. Each records the closure only (nothing panics, nothing is stored that a later
/// send in the conversation mistakes for its own report): the next send is sent once.
async fn hostile_reports_then_a_send<S: Store + Clone>(store: S) {
    let gateway = Arc::new(StandInGateway::start().await.unwrap());
    let messenger = Messenger::new(Sessions::new(store), client(&gateway), queue_config());
    let huge = "w".repeat(1 << 20);
    let hostile = [
        "",
        "x",
        huge.as_str(),
        "\0\u{1b}[2J\r\n",
        "wamid.\u{202e}é\u{1F600}",
        "\"}],\"kind\":\"sent\"",
        "*\r\n$3\r\nDEL\r\n",
    ];
    let id = MessageId::new();
    for wa_id in hostile {
        let handled = messenger
            .on_window_closed_report(chat(), None, Some(wa_id), Utc::now())
            .await
            .unwrap();
        assert_eq!(format!("{handled:?}"), "ClosureRecorded");
    }
    let handled = messenger
        .on_window_closed_report(chat(), Some(id), None, Utc::now())
        .await
        .unwrap();
    assert_eq!(format!("{handled:?}"), "ClosureRecorded");
    gateway.customer_writes(chat().business, customer());
    messenger
        .on_inbound(chat(), messenger.sessions().now())
        .await
        .unwrap();
    let sent = messenger
        .send(SendRequest::contact(chat(), card()).message_id(id))
        .await
        .unwrap();
    assert_eq!(sent.name(), "sent", "{sent:?}");
    let fresh = messenger
        .send(SendRequest::contact(chat(), card()))
        .await
        .unwrap();
    assert_eq!(fresh.name(), "sent", "{fresh:?}");
    assert_eq!(gateway.free_form_delivered_to(customer()), 2);
}

on_both_stores!(
    sled_hostile_reports_change_nothing_but_the_closure,
    redis_hostile_reports_change_nothing_but_the_closure,
    hostile_reports_then_a_send
);

// ---------------------------------------------------------------------------------------
// Claim 2: no double. Two copies of the report, handled at once on two replicas, race the
// send's answer at three moments: well before it, just before it (racing the send's
// store-then-look), and after it.
// ---------------------------------------------------------------------------------------

/// A send under the caller's `messageId` whose answer the gateway holds back for
/// [`IN_FLIGHT`]; `report_after` into it, the gateway's failed status (131047) is handled
/// by two replicas at once. Whatever the order, the send's call ends without error and
/// the message reaches the customer exactly once after the reply.
async fn two_reports_racing_the_answer<S: Store + Clone>(store: S, report_after: Duration) {
    let gateway = callback_gateway().await;
    let a = Messenger::new(
        Sessions::new(store.clone()),
        client(&gateway),
        queue_config(),
    );
    let b = Messenger::new(Sessions::new(store), client(&gateway), queue_config());
    believed_open(&a).await;
    let id = MessageId::new();
    gateway.stall_next(1, IN_FLIGHT);
    let sending = tokio::spawn({
        let a = a.clone();
        async move {
            a.send(SendRequest::contact(chat(), card()).message_id(id))
                .await
        }
    });
    tokio::time::sleep(report_after).await;
    let callbacks = gateway.take_status_callbacks();
    assert_eq!(
        callbacks.len(),
        1,
        "the gateway failed the send by callback"
    );
    let events = WebhookParser::new()
        .parse(callbacks[0].to_string().as_bytes(), Utc::now())
        .unwrap();
    let on = |messenger: &Messenger<S>| {
        let messenger = messenger.clone();
        let events = events.clone();
        async move {
            for event in &events {
                until_ok("a copy of the report", || messenger.on_webhook_event(event)).await;
            }
        }
    };
    tokio::join!(on(&a), on(&b));
    let sent = sending.await.unwrap();
    assert!(sent.is_ok(), "{sent:?}");
    assert_eq!(
        after_the_reply(&a, &gateway).await,
        1,
        "the failed send reaches the customer once after the reply ({sent:?})"
    );
}

async fn two_reports_well_before_the_answer<S: Store + Clone>(store: S) {
    two_reports_racing_the_answer(store, IN_FLIGHT / 4).await;
}

async fn two_reports_just_before_the_answer<S: Store + Clone>(store: S) {
    two_reports_racing_the_answer(store, IN_FLIGHT - Duration::from_millis(3)).await;
}

async fn two_reports_after_the_answer<S: Store + Clone>(store: S) {
    two_reports_racing_the_answer(store, IN_FLIGHT + Duration::from_millis(60)).await;
}

on_both_stores!(
    sled_two_reports_well_before_the_answer_deliver_once,
    redis_two_reports_well_before_the_answer_deliver_once,
    two_reports_well_before_the_answer
);

on_both_stores!(
    sled_two_reports_just_before_the_answer_deliver_once,
    redis_two_reports_just_before_the_answer_deliver_once,
    two_reports_just_before_the_answer
);

on_both_stores!(
    sled_two_reports_after_the_answer_deliver_once,
    redis_two_reports_after_the_answer_deliver_once,
    two_reports_after_the_answer
);
