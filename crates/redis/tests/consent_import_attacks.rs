//! Hostile review of issue 16, second round: an import over Redis is applied whole or not
//! at all. Every line checks out (the checks run before anything is written), but a
//! consent record already stored for one of the imported customers is unreadable, so the
//! store refuses to merge into it: the lines before it must not have gone in. And a
//! move onto an unreadable consent record moves nothing.
//!
//! Skipped when `redis-server` is not installed.
//!
//! A test marked `#[ignore = "hole: ..."]` fails on the code it was written against: it
//! documents a hole, and passes once the hole is fixed.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use chrono::{SecondsFormat, TimeDelta, Utc};
use lipachat_redis::test_server::RedisServer;
use lipachat_redis::{RedisConfig, RedisStore};
use lipachat_session::export::import;
use lipachat_session::{ConsentStore, Conversation, PhoneNumber, WindowStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_failing_on_a_stored_record_imports_nothing() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store: RedisStore = RedisConfig::new(&server.url())
        .unwrap()
        .with_key_prefix("partial")
        .unwrap()
        .connect()
        .await
        .unwrap();
    let business = PhoneNumber::from_u64(254_110_090_747).unwrap();
    let x = Conversation::new(business, PhoneNumber::from_u64(254_712_000_099).unwrap());
    store
        .record_opt_out(x, true, Utc::now() - TimeDelta::hours(2))
        .await
        .unwrap();
    // Make X's stored consent unreadable.
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("partial*consent*")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg(&keys[0])
        .query_async(&mut raw)
        .await
        .unwrap();
    let () = redis::cmd("HSET")
        .arg(&keys[0])
        .arg(&fields[0])
        .arg("garbage")
        .query_async(&mut raw)
        .await
        .unwrap();

    let past = (Utc::now() - TimeDelta::hours(1)).to_rfc3339_opts(SecondsFormat::Millis, true);
    let input = format!(
        "{}\n{}\n{}\n",
        r#"{"kind":"header","format":"lipachat-session-export","version":3}"#,
        format_args!(
            r#"{{"kind":"window","business":"254110090747","customer":"254712000001","last_inbound":"{past}","gateway_closed_at":null}}"#
        ),
        format_args!(
            r#"{{"kind":"consent","business":"254110090747","customer":"254712000099","opted_out":false,"changed_at":"{past}","back_off_until":null}}"#
        ),
    );
    let result = import(&store, input.as_bytes()).await;
    let windows = store.count().await.unwrap();
    assert!(result.is_err(), "{result:?}");
    assert_eq!(
        windows, 0,
        "the import failed ({result:?}) yet the window line before the failing one went in"
    );
}

/// `move_customer` with the *target's* consent record unreadable stops before anything is
/// written (the MOVE_CUSTOMER script's promise): the source keeps its window and consent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_onto_an_unreadable_consent_moves_nothing() {
    use lipachat_session::IdentityStore;
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store: RedisStore = RedisConfig::new(&server.url())
        .unwrap()
        .with_key_prefix("moveguard")
        .unwrap()
        .connect()
        .await
        .unwrap();
    let business = PhoneNumber::from_u64(254_110_090_747).unwrap();
    let from = Conversation::new(business, PhoneNumber::from_u64(254_712_000_001).unwrap());
    let to = Conversation::new(business, PhoneNumber::from_u64(254_712_000_002).unwrap());
    let at = Utc::now() - TimeDelta::hours(1);
    store.record_inbound(from, at).await.unwrap();
    store.record_opt_out(from, true, at).await.unwrap();
    store.record_opt_out(to, false, at).await.unwrap();
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("moveguard*consent*")
        .query_async(&mut raw)
        .await
        .unwrap();
    let to_field = to.customer.key().to_string();
    let () = redis::cmd("HSET")
        .arg(&keys[0])
        .arg(&to_field)
        .arg("1:x:")
        .query_async(&mut raw)
        .await
        .unwrap();
    let result = store
        .move_customer(business, from.customer, to.customer)
        .await;
    assert!(result.is_err(), "{result:?}");
    assert!(store.marketing_consent(from).await.unwrap().opted_out);
    assert!(store.window(from).await.unwrap().is_some());
}
