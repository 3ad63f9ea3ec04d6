//! Hostile review of issue 16 through the binary: after the gateway answers a marketing
//! template with 131049 or 131050, `send-template` exits 1 with reason
//! `marketing_limit` (with `retry_at`) or `opted_out`, the next attempt never reaches the
//! gateway, `status --json` shows `marketing` and `marketing_retry_at`, and a reroute by
//! `send-contact --on-closed template` is refused the same way.
#![allow(clippy::unwrap_used)]

mod common;

use common::gateway::{Setup, phone};
use common::{BUSINESS, CUSTOMER, TEMPLATE, send_contact};
use lipachat_testkit::MarketingAnswer;
use serde_json::Value;

const OTHER: &str = "+254 712 345 679";

fn promo<'a>(customer: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    promo_from(BUSINESS, customer, extra)
}

/// `send-template` of the marketing template `contact_share` from `business`.
fn promo_from<'a>(business: &'a str, customer: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec![
        "send-template",
        business,
        customer,
        "--template",
        "contact_share",
        "--language",
        "en",
    ];
    all.extend_from_slice(extra);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn gateway_131049_and_131050_exit_1_with_their_reasons_and_are_kept() {
    let s = Setup::start().await;
    s.offer_contact_share(BUSINESS);
    s.gateway
        .answer_templates_with(phone(CUSTOMER), Some(MarketingAnswer::PerUserLimit));
    s.gateway
        .answer_templates_with(phone(OTHER), Some(MarketingAnswer::OptedOut));

    let limited = s.cli.run(&promo(CUSTOMER, &["--json"])).expect(1).json();
    assert_eq!(
        (limited["outcome"].as_str(), limited["reason"].as_str()),
        (Some("rejected"), Some("marketing_limit")),
        "{limited}"
    );
    assert!(limited["retry_at"].is_string(), "{limited}");
    assert_eq!(limited["category"], "marketing", "{limited}");
    let out = s.cli.run(&promo(OTHER, &["--json"])).expect(1).json();
    assert_eq!(
        (out["outcome"].as_str(), out["reason"].as_str()),
        (Some("rejected"), Some("opted_out")),
        "{out}"
    );

    // The gateway would now accept: still refused locally, nothing sent.
    s.gateway.answer_templates_with(phone(CUSTOMER), None);
    s.gateway.answer_templates_with(phone(OTHER), None);
    let requests = s.gateway.request_count();
    let again = s.cli.run(&promo(CUSTOMER, &["--json"])).expect(1).json();
    assert_eq!(again["reason"], "marketing_limit", "{again}");
    assert_eq!(again["retry_at"], limited["retry_at"], "{again}");
    let again = s.cli.run(&promo(OTHER, &["--json"])).expect(1).json();
    assert_eq!(again["reason"], "opted_out", "{again}");
    // A reroute of a free-form send (window closed) to the marketing template too.
    let mut reroute = vec!["--json"];
    reroute.extend_from_slice(&TEMPLATE);
    let rerouted = s.cli.run(&send_contact(OTHER, &reroute)).expect(1).json();
    assert_eq!(
        (rerouted["outcome"].as_str(), rerouted["reason"].as_str()),
        (Some("rejected"), Some("opted_out")),
        "{rerouted}"
    );
    let rerouted = s
        .cli
        .run(&send_contact(CUSTOMER, &reroute))
        .expect(1)
        .json();
    assert_eq!(rerouted["reason"], "marketing_limit", "{rerouted}");
    // Dry runs say the same (and send nothing).
    let plan = s
        .cli
        .run(&promo(CUSTOMER, &["--json", "--dry-run"]))
        .expect(1)
        .json();
    assert_eq!(
        (plan["would"].as_str(), plan["reason"].as_str()),
        (Some("rejected"), Some("marketing_limit")),
        "{plan}"
    );
    let plan = s
        .cli
        .run(&promo(OTHER, &["--json", "--dry-run"]))
        .expect(1)
        .json();
    assert_eq!(plan["reason"], "opted_out", "{plan}");
    assert_eq!(s.gateway.request_count(), requests, "refused locally");

    // status --json (its exit status is the window's: closed here).
    let status: Value = s.cli.run(&["status", BUSINESS, CUSTOMER, "--json"]).json();
    assert_eq!(status["marketing"], "limited", "{status}");
    assert_eq!(
        status["marketing_retry_at"], limited["retry_at"],
        "{status}"
    );
    let status: Value = s.cli.run(&["status", BUSINESS, OTHER, "--json"]).json();
    assert_eq!(status["marketing"], "opted_out", "{status}");
    assert_eq!(status["marketing_retry_at"], Value::Null, "{status}");
}

/// Attack: the notes claim send JSON and dry runs carry `retry_at` when it applies.
/// After a 131049, a real `send-template` answers `retry_at`; its `--dry-run` (and a
/// reroute's dry run) says `marketing_limit` but drops `retry_at`.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_dry_run_in_a_131049_back_off_carries_retry_at() {
    let s = Setup::start().await;
    s.offer_contact_share(BUSINESS);
    s.gateway
        .answer_templates_with(phone(CUSTOMER), Some(MarketingAnswer::PerUserLimit));
    let limited = s.cli.run(&promo(CUSTOMER, &["--json"])).expect(1).json();
    assert!(limited["retry_at"].is_string(), "{limited}");
    let plan = s
        .cli
        .run(&promo(CUSTOMER, &["--json", "--dry-run"]))
        .expect(1)
        .json();
    let mut reroute = vec!["--json", "--dry-run"];
    reroute.extend_from_slice(&TEMPLATE);
    let rerouted = s
        .cli
        .run(&send_contact(CUSTOMER, &reroute))
        .expect(1)
        .json();
    assert_eq!(
        (
            plan["reason"].as_str(),
            &plan["retry_at"],
            rerouted["reason"].as_str(),
            &rerouted["retry_at"]
        ),
        (
            Some("marketing_limit"),
            &limited["retry_at"],
            Some("marketing_limit"),
            &limited["retry_at"]
        ),
        "send-template --dry-run: {plan}\nsend-contact --dry-run: {rerouted}"
    );
}

/// Claim: under `--on-closed queue`, a customer who opted out gets no marketing
/// invitation and (consent withholding the whole send) nothing is queued: exit 1,
/// reason `opted_out`; the dry run says the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn queue_with_a_marketing_invitation_to_an_opted_out_customer() {
    let s = Setup::start().await;
    s.offer_contact_share(BUSINESS);
    s.cli.run(&["optout", BUSINESS, CUSTOMER]).expect(0);
    let mut queue = vec!["--json", "--dry-run"];
    queue.extend_from_slice(&common::QUEUE);
    let plan = s.cli.run(&send_contact(CUSTOMER, &queue)).expect(1).json();
    assert_eq!(
        (plan["would"].as_str(), plan["reason"].as_str()),
        (Some("rejected"), Some("opted_out")),
        "{plan}"
    );
    let real = s
        .cli
        .run(&send_contact(
            CUSTOMER,
            &queue[..1]
                .iter()
                .copied()
                .chain(common::QUEUE)
                .collect::<Vec<_>>(),
        ))
        .expect(1)
        .json();
    assert_eq!(
        (real["outcome"].as_str(), real["reason"].as_str()),
        (Some("rejected"), Some("opted_out")),
        "{real}"
    );
    assert_eq!(s.gateway.request_count(), 0, "nothing reached the gateway");
    let pending = s.cli.run(&["pending", "--json"]).expect(0).json_lines();
    assert!(pending.is_empty(), "nothing queued: {pending:?}");
}

/// The 131049 back-off is the customer's, across the bot's business numbers: after the
/// gateway answered one number's marketing template with 131049, the other number's
/// `status --json` shows `limited` with the same `marketing_retry_at`, its
/// `send-template` and `--dry-run` exit 1 with `marketing_limit` and that `retry_at`,
/// and nothing reaches the gateway. Before, the back-off was kept per (business
/// number, customer), and the second number sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_131049_on_one_number_holds_for_the_customer_on_another() {
    const SECOND: &str = "+254 110 090 748";
    let s = Setup::start().await;
    for business in [BUSINESS, SECOND] {
        s.offer_contact_share(business);
    }
    s.gateway
        .answer_templates_with(phone(CUSTOMER), Some(MarketingAnswer::PerUserLimit));
    let limited = s.cli.run(&promo(CUSTOMER, &["--json"])).expect(1).json();
    assert_eq!(limited["reason"], "marketing_limit", "{limited}");
    assert!(limited["retry_at"].is_string(), "{limited}");

    // The gateway would accept now; the second number still refuses locally.
    s.gateway.answer_templates_with(phone(CUSTOMER), None);
    let requests = s.gateway.request_count();
    let status: Value = s.cli.run(&["status", SECOND, CUSTOMER, "--json"]).json();
    assert_eq!(
        (&status["marketing"], &status["marketing_retry_at"]),
        (&Value::from("limited"), &limited["retry_at"]),
        "{status}"
    );
    let from_second = |extra: &[&str]| {
        s.cli
            .run(&promo_from(SECOND, CUSTOMER, extra))
            .expect(1)
            .json()
    };
    for answer in [
        from_second(&["--json", "--dry-run"]),
        from_second(&["--json"]),
    ] {
        assert_eq!(
            (answer["reason"].as_str(), &answer["retry_at"]),
            (Some("marketing_limit"), &limited["retry_at"]),
            "{answer}"
        );
    }
    assert_eq!(s.gateway.request_count(), requests, "refused locally");
}
