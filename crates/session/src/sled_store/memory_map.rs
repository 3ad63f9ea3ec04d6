//! The hash maps the sled store keeps in memory on a send's or a webhook's path (the
//! window index, the outcome journal's index, the claims, the WhatsApp-id index, the
//! inbound ids seen), and the 64-bit slots two of them are keyed by.
//!
//! They hash with foldhash, seeded at random once per process, in place of std's
//! SipHash: SipHash cost about as much as the rest of a window check, and about 2,000
//! instructions of a send naming its `messageId` (of about 159,000, counted with
//! callgrind). foldhash is seeded at random and is, in its authors' words, minimally
//! DoS-resistant: keys chosen blindly do not collide more than chance, but unlike
//! SipHash it does not hold against someone who studies a long-running process's timing
//! to recover its seed. The keys here are hard to choose from outside: packed phone
//! numbers, ids WhatsApp and the gateway make (read from signed webhooks), UUIDs derived
//! with SHA-1, and a caller's own `messageId`s; and a slot two keys share costs a lookup,
//! never an answer (each index says how it tells them apart). No slot or map order is
//! ever written to disk: each is built again when the store opens, so the seed may differ
//! from one process to the next.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::LazyLock;

/// A map the store keeps in memory, hashed with foldhash (see the module docs).
pub(super) type MemoryMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The seed of every slot in this process.
static SLOT_SEED: LazyLock<foldhash::quality::RandomState> = LazyLock::new(Default::default);

/// The 64-bit slot of `key` in an in-memory index that keeps slots instead of keys (so an
/// entry's size does not depend on its key's): foldhash's higher-quality variant, since
/// two keys sharing a slot cost a lookup (see each index for how it tells them apart).
pub(super) fn slot_of(key: &impl Hash) -> u64 {
    SLOT_SEED.hash_one(key)
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
}
