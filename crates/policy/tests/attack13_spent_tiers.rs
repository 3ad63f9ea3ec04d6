//! Attack on the thread's memory of the last month found used up: several messengers in
//! one process, each on its own sled store, send for the same business number in the
//! same month from the same threads. One messenger's used-up free tier must never price
//! another's sends as billed, whether the sends share one thread (a current-thread
//! runtime) or move between two workers; and the messenger that used its tier up keeps
//! pricing as billed. The stand-in gateway is on loopback.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use lipachat_api::{ContactMessage, ContactPhone};
use lipachat_policy::consent::PricingConfig;
use lipachat_policy::{Messenger, PolicyConfig, SendOutcome, SendRequest};
use lipachat_session::{Conversation, ManualClock, Sessions, SledStore};
use lipachat_testkit::StandInGateway;

/// The free service messages a month, per business number.
const TIER: u64 = 2;

fn chat() -> Conversation {
    Conversation::parse("254110090747", "254712345678").unwrap()
}

fn contact_card() -> ContactMessage {
    ContactMessage::new(
        "Help desk",
        vec![ContactPhone::new("254700000002".parse().unwrap(), "Office")],
    )
    .unwrap()
}

/// A messenger on its own sled store in `dir`, with a free tier of [`TIER`], whose
/// window with [`chat`] is open.
async fn open_messenger(
    gateway: &StandInGateway,
    clock: &ManualClock,
    dir: &tempfile::TempDir,
) -> Messenger<SledStore> {
    let sessions =
        Sessions::new(SledStore::open(dir.path().join("db")).unwrap()).with_clock(clock.clone());
    let pricing = PricingConfig {
        service_free_per_month: Some(TIER),
        ..PricingConfig::default()
    };
    let messenger = Messenger::new(
        sessions,
        common::quick_client(gateway),
        PolicyConfig::default().pricing(pricing),
    );
    gateway.customer_writes(chat().business, chat().phone().unwrap());
    messenger
        .on_inbound(chat(), messenger.sessions().now())
        .await
        .unwrap();
    messenger
}

/// Whether `messenger`'s next send to [`chat`] is priced free.
async fn next_send_is_free(messenger: &Messenger<SledStore>) -> bool {
    let outcome = messenger
        .send(SendRequest::contact(chat(), contact_card()))
        .await
        .unwrap();
    assert!(matches!(outcome, SendOutcome::Sent { .. }), "{outcome:?}");
    outcome.pricing().unwrap().free
}

async fn each_messenger_prices_its_own_tier() {
    // After 1 October 2026, when service messages past the free tier are billed.
    let clock = ManualClock::at("2026-11-23T10:00:00Z".parse().unwrap());
    let gateway = common::clocked_gateway(&clock).await;
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let first = open_messenger(&gateway, &clock, &dirs[0]).await;
    for _ in 0..TIER {
        assert!(next_send_is_free(&first).await);
    }
    // Used up: billed, and again (the second answered from this thread's memory).
    assert!(!next_send_is_free(&first).await);
    assert!(!next_send_is_free(&first).await);
    // Another messenger, same business, same month, same thread(s): its own store has
    // counted nothing, so its sends are free until its own tier is used up.
    let second = open_messenger(&gateway, &clock, &dirs[1]).await;
    for _ in 0..TIER {
        assert!(
            next_send_is_free(&second).await,
            "priced by another's memory"
        );
        assert!(!next_send_is_free(&first).await);
    }
    assert!(!next_send_is_free(&second).await);
    // One made after the first is dropped is not confused with it either.
    drop(first);
    let third = open_messenger(&gateway, &clock, &dirs[2]).await;
    assert!(
        next_send_is_free(&third).await,
        "priced by a dropped messenger's memory"
    );
}

#[tokio::test]
async fn a_used_up_tier_is_one_messengers_own_on_one_thread() {
    each_messenger_prices_its_own_tier().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_up_tier_is_one_messengers_own_across_workers() {
    tokio::spawn(each_messenger_prices_its_own_tier())
        .await
        .unwrap();
}
