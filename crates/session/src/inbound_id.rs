//! The platform's id of an inbound message, by which a redelivered webhook is recognised.

use crate::uuid_v5::uuid_v5;
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

    /// The id a platform gave a message, made usable to recognise its copies: the id
    /// itself when [`InboundId::new`] accepts it; for one that is too long or holds a
    /// control character, a stand-in derived from all of its bytes (`digest:` and a
    /// version 5 UUID), so every copy of that message still maps to one id (and replies
    /// derived from it stay the same). `None` only for an empty id.
    ///
    /// ```
    /// use lipachat_session::InboundId;
    ///
    /// assert_eq!(InboundId::from_platform("wamid.A").unwrap().as_str(), "wamid.A");
    /// let odd = InboundId::from_platform("in-\u{1}").unwrap();
    /// assert!(odd.as_str().starts_with("digest:"));
    /// assert_eq!(InboundId::from_platform("in-\u{1}"), Some(odd));
    /// assert_ne!(InboundId::from_platform("in-\u{2}"), InboundId::from_platform("in-\u{1}"));
    /// assert!(InboundId::from_platform("  ").is_none());
    /// ```
    pub fn from_platform(id: &str) -> Option<Self> {
        match Self::new(id) {
            Ok(id) => Some(id),
            Err(InboundIdError::Empty) => None,
            Err(_) => Some(Self(format!(
                "digest:{}",
                uuid_v5(&DIGEST_NAMESPACE, &[id.trim().as_bytes()]).simple()
            ))),
        }
    }

    /// The id as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id's 16-byte digest, by which the stores remember it (the redelivery memory
    /// keeps only whether an id was seen, never the id): a version 5 UUID of the id's
    /// bytes under a fixed namespace (SHA-1, truncated). Stored, so it never changes;
    /// two ids sharing one digest is as likely as a SHA-1 collision.
    pub fn digest(&self) -> InboundDigest {
        InboundDigest(*uuid_v5(&DIGEST_NAMESPACE, &[self.0.as_bytes()]).as_bytes())
    }
}

/// The namespace of the ids' digests: fixed, since the digests are stored.
const DIGEST_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6c69_7061_6368_6174_2d73_6565_6e31_0001);

/// The digest of an [`InboundId`] ([`InboundId::digest`]): what the stores key the
/// redelivery memory by, and what an export carries. Written as 32 lowercase hex digits.
///
/// ```
/// use lipachat_session::{InboundDigest, InboundId};
///
/// let digest = InboundId::new("wamid.A")?.digest();
/// let text = digest.to_string();
/// assert_eq!(text.len(), 32);
/// assert_eq!(text.parse::<InboundDigest>()?, digest);
/// assert!("not hex".parse::<InboundDigest>().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InboundDigest([u8; 16]);

/// Why a text is not an inbound id's digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InboundDigestError {
    /// Not 32 characters long.
    #[error("an inbound id digest is 32 hex digits; {chars} characters were given")]
    Length {
        /// How many characters were given.
        chars: usize,
    },
    /// A character that is not a hex digit.
    #[error("an inbound id digest is 32 hex digits; {found:?} is not one")]
    NotHex {
        /// The first character that is not a hex digit.
        found: char,
    },
}

impl InboundDigest {
    /// The digest of these bytes (as stored).
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The digest's bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for InboundDigest {
    /// 32 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for InboundDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InboundDigest({self})")
    }
}

impl std::str::FromStr for InboundDigest {
    type Err = InboundDigestError;

    /// Reads 32 hex digits (either case).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(found) = text.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(InboundDigestError::NotHex { found });
        }
        if text.len() != 32 {
            return Err(InboundDigestError::Length {
                chars: text.chars().count(),
            });
        }
        let mut bytes = [0u8; 16];
        // Every character is an ASCII hex digit (checked above).
        let nibble = |digit: u8| char::from(digit).to_digit(16).unwrap_or(0) as u8;
        for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            if let [high, low] = pair {
                *byte = (nibble(*high) << 4) | nibble(*low);
            }
        }
        Ok(Self(bytes))
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

    /// The digest is stored (sled keys, Redis keys, exports): it must never change.
    #[test]
    fn the_digest_is_frozen() {
        let digest = InboundId::new("wamid.HBgMMjU0NzEyMzQ1Njc4FQIAEhgUM0E")
            .unwrap()
            .digest();
        assert_eq!(digest.to_string(), FROZEN_DIGEST);
        assert_eq!(FROZEN_DIGEST.parse::<InboundDigest>(), Ok(digest));
        assert_eq!(
            FROZEN_DIGEST.to_uppercase().parse::<InboundDigest>(),
            Ok(digest)
        );
    }

    // Computed independently, and equal to the sled keys written before the digest was
    // public: Python's `uuid.uuid5(UUID(int=0x6c69_7061_6368_6174_2d73_6565_6e31_0001),
    // id).hex`.
    const FROZEN_DIGEST: &str = "fbe7434df1f259dc8d85b8b7c2f3e86c";

    #[test]
    fn digest_text_errors_name_what_is_wrong() {
        assert_eq!(
            "abc".parse::<InboundDigest>(),
            Err(InboundDigestError::Length { chars: 3 })
        );
        assert_eq!(
            "g".repeat(32).parse::<InboundDigest>(),
            Err(InboundDigestError::NotHex { found: 'g' })
        );
        assert_eq!(
            "é".repeat(16).parse::<InboundDigest>(),
            Err(InboundDigestError::NotHex { found: 'é' })
        );
    }
}
