//! The `predicted_costs` tree: each send's predicted cost, written in batches.
//!
//! A predicted cost is accounting, not safety (see `consent`), and a sled insert per send
//! was the largest part of a guarded send's work (a tree insert, a split of the leaf it
//! lands in every few sends, a JSON encoding). So a cost is first appended, in a compact
//! binary form, to a batch in memory; the batch becomes one entry of the tree when it
//! reaches [`BATCH_BYTES`] (written by the send that filled it), at the latest
//! [`WRITE_AFTER`](super::batch_thread::WRITE_AFTER) after its first cost (written by this module's thread), before a cost
//! report is read, and at a clean close. From there it reaches disk with sled's next flush
//! (a group commit, or sled's own), like the single inserts it replaces.
//!
//! The tree holds two kinds of entries:
//! - a batch: key [`BATCH_TAG`] then a sequence number (8 bytes big-endian), value
//!   [`BATCH_FORMAT`] then records, each: conversation key (16 bytes), `messageId` (16),
//!   `sent_at` as seconds (8, signed) and nanoseconds (4), the category's index in
//!   [`PricingCategory::ALL`] (1), free (1), the WhatsApp id's length in bytes (4;
//!   `u32::MAX` for none) and its UTF-8 bytes; all numbers big-endian;
//! - from stores written before batches: business (8 bytes) + `messageId` (16) → the
//!   JSON of a [`PredictedCost`]. These are read as before, and never written again
//!   (except for a cost whose WhatsApp id does not fit a batch record).
//!
//! A business number's key is below 2^56, so an old key never starts with
//! [`BATCH_TAG`]. Batch numbers only grow (the next one follows the highest found at
//! open), so a cost recorded again for the same business and `messageId` (which a single
//! insert replaced) is read as its latest record: old entries first, then batches in
//! order, a later record replacing an earlier one.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

use chrono::DateTime;

use super::batch_thread::{BatchThread, Batching, Lull};
use super::codec::{BATCH_TAG, batch_key, batch_seq};
use super::consent::cost_key;
use super::integrity::TrackedTree;
use super::lock;
use crate::consent::{PredictedCost, PricingCategory};
use crate::{Conversation, MessageId, PhoneNumber, StoreError};

/// The first byte of a batch's value: the record layout above.
const BATCH_FORMAT: u8 = 1;
/// A batch is written once its value reaches this size: about 40 costs. Small enough
/// that a sled leaf of batches (split at 17 entries) stays well under the size sled
/// moves to a separate blob file.
const BATCH_BYTES: usize = 4096;
/// A record's fixed part: conversation, `messageId`, seconds, nanoseconds, category,
/// free, WhatsApp id length.
const FIXED_LEN: usize = 16 + 16 + 8 + 4 + 1 + 1 + 4;
/// The WhatsApp id length that says there is none.
const NO_WA_ID: u32 = u32::MAX;

/// Appends `cost`'s batch record to `out`; `false` (nothing appended) when its WhatsApp
/// id is too long for one.
fn encode_record(cost: &PredictedCost, out: &mut Vec<u8>) -> bool {
    let wa_len = match &cost.wa_id {
        None => NO_WA_ID,
        Some(wa_id) => match u32::try_from(wa_id.len()) {
            Ok(len) if len != NO_WA_ID => len,
            _ => return false,
        },
    };
    out.extend_from_slice(&cost.conversation.to_key());
    out.extend_from_slice(cost.message_id.as_bytes());
    out.extend_from_slice(&cost.sent_at.timestamp().to_be_bytes());
    out.extend_from_slice(&cost.sent_at.timestamp_subsec_nanos().to_be_bytes());
    let category = PricingCategory::ALL
        .iter()
        .position(|c| *c == cost.category)
        .unwrap_or(0);
    out.push(category as u8);
    out.push(u8::from(cost.free));
    out.extend_from_slice(&wa_len.to_be_bytes());
    if let Some(wa_id) = &cost.wa_id {
        out.extend_from_slice(wa_id.as_bytes());
    }
    true
}

/// Takes `N` bytes from the front of `bytes`.
fn take<const N: usize>(bytes: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = bytes.split_first_chunk::<N>()?;
    *bytes = rest;
    Some(*head)
}

/// Reads one record from the front of `bytes`; the error says what is wrong.
fn decode_record(bytes: &mut &[u8]) -> Result<PredictedCost, String> {
    let short = || format!("a record is cut short ({} bytes left)", bytes.len());
    if bytes.len() < FIXED_LEN {
        return Err(short());
    }
    let mut rest = *bytes;
    let (Some(conversation), Some(id), Some(secs), Some(nanos), Some([category, free])) = (
        take::<16>(&mut rest),
        take::<16>(&mut rest),
        take::<8>(&mut rest),
        take::<4>(&mut rest),
        take::<2>(&mut rest),
    ) else {
        return Err(short());
    };
    let wa_len = take::<4>(&mut rest)
        .map(u32::from_be_bytes)
        .ok_or_else(short)?;
    let conversation = Conversation::from_key(&conversation)
        .ok_or_else(|| "a record's conversation key names no conversation".to_string())?;
    let sent_at = DateTime::from_timestamp(i64::from_be_bytes(secs), u32::from_be_bytes(nanos))
        .ok_or_else(|| "a record's send time is out of range".to_string())?;
    let category = *PricingCategory::ALL
        .get(usize::from(category))
        .ok_or_else(|| format!("a record's category {category} is unknown"))?;
    let free = match free {
        0 => false,
        1 => true,
        other => return Err(format!("a record's free flag is {other}, not 0 or 1")),
    };
    let wa_id = if wa_len == NO_WA_ID {
        None
    } else {
        let len = usize::try_from(wa_len).map_err(|_| short())?;
        let (wa_id, after) = rest.split_at_checked(len).ok_or_else(short)?;
        rest = after;
        Some(
            std::str::from_utf8(wa_id)
                .map_err(|_| "a record's WhatsApp id is not UTF-8".to_string())?
                .to_owned(),
        )
    };
    *bytes = rest;
    Ok(PredictedCost {
        conversation,
        message_id: MessageId::from_bytes(id),
        wa_id,
        sent_at,
        category,
        free,
    })
}

/// Every record of a batch's value, in the order written; `Err` with those read before
/// the first unreadable one when one is (a batch cannot be read past it).
fn decode_batch(value: &[u8]) -> Result<Vec<PredictedCost>, (Vec<PredictedCost>, String)> {
    let mut costs = Vec::new();
    let mut bytes = match value.split_first() {
        Some((&BATCH_FORMAT, records)) => records,
        Some((format, _)) => return Err((costs, format!("unknown batch format {format}"))),
        None => return Err((costs, "an empty batch".into())),
    };
    while !bytes.is_empty() {
        match decode_record(&mut bytes) {
            Ok(cost) => costs.push(cost),
            Err(detail) => return Err((costs, detail)),
        }
    }
    Ok(costs)
}

/// The batch being filled, and the thread's state.
#[derive(Default)]
struct Pending {
    /// [`BATCH_FORMAT`] then records; empty when no cost waits.
    value: Vec<u8>,
    /// The thread's part.
    lull: Lull,
}

/// What the store and the thread share.
struct Shared {
    tree: TrackedTree,
    pending: Mutex<Pending>,
    wake: Condvar,
    /// Held while a batch is taken and written, so batches are numbered in the order their
    /// costs were recorded, and a reader that writes the pending batch finds every earlier
    /// one written; holds the next batch's number.
    writer: Mutex<u64>,
}

impl Shared {
    /// Writes the pending batch, if any, as the next batch entry (never over a stored
    /// one: a number found taken is passed over). On failure the costs go back in front
    /// of the pending batch, to be written by the next attempt.
    fn write_batch(&self) -> Result<(), StoreError> {
        let mut next = lock(&self.writer);
        let value = std::mem::take(&mut lock(&self.pending).value);
        if value.is_empty() {
            return Ok(());
        }
        let mut seq = *next;
        let failure = loop {
            match self
                .tree
                .compare_and_swap(batch_key(seq), None, Some(&value))
            {
                Ok(Ok(())) => {
                    *next = seq.saturating_add(1);
                    return Ok(());
                }
                Ok(Err(_taken)) => match seq.checked_add(1) {
                    Some(later) => seq = later,
                    None => {
                        break StoreError::Backend {
                            backend: "sled",
                            transient: false,
                            source: "no predicted cost batch number is left: the last one \
                                     (0xFF then eight 0xFF bytes) is taken"
                                .into(),
                        };
                    }
                },
                Err(error) => break error.into(),
            }
        };
        let mut pending = lock(&self.pending);
        let later = std::mem::replace(&mut pending.value, value);
        // `later` starts with its own format byte: only its records follow ours.
        pending
            .value
            .extend_from_slice(later.get(1..).unwrap_or_default());
        Err(failure)
    }
}

impl Batching for Shared {
    type State = Pending;
    const WHAT: &'static str = "predicted costs";

    fn state(&self) -> &Mutex<Pending> {
        &self.pending
    }

    fn wake(&self) -> &Condvar {
        &self.wake
    }

    fn lull(state: &mut Pending) -> &mut Lull {
        &mut state.lull
    }

    fn waiting(state: &Pending) -> bool {
        !state.value.is_empty()
    }

    fn write_pending(&self) -> Result<(), StoreError> {
        self.write_batch()
    }
}

/// The `predicted_costs` tree with its pending batch and the thread that writes it.
pub(super) struct PredictedCosts {
    shared: Arc<Shared>,
    thread: BatchThread,
}

impl PredictedCosts {
    /// Takes over the tree: finds the next batch number and starts the thread.
    /// `path` (the store's) names the store in an error.
    pub(super) fn start(tree: TrackedTree, path: &Path) -> Result<Self, StoreError> {
        let mut last = None;
        for entry in tree.range(&[BATCH_TAG][..]..).rev() {
            let (key, _) = entry?;
            if let Some(seq) = batch_seq(&key) {
                last = Some(seq);
                break;
            }
        }
        let shared = Arc::new(Shared {
            tree,
            pending: Mutex::default(),
            wake: Condvar::new(),
            writer: Mutex::new(last.map_or(0, |seq| seq.saturating_add(1))),
        });
        let thread = BatchThread::start(Arc::clone(&shared), "lipachat-costs", path)?;
        Ok(Self { shared, thread })
    }

    /// The tree, for the integrity tallies.
    pub(super) fn tree(&self) -> &TrackedTree {
        &self.shared.tree
    }

    /// Records `cost` in the pending batch, writing the batch when this fills it.
    pub(super) fn record(&self, cost: &PredictedCost) -> Result<(), StoreError> {
        let (wake, full) = {
            let mut pending = lock(&self.shared.pending);
            if pending.value.is_empty() {
                pending.value.reserve(BATCH_BYTES + 256);
                pending.value.push(BATCH_FORMAT);
            }
            if !encode_record(cost, &mut pending.value) {
                // Nothing appended: the format byte pushed above goes if it is alone.
                if pending.value.len() == 1 {
                    pending.value.clear();
                }
                drop(pending);
                let key = cost_key(cost.conversation.business, cost.message_id);
                self.shared.tree.insert(key, cost.encode().as_bytes())?;
                return Ok(());
            }
            (pending.lull.idle, pending.value.len() >= BATCH_BYTES)
        };
        if wake {
            self.shared.wake.notify_one();
        }
        if full {
            self.shared.write_batch()?;
        }
        Ok(())
    }

    /// Every predicted cost stored (of `business`, or of all), the latest record of each
    /// business and `messageId`, after writing the pending batch. Unreadable entries are
    /// skipped with a warning.
    pub(super) fn all(
        &self,
        business: Option<PhoneNumber>,
    ) -> Result<Vec<PredictedCost>, StoreError> {
        self.shared.write_batch()?;
        let tree = &self.shared.tree;
        let mut costs = Vec::new();
        let old = match business {
            Some(business) => tree.scan_prefix(business.as_u64().to_be_bytes()),
            None => tree.range(..&[BATCH_TAG][..]),
        };
        for entry in old {
            let (key, value) = entry?;
            match PredictedCost::decode(&value) {
                Ok(cost) => costs.push(cost),
                Err(error) => {
                    tracing::warn!(key = ?key, error, "skipping an unreadable predicted cost");
                }
            }
        }
        for entry in tree.range(&[BATCH_TAG][..]..) {
            let (key, value) = entry?;
            let batch = decode_batch(&value).unwrap_or_else(|(read, error)| {
                tracing::warn!(key = ?key, error, "skipping the unreadable rest of a batch of predicted costs");
                read
            });
            costs.extend(
                batch
                    .into_iter()
                    .filter(|cost| business.is_none_or(|b| cost.conversation.business == b)),
            );
        }
        Ok(latest_of_each(costs))
    }

    /// Stops the thread and writes the pending batch (a clean close).
    pub(super) fn close(&mut self) -> Result<(), StoreError> {
        self.thread.stop(&*self.shared);
        self.shared.write_batch()
    }
}

impl Drop for PredictedCosts {
    fn drop(&mut self) {
        if self.thread.running()
            && let Err(error) = self.close()
        {
            tracing::error!(%error, "writing the last predicted costs failed");
        }
    }
}

/// `costs` with only the last of each business and `messageId`, at the place of the
/// first.
fn latest_of_each(costs: Vec<PredictedCost>) -> Vec<PredictedCost> {
    let mut at = HashMap::with_capacity(costs.len());
    let mut kept: Vec<PredictedCost> = Vec::with_capacity(costs.len());
    for cost in costs {
        match at.entry((cost.conversation.business, cost.message_id)) {
            std::collections::hash_map::Entry::Occupied(slot) => kept[*slot.get()] = cost,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(kept.len());
                kept.push(cost);
            }
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, Utc};

    use super::*;
    use crate::consent::ConsentStore;
    use crate::{Customer, SledStore};

    fn cost(n: u64, wa_id: Option<String>) -> PredictedCost {
        PredictedCost {
            conversation: Conversation::new(
                PhoneNumber::from_u64(254_110_090_747 + n % 3).unwrap_or_else(|| panic!()),
                PhoneNumber::from_u64(254_700_000_000 + n).unwrap_or_else(|| panic!()),
            ),
            message_id: MessageId::new(),
            wa_id,
            sent_at: Utc::now() + TimeDelta::nanoseconds(n as i64 * 7_919),
            category: PricingCategory::ALL[n as usize % 4],
            free: n.is_multiple_of(2),
        }
    }

    fn open(dir: &tempfile::TempDir) -> SledStore {
        SledStore::open(dir.path().join("db")).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let mut group = cost(5, Some("wamid.é".into()));
        group.conversation = Conversation::with_customer(
            group.conversation.business,
            Customer::from_key(1 << 62).unwrap_or(group.conversation.customer),
        );
        let costs = [cost(1, None), cost(2, Some(String::new())), group];
        let mut value = vec![BATCH_FORMAT];
        for c in &costs {
            assert!(encode_record(c, &mut value));
        }
        assert_eq!(decode_batch(&value).ok(), Some(costs.to_vec()));
    }

    /// Every cut and every flipped byte of a batch reads as the records before the damage
    /// (or fewer) and an error or a different record, never a panic.
    #[test]
    fn a_damaged_batch_reads_up_to_the_damage() {
        let costs: Vec<_> = (0..3)
            .map(|n| cost(n, Some(format!("wamid.{n}"))))
            .collect();
        let mut value = vec![BATCH_FORMAT];
        for c in &costs {
            encode_record(c, &mut value);
        }
        for cut in 0..value.len() {
            match decode_batch(&value[..cut]) {
                Ok(read) => assert!(costs.starts_with(&read), "cut at {cut}"),
                Err((read, detail)) => {
                    assert!(costs.starts_with(&read), "cut at {cut}");
                    assert!(!detail.is_empty());
                }
            }
        }
        for at in 0..value.len() {
            for flip in [0x01, 0x80, 0xFF] {
                let mut damaged = value.clone();
                damaged[at] ^= flip;
                let read = match decode_batch(&damaged) {
                    Ok(read) | Err((read, _)) => read,
                };
                assert!(read.len() <= costs.len() + 1, "flip at {at}");
            }
        }
    }

    /// A store written before batches keeps its single JSON entries readable, next to
    /// batches; a cost recorded again reads as its latest record, also across a reopen.
    #[tokio::test]
    async fn old_single_entries_read_with_batches_and_the_latest_record_wins() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let old = cost(1, Some("wamid.old".into()));
        let kept_old = cost(2, None);
        {
            let store = open(&dir);
            let tree = store.inner.consent.predicted.tree();
            for c in [&old, &kept_old] {
                let key = cost_key(c.conversation.business, c.message_id);
                tree.insert(key, c.encode().as_bytes())
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
        let store = open(&dir);
        let mut again = old.clone();
        again.category = PricingCategory::Marketing;
        again.free = !old.free;
        let new = cost(3, Some("wamid.new".into()));
        for c in [&again, &new] {
            store
                .record_predicted_cost(c.clone())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let read = |store: &SledStore, business| {
            store
                .inner
                .consent
                .predicted
                .all(business)
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let expected = vec![again.clone(), kept_old.clone(), new.clone()];
        let mut all = read(&store, None);
        all.sort_by_key(|c| c.message_id);
        let mut sorted = expected.clone();
        sorted.sort_by_key(|c| c.message_id);
        assert_eq!(all, sorted);
        assert_eq!(
            read(&store, Some(old.conversation.business)),
            vec![again.clone()],
            "one business's: the old entry replaced by its later record"
        );
        drop(store);
        let store = open(&dir);
        let mut all = read(&store, None);
        all.sort_by_key(|c| c.message_id);
        assert_eq!(all, sorted, "after reopening");
        assert!(store.integrity().is_intact(), "{}", store.integrity());
    }

    /// Batches written in one session are numbered after those of the last: a reopened
    /// store's records never replace a later batch.
    #[tokio::test]
    async fn batch_numbers_go_on_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let first = cost(1, None);
        {
            let store = open(&dir);
            store
                .record_predicted_cost(first.clone())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let store = open(&dir);
        let mut again = first.clone();
        again.free = !first.free;
        store
            .record_predicted_cost(again.clone())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let all = store
            .inner
            .consent
            .predicted
            .all(None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(all, vec![again]);
        assert_eq!(store.inner.consent.predicted.tree().entry_count(), 2);
    }

    /// A stored batch is never written over, even one numbered where the next batch
    /// would go: with the last number taken, writing fails with a typed error and keeps
    /// both the stored batch and the pending costs.
    #[tokio::test]
    async fn a_stored_batch_is_never_written_over() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let planted = cost(1, Some("wamid.planted".into()));
        let mut value = vec![BATCH_FORMAT];
        assert!(encode_record(&planted, &mut value));
        {
            let store = open(&dir);
            store
                .inner
                .consent
                .predicted
                .tree()
                .insert(batch_key(u64::MAX), value.as_slice())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let store = open(&dir);
        let pending = cost(2, None);
        store
            .record_predicted_cost(pending.clone())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let costs = &store.inner.consent.predicted;
        match costs.all(None) {
            Err(StoreError::Backend { source, .. }) => {
                assert!(source.to_string().contains("batch number"), "{source}");
            }
            other => panic!("expected the exhausted batch numbers, got {other:?}"),
        }
        let stored = costs
            .tree()
            .get(batch_key(u64::MAX))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            stored.as_deref(),
            Some(value.as_slice()),
            "the stored batch"
        );
        assert_eq!(costs.tree().entry_count(), 1);
        assert_eq!(
            decode_batch(&lock(&costs.shared.pending).value).ok(),
            Some(vec![pending]),
            "the pending cost is kept"
        );
    }
}
