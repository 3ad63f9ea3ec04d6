//! What a webhook event asks of the store: decided in one place, for the bot
//! ([`Messenger::on_webhook_event`](crate::Messenger::on_webhook_event), which then delivers
//! and reconciles) and for tools that only record ([`record_event`], used by
//! `session-check ingest`, which never sends).

use chrono::{DateTime, Utc};
use lipachat_api::{MessageId, WebhookEvent};
use lipachat_session::{Conversation, InboundId, RecordedOnce, Sessions, Store, WindowState};

use crate::error::PolicyError;

/// What the store must record for one webhook event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventAction {
    /// A customer's message or call that (re)starts the window at `at`.
    RecordInbound {
        /// The 1:1 conversation.
        conversation: Conversation,
        /// The sender's time, capped at receipt.
        at: DateTime<Utc>,
        /// The platform's message id, by which a redelivered copy is recognised (`None`:
        /// the message still counts, but a copy of it cannot be recognised).
        id: Option<InboundId>,
    },
    /// The gateway reported a send refused as outside the window (131047 or 470).
    RecordClosure {
        /// The conversation.
        conversation: Conversation,
        /// When the failure happened (the platform's time).
        at: DateTime<Utc>,
        /// Our `messageId` of the refused send, when the report names it.
        message_id: Option<MessageId>,
        /// WhatsApp's id of the refused send, when the report names it.
        wa_id: Option<String>,
    },
    /// Nothing to record.
    Nothing {
        /// The conversation the event concerns, when it names one.
        conversation: Option<Conversation>,
        /// Why nothing is recorded.
        reason: String,
    },
}

impl EventAction {
    /// What `event` asks of the store.
    pub fn of(event: &WebhookEvent) -> Self {
        match event {
            // Checked before anything else: a group message must never open (or be read
            // as) the sender's 1:1 window.
            WebhookEvent::Inbound(message) if message.group.is_some() => Self::Nothing {
                conversation: None,
                reason: "group message: opens the group's window, not the sender's (group windows are not stored yet)".into(),
            },
            WebhookEvent::Inbound(message) if !message.opens_window => Self::Nothing {
                conversation: message.conversation(),
                reason: format!("{} messages do not open the window", message.kind.name()),
            },
            WebhookEvent::Inbound(message) => match message.conversation() {
                Some(conversation) => Self::RecordInbound {
                    conversation,
                    at: message.inbound_time(),
                    id: message
                        .message_id
                        .as_deref()
                        .and_then(|id| InboundId::new(id).ok()),
                },
                None => Self::Nothing {
                    conversation: None,
                    reason: "message from a user known only by a business-scoped user id: its 1:1 phone conversation is unknown (conversations keyed by user id are not stored yet)".into(),
                },
            },
            WebhookEvent::WindowClosed {
                conversation: Some(conversation),
                message_id,
                wa_id,
                at,
                ..
            } => Self::RecordClosure {
                conversation: *conversation,
                at: *at,
                message_id: message_id.as_deref().and_then(|id| id.parse().ok()),
                wa_id: wa_id.clone(),
            },
            WebhookEvent::WindowClosed {
                conversation: None, ..
            } => Self::Nothing {
                conversation: None,
                reason: "window-closed report names no conversation; configure the parser's business number".into(),
            },
            WebhookEvent::Status(status) => Self::Nothing {
                conversation: event.conversation(),
                reason: format!("status {:?}", status.status),
            },
            WebhookEvent::TemplateStatus(update) => Self::Nothing {
                conversation: None,
                reason: format!(
                    "template status {:?} for {:?}",
                    update.status.as_deref().unwrap_or("unknown"),
                    update.template_name.as_deref().unwrap_or("an unnamed template")
                ),
            },
            WebhookEvent::Ignored { reason } => Self::Nothing {
                conversation: None,
                reason: reason.clone(),
            },
            other => Self::Nothing {
                conversation: other.conversation(),
                reason: format!("unhandled event {other:?}"),
            },
        }
    }
}

/// What [`record_event`] stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventRecording {
    /// A customer's message: recorded, or recognised as a redelivered copy.
    Inbound(RecordedOnce),
    /// A closure: recorded; the window's state after it.
    Closure(WindowState),
    /// Nothing was stored.
    Nothing,
}

/// Records what `action` asks of the store, and sends nothing: no queued message is
/// delivered and no closure is reconciled (a bot does both in
/// [`Messenger::on_webhook_event`](crate::Messenger::on_webhook_event)). A closure is
/// recorded at its time, never later than now, so a customer who wrote after the failure
/// keeps the window the reply opened.
pub async fn record_event<S: Store>(
    sessions: &Sessions<S>,
    action: &EventAction,
) -> Result<EventRecording, PolicyError> {
    Ok(match action {
        EventAction::RecordInbound {
            conversation,
            at,
            id: Some(id),
        } => EventRecording::Inbound(sessions.record_inbound_once(*conversation, *at, id).await?),
        EventAction::RecordInbound {
            conversation,
            at,
            id: None,
        } => EventRecording::Inbound(RecordedOnce::First(
            sessions.record_inbound(*conversation, *at).await?,
        )),
        EventAction::RecordClosure {
            conversation, at, ..
        } => EventRecording::Closure(
            sessions
                .record_gateway_closure_at(*conversation, (*at).min(sessions.now()))
                .await?,
        ),
        EventAction::Nothing { .. } => EventRecording::Nothing,
    })
}
