//! Opening a store this process has just dropped, for the tests that close and reopen
//! one: sled lets go of its files a moment after the last handle is dropped (its
//! background flusher ends asynchronously), and under a loaded test run that moment can
//! outlast the store's own two seconds of patience.

use std::time::{Duration, Instant};

use lipachat_session::{SledConfig, SledStore, StoreError};

/// How long a reopen waits for the previous handle to let go.
const PATIENCE: Duration = Duration::from_secs(10);

/// Opens the store `config` describes, retrying while the directory is still held
/// ([`StoreError::InUse`]) for up to [`PATIENCE`]; any other answer is returned at once,
/// so a refusal the test is about (damage, a newer schema) is never retried away.
pub fn when_free(config: impl Fn() -> SledConfig) -> Result<SledStore, StoreError> {
    let started = Instant::now();
    loop {
        match config().open() {
            Err(StoreError::InUse { .. }) if started.elapsed() < PATIENCE => {
                std::thread::sleep(Duration::from_millis(20));
            }
            opened => return opened,
        }
    }
}
