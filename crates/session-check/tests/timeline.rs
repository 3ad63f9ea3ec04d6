//! `timeline BUSINESS CUSTOMER` draws what the store keeps of a conversation: the latest
//! inbound message, the window as a bar with the margin marked, the invitation, queued
//! and sent messages, closures, and now; then lists them by time.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{TimeDelta, Utc};
use common::gateway::Setup;
use common::{BUSINESS, CUSTOMER, CUSTOMER_DIGITS, Cli, QUEUE, T0, at, send_contact};
use lipachat_session::ManualClock;
use lipachat_testkit::StandInGateway;
use serde_json::Value;

#[test]
fn an_open_window_is_a_bar_with_its_margin_and_now_under_it() {
    let cli = Cli::new();
    cli.run(&["record", BUSINESS, CUSTOMER, "--at", T0])
        .expect(0);
    let now = at(TimeDelta::hours(12));
    let run = cli
        .run(&[
            "timeline", BUSINESS, CUSTOMER, "--now", &now, "--margin", "1h",
        ])
        .expect(0);
    let expected = [
        "254110090747 254712345678: open: closes 2026-11-24T10:00:00Z (in 12h 0m); \
         as at 2026-11-23T22:00:00Z, margin 1h"
            .to_owned(),
        String::new(),
        format!(
            "            2026-11-23 10:00{}2026-11-24 10:00",
            " ".repeat(28)
        ),
        "inbound     ●".to_owned(),
        format!("window      {}{}", "█".repeat(57), "▒".repeat(3)),
        format!("now         {}▲", " ".repeat(30)),
        String::new(),
        "2026-11-23T10:00:00Z  ● inbound message (the latest; earlier ones are not kept)"
            .to_owned(),
        "2026-11-23T22:00:00Z  ▲ now".to_owned(),
        "2026-11-24T09:00:00Z  ▒ the margin begins: free-form sends are refused from here"
            .to_owned(),
        "2026-11-24T10:00:00Z  █ the window ends, 24h after the inbound message".to_owned(),
    ];
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(&lines[..expected.len()], expected, "{}", run.stdout);

    // The default margin is the send path's: 60 seconds, one column at the bar's end.
    let run = cli
        .run(&["timeline", BUSINESS, CUSTOMER, "--now", &now])
        .expect(0);
    assert!(
        run.stdout
            .contains(&format!("window      {}▒\n", "█".repeat(59))),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("margin 1m"), "{}", run.stdout);
}

#[test]
fn a_customer_who_never_wrote_has_no_window_and_nothing_is_created() {
    let cli = Cli::new();
    cli.run(&["timeline", BUSINESS, CUSTOMER])
        .expect_error(&["no store at"]);
    assert!(!cli.db().exists());
    cli.run(&["record", BUSINESS, "254799999999", "--at", T0])
        .expect(0);
    let run = cli
        .run(&["timeline", BUSINESS, CUSTOMER, "--now", T0])
        .expect(0);
    assert!(
        run.stdout
            .starts_with("254110090747 254712345678: none: never messaged"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("window      never messaged: no window\n"),
        "{}",
        run.stdout
    );
    let answer = cli
        .run(&["timeline", BUSINESS, CUSTOMER, "--now", T0, "--json"])
        .expect(0)
        .json();
    assert_eq!(answer["state"], "none");
    assert_eq!(answer["events"].as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(answer["events"][0]["event"], "now");
}

/// A real run against the stand-in gateway: a card queued with an invitation while the
/// window was closed, delivered after the customer's reply; then a gateway 131047 (its
/// clock moved past the window) closes the window early and a second card waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_conversation_with_an_invitation_a_delivery_a_closure_and_a_queued_card() {
    let clock = ManualClock::at(Utc::now());
    let gateway = StandInGateway::builder()
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let s = Setup::on(gateway);
    s.customer_wrote(CUSTOMER, TimeDelta::hours(30));
    let queued = s.cli.run(&send_contact(CUSTOMER, &QUEUE)).expect(0);
    assert!(queued.stdout.starts_with("queued: "), "{queued:?}");
    let replied = s.customer_wrote(CUSTOMER, TimeDelta::hours(3));
    let delivered = s
        .cli
        .run(&["deliver", BUSINESS, CUSTOMER, "--json"])
        .expect(0)
        .json();
    let delivered_id = delivered["delivered"][0]["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The gateway's clock runs past its window; ours still thinks it open.
    clock.advance(TimeDelta::hours(25));
    let refused = s.cli.run(&send_contact(CUSTOMER, &QUEUE)).expect(0);
    assert!(refused.stdout.starts_with("queued: "), "{refused:?}");
    let waiting = s.cli.run(&["pending", "--json"]).expect(0).json();
    let waiting_id = waiting["message_id"].as_str().unwrap().to_owned();

    let answer = s
        .cli
        .run(&["timeline", BUSINESS, CUSTOMER, "--json"])
        .expect(0)
        .json();
    assert_eq!(answer["business"], BUSINESS);
    assert_eq!(answer["customer"], CUSTOMER_DIGITS);
    assert_eq!(answer["state"], "closed");
    assert_eq!(answer["last_inbound"], common::gateway::text(replied));
    let events = answer["events"].as_array().unwrap();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for kind in [
        "inbound",
        "invitation",
        "delivered",
        "closed_by_gateway",
        "queued",
        "margin",
        "window_end",
        "now",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let event = |kind: &str| -> &Value { events.iter().find(|e| e["event"] == kind).unwrap() };
    assert_eq!(event("delivered")["message_id"], delivered_id.as_str());
    assert_eq!(
        event("delivered")["wa_id"],
        s.gateway.delivered()[1].wa_id.as_str()
    );
    assert_eq!(event("queued")["message_id"], waiting_id.as_str());
    assert_eq!(event("inbound")["at"], common::gateway::text(replied));
    // In time order.
    let times: Vec<&str> = events.iter().map(|e| e["at"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort_by_key(|t| t.parse::<chrono::DateTime<Utc>>().unwrap());
    assert_eq!(times, sorted);

    let run = s.cli.run(&["timeline", BUSINESS, CUSTOMER]).expect(0);
    let shown = &run.stdout;
    let lane = |name: &str| -> &str {
        shown
            .lines()
            .find(|line| line.starts_with(&format!("{name:<12}")))
            .unwrap_or_else(|| panic!("no {name} lane in\n{shown}"))
    };
    assert!(lane("inbound").contains('●'), "{shown}");
    assert!(lane("window").contains('█'), "{shown}");
    // Closed by the gateway before its end: the rest of the window is dotted.
    assert!(lane("window").contains('·'), "{shown}");
    assert!(!lane("window").contains('▒'), "{shown}");
    assert!(
        shown.contains("· the window would have ended, 24h after the inbound message"),
        "{shown}"
    );
    assert!(lane("invitation").contains('◆'), "{shown}");
    assert!(lane("queued").contains('○'), "{shown}");
    assert!(lane("sent").contains('✓'), "{shown}");
    assert!(lane("closed").contains('✕'), "{shown}");
    assert!(lane("now").contains('▲'), "{shown}");
    assert!(
        shown.contains(&format!(
            "✓ delivered {delivered_id} after the customer's reply: contact card \"Support desk\""
        )),
        "{shown}"
    );
    assert!(
        shown.contains(&format!(
            "○ queued {waiting_id}: contact card \"Support desk\" (254700000001)"
        )),
        "{shown}"
    );
    assert!(shown.contains("✕ closed by the gateway"), "{shown}");
    assert!(shown.contains("◆ invitation template "), "{shown}");
    assert!(shown.contains("Not stored, so not drawn"), "{shown}");
}
