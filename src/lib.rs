//! Send WhatsApp messages through the LipaChat gateway without breaking the 24-hour
//! customer service window.
//!
//! One dependency for a chatbot backend; it re-exports the workspace's crates:
//! - [`session`]: each (business number, customer) pair's last inbound time, durable in
//!   sled (or Redis), and the window rule;
//! - [`api`]: the gateway client (contact, text, media, buttons, list, location request,
//!   flow, template; the template catalog) and inbound webhook parsing;
//! - [`policy`]: the guarded send path a bot calls, with template reroute (checked against
//!   the business's catalog) and the outbox;
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

pub use lipachat_api as api;
pub use lipachat_policy as policy;
pub use lipachat_session as session;
#[cfg(feature = "testkit")]
pub use lipachat_testkit as testkit;
#[cfg(feature = "axum")]
pub use lipachat_webhook as webhook;
