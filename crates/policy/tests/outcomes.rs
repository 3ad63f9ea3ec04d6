//! Send outcomes: a send whose bookkeeping is cut short still reaches the customer
//! once; outcomes are kept for the outcome horizon, then forgotten; a status callback
//! finds its send by WhatsApp's id with one indexed lookup.
//!
//! The first scenario (issue 11, item 1): our store believes the window open, the gateway
//! refuses the free-form send as outside it (131047), and the policy queues the message
//! until the customer replies. Then the bookkeeping is cut short, in one of two ways:
//!
//! - the process is killed (SIGKILL) right after the send returns: a child process (this
//!   test binary, run again) does the send and the parent kills it as soon as it prints
//!   that the send returned;
//! - the store's write of the outcome fails once (an [`InstrumentedStore`] wrapper).
//!
//! The caller then retries with the same `messageId` (as a bot handler would), the
//! customer replies, and the stand-in gateway on loopback counts what reached the
//! customer: exactly one free-form message. Each runs on sled (both durability modes)
//! and on Redis (a throwaway `redis-server`; skipped without one unless
//! `REQUIRE_REDIS=1`).

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use chrono::TimeDelta;
use lipachat_api::{ApiKey, Client, MessageId, TemplateMessage};
use lipachat_policy::{
    Messenger, OnClosed, PolicyConfig, Reconciliation, SendOutcome, SendRequest,
};
use lipachat_redis::RedisStore;
use lipachat_redis::test_server::RedisServer;
use lipachat_session::instrumented::InstrumentedStore;
use lipachat_session::{
    Durability, Sessions, SledConfig, SledStore, Store, StoredOutcome, WindowStore,
};
use lipachat_testkit::{StandInGateway, WindowRefusal};

mod common;
use common::{card, chat};

/// Set in the child's environment: what store to open (see [`Target`]).
const CHILD_TARGET: &str = "LIPACHAT_OUTCOME_FAULT_TARGET";
/// The stand-in's base URL, its API key and the `messageId`, for the child.
const CHILD_GATEWAY: &str = "LIPACHAT_OUTCOME_FAULT_GATEWAY";
const CHILD_KEY: &str = "LIPACHAT_OUTCOME_FAULT_KEY";
const CHILD_MESSAGE_ID: &str = "LIPACHAT_OUTCOME_FAULT_MESSAGE_ID";
/// What the child prints once the send has returned.
const SENT_LINE: &str = "OUTCOME-FAULT-SEND-RETURNED";

fn config() -> PolicyConfig {
    PolicyConfig::default().on_closed(OnClosed::Queue(
        TemplateMessage::new("contact_share", "en").unwrap(),
    ))
}

fn client(base_url: &str, key: &str) -> Client {
    Client::builder(ApiKey::new(key).unwrap())
        .base_url(base_url)
        .request_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn messenger<S: Store>(store: S, gateway: &StandInGateway) -> Messenger<S> {
    messenger_with(store, gateway, config())
}

fn messenger_with<S: Store>(
    store: S,
    gateway: &StandInGateway,
    config: PolicyConfig,
) -> Messenger<S> {
    Messenger::new(
        Sessions::new(store),
        client(&gateway.base_url(), gateway.api_key()),
        config,
    )
}

/// The store a run uses, as the child is told it.
#[derive(Debug, Clone)]
enum Target {
    /// sled at a path, durable (group commit) or flushed every minute.
    Sled { path: String, durable: bool },
    /// Redis at a URL.
    Redis { url: String },
}

impl Target {
    fn encode(&self) -> String {
        match self {
            Self::Sled { path, durable } => format!("sled:{durable}:{path}"),
            Self::Redis { url } => format!("redis:{url}"),
        }
    }

    fn decode(text: &str) -> Self {
        if let Some(url) = text.strip_prefix("redis:") {
            return Self::Redis { url: url.into() };
        }
        let rest = text.strip_prefix("sled:").unwrap();
        let (durable, path) = rest.split_once(':').unwrap();
        Self::Sled {
            path: path.into(),
            durable: durable == "true",
        }
    }

    fn open_sled(path: &str, durable: bool) -> SledStore {
        let durability = if durable {
            Durability::Durable
        } else {
            Durability::Periodic {
                interval: Duration::from_secs(60),
            }
        };
        SledConfig::new(path).durability(durability).open().unwrap()
    }
}

/// The free-form messages the customer received.
fn free_form_delivered(gateway: &StandInGateway) -> usize {
    gateway.free_form_delivered_to(chat().phone().unwrap())
}

/// The child's side: opens the store, sends once under the given `messageId`, says so,
/// and waits to be killed. Does nothing unless run as the child.
#[test]
fn child_sends_then_waits_to_be_killed() {
    let Ok(target) = std::env::var(CHILD_TARGET) else {
        return;
    };
    let base_url = std::env::var(CHILD_GATEWAY).unwrap();
    let key = std::env::var(CHILD_KEY).unwrap();
    let id: MessageId = std::env::var(CHILD_MESSAGE_ID).unwrap().parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let request = SendRequest::contact(chat(), card()).message_id(id);
        let outcome = match Target::decode(&target) {
            Target::Sled { path, durable } => {
                let store = Target::open_sled(&path, durable);
                child_send(store, &base_url, &key, request).await
            }
            Target::Redis { url } => {
                let store = RedisStore::connect(&url).await.unwrap();
                child_send(store, &base_url, &key, request).await
            }
        };
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{SENT_LINE} {outcome}").unwrap();
        out.flush().unwrap();
    });
    // Nothing more happens in this process: the parent kills it now. Should the parent
    // have died, leave after a while rather than linger.
    std::thread::sleep(Duration::from_secs(120));
    std::process::exit(3);
}

async fn child_send<S: Store>(store: S, base_url: &str, key: &str, request: SendRequest) -> String {
    let messenger = Messenger::new(Sessions::new(store), client(base_url, key), config());
    // The outcome is not dropped or flushed: `forget` keeps the store's handles alive
    // until the kill, as in a process that goes on serving.
    let outcome = messenger.send(request).await;
    let name = match &outcome {
        Ok(outcome) => outcome.name().to_owned(),
        Err(error) => format!("error: {error}"),
    };
    std::mem::forget(messenger);
    name
}

/// Runs the child against `target`, kills it with SIGKILL as soon as it says the send
/// returned, and answers what it printed.
fn send_in_child_and_kill(target: &Target, gateway: &StandInGateway, id: MessageId) -> String {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_sends_then_waits_to_be_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_TARGET, target.encode())
        .env(CHILD_GATEWAY, gateway.base_url())
        .env(CHILD_KEY, gateway.api_key())
        .env(CHILD_MESSAGE_ID, id.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // The test harness may print its own words before ours on the line.
            if let Some((_, rest)) = line.split_once(SENT_LINE) {
                let _ = tx.send(rest.trim().to_owned());
                break;
            }
        }
    });
    let said = rx.recv_timeout(Duration::from_secs(60));
    // SIGKILL at once: no destructor, no flush, no clean shutdown.
    child.kill().unwrap();
    child.wait().unwrap();
    said.unwrap_or_else(|_| panic!("the child did not report its send"))
}

/// After the fault: the caller retries with the same `messageId`, then the customer
/// replies; exactly one free-form message reaches the customer, and nothing stays queued.
async fn retry_then_reply<S: Store>(store: S, gateway: &StandInGateway, id: MessageId) {
    let messenger = messenger(store, gateway);
    let retried = messenger
        .send(SendRequest::contact(chat(), card()).message_id(id))
        .await
        .unwrap();
    assert!(
        matches!(
            retried,
            SendOutcome::Queued { .. } | SendOutcome::Duplicate(_)
        ),
        "the retry must find the message queued (or queue it): {retried:?}"
    );
    assert_eq!(
        free_form_delivered(gateway),
        0,
        "nothing goes before the reply"
    );
    gateway.customer_writes(chat().business, chat().phone().unwrap());
    let report = messenger
        .on_inbound(chat(), messenger.sessions().now())
        .await
        .unwrap();
    assert_eq!(
        free_form_delivered(gateway),
        1,
        "the customer must get the message exactly once; delivered: {:?}, report: {report:?}",
        gateway.delivered_to(chat().phone().unwrap())
    );
    assert!(
        messenger
            .sessions()
            .store()
            .queued(chat())
            .await
            .unwrap()
            .is_empty(),
        "nothing stays queued"
    );
    // A retry after delivery sends nothing more.
    let again = messenger
        .send(SendRequest::contact(chat(), card()).message_id(id))
        .await
        .unwrap();
    assert!(matches!(again, SendOutcome::Duplicate(_)), "{again:?}");
    assert_eq!(free_form_delivered(gateway), 1);
}

/// Our store believes the window open (the customer "wrote" as far as we know); the
/// gateway never heard from the customer, so it answers 131047.
async fn window_open_only_in_our_store<S: Store>(store: &S) {
    store
        .record_inbound(chat(), chrono::Utc::now())
        .await
        .unwrap();
    store.flush().await.unwrap();
}

async fn sled_killed_after_send(durable: bool) {
    let gateway = StandInGateway::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = Target::open_sled(path.to_str().unwrap(), true);
        window_open_only_in_our_store(&store).await;
    }
    let id = MessageId::new();
    let target = Target::Sled {
        path: path.to_str().unwrap().to_owned(),
        durable,
    };
    let said = send_in_child_and_kill(&target, &gateway, id);
    assert_eq!(said, "queued", "the child's send was refused and queued");
    assert_eq!(gateway.refusal_count(), 1);
    retry_then_reply(
        Target::open_sled(path.to_str().unwrap(), durable),
        &gateway,
        id,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_durable_killed_right_after_the_send_delivers_once() {
    sled_killed_after_send(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_periodic_killed_right_after_the_send_delivers_once() {
    sled_killed_after_send(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_client_killed_right_after_the_send_delivers_once() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let gateway = StandInGateway::start().await.unwrap();
    let store = RedisStore::connect(&server.url()).await.unwrap();
    window_open_only_in_our_store(&store).await;
    let id = MessageId::new();
    let said = send_in_child_and_kill(&Target::Redis { url: server.url() }, &gateway, id);
    assert_eq!(said, "queued");
    retry_then_reply(store, &gateway, id).await;
}

/// The write that records the queued message's outcome fails once; the caller gets an
/// error and retries with the same `messageId`.
async fn failing_outcome_write<S: Store + Clone>(store: S) {
    let gateway = StandInGateway::start().await.unwrap();
    let store = InstrumentedStore::new(store);
    window_open_only_in_our_store(&store).await;
    let messenger = messenger(store.clone(), &gateway);
    let id = MessageId::new();
    store.fail_next(OUTCOME_WRITE, 1);
    let first = messenger
        .send(SendRequest::contact(chat(), card()).message_id(id))
        .await;
    assert!(first.is_err(), "the failed write is reported: {first:?}");
    assert_eq!(store.calls(OUTCOME_WRITE), 1, "the fault was met");
    assert_eq!(gateway.refusal_count(), 1);
    retry_then_reply(store, &gateway, id).await;
}

/// The store operation that writes the queued message's outcome (with the message).
const OUTCOME_WRITE: &str = "enqueue_with_outcome";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_failing_outcome_write_delivers_once() {
    let dir = tempfile::tempdir().unwrap();
    failing_outcome_write(SledStore::open(dir.path().join("db")).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_failing_outcome_write_delivers_once() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    failing_outcome_write(RedisStore::connect(&server.url()).await.unwrap()).await;
}

/// The closed-window path's own guard, without the atomic write to lean on: a copy of
/// the message queued by an earlier attempt whose outcome is gone (here: written again
/// to expire at once) is found by the logical send it belongs to, and the retry queues
/// nothing more.
async fn queued_copy_without_outcome<S: Store + Clone>(store: S) {
    let gateway = StandInGateway::start().await.unwrap();
    window_open_only_in_our_store(&store).await;
    let messenger = messenger(store.clone(), &gateway);
    let id = MessageId::new();
    let first = messenger
        .send(SendRequest::contact(chat(), card()).message_id(id))
        .await
        .unwrap();
    let SendOutcome::Queued {
        message_id: queued_id,
        ..
    } = first
    else {
        panic!("expected Queued, got {first:?}");
    };
    assert_ne!(queued_id, id, "a refused id is not queued again");
    store
        .put_outcome(
            chat(),
            StoredOutcome::new(id, "{}").keep_for(TimeDelta::milliseconds(1)),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(messenger.previous_outcome(chat(), id).await.unwrap(), None);
    let retried = messenger
        .send(SendRequest::contact(chat(), card()).message_id(id))
        .await
        .unwrap();
    assert!(
        matches!(retried, SendOutcome::Queued { message_id, template: None, .. } if message_id == queued_id),
        "the retry finds the queued copy: {retried:?}"
    );
    assert_eq!(
        store.queued(chat()).await.unwrap().len(),
        1,
        "one copy queued"
    );
    retry_then_reply(store, &gateway, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_queued_copy_without_its_outcome_is_not_queued_again() {
    let dir = tempfile::tempdir().unwrap();
    queued_copy_without_outcome(SledStore::open(dir.path().join("db")).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_queued_copy_without_its_outcome_is_not_queued_again() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    queued_copy_without_outcome(RedisStore::connect(&server.url()).await.unwrap()).await;
}

/// Within the horizon a repeated `messageId` sends nothing; after it the outcome is gone
/// and the call reaches the gateway again (whose own deduplication is then all that
/// keeps the customer from a second copy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_message_id_is_answered_from_the_store_within_the_horizon_only() {
    let gateway = StandInGateway::start().await.unwrap();
    gateway.customer_writes(chat().business, chat().phone().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let horizon = TimeDelta::milliseconds(300);
    let messenger = messenger_with(
        SledStore::open(dir.path().join("db")).unwrap(),
        &gateway,
        PolicyConfig::default().outcome_horizon(horizon),
    );
    messenger
        .sessions()
        .record_inbound_now(chat())
        .await
        .unwrap();
    let id = MessageId::new();
    let send = || messenger.send(SendRequest::contact(chat(), card()).message_id(id));
    assert_eq!(send().await.unwrap().name(), "sent");
    assert_eq!(gateway.request_count(), 1);
    let again = send().await.unwrap();
    assert!(matches!(again, SendOutcome::Duplicate(_)), "{again:?}");
    assert_eq!(gateway.request_count(), 1, "within the horizon: not sent");

    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(messenger.previous_outcome(chat(), id).await.unwrap(), None);
    assert_eq!(send().await.unwrap().name(), "sent");
    assert_eq!(
        gateway.request_count(),
        2,
        "after the horizon the call reaches the gateway again"
    );
    assert_eq!(gateway.delivered_count(), 1, "which deduplicates it");
}

/// A "window closed" status callback that names only WhatsApp's id is tied back to its
/// send with one indexed lookup, not a read of every outcome of the conversation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_callback_finds_its_send_by_whatsapp_id_without_a_scan() {
    let gateway = StandInGateway::builder()
        .refusal(WindowRefusal::StatusCallback)
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = InstrumentedStore::new(SledStore::open(dir.path().join("db")).unwrap());
    let messenger = messenger(store.clone(), &gateway);
    // Our store believes the window open; the gateway accepts each send and fails it
    // later by status callback.
    store
        .record_inbound(chat(), chrono::Utc::now())
        .await
        .unwrap();
    for _ in 0..50 {
        messenger
            .send(SendRequest::contact(chat(), card()).message_id(MessageId::new()))
            .await
            .unwrap();
    }
    let callbacks = gateway.take_status_callbacks();
    assert_eq!(callbacks.len(), 50);
    let status = &callbacks[17]["entry"][0]["changes"][0]["value"]["statuses"][0];
    let wa_id = status["id"].as_str().unwrap();

    store.reset_counts();
    let reconciled = messenger
        .on_window_closed_report(chat(), None, Some(wa_id), chrono::Utc::now())
        .await
        .unwrap();
    assert!(
        matches!(reconciled, Reconciliation::Handled { .. }),
        "{reconciled:?}"
    );
    assert_eq!(store.calls("outcomes"), 0, "no scan of the outcomes");
    assert_eq!(store.calls("outcome_by_wa_id"), 1, "one indexed lookup");
    // Replayed, the report finds the message already handled.
    let replayed = messenger
        .on_window_closed_report(chat(), None, Some(wa_id), chrono::Utc::now())
        .await
        .unwrap();
    assert!(
        matches!(replayed, Reconciliation::ClosureRecorded),
        "{replayed:?}"
    );
    assert_eq!(store.calls("outcomes"), 0);
}
