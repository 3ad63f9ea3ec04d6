//! Ninth hostile review of b314a5c on sled: a count with entries and no clock mark
//! (written by a release before the mark) is taken as made on the kind its name implies
//! (`kind_of_an_unmarked_count`: given times for a name beginning `svc.`, the real clock
//! otherwise). Attacks: a real-clock count on such a service counter while its entries
//! are young; the names at the prefix's edge (`svc` without the dot, `svc.` alone, `SVC.`).

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use chrono::{TimeDelta, Utc};
use lipachat_session::{ConsentStore, CountTime, Reach, SledStore, StoreError};

mod raw_sled;

/// The span the policy counts its monthly service counters over (`SERVICE_TIER_SPAN`).
fn service_span() -> TimeDelta {
    TimeDelta::days(40)
}

/// Counts customers 11 and 12 on `portfolio` on the clock `given` says (true: given
/// times, false: the real clock), then removes the portfolio's mark as an older release
/// left the store (its entries kept) and reopens it.
async fn unmarked_store(dir: &tempfile::TempDir, portfolio: &str, given: bool) -> SledStore {
    let path = dir.path().join("store");
    let now = Utc::now();
    let at = |t| {
        if given {
            CountTime::Given(t)
        } else {
            CountTime::SystemNow(t)
        }
    };
    {
        let store = SledStore::open(&path).unwrap();
        for member in [11_u64, 12] {
            let reach = store
                .reach_customer(portfolio, member, at(now), 1000, service_span())
                .await
                .unwrap();
            assert!(matches!(reach, Reach::Counted { .. }), "{reach:?}");
        }
    }
    let db = raw_sled::raw_sled(&path);
    let reached = db.open_tree("reached").unwrap();
    let mut mark = portfolio.as_bytes().to_vec();
    mark.push(0);
    assert!(
        reached.remove(mark).unwrap().is_some(),
        "{portfolio} had a mark to remove"
    );
    db.flush().unwrap();
    drop(reached);
    drop(db);
    reopen(&path)
}

fn reopen(path: &std::path::Path) -> SledStore {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match SledStore::open(path) {
            Ok(store) => return store,
            Err(error) if std::time::Instant::now() < deadline => {
                eprintln!("store still locked ({error}); retrying");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(error) => panic!("reopen: {error}"),
        }
    }
}

/// Asserts what a count of customer 13 one second on, on the clock `given` says, answers
/// on the upgraded store: counted (`accepted`) or refused as mixing clocks, and that a
/// refusal wrote nothing.
async fn assert_next_count(store: &SledStore, portfolio: &str, given: bool, accepted: bool) {
    let at = Utc::now() + TimeDelta::seconds(1);
    let time = if given {
        CountTime::Given(at)
    } else {
        CountTime::SystemNow(at)
    };
    let next = store
        .reach_customer(portfolio, 13, time, 1000, service_span())
        .await;
    if accepted {
        assert!(
            matches!(next, Ok(Reach::Counted { reached: 3 })),
            "{portfolio}, given={given}: {next:?}"
        );
    } else {
        assert!(
            matches!(next, Err(StoreError::MixedCountClocks { .. })),
            "{portfolio}, given={given}: {next:?}"
        );
        assert_eq!(
            store.reached(portfolio, at, service_span()).await.unwrap(),
            2,
            "{portfolio}: a refused count wrote nothing"
        );
    }
}

/// A service counter an older release counted on given times: a real-clock count while
/// its entries are young is refused (the two would prune each other's entries), and the
/// refusal holds on a second try (the loaded counter keeps the taken kind in memory).
#[tokio::test]
async fn an_unmarked_service_counter_refuses_a_real_clock_count() {
    let dir = tempfile::tempdir().unwrap();
    let counter = format!("svc.254110090747.{}", Utc::now().format("%Y-%m"));
    let store = unmarked_store(&dir, &counter, true).await;
    assert_next_count(&store, &counter, false, false).await;
    assert_next_count(&store, &counter, false, false).await;
    // The given-time count the policy makes still goes in.
    assert_next_count(&store, &counter, true, true).await;
}

/// The names at the prefix's edge, each counted by an older release on the kind its
/// name implies: `svc` and `SVC.x` (not the prefix: real), `svc.` alone (the prefix:
/// given). The next count on that kind goes in; one on the other kind is refused.
#[tokio::test]
async fn names_at_the_prefix_edge_are_taken_by_their_exact_prefix() {
    for (portfolio, given) in [
        ("svc", false),
        ("SVC.x", false),
        ("svc.", true),
        ("svcx", false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = unmarked_store(&dir, portfolio, given).await;
        assert_next_count(&store, portfolio, !given, false).await;
        assert_next_count(&store, portfolio, given, true).await;
    }
}
