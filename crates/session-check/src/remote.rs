//! `--remote URL`: `status`, `list` and `pending` against a running bot's read-only admin
//! routes (`lipachat-webhook`), printed by the same output code as against a store, with
//! the same exit status. The bot keeps its sled store locked, so this is how its windows
//! are seen while it runs.

use std::time::Duration;

use lipachat_session::view::{
    CLOSED_CAUSE_HEADER, PendingList, WindowList, WindowView as SharedWindowView,
    parse_closed_cause,
};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;

use crate::cli::{Cli, Command, List, Pair, StateFilter};
use crate::commands::consent::StatusView;
use crate::commands::{Exit, PendingView};
use crate::error::CliError;
use crate::output::{ListedWindow, Printer, WindowView};

/// The environment variable holding the bot's admin token.
pub const TOKEN_VAR: &str = "SESSION_CHECK_REMOTE_TOKEN";

/// How long connecting to the bot may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request to the bot may take in all.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of an error answer's body is quoted.
const QUOTED_BYTES: usize = 200;

/// Parses `--remote`: an `http://` or `https://` URL without credentials (the token goes
/// in a header, from the environment, never on the command line).
pub fn parse_remote_url(input: &str) -> Result<Url, String> {
    let url = Url::parse(input.trim())
        .map_err(|e| format!("{e}; expected the bot's base URL, such as http://127.0.0.1:8080"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the scheme {:?} is not http or https; expected the bot's base URL, such as http://127.0.0.1:8080",
            url.scheme()
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "the URL carries credentials, which are never sent that way; give the admin token in ${TOKEN_VAR}"
        ));
    }
    if url.cannot_be_a_base() || url.host_str().is_none() {
        return Err("the URL names no host; expected http://HOST:PORT".to_owned());
    }
    Ok(url)
}

/// Runs the command line's command against the bot at `url`.
pub async fn run(url: &Url, cli: Cli) -> Result<Exit, CliError> {
    let command = match &cli.command {
        Command::Status(_) => "status",
        Command::List(_) => "list",
        Command::Pending(_) => "pending",
        other => {
            return Err(CliError::RemoteCommand {
                command: other.name(),
            });
        }
    };
    if cli.now.is_some() {
        return Err(CliError::RemoteUnderNow);
    }
    let token = std::env::var(TOKEN_VAR)
        .ok()
        .filter(|token| !token.trim().is_empty())
        .ok_or(CliError::RemoteToken)?;
    let bot = Bot::new(url, token)?;
    let printer = Printer::new(cli.json);
    tracing::debug!(command, "running against a remote bot");
    match cli.command {
        Command::Status(pair) => status(&bot, &printer, &pair).await,
        Command::List(args) => list(&bot, &printer, &args).await,
        Command::Pending(args) => pending(&bot, &printer, args.pair().as_ref()).await,
        _ => Err(CliError::RemoteCommand { command }),
    }
}

/// A running bot's admin routes.
struct Bot {
    base: Url,
    token: String,
    http: reqwest::Client,
}

impl Bot {
    fn new(base: &Url, token: String) -> Result<Self, CliError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // A redirect could carry the token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| CliError::Remote {
                url: base.to_string(),
                reason: format!("cannot set up the HTTP client: {e}"),
            })?;
        Ok(Self {
            base: base.clone(),
            token,
            http,
        })
    }

    fn error(&self, reason: String) -> CliError {
        CliError::Remote {
            url: self.base.to_string(),
            reason,
        }
    }

    /// The URL of the route made of `segments` (each escaped as one path segment) under
    /// the base URL's path.
    fn route(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Url, CliError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| self.error("the URL cannot take a path".to_owned()))?
            .pop_if_empty()
            .extend(segments);
        url.set_query(None);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// GETs `url` with the admin token; a 200's JSON body and headers, else an error
    /// saying what the bot answered.
    async fn get<T: DeserializeOwned>(
        &self,
        url: Url,
    ) -> Result<(T, reqwest::header::HeaderMap), CliError> {
        let response = self
            .http
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.error(format!("cannot reach it: {}", without_url(&e))))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| {
            self.error(format!("the answer could not be read: {}", without_url(&e)))
        })?;
        if status != StatusCode::OK {
            return Err(self.error(refusal(status, &body)));
        }
        let parsed = serde_json::from_slice(&body).map_err(|e| {
            self.error(format!(
                "the answer is not the admin routes' JSON ({e}); is this a lipachat bot?"
            ))
        })?;
        Ok((parsed, headers))
    }
}

/// What a non-200 answer means, in one line.
fn refusal(status: StatusCode, body: &[u8]) -> String {
    let quoted: String = String::from_utf8_lossy(&body[..body.len().min(QUOTED_BYTES)])
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    match status {
        StatusCode::UNAUTHORIZED => format!(
            "the bot refused the admin token (401); check ${TOKEN_VAR} against the bot's LIPACHAT_ADMIN_TOKEN"
        ),
        StatusCode::NOT_FOUND => {
            "no such route (404); does the bot serve its admin routes (LIPACHAT_ADMIN_TOKEN set)?"
                .to_owned()
        }
        status => format!("answered {status}: {quoted}"),
    }
}

/// A reqwest error's text without the URL it names (printed once, by the caller).
fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text
            .replace(&format!(" ({url})"), "")
            .replace(url.as_str(), "the bot");
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// The admin route's status object: the window and the consent fields.
#[derive(Debug, serde::Deserialize)]
struct RemoteStatus {
    #[serde(flatten)]
    window: SharedWindowView,
    #[serde(flatten)]
    consent: lipachat_policy::consent::ConsentView,
}

/// `status BUSINESS CUSTOMER`: exit 0 open, 1 closed or none.
async fn status(bot: &Bot, printer: &Printer, pair: &Pair) -> Result<Exit, CliError> {
    let business = pair.business.to_string();
    let customer = pair.customer.to_string();
    let url = bot.route(&["admin", "windows", &business, &customer], &[])?;
    let (answer, headers): (RemoteStatus, _) = bot.get(url).await?;
    let cause = headers
        .get(CLOSED_CAUSE_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(parse_closed_cause);
    let view = StatusView::new(
        WindowView::from_shared(answer.window, cause),
        answer.consent,
    );
    printer.emit(&view)?;
    Ok(if view.is_open() {
        Exit::Success
    } else {
        Exit::Negative
    })
}

/// `list [--state open|closed] [--closing-within DURATION]`: exit 0 (2 when some stored
/// records could not be read).
async fn list(bot: &Bot, printer: &Printer, args: &List) -> Result<Exit, CliError> {
    let mut query = Vec::new();
    match args.state {
        Some(StateFilter::Open) => query.push(("state", "open".to_owned())),
        Some(StateFilter::Closed) => query.push(("state", "closed".to_owned())),
        None => {}
    }
    if let Some(span) = args.closing_within {
        query.push(("closing_within", span.num_seconds().to_string()));
    }
    let url = bot.route(&["admin", "windows"], &query)?;
    let (list, _): (WindowList, _) = bot.get(url).await?;
    for listed in &list.windows {
        printer.emit(&ListedWindow(WindowView::from_shared(
            listed.window.clone(),
            listed.closed_cause,
        )))?;
    }
    if list.windows.is_empty() && list.unreadable.is_empty() {
        printer.note("no conversations match")?;
    }
    if !list.unreadable.is_empty() {
        return Err(CliError::Incomplete(format!(
            "{} stored record(s) could not be read and were not listed: {}",
            list.unreadable.len(),
            list.unreadable.join("; ")
        )));
    }
    Ok(Exit::Success)
}

/// `pending [BUSINESS CUSTOMER]`: exit 0.
async fn pending(bot: &Bot, printer: &Printer, pair: Option<&Pair>) -> Result<Exit, CliError> {
    let url = match pair {
        Some(pair) => {
            let business = pair.business.to_string();
            let customer = pair.customer.to_string();
            bot.route(&["admin", "pending", &business, &customer], &[])?
        }
        None => bot.route(&["admin", "pending"], &[])?,
    };
    let (list, _): (PendingList, _) = bot.get(url).await?;
    for message in &list.messages {
        printer.emit(&PendingView::from_shared(message.clone()))?;
    }
    if list.messages.is_empty() {
        printer.note("no messages queued")?;
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_urls() {
        assert!(parse_remote_url("http://127.0.0.1:8080").is_ok());
        assert!(parse_remote_url("https://bot.example/prefix/").is_ok());
        for bad in ["", "127.0.0.1:8080", "ftp://host/", "redis://host:6379/0"] {
            assert!(parse_remote_url(bad).is_err(), "{bad}");
        }
        let with_password = parse_remote_url("http://admin:hunter2@127.0.0.1:8080");
        assert!(
            with_password
                .as_ref()
                .is_err_and(|e| !e.contains("hunter2") && e.contains(TOKEN_VAR)),
            "{with_password:?}"
        );
    }

    #[test]
    fn routes_escape_each_segment_under_the_base_path() {
        let Ok(base) = parse_remote_url("http://127.0.0.1:8080/bot/") else {
            panic!("a valid URL");
        };
        let bot = Bot {
            base,
            token: String::new(),
            http: reqwest::Client::new(),
        };
        let url = bot
            .route(
                &[
                    "admin",
                    "windows",
                    "254110090747",
                    "group:1203630/40694233820@g.us",
                ],
                &[("state", "open".to_owned())],
            )
            .map(|url| url.to_string())
            .unwrap_or_default();
        assert_eq!(
            url,
            "http://127.0.0.1:8080/bot/admin/windows/254110090747/group:1203630%2F40694233820@g.us?state=open"
        );
    }
}
