//! Helpers shared by the Redis store's test binaries.

#![allow(dead_code)] // Each test binary uses some of them.

use lipachat_redis::{RedisConfig, RedisStore};
use lipachat_session::{Conversation, WindowStore};

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
