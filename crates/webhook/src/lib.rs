//! The serving side of a lipachat bot: the webhook routes for LipaChat and WhatsApp, the
//! bot's handler API, metrics and admin routes, and the HTTP server to run them on,
//! hardened against slow and flooding clients.
//!
//! [`WebhookService`] builds the axum [`Router`](axum::Router)
//! ([`WebhookService::router`]):
//! - `POST /webhooks/lipachat/{token}`: LipaChat's webhook, the path token checked in
//!   constant time on the request head, before the body is read (wrong: 401, nothing
//!   recorded);
//! - `GET /webhooks/whatsapp`: WhatsApp's subscription handshake (`hub.mode=subscribe`
//!   and the verify token: 200 with `hub.challenge`; else 403);
//! - `POST /webhooks/whatsapp`: WhatsApp's webhook: a missing or malformed
//!   `X-Hub-Signature-256` is refused (401) on the request head, before the body is read;
//!   a well-formed one is checked against the body in constant time before parsing
//!   ([`verify_signature`]; wrong: 401);
//! - `GET /healthz`, `GET /metrics` (Prometheus text, [`metrics`]);
//! - the read-only admin routes behind `Authorization: Bearer TOKEN`.
//!
//! Each accepted body is applied through [`Messenger::on_webhook_event`](lipachat_policy::Messenger::on_webhook_event)
//! before the 200; each new inbound message (never a redelivered copy) is then handed to
//! the [`Bot`] from a bounded queue, off the request path, with a [`Reply`] whose sends
//! go through the guarded path under ids derived from the inbound id. When the queue is
//! full the webhook is answered 503 and nothing of it is recorded, so the sender's retry
//! is applied, and handed over, once.
//!
//! [`serve`] runs an axum [`Router`](axum::Router) on a bound
//! [`TcpListener`](tokio::net::TcpListener) under a [`ServingConfig`]:
//! - a **header read timeout**: a client that has not sent a whole request head within it
//!   (a slow-loris client trickling a header, or an idle keep-alive connection) is
//!   disconnected;
//! - a **body read timeout** and a **body limit**: the body is read whole, within the
//!   timeout (else `408 Request Timeout`) and the limit (else `413 Content Too Large`,
//!   answered before any body byte is read when `Content-Length` already says so), when
//!   the handler first asks for it; a route that refuses a request on its head alone
//!   (the webhook routes' wrong path token or unusable signature header) answers without
//!   reading the body, closing the connection;
//! - a **write stall timeout**: a client that reads none of an answer for its length (one
//!   that sends request after request and never reads) is disconnected, so it cannot hold
//!   a connection slot;
//! - a **concurrency limit**: at most so many requests are in handlers at once; more wait
//!   for a slot; a request gives its slot back while its body is read, so a slow client
//!   never holds one;
//! - a **connection limit**: at most so many connections are open; the next is accepted
//!   when one closes, so file descriptors and per-connection memory stay bounded;
//! - **graceful shutdown**: when the shutdown future completes, no new connection is
//!   accepted and requests in progress finish, for at most a grace period.
//!
//! ```no_run
//! use axum::{Router, routing::post};
//! use lipachat_webhook::{ServingConfig, serve};
//!
//! # #[tokio::main] async fn main() -> std::io::Result<()> {
//! let app = Router::new().route("/webhook", post(|body: String| async move { body.len().to_string() }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let shutdown = async {
//!     let _ = tokio::signal::ctrl_c().await;
//! };
//! serve(listener, app, ServingConfig::default(), shutdown).await;
//! # Ok(())
//! # }
//! ```

mod admin;
mod bot;
mod error;
pub mod metrics;
mod secret;
mod service;
mod serving;
mod signature;
mod unconfirmed;

pub use bot::{Bot, NewMessage, Reply, ReplyError};
pub use error::ConfigError;
pub use metrics::WebhookMetrics;
pub use secret::{MIN_ADMIN_TOKEN_LEN, Secret};
pub use service::{
    DEFAULT_BOT_HANDLERS, DEFAULT_QUEUE_CAPACITY, MAX_CHALLENGE_BYTES, WebhookService,
    WebhookServiceBuilder,
};
pub use serving::{
    DEFAULT_BODY_LIMIT, DEFAULT_BODY_READ_TIMEOUT, DEFAULT_HEADER_READ_TIMEOUT,
    DEFAULT_MAX_CONCURRENT_REQUESTS, DEFAULT_MAX_CONNECTIONS, DEFAULT_SHUTDOWN_GRACE,
    DEFAULT_WRITE_STALL_TIMEOUT, ServingConfig, serve,
};
pub use signature::{SIGNATURE_HEADER, SignatureError, sign, verify_signature};
