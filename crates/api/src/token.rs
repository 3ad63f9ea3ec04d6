//! A shared secret in the webhook URL, so a receiver can refuse forged inbound messages.
//!
//! The gateway publishes no signature scheme for its webhooks, and a forged "inbound
//! message" would open a customer service window that WhatsApp never opened. The business
//! therefore puts a long random token in the webhook URL it registers with LipaChat
//! (`https://bot.example/webhooks/lipachat/<token>` or `...?token=<token>`), and the
//! receiver checks it, in constant time, before the payload touches the store.

use std::fmt;

use thiserror::Error;

/// The shortest token accepted, in characters.
pub const MIN_TOKEN_LEN: usize = 16;
/// The longest token accepted, in characters.
pub const MAX_TOKEN_LEN: usize = 256;

/// Why a string cannot be a webhook token.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Shorter than 16 characters: too easy to guess.
    #[error("a webhook token needs at least {min} characters, got {len}")]
    TooShort {
        /// Its length.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// Longer than 256 characters.
    #[error("a webhook token may have at most {max} characters, got {len}")]
    TooLong {
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A character that would need escaping in a URL.
    #[error(
        "a webhook token may contain only ASCII letters, digits, '-', '_', '.' and '~' (characters that need no escaping in a URL)"
    )]
    InvalidCharacter,
}

/// The secret a webhook URL must carry. `Debug` prints `WebhookToken(***)`.
///
/// ```
/// use lipachat_api::WebhookToken;
///
/// let token = WebhookToken::new("c2f1e0d9b8a7c6f5e4d3")?;
/// assert!(token.verify_request_target("/webhooks/lipachat/c2f1e0d9b8a7c6f5e4d3"));
/// assert!(token.verify_request_target("/webhooks/lipachat?token=c2f1e0d9b8a7c6f5e4d3"));
/// assert!(!token.verify_request_target("/webhooks/lipachat/guess"));
/// assert_eq!(format!("{token:?}"), "WebhookToken(***)");
/// # Ok::<(), lipachat_api::TokenError>(())
/// ```
#[derive(Clone)]
pub struct WebhookToken(String);

/// Equality of two tokens is compared in constant time too, like
/// [`WebhookToken::verify`], so no comparison of a secret leaks its contents by timing.
impl PartialEq for WebhookToken {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Eq for WebhookToken {}

impl WebhookToken {
    /// Checks a token: 16 to 256 characters of `[A-Za-z0-9._~-]`.
    pub fn new(secret: impl Into<String>) -> Result<Self, TokenError> {
        let secret = secret.into();
        let secret = secret.trim();
        if secret.len() < MIN_TOKEN_LEN {
            return Err(TokenError::TooShort {
                len: secret.len(),
                min: MIN_TOKEN_LEN,
            });
        }
        if secret.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong {
                len: secret.len(),
                max: MAX_TOKEN_LEN,
            });
        }
        if !secret.bytes().all(is_unreserved) {
            return Err(TokenError::InvalidCharacter);
        }
        Ok(Self(secret.to_owned()))
    }

    /// A new random token: 64 hex digits from the operating system's random source
    /// (two v4 UUIDs, 244 random bits).
    pub fn generate() -> Self {
        Self(format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        ))
    }

    /// The token, to build the URL registered with LipaChat.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is the token. The comparison's time does not depend on where
    /// the two differ.
    pub fn verify(&self, presented: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), presented.as_bytes())
    }

    /// Whether a request target (`/path/<token>`, `/path?token=<token>`, or a full URL)
    /// carries the token; see [`token_from_request_target`].
    pub fn verify_request_target(&self, target: &str) -> bool {
        token_from_request_target(target).is_some_and(|presented| self.verify(&presented))
    }
}

impl fmt::Debug for WebhookToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookToken(***)")
    }
}

/// The token a request presents: the `token` query parameter when there is one, else the
/// path's last non-empty segment. Accepts a path with optional query (`/hook/abc?x=1`) or a
/// full `http(s)://` URL; a fragment is ignored.
///
/// ```
/// use lipachat_api::token_from_request_target;
///
/// assert_eq!(token_from_request_target("/hooks/lipachat/abc/").as_deref(), Some("abc"));
/// assert_eq!(token_from_request_target("/hooks?x=1&token=t%2Dk").as_deref(), Some("t-k"));
/// assert_eq!(token_from_request_target("https://bot.example/h/abc").as_deref(), Some("abc"));
/// assert_eq!(token_from_request_target("/"), None);
/// ```
pub fn token_from_request_target(target: &str) -> Option<String> {
    let target = target.trim();
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    let (path, query) = if lower.starts_with("http://") || lower.starts_with("https://") {
        let url = url::Url::parse(target).ok()?;
        (url.path().to_owned(), url.query().map(str::to_owned))
    } else {
        let without_fragment = target.split('#').next().unwrap_or_default();
        match without_fragment.split_once('?') {
            Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
            None => (without_fragment.to_owned(), None),
        }
    };
    if let Some(query) = query
        && let Some((_, value)) =
            url::form_urlencoded::parse(query.as_bytes()).find(|(name, _)| name == "token")
    {
        return Some(value.into_owned());
    }
    path.rsplit('/')
        .find(|segment| !segment.is_empty())
        .map(str::to_owned)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Compares the SHA-256 digests of the two in constant time: the time depends on neither
/// the secret's contents nor its length (both digests are 32 bytes), only on the
/// presented value's length, which its sender knows.
fn constant_time_eq(secret: &[u8], presented: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let secret: [u8; 32] = Sha256::digest(secret).into();
    let presented: [u8; 32] = Sha256::digest(presented).into();
    secret.ct_eq(&presented).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_compares_the_secrets() {
        let a = WebhookToken::new("a-long-enough-secret-0001").unwrap();
        let same = WebhookToken::new("a-long-enough-secret-0001").unwrap();
        let other = WebhookToken::new("a-long-enough-secret-0002").unwrap();
        let longer = WebhookToken::new("a-long-enough-secret-00011").unwrap();
        assert_eq!(a, same);
        assert_ne!(a, other);
        assert_ne!(a, longer);
        assert_ne!(longer, a);
    }

    #[test]
    fn validation() {
        assert!(matches!(
            WebhookToken::new("short"),
            Err(TokenError::TooShort { len: 5, .. })
        ));
        assert!(matches!(
            WebhookToken::new("x".repeat(257)),
            Err(TokenError::TooLong { .. })
        ));
        assert_eq!(
            WebhookToken::new("has/slash-0123456789"),
            Err(TokenError::InvalidCharacter)
        );
        assert!(WebhookToken::new("Abc-_.~0123456789").is_ok());
        let a = WebhookToken::generate();
        assert_eq!(a.expose_secret().len(), 64);
        assert_ne!(a, WebhookToken::generate());
        assert!(WebhookToken::new(a.expose_secret()).is_ok());
    }

    #[test]
    fn verification() {
        let token = WebhookToken::new("0123456789abcdef").unwrap();
        assert!(token.verify("0123456789abcdef"));
        for wrong in [
            "",
            "0123456789abcde",
            "0123456789abcdef0",
            "0123456789abcdeF",
            "x",
        ] {
            assert!(!token.verify(wrong), "{wrong:?}");
        }
        assert!(token.verify_request_target("/hook/0123456789abcdef"));
        assert!(token.verify_request_target("/hook/0123456789abcdef/"));
        assert!(token.verify_request_target("/hook?token=0123456789abcdef"));
        assert!(token.verify_request_target("/hook/wrong?token=0123456789abcdef"));
        assert!(token.verify_request_target("HTTPS://bot.example/hook/0123456789abcdef#frag"));
        assert!(!token.verify_request_target("/hook/0123456789abcdef?token=wrong"));
        assert!(!token.verify_request_target("/hook"));
        assert!(!token.verify_request_target(""));
        assert!(!token.verify_request_target("/0123456789abcdef/other"));
    }
}
