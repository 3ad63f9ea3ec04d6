//! What can go wrong, as one line on stderr (one JSON object under `--json`) and exit
//! status 2.

use lipachat_api::BuildError;
use lipachat_policy::PolicyError;
use lipachat_session::{RuleError, SessionError, StoreError};

/// A failure of a command: printed as `error: …` on one line of stderr (under `--json`,
/// one JSON object naming its [`CliError::kind`]), exit status 2.
///
/// None of these carry the API key: the library's errors never hold it, and this tool adds
/// none of its own.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// A request made outside the send path (the template catalog) failed.
    #[error(transparent)]
    Gateway(#[from] lipachat_api::ApiError),
    /// The window rule refused the margin.
    #[error("--margin: {0}")]
    Margin(#[from] RuleError),
    /// A message or template that does not validate.
    #[error(transparent)]
    Invalid(#[from] lipachat_api::ValidationError),
    /// A send outcome the store keeps cannot be read (the send path would refuse it too).
    #[error("the stored outcome of message {message_id} cannot be read: {detail}")]
    UnreadableOutcome {
        /// The `messageId` it is stored under.
        message_id: lipachat_api::MessageId,
        /// What is wrong with it.
        detail: String,
    },
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
    /// `--remote` was given with a command that does not run against a bot's admin
    /// routes.
    #[error("{command} does not run with --remote; only status, list and pending do")]
    RemoteCommand {
        /// The command.
        command: &'static str,
    },
    /// `--remote` was given with `--now`: the bot examines its windows at its own time.
    #[error(
        "--remote reads a running bot's windows at the bot's own time, so it does not run under --now; leave out --now"
    )]
    RemoteUnderNow,
    /// `--remote` was given without `$SESSION_CHECK_REMOTE_TOKEN`.
    #[error(
        "--remote needs the bot's admin token in $SESSION_CHECK_REMOTE_TOKEN (the bot's LIPACHAT_ADMIN_TOKEN); it is not set"
    )]
    RemoteToken,
    /// The bot named by `--remote` could not be reached, refused the request, or answered
    /// something that is not its admin routes' JSON. Never holds the token.
    #[error("remote bot at {url}: {reason}")]
    Remote {
        /// The bot's base URL.
        url: String,
        /// What went wrong.
        reason: String,
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
    /// A short, stable name for the kind of error: the `kind` of the JSON object printed
    /// under `--json` (`usage`, `no_store`, `store`, `policy`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Usage(_) | Self::SendUnderNow { .. } => "usage",
            Self::NoStore(_) => "no_store",
            Self::Input { .. } => "input",
            Self::NotAWebhook(_) => "not_a_webhook",
            Self::NotAddressable { .. } => "not_addressable",
            Self::Damaged(_) => "damaged",
            Self::OpenRedis(_) => "open_redis",
            Self::Store(_) => "store",
            Self::Session(_) => "session",
            Self::Policy(_) => "policy",
            Self::Client(_) => "client",
            Self::Gateway(_) => "gateway",
            Self::Margin(_) => "usage",
            Self::Invalid(_) => "invalid",
            Self::UnreadableOutcome { .. } => "unreadable_outcome",
            Self::Incomplete(_) => "incomplete",
            Self::Io { .. } => "io",
            Self::RemoteCommand { .. } | Self::RemoteUnderNow | Self::RemoteToken => "usage",
            Self::Remote { .. } => "remote",
            Self::Runtime(_) => "runtime",
        }
    }

    /// Wraps an error writing results to stdout.
    pub fn output(source: std::io::Error) -> Self {
        Self::Io {
            context: "writing the output",
            source,
        }
    }
}
