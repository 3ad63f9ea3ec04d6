//! Attacks on the Redis messaging limit count's time (`CountTime`): messengers on the
//! system clock (`Sessions`' default) as replicas on one real `redis-server`, sending
//! from two numbers of one portfolio to many customers at once over the smallest tier;
//! a wrapper clock around the system clock (which does not say it is simulated) counts
//! on the server's clock; and a replica on such a wrapper, running ahead, shares the
//! portfolio's count with a replica on the system clock without doubling the tier. Skipped when
//! `redis-server` is missing (unless `REQUIRE_REDIS=1`).

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use std::collections::HashSet;

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_api::TextMessage;
use lipachat_policy::consent::{MessagingLimits, MessagingTier};
use lipachat_policy::{Messenger, OnClosed, PolicyConfig, SendRequest};
use lipachat_redis::RedisStore;
use lipachat_redis::test_server::RedisServer;
use lipachat_session::{
    Clock, ConsentStore, Conversation, CountTime, PhoneNumber, Sessions, SystemClock,
};
use lipachat_testkit::{MessageKind, StandInGateway};

fn number(b: u64) -> PhoneNumber {
    PhoneNumber::from_u64(254_110_090_747 + b).unwrap()
}

fn customer(n: u64) -> PhoneNumber {
    PhoneNumber::from_u64(254_712_000_000 + n).unwrap()
}

/// Both business numbers in the portfolio `p`, tier 250; a closed window reroutes to a
/// marketing template, which the limit counts.
fn config() -> PolicyConfig {
    PolicyConfig::default()
        .on_closed(OnClosed::Template(common::consent_bot::promo()))
        .messaging_limits(
            MessagingLimits::default()
                .portfolio("p", MessagingTier::Tier250, [number(0), number(1)])
                .unwrap(),
        )
}

/// The system clock, wrapped and moved by `offset`: it does not say it is simulated
/// (`Clock::is_simulated` is the trait's default, false), so it is taken as real time.
#[derive(Debug)]
struct WrappedSystemClock {
    offset: TimeDelta,
}

impl Clock for WrappedSystemClock {
    fn now(&self) -> DateTime<Utc> {
        SystemClock.now() + self.offset
    }
}

async fn store(server: &RedisServer, prefix: &str) -> RedisStore {
    lipachat_redis::RedisConfig::new(&server.url())
        .unwrap()
        .with_key_prefix(prefix)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Sends from `b` to each customer in `customers`, one after the other.
fn sender(
    messenger: Messenger<RedisStore>,
    b: u64,
    customers: Vec<u64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for n in customers {
            messenger
                .send(SendRequest::text(
                    Conversation::new(number(b), customer(n)),
                    TextMessage::new("hello").unwrap(),
                ))
                .await
                .unwrap();
        }
    })
}

fn customers_reached(gateway: &StandInGateway) -> HashSet<PhoneNumber> {
    gateway
        .delivered()
        .iter()
        .filter(|m| m.kind == MessageKind::Template)
        .map(|m| m.customer)
        .collect()
}

/// Two replicas on the system clock, each sending from its own number of the portfolio
/// with four tasks, 320 customers in all (each tried from both numbers), against the
/// tier of 250: exactly 250 distinct customers get a template, and the server's count
/// is 250.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_the_system_clock_reach_exactly_the_tier() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let gateway = StandInGateway::start().await.unwrap();
    let replicas = [
        Messenger::new(
            Sessions::new(store(&server, "sys").await),
            common::quick_client(&gateway),
            config(),
        ),
        Messenger::new(
            Sessions::new(store(&server, "sys").await),
            common::quick_client(&gateway),
            config(),
        ),
    ];
    let mut tasks = Vec::new();
    for task in 0..8_u64 {
        let side = (task % 2) as usize;
        let list: Vec<u64> = (0..320).filter(|n| n % 4 == task / 2).collect();
        tasks.push(sender(replicas[side].clone(), side as u64, list));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(customers_reached(&gateway).len(), 250);
    let counted = replicas[0]
        .sessions()
        .store()
        .reached("p", CountTime::SystemNow(Utc::now()), MessagingLimits::SPAN)
        .await
        .unwrap();
    assert_eq!(counted, 250);
}

/// A wrapper around the system clock reads real time (it does not say it is
/// simulated): its count is kept at the server's time, not its own. Its clock runs 3
/// hours behind, yet the customer's count ends 24 hours from now, not 21.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrapped_system_clock_counts_on_the_servers_clock() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let gateway = StandInGateway::start().await.unwrap();
    let clock = WrappedSystemClock {
        offset: -TimeDelta::hours(3),
    };
    let messenger = Messenger::new(
        Sessions::new(store(&server, "wrapped").await).with_clock(clock),
        common::quick_client(&gateway),
        config(),
    );
    assert!(!messenger.sessions().clock().is_simulated());
    messenger
        .send(SendRequest::text(
            Conversation::new(number(0), customer(1)),
            TextMessage::new("hello").unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(customers_reached(&gateway).len(), 1);
    let store = messenger.sessions().store();
    let at = |hours: i64, minutes: i64| {
        CountTime::Given(Utc::now() + TimeDelta::hours(hours) + TimeDelta::minutes(minutes))
    };
    let span = MessagingLimits::SPAN;
    assert_eq!(
        store.reached("p", at(21, 10), span).await.unwrap(),
        1,
        "the count was stamped with the wrapper's time (3 hours behind), not the server's"
    );
    assert_eq!(store.reached("p", at(23, 50), span).await.unwrap(), 1);
    assert_eq!(store.reached("p", at(24, 10), span).await.unwrap(), 0);
}

/// One replica on the system clock, one on a wrapper around it running 25 hours ahead
/// (a wrapper does not say it is simulated, so its counts are kept at the server's
/// time). Each sends to 250 different customers: the portfolio must still reach no
/// more than 250 in a real 24 hours. (When clocks had to say they were the system
/// clock, the wrapper's counts were kept at its own time and 500 got through.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_on_a_wrapped_clock_ahead_cannot_double_the_tier() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let gateway = StandInGateway::start().await.unwrap();
    let system = Messenger::new(
        Sessions::new(store(&server, "mixed").await),
        common::quick_client(&gateway),
        config(),
    );
    let ahead = Messenger::new(
        Sessions::new(store(&server, "mixed").await).with_clock(WrappedSystemClock {
            offset: TimeDelta::hours(25),
        }),
        common::quick_client(&gateway),
        config(),
    );
    sender(system, 0, (0..250).collect()).await.unwrap();
    sender(ahead, 1, (250..500).collect()).await.unwrap();
    let reached = customers_reached(&gateway).len();
    assert!(
        reached <= 250,
        "{reached} customers reached against a tier of 250"
    );
}
