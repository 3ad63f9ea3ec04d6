//! Hostile review of issue 16, the store side and the parsing side:
//!
//! - sled and Redis must agree on every consent rule (the later opt-out wins, the
//!   back-off only grows, the free entry point window opens once, a customer is counted
//!   once and the limit is exact at the span's edge): the same random schedule of store
//!   calls, sub-millisecond and pre-1970 times included, run against a sled store and a
//!   real redis-server, every answer compared;
//! - two messengers sharing one sled store, sending at once, never exceed the limit;
//! - `user_preferences` items and statuses with hostile field types (numbers for
//!   strings, objects for numbers, huge and negative timestamps) parse and record
//!   without a panic or an error.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_api::webhook::WebhookParser;
use lipachat_api::{ApiKey, Client, RetryPolicy, TemplateMessage};
use lipachat_policy::consent::{MessagingLimits, MessagingTier};
use lipachat_policy::{
    CatalogSettings, EventAction, Messenger, PolicyConfig, TemplateRequest,
    record_consent_and_cost, record_event,
};
use lipachat_redis::test_server::RedisServer;
use lipachat_session::{ConsentStore, Conversation, ManualClock, PhoneNumber, Sessions, SledStore};
use lipachat_testkit::{MessageKind, StandInGateway};
use proptest::prelude::*;
use serde_json::{Value, json};

fn business(n: u64) -> PhoneNumber {
    PhoneNumber::from_u64(254_110_000_000 + n).unwrap()
}

fn customer(n: u64) -> PhoneNumber {
    PhoneNumber::from_u64(254_712_000_000 + n).unwrap()
}

/// Schedule `case`'s second business number.
fn second_business(case: u64) -> PhoneNumber {
    business(500_000 + case)
}

/// Customer `c` of schedule `case`.
fn case_customer(case: u64, c: u64) -> PhoneNumber {
    customer(1_000 + case * 10 + c)
}

/// A time `s` seconds (plus `nanos`, below a millisecond when under a million, else
/// up to a second) after `base` (ms).
fn time(base: i64, s: i64, nanos: u32) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(base + s * 1000).unwrap()
        + TimeDelta::nanoseconds(i64::from(nanos))
}

#[derive(Debug, Clone)]
enum Op {
    OptOut(u64, bool, i64, u32),
    BackOff(u64, i64, u32),
    /// A back-off through the case's second business number (the back-off is the
    /// customer's; an opt-out through it stays its own).
    Elsewhere(u64, bool, i64, u32),
    Referral(u64, i64, u32),
    Reply(u64, i64, i64),
    Confirm(u64, i64, i64),
    Reach(u64, u64, i64, u32, u64),
    Reached(u64, i64),
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0..3u64;
    let t = -40..40i64;
    let nanos = prop_oneof![Just(0u32), 0..999_999u32, 0..999_999_999u32];
    prop_oneof![
        (c.clone(), any::<bool>(), t.clone(), nanos.clone())
            .prop_map(|(c, o, t, n)| Op::OptOut(c, o, t, n)),
        (c.clone(), t.clone(), nanos.clone()).prop_map(|(c, t, n)| Op::BackOff(c, t, n)),
        (c.clone(), any::<bool>(), t.clone(), nanos.clone())
            .prop_map(|(c, o, t, n)| Op::Elsewhere(c, o, t, n)),
        (c.clone(), t.clone(), nanos.clone()).prop_map(|(c, t, n)| Op::Referral(c, t, n)),
        (c.clone(), t.clone(), 0..60i64).prop_map(|(c, t, u)| Op::Reply(c, t, u)),
        (c.clone(), t.clone(), t.clone()).prop_map(|(c, u, s)| Op::Confirm(c, u, s)),
        (0..2u64, 0..6u64, t.clone(), nanos, 1..4u64)
            .prop_map(|(p, k, t, n, l)| Op::Reach(p, k, t, n, l)),
        (0..2u64, t).prop_map(|(p, t)| Op::Reached(p, t)),
    ]
}

/// One call on a store, its answer as text (so two stores' answers compare).
async fn apply<S: ConsentStore>(store: &S, case: u64, base: i64, op: &Op) -> String {
    // Customers of the case's own too: the 131049 back-off is the customer's, across
    // business numbers, and the Redis server is shared by the cases.
    let chat = |c: u64| Conversation::new(business(case), case_customer(case, c));
    let portfolio = |p: u64| format!("p{case}-{p}");
    // A short span and reply window, so the schedule's times cross their edges. (Not
    // shorter: Redis also expires the whole count a span of wall time after its last
    // write, whatever the times counted; with a 20 ms span the two stores disagree
    // merely because the test takes longer than 20 ms.)
    let span = TimeDelta::seconds(20);
    let within = TimeDelta::seconds(10);
    match *op {
        Op::OptOut(c, o, t, n) => format!(
            "{:?}",
            store.record_opt_out(chat(c), o, time(base, t, n)).await
        ),
        Op::BackOff(c, t, n) => format!(
            "{:?}",
            store.extend_back_off(chat(c), time(base, t, n)).await
        ),
        Op::Elsewhere(c, back_off, t, n) => {
            let elsewhere = Conversation::new(second_business(case), case_customer(case, c));
            let answer = if back_off {
                store.extend_back_off(elsewhere, time(base, t, n)).await
            } else {
                store
                    .record_opt_out(elsewhere, true, time(base, t, n))
                    .await
            };
            format!(
                "{answer:?} then {:?}",
                store.marketing_consent(chat(c)).await
            )
        }
        Op::Referral(c, t, n) => format!(
            "{:?}",
            store.record_referral(chat(c), time(base, t, n)).await
        ),
        Op::Reply(c, t, u) => format!(
            "{:?}",
            store
                .record_business_reply(chat(c), time(base, t, 0), time(base, t + u, 0), within)
                .await
        ),
        Op::Confirm(c, u, s) => format!(
            "{:?}",
            store
                .confirm_free_entry_point(chat(c), time(base, u, 0), time(base, s, 0))
                .await
        ),
        Op::Reach(p, k, t, n, limit) => format!(
            "{:?}",
            store
                .reach_customer(&portfolio(p), k, time(base, t, n), limit, span)
                .await
        ),
        Op::Reached(p, t) => format!(
            "{:?}",
            store.reached(&portfolio(p), time(base, t, 0), span).await
        ),
    }
}

static CASE: AtomicU64 = AtomicU64::new(1);

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// sled and Redis answer every consent call of a random schedule alike, and hold
    /// the same records after it (times around 2026 and around 1970, before it too).
    #[test]
    fn sled_and_redis_agree_on_every_consent_rule(
        ops in proptest::collection::vec(op(), 1..40),
        before_1970 in any::<bool>(),
    ) {
        let Some(server) = redis() else { return Ok(()) };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let case = CASE.fetch_add(1, Ordering::SeqCst);
            let base = if before_1970 { -20_000 } else { 1_795_000_000_000 };
            let dir = tempfile::tempdir().unwrap();
            let sled = SledStore::open(dir.path().join("db")).unwrap();
            let redis = lipachat_redis::RedisConfig::new(&server.url()).unwrap().connect().await.unwrap();
            for (i, op) in ops.iter().enumerate() {
                let a = apply(&sled, case, base, op).await;
                let b = apply(&redis, case, base, op).await;
                prop_assert_eq!(&a, &b, "step {} {:?} differs (sled left, Redis right)", i, op);
            }
            for c in 0..3 {
                let chat = Conversation::new(business(case), case_customer(case, c));
                let elsewhere = Conversation::new(second_business(case), case_customer(case, c));
                prop_assert_eq!(sled.marketing_consent(chat).await.unwrap(), redis.marketing_consent(chat).await.unwrap());
                prop_assert_eq!(sled.marketing_consent(elsewhere).await.unwrap(), redis.marketing_consent(elsewhere).await.unwrap());
                prop_assert_eq!(sled.free_entry_point(chat).await.unwrap(), redis.free_entry_point(chat).await.unwrap());
            }
            Ok(())
        })?;
    }
}

/// One redis-server for the whole binary (none: the Redis tests are skipped).
fn redis() -> Option<&'static RedisServer> {
    static SERVER: std::sync::OnceLock<Option<RedisServer>> = std::sync::OnceLock::new();
    SERVER.get_or_init(RedisServer::start).as_ref()
}

fn client(gateway: &StandInGateway) -> Client {
    Client::builder(ApiKey::new(gateway.api_key()).unwrap())
        .base_url(&gateway.base_url())
        .retry(RetryPolicy {
            max_retries: 1,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(10),
        })
        .request_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Claim: the count is exact under concurrency: two messengers sharing one sled store
/// (one process), sending templates to 400 customers at once in a 250 portfolio (the
/// window closed), reach exactly 250 customers, and the store counts exactly those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_messengers_on_one_sled_store_never_exceed_the_limit() {
    let clock = ManualClock::at("2026-11-23T10:00:00Z".parse().unwrap());
    let gateway = StandInGateway::builder()
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    let config = PolicyConfig::default()
        .catalog(CatalogSettings::disabled())
        .messaging_limits(
            MessagingLimits::default()
                .portfolio("acme", MessagingTier::Tier250, [business(0)])
                .unwrap(),
        );
    let messenger = || {
        Messenger::new(
            Sessions::new(store.clone()).with_clock(clock.clone()),
            client(&gateway),
            config.clone(),
        )
    };
    let template = TemplateMessage::new("spring_promo", "en").unwrap();
    let mut tasks = Vec::new();
    for half in 0..2u64 {
        let m = messenger();
        let template = template.clone();
        tasks.push(tokio::spawn(async move {
            for n in (0..400u64).filter(|n| n % 2 == half) {
                m.send_template(TemplateRequest::new(
                    Conversation::new(business(0), customer(n)),
                    template.clone(),
                ))
                .await
                .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let reached: HashSet<PhoneNumber> = gateway
        .delivered()
        .iter()
        .filter(|m| m.kind == MessageKind::Template)
        .map(|m| m.customer)
        .collect();
    assert_eq!(reached.len(), 250);
    let counted = store
        .reached("acme", clock_now(&clock), MessagingLimits::SPAN)
        .await
        .unwrap();
    assert_eq!(counted, 250);
}

fn clock_now(clock: &ManualClock) -> DateTime<Utc> {
    use lipachat_session::Clock;
    clock.now()
}

/// A hostile JSON value for a field.
fn hostile() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just("stop"),
            Just("STOP"),
            Just("Resume"),
            Just("resume "),
            Just("marketing_messages"),
            Just("MARKETING_MESSAGES"),
            Just("free_entry_point"),
            Just("FREE_ENTRY_POINT"),
            Just("-1"),
            Just("0"),
            Just("1e30"),
            Just("99999999999999999999"),
            Just("-9223372036854775808"),
            Just("9223372036854775807"),
            Just(""),
            Just(" "),
            Just("2026-13-45T99:99:99Z"),
            Just("+254712000001"),
            Just("wamid.x"),
            Just("marketing"),
            Just("MARKETING"),
            Just("utility"),
            Just("referral_conversion"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::vec(("[a-z_]{1,10}", inner), 0..3)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Claim: a malformed `user_preferences` item or a status with a hostile `pricing`,
    /// `conversation.expiration_timestamp`, `timestamp` or error `code` is a typed error
    /// or ignored, never a panic; what parses records without an error.
    #[test]
    fn hostile_preferences_and_priced_statuses_never_panic(
        wa_id in hostile(), category in hostile(), value in hostile(), timestamp in hostile(),
        pricing_category in hostile(), pricing_type in hostile(), billable in hostile(),
        expiration in hostile(), code in hostile(), pricing_whole in hostile(), use_whole in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let sessions = Sessions::new(SledStore::open(dir.path().join("db")).unwrap());
            let config = PolicyConfig::default();
            let metadata = json!({"display_phone_number": business(0).digits(), "phone_number_id": "1"});
            let preferences = json!({"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [{"field": "user_preferences", "value": {
                "messaging_product": "whatsapp", "metadata": metadata,
                "user_preferences": [
                    {"wa_id": wa_id, "category": category, "value": value, "timestamp": timestamp},
                    {"wa_id": customer(1).digits(), "category": "marketing_messages", "value": "stop", "timestamp": timestamp},
                ]
            }}]}]});
            let pricing = if use_whole { pricing_whole } else {
                json!({"category": pricing_category, "type": pricing_type, "billable": billable, "pricing_model": "PMP"})
            };
            let status = json!({"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp", "metadata": metadata,
                "statuses": [{"id": "wamid.HBgMs", "status": "delivered", "timestamp": timestamp,
                              "recipient_id": customer(2).digits(), "pricing": pricing,
                              "conversation": {"id": "c", "expiration_timestamp": expiration},
                              "errors": [{"code": code, "title": "t"}]}]
            }}]}]});
            let received: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
            for body in [preferences, status] {
                let events = WebhookParser::default().parse(body.to_string().as_bytes(), received);
                let Ok(events) = events else { continue };
                for event in &events {
                    let action = EventAction::of(event);
                    let identified = record_event(&sessions, &action).await;
                    prop_assert!(identified.is_ok(), "{:?} -> {:?}", event, identified);
                    let (_, identified) = identified.unwrap();
                    let recorded = record_consent_and_cost(&sessions, &config, event, &identified).await;
                    prop_assert!(recorded.is_ok(), "{:?} -> {:?}", event, recorded);
                }
            }
            Ok(())
        })?;
    }
}
