//! Attacks on "a store keeps only back-offs its own import takes back"
//! (`StoreError::InvalidBackOff`, `back_off::check_back_off`): group ids in every shape
//! the id parser accepts (one of them also a well-formed user id), ends at the 30-day
//! edge and at the ends of time, and what export and import make of each. sled on disk.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use lipachat_session::export::{MAX_IMPORTED_BACK_OFF, export, import};
use lipachat_session::{
    ConsentStore, Conversation, Customer, GroupId, IdentityStore, PhoneNumber, SledStore,
    StoreError, WindowStore,
};

fn business() -> PhoneNumber {
    PhoneNumber::from_u64(254_110_090_747).unwrap()
}

fn person(n: u64) -> Conversation {
    Conversation::new(
        business(),
        PhoneNumber::from_u64(254_712_000_100 + n).unwrap(),
    )
}

/// Group ids of every shape `GroupId::parse` takes: a `…@g.us` id, a base64 id, one
/// that is also a well-formed business-scoped user id, one of each allowed punctuation
/// mark, one character, the longest (256 bytes), and one with whitespace around it.
fn group_ids() -> Vec<String> {
    vec![
        "120363025246125486@g.us".into(),
        "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD".into(),
        "US.13491208655302741918".into(),
        "a-b_c.d=e@f:g+h/i".into(),
        "0".into(),
        "x".repeat(256),
        "  120363025246125487@g.us\t".into(),
    ]
}

fn rfc(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Exports `store`; the text must import into a fresh store under `dir/name`.
async fn reimport(store: &SledStore, dir: &std::path::Path, name: &str) -> SledStore {
    let mut exported = Vec::new();
    export(store, &mut exported).await.unwrap();
    let copy = SledStore::open(dir.join(name)).unwrap();
    import(&copy, exported.as_slice())
        .await
        .unwrap_or_else(|error| {
            panic!(
                "a store's own export does not import: {error}\n{}",
                String::from_utf8_lossy(&exported)
            )
        });
    copy
}

/// A group's back-off in every group id shape is refused with `InvalidBackOff` naming
/// the group (through the conversation and through the customer), nothing is stored,
/// and a version 4 `back_off` line naming the group is refused by line; a version 3
/// group consent line with `back_off_until` imports without a back-off, and the store
/// exports and imports again.
#[tokio::test]
async fn a_group_back_off_is_refused_in_every_group_id_shape() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    let until = Utc::now().trunc_subsecs(3) + TimeDelta::hours(24);
    for id in group_ids() {
        let group = store
            .group_ref(&GroupId::parse(&id).unwrap())
            .await
            .unwrap();
        let customer = Customer::from(group);
        let chat = Conversation::with_customer(business(), customer);
        for refused in [
            store.extend_back_off(chat, until).await.map(|_| ()),
            store
                .extend_customer_back_off(customer, until)
                .await
                .map(|_| ()),
        ] {
            match refused {
                Err(StoreError::InvalidBackOff {
                    customer: named, ..
                }) => {
                    assert_eq!(named, customer, "{id:?}");
                }
                other => panic!("group {id:?}: {other:?}"),
            }
        }
        assert_eq!(
            store.marketing_consent(chat).await.unwrap().back_off_until,
            None,
            "{id:?}"
        );
        let quoted = serde_json::to_string(&id).unwrap();
        let header = "{\"kind\":\"header\",\"format\":\"lipachat-session-export\",\"version\":4}";
        let version_4 = format!(
            "{header}\n{{\"kind\":\"group\",\"group_id\":{quoted}}}\n{{\"kind\":\"back_off\",\"group_id\":{quoted},\"until\":\"{}\"}}\n",
            rfc(until)
        );
        let fresh = SledStore::open(dir.path().join(format!("v4-{}", id.len()))).unwrap();
        match import(&fresh, version_4.as_bytes()).await {
            Err(StoreError::Import { line: 3, .. }) => {}
            other => panic!("group {id:?}: a v4 back_off line naming it: {other:?}"),
        }
        assert!(fresh.groups().await.unwrap().is_empty(), "nothing imported");
        let version_3 = format!(
            "{{\"kind\":\"header\",\"format\":\"lipachat-session-export\",\"version\":3}}\n{{\"kind\":\"group\",\"group_id\":{quoted}}}\n{{\"kind\":\"consent\",\"business\":\"{}\",\"group_id\":{quoted},\"opted_out\":false,\"changed_at\":\"{}\",\"back_off_until\":\"{}\"}}\n",
            business(),
            rfc(until - TimeDelta::hours(25)),
            rfc(until)
        );
        let old = SledStore::open(dir.path().join(format!("v3-{}", id.len()))).unwrap();
        import(&old, version_3.as_bytes()).await.unwrap();
        assert!(
            old.customer_back_offs().await.unwrap().is_empty(),
            "group {id:?}: no back-off imported"
        );
        reimport(&old, dir.path(), &format!("v3-copy-{}", id.len())).await;
    }
}

/// Ends at the edges: exactly 30 days ahead (kept, and the export imports as it is), a
/// second past it and the last time there is (kept: an end is not bounded when recorded,
/// and the export writes them as ending 29 days after it, so marketing stays withheld
/// after the import), and ended ones down to the first
/// time there is (year -262143, which RFC 3339 cannot write), the year 0 and just before
/// 1970 (a negative epoch): kept or refused with a typed error, and in every case the
/// store's export imports, running back-offs to the millisecond, ended ones ended.
#[tokio::test]
async fn back_off_ends_at_the_30_day_edge_and_the_ends_of_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    let edge = Utc::now().trunc_subsecs(3) + MAX_IMPORTED_BACK_OFF;
    assert_eq!(
        store
            .extend_back_off(person(1), edge)
            .await
            .unwrap()
            .back_off_until,
        Some(edge)
    );
    let beyond = [edge + TimeDelta::seconds(1), DateTime::<Utc>::MAX_UTC];
    for (n, until) in beyond.into_iter().enumerate() {
        let kept = store
            .extend_back_off(person(2 + n as u64), until)
            .await
            .unwrap();
        assert_eq!(kept.back_off_until, Some(until.trunc_subsecs(3)), "{until}");
    }
    let ended = [
        DateTime::<Utc>::MIN_UTC,
        "1969-12-31T23:59:59.999Z".parse().unwrap(),
        "0000-01-01T00:00:00Z".parse().unwrap(),
    ];
    let mut kept = vec![(person(1), edge)];
    for (n, until) in ended.into_iter().enumerate() {
        let chat = person(10 + n as u64);
        match store.extend_back_off(chat, until).await {
            Ok(consent) => {
                let stored = consent.back_off_until.unwrap();
                kept.push((chat, stored));
            }
            Err(StoreError::InvalidBackOff { .. }) => {}
            Err(other) => panic!("an end at {until}: {other}"),
        }
    }
    let copy = reimport(&store, dir.path(), "copy").await;
    for n in 0..beyond.len() {
        let imported = copy
            .marketing_consent(person(2 + n as u64))
            .await
            .unwrap()
            .back_off_until
            .unwrap();
        assert!(
            imported > Utc::now() + TimeDelta::days(28),
            "an end beyond the import's bound still withholds marketing after it: {imported}"
        );
    }
    for (chat, until) in kept {
        let imported = copy.marketing_consent(chat).await.unwrap().back_off_until;
        // A running back-off is kept to the millisecond; an ended one stays ended.
        if until > Utc::now() {
            assert_eq!(imported, Some(until), "{chat}");
        } else {
            assert!(
                imported.is_none_or(|end| end <= Utc::now()),
                "{chat}: {imported:?}"
            );
        }
    }
}

mod raw_sled;

/// A store an older release wrote, whose conversation consent record keeps a back-off
/// inside it (`<flag>:<changed ms>:<back-off ms>`) ending 45 days ahead (older releases
/// took any configured `marketing_back_off`): still honoured after the upgrade, and the
/// upgraded store's own export must import, as every other store's does.
#[tokio::test]

async fn a_legacy_back_off_longer_than_30_days_still_lets_the_export_import() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old");
    let chat = person(1);
    let until = Utc::now().trunc_subsecs(3) + TimeDelta::days(45);
    {
        let db = raw_sled::raw_sled(&path);
        db.insert("schema_version", &1u32.to_be_bytes()).unwrap();
        db.open_tree("consent")
            .unwrap()
            .insert(
                chat.to_key(),
                format!("0::{}", until.timestamp_millis()).as_bytes(),
            )
            .unwrap();
        db.flush().unwrap();
        std::fs::write(path.join("lipachat.lock"), b"").unwrap();
    }
    let store = SledStore::open(&path).unwrap();
    assert_eq!(
        store.marketing_consent(chat).await.unwrap().back_off_until,
        Some(until),
        "the older release's back-off is honoured"
    );
    let copy = reimport(&store, dir.path(), "copy").await;
    let imported = copy.marketing_consent(chat).await.unwrap().back_off_until;
    assert!(
        imported.is_some_and(|end| end > Utc::now() + TimeDelta::days(28)),
        "marketing stays withheld after the migration: {imported:?}"
    );
}

/// A store the release before the 30-day bound wrote (that release kept any back-off it
/// was given, in the customer's own record): a group's back-off and a person's ending 45
/// days ahead. The store's own export must import, keeping the person's back-off.
#[tokio::test]

async fn back_offs_a_release_before_the_bound_kept_still_let_the_export_import() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let chat = person(2);
    let until = Utc::now().trunc_subsecs(3) + TimeDelta::days(45);
    let group = {
        let store = SledStore::open(&path).unwrap();
        store.record_inbound(chat, Utc::now()).await.unwrap();
        store
            .group_ref(&GroupId::parse("120363025246125486@g.us").unwrap())
            .await
            .unwrap()
    };
    {
        let db = raw_sled::raw_sled(&path);
        let tree = db.open_tree("back_off").unwrap();
        for customer in [chat.customer, Customer::from(group)] {
            tree.insert(
                customer.key().to_be_bytes(),
                until.timestamp_millis().to_string().as_bytes(),
            )
            .unwrap();
        }
        db.flush().unwrap();
    }
    let store = SledStore::open(&path).unwrap();
    let copy = reimport(&store, dir.path(), "copy").await;
    let imported = copy.marketing_consent(chat).await.unwrap().back_off_until;
    assert!(
        imported.is_some_and(|end| end > Utc::now() + TimeDelta::days(28)),
        "marketing stays withheld after the migration: {imported:?}"
    );
}
