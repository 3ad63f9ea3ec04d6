//! What went wrong talking to Redis: the typed source of the store's backend errors.

use std::time::Duration;

use lipachat_session::StoreError;

use crate::ConfigError;

/// The name the Redis store gives as [`StoreError::Backend`]'s `backend`.
pub const REDIS_BACKEND: &str = "redis";

/// What failed in the Redis store: the `source` of every [`StoreError::Backend`] it
/// returns (`backend` is [`REDIS_BACKEND`]), reached through
/// [`std::error::Error::source`].
///
/// No variant holds the server's password, in any form: the endpoint is written with the
/// password hidden, and every text taken from redis-rs or from the server has it taken
/// out (a misconfigured server may quote it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedisStoreError {
    /// The URL or a setting cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No connection could be made (refused, unreachable, a failed handshake, or none
    /// within the operation timeout).
    #[error("redis at {endpoint}: cannot connect: {detail}")]
    Connect {
        /// The server, password hidden.
        endpoint: String,
        /// Why, password taken out.
        detail: String,
    },
    /// The server does not suit the store: too old, or its keys under the prefix use a
    /// layout this build does not read.
    #[error("redis at {endpoint}: {detail}")]
    Unsuitable {
        /// The server, password hidden.
        endpoint: String,
        /// What does not suit, and what to do.
        detail: String,
    },
    /// A call got no answer within the operation timeout (the server stalled, or the
    /// connection is being re-made).
    #[error("redis at {endpoint}: {operation}: no answer within {after:?}")]
    Timeout {
        /// The server, password hidden.
        endpoint: String,
        /// The store operation.
        operation: String,
        /// The operation timeout.
        after: Duration,
    },
    /// A call failed: the server answered with an error, or the connection broke.
    #[error("redis at {endpoint}: {operation}: {detail}")]
    Call {
        /// The server, password hidden.
        endpoint: String,
        /// The store operation.
        operation: String,
        /// The error, password taken out.
        detail: String,
    },
    /// The server's answer is not what the store's command or script returns.
    #[error("{operation}: unexpected answer {answer}")]
    UnexpectedAnswer {
        /// The store operation.
        operation: String,
        /// The answer, as far as it was read.
        answer: String,
    },
    /// The store refused a change that would break what it keeps (two queued messages
    /// under one `messageId`).
    #[error("{operation}: {reason}")]
    Refused {
        /// The store operation.
        operation: String,
        /// Why.
        reason: String,
    },
}

impl RedisStoreError {
    /// Whether the same call may succeed later: the server was unreachable, slow, or
    /// the connection broke.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. } | Self::Timeout { .. } | Self::Call { .. }
        )
    }
}

impl From<RedisStoreError> for StoreError {
    fn from(error: RedisStoreError) -> Self {
        if error.is_transient() {
            StoreError::backend_unavailable(REDIS_BACKEND, error)
        } else {
            StoreError::backend(REDIS_BACKEND, error)
        }
    }
}

impl From<ConfigError> for StoreError {
    fn from(error: ConfigError) -> Self {
        RedisStoreError::from(error).into()
    }
}
