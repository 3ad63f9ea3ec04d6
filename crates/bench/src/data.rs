//! The synthetic population: N conversations across a few business numbers, with inbound
//! times spread over the last 24 hours.

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::{Conversation, PhoneNumber};

/// Business numbers the conversations are spread over.
const BUSINESSES: u64 = 8;

/// The `i`-th member of the population, computed without holding the others: distinct
/// conversations (a bijective scramble of `i` into 12-digit numbers, so keys arrive in
/// random order) with an inbound time spread uniformly over the day before `now`.
pub fn member(i: u64, now: DateTime<Utc>) -> Option<(Conversation, DateTime<Utc>)> {
    let business = PhoneNumber::from_u64(254_110_090_700 + i % BUSINESSES)?;
    // 99,999,989 is prime, so i -> i * a mod p is one-to-one for i below it.
    let customer =
        PhoneNumber::from_u64(254_700_000_000 + i.wrapping_mul(2_654_435_761) % 99_999_989)?;
    let age = fastrand::Rng::with_seed(i ^ 0x5EED_1234).i64(0..24 * 3600 * 1000);
    Some((
        Conversation::new(business, customer),
        now - TimeDelta::milliseconds(age),
    ))
}

/// N distinct conversations in random order, each with an inbound time in the last day.
pub struct Population {
    /// The conversations, in the random order they are loaded.
    pub conversations: Vec<Conversation>,
    /// Each conversation's inbound time (same index).
    pub inbound: Vec<DateTime<Utc>>,
    /// The instant the population is "now".
    pub now: DateTime<Utc>,
}

impl Population {
    /// Makes `n` conversations with a fixed seed, so runs are comparable.
    pub fn new(n: usize, now: DateTime<Utc>) -> Self {
        let mut conversations = Vec::with_capacity(n);
        let mut inbound = Vec::with_capacity(n);
        for i in 0..n as u64 {
            if let Some((conversation, at)) = member(i, now) {
                conversations.push(conversation);
                inbound.push(at);
            }
        }
        Self {
            conversations,
            inbound,
            now,
        }
    }

    /// How many conversations.
    pub fn len(&self) -> usize {
        self.conversations.len()
    }
}
