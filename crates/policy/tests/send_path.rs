//! The send path against the stand-in gateway on loopback, with a sled store on disk and
//! a manual clock shared by both.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_api::{
    ApiKey, Client, ContactMessage, ContactPhone, MessageId, RetryPolicy, TemplateMessage,
    TextMessage,
};
use lipachat_policy::{
    DeliveryStop, Messenger, OnClosed, OutcomeKind, PolicyConfig, PolicyError, Reconciliation,
    SendOutcome, SendRequest,
};
use lipachat_session::{
    Clock, Conversation, Customer, IdentityStore, ManualClock, OutboxStore, RefusalReason,
    Sessions, SledStore, WindowState, WindowStore,
};
use lipachat_testkit::{MessageKind, StandInGateway, WindowRefusal};

struct Fixture {
    gateway: StandInGateway,
    clock: ManualClock,
    messenger: Messenger<SledStore>,
    chat: Conversation,
    _dir: tempfile::TempDir,
}

fn start_time() -> DateTime<Utc> {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

fn invite() -> TemplateMessage {
    TemplateMessage::new("contact_share", "en").unwrap()
}

fn card(name: &str) -> ContactMessage {
    ContactMessage::new(
        name,
        vec![ContactPhone::new("254700000001".parse().unwrap(), "Work")],
    )
    .unwrap()
}

fn client(gateway: &StandInGateway) -> Client {
    Client::builder(ApiKey::new(gateway.api_key()).unwrap())
        .base_url(&gateway.base_url())
        .retry(RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        })
        .request_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

fn messenger_at(
    path: &Path,
    gateway: &StandInGateway,
    clock: &ManualClock,
    config: PolicyConfig,
) -> Messenger<SledStore> {
    let sessions = Sessions::new(SledStore::open(path).unwrap()).with_clock(clock.clone());
    Messenger::new(sessions, client(gateway), config)
}

async fn fixture_with(config: PolicyConfig, refusal: WindowRefusal) -> Fixture {
    let clock = ManualClock::at(start_time());
    let gateway = StandInGateway::builder()
        .clock(clock.clone())
        .refusal(refusal)
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let messenger = messenger_at(&dir.path().join("db"), &gateway, &clock, config);
    Fixture {
        gateway,
        clock,
        messenger,
        chat: Conversation::parse("254110090747", "254712345678").unwrap(),
        _dir: dir,
    }
}

/// The stand-in gateway on loopback, on the test's clock.
async fn gateway_on(clock: &ManualClock) -> StandInGateway {
    StandInGateway::builder()
        .clock(clock.clone())
        .start()
        .await
        .unwrap()
}

async fn fixture(config: PolicyConfig) -> Fixture {
    fixture_with(config, WindowRefusal::Immediate).await
}

impl Fixture {
    /// The customer writes: both the gateway and our store learn of it.
    async fn customer_writes(&self) -> lipachat_policy::InboundReport {
        self.gateway
            .customer_writes(self.chat.business, self.chat.phone().unwrap());
        self.messenger
            .on_inbound(self.chat, self.clock.now())
            .await
            .unwrap()
    }

    fn free_form_delivered(&self) -> usize {
        self.gateway
            .delivered()
            .iter()
            .filter(|m| m.kind.is_free_form())
            .count()
    }

    async fn queued_len(&self) -> usize {
        let store = self.messenger.sessions().store();
        store.queued(self.chat).await.unwrap().len()
    }

    fn templates_delivered(&self) -> usize {
        self.gateway
            .delivered()
            .iter()
            .filter(|m| m.kind == MessageKind::Template)
            .count()
    }
}

#[tokio::test]
async fn open_window_sends_the_card() {
    let f = fixture(PolicyConfig::default()).await;
    f.customer_writes().await;
    let outcome = f
        .messenger
        .send_contact(f.chat, card("Support"))
        .await
        .unwrap();
    let SendOutcome::Sent {
        message_id,
        receipt,
        expires_at,
        ..
    } = outcome
    else {
        panic!("expected Sent, got {outcome:?}");
    };
    assert_eq!(expires_at, start_time() + TimeDelta::hours(24));
    let delivered = f.gateway.delivered();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].message_id, message_id.to_string());
    assert_eq!(Some(delivered[0].wa_id.clone()), receipt.wa_id);
    assert_eq!(delivered[0].body["name"]["formattedName"], "Support");
}

#[tokio::test]
async fn reject_reports_reason_and_when_it_closed() {
    let f = fixture(PolicyConfig::default()).await;
    let never = f.messenger.send_contact(f.chat, card("A")).await.unwrap();
    assert!(matches!(
        never,
        SendOutcome::Rejected {
            reason: RefusalReason::NeverMessaged,
            state: WindowState::Never,
            ..
        }
    ));
    f.customer_writes().await;
    f.clock.advance(TimeDelta::hours(25));
    let outcome = f.messenger.send_contact(f.chat, card("A")).await.unwrap();
    match outcome {
        SendOutcome::Rejected {
            reason: RefusalReason::Expired,
            state: WindowState::Closed { closed_since, .. },
            refused_by_gateway: false,
            ..
        } => {
            assert_eq!(closed_since, start_time() + TimeDelta::hours(24));
        }
        other => panic!("expected Rejected(expired), got {other:?}"),
    }
    assert_eq!(f.gateway.request_count(), 0, "nothing reached the gateway");
}

#[tokio::test]
async fn margin_refuses_a_send_just_before_the_window_closes() {
    let f = fixture(PolicyConfig::default()).await;
    f.customer_writes().await;
    f.clock
        .advance(TimeDelta::hours(24) - TimeDelta::seconds(59));
    let outcome = f.messenger.send_contact(f.chat, card("A")).await.unwrap();
    assert!(
        matches!(
            outcome,
            SendOutcome::Rejected {
                reason: RefusalReason::ClosingWithinMargin,
                state: WindowState::Open { .. },
                ..
            }
        ),
        "{outcome:?}"
    );
    f.clock.advance(TimeDelta::seconds(-2));
    let outcome = f.messenger.send_contact(f.chat, card("A")).await.unwrap();
    assert_eq!(outcome.name(), "sent");
}

#[tokio::test]
async fn five_sends_to_a_closed_window_send_one_template_and_queue_five() {
    let f = fixture(PolicyConfig::default().on_closed(OnClosed::Queue(invite()))).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let outcome = f
            .messenger
            .send_contact(f.chat, card(&format!("Card {i}")))
            .await
            .unwrap();
        let SendOutcome::Queued {
            message_id,
            template,
            reason,
            ..
        } = outcome
        else {
            panic!("expected Queued, got {outcome:?}");
        };
        assert_eq!(reason, RefusalReason::NeverMessaged);
        assert_eq!(template.is_some(), i == 0, "only the first send invites");
        ids.push(message_id);
    }
    assert_eq!(f.templates_delivered(), 1);
    assert_eq!(f.free_form_delivered(), 0);

    let report = f.customer_writes().await;
    assert!(report.recorded.opened);
    let delivered: Vec<MessageId> = report
        .delivery
        .delivered
        .iter()
        .map(|d| d.message_id)
        .collect();
    assert_eq!(
        delivered, ids,
        "delivered in order, with the ids given at queue time"
    );
    assert_eq!(report.delivery.remaining, 0);
    let names: Vec<String> = f
        .gateway
        .delivered()
        .iter()
        .filter(|m| m.kind == MessageKind::Contact)
        .map(|m| {
            m.body["name"]["formattedName"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        (0..5).map(|i| format!("Card {i}")).collect::<Vec<_>>()
    );
    // Delivering again sends nothing more.
    let again = f.messenger.deliver(f.chat).await.unwrap();
    assert!(again.delivered.is_empty());
    assert_eq!(f.free_form_delivered(), 5);
}

#[tokio::test]
async fn invitation_is_resent_only_after_the_cooldown() {
    let f = fixture(PolicyConfig::default().on_closed(OnClosed::Template(invite()))).await;
    let first = f.messenger.send_contact(f.chat, card("A")).await.unwrap();
    assert!(matches!(
        first,
        SendOutcome::Rerouted {
            template: Some(_),
            ..
        }
    ));
    f.clock.advance(TimeDelta::hours(23));
    let second = f.messenger.send_contact(f.chat, card("B")).await.unwrap();
    assert!(
        matches!(second, SendOutcome::Rerouted { template: None, .. }),
        "{second:?}"
    );
    f.clock.advance(TimeDelta::hours(1));
    let third = f.messenger.send_contact(f.chat, card("C")).await.unwrap();
    assert!(
        matches!(
            third,
            SendOutcome::Rerouted {
                template: Some(_),
                ..
            }
        ),
        "{third:?}"
    );
    assert_eq!(f.templates_delivered(), 2);
    assert_eq!(f.free_form_delivered(), 0);
}

#[tokio::test]
async fn a_reply_ends_the_invitation_so_the_next_closed_window_invites_again() {
    let f = fixture(PolicyConfig::default().on_closed(OnClosed::Queue(invite()))).await;
    f.messenger.send_contact(f.chat, card("A")).await.unwrap();
    f.clock.advance(TimeDelta::hours(1));
    f.customer_writes().await;
    f.clock.advance(TimeDelta::hours(25));
    let outcome = f.messenger.send_contact(f.chat, card("B")).await.unwrap();
    assert!(
        matches!(
            outcome,
            SendOutcome::Queued {
                template: Some(_),
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(f.templates_delivered(), 2);
}

#[tokio::test]
async fn per_send_placeholders_reach_the_template() {
    let template = invite().with_body_placeholders(["there"]).unwrap();
    let f = fixture(PolicyConfig::default().on_closed(OnClosed::Template(template))).await;
    let request = SendRequest::contact(f.chat, card("A")).placeholders(["Jane"]);
    f.messenger.send(request).await.unwrap();
    let sent = f.gateway.delivered();
    assert_eq!(
        sent[0].body["template"]["components"]["body"]["placeholders"],
        serde_json::json!(["Jane"])
    );
}

#[tokio::test]
async fn a_repeated_message_id_sends_nothing() {
    let f = fixture(PolicyConfig::default().on_closed(OnClosed::Queue(invite()))).await;
    f.customer_writes().await;
    let id = MessageId::new();
    let first = f.send_card_a(id).await.unwrap();
    assert_eq!(first.name(), "sent");
    let again = f.send_card_a(id).await.unwrap();
    let SendOutcome::Duplicate(previous) = again else {
        panic!("expected Duplicate, got {again:?}")
    };
    assert_eq!(previous.kind, OutcomeKind::Sent);
    assert_eq!(previous.message_id, id);
    assert_eq!(f.gateway.request_count(), 1);

    // The same for a queued message.
    f.clock.advance(TimeDelta::hours(30));
    let queued_id = MessageId::new();
    f.messenger
        .send(SendRequest::contact(f.chat, card("B")).message_id(queued_id))
        .await
        .unwrap();
    let again = f
        .messenger
        .send(SendRequest::contact(f.chat, card("B")).message_id(queued_id))
        .await
        .unwrap();
    assert!(
        matches!(again, SendOutcome::Duplicate(ref p) if p.kind == OutcomeKind::Queued),
        "{again:?}"
    );
    assert_eq!(
        f.messenger
            .sessions()
            .store()
            .queued(f.chat)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn retries_reuse_the_message_id_and_deliver_once() {
    let f = fixture(PolicyConfig::default()).await;
    f.customer_writes().await;
    f.gateway.fail_next(2, 500);
    let outcome = f.messenger.send_contact(f.chat, card("A")).await.unwrap();
    let SendOutcome::Sent {
        message_id,
        receipt,
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(receipt.attempts, 3);
    let ids: Vec<_> = f
        .gateway
        .requests()
        .iter()
        .map(|r| r.message_id().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec![message_id.to_string(); 3]);
    assert_eq!(f.gateway.delivered_count(), 1);
}

#[tokio::test]
async fn a_failed_send_is_an_error_naming_the_id_to_retry_with() {
    let f = fixture(PolicyConfig::default()).await;
    f.customer_writes().await;
    f.gateway.fail_next(4, 503); // the first try and all three retries
    let id = MessageId::new();
    let err = f.send_card_a(id).await.unwrap_err();
    match &err {
        PolicyError::Send { message_id, .. } => assert_eq!(*message_id, id),
        other => panic!("expected Send error, got {other:?}"),
    }
    assert!(err.retry_later_may_help());
    assert!(!err.to_string().contains(f.gateway.api_key()));
    // The caller retries with the same id once the gateway recovers: one delivery.
    let outcome = f.send_card_a(id).await.unwrap();
    assert_eq!(outcome.name(), "sent");
    assert_eq!(f.gateway.delivered_count(), 1);
}

#[tokio::test]
async fn a_rejection_says_whether_the_gateway_refused_a_send_that_left() {
    let f = fixture(PolicyConfig::default()).await;
    f.open_only_in_our_store().await;
    let id = MessageId::new();
    let outcome = f.send_card_a(id).await.unwrap();
    assert!(
        matches!(
            outcome,
            SendOutcome::Rejected {
                reason: RefusalReason::ClosedByGateway,
                refused_by_gateway: true,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(f.gateway.refusal_count(), 1, "the send did leave");
    // Now the closure is known: the next send is rejected before any request.
    let outcome = f.send_card_a(MessageId::new()).await.unwrap();
    assert!(
        matches!(
            outcome,
            SendOutcome::Rejected {
                reason: RefusalReason::ClosedByGateway,
                refused_by_gateway: false,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(f.gateway.refusal_count(), 1);
}

#[tokio::test]
async fn gateway_131047_records_the_closure_and_queues_with_a_fresh_id() {
    let f = fixture(PolicyConfig::default().on_closed(OnClosed::Queue(invite()))).await;
    f.open_only_in_our_store().await;
    let id = MessageId::new();
    let outcome = f.send_card_a(id).await.unwrap();
    let SendOutcome::Queued {
        message_id: queued_id,
        reason,
        template,
        ..
    } = outcome
    else {
        panic!("expected Queued, got {outcome:?}");
    };
    assert_eq!(reason, RefusalReason::ClosedByGateway);
    assert!(template.is_some());
    assert_ne!(queued_id, id, "a refused id is not reused");
    assert_eq!(
        f.messenger.sessions().state(f.chat).await.unwrap().name(),
        "closed"
    );
    assert_eq!(f.gateway.refusal_count(), 1);

    // A late webhook for an older message does not reopen the window...
    f.clock.advance(TimeDelta::seconds(10));
    let stale = f
        .messenger
        .on_inbound(f.chat, f.clock.now() - TimeDelta::minutes(5))
        .await
        .unwrap();
    assert!(stale.delivery.delivered.is_empty());
    // ...a real reply does, and the message goes out under its new id.
    let report = f.customer_writes().await;
    assert_eq!(report.delivery.delivered.len(), 1);
    assert_eq!(report.delivery.delivered[0].message_id, queued_id);
    assert_eq!(f.free_form_delivered(), 1);
}

#[tokio::test]
async fn status_callback_refusal_is_tied_back_by_wamid() {
    let f = fixture_with(
        PolicyConfig::default().on_closed(OnClosed::Queue(invite())),
        WindowRefusal::StatusCallback,
    )
    .await;
    f.messenger
        .sessions()
        .record_inbound_now(f.chat)
        .await
        .unwrap();
    let outcome = f.messenger.send_contact(f.chat, card("A")).await.unwrap();
    let SendOutcome::Sent {
        message_id,
        receipt,
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    let callbacks = f.gateway.take_status_callbacks();
    assert_eq!(callbacks.len(), 1);
    let status = &callbacks[0]["entry"][0]["changes"][0]["value"]["statuses"][0];
    let wa_id = status["id"].as_str().unwrap();
    assert_eq!(Some(wa_id.to_string()), receipt.wa_id);

    let reconciled = f
        .messenger
        .on_window_closed_report(f.chat, None, Some(wa_id), f.clock.now())
        .await
        .unwrap();
    let Reconciliation::Handled { outcome } = reconciled else {
        panic!("expected a requeue, got {reconciled:?}");
    };
    let SendOutcome::Queued {
        message_id: queued_id,
        ..
    } = *outcome
    else {
        panic!("expected a requeue, got {outcome:?}");
    };
    assert_ne!(queued_id, message_id);
    assert_eq!(
        f.messenger.sessions().state(f.chat).await.unwrap().name(),
        "closed"
    );
    // An inbound message at the closure's own millisecond does not reopen; a later one does.
    let same_instant = f.messenger.on_inbound(f.chat, f.clock.now()).await.unwrap();
    assert!(same_instant.delivery.delivered.is_empty());
    f.clock.advance(TimeDelta::minutes(1));
    let report = f.customer_writes().await;
    assert_eq!(report.delivery.delivered.len(), 1);
    assert_eq!(
        f.free_form_delivered(),
        1,
        "only the redelivery reached the customer"
    );
    // A retried handler with the original id now learns it was delivered, not sent twice.
    let again = f
        .messenger
        .send(SendRequest::contact(f.chat, card("A")).message_id(message_id))
        .await
        .unwrap();
    assert!(
        matches!(again, SendOutcome::Duplicate(ref p) if p.kind == OutcomeKind::Delivered),
        "{again:?}"
    );
}

#[tokio::test]
async fn outbox_limit_is_a_clear_error_and_sends_nothing() {
    let f = fixture(
        PolicyConfig::default()
            .on_closed(OnClosed::Queue(invite()))
            .outbox_limit(2),
    )
    .await;
    f.messenger.send_contact(f.chat, card("A")).await.unwrap();
    f.messenger.send_contact(f.chat, card("B")).await.unwrap();
    let requests = f.gateway.request_count();
    let err = f
        .messenger
        .send_contact(f.chat, card("C"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, PolicyError::OutboxFull { limit: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("full"));
    assert_eq!(f.gateway.request_count(), requests);
}

#[tokio::test]
async fn expired_messages_are_reported_not_dropped_silently() {
    let f = fixture(
        PolicyConfig::default()
            .on_closed(OnClosed::Queue(invite()))
            .outbox_ttl(TimeDelta::days(2)),
    )
    .await;
    f.messenger.send_contact(f.chat, card("Old")).await.unwrap();
    f.clock.advance(TimeDelta::days(1));
    f.messenger.send_contact(f.chat, card("New")).await.unwrap();
    f.clock.advance(TimeDelta::days(1));
    let report = f.customer_writes().await;
    assert_eq!(report.delivery.expired.len(), 1);
    let expired = &report.delivery.expired[0];
    assert_eq!(expired.queued_at, start_time());
    assert!(
        matches!(&expired.message, Some(lipachat_api::FreeFormMessage::Contact(c)) if c.formatted_name() == "Old")
    );
    assert_eq!(report.delivery.delivered.len(), 1);
    assert_eq!(f.free_form_delivered(), 1);
}

#[tokio::test]
async fn expire_queued_sweeps_every_outbox() {
    let f = fixture(
        PolicyConfig::default()
            .on_closed(OnClosed::Queue(invite()))
            .outbox_ttl(TimeDelta::hours(1)),
    )
    .await;
    let other = Conversation::parse("254110090747", "254799999999").unwrap();
    f.messenger.send_contact(f.chat, card("A")).await.unwrap();
    f.messenger.send_contact(other, card("B")).await.unwrap();
    assert!(f.messenger.expire_queued().await.unwrap().is_empty());
    f.clock.advance(TimeDelta::hours(1));
    let expired = f.messenger.expire_queued().await.unwrap();
    assert_eq!(expired.len(), 2);
    assert!(
        f.messenger
            .sessions()
            .store()
            .conversations_with_queued()
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn queued_messages_survive_a_restart() {
    let clock = ManualClock::at(start_time());
    let gateway = gateway_on(&clock).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let chat = Conversation::parse("254110090747", "254712345678").unwrap();
    let config = || PolicyConfig::default().on_closed(OnClosed::Queue(invite()));
    let queued_ids: Vec<MessageId> = {
        let messenger = messenger_at(&path, &gateway, &clock, config());
        let mut ids = Vec::new();
        for name in ["A", "B", "C"] {
            ids.push(
                messenger
                    .send_contact(chat, card(name))
                    .await
                    .unwrap()
                    .message_id(),
            );
        }
        ids
    };
    // Everything dropped; a new process opens the same store.
    let messenger = messenger_at(&path, &gateway, &clock, config());
    gateway.customer_writes(chat.business, chat.phone().unwrap());
    let report = messenger.on_inbound(chat, clock.now()).await.unwrap();
    let delivered: Vec<MessageId> = report
        .delivery
        .delivered
        .iter()
        .map(|d| d.message_id)
        .collect();
    assert_eq!(delivered, queued_ids);
    // And the invitation survived too: a new closed-window send does not invite again
    // before the cool-down... after the reply the invitation belongs to an old window.
    assert_eq!(
        gateway
            .delivered()
            .iter()
            .filter(|m| m.kind == MessageKind::Template)
            .count(),
        1
    );
}

#[tokio::test]
async fn a_transient_failure_during_delivery_keeps_the_message_queued() {
    let f = fixture(PolicyConfig::default().on_closed(OnClosed::Queue(invite()))).await;
    f.messenger.send_contact(f.chat, card("A")).await.unwrap();
    f.gateway
        .customer_writes(f.chat.business, f.chat.phone().unwrap());
    f.gateway.fail_next(4, 503); // the first try and all three retries
    let report = f.messenger.on_inbound(f.chat, f.clock.now()).await.unwrap();
    assert!(matches!(
        report.delivery.stopped,
        Some(DeliveryStop::SendFailed(_))
    ));
    assert_eq!(report.delivery.remaining, 1);
    let ids_tried: std::collections::HashSet<String> = f
        .gateway
        .requests()
        .iter()
        .filter(|r| r.kind == Some(MessageKind::Contact))
        .map(|r| r.message_id().unwrap().to_string())
        .collect();
    assert_eq!(ids_tried.len(), 1, "every attempt reused one messageId");
    let report = f.messenger.deliver(f.chat).await.unwrap();
    assert_eq!(report.delivered.len(), 1);
    assert_eq!(f.free_form_delivered(), 1);
}

#[tokio::test]
async fn closing_soon_watch_reports_each_window_once() {
    let f = fixture(PolicyConfig::default()).await;
    f.customer_writes().await;
    let mut watch = f
        .messenger
        .watch_closing_soon(TimeDelta::hours(1), Duration::from_millis(10));
    f.clock
        .advance(TimeDelta::hours(23) + TimeDelta::minutes(30));
    let event = tokio::time::timeout(Duration::from_secs(5), watch.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.conversation, f.chat);
    assert_eq!(event.expires_at, start_time() + TimeDelta::hours(24));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), watch.recv())
            .await
            .is_err(),
        "reported once"
    );
}

#[tokio::test]
async fn text_goes_through_the_same_path() {
    let f = fixture(PolicyConfig::default().on_closed(OnClosed::Queue(invite()))).await;
    let outcome = f
        .messenger
        .send_text(f.chat, TextMessage::new("Your order shipped").unwrap())
        .await
        .unwrap();
    assert_eq!(outcome.name(), "queued");
    let report = f.customer_writes().await;
    assert_eq!(report.delivery.delivered.len(), 1);
    let text = f
        .gateway
        .delivered()
        .into_iter()
        .find(|m| m.kind == MessageKind::Text)
        .unwrap();
    assert_eq!(text.body["message"], "Your order shipped");
}

#[tokio::test]
async fn per_business_policy_applies() {
    let vip = Conversation::parse("254110090748", "254712345678").unwrap();
    let config = PolicyConfig::default().on_closed_for(vip.business, OnClosed::Queue(invite()));
    let f = fixture(config).await;
    assert_eq!(
        f.messenger
            .send_contact(f.chat, card("A"))
            .await
            .unwrap()
            .name(),
        "rejected"
    );
    assert_eq!(
        f.messenger
            .send_contact(vip, card("A"))
            .await
            .unwrap()
            .name(),
        "queued"
    );
}

#[tokio::test]
async fn dry_run_sends_nothing_and_gives_the_exact_body() {
    let f = fixture(PolicyConfig::default()).await;
    let id = MessageId::new();
    let request = SendRequest::contact(f.chat, card("A")).message_id(id);
    let dry = f.messenger.dry_run(&request).await.unwrap();
    assert!(!dry.decision.is_allowed());
    assert_eq!(dry.body.to_value()["messageId"], id.to_string());
    assert_eq!(dry.body.to_value()["to"], "254712345678");
    assert_eq!(f.gateway.request_count(), 0);
    assert!(
        f.messenger
            .sessions()
            .store()
            .outcome(f.chat, id)
            .await
            .unwrap()
            .is_none()
    );
    let _ = f.messenger.sessions().store().window(f.chat).await.unwrap();
}

#[tokio::test]
async fn webhook_events_drive_delivery_and_reconciliation() {
    use lipachat_api::WebhookParser;
    use lipachat_policy::WebhookOutcome;
    let f = fixture_with(
        PolicyConfig::default().on_closed(OnClosed::Queue(invite())),
        WindowRefusal::StatusCallback,
    )
    .await;
    let parser = WebhookParser::new();
    f.messenger.send_contact(f.chat, card("A")).await.unwrap();

    // A reaction does not open the window; a text does.
    let reaction =
        br#"{"messageId":"in-1","from":"254712345678","to":"254110090747","type":"REACTION"}"#;
    let events = parser.parse(reaction, f.clock.now()).unwrap();
    let outcome = f.messenger.on_webhook_event(&events[0]).await.unwrap();
    assert!(matches!(outcome, WebhookOutcome::Ignored(_)), "{outcome:?}");
    assert_eq!(f.free_form_delivered(), 0);

    f.gateway
        .customer_writes(f.chat.business, f.chat.phone().unwrap());
    let text = br#"{"messageId":"in-2","from":"254712345678","to":"254110090747","profileName":"Jane","type":"TEXT","text":"Hi"}"#;
    let events = parser.parse(text, f.clock.now()).unwrap();
    let WebhookOutcome::Inbound(report) = f.messenger.on_webhook_event(&events[0]).await.unwrap()
    else {
        panic!("expected an inbound outcome");
    };
    assert_eq!(report.delivery.delivered.len(), 1);

    // The gateway's window closes 24 h later while ours is told a later inbound time;
    // the send is accepted, then failed by a WhatsApp-shaped status callback.
    f.clock.advance(TimeDelta::hours(25));
    f.messenger
        .sessions()
        .record_inbound_now(f.chat)
        .await
        .unwrap();
    let sent = f.messenger.send_contact(f.chat, card("B")).await.unwrap();
    assert_eq!(sent.name(), "sent");
    let callback = f.gateway.take_status_callbacks().pop().unwrap();
    let events = parser
        .parse(callback.to_string().as_bytes(), f.clock.now())
        .unwrap();
    let outcome = f.messenger.on_webhook_event(&events[0]).await.unwrap();
    assert!(
        matches!(
            &outcome,
            WebhookOutcome::WindowClosed(Reconciliation::Handled { outcome })
                if matches!(**outcome, SendOutcome::Queued { .. })
        ),
        "{outcome:?}"
    );
    assert_eq!(
        f.messenger
            .sessions()
            .store()
            .queued(f.chat)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn group_and_user_id_only_messages_open_no_1_to_1_window() {
    use lipachat_api::WebhookParser;
    use lipachat_policy::WebhookOutcome;
    let f = fixture(PolicyConfig::default().on_closed(OnClosed::Queue(invite()))).await;
    f.messenger.send_contact(f.chat, card("A")).await.unwrap();
    let parser = WebhookParser::new();
    // The customer writes in a group the business is in (WhatsApp's group webhook), and
    // as a user known only by a business-scoped user id (LipaChat's flat payload).
    let group = br#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{
        "metadata":{"display_phone_number":"254110090747"},
        "contacts":[{"profile":{"name":"Jane"},"wa_id":"254712345678"}],
        "messages":[{"from":"254712345678","group_id":"Y2FwaV9ncm91cDox","id":"wamid.G","timestamp":"1795428000","type":"text","text":{"body":"hi all"}}]}}]}]}"#;
    let user_id_only = br#"{"messageId":"in-9","fromUserId":"KE.13491208655302741918","to":"254110090747","type":"TEXT","text":"hi"}"#;
    // Each opens its own conversation's window: the group's, and the user's (keyed by
    // the store's handle for the user id, since no phone is known for it).
    let store = f.messenger.sessions().store();
    for body in [&group[..], &user_id_only[..]] {
        let events = parser.parse(body, f.clock.now()).unwrap();
        assert!(matches!(&events[0], lipachat_api::WebhookEvent::Inbound(m) if m.opens_window));
        let outcome = f.messenger.on_webhook_event(&events[0]).await.unwrap();
        let WebhookOutcome::Inbound(report) = outcome else {
            panic!("recorded in its own conversation, got {outcome:?}");
        };
        assert_ne!(report.conversation, f.chat);
        assert_eq!(report.conversation.phone(), None);
        assert!(report.recorded.opened);
    }
    let group = store
        .find_group_ref(&"Y2FwaV9ncm91cDox".parse().unwrap())
        .await
        .unwrap()
        .expect("the group has a handle");
    let user = store
        .find_user_ref(&"KE.13491208655302741918".parse().unwrap())
        .await
        .unwrap()
        .expect("the user has a handle");
    for customer in [Customer::Group(group), Customer::User(user)] {
        let conversation = Conversation::with_customer(f.chat.business, customer);
        assert!(
            f.messenger
                .sessions()
                .state(conversation)
                .await
                .unwrap()
                .is_open()
        );
    }
    // The sender's 1:1 window stays closed and the queued card stays queued.
    assert!(
        !f.messenger
            .sessions()
            .decide(f.chat)
            .await
            .unwrap()
            .is_allowed()
    );
    assert_eq!(f.free_form_delivered(), 0);
    assert_eq!(f.queued_len().await, 1);
}

#[tokio::test]
async fn a_wrong_key_during_delivery_keeps_every_message_queued() {
    let f = fixture(PolicyConfig::default().on_closed(OnClosed::Queue(invite()))).await;
    f.messenger.send_contact(f.chat, card("A")).await.unwrap();
    f.messenger.send_contact(f.chat, card("B")).await.unwrap();
    f.gateway
        .customer_writes(f.chat.business, f.chat.phone().unwrap());
    f.messenger
        .sessions()
        .record_inbound_now(f.chat)
        .await
        .unwrap();
    let rotated = Client::builder(ApiKey::new("sk-rotated-away-key").unwrap())
        .base_url(&f.gateway.base_url())
        .build()
        .unwrap();
    let stale = Messenger::new(
        f.messenger.sessions().clone(),
        rotated,
        f.messenger.config().clone(),
    );
    let report = stale.deliver(f.chat).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(matches!(report.stopped, Some(DeliveryStop::SendFailed(_))));
    assert_eq!(report.remaining, 2);
    assert_eq!(
        f.messenger
            .sessions()
            .store()
            .queued(f.chat)
            .await
            .unwrap()
            .len(),
        2
    );
    // With the right key they go out.
    assert_eq!(
        f.messenger.deliver(f.chat).await.unwrap().delivered.len(),
        2
    );
}

#[tokio::test]
async fn dry_run_plans_without_a_client() {
    let template = invite();
    let config = PolicyConfig::default().on_closed(OnClosed::Template(template));
    let dir = tempfile::tempdir().unwrap();
    let sessions = Sessions::new(SledStore::open(dir.path().join("db")).unwrap());
    let chat = Conversation::parse("254110090747", "254712345678").unwrap();
    let request = SendRequest::contact(chat, card("A")).placeholders(["Jane"]);
    let plan = lipachat_policy::DryRun::plan(&sessions, &config, &request)
        .await
        .unwrap();
    assert_eq!(plan.on_closed, "template");
    let template = plan.template_body.unwrap();
    assert_eq!(
        template.to_value()["messageId"],
        lipachat_policy::template_message_id(plan.message_id).to_string()
    );
    assert_eq!(
        template.to_value()["template"]["components"]["body"]["placeholders"],
        serde_json::json!(["Jane"])
    );
    sessions.record_inbound_now(chat).await.unwrap();
    let plan = lipachat_policy::DryRun::plan(&sessions, &config, &request)
        .await
        .unwrap();
    assert!(plan.decision.is_allowed() && plan.template_body.is_none());
}

#[tokio::test]
async fn a_repeated_or_late_window_closed_report_is_acted_on_once() {
    let f = fixture_with(
        PolicyConfig::default().on_closed(OnClosed::Queue(invite())),
        WindowRefusal::StatusCallback,
    )
    .await;
    f.messenger
        .sessions()
        .record_inbound_now(f.chat)
        .await
        .unwrap();
    let original = MessageId::new();
    let sent = f
        .messenger
        .send(SendRequest::contact(f.chat, card("A")).message_id(original))
        .await
        .unwrap();
    assert_eq!(sent.name(), "sent");
    let failed_at = f.clock.now();
    let first = f
        .messenger
        .on_window_closed_report(f.chat, Some(original), None, failed_at)
        .await
        .unwrap();
    assert!(matches!(first, Reconciliation::Handled { .. }), "{first:?}");
    f.clock.advance(TimeDelta::minutes(1));
    f.customer_writes().await;
    assert_eq!(f.free_form_delivered(), 1);

    // The webhook is delivered again, by our messageId and by the wamid: nothing requeued,
    // and the late report does not close the window the customer's reply opened.
    let wa_id = f.gateway.refusals()[0].wa_id.clone().unwrap();
    for (id, wamid) in [(Some(original), None), (None, Some(wa_id.as_str()))] {
        let again = f
            .messenger
            .on_window_closed_report(f.chat, id, wamid, failed_at)
            .await
            .unwrap();
        assert!(
            matches!(again, Reconciliation::ClosureRecorded),
            "{again:?}"
        );
    }
    assert!(
        f.messenger
            .sessions()
            .store()
            .queued(f.chat)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        f.messenger.sessions().state(f.chat).await.unwrap().name(),
        "open",
        "a closure timed before the reply does not close the reopened window"
    );
    f.clock.advance(TimeDelta::minutes(1));
    f.customer_writes().await;
    assert_eq!(f.free_form_delivered(), 1, "the customer got the card once");
}

#[tokio::test]
async fn retries_never_run_past_the_margin() {
    let f = fixture(PolicyConfig::default()).await;
    f.customer_writes().await;
    // Half a second of real time left before expiry minus the 60 s margin.
    f.clock
        .advance(TimeDelta::hours(24) - TimeDelta::seconds(60) - TimeDelta::milliseconds(500));
    f.gateway.stall_next(1, Duration::from_secs(3));
    let started = std::time::Instant::now();
    let err = f
        .messenger
        .send_contact(f.chat, card("A"))
        .await
        .unwrap_err();
    let PolicyError::Send { source, .. } = &err else {
        panic!("expected a send error, got {err:?}");
    };
    assert!(
        matches!(
            source,
            lipachat_api::ApiError::DeadlineReached { attempts: 1, .. }
        ),
        "{source:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "stopped at the deadline"
    );
    assert_eq!(f.gateway.request_count(), 1, "no retry after the deadline");
}

impl Fixture {
    /// Our store believes the window open; the gateway never heard of the customer.
    async fn open_only_in_our_store(&self) {
        self.messenger
            .sessions()
            .record_inbound_now(self.chat)
            .await
            .unwrap();
    }

    /// Sends card "A" under `id`.
    async fn send_card_a(&self, id: MessageId) -> Result<SendOutcome, PolicyError> {
        self.messenger
            .send(SendRequest::contact(self.chat, card("A")).message_id(id))
            .await
    }

    /// Starts sending card "A" under `id` on its own task and returns once the stand-in
    /// has the request (whose answer the test holds back with `stall_next`).
    async fn send_in_flight(
        &self,
        id: MessageId,
    ) -> tokio::task::JoinHandle<Result<SendOutcome, PolicyError>> {
        let requests_before = self.gateway.request_count();
        let messenger = self.messenger.clone();
        let request = SendRequest::contact(self.chat, card("A")).message_id(id);
        let task = tokio::spawn(async move { messenger.send(request).await });
        self.until_more_requests_than(requests_before).await;
        task
    }

    /// Waits (up to 5 s) until the stand-in has received more than `before` requests.
    async fn until_more_requests_than(&self, before: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.gateway.request_count() <= before {
            assert!(
                std::time::Instant::now() < deadline,
                "the stand-in never got the request"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test]
async fn overlapping_calls_with_one_message_id_send_once() {
    let f = fixture(PolicyConfig::default()).await;
    f.customer_writes().await;
    f.gateway.stall_next(1, Duration::from_millis(400));
    let id = MessageId::new();
    let first = f.send_in_flight(id).await;

    // The handler is retried while its first call is still waiting for the gateway.
    let overlapping = f.send_card_a(id).await.unwrap_err();
    assert!(
        matches!(overlapping, PolicyError::SendInProgress { message_id } if message_id == id),
        "{overlapping:?}"
    );
    assert!(overlapping.retry_later_may_help());

    let sent = first.await.unwrap().unwrap();
    assert!(matches!(sent, SendOutcome::Sent { .. }), "{sent:?}");
    // Retried after the first call ended: its outcome, nothing sent.
    let later = f.send_card_a(id).await.unwrap();
    assert!(
        matches!(&later, SendOutcome::Duplicate(previous) if previous.kind == OutcomeKind::Sent),
        "{later:?}"
    );
    assert_eq!(f.gateway.request_count(), 1);
    assert_eq!(f.free_form_delivered(), 1);
}

#[tokio::test]
async fn overlapping_calls_refused_with_131047_queue_one_copy() {
    let f = fixture(PolicyConfig::default().on_closed(OnClosed::Queue(invite()))).await;
    f.open_only_in_our_store().await;
    f.gateway.stall_next(1, Duration::from_millis(400));
    let id = MessageId::new();
    let first = f.send_in_flight(id).await;
    let overlapping = f.send_card_a(id).await;
    assert!(
        matches!(overlapping, Err(PolicyError::SendInProgress { .. })),
        "{overlapping:?}"
    );
    let queued = first.await.unwrap().unwrap();
    assert!(matches!(queued, SendOutcome::Queued { .. }), "{queued:?}");
    let waiting = f.messenger.sessions().store().queued(f.chat).await.unwrap();
    assert_eq!(waiting.len(), 1, "one copy waits");

    f.clock.advance(TimeDelta::seconds(10));
    let report = f.customer_writes().await;
    assert_eq!(report.delivery.delivered.len(), 1);
    assert_eq!(
        f.free_form_delivered(),
        1,
        "the customer gets the card once"
    );
}

#[tokio::test]
async fn a_cancelled_send_frees_its_message_id_for_the_retry() {
    let f = fixture(PolicyConfig::default()).await;
    f.customer_writes().await;
    f.gateway.stall_next(1, Duration::from_secs(2));
    let id = MessageId::new();
    let first = f.send_in_flight(id).await;
    // The bot's handler times out and drops the call mid-flight.
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());

    // The retry is not told to wait for the lease (120 s): the claim was released.
    let started = std::time::Instant::now();
    let retried = loop {
        match f
            .messenger
            .send(SendRequest::contact(f.chat, card("A")).message_id(id))
            .await
        {
            Err(PolicyError::SendInProgress { .. }) => {
                assert!(
                    started.elapsed() < Duration::from_secs(1),
                    "the cancelled call's claim was not released"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => break other.unwrap(),
        }
    };
    let SendOutcome::Sent { message_id, .. } = retried else {
        panic!("expected Sent, got {retried:?}");
    };
    assert_eq!(message_id, id, "the retry reuses the messageId");
    assert_eq!(
        f.free_form_delivered(),
        1,
        "the gateway deduplicated the resend"
    );
}

#[tokio::test]
async fn two_copies_of_one_window_closed_report_at_once_requeue_it_once() {
    let f = fixture_with(
        PolicyConfig::default().on_closed(OnClosed::Queue(invite())),
        WindowRefusal::StatusCallback,
    )
    .await;
    f.open_only_in_our_store().await;
    let original = MessageId::new();
    assert_eq!(f.send_card_a(original).await.unwrap().name(), "sent");
    let failed_at = f.clock.now();

    // The first copy's invitation template is held back by the gateway, so the second
    // copy arrives while the first is being handled.
    f.gateway.stall_next(1, Duration::from_millis(400));
    let requests_before = f.gateway.request_count();
    let first = tokio::spawn({
        let messenger = f.messenger.clone();
        let chat = f.chat;
        async move {
            messenger
                .on_window_closed_report(chat, Some(original), None, failed_at)
                .await
        }
    });
    f.until_more_requests_than(requests_before).await;
    let second = f
        .messenger
        .on_window_closed_report(f.chat, Some(original), None, failed_at)
        .await;
    assert!(
        matches!(second, Err(PolicyError::SendInProgress { message_id }) if message_id == original),
        "{second:?}"
    );
    let handled = first.await.unwrap().unwrap();
    assert!(
        matches!(handled, Reconciliation::Handled { .. }),
        "{handled:?}"
    );
    // Retried later, the second copy finds the message handled.
    let retried = f
        .messenger
        .on_window_closed_report(f.chat, Some(original), None, failed_at)
        .await
        .unwrap();
    assert!(
        matches!(retried, Reconciliation::ClosureRecorded),
        "{retried:?}"
    );
    let waiting = f.messenger.sessions().store().queued(f.chat).await.unwrap();
    assert_eq!(waiting.len(), 1, "queued once");

    f.clock.advance(TimeDelta::minutes(1));
    f.customer_writes().await;
    assert_eq!(
        f.free_form_delivered(),
        1,
        "the refused send never reached the customer; the one redelivery did"
    );
}

/// A rule with a five-minute margin, far from the default's sixty seconds.
fn five_minute_margin() -> lipachat_session::WindowRule {
    lipachat_session::WindowRule::default()
        .with_margin(TimeDelta::minutes(5))
        .unwrap()
}

fn refused_within_margin(decision: &lipachat_session::SendDecision) -> bool {
    matches!(
        decision,
        lipachat_session::SendDecision::Refused {
            reason: RefusalReason::ClosingWithinMargin,
            ..
        }
    )
}

/// The window rule has one owner, the session engine: the send path and its dry run keep
/// the engine's five-minute margin, though the policy says nothing about the rule.
#[tokio::test]
async fn the_send_path_keeps_the_engines_margin() {
    let clock = ManualClock::at(start_time());
    let gateway = gateway_on(&clock).await;
    let dir = tempfile::tempdir().unwrap();
    let sessions = Sessions::new(SledStore::open(dir.path().join("db")).unwrap())
        .with_clock(clock.clone())
        .with_rule(five_minute_margin());
    let messenger = Messenger::new(sessions, client(&gateway), PolicyConfig::default());
    assert_eq!(messenger.sessions().rule(), five_minute_margin());

    let chat = Conversation::parse("254110090747", "254712345678").unwrap();
    gateway.customer_writes(chat.business, chat.phone().unwrap());
    messenger.on_inbound(chat, start_time()).await.unwrap();
    // Two minutes before the window closes: inside the engine's margin.
    clock.advance(TimeDelta::hours(24) - TimeDelta::minutes(2));

    let request = SendRequest::contact(chat, card("Support"));
    let plan = messenger.dry_run(&request).await.unwrap();
    assert!(refused_within_margin(&plan.decision), "{:?}", plan.decision);
    let outcome = messenger.send(request).await.unwrap();
    assert!(
        matches!(
            outcome,
            SendOutcome::Rejected {
                reason: RefusalReason::ClosingWithinMargin,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(gateway.request_count(), 0, "nothing reached the gateway");
}

/// A dry run without a messenger (no API key) plans with the engine's rule too.
#[tokio::test]
async fn a_dry_run_plans_with_the_engines_rule() {
    let clock = ManualClock::at(start_time());
    let dir = tempfile::tempdir().unwrap();
    let sessions = Sessions::new(SledStore::open(dir.path().join("db")).unwrap())
        .with_clock(clock.clone())
        .with_rule(five_minute_margin());
    let chat = Conversation::parse("254110090747", "254712345678").unwrap();
    sessions.record_inbound(chat, start_time()).await.unwrap();
    clock.advance(TimeDelta::hours(24) - TimeDelta::minutes(2));

    let request = SendRequest::contact(chat, card("Support"));
    let plan = lipachat_policy::DryRun::plan(&sessions, &PolicyConfig::default(), &request)
        .await
        .unwrap();
    assert!(refused_within_margin(&plan.decision), "{:?}", plan.decision);
}
