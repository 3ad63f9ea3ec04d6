//! Tests: the newer free-form kinds on the wire: each endpoint's exact body (field names and
//! their order, as the gateway documents them), read back by the parser a fake gateway
//! uses, and every limit at and one past its edge (proptest over the lengths).
#![allow(clippy::unwrap_used)]

use crate::request::{free_form_body, parse_free_form_body};
use crate::{
    ButtonsMessage, Endpoint, FlowMessage, FreeFormMessage, ListMessage, ListRow, ListSection,
    LocationRequestMessage, MediaKind, MediaMessage, MessageId, ReplyButton, ValidationError,
};
use lipachat_session::Conversation;
use proptest::prelude::*;
use serde_json::json;

fn conversation() -> Conversation {
    Conversation::parse("254110090747", "254712345678").unwrap()
}

fn id() -> MessageId {
    "ca739107-4b0d-4581-acb1-4c4af70555de".parse().unwrap()
}

/// The body as the client would send it, its text (so the field order is checked too),
/// and the message read back from it.
fn on_the_wire(message: FreeFormMessage) -> String {
    let body = free_form_body(conversation(), id(), &message).unwrap();
    let (c, i, back) = parse_free_form_body(message.endpoint(), &body.to_value()).unwrap();
    assert_eq!((c, i, &back), (conversation(), id(), &message));
    body.to_string()
}

#[test]
fn media_body() {
    let document = MediaMessage::new(MediaKind::Document, "https://example.com/inv.pdf")
        .unwrap()
        .with_caption("Your invoice")
        .unwrap()
        .with_filename("invoice.pdf")
        .unwrap();
    let message = FreeFormMessage::from(document);
    assert_eq!(message.path(), "/api/v1/whatsapp/media");
    assert_eq!(
        on_the_wire(message),
        r#"{"messageId":"ca739107-4b0d-4581-acb1-4c4af70555de","from":"254110090747","to":"254712345678","mediaType":"DOCUMENT","mediaUrl":"https://example.com/inv.pdf","caption":"Your invoice","filename":"invoice.pdf"}"#
    );
    for kind in MediaKind::ALL {
        let bare = MediaMessage::new(kind, "https://example.com/a").unwrap();
        let body = free_form_body(conversation(), id(), &bare.into())
            .unwrap()
            .to_value();
        assert_eq!(body["mediaType"], kind.wire_type());
        assert!(body.get("caption").is_none() && body.get("filename").is_none());
    }
}

#[test]
fn buttons_body() {
    let buttons = ButtonsMessage::new(
        "Did this help?",
        vec![ReplyButton::new("yes", "Yes"), ReplyButton::new("no", "No")],
    )
    .unwrap();
    let message = FreeFormMessage::from(buttons);
    assert_eq!(message.path(), "/api/v1/whatsapp/interactive/buttons");
    assert_eq!(
        on_the_wire(message),
        r#"{"messageId":"ca739107-4b0d-4581-acb1-4c4af70555de","from":"254110090747","to":"254712345678","text":"Did this help?","buttons":[{"id":"yes","title":"Yes"},{"id":"no","title":"No"}]}"#
    );
}

#[test]
fn list_body() {
    let list = ListMessage::new(
        "Branches",
        "Where do you pick up?",
        "Choose",
        vec![
            ListSection::new(
                "Nairobi",
                vec![ListRow::new("cbd", "CBD").with_description("Kenyatta Ave")],
            ),
            ListSection::new("Mombasa", vec![ListRow::new("nyali", "Nyali")]),
        ],
    )
    .unwrap();
    let message = FreeFormMessage::from(list);
    assert_eq!(message.path(), "/api/v1/whatsapp/interactive/list");
    assert_eq!(
        on_the_wire(message),
        r#"{"messageId":"ca739107-4b0d-4581-acb1-4c4af70555de","from":"254110090747","to":"254712345678","headerText":"Branches","body":"Where do you pick up?","buttonText":"Choose","buttons":[{"sectionTitle":"Nairobi","sectionItems":[{"id":"cbd","title":"CBD","description":"Kenyatta Ave"}]},{"sectionTitle":"Mombasa","sectionItems":[{"id":"nyali","title":"Nyali"}]}]}"#
    );
}

#[test]
fn location_request_body() {
    let message = FreeFormMessage::from(LocationRequestMessage::new("Where are you?").unwrap());
    assert_eq!(message.path(), "/api/v1/whatsapp/request_location");
    assert_eq!(
        on_the_wire(message),
        r#"{"messageId":"ca739107-4b0d-4581-acb1-4c4af70555de","from":"254110090747","to":"254712345678","text":"Where are you?"}"#
    );
}

#[test]
fn flow_body() {
    let flow = FlowMessage::new("Sign up", "1234567890123456", "Start", "WELCOME")
        .unwrap()
        .with_data(json!({"plan": "basic", "trial": true}))
        .unwrap();
    let message = FreeFormMessage::from(flow);
    assert_eq!(message.path(), "/api/v1/whatsapp/interactive/flows");
    assert_eq!(
        on_the_wire(message),
        r#"{"messageId":"ca739107-4b0d-4581-acb1-4c4af70555de","from":"254110090747","to":"254712345678","text":"Sign up","flowId":"1234567890123456","flowCta":"Start","screen":"WELCOME","data":{"plan":"basic","trial":true}}"#
    );
    let bare = FlowMessage::new("Sign up", "1", "Start", "WELCOME").unwrap();
    let body = free_form_body(conversation(), id(), &bare.into())
        .unwrap()
        .to_value();
    assert!(body.get("data").is_none(), "{body}");
}

#[test]
fn each_kind_has_its_endpoint_and_stored_tag() {
    let kinds: Vec<(FreeFormMessage, Endpoint, &str)> = vec![
        (
            MediaMessage::new(MediaKind::Image, "https://e.com/a.png")
                .unwrap()
                .into(),
            Endpoint::Media,
            "media",
        ),
        (
            ButtonsMessage::new("t", vec![ReplyButton::new("a", "A")])
                .unwrap()
                .into(),
            Endpoint::Buttons,
            "buttons",
        ),
        (
            ListMessage::new(
                "h",
                "b",
                "o",
                vec![ListSection::new("s", vec![ListRow::new("r", "R")])],
            )
            .unwrap()
            .into(),
            Endpoint::List,
            "list",
        ),
        (
            LocationRequestMessage::new("where").unwrap().into(),
            Endpoint::LocationRequest,
            "location_request",
        ),
        (
            FlowMessage::new("t", "1", "Go", "S").unwrap().into(),
            Endpoint::Flow,
            "flow",
        ),
    ];
    for (message, endpoint, tag) in kinds {
        assert_eq!(message.endpoint(), endpoint);
        assert_eq!(message.kind(), tag);
        assert!(FreeFormMessage::KINDS.contains(&tag), "{tag}");
        let stored = serde_json::to_value(&message).unwrap();
        assert_eq!(stored["kind"], tag);
        assert_eq!(
            serde_json::from_value::<FreeFormMessage>(stored).unwrap(),
            message
        );
    }
}

#[test]
fn a_body_the_client_would_never_send_is_refused_when_read_back() {
    let base = json!({"messageId": "ca739107-4b0d-4581-acb1-4c4af70555de",
                      "from": "254110090747", "to": "254712345678"});
    let with = |extra: serde_json::Value| {
        let mut body = base.clone();
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    for (endpoint, body) in [
        (
            Endpoint::Media,
            with(json!({"mediaType": "image", "mediaUrl": "https://e.com/a"})),
        ),
        (
            Endpoint::Media,
            with(json!({"mediaType": "AUDIO", "mediaUrl": "https://e.com/a", "caption": "x"})),
        ),
        (
            Endpoint::Buttons,
            with(
                json!({"text": "t", "buttons": [{"id": "a", "title": "A"}, {"id": "a", "title": "B"}]}),
            ),
        ),
        (
            Endpoint::List,
            with(json!({"headerText": "h", "body": "b", "buttonText": "o", "buttons": []})),
        ),
        (Endpoint::LocationRequest, with(json!({"text": " "}))),
        (
            Endpoint::Flow,
            with(json!({"text": "t", "flowId": "1", "flowCta": "Go", "screen": "S", "data": [1]})),
        ),
    ] {
        assert!(
            parse_free_form_body(endpoint, &body).is_err(),
            "{endpoint}: {body}"
        );
    }
}

/// A string of `n` characters, none of them whitespace (so only the length decides).
fn chars(n: usize) -> String {
    "é".repeat(n)
}

/// Each single-line or body field with its limit, built into a message: accepted from 1 to
/// the limit, refused one past it (and when empty) with an error naming the field and the
/// limit.
fn field_with(field: &str, value: &str) -> Result<FreeFormMessage, ValidationError> {
    let row = |title: &str, description: Option<&str>| {
        let row = ListRow::new("r", title);
        match description {
            Some(d) => row.with_description(d),
            None => row,
        }
    };
    let list = |header: &str, body: &str, button: &str, section: &str, row: ListRow| {
        ListMessage::new(
            header,
            body,
            button,
            vec![ListSection::new(section, vec![row])],
        )
        .map(FreeFormMessage::from)
    };
    match field {
        "caption" => MediaMessage::new(MediaKind::Video, "https://e.com/v.mp4")
            .and_then(|m| m.with_caption(value))
            .map(Into::into),
        "filename" => MediaMessage::new(MediaKind::Document, "https://e.com/d")
            .and_then(|m| m.with_filename(value))
            .map(Into::into),
        "buttons text" => {
            ButtonsMessage::new(value, vec![ReplyButton::new("a", "A")]).map(Into::into)
        }
        "button title" => {
            ButtonsMessage::new("t", vec![ReplyButton::new("a", value)]).map(Into::into)
        }
        "button id" => ButtonsMessage::new("t", vec![ReplyButton::new(value, "A")]).map(Into::into),
        "list header" => list(value, "b", "o", "s", row("R", None)),
        "list body" => list("h", value, "o", "s", row("R", None)),
        "list button text" => list("h", "b", value, "s", row("R", None)),
        "section title" => list("h", "b", "o", value, row("R", None)),
        "row title" => list("h", "b", "o", "s", row(value, None)),
        "row description" => list("h", "b", "o", "s", row("R", Some(value))),
        "row id" => list("h", "b", "o", "s", ListRow::new(value, "R")),
        "location request text" => LocationRequestMessage::new(value).map(Into::into),
        "flow text" => FlowMessage::new(value, "1", "Go", "S").map(Into::into),
        "flow cta" => FlowMessage::new("t", "1", value, "S").map(Into::into),
        "flow id" => FlowMessage::new("t", value, "Go", "S").map(Into::into),
        "flow screen" => FlowMessage::new("t", "1", "Go", value).map(Into::into),
        other => panic!("no such field {other}"),
    }
}

const LIMITS: [(&str, usize); 17] = [
    ("caption", 1024),
    ("filename", 255),
    ("buttons text", 1024),
    ("button title", 20),
    ("button id", 256),
    ("list header", 60),
    ("list body", 1024),
    ("list button text", 20),
    ("section title", 24),
    ("row title", 24),
    ("row description", 72),
    ("row id", 200),
    ("location request text", 1024),
    ("flow text", 1024),
    ("flow cta", 30),
    ("flow id", 128),
    ("flow screen", 128),
];

#[test]
fn every_limit_at_and_one_past() {
    for (field, max) in LIMITS {
        assert!(field_with(field, &chars(max)).is_ok(), "{field} at {max}");
        match field_with(field, &chars(max + 1)) {
            Err(ValidationError::FieldTooLong {
                chars: got,
                max: limit,
                ..
            }) => assert_eq!((got, limit), (max + 1, max), "{field}"),
            other => panic!("{field} one past {max}: {other:?}"),
        }
        assert!(
            matches!(
                field_with(field, ""),
                Err(ValidationError::EmptyField { .. })
            ),
            "{field} empty"
        );
    }
}

proptest! {
    /// For every field and every length around its limit, the field is accepted exactly
    /// when it is 1 to `max` characters long.
    #[test]
    fn a_field_is_accepted_exactly_within_its_limit(
        which in 0..LIMITS.len(),
        offset in 0usize..8,
        above in any::<bool>(),
    ) {
        let (field, max) = LIMITS[which];
        let n = if above { max + 1 + offset } else { max.saturating_sub(offset) };
        let accepted = field_with(field, &chars(n)).is_ok();
        prop_assert_eq!(accepted, (1..=max).contains(&n), "{} with {} characters", field, n);
    }

    /// Any number of buttons is accepted exactly from 1 to 3; any number of rows, spread
    /// over any number of sections, exactly from 1 to 10 in all within 1 to 10 sections.
    #[test]
    fn counts_are_accepted_exactly_within_their_limits(
        buttons in 0usize..7,
        rows_per_section in proptest::collection::vec(1usize..4, 0..13),
    ) {
        let made: Vec<ReplyButton> = (0..buttons).map(|i| ReplyButton::new(format!("b{i}"), format!("B{i}"))).collect();
        prop_assert_eq!(ButtonsMessage::new("t", made).is_ok(), (1..=3).contains(&buttons));
        let mut next = 0;
        let sections: Vec<ListSection> = rows_per_section.iter().enumerate().map(|(s, n)| {
            let rows = (0..*n).map(|_| { next += 1; ListRow::new(format!("r{next}"), "R") }).collect();
            ListSection::new(format!("S{s}"), rows)
        }).collect();
        let total: usize = rows_per_section.iter().sum();
        let ok = (1..=10).contains(&sections.len()) && (1..=10).contains(&total);
        prop_assert_eq!(ListMessage::new("h", "b", "o", sections).is_ok(), ok);
    }
}

/// Any JSON value: what a gateway (or something posing as one) may answer.
fn any_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-zA-Z{}_ 0-9]{0,12}".prop_map(serde_json::Value::from),
        prop_oneof![
            Just("name"),
            Just("language"),
            Just("status"),
            Just("APPROVED"),
            Just("components"),
            Just("HEADER"),
            Just("BODY"),
            Just("{{1}} {{2}}"),
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just("data".to_owned()),
                        Just("name".to_owned()),
                        Just("language".to_owned()),
                        Just("status".to_owned()),
                        Just("components".to_owned()),
                        Just("type".to_owned()),
                        Just("format".to_owned()),
                        Just("text".to_owned()),
                        "[a-z]{1,6}",
                    ],
                    inner,
                ),
                0..6,
            )
            .prop_map(|entries| serde_json::Value::Object(entries.into_iter().collect())),
        ]
    })
}

proptest! {
    /// Reading any answer as a catalog, and checking a template against what it read,
    /// never panics; whatever is read has a name and a language.
    #[test]
    fn any_answer_reads_as_a_catalog_or_none_without_panicking(data in any_json()) {
        let business = "254110090747".parse().unwrap();
        let envelope = serde_json::json!({"status": "success", "data": data});
        if let Some(catalog) = crate::Catalog::from_envelope(business, envelope.as_object().unwrap()) {
            for template in &catalog.templates {
                prop_assert!(!template.name.is_empty() && !template.language.is_empty());
            }
            let probe = crate::TemplateMessage::new("name", "en").unwrap();
            let _ = catalog.check(&probe);
        }
    }

    /// Marker counting never panics, and never counts more markers than `{{` pairs.
    #[test]
    fn marker_counting_is_total(text in "[{}a-z0-9_ é]{0,40}") {
        let count = crate::catalog::count_markers(&text);
        prop_assert!(count <= text.matches("{{").count());
    }
}
