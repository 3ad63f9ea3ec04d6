//! How sends are counted for cost and limits: the monthly free tier of service messages
//! counts each message once by its whole `messageId`, so many ids made in one millisecond
//! (UUID v7: the same leading timestamp) are each counted; a template is counted and
//! priced as outside the window when the window may close before it is sent, decided
//! after the catalog check (the stand-in gateway holds the catalog's answer back while
//! the clock crosses the boundary). A sled store on disk, the stand-in gateway on
//! loopback.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_api::{MessageId, TemplateMessage};
use lipachat_policy::consent::{MessagingLimits, MessagingTier, PricingConfig};
use lipachat_policy::cost::FreeBecause;
use lipachat_policy::messaging_limit::price_send;
use lipachat_policy::{Messenger, PolicyConfig, TemplateOutcome, TemplateRequest};
use lipachat_session::{
    Clock, ConsentStore, Conversation, ManualClock, PricingCategory, Sessions, SledStore,
    WindowRule,
};
use lipachat_testkit::template_entry;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_whose_window_closes_during_the_catalog_check_counts_as_outside() {
    // Before 1 October 2026: a utility template is free inside the window, billed outside.
    let clock = ManualClock::at("2026-09-01T10:00:00Z".parse().unwrap());
    let gateway = common::clocked_gateway(&clock).await;
    let conversation = Conversation::parse("254110090747", "254712345678").unwrap();
    gateway.set_templates(
        conversation.business,
        vec![template_entry(
            "order_update",
            "en",
            "UTILITY",
            "APPROVED",
            None,
            "Your order shipped",
        )],
    );
    let dir = tempfile::tempdir().unwrap();
    let sessions =
        Sessions::new(SledStore::open(dir.path().join("db")).unwrap()).with_clock(clock.clone());
    let limits = MessagingLimits::default()
        .portfolio("acme", MessagingTier::Tier250, [conversation.business])
        .unwrap();
    let messenger = Messenger::new(
        sessions,
        common::quick_client(&gateway),
        PolicyConfig::default().messaging_limits(limits),
    );
    messenger
        .sessions()
        .record_inbound(conversation, clock.now())
        .await
        .unwrap();
    // A second before the margin would refuse a free-form send: open when the call starts.
    let margin = WindowRule::DEFAULT_MARGIN;
    clock.advance(TimeDelta::hours(24) - margin - TimeDelta::seconds(1));
    assert!(
        messenger
            .sessions()
            .decide(conversation)
            .await
            .unwrap()
            .is_allowed()
    );
    // The catalog answers late; meanwhile the clock passes the margin.
    gateway.stall_template_calls_next(1, Duration::from_millis(600));
    let template = TemplateMessage::new("order_update", "en").unwrap();
    let send = messenger.send_template(TemplateRequest::new(conversation, template));
    let cross = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        clock.advance(TimeDelta::seconds(5));
    };
    let (outcome, ()) = tokio::join!(send, cross);
    let TemplateOutcome::Sent(sent) = outcome.unwrap() else {
        panic!("the template goes whatever the window")
    };
    assert_eq!(sent.pricing.category, PricingCategory::Utility);
    assert!(
        !sent.pricing.free,
        "priced as outside the window: {:?}",
        sent.pricing
    );
    assert_eq!(sent.pricing.because, FreeBecause::Billed);
    assert_eq!(
        messenger
            .sessions()
            .store()
            .reached("acme", clock.now(), MessagingLimits::SPAN)
            .await
            .unwrap(),
        1,
        "counted against the messaging limit"
    );
}
