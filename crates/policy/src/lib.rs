//! The guarded WhatsApp send path: what a chatbot backend calls.
//!
//! [`Messenger`] decides at send time, with a safety margin, whether the 24-hour customer
//! service window is open; sends the free-form message if it is; otherwise rejects it,
//! reroutes to an approved template, or sends the template once and keeps the message in
//! a durable outbox until the customer replies ([`Messenger::on_inbound`] delivers it).
//! Every kind of [`FreeFormMessage`](lipachat_api::FreeFormMessage) goes the same way. A
//! template (a reroute, an invitation, or one sent on its own with
//! [`Messenger::send_template`]) is checked first against the business's catalog
//! ([`TemplateCatalogs`]), and its category is carried in the outcome.
//!
//! ```
//! use lipachat_api::{ApiKey, Client, ContactMessage, ContactPhone, TemplateMessage};
//! use lipachat_policy::{Messenger, OnClosed, PolicyConfig, SendOutcome};
//! use lipachat_session::{Conversation, Sessions, SledStore};
//! use lipachat_testkit::StandInGateway;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let gateway = StandInGateway::start().await?; // a stand-in gateway on loopback
//! let client = Client::builder(ApiKey::new(gateway.api_key())?)
//!     .base_url(&gateway.base_url())
//!     .build()?;
//! let dir = tempfile::tempdir()?;
//! let sessions = Sessions::new(SledStore::open(dir.path().join("sessions.db"))?);
//! let invite = TemplateMessage::new("contact_share", "en")?;
//! let messenger = Messenger::new(sessions, client, PolicyConfig::default().on_closed(OnClosed::Queue(invite)));
//!
//! let (business, customer) = ("254110090747".parse()?, "254712345678".parse()?);
//! let chat = Conversation::new(business, customer);
//! let card = ContactMessage::new("Support", vec![ContactPhone::new("254700000001".parse()?, "Work")])?;
//!
//! // The customer has not written: the card waits, and one template invites a reply.
//! let outcome = messenger.send_contact(chat, card).await?;
//! assert!(matches!(outcome, SendOutcome::Queued { template: Some(_), .. }));
//!
//! // The customer replies: the card goes out.
//! gateway.customer_writes(business, customer);
//! let report = messenger.on_inbound(chat, messenger.sessions().now()).await?;
//! assert_eq!(report.delivery.delivered.len(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! "Never twice" rests on the gateway's `messageId` deduplication: every retry of one
//! logical send, inside the client or across a crash, reuses its `messageId`, and a
//! template's `messageId` is derived from the free-form message's. The gateway does not
//! publish how long it remembers ids; a retry after that span could be delivered twice.
//! A retry naming a `messageId` already used is answered from the store, without reaching
//! the gateway, for [`PolicyConfig::outcome_horizon`] (7 days by default); a queued
//! message and the outcome saying so are stored in one durable step, so a retry never
//! finds the message queued without it and queues it again.

mod catalog;
mod claim;
mod closed_window;
mod closing_soon;
mod config;
pub mod consent;
mod consent_events;
pub mod cost;
mod delivery;
mod error;
mod ids;
pub mod messaging_limit;
mod messenger;
mod outcome;
mod reconciliation;
mod recording;
mod request;
mod send_observer;
mod shared;
mod template_send;
mod webhook;

pub use catalog::{CatalogCheck, CatalogSettings, TemplateApproval, TemplateCatalogs};
pub use closing_soon::{ClosingSoon, ClosingSoonWatch};
pub use config::{OnClosed, PolicyConfig};
pub use consent_events::record_consent_and_cost;
pub use error::PolicyError;
pub use ids::template_message_id;
pub use messenger::Messenger;
pub use outcome::{
    Delivered, DeliveryReport, DeliveryStop, ExpiredMessage, FailedMessage, InboundHandled,
    InboundReport, OutcomeKind, PreviousOutcome, SendOutcome, TemplateSent,
};
pub use reconciliation::Reconciliation;
pub use recording::{EventAction, EventRecording, Identified, IdentityChange, Party, record_event};
pub use request::{DryRun, SendRequest, plan_template_cost, queued_content};
pub use send_observer::SendObserver;
pub use template_send::{TemplateOutcome, TemplateRequest};
pub use webhook::WebhookOutcome;
