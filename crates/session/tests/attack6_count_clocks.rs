//! Sixth hostile review of 7ab1691 on sled: a portfolio's messaging limit count kept to
//! one kind of clock only while its counter stayed in memory, so a counter loaded again
//! from the tree (after a reopen, or after it was forgotten when another portfolio's count
//! moved far ahead) took a count on the other kind, whose times pruned the first kind's
//! entries and let twice the tier through. The kind is now kept on disk in the
//! portfolio's clock mark (`sled_store/consent.rs`).

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use chrono::{TimeDelta, Utc};
use lipachat_session::{ConsentStore, CountTime, Reach, SledStore, StoreError};

const LIMIT: u64 = 2;

fn span() -> TimeDelta {
    TimeDelta::hours(24)
}

/// Fills `portfolio` to its limit on the real clock (customers 1 and 2 at `now`).
async fn fill_on_the_real_clock(store: &SledStore, portfolio: &str, now: chrono::DateTime<Utc>) {
    for customer in 1..=LIMIT {
        let reach = store
            .reach_customer(
                portfolio,
                customer,
                CountTime::SystemNow(now),
                LIMIT,
                span(),
            )
            .await
            .unwrap();
        assert!(matches!(reach, Reach::Counted { .. }), "{reach:?}");
    }
}

/// Asserts that a simulated count of a third customer on `portfolio` at `at` is refused
/// as mixing clocks (`what` says what the portfolio holds).
async fn assert_a_simulated_count_is_refused(
    store: &SledStore,
    portfolio: &str,
    at: chrono::DateTime<Utc>,
    what: &str,
) {
    let third = store
        .reach_customer(portfolio, 3, CountTime::Given(at), LIMIT, span())
        .await;
    assert!(
        matches!(third, Err(StoreError::MixedCountClocks { .. })),
        "a simulated count on {what} answered {third:?}"
    );
}

/// Control: on one open handle, the simulated count 25 hours ahead is refused.
#[tokio::test]
async fn a_simulated_count_on_a_real_count_is_refused_on_one_handle() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("store")).unwrap();
    let now = Utc::now();
    fill_on_the_real_clock(&store, "attack6.handle", now).await;
    assert_a_simulated_count_is_refused(
        &store,
        "attack6.handle",
        now + TimeDelta::hours(25),
        "a real-clock portfolio at its limit, on one handle",
    )
    .await;
}

#[tokio::test]
async fn a_simulated_count_after_reopen_is_refused_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let now = Utc::now();
    {
        let store = SledStore::open(&path).unwrap();
        fill_on_the_real_clock(&store, "attack6.reopen", now).await;
    }
    let store = SledStore::open(&path).unwrap();
    assert_a_simulated_count_is_refused(
        &store,
        "attack6.reopen",
        now + TimeDelta::hours(25),
        "a real-clock portfolio at its limit, reopened",
    )
    .await;
}

#[tokio::test]
async fn a_forgotten_counter_keeps_its_clock_kind() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("store")).unwrap();
    let now = Utc::now();
    fill_on_the_real_clock(&store, "attack6.forgotten", now).await;
    let ahead = now + TimeDelta::hours(25);
    // A simulated messenger counts another portfolio 25 hours ahead: loading it forgets
    // the first portfolio's counter (its newest entry left the span as at `ahead`).
    store
        .reach_customer("attack6.other", 9, CountTime::Given(ahead), LIMIT, span())
        .await
        .unwrap();
    assert_a_simulated_count_is_refused(
        &store,
        "attack6.forgotten",
        ahead,
        "a forgotten real-clock portfolio at its limit",
    )
    .await;
}

mod raw_sled;

/// Removes the portfolio's clock mark (the key of its name and a zero byte alone), as a
/// store written before the mark existed holds its counts.
fn remove_the_clock_mark(path: &std::path::Path, portfolio: &str) {
    let db = raw_sled::raw_sled(path);
    let mut key = portfolio.as_bytes().to_vec();
    key.push(0);
    let removed = db.open_tree("reached").unwrap().remove(key).unwrap();
    assert!(removed.is_some(), "the store kept a clock mark to remove");
    db.flush().unwrap();
}

/// A count the release before the mark wrote (entries, no mark) is taken as on the real
/// clock: a simulated count on it is refused while its newest entry is within the span.
#[tokio::test]
async fn a_count_written_before_the_mark_is_taken_as_real() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let now = Utc::now();
    {
        let store = SledStore::open(&path).unwrap();
        fill_on_the_real_clock(&store, "attack6.legacy", now).await;
    }
    remove_the_clock_mark(&path, "attack6.legacy");
    let store = SledStore::open(&path).unwrap();
    assert_a_simulated_count_is_refused(
        &store,
        "attack6.legacy",
        now + TimeDelta::hours(25),
        "a legacy real-clock count at its limit",
    )
    .await;
}

/// A mark that kept the other kind stops refusing once a span has passed since the last
/// count wrote (as the Redis key expires with the count): a portfolio is not held to one
/// kind for ever by entries no count will prune.
#[tokio::test]
async fn an_old_count_no_longer_holds_the_portfolio_to_its_clock_kind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let long_ago = Utc::now() - TimeDelta::hours(30);
    {
        let store = SledStore::open(&path).unwrap();
        fill_on_the_real_clock(&store, "attack6.stale", long_ago).await;
    }
    // The mark says "written now" (the host's clock at the count); without it the
    // legacy rule dates the count at its newest entry, 30 hours ago.
    remove_the_clock_mark(&path, "attack6.stale");
    let store = SledStore::open(&path).unwrap();
    let third = store
        .reach_customer(
            "attack6.stale",
            3,
            CountTime::Given(Utc::now()),
            LIMIT,
            span(),
        )
        .await
        .unwrap();
    assert_eq!(
        third,
        Reach::Counted { reached: 1 },
        "the old entries left the span"
    );
    // Now the portfolio counts on the simulated kind: a real count is refused.
    let real = store
        .reach_customer(
            "attack6.stale",
            4,
            CountTime::SystemNow(Utc::now()),
            LIMIT,
            span(),
        )
        .await;
    assert!(
        matches!(real, Err(StoreError::MixedCountClocks { .. })),
        "{real:?}"
    );
}
