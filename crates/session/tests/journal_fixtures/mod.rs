//! What the outcome journal's tests write: one business number's phone conversations,
//! `messageId`s numbered from 0, and outcome texts the size of a sent contact card's (a
//! batch holds a handful) that name their version.

#![allow(dead_code)] // Not every test binary that includes this module uses all of it.

use lipachat_session::{Conversation, Customer, MessageId, PhoneNumber};

/// The business number.
pub fn business() -> PhoneNumber {
    PhoneNumber::from_u64(254_110_090_747).unwrap()
}

/// Customer `i`, a phone number.
pub fn customer(i: u64) -> Customer {
    Customer::Phone(PhoneNumber::from_u64(254_700_000_000 + i).unwrap())
}

/// The business number's conversation with customer `i`.
pub fn conversation(i: u64) -> Conversation {
    Conversation::with_customer(business(), customer(i))
}

/// The `messageId` numbered `n`.
pub fn id(n: u64) -> MessageId {
    MessageId::from_uuid(uuid::Uuid::from_u128(
        0x10a7_0000_0000_4000_8000_0000_0000_0000 | u128::from(n),
    ))
}

/// A runtime to run the store's calls on from a plain test thread.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The text of version `version` of outcome `n`, padded to a sent contact card's size.
pub fn versioned_text(n: u64, version: u64) -> String {
    format!(
        "{{\"kind\":\"sent\",\"n\":{n},\"pad\":\"{}\",\"v\":{version}}}",
        "x".repeat(300)
    )
}

/// The version a [`versioned_text`] names.
pub fn version_of(text: &str) -> u64 {
    let tail = text.rsplit("\"v\":").next().unwrap();
    tail.trim_end_matches('}').parse().unwrap()
}
