//! `send-template` (an approved template, whatever the window, checked against the
//! business's catalog) and `templates` (the catalog).

use lipachat_api::{
    CatalogTemplate, ClientBuilder, MessageId, RetryPolicy, TemplateHeader, TemplateMessage,
};
use lipachat_policy::{PolicyConfig, TemplateOutcome, TemplateRequest};
use lipachat_session::{SendDecision, Store};
use serde::Serialize;

use super::send::{
    CostFacts, DryRunView, SendView, TemplateFacts, catalog_words, duplicate_view, exit_for,
    messaging_limits, pricing_config, template_parts, withheld_view, withheld_words,
};
use super::{Context, Exit, addressable, messenger, sending_sessions};
use crate::cli::{HeaderType, SendTemplate, Templates};
use crate::error::CliError;
use crate::output::{Printer, Render, reason_words, time, whatsapp_id};

/// The template `send-template` names, checked (before any store is opened).
pub fn check(args: &SendTemplate) -> Result<TemplateMessage, CliError> {
    let mut template = TemplateMessage::new(args.template.as_str(), args.language.as_str())?
        .with_body_placeholders(args.params.iter().cloned())?;
    if let Some(url) = &args.header_url {
        let header = match args.header_type.unwrap_or_else(|| header_type_of(url)) {
            HeaderType::Image => TemplateHeader::image(url)?,
            HeaderType::Video => TemplateHeader::video(url)?,
            HeaderType::Document => TemplateHeader::document(url)?,
        };
        template = template.with_header(header)?;
    }
    if let Some(text) = &args.header_text {
        template = template.with_header(TemplateHeader::text(text.as_str()))?;
    }
    Ok(template)
}

/// The media type a header URL's extension names: image for .jpg, .jpeg, .png and
/// .webp; video for .mp4 and .3gp; a document otherwise.
fn header_type_of(url: &str) -> HeaderType {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let extension = path
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "jpg" | "jpeg" | "png" | "webp" => HeaderType::Image,
        "mp4" | "3gp" => HeaderType::Video,
        _ => HeaderType::Document,
    }
}

/// `send-template --dry-run` adds nothing to what every dry run prints.
#[derive(Debug, Serialize)]
struct NothingMore {}

/// `send-template BUSINESS CUSTOMER --template NAME --language CODE ...`: exit 0 sent (or
/// a dry run that would send); exit 1 when consent or the messaging limit withholds it
/// (reason `opted_out`, `marketing_limit` or `messaging_limit`; nothing sent); a catalog
/// refusal is an error (exit 2) before anything is sent.
pub async fn send_template<S: Store + Clone>(
    context: &Context<S>,
    args: SendTemplate,
) -> Result<Exit, CliError> {
    let template = check(&args)?;
    let conversation = addressable(context, &args.pair).await?;
    let config = PolicyConfig::default()
        .pricing(pricing_config(&args.run, Some(&args.template))?)
        .messaging_limits(messaging_limits(&args.run, conversation.business)?);
    if args.run.dry_run {
        let message_id = args.run.message_id.unwrap_or_else(MessageId::new);
        let sessions = sending_sessions(context, &args.run.settings)?;
        let decision = sessions.decide(conversation).await?;
        let (pricing, withheld) = lipachat_policy::plan_template_cost(
            sessions.store(),
            &config,
            conversation,
            &args.template,
            matches!(decision, SendDecision::Allowed { .. }),
            sessions.now(),
        )
        .await?;
        let (decision, words) = match decision {
            SendDecision::Allowed { expires_at, .. } => {
                ("open", format!("open until {}", time(expires_at)))
            }
            SendDecision::Refused { reason, .. } => {
                ("closed", format!("closed ({})", reason_words(reason)))
            }
        };
        let body = lipachat_api::template_body(conversation, message_id, &template)?;
        let pretty = serde_json::to_string_pretty(&body).unwrap_or_else(|_| body.to_string());
        // Consent withholding it: the send would be rejected, nothing sent (the messaging
        // limit is counted by a real send only).
        let (would, reason, human, body) = match withheld {
            Some(withheld) => (
                "rejected",
                Some(withheld.name()),
                format!(
                    "dry-run: nothing sent (and nothing checked against the catalog)\nthe window is {words}; the template would not be sent: {}; the send would be rejected and nothing would be sent",
                    withheld_words(withheld)
                ),
                None,
            ),
            None => (
                "sent",
                None,
                format!(
                    "dry-run: nothing sent (and nothing checked against the catalog)\nthe window is {words}; a template may be sent whatever the window\nPOST {} {pretty}",
                    lipachat_api::Endpoint::Template.path()
                ),
                Some(body),
            ),
        };
        let view = DryRunView {
            outcome: "dry-run",
            would,
            message_id,
            wa_id: None,
            template_message_id: Some(message_id),
            reason,
            decision,
            duplicate: None,
            extra: NothingMore {},
            cost: CostFacts::withheld(Some(&pricing), withheld),
            human,
            body,
        };
        context.printer.emit(&view)?;
        return Ok(exit_for(view.would));
    }
    let messenger = messenger(context, &args.run.settings, config)?;
    let mut request = TemplateRequest::new(conversation, template);
    if let Some(id) = args.run.message_id {
        request = request.message_id(id);
    }
    let view = match messenger.send_template(request).await? {
        TemplateOutcome::Sent(sent) => {
            let (message_id, wa_id) = template_parts(Some(&sent));
            SendView {
                outcome: "sent",
                message_id,
                wa_id,
                template_message_id: message_id,
                reason: None,
                template: TemplateFacts::of(Some(&sent)),
                refused_by_gateway: None,
                duplicate: None,
                cost: CostFacts::of(Some(&sent.pricing)),
                human: format!(
                    "sent: template {} ({}) {}{}; {}",
                    args.template,
                    args.language,
                    sent.message_id,
                    whatsapp_id(sent.receipt.wa_id.as_deref()),
                    catalog_words(&sent)
                ),
            }
        }
        TemplateOutcome::Withheld {
            message_id,
            reason,
            pricing,
            refused_by_gateway,
            ..
        } => withheld_view(
            reason,
            &pricing,
            refused_by_gateway,
            format!(
                "rejected: template {} ({}) {message_id}: {}; {}",
                args.template,
                args.language,
                withheld_words(reason),
                if refused_by_gateway {
                    "the gateway refused it"
                } else {
                    "nothing was sent"
                }
            ),
        ),
        TemplateOutcome::Duplicate(previous) => duplicate_view(&previous),
        other => {
            return Err(CliError::Incomplete(format!(
                "the send ended with an outcome this build does not know: {}",
                other.name()
            )));
        }
    };
    context.printer.emit(&view)?;
    Ok(exit_for(view.outcome))
}

/// One template as `templates` prints it.
#[derive(Debug, Serialize)]
struct TemplateLine<'a> {
    name: &'a str,
    language: &'a str,
    category: Option<&'a str>,
    status: Option<&'a str>,
    /// How many body values a send gives (distinct `{{n}}` markers).
    placeholders: usize,
    /// The header's format (`TEXT`, `IMAGE`, ...), null without a header.
    header: Option<&'a str>,
    quality_score: Option<&'a str>,
    id: Option<&'a str>,
}

impl Render for TemplateLine<'_> {
    fn human(&self) -> String {
        let or_dash = |value: Option<&str>| value.unwrap_or("-").to_owned();
        format!(
            "{} {} {} {} placeholders={} header={} quality={} id={}",
            self.name,
            self.language,
            or_dash(self.category),
            or_dash(self.status),
            self.placeholders,
            or_dash(self.header),
            or_dash(self.quality_score),
            or_dash(self.id)
        )
    }
}

impl<'a> TemplateLine<'a> {
    fn of(template: &'a CatalogTemplate) -> Self {
        Self {
            name: &template.name,
            language: &template.language,
            category: template.category.as_ref().map(|c| c.as_str()),
            status: template.status.as_ref().map(|s| s.as_str()),
            placeholders: template.body_placeholders,
            header: template.header.as_ref().map(|h| h.format.as_str()),
            quality_score: template.quality_score.as_deref(),
            id: template.id.as_deref(),
        }
    }
}

/// `templates BUSINESS`: the catalog, one line (or JSON object) per template. Opens no
/// store.
pub async fn templates(args: &Templates, json: bool) -> Result<Exit, CliError> {
    let retry = RetryPolicy {
        max_retries: args.max_retries,
        ..RetryPolicy::default()
    };
    let client = ClientBuilder::from_env()?.retry(retry).build()?;
    let catalog = client.templates(args.business).await?;
    let printer = Printer::new(json);
    if catalog.templates.is_empty() {
        printer.note(&format!("no templates for {}", args.business))?;
    }
    for template in &catalog.templates {
        printer.emit(&TemplateLine::of(template))?;
    }
    if catalog.skipped > 0 {
        eprintln!(
            "note: {} catalog entries without a name or language were skipped",
            catalog.skipped
        );
    }
    Ok(Exit::Success)
}
