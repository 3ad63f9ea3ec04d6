//! The free-form send commands (send-contact, send-text, send-media, send-buttons,
//! send-list): one run through the policy's guarded send path, or with `--dry-run` what it
//! would do. Each command only builds its message; the options, the run and the output
//! are shared.

use lipachat_api::{
    ButtonsMessage, ContactMessage, ContactPhone, FreeFormMessage, ListMessage, MediaMessage,
    MessageId, RequestBody, TemplateMessage, TextMessage,
};
use lipachat_policy::consent::{MessagingLimits, PricingConfig, Withholding};
use lipachat_policy::cost::{Estimate, PriceTable, Pricing};
use lipachat_policy::{
    DryRun, OnClosed, PolicyConfig, PreviousOutcome, SendOutcome, SendRequest, TemplateSent,
};
use lipachat_session::{PhoneNumber, SendDecision, Store};
use serde::Serialize;

use super::{Context, Exit, addressable, messenger, sending_sessions};
use crate::cli::{Command, OnClosedChoice, Pair, SendOptions, SendRun};
use crate::error::CliError;
use crate::output::{Render, reason_words, span, time, whatsapp_id};
use crate::stored_message::previous_outcome;

/// A free-form send command, read: the conversation it names, its shared options and its
/// message (checked).
pub struct FreeFormSend<'a> {
    /// BUSINESS CUSTOMER.
    pub pair: &'a Pair,
    /// The options every send command takes.
    pub options: &'a SendOptions,
    /// The message, valid.
    pub message: FreeFormMessage,
}

/// The free-form send `command` is, if it is one: its message built and checked (a
/// message that breaks a limit is an error naming the field and the limit).
pub fn free_form(command: &Command) -> Option<Result<FreeFormSend<'_>, CliError>> {
    let (pair, options, message) = match command {
        Command::SendContact(args) => (&args.pair, &args.send, contact(args)),
        Command::SendText(args) => (
            &args.pair,
            &args.send,
            TextMessage::new(args.text.as_str()).map(Into::into),
        ),
        Command::SendMedia(args) => {
            let media = MediaMessage::new(args.media_type.kind(), &args.url).and_then(|m| {
                let m = match &args.caption {
                    Some(caption) => m.with_caption(caption.as_str())?,
                    None => m,
                };
                match &args.filename {
                    Some(name) => m.with_filename(name.as_str()),
                    None => Ok(m),
                }
            });
            (&args.pair, &args.send, media.map(Into::into))
        }
        Command::SendButtons(args) => (
            &args.pair,
            &args.send,
            ButtonsMessage::new(args.text.as_str(), args.buttons.clone()).map(Into::into),
        ),
        Command::SendList(args) => (
            &args.pair,
            &args.send,
            ListMessage::new(
                args.header.as_str(),
                args.body.as_str(),
                args.button_text.as_str(),
                args.sections.clone(),
            )
            .map(Into::into),
        ),
        _ => return None,
    };
    Some(message.map_err(CliError::from).and_then(|message| {
        on_closed(options)?;
        pricing_config(&options.run, options.template.as_deref())?;
        Ok(FreeFormSend {
            pair,
            options,
            message,
        })
    }))
}

/// send-contact's card.
fn contact(
    args: &crate::cli::SendContact,
) -> Result<FreeFormMessage, lipachat_api::ValidationError> {
    let mut phone = ContactPhone::new(args.phone, args.phone_type.as_str());
    if let Some(wa_id) = args.wa_id {
        phone = phone.with_wa_id(wa_id);
    }
    ContactMessage::new(args.name.as_str(), vec![phone]).map(Into::into)
}

/// What a send command prints for a send.
///
/// `message_id`: the message's own id when it was sent or queued (or sent and refused by
/// the gateway), else null. `wa_id`: WhatsApp's id of what this call sent (the message,
/// or the template), else null. `template_message_id`: the template this call sent, else
/// null. `reason`: why the window was not open, null for `sent`. When this call sent a
/// template, `template_category` (as the catalog spells it, null when unchecked) and
/// `catalog` (`checked`, `cached_copy`, `unchecked`, `disabled`) follow. A rejection of a
/// message the gateway refused as outside the window adds `"refused_by_gateway": true`:
/// that request did leave. A repeated `--message-id` prints the earlier outcome with its
/// ids and `"duplicate": true`.
#[derive(Debug, Serialize)]
pub(super) struct SendView {
    pub(super) outcome: &'static str,
    pub(super) message_id: Option<MessageId>,
    pub(super) wa_id: Option<String>,
    pub(super) template_message_id: Option<MessageId>,
    pub(super) reason: Option<&'static str>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub(super) template: Option<TemplateFacts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) refused_by_gateway: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) duplicate: Option<bool>,
    /// What this call's message is predicted to cost.
    #[serde(flatten)]
    pub(super) cost: CostFacts,
    #[serde(skip)]
    pub(super) human: String,
}

/// The pricing fields of every send command's JSON (and its dry run's); the human output
/// says the same in one line of its own after the others (whose wording scripts match),
/// [`CostFacts::words`].
#[derive(Debug, Default, Serialize)]
pub(super) struct CostFacts {
    /// The predicted pricing category of what this call sent, withheld or would send,
    /// else null.
    pub(super) category: Option<&'static str>,
    /// Whether that is predicted free, else null.
    pub(super) free: Option<bool>,
    /// Why it is free or not (`free_entry_point`, `customer_service_window`,
    /// `service_free_tier`, `billed`): in the human line only.
    #[serde(skip)]
    pub(super) because: Option<&'static str>,
    /// When a marketing template may be tried again (reason `marketing_limit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) retry_at: Option<String>,
    /// The estimated price from `--prices` (`amount`, `currency`, `market`), when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) estimate: Option<Estimate>,
}

impl CostFacts {
    /// The facts of `pricing`, if any (all null without).
    pub(super) fn of(pricing: Option<&Pricing>) -> Self {
        match pricing {
            Some(pricing) => Self {
                category: Some(pricing.category.name()),
                free: Some(pricing.free),
                because: Some(pricing.because.name()),
                retry_at: None,
                estimate: pricing.estimate.clone(),
            },
            None => Self::default(),
        }
    }

    /// The facts of `pricing`, with when a marketing template may be tried again when
    /// `withheld` is a 131049 back-off (a real send and its dry run say the same).
    pub(super) fn withheld(pricing: Option<&Pricing>, withheld: Option<Withholding>) -> Self {
        Self {
            retry_at: withheld.and_then(|w| w.retry_at()).map(time),
            ..Self::of(pricing)
        }
    }

    /// The human line: `predicted pricing: CATEGORY, free (WHY)` or `..., billed`, then
    /// the estimate from `--prices` and when a marketing template may be tried again,
    /// when known; `None` when nothing is priced (a duplicate).
    pub(super) fn words(&self) -> Option<String> {
        let category = self.category?;
        let mut words = format!("predicted pricing: {category}, ");
        match (self.free, self.because) {
            (Some(true), Some(because)) => words.push_str(&format!("free ({because})")),
            (Some(true), None) => words.push_str("free"),
            _ => words.push_str("billed"),
        }
        if let Some(estimate) = &self.estimate {
            words.push_str(&format!(
                "; estimate {} {} (market {})",
                estimate.amount, estimate.currency, estimate.market
            ));
        }
        if let Some(retry_at) = &self.retry_at {
            words.push_str(&format!(
                "; a marketing template may be tried again at {retry_at}"
            ));
        }
        Some(words)
    }

    /// `human` with the pricing line inserted after its first `after` lines (at the end
    /// when it has fewer).
    pub(super) fn with_pricing_line(&self, human: &str, after: usize) -> String {
        let Some(words) = self.words() else {
            return human.to_owned();
        };
        let mut lines: Vec<&str> = human.split('\n').collect();
        let at = after.min(lines.len());
        lines.insert(at, &words);
        lines.join("\n")
    }
}

impl Render for SendView {
    fn human(&self) -> String {
        // After the send's own lines.
        self.cost.with_pricing_line(&self.human, usize::MAX)
    }
}

/// What a send command prints with `--dry-run`; `E` adds what only some commands say.
///
/// `outcome` is always `dry-run`; `would` names the outcome the real send would print
/// (`sent`, `rejected`, `rerouted`, `queued`; for a `--message-id` already used, the
/// earlier outcome, with `"duplicate": true`). `decision` and `reason` are the window's.
#[derive(Debug, Serialize)]
pub(super) struct DryRunView<E> {
    pub(super) outcome: &'static str,
    pub(super) would: &'static str,
    pub(super) message_id: MessageId,
    pub(super) wa_id: Option<String>,
    pub(super) template_message_id: Option<MessageId>,
    pub(super) reason: Option<&'static str>,
    /// The window now: `open` or `closed`.
    pub(super) decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) duplicate: Option<bool>,
    /// The exact JSON body of the message's send, when it would be sent (now, or from the
    /// outbox after the customer's reply); else null.
    pub(super) body: Option<RequestBody>,
    #[serde(flatten)]
    pub(super) extra: E,
    /// What would go (the message, or the template) is predicted to cost.
    #[serde(flatten)]
    pub(super) cost: CostFacts,
    #[serde(skip)]
    pub(super) human: String,
}

/// What a free-form send's dry run adds.
#[derive(Debug, Serialize)]
pub(super) struct ClosedWindowPlan {
    on_closed: &'static str,
    /// The exact JSON body of the template that would go instead (window not open, with
    /// `template` or `queue`, unless one already went for this closed window).
    template_body: Option<RequestBody>,
}

impl<E: Serialize> Render for DryRunView<E> {
    fn human(&self) -> String {
        // After "dry-run: nothing sent" and the decision, before the bodies.
        self.cost.with_pricing_line(&self.human, 2)
    }
}

/// Runs a free-form send command: the guarded send, or with `--dry-run` the plan.
/// Exit 1 only when the policy rejected the message because the window is not open.
pub async fn send_free_form<S: Store + Clone>(
    context: &Context<S>,
    send: FreeFormSend<'_>,
) -> Result<Exit, CliError> {
    let FreeFormSend {
        pair,
        options,
        message,
    } = send;
    let on_closed = on_closed(options)?;
    let what = message.describe();
    let conversation = addressable(context, pair).await?;
    let config = PolicyConfig::default()
        .on_closed(on_closed.clone())
        .pricing(pricing_config(&options.run, options.template.as_deref())?)
        .messaging_limits(messaging_limits(&options.run, conversation.business)?);
    let mut request = SendRequest::new(conversation, message);
    if let Some(id) = options.run.message_id {
        request = request.message_id(id);
    }
    if options.run.dry_run {
        // The policy's own plan: no client, so no key is needed.
        let sessions = sending_sessions(context, &options.run.settings)?;
        let plan = DryRun::plan(&sessions, &config, &request).await?;
        // A messageId already used: the real send would repeat its outcome.
        let previous = match options.run.message_id {
            Some(id) => previous_outcome(context.sessions.store(), conversation, id).await?,
            None => None,
        };
        let view = dry_run_view(&plan, request.message(), &on_closed, previous.as_ref());
        context.printer.emit(&view)?;
        return Ok(exit_for(view.would));
    }
    let messenger = messenger(context, &options.run.settings, config)?;
    let outcome = messenger.send(request).await?;
    let view = send_view(&outcome, what)?;
    context.printer.emit(&view)?;
    Ok(exit_for(view.outcome))
}

/// The pricing settings: `--template-category` for the template named `template` when
/// both are given, and the user's price file (`--prices`).
pub(super) fn pricing_config(
    run: &SendRun,
    template: Option<&str>,
) -> Result<PricingConfig, CliError> {
    let mut pricing = PricingConfig::default();
    if let (Some(template), Some(category)) = (template, run.template_category) {
        pricing
            .template_categories
            .insert(template.to_owned(), category);
    }
    if let Some(path) = &run.prices {
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

/// The messaging limit: `--portfolio` with `--messaging-tier`, its numbers
/// (`--portfolio-numbers` and the send's `business`); none without them. A bad name is a
/// usage error naming what is wrong.
pub(super) fn messaging_limits(
    run: &SendRun,
    business: PhoneNumber,
) -> Result<MessagingLimits, CliError> {
    match (&run.portfolio, run.messaging_tier) {
        (Some(name), Some(tier)) => MessagingLimits::default()
            .portfolio(
                name,
                tier,
                run.portfolio_numbers.iter().copied().chain([business]),
            )
            .map_err(|e| CliError::Usage(format!("--portfolio: {e}"))),
        // clap requires the two together.
        _ => Ok(MessagingLimits::default()),
    }
}

/// The exit status of a send that ended with the outcome named `outcome`: 1 rejected, 0
/// otherwise.
pub(super) fn exit_for(outcome: &str) -> Exit {
    if outcome == "rejected" {
        Exit::Negative
    } else {
        Exit::Success
    }
}

/// The closed-window choice, with its template checked before any request.
fn on_closed(args: &SendOptions) -> Result<OnClosed, CliError> {
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

pub(super) fn template_parts(
    template: Option<&TemplateSent>,
) -> (Option<MessageId>, Option<String>) {
    match template {
        Some(sent) => (Some(sent.message_id), sent.receipt.wa_id.clone()),
        None => (None, None),
    }
}

/// How a sent template is described: its id, WhatsApp's id, its category and how the
/// catalog checked it.
pub fn template_words(template: Option<&TemplateSent>) -> String {
    match template {
        Some(sent) => format!(
            "template {} sent{}; {}",
            sent.message_id,
            whatsapp_id(sent.receipt.wa_id.as_deref()),
            catalog_words(sent)
        ),
        None => "no template sent: an invitation already went for this closed window".into(),
    }
}

/// The category and the catalog check of a sent template, in words.
pub fn catalog_words(sent: &TemplateSent) -> String {
    let category = sent
        .category
        .as_ref()
        .map_or_else(String::new, |c| format!("{c}, "));
    let check = match &sent.check {
        lipachat_policy::CatalogCheck::Checked { .. } => "checked against the catalog",
        lipachat_policy::CatalogCheck::CachedCopy { .. } => {
            "checked against an earlier copy of the catalog (it could not be fetched)"
        }
        lipachat_policy::CatalogCheck::Disabled => "not checked (checking is off)",
        _ => "not checked: the catalog could not be fetched",
    };
    format!("{category}{check}")
}

/// The JSON fields a sent template adds: its category and how the catalog checked it.
#[derive(Debug, Serialize)]
pub struct TemplateFacts {
    /// The category as the catalog spells it, null when unchecked.
    template_category: Option<String>,
    /// `checked`, `cached_copy`, `unchecked` or `disabled`.
    catalog: &'static str,
}

impl TemplateFacts {
    /// The facts of `sent`, if a template was sent.
    pub fn of(sent: Option<&TemplateSent>) -> Option<Self> {
        sent.map(|sent| Self {
            template_category: sent.category.as_ref().map(ToString::to_string),
            catalog: sent.check.name(),
        })
    }
}

fn send_view(outcome: &SendOutcome, what: &str) -> Result<SendView, CliError> {
    let mut view = bare_send_view(outcome, what)?;
    let retry_at = view.cost.retry_at.take();
    view.cost = CostFacts::of(outcome.pricing());
    view.cost.retry_at = retry_at;
    Ok(view)
}

fn bare_send_view(outcome: &SendOutcome, what: &str) -> Result<SendView, CliError> {
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
            template: None,
            refused_by_gateway: None,
            duplicate: None,
            cost: CostFacts::default(),
            human: format!(
                "sent: {what} {message_id}{}; the window closes {}",
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
                template: TemplateFacts::of(template.as_ref()),
                refused_by_gateway: None,
                duplicate: None,
                cost: CostFacts::default(),
                human: format!(
                    "rerouted: the window is not open ({}); the {what} was dropped; {}",
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
                template: TemplateFacts::of(template.as_ref()),
                refused_by_gateway: None,
                duplicate: None,
                cost: CostFacts::default(),
                human: format!(
                    "queued: {what} {message_id} waits for the customer's reply (the window is not open: {}); {}",
                    reason_words(*reason),
                    template_words(template.as_ref())
                ),
            }
        }
        // The message went out and the gateway refused it: a request left, so the output
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
            template: None,
            refused_by_gateway: Some(true),
            duplicate: None,
            cost: CostFacts::default(),
            human: format!(
                "rejected: the gateway refused {what} {message_id} as outside the window ({}); it was sent but not delivered",
                reason_words(*reason)
            ),
        },
        SendOutcome::Rejected { reason, .. } => SendView {
            outcome: "rejected",
            message_id: None,
            wa_id: None,
            template_message_id: None,
            reason: Some(reason.name()),
            template: None,
            refused_by_gateway: None,
            duplicate: None,
            cost: CostFacts::default(),
            human: format!(
                "rejected: the window is not open ({}); nothing was sent",
                reason_words(*reason)
            ),
        },
        SendOutcome::Withheld {
            message_id,
            reason,
            pricing,
            refused_by_gateway,
            ..
        } => withheld_view(
            *reason,
            pricing,
            *refused_by_gateway,
            format!(
                "rejected: the window is not open and {}; {}",
                withheld_words(*reason),
                if *refused_by_gateway {
                    format!("the gateway refused the template for {what} {message_id}")
                } else {
                    "nothing was sent".to_owned()
                }
            ),
        ),
        SendOutcome::Duplicate(previous) => duplicate_view(previous),
        other => {
            return Err(CliError::Incomplete(format!(
                "the send ended with an outcome this build does not know: {}",
                other.name()
            )));
        }
    };
    Ok(view)
}

/// What a send prints when consent or a limit withheld its template: `rejected`, with
/// the reason, the template's predicted pricing and, for the per-user marketing limit,
/// when it may be tried again.
pub(super) fn withheld_view(
    reason: Withholding,
    pricing: &Pricing,
    refused_by_gateway: bool,
    human: String,
) -> SendView {
    SendView {
        outcome: "rejected",
        message_id: None,
        wa_id: None,
        template_message_id: None,
        reason: Some(reason.name()),
        template: None,
        refused_by_gateway: refused_by_gateway.then_some(true),
        duplicate: None,
        cost: CostFacts::withheld(Some(pricing), Some(reason)),
        human,
    }
}

/// Why a template was withheld, in words.
pub(super) fn withheld_words(reason: Withholding) -> String {
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

/// What a send prints for a `messageId` already handled: the earlier outcome with its
/// ids and `"duplicate": true`; nothing was sent again.
pub(super) fn duplicate_view(previous: &PreviousOutcome) -> SendView {
    let name = previous.kind.name();
    let message_id = matches!(name, "sent" | "queued").then_some(previous.message_id);
    SendView {
        outcome: name,
        message_id,
        wa_id: previous.wa_id.clone(),
        template_message_id: previous.template_message_id,
        reason: None,
        template: None,
        refused_by_gateway: None,
        duplicate: Some(true),
        cost: CostFacts::default(),
        human: format!(
            "{name} (earlier, at {}): message {} was already handled; nothing was sent again",
            time(previous.at),
            previous.message_id
        ),
    }
}

/// The dry run's view: the window's decision, what the real send would do, and the
/// bodies of what it would send (none when it would send nothing).
fn dry_run_view(
    plan: &DryRun,
    message: &FreeFormMessage,
    on_closed: &OnClosed,
    previous: Option<&PreviousOutcome>,
) -> DryRunView<ClosedWindowPlan> {
    let what = message.describe();
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
    // What the send would do, and whether the message and the template would go.
    let (would, consequence, sent, template) = match (previous, reason, on_closed) {
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
        (None, None, _) => ("sent", format!("the {what} would be sent"), true, false),
        (None, Some(_), OnClosed::Reject) => (
            "rejected",
            format!(
                "the {what} would not be sent; --on-closed reject: it would be rejected and nothing would be sent"
            ),
            false,
            false,
        ),
        (None, Some(_), OnClosed::Template(_)) => (
            "rerouted",
            format!(
                "the {what} would not be sent; --on-closed template: it would be rerouted, the template below sent instead"
            ),
            false,
            true,
        ),
        (None, Some(_), other) => (
            "queued",
            format!(
                "the {what} would not be sent now; --on-closed {}: it would be queued until the customer replies, and the template below would invite a reply",
                other.name()
            ),
            true,
            true,
        ),
    };
    // Consent withholding the template: the send would be rejected, nothing sent (the
    // messaging limit is counted by a real send only).
    let (would, consequence, sent, template, reason_name) = match (previous, plan.withheld) {
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
        _ => (would, consequence, sent, template, reason.map(|r| r.name())),
    };
    let body = sent.then(|| plan.body.clone());
    let template_body = if template {
        plan.template_body.clone()
    } else {
        None
    };
    let mut human = format!("dry-run: nothing sent\ndecision: {decision_words}{consequence}");
    if let Some(body) = &body {
        if reason.is_some() {
            human.push_str(&format!(
                "\nthe {what}, sent from the outbox once the customer replies:"
            ));
        }
        human.push_str(&format!("\nPOST {} {}", message.path(), body.pretty()));
    }
    if let Some(template) = &template_body {
        human.push_str(&format!(
            "\ntemplate, unless one already went for this closed window:\nPOST {} {}",
            lipachat_api::Endpoint::Template.path(),
            template.pretty()
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
        duplicate: previous.map(|_| true),
        body,
        extra: ClosedWindowPlan {
            on_closed: on_closed.name(),
            template_body,
        },
        cost: CostFacts::withheld(
            plan.pricing.as_ref().filter(|_| previous.is_none()),
            plan.withheld.filter(|w| reason_name == Some(w.name())),
        ),
        human,
    }
}
