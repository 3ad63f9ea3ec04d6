//! The client's cap on requests in flight, counted at a real HTTP server on 127.0.0.1
//! whose handler is slow, so concurrent sends overlap there unless the client holds them
//! back.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use lipachat_api::DEFAULT_MAX_IN_FLIGHT;
use lipachat_api::{
    ApiError, ApiKey, Client, ClientBuilder, FreeFormMessage, MessageId, RetryPolicy, TextMessage,
};
use lipachat_session::Conversation;
use serde_json::{Value, json};

const KEY: &str = "in-flight-key-0c41d2";
const TEXT_PATH: &str = "/api/v1/whatsapp/message/text";

/// Counts the requests in the gateway's handler now, the most at once, and all.
#[derive(Default)]
struct Gateway {
    now: AtomicUsize,
    peak: AtomicUsize,
    seen: AtomicUsize,
}

/// Accepts every text after `delay`, echoing its `messageId`.
async fn accept_slowly(
    State((gateway, delay)): State<(Arc<Gateway>, Duration)>,
    Json(body): Json<Value>,
) -> Json<Value> {
    let now = gateway.now.fetch_add(1, Ordering::SeqCst) + 1;
    gateway.peak.fetch_max(now, Ordering::SeqCst);
    gateway.seen.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(delay).await;
    gateway.now.fetch_sub(1, Ordering::SeqCst);
    Json(json!({
        "timestamp": "2023-08-06T01:27:56.825898971",
        "data": {
            "messageId": body["messageId"],
            "waId": "wamid.in-flight",
            "status": "SENT",
            "statusDesc": "Message sent successfully"
        },
        "status": "success",
        "message": "",
        "errors": null
    }))
}

async fn slow_gateway(delay: Duration) -> (SocketAddr, Arc<Gateway>) {
    let gateway = Arc::new(Gateway::default());
    let app = Router::new()
        .route(TEXT_PATH, post(accept_slowly))
        .with_state((Arc::clone(&gateway), delay));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, gateway)
}

fn builder(addr: SocketAddr) -> ClientBuilder {
    Client::builder(ApiKey::new(KEY).unwrap())
        .base_url(&format!("http://{addr}"))
        .retry(RetryPolicy::none())
}

fn conversation() -> Conversation {
    Conversation::parse("254110090747", "254712345678").unwrap()
}

/// Sends `text` with a new `messageId` on a task of its own.
fn spawn_text(
    client: &Client,
    text: &'static str,
) -> tokio::task::JoinHandle<Result<lipachat_api::Receipt, ApiError>> {
    let client = client.clone();
    tokio::spawn(async move {
        client
            .send_text(
                conversation(),
                MessageId::new(),
                &TextMessage::new(text).unwrap(),
            )
            .await
    })
}

/// Sends `count` texts at once, each with its own `messageId`; their results.
async fn send_at_once(client: &Client, count: usize) -> Vec<Result<(), ApiError>> {
    let mut sends = Vec::new();
    for _ in 0..count {
        let client = client.clone();
        sends.push(tokio::spawn(async move {
            client
                .send_text(
                    conversation(),
                    MessageId::new(),
                    &TextMessage::new("hi").unwrap(),
                )
                .await
                .map(drop)
        }));
    }
    let mut results = Vec::new();
    for send in sends {
        results.push(send.await.unwrap());
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_keeps_at_most_its_cap_of_requests_in_flight() {
    const CAP: usize = 3;
    let (addr, gateway) = slow_gateway(Duration::from_millis(200)).await;
    let client = builder(addr).max_in_flight(CAP).build().unwrap();
    assert_eq!(client.max_in_flight(), CAP);
    let results = send_at_once(&client, CAP * 4).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(gateway.seen.load(Ordering::SeqCst), CAP * 4);
    let peak = gateway.peak.load(Ordering::SeqCst);
    assert!(
        peak <= CAP,
        "{peak} requests in flight at the gateway; the cap is {CAP}"
    );
    assert_eq!(
        peak, CAP,
        "the cap was never reached: sends went one by one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_cap_holds_under_a_burst() {
    let (addr, gateway) = slow_gateway(Duration::from_millis(300)).await;
    let client = builder(addr).build().unwrap();
    assert_eq!(client.max_in_flight(), DEFAULT_MAX_IN_FLIGHT);
    let results = send_at_once(&client, DEFAULT_MAX_IN_FLIGHT + 16).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let peak = gateway.peak.load(Ordering::SeqCst);
    assert!(
        peak <= DEFAULT_MAX_IN_FLIGHT,
        "{peak} requests in flight at the gateway; the default cap is {DEFAULT_MAX_IN_FLIGHT}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_that_finds_no_free_slot_before_its_deadline_is_busy_and_nothing_is_sent() {
    let (addr, gateway) = slow_gateway(Duration::from_millis(1_000)).await;
    let client = builder(addr).max_in_flight(1).build().unwrap();
    let first = spawn_text(&client, "first");
    while gateway.seen.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The only slot is taken for a second more; this send may go for 300 ms only (a
    // window closing soon), so it must not wait past that for the slot: had it waited,
    // it would have had the slot after the first send and succeeded.
    let started = Instant::now();
    let error = client
        .send_free_form_before(
            conversation(),
            MessageId::new(),
            &FreeFormMessage::Text(TextMessage::new("second").unwrap()),
            started + Duration::from_millis(300),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, ApiError::Busy { limit: 1, .. }),
        "{error:?}"
    );
    assert!(error.retry_later_may_help());
    assert!(error.to_string().contains("nothing was sent"), "{error}");
    assert!(first.await.unwrap().is_ok());
    assert_eq!(
        gateway.seen.load(Ordering::SeqCst),
        1,
        "the busy send reached the gateway"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_that_finds_no_free_slot_does_not_say_nothing_was_sent_after_a_request_left() {
    // The gateway holds every request past the client's timeout.
    let (addr, gateway) = slow_gateway(Duration::from_secs(5)).await;
    let client = builder(addr)
        .max_in_flight(1)
        .request_timeout(Duration::from_millis(1_000))
        .retry(RetryPolicy {
            max_retries: 1,
            initial_backoff: Duration::from_millis(300),
            max_backoff: Duration::from_millis(300),
        })
        .build()
        .unwrap();
    // A send that may go for 1.5 s: its first attempt reaches the gateway and times out
    // after 1 s; its retry (after 150 to 300 ms) may wait at most until 1.5 s.
    let started = Instant::now();
    let first = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .send_free_form_before(
                    conversation(),
                    MessageId::new(),
                    &FreeFormMessage::Text(TextMessage::new("first").unwrap()),
                    started + Duration::from_millis(1_500),
                )
                .await
        })
    };
    while gateway.seen.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Another send takes the only slot when the first attempt lets go of it, and holds it
    // until 1.9 s: the retry finds no free slot.
    tokio::time::sleep_until((started + Duration::from_millis(900)).into()).await;
    let other = spawn_text(&client, "other");
    let error = first.await.unwrap().unwrap_err();
    other.abort();
    assert!(
        !error.to_string().contains("nothing was sent"),
        "a request of this send reached the gateway, yet the error says: {error}"
    );
    assert!(error.retry_later_may_help(), "{error:?}");
}

/// The client addresses requests came from: one per TCP connection the client opened.
type Peers = Arc<std::sync::Mutex<std::collections::HashSet<SocketAddr>>>;

/// A gateway that accepts every text after `delay`, remembering its client address.
async fn connection_counting_gateway(delay: Duration) -> (SocketAddr, Peers) {
    use axum::extract::ConnectInfo;
    let peers = Peers::default();
    let app = Router::new()
        .route(
            TEXT_PATH,
            post(
                |State((peers, delay)): State<(Peers, Duration)>,
                 ConnectInfo(peer): ConnectInfo<SocketAddr>,
                 Json(body): Json<Value>| async move {
                    peers.lock().unwrap().insert(peer);
                    tokio::time::sleep(delay).await;
                    Json(json!({
                        "data": {
                            "messageId": body["messageId"],
                            "waId": "wamid.pool",
                            "status": "SENT",
                            "statusDesc": "Message sent successfully"
                        },
                        "status": "success",
                        "message": "",
                        "errors": null
                    }))
                },
            ),
        )
        .with_state((Arc::clone(&peers), delay));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    (addr, peers)
}

/// Sends `bursts` bursts of `cap` texts at once through a client capped at `cap` in flight
/// (every slot in flight during a burst, since the gateway holds each request a while;
/// every connection idle between bursts), and answers how many connections it opened.
async fn connections_opened_by_bursts(cap: usize, bursts: usize) -> usize {
    let (addr, peers) = connection_counting_gateway(Duration::from_millis(100)).await;
    let client = builder(addr).max_in_flight(cap).build().unwrap();
    for _ in 0..bursts {
        let results = send_at_once(&client, cap).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
    }
    peers.lock().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_at_the_default_cap_reuse_their_connections_instead_of_opening_new_ones() {
    // A pool keeping fewer idle connections than may be in flight closes the rest after
    // each burst and opens them again for the next: a TCP handshake per send beyond the
    // pool, on the send path.
    const BURSTS: usize = 4;
    let opened = connections_opened_by_bursts(DEFAULT_MAX_IN_FLIGHT, BURSTS).await;
    assert!(
        opened <= DEFAULT_MAX_IN_FLIGHT,
        "{BURSTS} bursts of {DEFAULT_MAX_IN_FLIGHT} sends opened {opened} connections; \
         at most {DEFAULT_MAX_IN_FLIGHT} are ever in use at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raised_cap_keeps_as_many_idle_connections_by_default() {
    const CAP: usize = 48;
    const BURSTS: usize = 3;
    let opened = connections_opened_by_bursts(CAP, BURSTS).await;
    assert!(
        opened <= CAP,
        "{BURSTS} bursts of {CAP} sends opened {opened} connections"
    );
}
