//! Claims held for the length of one operation (a delivery, an expiry, an invitation, a
//! send under a caller's `messageId`), released even when the operation is cancelled.
//!
//! A claim lives in the store with a lease, so that of several callers or replicas only
//! one acts at a time. The holder releases it when done; if the operation's future is
//! dropped first (a bot handler's timeout, a shut-down task), dropping the claim asks the
//! runtime to release it, so a retry need not wait for the lease to run out. Without a
//! runtime (a future dropped outside one) the lease still ends it.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::{MessageId, Store};
use tracing::{debug, warn};
use uuid::Uuid;

use crate::error::PolicyError;
use crate::shared::Shared;

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

/// Claims `id` for `lease` on `shared`'s store, or `None` when another live claim holds
/// it.
async fn try_claim<S: Store>(
    shared: &Arc<Shared<S>>,
    id: MessageId,
    now: DateTime<Utc>,
    lease: TimeDelta,
) -> Result<Option<HeldClaim<S>>, PolicyError> {
    let holder = Uuid::new_v4();
    let claimed = shared.store().claim(id, holder, now, lease).await?;
    Ok(claimed.then(|| HeldClaim {
        owner: Some(Arc::clone(shared)),
        id,
        holder,
    }))
}

/// Claims `id` for `lease`, runs `work` under the claim and releases it, whatever `work`
/// returned. `Ok(None)` when another live claim holds `id`: `work` is then dropped
/// without running. Cancelled mid-way, the claim is released as [`HeldClaim`]'s drop
/// says.
pub(crate) async fn under_claim<S: Store, T>(
    shared: &Arc<Shared<S>>,
    id: MessageId,
    now: DateTime<Utc>,
    lease: TimeDelta,
    work: impl Future<Output = Result<T, PolicyError>>,
) -> Result<Option<T>, PolicyError> {
    let Some(claim) = try_claim(shared, id, now, lease).await? else {
        return Ok(None);
    };
    let result = work.await;
    claim.release().await;
    result.map(Some)
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
