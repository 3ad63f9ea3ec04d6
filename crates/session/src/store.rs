//! What a store keeps, and the traits every store (sled, Redis) implements.
//!
//! The traits are deliberately small and dumb: they persist facts (inbound times, gateway
//! closures, queued messages, invitations, send outcomes) and never apply the window rule,
//! which lives in one place, [`crate::WindowRule`], and is applied by [`crate::Sessions`].

use std::future::Future;
use std::path::PathBuf;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    Bsuid, Conversation, Customer, GroupId, GroupRef, InboundDigest, InboundId, MessageId,
    PhoneNumber, UserRef, WindowRecord,
};

/// A failure of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process (or another handle in this one) has the database open.
    #[error(
        "database {path} is in use by another process; stop it, or use a shared store such as Redis"
    )]
    InUse {
        /// The database directory.
        path: PathBuf,
    },
    /// The database was written by a newer version of this library.
    #[error(
        "database {path} has schema version {found}, but this build understands up to {supported}; upgrade lipachat, or export with the newer version and import here"
    )]
    SchemaTooNew {
        /// The database directory.
        path: PathBuf,
        /// The version found on disk.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The path holds something other than a lipachat session store (a file, or a
    /// directory of other files without our marker). Nothing there was changed.
    #[error(
        "{path} is not a lipachat session store: it holds {found}; nothing was changed. Give the directory of a store, or a new or empty directory to create one"
    )]
    NotAStore {
        /// The path given.
        path: PathBuf,
        /// What is there instead (a few names and sizes).
        found: String,
    },
    /// There is no store at the path, and the open was not allowed to create one
    /// ([`crate::OpenMode::Existing`]). Nothing was created.
    #[error("no store at {}: {}", path.display(), if *empty_directory { "the directory is empty" } else { "it does not exist" })]
    NoStore {
        /// The path given.
        path: PathBuf,
        /// Whether the path is an existing, empty directory (else nothing is there).
        empty_directory: bool,
    },
    /// The store's integrity check found it does not hold what it must: entries are
    /// missing or different, or writes acknowledged as durable are gone. The report names
    /// what, per tree.
    #[error(
        "{report}. Investigate before writing to it; to open it with what it holds (and make that the new reference), use SledConfig::accept_damage or `session-check verify --accept`"
    )]
    #[cfg(feature = "sled")]
    Damaged {
        /// What the check found.
        report: Box<crate::IntegrityReport>,
    },
    /// A stored value for one conversation cannot be decoded; other conversations work.
    #[error(
        "stored value for {conversation} is corrupt: {detail}; `forget` it or record a new inbound message to replace it"
    )]
    Corrupt {
        /// The conversation whose value is unreadable.
        conversation: Conversation,
        /// What was wrong with it.
        detail: String,
    },
    /// A customer's stored per-user marketing back-off (131049) cannot be decoded;
    /// other customers work.
    #[error(
        "stored marketing back-off of customer {customer} is corrupt: {detail}; a new 131049 for the customer replaces it"
    )]
    CorruptBackOff {
        /// The customer whose back-off is unreadable.
        customer: Customer,
        /// What was wrong with it.
        detail: String,
    },
    /// A back-off a store was asked to keep is not one it keeps
    /// ([`crate::back_off::check_back_off`]): a group's; nothing was written.
    #[error("marketing back-off of customer {customer} refused: {detail}")]
    InvalidBackOff {
        /// The customer the back-off was for.
        customer: Customer,
        /// What is wrong with it.
        detail: String,
    },
    /// A conversation's outbox already holds as many messages as allowed.
    #[error(
        "outbox for {conversation} is full ({limit} messages waiting for the customer's reply)"
    )]
    OutboxFull {
        /// The conversation.
        conversation: Conversation,
        /// The configured limit.
        limit: usize,
    },
    /// A claim was asked for at a time before 1970-01-01: no real clock reads that, and
    /// a stamp there is one a store could not order against its own clock.
    #[error(
        "claim time {now} is before 1970-01-01T00:00:00Z; claims take the time from a real clock"
    )]
    ClaimBeforeEpoch {
        /// The time the caller gave.
        now: DateTime<Utc>,
    },
    /// A stored identity record (a user or group handle, an alias) cannot be read; the
    /// rest of the store works.
    #[error("stored identity record {record} is corrupt: {detail}")]
    CorruptIdentity {
        /// Which record (the id or handle it is for).
        record: String,
        /// What was wrong with it.
        detail: String,
    },
    /// Every handle of a kind is allocated (2^46 users or about 5.5 × 10^13 groups):
    /// nothing was allocated.
    #[error("no {kind} handle is left to allocate; export the store and import it into a new one")]
    HandlesExhausted {
        /// `user` or `group`.
        kind: &'static str,
    },
    /// A line of an import is not a valid record.
    #[error("import line {line}: {detail}")]
    Import {
        /// The 1-based line number.
        line: usize,
        /// What was wrong with it.
        detail: String,
    },
    /// A line of an import holds a time too far ahead of the system clock; nothing was
    /// imported.
    #[error("import line {line}: {source}")]
    ImportFutureTime {
        /// The 1-based line number.
        line: usize,
        /// The time and the clock it is ahead of.
        source: crate::FutureTimeError,
    },
    /// A file-system operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The backend under the store (the embedded database, a server) failed or could not
    /// be reached. The same shape for every backend: `backend` names it, `source` says
    /// what failed and carries its own cause chain (walk it with
    /// [`std::error::Error::source`]). A backend's source never holds a secret (a
    /// password, a key).
    #[error("{backend} store error: {source}")]
    Backend {
        /// Which backend: `sled`, `redis`, or another store's name.
        backend: &'static str,
        /// Whether the same call may succeed later (a server unreachable or slow to
        /// answer), as the backend judges; `false` for a failure that repeats (a
        /// refused setting, a database error).
        transient: bool,
        /// What failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A portfolio name given for the messaging limit count is not one a store keeps
    /// ([`crate::consent::check_portfolio_name`]); nothing was counted.
    #[error("{detail}")]
    InvalidPortfolio {
        /// What is wrong with the name.
        detail: String,
    },
    /// A messaging limit count was asked on a clock of the other kind than the counts
    /// its portfolio holds: one of a simulated clock (its times used as given) and one of
    /// a real clock (stamped with the store's own clock) would prune each other's entries
    /// and let more than the tier through; nothing was counted, and the send is not made.
    #[error(
        "messaging limit count of portfolio {portfolio} refused: it holds counts made on a {held} clock, and this one is on a {asked} clock; a simulated clock and a real one cannot share a portfolio"
    )]
    MixedCountClocks {
        /// The portfolio counted.
        portfolio: String,
        /// The kind of clock the portfolio's live counts were made on (`simulated` or `real`).
        held: &'static str,
        /// The kind of clock of the refused count.
        asked: &'static str,
    },
    /// The store is closed (its background committer stopped).
    #[error("the store is closed")]
    Closed,
}

impl StoreError {
    /// A [`StoreError::Backend`] failure of `backend` that repeats if the call is made
    /// again (a refused setting, a database error).
    pub fn backend(
        backend: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Backend {
            backend,
            transient: false,
            source: source.into(),
        }
    }

    /// A [`StoreError::Backend`] failure of `backend` that a later call may not meet (a
    /// server unreachable or slow to answer).
    pub fn backend_unavailable(
        backend: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Backend {
            backend,
            transient: true,
            source: source.into(),
        }
    }

    /// Whether making the same call later may succeed: a backend that was unreachable or
    /// slow, or a file-system failure.
    pub fn retry_later_may_help(&self) -> bool {
        matches!(
            self,
            Self::Backend {
                transient: true,
                ..
            } | Self::Io { .. }
        )
    }
}

/// The result of recording an inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundUpdate {
    /// The record before this inbound message (`None`: never messaged).
    pub previous: Option<WindowRecord>,
    /// The record now stored (the inbound time only moves forward).
    pub current: WindowRecord,
}

/// What recording an inbound message by its id did
/// ([`WindowStore::record_inbound_once`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundReceipt {
    /// The first time this id reached this business number (within the memory's
    /// horizon): the inbound time was recorded.
    Recorded(InboundUpdate),
    /// The id was already seen for this business number: a redelivered webhook. Nothing
    /// was recorded.
    Duplicate {
        /// When the first copy was received.
        first_received_at: DateTime<Utc>,
    },
}

/// One entry of the redelivery memory ([`WindowStore::record_inbound_once`]): an inbound
/// message id, by its digest, already recorded for a business number. Listed by
/// [`WindowStore::remembered_inbound`] and inserted by [`WindowStore::remember_inbound`],
/// so an export carries the memory from one store to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RememberedInbound {
    /// The business number the message reached.
    pub business: PhoneNumber,
    /// The digest of the message's id ([`InboundId::digest`]).
    pub digest: InboundDigest,
    /// When the first copy was received.
    pub first_received_at: DateTime<Utc>,
    /// When the memory of it ends (an expiry, in the future while it is remembered).
    pub remember_until: DateTime<Utc>,
}

/// A message waiting in a conversation's outbox for the customer's reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMessage {
    /// The gateway `messageId` given when queued; every delivery attempt reuses it.
    pub message_id: MessageId,
    /// When it was queued.
    pub queued_at: DateTime<Utc>,
    /// The message itself, as JSON text written by the layer that queued it.
    pub payload: String,
}

impl QueuedMessage {
    /// Whether it has waited `ttl` or longer at `now` (its time to live ran out).
    pub fn has_expired(&self, ttl: TimeDelta, now: DateTime<Utc>) -> bool {
        crate::window::saturating_add(self.queued_at, ttl) <= now
    }
}

/// How many messages may wait in one conversation's outbox, unless configured otherwise
/// (the send path's `PolicyConfig::outbox_limit`, an import's limit).
pub const DEFAULT_OUTBOX_LIMIT: usize = 20;

/// How long a send's outcome is kept by default: 7 days, as long as the gateway may
/// redeliver a webhook, so a retry or a late report within that span still finds it.
pub const DEFAULT_OUTCOME_HORIZON: TimeDelta = TimeDelta::days(7);

/// The longest WhatsApp message id a store indexes ([`StoredOutcome::indexed_wa_id`]);
/// WhatsApp's own are under 100 bytes.
pub const MAX_WA_ID_BYTES: usize = 512;

/// Whether a store indexes an outcome under `wa_id`: not empty and at most
/// [`MAX_WA_ID_BYTES`] (other ids find nothing by WhatsApp id).
pub fn is_indexed_wa_id(wa_id: &str) -> bool {
    !wa_id.is_empty() && wa_id.len() <= MAX_WA_ID_BYTES
}

/// The longest time an outcome is kept, whatever [`StoredOutcome::keep_for`] asks:
/// 100 years (so every expiry stays a small, exact number of milliseconds).
pub const MAX_OUTCOME_KEEP: TimeDelta = TimeDelta::days(36_525);

/// The outcome of a logical send as a store keeps it: for a retried call with the same
/// `messageId`, and for a status callback that names only WhatsApp's id.
///
/// ```
/// use chrono::TimeDelta;
/// use lipachat_session::{MessageId, StoredOutcome};
///
/// let outcome = StoredOutcome::new(MessageId::new(), r#"{"kind":"sent"}"#)
///     .with_wa_id("wamid.HBgM")
///     .keep_for(TimeDelta::days(2));
/// assert_eq!(outcome.indexed_wa_id(), Some("wamid.HBgM"));
/// assert_eq!(outcome.keep_for_millis(), 2 * 86_400_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOutcome {
    /// The `messageId` it is stored under (the caller's, which a retry names).
    pub message_id: MessageId,
    /// The outcome, as JSON text written by the layer that stores it.
    pub text: String,
    /// WhatsApp's id of what was sent, if anything was; indexed unless empty or longer
    /// than [`MAX_WA_ID_BYTES`].
    pub wa_id: Option<String>,
    /// How long to keep it after the write, by the store's clock (at least 1 ms, at
    /// most [`MAX_OUTCOME_KEEP`]).
    pub keep_for: TimeDelta,
}

impl StoredOutcome {
    /// An outcome without a WhatsApp id, kept for [`DEFAULT_OUTCOME_HORIZON`].
    pub fn new(message_id: MessageId, text: impl Into<String>) -> Self {
        Self {
            message_id,
            text: text.into(),
            wa_id: None,
            keep_for: DEFAULT_OUTCOME_HORIZON,
        }
    }

    /// Sets WhatsApp's id of what was sent.
    pub fn with_wa_id(mut self, wa_id: impl Into<String>) -> Self {
        self.wa_id = Some(wa_id.into());
        self
    }

    /// Sets how long to keep it.
    pub fn keep_for(mut self, keep_for: TimeDelta) -> Self {
        self.keep_for = keep_for;
        self
    }

    /// The WhatsApp id a store indexes: [`StoredOutcome::wa_id`], unless it is empty or
    /// longer than [`MAX_WA_ID_BYTES`] (then the outcome is found by `messageId` only).
    pub fn indexed_wa_id(&self) -> Option<&str> {
        self.wa_id
            .as_deref()
            .filter(|wa_id| is_indexed_wa_id(wa_id))
    }

    /// [`StoredOutcome::keep_for`] in milliseconds, within 1 ms and [`MAX_OUTCOME_KEEP`].
    pub fn keep_for_millis(&self) -> i64 {
        self.keep_for
            .num_milliseconds()
            .clamp(1, MAX_OUTCOME_KEEP.num_milliseconds())
    }
}

/// The template sent to invite a reply while the window was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    /// The template send's `messageId`.
    pub message_id: MessageId,
    /// When it was sent.
    pub sent_at: DateTime<Utc>,
}

impl Invitation {
    /// When the cool-down after it ends: `cooldown` after it was sent (saturating at
    /// chrono's range, so a "never again" cool-down stays in the future).
    pub fn cooldown_ends(&self, cooldown: TimeDelta) -> DateTime<Utc> {
        crate::window::saturating_add(self.sent_at, cooldown)
    }
}

/// Refuses a claim time before 1970-01-01 with [`StoreError::ClaimBeforeEpoch`]; every
/// store's [`OutboxStore::claim`] checks its `now` with this before touching anything.
pub fn check_claim_time(now: DateTime<Utc>) -> Result<(), StoreError> {
    if now < DateTime::<Utc>::UNIX_EPOCH {
        return Err(StoreError::ClaimBeforeEpoch { now });
    }
    Ok(())
}

/// One conversation's record as listed by [`WindowStore::windows`]: a corrupt record is
/// its error, so one bad value does not hide the rest.
pub type WindowEntry = (Conversation, Result<WindowRecord, StoreError>);

/// Persistence of windows: last inbound times, gateway closures and the closing-soon
/// index.
pub trait WindowStore: Send + Sync + 'static {
    /// Records an inbound message at `at`, keeping the maximum; atomic for concurrent
    /// callers. Returns the record before and after. Durable when the store's durability
    /// mode says so.
    fn record_inbound(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<InboundUpdate, StoreError>> + Send;

    /// Records an inbound message at `at` (as [`WindowStore::record_inbound`]) unless its
    /// platform id `id` was already seen for the conversation's business number and is
    /// still remembered at `received_at`; then nothing is recorded and
    /// [`InboundReceipt::Duplicate`] names when the first copy came.
    ///
    /// A recorded id is remembered until `remember_until` (the caller's horizon, measured
    /// on the receipt clock) and then forgotten by the store on its own (sled prunes a few
    /// expired ids on each call; Redis expires the key). Of concurrent callers with one
    /// id, exactly one gets [`InboundReceipt::Recorded`]. Durable when the store's
    /// durability mode says so, the id and the window together.
    fn record_inbound_once(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
        id: &InboundId,
        received_at: DateTime<Utc>,
        remember_until: DateTime<Utc>,
    ) -> impl Future<Output = Result<InboundReceipt, StoreError>> + Send;

    /// Every inbound id the redelivery memory still holds at `now` (entries whose
    /// `remember_until` is at or before `now` are skipped), for an export. Redis reads
    /// each entry's remaining lifetime, so its `remember_until` is `now` plus that.
    fn remembered_inbound(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<RememberedInbound>, StoreError>> + Send;

    /// Inserts `entry` into the redelivery memory (an import), so the id it stands for
    /// is a [`InboundReceipt::Duplicate`] here until `entry.remember_until`. An entry
    /// already remembered at `now` for the same business and digest is kept as it is; an
    /// entry already expired at `now` is not inserted. Returns whether it was inserted.
    fn remember_inbound(
        &self,
        entry: RememberedInbound,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records that the gateway reported the window closed at `at` (WhatsApp 131047).
    /// Returns the record now stored, or `None` when nothing is known of the
    /// conversation (there is no window to close).
    fn record_gateway_closure(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<WindowRecord>, StoreError>> + Send;

    /// The stored record (`None`: never messaged).
    fn window(
        &self,
        conversation: Conversation,
    ) -> impl Future<Output = Result<Option<WindowRecord>, StoreError>> + Send;

    /// The conversations whose last inbound time `t` satisfies `after < t <= up_to`,
    /// answered from an index, without scanning every conversation.
    fn inbound_between(
        &self,
        after: DateTime<Utc>,
        up_to: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<(Conversation, WindowRecord)>, StoreError>> + Send;

    /// How many conversations have a record.
    fn count(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Every conversation with its record, in key order (business, then customer). A
    /// corrupt record is returned as its error, so one bad value does not hide the rest.
    fn windows(&self) -> impl Future<Output = Result<Vec<WindowEntry>, StoreError>> + Send;

    /// Erases everything stored for the conversation: window, outbox, invitation, send
    /// outcomes (a customer's right to erasure). Returns whether anything was there.
    fn forget(
        &self,
        conversation: Conversation,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Makes everything written so far durable.
    fn flush(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Checks that the store takes durable writes now, for a health check: writes a small
    /// record of its own (read by nothing else, listed by no export) and makes it
    /// durable. A store that answers reads but refuses writes (a full disk; Redis out of
    /// memory under `noeviction`, or a read-only replica) answers the error a webhook's
    /// write would get.
    fn check_writable(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Persistence of what the send path must remember: the outbox, invitations, delivery
/// claims and send outcomes (for idempotent retries).
pub trait OutboxStore: Send + Sync + 'static {
    /// Appends a message to the conversation's outbox, unless it already holds `limit`
    /// messages ([`StoreError::OutboxFull`]) or already holds this `message_id` (then it
    /// is left as it is and `false` is returned).
    fn enqueue(
        &self,
        conversation: Conversation,
        message: QueuedMessage,
        limit: usize,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The conversation's queued messages, oldest first.
    fn queued(
        &self,
        conversation: Conversation,
    ) -> impl Future<Output = Result<Vec<QueuedMessage>, StoreError>> + Send;

    /// Removes one queued message; returns whether it was there.
    fn dequeue(
        &self,
        conversation: Conversation,
        message_id: MessageId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives a queued message a new `messageId`, keeping its place in the queue (after the
    /// gateway definitely refused the old id, which it may deduplicate). Returns whether
    /// the old id was queued.
    fn reassign(
        &self,
        conversation: Conversation,
        old: MessageId,
        new: MessageId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The conversations that have queued messages.
    fn conversations_with_queued(
        &self,
    ) -> impl Future<Output = Result<Vec<Conversation>, StoreError>> + Send;

    /// Claims `message_id` (a queued message, or any `messageId` the caller derives as a
    /// lock name, such as one per logical send or per conversation) for
    /// `holder` for `lease`, so two callers or replicas never act on it at the same
    /// time. `false` when another live claim holds it. `holder` is a token the caller
    /// makes for this one claim (a random UUID), so that only it can release it.
    ///
    /// The lease runs on the store's own clock from the moment the claim is taken (the
    /// Redis server's clock; this process's monotonic clock for sled), not on `now`:
    /// callers whose clocks disagree (replicas with skewed clocks, a manual clock in
    /// tests) still see one claim last exactly one lease. `now` is the caller's reading
    /// of its clock; a time before 1970 is refused with
    /// [`StoreError::ClaimBeforeEpoch`] and nothing is claimed. A lease of zero or less
    /// holds nothing.
    fn claim(
        &self,
        message_id: MessageId,
        holder: Uuid,
        now: DateTime<Utc>,
        lease: TimeDelta,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Releases the claim on `message_id` if `holder` still holds it. A claim whose lease
    /// ran out and which another caller has taken since is left to that caller.
    fn release(
        &self,
        message_id: MessageId,
        holder: Uuid,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The invitation sent for the conversation's current closed window, if any.
    fn invitation(
        &self,
        conversation: Conversation,
    ) -> impl Future<Output = Result<Option<Invitation>, StoreError>> + Send;

    /// Every stored invitation, in conversation order.
    fn invitations(
        &self,
    ) -> impl Future<Output = Result<Vec<(Conversation, Invitation)>, StoreError>> + Send;

    /// Stores (or, with `None`, clears) the conversation's invitation.
    fn set_invitation(
        &self,
        conversation: Conversation,
        invitation: Option<Invitation>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The outcome stored under `message_id`, unless its time to keep has passed.
    fn outcome(
        &self,
        conversation: Conversation,
        message_id: MessageId,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// The outcome whose [`StoredOutcome::wa_id`] is `wa_id`, with the `messageId` it is
    /// stored under, unless its time to keep has passed: a status callback that names
    /// only WhatsApp's message id finds its send with one indexed lookup. An outcome
    /// replaced by one without that WhatsApp id is no longer found by it.
    fn outcome_by_wa_id(
        &self,
        conversation: Conversation,
        wa_id: &str,
    ) -> impl Future<Output = Result<Option<(MessageId, String)>, StoreError>> + Send;

    /// The conversation whose send outcome is stored under our `messageId`, unless its
    /// time to keep has passed: a status callback that names only our `messageId` and no
    /// recipient (LipaChat's `MESSAGE_STATUS`) is tied back to its conversation by it.
    /// With `business`, only that business number's conversations are looked at;
    /// without, every business number's.
    ///
    /// A send with no stored outcome cannot be found. When a caller stored outcomes
    /// under one `messageId` in more than one conversation, which of them is found is
    /// not specified (and after one of them is removed, possibly none).
    fn outcome_conversation(
        &self,
        business: Option<PhoneNumber>,
        message_id: MessageId,
    ) -> impl Future<Output = Result<Option<Conversation>, StoreError>> + Send;

    /// The conversation and `messageId` of the live send outcome whose
    /// [`StoredOutcome::wa_id`] is `wa_id`, found without knowing the conversation: a
    /// status that names our WhatsApp message id but the recipient only by a
    /// business-scoped user id is tied back to the customer the message went to. With
    /// `business`, only that business number's outcomes are looked at; without, every
    /// business number's.
    ///
    /// As [`OutboxStore::outcome_by_wa_id`]: an expired outcome, or one replaced by an
    /// outcome without that WhatsApp id, is not found; a WhatsApp id longer than
    /// [`MAX_WA_ID_BYTES`] or empty is never indexed. When outcomes in more than one
    /// conversation carry the same WhatsApp id (WhatsApp's ids are unique, so only a
    /// caller's mistake does that), which of them is found is not specified. The sled
    /// store answers with a scan of the business number's outcomes (it keeps no index by
    /// WhatsApp id alone); Redis with one indexed read.
    fn outcome_conversation_by_wa_id(
        &self,
        business: Option<PhoneNumber>,
        wa_id: &str,
    ) -> impl Future<Output = Result<Option<(Conversation, MessageId)>, StoreError>> + Send;

    /// Every outcome stored for the conversation whose time to keep has not passed, by
    /// `messageId`, in no particular order (a scan of the conversation's outcomes).
    fn outcomes(
        &self,
        conversation: Conversation,
    ) -> impl Future<Output = Result<Vec<(MessageId, String)>, StoreError>> + Send;

    /// Stores the outcome of a logical send under its `messageId`, replacing any earlier
    /// one, so a retried call with the same `messageId` returns it instead of sending
    /// again. It is kept for [`StoredOutcome::keep_for`] after this write, by the store's
    /// clock (this machine's for sled, the server's for Redis), then removed.
    ///
    /// Outcomes written here are a cache in front of the gateway's own `messageId`
    /// deduplication, so a store may return before the outcome is on disk (the sled store
    /// does, in every mode, keeping the send path free of flush waits): an outcome lost
    /// in a crash costs at most one resend with the same `messageId`, which the gateway
    /// deduplicates. An outcome that must survive with a change of the outbox (a message
    /// queued, delivered or expired) goes through [`OutboxStore::enqueue_with_outcome`]
    /// or [`OutboxStore::dequeue_with_outcome`] instead.
    fn put_outcome(
        &self,
        conversation: Conversation,
        outcome: StoredOutcome,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// [`OutboxStore::enqueue`] and [`OutboxStore::put_outcome`] as one atomic, durable
    /// step: when it returns `Ok`, both the queued message and the outcome are stored
    /// (on disk, as far as the store's durability allows: the sled store flushes before
    /// returning in every mode); when it fails, neither is. A message already queued
    /// under this `message_id` is left as it is (`Ok(false)`) and the outcome is still
    /// stored; a full outbox stores nothing ([`StoreError::OutboxFull`]).
    ///
    /// A queued message and the outcome that says so must never part: a retry that
    /// finds no outcome would queue the message a second time.
    fn enqueue_with_outcome(
        &self,
        conversation: Conversation,
        message: QueuedMessage,
        limit: usize,
        outcome: StoredOutcome,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// [`OutboxStore::dequeue`] and [`OutboxStore::put_outcome`] as one atomic, durable
    /// step (as [`OutboxStore::enqueue_with_outcome`]): the queued message leaves the
    /// outbox exactly when the outcome saying what became of it (delivered, expired) is
    /// stored. The outcome is stored whether or not the message was still queued;
    /// returns whether it was.
    fn dequeue_with_outcome(
        &self,
        conversation: Conversation,
        message_id: MessageId,
        outcome: StoredOutcome,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// A business-scoped user id known to be the same person as a phone number, for one
/// business number ([`IdentityStore::record_alias`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Alias {
    /// The business number the user id was seen by (a user id is scoped to the business
    /// portfolio the number belongs to).
    pub business: PhoneNumber,
    /// The business-scoped user id.
    pub user: Bsuid,
    /// The phone number, in the spelling it was recorded with.
    pub phone: PhoneNumber,
}

/// What [`IdentityStore::move_customer`] moved from one customer to another.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MovedRecords {
    /// Whether a window record was moved (merged into the target's, keeping the latest
    /// inbound time and a closure still in force).
    pub window: bool,
    /// How many queued messages were appended to the target's outbox (a message whose
    /// `messageId` the target already held is not counted: it was dropped as the copy it
    /// is).
    pub queued: usize,
    /// Whether an invitation was moved (the later of the two is kept).
    pub invitation: bool,
    /// How many send outcomes were moved (the target's own outcome wins for a
    /// `messageId` both hold).
    pub outcomes: usize,
    /// Whether a marketing consent record was moved (merged with the target's:
    /// [`crate::MarketingConsent::merged_with`], opted out when either was, the later
    /// back-off), or the customer's back-off was carried to the target and lengthened
    /// its own.
    pub consent: bool,
    /// Whether a free entry point record was moved (the one whose window ends later is
    /// kept: [`crate::FreeEntryPoint::merged_with`]).
    pub free_entry_point: bool,
}

impl MovedRecords {
    /// Whether nothing was stored for the customer moved from.
    pub fn is_empty(&self) -> bool {
        !self.window
            && self.queued == 0
            && !self.invitation
            && self.outcomes == 0
            && !self.consent
            && !self.free_entry_point
    }
}

/// Persistence of who conversations are with, beyond phone numbers: handles for users
/// known by a business-scoped user id and for groups, aliases tying a user id to a phone
/// number, and moving everything stored for one customer to another.
///
/// Handles ([`UserRef`], [`GroupRef`]) are allocated once per id and never reused or
/// changed, so a conversation keyed by one stays its conversation; they are local to one
/// store (exports name the ids).
pub trait IdentityStore: Send + Sync + 'static {
    /// The handle of the user with this business-scoped user id, allocated on first use.
    /// Of concurrent callers with one new id, all get the same handle.
    fn user_ref(&self, user: &Bsuid) -> impl Future<Output = Result<UserRef, StoreError>> + Send;

    /// The handle of the user with this id, when one was allocated; allocates nothing.
    fn find_user_ref(
        &self,
        user: &Bsuid,
    ) -> impl Future<Output = Result<Option<UserRef>, StoreError>> + Send;

    /// The handle of the group with this id, allocated on first use (as
    /// [`IdentityStore::user_ref`]).
    fn group_ref(
        &self,
        group: &GroupId,
    ) -> impl Future<Output = Result<GroupRef, StoreError>> + Send;

    /// The handle of the group with this id, when one was allocated; allocates nothing.
    fn find_group_ref(
        &self,
        group: &GroupId,
    ) -> impl Future<Output = Result<Option<GroupRef>, StoreError>> + Send;

    /// The business-scoped user id a handle stands for (`None`: no such handle here).
    fn user_id(
        &self,
        user: UserRef,
    ) -> impl Future<Output = Result<Option<Bsuid>, StoreError>> + Send;

    /// The group id a handle stands for (`None`: no such handle here).
    fn group_id(
        &self,
        group: GroupRef,
    ) -> impl Future<Output = Result<Option<GroupId>, StoreError>> + Send;

    /// Every user handle with its id, in handle order.
    fn users(&self) -> impl Future<Output = Result<Vec<(UserRef, Bsuid)>, StoreError>> + Send;

    /// Every group handle with its id, in handle order.
    fn groups(&self) -> impl Future<Output = Result<Vec<(GroupRef, GroupId)>, StoreError>> + Send;

    /// Records that, for `business`, the user with id `user` has the phone number
    /// `phone` (a webhook named both). Returns the phone recorded before, if any (a
    /// different one when the user changed numbers). Durable when the store's durability
    /// mode says so.
    fn record_alias(
        &self,
        business: PhoneNumber,
        user: &Bsuid,
        phone: PhoneNumber,
    ) -> impl Future<Output = Result<Option<PhoneNumber>, StoreError>> + Send;

    /// The phone number recorded for `user` with `business`, if any.
    fn alias(
        &self,
        business: PhoneNumber,
        user: &Bsuid,
    ) -> impl Future<Output = Result<Option<PhoneNumber>, StoreError>> + Send;

    /// Every alias, ordered by business, then user id.
    fn aliases(&self) -> impl Future<Output = Result<Vec<Alias>, StoreError>> + Send;

    /// Moves everything stored for the conversation (`business`, `from`) into
    /// (`business`, `to`), and erases it from `from`: the window record (merged: the
    /// latest inbound time, and a gateway closure only while it is still in force), the
    /// queued messages (appended after the target's, in their order, skipping a
    /// `messageId` the target already holds), the invitation (the later one is kept) and
    /// the send outcomes (the target's own outcome wins for a `messageId` both hold), and
    /// the marketing consent and free entry point records (merged, keeping the more
    /// protective: opted out when either was, the later back-off; the free entry point
    /// window that ends later). An unreadable consent or free entry point record of
    /// either customer stops the move before anything changes
    /// ([`StoreError::Corrupt`]). The customer's per-user marketing back-off
    /// ([`crate::back_off`], kept per customer, not per business number) is carried to
    /// `to` (the later of the two) first and also stays with `from`, as another business
    /// number may still know the customer by it; `consent` then says it was carried. An
    /// unreadable back-off of either stops the move before anything changes
    /// ([`StoreError::CorruptBackOff`]); carrying it is protective, so a move that stops
    /// after it was carried leaves it carried.
    ///
    /// Moving a customer onto itself, or one with nothing stored, changes nothing. A
    /// move interrupted by a crash never loses a record: at worst both customers hold
    /// it, and moving again completes it (how each store achieves this is documented
    /// on it). Durable when the store's durability mode says so.
    fn move_customer(
        &self,
        business: PhoneNumber,
        from: Customer,
        to: Customer,
    ) -> impl Future<Output = Result<MovedRecords, StoreError>> + Send;
}

/// Reads a user registry entry as a store kept it (a handle's number and the id's text),
/// for store implementations: [`StoreError::CorruptIdentity`] when either is not one.
pub fn registry_user(handle: u64, id: &str) -> Result<(UserRef, Bsuid), StoreError> {
    let record = || format!("user#{handle}");
    let user = UserRef::new(handle).ok_or_else(|| StoreError::CorruptIdentity {
        record: record(),
        detail: "the handle is out of range".into(),
    })?;
    let id = Bsuid::parse(id).map_err(|e| StoreError::CorruptIdentity {
        record: record(),
        detail: e.to_string(),
    })?;
    Ok((user, id))
}

/// Reads a group registry entry as a store kept it, like [`registry_user`].
pub fn registry_group(handle: u64, id: &str) -> Result<(GroupRef, GroupId), StoreError> {
    let record = || format!("group#{handle}");
    let group = GroupRef::new(handle).ok_or_else(|| StoreError::CorruptIdentity {
        record: record(),
        detail: "the handle is out of range".into(),
    })?;
    let id = GroupId::parse(id).map_err(|e| StoreError::CorruptIdentity {
        record: record(),
        detail: e.to_string(),
    })?;
    Ok((group, id))
}

/// Reads an alias's phone number as a store kept it (its digits), for store
/// implementations: [`StoreError::CorruptIdentity`] naming the alias when it is not one.
pub fn registry_alias_phone(
    business: PhoneNumber,
    user: &str,
    phone: &str,
) -> Result<PhoneNumber, StoreError> {
    phone
        .parse()
        .map_err(|e: crate::PhoneError| StoreError::CorruptIdentity {
            record: format!("alias {user} of {business}"),
            detail: e.to_string(),
        })
}

/// A store that keeps windows, the outbox, identities, and cost, consent and limits
/// ([`crate::ConsentStore`]), as the send path needs.
pub trait Store: WindowStore + OutboxStore + IdentityStore + crate::ConsentStore {}

impl<T: WindowStore + OutboxStore + IdentityStore + crate::ConsentStore> Store for T {}
