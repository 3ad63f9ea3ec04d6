//! Phone numbers written as JSON numbers in webhooks: only a whole number written as one
//! (digits, no sign, fraction or exponent) is a phone; any other number is refused with a
//! reason, never read as some other number.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Utc};
use lipachat_api::{WebhookError, WebhookEvent, WebhookParser};
use lipachat_session::PhoneNumber;
use proptest::prelude::*;

const BUSINESS: &str = "254110090747";

fn received() -> DateTime<Utc> {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

/// LipaChat's flat inbound payload with `from` written as the JSON text `from`.
fn flat(from: &str) -> String {
    format!(r#"{{"messageId": "m-1", "from": {from}, "to": "{BUSINESS}", "type": "TEXT"}}"#)
}

/// WhatsApp's nested payload with one message whose `from` is the JSON text `from`.
fn nested(from: &str) -> String {
    format!(
        r#"{{"object": "whatsapp_business_account", "entry": [{{"changes": [{{"field": "messages",
            "value": {{"metadata": {{"display_phone_number": "{BUSINESS}"}},
                       "messages": [{{"from": {from}, "id": "wamid.A", "type": "text"}}]}}}}]}}]}}"#
    )
}

/// Asserts that `from` (JSON text) is refused by both parsers, naming the field and the
/// number as written.
fn assert_refused(from: &str) -> Result<(), TestCaseError> {
    let parser = WebhookParser::default();
    match parser.parse(flat(from).as_bytes(), received()) {
        Err(WebhookError::InvalidField { field, detail }) => {
            prop_assert_eq!(field, "from");
            prop_assert!(detail.contains("whole number"), "{}", detail);
        }
        other => prop_assert!(false, "flat, from {}: {:?}", from, other),
    }
    // In a batch, the bad item is ignored with the reason; it is never an inbound event.
    let batch = format!("[{}]", flat(from));
    let events = parser.parse(batch.as_bytes(), received()).unwrap();
    match events.as_slice() {
        [WebhookEvent::Ignored { reason }] => {
            prop_assert!(reason.contains("from"), "{}", reason);
            prop_assert!(reason.contains("whole number"), "{}", reason);
        }
        other => prop_assert!(false, "batch, from {}: {:?}", from, other),
    }
    let events = parser.parse(nested(from).as_bytes(), received()).unwrap();
    match events.as_slice() {
        [WebhookEvent::Ignored { reason }] => {
            prop_assert!(reason.contains("from"), "{}", reason);
            prop_assert!(reason.contains("whole number"), "{}", reason);
        }
        other => prop_assert!(false, "nested, from {}: {:?}", from, other),
    }
    Ok(())
}

#[test]
fn a_phone_written_as_a_float_is_refused_not_read_as_another_number() {
    // 254712345678.0 used to be read as 2547123456780, another valid number.
    for from in [
        "254712345678.0",
        "254712345678.5",
        "2.54712345678e11",
        "254712345678e0",
        "254712345678E+0",
        "-254712345678",
        "2547123456.78",
    ] {
        assert_refused(from).unwrap();
    }
    // A whole number written as one is still a phone.
    let events = WebhookParser::default()
        .parse(flat("254712345678").as_bytes(), received())
        .unwrap();
    let [WebhookEvent::Inbound(message)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(
        message.conversation().unwrap().customer.to_string(),
        "254712345678"
    );
}

#[test]
fn other_phone_fields_refuse_floats_too() {
    // A status callback's recipient and the WhatsApp metadata's business number: a float
    // never becomes a conversation.
    let parser = WebhookParser::default().with_business_number(BUSINESS.parse().unwrap());
    let status =
        r#"{"messageId": "m", "status": "FAILED", "code": 131047, "recipientId": 254712345678.0}"#;
    let events = parser.parse(status.as_bytes(), received()).unwrap();
    assert_eq!(events[0].conversation(), None, "{events:?}");
    let metadata = r#"{"entry": [{"changes": [{"field": "messages", "value": {
        "metadata": {"display_phone_number": 254110090747.0},
        "messages": [{"from": "254712345678", "id": "wamid.A", "type": "text"}]}}]}]}"#;
    let events = WebhookParser::default()
        .parse(metadata.as_bytes(), received())
        .unwrap();
    assert!(
        matches!(&events[..], [WebhookEvent::Ignored { reason }] if reason.contains("whole number")),
        "{events:?}"
    );
}

/// A JSON number that is not a whole number written as one: a fraction, an exponent, a
/// sign, or a float that happens to be whole.
fn not_a_plain_integer() -> impl Strategy<Value = String> {
    prop_oneof![
        // Any finite float as serde_json writes it (whole ones get a ".0").
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| serde_json::Value::from(f).to_string()),
        // A phone-like integer with a fraction.
        (10_000_000u64..=999_999_999_999_999, "[0-9]{1,6}")
            .prop_map(|(n, fraction)| format!("{n}.{fraction}")),
        // A phone-like integer with an exponent.
        (
            10_000_000u64..=999_999_999_999_999,
            prop::sample::select(vec!["e", "E"]),
            prop::sample::select(vec!["", "+", "-"]),
            0u32..3
        )
            .prop_map(|(n, e, sign, exp)| format!("{n}{e}{sign}{exp}")),
        // A negative integer.
        (1u64..=999_999_999_999_999).prop_map(|n| format!("-{n}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// No JSON number other than a plain whole number in `from` ever yields an inbound
    /// event, in either payload shape.
    #[test]
    fn a_non_integer_number_in_from_never_yields_an_inbound_event(from in not_a_plain_integer()) {
        assert_refused(&from)?;
    }

    /// A valid phone written as a plain JSON integer is exactly that phone.
    #[test]
    fn a_plain_integer_in_from_is_that_number(n in 10_000_000u64..=999_999_999_999_999) {
        let events = WebhookParser::default().parse(flat(&n.to_string()).as_bytes(), received()).unwrap();
        let [WebhookEvent::Inbound(message)] = events.as_slice() else {
            return Err(TestCaseError::fail(format!("{events:?}")));
        };
        // That number as written: its key, and its spelling kept for sending.
        let customer = message.conversation().unwrap().phone().unwrap();
        prop_assert_eq!(customer, PhoneNumber::parse(&n.to_string()).unwrap());
        prop_assert_eq!(customer.digits(), n.to_string());
    }
}

/// A national number in LipaChat's flat payload takes the configured default country; a
/// number without a trunk 0 stays international, and without a default country a
/// national number is refused with the reason.
#[test]
fn a_national_number_in_a_flat_payload_takes_the_default_country() {
    let kenya = WebhookParser::default()
        .with_default_country(lipachat_session::PhoneParser::with_default_country("254").unwrap());
    let customer = |parser: &WebhookParser, from: &str| {
        let events = parser.parse(flat(from).as_bytes(), received()).unwrap();
        match events.as_slice() {
            [WebhookEvent::Inbound(message)] => message.conversation().and_then(|c| c.phone()),
            other => panic!("{other:?}"),
        }
    };
    let expected = PhoneNumber::parse("254712345678").unwrap();
    assert_eq!(customer(&kenya, r#""0712 345 678""#), Some(expected));
    assert_eq!(
        customer(&kenya, r#""+254 (0) 712 345 678""#),
        Some(expected)
    );
    // A short foreign number without a trunk 0 is not taken for a Kenyan one.
    assert_eq!(
        customer(&kenya, r#""71234567""#),
        Some(PhoneNumber::parse("71234567").unwrap())
    );
    let error = WebhookParser::default()
        .parse(flat(r#""0712 345 678""#).as_bytes(), received())
        .unwrap_err();
    assert!(
        matches!(error, WebhookError::InvalidField { field: "from", .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("country code"), "{error}");
}
