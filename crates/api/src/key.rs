//! The gateway's API key, kept out of logs, errors and panic messages.

use std::fmt;

use crate::error::ValidationError;

/// The longest key accepted, in bytes.
const MAX_KEY_LEN: usize = 1024;

/// A LipaChat API key (from the LipaChat app's settings tab).
///
/// Validated on creation: non-empty, at most 1024 characters, printable ASCII without
/// whitespace (it travels in the `apiKey` header). `Debug` and `Display` print
/// `ApiKey(***)`; only [`ApiKey::expose_secret`] gives the key, for the header.
///
/// ```
/// use lipachat_api::ApiKey;
///
/// let key = ApiKey::new("sk_live_0123456789")?;
/// assert_eq!(format!("{key:?}"), "ApiKey(***)");
/// assert_eq!(key.to_string(), "ApiKey(***)");
/// assert!(ApiKey::new("has space").is_err());
/// # Ok::<(), lipachat_api::ValidationError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Validates and wraps a key. Surrounding whitespace (a trailing newline from a file
    /// or an environment variable) is trimmed first.
    pub fn new(key: impl Into<String>) -> Result<Self, ValidationError> {
        let key = key.into();
        let trimmed = key.trim();
        if trimmed.is_empty() {
            return Err(ValidationError::ApiKey { reason: "empty" });
        }
        if trimmed.len() > MAX_KEY_LEN {
            return Err(ValidationError::ApiKey {
                reason: "longer than 1024 characters",
            });
        }
        if !trimmed.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ValidationError::ApiKey {
                reason: "holds whitespace, control or non-ASCII characters",
            });
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The key itself. Use it for the `apiKey` header and nowhere else.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the key replaced by `***`.
    pub(crate) fn redact(&self, text: &str) -> String {
        text.replace(self.0.as_str(), "***")
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert_eq!(
            ApiKey::new("  k3y\n").unwrap().expose_secret(),
            "k3y",
            "surrounding whitespace is trimmed"
        );
        for bad in [
            "",
            "   ",
            "a b",
            "a\tb",
            "a\u{7f}b",
            "clé",
            &"x".repeat(1025),
        ] {
            assert!(
                matches!(ApiKey::new(bad), Err(ValidationError::ApiKey { .. })),
                "{bad:?} should be refused"
            );
        }
        let err = ApiKey::new("secret value").unwrap_err();
        assert!(!err.to_string().contains("secret"));
    }

    #[test]
    fn redaction() {
        let key = ApiKey::new("s3cr3t-key").unwrap();
        assert_eq!(
            format!("{key:?} {key} {key:#?}"),
            "ApiKey(***) ApiKey(***) ApiKey(***)"
        );
        assert_eq!(
            key.redact("got s3cr3t-key twice: s3cr3t-key"),
            "got *** twice: ***"
        );
    }
}
