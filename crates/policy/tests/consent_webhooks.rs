//! Consent webhooks as a bot receives them. From customers known by a business-scoped
//! user id (users with a username, whose phone webhooks may leave out): a STOP or START
//! keyword, a `user_preferences` choice and a 131050 status are resolved the way the
//! inbound path resolves the sender (the phone an alias names), so they land on the
//! conversation the send path checks; one recorded before the phone is known applies once
//! a webhook names both. Keywords: decorated ones and quick-reply buttons count. Real
//! webhooks through the parser into the messenger, the stand-in gateway on loopback, sled
//! on disk and a real Redis.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use common::consent_bot::{Bot, business, envelope, promo, redis_bot, sled_bot};

use chrono::TimeDelta;
use lipachat_api::TextMessage;
use lipachat_api::webhook::WebhookParser;
use lipachat_policy::consent::Withholding;
use lipachat_policy::{SendOutcome, SendRequest, WebhookOutcome};
use lipachat_redis::test_server::RedisServer;
use lipachat_session::{Clock, ConsentStore, Conversation, PhoneNumber, Store};
use lipachat_testkit::MessageKind;
use serde_json::{Value, json};

const USER: &str = "US.13491208655302741918";

fn phone() -> PhoneNumber {
    "254712000001".parse().unwrap()
}

fn chat() -> Conversation {
    Conversation::new(business(), phone())
}

impl<S: Store> Bot<S> {
    async fn receive(&self, body: Value) -> WebhookOutcome {
        let events = WebhookParser::default()
            .parse(body.to_string().as_bytes(), self.clock.now())
            .unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        self.messenger.on_webhook_event(&events[0]).await.unwrap()
    }

    /// A text from the user, naming them by the user id and, when `with_phone`, the phone.
    async fn text(&mut self, text: &str, with_phone: bool) -> WebhookOutcome {
        self.messages += 1;
        let mut contact = json!({"profile": {"name": "C", "username": "@c"}, "user_id": USER});
        let mut message = json!({
            "from_user_id": USER, "id": format!("wamid.in{}", self.messages),
            "timestamp": self.clock.now().timestamp().to_string(), "type": "text",
            "text": {"body": text}
        });
        if with_phone {
            contact["wa_id"] = phone().digits().into();
            message["from"] = phone().digits().into();
        }
        self.receive(envelope(
            "messages",
            json!({"contacts": [contact], "messages": [message]}),
        ))
        .await
    }

    /// A tap on a template's quick-reply button, from the phone and the user id.
    async fn button(&mut self, payload: &str, text: &str) -> WebhookOutcome {
        self.messages += 1;
        self.receive(envelope(
            "messages",
            json!({"contacts": [{"profile": {"name": "C"}, "wa_id": phone().digits(), "user_id": USER}],
                "messages": [{"from": phone().digits(), "from_user_id": USER,
                "id": format!("wamid.in{}", self.messages),
                "timestamp": self.clock.now().timestamp().to_string(), "type": "button",
                "button": {"payload": payload, "text": text}}]}),
        ))
        .await
    }

    /// A `user_preferences` stop or resume naming the user by the user id alone.
    async fn preference(&self, value: &str) -> WebhookOutcome {
        self.receive(envelope(
            "user_preferences",
            json!({"user_preferences": [{"user_id": USER, "detail": "x",
                "category": "marketing_messages", "value": value,
                "timestamp": self.clock.now().timestamp()}]}),
        ))
        .await
    }

    /// A failed status for one of our messages naming the recipient by the user id alone.
    async fn failed_status(&self, code: u32) -> WebhookOutcome {
        self.receive(envelope(
            "messages",
            json!({"statuses": [{"id": "wamid.out1", "status": "failed",
                "timestamp": self.clock.now().timestamp().to_string(),
                "recipient_user_id": USER,
                "errors": [{"code": code, "title": "refused"}]}]}),
        ))
        .await
    }

    /// A text to the phone a day later, when the window is closed: the marketing reroute.
    async fn send_later(&self) -> SendOutcome {
        self.clock.advance(TimeDelta::hours(25));
        self.messenger
            .send(SendRequest::text(
                chat(),
                TextMessage::new("hello").unwrap(),
            ))
            .await
            .unwrap()
    }

    fn templates(&self) -> usize {
        self.gateway
            .delivered_to(phone())
            .iter()
            .filter(|m| m.kind == MessageKind::Template)
            .count()
    }

    /// Asserts the send was withheld as opted out, and nothing reached the gateway.
    async fn assert_withheld(&self) {
        let (before, templates) = (self.gateway.request_count(), self.templates());
        let outcome = self.send_later().await;
        assert!(
            matches!(
                outcome,
                SendOutcome::Withheld {
                    reason: Withholding::OptedOut,
                    ..
                }
            ),
            "expected an opt-out to withhold the marketing template, got {outcome:?}"
        );
        assert_eq!(self.gateway.request_count(), before, "nothing was sent");
        assert_eq!(self.templates(), templates);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_from_a_user_known_by_id_withholds_marketing_to_their_phone_until_start() {
    let (mut bot, _dir) = sled_bot().await;
    // The user once wrote naming both: the alias is known.
    bot.text("hi", true).await;
    // Then, with a username, only the user id: STOP.
    bot.text("STOP", false).await;
    bot.assert_withheld().await;
    // START from the user id alone opts back in.
    bot.text("start", false).await;
    let outcome = bot.send_later().await;
    assert_eq!(outcome.name(), "rerouted", "{outcome:?}");
    assert_eq!(bot.templates(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_before_the_phone_is_known_applies_once_a_webhook_names_both() {
    let (mut bot, _dir) = sled_bot().await;
    // Known by the user id alone: recorded under the user's own conversation.
    bot.text("Stop", false).await;
    bot.clock.advance(TimeDelta::minutes(1));
    // Later a message names both: the user's conversation joins the phone's, the opt-out
    // with it.
    bot.text("where is my order?", true).await;
    bot.assert_withheld().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_preferences_stop_by_user_id_alone_lands_on_the_phone() {
    let (mut bot, _dir) = sled_bot().await;
    bot.text("hi", true).await;
    let outcome = bot.preference("stop").await;
    assert!(
        matches!(&outcome, WebhookOutcome::MarketingPreference { conversation, consent } if *conversation == chat() && consent.opted_out),
        "{outcome:?}"
    );
    bot.assert_withheld().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_preferences_stop_before_the_phone_is_known_applies_once_it_is() {
    let (mut bot, _dir) = sled_bot().await;
    let outcome = bot.preference("stop").await;
    assert!(
        matches!(&outcome, WebhookOutcome::MarketingPreference { consent, .. } if consent.opted_out),
        "{outcome:?}"
    );
    bot.clock.advance(TimeDelta::minutes(1));
    bot.text("hello", true).await;
    bot.assert_withheld().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_131050_status_addressed_by_user_id_alone_lands_on_the_phone() {
    let (mut bot, _dir) = sled_bot().await;
    bot.text("hi", true).await;
    bot.failed_status(131_050).await;
    bot.assert_withheld().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_a_stop_before_the_phone_is_known_applies_once_it_is() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut bot = redis_bot(&server, "consent-identity").await;
    bot.text("STOP", false).await;
    bot.clock.advance(TimeDelta::minutes(1));
    bot.text("hello", true).await;
    bot.assert_withheld().await;
    // A user_preferences stop by another user id alone, stored with nothing else under
    // the user's handle, applies once a message names both.
    bot.text("START", true).await;
    let stranger = "US.99999999999999999999";
    bot.receive(envelope(
        "user_preferences",
        json!({"user_preferences": [{"user_id": stranger, "detail": "x",
            "category": "marketing_messages", "value": "stop",
            "timestamp": bot.clock.now().timestamp()}]}),
    ))
    .await;
    let other = "254712000009";
    bot.receive(envelope(
        "messages",
        json!({"contacts": [{"profile": {"name": "D"}, "wa_id": other, "user_id": stranger}],
            "messages": [{"from": other, "from_user_id": stranger, "id": "wamid.other",
            "timestamp": bot.clock.now().timestamp().to_string(), "type": "text",
            "text": {"body": "hello"}}]}),
    ))
    .await;
    let consent = bot
        .messenger
        .sessions()
        .store()
        .marketing_consent(Conversation::new(business(), other.parse().unwrap()))
        .await
        .unwrap();
    assert!(consent.opted_out, "{consent:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_promotions_button_and_a_decorated_stop_opt_out() {
    let (mut bot, _dir) = sled_bot().await;
    bot.button("promo-2026-11", "Stop promotions").await;
    bot.assert_withheld().await;
    bot.text("START", true).await;
    // Full-width, with a zero-width space and an emoji: still STOP.
    bot.text("\u{ff33}\u{200b}\u{ff34}\u{ff2f}\u{ff30} \u{1f6d1}", true)
        .await;
    bot.assert_withheld().await;
    // Not an opt-out: another word with it.
    bot.text("START", true).await;
    bot.text("please don't stop", true).await;
    let outcome = bot.send_later().await;
    assert_eq!(outcome.name(), "rerouted", "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lipachat_131050_status_naming_only_our_message_id_lands_on_its_conversation() {
    let (mut bot, _dir) = sled_bot().await;
    bot.text("hi", true).await;
    // A template sent under our messageId (its outcome is stored under it), which the
    // platform then refuses: LipaChat's callback names only that messageId.
    let id = lipachat_api::MessageId::new();
    let sent = bot
        .messenger
        .send_template(lipachat_policy::TemplateRequest::new(chat(), promo()).message_id(id))
        .await
        .unwrap();
    assert_eq!(sent.name(), "sent", "{sent:?}");
    let body = json!({"event": "MESSAGE_STATUS", "messageStatus": {"messageId": id.to_string(),
        "status": "FAILED", "statusDesc": "(#131050) User has stopped marketing messages"}});
    bot.receive(body).await;
    bot.assert_withheld().await;
}

/// A 131049 status naming the user by the user id alone, before their phone is known: the
/// back-off is recorded for the user, and once a webhook names both it holds for their
/// phone through every business number of the bot (the per-user marketing limit is the
/// user's): a marketing reroute from another number is withheld, nothing sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_131049_by_user_id_before_the_phone_is_known_holds_for_the_phone_on_every_number() {
    let (mut bot, _dir) = sled_bot().await;
    bot.text("hi", false).await;
    bot.failed_status(131_049).await;
    bot.clock.advance(TimeDelta::minutes(1));
    bot.text("where is my order?", true).await;
    let other = Conversation::new("254110090748".parse().unwrap(), phone());
    let requests = bot.gateway.request_count();
    let outcome = bot
        .messenger
        .send(SendRequest::text(other, TextMessage::new("hello").unwrap()))
        .await
        .unwrap();
    assert!(
        matches!(
            outcome,
            SendOutcome::Withheld {
                reason: Withholding::MarketingLimit { .. },
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(bot.gateway.request_count(), requests, "nothing was sent");
}
