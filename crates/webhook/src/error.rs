//! What can be wrong with the serving side's configuration.

/// A configuration the webhook service refuses, before it serves anything. None of these
/// carries a secret's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A secret (verify token, app secret, admin token) is empty.
    #[error("the {name} is empty")]
    EmptySecret {
        /// Which secret.
        name: &'static str,
    },
    /// The admin token is too short to guard every conversation's data.
    #[error("the admin token has {len} characters; at least {min} are needed")]
    ShortAdminToken {
        /// Its length.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// Neither LipaChat's webhook token nor WhatsApp's secrets were given: no route
    /// would accept a webhook.
    #[error(
        "no webhook route is configured: give LipaChat's webhook token, or WhatsApp's verify token and app secret"
    )]
    NoWebhookRoute,
    /// A count that must be at least 1 is 0.
    #[error("{name} must be at least 1")]
    Zero {
        /// Which setting.
        name: &'static str,
    },
}
