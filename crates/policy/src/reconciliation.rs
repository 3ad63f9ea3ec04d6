//! Reconciling a late "outside the window" report (a failed status callback after the
//! gateway accepted a send) with the send it names.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lipachat_api::MessageId;
use lipachat_session::{Conversation, RefusalReason, Store, WindowState};
use tracing::{info, warn};

use crate::claim::under_claim;
use crate::closed_window::{ClosedWindow, Refusal};
use crate::error::PolicyError;
use crate::ids::send_claim_id;
use crate::outcome::{PreviousOutcome, SendOutcome};
use crate::request::SendRequest;
use crate::shared::{CallTime, Shared};

/// What [`Messenger::on_window_closed_report`](crate::Messenger::on_window_closed_report)
/// did with a late "outside the window" report.
#[derive(Debug)]
#[non_exhaustive]
pub enum Reconciliation {
    /// The closure was recorded and the message it names was handled as if the window had
    /// been closed when it was sent.
    Handled {
        /// The outcome of handling it again (rejected, rerouted or queued).
        outcome: Box<SendOutcome>,
    },
    /// The closure was recorded, but no sent message with that id is known here (it may
    /// have been sent by other software, or its record was erased).
    ClosureRecorded,
}

/// How long a send or a delivery that found a kept report waits for the claim another
/// call holds on the message before it reports [`PolicyError::SendInProgress`].
const CLAIM_PATIENCE: Duration = Duration::from_secs(3);

/// Handles late window-closed reports: records the closure and re-applies the
/// closed-window choice to the send the report names, once.
pub(crate) struct Reconciler<'a, S> {
    shared: &'a Arc<Shared<S>>,
}

impl<'a, S: Store> Reconciler<'a, S> {
    /// The reconciler over the messenger's shared state.
    pub fn new(shared: &'a Arc<Shared<S>>) -> Self {
        Self { shared }
    }

    /// Handles one report (see
    /// [`Messenger::on_window_closed_report`](crate::Messenger::on_window_closed_report)).
    pub async fn on_window_closed_report(
        &self,
        conversation: Conversation,
        message_id: Option<MessageId>,
        wa_id: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Reconciliation, PolicyError> {
        let now = CallTime::read(&self.shared.sessions);
        let state = self
            .shared
            .sessions
            .record_gateway_closure_at(conversation, at.min(now.at))
            .await?;
        warn!(%conversation, message_id = ?message_id, wa_id = wa_id.unwrap_or(""), %at, "gateway reported a send as outside the window: closure recorded");
        let named = match (
            self.named_send(conversation, message_id, wa_id).await?,
            wa_id,
        ) {
            (Some(named), _) => Some(named),
            // The send's answer may not be handled yet (a slow link): the report is kept
            // for the send to find once it stores its outcome, then looked for once more,
            // in case that send stored it meanwhile (each side writes, then reads the
            // other's, so at least one of them sees both).
            (None, Some(wa_id)) => {
                self.shared
                    .keep_early_report(conversation, wa_id, at.min(now.at))
                    .await?;
                self.named_send(conversation, message_id, Some(wa_id))
                    .await?
            }
            (None, None) => None,
        };
        let Some((key, previous)) = named else {
            return Ok(Reconciliation::ClosureRecorded);
        };
        if !previous.reached_the_gateway() {
            return Ok(Reconciliation::ClosureRecorded);
        }
        // A claim held by another call is not waited for: the report's sender retries it.
        let sent_as = previous.message_id;
        self.handle_once_claimed(conversation, key, sent_as, state, now, Duration::ZERO)
            .await
    }

    /// After a send (or a delivery, or a retry finding either) stored its outcome under
    /// `key` (`sent_as` its own `messageId`) with WhatsApp's id `wa_id`: looks for a
    /// window-closed report for that id kept from before the outcome was stored (by
    /// [`Reconciler::on_window_closed_report`]) and, if one is kept, handles the send as
    /// that report would have, once. Returns the new outcome when it handled the send;
    /// `None` when no report is kept or the send was already handled. `holds_claim`:
    /// whether the caller holds the send claim on `key` (if not, it is taken, waiting a
    /// little for another holder).
    pub async fn after_outcome_stored(
        &self,
        conversation: Conversation,
        key: MessageId,
        sent_as: MessageId,
        wa_id: Option<&str>,
        now: CallTime,
        holds_claim: bool,
    ) -> Result<Option<SendOutcome>, PolicyError> {
        let Some(wa_id) = wa_id else {
            return Ok(None);
        };
        let Some(at) = self.shared.early_report(conversation, wa_id).await? else {
            return Ok(None);
        };
        // Boxed: rare and large (the closed-window choice), and the look above is on
        // the path of every send that stores its outcome.
        let handled =
            self.handle_early_report(conversation, key, sent_as, wa_id, at, now, holds_claim);
        Box::pin(handled).await
    }

    /// [`Reconciler::after_outcome_stored`] once a kept report was found (`at` when it
    /// says the failure happened).
    #[allow(clippy::too_many_arguments)] // The send's ids, the report's, and the call's.
    async fn handle_early_report(
        &self,
        conversation: Conversation,
        key: MessageId,
        sent_as: MessageId,
        wa_id: &str,
        at: DateTime<Utc>,
        now: CallTime,
        holds_claim: bool,
    ) -> Result<Option<SendOutcome>, PolicyError> {
        warn!(%conversation, message_id = %sent_as, wa_id, %at, "the gateway reported this send as outside the window before its answer was handled: handling it as refused");
        let state = self
            .shared
            .sessions
            .record_gateway_closure_at(conversation, at.min(now.at))
            .await?;
        let handled = if holds_claim {
            self.handle_claimed(conversation, key, sent_as, state, now)
                .await?
        } else {
            self.handle_once_claimed(conversation, key, sent_as, state, now, CLAIM_PATIENCE)
                .await?
        };
        Ok(match handled {
            Reconciliation::Handled { outcome } => Some(*outcome),
            Reconciliation::ClosureRecorded => None,
        })
    }

    /// [`Reconciler::handle_claimed`] under the send claim on `key` (the same claim as a
    /// send naming it: two copies of one report, a redelivered webhook or two replicas,
    /// must not both requeue the message), waiting up to `patience` for a call that holds
    /// it (a retry looking up the outcome lets go at once); still held after that,
    /// [`PolicyError::SendInProgress`], so the caller hears that the message was not
    /// handled rather than that it was sent.
    #[allow(clippy::too_many_arguments)] // The send's ids, the window, the call's, the wait.
    async fn handle_once_claimed(
        &self,
        conversation: Conversation,
        key: MessageId,
        sent_as: MessageId,
        state: WindowState,
        now: CallTime,
        patience: Duration,
    ) -> Result<Reconciliation, PolicyError> {
        let lease = self.shared.config.send_lease;
        let started = std::time::Instant::now();
        loop {
            let work = || self.handle_claimed(conversation, key, sent_as, state, now);
            if let Some(handled) =
                under_claim(self.shared, send_claim_id(key), now.at, lease, work).await?
            {
                return Ok(handled);
            }
            if started.elapsed() >= patience {
                info!(%conversation, message_id = %key, "another call is handling this message; retry later");
                return Err(PolicyError::SendInProgress { message_id: key });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The send the report names, with the caller's `messageId` its outcome is stored
    /// under: by our `messageId` while the stored outcome is that very send (not a later
    /// requeue or redelivery of it under another id), else by WhatsApp's id.
    async fn named_send(
        &self,
        conversation: Conversation,
        message_id: Option<MessageId>,
        wa_id: Option<&str>,
    ) -> Result<Option<(MessageId, PreviousOutcome)>, PolicyError> {
        if let Some(id) = message_id
            && let Some(outcome) = self.shared.previous_outcome(conversation, id).await?
            && outcome.message_id == id
        {
            return Ok(Some((id, outcome)));
        }
        match wa_id {
            Some(wa_id) => self.shared.outcome_by_wa_id(conversation, wa_id).await,
            None => Ok(None),
        }
    }

    /// Handles the send stored under `key` as refused by the gateway, if the stored
    /// outcome is still that send (`sent_as`), read again under the claim.
    async fn handle_claimed(
        &self,
        conversation: Conversation,
        key: MessageId,
        sent_as: MessageId,
        state: WindowState,
        now: CallTime,
    ) -> Result<Reconciliation, PolicyError> {
        let Some(previous) = self
            .shared
            .previous_outcome(conversation, key)
            .await?
            .filter(|outcome| outcome.message_id == sent_as && outcome.reached_the_gateway())
        else {
            return Ok(Reconciliation::ClosureRecorded);
        };
        let reason = RefusalReason::ClosedByGateway;
        let outcome = match previous.message {
            // Handled again under the caller's own messageId, so a retried call sees the
            // new outcome; a queued copy gets a fresh id (the gateway may deduplicate the
            // old).
            Some(message) => {
                let request = SendRequest::new(conversation, message).message_id(key);
                let refusal = Refusal {
                    message_id: key,
                    reason,
                    state,
                    refused_by_gateway: Some(sent_as),
                };
                ClosedWindow::new(self.shared)
                    .apply(&request, refusal, now)
                    .await?
            }
            // No copy was kept: the policy was to reject.
            None => {
                let outcome = PreviousOutcome::refused(key, previous.wa_id, now.at);
                self.shared.remember(conversation, key, &outcome).await?;
                SendOutcome::Rejected {
                    message_id: key,
                    reason,
                    state,
                    refused_by_gateway: true,
                }
            }
        };
        Ok(Reconciliation::Handled {
            outcome: Box::new(outcome),
        })
    }
}
