//! The tool never destroys what it did not make, never creates a store by reading, and
//! never answers from a damaged store as if nothing were wrong.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use std::path::Path;

use chrono::{DateTime, TimeDelta, Utc};
use common::{BUSINESS, CUSTOMER, Cli};
use lipachat_session::{Conversation, PhoneNumber, SledStore, WindowStore};

/// Every command that only reads, with its arguments.
const READERS: [&[&str]; 8] = [
    &["status", BUSINESS, CUSTOMER],
    &["list"],
    &["pending"],
    &["forget", BUSINESS, CUSTOMER],
    &["export"],
    &["deliver", BUSINESS, CUSTOMER],
    &["verify"],
    &[
        "send-contact",
        BUSINESS,
        CUSTOMER,
        "--name",
        "Desk",
        "--phone",
        CUSTOMER,
        "--dry-run",
    ],
];

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let bytes = std::fs::read(entry.path()).unwrap_or_default();
            (entry.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    found.sort();
    found
}

#[test]
fn a_directory_of_other_files_is_refused_and_left_as_it_was() {
    let cli = Cli::new();
    let db = cli.db();
    std::fs::create_dir(&db).unwrap();
    let content: Vec<u8> = (0..600_000u32).map(|i| (i * 13 % 253) as u8).collect();
    std::fs::write(db.join("db"), &content).unwrap();
    let before = files(&db);
    for args in READERS
        .iter()
        .copied()
        .chain([&["record", BUSINESS, CUSTOMER][..], &["import"]])
    {
        cli.run_with_stdin(args, "")
            .expect_error(&["is not a lipachat session store", "db (600000 bytes)"]);
        assert_eq!(files(&db), before, "{args:?} changed the directory");
    }
}

#[test]
fn reading_commands_create_nothing_in_an_empty_directory() {
    let cli = Cli::new();
    let db = cli.db();
    std::fs::create_dir(&db).unwrap();
    for args in READERS {
        cli.run(args)
            .expect_error(&["no store at", "sessions.db", "the directory is empty"]);
        assert_eq!(files(&db), vec![], "{args:?} created something");
    }
    std::fs::remove_dir(&db).unwrap();
    for args in READERS {
        cli.run(args)
            .expect_error(&["no store at", "sessions.db", "does not exist"]);
        assert!(!db.exists(), "{args:?} created the store");
    }
    // A write creates it, in the empty directory too.
    std::fs::create_dir(&db).unwrap();
    cli.run(&["record", BUSINESS, CUSTOMER]).expect(0);
    cli.run(&["status", BUSINESS, CUSTOMER]).expect(0);
}

fn time(i: u64) -> DateTime<Utc> {
    Utc::now() - TimeDelta::hours(1) + TimeDelta::milliseconds(i as i64)
}

/// A store of `n` windows, made in this process and closed cleanly.
async fn store_of(path: &Path, n: u64) {
    let store = SledStore::open(path).unwrap();
    let business = PhoneNumber::parse(BUSINESS).unwrap();
    for i in 0..n {
        let customer = PhoneNumber::from_u64(254_700_000_000 + i).unwrap();
        store
            .record_inbound(Conversation::new(business, customer), time(i))
            .await
            .unwrap();
    }
}

/// Writes `from`'s files to `to` (which may be `from`) without sled's snapshot and with
/// its log cut to `permille` thousandths of its length.
fn damage(from: &Path, to: &Path, permille: usize) {
    let log = std::fs::read(from.join("db")).unwrap();
    if from != to {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
    }
    for entry in std::fs::read_dir(to).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("snap.")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    std::fs::write(to.join("db"), &log[..log.len() * permille / 1000]).unwrap();
}

#[tokio::test]
async fn a_damaged_store_is_reported_by_verify_and_refused_by_export() {
    let cli = Cli::new();
    store_of(&cli.db(), 300).await;
    let intact = cli.run_once_released(&["verify"]).expect(0);
    assert!(
        intact.stdout.contains("windows: 300 entries, checksum")
            && intact.stdout.ends_with("intact\n"),
        "{intact:#?}"
    );
    let exported = cli.run(&["export"]).expect(0);
    assert_eq!(exported.json_lines().len(), 301, "a header and 300 windows");
    // Damage: sled's snapshot removed and its log cut short, the way a copy can be
    // damaged. Of a few cuts, take one after which sled alone opens with fewer windows
    // (it replays what is left without a word).
    let db = cli.db();
    let scratch = tempfile::tempdir().unwrap();
    let cut = [5, 10, 20, 30, 50, 100, 200, 400, 600, 800]
        .into_iter()
        .find(|permille| {
            let copy = scratch.path().join(permille.to_string());
            damage(&db, &copy, *permille);
            sled::open(&copy)
                .and_then(|raw| raw.open_tree("windows"))
                .is_ok_and(|windows| windows.len() < 300)
        })
        .expect("some cut of the log loses windows silently in sled");
    damage(&db, &db, cut);
    let run = cli.run(&["verify"]).expect(2);
    assert!(
        run.stdout.contains("windows: expected 300 entries"),
        "{run:#?}"
    );
    assert!(
        run.stdout
            .contains("damaged: windows: expected 300 entries, found "),
        "{run:#?}"
    );
    run.expect_error_line(&["is damaged", "missing"]);
    let json = cli.run(&["verify", "--json"]).expect(2);
    let report = &json.json_lines()[0];
    assert_eq!(report["intact"], false);
    assert_eq!(report["trees"][0]["tree"], "windows");
    assert_eq!(report["trees"][0]["expected"]["entries"], 300);
    assert!(report["trees"][0]["found"]["entries"].as_u64().unwrap() < 300);
    // No command answers from it as if it were whole.
    cli.run(&["export"])
        .expect_error(&["is damaged", "missing"]);
    cli.run(&["list"]).expect_error(&["is damaged"]);
    cli.run(&["status", BUSINESS, CUSTOMER])
        .expect_error(&["is damaged"]);
    // Accepted, what is left can be read and exported again.
    let accepted = cli.run(&["verify", "--accept"]).expect(0);
    assert!(accepted.stdout.contains("accepted"), "{accepted:#?}");
    cli.run(&["verify"]).expect(0);
    let left = cli.run(&["export"]).expect(0).json_lines().len() - 1;
    assert!(left < 300, "{left} windows left");
}

#[test]
fn verify_refuses_a_redis_store() {
    let cli = Cli::new();
    cli.run_raw(&["verify", "--store", "redis://127.0.0.1:1/0"], None)
        .expect_error(&["verify checks a sled store"]);
}
