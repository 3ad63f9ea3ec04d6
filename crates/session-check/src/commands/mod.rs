//! The commands, generic over the store, so another store (Redis) is one more `match` arm
//! where the store is opened.

pub mod consent;
mod ingest;
mod outbox;
mod send;
mod template;
mod timeline;
mod transfer;
mod verify;
mod windows;

pub use ingest::prepare as prepare_ingest;
pub use outbox::PendingView;
pub use template::templates;
pub use verify::verify;

use std::process::ExitCode;

use lipachat_api::{Client, ClientBuilder, RetryPolicy};
use lipachat_policy::{Messenger, PolicyConfig};
use lipachat_session::{Conversation, Customer, ManualClock, Sessions, Store};

use crate::cli::{Cli, Command, CustomerArg, Pair, SendSettings};
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

/// What every command works with: the session engine over the store (on the system clock,
/// examining windows at `--now` when given) and the printer.
pub struct Context<S> {
    /// The session engine.
    pub sessions: Sessions<S>,
    /// Where results go.
    pub printer: Printer,
}

/// Checks what the arguments cannot check one by one (combinations, the contact card, the
/// template, `--now` with a command that sends), before any database is opened or created.
pub fn check(cli: &Cli) -> Result<(), CliError> {
    refuse_sending_under_now(cli)?;
    match &cli.command {
        Command::List(args) => windows::check_list(args),
        Command::SendTemplate(args) => template::check(args).map(drop),
        command => match send::free_form(command) {
            Some(send) => send.map(drop),
            None => Ok(()),
        },
    }
}

/// Nothing that reaches the gateway runs under `--now`: the gateway judges the window by
/// the real time, so a send decided at another time would go out at the real one (and the
/// send path would write that other time into the store). `send-contact --dry-run` sends
/// nothing and may examine any time.
fn refuse_sending_under_now(cli: &Cli) -> Result<(), CliError> {
    if cli.now.is_none() {
        return Ok(());
    }
    let dry_run = match &cli.command {
        Command::SendTemplate(args) => Some(args.run.dry_run),
        command => send::free_form(command)
            .and_then(Result::ok)
            .map(|send| send.options.run.dry_run),
    };
    let (command, instead) = match &cli.command {
        command if dry_run == Some(false) => (
            command.name(),
            "add --dry-run to see what it would do at that time, or leave out --now",
        ),
        Command::Deliver(_) => (
            "deliver",
            "leave out --now; pending --now TIME shows what is queued at that time",
        ),
        _ => return Ok(()),
    };
    Err(CliError::SendUnderNow { command, instead })
}

/// Runs the command line's command against `store`, then flushes the store.
pub async fn run<S: Store + Clone>(store: S, cli: Cli) -> Result<Exit, CliError> {
    // The real clock stays the system clock: --now only changes the time windows are
    // examined at, so no time ahead of the real one is ever stored.
    let mut sessions = Sessions::new(store);
    if let Some(now) = cli.now {
        sessions = sessions.with_examined_clock(ManualClock::at(now));
    }
    let context = Context {
        sessions,
        printer: Printer::new(cli.json),
    };
    let result = match cli.command {
        Command::Record(args) => windows::record(&context, args).await,
        Command::Status(pair) => windows::status(&context, pair).await,
        Command::List(args) => windows::list(&context, args).await,
        Command::Forget(pair) => windows::forget(&context, pair).await,
        Command::SendTemplate(args) => template::send_template(&context, args).await,
        // Opens no store; dispatched before one is opened.
        Command::Templates(_) => Err(CliError::Usage(
            "templates runs on its own; it is dispatched before the store is opened".to_owned(),
        )),
        Command::Pending(args) => outbox::pending(&context, args).await,
        Command::Deliver(args) => outbox::deliver(&context, args).await,
        Command::Export => transfer::export(&context).await,
        Command::Import => transfer::import(&context).await,
        Command::Ingest(args) => ingest::ingest(&context, args, cli.now).await,
        Command::Timeline(args) => timeline::timeline(&context, args).await,
        Command::Optout(pair) => consent::opt(&context, pair, true).await,
        Command::Optin(pair) => consent::opt(&context, pair, false).await,
        Command::Costs(args) => consent::costs(&context, args).await,
        command @ (Command::SendContact(_)
        | Command::SendText(_)
        | Command::SendMedia(_)
        | Command::SendButtons(_)
        | Command::SendList(_)) => match send::free_form(&command) {
            Some(Ok(send)) => send::send_free_form(&context, send).await,
            Some(Err(error)) => Err(error),
            None => Err(CliError::Usage("not a send command".to_owned())),
        },
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

/// The session engine for the send commands and `deliver`: the command's, with `--margin`
/// in its window rule (the one rule the send path and a dry run decide with).
fn sending_sessions<S: Store + Clone>(
    context: &Context<S>,
    settings: &SendSettings,
) -> Result<Sessions<S>, CliError> {
    let rule = context.sessions.rule().with_margin(settings.margin.value)?;
    Ok(context.sessions.clone().with_rule(rule))
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

/// The policy's send path over this run's store (with `--margin`), with the gateway
/// client `client` makes.
fn messenger<S: Store + Clone>(
    context: &Context<S>,
    settings: &SendSettings,
    config: PolicyConfig,
) -> Result<Messenger<S>, CliError> {
    Ok(Messenger::new(
        sending_sessions(context, settings)?,
        client(settings)?,
        config,
    ))
}

/// Whether finding a conversation may create what it names (a user's or a group's
/// handle): only commands that record do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Allocate a handle for a user or group met for the first time.
    Create,
    /// Look up only: a user or group never met names no conversation.
    Find,
}

/// The conversation a command's BUSINESS CUSTOMER names: a phone's; for a user id, the
/// phone's when an alias names it, else the user's own; a group's. `None` when a user or
/// group is not known here and `lookup` is [`Lookup::Find`].
pub async fn conversation_of<S: Store>(
    sessions: &Sessions<S>,
    pair: &Pair,
    lookup: Lookup,
) -> Result<Option<Conversation>, CliError> {
    let business = pair.business;
    Ok(match (&pair.customer, lookup) {
        (CustomerArg::Phone(phone), _) => Some(Conversation::new(business, *phone)),
        (CustomerArg::User(user), Lookup::Create) => sessions
            .sender_conversation(business, None, Some(user))
            .await?
            .map(|resolved| resolved.conversation),
        (CustomerArg::User(user), Lookup::Find) => {
            sessions
                .find_conversation(business, None, Some(user), None)
                .await?
        }
        (CustomerArg::Group(group), Lookup::Create) => {
            Some(sessions.group_conversation(business, group).await?)
        }
        (CustomerArg::Group(group), Lookup::Find) => {
            sessions
                .find_conversation(business, None, None, Some(group))
                .await?
        }
    })
}

/// How output names a conversation's customer: a phone's canonical digits, a user's
/// business-scoped user id, `group:ID` for a group (the forms CUSTOMER accepts), never a
/// store's handle. A handle the registry does not name shows as `user#N` / `group#N`.
pub async fn customer_name<S: Store>(store: &S, customer: Customer) -> Result<String, CliError> {
    Ok(lipachat_session::view::customer_name(store, customer).await?)
}

/// The conversation a sending command names, when it can be sent to: a phone's (for a user
/// id, the phone an alias names). A user known only by id, or a group, is
/// [`CliError::NotAddressable`], before anything is sent.
pub async fn addressable<S: Store>(
    context: &Context<S>,
    pair: &Pair,
) -> Result<Conversation, CliError> {
    match conversation_of(&context.sessions, pair, Lookup::Find).await? {
        Some(conversation) if conversation.phone().is_some() => Ok(conversation),
        _ => Err(CliError::NotAddressable {
            customer: pair.customer.to_string(),
        }),
    }
}
