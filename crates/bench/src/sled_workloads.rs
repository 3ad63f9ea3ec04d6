//! Workloads on the sled store: checks against a HashMap, records in every durability
//! mode, the closing-soon query.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use lipachat_session::{
    Clock, Conversation, Durability, Sessions, SledConfig, SledStore, SystemClock, WindowRecord,
    WindowRule,
};

use crate::data::Population;
use crate::measure::{best_of_interleaved, concurrent, progress};

/// Tasks that make checks, as a bot's request handlers would.
pub const CHECK_TASKS: usize = 8;

/// The results of the sled workloads.
#[derive(Debug, Default)]
pub struct SledFigures {
    pub record_per_s: f64,
    pub check_per_s: f64,
    pub hashmap_check_per_s: f64,
    pub durable_record_per_s_1: f64,
    pub durable_record_per_s_64: f64,
    pub flush_each_record_per_s: f64,
    pub closing_soon_query_ms: f64,
    pub closing_soon_found: usize,
}

/// A sled store flushing every 500 ms.
pub fn periodic(path: &Path) -> Result<SledStore, Box<dyn std::error::Error>> {
    Ok(SledConfig::new(path)
        .durability(Durability::Periodic {
            interval: Duration::from_millis(500),
        })
        .open()?)
}

/// Loads the population through the public record call (8 tasks), then measures checks
/// and the closing-soon query on it.
pub async fn run(
    dir: &Path,
    population: Arc<Population>,
    checks: usize,
) -> Result<SledFigures, Box<dyn std::error::Error>> {
    let mut figures = SledFigures::default();
    let store = periodic(&dir.join("checks"))?;
    let sessions = Arc::new(Sessions::new(store.clone()).with_clock(SystemClock));

    progress(&format!(
        "loading {} conversations (periodic mode, {CHECK_TASKS} tasks)",
        population.len()
    ));
    let per_task = population.len() / CHECK_TASKS;
    figures.record_per_s = {
        let (sessions, population) = (Arc::clone(&sessions), Arc::clone(&population));
        concurrent(CHECK_TASKS, per_task, move |task, i| {
            let (sessions, population) = (Arc::clone(&sessions), Arc::clone(&population));
            async move {
                let k = task * per_task + i;
                let result = sessions
                    .record_inbound(population.conversations[k], population.inbound[k])
                    .await;
                if let Err(error) = &result {
                    eprintln!("record failed: {error}");
                }
                result.is_ok()
            }
        })
        .await
    };

    progress(&format!(
        "{checks} window checks on sled and on a HashMap ({CHECK_TASKS} tasks), \
         {CHECK_ROUNDS} interleaved rounds, best of each"
    ));
    let baseline: Arc<HashMap<Conversation, WindowRecord>> = Arc::new(
        population
            .conversations
            .iter()
            .zip(&population.inbound)
            .map(|(c, t)| (*c, WindowRecord::inbound(*t)))
            .collect(),
    );
    let probes: Arc<Vec<Conversation>> = {
        let mut rng = fastrand::Rng::with_seed(7);
        Arc::new(
            (0..checks)
                .map(|_| population.conversations[rng.usize(0..population.len())])
                .collect(),
        )
    };
    let per_task = checks / CHECK_TASKS;
    let rule = WindowRule::default();
    // Interleaved rounds in rotating order, the best of each side: both sides get the
    // same number of chances at the same moments of the run (the baseline used to get
    // two rounds and the store one, which put every burst of noise on the store's side).
    let [hashmap_check_per_s, check_per_s] = best_of_interleaved(
        CHECK_ROUNDS,
        [Checker::HashMap, Checker::Store],
        |checker| {
            let probes = Arc::clone(&probes);
            let (map, sessions) = (Arc::clone(&baseline), Arc::clone(&sessions));
            concurrent(CHECK_TASKS, per_task, move |task, i| {
                let probe = probes[task * per_task + i];
                let (map, sessions) = (Arc::clone(&map), Arc::clone(&sessions));
                async move {
                    match checker {
                        Checker::HashMap => {
                            let decision = rule.decide(map.get(&probe), SystemClock.now());
                            std::hint::black_box(decision);
                            true
                        }
                        Checker::Store => {
                            let decision = sessions.decide(probe).await;
                            std::hint::black_box(decision.is_ok())
                        }
                    }
                }
            })
        },
    )
    .await;
    figures.hashmap_check_per_s = hashmap_check_per_s;
    figures.check_per_s = check_per_s;
    drop(baseline);

    progress("closing-soon query (about 1,000 conversations out of N)");
    // Inbound times are uniform over 24 h: a span of 24 h * 1000 / N holds about 1,000.
    let span = TimeDelta::milliseconds((24 * 3600 * 1000 * 1000 / population.len().max(1)) as i64);
    let mut times = Vec::new();
    for _ in 0..21 {
        let started = Instant::now();
        let found = sessions.closing_within_at(span, population.now).await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        figures.closing_soon_found = found.len();
    }
    times.sort_by(f64::total_cmp);
    figures.closing_soon_query_ms = times[times.len() / 2];
    drop(sessions);
    drop(store);

    progress(&format!(
        "durable records: 1 writer, 64 writers, and one flush per record \
         ({DURABLE_ROUNDS} interleaved rounds, best of each)"
    ));
    // Each round on fresh databases; interleaved, so a burst of noise on the shared
    // machine (or a slow moment of its disk) cannot favour one side of the ratio.
    // The order rotates from round to round, as in `best_of_interleaved`.
    for round in 0..DURABLE_ROUNDS {
        for step in 0..3 {
            match (round + step) % 3 {
                0 => {
                    let path = dir.join(format!("durable-1-{round}"));
                    let rate = durable(&path, &population, 1, 500).await?;
                    figures.durable_record_per_s_1 = figures.durable_record_per_s_1.max(rate);
                }
                1 => {
                    let path = dir.join(format!("durable-64-{round}"));
                    let rate = durable(&path, &population, 64, 250).await?;
                    figures.durable_record_per_s_64 = figures.durable_record_per_s_64.max(rate);
                }
                _ => {
                    let path = dir.join(format!("flush-each-{round}"));
                    let rate = flush_each(&path, &population, 500)?;
                    figures.flush_each_record_per_s = figures.flush_each_record_per_s.max(rate);
                }
            }
        }
    }
    Ok(figures)
}

/// Rounds of each check workload; each figure is the best of its rounds.
const CHECK_ROUNDS: usize = 3;

/// One side of the check comparison.
#[derive(Debug, Clone, Copy)]
enum Checker {
    /// The same decision over a `HashMap` of the same data, in the same process.
    HashMap,
    /// `Sessions::decide` over the sled store.
    Store,
}

/// Rounds of the durable-record workloads; each figure is the best of its rounds.
const DURABLE_ROUNDS: usize = 3;

async fn durable(
    path: &Path,
    population: &Arc<Population>,
    writers: usize,
    per_writer: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let store = Arc::new(SledStore::open(path)?);
    let population = Arc::clone(population);
    let rate = concurrent(writers, per_writer, move |task, i| {
        let (store, population) = (Arc::clone(&store), Arc::clone(&population));
        async move {
            let k = (task * per_writer + i) % population.len();
            let result = lipachat_session::WindowStore::record_inbound(
                &*store,
                population.conversations[k],
                Utc::now(),
            )
            .await;
            if let Err(error) = &result {
                eprintln!("durable record failed: {error}");
            }
            result.is_ok()
        }
    })
    .await;
    Ok(rate)
}

/// The naive durable baseline: one sled insert and one flush per record, in sequence.
fn flush_each(
    path: &Path,
    population: &Population,
    records: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let db = sled::open(path)?;
    let started = Instant::now();
    for k in 0..records {
        let conversation = population.conversations[k % population.len()];
        db.insert(
            conversation.to_key(),
            &Utc::now().timestamp_millis().to_be_bytes(),
        )?;
        db.flush()?;
    }
    Ok(records as f64 / started.elapsed().as_secs_f64())
}
