//! Faults: Redis killed with SIGKILL mid-run and restarted, a frozen server, no server
//! at all. Calls must fail with a typed error within 5 seconds, the same store value
//! must recover by itself, and no acknowledged write may be lost (the test server runs
//! with `appendonly yes`, `appendfsync always`).

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_redis::test_server::RedisServer;
use lipachat_redis::{ConnectError, RedisStore};
use lipachat_session::{
    Conversation, MessageId, OutboxStore, PhoneNumber, QueuedMessage, StoreError, WindowStore,
};

/// The bound the issue sets on a failing call.
const BOUND: Duration = Duration::from_secs(5);

fn chat(i: u64) -> Conversation {
    Conversation::new(
        PhoneNumber::from_u64(254_110_090_000 + i % 3).unwrap(),
        PhoneNumber::from_u64(254_700_000_000 + i).unwrap(),
    )
}

fn time(i: u64) -> DateTime<Utc> {
    "2026-11-23T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + TimeDelta::milliseconds(i as i64)
}

/// An outage is Redis's backend error, worth retrying later, its source the typed
/// failure (no answer in time, a broken call, no connection).
fn assert_typed(error: &StoreError) {
    assert!(
        matches!(
            error,
            StoreError::Backend {
                backend: lipachat_redis::REDIS_BACKEND,
                transient: true,
                ..
            }
        ),
        "expected Redis's transient StoreError::Backend, got {error:?}"
    );
    assert!(error.retry_later_may_help());
    let source = std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<lipachat_redis::RedisStoreError>());
    assert!(
        matches!(
            source,
            Some(
                lipachat_redis::RedisStoreError::Timeout { .. }
                    | lipachat_redis::RedisStoreError::Call { .. }
                    | lipachat_redis::RedisStoreError::Connect { .. }
            )
        ),
        "expected a typed outage as the source, got {source:?}"
    );
}

/// Waits until `probe` succeeds, up to `within`; returns how long it took.
async fn recovers<F, Fut>(within: Duration, mut probe: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), StoreError>>,
{
    let start = Instant::now();
    loop {
        match probe().await {
            Ok(()) => return start.elapsed(),
            Err(error) => {
                assert_typed(&error);
                assert!(
                    start.elapsed() < within,
                    "the store did not recover within {within:?}: {error}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[derive(Default)]
struct Log {
    /// Inbound records acknowledged: (conversation index, time index).
    inbound: Vec<u64>,
    /// Messages acknowledged as queued.
    queued: Vec<(u64, MessageId)>,
    /// How long each failed call took.
    failures: Vec<Duration>,
    /// Acknowledged writes after the restart.
    after_restart: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_lose_no_acknowledged_write() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let store = RedisStore::connect(&server.url()).await.unwrap();
    let log = Arc::new(Mutex::new(Log::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let restarted = Arc::new(AtomicBool::new(false));

    // Two writers on clones of one store, as two tasks of one replica.
    let mut writers = Vec::new();
    for writer in 0..2u64 {
        let (store, log, stop, restarted) =
            (store.clone(), log.clone(), stop.clone(), restarted.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let i = n * 2 + writer;
                n += 1;
                let started = Instant::now();
                let result = if i.is_multiple_of(4) {
                    let id = MessageId::new();
                    let message = QueuedMessage {
                        message_id: id,
                        queued_at: time(i),
                        payload: format!("{{\"n\":{i}}}"),
                    };
                    store
                        .enqueue(chat(i % 40), message, 10_000)
                        .await
                        .map(|_| Some(id))
                } else {
                    store
                        .record_inbound(chat(i % 200), time(i))
                        .await
                        .map(|_| None)
                };
                {
                    let mut log = log.lock().unwrap();
                    if result.is_ok() && restarted.load(Ordering::Relaxed) {
                        log.after_restart += 1;
                    }
                    match result {
                        Ok(Some(id)) => log.queued.push((i, id)),
                        Ok(None) => log.inbound.push(i),
                        Err(error) => {
                            assert_typed(&error);
                            log.failures.push(started.elapsed());
                        }
                    }
                }
                if n.is_multiple_of(50) {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }

    // Let some writes through, then kill the server mid-stream.
    let deadline = Instant::now() + Duration::from_secs(20);
    while log.lock().unwrap().inbound.len() < 300 {
        assert!(Instant::now() < deadline, "writers made no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill();
    let acked_before_kill = {
        let log = log.lock().unwrap();
        (log.inbound.len(), log.queued.len())
    };

    // While it is down, every call fails with a typed error within the bound.
    for _ in 0..3 {
        let started = Instant::now();
        let error = store.window(chat(1)).await.unwrap_err();
        assert_typed(&error);
        assert!(
            started.elapsed() < BOUND,
            "a read took {:?}",
            started.elapsed()
        );
        let started = Instant::now();
        let error = store.record_inbound(chat(1), time(0)).await.unwrap_err();
        assert_typed(&error);
        assert!(
            started.elapsed() < BOUND,
            "a write took {:?}",
            started.elapsed()
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Restart on the same port and directory; the same store value recovers by itself.
    server.restart();
    let recovery = recovers(Duration::from_secs(10), || async {
        store.window(chat(1)).await.map(drop)
    })
    .await;
    restarted.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if log.lock().unwrap().after_restart >= 50 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writers did not resume after the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }

    let log = std::mem::take(&mut *log.lock().unwrap());
    assert!(
        !log.failures.is_empty(),
        "writers saw no failure while Redis was down"
    );
    let slowest = log.failures.iter().max().copied().unwrap_or_default();
    assert!(slowest < BOUND, "a failing call took {slowest:?}");

    // Every acknowledged write is there: inbound times are at least what was
    // acknowledged (keep-max), and every acknowledged message is queued.
    let mut expected = std::collections::BTreeMap::new();
    for &i in &log.inbound {
        let entry = expected.entry(i % 200).or_insert(i);
        *entry = (*entry).max(i);
    }
    for (&c, &i) in &expected {
        let record =
            store.window(chat(c)).await.unwrap().unwrap_or_else(|| {
                panic!("the acknowledged inbound record of {} is lost", chat(c))
            });
        assert!(
            record.last_inbound >= time(i),
            "{}: stored {} but {} was acknowledged",
            chat(c),
            record.last_inbound,
            time(i)
        );
    }
    let mut queued = std::collections::HashSet::new();
    for c in 0..40 {
        queued.extend(
            store
                .queued(chat(c))
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.message_id),
        );
    }
    let lost: Vec<_> = log
        .queued
        .iter()
        .filter(|(_, id)| !queued.contains(id))
        .collect();
    assert!(lost.is_empty(), "acknowledged messages lost: {lost:?}");
    eprintln!(
        "acknowledged {} inbound and {} queued ({} / {} before the kill); {} failures, slowest {slowest:?}; recovered {recovery:?} after the restart",
        log.inbound.len(),
        log.queued.len(),
        acked_before_kill.0,
        acked_before_kill.1,
        log.failures.len(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_server_times_out_then_recovers() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = RedisStore::connect(&server.url()).await.unwrap();
    store.record_inbound(chat(7), time(7)).await.unwrap();
    server.pause();
    for _ in 0..2 {
        let started = Instant::now();
        let error = store.window(chat(7)).await.unwrap_err();
        assert_typed(&error);
        assert!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
        let started = Instant::now();
        let error = store.record_inbound(chat(8), time(8)).await.unwrap_err();
        assert_typed(&error);
        assert!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
    }
    // A new connection attempt also ends in time: the port accepts, nothing answers.
    let started = Instant::now();
    let error = RedisStore::connect(&server.url()).await.unwrap_err();
    assert!(
        matches!(error, ConnectError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(
        started.elapsed() < BOUND,
        "connect took {:?}",
        started.elapsed()
    );
    server.resume();
    recovers(Duration::from_secs(10), || async {
        store.window(chat(7)).await.map(drop)
    })
    .await;
    assert_eq!(
        store.window(chat(7)).await.unwrap().map(|r| r.last_inbound),
        Some(time(7))
    );
    // A write that timed out may or may not have been applied (it was sent): either
    // way the store works and answers consistently.
    store.record_inbound(chat(8), time(9)).await.unwrap();
    assert_eq!(
        store.window(chat(8)).await.unwrap().map(|r| r.last_inbound),
        Some(time(9))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_fails_fast_with_a_typed_error() {
    // Start and stop a server to have a port where nothing listens.
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let url = server.url();
    server.kill();
    let started = Instant::now();
    let error = RedisStore::connect(&url).await.unwrap_err();
    assert!(
        matches!(error, ConnectError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(
        started.elapsed() < BOUND,
        "connect took {:?}",
        started.elapsed()
    );
    assert!(error.to_string().contains("127.0.0.1"), "{error}");
}
