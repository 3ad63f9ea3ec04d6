//! Checks on the Redis store, against the naive gate teams write by hand: a key with a
//! 24-hour TTL set on each inbound message, and `EXISTS` to check.

use std::sync::Arc;

use lipachat_redis::RedisStore;
use lipachat_redis::test_server::RedisServer;
use lipachat_session::{Conversation, Sessions, SystemClock};
use redis::AsyncCommands;

use crate::data::Population;
use crate::measure::{concurrent, progress};
use crate::sled_workloads::CHECK_TASKS;

/// Checks per second on Redis, both ways.
#[derive(Debug, Default, Clone, Copy)]
pub struct RedisFigures {
    pub redis_check_per_s: f64,
    pub naive_redis_ttl_check_per_s: f64,
    pub loaded: usize,
}

/// `None` when no `redis-server` is on PATH.
pub async fn run(
    population: &Arc<Population>,
    load: usize,
    checks: usize,
) -> Result<Option<RedisFigures>, Box<dyn std::error::Error>> {
    let Some(server) = RedisServer::start() else {
        progress("no redis-server on PATH: skipping the Redis workloads");
        return Ok(None);
    };
    let load = load.min(population.len());
    progress(&format!(
        "Redis: loading {load} conversations into the Redis store and the naive TTL gate"
    ));
    let store = RedisStore::connect(&server.url()).await?;
    let sessions = Arc::new(Sessions::new(store).with_clock(SystemClock));
    let client = redis::Client::open(server.url())?;
    let naive = client.get_multiplexed_async_connection().await?;
    let per_task = load / CHECK_TASKS;
    {
        let (sessions, population, naive) =
            (Arc::clone(&sessions), Arc::clone(population), naive.clone());
        concurrent(CHECK_TASKS, per_task, move |task, i| {
            let (sessions, population, mut naive) = (
                Arc::clone(&sessions),
                Arc::clone(&population),
                naive.clone(),
            );
            async move {
                let k = task * per_task + i;
                let conversation = population.conversations[k];
                if let Err(error) = sessions
                    .record_inbound(conversation, population.inbound[k])
                    .await
                {
                    eprintln!("redis store record failed: {error}");
                }
                let key = naive_key(conversation);
                let set: redis::RedisResult<()> = naive.set_ex(key, 1u8, 24 * 3600).await;
                if let Err(error) = set {
                    eprintln!("naive SET EX failed: {error}");
                }
            }
        })
        .await;
    }
    progress(&format!(
        "Redis: {checks} checks on the Redis store and on the naive gate ({CHECK_TASKS} tasks)"
    ));
    let probes: Arc<Vec<Conversation>> = {
        let mut rng = fastrand::Rng::with_seed(11);
        Arc::new(
            (0..checks)
                .map(|_| population.conversations[rng.usize(0..load.max(1))])
                .collect(),
        )
    };
    let per_task = checks / CHECK_TASKS;
    let naive_run = || {
        let (probes, naive) = (Arc::clone(&probes), naive.clone());
        concurrent(CHECK_TASKS, per_task, move |task, i| {
            let (probes, mut naive) = (Arc::clone(&probes), naive.clone());
            async move {
                let exists: redis::RedisResult<bool> =
                    naive.exists(naive_key(probes[task * per_task + i])).await;
                std::hint::black_box(exists.is_ok());
            }
        })
    };
    let naive_first = naive_run().await;
    let redis_check_per_s = {
        let (sessions, probes) = (Arc::clone(&sessions), Arc::clone(&probes));
        concurrent(CHECK_TASKS, per_task, move |task, i| {
            let (sessions, probes) = (Arc::clone(&sessions), Arc::clone(&probes));
            async move {
                let decision = sessions.decide(probes[task * per_task + i]).await;
                std::hint::black_box(decision.is_ok());
            }
        })
        .await
    };
    let naive_second = naive_run().await;
    drop(server);
    Ok(Some(RedisFigures {
        redis_check_per_s,
        naive_redis_ttl_check_per_s: naive_first.max(naive_second),
        loaded: load,
    }))
}

fn naive_key(conversation: Conversation) -> String {
    format!("naive:{}:{}", conversation.business, conversation.customer)
}
