//! Attacks on the outcome journal (`sled_store/outcome_journal.rs`): a damaged batch entry
//! left in the `outcomes` tree, and counts read while batches come and go.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod child_process;
mod journal_churn;
mod journal_fixtures;
mod raw_sled;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::TimeDelta;
use journal_fixtures::{business, conversation, id, runtime, version_of, versioned_text};
use lipachat_session::{Customer, OutboxStore, PhoneNumber, SledConfig, SledStore, StoredOutcome};
use raw_sled::raw_sled;

/// Version `version` of outcome `n`, the size of a sent contact card's (a batch holds a
/// handful), its WhatsApp id naming both.
fn resent(n: u64, version: u64) -> StoredOutcome {
    StoredOutcome::new(id(n), versioned_text(n, version))
        .with_wa_id(format!("wamid.{n}.v{version}"))
}

/// The first version of outcome `n`.
fn sent(n: u64) -> StoredOutcome {
    resent(n, 0)
}

/// Garbage written with raw sled, while the store is closed, under the batch key with
/// the highest number (`0xFF` ++ `u64::MAX`). The batch is unreadable, which the journal
/// may warn about; but the outcomes written after the store opens must still reach the
/// disk: before the fix, the journal numbered its next batch after the garbage one, found
/// no number left, and every later batch failed to be written (a clean close, a flush,
/// the thread), so every outcome put after opening was lost at the next reopen.
#[test]
fn a_garbage_batch_under_the_last_number_does_not_stop_later_outcomes_reaching_disk() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = SledStore::open(&path).unwrap();
        rt.block_on(store.put_outcome(conversation(1), sent(1)))
            .unwrap();
    }
    {
        let db = raw_sled(&path);
        let tree = db.open_tree("outcomes").unwrap();
        let mut key = [0xFF_u8; 9];
        key[1..].copy_from_slice(&u64::MAX.to_be_bytes());
        tree.insert(key, &b"garbage, not a batch"[..]).unwrap();
        db.flush().unwrap();
    }
    {
        // The raw write is damage the full check finds (and the store is told to accept).
        let store = SledConfig::new(&path)
            .accept_damage(true)
            .full_check(true)
            .open()
            .unwrap();
        assert!(!store.integrity().is_intact(), "the raw write is found");
        assert_eq!(
            rt.block_on(store.outcome(conversation(1), id(1))).unwrap(),
            Some(sent(1).text),
            "an outcome written before the damage"
        );
        for n in 2..30 {
            rt.block_on(store.put_outcome(conversation(n % 3), sent(n)))
                .unwrap();
        }
        // A flush takes the journaled outcomes to disk (or says why it cannot).
        rt.block_on(lipachat_session::WindowStore::flush(&store))
            .unwrap();
    }
    let store = SledConfig::new(&path).full_check(true).open().unwrap();
    for n in 1..30 {
        let chat = if n == 1 {
            conversation(1)
        } else {
            conversation(n % 3)
        };
        assert_eq!(
            rt.block_on(store.outcome(chat, id(n))).unwrap(),
            Some(sent(n).text),
            "outcome {n} after a clean close and reopen"
        );
    }
    assert!(store.integrity().is_intact(), "{:?}", store.integrity());
}

/// `stored_outcomes` while batches leave the tree (expired ones removed by
/// `prune_outcomes`): the count must never panic (nor wrap round). Before the fix it read
/// the journal's batch count under the journal's lock, then the tree's entry count after
/// releasing it, and subtracted: a batch removed in between made the subtraction underflow
/// (a panic in a debug build, a count near `usize::MAX` in a release one).
#[test]
fn stored_outcomes_stays_sane_while_batches_expire() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let store = store.clone();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let rt = runtime();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                // Brief outcomes, enough for several batches, then pruned once expired.
                for _ in 0..64 {
                    n += 1;
                    let outcome = sent(n).keep_for(TimeDelta::milliseconds(1));
                    rt.block_on(store.put_outcome(conversation(n % 4), outcome))
                        .unwrap();
                }
                std::thread::sleep(Duration::from_millis(3));
                store.prune_outcomes().unwrap();
            }
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut worst = 0;
    let counted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        while std::time::Instant::now() < deadline {
            worst = worst.max(store.stored_outcomes().unwrap());
        }
    }));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(counted.is_ok(), "stored_outcomes panicked");
    assert!(worst < 1_000_000, "stored_outcomes wrapped round: {worst}");
}

/// A move of a customer who has nothing unpacks the journal (every journaled outcome
/// becomes a single entry, which only the sweep removes once expired) and then finds no
/// change to make. The sweep must still be told when those single entries expire: before
/// the fix that move returned early without telling it, so a store whose sweep had found
/// nothing to wait for never swept them, and expired outcomes stayed on disk however many
/// sends followed (the sweep's promise: a store that keeps sending keeps sweeping).
#[test]
fn a_move_with_nothing_to_move_still_tells_the_sweep_of_the_outcomes_it_unpacked() {
    use lipachat_session::IdentityStore;
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    let mut n = 0;
    let mut put = |keep: TimeDelta| {
        n += 1;
        rt.block_on(store.put_outcome(conversation(n % 4), sent(n).keep_for(keep)))
            .unwrap();
    };
    // A first sweep step goes round the tree, which holds only batches: nothing expires.
    for _ in 0..64 {
        put(TimeDelta::days(1));
    }
    const BRIEF: usize = 100;
    for _ in 0..BRIEF {
        put(TimeDelta::milliseconds(50));
    }
    let moved = rt
        .block_on(store.move_customer(
            business(),
            Customer::Phone(PhoneNumber::from_u64(254_799_000_001).unwrap()),
            Customer::Phone(PhoneNumber::from_u64(254_799_000_002).unwrap()),
        ))
        .unwrap();
    assert_eq!(moved, Default::default(), "the customer had nothing");
    std::thread::sleep(Duration::from_millis(150));
    // Sends go on: four sweep steps of 512 entries each, far more than the tree holds.
    const LATER: usize = 4 * 64;
    for _ in 0..LATER {
        put(TimeDelta::days(1));
    }
    assert_eq!(
        store.stored_outcomes().unwrap(),
        64 + LATER,
        "the {BRIEF} expired outcomes the move unpacked were swept"
    );
}

/// Claim 3: the scans by business number find journaled outcomes where they are (pending,
/// in a written batch, after a reopen) and never a replaced record: not its WhatsApp id,
/// and not an older live record of a key whose latest expired.
#[test]
fn scans_by_business_number_see_only_the_latest_journaled_record() {
    use lipachat_session::WindowStore;
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let chat = conversation(7);
    let check =
        |store: &SledStore, latest: u64, when: &str| {
            for business in [Some(business()), None] {
                for version in 0..3 {
                    let found = rt
                        .block_on(store.outcome_conversation_by_wa_id(
                            business,
                            &format!("wamid.1.v{version}"),
                        ))
                        .unwrap();
                    let wanted = (version == latest).then_some((chat, id(1)));
                    assert_eq!(found, wanted, "{when}: by WhatsApp id v{version}");
                }
                assert_eq!(
                    rt.block_on(store.outcome_conversation(business, id(1)))
                        .unwrap(),
                    Some(chat),
                    "{when}: by messageId"
                );
                // Outcome 2: long-lived, then replaced by one that expired at once.
                assert_eq!(
                    rt.block_on(store.outcome_conversation(business, id(2)))
                        .unwrap(),
                    None,
                    "{when}: the latest record of outcome 2 expired"
                );
                assert_eq!(
                    rt.block_on(store.outcome_conversation_by_wa_id(business, "wamid.2.v0"))
                        .unwrap(),
                    None,
                    "{when}: outcome 2's replaced record"
                );
            }
        };
    {
        let store = SledStore::open(&path).unwrap();
        rt.block_on(store.put_outcome(chat, resent(1, 0))).unwrap();
        rt.block_on(store.put_outcome(chat, resent(2, 0))).unwrap();
        rt.block_on(store.flush()).unwrap(); // a written batch
        rt.block_on(store.put_outcome(chat, resent(1, 1))).unwrap(); // pending
        rt.block_on(store.put_outcome(chat, resent(2, 1).keep_for(TimeDelta::milliseconds(1))))
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        check(&store, 1, "pending over a batch");
        rt.block_on(store.flush()).unwrap();
        check(&store, 1, "two batches");
        rt.block_on(store.put_outcome(chat, resent(1, 2))).unwrap();
        check(&store, 2, "pending over two batches");
    }
    let store = SledConfig::new(&path).full_check(true).open().unwrap();
    assert!(store.integrity().is_intact(), "{:?}", store.integrity());
    check(&store, 2, "reopened");
}

/// Erasure removes a conversation's outcomes from the disk, journaled ones included
/// (pending, written, replaced records in older batches): after `forget` and a clean
/// close, no entry of the `outcomes` tree, batch or single, holds the conversation's key.
#[test]
fn erasure_leaves_no_journaled_record_of_the_conversation_on_disk() {
    use lipachat_session::WindowStore;
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (erased, kept) = (conversation(11), conversation(12));
    {
        let store = SledStore::open(&path).unwrap();
        for version in 0..3 {
            for n in 0..20 {
                let chat = if n % 2 == 0 { erased } else { kept };
                rt.block_on(store.put_outcome(chat, resent(n, version)))
                    .unwrap();
            }
            rt.block_on(store.flush()).unwrap();
        }
        rt.block_on(store.put_outcome(erased, resent(100, 0)))
            .unwrap(); // pending
        assert!(rt.block_on(store.forget(erased)).unwrap());
        for n in 0..20 {
            let (chat, gone) = if n % 2 == 0 {
                (erased, true)
            } else {
                (kept, false)
            };
            assert_eq!(
                rt.block_on(store.outcome(chat, id(n))).unwrap(),
                (!gone).then(|| resent(n, 2).text),
                "outcome {n}"
            );
        }
    }
    let key = erased.to_key();
    let db = raw_sled(&path);
    let tree = db.open_tree("outcomes").unwrap();
    let mut entries = 0;
    for entry in tree.iter() {
        let (k, v) = entry.unwrap();
        entries += 1;
        let holds = |bytes: &[u8]| bytes.windows(key.len()).any(|w| w == key);
        assert!(
            !holds(&k) && !holds(&v),
            "an entry of the outcomes tree still holds the erased conversation ({} bytes key)",
            k.len()
        );
    }
    assert!(entries >= 10, "the kept conversation's outcomes are there");
}

/// Where a writer thread is with one outcome: its last version whose call returned, and
/// whether a later write of it is in flight.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Progress {
    version: u64,
    in_flight: bool,
}

/// Claim 1 across threads: once a writer's call returned (a journaled `put_outcome`, or
/// an outbox transaction that unpacks the journal), every lookup by `messageId` that
/// starts after finds that version or a later one, and a lookup by WhatsApp id finds the
/// outcome by the WhatsApp id of its latest version, while other threads unpack the
/// journal (a conversation's outcomes, moves, erasure), write brief outcomes (sweep
/// steps), prune, flush and count, and a scan by business number finds the outcome's
/// conversation. Nothing deadlocks (the test ends). Then a
/// clean close, and a reopen with a full check: intact, every latest version found.
#[test]
fn lookups_racing_writers_and_unpacks_never_miss_a_returned_write() {
    use lipachat_session::QueuedMessage;
    use std::collections::HashMap;
    use std::sync::Mutex;
    const WRITERS: u64 = 2;
    const KEYS: u64 = 24;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = SledStore::open(&path).unwrap();
    let progress: Arc<Mutex<HashMap<u64, Progress>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let chat_of = |n: u64| conversation(20 + n % 3);
    let mut threads = Vec::new();
    for writer in 0..WRITERS {
        let (store, progress, stop) = (store.clone(), Arc::clone(&progress), Arc::clone(&stop));
        threads.push(std::thread::spawn(move || {
            let rt = runtime();
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                for k in 0..KEYS {
                    let n = writer * 1_000 + k;
                    let version = round;
                    progress
                        .lock()
                        .unwrap()
                        .entry(n)
                        .or_insert(Progress {
                            version: 0,
                            in_flight: true,
                        })
                        .in_flight = true;
                    let outcome = resent(n, version);
                    match (round + k) % 5 {
                        0 => {
                            let message = QueuedMessage {
                                message_id: id(n),
                                queued_at: chrono::Utc::now(),
                                payload: "{}".into(),
                            };
                            rt.block_on(store.enqueue_with_outcome(
                                chat_of(n),
                                message,
                                1_000,
                                outcome,
                            ))
                            .unwrap();
                        }
                        1 => {
                            rt.block_on(store.dequeue_with_outcome(chat_of(n), id(n), outcome))
                                .unwrap();
                        }
                        _ => rt.block_on(store.put_outcome(chat_of(n), outcome)).unwrap(),
                    }
                    progress.lock().unwrap().insert(
                        n,
                        Progress {
                            version,
                            in_flight: false,
                        },
                    );
                }
            }
        }));
    }
    // Unpacks, moves, erasure, pruning, flushes and counts, on other conversations.
    {
        let (store, stop) = (store.clone(), Arc::clone(&stop));
        threads.push(std::thread::spawn(move || {
            let rt = runtime();
            let (a, b) = journal_churn::customers(254_700_000_050);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                rt.block_on(store.put_outcome(conversation(50), resent(9_000 + i, 0)))
                    .unwrap();
                // Brief ones, which the sweep's steps (every 64th write) remove.
                let brief = resent(50_000 + i, 0).keep_for(TimeDelta::milliseconds(1));
                rt.block_on(store.put_outcome(conversation(52), brief))
                    .unwrap();
                journal_churn::churn_step(
                    &rt,
                    &store,
                    i,
                    business(),
                    (a, b),
                    conversation(21),
                    conversation(51),
                );
            }
        }));
    }
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    for _ in 0..2 {
        let (store, progress, stop, failures) = (
            store.clone(),
            Arc::clone(&progress),
            Arc::clone(&stop),
            Arc::clone(&failures),
        );
        threads.push(std::thread::spawn(move || {
            let rt = runtime();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let n = (i % WRITERS) * 1_000 + (i / WRITERS) % KEYS;
                let Some(before) = progress.lock().unwrap().get(&n).copied() else {
                    continue;
                };
                if before.version == 0 {
                    continue;
                }
                let found = rt.block_on(store.outcome(chat_of(n), id(n))).unwrap();
                let found = found.as_deref().map(version_of);
                if found.is_none_or(|v| v < before.version) {
                    failures.lock().unwrap().push(format!(
                        "outcome {n}: version {} returned before the lookup, found {found:?}",
                        before.version
                    ));
                }
                let scanned = rt
                    .block_on(store.outcome_conversation(Some(business()), id(n)))
                    .unwrap();
                if scanned != Some(chat_of(n)) {
                    failures.lock().unwrap().push(format!(
                        "outcome {n}: the scan by business number found {scanned:?}"
                    ));
                }
                let wa = format!("wamid.{n}.v{}", before.version);
                let by_wa = rt
                    .block_on(store.outcome_by_wa_id(chat_of(n), &wa))
                    .unwrap();
                let after = progress.lock().unwrap().get(&n).copied();
                if !before.in_flight
                    && after == Some(before)
                    && by_wa.map(|(m, _)| m) != Some(id(n))
                {
                    failures.lock().unwrap().push(format!(
                        "outcome {n}: not found by the WhatsApp id {wa} of its latest version"
                    ));
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} misses, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let latest = progress.lock().unwrap().clone();
    drop(store);
    let rt = runtime();
    let store = SledConfig::new(&path).full_check(true).open().unwrap();
    assert!(store.integrity().is_intact(), "{:?}", store.integrity());
    for (n, progress) in latest {
        let found = rt.block_on(store.outcome(chat_of(n), id(n))).unwrap();
        assert_eq!(
            found.as_deref().map(version_of),
            Some(progress.version),
            "outcome {n} after a clean close and reopen"
        );
    }
}

/// The child's store directory, set by the parent.
const CHILD_DB_ENV: &str = "LIPACHAT_ATTACK11_JOURNAL_TEST_DB";
/// The outcomes the child writes a new version of each round.
const CHILD_KEYS: u64 = 40;
/// The conversation whose outcome the child writes, then erases, each round.
const ERASED: u64 = 90;

/// The child: each round writes a new version of every outcome (journaled: a few batches
/// a round), flushes and prints `ack 2R` (every outcome's version R is acknowledged),
/// then waits a moment in odd rounds (so a kill after that ack finds the batches the
/// flush wrote, not what came later). Every third round it also writes an outcome of
/// conversation `ERASED`, erases it, flushes and prints `ack 2R+1`; every fourth round it
/// first unpacks the journal (a conversation's outcomes), which by then holds many
/// batches, so a kill may land in an unpack. Run only by the parent.
#[test]
#[ignore = "run as a child process by sigkill_mid_unpack_keeps_every_acknowledged_outcome_at_its_latest"]
fn attack11_journal_child() {
    use lipachat_session::WindowStore;
    let Ok(path) = std::env::var(CHILD_DB_ENV) else {
        return;
    };
    let rt = runtime();
    let store = SledStore::open(path).unwrap();
    // The test harness's own "test ... " has no line end: the first ack starts a line.
    println!();
    for round in 1u64.. {
        if round % 4 == 0 {
            drop(rt.block_on(store.outcomes(conversation(0))).unwrap());
        }
        for n in 0..CHILD_KEYS {
            rt.block_on(store.put_outcome(conversation(n % 4), resent(n, round)))
                .unwrap();
        }
        rt.block_on(store.flush()).unwrap();
        println!("ack {}", 2 * round);
        if round % 2 == 1 {
            std::thread::sleep(Duration::from_millis(30));
        }
        if round % 3 == 0 {
            rt.block_on(store.put_outcome(conversation(ERASED), resent(10_000 + round, 0)))
                .unwrap();
            assert!(rt.block_on(store.forget(conversation(ERASED))).unwrap());
            rt.block_on(store.flush()).unwrap();
            println!("ack {}", 2 * round + 1);
        }
    }
}

/// Claim 2: after a SIGKILL (after an acknowledged flush of pending and written batches,
/// or in the middle of an unpack of many batches; the counts of acks are picked for both,
/// see the child), every outcome is found at a version no
/// older than the last acknowledged one, and no erased outcome whose erasure was
/// acknowledged comes back.
#[test]
fn sigkill_mid_unpack_keeps_every_acknowledged_outcome_at_its_latest() {
    let rt = runtime();
    for (attempt, acks) in [1usize, 6, 9, 11, 14, 16, 17].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let acked = child_process::acknowledged_until_killed(
            "attack11_journal_child",
            CHILD_DB_ENV,
            &path,
            acks,
        );
        let round = acked.iter().max().unwrap() / 2;
        let store = SledStore::open(&path).expect("reopens after SIGKILL");
        for n in 0..CHILD_KEYS {
            let found = rt
                .block_on(store.outcome(conversation(n % 4), id(n)))
                .unwrap();
            let version = found.as_deref().map(version_of);
            assert!(
                version.is_some_and(|v| v >= round),
                "attempt {attempt}: outcome {n} found at {version:?}, version {round} acknowledged"
            );
            let by_wa = rt
                .block_on(store.outcome_by_wa_id(
                    conversation(n % 4),
                    &format!("wamid.{n}.v{}", version.unwrap()),
                ))
                .unwrap();
            assert_eq!(
                by_wa.map(|(m, _)| m),
                Some(id(n)),
                "attempt {attempt}: by WhatsApp id"
            );
        }
        for erased in acked.iter().filter(|ack| *ack % 2 == 1).map(|ack| ack / 2) {
            assert_eq!(
                rt.block_on(store.outcome(conversation(ERASED), id(10_000 + erased)))
                    .unwrap(),
                None,
                "attempt {attempt}: erased outcome of round {erased} came back"
            );
        }
    }
}

/// Claim 5: damaged batch values (empty, an unknown format, a record cut short, a record
/// whose value is not an outcome) under batch keys before, between and after the
/// store's own batches: opening and using the store (lookups by id and WhatsApp id, the
/// scans, a conversation's outcomes, writes, pruning, counting, erasure) never panics,
/// answers every readable outcome rightly, and a clean close leaves a store whose full
/// check is intact.
#[test]
fn damaged_batches_never_panic_nor_hide_a_readable_outcome() {
    use lipachat_session::WindowStore;
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = SledStore::open(&path).unwrap();
        for n in 0..30 {
            rt.block_on(store.put_outcome(conversation(n % 3), sent(n)))
                .unwrap();
            if n % 10 == 9 {
                rt.block_on(store.flush()).unwrap();
            }
        }
    }
    {
        let db = raw_sled(&path);
        let tree = db.open_tree("outcomes").unwrap();
        let key = |seq: u64| {
            let mut key = [0xFF_u8; 9];
            key[1..].copy_from_slice(&seq.to_be_bytes());
            key
        };
        let batches: Vec<u64> = tree
            .iter()
            .keys()
            .filter_map(|k| {
                let k = k.unwrap();
                (k.len() == 9).then(|| u64::from_be_bytes(k[1..].try_into().unwrap()))
            })
            .collect();
        assert!(batches.len() >= 3, "the store wrote batches: {batches:?}");
        let last = *batches.iter().max().unwrap();
        // A record for a new key (conversation 5, outcome 500) whose value is no outcome.
        let mut bad_value = vec![1u8];
        let mut outcome_key = conversation(5).to_key().to_vec();
        outcome_key.extend_from_slice(id(500).as_bytes());
        bad_value.extend_from_slice(&outcome_key);
        bad_value.extend_from_slice(&3u32.to_be_bytes());
        bad_value.extend_from_slice(b"bad");
        for (seq, value) in [
            (last + 1, vec![]),
            (last + 3, vec![7, 1, 2, 3]),
            (last + 5, vec![1, 0, 0, 0]),
            (last + 7, bad_value),
            (u64::MAX - 1, b"garbage".to_vec()),
        ] {
            tree.insert(key(seq), value).unwrap();
        }
        db.flush().unwrap();
    }
    let use_store = |store: &SledStore, when: &str| {
        for n in 0..30 {
            let chat = conversation(n % 3);
            assert_eq!(
                rt.block_on(store.outcome(chat, id(n))).unwrap(),
                Some(sent(n).text),
                "{when}: outcome {n}"
            );
            assert_eq!(
                rt.block_on(store.outcome_by_wa_id(chat, &format!("wamid.{n}.v0")))
                    .unwrap()
                    .map(|(m, _)| m),
                Some(id(n)),
                "{when}: outcome {n} by WhatsApp id"
            );
            assert_eq!(
                rt.block_on(store.outcome_conversation(Some(business()), id(n)))
                    .unwrap(),
                Some(chat),
                "{when}: outcome {n}'s conversation"
            );
        }
        // The record whose value is no outcome: a clear error (until erased), never a
        // panic nor an outcome.
        match rt.block_on(store.outcome(conversation(5), id(500))) {
            Err(lipachat_session::StoreError::Corrupt { .. }) | Ok(None) => {}
            other => panic!("{when}: the damaged record read as {other:?}"),
        }
        drop(rt.block_on(store.outcomes(conversation(5))));
        store.stored_outcomes().unwrap();
    };
    {
        let store = SledConfig::new(&path)
            .accept_damage(true)
            .full_check(true)
            .open()
            .unwrap();
        use_store(&store, "opened with damage");
        for n in 30..60 {
            rt.block_on(store.put_outcome(conversation(n % 3), sent(n)))
                .unwrap();
        }
        store.prune_outcomes().unwrap();
        rt.block_on(store.forget(conversation(5))).unwrap();
        rt.block_on(store.flush()).unwrap();
        use_store(&store, "after writes, pruning and erasure");
    }
    let store = SledConfig::new(&path).full_check(true).open().unwrap();
    assert!(store.integrity().is_intact(), "{:?}", store.integrity());
    use_store(&store, "reopened");
    for n in 30..60 {
        assert_eq!(
            rt.block_on(store.outcome(conversation(n % 3), id(n)))
                .unwrap(),
            Some(sent(n).text),
            "reopened: outcome {n}"
        );
    }
}

/// The child of the pending-records attack: its store's directory.
const PENDING_DB_ENV: &str = "LIPACHAT_ATTACK11_PENDING_TEST_DB";
/// Outcomes the pending-records child writes a round: a few hundred batches.
const PENDING_ROUND_KEYS: u64 = 6_000;
/// Of those, how many get a second version, pending when the unpack starts.
const PENDING_REWRITTEN: u64 = 5;

/// The child of `sigkill_in_an_unpack_loses_no_outcome_whose_latest_record_was_pending`:
/// a periodic store (sled flushes every millisecond in the background). Each round writes
/// version 1 of fresh outcomes (journaled, hundreds of batches), flushes and prints
/// `ack R`; then writes version 2 of the round's first few outcomes (pending records whose
/// version 1 is in the round's first batch) and unpacks the journal (a conversation's
/// outcomes: hundreds of batches), which the parent's kill, a few milliseconds after the
/// first ack, lands in. Run only by the parent.
#[test]
#[ignore = "run as a child process by sigkill_in_an_unpack_loses_no_outcome_whose_latest_record_was_pending"]
fn attack11_pending_child() {
    use lipachat_session::{Durability, WindowStore};
    let Ok(path) = std::env::var(PENDING_DB_ENV) else {
        return;
    };
    let rt = runtime();
    let store = SledConfig::new(path)
        .durability(Durability::Periodic {
            interval: Duration::from_millis(1),
        })
        .open()
        .unwrap();
    println!();
    for round in 1u64.. {
        let first = round * 100_000;
        for n in first..first + PENDING_ROUND_KEYS {
            rt.block_on(store.put_outcome(conversation(n % 4), resent(n, 1)))
                .unwrap();
        }
        rt.block_on(store.flush()).unwrap();
        println!("ack {round}");
        for n in first..first + PENDING_REWRITTEN {
            rt.block_on(store.put_outcome(conversation(n % 4), resent(n, 2)))
                .unwrap();
        }
        drop(rt.block_on(store.outcomes(conversation(0))).unwrap());
    }
}

/// Claim 2, in an unpack: every outcome whose version 1 was acknowledged by a flush is
/// found after a SIGKILL, at version 1 or 2. Before the fix, an unpack removed each batch
/// with the records in it that were their key's latest, leaving the others (replaced by a
/// later record) to that later record; for a key whose later record was still pending
/// (in memory only, written last, in the unpack's final transaction), a kill after the
/// first batch's transaction reached the disk and before that final one lost the key
/// altogether: the acknowledged version 1 was removed with its batch, and version 2 was
/// never written. A retry of that send would find no outcome, and send again.
#[test]
fn sigkill_in_an_unpack_loses_no_outcome_whose_latest_record_was_pending() {
    use std::io::BufRead;
    let rt = runtime();
    let mut lost = Vec::new();
    // Killed a while after the first ack: the unpack is under way by then (its first
    // batches' transactions on disk, flushed by sled every millisecond), not yet done.
    for (attempt, delay_ms) in [2u64, 5, 10, 20, 30, 45].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut child =
            child_process::spawn_test_child("attack11_pending_child", PENDING_DB_ENV, &path);
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut acked = Vec::new();
        for line in stdout.lines() {
            if let Some(round) = line.unwrap().strip_prefix("ack ") {
                acked.push(round.parse::<u64>().unwrap());
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        assert_eq!(acked, [1], "the child acknowledged its first round");
        let store = SledStore::open(&path).expect("reopens after SIGKILL");
        for round in acked {
            let first = round * 100_000;
            for n in first..first + PENDING_ROUND_KEYS {
                let found = rt
                    .block_on(store.outcome(conversation(n % 4), id(n)))
                    .unwrap();
                if found.is_none() {
                    lost.push((attempt, n));
                }
            }
        }
    }
    assert!(
        lost.is_empty(),
        "acknowledged outcomes lost (attempt, outcome): {lost:?}"
    );
}
