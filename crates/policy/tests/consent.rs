//! Cost, consent and limits (issue 16) against the stand-in gateway on loopback, with a
//! sled store on disk (and Redis for two replicas) and a manual clock shared by both:
//! opt-outs and the 131049 back-off withhold marketing templates locally, the messaging
//! limit holds, webhooks (referral, STOP, `user_preferences`, priced statuses) are
//! recorded, and every send carries its predicted category and whether it is free.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_api::webhook::WebhookParser;
use lipachat_api::{ApiKey, Client, RetryPolicy, TemplateMessage, TextMessage};
use lipachat_policy::consent::{MessagingLimits, MessagingTier, PricingConfig, Withholding};
use lipachat_policy::cost::FreeBecause;
use lipachat_policy::{
    Messenger, OnClosed, PolicyConfig, SendOutcome, SendRequest, WebhookOutcome,
};
use lipachat_session::{
    Clock, ConsentStore, Conversation, ManualClock, PhoneNumber, PricingCategory, Sessions,
    SledStore, Store,
};
use lipachat_testkit::{MarketingAnswer, MessageKind, StandInGateway, StatusPricingWire};
use proptest::prelude::*;

fn start_time() -> DateTime<Utc> {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

fn business() -> PhoneNumber {
    "254110090747".parse().unwrap()
}

fn customer(n: u64) -> PhoneNumber {
    PhoneNumber::from_u64(254_712_000_000 + n).unwrap()
}

fn chat(n: u64) -> Conversation {
    Conversation::new(business(), customer(n))
}

fn promo() -> TemplateMessage {
    TemplateMessage::new("spring_promo", "en").unwrap()
}

fn client(gateway: &StandInGateway) -> Client {
    Client::builder(ApiKey::new(gateway.api_key()).unwrap())
        .base_url(&gateway.base_url())
        .retry(RetryPolicy {
            max_retries: 1,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(10),
        })
        .request_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

struct Fixture {
    gateway: StandInGateway,
    clock: ManualClock,
    messenger: Messenger<SledStore>,
    _dir: tempfile::TempDir,
}

async fn fixture(config: PolicyConfig) -> Fixture {
    let clock = ManualClock::at(start_time());
    let gateway = StandInGateway::builder()
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sessions =
        Sessions::new(SledStore::open(dir.path().join("db")).unwrap()).with_clock(clock.clone());
    let messenger = Messenger::new(sessions, client(&gateway), config);
    Fixture {
        gateway,
        clock,
        messenger,
        _dir: dir,
    }
}

/// Reroute to the marketing template `spring_promo` when the window is closed.
fn marketing_reroute() -> PolicyConfig {
    PolicyConfig::default().on_closed(OnClosed::Template(promo()))
}

fn templates_to(gateway: &StandInGateway, n: u64) -> usize {
    gateway
        .delivered_to(customer(n))
        .iter()
        .filter(|m| m.kind == MessageKind::Template)
        .count()
}

async fn send<S: Store>(messenger: &Messenger<S>, n: u64) -> SendOutcome {
    messenger
        .send(SendRequest::text(
            chat(n),
            TextMessage::new("hello").unwrap(),
        ))
        .await
        .unwrap()
}

/// One WhatsApp webhook body through the parser into the messenger.
async fn webhook<S: Store>(
    messenger: &Messenger<S>,
    body: serde_json::Value,
    at: DateTime<Utc>,
) -> Vec<WebhookOutcome> {
    let events = WebhookParser::default()
        .parse(body.to_string().as_bytes(), at)
        .unwrap();
    let mut outcomes = Vec::new();
    for event in &events {
        outcomes.push(messenger.on_webhook_event(event).await.unwrap());
    }
    outcomes
}

fn inbound_text(n: u64, text: &str, at: DateTime<Utc>, referral: bool) -> serde_json::Value {
    let mut message = serde_json::json!({
        "from": customer(n).digits(), "id": format!("wamid.in{}{}", n, at.timestamp_millis()),
        "timestamp": at.timestamp().to_string(), "type": "text", "text": {"body": text}
    });
    if referral {
        // The shape of pywa's referral fixture (crates/api/tests/fixtures/webhooks).
        message["referral"] = serde_json::json!({
            "source_url": "https://fb.me/ad", "source_id": "AD", "source_type": "ad",
            "headline": "H", "body": "B", "media_type": "image",
            "image_url": "https://img", "ctwa_clid": "CTWA_CLID"
        });
    }
    serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": business().digits(), "phone_number_id": "1"},
        "contacts": [{"wa_id": customer(n).digits(), "profile": {"name": "C"}}],
        "messages": [message]
    }}]}]})
}

fn preference(n: u64, value: &str, at: DateTime<Utc>) -> serde_json::Value {
    // The shape of pywa's user_preferences fixture.
    serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [{"field": "user_preferences", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": business().digits(), "phone_number_id": "1"},
        "contacts": [{"wa_id": customer(n).digits()}],
        "user_preferences": [{"wa_id": customer(n).digits(), "detail": "x", "category": "marketing_messages",
                              "value": value, "timestamp": at.timestamp()}]
    }}]}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_keyword_withholds_marketing_until_the_resume_webhook() {
    let f = fixture(marketing_reroute()).await;
    let now = f.clock.now();
    webhook(&f.messenger, inbound_text(1, " stop ", now, false), now).await;
    f.clock.advance(TimeDelta::hours(25));
    let before = f.gateway.request_count();
    let outcome = send(&f.messenger, 1).await;
    let SendOutcome::Withheld {
        reason,
        refused_by_gateway,
        pricing,
        ..
    } = &outcome
    else {
        panic!("expected a withheld template, got {outcome:?}")
    };
    assert_eq!(
        (*reason, *refused_by_gateway),
        (Withholding::OptedOut, false)
    );
    assert_eq!(outcome.name(), "rejected");
    assert_eq!(pricing.category, PricingCategory::Marketing);
    assert_eq!(
        f.gateway.request_count(),
        before,
        "nothing reached the gateway"
    );
    // The resume webhook opts back in; a stale stop (older) does not undo it.
    let later = f.clock.now();
    let outcomes = webhook(&f.messenger, preference(1, "resume", later), later).await;
    assert!(
        matches!(&outcomes[0], WebhookOutcome::MarketingPreference { consent, .. } if !consent.opted_out)
    );
    webhook(&f.messenger, preference(1, "stop", now), later).await;
    let outcome = send(&f.messenger, 1).await;
    assert_eq!(outcome.name(), "rerouted", "{outcome:?}");
    assert_eq!(templates_to(&f.gateway, 1), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utility_templates_and_in_window_messages_ignore_an_opt_out() {
    let mut pricing = PricingConfig::default();
    pricing
        .template_categories
        .insert("spring_promo".into(), PricingCategory::Utility);
    let f = fixture(marketing_reroute().pricing(pricing)).await;
    let now = f.clock.now();
    webhook(&f.messenger, preference(2, "stop", now), now).await;
    webhook(&f.messenger, inbound_text(2, "hi", now, false), now).await;
    f.gateway.customer_writes(business(), customer(2));
    let sent = send(&f.messenger, 2).await;
    assert_eq!(sent.name(), "sent", "in-window free-form is unaffected");
    let pricing = sent.pricing().unwrap();
    assert_eq!(
        (pricing.category, pricing.free),
        (PricingCategory::Service, true)
    );
    f.clock.advance(TimeDelta::hours(25));
    let rerouted = send(&f.messenger, 2).await;
    assert_eq!(
        rerouted.name(),
        "rerouted",
        "a utility template still goes: {rerouted:?}"
    );
    let pricing = rerouted.pricing().unwrap();
    assert_eq!(
        (pricing.category, pricing.free),
        (PricingCategory::Utility, false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_131050_answer_records_the_opt_out_and_the_next_is_refused_locally() {
    let f = fixture(marketing_reroute()).await;
    f.gateway
        .answer_templates_with(customer(3), Some(MarketingAnswer::OptedOut));
    let first = send(&f.messenger, 3).await;
    assert!(
        matches!(
            first,
            SendOutcome::Withheld {
                reason: Withholding::OptedOut,
                refused_by_gateway: true,
                ..
            }
        ),
        "{first:?}"
    );
    f.gateway.answer_templates_with(customer(3), None);
    let requests = f.gateway.request_count();
    let second = send(&f.messenger, 3).await;
    assert!(
        matches!(
            second,
            SendOutcome::Withheld {
                reason: Withholding::OptedOut,
                refused_by_gateway: false,
                ..
            }
        ),
        "{second:?}"
    );
    assert_eq!(f.gateway.request_count(), requests, "refused locally");
    assert_eq!(templates_to(&f.gateway, 3), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_131049_answer_backs_off_for_24_hours_then_marketing_goes_again() {
    let f = fixture(marketing_reroute()).await;
    f.gateway
        .answer_templates_with(customer(4), Some(MarketingAnswer::PerUserLimit));
    let start = f.clock.now();
    let first = send(&f.messenger, 4).await;
    let SendOutcome::Withheld { reason, .. } = first else {
        panic!("{first:?}")
    };
    assert_eq!(
        reason,
        Withholding::MarketingLimit {
            retry_at: start + TimeDelta::hours(24)
        }
    );
    f.gateway.answer_templates_with(customer(4), None);
    f.clock.advance(TimeDelta::hours(23));
    let requests = f.gateway.request_count();
    let inside = send(&f.messenger, 4).await;
    assert!(
        matches!(
            inside,
            SendOutcome::Withheld {
                reason: Withholding::MarketingLimit { .. },
                refused_by_gateway: false,
                ..
            }
        ),
        "{inside:?}"
    );
    assert_eq!(
        f.gateway.request_count(),
        requests,
        "no retry in a burst: nothing sent"
    );
    f.clock.advance(TimeDelta::hours(1));
    assert_eq!(send(&f.messenger, 4).await.name(), "rerouted");
    assert_eq!(templates_to(&f.gateway, 4), 1);
}

fn limited(on_closed: OnClosed) -> PolicyConfig {
    PolicyConfig::default()
        .on_closed(on_closed)
        .messaging_limits(
            MessagingLimits::default()
                .portfolio("acme", MessagingTier::Tier250, [business()])
                .unwrap(),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_messaging_limit_rejects_or_queues_the_251st_customer() {
    let f = fixture(limited(OnClosed::Template(promo()))).await;
    for n in 0..250 {
        assert_eq!(send(&f.messenger, 1000 + n).await.name(), "rerouted");
    }
    // A customer already reached costs nothing more; a new one is refused.
    f.clock.advance(TimeDelta::hours(25));
    f.clock.advance(-TimeDelta::hours(2));
    let requests = f.gateway.request_count();
    let refused = send(&f.messenger, 2000).await;
    assert!(
        matches!(
            refused,
            SendOutcome::Withheld {
                reason: Withholding::MessagingLimit {
                    reached: 250,
                    limit: 250
                },
                ..
            }
        ),
        "{refused:?}"
    );
    assert_eq!(f.gateway.request_count(), requests);
    // Under queue the message waits, without an invitation.
    let queueing = Messenger::new(
        f.messenger.sessions().clone(),
        client(&f.gateway),
        limited(OnClosed::Queue(promo())),
    );
    let queued = send(&queueing, 2001).await;
    assert!(
        matches!(&queued, SendOutcome::Queued { template: None, .. }),
        "{queued:?}"
    );
    assert_eq!(f.gateway.request_count(), requests, "no invitation went");
    // 24 hours after the first reaches, the count is free again.
    f.clock.advance(TimeDelta::hours(2));
    assert_eq!(send(&f.messenger, 2000).await.name(), "rerouted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referral_reply_opens_a_free_entry_point_window_confirmed_by_a_priced_status() {
    let f = fixture(marketing_reroute()).await;
    let now = f.clock.now();
    webhook(
        &f.messenger,
        inbound_text(5, "hi from the ad", now, true),
        now,
    )
    .await;
    f.gateway.customer_writes(business(), customer(5));
    f.clock.advance(TimeDelta::hours(1));
    let reply_at = f.clock.now();
    let sent = send(&f.messenger, 5).await;
    let pricing = sent.pricing().unwrap();
    assert_eq!(pricing.because, FreeBecause::FreeEntryPoint);
    assert_eq!(
        pricing.free_entry_point_until,
        Some(reply_at + TimeDelta::hours(72))
    );
    assert!(
        !pricing.free_entry_point_confirmed,
        "a prediction until the platform says"
    );
    // Two days later the window is closed, but the marketing template is free.
    f.clock.advance(TimeDelta::hours(48));
    let rerouted = send(&f.messenger, 5).await;
    assert!(rerouted.pricing().unwrap().free, "{rerouted:?}");
    // The platform's priced status confirms the end (a little earlier than predicted).
    let delivered = f.gateway.delivered_to(customer(5));
    let platform_end = reply_at + TimeDelta::hours(71);
    let status = f.gateway.priced_status_callback(
        &delivered[0],
        &StatusPricingWire {
            category: "service".into(),
            pricing_type: "free_entry_point".into(),
            billable: false,
            expires_at: Some(platform_end),
        },
    );
    webhook(&f.messenger, status, f.clock.now()).await;
    let store = f.messenger.sessions().store();
    let entry = store.free_entry_point(chat(5)).await.unwrap().unwrap();
    assert_eq!(
        (entry.until, entry.confirmed),
        (Some(truncate(platform_end)), true)
    );
    // The report is recorded against the predicted cost.
    let costs = store.cost_records(Some(business())).await.unwrap();
    let first = costs
        .iter()
        .find(|c| c.predicted.message_id == sent.message_id())
        .unwrap();
    assert_eq!(
        first.reported.as_ref().unwrap().pricing_type.as_deref(),
        Some("free_entry_point")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordinary_status_with_an_expiry_does_not_confirm_a_window() {
    let f = fixture(marketing_reroute()).await;
    let now = f.clock.now();
    webhook(&f.messenger, inbound_text(6, "hi", now, false), now).await;
    f.gateway.customer_writes(business(), customer(6));
    let sent = send(&f.messenger, 6).await;
    assert!(!sent.pricing().unwrap().free_entry_point_confirmed);
    let delivered = f.gateway.delivered_to(customer(6));
    let status = f.gateway.priced_status_callback(
        &delivered[0],
        &StatusPricingWire {
            category: "service".into(),
            pricing_type: "free_customer_service".into(),
            billable: false,
            expires_at: Some(now + TimeDelta::hours(24)),
        },
    );
    webhook(&f.messenger, status, now).await;
    assert_eq!(
        f.messenger
            .sessions()
            .store()
            .free_entry_point(chat(6))
            .await
            .unwrap(),
        None
    );
}

fn truncate(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp(), 0).unwrap()
}

/// One step of a random schedule.
#[derive(Debug, Clone)]
enum Step {
    Stop(u64),
    Start(u64),
    GatewayLimit(u64),
    GatewayClear(u64),
    Send(u64),
    Advance(i64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..4u64).prop_map(Step::Stop),
        (0..4u64).prop_map(Step::Start),
        (0..4u64).prop_map(Step::GatewayLimit),
        (0..4u64).prop_map(Step::GatewayClear),
        (0..4u64).prop_map(Step::Send),
        (0..4u64).prop_map(Step::Send),
        (1..30i64).prop_map(Step::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// No marketing template ever reaches the stand-in gateway for a customer who opted
    /// out, or inside a 131049 back-off (the model: the opt-out in force, and the end of
    /// the last back-off the gateway's 131049 started).
    #[test]
    fn no_marketing_reaches_an_opted_out_or_backed_off_customer(steps in proptest::collection::vec(step(), 1..25)) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let f = fixture(marketing_reroute()).await;
            let mut opted_out: HashSet<u64> = HashSet::new();
            let mut back_off: HashMap<u64, DateTime<Utc>> = HashMap::new();
            for step in steps {
                let now = f.clock.now();
                match step {
                    Step::Stop(n) => {
                        webhook(&f.messenger, preference(n, "stop", now), now).await;
                        opted_out.insert(n);
                    }
                    Step::Start(n) => {
                        webhook(&f.messenger, preference(n, "resume", now), now).await;
                        opted_out.remove(&n);
                    }
                    Step::GatewayLimit(n) => f.gateway.answer_templates_with(customer(n), Some(MarketingAnswer::PerUserLimit)),
                    Step::GatewayClear(n) => f.gateway.answer_templates_with(customer(n), None),
                    Step::Send(n) => {
                        let before = templates_to(&f.gateway, n);
                        let requests = f.gateway.request_count();
                        let outcome = send(&f.messenger, n).await;
                        let delivered = templates_to(&f.gateway, n) > before;
                        let barred = opted_out.contains(&n) || back_off.get(&n).is_some_and(|until| now < *until);
                        assert!(!(barred && delivered), "a marketing template reached customer {n}: {outcome:?}");
                        if barred {
                            assert_eq!(f.gateway.request_count(), requests, "refused locally: {outcome:?}");
                        }
                        if let SendOutcome::Withheld { reason: Withholding::MarketingLimit { retry_at }, refused_by_gateway: true, .. } = outcome {
                            back_off.insert(n, retry_at);
                        }
                    }
                    Step::Advance(hours) => f.clock.advance(TimeDelta::hours(hours)),
                }
            }
        });
    }

    /// Two replicas on one Redis, sending to random customers at once: the portfolio's
    /// unique customers reached never exceed the limit, and templates go to at most
    /// that many customers.
    #[test]
    fn two_replicas_on_one_redis_never_exceed_the_messaging_limit(customers in proptest::collection::vec(0..400u64, 200..320)) {
        let Some(server) = lipachat_redis::test_server::RedisServer::start() else { return Ok(()) };
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let clock = ManualClock::at(start_time());
            let gateway = StandInGateway::builder().clock(clock.clone()).start().await.unwrap();
            let replica = || async {
                let store = lipachat_redis::RedisConfig::new(&server.url()).unwrap().connect().await.unwrap();
                Messenger::new(Sessions::new(store).with_clock(clock.clone()), client(&gateway), limited(OnClosed::Template(promo())))
            };
            let (a, b) = (replica().await, replica().await);
            let half = customers.len() / 2;
            let run = |m: Messenger<lipachat_redis::RedisStore>, list: Vec<u64>| tokio::spawn(async move {
                for n in list { send(&m, n).await; }
            });
            let (x, y) = (run(a.clone(), customers[..half].to_vec()), run(b, customers[half..].to_vec()));
            x.await.unwrap();
            y.await.unwrap();
            let reached: HashSet<PhoneNumber> = gateway.delivered().iter().filter(|m| m.kind == MessageKind::Template).map(|m| m.customer).collect();
            let distinct: HashSet<u64> = customers.iter().copied().collect();
            assert!(reached.len() <= 250, "{} customers reached", reached.len());
            assert_eq!(reached.len(), distinct.len().min(250));
            let counted = a.sessions().store().reached("acme", clock.now(), MessagingLimits::SPAN).await.unwrap();
            assert_eq!(counted as usize, reached.len());
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_message_delivered_after_the_reply_is_priced_and_recorded() {
    let mut pricing = PricingConfig::default();
    pricing
        .template_categories
        .insert("spring_promo".into(), PricingCategory::Utility);
    let f = fixture(
        PolicyConfig::default()
            .on_closed(OnClosed::Queue(promo()))
            .pricing(pricing),
    )
    .await;
    let queued = send(&f.messenger, 7).await;
    assert_eq!(queued.name(), "queued", "{queued:?}");
    let invitation = queued.pricing().unwrap();
    assert_eq!(
        (invitation.category, invitation.free),
        (PricingCategory::Utility, false)
    );
    // The customer writes back (with a referral): the queued message goes, priced as a
    // service message, and as the business's first reply it opens a free entry point.
    let now = f.clock.now();
    f.gateway.customer_writes(business(), customer(7));
    let outcomes = webhook(&f.messenger, inbound_text(7, "ok", now, true), now).await;
    let WebhookOutcome::Inbound(report) = &outcomes[0] else {
        panic!("{outcomes:?}")
    };
    let delivered = &report.delivery.delivered;
    assert_eq!(delivered.len(), 1, "{report:?}");
    assert_eq!(delivered[0].pricing.category, PricingCategory::Service);
    assert_eq!(delivered[0].pricing.because, FreeBecause::FreeEntryPoint);
    let costs = f
        .messenger
        .sessions()
        .store()
        .cost_records(Some(business()))
        .await
        .unwrap();
    assert_eq!(
        costs.len(),
        2,
        "the invitation and the delivered message: {costs:?}"
    );
}
