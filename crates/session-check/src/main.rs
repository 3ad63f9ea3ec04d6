//! `session-check`: a debug command line for lipachat's 24-hour WhatsApp customer service
//! windows.
//!
//! ```text
//! session-check [--store STORE | --db PATH] [--json] [--now TIME] <COMMAND> ...
//!
//! record BUSINESS CUSTOMER [--at TIME]      record an inbound message, print the new state
//! status BUSINESS CUSTOMER                  open / closed / none (exit 0 open, 1 otherwise)
//! list [--state open|closed] [--closing-within DURATION]
//! send-contact BUSINESS CUSTOMER --name NAME --phone PHONE [SEND OPTIONS]
//! send-text BUSINESS CUSTOMER --text TEXT [SEND OPTIONS]
//! send-media BUSINESS CUSTOMER --type image|video|audio|document|sticker --url URL
//!              [--caption TEXT] [--filename NAME] [SEND OPTIONS]
//! send-buttons BUSINESS CUSTOMER --text TEXT --button ID:TITLE... [SEND OPTIONS]
//! send-list BUSINESS CUSTOMER --header TEXT --body TEXT --button-text TEXT
//!              (--section TITLE (--row ID:TITLE[:DESCRIPTION])+)+ [SEND OPTIONS]
//!   SEND OPTIONS: [--on-closed reject|template|queue] [--template NAME --language CODE
//!              [--param VALUE]...] [--margin DURATION] [--max-retries N] [--message-id UUID]
//!              [--dry-run]
//! send-template BUSINESS CUSTOMER --template NAME --language CODE [--param VALUE]...
//!              [--header-url URL [--header-type TYPE] | --header-text TEXT] [--dry-run] ...
//! templates BUSINESS                        the business's template catalog
//! pending [BUSINESS CUSTOMER]               queued messages: what each is, its id and age
//! deliver BUSINESS CUSTOMER                 send the queued messages if the window is open
//! forget BUSINESS CUSTOMER                  erase everything stored for the conversation
//! export / import                           JSON lines on stdout / stdin
//! verify [--accept]                         check a sled store's integrity
//! timeline BUSINESS CUSTOMER [--margin DURATION]   draw the conversation on the terminal
//! help [COMMAND]                            the help, or a command's
//! ```
//!
//! The global options may also follow the command. `--store` names a Redis server
//! (`redis://HOST:PORT/DB`, `rediss://` over TLS) or cluster (`redis+cluster://HOST:PORT,…`,
//! `rediss+cluster://`) or a sled database directory, `--db` a sled directory; without
//! either, `$SESSION_CHECK_STORE`, else `$SESSION_CHECK_DB`, else `./sessions.db`. `--now`
//! examines the windows as at another time; the real clock still bounds what is stored (no
//! time more than 5 minutes ahead of it), and the send commands (unless `--dry-run`) and
//! `deliver`, which reach the gateway, refuse it. Results go to stdout (`--json`: one JSON
//! object per line), errors to stderr as one line (`--json`: one JSON object with `error`
//! and `kind`) with exit status 2; usage errors exit 2 as well. Durations are humantime's
//! (`90s`, `1h30m`, `2d`); `--margin` also takes bare seconds.
//! The send commands, `deliver` and `templates` read `LIPACHAT_API_KEY` and
//! `LIPACHAT_BASE_URL`; the key
//! never appears in any output. `RUST_LOG=info` shows the library's log on stderr.
//!
//! The pieces: [`cli`] (the clap types and argument parsers), [`duration`] (durations),
//! [`help`] (the grouped `--help`), [`commands`] (each command, generic over the store),
//! [`output`] (human and JSON rendering), [`stored_message`] (reading queued messages and
//! send outcomes back), [`timeline`] (drawing a conversation), [`progress`] (import and
//! export progress bars), [`new_store`] (what a failed import takes away), [`error`] (what
//! ends with exit status 2).

mod cli;
mod commands;
mod duration;
mod error;
mod help;
mod new_store;
mod output;
mod progress;
mod remote;
mod stored_message;
mod timeline;

use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;
use clap::error::ErrorKind;
use lipachat_redis::{RedisConfig, RedisStore};
use lipachat_session::{OpenMode, SledConfig, SledStore};

use crate::cli::{Cli, Command, StoreChoice};
use crate::commands::Exit;
use crate::error::CliError;
use crate::new_store::NewStore;

/// The exit status of every error, usage errors included.
const ERROR_STATUS: u8 = 2;

/// The `kind` of a usage error under `--json`, as [`CliError::kind`] names the others.
const USAGE: &str = "usage";

fn main() -> ExitCode {
    let cli = match Cli::parse_args().and_then(Cli::check_globals) {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error, json_requested()),
    };
    init_tracing();
    let json = cli.json;
    match execute(cli) {
        Ok(exit) => exit.code(),
        Err(error) => {
            print_error(error.kind(), &error.to_string(), json);
            ExitCode::from(ERROR_STATUS)
        }
    }
}

/// Whether `--json` is among the options (up to a `--`), for a command line clap refused.
fn json_requested() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|arg| arg != "--")
        .any(|arg| arg == "--json")
}

/// Prints an error on stderr: `error: MESSAGE` on one line or, under `--json`, one JSON
/// object `{"error": MESSAGE, "kind": KIND}` (results stay on stdout either way).
fn print_error(kind: &str, message: &str, json: bool) {
    let message = one_line(message);
    if json {
        eprintln!("{}", serde_json::json!({"error": message, "kind": kind}));
    } else {
        eprintln!("error: {message}");
    }
}

/// Opens the store named on the command line and runs the command on it.
///
/// The one place that knows which store is used: another store is one more arm here, the
/// commands being generic over [`lipachat_session::Store`].
fn execute(mut cli: Cli) -> Result<Exit, CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    commands::check(&cli)?;
    // A running bot's admin routes instead of a store.
    if let Some(url) = cli.remote.clone() {
        return runtime.block_on(remote::run(&url, cli));
    }
    // Read and checked before the store is opened: a body that is not a webhook stores
    // nothing.
    if let Command::Ingest(args) = &mut cli.command {
        commands::prepare_ingest(args, cli.now)?;
    }
    // The catalog needs no store: none is opened.
    if let Command::Templates(args) = &cli.command {
        return runtime.block_on(commands::templates(args, cli.json));
    }
    let store = cli.store().map_err(CliError::Usage)?;
    if let Command::Verify(args) = &cli.command {
        return commands::verify(&store, args, cli.json);
    }
    let create = cli.command.creates_database();
    // An import into a sled path that holds nothing yet: if it fails, what it created
    // there is taken away again.
    let new_store = match (&store, &cli.command) {
        (StoreChoice::Sled(path), Command::Import) => NewStore::at(path),
        _ => None,
    };
    let result = runtime.block_on(async {
        match store {
            StoreChoice::Sled(path) => commands::run(open_sled(&path, create)?, cli).await,
            StoreChoice::Redis(config) => commands::run(open_redis(config).await?, cli).await,
        }
    });
    // The store is closed by now; the runtime goes too, with anything still holding it.
    drop(runtime);
    match (result, new_store) {
        (Err(error), Some(new_store)) => Err(match new_store.remove() {
            Ok(()) => error,
            Err(removal) => CliError::Incomplete(format!(
                "{error}; the store this import created at {} could not be removed: {removal}",
                new_store.path().display()
            )),
        }),
        (result, _) => result,
    }
}

/// Connects to Redis; an unreachable or unsuitable server is one error, within the
/// store's operation timeout (4 s).
async fn open_redis(config: RedisConfig) -> Result<RedisStore, CliError> {
    config
        .connect()
        .await
        .map_err(|error| CliError::OpenRedis(error.into()))
}

/// Opens the sled database; a command that only reads never creates one (a missing path
/// or an empty directory is refused, rather than a store made where a path was mistyped).
fn open_sled(path: &Path, create: bool) -> Result<SledStore, CliError> {
    let mode = if create {
        OpenMode::CreateIfMissing
    } else {
        OpenMode::Existing
    };
    SledConfig::new(path)
        .mode(mode)
        .open()
        .map_err(CliError::from)
}

/// `--help` and `--version` print on stdout and exit 0; anything else clap refuses is a
/// usage error: one line on stderr (a JSON object under `--json`), exit status 2.
fn usage_error(error: &clap::Error, json: bool) -> ExitCode {
    if !error.use_stderr() {
        // Nothing useful is left to do if stdout is gone.
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand
    ) {
        let commands: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_owned())
            .collect();
        let message = format!(
            "no command given; use one of {} (see session-check --help)",
            commands.join(", ")
        );
        print_error(USAGE, &message, json);
        return ExitCode::from(ERROR_STATUS);
    }
    let rendered = error.render().to_string();
    let message: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|line| !line.starts_with("Usage:") && !line.starts_with("For more information"))
        .filter(|line| !line.is_empty())
        .collect();
    let message = message.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    print_error(
        USAGE,
        &format!("{message} (see session-check --help)"),
        json,
    );
    ExitCode::from(ERROR_STATUS)
}

/// `text` on one line: line breaks (which a gateway's quoted body could hold) become spaces.
fn one_line(text: &str) -> String {
    text.split(['\n', '\r'])
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// With `RUST_LOG` set, the library's log goes to stderr; otherwise nothing is logged.
fn init_tracing() {
    let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG") else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
