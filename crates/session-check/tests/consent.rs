//! `optout`, `optin`, `costs`, `status --json`'s consent fields, and send-contact's
//! predicted `category` and `free` (issue 16), against a real database, the stand-in
//! gateway on loopback and ingested webhook bodies.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::TimeDelta;
use common::gateway::Setup;
use common::{BUSINESS, CUSTOMER, CUSTOMER_DIGITS, Cli, T0, TEMPLATE, at, send_contact};
use serde_json::Value;

/// A WhatsApp webhook body: the customer's text now, from a click-to-WhatsApp ad (a
/// `referral` with `ctwa_clid`, in the shape of pywa's referral fixture) when `referral`.
fn inbound_body(text: &str, referral: bool) -> String {
    let mut message = serde_json::json!({
        "from": CUSTOMER_DIGITS, "id": format!("wamid.{text}{referral}"),
        "timestamp": chrono::Utc::now().timestamp().to_string(), "type": "text", "text": {"body": text}
    });
    if referral {
        message["referral"] =
            serde_json::json!({"source_type": "ad", "source_id": "AD", "ctwa_clid": "CLID"});
    }
    serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": BUSINESS, "phone_number_id": "1"},
        "messages": [message]
    }}]}]})
    .to_string()
}

fn status(cli: &Cli, now: &str) -> Value {
    cli.run(&["status", BUSINESS, CUSTOMER, "--now", now, "--json"])
        .json()
}

#[test]
fn optout_refuses_marketing_templates_until_optin() {
    let cli = Cli::new();
    let out = cli
        .run(&["optout", BUSINESS, CUSTOMER, "--now", T0, "--json"])
        .expect(0)
        .json();
    assert_eq!(
        (out["outcome"].as_str(), out["marketing"].as_str()),
        (Some("opted_out"), Some("opted_out"))
    );
    let later = at(TimeDelta::hours(1));
    let answer = status(&cli, &later);
    assert_eq!(answer["marketing"], "opted_out");
    assert_eq!(answer["marketing_retry_at"], Value::Null);
    assert_eq!(answer["free_entry_point_until"], Value::Null);
    assert_eq!(answer["state"], "none", "the window object is still there");
    // A marketing template (the default category) would be refused: rejected, exit 1.
    let mut args = vec!["--dry-run", "--now", later.as_str(), "--json"];
    args.extend_from_slice(&TEMPLATE);
    let plan = cli.run(&send_contact(CUSTOMER, &args)).expect(1).json();
    assert_eq!(
        (plan["would"].as_str(), plan["reason"].as_str()),
        (Some("rejected"), Some("opted_out"))
    );
    assert_eq!(plan["template_body"], Value::Null);
    // A utility template is not.
    let mut utility = args.clone();
    utility.extend_from_slice(&["--template-category", "utility"]);
    let plan = cli.run(&send_contact(CUSTOMER, &utility)).expect(0).json();
    assert_eq!(plan["would"], "rerouted");
    assert_eq!(
        (plan["category"].as_str(), plan["free"].as_bool()),
        (Some("utility"), Some(false))
    );
    // optin: marketing is allowed again.
    cli.run(&["optin", BUSINESS, CUSTOMER, "--now", &later])
        .expect(0);
    assert_eq!(status(&cli, &later)["marketing"], "allowed");
    let plan = cli.run(&send_contact(CUSTOMER, &args)).expect(0).json();
    assert_eq!(
        (plan["would"].as_str(), plan["category"].as_str()),
        (Some("rerouted"), Some("marketing"))
    );
}

#[test]
fn a_stale_optin_does_not_undo_a_later_optout() {
    let cli = Cli::new();
    cli.run(&[
        "optout",
        BUSINESS,
        CUSTOMER,
        "--now",
        &at(TimeDelta::hours(2)),
    ])
    .expect(0);
    let run = cli
        .run(&["optin", BUSINESS, CUSTOMER, "--now", T0])
        .expect(0);
    assert!(
        run.stdout.contains("a later choice is recorded"),
        "{}",
        run.stdout
    );
    assert_eq!(
        status(&cli, &at(TimeDelta::hours(3)))["marketing"],
        "opted_out"
    );
}

/// `--now` far ahead cannot store a marketing choice (it would pin itself against every
/// later real one): exit 2, naming the time, and nothing stored.
#[test]
fn a_future_now_cannot_store_a_marketing_choice() {
    let cli = Cli::new();
    let run = cli.run(&["optin", BUSINESS, CUSTOMER, "--now", "2100-01-01T00:00:00Z"]);
    let run = run.expect(2);
    assert!(run.stderr.contains("ahead"), "{}", run.stderr);
    // A real opt-out now is not undone by anything stored in 2100.
    cli.run(&["optout", BUSINESS, CUSTOMER]).expect(0);
    assert_eq!(
        cli.run(&["status", BUSINESS, CUSTOMER, "--json"]).json()["marketing"],
        "opted_out"
    );
}

#[test]
fn a_bad_template_category_or_price_file_is_a_usage_error() {
    let cli = Cli::new();
    let mut args = vec!["--dry-run", "--now", T0, "--template-category", "service"];
    args.extend_from_slice(&TEMPLATE);
    cli.run(&send_contact(CUSTOMER, &args))
        .expect_error(&["not a template category"]);
    let prices = cli.dir().join("prices.toml");
    std::fs::write(
        &prices,
        "currency = \"USD\"\n[markets.254]\nmarketing = -1\n",
    )
    .unwrap();
    let mut args = vec![
        "--dry-run",
        "--now",
        T0,
        "--prices",
        prices.to_str().unwrap(),
    ];
    args.extend_from_slice(&TEMPLATE);
    cli.run(&send_contact(CUSTOMER, &args)).expect_error(&[
        "market 254",
        "marketing",
        "not a price",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_prints_its_category_and_free_and_costs_counts_it() {
    let s = Setup::start().await;
    s.customer_wrote(CUSTOMER, TimeDelta::minutes(5));
    let sent = s
        .cli
        .run(&send_contact(CUSTOMER, &["--json"]))
        .expect(0)
        .json();
    assert_eq!(sent["outcome"], "sent");
    // Service messages inside the window: free (within the monthly free tier from
    // 1 October 2026).
    assert_eq!(
        (sent["category"].as_str(), sent["free"].as_bool()),
        (Some("service"), Some(true))
    );
    let costs = s
        .cli
        .run(&["costs", BUSINESS, "--json"])
        .expect(0)
        .json_lines();
    assert_eq!(costs.len(), 1, "{costs:?}");
    assert_eq!(costs[0]["sends"], 1);
    assert_eq!(costs[0]["predicted"]["service"], 1);
    assert_eq!(costs[0]["unreported"], 1, "no status reported pricing yet");
    let human = s.cli.run(&["costs"]).expect(0);
    assert!(
        human
            .stdout
            .contains("LipaChat's status callback carries none"),
        "{}",
        human.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingested_stop_and_referral_show_in_status() {
    let s = Setup::start().await;
    s.cli
        .run_with_stdin(&["ingest"], &inbound_body("hello from the ad", true))
        .expect(0);
    s.gateway.customer_writes(
        common::gateway::phone(BUSINESS),
        common::gateway::phone(CUSTOMER_DIGITS),
    );
    let sent = s
        .cli
        .run(&send_contact(CUSTOMER, &["--json"]))
        .expect(0)
        .json();
    assert_eq!(sent["free"], true);
    let answer = s
        .cli
        .run(&["status", BUSINESS, CUSTOMER, "--json"])
        .expect(0)
        .json();
    assert!(answer["free_entry_point_until"].is_string(), "{answer}");
    assert_eq!(answer["free_entry_point_confirmed"], false);
    s.cli
        .run_with_stdin(&["ingest"], &inbound_body("Stop", false))
        .expect(0);
    let answer = s
        .cli
        .run(&["status", BUSINESS, CUSTOMER, "--json"])
        .expect(0)
        .json();
    assert_eq!(answer["marketing"], "opted_out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeline_lists_the_free_entry_point_window() {
    let s = Setup::start().await;
    s.cli
        .run_with_stdin(&["ingest"], &inbound_body("hi", true))
        .expect(0);
    let before = s
        .cli
        .run(&["timeline", BUSINESS, CUSTOMER])
        .expect(0)
        .stdout;
    assert!(
        !before.contains("free entry point"),
        "no window before the reply: {before}"
    );
    s.gateway.customer_writes(
        common::gateway::phone(BUSINESS),
        common::gateway::phone(CUSTOMER_DIGITS),
    );
    s.cli.run(&send_contact(CUSTOMER, &[])).expect(0);
    let after = s
        .cli
        .run(&["timeline", BUSINESS, CUSTOMER, "--json"])
        .expect(0)
        .json();
    let kinds: Vec<&str> = after["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert!(
        kinds.contains(&"free_entry_point") && kinds.contains(&"free_entry_point_end"),
        "{after}"
    );
    let human = s
        .cli
        .run(&["timeline", BUSINESS, CUSTOMER])
        .expect(0)
        .stdout;
    assert!(
        human.contains("the free entry point window ends (predicted)"),
        "{human}"
    );
}

#[test]
fn the_sample_price_file_parses_and_a_dry_run_estimates_with_it() {
    let cli = Cli::new();
    cli.run(&["record", BUSINESS, "254799999999", "--at", T0])
        .expect(0);
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/prices.sample.toml");
    let mut args = vec!["--dry-run", "--now", T0, "--json", "--prices", sample];
    args.extend_from_slice(&TEMPLATE);
    let plan = cli.run(&send_contact(CUSTOMER, &args)).expect(0).json();
    assert_eq!(plan["would"], "rerouted");
    assert_eq!(plan["category"], "marketing");
    assert_eq!(plan["estimate"]["market"], "254");
    assert_eq!(plan["estimate"]["currency"], "USD");
    assert_eq!(plan["estimate"]["amount"], "0.0001");
}

/// `export` carries a customer's opt-out and back-off (format version 3, now 4) and `import`
/// restores them into a new database: before, they were left out, and a store moved by
/// export and import sent marketing to customers who had opted out.
#[test]
fn export_and_import_carry_an_opt_out() {
    let cli = Cli::new();
    cli.run(&["optout", BUSINESS, CUSTOMER, "--now", T0, "--json"])
        .expect(0);
    let exported = cli.run(&["export"]).expect(0).stdout;
    assert!(
        exported.contains("\"kind\":\"consent\"") && exported.contains("\"version\":4"),
        "{exported}"
    );
    let moved = Cli::new();
    let imported = moved
        .run_with_stdin(&["import", "--json"], &exported)
        .expect(0)
        .json();
    assert_eq!(imported["consents"], 1, "{imported}");
    let answer = status(&moved, &at(TimeDelta::hours(1)));
    assert_eq!(answer["marketing"], "opted_out");
}
