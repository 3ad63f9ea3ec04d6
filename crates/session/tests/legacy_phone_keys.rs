//! A store written before phone spellings were unified: a Brazilian mobile kept without its
//! ninth digit is counted at open and said how to migrate; export then import moves it to
//! its canonical key, where the spelling WhatsApp uses finds it.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use chrono::{DateTime, Utc};
use lipachat_session::export::{export, import};
use lipachat_session::{Conversation, PhoneNumber, SledStore, WindowRecord, WindowStore};

fn at() -> DateTime<Utc> {
    Utc::now() - chrono::TimeDelta::hours(1)
}

#[tokio::test]
async fn a_legacy_spelling_is_counted_at_open_and_migrated_by_export_and_import() {
    let dir = tempfile::tempdir().unwrap();
    let old_path = dir.path().join("old");
    let business: PhoneNumber = "254110090747".parse().unwrap();
    // What an earlier release stored: the key as WhatsApp spelled it, 554188887777.
    let legacy = PhoneNumber::from_u64(554_188_887_777).unwrap();
    assert!(!legacy.is_canonical());
    let when = chrono::SubsecRound::trunc_subsecs(at(), 3);
    {
        let store = SledStore::open(&old_path).unwrap();
        store
            .record_inbound(Conversation::new(business, legacy), when)
            .await
            .unwrap();
        store
            .record_inbound(
                Conversation::parse("254110090747", "254712345678").unwrap(),
                when,
            )
            .await
            .unwrap();
    }
    let old = SledStore::open(&old_path).unwrap();
    assert_eq!(old.legacy_phone_keys(), 1);
    // Today the same person, however spelled, is the canonical key, which the old
    // store does not hold.
    let today = Conversation::new(business, "554188887777".parse().unwrap());
    assert_eq!(old.window(today).await.unwrap(), None);

    let mut backup = Vec::new();
    export(&old, &mut backup).await.unwrap();
    let new = SledStore::open(dir.path().join("new")).unwrap();
    import(&new, backup.as_slice()).await.unwrap();
    assert_eq!(
        new.window(today).await.unwrap(),
        Some(WindowRecord::inbound(when))
    );
    let with_nine = Conversation::new(business, "+55 41 9 8888-7777".parse().unwrap());
    assert_eq!(
        new.window(with_nine).await.unwrap(),
        Some(WindowRecord::inbound(when))
    );
    drop(new);
    let reopened = SledStore::open(dir.path().join("new")).unwrap();
    assert_eq!(reopened.legacy_phone_keys(), 0);
}
