//! Attacks on the outcome journal's sealed batches and its scan by business number one
//! batch at a time (`sled_store/outcome_journal.rs`, `OutcomeJournal::find`).

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod child_process;
mod journal_churn;
mod journal_fixtures;

use journal_fixtures::{business, conversation, id, runtime, version_of, versioned_text};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lipachat_session::{MessageId, OutboxStore, SledStore, StoredOutcome, WindowStore};

/// Version `version` of outcome `n`, the size of a sent contact card's (a batch holds a
/// handful). Its WhatsApp id is the same in every version, so a scan by WhatsApp id
/// must find it whichever version it meets.
fn outcome(n: u64, version: u64) -> StoredOutcome {
    StoredOutcome::new(id(n), versioned_text(n, version)).with_wa_id(format!("wamid.a12.{n}"))
}

/// Runs `body` on its own thread and fails the test if it has not ended by `limit` (a
/// deadlock fails rather than hangs).
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (done, ended) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(body());
    });
    match ended.recv_timeout(limit) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: not done after {limit:?} (deadlock?)")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

/// Claim 3: a scan by business number (`outcome_conversation`, and by WhatsApp id) finds
/// a journaled outcome whose write returned before the scan began, while another thread
/// writes that same outcome again. The scan reads the pending batch first, then the
/// batches numbered when it began, each under a fresh lock, passing over a record whose
/// key the index places elsewhere. A rewrite between the two moves the key's latest
/// record to the pending batch (or a batch sealed after the scan began), which the scan
/// does not read again: it passes over the old record as replaced and never meets the
/// new one, so it answered "none" for an outcome stored all along.
#[test]
fn a_scan_by_business_number_finds_an_outcome_rewritten_while_it_scans() {
    within(Duration::from_secs(60), "the scan race", || {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path().join("db")).unwrap();
        let rt = runtime();
        // Many written batches for the scan to read before the one holding the target
        // (outcome 0, written last): its batch is the last the scan reads.
        for n in 1..200 {
            rt.block_on(store.put_outcome(conversation(1 + n % 5), outcome(n, 0)))
                .unwrap();
        }
        rt.block_on(store.put_outcome(conversation(0), outcome(0, 0)))
            .unwrap();
        rt.block_on(WindowStore::flush(&store)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let rewrites = Arc::new(AtomicU64::new(0));
        let writer = {
            let (store, stop, rewrites) = (store.clone(), Arc::clone(&stop), Arc::clone(&rewrites));
            std::thread::spawn(move || {
                let rt = runtime();
                let mut version = 0;
                let mut filler = 1_000;
                while !stop.load(Ordering::Relaxed) {
                    version += 1;
                    // The target moves to the pending batch ...
                    rt.block_on(store.put_outcome(conversation(0), outcome(0, version)))
                        .unwrap();
                    rewrites.fetch_add(1, Ordering::Relaxed);
                    // ... which then fills and is sealed (and written).
                    for _ in 0..12 {
                        filler += 1;
                        rt.block_on(store.put_outcome(conversation(9), outcome(filler, 0)))
                            .unwrap();
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            })
        };
        let started = Instant::now();
        let mut scans = 0u64;
        let mut missed = Vec::new();
        while started.elapsed() < Duration::from_secs(4) && missed.len() < 3 {
            scans += 1;
            let found = rt
                .block_on(store.outcome_conversation(Some(business()), id(0)))
                .unwrap();
            if found != Some(conversation(0)) {
                missed.push(format!("by messageId: {found:?}"));
            }
            let found = rt
                .block_on(store.outcome_conversation_by_wa_id(Some(business()), "wamid.a12.0"))
                .unwrap();
            if found != Some((conversation(0), id(0))) {
                missed.push(format!("by WhatsApp id: {found:?}"));
            }
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        assert!(
            missed.is_empty(),
            "{} of {scans} scans missed an outcome stored all along ({} rewrites): {missed:?}",
            missed.len(),
            rewrites.load(Ordering::Relaxed)
        );
    });
}

/// `stored_outcomes` counts the tree's entries less its batch entries, plus the
/// journal's outcomes, "under the journal's lock, so no batch comes or goes between the
/// counts". But a sealed batch is written to the tree outside that lock: between the
/// insert and its move from `sealed` to the written batches, the tree holds one more
/// entry than the written batches account for, and the count names an outcome that does
/// not exist. One writer puts distinct outcomes (every one journaled, never a single
/// entry) while another thread counts: the count must never exceed the puts begun.
#[test]
fn the_count_of_stored_outcomes_never_exceeds_the_outcomes_written() {
    within(
        Duration::from_secs(60),
        "counting while batches are written",
        || {
            let dir = tempfile::tempdir().unwrap();
            let store = SledStore::open(dir.path().join("db")).unwrap();
            let begun = Arc::new(AtomicU64::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let writer = {
                let (store, begun, stop) = (store.clone(), Arc::clone(&begun), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let rt = runtime();
                    for n in 0..6_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        begun.fetch_add(1, Ordering::SeqCst);
                        rt.block_on(store.put_outcome(conversation(n % 7), outcome(n, 0)))
                            .unwrap();
                    }
                })
            };
            let mut over = Vec::new();
            while !writer.is_finished() && over.len() < 3 {
                let count = store.stored_outcomes().unwrap();
                let begun = begun.load(Ordering::SeqCst);
                if u64::try_from(count).unwrap() > begun {
                    over.push((count, begun));
                }
            }
            stop.store(true, Ordering::Relaxed);
            writer.join().unwrap();
            assert!(
                over.is_empty(),
                "stored_outcomes counted more outcomes than were written (count, puts begun): {over:?}"
            );
            let written = begun.load(Ordering::SeqCst);
            assert_eq!(
                u64::try_from(store.stored_outcomes().unwrap()).unwrap(),
                written
            );
        },
    );
}

/// The child's store directory, set by the parent.
const CHILD_DB_ENV: &str = "LIPACHAT_ATTACK12_JOURNAL_TEST_DB";
/// The threads of the child that write outcomes, and the outcomes each owns.
const CHILD_WRITERS: u64 = 3;
const CHILD_KEYS: u64 = 20;
/// An ack names a writer and a round: `writer * ACK_WRITER + round`.
const ACK_WRITER: u64 = 1_000_000;

/// The outcome `n` of writer `w`.
fn child_key(w: u64, k: u64) -> u64 {
    w * 100 + k
}

/// The child: `CHILD_WRITERS` threads, each writing round after round a new version of
/// its own outcomes (journaled: full batches are sealed and written by whichever send or
/// thread gets the writer lock, while the journal's thread writes the rest), then waiting
/// for the group commit (`WindowStore::flush` of a durable store) and printing
/// `ack w*ACK_WRITER+round`; another thread unpacks (a conversation's outcomes), prunes,
/// counts and scans meanwhile. Run only by the parent.
#[test]
#[ignore = "run as a child process by sigkill_with_sealed_batches_in_flight_loses_no_acknowledged_outcome"]
fn attack12_journal_child() {
    let Ok(path) = std::env::var(CHILD_DB_ENV) else {
        return;
    };
    let store = SledStore::open(path).unwrap();
    // The test harness's own "test ... " has no line end: the first ack starts a line.
    println!();
    let print = Arc::new(std::sync::Mutex::new(()));
    let mut threads = Vec::new();
    for w in 0..CHILD_WRITERS {
        let (store, print) = (store.clone(), Arc::clone(&print));
        threads.push(std::thread::spawn(move || {
            let rt = runtime();
            for round in 1u64.. {
                for k in 0..CHILD_KEYS {
                    let n = child_key(w, k);
                    rt.block_on(store.put_outcome(conversation(n % 4), outcome(n, round)))
                        .unwrap();
                }
                rt.block_on(WindowStore::flush(&store)).unwrap();
                let _line = print.lock().unwrap();
                println!("ack {}", w * ACK_WRITER + round);
            }
        }));
    }
    let rt = runtime();
    for i in 0u64.. {
        match i % 4 {
            0 => drop(rt.block_on(store.outcomes(conversation(0))).unwrap()),
            1 => drop(store.prune_outcomes().unwrap()),
            2 => {
                store.stored_outcomes().unwrap();
            }
            _ => drop(
                rt.block_on(store.outcome_conversation(Some(business()), id(child_key(1, 3))))
                    .unwrap(),
            ),
        }
        std::thread::sleep(Duration::from_millis(3));
    }
}

/// Claim 4: a SIGKILL while writers race (sealed batches waiting in memory, written by a
/// send, the journal's thread or a flush, unpacks in between) loses no outcome whose
/// version a writer's acknowledged group commit covered, and none comes back older.
#[test]
fn sigkill_with_sealed_batches_in_flight_loses_no_acknowledged_outcome() {
    let rt = runtime();
    for (attempt, acks) in [2usize, 7, 13, 25, 40].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let acked = within(Duration::from_secs(60), "the child's acks", {
            let path = path.clone();
            move || {
                child_process::acknowledged_until_killed(
                    "attack12_journal_child",
                    CHILD_DB_ENV,
                    &path,
                    acks,
                )
            }
        });
        let store = SledStore::open(&path).expect("reopens after SIGKILL");
        for w in 0..CHILD_WRITERS {
            let round = acked
                .iter()
                .filter(|ack| *ack / ACK_WRITER == w)
                .map(|ack| ack % ACK_WRITER)
                .max()
                .unwrap_or(0);
            for k in 0..CHILD_KEYS {
                let n = child_key(w, k);
                let found = rt
                    .block_on(store.outcome(conversation(n % 4), id(n)))
                    .unwrap();
                let version = found.as_deref().map(version_of);
                assert!(
                    round == 0 || version.is_some_and(|v| v >= round),
                    "attempt {attempt}: outcome {n} found at {version:?}, version {round} acknowledged"
                );
            }
        }
        within(
            Duration::from_secs(20),
            "closing the reopened store",
            move || drop(store),
        );
    }
}

/// The cost recorded as number `i` (its `messageId` names it).
fn cost(i: u64) -> lipachat_session::PredictedCost {
    lipachat_session::PredictedCost {
        conversation: conversation(i % 9),
        message_id: MessageId::from_bytes((u128::from(i) + 1).to_be_bytes()),
        wa_id: Some(format!("wamid.cost.{i}")),
        sent_at: "2026-11-23T00:00:00Z"
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap(),
        category: lipachat_session::PricingCategory::ALL[usize::try_from(i % 4).unwrap()],
        free: i.is_multiple_of(2),
    }
}

/// Claims 1, 2 and 5 together, every wait bounded (a deadlock fails): writers own
/// outcomes and write version after version, each reading its own back at once (by id,
/// by WhatsApp id, by the scan by business number) while two threads record predicted
/// costs (the batch thread's other user) and another unpacks, moves customers, erases,
/// prunes, flushes and counts; then every clone of the store is dropped (both batch
/// threads joined), and a reopen with a full check finds the store intact, every
/// outcome at its latest version and every predicted cost.
#[test]
fn writers_readers_and_unpacks_race_then_a_close_joins_both_threads() {
    use lipachat_session::ConsentStore;
    const WRITERS: u64 = 3;
    const KEYS: u64 = 15;
    const COSTS: u64 = 1_500;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let latest = within(Duration::from_secs(90), "the race and the close", {
        let path = path.clone();
        move || {
            let store = SledStore::open(&path).unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let mut writers = Vec::new();
            for w in 0..WRITERS {
                let (store, stop) = (store.clone(), Arc::clone(&stop));
                writers.push(std::thread::spawn(move || {
                    let rt = runtime();
                    let mut failures = Vec::new();
                    let mut version = 0;
                    while !stop.load(Ordering::Relaxed) && failures.len() < 5 {
                        version += 1;
                        for k in 0..KEYS {
                            let n = w * 100 + k;
                            let chat = conversation(10 + n % 3);
                            rt.block_on(store.put_outcome(chat, outcome(n, version)))
                                .unwrap();
                            let found = rt.block_on(store.outcome(chat, id(n))).unwrap();
                            if found.as_deref().map(version_of) != Some(version) {
                                failures.push(format!("{n} v{version}: by id {found:?}"));
                            }
                            let by_wa = rt
                                .block_on(store.outcome_by_wa_id(chat, &format!("wamid.a12.{n}")))
                                .unwrap();
                            if by_wa.map(|(m, text)| (m, version_of(&text)))
                                != Some((id(n), version))
                            {
                                failures.push(format!("{n} v{version}: by WhatsApp id"));
                            }
                            if k == w {
                                let scanned = rt
                                    .block_on(store.outcome_conversation(Some(business()), id(n)))
                                    .unwrap();
                                if scanned != Some(chat) {
                                    failures.push(format!("{n} v{version}: scan {scanned:?}"));
                                }
                            }
                        }
                    }
                    (version, failures)
                }));
            }
            let mut others = Vec::new();
            for c in 0..2 {
                let store = store.clone();
                others.push(std::thread::spawn(move || {
                    let rt = runtime();
                    for i in (c..COSTS).step_by(2) {
                        rt.block_on(store.record_predicted_cost(cost(i))).unwrap();
                        if i % 200 == 0 {
                            drop(rt.block_on(store.cost_records(None)).unwrap());
                        }
                    }
                }));
            }
            {
                let (churned, stop) = (store.clone(), Arc::clone(&stop));
                others.push(std::thread::spawn(move || {
                    let (store, rt) = (churned, runtime());
                    let (a, b) = journal_churn::customers(254_700_000_060);
                    for i in 1u64.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        rt.block_on(store.put_outcome(conversation(60), outcome(5_000 + i, 0)))
                            .unwrap();
                        journal_churn::churn_step(
                            &rt,
                            &store,
                            i,
                            business(),
                            (a, b),
                            conversation(11),
                            conversation(62),
                        );
                    }
                }));
            }
            std::thread::sleep(Duration::from_secs(3));
            stop.store(true, Ordering::Relaxed);
            for other in others {
                other.join().unwrap();
            }
            let mut latest = Vec::new();
            for (w, writer) in writers.into_iter().enumerate() {
                let (version, failures) = writer.join().unwrap();
                assert!(failures.is_empty(), "writer {w}: {failures:?}");
                latest.push(version);
            }
            drop(store); // The last clone: both batch threads are joined here.
            latest
        }
    });
    let rt = runtime();
    let store = lipachat_session::SledConfig::new(&path)
        .full_check(true)
        .open()
        .unwrap();
    assert!(store.integrity().is_intact(), "{:?}", store.integrity());
    for (w, version) in (0..WRITERS).zip(latest) {
        for k in 0..KEYS {
            let n = w * 100 + k;
            let found = rt
                .block_on(store.outcome(conversation(10 + n % 3), id(n)))
                .unwrap();
            assert_eq!(
                found.as_deref().map(version_of),
                Some(version),
                "outcome {n}"
            );
        }
    }
    let costs = rt.block_on(store.cost_records(None)).unwrap();
    assert_eq!(
        costs.len(),
        usize::try_from(COSTS).unwrap(),
        "predicted costs after reopen"
    );
    within(
        Duration::from_secs(20),
        "closing the reopened store",
        move || drop(store),
    );
}
