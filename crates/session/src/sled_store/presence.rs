//! Which keys a tree may hold, kept in memory, so that a lookup of a key the tree does not
//! hold is answered without sled.
//!
//! A send under a caller's `messageId` first asks for an earlier outcome under that id,
//! and almost always finds none: in sled, that miss walks the tree (about as much work as
//! the outcome's write). The outcomes tree therefore keeps a set of 64-bit hashes of its
//! keys: a key whose hash is not in the set is not in the tree, and a hash in the set
//! (the key, or another sharing its hash) sends the lookup to sled as before. The set can
//! only say "absent" wrongly if a write were missed, so every write notes its key twice.
//! After it is in sled: so a lookup that starts once the write's call has returned finds
//! it, whatever the set went through meanwhile (a building scan that began before the
//! write, a drop and a rebuild). Before it goes to sled: so a lookup racing the write
//! mostly finds it too; a drop and rebuild between the two notes can lose the first,
//! and the racing lookup then answers as a sled read made just before the write would.
//! (The duplicate check of a send runs under the claim on its `messageId`, so no write
//! of that outcome races it.)
//!
//! The set is built by one scan of the tree at the first lookup (as the WhatsApp id index
//! is), grows with every key written, and keeps the keys removed since (a hash too many
//! costs a sled lookup, never a wrong answer). When it holds more than twice the tree's
//! entries (outcomes expire and are swept), it is dropped and the next lookup scans again.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

use super::integrity::entry_hash;
use super::lock;

/// Hashes kept beyond twice the tree's entries before the set is rebuilt, so a small tree
/// is not scanned again and again.
const SLACK: usize = 4096;

/// The set of key hashes: already hashed, so the set's hasher passes them through.
type Hashes = HashSet<u64, BuildHasherDefault<PassThrough>>;

/// A hasher for keys that are hashes already.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64`s are hashed; any other input is folded in, never lost.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
}

/// The hash a key is kept under.
fn slot(key: &[u8]) -> u64 {
    entry_hash(key, b"presence")
}

/// What the set knows.
#[derive(Default)]
enum State {
    /// No lookup since the store opened, or dropped since: a write need note nothing (the
    /// scan that builds the set will see it).
    #[default]
    Unbuilt,
    /// A lookup is scanning the tree: writes are logged and added after the scan.
    Building(Vec<u64>),
    /// Every key the tree may hold has its hash here.
    Built(Hashes),
}

/// The keys a tree may hold (see the module documentation).
#[derive(Default)]
pub struct KeyPresence {
    state: Mutex<State>,
    /// Held by the lookup that builds the set, so only one scans.
    building: Mutex<()>,
}

impl KeyPresence {
    /// Notes that the tree may hold `key` from now on: called before each write of it and
    /// again after.
    pub fn note(&self, key: &[u8]) {
        let hash = slot(key);
        match &mut *lock(&self.state) {
            State::Unbuilt => {}
            State::Building(log) => log.push(hash),
            State::Built(set) => {
                set.insert(hash);
            }
        }
    }

    /// Drops the set when it holds more than twice the tree's `entries` (plus some
    /// slack): the next lookup scans again.
    pub fn shrink_to(&self, entries: u64) {
        let mut state = lock(&self.state);
        if let State::Built(set) = &*state {
            let limit = usize::try_from(entries)
                .unwrap_or(usize::MAX)
                .saturating_mul(2)
                .saturating_add(SLACK);
            if set.len() > limit {
                *state = State::Unbuilt;
            }
        }
    }

    /// Whether the tree may hold `key`: `false` only when it does not. The first call
    /// (and the first after the set was dropped) builds the set from `keys`, every key the
    /// tree holds; if that scan fails, the answer is `true` and the next call scans again.
    pub fn may_hold<E>(
        &self,
        key: &[u8],
        keys: impl FnOnce(&mut dyn FnMut(&[u8])) -> Result<(), E>,
    ) -> bool {
        let hash = slot(key);
        if let State::Built(set) = &*lock(&self.state) {
            return set.contains(&hash);
        }
        let _building = lock(&self.building);
        {
            let mut state = lock(&self.state);
            if let State::Built(set) = &*state {
                return set.contains(&hash);
            }
            *state = State::Building(Vec::new());
        }
        let mut set = Hashes::default();
        let scanned = keys(&mut |key| {
            set.insert(slot(key));
        });
        let mut state = lock(&self.state);
        match (scanned, std::mem::take(&mut *state)) {
            (Ok(()), State::Building(log)) => {
                set.extend(log);
                let found = set.contains(&hash);
                *state = State::Built(set);
                found
            }
            // The scan failed, or the set was dropped meanwhile: sled answers.
            (_, _) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scan over a tree holding `tree`'s keys.
    type Scan<'a> = Box<dyn FnOnce(&mut dyn FnMut(&[u8])) -> Result<(), ()> + 'a>;

    fn keys_of<'a>(tree: &'a [&'a [u8]]) -> Scan<'a> {
        Box::new(move |add| {
            for key in tree {
                add(key);
            }
            Ok(())
        })
    }

    #[test]
    fn a_key_is_absent_only_when_neither_the_scan_nor_a_write_had_it() {
        let presence = KeyPresence::default();
        // Unbuilt: a write notes nothing; the scan finds it.
        presence.note(b"written before");
        assert!(presence.may_hold(b"a", keys_of(&[b"a", b"written before"])));
        assert!(presence.may_hold(b"written before", keys_of(&[])));
        assert!(!presence.may_hold(b"b", keys_of(&[])));
        presence.note(b"b");
        assert!(presence.may_hold(b"b", keys_of(&[])));
    }

    #[test]
    fn a_write_during_the_scan_is_kept() {
        let presence = KeyPresence::default();
        let found = presence.may_hold(b"late", |add: &mut dyn FnMut(&[u8])| {
            add(b"early");
            // A write lands while the scan runs, behind its cursor.
            presence.note(b"late");
            Ok::<(), ()>(())
        });
        assert!(found);
        assert!(presence.may_hold(b"late", keys_of(&[])));
        assert!(presence.may_hold(b"early", keys_of(&[])));
    }

    #[test]
    fn a_failed_scan_answers_maybe_and_scans_again() {
        let presence = KeyPresence::default();
        assert!(presence.may_hold(b"x", |_: &mut dyn FnMut(&[u8])| Err(())));
        assert!(!presence.may_hold(b"x", keys_of(&[])));
    }

    #[test]
    fn an_oversized_set_is_dropped_and_scanned_again() {
        let presence = KeyPresence::default();
        assert!(!presence.may_hold(b"x", keys_of(&[])));
        for n in 0..(SLACK as u64 + 10) {
            presence.note(&n.to_be_bytes());
        }
        presence.shrink_to(1_000_000);
        assert!(presence.may_hold(&5_u64.to_be_bytes(), keys_of(&[])));
        presence.shrink_to(0);
        // Dropped: the next lookup scans a tree that no longer holds them.
        assert!(!presence.may_hold(&5_u64.to_be_bytes(), keys_of(&[])));
    }
}
