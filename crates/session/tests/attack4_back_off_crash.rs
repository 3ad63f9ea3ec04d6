//! A child process limits customers (131049 back-off) and moves each to a new number
//! (`move_customer`, which carries the back-off first, outside the move's transaction),
//! on sled on disk, and is killed with SIGKILL mid-stream, so some kills land between
//! the back-off's copy and the move. After reopening: wherever a limited customer's
//! conversation ended up (the old number, or the new one), its back-off is there, and
//! every acknowledged move has both.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::{
    ConsentStore, Conversation, Customer, IdentityStore, PhoneNumber, SledStore, WindowStore,
};

const DB_ENV: &str = "LIPACHAT_ATTACK4_CRASH_DB";

fn business() -> PhoneNumber {
    PhoneNumber::from_u64(254_110_090_747).unwrap()
}

fn old_number(i: u64) -> Customer {
    PhoneNumber::from_u64(254_700_000_000 + i).unwrap().into()
}

fn new_number(i: u64) -> Customer {
    PhoneNumber::from_u64(254_710_000_000 + i).unwrap().into()
}

fn at(i: u64) -> DateTime<Utc> {
    "2026-11-23T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + TimeDelta::milliseconds(i as i64)
}

fn until(i: u64) -> DateTime<Utc> {
    at(i) + TimeDelta::hours(24)
}

/// The child: for each customer, records an inbound message, a back-off, then the move
/// to the new number, printing each step once acknowledged. Run only by the parent.
#[test]
#[ignore = "run as a child process by a_sigkill_between_the_back_off_copy_and_the_move_leaves_it_where_the_conversation_is"]
fn back_off_move_child() {
    let Ok(path) = std::env::var(DB_ENV) else {
        return;
    };
    let store = SledStore::open(path).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for i in 0.. {
            let from = Conversation::with_customer(business(), old_number(i));
            store.record_inbound(from, at(i)).await.unwrap();
            store.extend_back_off(from, until(i)).await.unwrap();
            println!("limited {i}");
            store
                .move_customer(business(), old_number(i), new_number(i))
                .await
                .unwrap();
            println!("moved {i}");
        }
    });
}

#[test]
fn a_sigkill_between_the_back_off_copy_and_the_move_leaves_it_where_the_conversation_is() {
    for round in 0..3_u64 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "back_off_move_child",
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
        let mut steps: BTreeMap<u64, &str> = BTreeMap::new();
        let stop_after = 150 + round * 97;
        for line in stdout.lines() {
            let line = line.unwrap();
            if let Some(i) = line.strip_prefix("limited ") {
                steps.insert(i.parse().unwrap(), "limited");
            } else if let Some(i) = line.strip_prefix("moved ") {
                let i: u64 = i.parse().unwrap();
                steps.insert(i, "moved");
                if i >= stop_after {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        assert!(steps.len() as u64 > stop_after, "the child stopped early");

        let store = SledStore::open(&path).expect("reopens cleanly after SIGKILL");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            // Every acknowledged step, and the one the kill interrupted (one past).
            let last = *steps.keys().last().unwrap();
            for i in 0..=last + 1 {
                let from = Conversation::with_customer(business(), old_number(i));
                let to = Conversation::with_customer(business(), new_number(i));
                let (at_from, at_to) = (
                    store.window(from).await.unwrap().is_some(),
                    store.window(to).await.unwrap().is_some(),
                );
                if steps.get(&i) == Some(&"moved") {
                    assert!(at_to && !at_from, "round {round}: acknowledged move {i} lost");
                }
                for (here, conversation) in [(at_from, from), (at_to, to)] {
                    let back_off = store
                        .marketing_consent(conversation)
                        .await
                        .unwrap()
                        .back_off_until;
                    if here && steps.contains_key(&i) {
                        assert_eq!(
                            back_off,
                            Some(until(i)),
                            "round {round}: customer {i}'s conversation is at {conversation} without its back-off"
                        );
                    }
                }
            }
        });
    }
}
