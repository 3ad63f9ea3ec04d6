//! The sled store's consent calls: a call that writes nothing waits for no flush, a send's
//! predicted cost waits for none, and the messaging-limit count kept in memory answers
//! exactly what a scan of the stored entries would, also across reopening the store and
//! with two handles counting at once.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::{
    ConsentStore, Conversation, MessageId, PhoneNumber, PredictedCost, PricingCategory, Reach,
    SledStore,
};

fn conversation(i: u64) -> Conversation {
    Conversation::new(
        PhoneNumber::from_u64(254_110_090_747).unwrap(),
        PhoneNumber::from_u64(254_700_000_000 + i).unwrap(),
    )
}

fn t0() -> DateTime<Utc> {
    "2026-11-23T00:00:00Z".parse().unwrap()
}

fn ms(n: i64) -> TimeDelta {
    TimeDelta::milliseconds(n)
}

#[tokio::test]
async fn calls_that_write_nothing_wait_for_no_flush() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    let c = conversation(1);
    let within = TimeDelta::hours(24);

    // No free entry point record: a reply changes nothing.
    let flushes = store.group_commit_flushes();
    let none = store
        .record_business_reply(c, t0(), t0() + TimeDelta::hours(72), within)
        .await
        .unwrap();
    assert_eq!(none, None);
    assert_eq!(
        store.group_commit_flushes(),
        flushes,
        "nothing written, no flush"
    );

    // A predicted cost rides the next flush.
    store
        .record_predicted_cost(PredictedCost {
            conversation: c,
            message_id: MessageId::new(),
            wa_id: None,
            sent_at: t0(),
            category: PricingCategory::Service,
            free: true,
        })
        .await
        .unwrap();
    assert_eq!(
        store.group_commit_flushes(),
        flushes,
        "a predicted cost waits for no flush"
    );

    // The first count writes and waits; another customer once the limit is reached
    // writes nothing and waits for nothing (at worst it withholds a send).
    let reach = store
        .reach_customer("p", 1, t0(), 1, TimeDelta::days(1))
        .await
        .unwrap();
    assert_eq!(reach, Reach::Counted { reached: 1 });
    let flushes = store.group_commit_flushes();
    assert!(flushes > 0, "a count is durable before it returns");
    let full = store
        .reach_customer("p", 2, t0() + ms(1), 1, TimeDelta::days(1))
        .await
        .unwrap();
    assert_eq!(full, Reach::LimitReached { reached: 1 });
    assert_eq!(
        store.group_commit_flushes(),
        flushes,
        "nothing written, no flush"
    );
    // Counting the customer again at the same time writes nothing but lets a send go on
    // the strength of the stored count, which may be another caller's not yet flushed:
    // it waits until that count is on disk.
    let again = store
        .reach_customer("p", 1, t0(), 1, TimeDelta::days(1))
        .await
        .unwrap();
    assert_eq!(again, Reach::AlreadyCounted { reached: 1 });
    assert!(
        store.group_commit_flushes() > flushes,
        "an allowed send rests on a durable count"
    );

    // A reply that opens a free entry point window writes, and waits.
    store.record_referral(c, t0()).await.unwrap();
    let flushes = store.group_commit_flushes();
    let opened = store
        .record_business_reply(c, t0() + ms(5), t0() + TimeDelta::hours(72), within)
        .await
        .unwrap();
    assert!(opened.is_some_and(|e| e.opened_at.is_some()));
    assert!(
        store.group_commit_flushes() > flushes,
        "a change is durable before it returns"
    );

    // The predicted cost is there after a clean close.
    drop(store);
    let store = SledStore::open(dir.path().join("db")).unwrap();
    assert_eq!(store.cost_records(None).await.unwrap().len(), 1);
}

/// The rule the count follows, as the scan before the in-memory count computed it: drop
/// the entries last reached at or before `at - span`, then count.
#[derive(Default)]
struct Model {
    portfolios: HashMap<String, HashMap<u64, i64>>,
}

impl Model {
    fn reach(&mut self, portfolio: &str, customer: u64, at: i64, limit: u64, span: i64) -> Reach {
        let entries = self.portfolios.entry(portfolio.to_string()).or_default();
        entries.retain(|_, t| *t > at - span);
        let reached = entries.len() as u64;
        let reach = match entries.get(&customer) {
            Some(_) => Reach::AlreadyCounted { reached },
            None if reached >= limit => Reach::LimitReached { reached },
            None => Reach::Counted {
                reached: reached + 1,
            },
        };
        if !matches!(reach, Reach::LimitReached { .. }) {
            let t = entries.entry(customer).or_insert(i64::MIN);
            *t = (*t).max(at);
        }
        reach
    }

    fn reached(&self, portfolio: &str, at: i64, span: i64) -> u64 {
        self.portfolios
            .get(portfolio)
            .map_or(0, |e| e.values().filter(|t| **t > at - span).count() as u64)
    }
}

/// A fixed pseudo-random sequence (SplitMix64), the same on every run.
struct Sequence(u64);

impl Sequence {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (x ^ (x >> 31)) % below
    }
}

#[tokio::test]
async fn the_count_matches_the_rule_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut store = SledStore::open(&path).unwrap();
    let mut model = Model::default();
    let mut sequence = Sequence(16);
    let portfolios = ["a", "b", "svc.254110090747.2026-11"];
    let (limit, span) = (12, 1_000);
    // Time mostly moves forward, sometimes back (callers' clocks differ).
    let mut now = t0().timestamp_millis();
    for step in 0..3_000 {
        if step % 500 == 499 {
            drop(store);
            store = SledStore::open(&path).unwrap();
        }
        now += sequence.next(40) as i64;
        let at = now - sequence.next(4).saturating_sub(2) as i64 * sequence.next(600) as i64;
        let portfolio = portfolios[sequence.next(3) as usize];
        let customer = sequence.next(30);
        let when = DateTime::from_timestamp_millis(at).unwrap();
        let got = store
            .reach_customer(
                portfolio,
                customer,
                when,
                limit,
                TimeDelta::milliseconds(span),
            )
            .await
            .unwrap();
        let want = model.reach(portfolio, customer, at, limit, span);
        assert_eq!(got, want, "step {step}: {portfolio} {customer} at {at}");
        let stored = store
            .reached(portfolio, when, TimeDelta::milliseconds(span))
            .await
            .unwrap();
        assert_eq!(
            stored,
            model.reached(portfolio, at, span),
            "step {step}: reached"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_count_exactly_and_the_count_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = SledStore::open(&path).unwrap();
    let limit = 100;
    let span = TimeDelta::days(40);
    let tasks: Vec<_> = (0..2u64)
        .map(|handle| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut counted = Vec::new();
                for i in 0..150u64 {
                    // Both handles count customers 0..150, in opposite orders.
                    let customer = if handle == 0 { i } else { 149 - i };
                    if let Reach::Counted { reached } = store
                        .reach_customer("svc.x", customer, t0() + ms(i as i64), limit, span)
                        .await
                        .unwrap()
                    {
                        counted.push(reached);
                    }
                }
                counted
            })
        })
        .collect();
    let mut counted = Vec::new();
    for task in tasks {
        counted.extend(task.await.unwrap());
    }
    counted.sort_unstable();
    assert_eq!(
        counted,
        (1..=limit).collect::<Vec<_>>(),
        "each count once, up to the limit"
    );
    drop(store);

    let store = SledStore::open(&path).unwrap();
    let later = t0() + TimeDelta::hours(1);
    assert_eq!(store.reached("svc.x", later, span).await.unwrap(), limit);
    let reach = store
        .reach_customer("svc.x", 1_000, later, limit, span)
        .await
        .unwrap();
    assert_eq!(reach, Reach::LimitReached { reached: limit });
    // Once every count left the span, the count after reopening drops them all.
    let past = t0() + span + ms(150);
    let reach = store
        .reach_customer("svc.x", 1_000, past, limit, span)
        .await
        .unwrap();
    assert_eq!(reach, Reach::Counted { reached: 1 });
    assert_eq!(store.reached("svc.x", past, span).await.unwrap(), 1);
}
