//! A safe client for the LipaChat WhatsApp gateway, and a parser for its webhooks.
//!
//! ```
//! use lipachat_api::{
//!     ApiKey, Client, ContactMessage, ContactPhone, FreeFormMessage, MessageId, RetryPolicy,
//!     WebhookEvent, WebhookParser, free_form_body,
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
//! assert_eq!(body.to_value()["name"]["formattedName"], "Test User");
//! assert!(body.as_str().starts_with(r#"{"messageId":"#)); // the gateway's key order
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
//! [`Client::update_template`] and [`Client::upload_template_file`] manage templates
//! ([`TemplateDraft::to_body`] is what a create or update sends). None of these calls
//! carries a `messageId`, so the gateway cannot deduplicate them: a retry is made only
//! after a failure that proves the request was not processed (no connection, no free
//! request slot, HTTP 429), never after a timeout or a 5xx.
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
//! * What LipaChat answers to a free-form send outside the window is unpublished, so the
//!   signal is looked for structurally, in an answer and in a webhook alike, and taken as
//!   [`ApiError::WindowClosed`] (or [`WebhookEvent::WindowClosed`]): the number
//!   [`REENGAGEMENT_CODE`] anywhere (or the string `"131047"` under a code key);
//!   [`LEGACY_REENGAGEMENT_CODE`] (470, WhatsApp's older code) only under a code key
//!   (`code`, `errorCode`, `error_code`); in any string, the token `131047` standing
//!   alone, or the words "re-engagement" / "reengagement" or "24 hours have passed",
//!   ignoring case. Values under id-like keys (`messageId`, `waId`, `id`, `wamid`,
//!   `timestamp`, `from`, `to`, `recipient_id`, `path`, `phone`, URLs) are skipped, so
//!   an id that happens to contain `131047` is not mistaken for it.
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

mod catalog;
mod client;
mod contact;
mod endpoint;
mod error;
mod field;
mod flow;
mod free_form;
mod interactive;
mod key;
mod location_request;
mod media;
mod reengagement;
mod request;
mod response;
mod retry;
mod success_answer;
mod template;
mod template_management;
mod text;
mod token;
pub mod webhook;

#[cfg(test)]
mod outbound_shapes_tests;

pub use catalog::{
    Catalog, CatalogRefusal, CatalogTemplate, DEFAULT_MAX_CATALOG_BYTES, HeaderFormat, HeaderSpec,
    TemplateCategory, TemplateStatus,
};
pub use client::{
    API_KEY_VAR, BASE_URL_VAR, Client, ClientBuilder, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_POOL_IDLE_TIMEOUT,
    DEFAULT_POOL_MAX_IDLE, DEFAULT_REQUEST_TIMEOUT,
};
pub use contact::{ContactMessage, ContactPhone, MAX_NAME_CHARS, MAX_PHONE_TYPE_CHARS, MAX_PHONES};
pub use endpoint::{BaseUrl, DEFAULT_BASE_URL, Endpoint};
pub use error::{ApiError, BuildError, ValidationError};
pub use flow::{
    FlowMessage, MAX_FLOW_CTA_CHARS, MAX_FLOW_DATA_BYTES, MAX_FLOW_ID_CHARS, MAX_FLOW_TEXT_CHARS,
};
pub use free_form::FreeFormMessage;
pub use interactive::{
    ButtonsMessage, ListMessage, ListRow, ListSection, MAX_BUTTON_ID_CHARS, MAX_BUTTON_TITLE_CHARS,
    MAX_BUTTONS, MAX_INTERACTIVE_BODY_CHARS, MAX_LIST_BUTTON_TEXT_CHARS, MAX_LIST_HEADER_CHARS,
    MAX_LIST_ROWS, MAX_LIST_SECTIONS, MAX_ROW_DESCRIPTION_CHARS, MAX_ROW_ID_CHARS,
    MAX_ROW_TITLE_CHARS, MAX_SECTION_TITLE_CHARS, MIN_BUTTONS, ReplyButton,
};
pub use key::ApiKey;
pub use lipachat_session::MessageId;
pub use location_request::{LocationRequestMessage, MAX_LOCATION_REQUEST_CHARS};
pub use media::{MAX_CAPTION_CHARS, MAX_FILENAME_CHARS, MediaKind, MediaMessage};
pub use reengagement::{
    LEGACY_REENGAGEMENT_CODE, MARKETING_LIMIT_CODE, MARKETING_OPT_OUT_CODE, MarketingRefusal,
    REENGAGEMENT_CODE, marketing_refusal_in_text,
};
pub use request::{RequestBody, contact_body, free_form_body, template_body, text_body};
pub use response::Receipt;
pub use retry::RetryPolicy;
pub use template::{
    MAX_BODY_PLACEHOLDER_CHARS, MAX_HEADER_TEXT_CHARS, MAX_MEDIA_URL_LEN, MAX_TEMPLATE_NAME_CHARS,
    MediaUrl, TemplateHeader, TemplateMessage,
};
pub use template_management::{
    DraftButton, DraftHeader, MAX_DOCUMENT_BYTES, MAX_IMAGE_BYTES, MAX_TEMPLATE_BODY_CHARS,
    MAX_TEMPLATE_BUTTON_CHARS, MAX_TEMPLATE_BUTTONS, MAX_TEMPLATE_FOOTER_CHARS, MAX_VIDEO_BYTES,
    TemplateDraft, TemplateFile, TemplateSaved, UploadedFile,
};
pub use text::{MAX_TEXT_CHARS, TextMessage};
pub use token::{
    MAX_TOKEN_LEN, MIN_TOKEN_LEN, TokenError, WebhookToken, token_from_request_target,
};
pub use webhook::{
    CallDirection, CallEvent, CallEventKind, DeliveryStatus, InboundContent, InboundKind,
    InboundMessage, Recipient, Sender, StatusUpdate, TemplateStatusUpdate, WebhookError,
    WebhookEvent, WebhookParser,
};
