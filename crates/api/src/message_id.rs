//! The caller-chosen id the gateway tracks and deduplicates a message by.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The `messageId` of one logical send: a UUID, v4 when made by [`MessageId::new`].
///
/// The gateway deduplicates by it, so every retry of one send carries the same id, and a
/// caller that stores a message before sending it (an outbox) should store its id with it.
///
/// ```
/// use lipachat_api::MessageId;
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
    /// A new random (v4) id.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    /// Wraps an existing UUID (any version).
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
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
    fn new_is_v4_and_round_trips() {
        let id = MessageId::new();
        assert_eq!(id.as_uuid().get_version_num(), 4);
        assert_eq!(id.to_string().parse::<MessageId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<MessageId>(&json).unwrap(), id);
        assert!("not-a-uuid".parse::<MessageId>().is_err());
        assert!(serde_json::from_str::<MessageId>("42").is_err());
    }
}
