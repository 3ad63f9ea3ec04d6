//! The closed-window choice: what a send does when the window is not open (or the gateway
//! said it was not): reject it, reroute it to a template, or queue it behind an
//! invitation.

use std::ops::ControlFlow;
use std::sync::Arc;

use lipachat_api::{MessageId, TemplateMessage};
use lipachat_session::{
    Conversation, Invitation, QueuedMessage, RefusalReason, Store, WindowState,
};
use tracing::{info, warn};

use crate::claim::under_claim;
use crate::config::OnClosed;
use crate::consent::Withholding;
use crate::cost::Pricing;
use crate::delivery::OutboxDelivery;
use crate::error::PolicyError;
use crate::ids::{invitation_claim_id, requeue_message_id, template_message_id};
use crate::outcome::{PreviousOutcome, SendOutcome, TemplateSent};
use crate::request::{QueuedPayload, SendRequest};
use crate::shared::{CallTime, Shared, to_json};

/// Why one logical send could not go as a free-form message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refusal {
    /// The logical send's `messageId` (the caller's, or the one made for the call): its
    /// outcome is stored under it.
    pub message_id: MessageId,
    /// Why the window refused it.
    pub reason: RefusalReason,
    /// The window's state then.
    pub state: WindowState,
    /// The `messageId` under which the gateway just refused the message as outside the
    /// window (131047), when it did; `None` when the window was known to be closed and
    /// nothing was sent.
    pub refused_by_gateway: Option<MessageId>,
}

/// What sending the invitation template did.
#[derive(Debug)]
pub(crate) enum Invited {
    /// It went.
    Sent(TemplateSent),
    /// Consent or a limit withheld it (or the gateway refused it with 131049 / 131050).
    Withheld {
        /// Why.
        reason: Withholding,
        /// What it would have cost.
        pricing: Box<Pricing>,
        /// Whether the gateway answered 131049 / 131050.
        refused_by_gateway: bool,
    },
}

impl Invited {
    /// The outcome of a logical send whose template was withheld (`Break`), or the
    /// template sent (`Continue`).
    fn withheld(self, refusal: Refusal) -> ControlFlow<SendOutcome, TemplateSent> {
        match self {
            Self::Sent(sent) => ControlFlow::Continue(sent),
            Self::Withheld {
                reason,
                pricing,
                refused_by_gateway,
            } => ControlFlow::Break(SendOutcome::Withheld {
                message_id: refusal.message_id,
                reason,
                state: refusal.state,
                pricing,
                refused_by_gateway,
            }),
        }
    }
}

/// Applies the closed-window choice of a send's policy.
pub(crate) struct ClosedWindow<'a, S> {
    shared: &'a Arc<Shared<S>>,
}

impl<'a, S: Store> ClosedWindow<'a, S> {
    /// The choice over the messenger's shared state.
    pub fn new(shared: &'a Arc<Shared<S>>) -> Self {
        Self { shared }
    }

    /// Applies the closed-window choice that holds for `request` to its refused send.
    pub async fn apply(
        &self,
        request: &SendRequest,
        refusal: Refusal,
        now: CallTime,
    ) -> Result<SendOutcome, PolicyError> {
        match request.on_closed_under(&self.shared.config) {
            OnClosed::Reject => self.reject(request.conversation(), refusal, now).await,
            OnClosed::Template(template) => self.reroute(request, refusal, template, now).await,
            OnClosed::Queue(template) => self.queue(request, refusal, template, now).await,
        }
    }

    /// Sends nothing. A send the gateway refused is remembered as refused, so a retry
    /// naming its `messageId` does not send it again.
    async fn reject(
        &self,
        conversation: Conversation,
        refusal: Refusal,
        now: CallTime,
    ) -> Result<SendOutcome, PolicyError> {
        let Refusal {
            message_id,
            reason,
            state,
            refused_by_gateway,
        } = refusal;
        info!(%conversation, %message_id, reason = reason.name(), "rejected");
        if refused_by_gateway.is_some() {
            let outcome = PreviousOutcome::refused(message_id, None, now.at);
            self.shared
                .remember(conversation, message_id, &outcome)
                .await?;
        }
        Ok(SendOutcome::Rejected {
            message_id,
            reason,
            state,
            refused_by_gateway: refused_by_gateway.is_some(),
        })
    }

    /// Sends the template instead (unless one already went for this closed window); the
    /// free-form message is dropped.
    async fn reroute(
        &self,
        request: &SendRequest,
        refusal: Refusal,
        template: &TemplateMessage,
        now: CallTime,
    ) -> Result<SendOutcome, PolicyError> {
        let conversation = request.conversation();
        let Refusal {
            message_id,
            reason,
            state,
            ..
        } = refusal;
        let template = match self.invite(request, message_id, template, now).await? {
            Some(invited) => match invited.withheld(refusal) {
                ControlFlow::Break(withheld) => {
                    info!(%conversation, %message_id, "template withheld: not rerouted");
                    return Ok(withheld);
                }
                ControlFlow::Continue(sent) => Some(sent),
            },
            None => None,
        };
        let outcome = PreviousOutcome::rerouted(message_id, template.as_ref(), now.at);
        self.shared
            .remember(conversation, message_id, &outcome)
            .await?;
        info!(%conversation, %message_id, template_sent = template.is_some(), "rerouted to a template");
        Ok(SendOutcome::Rerouted {
            message_id,
            template,
            reason,
            state,
        })
    }

    /// Keeps the message in the outbox, one copy per logical send, and invites a reply
    /// (unless an invitation already went for this closed window).
    async fn queue(
        &self,
        request: &SendRequest,
        refusal: Refusal,
        template: &TemplateMessage,
        now: CallTime,
    ) -> Result<SendOutcome, PolicyError> {
        let conversation = request.conversation();
        let message_id = refusal.message_id;
        let limit = self.shared.config.outbox_limit;
        let store = self.shared.store();
        let queued = store.queued(conversation).await?;
        if let Some(entry) = queued.iter().find(|entry| queued_by(entry, message_id)) {
            return self.already_queued(conversation, entry, refusal, now).await;
        }
        if queued.len() >= limit {
            warn!(%conversation, %message_id, limit, "outbox full");
            return Err(PolicyError::OutboxFull {
                conversation,
                limit,
            });
        }
        let template = match self.invite(request, message_id, template, now).await? {
            // Beyond the messaging limit the message still waits for the customer's
            // reply, without an invitation; consent withholds the whole send.
            Some(Invited::Withheld {
                reason: Withholding::MessagingLimit { .. },
                ..
            }) => None,
            Some(invited) => match invited.withheld(refusal) {
                ControlFlow::Break(withheld) => {
                    info!(%conversation, %message_id, "invitation withheld: not queued");
                    return Ok(withheld);
                }
                ControlFlow::Continue(sent) => Some(sent),
            },
            None => None,
        };
        // Every queued copy of one logical send gets the same id derived from the id last
        // used with the gateway (the caller's, or the one it refused), so two calls that
        // both reach this point (one stalled past its lease, one retried) queue one
        // message: the store keeps one entry per id. It is never the caller's own id,
        // which the gateway may remember as refused.
        let queued_id = requeue_message_id(refusal.refused_by_gateway.unwrap_or(message_id));
        let payload = QueuedPayload {
            origin: message_id,
            message: request.message().clone(),
        };
        let outcome =
            PreviousOutcome::queued(queued_id, template.as_ref().map(|t| t.message_id), now.at);
        // The message and the outcome saying it is queued are stored in one durable step:
        // a retry that found the message queued but no outcome would queue it a second
        // time.
        store
            .enqueue_with_outcome(
                conversation,
                QueuedMessage {
                    message_id: queued_id,
                    queued_at: now.at,
                    payload: to_json(&payload),
                },
                limit,
                self.queued_outcome(message_id, &outcome),
            )
            .await?;
        info!(%conversation, %message_id, queued_id = %queued_id, template_sent = template.is_some(), "queued until the customer replies");
        self.queued(conversation, queued_id, template, refusal, now)
            .await
    }

    /// One copy per logical send. Every copy a send queues carries its key (`origin`),
    /// whatever `messageId` it waits under, and only a call holding the key's claim
    /// queues one, so a copy found here was queued by an earlier attempt whose outcome
    /// this call did not find (it expired, or a store wrote the message without it): it is
    /// the message, not queued again. Its outcome is written back alone: writing the
    /// message again could put back a copy a delivery has just taken out.
    async fn already_queued(
        &self,
        conversation: Conversation,
        entry: &QueuedMessage,
        refusal: Refusal,
        now: CallTime,
    ) -> Result<SendOutcome, PolicyError> {
        let message_id = refusal.message_id;
        let queued_id = entry.message_id;
        info!(%conversation, %message_id, queued_id = %queued_id, "already queued by an earlier attempt: not queued again");
        let outcome = PreviousOutcome::queued(queued_id, None, now.at);
        self.shared
            .store()
            .put_outcome(conversation, self.queued_outcome(message_id, &outcome))
            .await?;
        self.queued(conversation, queued_id, None, refusal, now)
            .await
    }

    /// A queued message's outcome as stored under `key`: kept for the outcome horizon, or
    /// longer if the message may wait longer, so that a retry finds it while it waits.
    fn queued_outcome(
        &self,
        key: MessageId,
        outcome: &PreviousOutcome,
    ) -> lipachat_session::StoredOutcome {
        let config = &self.shared.config;
        let keep_for = config.outcome_horizon.max(config.outbox_ttl);
        Shared::<S>::stored_outcome(key, outcome, keep_for)
    }

    /// [`SendOutcome::Queued`] for a message now queued under `queued_id`. A reply
    /// recorded between the decision and the enqueue delivered the outbox without this
    /// message; it is delivered now rather than at the next reply (a failure here leaves
    /// it queued, so it is only logged).
    async fn queued(
        &self,
        conversation: Conversation,
        queued_id: MessageId,
        template: Option<TemplateSent>,
        refusal: Refusal,
        now: CallTime,
    ) -> Result<SendOutcome, PolicyError> {
        let (mut delivered, mut expired) = (Vec::new(), Vec::new());
        let reopened = self
            .shared
            .sessions
            .decide_at(conversation, now.at)
            .await?
            .is_allowed();
        if reopened {
            match OutboxDelivery::new(self.shared).deliver(conversation).await {
                Ok(report) => {
                    info!(%conversation, delivered = report.delivered.len(), "window reopened while queueing: delivered");
                    (delivered, expired) = (report.delivered, report.expired);
                }
                Err(error) => {
                    warn!(%conversation, %error, "window reopened while queueing; delivery failed, the message stays queued")
                }
            }
        }
        Ok(SendOutcome::Queued {
            message_id: queued_id,
            template,
            reason: refusal.reason,
            state: refusal.state,
            delivered,
            expired,
        })
    }

    /// Sends the invitation template unless one already went for this closed window within
    /// the cool-down (or another sender is sending it right now).
    async fn invite(
        &self,
        request: &SendRequest,
        message_id: MessageId,
        template: &TemplateMessage,
        now: CallTime,
    ) -> Result<Option<Invited>, PolicyError> {
        let conversation = request.conversation();
        if self.invited_for_this_window(conversation, now).await? {
            info!(%conversation, %message_id, "invitation already sent for this closed window");
            return Ok(None);
        }
        // One invitation at a time per conversation, across replicas. Read again under the
        // claim: another sender may have invited between our first read and the claim.
        let invited = || async {
            if self.invited_for_this_window(conversation, now).await? {
                return Ok(None);
            }
            self.send_invitation(request, message_id, template, now)
                .await
                .map(Some)
        };
        let lock = invitation_claim_id(conversation);
        let lease = self.shared.config.delivery_lease;
        match under_claim(self.shared, lock, now.at, lease, invited).await? {
            Some(sent) => Ok(sent),
            None => {
                info!(%conversation, %message_id, "another sender is inviting this conversation");
                Ok(None)
            }
        }
    }

    /// Whether an invitation already went for the current closed window, within the
    /// cool-down.
    async fn invited_for_this_window(
        &self,
        conversation: Conversation,
        now: CallTime,
    ) -> Result<bool, PolicyError> {
        let store = self.shared.store();
        let Some(invitation) = store.invitation(conversation).await? else {
            return Ok(false);
        };
        let last_inbound = store.window(conversation).await?.map(|r| r.last_inbound);
        let for_this_window = last_inbound.is_none_or(|last| invitation.sent_at >= last);
        let cooldown_ends = invitation.cooldown_ends(self.shared.config.invitation_cooldown);
        Ok(for_this_window && now.at < cooldown_ends)
    }

    /// Sends the template unless consent or the messaging limit withholds it (checked
    /// in that order; the customer is counted against the limit before the send, so a
    /// failed send leaves it counted: the local count errs high, never low).
    async fn send_invitation(
        &self,
        request: &SendRequest,
        message_id: MessageId,
        template: &TemplateMessage,
        now: CallTime,
    ) -> Result<Invited, PolicyError> {
        let conversation = request.conversation();
        let template = request.template_for_this_send(template)?;
        let template_id = template_message_id(message_id);
        // Boxed: the check, the pricing and the send make a large future.
        let sent = match Box::pin(self.shared.send_checked_template(
            conversation,
            message_id,
            template_id,
            &template,
            false,
            now,
        ))
        .await?
        {
            Invited::Sent(sent) => sent,
            withheld @ Invited::Withheld { .. } => return Ok(withheld),
        };
        self.shared
            .store()
            .set_invitation(
                conversation,
                Some(Invitation {
                    message_id: template_id,
                    sent_at: now.at,
                }),
            )
            .await?;
        Ok(Invited::Sent(sent))
    }
}

/// Whether `entry` is a copy queued by the logical send `message_id`.
fn queued_by(entry: &QueuedMessage, message_id: MessageId) -> bool {
    serde_json::from_str::<QueuedPayload>(&entry.payload)
        .is_ok_and(|payload| payload.origin == message_id)
}
