//! The store conformance suite (`lipachat_session::conformance`), written once and run
//! against sled in `crates/session/tests/conformance.rs`, here against Redis.
//!
//! Each test starts its own `redis-server` (skipped when it is not installed, unless
//! `REQUIRE_REDIS=1`).

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use lipachat_redis::test_server::RedisServer;
use lipachat_redis::{RedisConfig, RedisStore};
use lipachat_session::conformance;

async fn store() -> Option<(RedisServer, RedisStore)> {
    let server = RedisServer::start()?;
    let store = RedisConfig::new(&server.url())
        .unwrap()
        .with_key_prefix("conformance")
        .unwrap()
        .connect()
        .await
        .unwrap();
    Some((server, store))
}

macro_rules! conformance_tests {
    ($($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let Some((_server, store)) = store().await else { return };
                conformance::$check(&store).await;
            }
        )*

        #[test]
        fn every_check_is_run_here() {
            let here = [$(stringify!($check)),*];
            assert_eq!(here.as_slice(), conformance::CHECKS);
        }
    };
}

conformance_tests!(
    keep_max,
    concurrent_keep_max,
    gateway_closure,
    window_model,
    inbound_between,
    count_windows_and_forget,
    outbox,
    concurrent_outbox,
    invitations,
    outcomes,
    outcome_expiry,
    outcome_wa_index,
    outbox_with_outcome,
    claims,
    redelivery,
    identity_registry,
    aliases,
    user_and_group_conversations,
    move_customer,
    outcome_conversation,
    redelivery_transfer,
    marketing_consent,
    free_entry_point,
    cost_records,
    concurrent_reach,
);

/// All checks on one store, then again on a second prefix of the same server: prefixes
/// keep bots apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_on_one_server_two_prefixes() {
    let Some((server, first)) = store().await else {
        return;
    };
    conformance::run_all(&first).await;
    let second = RedisConfig::new(&server.url())
        .unwrap()
        .with_key_prefix("other-bot")
        .unwrap()
        .connect()
        .await
        .unwrap();
    use lipachat_session::WindowStore;
    assert_eq!(
        second.count().await.unwrap(),
        0,
        "another prefix sees nothing"
    );
    conformance::run_all(&second).await;
    assert_eq!(first.count().await.unwrap(), second.count().await.unwrap());
}
