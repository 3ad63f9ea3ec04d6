//! The claims a sled store holds, in memory: only this process can open the database,
//! so no other process can hold one.
//!
//! Every send naming its `messageId` takes a claim and releases it, from whichever
//! worker thread it runs on. One map under one lock made both workers meet on its cache
//! lines for every send, and each claim swept the whole map of expired claims (perf put
//! the two at about 2 % of such a send's time). The map is now in shards by id, and a
//! shard is swept only when it has doubled since its last sweep, so a shard holds at most
//! about twice its live claims (and [`MIN_SWEEP`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::lock;
use super::memory_map::MemoryMap;
use crate::MessageId;

/// Shards: enough that two workers rarely take the same one.
const SHARDS: usize = 16;

/// A shard is not swept before it holds this many claims.
const MIN_SWEEP: usize = 64;

/// A claim: until when it holds (on the monotonic clock, so the clock a call passes,
/// manual or skewed, neither shortens nor stretches it; `None`: a lease too long to
/// represent, which never ends), and the token of the caller that holds it.
struct Claim {
    until: Option<Instant>,
    holder: Uuid,
}

impl Claim {
    fn live_at(&self, at: Instant) -> bool {
        self.until.is_none_or(|until| until > at)
    }
}

/// One shard's claims.
struct Shard {
    held: MemoryMap<MessageId, Claim>,
    /// The size at which the next sweep of expired claims runs.
    sweep_at: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Self {
            held: MemoryMap::default(),
            sweep_at: MIN_SWEEP,
        }
    }
}

/// The claims, in shards by id.
pub(super) struct Claims {
    shards: [Mutex<Shard>; SHARDS],
}

impl Default for Claims {
    fn default() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::default()),
        }
    }
}

impl Claims {
    /// `id`'s shard. Ids are UUIDs (random, or derived through SHA-1), so their last
    /// byte spreads them.
    fn shard(&self, id: MessageId) -> &Mutex<Shard> {
        &self.shards[usize::from(id.as_bytes()[15]) % SHARDS]
    }

    /// Claims `id` for `holder` for `lease` from now: `false` when another live claim
    /// holds it. A zero lease holds nothing (it ends as it starts), but is granted.
    pub(super) fn take(&self, id: MessageId, holder: Uuid, lease: Duration) -> bool {
        let mut shard = lock(self.shard(id));
        let taken_at = Instant::now();
        if shard
            .held
            .get(&id)
            .is_some_and(|claim| claim.live_at(taken_at))
        {
            return false;
        }
        if lease.is_zero() {
            shard.held.remove(&id);
            return true;
        }
        let claim = Claim {
            until: taken_at.checked_add(lease),
            holder,
        };
        shard.held.insert(id, claim);
        if shard.held.len() >= shard.sweep_at {
            shard.held.retain(|_, claim| claim.live_at(taken_at));
            shard.sweep_at = (2 * shard.held.len()).max(MIN_SWEEP);
        }
        true
    }

    /// Releases `holder`'s claim on `id`, if it holds it (a release after the lease ran
    /// out cannot free a claim another caller took since).
    pub(super) fn release(&self, id: MessageId, holder: Uuid) {
        let mut shard = lock(self.shard(id));
        if shard
            .held
            .get(&id)
            .is_some_and(|claim| claim.holder == holder)
        {
            shard.held.remove(&id);
        }
    }

    /// Claims held in memory, live or expired but not yet swept.
    #[cfg(test)]
    fn stored(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).held.len()).sum()
    }
}

#[cfg(test)]
#[path = "attack13_claims.rs"]
mod attack13_claims;

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(30);

    #[test]
    fn a_live_claim_is_refused_to_another_and_released_only_by_its_holder() {
        let claims = Claims::default();
        let (id, holder, other) = (MessageId::new(), Uuid::new_v4(), Uuid::new_v4());
        assert!(claims.take(id, holder, LEASE));
        assert!(!claims.take(id, other, LEASE));
        claims.release(id, other);
        assert!(!claims.take(id, other, LEASE), "released by a stranger");
        claims.release(id, holder);
        assert!(claims.take(id, other, LEASE));
    }

    #[test]
    fn an_expired_claim_is_taken_over_and_a_zero_lease_holds_nothing() {
        let claims = Claims::default();
        let (id, first, second) = (MessageId::new(), Uuid::new_v4(), Uuid::new_v4());
        assert!(claims.take(id, first, Duration::from_millis(1)));
        std::thread::sleep(Duration::from_millis(5));
        assert!(claims.take(id, second, LEASE));
        // The first holder's late release does not free the second's claim.
        claims.release(id, first);
        assert!(!claims.take(id, first, LEASE));
        let free = MessageId::new();
        assert!(claims.take(free, first, Duration::ZERO));
        assert!(claims.take(free, second, LEASE));
    }

    #[test]
    fn expired_claims_never_released_are_swept() {
        let claims = Claims::default();
        for _ in 0..50 * SHARDS {
            assert!(claims.take(MessageId::new(), Uuid::new_v4(), Duration::from_nanos(1)));
        }
        std::thread::sleep(Duration::from_millis(2));
        for _ in 0..20_000 {
            assert!(claims.take(MessageId::new(), Uuid::new_v4(), Duration::from_nanos(1)));
        }
        // Each shard sweeps once it reaches MIN_SWEEP (its claims are all expired by then).
        assert!(
            claims.stored() <= SHARDS * MIN_SWEEP,
            "{} kept",
            claims.stored()
        );
    }

    #[test]
    fn live_claims_are_kept_through_sweeps() {
        let claims = Claims::default();
        let ids: Vec<MessageId> = (0..5_000).map(|_| MessageId::new()).collect();
        let holder = Uuid::new_v4();
        for id in &ids {
            assert!(claims.take(*id, holder, LEASE));
        }
        assert!(
            ids.iter()
                .all(|id| !claims.take(*id, Uuid::new_v4(), LEASE))
        );
        assert_eq!(claims.stored(), ids.len());
    }
}
