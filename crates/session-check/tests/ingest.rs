//! `ingest` run as a binary on real webhook bodies (the fixture corpus of
//! crates/api/tests/fixtures/webhooks, whose README cites each body's source): one line per
//! event with the contract's fields, redeliveries recognised, closures recorded at the
//! platform's time, nothing stored for a body that is not a webhook, and nothing ever sent.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{TimeDelta, Utc};
use common::{BUSINESS, CUSTOMER_DIGITS, Cli, QUEUE, fixture, send_contact};
use lipachat_testkit::StandInGateway;
use serde_json::{Value, json};

/// The contract's fields, in order, plus `moved_to`.
const FIELDS: [&str; 14] = [
    "event",
    "business",
    "customer",
    "group",
    "kind",
    "opens_window",
    "sent_at",
    "status",
    "error_code",
    "at",
    "duplicate",
    "state_after",
    "moved_to",
    "reason",
];

fn lines(cli: &Cli, args: &[&str]) -> Vec<Value> {
    let mut full = vec!["--json", "ingest"];
    full.extend_from_slice(args);
    let run = cli.run(&full).expect(0);
    for line in run.stdout.lines() {
        let keys = lipachat_testkit::keys_in_order(line).unwrap();
        assert_eq!(keys, FIELDS, "every line has every field: {line}");
    }
    run.json_lines()
}

#[test]
fn a_message_is_recorded_once_and_its_redelivery_is_a_duplicate() {
    let cli = Cli::new();
    let body = fixture("lipachat-inbound-text.json");
    let first = lines(&cli, &[&body]);
    assert_eq!(first.len(), 1);
    let line = &first[0];
    assert_eq!(line["event"], "inbound");
    assert_eq!(line["business"], BUSINESS);
    assert_eq!(line["customer"], CUSTOMER_DIGITS);
    assert_eq!(line["kind"], "text");
    assert_eq!(line["opens_window"], true);
    assert_eq!(line["duplicate"], false);
    assert_eq!(line["state_after"], "open");
    assert_eq!(line["group"], Value::Null);
    cli.run(&["status", BUSINESS, CUSTOMER_DIGITS]).expect(0);

    let again = lines(&cli, &[&body]);
    assert_eq!(again[0]["duplicate"], true, "{again:?}");
    assert_eq!(again[0]["state_after"], "open");
}

#[test]
fn a_131047_status_closes_the_window_at_the_platform_s_time() {
    let cli = Cli::new();
    let inbound = fixture("pywa-text.json");
    let now = Utc::now().to_rfc3339();
    // pywa's message is from 2023: received "now", its window is long closed; the
    // 131047 status names 2023 too and is recorded then.
    let first = lines(&cli, &[&inbound, "--received-at", &now]);
    assert_eq!(first[0]["sent_at"], "2023-10-11T16:53:43Z");
    assert_eq!(first[0]["state_after"], "closed");
    let closed = lines(&cli, &[&fixture("pywa-status-failed-131047.json")]);
    assert_eq!(closed[0]["event"], "window_closed");
    assert_eq!(closed[0]["error_code"], 131047);
    assert_eq!(closed[0]["at"], "2023-07-15T00:20:58Z");
    assert_eq!(closed[0]["customer"], "972987654321");
}

#[test]
fn a_batch_prints_one_line_per_event_in_payload_order() {
    let cli = Cli::new();
    let events = lines(&cli, &[&fixture("batch-several-entries-and-changes.json")]);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "inbound",
            "status",
            "ignored",
            "window_closed",
            "inbound",
            "inbound"
        ],
        "{events:#?}"
    );
    let ignored = &events[2];
    assert!(
        ignored["reason"]
            .as_str()
            .unwrap()
            .contains("smb_message_echoes")
    );
    // The group message opens the group's window, never the sender's. (Sent in 2025,
    // that window is long closed: the state is the group's.)
    let group = &events[5];
    let id = group["group"].as_str().unwrap();
    assert_eq!(group["state_after"], "closed");
    let sender = group["customer"].as_str().unwrap();
    let business = group["business"].as_str().unwrap();
    let status = |customer: &str| {
        cli.run(&["--json", "status", business, customer])
            .expect(1)
            .json_lines()[0]["state"]
            .clone()
    };
    assert_eq!(
        status(sender),
        "none",
        "the sender's 1:1 window was not touched"
    );
    assert_eq!(status(&format!("group:{id}")), "closed");
}

#[test]
fn system_number_changes_add_an_identity_moved_line() {
    let cli = Cli::new();
    let events = lines(&cli, &[&fixture("pywa-system-number-change.json")]);
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[0]["kind"], "system");
    assert_eq!(events[0]["opens_window"], false);
    assert_eq!(events[1]["event"], "identity_moved");
    assert_eq!(events[1]["customer"], "972987654321");
    assert_eq!(events[1]["moved_to"], "972912345678");
}

#[test]
fn a_user_known_only_by_business_scoped_id_is_named_by_it() {
    let cli = Cli::new();
    let events = lines(&cli, &[&fixture("meta-bsuid-contact-request.json")]);
    let inbound = events.iter().find(|e| e["event"] == "inbound").unwrap();
    assert_eq!(inbound["customer"], "US.13491208655302741918");
}

#[test]
fn what_is_not_a_webhook_is_refused_and_stores_nothing() {
    let cli = Cli::new();
    for (body, needle) in [
        ("{\"messageId\": ", "not JSON"),
        ("\"a string\"", "not a webhook"),
        ("{\"hello\": \"world\"}", "not a webhook"),
    ] {
        let run = cli.run_with_stdin(&["ingest", "-"], body);
        assert_eq!(run.code, 2, "{body}: {run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
        assert!(run.stderr.contains(needle), "{body}: {run:?}");
        assert!(run.stderr.contains("nothing was stored"), "{run:?}");
        assert!(!cli.db().exists(), "nothing is created for {body}");
    }
    // A webhook whose every event is ignored is still read: exit 0.
    let echo = lines(&cli, &[&fixture("pywa-message-echo.json")]);
    assert!(echo.iter().all(|e| e["event"] == "ignored"), "{echo:?}");
}

#[test]
fn business_and_default_country_fill_what_a_flat_payload_leaves_out() {
    let cli = Cli::new();
    let body = json!({"messageId": "m-77", "from": "0712 345 678", "type": "TEXT", "text": "hi"})
        .to_string();
    let run = cli.run_with_stdin(
        &[
            "--json",
            "ingest",
            "--business",
            BUSINESS,
            "--default-country",
            "254",
        ],
        &body,
    );
    let line = &run.expect(0).json_lines()[0];
    assert_eq!(line["business"], BUSINESS);
    assert_eq!(line["customer"], CUSTOMER_DIGITS);
    // Received two days ago: recorded then, and closed now.
    let cli = Cli::new();
    let long_ago = (Utc::now() - TimeDelta::days(2)).to_rfc3339();
    let body =
        json!({"messageId": "m-78", "from": CUSTOMER_DIGITS, "to": BUSINESS, "type": "TEXT"})
            .to_string();
    let run = cli.run_with_stdin(&["--json", "ingest", "--received-at", &long_ago], &body);
    assert_eq!(run.expect(0).json_lines()[0]["state_after"], "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_never_sends_queued_messages_wait_for_deliver() {
    let gateway = StandInGateway::start().await.unwrap();
    let cli = Cli::with_gateway(&gateway.base_url(), gateway.api_key());
    // The gateway runs on this runtime's other worker while the binary runs.
    let args = send_contact(CUSTOMER_DIGITS, &QUEUE);
    cli.run(&args).expect(0);
    let before = gateway.request_count();
    gateway.customer_writes(BUSINESS.parse().unwrap(), CUSTOMER_DIGITS.parse().unwrap());
    let events = lines(&cli, &[&fixture("lipachat-inbound-text.json")]);
    assert_eq!(events[0]["state_after"], "open");
    assert_eq!(gateway.request_count(), before, "ingest sent nothing");
    let pending = cli
        .run(&["--json", "pending", BUSINESS, CUSTOMER_DIGITS])
        .expect(0);
    assert_eq!(
        pending.json_lines().len(),
        1,
        "the card still waits: {pending:?}"
    );
    cli.run(&["deliver", BUSINESS, CUSTOMER_DIGITS]).expect(0);
    assert!(gateway.request_count() > before, "deliver sends it");
}

/// LipaChat's MESSAGE_STATUS names our `messageId` and no recipient: after a real send,
/// a 131047 in its `statusDesc` is tied back by the send's stored outcome, and the
/// closure is recorded in that conversation (no --business needed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lipachat_131047_status_is_tied_back_by_our_message_id() {
    let gateway = StandInGateway::start().await.unwrap();
    let cli = Cli::with_gateway(&gateway.base_url(), gateway.api_key());
    gateway.customer_writes(BUSINESS.parse().unwrap(), CUSTOMER_DIGITS.parse().unwrap());
    let opened = lines(&cli, &[&fixture("lipachat-inbound-text.json")]);
    assert_eq!(opened[0]["state_after"], "open");
    let send = |extra: &[&str]| {
        let mut args = vec!["--json"];
        args.extend_from_slice(extra);
        let sent = cli
            .run(&send_contact(CUSTOMER_DIGITS, &args))
            .expect(0)
            .json();
        assert_eq!(sent["outcome"], "sent", "{sent}");
        sent["message_id"].as_str().unwrap().to_owned()
    };
    // Under the reject policy a generated messageId stores no outcome (nothing would
    // use it): its report cannot be tied back, the documented limitation.
    let untraceable = send(&[]);
    let message_id = send(&QUEUE);

    let path = fixture("lipachat-message-status-failed-131047.json");
    let mut body: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    body["messageStatus"]["messageId"] = untraceable.into();
    let run = cli.run_with_stdin(&["--json", "ingest", "-"], &body.to_string());
    let lost = run.expect(0).json_lines();
    assert_eq!(lost[0]["event"], "window_closed");
    assert_eq!(lost[0]["customer"], Value::Null, "{lost:?}");
    assert_eq!(lost[0]["state_after"], Value::Null, "{lost:?}");
    cli.run(&["status", BUSINESS, CUSTOMER_DIGITS]).expect(0);

    body["messageStatus"]["messageId"] = message_id.into();
    let run = cli.run_with_stdin(&["--json", "ingest", "-"], &body.to_string());
    let closed = run.expect(0).json_lines();
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0]["event"], "window_closed");
    assert_eq!(closed[0]["error_code"], 131047);
    assert_eq!(closed[0]["business"], BUSINESS, "{closed:?}");
    assert_eq!(closed[0]["customer"], CUSTOMER_DIGITS);
    assert_eq!(closed[0]["state_after"], "closed", "{closed:?}");
    cli.run(&["status", BUSINESS, CUSTOMER_DIGITS]).expect(1);

    // A messageId no send here stored ties back to nothing: nothing is recorded.
    body["messageStatus"]["messageId"] = "0b6f1f9e-2d57-4c1e-9a53-7f1e3c2b9d10".into();
    let run = cli.run_with_stdin(&["--json", "ingest", "-"], &body.to_string());
    let unknown = run.expect(0).json_lines();
    assert_eq!(unknown[0]["customer"], Value::Null, "{unknown:?}");
    assert_eq!(unknown[0]["state_after"], Value::Null, "{unknown:?}");
}
