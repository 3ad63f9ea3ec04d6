//! Attack 8: bodies aimed at the typed WhatsApp reader (`webhook/whatsapp_typed.rs`),
//! each read by the parser (the typed reader, else the walk) and by the walk alone
//! (`parse_value` of the body as a `serde_json::Value`, which is what `parse` did before
//! the typed reader): the two must give the same events in the same order, or the same
//! error. Every body is a variation of the common text webhook the typed reader covers.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use lipachat_api::{InboundContent, InboundKind, WebhookError, WebhookEvent, WebhookParser};

fn received() -> DateTime<Utc> {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

/// The walk alone, as `WebhookParser::parse` read a body before the typed reader.
fn walk(parser: &WebhookParser, body: &[u8]) -> Result<Vec<WebhookEvent>, WebhookError> {
    if body.trim_ascii().is_empty() {
        return Err(WebhookError::Empty);
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::NotJson {
            detail: e.to_string(),
        })?;
    parser.parse_value(&value, received())
}

/// The parser and the walk agree on `body`; returns the parser's answer.
fn agree(parser: &WebhookParser, body: &[u8]) -> Result<Vec<WebhookEvent>, WebhookError> {
    let parsed = parser.parse(body, received());
    let walked = walk(parser, body);
    assert_eq!(
        parsed,
        walked,
        "the parser and the walk disagree on {}",
        shown(body)
    );
    parsed
}

fn shown(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if text.len() > 600 {
        format!("{}... ({} bytes)", &text[..600], text.len())
    } else {
        text.into_owned()
    }
}

fn parsers() -> Vec<WebhookParser> {
    vec![
        WebhookParser::default(),
        WebhookParser::default().with_business_number("254110090747".parse().unwrap()),
        WebhookParser::default().with_opening(InboundKind::Text, false),
    ]
}

fn agree_everywhere(body: &[u8]) {
    for parser in parsers() {
        let _answer = agree(&parser, body);
    }
}

/// The common text webhook with `message` as its only message.
fn with_message(message: &str) -> String {
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"254110090747","phone_number_id":"1"}},"contacts":[{{"profile":{{"name":"Jane"}},"wa_id":"254700000001"}}],"messages":[{message}]}}}}]}}]}}"#
    )
}

/// A text message with the given JSON values for `from`, `id`, `timestamp` and the body.
fn text_message(from: &str, id: &str, timestamp: &str, body: &str) -> String {
    format!(
        r#"{{"from":{from},"id":{id},"timestamp":{timestamp},"type":"text","text":{{"body":{body}}}}}"#
    )
}

const TEXT: &str = r#"{"from":"254700000001","id":"wamid.A","timestamp":"1764583200","type":"text","text":{"body":"hello"}}"#;

#[test]
fn text_bodies_with_escapes_nul_and_great_length_read_alike() {
    let long = "x".repeat(200_000);
    let long_escaped = "\\u00e9".repeat(30_000);
    for body in [
        r#""he said \"hi\"\n\t\\ \/ \u0000 end""#,
        r#""\u0000""#,
        r#""\ud83d\ude00 \u00e9 \u2028""#,
        r#""""#,
        r#""   ""#,
        &format!(r#""{long}""#),
        &format!(r#""{long_escaped}""#),
        "12",
        "-0",
        "1.0e2",
        "null",
        "true",
        "[]",
        "{}",
    ] {
        let message = text_message(r#""254700000001""#, r#""wamid.A""#, r#""1764583200""#, body);
        agree_everywhere(with_message(&message).as_bytes());
    }
    // What the parser keeps of a body with escapes and a NUL: the text as sent.
    let message = text_message(
        r#""254700000001""#,
        r#""wamid.A""#,
        r#""1764583200""#,
        r#""a\u0000b\"c""#,
    );
    let events = agree(&WebhookParser::default(), with_message(&message).as_bytes()).unwrap();
    let WebhookEvent::Inbound(inbound) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(
        inbound.content,
        InboundContent::Text {
            body: "a\u{0}b\"c".into()
        }
    );
}

#[test]
fn numbers_as_strings_strings_as_numbers_and_extreme_timestamps_read_alike() {
    let froms = [
        r#""254700000001""#,
        "254700000001",
        "254700000001.0",
        "2.54700000001e11",
        "-254700000001",
        r#""+254 700 000 001""#,
        r#""254700000001.0""#,
        r#""0700000001""#,
        r#""KE.77""#,
        r#""US.13491208655302741918""#,
        r#""@jane""#,
        r#""jane_doe""#,
        "18446744073709551615",
        "18446744073709551616",
        "0",
        "null",
        r#""""#,
    ];
    let ids = [
        r#""wamid.A""#,
        "12345",
        "1.5",
        "-1",
        r#""  wamid.padded  ""#,
        r#""\u0077amid.escaped""#,
        r#""""#,
        "null",
    ];
    let timestamps = [
        r#""1764583200""#,
        "1764583200",
        "1764583200.5",
        r#""1764583200.5""#,
        "1.7645832e9",
        "1764583200000",
        "-1",
        "-0",
        "0",
        r#""-1764583200""#,
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "18446744073709551615",
        "1e300",
        "-1e300",
        r#""9999999999999999999999""#,
        r#""2026-11-23T12:00:00+03:00""#,
        r#""2026-11-23T12:00:00.999999999Z""#,
        r#""+262143-12-31T23:59:59Z""#,
        "null",
        "[]",
    ];
    for from in froms {
        for id in ids {
            let message = text_message(from, id, r#""1764583200""#, r#""hi""#);
            agree_everywhere(with_message(&message).as_bytes());
        }
        for timestamp in timestamps {
            let message = text_message(from, r#""wamid.A""#, timestamp, r#""hi""#);
            agree_everywhere(with_message(&message).as_bytes());
        }
    }
}

#[test]
fn bsuid_and_username_senders_with_missing_or_mismatched_contacts_read_alike() {
    let senders = [
        r#""from":"254700000001","#,
        r#""from":"254700000002","#,
        r#""from_user_id":"KE.77","#,
        r#""from":"KE.77","from_user_id":"KE.77","#,
        r#""from":"254700000001","from_user_id":"KE.78","from_parent_user_id":"KE.1","#,
        r#""from_user_id":"not an id","#,
        "",
    ];
    let contacts = [
        "",
        r#""contacts":null,"#,
        r#""contacts":[],"#,
        r#""contacts":[{"wa_id":"254700000001","profile":{"name":"Jane","username":"@jane"}}],"#,
        r#""contacts":[{"wa_id":"254700000009","profile":{"name":"Other"}}],"#,
        r#""contacts":[{"user_id":"KE.77","parent_user_id":"KE.1","profile":{"username":"jane_doe"}}],"#,
        r#""contacts":[{"user_id":"KE.78"},{"wa_id":"254700000001","profile":{"name":"Second"}}],"#,
        r#""contacts":[{"profile":null,"wa_id":254700000001}],"#,
        r#""contacts":[{"profile":{"name":"  "},"wa_id":" 254700000001 "}],"#,
        r#""contacts":[{"profile":{"name":null,"username":7}}],"#,
    ];
    for sender in senders {
        for contact in contacts {
            let body = format!(
                r#"{{"entry":[{{"changes":[{{"field":"messages","value":{{"metadata":{{"display_phone_number":"254110090747"}},{contact}"messages":[{{{sender}"id":"wamid.A","timestamp":"1764583200","type":"text","text":{{"body":"hi"}}}}]}}}}]}}]}}"#
            );
            agree_everywhere(body.as_bytes());
        }
    }
}

#[test]
fn several_entries_changes_and_messages_mixed_with_statuses_keep_their_order() {
    let status = r#"{"id":"wamid.S","status":"read","timestamp":"1764583100","recipient_id":"254700000001"}"#;
    let text = |n: u32| {
        text_message(
            &format!(r#""25470000000{n}""#),
            &format!(r#""wamid.{n}""#),
            r#""1764583200""#,
            &format!(r#""m{n}""#),
        )
    };
    let change = |messages: &str| {
        format!(
            r#"{{"field":"messages","value":{{"metadata":{{"display_phone_number":"254110090747"}},"messages":[{messages}]}}}}"#
        )
    };
    let status_change = format!(
        r#"{{"field":"messages","value":{{"metadata":{{"display_phone_number":"254110090747"}},"statuses":[{status}]}}}}"#
    );
    let both = format!(
        r#"{{"field":"messages","value":{{"metadata":{{"display_phone_number":"254110090747"}},"messages":[{}],"statuses":[{status}]}}}}"#,
        text(5)
    );
    let other_field = r#"{"field":"account_update","value":{"event":"X"}}"#.to_owned();
    let m123 = change(&format!("{},{},{}", text(1), text(2), text(3)));
    let bodies = [
        format!(
            r#"{{"entry":[{{"changes":[{m123},{}]}},{{"changes":[{}]}}]}}"#,
            change(&text(4)),
            change(&text(6))
        ),
        format!(r#"{{"entry":[{{"changes":[{m123},{status_change}]}}]}}"#),
        format!(r#"{{"entry":[{{"changes":[{status_change},{m123}]}}]}}"#),
        format!(r#"{{"entry":[{{"changes":[{m123}]}},{{"changes":[{both}]}}]}}"#),
        format!(r#"{{"entry":[{{"changes":[{other_field},{m123}]}}]}}"#),
        format!(r#"{{"entry":[{{"changes":[{m123}]}},{{"id":"no changes"}}]}}"#),
        format!(
            r#"{{"entry":[{{"changes":[]}},{{"changes":[{m123}]}},{{"changes":[{}]}}]}}"#,
            change("")
        ),
    ];
    for body in &bodies {
        agree_everywhere(body.as_bytes());
    }
    // All typed: six messages, in the order sent.
    let events = agree(&WebhookParser::default(), bodies[0].as_bytes()).unwrap();
    let ids: Vec<_> = events
        .iter()
        .map(|event| match event {
            WebhookEvent::Inbound(inbound) => inbound.message_id.clone().unwrap_or_default(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        ids,
        ["wamid.1", "wamid.2", "wamid.3", "wamid.4", "wamid.6"]
            .map(String::from)
            .to_vec()
    );
}

/// `null`, an array, a string and a number where each object or array of the common body
/// belongs.
#[test]
fn null_and_wrong_types_where_an_object_or_array_belongs_read_alike() {
    let body = with_message(TEXT);
    let spots = [
        r#""entry":["#,
        r#""changes":["#,
        r#""value":{"#,
        r#""metadata":{"#,
        r#""contacts":["#,
        r#""profile":{"#,
        r#""messages":["#,
        r#""text":{"#,
    ];
    for spot in spots {
        let start = body.find(spot).unwrap() + spot.len() - 1;
        let end = closing(body.as_bytes(), start);
        for replacement in ["null", "[]", "{}", "[null]", "[{}]", r#""x""#, "7", "[[]]"] {
            let attacked = format!("{}{replacement}{}", &body[..start], &body[end + 1..]);
            agree_everywhere(attacked.as_bytes());
        }
    }
    // A `null` message and a `null` contact among good ones.
    for attacked in [
        with_message(&format!("null,{TEXT}")),
        with_message(&format!("{TEXT},null")),
        body.replace(r#""contacts":["#, r#""contacts":[null,"#),
        body.replace(r#""entry":["#, r#""entry":[null,"#),
        body.replace(r#""changes":["#, r#""changes":[null,"#),
    ] {
        agree_everywhere(attacked.as_bytes());
    }
}

/// The index of the bracket closing the one at `open` (no brackets inside strings in the
/// bodies this is used on).
fn closing(body: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, &b) in body.iter().enumerate().skip(open) {
        match b {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced")
}

/// Each key of the common body given twice (first with another value, with `null`, and
/// with the same value), and the keys in another order.
#[test]
fn duplicate_keys_at_every_level_and_field_order_read_alike() {
    let body = with_message(TEXT);
    let keys = [
        (r#""object":"#, r#""other""#),
        (r#""entry":"#, "[]"),
        (r#""id":"1""#, r#""2""#),
        (r#""changes":"#, "[]"),
        (r#""field":"#, r#""calls""#),
        (r#""value":"#, "{}"),
        (r#""messaging_product":"#, r#""x""#),
        (
            r#""metadata":"#,
            r#"{"display_phone_number":"254700000009"}"#,
        ),
        (r#""display_phone_number":"#, r#""254700000009""#),
        (r#""phone_number_id":"#, r#""2""#),
        (r#""contacts":"#, "[]"),
        (r#""profile":"#, r#"{"name":"Other"}"#),
        (r#""name":"#, r#""Other""#),
        (r#""wa_id":"#, r#""254700000009""#),
        (r#""messages":"#, "[]"),
        (r#""from":"#, r#""254700000009""#),
        (r#""id":"wamid.A""#, r#""wamid.Z""#),
        (r#""timestamp":"#, r#""1""#),
        (r#""type":"#, r#""image""#),
        (r#""text":"#, r#"{"body":"first"}"#),
        (r#""body":"#, r#""first""#),
    ];
    for (key, other) in keys {
        let name = &key[..key.find(':').unwrap() + 1];
        for first in [other, "null"] {
            // `"key":first,"key":original`: the walk keeps the last.
            let attacked = body.replacen(key, &format!("{name}{first},{key}"), 1);
            assert_ne!(attacked, body, "{key}");
            agree_everywhere(attacked.as_bytes());
        }
        // The same key, written once with an escape.
        let escaped_name = name.replacen(
            &name[1..2],
            &format!("\\u{:04x}", u32::from(name.as_bytes()[1])),
            1,
        );
        let attacked = body.replacen(key, &format!("{escaped_name}null,{key}"), 1);
        agree_everywhere(attacked.as_bytes());
    }
    // Field order: the message's fields and the value's fields reversed.
    let reordered = r#"{"entry":[{"changes":[{"value":{"messages":[{"text":{"body":"hello"},"type":"text","timestamp":"1764583200","id":"wamid.A","from":"254700000001"}],"contacts":[{"wa_id":"254700000001","profile":{"name":"Jane"}}],"metadata":{"phone_number_id":"1","display_phone_number":"254110090747"},"messaging_product":"whatsapp"},"field":"messages"}],"id":"1"}],"object":"whatsapp_business_account"}"#;
    let events = agree(&WebhookParser::default(), reordered.as_bytes()).unwrap();
    assert_eq!(
        events,
        agree(&WebhookParser::default(), body.as_bytes()).unwrap()
    );
}

/// Nesting at and beyond serde_json's depth limit (128) in a field no event reads, and
/// a body at the size limit: read alike, no panic, no stack overflow.
#[test]
fn deep_nesting_and_huge_bodies_read_alike() {
    for depth in [100, 117, 118, 119, 120, 126, 127, 128, 129, 200, 10_000] {
        for (open, close) in [("[", "]"), (r#"{"a":"#, "}")] {
            let nested = format!("{}1{}", open.repeat(depth), close.repeat(depth));
            for spot in [
                r#""id":"1""#,
                r#""phone_number_id":"1""#,
                r#""id":"wamid.A""#,
            ] {
                let attacked = with_message(TEXT).replacen(
                    spot,
                    &format!("{}{nested}", &spot[..spot.find(':').unwrap() + 1]),
                    1,
                );
                agree_everywhere(attacked.as_bytes());
            }
        }
    }
    // Many messages, up to the default size limit.
    let many = vec![TEXT; 2000].join(",");
    let body = with_message(&many);
    assert!(body.len() < 256 * 1024);
    let events = agree(&WebhookParser::default(), body.as_bytes()).unwrap();
    assert_eq!(events.len(), 2000);
}

/// The public fixtures, as published and compacted, read alike.
#[test]
fn fixtures_as_published_and_compacted_read_alike() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhooks");
    let mut read = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let body = std::fs::read(&path).unwrap();
        agree_everywhere(&body);
        // Compacted: same events.
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) {
            agree_everywhere(value.to_string().as_bytes());
        }
        read += 1;
    }
    assert!(read > 30, "{read} fixtures");
}

/// Every single-byte change of two bodies the typed reader reads (one message; two
/// messages with two contacts): each byte deleted, doubled, or replaced by one of the
/// bytes that change JSON's structure or meaning. The parser never panics and agrees with
/// the walk on every one.
#[test]
fn every_single_byte_change_of_a_typed_body_reads_alike() {
    let two = format!(
        "{},{}",
        TEXT,
        TEXT.replace("wamid.A", "wamid.B")
            .replace("254700000001", "254700000002")
    );
    let bodies = [
        with_message(TEXT),
        with_message(&two).replace(
            r#""contacts":["#,
            r#""contacts":[{"wa_id":"254700000002","user_id":"KE.77"},"#,
        ),
    ];
    let replacements = b"\"{}[],:\\ 0-.enu\x00\xff";
    let mut read = 0;
    for body in &bodies {
        let body = body.as_bytes();
        for at in 0..body.len() {
            let mut variants = Vec::new();
            let mut deleted = body.to_vec();
            deleted.remove(at);
            variants.push(deleted);
            let mut doubled = body.to_vec();
            doubled.insert(at, body[at]);
            variants.push(doubled);
            for &byte in replacements {
                if byte != body[at] {
                    let mut replaced = body.to_vec();
                    replaced[at] = byte;
                    variants.push(replaced);
                }
            }
            for variant in variants {
                agree_everywhere(&variant);
                read += 1;
            }
        }
    }
    assert!(read > 10_000, "{read} variants");
}
