//! The store conformance suite (`lipachat_session::conformance`) against the sled store.
//! The same suite runs against Redis in `crates/redis/tests/conformance.rs`.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use lipachat_session::{SledStore, conformance};

/// A fresh durable sled store in its own temporary directory.
fn store() -> (tempfile::TempDir, SledStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    (dir, store)
}

macro_rules! conformance_tests {
    ($($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (_dir, store) = store();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_on_one_store() {
    let (_dir, store) = store();
    conformance::run_all(&store).await;
}
