//! The redelivery memory: what remembering inbound message ids costs, on sled (disk bytes
//! per id) and on Redis (server memory per id), and how recording once compares with a
//! plain record, both measured in the same run.

use std::path::Path;
use std::time::Instant;

use chrono::{TimeDelta, Utc};
use lipachat_redis::RedisStore;
use lipachat_redis::test_server::RedisServer;
use lipachat_session::{
    Conversation, Durability, InboundId, SledConfig, SledStore, StoreError, WindowStore,
};

use crate::footprint::dir_bytes;
use crate::measure::progress;

/// The redelivery memory's figures.
#[derive(Debug, Default, Clone, Copy)]
pub struct RedeliveryFigures {
    /// Inbound ids remembered.
    pub ids: usize,
    /// Sled: `record_inbound_once` per second, one task, periodic flush.
    pub record_once_per_s: f64,
    /// Sled: `record_inbound` per second on the same conversations, the baseline.
    pub record_per_s: f64,
    /// Sled: disk bytes per remembered id (the store with ids minus the one without).
    pub disk_bytes_per_id: f64,
    /// Redis: server memory per remembered id (`used_memory` growth), if a server ran.
    pub redis_bytes_per_id: Option<f64>,
}

fn id(n: usize) -> Result<InboundId, Box<dyn std::error::Error>> {
    // A realistic WhatsApp id length (about 60 characters).
    Ok(InboundId::new(&format!(
        "wamid.HBgMMjU0NzEyMzQ1Njc4FQIAEhgUM0E{n:020}RkQ5QjJCRTc2MzQA"
    ))?)
}

fn conversation(n: usize) -> Result<Conversation, Box<dyn std::error::Error>> {
    Ok(Conversation::parse(
        "254110090747",
        &(254_700_000_000u64 + (n % 10_000) as u64).to_string(),
    )?)
}

async fn open(path: &Path) -> Result<SledStore, StoreError> {
    SledConfig::new(path)
        .durability(Durability::Periodic {
            interval: std::time::Duration::from_millis(500),
        })
        .open()
}

/// Records `ids` inbound messages (over 10,000 conversations) once by id into one sled
/// store and plainly into another, then the same ids into a Redis store when a server is
/// available.
pub async fn run(dir: &Path, ids: usize) -> Result<RedeliveryFigures, Box<dyn std::error::Error>> {
    progress(&format!(
        "redelivery memory: {ids} inbound ids, sled and Redis"
    ));
    let now = Utc::now();
    let until = now + TimeDelta::days(7);
    // Each record moves its conversation's time forward, so both sides write every time.
    let at = |n: usize| now - TimeDelta::days(1) + TimeDelta::milliseconds(n as i64);

    let plain_path = dir.join("redelivery-plain");
    let plain = open(&plain_path).await?;
    let started = Instant::now();
    for n in 0..ids {
        plain.record_inbound(conversation(n)?, at(n)).await?;
    }
    let record_per_s = ids as f64 / started.elapsed().as_secs_f64();
    plain.flush().await?;
    drop(plain);

    let once_path = dir.join("redelivery-once");
    let once = open(&once_path).await?;
    let started = Instant::now();
    for n in 0..ids {
        once.record_inbound_once(conversation(n)?, at(n), &id(n)?, now, until)
            .await?;
    }
    let record_once_per_s = ids as f64 / started.elapsed().as_secs_f64();
    once.flush().await?;
    drop(once);
    let disk = dir_bytes(&once_path).saturating_sub(dir_bytes(&plain_path));

    Ok(RedeliveryFigures {
        ids,
        record_once_per_s,
        record_per_s,
        disk_bytes_per_id: disk as f64 / ids as f64,
        redis_bytes_per_id: redis_bytes_per_id(ids).await?,
    })
}

/// Redis server memory per remembered id: the windows first, then the same conversations
/// recorded once by id, and the growth of `used_memory` in between.
async fn redis_bytes_per_id(ids: usize) -> Result<Option<f64>, Box<dyn std::error::Error>> {
    let Some(server) = RedisServer::start() else {
        progress("no redis-server on PATH: skipping the Redis redelivery memory");
        return Ok(None);
    };
    let store = RedisStore::connect(&server.url()).await?;
    let mut admin = redis::Client::open(server.url())?
        .get_multiplexed_async_connection()
        .await?;
    let now = Utc::now();
    for n in 0..ids.min(10_000) {
        store.record_inbound(conversation(n)?, now).await?;
    }
    let before = used_memory(&mut admin).await?;
    for n in 0..ids {
        store
            .record_inbound_once(
                conversation(n)?,
                now,
                &id(n)?,
                now,
                now + TimeDelta::days(7),
            )
            .await?;
    }
    let after = used_memory(&mut admin).await?;
    Ok(Some(after.saturating_sub(before) as f64 / ids as f64))
}

/// The server's `used_memory` (`INFO memory`).
pub(crate) async fn used_memory(
    connection: &mut redis::aio::MultiplexedConnection,
) -> Result<u64, Box<dyn std::error::Error>> {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(connection)
        .await?;
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "INFO memory has no used_memory".into())
}
