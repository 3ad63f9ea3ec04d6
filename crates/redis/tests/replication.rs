//! The replica wait (`RedisConfig::with_replica_wait`, Redis `WAIT`) against a real
//! primary and replica: a write is acknowledged only once a replica holds it, a write no
//! replica confirms is an error that says so, and after a Sentinel promotes the replica
//! of a killed primary every acknowledged write is on it.
//!
//! Skipped when `redis-server` is missing, unless `REQUIRE_REDIS=1`.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lipachat_redis::test_server::{RedisSentinel, RedisServer, ServerSetup};
use lipachat_redis::{
    ConfigError, ConnectError, RedisConfig, RedisStore, RedisTimeouts, ReplicaWait,
};
use lipachat_session::{Conversation, PhoneNumber, StoreError, WindowStore};

const WAIT_ONE: ReplicaWait = ReplicaWait {
    replicas: 1,
    timeout: Duration::from_millis(300),
};

fn chat(i: u64) -> Conversation {
    Conversation::new(
        PhoneNumber::from_u64(254_110_090_747).unwrap(),
        PhoneNumber::from_u64(254_700_000_000 + i).unwrap(),
    )
}

fn time(i: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_795_000_000_000 + i as i64).unwrap()
}

/// A primary and its replica, the replica in sync.
fn primary_and_replica() -> Option<(RedisServer, RedisServer)> {
    let primary = RedisServer::start()?;
    let replica = RedisServer::start_with(ServerSetup::new().replica_of(primary.port()))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while replica
        .info_field("replication", "master_link_status")
        .as_deref()
        != Some("up")
    {
        assert!(Instant::now() < deadline, "the replica did not sync");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((primary, replica))
}

async fn waiting_store(url: &str) -> RedisStore {
    RedisConfig::new(url)
        .unwrap()
        .with_replica_wait(WAIT_ONE)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[test]
fn a_replica_wait_must_fit_the_timeouts() {
    let config = RedisConfig::new("redis://127.0.0.1:6379/0").unwrap();
    for (wait, says) in [
        (
            ReplicaWait {
                replicas: 0,
                timeout: Duration::from_millis(100),
            },
            "at least one replica",
        ),
        (
            ReplicaWait {
                replicas: 1,
                timeout: Duration::ZERO,
            },
            "at least one millisecond",
        ),
        (
            ReplicaWait {
                replicas: 1,
                timeout: Duration::from_secs(2),
            },
            "shorter than the response timeout",
        ),
    ] {
        match config.clone().with_replica_wait(wait) {
            Err(ConfigError::ReplicaWait(detail)) => assert!(detail.contains(says), "{detail}"),
            other => panic!("{wait:?}: expected a ReplicaWait error, got {other:?}"),
        }
    }
    // Shortening the response timeout below a configured wait is refused too.
    let waiting = config.with_replica_wait(WAIT_ONE).unwrap();
    assert!(matches!(
        waiting.with_timeouts(RedisTimeouts {
            response: Duration::from_millis(200),
            ..Default::default()
        }),
        Err(ConfigError::ReplicaWait(_))
    ));
}

/// With the wait, an acknowledged write is already on the replica; with the replica
/// frozen, a write is refused with an error naming the replicas (it was applied on the
/// primary, as the message says), where a store without the wait acknowledges it.
#[tokio::test]
async fn a_write_is_acknowledged_only_once_a_replica_holds_it() {
    let Some((primary, replica)) = primary_and_replica() else {
        return;
    };
    let store = waiting_store(&primary.url()).await;
    // The store needs a primary: a replica is refused, saying why.
    let refused = RedisStore::connect(&replica.url()).await.unwrap_err();
    assert!(
        matches!(refused, ConnectError::Unsuitable { .. })
            && refused.to_string().contains("read-only replica"),
        "{refused:?}"
    );
    let window = store.keys().window(chat(0).business);
    for i in 0..50 {
        store.record_inbound(chat(i), time(i)).await.unwrap();
        // Read on the replica right after the acknowledgement: already there.
        let on_replica = replica
            .cli(&["HGET", &window, &chat(i).customer.key().to_string()])
            .unwrap();
        assert_eq!(
            on_replica.trim(),
            time(i).timestamp_millis().to_string(),
            "write {i} was acknowledged before the replica had it"
        );
    }
    replica.pause();
    let started = Instant::now();
    let error = store
        .record_inbound(chat(100), time(100))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Backend { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("0 of the 1 replicas") && message.contains("applied on the primary"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // The same write through a store without the wait is acknowledged at once.
    let plain = RedisStore::connect(&primary.url()).await.unwrap();
    plain.record_inbound(chat(101), time(101)).await.unwrap();
    // Reads do not wait.
    assert!(store.window(chat(100)).await.unwrap().is_some());
    replica.resume();
}

/// A Sentinel promotes the replica of a killed primary; every write the store
/// acknowledged (each confirmed by the replica) is on the new primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sentinel_failover_every_acknowledged_write_is_on_the_new_primary() {
    let Some((mut primary, replica)) = primary_and_replica() else {
        return;
    };
    let Some(sentinel) = RedisSentinel::start(&primary) else {
        return;
    };
    assert_eq!(sentinel.primary_port(), Some(primary.port()));
    let store = waiting_store(&primary.url()).await;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0..100_000u64 {
                match store.record_inbound(chat(i % 50), time(i)).await {
                    Ok(_) => acknowledged.push(i),
                    // The primary is gone: stop at the first failure.
                    Err(_) => break,
                }
            }
            acknowledged
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    primary.kill();
    let acknowledged = writer.await.unwrap();
    assert!(acknowledged.len() > 10, "writes ran before the kill");
    let old_port = primary.port();
    let new_port = tokio::task::spawn_blocking(move || sentinel.wait_for_failover(old_port))
        .await
        .unwrap();
    assert_eq!(
        new_port,
        replica.port(),
        "the Sentinel promoted the replica"
    );
    // The promoted replica accepts writes once its role changes.
    let promoted = RedisStore::connect(&replica.url()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while promoted.record_inbound(chat(999), time(0)).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the promoted replica never took writes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut latest = std::collections::BTreeMap::new();
    for i in &acknowledged {
        latest.insert(i % 50, *i);
    }
    for (customer, i) in latest {
        let stored = promoted.window(chat(customer)).await.unwrap().unwrap();
        assert!(
            stored.last_inbound >= time(i),
            "customer {customer}: write {i} was acknowledged but the new primary has {}",
            stored.last_inbound
        );
    }
    eprintln!(
        "sentinel failover: {} writes acknowledged before the kill, all on the new primary",
        acknowledged.len()
    );
}
