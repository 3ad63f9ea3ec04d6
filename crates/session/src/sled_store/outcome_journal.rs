//! The outcome journal: send outcomes written in batches, a sled entry per batch.
//!
//! A sled insert of a new key was most of what storing a send's outcome cost (a tree
//! walk, a split of the leaf it lands in every few sends, page fragments for sled's
//! threads to write), and every send naming its `messageId` stores one. So an outcome
//! whose key the `outcomes` tree does not hold is appended, as a record, to a batch in
//! memory; the batch becomes one entry of the same tree when it reaches [`BATCH_BYTES`],
//! at the latest [`WRITE_AFTER`](super::batch_thread::WRITE_AFTER) after its first record (written by this module's
//! thread), before every flush, and at a clean close. From there it reaches disk with
//! sled's next flush, as the single insert it replaces did: a store's `put_outcome` was
//! never waited on.
//!
//! A full batch is *sealed*: numbered and kept in memory, where lookups read it, until it
//! is written, after the state's lock is released (a sled insert under it stalled every
//! sender), by the send that filled it unless another writer is at it. The `writer`
//! lock, always taken before the state's, orders batch writes (one at a time, in number
//! order) and keeps unpacks and the outbox transactions from interleaving with them.
//!
//! A batch's key is [`BATCH_TAG`] then its number (8 bytes big-endian): 9 bytes, which no
//! outcome key (32 bytes, starting with a business number below 2^56) can be, so every
//! walk of the tree by outcome key passes batches over. Its value is [`BATCH_FORMAT`]
//! then records, each the outcome's key (32 bytes), its value's length (4 bytes
//! big-endian) and its value (as a single entry's: expiry, WhatsApp id, text).
//!
//! An in-memory index maps a 64-bit hash of each outcome key the journal holds to where
//! its latest record is (the pending batch, or a batch's number); it is built by
//! one scan of the batches at the first use. A lookup reads the record there and checks
//! its key, so two keys sharing a hash can only send the second to a single entry (the
//! write sees the slot taken by another key), never return the wrong outcome. That holds
//! across opens only because the hash is the same in every process (`slot_of`: SipHash
//! under fixed keys from a crate whose algorithm is fixed, the same slots as every earlier
//! release computed with std's `DefaultHasher`): the index built at an open
//! then never finds two journaled keys on one slot. A hash seeded per process could put
//! two on one after a restart, and the one whose batch came first would read as absent.
//!
//! The rules that keep one answer per key:
//! - a key the journal holds is read from the journal, whatever the tree holds under it;
//! - an outcome is journaled only if its key is in the journal already or the tree does
//!   not hold it (checked under the journal's lock): otherwise it is a single entry;
//! - every other write of an outcome (the outbox transactions, a customer's move, an
//!   erasure) and every walk of the tree by key (a conversation's outcomes, the scans by
//!   business number, the WhatsApp id index's build) first *unpacks* the journal: every
//!   record becomes a single entry, each batch's records in one transaction with the
//!   batch's removal, in batch order, so the latest record of a key is the entry it ends
//!   with, and a crash part way leaves the rest of the journal to answer for its keys.
//!   The pending and sealed records are written as the last batches first: a
//!   transaction keeps only
//!   the records that are their key's latest, so a later record must already be in the
//!   tree when the batch with the earlier one leaves, or a crash loses both.
//!   The outbox transactions and moves hold the journal's locks until they committed.
//!
//! A batch leaves the tree once its records and those of every earlier batch expired
//! (each batch's latest expiry is kept in memory): oldest first, so no batch outlives a
//! later one and a record a later one replaced cannot come back when the index is built
//! again. A replaced record stays in its batch until then; a read never returns it.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use sled::transaction::TransactionError;

use super::batch_thread::{BatchThread, Batching, Lull};
use super::codec::{BATCH_TAG, batch_key, batch_seq};
use super::integrity::TrackedTree;
use super::memory_map::{MemoryMap, slot_of};
use super::{codec, corrupt, lock, now_ms};
use crate::StoreError;

/// The first byte of a batch's value: the record layout above.
const BATCH_FORMAT: u8 = 1;
/// A batch is written once its value reaches this size: about eight outcomes of a sent
/// contact card. Small enough that a sled leaf of batches stays well under the size
/// sled moves to a separate blob file.
const BATCH_BYTES: usize = 4096;
/// An outcome key's length.
const KEY_LEN: usize = 32;

/// The index slot of an outcome key.
fn slot(key: &[u8; KEY_LEN]) -> u64 {
    slot_of(&[key.as_slice()])
}

/// Appends a record to `out`.
fn encode_record(key: &[u8; KEY_LEN], value: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(key);
    // A value longer than 4 GiB cannot come from one outcome (sled's own limit is lower).
    out.extend_from_slice(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(value);
}

/// One record of a batch.
#[derive(Debug)]
struct Record<'a> {
    key: &'a [u8; KEY_LEN],
    value: &'a [u8],
}

/// The records of a batch's value (`FORMAT` then records), read in place in the order
/// written: each an error once a part is unreadable (the error says what is wrong), and
/// nothing after it.
fn records(value: &[u8]) -> Result<Records<'_>, String> {
    match value.split_first() {
        Some((&BATCH_FORMAT, bytes)) => Ok(Records { bytes }),
        Some((format, _)) => Err(format!("unknown batch format {format}")),
        None => Err("an empty batch".into()),
    }
}

/// The iterator [`records`] makes: the bytes not read yet.
struct Records<'a> {
    bytes: &'a [u8],
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.bytes.is_empty() {
            return None;
        }
        let bytes = std::mem::take(&mut self.bytes);
        let short = || format!("a record is cut short ({} bytes left)", bytes.len());
        let read = || {
            let (key, rest) = bytes.split_first_chunk::<KEY_LEN>().ok_or_else(short)?;
            let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(short)?;
            let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| short())?;
            let (value, rest) = rest.split_at_checked(len).ok_or_else(short)?;
            Ok((Record { key, value }, rest))
        };
        // After an unreadable part `bytes` stays empty: the iterator ends.
        Some(read().map(|(record, rest)| {
            self.bytes = rest;
            record
        }))
    }
}

/// The records of a batch's value, in the order written; the error says what is wrong
/// with the first unreadable part.
fn decode_batch(value: &[u8]) -> Result<Vec<Record<'_>>, String> {
    records(value)?.collect()
}

/// The latest record of `key` in a batch's value, read in place (a lookup allocates
/// nothing); an error as [`decode_batch`]'s when any part of the batch is unreadable.
fn latest<'a>(value: &'a [u8], key: &[u8; KEY_LEN]) -> Result<Option<&'a [u8]>, String> {
    let mut found = None;
    for record in records(value)? {
        let record = record?;
        if record.key == key {
            found = Some(record.value);
        }
    }
    Ok(found)
}

/// An outcome value's expiry (ms since the epoch; 0 for a value without one, which the
/// journal never writes).
fn expiry_of(value: &[u8]) -> u64 {
    codec::outcome_expiry(value).unwrap_or(0)
}

/// Removes from the index the keys whose latest record is the one in `batch` (a batch's
/// value), found at `place`; how many.
fn unindex(state: &mut State, batch: &[u8], place: Place) -> usize {
    let mut removed = 0;
    for record in decode_batch(batch).unwrap_or_default() {
        if let Entry::Occupied(found) = state.index.entry(slot(record.key))
            && *found.get() == place
        {
            found.remove();
            removed += 1;
        }
    }
    removed
}

/// The records of `records` (a batch found at `place`) that are their key's latest:
/// the last of their key in the batch, and the batch the index names for it.
fn latest_records<'a>(records: Vec<Record<'a>>, state: &State, place: Place) -> Vec<Record<'a>> {
    let mut seen = std::collections::HashSet::new();
    let mut latest: Vec<Record<'a>> = records
        .into_iter()
        .rev()
        .filter(|record| {
            seen.insert(record.key) && state.index.get(&slot(record.key)) == Some(&place)
        })
        .collect();
    latest.reverse();
    latest
}

/// The latest records of `records` (see [`latest_records`]) that have not expired by
/// `now`.
fn live_latest<'a>(
    records: Vec<Record<'a>>,
    state: &State,
    place: Place,
    now: u64,
) -> Vec<Record<'a>> {
    let mut kept = latest_records(records, state, place);
    kept.retain(|record| expiry_of(record.value) > now);
    kept
}

/// Where a key's latest record is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Place {
    /// In the batch being filled.
    Pending,
    /// In the batch of this number: sealed (full, in memory until written) or written.
    Batch(u64),
}

/// A full batch, numbered, waiting in memory for its write.
struct Sealed {
    value: Arc<[u8]>,
    /// The latest expiry among its records.
    expiry: u64,
}

/// A batch's value: in memory (sealed) or read from the tree.
enum BatchBytes {
    Sealed(Arc<[u8]>),
    Stored(sled::IVec),
}

impl std::ops::Deref for BatchBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Self::Sealed(value) => value,
            Self::Stored(value) => value,
        }
    }
}

/// What the journal holds under a key.
pub(super) enum Held {
    /// This record (the outcome's value).
    Record(Vec<u8>),
    /// Nothing, and no other key shares its slot: a write may be journaled.
    Nothing,
    /// Nothing, but another key holds its slot: a write must be a single entry.
    SlotTaken,
}

/// The journal's state, under one lock.
#[derive(Default)]
struct State {
    /// The batches were scanned into the index.
    built: bool,
    /// [`BATCH_FORMAT`] then the pending records; empty when none waits.
    pending: Vec<u8>,
    /// The latest expiry among the pending records.
    pending_expiry: u64,
    /// Where each key's latest record is, by slot.
    index: MemoryMap<u64, Place>,
    /// Sealed batches by number, not yet written (numbered after every written one).
    sealed: BTreeMap<u64, Sealed>,
    /// Written batches by number: their latest expiry.
    batches: BTreeMap<u64, u64>,
    /// The next batch's number.
    next_seq: u64,
    /// The thread's part.
    lull: Lull,
}

/// What the store and the thread share.
struct Shared {
    tree: Arc<TrackedTree>,
    state: Mutex<State>,
    wake: Condvar,
    /// Held by whoever writes sealed batches to the tree, or changes batches in ways a
    /// write must not interleave with (an unpack); always taken before `state`.
    writer: Mutex<()>,
}

/// The journal with its pending batch and the thread that writes it.
pub(super) struct OutcomeJournal {
    shared: Arc<Shared>,
    thread: BatchThread,
}

/// The journal's lock, held by a writer of a single entry until it committed: no record
/// of its key can be journaled meanwhile.
pub(super) struct Evicted<'a> {
    _state: MutexGuard<'a, State>,
    _writer: MutexGuard<'a, ()>,
    unpacked_expiry: u64,
}

impl Evicted<'_> {
    /// The earliest expiry among the records the journal unpacked into single entries
    /// (`u64::MAX`: none), which the single entries' sweep must be told of.
    pub(super) fn unpacked_expiry(&self) -> u64 {
        self.unpacked_expiry
    }
}

fn storage_error(error: TransactionError<std::convert::Infallible>) -> StoreError {
    match error {
        TransactionError::Storage(error) => error.into(),
        TransactionError::Abort(never) => match never {},
    }
}

impl Shared {
    /// The state, with the index built.
    fn state(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        let mut state = lock(&self.state);
        if !state.built {
            self.build(&mut state)?;
        }
        Ok(state)
    }

    /// Scans the written batches into the index.
    fn build(&self, state: &mut State) -> Result<(), StoreError> {
        let mut index = MemoryMap::default();
        let mut batches = BTreeMap::new();
        let mut last = None;
        for entry in self.tree.range(&[BATCH_TAG][..]..) {
            let (key, value) = entry?;
            let Some(seq) = batch_seq(&key) else {
                continue;
            };
            // Only a readable batch numbers the next: an unreadable one (damage) could
            // hold any number, the last included, and leave none for the batches to come.
            // A batch written under its number later replaces it.
            let records = match decode_batch(&value) {
                Ok(records) => {
                    last = Some(seq);
                    records
                }
                Err(detail) => {
                    tracing::warn!(
                        batch = seq,
                        detail,
                        "an outcome batch is unreadable: its outcomes are not found"
                    );
                    Vec::new()
                }
            };
            let mut expiry = 0;
            for record in &records {
                index.insert(slot(record.key), Place::Batch(seq));
                expiry = expiry.max(expiry_of(record.value));
            }
            batches.insert(seq, expiry);
        }
        // Pending and sealed records (after a failed unpack, which rebuilds) stay where
        // they are.
        for (slot, place) in std::mem::take(&mut state.index) {
            let in_memory = match place {
                Place::Pending => true,
                Place::Batch(seq) => state.sealed.contains_key(&seq),
            };
            if in_memory {
                index.insert(slot, place);
            }
        }
        state.batches = batches;
        state.index = index;
        state.next_seq = state
            .next_seq
            .max(last.map_or(0, |seq| seq.saturating_add(1)));
        state.built = true;
        Ok(())
    }

    /// What the journal holds under `key`. `conversation` names the store's outcome in an
    /// error.
    fn find(
        &self,
        state: &State,
        key: &[u8; KEY_LEN],
        conversation: crate::Conversation,
    ) -> Result<Held, StoreError> {
        let Some(place) = state.index.get(&slot(key)).copied() else {
            return Ok(Held::Nothing);
        };
        let found = match place {
            Place::Pending => latest(&state.pending, key)
                .map_err(|detail| {
                    corrupt(conversation, format!("pending outcome batch: {detail}"))
                })?
                .map(<[u8]>::to_vec),
            Place::Batch(seq) => {
                let Some(value) = self.batch(state, seq)? else {
                    return Err(corrupt(
                        conversation,
                        format!("outcome batch {seq} is indexed but not in the tree"),
                    ));
                };
                latest(&value, key)
                    .map_err(|detail| {
                        corrupt(conversation, format!("outcome batch {seq}: {detail}"))
                    })?
                    .map(<[u8]>::to_vec)
            }
        };
        Ok(found.map_or(Held::SlotTaken, Held::Record))
    }

    /// Batch `seq`'s value: sealed in memory, or from the tree.
    fn batch(&self, state: &State, seq: u64) -> Result<Option<BatchBytes>, StoreError> {
        if let Some(sealed) = state.sealed.get(&seq) {
            return Ok(Some(BatchBytes::Sealed(Arc::clone(&sealed.value))));
        }
        Ok(self.tree.get(batch_key(seq))?.map(BatchBytes::Stored))
    }

    /// Seals the pending batch, if any: numbered, and kept in memory until written.
    fn seal(state: &mut State) -> Result<(), StoreError> {
        if state.pending.is_empty() {
            return Ok(());
        }
        let seq = state.next_seq;
        let next = seq.checked_add(1).ok_or_else(|| StoreError::Backend {
            backend: "sled",
            transient: false,
            source: "no outcome batch number is left".into(),
        })?;
        let value: Arc<[u8]> = Arc::from(std::mem::take(&mut state.pending));
        for record in decode_batch(&value).unwrap_or_default() {
            if let Some(place) = state.index.get_mut(&slot(record.key))
                && *place == Place::Pending
            {
                *place = Place::Batch(seq);
            }
        }
        let expiry = std::mem::take(&mut state.pending_expiry);
        state.sealed.insert(seq, Sealed { value, expiry });
        state.next_seq = next;
        Ok(())
    }

    /// Writes the sealed batches to the tree, lowest number first, each outside the
    /// state's lock (readers find it in memory until it is written). The caller holds
    /// `writer`. On failure the batch stays sealed, for the next attempt.
    fn write_sealed(&self) -> Result<(), StoreError> {
        loop {
            let Some((seq, value)) = lock(&self.state)
                .sealed
                .first_key_value()
                .map(|(&seq, sealed)| (seq, Arc::clone(&sealed.value)))
            else {
                return Ok(());
            };
            self.tree.insert(batch_key(seq), &*value)?;
            let mut state = lock(&self.state);
            if let Some(sealed) = state.sealed.remove(&seq) {
                state.batches.insert(seq, sealed.expiry);
            }
        }
    }

    /// Writes every sealed batch to the tree, lowest number first, under the state's
    /// lock (for an unpack, which holds `writer` too).
    fn write_sealed_locked(&self, state: &mut State) -> Result<(), StoreError> {
        while let Some((seq, value)) = state
            .sealed
            .first_key_value()
            .map(|(&seq, sealed)| (seq, Arc::clone(&sealed.value)))
        {
            self.tree.insert(batch_key(seq), &*value)?;
            if let Some(sealed) = state.sealed.remove(&seq) {
                state.batches.insert(seq, sealed.expiry);
            }
        }
        Ok(())
    }

    /// Seals the pending batch and writes every sealed one.
    fn seal_and_write(&self) -> Result<(), StoreError> {
        let _writer = lock(&self.writer);
        Self::seal(&mut *self.state()?)?;
        self.write_sealed()
    }

    /// Removes, oldest first, every batch whose records all expired by `now`, stopping at
    /// the first that holds a live one (so no batch outlives a later one, and a record
    /// the removed batch replaced cannot come back at the next build); the pending batch
    /// too, once it is the only one and its records all expired (it is never written).
    /// How many outcomes left.
    fn expire(&self, state: &mut State, now: u64) -> Result<usize, StoreError> {
        let mut removed = 0;
        while let Some((&seq, &expiry)) = state.batches.first_key_value() {
            if expiry > now {
                break;
            }
            if let Some(value) = self.tree.remove(batch_key(seq))? {
                removed += unindex(state, &value, Place::Batch(seq));
            }
            state.batches.remove(&seq);
        }
        if state.batches.is_empty()
            && state.sealed.is_empty()
            && !state.pending.is_empty()
            && state.pending_expiry <= now
        {
            let pending = std::mem::take(&mut state.pending);
            removed += unindex(state, &pending, Place::Pending);
            state.pending_expiry = 0;
        }
        Ok(removed)
    }

    /// Whether [`Shared::expire`] has anything to remove by `now`.
    fn expiry_due(state: &State, now: u64) -> bool {
        match state.batches.first_key_value() {
            Some((_, &expiry)) => expiry <= now,
            None => {
                state.sealed.is_empty() && !state.pending.is_empty() && state.pending_expiry <= now
            }
        }
    }

    /// Makes every record a single entry (see the module's rules); the journal is empty
    /// after. The earliest expiry among them (`u64::MAX`: none). After a failure the
    /// index is built again from the tree at the next use. The caller holds `writer`.
    fn unpack(&self, state: &mut State) -> Result<u64, StoreError> {
        let unpacked = self.unpack_all(state);
        if unpacked.is_err() {
            state.built = false;
        }
        unpacked
    }

    fn unpack_all(&self, state: &mut State) -> Result<u64, StoreError> {
        // The pending records become a batch first, the last: every record is then in the
        // tree, after the batches it replaces records of, before any batch leaves. A
        // crash part way (some batches' transactions on disk, each taking with it the
        // records a later batch replaced) finds those later records in the batches left,
        // where a pending record, unpacked last from memory, would be lost with the
        // record it replaced (an acknowledged outcome gone, and its send repeated). The
        // sealed batches, numbered before it, are written before it for the same reason.
        Self::seal(state)?;
        self.write_sealed_locked(state)?;
        // Only each key's latest record, unless it expired: the journal holds no key the
        // tree holds, so an expired outcome left out reads as it would have (absent).
        let now = now_ms();
        let mut earliest = u64::MAX;
        let mut wanted = |kept: &[Record<'_>]| {
            earliest = kept
                .iter()
                .map(|r| expiry_of(r.value))
                .fold(earliest, u64::min);
        };
        let seqs: Vec<u64> = state.batches.keys().copied().collect();
        for seq in seqs {
            let key = batch_key(seq);
            if let Some(value) = self.tree.get(key)? {
                let records = decode_batch(&value).unwrap_or_else(|detail| {
                    tracing::warn!(
                        batch = seq,
                        detail,
                        "an outcome batch is unreadable: its outcomes are dropped"
                    );
                    Vec::new()
                });
                let kept = live_latest(records, state, Place::Batch(seq), now);
                wanted(&kept);
                self.single_entries(&kept, (&key, &value))?;
            }
            state.batches.remove(&seq);
        }
        state.index.clear();
        Ok(earliest)
    }

    /// Writes `records` as single entries, removing `batch` (its key and value) in the same
    /// transaction.
    fn single_entries(
        &self,
        records: &[Record<'_>],
        batch: (&[u8; 9], &[u8]),
    ) -> Result<(), StoreError> {
        for record in records {
            self.tree.will_write(record.key);
        }
        let committed = self.tree.for_transaction().transaction(|tx| {
            let mut olds = Vec::with_capacity(records.len());
            for record in records {
                olds.push(tx.insert(&record.key[..], record.value)?);
            }
            tx.remove(&batch.0[..])?;
            Ok(olds)
        });
        let olds = match committed {
            Ok(olds) => olds,
            Err(error) => {
                self.tree.failed();
                return Err(storage_error(error));
            }
        };
        // The tallies follow each key's first old value and last new one.
        let mut first_old: HashMap<&[u8; KEY_LEN], Option<sled::IVec>> = HashMap::new();
        let mut last_new: HashMap<&[u8; KEY_LEN], &[u8]> = HashMap::new();
        for (record, old) in records.iter().zip(olds) {
            first_old.entry(record.key).or_insert(old);
            last_new.insert(record.key, record.value);
        }
        for (key, old) in &first_old {
            self.tree
                .committed(&key[..], old.as_deref(), last_new.get(key).copied());
        }
        self.tree.committed(batch.0, Some(batch.1), None);
        Ok(())
    }
}

impl Batching for Shared {
    type State = State;
    const WHAT: &'static str = "send outcomes";

    fn state(&self) -> &Mutex<State> {
        &self.state
    }

    fn wake(&self) -> &Condvar {
        &self.wake
    }

    fn lull(state: &mut State) -> &mut Lull {
        &mut state.lull
    }

    fn waiting(state: &State) -> bool {
        !state.pending.is_empty() || !state.sealed.is_empty()
    }

    fn write_pending(&self) -> Result<(), StoreError> {
        self.seal_and_write()
    }
}

impl OutcomeJournal {
    /// Takes over the journal kept in `tree` and starts the thread. `path` (the store's)
    /// names the store in an error.
    pub(super) fn start(tree: Arc<TrackedTree>, path: &Path) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared {
            tree,
            state: Mutex::default(),
            wake: Condvar::new(),
            writer: Mutex::default(),
        });
        let thread = BatchThread::start(Arc::clone(&shared), "lipachat-outcomes", path)?;
        Ok(Self { shared, thread })
    }

    /// What the journal holds under `key`.
    pub(super) fn get(
        &self,
        key: &[u8; KEY_LEN],
        conversation: crate::Conversation,
    ) -> Result<Held, StoreError> {
        let state = self.shared.state()?;
        self.shared.find(&state, key, conversation)
    }

    /// Journals `value` under `key` unless it must be a single entry: when another key
    /// holds its slot, or the journal does not hold it and `stored_alone` (asked under the
    /// journal's lock) says the tree does. `Ok(Some(old))` when journaled (`old`: the
    /// record it replaced), `Ok(None)` when the caller must write a single entry. Expired
    /// batches (by `now`) leave first.
    pub(super) fn put(
        &self,
        key: &[u8; KEY_LEN],
        value: &[u8],
        now: u64,
        conversation: crate::Conversation,
        stored_alone: impl FnOnce() -> Result<bool, StoreError>,
    ) -> Result<Option<Option<Vec<u8>>>, StoreError> {
        let mut state = self.shared.state()?;
        if Shared::expiry_due(&state, now) {
            self.shared.expire(&mut state, now)?;
        }
        let old = match self.shared.find(&state, key, conversation)? {
            Held::Record(old) => Some(old),
            Held::SlotTaken => return Ok(None),
            Held::Nothing if stored_alone()? => return Ok(None),
            Held::Nothing => None,
        };
        let wake = state.lull.idle;
        if state.pending.is_empty() {
            state.pending.reserve(BATCH_BYTES + 1024);
            state.pending.push(BATCH_FORMAT);
        }
        encode_record(key, value, &mut state.pending);
        state.pending_expiry = state.pending_expiry.max(expiry_of(value));
        state.index.insert(slot(key), Place::Pending);
        if state.pending.len() >= BATCH_BYTES
            && let Err(error) = Shared::seal(&mut state)
        {
            tracing::warn!(%error, "sealing a batch of send outcomes failed; it stays pending");
        }
        let sealed = !state.sealed.is_empty();
        drop(state);
        if wake {
            self.shared.wake.notify_one();
        }
        // The sealed batch is written now, outside the state's lock, unless another
        // writer is at it (it writes every sealed batch it finds; the thread, any left).
        if sealed {
            let writer = match self.shared.writer.try_lock() {
                Ok(writer) => Some(writer),
                Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            };
            if let Some(_writer) = writer
                && let Err(error) = self.shared.write_sealed()
            {
                tracing::warn!(%error, "writing a batch of send outcomes failed; the thread retries it");
            }
        }
        Ok(Some(old))
    }

    /// The first of `wanted`'s answers over the latest record of each key the journal
    /// holds (key, value), in no particular order: a scan of every batch, as a walk of the
    /// tree would be, without unpacking them. The journal's lock is held for one batch at
    /// a time (sends wait for one batch's read, not for the scan), in the order records
    /// move (pending, then sealed, then written; an unpack moves them to single entries,
    /// which the caller scans after), so a record that moves during the scan is met
    /// where it went. A key rewritten during the scan moves its latest record to the
    /// pending batch or to a batch numbered after the scan began, neither of which the
    /// scan reads again: such a key, met in a batch it read, is answered from where its
    /// latest record is now.
    pub(super) fn find<T>(
        &self,
        wanted: impl Fn(&[u8; KEY_LEN], &[u8]) -> Option<T>,
    ) -> Result<Option<T>, StoreError> {
        let numbers: Vec<u64> = {
            let state = self.shared.state()?;
            if let Ok(records) = decode_batch(&state.pending)
                && let Some(found) = latest_records(records, &state, Place::Pending)
                    .into_iter()
                    .find_map(|record| wanted(record.key, record.value))
            {
                return Ok(Some(found));
            }
            state
                .sealed
                .keys()
                .chain(state.batches.keys())
                .copied()
                .collect()
        };
        let scanned: std::collections::HashSet<u64> = numbers.iter().copied().collect();
        for seq in numbers {
            let state = self.shared.state()?;
            let Some(value) = self.shared.batch(&state, seq)? else {
                continue;
            };
            let Ok(records) = decode_batch(&value) else {
                continue;
            };
            let mut seen = std::collections::HashSet::new();
            for record in records.iter().rev() {
                if !seen.insert(record.key) {
                    continue;
                }
                let moved_after_scan_began = match state.index.get(&slot(record.key)) {
                    Some(&Place::Batch(at)) if at == seq => {
                        if let Some(found) = wanted(record.key, record.value) {
                            return Ok(Some(found));
                        }
                        continue;
                    }
                    Some(Place::Pending) => true,
                    Some(Place::Batch(at)) => !scanned.contains(at),
                    None => false,
                };
                if moved_after_scan_began
                    && let Some((conversation, _)) = codec::parse_outcome_key(record.key)
                    && let Held::Record(latest) =
                        self.shared.find(&state, record.key, conversation)?
                    && let Some(found) = wanted(record.key, &latest)
                {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }

    /// Makes every record a single entry (see the module's rules); the earliest expiry
    /// among them (`u64::MAX`: none).
    pub(super) fn unpack(&self) -> Result<u64, StoreError> {
        let _writer = lock(&self.shared.writer);
        let mut state = self.shared.state()?;
        self.shared.unpack(&mut state)
    }

    /// Makes sure the journal does not hold `key` (unpacking it if it does), and holds the
    /// journal's lock until the returned guard drops: a single entry written meanwhile is
    /// the key's only record.
    pub(super) fn evict(&self, key: &[u8; KEY_LEN]) -> Result<Evicted<'_>, StoreError> {
        let writer = lock(&self.shared.writer);
        let mut state = self.shared.state()?;
        let mut unpacked_expiry = u64::MAX;
        if state.index.contains_key(&slot(key)) {
            unpacked_expiry = self.shared.unpack(&mut state)?;
        }
        Ok(Evicted {
            _state: state,
            _writer: writer,
            unpacked_expiry,
        })
    }

    /// Makes every record a single entry, and holds the journal's lock until the returned
    /// guard drops: nothing is journaled meanwhile.
    pub(super) fn unpacked(&self) -> Result<Evicted<'_>, StoreError> {
        let writer = lock(&self.shared.writer);
        let mut state = self.shared.state()?;
        let unpacked_expiry = self.shared.unpack(&mut state)?;
        Ok(Evicted {
            _state: state,
            _writer: writer,
            unpacked_expiry,
        })
    }

    /// Removes every written batch whose records all expired by `now`; how many outcomes
    /// left.
    pub(super) fn expire(&self, now: u64) -> Result<usize, StoreError> {
        let mut state = self.shared.state()?;
        self.shared.expire(&mut state, now)
    }

    /// How many outcomes the tree and the journal hold: the tree's entries less the
    /// batch entries, plus the journal's outcomes. Counted under the journal's locks,
    /// `writer` included (a sealed batch is written to the tree outside the state's
    /// lock, and counted twice until it is moved to the written ones), so no batch comes
    /// or goes between the counts.
    pub(super) fn stored_outcomes(&self) -> Result<usize, StoreError> {
        let _writer = lock(&self.shared.writer);
        let state = self.shared.state()?;
        let entries = self.shared.tree.entry_count();
        Ok(entries.saturating_sub(state.batches.len()) + state.index.len())
    }

    /// Writes the pending batch (before a flush).
    pub(super) fn write_pending(&self) -> Result<(), StoreError> {
        self.shared.seal_and_write()
    }

    /// Stops the thread and writes the pending batch (a clean close).
    pub(super) fn close(&self) -> Result<(), StoreError> {
        self.thread.stop(&*self.shared);
        self.write_pending()
    }
}

impl Drop for OutcomeJournal {
    fn drop(&mut self) {
        if self.thread.running()
            && let Err(error) = self.close()
        {
            tracing::error!(%error, "writing the last send outcomes failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_in_order_and_the_latest_of_a_key_wins() {
        let (a, b) = ([1u8; KEY_LEN], [2u8; KEY_LEN]);
        let mut batch = vec![BATCH_FORMAT];
        encode_record(&a, b"first", &mut batch);
        encode_record(&b, b"", &mut batch);
        encode_record(&a, b"second", &mut batch);
        let records = decode_batch(&batch).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(latest(&batch, &a), Ok(Some(&b"second"[..])));
        assert_eq!(latest(&batch, &b), Ok(Some(&b""[..])));
        assert_eq!(latest(&batch, &[3u8; KEY_LEN]), Ok(None));
    }

    #[test]
    fn a_cut_or_unknown_batch_is_an_error_naming_it() {
        let key = [1u8; KEY_LEN];
        let mut batch = vec![BATCH_FORMAT];
        encode_record(&key, b"value", &mut batch);
        let whole = batch.len();
        encode_record(&key, b"later", &mut batch);
        for cut in (2..whole).chain(whole + 1..batch.len()) {
            let error = decode_batch(&batch[..cut]).err().unwrap();
            assert!(error.contains("cut short"), "{error}");
            // A lookup reads the whole batch: a record found before the cut is not
            // answered from a batch that is damaged after it.
            let error = latest(&batch[..cut], &key).unwrap_err();
            assert!(error.contains("cut short"), "{error}");
        }
        assert!(decode_batch(&[9]).unwrap_err().contains("format 9"));
        assert!(decode_batch(&[]).unwrap_err().contains("empty"));
        assert!(latest(&[9], &key).unwrap_err().contains("format 9"));
        assert!(latest(&[], &key).unwrap_err().contains("empty"));
    }

    proptest::proptest! {
        /// Whatever the bytes, a lookup in place answers as decoding the whole batch and
        /// taking the key's last record: the same record, or the same error.
        #[test]
        fn a_lookup_in_place_answers_as_the_decoded_batch(
            records in proptest::collection::vec(
                (0u8..3, proptest::collection::vec(proptest::num::u8::ANY, 0..12)),
                0..6,
            ),
            cut in proptest::option::of(0usize..200),
            wanted in 0u8..3,
        ) {
            let mut batch = vec![BATCH_FORMAT];
            for (key, value) in &records {
                encode_record(&[*key; KEY_LEN], value, &mut batch);
            }
            let batch = &batch[..cut.map_or(batch.len(), |cut| cut.min(batch.len()))];
            let key = [wanted; KEY_LEN];
            let decoded = decode_batch(batch).map(|records| {
                records.iter().rev().find(|r| *r.key == key).map(|r| r.value)
            });
            proptest::prop_assert_eq!(latest(batch, &key), decoded);
        }
    }

    #[test]
    fn batch_keys_are_never_outcome_keys() {
        assert_eq!(batch_seq(&batch_key(7)), Some(7));
        assert_eq!(batch_seq(&[BATCH_TAG; KEY_LEN]), None);
        assert_eq!(batch_key(u64::MAX).len(), 9);
    }
}
