//! LipaChat's flat payloads: inbound messages and (tolerantly) status callbacks.

use chrono::{DateTime, Utc};
use lipachat_session::Conversation;
use serde_json::{Map, Value};

use super::{
    DeliveryStatus, InboundKind, InboundMessage, StatusUpdate, WebhookError, WebhookEvent,
    WebhookParser, phone, shorten, text, timestamp, wamid,
};
use crate::reengagement;

/// The fields of a status callback that may carry an error (never a customer's text).
const ERROR_FIELDS: [&str; 11] = [
    "status",
    "errors",
    "error",
    "code",
    "errorCode",
    "error_code",
    "message",
    "statusDesc",
    "title",
    "details",
    "reason",
];

pub(super) fn parse(
    parser: &WebhookParser,
    object: &Map<String, Value>,
    received_at: DateTime<Utc>,
) -> Result<WebhookEvent, WebhookError> {
    let message_type = object.get("type").and_then(Value::as_str);
    let delivery = object
        .get("status")
        .and_then(Value::as_str)
        .and_then(DeliveryStatus::from_wire);
    let has_error = ["errors", "error", "code", "errorCode", "error_code"]
        .iter()
        .any(|k| object.get(*k).is_some_and(|v| !v.is_null()));
    let names_a_message_kind =
        message_type.is_some_and(|t| InboundKind::from_wire(t) != InboundKind::Unknown);
    if delivery.is_some() || (has_error && !names_a_message_kind) {
        Ok(status_callback(
            parser,
            object,
            delivery.unwrap_or(DeliveryStatus::Failed),
            received_at,
        ))
    } else if let Some(message_type) = message_type {
        inbound(parser, object, message_type, received_at).map(WebhookEvent::Inbound)
    } else {
        Err(WebhookError::UnknownShape {
            detail: "a flat payload needs a `type` (inbound message) or a `status` (status callback)",
        })
    }
}

fn inbound(
    parser: &WebhookParser,
    object: &Map<String, Value>,
    message_type: &str,
    received_at: DateTime<Utc>,
) -> Result<InboundMessage, WebhookError> {
    let customer = phone(object, "from")?.ok_or(WebhookError::MissingField { field: "from" })?;
    let business = phone(object, "to")?
        .or(parser.business)
        .ok_or(WebhookError::MissingField { field: "to" })?;
    let message_id = text(object, &["messageId", "message_id", "id"])
        .map(|id| shorten(&id))
        .ok_or(WebhookError::MissingField { field: "messageId" })?;
    let kind = InboundKind::from_wire(message_type);
    Ok(InboundMessage {
        conversation: Conversation::new(business, customer),
        message_id,
        kind,
        profile_name: text(object, &["profileName", "profile_name"]).map(|n| shorten(&n)),
        sent_at: timestamp(object.get("timestamp"), received_at),
        received_at,
        opens_window: parser.opens_window(kind),
    })
}

fn status_callback(
    parser: &WebhookParser,
    object: &Map<String, Value>,
    status: DeliveryStatus,
    received_at: DateTime<Utc>,
) -> WebhookEvent {
    let message_id = text(object, &["messageId", "message_id"]).map(|id| shorten(&id));
    let wa_id = wamid(object, &["waId", "wamid", "wa_id", "id"]);
    let at = timestamp(object.get("timestamp"), received_at).unwrap_or(received_at);
    let conversation = conversation(parser, object);
    let error_part: Map<String, Value> = ERROR_FIELDS
        .iter()
        .filter_map(|k| object.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect();
    if let Some(signal) = reengagement::find_in_json(&Value::Object(error_part)) {
        return WebhookEvent::WindowClosed {
            conversation,
            message_id,
            wa_id,
            at,
            code: signal.code,
        };
    }
    let (error_code, error_title) = first_error(object);
    WebhookEvent::Status(StatusUpdate {
        conversation,
        message_id,
        wa_id,
        status,
        at,
        error_code,
        error_title,
    })
}

/// The conversation of a status callback, only when the parser knows the business number:
/// the callback's orientation (`from`/`to`) is not published.
fn conversation(parser: &WebhookParser, object: &Map<String, Value>) -> Option<Conversation> {
    let business = parser.business?;
    let read = |field| phone(object, field).ok().flatten();
    let (from, to) = (read("from"), read("to"));
    let customer = match (from, to) {
        (Some(f), Some(t)) if f == business => Some(t),
        (Some(f), Some(t)) if t == business => Some(f),
        _ => ["recipient", "recipientId", "recipient_id"]
            .into_iter()
            .find_map(read),
    }?;
    (customer != business).then(|| Conversation::new(business, customer))
}

/// The first error's code and title, from `errors[0]`, `error` or the top level.
fn first_error(object: &Map<String, Value>) -> (Option<u32>, Option<String>) {
    let nested = match object.get("errors").or_else(|| object.get("error")) {
        Some(Value::Array(items)) => items.first().and_then(Value::as_object),
        Some(Value::Object(error)) => Some(error),
        _ => None,
    };
    let code_of = |o: &Map<String, Value>| {
        text(o, &["code", "errorCode", "error_code"]).and_then(|c| c.parse::<u32>().ok())
    };
    let title_of = |o: &Map<String, Value>| {
        text(o, &["title", "message", "statusDesc", "details"]).map(|t| shorten(&t))
    };
    let code = nested.and_then(code_of).or_else(|| code_of(object));
    let title = nested.and_then(title_of).or_else(|| title_of(object));
    (code, title)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn received() -> DateTime<Utc> {
        "2026-11-23T10:00:00Z".parse().unwrap()
    }

    fn one(parser: &WebhookParser, body: Value) -> Result<WebhookEvent, WebhookError> {
        let mut events = parser.parse(body.to_string().as_bytes(), received())?;
        assert_eq!(events.len(), 1);
        Ok(events.remove(0))
    }

    #[test]
    fn documented_inbound_text() {
        let event = one(
            &WebhookParser::default(),
            json!({"messageId": "m-1", "from": "254712345678", "to": "254110090747",
                   "profileName": "Jane", "type": "TEXT", "text": "Hello"}),
        )
        .unwrap();
        assert_eq!(
            event,
            WebhookEvent::Inbound(InboundMessage {
                conversation: Conversation::parse("254110090747", "254712345678").unwrap(),
                message_id: "m-1".into(),
                kind: InboundKind::Text,
                profile_name: Some("Jane".into()),
                sent_at: None,
                received_at: received(),
                opens_window: true,
            })
        );
    }

    #[test]
    fn kinds_and_the_opening_set() {
        let parser = WebhookParser::default();
        for (wire, kind, opens) in [
            ("IMAGE", InboundKind::Image, true),
            ("CONTACT", InboundKind::Contacts, true),
            ("INTERACTIVE", InboundKind::Interactive, true),
            ("LOCATION", InboundKind::Location, true),
            ("REACTION", InboundKind::Reaction, false),
            ("UNSUPPORTED", InboundKind::Unsupported, false),
            ("HOLOGRAM", InboundKind::Unknown, false),
        ] {
            let event = one(
                &parser,
                json!({"messageId": "m", "from": "254712345678", "to": "254110090747", "type": wire}),
            )
            .unwrap();
            let WebhookEvent::Inbound(message) = event else {
                panic!("{wire}: not inbound")
            };
            assert_eq!(
                (message.kind, message.opens_window),
                (kind, opens),
                "{wire}"
            );
        }
    }

    #[test]
    fn a_customer_writing_131047_still_opens_the_window() {
        let event = one(
            &WebhookParser::default(),
            json!({"messageId": "m", "from": "254712345678", "to": "254110090747",
                   "type": "TEXT", "text": "error 131047 re-engagement?"}),
        )
        .unwrap();
        assert!(matches!(event, WebhookEvent::Inbound(m) if m.opens_window));
    }

    #[test]
    fn missing_and_invalid_fields() {
        let parser = WebhookParser::default();
        assert_eq!(
            one(
                &parser,
                json!({"messageId": "m", "to": "254110090747", "type": "TEXT"})
            ),
            Err(WebhookError::MissingField { field: "from" })
        );
        assert_eq!(
            one(
                &parser,
                json!({"messageId": "m", "from": "254712345678", "type": "TEXT"})
            ),
            Err(WebhookError::MissingField { field: "to" })
        );
        assert_eq!(
            one(
                &parser,
                json!({"from": "254712345678", "to": "254110090747", "type": "TEXT"})
            ),
            Err(WebhookError::MissingField { field: "messageId" })
        );
        assert!(matches!(
            one(
                &parser,
                json!({"messageId": "m", "from": "07123", "to": "254110090747", "type": "TEXT"})
            ),
            Err(WebhookError::InvalidField { field: "from", .. })
        ));
        assert!(matches!(
            one(&parser, json!({"hello": "world"})),
            Err(WebhookError::UnknownShape { .. })
        ));
        // With the business number configured, `to` may be missing.
        let parser = parser.with_business_number("254110090747".parse().unwrap());
        let event = one(
            &parser,
            json!({"messageId": "m", "from": 254712345678u64, "type": "TEXT"}),
        )
        .unwrap();
        assert_eq!(
            event.conversation(),
            Some(Conversation::parse("254110090747", "254712345678").unwrap())
        );
    }

    #[test]
    fn status_callbacks_naming_131047_close_the_window() {
        let parser = WebhookParser::default();
        for body in [
            json!({"messageId": "ours-1", "status": "FAILED", "errors": [{"code": 131047, "title": "Re-engagement message"}]}),
            json!({"messageId": "ours-1", "status": "failed", "code": "131047"}),
            json!({"messageId": "ours-1", "code": 470, "message": "Message failed"}),
            json!({"messageId": "ours-1", "status": "FAILED", "message": "(#131047) Re-engagement message"}),
            json!({"messageId": "ours-1", "error": {"code": 131047}}),
        ] {
            match one(&parser, body.clone()).unwrap() {
                WebhookEvent::WindowClosed {
                    conversation,
                    message_id,
                    at,
                    ..
                } => {
                    assert_eq!(conversation, None, "{body}");
                    assert_eq!(message_id.as_deref(), Some("ours-1"));
                    assert_eq!(at, received());
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        let legacy = one(
            &parser,
            json!({"messageId": "x", "errors": [{"code": 470}]}),
        )
        .unwrap();
        assert!(matches!(
            legacy,
            WebhookEvent::WindowClosed { code: 470, .. }
        ));
    }

    #[test]
    fn status_callback_with_known_business_has_a_conversation() {
        let parser = WebhookParser::default().with_business_number("254110090747".parse().unwrap());
        let expected = Conversation::parse("254110090747", "254712345678").unwrap();
        for body in [
            json!({"messageId": "m", "status": "FAILED", "code": 131047, "from": "254110090747", "to": "254712345678"}),
            json!({"messageId": "m", "status": "FAILED", "code": 131047, "from": "254712345678", "to": "254110090747"}),
            json!({"messageId": "m", "status": "FAILED", "code": 131047, "recipientId": "254712345678"}),
        ] {
            assert_eq!(
                one(&parser, body.clone()).unwrap().conversation(),
                Some(expected),
                "{body}"
            );
        }
        let unrelated = json!({"messageId": "m", "status": "FAILED", "code": 131047, "from": "14155550100", "to": "254712345678"});
        assert_eq!(one(&parser, unrelated).unwrap().conversation(), None);
    }

    #[test]
    fn other_statuses() {
        let event = one(
            &WebhookParser::default(),
            json!({"messageId": "m", "waId": "wamid.ABC", "status": "DELIVERED", "timestamp": 1_700_000_000}),
        )
        .unwrap();
        assert_eq!(
            event,
            WebhookEvent::Status(StatusUpdate {
                conversation: None,
                message_id: Some("m".into()),
                wa_id: Some("wamid.ABC".into()),
                status: DeliveryStatus::Delivered,
                at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
                error_code: None,
                error_title: None,
            })
        );
        let failed = one(
            &WebhookParser::default(),
            json!({"messageId": "m", "status": "FAILED", "errors": [{"code": 131026, "title": "Message undeliverable"}]}),
        )
        .unwrap();
        let WebhookEvent::Status(update) = failed else {
            panic!("not a status")
        };
        assert_eq!(update.status, DeliveryStatus::Failed);
        assert_eq!(update.error_code, Some(131026));
        assert_eq!(update.error_title.as_deref(), Some("Message undeliverable"));
        // A waId that is a phone number is not WhatsApp's message id.
        let phone_wa_id = one(
            &WebhookParser::default(),
            json!({"messageId": "m", "waId": "254712345678", "status": "READ"}),
        )
        .unwrap();
        assert!(matches!(
            phone_wa_id,
            WebhookEvent::Status(StatusUpdate { wa_id: None, .. })
        ));
    }
}
