//! The embedded default store: sled on local disk.

mod back_off;
mod batch_thread;
mod claims;
mod closed_files;
mod codec;
mod consent;
mod directory;
mod group_commit;
mod identity;
mod index;
mod integrity;
mod memory_map;
mod outcome_journal;
mod outcomes;
mod predicted_costs;
mod presence;
mod seen;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

pub use codec::SCHEMA_VERSION;
use directory::Found;
pub use directory::{MARKER_FILE, RECOVERY_COPIES_KEPT, RECOVERY_DIR};
use group_commit::GroupCommit;
use index::Index;
pub use integrity::{CheckpointReport, IntegrityReport, LastShutdown, TreeReport, TreeTally};
use integrity::{DurableMark, IntegrityRecord, TREE_COUNT, TrackedTree};
use seen::{SeenIds, Sighting};

use crate::store::{
    Alias, IdentityStore, InboundReceipt, InboundUpdate, Invitation, MovedRecords, OutboxStore,
    QueuedMessage, RememberedInbound, StoredOutcome, WindowEntry, WindowStore,
};
use crate::{
    Bsuid, Conversation, Customer, GroupId, GroupRef, InboundId, MessageId, PhoneNumber,
    StoreError, UserRef, WindowRecord,
};

/// When a write counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// A record call returns only once its write is on disk. Concurrent callers share one
    /// flush (group commit).
    #[default]
    Durable,
    /// A record call returns once the write is in memory; sled flushes every `interval`,
    /// or every [`SledConfig::FLUSHER_CADENCE`] when that is shorter (its flusher also cleans the
    /// log). A crash loses at most the writes of the last such period (plus one flush's
    /// duration).
    Periodic {
        /// The longest time between two flushes.
        interval: Duration,
    },
}

/// Whether opening may create the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OpenMode {
    /// Open the store at the path, or create one when nothing is there or the directory
    /// is empty.
    #[default]
    CreateIfMissing,
    /// Open an existing store only: a missing path or an empty directory is
    /// [`StoreError::NoStore`], and nothing is created.
    Existing,
}

/// How to open a [`SledStore`].
///
/// In every mode, a path that holds something other than a store (a file, or a directory
/// of other files without the `lipachat.store` marker) is [`StoreError::NotAStore`] and is
/// left untouched; a store whose integrity check fails is [`StoreError::Damaged`] unless
/// [`SledConfig::accept_damage`] is set.
#[derive(Debug, Clone)]
pub struct SledConfig {
    path: PathBuf,
    durability: Durability,
    cache_capacity: u64,
    mode: OpenMode,
    accept_damage: bool,
    full_check: bool,
}

impl SledConfig {
    /// The default sled page cache: 2 MiB (sled's own default is 1 GiB). Window checks
    /// are answered from the in-memory index, so sled's cache serves only writes and the
    /// outbox; a larger one costs memory without making checks faster.
    pub const DEFAULT_CACHE_CAPACITY: u64 = 2 * 1024 * 1024;

    /// How often sled's background thread runs at the longest. That thread both flushes sled's
    /// write buffer and reclaims the log's dead space (rewriting the live pages of segments at
    /// most half live), and it cleans only for half of each period: at sled's usual 500 ms, a
    /// burst of writes outran it and left the log at four to five times its live data (a
    /// million conversations loaded in ten seconds took 124 to 136 bytes each on disk; at
    /// 20 ms, 102 to 118). Idle, it costs an `fsync` of an unchanged file per period.
    pub const FLUSHER_CADENCE: Duration = Duration::from_millis(20);

    /// A configuration for the database directory `path`: durable, 2 MiB cache.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            durability: Durability::default(),
            cache_capacity: Self::DEFAULT_CACHE_CAPACITY,
            mode: OpenMode::default(),
            accept_damage: false,
            full_check: false,
        }
    }

    /// Sets whether the open may create the store (by default it may).
    pub fn mode(mut self, mode: OpenMode) -> Self {
        self.mode = mode;
        self
    }

    /// Opens a store whose integrity check fails instead of refusing it: what it holds
    /// becomes the new reference, and [`SledStore::integrity`] tells what was found. For
    /// salvaging a damaged store after its files were kept for investigation.
    pub fn accept_damage(mut self, accept: bool) -> Self {
        self.accept_damage = accept;
        self
    }

    /// Sets the durability mode.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets sled's page cache size in bytes.
    pub fn cache_capacity(mut self, bytes: u64) -> Self {
        self.cache_capacity = bytes;
        self
    }

    /// Reads every tree at open to check it, even after a clean shutdown whose seal sled
    /// handed back intact (when only the windows tree is read). For `verify`: it also
    /// catches a write path that failed to keep its tree's tally.
    pub fn full_check(mut self, full: bool) -> Self {
        self.full_check = full;
        self
    }

    /// Opens the store (creating it if the mode allows).
    pub fn open(self) -> Result<SledStore, StoreError> {
        SledStore::open_with(self)
    }
}

/// The checkpoint mark: written into sled before each group-commit flush, and into
/// `lipachat.durable` once that flush is done (see `integrity`).
pub(crate) struct Checkpoint {
    mark: AtomicU64,
    durable: DurableMark,
}

impl Checkpoint {
    /// Writes the next mark into sled (to be flushed next); returns it.
    pub(crate) fn before_flush(&self, db: &sled::Db) -> Result<u64, sled::Error> {
        let next = self.mark.load(Ordering::Relaxed) + 1;
        db.insert(integrity::MARK_KEY, &next.to_be_bytes())?;
        self.mark.store(next, Ordering::Relaxed);
        Ok(next)
    }

    /// Records that a flush made `mark` durable.
    pub(crate) fn after_flush(&self, mark: u64) {
        if let Err(error) = self.durable.record(mark) {
            tracing::warn!(%error, "could not record the durable checkpoint");
        }
    }
}

struct Inner {
    path: PathBuf,
    db: sled::Db,
    windows: TrackedTree,
    outbox: TrackedTree,
    invitations: TrackedTree,
    /// Shared with the outcome journal, whose batches it holds.
    outcomes: Arc<TrackedTree>,
    identities: TrackedTree,
    aliases: TrackedTree,
    /// Held while a handle is allocated, so two callers never number one id twice.
    registry_lock: Mutex<()>,
    seen: Arc<SeenIds>,
    consent: consent::ConsentTrees,
    /// The customer back-offs (131049), across business numbers.
    back_off: back_off::BackOffTree,
    outcome_book: outcomes::OutcomeBook,
    /// Send outcomes written in batches.
    outcome_journal: Arc<outcome_journal::OutcomeJournal>,
    index: Index,
    claims: claims::Claims,
    outbox_lock: Mutex<()>,
    commit: Option<GroupCommit>,
    checkpoint: Arc<Checkpoint>,
    /// Set when a write failed: sled may or may not have applied it, so the tallies are
    /// no longer a reference and the shutdown is not sealed as clean.
    uncertain: Arc<AtomicBool>,
    integrity: IntegrityReport,
    skipped_keys: usize,
    legacy_phone_keys: usize,
    /// Last, so dropped after every sled handle above: holds the directory lock until the
    /// closed files are recorded.
    closing: closed_files::Closing,
}

impl Inner {
    fn tallies(&self) -> [TreeTally; TREE_COUNT] {
        [
            self.windows.tally(),
            self.outbox.tally(),
            self.invitations.tally(),
            self.outcomes.tally(),
            self.identities.tally(),
            self.aliases.tally(),
            self.consent.consent.tally(),
            self.consent.entry.tally(),
            self.consent.predicted.tree().tally(),
            self.consent.reported.tally(),
            self.consent.reached.tally(),
            self.back_off.tree.tally(),
        ]
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Stop the committer first: no flush may run after the seal is written.
        drop(self.commit.take());
        // The predicted costs still in memory go into sled before the last flush, and so
        // do inbound ids whose calls were cancelled before a flush took them.
        if let Err(error) = self.consent.predicted.close() {
            tracing::error!(path = %self.path.display(), %error, "writing the last predicted costs failed");
        }
        if let Err(error) = self.seen.write_pending() {
            tracing::error!(path = %self.path.display(), %error, "writing the last remembered inbound ids failed");
        }
        if let Err(error) = self.outcome_journal.close() {
            tracing::error!(path = %self.path.display(), %error, "writing the last send outcomes failed");
        }
        // Clean shutdown flushes everything, then seals what the store holds.
        if let Err(error) = self.db.flush() {
            tracing::error!(path = %self.path.display(), %error, "flush on close failed");
            return;
        }
        if self.uncertain.load(Ordering::Relaxed) {
            tracing::warn!(
                path = %self.path.display(),
                "a write failed while open; the next open checks the store as after an unclean shutdown"
            );
            return;
        }
        let record = IntegrityRecord {
            clean: true,
            mark: self.checkpoint.mark.load(Ordering::Relaxed),
            trees: self.tallies().map(Some),
        };
        // The seal goes into sled last, then to the file: see `integrity`.
        let sealed = self
            .db
            .insert(integrity::SEAL_KEY, record.render().as_bytes())
            .and_then(|_| self.db.flush());
        if let Err(error) = sealed {
            tracing::error!(path = %self.path.display(), %error, "could not seal the store as cleanly closed");
            return;
        }
        if let Err(error) = record.write(&self.path) {
            tracing::error!(path = %self.path.display(), %error, "could not seal the store as cleanly closed");
            return;
        }
        self.closing.sealed();
    }
}

/// The sled store: windows, outbox, invitations and send outcomes in one database
/// directory, with an in-memory index for checks and the closing-soon query.
///
/// Cheap to clone; clones share the database. One process at a time may open a directory.
///
/// ```
/// use chrono::Utc;
/// use lipachat_session::{Conversation, SledStore};
///
/// let dir = tempfile::tempdir()?;
/// let store = SledStore::open(dir.path().join("sessions.db"))?;
/// let conversation = Conversation::parse("254110090747", "254712345678")?;
/// let update = store.record_inbound_blocking(conversation, Utc::now())?;
/// assert!(update.previous.is_none());
/// assert_eq!(store.window_blocking(conversation)?, Some(update.current));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SledStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.inner.path)
            .field("durable", &self.inner.commit.is_some())
            .finish_non_exhaustive()
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The name the sled store gives as [`StoreError::Backend`]'s `backend`.
pub const SLED_BACKEND: &str = "sled";

/// A sled failure is the store's backend error, with sled's error as its source.
impl From<sled::Error> for StoreError {
    fn from(error: sled::Error) -> Self {
        StoreError::backend(SLED_BACKEND, error)
    }
}

/// Locks `mutex`, going on with what a holder that panicked left: every lock of the store
/// guards state that is whole between any two of its steps.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Milliseconds since the epoch by this machine's clock (0 before 1970).
fn now_ms() -> u64 {
    u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0)
}

fn corrupt(conversation: Conversation, detail: String) -> StoreError {
    StoreError::Corrupt {
        conversation,
        detail,
    }
}

impl SledStore {
    /// Opens (or creates) a durable store at `path` with default settings.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        SledConfig::new(path).open()
    }

    /// Opens the durable store at `path` with default settings, creating nothing: a
    /// missing path or an empty directory is [`StoreError::NoStore`].
    pub fn open_existing(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        SledConfig::new(path).mode(OpenMode::Existing).open()
    }

    fn open_with(config: SledConfig) -> Result<Self, StoreError> {
        let path = config.path;
        // Decided before anything is written: a foreign directory is left as it is.
        let found = directory::inspect(&path)?;
        if matches!(found, Found::Missing | Found::Empty) && config.mode == OpenMode::Existing {
            return Err(StoreError::NoStore {
                empty_directory: matches!(found, Found::Empty),
                path,
            });
        }
        if matches!(found, Found::Missing) {
            std::fs::create_dir_all(&path).map_err(io_error(&path))?;
        }
        let lock = directory::lock(&path)?;
        // A marked store always has its integrity record once its first open has
        // finished; one without (deleted, or unreadable) cannot say what it must hold.
        let mut record_lost = false;
        let (last_shutdown, reference) = match found {
            Found::Missing | Found::Empty => {
                directory::write_marker(&path)?;
                (LastShutdown::NoRecord, None)
            }
            Found::Unmarked => (LastShutdown::NoRecord, None),
            Found::Marked => match IntegrityRecord::read(&path) {
                Ok(Some(record)) if record.clean => (LastShutdown::Clean, Some(record)),
                Ok(Some(_)) => (LastShutdown::Unclean, None),
                Ok(None) => {
                    tracing::warn!(path = %path.display(), "the integrity record is missing; checking as after an unclean shutdown");
                    record_lost = true;
                    (LastShutdown::Unclean, None)
                }
                Err((file, detail)) => {
                    tracing::warn!(file = %file.display(), %detail, "unreadable integrity record; checking as after an unclean shutdown");
                    record_lost = true;
                    (LastShutdown::Unclean, None)
                }
            },
        };
        let durable_before = (last_shutdown == LastShutdown::Unclean)
            .then(|| DurableMark::read(&path))
            .flatten();
        // After an unclean shutdown (or on a store made before the integrity check, whose
        // last shutdown is unknown), sled's recovery may rewrite its files: copy them first.
        // After a clean one, they are copied only if they changed since that close
        // recorded them (damage, a restore): sled's recovery would rewrite a damaged log.
        let mut backup = match (&found, last_shutdown) {
            (_, LastShutdown::Unclean) | (Found::Unmarked, _) => Some(directory::back_up(&path)?),
            (_, LastShutdown::Clean) if !closed_files::unchanged(&path) => {
                let copy = directory::back_up(&path)?;
                tracing::warn!(path = %path.display(), copy = %copy.display(), "sled's files changed since the store was closed cleanly; copied before opening");
                Some(copy)
            }
            _ => None,
        };
        // A snapshot sled began and never finished would make sled refuse the store
        // (`directory::interrupted_snapshots`): removed, once a copy holds it.
        let interrupted = directory::interrupted_snapshots(&path)?;
        if !interrupted.is_empty() {
            if backup.is_none() {
                backup = Some(directory::back_up(&path)?);
            }
            directory::drop_interrupted_snapshots(&interrupted)?;
        }
        let mut sled_config = sled::Config::new()
            .path(&path)
            .cache_capacity(config.cache_capacity);
        let cadence = match config.durability {
            Durability::Durable => SledConfig::FLUSHER_CADENCE,
            Durability::Periodic { interval } => interval.min(SledConfig::FLUSHER_CADENCE),
        };
        sled_config =
            sled_config.flush_every_ms(Some(cadence.as_millis().clamp(1, u64::MAX.into()) as u64));
        let db = open_sled(&sled_config, &path)?;
        let stored_schema = check_schema(&db, &path)?;
        let windows = db.open_tree("windows")?;
        let index = Index::default();
        let mut skipped_keys = 0;
        let mut legacy_phone_keys = 0usize;
        // Keys in the layout before schema version 4, moved to this one once the store is
        // open (below).
        let mut old_window_keys = Vec::new();
        let mut windows_tally = TreeTally::default();
        for entry in windows.iter() {
            let (key, value) = entry?;
            windows_tally.add(&key, &value);
            let Some(conversation) = codec::parse_window_key(&key) else {
                skipped_keys += 1;
                tracing::warn!(key = ?key, "skipping a windows key that names no conversation");
                continue;
            };
            if key.len() == codec::OLD_WINDOW_KEY_LEN {
                old_window_keys.push(key.clone());
            }
            if !conversation.business.is_canonical()
                || conversation.phone().is_some_and(|p| !p.is_canonical())
            {
                legacy_phone_keys += 1;
            }
            let mut shard = index.write(&conversation);
            match codec::decode_window(&value) {
                // Both layouts' keys for one conversation (a store an older build wrote
                // to while a migration was unfinished): the two records merged.
                Ok(record) => match shard.get(&conversation) {
                    Ok(Some(other)) => shard.put(conversation, &other.merged_with(record)),
                    _ => shard.put(conversation, &record),
                },
                Err(_) if matches!(shard.get(&conversation), Ok(Some(_))) => {}
                Err(detail) => {
                    tracing::warn!(%conversation, %detail, "corrupt window value");
                    shard.put_corrupt(conversation, detail);
                }
            }
        }
        if legacy_phone_keys > 0 {
            tracing::warn!(
                path = %path.display(),
                conversations = legacy_phone_keys,
                "conversations keyed by a phone spelling this release unifies (Brazil without the ninth digit, Mexico with 521, Argentina without 549): messages under the other spelling will not find them; migrate with `session-check --db OLD export > backup.jsonl` then `session-check --db NEW import < backup.jsonl` (docs/store.md)"
            );
        }
        let outbox = db.open_tree("outbox")?;
        let invitations = db.open_tree("invitations")?;
        let outcomes = db.open_tree("outcomes")?;
        let identities = db.open_tree("identities")?;
        let aliases = db.open_tree("aliases")?;
        let consent_trees = consent::ConsentTrees::NAMES.map(|name| db.open_tree(name));
        let [
            consent_tree,
            entry_tree,
            predicted_tree,
            reported_tree,
            reached_tree,
        ] = consent_trees;
        let consent_trees = [
            consent_tree?,
            entry_tree?,
            predicted_tree?,
            reported_tree?,
            reached_tree?,
        ];
        let back_off_tree = db.open_tree(back_off::BackOffTree::NAME)?;
        // After a clean shutdown whose seal sled handed back intact, sled recovered
        // everything written before it: the sealed tallies stand for the other trees
        // (a tree the seal does not name, written before it was tracked, is read).
        let sealed = match &reference {
            Some(record) if !config.full_check => db
                .get(integrity::SEAL_KEY)?
                .is_some_and(|seal| seal.as_ref() == record.render().as_bytes())
                .then_some(record.trees),
            _ => None,
        };
        let mut found_tallies = [windows_tally; TREE_COUNT];
        for (i, tree) in [&outbox, &invitations, &outcomes, &identities, &aliases]
            .into_iter()
            .chain(&consent_trees)
            .chain([&back_off_tree])
            .enumerate()
        {
            found_tallies[i + 1] = match sealed.and_then(|trees| trees[i + 1]) {
                Some(tally) => tally,
                None => integrity::scan(tree)?,
            };
        }
        let mark = match db.get(integrity::MARK_KEY)? {
            Some(bytes) => <[u8; 8]>::try_from(bytes.as_ref())
                .map(u64::from_be_bytes)
                .unwrap_or(0),
            None => 0,
        };
        // Only a store that was just created (the marker written, then a crash before its
        // first integrity record) may be without one: it holds nothing. One that holds
        // something lost its record, and with it what it must hold.
        let last_shutdown = if record_lost && found_tallies.iter().any(|t| t.entries > 0) {
            LastShutdown::RecordLost
        } else {
            last_shutdown
        };
        let checkpoint = match (last_shutdown, &reference) {
            (LastShutdown::Clean, Some(record)) => Some(CheckpointReport {
                durable: record.mark,
                found: mark,
            }),
            _ => durable_before.map(|durable| CheckpointReport {
                durable,
                found: mark,
            }),
        };
        let report = IntegrityReport {
            trees: integrity::TREES
                .iter()
                .zip(found_tallies)
                .enumerate()
                .map(|(i, (tree, found))| TreeReport {
                    tree,
                    expected: reference.as_ref().and_then(|record| record.trees[i]),
                    found,
                })
                .collect(),
            path: path.clone(),
            last_shutdown,
            checkpoint,
            backup,
            full_scan: sealed.is_none(),
        };
        if !report.is_intact() {
            if !config.accept_damage {
                // The integrity files are left as they were: every open reports the same.
                return Err(StoreError::Damaged {
                    report: Box::new(report),
                });
            }
            tracing::warn!(%report, "opening a damaged store as asked; what it holds is the new reference");
        }
        // From here on the store is open: a crash leaves the record saying so.
        closed_files::forget(&path).map_err(io_error(&path))?;
        let durable = DurableMark::create(&path, mark).map_err(io_error(&path))?;
        IntegrityRecord {
            clean: false,
            mark,
            trees: found_tallies.map(Some),
        }
        .write(&path)
        .map_err(io_error(&path))?;
        // An upgraded store gets its marker only once its integrity record is there, so a
        // marked store without one is always a store that lost it.
        if matches!(found, Found::Unmarked) {
            directory::write_marker(&path)?;
        }
        // Moves an older layout's window keys and redelivery memory (see `seen`), then
        // says the store is in this build's layout: a build that reads only the older one
        // refuses it. The integrity record says "open" by now, so a crash part-way is
        // checked as unclean, and the next open moves what is left.
        if !old_window_keys.is_empty() {
            migrate_window_keys(&windows, &index, &old_window_keys, &path)?;
            found_tallies[0] = integrity::scan(&windows)?;
        }
        let seen = Arc::new(SeenIds::open(
            &db,
            matches!(config.durability, Durability::Durable),
        )?);
        if stored_schema < SCHEMA_VERSION {
            db.insert(codec::SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
            db.flush()?;
        }
        let checkpoint = Arc::new(Checkpoint {
            mark: AtomicU64::new(mark),
            durable,
        });
        let uncertain = Arc::new(AtomicBool::new(false));
        let track =
            |tree, i: usize| TrackedTree::new(tree, found_tallies[i], Arc::clone(&uncertain));
        let outcomes = Arc::new(track(outcomes, 3).with_presence());
        let outcome_journal = Arc::new(outcome_journal::OutcomeJournal::start(
            Arc::clone(&outcomes),
            &path,
        )?);
        let commit = match config.durability {
            Durability::Durable => Some(
                GroupCommit::start(db.clone(), Arc::clone(&checkpoint), {
                    // The ids remembered and the outcomes journaled since the last flush
                    // go in with the next one.
                    let seen = Arc::clone(&seen);
                    let journal = Arc::clone(&outcome_journal);
                    Box::new(move || {
                        // A batch that could not be written fails the flush: its writers
                        // learn that not everything written before it is on disk (the
                        // batch stays in memory, readable, and is retried).
                        journal.write_pending().map_err(|error| {
                            sled::Error::Io(std::io::Error::other(error.to_string()))
                        })?;
                        seen.write_pending()
                    })
                })
                .map_err(io_error(&path))?,
            ),
            Durability::Periodic { .. } => None,
        };
        let mut consent_index = 6;
        let consent_trees = consent_trees.map(|tree| {
            consent_index += 1;
            track(tree, consent_index - 1)
        });
        Ok(Self {
            inner: Arc::new(Inner {
                windows: track(windows, 0),
                outbox: track(outbox, 1),
                invitations: track(invitations, 2),
                outcomes,
                identities: track(identities, 4),
                aliases: track(aliases, 5),
                registry_lock: Mutex::default(),
                seen,
                consent: consent::ConsentTrees::new(consent_trees, &path)?,
                back_off: back_off::BackOffTree::new(track(back_off_tree, TREE_COUNT - 1)),
                outcome_book: outcomes::OutcomeBook::default(),
                outcome_journal,
                db,
                index,
                claims: claims::Claims::default(),
                outbox_lock: Mutex::default(),
                commit,
                checkpoint,
                uncertain,
                integrity: report,
                skipped_keys,
                legacy_phone_keys,
                closing: closed_files::Closing::new(path.clone(), lock),
                path,
            }),
        })
    }

    /// What the integrity check at open found: per tree, what it must hold (after a clean
    /// shutdown) and what it holds, and where the files were copied before recovery after
    /// an unclean shutdown.
    pub fn integrity(&self) -> &IntegrityReport {
        &self.inner.integrity
    }

    /// The key a conversation's window is kept under in the `windows` tree (schema
    /// version 4: 13 bytes, docs/store.md "Key layout"), for tools and tests that read or
    /// damage the sled tree directly.
    pub fn window_key(conversation: Conversation) -> [u8; 13] {
        codec::window_key(conversation)
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// How many keys of the windows tree were skipped at open because they name no
    /// conversation.
    pub fn skipped_keys(&self) -> usize {
        self.inner.skipped_keys
    }

    /// How many conversations, found at open, are keyed by a phone spelling an earlier
    /// release stored and this one unifies with another (a Brazilian mobile without its
    /// ninth digit, a Mexican `521…`, an Argentinian `54…` without the `9`): messages under
    /// the canonical spelling do not find them. Export, then import into a new store,
    /// moves them to their canonical keys (docs/store.md).
    pub fn legacy_phone_keys(&self) -> usize {
        self.inner.legacy_phone_keys
    }

    /// How many group-commit flushes have run (0 in periodic mode).
    pub fn group_commit_flushes(&self) -> u64 {
        self.inner.commit.as_ref().map_or(0, GroupCommit::flushes)
    }

    /// How many inbound message ids the redelivery memory holds (expired ones not yet
    /// pruned included).
    pub fn remembered_inbound_ids(&self) -> usize {
        self.inner.seen.len()
    }

    /// The bytes sled reports for the database on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.inner.db.size_on_disk()?)
    }

    /// Applies `change` to the conversation's record under its shard lock and writes it to
    /// sled; returns the record before and after. Not yet durable.
    fn update_window(
        &self,
        conversation: Conversation,
        change: impl FnOnce(Option<WindowRecord>) -> Option<WindowRecord>,
    ) -> Result<(Option<WindowRecord>, Option<WindowRecord>), StoreError> {
        let mut shard = self.inner.index.write(&conversation);
        // A corrupt value is replaced: a new fact about the conversation is worth more
        // than an unreadable one, and an earlier-than-real time only closes sooner.
        let previous = shard.get(&conversation).unwrap_or(None);
        let Some(current) = change(previous) else {
            return Ok((previous, None));
        };
        if previous != Some(current) {
            self.inner.windows.insert(
                codec::window_key(conversation),
                codec::encode_window(&current),
            )?;
            shard.put(conversation, &current);
        }
        Ok((previous, Some(current)))
    }

    /// Records an inbound message, blocking the calling thread (for durable mode, until
    /// it is on disk).
    pub fn record_inbound_blocking(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> Result<InboundUpdate, StoreError> {
        let update = self.apply_inbound(conversation, at)?;
        if let Some(commit) = &self.inner.commit {
            commit.wait_blocking()?;
        }
        Ok(update)
    }

    fn apply_inbound(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> Result<InboundUpdate, StoreError> {
        let at = crate::window::truncate_to_millis(at);
        let (previous, current) = self.update_window(conversation, |previous| {
            Some(previous.map_or(WindowRecord::inbound(at), |p| p.with_inbound(at)))
        })?;
        let current = current.unwrap_or(WindowRecord::inbound(at));
        Ok(InboundUpdate { previous, current })
    }

    fn apply_closure(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> Result<Option<WindowRecord>, StoreError> {
        let at = crate::window::truncate_to_millis(at);
        let (_, current) = self.update_window(conversation, |previous| {
            previous.map(|p| p.with_gateway_closure(at))
        })?;
        Ok(current)
    }

    /// The conversation's record, from memory.
    pub fn window_blocking(
        &self,
        conversation: Conversation,
    ) -> Result<Option<WindowRecord>, StoreError> {
        self.inner
            .index
            .read(&conversation)
            .get(&conversation)
            .map_err(|detail| corrupt(conversation, detail))
    }

    async fn durable(&self) -> Result<(), StoreError> {
        match &self.inner.commit {
            Some(commit) => commit.wait().await,
            None => Ok(()),
        }
    }

    fn prefix_keys(
        tree: &TrackedTree,
        conversation: Conversation,
    ) -> Result<Vec<sled::IVec>, StoreError> {
        tree.scan_prefix(conversation.to_key())
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::from)
    }

    fn queued_entries(
        &self,
        conversation: Conversation,
    ) -> Result<Vec<(sled::IVec, QueuedMessage)>, StoreError> {
        self.inner
            .outbox
            .scan_prefix(conversation.to_key())
            .map(|entry| {
                let (key, value) = entry?;
                let message = codec::decode_queued(&value).map_err(|d| corrupt(conversation, d))?;
                Ok((key, message))
            })
            .collect()
    }

    /// Under the outbox lock: the key a new message `message_id` goes under, `None` when
    /// it is already queued, or [`StoreError::OutboxFull`].
    fn outbox_slot(
        &self,
        conversation: Conversation,
        message_id: MessageId,
        limit: usize,
    ) -> Result<Option<[u8; 24]>, StoreError> {
        let queued = self.queued_entries(conversation)?;
        if queued.iter().any(|(_, m)| m.message_id == message_id) {
            return Ok(None);
        }
        if queued.len() >= limit {
            return Err(StoreError::OutboxFull {
                conversation,
                limit,
            });
        }
        let sequence = self.inner.db.generate_id()?;
        Ok(Some(codec::outbox_key(conversation, sequence)))
    }

    /// Under the outbox lock: the key of the queued message `message_id`, if queued.
    fn queued_key(
        &self,
        conversation: Conversation,
        message_id: MessageId,
    ) -> Result<Option<sled::IVec>, StoreError> {
        Ok(self
            .queued_entries(conversation)?
            .into_iter()
            .find(|(_, m)| m.message_id == message_id)
            .map(|(k, _)| k))
    }

    fn lock_outbox(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner
            .outbox_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Opens sled while holding our advisory lock. sled's own file lock can outlive a handle
/// of this process dropped a moment ago (its background flusher lets go of the files
/// asynchronously), so a lock refusal is retried briefly; only after that is it reported
/// as another user of the directory.
fn open_sled(config: &sled::Config, path: &Path) -> Result<sled::Db, StoreError> {
    const PATIENCE: Duration = Duration::from_secs(2);
    let started = std::time::Instant::now();
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(io)) if io.to_string().contains("could not acquire lock") => {
                if started.elapsed() >= PATIENCE {
                    return Err(StoreError::InUse {
                        path: path.to_owned(),
                    });
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(other) => return Err(other.into()),
        }
    }
}

/// How many old-layout window entries one sled batch moves: each batch is atomic, so a
/// crash leaves every conversation under exactly one of its two keys.
const MIGRATION_BATCH: usize = 10_000;

/// Moves the `windows` entries keyed in the layout before schema version 4 (16-byte keys,
/// 8-byte times) to this one's (13-byte keys, 6-byte times), in atomic batches (insert
/// the new key, remove the old), then flushes. The value written is the index's record,
/// which merged both keys' records when a conversation had both; an unreadable value is
/// moved as it is (it stays reported as corrupt, naming its conversation).
fn migrate_window_keys(
    windows: &sled::Tree,
    index: &Index,
    old_keys: &[sled::IVec],
    path: &Path,
) -> Result<(), StoreError> {
    tracing::info!(path = %path.display(), windows = old_keys.len(), "moving windows to the compact layout (schema version 4)");
    for chunk in old_keys.chunks(MIGRATION_BATCH) {
        let mut batch = sled::Batch::default();
        for key in chunk {
            let Some(conversation) = codec::parse_window_key(key) else {
                continue;
            };
            let value = match index.read(&conversation).get(&conversation) {
                Ok(Some(record)) => codec::encode_window(&record).into(),
                _ => match windows.get(key)? {
                    Some(value) => value,
                    None => continue,
                },
            };
            batch.insert(&codec::window_key(conversation)[..], value);
            batch.remove(key);
        }
        windows.apply_batch(batch)?;
    }
    windows.flush()?;
    Ok(())
}

/// Refuses a store of a newer schema; writes this build's version into a new one. Returns
/// the version the store held (this build's, for a new one).
fn check_schema(db: &sled::Db, path: &Path) -> Result<u32, StoreError> {
    match db.get(codec::SCHEMA_KEY)? {
        Some(bytes) => {
            let found = <[u8; 4]>::try_from(bytes.as_ref())
                .map(u32::from_be_bytes)
                .map_err(|_| StoreError::SchemaTooNew {
                    path: path.to_owned(),
                    found: u32::MAX,
                    supported: SCHEMA_VERSION,
                })?;
            if found > SCHEMA_VERSION {
                return Err(StoreError::SchemaTooNew {
                    path: path.to_owned(),
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            Ok(found)
        }
        None => {
            db.insert(codec::SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
            db.flush()?;
            Ok(SCHEMA_VERSION)
        }
    }
}

impl WindowStore for SledStore {
    async fn record_inbound(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> Result<InboundUpdate, StoreError> {
        let update = self.apply_inbound(conversation, at)?;
        self.durable().await?;
        Ok(update)
    }

    async fn record_inbound_once(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
        id: &InboundId,
        received_at: DateTime<Utc>,
        remember_until: DateTime<Utc>,
    ) -> Result<InboundReceipt, StoreError> {
        let receipt = {
            let seen = &self.inner.seen;
            let mut memory = seen.lock();
            match seen.check(&memory, conversation.business, id, received_at) {
                Sighting::Seen(first_received_at) => {
                    InboundReceipt::Duplicate { first_received_at }
                }
                Sighting::New => {
                    let update = self.apply_inbound(conversation, at)?;
                    seen.remember(
                        &mut memory,
                        conversation.business,
                        id,
                        received_at,
                        remember_until,
                    )?;
                    InboundReceipt::Recorded(update)
                }
            }
        };
        // One flush makes the window and the remembered id durable together; a duplicate
        // waits too, so the first copy it was judged against is on disk when it returns.
        if let Err(error) = self.durable().await {
            // The caller is told the message was not recorded, so the sender will deliver
            // it again: that copy must not be taken for a duplicate of this one.
            if matches!(receipt, InboundReceipt::Recorded(_)) {
                let seen = &self.inner.seen;
                let mut memory = seen.lock();
                if let Err(forget) = seen.forget(&mut memory, conversation.business, id) {
                    tracing::warn!(%conversation, %id, error = %forget, "could not forget an inbound id after a failed flush");
                }
            }
            return Err(error);
        }
        Ok(receipt)
    }

    async fn remembered_inbound(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<RememberedInbound>, StoreError> {
        Ok(self.inner.seen.remembered(now))
    }

    async fn remember_inbound(
        &self,
        entry: RememberedInbound,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let inserted = {
            let seen = &self.inner.seen;
            let mut memory = seen.lock();
            seen.insert(&mut memory, entry, now)?
        };
        self.durable().await?;
        Ok(inserted)
    }

    async fn record_gateway_closure(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> Result<Option<WindowRecord>, StoreError> {
        let current = self.apply_closure(conversation, at)?;
        self.durable().await?;
        Ok(current)
    }

    async fn window(&self, conversation: Conversation) -> Result<Option<WindowRecord>, StoreError> {
        self.window_blocking(conversation)
    }

    async fn inbound_between(
        &self,
        after: DateTime<Utc>,
        up_to: DateTime<Utc>,
    ) -> Result<Vec<(Conversation, WindowRecord)>, StoreError> {
        Ok(self.inner.index.inbound_between(after, up_to))
    }

    async fn count(&self) -> Result<u64, StoreError> {
        Ok(self.inner.index.len() as u64)
    }

    async fn windows(&self) -> Result<Vec<WindowEntry>, StoreError> {
        Ok(self
            .inner
            .index
            .all()
            .into_iter()
            .filter_map(|(conversation, lookup)| match lookup {
                Ok(Some(record)) => Some((conversation, Ok(record))),
                Ok(None) => None,
                Err(detail) => Some((conversation, Err(corrupt(conversation, detail)))),
            })
            .collect())
    }

    async fn forget(&self, conversation: Conversation) -> Result<bool, StoreError> {
        let mut found = {
            let mut shard = self.inner.index.write(&conversation);
            let had = self
                .inner
                .windows
                .remove(codec::window_key(conversation))?
                .is_some();
            shard.remove(&conversation) || had
        };
        {
            let _outbox = self.lock_outbox();
            for key in Self::prefix_keys(&self.inner.outbox, conversation)? {
                found |= self.inner.outbox.remove(key)?.is_some();
            }
        }
        found |= self
            .inner
            .invitations
            .remove(conversation.to_key())?
            .is_some();
        found |= self.forget_outcomes(conversation)?;
        self.durable().await?;
        Ok(found)
    }

    async fn flush(&self) -> Result<(), StoreError> {
        match &self.inner.commit {
            Some(commit) => commit.wait().await,
            None => {
                // Journaled outcomes go in first (a group commit does this itself).
                self.inner.outcome_journal.write_pending()?;
                self.inner.db.flush_async().await?;
                Ok(())
            }
        }
    }

    /// Writes the health key of the default tree and waits until it is on disk.
    async fn check_writable(&self) -> Result<(), StoreError> {
        let now = chrono::Utc::now().timestamp_millis();
        self.inner
            .db
            .insert(codec::HEALTH_KEY, &now.to_be_bytes())?;
        self.flush().await
    }
}

impl OutboxStore for SledStore {
    async fn enqueue(
        &self,
        conversation: Conversation,
        message: QueuedMessage,
        limit: usize,
    ) -> Result<bool, StoreError> {
        {
            let _outbox = self.lock_outbox();
            let Some(key) = self.outbox_slot(conversation, message.message_id, limit)? else {
                return Ok(false);
            };
            self.inner
                .outbox
                .insert(key, codec::encode_queued(&message))?;
        }
        self.durable().await?;
        Ok(true)
    }

    async fn queued(&self, conversation: Conversation) -> Result<Vec<QueuedMessage>, StoreError> {
        Ok(self
            .queued_entries(conversation)?
            .into_iter()
            .map(|(_, m)| m)
            .collect())
    }

    async fn dequeue(
        &self,
        conversation: Conversation,
        message_id: MessageId,
    ) -> Result<bool, StoreError> {
        let removed = {
            let _outbox = self.lock_outbox();
            match self.queued_key(conversation, message_id)? {
                Some(key) => self.inner.outbox.remove(key)?.is_some(),
                None => false,
            }
        };
        self.durable().await?;
        Ok(removed)
    }

    async fn reassign(
        &self,
        conversation: Conversation,
        old: MessageId,
        new: MessageId,
    ) -> Result<bool, StoreError> {
        let found = {
            let _outbox = self.lock_outbox();
            let entry = self
                .queued_entries(conversation)?
                .into_iter()
                .find(|(_, m)| m.message_id == old);
            match entry {
                Some((key, mut message)) => {
                    message.message_id = new;
                    self.inner
                        .outbox
                        .insert(key, codec::encode_queued(&message))?;
                    true
                }
                None => false,
            }
        };
        self.durable().await?;
        Ok(found)
    }

    async fn conversations_with_queued(&self) -> Result<Vec<Conversation>, StoreError> {
        let mut found: Vec<Conversation> = Vec::new();
        for key in self.inner.outbox.iter().keys() {
            let key = key?;
            if let Some(conversation) = Conversation::from_key(&key)
                && found.last() != Some(&conversation)
            {
                found.push(conversation);
            }
        }
        Ok(found)
    }

    async fn claim(
        &self,
        message_id: MessageId,
        holder: Uuid,
        now: DateTime<Utc>,
        lease: TimeDelta,
    ) -> Result<bool, StoreError> {
        crate::store::check_claim_time(now)?;
        let lease = lease.to_std().unwrap_or(Duration::ZERO);
        Ok(self.inner.claims.take(message_id, holder, lease))
    }

    async fn release(&self, message_id: MessageId, holder: Uuid) -> Result<(), StoreError> {
        self.inner.claims.release(message_id, holder);
        Ok(())
    }

    async fn invitation(
        &self,
        conversation: Conversation,
    ) -> Result<Option<Invitation>, StoreError> {
        self.inner
            .invitations
            .get(conversation.to_key())?
            .map(|bytes| codec::decode_invitation(&bytes).map_err(|d| corrupt(conversation, d)))
            .transpose()
    }

    async fn invitations(&self) -> Result<Vec<(Conversation, Invitation)>, StoreError> {
        let mut all = Vec::new();
        for entry in self.inner.invitations.iter() {
            let (key, value) = entry?;
            let conversation = (key.len() == 16)
                .then(|| Conversation::from_key(&key))
                .flatten();
            let Some(conversation) = conversation else {
                continue;
            };
            let invitation =
                codec::decode_invitation(&value).map_err(|d| corrupt(conversation, d))?;
            all.push((conversation, invitation));
        }
        Ok(all)
    }

    async fn set_invitation(
        &self,
        conversation: Conversation,
        invitation: Option<Invitation>,
    ) -> Result<(), StoreError> {
        match invitation {
            Some(invitation) => {
                self.inner.invitations.insert(
                    conversation.to_key(),
                    &codec::encode_invitation(&invitation),
                )?;
            }
            None => {
                self.inner.invitations.remove(conversation.to_key())?;
            }
        }
        self.durable().await
    }

    async fn outcome(
        &self,
        conversation: Conversation,
        message_id: MessageId,
    ) -> Result<Option<String>, StoreError> {
        self.outcome_now(conversation, message_id)
    }

    async fn outcome_by_wa_id(
        &self,
        conversation: Conversation,
        wa_id: &str,
    ) -> Result<Option<(MessageId, String)>, StoreError> {
        self.outcome_by_wa_id_now(conversation, wa_id)
    }

    async fn outcome_conversation(
        &self,
        business: Option<PhoneNumber>,
        message_id: MessageId,
    ) -> Result<Option<Conversation>, StoreError> {
        self.outcome_conversation_now(business, message_id)
    }

    async fn outcome_conversation_by_wa_id(
        &self,
        business: Option<PhoneNumber>,
        wa_id: &str,
    ) -> Result<Option<(Conversation, MessageId)>, StoreError> {
        self.outcome_conversation_by_wa_id_now(business, wa_id)
    }

    async fn outcomes(
        &self,
        conversation: Conversation,
    ) -> Result<Vec<(MessageId, String)>, StoreError> {
        self.outcomes_now(conversation)
    }

    async fn put_outcome(
        &self,
        conversation: Conversation,
        outcome: StoredOutcome,
    ) -> Result<(), StoreError> {
        // Not waited on in durable mode: see the trait. The next flush (group commit or
        // sled's background flush) takes it to disk.
        self.put_outcome_now(conversation, &outcome)
    }

    /// As the trait says: one sled transaction over the outbox, the outcome and its
    /// index entries, then a flush before returning, in periodic mode too.
    async fn enqueue_with_outcome(
        &self,
        conversation: Conversation,
        message: QueuedMessage,
        limit: usize,
        outcome: StoredOutcome,
    ) -> Result<bool, StoreError> {
        let added = self.enqueue_with_outcome_now(conversation, &message, limit, &outcome)?;
        WindowStore::flush(self).await?;
        Ok(added)
    }

    /// As the trait says: one sled transaction, then a flush before returning, in
    /// periodic mode too.
    async fn dequeue_with_outcome(
        &self,
        conversation: Conversation,
        message_id: MessageId,
        outcome: StoredOutcome,
    ) -> Result<bool, StoreError> {
        let found = self.dequeue_with_outcome_now(conversation, message_id, &outcome)?;
        WindowStore::flush(self).await?;
        Ok(found)
    }
}

impl IdentityStore for SledStore {
    async fn user_ref(&self, user: &Bsuid) -> Result<UserRef, StoreError> {
        let user = self.user_ref_now(user)?;
        self.durable().await?;
        Ok(user)
    }

    async fn find_user_ref(&self, user: &Bsuid) -> Result<Option<UserRef>, StoreError> {
        Ok(self
            .find_handle(identity::Kind::User, user.as_str())?
            .and_then(UserRef::new))
    }

    async fn group_ref(&self, group: &GroupId) -> Result<GroupRef, StoreError> {
        let group = self.group_ref_now(group)?;
        self.durable().await?;
        Ok(group)
    }

    async fn find_group_ref(&self, group: &GroupId) -> Result<Option<GroupRef>, StoreError> {
        Ok(self
            .find_handle(identity::Kind::Group, group.as_str())?
            .and_then(GroupRef::new))
    }

    async fn user_id(&self, user: UserRef) -> Result<Option<Bsuid>, StoreError> {
        self.user_id_now(user)
    }

    async fn group_id(&self, group: GroupRef) -> Result<Option<GroupId>, StoreError> {
        self.group_id_now(group)
    }

    async fn users(&self) -> Result<Vec<(UserRef, Bsuid)>, StoreError> {
        self.handles(identity::Kind::User)?
            .iter()
            .map(|(handle, id)| crate::store::registry_user(*handle, id))
            .collect()
    }

    async fn groups(&self) -> Result<Vec<(GroupRef, GroupId)>, StoreError> {
        self.handles(identity::Kind::Group)?
            .iter()
            .map(|(handle, id)| crate::store::registry_group(*handle, id))
            .collect()
    }

    async fn record_alias(
        &self,
        business: PhoneNumber,
        user: &Bsuid,
        phone: PhoneNumber,
    ) -> Result<Option<PhoneNumber>, StoreError> {
        let previous = self.record_alias_now(business, user, phone)?;
        self.durable().await?;
        Ok(previous)
    }

    async fn alias(
        &self,
        business: PhoneNumber,
        user: &Bsuid,
    ) -> Result<Option<PhoneNumber>, StoreError> {
        self.alias_now(business, user)
    }

    async fn aliases(&self) -> Result<Vec<Alias>, StoreError> {
        self.aliases_now()
    }

    /// As the trait says: one sled transaction (see the `identity` module), then the
    /// durability wait of the store's mode.
    async fn move_customer(
        &self,
        business: PhoneNumber,
        from: Customer,
        to: Customer,
    ) -> Result<MovedRecords, StoreError> {
        // The customer's back-off is carried first, outside the move's transaction (it is
        // the customer's across business numbers, and stays with `from` too): a crash
        // between the two leaves it on both, never on neither.
        let back_off = from != to && self.copy_back_off_now(from, to)?;
        let mut moved = self.move_customer_now(business, from, to)?;
        moved.consent |= back_off;
        self.durable().await?;
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sled failure is the backend-neutral error, named `sled`, with sled's own error as
    /// its source, and not worth retrying as it is.
    #[test]
    fn a_sled_failure_is_the_backend_error_with_sleds_as_its_source() {
        let error = StoreError::from(sled::Error::Unsupported("a test's refusal".into()));
        assert!(matches!(
            error,
            StoreError::Backend {
                backend: SLED_BACKEND,
                transient: false,
                ..
            }
        ));
        assert!(!error.retry_later_may_help());
        let source = std::error::Error::source(&error)
            .and_then(|source| source.downcast_ref::<sled::Error>());
        assert!(
            matches!(source, Some(sled::Error::Unsupported(_))),
            "{source:?}"
        );
        assert_eq!(
            error.to_string(),
            "sled store error: Unsupported: a test's refusal"
        );
    }
}
