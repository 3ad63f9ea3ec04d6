//! A phone number sent as a *string* holding a decimal number (`"254712345678.0"`, what
//! `str()` of a float gives) must not be read as the digits of its text: `2547123456780`
//! is another, valid, number. Found under attack: both payload shapes recorded it.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Utc};
use lipachat_api::{WebhookError, WebhookEvent, WebhookParser};

const BUSINESS: &str = "254110090747";

fn received() -> DateTime<Utc> {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

fn flat(from: &str, to: &str) -> String {
    format!(
        r#"{{"messageId": "m-1", "from": "{from}", "to": "{to}", "type": "TEXT", "text": "hi"}}"#
    )
}

fn nested(from: &str, business: &str) -> String {
    format!(
        r#"{{"object": "whatsapp_business_account", "entry": [{{"changes": [{{"field": "messages",
            "value": {{"metadata": {{"display_phone_number": "{business}"}},
                       "contacts": [{{"wa_id": "{from}", "profile": {{"name": "x"}}}}],
                       "messages": [{{"from": "{from}", "id": "wamid.A", "timestamp": "1795000000", "type": "text", "text": {{"body": "hi"}}}}]}}}}]}}]}}"#
    )
}

/// The digits every event of `body` was recorded under, or the refusal.
fn numbers(body: &str) -> Result<Vec<String>, String> {
    match WebhookParser::default().parse(body.as_bytes(), received()) {
        Ok(events) => Ok(events
            .iter()
            .map(|event| match event {
                WebhookEvent::Inbound(message) => format!(
                    "{}->{}",
                    message.business,
                    message
                        .sender
                        .phone
                        .map_or_else(|| "?".to_owned(), |p| p.to_string())
                ),
                WebhookEvent::Ignored { reason } => format!("ignored: {reason}"),
                other => format!("{other:?}"),
            })
            .collect()),
        Err(WebhookError::InvalidField { field, detail }) => Err(format!("{field}: {detail}")),
        Err(other) => Err(other.to_string()),
    }
}

#[test]
fn a_decimal_string_is_never_read_as_another_number() {
    for decimal in [
        "254712345678.0",
        "254712345678.00",
        "+254712345678.0",
        "254712345678.",
    ] {
        for (shape, body) in [
            ("flat from", flat(decimal, BUSINESS)),
            ("nested from", nested(decimal, BUSINESS)),
        ] {
            let found = numbers(&body);
            let recorded_other = found
                .as_ref()
                .is_ok_and(|events| events.iter().any(|e| e.contains("2547123456780")));
            assert!(
                !recorded_other,
                "{shape} {decimal:?} was read as another number: {found:?}"
            );
        }
        for (shape, body) in [
            (
                "flat to",
                flat("254712345678", &decimal.replace("712345678", "110090747")),
            ),
            (
                "nested business",
                nested("254712345678", &decimal.replace("712345678", "110090747")),
            ),
        ] {
            let found = numbers(&body);
            let recorded_other = found
                .as_ref()
                .is_ok_and(|events| events.iter().any(|e| e.contains("2541100907470")));
            assert!(
                !recorded_other,
                "{shape} {decimal:?} was read as another number: {found:?}"
            );
        }
    }
}

#[test]
fn written_phone_forms_with_dots_are_still_read() {
    // Dots between groups are a way people write numbers; only a single decimal point
    // (a rendered float) is refused.
    for (written, digits) in [
        ("254.712.345.678", "254712345678"),
        ("+254 712.345.678", "254712345678"),
        ("254712345678", "254712345678"),
    ] {
        let found = numbers(&flat(written, BUSINESS)).unwrap();
        assert_eq!(found, vec![format!("{BUSINESS}->{digits}")], "{written}");
    }
}
