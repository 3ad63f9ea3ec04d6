//! Attack on the sharded claims: many threads take the same live claim at once while
//! other threads churn expiring claims through the same shard (so it sweeps again and
//! again); strangers release it; expired claims are taken over; a zero lease holds
//! nothing; claims never released, in one shard, stay bounded.

use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use uuid::Uuid;

use super::{Claims, MIN_SWEEP, SHARDS};
use crate::MessageId;

const LEASE: Duration = Duration::from_secs(30);

/// A random id in the shard `last` names (ids are spread by their last byte).
fn id_in_shard(last: u8) -> MessageId {
    let mut bytes = *MessageId::new().as_bytes();
    bytes[15] = last;
    MessageId::from_bytes(bytes)
}

#[test]
fn a_live_claim_is_granted_once_to_many_threads_while_its_shard_sweeps() {
    const TAKERS: usize = 8;
    let claims = Claims::default();
    for round in 0..100_u8 {
        let id = id_in_shard(round);
        let granted = AtomicUsize::new(0);
        let start = Barrier::new(TAKERS + 2);
        std::thread::scope(|scope| {
            for _ in 0..TAKERS {
                scope.spawn(|| {
                    let holder = Uuid::new_v4();
                    start.wait();
                    if claims.take(id, holder, LEASE) {
                        granted.fetch_add(1, Ordering::SeqCst);
                        // A stranger's release, from a thread that lost, must not free it.
                    } else {
                        claims.release(id, holder);
                    }
                });
            }
            // Churn in the same shard: claims that expire at once, so sweeps run.
            scope.spawn(|| {
                start.wait();
                for _ in 0..4 * MIN_SWEEP {
                    assert!(claims.take(
                        id_in_shard(round),
                        Uuid::new_v4(),
                        Duration::from_nanos(1)
                    ));
                }
            });
            start.wait();
        });
        assert_eq!(granted.load(Ordering::SeqCst), 1, "round {round}");
        // Still held after the sweeps and the strangers' releases.
        assert!(!claims.take(id, Uuid::new_v4(), LEASE), "round {round}");
    }
}

#[test]
fn an_expired_claim_is_taken_over_once_by_many_threads() {
    const TAKERS: usize = 8;
    let claims = Claims::default();
    for round in 0..50_u8 {
        let id = id_in_shard(round);
        assert!(claims.take(id, Uuid::new_v4(), Duration::from_millis(1)));
        std::thread::sleep(Duration::from_millis(3));
        let granted = AtomicUsize::new(0);
        let start = Barrier::new(TAKERS);
        std::thread::scope(|scope| {
            for _ in 0..TAKERS {
                scope.spawn(|| {
                    start.wait();
                    if claims.take(id, Uuid::new_v4(), LEASE) {
                        granted.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(granted.load(Ordering::SeqCst), 1, "round {round}");
    }
}

#[test]
fn a_zero_lease_never_frees_a_live_claim_nor_holds_one() {
    let claims = Claims::default();
    let (id, holder) = (MessageId::new(), Uuid::new_v4());
    assert!(claims.take(id, holder, LEASE));
    assert!(!claims.take(id, Uuid::new_v4(), Duration::ZERO));
    assert!(
        !claims.take(id, holder, Duration::ZERO),
        "not even to its holder"
    );
    let free = MessageId::new();
    for _ in 0..3 {
        assert!(claims.take(free, Uuid::new_v4(), Duration::ZERO));
    }
    assert!(claims.take(free, Uuid::new_v4(), LEASE));
}

#[test]
fn never_released_claims_in_one_shard_stay_bounded() {
    let claims = Claims::default();
    // Every claim lands in one shard, expires at once, and is never released.
    for _ in 0..100_000 {
        assert!(claims.take(id_in_shard(7), Uuid::new_v4(), Duration::from_nanos(1)));
    }
    assert!(claims.stored() <= MIN_SWEEP, "{} kept", claims.stored());
    // A burst of live claims raises the shard's sweep mark; once they expire, later
    // claims sweep them out and the shard comes back down.
    for _ in 0..10 * MIN_SWEEP {
        assert!(claims.take(id_in_shard(7), Uuid::new_v4(), Duration::from_millis(20)));
    }
    std::thread::sleep(Duration::from_millis(30));
    for _ in 0..100_000 {
        assert!(claims.take(id_in_shard(7), Uuid::new_v4(), Duration::from_nanos(1)));
    }
    assert!(
        claims.stored() <= 2 * 10 * MIN_SWEEP + SHARDS,
        "{} kept",
        claims.stored()
    );
}
