//! `ingest`: one webhook body applied as the library's webhook handling applies it, without
//! sending anything; one line per event.

use std::io::Read;

use chrono::{DateTime, Utc};
use lipachat_api::{InboundContent, WebhookEvent, WebhookParser};
use lipachat_policy::{EventAction, EventRecording, record_event};
use lipachat_session::{PhoneNumber, RecordedOnce, Store, WindowState};
use serde::Serialize;

use super::{Context, Exit};
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
        if let Some(state) = self.state_after {
            line.push_str(&format!("; window {state}"));
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
    for event in &events {
        let action = EventAction::of(event);
        let recording = record_event(&context.sessions, &action).await?;
        let mut line = describe(event);
        if let EventRecording::Inbound(once) = recording {
            line.duplicate = Some(matches!(once, RecordedOnce::Duplicate { .. }));
        }
        if let EventAction::Nothing { reason, .. } = &action
            && line.event == "ignored"
        {
            line.reason = Some(reason.clone());
        }
        let conversation = match &action {
            EventAction::RecordInbound { conversation, .. }
            | EventAction::RecordClosure { conversation, .. } => Some(*conversation),
            EventAction::Nothing { conversation, .. } => *conversation,
            _ => None,
        };
        if let Some(conversation) = conversation {
            line.state_after = Some(state_name(context.sessions.state(conversation).await?));
        }
        context.printer.emit(&line)?;
        if let Some(moved) = identity_moved(event) {
            context.printer.emit(&moved)?;
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
            customer: conversation.map(|c| digits(c.customer)),
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

/// The `identity_moved` line a number or user-id change adds after its system message.
fn identity_moved(event: &WebhookEvent) -> Option<IngestedEvent> {
    let WebhookEvent::Inbound(message) = event else {
        return None;
    };
    let InboundContent::System(change) = &message.content else {
        return None;
    };
    let (from, to) = if change.is_number_change() {
        (
            message.sender.phone.map(digits),
            change.new_phone.map(digits),
        )
    } else if change.is_user_id_change() {
        (
            message.sender.user_id.as_ref().map(ToString::to_string),
            change.new_user_id.as_ref().map(ToString::to_string),
        )
    } else {
        return None;
    };
    Some(IngestedEvent {
        event: "identity_moved",
        business: Some(digits(message.business)),
        customer: from,
        moved_to: to,
        at: time_opt(message.sent_at),
        ..IngestedEvent::default()
    })
}
