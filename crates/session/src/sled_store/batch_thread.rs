//! The thread a batching writer (the predicted costs, the outcome journal) leaves its
//! pending batch to: once something waits, it gives the batch [`WRITE_AFTER`] to fill,
//! then writes it; it ends when the store closes, whose close writes the rest.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::lock;
use crate::StoreError;

/// The longest a record waits in memory before the thread writes its batch.
pub(super) const WRITE_AFTER: Duration = Duration::from_millis(100);

/// The thread's part of a writer's state, kept under the writer's lock.
#[derive(Default)]
pub(super) struct Lull {
    /// The thread waits for a first record (so the writer that adds one must wake it).
    pub idle: bool,
    /// The store is closing: the thread ends.
    pub shutdown: bool,
}

/// A writer that batches records in memory, as the thread sees it.
pub(super) trait Batching: Send + Sync + 'static {
    /// The state its lock guards.
    type State: Send;
    /// What a failed write's warning names ("predicted costs").
    const WHAT: &'static str;

    /// The state's lock.
    fn state(&self) -> &Mutex<Self::State>;
    /// The condition variable the thread waits on (for a first record, and at shutdown).
    fn wake(&self) -> &Condvar;
    /// The thread's part of the state.
    fn lull(state: &mut Self::State) -> &mut Lull;
    /// Whether a record waits to be written.
    fn waiting(state: &Self::State) -> bool;
    /// Writes what waits (called without the state's lock held).
    fn write_pending(&self) -> Result<(), StoreError>;
}

/// The running thread (none once stopped).
pub(super) struct BatchThread {
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl BatchThread {
    /// Starts the thread `name` for `writer`. `path` (the store's) names the store in an
    /// error.
    pub(super) fn start<B: Batching>(
        writer: Arc<B>,
        name: &str,
        path: &Path,
    ) -> Result<Self, StoreError> {
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run(&*writer))
            .map_err(|source| StoreError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            handle: Mutex::new(Some(handle)),
        })
    }

    /// Whether the thread runs (it has not been stopped).
    pub(super) fn running(&self) -> bool {
        lock(&self.handle).is_some()
    }

    /// Stops the thread and waits for it to end (its writer's close then writes the rest).
    pub(super) fn stop<B: Batching>(&self, writer: &B) {
        B::lull(&mut lock(writer.state())).shutdown = true;
        writer.wake().notify_all();
        if let Some(handle) = lock(&self.handle).take() {
            let _ = handle.join();
        }
    }
}

/// The thread: idle until a record waits (the writer that adds one wakes it), then gathers
/// for [`WRITE_AFTER`] unless shut down meanwhile, then writes.
fn run<B: Batching>(writer: &B) {
    loop {
        let state = writer
            .wake()
            .wait_while(lock(writer.state()), |state| {
                let idle = !B::waiting(state) && !B::lull(state).shutdown;
                B::lull(state).idle = idle;
                idle
            })
            .unwrap_or_else(PoisonError::into_inner);
        let mut state: MutexGuard<'_, B::State> = writer
            .wake()
            .wait_timeout_while(state, WRITE_AFTER, |state| !B::lull(state).shutdown)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        if B::lull(&mut state).shutdown {
            return;
        }
        // The writer may take other locks before the state's.
        drop(state);
        if let Err(error) = writer.write_pending() {
            tracing::warn!(%error, what = B::WHAT, "writing a batch failed; the next batch retries it");
        }
    }
}
