//! The stand-in's own 24-hour windows (131047 refusals, both ways) and `messageId`
//! deduplication.

mod fixture;

use chrono::{DateTime, TimeDelta, Utc};
use fixture::{
    BUSINESS, CUSTOMER, OTHER_CUSTOMER, assert_success, business, contact, contact_to, customer,
    number, send, template, text,
};
use lipachat_session::{Clock, ManualClock};
use lipachat_testkit::{MessageKind, RequestOutcome, StandInGateway, WindowRefusal};
use serde_json::{Value, json};

fn start_time() -> DateTime<Utc> {
    "2026-11-23T10:00:00Z".parse().expect("a date")
}

async fn gateway_with(clock: &ManualClock, refusal: WindowRefusal) -> StandInGateway {
    StandInGateway::builder()
        .clock(clock.clone())
        .refusal(refusal)
        .start()
        .await
        .expect("the stand-in starts")
}

/// Asserts `answer` is the immediate 131047 refusal, exactly.
fn assert_re_engagement(answer: &fixture::Answer, now: DateTime<Utc>) {
    assert_eq!(answer.status, 200);
    let expected = json!({
        "timestamp": now.format("%Y-%m-%dT%H:%M:%S%.9f").to_string(),
        "data": null,
        "status": "error",
        "message": "(#131047) Re-engagement message: More than 24 hours have passed since the recipient last replied to the sender number.",
        "errors": [{"code": 131047, "title": "Re-engagement message"}]
    });
    assert_eq!(answer.body, expected);
}

#[tokio::test]
async fn a_customer_who_never_wrote_gets_no_free_form_message() {
    let clock = ManualClock::at(start_time());
    let gateway = gateway_with(&clock, WindowRefusal::Immediate).await;
    assert_re_engagement(
        &send(&gateway, MessageKind::Contact, &contact("c-1")).await,
        clock.now(),
    );
    assert_re_engagement(
        &send(&gateway, MessageKind::Text, &text("t-1", "hi")).await,
        clock.now(),
    );
    assert!(gateway.delivered().is_empty());
    let refusals = gateway.refusals();
    assert_eq!(refusals.len(), 2);
    assert_eq!(refusals[0].kind, MessageKind::Contact);
    assert_eq!(refusals[0].message_id, "c-1");
    assert_eq!(
        (refusals[0].business, refusals[0].customer),
        (business(), customer())
    );
    assert_eq!(refusals[0].mode, WindowRefusal::Immediate);
    assert_eq!(refusals[0].wa_id, None);
    assert_eq!(refusals[0].at, start_time());
    assert_eq!(refusals[1].kind, MessageKind::Text);
    assert_eq!(
        gateway.requests()[0].outcome,
        RequestOutcome::RefusedOutsideWindow
    );
    assert!(gateway.take_status_callbacks().is_empty());
}

#[tokio::test]
async fn the_window_opens_when_the_customer_writes_and_closes_at_exactly_24_hours() {
    let clock = ManualClock::at(start_time());
    let gateway = gateway_with(&clock, WindowRefusal::Immediate).await;
    gateway.customer_writes(business(), customer());
    assert!(gateway.window_state(business(), customer()).is_open());
    assert_success(
        &send(&gateway, MessageKind::Contact, &contact("open-1")).await,
        "open-1",
    );

    clock.advance(TimeDelta::hours(24) - TimeDelta::milliseconds(1));
    assert_success(
        &send(&gateway, MessageKind::Contact, &contact("open-2")).await,
        "open-2",
    );

    clock.advance(TimeDelta::milliseconds(1));
    assert!(!gateway.window_state(business(), customer()).is_open());
    let answer = send(&gateway, MessageKind::Contact, &contact("closed-1")).await;
    assert_re_engagement(&answer, start_time() + TimeDelta::hours(24));

    let ids: Vec<String> = gateway
        .delivered()
        .into_iter()
        .map(|m| m.message_id)
        .collect();
    assert_eq!(ids, ["open-1", "open-2"]);
    assert_eq!(
        gateway.delivered()[1].delivered_at,
        start_time() + TimeDelta::hours(24) - TimeDelta::milliseconds(1)
    );
    assert_eq!(gateway.refusal_count(), 1);

    // The customer replies: the window opens again, and a retry of the refused message
    // (same messageId) now goes through.
    gateway.customer_writes(business(), customer());
    assert_success(
        &send(&gateway, MessageKind::Contact, &contact("closed-1")).await,
        "closed-1",
    );
    assert_eq!(gateway.delivered_count(), 3);
}

#[tokio::test]
async fn customer_writes_at_is_measured_from_the_time_given() {
    let clock = ManualClock::at(start_time());
    let gateway = gateway_with(&clock, WindowRefusal::Immediate).await;
    gateway.customer_writes_at(business(), customer(), start_time() - TimeDelta::hours(23));
    assert_success(
        &send(&gateway, MessageKind::Text, &text("a", "hi")).await,
        "a",
    );
    clock.advance(TimeDelta::hours(1));
    assert_re_engagement(
        &send(&gateway, MessageKind::Text, &text("b", "hi")).await,
        clock.now(),
    );
    // An older inbound message reported late does not reopen or shorten anything.
    gateway.customer_writes_at(business(), customer(), start_time() - TimeDelta::hours(30));
    assert!(!gateway.window_state(business(), customer()).is_open());
}

#[tokio::test]
async fn a_template_goes_out_whatever_the_window_and_does_not_open_it() {
    let clock = ManualClock::at(start_time());
    let gateway = gateway_with(&clock, WindowRefusal::Immediate).await;
    assert_success(
        &send(&gateway, MessageKind::Template, &template("tpl-1")).await,
        "tpl-1",
    );
    assert_re_engagement(
        &send(&gateway, MessageKind::Contact, &contact("c-1")).await,
        clock.now(),
    );

    gateway.customer_writes(business(), customer());
    clock.advance(TimeDelta::hours(25));
    assert_success(
        &send(&gateway, MessageKind::Template, &template("tpl-2")).await,
        "tpl-2",
    );
    let kinds: Vec<MessageKind> = gateway.delivered().iter().map(|m| m.kind).collect();
    assert_eq!(kinds, [MessageKind::Template, MessageKind::Template]);
}

#[tokio::test]
async fn windows_belong_to_the_business_and_customer_pair() {
    let clock = ManualClock::at(start_time());
    let gateway = gateway_with(&clock, WindowRefusal::Immediate).await;
    let other_business = "254110090748";
    gateway.customer_writes(number(other_business), customer());
    gateway.customer_writes(business(), number(OTHER_CUSTOMER));

    // Same customer, other business number: closed.
    assert_re_engagement(
        &send(&gateway, MessageKind::Contact, &contact("pair-1")).await,
        clock.now(),
    );
    // Same business, other customer: open.
    let answer = send(
        &gateway,
        MessageKind::Contact,
        &contact_to("pair-2", OTHER_CUSTOMER),
    )
    .await;
    assert_success(&answer, "pair-2");
    let mut from_other = contact("pair-3");
    from_other["from"] = json!(other_business);
    assert_success(
        &send(&gateway, MessageKind::Contact, &from_other).await,
        "pair-3",
    );

    assert!(
        gateway
            .delivered_to(customer())
            .iter()
            .all(|m| m.business.digits() == other_business)
    );
    assert_eq!(gateway.delivered_to(customer()).len(), 1);
    assert_eq!(gateway.delivered_to(number(OTHER_CUSTOMER)).len(), 1);
}

#[tokio::test]
async fn status_callback_mode_accepts_then_fails_with_131047() {
    let clock = ManualClock::at(start_time());
    let gateway = gateway_with(&clock, WindowRefusal::StatusCallback).await;
    let answer = send(&gateway, MessageKind::Contact, &contact("late-1")).await;
    let wa_id = assert_success(&answer, "late-1");

    assert!(gateway.delivered().is_empty());
    let refusals = gateway.refusals();
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0].mode, WindowRefusal::StatusCallback);
    assert_eq!(refusals[0].wa_id.as_deref(), Some(wa_id.as_str()));
    assert_eq!(
        gateway.requests()[0].outcome,
        RequestOutcome::FailedOutsideWindow
    );

    let callbacks = gateway.take_status_callbacks();
    assert_eq!(callbacks.len(), 1);
    let value = &callbacks[0]["entry"][0]["changes"][0]["value"];
    assert_eq!(value["metadata"]["display_phone_number"], BUSINESS);
    let status = &value["statuses"][0];
    assert_eq!(status["id"], wa_id.as_str());
    assert_eq!(status["status"], "failed");
    assert_eq!(status["recipient_id"], CUSTOMER);
    assert_eq!(status["timestamp"], start_time().timestamp().to_string());
    assert_eq!(status["errors"][0]["code"], 131047);
    assert!(
        gateway.take_status_callbacks().is_empty(),
        "taking drains them"
    );

    // A retry of the same messageId gets the same answer and no second callback.
    let again = send(&gateway, MessageKind::Contact, &contact("late-1")).await;
    assert_eq!(again.body, answer.body);
    assert!(gateway.take_status_callbacks().is_empty());

    // Inside the window the mode changes nothing.
    gateway.customer_writes(business(), customer());
    assert_success(
        &send(&gateway, MessageKind::Contact, &contact("ok-1")).await,
        "ok-1",
    );
    assert!(gateway.take_status_callbacks().is_empty());
    assert_eq!(gateway.delivered_count(), 1);
}

#[tokio::test]
async fn the_same_message_id_twice_delivers_once_with_the_same_answer() {
    let clock = ManualClock::at(start_time());
    let gateway = gateway_with(&clock, WindowRefusal::Immediate).await;
    gateway.customer_writes(business(), customer());
    let first = send(&gateway, MessageKind::Contact, &contact("dup-1")).await;
    let wa_id = assert_success(&first, "dup-1");
    clock.advance(TimeDelta::seconds(3));
    let second = send(&gateway, MessageKind::Contact, &contact("dup-1")).await;
    // The very same answer: same waId, same timestamp.
    assert_eq!(second.status, 200);
    assert_eq!(second.body, first.body);

    let delivered = gateway.delivered();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].wa_id, wa_id);
    let outcomes: Vec<RequestOutcome> = gateway.requests().iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [RequestOutcome::Delivered, RequestOutcome::Duplicate]
    );

    // A different messageId is a different message, with another waId.
    let third = send(&gateway, MessageKind::Contact, &contact("dup-2")).await;
    assert_ne!(assert_success(&third, "dup-2"), wa_id);
    assert_eq!(gateway.delivered_count(), 2);
}

#[tokio::test]
async fn a_duplicate_is_answered_even_after_the_window_closed() {
    let clock = ManualClock::at(start_time());
    let gateway = gateway_with(&clock, WindowRefusal::Immediate).await;
    gateway.customer_writes(business(), customer());
    let first = send(&gateway, MessageKind::Text, &text("slow-retry", "hi")).await;
    assert_success(&first, "slow-retry");
    clock.advance(TimeDelta::hours(30));
    let retry = send(&gateway, MessageKind::Text, &text("slow-retry", "hi")).await;
    assert_eq!(retry.body, first.body);
    assert_eq!(gateway.refusal_count(), 0);
    assert_eq!(gateway.delivered_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_of_one_message_id_deliver_once() {
    let gateway = StandInGateway::start().await.expect("the stand-in starts");
    gateway.customer_writes(business(), customer());
    let client = reqwest::Client::new();
    let url = fixture::url(&gateway, MessageKind::Contact);
    let sends = (0..32).map(|_| {
        client
            .post(&url)
            .header("apiKey", gateway.api_key())
            .json(&contact("race"))
            .send()
    });
    let mut wa_ids = Vec::new();
    for response in futures_join(sends).await {
        let answer = fixture::answer(response.expect("an answer")).await;
        wa_ids.push(assert_success(&answer, "race"));
    }
    wa_ids.dedup();
    assert_eq!(wa_ids.len(), 1);
    assert_eq!(gateway.delivered_count(), 1);
    assert_eq!(gateway.request_count(), 32);
}

/// Runs the futures concurrently on spawned tasks and collects their outputs in order.
async fn futures_join<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        outputs.push(handle.await.expect("the task finishes"));
    }
    outputs
}

#[tokio::test]
async fn forgetting_history_keeps_the_windows() {
    let clock = ManualClock::at(start_time());
    let gateway = gateway_with(&clock, WindowRefusal::Immediate).await;
    gateway.customer_writes(business(), customer());
    let first = send(&gateway, MessageKind::Contact, &contact("kept-once")).await;
    let first_wa_id = assert_success(&first, "kept-once");
    let _ = send(
        &gateway,
        MessageKind::Contact,
        &contact_to("refused", OTHER_CUSTOMER),
    )
    .await;
    assert_eq!(
        (
            gateway.request_count(),
            gateway.delivered_count(),
            gateway.refusal_count()
        ),
        (2, 1, 1)
    );

    gateway.forget_history();
    assert_eq!(
        (
            gateway.request_count(),
            gateway.delivered_count(),
            gateway.refusal_count()
        ),
        (0, 0, 0)
    );
    // The window is still open, and the old messageId is no longer deduplicated.
    let again = send(&gateway, MessageKind::Contact, &contact("kept-once")).await;
    let again_wa_id = assert_success(&again, "kept-once");
    assert_eq!(gateway.delivered_count(), 1);
    assert_ne!(again_wa_id, first_wa_id);
}

#[tokio::test]
async fn a_custom_window_length_is_honoured() {
    let clock = ManualClock::at(start_time());
    let gateway = StandInGateway::builder()
        .clock(clock.clone())
        .window(TimeDelta::minutes(10))
        .start()
        .await
        .expect("the stand-in starts");
    gateway.customer_writes(business(), customer());
    clock.advance(TimeDelta::minutes(10));
    let answer = send(&gateway, MessageKind::Contact, &contact("short")).await;
    assert_eq!(answer.body["status"], "error");
    assert_eq!(answer.body["errors"][0]["code"], 131047);
    assert_eq!(answer.body["data"], Value::Null);

    let bad = StandInGateway::builder()
        .window(TimeDelta::zero())
        .start()
        .await;
    assert_eq!(
        bad.map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::InvalidInput)
    );
}
