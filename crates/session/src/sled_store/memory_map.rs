//! The hash maps the sled store keeps in memory on a send's or a webhook's path (the
//! window index, the outcome journal's index, the claims, the WhatsApp-id index, the
//! inbound ids seen), and the 64-bit slots two of them are keyed by.
//!
//! The maps hash with foldhash, seeded at random for each map, in place of std's SipHash:
//! SipHash cost about as much as the rest of a window check. foldhash is, in its authors'
//! words, minimally DoS-resistant: keys chosen blindly do not collide more than chance,
//! but unlike SipHash it does not hold against someone who studies a long-running
//! process's timing to recover its seed. The keys here are hard to choose from outside:
//! packed phone numbers, ids WhatsApp and the gateway make (read from signed webhooks),
//! UUIDs derived with SHA-1, and a caller's own `messageId`s. No map order is ever written
//! to disk or relied on: each map is built again when the store opens.
//!
//! The slots are not foldhash's: the outcome journal's must be the same in every process
//! (see [`slot_of`]), and the WhatsApp-id index, which is rebuilt by a scan at each open,
//! shares the function.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

/// A map the store keeps in memory, hashed with foldhash (see the module docs).
pub(super) type MemoryMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The 64-bit slot of `key` in an in-memory index that keeps slots instead of keys (so an
/// entry's size does not depend on its key's): std's SipHash under its fixed keys
/// (`DefaultHasher::new`), the same in every process of a build, and the function every
/// earlier release used.
///
/// Not foldhash, whose seed is random per process: the outcome journal journals a key only
/// while no other journaled key holds its slot, and builds its index again from the
/// batches at every open, so a slot that moved between two processes could put two
/// journaled keys on one slot, and one of them would read as absent (see
/// `outcome_journal`). Two keys sharing a slot are told apart as each index says.
pub(super) fn slot_of(key: &impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_has_one_slot_and_different_keys_spread() {
        let key = [7_u8; 32];
        assert_eq!(slot_of(&key), slot_of(&[7_u8; 32]));
        let slots: std::collections::HashSet<u64> =
            (0_u32..10_000).map(|i| slot_of(&i.to_be_bytes())).collect();
        assert_eq!(slots.len(), 10_000, "10,000 keys should take 10,000 slots");
    }

    /// The outcome journal needs a key's slot to be the same in the process that journaled
    /// it and in every later one: pinned to the value every earlier release computed.
    #[test]
    fn a_slot_is_the_same_in_every_process() {
        assert_eq!(slot_of(&[7_u8; 32]), 0x794e_9f09_9c77_b3b2);
    }
}
