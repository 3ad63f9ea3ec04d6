//! The command line: clap types, and the parsers for phones, times and durations.
//!
//! Every argument is checked here, before a database is opened or a request is made, so a
//! bad phone, time or duration is a usage error (exit status 2) naming the argument.

use std::path::PathBuf;

use chrono::{DateTime, TimeDelta, Utc};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use lipachat_api::MessageId;
use lipachat_redis::RedisConfig;
use lipachat_session::{Bsuid, GroupId, PhoneNumber, PhoneParser};

use crate::duration::{parse_duration, parse_margin};

/// The default database directory when no option or variable names a store.
pub const DEFAULT_DB: &str = "./sessions.db";

/// The environment variable naming the sled database directory.
pub const DB_VAR: &str = "SESSION_CHECK_DB";

/// The environment variable naming the store (a Redis URL or a sled directory).
pub const STORE_VAR: &str = "SESSION_CHECK_STORE";

/// The URL schemes that name a Redis server or cluster rather than a sled directory.
const REDIS_SCHEMES: [&str; 5] = [
    "redis://",
    "rediss://",
    "redis+unix://",
    "redis+cluster://",
    "rediss+cluster://",
];

/// The help heading of the options that may come before or after the command.
const GLOBAL: &str = "Global options (before or after the command)";

/// What `--help` says after the options.
const AFTER_HELP: &str = "\
Phones: every form the library accepts, country code first (254712345678, +254 712 345 678,
(254) 712-345-678).
Customers: a phone, a business-scoped user id (US.13491208655302741918: the phone's
conversation when a webhook tied the two, else the user's own) or a group (group:ID).
Output names them the same way. A customer without a phone cannot be sent to: the send
commands and deliver exit 2 for one.
Times: RFC 3339 (2026-11-23T10:00:00Z). Output times are RFC 3339 UTC with 'Z', with
milliseconds only when they are not zero (2026-11-23T10:00:00Z, 2026-11-23T10:00:00.250Z).
Durations: a number and a unit, or several in a row: 90s, 45m, 1h30m (or 1h 30m), 2d; --margin
also takes a bare number of seconds (90).

Store: --store STORE names a Redis server (redis://HOST:PORT/DB, redis://:PASSWORD@HOST:PORT/DB,
redis://USER:PASSWORD@HOST:PORT/DB for an ACL user, or redis+unix:///PATH?db=DB), a Redis
Cluster (redis+cluster://HOST:PORT[,HOST:PORT...]: one reachable node is enough), or either
over TLS (rediss://..., rediss+cluster://...); keys under the prefix 'lipachat', shared with
every bot replica using it. Otherwise it is a sled database directory (another URL scheme is
refused). Over TLS the server's certificate must be signed by an authority in the system's
roots or in the PEM file $LIPACHAT_REDIS_CA_CERT names; an untrusted certificate, a refused
password and a missing ACL permission are errors (exit 2) that say which. Only a URL ending in
#insecure skips the certificate check.
--db PATH is the sled shorthand. The first of these that is given wins: --store, --db,
$SESSION_CHECK_STORE, $SESSION_CHECK_DB (empty variables count as unset), else ./sessions.db.
Giving both --store and --db is a usage error. Every command works the same on either store;
a Redis server that cannot be reached is an error (exit 2) within about 5 seconds.

Remote: --remote URL runs status, list and pending against a running bot's admin routes
(GET /admin/windows/BUSINESS/CUSTOMER, /admin/windows, /admin/pending) instead of a store,
with the same output and exit status; the bot's admin token is read from
$SESSION_CHECK_REMOTE_TOKEN and never printed. Any other command, --now, --db or --store
with --remote is a usage error (exit 2); a bot that cannot be reached, or refuses the token,
is an error (exit 2).

Output: results go to stdout (with --json, one JSON object per line); errors go to stderr as
one line (with --json, one JSON object with the fields error and kind). The API key and a
Redis password never appear in any output.

Exit status: 0 success (status: open; send-contact, send-text, send-media, send-buttons and
send-list: sent, rerouted or queued; send-template: sent; deliver: nothing remains queued;
verify: intact, or damaged and accepted), 1 the negative answer (status: closed or none; a
send command: rejected because the window is not open; deliver: the window is closed and
messages remain), 2 any error, including usage errors, a message that breaks a limit, a
template the business's catalog refuses (unknown template or language, not APPROVED,
placeholder or header mismatch: before anything is sent), a database in use by another
process, a damaged store and a Redis server that cannot be reached. A --dry-run exits as the
real send would (1 when it would be rejected).

Templates: every template a command would send (send-template's, and the --template of
--on-closed template or queue) is checked against the business's catalog, fetched from the
gateway (GET /api/v1/template/BUSINESS) once per run. When the catalog cannot be fetched
the template goes unchecked and the output says so (catalog: unchecked); the JSON of a
send that sent a template also names its category as the catalog spells it
(template_category).

Pricing: every send command and its dry run print (JSON) the predicted pricing category of
what went or would go (category: service for a free-form message; a template's from
--template-category, else the catalog's category when it was checked, else marketing) and
whether it is free (free); with --prices, an estimate. A send that consent or a limit
refuses is rejected (exit 1, reason opted_out, marketing_limit or messaging_limit) and sends
nothing.

Only record, ingest, import and the send commands (not --dry-run) create a store. Every
other command needs one: a sled path that does not exist or is an empty directory is an
error (exit 2, no store at PATH) and nothing is created there. An import that fails leaves
no new store behind. No command opens a path that is not a lipachat store (a file, or a
directory of other files without the lipachat.store marker): exit 2, and nothing there is
changed.

Integrity: a sled store checks at open that it holds what it held when it was last closed
(per tree, the number of entries and a checksum) and, after a crash, that nothing its last
flush made durable is missing; a damaged store is an error (exit 2) naming what is missing,
and `verify` reports it in full.

Clock: --now TIME examines the windows as at TIME; the real clock still bounds what is
stored (record and import refuse a time more than 5 minutes ahead of it, exit 2) and
nothing that reaches the gateway runs under --now: the send commands refuse it unless
--dry-run, deliver refuses it, and record and import never send.";

/// Inspect and drive lipachat's 24-hour WhatsApp customer service windows.
///
/// A debug tool over the session store (a sled database directory or a Redis server) and
/// the policy's send path. The global options may come before or after the command.
#[derive(Debug, Parser)]
#[command(
    name = "session-check",
    version,
    about = "Inspect and drive lipachat's 24-hour WhatsApp customer service windows",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// The store: a Redis URL (redis://HOST:PORT/DB, rediss:// for TLS,
    /// redis+cluster://HOST:PORT,HOST:PORT for a cluster) or a sled database directory. Without
    /// --store or --db: $SESSION_CHECK_STORE, else $SESSION_CHECK_DB, else ./sessions.db.
    #[arg(
        long,
        global = true,
        value_name = "STORE",
        value_parser = StoreParser,
        conflicts_with = "db",
        help_heading = GLOBAL
    )]
    pub store: Option<StoreChoice>,

    /// The sled database directory: the same as --store PATH.
    #[arg(long, global = true, value_name = "PATH", help_heading = GLOBAL)]
    pub db: Option<PathBuf>,

    /// A running bot's base URL (http://HOST:PORT): status, list and pending read its
    /// windows and outbox through its admin routes, with the same output and exit status,
    /// instead of opening a store (which the bot keeps locked). The admin token comes from
    /// $SESSION_CHECK_REMOTE_TOKEN. Cannot be combined with --db or --store; refuses --now.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        value_parser = crate::remote::parse_remote_url,
        conflicts_with_all = ["db", "store"],
        help_heading = GLOBAL
    )]
    pub remote: Option<reqwest::Url>,

    /// Machine output: each result is one JSON object on its own line.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,

    /// Examine windows as at this time (RFC 3339) instead of the system clock's: status,
    /// list, pending, timeline and send-contact --dry-run answer for it. The real clock
    /// still bounds what is stored: a time more than 5 minutes ahead of it is refused (exit
    /// 2), so a future --now records nothing, while a past one records history. Nothing
    /// that reaches the gateway runs under --now: send-contact (unless --dry-run) and
    /// deliver refuse it (exit 2), and record and import never send.
    #[arg(long, global = true, value_name = "TIME", value_parser = parse_time, help_heading = GLOBAL)]
    pub now: Option<DateTime<Utc>>,

    /// The country calling code (for example 254, or 1) that completes national numbers in
    /// every phone argument: a leading trunk 0 (0712 345 678), or a number written without a
    /// plus sign at that country's national length ((650) 555-1234 under 1). Without it,
    /// numbers must be international, country code first.
    #[arg(
        long,
        global = true,
        value_name = "CC",
        env = "SESSION_CHECK_DEFAULT_COUNTRY",
        value_parser = parse_country,
        help_heading = GLOBAL
    )]
    pub default_country: Option<PhoneParser>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The phone parser every phone argument is read with: set once, from `--default-country`
/// or `$SESSION_CHECK_DEFAULT_COUNTRY`, before the arguments are parsed (clap reads each
/// argument on its own, so a phone argument cannot see the global option otherwise).
static PHONES: std::sync::OnceLock<PhoneParser> = std::sync::OnceLock::new();

/// The phone parser of this run: with the default country when one was given.
pub fn phones() -> PhoneParser {
    PHONES.get().copied().unwrap_or_default()
}

impl Cli {
    /// Parses the command line: `--default-country` (before or after the command, else
    /// `$SESSION_CHECK_DEFAULT_COUNTRY`) is found first, then every argument is parsed with
    /// it. An unusable value is left for the full parse to report.
    pub fn parse_args() -> Result<Self, clap::Error> {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        let given = default_country_arg(&args).or_else(|| {
            std::env::var("SESSION_CHECK_DEFAULT_COUNTRY")
                .ok()
                .filter(|v| !v.trim().is_empty())
        });
        if let Some(phones) = given.and_then(|code| parse_country(&code).ok()) {
            // Set once per process; a second call keeps the first value.
            let _ = PHONES.set(phones);
        }
        let matches = crate::help::grouped(Self::command()).try_get_matches_from(args)?;
        let mut cli = Self::from_arg_matches(&matches)?;
        if let Command::SendList(list) = &mut cli.command
            && let Some(matches) = matches.subcommand_matches("send-list")
        {
            list.group(matches)?;
        }
        Ok(cli)
    }
}

impl SendList {
    /// Puts each --row in the --section before it on the command line (clap keeps each
    /// option's values apart; their positions say which section a row belongs to). A row
    /// before the first section is a usage error.
    pub fn group(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        let positions = |id: &str| -> Vec<usize> {
            matches
                .indices_of(id)
                .map(Iterator::collect)
                .unwrap_or_default()
        };
        let sections = positions("section_titles");
        let rows = positions("rows");
        let mut grouped: Vec<lipachat_api::ListSection> = self
            .section_titles
            .iter()
            .map(|title| lipachat_api::ListSection::new(title.as_str(), Vec::new()))
            .collect();
        for (row, at) in self.rows.iter().zip(rows) {
            let Some(section) = sections.iter().rposition(|&start| start < at) else {
                return Err(Cli::command().error(
                    clap::error::ErrorKind::ArgumentConflict,
                    "each --row belongs to the --section before it; give a --section first",
                ));
            };
            if let Some(target) = grouped.get_mut(section) {
                target.rows.push(row.clone());
            }
        }
        self.sections = grouped;
        Ok(())
    }
}

/// The value of the last `--default-country CC` or `--default-country=CC` among the
/// options (up to a `--`).
fn default_country_arg(args: &[std::ffi::OsString]) -> Option<String> {
    let mut found = None;
    let mut words = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(word) = words.next() {
        if word == "--" {
            break;
        }
        if word == "--default-country" {
            found = words.next().map(|v| v.into_owned());
        } else if let Some(value) = word.strip_prefix("--default-country=") {
            found = Some(value.to_owned());
        }
    }
    found
}

/// Parses a default country calling code (1 to 3 digits, an optional leading `+`).
pub fn parse_country(input: &str) -> Result<PhoneParser, String> {
    PhoneParser::with_default_country(input).map_err(|e| e.to_string())
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Record an inbound message from the customer and print the new state. Never sends
    /// anything.
    ///
    /// The time (--at, else --now, else the real clock's) may be at most 5 minutes ahead
    /// of the real clock, and of --now when given: a later one is refused (exit 2) and
    /// nothing is stored, so --now cannot put a future time in the store. Exit 0 once
    /// recorded.
    Record(Record),
    /// The window's state: open, closed (expired or closed by the gateway) or none (no
    /// inbound message recorded), and the customer's marketing status (allowed, opted_out,
    /// or limited after a 131049, with when it may be tried again; a 131049 through any of
    /// the bot's business numbers limits the customer on every number) and free entry point
    /// window (its end while one is open, predicted until a status confirms it). With
    /// --json the window object gains free_entry_point_until, free_entry_point_confirmed,
    /// marketing and marketing_retry_at. Exit 0 open, 1 closed or none.
    Status(Pair),
    /// Every conversation in the database with its window's state. Exit 0.
    List(List),
    /// Send a contact card through the policy's guarded send path.
    ///
    /// Reads LIPACHAT_API_KEY and LIPACHAT_BASE_URL (default <https://gateway.lipachat.com>);
    /// --dry-run needs no key. A closed window includes never messaged and closing within the
    /// margin. Runs on the real clock: --now is refused unless --dry-run (the gateway judges
    /// the window by the real time). Exit 0 sent, rerouted or queued; 1 rejected (the window
    /// is not open, or the gateway refused the card as outside it); a dry run exits as the
    /// send would (1 when it would be rejected); 2 any error (bad input, --now without
    /// --dry-run, missing key, refused credentials, a gateway refusal, failure after
    /// retries).
    SendContact(SendContact),
    /// Send a text message through the policy's guarded send path, as send-contact does
    /// (same options, outputs and exit statuses).
    SendText(SendText),
    /// Send an image, video, audio, document or sticker by https:// URL through the
    /// policy's guarded send path, as send-contact does.
    SendMedia(SendMedia),
    /// Send text with 1 to 3 reply buttons through the policy's guarded send path, as
    /// send-contact does.
    SendButtons(SendButtons),
    /// Send a list (sections of rows behind a button) through the policy's guarded send
    /// path, as send-contact does. Each --row belongs to the --section before it.
    SendList(SendList),
    /// Send an approved template, whatever the window, after checking it against the
    /// business's catalog.
    ///
    /// Reads LIPACHAT_API_KEY and LIPACHAT_BASE_URL like send-contact. The catalog is
    /// fetched from the gateway first: an unknown template or language, a template that is
    /// not APPROVED, or placeholders or a header that do not match it exit 2 before
    /// anything is sent. When the catalog cannot be fetched the template goes unchecked
    /// (the output says "catalog": "unchecked"). Exit 0 sent or dry-run; 2 any error.
    SendTemplate(SendTemplate),
    /// The business's template catalog, one line per template (with --json, one object
    /// each: name, language, category, status, placeholders, header, quality_score, id).
    ///
    /// Reads LIPACHAT_API_KEY and LIPACHAT_BASE_URL; opens no store. Exit 0; 2 when the
    /// catalog cannot be fetched.
    Templates(Templates),
    /// Messages queued for the customer's reply: what each is (a contact card's name and
    /// phone, a text's first words), its message id and age (every conversation's, or one
    /// conversation's). Exit 0.
    Pending(Pending),
    /// Send a conversation's queued messages if the window is open (the margin kept).
    ///
    /// Reads LIPACHAT_API_KEY and LIPACHAT_BASE_URL like send-contact. Runs on the real
    /// clock: --now is refused. Exit 0 when nothing remains queued, 1 when the window is
    /// closed and messages remain, 2 on an error (including --now, and a message that can
    /// never be sent: refused by the gateway as invalid, or unreadable in the store; it
    /// leaves the queue).
    Deliver(Deliver),
    /// Erase everything stored for a conversation: window, queued messages, invitation and
    /// send outcomes. Exit 0, whether or not anything was stored.
    Forget(Pair),
    /// Write the store as JSON lines on stdout: a backup, or a move between versions or
    /// stores.
    ///
    /// It covers every conversation's window (the last inbound time and a gateway closure),
    /// the queued messages, the invitations, the user ids, groups and aliases, the
    /// redelivery memory's unexpired ids (`seen` lines, so a webhook redelivered after a
    /// move is still a duplicate), each customer's marketing consent (opt-out with its
    /// time) and free entry point window, and each customer's marketing back-off after a
    /// 131049 (kept per customer, across business numbers: `back_off` lines; format
    /// version 4). A back-off that cannot be read is exported as one lasting 29 days from
    /// the export (the longest an import takes, less a day), with a warning on stderr, so
    /// marketing stays withheld from that customer after an import.
    /// Send outcomes (the memory that makes a repeated --message-id send nothing twice,
    /// kept 7 days), delivery claims, cost records and the messaging limit count are not
    /// exported.
    /// A progress bar shows on stderr when it is a terminal and the lines go elsewhere (not
    /// with --json). Exit 2 if corrupt records had to be skipped.
    Export,
    /// Read JSON lines written by export from stdin and merge them in. Every line is checked
    /// before anything is written, its times too: one more than 5 minutes ahead of the real
    /// clock is refused (exit 2) and nothing is imported; so is an import that would leave
    /// more than 20 messages in one conversation's outbox (the outbox limit), naming the line.
    /// A `seen` line's remember_until is an expiry and may lie ahead; one already past is
    /// skipped, and an id the database already remembers keeps its entry. Consent and free
    /// entry point lines merge with what is stored by the store's own rules (the later
    /// opt-out or opt-in wins, an opt-out on a tie; the later back-off; a window already
    /// open is not moved; a back-off, whether a back_off line's or a version 3 consent
    /// line's back_off_until, is the customer's on every business number). Exports of
    /// versions 1, 2 and 3 import unchanged. An import that
    /// fails leaves no new store behind. A progress bar shows on stderr when it is a
    /// terminal (not with --json).
    Import,
    /// Check a sled store's integrity and report, per tree (windows, outbox, invitations,
    /// outcomes, identities, aliases, and the consent trees: consent, free_entry_point,
    /// predicted_costs, reported_pricing, reached, back_off), the entries and checksum it must hold
    /// and those it holds.
    ///
    /// After a clean shutdown the store must hold exactly what it held then; after a crash,
    /// at least everything its last flush made durable (the files were then copied to
    /// recovery/ inside the store before sled's recovery ran). Exit 0 intact, 2 damaged or
    /// any error. Never creates a store.
    Verify(Verify),
    /// Read one webhook body (LipaChat's flat payload or WhatsApp's nested one) and apply it
    /// as the library's webhook handling does: customers' messages and calls are recorded
    /// (once per message id: a redelivered copy is reported as a duplicate and records
    /// nothing), 131047 reports record the closure. A LipaChat MESSAGE_STATUS names only
    /// our messageId: its closure is recorded in the conversation whose send outcome is
    /// stored under that id (a send made with send-contact's --message-id, or under the
    /// queue or template policy); one with no stored outcome is printed with a null
    /// customer and records nothing. Never sends: queued messages wait for `deliver`.
    ///
    /// Prints one line per event, in payload order (with --json, one object each: event,
    /// business, customer, group, kind, opens_window, sent_at, status, error_code, at,
    /// duplicate, state_after, reason; null where they do not apply). Exit 0 when the body
    /// is a webhook, even if every event was ignored; 2 when it is not (malformed JSON, an
    /// unknown shape), and then nothing is stored. Creates the store like record.
    Ingest(Ingest),
    /// Draw a conversation on the terminal: the latest inbound message, the 24-hour window
    /// as a bar with the margin marked, the invitation, queued and sent messages, closures
    /// and now, then the same by time. A free entry point window (opened by the reply to a
    /// click-to-WhatsApp ad) is listed with its end, predicted or confirmed, but not drawn.
    ///
    /// Shows what the store keeps: the latest inbound message only, the invitation of the
    /// current closed window, the outbox, and send outcomes for their 7 days (a send under
    /// the reject policy without --message-id stores none). Under --now, drawn as at that
    /// time. With --json, one object: the window and the events in time order. Exit 0.
    Timeline(Timeline),
    /// Record that the customer stopped marketing messages from the business number (as a
    /// 131050 answer, the user_preferences webhook's stop or a STOP text would): marketing
    /// templates to them are then refused locally, with reason opted_out, until optin.
    /// Utility and authentication templates and free-form messages in the window are
    /// unaffected. The choice is recorded at now (--now, else the real clock); a later
    /// choice already recorded stays in force. Exit 0.
    Optout(Pair),
    /// Record that the customer opted back in to marketing messages (as the webhook's
    /// resume or a START text would). Exit 0.
    Optin(Pair),
    /// Summarise the sends recorded per business number and UTC day: their predicted
    /// pricing categories (service, utility, marketing, authentication) and how many were
    /// predicted free, against what status webhooks reported (WhatsApp's statuses carry
    /// pricing; LipaChat's status callback carries none, so its sends show as having no
    /// reported pricing: the category is unknown, not wrong), and how many were reported
    /// in another category. With --json, one object per business and day. Exit 0.
    Costs(Costs),
}

/// `costs`' arguments.
#[derive(Debug, Args)]
pub struct Costs {
    /// Only this business number.
    #[arg(value_name = "BUSINESS", value_parser = parse_phone)]
    pub business: Option<PhoneNumber>,
}

/// `verify`'s arguments.
#[derive(Debug, Args)]
pub struct Verify {
    /// Open a damaged store anyway and make what it holds its new reference (after
    /// printing the report), so other commands can read or export what is left. Exit 0.
    #[arg(long)]
    pub accept: bool,
}

/// A conversation: the business number and the customer.
#[derive(Debug, Clone, Args)]
pub struct Pair {
    /// The business's WhatsApp number.
    #[arg(value_name = "BUSINESS", value_parser = parse_phone)]
    pub business: PhoneNumber,
    /// The customer: a phone number, a business-scoped user id (US.13491208655302741918),
    /// or a group (group:ID).
    #[arg(value_name = "CUSTOMER", value_parser = parse_customer)]
    pub customer: CustomerArg,
}

/// Who a command names as the customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerArg {
    /// A phone number.
    Phone(PhoneNumber),
    /// A user known by a business-scoped user id: the phone's conversation when an alias
    /// names the user's phone, else the user's own.
    User(Bsuid),
    /// A group.
    Group(GroupId),
}

impl std::fmt::Display for CustomerArg {
    /// As output names customers: canonical digits, the user id, or `group:ID`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Phone(phone) => write!(f, "{phone}"),
            Self::User(user) => write!(f, "{user}"),
            Self::Group(group) => write!(f, "group:{group}"),
        }
    }
}

/// `record`'s arguments.
#[derive(Debug, Args)]
pub struct Record {
    /// The conversation.
    #[command(flatten)]
    pub pair: Pair,
    /// When the customer wrote (default: now, or --now). More than 5 minutes ahead of the
    /// real clock, or of --now, is refused and nothing is stored.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub at: Option<DateTime<Utc>>,
}

/// `ingest`'s arguments.
#[derive(Debug, Args)]
pub struct Ingest {
    /// The file holding the webhook body; `-` or nothing: standard input.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The business number, for payloads that do not name it (or name one that is not a
    /// phone number).
    #[arg(long, value_name = "NUMBER", value_parser = parse_phone)]
    pub business: Option<PhoneNumber>,
    /// When the webhook was received (RFC 3339; default: the clock, i.e. --now if given):
    /// a message's time is capped at it. Redeliveries are remembered from the real time of
    /// the run, whatever --received-at or --now say, so a copy ingested again within the
    /// redelivery horizon (7 days) is always a duplicate.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub received_at: Option<DateTime<Utc>>,
    /// The body, read and checked before any store is opened.
    #[arg(skip)]
    pub body: Vec<u8>,
}

/// A window state `list` can keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateFilter {
    /// Open windows.
    Open,
    /// Closed windows (expired or closed by the gateway).
    Closed,
}

/// `list`'s arguments.
#[derive(Debug, Args)]
pub struct List {
    /// Keep only the windows in this state.
    #[arg(long, value_name = "STATE")]
    pub state: Option<StateFilter>,
    /// Keep only the open windows that close within this duration (now < expires_at <=
    /// now + DURATION), soonest first: 90s, 45m, 1h30m, 2d.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub closing_within: Option<TimeDelta>,
}

/// `timeline`'s arguments.
#[derive(Debug, Args)]
pub struct Timeline {
    /// The conversation.
    #[command(flatten)]
    pub pair: Pair,
    /// The safety margin to mark at the window's end.
    #[command(flatten)]
    pub margin: SafetyMargin,
}

/// `--margin`, shared by the commands that send and `timeline`.
#[derive(Debug, Clone, Args)]
pub struct SafetyMargin {
    /// The safety margin: a free-form send is refused when the window closes within it. A
    /// duration (90s, 2m, 1m30s) or a bare number of seconds (90); shorter than 24 hours.
    #[arg(
        long = "margin",
        value_name = "DURATION",
        default_value = "60s",
        value_parser = parse_margin,
        allow_hyphen_values = true
    )]
    pub value: TimeDelta,
}

/// What a send command does when the window is not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnClosedChoice {
    /// Send nothing.
    Reject,
    /// Send the template instead; the message is dropped.
    Template,
    /// Send the template to invite a reply and queue the message until the customer
    /// writes.
    Queue,
}

/// The settings of the policy's send path, shared by the send commands and `deliver`.
#[derive(Debug, Clone, Args)]
pub struct SendSettings {
    /// The safety margin.
    #[command(flatten)]
    pub margin: SafetyMargin,
    /// How many times a failed request is retried (connection failures, timeouts, 408, 429
    /// and 5xx), always with the same messageId.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 3,
        allow_hyphen_values = true
    )]
    pub max_retries: u32,
}

/// What every free-form send command takes besides its message: the closed-window
/// choice and its template, the policy's settings, the `messageId` and `--dry-run`
/// (send-contact, send-text, send-media, send-buttons, send-list).
#[derive(Debug, Args)]
pub struct SendOptions {
    /// What to do when the window is not open.
    #[arg(long, value_name = "CHOICE", default_value = "reject")]
    pub on_closed: OnClosedChoice,
    /// The approved template to send when the window is not open (needed by
    /// --on-closed template and queue); checked against the business's catalog before it
    /// is sent.
    #[arg(long, value_name = "NAME")]
    pub template: Option<String>,
    /// The template's language code (en, fil, en_US, pt_BR); needed with --template.
    #[arg(long, value_name = "CODE")]
    pub language: Option<String>,
    /// The template's next body placeholder ({{1}}, {{2}}, ... in order); repeatable.
    #[arg(long = "param", value_name = "VALUE")]
    pub params: Vec<String>,
    /// The settings, the messageId and --dry-run.
    #[command(flatten)]
    pub run: SendRun,
}

/// How a send runs, for every send command (send-template too): the policy's settings,
/// the `messageId` and `--dry-run`.
#[derive(Debug, Args)]
pub struct SendRun {
    /// The policy's settings.
    #[command(flatten)]
    pub settings: SendSettings,
    /// Use this messageId (a UUID) instead of a new one: running the same send again with
    /// the same id within 7 days (the outcome horizon) sends nothing twice and prints the
    /// earlier outcome. The outcome is then forgotten, and a later run sends again; only
    /// the gateway's own deduplication, whose span is not published, can stop that copy.
    #[arg(long, value_name = "UUID", value_parser = parse_message_id)]
    pub message_id: Option<MessageId>,
    /// Print the decision, what the send would do (JSON: `would`) and the exact JSON body
    /// of what would be sent, if anything; send and store nothing. Exits as the send would:
    /// 1 when it would be rejected. Needs no API key (and so checks no template against the
    /// catalog).
    #[arg(long)]
    pub dry_run: bool,
    /// The pricing category of the template that goes (--template, or send-template's):
    /// marketing, utility or authentication. Without it, the category the business's
    /// template catalog gives when the template is checked against it, else marketing
    /// (a dry run checks no catalog). Marketing templates are refused to a customer who
    /// opted out (reason opted_out) or inside a 131049 back-off (reason marketing_limit;
    /// the back-off is the customer's, after a 131049 through any business number); the
    /// others are not.
    #[arg(long, value_name = "CATEGORY", value_parser = parse_template_category)]
    pub template_category: Option<lipachat_session::PricingCategory>,
    /// A price file of your own (TOML; docs/prices.sample.toml shows the format and is
    /// not current prices): the output then estimates what the message costs.
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,
    /// The business portfolio the business number belongs to, for WhatsApp's messaging
    /// limit (unique customers reached outside a customer service window in a moving 24
    /// hours, shared by the portfolio's numbers): a name of letters, digits, `.`, `_` or
    /// `-`, not beginning `svc.` (kept for the monthly service counters). With --messaging-tier, a template that would go outside the window to a
    /// customer the portfolio has not reached in the last 24 hours, when it already
    /// reached the tier's number, is not sent: under --on-closed queue the message is
    /// queued (exit 0), otherwise rejected with reason messaging_limit (exit 1). Every
    /// command given the same name counts into one count kept in the store (a prediction
    /// of the platform's). A dry run neither counts nor checks it. Without it, no limit
    /// is applied.
    #[arg(long, value_name = "NAME", requires = "messaging_tier")]
    pub portfolio: Option<String>,
    /// The portfolio's other business numbers, comma-separated (the send's business
    /// number is always in it). They share the count under --portfolio's name.
    #[arg(
        long,
        value_name = "N1,N2",
        value_delimiter = ',',
        value_parser = parse_phone,
        requires = "portfolio"
    )]
    pub portfolio_numbers: Vec<PhoneNumber>,
    /// The portfolio's messaging tier: 250, 2000, 10000, 100000 or unlimited (see
    /// --portfolio).
    #[arg(
        long,
        value_name = "TIER",
        value_parser = parse_messaging_tier,
        requires = "portfolio"
    )]
    pub messaging_tier: Option<lipachat_policy::consent::MessagingTier>,
}

/// `send-contact`'s arguments.
#[derive(Debug, Args)]
pub struct SendContact {
    /// The conversation.
    #[command(flatten)]
    pub pair: Pair,
    /// The name shown on the contact card.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// The phone number on the card.
    #[arg(long, value_name = "PHONE", value_parser = parse_phone)]
    pub phone: PhoneNumber,
    /// The phone's type (Cell, Mobile, Main, Home, Work, ...).
    #[arg(long, value_name = "TYPE", default_value = "Cell")]
    pub phone_type: String,
    /// The phone's WhatsApp id (its digits), when it is on WhatsApp.
    #[arg(long, value_name = "ID", value_parser = parse_phone)]
    pub wa_id: Option<PhoneNumber>,
    /// What every send command takes.
    #[command(flatten)]
    pub send: SendOptions,
}

/// `send-text`'s arguments.
#[derive(Debug, Args)]
pub struct SendText {
    /// The conversation.
    #[command(flatten)]
    pub pair: Pair,
    /// The text (1 to 4096 characters).
    #[arg(long, value_name = "TEXT")]
    pub text: String,
    /// What every send command takes.
    #[command(flatten)]
    pub send: SendOptions,
}

/// A media kind, as `--type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MediaType {
    /// A picture.
    Image,
    /// A video.
    Video,
    /// A voice note or audio file (no caption).
    Audio,
    /// A document (the only kind with --filename).
    Document,
    /// A sticker (no caption).
    Sticker,
}

impl MediaType {
    /// The library's kind.
    pub fn kind(self) -> lipachat_api::MediaKind {
        use lipachat_api::MediaKind;
        match self {
            Self::Image => MediaKind::Image,
            Self::Video => MediaKind::Video,
            Self::Audio => MediaKind::Audio,
            Self::Document => MediaKind::Document,
            Self::Sticker => MediaKind::Sticker,
        }
    }
}

/// `send-media`'s arguments.
#[derive(Debug, Args)]
pub struct SendMedia {
    /// The conversation.
    #[command(flatten)]
    pub pair: Pair,
    /// The kind of media.
    #[arg(long = "type", value_name = "TYPE")]
    pub media_type: MediaType,
    /// Where WhatsApp fetches it: an https:// URL.
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// The caption (at most 1024 characters; not with audio or a sticker).
    #[arg(long, value_name = "TEXT")]
    pub caption: Option<String>,
    /// The document's file name (documents only; at most 255 characters, no path).
    #[arg(long, value_name = "NAME")]
    pub filename: Option<String>,
    /// What every send command takes.
    #[command(flatten)]
    pub send: SendOptions,
}

/// `send-buttons`'s arguments.
#[derive(Debug, Args)]
pub struct SendButtons {
    /// The conversation.
    #[command(flatten)]
    pub pair: Pair,
    /// The text above the buttons (1 to 1024 characters).
    #[arg(long, value_name = "TEXT")]
    pub text: String,
    /// A reply button as ID:TITLE (the id comes back in the customer's reply; the title,
    /// at most 20 characters, is shown); 1 to 3 times, ids unique.
    #[arg(long = "button", value_name = "ID:TITLE", value_parser = parse_button, required = true)]
    pub buttons: Vec<lipachat_api::ReplyButton>,
    /// What every send command takes.
    #[command(flatten)]
    pub send: SendOptions,
}

/// `send-list`'s arguments.
#[derive(Debug, Args)]
pub struct SendList {
    /// The conversation.
    #[command(flatten)]
    pub pair: Pair,
    /// The list's header (at most 60 characters).
    #[arg(long, value_name = "TEXT")]
    pub header: String,
    /// The list's body (at most 1024 characters).
    #[arg(long, value_name = "TEXT")]
    pub body: String,
    /// The text of the button that opens the list (at most 20 characters).
    #[arg(long, value_name = "TEXT")]
    pub button_text: String,
    /// Starts a section with this title (at most 24 characters); the --row options after
    /// it are its rows. 1 to 10 sections.
    #[arg(long = "section", value_name = "TITLE", required = true)]
    pub section_titles: Vec<String>,
    /// A row of the section before it: ID:TITLE or ID:TITLE:DESCRIPTION (title at most 24
    /// characters, description 72; the id may not hold ':'). 1 to 10 rows in all, ids
    /// unique.
    #[arg(long = "row", value_name = "ID:TITLE[:DESCRIPTION]", value_parser = parse_row, required = true)]
    pub rows: Vec<lipachat_api::ListRow>,
    /// The sections with their rows, in order: filled from the order of --section and
    /// --row on the command line.
    #[arg(skip)]
    pub sections: Vec<lipachat_api::ListSection>,
    /// What every send command takes.
    #[command(flatten)]
    pub send: SendOptions,
}

/// A template header's media type, as `--header-type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HeaderType {
    /// An image header.
    Image,
    /// A video header.
    Video,
    /// A document header.
    Document,
}

/// `send-template`'s arguments.
#[derive(Debug, Args)]
pub struct SendTemplate {
    /// The conversation.
    #[command(flatten)]
    pub pair: Pair,
    /// The approved template's name.
    #[arg(long, value_name = "NAME")]
    pub template: String,
    /// Its language code (en, fil, en_US, pt_BR).
    #[arg(long, value_name = "CODE")]
    pub language: String,
    /// The next body placeholder ({{1}}, {{2}}, ... in order); repeatable.
    #[arg(long = "param", value_name = "VALUE")]
    pub params: Vec<String>,
    /// The media of the template's header (an https:// URL).
    #[arg(long, value_name = "URL", conflicts_with = "header_text")]
    pub header_url: Option<String>,
    /// The media type of --header-url; without it, taken from the URL's extension (.jpg,
    /// .jpeg, .png, .webp: image; .mp4, .3gp: video; anything else: document).
    #[arg(long, value_name = "TYPE", requires = "header_url")]
    pub header_type: Option<HeaderType>,
    /// The value of a text header's placeholder (at most 60 characters).
    #[arg(long, value_name = "TEXT")]
    pub header_text: Option<String>,
    /// The settings (the margin does not apply: a template may go whatever the window),
    /// the messageId and --dry-run.
    #[command(flatten)]
    pub run: SendRun,
}

/// `templates`' arguments.
#[derive(Debug, Args)]
pub struct Templates {
    /// The business's WhatsApp number.
    #[arg(value_name = "BUSINESS", value_parser = parse_phone)]
    pub business: PhoneNumber,
    /// How many times a failed request is retried (connection failures, timeouts, 408,
    /// 429 and 5xx).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 3,
        allow_hyphen_values = true
    )]
    pub max_retries: u32,
}

/// `pending`'s arguments.
#[derive(Debug, Args)]
pub struct Pending {
    /// The business number (with CUSTOMER: one conversation only).
    #[arg(value_name = "BUSINESS", value_parser = parse_phone, requires = "customer")]
    pub business: Option<PhoneNumber>,
    /// The customer: a phone number, a business-scoped user id, or group:ID.
    #[arg(value_name = "CUSTOMER", value_parser = parse_customer)]
    pub customer: Option<CustomerArg>,
}

impl Pending {
    /// The one conversation asked about, if any.
    pub fn pair(&self) -> Option<Pair> {
        Some(Pair {
            business: self.business?,
            customer: self.customer.clone()?,
        })
    }
}

/// `deliver`'s arguments.
#[derive(Debug, Args)]
pub struct Deliver {
    /// The conversation.
    #[command(flatten)]
    pub pair: Pair,
    /// The policy's settings.
    #[command(flatten)]
    pub settings: SendSettings,
}

/// Which store the command line names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// A sled database directory.
    Sled(PathBuf),
    /// A Redis server (with the default key prefix and timeouts).
    Redis(RedisConfig),
}

impl Cli {
    /// Checks what clap does not: `--store` and `--db` on either side of the command
    /// (clap sees the conflict only when both are on the same side).
    pub fn check_globals(self) -> Result<Self, clap::Error> {
        if self.store.is_some() && self.db.is_some() {
            return Err(Self::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                "the argument '--store <STORE>' cannot be used with '--db <PATH>'",
            ));
        }
        if self.remote.is_some() && (self.store.is_some() || self.db.is_some()) {
            return Err(Self::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                "the argument '--remote <URL>' cannot be used with '--db <PATH>' or '--store <STORE>'",
            ));
        }
        Ok(self)
    }

    /// The store to open, from the first that is given of `--store`, `--db`,
    /// `$SESSION_CHECK_STORE`, `$SESSION_CHECK_DB` (an empty variable counts as unset),
    /// else `./sessions.db`: the command line before the environment, and in each the
    /// general name before the sled shorthand. A `$SESSION_CHECK_STORE` that is neither a
    /// Redis URL nor a path is an error naming the variable.
    pub fn store(&self) -> Result<StoreChoice, String> {
        if let Some(store) = &self.store {
            return Ok(store.clone());
        }
        if let Some(path) = &self.db {
            return Ok(StoreChoice::Sled(path.clone()));
        }
        if let Some(value) = std::env::var_os(STORE_VAR).filter(|v| !v.is_empty()) {
            // A value that is not UTF-8 cannot be a URL: it is a path.
            return match value.to_str() {
                Some(text) => parse_store(text).map_err(|error| format!("${STORE_VAR}: {error}")),
                None => Ok(StoreChoice::Sled(PathBuf::from(value))),
            };
        }
        let path = std::env::var_os(DB_VAR)
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_DB), PathBuf::from);
        Ok(StoreChoice::Sled(path))
    }
}

/// The value parser of `--store`: [`parse_store`], with a refusal that does not quote the
/// value (clap's own message would, and a Redis URL may hold a password). A value that is
/// not UTF-8 cannot be a URL: it is a sled directory.
#[derive(Debug, Clone, Copy)]
pub struct StoreParser;

impl clap::builder::TypedValueParser for StoreParser {
    type Value = StoreChoice;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<StoreChoice, clap::Error> {
        let Some(text) = value.to_str() else {
            return Ok(StoreChoice::Sled(PathBuf::from(value)));
        };
        parse_store(text).map_err(|reason| {
            let name = arg.map_or_else(|| "--store".to_owned(), ToString::to_string);
            command.clone().error(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for '{name}': {reason}"),
            )
        })
    }
}

/// Parses a store: a Redis URL (`redis://…`, `rediss://…`, `redis+unix://…`,
/// `redis+cluster://…`, `rediss+cluster://…`) opens Redis; any other
/// URL (`scheme://…`) is refused rather than taken for a directory name; anything else is
/// a sled database directory.
pub fn parse_store(input: &str) -> Result<StoreChoice, String> {
    if input.is_empty() {
        return Err("empty store; expected redis://HOST:PORT/DB or a directory path".to_owned());
    }
    let lower = input.to_ascii_lowercase();
    if REDIS_SCHEMES.iter().any(|scheme| lower.starts_with(scheme)) {
        return input
            .parse::<RedisConfig>()
            .map(StoreChoice::Redis)
            .map_err(|error| error.to_string());
    }
    if let Some((scheme, _)) = input.split_once("://")
        && !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return Err(format!(
            "{scheme}:// is not a store this build opens; give redis://HOST:PORT/DB (rediss:// for TLS), redis+cluster://HOST:PORT[,HOST:PORT...] (rediss+cluster:// for TLS) or a sled directory path"
        ));
    }
    Ok(StoreChoice::Sled(PathBuf::from(input)))
}

impl Command {
    /// The command's name on the command line (`send-contact`, `deliver`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Record(_) => "record",
            Self::Status(_) => "status",
            Self::List(_) => "list",
            Self::SendContact(_) => "send-contact",
            Self::SendText(_) => "send-text",
            Self::SendMedia(_) => "send-media",
            Self::SendButtons(_) => "send-buttons",
            Self::SendList(_) => "send-list",
            Self::SendTemplate(_) => "send-template",
            Self::Templates(_) => "templates",
            Self::Pending(_) => "pending",
            Self::Deliver(_) => "deliver",
            Self::Forget(_) => "forget",
            Self::Export => "export",
            Self::Import => "import",
            Self::Verify(_) => "verify",
            Self::Ingest(_) => "ingest",
            Self::Timeline(_) => "timeline",
            Self::Optout(_) => "optout",
            Self::Optin(_) => "optin",
            Self::Costs(_) => "costs",
        }
    }

    /// Whether the command may create the database: only those that write something new
    /// do; the others refuse a directory that does not exist.
    pub fn creates_database(&self) -> bool {
        match self {
            Self::Record(_) | Self::Import | Self::Ingest(_) | Self::Optout(_) | Self::Optin(_) => {
                true
            }
            Self::SendContact(SendContact { send, .. })
            | Self::SendText(SendText { send, .. })
            | Self::SendMedia(SendMedia { send, .. })
            | Self::SendButtons(SendButtons { send, .. })
            | Self::SendList(SendList { send, .. }) => !send.run.dry_run,
            Self::SendTemplate(send) => !send.run.dry_run,
            Self::Status(_)
            | Self::List(_)
            | Self::Pending(_)
            | Self::Deliver(_)
            | Self::Forget(_)
            | Self::Export
            | Self::Verify(_)
            | Self::Timeline(_)
            | Self::Costs(_)
            | Self::Templates(_) => false,
        }
    }
}

/// Parses a template's pricing category (service is not a template's).
fn parse_template_category(input: &str) -> Result<lipachat_session::PricingCategory, String> {
    match lipachat_session::PricingCategory::parse(input) {
        Some(lipachat_session::PricingCategory::Service) | None => Err(format!(
            "{input:?} is not a template category: use marketing, utility or authentication"
        )),
        Some(category) => Ok(category),
    }
}

/// Parses a messaging tier: 250, 2000, 10000, 100000 or unlimited.
fn parse_messaging_tier(input: &str) -> Result<lipachat_policy::consent::MessagingTier, String> {
    lipachat_policy::consent::MessagingTier::parse(input).ok_or_else(|| {
        format!("{input:?} is not a messaging tier: use 250, 2000, 10000, 100000 or unlimited")
    })
}

/// Parses a phone number in any form the library accepts.
///
/// With `--default-country`, national numbers take that country; without it, a national
/// number is an error that says to give the country code or `--default-country`.
pub fn parse_phone(input: &str) -> Result<PhoneNumber, String> {
    match PHONES.get() {
        Some(phones) => phones.parse(input).map_err(|e| e.to_string()),
        None => PhoneNumber::parse(input).map_err(|e| match e {
            lipachat_session::PhoneError::MissingCountryCode { .. } => {
                format!("{e} (--default-country CC or $SESSION_CHECK_DEFAULT_COUNTRY)")
            }
            other => other.to_string(),
        }),
    }
}

/// Parses a customer: `group:ID` a group, a business-scoped user id (two capital letters,
/// a dot, letters and digits) a user, anything else a phone number ([`parse_phone`]).
pub fn parse_customer(input: &str) -> Result<CustomerArg, String> {
    let trimmed = input.trim();
    if let Some(group) = trimmed.strip_prefix("group:") {
        return GroupId::parse(group)
            .map(CustomerArg::Group)
            .map_err(|e| e.to_string());
    }
    if let Ok(user) = Bsuid::parse(trimmed) {
        return Ok(CustomerArg::User(user));
    }
    parse_phone(input).map(CustomerArg::Phone).map_err(|e| {
        format!("{e} (a customer may also be a business-scoped user id such as US.13491208655302741918, or group:ID)")
    })
}

/// Parses an RFC 3339 time into UTC.
pub fn parse_time(input: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(input.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{e}; expected an RFC 3339 time such as 2026-11-23T10:00:00Z"))
}

/// Parses a reply button: `ID:TITLE` (split at the first `:`; the title may hold more).
pub fn parse_button(input: &str) -> Result<lipachat_api::ReplyButton, String> {
    match input.split_once(':') {
        Some((id, title)) if !id.is_empty() => Ok(lipachat_api::ReplyButton::new(id, title)),
        _ => Err(format!(
            "{input:?} is not ID:TITLE (for example yes:Yes, please)"
        )),
    }
}

/// Parses a list row: `ID:TITLE` or `ID:TITLE:DESCRIPTION` (split at the first two `:`;
/// the description may hold more).
pub fn parse_row(input: &str) -> Result<lipachat_api::ListRow, String> {
    let usage = || {
        format!("{input:?} is not ID:TITLE or ID:TITLE:DESCRIPTION (for example cbd:CBD:Open 8-20)")
    };
    let (id, rest) = input.split_once(':').ok_or_else(usage)?;
    if id.is_empty() {
        return Err(usage());
    }
    Ok(match rest.split_once(':') {
        Some((title, description)) => {
            lipachat_api::ListRow::new(id, title).with_description(description)
        }
        None => lipachat_api::ListRow::new(id, rest),
    })
}

/// Parses a `messageId` (a UUID).
pub fn parse_message_id(input: &str) -> Result<MessageId, String> {
    input
        .parse()
        .map_err(|e| format!("{e}; expected a UUID such as ca739107-4b0d-4581-acb1-4c4af70555de"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn times_and_phones() {
        assert_eq!(
            parse_time("2026-11-23T13:00:00+03:00").map(|t| t.to_rfc3339()),
            Ok("2026-11-23T10:00:00+00:00".to_owned())
        );
        assert!(parse_time("2026-11-23 10:00").is_err());
        assert!(parse_time("yesterday").is_err());
        assert_eq!(
            parse_phone("+254 712 345 678").map(|p| p.to_string()),
            Ok("254712345678".to_owned())
        );
        assert!(parse_phone("0712345678").is_err());
        assert!(parse_message_id("not-a-uuid").is_err());
        assert_eq!(
            parse_customer("US.13491208655302741918"),
            Ok(CustomerArg::User(
                "US.13491208655302741918".parse().unwrap()
            ))
        );
        assert_eq!(
            parse_customer("group:120363040694233820@g.us"),
            Ok(CustomerArg::Group(
                "120363040694233820@g.us".parse().unwrap()
            ))
        );
        assert!(matches!(
            parse_customer("+254 712 345 678"),
            Ok(CustomerArg::Phone(_))
        ));
        assert!(parse_customer("group:two words").is_err());
        assert!(
            parse_customer("us.1349").is_err_and(|e| e.contains("business-scoped user id such as"))
        );
    }

    #[test]
    fn stores() {
        match parse_store("redis://127.0.0.1:6380/3") {
            Ok(StoreChoice::Redis(config)) => assert_eq!(config.url(), "redis://127.0.0.1:6380/3"),
            other => panic!("expected Redis: {other:?}"),
        }
        assert!(matches!(
            parse_store("REDIS://localhost/0"),
            Ok(StoreChoice::Redis(_))
        ));
        assert!(matches!(
            parse_store("redis+unix:///run/redis.sock?db=1"),
            Ok(StoreChoice::Redis(_))
        ));
        assert_eq!(
            parse_store("./sessions.db"),
            Ok(StoreChoice::Sled(PathBuf::from("./sessions.db")))
        );
        assert_eq!(
            parse_store("/var/lib/bot/redis:6379"),
            Ok(StoreChoice::Sled(PathBuf::from("/var/lib/bot/redis:6379")))
        );
        let bad_port = parse_store("redis://host:notaport/0");
        assert!(
            bad_port
                .as_ref()
                .is_err_and(|e| e.contains("is not a Redis URL")),
            "{bad_port:?}"
        );
        // TLS and clusters, with and without credentials.
        for url in [
            "rediss://host:6379/0",
            "rediss://bot:secret@host:6380/0#insecure",
            "redis+cluster://10.0.0.1:7000,10.0.0.2:7000",
            "REDISS+CLUSTER://:secret@10.0.0.1:7000/0",
        ] {
            match parse_store(url) {
                Ok(StoreChoice::Redis(config)) => {
                    assert_eq!(config.url(), url);
                    assert!(!config.to_string().contains("secret"), "{config}");
                }
                other => panic!("{url}: expected Redis: {other:?}"),
            }
        }
        assert!(
            parse_store("redis+cluster://10.0.0.1:7000/3")
                .is_err_and(|e| e.contains("database 0 only"))
        );
        for other in [
            "http://host/",
            "postgres://db",
            "redis+sentinel://host:26379",
        ] {
            let refused = parse_store(other);
            assert!(
                refused
                    .as_ref()
                    .is_err_and(|e| e.contains("is not a store this build opens")),
                "{other}: {refused:?}"
            );
        }
        assert!(parse_store("").is_err());
        // A password never shows in the refusal.
        let secret = parse_store("redis://:hunter2@host:port/0");
        assert!(
            secret.as_ref().is_err_and(|e| !e.contains("hunter2")),
            "{secret:?}"
        );
    }
}
