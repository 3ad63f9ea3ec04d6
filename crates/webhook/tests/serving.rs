//! `serve` against real clients on 127.0.0.1: raw TCP streams that stall in a header or a
//! body, floods of slow requests, more connections than allowed, oversize bodies, and a
//! shutdown with a request in progress.
//!
//! Time bounds are generous (seconds against limits of a few hundred milliseconds): the
//! tests check that a connection is closed or answered at all, not how fast.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use lipachat_webhook::{ServingConfig, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Far more than any limit a test sets: a connection still open after it was held.
const GENEROUS: Duration = Duration::from_secs(10);

/// Counts the requests in the handler now, the most at once, and all that ran.
#[derive(Default)]
struct Handlers {
    now: AtomicUsize,
    peak: AtomicUsize,
    ran: AtomicUsize,
}

/// Answers the body's length after `delay`, counting itself in and out.
async fn slow_handler(
    State((handlers, delay)): State<(Arc<Handlers>, Duration)>,
    body: Bytes,
) -> String {
    let now = handlers.now.fetch_add(1, Ordering::SeqCst) + 1;
    handlers.peak.fetch_max(now, Ordering::SeqCst);
    handlers.ran.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(delay).await;
    handlers.now.fetch_sub(1, Ordering::SeqCst);
    format!("{} bytes", body.len())
}

fn app(delay: Duration) -> (Router, Arc<Handlers>) {
    let handlers = Arc::new(Handlers::default());
    let router = Router::new()
        .route("/hook", post(slow_handler))
        .with_state((Arc::clone(&handlers), delay));
    (router, handlers)
}

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

async fn start(router: Router, config: ServingConfig) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, router, config, async move {
        let _ = stopped.await;
    }));
    Server {
        addr,
        stop: Some(stop),
        task,
    }
}

/// Reads until the server closes the connection (end of stream or reset); `None` if it
/// is still open after `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buffer = [0_u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| received)
}

fn post_head(length: usize) -> String {
    format!(
        "POST /hook HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )
}

/// Sends `bytes` on a new connection; the answer as text, read until the server closes
/// the connection (panics naming `what` was sent if it stays open).
async fn exchange(addr: SocketAddr, bytes: &[u8], what: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let Some(answer) = read_until_closed(&mut stream, GENEROUS).await else {
        panic!("the connection that sent {what} was still open after {GENEROUS:?}");
    };
    String::from_utf8_lossy(&answer).into_owned()
}

/// One whole request on its own connection; the response as text.
async fn request(addr: SocketAddr, body: &str) -> String {
    let whole = format!("{}{body}", post_head(body.len()));
    exchange(addr, whole.as_bytes(), "a whole request").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_in_its_header_is_disconnected() {
    let (router, handlers) = app(Duration::ZERO);
    let config = ServingConfig::default().with_header_read_timeout(Duration::from_millis(300));
    let server = start(router, config).await;

    // Slow loris: the start of a header, then nothing.
    let mut loris = TcpStream::connect(server.addr).await.unwrap();
    loris
        .write_all(b"POST /hook HTTP/1.1\r\nHost: test\r\nContent-")
        .await
        .unwrap();
    let answer = read_until_closed(&mut loris, GENEROUS).await;
    assert!(
        answer.is_some(),
        "a connection stalled in its header was still open after {GENEROUS:?}"
    );
    // A connection that never sends a byte is closed too.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    assert!(
        read_until_closed(&mut silent, GENEROUS).await.is_some(),
        "a silent connection was still open after {GENEROUS:?}"
    );
    assert_eq!(handlers.ran.load(Ordering::SeqCst), 0);
    // The server still answers a client that sends its request.
    let response = request(server.addr, "hello").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("5 bytes"), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_or_drips_is_cut_off_with_408() {
    let (router, handlers) = app(Duration::ZERO);
    let config = ServingConfig::default().with_body_read_timeout(Duration::from_millis(400));
    let server = start(router, config).await;

    // The head and 10 of the 100 bytes announced, then nothing.
    let stalled = format!("{}0123456789", post_head(100));
    let answer = exchange(server.addr, stalled.as_bytes(), "a stalled body").await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // A byte every 100 ms never lets the body stall for long, yet 100 bytes would take
    // 10 s: the whole body is timed.
    let mut drip = TcpStream::connect(server.addr).await.unwrap();
    drip.write_all(post_head(100).as_bytes()).await.unwrap();
    let dripping = async {
        for _ in 0..100 {
            if drip.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_millis(1_500), dripping)
        .await
        .ok();
    let answer = read_until_closed(&mut drip, GENEROUS)
        .await
        .expect("a connection dripping its body was still open");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(
        handlers.ran.load(Ordering::SeqCst),
        0,
        "a handler ran on a body that never arrived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_than_the_limit_of_handlers_run_at_once() {
    const LIMIT: usize = 3;
    const REQUESTS: usize = LIMIT + 5;
    let (router, handlers) = app(Duration::from_millis(200));
    let config = ServingConfig::default().with_max_concurrent_requests(LIMIT);
    let server = start(router, config).await;
    let mut clients = Vec::new();
    for _ in 0..REQUESTS {
        let addr = server.addr;
        clients.push(tokio::spawn(async move { request(addr, "x").await }));
    }
    for client in clients {
        let response = client.await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
    assert_eq!(handlers.ran.load(Ordering::SeqCst), REQUESTS);
    let peak = handlers.peak.load(Ordering::SeqCst);
    assert!(
        peak <= LIMIT,
        "{peak} handlers ran at once; the limit is {LIMIT}"
    );
    assert_eq!(
        peak, LIMIT,
        "the limit was never reached: requests ran one by one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_beyond_the_limit_waits_until_one_closes() {
    let (router, _handlers) = app(Duration::ZERO);
    let config = ServingConfig::default()
        .with_max_connections(2)
        .with_header_read_timeout(Duration::from_secs(60));
    let server = start(router, config).await;
    // Two idle connections take both slots.
    let first = TcpStream::connect(server.addr).await.unwrap();
    let _second = TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut third = TcpStream::connect(server.addr).await.unwrap();
    third
        .write_all(format!("{}abc", post_head(3)).as_bytes())
        .await
        .unwrap();
    let mut byte = [0_u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte)).await;
    assert!(
        early.is_err(),
        "a third connection was served while the limit of two was taken"
    );
    drop(first);
    let answer = read_until_closed(&mut third, GENEROUS)
        .await
        .expect("the third connection was not served after a slot freed");
    let answer = format!("{}{}", byte[0] as char, String::from_utf8_lossy(&answer));
    assert!(answer.contains("200 OK"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_gets_413_and_no_handler() {
    let (router, handlers) = app(Duration::ZERO);
    let config = ServingConfig::default().with_body_limit(1024);
    let server = start(router, config).await;

    // Declared too long: refused before a body byte is sent.
    let declared = post_head(1_000_000);
    let answer = exchange(server.addr, declared.as_bytes(), "an oversize length").await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // Chunked, so nothing is declared: cut off once it passes the limit.
    let chunk = "x".repeat(1000);
    let chunked = format!(
        "POST /hook HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3e8\r\n{chunk}\r\n3e8\r\n{chunk}\r\n0\r\n\r\n"
    );
    let answer = exchange(server.addr, chunked.as_bytes(), "an oversize chunked body").await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(handlers.ran.load(Ordering::SeqCst), 0);

    // At the limit: served.
    let response = request(server.addr, &"y".repeat(1024)).await;
    assert!(response.ends_with("1024 bytes"), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_request_in_progress_finish_and_accepts_no_more() {
    let (router, handlers) = app(Duration::from_millis(400));
    let mut server = start(router, ServingConfig::default()).await;
    let addr = server.addr;
    let in_progress = tokio::spawn(async move { request(addr, "last").await });
    while handlers.now.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.stop.take().unwrap().send(()).unwrap();
    let response = in_progress.await.unwrap();
    assert!(response.ends_with("4 bytes"), "{response}");
    tokio::time::timeout(GENEROUS, server.task)
        .await
        .expect("serve did not return after shutdown")
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "a connection was accepted after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_being_read_holds_no_handler_slot() {
    let (router, handlers) = app(Duration::ZERO);
    let config = ServingConfig::default()
        .with_max_concurrent_requests(1)
        .with_body_read_timeout(Duration::from_secs(5));
    let server = start(router, config).await;
    // The only handler slot's request stalls in its body.
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled
        .write_all(format!("{}0123456789", post_head(100)).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Another request is served meanwhile, well before the stalled body's timeout.
    let response = tokio::time::timeout(Duration::from_secs(3), request(server.addr, "hello"))
        .await
        .expect("a whole request waited for the slot of a request whose body stalled");
    assert!(response.ends_with("5 bytes"), "{response}");
    assert_eq!(handlers.ran.load(Ordering::SeqCst), 1);
    // The stalled one ends with 408, never having run the handler.
    let answer = read_until_closed(&mut stalled, GENEROUS).await.unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"));
    assert_eq!(handlers.ran.load(Ordering::SeqCst), 1);
}
