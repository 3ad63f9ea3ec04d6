//! Third hostile review of the serving side's health check: a Redis store that answers
//! reads but refuses every write (out of memory under `noeviction`, or turned into a
//! read-only replica) cannot record a webhook; `/healthz` must say so.
//!
//! Skipped when `redis-server` is not installed, unless `REQUIRE_REDIS=1`.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use std::net::SocketAddr;

use common::*;
use lipachat_redis::test_server::RedisServer;
use reqwest::StatusCode;

/// A webhook service on a Redis store at `redis`, served on 127.0.0.1; its address.
async fn service_on(redis: &RedisServer) -> SocketAddr {
    let gateway = lipachat_testkit::StandInGateway::start().await.unwrap();
    let store = lipachat_redis::RedisStore::connect(&redis.url())
        .await
        .unwrap();
    let service = lipachat_webhook::WebhookService::builder(messenger_on(store, &gateway))
        .lipachat_token(lipachat_api::WebhookToken::new(LIPACHAT_TOKEN).unwrap())
        .build()
        .unwrap();
    serve_until_the_end(service.router(), (service, gateway)).await
}

/// Posts a LipaChat text and reads `/healthz`: the two statuses.
async fn webhook_and_health(addr: SocketAddr, id: &str) -> (StatusCode, StatusCode) {
    let http = reqwest::Client::new();
    let webhook = http
        .post(format!("http://{addr}/webhooks/lipachat/{LIPACHAT_TOKEN}"))
        .json(&lipachat_text(id, "254712340440", "hello"))
        .send()
        .await
        .unwrap()
        .status();
    let health = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap()
        .status();
    (webhook, health)
}

/// Where the health check disagrees with what webhooks get (a webhook that cannot be
/// recorded, 503, while health is not 503): what was seen.
fn disagreement(what: &str, (webhook, health): (StatusCode, StatusCode)) -> Option<String> {
    (webhook != StatusCode::OK && health != StatusCode::SERVICE_UNAVAILABLE)
        .then(|| format!("{what}: a webhook got {webhook} while /healthz said {health}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_when_the_redis_store_refuses_writes() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let addr = service_on(&redis).await;
    let fine = webhook_and_health(addr, "wamid.HEALTH0").await;
    assert_eq!(fine, (StatusCode::OK, StatusCode::OK));

    // Out of memory under noeviction: reads go on, writes are refused.
    redis
        .cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"])
        .unwrap();
    redis.cli(&["CONFIG", "SET", "maxmemory", "1"]).unwrap();
    let mut seen = Vec::new();
    seen.extend(disagreement(
        "out of memory",
        webhook_and_health(addr, "wamid.HEALTH1").await,
    ));
    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]).unwrap();

    // A read-only replica (of a primary that is not there).
    redis.cli(&["REPLICAOF", "127.0.0.1", "1"]).unwrap();
    seen.extend(disagreement(
        "read-only replica",
        webhook_and_health(addr, "wamid.HEALTH2").await,
    ));
    assert!(seen.is_empty(), "{seen:#?}");
}
