//! What a test reads back of the log: every `tracing` event of the current thread, as
//! text, so it can assert what was logged (a decision, an id) and what never is (a key).

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use tracing_subscriber::fmt::MakeWriter;

/// The log lines written while a [`capture_log`] guard lives.
#[derive(Debug, Clone, Default)]
pub struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl CapturedLog {
    /// Everything logged so far, as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for CapturedLog {
    type Writer = CapturedLog;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Logs every event of the current thread, at every level and without colours, into the
/// returned [`CapturedLog`], until the guard is dropped. (A multi-threaded runtime's
/// worker threads are not captured: run the test on the current thread.)
///
/// ```
/// let (log, _guard) = lipachat_testkit::capture_log();
/// tracing::info!(message_id = "ca739107", "sent");
/// assert!(log.text().contains("message_id=\"ca739107\""));
/// ```
pub fn capture_log() -> (CapturedLog, tracing::subscriber::DefaultGuard) {
    capture_log_at(tracing::Level::TRACE)
}

/// [`capture_log`], keeping only events at `level` or above (a test that a warning was
/// logged captures from `WARN`).
pub fn capture_log_at(level: tracing::Level) -> (CapturedLog, tracing::subscriber::DefaultGuard) {
    let log = CapturedLog::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_max_level(level)
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    (log, guard)
}

/// Logs every event of every thread (a multi-threaded runtime's workers included), at
/// every level and without colours, into the returned [`CapturedLog`], for the rest of
/// the process: it installs the global subscriber, so it works once per test binary and
/// fails if one is installed already.
pub fn capture_log_globally() -> Result<CapturedLog, tracing::subscriber::SetGlobalDefaultError> {
    let log = CapturedLog::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber)?;
    Ok(log)
}
