//! Attack 9: bodies holding serde_json's `arbitrary_precision` number key
//! (`$serde_json::private::Number`) as a real JSON object key, aimed at b97a1ff's guard in
//! the typed WhatsApp reader (`ScalarVisitor::visit_map` refuses a map whose first key is
//! that name, so the body goes to the walk). Each body is read by the parser (the typed
//! reader, else the walk) and by the walk alone (`parse_value` of the body as a
//! `serde_json::Value`): the two must give the same events in the same order, or the
//! same error.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Utc};
use lipachat_api::{InboundKind, WebhookError, WebhookEvent, WebhookParser};

const KEY: &str = "$serde_json::private::Number";

fn received() -> DateTime<Utc> {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

/// The walk alone, as `WebhookParser::parse` read a body before the typed reader.
fn walk_alone(parser: &WebhookParser, body: &[u8]) -> Result<Vec<WebhookEvent>, WebhookError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::NotJson {
            detail: e.to_string(),
        })?;
    parser.parse_value(&value, received())
}

/// Every parser reads `body` as the walk does; returns the default parser's answer.
fn read_alike(body: &str) -> Result<Vec<WebhookEvent>, WebhookError> {
    let mut first = None;
    for parser in [
        WebhookParser::default(),
        WebhookParser::default().with_business_number("254110090747".parse().unwrap()),
        WebhookParser::default().with_opening(InboundKind::Text, false),
    ] {
        let parsed = parser.parse(body.as_bytes(), received());
        let walked = walk_alone(&parser, body.as_bytes());
        assert_eq!(parsed, walked, "the parser and the walk disagree on {body}");
        first.get_or_insert(parsed);
    }
    first.unwrap()
}

/// The common text webhook with `product` as `messaging_product` (an ignored field),
/// `phone_id` as `phone_number_id` (ignored) and `message` as its only message.
fn webhook(product: &str, phone_id: &str, message: &str) -> String {
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"messaging_product":{product},"metadata":{{"display_phone_number":"254110090747","phone_number_id":{phone_id}}},"contacts":[{{"profile":{{"name":"Jane"}},"wa_id":"254700000001"}}],"messages":[{message}]}}}}]}}]}}"#
    )
}

fn text_message(from: &str, timestamp: &str, body: &str) -> String {
    format!(
        r#"{{"from":{from},"id":"wamid.A","timestamp":{timestamp},"type":"text","text":{{"body":{body}}}}}"#
    )
}

/// Objects holding the key: first, later, alone, with odd values, nested, escaped.
fn number_maps() -> Vec<String> {
    vec![
        format!(r#"{{"{KEY}":"1"}}"#),
        format!(r#"{{"{KEY}":"1764583200"}}"#),
        format!(r#"{{"{KEY}":"254700000001"}}"#),
        format!(r#"{{"{KEY}":"not a number"}}"#),
        format!(r#"{{"{KEY}":1}}"#),
        format!(r#"{{"{KEY}":null}}"#),
        format!(r#"{{"{KEY}":{{"{KEY}":"1"}}}}"#),
        format!(r#"{{"{KEY}":"1","b":2}}"#),
        format!(r#"{{"a":1,"{KEY}":"1"}}"#),
        format!(r#"{{"a":{{"{KEY}":"1"}}}}"#),
        format!(r#"[{{"{KEY}":"1"}}]"#),
        format!(r#"{{"{KEY}":"1","{KEY}":"2"}}"#),
        // The key written with an escape (the reader hands it over owned).
        r#"{"$serde_json::private::Numbe\u0072":"1"}"#.to_owned(),
        // Near misses.
        r#"{"$serde_json::private::Number ":"1"}"#.to_owned(),
    ]
}

#[test]
fn the_key_in_an_ignored_field_reads_alike() {
    let plain = text_message(r#""254700000001""#, r#""1764583200""#, r#""hello""#);
    for map in number_maps() {
        let product = read_alike(&webhook(&map, r#""1""#, &plain));
        let phone_id = read_alike(&webhook(r#""whatsapp""#, &map, &plain));
        // An ignored field changes nothing the events hold.
        let reference = read_alike(&webhook(r#""whatsapp""#, r#""1""#, &plain)).unwrap();
        assert_eq!(product.as_ref().unwrap(), &reference, "{map}");
        assert_eq!(phone_id.as_ref().unwrap(), &reference, "{map}");
    }
}

#[test]
fn the_key_in_a_field_the_events_use_reads_alike() {
    for map in number_maps() {
        for message in [
            text_message(&map, r#""1764583200""#, r#""hello""#),
            text_message(r#""254700000001""#, &map, r#""hello""#),
            text_message(r#""254700000001""#, r#""1764583200""#, &map),
            format!(
                r#"{{"from":"254700000001","id":{map},"timestamp":"1764583200","type":"text","text":{{"body":"hi"}}}}"#
            ),
            format!(
                r#"{{"from":"254700000001","id":"wamid.A","timestamp":"1764583200","type":{map},"text":{{"body":"hi"}}}}"#
            ),
        ] {
            let _answer = read_alike(&webhook(r#""whatsapp""#, r#""1""#, &message));
        }
    }
}

#[test]
fn the_key_as_a_whole_body_or_a_struct_reads_alike() {
    let plain = text_message(r#""254700000001""#, r#""1764583200""#, r#""hello""#);
    for map in number_maps() {
        let _whole = read_alike(&map);
        // The key among a struct's own fields (refused as unknown by deny_unknown_fields).
        let in_message = plain.replacen('{', &format!(r#"{{"{KEY}":"1","#), 1);
        let _message = read_alike(&webhook(r#""whatsapp""#, r#""1""#, &in_message));
        let in_envelope = webhook(r#""whatsapp""#, r#""1""#, &plain).replacen(
            '{',
            &format!(r#"{{"{KEY}":{map},"#),
            1,
        );
        let _envelope = read_alike(&in_envelope);
    }
}

/// serde_json's other private map key, `$serde_json::private::RawValue`: this crate builds
/// serde_json with `raw_value`, and under it `serde_json::Value` reads an object whose
/// first key is that name as the JSON text its value holds (`{KEY: "\"x\""}` is the
/// string `x`). The typed reader's guard (b97a1ff) refuses only the `Number` key, so it
/// reads such an object as some other value while the walk reads the value inside: a
/// sender or a text the walk sees is not the one the parser returns.
#[test]
fn a_raw_value_map_in_a_field_the_events_use_reads_alike() {
    let raw = |json: &str| {
        format!(
            r#"{{"$serde_json::private::RawValue":{}}}"#,
            serde_json::to_string(json).unwrap()
        )
    };
    // The walk reads the sender as 254799999999, the text as "walk": the parser must too.
    let from = text_message(&raw(r#""254799999999""#), r#""1764583200""#, r#""hello""#);
    let body = text_message(r#""254700000001""#, r#""1764583200""#, &raw(r#""walk""#));
    for message in [from, body] {
        let _answer = read_alike(&webhook(r#""whatsapp""#, r#""1""#, &message));
    }
}
