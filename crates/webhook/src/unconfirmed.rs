//! Inbound messages whose recording failed with an unknown outcome.
//!
//! A store call can fail after it did its work: a Redis reply cut off after the script
//! ran, a sled flush that failed after the write. The webhook is then answered 503, and
//! the sender's retry finds the message already seen: without this memory the bot would
//! never get it. The service remembers each inbound message whose handling failed, and
//! hands it over when the retry comes back as a duplicate (once: the entry is taken).
//! The memory is this process's, bounded, and lost on restart: a retry that reaches
//! another replica, or comes after a restart, is still taken as a duplicate.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};

use lipachat_api::webhook::InboundMessage;

/// How many unconfirmed messages are remembered; the oldest is forgotten past it.
const CAPACITY: usize = 4096;

/// One inbound message, as the sender's retry names it: the business number and
/// WhatsApp's message id.
type InboundKey = (String, String);

/// Inbound messages whose handling failed, so their retry's "already seen" may be this
/// process's own lost answer (module docs).
#[derive(Debug, Default)]
pub(crate) struct UnconfirmedInbound {
    entries: Mutex<(HashSet<InboundKey>, VecDeque<InboundKey>)>,
}

impl UnconfirmedInbound {
    fn key(message: &InboundMessage) -> Option<InboundKey> {
        let id = message.message_id.as_deref().filter(|id| !id.is_empty())?;
        Some((message.business.to_string(), id.to_owned()))
    }

    /// Remembers that handling `message` failed: whether it was recorded is unknown.
    pub(crate) fn failed(&self, message: &InboundMessage) {
        let Some(key) = Self::key(message) else {
            return;
        };
        let mut guard = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (set, order) = &mut *guard;
        if set.insert(key.clone()) {
            order.push_back(key);
            while order.len() > CAPACITY {
                if let Some(oldest) = order.pop_front() {
                    set.remove(&oldest);
                }
            }
        }
    }

    /// Whether `message` was remembered as failed; forgets it either way, so a message
    /// is handed over once.
    pub(crate) fn take(&self, message: &InboundMessage) -> bool {
        let mut guard = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (set, order) = &mut *guard;
        // Every handed-over message asks: nothing is built while nothing failed.
        if set.is_empty() {
            return false;
        }
        let Some(key) = Self::key(message) else {
            return false;
        };
        if set.remove(&key) {
            order.retain(|entry| entry != &key);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str) -> InboundMessage {
        let body = format!(
            r#"{{"messageId":"{id}","from":"254712345678","to":"254110090747","type":"TEXT","text":"hi"}}"#
        );
        lipachat_api::webhook::WebhookParser::default()
            .parse(body.as_bytes(), chrono::Utc::now())
            .ok()
            .and_then(|events| events.into_iter().next())
            .and_then(|event| match event {
                lipachat_api::webhook::WebhookEvent::Inbound(message) => Some(*message),
                _ => None,
            })
            .expect("a LipaChat inbound text")
    }

    #[test]
    fn a_failed_message_is_taken_once() {
        let memory = UnconfirmedInbound::default();
        let failed = message("wamid.A");
        assert!(!memory.take(&failed));
        memory.failed(&failed);
        memory.failed(&failed);
        assert!(memory.take(&failed));
        assert!(!memory.take(&failed));
    }

    #[test]
    fn the_oldest_is_forgotten_past_the_capacity() {
        let memory = UnconfirmedInbound::default();
        for n in 0..=CAPACITY {
            memory.failed(&message(&format!("wamid.{n}")));
        }
        assert!(!memory.take(&message("wamid.0")));
        assert!(memory.take(&message("wamid.1")));
        assert!(memory.take(&message(&format!("wamid.{CAPACITY}"))));
    }
}
