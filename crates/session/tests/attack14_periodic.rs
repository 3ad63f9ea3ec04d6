//! attack14: sled's flusher runs every `SledConfig::FLUSHER_CADENCE` in periodic mode too,
//! so a periodic store killed with SIGKILL loses at most the writes of the last such period
//! (plus one flush), however long its `interval`.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod child_process;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::{
    Conversation, Durability, LastShutdown, PhoneNumber, SledConfig, SledStore,
};

const DB_ENV: &str = "LIPACHAT_ATTACK14_PERIODIC_DB";
const WRITES: u64 = 200;
/// Far longer than the cadence: only the cadence can have flushed the writes in time.
const INTERVAL: Duration = Duration::from_secs(30);

fn conversation(i: u64) -> Conversation {
    Conversation::new(
        PhoneNumber::from_u64(254_110_090_747).unwrap(),
        PhoneNumber::from_u64(254_700_000_000 + i).unwrap(),
    )
}

fn time(i: u64) -> DateTime<Utc> {
    "2026-11-23T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + TimeDelta::seconds(i as i64)
}

/// The child: records `WRITES` windows in periodic mode, says so, and waits to be killed.
#[test]
#[ignore = "run as a child process by a_killed_periodic_store_keeps_writes_older_than_the_cadence"]
fn periodic_child() {
    let Ok(path) = std::env::var(DB_ENV) else {
        return;
    };
    let store = SledConfig::new(path)
        .durability(Durability::Periodic { interval: INTERVAL })
        .open()
        .unwrap();
    for i in 0..WRITES {
        store
            .record_inbound_blocking(conversation(i), time(i))
            .unwrap();
    }
    println!("written");
    std::thread::sleep(Duration::from_secs(60));
    drop(store);
}

/// Written, then given far more than the cadence and a flush (but far less than the
/// interval) before SIGKILL: every write is there after reopening.
#[test]
fn a_killed_periodic_store_keeps_writes_older_than_the_cadence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let mut child = child_process::spawn_test_child("periodic_child", DB_ENV, &path);
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let said = stdout
        .lines()
        .map(Result::unwrap)
        .find(|line| line.ends_with("written"));
    assert!(said.is_some(), "the child stopped early");
    std::thread::sleep(SledConfig::FLUSHER_CADENCE * 25);
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();

    let store = SledStore::open(&path).unwrap();
    assert_eq!(store.integrity().last_shutdown, LastShutdown::Unclean);
    let mut lost = Vec::new();
    for i in 0..WRITES {
        if store.window_blocking(conversation(i)).unwrap().is_none() {
            lost.push(i);
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {WRITES} writes made {:?} before the kill were lost: {lost:?}",
        lost.len(),
        SledConfig::FLUSHER_CADENCE * 25
    );
}
