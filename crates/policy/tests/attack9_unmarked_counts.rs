//! Ninth hostile review of b314a5c, the policy's own send paths on a real `redis-server`
//! after an upgrade: a messenger on the system clock sends an in-window reply (counted in
//! the monthly service counter `svc.<business>.<YYYY-MM>` on the send's time as given)
//! and a closed-window template (counted in the portfolio's messaging limit on the
//! server's clock); both clock-kind keys are then deleted with `redis-cli`, as a release
//! before the key left them. The next reply and the next template must go as before,
//! each counted into the count the older release left. Skipped when `redis-server` is
//! missing (unless `REQUIRE_REDIS=1`).

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use chrono::{TimeDelta, Utc};
use lipachat_api::webhook::WebhookParser;
use lipachat_api::{TemplateMessage, TextMessage};
use lipachat_policy::consent::{MessagingLimits, MessagingTier, PricingConfig};
use lipachat_policy::{Messenger, OnClosed, PolicyConfig, SendOutcome, SendRequest};
use lipachat_redis::test_server::RedisServer;
use lipachat_redis::{KeyLayout, RedisConfig, RedisStore};
use lipachat_session::{ConsentStore, Conversation, PhoneNumber, PricingCategory, Sessions};
use lipachat_testkit::StandInGateway;

const PREFIX: &str = "a9policy";

/// The business number and customer `n`'s number.
fn numbers(n: u64) -> (PhoneNumber, PhoneNumber) {
    (
        PhoneNumber::from_u64(254_110_090_747).unwrap(),
        PhoneNumber::from_u64(254_712_000_000 + n).unwrap(),
    )
}

/// Customer `n` writes in now (the window opens in the store and at the stand-in).
async fn customer_writes(messenger: &Messenger<RedisStore>, gateway: &StandInGateway, n: u64) {
    let now = Utc::now();
    let (business, customer) = numbers(n);
    let body = serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": business.digits(), "phone_number_id": "1"},
        "contacts": [{"wa_id": customer.digits()}],
        "messages": [{"from": customer.digits(), "id": format!("wamid.a9in{n}"),
                      "timestamp": now.timestamp().to_string(), "type": "text", "text": {"body": "hi"}}]
    }}]}]});
    let events = WebhookParser::default()
        .parse(body.to_string().as_bytes(), now)
        .unwrap();
    for event in &events {
        messenger.on_webhook_event(event).await.unwrap();
    }
    gateway.customer_writes(business, customer);
}

async fn send(messenger: &Messenger<RedisStore>, n: u64) -> SendOutcome {
    messenger
        .send(SendRequest::text(
            Conversation::new(numbers(n).0, numbers(n).1),
            TextMessage::new("hello").unwrap(),
        ))
        .await
        .unwrap()
}

/// Deletes `key` with `redis-cli`; answers how many keys went.
fn delete(server: &RedisServer, key: &str) -> String {
    let deleted = std::process::Command::new("redis-cli")
        .args(["-u", &server.url(), "DEL", key])
        .output()
        .unwrap();
    String::from_utf8_lossy(&deleted.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_and_templates_go_on_counts_an_older_release_left() {
    let Some(server) = RedisServer::start() else {
        eprintln!("skipped: no redis-server (set REQUIRE_REDIS=1 to make this a failure)");
        return;
    };
    let gateway = StandInGateway::start().await.unwrap();
    let store = RedisConfig::new(&server.url())
        .and_then(|config| config.with_key_prefix(PREFIX))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let config = PolicyConfig::default()
        .on_closed(OnClosed::Template(
            TemplateMessage::new("spring_promo", "en").unwrap(),
        ))
        .pricing(PricingConfig {
            service_free_per_month: Some(1000),
            ..PricingConfig::default()
        })
        .messaging_limits(
            MessagingLimits::default()
                .portfolio("p", MessagingTier::Tier250, [numbers(0).0])
                .unwrap(),
        );
    let messenger = Messenger::new(
        Sessions::new(store.clone()),
        common::quick_client(&gateway),
        config,
    );
    customer_writes(&messenger, &gateway, 1).await;
    customer_writes(&messenger, &gateway, 2).await;
    let assert_free_reply = |outcome: &SendOutcome, what: &str| {
        assert_eq!(outcome.name(), "sent", "{what}: {outcome:?}");
        let pricing = outcome.pricing().unwrap();
        assert_eq!(
            (pricing.category, pricing.free),
            (PricingCategory::Service, true),
            "{what}"
        );
    };
    assert_free_reply(&send(&messenger, 1).await, "the first reply");
    let first_template = send(&messenger, 11).await;
    assert_eq!(first_template.name(), "rerouted", "{first_template:?}");

    // The upgrade: both counts lose their clock-kind key, their entries kept.
    let now = Utc::now();
    let counter = format!("svc.{}.{}", numbers(0).0, now.format("%Y-%m"));
    let keys = KeyLayout::new(PREFIX);
    assert_eq!(delete(&server, &keys.reached_clock(&counter)), "1");
    assert_eq!(delete(&server, &keys.reached_clock("p")), "1");

    assert_free_reply(&send(&messenger, 2).await, "a reply after the upgrade");
    assert_free_reply(
        &send(&messenger, 1).await,
        "a second reply after the upgrade",
    );
    let template = send(&messenger, 12).await;
    assert_eq!(
        template.name(),
        "rerouted",
        "a template after the upgrade: {template:?}"
    );
    // Each went into the count the older release left.
    let later = Utc::now() + TimeDelta::seconds(1);
    assert_eq!(
        store
            .reached(&counter, later, TimeDelta::days(40))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        store
            .reached(
                "p",
                lipachat_session::CountTime::SystemNow(later),
                TimeDelta::hours(24)
            )
            .await
            .unwrap(),
        2
    );
}
