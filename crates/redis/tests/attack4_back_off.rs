//! Attacks on the customer back-off (131049) on a real `redis-server` (and sled on
//! disk alongside): stored values the Lua scripts take for a number but the store cannot
//! read (too many digits, beyond the time range), and back-off ends at the very edges of
//! the time range (a clock far in the future or past), which must round-trip and never
//! be shortened.
//!
//! Skipped when `redis-server` is not installed (unless `REQUIRE_REDIS=1`).

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use lipachat_redis::KeyLayout;
use lipachat_redis::test_server::RedisServer;
use lipachat_session::{
    ConsentStore, Conversation, PhoneNumber, SledStore, Store, StoreError, WindowStore,
    conformance, truncate_to_millis,
};

fn first() -> PhoneNumber {
    "254110090747".parse().unwrap()
}

fn second() -> PhoneNumber {
    "254110090748".parse().unwrap()
}

fn customer(n: u64) -> PhoneNumber {
    PhoneNumber::from_u64(254_712_000_000 + n).unwrap()
}

fn now() -> DateTime<Utc> {
    (Utc::now() - TimeDelta::minutes(1)).trunc_subsecs(3)
}

/// Stored texts that look like a number to the scripts' check (`^-?%d+$`) but are not a
/// back-off end the store can read: more digits than an `i64`, and a millisecond count
/// past the last time there is. Each must behave as any unreadable back-off does: a
/// typed error naming the customer, a move stopped, and a new 131049 replacing it (as
/// on sled, where the same texts are replaced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_back_off_only_the_scripts_can_read_is_replaced_by_a_new_131049() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    for (n, text) in ["99999999999999999999", "8210266876800000"]
        .into_iter()
        .enumerate()
    {
        let prefix = format!("digits{n}");
        let store = common::store_at(&server.url(), &prefix).await;
        let (limited, elsewhere) = (
            Conversation::new(first(), customer(1)),
            Conversation::new(second(), customer(1)),
        );
        let t0 = now();
        store.record_inbound(limited, t0).await.unwrap();
        let () = redis::cmd("SET")
            .arg(KeyLayout::new(&prefix).back_off(limited.customer))
            .arg(text)
            .query_async(&mut common::raw_connection(&server.url()).await)
            .await
            .unwrap();
        let read = store.marketing_consent(elsewhere).await;
        assert!(
            matches!(read, Err(StoreError::CorruptBackOff { .. })),
            "{text}: reading it is a typed error, got {read:?}"
        );
        conformance::unreadable_back_off_is_refused(
            &store,
            limited,
            elsewhere,
            customer(2).into(),
            t0 + TimeDelta::hours(24),
        )
        .await;
    }
}

/// Back-off ends 29 days ahead, at the last instant there is (a 131049 recorded with a
/// clock far ahead saturates there: kept, as an export writes it within an import's
/// bound) and at the first instant there is: stored, read back to the millisecond through both numbers, never
/// shortened by a later 131049, and the first never lengthens a stored one. On Redis and
/// on sled alike.
async fn extreme_ends<S: Store>(store: &S) {
    let (limited, elsewhere) = (
        Conversation::new(first(), customer(3)),
        Conversation::new(second(), customer(3)),
    );
    let last = truncate_to_millis(now() + TimeDelta::days(29));
    let earliest = truncate_to_millis(DateTime::<Utc>::MIN_UTC);
    let other = Conversation::new(first(), customer(4));
    assert_eq!(
        store
            .extend_back_off(other, earliest)
            .await
            .unwrap()
            .back_off_until,
        Some(earliest)
    );
    assert_eq!(
        store.customer_back_off(other.customer).await.unwrap(),
        Some(earliest)
    );
    store
        .extend_back_off(limited, now() + TimeDelta::hours(24))
        .await
        .unwrap();
    // A back-off at the last instant there is (a 131049 recorded from a clock far ahead
    // saturates there) is kept and read back: refusing it would let marketing go.
    let furthest = truncate_to_millis(DateTime::<Utc>::MAX_UTC);
    let far = Conversation::new(first(), customer(5));
    assert_eq!(
        store
            .extend_back_off(far, DateTime::<Utc>::MAX_UTC)
            .await
            .unwrap()
            .back_off_until,
        Some(furthest)
    );
    assert_eq!(
        store.customer_back_off(far.customer).await.unwrap(),
        Some(furthest)
    );
    assert_eq!(
        store
            .extend_back_off(limited, last)
            .await
            .unwrap()
            .back_off_until,
        Some(last)
    );
    for conversation in [limited, elsewhere] {
        assert_eq!(
            store
                .marketing_consent(conversation)
                .await
                .unwrap()
                .back_off_until,
            Some(last)
        );
    }
    for shorter in [now() + TimeDelta::hours(24), earliest] {
        assert_eq!(
            store
                .extend_customer_back_off(limited.customer, shorter)
                .await
                .unwrap(),
            last,
            "a shorter back-off never shortens the stored one"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_off_ends_at_the_edges_of_time_round_trip_and_are_never_shortened() {
    let dir = tempfile::tempdir().unwrap();
    extreme_ends(&SledStore::open(dir.path().join("db")).unwrap()).await;
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = common::store_at(&server.url(), "edges").await;
    extreme_ends(&store).await;
    // The key of the furthest back-off expires a week after it (never before the end).
    let ttl: i64 = redis::cmd("PTTL")
        .arg(KeyLayout::new("edges").back_off(customer(3).into()))
        .query_async(&mut common::raw_connection(&server.url()).await)
        .await
        .unwrap();
    assert!(ttl == -1 || ttl > 0, "{ttl}");
    let expires_at: i64 = redis::cmd("PEXPIRETIME")
        .arg(KeyLayout::new("edges").back_off(customer(3).into()))
        .query_async(&mut common::raw_connection(&server.url()).await)
        .await
        .unwrap_or(-3);
    if expires_at >= 0 {
        assert!(
            expires_at >= (now() + TimeDelta::days(29)).timestamp_millis(),
            "{expires_at}"
        );
    }
}
