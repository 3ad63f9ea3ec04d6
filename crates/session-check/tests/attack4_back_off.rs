//! An unreadable stored 131049 back-off through the binary (sled): `status` and
//! `send-template` for that customer, from any number, exit 2 with an error naming the
//! customer, and nothing reaches the gateway; never a panic, never `allowed`.
#![allow(clippy::unwrap_used)]

mod common;

use common::gateway::{Setup, phone};
use common::{BUSINESS, CUSTOMER};

const SECOND: &str = "+254 110 090 748";

/// What a store written before the marker and integrity record leaves at `path`: the
/// schema version and, in the `back_off` tree, `CUSTOMER`'s back-off as `soon`.
fn store_with_unreadable_back_off(path: &std::path::Path) {
    let db = sled::open(path).unwrap();
    db.insert("schema_version", &1u32.to_be_bytes()).unwrap();
    let customer = lipachat_session::Customer::from(phone(CUSTOMER));
    db.open_tree("back_off")
        .unwrap()
        .insert(customer.key().to_be_bytes(), b"soon".as_slice())
        .unwrap();
    db.flush().unwrap();
    drop(db);
    std::fs::write(path.join("lipachat.lock"), b"").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn an_unreadable_back_off_fails_status_and_sends_with_a_named_error() {
    let s = Setup::start().await;
    store_with_unreadable_back_off(&s.cli.db());
    let digits = phone(CUSTOMER).digits();
    for business in [BUSINESS, SECOND] {
        s.cli
            .run(&["status", business, CUSTOMER, "--json"])
            .expect(2)
            .expect_json_error(&[&digits, "back-off"]);
        s.cli
            .run(&[
                "send-template",
                business,
                CUSTOMER,
                "--template",
                "contact_share",
                "--language",
                "en",
                "--json",
            ])
            .expect(2)
            .expect_json_error(&[&digits, "back-off"]);
    }
    assert_eq!(s.gateway.request_count(), 0, "nothing reached the gateway");
}
