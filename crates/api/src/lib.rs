//! A safe client for the LipaChat WhatsApp gateway, and a parser for its webhooks.
//!
//! ```
//! use lipachat_api::{
//!     ApiKey, Client, ContactMessage, ContactPhone, FreeFormMessage, MessageId, RetryPolicy,
//!     WebhookEvent, WebhookParser, request::free_form_body,
//! };
//! use lipachat_session::Conversation;
//! use std::time::Duration;
//!
//! // One client per process: clones share the connection pool and the cap on requests
//! // in flight. Building it makes no connection; plain http:// is accepted only to
//! // loopback.
//! let client = Client::builder(ApiKey::new("my-api-key")?)
//!     .base_url("https://gateway.lipachat.com/api/v1")
//!     .request_timeout(Duration::from_secs(10))
//!     .retry(RetryPolicy::default())
//!     .max_in_flight(16)
//!     .build()?;
//! assert_eq!(client.base_url().as_str(), "https://gateway.lipachat.com");
//! assert_eq!(client.max_in_flight(), 16);
//!
//! // The exact body a send would POST (what a `--dry-run` prints).
//! let conversation = Conversation::parse("254110090747", "254712345678")?;
//! let card = ContactMessage::new(
//!     "Test User",
//!     vec![ContactPhone::on_whatsapp("254712345678".parse()?, "Cell")],
//! )?;
//! let message = FreeFormMessage::Contact(card);
//! let body = free_form_body(conversation, MessageId::new(), &message)?;
//! assert_eq!(message.path(), "/api/v1/whatsapp/contact");
//! assert_eq!(body["name"]["formattedName"], "Test User");
//! // `client.send_free_form(conversation, id, &message).await` would send it.
//!
//! // A customer's message arrives on the webhook: it opens the window.
//! let inbound = br#"{"messageId": "in-1", "from": "254712345678", "to": "254110090747",
//!                    "profileName": "Jane", "type": "TEXT", "text": "Hello"}"#;
//! let received_at = "2026-11-23T10:00:00Z".parse()?;
//! let events = WebhookParser::default().parse(inbound, received_at)?;
//! match &events[..] {
//!     [WebhookEvent::Inbound(message)] => {
//!         assert_eq!(message.conversation(), Some(conversation));
//!         assert!(message.opens_window);
//!         assert_eq!(message.inbound_time(), received_at);
//!     }
//!     other => panic!("unexpected events: {other:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Sending
//!
//! [`Client`] sends a [`ContactMessage`], a [`TextMessage`], a [`MediaMessage`], a
//! [`ButtonsMessage`], a [`ListMessage`], a [`LocationRequestMessage`], a [`FlowMessage`]
//! (all [`FreeFormMessage`]s) or a [`TemplateMessage`] for a
//! [`Conversation`](lipachat_session::Conversation) (its `business` is the gateway's
//! `from`, its `customer`'s phone number the `to`; a conversation with a user known only
//! by a business-scoped user id, or with a group, has none, and a send to it is
//! [`ValidationError::NotAddressable`] before any request). Messages are validated when built, so a send never
//! starts with invalid input. Each logical send has one [`MessageId`]; connection failures,
//! timeouts, 408, 429 and 5xx are retried with the same id (so the gateway deduplicates),
//! other 4xx never. Results are a [`Receipt`] or an [`ApiError`], which says whether a
//! later retry may help ([`ApiError::retry_later_may_help`]) and whether WhatsApp reported
//! the 24-hour window closed ([`ApiError::is_window_closed`], error 131047).
//!
//! # Templates
//!
//! [`Client::templates`] reads a business number's [`Catalog`]; [`Catalog::check`] refuses
//! a template send that would fail ([`CatalogRefusal`]: unknown template or language, not
//! approved, placeholder count or header mismatch). [`Client::create_template`],
//! [`Client::update_template`] and [`Client::upload_template_file`] manage templates; see
//! [`template_management`] for what they send and when they retry.
//!
//! # Security
//!
//! The [`ApiKey`] prints as `ApiKey(***)` and appears in no error or log line; bodies
//! quoted in errors have it redacted, whether the gateway echoes it as it is,
//! JSON-escaped, percent-encoded or HTML-escaped. Plain `http://` is refused unless the host is
//! loopback (decided from the URL alone), redirects are never followed (they could carry
//! the key elsewhere), and TLS is rustls (no system OpenSSL).
//!
//! # Webhooks
//!
//! [`WebhookParser`] reads LipaChat's flat payload and WhatsApp's nested one into
//! [`WebhookEvent`]s; see [`webhook`] for what is accepted. The gateway signs nothing, so
//! put a [`WebhookToken`] in the webhook URL and check it before parsing.
//!
//! # What the gateway does not document (and what this crate assumes)
//!
//! * What LipaChat answers to a free-form send outside the window is unpublished: any
//!   answer naming 131047, "re-engagement" or "24 hours have passed" (outside id fields)
//!   is taken as [`ApiError::WindowClosed`]; see [`reengagement`].
//! * A 2xx is a success only if `data.status` is `SENT`, as the reference says; another
//!   `data.status` is [`ApiError::Refused`] (not retried).
//! * The text header of a template is sent as `{"type": "TEXT", "parameter": ["..."]}`,
//!   the form one public client uses; the gateway documents only media headers.
//! * Status callbacks' shape is unpublished; [`webhook`] lists what is accepted.
//! * The header is sent as `apiKey`; HTTP/1.1 lower-cases header names on the wire
//!   (`apikey`), which HTTP treats as the same header.
//! * [`Receipt::message_id`] is the id the client sent; the gateway's echo in
//!   `data.messageId` is kept beside it as [`Receipt::gateway_message_id`] and compared
//!   with it (a mismatch is logged).

pub mod catalog;
pub mod client;
pub mod contact;
pub mod endpoint;
pub mod error;
mod field;
pub mod flow;
pub mod free_form;
pub mod interactive;
pub mod key;
pub mod location_request;
pub mod media;
pub mod reengagement;
pub mod request;
pub mod response;
pub mod retry;
pub mod template;
pub mod template_management;
pub mod text;
pub mod token;
pub mod webhook;

pub use catalog::{
    Catalog, CatalogRefusal, CatalogTemplate, HeaderFormat, HeaderSpec, TemplateCategory,
    TemplateStatus,
};
pub use client::{Client, ClientBuilder};
pub use contact::{ContactMessage, ContactPhone};
pub use endpoint::{BaseUrl, DEFAULT_BASE_URL, Endpoint};
pub use error::{ApiError, ValidationError};
pub use flow::FlowMessage;
pub use free_form::FreeFormMessage;
pub use interactive::{ButtonsMessage, ListMessage, ListRow, ListSection, ReplyButton};
pub use key::ApiKey;
pub use lipachat_session::MessageId;
pub use location_request::LocationRequestMessage;
pub use media::{MediaKind, MediaMessage};
pub use request::{contact_body, free_form_body, template_body, text_body};
pub use response::Receipt;
pub use retry::RetryPolicy;
pub use template::{MediaUrl, TemplateHeader, TemplateMessage};
pub use template_management::{
    DraftButton, DraftHeader, TemplateDraft, TemplateFile, TemplateSaved, UploadedFile,
};
pub use text::TextMessage;
pub use token::{TokenError, WebhookToken};
pub use webhook::{
    CallDirection, CallEvent, CallEventKind, DeliveryStatus, InboundContent, InboundKind,
    InboundMessage, Recipient, Sender, StatusUpdate, TemplateStatusUpdate, WebhookError,
    WebhookEvent, WebhookParser,
};
