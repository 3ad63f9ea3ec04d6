//! Attacks on the customer back-off (131049) through export and import, on sled on
//! disk: a store must be able to import what it exported. Two ways a store can hold a
//! back-off its own import refuses: one recorded for a group conversation (the store
//! takes it; the import refuses `back_off` lines naming a group), and one longer than
//! 30 days (the policy's `marketing_back_off` is configurable with no bound; the import
//! refuses ends more than 30 days ahead). Either way one line made the whole file
//! unimportable, so every other conversation's records were lost to the move. Now a
//! store refuses a group's with `StoreError::InvalidBackOff`, an export writes an end
//! beyond the import's bound as ending 29 days after the export (the policy takes a
//! configured back-off as at most 30 days), and an old export's group back-off is not
//! imported.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use lipachat_session::export::{export, import};
use lipachat_session::{
    ConsentStore, Conversation, Customer, GroupId, IdentityStore, PhoneNumber, SledStore,
};

fn business() -> PhoneNumber {
    PhoneNumber::from_u64(254_110_090_747).unwrap()
}

fn customer(n: u64) -> PhoneNumber {
    PhoneNumber::from_u64(254_712_000_000 + n).unwrap()
}

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// Exports `store` and imports the file into a fresh sled store under `dir`.
async fn round_trip(store: &SledStore, dir: &std::path::Path) -> SledStore {
    let mut exported = Vec::new();
    export(store, &mut exported).await.unwrap();
    let copy = SledStore::open(dir.join("copy")).unwrap();
    let text = String::from_utf8(exported.clone()).unwrap();
    import(&copy, exported.as_slice())
        .await
        .unwrap_or_else(|error| panic!("a store's own export does not import: {error}\n{text}"));
    copy
}

/// A 131049 recorded for a group conversation: the store takes it (the back-off keys by
/// the conversation's customer, a group here), then its export cannot be imported.
#[tokio::test]
async fn a_back_off_recorded_for_a_group_still_lets_the_export_import() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    let group = store
        .group_ref(&GroupId::parse("120363025246125486@g.us").unwrap())
        .await
        .unwrap();
    let group_chat = Conversation::with_customer(business(), Customer::from(group));
    let person = Conversation::new(business(), customer(1));
    let until = now() + TimeDelta::hours(24);
    store.extend_back_off(person, until).await.unwrap();
    // Either the store refuses a group's back-off with a typed error, or it keeps it
    // so that its export still imports.
    if store.extend_back_off(group_chat, until).await.is_err() {
        return;
    }
    let copy = round_trip(&store, dir.path()).await;
    assert_eq!(
        copy.marketing_consent(person).await.unwrap().back_off_until,
        Some(until)
    );
}

/// A bot configured with a back-off longer than 30 days (the policy's
/// `marketing_back_off` takes any length) stores an end more than 30 days ahead; its
/// export must still import.
#[tokio::test]
async fn a_long_configured_back_off_still_lets_the_export_import() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    let person = Conversation::new(business(), customer(2));
    let until = now() + TimeDelta::days(45);
    // The store keeps it; its export writes it as ending 29 days after the export (the
    // longest an import takes, less a day), so the copy still withholds marketing.
    store.extend_back_off(person, until).await.unwrap();
    let copy = round_trip(&store, dir.path()).await;
    let imported = copy
        .marketing_consent(person)
        .await
        .unwrap()
        .back_off_until
        .unwrap();
    assert!(
        imported > now() + TimeDelta::days(28) && imported <= now() + TimeDelta::days(30),
        "{imported}"
    );
}

/// A version 3 export whose `consent` line for a group carries `back_off_until` (a
/// release that kept the back-off per conversation could store one for a group's
/// conversation): it imports, or is refused; if it imports, the new store's own export
/// must import again.
#[tokio::test]
async fn a_version_3_group_consent_with_a_back_off_leaves_an_importable_store() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now() - TimeDelta::hours(1);
    let rfc = |at: DateTime<Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let version_3 = format!(
        "{{\"kind\":\"header\",\"format\":\"lipachat-session-export\",\"version\":3}}\n{{\"kind\":\"group\",\"group_id\":\"120363025246125486@g.us\"}}\n{{\"kind\":\"consent\",\"business\":\"{}\",\"group_id\":\"120363025246125486@g.us\",\"opted_out\":false,\"changed_at\":\"{}\",\"back_off_until\":\"{}\"}}\n",
        business(),
        rfc(t0),
        rfc(t0 + TimeDelta::hours(24))
    );
    let store = SledStore::open(dir.path().join("db")).unwrap();
    if import(&store, version_3.as_bytes()).await.is_err() {
        return;
    }
    round_trip(&store, dir.path()).await;
}
