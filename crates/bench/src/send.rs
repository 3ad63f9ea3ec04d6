//! The guarded send (policy + store + client) against raw reqwest posting the same body to
//! the same stand-in gateway on loopback.
//!
//! The three workloads run in interleaved rounds (raw, guarded, guarded with a caller's
//! `messageId`, then again), and each figure is the best of its rounds, so a burst of
//! noise on the shared machine cannot favour one side: every side gets the same number
//! of chances at the same moments of the run. The stand-in forgets its history before
//! each round: it remembers every `messageId` it answered (to deduplicate), and a
//! ledger that grew by every earlier round would make later rounds slower than the
//! first, whichever side they measure.

use std::path::Path;
use std::sync::Arc;

use lipachat_api::{
    ApiKey, Client, ContactMessage, ContactPhone, FreeFormMessage, MessageId, free_form_body,
};
use lipachat_policy::{Messenger, PolicyConfig, SendRequest};
use lipachat_session::{Conversation, Sessions, SledStore};
use lipachat_testkit::StandInGateway;

use crate::measure::{best_of_interleaved, concurrent, progress};

/// Concurrent senders, as a busy bot's handlers.
const SENDERS: usize = 32;

/// Rounds of each workload; each figure is the best of its rounds.
const ROUNDS: usize = 3;

/// Sends per second both ways.
#[derive(Debug, Default, Clone, Copy)]
pub struct SendFigures {
    pub send_per_s: f64,
    pub raw_post_per_s: f64,
    /// Guarded sends that name their own `messageId`, so each stores its outcome for
    /// idempotent retries.
    pub send_with_id_per_s: f64,
}

/// One of the three ways to send.
#[derive(Debug, Clone, Copy)]
enum Workload {
    /// reqwest posting the body, reading the answer without checking it.
    Raw,
    /// `Messenger::send_contact` with the default policy and a `messageId` it makes.
    Guarded,
    /// `Messenger::send` with a caller-given `messageId`, whose outcome is stored.
    GuardedWithId,
}

/// Everything a round needs, shared by the tasks.
struct Bench {
    gateway: StandInGateway,
    conversations: Vec<Conversation>,
    messenger: Messenger<SledStore>,
    card: ContactMessage,
    message: FreeFormMessage,
    /// The baseline's client, set up as ours is for loopback (no proxy), and the URL and
    /// key header it posts with, each parsed once, as ours are.
    raw: reqwest::Client,
    url: reqwest::Url,
    raw_key: reqwest::header::HeaderValue,
}

impl Bench {
    /// One send of `workload` to the conversation of task `task`; whether it succeeded.
    async fn send_one(&self, workload: Workload, task: usize) -> bool {
        let conversation = self.conversations[task % self.conversations.len()];
        match workload {
            Workload::Raw => {
                let Ok(body) = free_form_body(conversation, MessageId::new(), &self.message) else {
                    eprintln!("raw post: {conversation} has no phone number");
                    return false;
                };
                let sent = self
                    .raw
                    .post(self.url.clone())
                    .header("apiKey", self.raw_key.clone())
                    .json(&body)
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status().is_success() => {
                        response.bytes().await.is_ok()
                    }
                    Ok(response) => {
                        eprintln!("raw post: HTTP {}", response.status());
                        false
                    }
                    Err(error) => {
                        eprintln!("raw post failed: {error}");
                        false
                    }
                }
            }
            Workload::Guarded | Workload::GuardedWithId => {
                let mut request = SendRequest::contact(conversation, self.card.clone());
                if matches!(workload, Workload::GuardedWithId) {
                    request = request.message_id(MessageId::new());
                }
                match self.messenger.send(request).await {
                    Ok(outcome) if outcome.name() == "sent" => true,
                    Ok(outcome) => {
                        eprintln!("guarded send: {}", outcome.name());
                        false
                    }
                    Err(error) => {
                        eprintln!("guarded send failed: {error}");
                        false
                    }
                }
            }
        }
    }

    /// Sends per second of `sends` sends of `workload` from [`SENDERS`] tasks, to a
    /// stand-in that starts the round with no history, as in the first round.
    async fn round(self: &Arc<Self>, workload: Workload, sends: usize) -> f64 {
        self.gateway.forget_history();
        let bench = Arc::clone(self);
        concurrent(SENDERS, sends / SENDERS, move |task, _| {
            let bench = Arc::clone(&bench);
            async move { bench.send_one(workload, task).await }
        })
        .await
    }
}

pub async fn run(dir: &Path, sends: usize) -> Result<SendFigures, Box<dyn std::error::Error>> {
    progress(&format!(
        "{ROUNDS} interleaved rounds of {sends} raw posts, {sends} guarded sends and {sends} \
         guarded sends with a caller's messageId to the stand-in gateway ({SENDERS} tasks)"
    ));
    let gateway = StandInGateway::builder()
        .record_bodies(false)
        .start()
        .await?;
    let conversations: Vec<Conversation> = (0..SENDERS as u64)
        .filter_map(|i| {
            Conversation::parse("254110090747", &(254_700_000_000 + i).to_string()).ok()
        })
        .collect();
    let client = Client::builder(ApiKey::new(gateway.api_key())?)
        .base_url(&gateway.base_url())
        .build()?;
    let sessions = Sessions::new(SledStore::open(dir.join("send"))?);
    for chat in &conversations {
        if let Some(customer) = chat.phone() {
            gateway.customer_writes(chat.business, customer);
        }
        sessions.record_inbound_now(*chat).await?;
    }
    let card = ContactMessage::new(
        "Support",
        vec![ContactPhone::new("254700000001".parse()?, "Work")],
    )?;
    let url = reqwest::Url::parse(&format!("{}/api/v1/whatsapp/contact", gateway.base_url()))?;
    let raw_key = reqwest::header::HeaderValue::from_str(gateway.api_key())?;
    let bench = Arc::new(Bench {
        gateway,
        conversations,
        messenger: Messenger::new(sessions, client, PolicyConfig::default()),
        message: FreeFormMessage::Contact(card.clone()),
        card,
        raw: reqwest::Client::builder().no_proxy().build()?,
        url,
        raw_key,
    });
    let [raw_post_per_s, send_per_s, send_with_id_per_s] = best_of_interleaved(
        ROUNDS,
        [Workload::Raw, Workload::Guarded, Workload::GuardedWithId],
        |workload| bench.round(workload, sends),
    )
    .await;
    let figures = SendFigures {
        send_per_s,
        raw_post_per_s,
        send_with_id_per_s,
    };
    Ok(figures)
}
