//! No write path stores a time beyond the tolerated skew ahead of the real clock: not the
//! engine's records while windows are examined at a time in the future (a debug tool's
//! `--now`), not an import. Times in the past, examined at a time in the past, are stored
//! as before.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::export::{export, import};
use lipachat_session::{
    Conversation, ManualClock, OutboxStore, PhoneNumber, Sessions, SledStore, StoreError,
    WindowStore,
};

fn chat(customer: u64) -> Conversation {
    Conversation::new(
        PhoneNumber::from_u64(254_110_090_747).unwrap(),
        PhoneNumber::from_u64(customer).unwrap(),
    )
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

const HEADER: &str = r#"{"kind":"header","format":"lipachat-session-export","version":1}"#;

#[tokio::test]
async fn a_clock_set_into_the_future_cannot_store_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    let far = t("9999-01-01T00:00:00Z");
    let sessions = Sessions::new(store.clone()).with_examined_clock(ManualClock::at(far));

    let refused = sessions.record_inbound_now(chat(254_712_345_678)).await;
    let message = refused.unwrap_err().to_string();
    assert!(message.contains("9999-01-01T00:00:00Z"), "{message}");
    assert!(message.contains("ahead of the real clock"), "{message}");
    assert_eq!(store.count().await.unwrap(), 0);

    // Nor a gateway closure, which would close the window until then.
    let now = Utc::now();
    Sessions::new(store.clone())
        .record_inbound(chat(254_712_345_678), now)
        .await
        .unwrap();
    let closure = sessions.record_gateway_closure(chat(254_712_345_678)).await;
    let message = closure.unwrap_err().to_string();
    assert!(message.contains("gateway closure time 9999"), "{message}");
    let record = store.window(chat(254_712_345_678)).await.unwrap().unwrap();
    assert_eq!(record.gateway_closed_at, None);

    // Within the skew of the real clock it is stored.
    let soon = Utc::now() + TimeDelta::minutes(4);
    let sessions = Sessions::new(store.clone()).with_examined_clock(ManualClock::at(soon));
    sessions
        .record_inbound_now(chat(254_700_000_001))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_clock_set_into_the_past_still_records_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    let past = t("2026-11-23T10:00:00Z");
    let sessions = Sessions::new(store.clone()).with_examined_clock(ManualClock::at(past));
    let recorded = sessions
        .record_inbound_now(chat(254_712_345_678))
        .await
        .unwrap();
    assert_eq!(recorded.update.current.last_inbound, past);
    sessions
        .record_gateway_closure(chat(254_712_345_678))
        .await
        .unwrap();
    // Ahead of that clock by more than the skew is still refused, though the real clock
    // is later still.
    let message = sessions
        .record_inbound(chat(254_712_345_678), past + TimeDelta::hours(1))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("ahead of the clock (2026-11-23T10:00:00Z)"),
        "{message}"
    );
}

#[tokio::test]
async fn an_import_from_the_future_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    let past = r#"{"kind":"window","business":"254110090747","customer":"254700000001","last_inbound":"2026-11-23T10:00:00.000Z","gateway_closed_at":null}"#;
    let queued = r#"{"kind":"queued","business":"254110090747","customer":"254700000001","message_id":"ca739107-4b0d-4581-acb1-4c4af70555de","queued_at":"2026-11-23T10:00:00.000Z","payload":"{}"}"#;
    for (future, what) in [
        (
            r#"{"kind":"window","business":"254110090747","customer":"254712345678","last_inbound":"9999-01-01T00:00:00.000Z","gateway_closed_at":null}"#,
            "inbound time 9999-01-01T00:00:00Z",
        ),
        (
            r#"{"kind":"window","business":"254110090747","customer":"254712345678","last_inbound":"2026-11-23T10:00:00.000Z","gateway_closed_at":"9999-01-01T00:00:00.000Z"}"#,
            "gateway closure time 9999-01-01T00:00:00Z",
        ),
        (
            r#"{"kind":"queued","business":"254110090747","customer":"254712345678","message_id":"0b0d5f4e-2f7a-4f0e-9d43-0c3c5d1e9a11","queued_at":"9999-01-01T00:00:00.000Z","payload":"{}"}"#,
            "queued time 9999-01-01T00:00:00Z",
        ),
        (
            r#"{"kind":"invitation","business":"254110090747","customer":"254712345678","message_id":"0b0d5f4e-2f7a-4f0e-9d43-0c3c5d1e9a11","sent_at":"9999-01-01T00:00:00.000Z"}"#,
            "invitation time 9999-01-01T00:00:00Z",
        ),
    ] {
        let input = format!("{HEADER}\n{past}\n{queued}\n{future}\n");
        let error = import(&store, input.as_bytes()).await.unwrap_err();
        let message = error.to_string();
        assert!(message.contains("line 4"), "{message}");
        assert!(message.contains(what), "{message}");
        assert!(message.contains("ahead of the real clock"), "{message}");
        assert!(
            matches!(error, StoreError::ImportFutureTime { line: 4, .. }),
            "{error:?}"
        );
        // Checked before anything was written: not even the good lines went in.
        assert_eq!(store.count().await.unwrap(), 0);
        assert!(store.conversations_with_queued().await.unwrap().is_empty());
        assert!(store.invitations().await.unwrap().is_empty());
    }
    // The same without the future line imports, and round-trips.
    let input = format!("{HEADER}\n{past}\n{queued}\n");
    let read = import(&store, input.as_bytes()).await.unwrap();
    assert_eq!((read.windows, read.queued), (1, 1));
    let mut out = Vec::new();
    export(&store, &mut out).await.unwrap();
    // The previous release's lines come back as they were, under this version's header.
    assert_eq!(
        String::from_utf8(out).unwrap(),
        input.replacen(
            "\"version\":1",
            &format!("\"version\":{}", lipachat_session::export::FORMAT_VERSION),
            1
        )
    );
}

#[tokio::test]
async fn a_simulation_that_replaces_the_real_clock_runs_in_its_own_time() {
    // with_clock makes the manual clock the real time (a test or simulation moving days
    // ahead), so its own times are stored, and only its skew is checked.
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    let later = Utc::now() + TimeDelta::days(400);
    let clock = ManualClock::at(later);
    let sessions = Sessions::new(store.clone()).with_clock(clock.clone());
    sessions
        .record_inbound_now(chat(254_712_345_678))
        .await
        .unwrap();
    let message = sessions
        .record_inbound(chat(254_712_345_678), later + TimeDelta::minutes(6))
        .await
        .unwrap_err()
        .to_string();
    assert!(message.contains("ahead of the real clock"), "{message}");
}
