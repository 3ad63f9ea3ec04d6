//! The per-user marketing limit (131049) is the customer's, across the bot's business
//! numbers: after the gateway answers one number's marketing template with 131049, no
//! marketing template goes to that customer from any number until the back-off ends.
//! Real parts: sled on a temp dir, the stand-in gateway on loopback, a real
//! redis-server for two replicas (skipped when missing, unless `REQUIRE_REDIS=1`).

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use common::consent_bot::{promo, start_time};
use lipachat_policy::consent::Withholding;
use lipachat_policy::{CatalogSettings, Messenger, PolicyConfig, TemplateOutcome, TemplateRequest};
use lipachat_session::{Clock, Conversation, ManualClock, PhoneNumber, Sessions, SledStore, Store};
use lipachat_testkit::{MarketingAnswer, MessageKind, StandInGateway};
use proptest::prelude::*;

/// The bot's business number `b`.
fn business(b: u64) -> PhoneNumber {
    PhoneNumber::from_u64(254_110_090_747 + b).unwrap()
}

fn customer(n: u64) -> PhoneNumber {
    PhoneNumber::from_u64(254_712_000_000 + n).unwrap()
}

/// A messenger over `store` on `clock`, with its own stand-in gateway; templates go
/// without a catalog check, so consent alone decides.
async fn bot<S: Store>(store: S, clock: &ManualClock) -> (Messenger<S>, StandInGateway) {
    let gateway = common::clocked_gateway(clock).await;
    let sessions = Sessions::new(store).with_clock(clock.clone());
    let config = PolicyConfig::default().catalog(CatalogSettings::disabled());
    (
        Messenger::new(sessions, common::quick_client(&gateway), config),
        gateway,
    )
}

async fn promo_to<S: Store>(messenger: &Messenger<S>, b: u64, n: u64) -> TemplateOutcome {
    messenger
        .send_template(TemplateRequest::new(
            Conversation::new(business(b), customer(n)),
            promo(),
        ))
        .await
        .unwrap()
}

fn templates_to(gateway: &StandInGateway, n: u64) -> usize {
    gateway
        .delivered_to(customer(n))
        .iter()
        .filter(|m| m.kind == MessageKind::Template)
        .count()
}

/// One step of a random schedule.
#[derive(Debug, Clone)]
enum Step {
    /// The gateway answers the customer's marketing templates with 131049.
    Limit(u64),
    /// The gateway accepts them again.
    Clear(u64),
    /// A marketing template from business number `.0` to customer `.1`.
    Send(u64, u64),
    /// The clock moves on this many minutes.
    Advance(i64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..3u64).prop_map(Step::Limit),
        (0..3u64).prop_map(Step::Clear),
        (0..3u64, 0..3u64).prop_map(|(b, n)| Step::Send(b, n)),
        (0..3u64, 0..3u64).prop_map(|(b, n)| Step::Send(b, n)),
        (1..1_800i64).prop_map(Step::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// After a 131049 recorded at `t` with the back-off `b` (24 hours by default), no
    /// marketing template to that customer from any of the bot's three numbers reaches
    /// the gateway before `t + b`: each is withheld locally with `retry_at` `t + b`.
    /// Outside a back-off a template goes (and, when the gateway answers 131049, starts
    /// one ending a back-off after the send).
    #[test]
    fn no_marketing_reaches_a_customer_from_any_number_inside_a_131049_back_off(
        steps in proptest::collection::vec(step(), 1..30),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let clock = ManualClock::at(start_time());
            let dir = tempfile::tempdir().unwrap();
            let (messenger, gateway) = bot(SledStore::open(dir.path().join("db")).unwrap(), &clock).await;
            let back_off = lipachat_policy::consent::ConsentConfig::default().marketing_back_off;
            let mut ends: HashMap<u64, DateTime<Utc>> = HashMap::new();
            let mut limited: HashMap<u64, bool> = HashMap::new();
            for step in steps {
                let now = clock.now();
                match step {
                    Step::Limit(n) => {
                        gateway.answer_templates_with(customer(n), Some(MarketingAnswer::PerUserLimit));
                        limited.insert(n, true);
                    }
                    Step::Clear(n) => {
                        gateway.answer_templates_with(customer(n), None);
                        limited.insert(n, false);
                    }
                    Step::Advance(minutes) => clock.advance(TimeDelta::minutes(minutes)),
                    Step::Send(b, n) => {
                        let (requests, delivered) = (gateway.request_count(), templates_to(&gateway, n));
                        let outcome = promo_to(&messenger, b, n).await;
                        match ends.get(&n).filter(|end| now < **end) {
                            Some(end) => {
                                prop_assert_eq!(gateway.request_count(), requests, "number {} reached customer {} inside the back-off: {:?}", b, n, outcome);
                                prop_assert!(
                                    matches!(outcome, TemplateOutcome::Withheld { reason: Withholding::MarketingLimit { retry_at }, refused_by_gateway: false, .. } if retry_at == *end),
                                    "{:?}, back-off until {}", outcome, end
                                );
                            }
                            None if limited.get(&n).copied().unwrap_or(false) => {
                                let TemplateOutcome::Withheld { reason: Withholding::MarketingLimit { retry_at }, refused_by_gateway: true, .. } = outcome else {
                                    return Err(TestCaseError::fail(format!("expected the gateway's 131049: {outcome:?}")));
                                };
                                prop_assert_eq!(retry_at, now + back_off);
                                ends.insert(n, retry_at);
                            }
                            None => {
                                prop_assert_eq!(templates_to(&gateway, n), delivered + 1, "outside a back-off the template goes: {:?}", outcome);
                            }
                        }
                    }
                }
            }
            Ok(())
        })?;
    }
}

/// Two replicas on one Redis, each sending from its own business number with its own
/// gateway: after the first's gateway answers 131049, the second withholds its marketing
/// template to the same customer locally, with the same `retry_at`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_131049_through_one_replica_holds_on_the_other_replicas_number() {
    let Some(server) = lipachat_redis::test_server::RedisServer::start() else {
        return;
    };
    let connect = || async {
        lipachat_redis::RedisConfig::new(&server.url())
            .unwrap()
            .with_key_prefix("two-numbers")
            .unwrap()
            .connect()
            .await
            .unwrap()
    };
    let clock = ManualClock::at(start_time());
    let (first, first_gateway) = bot(connect().await, &clock).await;
    let (second, second_gateway) = bot(connect().await, &clock).await;
    first_gateway.answer_templates_with(customer(1), Some(MarketingAnswer::PerUserLimit));
    let refused = promo_to(&first, 0, 1).await;
    let TemplateOutcome::Withheld {
        reason: Withholding::MarketingLimit { retry_at },
        refused_by_gateway: true,
        ..
    } = refused
    else {
        panic!("expected the gateway's 131049: {refused:?}");
    };
    clock.advance(TimeDelta::minutes(1));
    let withheld = promo_to(&second, 1, 1).await;
    assert_eq!(second_gateway.request_count(), 0, "{withheld:?}");
    assert!(
        matches!(
            withheld,
            TemplateOutcome::Withheld {
                reason: Withholding::MarketingLimit { retry_at: again },
                refused_by_gateway: false,
                ..
            } if again == retry_at
        ),
        "{withheld:?}"
    );
    // Another customer is not held back.
    let other = promo_to(&second, 1, 2).await;
    assert_eq!(templates_to(&second_gateway, 2), 1, "{other:?}");
    // Once the back-off is over, the template goes.
    clock.set(retry_at);
    promo_to(&second, 1, 1).await;
    assert_eq!(templates_to(&second_gateway, 1), 1);
}
