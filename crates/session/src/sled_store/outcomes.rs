//! Send outcomes: stored with their expiry, found by `messageId` or by WhatsApp id, and
//! pruned once they expire.
//!
//! An outcome's value is its expiry and WhatsApp id in front of its text. Most are
//! journaled ([`super::outcome_journal`]: a batch of them per sled entry); the rest, and
//! journaled ones once something walks the tree by key, are single entries of the
//! `outcomes` tree. Expiry is by this machine's clock: a read never returns an expired
//! outcome. Expired single entries are removed lazily: every
//! [`SWEEP_EVERY`]th outcome written moves a cursor over [`SWEEP_PER_WRITE`] entries of
//! the tree for each of those writes, removing those that expired, so a store that keeps
//! sending sweeps the whole tree again and again and an idle one does not grow;
//! [`SledStore::prune_outcomes`] sweeps it all at once.
//!
//! Walking the tree costs more than the write that pays for it (sled copies each leaf it
//! walks, reading it from disk when it is not cached), so the sweep also remembers when
//! the first outcome it can find expires: each pass over the whole tree notes the
//! earliest expiry it kept, and each write the expiry it wrote, and until that instant
//! comes no step is taken. A store younger than its outcomes' horizon (seven days by
//! default) sweeps only at open, once round the tree; after that, as many as expire.
//!
//! The index by WhatsApp id is kept in memory, like the window index: built from the
//! tree by one scan at the first lookup, then kept up to date by every write. A second
//! sled insert per send would cost far more disk than the outcome itself (sled's log
//! writes a page fragment per insert; measured in the benchmark, about 1,200 bytes of
//! disk per send for a persisted index entry against about 520 for the outcome).
//!
//! A lookup by `messageId` first asks the tree's in-memory key set ([`super::presence`]):
//! a send under a fresh `messageId` finds no earlier outcome without walking sled.

use std::convert::Infallible;
use std::sync::Mutex;

use sled::Transactional;
use sled::transaction::TransactionError;

use super::memory_map::{MemoryMap, slot_of};
use super::outcome_journal::{Evicted, Held};
use super::{SledStore, codec, corrupt, lock, now_ms};
use crate::store::{DEFAULT_OUTCOME_HORIZON, QueuedMessage, StoredOutcome};
use crate::{Conversation, MessageId, PhoneNumber, StoreError};

/// Outcomes the sweep looks at, at most, per outcome written: more than one, so the
/// sweep goes round the tree faster than it grows (with 8, the tree holds at most about
/// 8/7 of the live outcomes, plus one step's writes).
const SWEEP_PER_WRITE: usize = 8;
/// Outcome writes per step of the lazy sweep: every this many writes, the write that
/// completes them sweeps `SWEEP_EVERY * SWEEP_PER_WRITE` entries.
const SWEEP_EVERY: u64 = 64;
/// Outcomes looked at per step of a full pass ([`SledStore::prune_outcomes`]).
const FULL_PASS_STEP: usize = 1024;

fn tx_error(error: TransactionError<Infallible>) -> StoreError {
    match error {
        TransactionError::Storage(error) => error.into(),
        TransactionError::Abort(never) => match never {},
    }
}

/// What the store keeps in memory about outcomes.
#[derive(Default)]
pub(super) struct OutcomeBook {
    /// Where the lazy sweep is, and what it knows of the expiries it may find.
    sweep: Mutex<SweepState>,
    /// Outcomes by WhatsApp id.
    wa_index: WaIndex,
}

/// The lazy sweep's progress.
#[derive(Default)]
struct SweepState {
    /// Where the sweep goes on from: an `outcomes` key (empty: the start of a pass).
    cursor: Vec<u8>,
    /// Outcomes written since the store opened: every [`SWEEP_EVERY`]th may take a step.
    writes: u64,
    /// No stored outcome expires before this instant (ms since the epoch), as far as the
    /// last full pass and the writes since tell; 0 until a pass has gone round the tree
    /// (an outcome written before outcomes expired needs one, and the sweep gives it).
    next_expiry: u64,
    /// The earliest expiry the current pass kept, so far.
    pass_min: u64,
    /// The earliest expiry written (or moved) since the current pass began: such an
    /// outcome may sit behind the cursor, where the pass does not see it.
    written_min: u64,
    /// Steps taken (for tests).
    steps: u64,
}

impl SweepState {
    /// Notes an outcome written (or moved) with expiry `expires`.
    fn written(&mut self, expires: u64) {
        self.next_expiry = self.next_expiry.min(expires);
        self.written_min = self.written_min.min(expires);
    }

    /// Starts a pass from the beginning of the tree.
    fn start_pass(&mut self) {
        self.cursor.clear();
        self.pass_min = u64::MAX;
        self.written_min = u64::MAX;
    }
}

/// The slot of a (conversation, WhatsApp id) pair in the in-memory index: a 64-bit hash,
/// so an entry costs 24 bytes whatever the id's length. A lookup reads the outcome it
/// finds and checks its WhatsApp id, so two pairs sharing a slot (about one chance in
/// 10^19 per pair) can only make one of them not found, never the wrong one found.
fn wa_slot(conversation: Conversation, wa_id: &str) -> u64 {
    slot_of(&[&conversation.to_key(), wa_id.as_bytes()])
}

/// The in-memory index of outcomes by WhatsApp id.
#[derive(Default)]
struct WaIndex {
    state: Mutex<WaState>,
    /// Held by the lookup that builds the index, so only one scans.
    building: Mutex<()>,
}

#[derive(Default)]
enum WaState {
    /// Not built: no lookup yet. Writes need not tell it anything.
    #[default]
    Unbuilt,
    /// A lookup is scanning the tree: writes are logged, and applied after the scan.
    Building(Vec<WaChange>),
    /// Built: writes change it at once.
    Built(MemoryMap<u64, MessageId>),
}

/// A change a write makes to the index.
#[derive(Clone, Copy)]
struct WaChange {
    slot: u64,
    id: MessageId,
    /// Linked (an outcome with this WhatsApp id was written) or unlinked (it was
    /// replaced or removed).
    linked: bool,
}

impl WaChange {
    fn apply(self, map: &mut MemoryMap<u64, MessageId>) {
        if self.linked {
            map.insert(self.slot, self.id);
        } else if map.get(&self.slot) == Some(&self.id) {
            map.remove(&self.slot);
        }
    }
}

impl WaIndex {
    /// Tells the index about a write to one outcome, made after the write is in sled:
    /// `changes` reads what the outcome holds now and says how the index must change.
    ///
    /// It runs under the index's lock, so of several writes to one outcome, the last to
    /// get here reads the value sled kept (every write is in sled before it gets here)
    /// and leaves the index pointing at it, whatever order the writers arrive in. (Applying
    /// each write's own change from its old to its new value instead let two racing
    /// writers unlink the WhatsApp id the outcome ended with.) Not built: nothing to do,
    /// and nothing is read.
    fn update(&self, changes: impl FnOnce() -> Vec<WaChange>) {
        let mut state = lock(&self.state);
        match &mut *state {
            WaState::Unbuilt => {}
            WaState::Building(log) => log.extend(changes()),
            WaState::Built(map) => {
                for change in changes() {
                    change.apply(map);
                }
            }
        }
    }

    /// The `messageId` in `slot`, building the index with `scan` first if it is not
    /// built. A write made while `scan` runs is either seen by the scan or logged and
    /// applied after it (both, at worst, which gives the same index).
    fn lookup(
        &self,
        slot: u64,
        scan: impl FnOnce() -> Result<MemoryMap<u64, MessageId>, StoreError>,
    ) -> Result<Option<MessageId>, StoreError> {
        if let WaState::Built(map) = &*lock(&self.state) {
            return Ok(map.get(&slot).copied());
        }
        let _building = lock(&self.building);
        {
            let mut state = lock(&self.state);
            if let WaState::Built(map) = &*state {
                return Ok(map.get(&slot).copied());
            }
            *state = WaState::Building(Vec::new());
        }
        let scanned = scan();
        let mut state = lock(&self.state);
        let mut map = match scanned {
            Ok(map) => map,
            Err(error) => {
                *state = WaState::Unbuilt;
                return Err(error);
            }
        };
        if let WaState::Building(log) = std::mem::take(&mut *state) {
            for change in log {
                change.apply(&mut map);
            }
        }
        let found = map.get(&slot).copied();
        *state = WaState::Built(map);
        Ok(found)
    }
}

impl SledStore {
    /// The expiry of an outcome written now, kept for `outcome.keep_for`.
    fn expiry_of(outcome: &StoredOutcome, now: u64) -> u64 {
        now.saturating_add(outcome.keep_for_millis().unsigned_abs())
    }

    fn wa_index(&self) -> &WaIndex {
        &self.inner.outcome_book.wa_index
    }

    /// Tells the WhatsApp id index that the outcome stored under `id` in `conversation`
    /// changed, from `old` (the value the write replaced or removed, if any): the old
    /// WhatsApp id is unlinked unless the outcome still has it, and the one it has now (read
    /// from the tree under the index's lock, see [`WaIndex::update`]) is linked.
    fn index_change(&self, conversation: Conversation, id: MessageId, old: Option<&[u8]>) {
        self.wa_index().update(|| {
            let current = self.outcome_value(conversation, id).ok().flatten();
            let wa_of = |value: &[u8]| {
                codec::decode_outcome(value)
                    .ok()
                    .and_then(|value| value.wa_id.map(str::to_owned))
            };
            let now = current.as_deref().and_then(wa_of);
            let mut changes = Vec::new();
            if let Some(old_wa) = old
                .and_then(wa_of)
                .filter(|old_wa| Some(old_wa) != now.as_ref())
            {
                changes.push(WaChange {
                    slot: wa_slot(conversation, &old_wa),
                    id,
                    linked: false,
                });
            }
            if let Some(wa) = now {
                changes.push(WaChange {
                    slot: wa_slot(conversation, &wa),
                    id,
                    linked: true,
                });
            }
            changes
        });
    }

    /// Tells the WhatsApp id index that a move of a customer's records (see `identity`)
    /// changed the outcome under `key` from `old` to `new` (`None`: absent).
    pub(super) fn outcome_moved(&self, key: &[u8], old: Option<&[u8]>, new: Option<&[u8]>) {
        let Some((conversation, id)) = codec::parse_outcome_key(key) else {
            return;
        };
        if let Some(expires) = new.and_then(|value| codec::decode_outcome(value).ok()) {
            // Moved, it may land behind the sweep's cursor: noted as a write.
            self.note_written(expires.expires_ms.unwrap_or(0));
        }
        // The move is in sled: the index reads what the key holds now (nothing for the
        // key moved away from, the moved outcome for the one moved to).
        self.index_change(conversation, id, old);
    }

    /// Stores an outcome (not waiting for the disk).
    pub(super) fn put_outcome_now(
        &self,
        conversation: Conversation,
        outcome: &StoredOutcome,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let key = codec::outcome_key(conversation, outcome.message_id);
        let value = Self::encode(outcome, now);
        let outcomes = &self.inner.outcomes;
        let journaled = self
            .inner
            .outcome_journal
            .put(&key, &value, now, conversation, || {
                Ok(outcomes.may_hold(&key) && outcomes.get(key)?.is_some())
            })?;
        let old = match journaled {
            Some(old) => old,
            None => {
                let old = outcomes.insert(key, value)?;
                self.note_written(Self::expiry_of(outcome, now));
                old.map(|old| old.to_vec())
            }
        };
        self.index_change(conversation, outcome.message_id, old.as_deref());
        self.sweep_after_write(now);
        Ok(())
    }

    /// Makes every journaled outcome a single entry and holds the journal's lock (see
    /// [`OutcomeJournal::unpacked`]) until the returned guard drops, which then tells the
    /// sweep of the single entries written, however the holder's work ended.
    ///
    /// [`OutcomeJournal::unpacked`]: super::outcome_journal::OutcomeJournal::unpacked
    pub(super) fn hold_unpacked_journal(&self) -> Result<HeldJournal<'_>, StoreError> {
        let evicted = self.inner.outcome_journal.unpacked()?;
        Ok(HeldJournal {
            store: self,
            evicted: Some(evicted),
        })
    }

    /// As [`SledStore::hold_unpacked_journal`], unpacking only if the journal holds `key`
    /// (see [`OutcomeJournal::evict`]).
    ///
    /// [`OutcomeJournal::evict`]: super::outcome_journal::OutcomeJournal::evict
    fn hold_journal_without(&self, key: &[u8; 32]) -> Result<HeldJournal<'_>, StoreError> {
        let evicted = self.inner.outcome_journal.evict(key)?;
        Ok(HeldJournal {
            store: self,
            evicted: Some(evicted),
        })
    }

    /// Makes every journaled outcome a single entry, telling the sweep of them.
    pub(super) fn unpack_journal(&self) -> Result<(), StoreError> {
        let earliest = self.inner.outcome_journal.unpack()?;
        self.note_written(earliest);
        Ok(())
    }

    /// The value stored under (`conversation`, `id`): the journal's record, else the
    /// single entry.
    fn outcome_value(
        &self,
        conversation: Conversation,
        id: MessageId,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let key = codec::outcome_key(conversation, id);
        if let Held::Record(value) = self.inner.outcome_journal.get(&key, conversation)? {
            return Ok(Some(value));
        }
        // A fresh messageId (the common case) is answered from memory.
        if !self.inner.outcomes.may_hold(&key) {
            return Ok(None);
        }
        Ok(self.inner.outcomes.get(key)?.map(|value| value.to_vec()))
    }

    fn encode(outcome: &StoredOutcome, now: u64) -> Vec<u8> {
        codec::encode_outcome(
            Self::expiry_of(outcome, now),
            outcome.indexed_wa_id(),
            &outcome.text,
        )
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
        message_id: MessageId,
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
        let key = codec::outcome_key(conversation, outcome.message_id);
        let value = Self::encode(outcome, now);
        let (changed, old) = {
            let _outbox = self.lock_outbox();
            // The key's only record is the one this transaction writes. (Dropped first,
            // at the end of this block: then the sweep is told of what was unpacked.)
            let _journal = self.hold_journal_without(&key)?;
            let change = plan()?;
            let (outbox_tree, outcome_tree) = (&self.inner.outbox, &self.inner.outcomes);
            outcome_tree.will_write(&key);
            let committed = (
                outbox_tree.for_transaction(),
                outcome_tree.for_transaction(),
            )
                .transaction(|(outbox, outcomes)| {
                    let outbox_old = match &change {
                        Some(OutboxChange::Insert(key, value)) => {
                            outbox.insert(&key[..], value.as_slice())?
                        }
                        Some(OutboxChange::Remove(key)) => outbox.remove(key)?,
                        None => None,
                    };
                    Ok((outbox_old, outcomes.insert(&key[..], value.as_slice())?))
                });
            let (outbox_old, old) = match committed {
                Ok(olds) => olds,
                Err(error) => {
                    outbox_tree.failed();
                    outcome_tree.failed();
                    return Err(tx_error(error));
                }
            };
            // The integrity tallies follow what the transaction changed.
            match &change {
                Some(OutboxChange::Insert(key, value)) => {
                    outbox_tree.committed(key, outbox_old.as_deref(), Some(value))
                }
                Some(OutboxChange::Remove(key)) => {
                    outbox_tree.committed(key, outbox_old.as_deref(), None)
                }
                None => {}
            }
            outcome_tree.committed(&key, old.as_deref(), Some(&value));
            (change.is_some(), old)
        };
        self.note_written(Self::expiry_of(outcome, now));
        self.index_change(conversation, outcome.message_id, old.as_deref());
        self.sweep_after_write(now);
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
        message_id: MessageId,
    ) -> Result<Option<String>, StoreError> {
        let Some(value) = self.outcome_value(conversation, message_id)? else {
            return Ok(None);
        };
        Ok(Self::live(conversation, &value, now_ms())?.map(|v| v.text.to_owned()))
    }

    /// The live outcome whose WhatsApp id is `wa_id`.
    pub(super) fn outcome_by_wa_id_now(
        &self,
        conversation: Conversation,
        wa_id: &str,
    ) -> Result<Option<(MessageId, String)>, StoreError> {
        let Some(id) = self
            .wa_index()
            .lookup(wa_slot(conversation, wa_id), || self.scan_wa_ids())?
        else {
            return Ok(None);
        };
        let Some(value) = self.outcome_value(conversation, id)? else {
            return Ok(None);
        };
        Ok(Self::live(conversation, &value, now_ms())?
            .filter(|value| value.wa_id == Some(wa_id))
            .map(|value| (id, value.text.to_owned())))
    }

    /// The WhatsApp id index, from the whole tree.
    fn scan_wa_ids(&self) -> Result<MemoryMap<u64, MessageId>, StoreError> {
        self.unpack_journal()?;
        let mut map = MemoryMap::default();
        for entry in self.inner.outcomes.iter() {
            let (key, value) = entry?;
            let Some((conversation, id)) = codec::parse_outcome_key(&key) else {
                continue;
            };
            if let Ok(codec::OutcomeValue {
                wa_id: Some(wa_id), ..
            }) = codec::decode_outcome(&value)
            {
                map.insert(wa_slot(conversation, wa_id), id);
            }
        }
        Ok(map)
    }

    /// The conversation holding a live outcome under our `message_id`: a scan of the
    /// business number's outcomes (of every business number's, without one), which a
    /// gateway report of a refused send needs once per report. Unreadable outcomes are
    /// passed over, so one corrupt value does not hide the rest.
    pub(super) fn outcome_conversation_now(
        &self,
        business: Option<PhoneNumber>,
        message_id: MessageId,
    ) -> Result<Option<Conversation>, StoreError> {
        Ok(self
            .find_live_outcome(business, |id| id == message_id, |_| true)?
            .map(|(conversation, _)| conversation))
    }

    /// The first live outcome of the business number (of every business number, without
    /// one) that `wanted_id` picks by its `messageId` (asked before the value is decoded)
    /// and `wanted_value` by its value: a scan of the journal's records, then of the
    /// tree in key order. Unreadable outcomes are passed over.
    fn find_live_outcome(
        &self,
        business: Option<PhoneNumber>,
        wanted_id: impl Fn(MessageId) -> bool,
        wanted_value: impl Fn(&codec::OutcomeValue<'_>) -> bool,
    ) -> Result<Option<(Conversation, MessageId)>, StoreError> {
        let prefix = business
            .map(|business| business.as_u64().to_be_bytes().to_vec())
            .unwrap_or_default();
        let now = now_ms();
        let found = |key: &[u8], value: &[u8]| {
            let (conversation, id) = codec::parse_outcome_key(key)?;
            if !key.starts_with(&prefix) || !wanted_id(id) {
                return None;
            }
            let live = Self::live(conversation, value, now).ok()??;
            wanted_value(&live).then_some((conversation, id))
        };
        // The journal first (its records are not single entries), then the tree.
        if let Some(found) = self
            .inner
            .outcome_journal
            .find(|key, value| found(key, value))?
        {
            return Ok(Some(found));
        }
        for entry in self.inner.outcomes.scan_prefix(&prefix) {
            let (key, value) = entry?;
            if let Some(found) = found(&key, &value) {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// The conversation and `messageId` of a live outcome whose WhatsApp id is `wa_id`:
    /// a scan of the business number's outcomes (of every business number's, without
    /// one), as [`Self::outcome_conversation_now`]; the in-memory index is keyed with the
    /// conversation, so it cannot answer this. Needed once per status that names our
    /// WhatsApp id but not the recipient's phone. Unreadable outcomes are passed over.
    pub(super) fn outcome_conversation_by_wa_id_now(
        &self,
        business: Option<PhoneNumber>,
        wa_id: &str,
    ) -> Result<Option<(Conversation, MessageId)>, StoreError> {
        if !crate::store::is_indexed_wa_id(wa_id) {
            return Ok(None);
        }
        self.find_live_outcome(business, |_| true, |live| live.wa_id == Some(wa_id))
    }

    /// Every live outcome of the conversation.
    pub(super) fn outcomes_now(
        &self,
        conversation: Conversation,
    ) -> Result<Vec<(MessageId, String)>, StoreError> {
        self.unpack_journal()?;
        let now = now_ms();
        let mut live = Vec::new();
        for entry in self.inner.outcomes.scan_prefix(conversation.to_key()) {
            let (key, value) = entry?;
            let (_, id) = codec::parse_outcome_key(&key)
                .ok_or_else(|| corrupt(conversation, "outcome key is not 32 bytes".into()))?;
            if let Some(value) = Self::live(conversation, &value, now)? {
                live.push((id, value.text.to_owned()));
            }
        }
        Ok(live)
    }

    /// Erases the conversation's outcomes; whether there were any.
    pub(super) fn forget_outcomes(&self, conversation: Conversation) -> Result<bool, StoreError> {
        self.unpack_journal()?;
        let mut found = false;
        for entry in self.inner.outcomes.scan_prefix(conversation.to_key()) {
            let (key, _) = entry?;
            if let Some(value) = self.inner.outcomes.remove(&key)? {
                found = true;
                if let Some((_, id)) = codec::parse_outcome_key(&key) {
                    self.index_change(conversation, id, Some(&value));
                }
            }
        }
        Ok(found)
    }

    /// Removes every expired outcome now, and gives every outcome written before
    /// outcomes expired an expiry ([`DEFAULT_OUTCOME_HORIZON`] from now). Returns how many
    /// outcomes were removed.
    ///
    /// Not needed for the store to stay bounded: every outcome written also sweeps a few.
    /// Call it to reclaim space at once, for example after a burst of sends has expired.
    pub fn prune_outcomes(&self) -> Result<usize, StoreError> {
        let now = now_ms();
        let mut from = Vec::new();
        let mut removed = self.inner.outcome_journal.expire(now)?;
        loop {
            let (pruned, _, next) = self.sweep(&from, FULL_PASS_STEP, now)?;
            removed += pruned;
            match next {
                Some(next) => from = next,
                None => return Ok(removed),
            }
        }
    }

    /// How many outcomes are on disk, expired ones not yet pruned included.
    pub fn stored_outcomes(&self) -> Result<usize, StoreError> {
        self.inner.outcome_journal.stored_outcomes()
    }

    /// Notes, once an outcome with expiry `expires` is in sled, that the sweep may find
    /// it expired from then on. (Noted after the write: a pass that began before the
    /// note counts it, and one that began after it finds the outcome in the tree.)
    pub(super) fn note_written(&self, expires: u64) {
        lock(&self.inner.outcome_book.sweep).written(expires);
    }

    /// After an outcome was written: on every [`SWEEP_EVERY`]th write, the next step of
    /// the sweep, unless nothing stored can have expired by `now`. A failure does not
    /// undo the write, so it is logged rather than returned.
    fn sweep_after_write(&self, now: u64) {
        let mut state = lock(&self.inner.outcome_book.sweep);
        state.writes += 1;
        if !state.writes.is_multiple_of(SWEEP_EVERY) || now < state.next_expiry {
            return;
        }
        state.steps += 1;
        if state.cursor.is_empty() {
            state.start_pass();
        }
        let budget = SWEEP_PER_WRITE * SWEEP_EVERY as usize;
        match self.sweep(&state.cursor, budget, now) {
            Ok((_, kept_min, Some(next))) => {
                state.pass_min = state.pass_min.min(kept_min);
                state.cursor = next;
            }
            // At the end of the tree: the pass is complete, and what it kept (with what
            // was written meanwhile) says when the next outcome expires.
            Ok((_, kept_min, None)) => {
                state.next_expiry = state.pass_min.min(kept_min).min(state.written_min);
                state.cursor.clear();
            }
            Err(error) => {
                tracing::warn!(%error, "pruning expired send outcomes failed; a later write tries again");
            }
        }
    }

    /// Looks at up to `budget` outcomes from the key `from`: removes those expired by
    /// `now` and gives those without an expiry one. How many it removed, the earliest
    /// expiry of those it kept (`u64::MAX`: none), and the key to go on from (`None`: it
    /// reached the end).
    fn sweep(
        &self,
        from: &[u8],
        budget: usize,
        now: u64,
    ) -> Result<(usize, u64, Option<Vec<u8>>), StoreError> {
        // Single entries only: the journal's batches (keys from `BATCH_TAG` on) expire
        // by themselves, and walking their values would cost a read each.
        let end: &[u8] = &[codec::BATCH_TAG];
        if from >= end {
            return Ok((0, u64::MAX, None));
        }
        let entries = self
            .inner
            .outcomes
            .range(from..end)
            .take(budget)
            .collect::<Result<Vec<_>, _>>()?;
        let mut removed = 0;
        let mut kept_min = u64::MAX;
        for (key, value) in &entries {
            let Some((conversation, id)) = codec::parse_outcome_key(key) else {
                continue;
            };
            // Unreadable values are left as they are: reads report them corrupt.
            let Ok(decoded) = codec::decode_outcome(value) else {
                continue;
            };
            let new = match decoded.expires_ms {
                Some(expires) if expires <= now => None,
                Some(expires) => {
                    kept_min = kept_min.min(expires);
                    continue;
                }
                None => {
                    let expires = now
                        .saturating_add(DEFAULT_OUTCOME_HORIZON.num_milliseconds().unsigned_abs());
                    kept_min = kept_min.min(expires);
                    Some(codec::encode_outcome(expires, None, decoded.text))
                }
            };
            // Only the value read: a write since then stays.
            let swapped =
                self.inner
                    .outcomes
                    .compare_and_swap(key, Some(value.as_ref()), new.as_deref())?;
            if swapped.is_ok() && new.is_none() {
                removed += 1;
                self.index_change(conversation, id, Some(value));
            }
        }
        let next = (entries.len() == budget)
            .then(|| entries.last().map(|(key, _)| [key.as_ref(), &[0]].concat()))
            .flatten();
        Ok((removed, kept_min, next))
    }
}

/// The outcome journal's lock, held by a writer of single entries; dropping it releases
/// the lock, then tells the sweep of the single entries the journal unpacked (the sweep
/// reads through the journal, so not under its lock), whether the writer committed,
/// found nothing to change, or failed.
pub(super) struct HeldJournal<'a> {
    store: &'a SledStore,
    evicted: Option<Evicted<'a>>,
}

impl Drop for HeldJournal<'_> {
    fn drop(&mut self) {
        if let Some(evicted) = self.evicted.take() {
            let unpacked_expiry = evicted.unpacked_expiry();
            drop(evicted);
            self.store.note_written(unpacked_expiry);
        }
    }
}

/// A change of the outbox written with an outcome.
enum OutboxChange {
    /// A new message under this key, with this value.
    Insert([u8; 24], Vec<u8>),
    /// The message under this key leaves.
    Remove(sled::IVec),
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::{OutboxStore, WindowStore};

    fn id(n: u128) -> MessageId {
        MessageId::from_uuid(uuid::Uuid::from_u128(n))
    }

    fn chat() -> Conversation {
        Conversation::parse("254110090747", "254712345678").unwrap_or_else(|e| panic!("{e}"))
    }

    fn store(dir: &tempfile::TempDir) -> SledStore {
        SledStore::open(dir.path().join("db")).unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn expired_outcomes_leave_the_disk_a_few_per_write_or_all_at_once() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = store(&dir);
        let brief = TimeDelta::milliseconds(50);
        for n in 0..20 {
            let outcome = StoredOutcome::new(id(n + 1), format!("{n}"))
                .with_wa_id(format!("wamid.{n}"))
                .keep_for(brief);
            store
                .put_outcome(chat(), outcome)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let lasting = id(1_000);
        store
            .put_outcome(
                chat(),
                StoredOutcome::new(lasting, "lasting").with_wa_id("wamid.L"),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Build the WhatsApp id index, so removals must keep it right.
        assert!(
            store
                .outcome_by_wa_id(chat(), "wamid.3")
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .is_some()
        );
        assert_eq!(store.stored_outcomes().unwrap(), 21);
        std::thread::sleep(std::time::Duration::from_millis(80));

        // Writes short of a step sweep nothing...
        let later = id(2_000);
        let put_later = async || {
            store
                .put_outcome(chat(), StoredOutcome::new(later, "later"))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        };
        for _ in 0..writes_before_a_step(&store) - 1 {
            put_later().await;
        }
        assert_eq!(store.stored_outcomes().unwrap(), 22, "no step yet");
        // ...and the write that completes them takes a step from where the last stopped.
        put_later().await;
        assert_eq!(
            store.stored_outcomes().unwrap(),
            2,
            "one step looks at up to 512"
        );
        assert_eq!(
            store
                .outcome_by_wa_id(chat(), "wamid.L")
                .await
                .unwrap_or_else(|e| panic!("{e}")),
            Some((lasting, "lasting".to_owned()))
        );
        assert_eq!(
            store
                .outcome_by_wa_id(chat(), "wamid.3")
                .await
                .unwrap_or_else(|e| panic!("{e}")),
            None
        );
        assert_eq!(store.prune_outcomes().unwrap_or_else(|e| panic!("{e}")), 0);

        // A step looks at no more than its budget; a full pass removes the rest.
        let budget = SWEEP_PER_WRITE * SWEEP_EVERY as usize;
        let many = budget as u128 + 40;
        for n in 0..many {
            store
                .put_outcome(
                    chat(),
                    // Long enough that the steps taken while they are written find
                    // none expired.
                    StoredOutcome::new(id(3_000 + n), "x").keep_for(TimeDelta::seconds(1)),
                )
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        // As single entries, which the sweep walks (journaled ones leave by batch).
        store.unpack_journal().unwrap_or_else(|e| panic!("{e}"));
        std::thread::sleep(std::time::Duration::from_millis(1_050));
        for _ in 0..writes_before_a_step(&store) {
            put_later().await;
        }
        let after_step = store.stored_outcomes().unwrap();
        assert!(
            after_step >= 2 + many as usize - budget && after_step < 2 + many as usize,
            "one step removes at most {budget}: {after_step} left"
        );
        let removed = store.prune_outcomes().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(removed, after_step - 2);
        assert_eq!(store.stored_outcomes().unwrap(), 2);

        // Writes alone go round the tree: enough of them remove every expired outcome.
        for n in 0..30 {
            store
                .put_outcome(
                    chat(),
                    StoredOutcome::new(id(9_000 + n), "x").keep_for(brief),
                )
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        store.unpack_journal().unwrap_or_else(|e| panic!("{e}"));
        std::thread::sleep(std::time::Duration::from_millis(80));
        for _ in 0..2 * SWEEP_EVERY {
            put_later().await;
        }
        assert_eq!(store.stored_outcomes().unwrap(), 2, "the sweep went round");
    }

    /// Once a pass has gone round the tree and found nothing that expires soon, writes
    /// take no step (they would walk the tree for nothing) until the earliest expiry it
    /// or a later write knows of comes; then the expired outcome is swept as before.
    #[tokio::test]
    async fn the_sweep_rests_until_an_outcome_can_have_expired() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = store(&dir);
        let steps = |store: &SledStore| lock(&store.inner.outcome_book.sweep).steps;
        // Each outcome is made a single entry at once, as the sweep finds them.
        let put = async |n: u128, keep: TimeDelta| {
            store
                .put_outcome(chat(), StoredOutcome::new(id(n), "x").keep_for(keep))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            store.unpack_journal().unwrap_or_else(|e| panic!("{e}"));
        };
        let long = TimeDelta::hours(1);
        // The first step goes round the (small) tree: a pass.
        for n in 0..SWEEP_EVERY {
            put(u128::from(n), long).await;
        }
        assert_eq!(steps(&store), 1);
        // Nothing expires for an hour: no more steps.
        for n in 0..4 * SWEEP_EVERY {
            put(u128::from(1_000 + n), long).await;
        }
        assert_eq!(steps(&store), 1, "no step while nothing can have expired");
        assert_eq!(store.stored_outcomes().unwrap(), 5 * SWEEP_EVERY as usize);

        // A brief outcome written now tells the sweep when to wake.
        put(9_999, TimeDelta::milliseconds(50)).await;
        std::thread::sleep(std::time::Duration::from_millis(80));
        for n in 0..writes_before_a_step(&store) {
            put(u128::from(20_000 + n), long).await;
        }
        assert_eq!(steps(&store), 2, "the brief outcome's expiry woke it");
        // Its pass finishes within the steps that follow, and removes it.
        for n in 0..4 * SWEEP_EVERY {
            put(u128::from(30_000 + n), long).await;
        }
        assert_eq!(
            store
                .outcome(chat(), id(9_999))
                .await
                .unwrap_or_else(|e| panic!("{e}")),
            None
        );
        let stored = store.stored_outcomes().unwrap();
        assert!(
            store
                .inner
                .outcomes
                .get(codec::outcome_key(chat(), id(9_999)))
                .unwrap_or_else(|e| panic!("{e}"))
                .is_none(),
            "the expired outcome left the disk ({stored} stored)"
        );
        // And with it gone, the sweep rests again.
        let rested = steps(&store);
        for n in 0..4 * SWEEP_EVERY {
            put(u128::from(40_000 + n), long).await;
        }
        assert_eq!(steps(&store), rested);
    }

    /// How many outcome writes until the next one takes a step of the sweep (that one
    /// included).
    fn writes_before_a_step(store: &SledStore) -> u64 {
        let written = lock(&store.inner.outcome_book.sweep).writes;
        SWEEP_EVERY - written % SWEEP_EVERY
    }

    #[tokio::test]
    async fn the_whatsapp_id_index_is_built_once_and_follows_writes() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("db");
        let (a, b) = (id(1), id(2));
        {
            let store = SledStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
            store
                .put_outcome(chat(), StoredOutcome::new(a, "a").with_wa_id("wamid.A"))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        // Reopened: the index is built from disk at the first lookup.
        let store = SledStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
        store
            .put_outcome(chat(), StoredOutcome::new(b, "b").with_wa_id("wamid.B"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let find = async |wa: &str| {
            store
                .outcome_by_wa_id(chat(), wa)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .map(|(id, _)| id)
        };
        assert_eq!(find("wamid.A").await, Some(a));
        assert_eq!(find("wamid.B").await, Some(b));
        // Built: writes change it at once.
        store
            .put_outcome(chat(), StoredOutcome::new(a, "a2").with_wa_id("wamid.A2"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(find("wamid.A").await, None);
        assert_eq!(find("wamid.A2").await, Some(a));
        assert!(store.forget(chat()).await.unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(find("wamid.B").await, None);
        assert!(matches!(
            &*lock(&store.wa_index().state),
            WaState::Built(map) if map.is_empty()
        ));
    }

    #[tokio::test]
    async fn outcomes_written_before_expiry_existed_are_read_and_given_an_expiry() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = store(&dir);
        let budget = SWEEP_PER_WRITE * SWEEP_EVERY as usize;
        let old: Vec<MessageId> = (1..=budget as u128 + 3).map(id).collect();
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
        let with_expiry = |store: &SledStore| {
            store
                .inner
                .outcomes
                .iter()
                .values()
                .filter(|v| v.as_ref().is_ok_and(|v| codec::outcome_has_expiry(v)))
                .count()
        };
        // A step of the sweep gives its budget of them one...
        for _ in 0..SWEEP_EVERY {
            store
                .put_outcome(
                    chat(),
                    StoredOutcome::new(MessageId::from_uuid(uuid::Uuid::max()), "new"),
                )
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        // (The new outcome is journaled, not a single entry.)
        assert_eq!(with_expiry(&store), budget);
        // ...and a full pass the rest.
        assert_eq!(store.prune_outcomes().unwrap_or_else(|e| panic!("{e}")), 0);
        assert_eq!(with_expiry(&store), old.len());
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
