//! The sled store on a real disk: reopen, schema, in-use, corruption, concurrency,
//! closing soon, erasure, export and import.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod raw_sled;
use raw_sled::raw_sled;

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::MessageId;
use lipachat_session::export::{ExportLine, Party, export, import, import_with_limit};
use lipachat_session::instrumented::InstrumentedStore;
use lipachat_session::{
    Conversation, Durability, FutureTimeError, Invitation, ManualClock, OutboxStore, QueuedMessage,
    SessionError, Sessions, SledConfig, SledStore, StoreError, StoredOutcome, WindowStore,
};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn chat(customer: u64) -> Conversation {
    Conversation::parse("254110090747", &customer.to_string()).unwrap()
}

#[tokio::test]
async fn records_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let at = t("2026-11-23T10:00:00.250Z");
    {
        let store = SledStore::open(&path).unwrap();
        store.record_inbound(chat(254712345678), at).await.unwrap();
        store
            .record_gateway_closure(chat(254712345678), at + TimeDelta::hours(1))
            .await
            .unwrap();
        store.record_inbound(chat(254700000001), at).await.unwrap();
    }
    let store = SledStore::open(&path).unwrap();
    assert_eq!(store.count().await.unwrap(), 2);
    let record = store.window(chat(254712345678)).await.unwrap().unwrap();
    assert_eq!(record.last_inbound, at);
    assert_eq!(record.gateway_closed_at, Some(at + TimeDelta::hours(1)));
    assert_eq!(store.window(chat(254799999999)).await.unwrap(), None);
}

#[tokio::test]
async fn second_open_is_refused_as_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let first = SledStore::open(&path).unwrap();
    let err = SledStore::open(&path).unwrap_err();
    assert!(matches!(&err, StoreError::InUse { path: p } if *p == path));
    assert!(err.to_string().contains("in use"), "{err}");
    drop(first);
    SledStore::open(&path).expect("reopens once the first handle is gone");
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(SledStore::open(&path).unwrap());
    {
        let db = raw_sled(&path);
        db.insert("schema_version", &99u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    match SledStore::open(&path) {
        Err(StoreError::SchemaTooNew {
            found: 99,
            supported: lipachat_session::SCHEMA_VERSION,
            ..
        }) => {}
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[tokio::test]
async fn corrupt_value_is_a_typed_error_for_that_pair_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let at = Utc::now();
    {
        let store = SledStore::open(&path).unwrap();
        store.record_inbound(chat(254700000001), at).await.unwrap();
        store.record_inbound(chat(254700000002), at).await.unwrap();
    }
    {
        let db = raw_sled(&path);
        let windows = db.open_tree("windows").unwrap();
        windows
            .insert(SledStore::window_key(chat(254700000001)), &b"garbage"[..])
            .unwrap();
        windows
            .insert(b"not a conversation key", &b"x"[..])
            .unwrap();
        // A longer key that starts like a real one is not a conversation either.
        let mut long = SledStore::window_key(chat(254700000002)).to_vec();
        long.extend_from_slice(b"stray");
        windows.insert(long, &0i64.to_be_bytes()[..]).unwrap();
        db.flush().unwrap();
    }
    // Values changed behind the store's back after a clean shutdown: the integrity check
    // names the tree, and the store opens only when asked to accept what it holds.
    match SledStore::open(&path) {
        Err(StoreError::Damaged { report }) => {
            assert_eq!(
                report.problems(),
                vec!["windows: expected 2 entries, found 4 (2 unexpected), checksum differs"]
            );
        }
        other => panic!("expected Damaged, got {other:?}"),
    }
    let store = SledConfig::new(&path).accept_damage(true).open().unwrap();
    assert!(!store.integrity().is_intact());
    assert_eq!(store.skipped_keys(), 2);
    let err = store.window(chat(254700000001)).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { conversation, .. } if conversation == chat(254700000001))
    );
    assert!(err.to_string().contains("found 7"), "{err}");
    assert!(store.window(chat(254700000002)).await.unwrap().is_some());
    let all = store.windows().await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].1.is_err() && all[1].1.is_ok());
    // A new inbound message replaces the unreadable value.
    store.record_inbound(chat(254700000001), at).await.unwrap();
    assert_eq!(
        store
            .window(chat(254700000001))
            .await
            .unwrap()
            .unwrap()
            .last_inbound
            .timestamp_millis(),
        at.timestamp_millis()
    );
}

#[test]
fn many_threads_keep_the_maximum() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    let base = t("2026-11-23T00:00:00Z");
    let threads: Vec<_> = (0..8)
        .map(|thread| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..200i64 {
                    // Every thread writes the shared pair and one of its own, out of order.
                    let offset = (i * 7919 + thread * 31) % 1000;
                    store
                        .record_inbound_blocking(
                            chat(254700000000),
                            base + TimeDelta::seconds(offset),
                        )
                        .unwrap();
                    store
                        .record_inbound_blocking(
                            chat(254711000000 + thread as u64),
                            base + TimeDelta::seconds(offset),
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let expected_max = (0..8i64)
        .flat_map(|thread| (0..200i64).map(move |i| (i * 7919 + thread * 31) % 1000))
        .max()
        .unwrap();
    let shared = store.window_blocking(chat(254700000000)).unwrap().unwrap();
    assert_eq!(shared.last_inbound, base + TimeDelta::seconds(expected_max));
    for thread in 0..8i64 {
        let own_max = (0..200i64)
            .map(|i| (i * 7919 + thread * 31) % 1000)
            .max()
            .unwrap();
        let own = store
            .window_blocking(chat(254711000000 + thread as u64))
            .unwrap()
            .unwrap();
        assert_eq!(own.last_inbound, base + TimeDelta::seconds(own_max));
    }
    // Durable writers shared flushes: far fewer flushes than the 3,200 records.
    assert!(
        store.group_commit_flushes() < 3200,
        "{} flushes",
        store.group_commit_flushes()
    );
}

#[tokio::test]
async fn future_times_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(t("2026-11-23T10:00:00Z"));
    let sessions =
        Sessions::new(SledStore::open(dir.path().join("db")).unwrap()).with_clock(clock.clone());
    let ahead = clock.now_for_test() + TimeDelta::minutes(5) + TimeDelta::milliseconds(1);
    match sessions.record_inbound(chat(254712345678), ahead).await {
        Err(SessionError::FutureTime(FutureTimeError::AheadOfRealClock {
            max_skew_secs: 300,
            ..
        })) => {}
        other => panic!("expected FutureTime, got {other:?}"),
    }
    assert_eq!(sessions.count().await.unwrap(), 0);
    let at_limit = clock.now_for_test() + TimeDelta::minutes(5);
    assert!(
        sessions
            .record_inbound(chat(254712345678), at_limit)
            .await
            .is_ok()
    );
}

trait NowForTest {
    fn now_for_test(&self) -> DateTime<Utc>;
}
impl NowForTest for ManualClock {
    fn now_for_test(&self) -> DateTime<Utc> {
        lipachat_session::Clock::now(self)
    }
}

#[tokio::test]
async fn opened_reports_a_window_that_was_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(t("2026-11-23T10:00:00Z"));
    let sessions =
        Sessions::new(SledStore::open(dir.path().join("db")).unwrap()).with_clock(clock.clone());
    let c = chat(254712345678);
    assert!(sessions.record_inbound_now(c).await.unwrap().opened);
    clock.advance(TimeDelta::hours(1));
    assert!(
        !sessions.record_inbound_now(c).await.unwrap().opened,
        "already open"
    );
    clock.advance(TimeDelta::hours(30));
    // A late webhook for a message older than the window opens nothing.
    let stale = clock.now_for_test() - TimeDelta::hours(25);
    assert!(!sessions.record_inbound(c, stale).await.unwrap().opened);
    assert!(sessions.record_inbound_now(c).await.unwrap().opened);
    // Closed by the gateway, then a reply opens it again.
    sessions.record_gateway_closure(c).await.unwrap();
    assert_eq!(sessions.state(c).await.unwrap().name(), "closed");
    clock.advance(TimeDelta::seconds(1));
    assert!(sessions.record_inbound_now(c).await.unwrap().opened);
}

#[tokio::test]
async fn closing_soon_uses_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(t("2026-11-24T10:00:00Z"));
    let sessions =
        Sessions::new(SledStore::open(dir.path().join("db")).unwrap()).with_clock(clock.clone());
    let now = clock.now_for_test();
    // Last inbound 23h30m ago: closes in 30 min. 22h ago: closes in 2h. 25h ago: closed.
    sessions
        .record_inbound(chat(254700000001), now - TimeDelta::minutes(23 * 60 + 30))
        .await
        .unwrap();
    sessions
        .record_inbound(chat(254700000002), now - TimeDelta::hours(22))
        .await
        .unwrap();
    sessions
        .record_inbound(chat(254700000003), now - TimeDelta::hours(25))
        .await
        .unwrap();
    sessions
        .record_inbound(
            chat(254700000004),
            now - TimeDelta::hours(23) - TimeDelta::minutes(50),
        )
        .await
        .unwrap();
    sessions
        .store()
        .record_gateway_closure(chat(254700000004), now - TimeDelta::minutes(1))
        .await
        .unwrap();
    let soon = sessions.closing_within(TimeDelta::hours(1)).await.unwrap();
    assert_eq!(
        soon.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        vec![chat(254700000001)]
    );
    let later = sessions.closing_within(TimeDelta::hours(3)).await.unwrap();
    assert_eq!(later.len(), 2);
    // Exactly at the boundary: expiry == now + span is included.
    let exact = sessions
        .closing_within(TimeDelta::minutes(30))
        .await
        .unwrap();
    assert_eq!(exact.len(), 1);
    let before = sessions
        .closing_within(TimeDelta::minutes(30) - TimeDelta::milliseconds(1))
        .await
        .unwrap();
    assert!(before.is_empty());
}

fn queued(payload: &str) -> QueuedMessage {
    QueuedMessage {
        message_id: MessageId::new(),
        queued_at: t("2026-11-23T10:00:00Z"),
        payload: payload.into(),
    }
}

#[tokio::test]
async fn outbox_order_limit_and_reassign() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    let c = chat(254712345678);
    let (a, b, d) = (queued("1"), queued("2"), queued("3"));
    assert!(store.enqueue(c, a.clone(), 2).await.unwrap());
    assert!(
        !store.enqueue(c, a.clone(), 2).await.unwrap(),
        "same id is not queued twice"
    );
    assert!(store.enqueue(c, b.clone(), 2).await.unwrap());
    assert!(matches!(
        store.enqueue(c, d, 2).await,
        Err(StoreError::OutboxFull { limit: 2, .. })
    ));
    let fresh = MessageId::new();
    assert!(store.reassign(c, a.message_id, fresh).await.unwrap());
    let ids: Vec<_> = store
        .queued(c)
        .await
        .unwrap()
        .iter()
        .map(|m| m.message_id)
        .collect();
    assert_eq!(ids, vec![fresh, b.message_id]);
    assert!(store.dequeue(c, fresh).await.unwrap());
    assert!(!store.dequeue(c, fresh).await.unwrap());
    assert_eq!(store.conversations_with_queued().await.unwrap(), vec![c]);
    let now = Utc::now();
    let (first, later) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    assert!(
        store
            .claim(b.message_id, first, now, TimeDelta::seconds(30))
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim(b.message_id, first, now, TimeDelta::seconds(30))
            .await
            .unwrap()
    );
    // The lease runs on the store's clock: a caller's clock past it takes nothing.
    assert!(
        !store
            .claim(
                b.message_id,
                later,
                now + TimeDelta::seconds(31),
                TimeDelta::seconds(30)
            )
            .await
            .unwrap()
    );
    store.release(b.message_id, first).await.unwrap();
    assert!(
        store
            .claim(b.message_id, later, now, TimeDelta::seconds(30))
            .await
            .unwrap()
    );
    store.release(b.message_id, later).await.unwrap();
    assert!(
        store
            .claim(b.message_id, first, now, TimeDelta::seconds(30))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn forget_erases_everything_for_the_pair() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    let (c, other) = (chat(254712345678), chat(254712345679));
    for conversation in [c, other] {
        store
            .record_inbound(conversation, Utc::now())
            .await
            .unwrap();
        store.enqueue(conversation, queued("{}"), 20).await.unwrap();
        store
            .set_invitation(
                conversation,
                Some(Invitation {
                    message_id: MessageId::new(),
                    sent_at: Utc::now(),
                }),
            )
            .await
            .unwrap();
        store
            .put_outcome(
                conversation,
                StoredOutcome::new(MessageId::from_uuid(uuid::Uuid::nil()), "{}"),
            )
            .await
            .unwrap();
    }
    assert!(store.forget(c).await.unwrap());
    assert!(!store.forget(c).await.unwrap());
    assert_eq!(store.window(c).await.unwrap(), None);
    assert!(store.queued(c).await.unwrap().is_empty());
    assert_eq!(store.invitation(c).await.unwrap(), None);
    assert_eq!(
        store
            .outcome(c, MessageId::from_uuid(uuid::Uuid::nil()))
            .await
            .unwrap(),
        None
    );
    assert!(store.window(other).await.unwrap().is_some());
    assert_eq!(store.queued(other).await.unwrap().len(), 1);
    assert!(
        store
            .outcome(other, MessageId::from_uuid(uuid::Uuid::nil()))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .inbound_between(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC)
            .await
            .unwrap()
            .iter()
            .all(|(x, _)| *x == other)
    );
}

#[tokio::test]
async fn export_import_round_trip_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let source = SledStore::open(dir.path().join("a")).unwrap();
    let at = t("2026-11-23T10:00:00.123Z");
    source.record_inbound(chat(254700000001), at).await.unwrap();
    source.record_inbound(chat(254700000002), at).await.unwrap();
    source
        .record_gateway_closure(chat(254700000002), at + TimeDelta::minutes(5))
        .await
        .unwrap();
    source
        .enqueue(chat(254700000001), queued("{\"kind\":\"text\"}"), 20)
        .await
        .unwrap();
    source
        .set_invitation(
            chat(254700000003),
            Some(Invitation {
                message_id: MessageId::new(),
                sent_at: at,
            }),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    let written = export(&source, &mut out).await.unwrap();
    assert_eq!(
        (written.windows, written.queued, written.invitations),
        (2, 1, 1)
    );

    let target = SledConfig::new(dir.path().join("b"))
        .durability(Durability::Periodic {
            interval: std::time::Duration::from_millis(100),
        })
        .open()
        .unwrap();
    let read = import(&target, out.as_slice()).await.unwrap();
    assert_eq!(read, written);
    let mut again = Vec::new();
    export(&target, &mut again).await.unwrap();
    assert_eq!(
        String::from_utf8(again).unwrap(),
        String::from_utf8(out.clone()).unwrap()
    );

    // A bad line anywhere: a typed error with its number, and nothing imported.
    let empty = SledStore::open(dir.path().join("c")).unwrap();
    let mut bad = out.clone();
    bad.extend_from_slice(b"{\"kind\":\"window\",\"business\":\"12\",\"customer\":\"254700000009\",\"last_inbound\":\"2026-11-23T10:00:00Z\",\"gateway_closed_at\":null}\n");
    match import(&empty, bad.as_slice()).await {
        Err(StoreError::Import { line: 6, detail }) => {
            assert!(detail.contains("digits"), "{detail}")
        }
        other => panic!("expected an import error on line 6, got {other:?}"),
    }
    assert_eq!(empty.count().await.unwrap(), 0);
    assert!(matches!(
        import(
            &empty,
            format!(
                "{{\"kind\":\"header\",\"format\":\"lipachat-session-export\",\"version\":{}}}\n",
                lipachat_session::export::FORMAT_VERSION + 1
            )
            .as_bytes()
        )
        .await,
        Err(StoreError::Import { line: 1, .. })
    ));
    assert!(matches!(
        import(&empty, &b"not json\n"[..]).await,
        Err(StoreError::Import { line: 1, .. })
    ));
}

/// A time RFC 3339 cannot write (a year before 0, as a `--at` with a large offset gives)
/// is exported in ISO 8601's signed form and imported back as it was: one such time made
/// the whole export refused by its own import.
#[tokio::test]
async fn times_outside_rfc_3339s_years_survive_export_and_import() {
    let dir = tempfile::tempdir().unwrap();
    let source = SledStore::open(dir.path().join("a")).unwrap();
    let year_minus_1 = t("-0001-12-31T00:01:00Z");
    source
        .record_inbound(chat(254700000001), year_minus_1)
        .await
        .unwrap();
    source
        .record_gateway_closure(chat(254700000001), year_minus_1 + TimeDelta::hours(1))
        .await
        .unwrap();
    source
        .set_invitation(
            chat(254700000002),
            Some(Invitation {
                message_id: MessageId::new(),
                sent_at: year_minus_1,
            }),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    let written = export(&source, &mut out).await.unwrap();
    assert!(
        String::from_utf8_lossy(&out).contains("\"-0001-12-31T00:01:00.000Z\""),
        "{}",
        String::from_utf8_lossy(&out)
    );

    let target = SledStore::open(dir.path().join("b")).unwrap();
    assert_eq!(import(&target, out.as_slice()).await.unwrap(), written);
    let window = target.window(chat(254700000001)).await.unwrap().unwrap();
    assert_eq!(
        window,
        source.window(chat(254700000001)).await.unwrap().unwrap()
    );
    assert_eq!(window.last_inbound, year_minus_1);
    let mut again = Vec::new();
    export(&target, &mut again).await.unwrap();
    assert_eq!(again, out);
}

#[tokio::test]
async fn periodic_mode_writes_reach_disk_by_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = SledConfig::new(&path)
        .durability(Durability::Periodic {
            interval: std::time::Duration::from_millis(50),
        })
        .open()
        .unwrap();
    store
        .record_inbound(chat(254712345678), Utc::now())
        .await
        .unwrap();
    assert_eq!(store.group_commit_flushes(), 0);
    drop(store);
    let store = SledStore::open(&path).unwrap();
    assert_eq!(store.count().await.unwrap(), 1, "clean shutdown flushes");
    let _ = Arc::new(store);
}

/// JSON lines of an export: the header, then `lines`.
fn export_lines(lines: &[ExportLine]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in std::iter::once(&ExportLine::Header {
        format: lipachat_session::export::FORMAT.into(),
        version: lipachat_session::export::FORMAT_VERSION,
    })
    .chain(lines)
    {
        serde_json::to_writer(&mut out, line).unwrap();
        out.push(b'\n');
    }
    out
}

fn queued_line(conversation: Conversation, message_id: MessageId) -> ExportLine {
    ExportLine::Queued {
        business: conversation.business,
        customer: Party::phone(conversation.phone().unwrap()),
        message_id,
        queued_at: t("2026-11-23T10:00:00Z"),
        payload: "{}".into(),
    }
}

/// An import obeys the outbox limit: a conversation whose outbox would hold more than it
/// (queued already plus imported, each id once) is refused at the line of the first
/// message over it, and nothing is imported.
#[tokio::test]
async fn import_obeys_the_outbox_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    let (c, other) = (chat(254700000001), chat(254700000002));
    let mut lines = vec![ExportLine::Window {
        business: other.business,
        customer: Party::phone(other.phone().unwrap()),
        last_inbound: t("2026-11-23T10:00:00Z"),
        gateway_closed_at: None,
    }];
    lines.extend((0..10_000).map(|_| queued_line(c, MessageId::new())));
    match import(&store, export_lines(&lines).as_slice()).await {
        // Header, window, then the 21st queued message.
        Err(StoreError::Import { line: 23, detail }) => {
            assert!(detail.contains("more than 20 messages"), "{detail}");
            assert!(detail.contains(&c.to_string()), "{detail}");
        }
        other => panic!("expected the limit refused at line 23, got {other:?}"),
    }
    assert_eq!(store.count().await.unwrap(), 0, "nothing was imported");
    assert!(store.queued(c).await.unwrap().is_empty());

    // Messages already queued count, an id imported twice counts once, and the limit
    // can be set.
    for _ in 0..15 {
        store.enqueue(c, queued("{}"), 20).await.unwrap();
    }
    let repeated = MessageId::new();
    let five: Vec<ExportLine> = (0..4)
        .map(|_| queued_line(c, MessageId::new()))
        .chain([queued_line(c, repeated), queued_line(c, repeated)])
        .collect();
    let read = import(&store, export_lines(&five).as_slice())
        .await
        .unwrap();
    assert_eq!(read.queued, 6, "every line is read");
    assert_eq!(store.queued(c).await.unwrap().len(), 20, "each id once");
    let one_more = [queued_line(c, MessageId::new())];
    assert!(matches!(
        import(&store, export_lines(&one_more).as_slice()).await,
        Err(StoreError::Import { line: 2, .. })
    ));
    let wider = import_with_limit(&store, export_lines(&one_more).as_slice(), 21)
        .await
        .unwrap();
    assert_eq!(wider.queued, 1);
    assert_eq!(store.queued(c).await.unwrap().len(), 21);
}

/// An import's work is linear: one read of each outbox that receives messages and one
/// write per line, whatever the size (counted, not timed).
#[tokio::test]
async fn import_costs_a_fixed_number_of_store_operations_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = InstrumentedStore::new(
        SledConfig::new(dir.path().join("db"))
            .durability(Durability::Periodic {
                interval: std::time::Duration::from_secs(1),
            })
            .open()
            .unwrap(),
    );
    let conversations = 2_000u64;
    let mut lines = Vec::new();
    for n in 0..conversations {
        let c = chat(254_700_000_000 + n);
        lines.push(ExportLine::Window {
            business: c.business,
            customer: Party::phone(c.phone().unwrap()),
            last_inbound: t("2026-11-23T10:00:00Z"),
            gateway_closed_at: None,
        });
        lines.extend((0..3).map(|_| queued_line(c, MessageId::new())));
        lines.push(ExportLine::Invitation {
            business: c.business,
            customer: Party::phone(c.phone().unwrap()),
            message_id: MessageId::new(),
            sent_at: t("2026-11-23T09:00:00Z"),
        });
    }
    let read = import(&store, export_lines(&lines).as_slice())
        .await
        .unwrap();
    assert_eq!(
        (read.windows, read.queued, read.invitations),
        (conversations, 3 * conversations, conversations)
    );
    let calls = store.all_calls();
    let n = conversations as usize;
    assert_eq!(calls.get("queued"), Some(&n), "one outbox read each");
    assert_eq!(calls.get("enqueue"), Some(&(3 * n)));
    assert_eq!(calls.get("record_inbound"), Some(&n));
    assert_eq!(calls.get("set_invitation"), Some(&n));
    assert_eq!(
        calls.values().sum::<usize>(),
        6 * n + 1,
        "nothing else but the final flush: {calls:?}"
    );
    assert_eq!(store.inner().count().await.unwrap(), conversations);
}

/// The instrumented wrapper's faults: one numbered call failing after it did its work (the
/// answer lost), a pause, and a hook run as a numbered call begins; every call in order.
#[tokio::test]
async fn an_instrumented_store_strikes_the_chosen_call_as_chosen() {
    use lipachat_session::instrumented::Fault;
    let dir = tempfile::tempdir().unwrap();
    let store = InstrumentedStore::new(SledStore::open(dir.path().join("db")).unwrap());
    let c = chat(254_712_345_678);
    let at = DateTime::from_timestamp_millis(1_795_435_200_000).unwrap();

    store.fault_at("record_inbound", 2, Fault::After);
    store.record_inbound(c, at).await.unwrap();
    assert!(!store.struck());
    let later = at + TimeDelta::minutes(1);
    let error = store.record_inbound(c, later).await.unwrap_err();
    assert!(store.struck());
    assert!(error.retry_later_may_help(), "{error}");
    // The work was done; only its answer was lost.
    assert_eq!(store.window(c).await.unwrap().unwrap().last_inbound, later);

    let hooked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&hooked);
    store.at_call(4, move || {
        flag.store(true, std::sync::atomic::Ordering::SeqCst)
    });
    store.fault_at(
        "count",
        1,
        Fault::Pause(std::time::Duration::from_millis(50)),
    );
    let started = std::time::Instant::now();
    assert_eq!(store.count().await.unwrap(), 1);
    assert!(started.elapsed() >= std::time::Duration::from_millis(50));
    assert!(hooked.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(
        store.order(),
        ["record_inbound", "record_inbound", "window", "count"]
    );
}

/// Concurrent durable writers share flushes: while more than one waits, the committer
/// gathers them (up to 500 µs, or until as many wait as recent flushes covered) instead
/// of flushing again as soon as one arrives; a lone writer's records each get their own
/// flush at once.
#[test]
fn concurrent_durable_writers_share_flushes_and_a_lone_writer_is_not_held_back() {
    const THREADS: u64 = 16;
    const EACH: u64 = 25;
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    let at = Utc::now() - TimeDelta::hours(1);
    let before = store.group_commit_flushes();
    let writers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let store = store.clone();
            std::thread::spawn(move || {
                for n in 0..EACH {
                    let customer = (254_700_000_000 + thread * EACH + n).to_string();
                    let conversation = Conversation::parse("254110090747", &customer).unwrap();
                    store.record_inbound_blocking(conversation, at).unwrap();
                    // Each writer does other work between records (a request to answer),
                    // for different times, so they arrive spread out.
                    std::thread::sleep(std::time::Duration::from_micros(100 * (thread % 5 + 1)));
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let concurrent = store.group_commit_flushes() - before;
    // Flushing whenever one waits gives a flush per one to three of these records.
    assert!(
        concurrent <= THREADS * EACH / 4,
        "{concurrent} flushes for {} concurrent records",
        THREADS * EACH
    );

    let before = store.group_commit_flushes();
    for n in 0..20 {
        store
            .record_inbound_blocking(
                Conversation::parse("254110090747", &format!("25471000{n:04}")).unwrap(),
                at,
            )
            .unwrap();
    }
    assert_eq!(store.group_commit_flushes() - before, 20);
}
