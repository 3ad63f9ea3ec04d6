//! `send-contact`: the policy's guarded send path, or with `--dry-run` what it would do.

use lipachat_api::{ContactMessage, ContactPhone, FreeFormMessage, MessageId, TemplateMessage};
use lipachat_policy::consent::{PricingConfig, Withholding};
use lipachat_policy::cost::{Estimate, PriceTable};
use lipachat_policy::{
    DryRun, Messenger, OnClosed, PolicyConfig, PreviousOutcome, SendOutcome, SendRequest,
    TemplateSent,
};
use lipachat_session::{SendDecision, Store};
use serde::Serialize;
use serde_json::Value;

use super::{Context, Exit, addressable, client, sending_sessions};
use crate::cli::{OnClosedChoice, SendContact};
use crate::error::CliError;
use crate::output::{Render, reason_words, span, time, whatsapp_id};
use crate::stored_message::previous_outcome;

/// What `send-contact` prints for a send.
///
/// `message_id`: the contact card's own id when it was sent or queued (or sent and refused
/// by the gateway), else null. `wa_id`: WhatsApp's id of what this call sent (the card, or
/// the template), else null. `template_message_id`: the template this call sent, else
/// null. `reason`: why the window was not open, null for `sent`. A rejection of a card the
/// gateway refused as outside the window adds `"refused_by_gateway": true`: that request
/// did leave. A repeated `--message-id` prints the earlier outcome with its ids and
/// `"duplicate": true`.
#[derive(Debug, Serialize)]
struct SendView {
    outcome: &'static str,
    message_id: Option<MessageId>,
    wa_id: Option<String>,
    template_message_id: Option<MessageId>,
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refused_by_gateway: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate: Option<bool>,
    /// The predicted pricing category of what this call sent (or withheld), else null.
    category: Option<&'static str>,
    /// Whether that is predicted free, else null.
    free: Option<bool>,
    /// When a marketing template may be tried again (reason `marketing_limit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_at: Option<String>,
    /// The estimated price from `--prices` (`amount`, `currency`, `market`), when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    estimate: Option<Estimate>,
    #[serde(skip)]
    human: String,
}

impl Render for SendView {
    fn human(&self) -> String {
        self.human.clone()
    }
}

/// What `send-contact --dry-run` prints.
///
/// `outcome` is always `dry-run`; `would` names the outcome the real send would print
/// (`sent`, `rejected`, `rerouted`, `queued`; for a `--message-id` already used, the
/// earlier outcome, with `"duplicate": true`). `decision` and `reason` are the window's.
#[derive(Debug, Serialize)]
struct DryRunView {
    outcome: &'static str,
    would: &'static str,
    message_id: MessageId,
    wa_id: Option<String>,
    template_message_id: Option<MessageId>,
    reason: Option<&'static str>,
    decision: &'static str,
    on_closed: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate: Option<bool>,
    /// The exact JSON body of the contact card's send, when the card would be sent (now,
    /// or from the outbox after the customer's reply); else null.
    body: Option<Value>,
    /// The exact JSON body of the template that would go instead (window not open, with
    /// `template` or `queue`, unless one already went for this closed window).
    template_body: Option<Value>,
    /// The predicted pricing category of what would go (the card, or the template), else
    /// null.
    category: Option<&'static str>,
    /// Whether that would be free, else null.
    free: Option<bool>,
    /// The estimated price from `--prices`, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    estimate: Option<Estimate>,
    #[serde(skip)]
    human: String,
}

impl Render for DryRunView {
    fn human(&self) -> String {
        self.human.clone()
    }
}

/// `send-contact BUSINESS CUSTOMER --name NAME --phone PHONE ...`.
pub async fn send_contact<S: Store + Clone>(
    context: &Context<S>,
    args: SendContact,
) -> Result<Exit, CliError> {
    let (card, on_closed) = check(&args)?;
    let conversation = addressable(context, &args.pair).await?;
    let sessions = sending_sessions(context, &args.settings)?;
    let config = PolicyConfig::default()
        .on_closed(on_closed.clone())
        .pricing(pricing_config(&args)?);
    if args.dry_run {
        // The policy's own plan: no client, so no key is needed.
        let mut request = SendRequest::contact(conversation, card);
        if let Some(id) = args.message_id {
            request = request.message_id(id);
        }
        let plan = DryRun::plan(&sessions, &config, &request).await?;
        // A messageId already used: the real send would repeat its outcome.
        let previous = match args.message_id {
            Some(id) => previous_outcome(context.sessions.store(), conversation, id).await?,
            None => None,
        };
        let view = dry_run_view(&plan, request.message(), &on_closed, previous.as_ref());
        context.printer.emit(&view)?;
        return Ok(exit_for(view.would));
    }
    let messenger = Messenger::new(sessions, client(&args.settings)?, config);
    let mut request = SendRequest::contact(conversation, card);
    if let Some(id) = args.message_id {
        request = request.message_id(id);
    }
    let outcome = messenger.send(request).await?;
    let view = send_view(&outcome)?;
    context.printer.emit(&view)?;
    Ok(exit_for(view.outcome))
}

/// The pricing settings: the template's category when given, and the user's price file.
fn pricing_config(args: &SendContact) -> Result<PricingConfig, CliError> {
    let mut pricing = PricingConfig::default();
    if let (Some(template), Some(category)) = (&args.template, args.template_category) {
        pricing
            .template_categories
            .insert(template.clone(), category);
    }
    if let Some(path) = &args.prices {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::Usage(format!(
                "cannot read the price file {}: {e}",
                path.display()
            ))
        })?;
        pricing.prices = Some(
            PriceTable::parse(&text)
                .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?,
        );
    }
    Ok(pricing)
}

/// The exit status of a send that ended with the outcome named `outcome`: 1 rejected, 0
/// otherwise.
fn exit_for(outcome: &str) -> Exit {
    if outcome == "rejected" {
        Exit::Negative
    } else {
        Exit::Success
    }
}

/// The contact card and the closed-window choice, checked (before the database is opened,
/// and again when sending).
pub fn check(args: &SendContact) -> Result<(ContactMessage, OnClosed), CliError> {
    let on_closed = on_closed(args)?;
    let mut phone = ContactPhone::new(args.phone, args.phone_type.as_str());
    if let Some(wa_id) = args.wa_id {
        phone = phone.with_wa_id(wa_id);
    }
    let card = ContactMessage::new(args.name.as_str(), vec![phone])?;
    pricing_config(args)?;
    Ok((card, on_closed))
}

/// The closed-window choice, with its template checked before any request.
fn on_closed(args: &SendContact) -> Result<OnClosed, CliError> {
    let template = match (&args.template, &args.language) {
        (Some(name), Some(language)) => Some(
            TemplateMessage::new(name.as_str(), language.as_str())?
                .with_body_placeholders(args.params.iter().cloned())?,
        ),
        (Some(_), None) => return Err(CliError::Usage("--template needs --language".into())),
        (None, Some(_)) => return Err(CliError::Usage("--language needs --template".into())),
        (None, None) if !args.params.is_empty() => {
            return Err(CliError::Usage("--param needs --template".into()));
        }
        (None, None) => None,
    };
    match (args.on_closed, template) {
        (OnClosedChoice::Reject, None) => Ok(OnClosed::Reject),
        (OnClosedChoice::Reject, Some(_)) => Err(CliError::Usage(
            "--template is sent only with --on-closed template or queue".into(),
        )),
        (OnClosedChoice::Template, Some(template)) => Ok(OnClosed::Template(template)),
        (OnClosedChoice::Queue, Some(template)) => Ok(OnClosed::Queue(template)),
        (choice @ (OnClosedChoice::Template | OnClosedChoice::Queue), None) => {
            let name = if choice == OnClosedChoice::Template {
                "template"
            } else {
                "queue"
            };
            Err(CliError::Usage(format!(
                "--on-closed {name} needs --template NAME and --language CODE"
            )))
        }
    }
}

fn template_parts(template: Option<&TemplateSent>) -> (Option<MessageId>, Option<String>) {
    match template {
        Some(sent) => (Some(sent.message_id), sent.receipt.wa_id.clone()),
        None => (None, None),
    }
}

fn template_words(template: Option<&TemplateSent>) -> String {
    match template {
        Some(sent) => format!(
            "template {} sent{}",
            sent.message_id,
            whatsapp_id(sent.receipt.wa_id.as_deref())
        ),
        None => "no template sent: an invitation already went for this closed window".into(),
    }
}

fn send_view(outcome: &SendOutcome) -> Result<SendView, CliError> {
    let mut view = bare_send_view(outcome)?;
    // In the JSON only: the human lines keep their wording (scripts match them).
    if let Some(pricing) = outcome.pricing() {
        view.category = Some(pricing.category.name());
        view.free = Some(pricing.free);
        view.estimate = pricing.estimate.clone();
    }
    Ok(view)
}

fn bare_send_view(outcome: &SendOutcome) -> Result<SendView, CliError> {
    let view = match outcome {
        SendOutcome::Sent {
            message_id,
            receipt,
            expires_at,
            ..
        } => SendView {
            outcome: "sent",
            message_id: Some(*message_id),
            wa_id: receipt.wa_id.clone(),
            template_message_id: None,
            reason: None,
            refused_by_gateway: None,
            duplicate: None,
            category: None,
            free: None,
            retry_at: None,
            estimate: None,
            human: format!(
                "sent: contact card {message_id}{}; the window closes {}",
                whatsapp_id(receipt.wa_id.as_deref()),
                time(*expires_at)
            ),
        },
        SendOutcome::Rerouted {
            template, reason, ..
        } => {
            let (template_message_id, wa_id) = template_parts(template.as_ref());
            SendView {
                outcome: "rerouted",
                message_id: None,
                wa_id,
                template_message_id,
                reason: Some(reason.name()),
                refused_by_gateway: None,
                duplicate: None,
                category: None,
                free: None,
                retry_at: None,
                estimate: None,
                human: format!(
                    "rerouted: the window is not open ({}); the contact card was dropped; {}",
                    reason_words(*reason),
                    template_words(template.as_ref())
                ),
            }
        }
        SendOutcome::Queued {
            message_id,
            template,
            reason,
            ..
        } => {
            let (template_message_id, wa_id) = template_parts(template.as_ref());
            SendView {
                outcome: "queued",
                message_id: Some(*message_id),
                wa_id,
                template_message_id,
                reason: Some(reason.name()),
                refused_by_gateway: None,
                duplicate: None,
                category: None,
                free: None,
                retry_at: None,
                estimate: None,
                human: format!(
                    "queued: contact card {message_id} waits for the customer's reply (the window is not open: {}); {}",
                    reason_words(*reason),
                    template_words(template.as_ref())
                ),
            }
        }
        // The card went out and the gateway refused it: a request left, so the output
        // must not say that nothing was sent.
        SendOutcome::Rejected {
            message_id,
            reason,
            refused_by_gateway: true,
            ..
        } => SendView {
            outcome: "rejected",
            message_id: Some(*message_id),
            wa_id: None,
            template_message_id: None,
            reason: Some(reason.name()),
            refused_by_gateway: Some(true),
            duplicate: None,
            category: None,
            free: None,
            retry_at: None,
            estimate: None,
            human: format!(
                "rejected: the gateway refused contact card {message_id} as outside the window ({}); it was sent but not delivered",
                reason_words(*reason)
            ),
        },
        SendOutcome::Rejected { reason, .. } => SendView {
            outcome: "rejected",
            message_id: None,
            wa_id: None,
            template_message_id: None,
            reason: Some(reason.name()),
            refused_by_gateway: None,
            duplicate: None,
            category: None,
            free: None,
            retry_at: None,
            estimate: None,
            human: format!(
                "rejected: the window is not open ({}); nothing was sent",
                reason_words(*reason)
            ),
        },
        SendOutcome::Withheld {
            message_id,
            reason,
            refused_by_gateway,
            ..
        } => SendView {
            outcome: "rejected",
            message_id: None,
            wa_id: None,
            template_message_id: None,
            reason: Some(reason.name()),
            refused_by_gateway: refused_by_gateway.then_some(true),
            duplicate: None,
            category: None,
            free: None,
            retry_at: reason.retry_at().map(time),
            estimate: None,
            human: format!(
                "rejected: the window is not open and {}; {}",
                withheld_words(*reason),
                if *refused_by_gateway {
                    format!("the gateway refused the template for contact card {message_id}")
                } else {
                    "nothing was sent".to_owned()
                }
            ),
        },
        SendOutcome::Duplicate(previous) => {
            let name = previous.kind.name();
            let message_id = matches!(name, "sent" | "queued").then_some(previous.message_id);
            SendView {
                outcome: name,
                message_id,
                wa_id: previous.wa_id.clone(),
                template_message_id: previous.template_message_id,
                reason: None,
                refused_by_gateway: None,
                duplicate: Some(true),
                category: None,
                free: None,
                retry_at: None,
                estimate: None,
                human: format!(
                    "{name} (earlier, at {}): message {} was already handled; nothing was sent again",
                    time(previous.at),
                    previous.message_id
                ),
            }
        }
        other => {
            return Err(CliError::Incomplete(format!(
                "the send ended with an outcome this build does not know: {}",
                other.name()
            )));
        }
    };
    Ok(view)
}

/// Why a template was withheld, in words.
fn withheld_words(reason: Withholding) -> String {
    match reason {
        Withholding::OptedOut => {
            "the customer opted out of marketing from this number (opted_out)".to_owned()
        }
        Withholding::MarketingLimit { retry_at } => format!(
            "the per-user marketing limit (131049) holds marketing templates until {} (marketing_limit)",
            time(retry_at)
        ),
        Withholding::MessagingLimit { reached, limit } => format!(
            "the portfolio reached its messaging limit ({reached} of {limit} customers in 24 hours; messaging_limit)"
        ),
        _ => reason.name().to_owned(),
    }
}

/// The dry run's view: the window's decision, what the real send would do, and the
/// bodies of what it would send (none when it would send nothing).
fn dry_run_view(
    plan: &DryRun,
    message: &FreeFormMessage,
    on_closed: &OnClosed,
    previous: Option<&PreviousOutcome>,
) -> DryRunView {
    let (decision, reason, decision_words) = match plan.decision {
        SendDecision::Allowed {
            expires_at,
            remaining,
        } => (
            "open",
            None,
            format!(
                "open: the window closes {} (in {}); ",
                time(expires_at),
                span(remaining)
            ),
        ),
        SendDecision::Refused { reason, .. } => (
            "closed",
            Some(reason),
            format!("closed ({}): ", reason_words(reason)),
        ),
    };
    // What the send would do, and whether the card and the template would go.
    let (would, consequence, card, template) = match (previous, reason, on_closed) {
        (Some(previous), _, _) => (
            previous.kind.name(),
            format!(
                "message {} was already handled ({}, at {}): the send would repeat that outcome and send nothing",
                previous.message_id,
                previous.kind.name(),
                time(previous.at)
            ),
            false,
            false,
        ),
        (None, None, _) => (
            "sent",
            "the contact card would be sent".to_owned(),
            true,
            false,
        ),
        (None, Some(_), OnClosed::Reject) => (
            "rejected",
            "the contact card would not be sent; --on-closed reject: it would be rejected and nothing would be sent".to_owned(),
            false,
            false,
        ),
        (None, Some(_), OnClosed::Template(_)) => (
            "rerouted",
            "the contact card would not be sent; --on-closed template: it would be rerouted, the template below sent instead".to_owned(),
            false,
            true,
        ),
        (None, Some(_), other) => (
            "queued",
            format!(
                "the contact card would not be sent now; --on-closed {}: it would be queued until the customer replies, and the template below would invite a reply",
                other.name()
            ),
            true,
            true,
        ),
    };
    // Consent withholding the template: the send would be rejected, nothing sent (the
    // messaging limit is counted by a real send only).
    let (would, consequence, card, template, reason_name) = match (previous, plan.withheld) {
        (None, Some(withheld)) if template => (
            "rejected",
            format!(
                "the template would not be sent: {}; the send would be rejected and nothing would be sent",
                withheld_words(withheld)
            ),
            false,
            false,
            Some(withheld.name()),
        ),
        _ => (would, consequence, card, template, reason.map(|r| r.name())),
    };
    let body = card.then(|| plan.body.clone());
    let template_body = if template {
        plan.template_body.clone()
    } else {
        None
    };
    let pretty =
        |value: &Value| serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    let mut human = format!("dry-run: nothing sent\ndecision: {decision_words}{consequence}");
    let pricing = plan.pricing.as_ref().filter(|_| previous.is_none());
    if let Some(body) = &body {
        if reason.is_some() {
            human.push_str("\nthe contact card, sent from the outbox once the customer replies:");
        }
        human.push_str(&format!("\nPOST {} {}", message.path(), pretty(body)));
    }
    if let Some(template) = &template_body {
        human.push_str(&format!(
            "\ntemplate, unless one already went for this closed window:\nPOST {} {}",
            lipachat_api::Endpoint::Template.path(),
            pretty(template)
        ));
    }
    DryRunView {
        outcome: "dry-run",
        would,
        message_id: plan.message_id,
        wa_id: None,
        template_message_id: None,
        reason: reason_name,
        decision,
        on_closed: on_closed.name(),
        duplicate: previous.map(|_| true),
        body,
        template_body,
        category: pricing.map(|p| p.category.name()),
        free: pricing.map(|p| p.free),
        estimate: pricing.and_then(|p| p.estimate.clone()),
        human,
    }
}
