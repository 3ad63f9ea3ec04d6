//! A child process records in durable mode and is killed with SIGKILL mid-stream; every
//! record it acknowledged must be there after reopening.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::{Conversation, PhoneNumber, SledStore};

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

#[test]
fn sigkill_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DB_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut acknowledged = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(i) = line.strip_prefix("ack ") {
            acknowledged.push(i.parse::<u64>().unwrap());
            if acknowledged.len() == 3000 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert_eq!(acknowledged.len(), 3000, "the child stopped early");

    let store = SledStore::open(&path).expect("reopens cleanly after SIGKILL");
    for i in acknowledged {
        let record = store
            .window_blocking(conversation(i % 5000))
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged record {i} lost"));
        assert!(
            record.last_inbound >= time(i),
            "record {i} went back in time"
        );
    }
}
