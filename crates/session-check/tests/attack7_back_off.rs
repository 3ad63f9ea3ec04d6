//! Seventh hostile review through the binary (sled): a person's 131049 back-off kept
//! whatever its end (e29da52). A back-off ending at the last instant there is and one
//! that ended at the first: `status`, `timeline`, `check`, a marketing `send-template`
//! (withheld for the first, sent for the second, nothing of the first reaching the
//! gateway), and `export` piped into `import` of a second database, where marketing is
//! still withheld. Never a panic, never exit 2.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{DateTime, TimeDelta, Utc};
use common::gateway::{Setup, phone};
use common::{BUSINESS, CUSTOMER, Cli};
use lipachat_session::{ConsentStore, Customer, SledStore};

const ENDED: &str = "+254 712 345 679";

fn promo(customer: &str) -> Vec<&str> {
    vec![
        "send-template",
        BUSINESS,
        customer,
        "--template",
        "contact_share",
        "--language",
        "en",
        "--json",
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn back_offs_at_the_ends_of_time_through_the_binary() {
    let s = Setup::start().await;
    s.offer_contact_share(BUSINESS);
    {
        let store = SledStore::open(s.cli.db()).unwrap();
        store
            .extend_customer_back_off(Customer::from(phone(CUSTOMER)), DateTime::<Utc>::MAX_UTC)
            .await
            .unwrap();
        store
            .extend_customer_back_off(Customer::from(phone(ENDED)), DateTime::<Utc>::MIN_UTC)
            .await
            .unwrap();
    }
    for args in [
        vec!["status", BUSINESS, CUSTOMER, "--json"],
        vec!["status", BUSINESS, ENDED, "--json"],
        vec!["timeline", BUSINESS, CUSTOMER, "--json"],
        vec!["timeline", BUSINESS, ENDED],
        vec!["status", BUSINESS, CUSTOMER],
    ] {
        let run = s.cli.run_once_released(&args);
        assert!(
            run.code == 0 || run.code == 1,
            "{args:?}: exit {:?}\n{}\n{}",
            run.code,
            run.stdout,
            run.stderr
        );
    }
    let requests = s.gateway.request_count();
    let withheld = s.cli.run(&promo(CUSTOMER)).expect(1).json();
    assert_eq!(withheld["reason"], "marketing_limit", "{withheld}");
    assert_eq!(
        s.gateway.request_count(),
        requests,
        "the withheld template reached the gateway"
    );
    let sent = s.cli.run(&promo(ENDED)).expect(0).json();
    assert_eq!(sent["outcome"], "sent", "{sent}");
    let exported = s.cli.run(&["export"]).expect(0).stdout;
    let copy = Cli::new();
    copy.run_with_stdin(&["import"], &exported).expect(0);
    let status = copy
        .run(&["status", BUSINESS, CUSTOMER, "--json"])
        .json_lines();
    let retry_at = status
        .iter()
        .find_map(|line| line["marketing_retry_at"].as_str())
        .unwrap_or_else(|| panic!("no marketing_retry_at after the import: {status:?}"));
    let retry_at: DateTime<Utc> = retry_at.parse().unwrap();
    assert!(
        retry_at > Utc::now() + TimeDelta::days(28),
        "marketing withheld after the import until {retry_at}"
    );
}
