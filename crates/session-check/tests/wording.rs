//! Human output in words: "never messaged" (the JSON keeps the name `never_messaged`), and
//! WhatsApp's message id named for what it is (the JSON field stays `wa_id`).
#![allow(clippy::unwrap_used)]

mod common;

use chrono::TimeDelta;
use common::gateway::Setup;
use common::{BUSINESS, CUSTOMER, Cli, T0, TEMPLATE, send_contact};

#[test]
fn status_of_a_customer_who_never_wrote_says_never_messaged() {
    let cli = Cli::new();
    cli.run(&["record", BUSINESS, "254799999999", "--at", T0])
        .expect(0);
    let run = cli.run(&["status", BUSINESS, CUSTOMER]).expect(1);
    assert_eq!(
        run.stdout,
        "none: never messaged (no inbound message recorded)\n"
    );
    let run = cli.run(&["status", BUSINESS, CUSTOMER, "--json"]).expect(1);
    assert_eq!(run.json()["state"], "none");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn sends_say_never_messaged_and_name_whatsapps_message_id() {
    let s = Setup::start().await;
    // The database exists: another conversation is in it.
    s.customer_wrote("254799999999", TimeDelta::zero());

    let run = s.cli.run(&send_contact(CUSTOMER, &[])).expect(1);
    assert_eq!(
        run.stdout,
        "rejected: the window is not open (never messaged); nothing was sent\n"
    );
    let run = s.cli.run(&send_contact(CUSTOMER, &["--json"])).expect(1);
    assert_eq!(run.json()["reason"], "never_messaged");

    let run = s.cli.run(&send_contact(CUSTOMER, &TEMPLATE)).expect(0);
    let template = s.gateway.delivered()[0].clone();
    let template_wa_id = template.wa_id.clone();
    assert_eq!(
        run.stdout,
        format!(
            "rerouted: the window is not open (never messaged); the contact card was dropped; \
             template {} sent (WhatsApp message id {template_wa_id}); not checked: the \
             catalog could not be fetched\npredicted pricing: marketing, billed\n",
            template.message_id
        )
    );

    s.customer_wrote(CUSTOMER, TimeDelta::hours(1));
    let run = s.cli.run(&send_contact(CUSTOMER, &[])).expect(0);
    let card = s.gateway.delivered()[1].clone();
    let card_wa_id = card.wa_id.clone();
    assert!(
        run.stdout.starts_with(&format!(
            "sent: contact card {} (WhatsApp message id {card_wa_id}); the window closes ",
            card.message_id
        )),
        "{run:?}"
    );
    assert!(!run.stdout.contains("wa_id"), "{run:?}");
    let run = s.cli.run(&send_contact(CUSTOMER, &["--json"])).expect(0);
    assert!(run.json()["wa_id"].is_string(), "{run:?}");
}
