//! Properties of the request bodies: each round-trips through serde, and reads back (with
//! every value validated again) into the conversation, id and message it was made from;
//! a stored message or template round-trips too.

use lipachat_session::{Conversation, MessageId, PhoneNumber};
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::Value;

use super::{
    ContactRequest, TemplateRequest, TextRequest, free_form_body, parse_free_form_body,
    template_body,
};
use crate::{
    ContactMessage, ContactPhone, FreeFormMessage, TemplateHeader, TemplateMessage, TextMessage,
};

/// A number as a parser reads it: canonical (a key read back from an old store may not
/// be, but no request carries one, and its spelling would not read back as itself).
fn phone() -> impl Strategy<Value = PhoneNumber> {
    (10_000_000u64..=999_999_999_999_999).prop_filter_map("a phone number", |n| {
        PhoneNumber::parse(&n.to_string()).ok()
    })
}

fn conversation() -> impl Strategy<Value = Conversation> {
    (phone(), phone()).prop_map(|(b, c)| Conversation::new(b, c))
}

fn message_id() -> impl Strategy<Value = MessageId> {
    any::<u128>().prop_map(|n| MessageId::from_uuid(uuid::Uuid::from_u128(n)))
}

fn contact() -> impl Strategy<Value = ContactMessage> {
    let phone_entry = (
        phone(),
        "[A-Za-z][A-Za-z ]{0,15}",
        proptest::option::of(phone()),
    )
        .prop_map(|(phone, phone_type, wa_id)| ContactPhone {
            phone,
            phone_type,
            wa_id,
        });
    ("\\PC{1,60}", proptest::collection::vec(phone_entry, 1..5))
        .prop_filter_map("valid card", |(name, phones)| {
            ContactMessage::new(name, phones).ok()
        })
}

fn text() -> impl Strategy<Value = TextMessage> {
    any::<String>().prop_filter_map("valid text", |s| TextMessage::new(s).ok())
}

fn placeholder() -> impl Strategy<Value = String> {
    "[\\PC&&[^\\s]]([\\PC&&[^\\t\\n\\r]]{0,30})"
}

fn header() -> impl Strategy<Value = TemplateHeader> {
    let url = "https://[a-z]{1,12}\\.example/[a-z0-9/]{0,20}";
    prop_oneof![
        "[A-Za-z0-9][A-Za-z0-9 ]{0,20}".prop_map(TemplateHeader::text),
        url.prop_filter_map("an image URL", |u| TemplateHeader::image(&u).ok()),
        url.prop_filter_map("a video URL", |u| TemplateHeader::video(&u).ok()),
        url.prop_filter_map("a document URL", |u| TemplateHeader::document(&u).ok()),
    ]
}

fn template() -> impl Strategy<Value = TemplateMessage> {
    (
        "[a-z0-9_]{1,40}",
        prop_oneof![
            Just("en"),
            Just("en_US"),
            Just("pt_BR"),
            Just("fil"),
            Just("sw")
        ],
        proptest::option::of(header()),
        proptest::collection::vec(placeholder(), 0..6),
    )
        .prop_filter_map(
            "valid template",
            |(name, language, header, placeholders)| {
                let mut template = TemplateMessage::new(name, language).ok()?;
                if let Some(header) = header {
                    template = template.with_header(header).ok()?;
                }
                template.with_body_placeholders(placeholders).ok()
            },
        )
}

fn free_form() -> impl Strategy<Value = FreeFormMessage> {
    prop_oneof![
        contact().prop_map(FreeFormMessage::Contact),
        text().prop_map(FreeFormMessage::Text),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn free_form_bodies_round_trip(c in conversation(), id in message_id(), message in free_form()) {
        let body = free_form_body(c, id, &message).unwrap();
        // Serialised (as a dry run prints it), the body is its own text.
        prop_assert_eq!(serde_json::to_string(&body).unwrap(), body.as_str());
        // Indented for people, it is the same JSON.
        prop_assert_eq!(serde_json::from_str::<Value>(&body.pretty()).unwrap(), body.to_value());
        // Body -> typed request -> JSON gives the very same bytes.
        let reparsed: Value = serde_json::from_str(body.as_str()).unwrap();
        let again = match &message {
            FreeFormMessage::Contact(_) => {
                serde_json::to_string(&ContactRequest::deserialize(&reparsed).unwrap()).unwrap()
            }
            FreeFormMessage::Text(_) => {
                serde_json::to_string(&TextRequest::deserialize(&reparsed).unwrap()).unwrap()
            }
            other => {
                return Err(TestCaseError::fail(format!(
                    "the generator made a {} message; the newer kinds are tested in outbound_shapes_tests",
                    other.kind()
                )));
            }
        };
        prop_assert_eq!(again.as_str(), body.as_str());
        // Body -> message: the same conversation, id and message.
        let (c2, id2, m2) = parse_free_form_body(message.endpoint(), &reparsed).unwrap();
        prop_assert_eq!((c2, id2, m2), (c, id, message));
    }

    #[test]
    fn template_bodies_round_trip(c in conversation(), id in message_id(), template in template()) {
        let body = template_body(c, id, &template).unwrap();
        let request: TemplateRequest = serde_json::from_str(body.as_str()).unwrap();
        // The typed request written again gives the very same bytes.
        prop_assert_eq!(serde_json::to_string(&request).unwrap(), body.as_str());
        let (c2, id2, t2) = request.into_parts().unwrap();
        prop_assert_eq!((c2, id2, t2), (c, id, template));
    }

    #[test]
    fn stored_messages_round_trip(message in free_form(), template in template()) {
        let stored = serde_json::to_string(&message).unwrap();
        prop_assert_eq!(serde_json::from_str::<FreeFormMessage>(&stored).unwrap(), message);
        let stored = serde_json::to_string(&template).unwrap();
        prop_assert_eq!(serde_json::from_str::<TemplateMessage>(&stored).unwrap(), template);
    }

}
