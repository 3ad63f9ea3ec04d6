//! Seventh hostile review, the policy's own send path: the monthly service free tier
//! (`price_send` with a `messageId`, as every in-window reply's record after its send
//! does) on a Redis store that a release before the clock-kind key (7ab1691) counted.
//! The counter was counted on the send's time as given; the upgraded store takes a count
//! without its clock-kind key as on the server's clock and refuses the policy's next
//! count with `MixedCountClocks`. A real `redis-server` (skipped when missing, unless
//! `REQUIRE_REDIS=1`); the key is removed with `redis-cli`, as an older release left it.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use chrono::{DateTime, Utc};
use lipachat_api::MessageId;
use lipachat_policy::consent::PricingConfig;
use lipachat_policy::messaging_limit::price_send;
use lipachat_redis::test_server::RedisServer;
use lipachat_redis::{KeyLayout, RedisConfig};
use lipachat_session::{Conversation, PricingCategory};

#[tokio::test]
async fn an_in_window_reply_is_priced_after_an_upgrade() {
    let Some(server) = RedisServer::start() else {
        eprintln!("skipped: no redis-server (set REQUIRE_REDIS=1 to make this a failure)");
        return;
    };
    let store = RedisConfig::new(&server.url())
        .and_then(|config| config.with_key_prefix("a7price"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let pricing = PricingConfig {
        service_free_per_month: Some(1000),
        ..PricingConfig::default()
    };
    let conversation = Conversation::parse("254110090747", "254712345678").unwrap();
    let at: DateTime<Utc> = Utc::now();
    let price = |id: MessageId| {
        price_send(
            &store,
            &pricing,
            conversation,
            PricingCategory::Service,
            true,
            at,
            Some(id),
        )
    };
    for _ in 0..2 {
        assert!(price(MessageId::new()).await.unwrap().free);
    }
    let clock_key = KeyLayout::new("a7price").reached_clock(&format!(
        "svc.{}.{}",
        conversation.business,
        at.format("%Y-%m")
    ));
    let deleted = std::process::Command::new("redis-cli")
        .args(["-u", &server.url(), "DEL", &clock_key])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&deleted.stdout).trim(),
        "1",
        "the older release had no clock-kind key: {deleted:?}"
    );
    let third = price(MessageId::new()).await;
    assert!(
        third.as_ref().is_ok_and(|pricing| pricing.free),
        "the third service message of the month, after the upgrade: {third:?}"
    );
}
