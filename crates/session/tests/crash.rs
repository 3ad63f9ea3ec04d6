//! A child process records in durable mode and is killed with SIGKILL mid-stream; every
//! record it acknowledged must be there after reopening. A second child records inbound
//! messages by id (the redelivery memory's expiry-ordered tree, its ids written in one
//! batch entry per flush, with entries expiring and being pruned as it goes): every id it
//! acknowledged must still be remembered.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod child_process;
mod raw_sled;
use raw_sled::raw_sled;

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::{
    Conversation, InboundId, InboundReceipt, PhoneNumber, SledStore, WindowStore,
};

const DB_ENV: &str = "LIPACHAT_CRASH_TEST_DB";

fn conversation(i: u64) -> Conversation {
    Conversation::new(
        PhoneNumber::from_u64(254_110_090_747).unwrap(),
        PhoneNumber::from_u64(254_700_000_000 + i).unwrap(),
    )
}

fn time(i: u64) -> DateTime<Utc> {
    "2026-11-23T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + TimeDelta::milliseconds(i as i64)
}

/// The child: records forever, printing each acknowledged record. Run only by the parent.
#[test]
#[ignore = "run as a child process by sigkill_loses_no_acknowledged_record"]
fn crash_child() {
    let Ok(path) = std::env::var(DB_ENV) else {
        return;
    };
    let store = SledStore::open(path).unwrap();
    let workers: Vec<_> = (0..4u64)
        .map(|worker| {
            let store = store.clone();
            std::thread::spawn(move || {
                for n in 0.. {
                    let i = n * 4 + worker;
                    store
                        .record_inbound_blocking(conversation(i % 5000), time(i))
                        .unwrap();
                    println!("ack {i}");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
}

/// Runs the ignored test `child` in a new process on the store at `path`, reads its
/// `ack N` lines until `wanted` of them, then kills it with SIGKILL.
fn acknowledged_until_killed(child: &str, path: &std::path::Path, wanted: usize) -> Vec<u64> {
    child_process::acknowledged_until_killed(child, DB_ENV, path, wanted)
}

#[test]
fn sigkill_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let acknowledged = acknowledged_until_killed("crash_child", &path, 3000);

    let store = SledStore::open(&path).expect("reopens cleanly after SIGKILL");
    for i in acknowledged {
        assert_window_kept(&store, i);
    }
}

/// The window acknowledged record `i` wrote is there, at its time or later.
fn assert_window_kept(store: &SledStore, i: u64) {
    let record = store
        .window_blocking(conversation(i % 5000))
        .unwrap()
        .unwrap_or_else(|| panic!("acknowledged record {i} lost"));
    assert!(
        record.last_inbound >= time(i),
        "record {i} went back in time"
    );
}

fn inbound_id(i: u64) -> InboundId {
    InboundId::new(&format!("wamid.CRASH{i:020}")).unwrap()
}

/// How long the child remembers id `i`: odd ids for 5 ms of the recorded times (so later
/// records prune them while the child runs), even ids for 7 days.
fn remembered_for(i: u64) -> TimeDelta {
    if i % 2 == 1 {
        TimeDelta::milliseconds(5)
    } else {
        TimeDelta::days(7)
    }
}

/// The child: records inbound messages by id forever from 4 tasks, printing each
/// acknowledged one. Run only by the parent.
#[test]
#[ignore = "run as a child process by sigkill_loses_no_acknowledged_inbound_id"]
fn crash_child_once() {
    let Ok(path) = std::env::var(DB_ENV) else {
        return;
    };
    let store = SledStore::open(path).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let workers: Vec<_> = (0..4u64)
            .map(|worker| {
                let store = store.clone();
                tokio::spawn(async move {
                    for n in 0.. {
                        let i = n * 4 + worker;
                        let receipt = store
                            .record_inbound_once(
                                conversation(i % 5000),
                                time(i),
                                &inbound_id(i),
                                time(i),
                                time(i) + remembered_for(i),
                            )
                            .await
                            .unwrap();
                        assert!(matches!(receipt, InboundReceipt::Recorded(_)));
                        println!("ack {i}");
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.unwrap();
        }
    });
}

#[tokio::test]
async fn sigkill_loses_no_acknowledged_inbound_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let acknowledged = acknowledged_until_killed("crash_child_once", &path, 3000);

    let store = SledStore::open(&path).expect("reopens cleanly after SIGKILL");
    let mut kept = 0;
    for i in acknowledged {
        assert_window_kept(&store, i);
        if i % 2 == 1 {
            continue; // Remembered for 5 ms: it may have been pruned.
        }
        kept += 1;
        // The sender redelivers it a day later: a duplicate of the first copy.
        let again = store
            .record_inbound_once(
                conversation(i % 5000),
                time(i),
                &inbound_id(i),
                time(i) + TimeDelta::days(1),
                time(i) + TimeDelta::days(8),
            )
            .await
            .unwrap();
        assert_eq!(
            again,
            InboundReceipt::Duplicate {
                first_received_at: time(i)
            },
            "acknowledged id {i} forgotten"
        );
    }
    assert!(
        kept > 1000,
        "too few long-remembered ids acknowledged: {kept}"
    );
    // What the kill left is batches of ids, one per flush (not one entry per id): the
    // structure this test is about.
    drop(store);
    let db = raw_sled(&path);
    let by_expiry = db.open_tree("seen_inbound_expiry").unwrap();
    let mut batches = 0;
    for item in by_expiry.iter() {
        let (key, value) = item.unwrap();
        assert_eq!(key.len(), 16, "only batch entries");
        assert_eq!(value.len() % 40, 0, "a batch is whole 40-byte records");
        batches += 1;
    }
    assert!(batches > 0, "no batch entries");
}
