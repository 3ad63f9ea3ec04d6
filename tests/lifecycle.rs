//! End to end through the facade: the full lifecycle of a conversation against the
//! stand-in gateway on loopback, with webhooks parsed from the gateway's own JSON and a
//! sled store on disk that is closed and reopened midway.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use chrono::TimeDelta;
use lipachat::api::{ApiKey, Client, ContactMessage, ContactPhone, TemplateMessage, WebhookParser};
use lipachat::policy::{Messenger, OnClosed, PolicyConfig, SendOutcome, WebhookOutcome};
use lipachat::session::{Clock, Conversation, ManualClock, RefusalReason, Sessions, SledStore};
use lipachat_testkit::{MessageKind, StandInGateway};

fn card() -> ContactMessage {
    ContactMessage::new(
        "Acme Support",
        vec![ContactPhone::on_whatsapp(
            "254700123456".parse().unwrap(),
            "Work",
        )],
    )
    .unwrap()
}

fn messenger(
    path: &std::path::Path,
    gateway: &StandInGateway,
    clock: &ManualClock,
) -> Messenger<SledStore> {
    let client = Client::builder(ApiKey::new(gateway.api_key()).unwrap())
        .base_url(&gateway.base_url())
        .build()
        .unwrap();
    let sessions = Sessions::new(SledStore::open(path).unwrap()).with_clock(clock.clone());
    let config = PolicyConfig::default().on_closed(OnClosed::Queue(
        TemplateMessage::new("contact_share", "en").unwrap(),
    ));
    Messenger::new(sessions, client, config)
}

fn inbound_json(text: &str) -> Vec<u8> {
    serde_json::json!({
        "messageId": format!("in-{text}"), "from": "254712345678", "to": "254110090747",
        "profileName": "Jane", "type": "TEXT", "text": text
    })
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn the_full_lifecycle() {
    let clock = ManualClock::at("2026-11-23T09:00:00Z".parse().unwrap());
    let gateway = StandInGateway::builder()
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");
    let parser = WebhookParser::new();
    let chat = Conversation::parse("254110090747", "+254 712 345 678").unwrap();

    // The customer writes; the webhook is parsed and recorded; a card goes out.
    let first_card = {
        let messenger = messenger(&path, &gateway, &clock);
        gateway.customer_writes(chat.business, chat.phone().unwrap());
        let events = parser.parse(&inbound_json("hello"), clock.now()).unwrap();
        let WebhookOutcome::Inbound(report) = messenger.on_webhook_event(&events[0]).await.unwrap()
        else {
            panic!("expected the inbound message to be recorded");
        };
        assert!(report.recorded.opened);
        let sent = messenger.send_contact(chat, card()).await.unwrap();
        assert_eq!(sent.name(), "sent");
        sent.message_id()
    };

    // 25 hours later (and after a restart) a card is rerouted to a template and queued.
    clock.advance(TimeDelta::hours(25));
    let messenger = messenger(&path, &gateway, &clock);
    let queued = messenger.send_contact(chat, card()).await.unwrap();
    let SendOutcome::Queued {
        message_id: queued_id,
        template: Some(template),
        reason: RefusalReason::Expired,
        ..
    } = queued
    else {
        panic!("expected a queued card with an invitation, got {queued:?}");
    };
    let second = messenger.send_contact(chat, card()).await.unwrap();
    assert!(
        matches!(second, SendOutcome::Queued { template: None, .. }),
        "one invitation per closed window"
    );

    // The customer replies: both queued cards are delivered, in order.
    clock.advance(TimeDelta::hours(1));
    gateway.customer_writes(chat.business, chat.phone().unwrap());
    let events = parser
        .parse(&inbound_json("yes please"), clock.now())
        .unwrap();
    let WebhookOutcome::Inbound(report) = messenger.on_webhook_event(&events[0]).await.unwrap()
    else {
        panic!("expected the reply to be recorded");
    };
    let delivered: Vec<_> = report
        .delivery
        .delivered
        .iter()
        .map(|d| d.message_id)
        .collect();
    assert_eq!(delivered, vec![queued_id, second.message_id()]);

    let timeline: Vec<(MessageKind, String)> = gateway
        .delivered()
        .into_iter()
        .map(|m| (m.kind, m.message_id))
        .collect();
    assert_eq!(
        timeline,
        vec![
            (MessageKind::Contact, first_card.to_string()),
            (MessageKind::Template, template.message_id.to_string()),
            (MessageKind::Contact, queued_id.to_string()),
            (MessageKind::Contact, second.message_id().to_string()),
        ]
    );
    assert!(
        gateway.refusals().is_empty(),
        "no free-form message outside the window"
    );
}
