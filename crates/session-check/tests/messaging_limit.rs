//! The messaging limit from the command line (`--portfolio`, `--portfolio-numbers`,
//! `--messaging-tier`), and the pricing in the human output of send commands and dry
//! runs. Against a real database, the stand-in gateway on loopback; the portfolio's count
//! is filled to its tier through the store the command line opens.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{TimeDelta, Utc};
use common::gateway::{Setup, phone};
use common::{BUSINESS, CUSTOMER, Cli, QUEUE, T0, TEMPLATE, order_update, send_contact};
use lipachat_session::{ConsentStore, CountTime, Reach, SledStore};

const LIMIT: [&str; 6] = [
    "--portfolio",
    "acme",
    "--portfolio-numbers",
    "254110090747,254110090748",
    "--messaging-tier",
    "250",
];

/// Counts 250 other customers reached by the portfolio `acme` an hour ago, on the real
/// clock as the CLI counts (a store refuses a count on the other kind of clock).
async fn fill_the_tier(cli: &Cli) {
    let store = SledStore::open(cli.db()).unwrap();
    let at = Utc::now() - TimeDelta::hours(1);
    for customer in 0..250_u64 {
        let reach = store
            .reach_customer(
                "acme",
                9_000_000 + customer,
                CountTime::SystemNow(at),
                250,
                TimeDelta::hours(24),
            )
            .await
            .unwrap();
        assert!(!matches!(reach, Reach::LimitReached { .. }));
    }
    lipachat_session::WindowStore::flush(&store).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_past_the_messaging_limit_is_rejected_or_queued_and_sends_nothing() {
    let s = Setup::start().await;
    fill_the_tier(&s.cli).await;
    // The window is closed (the customer wrote two days ago): the template would go
    // outside it, to a 251st customer.
    s.customer_wrote(CUSTOMER, TimeDelta::days(2));
    let before = s.gateway.request_count();
    let mut args: Vec<&str> = TEMPLATE.to_vec();
    args.extend_from_slice(&LIMIT);
    args.push("--json");
    let run = s
        .cli
        .run_once_released(&send_contact(CUSTOMER, &args))
        .expect(1);
    let out = run.json();
    assert_eq!(
        (out["outcome"].as_str(), out["reason"].as_str()),
        (Some("rejected"), Some("messaging_limit")),
        "{out}"
    );
    assert_eq!(s.gateway.request_count(), before, "nothing was sent");
    // In words too.
    let mut human: Vec<&str> = TEMPLATE.to_vec();
    human.extend_from_slice(&LIMIT);
    let run = s.cli.run(&send_contact(CUSTOMER, &human)).expect(1);
    assert!(run.stdout.contains("messaging limit"), "{}", run.stdout);
    assert!(
        run.stdout.contains("pricing: marketing, billed"),
        "{}",
        run.stdout
    );
    // Under the queue policy: queued, exit 0, and still nothing sent.
    let mut queue: Vec<&str> = QUEUE.to_vec();
    queue.extend_from_slice(&LIMIT);
    queue.push("--json");
    let out = s.cli.run(&send_contact(CUSTOMER, &queue)).expect(0).json();
    assert_eq!(out["outcome"], "queued", "{out}");
    assert_eq!(s.gateway.request_count(), before, "nothing was sent");
    // Another portfolio (or none) is not limited: the template goes.
    let out = s
        .cli
        .run(&send_contact(
            CUSTOMER,
            &[&TEMPLATE[..], &["--json"]].concat(),
        ))
        .expect(0)
        .json();
    assert_eq!(out["outcome"], "rerouted", "{out}");
    assert_eq!(
        s.gateway.delivered_to(phone(common::CUSTOMER_DIGITS)).len(),
        1
    );
}

#[test]
fn a_bad_portfolio_or_tier_is_a_usage_error() {
    let cli = Cli::new();
    cli.run(&["record", BUSINESS, "254799999999", "--at", T0])
        .expect(0);
    let mut args = vec!["--dry-run", "--now", T0];
    args.extend_from_slice(&TEMPLATE);
    let mut bad_tier = args.clone();
    bad_tier.extend_from_slice(&["--portfolio", "acme", "--messaging-tier", "300"]);
    cli.run(&send_contact(CUSTOMER, &bad_tier))
        .expect_error(&["300", "250, 2000, 10000, 100000 or unlimited"]);
    let mut bad_name = args.clone();
    bad_name.extend_from_slice(&["--portfolio", "a b", "--messaging-tier", "250"]);
    cli.run(&send_contact(CUSTOMER, &bad_name))
        .expect_error(&["portfolio"]);
    let mut no_tier = args;
    no_tier.extend_from_slice(&["--portfolio", "acme"]);
    cli.run(&send_contact(CUSTOMER, &no_tier))
        .expect_error(&["--messaging-tier"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn human_send_lines_and_dry_runs_show_the_pricing() {
    let s = Setup::start().await;
    s.customer_wrote(CUSTOMER, TimeDelta::minutes(5));
    let sent = s.cli.run(&send_contact(CUSTOMER, &[])).expect(0);
    assert!(sent.stdout.starts_with("sent"), "{}", sent.stdout);
    assert!(
        sent.stdout.contains("pricing: service, free"),
        "{}",
        sent.stdout
    );
    // A dry run outside the window, with a price file: the template's category, billed,
    // and the estimate.
    let cli = Cli::new();
    cli.run(&["record", BUSINESS, "254799999999", "--at", T0])
        .expect(0);
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/prices.sample.toml");
    let mut args = vec!["--dry-run", "--now", T0, "--prices", sample];
    args.extend_from_slice(&TEMPLATE);
    let plan = cli.run(&send_contact(CUSTOMER, &args)).expect(0);
    assert!(
        plan.stdout
            .contains("pricing: marketing, billed; estimate 0.0001 USD (market 254)"),
        "{}",
        plan.stdout
    );
    // send-template's dry run too.
    let plan = cli
        .run(&order_update(&[
            "--template-category",
            "utility",
            "--dry-run",
            "--now",
            T0,
        ]))
        .expect(0);
    assert!(
        plan.stdout.contains("pricing: utility, billed"),
        "{}",
        plan.stdout
    );
}
