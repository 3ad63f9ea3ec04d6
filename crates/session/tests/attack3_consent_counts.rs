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

/// The child's answer to one count: `C`ounted, `A`lready counted, `L`imit reached, or
/// `E`rror (the store failed).
fn answer_kind(reach: Result<Reach, lipachat_session::StoreError>) -> &'static str {
    match reach {
        Ok(Reach::Counted { .. }) => "C",
        Ok(Reach::AlreadyCounted { .. }) => "A",
        Ok(Reach::LimitReached { .. }) => "L",
        Err(_) => "E",
    }
}

/// Run as the child only: counts customers on two handles at once, printing each
/// answer once it has returned (a failed count goes on to the next), until killed.
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
                    let kind = answer_kind(
                        store
                            .reach_customer(PORTFOLIO, customer, at, LIMIT, span())
                            .await,
                    );
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

/// What the child answered before it was killed (or ended on its own).
struct ChildAnswers {
    /// The customers it answered as counted or already counted: sends rely on these.
    relied_on: HashSet<u64>,
    /// How many counts failed.
    failed: usize,
    /// How many answers it printed.
    seen: usize,
}

/// Runs the child on `path` (its files limited to `file_blocks` 512-byte blocks, when
/// given, with `SIGXFSZ` ignored so a write past it fails instead of killing it), kills
/// it with SIGKILL once it has printed `answers` answers (or has ended); what it
/// answered.
fn count_in_child_and_kill(
    path: &std::path::Path,
    answers: usize,
    file_blocks: Option<u64>,
) -> ChildAnswers {
    let exe = std::env::current_exe().unwrap();
    let args = [
        "--exact",
        "child_counts_until_killed",
        "--nocapture",
        "--test-threads=1",
    ];
    let mut command = match file_blocks {
        None => Command::new(&exe),
        Some(blocks) => {
            let mut shell = Command::new("sh");
            shell
                .arg("-c")
                .arg(format!(
                    r#"trap '' XFSZ; ulimit -f {blocks}; exec "$0" "$@""#
                ))
                .arg(&exe);
            shell
        }
    };
    let mut child = command
        .args(args)
        .env(CHILD_STORE, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
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
    let mut said = ChildAnswers {
        relied_on: HashSet::new(),
        failed: 0,
        seen: 0,
    };
    while said.seen < answers {
        // Disconnected: the child ended (all its answers are in).
        let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
            break;
        };
        said.seen += 1;
        let mut words = line.split_whitespace();
        let customer: u64 = words.next().unwrap().parse().unwrap();
        match words.next() {
            Some("C" | "A") => {
                said.relied_on.insert(customer);
            }
            Some("E") => said.failed += 1,
            _ => {}
        }
    }
    // SIGKILL at once: no destructor, no flush.
    child.kill().unwrap();
    child.wait().unwrap();
    said
}

/// Reopens the store at `path` and checks every customer in `relied_on` is still
/// counted (a count past every time the child used answers "already counted") and the
/// stored count holds them all (`what` names the case); the store and its count.
async fn reopen_keeping(
    path: &std::path::Path,
    relied_on: &HashSet<u64>,
    what: &str,
) -> (SledStore, u64) {
    let store = SledStore::open(path).unwrap();
    // Past every time the child used: its own counts are all within the span.
    let after = child_at(2 * CUSTOMERS);
    let stored = store.reached(PORTFOLIO, after, span()).await.unwrap();
    assert!(
        stored >= relied_on.len() as u64,
        "{what}: {stored} stored, {} relied on",
        relied_on.len()
    );
    for &customer in relied_on {
        let reach = store
            .reach_customer(PORTFOLIO, customer, after, LIMIT, span())
            .await
            .unwrap();
        assert!(
            matches!(reach, Reach::AlreadyCounted { .. }),
            "{what}: customer {customer} the child counted is {reach:?}"
        );
    }
    (store, stored)
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
        let said = count_in_child_and_kill(&path, answers, None);
        assert_eq!((said.seen, said.failed), (answers, 0));
        let relied_on = said.relied_on;
        runtime.block_on(async {
            let (store, stored) =
                reopen_keeping(&path, &relied_on, &format!("after {answers} answers")).await;
            let after = child_at(2 * CUSTOMERS);
            assert!(stored <= LIMIT, "after {answers} answers: {stored} stored");
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

/// The child counts with its files limited to a few KiB, so sled's writes fail (many
/// counts answer an error); every count it answered as counted or already counted is
/// still there after it is killed and the store reopened, and it never let more than the
/// tier through.
#[test]
fn a_store_whose_disk_writes_fail_never_answered_a_count_it_did_not_keep() {
    if std::env::var(CHILD_STORE).is_ok() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut failed = 0;
    for blocks in [16, 32, 48] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.db");
        let said = count_in_child_and_kill(&path, 1200, Some(blocks));
        failed += said.failed;
        assert!(said.relied_on.len() as u64 <= LIMIT, "{blocks} blocks");
        runtime.block_on(reopen_keeping(
            &path,
            &said.relied_on,
            &format!("{blocks} blocks"),
        ));
    }
    assert!(failed > 0, "no write failed: the attack did not happen");
}
