//! Group commit: concurrent durable writers share one `flush`.
//!
//! A writer first applies its change to sled (memory and sled's log buffers), then takes
//! a ticket and waits. One committer thread repeatedly reads the newest ticket, flushes,
//! and wakes every writer whose ticket is older than the flush's start: their writes
//! happened before the flush began, so the flush covers them. Under load, one flush
//! acknowledges as many writers as arrived while the previous flush ran.
//!
//! Before each flush the committer writes the next checkpoint mark into sled, and after
//! it records that mark in `lipachat.durable` (see `integrity`): O(1) per flush, nothing
//! per write.
//!
//! Each flush costs CPU whatever it covers (sled hands the write of its log buffer to its
//! I/O thread pool, which wakes all of that pool's idle threads, then syncs the file), so
//! while writers are concurrent the committer gathers them: after a flush that covered
//! more than one writer, the next one starts no sooner than [`GATHER`] after it started.
//! A lone writer (each flush covering one) is never held back.

use std::time::{Duration, Instant};

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::Checkpoint;
use crate::StoreError;

type FlushResult = Result<(), sled::Error>;

/// While writers are concurrent, the shortest time from one flush's start to the next's:
/// at most 2,000 flushes a second, each covering every writer that arrived meanwhile.
pub const GATHER: Duration = Duration::from_micros(500);

/// When the flush after one that started at `started` may start, given how many writers
/// it covered and how many arrived while it ran: at once after a lone writer's (one
/// covered, none arrived), [`GATHER`] after its start while writers are concurrent.
fn next_flush_from(started: Instant, covered: usize, arrived: usize) -> Option<Instant> {
    (covered + arrived > 1).then(|| started + GATHER)
}

enum Waiter {
    Async(oneshot::Sender<FlushResult>),
    Blocking(mpsc::Sender<FlushResult>),
}

impl Waiter {
    fn wake(self, result: FlushResult) {
        // A waiter that stopped waiting (its task was cancelled) is not an error.
        let _ = match self {
            Self::Async(tx) => tx.send(result).map_err(drop),
            Self::Blocking(tx) => tx.send(result).map_err(drop),
        };
    }
}

#[derive(Default)]
struct State {
    next_ticket: u64,
    waiters: Vec<(u64, Waiter)>,
    /// The committer is waiting for work on the condvar (not flushing), so a new waiter
    /// must wake it; while it flushes it looks for waiters again when done, and a wake
    /// (a futex system call per durable write) would be wasted.
    committer_idle: bool,
    shutdown: bool,
    flushes: u64,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every update is one step.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The committer thread and the queue of writers waiting for it.
pub struct GroupCommit {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl GroupCommit {
    /// Starts the committer thread for `db`, advancing `checkpoint` with each flush.
    pub fn start(db: sled::Db, checkpoint: Arc<Checkpoint>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("lipachat-group-commit".into())
            .spawn(move || run(&for_thread, &db, &checkpoint))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    fn enqueue(&self, waiter: Waiter) -> Result<(), StoreError> {
        let mut state = self.shared.lock();
        if state.shutdown {
            return Err(StoreError::Closed);
        }
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiters.push((ticket, waiter));
        let idle = state.committer_idle;
        drop(state);
        if idle {
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// Waits, without blocking the async runtime, until a flush that started after this
    /// call has completed.
    pub async fn wait(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(Waiter::Async(tx))?;
        rx.await
            .map_err(|_| StoreError::Closed)?
            .map_err(StoreError::from)
    }

    /// Like [`GroupCommit::wait`], blocking the calling thread.
    pub fn wait_blocking(&self) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::channel();
        self.enqueue(Waiter::Blocking(tx))?;
        rx.recv()
            .map_err(|_| StoreError::Closed)?
            .map_err(StoreError::from)
    }

    /// How many flushes the committer has made (for tests and benchmarks).
    pub fn flushes(&self) -> u64 {
        self.shared.lock().flushes
    }
}

fn run(shared: &Shared, db: &sled::Db, checkpoint: &Checkpoint) {
    let mut not_before: Option<Instant> = None;
    loop {
        if let Some(wait) = not_before.and_then(|at| at.checked_duration_since(Instant::now())) {
            std::thread::sleep(wait);
        }
        let mut state = shared.lock();
        while state.waiters.is_empty() && !state.shutdown {
            state.committer_idle = true;
            state = shared
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.committer_idle = false;
        if state.waiters.is_empty() && state.shutdown {
            return;
        }
        let covered = state.next_ticket;
        drop(state);
        let started = Instant::now();
        let result = checkpoint
            .before_flush(db)
            .and_then(|mark| db.flush().map(|_| mark));
        if let Ok(mark) = result {
            checkpoint.after_flush(mark);
        }
        let result = result.map(drop);
        let mut state = shared.lock();
        state.flushes += 1;
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut state.waiters)
            .into_iter()
            .partition(|(t, _)| *t < covered);
        state.waiters = waiting;
        not_before = next_flush_from(started, done.len(), state.waiters.len());
        drop(state);
        for (_, waiter) in done {
            waiter.wake(result.clone());
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_flush_of_concurrent_writers_delays_the_next() {
        let started = Instant::now();
        assert_eq!(next_flush_from(started, 0, 0), None);
        assert_eq!(next_flush_from(started, 1, 0), None);
        assert_eq!(next_flush_from(started, 0, 1), None);
        assert_eq!(next_flush_from(started, 1, 1), Some(started + GATHER));
        assert_eq!(next_flush_from(started, 2, 0), Some(started + GATHER));
        assert_eq!(next_flush_from(started, 32, 5), Some(started + GATHER));
    }
}
