//! `send-contact --dry-run` exits with the status the real send would (1 when it would be
//! rejected), names the real outcome in `would` (its `outcome` stays `dry-run`), and
//! prints no body for a message that would not be sent.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::TimeDelta;
use common::gateway::Setup;
use common::{BUSINESS, CUSTOMER, Cli, QUEUE, T0, TEMPLATE, at, send_contact};
use serde_json::Value;

/// A database where the customer wrote at T0, and the times an hour and 30 hours later.
fn wrote_at_t0() -> (Cli, String, String) {
    let cli = Cli::new();
    cli.run(&["record", BUSINESS, CUSTOMER, "--at", T0])
        .expect(0);
    (cli, at(TimeDelta::hours(1)), at(TimeDelta::hours(30)))
}

fn dry_run(cli: &Cli, now: &str, extra: &[&str]) -> common::Run {
    let mut args = vec!["--dry-run", "--now", now];
    args.extend_from_slice(extra);
    cli.run(&send_contact(CUSTOMER, &args))
}

#[test]
fn an_open_window_would_send_exit_0() {
    let (cli, open, _) = wrote_at_t0();
    let answer = dry_run(&cli, &open, &["--json"]).expect(0).json();
    assert_eq!(answer["outcome"], "dry-run");
    assert_eq!(answer["would"], "sent");
    assert_eq!(answer["decision"], "open");
    assert_eq!(answer["body"]["to"], "254712345678");
    assert_eq!(answer["template_body"], Value::Null);
}

#[test]
fn a_closed_window_under_reject_would_be_rejected_exit_1_and_shows_no_body() {
    let (cli, _, closed) = wrote_at_t0();
    let answer = dry_run(&cli, &closed, &["--json"]).expect(1).json();
    assert_eq!(answer["outcome"], "dry-run");
    assert_eq!(answer["would"], "rejected");
    assert_eq!(answer["reason"], "expired");
    assert_eq!(answer["body"], Value::Null);
    assert_eq!(answer["template_body"], Value::Null);
    let run = dry_run(&cli, &closed, &[]).expect(1);
    assert_eq!(
        run.stdout,
        "dry-run: nothing sent\n\
         decision: closed (expired): the contact card would not be sent; \
         --on-closed reject: it would be rejected and nothing would be sent\n"
    );
    // Never messaged reads as words, not as the JSON name.
    let run = cli
        .run(&send_contact(
            "254799999999",
            &["--dry-run", "--now", T0, "--on-closed", "reject"],
        ))
        .expect(1);
    assert!(run.stdout.contains("closed (never messaged)"), "{run:?}");
    assert!(!run.stdout.contains("never_messaged"), "{run:?}");
    assert!(!run.stdout.contains("POST"), "{run:?}");
}

#[test]
fn a_closed_window_under_template_would_reroute_exit_0_with_the_template_body_only() {
    let (cli, _, closed) = wrote_at_t0();
    let answer = dry_run(&cli, &closed, &[&["--json"][..], &TEMPLATE].concat())
        .expect(0)
        .json();
    assert_eq!(answer["outcome"], "dry-run");
    assert_eq!(answer["would"], "rerouted");
    assert_eq!(answer["body"], Value::Null);
    assert_eq!(answer["template_body"]["template"]["name"], "contact_share");
    let run = dry_run(&cli, &closed, &TEMPLATE).expect(0);
    assert!(
        run.stdout.contains("POST /api/v1/whatsapp/template"),
        "{run:?}"
    );
    assert!(
        !run.stdout.contains("POST /api/v1/whatsapp/contact"),
        "{run:?}"
    );
}

#[test]
fn a_closed_window_under_queue_would_queue_exit_0_with_both_bodies() {
    let (cli, _, closed) = wrote_at_t0();
    let answer = dry_run(&cli, &closed, &[&["--json"][..], &QUEUE].concat())
        .expect(0)
        .json();
    assert_eq!(answer["would"], "queued");
    assert_eq!(answer["body"]["messageId"], answer["message_id"]);
    assert_eq!(answer["template_body"]["template"]["name"], "contact_share");
    let run = dry_run(&cli, &closed, &QUEUE).expect(0);
    assert!(
        run.stdout.contains("POST /api/v1/whatsapp/contact"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("POST /api/v1/whatsapp/template"),
        "{run:?}"
    );
}

/// A `--message-id` already sent: the real send would print the earlier outcome and send
/// nothing, so the dry run says so, whatever the window is now.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_message_id_already_used_would_repeat_its_outcome_and_send_nothing() {
    let mut s = Setup::start().await;
    s.customer_wrote(CUSTOMER, TimeDelta::hours(1));
    let id = "ca739107-4b0d-4581-acb1-4c4af70555de";
    s.cli
        .run(&send_contact(CUSTOMER, &["--message-id", id]))
        .expect(0);
    s.cli.env_remove("LIPACHAT_API_KEY");
    // Two days on, the window is closed: a new send would be rejected, this one is a repeat.
    let later = common::gateway::text(chrono::Utc::now() + TimeDelta::days(2));
    let answer = dry_run(&s.cli, &later, &["--json", "--message-id", id])
        .expect(0)
        .json();
    assert_eq!(answer["outcome"], "dry-run");
    assert_eq!(answer["would"], "sent");
    assert_eq!(answer["duplicate"], true);
    assert_eq!(answer["body"], Value::Null);
    assert_eq!(answer["template_body"], Value::Null);
    let run = dry_run(&s.cli, &later, &["--message-id", id]).expect(0);
    assert!(run.stdout.contains("already"), "{run:?}");
    assert!(!run.stdout.contains("POST"), "{run:?}");
    assert_eq!(s.gateway.request_count(), 1);
}
