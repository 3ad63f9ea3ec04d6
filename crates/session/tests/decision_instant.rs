//! The instant a decision is taken at: "now" is read after the store answers, so time
//! spent in the lookup (a slow disk, a paused process, a Redis round trip) can only make
//! a decision stricter, never let a window that closed meanwhile read as open.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::instrumented::InstrumentedStore;
use lipachat_session::{
    Conversation, ManualClock, RefusalReason, SendDecision, Sessions, SledStore, WindowState,
};

fn chat() -> Conversation {
    Conversation::parse("254110090747", "254712345678").unwrap()
}

fn start() -> DateTime<Utc> {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

/// An engine on a ManualClock whose last inbound message came at `start()`, and the
/// clock, now 23 hours later (an hour of the window left, well beyond the 60 s margin).
async fn engine_an_hour_before_closing(
    dir: &tempfile::TempDir,
) -> (Sessions<InstrumentedStore<SledStore>>, ManualClock) {
    let clock = ManualClock::at(start());
    let store = InstrumentedStore::new(SledStore::open(dir.path().join("db")).unwrap());
    let sessions = Sessions::new(store).with_clock(clock.clone());
    sessions.record_inbound_now(chat()).await.unwrap();
    clock.advance(TimeDelta::hours(23));
    (sessions, clock)
}

/// Makes the next store call take `pause` of the engine's time, as it begins.
fn next_call_takes(
    sessions: &Sessions<InstrumentedStore<SledStore>>,
    clock: &ManualClock,
    pause: TimeDelta,
) {
    let store = sessions.store();
    let next = store.all_calls().values().sum::<usize>() + 1;
    let clock = clock.clone();
    store.at_call(next, move || clock.advance(pause));
}

#[tokio::test]
async fn a_window_that_reaches_its_margin_during_the_lookup_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (sessions, clock) = engine_an_hour_before_closing(&dir).await;
    assert!(sessions.decide(chat()).await.unwrap().is_allowed());

    // The lookup takes 59 min 30 s: 30 s of the window are left when it answers.
    next_call_takes(&sessions, &clock, TimeDelta::seconds(3570));
    match sessions.decide(chat()).await.unwrap() {
        SendDecision::Refused { reason, .. } => {
            assert_eq!(reason, RefusalReason::ClosingWithinMargin);
        }
        other => panic!("a send 30 s before closing was {other:?}"),
    }
    assert_eq!(sessions.store().calls("window"), 2);
}

#[tokio::test]
async fn a_window_that_closes_during_the_lookup_reads_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (sessions, clock) = engine_an_hour_before_closing(&dir).await;
    assert!(sessions.state(chat()).await.unwrap().is_open());

    next_call_takes(&sessions, &clock, TimeDelta::hours(2));
    let state = sessions.state(chat()).await.unwrap();
    assert!(
        matches!(state, WindowState::Closed { .. }),
        "a window closed an hour ago read {state:?}"
    );
}
