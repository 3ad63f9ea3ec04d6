//! A bot's serving side on 127.0.0.1 over a durable sled store in a temp dir, replying
//! through the stand-in gateway: what the router tests share.

#![allow(dead_code, clippy::unwrap_used)] // Each test file uses part of it; tests panic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lipachat_api::{ApiKey, Client, WebhookToken};
use lipachat_policy::{Messenger, PolicyConfig};
use lipachat_session::{PhoneNumber, Sessions, SledStore, Store, WindowStore};
use lipachat_testkit::{MessageKind, StandInGateway};
use lipachat_webhook::{
    NewMessage, Reply, Secret, ServingConfig, WebhookService, WebhookServiceBuilder, serve, sign,
};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;

pub const BUSINESS: &str = "254110090747";
pub const LIPACHAT_TOKEN: &str = "lipachat-path-token-0123456789";
pub const VERIFY_TOKEN: &str = "verify-token-for-the-handshake";
pub const APP_SECRET: &str = "app-secret-that-signs-webhooks";
pub const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";

/// How long a test waits for something that happens off the request path.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub fn phone(digits: &str) -> PhoneNumber {
    digits.parse().unwrap()
}

/// The bot the tests run: answers each text with `echo: <text>` once `gate` lets it.
#[derive(Clone)]
pub struct EchoBot {
    pub gate: Arc<Semaphore>,
}

impl EchoBot {
    /// A bot that answers at once.
    pub fn open() -> Self {
        Self {
            gate: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
        }
    }

    /// A bot whose handlers wait until permits are added to the gate.
    pub fn closed() -> Self {
        Self {
            gate: Arc::new(Semaphore::new(0)),
        }
    }
}

pub async fn echo<S: Store>(gate: Arc<Semaphore>, message: NewMessage, mut reply: Reply<S>) {
    let Ok(permit) = gate.acquire().await else {
        return;
    };
    permit.forget();
    if let Some(text) = message.text() {
        let _ = reply.text(format!("echo: {text}")).await;
    }
}

/// A messenger on `store` under the default policy, sending through the stand-in gateway.
pub fn messenger_on<S: Store>(store: S, gateway: &StandInGateway) -> Messenger<S> {
    Messenger::new(
        Sessions::new(store),
        gateway_client(gateway),
        PolicyConfig::default(),
    )
}

/// Serves `router` under `serve`'s defaults on 127.0.0.1 until the test ends, holding
/// `keep` (the service behind the router, say) as long; the address.
pub async fn serve_until_the_end(router: axum::Router, keep: impl Send + 'static) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        serve(
            listener,
            router,
            ServingConfig::default(),
            std::future::pending(),
        )
        .await;
        drop(keep);
    });
    addr
}

/// A client of the stand-in gateway.
pub fn gateway_client(gateway: &StandInGateway) -> Client {
    Client::builder(ApiKey::new(gateway.api_key()).unwrap())
        .base_url(&gateway.base_url())
        .build()
        .unwrap()
}

pub struct Harness {
    pub gateway: StandInGateway,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub service: Option<WebhookService<SledStore>>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

pub struct Options {
    pub bot: Option<EchoBot>,
    pub serving: ServingConfig,
    /// Mount the router in a user's own axum router served by `axum::serve` (without
    /// this crate's `serve`; `serving` is then unused).
    pub in_users_axum_server: bool,
    pub configure:
        Box<dyn FnOnce(WebhookServiceBuilder<SledStore>) -> WebhookServiceBuilder<SledStore>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            bot: Some(EchoBot::open()),
            serving: ServingConfig::default(),
            in_users_axum_server: false,
            configure: Box::new(|builder| builder),
        }
    }
}

impl Harness {
    pub async fn start() -> Self {
        Self::with(Options::default()).await
    }

    pub async fn with(options: Options) -> Self {
        let gateway = StandInGateway::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let client = gateway_client(&gateway);
        let sessions = Sessions::new(SledStore::open(dir.path().join("sessions.db")).unwrap());
        let messenger = Messenger::new(sessions, client, PolicyConfig::default());
        let mut builder = WebhookService::builder(messenger)
            .lipachat_token(WebhookToken::new(LIPACHAT_TOKEN).unwrap())
            .whatsapp(
                Secret::new("verify token", VERIFY_TOKEN).unwrap(),
                Secret::new("app secret", APP_SECRET).unwrap(),
            )
            .admin_token(Secret::admin_token(ADMIN_TOKEN).unwrap());
        if let Some(bot) = options.bot {
            builder = builder.bot(move |message: NewMessage, reply: Reply<SledStore>| {
                echo(Arc::clone(&bot.gate), message, reply)
            });
        }
        let service = (options.configure)(builder).build().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = async {
            let _ = stopped.await;
        };
        let server = if options.in_users_axum_server {
            let app = axum::Router::new()
                .route("/", axum::routing::get(|| async { "the user's own route" }))
                .merge(service.router());
            tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stopped)
                    .await
                    .unwrap();
            })
        } else {
            tokio::spawn(serve(listener, service.router(), options.serving, stopped))
        };
        Self {
            gateway,
            dir,
            addr,
            http: reqwest::Client::new(),
            service: Some(service),
            stop: Some(stop),
            server: Some(server),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn service(&self) -> &WebhookService<SledStore> {
        self.service.as_ref().unwrap()
    }

    pub fn store(&self) -> &SledStore {
        self.service().messenger().sessions().store()
    }

    /// POSTs a LipaChat body with the right token.
    pub async fn post_lipachat(&self, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/webhooks/lipachat/{LIPACHAT_TOKEN}")))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// POSTs a WhatsApp body signed with the app secret.
    pub async fn post_whatsapp(&self, body: &[u8]) -> reqwest::Response {
        let signature = sign(&Secret::new("app secret", APP_SECRET).unwrap(), body);
        self.http
            .post(self.url("/webhooks/whatsapp"))
            .header("x-hub-signature-256", signature)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }

    /// GETs an admin route with the admin token.
    pub async fn admin(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
    }

    /// Echoes (text messages) that reached `customer` at the gateway.
    pub fn echoes_to(&self, customer: &str) -> Vec<String> {
        self.gateway
            .delivered_to(phone(customer))
            .into_iter()
            .filter(|m| m.kind == MessageKind::Text)
            .map(|m| m.body.to_string())
            .collect()
    }

    /// Waits until `customer` has `n` echoes at the gateway; returns them.
    pub async fn wait_for_echoes(&self, customer: &str, n: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let echoes = self.echoes_to(customer);
            if echoes.len() >= n || tokio::time::Instant::now() > deadline {
                return echoes;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether a window is stored for `customer` of the business.
    pub async fn recorded(&self, customer: &str) -> bool {
        let conversation = lipachat_session::Conversation::new(phone(BUSINESS), phone(customer));
        self.store().window(conversation).await.unwrap().is_some()
    }

    /// `GET /metrics`'s text.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits for one echo of `text` to reach `customer`.
    pub async fn assert_one_echo(&self, customer: &str, text: &str) {
        let echoes = self.wait_for_echoes(customer, 1).await;
        assert_eq!(echoes.len(), 1, "{echoes:?}");
        assert!(echoes[0].contains(&format!("echo: {text}")), "{echoes:?}");
    }

    /// Stops the server (graceful), then the service (handlers finish, store flushed).
    pub async fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap();
        }
        if let Some(service) = self.service.take() {
            service.shutdown().await.unwrap();
        }
    }
}

/// LipaChat's flat inbound text from `customer` to the business.
pub fn lipachat_text(id: &str, customer: &str, text: &str) -> serde_json::Value {
    serde_json::json!({
        "messageId": id,
        "from": customer,
        "to": BUSINESS,
        "profileName": "Jane",
        "type": "TEXT",
        "text": text,
    })
}

/// WhatsApp's nested webhook with one text from `customer`, sent `sent_at` (Unix seconds).
pub fn whatsapp_text(id: &str, customer: &str, text: &str, sent_at: i64) -> Vec<u8> {
    serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "102290129340398",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": BUSINESS, "phone_number_id": "106540352242922"},
                    "contacts": [{"profile": {"name": "Jane"}, "wa_id": customer}],
                    "messages": [{
                        "from": customer,
                        "id": id,
                        "timestamp": sent_at.to_string(),
                        "type": "text",
                        "text": {"body": text},
                    }],
                },
            }],
        }],
    })
    .to_string()
    .into_bytes()
}
