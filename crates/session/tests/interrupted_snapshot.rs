//! A process stopped while sled writes a snapshot leaves part of one, named
//! `snap.<position>.generating`. sled 0.34 takes it for the latest snapshot at the next
//! open and reports the whole store corrupt; the store's open removes it first (after the
//! copy before recovery, which keeps it), and every record is there.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::{Conversation, SledConfig, SledStore, WindowStore};

mod reopen;

fn chat(i: u64) -> Conversation {
    Conversation::parse("254110090747", &(254_700_000_000 + i).to_string()).unwrap()
}

fn at(i: u64) -> DateTime<Utc> {
    "2026-11-23T10:00:00Z".parse::<DateTime<Utc>>().unwrap() + TimeDelta::seconds(i as i64)
}

/// The snapshot files sled left in `path`, sorted by name (sled takes the last).
fn snapshots(path: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("snap."))
        })
        .collect();
    found.sort();
    found
}

/// Leaves in `path` what a process stopped while sled wrote a snapshot leaves: the first
/// half of a snapshot, under the name sled writes it to, at a later log position than
/// the complete one.
fn leave_a_part_written_snapshot(path: &Path) -> PathBuf {
    let complete = snapshots(path).pop();
    let bytes = match &complete {
        Some(file) => {
            let whole = std::fs::read(file).unwrap();
            whole[..whole.len() / 2].to_vec()
        }
        None => vec![0x5a; 64],
    };
    let position = complete
        .and_then(|file| {
            let name = file.file_name()?.to_string_lossy().into_owned();
            u64::from_str_radix(name.strip_prefix("snap.")?, 16).ok()
        })
        .unwrap_or(0);
    let part = path.join(format!("snap.{:016X}.generating", position + 4096));
    std::fs::write(&part, bytes).unwrap();
    part
}

async fn store_with_records(path: &Path, n: u64) {
    let store = SledStore::open(path).unwrap();
    for i in 0..n {
        store.record_inbound(chat(i), at(i)).await.unwrap();
    }
    store.flush().await.unwrap();
}

#[tokio::test]
async fn sled_alone_refuses_a_store_with_a_part_written_snapshot() {
    // What the store's open guards against: sled itself takes the part for the latest
    // snapshot. If a later sled stops doing so, this test says the guard can go.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = sled::open(&path).unwrap();
        for i in 0..2_000u64 {
            db.insert(i.to_be_bytes(), &i.to_be_bytes()).unwrap();
        }
        db.flush().unwrap();
    }
    leave_a_part_written_snapshot(&path);
    let opened = sled::open(&path);
    assert!(
        matches!(opened, Err(sled::Error::Corruption { .. })),
        "sled opened a store with a part-written snapshot: {:?}",
        opened.map(|_| ())
    );
}

#[tokio::test]
async fn a_part_written_snapshot_is_dropped_and_every_record_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let n = 2_000;
    store_with_records(&path, n).await;
    let part = leave_a_part_written_snapshot(&path);
    let part_bytes = std::fs::read(&part).unwrap();

    let store = SledStore::open(&path).unwrap();
    for i in 0..n {
        let record = store.window(chat(i)).await.unwrap();
        assert_eq!(record.map(|r| r.last_inbound), Some(at(i)), "window {i}");
    }
    assert_eq!(store.count().await.unwrap(), n);
    assert!(!part.exists(), "the part-written snapshot is still there");

    // The copy before recovery kept it, byte for byte.
    let name = part.file_name().unwrap();
    let kept: Vec<PathBuf> = std::fs::read_dir(path.join("recovery"))
        .unwrap()
        .map(|e| e.unwrap().path().join(name))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(kept.len(), 1, "copies holding the part: {kept:?}");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), part_bytes);

    // Writes go on, and survive a reopen.
    store.record_inbound(chat(n), at(n)).await.unwrap();
    drop(store);
    let store = reopen::when_free(|| SledConfig::new(&path)).unwrap();
    assert_eq!(store.count().await.unwrap(), n + 1);
}
