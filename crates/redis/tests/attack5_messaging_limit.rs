//! Attacks on "a clock that does not say it is simulated counts on the server's `TIME`;
//! a simulated clock's times are used as given" (`Clock::is_simulated`, `CountTime`)
//! with replicas on one real `redis-server` sharing one portfolio, each counting as the
//! send path does (`CountTime::read_from` the replica's clock). Skipped when
//! `redis-server` is not installed, unless `REQUIRE_REDIS=1`.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_redis::test_server::RedisServer;
use lipachat_session::{Clock, ConsentStore, CountTime, ManualClock, Reach, StoreError};

const SPAN: TimeDelta = TimeDelta::hours(24);
const TIER: u64 = 2;

/// Counts `customer` for `portfolio` at `clock`'s now, as the send path does.
async fn reach(
    store: &lipachat_redis::RedisStore,
    clock: &dyn Clock,
    portfolio: &str,
    customer: u64,
) -> Reach {
    store
        .reach_customer(
            portfolio,
            customer,
            CountTime::read_from(clock, clock.now()),
            TIER,
            SPAN,
        )
        .await
        .unwrap()
}

/// How many of customers `from..=to` were let through (counted).
async fn let_through(
    store: &lipachat_redis::RedisStore,
    clock: &dyn Clock,
    portfolio: &str,
    customers: std::ops::RangeInclusive<u64>,
) -> u64 {
    let mut through = 0;
    for customer in customers {
        if matches!(
            reach(store, clock, portfolio, customer).await,
            Reach::Counted { .. }
        ) {
            through += 1;
        }
    }
    through
}

/// One replica on the real clock (the system clock: not simulated) and one whose clock
/// says it is simulated (a manual clock, 25 hours ahead or behind real time) count on one
/// portfolio, in both orders, within a second of real time. At most the tier (2) may be
/// let through in all. Before the store refused mixed clocks, each order let 4 through,
/// because the simulated replica's given times and the server's `TIME` pruned each
/// other's entries as older than the span; now the second replica's counts are refused
/// with `StoreError::MixedCountClocks` (nothing counted, so nothing sent) while the
/// first's entries live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_replica_and_a_real_one_on_one_portfolio_cannot_exceed_the_tier() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let real = common::store_at(&server.url(), "mixed").await;
    let simulated = common::store_at(&server.url(), "mixed").await;
    for (n, offset) in [TimeDelta::hours(25), TimeDelta::hours(-25)]
        .into_iter()
        .enumerate()
    {
        let clock = ManualClock::at(Utc::now() + offset);
        let portfolio = format!("mixed-{n}");
        let (first, second): (&dyn Clock, &dyn Clock) = if offset > TimeDelta::zero() {
            (&lipachat_session::SystemClock, &clock)
        } else {
            (&clock, &lipachat_session::SystemClock)
        };
        let (first_store, second_store) = if offset > TimeDelta::zero() {
            (&real, &simulated)
        } else {
            (&simulated, &real)
        };
        let through = let_through(first_store, first, &portfolio, 1..=2).await;
        assert_eq!(
            through, TIER,
            "offset {offset}: the first replica fills the tier"
        );
        for customer in 3..=4 {
            let refused = second_store
                .reach_customer(
                    &portfolio,
                    customer,
                    CountTime::read_from(second, second.now()),
                    TIER,
                    SPAN,
                )
                .await;
            match refused {
                Err(StoreError::MixedCountClocks {
                    portfolio: named,
                    held,
                    asked,
                }) => {
                    assert_eq!(named, portfolio);
                    assert_ne!(held, asked);
                }
                other => panic!("offset {offset}, customer {customer}: {other:?}"),
            }
        }
        assert_eq!(
            first_store
                .reached(&portfolio, CountTime::read_from(first, first.now()), SPAN)
                .await
                .unwrap(),
            TIER,
            "offset {offset}: the first replica's count is intact"
        );
    }
}

/// A clock of the user's own that reads real time but switches what it says of itself
/// (simulated on every other call) is still counted on the server's clock whenever it
/// says it is real: one replica on it 25 hours ahead and one on the system clock, on one
/// portfolio, let at most the tier through when every count of the switching clock is
/// made while it says it is real.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_counted_while_it_says_it_is_real_cannot_exceed_the_tier() {
    /// The system clock 25 hours ahead, saying it is simulated only while `simulated`.
    #[derive(Debug, Default)]
    struct Switching {
        simulated: AtomicBool,
    }
    impl Clock for Switching {
        fn now(&self) -> DateTime<Utc> {
            Utc::now() + TimeDelta::hours(25)
        }
        fn is_simulated(&self) -> bool {
            self.simulated.load(Ordering::SeqCst)
        }
    }
    let Some(server) = RedisServer::start() else {
        return;
    };
    let switching = Arc::new(Switching::default());
    let ahead = common::store_at(&server.url(), "switch").await;
    let system = common::store_at(&server.url(), "switch").await;
    // It says it is simulated while the other replica counts (which reads only its own
    // clock), and real while its own replica counts.
    switching.simulated.store(true, Ordering::SeqCst);
    let first = let_through(&system, &lipachat_session::SystemClock, "switch", 1..=2).await;
    switching.simulated.store(false, Ordering::SeqCst);
    let second = let_through(&ahead, &*switching, "switch", 3..=4).await;
    assert_eq!((first, second), (2, 0), "a tier of {TIER}");
}
