//! Attacks on the outcome journal's sealed batches and its scan by business number one
//! batch at a time (`sled_store/outcome_journal.rs`, `OutcomeJournal::find`).

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lipachat_session::{
    Conversation, Customer, MessageId, OutboxStore, PhoneNumber, SledStore, StoredOutcome,
    WindowStore,
};

fn business() -> PhoneNumber {
    PhoneNumber::from_u64(254_110_090_712).unwrap()
}

fn conversation(i: u64) -> Conversation {
    Conversation::with_customer(
        business(),
        Customer::Phone(PhoneNumber::from_u64(254_700_000_000 + i).unwrap()),
    )
}

fn id(n: u64) -> MessageId {
    MessageId::from_uuid(uuid::Uuid::from_u128(
        0xa12a_0000_0000_4000_8000_0000_0000_0000 | u128::from(n),
    ))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Version `version` of outcome `n`, the size of a sent contact card's (a batch holds a
/// handful). Its WhatsApp id is the same in every version, so a scan by WhatsApp id
/// must find it whichever version it meets.
fn outcome(n: u64, version: u64) -> StoredOutcome {
    StoredOutcome::new(
        id(n),
        format!(
            "{{\"kind\":\"sent\",\"n\":{n},\"pad\":\"{}\",\"v\":{version}}}",
            "x".repeat(300)
        ),
    )
    .with_wa_id(format!("wamid.a12.{n}"))
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
