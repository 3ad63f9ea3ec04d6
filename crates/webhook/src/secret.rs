//! The secrets the serving side checks requests against: WhatsApp's subscription verify
//! token, the app secret that signs WhatsApp's webhooks, and the admin routes' token.
//! (LipaChat's path token is [`lipachat_api::WebhookToken`].)

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ConfigError;

/// The shortest admin token accepted, in characters: it guards every conversation's data.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// A secret string. `Debug` and `Display` print `Secret(***)`, so it never reaches a log
/// or an error message. [`Secret::verify`] compares SHA-256 digests of the secret and of
/// what is presented, in constant time, so its time reveals neither the secret's length
/// nor where the two differ.
#[derive(Clone)]
pub struct Secret {
    value: String,
    /// SHA-256 of `value`, what presented values are compared with.
    digest: [u8; 32],
}

impl Secret {
    /// A secret named `name` (for the error): leading and trailing white space is
    /// dropped; an empty one is [`ConfigError::EmptySecret`].
    pub fn new(name: &'static str, value: impl Into<String>) -> Result<Self, ConfigError> {
        let value = value.into();
        let value = value.trim();
        if value.is_empty() {
            return Err(ConfigError::EmptySecret { name });
        }
        Ok(Self {
            value: value.to_owned(),
            digest: Sha256::digest(value.as_bytes()).into(),
        })
    }

    /// An admin token: a [`Secret`] of at least [`MIN_ADMIN_TOKEN_LEN`] characters.
    pub fn admin_token(value: impl Into<String>) -> Result<Self, ConfigError> {
        let secret = Self::new("admin token", value)?;
        let len = secret.value.chars().count();
        if len < MIN_ADMIN_TOKEN_LEN {
            return Err(ConfigError::ShortAdminToken {
                len,
                min: MIN_ADMIN_TOKEN_LEN,
            });
        }
        Ok(secret)
    }

    /// Whether `presented` is the secret. Both sides are compared as fixed-length
    /// SHA-256 digests, in constant time: the time depends only on the presented value's
    /// length (hashing it), never on the secret's length or contents, nor on where the
    /// two differ. (Two different values with one digest would need a SHA-256 collision.)
    pub fn verify(&self, presented: &[u8]) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented).into();
        bool::from(self.digest.ct_eq(&presented))
    }

    /// The secret's bytes (the HMAC key, for the app secret).
    pub fn expose_secret(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_and_never_print() {
        let Ok(secret) = Secret::new("verify token", "  hunter2-verify ") else {
            panic!("a valid secret");
        };
        assert!(secret.verify(b"hunter2-verify"));
        assert!(!secret.verify(b"hunter2-verifx"));
        assert!(!secret.verify(b"hunter2"));
        assert!(!secret.verify(b""));
        assert_eq!(format!("{secret:?} {secret}"), "Secret(***) ***");
        assert!(matches!(
            Secret::new("app secret", " "),
            Err(ConfigError::EmptySecret { name: "app secret" })
        ));
        assert!(matches!(
            Secret::admin_token("short"),
            Err(ConfigError::ShortAdminToken { len: 5, .. })
        ));
        assert!(Secret::admin_token("0123456789abcdef").is_ok());
    }

    fn secret(value: &str) -> Secret {
        Secret::new("verify token", value).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn verify_accepts_only_the_secret_itself() {
        let token = "admin-token-0123456789abcdef";
        let secret = secret(token);
        // Equal.
        assert!(secret.verify(token.as_bytes()));
        // Different, same length (first, middle and last byte).
        for at in [0, token.len() / 2, token.len() - 1] {
            let mut other = token.as_bytes().to_vec();
            other[at] ^= 1;
            assert!(!secret.verify(&other), "differs at {at}");
        }
        // Every proper prefix, and every longer value starting with the secret.
        for len in 0..token.len() {
            assert!(!secret.verify(&token.as_bytes()[..len]), "prefix of {len}");
        }
        for extra in ["0", "\0", " ", "admin-token-0123456789abcdef"] {
            assert!(
                !secret.verify(format!("{token}{extra}").as_bytes()),
                "{extra:?}"
            );
        }
        // Empty.
        assert!(!secret.verify(b""));
        // A one-byte secret against the empty value and against itself.
        let short = self::secret("x");
        assert!(!short.verify(b""));
        assert!(short.verify(b"x"));
    }

    #[test]
    fn only_fixed_length_digests_are_compared() {
        // What `verify` compares against is the secret's 32-byte SHA-256 digest, whatever
        // the secret's length, so the comparison cannot depend on that length.
        for value in ["x", "sixteen-chars-00", &"y".repeat(4096)] {
            let secret = secret(value);
            assert_eq!(secret.digest.len(), 32);
            let expected: [u8; 32] = Sha256::digest(value.as_bytes()).into();
            assert_eq!(secret.digest, expected);
        }
    }
}
