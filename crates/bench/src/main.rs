//! One benchmark of the session engine, side by side with the alternatives, on this machine:
//!
//! ```text
//! cargo run --release -p lipachat-bench -- --conversations 1000000
//! cargo run --release -p lipachat-bench -- --only outcomes   # what send outcomes cost
//! cargo run --release -p lipachat-bench -- --svg docs/performance.svg   # and draw the chart
//! ```
//!
//! It prints a readable table and ends with one JSON line of figures (null where a workload
//! could not run, for example without `redis-server` on PATH). Every workload talks only to
//! 127.0.0.1. See `docs/performance.md` for the latest figures and what they mean.

// The figures' `json!` object has more entries than the default limit of 128 lets the
// macro expand.
#![recursion_limit = "256"]

mod bsuid_mix;
mod chart;
mod data;
mod figures;
mod footprint;
mod measure;
mod outcome_growth;
mod redelivery;
mod redis_workloads;
mod send;
mod sled_workloads;
mod webhook;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use chrono::Utc;
use clap::{Parser, ValueEnum};
use serde_json::{Value, json};

use crate::figures::FIGURES;

/// Benchmark the session engine against a HashMap, a naive Redis TTL gate and raw HTTP.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// How many conversations to load.
    #[arg(long, default_value_t = 1_000_000)]
    conversations: usize,
    /// How many window checks per store (sled and HashMap).
    #[arg(long, default_value_t = 4_000_000)]
    checks: usize,
    /// How many sends in each round of each send workload (three rounds each).
    #[arg(long, default_value_t = 40_000)]
    sends: usize,
    /// How many conversations to load into Redis (at most --conversations).
    #[arg(long, default_value_t = 200_000)]
    redis_conversations: usize,
    /// How many checks on each Redis gate.
    #[arg(long, default_value_t = 400_000)]
    redis_checks: usize,
    /// How many guarded sends naming their messageId (each stores its outcome) for the
    /// disk-per-send figures.
    #[arg(long, default_value_t = 100_000)]
    outcome_sends: usize,
    /// How many inbound ids the redelivery-memory workload remembers.
    #[arg(long, default_value_t = 100_000)]
    seen_ids: usize,
    /// How many signed WhatsApp webhooks in each round of each webhook workload (three
    /// rounds each).
    #[arg(long, default_value_t = 20_000)]
    webhooks: usize,
    /// Run only these workloads.
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// Also write a chart of the figures against their targets to this file, as SVG
    /// (docs/performance.svg is made this way).
    #[arg(long, value_name = "PATH")]
    svg: Option<PathBuf>,
    /// With --svg: run nothing, and draw the chart from an earlier run's output saved in
    /// this file (its last line, the JSON object of figures).
    #[arg(long, value_name = "FILE", requires = "svg")]
    from_json: Option<PathBuf>,
    /// Internal: run as the footprint child in this directory.
    #[arg(long, hide = true)]
    footprint_child: Option<PathBuf>,
}

/// A part of the benchmark that can run alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Only {
    /// What send outcomes cost: sled disk per send, after expiry, Redis memory.
    Outcomes,
    /// What the redelivery memory costs: records by id against plain records, sled disk
    /// and Redis memory per remembered id.
    Redelivery,
    /// Window checks when a tenth of the conversations are keyed by a business-scoped
    /// user id (a store handle), beside phone-keyed checks in the same store.
    Bsuid,
    /// Signed WhatsApp webhooks through the router into a durable sled store, beside a
    /// plain axum handler reading the same body (32 clients on loopback).
    Webhook,
    /// The Redis workloads only: checks on one server, on a three-primary cluster and on
    /// the naive TTL gate, and memory per conversation.
    Redis,
    /// Guarded sends (with and without a caller's messageId) against raw posts to the
    /// stand-in gateway: `send_vs_raw` and `send_with_message_id_vs_raw` alone.
    Send,
    /// The sled store's window checks against a HashMap, its records, and its disk and
    /// memory per conversation: `check_vs_hashmap` and the footprint alone.
    Checks,
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn rounded(value: Option<f64>, places: i32) -> Value {
    value.map_or(Value::Null, |v| {
        let scale = 10f64.powi(places);
        json!((v * scale).round() / scale)
    })
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(dir) = &args.footprint_child {
        return footprint::child(dir, args.conversations).await;
    }
    if let (Some(saved), Some(path)) = (&args.from_json, &args.svg) {
        return write_chart(path, &read_figures(saved)?);
    }
    let n = args.conversations.max(1_000);
    let dir = tempfile::tempdir()?;
    let everything = args.only.is_none();
    let checks = everything || args.only == Some(Only::Checks);
    let (sled, footprint, redis) = if checks {
        measure::progress(&format!("generating {n} conversations"));
        let population = Arc::new(data::Population::new(n, Utc::now()));
        let sled = sled_workloads::run(dir.path(), Arc::clone(&population), args.checks).await?;
        let footprint = footprint::measure(dir.path(), n)?;
        let redis = if everything {
            redis_workloads::run(&population, args.redis_conversations, args.redis_checks).await?
        } else {
            None
        };
        (Some(sled), Some(footprint), redis)
    } else if args.only == Some(Only::Redis) {
        measure::progress(&format!("generating {n} conversations"));
        let population = Arc::new(data::Population::new(n, Utc::now()));
        let redis =
            redis_workloads::run(&population, args.redis_conversations, args.redis_checks).await?;
        (None, None, redis)
    } else {
        (None, None, None)
    };
    let send = match args.only {
        None | Some(Only::Send) => Some(send::run(dir.path(), args.sends).await?),
        Some(_) => None,
    };
    let outcomes = match args.only {
        None | Some(Only::Outcomes) => {
            Some(outcome_growth::run(dir.path(), args.outcome_sends).await?)
        }
        Some(_) => None,
    };
    let seen = match args.only {
        None | Some(Only::Redelivery) => {
            Some(redelivery::run(dir.path(), args.seen_ids.max(1)).await?)
        }
        Some(_) => None,
    };
    let seen_f = |pick: fn(&redelivery::RedeliveryFigures) -> f64| seen.as_ref().map(pick);
    let mix = match args.only {
        None | Some(Only::Bsuid) => {
            let population = data::Population::new(n, Utc::now());
            Some(bsuid_mix::run(dir.path(), &population, args.checks).await?)
        }
        Some(_) => None,
    };
    let mix_f = |pick: fn(&bsuid_mix::MixFigures) -> f64| mix.as_ref().map(pick);
    let hooks = match args.only {
        None | Some(Only::Webhook) => Some(webhook::run(dir.path(), args.webhooks.max(32)).await?),
        Some(_) => None,
    };
    let hooks_f = |pick: fn(&webhook::WebhookFigures) -> f64| hooks.as_ref().map(pick);

    let sled_f = |pick: fn(&sled_workloads::SledFigures) -> f64| sled.as_ref().map(pick);
    let send_f = |pick: fn(&send::SendFigures) -> f64| send.as_ref().map(pick);
    let per_conversation =
        |pick: fn(&footprint::Footprint) -> u64| footprint.map(|f| pick(&f) as f64 / n as f64);
    let redis_check = redis.map(|r| r.redis_check_per_s);
    let naive_check = redis.map(|r| r.naive_redis_ttl_check_per_s);
    let redis_cluster_check = redis.and_then(|r| r.redis_cluster_check_per_s);
    let check = sled_f(|s| s.check_per_s);
    let raw_post = send_f(|s| s.raw_post_per_s);
    let figures = json!({
        "allocator": ALLOCATOR_NAME,
        "conversations": if checks { json!(n) } else { Value::Null },
        "check_per_s": rounded(check, 0),
        "hashmap_check_per_s": rounded(sled_f(|s| s.hashmap_check_per_s), 0),
        "check_vs_hashmap": rounded(ratio(check, sled_f(|s| s.hashmap_check_per_s)), 3),
        "record_per_s": rounded(sled_f(|s| s.record_per_s), 0),
        "durable_record_per_s_1": rounded(sled_f(|s| s.durable_record_per_s_1), 0),
        "durable_record_per_s_64": rounded(sled_f(|s| s.durable_record_per_s_64), 0),
        "flush_each_record_per_s": rounded(sled_f(|s| s.flush_each_record_per_s), 0),
        "group_commit_speedup": rounded(ratio(sled_f(|s| s.durable_record_per_s_64), sled_f(|s| s.flush_each_record_per_s)), 2),
        "closing_soon_query_ms": rounded(sled_f(|s| s.closing_soon_query_ms), 3),
        "disk_bytes_per_conversation": rounded(per_conversation(|f| f.disk_bytes), 1),
        "rss_bytes_per_conversation": rounded(per_conversation(|f| f.rss_bytes), 1),
        "send_per_s": rounded(send_f(|s| s.send_per_s), 0),
        "raw_post_per_s": rounded(raw_post, 0),
        "send_vs_raw": rounded(ratio(send_f(|s| s.send_per_s), raw_post), 3),
        "send_with_message_id_per_s": rounded(send_f(|s| s.send_with_id_per_s), 0),
        "send_with_message_id_vs_raw": rounded(ratio(send_f(|s| s.send_with_id_per_s), raw_post), 3),
        "redis_check_per_s": rounded(redis_check, 0),
        "naive_redis_ttl_check_per_s": rounded(naive_check, 0),
        "check_vs_redis": rounded(ratio(check, naive_check), 2),
        "redis_engine_vs_naive": rounded(ratio(redis_check, naive_check), 3),
        "redis_cluster_check_per_s": rounded(redis_cluster_check, 0),
        "redis_cluster_vs_single": rounded(ratio(redis_cluster_check, redis_check), 3),
        "redis_bytes_per_conversation": rounded(redis.map(|r| r.redis_bytes_per_conversation), 1),
        "redis_record_per_s": rounded(redis.map(|r| r.redis_record_per_s), 0),
        "redis_cluster_record_per_s": rounded(redis.and_then(|r| r.redis_cluster_record_per_s), 0),
        "outcome_sends": outcomes.as_ref().map(|o| o.sends),
        "disk_bytes_per_send": rounded(outcomes.as_ref().map(|o| o.disk_bytes_per_send), 1),
        "wave_disk_bytes_per_written": rounded(outcomes.as_ref().map(|o| o.wave_disk_bytes_per_written), 1),
        "wave_disk_bytes_per_live": rounded(outcomes.as_ref().map(|o| o.wave_disk_bytes_per_live), 1),
        "wave_outcomes_left": outcomes.as_ref().map(|o| o.wave_outcomes_left),
        "redis_bytes_per_outcome": rounded(outcomes.as_ref().and_then(|o| o.redis_bytes_per_outcome), 1),
        "seen_ids": seen.as_ref().map(|s| s.ids),
        "record_once_per_s": rounded(seen_f(|s| s.record_once_per_s), 0),
        "record_once_vs_record": rounded(ratio(seen_f(|s| s.record_once_per_s), seen_f(|s| s.record_per_s)), 3),
        "disk_bytes_per_seen_id": rounded(seen_f(|s| s.disk_bytes_per_id), 1),
        "redis_bytes_per_seen_id": rounded(seen.as_ref().and_then(|s| s.redis_bytes_per_id), 1),
        "bsuid_tenth_users": mix.as_ref().map(|m| m.users),
        "bsuid_tenth_check_per_s": rounded(mix_f(|m| m.check_per_s), 0),
        "bsuid_tenth_phone_check_per_s": rounded(mix_f(|m| m.phone_check_per_s), 0),
        "all_phone_check_per_s": rounded(mix_f(|m| m.all_phone_check_per_s), 0),
        "bsuid_tenth_phone_check_vs_all_phone": rounded(ratio(mix_f(|m| m.phone_check_per_s), mix_f(|m| m.all_phone_check_per_s)), 3),
        "webhook_per_s": rounded(hooks_f(|w| w.webhook_per_s), 0),
        "webhook_raw_axum_per_s": rounded(hooks_f(|w| w.raw_axum_per_s), 0),
        "webhook_vs_raw": rounded(ratio(hooks_f(|w| w.webhook_per_s), hooks_f(|w| w.raw_axum_per_s)), 3),
    });

    let show = |v: &Value| match v {
        Value::Null => "n/a".to_string(),
        other => other.to_string(),
    };
    println!();
    println!("{:<48} {:>16}  target", "workload", "figure");
    println!("{}", "-".repeat(80));
    for figure in FIGURES {
        let target = figure
            .target
            .map(|target| format!("target {target}"))
            .unwrap_or_default();
        println!(
            "{:<48} {:>16}  {target}",
            figure.label,
            show(&figures[figure.key])
        );
    }
    if let Some(sled) = &sled {
        println!(
            "(closing-soon query found {} conversations; Redis loaded {} conversations)",
            sled.closing_soon_found,
            redis.map_or(0, |r| r.loaded)
        );
    }
    if let Some(path) = &args.svg {
        write_chart(path, &figures)?;
    }
    println!("{figures}");
    Ok(())
}

/// Writes the chart of `figures` to `path` as SVG.
fn write_chart(path: &Path, figures: &Value) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::write(path, chart::svg(figures))
        .map_err(|error| format!("cannot write the chart to {}: {error}", path.display()))?;
    measure::progress(&format!("wrote the chart to {}", path.display()));
    Ok(())
}

/// The figures of an earlier run: the JSON object on the last line of its output.
fn read_figures(path: &Path) -> Result<Value, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let last = text
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .ok_or_else(|| format!("{} is empty; expected a benchmark's output", path.display()))?;
    match serde_json::from_str::<Value>(last) {
        Ok(figures @ Value::Object(_)) => Ok(figures),
        _ => Err(format!(
            "the last line of {} is not the benchmark's JSON object of figures",
            path.display()
        )
        .into()),
    }
}

/// With the `mimalloc` feature, the benchmark runs on mimalloc (the figures say which).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The allocator the figures were measured on.
const ALLOCATOR_NAME: &str = if cfg!(feature = "mimalloc") {
    "mimalloc"
} else {
    "system"
};

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}
