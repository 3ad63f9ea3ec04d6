//! The Redis password never shows: not for a `redis+unix://…?pass=` URL (redis-rs reads
//! the password of a socket URL from its query), and not when a reachable server that is
//! not the right one sends back an error quoting what it was sent.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::time::Duration;

use lipachat_redis::RedisConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SECRET: &str = "Hunter2Secret";

fn assert_hidden(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} shows the password: {text}");
}

/// The error and every cause in its chain, in Display and Debug.
fn assert_chain_hidden(what: &str, error: &(dyn std::error::Error + 'static)) {
    let mut next = Some(error);
    while let Some(error) = next {
        assert_hidden(what, &error.to_string());
        assert_hidden(what, &format!("{error:?}"));
        next = error.source();
    }
}

#[test]
fn a_socket_url_password_is_hidden_in_display_debug_and_errors() {
    let config: RedisConfig = format!("redis+unix:///nonexistent/redis.sock?db=0&pass={SECRET}")
        .parse()
        .unwrap();
    assert_hidden("Display", &config.to_string());
    assert_hidden("Debug", &format!("{config:?}"));
    // A URL redis-rs cannot read (the database is not a number): the refusal quotes it.
    let refused = format!("redis+unix:///nonexistent/redis.sock?db=x&pass={SECRET}")
        .parse::<RedisConfig>()
        .unwrap_err();
    assert_hidden("the refusal of an unreadable URL", &refused.to_string());
    assert_hidden("the refusal's Debug", &format!("{refused:?}"));
}

#[tokio::test]
async fn connecting_to_a_missing_socket_does_not_show_its_password() {
    let config: RedisConfig = format!("redis+unix:///nonexistent/redis.sock?db=0&pass={SECRET}")
        .parse()
        .unwrap();
    let error = config.connect().await.unwrap_err();
    assert_chain_hidden("the connect error", &error);
}

/// A server that accepts the first command (AUTH) and answers every later one with an
/// error quoting everything it was sent, as a wrong or hostile server may.
async fn quoting_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut heard = Vec::new();
                let mut answered = 0usize;
                let mut buffer = [0u8; 4096];
                while let Ok(read) = socket.read(&mut buffer).await {
                    if read == 0 {
                        break;
                    }
                    heard.extend_from_slice(&buffer[..read]);
                    // One answer per command: each starts with `*` at the start of a line.
                    let commands = heard
                        .windows(3)
                        .filter(|w| w[0] == b'\n' && w[1] == b'*')
                        .count()
                        + usize::from(heard.first() == Some(&b'*'));
                    let mut out = Vec::new();
                    while answered < commands {
                        if answered == 0 {
                            out.extend_from_slice(b"+OK\r\n");
                        } else {
                            out.extend_from_slice(b"-ERR you sent ");
                            out.extend(heard.iter().copied().filter(|b| (33..127).contains(b)));
                            out.extend_from_slice(b"\r\n");
                        }
                        answered += 1;
                    }
                    if socket.write_all(&out).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_server_quoting_the_password_back_does_not_show_it() {
    let addr = quoting_server().await;
    for url in [
        format!("redis://:{SECRET}@{addr}/0"),
        format!("redis://someone:{SECRET}@{addr}/0"),
        format!("redis://:{SECRET}@{addr}/1"),
    ] {
        let config: RedisConfig = url.parse().unwrap();
        let result = tokio::time::timeout(Duration::from_secs(10), config.connect())
            .await
            .unwrap();
        let error = result.err().unwrap();
        assert_chain_hidden("the error from a quoting server", &error);
    }
}
