//! The 131049 back-off is the customer's, across business numbers, on a real
//! `redis-server`: two replicas see one replica's back-off through every business
//! number; concurrent extends keep the latest end; the key expires a week after the
//! later of its end and the server's clock; a back-off an older version kept in the
//! conversation's consent HASH is still honoured for that conversation; an unreadable
//! one is a typed error naming the customer (a move stops with nothing moved; a new
//! 131049 replaces it); and an export from Redis imports into sled alike.
//!
//! Skipped when `redis-server` is not installed (unless `REQUIRE_REDIS=1`).

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use lipachat_redis::test_server::RedisServer;
use lipachat_redis::{KeyLayout, RedisStore};
use lipachat_session::export::{export, import};
use lipachat_session::{
    ConsentStore, Conversation, MarketingConsent, PhoneNumber, SledStore, WindowStore, conformance,
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

async fn replica(server: &RedisServer, prefix: &str) -> RedisStore {
    common::store_at(&server.url(), prefix).await
}

/// The customer through the first and through the second business number.
fn pair(n: u64) -> (Conversation, Conversation) {
    (
        Conversation::new(first(), customer(n)),
        Conversation::new(second(), customer(n)),
    )
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_back_off_across_numbers_and_its_key_expires_after_it() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, b) = (
        replica(&server, "shared").await,
        replica(&server, "shared").await,
    );
    let t0 = now();
    let until = t0 + TimeDelta::hours(24);
    let (limited, elsewhere) = pair(1);
    a.record_opt_out(limited, true, t0).await.unwrap();
    a.extend_back_off(limited, until).await.unwrap();
    assert_eq!(
        b.marketing_consent(elsewhere).await.unwrap(),
        MarketingConsent {
            back_off_until: Some(until),
            ..MarketingConsent::default()
        },
        "the other replica sees the back-off through the other number; the opt-out stays with its own"
    );

    // Concurrent extends from both replicas through both numbers: the latest end stays.
    let mut calls = Vec::new();
    for i in 0..40i64 {
        let (store, conversation) = if i % 2 == 0 {
            (a.clone(), limited)
        } else {
            (b.clone(), elsewhere)
        };
        calls.push(tokio::spawn(async move {
            store
                .extend_back_off(conversation, until + TimeDelta::minutes(i))
                .await
                .unwrap()
        }));
    }
    for call in calls {
        call.await.unwrap();
    }
    let latest = until + TimeDelta::minutes(39);
    assert_eq!(
        a.customer_back_off(customer(1).into()).await.unwrap(),
        Some(latest)
    );

    // The key lives a week after its end; one whose end is past, a week from now.
    let mut connection = raw(&server).await;
    let key = KeyLayout::new("shared").back_off(customer(1).into());
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .unwrap();
    let week = TimeDelta::days(7).num_milliseconds();
    let to_end = (latest - Utc::now()).num_milliseconds();
    assert!(
        (to_end + week - 60_000..=to_end + week + 60_000).contains(&ttl),
        "{ttl} ms"
    );
    let past = Conversation::new(first(), customer(2));
    a.extend_back_off(past, t0 - TimeDelta::days(30))
        .await
        .unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(KeyLayout::new("shared").back_off(customer(2).into()))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!((week - 60_000..=week).contains(&ttl), "{ttl} ms");
    assert_eq!(
        b.marketing_consent(past).await.unwrap().back_off_until,
        Some(t0 - TimeDelta::days(30)),
        "an ended back-off still reads (the caller's clock decides it is over)"
    );
}

/// An older version kept the back-off in the conversation's consent HASH field
/// (`<flag>:<changed ms>:<back-off ms>`): still honoured for that conversation
/// ([`conformance::legacy_back_off_is_honoured`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_back_off_an_older_version_kept_per_conversation_is_still_honoured() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = replica(&server, "legacy").await;
    let legacy_until = now() + TimeDelta::hours(24);
    let (limited, elsewhere) = pair(1);
    let () = redis::cmd("HSET")
        .arg(KeyLayout::new("legacy").consent(first()))
        .arg(limited.customer.key())
        .arg(format!("0::{}", legacy_until.timestamp_millis()))
        .query_async(&mut raw(&server).await)
        .await
        .unwrap();
    conformance::legacy_back_off_is_honoured(&store, limited, elsewhere, legacy_until).await;
}

/// A stored back-off that cannot be read: a typed error naming the customer, a move
/// stops, a new 131049 replaces it ([`conformance::unreadable_back_off_is_refused`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_back_off_is_a_typed_error_until_a_new_131049_replaces_it() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = replica(&server, "corrupt").await;
    let (limited, elsewhere) = pair(1);
    let t0 = now();
    store.record_inbound(limited, t0).await.unwrap();
    let () = redis::cmd("SET")
        .arg(KeyLayout::new("corrupt").back_off(limited.customer))
        .arg("soon")
        .query_async(&mut raw(&server).await)
        .await
        .unwrap();
    conformance::unreadable_back_off_is_refused(
        &store,
        limited,
        elsewhere,
        customer(2).into(),
        t0 + TimeDelta::hours(24),
    )
    .await;
}

/// An export from Redis imports into sled with the same back-offs (and back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_from_redis_imports_into_sled_alike() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let redis = replica(&server, "export").await;
    let t0 = now();
    for n in 1..=3 {
        redis
            .extend_back_off(
                Conversation::new(first(), customer(n)),
                t0 + TimeDelta::hours(i64::try_from(n).unwrap()),
            )
            .await
            .unwrap();
    }
    let mut exported = Vec::new();
    let written = export(&redis, &mut exported).await.unwrap();
    assert_eq!(written.back_offs, 3);
    let dir = tempfile::tempdir().unwrap();
    let sled = SledStore::open(dir.path().join("db")).unwrap();
    import(&sled, exported.as_slice()).await.unwrap();
    let sorted = |mut list: Vec<(lipachat_session::Customer, Option<DateTime<Utc>>)>| {
        list.sort_by_key(|(customer, _)| customer.key());
        list
    };
    let of = |entries: Vec<lipachat_session::back_off::BackOffEntry>| {
        sorted(
            entries
                .into_iter()
                .map(|(customer, until)| (customer, until.ok()))
                .collect(),
        )
    };
    let from_redis = of(redis.customer_back_offs().await.unwrap());
    assert_eq!(from_redis.len(), 3);
    assert_eq!(of(sled.customer_back_offs().await.unwrap()), from_redis);
    for n in 1..=3 {
        let conversation = Conversation::new(second(), customer(n));
        assert_eq!(
            sled.marketing_consent(conversation).await.unwrap(),
            redis.marketing_consent(conversation).await.unwrap()
        );
    }
}

/// An unreadable back-off on Redis is exported as a long back-off (fail closed), so
/// after an import into sled marketing to that customer is still withheld from every
/// business number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_back_off_on_redis_survives_export_into_sled() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let redis = replica(&server, "garbled-export").await;
    let (limited, elsewhere) = pair(1);
    redis.record_inbound(limited, now()).await.unwrap();
    let () = redis::cmd("SET")
        .arg(KeyLayout::new("garbled-export").back_off(limited.customer))
        .arg("soon")
        .query_async(&mut raw(&server).await)
        .await
        .unwrap();
    let mut exported = Vec::new();
    let written = export(&redis, &mut exported).await.unwrap();
    assert_eq!(
        (written.skipped_corrupt, written.unreadable_back_offs),
        (0, 1),
        "{written:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let sled = SledStore::open(dir.path().join("db")).unwrap();
    import(&sled, exported.as_slice()).await.unwrap();
    let least = Utc::now() + lipachat_session::export::UNREADABLE_BACK_OFF_EXPORTED_FOR
        - TimeDelta::minutes(1);
    for conversation in [limited, elsewhere] {
        let until = sled
            .marketing_consent(conversation)
            .await
            .unwrap()
            .back_off_until;
        assert!(
            until.is_some_and(|until| until >= least),
            "{conversation}: {until:?}"
        );
    }
}
