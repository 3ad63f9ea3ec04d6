//! A stand-in LipaChat gateway: a real HTTP server on `127.0.0.1` that behaves like the
//! gateway, for end-to-end tests, demos and benchmarks.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use lipachat_session::PhoneNumber;
//! use lipachat_testkit::{MessageKind, StandInGateway};
//!
//! let gateway = StandInGateway::start().await?;
//! let business: PhoneNumber = "254110090747".parse()?;
//! let customer: PhoneNumber = "254712345678".parse()?;
//! // A contact is free-form: the customer must have written within 24 hours.
//! gateway.customer_writes(business, customer);
//!
//! let answer: serde_json::Value = reqwest::Client::new()
//!     .post(format!("{}{}", gateway.base_url(), MessageKind::Contact.path()))
//!     .header("apiKey", gateway.api_key())
//!     .json(&serde_json::json!({
//!         "messageId": "ca739107-4b0d-4581-acb1-4c4af70555de",
//!         "from": "254110090747",
//!         "to": "254712345678",
//!         "name": { "formattedName": "Test User" },
//!         "phones": [{ "phone": "254712345678", "type": "Cell", "waId": "254712345678" }]
//!     }))
//!     .send()
//!     .await?
//!     .json()
//!     .await?;
//! assert_eq!(answer["status"], "success");
//! assert_eq!(answer["data"]["status"], "SENT");
//!
//! let delivered = gateway.delivered_to(customer);
//! assert_eq!(delivered.len(), 1);
//! assert_eq!(delivered[0].kind, MessageKind::Contact);
//! assert_eq!(delivered[0].message_id, "ca739107-4b0d-4581-acb1-4c4af70555de");
//! assert_eq!(answer["data"]["waId"], delivered[0].wa_id.as_str());
//! # Ok(())
//! # }
//! ```
//!
//! # What it does with a request
//!
//! Send endpoints (`POST`): [`MessageKind::Contact`] `/api/v1/whatsapp/contact`,
//! [`MessageKind::Template`] `/api/v1/whatsapp/template`, [`MessageKind::Text`]
//! `/api/v1/whatsapp/message/text`, and, as further free-form kinds,
//! [`MessageKind::Media`] `/api/v1/whatsapp/media`, [`MessageKind::Buttons`]
//! `/api/v1/whatsapp/interactive/buttons`, [`MessageKind::List`]
//! `/api/v1/whatsapp/interactive/list`, [`MessageKind::LocationRequest`]
//! `/api/v1/whatsapp/request_location` and [`MessageKind::Flow`]
//! `/api/v1/whatsapp/interactive/flows`, each validated against WhatsApp's limits (see
//! [`Violation`]). Other paths get 404, other methods 405. A send is answered by the
//! first of these that applies:
//!
//! 1. An injected failure ([`StandInGateway::fail_next`]): that status, the generic
//!    failure body `{"timestamp": …, "data": null, "status": "error", "message": "Request failed.", "errors": null}`.
//! 2. A missing or wrong `apiKey` header: HTTP 401 with the gateway's quirk, a body that
//!    says `"status": "success"`:
//!    `{"timestamp": …, "data": null, "status": "success", "message": "Invalid credentials", "errors": null}`.
//! 3. A body over [`MAX_BODY_BYTES`]: HTTP 413.
//! 4. A wrong `Content-Type`, a body that is not a JSON object, or one that fails validation
//!    (see [`Violation`]): HTTP 400 `{"timestamp": …, "status": 400, "error": "Bad Request", "path": …}`.
//! 5. A template send that the business's catalog refuses, when one was set
//!    ([`StandInGateway::set_templates`]): HTTP 200, an error envelope with WhatsApp's
//!    code (132001, 132015, 132016, 132000, 132012); nothing is delivered.
//! 6. A `messageId` already answered with success: the very same answer again (same
//!    `waId`, same timestamp); nothing new is delivered.
//! 7. A free-form send (anything but a template) while the (`from`, `to`) window is closed
//!    on the gateway's clock: with [`WindowRefusal::Immediate`], HTTP 200
//!    `{"timestamp": …, "data": null, "status": "error", "message": "(#131047) Re-engagement message: …", "errors": [{"code": 131047, "title": "Re-engagement message"}]}`;
//!    with [`WindowRefusal::StatusCallback`], the success envelope now and a failed status
//!    callback later ([`StandInGateway::take_status_callbacks`]). Either way it is
//!    recorded in [`StandInGateway::refusals`] and never delivered.
//! 8. Otherwise delivered, HTTP 200:
//!    `{"timestamp": …, "data": {"messageId": <echo>, "waId": "wamid.…", "status": "SENT", "statusDesc": "Message sent successfully"}, "status": "success", "message": "", "errors": null}`.
//!
//! Windows are opened only by [`StandInGateway::customer_writes`]: the gateway is told
//! about inbound messages, and judges them with the session crate's
//! [`WindowRule`](lipachat_session::WindowRule) without a safety margin (open while
//! `now < last inbound + 24 h`; closed at exactly 24 hours). Templates never need a window
//! and never open one.
//!
//! Every request, whatever its fate, is in [`StandInGateway::requests`]; the key itself is
//! never stored, only whether it matched ([`ApiKeyCheck`]).
//!
//! # Template endpoints
//!
//! `GET /api/v1/template/{business}` lists the catalog set with
//! [`StandInGateway::set_templates`] under `data.data[]` (404 for a business without
//! one); `POST` there creates a template and `PUT /api/v1/template/{business}/{id}`
//! updates one (both `PENDING` review); `POST /api/v1/template/upload/file` takes a
//! multipart `file` part ([`StandInGateway::uploads`]) and answers its id. They check the
//! key (the 401 quirk) like the sends, take their own injected failures
//! ([`StandInGateway::fail_template_calls_next`]) and are recorded apart, in
//! [`StandInGateway::template_requests`].
//!
//! # Beside the gateway
//!
//! [`capture_log`] keeps what a test's thread logs, so the test can read it back (that a
//! decision was logged, that a key never was); [`keys_in_order`] reads the order of a JSON
//! object's keys as written, which a `serde_json::Value` does not keep.

mod captured_log;
mod catalog;
mod fault;
mod gateway;
mod key_order;
mod ledger;
mod record;
mod server;
mod window;
mod wire;

pub use captured_log::{CapturedLog, capture_log, capture_log_at, capture_log_globally};
pub use catalog::{UploadedTemplateFile, template_entry};
pub use fault::InjectedFailure;
pub use gateway::{GatewayBuilder, StandInGateway};
pub use key_order::keys_in_order;
pub use record::{
    ApiKeyCheck, DeliveredMessage, ReceivedRequest, Refusal, RequestBody, RequestOutcome,
};
pub use server::{API_KEY_HEADER, MAX_BODY_BYTES, MAX_UPLOAD_BYTES};
pub use window::WindowRefusal;
pub use wire::{
    MAX_TEXT_CHARS, MarketingAnswer, MessageKind, PATH_PREFIX, RE_ENGAGEMENT_CODE,
    RE_ENGAGEMENT_MESSAGE, StatusPricingWire, Violation,
};
