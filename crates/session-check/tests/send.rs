//! The send path: send-contact, pending and deliver, run as the built binary against a
//! temporary database and the stand-in gateway on loopback. Sends and deliveries run on the
//! real clock (they refuse `--now`), so the customer's messages are placed at times before
//! it; dry runs and `pending` may still examine a fixed `--now`.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{DateTime, TimeDelta, Utc};
use common::gateway::{Setup, customer_wrote, text};
use common::{BUSINESS, CUSTOMER, CUSTOMER_DIGITS, Cli, QUEUE, T0, TEMPLATE, at, send_contact};
use lipachat_testkit::MessageKind;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn an_open_window_sends_the_card() {
    let s = Setup::start().await;
    let wrote = s.customer_wrote(CUSTOMER, TimeDelta::hours(1));
    let run = s
        .cli
        .run(&send_contact(
            CUSTOMER,
            &["--json", "--phone-type", "Work", "--wa-id", "254700000001"],
        ))
        .expect(0);
    let delivered = s.gateway.delivered();
    assert_eq!(delivered.len(), 1);
    let card = &delivered[0];
    assert_eq!(card.kind, MessageKind::Contact);
    assert_eq!(
        run.json(),
        json!({
            "outcome": "sent", "message_id": card.message_id, "wa_id": card.wa_id,
            "template_message_id": null, "reason": null,
            "category": "service", "free": true
        })
    );
    assert_eq!(
        card.body,
        json!({
            "messageId": card.message_id, "from": BUSINESS, "to": CUSTOMER_DIGITS,
            "name": {"formattedName": "Support desk"},
            "phones": [{"phone": "254700000001", "type": "Work", "waId": "254700000001"}]
        })
    );

    // Human form; --phone-type defaults to Cell, and no waId without --wa-id.
    let run = s.cli.run(&send_contact(CUSTOMER, &[])).expect(0);
    let card = &s.gateway.delivered()[1];
    assert_eq!(
        run.stdout,
        format!(
            "sent: contact card {} (WhatsApp message id {}); the window closes {}\n\
             predicted pricing: service, free (service_free_tier)\n",
            card.message_id,
            card.wa_id,
            text(wrote + TimeDelta::hours(24))
        )
    );
    assert_eq!(
        card.body["phones"],
        json!([{"phone": "254700000001", "type": "Cell"}])
    );
    assert_eq!(s.gateway.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_closed_window_is_rejected_without_a_request() {
    let s = Setup::start().await;
    let rejected = |reason: &str| {
        json!({
            "outcome": "rejected", "message_id": null, "wa_id": null,
            "template_message_id": null, "reason": reason, "category": null, "free": null
        })
    };
    // Never messaged (the database exists: another conversation is in it).
    s.customer_wrote("254799999999", TimeDelta::zero());
    let run = s.cli.run(&send_contact(CUSTOMER, &["--json"])).expect(1);
    assert_eq!(run.json(), rejected("never_messaged"));

    // Expired.
    s.customer_wrote(CUSTOMER, TimeDelta::hours(24));
    let run = s.cli.run(&send_contact(CUSTOMER, &["--json"])).expect(1);
    assert_eq!(run.json(), rejected("expired"));
    let run = s.cli.run(&send_contact(CUSTOMER, &[])).expect(1);
    assert_eq!(
        run.stdout,
        "rejected: the window is not open (expired); nothing was sent\n"
    );

    // Open, but closing within the 60-second margin (in 45 seconds, less the time taken).
    s.customer_wrote(CUSTOMER, TimeDelta::hours(24) - TimeDelta::seconds(45));
    let run = s.cli.run(&send_contact(CUSTOMER, &["--json"])).expect(1);
    assert_eq!(run.json(), rejected("closing_within_margin"));
    assert_eq!(s.gateway.request_count(), 0);
    // A smaller margin lets it go.
    let run = s
        .cli
        .run(&send_contact(CUSTOMER, &["--json", "--margin", "10"]))
        .expect(0);
    assert_eq!(run.json()["outcome"], "sent");
    assert_eq!(s.gateway.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_closed_window_reroutes_to_one_template() {
    let s = Setup::start().await;
    s.customer_wrote("254799999999", TimeDelta::zero());
    let reroute = [
        &["--json"][..],
        &TEMPLATE,
        &["--param", "Jane", "--param", "2000"],
    ]
    .concat();
    let run = s.cli.run(&send_contact(CUSTOMER, &reroute)).expect(0);
    let delivered = s.gateway.delivered();
    assert_eq!(delivered.len(), 1);
    let template = &delivered[0];
    assert_eq!(template.kind, MessageKind::Template);
    assert_eq!(
        run.json(),
        json!({
            "outcome": "rerouted", "message_id": null, "wa_id": template.wa_id,
            "template_message_id": template.message_id, "reason": "never_messaged",
            // The stand-in has no catalog for this business: the template went unchecked.
            "template_category": null, "catalog": "unchecked",
            "category": "marketing", "free": false
        })
    );
    assert_eq!(
        template.body["template"],
        json!({
            "name": "contact_share", "languageCode": "en",
            "components": {"body": {"placeholders": ["Jane", "2000"]}}
        })
    );
    // The invitation already went for this closed window: no second template.
    let run = s.cli.run(&send_contact(CUSTOMER, &reroute)).expect(0);
    assert_eq!(
        run.json(),
        json!({
            "outcome": "rerouted", "message_id": null, "wa_id": null,
            "template_message_id": null, "reason": "never_messaged",
            "category": null, "free": null
        })
    );
    let run = s.cli.run(&send_contact(CUSTOMER, &reroute[1..])).expect(0);
    assert_eq!(
        run.stdout,
        "rerouted: the window is not open (never messaged); the contact card was dropped; \
         no template sent: an invitation already went for this closed window\n"
    );
    assert_eq!(s.gateway.delivered_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_queued_card_waits_in_pending_and_deliver_sends_it_after_the_reply() {
    let s = Setup::start().await;
    s.customer_wrote(CUSTOMER, TimeDelta::hours(30));
    let mut queue = QUEUE.to_vec();
    queue.push("--json");
    let run = s.cli.run(&send_contact(CUSTOMER, &queue)).expect(0);
    let answer = run.json();
    let template = &s.gateway.delivered()[0];
    assert_eq!(template.kind, MessageKind::Template);
    let queued_id = answer["message_id"].as_str().unwrap().to_owned();
    assert_eq!(
        answer,
        json!({
            "outcome": "queued", "message_id": queued_id, "wa_id": template.wa_id,
            "template_message_id": template.message_id, "reason": "expired",
            "template_category": null, "catalog": "unchecked",
            "category": "marketing", "free": false
        })
    );

    // pending, seen ten minutes after it was queued: every conversation, and this one.
    let listed = s.cli.run(&["pending", "--json"]).expect(0).json();
    let queued_at = listed["queued_at"].as_str().unwrap().to_owned();
    let queued: DateTime<Utc> = queued_at.parse().unwrap();
    let later = text(queued + TimeDelta::minutes(10));
    let expected = json!({
        "business": BUSINESS, "customer": CUSTOMER_DIGITS, "message_id": queued_id,
        "kind": "contact",
        "message": {
            "formatted_name": "Support desk",
            "phones": [{"phone": "254700000001", "phone_type": "Cell"}]
        },
        "queued_at": queued_at, "age_secs": 600
    });
    let run = s.cli.run(&["pending", "--json", "--now", &later]).expect(0);
    assert_eq!(run.json(), expected);
    let run = s
        .cli
        .run(&["pending", BUSINESS, CUSTOMER, "--now", &later])
        .expect(0);
    assert_eq!(
        run.stdout,
        format!(
            "254110090747 254712345678 {queued_id}: contact card \"Support desk\" (254700000001), \
             queued {queued_at} (10m 0s ago)\n"
        )
    );
    // Seen from before it was queued, its age is negative.
    let before = text(queued - TimeDelta::minutes(1));
    let run = s
        .cli
        .run(&["pending", "--json", "--now", &before])
        .expect(0);
    assert_eq!(run.json()["age_secs"], -60);
    let run = s.cli.run(&["pending", "--now", &before]).expect(0);
    assert!(
        run.stdout.ends_with("(queued after the given --now)\n"),
        "{run:?}"
    );
    let run = s.cli.run(&["pending", BUSINESS, "254799999999"]).expect(0);
    assert_eq!(run.stdout, "no messages queued\n");

    // The window is still closed: deliver leaves it queued, exit 1, nothing sent.
    let run = s
        .cli
        .run(&["deliver", BUSINESS, CUSTOMER, "--json"])
        .expect(1);
    assert_eq!(
        run.json(),
        json!({
            "business": BUSINESS, "customer": CUSTOMER_DIGITS, "delivered": [],
            "expired": [], "failed": [], "remaining": 1,
            "stopped": "window_not_open", "reason": "expired"
        })
    );
    assert_eq!(s.gateway.request_count(), 1);

    // The customer replies: deliver sends the card with the id it was queued under.
    s.customer_wrote(CUSTOMER, TimeDelta::zero());
    let run = s
        .cli
        .run(&["deliver", BUSINESS, CUSTOMER, "--json"])
        .expect(0);
    let card = &s.gateway.delivered()[1];
    assert_eq!(card.kind, MessageKind::Contact);
    assert_eq!(card.message_id, queued_id);
    assert_eq!(
        run.json(),
        json!({
            "business": BUSINESS, "customer": CUSTOMER_DIGITS,
            "delivered": [{"message_id": queued_id, "wa_id": card.wa_id, "queued_at": queued_at}],
            "expired": [], "failed": [], "remaining": 0, "stopped": null, "reason": null
        })
    );
    let run = s.cli.run(&["pending"]).expect(0);
    assert_eq!(run.stdout, "no messages queued\n");
    let run = s.cli.run(&["deliver", BUSINESS, CUSTOMER]).expect(0);
    assert_eq!(
        run.stdout,
        "0 delivered, 0 expired, 0 failed; 0 still queued\n"
    );
    assert_eq!(s.gateway.delivered_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn deliver_keeps_the_message_when_the_gateway_fails_and_expires_old_ones() {
    let s = Setup::start().await;
    s.customer_wrote(CUSTOMER, TimeDelta::hours(25));
    s.cli.run(&send_contact(CUSTOMER, &QUEUE)).expect(0);
    s.customer_wrote(CUSTOMER, TimeDelta::zero());

    s.gateway.fail_next(1, 500);
    let run = s.cli.run(&[
        "deliver",
        BUSINESS,
        CUSTOMER,
        "--json",
        "--max-retries",
        "0",
    ]);
    run.json_error_line(&["delivery failed", "stays queued", "HTTP 500"]);
    let report = run.json();
    assert_eq!(report["remaining"], 1);
    assert_eq!(report["stopped"], "send_failed");
    s.cli.run(&["pending", "--json"]).expect(0).json();
    let run = s.cli.run(&["deliver", BUSINESS, CUSTOMER]).expect(0);
    assert!(run.stdout.starts_with("delivered "), "{run:?}");
    assert!(
        run.stdout
            .ends_with("1 delivered, 0 expired, 0 failed; 0 still queued\n")
    );

    // A message the gateway refuses for good (HTTP 400) leaves the queue: exit 2.
    let other = "254799999999";
    s.cli.run(&send_contact(other, &QUEUE)).expect(0);
    s.customer_wrote(other, TimeDelta::zero());
    s.gateway.fail_next(1, 400);
    let run = s.cli.run(&["deliver", BUSINESS, other, "--json"]);
    run.json_error_line(&["refused by the gateway as invalid", "HTTP 400"]);
    let report = run.json();
    assert_eq!(report["failed"].as_array().unwrap().len(), 1);
    assert_eq!(report["remaining"], 0);
    let run = s.cli.run(&["pending"]).expect(0);
    assert_eq!(run.stdout, "no messages queued\n");

    // A message queued more than seven days ago expires instead of going out. Its age
    // comes from a backup (sends run on the real clock, so none can be queued in the past).
    let third = "254788888888";
    s.cli.run(&send_contact(third, &QUEUE)).expect(0);
    let ten_days_ago = text(Utc::now() - TimeDelta::days(10));
    let backup: String = s
        .cli
        .run(&["export"])
        .expect(0)
        .json_lines()
        .into_iter()
        .map(|mut line| {
            if line["kind"] == "queued" {
                line["queued_at"] = json!(ten_days_ago);
            }
            format!("{line}\n")
        })
        .collect();
    let restored = Cli::with_gateway(&s.gateway.base_url(), s.gateway.api_key());
    restored.run_with_stdin(&["import"], &backup).expect(0);
    customer_wrote(&s.gateway, &restored, third, TimeDelta::zero());
    let report = restored
        .run(&["deliver", BUSINESS, third, "--json"])
        .expect(0)
        .json();
    assert_eq!(report["expired"].as_array().unwrap().len(), 1);
    assert_eq!(report["delivered"], json!([]));
    assert_eq!(report["remaining"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn dry_run_prints_the_decision_and_body_and_needs_no_key() {
    let mut s = Setup::start().await;
    // A dry run sends nothing, so it may examine a fixed time.
    s.cli
        .run(&["record", BUSINESS, CUSTOMER, "--now", T0])
        .expect(0);
    s.cli.env_remove("LIPACHAT_API_KEY");
    let now = at(TimeDelta::hours(1));
    let id = "ca739107-4b0d-4581-acb1-4c4af70555de";

    let run = s
        .cli
        .run(&send_contact(
            CUSTOMER,
            &["--dry-run", "--json", "--message-id", id, "--now", &now],
        ))
        .expect(0);
    assert_eq!(
        run.json(),
        json!({
            "outcome": "dry-run", "would": "sent", "message_id": id, "wa_id": null,
            "template_message_id": null, "reason": null, "decision": "open",
            "on_closed": "reject", "category": "service", "free": true,
            "body": {
                "messageId": id, "from": BUSINESS, "to": CUSTOMER_DIGITS,
                "name": {"formattedName": "Support desk"},
                "phones": [{"phone": "254700000001", "type": "Cell"}]
            },
            "template_body": null
        })
    );

    // Closed, with queue: the template that would go instead is shown too.
    let mut args = QUEUE.to_vec();
    args.extend(["--dry-run", "--json", "--param", "Jane", "--now", &now]);
    let run = s.cli.run(&send_contact("254799999999", &args)).expect(0);
    let answer = run.json();
    assert_eq!(answer["decision"], "closed");
    assert_eq!(answer["reason"], "never_messaged");
    assert_eq!(answer["on_closed"], "queue");
    assert_eq!(answer["body"]["messageId"], answer["message_id"]);
    assert_eq!(answer["body"]["to"], "254799999999");
    assert_eq!(
        answer["template_body"]["template"],
        json!({
            "name": "contact_share", "languageCode": "en",
            "components": {"body": {"placeholders": ["Jane"]}}
        })
    );

    // Human form: the decision and the pretty body.
    let run = s
        .cli
        .run(&send_contact(
            CUSTOMER,
            &["--dry-run", "--message-id", id, "--now", &now],
        ))
        .expect(0);
    assert!(
        run.stdout.starts_with(
            "dry-run: nothing sent\n\
             decision: open: the window closes 2026-11-24T10:00:00Z (in 23h 0m); the contact card would be sent\n\
             predicted pricing: service, free (service_free_tier)\n\
             POST /api/v1/whatsapp/contact {\n"
        ),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("  \"name\": {\n    \"formattedName\": \"Support desk\"\n  },\n")
    );
    let body = run
        .stdout
        .split_once("/api/v1/whatsapp/contact ")
        .unwrap()
        .1;
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["messageId"], id);

    let run = s
        .cli
        .run(&send_contact("254799999999", &["--dry-run", "--now", &now]))
        .expect(1);
    assert_eq!(
        run.stdout,
        "dry-run: nothing sent\n\
         decision: closed (never messaged): the contact card would not be sent; \
         --on-closed reject: it would be rejected and nothing would be sent\n",
        "{run:?}"
    );

    // Nothing was sent or stored.
    assert_eq!(s.gateway.request_count(), 0);
    let run = s.cli.run(&["pending", "--now", &now]).expect(0);
    assert_eq!(run.stdout, "no messages queued\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn key_and_gateway_errors_exit_2_without_showing_the_key() {
    let mut s = Setup::start().await;
    s.customer_wrote(CUSTOMER, TimeDelta::hours(1));

    // No key.
    s.cli.env_remove("LIPACHAT_API_KEY");
    s.cli
        .run(&send_contact(CUSTOMER, &[]))
        .expect_error(&["LIPACHAT_API_KEY is not set"]);
    s.cli
        .run(&["deliver", BUSINESS, CUSTOMER])
        .expect_error(&["LIPACHAT_API_KEY is not set"]);
    // A key the gateway refuses.
    let wrong = "sk_wrong_0123456789";
    s.cli.env("LIPACHAT_API_KEY", wrong);
    let run = s.cli.run(&send_contact(CUSTOMER, &["--json"]));
    run.expect_json_error(&["refused the API key"]);
    assert!(!run.stderr.contains(wrong));
    // A base URL that would send the key in clear text.
    s.cli.env("LIPACHAT_API_KEY", s.gateway.api_key());
    s.cli.env("LIPACHAT_BASE_URL", "http://gateway.example.com");
    s.cli
        .run(&send_contact(CUSTOMER, &[]))
        .expect_error(&["refusing plain http://"]);
    s.cli.env("LIPACHAT_BASE_URL", &s.gateway.base_url());

    // Failure after retries: every attempt reuses one messageId.
    s.gateway.fail_next(2, 500);
    s.cli
        .run(&send_contact(CUSTOMER, &["--max-retries", "1"]))
        .expect_error(&["gave up after 2 attempts", "HTTP 500"]);
    // A gateway refusal (an HTTP 400) is not retried.
    s.gateway.fail_next(1, 400);
    s.cli
        .run(&send_contact(CUSTOMER, &[]))
        .expect_error(&["HTTP 400"]);
    let requests = s.gateway.requests();
    assert_eq!(requests.len(), 4, "{requests:#?}");
    assert_eq!(requests[1].message_id(), requests[2].message_id());
    assert_ne!(requests[2].message_id(), requests[3].message_id());
    // One transient failure is retried through.
    s.gateway.fail_next(1, 503);
    let run = s
        .cli
        .run(&send_contact(CUSTOMER, &["--json", "--max-retries", "1"]))
        .expect(0);
    assert_eq!(run.json()["outcome"], "sent");
    assert_eq!(s.gateway.delivered_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_window_the_gateway_reports_closed_is_recorded() {
    let s = Setup::start().await;
    // Only this side heard of the customer's message: the gateway's window is closed.
    s.cli.run(&["record", BUSINESS, CUSTOMER]).expect(0);
    let run = s.cli.run(&send_contact(CUSTOMER, &["--json"])).expect(1);
    let refused = s.gateway.refusals();
    assert_eq!(refused.len(), 1);
    assert_eq!(
        run.json(),
        json!({
            "outcome": "rejected", "message_id": refused[0].message_id, "wa_id": null,
            "template_message_id": null, "reason": "closed_by_gateway",
            "refused_by_gateway": true, "category": null, "free": null
        })
    );
    let run = s.cli.run(&["status", BUSINESS, CUSTOMER]).expect(1);
    assert!(
        run.stdout.starts_with("closed: since ")
            && run.stdout.ends_with(" (closed by the gateway)\n"),
        "{run:?}"
    );
    let run = s
        .cli
        .run(&["status", BUSINESS, CUSTOMER, "--json"])
        .expect(1);
    assert_eq!(run.json()["state"], "closed");
    // Now the policy knows: no request at all for the next send.
    s.cli.run(&send_contact(CUSTOMER, &[])).expect(1);
    assert_eq!(s.gateway.request_count(), 1);

    // A queued card meets the same closure at delivery: it stays queued, exit 1.
    s.cli.run(&send_contact(CUSTOMER, &QUEUE)).expect(0);
    s.cli.run(&["record", BUSINESS, CUSTOMER]).expect(0);
    let run = s
        .cli
        .run(&["deliver", BUSINESS, CUSTOMER, "--json"])
        .expect(1);
    let report = run.json();
    assert_eq!(report["remaining"], 1);
    assert_eq!(report["stopped"], "gateway_closed_window");
    assert_eq!(s.gateway.refusal_count(), 2);
    // Once the gateway hears from the customer too, it goes.
    s.customer_wrote(CUSTOMER, TimeDelta::zero());
    // (Recorded after the closure, to the millisecond, so it reopens the window here.)
    s.cli.run(&["record", BUSINESS, CUSTOMER]).expect(0);
    let run = s
        .cli
        .run(&["deliver", BUSINESS, CUSTOMER, "--json"])
        .expect(0);
    assert_eq!(run.json()["delivered"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn repeating_a_message_id_sends_nothing_twice() {
    let s = Setup::start().await;
    s.customer_wrote(CUSTOMER, TimeDelta::hours(1));
    let id = "0b6e7a52-33c4-4f61-9a1c-2f0f6f0c1a11";
    let first = s
        .cli
        .run(&send_contact(CUSTOMER, &["--json", "--message-id", id]))
        .expect(0)
        .json();
    let wa_id = s.gateway.delivered()[0].wa_id.clone();
    assert_eq!(first["message_id"], id);
    let again = s
        .cli
        .run(&send_contact(CUSTOMER, &["--json", "--message-id", id]))
        .expect(0)
        .json();
    assert_eq!(
        again,
        json!({
            "outcome": "sent", "message_id": id, "wa_id": wa_id,
            "template_message_id": null, "reason": null, "duplicate": true,
            "category": null, "free": null
        })
    );
    let run = s
        .cli
        .run(&send_contact(CUSTOMER, &["--message-id", id]))
        .expect(0);
    assert!(
        run.stdout.starts_with("sent (earlier, at ")
            && run.stdout.ends_with(&format!(
                "): message {id} was already handled; nothing was sent again\n"
            )),
        "{run:?}"
    );
    assert_eq!(s.gateway.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn export_and_import_carry_queued_messages_and_invitations() {
    let s = Setup::start().await;
    s.customer_wrote(CUSTOMER, TimeDelta::hours(25));
    let queued = s
        .cli
        .run(&send_contact(CUSTOMER, &[&QUEUE[..], &["--json"]].concat()))
        .expect(0)
        .json();
    let exported = s.cli.run(&["export"]).expect(0);
    let kinds: Vec<String> = exported
        .json_lines()
        .iter()
        .map(|line| line["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["header", "window", "queued", "invitation"]);

    let target = Cli::new();
    let run = target
        .run_with_stdin(&["import"], &exported.stdout)
        .expect(0);
    assert_eq!(
        run.stdout,
        "imported 1 window(s), 1 queued message(s) and 1 invitation(s)\n"
    );
    let pending = target.run(&["pending", "--json"]).expect(0).json();
    assert_eq!(pending["message_id"], queued["message_id"]);
    assert_eq!(target.run(&["export"]).stdout, exported.stdout);
}
