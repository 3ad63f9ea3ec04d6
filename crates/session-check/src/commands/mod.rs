//! The commands, generic over the store, so another store (Redis) is one more `match` arm
//! where the store is opened.

mod outbox;
mod send;
mod transfer;
mod verify;
mod windows;

pub use verify::verify;

use std::process::ExitCode;
use std::sync::Arc;

use chrono::TimeDelta;
use lipachat_api::{Client, ClientBuilder, RetryPolicy};
use lipachat_policy::PolicyConfig;
use lipachat_session::{Clock, ManualClock, Sessions, Store, SystemClock};

use crate::cli::{Cli, Command, SendSettings};
use crate::error::CliError;
use crate::output::Printer;

/// How a command that did not fail ended: the answer is yes (exit 0) or no (exit 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exit status 0: success, or the positive answer (open, sent, nothing left queued).
    Success,
    /// Exit status 1: the negative answer (closed or none, rejected, messages remain).
    Negative,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> ExitCode {
        match self {
            Self::Success => ExitCode::SUCCESS,
            Self::Negative => ExitCode::from(1),
        }
    }
}

/// What every command works with: the session engine over the store (with the system
/// clock, or a fixed one from `--now`) and the printer.
pub struct Context<S> {
    /// The session engine.
    pub sessions: Sessions<S>,
    /// Where results go.
    pub printer: Printer,
}

/// Checks what the arguments cannot check one by one (combinations, the contact card, the
/// template), before any database is opened or created.
pub fn check(command: &Command) -> Result<(), CliError> {
    match command {
        Command::List(args) => windows::check_list(args),
        Command::SendContact(args) => send::check(args).map(drop),
        _ => Ok(()),
    }
}

/// Runs the command line's command against `store`, then flushes the store.
pub async fn run<S: Store + Clone>(store: S, cli: Cli) -> Result<Exit, CliError> {
    let clock: Arc<dyn Clock> = match cli.now {
        Some(now) => Arc::new(ManualClock::at(now)),
        None => Arc::new(SystemClock),
    };
    let context = Context {
        sessions: Sessions::new(store).with_clock(clock),
        printer: Printer::new(cli.json),
    };
    let result = match cli.command {
        Command::Record(args) => windows::record(&context, args).await,
        Command::Status(pair) => windows::status(&context, pair).await,
        Command::List(args) => windows::list(&context, args).await,
        Command::Forget(pair) => windows::forget(&context, pair).await,
        Command::SendContact(args) => send::send_contact(&context, args).await,
        Command::Pending(args) => outbox::pending(&context, args).await,
        Command::Deliver(args) => outbox::deliver(&context, args).await,
        Command::Export => transfer::export(&context).await,
        Command::Import => transfer::import(&context).await,
        // Run before any store is opened (it opens its own).
        Command::Verify(_) => Err(CliError::Usage(
            "verify runs on its own; it is dispatched before the store is opened".to_owned(),
        )),
    };
    let flushed = context.sessions.store().flush().await;
    let exit = result?;
    flushed?;
    Ok(exit)
}

/// The policy for `send-contact` and `deliver`: the default, with `--margin`.
fn policy(settings: &SendSettings) -> Result<PolicyConfig, CliError> {
    Ok(PolicyConfig::default().margin(TimeDelta::seconds(i64::from(settings.margin)))?)
}

/// The gateway client from `LIPACHAT_API_KEY` and `LIPACHAT_BASE_URL`, with
/// `--max-retries`.
fn client(settings: &SendSettings) -> Result<Client, CliError> {
    let retry = RetryPolicy {
        max_retries: settings.max_retries,
        ..RetryPolicy::default()
    };
    Ok(ClientBuilder::from_env()?.retry(retry).build()?)
}
