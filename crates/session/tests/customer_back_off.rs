//! The 131049 back-off is the customer's, across business numbers, on sled on disk: it
//! holds for the customer through every business number and across a reopen; a
//! back-off an older version stored inside a conversation's consent record is still
//! honoured for that conversation; an unreadable one is a typed error naming the
//! customer (a move stops with nothing moved; a new 131049 replaces it); and export
//! (format 4) and import carry it, versions 3 and older still import.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::path::Path;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use lipachat_session::export::{FORMAT_VERSION, export, import};
use lipachat_session::{
    ConsentStore, Conversation, MarketingConsent, PhoneNumber, SledStore, StoreError, WindowStore,
    conformance,
};

fn first() -> PhoneNumber {
    "254110090747".parse().unwrap()
}

fn second() -> PhoneNumber {
    "254110090748".parse().unwrap()
}

fn customer(n: u64) -> PhoneNumber {
    PhoneNumber::from_u64(254_712_000_000 + n).unwrap()
}

/// A recent time (imports refuse times ahead of the clock), to the millisecond.
fn now() -> DateTime<Utc> {
    (Utc::now() - TimeDelta::hours(1)).trunc_subsecs(3)
}

/// Opens the database with sled itself, retrying while a store just dropped still holds
/// sled's lock.
fn raw_sled(path: &Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(error) => panic!("sled cannot open {}: {error}", path.display()),
        }
    }
}

/// What an older version left at `path` (no marker, no integrity record): the schema
/// version and, in `tree`, `key` → `value`.
fn old_store(path: &Path, tree: &str, key: &[u8], value: &[u8]) {
    let db = raw_sled(path);
    db.insert("schema_version", &1u32.to_be_bytes()).unwrap();
    db.open_tree(tree).unwrap().insert(key, value).unwrap();
    db.flush().unwrap();
    std::fs::write(path.join("lipachat.lock"), b"").unwrap();
}

/// A store in `dir` whose customer 1 has the unreadable back-off `soon` (as an older
/// version or damage could leave it), and that customer through both business numbers.
fn with_unreadable_back_off(dir: &tempfile::TempDir) -> (SledStore, (Conversation, Conversation)) {
    let path = dir.path().join("old");
    let (limited, elsewhere) = pair(1);
    old_store(
        &path,
        "back_off",
        &limited.customer.key().to_be_bytes(),
        b"soon",
    );
    (SledStore::open(&path).unwrap(), (limited, elsewhere))
}

/// The customer through the first and through the second business number.
fn pair(n: u64) -> (Conversation, Conversation) {
    (
        Conversation::new(first(), customer(n)),
        Conversation::new(second(), customer(n)),
    )
}

#[tokio::test]
async fn a_back_off_holds_for_the_customer_on_every_business_number_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let t0 = now();
    let until = t0 + TimeDelta::hours(24);
    let (limited, elsewhere) = pair(1);
    {
        let store = SledStore::open(&path).unwrap();
        store.record_opt_out(limited, true, t0).await.unwrap();
        store.extend_back_off(limited, until).await.unwrap();
    }
    let store = SledStore::open(&path).unwrap();
    assert!(store.integrity().is_intact(), "{}", store.integrity());
    assert_eq!(
        store.marketing_consent(elsewhere).await.unwrap(),
        MarketingConsent {
            back_off_until: Some(until),
            ..MarketingConsent::default()
        },
        "the back-off holds on the other number; the opt-out stays with its own"
    );
    assert_eq!(
        store.marketing_consent(pair(2).1).await.unwrap(),
        MarketingConsent::default()
    );
}

/// An older version kept the back-off inside the conversation's consent record
/// (`<flag>:<changed ms>:<back-off ms>`): still honoured for that conversation
/// ([`conformance::legacy_back_off_is_honoured`]), and exported in its `consent` line,
/// which a new store imports as the customer's.
#[tokio::test]
async fn a_back_off_an_older_version_kept_per_conversation_is_still_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old");
    let legacy_until = now() + TimeDelta::hours(24);
    let (limited, elsewhere) = pair(1);
    old_store(
        &path,
        "consent",
        &limited.to_key(),
        format!("0::{}", legacy_until.timestamp_millis()).as_bytes(),
    );
    let store = SledStore::open(&path).unwrap();
    conformance::legacy_back_off_is_honoured(&store, limited, elsewhere, legacy_until).await;
    let later = store
        .marketing_consent(limited)
        .await
        .unwrap()
        .back_off_until;

    // Export then import into a new store: the back-off is the customer's there.
    let mut exported = Vec::new();
    let written = export(&store, &mut exported).await.unwrap();
    assert_eq!((written.consents, written.back_offs), (1, 1));
    let moved = SledStore::open(dir.path().join("new")).unwrap();
    import(&moved, exported.as_slice()).await.unwrap();
    for conversation in [limited, elsewhere] {
        assert_eq!(
            moved
                .marketing_consent(conversation)
                .await
                .unwrap()
                .back_off_until,
            later,
            "{conversation}"
        );
    }
}

/// A stored back-off that cannot be read: a typed error naming the customer, a move
/// stops, a new 131049 replaces it ([`conformance::unreadable_back_off_is_refused`]).
#[tokio::test]
async fn an_unreadable_back_off_is_a_typed_error_until_a_new_131049_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, (limited, elsewhere)) = with_unreadable_back_off(&dir);
    let t0 = now();
    store.record_inbound(limited, t0).await.unwrap();
    let error = store.marketing_consent(limited).await.unwrap_err();
    assert!(
        error.to_string().contains("254712000001") && error.to_string().contains("\"soon\""),
        "{error}"
    );
    conformance::unreadable_back_off_is_refused(
        &store,
        limited,
        elsewhere,
        customer(2).into(),
        t0 + TimeDelta::hours(24),
    )
    .await;
}

/// An unreadable stored back-off is not dropped by an export: it is exported as one
/// lasting `UNREADABLE_BACK_OFF_EXPORTED_FOR` from the export, so after an import into
/// another store marketing to that customer is still withheld (fail closed across a
/// migration), from every business number; the other customers' back-offs are exported
/// as they are, and nothing is counted as skipped.
#[tokio::test]
async fn an_unreadable_back_off_survives_export_and_import_as_a_long_back_off() {
    let dir = tempfile::tempdir().unwrap();
    let (store, (limited, elsewhere)) = with_unreadable_back_off(&dir);
    let t0 = now();
    let (readable, _) = pair(2);
    let readable_until = (t0 + TimeDelta::hours(24)).trunc_subsecs(3);
    store
        .extend_back_off(readable, readable_until)
        .await
        .unwrap();

    let before = Utc::now();
    let mut exported = Vec::new();
    let written = export(&store, &mut exported).await.unwrap();
    let after = Utc::now();
    assert_eq!(written.skipped_corrupt, 0, "{written:?}");
    assert_eq!(written.unreadable_back_offs, 1, "{written:?}");
    assert_eq!(written.back_offs, 2, "{written:?}");

    let copy = SledStore::open(dir.path().join("copy")).unwrap();
    import(&copy, exported.as_slice()).await.unwrap();
    for conversation in [limited, elsewhere] {
        let until = copy
            .marketing_consent(conversation)
            .await
            .unwrap()
            .back_off_until
            .unwrap_or_else(|| panic!("{conversation}: the back-off was lost in the export"));
        let days = lipachat_session::export::UNREADABLE_BACK_OFF_EXPORTED_FOR;
        assert!(
            until >= (before + days).trunc_subsecs(3) && until <= after + days,
            "{conversation}: {until}"
        );
    }
    assert_eq!(
        copy.marketing_consent(readable)
            .await
            .unwrap()
            .back_off_until,
        Some(readable_until),
        "a readable back-off is exported as it is"
    );
}

/// A version 3 export (the back-off inside the `consent` line) still imports, as the
/// customer's back-off; a version 4 export round-trips its `back_off` lines; a bad
/// `back_off` line is a typed error naming its line, with nothing imported.
#[tokio::test]
async fn exports_of_version_3_and_4_import_and_bad_back_off_lines_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now();
    let until = t0 + TimeDelta::hours(24);
    let rfc = |at: DateTime<Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let version_3 = format!(
        "{{\"kind\":\"header\",\"format\":\"lipachat-session-export\",\"version\":3}}\n{{\"kind\":\"consent\",\"business\":\"{}\",\"customer\":\"{}\",\"opted_out\":true,\"changed_at\":\"{}\",\"back_off_until\":\"{}\"}}\n",
        first(),
        customer(1),
        rfc(t0),
        rfc(until)
    );
    let store = SledStore::open(dir.path().join("a")).unwrap();
    let read = import(&store, version_3.as_bytes()).await.unwrap();
    assert_eq!((read.consents, read.back_offs), (1, 0));
    assert_eq!(
        store
            .marketing_consent(Conversation::new(first(), customer(1)))
            .await
            .unwrap(),
        MarketingConsent {
            opted_out: true,
            changed_at: Some(t0),
            back_off_until: Some(until),
        }
    );
    assert_eq!(
        store
            .marketing_consent(Conversation::new(second(), customer(1)))
            .await
            .unwrap()
            .back_off_until,
        Some(until),
        "a version 3 back-off imports as the customer's"
    );

    // Version 4, round trip: the same back_off lines come out of the second store.
    store
        .extend_back_off(
            Conversation::new(second(), customer(2)),
            until + TimeDelta::hours(1),
        )
        .await
        .unwrap();
    let mut exported = Vec::new();
    let written = export(&store, &mut exported).await.unwrap();
    assert_eq!(written.back_offs, 2);
    let text = String::from_utf8(exported.clone()).unwrap();
    assert!(
        text.starts_with(&format!(
            "{{\"kind\":\"header\",\"format\":\"lipachat-session-export\",\"version\":{FORMAT_VERSION}}}"
        )),
        "{text}"
    );
    let copy = SledStore::open(dir.path().join("b")).unwrap();
    assert_eq!(import(&copy, exported.as_slice()).await.unwrap(), written);
    let mut again = Vec::new();
    export(&copy, &mut again).await.unwrap();
    let back_off_lines = |text: &str| {
        let mut lines: Vec<String> = text
            .lines()
            .filter(|line| line.contains("\"kind\":\"back_off\""))
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(
        back_off_lines(&String::from_utf8(again).unwrap()),
        back_off_lines(&text)
    );

    // Bad back_off lines: each refused with its line number, nothing imported.
    let header = format!(
        "{{\"kind\":\"header\",\"format\":\"lipachat-session-export\",\"version\":{FORMAT_VERSION}}}"
    );
    let good = format!(
        "{{\"kind\":\"back_off\",\"customer\":\"{}\",\"until\":\"{}\"}}",
        customer(7),
        rfc(until)
    );
    for (bad, wanted) in [
        (
            format!(
                "{{\"kind\":\"back_off\",\"group_id\":\"g1\",\"until\":\"{}\"}}",
                rfc(until)
            ),
            "group",
        ),
        (
            format!(
                "{{\"kind\":\"back_off\",\"customer\":\"{}\",\"until\":\"{}\"}}",
                customer(8),
                rfc(Utc::now() + TimeDelta::days(31))
            ),
            "30 days",
        ),
        (
            format!(
                "{{\"kind\":\"back_off\",\"customer\":\"{}\",\"until\":\"tomorrow\"}}",
                customer(8)
            ),
            "",
        ),
        (
            format!(
                "{{\"kind\":\"back_off\",\"customer\":\"{}\",\"user_id\":\"US.1\",\"until\":\"{}\"}}",
                customer(8),
                rfc(until)
            ),
            "exactly one",
        ),
        ("{\"kind\":\"back_off\"}".to_owned(), ""),
    ] {
        let empty = SledStore::open(dir.path().join("empty")).unwrap();
        let input = format!("{header}\n{good}\n{bad}\n");
        match import(&empty, input.as_bytes()).await {
            Err(StoreError::Import { line: 3, detail }) => {
                assert!(detail.contains(wanted), "{bad}: {detail}")
            }
            other => panic!("{bad}: expected an import error on line 3, got {other:?}"),
        }
        assert!(
            empty.customer_back_offs().await.unwrap().is_empty(),
            "{bad}: nothing imported"
        );
    }
}

/// An unreadable marketing consent record (damage, or a value an older version wrote
/// that this one cannot read) is exported as an opt-out made at the export, with a
/// warning and counted, instead of being skipped: after the import marketing stays
/// withheld from that customer (fail closed) until they opt in again, and readable
/// records are exported as they are.
#[tokio::test]
async fn an_unreadable_consent_record_survives_export_and_import_as_an_opt_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old");
    let (damaged, _) = pair(1);
    old_store(
        &path,
        "consent",
        &damaged.to_key(),
        b"\xff not a consent record",
    );
    let store = SledStore::open(&path).unwrap();
    assert!(
        store.marketing_consent(damaged).await.is_err(),
        "the damaged record reads as an error"
    );
    let (readable, _) = pair(2);
    let t0 = now();
    store.record_opt_out(readable, false, t0).await.unwrap();

    let before = Utc::now().trunc_subsecs(3);
    let mut exported = Vec::new();
    let written = export(&store, &mut exported).await.unwrap();
    let after = Utc::now();
    assert_eq!(written.skipped_corrupt, 0, "{written:?}");
    assert_eq!(written.unreadable_consents, 1, "{written:?}");
    assert_eq!(written.consents, 2, "{written:?}");

    let copy = SledStore::open(dir.path().join("copy")).unwrap();
    import(&copy, exported.as_slice()).await.unwrap();
    let consent = copy.marketing_consent(damaged).await.unwrap();
    assert!(
        consent.opted_out,
        "the damaged record came back as an opt-out"
    );
    let changed = consent.changed_at.unwrap();
    assert!(changed >= before && changed <= after, "{changed}");
    // The customer's later opt-in still takes it back.
    let resumed = copy
        .record_opt_out(damaged, false, after + TimeDelta::seconds(1))
        .await
        .unwrap();
    assert!(!resumed.opted_out);
    let kept = copy.marketing_consent(readable).await.unwrap();
    assert_eq!(
        (kept.opted_out, kept.changed_at),
        (false, Some(t0.trunc_subsecs(3)))
    );
}
