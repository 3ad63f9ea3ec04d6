//! Checks on the Redis store, against the naive gate teams write by hand: a key with a
//! 24-hour TTL set on each inbound message, and `EXISTS` to check; the same store on a
//! Redis Cluster of three primaries; and the server memory one conversation takes.

use std::sync::Arc;

use lipachat_redis::RedisStore;
use lipachat_redis::test_server::{RedisCluster, RedisServer};
use lipachat_session::{Conversation, Sessions, SystemClock};
use redis::AsyncCommands;

use crate::data::Population;
use crate::measure::{best_of_interleaved, concurrent, progress};
use crate::redelivery::used_memory;
use crate::sled_workloads::CHECK_TASKS;

/// Checks per second on Redis, all ways, and memory per conversation.
#[derive(Debug, Default, Clone, Copy)]
pub struct RedisFigures {
    pub redis_check_per_s: f64,
    pub naive_redis_ttl_check_per_s: f64,
    /// Window checks on a cluster of three primaries (`None` without `redis-cli`).
    pub redis_cluster_check_per_s: Option<f64>,
    /// `used_memory` growth per conversation loaded into the store (window record and
    /// closing-soon index entry).
    pub redis_bytes_per_conversation: f64,
    /// Inbound records per second while loading one server (`appendfsync always`).
    pub redis_record_per_s: f64,
    /// The same on the cluster (`None` without `redis-cli`).
    pub redis_cluster_record_per_s: Option<f64>,
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
    let mut admin = naive.clone();
    let before = used_memory(&mut admin).await?;
    let redis_record_per_s = load_store(&sessions, population, load).await;
    // Each task loads `load / CHECK_TASKS`: that many in all.
    let loaded = (load / CHECK_TASKS * CHECK_TASKS).max(1);
    let redis_bytes_per_conversation =
        used_memory(&mut admin).await?.saturating_sub(before) as f64 / loaded as f64;
    load_naive(&naive, population, load).await;
    // A cluster of three primaries, loaded the same way.
    let cluster = RedisCluster::start(3, 0, None);
    let mut redis_cluster_record_per_s = None;
    let cluster_sessions = match &cluster {
        Some(cluster) => {
            let store = RedisStore::connect(&cluster.url()).await?;
            let keys = store.keys().clone();
            let sessions = Arc::new(Sessions::new(store).with_clock(SystemClock));
            progress(&format!(
                "Redis Cluster (3 primaries): loading {load} conversations"
            ));
            redis_cluster_record_per_s = Some(load_store(&sessions, population, load).await);
            let mut per_business = std::collections::BTreeMap::new();
            for conversation in &population.conversations[..load] {
                *per_business.entry(conversation.business).or_insert(0usize) += 1;
            }
            let mut per_primary = std::collections::BTreeMap::new();
            for (business, conversations) in per_business {
                let owner = cluster.owner_of_key(&keys.window(business));
                *per_primary.entry(owner).or_insert(0usize) += conversations;
            }
            progress(&format!(
                "Redis Cluster: conversations per primary {:?}",
                per_primary.values().collect::<Vec<_>>()
            ));
            Some(sessions)
        }
        None => {
            progress("no redis-cli on PATH: skipping the Redis Cluster workload");
            None
        }
    };
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
    let has_cluster = cluster_sessions.is_some();
    let gates = Arc::new(Gates {
        sessions,
        cluster: cluster_sessions,
        naive,
        probes,
    });
    let [
        naive_redis_ttl_check_per_s,
        redis_check_per_s,
        cluster_check_per_s,
    ] = best_of_interleaved(
        CHECK_ROUNDS,
        [Gate::NaiveTtlKey, Gate::Engine, Gate::ClusterEngine],
        |gate| gates.round(gate, per_task),
    )
    .await;
    let figures = RedisFigures {
        redis_check_per_s,
        naive_redis_ttl_check_per_s,
        redis_cluster_check_per_s: has_cluster.then_some(cluster_check_per_s),
        redis_bytes_per_conversation,
        redis_record_per_s,
        redis_cluster_record_per_s,
        loaded: load,
    };
    drop(cluster);
    drop(server);
    Ok(Some(figures))
}

/// Records the first `load` conversations of `population` through `sessions`; answers
/// records per second.
async fn load_store(
    sessions: &Arc<Sessions<RedisStore>>,
    population: &Arc<Population>,
    load: usize,
) -> f64 {
    let per_task = load / CHECK_TASKS;
    let (sessions, population) = (Arc::clone(sessions), Arc::clone(population));
    concurrent(CHECK_TASKS, per_task, move |task, i| {
        let (sessions, population) = (Arc::clone(&sessions), Arc::clone(&population));
        async move {
            let k = task * per_task + i;
            match sessions
                .record_inbound(population.conversations[k], population.inbound[k])
                .await
            {
                Ok(_) => true,
                Err(error) => {
                    eprintln!("redis store record failed: {error}");
                    false
                }
            }
        }
    })
    .await
}

/// Sets the naive gate's key of the first `load` conversations of `population`.
async fn load_naive(
    naive: &redis::aio::MultiplexedConnection,
    population: &Arc<Population>,
    load: usize,
) {
    let per_task = load / CHECK_TASKS;
    let (naive, population) = (naive.clone(), Arc::clone(population));
    concurrent(CHECK_TASKS, per_task, move |task, i| {
        let (mut naive, population) = (naive.clone(), Arc::clone(&population));
        async move {
            let key = naive_key(population.conversations[task * per_task + i]);
            let set: redis::RedisResult<()> = naive.set_ex(key, 1u8, 24 * 3600).await;
            if let Err(error) = &set {
                eprintln!("naive SET EX failed: {error}");
            }
            set.is_ok()
        }
    })
    .await;
}

/// Rounds of each Redis check workload; each figure is the best of its rounds.
const CHECK_ROUNDS: usize = 3;

/// The ways to check a window on Redis.
#[derive(Debug, Clone, Copy)]
enum Gate {
    /// `EXISTS` on the key a naive gate sets with a 24-hour TTL.
    NaiveTtlKey,
    /// `Sessions::decide` on the Redis store.
    Engine,
    /// `Sessions::decide` on the Redis store over a cluster of three primaries.
    ClusterEngine,
}

/// What the check rounds share.
struct Gates {
    sessions: Arc<Sessions<RedisStore>>,
    cluster: Option<Arc<Sessions<RedisStore>>>,
    naive: redis::aio::MultiplexedConnection,
    probes: Vec<Conversation>,
}

impl Gates {
    /// Checks per second of `per_task` checks from each of [`CHECK_TASKS`] tasks.
    async fn round(self: &Arc<Self>, gate: Gate, per_task: usize) -> f64 {
        if matches!(gate, Gate::ClusterEngine) && self.cluster.is_none() {
            return 0.0;
        }
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
                    Gate::ClusterEngine => match &gates.cluster {
                        Some(cluster) => cluster.decide(conversation).await.is_ok(),
                        None => false,
                    },
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
