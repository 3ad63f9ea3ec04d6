//! The caller-chosen id the gateway tracks and deduplicates a message by: one type from
//! the send call through the stores, the webhook events and the outcomes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::InboundId;
use crate::uuid_v5::uuid_v5;

/// The UUID namespace of reply ids ([`MessageId::reply_to`]); fixed, so ids are the same
/// across processes and releases.
const REPLY_NAMESPACE: Uuid = Uuid::from_u128(0x6c69_7061_6368_6174_2d72_6570_6c79_3031);

/// The `messageId` of one logical send: a UUID, v7 (time-ordered) when made by
/// [`MessageId::new`].
///
/// The gateway deduplicates by it, so every retry of one send carries the same id, and a
/// caller that stores a message before sending it (an outbox) should store its id with it.
/// The stores keep queued messages, invitations and send outcomes under it, and a status
/// webhook names it as this type, so it never changes type along the send path.
///
/// ```
/// use lipachat_session::MessageId;
///
/// let id: MessageId = "ca739107-4b0d-4581-acb1-4c4af70555de".parse()?;
/// assert_eq!(id.to_string(), "ca739107-4b0d-4581-acb1-4c4af70555de");
/// assert_eq!(serde_json::to_string(&id)?, "\"ca739107-4b0d-4581-acb1-4c4af70555de\"");
/// assert_ne!(MessageId::new(), MessageId::new());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(Uuid);

impl MessageId {
    /// A new id: a UUID v7, whose first 48 bits are the Unix time in milliseconds and
    /// whose other 74 are random (as unique as a v4's 122 for any two ids made in the
    /// same millisecond).
    ///
    /// Time-ordered so that what a store keeps under the ids a sender makes lands
    /// together: the sled store keys send outcomes by conversation then `messageId`, and
    /// with random ids every outcome written (and every duplicate check before it) read
    /// in a different leaf of that tree, most of them no longer in sled's cache.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        let random = Uuid::new_v4().into_bytes();
        let mut tail = [0u8; 10];
        tail.copy_from_slice(&random[6..]);
        Self(uuid::Builder::from_unix_timestamp_millis(millis, &tail).into_uuid())
    }

    /// Wraps an existing UUID (any version).
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The `messageId` derived from the name made of `parts` joined end to end, under
    /// `namespace`: a version 5 UUID (RFC 9562), the same as `Uuid::new_v5(namespace,
    /// name)`, so the same every time, in every process and release.
    ///
    /// For a sender that keys its messages by its own ids (an order number, a ticket)
    /// and wants every retry of one message to carry one `messageId`, which the gateway
    /// deduplicates by. Pick one namespace of your own (any fixed UUID) for them.
    ///
    /// ```
    /// use lipachat_session::MessageId;
    /// use uuid::Uuid;
    ///
    /// const ORDERS: Uuid = Uuid::from_u128(0x0b5e_55ed_0000_4000_8000_0000_0000_0001);
    /// let shipped = MessageId::derived(ORDERS, &[b"order:", b"A-1042", b":shipped"]);
    /// assert_eq!(shipped, MessageId::derived(ORDERS, &[b"order:A-1042:shipped"]));
    /// assert_ne!(shipped, MessageId::derived(ORDERS, &[b"order:A-1043:shipped"]));
    /// assert_eq!(shipped.as_uuid().get_version_num(), 5);
    /// ```
    pub fn derived(namespace: Uuid, parts: &[&[u8]]) -> Self {
        Self(uuid_v5(&namespace, parts))
    }

    /// The `messageId` of the bot's reply to the inbound message `inbound`: a v5 UUID
    /// derived from the id, the same every time, so a reply made again (a webhook
    /// redelivered after the redelivery memory forgot it, a handler retried after a
    /// crash) carries the same `messageId` and the gateway can deduplicate it.
    ///
    /// The gateway documents `messageId` as used for deduplication; over what span it
    /// deduplicates is not published. For several replies to one message, number them with
    /// [`MessageId::reply_to_nth`] (`reply_to` is the 0th).
    ///
    /// ```
    /// use lipachat_session::{InboundId, MessageId};
    ///
    /// let inbound = InboundId::new("wamid.HBgMMjU0NzEyMzQ1Njc4FQIAEhgUM0E")?;
    /// assert_eq!(MessageId::reply_to(&inbound), MessageId::reply_to(&inbound));
    /// assert_eq!(MessageId::reply_to(&inbound), MessageId::reply_to_nth(&inbound, 0));
    /// assert_ne!(MessageId::reply_to(&inbound), MessageId::reply_to_nth(&inbound, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reply_to(inbound: &InboundId) -> Self {
        Self::reply_to_nth(inbound, 0)
    }

    /// The `messageId` of the bot's `n`th reply (from 0) to the inbound message `inbound`;
    /// see [`MessageId::reply_to`].
    pub fn reply_to_nth(inbound: &InboundId, n: u32) -> Self {
        let n = n.to_string();
        Self::derived(
            REPLY_NAMESPACE,
            &[b"reply:", n.as_bytes(), b":", inbound.as_str().as_bytes()],
        )
    }

    /// The UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// The UUID's 16 bytes, as a store keys it.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// The id whose UUID bytes are `bytes`.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Uuid::from_bytes(bytes))
    }

    /// The id in the first 16 bytes of `bytes`, as a store keys it; `None` when there are
    /// fewer.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        Some(Self::from_bytes(bytes.get(..16)?.try_into().ok()?))
    }
}

impl From<Uuid> for MessageId {
    fn from(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", self.0.hyphenated())
    }
}

impl FromStr for MessageId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim()).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_ids_are_stable_across_releases() {
        // A reply made by this release and one made again by a later release after a
        // redelivery must carry the same messageId: the derivation is frozen.
        let inbound = InboundId::new("wamid.HBgMMjU0NzEyMzQ1Njc4FQIAEhgUM0E").unwrap();
        assert_eq!(
            MessageId::reply_to(&inbound).to_string(),
            "23584583-5121-5682-826e-e05a8f69f861"
        );
        assert_eq!(MessageId::reply_to(&inbound).as_uuid().get_version_num(), 5);
        let other = InboundId::new("wamid.HBgMMjU0NzEyMzQ1Njc4FQIAEhgUM0F").unwrap();
        assert_ne!(MessageId::reply_to(&inbound), MessageId::reply_to(&other));
        assert_ne!(
            MessageId::reply_to_nth(&inbound, 1),
            MessageId::reply_to_nth(&inbound, 2)
        );
    }

    #[test]
    fn new_is_time_ordered_v7_and_round_trips() {
        let id = MessageId::new();
        assert_eq!(id.as_uuid().get_version_num(), 7);
        assert_eq!(id.as_uuid().get_variant(), uuid::Variant::RFC4122);
        // Ids made a millisecond apart sort in the order they were made; ids made in the
        // same millisecond differ all the same.
        let earlier = MessageId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later = MessageId::new();
        assert!(earlier.as_bytes() < later.as_bytes());
        let many: std::collections::HashSet<MessageId> =
            (0..1_000).map(|_| MessageId::new()).collect();
        assert_eq!(many.len(), 1_000);
        assert_eq!(id.to_string().parse::<MessageId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<MessageId>(&json).unwrap(), id);
        assert!("not-a-uuid".parse::<MessageId>().is_err());
        assert!(serde_json::from_str::<MessageId>("42").is_err());
    }
}
