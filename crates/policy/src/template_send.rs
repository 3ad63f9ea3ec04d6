//! Sending an approved template on its own: the one kind WhatsApp allows whatever the
//! window, checked against the business's catalog before it goes.

use lipachat_api::{MessageId, TemplateMessage};
use lipachat_session::{Conversation, PhoneNumber, PricingCategory, SendDecision, Store};
use tracing::{info, warn};

use crate::catalog::TemplateApproval;
use crate::claim::{Claimed, once_per_message_id};
use crate::closed_window::Invited;
use crate::consent::Withholding;
use crate::cost::Pricing;
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
    /// Consent or the messaging limit withheld it (a marketing template to a customer
    /// who opted out or inside a 131049 back-off, or a template beyond the portfolio's
    /// messaging limit): nothing reached the gateway, unless `refused_by_gateway` says
    /// the gateway itself answered 131049 / 131050 (now recorded). Shown as `rejected`;
    /// not remembered, so a later call with the same `messageId` checks again.
    Withheld {
        /// The template send's `messageId`.
        message_id: MessageId,
        /// Why.
        reason: Withholding,
        /// The template's predicted cost, had it gone.
        pricing: Box<Pricing>,
        /// Whether the gateway refused the template (131049 / 131050).
        refused_by_gateway: bool,
    },
    /// This `messageId` was already sent: nothing was sent again.
    Duplicate(PreviousOutcome),
}

impl TemplateOutcome {
    /// The outcome of sending `message_id`'s template, sent or withheld.
    fn from_invited(message_id: MessageId, invited: Invited) -> Self {
        match invited {
            Invited::Sent(sent) => Self::Sent(sent),
            Invited::Withheld {
                reason,
                pricing,
                refused_by_gateway,
            } => Self::Withheld {
                message_id,
                reason,
                pricing,
                refused_by_gateway,
            },
        }
    }

    /// `sent`, or for a duplicate the earlier outcome's name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sent(_) => "sent",
            Self::Withheld { .. } => "rejected",
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
    /// derive it from). Without one, the template goes under a new `messageId`, and its
    /// outcome is stored under it too (for the outcome horizon), so a status naming only
    /// its WhatsApp id and the recipient's business-scoped user id is tied to the
    /// customer it went to. A conversation without a phone number is
    /// [`PolicyError::NotAddressable`].
    pub async fn send_template(
        &self,
        request: TemplateRequest,
    ) -> Result<TemplateOutcome, PolicyError> {
        let observed = self.shared.observers.start(|| self.sessions().now());
        let result = self.send_template_unobserved(request).await;
        self.shared.observers.template_sent(observed, &result);
        result
    }

    /// [`Messenger::send_template`] before its observers are told.
    async fn send_template_unobserved(
        &self,
        request: TemplateRequest,
    ) -> Result<TemplateOutcome, PolicyError> {
        let conversation = addressable(request.conversation)?;
        let now = CallTime::read(self.sessions());
        let Some(message_id) = request.message_id else {
            // The outcome is stored under the new `messageId` all the same: a status that
            // names only WhatsApp's id and the recipient's user id (a 131049, a 131050)
            // finds the customer the template went to by it.
            let message_id = MessageId::new();
            return Box::pin(self.send_template_as(&request, message_id, true, now))
                .await
                .map(|sent| TemplateOutcome::from_invited(message_id, sent));
        };
        // Boxed, as `Messenger::send` boxes its send: a large future kept off the caller's.
        let send = || Box::pin(self.send_template_as(&request, message_id, true, now));
        Ok(
            match once_per_message_id(&self.shared, conversation, message_id, now, send).await? {
                Claimed::Earlier(previous) => TemplateOutcome::Duplicate(previous),
                Claimed::Ran(sent) => TemplateOutcome::from_invited(message_id, sent),
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
    ) -> Result<Invited, PolicyError> {
        let conversation = request.conversation;
        // Whether the window is open is decided after the catalog check, when the
        // template is counted and priced (see `send_checked_template`).
        // Boxed: the check, the pricing and the send make a large future.
        let invited = Box::pin(self.shared.send_checked_template(
            conversation,
            message_id,
            message_id,
            &request.template,
            true,
            now,
        ))
        .await?;
        let Invited::Sent(sent) = invited else {
            return Ok(invited);
        };
        if remember {
            let outcome =
                PreviousOutcome::template_sent(message_id, sent.receipt.wa_id.clone(), now.at);
            self.shared
                .remember(conversation, message_id, &outcome)
                .await?;
        }
        Ok(Invited::Sent(sent))
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

    /// Checks `template` against the catalog, prices it, and sends it under `template_id`
    /// for the logical send `message_id` (a reroute's or invitation's id is derived from
    /// the free-form message's; a template sent on its own goes under its own), unless
    /// consent or the messaging limit withholds it (checked in that order; the customer
    /// is counted against the limit before the send, so a failed send leaves it counted:
    /// the local count errs high, never low). The pricing category is the
    /// configuration's override, else the catalog's category when it was checked, else
    /// marketing. `window_may_be_open`: `false` when the caller knows the customer
    /// service window is closed (a reroute's or invitation's template goes with it
    /// closed); `true` has it decided after the catalog check, which may fetch the
    /// catalog and take a while, at the clock's time then and with the window rule's
    /// margin: a template counts as inside the window only when the window stays open
    /// past the margin, so one whose window may close before the send completes is
    /// counted against the messaging limit and priced as outside. Only a template sent
    /// outside counts against the limit.
    pub(crate) async fn send_checked_template(
        &self,
        conversation: Conversation,
        message_id: MessageId,
        template_id: MessageId,
        template: &TemplateMessage,
        window_may_be_open: bool,
        now: CallTime,
    ) -> Result<Invited, PolicyError> {
        let approval = self
            .check_template(conversation.business, message_id, template, now)
            .await?;
        let window_open = window_may_be_open
            && matches!(
                self.sessions.decide(conversation).await?,
                SendDecision::Allowed { .. }
            );
        let category = self
            .config
            .pricing
            .template_category(template.name(), approval.category.as_ref());
        // Consent follows the platform's category: a template the catalog calls MARKETING
        // is withheld from an opted-out customer whatever the pricing override says
        // (WhatsApp would refuse it with 131050 anyway).
        let consent_category = match approval.category {
            Some(lipachat_api::TemplateCategory::Marketing) => PricingCategory::Marketing,
            _ => category,
        };
        // Boxed: the checks' futures would otherwise swell every send's.
        let (pricing, withheld) = Box::pin(async {
            let pricing = self
                .predict_pricing(conversation, category, window_open, now.at, None)
                .await?;
            let withheld = match self
                .consent_withholds(conversation, consent_category, now.at)
                .await?
            {
                Some(reason) => Some(reason),
                None if window_open => None,
                None => self.reach(conversation, now.at).await?,
            };
            Ok::<_, PolicyError>((pricing, withheld))
        })
        .await?;
        if let Some(reason) = withheld {
            info!(%conversation, %message_id, template = template.name(), reason = reason.name(), "template withheld");
            self.observers.withheld(reason, false);
            return Ok(Invited::Withheld {
                reason,
                pricing: Box::new(pricing),
                refused_by_gateway: false,
            });
        }
        info!(%conversation, %message_id, template = template.name(), template_message_id = %template_id, catalog = approval.check.name(), category = category.name(), free = pricing.free, "sending template");
        let receipt = match self
            .client
            .send_template(conversation, template_id, template)
            .await
        {
            Ok(receipt) => receipt,
            Err(source) => {
                if let Some(refusal) = source.marketing_refusal() {
                    let reason =
                        Box::pin(self.record_marketing_refusal(conversation, refusal, now.at))
                            .await?;
                    self.observers.withheld(reason, true);
                    return Ok(Invited::Withheld {
                        reason,
                        pricing: Box::new(pricing),
                        refused_by_gateway: true,
                    });
                }
                return Err(PolicyError::Template {
                    message_id,
                    template_message_id: template_id,
                    source,
                });
            }
        };
        let pricing = Box::pin(self.record_sent(
            conversation,
            template_id,
            receipt.wa_id.clone(),
            category,
            window_open,
            now.at,
        ))
        .await?;
        Ok(Invited::Sent(TemplateSent {
            message_id: template_id,
            receipt,
            category: approval.category,
            check: approval.check,
            pricing: Box::new(pricing),
        }))
    }
}
