//! The messaging limit count shared by two replicas on one real `redis-server` whose
//! clocks differ by minutes: the count runs on the server's clock, so the faster replica
//! never prunes customers the slower one counted (and lets more through than the tier).
//!
//! Skipped when `redis-server` is not installed, unless `REQUIRE_REDIS=1`.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use chrono::TimeDelta;
use common::SteppingClock;
use lipachat_redis::RedisStore;
use lipachat_redis::test_server::RedisServer;
use lipachat_session::{Clock, ConsentStore, CountTime, Reach};

/// A replica: its own connection to the server, and its own clock.
struct Replica {
    store: RedisStore,
    clock: Arc<dyn Clock>,
}

impl Replica {
    async fn connect(server: &RedisServer, off_by: TimeDelta) -> Self {
        let clock: Arc<dyn Clock> = SteppingClock::off_by(off_by);
        let store = common::store_at(&server.url(), "limit").await;
        Self { store, clock }
    }

    /// Counts `customer` at this replica's now, as the send path does.
    async fn reach(&self, portfolio: &str, customer: u64, limit: u64, span: TimeDelta) -> Reach {
        self.store
            .reach_customer(
                portfolio,
                customer,
                CountTime::SystemNow(self.clock.now()),
                limit,
                span,
            )
            .await
            .unwrap()
    }
}

/// The slow replica counts up to the tier; the fast one (30 minutes ahead, the span
/// being 5) must not count anyone new: before, it pruned the slow one's customers as
/// older than the span and counted three more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_clock_is_ahead_does_not_prune_the_others_count() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let slow = Replica::connect(&server, TimeDelta::zero()).await;
    let fast = Replica::connect(&server, TimeDelta::minutes(30)).await;
    let (limit, span) = (3, TimeDelta::minutes(5));
    for customer in 1..=3 {
        assert!(matches!(
            slow.reach("tier", customer, limit, span).await,
            Reach::Counted { .. }
        ));
    }
    for customer in 4..=6 {
        assert_eq!(
            fast.reach("tier", customer, limit, span).await,
            Reach::LimitReached { reached: 3 },
            "customer {customer} counted by the fast replica above the tier"
        );
    }
    assert_eq!(
        fast.reach("tier", 2, limit, span).await,
        Reach::AlreadyCounted { reached: 3 },
        "a customer the slow replica counted is counted for the fast one too"
    );
    for replica in [&slow, &fast] {
        assert_eq!(
            replica
                .store
                .reached("tier", CountTime::SystemNow(replica.clock.now()), span)
                .await
                .unwrap(),
            3,
            "both replicas see the one count"
        );
    }
}

/// Random interleavings of two replicas whose clocks are 7, -4 and 3 minutes apart in
/// turn, more than the span (2 minutes, so that a short run shows what a day's span
/// does near its end), all within one span of real time: the unique customers let
/// through never exceed the tier, and every refusal comes only once the tier is full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_with_different_clocks_never_exceed_the_tier() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let span = TimeDelta::minutes(2);
    let limit = 4;
    let mut seed: u64 = 0x6c69_6d69_7473;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for (round, off_by) in [7i64, -4, 3].into_iter().enumerate() {
        let replicas = [
            Replica::connect(&server, TimeDelta::zero()).await,
            Replica::connect(&server, TimeDelta::minutes(off_by)).await,
        ];
        let portfolio = format!("round{round}");
        let mut let_through = HashSet::new();
        for _ in 0..60 {
            let replica = &replicas[next(2) as usize];
            let customer = next(12);
            match replica.reach(&portfolio, customer, limit, span).await {
                Reach::Counted { reached } | Reach::AlreadyCounted { reached } => {
                    let_through.insert(customer);
                    assert!(reached <= limit, "a count of {reached} above the tier");
                }
                Reach::LimitReached { reached } => {
                    assert_eq!(reached, limit, "refused below the tier");
                    assert!(
                        !let_through.contains(&customer),
                        "a counted customer refused"
                    );
                }
            }
            assert!(
                let_through.len() as u64 <= limit,
                "replicas {off_by} minutes apart let {} customers through in one span: {let_through:?}",
                let_through.len()
            );
        }
        assert_eq!(let_through.len() as u64, limit, "the tier is reached");
    }
}
