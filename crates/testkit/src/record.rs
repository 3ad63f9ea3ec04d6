//! What the stand-in remembers for assertions: every request, every delivery, every refusal.

use chrono::{DateTime, Utc};
use lipachat_session::{Conversation, PhoneNumber};
use serde_json::Value;

use crate::window::WindowRefusal;
use crate::wire::{MessageKind, Violation};

/// How a request's `apiKey` header compared with the gateway's key. The key itself is
/// never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiKeyCheck {
    /// No `apiKey` header.
    Missing,
    /// An `apiKey` header that is not the gateway's key.
    Wrong,
    /// The gateway's key.
    Valid,
}

/// A request body as received.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RequestBody {
    /// No bytes.
    Empty,
    /// Valid JSON (of any shape).
    Json(Value),
    /// Bytes that are not JSON, decoded as UTF-8 with replacement characters.
    Text(String),
    /// Longer than [`MAX_BODY_BYTES`](crate::MAX_BODY_BYTES): not kept.
    TooLarge,
    /// Not read (the path or method is not served) or not kept (bodies switched off with
    /// [`GatewayBuilder::record_bodies`](crate::GatewayBuilder::record_bodies)).
    NotKept,
}

impl RequestBody {
    /// The JSON body, if it was JSON.
    pub fn json(&self) -> Option<&Value> {
        match self {
            Self::Json(value) => Some(value),
            _ => None,
        }
    }
}

/// What the stand-in did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RequestOutcome {
    /// Delivered to the customer (HTTP 200, success envelope).
    Delivered,
    /// A `messageId` already answered with success: the same answer again, nothing sent.
    Duplicate,
    /// A free-form send outside the window, refused at once (HTTP 200, 131047 error body).
    RefusedOutsideWindow,
    /// A template to a customer told to answer a marketing error
    /// ([`crate::StandInGateway::answer_templates_with`]): HTTP 200 with error 131049 or
    /// 131050; nothing is sent.
    RefusedMarketing,
    /// A free-form send outside the window, accepted (HTTP 200, success envelope) and then
    /// failed through a status callback ([`WindowRefusal::StatusCallback`]).
    FailedOutsideWindow,
    /// `apiKey` missing or wrong (HTTP 401 with the `"status": "success"` body).
    InvalidCredentials,
    /// The body failed validation (HTTP 400).
    BadRequest(Violation),
    /// The body was longer than [`MAX_BODY_BYTES`](crate::MAX_BODY_BYTES) (HTTP 413).
    PayloadTooLarge,
    /// Answered with an injected failure ([`StandInGateway::fail_next`](crate::StandInGateway::fail_next)).
    InjectedFailure,
    /// A path the gateway does not serve (HTTP 404).
    NotFound,
    /// A method the endpoint does not serve (HTTP 405).
    MethodNotAllowed,
    /// A template send the business's catalog refuses (HTTP 200, error envelope with
    /// WhatsApp's code: 132001 no such template or language, 132015 paused, 132016
    /// disabled, 132000 wrong number of parameters, 132012 header of the wrong format).
    TemplateRejected(u32),
    /// The catalog was listed (`GET /api/v1/template/{business}`).
    CatalogListed,
    /// A template was created (`POST /api/v1/template/{business}`).
    TemplateCreated,
    /// A template was updated (`PUT /api/v1/template/{business}/{id}`).
    TemplateUpdated,
    /// A file was uploaded (`POST /api/v1/template/upload/file`).
    FileUploaded,
}

/// One HTTP request the stand-in received, whatever became of it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReceivedRequest {
    /// The HTTP method, for example `POST`.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The send endpoint's kind, if the path is one.
    pub kind: Option<MessageKind>,
    /// How the `apiKey` header compared with the gateway's key.
    pub api_key: ApiKeyCheck,
    /// The `Content-Type` header, if present (lossily decoded).
    pub content_type: Option<String>,
    /// The body.
    pub body: RequestBody,
    /// The HTTP status answered.
    pub status: u16,
    /// What the stand-in did with it.
    pub outcome: RequestOutcome,
    /// When it arrived, on the gateway's clock.
    pub at: DateTime<Utc>,
}

impl ReceivedRequest {
    /// The body's `messageId`, if the body was JSON with a string `messageId`.
    pub fn message_id(&self) -> Option<&str> {
        self.body.json()?.get("messageId")?.as_str()
    }
}

/// A message that reached a customer: one per unique `messageId`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DeliveredMessage {
    /// Contact, template, text, media or buttons.
    pub kind: MessageKind,
    /// The business number it came from (`from`).
    pub business: PhoneNumber,
    /// The customer it reached (`to`).
    pub customer: PhoneNumber,
    /// The caller's `messageId`.
    pub message_id: String,
    /// The `wamid.` the gateway answered with.
    pub wa_id: String,
    /// The request body as sent (`Value::Null` when bodies are not recorded).
    pub body: Value,
    /// When it was delivered, on the gateway's clock.
    pub delivered_at: DateTime<Utc>,
}

impl DeliveredMessage {
    /// The (business, customer) pair it belongs to.
    pub fn conversation(&self) -> Conversation {
        Conversation::new(self.business, self.customer)
    }
}

/// A free-form send that WhatsApp would refuse: the window was closed when it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refusal {
    /// The kind of the refused message (never a template).
    pub kind: MessageKind,
    /// The business number it came from (`from`).
    pub business: PhoneNumber,
    /// The customer it was meant for (`to`).
    pub customer: PhoneNumber,
    /// The caller's `messageId`.
    pub message_id: String,
    /// How it was refused.
    pub mode: WindowRefusal,
    /// The `wamid.` answered when the refusal came later by status callback; `None` for an
    /// immediate refusal.
    pub wa_id: Option<String>,
    /// When it arrived, on the gateway's clock.
    pub at: DateTime<Utc>,
}
