//! The guarded send (policy + store + client) against raw reqwest posting the same body to
//! the same stand-in gateway on loopback.

use std::path::Path;
use std::sync::Arc;

use lipachat_api::{
    ApiKey, Client, ContactMessage, ContactPhone, FreeFormMessage, MessageId, free_form_body,
};
use lipachat_policy::{Messenger, PolicyConfig, SendRequest};
use lipachat_session::{Conversation, Sessions, SledStore};
use lipachat_testkit::StandInGateway;

use crate::measure::{concurrent, progress};

/// Concurrent senders, as a busy bot's handlers.
const SENDERS: usize = 32;

/// Sends per second both ways.
#[derive(Debug, Default, Clone, Copy)]
pub struct SendFigures {
    pub send_per_s: f64,
    pub raw_post_per_s: f64,
    /// Guarded sends that name their own `messageId`, so each stores its outcome for
    /// idempotent retries.
    pub send_with_id_per_s: f64,
}

pub async fn run(dir: &Path, sends: usize) -> Result<SendFigures, Box<dyn std::error::Error>> {
    progress(&format!(
        "{sends} guarded sends and {sends} raw posts to the stand-in gateway ({SENDERS} tasks)"
    ));
    let gateway = Arc::new(
        StandInGateway::builder()
            .record_bodies(false)
            .start()
            .await?,
    );
    let conversations: Arc<Vec<Conversation>> = Arc::new(
        (0..SENDERS as u64)
            .filter_map(|i| {
                Conversation::parse("254110090747", &(254_700_000_000 + i).to_string()).ok()
            })
            .collect(),
    );
    let client = Client::builder(ApiKey::new(gateway.api_key())?)
        .base_url(&gateway.base_url())
        .build()?;
    let sessions = Sessions::new(SledStore::open(dir.join("send"))?);
    for chat in conversations.iter() {
        gateway.customer_writes(chat.business, chat.customer);
        sessions.record_inbound_now(*chat).await?;
    }
    let messenger = Arc::new(Messenger::new(sessions, client, PolicyConfig::default()));
    let card = ContactMessage::new(
        "Support",
        vec![ContactPhone::new("254700000001".parse()?, "Work")],
    )?;
    let message = Arc::new(FreeFormMessage::Contact(card.clone()));
    let raw = reqwest::Client::new();
    let url = format!("{}/api/v1/whatsapp/contact", gateway.base_url());
    let per_task = sends / SENDERS;

    let raw_run = || {
        let (raw, url, gateway, conversations, message) = (
            raw.clone(),
            url.clone(),
            Arc::clone(&gateway),
            Arc::clone(&conversations),
            Arc::clone(&message),
        );
        concurrent(SENDERS, per_task, move |task, _| {
            let (raw, url, gateway, conversations, message) = (
                raw.clone(),
                url.clone(),
                Arc::clone(&gateway),
                Arc::clone(&conversations),
                Arc::clone(&message),
            );
            async move {
                let body = free_form_body(conversations[task], MessageId::new(), &message);
                let sent = raw
                    .post(&url)
                    .header("apiKey", gateway.api_key())
                    .json(&body)
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.bytes().await;
                    }
                    Ok(response) => eprintln!("raw post: HTTP {}", response.status()),
                    Err(error) => eprintln!("raw post failed: {error}"),
                }
            }
        })
    };
    let raw_first = raw_run().await;
    let send_per_s = {
        let (messenger, conversations, card) = (
            Arc::clone(&messenger),
            Arc::clone(&conversations),
            card.clone(),
        );
        concurrent(SENDERS, per_task, move |task, _| {
            let (messenger, conversations, card) = (
                Arc::clone(&messenger),
                Arc::clone(&conversations),
                card.clone(),
            );
            async move {
                match messenger.send_contact(conversations[task], card).await {
                    Ok(outcome) if outcome.name() == "sent" => {}
                    Ok(outcome) => eprintln!("guarded send: {}", outcome.name()),
                    Err(error) => eprintln!("guarded send failed: {error}"),
                }
            }
        })
        .await
    };
    let raw_second = raw_run().await;
    let send_with_id_per_s = {
        let (messenger, conversations, card) = (
            Arc::clone(&messenger),
            Arc::clone(&conversations),
            card.clone(),
        );
        concurrent(SENDERS, per_task, move |task, _| {
            let (messenger, conversations, card) = (
                Arc::clone(&messenger),
                Arc::clone(&conversations),
                card.clone(),
            );
            async move {
                let request =
                    SendRequest::contact(conversations[task], card).message_id(MessageId::new());
                match messenger.send(request).await {
                    Ok(outcome) if outcome.name() == "sent" => {}
                    Ok(outcome) => eprintln!("guarded send: {}", outcome.name()),
                    Err(error) => eprintln!("guarded send failed: {error}"),
                }
            }
        })
        .await
    };
    Ok(SendFigures {
        send_per_s,
        raw_post_per_s: raw_first.max(raw_second),
        send_with_id_per_s,
    })
}
