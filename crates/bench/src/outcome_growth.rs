//! What send outcomes cost: disk per send on sled after many guarded sends that name
//! their `messageId` (each stores its outcome); whether disk stays bounded when outcomes
//! keep expiring (waves of outcomes kept for a second, each written after the previous
//! one expired); and Redis memory per stored outcome.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use lipachat_api::{ApiKey, Client, ContactMessage, ContactPhone, MessageId};
use lipachat_policy::{Messenger, PolicyConfig, SendRequest};
use lipachat_redis::RedisStore;
use lipachat_redis::test_server::RedisServer;
use lipachat_session::{
    Conversation, OutboxStore, Sessions, SledStore, StoredOutcome, WindowStore,
};
use lipachat_testkit::StandInGateway;

use crate::footprint::dir_bytes;
use crate::measure::{concurrent, progress};

/// Concurrent senders.
const SENDERS: usize = 32;
/// Conversations the sends are spread over.
const CONVERSATIONS: u64 = 1_000;
/// How long the outcomes of the expiry phase are kept.
const BRIEF: TimeDelta = TimeDelta::seconds(1);
/// Waves of the expiry phase.
const WAVES: usize = 10;

/// The figures.
#[derive(Debug, Default, Clone, Copy)]
pub struct OutcomeFigures {
    /// Sends made (and outcomes written in each phase).
    pub sends: usize,
    /// sled database directory bytes per send, after the sends, a flush and a reopen.
    pub disk_bytes_per_send: f64,
    /// Expiry phase: disk bytes at the end per outcome written in all the waves (far
    /// below [`OutcomeFigures::disk_bytes_per_send`] when expired outcomes make room for
    /// new ones).
    pub wave_disk_bytes_per_written: f64,
    /// Expiry phase: disk bytes at the end per outcome still stored.
    pub wave_disk_bytes_per_live: f64,
    /// Outcomes stored after the last wave (its own, and any not pruned yet).
    pub wave_outcomes_left: usize,
    /// Redis `used_memory` per outcome stored (`None` without `redis-server`).
    pub redis_bytes_per_outcome: Option<f64>,
}

fn conversation(n: u64) -> Option<Conversation> {
    Conversation::parse(
        "254110090747",
        &(254_700_000_000 + n % CONVERSATIONS).to_string(),
    )
    .ok()
}

pub async fn run(dir: &Path, sends: usize) -> Result<OutcomeFigures, Box<dyn std::error::Error>> {
    let sends = sends.max(SENDERS);
    let path = dir.join("outcomes");
    let (per_send, text) = sled_sends(&path, sends).await?;
    let waves = sled_waves(&dir.join("outcome-waves"), sends, &text).await?;
    let redis_bytes_per_outcome = redis_outcomes(sends, &text).await?;
    Ok(OutcomeFigures {
        sends,
        disk_bytes_per_send: per_send,
        redis_bytes_per_outcome,
        ..waves
    })
}

/// `sends` guarded sends naming their own `messageId` to a stand-in gateway; the disk
/// bytes per send, and one outcome's stored text (for the other phases to write).
async fn sled_sends(
    path: &Path,
    sends: usize,
) -> Result<(f64, String), Box<dyn std::error::Error>> {
    progress(&format!(
        "outcomes: {sends} guarded sends naming their messageId, to sled ({SENDERS} tasks)"
    ));
    let gateway = StandInGateway::builder()
        .record_bodies(false)
        .start()
        .await?;
    let client = Client::builder(ApiKey::new(gateway.api_key())?)
        .base_url(&gateway.base_url())
        .build()?;
    let store = SledStore::open(path)?;
    let sessions = Sessions::new(store.clone());
    for n in 0..CONVERSATIONS {
        let chat = conversation(n).ok_or("bad conversation")?;
        if let Some(customer) = chat.phone() {
            gateway.customer_writes(chat.business, customer);
        }
        sessions.record_inbound_now(chat).await?;
    }
    let messenger = Arc::new(Messenger::new(sessions, client, PolicyConfig::default()));
    let card = ContactMessage::new(
        "Support",
        vec![ContactPhone::new("254700000001".parse()?, "Work")],
    )?;
    let first = MessageId::new();
    let rate = {
        let messenger = Arc::clone(&messenger);
        concurrent(SENDERS, sends / SENDERS, move |task, i| {
            let (messenger, card) = (Arc::clone(&messenger), card.clone());
            async move {
                let n = (i * SENDERS + task) as u64;
                let Some(chat) = conversation(n) else {
                    return false;
                };
                let id = if n == 0 { first } else { MessageId::new() };
                let request = SendRequest::contact(chat, card).message_id(id);
                match messenger.send(request).await {
                    Ok(outcome) => outcome.name() == "sent",
                    Err(error) => {
                        eprintln!("send failed: {error}");
                        false
                    }
                }
            }
        })
        .await
    };
    progress(&format!("outcomes: {rate:.0} sends/s"));
    let chat = conversation(0).ok_or("bad conversation")?;
    let text = store
        .outcome(chat, first)
        .await?
        .ok_or("the first send's outcome is missing")?;
    let sent = sends / SENDERS * SENDERS;
    if store.stored_outcomes()? != sent {
        return Err(format!(
            "{} outcomes stored for {sent} sends",
            store.stored_outcomes()?
        )
        .into());
    }
    drop(messenger);
    store.flush().await?;
    drop(store);
    drop(SledStore::open(path)?);
    Ok((dir_bytes(path) as f64 / sent as f64, text))
}

/// As many outcomes again, in [`WAVES`] waves kept for [`BRIEF`], each written once the
/// previous one expired (the writes themselves prune what expired). Disk after the first
/// and the last wave, and the outcomes left.
async fn sled_waves(
    path: &Path,
    sends: usize,
    text: &str,
) -> Result<OutcomeFigures, Box<dyn std::error::Error>> {
    let per_wave = sends / WAVES;
    progress(&format!(
        "outcomes: {WAVES} waves of {per_wave} outcomes kept for {BRIEF}, each after the last expired"
    ));
    let store = Arc::new(SledStore::open(path)?);
    let wait = BRIEF.to_std().unwrap_or_default() + Duration::from_millis(100);
    let mut bytes = 0;
    for wave in 0..WAVES {
        let started = Instant::now();
        put_outcomes(Arc::clone(&store), per_wave, text, BRIEF).await;
        store.flush().await?;
        bytes = dir_bytes(path);
        progress(&format!(
            "outcomes: wave {}: {bytes} disk bytes, {} outcomes stored",
            wave + 1,
            store.stored_outcomes()?
        ));
        if wave + 1 < WAVES {
            tokio::time::sleep(wait.saturating_sub(started.elapsed().min(wait))).await;
        }
    }
    let live = store.stored_outcomes()?;
    let written = per_wave / SENDERS * SENDERS * WAVES;
    Ok(OutcomeFigures {
        wave_disk_bytes_per_written: bytes as f64 / written as f64,
        wave_disk_bytes_per_live: bytes as f64 / live.max(1) as f64,
        wave_outcomes_left: live,
        ..OutcomeFigures::default()
    })
}

/// Writes `n` outcomes with a WhatsApp id, from [`SENDERS`] tasks.
async fn put_outcomes<S: OutboxStore>(store: Arc<S>, n: usize, text: &str, keep: TimeDelta) {
    let text: Arc<str> = Arc::from(text);
    concurrent(SENDERS, n / SENDERS, move |task, i| {
        let (store, text) = (Arc::clone(&store), Arc::clone(&text));
        async move {
            let Some(chat) = conversation((i * SENDERS + task) as u64) else {
                return false;
            };
            let id = MessageId::new();
            let outcome = StoredOutcome::new(id, &*text)
                .with_wa_id(format!("wamid.HBgM{}", id.as_uuid().simple()))
                .keep_for(keep);
            store.put_outcome(chat, outcome).await.is_ok()
        }
    })
    .await;
}

/// Redis `used_memory` per outcome, over `n` outcomes like the sends'.
async fn redis_outcomes(n: usize, text: &str) -> Result<Option<f64>, Box<dyn std::error::Error>> {
    let Some(server) = RedisServer::start() else {
        progress("no redis-server on PATH: skipping Redis memory per outcome");
        return Ok(None);
    };
    progress(&format!("outcomes: {n} outcomes into Redis"));
    let store = Arc::new(RedisStore::connect(&server.url()).await?);
    let mut connection = redis::Client::open(server.url())?
        .get_multiplexed_async_connection()
        .await?;
    let used = async |connection: &mut redis::aio::MultiplexedConnection| {
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(connection)
            .await?;
        info.lines()
            .find_map(|line| line.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| -> Box<dyn std::error::Error> { "no used_memory in INFO".into() })
    };
    let before = used(&mut connection).await?;
    put_outcomes(
        Arc::clone(&store),
        n,
        text,
        PolicyConfig::DEFAULT_OUTCOME_HORIZON,
    )
    .await;
    let after = used(&mut connection).await?;
    Ok(Some(
        after.saturating_sub(before) as f64 / (n / SENDERS * SENDERS) as f64,
    ))
}
