//! The on-disk encoding (schema version 1): fixed-width big-endian binary.
//!
//! | tree          | key                                   | value                                        |
//! |---------------|---------------------------------------|----------------------------------------------|
//! | `windows`     | business u64 ‖ customer u64 (16 B)    | last inbound ms i64 (8 B) [‖ closed ms i64]  |
//! | `outbox`      | conversation (16 B) ‖ sequence u64    | messageId (16 B) ‖ queued ms i64 ‖ payload   |
//! | `invitations` | conversation (16 B)                   | messageId (16 B) ‖ sent ms i64               |
//! | `outcomes`    | conversation (16 B) ‖ messageId (16 B)| outcome JSON text                            |
//! | default tree  | `schema_version`                      | u32                                          |
//! | default tree  | `integrity_mark`                      | u64, the checkpoint mark (`integrity`)       |

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::store::{Invitation, QueuedMessage};
use crate::window::to_millis;
use crate::{Conversation, WindowRecord};

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;
/// The default tree's key holding the schema version.
pub const SCHEMA_KEY: &[u8] = b"schema_version";

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
    let message_id = Uuid::from_slice(&bytes[..16]).map_err(|e| e.to_string())?;
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
        message_id: Uuid::from_slice(&bytes[..16]).map_err(|e| e.to_string())?,
        sent_at: read_time(&bytes[16..], "invitation sent at")?,
    })
}

/// The outcome key: conversation then messageId, so erasure is a prefix removal.
pub fn outcome_key(conversation: Conversation, message_id: Uuid) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(&conversation.to_key());
    key[16..].copy_from_slice(message_id.as_bytes());
    key
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
            message_id: Uuid::new_v4(),
            queued_at: at,
            payload: "{\"a\":1}".into(),
        };
        assert_eq!(decode_queued(&encode_queued(&q)).unwrap(), q);
        assert!(decode_queued(&[0u8; 10]).is_err());
        let i = Invitation {
            message_id: Uuid::new_v4(),
            sent_at: at,
        };
        assert_eq!(decode_invitation(&encode_invitation(&i)).unwrap(), i);
        assert!(decode_invitation(&[0u8; 23]).is_err());
    }
}
