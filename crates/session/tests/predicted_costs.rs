//! The sled store's predicted costs, batched: costs recorded together share one entry of
//! the `predicted_costs` tree, and a process killed with SIGKILL leaves a store that
//! opens intact, reads every batch it wrote, and holds every cost recorded more than a
//! moment before the kill.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::{
    ConsentStore, Conversation, MessageId, PhoneNumber, PredictedCost, PricingCategory, SledStore,
};

const DB_ENV: &str = "LIPACHAT_COSTS_KILL_TEST_DB";
/// Set for the child that stops recording after this many costs and waits to be killed.
const STOP_ENV: &str = "LIPACHAT_COSTS_KILL_TEST_STOP";

/// The cost recorded as number `i`: the same in the child and the parent.
fn cost(i: u64) -> PredictedCost {
    PredictedCost {
        conversation: Conversation::new(
            PhoneNumber::from_u64(254_110_090_747 + i % 2).unwrap(),
            PhoneNumber::from_u64(254_700_000_000 + i % 5000).unwrap(),
        ),
        message_id: MessageId::from_bytes((u128::from(i) + 1).to_be_bytes()),
        wa_id: (!i.is_multiple_of(3)).then(|| format!("wamid.HBgM{i:020}")),
        sent_at: "2026-11-23T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
            + TimeDelta::milliseconds(i as i64),
        category: PricingCategory::ALL[(i % 4) as usize],
        free: i.is_multiple_of(2),
    }
}

/// The number a cost read back was recorded as.
fn number(cost: &PredictedCost) -> u64 {
    (u128::from_be_bytes(*cost.message_id.as_bytes()) - 1) as u64
}

fn tallied_entries(store: &SledStore) -> u64 {
    store
        .integrity()
        .trees
        .iter()
        .find(|t| t.tree == "predicted_costs")
        .unwrap()
        .found
        .entries
}

#[tokio::test]
async fn costs_recorded_together_share_an_entry_and_all_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = SledStore::open(&path).unwrap();
    for i in 0..400 {
        store.record_predicted_cost(cost(i)).await.unwrap();
    }
    drop(store);
    let store = SledStore::open(&path).unwrap();
    let entries = tallied_entries(&store);
    assert!(
        entries <= 20,
        "400 costs recorded at once take {entries} entries, not one each"
    );
    let mut read: Vec<_> = store
        .cost_records(None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.predicted)
        .collect();
    read.sort_by_key(number);
    assert_eq!(read, (0..400).map(cost).collect::<Vec<_>>());
}

/// The child: records costs from four tasks, printing each acknowledged one; with
/// [`STOP_ENV`], stops after that many and waits. Run only by the parent.
#[test]
#[ignore = "run as a child process by the SIGKILL tests below"]
fn costs_child() {
    let Ok(path) = std::env::var(DB_ENV) else {
        return;
    };
    let stop: Option<u64> = std::env::var(STOP_ENV).ok().map(|s| s.parse().unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = SledStore::open(path).unwrap();
        let tasks: Vec<_> = (0..4u64)
            .map(|task| {
                let store = store.clone();
                tokio::spawn(async move {
                    for n in 0.. {
                        let i = n * 4 + task;
                        if stop.is_some_and(|stop| i >= stop) {
                            break;
                        }
                        store.record_predicted_cost(cost(i)).await.unwrap();
                        println!("ack {i}");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        println!("stopped");
        std::future::pending::<()>().await;
    });
}

fn start_child(path: &std::path::Path, stop: Option<u64>) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "costs_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DB_ENV, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(stop) = stop {
        command.env(STOP_ENV, stop.to_string());
    }
    command.spawn().unwrap()
}

/// Reads the child's lines until `until` says enough; the acknowledged numbers.
fn acknowledged(child: &mut Child, until: impl Fn(&str, usize) -> bool) -> Vec<u64> {
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut acked = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        // The first may follow libtest's "test costs_child ... " on its line.
        if let Some(i) = line.split("ack ").nth(1) {
            acked.push(i.parse::<u64>().unwrap());
        }
        if until(&line, acked.len()) {
            break;
        }
    }
    acked
}

/// Every cost the store holds, by number, checked to be the one recorded as it.
async fn read_back(path: &std::path::Path) -> HashMap<u64, PredictedCost> {
    let store = SledStore::open(path).expect("reopens intact after SIGKILL");
    let mut found = HashMap::new();
    for record in store.cost_records(None).await.unwrap() {
        let i = number(&record.predicted);
        assert_eq!(record.predicted, cost(i), "cost {i} reads back as recorded");
        assert!(
            found.insert(i, record.predicted).is_none(),
            "cost {i} twice"
        );
    }
    found
}

#[tokio::test]
async fn sigkill_after_a_pause_keeps_every_cost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut child = start_child(&path, Some(3000));
    let acked = acknowledged(&mut child, |line, _| line.ends_with("stopped"));
    assert_eq!(acked.len(), 3000, "the child stopped early");
    // The documented bound: a batch is written within 100 ms, and sled flushes every
    // 500 ms. Three seconds leaves room for a busy machine.
    std::thread::sleep(Duration::from_secs(3));
    child.kill().unwrap(); // SIGKILL on Unix: no destructor, no flush.
    child.wait().unwrap();
    let found = read_back(&path).await;
    for i in acked {
        assert!(
            found.contains_key(&i),
            "cost {i}, recorded 3 s before the kill, lost"
        );
    }
}

#[tokio::test]
async fn sigkill_mid_stream_leaves_a_readable_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    for round in 0..3 {
        let mut child = start_child(&path, None);
        let acked = acknowledged(&mut child, |_, n| n >= 2000 + round * 500);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(acked.len() >= 2000, "the child stopped early");
        // Whatever was on disk at the kill reads back whole and as recorded.
        read_back(&path).await;
    }
}
