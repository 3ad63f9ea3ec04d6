//! The database directory: is it a store of ours, its marker, its lock, and the copies of
//! its files kept before sled recovers them after an unclean shutdown.
//!
//! sled 0.34 has no read-only mode, and opening a directory rewrites files in it (recovery
//! rewrites its log, and it creates its own files). So whether a directory is ours is
//! decided from the file names and our marker alone, before sled or even our lock file
//! touches it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::Utc;

use super::integrity::{DURABLE_FILE, INTEGRITY_FILE};
use crate::StoreError;

/// The marker that makes a directory a lipachat session store.
pub const MARKER_FILE: &str = "lipachat.store";
/// The lock file taken before sled opens, so a second opener gets a clear "in use" error.
pub const LOCK_FILE: &str = "lipachat.lock";
/// The directory (inside the store) holding copies made before recovery.
pub const RECOVERY_DIR: &str = "recovery";
/// How many copies made before recovery are kept (the oldest are removed).
pub const RECOVERY_COPIES_KEPT: usize = 3;

/// The directory layout version the marker names.
pub const LAYOUT_FORMAT: u32 = 1;
const MARKER_FIRST_LINE: &str = "lipachat session store";

/// The files a copy before recovery holds, and the record of a clean close describes:
/// sled's and our integrity files.
pub fn is_kept_file(name: &str) -> bool {
    is_sled_file(name) || name == INTEGRITY_FILE || name == DURABLE_FILE
}

/// The files sled 0.34 keeps in its directory.
fn is_sled_file(name: &str) -> bool {
    matches!(name, "conf" | "db" | "blobs") || name.starts_with("snap.")
}

/// What a path holds, judged without writing anything.
#[derive(Debug)]
pub enum Found {
    /// Nothing at the path.
    Missing,
    /// An empty directory (or one holding only our lock file).
    Empty,
    /// A store of ours: the marker is there and readable.
    Marked,
    /// A store made before the marker existed: our lock file and sled's `conf` and `db`,
    /// nothing else but sled's own files and what an open of ours that did not finish
    /// may have left (the copy before recovery, the integrity files).
    Unmarked,
}

/// Looks at `path` without changing anything. A file, a directory of other files, or a
/// marker that is not ours is [`StoreError::NotAStore`].
pub fn inspect(path: &Path) -> Result<Found, StoreError> {
    let not_a_store = |found: String| StoreError::NotAStore {
        path: path.to_owned(),
        found,
    };
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(source) => return Err(io(path, source)),
    };
    if !metadata.is_dir() {
        return Err(not_a_store("a file, not a directory".to_owned()));
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| io(path, e))? {
        let entry = entry.map_err(|e| io(path, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    if names.iter().any(|name| name == MARKER_FILE) {
        check_marker(path)?;
        return Ok(Found::Marked);
    }
    if names.iter().all(|name| name == LOCK_FILE) {
        return Ok(Found::Empty);
    }
    let has = |wanted: &str| names.iter().any(|name| name == wanted);
    let foreign: Vec<&String> = names
        .iter()
        .filter(|name| !is_ours_before_the_marker(path, name))
        .collect();
    if foreign.is_empty() && has(LOCK_FILE) && has("db") && sled_conf(path) {
        return Ok(Found::Unmarked);
    }
    let mut listed: Vec<String> = names
        .iter()
        .take(5)
        .map(|name| describe(&path.join(name), name))
        .collect();
    if names.len() > listed.len() {
        listed.push(format!("and {} more", names.len() - listed.len()));
    }
    Err(not_a_store(format!(
        "{} without a {MARKER_FILE} marker",
        listed.join(", ")
    )))
}

fn describe(path: &Path, name: &str) -> String {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() => format!("{name}/"),
        Ok(metadata) => format!("{name} ({} bytes)", metadata.len()),
        Err(_) => name.to_owned(),
    }
}

/// Whether `name` may be in a store that has no marker yet: our lock file, sled's files,
/// and what a first open that failed or was killed before writing the marker leaves (the
/// copy before recovery, the integrity files, a half-written integrity file).
fn is_ours_before_the_marker(path: &Path, name: &str) -> bool {
    name == LOCK_FILE
        || is_sled_file(name)
        || name == INTEGRITY_FILE
        || name == DURABLE_FILE
        || name == format!("{INTEGRITY_FILE}.new")
        || (name == RECOVERY_DIR && path.join(name).is_dir())
}

/// Whether `conf` is sled's configuration file.
fn sled_conf(path: &Path) -> bool {
    std::fs::read(path.join("conf")).is_ok_and(|bytes| bytes.starts_with(b"segment_size: "))
}

fn check_marker(path: &Path) -> Result<(), StoreError> {
    let marker = path.join(MARKER_FILE);
    let text = std::fs::read_to_string(&marker).map_err(|e| io(&marker, e))?;
    let mut lines = text.lines();
    let format = (lines.next() == Some(MARKER_FIRST_LINE))
        .then(|| lines.next()?.strip_prefix("format ")?.parse::<u32>().ok())
        .flatten();
    match format {
        Some(found) if found > LAYOUT_FORMAT => Err(StoreError::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported: LAYOUT_FORMAT,
        }),
        Some(_) => Ok(()),
        None => Err(StoreError::NotAStore {
            path: path.to_owned(),
            found: format!("a {MARKER_FILE} that is not a lipachat marker"),
        }),
    }
}

/// Writes the marker, synced, with the directory.
pub fn write_marker(path: &Path) -> Result<(), StoreError> {
    let marker = path.join(MARKER_FILE);
    let mut file = File::create(&marker).map_err(|e| io(&marker, e))?;
    writeln!(file, "{MARKER_FIRST_LINE}\nformat {LAYOUT_FORMAT}")
        .and_then(|()| file.sync_all())
        .map_err(|e| io(&marker, e))?;
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| io(path, e))
}

/// Takes the advisory lock on the directory; held as long as the returned file is.
pub fn lock(path: &Path) -> Result<File, StoreError> {
    let lock_path = path.join(LOCK_FILE);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| io(&lock_path, e))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(TryLockError::WouldBlock) => Err(StoreError::InUse {
            path: path.to_owned(),
        }),
        Err(TryLockError::Error(e)) => Err(io(&lock_path, e)),
    }
}

/// Copies sled's files and our integrity files to `recovery/<UTC time>/` inside the store,
/// before sled's recovery rewrites them, and removes the oldest copies beyond
/// [`RECOVERY_COPIES_KEPT`]. Returns the copy's directory.
pub fn back_up(path: &Path) -> Result<PathBuf, StoreError> {
    let recovery = path.join(RECOVERY_DIR);
    // A service restarting in a loop on a store whose open is refused would otherwise
    // copy the same files at every start, and the pruning below would then remove the
    // first copy, the only one holding the files as they were before sled's recovery
    // first rewrote them.
    if let Some(newest) = newest_copy(&recovery)
        && holds_the_same(path, &newest)
    {
        tracing::info!(copy = %newest.display(), "the store's files are as the newest copy holds them; no new copy");
        return Ok(newest);
    }
    let stamp = Utc::now().format("%Y%m%dT%H%M%S%.6fZ").to_string();
    let target = recovery.join(&stamp);
    std::fs::create_dir_all(&target).map_err(|e| io(&target, e))?;
    let copied = (|| {
        for entry in std::fs::read_dir(path).map_err(|e| io(path, e))? {
            let entry = entry.map_err(|e| io(path, e))?;
            let name = entry.file_name();
            let text = name.to_string_lossy();
            if is_kept_file(&text) {
                copy(&entry.path(), &target.join(&name))?;
            }
        }
        File::open(&target)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| io(&target, e))
    })();
    if let Err(error) = copied {
        // A partial copy would only mislead; the error names what failed.
        let _ = std::fs::remove_dir_all(&target);
        return Err(error);
    }
    prune(&recovery);
    Ok(target)
}

/// The snapshots sled 0.34 began to write and never finished, in `path`.
///
/// sled writes a snapshot to `snap.<lsn>.generating`, syncs it, then renames it to
/// `snap.<lsn>`; a process killed before the rename leaves the `.generating` file, part of
/// a snapshot. sled's next open takes the snapshot file that sorts last as the latest one,
/// and does not leave those out: the part-written one sorts after the complete snapshot of
/// the same or an earlier position, so the open failed its checksum and reported the whole
/// store corrupt. Only regular files named exactly as sled names them (16 upper-case hex
/// digits of the position) are listed; anything else is left to sled.
pub fn interrupted_snapshots(path: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| io(path, e))? {
        let entry = entry.map_err(|e| io(path, e))?;
        if is_interrupted_snapshot(&entry.file_name().to_string_lossy())
            && entry.file_type().map_err(|e| io(path, e))?.is_file()
        {
            found.push(entry.path());
        }
    }
    Ok(found)
}

/// Removes `files` (from [`interrupted_snapshots`]). Safe once a copy holds them: the
/// complete snapshot each would have replaced is still there (sled removes old snapshots
/// only after the rename), and sled replays its log from that one.
pub fn drop_interrupted_snapshots(files: &[PathBuf]) -> Result<(), StoreError> {
    for file in files {
        std::fs::remove_file(file).map_err(|e| io(file, e))?;
        tracing::warn!(file = %file.display(), "removed a snapshot sled began and never finished (the process was stopped while writing it)");
    }
    Ok(())
}

/// Whether `name` is sled 0.34's name for a snapshot it has not renamed yet:
/// `snap.<16 upper-case hex digits>.generating`.
fn is_interrupted_snapshot(name: &str) -> bool {
    name.strip_prefix("snap.")
        .and_then(|rest| rest.strip_suffix(".generating"))
        .is_some_and(|position| {
            position.len() == 16
                && position
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        })
}

fn copy(from: &Path, to: &Path) -> Result<(), StoreError> {
    if from.is_dir() {
        std::fs::create_dir_all(to).map_err(|e| io(to, e))?;
        for entry in std::fs::read_dir(from).map_err(|e| io(from, e))? {
            let entry = entry.map_err(|e| io(from, e))?;
            copy(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        std::fs::copy(from, to).map_err(|e| io(from, e))?;
        File::open(to)
            .and_then(|file| file.sync_all())
            .map_err(|e| io(to, e))
    }
}

/// Removes the oldest copies (their names sort by time) beyond the number kept. A copy
/// that cannot be removed is left and logged: it only costs disk.
/// The copies in `recovery`, oldest first (named by their UTC time).
fn copies(recovery: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(recovery) else {
        return Vec::new();
    };
    let mut copies: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| {
                    name.len() > 16 && name.ends_with('Z') && name.as_bytes()[8] == b'T'
                })
        })
        .collect();
    copies.sort();
    copies
}

fn newest_copy(recovery: &Path) -> Option<PathBuf> {
    copies(recovery).pop()
}

/// Whether the copy at `copy` holds exactly the files [`back_up`] would copy from the
/// store at `path`, byte for byte. Any doubt (an unreadable file) is "no".
fn holds_the_same(path: &Path, copy: &Path) -> bool {
    fn files(dir: &Path, prefix: &Path, top: bool, found: &mut Vec<PathBuf>) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        for entry in entries {
            let Ok(entry) = entry else { return false };
            let name = entry.file_name();
            let text = name.to_string_lossy();
            if top && !is_kept_file(&text) {
                continue;
            }
            let relative = prefix.join(&name);
            if entry.path().is_dir() {
                if !files(&entry.path(), &relative, false, found) {
                    return false;
                }
            } else {
                found.push(relative);
            }
        }
        true
    }
    let (mut ours, mut kept) = (Vec::new(), Vec::new());
    if !files(path, Path::new(""), true, &mut ours) || !files(copy, Path::new(""), false, &mut kept)
    {
        return false;
    }
    ours.sort();
    kept.sort();
    ours == kept
        && ours
            .iter()
            .all(|file| same_bytes(&path.join(file), &copy.join(file)))
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (Ok(a), Ok(b)) = (File::open(a), File::open(b)) else {
        return false;
    };
    if a.metadata().map(|m| m.len()).ok() != b.metadata().map(|m| m.len()).ok() {
        return false;
    }
    let (mut a, mut b) = (
        std::io::BufReader::with_capacity(1 << 16, a),
        std::io::BufReader::with_capacity(1 << 16, b),
    );
    let (mut left, mut right) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let Ok(read) = a.read(&mut left) else {
            return false;
        };
        if read == 0 {
            return b.read(&mut right[..1]).is_ok_and(|more| more == 0);
        }
        if b.read_exact(&mut right[..read]).is_err() || left[..read] != right[..read] {
            return false;
        }
    }
}

fn prune(recovery: &Path) {
    let copies = copies(recovery);
    let excess = copies.len().saturating_sub(RECOVERY_COPIES_KEPT);
    for old in &copies[..excess] {
        if let Err(error) = std::fs::remove_dir_all(old) {
            tracing::warn!(path = %old.display(), %error, "could not remove an old recovery copy");
        }
    }
}

fn io(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sleds_own_part_snapshot_names_are_taken() {
        assert!(is_interrupted_snapshot("snap.0000000000A1F000.generating"));
        for other in [
            "snap.generating",
            "snap.0000000000A1F000",
            "snap.0000000000a1f000.generating",
            "snap.000000000A1F000.generating",
            "snap.00000000000A1F000.generating",
            "snap.0000000000A1F00G.generating",
            "snap.0000000000A1F000.generating.bak",
            "xsnap.0000000000A1F000.generating",
        ] {
            assert!(!is_interrupted_snapshot(other), "{other}");
        }
    }
}
