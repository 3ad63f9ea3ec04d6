//! The errors a send can end with, and the validation errors raised before any request.

use std::time::Duration;

use thiserror::Error;

/// Why a message, key or setting was refused before any request was made.
///
/// None of these variants ever holds the API key: a rejected key is described by its
/// defect only.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// The API key is empty, too long, or holds whitespace, control or non-ASCII characters.
    #[error("invalid API key: {reason}")]
    ApiKey {
        /// What is wrong with it (never the key itself).
        reason: &'static str,
    },
    /// A contact card's formatted name is empty or only whitespace.
    #[error("contact name must not be empty")]
    EmptyName,
    /// A contact card's formatted name is longer than allowed.
    #[error("contact name has {chars} characters; at most {max} are allowed")]
    NameTooLong {
        /// Its length in characters.
        chars: usize,
        /// The limit.
        max: usize,
    },
    /// A text field holds a control character (line breaks included) where none is allowed.
    #[error("{field} must not contain control characters")]
    ControlCharacter {
        /// Which field.
        field: &'static str,
    },
    /// A contact card has no phone number.
    #[error("a contact card needs at least one phone number")]
    NoPhones,
    /// A contact card has more phone numbers than allowed.
    #[error("a contact card has {count} phone numbers; at most {max} are allowed")]
    TooManyPhones {
        /// How many it had.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A contact phone's `type` (Cell, Home, Work, ...) is empty or too long.
    #[error("phone type must be 1 to {max} characters, got {chars}")]
    PhoneType {
        /// Its length in characters.
        chars: usize,
        /// The limit.
        max: usize,
    },
    /// A phone number that is not in international form.
    #[error(transparent)]
    Phone(#[from] lipachat_session::PhoneError),
    /// A template name that is empty, too long or not made of `[a-z0-9_]`.
    #[error("template name {name:?} is invalid: {reason}")]
    TemplateName {
        /// The name as given (truncated to 80 characters).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A language code that is not of the form `en`, `fil`, `en_US` or `pt_BR`.
    #[error(
        "language code {code:?} is invalid: use a language code such as \"en\", \"fil\", \"en_US\" or \"pt_BR\""
    )]
    LanguageCode {
        /// The code as given (truncated to 80 characters).
        code: String,
    },
    /// A template placeholder (body or text header) WhatsApp would refuse.
    #[error("template {place} placeholder is invalid: {reason}")]
    Placeholder {
        /// `body #N` (counting from 1) or `header`.
        place: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A media URL that is not an absolute `https://` URL with a host and no credentials.
    #[error("media URL is invalid: {reason}")]
    MediaUrl {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A text message with nothing but whitespace.
    #[error("text message must not be empty")]
    EmptyText,
    /// A text message longer than WhatsApp's 4096 characters.
    #[error("text message has {chars} characters; WhatsApp allows at most {max}")]
    TextTooLong {
        /// Its length in characters.
        chars: usize,
        /// The limit (4096).
        max: usize,
    },
    /// The conversation is with a user known only by a business-scoped user id, or with a
    /// group: the gateway offers no way to address either, so nothing can be sent to it.
    #[error(
        "{conversation} has no phone number to send to: the gateway offers no way to address a user by business-scoped user id, or a group"
    )]
    NotAddressable {
        /// The conversation.
        conversation: lipachat_session::Conversation,
    },
    /// A required text field of a message is empty or only whitespace.
    #[error("{field} must not be empty")]
    EmptyField {
        /// Which field (`caption`, `button #2 title`, ...).
        field: String,
    },
    /// A text field of a message is longer than WhatsApp (or the gateway) allows.
    #[error("{field} has {chars} characters; at most {max} are allowed")]
    FieldTooLong {
        /// Which field.
        field: String,
        /// Its length in characters (Unicode scalar values).
        chars: usize,
        /// The limit.
        max: usize,
    },
    /// A message holds fewer or more items (buttons, sections, rows) than allowed.
    #[error("{field}: {count} given; {min} to {max} are allowed")]
    ItemCount {
        /// What was counted (`buttons`, `sections`, `rows in all`).
        field: String,
        /// How many were given.
        count: usize,
        /// The fewest allowed.
        min: usize,
        /// The most allowed.
        max: usize,
    },
    /// Two items that must differ (button ids, list row ids) hold the same value.
    #[error("{field} {value:?} appears more than once; each must be unique")]
    DuplicateValue {
        /// Which field (`button id`, `row id`).
        field: String,
        /// The repeated value (shortened to 80 characters).
        value: String,
    },
    /// A field given to a kind of message that does not take it (a caption on audio, a
    /// file name on an image).
    #[error("{field} is not allowed {reason}")]
    FieldNotAllowed {
        /// Which field.
        field: &'static str,
        /// Why, naming the kind (`on audio`, `except on documents`).
        reason: &'static str,
    },
    /// A field whose value has the wrong form (a control character, a path in a file
    /// name, initial data that is not a JSON object).
    #[error("{field} is invalid: {reason}")]
    InvalidField {
        /// Which field.
        field: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Why a client could not be built ([`ClientBuilder::build`](crate::ClientBuilder::build),
/// [`ClientBuilder::from_env`](crate::ClientBuilder::from_env)): a setting is missing or
/// cannot be used. Nothing was sent; fix the configuration rather than retry.
///
/// No variant holds the API key or the base URL as given (it might hold a misplaced
/// secret).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The API key failed validation.
    #[error("invalid API key: {0}")]
    Invalid(#[from] ValidationError),
    /// The base URL uses plain `http://` to a host that is not loopback; refused before any
    /// name lookup or connection so the key never crosses a network in clear text.
    #[error(
        "refusing plain http:// to {host}: the API key would cross the network in clear text; use https:// (plain http is allowed only to 127.0.0.0/8, ::1 and localhost)"
    )]
    InsecureBaseUrl {
        /// The host that was refused.
        host: String,
    },
    /// The base URL cannot be used (not a URL, wrong scheme, credentials, query or fragment).
    #[error("invalid base URL: {reason}")]
    InvalidBaseUrl {
        /// What is wrong with it (the URL itself is not repeated, in case it holds a secret).
        reason: String,
    },
    /// `LIPACHAT_API_KEY` is unset or empty.
    #[error("LIPACHAT_API_KEY is not set")]
    MissingApiKey,
    /// The HTTP client could not be built (TLS initialisation failed).
    #[error("could not build the HTTP client: {detail}")]
    HttpClient {
        /// The cause.
        detail: String,
    },
}

/// Everything a send can end with.
///
/// [`ApiError::retry_later_may_help`] tells whether sending the same message again later
/// (with the same `messageId`) could succeed; [`ApiError::is_window_closed`] tells whether
/// the gateway reported WhatsApp's 24-hour window as closed, so the caller can record it
/// and fall back to a template.
///
/// No variant holds the API key or a header value: strings taken from the gateway's body
/// are shortened and have any occurrence of the key replaced by `***`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The message, a phone number or the key failed validation; no request was made.
    #[error("invalid input: {0}")]
    Invalid(#[from] ValidationError),
    /// HTTP 401: the gateway refused the key (its body says `"status": "success"` anyway).
    #[error("the gateway refused the API key (HTTP 401, invalid credentials)")]
    InvalidCredentials,
    /// HTTP 400: the gateway rejected the request as malformed.
    #[error("the gateway rejected the request as malformed (HTTP 400): {error}{}", path.as_deref().map(|p| format!(" at {p}")).unwrap_or_default())]
    BadRequest {
        /// The gateway's `error` (or `message`) text.
        error: String,
        /// The gateway's `path`, when it gave one.
        path: Option<String>,
    },
    /// The gateway answered but did not accept the message (`"status": "error"`, null
    /// `data`, or a `data.status` other than `SENT`).
    #[error("the gateway refused the message: {message}")]
    Refused {
        /// The gateway's message, shortened.
        message: String,
    },
    /// WhatsApp's error 131047 ("re-engagement message"): the 24-hour window is closed, so
    /// only a template may be sent until the customer writes again.
    #[error("the customer service window is closed (WhatsApp 131047): {detail}")]
    WindowClosed {
        /// The text or code that named it, shortened.
        detail: String,
    },
    /// WhatsApp refused a marketing template: 131049 (the per-user marketing limit) or
    /// 131050 (the customer stopped marketing messages from this business). Named in the
    /// answer's code, its `errors`, or WhatsApp's wording, whatever the HTTP status; never
    /// retried (a retry soon cannot help, and Meta warns it may lengthen the block).
    #[error("WhatsApp refused the marketing template ({}): {detail}", match refusal {
        crate::reengagement::MarketingRefusal::OptedOut => "131050, the customer stopped marketing messages",
        _ => "131049, the per-user marketing limit",
    })]
    MarketingRefused {
        /// Which of the two refusals it is.
        refusal: crate::reengagement::MarketingRefusal,
        /// The answer's text, shortened, the key redacted.
        detail: String,
    },
    /// HTTP 429: too many requests.
    #[error("the gateway is rate limiting (HTTP 429){}", retry_after.map(|d| format!(", retry after {} s", d.as_secs_f64())).unwrap_or_default())]
    RateLimited {
        /// The `Retry-After` the gateway asked for, if any.
        retry_after: Option<Duration>,
    },
    /// HTTP 408 or 5xx: the gateway (or a proxy before it) is unavailable.
    #[error("the gateway is unavailable (HTTP {status}): {excerpt}")]
    Unavailable {
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        excerpt: String,
    },
    /// A body that is not what the gateway documents, or a status it does not use.
    #[error("unexpected response (HTTP {status}): {excerpt}")]
    UnexpectedResponse {
        /// The HTTP status.
        status: u16,
        /// The start of the body (cut at a few hundred characters).
        excerpt: String,
    },
    /// One attempt took longer than the configured request timeout.
    #[error("the gateway did not answer within {} ms", after.as_millis())]
    Timeout {
        /// The timeout that ran out.
        after: Duration,
    },
    /// Every one of the client's request slots (`ClientBuilder::max_in_flight`) stayed
    /// in use for the whole time allowed to the attempt; no request was made.
    #[error(
        "all {limit} of the client's request slots stayed in use for {} ms; nothing was sent",
        waited.as_millis()
    )]
    Busy {
        /// The client's cap on requests in flight.
        limit: usize,
        /// How long the attempt waited for a slot.
        waited: Duration,
    },
    /// No connection could be made (refused, unreachable, DNS or TLS failure, or the
    /// connect timeout).
    #[error("could not connect to the gateway: {detail}")]
    Connect {
        /// The cause, without URL or headers.
        detail: String,
    },
    /// The connection failed after it was made (reset, closed mid-response).
    #[error("the connection to the gateway failed: {detail}")]
    Transport {
        /// The cause, without URL or headers.
        detail: String,
    },
    /// The send's deadline (the window's expiry less the safety margin) came before
    /// another attempt could start. An earlier attempt may still have reached the gateway:
    /// a later send must reuse the same `messageId`.
    #[error("stopped after {attempts} attempt(s): the send's deadline came before another could start{}", last.as_ref().map(|e| format!("; last error: {e}")).unwrap_or_default())]
    DeadlineReached {
        /// How many HTTP requests were made.
        attempts: u32,
        /// The last attempt's error, if one was made; also its
        /// [`source`](std::error::Error::source).
        #[source]
        last: Option<Box<ApiError>>,
    },
    /// Every attempt failed with a cause worth retrying, and the retries ran out.
    #[error("gave up after {attempts} attempts; last error: {last}")]
    RetriesExhausted {
        /// How many HTTP requests were made.
        attempts: u32,
        /// The last attempt's error; also its [`source`](std::error::Error::source).
        #[source]
        last: Box<ApiError>,
    },
}

impl ApiError {
    /// Whether sending the same message again later (same `messageId`) could succeed.
    ///
    /// True for connection failures, timeouts, 408, 429 and 5xx; false for invalid input,
    /// bad keys, malformed requests, refusals and a closed window (which needs a template,
    /// not a retry). For [`ApiError::RetriesExhausted`], the answer for its last cause.
    pub fn retry_later_may_help(&self) -> bool {
        match self {
            Self::RetriesExhausted { last, .. } => last.retry_later_may_help(),
            // A later send, decided again against the window, may go (with the same id).
            Self::DeadlineReached { .. } => true,
            other => other.is_transient(),
        }
    }

    /// Whether the gateway reported WhatsApp's 24-hour window as closed (131047), directly
    /// or as the last cause inside [`ApiError::RetriesExhausted`].
    pub fn is_window_closed(&self) -> bool {
        match self {
            Self::WindowClosed { .. } => true,
            Self::RetriesExhausted { last, .. } => last.is_window_closed(),
            Self::DeadlineReached {
                last: Some(last), ..
            } => last.is_window_closed(),
            _ => false,
        }
    }

    /// The marketing refusal (131049 per-user marketing limit, 131050 opted out) the
    /// gateway's answer names: [`ApiError::MarketingRefused`], else looked for in the
    /// innermost cause's text.
    pub fn marketing_refusal(&self) -> Option<crate::reengagement::MarketingRefusal> {
        match self.root() {
            Self::MarketingRefused { refusal, .. } => Some(*refusal),
            root => crate::reengagement::marketing_refusal_in_text(&root.to_string()),
        }
    }

    /// The innermost cause: the last attempt's error for [`ApiError::RetriesExhausted`],
    /// this error otherwise.
    pub fn root(&self) -> &ApiError {
        match self {
            Self::RetriesExhausted { last, .. } => last.root(),
            Self::DeadlineReached {
                last: Some(last), ..
            } => last.root(),
            other => other,
        }
    }

    /// Whether this one attempt's failure is retried by the client.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. }
                | Self::Transport { .. }
                | Self::Timeout { .. }
                | Self::Busy { .. }
                | Self::RateLimited { .. }
                | Self::Unavailable { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_classification() {
        let timeout = ApiError::Timeout {
            after: Duration::from_secs(15),
        };
        assert!(timeout.retry_later_may_help());
        assert!(!ApiError::InvalidCredentials.retry_later_may_help());
        let closed = ApiError::WindowClosed {
            detail: "131047".into(),
        };
        assert!(!closed.retry_later_may_help());
        assert!(closed.is_window_closed());
        let wrapped = ApiError::RetriesExhausted {
            attempts: 4,
            last: Box::new(closed.clone()),
        };
        assert!(wrapped.is_window_closed());
        assert!(!wrapped.retry_later_may_help());
        assert_eq!(wrapped.root(), &closed);
        let wrapped = ApiError::RetriesExhausted {
            attempts: 4,
            last: Box::new(timeout),
        };
        assert!(wrapped.retry_later_may_help());
        assert!(!wrapped.is_window_closed());
        assert_eq!(
            wrapped.to_string(),
            "gave up after 4 attempts; last error: the gateway did not answer within 15000 ms"
        );
    }

    /// The last attempt's error is the `source()` of the error that wraps it, so an
    /// error reporter that walks the chain reaches it.
    #[test]
    fn the_last_cause_is_the_source() {
        use std::error::Error as _;
        let timeout = ApiError::Timeout {
            after: Duration::from_secs(15),
        };
        let exhausted = ApiError::RetriesExhausted {
            attempts: 4,
            last: Box::new(timeout.clone()),
        };
        let source = exhausted.source().map(ToString::to_string);
        assert_eq!(source, Some(timeout.to_string()));
        let stopped = ApiError::DeadlineReached {
            attempts: 2,
            last: Some(Box::new(timeout.clone())),
        };
        assert_eq!(
            stopped.source().map(ToString::to_string),
            Some(timeout.to_string())
        );
        let before_any = ApiError::DeadlineReached {
            attempts: 0,
            last: None,
        };
        assert!(before_any.source().is_none());
    }

    #[test]
    fn bad_request_display_names_the_path() {
        let err = ApiError::BadRequest {
            error: "Bad Request".into(),
            path: Some("/api/v1/whatsapp/contact".into()),
        };
        assert_eq!(
            err.to_string(),
            "the gateway rejected the request as malformed (HTTP 400): Bad Request at /api/v1/whatsapp/contact"
        );
        let err = ApiError::RateLimited {
            retry_after: Some(Duration::from_millis(1500)),
        };
        assert_eq!(
            err.to_string(),
            "the gateway is rate limiting (HTTP 429), retry after 1.5 s"
        );
    }
}
