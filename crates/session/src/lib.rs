//! Durable 24-hour WhatsApp customer service windows, per (business number, customer).
//!
//! WhatsApp lets a business send free-form messages (a contact card, text, media) to a
//! customer only within 24 hours of that customer's last inbound message to that business
//! number; outside that window only an approved template may go. This crate records each
//! conversation's last inbound time durably in [sled] and decides whether a free-form send
//! is allowed now, with a safety margin.
//!
//! ```
//! use chrono::TimeDelta;
//! use lipachat_session::{Conversation, ManualClock, RefusalReason, SendDecision, Sessions, SledStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let clock = ManualClock::at("2026-11-23T10:00:00Z".parse()?);
//! let sessions = Sessions::new(SledStore::open(dir.path().join("sessions.db"))?)
//!     .with_clock(clock.clone());
//! let chat = Conversation::parse("254110090747", "+254 712 345 678")?;
//!
//! // The customer writes: the window opens for 24 hours.
//! sessions.record_inbound_now(chat).await?;
//! assert!(sessions.decide(chat).await?.is_allowed());
//!
//! // 23 h 59 m 30 s later the window is still open, but inside the 60 s safety margin.
//! clock.advance(TimeDelta::hours(24) - TimeDelta::seconds(30));
//! assert!(matches!(
//!     sessions.decide(chat).await?,
//!     SendDecision::Refused { reason: RefusalReason::ClosingWithinMargin, .. }
//! ));
//! # Ok(())
//! # }
//! ```
//!
//! The pieces:
//! - [`PhoneNumber`], [`Conversation`]: validated identities; the window belongs to the pair.
//! - [`Bsuid`], [`GroupId`]: a user known by a business-scoped user id, and a group (what
//!   webhooks carry beside or instead of a phone number); [`Customer`]: who a conversation
//!   is with (a phone, or a store's handle for a user or a group, [`UserRef`],
//!   [`GroupRef`]); [`IdentityStore`]: handles, aliases and moving a person's records;
//!   [`Sessions::sender_conversation`] and its siblings: which conversation a webhook
//!   names.
//! - [`WindowRule`], [`WindowState`], [`SendDecision`]: the rule, pure and in one place.
//! - [`WindowStore`], [`OutboxStore`], [`IdentityStore`]: what a store persists; [`SledStore`] is the embedded
//!   default (durable with group commit, or periodic flushing).
//! - [`Sessions`]: store + clock + rule, the engine callers use.
//! - [`SkewLimit`]: the one rule for times written to a store: none beyond the tolerated
//!   skew ahead of the real clock, whatever clock the caller examines windows with.
//! - [`export`](export::export) / [`import`](export::import): JSON lines.
//! - [`view`]: the JSON objects tools show a window and a queued message as (one shape
//!   for `session-check` and a running bot's admin routes).
//!
//! [sled]: https://docs.rs/sled/0.34

pub mod back_off;
mod clock;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod consent;
mod conversation;
mod customer;
mod engine;
pub mod export;
mod identity;
mod inbound_id;
#[cfg(feature = "conformance")]
pub mod instrumented;
mod message_id;
mod phone;
mod resolution;
mod skew;
#[cfg(feature = "sled")]
mod sled_store;
pub mod store;
mod uuid_v5;
pub mod view;
mod window;

pub use clock::{Clock, ManualClock, SystemClock};
pub use consent::{
    ConsentStore, CostRecord, CountTime, FreeEntryPoint, MAX_CONFIRMED_FREE_ENTRY_POINT,
    MarketingConsent, PredictedCost, PricingCategory, Reach, ReportedPricing,
};
pub use conversation::Conversation;
pub use customer::{Customer, CustomerError, GroupRef, MAX_GROUP_REFS, MAX_USER_REFS, UserRef};
pub use engine::{Recorded, RecordedOnce, SessionError, Sessions};
pub use identity::{Bsuid, GroupId, IdentityError, MAX_BSUID_ID_CHARS, MAX_GROUP_ID_BYTES};
pub use inbound_id::{InboundDigest, InboundDigestError, InboundId, InboundIdError};
pub use message_id::MessageId;
pub use phone::{MAX_DIGITS, MIN_DIGITS, PhoneError, PhoneNumber, PhoneParser};
pub use resolution::{Merged, Resolved};
pub use skew::{FutureTimeError, SkewLimit, StoredTime};
#[cfg(feature = "sled")]
pub use sled_store::{
    CheckpointReport, Durability, IntegrityReport, LastShutdown, MARKER_FILE, OpenMode,
    RECOVERY_COPIES_KEPT, RECOVERY_DIR, SCHEMA_VERSION, SLED_BACKEND, SledConfig, SledStore,
    TreeReport, TreeTally,
};
pub use store::{
    Alias, IdentityStore, InboundReceipt, InboundUpdate, Invitation, MovedRecords, OutboxStore,
    QueuedMessage, RememberedInbound, Store, StoreError, StoredOutcome, WindowEntry, WindowStore,
};
pub use window::{
    ClosedCause, RefusalReason, RuleError, SendDecision, WindowRecord, WindowRule, WindowState,
    saturating_add, truncate_to_millis,
};
