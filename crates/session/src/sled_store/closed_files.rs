//! What sled's files were when the store was last closed cleanly, so the next open can
//! tell whether they changed since (damage, a restore, another tool) before sled's
//! recovery touches them.
//!
//! sled 0.34 rewrites its log when it opens: from a damaged byte to the end, even when the
//! open is then refused. After an unclean shutdown the store copies the files first
//! (`directory::back_up`); after a clean one, copying at every open would cost the
//! store's size each time. So a clean close, once sled has let go of its files, records
//! each one's name, length, modification and change times and inode in
//! [`CLOSED_FILES`]; the next open copies the files first unless every one is exactly as
//! recorded. A program cannot set a change time back (a restore that keeps modification
//! times still changes it), so any write through the file system is seen. What this
//! cannot see is damage below the file system (a medium that flips a bit with no write):
//! the integrity check at open still reports what is missing, but sled's recovery may by
//! then have rewritten the damaged part.
//!
//! The record is never a reason to skip a check, only to skip the copy: a missing, torn
//! or stale record reads as "changed", and the files are copied. Also unseen: a write
//! through a shared memory mapping of sled's log to a page already dirty before the
//! close (the kernel updates the times when a clean page is first written through a
//! mapping, not on later writes to it), which only a process that mapped the log while the
//! store was open could make.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::directory::is_kept_file;

/// The file holding the record, in the store's directory.
pub const CLOSED_FILES: &str = "lipachat.closed";

const FIRST_LINE: &str = "lipachat closed files 1";

/// How long a close waits for sled's background threads to let go of its log before it
/// gives up on the record (the next open then copies the files, as after a crash).
const PATIENCE: Duration = Duration::from_secs(2);

/// The record of the files at `dir` as they are now: one line per file (sled's, and the
/// integrity files), sorted by name.
fn render(dir: &Path) -> std::io::Result<String> {
    let mut lines = Vec::new();
    collect(dir, "", &mut lines)?;
    lines.sort();
    let mut text = String::from(FIRST_LINE);
    text.push('\n');
    for line in &lines {
        text.push_str(line);
        text.push('\n');
    }
    // The count last: a record cut short at a line's end (a torn write) never reads as
    // the record of a directory that lost its last files.
    let _ = writeln!(text, "end {}", lines.len());
    Ok(text)
}

fn collect(dir: &Path, prefix: &str, lines: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = !prefix.is_empty() || is_kept_file(&name);
        if !ours {
            continue;
        }
        let named = format!("{prefix}{name}");
        // Through a symbolic link: what sled reads and writes is the file it points to.
        let metadata = std::fs::metadata(entry.path())?;
        if metadata.is_dir() {
            collect(&entry.path(), &format!("{named}/"), lines)?;
        } else {
            lines.push(describe(&named, &metadata));
        }
    }
    Ok(())
}

#[cfg(unix)]
fn describe(name: &str, metadata: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    let mut line = String::new();
    // Writing to a String cannot fail.
    let _ = write!(
        line,
        "{name} {} {}.{:09} {}.{:09} {}",
        metadata.len(),
        metadata.mtime(),
        metadata.mtime_nsec(),
        metadata.ctime(),
        metadata.ctime_nsec(),
        metadata.ino()
    );
    line
}

#[cfg(not(unix))]
fn describe(name: &str, metadata: &std::fs::Metadata) -> String {
    let modified = metadata
        .modified()
        .ok()
        .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_nanos());
    let mut line = String::new();
    let _ = write!(line, "{name} {} {modified}", metadata.len());
    line
}

/// Whether every file at `dir` is exactly as the last clean close recorded. `false` when
/// there is no readable record.
pub fn unchanged(dir: &Path) -> bool {
    match (std::fs::read_to_string(dir.join(CLOSED_FILES)), render(dir)) {
        (Ok(recorded), Ok(now)) => recorded == now,
        _ => false,
    }
}

/// Removes the record: the store is open, and its files will change.
pub fn forget(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(CLOSED_FILES)) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Records the files at `dir` as they are now (written to a temporary file, renamed over
/// the old record: a torn write is never read as a record).
fn record(dir: &Path) -> std::io::Result<()> {
    let text = render(dir)?;
    let temporary = dir.join(format!("{CLOSED_FILES}.new"));
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, dir.join(CLOSED_FILES))
}

/// Waits until nothing holds sled's lock on its log (its background threads may let go a
/// moment after its last handle is dropped); `false` if that took longer than `patience`.
fn sled_let_go(dir: &Path, patience: Duration) -> bool {
    let Ok(log) = OpenOptions::new().read(true).open(dir.join("db")) else {
        return false;
    };
    let started = Instant::now();
    loop {
        if log.try_lock().is_ok() {
            return true;
        }
        if started.elapsed() >= patience {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The open store's last part: declared after every sled handle, it is dropped after
/// them, and it holds the directory lock until the closed files are recorded, so no other
/// opener sees the files between sled's close and the record.
pub(crate) struct Closing {
    path: PathBuf,
    /// Set once the clean shutdown is sealed; only then are the files recorded.
    sealed: AtomicBool,
    _lock: File,
}

impl Closing {
    /// The closing part of the store at `path`, holding its directory lock.
    pub(crate) fn new(path: PathBuf, lock: File) -> Self {
        Self {
            path,
            sealed: AtomicBool::new(false),
            _lock: lock,
        }
    }

    /// Says the clean shutdown is sealed: the files are recorded once sled lets go.
    pub(crate) fn sealed(&self) {
        self.sealed.store(true, Ordering::Relaxed);
    }
}

impl Drop for Closing {
    fn drop(&mut self) {
        if !self.sealed.load(Ordering::Relaxed) {
            return;
        }
        if !sled_let_go(&self.path, PATIENCE) {
            tracing::warn!(path = %self.path.display(), "sled still held its log after the store closed; the next open copies the files first");
            return;
        }
        if let Err(error) = record(&self.path) {
            tracing::warn!(path = %self.path.display(), %error, "could not record the closed files; the next open copies them first");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

    use super::*;
    use crate::sled_store::integrity::INTEGRITY_FILE;

    fn store_files(dir: &Path) {
        std::fs::write(dir.join("conf"), b"segment_size: 524288\n").unwrap();
        std::fs::write(dir.join("db"), vec![7u8; 4096]).unwrap();
        std::fs::write(dir.join("snap.0000000000000001"), b"snapshot").unwrap();
        std::fs::create_dir(dir.join("blobs")).unwrap();
        std::fs::write(dir.join("blobs").join("12"), b"blob").unwrap();
        std::fs::write(dir.join(INTEGRITY_FILE), b"record").unwrap();
        std::fs::write(dir.join("lipachat.lock"), b"").unwrap();
    }

    #[test]
    fn files_as_recorded_are_unchanged_and_any_change_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        store_files(dir.path());
        assert!(!unchanged(dir.path()), "no record yet");
        record(dir.path()).unwrap();
        assert!(unchanged(dir.path()));
        // Files that are not sled's or the integrity files are not part of it.
        std::fs::write(dir.path().join("lipachat.lock"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("recovery")).unwrap();
        assert!(unchanged(dir.path()));
        // The same length, and the modification time put back: the change time moved.
        let db = dir.path().join("db");
        let modified = std::fs::metadata(&db).unwrap().modified().unwrap();
        let mut bytes = std::fs::read(&db).unwrap();
        bytes[100] ^= 0xff;
        std::fs::write(&db, &bytes).unwrap();
        File::options()
            .write(true)
            .open(&db)
            .unwrap()
            .set_modified(modified)
            .unwrap();
        assert!(!unchanged(dir.path()), "a rewritten log");
        record(dir.path()).unwrap();
        assert!(unchanged(dir.path()));
        std::fs::write(dir.path().join("blobs").join("13"), b"new blob").unwrap();
        assert!(!unchanged(dir.path()), "a new blob");
        record(dir.path()).unwrap();
        std::fs::remove_file(dir.path().join("snap.0000000000000001")).unwrap();
        assert!(!unchanged(dir.path()), "a snapshot gone");
    }

    #[test]
    fn a_torn_or_forgotten_record_reads_as_changed() {
        let dir = tempfile::tempdir().unwrap();
        store_files(dir.path());
        record(dir.path()).unwrap();
        let whole = std::fs::read(dir.path().join(CLOSED_FILES)).unwrap();
        std::fs::write(dir.path().join(CLOSED_FILES), &whole[..whole.len() - 3]).unwrap();
        assert!(!unchanged(dir.path()));
        record(dir.path()).unwrap();
        forget(dir.path()).unwrap();
        assert!(!unchanged(dir.path()));
        forget(dir.path()).unwrap();
    }

    #[test]
    fn a_close_waits_for_the_log_lock_and_records_only_a_sealed_store() {
        let dir = tempfile::tempdir().unwrap();
        store_files(dir.path());
        let lock = || File::create(dir.path().join("lipachat.lock")).unwrap();
        drop(Closing::new(dir.path().to_owned(), lock()));
        assert!(!dir.path().join(CLOSED_FILES).exists(), "not sealed");
        // Another holder of the log's lock writes to it and lets go after 50 ms: the
        // close waits for it, so the record holds the log as that left it.
        let mut log = File::options()
            .append(true)
            .open(dir.path().join("db"))
            .unwrap();
        log.lock().unwrap();
        let closing = Closing::new(dir.path().to_owned(), lock());
        closing.sealed();
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            std::io::Write::write_all(&mut log, b"last words").unwrap();
            drop(log);
        });
        drop(closing);
        holder.join().unwrap();
        assert!(unchanged(dir.path()));
        // A holder that never lets go: no record after the patience.
        forget(dir.path()).unwrap();
        let log = File::open(dir.path().join("db")).unwrap();
        log.lock().unwrap();
        assert!(!sled_let_go(dir.path(), Duration::from_millis(30)));
        drop(log);
        assert!(sled_let_go(dir.path(), Duration::from_millis(30)));
    }
}
