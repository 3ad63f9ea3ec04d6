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
use std::hash::Hasher;

use siphasher::sip::SipHasher13;

/// A map the store keeps in memory, hashed with foldhash (see the module docs).
pub(super) type MemoryMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The 64-bit slot of a key given as `parts`, in an in-memory index that keeps slots
/// instead of keys (so an entry's size does not depend on its key's): SipHash-1-3 under
/// the keys 0 and 0, over the parts' total length (8 bytes, little-endian) and then their
/// bytes.
///
/// For one 32-byte part (an outcome key) this is, bit for bit, the slot every earlier
/// release computed with std's `DefaultHasher::new()` on a 64-bit little-endian target
/// (x86-64, aarch64). It is written out here, over a crate whose algorithm is fixed,
/// because std does not promise that its hasher stays the same from one toolchain to the
/// next, and the outcome journal needs a key's slot to be the same in every process: it
/// journals a key only while no other journaled key holds its slot, and builds its index
/// again from the batches at every open, so a slot that moved between two processes could
/// put two journaled keys on one slot, and one of them would read as absent (see
/// `outcome_journal`). Not foldhash, whose seed is random per process, for the same
/// reason.
///
/// How the bytes are cut into parts does not count, only the bytes: a key made of parts
/// of which all but the last have a fixed length (the WhatsApp-id index's conversation
/// key, then the id) gives different bytes for different keys. Two keys sharing a slot
/// are told apart as each index says.
pub(super) fn slot_of(parts: &[&[u8]]) -> u64 {
    let mut hasher = SipHasher13::new_with_keys(0, 0);
    let len: usize = parts.iter().map(|part| part.len()).sum();
    hasher.write(&u64::try_from(len).unwrap_or(u64::MAX).to_le_bytes());
    for part in parts {
        hasher.write(part);
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_has_one_slot_and_different_keys_spread() {
        let key = [7_u8; 32];
        assert_eq!(slot_of(&[&key]), slot_of(&[&[7_u8; 32]]));
        let slots: std::collections::HashSet<u64> = (0_u32..10_000)
            .map(|i| slot_of(&[&i.to_be_bytes()]))
            .collect();
        assert_eq!(slots.len(), 10_000, "10,000 keys should take 10,000 slots");
    }

    /// The outcome journal needs a key's slot to be the same in the process that journaled
    /// it and in every later one: pinned to the values every earlier release computed
    /// (std's `DefaultHasher::new()` of the key as a `[u8; 32]`, on x86-64).
    #[test]
    fn a_slot_is_the_same_in_every_process() {
        let counting: [u8; 32] = std::array::from_fn(|i| i as u8);
        for (key, slot) in [
            ([7_u8; 32], 0x794e_9f09_9c77_b3b2),
            (counting, 0x6a9d_14ef_1a0f_4b98),
            ([0xff_u8; 32], 0xe494_1fee_96d4_5754),
            ([0_u8; 32], 0xdb19_22d6_3a35_be54),
        ] {
            assert_eq!(slot_of(&[&key]), slot, "the slot of {key:?}");
        }
    }

    /// How a key is cut into parts does not change its slot, and a part's bytes and
    /// length both count.
    #[test]
    fn the_slot_is_of_the_bytes_and_their_length() {
        let key = [9_u8; 32];
        assert_eq!(slot_of(&[&key[..16], &key[16..]]), slot_of(&[&key]));
        assert_ne!(slot_of(&[&key[..31]]), slot_of(&[&key]));
        assert_ne!(slot_of(&[&[0_u8; 31]]), slot_of(&[&[0_u8; 32]]));
    }
}
