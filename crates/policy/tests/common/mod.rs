//! What several test binaries share: a client for the stand-in gateway. (A log sink is
//! `lipachat_testkit::capture_log`.)

#![allow(dead_code)] // Each test binary uses a different part.

use std::time::Duration;

use lipachat_api::{ApiKey, Client, RetryPolicy};
use lipachat_session::ManualClock;
use lipachat_testkit::StandInGateway;

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
