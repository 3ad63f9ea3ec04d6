//! `pending` shows what each queued message is, and `deliver` names WhatsApp's message id
//! of what it sent.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::TimeDelta;
use common::gateway::Setup;
use common::{BUSINESS, CUSTOMER, CUSTOMER_DIGITS, Cli, QUEUE, T0, at, send_contact};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn pending_shows_the_queued_card_and_deliver_names_whatsapps_id() {
    let s = Setup::start().await;
    s.customer_wrote(CUSTOMER, TimeDelta::hours(30));
    s.cli.run(&send_contact(CUSTOMER, &QUEUE)).expect(0);

    let listed = s.cli.run(&["pending", "--json"]).expect(0).json();
    assert_eq!(listed["kind"], "contact");
    assert_eq!(
        listed["message"],
        json!({
            "formatted_name": "Support desk",
            "phones": [{"phone": "254700000001", "phone_type": "Cell"}]
        })
    );
    let id = listed["message_id"].as_str().unwrap().to_owned();
    let run = s.cli.run(&["pending"]).expect(0);
    assert!(
        run.stdout.starts_with(&format!(
            "254110090747 254712345678 {id}: contact card \"Support desk\" (254700000001), queued "
        )),
        "{run:?}"
    );

    s.customer_wrote(CUSTOMER, TimeDelta::zero());
    let run = s.cli.run(&["deliver", BUSINESS, CUSTOMER]).expect(0);
    let card = s.gateway.delivered()[1].clone();
    assert!(
        run.stdout.starts_with(&format!(
            "delivered {id} (WhatsApp message id {}), queued ",
            card.wa_id
        )),
        "{run:?}"
    );
}

#[test]
fn pending_shows_a_text_and_says_when_a_stored_message_cannot_be_read() {
    let cli = Cli::new();
    let header = r#"{"kind":"header","format":"lipachat-session-export","version":2}"#;
    let queued = |id: &str, payload: &str| {
        json!({
            "kind": "queued", "business": BUSINESS, "customer": CUSTOMER_DIGITS,
            "message_id": id, "queued_at": T0, "payload": payload
        })
        .to_string()
    };
    let text = json!({
        "origin": "0b6f1f9e-2d57-4c1e-9a53-7f1e3c2b9d10",
        "message": {"kind": "text", "message": {"body": "Your order has shipped.\nTrack it here."}}
    })
    .to_string();
    let input = [
        header.to_owned(),
        queued("0b6f1f9e-2d57-4c1e-9a53-7f1e3c2b9d10", &text),
        queued(
            "1c7a2a0f-3e68-4d2f-8b64-8f2f4d3cae21",
            "{\"not\": \"a message\"}",
        ),
    ]
    .join("\n");
    cli.run_with_stdin(&["import"], &input).expect(0);
    let now = at(TimeDelta::minutes(5));
    let run = cli.run(&["pending", "--now", &now]).expect(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "254110090747 254712345678 0b6f1f9e-2d57-4c1e-9a53-7f1e3c2b9d10: text \"Your order has shipped. Track it here.\", queued 2026-11-23T10:00:00Z (5m 0s ago)",
            "254110090747 254712345678 1c7a2a0f-3e68-4d2f-8b64-8f2f4d3cae21: a message whose stored form cannot be read, queued 2026-11-23T10:00:00Z (5m 0s ago)",
        ],
        "{run:?}"
    );
    let listed = cli.run(&["pending", "--json", "--now", &now]).expect(0);
    let listed = listed.json_lines();
    assert_eq!(listed[0]["kind"], "text");
    assert_eq!(
        listed[0]["message"],
        json!({"body": "Your order has shipped.\nTrack it here."})
    );
    assert_eq!(listed[1]["kind"], serde_json::Value::Null);
    assert_eq!(listed[1]["message"], serde_json::Value::Null);
}
