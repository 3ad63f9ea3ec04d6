//! One send as a caller asks for it, what a queued copy of it stores, and a dry run of it.

use lipachat_api::{
    ContactMessage, FreeFormMessage, MessageId, RequestBody, TemplateMessage, TextMessage,
};
use lipachat_session::{Conversation, QueuedMessage, SendDecision, Sessions, Store};
use serde::{Deserialize, Serialize};

use crate::config::{OnClosed, PolicyConfig};
use crate::error::PolicyError;
use crate::ids::template_message_id;
use crate::shared::addressable;

/// One free-form message to send.
///
/// ```
/// use lipachat_api::{ContactMessage, ContactPhone, MessageId};
/// use lipachat_policy::SendRequest;
/// use lipachat_session::{Conversation, PhoneNumber};
///
/// let chat = Conversation::parse("254110090747", "254712345678")?;
/// let card = ContactMessage::new("Support desk", vec![ContactPhone::new("254700000001".parse()?, "Work")])?;
/// let id = MessageId::new();
/// let request = SendRequest::contact(chat, card).message_id(id).placeholders(["Jane"]);
/// assert_eq!(request.id(), Some(id));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct SendRequest {
    conversation: Conversation,
    message: FreeFormMessage,
    message_id: Option<MessageId>,
    placeholders: Option<Vec<String>>,
    on_closed: Option<OnClosed>,
}

impl SendRequest {
    /// A request to send `message` in `conversation`.
    pub fn new(conversation: Conversation, message: FreeFormMessage) -> Self {
        Self {
            conversation,
            message,
            message_id: None,
            placeholders: None,
            on_closed: None,
        }
    }

    /// A contact card.
    pub fn contact(conversation: Conversation, contact: ContactMessage) -> Self {
        Self::new(conversation, FreeFormMessage::Contact(contact))
    }

    /// A text message.
    pub fn text(conversation: Conversation, text: TextMessage) -> Self {
        Self::new(conversation, FreeFormMessage::Text(text))
    }

    /// Uses this `messageId` (a bot handler that may be retried passes the same one each
    /// time); otherwise a new one is made ([`MessageId::new`]).
    pub fn message_id(mut self, id: MessageId) -> Self {
        self.message_id = Some(id);
        self
    }

    /// Body placeholders for the template, should one be sent (for example the customer's
    /// name), replacing the configured template's own.
    pub fn placeholders<I, T>(mut self, placeholders: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.placeholders = Some(placeholders.into_iter().map(Into::into).collect());
        self
    }

    /// Overrides the configured closed-window choice for this send.
    pub fn on_closed(mut self, on_closed: OnClosed) -> Self {
        self.on_closed = Some(on_closed);
        self
    }

    /// The closed-window choice that applies to this request under `config`.
    pub fn on_closed_under<'a>(&'a self, config: &'a PolicyConfig) -> &'a OnClosed {
        self.on_closed
            .as_ref()
            .unwrap_or_else(|| config.on_closed_of(self.conversation.business))
    }

    /// The `messageId` given, if any.
    pub fn id(&self) -> Option<MessageId> {
        self.message_id
    }

    /// The conversation.
    pub fn conversation(&self) -> Conversation {
        self.conversation
    }

    /// The message.
    pub fn message(&self) -> &FreeFormMessage {
        &self.message
    }

    /// `template` as this send would send it: with the request's placeholders, if it
    /// has any.
    pub(crate) fn template_for_this_send(
        &self,
        template: &TemplateMessage,
    ) -> Result<TemplateMessage, PolicyError> {
        Ok(match &self.placeholders {
            Some(placeholders) => template
                .clone()
                .with_body_placeholders(placeholders.iter().cloned())?,
            None => template.clone(),
        })
    }
}

/// What a queued message's stored payload holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct QueuedPayload {
    /// The `messageId` the caller's send had (outcomes are stored under it).
    pub origin: MessageId,
    /// The message.
    pub message: FreeFormMessage,
}

/// What a send would do now, computed without sending or storing anything.
#[derive(Debug, Clone)]
pub struct DryRun {
    /// The decision now.
    pub decision: SendDecision,
    /// The `messageId` that would be used.
    pub message_id: MessageId,
    /// The closed-window choice that would apply if the window is not open.
    pub on_closed: &'static str,
    /// The exact JSON body of the free-form send.
    pub body: RequestBody,
    /// The exact JSON body of the template that would go instead, if the window is not
    /// open and the policy sends one (an invitation already sent for this closed window
    /// would make the real send skip it).
    pub template_body: Option<RequestBody>,
    /// What the message that would go (the free-form message, or the template) is
    /// predicted to cost; `None` when nothing would go.
    pub pricing: Option<crate::cost::Pricing>,
    /// Consent withholding the template that would go (the messaging limit is not
    /// counted by a dry run).
    pub withheld: Option<crate::consent::Withholding>,
}

impl DryRun {
    /// Plans a send from the session engine (whose window rule and clock decide, as they
    /// would for the send) and the policy alone: no client, so no API key is needed. A conversation without a phone number is
    /// [`PolicyError::NotAddressable`], as the send would be.
    pub async fn plan<S: Store>(
        sessions: &Sessions<S>,
        config: &PolicyConfig,
        request: &SendRequest,
    ) -> Result<Self, PolicyError> {
        let conversation = addressable(request.conversation)?;
        let not_addressable = |_| PolicyError::NotAddressable { conversation };
        let message_id = request.message_id.unwrap_or_else(MessageId::new);
        // The engine's rule and clock: the same the send would decide with.
        let decision = sessions.decide(request.conversation).await?;
        let on_closed = request.on_closed_under(config);
        let template_body = match (&decision, on_closed.template()) {
            (SendDecision::Refused { .. }, Some(template)) => {
                let template = request.template_for_this_send(template)?;
                Some(
                    lipachat_api::template_body(
                        request.conversation,
                        template_message_id(message_id),
                        &template,
                    )
                    .map_err(not_addressable)?,
                )
            }
            _ => None,
        };
        let now = sessions.now();
        let store = sessions.store();
        let (pricing, withheld) = match (&decision, on_closed.template()) {
            (SendDecision::Allowed { .. }, _) => {
                let pricing = crate::messaging_limit::price_send(
                    store,
                    &config.pricing,
                    conversation,
                    lipachat_session::PricingCategory::Service,
                    true,
                    now,
                    None,
                )
                .await?;
                (Some(pricing), None)
            }
            (SendDecision::Refused { .. }, Some(template)) => {
                let (pricing, withheld) =
                    plan_template_cost(store, config, conversation, template.name(), false, now)
                        .await?;
                (Some(pricing), withheld)
            }
            _ => (None, None),
        };
        Ok(Self {
            pricing,
            withheld,
            decision,
            message_id,
            on_closed: on_closed.name(),
            body: lipachat_api::free_form_body(request.conversation, message_id, &request.message)
                .map_err(not_addressable)?,
            template_body,
        })
    }
}

/// What a template named `name` sent to `conversation` at `at` is predicted to cost, and
/// whether consent would withhold it, as a dry run plans it: no catalog is fetched, so its
/// category is the configuration's override, else marketing; the messaging limit is
/// counted by a real send only. `window_open`: whether the customer service window is open.
pub async fn plan_template_cost<S: Store>(
    store: &S,
    config: &PolicyConfig,
    conversation: Conversation,
    name: &str,
    window_open: bool,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(crate::cost::Pricing, Option<crate::consent::Withholding>), PolicyError> {
    let category = config.pricing.template_category(name, None);
    let pricing = crate::messaging_limit::price_send(
        store,
        &config.pricing,
        conversation,
        category,
        window_open,
        at,
        None,
    )
    .await?;
    let status =
        crate::consent::MarketingStatus::of(&store.marketing_consent(conversation).await?, at);
    Ok((
        pricing,
        crate::consent::Withholding::by_consent(category, status),
    ))
}

/// What a queued entry holds, read back from the payload the send path stored: its kind
/// (`contact`, `text`, ...) and content as JSON (`None` when the stored form cannot be
/// read, e.g. written by a later release). Tools and the admin routes show queued messages
/// with it, so the payload's shape has one owner.
pub fn queued_content(queued: &QueuedMessage) -> Option<(&'static str, serde_json::Value)> {
    let payload = serde_json::from_str::<QueuedPayload>(&queued.payload).ok()?;
    let content = serde_json::to_value(&payload.message)
        .ok()
        .and_then(|mut value| value.get_mut("message").map(serde_json::Value::take))
        .unwrap_or(serde_json::Value::Null);
    Some((payload.message.kind(), content))
}
