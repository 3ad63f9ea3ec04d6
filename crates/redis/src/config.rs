//! How to reach Redis: the server URL, the key prefix and the timeouts.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use lipachat_session::StoreError;
use redis::IntoConnectionInfo;

use crate::RedisStore;

/// Why a [`RedisConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The URL is not a Redis URL.
    #[error(
        "{url:?} is not a Redis URL ({detail}); write redis://HOST:PORT/DB, for example redis://127.0.0.1:6379/0"
    )]
    Url {
        /// The URL, password hidden.
        url: String,
        /// What was wrong with it.
        detail: String,
    },
    /// The key prefix is empty or holds a character that would break the key layout.
    #[error(
        "key prefix {0:?} must be 1 to 64 characters, none of them '{{', '}}', whitespace or control characters"
    )]
    KeyPrefix(String),
    /// A timeout is zero.
    #[error("the {0} timeout must be longer than zero")]
    Timeout(&'static str),
}

/// The time limits of every call, so an unreachable or stalled server turns into an
/// error instead of a hang.
///
/// The defaults (1 s to connect, 2 s for one answer, 4 s for a whole store call) keep
/// every store call under 5 seconds, whatever the server does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisTimeouts {
    /// One attempt to open a connection (TCP connect and handshake).
    pub connect: Duration,
    /// One command's answer on an open connection.
    pub response: Duration,
    /// A whole store call, reconnection and retries included: the hard upper bound.
    pub operation: Duration,
}

impl Default for RedisTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(1),
            response: Duration::from_secs(2),
            operation: Duration::from_secs(4),
        }
    }
}

impl RedisTimeouts {
    fn validate(&self) -> Result<(), ConfigError> {
        for (name, value) in [
            ("connect", self.connect),
            ("response", self.response),
            ("operation", self.operation),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Timeout(name));
            }
        }
        Ok(())
    }
}

/// How to open a [`RedisStore`]: server URL, key prefix and timeouts.
///
/// Parses from a URL (`redis://HOST:PORT/DB`, `redis://:PASSWORD@HOST:PORT/DB`,
/// `redis+unix:///path/to/socket?db=DB`); its `Debug` and `Display` hide the password.
///
/// ```
/// use std::time::Duration;
/// use lipachat_redis::RedisConfig;
///
/// let config: RedisConfig = "redis://:secret@127.0.0.1:6379/2".parse()?;
/// let config = config.with_key_prefix("bot-a")?.with_timeouts(lipachat_redis::RedisTimeouts {
///     operation: Duration::from_secs(3),
///     ..Default::default()
/// })?;
/// assert_eq!(config.key_prefix(), "bot-a");
/// assert_eq!(config.to_string(), "redis://:***@127.0.0.1:6379/2 (prefix bot-a)");
/// assert!("http://example.invalid".parse::<RedisConfig>().is_err());
/// # Ok::<(), lipachat_redis::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    url: String,
    key_prefix: String,
    timeouts: RedisTimeouts,
}

impl RedisConfig {
    /// The default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "lipachat";

    /// A configuration for the server at `url`, with the default prefix and timeouts.
    pub fn new(url: &str) -> Result<Self, ConfigError> {
        url.into_connection_info()
            .map_err(|error| ConfigError::Url {
                url: redact(url),
                detail: hide_passwords(&password_forms(url), &error.to_string()),
            })?;
        Ok(Self {
            url: url.to_owned(),
            key_prefix: Self::DEFAULT_PREFIX.to_owned(),
            timeouts: RedisTimeouts::default(),
        })
    }

    /// Sets the prefix of every key, so several bots can share one server.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Result<Self, ConfigError> {
        let prefix = prefix.into();
        let bad = |c: char| c == '{' || c == '}' || c.is_whitespace() || c.is_control();
        if prefix.is_empty() || prefix.chars().count() > 64 || prefix.chars().any(bad) {
            return Err(ConfigError::KeyPrefix(prefix));
        }
        self.key_prefix = prefix;
        Ok(self)
    }

    /// Sets the timeouts.
    pub fn with_timeouts(mut self, timeouts: RedisTimeouts) -> Result<Self, ConfigError> {
        timeouts.validate()?;
        self.timeouts = timeouts;
        Ok(self)
    }

    /// The server URL as given (password included: do not log it; `Display` hides it).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// The timeouts.
    pub fn timeouts(&self) -> RedisTimeouts {
        self.timeouts
    }

    /// Connects, checks the server (Redis 6.2 or newer) and the key schema.
    pub async fn connect(self) -> Result<RedisStore, StoreError> {
        RedisStore::connect_with(self).await
    }
}

impl FromStr for RedisConfig {
    type Err = ConfigError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        Self::new(url)
    }
}

impl fmt::Display for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (prefix {})", redact(&self.url), self.key_prefix)
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

/// The URL with its password replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() && parsed.set_password(Some("***")).is_err() {
                // Setting a password fails only for URLs that cannot have one.
                return "<redacted>".to_owned();
            }
            // redis-rs reads a socket URL's password from its query (`?pass=`).
            if parsed.query_pairs().any(|(name, _)| is_password_key(&name)) {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(name, value)| {
                        let value = if is_password_key(&name) {
                            "***".to_owned()
                        } else {
                            value.into_owned()
                        };
                        (name.into_owned(), value)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        Err(_) if url.contains('@') || url.contains('?') => "<redacted>".to_owned(),
        Err(_) => url.to_owned(),
    }
}

/// Whether a URL query key names a password (redis-rs reads `pass` for socket URLs).
fn is_password_key(name: &str) -> bool {
    name.eq_ignore_ascii_case("pass") || name.eq_ignore_ascii_case("password")
}

/// The password of a Redis URL in every form it may come back in a server's or a
/// library's message: as written in the URL (percent-encoded) and decoded, from the
/// user-info part or from a `pass` query parameter. Longest first, so a form that holds
/// another is replaced whole.
pub(crate) fn password_forms(url: &str) -> Vec<String> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Vec::new();
    };
    let mut forms = Vec::new();
    if let Some(written) = parsed.password() {
        forms.push(written.to_owned());
        forms.push(percent_decoded(written));
    }
    for pair in parsed.query().unwrap_or_default().split('&') {
        let (name, written) = pair.split_once('=').unwrap_or((pair, ""));
        if is_password_key(&percent_decoded(name)) {
            forms.push(written.to_owned());
            forms.push(percent_decoded(written));
            forms.push(percent_decoded(&written.replace('+', " ")));
        }
    }
    forms.retain(|form| !form.is_empty());
    forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
    forms.dedup();
    forms
}

/// `text` with every form of a password in `forms` replaced by `***`.
pub(crate) fn hide_passwords(forms: &[String], text: &str) -> String {
    forms.iter().fold(text.to_owned(), |text, form| {
        text.replace(form.as_str(), "***")
    })
}

/// Decodes `%XX` escapes; an escape that is not one is kept as written.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escaped = (bytes[at] == b'%')
            .then(|| bytes.get(at + 1..at + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                at += 3;
            }
            None => {
                out.push(bytes[at]);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let config = RedisConfig::new("redis://127.0.0.1:6380/3").unwrap();
        assert_eq!(config.url(), "redis://127.0.0.1:6380/3");
        assert_eq!(config.key_prefix(), "lipachat");
        assert_eq!(config.timeouts(), RedisTimeouts::default());
        for bad in ["", "127.0.0.1:6379", "http://host", "redis://host:notaport"] {
            assert!(
                matches!(RedisConfig::new(bad), Err(ConfigError::Url { .. })),
                "{bad}"
            );
        }
        let secret = RedisConfig::new("redis://user:hunter2@localhost:6379/0").unwrap();
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert!(!secret.to_string().contains("hunter2"));
        let err = RedisConfig::new("http://user:hunter2@host").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn prefixes_and_timeouts() {
        let config = RedisConfig::new("redis://localhost").unwrap();
        assert!(config.clone().with_key_prefix("bot:eu-1").is_ok());
        for bad in ["", "a{b", "a}b", "a b", "x".repeat(65).as_str()] {
            assert_eq!(
                config.clone().with_key_prefix(bad),
                Err(ConfigError::KeyPrefix(bad.to_owned()))
            );
        }
        let zero = RedisTimeouts {
            response: Duration::ZERO,
            ..Default::default()
        };
        assert_eq!(
            config.with_timeouts(zero),
            Err(ConfigError::Timeout("response"))
        );
        let default = RedisTimeouts::default();
        assert!(default.operation < Duration::from_secs(5));
    }
}
