//! Helpers shared by the Redis store's test binaries.

#![allow(dead_code)] // Each test binary uses some of them.

use lipachat_redis::RedisStore;
use lipachat_session::{Conversation, WindowStore};

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
