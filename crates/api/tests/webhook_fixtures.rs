//! Every webhook body in `tests/fixtures/webhooks/` (real bodies published by Meta, by
//! WhatsApp libraries and by gateways; see the README there for each one's source) read
//! through the parser, with the events asserted: kind, content, identity, whether the
//! window opens, and times.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use lipachat_api::webhook::{
    CallDirection, CallEventKind, InteractiveReply, MediaKind, SystemChangeKind,
};
use lipachat_api::{
    DeliveryStatus, InboundContent, InboundKind, InboundMessage, StatusUpdate, WebhookEvent,
    WebhookParser,
};
use lipachat_session::{Conversation, PhoneNumber};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhooks")
}

fn received() -> DateTime<Utc> {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap()
}

fn number(digits: &str) -> PhoneNumber {
    digits.parse().unwrap()
}

fn chat(business: &str, customer: &str) -> Option<Conversation> {
    Some(Conversation::parse(business, customer).unwrap())
}

fn events(name: &str) -> Vec<WebhookEvent> {
    let body = std::fs::read(dir().join(format!("{name}.json"))).unwrap();
    WebhookParser::default()
        .parse(&body, received())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn only(events: &[WebhookEvent]) -> &WebhookEvent {
    assert_eq!(events.len(), 1, "{events:?}");
    &events[0]
}

fn inbound(event: &WebhookEvent) -> &InboundMessage {
    match event {
        WebhookEvent::Inbound(message) => message,
        other => panic!("not inbound: {other:?}"),
    }
}

fn status(event: &WebhookEvent) -> &StatusUpdate {
    match event {
        WebhookEvent::Status(status) => status,
        other => panic!("not a status: {other:?}"),
    }
}

fn ignored(event: &WebhookEvent) -> &str {
    match event {
        WebhookEvent::Ignored { reason } => reason,
        other => panic!("not ignored: {other:?}"),
    }
}

/// The checks shared by every pywa message fixture: business 972123456789, customer
/// 972987654321 ("Test Name"), sent at `sent`.
fn pywa_message(events: &[WebhookEvent], kind: InboundKind, sent: i64) -> &InboundMessage {
    let message = inbound(only(events));
    assert_eq!(message.kind, kind);
    assert_eq!(message.conversation(), chat("972123456789", "972987654321"));
    assert_eq!(message.sent_at, Some(at(sent)));
    assert_eq!(message.inbound_time(), at(sent));
    assert_eq!(message.received_at, received());
    assert_eq!(
        message.opens_window,
        InboundKind::OPENING_BY_DEFAULT.contains(&kind) && kind != InboundKind::Call
    );
    message
}

fn media(message: &InboundMessage) -> &lipachat_api::webhook::Media {
    match &message.content {
        InboundContent::Media(media) => media,
        other => panic!("not media: {other:?}"),
    }
}

fn bsuid(message: &InboundMessage) -> Option<&str> {
    message.sender.user_id.as_ref().map(|id| id.as_str())
}

type Check = fn(&[WebhookEvent]);

/// Each fixture (file name without `.json`) and what reading it must give.
const CASES: &[(&str, Check)] = &[
    ("pywa-text", |e| {
        let m = pywa_message(e, InboundKind::Text, 1_697_043_223);
        assert_eq!(
            m.content,
            InboundContent::Text {
                body: "Body Text".into()
            }
        );
        assert_eq!(m.message_id.as_deref(), Some("wamid.xyzxyz"));
        assert_eq!(m.profile_name.as_deref(), Some("Test Name"));
        assert_eq!(
            (m.context.as_ref(), m.referral.as_ref(), m.group.as_ref()),
            (None, None, None)
        );
    }),
    ("pywa-image", |e| {
        let m = pywa_message(e, InboundKind::Image, 1_697_043_379);
        let media = media(m);
        assert_eq!(media.kind, MediaKind::Image);
        assert_eq!(media.id.as_deref(), Some("65463453"));
        assert_eq!(media.mime_type.as_deref(), Some("image/jpeg"));
        assert_eq!(media.sha256.as_deref(), Some("4654+8g="));
        assert_eq!(media.caption, None);
    }),
    ("pywa-video", |e| {
        let m = pywa_message(e, InboundKind::Video, 1_697_044_362);
        assert_eq!(media(m).kind, MediaKind::Video);
        assert_eq!(media(m).caption.as_deref(), Some("caption"));
        assert_eq!(m.content.text(), Some("caption"));
        assert!(m.context.as_ref().unwrap().forwarded);
    }),
    ("pywa-document", |e| {
        let m = pywa_message(e, InboundKind::Document, 1_697_043_666);
        assert_eq!(media(m).kind, MediaKind::Document);
        assert_eq!(media(m).filename.as_deref(), Some("filename.pdf"));
        assert_eq!(media(m).mime_type.as_deref(), Some("application/pdf"));
    }),
    ("pywa-audio", |e| {
        let m = pywa_message(e, InboundKind::Audio, 1_697_043_509);
        assert_eq!(
            (media(m).kind, media(m).voice),
            (MediaKind::Audio, Some(false))
        );
    }),
    ("pywa-voice", |e| {
        let m = pywa_message(e, InboundKind::Audio, 1_697_043_473);
        assert_eq!(media(m).voice, Some(true));
        assert_eq!(
            media(m).mime_type.as_deref(),
            Some("audio/ogg; codecs=opus")
        );
    }),
    ("pywa-static-sticker", |e| {
        let m = pywa_message(e, InboundKind::Sticker, 1_697_043_760);
        assert_eq!(
            (media(m).kind, media(m).animated),
            (MediaKind::Sticker, Some(false))
        );
    }),
    ("pywa-animated-sticker", |e| {
        let m = pywa_message(e, InboundKind::Sticker, 1_697_043_785);
        assert_eq!(media(m).animated, Some(true));
    }),
    ("pywa-reaction", |e| {
        let m = pywa_message(e, InboundKind::Reaction, 1_697_044_456);
        assert_eq!(
            m.content,
            InboundContent::Reaction {
                emoji: Some("\u{1F62E}".into()),
                message_id: Some("wamid.yzxyzx=".into())
            }
        );
        assert!(!m.opens_window);
    }),
    ("pywa-unreaction-empty", |e| {
        let m = pywa_message(e, InboundKind::Reaction, 1_697_044_456);
        assert!(m.content.is_reaction_removal());
    }),
    ("pywa-unreaction-no-emoji", |e| {
        let m = pywa_message(e, InboundKind::Reaction, 1_697_044_456);
        assert!(m.content.is_reaction_removal());
    }),
    ("pywa-current-location", |e| {
        let m = pywa_message(e, InboundKind::Location, 1_697_044_557);
        let InboundContent::Location(place) = &m.content else {
            panic!()
        };
        assert_eq!(
            (place.latitude, place.longitude),
            (Some(12.25089), Some(43.90539))
        );
        assert_eq!((place.name.as_ref(), place.address.as_ref()), (None, None));
    }),
    ("pywa-chosen-location", |e| {
        let m = pywa_message(e, InboundKind::Location, 1_697_044_557);
        let InboundContent::Location(place) = &m.content else {
            panic!()
        };
        assert_eq!(place.longitude, Some(-122.2164385));
        assert_eq!(place.name.as_deref(), Some("Facebook HQ"));
        assert_eq!(
            place.address.as_deref(),
            Some("1 Hacker Way, Menlo Park, CA 94025")
        );
        assert!(
            place
                .url
                .as_deref()
                .unwrap()
                .starts_with("https://maps.google.com/")
        );
    }),
    ("pywa-contacts", |e| {
        let m = pywa_message(e, InboundKind::Contacts, 1_697_044_621);
        let InboundContent::Contacts(cards) = &m.content else {
            panic!()
        };
        let names: Vec<_> = cards
            .iter()
            .map(|c| c.formatted_name.as_deref().unwrap())
            .collect();
        assert_eq!(names, ["Chandler Bing", "Monica", "Rachel Green"]);
        assert_eq!(cards[0].last_name.as_deref(), Some("Bing"));
        assert_eq!(cards[1].phones[0].phone.as_deref(), Some("+1 666-666-6666"));
        assert_eq!(cards[2].phones[0].label.as_deref(), Some("WORK"));
        assert_eq!(cards[2].raw["name"]["first_name"], "Rachel");
    }),
    ("pywa-order", |e| {
        let m = pywa_message(e, InboundKind::Order, 1_697_044_668);
        let InboundContent::Order(order) = &m.content else {
            panic!()
        };
        assert_eq!(order.catalog_id.as_deref(), Some("354160437058781"));
        assert_eq!(order.text, None);
        assert_eq!(order.items.len(), 3);
        assert_eq!(
            order.items[1].product_retailer_id.as_deref(),
            Some("FRENCH_FRIES")
        );
        assert_eq!(order.items[1].quantity, Some(2));
        assert_eq!(order.items[1].item_price.as_deref(), Some("35"));
        assert_eq!(order.items[1].currency.as_deref(), Some("ILS"));
    }),
    ("pywa-unsupported", |e| {
        let m = pywa_message(e, InboundKind::Unsupported, 1_697_044_706);
        assert!(m.opens_window);
        let InboundContent::Unsupported { errors, .. } = &m.content else {
            panic!()
        };
        assert_eq!(errors[0].code, Some(131_051));
        assert_eq!(errors[0].title.as_deref(), Some("Message type unknown"));
        assert_eq!(
            errors[0].details.as_deref(),
            Some("Message type is currently not supported.")
        );
    }),
    ("pywa-reply", |e| {
        let m = pywa_message(e, InboundKind::Text, 1_697_044_746);
        let context = m.context.as_ref().unwrap();
        assert_eq!(context.message_id.as_deref(), Some("wamid.xyzxyz=="));
        assert_eq!(context.from.as_deref(), Some("972123456789"));
        assert!(!context.forwarded && !context.frequently_forwarded);
    }),
    ("pywa-forwarded-many-times", |e| {
        let m = pywa_message(e, InboundKind::Text, 1_697_044_968);
        assert!(m.context.as_ref().unwrap().frequently_forwarded);
    }),
    ("pywa-interactive-with-error", |e| {
        // WhatsApp could not decode the reply: still an interactive message that opens.
        let m = pywa_message(e, InboundKind::Interactive, 1_700_505_494);
        assert!(matches!(
            &m.content,
            InboundContent::Interactive(InteractiveReply::Other { kind: None, .. })
        ));
    }),
    ("pywa-referral", |e| {
        let m = pywa_message(e, InboundKind::Text, 1_697_045_000);
        let referral = m.referral.as_ref().unwrap();
        assert_eq!(referral.ctwa_clid.as_deref(), Some("CTWA_CLID"));
        assert_eq!(referral.source_url.as_deref(), Some("AD_OR_POST_FB_URL"));
        assert_eq!(referral.headline.as_deref(), Some("AD_TITLE"));
        assert_eq!(referral.thumbnail_url.as_deref(), Some("RAW_THUMBNAIL_URL"));
    }),
    ("pywa-request-welcome", |e| {
        // A kind this crate does not know: kept whole, not opening the window.
        let m = pywa_message(e, InboundKind::Unknown, 1_697_043_223);
        let InboundContent::Other { kind, raw } = &m.content else {
            panic!()
        };
        assert_eq!(kind, "request_welcome");
        assert_eq!(raw["id"], "wamid.xyzxyz");
    }),
    ("pywa-button-reply", |e| {
        let m = pywa_message(e, InboundKind::Interactive, 1_698_266_730);
        assert_eq!(
            m.content,
            InboundContent::Interactive(InteractiveReply::Button {
                id: Some("callback_data".into()),
                title: Some("title".into())
            })
        );
        assert_eq!(bsuid(m), Some("US.13491208655302741918"));
        assert!(m.sender.parent_user_id.as_ref().unwrap().is_parent());
    }),
    ("pywa-quick-reply", |e| {
        let m = pywa_message(e, InboundKind::Button, 1_698_269_027);
        assert_eq!(
            m.content,
            InboundContent::Button {
                payload: Some("callback_data".into()),
                text: Some("title".into())
            }
        );
    }),
    ("pywa-list-reply", |e| {
        let m = pywa_message(e, InboundKind::Interactive, 1_698_266_905);
        assert!(matches!(
            &m.content,
            InboundContent::Interactive(InteractiveReply::List { id: Some(id), description: Some(d), .. })
                if id == "callback_data" && d == "description"
        ));
    }),
    ("pywa-flow-completion", |e| {
        let m = pywa_message(e, InboundKind::Interactive, 1_702_502_473);
        let InboundContent::Interactive(InteractiveReply::Flow {
            name,
            body,
            response_json,
        }) = &m.content
        else {
            panic!()
        };
        assert_eq!(
            (name.as_deref(), body.as_deref()),
            (Some("flow"), Some("Sent"))
        );
        let answers: serde_json::Value =
            serde_json::from_str(response_json.as_deref().unwrap()).unwrap();
        assert_eq!(answers["delivery_rating"], "4");
    }),
    ("pywa-system-number-change", |e| {
        let m = pywa_message(e, InboundKind::System, 1_753_851_315);
        assert!(!m.opens_window);
        let InboundContent::System(change) = &m.content else {
            panic!()
        };
        assert_eq!(change.kind, Some(SystemChangeKind::UserChangedNumber));
        assert_eq!(change.new_phone, Some(number("972912345678")));
        assert!(change.body.as_deref().unwrap().contains("972912345678"));
    }),
    ("pywa-system-user-id-change", |e| {
        let m = inbound(only(e));
        assert_eq!((m.kind, m.opens_window), (InboundKind::System, false));
        // No phone: the old id names the user.
        assert_eq!((m.sender.phone, bsuid(m)), (None, Some("CO.1234567890")));
        assert_eq!(m.conversation(), None);
        let InboundContent::System(change) = &m.content else {
            panic!()
        };
        assert!(change.is_user_id_change());
        assert_eq!(
            change.new_user_id.as_ref().unwrap().as_str(),
            "MX.0987654321"
        );
    }),
    ("pywa-system-identity-change", |e| {
        let m = pywa_message(e, InboundKind::System, 1_697_044_706);
        let InboundContent::System(change) = &m.content else {
            panic!()
        };
        assert_eq!(change.kind, Some(SystemChangeKind::CustomerIdentityChanged));
    }),
    ("pywa-status-sent", |e| {
        let s = status(only(e));
        assert_eq!((s.status, s.at), (DeliveryStatus::Sent, at(1_698_266_945)));
        assert_eq!(s.conversation, chat("972123456789", "972987654321"));
        assert_eq!(s.wa_id.as_deref(), Some("wamid.xyzxyz"));
        let pricing = s.pricing.as_ref().unwrap();
        assert_eq!(
            (pricing.category.as_str(), pricing.billable),
            ("service", Some(true))
        );
        assert!(!pricing.is_free_entry_point());
    }),
    ("pywa-status-delivered", |e| {
        assert_eq!(status(only(e)).status, DeliveryStatus::Delivered);
    }),
    ("pywa-status-read", |e| {
        let s = status(only(e));
        assert_eq!((s.status, s.at), (DeliveryStatus::Read, at(1_689_380_458)));
    }),
    ("pywa-status-failed", |e| {
        let s = status(only(e));
        assert_eq!(
            (s.status, s.error_code),
            (DeliveryStatus::Failed, Some(130_472))
        );
        assert_eq!(
            s.error_title.as_deref(),
            Some("User's number is part of an experiment")
        );
    }),
    ("pywa-status-failed-131047", |e| {
        let WebhookEvent::WindowClosed {
            conversation,
            code,
            at: when,
            wa_id,
            ..
        } = only(e)
        else {
            panic!("{e:?}")
        };
        assert_eq!((*code, *when), (131_047, at(1_689_380_458)));
        assert_eq!(*conversation, chat("972123456789", "972987654321"));
        assert_eq!(wa_id.as_deref(), Some("wamid.xyzxyz"));
    }),
    ("pywa-call-connect-business-initiated", |e| {
        // This fixture's numbers contradict its direction (the business is `to`): read by
        // its numbers, the user is `from`, and a business call's connect opens nothing.
        let m = inbound(only(e));
        let InboundContent::Call(call) = &m.content else {
            panic!()
        };
        assert_eq!(
            (call.event, call.direction),
            (
                CallEventKind::Connect,
                Some(CallDirection::BusinessInitiated)
            )
        );
        assert_eq!(m.business, number("16315553601"));
        assert_eq!(m.sender.phone, Some(number("16315553602")));
        // Its only contact names another user: not taken for this one.
        assert_eq!((bsuid(m), m.profile_name.as_deref()), (None, None));
        assert!(!m.opens_window);
    }),
    ("pywa-call-connect-user-initiated", |e| {
        let m = inbound(only(e));
        assert_eq!(m.kind, InboundKind::Call);
        assert!(m.opens_window);
        assert_eq!(m.conversation(), chat("16315553601", "972987654321"));
        assert_eq!(m.inbound_time(), at(1_752_583_107));
        assert_eq!(bsuid(m), Some("US.13491208655302741918"));
        assert_eq!(m.profile_name.as_deref(), Some("Test Name"));
        let InboundContent::Call(call) = &m.content else {
            panic!()
        };
        assert_eq!(
            (call.event, call.direction),
            (CallEventKind::Connect, Some(CallDirection::UserInitiated))
        );
        assert_eq!(call.call_id.as_deref(), Some("wacid.xxxx="));
        assert_eq!(m.message_id, None);
    }),
    ("pywa-call-terminate", |e| {
        // A business call the user answered (120 s): opens at the answer.
        let m = inbound(only(e));
        let InboundContent::Call(call) = &m.content else {
            panic!()
        };
        assert_eq!(call.event, CallEventKind::Terminate);
        assert_eq!(
            (call.duration_seconds, call.answered()),
            (Some(120), Some(true))
        );
        assert_eq!(call.ended_at, Some(at(1_671_644_944)));
        assert_eq!(call.errors[0].code, Some(12_455));
        assert!(m.opens_window);
        assert_eq!(m.conversation(), chat("16315553602", "16315553601"));
        assert_eq!(m.inbound_time(), at(1_671_644_824));
    }),
    ("pywa-call-status-ringing", |e| {
        let m = inbound(only(e));
        let InboundContent::Call(call) = &m.content else {
            panic!()
        };
        assert_eq!(
            (call.event, call.status.as_deref()),
            (CallEventKind::Status, Some("RINGING"))
        );
        assert!(!m.opens_window);
        assert_eq!(m.conversation(), chat("16315553601", "163155536021"));
    }),
    ("pywa-message-echo", |e| {
        assert!(ignored(only(e)).contains("smb_message_echoes"));
    }),
    ("pywa-account-deleted", |e| {
        assert!(ignored(only(e)).contains("account_update"));
    }),
    ("pywa-user-marketing-preferences", |e| {
        let event = only(e);
        let WebhookEvent::MarketingPreference {
            opted_out,
            at: when,
            ..
        } = event
        else {
            panic!("not a marketing preference: {e:?}")
        };
        assert_eq!(event.conversation(), chat("15550783881", "16505551234"));
        assert!(!opted_out, "the fixture resumes marketing messages");
        assert_eq!(*when, at(1_731_705_721));
    }),
    ("pywa-bare-status-failed", |e| {
        let s = status(only(e));
        assert_eq!(
            (s.status, s.error_code),
            (DeliveryStatus::Failed, Some(130_472))
        );
        assert_eq!(s.wa_id.as_deref(), Some("wamid.xyzxyz"));
        assert_eq!(s.at, at(1_689_380_458));
        // No business number in a bare status: correlate by id.
        assert_eq!(s.conversation, None);
    }),
    ("pywa-bare-statuses-array", |e| {
        assert_eq!(e.len(), 2);
        assert_eq!(status(&e[0]).status, DeliveryStatus::Sent);
        assert!(matches!(
            e[1],
            WebhookEvent::WindowClosed { code: 131_047, .. }
        ));
    }),
    ("whatsapp-api-js-incoming-bsuid", |e| {
        let m = inbound(only(e));
        assert_eq!(m.conversation(), chat("16505551111", "16315551181"));
        assert_eq!(bsuid(m), Some("US.13491208655302741918"));
        assert_eq!(
            m.sender.parent_user_id.as_ref().unwrap().as_str(),
            "US.11815799212886844830"
        );
        assert_eq!(m.sender.username.as_deref(), Some("@testusername"));
        assert_eq!(m.content.text(), Some("this is a text message"));
        assert_eq!(m.inbound_time(), at(1_504_902_988));
    }),
    ("whatsapp-api-js-sent-bsuid", |e| {
        let s = status(only(e));
        assert_eq!(
            s.recipient.user_id.as_ref().unwrap().as_str(),
            "US.13491208655302741918"
        );
        assert_eq!(
            s.recipient.parent_user_id.as_ref().unwrap().as_str(),
            "US.11815799212886844830"
        );
        assert_eq!(s.conversation, chat("16505551111", "16315551181"));
    }),
    ("meta-group-text-message", |e| {
        let m = inbound(only(e));
        assert_eq!(
            m.group.as_ref().unwrap().as_str(),
            "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD"
        );
        assert_eq!(m.sender.phone, Some(number("16505551234")));
        // A message in the group: never the sender's 1:1 window.
        assert_eq!(m.conversation(), None);
        assert_eq!(m.profile_name.as_deref(), Some("Sheena Nelson"));
    }),
    ("meta-bsuid-contact-request", |e| {
        // No `from` at all: the user is known by the id in `contacts`.
        let m = inbound(only(e));
        assert_eq!((m.kind, m.sender.phone), (InboundKind::Contacts, None));
        assert_eq!(bsuid(m), Some("US.13491208655302741918"));
        assert_eq!(m.sender.username.as_deref(), Some("@sheena"));
        assert!(m.opens_window);
        assert_eq!(m.conversation(), None);
        let InboundContent::Contacts(cards) = &m.content else {
            panic!()
        };
        assert_eq!(cards[0].phones[0].phone.as_deref(), Some("+16505551234"));
    }),
    ("meta-call-connect-business-initiated", |e| {
        let m = inbound(only(e));
        assert_eq!(m.conversation(), chat("13175551399", "12185552828"));
        assert!(!m.opens_window);
        assert_eq!(m.inbound_time(), at(1_749_196_895));
    }),
    ("360dialog-group-status-sent", |e| {
        let s = status(only(e));
        assert_eq!(
            s.recipient.group.as_ref().unwrap().as_str(),
            "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD"
        );
        assert_eq!((s.recipient.phone, s.conversation), (None, None));
        assert_eq!(s.at, at(1_749_416_400));
    }),
    ("batch-several-entries-and-changes", |e| {
        let kinds: Vec<&str> = e
            .iter()
            .map(|event| match event {
                WebhookEvent::Inbound(m) => m.kind.name(),
                WebhookEvent::Status(_) => "status",
                WebhookEvent::WindowClosed { .. } => "closed",
                WebhookEvent::Ignored { .. } => "ignored",
                _ => "other",
            })
            .collect();
        assert_eq!(
            kinds,
            ["text", "status", "ignored", "closed", "call", "text"]
        );
        assert!(inbound(&e[0]).opens_window && inbound(&e[4]).opens_window);
        assert_eq!(inbound(&e[5]).conversation(), None);
    }),
    ("lipachat-inbound-text", |e| {
        let m = inbound(only(e));
        assert_eq!(m.conversation(), chat("254110090747", "254712345678"));
        assert_eq!(
            m.content,
            InboundContent::Text {
                body: "Hello".into()
            }
        );
        assert_eq!((m.sent_at, m.inbound_time()), (None, received()));
        assert!(m.opens_window);
    }),
    ("lipachat-inbound-image", |e| {
        let m = inbound(only(e));
        assert_eq!(
            media(m).url.as_deref(),
            Some("https://example.com/media/receipt.jpg")
        );
        assert_eq!(m.content.text(), Some("My receipt"));
    }),
    ("lipachat-inbound-button-reply", |e| {
        let m = inbound(only(e));
        assert_eq!(m.content.text(), Some("Yes please"));
        assert!(m.opens_window);
    }),
    ("lipachat-message-status-delivered", |e| {
        let s = status(only(e));
        assert_eq!(s.status, DeliveryStatus::Delivered);
        assert_eq!(
            s.message_id,
            Some("ca739107-4b0d-4581-acb1-4c4af70555de".parse().unwrap())
        );
        assert_eq!(s.at, received());
    }),
    ("lipachat-message-status-failed-131047", |e| {
        let WebhookEvent::WindowClosed {
            code, message_id, ..
        } = only(e)
        else {
            panic!("{e:?}")
        };
        assert_eq!(*code, 131_047);
        assert_eq!(
            *message_id,
            Some("ca739107-4b0d-4581-acb1-4c4af70555de".parse().unwrap())
        );
    }),
    ("lipachat-template-status", |e| {
        let WebhookEvent::TemplateStatus(update) = only(e) else {
            panic!("{e:?}")
        };
        assert_eq!(update.status.as_deref(), Some("APPROVED"));
        assert_eq!(update.template_name.as_deref(), Some("contact_share"));
    }),
    ("lipachat-array-of-events", |e| {
        assert_eq!(e.len(), 3);
        assert!(inbound(&e[0]).opens_window);
        assert_eq!(status(&e[1]).status, DeliveryStatus::Delivered);
        assert!(matches!(e[2], WebhookEvent::TemplateStatus(_)));
    }),
];

#[test]
fn every_fixture_is_read_as_expected() {
    for (name, check) in CASES {
        let events = events(name);
        let result = std::panic::catch_unwind(|| check(&events));
        assert!(result.is_ok(), "fixture {name} read as {events:#?}");
    }
}

#[test]
fn every_fixture_has_a_case_and_a_cited_source() {
    let files: BTreeSet<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter_map(|name| name.strip_suffix(".json").map(str::to_owned))
        .collect();
    let cases: BTreeSet<String> = CASES.iter().map(|(name, _)| (*name).to_owned()).collect();
    assert_eq!(
        files, cases,
        "a fixture without a case, or a case without a fixture"
    );
    let readme = std::fs::read_to_string(dir().join("README.md")).unwrap();
    for name in &files {
        assert!(
            readme.contains(&format!("`{name}.json`")),
            "README.md does not cite {name}.json"
        );
    }
}

#[test]
fn a_business_configured_for_bare_statuses_names_the_conversation() {
    let body = std::fs::read(dir().join("pywa-bare-status-failed.json")).unwrap();
    let parser = WebhookParser::default().with_business_number(number("972123456789"));
    let events = parser.parse(&body, received()).unwrap();
    assert_eq!(
        status(only(&events)).conversation,
        chat("972123456789", "972987654321")
    );
}

#[test]
fn an_unanswered_user_call_can_be_configured_not_to_open() {
    let body = std::fs::read(dir().join("pywa-call-connect-user-initiated.json")).unwrap();
    let parser = WebhookParser::default().with_unanswered_user_calls_opening(false);
    let events = parser.parse(&body, received()).unwrap();
    assert!(!inbound(only(&events)).opens_window);
}
