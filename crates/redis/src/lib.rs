//! A Redis store for lipachat: the same windows, outbox, invitations, outcomes and
//! delivery claims as the embedded sled store, shared by every bot replica (and by
//! `session-check`) that connects to the same server and key prefix.
//!
//! ```no_run
//! use chrono::{TimeDelta, Utc};
//! use lipachat_redis::{RedisConfig, RedisStore};
//! use lipachat_session::{Conversation, OutboxStore, Sessions};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store: RedisStore = "redis://127.0.0.1:6379/0"
//!     .parse::<RedisConfig>()?
//!     .with_key_prefix("support-bot")?
//!     .connect()
//!     .await?;
//! let sessions = Sessions::new(store.clone());
//! let chat = Conversation::parse("254110090747", "254712345678")?;
//!
//! // Any replica records the customer's message; every replica sees the open window.
//! sessions.record_inbound_now(chat).await?;
//! assert!(sessions.decide(chat).await?.is_allowed());
//!
//! // Only one replica at a time delivers a queued message.
//! let (message_id, holder) = (lipachat_session::MessageId::new(), uuid::Uuid::new_v4());
//! if store.claim(message_id, holder, Utc::now(), TimeDelta::seconds(30)).await? {
//!     // ... deliver it, then dequeue and release.
//!     store.release(message_id, holder).await?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The pieces:
//! - [`RedisConfig`], [`RedisTimeouts`], [`ReplicaWait`]: server URL
//!   (`redis://HOST:PORT/DB`, `rediss://` for TLS, `redis+cluster://HOST:PORT,…` for a
//!   Redis Cluster), key prefix (several bots may share a server), the certificate
//!   authority to trust besides the system's ([`CA_CERT_ENV`]), the time bounds of every
//!   call, and how many replicas must confirm each write (`WAIT`).
//! - [`ConnectError`]: why opening failed (authentication, an untrusted certificate, a
//!   missing ACL permission, an unreachable or unsuitable server), never with the
//!   password in it.
//! - [`RedisStore`]: implements [`lipachat_session::WindowStore`] and
//!   [`lipachat_session::OutboxStore`], so it is a [`lipachat_session::Store`] and the
//!   policy and the CLI work on it unchanged.
//! - [`KeyLayout`]: where each fact lives; one hash tag per business number, so a Redis
//!   Cluster keeps a business in one slot; and the least ACL rules the store needs.
//! - [`test_server`] (feature `test-server`): throwaway servers, TLS servers, clusters,
//!   replicas and Sentinels for tests.
//!
//! Requires Redis 6.2 or newer (checked at connect). For durability run the server with
//! `appendonly yes` and `appendfsync always`: every acknowledged write is then on disk.
//! When the server is unreachable, stalled or restarting, or a cluster primary fails
//! over, calls fail with [`lipachat_session::StoreError::Backend`] (backend
//! [`REDIS_BACKEND`], its source a [`RedisStoreError`] saying what failed) within the
//! operation timeout (4 s by default) and the connection recovers by itself; connecting
//! fails with a [`ConnectError`] naming what went wrong (authentication, an untrusted
//! certificate, an unreachable server, ...). `docs/redis.md` describes the key layout, the
//! scripts, TLS, the cluster, and what a failover can lose.

mod codec;
mod config;
mod connect_error;
mod connection;
mod error;
mod keys;
mod scripts;
mod server;
mod store;
#[cfg(feature = "test-server")]
pub mod test_server;

pub use config::{CA_CERT_ENV, ConfigError, RedisConfig, RedisTimeouts, ReplicaWait};
pub use connect_error::ConnectError;
pub use error::{REDIS_BACKEND, RedisStoreError};
pub use keys::KeyLayout;
pub use server::{RedisVersion, ServerInfo};
pub use store::{MAX_CLAIM_LEASE, RedisStore, SCHEMA_VERSION};
