//! Hostile review of issue 16, second round: export format v3's consent and free entry
//! point lines. A hostile line (bad JSON, a future time, huge numbers) must be a typed
//! error with nothing imported; the free entry point window an import stores must obey
//! the same bound a status's confirmation does (opened .. opened + 72 h + 5 min), or an
//! import opens an endless free window. Real sled on a temp dir.
//!
//! A test marked `#[ignore = "hole: ..."]` fails on the code it was written against: it
//! documents a hole, and passes once the hole is fixed.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use lipachat_session::export::import;
use lipachat_session::{ConsentStore, Conversation, PhoneNumber, SledStore, StoreError};

const HEADER: &str = r#"{"kind":"header","format":"lipachat-session-export","version":3}"#;

fn chat() -> Conversation {
    Conversation::new(
        PhoneNumber::from_u64(254_110_090_747).unwrap(),
        PhoneNumber::from_u64(254_712_345_678).unwrap(),
    )
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn store() -> (SledStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (SledStore::open(dir.path().join("db")).unwrap(), dir)
}

async fn nothing_stored(store: &SledStore) {
    assert!(store.marketing_consents().await.unwrap().is_empty());
    assert!(store.free_entry_points().await.unwrap().is_empty());
}

/// Hostile consent and free entry point lines after a good one: each a typed import
/// error naming its line, and not even the good line went in.
#[tokio::test]
async fn hostile_v3_lines_are_typed_errors_and_import_nothing() {
    let now = Utc::now();
    let good = format!(
        r#"{{"kind":"consent","business":"254110090747","customer":"254712000001","opted_out":true,"changed_at":"{}","back_off_until":null}}"#,
        rfc(now - TimeDelta::hours(1))
    );
    let future = rfc(now + TimeDelta::days(365));
    for hostile in [
        r#"{"kind":"consent","business":"254110090747","customer":"254712345678","opted_out":tru"#.to_owned(),
        format!(
            r#"{{"kind":"consent","business":"254110090747","customer":"254712345678","opted_out":false,"changed_at":"{future}","back_off_until":null}}"#
        ),
        r#"{"kind":"consent","business":"254110090747","customer":"254712345678","opted_out":true,"changed_at":"+262143-12-31T23:59:59.999Z","back_off_until":null}"#.to_owned(),
        r#"{"kind":"consent","business":"254110090747","customer":"254712345678","opted_out":true,"changed_at":99999999999999999999999,"back_off_until":null}"#.to_owned(),
        r#"{"kind":"consent","business":"99999999999999999999999999","customer":"254712345678","opted_out":true,"changed_at":null,"back_off_until":null}"#.to_owned(),
        r#"{"kind":"consent","business":"254110090747","customer":"254712345678","opted_out":2,"changed_at":null,"back_off_until":null}"#.to_owned(),
        r#"{"kind":"consent","business":"254110090747","customer":"254712345678","opted_out":true,"changed_at":null,"back_off_until":null}"#.to_owned(),
        format!(
            r#"{{"kind":"free_entry_point","business":"254110090747","customer":"254712345678","referral_at":"{future}","opened_at":null,"until":null,"confirmed":false}}"#
        ),
        format!(
            r#"{{"kind":"free_entry_point","business":"254110090747","customer":"254712345678","referral_at":null,"opened_at":"{future}","until":"{future}","confirmed":true}}"#
        ),
        format!(
            r#"{{"kind":"free_entry_point","business":"254110090747","customer":"254712345678","referral_at":null,"opened_at":"{}","until":null,"confirmed":true}}"#,
            rfc(now)
        ),
        r#"{"kind":"free_entry_point","business":"254110090747","customer":"254712345678","referral_at":"not a time","opened_at":null,"until":null,"confirmed":false}"#.to_owned(),
    ] {
        let (store, _dir) = store();
        let input = format!("{HEADER}\n{good}\n{hostile}\n");
        let error = import(&store, input.as_bytes()).await.unwrap_err();
        assert!(
            matches!(
                error,
                StoreError::Import { line: 3, .. } | StoreError::ImportFutureTime { line: 3, .. }
            ),
            "{hostile}: {error:?}"
        );
        nothing_stored(&store).await;
    }
}

/// An unconfirmed (predicted) free entry point window imported with an end thousands of
/// years after its opening: `FreeEntryPoint::with_reply` takes `until` as given, so the
/// import stores a free window that never ends (every send to the customer predicted
/// free). A status confirming the same end is refused (opened + 72 h + 5 min at most);
/// the import must refuse it too.
#[tokio::test]
async fn an_imported_predicted_window_cannot_outlast_72_hours() {
    let (store, _dir) = store();
    let now = Utc::now();
    let line = format!(
        r#"{{"kind":"free_entry_point","business":"254110090747","customer":"254712345678","referral_at":"{}","opened_at":"{}","until":"9999-01-01T00:00:00.000Z","confirmed":false}}"#,
        rfc(now - TimeDelta::hours(2)),
        rfc(now - TimeDelta::hours(1))
    );
    let result = import(&store, format!("{HEADER}\n{line}\n").as_bytes()).await;
    let stored = store.free_entry_point(chat()).await.unwrap();
    assert!(
        result.is_err()
            && stored.is_none_or(|e| e.until.is_none_or(|u| u <= now + TimeDelta::hours(73))),
        "import answered {result:?} and stored {stored:?}"
    );
}

/// The same with `confirmed: true`: the store's confirmation bound refuses the end, but
/// the import answers success (a line silently not taken), where a hostile line must be
/// a typed error.
#[tokio::test]
async fn an_imported_confirmed_window_out_of_range_is_not_an_endless_window() {
    let (store, _dir) = store();
    let now = Utc::now();
    let line = format!(
        r#"{{"kind":"free_entry_point","business":"254110090747","customer":"254712345678","referral_at":"{}","opened_at":"{}","until":"9999-01-01T00:00:00.000Z","confirmed":true}}"#,
        rfc(now - TimeDelta::hours(2)),
        rfc(now - TimeDelta::hours(1))
    );
    let result = import(&store, format!("{HEADER}\n{line}\n").as_bytes()).await;
    let stored = store.free_entry_point(chat()).await.unwrap();
    assert!(
        stored.is_none_or(|e| e.until.is_none_or(|u| u <= now + TimeDelta::hours(73))),
        "import answered {result:?} and stored {stored:?}"
    );
}

/// A back-off imported to end in 9999: an expiry, so the future check passes it, and the
/// customer gets no marketing for 8,000 years. The configured back-off is 24 hours; an
/// import of a back-off longer than any the store could have recorded (changed or not,
/// it ends at most a back-off after the clock) is a hostile huge number.
#[tokio::test]
async fn an_imported_back_off_cannot_run_for_millennia() {
    let (store, _dir) = store();
    let line = r#"{"kind":"consent","business":"254110090747","customer":"254712345678","opted_out":false,"changed_at":null,"back_off_until":"9999-01-01T00:00:00.000Z"}"#;
    let result = import(&store, format!("{HEADER}\n{line}\n").as_bytes()).await;
    let stored = store.marketing_consent(chat()).await.unwrap();
    assert!(
        result.is_err(),
        "import answered {result:?} and stored {stored:?}"
    );
}

/// Versions 1 and 2 still import (a window line under either header); a version this
/// build does not know is a typed error with nothing imported.
#[tokio::test]
async fn v1_and_v2_still_import_and_an_unknown_version_is_refused() {
    use lipachat_session::WindowStore;
    let past = rfc(Utc::now() - TimeDelta::hours(1));
    let window = format!(
        r#"{{"kind":"window","business":"254110090747","customer":"254712345678","last_inbound":"{past}","gateway_closed_at":null}}"#
    );
    for version in [1, 2] {
        let (store, _dir) = store();
        let input = format!(
            "{}\n{window}\n",
            HEADER.replace("\"version\":3", &format!("\"version\":{version}"))
        );
        let read = import(&store, input.as_bytes()).await.unwrap();
        assert_eq!(read.windows, 1, "v{version}");
        assert_eq!(store.count().await.unwrap(), 1);
    }
    let (store, _dir) = store();
    let input = format!(
        "{}\n{window}\n",
        HEADER.replace("\"version\":3", "\"version\":99")
    );
    let error = import(&store, input.as_bytes()).await.unwrap_err();
    assert!(matches!(error, StoreError::Import { .. }), "{error:?}");
    assert_eq!(store.count().await.unwrap(), 0);
}
