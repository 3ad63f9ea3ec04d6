//! Properties: stored messages re-validate, and the webhook parser never panics, whatever
//! it is given. (Request bodies' round trips are the crate's own tests, in
//! `src/request_properties.rs`: reading a body back is not public API.)

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Utc};
use lipachat_api::{
    ContactMessage, FreeFormMessage, InboundKind, TextMessage, WebhookEvent, WebhookParser,
};
use lipachat_session::{Conversation, PhoneNumber};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// A number as a parser reads it: canonical (a key read back from an old store may not
/// be, but no request carries one, and its spelling would not read back as itself).
fn phone() -> impl Strategy<Value = PhoneNumber> {
    (10_000_000u64..=999_999_999_999_999).prop_map(|n| PhoneNumber::parse(&n.to_string()).unwrap())
}

fn conversation() -> impl Strategy<Value = Conversation> {
    (phone(), phone()).prop_map(|(b, c)| Conversation::new(b, c))
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map(any::<String>(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JSON built from the keys and values webhooks use, so the parser's deeper paths run.
fn webhook_like() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("messageId"),
        Just("from"),
        Just("to"),
        Just("type"),
        Just("profileName"),
        Just("timestamp"),
        Just("status"),
        Just("errors"),
        Just("error"),
        Just("code"),
        Just("message"),
        Just("waId"),
        Just("id"),
        Just("entry"),
        Just("changes"),
        Just("field"),
        Just("value"),
        Just("metadata"),
        Just("display_phone_number"),
        Just("messages"),
        Just("statuses"),
        Just("contacts"),
        Just("profile"),
        Just("name"),
        Just("wa_id"),
        Just("recipient_id"),
    ]
    .prop_map(str::to_owned);
    let leaf = prop_oneof![
        Just(Value::Null),
        Just(json!("254712345678")),
        Just(json!("15550001111")),
        Just(json!("0712")),
        Just(json!("TEXT")),
        Just(json!("reaction")),
        Just(json!("failed")),
        Just(json!("delivered")),
        Just(json!("messages")),
        Just(json!("wamid.ABC")),
        Just(json!(131047)),
        Just(json!("131047")),
        Just(json!(470)),
        Just(json!("1700000000")),
        Just(json!(1.5e300)),
        Just(json!(-1)),
        Just(json!(u64::MAX)),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 128, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::vec((key.clone(), inner), 0..8)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn received() -> DateTime<Utc> {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

fn check_events(events: &[WebhookEvent]) {
    for event in events {
        if let WebhookEvent::Inbound(message) = event {
            assert!(message.inbound_time() <= message.received_at);
        }
        if let WebhookEvent::WindowClosed { at, code, .. } = event {
            assert!(*at <= received());
            assert!(*code == 131047 || *code == 470);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn webhook_parser_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(events) = WebhookParser::default().parse(&bytes, received()) {
            check_events(&events);
        }
    }

    #[test]
    fn webhook_parser_never_panics_on_json(value in json_value()) {
        let parser = WebhookParser::default();
        if let Ok(events) = parser.parse(value.to_string().as_bytes(), received()) {
            check_events(&events);
        }
        let _ = parser.parse_value(&value, received());
    }

    #[test]
    fn webhook_parser_never_panics_on_webhook_like_json(value in webhook_like()) {
        let business = PhoneNumber::from_u64(15_550_001_111).unwrap();
        for parser in [WebhookParser::default(), WebhookParser::default().with_business_number(business)] {
            for wrapped in [
                value.clone(),
                json!({"entry": [{"changes": [{"field": "messages", "value": value.clone()}]}]}),
                json!([value.clone()]),
            ] {
                if let Ok(events) = parser.parse(wrapped.to_string().as_bytes(), received()) {
                    check_events(&events);
                }
            }
        }
    }

    #[test]
    fn flat_inbound_payloads_give_one_inbound_event(
        c in conversation(),
        kind in proptest::sample::select(InboundKind::ALL.to_vec()),
        upper in any::<bool>(),
        id in "[A-Za-z0-9._=-]{1,40}",
        name in proptest::option::of("\\PC{1,20}"),
    ) {
        let wire_type = if upper { kind.name().to_uppercase() } else { kind.name().to_owned() };
        let body = json!({
            "messageId": id, "from": c.customer.to_string(), "to": c.business.to_string(),
            "profileName": name, "type": wire_type, "text": "131047 re-engagement"
        });
        let parser = WebhookParser::default();
        let events = parser.parse(body.to_string().as_bytes(), received()).unwrap();
        prop_assert_eq!(events.len(), 1);
        let WebhookEvent::Inbound(message) = &events[0] else {
            return Err(TestCaseError::fail(format!("not inbound: {events:?}")));
        };
        prop_assert_eq!(message.conversation(), Some(c));
        prop_assert_eq!(message.kind, kind);
        prop_assert_eq!(message.message_id.as_deref(), Some(id.as_str()));
        let opens = InboundKind::OPENING_BY_DEFAULT.contains(&kind) && kind != InboundKind::Call;
        prop_assert_eq!(message.opens_window, opens);
        prop_assert_eq!(message.inbound_time(), received());
        let expected_name = name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
        prop_assert_eq!(message.profile_name.clone(), expected_name);
    }

    #[test]
    fn nested_inbound_time_is_the_sender_time_capped_at_receipt(
        c in conversation(),
        offset in -200_000i64..200_000,
    ) {
        let sent = received().timestamp() + offset;
        let body = json!({"object": "whatsapp_business_account", "entry": [{"changes": [{
            "field": "messages",
            "value": {
                "metadata": {"display_phone_number": c.business.to_string()},
                "messages": [{"from": c.customer.to_string(), "id": "wamid.X",
                              "timestamp": sent.to_string(), "type": "text"}]
            }
        }]}]});
        let events = WebhookParser::default().parse(body.to_string().as_bytes(), received()).unwrap();
        let WebhookEvent::Inbound(message) = &events[0] else {
            return Err(TestCaseError::fail(format!("not inbound: {events:?}")));
        };
        prop_assert_eq!(message.conversation(), Some(c));
        let expected = DateTime::from_timestamp(sent, 0).unwrap().min(received());
        prop_assert_eq!(message.inbound_time(), expected);
    }

    #[test]
    fn tampered_storage_never_yields_an_invalid_message(value in stored_like()) {
        // Whatever deserialises must be valid: re-building it from its parts succeeds.
        if let Ok(message) = serde_json::from_value::<FreeFormMessage>(value) {
            match message {
                FreeFormMessage::Contact(card) => {
                    prop_assert!(ContactMessage::new(card.formatted_name(), card.phones().to_vec()).is_ok());
                }
                FreeFormMessage::Text(text) => prop_assert!(TextMessage::new(text.body()).is_ok()),
                _ => {}
            }
        }
    }
}

/// Stored-message-like JSON: the right tags and keys, arbitrary values.
fn stored_like() -> impl Strategy<Value = Value> {
    let string = prop_oneof![
        Just(String::new()),
        Just("  ".to_owned()),
        Just("Cell".to_owned()),
        Just("254712345678".to_owned()),
        Just("0712345678".to_owned()),
        Just("a\nb".to_owned()),
        Just("x".repeat(5000)),
        any::<String>(),
    ];
    let maybe = |s: BoxedStrategy<String>| {
        prop_oneof![
            s.clone().prop_map(Value::String),
            Just(Value::Null),
            any::<i64>().prop_map(Value::from),
        ]
    };
    let s = string.boxed();
    let phone = (
        maybe(s.clone()),
        maybe(s.clone()),
        proptest::option::of(maybe(s.clone())),
    )
        .prop_map(|(phone, phone_type, wa_id)| {
            let mut m = Map::new();
            m.insert("phone".into(), phone);
            m.insert("phone_type".into(), phone_type);
            if let Some(wa_id) = wa_id {
                m.insert("wa_id".into(), wa_id);
            }
            Value::Object(m)
        });
    let contact = (maybe(s.clone()), proptest::collection::vec(phone, 0..3))
        .prop_map(|(name, phones)| json!({"kind": "contact", "message": {"formatted_name": name, "phones": phones}}));
    let text = maybe(s).prop_map(|body| json!({"kind": "text", "message": {"body": body}}));
    prop_oneof![contact, text]
}

#[test]
fn oversized_webhooks_are_refused_before_parsing() {
    let parser = WebhookParser::default();
    let big = vec![b' '; 256 * 1024 + 1];
    assert!(matches!(
        parser.parse(&big, received()),
        Err(lipachat_api::WebhookError::TooLarge { .. })
    ));
    let deep = "[".repeat(10_000);
    assert!(matches!(
        parser.parse(deep.as_bytes(), received()),
        Err(lipachat_api::WebhookError::NotJson { .. })
    ));
    assert!(matches!(
        parser.parse(b"   ", received()),
        Err(lipachat_api::WebhookError::Empty)
    ));
    assert!(matches!(
        parser.parse(b"42", received()),
        Err(lipachat_api::WebhookError::UnknownShape { .. })
    ));
}

/// A message body of any kind, in WhatsApp's nested shape or LipaChat's flat one, with or
/// without a phone number, a business-scoped user id, a group and an id.
#[derive(Debug, Clone)]
struct AnyMessage {
    c: Conversation,
    kind: InboundKind,
    nested: bool,
    with_phone: bool,
    user_id: Option<String>,
    group: Option<String>,
    id: Option<String>,
}

fn any_message() -> impl Strategy<Value = AnyMessage> {
    (
        conversation(),
        proptest::sample::select(InboundKind::ALL.to_vec()),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of("[A-Z]{2}\\.[A-Za-z0-9]{1,30}"),
        proptest::option::of("[A-Za-z0-9_=@.-]{1,60}"),
        proptest::option::of("wamid\\.[A-Za-z0-9=]{1,30}"),
    )
        .prop_map(
            |(c, kind, nested, with_phone, user_id, group, id)| AnyMessage {
                c,
                kind,
                nested,
                with_phone,
                user_id,
                group,
                id,
            },
        )
}

impl AnyMessage {
    fn body(&self) -> Value {
        let mut message = Map::new();
        let mut put = |k: &str, v: Value| {
            message.insert(k.to_owned(), v);
        };
        if self.with_phone {
            put("from", json!(self.c.customer.to_string()));
        }
        let (id_key, user_key, group_key) = if self.nested {
            ("id", "from_user_id", "group_id")
        } else {
            ("messageId", "fromUserId", "groupId")
        };
        if let Some(id) = &self.id {
            put(id_key, json!(id));
        }
        if let Some(user_id) = &self.user_id {
            put(user_key, json!(user_id));
        }
        if let Some(group) = &self.group {
            put(group_key, json!(group));
        }
        put("type", json!(self.kind.name()));
        put("timestamp", json!("1700000000"));
        put("text", json!({"body": "hi"}));
        if self.nested {
            json!({"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": {
                "metadata": {"display_phone_number": self.c.business.to_string()},
                "messages": [Value::Object(message)]
            }}]}]})
        } else {
            put("to", json!(self.c.business.to_string()));
            Value::Object(message)
        }
    }

    /// Whether anything names the sender (a nested system message may name no one).
    fn identified(&self) -> bool {
        self.with_phone || self.user_id.is_some()
    }

    /// The events; a flat payload naming no sender is refused whole (one ignored event
    /// here).
    fn events(&self) -> Vec<WebhookEvent> {
        match WebhookParser::default().parse(self.body().to_string().as_bytes(), received()) {
            Ok(events) => events,
            Err(error) => {
                assert!(!self.nested && !self.identified(), "{error}: {self:?}");
                vec![WebhookEvent::Ignored {
                    reason: error.to_string(),
                }]
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A message with a group id never yields a 1:1 conversation, whatever else it has.
    #[test]
    fn a_group_message_never_yields_a_1_to_1_conversation(message in any_message()) {
        let events = message.events();
        prop_assert_eq!(events.len(), 1);
        if message.group.is_some() {
            prop_assert_eq!(events[0].conversation(), None);
            if let WebhookEvent::Inbound(inbound) = &events[0] {
                prop_assert!(inbound.group.is_some());
                prop_assert_eq!(inbound.conversation(), None);
            }
        }
    }

    /// A 1:1 conversation exactly when the message is outside a group and names the
    /// sender's phone; a message naming only a user id is still an inbound event.
    #[test]
    fn a_1_to_1_conversation_needs_a_phone_and_no_group(message in any_message()) {
        let events = message.events();
        let system_may_be_anonymous = message.nested && message.kind == InboundKind::System;
        match &events[0] {
            WebhookEvent::Inbound(inbound) => {
                prop_assert!(message.identified() || system_may_be_anonymous);
                let expected = (message.group.is_none() && message.with_phone).then_some(message.c);
                prop_assert_eq!(inbound.conversation(), expected);
                prop_assert_eq!(inbound.sender.user_id.as_ref().map(|id| id.to_string()), message.user_id.clone());
                prop_assert_eq!(inbound.message_id.clone(), message.id.clone());
            }
            other => prop_assert!(!message.identified() && !system_may_be_anonymous, "{other:?}"),
        }
    }

    /// Whether a message opens the window never depends on whether it has an id.
    #[test]
    fn opening_never_depends_on_the_id(message in any_message(), id in "wamid\\.[A-Za-z0-9]{1,20}") {
        let with_id = AnyMessage { id: Some(id), ..message.clone() };
        let without_id = AnyMessage { id: None, ..message };
        let opens = |m: &AnyMessage| match &m.events()[0] {
            WebhookEvent::Inbound(inbound) => Some(inbound.opens_window),
            _ => None,
        };
        prop_assert_eq!(opens(&with_id), opens(&without_id));
    }
}
