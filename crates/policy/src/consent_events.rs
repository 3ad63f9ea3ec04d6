//! What webhooks tell about cost and consent, recorded: a referral-carrying inbound
//! message (the free entry point window's start), a stop or start keyword, the
//! `user_preferences` webhook, a status's `pricing` (recorded against the sent message;
//! a free entry point status confirms the window's end) and a failed status's
//! 131049 / 131050.

use lipachat_api::WebhookEvent;
use lipachat_api::webhook::InboundContent;
use lipachat_api::{MARKETING_LIMIT_CODE, MARKETING_OPT_OUT_CODE, MarketingRefusal};
use lipachat_session::consent::wa_id_key;
use lipachat_session::{MarketingConsent, ReportedPricing, Store};
use tracing::info;

use crate::config::PolicyConfig;
use crate::error::PolicyError;
use crate::messaging_limit::record_marketing_refusal;
use crate::messenger::Messenger;

impl<S: Store> Messenger<S> {
    /// [`record_consent_and_cost`] with the messenger's store and policy.
    pub(crate) async fn record_consent_and_cost(
        &self,
        event: &WebhookEvent,
    ) -> Result<Option<MarketingConsent>, PolicyError> {
        record_consent_and_cost(self.sessions().store(), self.config(), event).await
    }
}

/// Records what `event` tells about cost and consent (see the module documentation), as
/// [`Messenger::on_webhook_event`] does first, and `session-check ingest` too; answers
/// the consent now stored when the event changed it. Events of other kinds, and those
/// naming no 1:1 phone conversation, record nothing here. Sends nothing.
pub async fn record_consent_and_cost<S: Store>(
    store: &S,
    config: &PolicyConfig,
    event: &WebhookEvent,
) -> Result<Option<MarketingConsent>, PolicyError> {
    let Some(conversation) = event.conversation() else {
        return Ok(None);
    };
    match event {
        WebhookEvent::Inbound(message) => {
            let at = message.inbound_time();
            if message
                .referral
                .as_ref()
                .is_some_and(|r| r.ctwa_clid.as_deref().is_some_and(|c| !c.is_empty()))
            {
                info!(%conversation, "inbound message from a click-to-WhatsApp ad: a timely reply opens a free entry point window");
                store.record_referral(conversation, at).await?;
            }
            if let InboundContent::Text { body } = &message.content
                && let Some(opted_out) = config.consent.keyword(body)
            {
                info!(%conversation, opted_out, "marketing keyword in an inbound text");
                return Ok(Some(
                    store.record_opt_out(conversation, opted_out, at).await?,
                ));
            }
            Ok(None)
        }
        WebhookEvent::MarketingPreference { opted_out, at, .. } => {
            info!(%conversation, opted_out, "user_preferences webhook");
            Ok(Some(
                store.record_opt_out(conversation, *opted_out, *at).await?,
            ))
        }
        WebhookEvent::Status(status) => {
            if let Some(pricing) = &status.pricing {
                let key = status
                    .message_id
                    .or_else(|| status.wa_id.as_deref().map(wa_id_key));
                if let Some(key) = key {
                    store
                        .record_reported_pricing(
                            conversation.business,
                            key,
                            ReportedPricing {
                                category: pricing.category.clone(),
                                pricing_type: pricing.pricing_type.clone(),
                                billable: pricing.billable,
                                reported_at: status.at,
                            },
                        )
                        .await?;
                }
                if let (true, Some(until)) = (
                    pricing.is_free_entry_point(),
                    status.conversation_expires_at,
                ) {
                    info!(%conversation, %until, "the platform confirmed the free entry point window");
                    store
                        .confirm_free_entry_point(conversation, until, status.at)
                        .await?;
                }
            }
            let refusal = match status.error_code {
                Some(MARKETING_OPT_OUT_CODE) => Some(MarketingRefusal::OptedOut),
                Some(MARKETING_LIMIT_CODE) => Some(MarketingRefusal::Limit),
                _ => None,
            };
            match refusal {
                Some(refusal) => {
                    record_marketing_refusal(
                        store,
                        &config.consent,
                        conversation,
                        refusal,
                        status.at,
                    )
                    .await?;
                    Ok(Some(store.marketing_consent(conversation).await?))
                }
                None => Ok(None),
            }
        }
        _ => Ok(None),
    }
}
