//! Attacks on "a 131049 named only by a business-scoped user id (BSUID) holds for the
//! customer across the bot's business numbers", in the orders the fix's own tests do not
//! take: the alias tying the user id to the phone is learned only after the 131049, and
//! a number that never heard from the user gets the 131049. Real webhooks through the
//! parser into the messenger, the stand-in gateway on loopback, sled on disk and a real
//! `redis-server` (skipped without one, unless `REQUIRE_REDIS=1`).

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use chrono::TimeDelta;
use common::consent_bot::{Bot, business, promo, redis_bot, sled_bot};
use lipachat_api::webhook::WebhookParser;
use lipachat_policy::consent::Withholding;
use lipachat_policy::{TemplateOutcome, TemplateRequest};
use lipachat_redis::test_server::RedisServer;
use lipachat_session::{Clock, Conversation, PhoneNumber, Store};
use serde_json::{Value, json};

const USER: &str = "US.20491208655302741999";

fn phone() -> PhoneNumber {
    "254712000077".parse().unwrap()
}

/// The bot's other business number (one portfolio: the user id is the same there).
fn other_number() -> PhoneNumber {
    "254110090749".parse().unwrap()
}

/// Hands `bot` one WhatsApp `messages` change for business number `to` holding `value`.
async fn deliver<S: Store>(bot: &Bot<S>, to: PhoneNumber, value: Value) {
    let mut value = value;
    value["messaging_product"] = "whatsapp".into();
    value["metadata"] = json!({"display_phone_number": to.digits(), "phone_number_id": "9"});
    let body = json!({"object": "whatsapp_business_account",
        "entry": [{"id": "W", "changes": [{"field": "messages", "value": value}]}]});
    let events = WebhookParser::default()
        .parse(body.to_string().as_bytes(), bot.clock.now())
        .unwrap();
    for event in &events {
        bot.messenger.on_webhook_event(event).await.unwrap();
    }
}

/// The user writes "hi" to `to`, with their phone when `with_phone` (the number then
/// records the alias user id → phone), else by the user id alone.
async fn user_writes<S: Store>(bot: &Bot<S>, to: PhoneNumber, with_phone: bool, n: u32) {
    let stamp = bot.clock.now().timestamp().to_string();
    let (contact, message) = if with_phone {
        (
            json!({"profile": {"name": "C"}, "user_id": USER, "wa_id": phone().digits()}),
            json!({"from": phone().digits(), "from_user_id": USER, "id": format!("wamid.a5in{n}"),
                "timestamp": stamp, "type": "text", "text": {"body": "hi"}}),
        )
    } else {
        (
            json!({"profile": {"name": "C"}, "user_id": USER}),
            json!({"from_user_id": USER, "id": format!("wamid.a5in{n}"),
                "timestamp": stamp, "type": "text", "text": {"body": "hi"}}),
        )
    };
    deliver(
        bot,
        to,
        json!({"contacts": [contact], "messages": [message]}),
    )
    .await;
}

/// WhatsApp's failed status on `to` for a message `wa_id` this bot has no record of,
/// naming the recipient by the user id alone, with 131049.
async fn limit_by_user_id<S: Store>(bot: &Bot<S>, to: PhoneNumber, wa_id: &str) {
    let status = json!({"id": wa_id, "status": "failed",
        "timestamp": bot.clock.now().timestamp().to_string(), "recipient_user_id": USER,
        "errors": [{"code": 131_049, "title": "limit"}]});
    deliver(bot, to, json!({"statuses": [status]})).await;
}

/// A marketing template to the phone from `from`: must be withheld by the back-off,
/// nothing reaching the gateway.
async fn assert_promo_withheld<S: Store>(bot: &Bot<S>, from: PhoneNumber) {
    let requests = bot.gateway.request_count();
    let outcome = bot
        .messenger
        .send_template(TemplateRequest::new(
            Conversation::new(from, phone()),
            promo(),
        ))
        .await
        .unwrap();
    let withheld_by_back_off = match &outcome {
        TemplateOutcome::Withheld {
            reason,
            refused_by_gateway,
            ..
        } => matches!(reason, Withholding::MarketingLimit { .. }) && !refused_by_gateway,
        _ => false,
    };
    assert!(
        withheld_by_back_off,
        "the customer's 131049 back-off must withhold the template from {from}: {outcome:?}"
    );
    assert_eq!(bot.gateway.request_count(), requests, "nothing was sent");
}

/// The user wrote to the other number by user id alone; a 131049 on that number names
/// the user id. Only then does the user write to the first number with their phone (the
/// alias is learned after the 131049). The first number's marketing template to the
/// phone must be withheld: the store knows by then the user id is that phone.
async fn the_alias_learned_after_the_131049_still_gets_it_on<S: Store>(bot: Bot<S>) {
    user_writes(&bot, other_number(), false, 1).await;
    limit_by_user_id(&bot, other_number(), "wamid.a5-other").await;
    bot.clock.advance(TimeDelta::minutes(1));
    user_writes(&bot, business(), true, 2).await;
    // Past the first number's 24-hour window, inside the default 24-hour back-off.
    bot.clock.advance(TimeDelta::hours(23));
    let store = bot.messenger.sessions().store();
    let on_phone = store
        .marketing_consent(Conversation::new(business(), phone()))
        .await
        .unwrap();
    assert!(
        on_phone.back_off_until.is_some(),
        "the phone the alias names carries the user's back-off: {on_phone:?}"
    );
    assert_promo_withheld(&bot, business()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alias_learned_after_the_131049_still_gets_it() {
    let (bot, _dir) = sled_bot().await;
    the_alias_learned_after_the_131049_still_gets_it_on(bot).await;
}

/// As above, on Redis (skipped without `redis-server`, unless `REQUIRE_REDIS=1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alias_learned_after_the_131049_still_gets_it_on_redis() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    the_alias_learned_after_the_131049_still_gets_it_on(redis_bot(&server, "a5late").await).await;
}

/// The user wrote to the first number with their phone (the alias is there); the other
/// number never heard from them. A 131049 status arrives on the other number naming the
/// user id alone, for a message the bot has no record of. The first number's marketing
/// template to the phone must be withheld.
async fn a_131049_on_a_number_that_never_heard_from_the_user_holds_on<S: Store>(bot: Bot<S>) {
    user_writes(&bot, business(), true, 1).await;
    bot.clock.advance(TimeDelta::hours(25));
    limit_by_user_id(&bot, other_number(), "wamid.a5-unknown").await;
    bot.clock.advance(TimeDelta::minutes(1));
    assert_promo_withheld(&bot, business()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_131049_on_a_number_that_never_heard_from_the_user_holds() {
    let (bot, _dir) = sled_bot().await;
    a_131049_on_a_number_that_never_heard_from_the_user_holds_on(bot).await;
}

/// As above, on Redis (skipped without `redis-server`, unless `REQUIRE_REDIS=1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_131049_on_a_number_that_never_heard_from_the_user_holds_on_redis() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    a_131049_on_a_number_that_never_heard_from_the_user_holds_on(
        redis_bot(&server, "a5never").await,
    )
    .await;
}

/// No number has met the user: a 131049 status arrives on the other number naming only
/// a user id never seen, for a message the bot has no record of. Then the user writes to
/// the first number with their phone (the alias is learned). The first number's marketing
/// template to the phone must be withheld: the 131049 was the user's.
async fn a_131049_for_a_never_seen_user_id_holds_once_the_phone_is_known_on<S: Store>(bot: Bot<S>) {
    limit_by_user_id(&bot, other_number(), "wamid.a5-nobody").await;
    bot.clock.advance(TimeDelta::minutes(1));
    user_writes(&bot, business(), true, 1).await;
    // Past the first number's 24-hour window, inside the default 24-hour back-off.
    bot.clock.advance(TimeDelta::hours(23));
    assert_promo_withheld(&bot, business()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_131049_for_a_never_seen_user_id_holds_once_the_phone_is_known() {
    let (bot, _dir) = sled_bot().await;
    a_131049_for_a_never_seen_user_id_holds_once_the_phone_is_known_on(bot).await;
}

/// As above, on Redis (skipped without `redis-server`, unless `REQUIRE_REDIS=1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_131049_for_a_never_seen_user_id_holds_once_the_phone_is_known_on_redis() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    a_131049_for_a_never_seen_user_id_holds_once_the_phone_is_known_on(
        redis_bot(&server, "a5nobody").await,
    )
    .await;
}
