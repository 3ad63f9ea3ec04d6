//! Third hostile review of the sled store's in-memory messaging limit counts: a process
//! counting on two handles at once, with customers leaving the span as it goes, is
//! killed (SIGKILL) mid-stream; after reopening, every count it answered is still there
//! (the count is never lower than what the sends relied on), and the count a reach
//! answers equals the tree's. Also: a portfolio's counter forgotten while another is
//! counted far ahead is loaded again exactly, even when its own clock runs behind.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::{ConsentStore, Reach, SledStore, WindowStore};

/// The child's store path (set only in the child).
const CHILD_STORE: &str = "ATTACK3_COUNTS_CHILD_STORE";
/// What the child prints after each answer: `<marker> <customer> <C|A|L> <at ms>`.
const ANSWER: &str = "attack3-answer";

const PORTFOLIO: &str = "attack3.portfolio";
const LIMIT: u64 = 120;
const CUSTOMERS: u64 = 300;

fn span() -> TimeDelta {
    TimeDelta::hours(24)
}

fn t0() -> DateTime<Utc> {
    "2026-03-01T00:00:00Z".parse().unwrap()
}

/// The time of the child's `step`th count: a span after `t0`, so customers counted
/// before the child ran (at `t0` + 3 ms per customer) leave the span as it goes.
fn child_at(step: u64) -> DateTime<Utc> {
    t0() + span() + TimeDelta::milliseconds(step as i64)
}

/// Run as the child only: counts customers on two handles at once, printing each
/// answer once it has returned, until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_counts_until_killed() {
    let Ok(path) = std::env::var(CHILD_STORE) else {
        return;
    };
    let store = SledStore::open(&path).unwrap();
    let tasks: Vec<_> = (0..2u64)
        .map(|handle| {
            let store = store.clone();
            tokio::spawn(async move {
                for step in 0..2 * CUSTOMERS {
                    // The handles walk the customers in different orders, twice.
                    let i = step % CUSTOMERS;
                    let customer = if handle == 0 {
                        i
                    } else {
                        (i * 7 + 3) % CUSTOMERS
                    };
                    let at = child_at(step);
                    let reach = store
                        .reach_customer(PORTFOLIO, customer, at, LIMIT, span())
                        .await
                        .unwrap();
                    let kind = match reach {
                        Reach::Counted { .. } => "C",
                        Reach::AlreadyCounted { .. } => "A",
                        Reach::LimitReached { .. } => "L",
                    };
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{ANSWER} {customer} {kind} {}", at.timestamp_millis()).unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    // Counted everything before being killed: wait to be killed.
    std::thread::sleep(Duration::from_secs(120));
}

/// Runs the child on `path`, kills it with SIGKILL once it has printed `answers`
/// answers; the customers it answered as counted or already counted.
fn count_in_child_and_kill(path: &std::path::Path, answers: usize) -> HashSet<u64> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_counts_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_STORE, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some((_, rest)) = line.split_once(ANSWER) {
                let _ = tx.send(rest.trim().to_owned());
            }
        }
    });
    let mut relied_on = HashSet::new();
    for _ in 0..answers {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the child stopped answering");
        let mut words = line.split_whitespace();
        let customer: u64 = words.next().unwrap().parse().unwrap();
        if matches!(words.next(), Some("C" | "A")) {
            relied_on.insert(customer);
        }
    }
    // SIGKILL at once: no destructor, no flush.
    child.kill().unwrap();
    child.wait().unwrap();
    relied_on
}

#[test]
fn a_process_killed_while_counting_on_two_handles_never_comes_back_counting_low() {
    if std::env::var(CHILD_STORE).is_ok() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for answers in [7, 90, 260, 590] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.db");
        // Customers counted before, at t0 + 3 ms each: they leave the span while the
        // child counts.
        runtime.block_on(async {
            let store = SledStore::open(&path).unwrap();
            for old in 0..40u64 {
                let at = t0() + TimeDelta::milliseconds(3 * old as i64);
                let reach = store
                    .reach_customer(PORTFOLIO, 10_000 + old, at, LIMIT, span())
                    .await
                    .unwrap();
                assert!(matches!(reach, Reach::Counted { .. }), "{reach:?}");
            }
            store.flush().await.unwrap();
        });
        let relied_on = count_in_child_and_kill(&path, answers);
        runtime.block_on(async {
            let store = SledStore::open(&path).unwrap();
            // Past every time the child used: its own counts are all within the span.
            let after = child_at(2 * CUSTOMERS);
            let stored = store.reached(PORTFOLIO, after, span()).await.unwrap();
            assert!(
                stored >= relied_on.len() as u64 && stored <= LIMIT,
                "after {answers} answers: {stored} stored, {} relied on",
                relied_on.len()
            );
            for &customer in &relied_on {
                let reach = store
                    .reach_customer(PORTFOLIO, customer, after, LIMIT, span())
                    .await
                    .unwrap();
                assert!(
                    matches!(reach, Reach::AlreadyCounted { .. }),
                    "after {answers} answers: customer {customer} the child counted is {reach:?}"
                );
            }
            // The in-memory count equals the tree's.
            let reach = store
                .reach_customer(PORTFOLIO, 99_999, after, LIMIT, span())
                .await
                .unwrap();
            let expected = if stored >= LIMIT {
                Reach::LimitReached { reached: LIMIT }
            } else {
                Reach::Counted {
                    reached: stored + 1,
                }
            };
            assert_eq!(reach, expected, "after {answers} answers");
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_counter_is_loaded_again_exactly_even_behind_the_clock_that_forgot_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("sessions.db")).unwrap();
    let span = span();
    for customer in 0..5 {
        store
            .reach_customer("behind", customer, t0(), 5, span)
            .await
            .unwrap();
    }
    // Another portfolio, counted 40 days on, forgets the first one's counter.
    let ahead = t0() + TimeDelta::days(40);
    store
        .reach_customer("ahead", 1, ahead, 5, span)
        .await
        .unwrap();
    // Counted again on its own (earlier) clock, an hour after its customers: still full.
    let later = t0() + TimeDelta::hours(1);
    assert_eq!(
        store
            .reach_customer("behind", 100, later, 5, span)
            .await
            .unwrap(),
        Reach::LimitReached { reached: 5 }
    );
    assert_eq!(store.reached("behind", later, span).await.unwrap(), 5);
    // Once they left the span, all of them are gone, from memory and from the tree.
    let gone = t0() + span;
    assert_eq!(
        store
            .reach_customer("behind", 100, gone, 5, span)
            .await
            .unwrap(),
        Reach::Counted { reached: 1 }
    );
    assert_eq!(store.reached("behind", gone, span).await.unwrap(), 1);
}
