//! Everything the serving side logs, at every level, while it is sent right and wrong
//! tokens, signatures, verify tokens and admin tokens: none of them, nor the app secret
//! or the API key, appears in the log.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use chrono::Utc;
use common::*;
use lipachat_webhook::{Secret, sign};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_secret_or_signature_reaches_the_log() {
    // Every thread's events: the service's tasks run on the runtime's workers.
    let captured = lipachat_testkit::capture_log_globally().unwrap();

    let h = Harness::start().await;
    let customer = "254712345673";
    h.gateway.customer_writes(phone(BUSINESS), phone(customer));
    let wrong_token = "a-wrong-but-plausible-token-123";
    let wrong_verify = "a-wrong-verify-token-456";
    let wrong_admin = "a-wrong-admin-token-789";

    h.post_lipachat(&lipachat_text("in-log-1", customer, "logged?"))
        .await;
    h.http
        .post(h.url(&format!("/webhooks/lipachat/{wrong_token}")))
        .json(&lipachat_text("in-log-2", customer, "x"))
        .send()
        .await
        .unwrap();
    let body = whatsapp_text("wamid.LOG", customer, "signed", Utc::now().timestamp());
    let signature = sign(&Secret::new("app secret", APP_SECRET).unwrap(), &body);
    h.post_whatsapp(&body).await;
    let wrong_signature = sign(&Secret::new("app secret", "not-the-secret").unwrap(), &body);
    h.http
        .post(h.url("/webhooks/whatsapp"))
        .header("x-hub-signature-256", &wrong_signature)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    for token in [VERIFY_TOKEN, wrong_verify] {
        h.http
            .get(h.url(&format!(
                "/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=42"
            )))
            .send()
            .await
            .unwrap();
    }
    h.admin(&format!("/admin/windows/{BUSINESS}/{customer}"))
        .await;
    h.http
        .get(h.url("/admin/pending"))
        .bearer_auth(wrong_admin)
        .send()
        .await
        .unwrap();
    assert_eq!(h.wait_for_echoes(customer, 2).await.len(), 2);

    let log = captured.text();
    assert!(
        log.contains("/webhooks/lipachat/{token}"),
        "the log was captured: {log}"
    );
    assert!(log.contains("reply handled by the guarded path"), "{log}");
    let api_key = h.gateway.api_key().to_owned();
    for secret in [
        LIPACHAT_TOKEN,
        wrong_token,
        VERIFY_TOKEN,
        wrong_verify,
        APP_SECRET,
        ADMIN_TOKEN,
        wrong_admin,
        &signature["sha256=".len()..],
        &wrong_signature["sha256=".len()..],
        &api_key,
    ] {
        assert!(!log.contains(secret), "{secret} appears in the log:\n{log}");
    }
}
