//! Every request runs in a `request` span naming its method, its route's pattern (never
//! the path itself, which carries LipaChat's token) and its answer's status, and a head
//! whose declared length is over the limit is answered 413 by the router itself in a
//! user's own axum server. (The span was an `axum::middleware::from_fn` layer; it is now a
//! plain tower layer, and this keeps what it logs.)

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_logs_its_route_pattern_and_status_in_a_request_span() {
    let log = lipachat_testkit::capture_log_globally().unwrap();
    let h = Harness::with(Options {
        in_users_axum_server: true,
        ..Options::default()
    })
    .await;
    let now = chrono::Utc::now().timestamp();
    let whatsapp = h
        .post_whatsapp(&whatsapp_text("wamid.SPAN1", "254712340461", "hi", now))
        .await;
    assert_eq!(whatsapp.status(), 200);
    let lipachat = h
        .post_lipachat(&lipachat_text("wamid.SPAN2", "254712340462", "hi"))
        .await;
    assert_eq!(lipachat.status(), 200);
    let unsigned = h
        .http
        .post(h.url("/webhooks/whatsapp"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    // A declared length over the limit (1 MiB), none of it sent: 413 from the head.
    let mut stream = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let head = format!(
        "POST /webhooks/lipachat/{LIPACHAT_TOKEN} HTTP/1.1\r\nHost: test\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        2 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 64];
    let read = tokio::time::timeout(PATIENCE, stream.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(
        answer[..read].starts_with(b"HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&answer[..read])
    );
    let text = log.text();
    let answered = |route: &str, status: u16| {
        format!(
            "request{{method=POST route=\"{route}\" status={status}}}: lipachat_webhook::service: answered"
        )
    };
    for (route, status) in [
        ("/webhooks/whatsapp", 200),
        ("/webhooks/lipachat/{token}", 200),
        ("/webhooks/whatsapp", 401),
        ("/webhooks/lipachat/{token}", 413),
    ] {
        let line = answered(route, status);
        assert!(text.contains(&line), "no {line:?} in:\n{text}");
    }
    assert!(
        !text.contains(LIPACHAT_TOKEN),
        "the path token was logged:\n{text}"
    );
}
