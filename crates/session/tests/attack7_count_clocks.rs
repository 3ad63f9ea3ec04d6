//! Seventh hostile review of fa3814f on sled: the portfolio's clock mark (the key of its
//! name and the zero byte alone in the `reached` tree). Attacks: a store written before
//! the mark (an older release) holding a monthly service counter, which the policy counts
//! on given times; the mark beside the entries when counting and reading back (a customer
//! key of 0, a reopen, the limit); a damaged mark; a mark left without its entry (a crash
//! between the two writes).

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::{ConsentStore, CountTime, Reach, SledStore, StoreError};

mod raw_sled;

/// The span the policy counts its monthly service counters over
/// (`SERVICE_TIER_SPAN` in crates/policy/src/messaging_limit.rs).
fn service_span() -> TimeDelta {
    TimeDelta::days(40)
}

fn span() -> TimeDelta {
    TimeDelta::hours(24)
}

/// Asserts that a simulated count of `customer` on `portfolio` at `at` (ahead of the
/// real counts) is refused as mixing clocks (`what` names the case).
async fn assert_simulated_refused(
    store: &SledStore,
    portfolio: &str,
    customer: u64,
    at: DateTime<Utc>,
    what: &str,
) {
    let simulated = store
        .reach_customer(portfolio, customer, CountTime::Given(at), 3, span())
        .await;
    assert!(
        matches!(simulated, Err(StoreError::MixedCountClocks { .. })),
        "{what}: {simulated:?}"
    );
}

/// The key of `portfolio`'s clock mark in the `reached` tree.
fn mark_key(portfolio: &str) -> Vec<u8> {
    let mut key = portfolio.as_bytes().to_vec();
    key.push(0);
    key
}

/// Makes the store at `path` look as a release before the clock mark left it: every
/// mark removed from the `reached` tree, the entries kept. Answers how many marks went.
fn remove_the_marks(path: &std::path::Path, portfolios: &[&str]) -> usize {
    let db = raw_sled::raw_sled(path);
    let reached = db.open_tree("reached").unwrap();
    let mut removed = 0;
    for portfolio in portfolios {
        if reached.remove(mark_key(portfolio)).unwrap().is_some() {
            removed += 1;
        }
    }
    db.flush().unwrap();
    removed
}

/// A business's monthly service counter, as the policy names it
/// (`svc.<business>.<YYYY-MM>`), counted as the policy counts it: on the send's time as
/// given (`impl From<DateTime<Utc>> for CountTime` is `Given`), one member per message.
/// A store an older release wrote holds such a counter without a mark; the mark's
/// absence is read as "counted on the real clock", so the next service message the
/// upgraded policy counts is refused for the rest of the span (40 days), and with it
/// every in-window reply's record after the send.
#[tokio::test]
async fn a_service_counter_written_before_the_mark_takes_the_next_service_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let now = Utc::now();
    let counter = format!("svc.254110090747.{}", now.format("%Y-%m"));
    {
        let store = SledStore::open(&path).unwrap();
        for member in [11_u64, 12] {
            let reach = store
                .reach_customer(&counter, member, now, 1000, service_span())
                .await
                .unwrap();
            assert!(matches!(reach, Reach::Counted { .. }), "{reach:?}");
        }
    }
    assert_eq!(
        remove_the_marks(&path, &[&counter]),
        1,
        "the counter had a mark to remove"
    );
    let store = SledStore::open(&path).unwrap();
    assert_eq!(
        store.reached(&counter, now, service_span()).await.unwrap(),
        2,
        "the older release's entries are read"
    );
    // The upgraded policy counts the next service message exactly as the older release
    // counted the first two.
    let next = store
        .reach_customer(
            &counter,
            13,
            now + TimeDelta::seconds(1),
            1000,
            service_span(),
        )
        .await;
    assert!(
        matches!(next, Ok(Reach::Counted { reached: 3 })),
        "the next service message on an upgraded store answered {next:?}"
    );
}

/// Control for the rule the hole above breaks: a portfolio an older release counted on
/// the real clock, with no mark, still refuses a simulated count after the upgrade (and
/// takes a real one).
#[tokio::test]
async fn a_real_count_written_before_the_mark_still_refuses_a_simulated_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let now = Utc::now();
    {
        let store = SledStore::open(&path).unwrap();
        for customer in [1_u64, 2] {
            store
                .reach_customer(
                    "attack7.legacy",
                    customer,
                    CountTime::SystemNow(now),
                    2,
                    span(),
                )
                .await
                .unwrap();
        }
    }
    assert_eq!(remove_the_marks(&path, &["attack7.legacy"]), 1);
    let store = SledStore::open(&path).unwrap();
    assert_simulated_refused(
        &store,
        "attack7.legacy",
        3,
        now + TimeDelta::hours(25),
        "a store without marks",
    )
    .await;
    let real = store
        .reach_customer(
            "attack7.legacy",
            3,
            CountTime::SystemNow(Utc::now()),
            2,
            span(),
        )
        .await
        .unwrap();
    assert_eq!(real, Reach::LimitReached { reached: 2 });
}

/// The mark is never a customer: with customer keys 0 and `u64::MAX` counted (the
/// shortest and longest runs of equal bytes after the zero byte), `reached` answers 2
/// before and after a reopen, a third customer finds the limit of 2 reached after the
/// reopen (the mark is not loaded as an entry), and both kinds of count agree on it.
#[tokio::test]
async fn the_mark_is_never_counted_as_a_customer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let now = Utc::now();
    let portfolio = "attack7.zero";
    {
        let store = SledStore::open(&path).unwrap();
        for customer in [0_u64, u64::MAX] {
            let reach = store
                .reach_customer(portfolio, customer, CountTime::SystemNow(now), 2, span())
                .await
                .unwrap();
            assert!(matches!(reach, Reach::Counted { .. }), "{reach:?}");
        }
        assert_eq!(store.reached(portfolio, now, span()).await.unwrap(), 2);
        // A portfolio whose name extends this one's is another count.
        store
            .reach_customer("attack7.zero.b", 0, CountTime::SystemNow(now), 2, span())
            .await
            .unwrap();
    }
    let store = SledStore::open(&path).unwrap();
    assert_eq!(store.reached(portfolio, now, span()).await.unwrap(), 2);
    assert_eq!(
        store.reached("attack7.zero.b", now, span()).await.unwrap(),
        1
    );
    let third = store
        .reach_customer(portfolio, 7, CountTime::SystemNow(Utc::now()), 2, span())
        .await
        .unwrap();
    assert_eq!(third, Reach::LimitReached { reached: 2 });
    let again = store
        .reach_customer(portfolio, 0, CountTime::SystemNow(Utc::now()), 2, span())
        .await
        .unwrap();
    assert_eq!(again, Reach::AlreadyCounted { reached: 2 });
    assert!(
        store.integrity().is_intact(),
        "{:?}",
        store.integrity().problems()
    );
}

/// A mark damaged on disk (empty, short, an unknown kind, trailing bytes) is read as the
/// real clock's without a panic, the entries stay counted, and the next real count
/// writes a readable mark again, so a simulated count is refused after it.
#[tokio::test]
async fn a_damaged_mark_keeps_the_count_and_is_written_again() {
    let damaged: [&[u8]; 5] = [
        b"",
        b"real",
        b"\x00\x00\x01\x00\x00\x00\x00\x00sundial",
        b"\x00\x00\x01\x00\x00\x00\x00\x00realx",
        b"\xff\xff\xff\xff\xff\xff\xff\xffsimulatedsimulated",
    ];
    for (n, value) in damaged.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let portfolio = format!("attack7.damaged{n}");
        let now = Utc::now();
        {
            let store = SledStore::open(&path).unwrap();
            for customer in [1_u64, 2] {
                store
                    .reach_customer(&portfolio, customer, CountTime::SystemNow(now), 3, span())
                    .await
                    .unwrap();
            }
        }
        {
            let db = raw_sled::raw_sled(&path);
            db.open_tree("reached")
                .unwrap()
                .insert(mark_key(&portfolio), value)
                .unwrap();
            db.flush().unwrap();
        }
        let store = SledStore::open(&path).unwrap();
        let real = store
            .reach_customer(&portfolio, 3, CountTime::SystemNow(Utc::now()), 3, span())
            .await;
        assert_eq!(
            real.unwrap(),
            Reach::Counted { reached: 3 },
            "mark {value:?}"
        );
        assert_simulated_refused(
            &store,
            &portfolio,
            4,
            now + TimeDelta::hours(30),
            &format!("mark {value:?}"),
        )
        .await;
    }
}

/// A crash between the mark and the entry leaves a mark of a kind with no entry of its
/// own. On a new portfolio (nothing else in it) the other kind is not held back by it:
/// the first count after the reopen is taken, whatever its kind, and then holds the
/// portfolio.
#[tokio::test]
async fn a_mark_left_without_its_entry_holds_nothing_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let portfolio = "attack7.crash";
    drop(SledStore::open(&path).unwrap());
    {
        let db = raw_sled::raw_sled(&path);
        let mut mark = Utc::now().timestamp_millis().to_be_bytes().to_vec();
        mark.extend_from_slice(b"simulated");
        db.open_tree("reached")
            .unwrap()
            .insert(mark_key(portfolio), mark)
            .unwrap();
        db.flush().unwrap();
    }
    let store = SledStore::open(&path).unwrap();
    let now: DateTime<Utc> = Utc::now();
    let real = store
        .reach_customer(portfolio, 1, CountTime::SystemNow(now), 2, span())
        .await
        .unwrap();
    assert_eq!(real, Reach::Counted { reached: 1 });
    assert_simulated_refused(
        &store,
        portfolio,
        2,
        now + TimeDelta::hours(25),
        "a mark left alone",
    )
    .await;
}

mod child_process;

/// The child's store directory, set by the SIGKILL test for its child.
const CRASH_DB_ENV: &str = "ATTACK7_COUNT_CLOCKS_DB";

/// The portfolio the SIGKILL test counts.
const CRASH_PORTFOLIO: &str = "attack7.sigkill";

/// A store at `path` whose portfolio holds two simulated counts (customers 1 and 2, a
/// day ahead) under a mark of the simulated kind written two days ago by this machine's
/// clock: expired, so the next real count is taken and turns the mark to real.
async fn store_with_an_expired_simulated_mark(path: &std::path::Path) {
    let now = Utc::now();
    {
        let store = SledStore::open(path).unwrap();
        for customer in [1_u64, 2] {
            store
                .reach_customer(
                    CRASH_PORTFOLIO,
                    customer,
                    CountTime::Given(now + TimeDelta::days(1)),
                    1_000_000,
                    span(),
                )
                .await
                .unwrap();
        }
    }
    let db = raw_sled::raw_sled(path);
    let mut mark = (now - TimeDelta::days(2))
        .timestamp_millis()
        .to_be_bytes()
        .to_vec();
    mark.extend_from_slice(b"simulated");
    db.open_tree("reached")
        .unwrap()
        .insert(mark_key(CRASH_PORTFOLIO), mark)
        .unwrap();
    db.flush().unwrap();
}

/// The child: opens the store at [`CRASH_DB_ENV`], says so, and counts customers from
/// 1000 on the real clock until it is killed. Run only by the parent.
#[tokio::test]
#[ignore = "run as a child process by the SIGKILL test below"]
async fn count_clocks_child() {
    let Ok(path) = std::env::var(CRASH_DB_ENV) else {
        return;
    };
    let store = SledStore::open(path).unwrap();
    println!("opened");
    for customer in 1000_u64.. {
        store
            .reach_customer(
                CRASH_PORTFOLIO,
                customer,
                CountTime::SystemNow(Utc::now()),
                1_000_000,
                span(),
            )
            .await
            .unwrap();
    }
}

/// SIGKILL at scattered moments from the store's open through its first real counts:
/// whatever the kill leaves, an entry of a real count (customer 1000 on) is never on
/// disk under the old simulated mark, the store opens, and a simulated count is
/// refused once a real entry is there.
#[tokio::test]
async fn sigkill_between_the_mark_and_the_entry_never_leaves_an_entry_under_the_old_kind() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut real_entries_seen = 0;
    for round in 0..16_u64 {
        let path = dir.path().join(format!("db{round}"));
        store_with_an_expired_simulated_mark(&path).await;
        let mut child = child_process::spawn_test_child("count_clocks_child", CRASH_DB_ENV, &path);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let opened = lines
            .by_ref()
            .map(Result::unwrap)
            .any(|l| l.contains("opened"));
        assert!(opened, "round {round}: the child did not open the store");
        std::thread::sleep(std::time::Duration::from_micros(700 * round));
        child.kill().unwrap(); // SIGKILL on Unix: no destructor, no flush.
        child.wait().unwrap();
        let (mark, real) = {
            let db = raw_sled::raw_sled(&path);
            let reached = db.open_tree("reached").unwrap();
            let mark = reached.get(mark_key(CRASH_PORTFOLIO)).unwrap().unwrap();
            let prefix = mark_key(CRASH_PORTFOLIO);
            let real = reached
                .scan_prefix(&prefix)
                .map(Result::unwrap)
                .filter(|(key, _)| {
                    key.len() == prefix.len() + 8
                        && u64::from_be_bytes(key[prefix.len()..].try_into().unwrap()) >= 1000
                })
                .count();
            (mark, real)
        };
        if real > 0 {
            real_entries_seen += 1;
            assert!(
                mark.ends_with(b"real"),
                "round {round}: {real} real entries under the mark {mark:?}"
            );
            let store = SledStore::open(&path).unwrap();
            assert_simulated_refused(
                &store,
                CRASH_PORTFOLIO,
                3,
                Utc::now() + TimeDelta::days(1),
                &format!("round {round}, after the kill"),
            )
            .await;
        } else {
            drop(SledStore::open(&path).unwrap());
        }
    }
    eprintln!("rounds with real entries on disk after the kill: {real_entries_seen} of 16");
}
