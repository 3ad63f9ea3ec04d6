//! Attacks on the outcome journal (`sled_store/outcome_journal.rs`): a damaged batch entry
//! left in the `outcomes` tree, and counts read while batches come and go.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod raw_sled;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::TimeDelta;
use lipachat_session::{
    Conversation, Customer, MessageId, OutboxStore, PhoneNumber, SledConfig, SledStore,
    StoredOutcome,
};
use raw_sled::raw_sled;

fn business() -> PhoneNumber {
    PhoneNumber::from_u64(254_110_090_747).unwrap()
}

fn conversation(i: u64) -> Conversation {
    Conversation::with_customer(
        business(),
        Customer::Phone(PhoneNumber::from_u64(254_700_000_000 + i).unwrap()),
    )
}

fn id(n: u64) -> MessageId {
    MessageId::from_uuid(uuid::Uuid::from_u128(
        0xa11a_0000_0000_4000_8000_0000_0000_0000 | u128::from(n),
    ))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An outcome the size of a sent contact card's: a batch holds a handful.
fn sent(n: u64) -> StoredOutcome {
    StoredOutcome::new(
        id(n),
        format!(
            "{{\"kind\":\"sent\",\"n\":{n},\"pad\":\"{}\"}}",
            "x".repeat(300)
        ),
    )
    .with_wa_id(format!("wamid.{n}"))
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
