//! `--now` examines windows at another time; it never writes a time from the future into
//! the store, and nothing that reaches the gateway runs under it. And no output says
//! nothing was sent when a request left.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{TimeDelta, Utc};
use common::{BUSINESS, CUSTOMER, CUSTOMER_DIGITS, Cli, QUEUE, T0, send_contact};
use lipachat_testkit::StandInGateway;
use serde_json::json;

/// A time long after the real clock, which `--now` accepts.
const FAR: &str = "9999-01-01T00:00:00Z";

fn text(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[test]
fn record_under_a_future_now_stores_nothing() {
    let cli = Cli::new();
    // Something else is in the store, so status reads it rather than refusing a missing one.
    cli.run(&["record", BUSINESS, "254700000001"]).expect(0);
    cli.run(&["record", BUSINESS, CUSTOMER, "--now", FAR])
        .expect_error(&[
            "inbound time 9999-01-01T00:00:00Z",
            "ahead of the real clock",
            "nothing was stored",
        ]);
    let in_an_hour = text(Utc::now() + TimeDelta::hours(1));
    cli.run(&["record", BUSINESS, CUSTOMER, "--now", &in_an_hour])
        .expect_error(&[
            &format!("inbound time {in_an_hour}"),
            "ahead of the real clock",
        ]);
    // The real clock sees nothing recorded (not a window open until 10000).
    cli.run(&["status", BUSINESS, CUSTOMER, "--json"]).expect(1);
    let run = cli.run(&["export"]).expect(0);
    assert_eq!(run.json_lines().len(), 2, "header and the other window");
    // Under a past --now, recording history stays allowed.
    let run = cli
        .run(&["record", BUSINESS, CUSTOMER, "--now", T0, "--json"])
        .expect(0);
    assert_eq!(run.json()["last_inbound"], T0);
    // And under a future --now, a past --at is history too.
    let run = cli
        .run(&[
            "record", BUSINESS, CUSTOMER, "--now", FAR, "--at", T0, "--json",
        ])
        .expect(0);
    assert_eq!(run.json()["state"], "closed");
}

#[test]
fn import_refuses_a_time_from_the_future_and_imports_nothing() {
    let cli = Cli::new();
    let header = r#"{"kind":"header","format":"lipachat-session-export","version":1}"#;
    let past = format!(
        r#"{{"kind":"window","business":"{BUSINESS}","customer":"254700000001","last_inbound":"2026-11-23T10:00:00.000Z","gateway_closed_at":null}}"#
    );
    let future = format!(
        r#"{{"kind":"window","business":"{BUSINESS}","customer":"{CUSTOMER_DIGITS}","last_inbound":"9999-01-01T00:00:00.000Z","gateway_closed_at":null}}"#
    );
    cli.run_with_stdin(&["import"], &format!("{header}\n{past}\n{future}\n"))
        .expect_error(&[
            "import line 3",
            "inbound time 9999-01-01T00:00:00Z",
            "ahead of the real clock",
        ]);
    // Nothing was imported, not even the good line: the failed import left no store.
    cli.run(&["status", BUSINESS, "254700000001", "--now", T0])
        .expect_error(&["no store at"]);
    // A --now in the future changes nothing: import is checked against the real clock.
    cli.run_with_stdin(
        &["import", "--now", FAR],
        &format!("{header}\n{past}\n{future}\n"),
    )
    .expect_error(&["import line 3", "ahead of the real clock"]);
    cli.run_with_stdin(&["import", "--json"], &format!("{header}\n{past}\n"))
        .expect(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn sends_and_deliveries_refuse_now_unless_dry_run() {
    let gateway = StandInGateway::start().await.unwrap();
    let cli = Cli::with_gateway(&gateway.base_url(), gateway.api_key());
    let with = |extra: &[&'static str]| send_contact(CUSTOMER, extra);
    for now in [T0, FAR] {
        // Refused before any store is opened or created, and before any request.
        cli.run(&with(&["--now", now])).expect_error(&[
            "send-contact",
            "--now",
            "--dry-run",
            "real time",
        ]);
        cli.run(&with(&[&["--now", now][..], &QUEUE[..]].concat()))
            .expect_error(&["--now", "--dry-run"]);
        cli.run(&["deliver", BUSINESS, CUSTOMER, "--now", now])
            .expect_error(&["deliver", "--now", "real time"]);
        assert!(!cli.db().exists());
    }
    assert_eq!(gateway.request_count(), 0);

    // A dry run may examine any time: it sends nothing.
    cli.run(&["record", BUSINESS, CUSTOMER, "--now", T0])
        .expect(0);
    let run = cli
        .run(&with(&["--now", T0, "--dry-run", "--json"]))
        .expect(0);
    assert_eq!(run.json()["decision"], "open");
    assert_eq!(gateway.request_count(), 0);

    // --help says so.
    let help = cli.run_raw(&["--help"], None).expect(0).stdout;
    assert!(
        help.contains("Nothing that reaches the gateway runs under --now"),
        "{help}"
    );
    let help = cli.run_raw(&["record", "--help"], None).expect(0).stdout;
    assert!(help.contains("real clock"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_send_the_gateway_refused_never_says_nothing_was_sent() {
    let gateway = StandInGateway::start().await.unwrap();
    let cli = Cli::with_gateway(&gateway.base_url(), gateway.api_key());
    // Only this side heard from the customers: the gateway's windows are closed.
    for customer in [CUSTOMER, "254700000002"] {
        cli.run(&["record", BUSINESS, customer]).expect(0);
    }
    let send =
        |customer: &'static str, extra: &[&'static str]| cli.run(&send_contact(customer, extra));
    let run = send(CUSTOMER, &[]).expect(1);
    let refused = gateway.refusals();
    assert_eq!(refused.len(), 1, "the card went to the gateway");
    let id = &refused[0].message_id;
    assert!(!run.stdout.contains("nothing was sent"), "{run:#?}");
    assert_eq!(
        run.stdout,
        format!(
            "rejected: the gateway refused contact card {id} as outside the window (closed by the gateway); it was sent but not delivered\n"
        )
    );
    let run = send("254700000002", &["--json"]).expect(1);
    let refused = gateway.refusals();
    assert_eq!(refused.len(), 2);
    assert_eq!(
        run.json(),
        json!({
            "outcome": "rejected", "message_id": refused[1].message_id, "wa_id": null,
            "template_message_id": null, "reason": "closed_by_gateway",
            "refused_by_gateway": true, "category": null, "free": null
        })
    );
    // Now the closure is known: the next send is refused here, and only then is nothing
    // sent.
    let run = send(CUSTOMER, &[]).expect(1);
    assert_eq!(
        run.stdout,
        "rejected: the window is not open (closed by the gateway); nothing was sent\n"
    );
    assert_eq!(gateway.request_count(), 2);
}

/// `import` reads the redelivery memory's `seen` lines and counts them; `export` writes
/// them back. Their remember_until is an expiry and may lie ahead; their first_received
/// may not, and a malformed digest is refused by line with nothing imported.
#[test]
fn import_and_export_carry_the_redelivery_memory() {
    let cli = Cli::new();
    let now = Utc::now();
    let time = |at: chrono::DateTime<Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let header = r#"{"kind":"header","format":"lipachat-session-export","version":2}"#;
    let digest = "fbe7434df1f259dc8d85b8b7c2f3e86c";
    let seen = |digest: &str, first: chrono::DateTime<Utc>| {
        format!(
            r#"{{"kind":"seen","business":"{BUSINESS}","digest":"{digest}","first_received":"{}","remember_until":"{}"}}"#,
            time(first),
            time(now + TimeDelta::days(6))
        )
    };
    cli.run_with_stdin(
        &["import"],
        &format!("{header}\n{}\n", seen("fbe7434d", now)),
    )
    .expect_error(&["import line 2", "digest \"fbe7434d\"", "32 hex digits"]);
    cli.run_with_stdin(
        &["import"],
        &format!("{header}\n{}\n", seen(digest, now + TimeDelta::hours(1))),
    )
    .expect_error(&[
        "import line 2",
        "inbound receipt time",
        "ahead of the real clock",
    ]);
    let line = seen(digest, now - TimeDelta::days(1));
    let human = cli
        .run_with_stdin(&["import"], &format!("{header}\n{line}\n"))
        .expect(0);
    assert!(
        human.stdout.contains("1 remembered inbound id(s)"),
        "{}",
        human.stdout
    );
    let imported = cli
        .run_with_stdin(&["import", "--json"], &format!("{header}\n{line}\n"))
        .expect(0)
        .json();
    assert_eq!(imported["seen"], 1);
    let exported = cli.run(&["export"]).expect(0).json_lines();
    let seen_lines: Vec<_> = exported
        .iter()
        .filter(|line| line["kind"] == "seen")
        .collect();
    assert_eq!(seen_lines.len(), 1, "{exported:?}");
    assert_eq!(seen_lines[0]["digest"], digest);
    assert_eq!(
        seen_lines[0]["first_received"],
        time(now - TimeDelta::days(1))
    );
}
