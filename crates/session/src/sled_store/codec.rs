//! The on-disk encoding (schema version 2): fixed-width big-endian binary. Version 2
//! changed only the redelivery memory's layout (see `seen`); a version 1 store is moved
//! to it at open.
//!
//! | tree          | key                                   | value                                        |
//! |---------------|---------------------------------------|----------------------------------------------|
//! | `windows`     | business u64 ‖ customer u64 (16 B)    | last inbound ms i64 (8 B) [‖ closed ms i64]  |
//! | `outbox`      | conversation (16 B) ‖ sequence u64    | messageId (16 B) ‖ queued ms i64 ‖ payload   |
//! | `invitations` | conversation (16 B)                   | messageId (16 B) ‖ sent ms i64               |
//! | `outcomes`    | conversation (16 B) ‖ messageId (16 B)| 0xFF ‖ expires ms u64 ‖ wa id length u16 ‖ wa id ‖ outcome JSON text (an outcome written before outcomes expired: the JSON text alone) |
//! | default tree  | `schema_version`                      | u32                                          |
//! | default tree  | `integrity_mark`                      | u64, the checkpoint mark (`integrity`)       |

use chrono::{DateTime, Utc};

use crate::store::{Invitation, QueuedMessage};
use crate::window::to_millis;
use crate::{Conversation, MessageId, WindowRecord};

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 3;
/// The default tree's key holding the schema version.
pub const SCHEMA_KEY: &[u8] = b"schema_version";
/// The default tree's key the health check writes (the time of its last write, epoch
/// milliseconds, big-endian); read by nothing.
pub const HEALTH_KEY: &[u8] = b"health_check";

fn read_i64(bytes: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(bytes.try_into().ok()?))
}

fn read_time(bytes: &[u8], what: &str) -> Result<DateTime<Utc>, String> {
    let millis = read_i64(bytes).ok_or_else(|| format!("{what}: expected 8 bytes"))?;
    DateTime::from_timestamp_millis(millis)
        .ok_or_else(|| format!("{what}: {millis} ms is out of range"))
}

/// Encodes a window record: 8 bytes, or 16 when a gateway closure is in force.
pub fn encode_window(record: &WindowRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&to_millis(record.last_inbound).to_be_bytes());
    if let Some(closed) = record.gateway_closed_at {
        out.extend_from_slice(&to_millis(closed).to_be_bytes());
    }
    out
}

/// Decodes a window record, naming what is wrong with a corrupt value.
pub fn decode_window(bytes: &[u8]) -> Result<WindowRecord, String> {
    match bytes.len() {
        8 => Ok(WindowRecord::inbound(read_time(bytes, "last inbound")?)),
        16 => Ok(WindowRecord {
            last_inbound: read_time(&bytes[..8], "last inbound")?,
            gateway_closed_at: Some(read_time(&bytes[8..], "gateway closure")?),
        }),
        n => Err(format!("expected 8 or 16 bytes, found {n}")),
    }
}

/// The outbox key of a queued message: conversation then a sequence number.
pub fn outbox_key(conversation: Conversation, sequence: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(&conversation.to_key());
    key[16..].copy_from_slice(&sequence.to_be_bytes());
    key
}

/// Encodes a queued message.
pub fn encode_queued(message: &QueuedMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + message.payload.len());
    out.extend_from_slice(message.message_id.as_bytes());
    out.extend_from_slice(&to_millis(message.queued_at).to_be_bytes());
    out.extend_from_slice(message.payload.as_bytes());
    out
}

/// Decodes a queued message.
pub fn decode_queued(bytes: &[u8]) -> Result<QueuedMessage, String> {
    if bytes.len() < 24 {
        return Err(format!(
            "queued message: expected at least 24 bytes, found {}",
            bytes.len()
        ));
    }
    let message_id = MessageId::from_slice(bytes).ok_or("queued message: no messageId")?;
    let queued_at = read_time(&bytes[16..24], "queued at")?;
    let payload = std::str::from_utf8(&bytes[24..])
        .map_err(|e| format!("queued message payload: {e}"))?
        .to_owned();
    Ok(QueuedMessage {
        message_id,
        queued_at,
        payload,
    })
}

/// Encodes an invitation.
pub fn encode_invitation(invitation: &Invitation) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..16].copy_from_slice(invitation.message_id.as_bytes());
    out[16..].copy_from_slice(&to_millis(invitation.sent_at).to_be_bytes());
    out
}

/// Decodes an invitation.
pub fn decode_invitation(bytes: &[u8]) -> Result<Invitation, String> {
    if bytes.len() != 24 {
        return Err(format!(
            "invitation: expected 24 bytes, found {}",
            bytes.len()
        ));
    }
    Ok(Invitation {
        message_id: MessageId::from_slice(bytes).ok_or("invitation: no messageId")?,
        sent_at: read_time(&bytes[16..], "invitation sent at")?,
    })
}

/// The outcome key: conversation then messageId, so erasure is a prefix removal.
pub fn outcome_key(conversation: Conversation, message_id: MessageId) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(&conversation.to_key());
    key[16..].copy_from_slice(message_id.as_bytes());
    key
}

/// The first byte of an outcome value that carries its expiry (never the first byte of
/// UTF-8 text, so an outcome written before expiry existed, plain JSON text, is told
/// apart, and a build that predates expiry reads this one as corrupt rather than as
/// something else).
const OUTCOME_TAG: u8 = 0xFF;
/// An outcome value, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutcomeValue<'a> {
    /// When it expires, ms since the epoch (`None`: written before outcomes expired).
    pub expires_ms: Option<u64>,
    /// The indexed WhatsApp id.
    pub wa_id: Option<&'a str>,
    /// The outcome text.
    pub text: &'a str,
}

/// Encodes an outcome value. `wa_id` is at most `MAX_WA_ID_BYTES` long.
pub fn encode_outcome(expires_ms: u64, wa_id: Option<&str>, text: &str) -> Vec<u8> {
    let wa_id = wa_id.unwrap_or_default().as_bytes();
    let wa_len = u16::try_from(wa_id.len()).unwrap_or(0);
    let wa_id = &wa_id[..usize::from(wa_len)];
    let mut out = Vec::with_capacity(11 + wa_id.len() + text.len());
    out.push(OUTCOME_TAG);
    out.extend_from_slice(&expires_ms.to_be_bytes());
    out.extend_from_slice(&wa_len.to_be_bytes());
    out.extend_from_slice(wa_id);
    out.extend_from_slice(text.as_bytes());
    out
}

/// Decodes an outcome value, naming what is wrong with a corrupt one.
pub fn decode_outcome(bytes: &[u8]) -> Result<OutcomeValue<'_>, String> {
    let text = |bytes| std::str::from_utf8(bytes).map_err(|e| format!("outcome text: {e}"));
    let Some(rest) = bytes.strip_prefix(&[OUTCOME_TAG]) else {
        return Ok(OutcomeValue {
            expires_ms: None,
            wa_id: None,
            text: text(bytes)?,
        });
    };
    let short = || format!("outcome: {} bytes is too short", bytes.len());
    let expires_ms = u64::from_be_bytes(
        rest.get(..8)
            .ok_or_else(short)?
            .try_into()
            .map_err(|_| short())?,
    );
    let wa_len = usize::from(u16::from_be_bytes(
        rest.get(8..10)
            .ok_or_else(short)?
            .try_into()
            .map_err(|_| short())?,
    ));
    let wa_id = rest.get(10..10 + wa_len).ok_or_else(short)?;
    let wa_id = std::str::from_utf8(wa_id).map_err(|e| format!("outcome wa id: {e}"))?;
    Ok(OutcomeValue {
        expires_ms: Some(expires_ms),
        wa_id: (!wa_id.is_empty()).then_some(wa_id),
        text: text(&rest[10 + wa_len..])?,
    })
}

/// Reads an outcome key: the conversation and the `messageId`.
pub fn parse_outcome_key(key: &[u8]) -> Option<(Conversation, MessageId)> {
    if key.len() != 32 {
        return None;
    }
    Some((
        Conversation::from_key(&key[..16])?,
        MessageId::from_slice(&key[16..])?,
    ))
}

/// Whether an outcome value carries its expiry (one written before outcomes expired
/// does not).
#[cfg(test)]
pub fn outcome_has_expiry(value: &[u8]) -> bool {
    value.first() == Some(&OUTCOME_TAG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_round_trip_and_corruption() {
        let at: DateTime<Utc> = "2026-11-23T10:00:00.123Z".parse().unwrap();
        let plain = WindowRecord::inbound(at);
        assert_eq!(encode_window(&plain).len(), 8);
        assert_eq!(decode_window(&encode_window(&plain)).unwrap(), plain);
        let closed = plain.with_gateway_closure(at);
        assert_eq!(decode_window(&encode_window(&closed)).unwrap(), closed);
        assert!(decode_window(b"abc").unwrap_err().contains("found 3"));
        assert!(
            decode_window(&i64::MAX.to_be_bytes())
                .unwrap_err()
                .contains("out of range")
        );
    }

    #[test]
    fn queued_and_invitation_round_trip() {
        let at: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let q = QueuedMessage {
            message_id: MessageId::new(),
            queued_at: at,
            payload: "{\"a\":1}".into(),
        };
        assert_eq!(decode_queued(&encode_queued(&q)).unwrap(), q);
        assert!(decode_queued(&[0u8; 10]).is_err());
        let i = Invitation {
            message_id: MessageId::new(),
            sent_at: at,
        };
        assert_eq!(decode_invitation(&encode_invitation(&i)).unwrap(), i);
        assert!(decode_invitation(&[0u8; 23]).is_err());
    }

    #[test]
    fn outcome_values_and_keys() {
        let value = encode_outcome(1_800_000_000_000, Some("wamid.ü"), "{\"kind\":\"sent\"}");
        assert_eq!(
            decode_outcome(&value).unwrap(),
            OutcomeValue {
                expires_ms: Some(1_800_000_000_000),
                wa_id: Some("wamid.ü"),
                text: "{\"kind\":\"sent\"}",
            }
        );
        let bare = encode_outcome(7, None, "");
        assert_eq!(decode_outcome(&bare).unwrap().wa_id, None);
        assert_eq!(decode_outcome(&bare).unwrap().text, "");
        // An outcome written before expiry existed is its text alone.
        let legacy = decode_outcome(b"{\"kind\":\"queued\"}").unwrap();
        assert_eq!(legacy.expires_ms, None);
        assert_eq!(legacy.text, "{\"kind\":\"queued\"}");
        for bad in [&value[..5], &value[..12], &[0xFF, 0, 0][..], &[0xC3][..]] {
            assert!(decode_outcome(bad).is_err(), "{bad:?}");
        }
        let chat = Conversation::parse("254110090747", "254712345678").unwrap();
        let id = MessageId::new();
        assert_eq!(parse_outcome_key(&outcome_key(chat, id)), Some((chat, id)));
        assert_eq!(parse_outcome_key(&outcome_key(chat, id)[..31]), None);
        assert!(outcome_has_expiry(&value) && !outcome_has_expiry(b"{}"));
    }
}
