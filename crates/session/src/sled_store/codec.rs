//! The on-disk encoding (schema version 4): fixed-width big-endian binary. Versions 2
//! and 3 changed only the redelivery memory's layout (see `seen`); version 4 only the
//! `windows` tree's (a 13-byte key and 6-byte times). An older store is moved to it at open.
//!
//! | tree          | key                                   | value                                        |
//! |---------------|---------------------------------------|----------------------------------------------|
//! | `windows`     | business × 2^50 + customer key (13 B) | last inbound ms i48 (6 B) [‖ closed ms i48]; a time beyond i48 keeps i64s (8 or 16 B) |
//! | `outbox`      | conversation (16 B) ‖ sequence u64    | messageId (16 B) ‖ queued ms i64 ‖ payload   |
//! | `invitations` | conversation (16 B)                   | messageId (16 B) ‖ sent ms i64               |
//! | `outcomes`    | conversation (16 B) ‖ messageId (16 B)| 0xFF ‖ expires ms u64 ‖ wa id length u16 ‖ wa id ‖ outcome JSON text (an outcome written before outcomes expired: the JSON text alone) |
//! | `outcomes`    | 0xFF ‖ batch number u64 (9 B)         | a journal batch (`outcome_journal`): 0x01 ‖ records of outcome key ‖ value length u32 ‖ value |
//! | default tree  | `schema_version`                      | u32                                          |
//! | default tree  | `integrity_mark`                      | u64, the checkpoint mark (`integrity`)       |

use chrono::{DateTime, Utc};

use crate::store::{Invitation, QueuedMessage};
use crate::window::to_millis;
use crate::{Conversation, MessageId, WindowRecord};

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 4;
/// The default tree's key holding the schema version.
pub const SCHEMA_KEY: &[u8] = b"schema_version";
/// The default tree's key the health check writes (the time of its last write, epoch
/// milliseconds, big-endian); read by nothing.
pub const HEALTH_KEY: &[u8] = b"health_check";

/// An 8-byte big-endian `i64`; `None` for any other length.
pub(super) fn read_i64(bytes: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(bytes.try_into().ok()?))
}

fn read_time(bytes: &[u8], what: &str) -> Result<DateTime<Utc>, String> {
    let millis = read_i64(bytes).ok_or_else(|| format!("{what}: expected 8 bytes"))?;
    DateTime::from_timestamp_millis(millis)
        .ok_or_else(|| format!("{what}: {millis} ms is out of range"))
}

/// The length of a `windows` key since schema version 4.
pub const WINDOW_KEY_LEN: usize = 13;
/// The length of a `windows` key before schema version 4 (`Conversation::to_key`).
pub const OLD_WINDOW_KEY_LEN: usize = 16;
/// Bits of a `windows` key below the business number: a customer key is below 2^50 (a
/// phone has at most 15 digits; user and group handles are keyed below 2^50 too).
const CUSTOMER_KEY_BITS: u32 = 50;

/// The `windows` key of a conversation (schema version 4): business × 2^50 + the
/// customer's key, the low 13 bytes of it big-endian. A business number is below 10^15,
/// so the value is below 2^100 and fits; the order is still business, then customer.
pub fn window_key(conversation: Conversation) -> [u8; WINDOW_KEY_LEN] {
    let packed = (u128::from(conversation.business.as_u64()) << CUSTOMER_KEY_BITS)
        | u128::from(conversation.customer.key());
    let bytes = packed.to_be_bytes();
    let mut key = [0u8; WINDOW_KEY_LEN];
    key.copy_from_slice(&bytes[16 - WINDOW_KEY_LEN..]);
    key
}

/// The conversation a `windows` key names, in this layout (13 bytes) or the one before
/// schema version 4 (16 bytes, `Conversation::to_key`); `None` when it names none.
pub fn parse_window_key(key: &[u8]) -> Option<Conversation> {
    match key.len() {
        WINDOW_KEY_LEN => {
            let mut bytes = [0u8; 16];
            bytes[16 - WINDOW_KEY_LEN..].copy_from_slice(key);
            let packed = u128::from_be_bytes(bytes);
            let business = u64::try_from(packed >> CUSTOMER_KEY_BITS).ok()?;
            let customer = (packed & ((1 << CUSTOMER_KEY_BITS) - 1)) as u64;
            let conversation = Conversation::with_customer(
                crate::PhoneNumber::from_u64(business)?,
                crate::Customer::from_key(customer)?,
            );
            // One spelling per conversation: a key that reads back as another is none.
            (window_key(conversation) == key).then_some(conversation)
        }
        OLD_WINDOW_KEY_LEN => Conversation::from_key(key),
        _ => None,
    }
}

/// The smallest and one past the largest time a 6-byte (i48) field holds, in ms: about
/// 4,459 years either side of 1970.
const I48_MIN: i64 = -(1 << 47);
const I48_END: i64 = 1 << 47;

/// Encodes a window record: 6 bytes, or 12 when a gateway closure is in force; a time
/// outside the 6-byte range (more than about 4,459 years from 1970, which chrono can
/// hold) makes it 8 or 16 bytes, as before schema version 4.
pub fn encode_window(record: &WindowRecord) -> Vec<u8> {
    let last = to_millis(record.last_inbound);
    let closed = record.gateway_closed_at.map(to_millis);
    let fits = |ms: i64| (I48_MIN..I48_END).contains(&ms);
    let width = if fits(last) && closed.is_none_or(fits) {
        6
    } else {
        8
    };
    let mut out = Vec::with_capacity(2 * width);
    for ms in std::iter::once(last).chain(closed) {
        out.extend_from_slice(&ms.to_be_bytes()[8 - width..]);
    }
    out
}

/// Reads a time of `bytes.len()` (6 or 8) bytes, big-endian, signed.
fn read_time_of_width(bytes: &[u8], what: &str) -> Result<DateTime<Utc>, String> {
    let millis = match bytes.len() {
        6 => {
            let mut wide = [if bytes[0] & 0x80 == 0 { 0 } else { 0xFF }; 8];
            wide[2..].copy_from_slice(bytes);
            i64::from_be_bytes(wide)
        }
        _ => read_i64(bytes).ok_or_else(|| format!("{what}: expected 8 bytes"))?,
    };
    DateTime::from_timestamp_millis(millis)
        .ok_or_else(|| format!("{what}: {millis} ms is out of range"))
}

/// Decodes a window record (6 or 12 bytes; 8 or 16 as written before schema version 4
/// or for a time beyond the 6-byte range), naming what is wrong with a corrupt value.
pub fn decode_window(bytes: &[u8]) -> Result<WindowRecord, String> {
    let width = match bytes.len() {
        6 | 12 => 6,
        8 | 16 => 8,
        n => return Err(format!("expected 6, 8, 12 or 16 bytes, found {n}")),
    };
    Ok(WindowRecord {
        last_inbound: read_time_of_width(&bytes[..width], "last inbound")?,
        gateway_closed_at: (bytes.len() == 2 * width)
            .then(|| read_time_of_width(&bytes[width..], "gateway closure"))
            .transpose()?,
    })
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

/// The first byte of a batch entry's key, in the trees that keep records in batches
/// (`predicted_costs`, and the outcome journal's batches in `outcomes`): above the first
/// byte of any other key of those trees, which starts with a business number below 2^56.
pub const BATCH_TAG: u8 = 0xFF;

/// The key of batch `seq`: [`BATCH_TAG`] then the number, big-endian.
pub fn batch_key(seq: u64) -> [u8; 9] {
    let mut key = [BATCH_TAG; 9];
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The number of a batch key; `None` for any other key.
pub fn batch_seq(key: &[u8]) -> Option<u64> {
    match key {
        [BATCH_TAG, rest @ ..] => Some(u64::from_be_bytes(rest.try_into().ok()?)),
        _ => None,
    }
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

/// An outcome value's expiry (ms since the epoch), read without decoding the rest;
/// `None` for a value written before outcomes expired, or one cut short.
pub fn outcome_expiry(bytes: &[u8]) -> Option<u64> {
    let rest = bytes.strip_prefix(&[OUTCOME_TAG])?;
    Some(u64::from_be_bytes(*rest.first_chunk::<8>()?))
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
        assert_eq!(encode_window(&plain).len(), 6);
        assert_eq!(decode_window(&encode_window(&plain)).unwrap(), plain);
        let closed = plain.with_gateway_closure(at);
        assert_eq!(encode_window(&closed).len(), 12);
        assert_eq!(decode_window(&encode_window(&closed)).unwrap(), closed);
        // Times before the epoch, and at both ends of the 6-byte range.
        for ms in [-1, -86_400_000, I48_MIN, I48_END - 1] {
            let record = WindowRecord::inbound(crate::window::from_millis(ms));
            assert_eq!(encode_window(&record).len(), 6, "{ms}");
            assert_eq!(decode_window(&encode_window(&record)).unwrap(), record);
        }
        // Beyond it, 8-byte times, as before schema version 4.
        for ms in [I48_MIN - 1, I48_END] {
            let record = WindowRecord::inbound(crate::window::from_millis(ms));
            assert_eq!(encode_window(&record).len(), 8, "{ms}");
            assert_eq!(decode_window(&encode_window(&record)).unwrap(), record);
            let closed = record.with_gateway_closure(at);
            assert_eq!(encode_window(&closed).len(), 16);
            assert_eq!(decode_window(&encode_window(&closed)).unwrap(), closed);
        }
        // The values written before schema version 4 read as they did.
        let old: Vec<u8> = [at.timestamp_millis(), at.timestamp_millis() + 1]
            .iter()
            .flat_map(|ms| ms.to_be_bytes())
            .collect();
        assert_eq!(decode_window(&old[..8]).unwrap(), plain);
        assert_eq!(
            decode_window(&old).unwrap(),
            plain.with_gateway_closure(at + chrono::TimeDelta::milliseconds(1))
        );
        assert!(decode_window(b"abc").unwrap_err().contains("found 3"));
        assert!(
            decode_window(&i64::MAX.to_be_bytes())
                .unwrap_err()
                .contains("out of range")
        );
    }

    #[test]
    fn window_keys_keep_conversation_order_and_read_both_layouts() {
        use crate::{Customer, PhoneNumber};
        let phone = |n| PhoneNumber::from_u64(n).unwrap();
        let mut conversations = vec![
            Conversation::new(phone(254_110_090_747), phone(254_712_345_678)),
            Conversation::new(phone(254_110_090_747), phone(999_999_999_999_999)),
            Conversation::new(phone(999_999_999_999_999), phone(10_000_000)),
            Conversation::new(phone(10_000_000), phone(999_999_999_999_999)),
        ];
        for key in [1_000_000_000_000_000, (1 << 50) - 1] {
            if let Some(customer) = Customer::from_key(key) {
                conversations.push(Conversation::with_customer(
                    phone(254_110_090_747),
                    customer,
                ));
            }
        }
        assert!(conversations.len() > 4, "a user or group key is in range");
        for c in &conversations {
            assert_eq!(parse_window_key(&window_key(*c)), Some(*c), "{c}");
            assert_eq!(parse_window_key(&c.to_key()), Some(*c), "{c}");
        }
        let mut by_key = conversations.clone();
        by_key.sort_by_key(|c| window_key(*c));
        conversations.sort();
        assert_eq!(by_key, conversations);
        for bad in [&[0u8; 12][..], &[0xFF; 13], &[0; 13], &[1; 14], &[0xFF; 16]] {
            assert_eq!(parse_window_key(bad), None, "{bad:?}");
        }
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
        assert_eq!(outcome_expiry(&value), Some(1_800_000_000_000));
        assert_eq!(outcome_expiry(b"{}"), None);
        assert_eq!(outcome_expiry(&value[..8]), None);
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
