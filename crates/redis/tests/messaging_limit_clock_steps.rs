//! Hostile review of issue 16, second round: the messaging limit count on the server's
//! clock when a replica's clock *steps* (an NTP correction, a VM resumed from a snapshot).
//! The store once measured how far the server is ahead of the host and kept that for a
//! minute, so for up to a minute a stepped replica stamped and pruned by its new, wrong
//! time: a step forward of more than the span pruned every customer the other replica
//! counted, and the tier was exceeded. A count read from the system clock is now stamped
//! with the server's clock.
//!
//! Skipped when `redis-server` is not installed.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use chrono::TimeDelta;
use common::SteppingClock;
use lipachat_redis::RedisStore;
use lipachat_redis::test_server::RedisServer;
use lipachat_session::{Clock, ConsentStore, CountTime, Reach};

async fn replica(server: &RedisServer) -> RedisStore {
    common::store_at(&server.url(), "steps").await
}

/// Replica A counts the tier full (3 customers, span 5 minutes). Replica B, its clock
/// right when it first measured the server's lead, then stepped 30 minutes ahead, counts
/// three more customers within the same second of real time: each must be refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_clock_steps_ahead_cannot_exceed_the_tier() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (limit, span) = (3, TimeDelta::minutes(5));
    let a_clock = SteppingClock::off_by(TimeDelta::zero());
    let b_clock = SteppingClock::off_by(TimeDelta::zero());
    let a = replica(&server).await;
    let b = replica(&server).await;
    // B measures the server's lead with its clock right (a reach of an already counted
    // customer, or a look at the count, measures it).
    b.reached("tier", CountTime::SystemNow(b_clock.now()), span)
        .await
        .unwrap();
    for customer in 1..=3 {
        assert!(matches!(
            a.reach_customer(
                "tier",
                customer,
                CountTime::SystemNow(a_clock.now()),
                limit,
                span
            )
            .await
            .unwrap(),
            Reach::Counted { .. }
        ));
    }
    b_clock.step(TimeDelta::minutes(30));
    let mut let_through = Vec::new();
    for customer in 4..=6 {
        let reach = b
            .reach_customer(
                "tier",
                customer,
                CountTime::SystemNow(b_clock.now()),
                limit,
                span,
            )
            .await
            .unwrap();
        if !matches!(reach, Reach::LimitReached { .. }) {
            let_through.push((customer, reach));
        }
    }
    assert!(
        let_through.is_empty(),
        "3 customers reached by A within the last second, then B (clock stepped 30 min ahead) let through {let_through:?}"
    );
}

/// The same step made *before* the first measure is corrected by it (the held claim: two
/// replicas whose clocks differ never exceed the tier).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stepped_before_measuring_is_corrected() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (limit, span) = (3, TimeDelta::minutes(5));
    let a_clock = SteppingClock::off_by(TimeDelta::zero());
    let b_clock = SteppingClock::off_by(TimeDelta::zero());
    b_clock.step(TimeDelta::minutes(30));
    let a = replica(&server).await;
    let b = replica(&server).await;
    for customer in 11..=13 {
        a.reach_customer(
            "tier2",
            customer,
            CountTime::SystemNow(a_clock.now()),
            limit,
            span,
        )
        .await
        .unwrap();
    }
    for customer in 14..=16 {
        assert!(matches!(
            b.reach_customer(
                "tier2",
                customer,
                CountTime::SystemNow(b_clock.now()),
                limit,
                span
            )
            .await
            .unwrap(),
            Reach::LimitReached { reached: 3 }
        ));
    }
}
