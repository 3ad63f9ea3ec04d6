//! Why opening a [`crate::RedisStore`] failed, sorted so a caller (or an operator
//! reading the message) knows what to fix: the URL, the credentials, the certificate,
//! the network, or the server.

use std::path::PathBuf;

use lipachat_session::StoreError;
use redis::{ErrorKind, RedisError};

use crate::config::ConfigError;

/// Why [`crate::RedisConfig::connect`] (or [`crate::RedisStore::connect`]) failed.
///
/// Every message names the server with its password hidden and never holds the password,
/// whatever the server answered. Converts into [`StoreError::Backend`] for callers that
/// handle store errors only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The configuration cannot be used (the URL does not parse).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The certificate authority file cannot be read or holds no usable certificate.
    #[error(
        "cannot use the certificate authority file {}: {detail}; give a PEM file of CA certificates (LIPACHAT_REDIS_CA_CERT or RedisConfig::with_ca_cert)",
        path.display()
    )]
    CaCertificate {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        detail: String,
    },
    /// The server refused the user name or password (`WRONGPASS`), or wants one and was
    /// given none (`NOAUTH`).
    #[error(
        "redis at {endpoint}: authentication failed: the server refused the user name or password (or the user is disabled, or it requires one and none was given); the password is not shown"
    )]
    Authentication {
        /// The server, password hidden.
        endpoint: String,
    },
    /// The server's TLS certificate is not trusted: signed by an authority that is in
    /// neither the system's roots nor the configured CA file, expired, or not issued for
    /// the host name.
    #[error(
        "redis at {endpoint}: the server's TLS certificate is not trusted ({detail}); add its certificate authority with LIPACHAT_REDIS_CA_CERT=/path/to/ca.pem (or RedisConfig::with_ca_cert), or check the host name"
    )]
    UntrustedCertificate {
        /// The server, password hidden.
        endpoint: String,
        /// What the certificate check said.
        detail: String,
    },
    /// The TLS handshake failed for another reason (for example the server does not speak
    /// TLS on that port).
    #[error("redis at {endpoint}: TLS handshake failed: {detail}")]
    Tls {
        /// The server, password hidden.
        endpoint: String,
        /// What failed.
        detail: String,
    },
    /// The ACL user lacks a permission the store needs (`NOPERM`); `docs/redis.md`
    /// lists the least permissions.
    #[error(
        "redis at {endpoint}: the user lacks a permission the store needs: {detail}; grant the permissions listed in docs/redis.md (least ACL permissions)"
    )]
    Permission {
        /// The server, password hidden.
        endpoint: String,
        /// The server's refusal.
        detail: String,
    },
    /// No connection could be made, or the server did not answer in time.
    #[error("redis at {endpoint}: cannot connect: {detail}")]
    Unreachable {
        /// The server, password hidden.
        endpoint: String,
        /// What failed.
        detail: String,
    },
    /// The server answers, but the store cannot use it: too old, a cluster node named by
    /// a single-server URL (or the reverse), or a key schema this build does not read.
    #[error("redis at {endpoint}: {detail}")]
    Unsuitable {
        /// The server, password hidden.
        endpoint: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The server answered one of the store's checks with an error.
    #[error("redis at {endpoint}: {detail}")]
    Server {
        /// The server, password hidden.
        endpoint: String,
        /// The command and the server's answer.
        detail: String,
    },
}

impl From<ConnectError> for StoreError {
    fn from(error: ConnectError) -> Self {
        if matches!(error, ConnectError::Unreachable { .. }) {
            StoreError::backend_unavailable(crate::REDIS_BACKEND, error)
        } else {
            StoreError::backend(crate::REDIS_BACKEND, error)
        }
    }
}

/// The certificate check that failed in `error`'s chain of causes, if one did, or
/// another TLS failure: `Ok(certificate error)`, `Err(other TLS error)`.
fn tls_failure(error: &RedisError) -> Option<Result<String, String>> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(current) = cause {
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(tls) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(tls_detail(tls));
        }
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls_detail(tls));
        }
        cause = current.source();
    }
    None
}

fn tls_detail(error: &rustls::Error) -> Result<String, String> {
    match error {
        rustls::Error::InvalidCertificate(reason) => Ok(format!("{reason:?}")),
        other => Err(other.to_string()),
    }
}

/// Sorts a redis-rs error met while connecting into a [`ConnectError`]; `hide` takes
/// the password out of any text.
pub(crate) fn classify(
    endpoint: &str,
    doing: &str,
    error: &RedisError,
    hide: impl Fn(&str) -> String,
) -> ConnectError {
    let endpoint = endpoint.to_owned();
    let code = error.code().unwrap_or_default();
    if error.kind() == ErrorKind::AuthenticationFailed || matches!(code, "WRONGPASS" | "NOAUTH") {
        return ConnectError::Authentication { endpoint };
    }
    if code == "NOPERM" {
        return ConnectError::Permission {
            endpoint,
            detail: hide(&format!("{doing}: {error}")),
        };
    }
    match tls_failure(error) {
        Some(Ok(detail)) => {
            return ConnectError::UntrustedCertificate {
                endpoint,
                detail: hide(&detail),
            };
        }
        Some(Err(detail)) => {
            return ConnectError::Tls {
                endpoint,
                detail: hide(&detail),
            };
        }
        None => {}
    }
    let detail = hide(&format!("{doing}: {error}"));
    if error.is_io_error() || error.is_timeout() || error.is_connection_refusal() {
        ConnectError::Unreachable { endpoint, detail }
    } else {
        ConnectError::Server { endpoint, detail }
    }
}
