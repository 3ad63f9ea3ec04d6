//! The serving side of a lipachat bot: the HTTP server a backend puts in front of its
//! webhook routes, hardened against slow and flooding clients.
//!
//! [`serve`] runs an axum [`Router`](axum::Router) on a bound
//! [`TcpListener`](tokio::net::TcpListener) under a [`ServingConfig`]:
//! - a **header read timeout**: a client that has not sent a whole request head within it
//!   (a slow-loris client trickling a header, or an idle keep-alive connection) is
//!   disconnected;
//! - a **body read timeout** and a **body limit**: the body is read whole, within the
//!   timeout (else `408 Request Timeout`) and the limit (else `413 Content Too Large`,
//!   answered before any body byte is read when `Content-Length` already says so),
//!   before the router sees the request;
//! - a **write stall timeout**: a client that reads none of an answer for its length (one
//!   that sends request after request and never reads) is disconnected, so it cannot hold
//!   a connection slot;
//! - a **concurrency limit**: at most so many requests are in handlers at once; more wait
//!   for a slot once their body is read;
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

mod serving;

pub use serving::{
    DEFAULT_BODY_LIMIT, DEFAULT_BODY_READ_TIMEOUT, DEFAULT_HEADER_READ_TIMEOUT,
    DEFAULT_MAX_CONCURRENT_REQUESTS, DEFAULT_MAX_CONNECTIONS, DEFAULT_SHUTDOWN_GRACE,
    DEFAULT_WRITE_STALL_TIMEOUT, ServingConfig, serve,
};
