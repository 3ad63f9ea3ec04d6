//! Attacks on `serve` found under review: a client that holds its connection without
//! being slow to send anything, by never reading the answers (failed before the write
//! stall timeout existed: the other client was never served).

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use lipachat_webhook::{ServingConfig, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Far more than any limit a test sets.
const GENEROUS: Duration = Duration::from_secs(10);

async fn start(config: ServingConfig) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new().route("/hook", post(|| async { "ok\n" }));
    tokio::spawn(serve(listener, router, config, std::future::pending()));
    addr
}

/// One whole request on its own connection; the answer, or `None` if none came in time.
async fn answered(addr: SocketAddr) -> Option<String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                b"POST /hook HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    tokio::time::timeout(GENEROUS, exchange).await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_answers_does_not_hold_its_slot_forever() {
    let config = ServingConfig::default()
        .with_max_connections(1)
        .with_header_read_timeout(Duration::from_millis(300))
        .with_body_read_timeout(Duration::from_millis(300))
        .with_write_stall_timeout(Duration::from_millis(500));
    let addr = start(config).await;
    // A client with a small receive window that sends request after request and reads
    // nothing: the server's answers fill the window and its send buffer.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (_reader, mut writer) = stream.into_split();
    let request = b"POST /hook HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n";
    let flood = tokio::spawn(async move {
        let batch: Vec<u8> = request
            .iter()
            .copied()
            .cycle()
            .take(request.len() * 1000)
            .collect();
        for _ in 0..200 {
            if writer.write_all(&batch).await.is_err() {
                return;
            }
        }
        // Keep the connection open without reading.
        std::future::pending::<()>().await;
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let answer = answered(addr).await;
    flood.abort();
    let answer = answer.expect("another client was not served while one never read its answers");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
