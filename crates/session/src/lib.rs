//! Durable 24-hour WhatsApp customer service windows.
//!
//! WhatsApp lets a business send free-form messages to a customer only within 24 hours of
//! that customer's last inbound message to that business number. This crate records each
//! (business number, customer) pair's last inbound time and decides whether a free-form
//! send is allowed now.

mod clock;
mod conversation;
mod phone;
pub mod window;

pub use clock::{Clock, ManualClock, SystemClock};
pub use conversation::Conversation;
pub use phone::{MAX_DIGITS, MIN_DIGITS, PhoneError, PhoneNumber, PhoneParser};
pub use window::{
    ClosedCause, RefusalReason, RuleError, SendDecision, WindowRecord, WindowRule, WindowState,
};
