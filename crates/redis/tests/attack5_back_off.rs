//! Attacks on "a store's own export always imports" on a real `redis-server`: customer
//! back-offs a release before the 30-day bound could leave on the server (a person's
//! ending 45 days ahead, a group's, one ended before the year 0), exported from Redis
//! and imported into sled on disk. Skipped when `redis-server` is not installed (unless
//! `REQUIRE_REDIS=1`).

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use lipachat_redis::KeyLayout;
use lipachat_redis::test_server::RedisServer;
use lipachat_session::export::{export, import};
use lipachat_session::{
    ConsentStore, Conversation, Customer, GroupId, IdentityStore, PhoneNumber, SledStore,
    WindowStore,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_offs_an_older_release_left_on_redis_still_let_the_export_import() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = common::store_at(&server.url(), "pre-bound").await;
    let business: PhoneNumber = "254110090747".parse().unwrap();
    let long = Conversation::new(business, "254712000201".parse().unwrap());
    let ancient = Conversation::new(business, "254712000202".parse().unwrap());
    for chat in [long, ancient] {
        store.record_inbound(chat, Utc::now()).await.unwrap();
    }
    let group = Customer::from(
        store
            .group_ref(&GroupId::parse("120363025246125486@g.us").unwrap())
            .await
            .unwrap(),
    );
    let ends = [
        (
            long.customer,
            Utc::now().trunc_subsecs(3) + TimeDelta::days(45),
        ),
        (group, Utc::now().trunc_subsecs(3) + TimeDelta::hours(24)),
        (ancient.customer, DateTime::<Utc>::MIN_UTC),
    ];
    let keys = KeyLayout::new("pre-bound");
    for (customer, until) in ends {
        server
            .cli(&[
                "SET",
                &keys.back_off(customer),
                &until.timestamp_millis().to_string(),
            ])
            .unwrap();
    }
    let mut exported = Vec::new();
    export(&store, &mut exported).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let copy = SledStore::open(dir.path().join("copy")).unwrap();
    import(&copy, exported.as_slice())
        .await
        .unwrap_or_else(|error| {
            panic!(
                "the Redis store's export does not import: {error}\n{}",
                String::from_utf8_lossy(&exported)
            )
        });
    let kept = copy.marketing_consent(long).await.unwrap().back_off_until;
    assert!(
        kept.is_some_and(|end| end > Utc::now() + TimeDelta::days(28)),
        "marketing stays withheld after the migration: {kept:?}"
    );
    let ended = copy
        .marketing_consent(ancient)
        .await
        .unwrap()
        .back_off_until;
    assert!(ended.is_none_or(|end| end < Utc::now()), "{ended:?}");
}
