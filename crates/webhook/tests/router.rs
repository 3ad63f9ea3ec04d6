//! The webhook router over real HTTP on 127.0.0.1, a durable sled store and the stand-in
//! gateway: handshake, tokens and signatures, bad bodies, redeliveries, a closed window,
//! a full bot queue, shutdown, metrics, health and the admin routes.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::*;
use lipachat_session::view::{PendingList, WindowList, WindowView};
use lipachat_session::{Conversation, SledStore, WindowStore};
use lipachat_webhook::ServingConfig;
use reqwest::StatusCode;

fn conversation(customer: &str) -> Conversation {
    Conversation::new(phone(BUSINESS), phone(customer))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscription_handshake_answers_the_challenge_only_for_the_verify_token() {
    let h = Harness::start().await;
    let get = |query: &str| {
        h.http
            .get(h.url(&format!("/webhooks/whatsapp?{query}")))
            .send()
    };
    let ok = get(&format!(
        "hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"
    ))
    .await
    .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    for refused in [
        "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
        &format!("hub.mode=unsubscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1"),
        "hub.challenge=1",
        "",
    ] {
        assert_eq!(
            get(refused).await.unwrap().status(),
            StatusCode::FORBIDDEN,
            "{refused}"
        );
    }
    let metrics = h.metrics_text().await;
    assert!(
        metrics.contains(r#"lipachat_webhook_auth_failures_total{reason="verify_token"} 4"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lipachat_webhook_with_its_token_is_recorded_and_echoed_and_a_wrong_token_records_nothing()
 {
    let h = Harness::start().await;
    let customer = "254712345678";
    h.gateway.customer_writes(phone(BUSINESS), phone(customer));
    let body = lipachat_text("in-1", customer, "hello");

    let forged = h
        .http
        .post(h.url("/webhooks/lipachat/not-the-token-at-all-000"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        h.store().count().await.unwrap(),
        0,
        "a forged webhook recorded nothing"
    );

    let accepted = h.post_lipachat(&body).await;
    assert_eq!(accepted.status(), StatusCode::OK);
    // Recorded before the 200.
    assert!(h.recorded(customer).await);
    h.assert_one_echo(customer, "hello").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whatsapp_webhook_needs_its_signature() {
    let h = Harness::start().await;
    let customer = "254712345679";
    h.gateway.customer_writes(phone(BUSINESS), phone(customer));
    let body = whatsapp_text("wamid.SIGNED1", customer, "signed", Utc::now().timestamp());

    let unsigned = h
        .http
        .post(h.url("/webhooks/whatsapp"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    let wrong = lipachat_webhook::sign(
        &lipachat_webhook::Secret::new("app secret", "another-secret").unwrap(),
        &body,
    );
    for signature in [wrong.as_str(), "sha256=abc", "not a signature"] {
        let refused = h
            .http
            .post(h.url("/webhooks/whatsapp"))
            .header("x-hub-signature-256", signature)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{signature}");
    }
    assert_eq!(h.store().count().await.unwrap(), 0, "nothing recorded");

    let accepted = h.post_whatsapp(&body).await;
    assert_eq!(accepted.status(), StatusCode::OK);
    assert!(h.recorded(customer).await);
    h.assert_one_echo(customer, "signed").await;
    let metrics = h.metrics_text().await;
    for line in [
        r#"lipachat_webhook_auth_failures_total{reason="signature_missing"} 1"#,
        r#"lipachat_webhook_auth_failures_total{reason="signature_mismatch"} 1"#,
        r#"lipachat_webhook_auth_failures_total{reason="signature_malformed"} 2"#,
        r#"lipachat_webhook_events_total{source="whatsapp",kind="inbound"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_and_malformed_bodies_are_refused_with_a_reason_and_record_nothing() {
    let h = Harness::with(Options {
        serving: ServingConfig::default().with_body_limit(4096),
        configure: Box::new(|builder| builder.body_limit(4096)),
        ..Options::default()
    })
    .await;
    let url = h.url(&format!("/webhooks/lipachat/{LIPACHAT_TOKEN}"));
    let big = vec![b' '; 5000];
    let too_large = h.http.post(&url).body(big).send().await.unwrap();
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);

    for (body, reason) in [
        (&b"not json"[..], "not JSON"),
        (b"", "empty"),
        (b"\"a string\"", "unknown shape"),
        (b"{\"entry\": 5}", ""),
        (b"[1, 2", "not JSON"),
    ] {
        let refused = h.http.post(&url).body(body.to_vec()).send().await.unwrap();
        let status = refused.status();
        let text = refused.text().await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}: {text}");
        assert!(
            text.starts_with("not a webhook body: ") && text.contains(reason),
            "{text}"
        );
    }
    // A signed body that is not a webhook: 400 as well, after the signature.
    let signed = h.post_whatsapp(b"[1, 2").await;
    assert_eq!(signed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(h.store().count().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_message_is_recorded_once_and_answered_once() {
    let h = Harness::start().await;
    let customer = "254712345670";
    h.gateway.customer_writes(phone(BUSINESS), phone(customer));
    let body = lipachat_text("in-redelivered", customer, "twice");
    for _ in 0..3 {
        assert_eq!(h.post_lipachat(&body).await.status(), StatusCode::OK);
    }
    let echoes = h.wait_for_echoes(customer, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.echoes_to(customer).len(), 1, "{echoes:?}");
    let metrics = h.metrics_text().await;
    assert!(
        metrics.contains("lipachat_webhook_duplicates_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"lipachat_sends_total{outcome="sent"} 1"#),
        "{metrics}"
    );
    // The echo is a service message inside the window: predicted free.
    assert!(
        metrics.contains(
            r#"lipachat_sends_predicted_category_total{category="service",free="true"} 1"#
        ),
        "{metrics}"
    );
    // Each copy reserved a slot in the bot's queue and gave it back unused: the queue is
    // empty, and the gauge says so.
    assert!(metrics.contains("lipachat_bot_queue_depth 0"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_into_a_closed_window_never_reaches_the_gateway() {
    let h = Harness::start().await;
    let customer = "254712345671";
    // WhatsApp redelivers, two days late, a message sent two days ago: recorded at its
    // own time, the window is long closed, and the default policy rejects the echo.
    let two_days_ago = Utc::now().timestamp() - 2 * 86_400;
    let body = whatsapp_text("wamid.LATE", customer, "late", two_days_ago);
    assert_eq!(h.post_whatsapp(&body).await.status(), StatusCode::OK);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let metrics = h.metrics_text().await;
        if metrics.contains(r#"lipachat_sends_total{outcome="rejected"} 1"#) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rejected send: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        h.gateway.request_count(),
        0,
        "no free-form reply reached the gateway"
    );
    let status = h
        .admin(&format!("/admin/windows/{BUSINESS}/{customer}"))
        .await;
    let view: WindowView = status.json().await.unwrap();
    assert_eq!(view.state, "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_records_nothing_and_the_retry_is_handled_once() {
    let bot = EchoBot::closed();
    let h = Harness::with(Options {
        bot: Some(bot.clone()),
        configure: Box::new(|builder| builder.queue_capacity(1).bot_handlers(1)),
        ..Options::default()
    })
    .await;
    let customers: Vec<String> = (0..6).map(|n| format!("25471200000{n}")).collect();
    for customer in &customers {
        h.gateway.customer_writes(phone(BUSINESS), phone(customer));
    }
    let body = |n: usize| lipachat_text(&format!("in-full-{n}"), &customers[n], "queued");
    // One handler runs (held by the gate), one message may wait for it, one more sits
    // in the queue: the next is refused.
    let mut refused = None;
    for n in 0..customers.len() {
        let status = h.post_lipachat(&body(n)).await.status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            refused = Some(n);
            break;
        }
        assert_eq!(status, StatusCode::OK);
    }
    let refused = refused.expect("a 503 once the queue is full");
    assert!(refused <= 3, "refused only at message {refused}");
    assert!(
        h.store()
            .window(conversation(&customers[refused]))
            .await
            .unwrap()
            .is_none(),
        "the refused webhook recorded nothing"
    );
    let metrics = h.metrics_text().await;
    assert!(
        metrics.contains("lipachat_webhook_queue_full_total 1"),
        "{metrics}"
    );
    // The gauge follows the queue: one message waits once the handler holds the first.
    // When the 503 came before the handler took the first message (a loaded machine), the
    // queue empties as it does and the gauge reads 0, not 1.
    let mut metrics = metrics;
    for _ in 0..100 {
        if metrics.contains("lipachat_bot_queue_depth 1")
            || (refused == 1 && metrics.contains("lipachat_bot_queue_depth 0"))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        metrics = h.metrics_text().await;
    }
    assert!(
        metrics.contains("lipachat_bot_queue_depth 1")
            || (refused == 1 && metrics.contains("lipachat_bot_queue_depth 0")),
        "refused at {refused}: {metrics}"
    );

    // The bot catches up; the sender retries: recorded and answered once.
    bot.gate.add_permits(1000);
    for customer in &customers[..refused] {
        assert_eq!(h.wait_for_echoes(customer, 1).await.len(), 1);
    }
    // The last handler releases its queue slot just after its echo is sent, and the
    // first retry's message takes the one slot: like a real sender, post again while the
    // answer is 503, for a bounded time. Sent twice, the message is still handled once.
    for _ in 0..2 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let status = h.post_lipachat(&body(refused)).await.status();
            if status == StatusCode::OK {
                break;
            }
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(
                tokio::time::Instant::now() < deadline,
                "the queue never drained"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(h.wait_for_echoes(&customers[refused], 1).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.echoes_to(&customers[refused]).len(), 1);
    for customer in &customers[..refused] {
        assert_eq!(h.echoes_to(customer).len(), 1, "{customer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_queued_handlers_finish_and_flushes_the_store() {
    let bot = EchoBot::closed();
    let mut h = Harness::with(Options {
        bot: Some(bot.clone()),
        configure: Box::new(|builder| builder.bot_handlers(1)),
        ..Options::default()
    })
    .await;
    let customers = ["254712340001", "254712340002", "254712340003"];
    for (n, customer) in customers.iter().enumerate() {
        h.gateway.customer_writes(phone(BUSINESS), phone(customer));
        let body = lipachat_text(&format!("in-shutdown-{n}"), customer, "bye");
        assert_eq!(h.post_lipachat(&body).await.status(), StatusCode::OK);
    }
    // Handlers are held; shutdown begins; then they are let go.
    let gate = bot.gate.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        gate.add_permits(1000);
    });
    h.shut_down().await;
    for customer in customers {
        assert_eq!(
            h.echoes_to(customer).len(),
            1,
            "{customer} answered before shutdown ended"
        );
    }
    // The server is gone, and the store closed and flushed: it opens again, holding the
    // windows.
    assert!(h.http.get(h.url("/healthz")).send().await.is_err());
    let reopened = SledStore::open(h.dir.path().join("sessions.db")).unwrap();
    for customer in customers {
        assert!(
            reopened
                .window(conversation(customer))
                .await
                .unwrap()
                .is_some()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_name_every_counter_and_health_answers() {
    let h = Harness::start().await;
    let health = h.http.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let metrics = h.http.get(h.url("/metrics")).send().await.unwrap();
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text().await.unwrap();
    for name in [
        lipachat_webhook::metrics::DUPLICATES,
        lipachat_webhook::metrics::QUEUE_FULL,
        lipachat_webhook::metrics::SENDS,
        lipachat_webhook::metrics::CLOSURES,
        lipachat_webhook::metrics::QUEUED_DELIVERED,
        lipachat_webhook::metrics::QUEUED_EXPIRED,
        lipachat_webhook::metrics::SEND_DURATION,
        lipachat_webhook::metrics::QUEUE_DEPTH,
    ] {
        assert!(text.contains(&format!("# TYPE {name}")), "{name} in {text}");
    }
    for outcome in ["sent", "rerouted", "queued", "rejected"] {
        assert!(text.contains(&format!(r#"lipachat_sends_total{{outcome="{outcome}"}} 0"#)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_send_of_the_services_messenger_is_counted_by_outcome() {
    use lipachat_api::{TemplateMessage, TextMessage};
    use lipachat_policy::{SendOutcome, TemplateOutcome, TemplateRequest};
    let h = Harness::start().await;
    let open = "254712345680";
    h.gateway.customer_writes(phone(BUSINESS), phone(open));
    let body = whatsapp_text("wamid.COUNTED", open, "hi", Utc::now().timestamp());
    assert_eq!(h.post_whatsapp(&body).await.status(), StatusCode::OK);
    h.assert_one_echo(open, "hi").await; // the bot's reply: one send
    h.gateway.set_templates(
        phone(BUSINESS),
        vec![lipachat_testkit::template_entry(
            "welcome",
            "en",
            "UTILITY",
            "APPROVED",
            None,
            "Welcome back!",
        )],
    );
    // The backend's own sends through the service's messenger (a clone of it).
    let messenger = h.service().messenger().clone();
    let text = || TextMessage::new("a note from the backend").unwrap();
    let sent = messenger
        .send_text(conversation(open), text())
        .await
        .unwrap();
    assert!(matches!(sent, SendOutcome::Sent { .. }), "{sent:?}");
    let never = "254712345681";
    let rejected = messenger
        .send_text(conversation(never), text())
        .await
        .unwrap();
    assert!(
        matches!(rejected, SendOutcome::Rejected { .. }),
        "{rejected:?}"
    );
    let template = messenger
        .send_template(TemplateRequest::new(
            conversation(never),
            TemplateMessage::new("welcome", "en").unwrap(),
        ))
        .await
        .unwrap();
    assert!(matches!(template, TemplateOutcome::Sent(_)), "{template:?}");
    let unknown = messenger
        .send_template(TemplateRequest::new(
            conversation(never),
            TemplateMessage::new("not_in_the_catalog", "en").unwrap(),
        ))
        .await;
    assert!(unknown.is_err(), "{unknown:?}");

    let metrics = h.metrics_text().await;
    for line in [
        r#"lipachat_sends_total{outcome="sent"} 3"#,
        r#"lipachat_sends_total{outcome="rejected"} 1"#,
        r#"lipachat_sends_total{outcome="error"} 1"#,
        "lipachat_send_duration_seconds_count 5",
        // The template went out: predicted utility, not free.
        r#"lipachat_sends_predicted_category_total{category="utility",free="false"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_routes_need_their_token_and_answer_the_session_check_objects() {
    let h = Harness::start().await;
    let customer = "254712345672";
    h.gateway.customer_writes(phone(BUSINESS), phone(customer));
    assert_eq!(
        h.post_lipachat(&lipachat_text("in-admin", customer, "hi"))
            .await
            .status(),
        StatusCode::OK
    );
    let path = format!("/admin/windows/{BUSINESS}/{customer}");
    assert_eq!(
        h.http.get(h.url(&path)).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    for wrong in ["Bearer wrong-token-0123456789", "Basic abc", ADMIN_TOKEN] {
        let refused = h
            .http
            .get(h.url(&path))
            .header("authorization", wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{wrong}");
    }
    // The admin token opens no webhook route, and a webhook token no admin route.
    let crossed = h
        .http
        .get(h.url(&path))
        .bearer_auth(LIPACHAT_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(crossed.status(), StatusCode::UNAUTHORIZED);

    let status = h.admin(&path).await;
    assert_eq!(status.status(), StatusCode::OK);
    let text = status.text().await.unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    // The order the fields are written in (a Value does not keep it).
    let keys = lipachat_testkit::keys_in_order(&text).unwrap();
    assert_eq!(
        keys,
        [
            "business",
            "customer",
            "state",
            "last_inbound",
            "expires_at",
            "remaining_secs",
            "free_entry_point_until",
            "free_entry_point_confirmed",
            "marketing",
            "marketing_retry_at"
        ]
    );
    assert_eq!(json["state"], "open");
    assert_eq!(json["marketing"], "allowed");
    assert_eq!(json["customer"], customer);

    let never = h
        .admin(&format!("/admin/windows/{BUSINESS}/254799999999"))
        .await;
    let never: WindowView = never.json().await.unwrap();
    assert_eq!(never.state, "none");
    let bad = h
        .admin(&format!("/admin/windows/{BUSINESS}/not-a-phone"))
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.unwrap().starts_with("customer: "));

    let list: WindowList = h
        .admin("/admin/windows?state=open")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.windows.len(), 1);
    assert_eq!(list.windows[0].window.customer, customer);
    let closed: WindowList = h
        .admin("/admin/windows?state=closed")
        .await
        .json()
        .await
        .unwrap();
    assert!(closed.windows.is_empty());
    let soon: WindowList = h
        .admin("/admin/windows?closing_within=600")
        .await
        .json()
        .await
        .unwrap();
    assert!(soon.windows.is_empty());
    assert_eq!(
        h.admin("/admin/windows?state=shut").await.status(),
        StatusCode::BAD_REQUEST
    );
    let pending: PendingList = h.admin("/admin/pending").await.json().await.unwrap();
    assert!(pending.messages.is_empty());
    let one: PendingList = h
        .admin(&format!("/admin/pending/{BUSINESS}/{customer}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(one.messages.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_when_the_redis_store_is_gone() {
    use lipachat_redis::test_server::RedisServer;
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let gateway = lipachat_testkit::StandInGateway::start().await.unwrap();
    let client =
        lipachat_api::Client::builder(lipachat_api::ApiKey::new(gateway.api_key()).unwrap())
            .base_url(&gateway.base_url())
            .build()
            .unwrap();
    let store = lipachat_redis::RedisStore::connect(&redis.url())
        .await
        .unwrap();
    let messenger = lipachat_policy::Messenger::new(
        lipachat_session::Sessions::new(store),
        client,
        lipachat_policy::PolicyConfig::default(),
    );
    let service = lipachat_webhook::WebhookService::builder(messenger)
        .lipachat_token(lipachat_api::WebhookToken::new(LIPACHAT_TOKEN).unwrap())
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(lipachat_webhook::serve(
        listener,
        service.router(),
        ServingConfig::default(),
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
    let health = || http.get(format!("http://{addr}/healthz")).send();
    assert_eq!(health().await.unwrap().status(), StatusCode::OK);
    redis.kill();
    assert_eq!(
        health().await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    server.abort();
}
