//! The outcome journal: send outcomes written in batches (a sled entry per batch) must
//! read exactly as single entries did. A lookup returns the latest write of its key,
//! whether it is pending in memory, in a batch, or made a single entry by an unpack;
//! whatever the writes in between (the outbox's transactions, moves, erasures) and across
//! reopens; erased outcomes leave the disk; batches leave once expired, oldest first.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::collections::HashMap;

use chrono::{TimeDelta, Utc};
use lipachat_session::{
    IdentityStore, MessageId, OutboxStore, QueuedMessage, SledStore, StoredOutcome, WindowStore,
};
use proptest::prelude::*;

mod journal_fixtures;
use journal_fixtures::{business, conversation, customer, id, runtime, versioned_text};

fn queued(n: u64) -> QueuedMessage {
    QueuedMessage {
        message_id: id(n),
        queued_at: Utc::now(),
        payload: "{}".into(),
    }
}

/// An outcome as a send stores one: a contact card's JSON is a few hundred bytes, so a
/// batch holds a handful.
fn sent(n: u64, version: u64) -> StoredOutcome {
    StoredOutcome::new(id(n), versioned_text(n, version)).with_wa_id(format!("wamid.{n}.{version}"))
}

#[test]
fn journaled_outcomes_are_found_by_id_and_whatsapp_id_before_and_after_a_reopen() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    const COUNT: u64 = 200;
    let check = |store: &SledStore, when: &str| {
        for n in 0..COUNT {
            let chat = conversation(n % 5);
            let text = sent(n, 0).text;
            assert_eq!(
                rt.block_on(store.outcome(chat, id(n))).unwrap().as_ref(),
                Some(&text),
                "{when}: outcome {n} by id"
            );
            assert_eq!(
                rt.block_on(store.outcome_by_wa_id(chat, &format!("wamid.{n}.0")))
                    .unwrap(),
                Some((id(n), text)),
                "{when}: outcome {n} by WhatsApp id"
            );
            assert_eq!(
                rt.block_on(store.outcome(conversation(n % 5 + 1), id(n)))
                    .unwrap(),
                None,
                "{when}: outcome {n} is not another conversation's"
            );
        }
        assert_eq!(store.stored_outcomes().unwrap(), COUNT as usize, "{when}");
    };
    {
        let store = SledStore::open(&path).unwrap();
        for n in 0..COUNT {
            rt.block_on(store.put_outcome(conversation(n % 5), sent(n, 0)))
                .unwrap();
        }
        // Some in written batches, the last still pending.
        check(&store, "as written");
    }
    // A clean close wrote the pending batch.
    let store = SledStore::open(&path).unwrap();
    check(&store, "after a reopen, from the batches");
    // A conversation's list unpacks the journal into single entries: the same answers.
    for i in 0..5 {
        assert_eq!(
            rt.block_on(store.outcomes(conversation(i))).unwrap().len(),
            (COUNT / 5) as usize
        );
    }
    check(&store, "unpacked");
    drop(store);
    check(&SledStore::open(&path).unwrap(), "unpacked, after a reopen");
}

#[test]
fn an_erased_conversation_leaves_no_journaled_outcome_behind() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = SledStore::open(&path).unwrap();
        for n in 0..60 {
            rt.block_on(store.put_outcome(conversation(n % 2), sent(n, 0)))
                .unwrap();
        }
        assert!(rt.block_on(store.forget(conversation(0))).unwrap());
        assert_eq!(store.stored_outcomes().unwrap(), 30);
        for n in (0..60).step_by(2) {
            assert_eq!(
                rt.block_on(store.outcome(conversation(0), id(n))).unwrap(),
                None
            );
        }
    }
    let store = SledStore::open(&path).unwrap();
    assert_eq!(store.stored_outcomes().unwrap(), 30);
    for n in 0..60 {
        let found = rt
            .block_on(store.outcome(conversation(n % 2), id(n)))
            .unwrap();
        assert_eq!(found.is_some(), n % 2 == 1, "outcome {n} after the erasure");
    }
}

#[test]
fn batches_leave_once_they_and_every_earlier_one_expired() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    let brief = |n: u64| sent(n, 0).keep_for(TimeDelta::milliseconds(40));
    // Brief outcomes only: once expired, the next write (or a prune) removes them.
    for n in 0..30 {
        rt.block_on(store.put_outcome(conversation(0), brief(n)))
            .unwrap();
    }
    rt.block_on(WindowStore::flush(&store)).unwrap();
    assert_eq!(store.stored_outcomes().unwrap(), 30);
    std::thread::sleep(std::time::Duration::from_millis(60));
    assert_eq!(
        rt.block_on(store.outcome(conversation(0), id(3))).unwrap(),
        None
    );
    assert_eq!(store.prune_outcomes().unwrap(), 30);
    assert_eq!(store.stored_outcomes().unwrap(), 0);

    // A lasting outcome's batch first: the brief ones after it wait for it, unread.
    rt.block_on(store.put_outcome(conversation(1), sent(100, 0)))
        .unwrap();
    rt.block_on(WindowStore::flush(&store)).unwrap();
    for n in 0..30 {
        rt.block_on(store.put_outcome(conversation(0), brief(n)))
            .unwrap();
    }
    rt.block_on(WindowStore::flush(&store)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(60));
    assert_eq!(store.prune_outcomes().unwrap(), 0);
    assert_eq!(store.stored_outcomes().unwrap(), 31);
    for n in 0..30 {
        assert_eq!(
            rt.block_on(store.outcome(conversation(0), id(n))).unwrap(),
            None
        );
    }
    assert!(
        rt.block_on(store.outcome(conversation(1), id(100)))
            .unwrap()
            .is_some()
    );
}

/// One step of the model test.
#[derive(Debug, Clone)]
enum Step {
    /// A plain write (journaled, unless the key is a single entry).
    Put { customer: u64, n: u64 },
    /// The outbox's transaction with the outcome (a single entry).
    Enqueue { customer: u64, n: u64 },
    /// The other outbox transaction.
    Dequeue { customer: u64, n: u64 },
    /// A customer's records move to another's.
    Move { from: u64, to: u64 },
    /// An erasure.
    Forget { customer: u64 },
    /// A conversation's list (which unpacks the journal).
    List { customer: u64 },
    /// A flush (which writes the pending batch).
    Flush,
    /// A clean close and a reopen.
    Reopen,
}

const CUSTOMERS: u64 = 3;
const IDS: u64 = 6;

fn step() -> impl Strategy<Value = Step> {
    let customer = 0..CUSTOMERS;
    let n = 0..IDS;
    prop_oneof![
        8 => (customer.clone(), n.clone()).prop_map(|(customer, n)| Step::Put { customer, n }),
        2 => (customer.clone(), n.clone()).prop_map(|(customer, n)| Step::Enqueue { customer, n }),
        2 => (customer.clone(), n).prop_map(|(customer, n)| Step::Dequeue { customer, n }),
        2 => (customer.clone(), customer.clone()).prop_map(|(from, to)| Step::Move { from, to }),
        1 => customer.clone().prop_map(|customer| Step::Forget { customer }),
        1 => customer.prop_map(|customer| Step::List { customer }),
        1 => Just(Step::Flush),
        1 => Just(Step::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Rule: after any sequence of writes, moves, erasures, unpacks, flushes and
    /// reopens, every (conversation, `messageId`) reads as the latest write a model of
    /// single entries holds, by `messageId` and by the WhatsApp id it was written with.
    #[test]
    fn every_outcome_reads_as_its_latest_write(steps in prop::collection::vec(step(), 1..40)) {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut store = SledStore::open(&path).unwrap();
        // (customer, n) -> the version its latest write carried.
        let mut model: HashMap<(u64, u64), u64> = HashMap::new();
        for (version, step) in (1..).zip(&steps) {
            match *step {
                Step::Put { customer, n } => {
                    rt.block_on(store.put_outcome(conversation(customer), sent(n, version))).unwrap();
                    model.insert((customer, n), version);
                }
                Step::Enqueue { customer, n } => {
                    rt.block_on(store.enqueue_with_outcome(
                        conversation(customer), queued(n), 100, sent(n, version),
                    )).unwrap();
                    model.insert((customer, n), version);
                }
                Step::Dequeue { customer, n } => {
                    rt.block_on(store.dequeue_with_outcome(
                        conversation(customer), id(n), sent(n, version),
                    )).unwrap();
                    model.insert((customer, n), version);
                }
                Step::Move { from, to } => {
                    rt.block_on(store.move_customer(business(), customer(from), customer(to))).unwrap();
                    if from != to {
                        for n in 0..IDS {
                            if let Some(moved) = model.remove(&(from, n)) {
                                // The target's own outcome wins for an id both hold.
                                model.entry((to, n)).or_insert(moved);
                            }
                        }
                    }
                }
                Step::Forget { customer } => {
                    rt.block_on(store.forget(conversation(customer))).unwrap();
                    model.retain(|(owner, _), _| *owner != customer);
                }
                Step::List { customer } => {
                    let mut listed: Vec<(MessageId, String)> =
                        rt.block_on(store.outcomes(conversation(customer))).unwrap();
                    listed.sort();
                    let mut expected: Vec<(MessageId, String)> = model
                        .iter()
                        .filter(|((owner, _), _)| *owner == customer)
                        .map(|(&(_, n), &version)| (id(n), sent(n, version).text))
                        .collect();
                    expected.sort();
                    prop_assert_eq!(listed, expected);
                }
                Step::Flush => rt.block_on(WindowStore::flush(&store)).unwrap(),
                Step::Reopen => {
                    drop(store);
                    store = SledStore::open(&path).unwrap();
                }
            }
            for customer in 0..CUSTOMERS {
                for n in 0..IDS {
                    let chat = conversation(customer);
                    let found = rt.block_on(store.outcome(chat, id(n))).unwrap();
                    let expected = model.get(&(customer, n)).map(|&v| sent(n, v).text);
                    prop_assert_eq!(&found, &expected, "{:?}: {} {}", step, customer, n);
                    if let Some(&version) = model.get(&(customer, n)) {
                        let wa = format!("wamid.{n}.{version}");
                        prop_assert_eq!(
                            rt.block_on(store.outcome_by_wa_id(chat, &wa)).unwrap(),
                            Some((id(n), sent(n, version).text))
                        );
                    }
                }
            }
            prop_assert_eq!(store.stored_outcomes().unwrap(), model.len());
        }
    }
}

/// Writers on several threads, each reading back every outcome as soon as its write
/// returned, while another thread flushes again and again (holding the journal's writer,
/// so full batches wait sealed in memory, and are read from there): every read finds its
/// outcome, and after a reopen every outcome is there.
#[test]
fn outcomes_read_back_at_once_from_every_stage_of_a_batch_across_threads() {
    const THREADS: u64 = 6;
    const EACH: u64 = 400;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = SledStore::open(&path).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let rt = runtime();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                rt.block_on(WindowStore::flush(&store)).unwrap();
            }
        });
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = &store;
                scope.spawn(move || {
                    let rt = runtime();
                    for k in 0..EACH {
                        let n = t * EACH + k;
                        let chat = conversation(t);
                        rt.block_on(store.put_outcome(chat, sent(n, 1))).unwrap();
                        assert_eq!(
                            rt.block_on(store.outcome(chat, id(n))).unwrap(),
                            Some(sent(n, 1).text),
                            "thread {t}: outcome {n} read back at once"
                        );
                    }
                })
            })
            .collect();
        let joined: Vec<_> = writers.into_iter().map(|w| w.join()).collect();
        // The flusher stops even when a writer failed, so a failure is not a hang.
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        for writer in joined {
            if let Err(panic) = writer {
                std::panic::resume_unwind(panic);
            }
        }
    });
    assert_eq!(store.stored_outcomes().unwrap(), (THREADS * EACH) as usize);
    drop(store);
    let store = SledStore::open(&path).unwrap();
    let rt = runtime();
    for n in 0..THREADS * EACH {
        assert_eq!(
            rt.block_on(store.outcome(conversation(n / EACH), id(n)))
                .unwrap(),
            Some(sent(n, 1).text),
            "outcome {n} after a reopen"
        );
    }
}
