//! A scripted demo of the serving side against the stand-in gateway, no account needed:
//! the webhook router (`lipachat::webhook`) on loopback, a bot that answers each new
//! inbound message with a contact card, then a forged webhook, a real one and a
//! redelivered copy.
//!
//! ```text
//! cargo run --example webhook_demo
//! ```
//!
//! The runnable bot configured from the environment is `cargo run --example webhook_bot`.

use std::sync::Arc;

use lipachat::api::{ApiKey, Client, ContactMessage, ContactPhone, WebhookToken};
use lipachat::policy::{Messenger, PolicyConfig};
use lipachat::session::{Sessions, SledStore};
use lipachat::webhook::{NewMessage, Reply, ServingConfig, WebhookService, serve};
use lipachat_testkit::{MessageKind, StandInGateway};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The bot: a contact card for whoever writes.
async fn answer(card: Arc<ContactMessage>, message: NewMessage, mut reply: Reply<SledStore>) {
    println!(
        "  bot: {} wrote ({}); answering with a contact card",
        message
            .message
            .profile_name
            .as_deref()
            .unwrap_or("customer"),
        message.message.kind.name()
    );
    match reply.contact((*card).clone()).await {
        Ok(outcome) => println!("  bot: {}", outcome.name()),
        Err(error) => println!("  bot: could not answer: {error}"),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let gateway = StandInGateway::start().await?;
    let dir = tempfile::tempdir()?;
    let client = Client::builder(ApiKey::new(gateway.api_key())?)
        .base_url(&gateway.base_url())
        .build()?;
    let sessions = Sessions::new(SledStore::open(dir.path().join("sessions.db"))?);
    let messenger = Messenger::new(sessions, client, PolicyConfig::default());
    let token = WebhookToken::generate();
    let card = Arc::new(ContactMessage::new(
        "Acme Support",
        vec![ContactPhone::on_whatsapp("254700123456".parse()?, "Work")],
    )?);
    let service = WebhookService::builder(messenger)
        .lipachat_token(token.clone())
        .bot(move |message: NewMessage, reply: Reply<SledStore>| {
            answer(Arc::clone(&card), message, reply)
        })
        .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        service.router(),
        ServingConfig::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    let url = format!("http://{addr}/webhooks/lipachat/{}", token.expose_secret());
    println!("Bot listening on http://{addr} (replies go to the stand-in gateway)\n");

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
        .post(format!(
            "http://{addr}/webhooks/lipachat/not-the-token-0000"
        ))
        .json(&inbound)
        .send()
        .await?;
    println!("  -> HTTP {}", forged.status());

    println!("2. Jane writes to the business (the gateway posts her message to the bot):");
    gateway.customer_writes("254110090747".parse()?, "254712345678".parse()?);
    println!(
        "  -> HTTP {}",
        http.post(&url).json(&inbound).send().await?.status()
    );

    println!("3. The same webhook is delivered again (webhooks are retried):");
    println!(
        "  -> HTTP {}",
        http.post(&url).json(&inbound).send().await?.status()
    );

    let _ = stop.send(());
    server.await?;
    // The bot's handlers finish and the store is flushed.
    service.shutdown().await?;
    println!("\nDelivered by the gateway:");
    for message in gateway.delivered() {
        if message.kind == MessageKind::Contact {
            println!(
                "  contact card \"{}\" to {} (one, though the webhook came twice)",
                message.body["name"]["formattedName"].as_str().unwrap_or(""),
                message.customer
            );
        }
    }
    Ok(())
}
