//! `session-check`: a debug command line for lipachat's 24-hour WhatsApp customer service
//! windows.
//!
//! ```text
//! session-check [--store STORE | --db PATH] [--json] [--now TIME] <COMMAND> ...
//!
//! record BUSINESS CUSTOMER [--at TIME]      record an inbound message, print the new state
//! status BUSINESS CUSTOMER                  open / closed / none (exit 0 open, 1 otherwise)
//! list [--state open|closed] [--closing-within DURATION]
//! send-contact BUSINESS CUSTOMER --name NAME --phone PHONE [--on-closed reject|template|queue]
//!              [--template NAME --language CODE [--param VALUE]...] [--margin SECS]
//!              [--max-retries N] [--message-id UUID] [--dry-run]
//! pending [BUSINESS CUSTOMER]               queued messages, their ids and age
//! deliver BUSINESS CUSTOMER                 send the queued messages if the window is open
//! forget BUSINESS CUSTOMER                  erase everything stored for the conversation
//! export / import                           JSON lines on stdout / stdin
//! verify [--accept]                         check a sled store's integrity
//! ```
//!
//! The global options may also follow the command. `--store` names a Redis server
//! (`redis://HOST:PORT/DB`, `rediss://` over TLS) or cluster (`redis+cluster://HOST:PORT,…`,
//! `rediss+cluster://`) or a sled database directory, `--db` a sled directory; without
//! either, `$SESSION_CHECK_STORE`, else `$SESSION_CHECK_DB`, else `./sessions.db`. `--now`
//! examines the windows as at another time; the real clock still bounds what is stored (no
//! time more than 5 minutes ahead of it), and `send-contact` (unless `--dry-run`) and
//! `deliver`, which reach the gateway, refuse it. Results go to stdout (`--json`: one JSON object per line), errors to stderr
//! as one line with exit status 2; usage errors exit 2 as well.
//! `send-contact` and `deliver` read `LIPACHAT_API_KEY` and `LIPACHAT_BASE_URL`; the key
//! never appears in any output. `RUST_LOG=info` shows the library's log on stderr.
//!
//! The pieces: [`cli`] (the clap types and argument parsers), [`commands`] (each command,
//! generic over the store), [`output`] (human and JSON rendering), [`error`] (what ends with
//! exit status 2).

mod cli;
mod commands;
mod error;
mod output;

use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;
use clap::error::ErrorKind;
use lipachat_redis::{RedisConfig, RedisStore};
use lipachat_session::{OpenMode, SledConfig, SledStore};

use crate::cli::{Cli, Command, StoreChoice};
use crate::commands::Exit;
use crate::error::CliError;

/// The exit status of every error, usage errors included.
const ERROR_STATUS: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::parse_args().and_then(Cli::check_globals) {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    init_tracing();
    match execute(cli) {
        Ok(exit) => exit.code(),
        Err(error) => {
            eprintln!("error: {}", one_line(&error.to_string()));
            ExitCode::from(ERROR_STATUS)
        }
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
    // Read and checked before the store is opened: a body that is not a webhook stores
    // nothing.
    if let Command::Ingest(args) = &mut cli.command {
        commands::prepare_ingest(args, cli.now)?;
    }
    let store = cli.store().map_err(CliError::Usage)?;
    if let Command::Verify(args) = &cli.command {
        return commands::verify(&store, args, cli.json);
    }
    let create = cli.command.creates_database();
    runtime.block_on(async {
        match store {
            StoreChoice::Sled(path) => commands::run(open_sled(&path, create)?, cli).await,
            StoreChoice::Redis(config) => commands::run(open_redis(config).await?, cli).await,
        }
    })
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
/// usage error: one line on stderr, exit status 2.
fn usage_error(error: &clap::Error) -> ExitCode {
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
        eprintln!(
            "error: no command given; use one of {} (see session-check --help)",
            commands.join(", ")
        );
        return ExitCode::from(ERROR_STATUS);
    }
    let rendered = error.render().to_string();
    let message: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|line| !line.starts_with("Usage:") && !line.starts_with("For more information"))
        .filter(|line| !line.is_empty())
        .collect();
    eprintln!(
        "{} (see session-check --help)",
        one_line(&message.join(" "))
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
