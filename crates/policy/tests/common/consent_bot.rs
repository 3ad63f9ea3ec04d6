//! A bot for consent tests: a messenger over a store, on a manual clock, with the stand-in
//! gateway, whose closed window reroutes to the marketing template `promo` (so consent
//! decides whether it goes); and WhatsApp-shaped webhook envelopes for its business
//! number. Each test binary adds the webhook helpers it needs in its own `impl Bot`.

use chrono::{DateTime, Utc};
use lipachat_api::TemplateMessage;
use lipachat_policy::{Messenger, OnClosed, PolicyConfig};
use lipachat_redis::RedisStore;
use lipachat_redis::test_server::RedisServer;
use lipachat_session::{ManualClock, PhoneNumber, Sessions, SledStore, Store};
use lipachat_testkit::StandInGateway;
use serde_json::{Value, json};

/// When every consent bot's clock starts.
pub fn start_time() -> DateTime<Utc> {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

/// The bot's business number.
pub fn business() -> PhoneNumber {
    "254110090747".parse().unwrap()
}

/// The marketing template a closed window reroutes to.
pub fn promo() -> TemplateMessage {
    TemplateMessage::new("spring_promo", "en").unwrap()
}

/// A messenger, its clock and gateway, and how many inbound messages it was sent.
pub struct Bot<S> {
    pub gateway: StandInGateway,
    pub clock: ManualClock,
    pub messenger: Messenger<S>,
    pub messages: u32,
}

/// A bot over `store` on `clock`.
pub async fn bot_over<S: Store>(store: S, clock: ManualClock) -> Bot<S> {
    let gateway = super::clocked_gateway(&clock).await;
    let sessions = Sessions::new(store).with_clock(clock.clone());
    // A closed window reroutes to the marketing template: consent decides whether it goes.
    let config = PolicyConfig::default().on_closed(OnClosed::Template(promo()));
    Bot {
        messenger: Messenger::new(sessions, super::quick_client(&gateway), config),
        gateway,
        clock,
        messages: 0,
    }
}

/// A bot over sled in a temporary directory (kept alive by the returned guard).
pub async fn sled_bot() -> (Bot<SledStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    (bot_over(store, ManualClock::at(start_time())).await, dir)
}

/// A bot over `server`, its keys under `prefix`.
pub async fn redis_bot(server: &RedisServer, prefix: &str) -> Bot<RedisStore> {
    let store: RedisStore = lipachat_redis::RedisConfig::new(&server.url())
        .unwrap()
        .with_key_prefix(prefix)
        .unwrap()
        .connect()
        .await
        .unwrap();
    bot_over(store, ManualClock::at(start_time())).await
}

/// A WhatsApp webhook body with one change of `field` for the bot's business number.
pub fn envelope(field: &str, value: Value) -> Value {
    let mut value = value;
    value["messaging_product"] = "whatsapp".into();
    value["metadata"] =
        json!({"display_phone_number": business().digits(), "phone_number_id": "1"});
    json!({"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [{"field": field, "value": value}]}]})
}
