//! Sending an approved template on its own: the one kind WhatsApp allows whatever the
//! window, checked against the business's catalog before it goes.

use lipachat_api::{MessageId, TemplateMessage};
use lipachat_session::{Conversation, PhoneNumber, Store};
use tracing::{info, warn};

use crate::catalog::TemplateApproval;
use crate::claim::{Claimed, once_per_message_id};
use crate::error::PolicyError;
use crate::messenger::Messenger;
use crate::outcome::{PreviousOutcome, TemplateSent};
use crate::shared::{CallTime, Shared, addressable};

/// One template to send.
///
/// ```
/// use lipachat_api::{MessageId, TemplateMessage};
/// use lipachat_policy::TemplateRequest;
/// use lipachat_session::Conversation;
///
/// let chat = Conversation::parse("254110090747", "254712345678")?;
/// let reminder = TemplateMessage::new("payment_reminder", "en")?.with_body_placeholders(["Jane"])?;
/// let id = MessageId::new();
/// let request = TemplateRequest::new(chat, reminder).message_id(id);
/// assert_eq!(request.id(), Some(id));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct TemplateRequest {
    conversation: Conversation,
    template: TemplateMessage,
    message_id: Option<MessageId>,
}

impl TemplateRequest {
    /// A request to send `template` in `conversation`.
    pub fn new(conversation: Conversation, template: TemplateMessage) -> Self {
        Self {
            conversation,
            template,
            message_id: None,
        }
    }

    /// Uses this `messageId` (a handler that may be retried passes the same one each
    /// time); otherwise a new UUID v4 is made.
    pub fn message_id(mut self, id: MessageId) -> Self {
        self.message_id = Some(id);
        self
    }

    /// The `messageId` given, if any.
    pub fn id(&self) -> Option<MessageId> {
        self.message_id
    }

    /// The conversation.
    pub fn conversation(&self) -> Conversation {
        self.conversation
    }

    /// The template.
    pub fn template(&self) -> &TemplateMessage {
        &self.template
    }
}

/// What [`Messenger::send_template`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TemplateOutcome {
    /// The template went out (its category and catalog check are in it).
    Sent(TemplateSent),
    /// This `messageId` was already sent: nothing was sent again.
    Duplicate(PreviousOutcome),
}

impl TemplateOutcome {
    /// `sent`, or for a duplicate the earlier outcome's name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sent(_) => "sent",
            Self::Duplicate(previous) => previous.kind.name(),
        }
    }
}

impl<S: Store> Messenger<S> {
    /// Sends an approved template, whatever the window (the one kind WhatsApp allows
    /// outside it), after checking it against the business's catalog
    /// ([`TemplateCatalogs::check`](crate::TemplateCatalogs::check)): a template the
    /// catalog refuses is [`PolicyError::TemplateRefused`] and nothing is sent.
    ///
    /// With a caller's `messageId`, a repeat within the outcome horizon returns
    /// [`TemplateOutcome::Duplicate`] and sends nothing, and calls naming it never
    /// overlap ([`PolicyError::SendInProgress`]), as for [`Messenger::send`]. The
    /// template goes under that `messageId` itself (there is no free-form message to
    /// derive it from). A conversation without a phone number is
    /// [`PolicyError::NotAddressable`].
    pub async fn send_template(
        &self,
        request: TemplateRequest,
    ) -> Result<TemplateOutcome, PolicyError> {
        let conversation = addressable(request.conversation)?;
        let now = CallTime::read(self.sessions());
        let Some(message_id) = request.message_id else {
            return Box::pin(self.send_template_as(&request, MessageId::new(), false, now))
                .await
                .map(TemplateOutcome::Sent);
        };
        // Boxed, as `Messenger::send` boxes its send: a large future kept off the caller's.
        let send = Box::pin(self.send_template_as(&request, message_id, true, now));
        Ok(
            match once_per_message_id(&self.shared, conversation, message_id, now, send).await? {
                Claimed::Earlier(previous) => TemplateOutcome::Duplicate(previous),
                Claimed::Ran(sent) => TemplateOutcome::Sent(sent),
            },
        )
    }

    /// Checks and sends the template under `message_id`; with `remember`, stores the
    /// outcome so a repeat finds it.
    async fn send_template_as(
        &self,
        request: &TemplateRequest,
        message_id: MessageId,
        remember: bool,
        now: CallTime,
    ) -> Result<TemplateSent, PolicyError> {
        let conversation = request.conversation;
        let sent = self
            .shared
            .send_checked_template(conversation, message_id, message_id, &request.template, now)
            .await?;
        if remember {
            let outcome =
                PreviousOutcome::template_sent(message_id, sent.receipt.wa_id.clone(), now.at);
            self.shared
                .remember(conversation, message_id, &outcome)
                .await?;
        }
        Ok(sent)
    }
}

impl<S: Store> Shared<S> {
    /// Checks `template` against `business`'s catalog (see
    /// [`TemplateCatalogs::check`](crate::TemplateCatalogs::check)); a refusal is
    /// [`PolicyError::TemplateRefused`] for the logical send `message_id`.
    async fn check_template(
        &self,
        business: PhoneNumber,
        message_id: MessageId,
        template: &TemplateMessage,
        now: CallTime,
    ) -> Result<TemplateApproval, PolicyError> {
        // Boxed: the check may fetch the catalog, a future as large as a send's, and the
        // send path's futures nest deep enough without a second one inline.
        Box::pin(self.catalogs.check(&self.client, business, template, now.at))
            .await
            .map_err(|refusal| {
                warn!(%business, %message_id, template = template.name(), %refusal, "template refused against the catalog; nothing sent");
                PolicyError::TemplateRefused {
                    message_id,
                    refusal,
                }
            })
    }

    /// Checks `template` against the catalog, then sends it under `template_id` for the
    /// logical send `message_id` (a reroute's or invitation's id is derived from the
    /// free-form message's; a template sent on its own goes under its own).
    pub(crate) async fn send_checked_template(
        &self,
        conversation: Conversation,
        message_id: MessageId,
        template_id: MessageId,
        template: &TemplateMessage,
        now: CallTime,
    ) -> Result<TemplateSent, PolicyError> {
        let approval = self
            .check_template(conversation.business, message_id, template, now)
            .await?;
        info!(%conversation, %message_id, template = template.name(), template_message_id = %template_id, catalog = approval.check.name(), "sending template");
        let receipt = self
            .client
            .send_template(conversation, template_id, template)
            .await
            .map_err(|source| PolicyError::Template {
                message_id,
                template_message_id: template_id,
                source,
            })?;
        Ok(TemplateSent {
            message_id: template_id,
            receipt,
            category: approval.category,
            check: approval.check,
        })
    }
}
