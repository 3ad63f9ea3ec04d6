//! The `windows` tree's compact layout (schema version 4: 13-byte keys, 6-byte times): a
//! store written in the layout before it (16-byte keys, 8-byte times) opens with every
//! record as it was and is moved to the new layout, and a process killed with SIGKILL
//! part-way through that move leaves a store whose next open finishes it.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod child_process;
mod raw_sled;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lipachat_session::{
    Conversation, PhoneNumber, SCHEMA_VERSION, SledStore, StoreError, WindowRecord, WindowStore,
};

const DB_ENV: &str = "LIPACHAT_LAYOUT_KILL_TEST_DB";

fn chat(i: u64) -> Conversation {
    Conversation::new(
        PhoneNumber::from_u64(254_110_090_700 + i % 3).unwrap(),
        PhoneNumber::from_u64(254_700_000_000 + i).unwrap(),
    )
}

fn ms(at: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at).unwrap()
}

/// The record conversation `i` holds; every seventh with a gateway closure, and a few
/// with times the 6-byte form cannot hold or before the epoch.
fn record(i: u64) -> WindowRecord {
    let at = match i {
        1 => -86_400_000,         // before 1970
        2 => 200_000_000_000_000, // the year 8307: beyond 6 bytes
        _ => 1_790_000_000_000 + i as i64 * 1_000 + 7,
    };
    let record = WindowRecord::inbound(ms(at));
    if i.is_multiple_of(7) {
        record.with_gateway_closure(ms(at + 60_000))
    } else {
        record
    }
}

/// The value as the layout before schema version 4 wrote it: 8-byte times.
fn old_value(record: &WindowRecord) -> Vec<u8> {
    let mut value = record
        .last_inbound
        .timestamp_millis()
        .to_be_bytes()
        .to_vec();
    if let Some(closed) = record.gateway_closed_at {
        value.extend_from_slice(&closed.timestamp_millis().to_be_bytes());
    }
    value
}

/// Conversation number [`CORRUPT`]'s value is unreadable.
const CORRUPT: u64 = 3;

/// What a release before schema version 4 left at `path`: sled's files and our lock file
/// (no marker, so the store is adopted as it is), schema version 2, `n` windows under
/// 16-byte keys, one of them unreadable.
fn old_layout_store(path: &Path, n: u64) {
    let db = sled::open(path).unwrap();
    db.insert("schema_version", &2u32.to_be_bytes()).unwrap();
    let windows = db.open_tree("windows").unwrap();
    let mut batch = sled::Batch::default();
    for i in 0..n {
        let value = if i == CORRUPT {
            b"bad".to_vec()
        } else {
            old_value(&record(i))
        };
        batch.insert(&chat(i).to_key()[..], value);
    }
    windows.apply_batch(batch).unwrap();
    db.flush().unwrap();
    drop(windows);
    drop(db);
    std::fs::write(path.join("lipachat.lock"), b"").unwrap();
}

/// Every record the store holds is the one written, and the unreadable one is a typed
/// error naming its conversation.
async fn assert_every_record(store: &SledStore, n: u64) {
    for i in 0..n {
        match store.window(chat(i)).await {
            Ok(found) if i != CORRUPT => assert_eq!(found, Some(record(i)), "window {i}"),
            Err(StoreError::Corrupt { conversation, .. }) if i == CORRUPT => {
                assert_eq!(conversation, chat(i));
            }
            other => panic!("window {i}: {other:?}"),
        }
    }
    assert_eq!(store.count().await.unwrap(), n);
}

/// A copy of the files of the store at `path` (sled's recovery may write, so a store's
/// own directory is not opened raw while it may be in use or was killed). A snapshot the
/// killed process left part-written is left out, as the store's own open drops it (raw
/// sled would take it for the latest and refuse the copy as corrupt;
/// `tests/interrupted_snapshot.rs`).
fn copy_of(path: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(path).unwrap() {
        let entry = entry.unwrap();
        let part_written = entry.file_name().to_string_lossy().ends_with(".generating");
        if entry.file_type().unwrap().is_file() && !part_written {
            std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
        }
    }
    copy
}

/// The key lengths of the `windows` tree of a copy of `path`, with how many of each.
fn key_lengths(path: &Path) -> std::collections::BTreeMap<usize, usize> {
    let copy = copy_of(path);
    let db = sled::open(copy.path()).unwrap();
    let mut lengths = std::collections::BTreeMap::new();
    for key in db.open_tree("windows").unwrap().iter().keys() {
        *lengths.entry(key.unwrap().len()).or_insert(0) += 1;
    }
    lengths
}

#[tokio::test]
async fn an_old_layout_store_reads_whole_and_moves_to_the_compact_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let n = 500;
    old_layout_store(&path, n);
    {
        let store = SledStore::open(&path).unwrap();
        assert_eq!(store.skipped_keys(), 0);
        assert_every_record(&store, n).await;
        // Written after the move: under the new key only.
        store
            .record_inbound(
                chat(10),
                record(10).last_inbound + chrono::TimeDelta::hours(1),
            )
            .await
            .unwrap();
        assert!(store.forget(chat(11)).await.unwrap());
    }
    // Every key is in the new layout, every time that fits in 6 bytes, the schema bumped.
    let copy = copy_of(&path);
    {
        let db = sled::open(copy.path()).unwrap();
        let schema = db.get("schema_version").unwrap().unwrap();
        assert_eq!(schema.as_ref(), SCHEMA_VERSION.to_be_bytes());
        assert_eq!(SCHEMA_VERSION, 4);
        let windows = db.open_tree("windows").unwrap();
        assert_eq!(windows.len(), n as usize - 1);
        for i in (0..n).filter(|i| *i != 11) {
            let value = windows
                .get(SledStore::window_key(chat(i)))
                .unwrap()
                .unwrap_or_else(|| panic!("window {i} under its new key"));
            let expected = match i {
                CORRUPT => 3,
                2 => 8,
                _ if i.is_multiple_of(7) => 12,
                _ => 6,
            };
            assert_eq!(value.len(), expected, "window {i}'s value");
            assert!(
                windows.get(chat(i).to_key()).unwrap().is_none(),
                "old key {i} left"
            );
        }
    }
    // Reopened (a clean shutdown, checked against its seal): the same records.
    let store = SledStore::open(&path).unwrap();
    assert!(store.integrity().is_intact(), "{}", store.integrity());
    assert_eq!(
        store.window(chat(10)).await.unwrap(),
        Some(record(10).with_inbound(record(10).last_inbound + chrono::TimeDelta::hours(1)))
    );
    assert_eq!(store.window(chat(11)).await.unwrap(), None);
    assert_eq!(store.count().await.unwrap(), n - 1);
}

#[tokio::test]
async fn a_conversation_under_both_layouts_keys_reads_merged_and_keeps_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    old_layout_store(&path, 20);
    {
        // An older build wrote conversation 5 again under its old key after a newer one
        // had moved it (or a move was cut short): both keys hold a record. The handle
        // `old_layout_store` dropped may still hold sled's lock for a moment.
        let db = raw_sled::raw_sled(&path);
        let windows = db.open_tree("windows").unwrap();
        let later = record(5).with_inbound(record(5).last_inbound + chrono::TimeDelta::hours(2));
        let mut compact = later.last_inbound.timestamp_millis().to_be_bytes()[2..].to_vec();
        compact.extend_from_slice(&record(4).last_inbound.timestamp_millis().to_be_bytes()[2..]);
        windows
            .insert(SledStore::window_key(chat(5)), compact)
            .unwrap();
        db.flush().unwrap();
    }
    let store = SledStore::open(&path).unwrap();
    let merged = record(5).merged_with(
        record(5)
            .with_inbound(record(5).last_inbound + chrono::TimeDelta::hours(2))
            .with_gateway_closure(record(4).last_inbound),
    );
    assert_eq!(store.window(chat(5)).await.unwrap(), Some(merged));
    assert_eq!(store.count().await.unwrap(), 20);
    drop(store);
    assert_eq!(key_lengths(&path), [(13, 20)].into());
    let store = SledStore::open(&path).unwrap();
    assert_eq!(store.window(chat(5)).await.unwrap(), Some(merged));
}

/// The child: opens the store at [`DB_ENV`] (which moves its windows), says so, and waits
/// to be killed. Run only by the parent.
#[test]
#[ignore = "run as a child process by the SIGKILL test below"]
fn layout_child() {
    let Ok(path) = std::env::var(DB_ENV) else {
        return;
    };
    println!("opening");
    let _store = SledStore::open(path).unwrap();
    println!("opened");
    std::thread::sleep(Duration::from_secs(600));
}

#[tokio::test]
async fn sigkill_during_the_move_leaves_a_store_the_next_open_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let n = 60_000;
    old_layout_store(&path, n);
    let mut cut_part_way = false;
    // Killed sooner or later after it starts opening, until one kill lands in the move
    // (both key lengths on disk); each kill leaves every conversation under one key. The
    // kill's delay follows where the last one landed (later after a kill before the move
    // began, sooner after one that came when it was done), so it finds the move on a
    // loaded machine too, where the open before the move takes longer.
    let mut delay = Duration::from_millis(100);
    for round in 0..40u64 {
        let mut child = child_process::spawn_test_child("layout_child", DB_ENV, &path);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let started = lines
            .by_ref()
            .map(Result::unwrap)
            .any(|l| l.contains("opening"));
        assert!(started, "the child did not start");
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL on Unix: no destructor, no flush.
        child.wait().unwrap();
        let lengths = key_lengths(&path);
        assert_eq!(
            lengths.values().sum::<usize>(),
            n as usize,
            "round {round}: a window lost or doubled: {lengths:?}"
        );
        if lengths.len() == 2 {
            cut_part_way = true;
            break;
        }
        if lengths.keys().eq([&13]) {
            // Moved whole before the kill: start again from the old layout, and kill
            // sooner.
            std::fs::remove_dir_all(&path).unwrap();
            old_layout_store(&path, n);
            delay = delay.mul_f64(0.7);
        } else {
            // No key moved on disk yet (killed before the move began, or before its first
            // batch was written): kill later (at most ten seconds in).
            delay = delay.mul_f64(1.5).min(Duration::from_secs(10));
        }
    }
    assert!(cut_part_way, "no kill landed part-way through the move");
    let store = SledStore::open(&path).unwrap();
    assert_every_record(&store, n).await;
    drop(store);
    assert_eq!(key_lengths(&path), [(13, n as usize)].into());
}
