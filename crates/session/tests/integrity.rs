//! What a sled store opens, and what it notices: a directory that is not a store is left
//! untouched, an open that may not create creates nothing, and real damage to sled's files
//! (truncation, flipped bytes, after a clean or an unclean shutdown) is reported instead of
//! opening with fewer records.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::MessageId;
use lipachat_session::{
    Bsuid, Conversation, Customer, IdentityStore, Invitation, LastShutdown, MARKER_FILE, OpenMode,
    OutboxStore, PhoneNumber, QueuedMessage, RECOVERY_COPIES_KEPT, RECOVERY_DIR, SledConfig,
    SledStore, StoreError, StoredOutcome, WindowStore,
};
use uuid::Uuid;

mod reopen;

const CHILD_DB_ENV: &str = "LIPACHAT_INTEGRITY_TEST_DB";

fn chat(i: u64) -> Conversation {
    Conversation::new(
        PhoneNumber::from_u64(254_110_090_747).unwrap(),
        PhoneNumber::from_u64(254_700_000_000 + i).unwrap(),
    )
}

fn time(i: u64) -> DateTime<Utc> {
    "2026-11-23T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + TimeDelta::seconds(i as i64)
}

/// Every file under `dir` with its bytes, relative names as keys.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                files.insert(path.strip_prefix(dir).unwrap().to_owned(), bytes);
            }
        }
    }
    files
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_directory_that_is_not_a_store_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    // An unrelated 600 KB file that happens to be called like sled's log.
    let content: Vec<u8> = (0..600_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(foreign.join("db"), &content).unwrap();
    std::fs::write(foreign.join("notes.txt"), b"keep me").unwrap();
    let before = snapshot(&foreign);
    for mode in [OpenMode::Existing, OpenMode::CreateIfMissing] {
        match SledConfig::new(&foreign).mode(mode).open() {
            Err(error @ StoreError::NotAStore { .. }) => {
                let text = error.to_string();
                assert!(text.contains("is not a lipachat session store"), "{text}");
                assert!(text.contains("db (600000 bytes)"), "{text}");
                assert!(text.contains("nothing was changed"), "{text}");
            }
            other => panic!("{mode:?}: expected NotAStore, got {other:?}"),
        }
        assert_eq!(snapshot(&foreign), before, "{mode:?} changed the directory");
    }
    // A file where the directory should be.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    assert!(matches!(
        SledStore::open(&file),
        Err(StoreError::NotAStore { found, .. }) if found.contains("not a directory")
    ));
    assert_eq!(std::fs::read(&file).unwrap(), b"not a directory");
    // A marker that is not ours.
    let marked = dir.path().join("marked");
    std::fs::create_dir(&marked).unwrap();
    std::fs::write(marked.join(MARKER_FILE), b"something else\n").unwrap();
    assert!(matches!(
        SledStore::open(&marked),
        Err(StoreError::NotAStore { .. })
    ));
    assert_eq!(std::fs::read_dir(&marked).unwrap().count(), 1);
}

#[tokio::test]
async fn opening_an_existing_store_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    match SledStore::open_existing(&missing) {
        Err(error @ StoreError::NoStore { .. }) => {
            assert!(error.to_string().contains("no store at"), "{error}");
            assert!(error.to_string().contains("does not exist"), "{error}");
        }
        other => panic!("expected NoStore, got {other:?}"),
    }
    assert!(!missing.exists());
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    match SledStore::open_existing(&empty) {
        Err(error @ StoreError::NoStore { .. }) => {
            assert!(
                error.to_string().contains("the directory is empty"),
                "{error}"
            );
        }
        other => panic!("expected NoStore, got {other:?}"),
    }
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    // Creating is explicit, and the store then opens as existing.
    let store = SledStore::open(&empty).unwrap();
    assert!(empty.join(MARKER_FILE).is_file());
    store.record_inbound(chat(1), time(1)).await.unwrap();
    drop(store);
    let store = reopen::when_free(|| SledConfig::new(&empty).mode(OpenMode::Existing)).unwrap();
    assert_eq!(store.count().await.unwrap(), 1);
    assert_eq!(store.integrity().last_shutdown, LastShutdown::Clean);
    assert!(store.integrity().is_intact());
    // The seal sled handed back equals the file: only the windows tree was read.
    assert!(!store.integrity().full_scan);
}

/// What the previous version left at `path`: our lock file and sled's files, with the
/// schema version and window 7 in its binary layout, and no marker.
fn old_store(path: &Path) {
    let db = sled::open(path).unwrap();
    db.insert("schema_version", &1u32.to_be_bytes()).unwrap();
    let windows = db.open_tree("windows").unwrap();
    windows
        .insert(chat(7).to_key(), &time(7).timestamp_millis().to_be_bytes())
        .unwrap();
    db.flush().unwrap();
    std::fs::write(path.join("lipachat.lock"), b"").unwrap();
}

#[tokio::test]
async fn a_store_made_before_the_marker_opens_and_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old");
    old_store(&path);
    let store = reopen::when_free(|| SledConfig::new(&path).mode(OpenMode::Existing)).unwrap();
    assert_eq!(
        store.window(chat(7)).await.unwrap().unwrap().last_inbound,
        time(7)
    );
    let report = store.integrity().clone();
    assert_eq!(report.last_shutdown, LastShutdown::NoRecord);
    assert!(report.is_intact());
    // Its last shutdown is unknown, so its files were kept before sled recovered them.
    let backup = report.backup.expect("a copy before the first open");
    assert!(backup.join("db").is_file() && backup.join("conf").is_file());
    assert!(path.join(MARKER_FILE).is_file());
    store.record_inbound(chat(8), time(8)).await.unwrap();
    drop(store);
    let store = reopen::when_free(|| SledConfig::new(&path)).unwrap();
    assert_eq!(store.integrity().last_shutdown, LastShutdown::Clean);
    assert!(store.integrity().is_intact());
    assert_eq!(store.count().await.unwrap(), 2);
}

/// Gives conversation `i` a window, a queued message, an invitation and an outcome.
async fn fill(store: &SledStore, i: u64) {
    store.record_inbound(chat(i), time(i)).await.unwrap();
    store.enqueue(chat(i), queued(i, 1), 10).await.unwrap();
    let invitation = Invitation {
        message_id: MessageId::from_uuid(Uuid::from_u64_pair(i, 2)),
        sent_at: time(i),
    };
    store
        .set_invitation(chat(i), Some(invitation))
        .await
        .unwrap();
    store
        .put_outcome(
            chat(i),
            StoredOutcome::new(
                MessageId::from_uuid(Uuid::from_u64_pair(i, 3)),
                "{\"sent\":true}",
            ),
        )
        .await
        .unwrap();
}

fn queued(i: u64, tag: u64) -> QueuedMessage {
    QueuedMessage {
        message_id: MessageId::from_uuid(Uuid::from_u64_pair(i, tag)),
        queued_at: time(i),
        payload: "{\"type\":\"text\",\"text\":\"hello\"}".into(),
    }
}

/// Writes through every kind of write the store has, so that a write path that forgets
/// the tally shows up as damage at the next open.
#[tokio::test]
async fn every_write_keeps_the_integrity_record_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = SledStore::open(&path).unwrap();
    for i in 0..20 {
        fill(&store, i).await;
        store.record_inbound(chat(i), time(i + 100)).await.unwrap();
        store.enqueue(chat(i), queued(i, 4), 10).await.unwrap();
    }
    for i in 0..5 {
        store
            .record_gateway_closure(chat(i), time(i + 200))
            .await
            .unwrap();
        let old = queued(i, 1).message_id;
        store
            .reassign(
                chat(i),
                old,
                MessageId::from_uuid(Uuid::from_u64_pair(i, 99)),
            )
            .await
            .unwrap();
        store
            .dequeue(chat(i), queued(i, 4).message_id)
            .await
            .unwrap();
        store.set_invitation(chat(i), None).await.unwrap();
        store
            .put_outcome(
                chat(i),
                StoredOutcome::new(
                    MessageId::from_uuid(Uuid::from_u64_pair(i, 3)),
                    "{\"sent\":false}",
                ),
            )
            .await
            .unwrap();
    }
    // The outbox and its outcome in one transaction, both ways; outcomes that expire and
    // are swept away.
    for i in 5..9 {
        let message = queued(i, 7);
        let id = message.message_id;
        store
            .enqueue_with_outcome(
                chat(i),
                message,
                10,
                StoredOutcome::new(
                    MessageId::from_uuid(Uuid::from_u64_pair(i, 8)),
                    "{\"queued\":true}",
                ),
            )
            .await
            .unwrap();
        if i % 2 == 0 {
            store
                .dequeue_with_outcome(
                    chat(i),
                    id,
                    StoredOutcome::new(
                        MessageId::from_uuid(Uuid::from_u64_pair(i, 8)),
                        "{\"delivered\":true}",
                    ),
                )
                .await
                .unwrap();
        }
        store
            .put_outcome(
                chat(i),
                StoredOutcome::new(MessageId::from_uuid(Uuid::from_u64_pair(i, 9)), "{}")
                    .keep_for(chrono::TimeDelta::milliseconds(1)),
            )
            .await
            .unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(5));
    // Swept by the writes above or by this pass: either way through compare-and-swap.
    store.prune_outcomes().unwrap();
    for i in 10..13 {
        assert!(store.forget(chat(i)).await.unwrap());
    }
    // Identities: handles (one allocated twice), aliases (one replaced), and moves, of
    // a phone conversation onto a user's and of one phone conversation into another.
    let business = chat(0).business;
    let mut users = Vec::new();
    for j in 0..3 {
        let id: Bsuid = format!("US.{}", 1000 + j).parse().unwrap();
        users.push(store.user_ref(&id).await.unwrap());
        assert_eq!(store.user_ref(&id).await.unwrap(), users[j]);
    }
    store.group_ref(&"g1".parse().unwrap()).await.unwrap();
    let first: Bsuid = "US.1000".parse().unwrap();
    for phone in [chat(0).phone().unwrap(), chat(5).phone().unwrap()] {
        store.record_alias(business, &first, phone).await.unwrap();
    }
    store
        .record_alias(
            business,
            &"US.1001".parse().unwrap(),
            chat(6).phone().unwrap(),
        )
        .await
        .unwrap();
    let moved = store
        .move_customer(business, chat(1).customer, Customer::User(users[0]))
        .await
        .unwrap();
    assert!(moved.window && moved.queued == 1 && moved.outcomes == 1);
    let moved = store
        .move_customer(business, chat(2).customer, chat(3).customer)
        .await
        .unwrap();
    assert!(moved.window && moved.queued == 1 && moved.outcomes == 1);
    drop(store);
    let store = reopen::when_free(|| SledConfig::new(&path).full_check(true)).unwrap();
    let report = store.integrity();
    assert_eq!(report.last_shutdown, LastShutdown::Clean);
    assert!(report.full_scan);
    assert!(report.is_intact(), "{report}");
    let found: Vec<u64> = report.trees.iter().map(|t| t.found.entries).collect();
    // Windows: 17 conversations, two merged into one. Outbox: two per conversation, five
    // dequeued, two of the four queued with their outcome still there (moves keep the
    // count); outcomes: one each, plus those four (the expiring ones swept). Identities:
    // two entries per handle; aliases: two users. No consent records were written
    // (consent_records_are_in_the_integrity_tally writes them).
    assert_eq!(
        found,
        vec![
            17 - 1,
            17 * 2 - 5 + 2,
            17 - 5,
            17 + 4,
            3 * 2 + 2,
            2,
            0,
            0,
            0,
            0,
            0,
            0
        ]
    );
    assert!(report.trees.iter().all(|t| t.expected == Some(t.found)));
}

/// A store of `n` conversations, each [`fill`]ed, closed cleanly.
async fn filled_store(path: &Path, n: u64) {
    let store = SledStore::open(path).unwrap();
    for i in 0..n {
        fill(&store, i).await;
    }
}

/// How an open of a damaged copy ended.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    /// The integrity check reported the damage.
    Reported,
    /// sled itself refused the files.
    SledRefused,
    /// It opened, and every record is there as written.
    Whole,
}

/// Opens a damaged copy. Opening with fewer or changed records is the one failure.
async fn judge(path: &Path, n: u64, what: &str) -> Verdict {
    match reopen::when_free(|| SledConfig::new(path).mode(OpenMode::Existing)) {
        Err(StoreError::Damaged { report }) => {
            assert!(!report.is_intact());
            assert!(!report.problems().is_empty(), "{what}: {report}");
            // Reported again at the next open: nothing was overwritten.
            assert!(
                matches!(
                    reopen::when_free(|| SledConfig::new(path).mode(OpenMode::Existing)),
                    Err(StoreError::Damaged { .. })
                ),
                "{what}: the second open did not report the damage"
            );
            Verdict::Reported
        }
        Err(StoreError::Backend {
            backend: lipachat_session::SLED_BACKEND,
            ..
        }) => Verdict::SledRefused,
        Err(other) => panic!("{what}: unexpected error {other}"),
        Ok(store) => {
            let count = store.count().await.unwrap();
            assert_eq!(count, n, "{what}: opened with {count} of {n} windows");
            for i in 0..n {
                let record = store.window(chat(i)).await.unwrap();
                assert_eq!(
                    record.map(|r| r.last_inbound),
                    Some(time(i)),
                    "{what}: window {i}"
                );
                assert_eq!(
                    store.queued(chat(i)).await.unwrap().len(),
                    1,
                    "{what}: outbox {i}"
                );
            }
            assert_eq!(store.invitations().await.unwrap().len() as u64, n, "{what}");
            assert!(store.integrity().is_intact(), "{what}");
            Verdict::Whole
        }
    }
}

/// Damaged copies of `original`: sled's log truncated at several lengths, and one byte
/// flipped at offsets spread over it.
fn damaged_copies(original: &Path, into: &Path) -> Vec<(String, PathBuf)> {
    let log = std::fs::read(original.join("db")).unwrap();
    let mut copies = Vec::new();
    for tenth in 1..10 {
        let length = log.len() * tenth / 10;
        let copy = into.join(format!("truncated-{tenth}"));
        copy_dir(original, &copy);
        std::fs::write(copy.join("db"), &log[..length]).unwrap();
        copies.push((
            format!("log truncated to {length} of {} bytes", log.len()),
            copy,
        ));
    }
    for step in 0..20 {
        let offset = log.len() * step / 20 + 11;
        let copy = into.join(format!("flipped-{step}"));
        copy_dir(original, &copy);
        let mut bytes = log.clone();
        bytes[offset] ^= 0x5a;
        std::fs::write(copy.join("db"), &bytes).unwrap();
        copies.push((format!("byte {offset} of the log flipped"), copy));
    }
    // Without sled's snapshot (written at a clean shutdown) the log is replayed from the
    // start, and a damaged log then recovers to an earlier state.
    for permille in [0, 10, 20, 50, 200, 500] {
        let length = log.len() * permille / 1000;
        let copy = into.join(format!("no-snapshot-{permille}"));
        copy_dir(original, &copy);
        remove_snapshots(&copy);
        if permille > 0 {
            std::fs::write(copy.join("db"), &log[..length]).unwrap();
        }
        copies.push((
            format!(
                "snapshot removed, log cut to {length} of {} bytes",
                log.len()
            ),
            copy,
        ));
    }
    copies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_after_a_clean_shutdown_is_reported_not_opened_with_fewer_records() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original");
    let n = 300;
    filled_store(&original, n).await;
    // Let sled's threads of the dropped store let go before copying its files.
    drop(reopen::when_free(|| SledConfig::new(&original)).unwrap());
    let mut verdicts = BTreeMap::<Verdict, usize>::new();
    let copies = damaged_copies(&original, dir.path());
    let total = copies.len();
    for (what, copy) in copies {
        let verdict = judge(&copy, n, &what).await;
        eprintln!("{what}: {verdict:?}");
        *verdicts.entry(verdict).or_default() += 1;
    }
    eprintln!("verdicts over {total} damaged copies: {verdicts:?}");
    assert!(
        verdicts.get(&Verdict::Reported).copied().unwrap_or(0) > 0,
        "no damage was ever reported: {verdicts:?}"
    );
}

/// The child: opens a durable store, records forever, printing each acknowledged record.
#[test]
#[ignore = "run as a child process by damage_after_an_unclean_shutdown_is_reported"]
fn integrity_child() {
    let Ok(path) = std::env::var(CHILD_DB_ENV) else {
        return;
    };
    let store = SledStore::open(path).unwrap();
    for i in 0.. {
        store.record_inbound_blocking(chat(i), time(i)).unwrap();
        println!("ack {i}");
    }
}

/// Runs the child on `path` until it acknowledged `n` records, then kills it (SIGKILL).
fn record_then_kill(path: &Path, n: u64) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "integrity_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB_ENV, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut acknowledged = 0;
    for line in stdout.lines() {
        if line.unwrap().starts_with("ack ") {
            acknowledged += 1;
            if acknowledged == n {
                break;
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(acknowledged, n, "the child stopped early");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_after_an_unclean_shutdown_is_reported_and_the_files_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original");
    let n = 300;
    record_then_kill(&original, n);
    let mut verdicts = BTreeMap::<Verdict, usize>::new();
    let copies = damaged_copies(&original, dir.path());
    let total = copies.len();
    for (what, copy) in copies {
        let before = std::fs::read(copy.join("db")).unwrap();
        match reopen::when_free(|| SledConfig::new(&copy).mode(OpenMode::Existing)) {
            Err(StoreError::Damaged { report }) => {
                assert_eq!(report.last_shutdown, LastShutdown::Unclean, "{what}");
                let problems = report.problems().join("; ");
                assert!(
                    problems.contains("writes acknowledged as durable are missing"),
                    "{what}: {problems}"
                );
                // The log as it was before sled's recovery, for investigation.
                let backup = report.backup.as_ref().expect("a copy before recovery");
                assert!(backup.starts_with(copy.join(RECOVERY_DIR)), "{what}");
                assert_eq!(std::fs::read(backup.join("db")).unwrap(), before, "{what}");
                *verdicts.entry(Verdict::Reported).or_default() += 1;
            }
            Err(StoreError::Backend {
                backend: lipachat_session::SLED_BACKEND,
                ..
            }) => *verdicts.entry(Verdict::SledRefused).or_default() += 1,
            Err(other) => panic!("{what}: unexpected error {other}"),
            Ok(store) => {
                eprintln!("{what}: opened whole");
                // Everything acknowledged must be there (more may be: the child was
                // killed between a write and its acknowledgement).
                for i in 0..n {
                    assert!(
                        store.window(chat(i)).await.unwrap().is_some(),
                        "{what}: acknowledged record {i} lost, and the open said nothing"
                    );
                }
                *verdicts.entry(Verdict::Whole).or_default() += 1;
            }
        }
    }
    eprintln!("verdicts over {total} damaged copies: {verdicts:?}");
    assert!(
        verdicts.get(&Verdict::Reported).copied().unwrap_or(0) > 0,
        "no damage was ever reported: {verdicts:?}"
    );
    // The undamaged original opens after the crash, with every acknowledged record, and
    // its files were kept too.
    let store = reopen::when_free(|| SledConfig::new(&original)).unwrap();
    assert_eq!(store.integrity().last_shutdown, LastShutdown::Unclean);
    assert!(store.integrity().is_intact(), "{}", store.integrity());
    assert!(store.integrity().full_scan);
    assert!(store.integrity().backup.is_some());
    assert!(store.count().await.unwrap() >= n);
}

#[tokio::test]
async fn accepting_damage_makes_what_is_left_the_new_reference() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    filled_store(&path, 50).await;
    {
        // Remove entries behind the store's back.
        let db = loop {
            match sled::open(&path) {
                Ok(db) => break db,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        };
        let windows = db.open_tree("windows").unwrap();
        for i in 0..5 {
            windows.remove(SledStore::window_key(chat(i))).unwrap();
        }
        db.flush().unwrap();
    }
    match reopen::when_free(|| SledConfig::new(&path)) {
        Err(StoreError::Damaged { report }) => assert_eq!(
            report.problems(),
            vec!["windows: expected 50 entries, found 45 (5 missing), checksum differs"]
        ),
        other => panic!("expected Damaged, got {other:?}"),
    }
    let store = reopen::when_free(|| SledConfig::new(&path).accept_damage(true)).unwrap();
    assert!(!store.integrity().is_intact());
    assert_eq!(store.count().await.unwrap(), 45);
    drop(store);
    let store = reopen::when_free(|| SledConfig::new(&path)).unwrap();
    assert!(store.integrity().is_intact());
}

#[tokio::test]
async fn copies_kept_before_recovery_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = SledStore::open(&path).unwrap();
    // While a store is open its integrity record says so; put that record back after a
    // clean close and the next open sees an unclean shutdown.
    let open_record = std::fs::read(path.join("lipachat.integrity")).unwrap();
    store.record_inbound(chat(1), time(1)).await.unwrap();
    drop(store);
    for round in 1..=RECOVERY_COPIES_KEPT + 2 {
        std::fs::write(path.join("lipachat.integrity"), &open_record).unwrap();
        let store = reopen::when_free(|| SledConfig::new(&path)).unwrap();
        assert_eq!(store.integrity().last_shutdown, LastShutdown::Unclean);
        assert!(store.integrity().is_intact(), "{}", store.integrity());
        // A write, so the next copy differs (one the same as the newest is not made).
        store
            .record_inbound(chat(round as u64 + 1), time(round as u64 + 1))
            .await
            .unwrap();
        drop(store);
        let copies = std::fs::read_dir(path.join(RECOVERY_DIR)).unwrap().count();
        assert_eq!(copies, round.min(RECOVERY_COPIES_KEPT), "round {round}");
        // Copies are named by time to the microsecond; keep them apart.
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Removes sled's snapshot files from a store directory.
fn remove_snapshots(path: &Path) {
    for entry in std::fs::read_dir(path).unwrap() {
        let entry = entry.unwrap().path();
        if entry
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("snap.")
        {
            std::fs::remove_file(entry).unwrap();
        }
    }
}

// Found under attack: the integrity files lost together with damage to sled's log, an old
// store whose first open failed after its files were copied, and damage after a clean
// shutdown.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_integrity_files_does_not_hide_a_cut_log() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original");
    let n = 300;
    filled_store(&original, n).await;
    // Let sled's threads of the dropped store let go before copying its files.
    drop(reopen::when_free(|| SledConfig::new(&original)).unwrap());
    let log = std::fs::read(original.join("db")).unwrap();
    let used = log.iter().rposition(|b| *b != 0).unwrap() + 1;
    for (variant, damage_files) in [
        ("deleted", None),
        ("overwritten with garbage", Some(b"garbage\n".as_slice())),
    ] {
        for half in [2, 4] {
            let copy = dir
                .path()
                .join(format!("{variant}-{half}").replace(' ', "-"));
            copy_dir(&original, &copy);
            for file in ["lipachat.integrity", "lipachat.durable"] {
                match damage_files {
                    None => std::fs::remove_file(copy.join(file)).unwrap(),
                    Some(bytes) => std::fs::write(copy.join(file), bytes).unwrap(),
                }
            }
            remove_snapshots(&copy);
            std::fs::write(copy.join("db"), &log[..used / half]).unwrap();
            let what = format!(
                "integrity files {variant}, snapshot removed, log cut to {} bytes",
                used / half
            );
            // Reported, refused by sled, or whole: never fewer records.
            judge(&copy, n, &what).await;
        }
    }
}

#[tokio::test]
async fn a_store_that_lost_its_integrity_files_but_is_whole_opens_once_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    filled_store(&path, 20).await;
    std::fs::remove_file(path.join("lipachat.integrity")).unwrap();
    std::fs::remove_file(path.join("lipachat.durable")).unwrap();
    // What it must hold is unknown: reported, then accepted as found.
    let refused = reopen::when_free(|| SledConfig::new(&path));
    assert!(
        matches!(&refused, Err(StoreError::Damaged { report }) if report.problems().iter().any(|p| p.contains("lipachat.integrity"))),
        "{refused:?}"
    );
    let store = reopen::when_free(|| SledConfig::new(&path).accept_damage(true)).unwrap();
    assert_eq!(store.count().await.unwrap(), 20);
    assert_eq!(store.invitations().await.unwrap().len(), 20);
    drop(store);
    let store = reopen::when_free(|| SledConfig::new(&path)).unwrap();
    assert!(store.integrity().is_intact());
}

#[tokio::test]
async fn a_new_store_that_crashed_before_its_first_record_still_opens() {
    // The marker is written first when a store is created: a crash before the integrity
    // record leaves a marked store with nothing in it, which is not damage.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    drop(SledStore::open(&path).unwrap());
    drop(reopen::when_free(|| SledConfig::new(&path)).unwrap());
    std::fs::remove_file(path.join("lipachat.integrity")).unwrap();
    std::fs::remove_file(path.join("lipachat.durable")).unwrap();
    let store = reopen::when_free(|| SledConfig::new(&path)).unwrap();
    assert!(store.integrity().is_intact());
}

#[tokio::test]
async fn an_old_store_whose_first_open_failed_after_the_copy_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old");
    old_store(&path);
    // Let sled's threads of the handle above let go of the log.
    std::thread::sleep(std::time::Duration::from_millis(200));
    // Another process holds sled's lock on its log (an earlier version still running):
    // the first open copies the files to recovery/, then fails.
    let log = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path.join("db"))
        .unwrap();
    log.try_lock().unwrap();
    let first = SledConfig::new(&path).mode(OpenMode::Existing).open();
    assert!(matches!(first, Err(StoreError::InUse { .. })), "{first:?}");
    assert!(path.join(RECOVERY_DIR).is_dir(), "the copy before recovery");
    log.unlock().unwrap();
    drop(log);
    // Once that process is gone, the store opens: the copy is ours, not a foreign file.
    let store = reopen::when_free(|| SledConfig::new(&path).mode(OpenMode::Existing)).unwrap();
    assert_eq!(
        store.window(chat(7)).await.unwrap().unwrap().last_inbound,
        time(7)
    );
}

/// The copy after a clean shutdown is made only when sled's files changed since: a store
/// closed and opened again and again keeps no copies, and a restore of older files that
/// keeps their modification times (as `cp -p` and `rsync -t` do) is copied before sled
/// opens it.
#[tokio::test]
async fn a_clean_store_is_copied_only_when_its_files_changed_since() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    filled_store(&path, 50).await;
    for _ in 0..3 {
        let store = reopen::when_free(|| SledConfig::new(&path).mode(OpenMode::Existing)).unwrap();
        assert_eq!(store.integrity().backup, None, "{}", store.integrity());
        fill(&store, 60).await;
    }
    assert!(
        !path.join(RECOVERY_DIR).exists(),
        "no copy of a clean store"
    );
    // Put back an older log with the modification time it has now.
    let log = path.join("db");
    let modified = std::fs::metadata(&log).unwrap().modified().unwrap();
    let older = std::fs::read(&log).unwrap();
    drop(reopen::when_free(|| SledConfig::new(&path)).unwrap());
    let store = reopen::when_free(|| SledConfig::new(&path)).unwrap();
    fill(&store, 61).await;
    drop(store);
    std::fs::write(&log, &older).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&log)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    let restored = reopen::when_free(|| SledConfig::new(&path).mode(OpenMode::Existing))
        .map(|store| store.integrity().backup.clone());
    let copies: Vec<_> = std::fs::read_dir(path.join(RECOVERY_DIR))
        .unwrap()
        .map(|copy| copy.unwrap().path())
        .collect();
    assert_eq!(copies.len(), 1, "{restored:?}");
    assert_eq!(std::fs::read(copies[0].join("db")).unwrap(), older);
}

#[tokio::test]
async fn damage_after_a_clean_shutdown_keeps_the_damaged_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    filled_store(&path, 300).await;
    drop(reopen::when_free(|| SledConfig::new(&path)).unwrap());
    let mut log = std::fs::read(path.join("db")).unwrap();
    let used = log.iter().rposition(|b| *b != 0).unwrap() + 1;
    log[used / 2] ^= 0xff;
    std::fs::write(path.join("db"), &log).unwrap();
    let opened = reopen::when_free(|| SledConfig::new(&path).mode(OpenMode::Existing));
    assert!(
        opened.is_err(),
        "a flipped byte mid-log must not open as whole"
    );
    drop(opened);
    let now = std::fs::read(path.join("db")).unwrap();
    let kept = now == log
        || std::fs::read_dir(path.join(RECOVERY_DIR))
            .into_iter()
            .flatten()
            .any(|copy| std::fs::read(copy.unwrap().path().join("db")).ok() == Some(log.clone()));
    assert!(
        kept,
        "the damaged log was rewritten by the refused open and no copy of it was kept"
    );
}

/// The consent records (opt-outs, the customers' back-offs, free entry point windows,
/// costs, the messaging limit count) are tallied like the window trees: every consent write keeps
/// the record exact, and one removed behind the store's back is reported as damage.
#[tokio::test]
async fn consent_records_are_in_the_integrity_tally() {
    use lipachat_session::{ConsentStore, PredictedCost, PricingCategory, ReportedPricing};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = SledStore::open(&path).unwrap();
    let day = TimeDelta::hours(24);
    for i in 0..6 {
        store.record_opt_out(chat(i), true, time(i)).await.unwrap();
        store
            .record_opt_out(chat(i), false, time(i + 1))
            .await
            .unwrap();
        store.extend_back_off(chat(i), time(i) + day).await.unwrap();
        store.record_referral(chat(i), time(i)).await.unwrap();
        store
            .record_business_reply(chat(i), time(i + 1), time(i + 1) + day * 3, day)
            .await
            .unwrap();
        store
            .confirm_free_entry_point(chat(i), time(i + 1) + day * 2, time(i + 1))
            .await
            .unwrap();
        let message_id = MessageId::from_uuid(Uuid::from_u64_pair(i, 5));
        store
            .record_predicted_cost(PredictedCost {
                conversation: chat(i),
                message_id,
                wa_id: None,
                sent_at: time(i),
                category: PricingCategory::Marketing,
                free: false,
            })
            .await
            .unwrap();
        store
            .record_reported_pricing(
                chat(i).business,
                message_id,
                ReportedPricing {
                    category: "marketing".into(),
                    pricing_type: Some("regular".into()),
                    billable: Some(true),
                    reported_at: time(i + 2),
                },
            )
            .await
            .unwrap();
        store
            .reach_customer("acme", 254_700_000_000 + i, time(i), 100, day)
            .await
            .unwrap();
    }
    // Pruned from the count a day later; moved with a customer.
    store
        .reach_customer("acme", 254_700_000_099, time(0) + day * 2, 100, day)
        .await
        .unwrap();
    let business = chat(0).business;
    store
        .move_customer(business, chat(0).customer, chat(1).customer)
        .await
        .unwrap();
    store
        .move_customer(business, chat(2).customer, chat(40).customer)
        .await
        .unwrap();
    drop(store);

    let store = reopen::when_free(|| SledConfig::new(&path).full_check(true)).unwrap();
    assert!(store.integrity().is_intact(), "{}", store.integrity());
    let tallied = |name: &str| {
        store
            .integrity()
            .trees
            .iter()
            .find(|t| t.tree == name)
            .unwrap_or_else(|| panic!("the integrity report has no {name} tree"))
            .clone()
    };
    for (name, entries) in [
        ("consent", 5),
        ("free_entry_point", 5),
        // The six predicted costs, recorded within a moment, are one batch entry.
        ("predicted_costs", 1),
        ("reported_pricing", 6),
        // The one customer left in the count, and the portfolio's clock mark.
        ("reached", 2),
        // One per customer limited, and the one a move carried to customer 40 (the
        // customers moved from keep theirs).
        ("back_off", 7),
    ] {
        let tree = tallied(name);
        assert_eq!(tree.found.entries, entries, "{name}");
        assert_eq!(tree.expected, Some(tree.found), "{name}");
    }
    drop(store);
    {
        // Remove an opt-out record behind the store's back.
        let db = loop {
            match sled::open(&path) {
                Ok(db) => break db,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        };
        let consent = db.open_tree("consent").unwrap();
        assert!(consent.remove(chat(3).to_key()).unwrap().is_some());
        let back_off = db.open_tree("back_off").unwrap();
        assert!(
            back_off
                .remove(chat(4).customer.key().to_be_bytes())
                .unwrap()
                .is_some()
        );
        db.flush().unwrap();
    }
    // The seal still matches (the removal came after it), so only a full check reads
    // the consent tree.
    match reopen::when_free(|| SledConfig::new(&path).full_check(true)) {
        Err(StoreError::Damaged { report }) => assert_eq!(
            report.problems(),
            vec![
                "consent: expected 5 entries, found 4 (1 missing), checksum differs",
                "back_off: expected 7 entries, found 6 (1 missing), checksum differs"
            ]
        ),
        other => panic!("expected Damaged, got {other:?}"),
    }
}
