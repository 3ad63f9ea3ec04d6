//! Attacks on the sled store's send outcomes (issue 11, item 5): the index by WhatsApp
//! id under concurrent writers, and the integrity check after outcome, outbox and erasure
//! writes made concurrently.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use lipachat_session::MessageId;
use lipachat_session::{
    Conversation, OutboxStore, QueuedMessage, SledConfig, SledStore, StoredOutcome, WindowStore,
};
use uuid::Uuid;

mod reopen;

fn chat(n: u64) -> Conversation {
    Conversation::parse("254110090747", &format!("2547{:08}", 12_345_000 + n)).unwrap()
}

/// An outcome whose text names its WhatsApp id, so a check can tie the two back.
fn outcome(id: MessageId, wa: &str) -> StoredOutcome {
    StoredOutcome::new(id, format!("{{\"wa\":\"{wa}\"}}")).with_wa_id(wa)
}

fn wa_of(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text).unwrap()["wa"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Every live outcome of `conversation` is found by its WhatsApp id.
async fn every_outcome_is_found_by_its_wa_id(store: &SledStore, conversation: Conversation) {
    for (id, text) in store.outcomes(conversation).await.unwrap() {
        let wa = wa_of(&text);
        assert_eq!(
            store.outcome_by_wa_id(conversation, &wa).await.unwrap(),
            Some((id, text.clone())),
            "the outcome of {id} in {conversation} is not found by its WhatsApp id {wa}"
        );
    }
}

/// Two writers replace one outcome at the same moment, each with its own WhatsApp id
/// (the index built, as after any lookup). Whichever write sled applies last, the stored
/// outcome must be found by its WhatsApp id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_replacements_of_one_outcome_keep_it_found_by_its_wa_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path().join("db")).unwrap());
    let (c, key) = (chat(1), MessageId::from_uuid(Uuid::from_u128(1)));
    store.put_outcome(c, outcome(key, "wamid.A")).await.unwrap();
    // Builds the index.
    assert!(
        store
            .outcome_by_wa_id(c, "wamid.A")
            .await
            .unwrap()
            .is_some()
    );
    let mut lost = 0;
    for round in 0..5_000 {
        let writers: Vec<_> = ["wamid.A", "wamid.B"]
            .into_iter()
            .map(|wa| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap()
                        .block_on(store.put_outcome(c, outcome(key, wa)))
                        .unwrap();
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let text = store.outcome(c, key).await.unwrap().unwrap();
        let wa = wa_of(&text);
        if store.outcome_by_wa_id(c, &wa).await.unwrap().is_none() {
            lost += 1;
            // Put it right for the next round.
            store.put_outcome(c, outcome(key, "wamid.C")).await.unwrap();
            store.put_outcome(c, outcome(key, "wamid.A")).await.unwrap();
        }
        let _ = round;
    }
    assert_eq!(
        lost, 0,
        "rounds whose stored outcome was not found by its WhatsApp id"
    );
}

/// Outcome writes (some expiring at once), queue-and-outcome steps both ways, sweeps and
/// erasures, all at once on a few conversations; then a clean close. The integrity check
/// (a full scan) finds exactly what was sealed, the index rebuilt after the restart finds
/// every live outcome by its WhatsApp id, and erased conversations keep nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_outcome_writes_keep_the_integrity_check_exact_and_the_index_right() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = Arc::new(SledStore::open(&path).unwrap());
    const CONVERSATIONS: u64 = 4;
    const ROUNDS: u64 = 150;
    for c in 0..CONVERSATIONS {
        store.record_inbound(chat(c), Utc::now()).await.unwrap();
    }
    // Build the index first, so the writes below must keep it right in memory too.
    assert!(
        store
            .outcome_by_wa_id(chat(0), "none")
            .await
            .unwrap()
            .is_none()
    );
    let mut tasks = Vec::new();
    for worker in 0..4u64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                let c = chat((worker + round) % CONVERSATIONS);
                // Keys shared by the workers, so writes to one outcome race.
                let key = MessageId::from_uuid(Uuid::from_u64_pair(round % 7, 0));
                let wa = format!("wamid.{worker}.{round}");
                match round % 5 {
                    0 => store
                        .put_outcome(c, outcome(key, &wa).keep_for(TimeDelta::milliseconds(1)))
                        .await
                        .unwrap(),
                    1 => {
                        let message = QueuedMessage {
                            message_id: MessageId::from_uuid(Uuid::from_u64_pair(worker, round)),
                            queued_at: Utc::now(),
                            payload: "{}".into(),
                        };
                        let _ = store
                            .enqueue_with_outcome(c, message, 1_000, outcome(key, &wa))
                            .await
                            .unwrap();
                    }
                    2 => {
                        let _ = store
                            .dequeue_with_outcome(
                                c,
                                MessageId::from_uuid(Uuid::from_u64_pair(worker, round - 1)),
                                outcome(key, &wa),
                            )
                            .await
                            .unwrap();
                    }
                    3 => store.put_outcome(c, outcome(key, &wa)).await.unwrap(),
                    _ if worker == 0 && round % 30 == 4 => {
                        store.forget(c).await.unwrap();
                    }
                    _ => {
                        store.prune_outcomes().unwrap();
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // One conversation erased at the end: nothing of it may come back.
    let erased = chat(CONVERSATIONS - 1);
    let erased_wa: Vec<String> = store
        .outcomes(erased)
        .await
        .unwrap()
        .iter()
        .map(|(_, text)| wa_of(text))
        .collect();
    store.forget(erased).await.unwrap();
    for c in 0..CONVERSATIONS {
        every_outcome_is_found_by_its_wa_id(&store, chat(c)).await;
    }
    drop(store);

    let store = reopen::when_free(|| SledConfig::new(&path).full_check(true)).unwrap();
    let report = store.integrity();
    assert!(report.full_scan);
    assert!(report.is_intact(), "{report}");
    // The index is rebuilt from disk at the first lookup.
    for c in 0..CONVERSATIONS {
        every_outcome_is_found_by_its_wa_id(&store, chat(c)).await;
    }
    assert!(store.outcomes(erased).await.unwrap().is_empty());
    for wa in &erased_wa {
        assert_eq!(store.outcome_by_wa_id(erased, wa).await.unwrap(), None);
    }
    // Expired outcomes are neither read nor found.
    std::thread::sleep(std::time::Duration::from_millis(5));
    store.prune_outcomes().unwrap();
    drop(store);
    let store = reopen::when_free(|| SledConfig::new(&path).full_check(true)).unwrap();
    assert!(store.integrity().is_intact(), "{}", store.integrity());
}
