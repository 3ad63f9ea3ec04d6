//! The store conformance suite (`lipachat_session::conformance`) against the sled store.
//! The same suite runs against Redis in `crates/redis/tests/conformance.rs`.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use lipachat_session::{SledStore, conformance};

/// A fresh durable sled store in its own temporary directory.
async fn store() -> Option<(tempfile::TempDir, SledStore)> {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    Some((dir, store))
}

lipachat_session::conformance_tests!(store());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_on_one_store() {
    let (_dir, store) = store().await.unwrap();
    conformance::run_all(&store).await;
}
