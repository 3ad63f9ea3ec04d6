//! The secrets the serving side checks requests against: WhatsApp's subscription verify
//! token, the app secret that signs WhatsApp's webhooks, and the admin routes' token.
//! (LipaChat's path token is [`lipachat_api::WebhookToken`].)

use std::fmt;

use subtle::ConstantTimeEq;

use crate::error::ConfigError;

/// The shortest admin token accepted, in characters: it guards every conversation's data.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// A secret string. `Debug` and `Display` print `Secret(***)`, so it never reaches a log
/// or an error message; comparisons run in constant time (for equal lengths).
#[derive(Clone)]
pub struct Secret {
    value: String,
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

    /// Whether `presented` is the secret, compared in time that does not depend on where
    /// the two differ.
    pub fn verify(&self, presented: &[u8]) -> bool {
        bool::from(self.value.as_bytes().ct_eq(presented))
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
}
