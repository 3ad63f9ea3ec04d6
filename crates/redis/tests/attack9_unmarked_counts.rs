//! Ninth hostile review of b314a5c on a real `redis-server`: a count whose clock-kind key
//! is gone (written by a release before the key) is taken as made on the kind its name
//! implies (REACH's ARGV[6]: given times for a name beginning `svc.`, the server's clock
//! otherwise). Attacks: a real-clock count on such a service counter; the names at the
//! prefix's edge (`svc` without the dot, `svc.` alone, `SVC.x`, `svcx`), with the answers
//! the sled store gives for the same cases (crates/session/tests/attack9_unmarked_counts.rs).
//! Skipped when `redis-server` is not installed, unless `REQUIRE_REDIS=1`.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use chrono::{TimeDelta, Utc};
use lipachat_redis::test_server::RedisServer;
use lipachat_redis::{KeyLayout, RedisStore};
use lipachat_session::{ConsentStore, CountTime, Reach, StoreError};

fn service_span() -> TimeDelta {
    TimeDelta::days(40)
}

fn count_time(given: bool) -> CountTime {
    let at = Utc::now();
    if given {
        CountTime::Given(at)
    } else {
        CountTime::SystemNow(at)
    }
}

/// Counts customers 11 and 12 on `portfolio` on the clock `given` says, then deletes the
/// clock-kind key as an older release left the count.
async fn unmarked(store: &RedisStore, url: &str, prefix: &str, portfolio: &str, given: bool) {
    for member in [11_u64, 12] {
        let reach = store
            .reach_customer(portfolio, member, count_time(given), 1000, service_span())
            .await
            .unwrap();
        assert!(matches!(reach, Reach::Counted { .. }), "{reach:?}");
    }
    let mut raw = common::raw_connection(url).await;
    let deleted: u64 = redis::cmd("DEL")
        .arg(KeyLayout::new(prefix).reached_clock(portfolio))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(deleted, 1, "{portfolio} had a clock-kind key");
}

/// Asserts what a count of customer 13 on the clock `given` says answers: counted
/// (`accepted`) or refused as mixing clocks with nothing written.
async fn assert_next_count(store: &RedisStore, portfolio: &str, given: bool, accepted: bool) {
    let next = store
        .reach_customer(portfolio, 13, count_time(given), 1000, service_span())
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
        let held = store
            .reached(portfolio, count_time(given), service_span())
            .await
            .unwrap();
        assert_eq!(held, 2, "{portfolio}: a refused count wrote nothing");
    }
}

/// A service counter an older release counted on given times refuses a count on the
/// server's clock while its entries live, and takes the policy's given-time count.
#[tokio::test]
async fn an_unmarked_service_counter_refuses_a_server_clock_count() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = common::store_at(&server.url(), "a9svc").await;
    let counter = format!("svc.254110090747.{}", Utc::now().format("%Y-%m"));
    unmarked(&store, &server.url(), "a9svc", &counter, true).await;
    assert_next_count(&store, &counter, false, false).await;
    assert_next_count(&store, &counter, false, false).await;
    assert_next_count(&store, &counter, true, true).await;
}

/// The names at the prefix's edge: `svc`, `SVC.x`, `svcx` taken as real, `svc.` alone as
/// given, as on sled.
#[tokio::test]
async fn names_at_the_prefix_edge_are_taken_by_their_exact_prefix() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    for (index, (portfolio, given)) in [
        ("svc", false),
        ("SVC.x", false),
        ("svc.", true),
        ("svcx", false),
    ]
    .into_iter()
    .enumerate()
    {
        let prefix = format!("a9edge{index}");
        let store = common::store_at(&server.url(), &prefix).await;
        unmarked(&store, &server.url(), &prefix, portfolio, given).await;
        assert_next_count(&store, portfolio, !given, false).await;
        assert_next_count(&store, portfolio, given, true).await;
    }
}
