//! Helpers shared by the Redis store's test binaries.

#![allow(dead_code)] // Each test binary uses some of them.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_redis::{RedisConfig, RedisStore};
use lipachat_session::{Clock, Conversation, WindowStore};

/// A host's clock: the system clock moved by an offset that can be stepped while
/// running (an NTP correction, a VM resumed from a snapshot).
#[derive(Debug, Default)]
pub struct SteppingClock(Mutex<TimeDelta>);

impl SteppingClock {
    /// A clock `offset` away from the system clock.
    pub fn off_by(offset: TimeDelta) -> Arc<Self> {
        Arc::new(Self(Mutex::new(offset)))
    }

    /// Moves the clock by `by`.
    pub fn step(&self, by: TimeDelta) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) += by;
    }
}

impl Clock for SteppingClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A store on the server (or cluster) at `url`, its keys under `prefix`.
pub async fn store_at(url: &str, prefix: &str) -> RedisStore {
    let config = RedisConfig::new(url)
        .and_then(|config| config.with_key_prefix(prefix))
        .unwrap_or_else(|error| panic!("a store at {url}: {error}"));
    config
        .connect()
        .await
        .unwrap_or_else(|error| panic!("connecting to {url}: {error}"))
}

/// The conversations with a window record, in order.
pub async fn conversations_with_windows(store: &RedisStore) -> Vec<Conversation> {
    let mut found: Vec<Conversation> = match store.windows().await {
        Ok(windows) => windows
            .into_iter()
            .map(|(conversation, _)| conversation)
            .collect(),
        Err(error) => panic!("windows: {error}"),
    };
    found.sort();
    found
}

/// A plain connection to the server at `url`, for writing what the store would not
/// (an unreadable value) and reading what it wrote.
pub async fn raw_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap_or_else(|error| panic!("a client for {url}: {error}"))
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|error| panic!("connecting to {url}: {error}"))
}
