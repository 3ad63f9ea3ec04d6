//! Attack on the claims that now make their work inside (`under_claim`,
//! `once_per_message_id`): a template send and a free-form send naming their
//! `messageId` are dropped in place (a handler's timeout, not a spawned task's abort)
//! while the stand-in gateway holds the answer back. The retry must not wait for the
//! lease (the claim was released), must reuse the `messageId`, and the customer must get
//! the message once; a later retry returns the earlier outcome without a request. The
//! stand-in gateway is on loopback and the store is sled on disk.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use lipachat_api::{MessageId, TemplateMessage, TextMessage};
use lipachat_policy::{
    Messenger, PolicyConfig, PolicyError, SendOutcome, SendRequest, TemplateOutcome,
    TemplateRequest,
};
use lipachat_session::{Conversation, ManualClock, Sessions, SledStore};
use lipachat_testkit::StandInGateway;

fn chat() -> Conversation {
    Conversation::parse("254110090747", "254712345690").unwrap()
}

async fn open_messenger(dir: &tempfile::TempDir) -> (StandInGateway, Messenger<SledStore>) {
    let clock = ManualClock::at("2026-11-23T10:00:00Z".parse().unwrap());
    let gateway = common::clocked_gateway(&clock).await;
    let sessions =
        Sessions::new(SledStore::open(dir.path().join("db")).unwrap()).with_clock(clock.clone());
    // The catalog is not checked: the stand-in holds none for this business.
    let config = PolicyConfig::default().catalog(lipachat_policy::CatalogSettings::disabled());
    let messenger = Messenger::new(sessions, common::quick_client(&gateway), config);
    gateway.customer_writes(chat().business, chat().phone().unwrap());
    messenger
        .on_inbound(chat(), messenger.sessions().now())
        .await
        .unwrap();
    (gateway, messenger)
}

/// Runs `call` until it is no longer refused as in progress; fails if that takes a
/// second (the lease is two minutes, so only a released claim is free that soon).
async fn retried<T, F: Future<Output = Result<T, PolicyError>>>(mut call: impl FnMut() -> F) -> T {
    let started = Instant::now();
    loop {
        match call().await {
            Err(PolicyError::SendInProgress { .. }) => {
                assert!(
                    started.elapsed() < Duration::from_secs(1),
                    "the dropped call's claim was not released"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => return other.unwrap(),
        }
    }
}

/// Waits until the stand-in has received more than `before` requests.
async fn until_requests_exceed(gateway: &StandInGateway, before: usize) {
    let started = Instant::now();
    while gateway.request_count() <= before {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no request came"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Polls `send` until the stand-in has its request (more than `before`), then drops it
/// in place, as a handler's timeout does; it must not have finished.
async fn dropped_at_the_gateway<T: std::fmt::Debug>(
    gateway: &StandInGateway,
    before: usize,
    send: impl Future<Output = T>,
) {
    tokio::select! {
        done = send => panic!("the stalled send finished: {done:?}"),
        () = until_requests_exceed(gateway, before) => {}
    }
}

#[tokio::test]
async fn a_template_send_dropped_mid_flight_frees_its_message_id() {
    let dir = tempfile::tempdir().unwrap();
    let (gateway, messenger) = open_messenger(&dir).await;
    let id = MessageId::new();
    let request =
        TemplateRequest::new(chat(), TemplateMessage::new("welcome", "en").unwrap()).message_id(id);
    gateway.stall_next(1, Duration::from_secs(3));
    let before = gateway.request_count();
    dropped_at_the_gateway(&gateway, before, messenger.send_template(request.clone())).await;
    let outcome = retried(|| messenger.send_template(request.clone())).await;
    assert!(matches!(outcome, TemplateOutcome::Sent(_)), "{outcome:?}");
    assert_eq!(
        gateway.delivered_to(chat().phone().unwrap()).len(),
        1,
        "delivered once"
    );
    let requests = gateway.request_count();
    let again = messenger.send_template(request).await.unwrap();
    assert!(matches!(again, TemplateOutcome::Duplicate(_)), "{again:?}");
    assert_eq!(
        gateway.request_count(),
        requests,
        "a duplicate sends nothing"
    );
}

#[tokio::test]
async fn a_free_form_send_dropped_before_and_during_its_request_frees_its_message_id() {
    let dir = tempfile::tempdir().unwrap();
    let (gateway, messenger) = open_messenger(&dir).await;
    let id = MessageId::new();
    let request =
        SendRequest::text(chat(), TextMessage::new("Your parcel is here").unwrap()).message_id(id);
    // Dropped after one poll, before any request.
    let before = gateway.request_count();
    {
        let mut send = std::pin::pin!(messenger.send(request.clone()));
        let polled =
            std::future::poll_fn(|cx| std::task::Poll::Ready(send.as_mut().poll(cx))).await;
        assert!(polled.is_pending());
    }
    // The dropped claim is released by a task its drop spawned: let it run.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(gateway.request_count(), before, "one poll sent nothing");
    gateway.stall_next(1, Duration::from_secs(3));
    dropped_at_the_gateway(&gateway, before, messenger.send(request.clone())).await;
    let outcome = retried(|| messenger.send(request.clone())).await;
    let SendOutcome::Sent { message_id, .. } = outcome else {
        panic!("expected Sent, got {outcome:?}")
    };
    assert_eq!(message_id, id, "the retry reuses the messageId");
    assert_eq!(gateway.free_form_delivered_to(chat().phone().unwrap()), 1);
    let requests = gateway.request_count();
    let again = messenger.send(request).await.unwrap();
    assert!(matches!(again, SendOutcome::Duplicate(_)), "{again:?}");
    assert_eq!(
        gateway.request_count(),
        requests,
        "a duplicate sends nothing"
    );
}
