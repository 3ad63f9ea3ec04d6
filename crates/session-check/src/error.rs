//! What can go wrong, as one line on stderr and exit status 2.

use lipachat_api::BuildError;
use lipachat_policy::PolicyError;
use lipachat_session::{RuleError, SessionError, StoreError};

/// A failure of a command: printed as `error: …` on one line of stderr, exit status 2.
///
/// None of these carry the API key: the library's errors never hold it, and this tool adds
/// none of its own.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Arguments that parse one by one but do not fit together.
    #[error("{0}")]
    Usage(String),
    /// A command that sends to the gateway was given `--now`: the gateway works on the
    /// real time.
    #[error(
        "{command} sends to the gateway, which judges the window by the real time, so it does not run under --now; {instead}"
    )]
    SendUnderNow {
        /// The command.
        command: &'static str,
        /// What to do instead.
        instead: &'static str,
    },
    /// A command that only reads was pointed at a path holding no store (nothing there,
    /// or an empty directory); nothing was created.
    #[error(
        "{0}; give --db PATH or --store STORE (or set SESSION_CHECK_DB or SESSION_CHECK_STORE), or create it with record or import"
    )]
    NoStore(StoreError),
    /// `ingest` could not read its input.
    #[error("cannot read the {what}: {source}")]
    Input {
        /// What was being read.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `ingest` was given a body that is not a webhook (malformed JSON, an unknown shape,
    /// too large); nothing was stored.
    #[error("not a webhook body: {0}; nothing was stored")]
    NotAWebhook(String),
    /// A command that sends was given a customer with no phone number: a user known only
    /// by a business-scoped user id (no alias names their phone), or a group. Nothing was
    /// sent.
    #[error(
        "{customer} has no phone number to send to: the gateway offers no way to address a user by business-scoped user id, or a group; nothing was sent"
    )]
    NotAddressable {
        /// The customer as given (the user id, or group:ID).
        customer: String,
    },
    /// `verify` found the store damaged (the report is on stdout).
    #[error("{0}")]
    Damaged(String),
    /// The Redis server named by `--store` could not be reached or used.
    #[error("cannot open the Redis store: {0}")]
    OpenRedis(StoreError),
    /// The store failed (in use by another process, corrupt, I/O, ...).
    #[error(transparent)]
    Store(StoreError),
    /// The session engine failed (for example an inbound time too far in the future).
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The send path failed.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The gateway client could not be configured (missing key, bad base URL, ...).
    #[error(transparent)]
    Client(#[from] BuildError),
    /// The window rule refused the margin.
    #[error("--margin: {0}")]
    Margin(#[from] RuleError),
    /// A message or template that does not validate.
    #[error(transparent)]
    Invalid(#[from] lipachat_api::ValidationError),
    /// Some results were printed, but the command did not fully succeed.
    #[error("{0}")]
    Incomplete(String),
    /// Writing the output or reading the input failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The failure.
        source: std::io::Error,
    },
    /// The async runtime could not start.
    #[error("could not start the runtime: {0}")]
    Runtime(std::io::Error),
}

impl From<StoreError> for CliError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NoStore { .. } => Self::NoStore(error),
            other => Self::Store(other),
        }
    }
}

impl CliError {
    /// Wraps an error writing results to stdout.
    pub fn output(source: std::io::Error) -> Self {
        Self::Io {
            context: "writing the output",
            source,
        }
    }
}
