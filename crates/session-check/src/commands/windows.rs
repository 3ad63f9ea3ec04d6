//! `record`, `status`, `list` and `forget`: the windows themselves. None of them sends
//! anything.

use lipachat_session::{Conversation, Store, WindowState};
use serde::Serialize;

use lipachat_policy::consent::ConsentView;

use super::consent::StatusView;
use super::{Context, Exit, Lookup, conversation_of, customer_name};
use crate::cli::{List, Pair, Record, StateFilter};
use crate::error::CliError;
use crate::output::{ListedWindow, Render, WindowView, time};

/// What `record` prints: the new state, when the message was recorded, and whether it
/// opened a window that was not open.
#[derive(Debug, Serialize)]
struct RecordedView {
    #[serde(flatten)]
    window: WindowView,
    recorded_at: String,
    opened: bool,
}

impl Render for RecordedView {
    fn human(&self) -> String {
        let opened = if self.opened {
            " (it opened the window)"
        } else {
            ""
        };
        format!(
            "recorded an inbound message at {}{opened}\n{}",
            self.recorded_at,
            self.window.state_line()
        )
    }
}

/// `record BUSINESS CUSTOMER [--at TIME]`: a user id with no alias is recorded in the
/// user's own conversation; a group in the group's.
pub async fn record<S: Store>(context: &Context<S>, args: Record) -> Result<Exit, CliError> {
    let conversation = conversation_of(&context.sessions, &args.pair, Lookup::Create)
        .await?
        .ok_or_else(|| CliError::Usage(format!("{} names no conversation", args.pair.customer)))?;
    let at = args.at.unwrap_or_else(|| context.sessions.now());
    let recorded = context.sessions.record_inbound(conversation, at).await?;
    let name = customer_name(context.sessions.store(), conversation.customer).await?;
    context.printer.emit(&RecordedView {
        window: WindowView::new(conversation.business, name, recorded.state),
        recorded_at: time(at),
        opened: recorded.opened,
    })?;
    Ok(Exit::Success)
}

/// `status BUSINESS CUSTOMER`: exit 0 open, 1 closed or none. A user id or group never
/// met is none.
pub async fn status<S: Store>(context: &Context<S>, pair: Pair) -> Result<Exit, CliError> {
    let found = conversation_of(&context.sessions, &pair, Lookup::Find).await?;
    let (state, name) = match found {
        Some(conversation) => (
            context.sessions.state(conversation).await?,
            customer_name(context.sessions.store(), conversation.customer).await?,
        ),
        None => (WindowState::Never, pair.customer.to_string()),
    };
    let consent = ConsentView::of(context.sessions.store(), found, context.sessions.now()).await?;
    context.printer.emit(&StatusView::new(
        WindowView::new(pair.business, name, state),
        consent,
    ))?;
    Ok(if state.is_open() {
        Exit::Success
    } else {
        Exit::Negative
    })
}

/// Refuses `--closing-within` with `--state closed`, which could never match.
pub fn check_list(args: &List) -> Result<(), CliError> {
    if args.closing_within.is_some() && args.state == Some(StateFilter::Closed) {
        return Err(CliError::Usage(
            "--closing-within keeps open windows only; it cannot be combined with --state closed"
                .into(),
        ));
    }
    Ok(())
}

/// `list [--state open|closed] [--closing-within DURATION]`.
pub async fn list<S: Store>(context: &Context<S>, args: List) -> Result<Exit, CliError> {
    let sessions = &context.sessions;
    let now = sessions.now();
    let mut shown = 0usize;
    let mut unreadable = Vec::new();
    check_list(&args)?;
    let found: Vec<(Conversation, WindowState)> = match args.closing_within {
        Some(span) => sessions.closing_within_at(span, now).await?,
        None => {
            let mut found = Vec::new();
            for (conversation, record) in sessions.store().windows().await? {
                match record {
                    Ok(record) => {
                        found.push((conversation, sessions.rule().state(Some(&record), now)))
                    }
                    Err(error) => unreadable.push(error.to_string()),
                }
            }
            found
        }
    };
    for (conversation, state) in found {
        let keep = match args.state {
            None => true,
            Some(StateFilter::Open) => state.is_open(),
            Some(StateFilter::Closed) => matches!(state, WindowState::Closed { .. }),
        };
        if keep {
            let name = customer_name(sessions.store(), conversation.customer).await?;
            context.printer.emit(&ListedWindow(WindowView::new(
                conversation.business,
                name,
                state,
            )))?;
            shown += 1;
        }
    }
    if shown == 0 && unreadable.is_empty() {
        context.printer.note("no conversations match")?;
    }
    if !unreadable.is_empty() {
        return Err(CliError::Incomplete(format!(
            "{} stored record(s) could not be read and were not listed: {}",
            unreadable.len(),
            unreadable.join("; ")
        )));
    }
    Ok(Exit::Success)
}

/// What `forget` prints.
#[derive(Debug, Serialize)]
struct Forgotten {
    business: String,
    customer: String,
    forgotten: bool,
}

impl Render for Forgotten {
    fn human(&self) -> String {
        if self.forgotten {
            format!(
                "forgot everything stored for {} {}",
                self.business, self.customer
            )
        } else {
            format!("nothing was stored for {} {}", self.business, self.customer)
        }
    }
}

/// `forget BUSINESS CUSTOMER`: exit 0 whether or not anything was stored. For a user id
/// an alias names, the phone's conversation is the one forgotten.
pub async fn forget<S: Store>(context: &Context<S>, pair: Pair) -> Result<Exit, CliError> {
    let (forgotten, name) = match conversation_of(&context.sessions, &pair, Lookup::Find).await? {
        Some(conversation) => (
            context.sessions.forget(conversation).await?,
            customer_name(context.sessions.store(), conversation.customer).await?,
        ),
        None => (false, pair.customer.to_string()),
    };
    context.printer.emit(&Forgotten {
        business: pair.business.to_string(),
        customer: name,
        forgotten,
    })?;
    Ok(Exit::Success)
}
