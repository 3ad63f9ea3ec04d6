//! LipaChat's flat payloads: inbound messages, status callbacks (its `MESSAGE_STATUS`
//! event, and bare status objects, read tolerantly) and template status updates.

use chrono::{DateTime, Utc};
use lipachat_session::{GroupId, MessageId, PhoneNumber};
use serde_json::{Map, Value};

use super::content::{self, bsuid};
use super::{
    DeliveryStatus, InboundKind, InboundMessage, Recipient, Sender, StatusUpdate,
    TemplateStatusUpdate, WebhookError, WebhookEvent, WebhookParser, phone_with, shorten, text,
    timestamp, wamid,
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

/// Where a flat payload may name the sender's business-scoped user id.
const USER_ID_FIELDS: [&str; 4] = ["fromUserId", "from_user_id", "userId", "user_id"];

pub(super) fn parse(
    parser: &WebhookParser,
    object: &Map<String, Value>,
    received_at: DateTime<Utc>,
) -> Result<WebhookEvent, WebhookError> {
    if let Some(event) = text(object, &["event"]) {
        let named = ["MESSAGE_STATUS", "TEMPLATE_STATUS"]
            .iter()
            .any(|known| event.eq_ignore_ascii_case(known));
        if named || !(object.contains_key("type") || object.contains_key("status")) {
            return Ok(gateway_event(parser, object, &event, received_at));
        }
    }
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
        inbound(parser, object, message_type, received_at)
            .map(|m| WebhookEvent::Inbound(Box::new(m)))
    } else {
        Err(WebhookError::UnknownShape {
            detail: "a flat payload needs a `type` (inbound message), a `status` (status callback) or an `event`",
        })
    }
}

/// LipaChat's `{"event": ..., ...}` callbacks.
fn gateway_event(
    parser: &WebhookParser,
    object: &Map<String, Value>,
    event: &str,
    received_at: DateTime<Utc>,
) -> WebhookEvent {
    let inner = |name: &str| object.get(name).and_then(Value::as_object);
    match event.to_ascii_uppercase().as_str() {
        "MESSAGE_STATUS" => match inner("messageStatus") {
            Some(status) => {
                let delivery = status
                    .get("status")
                    .and_then(Value::as_str)
                    .map_or(DeliveryStatus::Other, |s| {
                        DeliveryStatus::from_wire(s).unwrap_or(DeliveryStatus::Other)
                    });
                status_callback(parser, status, delivery, received_at)
            }
            None => WebhookEvent::Ignored {
                reason: "a MESSAGE_STATUS event without a `messageStatus` object".into(),
            },
        },
        "TEMPLATE_STATUS" => match inner("templateStatus") {
            Some(template) => WebhookEvent::TemplateStatus(TemplateStatusUpdate {
                template_id: text(template, &["templateId", "template_id", "id"])
                    .map(|id| shorten(&id)),
                template_name: text(template, &["templateName", "template_name", "name"])
                    .map(|n| shorten(&n)),
                status: text(template, &["status"]).map(|s| shorten(&s)),
                description: text(template, &["statusDescription", "reason"]).map(|d| shorten(&d)),
                at: timestamp(object.get("timestamp"), received_at).unwrap_or(received_at),
            }),
            None => WebhookEvent::Ignored {
                reason: "a TEMPLATE_STATUS event without a `templateStatus` object".into(),
            },
        },
        other => WebhookEvent::Ignored {
            reason: format!(
                "LipaChat event {:?} is not about messages or statuses",
                shorten(other)
            ),
        },
    }
}

fn inbound(
    parser: &WebhookParser,
    object: &Map<String, Value>,
    message_type: &str,
    received_at: DateTime<Utc>,
) -> Result<InboundMessage, WebhookError> {
    let user_id = bsuid(object, &USER_ID_FIELDS);
    // A `from` that is not a phone number fails the payload unless a user id names the
    // sender instead.
    let customer = match phone_with(&parser.phones, object, "from") {
        Ok(customer) => customer,
        Err(_) if user_id.is_some() => None,
        Err(error) => return Err(error),
    };
    if customer.is_none() && user_id.is_none() {
        return Err(WebhookError::MissingField { field: "from" });
    }
    // A `to` that is not a phone number is never read as some other number: the configured
    // business number stands in for it; without one, the payload is refused.
    let business = match phone_with(&parser.phones, object, "to") {
        Ok(number) => number,
        Err(_) if parser.business.is_some() => None,
        Err(error) => return Err(error),
    }
    .or(parser.business)
    .ok_or(WebhookError::MissingField { field: "to" })?;
    let group = match text(object, &["groupId", "group_id"]) {
        None => None,
        Some(raw) => Some(
            GroupId::parse(&raw).map_err(|e| WebhookError::InvalidField {
                field: "groupId",
                detail: e.to_string(),
            })?,
        ),
    };
    let kind = InboundKind::from_wire(message_type);
    Ok(InboundMessage {
        business,
        sender: Sender {
            phone: customer,
            user_id,
            parent_user_id: bsuid(
                object,
                &["fromParentUserId", "from_parent_user_id", "parentUserId"],
            ),
            username: text(object, &["username"]).map(|u| shorten(&u)),
        },
        group,
        message_id: text(object, &["messageId", "message_id", "id"]).map(|id| shorten(&id)),
        kind,
        content: content::read(kind, message_type, object),
        context: content::context(object),
        referral: content::referral(object),
        profile_name: text(object, &["profileName", "profile_name"]).map(|n| shorten(&n)),
        sent_at: timestamp(object.get("timestamp"), received_at),
        received_at,
        // LipaChat documents no call payload: a flat `call` cannot tell who called or
        // whether it was answered, so it opens nothing (WhatsApp's `calls` field does).
        opens_window: kind != InboundKind::Call && parser.opens_window(kind),
    })
}

fn status_callback(
    parser: &WebhookParser,
    object: &Map<String, Value>,
    status: DeliveryStatus,
    received_at: DateTime<Utc>,
) -> WebhookEvent {
    // Our messageId, as we sent it: anything else (another program's id) names no send
    // of ours.
    let message_id =
        text(object, &["messageId", "message_id"]).and_then(|id| id.parse::<MessageId>().ok());
    let wa_id = wamid(object, &["waId", "wamid", "wa_id", "id"]);
    let at = timestamp(object.get("timestamp"), received_at).unwrap_or(received_at);
    let recipient = recipient(parser, object);
    let conversation = recipient.conversation();
    let error_part: Map<String, Value> = ERROR_FIELDS
        .iter()
        .filter_map(|k| object.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect();
    if let Some(signal) = reengagement::find_in_json(&Value::Object(error_part)) {
        return WebhookEvent::WindowClosed {
            conversation,
            recipient,
            message_id,
            wa_id,
            at,
            code: signal.code,
        };
    }
    let (error_code, error_title) = first_error(object);
    // LipaChat gives no numeric code: 131049 / 131050 are read in the text, as 131047 is.
    let error_code = error_code.or_else(|| {
        let refusal = error_title
            .as_deref()
            .and_then(reengagement::marketing_refusal_in_text)?;
        Some(match refusal {
            reengagement::MarketingRefusal::OptedOut => reengagement::MARKETING_OPT_OUT_CODE,
            _ => reengagement::MARKETING_LIMIT_CODE,
        })
    });
    WebhookEvent::Status(StatusUpdate {
        conversation,
        recipient,
        message_id,
        wa_id,
        status,
        at,
        error_code,
        error_title,
        pricing: None,
        conversation_expires_at: None,
    })
}

/// Who a flat status callback is about. The customer's phone is told only when the parser
/// knows the business number: the callback's orientation (`from`/`to`) is not published.
fn recipient(parser: &WebhookParser, object: &Map<String, Value>) -> Recipient {
    let to_group = text(object, &["recipient_type", "recipientType"])
        .is_some_and(|t| t.eq_ignore_ascii_case("group"));
    let group = to_group
        .then(|| text(object, &["recipient_id", "recipientId", "recipient"]))
        .flatten()
        .and_then(|g| GroupId::parse(&g).ok());
    Recipient {
        business: parser.business,
        phone: if to_group {
            None
        } else {
            parser.business.and_then(|b| customer(parser, b, object))
        },
        user_id: bsuid(object, &["recipient_user_id", "recipientUserId"]),
        parent_user_id: bsuid(
            object,
            &["recipient_parent_user_id", "parent_recipient_user_id"],
        ),
        group,
    }
}

/// The customer of a flat status callback sent from `business`.
fn customer(
    parser: &WebhookParser,
    business: PhoneNumber,
    object: &Map<String, Value>,
) -> Option<PhoneNumber> {
    let read = |field| phone_with(&parser.phones, object, field).ok().flatten();
    let (from, to) = (read("from"), read("to"));
    let customer = match (from, to) {
        (Some(f), Some(t)) if f == business => Some(t),
        (Some(f), Some(t)) if t == business => Some(f),
        _ => ["recipient", "recipientId", "recipient_id"]
            .into_iter()
            .find_map(read),
    }?;
    (customer != business).then_some(customer)
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
    use crate::webhook::InboundContent;
    use lipachat_session::Conversation;
    use serde_json::json;

    /// One of our `messageId`s, numbered.
    fn ours(n: u128) -> MessageId {
        MessageId::from_uuid(uuid::Uuid::from_u128(
            0x0b2f_6a7e_58c4_4d51_9d0e_3f3b_7b1e_0000 + n,
        ))
    }

    /// A report naming a `messageId` that is not ours (not a UUID, as another program's
    /// may be) is still read, naming no send of ours.
    #[test]
    fn a_report_naming_anothers_message_id_names_no_send_of_ours() {
        let parser = WebhookParser::default();
        let body = json!({"messageId": "their-own-7", "status": "FAILED", "code": "131047"});
        match one(&parser, body).unwrap() {
            WebhookEvent::WindowClosed {
                message_id, code, ..
            } => {
                assert_eq!(code, 131_047);
                assert_eq!(message_id, None);
            }
            other => panic!("{other:?}"),
        }
        let body = json!({"messageId": ours(4).to_string().to_uppercase(), "status": "READ"});
        match one(&parser, body).unwrap() {
            WebhookEvent::Status(update) => assert_eq!(update.message_id, Some(ours(4))),
            other => panic!("{other:?}"),
        }
    }

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
            WebhookEvent::Inbound(Box::new(InboundMessage {
                business: "254110090747".parse().unwrap(),
                sender: Sender {
                    phone: Some("254712345678".parse().unwrap()),
                    ..Sender::default()
                },
                group: None,
                message_id: Some("m-1".into()),
                kind: InboundKind::Text,
                content: InboundContent::Text {
                    body: "Hello".into()
                },
                context: None,
                referral: None,
                profile_name: Some("Jane".into()),
                sent_at: None,
                received_at: received(),
                opens_window: true,
            }))
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
            ("UNSUPPORTED", InboundKind::Unsupported, true),
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
        // No id: still a message that opens the window (the id only deduplicates).
        let no_id = one(
            &parser,
            json!({"from": "254712345678", "to": "254110090747", "type": "TEXT"}),
        )
        .unwrap();
        assert!(
            matches!(&no_id, WebhookEvent::Inbound(m) if m.message_id.is_none() && m.opens_window),
            "{no_id:?}"
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
            json!({"messageId": "0b2f6a7e-58c4-4d51-9d0e-3f3b7b1e0001", "status": "FAILED", "errors": [{"code": 131047, "title": "Re-engagement message"}]}),
            json!({"messageId": "0b2f6a7e-58c4-4d51-9d0e-3f3b7b1e0001", "status": "failed", "code": "131047"}),
            json!({"messageId": "0b2f6a7e-58c4-4d51-9d0e-3f3b7b1e0001", "code": 470, "message": "Message failed"}),
            json!({"messageId": "0b2f6a7e-58c4-4d51-9d0e-3f3b7b1e0001", "status": "FAILED", "message": "(#131047) Re-engagement message"}),
            json!({"messageId": "0b2f6a7e-58c4-4d51-9d0e-3f3b7b1e0001", "error": {"code": 131047}}),
        ] {
            match one(&parser, body.clone()).unwrap() {
                WebhookEvent::WindowClosed {
                    conversation,
                    message_id,
                    at,
                    ..
                } => {
                    assert_eq!(conversation, None, "{body}");
                    assert_eq!(message_id, Some(ours(1)));
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
            json!({"messageId": ours(5).to_string(), "waId": "wamid.ABC", "status": "DELIVERED", "timestamp": 1_700_000_000}),
        )
        .unwrap();
        assert_eq!(
            event,
            WebhookEvent::Status(StatusUpdate {
                conversation: None,
                recipient: Recipient::default(),
                message_id: Some(ours(5)),
                wa_id: Some("wamid.ABC".into()),
                status: DeliveryStatus::Delivered,
                at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
                error_code: None,
                error_title: None,
                pricing: None,
                conversation_expires_at: None,
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

    #[test]
    fn message_status_callbacks() {
        let parser = WebhookParser::default();
        let delivered = one(
            &parser,
            json!({"event": "MESSAGE_STATUS", "messageStatus": {"waId": "wamid.HBgM", "messageId": "0b2f6a7e-58c4-4d51-9d0e-3f3b7b1e0002",
                   "conversationId": "c1", "status": "DELIVERED", "statusDesc": "Message delivered"}}),
        )
        .unwrap();
        let WebhookEvent::Status(update) = delivered else {
            panic!("{delivered:?}")
        };
        assert_eq!(update.status, DeliveryStatus::Delivered);
        assert_eq!(update.message_id, Some(ours(2)));
        assert_eq!(update.wa_id.as_deref(), Some("wamid.HBgM"));
        assert_eq!(update.at, received());
        // 131049 and 131050 in statusDesc are recognised as 131047 is (no numeric code
        // and no pricing in LipaChat's callback).
        for (desc, code) in [
            ("(#131050) User has stopped marketing messages", 131_050),
            ("Failed: 131049 healthy ecosystem engagement", 131_049),
        ] {
            let refused = one(
                &parser,
                json!({"event": "MESSAGE_STATUS", "messageStatus": {"waId": "wamid.M", "messageId": "0b2f6a7e-58c4-4d51-9d0e-3f3b7b1e0003",
                       "status": "FAILED", "statusDesc": desc}}),
            )
            .unwrap();
            let WebhookEvent::Status(update) = refused else {
                panic!("not a status: {refused:?}")
            };
            assert_eq!(
                (update.error_code, update.pricing),
                (Some(code), None),
                "{desc}"
            );
        }
        // A 131047 in statusDesc closes the window, as a WhatsApp failed status does.
        let closed = one(
            &parser,
            json!({"event": "MESSAGE_STATUS", "messageStatus": {"waId": "wamid.X", "messageId": "0b2f6a7e-58c4-4d51-9d0e-3f3b7b1e0003",
                   "status": "FAILED", "statusDesc": "(#131047) Re-engagement message"}}),
        )
        .unwrap();
        assert!(
            matches!(&closed, WebhookEvent::WindowClosed { code: 131047, message_id: Some(id), .. } if *id == ours(3)),
            "{closed:?}"
        );
        let failed = one(
            &parser,
            json!({"event": "message_status", "messageStatus": {"messageId": "ours-4", "status": "FAILED",
                   "statusDesc": "Message undeliverable"}}),
        )
        .unwrap();
        assert!(matches!(
            failed,
            WebhookEvent::Status(StatusUpdate {
                status: DeliveryStatus::Failed,
                ..
            })
        ));
        let empty = one(&parser, json!({"event": "MESSAGE_STATUS"})).unwrap();
        assert!(matches!(empty, WebhookEvent::Ignored { .. }));
    }

    #[test]
    fn template_status_updates_are_their_own_event() {
        let event = one(
            &WebhookParser::default(),
            json!({"event": "TEMPLATE_STATUS", "templateStatus": {"status": "REJECTED", "templateId": "1234",
                   "templateName": "contact_share", "statusDescription": "INVALID_FORMAT"}}),
        )
        .unwrap();
        assert_eq!(
            event,
            WebhookEvent::TemplateStatus(TemplateStatusUpdate {
                template_id: Some("1234".into()),
                template_name: Some("contact_share".into()),
                status: Some("REJECTED".into()),
                description: Some("INVALID_FORMAT".into()),
                at: received(),
            })
        );
        let other = one(
            &WebhookParser::default(),
            json!({"event": "ACCOUNT_UPDATE", "data": {}}),
        )
        .unwrap();
        assert!(
            matches!(other, WebhookEvent::Ignored { reason } if reason.contains("ACCOUNT_UPDATE"))
        );
    }

    #[test]
    fn an_array_of_events_in_order() {
        let events = WebhookParser::default()
            .parse(
                json!([
                    {"messageId": "in-1", "from": "254712345678", "to": "254110090747", "type": "TEXT", "text": "hi"},
                    {"event": "MESSAGE_STATUS", "messageStatus": {"messageId": "0b2f6a7e-58c4-4d51-9d0e-3f3b7b1e0001", "status": "READ"}},
                    {"event": "TEMPLATE_STATUS", "templateStatus": {"status": "APPROVED", "templateName": "t"}},
                    {"id": "wamid.Z", "status": "failed", "recipient_id": "254712345678",
                     "errors": [{"code": 131047, "title": "Re-engagement message"}]},
                    "noise"
                ])
                .to_string()
                .as_bytes(),
                received(),
            )
            .unwrap();
        let names: Vec<&str> = events
            .iter()
            .map(|e| match e {
                WebhookEvent::Inbound(_) => "inbound",
                WebhookEvent::Status(_) => "status",
                WebhookEvent::TemplateStatus(_) => "template",
                WebhookEvent::WindowClosed { .. } => "closed",
                _ => "ignored",
            })
            .collect();
        assert_eq!(
            names,
            ["inbound", "status", "template", "closed", "ignored"]
        );
        // The bare WhatsApp status names WhatsApp's id.
        assert!(
            matches!(&events[3], WebhookEvent::WindowClosed { wa_id: Some(id), .. } if id == "wamid.Z")
        );
    }

    #[test]
    fn flat_content_bsuid_and_group() {
        let parser = WebhookParser::default();
        let image = one(
            &parser,
            json!({"messageId": "m", "from": "254712345678", "to": "254110090747", "type": "IMAGE",
                   "image": {"caption": "receipt", "url": "https://cdn/x.jpg"}}),
        )
        .unwrap();
        let WebhookEvent::Inbound(image) = image else {
            panic!()
        };
        assert_eq!(image.content.text(), Some("receipt"));
        let reply = one(
            &parser,
            json!({"messageId": "m", "from": "254712345678", "to": "254110090747", "type": "INTERACTIVE",
                   "interactive": {"type": "list_reply", "list_reply": {"id": "r2", "title": "Two"}}}),
        )
        .unwrap();
        let WebhookEvent::Inbound(reply) = reply else {
            panic!()
        };
        assert_eq!(
            reply.content,
            InboundContent::Interactive(crate::webhook::InteractiveReply::List {
                id: Some("r2".into()),
                title: Some("Two".into()),
                description: None
            })
        );
        // Known only by a business-scoped user id (a placeholder `from` too): inbound, no
        // 1:1 phone conversation.
        let bsuid_only = one(
            &parser,
            json!({"messageId": "m", "from": "<USER_PHONE>", "fromUserId": "KE.123", "to": "254110090747", "type": "TEXT", "text": "hi"}),
        )
        .unwrap();
        let WebhookEvent::Inbound(message) = bsuid_only else {
            panic!()
        };
        assert_eq!(
            message.sender.user_id.as_ref().map(|id| id.as_str()),
            Some("KE.123")
        );
        assert!(message.opens_window);
        assert_eq!(message.conversation(), None);
        // A group message: never the sender's 1:1 window.
        let group = one(
            &parser,
            json!({"messageId": "m", "from": "254712345678", "to": "254110090747", "groupId": "g-1", "type": "TEXT", "text": "hi"}),
        )
        .unwrap();
        assert_eq!(group.conversation(), None);
        assert!(matches!(
            one(
                &parser,
                json!({"messageId": "m", "from": "254712345678", "to": "254110090747", "groupId": "a b", "type": "TEXT"})
            ),
            Err(WebhookError::InvalidField {
                field: "groupId",
                ..
            })
        ));
        // A flat status to a group.
        let parser = parser.with_business_number("254110090747".parse().unwrap());
        let status = one(
            &parser,
            json!({"id": "wamid.G", "status": "sent", "recipient_id": "g-1", "recipient_type": "group"}),
        )
        .unwrap();
        assert!(
            matches!(&status, WebhookEvent::Status(s) if s.conversation.is_none() && s.recipient.group.is_some()),
            "{status:?}"
        );
    }
}
