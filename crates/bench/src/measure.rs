//! Timing helpers: run a workload on N concurrent tasks and report operations per second.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// Runs `per_task` operations on each of `tasks` tokio tasks; `op(task, i)` is one
/// operation. Returns operations per second over the whole run.
pub async fn concurrent<F, Fut>(tasks: usize, per_task: usize, op: F) -> f64
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let op = Arc::clone(&op);
            tokio::spawn(async move {
                for i in 0..per_task {
                    op(task, i).await;
                }
            })
        })
        .collect();
    for handle in handles {
        if let Err(error) = handle.await {
            eprintln!("a benchmark task failed: {error}");
        }
    }
    (tasks * per_task) as f64 / started.elapsed().as_secs_f64()
}

/// Progress on stderr, so a long run shows which workload is running.
pub fn progress(what: &str) {
    eprintln!("[bench] {what}");
}

/// Runs `rounds` rounds of every workload in turn (A, B, A, B, ...) and returns each
/// workload's best rate, in the order given: every side gets the same number of chances
/// at the same moments of the run, so a burst of noise on the shared machine cannot
/// favour one of them.
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
    for _ in 0..rounds {
        for (slot, workload) in best.iter_mut().zip(workloads) {
            *slot = slot.max(run(workload).await);
        }
    }
    best
}
