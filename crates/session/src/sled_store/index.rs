//! The in-memory mirror of the `windows` tree: every conversation's last inbound time, its
//! gateway closure if any, and an ordered index by last inbound time for the closing-soon
//! query.
//!
//! It is rebuilt from sled at open and updated under the same shard lock as each sled
//! write, so it always equals what sled holds (see `docs/store.md` for why in memory).
//!
//! Memory is the constraint (a million conversations must fit in a few tens of MB), so a
//! conversation is packed into one `u64` inside its shard: a shard-local business number
//! (14 bits) and the customer's key (50 bits: 15 digits fit, and so do the user and group
//! handles, which are keyed above every phone number; see `customer.rs`). A shard with more than 16,383
//! business numbers keeps the rest in a wide table keyed by the whole conversation.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Timelike, Utc};

use super::memory_map::MemoryMap;
use crate::window::{to_millis, truncate_to_millis};
use crate::{Conversation, Customer, PhoneNumber, WindowRecord};

const SHARDS: usize = 64;
const CUSTOMER_BITS: u32 = 50;
const BUSINESS_IDS: usize = 1 << (64 - CUSTOMER_BITS);
/// Up to this many business numbers per shard, an id is found by scanning.
const SCAN_BUSINESSES: usize = 16;

/// The tables' hash map. A window check is one lookup in it: [`MemoryMap`] hashes with
/// foldhash (std's SipHash cost about as much as the rest of the check), and the keys
/// are fixed-width numbers, which it mixes well.
///
/// Times are kept as [`IndexTime`] (8 bytes: an entry is 16 bytes, four to a cache line),
/// not as `DateTime<Utc>` (12 bytes: a 24-byte entry, a quarter of them across two cache
/// lines, and a third more memory for a check to miss in) nor as milliseconds (turning
/// those into a `DateTime` is a calendar computation that cost about a tenth of a check
/// in a profile).
type LookupMap<K> = MemoryMap<K, IndexTime>;

/// A stored time (whole milliseconds) as the index keeps it: its calendar fields packed
/// into one `u64`, so reading it back is a few shifts and a table lookup, with no
/// day-count arithmetic. Year, day of the year, second of the day and millisecond take
/// 19, 9, 17 and 10 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexTime(u64);

impl IndexTime {
    /// The smallest year chrono represents (`NaiveDate::MIN`'s; a test holds them
    /// equal), which packs as 0.
    const YEAR_BASE: i32 = -262_143;

    /// Packs `at`, truncated to the millisecond (the precision the store keeps).
    pub(crate) fn new(at: DateTime<Utc>) -> Self {
        let at = truncate_to_millis(at).naive_utc();
        // Every field is within its width for every time chrono represents: the year
        // above the smallest is below 2^19, the day of the year at most 366, the second
        // of the day below 86,400 and the millisecond below 1,000 (truncation leaves no
        // leap-second nanoseconds).
        let year = u64::from(at.year().abs_diff(Self::YEAR_BASE));
        let ordinal = u64::from(at.ordinal());
        let second = u64::from(at.num_seconds_from_midnight());
        let milli = u64::from(at.nanosecond() / 1_000_000);
        Self((year << 36) | (ordinal << 27) | (second << 10) | milli)
    }

    /// The time packed. Every value made by [`IndexTime::new`] unpacks to the time it was
    /// made from; any other (none is made) reads as the earliest time, a closed window.
    pub(crate) fn get(self) -> DateTime<Utc> {
        let field = |shift: u32, bits: u32| ((self.0 >> shift) & ((1 << bits) - 1)) as u32;
        let year = Self::YEAR_BASE.saturating_add_unsigned(field(36, 19));
        NaiveDate::from_yo_opt(year, field(27, 9))
            .zip(NaiveTime::from_num_seconds_from_midnight_opt(
                field(10, 17),
                field(0, 10) * 1_000_000,
            ))
            .map_or(DateTime::<Utc>::MIN_UTC, |(date, time)| {
                date.and_time(time).and_utc()
            })
    }
}

/// One table of records under some key type.
struct Table<K> {
    last_inbound: LookupMap<K>,
    gateway_closed_at: LookupMap<K>,
    /// By last inbound time, in milliseconds, for the closing-soon query.
    by_inbound: BTreeSet<(i64, K)>,
}

impl<K> Default for Table<K> {
    fn default() -> Self {
        Self {
            last_inbound: LookupMap::default(),
            gateway_closed_at: LookupMap::default(),
            by_inbound: BTreeSet::new(),
        }
    }
}

impl<K: Copy + Eq + Hash + Ord> Table<K> {
    fn get(&self, key: K) -> Option<WindowRecord> {
        let last = self.last_inbound.get(&key)?.get();
        Some(WindowRecord {
            last_inbound: last,
            gateway_closed_at: self.gateway_closed_at.get(&key).map(|c| c.get()),
        })
    }

    fn put(&mut self, key: K, record: &WindowRecord) {
        // Stored records are truncated to the millisecond, so the index holds exactly what
        // sled does.
        let last = IndexTime::new(record.last_inbound);
        match self.last_inbound.insert(key, last) {
            Some(old) if old == last => {}
            Some(old) => {
                self.by_inbound.remove(&(to_millis(old.get()), key));
                self.by_inbound
                    .insert((to_millis(record.last_inbound), key));
            }
            None => {
                self.by_inbound
                    .insert((to_millis(record.last_inbound), key));
            }
        }
        match record.gateway_closed_at {
            Some(closed) => {
                self.gateway_closed_at.insert(key, IndexTime::new(closed));
            }
            None => {
                self.gateway_closed_at.remove(&key);
            }
        }
    }

    fn remove(&mut self, key: K) -> bool {
        self.gateway_closed_at.remove(&key);
        match self.last_inbound.remove(&key) {
            Some(old) => {
                self.by_inbound.remove(&(to_millis(old.get()), key));
                true
            }
            None => false,
        }
    }

    fn between(
        &self,
        low: (i64, K),
        high: (i64, K),
    ) -> impl Iterator<Item = (K, WindowRecord)> + '_ {
        self.by_inbound
            .range(low..=high)
            .filter_map(|(_, key)| Some((*key, self.get(*key)?)))
    }

    fn len(&self) -> usize {
        self.last_inbound.len()
    }
}

/// Where a conversation lives in its shard.
#[derive(Clone, Copy)]
enum Slot {
    Packed(u64),
    Wide(Conversation),
}

/// One shard of the index.
#[derive(Default)]
pub struct Shard {
    /// Shard-local business ids, both ways.
    business_ids: HashMap<PhoneNumber, u16>,
    businesses: Vec<PhoneNumber>,
    packed: Table<u64>,
    wide: Table<Conversation>,
    corrupt: HashMap<Conversation, String>,
}

/// What the index knows of one conversation.
pub type Lookup = Result<Option<WindowRecord>, String>;

impl Shard {
    fn pack(id: u16, customer: Customer) -> u64 {
        (u64::from(id) << CUSTOMER_BITS) | customer.key()
    }

    fn unpack(&self, packed: u64) -> Option<Conversation> {
        let business = *self.businesses.get((packed >> CUSTOMER_BITS) as usize)?;
        let customer = Customer::from_key(packed & ((1 << CUSTOMER_BITS) - 1))?;
        Some(Conversation::with_customer(business, customer))
    }

    /// The shard-local id of a business number. Most bots have a handful of numbers, so a
    /// short list is scanned (no hashing on the check path); a long one is looked up.
    fn business_id(&self, business: PhoneNumber) -> Option<u16> {
        if self.businesses.len() <= SCAN_BUSINESSES {
            self.businesses
                .iter()
                .position(|b| *b == business)
                .map(|i| i as u16)
        } else {
            self.business_ids.get(&business).copied()
        }
    }

    /// The slot of a conversation already known to the shard's business table.
    fn slot(&self, conversation: &Conversation) -> Slot {
        match self.business_id(conversation.business) {
            Some(id) => Slot::Packed(Self::pack(id, conversation.customer)),
            None => Slot::Wide(*conversation),
        }
    }

    /// The slot, registering the business number if there is room.
    fn slot_for_write(&mut self, conversation: &Conversation) -> Slot {
        if self.business_id(conversation.business).is_none() && self.businesses.len() < BUSINESS_IDS
        {
            let id = self.businesses.len() as u16;
            self.businesses.push(conversation.business);
            self.business_ids.insert(conversation.business, id);
        }
        self.slot(conversation)
    }

    /// The record, `None` when absent, or the corruption detail.
    pub fn get(&self, conversation: &Conversation) -> Lookup {
        if let Some(detail) = self.corrupt.get(conversation) {
            return Err(detail.clone());
        }
        Ok(match self.slot(conversation) {
            Slot::Packed(key) => self.packed.get(key),
            Slot::Wide(key) => self.wide.get(key),
        })
    }

    /// Stores a record, replacing any previous one (or corruption mark).
    pub fn put(&mut self, conversation: Conversation, record: &WindowRecord) {
        self.corrupt.remove(&conversation);
        match self.slot_for_write(&conversation) {
            Slot::Packed(key) => self.packed.put(key, record),
            Slot::Wide(key) => self.wide.put(key, record),
        }
    }

    /// Marks a conversation's stored value as unreadable.
    pub fn put_corrupt(&mut self, conversation: Conversation, detail: String) {
        self.remove(&conversation);
        self.corrupt.insert(conversation, detail);
    }

    /// Removes a conversation; returns whether it was there.
    pub fn remove(&mut self, conversation: &Conversation) -> bool {
        let corrupt = self.corrupt.remove(conversation).is_some();
        let found = match self.slot(conversation) {
            Slot::Packed(key) => self.packed.remove(key),
            Slot::Wide(key) => self.wide.remove(key),
        };
        found || corrupt
    }

    fn len(&self) -> usize {
        self.packed.len() + self.wide.len() + self.corrupt.len()
    }

    fn between(&self, after: i64, up_to: i64, found: &mut Vec<(Conversation, WindowRecord)>) {
        let low = after.saturating_add(1);
        found.extend(
            self.packed
                .between((low, 0), (up_to, u64::MAX))
                .filter_map(|(key, record)| Some((self.unpack(key)?, record))),
        );
        found.extend(
            self.wide
                .between((low, Conversation::MIN), (up_to, Conversation::MAX)),
        );
    }

    fn all(&self, into: &mut Vec<(Conversation, Lookup)>) {
        into.extend(
            self.packed
                .last_inbound
                .keys()
                .filter_map(|key| Some((self.unpack(*key)?, Ok(self.packed.get(*key))))),
        );
        into.extend(
            self.wide
                .last_inbound
                .keys()
                .map(|key| (*key, Ok(self.wide.get(*key)))),
        );
        into.extend(self.corrupt.iter().map(|(c, d)| (*c, Err(d.clone()))));
    }
}

/// Write access to the shards of two conversations ([`Index::write_pair`]).
pub struct ShardPair<'a> {
    first_index: usize,
    first: RwLockWriteGuard<'a, Shard>,
    second: Option<RwLockWriteGuard<'a, Shard>>,
}

impl ShardPair<'_> {
    /// The shard of `conversation`, one of the pair's.
    pub fn shard(&mut self, conversation: &Conversation) -> &mut Shard {
        match &mut self.second {
            Some(second) if Index::shard_of(conversation) != self.first_index => second,
            _ => &mut self.first,
        }
    }
}

/// The sharded index.
pub struct Index {
    shards: Box<[RwLock<Shard>]>,
}

impl Default for Index {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
        }
    }
}

impl Index {
    fn shard_of(conversation: &Conversation) -> usize {
        let mixed = (conversation.business.as_u64() ^ conversation.customer.key().rotate_left(29))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (mixed >> 58) as usize % SHARDS
    }

    /// Read access to the shard holding `conversation`.
    pub fn read(&self, conversation: &Conversation) -> RwLockReadGuard<'_, Shard> {
        self.shards[Self::shard_of(conversation)]
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Write access to the shard holding `conversation`; the caller writes sled while
    /// holding it, which makes read-modify-write atomic per conversation.
    pub fn write(&self, conversation: &Conversation) -> RwLockWriteGuard<'_, Shard> {
        self.shards[Self::shard_of(conversation)]
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Write access to the shards of two conversations at once (one lock when they share
    /// a shard), taken in shard order so two callers locking the same pair never wait on
    /// each other.
    pub fn write_pair(&self, a: &Conversation, b: &Conversation) -> ShardPair<'_> {
        let (i, j) = (Self::shard_of(a), Self::shard_of(b));
        let lock = |n: usize| {
            self.shards[n]
                .write()
                .unwrap_or_else(PoisonError::into_inner)
        };
        let (first, second) = match i.cmp(&j) {
            std::cmp::Ordering::Equal => (lock(i), None),
            std::cmp::Ordering::Less => {
                let first = lock(i);
                (first, Some(lock(j)))
            }
            std::cmp::Ordering::Greater => {
                let second = lock(j);
                (lock(i), Some(second))
            }
        };
        ShardPair {
            first_index: i,
            first,
            second,
        }
    }

    fn shards(&self) -> impl Iterator<Item = RwLockReadGuard<'_, Shard>> {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Conversations with `after < last_inbound <= up_to`, oldest first.
    pub fn inbound_between(
        &self,
        after: DateTime<Utc>,
        up_to: DateTime<Utc>,
    ) -> Vec<(Conversation, WindowRecord)> {
        let (after, up_to) = (to_millis(after), to_millis(up_to));
        if after >= up_to {
            return Vec::new();
        }
        let mut found = Vec::new();
        for shard in self.shards() {
            shard.between(after, up_to, &mut found);
        }
        found.sort_by_key(|(c, r)| (r.last_inbound, *c));
        found
    }

    /// How many conversations are known (corrupt ones included).
    pub fn len(&self) -> usize {
        self.shards().map(|s| s.len()).sum()
    }

    /// Every conversation with its record or corruption detail, in key order.
    pub fn all(&self) -> Vec<(Conversation, Lookup)> {
        let mut all = Vec::with_capacity(self.len());
        for shard in self.shards() {
            shard.all(&mut all);
        }
        all.sort_by_key(|(c, _)| *c);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::from_millis;

    fn chat(business: u64, customer: u64) -> Conversation {
        Conversation::new(
            PhoneNumber::from_u64(business).unwrap(),
            PhoneNumber::from_u64(customer).unwrap(),
        )
    }

    fn at(ms: i64) -> DateTime<Utc> {
        from_millis(1_800_000_000_000 + ms)
    }

    #[test]
    fn packed_and_wide_tables_answer_alike() {
        let mut shard = Shard::default();
        // Fill the shard's business ids so later businesses go to the wide table.
        for id in 0..BUSINESS_IDS as u64 {
            shard.slot_for_write(&chat(10_000_000 + id, 999_999_999_999_999));
        }
        let packed = chat(10_000_000, 999_999_999_999_999); // largest customer packs
        let wide = chat(99_000_000, 12_345_678);
        assert!(matches!(shard.slot(&packed), Slot::Packed(_)));
        assert!(matches!(shard.slot_for_write(&wide), Slot::Wide(_)));
        for (i, conversation) in [packed, wide].into_iter().enumerate() {
            let record = WindowRecord::inbound(at(i as i64)).with_gateway_closure(at(100));
            shard.put(conversation, &record);
            assert_eq!(shard.get(&conversation), Ok(Some(record)));
        }
        let mut found = Vec::new();
        shard.between(-1_000, 1_800_000_000_000 + 5, &mut found);
        assert_eq!(
            found.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            vec![packed, wide]
        );
        let mut all = Vec::new();
        shard.all(&mut all);
        assert_eq!(all.len(), 2);
        assert!(shard.remove(&wide) && shard.remove(&packed));
        assert_eq!(shard.get(&packed), Ok(None));
        assert_eq!(shard.len(), 0);
    }

    #[test]
    fn moving_a_time_moves_the_index_entry() {
        let index = Index::default();
        let c = chat(254_110_090_747, 254_712_345_678);
        index.write(&c).put(c, &WindowRecord::inbound(at(10)));
        index.write(&c).put(c, &WindowRecord::inbound(at(20)));
        assert!(index.inbound_between(at(0), at(15)).is_empty());
        assert_eq!(index.inbound_between(at(15), at(20)).len(), 1);
        index.write(&c).put_corrupt(c, "bad".into());
        assert!(index.inbound_between(at(0), at(30)).is_empty());
        assert_eq!(index.read(&c).get(&c), Err("bad".into()));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn a_pair_of_shards_answers_for_each_conversation() {
        let index = Index::default();
        let a = chat(254_110_090_747, 254_712_345_678);
        // One conversation in the same shard as `a`, one in another.
        let (mut same, mut other) = (None, None);
        for n in 0..10_000 {
            let c = chat(254_110_090_747, 254_700_000_000 + n);
            if c == a {
                continue;
            }
            if Index::shard_of(&c) == Index::shard_of(&a) {
                same.get_or_insert(c);
            } else {
                other.get_or_insert(c);
            }
        }
        for b in [same.unwrap(), other.unwrap()] {
            {
                let mut pair = index.write_pair(&a, &b);
                pair.shard(&a).put(a, &WindowRecord::inbound(at(1)));
                pair.shard(&b).put(b, &WindowRecord::inbound(at(2)));
            }
            // Taken the other way round, the same pair does not deadlock.
            let mut pair = index.write_pair(&b, &a);
            assert_eq!(
                pair.shard(&a).get(&a),
                Ok(Some(WindowRecord::inbound(at(1))))
            );
            assert_eq!(
                pair.shard(&b).get(&b),
                Ok(Some(WindowRecord::inbound(at(2))))
            );
        }
    }

    #[test]
    fn an_index_entry_takes_sixteen_bytes_four_to_a_cache_line() {
        // A check is one lookup in a table too large for the caches: the smaller the
        // entry, the less memory a million of them spread over, and none crosses a cache
        // line. (A `DateTime<Utc>` value made the entry 24 bytes.)
        assert_eq!(std::mem::size_of::<(u64, IndexTime)>(), 16);
    }

    #[test]
    fn index_times_unpack_to_the_millisecond_they_were_packed_from() {
        assert_eq!(IndexTime::YEAR_BASE, NaiveDate::MIN.year());
        let edges = [
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
            DateTime::<Utc>::UNIX_EPOCH,
            at(-1),
            at(951_782_399_999),   // 2000-02-28T23:59:59.999, before a leap day
            at(951_868_800_000),   // 2000-03-01, after it
            at(4_107_542_399_999), // 2100-02-28T23:59:59.999 (no leap day in 2100)
        ];
        for time in edges {
            let truncated = truncate_to_millis(time);
            assert_eq!(IndexTime::new(time).get(), truncated, "{time}");
        }
        // A leap second (chrono's nanoseconds past 1e9) keeps the store's precision:
        // truncated first, as sled stores it.
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_milli_opt(23, 59, 59, 1_500))
            .map(|t| t.and_utc())
            .unwrap();
        assert_eq!(IndexTime::new(leap).get(), truncate_to_millis(leap));
    }

    proptest::proptest! {
        #[test]
        fn every_millisecond_in_chronos_range_survives_the_packing(
            ms in DateTime::<Utc>::MIN_UTC.timestamp_millis()..=DateTime::<Utc>::MAX_UTC.timestamp_millis()
        ) {
            let time = from_millis(ms);
            proptest::prop_assert_eq!(IndexTime::new(time).get(), time);
            proptest::prop_assert_eq!(to_millis(IndexTime::new(time).get()), ms);
        }
    }
}
