//! What several test binaries share: a client for the stand-in gateway, and a log sink.

#![allow(dead_code)] // Each test binary uses a different part.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lipachat_api::{ApiKey, Client, RetryPolicy};
use lipachat_testkit::StandInGateway;

/// A client for `gateway` that retries once, quickly.
pub fn quick_client(gateway: &StandInGateway) -> Client {
    Client::builder(ApiKey::new(gateway.api_key()).expect("the stand-in's key is valid"))
        .base_url(&gateway.base_url())
        .retry(RetryPolicy {
            max_retries: 1,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(10),
        })
        .build()
        .expect("a client for the stand-in")
}

/// A log sink: what a `tracing_subscriber::fmt` subscriber writes to it is kept.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A subscriber writing every event at `level` or above to a new [`Captured`] sink.
pub fn capturing(level: tracing::Level) -> (impl tracing::Subscriber + Send + Sync, Captured) {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    (subscriber, captured)
}
