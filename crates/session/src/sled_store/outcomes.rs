//! Send outcomes: stored with their expiry, found by `messageId` or by WhatsApp id, and
//! pruned once they expire.
//!
//! Each outcome lives in the `outcomes` tree with its expiry and WhatsApp id in front of
//! its text; the `outcome_index` tree orders outcomes by expiry and maps WhatsApp ids to
//! `messageId`s. An outcome and its index entries change in one sled transaction, so a
//! crash never separates them. Expiry is by this machine's clock: a read never returns
//! an expired outcome, and expired ones are removed lazily, a few with every outcome
//! written (so a store that keeps sending keeps up with what expires, and an idle one
//! does not grow), or all at once by [`SledStore::prune_outcomes`].

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use chrono::Utc;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionResult, TransactionError, TransactionalTree};
use uuid::Uuid;

use super::{SledStore, codec, corrupt};
use crate::store::{DEFAULT_OUTCOME_HORIZON, QueuedMessage, StoredOutcome};
use crate::{Conversation, StoreError};

/// Expired outcomes removed, at most, after each outcome written: more than one, so
/// pruning catches up with a backlog while sends go on.
const PRUNE_PER_WRITE: usize = 8;
/// Outcomes written before outcomes expired that are given an expiry, at most, after
/// each outcome written (until every one has one).
const SWEEP_PER_WRITE: usize = 8;
/// Entries handled per step of a full pass ([`SledStore::prune_outcomes`]).
const FULL_PASS_STEP: usize = 1024;

type TxResult<T> = ConflictableTransactionResult<T, Infallible>;

fn tx_error(error: TransactionError<Infallible>) -> StoreError {
    match error {
        TransactionError::Storage(error) => StoreError::Sled(error),
        TransactionError::Abort(never) => match never {},
    }
}

/// Milliseconds since the epoch by this machine's clock (0 before 1970).
fn now_ms() -> u64 {
    u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0)
}

/// A change of the outbox written with an outcome.
enum OutboxChange {
    /// A new message under this key, with this value.
    Insert([u8; 24], Vec<u8>),
    /// The message under this key leaves.
    Remove(sled::IVec),
}

/// What the store keeps in memory about outcomes.
pub(super) struct OutcomeBook {
    /// The `outcome_index` tree, opened on first use.
    index: OnceLock<sled::Tree>,
    /// The earliest expiry in the index when last looked at (ms): pruning does not look
    /// again before then. 0: not looked at yet.
    earliest_expiry: AtomicU64,
    /// How far the sweep of outcomes written before outcomes expired has gone.
    sweep: Mutex<Sweep>,
}

impl Default for OutcomeBook {
    fn default() -> Self {
        Self {
            index: OnceLock::new(),
            earliest_expiry: AtomicU64::new(0),
            sweep: Mutex::default(),
        }
    }
}

#[derive(Default)]
struct Sweep {
    /// Whether every outcome has an expiry (`None`: not read from the index yet).
    done: Option<bool>,
    /// The `outcomes` key to go on from.
    cursor: Vec<u8>,
}

/// Removes the WhatsApp id entry `wa_id` of the conversation if it still names `id`.
fn unlink_wa_id(
    index: &TransactionalTree,
    conversation_key: &[u8],
    wa_id: &str,
    id: &[u8],
) -> TxResult<()> {
    let key = codec::wa_key(conversation_key, wa_id);
    if index.get(&key)?.is_some_and(|named| named.as_ref() == id) {
        index.remove(key)?;
    }
    Ok(())
}

/// Writes an outcome and its index entries, removing those of the outcome it replaces.
fn write_outcome(
    outcomes: &TransactionalTree,
    index: &TransactionalTree,
    conversation: Conversation,
    outcome: &StoredOutcome,
    expires_ms: u64,
) -> TxResult<()> {
    let key = codec::outcome_key(conversation, outcome.message_id);
    let id = outcome.message_id.as_bytes();
    if let Some(old) = outcomes.get(key)?
        && let Ok(old) = codec::decode_outcome(&old)
    {
        if let Some(expires) = old.expires_ms {
            index.remove(&codec::expiry_key(expires, &key)[..])?;
        }
        if let Some(wa_id) = old.wa_id {
            unlink_wa_id(index, &key[..16], wa_id, id)?;
        }
    }
    let wa_id = outcome.indexed_wa_id();
    outcomes.insert(
        &key[..],
        codec::encode_outcome(expires_ms, wa_id, &outcome.text),
    )?;
    index.insert(&codec::expiry_key(expires_ms, &key)[..], &[][..])?;
    if let Some(wa_id) = wa_id {
        index.insert(codec::wa_key(&key[..16], wa_id), &id[..])?;
    }
    Ok(())
}

impl SledStore {
    fn outcome_index(&self) -> Result<&sled::Tree, StoreError> {
        if let Some(index) = self.inner.outcome_book.index.get() {
            return Ok(index);
        }
        let index = self.inner.db.open_tree("outcome_index")?;
        Ok(self.inner.outcome_book.index.get_or_init(|| index))
    }

    /// The expiry of an outcome written now, kept for `outcome.keep_for`.
    fn expiry_of(outcome: &StoredOutcome, now: u64) -> u64 {
        now.saturating_add(outcome.keep_for_millis().unsigned_abs())
    }

    /// Notes an expiry just written, so pruning looks again by then.
    fn note_expiry(&self, expires_ms: u64) {
        self.inner
            .outcome_book
            .earliest_expiry
            .fetch_min(expires_ms, Ordering::Relaxed);
    }

    /// After an outcome was written: a little pruning. Its failure does not undo the
    /// write, so it is logged rather than returned.
    fn prune_after_write(&self, now: u64) {
        if let Err(error) = self.prune_step(now, PRUNE_PER_WRITE, SWEEP_PER_WRITE) {
            tracing::warn!(%error, "pruning expired send outcomes failed; the next write tries again");
        }
    }

    /// Stores an outcome (not waiting for the disk).
    pub(super) fn put_outcome_now(
        &self,
        conversation: Conversation,
        outcome: &StoredOutcome,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let expires = Self::expiry_of(outcome, now);
        let index = self.outcome_index()?;
        (&self.inner.outcomes, index)
            .transaction(|(outcomes, index)| {
                write_outcome(outcomes, index, conversation, outcome, expires)
            })
            .map_err(tx_error)?;
        self.note_expiry(expires);
        self.prune_after_write(now);
        Ok(())
    }

    /// Enqueues and stores the outcome in one transaction (not yet waiting for the
    /// disk); whether the message was added.
    pub(super) fn enqueue_with_outcome_now(
        &self,
        conversation: Conversation,
        message: &QueuedMessage,
        limit: usize,
        outcome: &StoredOutcome,
    ) -> Result<bool, StoreError> {
        self.change_outbox_with_outcome(conversation, outcome, || {
            Ok(self
                .outbox_slot(conversation, message.message_id, limit)?
                .map(|key| OutboxChange::Insert(key, codec::encode_queued(message))))
        })
    }

    /// Dequeues and stores the outcome in one transaction (not yet waiting for the
    /// disk); whether the message was queued.
    pub(super) fn dequeue_with_outcome_now(
        &self,
        conversation: Conversation,
        message_id: Uuid,
        outcome: &StoredOutcome,
    ) -> Result<bool, StoreError> {
        self.change_outbox_with_outcome(conversation, outcome, || {
            Ok(self
                .queued_key(conversation, message_id)?
                .map(OutboxChange::Remove))
        })
    }

    /// Under the outbox lock, `plan` reads the outbox and says how to change it (`None`:
    /// leave it); the change and the outcome are then written in one transaction.
    /// Whether the outbox changed.
    fn change_outbox_with_outcome(
        &self,
        conversation: Conversation,
        outcome: &StoredOutcome,
        plan: impl FnOnce() -> Result<Option<OutboxChange>, StoreError>,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let expires = Self::expiry_of(outcome, now);
        let index = self.outcome_index()?;
        let changed = {
            let _outbox = self.lock_outbox();
            let change = plan()?;
            (&self.inner.outbox, &self.inner.outcomes, index)
                .transaction(|(outbox, outcomes, index)| {
                    match &change {
                        Some(OutboxChange::Insert(key, value)) => {
                            outbox.insert(&key[..], value.as_slice())?;
                        }
                        Some(OutboxChange::Remove(key)) => {
                            outbox.remove(key)?;
                        }
                        None => {}
                    }
                    write_outcome(outcomes, index, conversation, outcome, expires)
                })
                .map_err(tx_error)?;
            change.is_some()
        };
        self.note_expiry(expires);
        self.prune_after_write(now);
        Ok(changed)
    }

    /// Decodes a stored outcome; `None` once it expired by `now`.
    fn live<'a>(
        conversation: Conversation,
        value: &'a [u8],
        now: u64,
    ) -> Result<Option<codec::OutcomeValue<'a>>, StoreError> {
        let value = codec::decode_outcome(value).map_err(|detail| corrupt(conversation, detail))?;
        Ok(value
            .expires_ms
            .is_none_or(|expires| expires > now)
            .then_some(value))
    }

    /// The live outcome stored under `message_id`.
    pub(super) fn outcome_now(
        &self,
        conversation: Conversation,
        message_id: Uuid,
    ) -> Result<Option<String>, StoreError> {
        let Some(value) = self
            .inner
            .outcomes
            .get(codec::outcome_key(conversation, message_id))?
        else {
            return Ok(None);
        };
        Ok(Self::live(conversation, &value, now_ms())?.map(|v| v.text.to_owned()))
    }

    /// The live outcome indexed under WhatsApp id `wa_id`.
    pub(super) fn outcome_by_wa_id_now(
        &self,
        conversation: Conversation,
        wa_id: &str,
    ) -> Result<Option<(Uuid, String)>, StoreError> {
        let index = self.outcome_index()?;
        let Some(id) = index.get(codec::wa_key(&conversation.to_key(), wa_id))? else {
            return Ok(None);
        };
        let id = Uuid::from_slice(&id).map_err(|e| {
            corrupt(
                conversation,
                format!("outcome index entry of {wa_id:?}: {e}"),
            )
        })?;
        let Some(value) = self
            .inner
            .outcomes
            .get(codec::outcome_key(conversation, id))?
        else {
            return Ok(None);
        };
        Ok(Self::live(conversation, &value, now_ms())?
            .filter(|value| value.wa_id == Some(wa_id))
            .map(|value| (id, value.text.to_owned())))
    }

    /// Every live outcome of the conversation.
    pub(super) fn outcomes_now(
        &self,
        conversation: Conversation,
    ) -> Result<Vec<(Uuid, String)>, StoreError> {
        let now = now_ms();
        let mut live = Vec::new();
        for entry in self.inner.outcomes.scan_prefix(conversation.to_key()) {
            let (key, value) = entry?;
            let id = key
                .get(16..32)
                .and_then(|bytes| Uuid::from_slice(bytes).ok())
                .ok_or_else(|| corrupt(conversation, "outcome key is not 32 bytes".into()))?;
            if let Some(value) = Self::live(conversation, &value, now)? {
                live.push((id, value.text.to_owned()));
            }
        }
        Ok(live)
    }

    /// Erases the conversation's outcomes and their index entries; whether there were
    /// any.
    pub(super) fn forget_outcomes(&self, conversation: Conversation) -> Result<bool, StoreError> {
        let index = self.outcome_index()?;
        let mut found = false;
        for entry in self.inner.outcomes.scan_prefix(conversation.to_key()) {
            let (key, value) = entry?;
            if let Ok(codec::OutcomeValue {
                expires_ms: Some(expires),
                ..
            }) = codec::decode_outcome(&value)
                && let Ok(outcome_key) = <&[u8; 32]>::try_from(key.as_ref())
            {
                index.remove(codec::expiry_key(expires, outcome_key))?;
            }
            found |= self.inner.outcomes.remove(key)?.is_some();
        }
        let wa_prefix = codec::wa_key(&conversation.to_key(), "");
        for key in index.scan_prefix(wa_prefix).keys() {
            index.remove(key?)?;
        }
        Ok(found)
    }

    /// Removes every expired outcome now, and gives every outcome written before
    /// outcomes expired an expiry ([`DEFAULT_OUTCOME_HORIZON`] from its first pass).
    /// Returns how many outcomes were removed.
    ///
    /// Not needed for the store to stay bounded: every outcome written also removes a
    /// few expired ones. Call it to reclaim space at once, for example after a burst of
    /// sends has expired.
    pub fn prune_outcomes(&self) -> Result<usize, StoreError> {
        let mut removed = 0;
        loop {
            let (pruned, swept) =
                self.prune_step_counted(now_ms(), FULL_PASS_STEP, FULL_PASS_STEP)?;
            removed += pruned;
            if pruned < FULL_PASS_STEP && swept < FULL_PASS_STEP {
                return Ok(removed);
            }
        }
    }

    /// How many outcomes are on disk, expired ones not yet pruned included.
    pub fn stored_outcomes(&self) -> usize {
        self.inner.outcomes.len()
    }

    fn prune_step(&self, now: u64, prune: usize, sweep: usize) -> Result<(), StoreError> {
        self.prune_step_counted(now, prune, sweep).map(drop)
    }

    /// Removes up to `prune` expired outcomes and sweeps up to `sweep` outcomes written
    /// before outcomes expired; how many of each it handled.
    fn prune_step_counted(
        &self,
        now: u64,
        prune: usize,
        sweep: usize,
    ) -> Result<(usize, usize), StoreError> {
        let swept = self.sweep_unexpiring(now, sweep)?;
        let book = &self.inner.outcome_book;
        if now < book.earliest_expiry.load(Ordering::Relaxed) {
            return Ok((0, swept));
        }
        let index = self.outcome_index()?;
        let start = [codec::EXPIRY_PREFIX];
        let expired = index
            .range(&start[..]..=&codec::expiry_key_bound(now)[..])
            .keys()
            .take(prune)
            .collect::<Result<Vec<_>, _>>()?;
        for key in &expired {
            (&self.inner.outcomes, index)
                .transaction(|(outcomes, index)| {
                    index.remove(key)?;
                    let Some((expires, outcome_key)) = codec::parse_expiry_key(key) else {
                        return Ok(());
                    };
                    // Only the outcome this entry was written for: a later write of the
                    // same messageId has its own entry.
                    if let Some(value) = outcomes.get(outcome_key)?
                        && let Ok(value) = codec::decode_outcome(&value)
                        && value.expires_ms == Some(expires)
                    {
                        outcomes.remove(outcome_key)?;
                        if let Some(wa_id) = value.wa_id {
                            unlink_wa_id(index, &outcome_key[..16], wa_id, &outcome_key[16..])?;
                        }
                    }
                    Ok(())
                })
                .map_err(tx_error)?;
        }
        let next = index
            .range(&start[..]..)
            .keys()
            .next()
            .transpose()?
            .and_then(|key| codec::parse_expiry_key(&key).map(|(expires, _)| expires))
            .unwrap_or(u64::MAX);
        book.earliest_expiry.store(next, Ordering::Relaxed);
        Ok((expired.len(), swept))
    }

    /// Gives up to `budget` outcomes written before outcomes expired an expiry of
    /// [`DEFAULT_OUTCOME_HORIZON`] from `now`; how many outcomes it looked at.
    fn sweep_unexpiring(&self, now: u64, budget: usize) -> Result<usize, StoreError> {
        let book = &self.inner.outcome_book;
        let mut sweep = book.sweep.lock().unwrap_or_else(PoisonError::into_inner);
        let index = self.outcome_index()?;
        if sweep.done.is_none() {
            sweep.done = Some(index.contains_key(codec::LEGACY_SWEPT_KEY)?);
        }
        if sweep.done == Some(true) || budget == 0 {
            return Ok(0);
        }
        let entries = self
            .inner
            .outcomes
            .range(sweep.cursor.as_slice()..)
            .take(budget)
            .collect::<Result<Vec<_>, _>>()?;
        let expires = now.saturating_add(DEFAULT_OUTCOME_HORIZON.num_milliseconds().unsigned_abs());
        for (key, value) in &entries {
            // Keys of another length name no outcome; they are left to `forget`.
            let Ok(outcome_key) = <&[u8; 32]>::try_from(key.as_ref()) else {
                continue;
            };
            if codec::outcome_has_expiry(value) {
                continue;
            }
            (&self.inner.outcomes, index)
                .transaction(|(outcomes, index)| {
                    // Read again inside the transaction: a write may have replaced it.
                    let Some(value) = outcomes.get(key)? else {
                        return Ok(());
                    };
                    let Ok(codec::OutcomeValue {
                        expires_ms: None,
                        text,
                        ..
                    }) = codec::decode_outcome(&value)
                    else {
                        // Already has an expiry, or unreadable: left as it is.
                        return Ok(());
                    };
                    outcomes.insert(key, codec::encode_outcome(expires, None, text))?;
                    index.insert(&codec::expiry_key(expires, outcome_key)[..], &[][..])?;
                    Ok(())
                })
                .map_err(tx_error)?;
            self.note_expiry(expires);
        }
        match entries.last() {
            Some((last, _)) if entries.len() == budget => {
                sweep.cursor = last.to_vec();
                sweep.cursor.push(0);
            }
            _ => {
                index.insert(codec::LEGACY_SWEPT_KEY, &[][..])?;
                sweep.done = Some(true);
            }
        }
        Ok(entries.len())
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::OutboxStore;

    fn chat() -> Conversation {
        Conversation::parse("254110090747", "254712345678").unwrap_or_else(|e| panic!("{e}"))
    }

    fn store(dir: &tempfile::TempDir) -> SledStore {
        SledStore::open(dir.path().join("db")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn index_len(store: &SledStore, prefix: u8) -> usize {
        store
            .outcome_index()
            .unwrap_or_else(|e| panic!("{e}"))
            .scan_prefix([prefix])
            .count()
    }

    #[tokio::test]
    async fn expired_outcomes_leave_the_disk_with_their_index_entries() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = store(&dir);
        let brief = TimeDelta::milliseconds(50);
        for n in 0..20 {
            let outcome = StoredOutcome::new(Uuid::new_v4(), format!("{n}"))
                .with_wa_id(format!("wamid.{n}"))
                .keep_for(brief);
            store
                .put_outcome(chat(), outcome)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let lasting = Uuid::new_v4();
        store
            .put_outcome(
                chat(),
                StoredOutcome::new(lasting, "lasting").with_wa_id("wamid.L"),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.stored_outcomes(), 21);
        assert_eq!(index_len(&store, codec::EXPIRY_PREFIX), 21);
        assert_eq!(index_len(&store, codec::WA_PREFIX), 21);
        std::thread::sleep(std::time::Duration::from_millis(80));

        // Each write removes a few expired outcomes.
        store
            .put_outcome(chat(), StoredOutcome::new(Uuid::new_v4(), "later"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.stored_outcomes(), 22 - PRUNE_PER_WRITE);
        // A full pass removes the rest, index entries included.
        assert_eq!(
            store.prune_outcomes().unwrap_or_else(|e| panic!("{e}")),
            20 - PRUNE_PER_WRITE
        );
        assert_eq!(store.stored_outcomes(), 2);
        assert_eq!(index_len(&store, codec::EXPIRY_PREFIX), 2);
        assert_eq!(index_len(&store, codec::WA_PREFIX), 1);
        assert_eq!(
            store
                .outcome_by_wa_id(chat(), "wamid.L")
                .await
                .unwrap_or_else(|e| panic!("{e}")),
            Some((lasting, "lasting".to_owned()))
        );
        assert_eq!(store.prune_outcomes().unwrap_or_else(|e| panic!("{e}")), 0);
    }

    #[tokio::test]
    async fn outcomes_written_before_expiry_existed_are_read_and_given_an_expiry() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = store(&dir);
        let old: Vec<Uuid> = (0..SWEEP_PER_WRITE as u128 * 2 + 3)
            .map(Uuid::from_u128)
            .collect();
        for id in &old {
            // As an earlier build wrote them: the JSON text alone.
            store
                .inner
                .outcomes
                .insert(codec::outcome_key(chat(), *id), &b"{\"kind\":\"sent\"}"[..])
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(
            store
                .outcome(chat(), old[0])
                .await
                .unwrap_or_else(|e| panic!("{e}")),
            Some("{\"kind\":\"sent\"}".to_owned()),
            "an outcome without an expiry is read as it is"
        );
        // Writes sweep a few at a time...
        store
            .put_outcome(chat(), StoredOutcome::new(Uuid::new_v4(), "new"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let with_expiry = |store: &SledStore| {
            store
                .inner
                .outcomes
                .iter()
                .values()
                .filter(|v| v.as_ref().is_ok_and(|v| codec::outcome_has_expiry(v)))
                .count()
        };
        assert_eq!(with_expiry(&store), SWEEP_PER_WRITE + 1);
        // ...and a full pass finishes, once for all.
        assert_eq!(store.prune_outcomes().unwrap_or_else(|e| panic!("{e}")), 0);
        assert_eq!(with_expiry(&store), old.len() + 1);
        assert_eq!(index_len(&store, codec::EXPIRY_PREFIX), old.len() + 1);
        assert!(
            store
                .outcome_index()
                .unwrap_or_else(|e| panic!("{e}"))
                .contains_key(codec::LEGACY_SWEPT_KEY)
                .unwrap_or_else(|e| panic!("{e}"))
        );
        for id in &old {
            assert_eq!(
                store
                    .outcome(chat(), *id)
                    .await
                    .unwrap_or_else(|e| panic!("{e}")),
                Some("{\"kind\":\"sent\"}".to_owned()),
                "the sweep keeps the text"
            );
        }
    }
}
