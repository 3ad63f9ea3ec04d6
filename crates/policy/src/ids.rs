//! The `messageId`s and claim ids the send path derives from another id (UUID v5), so
//! every retry of one logical send derives the same ones.

use lipachat_api::MessageId;
use lipachat_session::Conversation;
use uuid::Uuid;

/// Namespace of the `messageId`s derived from another id (UUID v5), so retries of one
/// logical send always derive the same ids.
const DERIVED_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c69_7061_6368_6174_2d70_6f6c_6963_7931);

/// The template `messageId` that goes with a free-form message's `messageId`: the same on
/// every retry of the logical send, so the gateway deduplicates a retried template.
pub fn template_message_id(message_id: MessageId) -> MessageId {
    derived(b"template", message_id.as_bytes())
}

/// The claim a call holds on a caller-given `messageId` while it sends (or handles a
/// report about) that message: one namespace, apart from the outbox's own claims.
pub(crate) fn send_claim_id(message_id: MessageId) -> MessageId {
    derived(b"send", message_id.as_bytes())
}

/// The claim held while one sender invites a conversation, across replicas.
pub(crate) fn invitation_claim_id(conversation: Conversation) -> MessageId {
    derived(b"invitation-lock", &conversation.to_key())
}

/// The `messageId` a message is queued under after the gateway refused it under
/// `refused` as outside the window (131047): never `refused` itself (the gateway may
/// remember it and drop a retry), and the same on every replay of that refusal (a
/// retried call, a redelivered report), so a replay finds the message already queued
/// instead of queueing a second copy under another id.
pub(crate) fn requeue_message_id(refused: MessageId) -> MessageId {
    derived(b"requeue", refused.as_bytes())
}

/// The key a window-closed report is kept under when it came before the send it names was
/// stored (by the WhatsApp id `wa_id` it names): the send whose answer carries that id
/// looks for it once its own outcome is stored.
pub(crate) fn early_report_id(wa_id: &str) -> MessageId {
    derived(b"early-report", wa_id.as_bytes())
}

fn derived(purpose: &[u8], from: &[u8]) -> MessageId {
    MessageId::derived(DERIVED_ID_NAMESPACE, &[purpose, b":", from])
}
