//! Hostile review of issue 16, second round: `ingest` of consent-bearing webhooks dated
//! ahead of the real clock. A STOP keyword and a `user_preferences` resume dated 2100
//! are refused (the skew rule); a failed status naming 131050 or 131049, dated and
//! received in 2100 (`--received-at`, or `--now`), must be refused as well, or it stores
//! an opt-out no later real opt-in can undo, or a back-off lasting until 2100. Real
//! database on a temp dir.
//!
//! A test marked `#[ignore = "hole: ..."]` fails on the code it was written against: it
//! documents a hole, and passes once the hole is fixed.
#![allow(clippy::unwrap_used)]

mod common;

use common::{BUSINESS, CUSTOMER, CUSTOMER_DIGITS, Cli};
use serde_json::{Value, json};

const FUTURE: &str = "2100-01-01T00:00:00Z";

fn future_ts() -> i64 {
    FUTURE
        .parse::<chrono::DateTime<chrono::Utc>>()
        .unwrap()
        .timestamp()
}

fn envelope(field: &str, value: Value) -> String {
    let mut value = value;
    value["messaging_product"] = "whatsapp".into();
    value["metadata"] = json!({"display_phone_number": BUSINESS, "phone_number_id": "1"});
    json!({"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [{"field": field, "value": value}]}]})
        .to_string()
}

fn failed_status(code: u32) -> String {
    envelope(
        "messages",
        json!({"statuses": [{"id": "wamid.out1", "status": "failed",
            "timestamp": future_ts().to_string(), "recipient_id": CUSTOMER_DIGITS,
            "errors": [{"code": code, "title": "refused"}]}]}),
    )
}

fn marketing(cli: &Cli) -> Value {
    // Exit 1 when no window is open; the JSON is printed either way.
    cli.run(&["status", BUSINESS, CUSTOMER, "--json"]).json()
}

/// The keyword path holds: a STOP dated and received in 2100 stores nothing.
#[test]
fn a_future_stop_keyword_is_refused_by_ingest() {
    let cli = Cli::new();
    let body = envelope(
        "messages",
        json!({"messages": [{"from": CUSTOMER_DIGITS, "id": "wamid.stop",
            "timestamp": future_ts().to_string(), "type": "text", "text": {"body": "STOP"}}]}),
    );
    let run = cli.run_with_stdin(&["ingest", "--received-at", FUTURE], &body);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert_eq!(marketing(&cli)["marketing"], "allowed");
}

/// A 131050 status from 2100, then a real opt-in now: the customer must be opted in.
#[test]
fn a_future_131050_status_cannot_pin_an_opt_out() {
    let cli = Cli::new();
    let run = cli.run_with_stdin(
        &["ingest", "--received-at", FUTURE],
        &failed_status(131_050),
    );
    let ingested = (run.code, run.stdout.clone(), run.stderr.clone());
    cli.run(&["optin", BUSINESS, CUSTOMER]).expect(0);
    let answer = marketing(&cli);
    assert_eq!(
        answer["marketing"], "allowed",
        "ingest answered {ingested:?}; after a real optin: {answer}"
    );
}

/// A 131049 status from 2100 (through `--now`): the back-off must not reach 2100.
#[test]
fn a_future_131049_status_cannot_pin_a_back_off() {
    let cli = Cli::new();
    let run = cli.run_with_stdin(&["ingest", "--now", FUTURE], &failed_status(131_049));
    let ingested = (run.code, run.stdout.clone(), run.stderr.clone());
    let answer = marketing(&cli);
    assert_ne!(
        answer["marketing"], "limited",
        "ingest answered {ingested:?}; now: {answer}"
    );
}

/// A send whose answer is 131050, run with `--now` in 2100: the opt-out is recorded at
/// the send's time. If the send is allowed at all with that `--now`, the opt-out must
/// not be stored in 2100: a real `optin` afterwards must opt the customer back in.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_send_answer_under_a_future_now_cannot_pin_an_opt_out() {
    use common::gateway::{Setup, phone};
    use lipachat_testkit::MarketingAnswer;
    let s = Setup::start().await;
    s.offer_contact_share(BUSINESS);
    s.gateway
        .answer_templates_with(phone(CUSTOMER), Some(MarketingAnswer::OptedOut));
    let run = s.cli.run(&[
        "send-template",
        BUSINESS,
        CUSTOMER,
        "--template",
        "contact_share",
        "--language",
        "en",
        "--now",
        FUTURE,
        "--json",
    ]);
    let sent = (run.code, run.stdout.clone(), run.stderr.clone());
    s.gateway.answer_templates_with(phone(CUSTOMER), None);
    s.cli.run(&["optin", BUSINESS, CUSTOMER]).expect(0);
    let answer = marketing(&s.cli);
    assert_eq!(
        answer["marketing"], "allowed",
        "send answered {sent:?}; after a real optin: {answer}"
    );
}
