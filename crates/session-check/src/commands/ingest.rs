//! `ingest`: one webhook body applied as the library's webhook handling applies it, without
//! sending anything; one line per event.

use std::io::Read;

use chrono::{DateTime, Utc};
use lipachat_api::{WebhookEvent, WebhookParser};
use lipachat_policy::{
    EventAction, EventRecording, PolicyConfig, record_consent_and_cost, record_event,
};
use lipachat_session::{Customer, PhoneNumber, RecordedOnce, Store, WindowState};
use serde::Serialize;

use super::{Context, Exit, customer_name};
use crate::cli::{Ingest, phones};
use crate::error::CliError;
use crate::output::{Render, time, time_opt};

/// Reads the body named by the arguments (a file, or standard input) and checks that it
/// is a webhook, before any store is opened: a body that is not one stores nothing.
pub fn prepare(args: &mut Ingest, now: Option<DateTime<Utc>>) -> Result<(), CliError> {
    let limit = lipachat_api::webhook::DEFAULT_MAX_WEBHOOK_BYTES;
    let mut body = Vec::new();
    // One byte over the limit is enough for the parser to say the body is too large.
    let taken = (limit as u64) + 1;
    let read = match args.file.as_deref() {
        Some(path) if path.as_os_str() != "-" => std::fs::File::open(path)
            .and_then(|file| file.take(taken).read_to_end(&mut body))
            .map_err(|source| CliError::Input {
                what: format!("webhook body {}", path.display()),
                source,
            }),
        _ => std::io::stdin()
            .lock()
            .take(taken)
            .read_to_end(&mut body)
            .map_err(|source| CliError::Input {
                what: "webhook body on standard input".to_owned(),
                source,
            }),
    };
    read?;
    parser(args)
        .parse(&body, received_at(args, now))
        .map_err(|e| CliError::NotAWebhook(e.to_string()))?;
    args.body = body;
    Ok(())
}

fn parser(args: &Ingest) -> WebhookParser {
    let parser = WebhookParser::new().with_default_country(phones());
    match args.business {
        Some(business) => parser.with_business_number(business),
        None => parser,
    }
}

fn received_at(args: &Ingest, now: Option<DateTime<Utc>>) -> DateTime<Utc> {
    args.received_at.or(now).unwrap_or_else(Utc::now)
}

/// One line of `ingest`'s output.
#[derive(Debug, Default, Serialize)]
struct IngestedEvent {
    event: &'static str,
    business: Option<String>,
    customer: Option<String>,
    group: Option<String>,
    kind: Option<String>,
    opens_window: Option<bool>,
    sent_at: Option<String>,
    status: Option<String>,
    error_code: Option<u32>,
    at: Option<String>,
    duplicate: Option<bool>,
    state_after: Option<&'static str>,
    /// For `identity_moved`: the new identity.
    moved_to: Option<String>,
    reason: Option<String>,
}

impl Render for IngestedEvent {
    fn human(&self) -> String {
        let mut line = self.event.to_owned();
        for part in [&self.kind, &self.status].into_iter().flatten() {
            line.push(' ');
            line.push_str(part);
        }
        if let Some(code) = self.error_code {
            line.push_str(&format!(" (error {code})"));
        }
        match (&self.business, &self.customer, &self.group) {
            (Some(b), _, Some(g)) => line.push_str(&format!(" {b}→group {g}")),
            (Some(b), Some(c), None) => line.push_str(&format!(" {b}→{c}")),
            (Some(b), None, None) => line.push_str(&format!(" for {b}")),
            (None, Some(c), _) => line.push_str(&format!(" from {c}")),
            _ => {}
        }
        if let Some(to) = &self.moved_to {
            line.push_str(&format!(" moved to {to}"));
        }
        if let Some(at) = self.at.as_ref().or(self.sent_at.as_ref()) {
            line.push_str(&format!(" at {at}"));
        }
        if self.opens_window == Some(true) {
            line.push_str(", opens the window");
        }
        match self.duplicate {
            Some(true) => line.push_str(", a redelivered copy: nothing recorded"),
            Some(false) => line.push_str(", recorded"),
            None => {}
        }
        match self.state_after {
            Some("none") => line.push_str("; window none (never messaged)"),
            Some(state) => line.push_str(&format!("; window {state}")),
            None => {}
        }
        if let Some(reason) = &self.reason {
            line.push_str(&format!(": {reason}"));
        }
        line
    }
}

fn digits(phone: PhoneNumber) -> String {
    phone.canonical_digits()
}

fn state_name(state: WindowState) -> &'static str {
    match state {
        WindowState::Open { .. } => "open",
        WindowState::Closed { .. } => "closed",
        _ => "none",
    }
}

/// `ingest`: applies the prepared body's events in order.
pub async fn ingest<S: Store>(
    context: &Context<S>,
    args: Ingest,
    now: Option<DateTime<Utc>>,
) -> Result<Exit, CliError> {
    let events = parser(&args)
        .parse(&args.body, received_at(&args, now))
        .map_err(|e| CliError::NotAWebhook(e.to_string()))?;
    let store = context.sessions.store();
    let config = PolicyConfig::default();
    for event in &events {
        let action = EventAction::of(event);
        let (recording, identified) = record_event(&context.sessions, &action).await?;
        // Consent and cost, for the customer resolved as a bot resolves them: a STOP, a
        // referral, a status's pricing.
        record_consent_and_cost(&context.sessions, &config, event, &identified).await?;
        let mut line = describe(event);
        if let EventAction::Nothing { reason, .. } = &action
            && line.event == "ignored"
        {
            line.reason = Some(reason.clone());
        }
        let (conversation, moved) = match recording {
            EventRecording::Inbound {
                conversation,
                recorded,
            } => {
                line.duplicate = Some(matches!(recorded, RecordedOnce::Duplicate { .. }));
                (Some(conversation), None)
            }
            EventRecording::Closure { conversation, .. } => (Some(conversation), None),
            EventRecording::IdentityMoved(merged) => (None, Some(merged)),
            EventRecording::Nothing { conversation } => (conversation, None),
            _ => (None, None),
        };
        if let Some(conversation) = conversation {
            line.state_after = Some(state_name(context.sessions.state(conversation).await?));
            // Who the event turned out to be with: the phone an alias names, the user id
            // of a user known by it alone; a group message keeps its sender.
            if line.business.is_none() {
                line.business = Some(digits(conversation.business));
            }
            match conversation.customer {
                Customer::Group(group) => {
                    if line.group.is_none() {
                        line.group = store.group_id(group).await?.map(|id| id.to_string());
                    }
                }
                customer => line.customer = Some(customer_name(store, customer).await?),
            }
        }
        context.printer.emit(&line)?;
        if let Some(merged) = moved {
            context.printer.emit(&IngestedEvent {
                event: "identity_moved",
                business: Some(digits(merged.from.business)),
                customer: Some(customer_name(store, merged.from.customer).await?),
                moved_to: Some(customer_name(store, merged.to.customer).await?),
                at: line.sent_at.clone(),
                state_after: Some(state_name(context.sessions.state(merged.to).await?)),
                ..IngestedEvent::default()
            })?;
        }
    }
    Ok(Exit::Success)
}

/// The fields an event names, before anything is recorded.
fn describe(event: &WebhookEvent) -> IngestedEvent {
    match event {
        WebhookEvent::Inbound(message) => IngestedEvent {
            event: "inbound",
            business: Some(digits(message.business)),
            customer: message
                .sender
                .phone
                .map(digits)
                .or_else(|| message.sender.user_id.as_ref().map(ToString::to_string)),
            group: message.group.as_ref().map(ToString::to_string),
            kind: Some(message.kind.name().to_owned()),
            opens_window: Some(message.opens_window),
            sent_at: time_opt(message.sent_at),
            ..IngestedEvent::default()
        },
        WebhookEvent::WindowClosed {
            conversation,
            at,
            code,
            ..
        } => IngestedEvent {
            event: "window_closed",
            business: conversation.map(|c| digits(c.business)),
            customer: conversation.and_then(|c| c.phone()).map(digits),
            error_code: Some(*code),
            at: Some(time(*at)),
            ..IngestedEvent::default()
        },
        WebhookEvent::Status(status) => IngestedEvent {
            event: "status",
            business: status.recipient.business.map(digits),
            customer: status
                .recipient
                .phone
                .map(digits)
                .or_else(|| status.recipient.user_id.as_ref().map(ToString::to_string)),
            group: status.recipient.group.as_ref().map(ToString::to_string),
            status: serde_json::to_value(status.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned)),
            error_code: status.error_code,
            at: Some(time(status.at)),
            ..IngestedEvent::default()
        },
        _ => IngestedEvent {
            event: "ignored",
            ..IngestedEvent::default()
        },
    }
}
