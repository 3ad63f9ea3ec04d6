//! The serving side: signed WhatsApp webhooks through the router (signature check, parse,
//! each message recorded once by id in a durable sled store before the 200) against a
//! plain axum handler that reads the same body and answers 200, both on `serve` with its
//! default limits, from 32 concurrent clients on loopback.
//!
//! Both sides build and sign a fresh body per request (a new message id each time, so the
//! router records every one rather than answering a duplicate), so the clients' own work
//! is the same on both; the rounds are interleaved and each figure is the best of its
//! rounds, as in the send workload.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use chrono::Utc;
use lipachat_api::{ApiKey, Client};
use lipachat_policy::{Messenger, PolicyConfig};
use lipachat_session::{Sessions, SledConfig};
use lipachat_webhook::{Secret, ServingConfig, WebhookService, serve, sign};

use crate::measure::{best_of_interleaved, concurrent, progress};

/// Concurrent clients.
const CLIENTS: usize = 32;
/// Rounds of each side; each figure is the best of its rounds.
const ROUNDS: usize = 3;
/// Customers the messages come from.
const CUSTOMERS: u64 = 10_000;
const APP_SECRET: &str = "bench-app-secret";
const BUSINESS: &str = "254110090747";

/// Webhooks per second both ways.
#[derive(Debug, Default, Clone, Copy)]
pub struct WebhookFigures {
    /// Through the router into the durable store.
    pub webhook_per_s: f64,
    /// Into an axum handler that reads the body and answers 200.
    pub raw_axum_per_s: f64,
}

#[derive(Debug, Clone, Copy)]
enum Side {
    Router,
    RawAxum,
}

struct Bench {
    http: reqwest::Client,
    router_url: String,
    raw_url: String,
    secret: Secret,
    next_id: AtomicU64,
}

impl Bench {
    /// One signed WhatsApp text webhook with a new message id.
    fn body(&self) -> (Vec<u8>, String) {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let customer = 254_700_000_000 + n % CUSTOMERS;
        let body = format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"{BUSINESS}","phone_number_id":"1"}},"contacts":[{{"profile":{{"name":"Bench"}},"wa_id":"{customer}"}}],"messages":[{{"from":"{customer}","id":"wamid.BENCH{n:020}","timestamp":"{}","type":"text","text":{{"body":"hello"}}}}]}}}}]}}]}}"#,
            Utc::now().timestamp()
        );
        let signature = sign(&self.secret, body.as_bytes());
        (body.into_bytes(), signature)
    }

    async fn post_one(&self, side: Side) -> bool {
        let (body, signature) = self.body();
        let url = match side {
            Side::Router => &self.router_url,
            Side::RawAxum => &self.raw_url,
        };
        match self
            .http
            .post(url)
            .header("x-hub-signature-256", signature)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
        {
            Ok(response) if response.status() == reqwest::StatusCode::OK => {
                response.bytes().await.is_ok()
            }
            Ok(response) => {
                eprintln!("webhook: HTTP {}", response.status());
                false
            }
            Err(error) => {
                eprintln!("webhook post failed: {error}");
                false
            }
        }
    }

    async fn round(self: &Arc<Self>, side: Side, webhooks: usize) -> f64 {
        let bench = Arc::clone(self);
        concurrent(CLIENTS, webhooks / CLIENTS, move |_, _| {
            let bench = Arc::clone(&bench);
            async move { bench.post_one(side).await }
        })
        .await
    }
}

pub async fn run(
    dir: &Path,
    webhooks: usize,
) -> Result<WebhookFigures, Box<dyn std::error::Error>> {
    progress(&format!(
        "{ROUNDS} interleaved rounds of {webhooks} signed WhatsApp webhooks through the router \
         (durable sled) and into a plain axum handler ({CLIENTS} clients)"
    ));
    let secret = Secret::new("app secret", APP_SECRET)?;
    // The router never sends here (no bot, nothing queued): the client is never used.
    let client = Client::builder(ApiKey::new("bench-unused-key")?)
        .base_url("http://127.0.0.1:9")
        .build()?;
    let store = SledConfig::new(dir.join("webhook")).open()?;
    let messenger = Messenger::new(Sessions::new(store), client, PolicyConfig::default());
    let service = WebhookService::builder(messenger)
        .whatsapp(Secret::new("verify token", "bench-verify")?, secret.clone())
        .build()?;
    let router_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let raw_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let router_url = format!("http://{}/webhooks/whatsapp", router_listener.local_addr()?);
    let raw_url = format!("http://{}/webhooks/whatsapp", raw_listener.local_addr()?);
    let raw_app = Router::new().route(
        "/webhooks/whatsapp",
        post(|body: axum::body::Bytes| async move {
            std::hint::black_box(body);
            StatusCode::OK
        }),
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let router_server = tokio::spawn(serve(
        router_listener,
        service.router(),
        ServingConfig::default(),
        until_stopped(stopped.clone()),
    ));
    let raw_server = tokio::spawn(serve(
        raw_listener,
        raw_app,
        ServingConfig::default(),
        until_stopped(stopped),
    ));
    let bench = Arc::new(Bench {
        http: reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(CLIENTS)
            .build()?,
        router_url,
        raw_url,
        secret,
        next_id: AtomicU64::new(0),
    });
    let [webhook_per_s, raw_axum_per_s] =
        best_of_interleaved(ROUNDS, [Side::Router, Side::RawAxum], |side| {
            bench.round(side, webhooks)
        })
        .await;
    let _ = stop.send(true);
    router_server.await?;
    raw_server.await?;
    service.shutdown().await?;
    Ok(WebhookFigures {
        webhook_per_s,
        raw_axum_per_s,
    })
}
