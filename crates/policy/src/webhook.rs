//! Handling one parsed webhook event: who it is about (a phone number, a user known by a
//! business-scoped user id, a group), then what it does to the window, the outbox and the
//! identities the store keeps.

use chrono::{DateTime, Utc};
use lipachat_api::WebhookEvent;
use lipachat_session::{Conversation, MarketingConsent, Merged, MovedRecords, Store};
use tracing::{info, warn};

use crate::consent_events::carry_consent;
use crate::error::PolicyError;
use crate::messenger::Messenger;
use crate::outcome::{DeliveryReport, InboundHandled, InboundReport};
use crate::reconciliation::Reconciliation;
use crate::recording::EventAction;

/// What [`Messenger::on_webhook_event`] did with one webhook event.
#[derive(Debug)]
#[non_exhaustive]
pub enum WebhookOutcome {
    /// A customer's message (or call) was recorded in its conversation (a phone's, a
    /// user's known only by a business-scoped user id, or a group's), and the outbox
    /// delivered where it can be.
    Inbound(Box<InboundReport>),
    /// A redelivered copy of a customer's message already handled: nothing was recorded;
    /// do not answer it again.
    Duplicate {
        /// The conversation the first copy was recorded in.
        conversation: Conversation,
        /// When the first copy was received.
        first_received_at: DateTime<Utc>,
        /// The delivery of queued messages it ran (usually empty).
        delivery: DeliveryReport,
    },
    /// A "window closed" report was reconciled.
    WindowClosed(Reconciliation),
    /// A user's phone number or business-scoped user id changed (a system message, which
    /// does not open the window): what was stored for the old identity moved to the new
    /// one.
    IdentityMoved {
        /// The conversation of the old identity (now empty).
        from: Conversation,
        /// The conversation of the new identity.
        to: Conversation,
        /// What moved (nothing, when nothing was stored for the old identity).
        moved: MovedRecords,
    },
    /// A customer stopped or resumed marketing messages (the `user_preferences`
    /// webhook): the consent now stored.
    MarketingPreference {
        /// The conversation.
        conversation: Conversation,
        /// The consent now stored (a stale webhook leaves a later choice in force).
        consent: MarketingConsent,
    },
    /// Nothing to do: a status update, a message kind that does not open the window, a
    /// report that names no conversation known here, or an unreadable item (with why).
    Ignored(String),
}

impl<S: Store> Messenger<S> {
    /// Handles one parsed webhook event: records a customer's message (which may deliver
    /// queued messages), reconciles a "window closed" report, or moves what is stored for
    /// a user whose number or user id changed. Verify the webhook's secret token before
    /// calling this: a forged inbound message would open a window.
    ///
    /// What the event asks of the store is decided by [`EventAction::of`] and settled by
    /// [`EventAction::identify`], as `session-check ingest` does: a group message belongs
    /// to the (business, group) conversation, never to the sender's 1:1 window; a 1:1
    /// message to the sender's phone, or, when only a business-scoped user id names them,
    /// to the phone an alias recorded earlier names, else to the user's own conversation
    /// (which cannot be sent to). A message or status naming both a phone and a user id
    /// records the alias and moves the user's conversation into the phone's. Reports tie
    /// back the same way, without creating anything.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (gateway, dir) = (lipachat_testkit::StandInGateway::start().await?, tempfile::tempdir()?);
    /// # let client = lipachat_api::Client::builder(lipachat_api::ApiKey::new(gateway.api_key())?).base_url(&gateway.base_url()).build()?;
    /// # let sessions = lipachat_session::Sessions::new(lipachat_session::SledStore::open(dir.path().join("db"))?);
    /// use lipachat_api::WebhookParser;
    /// use lipachat_policy::{Messenger, PolicyConfig, WebhookOutcome};
    /// use lipachat_session::Conversation;
    ///
    /// let messenger = Messenger::new(sessions, client, PolicyConfig::default());
    /// let parser = WebhookParser::default();
    /// let body = br#"{"messageId": "in-1", "from": "254712345678", "to": "254110090747", "type": "TEXT", "text": "Hello"}"#;
    /// for event in parser.parse(body, messenger.sessions().now())? {
    ///     match messenger.on_webhook_event(&event).await? {
    ///         WebhookOutcome::Inbound(report) => assert!(report.recorded.opened),
    ///         other => panic!("a customer's message, got {other:?}"),
    ///     }
    /// }
    /// // The same webhook redelivered is a duplicate: do not answer it again.
    /// let again = parser.parse(body, messenger.sessions().now())?;
    /// assert!(matches!(messenger.on_webhook_event(&again[0]).await?, WebhookOutcome::Duplicate { .. }));
    /// assert!(messenger.sessions().decide(Conversation::parse("254110090747", "254712345678")?).await?.is_allowed());
    /// # Ok(()) }
    /// ```
    pub async fn on_webhook_event(
        &self,
        event: &WebhookEvent,
    ) -> Result<WebhookOutcome, PolicyError> {
        let action = EventAction::of(event);
        let identified = action.identify(self.sessions()).await?;
        // Cost and consent once the customer is resolved as the inbound path resolves
        // them (a user known by a user id alone: the phone an alias names), and before
        // anything the inbound message triggers (a delivery of queued messages) is sent,
        // so a STOP keyword is in force by then.
        // Boxed: its future would otherwise swell every webhook's.
        let consent = Box::pin(self.record_consent_and_cost(event, &identified)).await?;
        if let (WebhookEvent::MarketingPreference { .. }, Some(recorded)) = (event, consent) {
            return Ok(WebhookOutcome::MarketingPreference {
                conversation: recorded.conversation,
                consent: recorded.consent,
            });
        }
        if let (Some(merged), false) = (
            identified.merged,
            matches!(action, EventAction::ChangeIdentity { .. }),
        ) {
            log_merge(&merged, "a webhook named both the phone and the user id");
        }
        match (&action, identified.conversation) {
            (EventAction::RecordInbound { at, id, .. }, Some(conversation)) => {
                let handled = match id {
                    Some(id) => self.on_inbound_once(conversation, *at, id).await?,
                    // Without an id (none, or an empty one) a copy cannot be recognised; it still counts.
                    None => InboundHandled::First(self.on_inbound(conversation, *at).await?),
                };
                // Recorded under a user's handle while another replica recorded the
                // user's phone: move it there now, so the two stay one conversation.
                let settled = match action.user_only() {
                    Some(user) => self.sessions().settle_user(conversation, user).await?,
                    None => None,
                };
                if let Some(merged) = &settled {
                    carry_consent(self.sessions().store(), merged).await?;
                }
                Ok(match handled {
                    InboundHandled::First(mut report) => {
                        if let Some(merged) = settled {
                            log_merge(&merged, "the user's phone became known meanwhile");
                            report.conversation = merged.to;
                            report.delivery = self.deliver_after_recording(merged.to).await?;
                        }
                        WebhookOutcome::Inbound(Box::new(report))
                    }
                    InboundHandled::Duplicate {
                        first_received_at,
                        delivery,
                    } => WebhookOutcome::Duplicate {
                        conversation: settled.map_or(conversation, |merged| merged.to),
                        first_received_at,
                        delivery,
                    },
                })
            }
            (
                EventAction::RecordClosure {
                    at,
                    message_id,
                    wa_id,
                    ..
                },
                Some(conversation),
            ) => {
                let reconciled = self
                    .on_window_closed_report(conversation, *message_id, wa_id.as_deref(), *at)
                    .await?;
                Ok(WebhookOutcome::WindowClosed(reconciled))
            }
            (
                EventAction::RecordClosure {
                    message_id, wa_id, ..
                },
                None,
            ) => {
                warn!(message_id = ?message_id, wa_id = ?wa_id, "window-closed report names no conversation known here, and no send outcome stored here has its messageId; configure the parser's business number where the payload names the recipient");
                Ok(WebhookOutcome::Ignored(
                    "window-closed report names no conversation known here".into(),
                ))
            }
            (EventAction::ChangeIdentity { .. }, _) => Ok(match identified.merged {
                Some(merged) => {
                    log_merge(&merged, "the user's identity changed");
                    WebhookOutcome::IdentityMoved {
                        from: merged.from,
                        to: merged.to,
                        moved: merged.moved,
                    }
                }
                None => {
                    WebhookOutcome::Ignored("identity change that names no old identity".into())
                }
            }),
            (EventAction::Nothing { reason, .. }, _) => Ok(WebhookOutcome::Ignored(reason.clone())),
            (other, _) => Ok(WebhookOutcome::Ignored(format!(
                "nothing recorded for {other:?}"
            ))),
        }
    }
}

fn log_merge(merged: &Merged, why: &str) {
    info!(
        from = %merged.from,
        to = %merged.to,
        window = merged.moved.window,
        queued = merged.moved.queued,
        invitation = merged.moved.invitation,
        outcomes = merged.moved.outcomes,
        "{why}: moved what was stored"
    );
}
