//! How to reach Redis: the server or cluster URL, TLS trust, the key prefix, the
//! timeouts and the replica wait.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use redis::IntoConnectionInfo;

use crate::RedisStore;
use crate::connect_error::ConnectError;

/// The environment variable naming a PEM file of certificate authorities to trust, in
/// addition to the system's, for `rediss://` servers (read at connect when
/// [`RedisConfig::with_ca_cert`] named none).
pub const CA_CERT_ENV: &str = "LIPACHAT_REDIS_CA_CERT";

/// Why a [`RedisConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The URL is not a Redis URL.
    #[error(
        "{url:?} is not a Redis URL ({detail}); write redis://HOST:PORT/DB (rediss:// for TLS), for example redis://127.0.0.1:6379/0, or redis+cluster://HOST:PORT,HOST:PORT for a Redis Cluster"
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
    /// The replica wait asks for no replica, or waits longer than one answer may take.
    #[error("replica wait: {0}")]
    ReplicaWait(String),
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

/// How long each write waits for replicas to confirm it (`WAIT replicas timeout`), so an
/// acknowledged write is on `replicas` replicas as well as on the primary.
///
/// Set with [`RedisConfig::with_replica_wait`]. A write that fewer replicas confirm within
/// `timeout` is applied on the primary but fails with
/// [`lipachat_session::StoreError::Backend`], naming how many confirmed: the caller must
/// treat it as possibly applied, like any failed write. `WAIT` narrows what a failover can
/// lose; it does not make Redis strongly consistent (see `docs/redis.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaWait {
    /// How many replicas must confirm each write (at least 1).
    pub replicas: u32,
    /// How long to wait for them (longer than zero, shorter than the response timeout).
    pub timeout: Duration,
}

impl ReplicaWait {
    fn validate(&self, timeouts: &RedisTimeouts) -> Result<(), ConfigError> {
        if self.replicas == 0 {
            return Err(ConfigError::ReplicaWait(
                "ask for at least one replica (no wait: do not set one)".to_owned(),
            ));
        }
        if self.timeout.is_zero() || self.timeout.as_millis() == 0 {
            return Err(ConfigError::ReplicaWait(
                "the timeout must be at least one millisecond (WAIT 0 would wait forever)"
                    .to_owned(),
            ));
        }
        if self.timeout >= timeouts.response {
            return Err(ConfigError::ReplicaWait(format!(
                "the timeout {:?} must be shorter than the response timeout {:?}, which bounds the WAIT's answer",
                self.timeout, timeouts.response
            )));
        }
        Ok(())
    }
}

/// Where the data lives: one server, or a Redis Cluster reached through seed nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Deployment {
    /// One server (standalone, or a primary behind a proxy): the URL as redis-rs reads it.
    Server,
    /// A Redis Cluster: one redis-rs URL per seed node, each with the URL's credentials
    /// and TLS setting.
    Cluster {
        /// The seed nodes' URLs.
        nodes: Vec<String>,
    },
}

/// How to open a [`RedisStore`]: server URL, key prefix, timeouts, TLS trust and the
/// replica wait.
///
/// Parses from a URL:
/// - `redis://HOST:PORT/DB`, `redis://:PASSWORD@HOST:PORT/DB`,
///   `redis://USER:PASSWORD@HOST:PORT/DB` (an ACL user), `redis+unix:///path?db=DB`;
/// - `rediss://…` the same over TLS, the server's certificate checked against the
///   system's roots plus the file of [`RedisConfig::with_ca_cert`] (or
///   `$LIPACHAT_REDIS_CA_CERT`); `rediss://…#insecure` skips the check, and only then;
/// - `redis+cluster://[USER:PASSWORD@]HOST:PORT[,HOST:PORT…]` (and `rediss+cluster://`)
///   for a Redis Cluster: one reachable node is enough, the others are discovered.
///
/// Its `Debug` and `Display` hide the password.
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
///
/// let cluster: RedisConfig = "rediss+cluster://bot:secret@10.0.0.1:6379,10.0.0.2:6379".parse()?;
/// assert!(cluster.is_cluster() && cluster.uses_tls());
/// assert_eq!(
///     cluster.to_string(),
///     "rediss+cluster://bot:***@10.0.0.1:6379,10.0.0.2:6379 (prefix lipachat)"
/// );
/// # Ok::<(), lipachat_redis::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    url: String,
    deployment: Deployment,
    key_prefix: String,
    timeouts: RedisTimeouts,
    ca_cert: Option<PathBuf>,
    replica_wait: Option<ReplicaWait>,
}

impl RedisConfig {
    /// The default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "lipachat";

    /// A configuration for the server or cluster at `url`, with the default prefix and
    /// timeouts, no extra certificate authority (unless `$LIPACHAT_REDIS_CA_CERT` names
    /// one at connect) and no replica wait.
    pub fn new(url: &str) -> Result<Self, ConfigError> {
        let refused = |detail: String| ConfigError::Url {
            url: redact(url),
            detail: hide_passwords(&password_forms(url), &detail),
        };
        let deployment = if cluster_scheme(url).is_some() {
            Deployment::Cluster {
                nodes: cluster_nodes(url).map_err(refused)?,
            }
        } else {
            url.into_connection_info()
                .map_err(|error| refused(error.to_string()))?;
            Deployment::Server
        };
        Ok(Self {
            url: url.to_owned(),
            deployment,
            key_prefix: Self::DEFAULT_PREFIX.to_owned(),
            timeouts: RedisTimeouts::default(),
            ca_cert: None,
            replica_wait: None,
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
        if let Some(wait) = &self.replica_wait {
            wait.validate(&timeouts)?;
        }
        self.timeouts = timeouts;
        Ok(self)
    }

    /// Trusts the certificate authorities in the PEM file at `path` for `rediss://`
    /// servers, in addition to the system's roots (the file is read at connect). Without
    /// it, `$LIPACHAT_REDIS_CA_CERT` names the file, if set.
    pub fn with_ca_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_cert = Some(path.into());
        self
    }

    /// Makes every write wait for `wait.replicas` replicas to confirm it (Redis `WAIT`),
    /// within `wait.timeout`; see [`ReplicaWait`].
    pub fn with_replica_wait(mut self, wait: ReplicaWait) -> Result<Self, ConfigError> {
        wait.validate(&self.timeouts)?;
        self.replica_wait = Some(wait);
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

    /// The certificate authority file set with [`RedisConfig::with_ca_cert`].
    pub fn ca_cert(&self) -> Option<&Path> {
        self.ca_cert.as_deref()
    }

    /// The replica wait, if set.
    pub fn replica_wait(&self) -> Option<ReplicaWait> {
        self.replica_wait
    }

    /// Whether the URL names a Redis Cluster (`redis+cluster://`, `rediss+cluster://`).
    pub fn is_cluster(&self) -> bool {
        matches!(self.deployment, Deployment::Cluster { .. })
    }

    /// Whether the connection uses TLS (`rediss://`, `rediss+cluster://`).
    pub fn uses_tls(&self) -> bool {
        let scheme = self.url.split_once("://").map_or("", |(scheme, _)| scheme);
        scheme.eq_ignore_ascii_case("rediss") || scheme.eq_ignore_ascii_case("rediss+cluster")
    }

    /// The certificate authority file to trust: the configured one, else the one
    /// `$LIPACHAT_REDIS_CA_CERT` names (an empty variable counts as unset).
    pub(crate) fn effective_ca_cert(&self) -> Option<PathBuf> {
        self.ca_cert.clone().or_else(|| {
            std::env::var_os(CA_CERT_ENV)
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
        })
    }

    pub(crate) fn deployment(&self) -> &Deployment {
        &self.deployment
    }

    /// Connects, checks the server (Redis 6.2 or newer; a cluster for a cluster URL and
    /// not for another) and the key schema.
    pub async fn connect(self) -> Result<RedisStore, ConnectError> {
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
            .field("ca_cert", &self.ca_cert)
            .field("replica_wait", &self.replica_wait)
            .finish()
    }
}

/// The scheme of a cluster URL (`redis+cluster`, `rediss+cluster`, any case), if it is one.
fn cluster_scheme(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once("://")?;
    (scheme.eq_ignore_ascii_case("redis+cluster") || scheme.eq_ignore_ascii_case("rediss+cluster"))
        .then_some(scheme)
}

/// The seed nodes of a cluster URL, `SCHEME://[USER:PASSWORD@]HOST:PORT[,HOST:PORT…][/0]
/// [?QUERY][#FRAGMENT]`, each as a redis-rs URL with the same credentials, query and
/// fragment (`#insecure`).
fn cluster_nodes(url: &str) -> Result<Vec<String>, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("no scheme".to_owned());
    };
    let node_scheme = if scheme.eq_ignore_ascii_case("rediss+cluster") {
        "rediss"
    } else {
        "redis"
    };
    let (rest, fragment) = match rest.split_once('#') {
        Some((rest, fragment)) => (rest, format!("#{fragment}")),
        None => (rest, String::new()),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, format!("?{query}")),
        None => (rest, String::new()),
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if !matches!(path, "" | "/" | "/0") {
        return Err(format!(
            "a Redis Cluster has database 0 only, so the path must be /0 or nothing, not {path:?}"
        ));
    }
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    if hosts.is_empty() {
        return Err("no node; write HOST:PORT[,HOST:PORT…]".to_owned());
    }
    hosts
        .split(',')
        .map(|host| {
            if host.is_empty() {
                return Err("an empty node between commas".to_owned());
            }
            let node = format!("{node_scheme}://{userinfo}{host}/0{query}{fragment}");
            node.as_str()
                .into_connection_info()
                .map_err(|error| format!("node {host:?}: {error}"))?;
            Ok(node)
        })
        .collect()
}

/// The byte range of the password in `url`'s user-info part (`SCHEME://USER:PASSWORD@…`),
/// found without parsing the rest (a cluster URL's host list is not one URL host).
fn userinfo_password(url: &str) -> Option<std::ops::Range<usize>> {
    let authority_start = url.find("://")? + 3;
    let authority_len = url[authority_start..]
        .find(['/', '?', '#'])
        .unwrap_or(url.len() - authority_start);
    let authority = &url[authority_start..authority_start + authority_len];
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    Some(authority_start + colon + 1..authority_start + at)
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
        Err(_) => match userinfo_password(url) {
            Some(password) if !password.is_empty() => {
                let mut redacted = url.to_owned();
                redacted.replace_range(password, "***");
                if redacted.contains('?') {
                    "<redacted>".to_owned()
                } else {
                    redacted
                }
            }
            Some(_) => url.to_owned(),
            None if url.contains('@') || url.contains('?') => "<redacted>".to_owned(),
            None => url.to_owned(),
        },
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
        // A cluster URL: its user-info part as written.
        let mut forms = Vec::new();
        if let Some(password) = userinfo_password(url).filter(|range| !range.is_empty()) {
            forms.push(url[password.clone()].to_owned());
            forms.push(percent_decoded(&url[password]));
        }
        forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
        forms.dedup();
        return forms;
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
