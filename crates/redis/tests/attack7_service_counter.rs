//! Seventh hostile review on a real `redis-server`: a monthly service counter
//! (`svc.<business>.<YYYY-MM>`, which the policy counts on the send's time as given)
//! written by a release before the clock-kind key (7ab1691) is taken as counted on the
//! server's clock (e2d6a09), so the upgraded policy's next service count is refused.
//! Skipped when `redis-server` is not installed, unless `REQUIRE_REDIS=1`.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use chrono::{TimeDelta, Utc};
use lipachat_redis::KeyLayout;
use lipachat_redis::test_server::RedisServer;
use lipachat_session::{ConsentStore, Reach};

/// The policy's span for the monthly service counters (`SERVICE_TIER_SPAN`).
fn service_span() -> TimeDelta {
    TimeDelta::days(40)
}

/// Two service messages counted as the policy counts them (a `DateTime`, i.e. a given
/// time), then the clock-kind key deleted (a count an older release wrote, its ZSET
/// alive for 40 days after its last write): the next service message must be counted.
#[tokio::test]
async fn a_service_counter_written_before_the_clock_key_takes_the_next_service_message() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = common::store_at(&server.url(), "a7svc").await;
    let keys = KeyLayout::new("a7svc");
    let now = Utc::now();
    let counter = format!("svc.254110090747.{}", now.format("%Y-%m"));
    for member in [11_u64, 12] {
        let reach = store
            .reach_customer(&counter, member, now, 1000, service_span())
            .await
            .unwrap();
        assert!(matches!(reach, Reach::Counted { .. }), "{reach:?}");
    }
    let mut raw = common::raw_connection(&server.url()).await;
    let deleted: u64 = redis::cmd("DEL")
        .arg(keys.reached_clock(&counter))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(deleted, 1, "the counter had a clock-kind key");
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
