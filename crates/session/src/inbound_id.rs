//! The platform's id of an inbound message, by which a redelivered webhook is recognised.

use std::fmt;

/// The id the platform gave an inbound message: WhatsApp's `wamid.…`, or LipaChat's
/// `messageId`. WhatsApp redelivers webhooks (for days, out of order, sometimes twice);
/// the same id to the same business number is the same message.
///
/// Validated: 1 to [`InboundId::MAX_BYTES`] bytes once trimmed, no control characters.
///
/// ```
/// use lipachat_session::InboundId;
///
/// let id = InboundId::new("wamid.HBgMMjU0NzEyMzQ1Njc4FQIAEhgUM0E")?;
/// assert_eq!(id.as_str(), "wamid.HBgMMjU0NzEyMzQ1Njc4FQIAEhgUM0E");
/// assert!(InboundId::new("  ").is_err());
/// # Ok::<(), lipachat_session::InboundIdError>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InboundId(String);

/// Why a string is not an inbound message id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InboundIdError {
    /// Nothing but white space.
    #[error("inbound message id is empty")]
    Empty,
    /// Longer than [`InboundId::MAX_BYTES`].
    #[error(
        "inbound message id has {bytes} bytes; at most {} are allowed",
        InboundId::MAX_BYTES
    )]
    TooLong {
        /// Its length in bytes.
        bytes: usize,
    },
    /// Contains a control character.
    #[error("inbound message id contains the control character U+{code:04X}")]
    ControlCharacter {
        /// The first control character's code point.
        code: u32,
    },
}

impl InboundId {
    /// The longest id accepted, in bytes (WhatsApp's ids are under 100).
    pub const MAX_BYTES: usize = 256;

    /// Validates `id` (trimmed of surrounding white space).
    pub fn new(id: &str) -> Result<Self, InboundIdError> {
        let id = id.trim();
        if id.is_empty() {
            return Err(InboundIdError::Empty);
        }
        if id.len() > Self::MAX_BYTES {
            return Err(InboundIdError::TooLong { bytes: id.len() });
        }
        if let Some(c) = id.chars().find(|c| c.is_control()) {
            return Err(InboundIdError::ControlCharacter { code: c.into() });
        }
        Ok(Self(id.to_owned()))
    }

    /// The id as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InboundId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for InboundId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InboundId({:?})", self.0)
    }
}

impl std::str::FromStr for InboundId {
    type Err = InboundIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_what_is_wrong() {
        assert_eq!(InboundId::new(""), Err(InboundIdError::Empty));
        assert_eq!(InboundId::new(" \t"), Err(InboundIdError::Empty));
        assert_eq!(
            InboundId::new(&"a".repeat(257)),
            Err(InboundIdError::TooLong { bytes: 257 })
        );
        assert!(InboundId::new(&"a".repeat(256)).is_ok());
        assert_eq!(
            InboundId::new("wamid.\u{0}x"),
            Err(InboundIdError::ControlCharacter { code: 0 })
        );
        assert_eq!(InboundId::new(" wamid.A ").unwrap().as_str(), "wamid.A");
    }
}
