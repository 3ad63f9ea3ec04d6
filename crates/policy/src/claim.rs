//! Claims held for the length of one operation (a delivery, an expiry, an invitation, a
//! send under a caller's `messageId`), released even when the operation is cancelled.
//!
//! A claim lives in the store with a lease, so that of several callers or replicas only
//! one acts at a time. The holder releases it when done; if the operation's future is
//! dropped first (a bot handler's timeout, a shut-down task), dropping the claim asks the
//! runtime to release it, so a retry need not wait for the lease to run out. Without a
//! runtime (a future dropped outside one) the lease still ends it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::{Conversation, MessageId, Store};
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::error::PolicyError;
use crate::ids::send_claim_id;
use crate::outcome::PreviousOutcome;
use crate::shared::{CallTime, Shared};

/// A claim this caller holds; release it with [`HeldClaim::release`].
#[must_use = "a claim is held until released or dropped"]
pub(crate) struct HeldClaim<S: Store> {
    /// The messenger's state, until the claim is released.
    owner: Option<Arc<Shared<S>>>,
    id: MessageId,
    /// This claim's own token: the store releases the claim only for it, so a release
    /// that comes after the lease ran out cannot free a claim another caller took since.
    holder: Uuid,
}

/// A token for one claim, unique to it among every claim of every process: 60 random
/// bits drawn once per process (a version-4 UUID's first 8 bytes), then a count. (A
/// fresh random UUID per claim cost a system call on every send under a caller's
/// `messageId`.) Two processes share tokens only if one is a copy of the other made
/// after its first claim (a fork, a memory snapshot restored twice), which a tokio
/// program does not do.
fn claim_holder() -> Uuid {
    static PROCESS: OnceLock<[u8; 8]> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let process = PROCESS.get_or_init(|| {
        let random = Uuid::new_v4();
        let mut prefix = [0; 8];
        prefix.copy_from_slice(&random.as_bytes()[..8]);
        prefix
    });
    let mut bytes = [0; 16];
    bytes[..8].copy_from_slice(process);
    // The version and variant bits the builder sets leave the count's low 62 bits.
    bytes[8..].copy_from_slice(&COUNT.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// Claims `id` for `lease` on `shared`'s store, or `None` when another live claim holds
/// it.
async fn try_claim<S: Store>(
    shared: &Arc<Shared<S>>,
    id: MessageId,
    now: DateTime<Utc>,
    lease: TimeDelta,
) -> Result<Option<HeldClaim<S>>, PolicyError> {
    let holder = claim_holder();
    let claimed = shared.store().claim(id, holder, now, lease).await?;
    Ok(claimed.then(|| HeldClaim {
        owner: Some(Arc::clone(shared)),
        id,
        holder,
    }))
}

/// Claims `id` for `lease`, runs the work `work` makes under the claim and releases it,
/// whatever the work returned. `Ok(None)` when another live claim holds `id`: the work
/// is then never made. Cancelled mid-way, the claim is released as [`HeldClaim`]'s drop
/// says.
///
/// `work` makes the future only once claimed: a future passed down by value is stored
/// once more by every `async fn` it passes through (each keeps its arguments apart from
/// what it awaits), which made a send naming its `messageId` a 13.5 KiB future.
pub(crate) async fn under_claim<S: Store, T, W>(
    shared: &Arc<Shared<S>>,
    id: MessageId,
    now: DateTime<Utc>,
    lease: TimeDelta,
    work: impl FnOnce() -> W,
) -> Result<Option<T>, PolicyError>
where
    W: Future<Output = Result<T, PolicyError>>,
{
    let Some(claim) = try_claim(shared, id, now, lease).await? else {
        return Ok(None);
    };
    let result = work().await;
    claim.release().await;
    result.map(Some)
}

/// What a call under the claim on a caller's `messageId` found or did.
pub(crate) enum Claimed<T> {
    /// An outcome was already stored for the id: the earlier call's.
    Earlier(PreviousOutcome),
    /// The call ran, with this result.
    Ran(T),
}

/// Runs the work `run` makes under the claim on a caller's own `message_id` (a send, a
/// template send), unless an outcome is already stored for it: that earlier outcome is
/// returned and nothing runs. While another call holds the claim,
/// [`PolicyError::SendInProgress`] (unless that call has just stored its outcome, which
/// is then returned).
///
/// `run` makes the work's future only when it runs, as [`under_claim`]'s `work` does.
pub(crate) async fn once_per_message_id<S: Store, T, W>(
    shared: &Arc<Shared<S>>,
    conversation: Conversation,
    message_id: MessageId,
    now: CallTime,
    run: impl FnOnce() -> W,
) -> Result<Claimed<T>, PolicyError>
where
    W: Future<Output = Result<T, PolicyError>>,
{
    let earlier = || async {
        let previous = shared.previous_outcome(conversation, message_id).await?;
        if let Some(previous) = &previous {
            info!(%conversation, %message_id, outcome = previous.kind.name(), "duplicate send: returning the earlier outcome");
        }
        Ok::<_, PolicyError>(previous)
    };
    let claimed = || async {
        // Under the claim no other call can be writing this id's outcome.
        match earlier().await? {
            Some(previous) => Ok(Claimed::Earlier(previous)),
            None => run().await.map(Claimed::Ran),
        }
    };
    let lease = shared.config.send_lease;
    if let Some(done) =
        under_claim(shared, send_claim_id(message_id), now.at, lease, claimed).await?
    {
        return Ok(done);
    }
    // Without the claim, the call holding it may have finished already.
    if let Some(previous) = earlier().await? {
        return Ok(Claimed::Earlier(previous));
    }
    info!(%conversation, %message_id, "another call is sending this messageId; nothing sent");
    Err(PolicyError::SendInProgress { message_id })
}

impl<S: Store> HeldClaim<S> {
    /// Releases the claim now. A failure (the store unreachable) is logged, not returned:
    /// the work done under the claim stands, and the lease ends the claim.
    ///
    /// If this call is itself cancelled while the store works, the claim stays owned
    /// until then, so dropping it hands the release to the runtime as for any other
    /// cancellation.
    pub(crate) async fn release(mut self) {
        let Some(owner) = self.owner.clone() else {
            return;
        };
        let result = owner.sessions.store().release(self.id, self.holder).await;
        self.owner = None;
        if let Err(error) = result {
            warn!(claim = %self.id, %error, "releasing a claim failed; its lease will end it");
        }
    }
}

impl<S: Store> Drop for HeldClaim<S> {
    fn drop(&mut self) {
        let Some(owner) = self.owner.take() else {
            return;
        };
        // Dropped unreleased: the operation holding it was cancelled.
        let (id, holder) = (self.id, self.holder);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            debug!(claim = %id, "operation cancelled; releasing its claim");
            runtime.spawn(async move {
                if let Err(error) = owner.sessions.store().release(id, holder).await {
                    debug!(claim = %id, %error, "releasing a cancelled operation's claim failed; its lease will end it");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_holders_are_distinct_random_uuids_of_one_process() {
        let holders: Vec<Uuid> = (0..1000).map(|_| claim_holder()).collect();
        let distinct: std::collections::HashSet<_> = holders.iter().collect();
        assert_eq!(distinct.len(), holders.len());
        assert!(holders.iter().all(|h| h.get_version_num() == 4));
        assert!(
            holders
                .windows(2)
                .all(|w| w[0].as_bytes()[..8] == w[1].as_bytes()[..8])
        );
    }
}
