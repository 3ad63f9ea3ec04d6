//! Attack on this stop's unboxed send futures: every send path, polled from a thread with
//! the default 2 MiB stack of a test thread (explicitly, so `RUST_MIN_STACK` cannot hide
//! an overflow) on a current-thread runtime, so the whole path's poll frames sit on that
//! stack: a closed window's invitation with a catalog fetch, a queued copy delivered on
//! the customer's reply, a send naming its `messageId` and its duplicate, a template send,
//! and a window-closed report's reconciliation. The stand-in gateway is on loopback; each
//! path runs on sled on disk and on a throwaway `redis-server` (skipped without one unless
//! `REQUIRE_REDIS=1`). An overflow aborts the test binary.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use std::future::Future;

use lipachat_api::{ContactMessage, ContactPhone, MessageId, TemplateMessage};
use lipachat_policy::{
    CatalogSettings, Messenger, OnClosed, PolicyConfig, Reconciliation, SendOutcome, SendRequest,
    TemplateRequest,
};
use lipachat_redis::RedisStore;
use lipachat_redis::test_server::RedisServer;
use lipachat_session::{Conversation, ManualClock, Sessions, SledStore, Store};
use lipachat_testkit::{StandInGateway, template_entry};

/// The stack a test thread has by default.
const TEST_THREAD_STACK: usize = 2 << 20;

/// Runs `work` to the end on a current-thread runtime polled by a 2 MiB thread.
fn on_a_test_threads_stack<F: Future<Output = ()>>(work: impl FnOnce() -> F + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(TEST_THREAD_STACK)
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(work());
        })
        .unwrap()
        .join()
        .unwrap();
}

fn chat() -> Conversation {
    Conversation::parse("254110090747", "254712345678").unwrap()
}

fn card() -> ContactMessage {
    ContactMessage::new(
        "Support",
        vec![ContactPhone::new("254700000001".parse().unwrap(), "Work")],
    )
    .unwrap()
}

/// The invitation: a utility template with one body value, approved in the catalog.
fn shipped() -> TemplateMessage {
    TemplateMessage::new("shipped", "en")
        .unwrap()
        .with_body_placeholders(["A-42"])
        .unwrap()
}

async fn messenger<S: Store>(on_closed: OnClosed, store: S) -> (StandInGateway, Messenger<S>) {
    let clock = ManualClock::at("2026-11-23T10:00:00Z".parse().unwrap());
    let gateway = common::clocked_gateway(&clock).await;
    gateway.set_templates(
        chat().business,
        vec![template_entry(
            "shipped",
            "en",
            "UTILITY",
            "APPROVED",
            None,
            "Order {{1}} has shipped",
        )],
    );
    let sessions = Sessions::new(store).with_clock(clock);
    let config = PolicyConfig::default()
        .on_closed(on_closed)
        .catalog(CatalogSettings::default());
    let messenger = Messenger::new(sessions, common::quick_client(&gateway), config);
    (gateway, messenger)
}

/// A closed window's invitation, after a catalog fetch.
async fn invitation<S: Store>(store: S) {
    let (gateway, messenger) = messenger(OnClosed::Template(shipped()), store).await;
    let outcome = messenger
        .send(SendRequest::contact(chat(), card()).message_id(MessageId::new()))
        .await
        .unwrap();
    assert!(!matches!(outcome, SendOutcome::Sent { .. }), "{outcome:?}");
    assert_eq!(
        gateway.template_requests().len(),
        1,
        "the catalog was fetched"
    );
    assert_eq!(gateway.delivered_count(), 1, "the invitation went out");
}

/// A queued copy delivered on the reply, a send naming its `messageId` and its
/// duplicate, a template send, and a window-closed report reconciled.
async fn queued_delivered_and_reconciled<S: Store>(store: S) {
    let (gateway, messenger) = messenger(OnClosed::Queue(shipped()), store).await;
    let queued = messenger.send_contact(chat(), card()).await.unwrap();
    assert!(matches!(queued, SendOutcome::Queued { .. }), "{queued:?}");
    gateway.customer_writes(chat().business, chat().phone().unwrap());
    messenger
        .on_inbound(chat(), messenger.sessions().now())
        .await
        .unwrap();
    messenger.deliver(chat()).await.unwrap();
    let id = MessageId::new();
    let request = SendRequest::contact(chat(), card()).message_id(id);
    let first = messenger.send(request.clone()).await.unwrap();
    assert!(matches!(first, SendOutcome::Sent { .. }), "{first:?}");
    let again = messenger.send(request).await.unwrap();
    let SendOutcome::Duplicate(previous) = again else {
        panic!("a duplicate returns the earlier outcome, got {again:?}")
    };
    assert_eq!(previous.message_id, id);
    assert_eq!(gateway.free_form_delivered_to(chat().phone().unwrap()), 2);
    messenger
        .send_template(TemplateRequest::new(chat(), shipped()).message_id(MessageId::new()))
        .await
        .unwrap();
    let now = messenger.sessions().now();
    let reconciled = messenger
        .on_window_closed_report(chat(), Some(id), None, now)
        .await
        .unwrap();
    assert!(
        matches!(reconciled, Reconciliation::Handled { .. }),
        "{reconciled:?}"
    );
}

/// Tests of `scenario` on sled and on Redis, each on a 2 MiB thread.
macro_rules! on_both_stores {
    ($sled:ident, $redis:ident, $scenario:ident) => {
        #[test]
        fn $sled() {
            on_a_test_threads_stack(|| async {
                let dir = tempfile::tempdir().unwrap();
                $scenario(SledStore::open(dir.path().join("db")).unwrap()).await;
            });
        }

        #[test]
        fn $redis() {
            let Some(server) = RedisServer::start() else {
                return;
            };
            let url = server.url();
            on_a_test_threads_stack(move || async move {
                $scenario(RedisStore::connect(&url).await.unwrap()).await;
            });
        }
    };
}

on_both_stores!(
    sled_invitation_with_a_catalog_fetch_fits_a_test_threads_stack,
    redis_invitation_with_a_catalog_fetch_fits_a_test_threads_stack,
    invitation
);

on_both_stores!(
    sled_queued_delivered_and_reconciled_fits_a_test_threads_stack,
    redis_queued_delivered_and_reconciled_fits_a_test_threads_stack,
    queued_delivered_and_reconciled
);
