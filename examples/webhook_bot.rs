//! A minimal bot backend: receives LipaChat's inbound webhooks over HTTP on loopback,
//! refuses requests without the secret token in the URL, records each customer message
//! through the policy (which delivers anything queued) and answers with a contact card.
//!
//! The server is `lipachat::webhook::serve` with its default limits: a client gets 10 s to
//! send a request head and 10 s for its body (at most 1 MiB), one that reads none of an
//! answer for 10 s is disconnected, at most 64 requests are
//! handled at once and at most 1024 connections are open, so slow or flooding clients
//! cannot hold the bot. The gateway client keeps at most 32 requests in flight.
//!
//! ```text
//! cargo run --example webhook_bot            # a scripted demo against the stand-in gateway
//! cargo run --example webhook_bot -- --serve # keep serving on loopback until Ctrl-C
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use lipachat::api::{
    ApiKey, Client, ContactMessage, ContactPhone, MessageId, WebhookEvent, WebhookParser,
    WebhookToken,
};
use lipachat::policy::{Messenger, PolicyConfig, SendRequest, WebhookOutcome};
use lipachat::session::{Clock, InboundId, Sessions, SledStore};
use lipachat::webhook::{ServingConfig, serve};
use lipachat_testkit::{MessageKind, StandInGateway};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

struct Bot {
    messenger: Messenger<SledStore>,
    parser: WebhookParser,
    token: WebhookToken,
}

async fn webhook(
    State(bot): State<Arc<Bot>>,
    Path(token): Path<String>,
    body: Bytes,
) -> (StatusCode, String) {
    // Refuse before touching the store: a forged inbound message would open a window.
    if !bot.token.verify(&token) {
        return (StatusCode::UNAUTHORIZED, "unknown webhook token\n".into());
    }
    let now = bot.messenger.sessions().now();
    let events = match bot.parser.parse(&body, now) {
        Ok(events) => events,
        Err(error) => return (StatusCode::BAD_REQUEST, format!("{error}\n")),
    };
    for event in &events {
        match bot.messenger.on_webhook_event(event).await {
            Ok(WebhookOutcome::Inbound(report)) => {
                // An Inbound outcome comes only for a 1:1 message from a known number.
                let WebhookEvent::Inbound(message) = event else {
                    continue;
                };
                let Some(conversation) = message.conversation() else {
                    continue;
                };
                println!(
                    "  bot: {} wrote ({}); {} queued message(s) delivered",
                    message.profile_name.as_deref().unwrap_or("customer"),
                    message.kind.name(),
                    report.delivery.delivered.len()
                );
                let card = ContactMessage::new(
                    "Acme Support",
                    vec![ContactPhone::on_whatsapp(
                        "254700123456".parse().expect("a valid number"),
                        "Work",
                    )],
                )
                .expect("a valid card");
                // The reply's messageId is derived from the customer's message id, so an
                // answer made again (a redelivery after the memory forgot it, a retried
                // handler) is the same logical send and never reaches the customer twice.
                let mut reply = SendRequest::contact(conversation, card);
                if let Some(inbound) = message
                    .message_id
                    .as_deref()
                    .and_then(|id| InboundId::new(id).ok())
                {
                    reply = reply.message_id(MessageId::reply_to(&inbound));
                }
                match bot.messenger.send(reply).await {
                    Ok(outcome) => {
                        println!("  bot: answered with a contact card: {}", outcome.name())
                    }
                    Err(error) => println!("  bot: could not answer: {error}"),
                }
            }
            Ok(WebhookOutcome::Duplicate {
                first_received_at, ..
            }) => {
                println!(
                    "  bot: a redelivered copy (first received {first_received_at}): not answered again"
                )
            }
            Ok(other) => println!("  bot: {other:?}"),
            Err(error) => {
                return (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n"));
            }
        }
    }
    (StatusCode::OK, "ok\n".into())
}

/// Serves the bot on `addr` until `shutdown` completes; the task ends once requests in
/// progress have finished.
async fn start_bot(
    bot: Arc<Bot>,
    addr: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let app = Router::new()
        .route("/webhook/{token}", post(webhook))
        .with_state(bot);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let server = tokio::spawn(serve(listener, app, ServingConfig::default(), shutdown));
    Ok((local, server))
}

#[tokio::main]
async fn main() -> Result<()> {
    let keep_serving = std::env::args().any(|a| a == "--serve");
    let gateway = StandInGateway::start().await?;
    let dir = tempfile::tempdir()?;
    let client = Client::builder(ApiKey::new(gateway.api_key())?)
        .base_url(&gateway.base_url())
        .build()?;
    let sessions = Sessions::new(SledStore::open(dir.path().join("sessions.db"))?);
    let bot = Arc::new(Bot {
        messenger: Messenger::new(sessions, client, PolicyConfig::default()),
        parser: WebhookParser::new(),
        token: WebhookToken::generate(),
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, server) = start_bot(Arc::clone(&bot), "127.0.0.1:0".parse()?, async move {
        let _ = stopped.await;
    })
    .await?;
    let url = format!("http://{addr}/webhook/{}", bot.token.expose_secret());
    println!("Bot listening; set this as the inbound webhook URL: {url}");
    println!(
        "(replies go to the stand-in gateway at {})\n",
        gateway.base_url()
    );
    if keep_serving {
        tokio::signal::ctrl_c().await?;
        let _ = stop.send(());
        server.await?;
        return Ok(());
    }

    let http = reqwest::Client::new();
    let inbound = serde_json::json!({
        "messageId": "ABGGFlA5FpafAgo6EhcSk0OYPpCq",
        "from": "254712345678",
        "to": "254110090747",
        "profileName": "Jane",
        "type": "TEXT",
        "text": "Hi, who do I call about my order?"
    });

    println!("1. A forged POST without the token:");
    let forged = http
        .post(format!("http://{addr}/webhook/not-the-token"))
        .json(&inbound)
        .send()
        .await?;
    println!(
        "  -> HTTP {} ; conversations stored: {}",
        forged.status(),
        bot.messenger.sessions().count().await?
    );

    println!("2. Jane writes to the business (the gateway posts her message to the bot):");
    gateway.customer_writes("254110090747".parse()?, "254712345678".parse()?);
    let response = http.post(&url).json(&inbound).send().await?;
    println!("  -> HTTP {}", response.status());

    println!("3. The same webhook is delivered again (webhooks are retried, sometimes twice):");
    let response = http.post(&url).json(&inbound).send().await?;
    println!("  -> HTTP {}", response.status());

    println!("\nDelivered by the gateway:");
    for message in gateway.delivered() {
        if message.kind == MessageKind::Contact {
            println!(
                "  contact card \"{}\" to {} at {}",
                message.body["name"]["formattedName"].as_str().unwrap_or(""),
                message.customer,
                message.delivered_at.format("%H:%M:%S")
            );
        }
    }
    let chat = lipachat::session::Conversation::parse("254110090747", "254712345678")?;
    let state = bot.messenger.sessions().state(chat).await?;
    println!(
        "Jane's window is {} at {}",
        state.name(),
        bot.messenger.sessions().clock().now().format("%H:%M:%S")
    );
    let _ = stop.send(());
    server.await?;
    Ok(())
}
