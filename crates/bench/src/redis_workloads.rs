//! Checks on the Redis store, against the naive gate teams write by hand: a key with a
//! 24-hour TTL set on each inbound message, and `EXISTS` to check.

use std::sync::Arc;

use lipachat_redis::RedisStore;
use lipachat_redis::test_server::RedisServer;
use lipachat_session::{Conversation, Sessions, SystemClock};
use redis::AsyncCommands;

use crate::data::Population;
use crate::measure::{best_of_interleaved, concurrent, progress};
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
                let mut ok = true;
                if let Err(error) = sessions
                    .record_inbound(conversation, population.inbound[k])
                    .await
                {
                    eprintln!("redis store record failed: {error}");
                    ok = false;
                }
                let key = naive_key(conversation);
                let set: redis::RedisResult<()> = naive.set_ex(key, 1u8, 24 * 3600).await;
                if let Err(error) = set {
                    eprintln!("naive SET EX failed: {error}");
                    ok = false;
                }
                ok
            }
        })
        .await;
    }
    progress(&format!(
        "Redis: {CHECK_ROUNDS} interleaved rounds of {checks} checks on the naive gate and on \
         the Redis store ({CHECK_TASKS} tasks)"
    ));
    let probes: Vec<Conversation> = {
        let mut rng = fastrand::Rng::with_seed(11);
        (0..checks)
            .map(|_| population.conversations[rng.usize(0..load.max(1))])
            .collect()
    };
    let per_task = checks / CHECK_TASKS;
    let gates = Arc::new(Gates {
        sessions,
        naive,
        probes,
    });
    let [naive_redis_ttl_check_per_s, redis_check_per_s] =
        best_of_interleaved(CHECK_ROUNDS, [Gate::NaiveTtlKey, Gate::Engine], |gate| {
            gates.round(gate, per_task)
        })
        .await;
    let figures = RedisFigures {
        redis_check_per_s,
        naive_redis_ttl_check_per_s,
        loaded: load,
    };
    drop(server);
    Ok(Some(figures))
}

/// Rounds of each Redis check workload; each figure is the best of its rounds.
const CHECK_ROUNDS: usize = 3;

/// The two ways to check a window on Redis.
#[derive(Debug, Clone, Copy)]
enum Gate {
    /// `EXISTS` on the key a naive gate sets with a 24-hour TTL.
    NaiveTtlKey,
    /// `Sessions::decide` on the Redis store.
    Engine,
}

/// What the check rounds share.
struct Gates {
    sessions: Arc<Sessions<RedisStore>>,
    naive: redis::aio::MultiplexedConnection,
    probes: Vec<Conversation>,
}

impl Gates {
    /// Checks per second of `per_task` checks from each of [`CHECK_TASKS`] tasks.
    async fn round(self: &Arc<Self>, gate: Gate, per_task: usize) -> f64 {
        let gates = Arc::clone(self);
        concurrent(CHECK_TASKS, per_task, move |task, i| {
            let gates = Arc::clone(&gates);
            async move {
                let conversation = gates.probes[task * per_task + i];
                let ok = match gate {
                    Gate::NaiveTtlKey => {
                        let mut naive = gates.naive.clone();
                        let exists: redis::RedisResult<bool> =
                            naive.exists(naive_key(conversation)).await;
                        exists.is_ok()
                    }
                    Gate::Engine => gates.sessions.decide(conversation).await.is_ok(),
                };
                std::hint::black_box(ok)
            }
        })
        .await
    }
}

fn naive_key(conversation: Conversation) -> String {
    format!("naive:{}:{}", conversation.business, conversation.customer)
}
