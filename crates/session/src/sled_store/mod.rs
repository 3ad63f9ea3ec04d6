//! The embedded default store: sled on local disk.

mod codec;
mod group_commit;
mod index;
mod outcomes;

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

pub use codec::SCHEMA_VERSION;
use group_commit::GroupCommit;
use index::Index;

use crate::store::{
    InboundUpdate, Invitation, OutboxStore, QueuedMessage, StoredOutcome, WindowEntry, WindowStore,
};
use crate::{Conversation, StoreError, WindowRecord};

/// The lock file taken before sled opens, so a second opener gets a clear "in use" error.
const LOCK_FILE: &str = "lipachat.lock";

/// When a write counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// A record call returns only once its write is on disk. Concurrent callers share one
    /// flush (group commit).
    #[default]
    Durable,
    /// A record call returns once the write is in memory; sled flushes every `interval`.
    /// A crash loses at most the writes of the last interval (plus one flush's duration).
    Periodic {
        /// The flush interval.
        interval: Duration,
    },
}

/// How to open a [`SledStore`].
#[derive(Debug, Clone)]
pub struct SledConfig {
    path: PathBuf,
    durability: Durability,
    cache_capacity: u64,
}

impl SledConfig {
    /// The default sled page cache: 2 MiB (sled's own default is 1 GiB). Window checks
    /// are answered from the in-memory index, so sled's cache serves only writes and the
    /// outbox; a larger one costs memory without making checks faster.
    pub const DEFAULT_CACHE_CAPACITY: u64 = 2 * 1024 * 1024;

    /// A configuration for the database directory `path`: durable, 2 MiB cache.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            durability: Durability::default(),
            cache_capacity: Self::DEFAULT_CACHE_CAPACITY,
        }
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

    /// Opens (or creates) the store.
    pub fn open(self) -> Result<SledStore, StoreError> {
        SledStore::open_with(self)
    }
}

/// A live claim: until when, and the token of the caller that holds it. Kept in memory:
/// only this process can open the database, so no other process can hold a claim.
struct Claim {
    until: DateTime<Utc>,
    holder: Uuid,
}

struct Inner {
    path: PathBuf,
    db: sled::Db,
    windows: sled::Tree,
    outbox: sled::Tree,
    invitations: sled::Tree,
    outcomes: sled::Tree,
    outcome_book: outcomes::OutcomeBook,
    index: Index,
    claims: Mutex<HashMap<Uuid, Claim>>,
    outbox_lock: Mutex<()>,
    commit: Option<GroupCommit>,
    skipped_keys: usize,
    // Held for the store's lifetime: the advisory lock on the directory.
    _lock: File,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Clean shutdown flushes everything.
        if let Err(error) = self.db.flush() {
            tracing::error!(path = %self.path.display(), %error, "flush on close failed");
        }
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

    fn open_with(config: SledConfig) -> Result<Self, StoreError> {
        let path = config.path;
        std::fs::create_dir_all(&path).map_err(io_error(&path))?;
        let lock_path = path.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(StoreError::InUse { path }),
            Err(TryLockError::Error(e)) => return Err(io_error(&lock_path)(e)),
        }
        let mut sled_config = sled::Config::new()
            .path(&path)
            .cache_capacity(config.cache_capacity);
        sled_config = match config.durability {
            Durability::Durable => sled_config.flush_every_ms(Some(500)),
            Durability::Periodic { interval } => sled_config
                .flush_every_ms(Some(interval.as_millis().clamp(1, u64::MAX.into()) as u64)),
        };
        let db = open_sled(&sled_config, &path)?;
        check_schema(&db, &path)?;
        let windows = db.open_tree("windows")?;
        let index = Index::default();
        let mut skipped_keys = 0;
        for entry in windows.iter() {
            let (key, value) = entry?;
            let conversation = (key.len() == 16)
                .then(|| Conversation::from_key(&key))
                .flatten();
            let Some(conversation) = conversation else {
                skipped_keys += 1;
                tracing::warn!(key = ?key, "skipping a windows key that names no conversation");
                continue;
            };
            let mut shard = index.write(&conversation);
            match codec::decode_window(&value) {
                Ok(record) => shard.put(conversation, &record),
                Err(detail) => {
                    tracing::warn!(%conversation, %detail, "corrupt window value");
                    shard.put_corrupt(conversation, detail);
                }
            }
        }
        let commit = match config.durability {
            Durability::Durable => Some(GroupCommit::start(db.clone()).map_err(io_error(&path))?),
            Durability::Periodic { .. } => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                outbox: db.open_tree("outbox")?,
                invitations: db.open_tree("invitations")?,
                outcomes: db.open_tree("outcomes")?,
                outcome_book: outcomes::OutcomeBook::default(),
                windows,
                db,
                index,
                claims: Mutex::default(),
                outbox_lock: Mutex::default(),
                commit,
                skipped_keys,
                path,
                _lock: lock,
            }),
        })
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

    /// How many group-commit flushes have run (0 in periodic mode).
    pub fn group_commit_flushes(&self) -> u64 {
        self.inner.commit.as_ref().map_or(0, GroupCommit::flushes)
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
            self.inner
                .windows
                .insert(conversation.to_key(), codec::encode_window(&current))?;
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
        tree: &sled::Tree,
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
        message_id: Uuid,
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
        message_id: Uuid,
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
            Err(other) => return Err(StoreError::Sled(other)),
        }
    }
}

fn check_schema(db: &sled::Db, path: &Path) -> Result<(), StoreError> {
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
            Ok(())
        }
        None => {
            db.insert(codec::SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
            db.flush()?;
            Ok(())
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
            let had = self.inner.windows.remove(conversation.to_key())?.is_some();
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
                self.inner.db.flush_async().await?;
                Ok(())
            }
        }
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
        message_id: Uuid,
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
        old: Uuid,
        new: Uuid,
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
        message_id: Uuid,
        holder: Uuid,
        now: DateTime<Utc>,
        lease: TimeDelta,
    ) -> Result<bool, StoreError> {
        let mut claims = self
            .inner
            .claims
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        claims.retain(|_, claim| claim.until > now);
        if claims.contains_key(&message_id) {
            return Ok(false);
        }
        claims.insert(
            message_id,
            Claim {
                until: crate::window::saturating_add(now, lease),
                holder,
            },
        );
        Ok(true)
    }

    async fn release(&self, message_id: Uuid, holder: Uuid) -> Result<(), StoreError> {
        let mut claims = self
            .inner
            .claims
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if claims
            .get(&message_id)
            .is_some_and(|claim| claim.holder == holder)
        {
            claims.remove(&message_id);
        }
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
        message_id: Uuid,
    ) -> Result<Option<String>, StoreError> {
        self.outcome_now(conversation, message_id)
    }

    async fn outcome_by_wa_id(
        &self,
        conversation: Conversation,
        wa_id: &str,
    ) -> Result<Option<(Uuid, String)>, StoreError> {
        self.outcome_by_wa_id_now(conversation, wa_id)
    }

    async fn outcomes(
        &self,
        conversation: Conversation,
    ) -> Result<Vec<(Uuid, String)>, StoreError> {
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
        message_id: Uuid,
        outcome: StoredOutcome,
    ) -> Result<bool, StoreError> {
        let found = self.dequeue_with_outcome_now(conversation, message_id, &outcome)?;
        WindowStore::flush(self).await?;
        Ok(found)
    }
}
