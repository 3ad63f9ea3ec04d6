//! What is particular to Redis: the key layout (hash tags, registry, prefix, database),
//! corrupt values, the schema check, replicas sharing one server, and moving data
//! between sled and Redis.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_redis::test_server::RedisServer;
use lipachat_redis::{ConnectError, RedisConfig, RedisStore, RedisVersion};
use lipachat_session::export::{export, import};
use lipachat_session::{
    Conversation, Customer, IdentityStore, InboundId, InboundReceipt, Invitation, ManualClock,
    MessageId, OutboxStore, QueuedMessage, Sessions, SledStore, StoreError, StoredOutcome,
    WindowRecord, WindowStore,
};
use redis::AsyncCommands;
use uuid::Uuid;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn chat(business: &str, customer: u64) -> Conversation {
    Conversation::parse(business, &customer.to_string()).unwrap()
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn all_keys(connection: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let mut keys: Vec<String> = connection.keys("*").await.unwrap();
    keys.sort();
    keys
}

/// A store under the prefix `bot-a`.
async fn connect_as_bot_a(server: &RedisServer) -> RedisStore {
    RedisConfig::new(&server.url())
        .unwrap()
        .with_key_prefix("bot-a")
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn message(payload: &str) -> QueuedMessage {
    QueuedMessage {
        message_id: MessageId::new(),
        queued_at: t("2026-11-23T10:00:00Z"),
        payload: payload.into(),
    }
}

#[tokio::test]
async fn key_layout_uses_one_hash_tag_per_business_and_a_registry() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = connect_as_bot_a(&server).await;
    assert!(store.server().version >= RedisVersion::MINIMUM);
    assert!(store.server().aof_enabled);
    let c = chat("254110090747", 254712345678);
    store.record_inbound(c, Utc::now()).await.unwrap();
    store
        .record_gateway_closure(c, Utc::now() + TimeDelta::seconds(1))
        .await
        .unwrap();
    store.enqueue(c, message("{}"), 5).await.unwrap();
    let invitation = Invitation {
        message_id: MessageId::new(),
        sent_at: Utc::now(),
    };
    store.set_invitation(c, Some(invitation)).await.unwrap();
    store
        .put_outcome(
            c,
            StoredOutcome::new(MessageId::from_uuid(Uuid::nil()), "{}"),
        )
        .await
        .unwrap();
    store
        .claim(
            MessageId::from_uuid(Uuid::nil()),
            Uuid::nil(),
            Utc::now(),
            TimeDelta::seconds(30),
        )
        .await
        .unwrap();

    let mut connection = raw(&server).await;
    assert_eq!(
        all_keys(&mut connection).await,
        vec![
            "bot-a:businesses",
            "bot-a:claim:00000000-0000-0000-0000-000000000000",
            "bot-a:schema",
            "bot-a:{254110090747}:inbound",
            "bot-a:{254110090747}:invitations",
            "bot-a:{254110090747}:outbox:254712345678",
            "bot-a:{254110090747}:outbox:254712345678:messages",
            "bot-a:{254110090747}:outboxes",
            "bot-a:{254110090747}:outcome-ids",
            "bot-a:{254110090747}:outcome-ids:expiry",
            "bot-a:{254110090747}:outcomes:254712345678",
            "bot-a:{254110090747}:outcomes:254712345678:expiry",
            "bot-a:{254110090747}:window",
        ]
    );
    let businesses: Vec<String> = connection.smembers("bot-a:businesses").await.unwrap();
    assert_eq!(businesses, vec!["254110090747"]);
    assert_eq!(store.businesses().await.unwrap(), vec![c.business]);
    // The claim expires in server time too.
    let ttl: i64 = connection
        .pttl("bot-a:claim:00000000-0000-0000-0000-000000000000")
        .await
        .unwrap();
    assert!(ttl > 25_000 && ttl <= 30_000, "{ttl}");
    // The whole record in one hash field, `<last inbound ms>:<closure ms>`; the sorted
    // set indexes the same last inbound time.
    let record = store.window(c).await.unwrap().unwrap();
    let (last, closed) = (
        record.last_inbound.timestamp_millis(),
        record.gateway_closed_at.unwrap().timestamp_millis(),
    );
    let stored: String = connection
        .hget("bot-a:{254110090747}:window", "254712345678")
        .await
        .unwrap();
    assert_eq!(stored, format!("{last}:{closed}"));
    let score: f64 = connection
        .zscore("bot-a:{254110090747}:inbound", "254712345678")
        .await
        .unwrap();
    assert_eq!(score as i64, last);
    let schema: String = connection.get("bot-a:schema").await.unwrap();
    assert_eq!(schema, "2");
    // A newer inbound message drops the closure, in the record; the index follows.
    store
        .record_inbound(c, record.last_inbound + TimeDelta::seconds(5))
        .await
        .unwrap();
    let stored: String = connection
        .hget("bot-a:{254110090747}:window", "254712345678")
        .await
        .unwrap();
    assert_eq!(stored, (last + 5_000).to_string());
    let score: f64 = connection
        .zscore("bot-a:{254110090747}:inbound", "254712345678")
        .await
        .unwrap();
    assert_eq!(score as i64, last + 5_000);

    // Forget leaves only the registry, the schema and the claim (which expires).
    assert!(store.forget(c).await.unwrap());
    assert_eq!(
        all_keys(&mut connection).await,
        vec![
            "bot-a:businesses",
            "bot-a:claim:00000000-0000-0000-0000-000000000000",
            "bot-a:schema",
        ]
    );
}

#[tokio::test]
async fn databases_and_prefixes_keep_bots_apart() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let db0 = RedisStore::connect(&server.url()).await.unwrap();
    let db1 = RedisStore::connect(&format!("redis://127.0.0.1:{}/1", server.port()))
        .await
        .unwrap();
    let other_prefix = RedisConfig::new(&server.url())
        .unwrap()
        .with_key_prefix("other")
        .unwrap()
        .connect()
        .await
        .unwrap();
    let c = chat("254110090747", 254712345678);
    db0.record_inbound(c, Utc::now()).await.unwrap();
    assert_eq!(db0.count().await.unwrap(), 1);
    assert_eq!(db1.count().await.unwrap(), 0);
    assert_eq!(other_prefix.count().await.unwrap(), 0);
    assert_eq!(db1.window(c).await.unwrap(), None);
}

#[tokio::test]
async fn corrupt_values_are_typed_errors_for_their_pair_only() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = RedisStore::connect(&server.url()).await.unwrap();
    let keys = store.keys().clone();
    let at = t("2026-11-23T10:00:00Z");
    let (bad, good) = (
        chat("254110090747", 254700000001),
        chat("254110090747", 254700000002),
    );
    for c in [bad, good] {
        store.record_inbound(c, at).await.unwrap();
        store.enqueue(c, message("{}"), 5).await.unwrap();
        let invitation = Invitation {
            message_id: MessageId::new(),
            sent_at: at,
        };
        store.set_invitation(c, Some(invitation)).await.unwrap();
    }
    let mut connection = raw(&server).await;
    let customer = bad.customer.key().to_string();
    let _: () = connection
        .hset(
            keys.window(bad.business),
            &customer,
            format!("{}:garbage", at.timestamp_millis()),
        )
        .await
        .unwrap();
    let _: () = connection
        .hset(
            keys.invitations(bad.business),
            &customer,
            "not an invitation",
        )
        .await
        .unwrap();
    let queued_id = store.queued(bad).await.unwrap()[0].message_id.to_string();
    let _: () = connection
        .hset(keys.outbox_messages(bad), &queued_id, "no time here")
        .await
        .unwrap();
    let _: () = connection
        .zadd(keys.inbound(bad.business), "not-a-phone", 1)
        .await
        .unwrap();
    let _: () = connection
        .hset(keys.window(bad.business), "not-a-phone", "1")
        .await
        .unwrap();

    let error = store.window(bad).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::Corrupt { conversation, .. } if *conversation == bad),
        "{error:?}"
    );
    assert!(error.to_string().contains("gateway closure"), "{error}");
    assert!(store.window(good).await.unwrap().is_some());
    let all = store.windows().await.unwrap();
    assert_eq!(all.len(), 2, "the member that is not a phone is skipped");
    assert!(all[0].1.is_err() && all[1].1.is_ok());
    assert!(matches!(
        store.queued(bad).await,
        Err(StoreError::Corrupt { conversation, .. }) if conversation == bad
    ));
    assert_eq!(store.queued(good).await.unwrap().len(), 1);
    assert!(matches!(
        store.invitation(bad).await,
        Err(StoreError::Corrupt { conversation, .. }) if conversation == bad
    ));
    assert!(store.invitation(good).await.unwrap().is_some());
    assert!(matches!(
        store.invitations().await,
        Err(StoreError::Corrupt { conversation, .. }) if conversation == bad
    ));
    // The closing-soon query skips the unreadable record, as sled's index does.
    let soon = store
        .inbound_between(at - TimeDelta::seconds(1), at)
        .await
        .unwrap();
    assert_eq!(soon.iter().map(|(c, _)| *c).collect::<Vec<_>>(), vec![good]);
    // A new inbound message replaces the unreadable closure.
    let update = store
        .record_inbound(bad, at + TimeDelta::seconds(1))
        .await
        .unwrap();
    assert_eq!(update.previous, None);
    assert_eq!(
        update.current,
        WindowRecord::inbound(at + TimeDelta::seconds(1))
    );
    assert_eq!(store.window(bad).await.unwrap(), Some(update.current));
    // Forget clears the rest.
    assert!(store.forget(bad).await.unwrap());
    assert_eq!(store.invitation(bad).await.unwrap(), None);
    assert!(store.queued(bad).await.unwrap().is_empty());
}

/// The closing-soon query fetches one business's records in batches (Lua's `unpack`
/// has a limit): a range of thousands in one business comes back whole.
#[tokio::test]
async fn a_large_range_in_one_business_comes_back_whole() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = RedisStore::connect(&server.url()).await.unwrap();
    let at = t("2026-11-23T10:00:00Z");
    let n = 2_500u64;
    for i in 0..n {
        let c = chat("254110090747", 254_700_000_000 + i);
        store
            .record_inbound(c, at + TimeDelta::milliseconds(i as i64))
            .await
            .unwrap();
        if i % 7 == 0 {
            store
                .record_gateway_closure(c, at + TimeDelta::hours(1))
                .await
                .unwrap();
        }
    }
    let found = store
        .inbound_between(at - TimeDelta::seconds(1), at + TimeDelta::hours(1))
        .await
        .unwrap();
    assert_eq!(found.len(), n as usize);
    for (i, (c, record)) in found.iter().enumerate() {
        assert_eq!(*c, chat("254110090747", 254_700_000_000 + i as u64));
        let mut expected = WindowRecord::inbound(at + TimeDelta::milliseconds(i as i64));
        if i % 7 == 0 {
            expected = expected.with_gateway_closure(at + TimeDelta::hours(1));
        }
        assert_eq!(*record, expected);
    }
    assert_eq!(store.count().await.unwrap(), n);
}

/// A record whose last inbound time is unreadable: `Corrupt` for its pair only (reads,
/// closures), skipped by the closing-soon query, replaced by the next inbound message.
#[tokio::test]
async fn an_unreadable_record_is_corrupt_until_an_inbound_message_replaces_it() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = RedisStore::connect(&server.url()).await.unwrap();
    let keys = store.keys().clone();
    let at = t("2026-11-23T10:00:00Z");
    let (bad, good) = (
        chat("254110090747", 254700000001),
        chat("254110090747", 254700000002),
    );
    for c in [bad, good] {
        store.record_inbound(c, at).await.unwrap();
    }
    let mut connection = raw(&server).await;
    for garbage in ["garbage", "1.7e12", ":1795428000000", "12345678901234567:1"] {
        let _: () = connection
            .hset(
                keys.window(bad.business),
                bad.customer.key().to_string(),
                garbage,
            )
            .await
            .unwrap();
        let error = store.window(bad).await.unwrap_err();
        assert!(
            matches!(&error, StoreError::Corrupt { conversation, .. } if *conversation == bad),
            "{garbage}: {error:?}"
        );
        assert!(error.to_string().contains("last inbound"), "{error}");
        // A closure cannot be applied to it, and leaves it as it is.
        assert!(matches!(
            store.record_gateway_closure(bad, at).await,
            Err(StoreError::Corrupt { conversation, .. }) if conversation == bad
        ));
        let stored: String = connection
            .hget(keys.window(bad.business), bad.customer.key().to_string())
            .await
            .unwrap();
        assert_eq!(stored, garbage);
        assert_eq!(
            store.window(good).await.unwrap(),
            Some(WindowRecord::inbound(at))
        );
        let soon = store
            .inbound_between(at - TimeDelta::seconds(1), at)
            .await
            .unwrap();
        assert_eq!(soon.iter().map(|(c, _)| *c).collect::<Vec<_>>(), vec![good]);
        let all = store.windows().await.unwrap();
        assert!(all[0].1.is_err() && all[1].1.is_ok());
    }
    // Even an older inbound time replaces it: nothing readable was there to keep.
    let earlier = at - TimeDelta::hours(1);
    let update = store.record_inbound(bad, earlier).await.unwrap();
    assert_eq!(update.previous, None);
    assert_eq!(update.current, WindowRecord::inbound(earlier));
    assert_eq!(store.window(bad).await.unwrap(), Some(update.current));
    let score: f64 = connection
        .zscore(keys.inbound(bad.business), bad.customer.key().to_string())
        .await
        .unwrap();
    assert_eq!(score as i64, earlier.timestamp_millis());
    assert_eq!(store.count().await.unwrap(), 2);
}

/// `error` says the server does not suit the store.
fn assert_unsuitable(error: &ConnectError) {
    assert!(
        matches!(error, ConnectError::Unsuitable { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_newer_or_older_schema_is_refused_at_connect() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = RedisStore::connect(&server.url()).await.unwrap();
    let mut connection = raw(&server).await;
    let _: () = connection.set(store.keys().schema(), 99).await.unwrap();
    let error = RedisStore::connect(&server.url()).await.unwrap_err();
    assert_unsuitable(&error);
    assert!(
        error.to_string().contains("schema version \"99\""),
        "{error}"
    );
    // So is the older layout (version 1): it must be exported and imported.
    let _: () = connection.set(store.keys().schema(), 1).await.unwrap();
    let error = RedisStore::connect(&server.url()).await.unwrap_err();
    assert_unsuitable(&error);
    assert!(
        error.to_string().contains("schema version 1") && error.to_string().contains("export"),
        "{error}"
    );
    // Another prefix is unaffected.
    RedisConfig::new(&server.url())
        .unwrap()
        .with_key_prefix("fresh")
        .unwrap()
        .connect()
        .await
        .unwrap();
}

/// Two replicas on one server: one sees what the other records, and a message claimed by
/// a replica that then dies goes to the other once the lease ends, with its original id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_windows_and_claims() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = RedisStore::connect(&server.url()).await.unwrap();
    let b = RedisStore::connect(&server.url()).await.unwrap();
    let c = chat("254110090747", 254712345678);
    let clock = ManualClock::at(Utc::now());
    let sessions_a = Sessions::new(a.clone()).with_clock(clock.clone());
    let sessions_b = Sessions::new(b.clone()).with_clock(clock.clone());
    assert!(sessions_a.record_inbound_now(c).await.unwrap().opened);
    assert!(sessions_b.decide(c).await.unwrap().is_allowed());
    clock.advance(TimeDelta::hours(23) + TimeDelta::minutes(30));
    let soon = sessions_b
        .closing_within(TimeDelta::hours(1))
        .await
        .unwrap();
    assert_eq!(soon.len(), 1);

    let queued = message("{\"text\":\"hi\"}");
    a.enqueue(c, queued.clone(), 10).await.unwrap();
    let lease = TimeDelta::milliseconds(400);
    let (holder_a, holder_b) = (Uuid::new_v4(), Uuid::new_v4());
    let id = queued.message_id;
    assert!(a.claim(id, holder_a, Utc::now(), lease).await.unwrap());
    drop(a); // The replica dies mid-delivery, its claim still held.
    assert!(!b.claim(id, holder_b, Utc::now(), lease).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(b.claim(id, holder_b, Utc::now(), lease).await.unwrap());
    assert_eq!(b.queued(c).await.unwrap(), vec![queued.clone()]);
    assert!(b.dequeue(c, id).await.unwrap());
    b.release(id, holder_b).await.unwrap();
}

/// Two replicas whose clocks disagree by more than the lease: the lease runs on the
/// server's clock, so the replica running ahead does not take the other's live claim,
/// and the claim still ends after the lease in real time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_clock_runs_ahead_does_not_take_a_held_claim() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = RedisStore::connect(&server.url()).await.unwrap();
    let b = RedisStore::connect(&server.url()).await.unwrap();
    let lease = TimeDelta::milliseconds(1_500);
    let skew = lease * 4;
    let id = MessageId::new();
    let (holder_a, holder_b) = (Uuid::new_v4(), Uuid::new_v4());
    assert!(a.claim(id, holder_a, Utc::now(), lease).await.unwrap());
    assert!(
        !b.claim(id, holder_b, Utc::now() + skew, lease)
            .await
            .unwrap(),
        "a replica whose clock runs {skew} ahead took a claim held for {lease}"
    );
    // The other way round: the replica running behind takes nothing either.
    let other = MessageId::new();
    assert!(
        b.claim(other, holder_b, Utc::now() + skew, lease)
            .await
            .unwrap()
    );
    assert!(!a.claim(other, holder_a, Utc::now(), lease).await.unwrap());
    // The stored lease end is the server's: within the lease of the server's TIME.
    let mut connection = raw(&server).await;
    let held: String = connection.get(a.keys().claim(other)).await.unwrap();
    let (end, holder) = held.split_once(':').unwrap();
    assert_eq!(holder, holder_b.to_string());
    let (seconds, micros): (i64, i64) = redis::cmd("TIME")
        .query_async(&mut connection)
        .await
        .unwrap();
    let server_ms = seconds * 1_000 + micros / 1_000;
    let end: i64 = end.parse().unwrap();
    assert!(
        end > server_ms && end <= server_ms + lease.num_milliseconds(),
        "lease end {end} is not within the lease of the server's clock {server_ms}"
    );
    // In real time the lease ends, whatever either replica's clock says.
    tokio::time::sleep(std::time::Duration::from_millis(1_700)).await;
    assert!(
        b.claim(id, holder_b, Utc::now() + skew, lease)
            .await
            .unwrap()
    );
    assert!(a.claim(other, holder_a, Utc::now(), lease).await.unwrap());
}

/// A time before 1970 is refused with a typed error and leaves nothing in Redis; a claim
/// value whose stamp is negative (as an older version could write, whose pattern did not
/// read a minus sign) still blocks until its key expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_before_1970_is_refused_and_a_negative_stamp_still_blocks() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = RedisStore::connect(&server.url()).await.unwrap();
    let b = RedisStore::connect(&server.url()).await.unwrap();
    let lease = TimeDelta::seconds(30);
    let mut connection = raw(&server).await;
    let legacy = MessageId::new();
    let () = connection
        .pset_ex(
            a.keys().claim(legacy),
            format!("-5000:{}", Uuid::new_v4()),
            30_000,
        )
        .await
        .unwrap();
    assert!(
        !b.claim(legacy, Uuid::new_v4(), Utc::now(), lease)
            .await
            .unwrap(),
        "a claim stamped before 1970 did not block"
    );

    let id = MessageId::new();
    let early = t("1969-12-31T23:59:59Z");
    let error = a.claim(id, Uuid::new_v4(), early, lease).await.unwrap_err();
    assert!(
        matches!(error, StoreError::ClaimBeforeEpoch { now } if now == early),
        "{error:?}"
    );
    assert!(error.to_string().contains("1969-12-31"), "{error}");
    let exists: bool = connection.exists(a.keys().claim(id)).await.unwrap();
    assert!(!exists, "a refused claim left a key");
    assert!(
        b.claim(id, Uuid::new_v4(), Utc::now(), lease)
            .await
            .unwrap()
    );
}

/// Export from sled, import into Redis, export again: the same lines. The way to move a
/// bot from the embedded store to the shared one.
#[tokio::test]
async fn export_from_sled_imports_into_redis_unchanged() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sled = SledStore::open(dir.path().join("db")).unwrap();
    let at = t("2026-11-23T10:00:00.123Z");
    for customer in 0..20u64 {
        let c = chat(
            if customer % 2 == 0 {
                "254110090747"
            } else {
                "254110090748"
            },
            254_700_000_000 + customer,
        );
        sled.record_inbound(c, at + TimeDelta::seconds(customer as i64))
            .await
            .unwrap();
        if customer % 3 == 0 {
            sled.record_gateway_closure(c, at + TimeDelta::hours(1))
                .await
                .unwrap();
            sled.enqueue(c, message("{\"kind\":\"text\"}"), 20)
                .await
                .unwrap();
        }
        if customer % 5 == 0 {
            let invitation = Invitation {
                message_id: MessageId::new(),
                sent_at: at,
            };
            sled.set_invitation(c, Some(invitation)).await.unwrap();
        }
    }
    let mut from_sled = Vec::new();
    let written = export(&sled, &mut from_sled).await.unwrap();
    let redis = RedisStore::connect(&server.url()).await.unwrap();
    assert_eq!(import(&redis, from_sled.as_slice()).await.unwrap(), written);
    let mut from_redis = Vec::new();
    export(&redis, &mut from_redis).await.unwrap();
    assert_eq!(
        String::from_utf8(from_redis).unwrap(),
        String::from_utf8(from_sled).unwrap()
    );
}

/// The redelivery memory moves with an export, sled to Redis and Redis to sled: an id
/// redelivered after either move is a duplicate naming its first receipt, an id whose
/// memory ended stays behind, and Redis keys the memory by the same digest as sled.
#[tokio::test]
async fn the_redelivery_memory_moves_between_sled_and_redis_both_ways() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let id = |text: &str| InboundId::new(text).unwrap();
    let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 3);
    let week = TimeDelta::days(7);
    let a = chat("254110090747", 254_712_345_678);
    let b = chat("254110090748", 254_712_345_679);
    let redelivered = |store: &'static str, receipt: InboundReceipt, first: DateTime<Utc>| {
        assert_eq!(
            receipt,
            InboundReceipt::Duplicate {
                first_received_at: first
            },
            "a redelivery after the move into {store} is a duplicate"
        );
    };

    let dir = tempfile::tempdir().unwrap();
    let sled = SledStore::open(dir.path().join("from")).unwrap();
    sled.record_inbound_once(a, now, &id("wamid.A1"), now, now + week)
        .await
        .unwrap();
    sled.record_inbound_once(b, now, &id("wamid.B1"), now, now + week)
        .await
        .unwrap();
    let long_ago = now - TimeDelta::days(8);
    sled.record_inbound_once(
        a,
        long_ago,
        &id("wamid.OLD"),
        long_ago,
        now - TimeDelta::days(1),
    )
    .await
    .unwrap();
    let mut from_sled = Vec::new();
    let written = export(&sled, &mut from_sled).await.unwrap();
    assert_eq!(written.seen, 2, "the expired id is not exported");

    let redis = RedisStore::connect(&server.url()).await.unwrap();
    assert_eq!(import(&redis, from_sled.as_slice()).await.unwrap(), written);
    let mut connection = raw(&server).await;
    let seen_key = format!("lipachat:{{254110090747}}:seen:{}", id("wamid.A1").digest());
    assert!(
        all_keys(&mut connection).await.contains(&seen_key),
        "Redis keys the memory by the id's digest"
    );
    let later = now + TimeDelta::seconds(1);
    for (conversation, text) in [(a, "wamid.A1"), (b, "wamid.B1")] {
        redelivered(
            "Redis",
            redis
                .record_inbound_once(conversation, later, &id(text), later, later + week)
                .await
                .unwrap(),
            now,
        );
    }
    assert!(matches!(
        redis
            .record_inbound_once(a, later, &id("wamid.OLD"), later, later + week)
            .await
            .unwrap(),
        InboundReceipt::Recorded(_)
    ));
    // Remembered on Redis only: it reaches the next sled store too.
    redis
        .record_inbound_once(b, later, &id("wamid.B2"), later, later + week)
        .await
        .unwrap();

    let mut from_redis = Vec::new();
    let written = export(&redis, &mut from_redis).await.unwrap();
    assert_eq!(written.seen, 4);
    let back = SledStore::open(dir.path().join("back")).unwrap();
    assert_eq!(import(&back, from_redis.as_slice()).await.unwrap(), written);
    let latest = later + TimeDelta::seconds(1);
    for (conversation, text, first) in [
        (a, "wamid.A1", now),
        (b, "wamid.B1", now),
        (a, "wamid.OLD", later),
        (b, "wamid.B2", later),
    ] {
        redelivered(
            "sled",
            back.record_inbound_once(conversation, latest, &id(text), latest, latest + week)
                .await
                .unwrap(),
            first,
        );
    }
    assert!(matches!(
        back.record_inbound_once(a, latest, &id("wamid.NEW"), latest, latest + week)
            .await
            .unwrap(),
        InboundReceipt::Recorded(_)
    ));
}

/// Outcomes in Redis: each key expires with its newest entry (so a conversation that
/// stops sending leaves nothing), expired entries leave the hashes at the next write,
/// and a hash written before outcomes expired gets an expiry at its first write.
#[tokio::test]
async fn outcome_keys_expire_and_expired_entries_are_pruned() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = connect_as_bot_a(&server).await;
    let mut connection = raw(&server).await;
    let keys = store.keys().clone();
    let c = chat("254110090747", 254712345678);
    let (outcomes, wa_ids, expiry) = (
        keys.outcomes(c),
        keys.outcome_wa_ids(c),
        keys.outcome_expiry(c),
    );
    // The business's index by our messageId follows the same rules.
    let (ids, ids_expiry) = (
        keys.outcome_ids(c.business),
        keys.outcome_ids_expiry(c.business),
    );

    // A quiet conversation's outcome keys go with its last outcome.
    let brief = TimeDelta::milliseconds(300);
    let id = MessageId::new();
    store
        .put_outcome(
            c,
            StoredOutcome::new(id, "{}")
                .with_wa_id("wamid.1")
                .keep_for(brief),
        )
        .await
        .unwrap();
    for key in [&outcomes, &wa_ids, &expiry, &ids, &ids_expiry] {
        let ttl: i64 = connection.pttl(key).await.unwrap();
        assert!(0 < ttl && ttl <= 300, "{key}: pttl {ttl}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    for key in [&outcomes, &wa_ids, &expiry, &ids, &ids_expiry] {
        let exists: bool = connection.exists(key).await.unwrap();
        assert!(!exists, "{key} outlived its outcomes");
    }

    // In a busy conversation, expired entries leave at the next write; live ones stay,
    // and every key lives as long as its newest entry.
    for n in 0..5 {
        store
            .put_outcome(
                c,
                StoredOutcome::new(MessageId::new(), format!("{n}"))
                    .with_wa_id(format!("wamid.brief.{n}"))
                    .keep_for(brief),
            )
            .await
            .unwrap();
    }
    let lasting = MessageId::new();
    store
        .put_outcome(
            c,
            StoredOutcome::new(lasting, "lasting").with_wa_id("wamid.lasting"),
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    store
        .put_outcome(c, StoredOutcome::new(MessageId::new(), "later"))
        .await
        .unwrap();
    let fields: usize = connection.hlen(&outcomes).await.unwrap();
    assert_eq!(fields, 2, "expired outcomes are pruned");
    let scored: usize = connection.zcard(&expiry).await.unwrap();
    assert_eq!(scored, 2);
    let wa_fields: Vec<String> = connection.hkeys(&wa_ids).await.unwrap();
    let mut wa_fields = wa_fields;
    wa_fields.sort();
    assert_eq!(
        wa_fields,
        vec![format!("i:{lasting}"), "w:wamid.lasting".to_owned()]
    );
    let ttl: i64 = connection.pttl(&outcomes).await.unwrap();
    assert!(ttl > TimeDelta::days(6).num_milliseconds(), "pttl {ttl}");
    // Two live message ids, and the WhatsApp id entry of the one that has a WhatsApp id
    // (the five expired ones left with their outcomes).
    let indexed: Vec<String> = connection.hkeys(&ids).await.unwrap();
    assert_eq!(
        indexed.len(),
        3,
        "expired entries leave the messageId index too: {indexed:?}"
    );
    assert!(
        indexed.contains(&"w:wamid.lasting".to_owned())
            && !indexed
                .iter()
                .any(|field| field.starts_with("w:wamid.brief")),
        "{indexed:?}"
    );
    let indexed: usize = connection.zcard(&ids_expiry).await.unwrap();
    assert_eq!(indexed, 3);
    let ttl: i64 = connection.pttl(&ids).await.unwrap();
    assert!(ttl > TimeDelta::days(6).num_milliseconds(), "pttl {ttl}");
    assert_eq!(
        store
            .outcome_conversation(Some(c.business), lasting)
            .await
            .unwrap(),
        Some(c)
    );

    // A hash written before outcomes expired: no TTL, no expiry entries. Its outcomes
    // are read as they are; the first write gives them the default horizon.
    let old = chat("254110090747", 254712345679);
    let old_id = MessageId::new();
    let _: () = connection
        .hset(keys.outcomes(old), old_id.to_string(), "{\"old\":true}")
        .await
        .unwrap();
    assert_eq!(
        store.outcome(old, old_id).await.unwrap().as_deref(),
        Some("{\"old\":true}")
    );
    // Not in the messageId index until a write to its conversation gives it an expiry.
    assert_eq!(
        store.outcome_conversation(None, old_id).await.unwrap(),
        None
    );
    store
        .put_outcome(
            old,
            StoredOutcome::new(MessageId::new(), "new").keep_for(TimeDelta::hours(1)),
        )
        .await
        .unwrap();
    let score: Option<f64> = connection
        .zscore(keys.outcome_expiry(old), old_id.to_string())
        .await
        .unwrap();
    let horizon = lipachat_session::store::DEFAULT_OUTCOME_HORIZON.num_milliseconds() as f64;
    let now = Utc::now().timestamp_millis() as f64;
    assert!(
        score.is_some_and(|s| (s - now - horizon).abs() < 60_000.0),
        "{score:?}"
    );
    let ttl: i64 = connection.pttl(keys.outcomes(old)).await.unwrap();
    assert!(
        ttl > TimeDelta::days(6).num_milliseconds(),
        "the key lives as long as the outcomes it was given: pttl {ttl}"
    );
    assert_eq!(
        store.outcome(old, old_id).await.unwrap().as_deref(),
        Some("{\"old\":true}")
    );
    assert_eq!(
        store.outcome_conversation(None, old_id).await.unwrap(),
        Some(old),
        "then it is indexed with the expiry it was given"
    );
}

/// A move of a customer's records carries their outcomes' expiry and WhatsApp id index:
/// the target's keys expire no sooner than the source's did (and then go), and nothing of
/// the source is left behind.
#[tokio::test]
async fn a_move_carries_outcome_expiry_and_leaves_nothing_behind() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = connect_as_bot_a(&server).await;
    let mut connection = raw(&server).await;
    let keys = store.keys().clone();
    let business = chat("254110090747", 254712345670).business;
    let user = store.user_ref(&"KE.123".parse().unwrap()).await.unwrap();
    let source = Conversation::with_customer(business, Customer::User(user));
    let target = chat("254110090747", 254712345678);
    let brief = TimeDelta::milliseconds(400);
    let id = MessageId::new();
    store
        .put_outcome(
            source,
            StoredOutcome::new(id, "{}")
                .with_wa_id("wamid.moved")
                .keep_for(brief),
        )
        .await
        .unwrap();
    store
        .record_inbound(source, t("2026-11-23T10:00:00Z"))
        .await
        .unwrap();
    let moved = store
        .move_customer(business, source.customer, target.customer)
        .await
        .unwrap();
    assert_eq!((moved.window, moved.outcomes), (true, 1));
    for key in [
        keys.outcomes(source),
        keys.outcome_wa_ids(source),
        keys.outcome_expiry(source),
    ] {
        let exists: bool = connection.exists(&key).await.unwrap();
        assert!(!exists, "{key} was left behind");
    }
    for key in [
        keys.outcomes(target),
        keys.outcome_wa_ids(target),
        keys.outcome_expiry(target),
    ] {
        let ttl: i64 = connection.pttl(&key).await.unwrap();
        assert!(0 < ttl && ttl <= 400, "{key}: pttl {ttl}");
    }
    assert_eq!(
        store.outcome_by_wa_id(target, "wamid.moved").await.unwrap(),
        Some((id, "{}".to_owned()))
    );
    // The moved outcome expires when it would have where it was.
    tokio::time::sleep(std::time::Duration::from_millis(550)).await;
    assert_eq!(store.outcome(target, id).await.unwrap(), None);
    let exists: bool = connection.exists(keys.outcomes(target)).await.unwrap();
    assert!(
        !exists,
        "the target's outcome keys go with their last outcome"
    );
}
