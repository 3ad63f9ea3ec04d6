//! [`ConsentStore`] on sled: five trees beside the window trees.
//!
//! - `consent`: conversation key → [`MarketingConsent::encode`]'s text;
//! - `free_entry_point`: conversation key → [`FreeEntryPoint::encode`]'s text;
//! - `predicted_costs`: batches of [`PredictedCost`]s in a compact binary form (see
//!   `predicted_costs`), and in stores written before batches, business (8 bytes) +
//!   `messageId` (16 bytes) → the JSON of one;
//! - `reported_pricing`: business (8 bytes) + `messageId` (16 bytes) → the JSON of a
//!   [`ReportedPricing`];
//! - `reached`: portfolio name, a zero byte, customer key (8 bytes) → when it was last
//!   reached (epoch ms, 8 bytes big-endian); and under the portfolio name and the zero
//!   byte alone, the portfolio's clock mark: when (by this machine's clock, epoch ms,
//!   8 bytes big-endian) a count last wrote an entry, then the kind of clock its counts
//!   are made on ([`CountTime::clock_kind`]'s text), written before each entry. A count
//!   on the other kind is refused while the portfolio holds entries and the mark is
//!   younger than the span, like the Redis store's `reached-clock` key, which expires
//!   with the count. A portfolio with entries and no mark (counted before the mark
//!   existed) is taken as counted at its newest entry on the kind its name implies
//!   ([`kind_of_an_unmarked_count`]: given times for a service counter, else the real
//!   clock), as the Redis store takes it.
//!
//! The five trees are tracked by the integrity check (their entries are tallied like the
//! window trees'). A move of a customer (`move_customer`) takes the consent and free
//! entry point records with it in its one transaction, under this module's lock.
//!
//! A sled store is open in one process only, so one lock makes every read-modify-write
//! here atomic. A call that wrote something waits for durability (group commit) before it
//! returns, like the store's other writes; a call that wrote nothing does not wait. The
//! one exception is a send's predicted cost ([`ConsentStore::record_predicted_cost`]):
//! accounting, not safety, it joins a batch in memory that is written within
//! `batch_thread::WRITE_AFTER` (or sooner, once full), and reaches disk with the next
//! flush after that (another write's group commit, or sled's own flush every
//! `flush_every_ms`) without waiting for it.
//!
//! Because the store is open in one process, the lock also guards an in-memory copy of
//! each portfolio's `reached` entries ([`Counters`]), loaded by one scan the first time
//! the portfolio is counted and kept equal to the tree by every write here, so a count is
//! a lookup and not a scan of up to the limit's entries.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};

use super::SledStore;
use super::integrity::TrackedTree;
use super::predicted_costs::PredictedCosts;
use crate::back_off::BackOffEntry;
use crate::consent::{
    ConsentEntry, ConsentStore, CostRecord, FreeEntryPoint, MarketingConsent, PredictedCost, Reach,
    ReportedPricing, check_portfolio_name, corrupt_record, kind_of_an_unmarked_count,
    pair_cost_records, warn_if_confirmation_refused,
};
use crate::{Conversation, CountTime, Customer, MessageId, PhoneNumber, StoreError};

/// The trees and the lock of the consent records, tracked by the integrity check like
/// the window trees.
pub(super) struct ConsentTrees {
    pub(super) consent: TrackedTree,
    pub(super) entry: TrackedTree,
    pub(super) predicted: PredictedCosts,
    pub(super) reported: TrackedTree,
    pub(super) reached: TrackedTree,
    /// Held by every read-modify-write of a consent or free entry point record, and by
    /// a move of a customer; guards the in-memory counts.
    pub(super) lock: Mutex<Counters>,
}

/// One portfolio's `reached` entries in memory: exactly the tree's entries under its
/// prefix (the tree is written first, then this copy; a failed write drops the copy, to
/// be loaded again from the tree).
#[derive(Default)]
struct Counter {
    /// Customer → when it was last reached (epoch ms).
    at: HashMap<u64, i64>,
    /// The same entries ordered by time, to drop those leaving the span from the oldest.
    by_time: BTreeSet<(i64, u64)>,
    /// The span (ms) of the last count, to forget a counter whose entries all left it.
    span_ms: i64,
    /// The portfolio's clock mark as kept in the tree (none: no count and no mark); a
    /// count on the other kind is refused while the counter holds entries and the mark
    /// is younger than the span.
    clock: Option<ClockMark>,
}

impl Counter {
    /// Records `customer` as last reached at `at_ms` (replacing its earlier time).
    fn set(&mut self, customer: u64, at_ms: i64) {
        if let Some(previous) = self.at.insert(customer, at_ms) {
            self.by_time.remove(&(previous, customer));
        }
        self.by_time.insert((at_ms, customer));
    }

    /// The newest time in the counter, if any.
    fn newest(&self) -> Option<i64> {
        self.by_time.last().map(|&(at, _)| at)
    }
}

/// The in-memory counts of the portfolios counted since the store was opened, by their
/// key prefix in the `reached` tree. A counter whose entries all left its span is
/// forgotten when another is loaded (a month's service counter, once the month is over),
/// so memory holds about the portfolios in use: at most `limit` entries each. Code that
/// writes the `reached` tree other than through [`ConsentStore::reach_customer`] (an
/// import) must do it under the lock and clear `by_prefix`, so each count is loaded again.
#[derive(Default)]
pub(super) struct Counters {
    by_prefix: HashMap<Vec<u8>, Counter>,
}

/// A portfolio's clock mark: the kind of clock its counts are made on, and when (by this
/// machine's clock) a count last wrote an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ClockMark {
    /// [`CountTime::clock_kind`] of its counts.
    kind: &'static str,
    /// When a count last wrote an entry, epoch ms on this machine's clock.
    written_ms: i64,
}

impl ClockMark {
    /// The mark's stored form: `written_ms` (8 bytes big-endian), then the kind's text.
    fn encode(self) -> Vec<u8> {
        let mut value = self.written_ms.to_be_bytes().to_vec();
        value.extend_from_slice(self.kind.as_bytes());
        value
    }

    /// A stored mark (`None`: not one this build can read).
    fn decode(value: &[u8]) -> Option<Self> {
        let (written, kind) = value.split_first_chunk::<8>()?;
        let kind = [CountTime::REAL_CLOCK, CountTime::SIMULATED_CLOCK]
            .into_iter()
            .find(|known| known.as_bytes() == kind)?;
        Some(Self {
            kind,
            written_ms: i64::from_be_bytes(*written),
        })
    }

    /// Whether a count on `kind` at `now_ms` (this machine's clock) over `span_ms` must be
    /// refused on a counter holding entries under this mark.
    fn refuses(self, kind: &'static str, now_ms: i64, span_ms: i64) -> bool {
        self.kind != kind && now_ms < self.written_ms.saturating_add(span_ms)
    }
}

impl ConsentTrees {
    /// The names of the trees, in the order [`ConsentTrees::new`] takes them (and the
    /// integrity check lists them).
    pub(super) const NAMES: [&'static str; 5] = [
        "consent",
        "free_entry_point",
        "predicted_costs",
        "reported_pricing",
        "reached",
    ];

    /// The consent trees, opened and tracked, in [`ConsentTrees::NAMES`] order, of the
    /// store at `path` (starting the predicted costs' writer thread).
    pub(super) fn new(
        [consent, entry, predicted, reported, reached]: [TrackedTree; 5],
        path: &std::path::Path,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            consent,
            entry,
            predicted: PredictedCosts::start(predicted, path)?,
            reported,
            reached,
            lock: Mutex::default(),
        })
    }
}

/// The key of a business's record about one `messageId`: business (8 bytes), then the id.
pub(super) fn cost_key(business: PhoneNumber, message_id: MessageId) -> [u8; 24] {
    let mut key = [0; 24];
    key[..8].copy_from_slice(&business.as_u64().to_be_bytes());
    key[8..].copy_from_slice(message_id.as_bytes());
    key
}

fn reached_prefix(portfolio: &str) -> Result<Vec<u8>, StoreError> {
    check_portfolio_name(portfolio).map_err(|detail| StoreError::InvalidPortfolio { detail })?;
    let mut prefix = portfolio.as_bytes().to_vec();
    prefix.push(0);
    Ok(prefix)
}

/// Every record of a consent tree keyed by conversation, decoded by `decode`; a key that
/// names no conversation is skipped with a warning.
fn list_records<T>(
    tree: &TrackedTree,
    what: &str,
    decode: fn(&str) -> Result<T, String>,
) -> Result<Vec<ConsentEntry<T>>, StoreError> {
    let mut records = Vec::new();
    for entry in tree.iter() {
        let (key, value) = entry?;
        let Some(conversation) = Conversation::from_key(&key) else {
            tracing::warn!(key = ?key, what, "skipping a record whose key names no conversation");
            continue;
        };
        let record = text(&value)
            .and_then(decode)
            .map_err(|detail| corrupt_record(conversation, what, detail));
        records.push((conversation, record));
    }
    Ok(records)
}

fn text(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|_| "the stored value is not UTF-8".to_string())
}

impl SledStore {
    fn consent_trees(&self) -> &ConsentTrees {
        &self.inner.consent
    }

    fn read_consent(&self, conversation: Conversation) -> Result<MarketingConsent, StoreError> {
        Ok(self.stored_consent(conversation)?.unwrap_or_default())
    }

    /// The consent record stored for the conversation, if one is.
    pub(super) fn stored_consent(
        &self,
        conversation: Conversation,
    ) -> Result<Option<MarketingConsent>, StoreError> {
        self.consent_trees()
            .consent
            .get(conversation.to_key())?
            .map(|bytes| {
                text(&bytes)
                    .and_then(MarketingConsent::decode)
                    .map_err(|detail| corrupt_record(conversation, "marketing consent", detail))
            })
            .transpose()
    }

    /// The free entry point record stored for the conversation, if one is.
    pub(super) fn read_entry(
        &self,
        conversation: Conversation,
    ) -> Result<Option<FreeEntryPoint>, StoreError> {
        // Most bots never see a referral: every send asks, and an empty tree answers
        // without a lookup.
        let tree = &self.consent_trees().entry;
        if tree.holds_nothing() {
            return Ok(None);
        }
        match tree.get(conversation.to_key())? {
            None => Ok(None),
            Some(bytes) => text(&bytes)
                .and_then(FreeEntryPoint::decode)
                .map(Some)
                .map_err(|detail| corrupt_record(conversation, "free entry point", detail)),
        }
    }

    /// Applies `change` to the stored consent under the lock, then waits for durability.
    async fn change_consent(
        &self,
        conversation: Conversation,
        change: impl FnOnce(MarketingConsent) -> MarketingConsent,
    ) -> Result<MarketingConsent, StoreError> {
        let now = {
            let _guard = self
                .consent_trees()
                .lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let now = change(self.read_consent(conversation)?);
            self.consent_trees()
                .consent
                .insert(conversation.to_key(), now.encode().as_bytes())?;
            now
        };
        self.durable().await?;
        Ok(now)
    }

    /// Applies `change` to the stored free entry point record under the lock; waits for
    /// durability only when the record changed.
    async fn change_entry(
        &self,
        conversation: Conversation,
        change: impl FnOnce(Option<FreeEntryPoint>) -> Option<FreeEntryPoint>,
    ) -> Result<Option<FreeEntryPoint>, StoreError> {
        let (now, written) = {
            let _guard = self
                .consent_trees()
                .lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let before = self.read_entry(conversation)?;
            let now = change(before);
            let written = match now {
                Some(record) if now != before => {
                    self.consent_trees()
                        .entry
                        .insert(conversation.to_key(), record.encode().as_bytes())?;
                    true
                }
                _ => false,
            };
            (now, written)
        };
        if written {
            self.durable().await?;
        }
        Ok(now)
    }

    /// Loads the portfolio's `reached` entries and its clock mark into a [`Counter`],
    /// dropping (from the tree) the entries unreadable. A portfolio with entries and no
    /// readable mark was counted before the mark was kept: taken as counted at its newest
    /// entry on the kind `unmarked` ([`kind_of_an_unmarked_count`]). Under the lock.
    fn load_counter(&self, prefix: &[u8], unmarked: &'static str) -> Result<Counter, StoreError> {
        let mut counter = Counter::default();
        for entry in self.consent_trees().reached.scan_prefix(prefix) {
            let (key, value) = entry?;
            if key.len() == prefix.len() {
                counter.clock = ClockMark::decode(&value);
                if counter.clock.is_none() {
                    tracing::warn!(key = ?key, "an unreadable clock mark of a messaging count, taken as missing");
                }
                continue;
            }
            let customer = key[prefix.len()..].try_into().map(u64::from_be_bytes);
            let at = <[u8; 8]>::try_from(value.as_ref()).map(i64::from_be_bytes);
            match (customer, at) {
                (Ok(customer), Ok(at)) => counter.set(customer, at),
                _ => {
                    self.consent_trees().reached.remove(key)?;
                }
            }
        }
        if counter.clock.is_none()
            && let Some(newest) = counter.newest()
        {
            counter.clock = Some(ClockMark {
                kind: unmarked,
                written_ms: newest,
            });
        }
        Ok(counter)
    }

    /// Counts `customer` at `at_ms` in the portfolio of `prefix` ([`ConsentStore::reach_customer`])
    /// on its in-memory counter, writing the tree first: drops the customers last reached
    /// at or before `cutoff` (from the oldest, so only those leaving the span are
    /// touched), then counts, writing the portfolio's clock mark (`mark`) before the
    /// customer's time. Answers the reach and whether it wrote the customer's time.
    /// Under the lock.
    #[allow(clippy::too_many_arguments)] // One count's parts, under the caller's lock.
    fn count_reach(
        &self,
        counter: &mut Counter,
        prefix: &[u8],
        customer: u64,
        at_ms: i64,
        cutoff: i64,
        limit: u64,
        mark: ClockMark,
    ) -> Result<(Reach, bool), StoreError> {
        let tree = &self.consent_trees().reached;
        let key = |customer: u64| {
            let mut key = prefix.to_vec();
            key.extend_from_slice(&customer.to_be_bytes());
            key
        };
        while let Some(&(at, old)) = counter.by_time.first()
            && at <= cutoff
        {
            tree.remove(key(old))?;
            counter.by_time.pop_first();
            counter.at.remove(&old);
        }
        let reached = counter.at.len() as u64;
        let previous = counter.at.get(&customer).copied();
        let reach = match previous {
            Some(_) => Reach::AlreadyCounted { reached },
            None if reached >= limit => Reach::LimitReached { reached },
            None => Reach::Counted {
                reached: reached + 1,
            },
        };
        let write =
            !matches!(reach, Reach::LimitReached { .. }) && at_ms > previous.unwrap_or(i64::MIN);
        if write {
            // The mark first: an entry durable without its mark is impossible (sled
            // recovers a prefix of its writes), so a crash never leaves a simulated
            // count taken for a real one.
            tree.insert(prefix, mark.encode())?;
            counter.clock = Some(mark);
            tree.insert(key(customer), &at_ms.to_be_bytes())?;
            counter.set(customer, at_ms);
        }
        Ok((reach, write))
    }
}

impl ConsentStore for SledStore {
    async fn marketing_consent(
        &self,
        conversation: Conversation,
    ) -> Result<MarketingConsent, StoreError> {
        self.with_customer_back_off(conversation, self.read_consent(conversation)?)
    }

    async fn record_opt_out(
        &self,
        conversation: Conversation,
        opted_out: bool,
        at: DateTime<Utc>,
    ) -> Result<MarketingConsent, StoreError> {
        let own = self
            .change_consent(conversation, |c| c.with_opt_out(opted_out, at))
            .await?;
        self.with_customer_back_off(conversation, own)
    }

    async fn extend_customer_back_off(
        &self,
        customer: Customer,
        until: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, StoreError> {
        self.extend_back_off_of(customer, until).await
    }

    async fn customer_back_off(
        &self,
        customer: Customer,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read_customer_back_off(customer)
    }

    async fn customer_back_offs(&self) -> Result<Vec<BackOffEntry>, StoreError> {
        self.list_customer_back_offs()
    }

    async fn marketing_consents(&self) -> Result<Vec<ConsentEntry<MarketingConsent>>, StoreError> {
        list_records(
            &self.consent_trees().consent,
            "marketing consent",
            MarketingConsent::decode,
        )
    }

    async fn free_entry_points(&self) -> Result<Vec<ConsentEntry<FreeEntryPoint>>, StoreError> {
        list_records(
            &self.consent_trees().entry,
            "free entry point",
            FreeEntryPoint::decode,
        )
    }

    async fn free_entry_point(
        &self,
        conversation: Conversation,
    ) -> Result<Option<FreeEntryPoint>, StoreError> {
        self.read_entry(conversation)
    }

    async fn record_referral(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> Result<FreeEntryPoint, StoreError> {
        let now = self
            .change_entry(conversation, |e| {
                Some(e.unwrap_or_default().with_referral(at))
            })
            .await?;
        Ok(now.unwrap_or_default())
    }

    async fn record_business_reply(
        &self,
        conversation: Conversation,
        reply_at: DateTime<Utc>,
        until: DateTime<Utc>,
        within: TimeDelta,
    ) -> Result<Option<FreeEntryPoint>, StoreError> {
        // Every guarded send asks, and most bots never see a referral: with no record in
        // the tree a reply changes nothing, so it is answered without the consent lock,
        // whose cache line would otherwise move between the worker threads on every send.
        // A referral recorded concurrently is ordered after this reply, as it would be had
        // the reply taken the lock first. (Its record counts from just after sled's insert
        // returns: a lock-free read such as `free_entry_points` may list it a moment
        // before, and a reply then still orders before it, as `free_entry_point` does.)
        if self.consent_trees().entry.holds_nothing() {
            return Ok(None);
        }
        self.change_entry(conversation, |e| {
            e.map(|e| e.with_reply(reply_at, until, within))
        })
        .await
    }

    async fn confirm_free_entry_point(
        &self,
        conversation: Conversation,
        until: DateTime<Utc>,
        sent_at: DateTime<Utc>,
    ) -> Result<FreeEntryPoint, StoreError> {
        let now = self
            .change_entry(conversation, |e| {
                let now = e.unwrap_or_default().with_confirmation(until, sent_at);
                // A refused confirmation with nothing stored stores nothing.
                (e.is_some() || now.confirmed).then_some(now)
            })
            .await?
            .unwrap_or_default();
        warn_if_confirmation_refused(conversation, &now, until, sent_at);
        Ok(now)
    }

    async fn record_predicted_cost(&self, cost: PredictedCost) -> Result<(), StoreError> {
        // Accounting, not safety: batched, and not waited for (module docs).
        self.consent_trees().predicted.record(&cost)
    }

    async fn record_reported_pricing(
        &self,
        business: PhoneNumber,
        message_id: MessageId,
        pricing: ReportedPricing,
    ) -> Result<(), StoreError> {
        let value = pricing.encode();
        self.consent_trees()
            .reported
            .insert(cost_key(business, message_id), value.as_bytes())?;
        self.durable().await
    }

    async fn cost_records(
        &self,
        business: Option<PhoneNumber>,
    ) -> Result<Vec<CostRecord>, StoreError> {
        let prefix = business
            .map(|b| b.as_u64().to_be_bytes().to_vec())
            .unwrap_or_default();
        let trees = self.consent_trees();
        let predicted = trees.predicted.all(business)?;
        let mut reported = HashMap::new();
        for entry in trees.reported.scan_prefix(&prefix) {
            let (key, value) = entry?;
            let business = <[u8; 8]>::try_from(&key[..8.min(key.len())])
                .ok()
                .map(u64::from_be_bytes)
                .and_then(PhoneNumber::from_u64);
            let message_id = key.get(8..).and_then(MessageId::from_slice);
            match (business, message_id, ReportedPricing::decode(&value)) {
                (Some(business), Some(message_id), Ok(pricing)) => {
                    reported.insert((business, message_id), pricing);
                }
                _ => tracing::warn!(key = ?key, "skipping an unreadable reported pricing"),
            }
        }
        Ok(pair_cost_records(predicted, reported))
    }

    async fn reach_customer(
        &self,
        portfolio: &str,
        customer: u64,
        at: impl Into<CountTime> + Send,
        limit: u64,
        span: TimeDelta,
    ) -> Result<Reach, StoreError> {
        let prefix = reached_prefix(portfolio)?;
        // One process owns a sled store: the time is used as it was read or given. Two
        // messengers on one store, one on a simulated clock and one on a real one, would
        // prune each other's entries: a count on the other kind is refused.
        let at = at.into();
        let at_ms = at.time().timestamp_millis();
        let span_ms = span.num_milliseconds();
        let (reach, wrote) = {
            let mut counters = self
                .consent_trees()
                .lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let counters = &mut counters.by_prefix;
            if !counters.contains_key(&prefix) {
                let loaded = self.load_counter(&prefix, kind_of_an_unmarked_count(portfolio))?;
                // Forget the counters whose entries all left their span by now (reloaded
                // from the tree if counted again).
                counters.retain(|_, c| {
                    c.newest()
                        .is_some_and(|newest| newest > at_ms.saturating_sub(c.span_ms))
                });
                counters.insert(prefix.clone(), loaded);
            }
            // Loaded above when it was not in memory.
            let counter = counters.entry(prefix.clone()).or_default();
            let mark = ClockMark {
                kind: at.clock_kind(),
                written_ms: Utc::now().timestamp_millis(),
            };
            if counter
                .clock
                .is_some_and(|held| held.refuses(mark.kind, mark.written_ms, span_ms))
                && !counter.at.is_empty()
            {
                return Err(at.mixed_with_the_other_kind(portfolio));
            }
            counter.span_ms = span_ms;
            let counted = self.count_reach(
                counter,
                &prefix,
                customer,
                at_ms,
                at_ms.saturating_sub(span_ms),
                limit,
                mark,
            );
            if counted.is_err() {
                // The tree may hold part of what failed: load it again next time.
                counters.remove(&prefix);
            }
            counted?
        };
        // Dropping customers who left the span needs no wait: a crash that loses it
        // leaves entries the next count drops again. A count that wrote nothing waits
        // only when it lets a send go: "already counted" may rest on another caller's
        // entry not yet flushed, and must not outlive it in a crash (the limit would
        // under-count). "Limit reached" needs no wait: at worst it withheld a send.
        if wrote || matches!(reach, Reach::AlreadyCounted { .. }) {
            self.durable().await?;
        }
        Ok(reach)
    }

    async fn reached(
        &self,
        portfolio: &str,
        at: impl Into<CountTime> + Send,
        span: TimeDelta,
    ) -> Result<u64, StoreError> {
        let prefix = reached_prefix(portfolio)?;
        let cutoff = at.into().time().timestamp_millis() - span.num_milliseconds();
        let mut count = 0;
        for entry in self.consent_trees().reached.scan_prefix(&prefix) {
            let (key, value) = entry?;
            if key.len() > prefix.len()
                && <[u8; 8]>::try_from(value.as_ref())
                    .map(i64::from_be_bytes)
                    .is_ok_and(|t| t > cutoff)
            {
                count += 1;
            }
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str = "real";
    const SIMULATED: &str = "simulated";

    #[test]
    fn a_clock_mark_reads_back_as_written() {
        for kind in [REAL, SIMULATED] {
            let mark = ClockMark {
                kind,
                written_ms: 1_764_547_200_123,
            };
            assert_eq!(ClockMark::decode(&mark.encode()), Some(mark));
        }
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        assert_eq!(CountTime::SystemNow(epoch).clock_kind(), REAL);
        assert_eq!(CountTime::Given(epoch).clock_kind(), SIMULATED);
    }

    #[test]
    fn an_unknown_or_short_clock_mark_is_unreadable() {
        assert_eq!(ClockMark::decode(b""), None);
        assert_eq!(ClockMark::decode(b"real"), None);
        assert_eq!(ClockMark::decode(&[0, 0, 0, 0, 0, 0, 0, 1]), None);
        let mut other = 5_i64.to_be_bytes().to_vec();
        other.extend_from_slice(b"sundial");
        assert_eq!(ClockMark::decode(&other), None);
    }

    #[test]
    fn a_mark_refuses_the_other_kind_for_one_span_after_its_last_write() {
        let span = TimeDelta::hours(24).num_milliseconds();
        let mark = ClockMark {
            kind: REAL,
            written_ms: 1_000_000,
        };
        assert!(!mark.refuses(REAL, 1_000_000, span));
        assert!(mark.refuses(SIMULATED, 1_000_000, span));
        assert!(mark.refuses(SIMULATED, 1_000_000 + span - 1, span));
        assert!(!mark.refuses(SIMULATED, 1_000_000 + span, span));
        let far = ClockMark {
            kind: SIMULATED,
            written_ms: i64::MAX,
        };
        assert!(
            far.refuses(REAL, i64::MAX - 1, span),
            "no overflow at the extremes"
        );
    }
}
