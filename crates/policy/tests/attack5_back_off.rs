//! Attacks on the 30-day bound of a kept 131049 back-off (`StoreError::InvalidBackOff`,
//! `back_off::check_back_off`, `ConsentConfig::back_off`) through the messenger: a
//! configured back-off at and past its extremes, a 131049 status dated a little ahead
//! of this host's clock (inside the tolerated skew), and a simulation whose clock runs
//! ahead of real time. The stand-in gateway on loopback, sled on disk; the status case
//! also on a real `redis-server` (skipped without one, unless `REQUIRE_REDIS=1`).

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use chrono::{DateTime, TimeDelta, Utc};
use common::consent_bot::{business, promo};
use lipachat_api::webhook::WebhookParser;
use lipachat_policy::consent::{ConsentConfig, Withholding};
use lipachat_policy::{Messenger, OnClosed, PolicyConfig, TemplateOutcome, TemplateRequest};
use lipachat_redis::test_server::RedisServer;
use lipachat_session::{
    Clock, ConsentStore, Conversation, ManualClock, PhoneNumber, Sessions, SledStore, Store,
};
use lipachat_testkit::{MarketingAnswer, StandInGateway};
use serde_json::json;

fn phone() -> PhoneNumber {
    "254712000005".parse().unwrap()
}

/// A messenger over `store` on `clock` with `consent`, and its stand-in gateway.
struct Bot<S> {
    gateway: StandInGateway,
    clock: ManualClock,
    messenger: Messenger<S>,
}

async fn bot_over<S: Store>(store: S, clock: ManualClock, consent: ConsentConfig) -> Bot<S> {
    let gateway = common::clocked_gateway(&clock).await;
    let sessions = Sessions::new(store).with_clock(clock.clone());
    let config = PolicyConfig::default()
        .on_closed(OnClosed::Template(promo()))
        .consent(consent);
    Bot {
        messenger: Messenger::new(sessions, common::quick_client(&gateway), config),
        gateway,
        clock,
    }
}

fn sled_store(dir: &tempfile::TempDir, name: &str) -> SledStore {
    SledStore::open(dir.path().join(name)).unwrap()
}

/// Real time now, to the millisecond (what a bot in production reads).
fn real_now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap()
}

fn back_off_of(days: i64) -> ConsentConfig {
    ConsentConfig {
        marketing_back_off: TimeDelta::days(days),
        ..ConsentConfig::default()
    }
}

async fn promo_to<S: Store>(bot: &Bot<S>) -> Result<TemplateOutcome, lipachat_policy::PolicyError> {
    bot.messenger
        .send_template(TemplateRequest::new(
            Conversation::new(business(), phone()),
            promo(),
        ))
        .await
}

fn retry_at(outcome: &TemplateOutcome) -> Option<DateTime<Utc>> {
    match outcome {
        TemplateOutcome::Withheld {
            reason: Withholding::MarketingLimit { retry_at },
            ..
        } => Some(*retry_at),
        _ => None,
    }
}

/// Whether a send answered that the gateway refused it with 131049 (recorded).
fn limited_by_the_gateway(outcome: &Result<TemplateOutcome, lipachat_policy::PolicyError>) -> bool {
    matches!(
        outcome,
        Ok(TemplateOutcome::Withheld {
            reason: Withholding::MarketingLimit { .. },
            refused_by_gateway: true,
            ..
        })
    )
}

/// Configured back-offs at and past the bound: the gateway answers 131049 and the
/// back-off kept runs `clamp(configured, 0, 30 days)` from the answer, whatever the
/// configuration says (zero, 30 days less or more a millisecond, `TimeDelta`'s own
/// extremes); a store's export of it imports into a new store with the same end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_back_off_at_any_extreme_is_kept_within_30_days_and_survives_a_migration() {
    let dir = tempfile::tempdir().unwrap();
    let thirty = TimeDelta::days(30);
    let ms = TimeDelta::milliseconds(1);
    let cases = [
        (TimeDelta::zero(), TimeDelta::zero()),
        (thirty - ms, thirty - ms),
        (thirty, thirty),
        (thirty + ms, thirty),
        (TimeDelta::MAX, thirty),
        (TimeDelta::MIN, TimeDelta::zero()),
        (-ms, TimeDelta::zero()),
    ];
    for (index, (configured, applied)) in cases.into_iter().enumerate() {
        let consent = ConsentConfig {
            marketing_back_off: configured,
            ..ConsentConfig::default()
        };
        let at = real_now();
        let bot = bot_over(
            sled_store(&dir, &format!("db{index}")),
            ManualClock::at(at),
            consent,
        )
        .await;
        bot.gateway
            .answer_templates_with(phone(), Some(MarketingAnswer::PerUserLimit));
        let refused = promo_to(&bot).await.unwrap_or_else(|error| {
            panic!("configured {configured}: recording the 131049 failed: {error}")
        });
        assert_eq!(
            retry_at(&refused),
            Some(at + applied),
            "configured {configured}: {refused:?}"
        );
        let store = bot.messenger.sessions().store();
        let kept = store
            .marketing_consent(Conversation::new(business(), phone()))
            .await
            .unwrap()
            .back_off_until;
        assert_eq!(kept, Some(at + applied), "configured {configured}");
        let mut exported = Vec::new();
        lipachat_session::export::export(store, &mut exported)
            .await
            .unwrap();
        let fresh = sled_store(&dir, &format!("imported{index}"));
        lipachat_session::export::import(&fresh, exported.as_slice())
            .await
            .unwrap_or_else(|error| {
                panic!("configured {configured}: the export does not import: {error}")
            });
        assert_eq!(
            fresh
                .marketing_consent(Conversation::new(business(), phone()))
                .await
                .unwrap()
                .back_off_until,
            Some(at + applied),
            "configured {configured}: the import keeps the end"
        );
        if applied > TimeDelta::zero() {
            // Inside the back-off the next template is withheld locally.
            bot.gateway.answer_templates_with(phone(), None);
            let requests = bot.gateway.request_count();
            bot.clock.advance(applied - ms);
            let withheld = promo_to(&bot).await.unwrap();
            assert_eq!(retry_at(&withheld), Some(at + applied), "{withheld:?}");
            assert_eq!(bot.gateway.request_count(), requests, "nothing was sent");
        }
    }
}

/// A failed 131049 status for our message to the phone, dated `ahead` of the bot's
/// clock (the platform's clock runs a little ahead of this host's; the tolerated skew is
/// 5 minutes).
async fn limit_status_ahead<S: Store>(
    bot: &Bot<S>,
    wa_id: &str,
    ahead: TimeDelta,
) -> Result<lipachat_policy::WebhookOutcome, lipachat_policy::PolicyError> {
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": business().digits(), "phone_number_id": "1"},
        "statuses": [{"id": wa_id, "status": "failed",
            "timestamp": (bot.clock.now() + ahead).timestamp().to_string(),
            "recipient_id": phone().digits(),
            "errors": [{"code": 131_049, "title": "limit"}]}]}}]}]});
    let events = WebhookParser::default()
        .parse(body.to_string().as_bytes(), bot.clock.now())
        .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    bot.messenger.on_webhook_event(&events[0]).await
}

/// The bot runs on real time with the back-off configured at the documented maximum,
/// 30 days. Its marketing template goes; WhatsApp's failed status for it reports 131049,
/// dated a minute ahead of this host's clock (inside the 5-minute skew the messenger
/// accepts for statuses). The back-off must be recorded (at most 30 days from now, as
/// the policy promises to take the configuration) and the next template withheld.
/// (Held: the parser takes a status's time as at most its receipt, so the back-off runs
/// from the receipt and stays inside the store's bound.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_131049_status_a_minute_ahead_with_a_30_day_back_off_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let bot = bot_over(
        sled_store(&dir, "db"),
        ManualClock::at(real_now()),
        back_off_of(30),
    )
    .await;
    a_131049_status_a_minute_ahead_with_a_30_day_back_off_is_kept_on(bot).await;
}

/// As above, on Redis (skipped without `redis-server`, unless `REQUIRE_REDIS=1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_131049_status_a_minute_ahead_with_a_30_day_back_off_is_kept_on_redis() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store: lipachat_redis::RedisStore = lipachat_redis::RedisConfig::new(&server.url())
        .unwrap()
        .with_key_prefix("ahead")
        .unwrap()
        .connect()
        .await
        .unwrap();
    let bot = bot_over(store, ManualClock::at(real_now()), back_off_of(30)).await;
    a_131049_status_a_minute_ahead_with_a_30_day_back_off_is_kept_on(bot).await;
}

async fn a_131049_status_a_minute_ahead_with_a_30_day_back_off_is_kept_on<S: Store>(bot: Bot<S>) {
    let sent = promo_to(&bot).await.unwrap();
    let TemplateOutcome::Sent(sent) = sent else {
        panic!("expected the first template to go: {sent:?}");
    };
    let wa_id = sent.receipt.wa_id.clone().unwrap();
    let recorded = limit_status_ahead(&bot, &wa_id, TimeDelta::minutes(1)).await;
    let requests = bot.gateway.request_count();
    bot.clock.advance(TimeDelta::minutes(2));
    let next = promo_to(&bot).await.unwrap();
    assert!(
        recorded.is_ok() && retry_at(&next).is_some(),
        "the 131049 status was answered {recorded:?}; the next template: {next:?}"
    );
    assert!(
        retry_at(&next).unwrap() <= Utc::now() + TimeDelta::days(30),
        "{next:?}"
    );
    assert_eq!(bot.gateway.request_count(), requests, "nothing was sent");
}

/// A simulation (a manual clock, as the docs recommend for tests and simulations) runs
/// 40 days ahead of real time with the default 24-hour back-off. The gateway answers the
/// marketing template with 131049: the send must answer `Withheld` (marketing limit,
/// refused by the gateway) and the next template be withheld locally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_131049_answer_in_a_simulation_ahead_of_real_time_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let at = real_now() + TimeDelta::days(40);
    let bot = bot_over(
        sled_store(&dir, "db"),
        ManualClock::at(at),
        ConsentConfig::default(),
    )
    .await;
    bot.gateway
        .answer_templates_with(phone(), Some(MarketingAnswer::PerUserLimit));
    let refused = promo_to(&bot).await;
    bot.gateway.answer_templates_with(phone(), None);
    let requests = bot.gateway.request_count();
    bot.clock.advance(TimeDelta::hours(1));
    let next = promo_to(&bot).await.unwrap();
    assert!(
        limited_by_the_gateway(&refused),
        "the 131049 answer: {refused:?}; the next template an hour later: {next:?}"
    );
    assert_eq!(retry_at(&next), Some(at + TimeDelta::hours(24)), "{next:?}");
    assert_eq!(bot.gateway.request_count(), requests, "nothing was sent");
}

/// A clock of the user's own reading real time a second ahead of this host's (a wrapper
/// that offsets the system clock; the docs name it as a clock a messenger may run on),
/// and the back-off configured at the documented maximum, 30 days. The gateway answers
/// the marketing template with 131049: the send must answer `Withheld` and the next
/// template be withheld locally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_131049_answer_on_a_clock_a_second_ahead_with_a_30_day_back_off_is_kept() {
    /// The system clock a second ahead.
    #[derive(Debug)]
    struct SecondAhead;
    impl Clock for SecondAhead {
        fn now(&self) -> DateTime<Utc> {
            Utc::now() + TimeDelta::seconds(1)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let gateway_clock = ManualClock::at(real_now());
    let gateway = common::clocked_gateway(&gateway_clock).await;
    let sessions = Sessions::new(sled_store(&dir, "db")).with_clock(SecondAhead);
    let config = PolicyConfig::default()
        .on_closed(OnClosed::Template(promo()))
        .consent(back_off_of(30));
    let messenger = Messenger::new(sessions, common::quick_client(&gateway), config);
    gateway.answer_templates_with(phone(), Some(MarketingAnswer::PerUserLimit));
    let request = || TemplateRequest::new(Conversation::new(business(), phone()), promo());
    let refused = messenger.send_template(request()).await;
    gateway.answer_templates_with(phone(), None);
    let requests = gateway.request_count();
    let next = messenger.send_template(request()).await;
    assert!(
        limited_by_the_gateway(&refused),
        "the 131049 answer: {refused:?}; the next template: {next:?}"
    );
    assert!(
        next.as_ref().is_ok_and(|next| retry_at(next).is_some()),
        "{next:?}"
    );
    assert_eq!(gateway.request_count(), requests, "nothing was sent");
}
