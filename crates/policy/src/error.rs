//! The send path's errors.

use lipachat_api::{ApiError, CatalogRefusal, MessageId, ValidationError};
use lipachat_session::{Conversation, SessionError, StoreError};

/// A failure of the send path. Nothing in it contains the API key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The session engine or its store failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The free-form send failed; retrying with the same `messageId` is safe (the gateway
    /// deduplicates it).
    #[error("sending {message_id} failed: {source}")]
    Send {
        /// The message's `messageId`, to retry with.
        message_id: MessageId,
        /// What the gateway or the network said.
        source: ApiError,
    },
    /// The template (reroute or invitation) failed; nothing was queued. Retrying the whole
    /// send with the same `messageId` reuses the template's `messageId` too.
    #[error("sending template {template_message_id} for {message_id} failed: {source}")]
    Template {
        /// The free-form message's `messageId`.
        message_id: MessageId,
        /// The template's `messageId`.
        template_message_id: MessageId,
        /// What the gateway or the network said.
        source: ApiError,
    },
    /// The template (a reroute, an invitation or a template send) was refused before any
    /// request: the business's catalog does not have it approved in that language, or
    /// its placeholders or header do not match. Nothing was sent or queued.
    #[error("template for {message_id} refused before sending: {refusal}")]
    TemplateRefused {
        /// The `messageId` of the logical send.
        message_id: MessageId,
        /// What the catalog said.
        refusal: CatalogRefusal,
    },
    /// The template's per-send placeholders are not valid.
    #[error("template placeholders: {0}")]
    Placeholders(#[from] ValidationError),
    /// The conversation's outbox is full; the message was not queued. (When the gateway
    /// refused it as outside the window first, that send did leave.)
    #[error(
        "outbox for {conversation} is full ({limit} messages waiting); the message was not queued"
    )]
    OutboxFull {
        /// The conversation.
        conversation: Conversation,
        /// The configured limit.
        limit: usize,
    },
    /// Another call naming the same `messageId` is sending it right now; this one sent
    /// nothing. Retrying later returns that call's outcome.
    #[error("a send with messageId {message_id} is already in progress; nothing was sent")]
    SendInProgress {
        /// The `messageId` both calls name.
        message_id: MessageId,
    },
    /// The conversation is with a user known only by a business-scoped user id, or with a
    /// group: the gateway offers no way to address either. Nothing was sent or stored.
    #[error(
        "{conversation} has no phone number to send to: the gateway offers no way to address a user by business-scoped user id, or a group; nothing was sent"
    )]
    NotAddressable {
        /// The conversation.
        conversation: Conversation,
    },
    /// A stored outcome or queued message could not be read.
    #[error("stored record for {conversation} is unreadable: {detail}")]
    Corrupt {
        /// The conversation.
        conversation: Conversation,
        /// What was wrong.
        detail: String,
    },
}

impl From<StoreError> for PolicyError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::OutboxFull {
                conversation,
                limit,
            } => Self::OutboxFull {
                conversation,
                limit,
            },
            other => Self::Session(SessionError::Store(other)),
        }
    }
}

impl PolicyError {
    /// Whether the same call may succeed later (a network or gateway hiccup, a busy store).
    pub fn retry_later_may_help(&self) -> bool {
        match self {
            Self::Send { source, .. } | Self::Template { source, .. } => {
                source.retry_later_may_help()
            }
            Self::Session(SessionError::Store(store)) => store.retry_later_may_help(),
            Self::OutboxFull { .. } | Self::SendInProgress { .. } => true,
            _ => false,
        }
    }
}
