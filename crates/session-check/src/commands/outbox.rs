//! `pending` and `deliver`: the outbox of messages waiting for the customer's reply.

use chrono::TimeDelta;
use lipachat_api::MessageId;
use lipachat_policy::{DeliveryReport, DeliveryStop, PolicyConfig};
use lipachat_session::Store;
use lipachat_session::view::QueuedView;
use serde::Serialize;

use super::{Context, Exit, Lookup, addressable, conversation_of, customer_name, messenger};
use crate::cli::{Deliver, Pending};
use crate::error::CliError;
use crate::output::{Render, reason_words, span, time, whatsapp_id};
use crate::stored_message::{describe, viewed_content};

/// One queued message, as `pending` prints it: JSON, the shared
/// [`lipachat_session::view::QueuedView`] object (`business`, `customer`, `message_id`,
/// `kind` and `message` saying what it is, `queued_at`, `age_secs`: whole seconds since it
/// was queued, negative when `--now` is before that), the same a running bot's
/// `/admin/pending` answers.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct PendingView {
    view: QueuedView,
    #[serde(skip)]
    content: String,
    #[serde(skip)]
    age: String,
}

impl PendingView {
    /// The view of a queued message whose exact age is `age`.
    fn new(view: QueuedView, age: TimeDelta) -> Self {
        let content = view
            .kind
            .as_deref()
            .zip(view.message.as_ref())
            .and_then(|(kind, message)| viewed_content(kind, message))
            .map_or_else(
                || "a message whose stored form cannot be read".to_owned(),
                |message| describe(&message),
            );
        Self {
            view,
            content,
            age: if age < TimeDelta::zero() {
                "queued after the given --now".to_owned()
            } else {
                format!("{} ago", span(age))
            },
        }
    }

    /// The view of a shared queued-message object (as a running bot's admin route
    /// answers it), aged by its whole seconds.
    pub fn from_shared(view: QueuedView) -> Self {
        let age = TimeDelta::seconds(view.age_secs);
        Self::new(view, age)
    }
}

impl Render for PendingView {
    fn human(&self) -> String {
        let view = &self.view;
        format!(
            "{} {} {}: {}, queued {} ({})",
            view.business, view.customer, view.message_id, self.content, view.queued_at, self.age
        )
    }
}

/// `pending [BUSINESS CUSTOMER]`: exit 0.
pub async fn pending<S: Store>(context: &Context<S>, args: Pending) -> Result<Exit, CliError> {
    let store = context.sessions.store();
    let now = context.sessions.now();
    let conversations = match args.pair() {
        Some(pair) => conversation_of(&context.sessions, &pair, Lookup::Find)
            .await?
            .into_iter()
            .collect(),
        None => store.conversations_with_queued().await?,
    };
    let mut shown = 0usize;
    for conversation in conversations {
        let name = customer_name(store, conversation.customer).await?;
        for message in store.queued(conversation).await? {
            let view = QueuedView::new(
                conversation.business,
                name.clone(),
                &message,
                lipachat_policy::queued_content(&message),
                now,
            );
            context
                .printer
                .emit(&PendingView::new(view, now - message.queued_at))?;
            shown += 1;
        }
    }
    if shown == 0 {
        context.printer.note("no messages queued")?;
    }
    Ok(Exit::Success)
}

#[derive(Debug, Serialize)]
struct DeliveredView {
    message_id: MessageId,
    wa_id: Option<String>,
    queued_at: String,
}

#[derive(Debug, Serialize)]
struct ExpiredView {
    message_id: MessageId,
    queued_at: String,
}

#[derive(Debug, Serialize)]
struct FailedView {
    message_id: MessageId,
    error: String,
}

/// What `deliver` prints: one object for the run.
///
/// `stopped`: why the run stopped with messages still queued (`window_not_open`,
/// `gateway_closed_window`, `send_failed`, `claimed_elsewhere`), else null; `reason`: the
/// refusal reason or the error that stopped it.
#[derive(Debug, Serialize)]
struct DeliveryView {
    business: String,
    customer: String,
    delivered: Vec<DeliveredView>,
    expired: Vec<ExpiredView>,
    failed: Vec<FailedView>,
    remaining: usize,
    stopped: Option<&'static str>,
    reason: Option<String>,
    /// The reason in words, for the human line.
    #[serde(skip)]
    reason_words: Option<String>,
}

impl Render for DeliveryView {
    fn human(&self) -> String {
        let mut lines = Vec::new();
        for d in &self.delivered {
            lines.push(format!(
                "delivered {}{}, queued {}",
                d.message_id,
                whatsapp_id(d.wa_id.as_deref()),
                d.queued_at
            ));
        }
        for e in &self.expired {
            lines.push(format!(
                "expired {}, queued {}: never delivered, taken out",
                e.message_id, e.queued_at
            ));
        }
        for f in &self.failed {
            lines.push(format!("failed {}: {}, taken out", f.message_id, f.error));
        }
        let mut summary = format!(
            "{} delivered, {} expired, {} failed; {} still queued",
            self.delivered.len(),
            self.expired.len(),
            self.failed.len(),
            self.remaining
        );
        if let Some(stopped) = self.stopped {
            let stopped = match stopped {
                "window_not_open" => "the window is not open",
                "gateway_closed_window" => "the gateway reported the window closed",
                "send_failed" => "a send failed",
                "claimed_elsewhere" => "another process is delivering",
                other => other,
            };
            summary.push_str(&format!(
                " (stopped: {stopped}{})",
                self.reason_words
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ));
        }
        lines.push(summary);
        lines.join("\n")
    }
}

/// `deliver BUSINESS CUSTOMER`: exit 0 when nothing remains queued, 1 when the window is
/// closed and messages remain, 2 when a send failed or a message was refused for good.
pub async fn deliver<S: Store + Clone>(
    context: &Context<S>,
    args: Deliver,
) -> Result<Exit, CliError> {
    let conversation = addressable(context, &args.pair).await?;
    let messenger = messenger(context, &args.settings, PolicyConfig::default())?;
    let report = messenger.deliver(conversation).await?;
    let (stopped, reason, error) = stop_parts(&report);
    let reason_words = match &report.stopped {
        Some(DeliveryStop::WindowNotOpen(why)) => Some(reason_words(*why).to_owned()),
        Some(DeliveryStop::GatewayClosedWindow) => Some("closed by the gateway".to_owned()),
        _ => reason.clone(),
    };
    let view = DeliveryView {
        business: conversation.business.to_string(),
        customer: conversation.customer.to_string(),
        delivered: report
            .delivered
            .iter()
            .map(|d| DeliveredView {
                message_id: d.message_id,
                wa_id: d.receipt.wa_id.clone(),
                queued_at: time(d.queued_at),
            })
            .collect(),
        expired: report
            .expired
            .iter()
            .map(|e| ExpiredView {
                message_id: e.message_id,
                queued_at: time(e.queued_at),
            })
            .collect(),
        failed: report
            .failed
            .iter()
            .map(|f| FailedView {
                message_id: f.message_id,
                error: f.error.clone(),
            })
            .collect(),
        remaining: report.remaining,
        stopped,
        reason,
        reason_words,
    };
    context.printer.emit(&view)?;
    if let Some(error) = error {
        return Err(CliError::Incomplete(error));
    }
    if !report.failed.is_empty() {
        return Err(CliError::Incomplete(format!(
            "{} queued message(s) can never be sent and were taken out of the queue: {}",
            report.failed.len(),
            report
                .failed
                .iter()
                .map(|f| format!("{}: {}", f.message_id, f.error))
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    Ok(if report.remaining == 0 {
        Exit::Success
    } else {
        Exit::Negative
    })
}

/// Why the run stopped, the reason to show, and the error to report (exit 2), if any.
fn stop_parts(report: &DeliveryReport) -> (Option<&'static str>, Option<String>, Option<String>) {
    match &report.stopped {
        None => (None, None, None),
        Some(DeliveryStop::WindowNotOpen(reason)) => (
            Some("window_not_open"),
            Some(reason.name().to_owned()),
            None,
        ),
        Some(DeliveryStop::GatewayClosedWindow) => (
            Some("gateway_closed_window"),
            Some("closed_by_gateway".to_owned()),
            None,
        ),
        Some(DeliveryStop::SendFailed(error)) => (
            Some("send_failed"),
            Some(error.to_string()),
            Some(format!(
                "delivery failed; the message stays queued, run deliver again later: {error}"
            )),
        ),
        Some(DeliveryStop::StoreFailed(error)) => (
            Some("store_failed"),
            Some(error.to_string()),
            Some(format!(
                "the store failed; the messages stay queued, run deliver again later: {error}"
            )),
        ),
        Some(DeliveryStop::ClaimedElsewhere(id)) => (
            Some("claimed_elsewhere"),
            Some(format!(
                "message {id} is being delivered by another process"
            )),
            Some(format!(
                "message {id} is being delivered by another process; it stays queued, run deliver again in a minute"
            )),
        ),
        Some(DeliveryStop::UnknownKind { message_id, kind }) => (
            Some("unknown_kind"),
            Some(format!(
                "message {message_id} is of kind {kind}, which a later release queued"
            )),
            Some(format!(
                "message {message_id} is of kind {kind}, which a later release queued; it stays queued for a release that knows it"
            )),
        ),
        Some(other) => (
            Some("unknown"),
            Some(format!("{other:?}")),
            Some(format!("delivery stopped: {other:?}")),
        ),
    }
}
