//! Third hostile review of the serving side's secrets: a bot on a password-protected
//! Redis whose password is changed under it (its reconnects are refused), and then whose
//! server dies, is sent webhooks, health checks and admin requests. Everything logged at
//! every level, and every answer, is free of the Redis password, the API key and the
//! tokens.
//!
//! Skipped when `redis-server` is not installed, unless `REQUIRE_REDIS=1`.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use common::*;
use lipachat_redis::test_server::{RedisServer, ServerSetup};
use lipachat_webhook::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REDIS_PASSWORD: &str = "redis-password-that-must-not-show-0451";

/// Sends raw RESP commands (inline form) to the server on `port`; waits a little for
/// their answers.
async fn redis_commands(port: u16, commands: &[&str]) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    for command in commands {
        stream
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .unwrap();
    }
    let mut answer = vec![0u8; 1024];
    let _ = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        stream.read(&mut answer),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_redis_store_never_puts_its_password_or_a_token_in_the_log_or_an_answer() {
    let Some(mut redis) = RedisServer::start_with(ServerSetup::new().password(REDIS_PASSWORD))
    else {
        return;
    };
    let captured = lipachat_testkit::capture_log_globally().unwrap();
    let gateway = lipachat_testkit::StandInGateway::start().await.unwrap();
    let store = lipachat_redis::RedisStore::connect(&redis.url_as(None, REDIS_PASSWORD))
        .await
        .unwrap();
    let service = lipachat_webhook::WebhookService::builder(messenger_on(store, &gateway))
        .lipachat_token(lipachat_api::WebhookToken::new(LIPACHAT_TOKEN).unwrap())
        .whatsapp(
            Secret::new("verify token", VERIFY_TOKEN).unwrap(),
            Secret::new("app secret", APP_SECRET).unwrap(),
        )
        .admin_token(Secret::admin_token(ADMIN_TOKEN).unwrap())
        .build()
        .unwrap();
    let addr = serve_until_the_end(service.router(), service).await;
    let http = reqwest::Client::new();
    let customer = "254712340450";
    let mut answers = Vec::new();
    let round = |n: usize| {
        let http = http.clone();
        async move {
            let mut texts = Vec::new();
            let webhook = http
                .post(format!("http://{addr}/webhooks/lipachat/{LIPACHAT_TOKEN}"))
                .json(&lipachat_text(&format!("wamid.SECRET{n}"), customer, "hi"))
                .send()
                .await
                .unwrap();
            texts.push(format!(
                "{} {}",
                webhook.status(),
                webhook.text().await.unwrap()
            ));
            for path in [
                "/healthz".to_owned(),
                "/metrics".to_owned(),
                format!("/admin/windows/{BUSINESS}/{customer}"),
                "/admin/pending".to_owned(),
            ] {
                let answer = http
                    .get(format!("http://{addr}{path}"))
                    .bearer_auth(ADMIN_TOKEN)
                    .send()
                    .await
                    .unwrap();
                texts.push(format!(
                    "{path}: {} {}",
                    answer.status(),
                    answer.text().await.unwrap()
                ));
            }
            texts
        }
    };
    answers.extend(round(0).await);
    // The password changes and every connection is dropped: reconnects are refused.
    redis_commands(
        redis.port(),
        &[
            &format!("AUTH {REDIS_PASSWORD}"),
            "CONFIG SET requirepass another-password-0451",
            "CLIENT KILL TYPE normal SKIPME yes",
        ],
    )
    .await;
    answers.extend(round(1).await);
    answers.extend(round(2).await);
    // The server dies.
    redis.kill();
    answers.extend(round(3).await);

    let answers = answers.join("\n");
    assert!(
        answers.contains("503"),
        "the failures were answered: {answers}"
    );
    let log = captured.text();
    assert!(log.contains("the store did not answer"), "{log}");
    assert!(
        log.contains("Password authentication failed"),
        "the refused reconnects were logged: {log}"
    );
    let api_key = gateway.api_key().to_owned();
    for secret in [
        REDIS_PASSWORD,
        LIPACHAT_TOKEN,
        VERIFY_TOKEN,
        APP_SECRET,
        ADMIN_TOKEN,
        &api_key,
    ] {
        assert!(!log.contains(secret), "{secret} appears in the log:\n{log}");
        assert!(
            !answers.contains(secret),
            "{secret} appears in an answer:\n{answers}"
        );
    }
}
