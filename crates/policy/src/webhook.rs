//! Handling one parsed webhook event: who it is about (a phone number, a user known by a
//! business-scoped user id, a group), then what it does to the window, the outbox and the
//! identities the store keeps.

use chrono::{DateTime, Utc};
use lipachat_api::webhook::SystemChange;
use lipachat_api::{InboundContent, InboundMessage, Recipient, WebhookEvent};
use lipachat_session::{Conversation, InboundId, Merged, MovedRecords, SessionError, Store};
use tracing::{info, warn};

use crate::delivery::Reconciliation;
use crate::error::PolicyError;
use crate::messenger::Messenger;
use crate::outcome::{DeliveryReport, InboundHandled, InboundReport};

/// What [`Messenger::on_webhook_event`] did with one webhook event.
#[derive(Debug)]
#[non_exhaustive]
pub enum WebhookOutcome {
    /// A customer's message (or call) was recorded in its conversation (a phone's, a
    /// user's known only by a business-scoped user id, or a group's), and the outbox
    /// delivered where it can be.
    Inbound(Box<InboundReport>),
    /// A redelivered copy of a customer's message already handled: nothing was recorded;
    /// do not answer it again.
    Duplicate {
        /// The conversation the first copy was recorded in.
        conversation: Conversation,
        /// When the first copy was received.
        first_received_at: DateTime<Utc>,
        /// The delivery of queued messages it ran (usually empty).
        delivery: DeliveryReport,
    },
    /// A "window closed" report was reconciled.
    WindowClosed(Reconciliation),
    /// A user's phone number or business-scoped user id changed (a system message, which
    /// does not open the window): what was stored for the old identity moved to the new
    /// one.
    IdentityMoved {
        /// The conversation of the old identity (now empty).
        from: Conversation,
        /// The conversation of the new identity.
        to: Conversation,
        /// What moved (nothing, when nothing was stored for the old identity).
        moved: MovedRecords,
    },
    /// Nothing to do: a status update, a message kind that does not open the window, a
    /// report that names no conversation known here, or an unreadable item (with why).
    Ignored(String),
}

impl<S: Store> Messenger<S> {
    /// Handles one parsed webhook event: records a customer's message (which may deliver
    /// queued messages), reconciles a "window closed" report, or moves what is stored for
    /// a user whose number or user id changed. Verify the webhook's secret token before
    /// calling this: a forged inbound message would open a window.
    ///
    /// Who a message is with: a group message belongs to the (business, group)
    /// conversation, never to the sender's 1:1 window; a 1:1 message to the sender's
    /// phone, or, when only a business-scoped user id names them, to the phone an alias
    /// recorded earlier names, else to the user's own conversation (which cannot be sent
    /// to). A message naming both a phone and a user id records the alias and moves the
    /// user's conversation into the phone's (see
    /// [`Sessions::sender_conversation`](lipachat_session::Sessions::sender_conversation)).
    /// Statuses and reports tie back the same way, without creating anything.
    pub async fn on_webhook_event(
        &self,
        event: &WebhookEvent,
    ) -> Result<WebhookOutcome, PolicyError> {
        match event {
            WebhookEvent::Inbound(message) => self.on_inbound_message(message).await,
            WebhookEvent::WindowClosed {
                conversation,
                recipient,
                message_id,
                wa_id,
                at,
                ..
            } => {
                let conversation = match conversation {
                    Some(conversation) => {
                        self.link_recipient(recipient).await?;
                        Some(*conversation)
                    }
                    None => self.recipient_conversation(recipient).await?,
                };
                let Some(conversation) = conversation else {
                    warn!(message_id = ?message_id, wa_id = ?wa_id, "window-closed report names no conversation known here; configure the parser's business number");
                    return Ok(WebhookOutcome::Ignored(
                        "window-closed report names no conversation known here".into(),
                    ));
                };
                let message_id = message_id.as_deref().and_then(|id| id.parse().ok());
                let reconciled = self
                    .on_window_closed_report(conversation, message_id, wa_id.as_deref(), *at)
                    .await?;
                Ok(WebhookOutcome::WindowClosed(reconciled))
            }
            WebhookEvent::Status(status) => {
                // A status naming both a phone and a user id ties them together.
                self.link_recipient(&status.recipient).await?;
                Ok(WebhookOutcome::Ignored(format!(
                    "status {:?}",
                    status.status
                )))
            }
            WebhookEvent::TemplateStatus(update) => Ok(WebhookOutcome::Ignored(format!(
                "template status {:?} for {:?}",
                update.status.as_deref().unwrap_or("unknown"),
                update
                    .template_name
                    .as_deref()
                    .unwrap_or("an unnamed template")
            ))),
            WebhookEvent::Ignored { reason } => Ok(WebhookOutcome::Ignored(reason.clone())),
            other => Ok(WebhookOutcome::Ignored(format!(
                "unhandled event {other:?}"
            ))),
        }
    }

    async fn on_inbound_message(
        &self,
        message: &InboundMessage,
    ) -> Result<WebhookOutcome, PolicyError> {
        let sessions = self.sessions();
        let business = message.business;
        let sender = &message.sender;
        if let InboundContent::System(change) = &message.content {
            return self.on_identity_change(message, change).await;
        }
        // Checked before the sender's own conversation: a group message must never open
        // (or be read as) the sender's 1:1 window. It still tells who the sender is.
        let (conversation, user) = match &message.group {
            Some(group) => {
                if let (Some(phone), Some(user)) = (sender.phone, &sender.user_id) {
                    sessions.link(business, user, phone).await?;
                }
                if !message.opens_window {
                    return Ok(Self::not_opening(message));
                }
                (sessions.group_conversation(business, group).await?, None)
            }
            None => {
                if !message.opens_window {
                    // Tying a phone to a user id records nothing about the window.
                    if let (Some(phone), Some(user)) = (sender.phone, &sender.user_id) {
                        sessions.link(business, user, phone).await?;
                    }
                    return Ok(Self::not_opening(message));
                }
                let Some(resolved) = sessions
                    .sender_conversation(business, sender.phone, sender.user_id.as_ref())
                    .await?
                else {
                    return Ok(WebhookOutcome::Ignored(
                        "message names no sender (neither a phone number nor a user id)".into(),
                    ));
                };
                if let Some(merged) = resolved.merged {
                    log_merge(&merged, "a message named both the phone and the user id");
                }
                (resolved.conversation, sender.user_id.as_ref())
            }
        };
        let id = message
            .message_id
            .as_deref()
            .and_then(|id| InboundId::new(id).ok());
        let at = message.inbound_time();
        let handled = match id {
            Some(id) => self.on_inbound_once(conversation, at, &id).await?,
            // Without a usable id a copy cannot be recognised; it still counts.
            None => InboundHandled::First(self.on_inbound(conversation, at).await?),
        };
        // Recorded under a user's handle while another replica recorded the user's phone:
        // move it there now, so the two identities stay one conversation.
        let settled = match user {
            Some(user) => sessions.settle_user(conversation, user).await?,
            None => None,
        };
        Ok(match handled {
            InboundHandled::First(mut report) => {
                if let Some(merged) = settled {
                    log_merge(&merged, "the user's phone became known meanwhile");
                    report.conversation = merged.to;
                    report.delivery = self.deliver(merged.to).await?;
                }
                WebhookOutcome::Inbound(Box::new(report))
            }
            InboundHandled::Duplicate {
                first_received_at,
                delivery,
            } => WebhookOutcome::Duplicate {
                conversation: settled.map_or(conversation, |merged| merged.to),
                first_received_at,
                delivery,
            },
        })
    }

    fn not_opening(message: &InboundMessage) -> WebhookOutcome {
        WebhookOutcome::Ignored(format!(
            "{} messages do not open the window",
            message.kind.name()
        ))
    }

    /// A system message: a number change or a user id change moves what is stored; any
    /// other (an identity key change) changes nothing. It never opens the window.
    async fn on_identity_change(
        &self,
        message: &InboundMessage,
        change: &SystemChange,
    ) -> Result<WebhookOutcome, PolicyError> {
        let sessions = self.sessions();
        let business = message.business;
        let sender = &message.sender;
        let merged = if change.is_number_change() {
            let Some(new) = change.new_phone else {
                return Ok(WebhookOutcome::Ignored(
                    "number change without the new number".into(),
                ));
            };
            sessions
                .change_number(
                    business,
                    sender.phone,
                    sender.user_id.as_ref(),
                    new,
                    change.new_user_id.as_ref(),
                )
                .await?
        } else if change.is_user_id_change() {
            let previous = change.previous_user_id.as_ref().or(sender.user_id.as_ref());
            match (previous, &change.new_user_id) {
                (Some(previous), Some(new)) if previous != new => Some(
                    sessions
                        .change_user_id(business, sender.phone, previous, new)
                        .await?,
                ),
                _ => {
                    return Ok(WebhookOutcome::Ignored(
                        "user id change without both the previous and the new id".into(),
                    ));
                }
            }
        } else {
            return Ok(WebhookOutcome::Ignored(
                "system message that changes no identity".into(),
            ));
        };
        let Some(merged) = merged else {
            return Ok(WebhookOutcome::Ignored(
                "number change that names no old identity".into(),
            ));
        };
        log_merge(&merged, "the user's identity changed");
        Ok(WebhookOutcome::IdentityMoved {
            from: merged.from,
            to: merged.to,
            moved: merged.moved,
        })
    }

    /// The conversation a status or report's recipient belongs to, looked up only.
    async fn recipient_conversation(
        &self,
        recipient: &Recipient,
    ) -> Result<Option<Conversation>, SessionError> {
        let Some(business) = recipient.business else {
            return Ok(None);
        };
        self.link_recipient(recipient).await?;
        self.sessions()
            .find_conversation(
                business,
                recipient.phone,
                recipient.user_id.as_ref(),
                recipient.group.as_ref(),
            )
            .await
    }

    /// Records the alias a 1:1 recipient's phone and user id make, when both are given.
    async fn link_recipient(&self, recipient: &Recipient) -> Result<(), SessionError> {
        if let (Some(business), Some(phone), Some(user), None) = (
            recipient.business,
            recipient.phone,
            &recipient.user_id,
            &recipient.group,
        ) && let Some(merged) = self.sessions().link(business, user, phone).await?
        {
            log_merge(&merged, "a status named both the phone and the user id");
        }
        Ok(())
    }
}

fn log_merge(merged: &Merged, why: &str) {
    info!(
        from = %merged.from,
        to = %merged.to,
        window = merged.moved.window,
        queued = merged.moved.queued,
        invitation = merged.moved.invitation,
        outcomes = merged.moved.outcomes,
        "{why}: moved what was stored"
    );
}
