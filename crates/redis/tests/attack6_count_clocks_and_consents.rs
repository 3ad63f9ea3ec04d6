//! Sixth hostile review on a real `redis-server`: the messaging limit's clock-kind
//! marker (`P:{portfolio:NAME}:reached-clock`, 7ab1691) and an unreadable marketing
//! consent record exported as an opt-out (aca0696). Skipped when `redis-server` is not
//! installed, unless `REQUIRE_REDIS=1`.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use chrono::{TimeDelta, Utc};
use lipachat_redis::KeyLayout;
use lipachat_redis::test_server::RedisServer;
use lipachat_session::export::{export, import};
use lipachat_session::{ConsentStore, Conversation, CountTime, PhoneNumber, Reach, StoreError};

const TIER: u64 = 2;

fn span() -> TimeDelta {
    TimeDelta::hours(24)
}

/// A simulated clock's count 25 hours ahead of `now`.
fn ahead(now: chrono::DateTime<Utc>) -> CountTime {
    CountTime::Given(now + TimeDelta::hours(25))
}

/// The marker and the count share one expiry: after the marker has expired the count
/// has too, so a count on the other kind starts a fresh count and is not mixed.
#[tokio::test]
async fn the_marker_and_the_count_expire_together() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = common::store_at(&server.url(), "a6exp").await;
    let keys = KeyLayout::new("a6exp");
    let now = Utc::now();
    store
        .reach_customer("p", 1, CountTime::SystemNow(now), TIER, span())
        .await
        .unwrap();
    let mut raw = common::raw_connection(&server.url()).await;
    let count_ttl: i64 = redis::cmd("PTTL")
        .arg("a6exp:{portfolio:p}:reached")
        .query_async(&mut raw)
        .await
        .unwrap();
    let marker_ttl: i64 = redis::cmd("PTTL")
        .arg(keys.reached_clock("p"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(count_ttl > 0 && marker_ttl > 0, "{count_ttl} {marker_ttl}");
    assert!(
        (count_ttl - marker_ttl).abs() < 1_000,
        "count {count_ttl} ms, marker {marker_ttl} ms"
    );
    // A second kind is refused while both live.
    let other = store.reach_customer("p", 2, ahead(now), TIER, span()).await;
    assert!(
        matches!(other, Err(StoreError::MixedCountClocks { .. })),
        "{other:?}"
    );
}

/// A count that holds entries but no marker (written by the release before 7ab1691,
/// still alive for up to a day after an upgrade, or a marker lost) takes a count on any
/// kind: a simulated replica 25 hours ahead prunes the real replica's entries and the
/// portfolio lets twice its tier through.
#[tokio::test]
async fn a_count_without_its_marker_is_not_mixed() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = common::store_at(&server.url(), "a6legacy").await;
    let now = Utc::now();
    for customer in 1..=TIER {
        let reach = store
            .reach_customer("p", customer, CountTime::SystemNow(now), TIER, span())
            .await
            .unwrap();
        assert!(matches!(reach, Reach::Counted { .. }), "{reach:?}");
    }
    let mut raw = common::raw_connection(&server.url()).await;
    let _: i64 = redis::cmd("DEL")
        .arg(KeyLayout::new("a6legacy").reached_clock("p"))
        .query_async(&mut raw)
        .await
        .unwrap();
    let third = store.reach_customer("p", 3, ahead(now), TIER, span()).await;
    assert!(
        !matches!(third, Ok(Reach::Counted { .. })),
        "a third customer was counted past the tier of {TIER}: {third:?}"
    );
}

/// Claim 3 on Redis: an unreadable consent value is exported as an opt-out made at the
/// export, and the import keeps marketing withheld.
#[tokio::test]
async fn an_unreadable_redis_consent_is_exported_as_an_opt_out() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = common::store_at(&server.url(), "a6consent").await;
    let business = PhoneNumber::from_u64(254_100_000_601).unwrap();
    let readable = Conversation::new(business, PhoneNumber::from_u64(254_700_000_601).unwrap());
    let damaged = Conversation::new(business, PhoneNumber::from_u64(254_700_000_602).unwrap());
    store
        .record_opt_out(readable, false, Utc::now())
        .await
        .unwrap();
    let mut raw = common::raw_connection(&server.url()).await;
    let _: i64 = redis::cmd("HSET")
        .arg(KeyLayout::new("a6consent").consent(business))
        .arg(damaged.customer.key().to_string())
        .arg("not a consent record")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(store.marketing_consent(damaged).await.is_err());
    let mut exported = Vec::new();
    let written = export(&store, &mut exported).await.unwrap();
    assert_eq!(written.unreadable_consents, 1, "{written:?}");
    let copy = common::store_at(&server.url(), "a6consent-copy").await;
    import(&copy, exported.as_slice()).await.unwrap();
    assert!(copy.marketing_consent(damaged).await.unwrap().opted_out);
    assert!(!copy.marketing_consent(readable).await.unwrap().opted_out);
}
