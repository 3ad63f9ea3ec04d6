//! What several test binaries share: the conversation, card and invitation most scenarios
//! use, and a client for the stand-in gateway. (A log sink is
//! `lipachat_testkit::capture_log`.)

#![allow(dead_code)] // Each test binary uses a different part.

use std::time::Duration;

use lipachat_api::{ApiKey, Client, ContactMessage, ContactPhone, RetryPolicy, TemplateMessage};
use lipachat_session::{Conversation, ManualClock, PhoneNumber};
use lipachat_testkit::StandInGateway;

/// The conversation most scenarios use: business 254110090747, customer 254712345678.
pub fn chat() -> Conversation {
    Conversation::parse("254110090747", "254712345678").expect("a valid conversation")
}

/// That conversation's customer (the stand-in gateway knows customers by number).
pub fn customer() -> PhoneNumber {
    chat().phone().expect("the customer has a number")
}

/// A contact card: "Support desk", one work number.
pub fn card() -> ContactMessage {
    ContactMessage::new(
        "Support desk",
        vec![ContactPhone::new(
            "254700000001".parse().expect("a valid number"),
            "Work",
        )],
    )
    .expect("a valid card")
}

/// The invitation template a queue or reroute policy sends.
pub fn invite() -> TemplateMessage {
    TemplateMessage::new("contact_share", "en").expect("a valid template")
}

/// A client for `gateway` that retries once, quickly.
pub fn quick_client(gateway: &StandInGateway) -> Client {
    Client::builder(ApiKey::new(gateway.api_key()).expect("the stand-in's key is valid"))
        .base_url(&gateway.base_url())
        .retry(RetryPolicy {
            max_retries: 1,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(10),
        })
        .build()
        .expect("a client for the stand-in")
}

/// A stand-in gateway on loopback that tells time by `clock`.
pub async fn clocked_gateway(clock: &ManualClock) -> StandInGateway {
    StandInGateway::builder()
        .clock(clock.clone())
        .start()
        .await
        .expect("the stand-in gateway starts")
}

pub mod consent_bot;
