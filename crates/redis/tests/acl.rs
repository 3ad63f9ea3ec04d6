//! Authentication against real `redis-server`s: an ACL user with the least permissions
//! the store needs (`KeyLayout::acl_rules`) runs the whole conformance suite; a user
//! missing one is refused with a typed error naming the permission; a wrong password
//! (ACL user or `requirepass`) or none is a typed error naming authentication, and the
//! password shows nowhere: not in the message, not in `Debug`, not in any log line
//! (redis-rs's `log` records included, at TRACE).
//!
//! Skipped when `redis-server` is missing, unless `REQUIRE_REDIS=1`.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use lipachat_redis::test_server::{RedisServer, ServerSetup};
use lipachat_redis::{ConnectError, KeyLayout, RedisConfig};
use lipachat_session::conformance;

const BOT_PASSWORD: &str = "Bot-Secret-7f3a";
const ADMIN_PASSWORD: &str = "Admin-Secret-91c2";
const WRONG_PASSWORD: &str = "Wrong-Secret-44d1";

/// Every log line of this test binary, at TRACE, redis-rs's `log` records included.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    Arc::clone(LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&logs);
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || LogSink(Arc::clone(&sink)))
            .with_ansi(false)
            .try_init();
        logs
    }))
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [BOT_PASSWORD, ADMIN_PASSWORD, WRONG_PASSWORD] {
        assert!(!text.contains(secret), "{what} shows a password: {text}");
    }
}

/// A server whose default user has a password, with the user `bot` given the least
/// permissions for `prefix`.
fn server(prefix: &str) -> Option<RedisServer> {
    RedisServer::start_with(ServerSetup::new().password(ADMIN_PASSWORD).user(
        "bot",
        BOT_PASSWORD,
        &KeyLayout::new(prefix).acl_rules(),
    ))
}

/// The documented least permissions are enough for every store operation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_least_acl_permissions_run_the_conformance_suite() {
    let _logs = captured_logs();
    let Some(server) = server("acl-bot") else {
        return;
    };
    let store = RedisConfig::new(&server.url_as(Some("bot"), BOT_PASSWORD))
        .unwrap()
        .with_key_prefix("acl-bot")
        .unwrap()
        .connect()
        .await
        .unwrap();
    conformance::run_all(&store).await;
    // The user reaches nothing outside its prefix.
    let outside = RedisConfig::new(&server.url_as(Some("bot"), BOT_PASSWORD))
        .unwrap()
        .with_key_prefix("another-bot")
        .unwrap()
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(outside, ConnectError::Permission { .. }),
        "{outside:?}"
    );
    assert_no_secret("the permission error", &outside.to_string());
}

/// A user missing a permission the store needs at connect is told which.
#[tokio::test]
async fn a_missing_permission_is_a_typed_error() {
    let _logs = captured_logs();
    let rules = KeyLayout::new("acl-bot").acl_rules().replace(" +info", "");
    let Some(server) =
        RedisServer::start_with(ServerSetup::new().user("bot", BOT_PASSWORD, &rules))
    else {
        return;
    };
    let error = RedisConfig::new(&server.url_as(Some("bot"), BOT_PASSWORD))
        .unwrap()
        .with_key_prefix("acl-bot")
        .unwrap()
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(error, ConnectError::Permission { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("info") && message.contains("docs/redis.md"),
        "{message}"
    );
    assert_no_secret("the permission error", &message);
}

/// Wrong credentials, in each form a URL gives them, are a typed error naming
/// authentication; no password shows in the message, its `Debug`, or the logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_a_typed_authentication_error_that_hides_the_password() {
    let logs = captured_logs();
    let Some(server) = server("acl-bot") else {
        return;
    };
    for url in [
        // An ACL user with the wrong password.
        server.url_as(Some("bot"), WRONG_PASSWORD),
        // An ACL user that does not exist.
        server.url_as(Some("nobody"), BOT_PASSWORD),
        // The default user (requirepass) with the wrong password.
        server.url_as(None, WRONG_PASSWORD),
        // No password at all for a server that requires one.
        server.url(),
    ] {
        let config = RedisConfig::new(&url)
            .unwrap()
            .with_key_prefix("acl-bot")
            .unwrap();
        assert_no_secret("the configuration", &format!("{config} {config:?}"));
        let error = config.connect().await.unwrap_err();
        assert!(
            matches!(error, ConnectError::Authentication { .. }),
            "{url}: {error:?}"
        );
        let message = error.to_string();
        assert!(message.contains("authentication failed"), "{message}");
        assert_no_secret("the error", &message);
        assert_no_secret("the error's Debug", &format!("{error:?}"));
        let store_error: lipachat_session::StoreError = error.into();
        assert_no_secret("the error as a store error", &store_error.to_string());
    }
    // A server without its append-only file: the store warns, naming the server (its
    // password hidden) in the log.
    server.cli(&["CONFIG", "SET", "appendonly", "no"]).unwrap();
    // The right passwords work, for the user and for the default user.
    for url in [
        server.url_as(Some("bot"), BOT_PASSWORD),
        server.url_as(None, ADMIN_PASSWORD),
    ] {
        RedisConfig::new(&url)
            .unwrap()
            .with_key_prefix("acl-bot")
            .unwrap()
            .connect()
            .await
            .unwrap()
            .ping()
            .await
            .unwrap();
    }
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        logged.contains("append-only file is off") && logged.contains("redis://bot:***@"),
        "the warning names the server: {logged}"
    );
    assert_no_secret("the logs", &logged);
}
