//! Send WhatsApp messages through the LipaChat gateway without breaking the 24-hour
//! customer service window.
//!
//! One dependency for a chatbot backend; it re-exports the workspace's crates, one module
//! each:
//! - [`session`]: each (business number, customer) pair's last inbound time, durable in
//!   sled (feature `sled`, on by default) or Redis, and the window rule;
//! - [`api`]: the gateway client (contact, text, media, buttons, list, location request,
//!   flow, template; the template catalog) and inbound webhook parsing;
//! - [`policy`]: the guarded send path a bot calls, with template reroute (checked against
//!   the business's catalog) and the outbox;
//! - `redis` (feature `redis`): the Redis store, for replicas sharing one store; a
//!   Redis-only build (`default-features = false, features = ["redis"]`) compiles no sled;
//! - `webhook` (feature `axum`, on by default): the serving side: LipaChat's and
//!   WhatsApp's webhook routes (token and signature checks, the subscription handshake),
//!   health, metrics, read-only admin routes, the bot's handler API with a bounded queue,
//!   and the HTTP server with header and body read timeouts, a body limit, and bounded
//!   connections and handlers;
//! - `testkit` (feature `testkit`): a stand-in gateway on loopback for your own tests.
//!
//! ```
//! use lipachat::api::{ApiKey, Client, ContactMessage, ContactPhone};
//! use lipachat::policy::{Messenger, PolicyConfig, SendOutcome};
//! use lipachat::session::{Conversation, Sessions, SledStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let gateway = lipachat_testkit::StandInGateway::start().await?;
//! # let (key, base_url) = (gateway.api_key().to_string(), gateway.base_url());
//! let client = Client::builder(ApiKey::new(key)?).base_url(&base_url).build()?;
//! let dir = tempfile::tempdir()?;
//! let sessions = Sessions::new(SledStore::open(dir.path().join("sessions.db"))?);
//! let messenger = Messenger::new(sessions, client, PolicyConfig::default());
//! let chat = Conversation::parse("254110090747", "254712345678")?;
//! let card = ContactMessage::new("Support", vec![ContactPhone::new("254700000001".parse()?, "Work")])?;
//!
//! // Nobody wrote yet: the default policy rejects, and nothing reaches the gateway.
//! let outcome = messenger.send_contact(chat, card).await?;
//! assert!(matches!(outcome, SendOutcome::Rejected { .. }));
//! # assert_eq!(gateway.request_count(), 0);
//! # Ok(())
//! # }
//! ```

pub mod session {
    //! Each (business number, customer) pair's last inbound time, durable in sled
    //! (feature `sled`) or Redis (feature `redis`), and the window rule: the
    //! `lipachat-session` crate.
    #[doc(inline)]
    pub use lipachat_session::*;
}

pub mod api {
    //! The gateway client (every kind a bot sends, templates and their catalog) and
    //! inbound webhook parsing: the `lipachat-api` crate.
    #[doc(inline)]
    pub use lipachat_api::*;
}

pub mod policy {
    //! The guarded send path a bot calls, with template reroute, the outbox and the
    //! reconciliation of late reports: the `lipachat-policy` crate.
    #[doc(inline)]
    pub use lipachat_policy::*;
}

#[cfg(feature = "redis")]
pub mod redis {
    //! The Redis store, for replicas sharing one store (feature `redis`): the
    //! `lipachat-redis` crate.
    #[doc(inline)]
    pub use lipachat_redis::*;
}

#[cfg(feature = "axum")]
pub mod webhook {
    //! The serving side (feature `axum`, on by default): the webhook routes, health,
    //! metrics, admin routes, the bot's handler API and the HTTP server: the
    //! `lipachat-webhook` crate.
    #[doc(inline)]
    pub use lipachat_webhook::*;
}

#[cfg(feature = "testkit")]
pub mod testkit {
    //! A stand-in gateway on loopback for a backend's own tests (feature `testkit`): the
    //! `lipachat-testkit` crate.
    #[doc(inline)]
    pub use lipachat_testkit::*;
}
