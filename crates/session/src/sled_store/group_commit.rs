//! Group commit: concurrent durable writers share one `flush`.
//!
//! A writer first applies its change to sled (memory and sled's log buffers), then takes
//! a ticket and waits. One committer thread repeatedly reads the newest ticket, flushes,
//! and wakes every writer whose ticket is older than the flush's start: their writes
//! happened before the flush began, so the flush covers them. Under load, one flush
//! acknowledges as many writers as arrived while the previous flush ran.
//!
//! Before each flush the committer writes what waits for it (the store's
//! [`BeforeFlush`]: the inbound ids remembered since the last flush, as one entry) and the
//! next checkpoint mark into sled, and after it records that mark in `lipachat.durable`
//! (see `integrity`): O(1) per flush, nothing per write.
//!
//! Each flush costs CPU whatever it covers (sled hands the write of its log buffer to its
//! I/O thread pool, which wakes all of that pool's idle threads, then syncs the file), so
//! while writers are concurrent the committer gathers them: after a flush that covered
//! more than one writer (or during which another arrived), the next one starts [`GATHER`]
//! after it started, or as soon as as many writers wait as the recent flushes covered
//! (so writers that come straight back, with nothing else to do, are not held). A lone
//! writer (one covered, none arrived) is never held back.

use std::time::{Duration, Instant};

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::Checkpoint;
use crate::StoreError;

type FlushResult = Result<(), sled::Error>;

/// What the committer writes into sled before each flush, once it has noted which
/// writers the flush covers: whatever those writers left to be written with it.
pub type BeforeFlush = Box<dyn Fn() -> FlushResult + Send>;

/// While writers are concurrent, the shortest time from one flush's start to the next's:
/// at most 2,000 flushes a second, each covering every writer that arrived meanwhile.
pub const GATHER: Duration = Duration::from_micros(500);

/// How the committer waits before its next flush while writers are concurrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gather {
    /// The latest the next flush starts.
    until: Instant,
    /// It starts earlier once this many writers wait.
    enough: usize,
}

/// How the flush after one that started at `started` waits, given how many writers it
/// covered and how many arrived while it ran, and `recent`, the batch size recent flushes
/// reached (updated here): not at all after a lone writer's (one covered, none arrived);
/// while writers are concurrent, until [`GATHER`] after its start or until as many wait
/// as recent flushes covered (which follows the largest batch, shrinking by an eighth per
/// flush that covered fewer).
fn next_gather(
    started: Instant,
    covered: usize,
    arrived: usize,
    recent: &mut usize,
) -> Option<Gather> {
    if covered + arrived <= 1 {
        *recent = 0;
        return None;
    }
    *recent = covered.max(*recent - *recent / 8);
    Some(Gather {
        until: started + GATHER,
        enough: (*recent).max(2),
    })
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
    /// The committer is gathering writers until this many wait (or its deadline): the
    /// writer that makes them this many wakes it.
    gathering_until: Option<usize>,
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
    /// Starts the committer thread for `db`, running `before_flush` and advancing
    /// `checkpoint` with each flush.
    pub fn start(
        db: sled::Db,
        checkpoint: Arc<Checkpoint>,
        before_flush: BeforeFlush,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("lipachat-group-commit".into())
            .spawn(move || run(&for_thread, &db, &checkpoint, &before_flush))?;
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
        let wake = state.committer_idle || state.gathering_until == Some(state.waiters.len());
        drop(state);
        if wake {
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

fn run(shared: &Shared, db: &sled::Db, checkpoint: &Checkpoint, before_flush: &BeforeFlush) {
    let mut gather: Option<Gather> = None;
    let mut recent = 0;
    loop {
        let mut state = shared.lock();
        if let Some(Gather { until, enough }) = gather.take() {
            state.gathering_until = Some(enough);
            let left = until.saturating_duration_since(Instant::now());
            state = shared
                .wake
                .wait_timeout_while(state, left, |state| {
                    state.waiters.len() < enough && !state.shutdown
                })
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            state.gathering_until = None;
        }
        // Idle until a writer comes (it wakes an idle committer).
        state = shared
            .wake
            .wait_while(state, |state| {
                state.committer_idle = state.waiters.is_empty() && !state.shutdown;
                state.committer_idle
            })
            .unwrap_or_else(PoisonError::into_inner);
        if state.waiters.is_empty() && state.shutdown {
            return;
        }
        let covered = state.next_ticket;
        drop(state);
        let started = Instant::now();
        let result = before_flush()
            .and_then(|()| checkpoint.before_flush(db))
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
        gather = next_gather(started, done.len(), state.waiters.len(), &mut recent);
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
    fn only_a_flush_of_concurrent_writers_makes_the_next_gather() {
        let started = Instant::now();
        let mut recent = 9;
        assert_eq!(next_gather(started, 0, 0, &mut recent), None);
        assert_eq!(recent, 0, "a lone writer forgets the batch size");
        assert_eq!(next_gather(started, 1, 0, &mut recent), None);
        assert_eq!(next_gather(started, 0, 1, &mut recent), None);
        let gather = |enough| {
            Some(Gather {
                until: started + GATHER,
                enough,
            })
        };
        assert_eq!(next_gather(started, 1, 1, &mut recent), gather(2));
        assert_eq!(next_gather(started, 2, 0, &mut recent), gather(2));
        // The largest batch sets how many to wait for, which then shrinks slowly.
        assert_eq!(next_gather(started, 64, 3, &mut recent), gather(64));
        assert_eq!(next_gather(started, 10, 0, &mut recent), gather(56));
        assert_eq!(next_gather(started, 10, 0, &mut recent), gather(49));
        assert_eq!(next_gather(started, 60, 0, &mut recent), gather(60));
    }
}
