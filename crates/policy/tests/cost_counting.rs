//! How sends are counted for cost and limits: the monthly free tier of service messages
//! counts each message once by its whole `messageId`, so many ids made in one millisecond
//! (UUID v7: the same leading timestamp) are each counted. A sled store on disk.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_api::MessageId;
use lipachat_policy::consent::PricingConfig;
use lipachat_policy::cost::FreeBecause;
use lipachat_policy::messaging_limit::price_send;
use lipachat_session::{Conversation, PricingCategory, SledStore};

/// `n` ids as [`MessageId::new`] makes them, all in the millisecond `at`.
fn ids_in_one_millisecond(n: usize, at: DateTime<Utc>) -> Vec<MessageId> {
    let millis = u64::try_from(at.timestamp_millis()).unwrap().to_be_bytes();
    (0..n)
        .map(|_| {
            let mut bytes = *MessageId::new().as_bytes();
            bytes[..6].copy_from_slice(&millis[2..]);
            MessageId::from_bytes(bytes)
        })
        .collect()
}

#[tokio::test]
async fn the_service_free_tier_counts_every_message_of_one_millisecond() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    let tier = 600;
    let pricing = PricingConfig {
        service_free_per_month: Some(tier),
        ..PricingConfig::default()
    };
    let conversation = Conversation::parse("254110090747", "254712345678").unwrap();
    // After 1 October 2026, when service messages past the free tier are billed.
    let at: DateTime<Utc> = "2026-11-23T10:00:00.123Z".parse().unwrap();
    let ids = ids_in_one_millisecond(usize::try_from(tier).unwrap() + 1, at);
    let mut free = 0;
    for id in &ids {
        let priced = price_send(
            &store,
            &pricing,
            conversation,
            PricingCategory::Service,
            true,
            at,
            Some(*id),
        )
        .await
        .unwrap();
        if priced.free {
            free += 1;
        } else {
            assert_eq!(priced.because, FreeBecause::Billed);
        }
    }
    assert_eq!(
        free, tier,
        "the first {tier} messages are free, the next is billed"
    );
    // A message counted again (a retry under its id) does not use up the tier twice.
    let again = price_send(
        &store,
        &pricing,
        conversation,
        PricingCategory::Service,
        true,
        at + TimeDelta::milliseconds(1),
        Some(ids[0]),
    )
    .await
    .unwrap();
    assert!(again.free, "{again:?}");
}
