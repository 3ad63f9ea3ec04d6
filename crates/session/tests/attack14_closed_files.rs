//! attack14: the record of sled's files a clean close leaves (`lipachat.closed`), and the
//! copy the next open makes unless every file is as recorded.
//!
//! Written as holes on 551127a; three pass since: the record ends with its line count (a
//! torn record), records a symlinked file as its target, and a copy identical to the
//! newest one is not made again (refused opens in a loop pruned the first copy). The
//! shared-mapping one is a documented limit.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::{
    Conversation, MessageId, OpenMode, OutboxStore, PhoneNumber, QueuedMessage, RECOVERY_DIR,
    SledConfig, SledStore, WindowStore,
};
use uuid::Uuid;

mod reopen;

fn chat(i: u64) -> Conversation {
    Conversation::new(
        PhoneNumber::from_u64(254_110_090_747).unwrap(),
        PhoneNumber::from_u64(254_700_000_000 + i).unwrap(),
    )
}

fn time(i: u64) -> DateTime<Utc> {
    "2026-11-23T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + TimeDelta::seconds(i as i64)
}

async fn fill(store: &SledStore, i: u64) {
    store.record_inbound(chat(i), time(i)).await.unwrap();
    let queued = QueuedMessage {
        message_id: MessageId::from_uuid(Uuid::from_u64_pair(i, 1)),
        queued_at: time(i),
        payload: "{\"type\":\"text\",\"text\":\"hello\"}".into(),
    };
    store.enqueue(chat(i), queued, 10).await.unwrap();
}

/// The `db` of every copy made before recovery.
fn copied_logs(path: &Path) -> Vec<Vec<u8>> {
    std::fs::read_dir(path.join(RECOVERY_DIR))
        .into_iter()
        .flatten()
        .filter_map(|copy| std::fs::read(copy.unwrap().path().join("db")).ok())
        .collect()
}

/// Where a flipped byte lands: the middle of the part of the log in use.
fn middle_of_log(log: &[u8]) -> usize {
    let used = log.iter().rposition(|b| *b != 0).unwrap() + 1;
    used / 2
}

/// Another program (here Python) that maps sled's log shared and writable, keeps the page
/// holding `target` dirty by writing its own bytes back into it until it reads a line,
/// then flips the byte at `target`, says "flipped" and exits.
const MAPPER: &str = r#"
import mmap, os, sys, threading
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
target = int(sys.argv[2])
page = target - target % 4096
go = threading.Event()
def keep():
    while not go.is_set():
        m[page] = m[page]
threading.Thread(target=keep, daemon=True).start()
print("mapped", flush=True)
sys.stdin.readline()
m[target] = m[target] ^ 0xff
go.set()
print("flipped", flush=True)
"#;

/// A program that mapped sled's log (shared, writable) while the store was open and keeps
/// a page of it dirty (a debugger, a backup or indexing agent, a tool of the operator's;
/// it writes back the bytes it reads, so nothing changes) changes a byte of that page after
/// the clean close. The write goes through the file system (the page cache; the kernel
/// writes it back to the file), yet a write to a page already mapped writable and dirty
/// takes no fault, so the kernel updates neither the modification nor the change time:
/// the length, times and inode stay as recorded, the next open makes no copy, and sled's
/// recovery meets the damaged log unguarded.
#[tokio::test]
#[ignore = "limit, documented in closed_files.rs and docs/store.md: a byte changed through a shared \
            writable mapping made before the clean close, to a page already dirty, changes no \
            time, so the record matches and no copy is made; needs python3"]
async fn a_byte_changed_through_a_mapping_kept_from_before_the_close_is_copied() {
    // Whether the mapper's page fault after sled's last sync comes before the record is
    // taken is a race it wins most of the time: three stores.
    for _ in 0..3 {
        changed_through_a_mapping().await;
    }
}

async fn changed_through_a_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let store = SledStore::open(&path).unwrap();
    for i in 0..300 {
        fill(&store, i).await;
    }
    drop(store);
    let store = reopen::when_free(|| SledConfig::new(&path)).unwrap();
    assert_eq!(
        store.integrity().backup,
        None,
        "a clean store is not copied"
    );
    let target = middle_of_log(&std::fs::read(path.join("db")).unwrap());
    let mut mapper = Command::new("python3")
        .args(["-c", MAPPER])
        .arg(path.join("db"))
        .arg(target.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = BufReader::new(mapper.stdout.take().unwrap());
    let mut line = String::new();
    said.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "mapped");
    std::thread::sleep(std::time::Duration::from_millis(50));
    // A clean close: sled syncs its log and lets go, the record is taken.
    drop(store);
    assert!(
        path.join("lipachat.closed").is_file(),
        "the close was recorded"
    );
    let before = std::fs::read(path.join("db")).unwrap();
    // Closed: the byte changes through the mapping.
    writeln!(mapper.stdin.as_mut().unwrap(), "flip").unwrap();
    line.clear();
    said.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "flipped");
    assert!(mapper.wait().unwrap().success());
    let damaged = std::fs::read(path.join("db")).unwrap();
    assert_ne!(damaged, before, "the byte changed in the file");

    let opened = reopen::when_free(|| SledConfig::new(&path).mode(OpenMode::Existing));
    let backup = opened
        .as_ref()
        .map(|store| store.integrity().backup.clone())
        .map_err(ToString::to_string);
    drop(opened);
    let kept = std::fs::read(path.join("db")).unwrap() == damaged;
    assert!(
        copied_logs(&path).contains(&damaged),
        "the log changed while the store was closed and no copy of it was kept (open: \
         {backup:?}; the damaged log still as it was: {kept})"
    );
}

/// A store whose log was moved to another disk and linked back (`db` a symbolic link, which
/// sled, the lock and the copy all follow): the record describes the link, not the log, so
/// a byte flipped in the log while the store is closed (a rewrite in place that changes its
/// modification and change times) is not seen, and the next open copies nothing.
#[tokio::test]
async fn a_changed_log_behind_a_symbolic_link_is_copied() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let store = SledStore::open(&path).unwrap();
    for i in 0..300 {
        fill(&store, i).await;
    }
    drop(store);
    let elsewhere = dir.path().join("other-disk");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::rename(path.join("db"), elsewhere.join("db")).unwrap();
    std::os::unix::fs::symlink(elsewhere.join("db"), path.join("db")).unwrap();
    // The move is a change: copied once. Then closed cleanly again, with the link in place.
    let store = reopen::when_free(|| SledConfig::new(&path).mode(OpenMode::Existing)).unwrap();
    fill(&store, 300).await;
    drop(store);
    assert!(
        path.join("lipachat.closed").is_file(),
        "the close was recorded"
    );
    let copies_before = copied_logs(&path).len();

    let mut log = std::fs::read(elsewhere.join("db")).unwrap();
    let target = middle_of_log(&log);
    log[target] ^= 0xff;
    std::fs::write(elsewhere.join("db"), &log).unwrap();

    let opened = reopen::when_free(|| SledConfig::new(&path).mode(OpenMode::Existing));
    let backup = opened
        .as_ref()
        .map(|store| store.integrity().backup.clone())
        .map_err(ToString::to_string);
    drop(opened);
    let kept = std::fs::read(elsewhere.join("db")).unwrap() == log;
    let copies = copied_logs(&path);
    assert!(
        copies.len() > copies_before && copies.contains(&log),
        "the log changed while the store was closed and no copy of it was kept (open: \
         {backup:?}; the damaged log still as it was: {kept})"
    );
}

/// The record has no end mark: one cut at the end of a line (a torn write) lists fewer
/// files, and reads as a record of a store without them. The snapshot's line sorts last,
/// so a record that lost it matches the store once the snapshot is deleted.
#[tokio::test]
async fn a_record_torn_at_a_line_end_never_skips_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let store = SledStore::open(&path).unwrap();
    for i in 0..300 {
        fill(&store, i).await;
    }
    drop(store);
    let store = reopen::when_free(|| SledConfig::new(&path)).unwrap();
    drop(store);
    let record = std::fs::read_to_string(path.join("lipachat.closed")).unwrap();
    // The snapshot's line is the last file's (a count follows it since the fix).
    let line = record
        .lines()
        .find(|line| line.starts_with("snap."))
        .unwrap_or_else(|| panic!("{record}"));
    let snapshot = line.split(' ').next().unwrap();
    // Torn after the line before the snapshot's; and the snapshot is deleted.
    let cut = record.find(line).unwrap();
    std::fs::write(path.join("lipachat.closed"), &record[..cut]).unwrap();
    std::fs::remove_file(path.join(snapshot)).unwrap();

    let opened = reopen::when_free(|| SledConfig::new(&path).mode(OpenMode::Existing));
    let backup = opened
        .as_ref()
        .map(|store| store.integrity().backup.clone())
        .map_err(ToString::to_string);
    drop(opened);
    assert!(
        path.join(RECOVERY_DIR).is_dir(),
        "a torn record and a deleted snapshot, and no copy (open: {backup:?})"
    );
}

/// The copy that holds the damaged log is the first one; each later open that is refused
/// (sled's recovery rewrote the log, the integrity file still says clean, the record no
/// longer matches) makes another copy, and the oldest beyond `RECOVERY_COPIES_KEPT` are
/// removed. A service restarting in a loop on a store damaged while closed (four starts
/// take well under a second) thus removes the only copy of the damaged bytes.
#[tokio::test]
async fn refused_opens_in_a_loop_keep_the_copy_of_the_damaged_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let store = SledStore::open(&path).unwrap();
    for i in 0..300 {
        fill(&store, i).await;
    }
    drop(store);
    drop(reopen::when_free(|| SledConfig::new(&path)).unwrap());
    let mut log = std::fs::read(path.join("db")).unwrap();
    let target = middle_of_log(&log);
    log[target] ^= 0xff;
    std::fs::write(path.join("db"), &log).unwrap();
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        let opened = reopen::when_free(|| SledConfig::new(&path).mode(OpenMode::Existing));
        outcomes.push(opened.as_ref().err().map(ToString::to_string));
        drop(opened);
        // Copies are named by the time to the microsecond.
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let copies = copied_logs(&path);
    assert!(
        copies.contains(&log),
        "{} copies, none of the damaged log; the opens: {outcomes:?}",
        copies.len()
    );
}
