//! What webhooks tell about cost and consent, recorded: a referral-carrying inbound
//! message (the free entry point window's start), a stop or start keyword, the
//! `user_preferences` webhook, a status's `pricing` (recorded against the sent message;
//! a free entry point status confirms the window's end) and a failed status's
//! 131049 / 131050.

use lipachat_api::WebhookEvent;
use lipachat_api::webhook::DeliveryStatus;
use lipachat_api::{MARKETING_LIMIT_CODE, MARKETING_OPT_OUT_CODE, MarketingRefusal};
use lipachat_session::consent::wa_id_key;
use lipachat_session::{
    Conversation, Customer, MarketingConsent, Merged, ReportedPricing, SessionError, Sessions,
    Store, StoredTime,
};
use tracing::info;

use crate::config::PolicyConfig;
use crate::consent::Withholding;
use crate::error::PolicyError;
use crate::messaging_limit::record_marketing_refusal;
use crate::messenger::Messenger;
use crate::recording::Identified;

impl<S: Store> Messenger<S> {
    /// [`record_consent_and_cost`] with the messenger's sessions and policy.
    pub(crate) async fn record_consent_and_cost(
        &self,
        event: &WebhookEvent,
        identified: &Identified,
    ) -> Result<Option<RecordedConsent>, PolicyError> {
        record_consent_and_cost(self.sessions(), self.config(), event, identified).await
    }
}

/// A marketing consent a webhook recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedConsent {
    /// The conversation it was recorded for.
    pub conversation: Conversation,
    /// The consent now stored (a stale choice leaves a later one in force).
    pub consent: MarketingConsent,
}

/// Records what `event` tells about cost and consent (see the module documentation), as
/// [`Messenger::on_webhook_event`] does, and `session-check ingest` too; answers the
/// consent now stored, and for which conversation, when the event changed it. Sends
/// nothing.
///
/// `identified` is what [`EventAction::identify`](crate::EventAction::identify) settled
/// for the event, run first: the customer is resolved the way the inbound path resolves
/// them, so a stop keyword, a `user_preferences` stop or a 131050 from a user known only
/// by a business-scoped user id lands on the conversation the send path checks (the
/// phone's, when an alias names it). A `user_preferences` choice from such a user with no
/// alias yet is recorded under the user's own conversation (a handle is allocated, as for
/// their first message), and moves to the phone's conversation when a later webhook names
/// both ([`carry_consent`]). A status is tied back by its conversation, its recipient
/// (phone, user id's alias or handle) or the send outcome stored under our `messageId`;
/// a status nothing here knows records nothing. Group messages record no consent.
pub async fn record_consent_and_cost<S: Store>(
    sessions: &Sessions<S>,
    config: &PolicyConfig,
    event: &WebhookEvent,
    identified: &Identified,
) -> Result<Option<RecordedConsent>, PolicyError> {
    let store = sessions.store();
    let one_to_one = identified
        .conversation
        .filter(|c| !matches!(c.customer, Customer::Group(_)));
    match event {
        WebhookEvent::Inbound(message) => {
            let Some(conversation) = one_to_one.filter(|_| message.group.is_none()) else {
                return Ok(None);
            };
            let at = message.inbound_time();
            if message
                .referral
                .as_ref()
                .is_some_and(|r| r.ctwa_clid.as_deref().is_some_and(|c| !c.is_empty()))
            {
                info!(%conversation, "inbound message from a click-to-WhatsApp ad: a timely reply opens a free entry point window");
                store.record_referral(conversation, at).await?;
            }
            if let Some(opted_out) = config.consent.keyword_in(&message.content) {
                info!(%conversation, opted_out, "marketing keyword in an inbound message");
                sessions.check_stored_time(StoredTime::MarketingConsent, at)?;
                let consent = store.record_opt_out(conversation, opted_out, at).await?;
                return Ok(Some(RecordedConsent {
                    conversation,
                    consent,
                }));
            }
            Ok(None)
        }
        WebhookEvent::MarketingPreference {
            business,
            customer,
            opted_out,
            at,
        } => {
            let conversation = match (one_to_one, &customer.user_id) {
                (Some(conversation), _) => conversation,
                // Known by the user id alone, and no alias names the phone yet.
                (None, Some(user)) => match sessions
                    .sender_conversation(*business, None, Some(user))
                    .await?
                {
                    Some(resolved) => resolved.conversation,
                    None => return Ok(None),
                },
                (None, None) => return Ok(None),
            };
            info!(%conversation, opted_out, "user_preferences webhook");
            // A choice dated ahead of the clock would pin itself against every later real
            // one: refused, as a future inbound time is.
            sessions.check_stored_time(StoredTime::MarketingConsent, *at)?;
            let consent = store.record_opt_out(conversation, *opted_out, *at).await?;
            Ok(Some(RecordedConsent {
                conversation,
                consent,
            }))
        }
        WebhookEvent::Status(status) => {
            let refusal = match status.error_code {
                Some(MARKETING_OPT_OUT_CODE) => Some(MarketingRefusal::OptedOut),
                Some(MARKETING_LIMIT_CODE) => Some(MarketingRefusal::Limit),
                _ => None,
            };
            if status.pricing.is_none() && refusal.is_none() {
                return Ok(None);
            }
            let Some(conversation) =
                status_conversation(sessions, status, one_to_one, refusal.is_some()).await?
            else {
                return Ok(None);
            };
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
                    // The end is bounded from the window's opening: our recorded reply, else
                    // the message's send, which only a `sent` status dates (a `read` status
                    // days later would stretch the bound past 72 hours after the send).
                    let opened = store
                        .free_entry_point(conversation)
                        .await?
                        .and_then(|entry| entry.opened_at);
                    if opened.is_some() || status.status == DeliveryStatus::Sent {
                        info!(%conversation, %until, "the platform confirmed the free entry point window");
                        store
                            .confirm_free_entry_point(conversation, until, status.at)
                            .await?;
                    } else {
                        info!(%conversation, %until, status = ?status.status, "a free entry point end on a later status with no window opened: not taken");
                    }
                }
            }
            match refusal {
                Some(refusal) => {
                    // Dated ahead of the clock, an opt-out would outrank every later real
                    // resume, and a back-off would run from then: refused, as a future
                    // inbound time is.
                    sessions.check_stored_time(StoredTime::MarketingConsent, status.at)?;
                    let withheld = record_marketing_refusal(
                        store,
                        &config.consent,
                        conversation,
                        refusal,
                        status.at,
                    )
                    .await?;
                    record_for_the_same_person(store, status, conversation, one_to_one, withheld)
                        .await?;
                    let consent = store.marketing_consent(conversation).await?;
                    Ok(Some(RecordedConsent {
                        conversation,
                        consent,
                    }))
                }
                None => Ok(None),
            }
        }
        _ => Ok(None),
    }
}

/// The conversation a status with pricing or a marketing refusal is about: for a
/// refusal (`refused`) that names our WhatsApp message id but not the recipient's phone,
/// the conversation of the send outcome carrying that id (the customer our message went
/// to, whatever the status's user id resolves to or whether it resolves at all); else the
/// one the event's identification settled (its phone, or the phone its user id's alias
/// names), else the recipient's user id's handle, else the conversation of the send
/// outcome stored under our `messageId`; for a refusal that none of these ties back and
/// that names a user id, the conversation under a handle allocated for that user id.
async fn status_conversation<S: Store>(
    sessions: &Sessions<S>,
    status: &lipachat_api::StatusUpdate,
    identified: Option<Conversation>,
    refused: bool,
) -> Result<Option<Conversation>, PolicyError> {
    let recipient = &status.recipient;
    if let (true, None, None, Some(wa_id)) = (
        refused,
        recipient.phone,
        &recipient.group,
        status.wa_id.as_deref(),
    ) && let Some((sent_to, _)) = sessions
        .store()
        .outcome_conversation_by_wa_id(recipient.business, wa_id)
        .await
        .map_err(SessionError::from)?
        && !matches!(sent_to.customer, Customer::Group(_))
    {
        return Ok(Some(sent_to));
    }
    if identified.is_some() {
        return Ok(identified);
    }
    let named = match (recipient.business, recipient.group.is_some()) {
        (Some(business), false) => {
            sessions
                .find_conversation(business, recipient.phone, recipient.user_id.as_ref(), None)
                .await?
        }
        _ => None,
    };
    let found = match (named, status.message_id) {
        (None, Some(message_id)) => sessions
            .store()
            .outcome_conversation(recipient.business, message_id)
            .await
            .map_err(SessionError::from)?
            .filter(|c| !matches!(c.customer, Customer::Group(_))),
        (named, _) => named,
    };
    // A refusal naming a user id this store never met (on no number, with no record of
    // the message): kept under a handle allocated for the user, so it holds for the
    // phones any number's alias ties the user id to, now or once one is learned.
    Ok(
        match (found, refused, recipient.business, &recipient.user_id) {
            (None, true, Some(business), Some(user)) if recipient.group.is_none() => sessions
                .sender_conversation(business, None, Some(user))
                .await?
                .map(|resolved| resolved.conversation),
            (found, ..) => found,
        },
    )
}

/// After a refusal status's 131049 / 131050 was recorded for `conversation` (what
/// [`record_marketing_refusal`] answered, `withheld`): records it for the other
/// customers the store knows are the same person, so it holds whichever of them a send
/// names.
///
/// - A 131049 back-off is the customer's across the bot's business numbers: it is
///   extended to the same end for the handle of the status's user id (a number that
///   knows the customer by the user id alone) and for every phone an alias of any
///   business number ties that user id to (a business-scoped user id is the same on all
///   numbers of one portfolio). Costs one read of every alias per such status.
/// - A 131050 opt-out is towards one business number: it is also recorded for the
///   conversation the status's identification settled, when that is another customer
///   of the same number (the user's handle, while the message went to their phone).
async fn record_for_the_same_person<S: Store>(
    store: &S,
    status: &lipachat_api::StatusUpdate,
    conversation: Conversation,
    identified: Option<Conversation>,
    withheld: Withholding,
) -> Result<(), PolicyError> {
    match withheld {
        Withholding::MarketingLimit { retry_at } => {
            let Some(user) = &status.recipient.user_id else {
                return Ok(());
            };
            let mut same_person = Vec::new();
            if let Some(handle) = store.find_user_ref(user).await? {
                same_person.push(Customer::User(handle));
            }
            same_person.extend(
                store
                    .aliases()
                    .await?
                    .into_iter()
                    .filter(|alias| alias.user == *user)
                    .map(|alias| Customer::Phone(alias.phone)),
            );
            same_person.sort();
            same_person.dedup();
            for customer in same_person {
                if customer != conversation.customer {
                    info!(%conversation, %customer, %retry_at, "the 131049 back-off holds for the same user known by another identity");
                    store
                        .extend_back_off(
                            Conversation::with_customer(conversation.business, customer),
                            retry_at,
                        )
                        .await?;
                }
            }
        }
        Withholding::OptedOut => {
            if let Some(other) = identified.filter(|other| {
                other.business == conversation.business && other.customer != conversation.customer
            }) {
                info!(%conversation, %other, "the 131050 opt-out holds for the same user's other conversation");
                store.record_opt_out(other, true, status.at).await?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// After `merged` moved what was stored for one identity into another (a user's
/// conversation into their phone's, an old number's into the new one's): carries the
/// marketing consent recorded for the old identity over, so an opt-out recorded while
/// only a user id was known applies to the phone's conversation the send path checks.
/// The later choice still wins and a back-off is only extended, so carrying is harmless
/// when the store moved the consent itself.
pub async fn carry_consent<S: Store>(store: &S, merged: &Merged) -> Result<(), PolicyError> {
    let consent = store.marketing_consent(merged.from).await?;
    if let Some(changed_at) = consent.changed_at {
        info!(from = %merged.from, to = %merged.to, opted_out = consent.opted_out, "carrying the marketing consent to the merged conversation");
        store
            .record_opt_out(merged.to, consent.opted_out, changed_at)
            .await?;
    }
    if let Some(until) = consent.back_off_until {
        store.extend_back_off(merged.to, until).await?;
    }
    Ok(())
}
