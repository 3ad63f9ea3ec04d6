//! The redelivery memory of the sled store on a real disk: it survives a reopen, it is
//! bounded by its horizon, the engine applies the horizon on the receipt clock, and an
//! export carries it to a new store (expired entries left behind, bad lines refused).

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod raw_sled;
use raw_sled::raw_sled;

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::Clock;
use lipachat_session::export::{export, import};
use lipachat_session::{
    Conversation, InboundId, InboundReceipt, ManualClock, Sessions, SledStore, StoreError,
    WindowStore,
};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn chat() -> Conversation {
    Conversation::parse("254110090747", "254712345678").unwrap()
}

fn id(n: usize) -> InboundId {
    InboundId::new(&format!("wamid.{n}")).unwrap()
}

#[tokio::test]
async fn a_seen_id_is_still_seen_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let at = t("2026-11-23T10:00:00Z");
    let until = at + TimeDelta::days(7);
    {
        let store = SledStore::open(&path).unwrap();
        let first = store
            .record_inbound_once(chat(), at, &id(1), at, until)
            .await
            .unwrap();
        assert!(matches!(first, InboundReceipt::Recorded(_)));
    }
    let store = SledStore::open(&path).unwrap();
    let again = store
        .record_inbound_once(chat(), at, &id(1), at + TimeDelta::days(2), until)
        .await
        .unwrap();
    assert_eq!(
        again,
        InboundReceipt::Duplicate {
            first_received_at: at
        }
    );
}

#[tokio::test]
async fn the_memory_is_pruned_past_its_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    let at = t("2026-11-23T10:00:00Z");
    for n in 0..50 {
        store
            .record_inbound_once(chat(), at, &id(n), at, at + TimeDelta::hours(1))
            .await
            .unwrap();
    }
    assert_eq!(store.remembered_inbound_ids(), 50);
    // A day later the fifty are past their horizon; ten new ids prune them as they come.
    let later = at + TimeDelta::days(1);
    for n in 100..110 {
        store
            .record_inbound_once(chat(), later, &id(n), later, later + TimeDelta::hours(1))
            .await
            .unwrap();
    }
    assert_eq!(store.remembered_inbound_ids(), 10);
    // An expired id that was pruned is new again.
    let receipt = store
        .record_inbound_once(chat(), later, &id(3), later, later + TimeDelta::hours(1))
        .await
        .unwrap();
    assert!(matches!(receipt, InboundReceipt::Recorded(_)));
}

#[tokio::test]
async fn the_engine_remembers_ids_for_its_horizon_on_the_receipt_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(t("2026-11-23T10:00:00Z"));
    let sessions = Sessions::new(SledStore::open(dir.path().join("db")).unwrap())
        .with_clock(clock.clone())
        .with_redelivery_horizon(TimeDelta::days(2));
    assert_eq!(sessions.redelivery_horizon(), TimeDelta::days(2));
    // Sent a day before it arrived: the horizon runs from the receipt.
    let sent = clock.now() - TimeDelta::days(1);
    let first = sessions
        .record_inbound_once(chat(), sent, &id(1))
        .await
        .unwrap();
    assert!(first.is_recorded());
    clock.advance(TimeDelta::days(2) - TimeDelta::seconds(1));
    let again = sessions
        .record_inbound_once(chat(), sent, &id(1))
        .await
        .unwrap();
    assert!(!again.is_recorded(), "still inside the horizon: {again:?}");
    clock.advance(TimeDelta::seconds(1));
    let forgotten = sessions
        .record_inbound_once(chat(), sent, &id(1))
        .await
        .unwrap();
    assert!(forgotten.is_recorded(), "past the horizon: {forgotten:?}");
}

#[tokio::test]
async fn a_future_time_is_refused_before_the_id_is_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(t("2026-11-23T10:00:00Z"));
    let sessions =
        Sessions::new(SledStore::open(dir.path().join("db")).unwrap()).with_clock(clock.clone());
    let error = sessions
        .record_inbound_once(chat(), clock.now() + TimeDelta::hours(1), &id(1))
        .await
        .unwrap_err();
    assert!(
        matches!(error, lipachat_session::SessionError::FutureTime(_)),
        "{error}"
    );
    // Nothing remembered: the same id with a sane time is recorded.
    let receipt = sessions
        .record_inbound_once(chat(), clock.now(), &id(1))
        .await
        .unwrap();
    assert!(receipt.is_recorded());
}

/// The `seen` lines of an export, as JSON values.
fn seen_lines(export: &[u8]) -> Vec<serde_json::Value> {
    std::str::from_utf8(export)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|line| line["kind"] == "seen")
        .collect()
}

/// A move to a new sled directory carries the ids still remembered: a redelivery after
/// the move is a duplicate naming the first receipt. An id whose memory ended is not
/// exported, so it is recorded after the move.
#[tokio::test]
async fn a_new_directory_remembers_what_the_old_one_did_but_not_what_expired() {
    let dir = tempfile::tempdir().unwrap();
    let old = SledStore::open(dir.path().join("old")).unwrap();
    let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 3);
    let week = TimeDelta::days(7);
    old.record_inbound_once(chat(), now, &id(1), now, now + week)
        .await
        .unwrap();
    // Received eight days ago, remembered until yesterday: expired, not yet pruned.
    let long_ago = now - TimeDelta::days(8);
    old.record_inbound_once(chat(), long_ago, &id(2), long_ago, now - TimeDelta::days(1))
        .await
        .unwrap();
    assert_eq!(old.remembered_inbound_ids(), 2);

    let mut written = Vec::new();
    let exported = export(&old, &mut written).await.unwrap();
    assert_eq!(exported.seen, 1);
    let seen = seen_lines(&written);
    assert_eq!(seen.len(), 1, "only the id still remembered is exported");
    assert_eq!(seen[0]["business"], "254110090747");
    assert_eq!(seen[0]["digest"], id(1).digest().to_string());
    assert_eq!(
        seen[0]["first_received"],
        now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    assert_eq!(
        seen[0]["remember_until"],
        (now + week).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );

    let new = SledStore::open(dir.path().join("new")).unwrap();
    let imported = import(&new, written.as_slice()).await.unwrap();
    assert_eq!(imported, exported);
    let later = now + TimeDelta::seconds(1);
    assert_eq!(
        new.record_inbound_once(chat(), later, &id(1), later, later + week)
            .await
            .unwrap(),
        InboundReceipt::Duplicate {
            first_received_at: now
        },
        "a redelivery after the move is a duplicate"
    );
    assert!(matches!(
        new.record_inbound_once(chat(), later, &id(2), later, later + week)
            .await
            .unwrap(),
        InboundReceipt::Recorded(_)
    ));
}

/// A bad `seen` line is refused with its number and nothing is imported; an export
/// without `seen` lines (written before they existed) still imports.
#[tokio::test]
async fn bad_seen_lines_are_refused_by_line_and_old_exports_still_import() {
    let now = Utc::now();
    let time = |at: DateTime<Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let header = r#"{"kind":"header","format":"lipachat-session-export","version":2}"#;
    let window = format!(
        r#"{{"kind":"window","business":"254110090747","customer":"254712345678","last_inbound":"{}","gateway_closed_at":null}}"#,
        time(now - TimeDelta::hours(1))
    );
    let seen = |digest: &str, first: DateTime<Utc>, until: DateTime<Utc>| {
        format!(
            r#"{{"kind":"seen","business":"254110090747","digest":"{digest}","first_received":"{}","remember_until":"{}"}}"#,
            time(first),
            time(until)
        )
    };
    let digest = id(1).digest().to_string();
    let week = TimeDelta::days(7);
    let cases = [
        (seen("abc", now, now + week), "digest \"abc\""),
        (seen(&"z".repeat(32), now, now + week), "'z'"),
        (
            seen(&digest, now + TimeDelta::hours(1), now + week),
            "inbound receipt time",
        ),
        (seen(&digest, now, now - TimeDelta::hours(1)), "not after"),
        (
            seen(&digest, now, now + TimeDelta::days(3650)),
            "more than 366 days after",
        ),
    ];
    for (bad, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path().join("db")).unwrap();
        let input = format!("{header}\n{window}\n{bad}\n");
        let error = import(&store, input.as_bytes()).await.unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(
                error,
                StoreError::Import { line: 3, .. } | StoreError::ImportFutureTime { line: 3, .. }
            ),
            "{bad}: {message}"
        );
        assert!(message.contains(expected), "{bad}: {message}");
        assert_eq!(store.window(chat()).await.unwrap(), None, "{bad}");
        assert_eq!(store.remembered_inbound_ids(), 0, "{bad}");
    }

    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    let imported = import(&store, format!("{header}\n{window}\n").as_bytes())
        .await
        .unwrap();
    assert_eq!((imported.windows, imported.seen), (1, 0));
    assert_eq!(store.remembered_inbound_ids(), 0);
}

/// Ids `ns`, delivered again at `later`, are each a duplicate first received at `first`.
async fn assert_duplicates<const N: usize>(
    store: &SledStore,
    ns: [usize; N],
    later: DateTime<Utc>,
    first: DateTime<Utc>,
) {
    for n in ns {
        assert_eq!(
            store
                .record_inbound_once(chat(), later, &id(n), later, later + TimeDelta::days(7))
                .await
                .unwrap(),
            InboundReceipt::Duplicate {
                first_received_at: first
            },
            "id {n}"
        );
    }
}

/// A new store at `path`, opened with sled itself and marked as of schema `version`.
fn store_of_schema(path: &std::path::Path, version: u32) -> sled::Db {
    drop(SledStore::open(path).unwrap());
    let db = raw_sled(path);
    db.insert("schema_version", &version.to_be_bytes()).unwrap();
    db
}

/// The key both layouts give an id: business then digest.
fn legacy_id_key(n: usize) -> Vec<u8> {
    [
        &chat().business.as_u64().to_be_bytes()[..],
        id(n).digest().as_bytes(),
    ]
    .concat()
}

/// The expiry tree's key: the end of the memory (sign-flipped) then the id key.
fn legacy_expiry_key(until: DateTime<Utc>, n: usize) -> Vec<u8> {
    let ordered = (until.timestamp_millis() as u64) ^ (1 << 63);
    [&ordered.to_be_bytes()[..], &legacy_id_key(n)].concat()
}

/// A store whose redelivery memory schema version 1 wrote (a tree by id beside an expiry
/// tree with empty values) opens with what it remembered, moves it to the expiry-ordered
/// layout, and says this build's schema version from then on.
#[tokio::test]
async fn a_store_of_the_old_layout_keeps_its_memory_and_moves_to_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let at = t("2026-11-23T10:00:00Z");
    let until = at + TimeDelta::days(7);
    {
        // What schema version 1 wrote for: id 1 (both trees), id 2 (the tree by id only:
        // a crash came between the two writes), id 3 (the expiry entry only: forgotten,
        // a crash came between the two removals), id 4 (both, expired by `at`).
        let db = store_of_schema(&path, 1);
        let by_id = db.open_tree("seen_inbound").unwrap();
        let by_expiry = db.open_tree("seen_inbound_expiry").unwrap();
        let value = |first: DateTime<Utc>, until: DateTime<Utc>| {
            [
                first.timestamp_millis().to_be_bytes(),
                until.timestamp_millis().to_be_bytes(),
            ]
            .concat()
        };
        let early = at - TimeDelta::days(8);
        by_id.insert(legacy_id_key(1), value(at, until)).unwrap();
        by_id.insert(legacy_id_key(2), value(at, until)).unwrap();
        by_id
            .insert(legacy_id_key(4), value(early, early + TimeDelta::days(7)))
            .unwrap();
        for (end, n) in [(until, 1), (until, 3), (early + TimeDelta::days(7), 4)] {
            by_expiry.insert(legacy_expiry_key(end, n), &[]).unwrap();
        }
        db.flush().unwrap();
    }
    let later = at + TimeDelta::hours(1);
    {
        let store = SledStore::open(&path).unwrap();
        assert_duplicates(&store, [1, 2], later, at).await;
        for n in [3, 4] {
            let receipt = store
                .record_inbound_once(chat(), later, &id(n), later, later + TimeDelta::days(7))
                .await
                .unwrap();
            assert!(matches!(receipt, InboundReceipt::Recorded(_)), "id {n}");
        }
        let remembered = store.remembered_inbound(later).await.unwrap();
        assert_eq!(remembered.len(), 4);
    }
    {
        let db = raw_sled(&path);
        assert_eq!(
            db.get("schema_version").unwrap().as_deref(),
            Some(&lipachat_session::SCHEMA_VERSION.to_be_bytes()[..])
        );
        assert!(db.open_tree("seen_inbound").unwrap().is_empty());
        let by_expiry = db.open_tree("seen_inbound_expiry").unwrap();
        assert_eq!(
            by_expiry
                .get(legacy_expiry_key(until, 1))
                .unwrap()
                .as_deref(),
            Some(&at.timestamp_millis().to_be_bytes()[..]),
            "the first-received time moved into the expiry entry"
        );
    }
    // Reopened in the new layout: still remembered.
    let store = SledStore::open(&path).unwrap();
    for n in 1..=4 {
        let receipt = store
            .record_inbound_once(chat(), later, &id(n), later, later + TimeDelta::days(7))
            .await
            .unwrap();
        assert!(
            matches!(receipt, InboundReceipt::Duplicate { .. }),
            "id {n}"
        );
    }
    assert_eq!(store.remembered_inbound_ids(), 4);
}

/// How many entries of each kind the expiry tree of the (closed) store at `path` holds:
/// (one-id entries, batch entries, ids in batches).
fn expiry_entries(path: &std::path::Path) -> (usize, usize, usize) {
    let db = raw_sled(path);
    let by_expiry = db.open_tree("seen_inbound_expiry").unwrap();
    let (mut ones, mut batches, mut batched_ids) = (0, 0, 0);
    for item in by_expiry.iter() {
        let (key, value) = item.unwrap();
        match key.len() {
            32 => ones += 1,
            16 => {
                assert_eq!(value.len() % 40, 0, "a batch is whole 40-byte records");
                batches += 1;
                batched_ids += value.len() / 40;
            }
            other => panic!("an expiry entry with a {other}-byte key"),
        }
    }
    (ones, batches, batched_ids)
}

/// Concurrent inbound messages share flushes, and the ids one flush makes durable are
/// written as one entry, not one each; every one is remembered after a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ids_one_flush_covers_are_written_as_one_entry() {
    const IDS: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let at = t("2026-11-23T10:00:00Z");
    let until = at + TimeDelta::days(7);
    let flushes = {
        let store = SledStore::open(&path).unwrap();
        let tasks: Vec<_> = (0..IDS)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    let customer = format!("2547{:08}", n);
                    let chat = Conversation::parse("254110090747", &customer).unwrap();
                    store
                        .record_inbound_once(chat, at, &id(n), at, until)
                        .await
                        .unwrap()
                })
            })
            .collect();
        for task in tasks {
            assert!(matches!(task.await.unwrap(), InboundReceipt::Recorded(_)));
        }
        assert_eq!(store.remembered_inbound_ids(), IDS);
        store.group_commit_flushes()
    };
    let (ones, batches, batched_ids) = expiry_entries(&path);
    assert_eq!(ones, 0, "no id written alone");
    assert_eq!(batched_ids, IDS, "every id written once");
    assert!(
        batches as u64 <= flushes && batches < IDS,
        "{batches} batch entries for {IDS} ids over {flushes} flushes"
    );
    let store = SledStore::open(&path).unwrap();
    assert_eq!(store.remembered_inbound_ids(), IDS);
    let later = at + TimeDelta::days(1);
    for n in 0..IDS {
        let customer = format!("2547{:08}", n);
        let chat = Conversation::parse("254110090747", &customer).unwrap();
        assert_eq!(
            store
                .record_inbound_once(chat, later, &id(n), later, later + TimeDelta::days(7))
                .await
                .unwrap(),
            InboundReceipt::Duplicate {
                first_received_at: at
            },
            "id {n}"
        );
    }
}

/// A store of schema version 2 (one entry per id) opens with what it remembered, writes
/// new ids in batches beside the old entries, prunes both kinds, and says schema version
/// 3 from then on (a build that knows only version 2 refuses it with `SchemaTooNew`).
#[tokio::test]
async fn a_store_of_version_2_keeps_its_memory_and_takes_batches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let at = t("2026-11-23T10:00:00Z");
    let until = at + TimeDelta::days(7);
    {
        // What schema version 2 wrote for: id 1 (remembered a week), id 2 (remembered
        // an hour).
        let db = store_of_schema(&path, 2);
        let by_expiry = db.open_tree("seen_inbound_expiry").unwrap();
        by_expiry
            .insert(
                legacy_expiry_key(until, 1),
                &at.timestamp_millis().to_be_bytes(),
            )
            .unwrap();
        by_expiry
            .insert(
                legacy_expiry_key(at + TimeDelta::hours(1), 2),
                &at.timestamp_millis().to_be_bytes(),
            )
            .unwrap();
        db.flush().unwrap();
    }
    let later = at + TimeDelta::minutes(30);
    {
        let store = SledStore::open(&path).unwrap();
        assert_duplicates(&store, [1, 2], later, at).await;
        let receipt = store
            .record_inbound_once(chat(), later, &id(3), later, until)
            .await
            .unwrap();
        assert!(matches!(receipt, InboundReceipt::Recorded(_)));
    }
    assert_eq!(
        expiry_entries(&path),
        (2, 1, 1),
        "old entries kept, id 3 batched"
    );
    {
        let db = raw_sled(&path);
        assert_eq!(
            db.get("schema_version").unwrap().as_deref(),
            Some(&lipachat_session::SCHEMA_VERSION.to_be_bytes()[..])
        );
    }
    // Two hours on, id 2 has expired: a new copy is recorded (in a batch) and the old
    // entry is pruned; ids 1 and 3 are still remembered.
    let hours = at + TimeDelta::hours(2);
    {
        let store = SledStore::open(&path).unwrap();
        assert_eq!(store.remembered_inbound_ids(), 3);
        let receipt = store
            .record_inbound_once(chat(), hours, &id(2), hours, hours + TimeDelta::days(7))
            .await
            .unwrap();
        assert!(matches!(receipt, InboundReceipt::Recorded(_)));
        for n in [1, 3] {
            let receipt = store
                .record_inbound_once(chat(), hours, &id(n), hours, hours + TimeDelta::days(7))
                .await
                .unwrap();
            assert!(
                matches!(receipt, InboundReceipt::Duplicate { .. }),
                "id {n}"
            );
        }
    }
    assert_eq!(expiry_entries(&path), (1, 2, 2), "id 2's old entry pruned");
    // Eight days on, everything has expired: recording one id prunes every entry.
    let days = at + TimeDelta::days(8);
    let store = SledStore::open(&path).unwrap();
    for n in 1..=3 {
        let receipt = store
            .record_inbound_once(chat(), days, &id(n), days, days + TimeDelta::days(7))
            .await
            .unwrap();
        assert!(matches!(receipt, InboundReceipt::Recorded(_)), "id {n}");
    }
    assert_eq!(store.remembered_inbound_ids(), 3);
    drop(store);
    let (ones, _, batched_ids) = expiry_entries(&path);
    assert_eq!(
        (ones, batched_ids),
        (0, 3),
        "only the three new ids are left"
    );
}
