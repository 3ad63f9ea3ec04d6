//! Attack on two changes: the store's open dropping the snapshots sled 0.34 began and never
//! finished (`directory::drop_interrupted_snapshots`), and `Sessions::decide`/`state`
//! reading the clock after the store answers.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::instrumented::InstrumentedStore;
use lipachat_session::{Conversation, InboundId, ManualClock, RecordedOnce, SledConfig, SledStore};
use lipachat_session::{Sessions, WindowState, WindowStore};

mod reopen;

fn chat(i: u64) -> Conversation {
    Conversation::parse("254110090747", &(254_700_000_000 + i).to_string()).unwrap()
}

fn at(i: u64) -> DateTime<Utc> {
    "2026-11-23T10:00:00Z".parse::<DateTime<Utc>>().unwrap() + TimeDelta::seconds(i as i64)
}

/// Every file under `dir` whose name is `name`, at any depth.
fn find_named(dir: &Path, name: &str, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy() == name {
            found.push(entry.path());
        }
        if entry.file_type().unwrap().is_dir() {
            find_named(&entry.path(), name, found);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Claim 2: nothing but sled's own part-written snapshots is removed.

#[tokio::test]
async fn a_file_merely_named_like_a_part_snapshot_is_left_alone_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = SledStore::open(&path).unwrap();
        store.record_inbound(chat(1), at(1)).await.unwrap();
        store.flush().await.unwrap();
    }
    let stranger = path.join("snap.generating");
    std::fs::write(&stranger, b"not sled's").unwrap();
    match reopen::when_free(|| SledConfig::new(&path)) {
        // A clear refusal is acceptable.
        Err(_) => {}
        Ok(_store) => assert!(
            stranger.exists(),
            "the store's open deleted {} though sled never writes that name",
            stranger.display()
        ),
    }
}

#[tokio::test]
async fn a_removed_file_is_kept_in_a_copy_even_after_an_unchanged_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    // Named as sled names a snapshot it is writing, so the open does remove it.
    let name = "snap.0000000000001000.generating";
    {
        let store = SledStore::open(&path).unwrap();
        store.record_inbound(chat(1), at(1)).await.unwrap();
        store.flush().await.unwrap();
        // Placed while the store is open: the clean close records it with sled's files.
        std::fs::write(path.join(name), b"kept by someone").unwrap();
    }
    let opened = reopen::when_free(|| SledConfig::new(&path));
    if opened.is_err() {
        return; // Refused: nothing removed.
    }
    let still_there = path.join(name).exists();
    let mut copies = Vec::new();
    find_named(&path.join("recovery"), name, &mut copies);
    assert!(
        still_there || !copies.is_empty(),
        "{name} was removed by the open and no copy before recovery holds it"
    );
}

// ---------------------------------------------------------------------------------------
// Claims 4 and 5: the instant of a decision.

fn start() -> DateTime<Utc> {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

#[tokio::test]
async fn a_redelivery_reports_the_state_after_the_store_answers() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(start());
    let store = InstrumentedStore::new(SledStore::open(dir.path().join("db")).unwrap());
    let sessions = Sessions::new(store).with_clock(clock.clone());
    let id = InboundId::new("wamid.ATTACK16").unwrap();
    sessions
        .record_inbound_once(chat(7), start(), &id)
        .await
        .unwrap();
    clock.advance(TimeDelta::hours(23));

    // The redelivery's store call takes two hours: the window closes an hour in.
    let next = sessions.store().all_calls().values().sum::<usize>() + 1;
    let pause = clock.clone();
    sessions
        .store()
        .at_call(next, move || pause.advance(TimeDelta::hours(2)));
    let RecordedOnce::Duplicate { state, .. } = sessions
        .record_inbound_once(chat(7), start(), &id)
        .await
        .unwrap()
    else {
        panic!("not a duplicate");
    };
    let now_state = sessions.state(chat(7)).await.unwrap();
    assert!(matches!(now_state, WindowState::Closed { .. }));
    assert!(
        !state.is_open(),
        "the redelivery said {state:?}, though the window had closed when the store answered"
    );
}

#[tokio::test]
async fn the_examined_clock_governs_decide_and_state_not_the_real_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    let inbound = Utc::now() - TimeDelta::hours(1);
    Sessions::new(store.clone())
        .record_inbound(chat(9), inbound)
        .await
        .unwrap();
    // Real clock: open. Examined two days later: closed; examined before it: never open.
    let later = Sessions::new(store.clone())
        .with_examined_clock(ManualClock::at(inbound + TimeDelta::days(2)));
    assert!(!later.decide(chat(9)).await.unwrap().is_allowed());
    assert!(matches!(
        later.state(chat(9)).await.unwrap(),
        WindowState::Closed { .. }
    ));
    // The real clock says open, and an examined clock inside the window agrees.
    let real =
        Sessions::new(store.clone()).with_clock(ManualClock::at(inbound + TimeDelta::days(2)));
    let inside = real.with_examined_clock(ManualClock::at(inbound + TimeDelta::hours(2)));
    assert!(inside.decide(chat(9)).await.unwrap().is_allowed());
    assert!(inside.state(chat(9)).await.unwrap().is_open());
}
