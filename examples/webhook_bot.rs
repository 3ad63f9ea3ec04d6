//! A runnable echo bot: serves the webhook router (`lipachat::webhook`) and answers every
//! inbound text message with `echo: <the text>` through the guarded send path (default
//! policy: a closed window rejects, nothing free-form reaches the gateway).
//!
//! ```text
//! LIPACHAT_API_KEY=... LIPACHAT_WEBHOOK_TOKEN=$(openssl rand -hex 32) \
//!     cargo run --example webhook_bot
//! ```
//!
//! Configuration comes from the environment only:
//! - `LIPACHAT_API_KEY` (required), `LIPACHAT_BASE_URL` (default the LipaChat gateway);
//! - `LIPACHAT_WEBHOOK_TOKEN`: serves `POST /webhooks/lipachat/<token>`;
//! - `WHATSAPP_VERIFY_TOKEN` and `WHATSAPP_APP_SECRET` (both or neither): serve
//!   `GET`/`POST /webhooks/whatsapp`; at least one webhook route is needed;
//! - `LIPACHAT_ADMIN_TOKEN` (at least 16 characters): serves the read-only `/admin/...`
//!   routes (`session-check --remote URL` reads them);
//! - `LIPACHAT_STORE`: a sled directory (default `./sessions.db`) or `redis://…`;
//! - `LIPACHAT_BIND` (default `127.0.0.1:8080`; port 0 picks a free one);
//! - `RUST_LOG` (default `info`): the log on stderr.
//!
//! It prints one line on stdout when ready (`webhook_bot ready on http://ADDR`), exits 0 on
//! SIGTERM or SIGINT once in-flight requests and bot handlers have finished and the store
//! is flushed, and exits 2 with one line on stderr when the configuration is invalid.
//! The scripted demo that used to be this example is `cargo run --example webhook_demo`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use lipachat::api::{Client, InboundContent, WebhookToken};
use lipachat::policy::{Messenger, PolicyConfig};
use lipachat::session::{Sessions, SledStore, Store};
use lipachat::webhook::{NewMessage, Reply, Secret, ServingConfig, WebhookService, serve};
use tracing::{info, warn};

/// Where the bot keeps its windows.
enum StoreChoice {
    Sled(PathBuf),
    Redis(String),
}

/// Everything read from the environment, checked before anything starts.
struct Config {
    client: Client,
    lipachat_token: Option<WebhookToken>,
    whatsapp: Option<(Secret, Secret)>,
    admin_token: Option<Secret>,
    store: StoreChoice,
    bind: SocketAddr,
}

/// A variable's value, `None` when unset or blank.
fn var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

fn config() -> Result<Config, String> {
    let client = Client::from_env()
        .map_err(|e| format!("{e} (the gateway API key the bot replies with)"))?;
    let lipachat_token = var("LIPACHAT_WEBHOOK_TOKEN")
        .map(WebhookToken::new)
        .transpose()
        .map_err(|e| format!("LIPACHAT_WEBHOOK_TOKEN: {e}"))?;
    let whatsapp = match (var("WHATSAPP_VERIFY_TOKEN"), var("WHATSAPP_APP_SECRET")) {
        (Some(verify), Some(secret)) => Some((
            Secret::new("WhatsApp verify token", verify).map_err(|e| e.to_string())?,
            Secret::new("WhatsApp app secret", secret).map_err(|e| e.to_string())?,
        )),
        (None, None) => None,
        _ => {
            return Err(
                "WHATSAPP_VERIFY_TOKEN and WHATSAPP_APP_SECRET go together: set both or neither"
                    .to_owned(),
            );
        }
    };
    if lipachat_token.is_none() && whatsapp.is_none() {
        return Err("no webhook route: set LIPACHAT_WEBHOOK_TOKEN, or WHATSAPP_VERIFY_TOKEN and WHATSAPP_APP_SECRET".to_owned());
    }
    let admin_token = var("LIPACHAT_ADMIN_TOKEN")
        .map(Secret::admin_token)
        .transpose()
        .map_err(|e| format!("LIPACHAT_ADMIN_TOKEN: {e}"))?;
    let store = match var("LIPACHAT_STORE") {
        Some(url) if url.to_ascii_lowercase().starts_with("redis") => StoreChoice::Redis(url),
        Some(path) => StoreChoice::Sled(PathBuf::from(path)),
        None => StoreChoice::Sled(PathBuf::from("./sessions.db")),
    };
    let bind = var("LIPACHAT_BIND")
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned())
        .parse()
        .map_err(|e| format!("LIPACHAT_BIND: {e} (expected HOST:PORT, such as 127.0.0.1:8080)"))?;
    Ok(Config {
        client,
        lipachat_token,
        whatsapp,
        admin_token,
        store,
        bind,
    })
}

/// The bot: `echo: <text>` for every inbound text message.
async fn echo<S: Store>(message: NewMessage, mut reply: Reply<S>) {
    let InboundContent::Text { body } = &message.message.content else {
        return;
    };
    match reply.text(format!("echo: {body}")).await {
        Ok(outcome) => info!(outcome = outcome.name(), "echoed"),
        Err(error) => warn!(%error, "could not echo"),
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn run<S: Store>(store: S, config: Config) -> Result<(), String> {
    let messenger = Messenger::new(Sessions::new(store), config.client, PolicyConfig::default());
    let mut builder = WebhookService::builder(messenger)
        .bot(|message: NewMessage, reply: Reply<S>| echo(message, reply));
    if let Some(token) = config.lipachat_token {
        builder = builder.lipachat_token(token);
    }
    if let Some((verify, secret)) = config.whatsapp {
        builder = builder.whatsapp(verify, secret);
    }
    if let Some(admin) = config.admin_token {
        builder = builder.admin_token(admin);
    }
    let service = builder.build().map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.bind))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    println!("webhook_bot ready on http://{addr}");
    serve(
        listener,
        service.router(),
        ServingConfig::default(),
        shutdown_signal(),
    )
    .await;
    service
        .shutdown()
        .await
        .map_err(|e| format!("flushing the store at shutdown failed: {e}"))?;
    info!("stopped: requests and bot handlers finished, store flushed");
    Ok(())
}

async fn start(config: Config) -> Result<(), String> {
    match &config.store {
        StoreChoice::Sled(path) => {
            let store = SledStore::open(path)
                .map_err(|e| format!("cannot open the store {}: {e}", path.display()))?;
            run(store, config).await
        }
        StoreChoice::Redis(url) => {
            let store = lipachat_redis::RedisStore::connect(url)
                .await
                .map_err(|e| format!("cannot open the Redis store: {e}"))?;
            run(store, config).await
        }
    }
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let outcome = config().and_then(|config| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))?
            .block_on(start(config))
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", error.replace(['\n', '\r'], " "));
            ExitCode::from(2)
        }
    }
}
