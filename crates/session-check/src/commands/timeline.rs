//! `timeline BUSINESS CUSTOMER`: what the store keeps of one conversation, drawn on a time
//! axis ([`crate::timeline`]) and listed by time. Reads only.

use chrono::{DateTime, Utc};
use lipachat_policy::{OutcomeKind, PreviousOutcome};
use lipachat_session::{Conversation, Store, WindowRecord, WindowRule};
use serde::Serialize;

use super::{Context, Exit, Lookup, conversation_of, customer_name};
use crate::cli::Timeline;
use crate::duration;
use crate::error::CliError;
use crate::output::{Render, WindowView, time, time_opt, whatsapp_id};
use crate::stored_message::{describe, outcomes, queued_content};
use crate::timeline::{Event, EventKind, WindowSpan, draw};

/// What `timeline` prints: with `--json`, the window and every event in time order; in
/// human form, the chart and the list.
#[derive(Debug, Serialize)]
struct TimelineView {
    business: String,
    customer: String,
    /// `open`, `closed` or `none`.
    state: &'static str,
    last_inbound: Option<String>,
    /// When the window ends by its length.
    expires_at: Option<String>,
    /// When the gateway closed the window (131047), if it did and no later inbound
    /// message reopened it.
    gateway_closed_at: Option<String>,
    margin_secs: i64,
    now: String,
    events: Vec<Event>,
    /// Stored outcomes that could not be read (not drawn).
    unreadable_outcomes: usize,
    #[serde(skip)]
    human: String,
}

impl Render for TimelineView {
    fn human(&self) -> String {
        self.human.clone()
    }
}

/// What the store does not keep, and the chart therefore cannot show.
const NOT_STORED: &str = "Not stored, so not drawn: inbound messages before the latest, \
earlier windows and their invitations, sends the store keeps no outcome of (under the reject \
policy without --message-id), and outcomes older than their 7 days.";

/// `timeline BUSINESS CUSTOMER [--margin DURATION]`: exit 0.
pub async fn timeline<S: Store>(context: &Context<S>, args: Timeline) -> Result<Exit, CliError> {
    let sessions = &context.sessions;
    let now = sessions.now();
    let rule = sessions.rule().with_margin(args.margin.value)?;
    let conversation = conversation_of(sessions, &args.pair, Lookup::Find).await?;
    let (record, name) = match conversation {
        Some(conversation) => (
            sessions.store().window(conversation).await?,
            customer_name(sessions.store(), conversation.customer).await?,
        ),
        None => (None, args.pair.customer.to_string()),
    };
    let window = record.map(|record| span(&rule, &record));
    let mut events = window_events(window.as_ref(), &rule, now);
    let mut unreadable_outcomes = 0;
    if let Some(conversation) = conversation {
        stored_events(sessions.store(), conversation, &mut events).await?;
        let (kept, unreadable) = outcomes(sessions.store(), conversation).await?;
        events.extend(kept.iter().filter_map(outcome_event));
        unreadable_outcomes = unreadable;
    }
    events.sort_by_key(|event| (event.at, event.kind));

    let state = rule.state(record.as_ref(), now);
    let view = WindowView::new(args.pair.business, name, state);
    let mut human = vec![
        format!(
            "{} {}: {}; as at {}, margin {}",
            view.window.business,
            view.window.customer,
            view.state_line(),
            time(now),
            duration::format(args.margin.value)
        ),
        String::new(),
    ];
    human.extend(draw(window.as_ref(), &events, now));
    human.push(String::new());
    if unreadable_outcomes > 0 {
        human.push(format!(
            "{unreadable_outcomes} stored send outcome(s) could not be read and are not drawn."
        ));
    }
    human.push(NOT_STORED.to_owned());
    context.printer.emit(&TimelineView {
        business: view.window.business.clone(),
        customer: view.window.customer.clone(),
        state: state.name(),
        last_inbound: time_opt(state.last_inbound()),
        expires_at: time_opt(window.map(|w| w.ends)),
        gateway_closed_at: time_opt(window.and_then(|w| w.closed_by_gateway)),
        margin_secs: args.margin.value.num_seconds(),
        now: time(now),
        events,
        unreadable_outcomes,
        human: human.join("\n"),
    })?;
    Ok(Exit::Success)
}

/// The window a record stands for under `rule`.
fn span(rule: &WindowRule, record: &WindowRecord) -> WindowSpan {
    let ends = record
        .last_inbound
        .checked_add_signed(rule.window())
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    WindowSpan {
        opened: record.last_inbound,
        margin_from: ends - rule.margin(),
        ends,
        closed_by_gateway: record.effective_gateway_closure(),
    }
}

/// An event with no message.
fn event(at: DateTime<Utc>, kind: EventKind, description: String) -> Event {
    Event {
        at,
        kind,
        message_id: None,
        wa_id: None,
        description,
    }
}

/// The window's own events (the inbound message, a gateway closure, the margin, the end)
/// and now.
fn window_events(window: Option<&WindowSpan>, rule: &WindowRule, now: DateTime<Utc>) -> Vec<Event> {
    let mut events = vec![event(now, EventKind::Now, "now".to_owned())];
    let Some(window) = window else {
        return events;
    };
    // WhatsApp's window reads as 24h, not as a day.
    let length = match rule.window().num_hours() {
        hours if chrono::TimeDelta::hours(hours) == rule.window() => format!("{hours}h"),
        _ => duration::format(rule.window()),
    };
    events.push(event(
        window.opened,
        EventKind::Inbound,
        "inbound message (the latest; earlier ones are not kept)".to_owned(),
    ));
    let (margin, end) = match window.closed_by_gateway {
        Some(closed) => {
            events.push(event(
                closed,
                EventKind::ClosedByGateway,
                "closed by the gateway (WhatsApp 131047): free-form sends refused until the customer writes"
                    .to_owned(),
            ));
            (
                "the margin would have begun here".to_owned(),
                format!("the window would have ended, {length} after the inbound message"),
            )
        }
        None if window.ends <= now => (
            "the margin began: free-form sends were refused from here".to_owned(),
            format!("the window closed (expired), {length} after the inbound message"),
        ),
        None => (
            "the margin begins: free-form sends are refused from here".to_owned(),
            format!("the window ends, {length} after the inbound message"),
        ),
    };
    if rule.margin() > chrono::TimeDelta::zero() {
        events.push(event(window.margin_from, EventKind::Margin, margin));
    }
    events.push(event(window.ends, EventKind::WindowEnd, end));
    events
}

/// The conversation's invitation and queued messages.
async fn stored_events<S: Store>(
    store: &S,
    conversation: Conversation,
    events: &mut Vec<Event>,
) -> Result<(), CliError> {
    if let Some(entry) = store.free_entry_point(conversation).await?
        && let (Some(opened), Some(until)) = (entry.opened_at, entry.until)
    {
        let whose = if entry.confirmed {
            "confirmed by the platform"
        } else {
            "predicted"
        };
        events.push(event(
            opened,
            EventKind::FreeEntryPoint,
            "the reply to a click-to-WhatsApp ad opened a free entry point window (free messages; no permission beyond the 24-hour window)".to_owned(),
        ));
        events.push(event(
            until,
            EventKind::FreeEntryPointEnd,
            format!("the free entry point window ends ({whose})"),
        ));
    }
    if let Some(invitation) = store.invitation(conversation).await? {
        let id = invitation.message_id;
        events.push(Event {
            message_id: Some(id),
            ..event(
                invitation.sent_at,
                EventKind::Invitation,
                format!("invitation template {id} sent while the window was closed"),
            )
        });
    }
    for queued in store.queued(conversation).await? {
        let id = queued.message_id;
        let content = queued_content(&queued).map_or_else(
            || "a message whose stored form cannot be read".to_owned(),
            |message| describe(&message),
        );
        events.push(Event {
            message_id: Some(id),
            ..event(
                queued.queued_at,
                EventKind::Queued,
                format!("queued {id}: {content}, waiting for the customer's reply"),
            )
        });
    }
    Ok(())
}

/// The event a stored send outcome stands for; none for a queued one (the outbox shows
/// what waits).
fn outcome_event(outcome: &PreviousOutcome) -> Option<Event> {
    let id = outcome.message_id;
    let content = outcome
        .message
        .as_ref()
        .map_or_else(|| "the message".to_owned(), describe);
    let sent_as = whatsapp_id(outcome.wa_id.as_deref());
    let (kind, description) = match outcome.kind {
        OutcomeKind::Sent => (EventKind::Sent, format!("sent {id}: {content}{sent_as}")),
        OutcomeKind::Delivered => (
            EventKind::Delivered,
            format!("delivered {id} after the customer's reply: {content}{sent_as}"),
        ),
        OutcomeKind::Rerouted => (
            EventKind::Rerouted,
            match outcome.template_message_id {
                Some(template) => {
                    format!("rerouted {id}: not sent, template {template} went instead")
                }
                None => format!("rerouted {id}: not sent (an invitation had already gone)"),
            },
        ),
        OutcomeKind::Expired => (
            EventKind::Expired,
            format!("expired {id}: {content}, never delivered, taken out of the outbox"),
        ),
        OutcomeKind::Refused => (
            EventKind::Refused,
            format!("refused {id} by the gateway as outside the window: {content}"),
        ),
        _ => return None,
    };
    Some(Event {
        message_id: Some(id),
        wa_id: outcome.wa_id.clone(),
        ..event(outcome.at, kind, description)
    })
}
