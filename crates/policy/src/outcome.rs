//! What a send, a delivery or an inbound message did.

use chrono::{DateTime, Utc};
use lipachat_api::{FreeFormMessage, MessageId, Receipt, TemplateCategory};

use crate::catalog::CatalogCheck;
use lipachat_session::{Conversation, Recorded, RefusalReason, WindowState};
use serde::{Deserialize, Serialize};

use crate::consent::Withholding;
use crate::cost::Pricing;

/// A template sent by this call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSent {
    /// The template send's `messageId`.
    pub message_id: MessageId,
    /// The gateway's receipt.
    pub receipt: Receipt,
    /// The template's category as the business's catalog spells it (`MARKETING`,
    /// `UTILITY`, `AUTHENTICATION`, ...); `None` when it went unchecked.
    pub category: Option<TemplateCategory>,
    /// How it was checked against the catalog.
    pub check: CatalogCheck,
    /// What the template is predicted to cost (its pricing category comes from the
    /// configuration's override, else the catalog's category, else marketing).
    pub pricing: Box<Pricing>,
}

/// What [`crate::Messenger::send`] did with one free-form message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendOutcome {
    /// The window was open: the message went out.
    Sent {
        /// The message's `messageId`.
        message_id: MessageId,
        /// The gateway's receipt.
        receipt: Receipt,
        /// When the window closes.
        expires_at: DateTime<Utc>,
        /// What the message is predicted to cost.
        pricing: Box<Pricing>,
    },
    /// The window was closed: the configured template went instead (or, with `template`
    /// `None`, had already gone for this closed window); the free-form message was dropped.
    Rerouted {
        /// The free-form message's `messageId` (not sent).
        message_id: MessageId,
        /// The template sent by this call, if any.
        template: Option<TemplateSent>,
        /// Why the free-form message could not go.
        reason: RefusalReason,
        /// The window's state at the decision.
        state: WindowState,
    },
    /// The window was closed: the message waits in the outbox for the customer's reply
    /// (the invitation template was sent by this call if `template` is `Some`).
    Queued {
        /// The queued message's `messageId`, which its delivery will reuse.
        message_id: MessageId,
        /// The template sent by this call, if any.
        template: Option<TemplateSent>,
        /// Why the message could not go now.
        reason: RefusalReason,
        /// The window's state at the decision.
        state: WindowState,
        /// Queued messages of this conversation (this one included) that this call
        /// delivered because a reply reopened the window while it was queueing; usually
        /// empty.
        delivered: Vec<Delivered>,
        /// Queued messages this call found expired while delivering; usually empty.
        expired: Vec<ExpiredMessage>,
    },
    /// The window was closed and the policy is to reject: the message was not delivered.
    /// Nothing was sent unless `refused_by_gateway` says the message itself went and the
    /// gateway refused it.
    Rejected {
        /// The message's `messageId`.
        message_id: MessageId,
        /// Why.
        reason: RefusalReason,
        /// The window's state at the decision, including when it closed.
        state: WindowState,
        /// Whether the message was sent, under this `messageId`, and refused by the gateway
        /// as outside the window (WhatsApp 131047): a request did leave. `false` when the
        /// window was known to be closed and nothing was sent.
        refused_by_gateway: bool,
    },
    /// Consent or a limit withheld the template the closed-window choice would send
    /// (a marketing template to a customer who opted out or inside a 131049 back-off, or
    /// any template beyond the portfolio's messaging limit under a policy that does not
    /// queue): nothing reached the gateway, unless `refused_by_gateway` says the gateway
    /// itself answered 131049 / 131050 (now recorded). Shown as `rejected`.
    Withheld {
        /// The message's `messageId`.
        message_id: MessageId,
        /// Why.
        reason: Withholding,
        /// The window's state at the decision.
        state: WindowState,
        /// The template's predicted cost, had it gone.
        pricing: Box<Pricing>,
        /// Whether the gateway refused the template (131049 / 131050).
        refused_by_gateway: bool,
    },
    /// This `messageId` was already sent, rerouted or queued: nothing was sent again.
    Duplicate(PreviousOutcome),
}

impl SendOutcome {
    /// `sent`, `rerouted`, `queued`, `rejected`, or for a duplicate the earlier outcome's
    /// name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sent { .. } => "sent",
            Self::Rerouted { .. } => "rerouted",
            Self::Queued { .. } => "queued",
            Self::Rejected { .. } | Self::Withheld { .. } => "rejected",
            Self::Duplicate(previous) => previous.kind.name(),
        }
    }

    /// The free-form message's `messageId`.
    pub fn message_id(&self) -> MessageId {
        match self {
            Self::Sent { message_id, .. }
            | Self::Rerouted { message_id, .. }
            | Self::Queued { message_id, .. }
            | Self::Rejected { message_id, .. }
            | Self::Withheld { message_id, .. } => *message_id,
            Self::Duplicate(previous) => previous.message_id,
        }
    }

    /// What this call's message is predicted to cost: the free-form message sent, or the
    /// template sent or withheld. `None` when nothing went (or would have) by this call.
    pub fn pricing(&self) -> Option<&Pricing> {
        match self {
            Self::Sent { pricing, .. } | Self::Withheld { pricing, .. } => Some(pricing.as_ref()),
            Self::Rerouted { template, .. } | Self::Queued { template, .. } => {
                template.as_ref().map(|t| t.pricing.as_ref())
            }
            _ => None,
        }
    }

    /// The template sent by this call, if any.
    pub fn template(&self) -> Option<&TemplateSent> {
        match self {
            Self::Rerouted { template, .. } | Self::Queued { template, .. } => template.as_ref(),
            _ => None,
        }
    }
}

/// The kinds of outcome that are remembered per `messageId`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OutcomeKind {
    /// Sent at once.
    Sent,
    /// Replaced by a template.
    Rerouted,
    /// Waiting in the outbox.
    Queued,
    /// Queued, then delivered after the customer's reply.
    Delivered,
    /// Queued, then expired undelivered.
    Expired,
    /// Sent, then refused by the gateway as outside the window, with the policy to reject.
    Refused,
}

impl OutcomeKind {
    /// The outcome's name as [`SendOutcome::name`] gives it (`delivered` counts as `sent`,
    /// `expired` as `rejected`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Sent | Self::Delivered => "sent",
            Self::Rerouted => "rerouted",
            Self::Queued => "queued",
            Self::Expired | Self::Refused => "rejected",
        }
    }
}

/// The outcome remembered for a `messageId`, returned for a repeated send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousOutcome {
    /// What happened.
    pub kind: OutcomeKind,
    /// The free-form message's `messageId`.
    pub message_id: MessageId,
    /// The WhatsApp id of what was sent, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
    /// The template sent with it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_message_id: Option<MessageId>,
    /// When this outcome was recorded.
    #[serde(serialize_with = "rfc3339")]
    pub at: DateTime<Utc>,
    /// The message, kept (unless the policy rejects) so that a later gateway refusal can
    /// re-apply the policy to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<FreeFormMessage>,
}

/// Writes a time exactly as chrono's own `Serialize` does (RFC 3339, `Z`, as many digits
/// of the second's fraction as it needs), but formatted once into a string: chrono hands
/// serde_json a `Display` to collect, which it escapes character by character, and every
/// send naming its `messageId` stores an outcome with its time.
fn rfc3339<S: serde::Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

impl PreviousOutcome {
    /// An outcome of `kind` for the send under `message_id`, recorded `at`, with nothing
    /// else known.
    fn bare(kind: OutcomeKind, message_id: MessageId, at: DateTime<Utc>) -> Self {
        Self {
            kind,
            message_id,
            wa_id: None,
            template_message_id: None,
            at,
            message: None,
        }
    }

    /// Sent at once under `message_id` as WhatsApp's `wa_id`; `message` is the copy kept
    /// for a later refusal to re-apply the policy to (`None` under a reject policy).
    pub(crate) fn sent(
        message_id: MessageId,
        wa_id: Option<String>,
        message: Option<FreeFormMessage>,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            wa_id,
            message,
            ..Self::bare(OutcomeKind::Sent, message_id, at)
        }
    }

    /// Delivered from the outbox under `message_id` as WhatsApp's `wa_id`, with its copy.
    /// A template sent on its own under `message_id` (its own id) as WhatsApp's `wa_id`.
    pub(crate) fn template_sent(
        message_id: MessageId,
        wa_id: Option<String>,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            wa_id,
            template_message_id: Some(message_id),
            ..Self::bare(OutcomeKind::Sent, message_id, at)
        }
    }

    pub(crate) fn delivered(
        message_id: MessageId,
        wa_id: Option<String>,
        message: FreeFormMessage,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            wa_id,
            message: Some(message),
            ..Self::bare(OutcomeKind::Delivered, message_id, at)
        }
    }

    /// Sent under `message_id` (as WhatsApp's `wa_id`, when known) and refused by the
    /// gateway as outside the window, under a reject policy.
    pub(crate) fn refused(message_id: MessageId, wa_id: Option<String>, at: DateTime<Utc>) -> Self {
        Self {
            wa_id,
            ..Self::bare(OutcomeKind::Refused, message_id, at)
        }
    }

    /// Rerouted to a template: `template` is the one this call sent, if any.
    pub(crate) fn rerouted(
        message_id: MessageId,
        template: Option<&TemplateSent>,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            wa_id: template.and_then(|t| t.receipt.wa_id.clone()),
            template_message_id: template.map(|t| t.message_id),
            ..Self::bare(OutcomeKind::Rerouted, message_id, at)
        }
    }

    /// Waiting in the outbox under `queued_id`; `template` is the invitation's
    /// `messageId`, when this call sent one.
    pub(crate) fn queued(
        queued_id: MessageId,
        template: Option<MessageId>,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            template_message_id: template,
            ..Self::bare(OutcomeKind::Queued, queued_id, at)
        }
    }

    /// Expired in the outbox, undelivered, where it waited under `queued_id`.
    pub(crate) fn expired(queued_id: MessageId, at: DateTime<Utc>) -> Self {
        Self::bare(OutcomeKind::Expired, queued_id, at)
    }

    /// Whether this is a send the gateway accepted (sent at once, or delivered from the
    /// outbox): the only kind a later window-closed report can concern.
    pub(crate) fn reached_the_gateway(&self) -> bool {
        matches!(self.kind, OutcomeKind::Sent | OutcomeKind::Delivered)
    }
}

/// A queued message that went out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Its `messageId` (the one given when queued, unless a gateway refusal reassigned it).
    pub message_id: MessageId,
    /// The gateway's receipt.
    pub receipt: Receipt,
    /// When it was queued.
    pub queued_at: DateTime<Utc>,
    /// What it is predicted to cost (a service message, sent inside the window).
    pub pricing: Box<Pricing>,
}

/// A queued message whose time to live ran out before the customer replied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredMessage {
    /// The conversation.
    pub conversation: Conversation,
    /// Its `messageId`.
    pub message_id: MessageId,
    /// When it was queued.
    pub queued_at: DateTime<Utc>,
    /// The message (`None` if its stored form could not be read).
    pub message: Option<FreeFormMessage>,
}

/// A queued message that the gateway refused for a reason other than the window, or
/// whose stored form could not be read: it was taken out of the outbox.
#[derive(Debug)]
pub struct FailedMessage {
    /// Its `messageId`.
    pub message_id: MessageId,
    /// What went wrong.
    pub error: String,
}

/// Why a delivery run stopped with messages still queued.
#[derive(Debug)]
#[non_exhaustive]
pub enum DeliveryStop {
    /// The window is not open (or closes within the margin).
    WindowNotOpen(RefusalReason),
    /// Another replica holds the claim on the next message.
    ClaimedElsewhere(MessageId),
    /// The gateway refused the next message as outside the window (131047); it stays
    /// queued with a fresh `messageId`.
    GatewayClosedWindow,
    /// The conversation has no phone number (a user known only by a business-scoped user
    /// id, or a group): nothing can be sent to it. Its messages stay queued, and move
    /// with it when the user's phone number becomes known.
    NotAddressable,
    /// A send failed for a reason other than the message itself (an outage, a wrong key,
    /// an unexplained refusal); the message stays queued.
    SendFailed(lipachat_api::ApiError),
    /// The store failed while the outbox was read or updated, right after an inbound
    /// message was recorded; the messages stay queued for the next run (`remaining` is
    /// not known then and reads 0). The inbound message itself is recorded.
    StoreFailed(lipachat_session::StoreError),
    /// The next message is of a kind a later release queued and this one cannot send: it
    /// stays queued, in its place, for a replica that knows the kind.
    UnknownKind {
        /// Its `messageId`.
        message_id: MessageId,
        /// The stored kind name (shortened to 64 characters).
        kind: String,
    },
}

/// What one delivery run over a conversation's outbox did.
#[derive(Debug, Default)]
pub struct DeliveryReport {
    /// Messages sent, in order.
    pub delivered: Vec<Delivered>,
    /// Messages that expired (reported, never silently dropped).
    pub expired: Vec<ExpiredMessage>,
    /// Messages taken out because they can never be sent.
    pub failed: Vec<FailedMessage>,
    /// Messages still queued.
    pub remaining: usize,
    /// Why the run stopped early, if it did.
    pub stopped: Option<DeliveryStop>,
}

/// What [`Messenger::on_inbound_once`](crate::Messenger::on_inbound_once) did.
#[derive(Debug)]
#[non_exhaustive]
pub enum InboundHandled {
    /// The first copy of the message: recorded, and the outbox delivered.
    First(InboundReport),
    /// A redelivered copy: nothing recorded; do not answer it again.
    Duplicate {
        /// When the first copy was received.
        first_received_at: DateTime<Utc>,
        /// The delivery of queued messages it ran (usually empty).
        delivery: DeliveryReport,
    },
}

/// What [`crate::Messenger::on_inbound`] did.
#[derive(Debug)]
pub struct InboundReport {
    /// The conversation the message was recorded in (for a message from a user known by
    /// a business-scoped user id, the phone's conversation once an alias names it).
    pub conversation: Conversation,
    /// The recorded inbound message.
    pub recorded: Recorded,
    /// The delivery of queued messages it triggered.
    pub delivery: DeliveryReport,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Serialises `at` with chrono's own `Serialize`, as outcomes were stored before.
    fn by_chrono(at: DateTime<Utc>) -> String {
        serde_json::to_string(&at).unwrap()
    }

    fn by_outcome(at: DateTime<Utc>) -> String {
        let mut out = Vec::new();
        rfc3339(&at, &mut serde_json::Serializer::new(&mut out)).unwrap();
        String::from_utf8(out).unwrap()
    }

    proptest! {
        /// Every time chrono can hold, with every kind of fraction (none, milli, micro,
        /// nano, a leap second's), is written as chrono writes it.
        #[test]
        fn the_time_is_written_as_chrono_writes_it(
            seconds in -8_000_000_000_000_i64..8_000_000_000_000,
            nanos in prop_oneof![
                Just(0_u32),
                (0_u32..1_000).prop_map(|n| n * 1_000_000),
                (0_u32..1_000_000).prop_map(|n| n * 1_000),
                0_u32..2_000_000_000,
            ],
        ) {
            if let Some(at) = DateTime::from_timestamp(seconds, nanos) {
                prop_assert_eq!(by_outcome(at), by_chrono(at));
            }
        }
    }

    #[test]
    fn a_stored_outcome_reads_back() {
        let at = DateTime::from_timestamp(1_764_644_000, 123_000_000).unwrap();
        let outcome = PreviousOutcome::bare(OutcomeKind::Sent, MessageId::new(), at);
        let text = serde_json::to_string(&outcome).unwrap();
        assert!(
            text.contains(r#""at":"2025-12-02T02:53:20.123Z""#),
            "{text}"
        );
        let back: PreviousOutcome = serde_json::from_str(&text).unwrap();
        assert_eq!(back, outcome);
    }
}
