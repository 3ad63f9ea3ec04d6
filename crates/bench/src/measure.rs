//! Timing helpers: run a workload on N concurrent tasks and report operations per second.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Runs `per_task` operations on each of `tasks` tokio tasks; `op(task, i)` is one
/// operation and says whether it succeeded. Returns successful operations per second over
/// the whole run: a failure costs its time and counts for nothing, and failures are
/// reported on stderr.
pub async fn concurrent<F, Fut>(tasks: usize, per_task: usize, op: F) -> f64
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let failures = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let (op, failures) = (Arc::clone(&op), Arc::clone(&failures));
            tokio::spawn(async move {
                for i in 0..per_task {
                    if !op(task, i).await {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let mut lost_tasks = 0;
    for handle in handles {
        if let Err(error) = handle.await {
            eprintln!("a benchmark task failed: {error}");
            lost_tasks += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let failed = failures.load(Ordering::Relaxed) + lost_tasks * per_task;
    if failed > 0 {
        progress(&format!(
            "{failed} of {} operations failed; the rate counts only the others",
            tasks * per_task
        ));
    }
    (tasks * per_task).saturating_sub(failed) as f64 / elapsed
}

/// Progress on stderr, so a long run shows which workload is running.
pub fn progress(what: &str) {
    eprintln!("[bench] {what}");
}

/// Runs `rounds` rounds of every workload and returns each workload's best rate, in the
/// order given. Every side gets the same number of chances, and the order rotates from
/// round to round (A B C, B C A, C A B), so neither a burst of noise on the shared machine
/// nor the work one workload leaves behind (a store still flushing) always falls on the
/// same side.
pub async fn best_of_interleaved<W, Fut, const K: usize>(
    rounds: usize,
    workloads: [W; K],
    mut run: impl FnMut(W) -> Fut,
) -> [f64; K]
where
    W: Copy,
    Fut: Future<Output = f64>,
{
    let mut best = [0.0_f64; K];
    for round in 0..rounds {
        for step in 0..K {
            let index = (round + step) % K;
            best[index] = best[index].max(run(workloads[index]).await);
        }
    }
    best
}
