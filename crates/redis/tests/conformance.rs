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

lipachat_session::conformance_tests!(store());

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
