//! Send WhatsApp messages through the LipaChat gateway without breaking the 24-hour
//! customer service window.
//!
//! This facade re-exports the workspace's crates so a backend adds one dependency:
//! [`session`] keeps the windows.

pub use lipachat_session as session;
