//! WhatsApp's own (nested) webhook payload.

use chrono::{DateTime, Utc};
use lipachat_session::{Conversation, PhoneNumber};
use serde_json::{Map, Value};

use super::{
    DeliveryStatus, InboundKind, InboundMessage, StatusUpdate, WebhookError, WebhookEvent,
    WebhookParser, phone, shorten, text, timestamp,
};
use crate::reengagement;

pub(super) fn parse(
    parser: &WebhookParser,
    object: &Map<String, Value>,
    received_at: DateTime<Utc>,
) -> Result<Vec<WebhookEvent>, WebhookError> {
    let Some(Value::Array(entries)) = object.get("entry") else {
        return Err(WebhookError::UnknownShape {
            detail: "WhatsApp's `entry` must be an array",
        });
    };
    let mut events = Vec::new();
    for entry in entries {
        let Some(changes) = entry.get("changes").and_then(Value::as_array) else {
            events.push(ignored("an entry without a `changes` array"));
            continue;
        };
        for change in changes {
            change_events(parser, change, received_at, &mut events);
        }
    }
    Ok(events)
}

fn ignored(reason: impl Into<String>) -> WebhookEvent {
    WebhookEvent::Ignored {
        reason: reason.into(),
    }
}

fn change_events(
    parser: &WebhookParser,
    change: &Value,
    received_at: DateTime<Utc>,
    events: &mut Vec<WebhookEvent>,
) {
    if let Some(field) = change.get("field").and_then(Value::as_str)
        && field != "messages"
    {
        events.push(ignored(format!(
            "WhatsApp webhook field {:?} is not about messages",
            shorten(field)
        )));
        return;
    }
    let Some(value) = change.get("value").and_then(Value::as_object) else {
        events.push(ignored("a change without a `value` object"));
        return;
    };
    // A business number in the metadata that is not one (a float, say) is not replaced by
    // the configured one: the messages are ignored with the reason.
    let business = match value.get("metadata").and_then(Value::as_object) {
        Some(metadata) => phone(metadata, "display_phone_number")
            .map(|number| number.or(parser.business))
            .map_err(|e| e.to_string()),
        None => Ok(parser.business),
    };
    let messages = value.get("messages").and_then(Value::as_array);
    let statuses = value.get("statuses").and_then(Value::as_array);
    if messages.is_none() && statuses.is_none() {
        events.push(ignored("a change with neither `messages` nor `statuses`"));
        return;
    }
    for message in messages.into_iter().flatten() {
        events.push(
            business
                .clone()
                .and_then(|business| inbound(parser, value, business, message, received_at))
                .map_or_else(ignored, WebhookEvent::Inbound),
        );
    }
    for status in statuses.into_iter().flatten() {
        events.push(status_event(
            business.clone().ok().flatten(),
            status,
            received_at,
        ));
    }
}

fn inbound(
    parser: &WebhookParser,
    value: &Map<String, Value>,
    business: Option<PhoneNumber>,
    message: &Value,
    received_at: DateTime<Utc>,
) -> Result<InboundMessage, String> {
    let message = message
        .as_object()
        .ok_or("a message that is not an object")?;
    let business = business.ok_or("a message without the business number (metadata)")?;
    let customer = phone(message, "from")
        .map_err(|e| e.to_string())?
        .ok_or("a message without `from`")?;
    let message_id = text(message, &["id"])
        .map(|id| shorten(&id))
        .ok_or("a message without `id`")?;
    let kind = message
        .get("type")
        .and_then(Value::as_str)
        .map_or(InboundKind::Unknown, InboundKind::from_wire);
    Ok(InboundMessage {
        conversation: Conversation::new(business, customer),
        message_id,
        kind,
        profile_name: profile_name(value, customer),
        sent_at: timestamp(message.get("timestamp"), received_at),
        received_at,
        opens_window: parser.opens_window(kind),
    })
}

/// The sender's profile name from `value.contacts[]`: the contact whose `wa_id` is the
/// sender, else the only contact.
fn profile_name(value: &Map<String, Value>, customer: PhoneNumber) -> Option<String> {
    let contacts = value.get("contacts")?.as_array()?;
    let name_of = |contact: &Value| {
        contact
            .get("profile")
            .and_then(Value::as_object)
            .and_then(|profile| text(profile, &["name"]))
            .map(|n| shorten(&n))
    };
    contacts
        .iter()
        .find(|c| {
            c.as_object()
                .and_then(|c| phone(c, "wa_id").ok().flatten())
                .is_some_and(|wa_id| wa_id == customer)
        })
        .and_then(name_of)
        .or_else(|| match contacts.as_slice() {
            [only] => name_of(only),
            _ => None,
        })
}

fn status_event(
    business: Option<PhoneNumber>,
    status: &Value,
    received_at: DateTime<Utc>,
) -> WebhookEvent {
    let Some(status) = status.as_object() else {
        return ignored("a status that is not an object");
    };
    let customer = phone(status, "recipient_id").ok().flatten();
    let conversation = business
        .zip(customer)
        .map(|(business, customer)| Conversation::new(business, customer));
    let wa_id = text(status, &["id"]).map(|id| shorten(&id));
    let at = timestamp(status.get("timestamp"), received_at).unwrap_or(received_at);
    let errors = status.get("errors");
    if let Some(signal) = errors.and_then(reengagement::find_in_json) {
        return WebhookEvent::WindowClosed {
            conversation,
            message_id: None,
            wa_id,
            at,
            code: signal.code,
        };
    }
    let Some(delivery) = status
        .get("status")
        .and_then(Value::as_str)
        .map(|s| DeliveryStatus::from_wire(s).unwrap_or(DeliveryStatus::Other))
    else {
        return ignored("a status without `status`");
    };
    let first_error = errors
        .and_then(Value::as_array)
        .and_then(|e| e.first())
        .and_then(Value::as_object);
    WebhookEvent::Status(StatusUpdate {
        conversation,
        message_id: None,
        wa_id,
        status: delivery,
        at,
        error_code: first_error
            .and_then(|e| text(e, &["code"]))
            .and_then(|c| c.parse().ok()),
        error_title: first_error
            .and_then(|e| text(e, &["title", "message"]))
            .map(|t| shorten(&t)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn received() -> DateTime<Utc> {
        "2026-11-23T10:00:00Z".parse().unwrap()
    }

    fn parse(body: Value) -> Vec<WebhookEvent> {
        WebhookParser::default()
            .parse(body.to_string().as_bytes(), received())
            .unwrap()
    }

    fn conversation() -> Conversation {
        Conversation::parse("15550001111", "254712345678").unwrap()
    }

    #[test]
    fn nested_messages_keep_the_sender_timestamp() {
        let sent = received().timestamp() - 90;
        let events = parse(json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "+1 555-000-1111", "phone_number_id": "123"},
                "contacts": [{"profile": {"name": "Jane"}, "wa_id": "254712345678"}],
                "messages": [
                    {"from": "254712345678", "id": "wamid.A", "timestamp": sent.to_string(), "type": "text", "text": {"body": "hi"}},
                    {"from": "254712345678", "id": "wamid.B", "timestamp": (received().timestamp() + 600).to_string(), "type": "reaction", "reaction": {"emoji": "👍"}}
                ]
            }}]}]
        }));
        assert_eq!(events.len(), 2);
        let WebhookEvent::Inbound(text_message) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(text_message.conversation, conversation());
        assert_eq!(text_message.message_id, "wamid.A");
        assert_eq!(text_message.profile_name.as_deref(), Some("Jane"));
        assert_eq!(text_message.sent_at, DateTime::from_timestamp(sent, 0));
        assert_eq!(
            text_message.inbound_time(),
            DateTime::from_timestamp(sent, 0).unwrap()
        );
        assert!(text_message.opens_window);
        let WebhookEvent::Inbound(reaction) = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(reaction.kind, InboundKind::Reaction);
        assert!(!reaction.opens_window);
        // A timestamp from the sender's future is capped at receipt.
        assert_eq!(reaction.inbound_time(), received());
    }

    #[test]
    fn failed_status_131047_closes_the_window() {
        let events = parse(json!({
            "object": "whatsapp_business_account",
            "entry": [{"changes": [{"field": "messages", "value": {
                "metadata": {"display_phone_number": "15550001111"},
                "statuses": [
                    {"id": "wamid.X", "status": "failed", "timestamp": "1700000000", "recipient_id": "254712345678",
                     "errors": [{"code": 131047, "title": "Re-engagement message",
                                 "error_data": {"details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number."}}]},
                    {"id": "wamid.Y", "status": "delivered", "timestamp": "1700000001", "recipient_id": "254712345678"},
                    {"id": "wamid.Z", "status": "failed", "recipient_id": "254712345678", "errors": [{"code": 131026, "title": "Message undeliverable"}]}
                ]
            }}]}]
        }));
        assert_eq!(
            events[0],
            WebhookEvent::WindowClosed {
                conversation: Some(conversation()),
                message_id: None,
                wa_id: Some("wamid.X".into()),
                at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
                code: 131047,
            }
        );
        assert!(matches!(
            &events[1],
            WebhookEvent::Status(StatusUpdate {
                status: DeliveryStatus::Delivered,
                ..
            })
        ));
        assert!(matches!(
            &events[2],
            WebhookEvent::Status(StatusUpdate {
                status: DeliveryStatus::Failed,
                error_code: Some(131026),
                ..
            })
        ));
    }

    #[test]
    fn bad_items_are_ignored_not_fatal() {
        let events = parse(json!({
            "entry": [
                {"changes": [
                    {"field": "account_update", "value": {}},
                    {"field": "messages", "value": {"metadata": {"display_phone_number": "15550001111"},
                        "messages": [
                            {"from": "not a phone", "id": "wamid.1", "type": "text"},
                            {"from": "254712345678", "type": "text"},
                            7,
                            {"from": "254712345678", "id": "wamid.2", "type": "text"}
                        ]}},
                    {"value": {"messages": [{"from": "254712345678", "id": "wamid.3", "type": "text"}]}}
                ]},
                {"no_changes": true}
            ]
        }));
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| match e {
                WebhookEvent::Inbound(_) => "inbound",
                WebhookEvent::Ignored { .. } => "ignored",
                _ => "other",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "ignored", "ignored", "ignored", "ignored", "inbound", "ignored", "ignored"
            ]
        );
        assert!(matches!(
            WebhookParser::default().parse(br#"{"entry": 3}"#, received()),
            Err(WebhookError::UnknownShape { .. })
        ));
    }

    #[test]
    fn configured_business_fills_missing_metadata() {
        let parser = WebhookParser::default().with_business_number("15550001111".parse().unwrap());
        let events = parser
            .parse(
                json!({"entry": [{"changes": [{"value": {"messages": [
                    {"from": "254712345678", "id": "wamid.3", "type": "button"}
                ]}}]}]})
                .to_string()
                .as_bytes(),
                received(),
            )
            .unwrap();
        assert_eq!(events[0].conversation(), Some(conversation()));
    }
}
