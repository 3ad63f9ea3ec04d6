//! The cost and consent metrics count every send path, not only the bot's reply handle:
//! a template sent through the messenger directly and withheld for an opt-out, a
//! free-form message sent through it into an open window, and a queued message delivered
//! when the customer writes (each read from `GET /metrics`). The service on 127.0.0.1
//! over sled in a temp dir, the stand-in gateway on loopback.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use common::{BUSINESS, Harness, Options, lipachat_text, phone};
use lipachat_api::{TemplateMessage, TextMessage};
use lipachat_policy::{SendOutcome, SendRequest, TemplateOutcome, TemplateRequest};
use lipachat_session::{ConsentStore, Conversation};

fn counter(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(line_start))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withheld_and_predicted_sends_are_counted_on_every_send_path() {
    let mut harness = Harness::with(Options {
        bot: None,
        ..Options::default()
    })
    .await;
    let messenger = harness.service().messenger().clone();
    let now = messenger.sessions().now();

    // A template sent through the messenger itself to a customer who opted out.
    let opted_out = Conversation::new(phone(BUSINESS), phone("254712000001"));
    messenger
        .sessions()
        .store()
        .record_opt_out(opted_out, true, now)
        .await
        .unwrap();
    let promo = TemplateMessage::new("spring_promo", "en").unwrap();
    let outcome = messenger
        .send_template(TemplateRequest::new(opted_out, promo))
        .await
        .unwrap();
    assert!(
        matches!(outcome, TemplateOutcome::Withheld { .. }),
        "{outcome:?}"
    );

    // A free-form message sent through the messenger itself into an open window.
    let open = Conversation::new(phone(BUSINESS), phone("254712000002"));
    harness
        .gateway
        .customer_writes(open.business, phone("254712000002"));
    assert!(
        harness
            .post_lipachat(&lipachat_text("in-1", "254712000002", "hi"))
            .await
            .status()
            .is_success()
    );
    let sent = messenger
        .send(SendRequest::text(open, TextMessage::new("hello").unwrap()))
        .await
        .unwrap();
    assert!(matches!(sent, SendOutcome::Sent { .. }), "{sent:?}");

    let text = harness.metrics_text().await;
    assert_eq!(
        counter(
            &text,
            r#"lipachat_sends_withheld_total{reason="opted_out"}"#
        ),
        1,
        "{text}"
    );
    let predicted_service = counter(
        &text,
        r#"lipachat_sends_predicted_category_total{category="service",free="true"}"#,
    ) + counter(
        &text,
        r#"lipachat_sends_predicted_category_total{category="service",free="false"}"#,
    );
    assert_eq!(predicted_service, 1, "{text}");
    harness.shut_down().await;
}
