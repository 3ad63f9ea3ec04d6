//! The redelivery memory of the sled store on a real disk: it survives a reopen, it is
//! bounded by its horizon, and the engine applies the horizon on the receipt clock.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::Clock;
use lipachat_session::{
    Conversation, InboundId, InboundReceipt, ManualClock, Sessions, SledStore, WindowStore,
};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn chat() -> Conversation {
    Conversation::parse("254110090747", "254712345678").unwrap()
}

fn id(n: usize) -> InboundId {
    InboundId::new(&format!("wamid.{n}")).unwrap()
}

#[tokio::test]
async fn a_seen_id_is_still_seen_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let at = t("2026-11-23T10:00:00Z");
    let until = at + TimeDelta::days(7);
    {
        let store = SledStore::open(&path).unwrap();
        let first = store
            .record_inbound_once(chat(), at, &id(1), at, until)
            .await
            .unwrap();
        assert!(matches!(first, InboundReceipt::Recorded(_)));
    }
    let store = SledStore::open(&path).unwrap();
    let again = store
        .record_inbound_once(chat(), at, &id(1), at + TimeDelta::days(2), until)
        .await
        .unwrap();
    assert_eq!(
        again,
        InboundReceipt::Duplicate {
            first_received_at: at
        }
    );
}

#[tokio::test]
async fn the_memory_is_pruned_past_its_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    let at = t("2026-11-23T10:00:00Z");
    for n in 0..50 {
        store
            .record_inbound_once(chat(), at, &id(n), at, at + TimeDelta::hours(1))
            .await
            .unwrap();
    }
    assert_eq!(store.remembered_inbound_ids(), 50);
    // A day later the fifty are past their horizon; ten new ids prune them as they come.
    let later = at + TimeDelta::days(1);
    for n in 100..110 {
        store
            .record_inbound_once(chat(), later, &id(n), later, later + TimeDelta::hours(1))
            .await
            .unwrap();
    }
    assert_eq!(store.remembered_inbound_ids(), 10);
    // An expired id that was pruned is new again.
    let receipt = store
        .record_inbound_once(chat(), later, &id(3), later, later + TimeDelta::hours(1))
        .await
        .unwrap();
    assert!(matches!(receipt, InboundReceipt::Recorded(_)));
}

#[tokio::test]
async fn the_engine_remembers_ids_for_its_horizon_on_the_receipt_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(t("2026-11-23T10:00:00Z"));
    let sessions = Sessions::new(SledStore::open(dir.path().join("db")).unwrap())
        .with_clock(clock.clone())
        .with_redelivery_horizon(TimeDelta::days(2));
    assert_eq!(sessions.redelivery_horizon(), TimeDelta::days(2));
    // Sent a day before it arrived: the horizon runs from the receipt.
    let sent = clock.now() - TimeDelta::days(1);
    let first = sessions
        .record_inbound_once(chat(), sent, &id(1))
        .await
        .unwrap();
    assert!(first.is_recorded());
    clock.advance(TimeDelta::days(2) - TimeDelta::seconds(1));
    let again = sessions
        .record_inbound_once(chat(), sent, &id(1))
        .await
        .unwrap();
    assert!(!again.is_recorded(), "still inside the horizon: {again:?}");
    clock.advance(TimeDelta::seconds(1));
    let forgotten = sessions
        .record_inbound_once(chat(), sent, &id(1))
        .await
        .unwrap();
    assert!(forgotten.is_recorded(), "past the horizon: {forgotten:?}");
}

#[tokio::test]
async fn a_future_time_is_refused_before_the_id_is_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(t("2026-11-23T10:00:00Z"));
    let sessions =
        Sessions::new(SledStore::open(dir.path().join("db")).unwrap()).with_clock(clock.clone());
    let error = sessions
        .record_inbound_once(chat(), clock.now() + TimeDelta::hours(1), &id(1))
        .await
        .unwrap_err();
    assert!(
        matches!(error, lipachat_session::SessionError::FutureTime(_)),
        "{error}"
    );
    // Nothing remembered: the same id with a sane time is recorded.
    let receipt = sessions
        .record_inbound_once(chat(), clock.now(), &id(1))
        .await
        .unwrap();
    assert!(receipt.is_recorded());
}
