//! The store conformance suite: what every [`Store`] must do, written once and run
//! against each implementation (sled here, Redis in `lipachat-redis`), each backend's
//! test file running it with one line,
//! [`conformance_tests!`](crate::conformance_tests)`(store())`.
//!
//! Enabled by the cargo feature `conformance`. **Not a stable API**: it is the contract's
//! test, and grows and tightens with the contract; a backend outside this workspace should
//! pin the version it passes. Each function exercises one part of the contract documented
//! on [`WindowStore`](crate::WindowStore) and [`OutboxStore`](crate::OutboxStore) with
//! plain `assert!`/`assert_eq!`, whose message names the violated rule.
//! Each uses its own business numbers and looks only at them, so the functions may share
//! one store and run in any order; they must not run concurrently on one store, because
//! [`count_windows_and_forget`] counts. Some spawn tasks, so call them inside a
//! multi-threaded Tokio runtime.
//!
//! ```
//! use lipachat_session::{SledStore, conformance};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = SledStore::open(dir.path().join("db"))?;
//! conformance::keep_max(&store).await;
//! conformance::outbox(&store).await;
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use crate::store::{
    Alias, DEFAULT_OUTBOX_LIMIT, InboundReceipt, InboundUpdate, Invitation, MAX_WA_ID_BYTES,
    MovedRecords, QueuedMessage, RememberedInbound, Store, StoredOutcome,
};
use crate::window::truncate_to_millis;
use crate::{
    Bsuid, Conversation, Customer, GroupId, InboundId, MessageId, PhoneNumber, StoreError,
    WindowRecord,
};

/// Defines, from the one list of checks, [`CHECKS`], [`run_all`] and the exported
/// [`conformance_tests!`](crate::conformance_tests) macro. `$d` is a `$` token, so the
/// macro defined here can have metavariables of its own.
macro_rules! suite {
    ($d:tt $($check:ident),* $(,)?) => {
        /// The names of the suite's checks, in the order [`run_all`] runs them.
        pub const CHECKS: &[&str] = &[$(stringify!($check)),*];

        /// Runs every check of the suite, one after the other, on `store`.
        pub async fn run_all<S: Store + Clone>(store: &S) {
            $($check(store).await;)*
        }

        /// Defines one test per check of the store conformance suite
        /// ([`lipachat_session::conformance`](crate::conformance)), each on a fresh store,
        /// in a backend's test file, with one line:
        ///
        /// ```ignore
        /// lipachat_session::conformance_tests!(store());
        /// ```
        ///
        /// `store()` is any expression giving a future whose output is `Option<(G, S)>`:
        /// `S` is the store to check (a [`Store`](crate::Store) + `Clone`), `G` whatever
        /// must live as long as the test (a temporary directory, a server process); `None`
        /// skips the test (the backend is not available here). The tests run on a
        /// multi-threaded Tokio runtime, so the calling crate needs `tokio` (features
        /// `macros` and `rt-multi-thread`) among its dev-dependencies, and
        /// `lipachat-session` with the feature `conformance`. The checks are the ones the
        /// suite has (the list lives in one place, here), each test named after its check.
        ///
        /// Not a stable API: checks are added, renamed and tightened as the store contract
        /// is; a backend outside this workspace should pin the version it passes.
        #[macro_export]
        macro_rules! conformance_tests {
            ($d make:expr) => {
                $(
                    #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $check() {
                        let Some((_lives_as_long_as_the_test, store)) = $d make.await else {
                            return;
                        };
                        $d crate::conformance::$check(&store).await;
                    }
                )*
            };
        }
    };
}

suite!($
    keep_max,
    concurrent_keep_max,
    gateway_closure,
    window_model,
    inbound_between,
    count_windows_and_forget,
    outbox,
    concurrent_outbox,
    invitations,
    outcomes,
    outcome_expiry,
    outcome_wa_index,
    outbox_with_outcome,
    claims,
    redelivery,
    identity_registry,
    aliases,
    user_and_group_conversations,
    move_customer,
    outcome_conversation,
    outcome_conversation_by_wa_id,
    redelivery_transfer,
    marketing_consent,
    free_entry_point,
    cost_records,
    concurrent_reach,
    mixed_count_clocks,
    opt_out_ties,
    free_entry_point_confirmation_bounds,
    move_customer_consent,
    consent_export_round_trip,
    customer_back_off,
);

/// The value of a store call the cost and consent checks expect to succeed.
#[track_caller]
fn ok<T>(result: Result<T, StoreError>, doing: impl std::fmt::Display) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("store conformance: {doing} failed: {error}"),
    }
}

/// Asserts `found == expected`, naming the violated `rule`.
#[track_caller]
fn check_eq<T: PartialEq + std::fmt::Debug>(found: T, expected: T, rule: impl std::fmt::Display) {
    assert!(
        found == expected,
        "store conformance: {rule}\n  expected: {expected:?}\n     found: {found:?}"
    );
}

fn phone(digits: u64) -> PhoneNumber {
    match PhoneNumber::from_u64(digits) {
        Some(phone) => phone,
        None => panic!("store conformance: {digits} is not a phone number"),
    }
}

/// The business numbers used by one check: `254100000000 + 100 * check + n`.
fn business(check: u64, n: u64) -> PhoneNumber {
    phone(254_100_000_000 + 100 * check + n)
}

fn chat(business: PhoneNumber, customer: u64) -> Conversation {
    Conversation::new(business, phone(254_700_000_000 + customer))
}

fn base() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_795_435_200_000).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

fn ms(n: i64) -> TimeDelta {
    TimeDelta::milliseconds(n)
}

fn message(payload: &str, queued_at: DateTime<Utc>) -> QueuedMessage {
    QueuedMessage {
        message_id: MessageId::new(),
        queued_at,
        payload: payload.to_owned(),
    }
}

async fn ids<S: Store>(store: &S, conversation: Conversation) -> Vec<MessageId> {
    store
        .queued(conversation)
        .await
        .expect("queued")
        .into_iter()
        .map(|m| m.message_id)
        .collect()
}

/// Awaits calls made concurrently, each answering whether it won (added the message,
/// took the claim); how many won. Panics with `doing` if a call failed.
async fn count_winners(
    handles: Vec<tokio::task::JoinHandle<Result<bool, StoreError>>>,
    doing: &str,
) -> usize {
    let mut winners = 0;
    for handle in handles {
        match handle.await {
            Ok(Ok(true)) => winners += 1,
            Ok(Ok(false)) => {}
            Ok(Err(error)) => panic!("store conformance: {doing} failed: {error}"),
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
    winners
}

/// A tiny deterministic generator (xorshift), so failures replay exactly.
struct Sequence(u64);

impl Sequence {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Recording keeps the maximum inbound time, reports the record before and after, keeps
/// millisecond precision, and keeps conversations apart.
pub async fn keep_max<S: Store + Clone>(store: &S) {
    let b = business(1, 0);
    let c = chat(b, 1);
    let t0 = base() + TimeDelta::nanoseconds(123_456_789);
    let t0_ms = truncate_to_millis(t0);

    assert!(
        store.window(c).await.expect("window").is_none(),
        "a new conversation has no record"
    );
    let first = store.record_inbound(c, t0).await.expect("record_inbound");
    assert_eq!(
        first.previous, None,
        "the first inbound message has no previous record"
    );
    assert_eq!(
        first.current,
        WindowRecord::inbound(t0_ms),
        "the stored time is truncated to the millisecond"
    );

    let older = store
        .record_inbound(c, t0 - TimeDelta::hours(1))
        .await
        .expect("record_inbound");
    assert_eq!(
        older.previous,
        Some(WindowRecord::inbound(t0_ms)),
        "previous record"
    );
    assert_eq!(
        older.current,
        WindowRecord::inbound(t0_ms),
        "an older inbound time does not move the record back"
    );

    let same = store
        .record_inbound(c, t0_ms)
        .await
        .expect("record_inbound");
    assert_eq!(
        same.current,
        WindowRecord::inbound(t0_ms),
        "recording the same time changes nothing"
    );

    let newer = t0_ms + ms(1);
    let update = store
        .record_inbound(c, newer)
        .await
        .expect("record_inbound");
    assert_eq!(
        update.previous,
        Some(WindowRecord::inbound(t0_ms)),
        "previous record"
    );
    assert_eq!(
        update.current,
        WindowRecord::inbound(newer),
        "a newer inbound time moves the record forward by 1 ms"
    );
    assert_eq!(
        store.window(c).await.expect("window"),
        Some(WindowRecord::inbound(newer)),
        "window() returns what record_inbound stored"
    );

    // The same customer with another business number is another window.
    let other = Conversation::with_customer(business(1, 1), c.customer);
    assert_eq!(
        store.window(other).await.expect("window"),
        None,
        "windows are per (business, customer)"
    );
    store
        .record_inbound(other, base() - TimeDelta::days(3))
        .await
        .expect("record_inbound");
    assert_eq!(
        store.window(c).await.expect("window"),
        Some(WindowRecord::inbound(newer)),
        "another business's record does not touch this one"
    );

    // Times far from now (before the epoch, far in the future) are kept exactly.
    let early = chat(b, 2);
    let epochless = DateTime::from_timestamp_millis(-86_400_123).unwrap_or(base());
    store
        .record_inbound(early, epochless)
        .await
        .expect("record_inbound");
    assert_eq!(
        store.window(early).await.expect("window"),
        Some(WindowRecord::inbound(epochless)),
        "a time before 1970 is kept exactly"
    );
    let late = DateTime::from_timestamp_millis(253_402_300_799_999).unwrap_or(base());
    store
        .record_inbound(early, late)
        .await
        .expect("record_inbound");
    assert_eq!(
        store.window(early).await.expect("window"),
        Some(WindowRecord::inbound(late)),
        "a time in the year 9999 is kept exactly"
    );
}

/// Concurrent writers, out of order, on one shared conversation and one each: every
/// stored time is the maximum written, and no update ever goes backwards.
pub async fn concurrent_keep_max<S: Store + Clone>(store: &S) {
    const TASKS: u64 = 8;
    const WRITES: i64 = 40;
    let b = business(2, 0);
    let shared = chat(b, 0);
    let offset = |task: u64, i: i64| (i * 7919 + task as i64 * 31) % 1000;
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let own = chat(b, 1 + task);
            for i in 0..WRITES {
                let at = base() + ms(offset(task, i));
                for conversation in [shared, own] {
                    let update = store.record_inbound(conversation, at).await.expect("record_inbound");
                    assert!(
                        update.current.last_inbound >= at,
                        "store conformance: record_inbound returned {:?}, earlier than the time just written ({at})",
                        update.current
                    );
                    if let Some(previous) = update.previous {
                        assert!(
                            previous.last_inbound <= update.current.last_inbound,
                            "store conformance: an update went backwards: {previous:?} -> {:?}",
                            update.current
                        );
                    }
                }
            }
        }));
    }
    for handle in handles {
        if let Err(error) = handle.await {
            std::panic::resume_unwind(error.into_panic());
        }
    }
    let overall = (0..TASKS)
        .flat_map(|t| (0..WRITES).map(move |i| offset(t, i)))
        .max();
    assert_eq!(
        store
            .window(shared)
            .await
            .expect("window")
            .map(|r| r.last_inbound),
        overall.map(|o| base() + ms(o)),
        "concurrent writers: the shared conversation holds the maximum"
    );
    for task in 0..TASKS {
        let own = (0..WRITES).map(|i| offset(task, i)).max();
        assert_eq!(
            store
                .window(chat(b, 1 + task))
                .await
                .expect("window")
                .map(|r| r.last_inbound),
            own.map(|o| base() + ms(o)),
            "concurrent writers: each task's own conversation holds its maximum"
        );
    }
}

/// Gateway closures: none for an unknown conversation, kept as the latest, in force
/// until an inbound message timed after it, untouched by a late webhook for an earlier
/// message.
pub async fn gateway_closure<S: Store + Clone>(store: &S) {
    let b = business(3, 0);
    let c = chat(b, 1);
    let t0 = base();
    let before = store.count().await.expect("count");
    assert_eq!(
        store
            .record_gateway_closure(c, t0)
            .await
            .expect("record_gateway_closure"),
        None,
        "a closure for a conversation never messaged stores nothing"
    );
    assert_eq!(
        store.window(c).await.expect("window"),
        None,
        "a closure alone creates no record"
    );
    assert_eq!(
        store.count().await.expect("count"),
        before,
        "a closure alone creates no record"
    );

    store.record_inbound(c, t0).await.expect("record_inbound");
    let closed_at = t0 + TimeDelta::hours(2) + TimeDelta::nanoseconds(999_999);
    let closed = store
        .record_gateway_closure(c, closed_at)
        .await
        .expect("record_gateway_closure");
    let expected = WindowRecord::inbound(t0).with_gateway_closure(truncate_to_millis(closed_at));
    assert_eq!(
        closed,
        Some(expected),
        "the closure is stored, truncated to the millisecond"
    );
    assert_eq!(
        store.window(c).await.expect("window"),
        Some(expected),
        "window() shows the closure"
    );

    // An earlier report does not move the closure back.
    let earlier = store
        .record_gateway_closure(c, t0 + TimeDelta::hours(1))
        .await
        .expect("record_gateway_closure");
    assert_eq!(earlier, Some(expected), "a closure keeps the latest report");

    // A late webhook for a message before the closure keeps it in force.
    let late = store
        .record_inbound(c, t0 + TimeDelta::hours(1))
        .await
        .expect("record_inbound");
    let expected = expected.with_inbound(t0 + TimeDelta::hours(1));
    assert_eq!(
        late.current, expected,
        "an inbound message timed before the closure keeps it"
    );
    assert_eq!(
        late.current.effective_gateway_closure(),
        Some(truncate_to_millis(closed_at)),
        "the closure is still in force"
    );

    // An inbound message at exactly the closure instant keeps it (closed_at >= last).
    let at_closure = truncate_to_millis(closed_at);
    let exact = store
        .record_inbound(c, at_closure)
        .await
        .expect("record_inbound");
    assert_eq!(
        exact.current,
        WindowRecord {
            last_inbound: at_closure,
            gateway_closed_at: Some(at_closure),
        },
        "an inbound message at the closure instant keeps the closure"
    );

    // A reply after the closure reopens the window and drops it.
    let reply = store
        .record_inbound(c, at_closure + ms(1))
        .await
        .expect("record_inbound");
    assert_eq!(
        reply.previous,
        Some(exact.current),
        "previous record includes the closure"
    );
    assert_eq!(
        reply.current,
        WindowRecord::inbound(at_closure + ms(1)),
        "a later inbound message drops the closure"
    );
    assert_eq!(
        store.window(c).await.expect("window"),
        Some(WindowRecord::inbound(at_closure + ms(1))),
        "the dropped closure is gone from the store"
    );

    // A closure reported as earlier than the last inbound message is stored, not in force.
    let stale = store
        .record_gateway_closure(c, t0)
        .await
        .expect("record_gateway_closure");
    let expected = WindowRecord::inbound(at_closure + ms(1)).with_gateway_closure(t0);
    assert_eq!(
        stale,
        Some(expected),
        "a stale closure is stored as reported"
    );
    assert_eq!(
        store
            .window(c)
            .await
            .expect("window")
            .and_then(|r| r.effective_gateway_closure()),
        None,
        "a closure earlier than the last inbound message is not in force"
    );
}

/// A long deterministic random sequence of inbound messages and closures over a few
/// conversations, compared after every step with [`WindowRecord`]'s own rules.
pub async fn window_model<S: Store + Clone>(store: &S) {
    let b = business(4, 0);
    let conversations: Vec<_> = (0..4).map(|i| chat(b, i)).collect();
    let mut model: Vec<Option<WindowRecord>> = vec![None; conversations.len()];
    let mut random = Sequence(0x2545_f491_4f6c_dd1d);
    for step in 0..300 {
        let i = random.below(conversations.len() as u64) as usize;
        let c = conversations[i];
        let at = base()
            + ms(random.below(5_000) as i64)
            + TimeDelta::nanoseconds(random.below(1_000_000) as i64);
        let at_ms = truncate_to_millis(at);
        if random.below(3) == 0 {
            let expected = model[i].map(|r| r.with_gateway_closure(at_ms));
            let found = store
                .record_gateway_closure(c, at)
                .await
                .expect("record_gateway_closure");
            assert_eq!(found, expected, "step {step}: closure at {at_ms} on {c}");
            model[i] = expected;
        } else {
            let expected = model[i].map_or(WindowRecord::inbound(at_ms), |r| r.with_inbound(at_ms));
            let found = store.record_inbound(c, at).await.expect("record_inbound");
            assert_eq!(
                found.previous, model[i],
                "step {step}: previous record of {c}"
            );
            assert_eq!(
                found.current, expected,
                "step {step}: inbound at {at_ms} on {c}"
            );
            model[i] = Some(expected);
        }
        assert_eq!(
            store.window(c).await.expect("window"),
            model[i],
            "step {step}: window of {c}"
        );
    }
}

/// `inbound_between(after, up_to)` lists exactly `after < t <= up_to`, across business
/// numbers, oldest first, with each record's closure.
pub async fn inbound_between<S: Store + Clone>(store: &S) {
    let (b1, b2) = (business(5, 0), business(5, 1));
    let t0 = base() + TimeDelta::days(400);
    let records = [
        (chat(b1, 1), t0),
        (chat(b1, 2), t0 + ms(1)),
        (chat(b2, 1), t0 + ms(1)),
        (chat(b2, 2), t0 + ms(2)),
        (chat(b1, 3), t0 + ms(3)),
    ];
    for (c, at) in records {
        store.record_inbound(c, at).await.expect("record_inbound");
    }
    let closure = t0 + ms(10);
    store
        .record_gateway_closure(chat(b2, 2), closure)
        .await
        .expect("record_gateway_closure");
    let mine = |found: Vec<(Conversation, WindowRecord)>| -> Vec<(Conversation, DateTime<Utc>)> {
        found
            .into_iter()
            .filter(|(c, _)| c.business == b1 || c.business == b2)
            .map(|(c, r)| (c, r.last_inbound))
            .collect()
    };
    let between = |after: DateTime<Utc>, up_to: DateTime<Utc>| async move {
        store
            .inbound_between(after, up_to)
            .await
            .unwrap_or_else(|error| panic!("inbound_between({after}, {up_to}): {error}"))
    };

    assert_eq!(
        mine(between(t0, t0 + ms(2)).await),
        vec![
            (chat(b1, 2), t0 + ms(1)),
            (chat(b2, 1), t0 + ms(1)),
            (chat(b2, 2), t0 + ms(2)),
        ],
        "after is exclusive, up_to inclusive, ordered by time then conversation"
    );
    assert_eq!(
        mine(between(t0 - ms(1), t0).await),
        vec![(chat(b1, 1), t0)],
        "a range of one millisecond"
    );
    assert_eq!(
        mine(between(t0, t0).await),
        vec![],
        "after == up_to is empty"
    );
    assert_eq!(
        mine(between(t0 + ms(3), t0).await),
        vec![],
        "after > up_to is empty"
    );
    assert_eq!(
        mine(between(t0 + ms(3), t0 + TimeDelta::days(1)).await),
        vec![],
        "after the newest is empty"
    );
    assert_eq!(
        mine(between(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC).await).len(),
        records.len(),
        "the whole time range lists every record"
    );
    let with_closure = between(t0 + ms(1), t0 + ms(2)).await;
    let found = with_closure
        .iter()
        .find(|(c, _)| *c == chat(b2, 2))
        .map(|(_, r)| *r);
    assert_eq!(
        found,
        Some(WindowRecord::inbound(t0 + ms(2)).with_gateway_closure(closure)),
        "inbound_between returns the whole record, closure included"
    );
    // Moving a record forward moves it in the index.
    store
        .record_inbound(chat(b1, 1), t0 + ms(5))
        .await
        .expect("record_inbound");
    assert_eq!(
        mine(between(t0 - ms(1), t0).await),
        vec![],
        "a record moved forward leaves its old place in the index"
    );
    assert_eq!(
        mine(between(t0 + ms(4), t0 + ms(5)).await),
        vec![(chat(b1, 1), t0 + ms(5))],
        "a record moved forward is found at its new time"
    );
    // Forgetting removes it from the index.
    store.forget(chat(b1, 1)).await.expect("forget");
    assert_eq!(
        mine(between(t0 + ms(4), t0 + ms(5)).await),
        vec![],
        "a forgotten record leaves the index"
    );
}

/// `count` and `windows` see every record (in business, then customer order), and
/// `forget` erases window, outbox, invitation and outcomes of one conversation only.
pub async fn count_windows_and_forget<S: Store + Clone>(store: &S) {
    let (b1, b2) = (business(6, 0), business(6, 1));
    let start = store.count().await.expect("count");
    let conversations = [chat(b2, 2), chat(b1, 3), chat(b2, 1), chat(b1, 1)];
    for (i, c) in conversations.iter().enumerate() {
        store
            .record_inbound(*c, base() + ms(i as i64))
            .await
            .expect("record_inbound");
    }
    store
        .record_inbound(conversations[0], base())
        .await
        .expect("record_inbound");
    assert_eq!(
        store.count().await.expect("count"),
        start + 4,
        "count includes each conversation once"
    );
    let listed: Vec<Conversation> = store
        .windows()
        .await
        .expect("windows")
        .into_iter()
        .filter(|(c, _)| c.business == b1 || c.business == b2)
        .map(|(c, record)| {
            record.unwrap_or_else(|error| panic!("reading {c} from windows(): {error}"));
            c
        })
        .collect();
    assert_eq!(
        listed,
        vec![chat(b1, 1), chat(b1, 3), chat(b2, 1), chat(b2, 2)],
        "windows() lists by business number, then customer"
    );
    let all = store.windows().await.expect("windows");
    let mut sorted: Vec<_> = all.iter().map(|(c, _)| *c).collect();
    sorted.sort();
    assert_eq!(
        all.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        sorted,
        "windows() is in key order"
    );

    // Fill everything a conversation can have, for two conversations.
    let (gone, kept) = (chat(b1, 1), chat(b1, 3));
    for c in [gone, kept] {
        store
            .record_gateway_closure(c, base() + TimeDelta::hours(1))
            .await
            .expect("record_gateway_closure");
        store
            .enqueue(c, message("{}", base()), 10)
            .await
            .expect("enqueue");
        let invitation = Invitation {
            message_id: MessageId::new(),
            sent_at: base(),
        };
        store
            .set_invitation(c, Some(invitation))
            .await
            .expect("set_invitation");
        store
            .put_outcome(
                c,
                stored(MessageId::from_uuid(Uuid::nil()), "{\"sent\":true}"),
            )
            .await
            .expect("put_outcome");
    }
    assert!(
        store.forget(gone).await.expect("forget"),
        "forget reports that something was erased"
    );
    assert!(
        !store.forget(gone).await.expect("forget"),
        "forget of nothing reports false"
    );
    assert_eq!(
        store.window(gone).await.expect("window"),
        None,
        "forget erases the window"
    );
    assert_eq!(
        store.queued(gone).await.expect("queued"),
        vec![],
        "forget erases the outbox"
    );
    assert_eq!(
        store.invitation(gone).await.expect("invitation"),
        None,
        "forget erases the invitation"
    );
    assert_eq!(
        store
            .outcome(gone, MessageId::from_uuid(Uuid::nil()))
            .await
            .expect("outcome"),
        None,
        "forget erases outcomes"
    );
    assert!(
        !store
            .conversations_with_queued()
            .await
            .expect("conversations_with_queued")
            .contains(&gone),
        "a forgotten conversation has nothing queued"
    );
    assert!(
        !store
            .invitations()
            .await
            .expect("invitations")
            .iter()
            .any(|(c, _)| *c == gone),
        "a forgotten conversation has no invitation listed"
    );
    assert_eq!(
        store.count().await.expect("count"),
        start + 3,
        "count drops by one after forget"
    );
    assert!(
        store.window(kept).await.expect("window").is_some(),
        "forget keeps other conversations"
    );
    assert_eq!(
        store.queued(kept).await.expect("queued").len(),
        1,
        "forget keeps other outboxes"
    );
    assert!(
        store.invitation(kept).await.expect("invitation").is_some(),
        "forget keeps other invitations"
    );
    assert!(
        store
            .outcome(kept, MessageId::from_uuid(Uuid::nil()))
            .await
            .expect("outcome")
            .is_some(),
        "forget keeps other outcomes"
    );

    // Forget finds data even where there is no window.
    let only_outcome = chat(b2, 9);
    store
        .put_outcome(
            only_outcome,
            stored(MessageId::from_uuid(Uuid::nil()), "{}"),
        )
        .await
        .expect("put_outcome");
    assert!(
        store.forget(only_outcome).await.expect("forget"),
        "forget erases an outcome without a window"
    );
    let only_invitation = chat(b2, 8);
    let invitation = Invitation {
        message_id: MessageId::new(),
        sent_at: base(),
    };
    store
        .set_invitation(only_invitation, Some(invitation))
        .await
        .expect("set_invitation");
    assert!(
        store.forget(only_invitation).await.expect("forget"),
        "forget erases an invitation without a window"
    );
    let only_queued = chat(b2, 7);
    store
        .enqueue(only_queued, message("{}", base()), 10)
        .await
        .expect("enqueue");
    assert!(
        store.forget(only_queued).await.expect("forget"),
        "forget erases an outbox without a window"
    );
    assert_eq!(
        store.count().await.expect("count"),
        start + 3,
        "data without a window is not counted as one"
    );
    store.flush().await.expect("flush");
}

/// The outbox: order, message-id dedup, the limit, reassign in place, dequeue, and the
/// list of conversations with queued messages.
pub async fn outbox<S: Store + Clone>(store: &S) {
    let b = business(7, 0);
    let (c, other) = (chat(b, 1), chat(b, 2));
    let queued_at = base() + TimeDelta::nanoseconds(987_654_321);
    let (a, m2, m3) = (
        message("{\"text\":\"héllo ✓\"}", queued_at),
        message("", base()),
        message("{\"n\":3}", base()),
    );
    assert_eq!(
        store.queued(c).await.expect("queued"),
        vec![],
        "a new conversation's outbox is empty"
    );
    assert!(
        store.enqueue(c, a.clone(), 2).await.expect("enqueue"),
        "enqueue adds a message"
    );
    assert!(
        !store.enqueue(c, a.clone(), 2).await.expect("enqueue"),
        "enqueue of a message id already queued returns false"
    );
    let mut changed = a.clone();
    changed.payload = "{\"other\":1}".into();
    assert!(
        !store.enqueue(c, changed, 2).await.expect("enqueue"),
        "enqueue of a queued id with another payload returns false"
    );
    assert!(
        store.enqueue(c, m2.clone(), 2).await.expect("enqueue"),
        "enqueue up to the limit"
    );
    match store.enqueue(c, m3.clone(), 2).await {
        Err(StoreError::OutboxFull {
            conversation,
            limit: 2,
        }) if conversation == c => {}
        other => panic!(
            "store conformance: enqueue beyond the limit must be OutboxFull {{ {c}, 2 }}, got {other:?}"
        ),
    }
    assert!(
        !store.enqueue(c, a.clone(), 2).await.expect("enqueue"),
        "a full outbox still answers false for an id already queued"
    );
    let expected_a = QueuedMessage {
        queued_at: truncate_to_millis(queued_at),
        ..a.clone()
    };
    assert_eq!(
        store.queued(c).await.expect("queued"),
        vec![expected_a.clone(), m2.clone()],
        "queued() returns messages oldest first, payload intact, time truncated to the millisecond"
    );
    assert_eq!(
        store.queued(other).await.expect("queued"),
        vec![],
        "outboxes are per conversation"
    );
    match store.enqueue(other, m3.clone(), 0).await {
        Err(StoreError::OutboxFull { limit: 0, .. }) => {}
        other => panic!("store conformance: a limit of 0 refuses every message, got {other:?}"),
    }

    // Reassign keeps the place in the queue.
    let fresh = MessageId::new();
    assert!(
        store
            .reassign(c, a.message_id, fresh)
            .await
            .expect("reassign"),
        "reassign of a queued id"
    );
    assert_eq!(
        ids(store, c).await,
        vec![fresh, m2.message_id],
        "reassign keeps the message's place"
    );
    assert_eq!(
        store
            .queued(c)
            .await
            .expect("queued")
            .first()
            .map(|m| (m.payload.clone(), m.queued_at)),
        Some((a.payload.clone(), truncate_to_millis(queued_at))),
        "reassign keeps payload and queued time"
    );
    assert!(
        !store
            .reassign(c, a.message_id, MessageId::new())
            .await
            .expect("reassign"),
        "reassign of an id no longer queued returns false"
    );
    assert!(
        store.enqueue(c, a.clone(), 3).await.expect("enqueue"),
        "the old id may be queued again after reassign"
    );
    assert_eq!(
        ids(store, c).await,
        vec![fresh, m2.message_id, a.message_id],
        "a new message goes last"
    );

    // Dequeue anywhere in the queue.
    assert!(
        store.dequeue(c, m2.message_id).await.expect("dequeue"),
        "dequeue of a queued id"
    );
    assert!(
        !store.dequeue(c, m2.message_id).await.expect("dequeue"),
        "dequeue twice returns false"
    );
    assert!(
        !store.dequeue(other, fresh).await.expect("dequeue"),
        "dequeue from another conversation"
    );
    assert_eq!(
        ids(store, c).await,
        vec![fresh, a.message_id],
        "dequeue keeps the others in order"
    );
    assert!(
        store.enqueue(c, m3.clone(), 3).await.expect("enqueue"),
        "dequeue frees room"
    );

    store
        .enqueue(other, message("{}", base()), 3)
        .await
        .expect("enqueue");
    let with_queued: Vec<_> = store
        .conversations_with_queued()
        .await
        .expect("conversations_with_queued")
        .into_iter()
        .filter(|x| x.business == b)
        .collect();
    assert_eq!(
        with_queued,
        vec![c, other],
        "conversations_with_queued lists each, in key order"
    );
    for id in ids(store, other).await {
        store.dequeue(other, id).await.expect("dequeue");
    }
    let with_queued: Vec<_> = store
        .conversations_with_queued()
        .await
        .expect("conversations_with_queued")
        .into_iter()
        .filter(|x| x.business == b)
        .collect();
    assert_eq!(
        with_queued,
        vec![c],
        "an emptied outbox is no longer listed"
    );
}

/// Concurrent enqueues respect the limit exactly and never queue one id twice.
pub async fn concurrent_outbox<S: Store + Clone>(store: &S) {
    const LIMIT: usize = 5;
    let b = business(8, 0);
    let c = chat(b, 1);
    let mut handles = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store
                .enqueue(c, message(&format!("{{\"n\":{i}}}"), base()), LIMIT)
                .await
        }));
    }
    let (mut added, mut full) = (0, 0);
    for handle in handles {
        match handle.await {
            Ok(Ok(true)) => added += 1,
            Ok(Err(StoreError::OutboxFull { .. })) => full += 1,
            Ok(other) => panic!("store conformance: concurrent enqueue returned {other:?}"),
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
    assert_eq!(
        (added, full),
        (LIMIT, 16 - LIMIT),
        "concurrent enqueues: exactly the limit is queued"
    );
    assert_eq!(
        store.queued(c).await.expect("queued").len(),
        LIMIT,
        "the outbox holds exactly the limit"
    );

    let d = chat(b, 2);
    let same = message("{}", base());
    let mut handles = Vec::new();
    for _ in 0..8 {
        let (store, same) = (store.clone(), same.clone());
        handles.push(tokio::spawn(
            async move { store.enqueue(d, same, 10).await },
        ));
    }
    let trues = count_winners(handles, "concurrent enqueue of one id").await;
    assert_eq!(
        trues, 1,
        "concurrent enqueues of one id: exactly one adds it"
    );
    assert_eq!(
        ids(store, d).await,
        vec![same.message_id],
        "one id is queued once"
    );
}

/// Invitations: stored per conversation (millisecond precision), replaced, cleared, and
/// listed in conversation order.
pub async fn invitations<S: Store + Clone>(store: &S) {
    let (b1, b2) = (business(9, 0), business(9, 1));
    let (c1, c2, c3) = (chat(b2, 1), chat(b1, 2), chat(b1, 1));
    assert_eq!(
        store.invitation(c1).await.expect("invitation"),
        None,
        "no invitation at first"
    );
    let sent = base() + TimeDelta::nanoseconds(5_000_001);
    let first = Invitation {
        message_id: MessageId::new(),
        sent_at: sent,
    };
    store
        .set_invitation(c1, Some(first))
        .await
        .expect("set_invitation");
    assert_eq!(
        store.invitation(c1).await.expect("invitation"),
        Some(Invitation {
            sent_at: truncate_to_millis(sent),
            ..first
        }),
        "the invitation is stored, truncated to the millisecond"
    );
    let second = Invitation {
        message_id: MessageId::new(),
        sent_at: base() + TimeDelta::hours(1),
    };
    store
        .set_invitation(c1, Some(second))
        .await
        .expect("set_invitation");
    assert_eq!(
        store.invitation(c1).await.expect("invitation"),
        Some(second),
        "set_invitation replaces"
    );
    for c in [c2, c3] {
        store
            .set_invitation(c, Some(first))
            .await
            .expect("set_invitation");
    }
    let listed: Vec<_> = store
        .invitations()
        .await
        .expect("invitations")
        .into_iter()
        .filter(|(c, _)| c.business == b1 || c.business == b2)
        .map(|(c, _)| c)
        .collect();
    assert_eq!(
        listed,
        vec![c3, c2, c1],
        "invitations() lists in conversation order"
    );
    store
        .set_invitation(c1, None)
        .await
        .expect("set_invitation(None)");
    assert_eq!(
        store.invitation(c1).await.expect("invitation"),
        None,
        "set_invitation(None) clears"
    );
    store
        .set_invitation(c1, None)
        .await
        .expect("set_invitation(None) twice");
    assert_eq!(
        store.window(c1).await.expect("window"),
        None,
        "an invitation creates no window"
    );
}

fn stored(id: MessageId, text: &str) -> StoredOutcome {
    StoredOutcome::new(id, text)
}

/// Send outcomes: stored per (conversation, messageId) as given, replaced on a second put.
pub async fn outcomes<S: Store + Clone>(store: &S) {
    let b = business(10, 0);
    let (c, other) = (chat(b, 1), chat(b, 2));
    let id = MessageId::new();
    assert_eq!(
        store.outcome(c, id).await.expect("outcome"),
        None,
        "no outcome at first"
    );
    let text = "{\"status\":\"sent\",\"waId\":\"wamid.ü\"}".to_owned();
    store
        .put_outcome(c, stored(id, &text))
        .await
        .expect("put_outcome");
    let second = MessageId::new();
    store
        .put_outcome(c, stored(second, "2"))
        .await
        .expect("put_outcome");
    store
        .put_outcome(other, stored(MessageId::new(), "x"))
        .await
        .expect("put_outcome");
    let mut listed = store.outcomes(c).await.expect("outcomes");
    listed.sort();
    let mut expected = vec![(id, text.clone()), (second, "2".to_owned())];
    expected.sort();
    assert_eq!(
        listed, expected,
        "outcomes lists the conversation's outcomes only"
    );
    assert_eq!(
        store.outcome(c, id).await.expect("outcome"),
        Some(text),
        "the outcome is returned as stored"
    );
    assert_eq!(
        store.outcome(other, id).await.expect("outcome"),
        None,
        "outcomes are per conversation"
    );
    assert_eq!(
        store.outcome(c, MessageId::new()).await.expect("outcome"),
        None,
        "outcomes are per messageId"
    );
    store
        .put_outcome(c, stored(id, ""))
        .await
        .expect("put_outcome");
    assert_eq!(
        store.outcome(c, id).await.expect("outcome"),
        Some(String::new()),
        "put_outcome replaces, even with \"\""
    );
}

/// Outcomes expire: once the time to keep given at the write has passed (by the store's
/// clock), no read returns the outcome, whether by `messageId`, by WhatsApp id or in the
/// listing; a later write of the same `messageId` keeps it for its own time; `forget`
/// erases outcomes and their index.
pub async fn outcome_expiry<S: Store + Clone>(store: &S) {
    let b = business(11, 0);
    let c = chat(b, 1);
    let short = TimeDelta::milliseconds(300);
    let (brief, lasting, renewed, instant) = (
        MessageId::new(),
        MessageId::new(),
        MessageId::new(),
        MessageId::new(),
    );
    store
        .put_outcome(
            c,
            stored(brief, "brief")
                .with_wa_id("wamid.brief")
                .keep_for(short),
        )
        .await
        .expect("put_outcome");
    store
        .put_outcome(c, stored(lasting, "lasting").with_wa_id("wamid.lasting"))
        .await
        .expect("put_outcome");
    store
        .put_outcome(c, stored(renewed, "first").keep_for(short))
        .await
        .expect("put_outcome");
    store
        .put_outcome(
            c,
            stored(instant, "gone").keep_for(TimeDelta::milliseconds(-5)),
        )
        .await
        .expect("put_outcome");
    assert_eq!(
        store.outcome(c, brief).await.expect("outcome"),
        Some("brief".to_owned()),
        "an outcome is kept while its time to keep runs"
    );
    assert_eq!(
        store
            .outcome_by_wa_id(c, "wamid.brief")
            .await
            .expect("outcome_by_wa_id"),
        Some((brief, "brief".to_owned())),
        "an outcome is found by WhatsApp id while its time to keep runs"
    );
    store
        .put_outcome(c, stored(renewed, "second").keep_for(TimeDelta::hours(1)))
        .await
        .expect("put_outcome");
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        store.outcome(c, brief).await.expect("outcome"),
        None,
        "an outcome whose time to keep has passed is not returned"
    );
    assert_eq!(
        store
            .outcome_by_wa_id(c, "wamid.brief")
            .await
            .expect("outcome_by_wa_id"),
        None,
        "an expired outcome is not found by WhatsApp id"
    );
    assert_eq!(
        store.outcome(c, instant).await.expect("outcome"),
        None,
        "a time to keep of zero or less keeps the outcome for a moment only"
    );
    assert_eq!(
        store.outcome(c, renewed).await.expect("outcome"),
        Some("second".to_owned()),
        "a later write of the same messageId keeps it for its own time"
    );
    assert_eq!(
        store
            .outcome_by_wa_id(c, "wamid.lasting")
            .await
            .expect("outcome_by_wa_id"),
        Some((lasting, "lasting".to_owned())),
        "other outcomes stay"
    );
    let mut listed = store.outcomes(c).await.expect("outcomes");
    listed.sort();
    let mut expected = vec![
        (lasting, "lasting".to_owned()),
        (renewed, "second".to_owned()),
    ];
    expected.sort();
    assert_eq!(listed, expected, "the listing leaves expired outcomes out");
    // Writing after expiry (which may prune) keeps the live ones.
    store
        .put_outcome(c, stored(MessageId::new(), "later"))
        .await
        .expect("put_outcome");
    assert_eq!(
        store.outcome(c, lasting).await.expect("outcome"),
        Some("lasting".to_owned()),
        "pruning leaves live outcomes"
    );
    assert!(
        store.forget(c).await.expect("forget"),
        "forget finds the outcomes"
    );
    assert_eq!(
        store
            .outcome_by_wa_id(c, "wamid.lasting")
            .await
            .expect("outcome_by_wa_id"),
        None,
        "forget erases the WhatsApp id index"
    );
    assert_eq!(
        store.outcomes(c).await.expect("outcomes"),
        Vec::new(),
        "forget erases every outcome"
    );
}

/// The WhatsApp id index: one lookup finds the outcome stored with that id, per
/// conversation; an outcome replaced by one with another id (or none) is found by the new
/// one only; empty or overlong ids are not indexed.
pub async fn outcome_wa_index<S: Store + Clone>(store: &S) {
    let b = business(12, 0);
    let (c, other) = (chat(b, 1), chat(b, 2));
    let (first, second) = (MessageId::new(), MessageId::new());
    assert_eq!(
        store
            .outcome_by_wa_id(c, "wamid.A")
            .await
            .expect("outcome_by_wa_id"),
        None,
        "nothing is found before anything is stored"
    );
    store
        .put_outcome(c, stored(first, "sent").with_wa_id("wamid.A"))
        .await
        .expect("put_outcome");
    assert_eq!(
        store
            .outcome_by_wa_id(c, "wamid.A")
            .await
            .expect("outcome_by_wa_id"),
        Some((first, "sent".to_owned())),
        "an outcome is found by its WhatsApp id"
    );
    assert_eq!(
        store
            .outcome_by_wa_id(other, "wamid.A")
            .await
            .expect("outcome_by_wa_id"),
        None,
        "the index is per conversation"
    );
    store
        .put_outcome(c, stored(first, "delivered").with_wa_id("wamid.B"))
        .await
        .expect("put_outcome");
    assert_eq!(
        store
            .outcome_by_wa_id(c, "wamid.A")
            .await
            .expect("outcome_by_wa_id"),
        None,
        "a replaced outcome is not found by its old WhatsApp id"
    );
    assert_eq!(
        store
            .outcome_by_wa_id(c, "wamid.B")
            .await
            .expect("outcome_by_wa_id"),
        Some((first, "delivered".to_owned())),
        "the replacement is found by its own WhatsApp id"
    );
    store
        .put_outcome(c, stored(first, "queued"))
        .await
        .expect("put_outcome");
    assert_eq!(
        store
            .outcome_by_wa_id(c, "wamid.B")
            .await
            .expect("outcome_by_wa_id"),
        None,
        "an outcome replaced by one without a WhatsApp id is not found by the old one"
    );
    store
        .put_outcome(c, stored(second, "other").with_wa_id("wamid.A"))
        .await
        .expect("put_outcome");
    assert_eq!(
        store
            .outcome_by_wa_id(c, "wamid.A")
            .await
            .expect("outcome_by_wa_id"),
        Some((second, "other".to_owned())),
        "a WhatsApp id names the outcome last stored with it"
    );
    let long = "w".repeat(MAX_WA_ID_BYTES + 1);
    let (empty_id, long_id, edge_id) = (MessageId::new(), MessageId::new(), MessageId::new());
    let edge = format!("wamid.{}", "é".repeat((MAX_WA_ID_BYTES - 6) / 2));
    store
        .put_outcome(c, stored(empty_id, "e").with_wa_id(""))
        .await
        .expect("put_outcome");
    store
        .put_outcome(c, stored(long_id, "l").with_wa_id(long.clone()))
        .await
        .expect("put_outcome");
    store
        .put_outcome(c, stored(edge_id, "edge").with_wa_id(edge.clone()))
        .await
        .expect("put_outcome");
    assert_eq!(
        store
            .outcome_by_wa_id(c, "")
            .await
            .expect("outcome_by_wa_id"),
        None,
        "an empty WhatsApp id is not indexed"
    );
    assert_eq!(
        store
            .outcome_by_wa_id(c, &long)
            .await
            .expect("outcome_by_wa_id"),
        None,
        "a WhatsApp id longer than MAX_WA_ID_BYTES is not indexed"
    );
    assert_eq!(
        store
            .outcome_by_wa_id(c, &edge)
            .await
            .expect("outcome_by_wa_id"),
        Some((edge_id, "edge".to_owned())),
        "a WhatsApp id of MAX_WA_ID_BYTES or less is indexed, whatever its characters"
    );
    assert_eq!(
        store.outcome(c, long_id).await.expect("outcome"),
        Some("l".to_owned()),
        "an outcome whose WhatsApp id is not indexed is still found by messageId"
    );
}

/// A change of the outbox and an outcome in one step: `enqueue_with_outcome` stores both
/// or neither (a full outbox stores neither; an id already queued stays once, the
/// outcome is stored); `dequeue_with_outcome` removes the message and stores the outcome,
/// which is stored even when the message was gone; concurrent callers queue one copy.
pub async fn outbox_with_outcome<S: Store + Clone>(store: &S) {
    let b = business(13, 0);
    let c = chat(b, 1);
    let t = base();
    let (key, other_key) = (MessageId::new(), MessageId::new());
    let first = message("{\"n\":1}", t);
    assert!(
        store
            .enqueue_with_outcome(c, first.clone(), 2, stored(key, "queued"))
            .await
            .expect("enqueue_with_outcome"),
        "enqueue_with_outcome adds a new message"
    );
    assert_eq!(
        ids(store, c).await,
        vec![first.message_id],
        "the message is queued"
    );
    assert_eq!(
        store.outcome(c, key).await.expect("outcome"),
        Some("queued".to_owned()),
        "and the outcome stored with it"
    );
    assert!(
        !store
            .enqueue_with_outcome(c, first.clone(), 2, stored(key, "queued again"))
            .await
            .expect("enqueue_with_outcome"),
        "a message already queued is not added again"
    );
    assert_eq!(
        ids(store, c).await,
        vec![first.message_id],
        "one copy stays queued"
    );
    assert_eq!(
        store.outcome(c, key).await.expect("outcome"),
        Some("queued again".to_owned()),
        "the outcome is stored even when the message was already queued"
    );
    let second = message("{\"n\":2}", t + ms(1));
    store
        .enqueue_with_outcome(c, second.clone(), 2, stored(MessageId::new(), "2"))
        .await
        .expect("enqueue_with_outcome");
    let third = message("{\"n\":3}", t + ms(2));
    match store
        .enqueue_with_outcome(c, third.clone(), 2, stored(other_key, "never"))
        .await
    {
        Err(StoreError::OutboxFull { limit: 2, .. }) => {}
        other => panic!(
            "store conformance: enqueue_with_outcome into a full outbox must fail with OutboxFull, got {other:?}"
        ),
    }
    assert_eq!(
        store.outcome(c, other_key).await.expect("outcome"),
        None,
        "a full outbox stores no outcome either"
    );
    assert_eq!(
        ids(store, c).await,
        vec![first.message_id, second.message_id],
        "a full outbox queues nothing"
    );

    assert!(
        store
            .dequeue_with_outcome(
                c,
                first.message_id,
                stored(key, "delivered").with_wa_id("wamid.delivered"),
            )
            .await
            .expect("dequeue_with_outcome"),
        "dequeue_with_outcome finds the queued message"
    );
    assert_eq!(
        ids(store, c).await,
        vec![second.message_id],
        "the message left the outbox"
    );
    assert_eq!(
        store
            .outcome_by_wa_id(c, "wamid.delivered")
            .await
            .expect("outcome_by_wa_id"),
        Some((key, "delivered".to_owned())),
        "and its outcome is stored, indexed"
    );
    assert!(
        !store
            .dequeue_with_outcome(c, first.message_id, stored(key, "again"))
            .await
            .expect("dequeue_with_outcome"),
        "a message no longer queued is reported so"
    );
    assert_eq!(
        store.outcome(c, key).await.expect("outcome"),
        Some("again".to_owned()),
        "the outcome is stored even when the message was gone"
    );
    store.dequeue(c, second.message_id).await.expect("dequeue");

    // Concurrent callers with one message: one copy.
    let contested = message("{\"n\":4}", t + ms(3));
    let contested_key = MessageId::new();
    let mut handles = Vec::new();
    for n in 0..8 {
        let (store, contested) = (store.clone(), contested.clone());
        handles.push(tokio::spawn(async move {
            store
                .enqueue_with_outcome(c, contested, 20, stored(contested_key, &format!("{n}")))
                .await
        }));
    }
    let added = count_winners(handles, "concurrent enqueue_with_outcome").await;
    assert_eq!(
        added, 1,
        "concurrent enqueue_with_outcome: one adds the message"
    );
    assert_eq!(
        ids(store, c).await,
        vec![contested.message_id],
        "concurrent enqueue_with_outcome: one copy queued"
    );
    assert!(
        store
            .outcome(c, contested_key)
            .await
            .expect("outcome")
            .is_some(),
        "concurrent enqueue_with_outcome: the outcome is stored"
    );
}

/// Claims: one holder at a time, until the lease ends in real time on the store's own
/// clock (not the caller's: a claimer whose clock runs ahead by more than the lease
/// still finds the claim held), or until released; a time before 1970 is refused;
/// concurrent claimers get exactly one winner.
pub async fn claims<S: Store + Clone>(store: &S) {
    let now = truncate_to_millis(Utc::now());
    let lease = TimeDelta::seconds(30);
    let (a, b) = (MessageId::new(), MessageId::new());
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    assert!(
        store.claim(a, first, now, lease).await.expect("claim"),
        "the first claim wins"
    );
    assert!(
        !store.claim(a, second, now, lease).await.expect("claim"),
        "a live claim refuses a second claimer"
    );
    assert!(
        !store
            .claim(a, second, now + lease - ms(1), lease)
            .await
            .expect("claim"),
        "the claim holds until its lease ends"
    );
    assert!(
        !store
            .claim(a, second, now + lease + lease + ms(1), lease)
            .await
            .expect("claim"),
        "a claimer whose clock runs ahead by more than the lease does not take a held claim"
    );
    assert!(
        !store
            .claim(a, second, now - lease - lease, lease)
            .await
            .expect("claim"),
        "a claimer whose clock runs behind does not take a held claim"
    );
    assert!(
        store.claim(b, second, now, lease).await.expect("claim"),
        "claims are per message id"
    );
    store
        .release(a, second)
        .await
        .expect("release by another holder");
    assert!(
        !store.claim(a, second, now, lease).await.expect("claim"),
        "only the holder's release frees a claim"
    );
    store.release(a, first).await.expect("release");
    assert!(
        store.claim(a, second, now, lease).await.expect("claim"),
        "release frees the claim"
    );
    store.release(a, second).await.expect("release");
    store
        .release(a, second)
        .await
        .expect("release of a free claim");
    store.release(b, second).await.expect("release");

    // A lease of zero holds nothing.
    let zero = MessageId::new();
    assert!(
        store
            .claim(zero, Uuid::new_v4(), now, TimeDelta::zero())
            .await
            .expect("claim"),
        "a zero lease claim succeeds"
    );
    assert!(
        store
            .claim(zero, Uuid::new_v4(), now, lease)
            .await
            .expect("claim"),
        "a zero lease ends at once"
    );

    // A claim stamped before 1970 is refused, whatever the lease: no claim may exist
    // that fails to block the next claimer.
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    for (early, lease) in [
        (epoch - ms(1), lease),
        (epoch - TimeDelta::days(365), TimeDelta::days(36_500)),
    ] {
        let id = MessageId::new();
        match store.claim(id, Uuid::new_v4(), early, lease).await {
            Err(StoreError::ClaimBeforeEpoch { now: refused }) => {
                assert_eq!(refused, early, "the refusal names the time refused");
            }
            other => panic!(
                "store conformance: a claim at {early} (before 1970) must be refused with ClaimBeforeEpoch, found {other:?}"
            ),
        }
        assert!(
            store
                .claim(id, Uuid::new_v4(), now, lease)
                .await
                .expect("claim"),
            "a refused pre-1970 claim leaves nothing held"
        );
    }
    assert!(
        store
            .claim(MessageId::new(), Uuid::new_v4(), epoch, lease)
            .await
            .expect("claim"),
        "a claim at 1970-01-01T00:00:00Z itself is accepted"
    );

    // A holder that dies leaves the message to another once the lease has passed in real
    // time, the message id unchanged; the dead holder's late release cannot free its
    // successor's claim.
    let dying = MessageId::new();
    let (dead, successor) = (Uuid::new_v4(), Uuid::new_v4());
    let short = TimeDelta::milliseconds(200);
    assert!(
        store
            .claim(dying, dead, Utc::now(), short)
            .await
            .expect("claim"),
        "short lease"
    );
    assert!(
        !store
            .claim(dying, Uuid::new_v4(), Utc::now(), short)
            .await
            .expect("claim"),
        "short lease is held"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(
        store
            .claim(dying, successor, Utc::now(), lease)
            .await
            .expect("claim"),
        "after a short lease has passed in real time the message can be claimed again"
    );
    store
        .release(dying, dead)
        .await
        .expect("late release by the holder whose lease ran out");
    assert!(
        !store
            .claim(dying, Uuid::new_v4(), Utc::now(), lease)
            .await
            .expect("claim"),
        "a holder whose lease ran out cannot release its successor's claim"
    );
    store.release(dying, successor).await.expect("release");

    // Concurrent claimers: exactly one wins.
    let contested = MessageId::new();
    let mut handles = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store.claim(contested, Uuid::new_v4(), now, lease).await
        }));
    }
    let winners = count_winners(handles, "concurrent claim").await;
    assert_eq!(
        winners, 1,
        "concurrent claims of one message: exactly one wins"
    );
}

/// The redelivery memory: an inbound message id is recorded once per business number
/// while remembered (a second copy is a duplicate and changes nothing), is per business,
/// is taken by exactly one of concurrent callers, and is forgotten after its horizon.
pub async fn redelivery<S: Store + Clone>(store: &S) {
    let b = business(20, 0);
    let other_business = business(20, 1);
    let c = chat(b, 1);
    let id = |text: &str| match InboundId::new(text) {
        Ok(id) => id,
        Err(error) => panic!("store conformance: {text:?}: {error}"),
    };
    // Real time: a store may measure the memory's horizon on its own clock.
    let now = truncate_to_millis(Utc::now());
    let day = TimeDelta::days(1);

    let first = store
        .record_inbound_once(c, now - ms(60_000), &id("wamid.R1"), now, now + day)
        .await
        .expect("record_inbound_once");
    assert_eq!(
        first,
        InboundReceipt::Recorded(InboundUpdate {
            previous: None,
            current: WindowRecord::inbound(now - ms(60_000)),
        }),
        "the first copy of an inbound message is recorded"
    );
    let again = store
        .record_inbound_once(c, now, &id("wamid.R1"), now + ms(5), now + day)
        .await
        .expect("record_inbound_once");
    assert_eq!(
        again,
        InboundReceipt::Duplicate {
            first_received_at: now,
        },
        "a second copy is a duplicate naming the first receipt"
    );
    assert_eq!(
        store.window(c).await.expect("window"),
        Some(WindowRecord::inbound(now - ms(60_000))),
        "a duplicate records nothing, even with a later time"
    );

    let elsewhere = store
        .record_inbound_once(
            chat(other_business, 1),
            now,
            &id("wamid.R1"),
            now,
            now + day,
        )
        .await
        .expect("record_inbound_once");
    assert!(
        matches!(elsewhere, InboundReceipt::Recorded(_)),
        "the memory is per business number"
    );
    let next = store
        .record_inbound_once(c, now, &id("wamid.R2"), now, now + day)
        .await
        .expect("record_inbound_once");
    assert_eq!(
        next,
        InboundReceipt::Recorded(InboundUpdate {
            previous: Some(WindowRecord::inbound(now - ms(60_000))),
            current: WindowRecord::inbound(now),
        }),
        "another id is recorded, keeping the maximum"
    );

    let racers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let racing = id("wamid.RACE");
            tokio::spawn(async move {
                store
                    .record_inbound_once(chat(b, 2), now, &racing, now, now + day)
                    .await
            })
        })
        .collect();
    let mut recorded = 0;
    for racer in racers {
        let receipt = match racer.await {
            Ok(result) => result.expect("concurrent record_inbound_once"),
            Err(error) => panic!("store conformance: a racing task failed: {error}"),
        };
        recorded += usize::from(matches!(receipt, InboundReceipt::Recorded(_)));
    }
    assert_eq!(
        recorded, 1,
        "of concurrent copies of one message, exactly one is recorded"
    );

    let brief = now + ms(300);
    store
        .record_inbound_once(chat(b, 3), now, &id("wamid.BRIEF"), now, brief)
        .await
        .expect("record_inbound_once");
    tokio::time::sleep(Duration::from_millis(450)).await;
    let later = truncate_to_millis(Utc::now());
    let after = store
        .record_inbound_once(chat(b, 3), later, &id("wamid.BRIEF"), later, later + day)
        .await
        .expect("record_inbound_once");
    assert!(
        matches!(after, InboundReceipt::Recorded(_)),
        "an id is forgotten after its horizon, and recorded again"
    );
}

fn bsuid(text: &str) -> Bsuid {
    match Bsuid::parse(text) {
        Ok(id) => id,
        Err(error) => panic!("store conformance: {error}"),
    }
}

fn group_id(text: &str) -> GroupId {
    match GroupId::parse(text) {
        Ok(id) => id,
        Err(error) => panic!("store conformance: {error}"),
    }
}

/// Handles: one per id, allocated once (concurrent callers included), resolved back to
/// the id, found without allocating, listed; users and groups apart; never a phone's key.
pub async fn identity_registry<S: Store + Clone>(store: &S) {
    let (first, second) = (bsuid("US.40000001"), bsuid("BR.40000002"));
    assert_eq!(
        store.find_user_ref(&first).await.expect("find_user_ref"),
        None,
        "an id never seen has no handle, and looking does not allocate one"
    );
    assert_eq!(
        store.find_user_ref(&first).await.expect("find_user_ref"),
        None,
        "looking twice still allocates nothing"
    );
    let a = store.user_ref(&first).await.expect("user_ref");
    assert_eq!(
        store.user_ref(&first).await.expect("user_ref"),
        a,
        "an id keeps its handle"
    );
    assert_eq!(
        store.find_user_ref(&first).await.expect("find_user_ref"),
        Some(a),
        "an allocated handle is found"
    );
    let b = store.user_ref(&second).await.expect("user_ref");
    assert!(a != b, "store conformance: two ids share handle {a:?}");
    assert_eq!(
        store.user_id(a).await.expect("user_id"),
        Some(first.clone()),
        "a handle resolves to its id"
    );
    assert_eq!(
        store.user_id(b).await.expect("user_id"),
        Some(second.clone()),
        "a handle resolves to its id"
    );
    let group = group_id("Y2FwaV9ncm91cDo0MDAwMDAwMQ==");
    assert_eq!(
        store.find_group_ref(&group).await.expect("find_group_ref"),
        None,
        "a group never seen has no handle"
    );
    let g = store.group_ref(&group).await.expect("group_ref");
    assert_eq!(
        store.group_ref(&group).await.expect("group_ref"),
        g,
        "a group keeps its handle"
    );
    assert_eq!(
        store.group_id(g).await.expect("group_id"),
        Some(group.clone()),
        "a group handle resolves to its id"
    );
    // A group id that reads like a user id is still a group, and apart from the user.
    let lookalike = group_id("US.40000001");
    let l = store.group_ref(&lookalike).await.expect("group_ref");
    assert!(
        l != g,
        "store conformance: two group ids share handle {g:?}"
    );
    assert_eq!(
        store.user_ref(&first).await.expect("user_ref"),
        a,
        "a group with the same text as a user id leaves the user's handle alone"
    );
    for customer in [Customer::User(a), Customer::User(b), Customer::Group(g)] {
        assert!(
            customer.key() >= 1_000_000_000_000_000 && customer.phone().is_none(),
            "store conformance: handle {customer:?} is keyed among phone numbers"
        );
    }
    let users = store.users().await.expect("users");
    for (handle, id) in [(a, &first), (b, &second)] {
        assert!(
            users.iter().any(|(h, i)| *h == handle && i == id),
            "store conformance: users() does not list {handle:?} = {id}"
        );
    }
    let mut sorted = users.clone();
    sorted.sort_by_key(|(h, _)| *h);
    assert_eq!(users, sorted, "users() is in handle order");
    let groups = store.groups().await.expect("groups");
    assert!(
        groups.iter().any(|(h, i)| *h == g && *i == group),
        "store conformance: groups() does not list {g:?}"
    );

    // Concurrent callers with one new id get one handle.
    let fresh = bsuid("IN.40000003");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let fresh = fresh.clone();
        tasks.push(tokio::spawn(async move { store.user_ref(&fresh).await }));
    }
    let mut handles = Vec::new();
    for task in tasks {
        match task.await {
            Ok(result) => handles.push(result.expect("concurrent user_ref")),
            Err(error) => panic!("store conformance: a user_ref task failed: {error}"),
        }
    }
    handles.dedup();
    assert_eq!(
        handles.len(),
        1,
        "concurrent callers with one id get one handle"
    );
    let listed = store
        .users()
        .await
        .expect("users")
        .into_iter()
        .filter(|(_, id)| *id == fresh)
        .count();
    assert_eq!(listed, 1, "an id allocated concurrently is listed once");
}

/// Aliases: per business number, the previous phone answered on a change, the spelling
/// kept, listed in order.
pub async fn aliases<S: Store + Clone>(store: &S) {
    let (b1, b2) = (business(41, 0), business(41, 1));
    let user = bsuid("US.41000001");
    assert_eq!(
        store.alias(b1, &user).await.expect("alias"),
        None,
        "no alias before one is recorded"
    );
    // WhatsApp's own spelling of a Brazilian mobile, without the ninth digit.
    let phone = match PhoneNumber::parse("554188887777") {
        Ok(phone) => phone,
        Err(error) => panic!("store conformance: {error}"),
    };
    assert_eq!(
        store
            .record_alias(b1, &user, phone)
            .await
            .expect("record_alias"),
        None,
        "a first alias replaces nothing"
    );
    let found = store.alias(b1, &user).await.expect("alias");
    assert_eq!(found, Some(phone), "the alias is found");
    assert_eq!(
        found.map(PhoneNumber::digits),
        Some("554188887777".to_owned()),
        "the alias keeps the spelling it was recorded with (what a send uses)"
    );
    assert_eq!(
        store.alias(b2, &user).await.expect("alias"),
        None,
        "an alias belongs to one business number"
    );
    let other = phone_of(254_741_000_002);
    assert_eq!(
        store
            .record_alias(b1, &user, other)
            .await
            .expect("record_alias"),
        Some(phone),
        "a changed alias answers the phone it replaced"
    );
    store
        .record_alias(b2, &bsuid("US.41000000"), phone_of(254_741_000_003))
        .await
        .expect("record_alias");
    let listed: Vec<Alias> = store
        .aliases()
        .await
        .expect("aliases")
        .into_iter()
        .filter(|alias| alias.business == b1 || alias.business == b2)
        .collect();
    assert_eq!(
        listed,
        vec![
            Alias {
                business: b1,
                user: user.clone(),
                phone: other,
            },
            Alias {
                business: b2,
                user: bsuid("US.41000000"),
                phone: phone_of(254_741_000_003),
            },
        ],
        "aliases() lists every alias by business, then user id"
    );
}

fn phone_of(digits: u64) -> PhoneNumber {
    phone(digits)
}

/// Conversations with a user or a group are stored, listed, indexed, counted, queued to
/// and forgotten like phone ones, and apart from them.
pub async fn user_and_group_conversations<S: Store + Clone>(store: &S) {
    let business = business(42, 0);
    let user = Customer::User(
        store
            .user_ref(&bsuid("US.42000001"))
            .await
            .expect("user_ref"),
    );
    let group = Customer::Group(
        store
            .group_ref(&group_id("42000001@g.us"))
            .await
            .expect("group_ref"),
    );
    let by_phone = chat(business, 42);
    let by_user = Conversation::with_customer(business, user);
    let by_group = Conversation::with_customer(business, group);
    let start = store.count().await.expect("count");
    for (i, c) in [by_group, by_user, by_phone].into_iter().enumerate() {
        store
            .record_inbound(c, base() + ms(i as i64))
            .await
            .expect("record_inbound");
    }
    assert_eq!(
        store.count().await.expect("count"),
        start + 3,
        "users and groups are counted"
    );
    assert_eq!(
        store.window(by_user).await.expect("window"),
        Some(WindowRecord::inbound(base() + ms(1))),
        "a user's window is its own"
    );
    assert_eq!(
        store.window(by_group).await.expect("window"),
        Some(WindowRecord::inbound(base())),
        "a group's window is its own"
    );
    let listed: Vec<Conversation> = store
        .windows()
        .await
        .expect("windows")
        .into_iter()
        .filter(|(c, _)| c.business == business)
        .map(|(c, _)| c)
        .collect();
    assert_eq!(
        listed,
        vec![by_phone, by_user, by_group],
        "windows() lists phones, then users, then groups"
    );
    let indexed: Vec<Conversation> = store
        .inbound_between(base() - ms(1), base() + ms(2))
        .await
        .expect("inbound_between")
        .into_iter()
        .map(|(c, _)| c)
        .filter(|c| c.business == business)
        .collect();
    assert_eq!(
        indexed,
        vec![by_group, by_user, by_phone],
        "the closing-soon index holds users and groups"
    );
    store
        .record_gateway_closure(by_group, base() + ms(5))
        .await
        .expect("record_gateway_closure");
    let queued = message("{}", base());
    assert!(
        store
            .enqueue(by_user, queued.clone(), 5)
            .await
            .expect("enqueue"),
        "a user's outbox takes a message"
    );
    assert_eq!(
        store.queued(by_phone).await.expect("queued").len(),
        0,
        "the phone's outbox is apart from the user's"
    );
    assert!(
        store
            .conversations_with_queued()
            .await
            .expect("conversations_with_queued")
            .contains(&by_user),
        "store conformance: conversations_with_queued() misses a user's outbox"
    );
    let invitation = Invitation {
        message_id: MessageId::new(),
        sent_at: base(),
    };
    store
        .set_invitation(by_group, Some(invitation))
        .await
        .expect("set_invitation");
    assert!(
        store
            .invitations()
            .await
            .expect("invitations")
            .contains(&(by_group, invitation)),
        "store conformance: invitations() misses a group's invitation"
    );
    store
        .put_outcome(
            by_user,
            StoredOutcome::new(queued.message_id, "{\"queued\":true}"),
        )
        .await
        .expect("put_outcome");
    for c in [by_user, by_group] {
        assert!(
            store.forget(c).await.expect("forget"),
            "forget finds a user's or group's records"
        );
        assert_eq!(
            store.window(c).await.expect("window"),
            None,
            "forget erases the window"
        );
    }
    assert_eq!(
        store.queued(by_user).await.expect("queued").len(),
        0,
        "forget empties a user's outbox"
    );
    assert_eq!(
        store
            .outcome(by_user, queued.message_id)
            .await
            .expect("outcome"),
        None,
        "forget erases a user's outcomes"
    );
    assert_eq!(
        store.invitation(by_group).await.expect("invitation"),
        None,
        "forget erases a group's invitation"
    );
    assert_eq!(
        store.window(by_phone).await.expect("window"),
        Some(WindowRecord::inbound(base() + ms(2))),
        "forgetting a user or group leaves the phone's window alone"
    );
    assert_eq!(
        store
            .user_id(user.user().unwrap_or_else(|| unreachable!()))
            .await
            .expect("user_id"),
        Some(bsuid("US.42000001")),
        "forget keeps the registry (a handle is never reused)"
    );
}

/// Everything stored for one customer moves to another: the window merged (latest
/// inbound, closure only while in force), the outbox appended in order without
/// duplicates, the later invitation, the outcomes (the target's own winning); the source
/// keeps nothing; moving again, or onto itself, changes nothing.
pub async fn move_customer<S: Store + Clone>(store: &S) {
    let (business, other) = (business(43, 0), business(43, 1));
    let user = Customer::User(
        store
            .user_ref(&bsuid("US.43000001"))
            .await
            .expect("user_ref"),
    );
    let source = Conversation::with_customer(business, user);
    let target = chat(business, 43);
    let hour = TimeDelta::hours(1);

    // The source: a later inbound message, two queued messages (one the target holds
    // too), an invitation sent later than the target's, and two outcomes (one the
    // target holds too).
    store
        .record_inbound(source, base() + hour)
        .await
        .expect("record_inbound");
    let shared = message("{\"shared\":true}", base());
    let only_source = message("{\"source\":true}", base() + ms(1));
    let only_target = message("{\"target\":true}", base() + ms(2));
    for m in [&shared, &only_source] {
        store.enqueue(source, m.clone(), 10).await.expect("enqueue");
    }
    for m in [&only_target, &shared] {
        store.enqueue(target, m.clone(), 10).await.expect("enqueue");
    }
    let later = Invitation {
        message_id: MessageId::new(),
        sent_at: base() + hour,
    };
    let earlier = Invitation {
        message_id: MessageId::new(),
        sent_at: base(),
    };
    store
        .set_invitation(source, Some(later))
        .await
        .expect("set_invitation");
    store
        .set_invitation(target, Some(earlier))
        .await
        .expect("set_invitation");
    let (both, source_only) = (MessageId::new(), MessageId::new());
    let outcome = |id, text: &str, wa_id: &str| StoredOutcome::new(id, text).with_wa_id(wa_id);
    store
        .put_outcome(source, outcome(both, "source", "wamid.s1"))
        .await
        .expect("put_outcome");
    store
        .put_outcome(source, outcome(source_only, "moved", "wamid.s2"))
        .await
        .expect("put_outcome");
    store
        .put_outcome(target, outcome(both, "target", "wamid.t1"))
        .await
        .expect("put_outcome");
    // Looked up by WhatsApp id before the move (the index exists, and must follow it).
    assert_eq!(
        store
            .outcome_by_wa_id(source, "wamid.s2")
            .await
            .expect("outcome_by_wa_id"),
        Some((source_only, "moved".to_owned())),
        "an outcome is found by its WhatsApp id"
    );
    // The target: an earlier inbound message, closed by the gateway after it (a closure
    // the source's later message overrides).
    store
        .record_inbound(target, base())
        .await
        .expect("record_inbound");
    store
        .record_gateway_closure(target, base() + ms(30))
        .await
        .expect("record_gateway_closure");
    let count = store.count().await.expect("count");

    let moved = store
        .move_customer(business, source.customer, target.customer)
        .await
        .expect("move_customer");
    assert_eq!(
        moved,
        MovedRecords {
            window: true,
            queued: 1,
            invitation: true,
            outcomes: 1,
            consent: false,
            free_entry_point: false,
        },
        "move_customer reports what it moved"
    );
    assert_eq!(
        store.window(target).await.expect("window"),
        Some(WindowRecord::inbound(base() + hour)),
        "the windows merge: the latest inbound time, and a closure it overrides is dropped"
    );
    assert_eq!(
        store.window(source).await.expect("window"),
        None,
        "the source keeps no window"
    );
    assert_eq!(
        store.count().await.expect("count"),
        count - 1,
        "two windows became one"
    );
    let indexed: Vec<Conversation> = store
        .inbound_between(base() - ms(1), base() + hour)
        .await
        .expect("inbound_between")
        .into_iter()
        .map(|(c, _)| c)
        .filter(|c| c.business == business)
        .collect();
    assert_eq!(indexed, vec![target], "the index follows the move");
    assert_eq!(
        ids(store, target).await,
        vec![
            only_target.message_id,
            shared.message_id,
            only_source.message_id,
        ],
        "the source's messages are appended in order, without one the target holds"
    );
    assert_eq!(
        ids(store, source).await,
        Vec::new(),
        "the source's outbox is empty"
    );
    let with_queued = store
        .conversations_with_queued()
        .await
        .expect("conversations_with_queued");
    assert!(
        with_queued.contains(&target) && !with_queued.contains(&source),
        "store conformance: conversations_with_queued() does not follow the move: {with_queued:?}"
    );
    assert_eq!(
        store.invitation(target).await.expect("invitation"),
        Some(later),
        "the later invitation is kept"
    );
    assert_eq!(
        store.invitation(source).await.expect("invitation"),
        None,
        "the source keeps no invitation"
    );
    assert_eq!(
        store.outcome(target, both).await.expect("outcome"),
        Some("target".to_owned()),
        "the target's own outcome wins"
    );
    assert_eq!(
        store.outcome(target, source_only).await.expect("outcome"),
        Some("moved".to_owned()),
        "the source's other outcome moves"
    );
    assert_eq!(
        store.outcomes(source).await.expect("outcomes"),
        Vec::new(),
        "the source keeps no outcome"
    );
    assert_eq!(
        store
            .outcome_by_wa_id(target, "wamid.s2")
            .await
            .expect("outcome_by_wa_id"),
        Some((source_only, "moved".to_owned())),
        "a moved outcome is found by its WhatsApp id in the target"
    );
    assert_eq!(
        store
            .outcome_by_wa_id(source, "wamid.s2")
            .await
            .expect("outcome_by_wa_id"),
        None,
        "a moved outcome is no longer found in the source"
    );
    assert_eq!(
        store
            .outcome_by_wa_id(target, "wamid.t1")
            .await
            .expect("outcome_by_wa_id"),
        Some((both, "target".to_owned())),
        "the target's own outcome keeps its WhatsApp id"
    );
    assert_eq!(
        store
            .outcome_by_wa_id(target, "wamid.s1")
            .await
            .expect("outcome_by_wa_id"),
        None,
        "the source's outcome that lost to the target's is not found by its id"
    );

    // Again, and onto itself: nothing to move.
    for (from, to) in [(source, target), (target, target)] {
        let again = store
            .move_customer(business, from.customer, to.customer)
            .await
            .expect("move_customer");
        assert!(
            again.is_empty(),
            "store conformance: a second move moved {again:?}"
        );
    }
    assert_eq!(
        store.queued(target).await.expect("queued").len(),
        3,
        "nothing moved twice"
    );

    // A closure in force moves with its window, and keeps the window closed; the
    // target's own later closure is kept.
    let closed = chat(business, 44);
    let open = chat(business, 45);
    store
        .record_inbound(closed, base())
        .await
        .expect("record_inbound");
    store
        .record_gateway_closure(closed, base() + hour)
        .await
        .expect("record_gateway_closure");
    store
        .record_inbound(open, base() + ms(10))
        .await
        .expect("record_inbound");
    store
        .move_customer(business, closed.customer, open.customer)
        .await
        .expect("move_customer");
    assert_eq!(
        store.window(open).await.expect("window"),
        Some(WindowRecord::inbound(base() + ms(10)).with_gateway_closure(base() + hour)),
        "a closure later than every inbound message stays in force"
    );
    // A move into a conversation of another kind (a phone to a user, as a number
    // changed into a user known only by id) works the same way.
    let elsewhere = Customer::User(
        store
            .user_ref(&bsuid("US.43000002"))
            .await
            .expect("user_ref"),
    );
    let moved = store
        .move_customer(business, open.customer, elsewhere)
        .await
        .expect("move_customer");
    assert!(
        moved.window,
        "store conformance: a phone's window did not move to a user"
    );
    assert_eq!(
        store
            .window(Conversation::with_customer(business, elsewhere))
            .await
            .expect("window"),
        Some(WindowRecord::inbound(base() + ms(10)).with_gateway_closure(base() + hour)),
        "a window moves whole into an empty conversation"
    );
    // Another business's conversation with the same customer is untouched.
    let other_business = chat(other, 43);
    store
        .record_inbound(other_business, base())
        .await
        .expect("record_inbound");
    store
        .move_customer(business, target.customer, elsewhere)
        .await
        .expect("move_customer");
    assert_eq!(
        store.window(other_business).await.expect("window"),
        Some(WindowRecord::inbound(base())),
        "a move stays within its business number"
    );
}

/// Our `messageId` finds the conversation whose send outcome is stored under it
/// ([`crate::OutboxStore::outcome_conversation`]): within one business number or across
/// all, whichever write stored it (a plain outcome, or one written with an enqueue or a
/// dequeue), following a move of the customer, and not once the outcome expired or was
/// forgotten.
pub async fn outcome_conversation<S: Store + Clone>(store: &S) {
    let (b, other_business) = (business(44, 0), business(44, 1));
    let (c, queued_chat) = (chat(b, 1), chat(b, 2));
    let find = async |business: Option<PhoneNumber>, id: MessageId| {
        store
            .outcome_conversation(business, id)
            .await
            .expect("outcome_conversation")
    };
    let sent = MessageId::new();
    assert_eq!(
        find(Some(b), sent).await,
        None,
        "nothing is found before anything is stored"
    );
    assert_eq!(
        find(None, sent).await,
        None,
        "nothing is found in any business before anything is stored"
    );
    store
        .put_outcome(c, stored(sent, "sent").with_wa_id("wamid.sent"))
        .await
        .expect("put_outcome");
    // An outcome of another business under another id is not confused with it.
    store
        .put_outcome(chat(other_business, 1), stored(MessageId::new(), "other"))
        .await
        .expect("put_outcome");
    assert_eq!(
        find(Some(b), sent).await,
        Some(c),
        "an outcome's messageId finds its conversation within the business"
    );
    assert_eq!(
        find(None, sent).await,
        Some(c),
        "an outcome's messageId finds its conversation when the business is not known"
    );
    assert_eq!(
        find(Some(other_business), sent).await,
        None,
        "another business number's conversations do not hold it"
    );
    assert_eq!(
        find(Some(b), MessageId::new()).await,
        None,
        "an id with no stored outcome finds nothing"
    );

    // Outcomes written with the outbox are found too.
    let waiting = message("{\"waiting\":true}", base());
    let queued_outcome = waiting.message_id;
    store
        .enqueue_with_outcome(
            queued_chat,
            waiting.clone(),
            DEFAULT_OUTBOX_LIMIT,
            stored(queued_outcome, "queued"),
        )
        .await
        .expect("enqueue_with_outcome");
    assert_eq!(
        find(Some(b), queued_outcome).await,
        Some(queued_chat),
        "an outcome stored with an enqueue is found by its messageId"
    );
    let delivered = MessageId::new();
    store
        .dequeue_with_outcome(queued_chat, queued_outcome, stored(delivered, "delivered"))
        .await
        .expect("dequeue_with_outcome");
    assert_eq!(
        find(None, delivered).await,
        Some(queued_chat),
        "an outcome stored with a dequeue is found by its messageId"
    );

    // Expired outcomes are not found.
    let brief = MessageId::new();
    store
        .put_outcome(c, stored(brief, "brief").keep_for(ms(100)))
        .await
        .expect("put_outcome");
    assert_eq!(
        find(Some(b), brief).await,
        Some(c),
        "an outcome is found by its messageId while its time to keep runs"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    // A write after expiry may prune; the lookup must not find it either way.
    store
        .put_outcome(c, stored(MessageId::new(), "later"))
        .await
        .expect("put_outcome");
    assert_eq!(
        find(Some(b), brief).await,
        None,
        "an expired outcome is not found by its messageId"
    );
    assert_eq!(
        find(None, brief).await,
        None,
        "an expired outcome is not found by its messageId in any business"
    );

    // A move of the customer takes the outcome, and the lookup follows it.
    let target = chat(b, 3);
    store
        .move_customer(b, c.customer, target.customer)
        .await
        .expect("move_customer");
    assert_eq!(
        find(Some(b), sent).await,
        Some(target),
        "after a move, the messageId finds the conversation the outcome moved to"
    );
    // Forgetting the conversation forgets the way to it.
    store.forget(target).await.expect("forget");
    assert_eq!(
        find(Some(b), sent).await,
        None,
        "a forgotten conversation's outcomes are not found by messageId"
    );
    assert_eq!(
        find(None, sent).await,
        None,
        "a forgotten conversation's outcomes are not found in any business"
    );
    assert_eq!(
        find(Some(b), delivered).await,
        Some(queued_chat),
        "forgetting one conversation leaves another's outcomes found"
    );
}

/// Our WhatsApp message id finds the conversation and `messageId` of the send outcome
/// that carries it ([`crate::OutboxStore::outcome_conversation_by_wa_id`]) without the
/// conversation being known: within one business number or across all, for a phone's or
/// a user handle's conversation, whichever write stored it; not once the outcome expired,
/// was replaced by one without that WhatsApp id, or was forgotten; following a move of
/// the customer.
pub async fn outcome_conversation_by_wa_id<S: Store + Clone>(store: &S) {
    let (b, other_business) = (business(54, 0), business(54, 1));
    let (c, queued_chat) = (chat(b, 1), chat(b, 2));
    let find = async |business: Option<PhoneNumber>, wa_id: &str| {
        store
            .outcome_conversation_by_wa_id(business, wa_id)
            .await
            .expect("outcome_conversation_by_wa_id")
    };
    assert_eq!(
        find(Some(b), "wamid.c54").await,
        None,
        "nothing is found before anything is stored"
    );
    let sent = MessageId::new();
    store
        .put_outcome(c, stored(sent, "sent").with_wa_id("wamid.c54"))
        .await
        .expect("put_outcome");
    // Another business's outcome with another WhatsApp id is not confused with it.
    store
        .put_outcome(
            chat(other_business, 1),
            stored(MessageId::new(), "other").with_wa_id("wamid.other54"),
        )
        .await
        .expect("put_outcome");
    check_eq(
        find(Some(b), "wamid.c54").await,
        Some((c, sent)),
        "a WhatsApp id finds its outcome's conversation and messageId within the business",
    );
    check_eq(
        find(None, "wamid.c54").await,
        Some((c, sent)),
        "a WhatsApp id finds its outcome when the business is not known",
    );
    check_eq(
        find(Some(other_business), "wamid.c54").await,
        None,
        "another business number's outcomes do not hold it",
    );
    check_eq(
        find(Some(b), "wamid.unknown54").await,
        None,
        "a WhatsApp id no outcome carries finds nothing",
    );
    check_eq(
        find(Some(b), "").await,
        None,
        "an empty WhatsApp id finds nothing",
    );
    let long = "w".repeat(MAX_WA_ID_BYTES + 1);
    store
        .put_outcome(c, stored(MessageId::new(), "long").with_wa_id(long.clone()))
        .await
        .expect("put_outcome");
    check_eq(
        find(Some(b), &long).await,
        None,
        "a WhatsApp id too long to index finds nothing",
    );

    // A user handle's conversation (a customer known by a business-scoped user id).
    let handle = store
        .user_ref(&bsuid("US.13491208655302700054"))
        .await
        .expect("user_ref");
    let by_user = Conversation::with_customer(b, Customer::User(handle));
    let to_user = MessageId::new();
    store
        .put_outcome(by_user, stored(to_user, "to user").with_wa_id("wamid.u54"))
        .await
        .expect("put_outcome");
    check_eq(
        find(Some(b), "wamid.u54").await,
        Some((by_user, to_user)),
        "a user handle's outcome is found by its WhatsApp id",
    );

    // Outcomes written with the outbox are found too.
    let waiting = message("{\"waiting\":true}", base());
    let queued_id = waiting.message_id;
    store
        .enqueue_with_outcome(
            queued_chat,
            waiting,
            DEFAULT_OUTBOX_LIMIT,
            stored(queued_id, "queued").with_wa_id("wamid.q54"),
        )
        .await
        .expect("enqueue_with_outcome");
    check_eq(
        find(Some(b), "wamid.q54").await,
        Some((queued_chat, queued_id)),
        "an outcome stored with an enqueue is found by its WhatsApp id",
    );
    store
        .dequeue_with_outcome(
            queued_chat,
            queued_id,
            stored(queued_id, "delivered").with_wa_id("wamid.d54"),
        )
        .await
        .expect("dequeue_with_outcome");
    check_eq(
        find(None, "wamid.d54").await,
        Some((queued_chat, queued_id)),
        "an outcome stored with a dequeue is found by its WhatsApp id",
    );
    check_eq(
        find(Some(b), "wamid.q54").await,
        None,
        "an outcome replaced with another WhatsApp id is not found by the old one",
    );
    store
        .put_outcome(queued_chat, stored(queued_id, "no wa id"))
        .await
        .expect("put_outcome");
    check_eq(
        find(Some(b), "wamid.d54").await,
        None,
        "an outcome replaced by one without a WhatsApp id is not found by it",
    );

    // Expired outcomes are not found.
    let brief = MessageId::new();
    store
        .put_outcome(
            c,
            stored(brief, "brief")
                .with_wa_id("wamid.brief54")
                .keep_for(ms(100)),
        )
        .await
        .expect("put_outcome");
    check_eq(
        find(Some(b), "wamid.brief54").await,
        Some((c, brief)),
        "an outcome is found by its WhatsApp id while its time to keep runs",
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    // A write after expiry may prune; the lookup must not find it either way.
    store
        .put_outcome(c, stored(MessageId::new(), "later"))
        .await
        .expect("put_outcome");
    check_eq(
        find(None, "wamid.brief54").await,
        None,
        "an expired outcome is not found by its WhatsApp id",
    );

    // A move of the customer takes the outcome, and the lookup follows it.
    let target = chat(b, 3);
    store
        .move_customer(b, c.customer, target.customer)
        .await
        .expect("move_customer");
    check_eq(
        find(Some(b), "wamid.c54").await,
        Some((target, sent)),
        "after a move, the WhatsApp id finds the conversation the outcome moved to",
    );
    // Forgetting the conversation forgets the way to it.
    store.forget(target).await.expect("forget");
    check_eq(
        find(None, "wamid.c54").await,
        None,
        "a forgotten conversation's outcomes are not found by WhatsApp id",
    );
    check_eq(
        find(Some(b), "wamid.u54").await,
        Some((by_user, to_user)),
        "forgetting one conversation leaves another's outcomes found",
    );
}

/// Inserts `entry` into the redelivery memory now; whether it was inserted.
async fn remember<S: Store>(store: &S, entry: RememberedInbound) -> bool {
    store
        .remember_inbound(entry, Utc::now())
        .await
        .expect("remember_inbound")
}

/// The redelivery memory now.
async fn remembered<S: Store>(store: &S) -> Vec<RememberedInbound> {
    store
        .remembered_inbound(Utc::now())
        .await
        .expect("remembered_inbound")
}

/// Carrying the redelivery memory (an export and import): a remembered id is listed under
/// its [`InboundId::digest`] with its first receipt and its horizon; inserting that entry
/// (as another store would) makes the same id a duplicate; an entry already remembered is
/// kept; an expired entry is neither listed nor inserted.
pub async fn redelivery_transfer<S: Store + Clone>(store: &S) {
    let from = business(21, 0);
    let to = business(21, 1);
    let expired_to = business(21, 2);
    let brief_to = business(21, 3);
    let id = |text: &str| match InboundId::new(text) {
        Ok(id) => id,
        Err(error) => panic!("store conformance: {text:?}: {error}"),
    };
    let listed_for = |entries: &[RememberedInbound], business: PhoneNumber| -> Vec<_> {
        entries
            .iter()
            .filter(|entry| entry.business == business)
            .copied()
            .collect()
    };
    // Real time: a store may measure the horizon on its own clock.
    let now = truncate_to_millis(Utc::now());
    let day = TimeDelta::days(1);
    let carried = id("wamid.CARRIED");

    store
        .record_inbound_once(chat(from, 1), now, &carried, now, now + day)
        .await
        .expect("record_inbound_once");
    let listed = store
        .remembered_inbound(now)
        .await
        .expect("remembered_inbound");
    let listed = listed_for(&listed, from);
    assert_eq!(listed.len(), 1, "the remembered id is listed once");
    let entry = listed[0];
    assert_eq!(
        entry.digest,
        carried.digest(),
        "a remembered id is listed by InboundId::digest"
    );
    assert_eq!(
        entry.first_received_at, now,
        "a remembered id is listed with its first receipt"
    );
    let off = (entry.remember_until - (now + day)).abs();
    assert!(
        off <= TimeDelta::seconds(10),
        "a remembered id is listed with its horizon (listed {}, recorded {})",
        entry.remember_until,
        now + day
    );

    let moved = RememberedInbound {
        business: to,
        ..entry
    };
    assert!(
        remember(store, moved).await,
        "an entry not remembered is inserted"
    );
    let redelivered = store
        .record_inbound_once(chat(to, 1), now + ms(5), &carried, now + ms(5), now + day)
        .await
        .expect("record_inbound_once");
    assert_eq!(
        redelivered,
        InboundReceipt::Duplicate {
            first_received_at: now,
        },
        "an inserted entry makes its id a duplicate, naming the first receipt"
    );
    assert_eq!(
        store.window(chat(to, 1)).await.expect("window"),
        None,
        "a duplicate of an inserted entry records nothing"
    );
    let again = RememberedInbound {
        first_received_at: now - ms(1_000),
        ..moved
    };
    assert!(
        !remember(store, again).await,
        "an entry already remembered is kept, not replaced"
    );
    let kept = remembered(store).await;
    assert_eq!(
        listed_for(&kept, to)
            .iter()
            .map(|entry| entry.first_received_at)
            .collect::<Vec<_>>(),
        vec![now],
        "the kept entry still names the first receipt"
    );

    let expired = RememberedInbound {
        business: expired_to,
        first_received_at: now - day,
        remember_until: now - ms(1_000),
        ..entry
    };
    assert!(
        !remember(store, expired).await,
        "an expired entry is not inserted"
    );
    let fresh = store
        .record_inbound_once(chat(expired_to, 1), now, &carried, now, now + day)
        .await
        .expect("record_inbound_once");
    assert!(
        matches!(fresh, InboundReceipt::Recorded(_)),
        "an expired entry does not make its id a duplicate"
    );

    let brief = RememberedInbound {
        business: brief_to,
        remember_until: Utc::now() + ms(300),
        ..entry
    };
    remember(store, brief).await;
    assert_eq!(
        listed_for(&remembered(store).await, brief_to).len(),
        1,
        "an entry inserted for a moment is listed while it lasts"
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        listed_for(&remembered(store).await, brief_to),
        Vec::new(),
        "an expired entry is not listed"
    );
}

/// Marketing consent: nothing stored reads as allowed; the later opt-out or opt-in wins
/// whatever order they are recorded in; the back-off is only ever extended; consent is
/// per conversation.
pub async fn marketing_consent<S: Store>(store: &S) {
    use crate::MarketingConsent;
    let chat_a = chat(business(45, 0), 1);
    let chat_b = chat(business(45, 0), 2);
    check_eq(
        ok(store.marketing_consent(chat_a).await, "read consent"),
        MarketingConsent::default(),
        "a conversation without consent records is not opted out and has no back-off",
    );
    let t0 = base();
    let out = ok(
        store.record_opt_out(chat_a, true, t0 + ms(10)).await,
        "opt out",
    );
    check_eq(out.opted_out, true, "an opt-out is stored");
    // An older opt-in (a redelivered webhook) does not undo it.
    let stale = ok(
        store.record_opt_out(chat_a, false, t0).await,
        "stale opt in",
    );
    check_eq(
        stale,
        out,
        "an opt-in older than the stored opt-out changes nothing",
    );
    let back = ok(
        store.record_opt_out(chat_a, false, t0 + ms(20)).await,
        "opt in",
    );
    check_eq(back.opted_out, false, "a later opt-in is stored");
    check_eq(
        back.changed_at,
        Some(t0 + ms(20)),
        "the change's time is stored",
    );
    let long = ok(
        store
            .extend_back_off(chat_a, t0 + TimeDelta::hours(24))
            .await,
        "back off",
    );
    let short = ok(
        store
            .extend_back_off(chat_a, t0 + TimeDelta::hours(1))
            .await,
        "shorter back off",
    );
    check_eq(
        short.back_off_until,
        Some(t0 + TimeDelta::hours(24)),
        "a shorter back-off does not shorten the stored one",
    );
    check_eq(
        long.opted_out,
        false,
        "a back-off leaves the opt-out as it was",
    );
    check_eq(
        ok(store.marketing_consent(chat_b).await, "read other"),
        MarketingConsent::default(),
        "consent belongs to one conversation",
    );
    check_eq(
        ok(store.marketing_consent(chat_a).await, "read back"),
        short,
        "what the calls answered is what is stored",
    );
}

/// The free entry point window: a reply opens it only after a referral, within the
/// given span, once; a confirmation makes the end the platform's; a later referral
/// after the window ended starts over; replies racing from many tasks open it once.
pub async fn free_entry_point<S: Store + Clone>(store: &S) {
    let t0 = base();
    let day = TimeDelta::hours(24);
    let three_days = TimeDelta::hours(72);
    let chat_a = chat(business(46, 0), 1);
    check_eq(
        ok(store.free_entry_point(chat_a).await, "read"),
        None,
        "nothing is stored before a referral",
    );
    let none = ok(
        store
            .record_business_reply(chat_a, t0, t0 + three_days, day)
            .await,
        "reply without referral",
    );
    check_eq(none, None, "a reply without a referral opens nothing");
    let referral = ok(store.record_referral(chat_a, t0).await, "referral");
    check_eq(referral.opened_at, None, "a referral alone opens no window");
    let late = ok(
        store
            .record_business_reply(chat_a, t0 + day + ms(1), t0 + day + three_days, day)
            .await,
        "late reply",
    );
    check_eq(
        late.and_then(|e| e.opened_at),
        None,
        "a reply more than the span after the referral opens nothing",
    );
    let reply_at = t0 + TimeDelta::hours(2);
    let opened = ok(
        store
            .record_business_reply(chat_a, reply_at, reply_at + three_days, day)
            .await,
        "reply",
    )
    .unwrap_or_default();
    check_eq(
        (opened.opened_at, opened.until, opened.confirmed),
        (Some(reply_at), Some(reply_at + three_days), false),
        "a timely reply opens the predicted window",
    );
    let again = ok(
        store
            .record_business_reply(chat_a, reply_at + ms(5), reply_at + ms(5) + three_days, day)
            .await,
        "second reply",
    );
    check_eq(
        again,
        Some(opened),
        "a second reply does not move the window",
    );
    let platform_end = reply_at + three_days - ms(1000);
    let confirmed = ok(
        store
            .confirm_free_entry_point(chat_a, platform_end, reply_at)
            .await,
        "confirm",
    );
    check_eq(
        (confirmed.until, confirmed.confirmed),
        (Some(platform_end), true),
        "a confirmation stores the platform's end",
    );
    let redelivered = ok(store.record_referral(chat_a, t0).await, "old referral");
    check_eq(
        redelivered,
        confirmed,
        "a redelivered referral changes nothing",
    );
    let after = platform_end + ms(1);
    let fresh = ok(store.record_referral(chat_a, after).await, "new referral");
    check_eq(
        (fresh.referral_at, fresh.opened_at, fresh.confirmed),
        (Some(after), None, false),
        "a referral after the window ended starts over",
    );

    // Many replies at once: exactly one opening time is kept.
    let chat_b = chat(business(46, 1), 1);
    ok(store.record_referral(chat_b, t0).await, "referral b");
    let mut tasks = Vec::new();
    for n in 0..16 {
        let store = store.clone();
        let at = t0 + ms(n);
        tasks.push(tokio::spawn(async move {
            store
                .record_business_reply(chat_b, at, at + three_days, day)
                .await
        }));
    }
    let mut openings = std::collections::HashSet::new();
    for task in tasks {
        let answer = ok(
            task.await
                .map_err(|e| StoreError::backend("tokio task", e))
                .and_then(|r| r),
            "concurrent reply",
        );
        openings.insert(answer.and_then(|e| e.opened_at));
    }
    check_eq(
        openings.len(),
        1,
        "concurrent replies all see the one window that opened",
    );
}

/// Cost records: a prediction is listed with the report for its business and
/// `messageId`, per business; a report without a prediction is not listed.
pub async fn cost_records<S: Store>(store: &S) {
    use crate::{PredictedCost, PricingCategory, ReportedPricing};
    let first = business(47, 0);
    let second = business(47, 1);
    let t0 = base();
    let predicted = |business, customer, n: i64, category| PredictedCost {
        conversation: chat(business, customer),
        message_id: MessageId::new(),
        wa_id: Some(format!("wamid.{n}")),
        sent_at: t0 + ms(n),
        category,
        free: n % 2 == 0,
    };
    let a = predicted(first, 1, 1, PricingCategory::Marketing);
    let b = predicted(first, 2, 2, PricingCategory::Service);
    let c = predicted(second, 1, 3, PricingCategory::Utility);
    for cost in [&a, &b, &c] {
        ok(
            store.record_predicted_cost(cost.clone()).await,
            "record prediction",
        );
    }
    let report = ReportedPricing {
        category: "utility".into(),
        pricing_type: Some("regular".into()),
        billable: Some(true),
        reported_at: t0 + ms(100),
    };
    ok(
        store
            .record_reported_pricing(first, a.message_id, report.clone())
            .await,
        "record report",
    );
    ok(
        store
            .record_reported_pricing(first, MessageId::new(), report.clone())
            .await,
        "record unmatched report",
    );
    let records = ok(store.cost_records(Some(first)).await, "list costs");
    let found: Vec<_> = records
        .iter()
        .map(|r| (r.predicted.clone(), r.reported.clone()))
        .collect();
    check_eq(
        found,
        vec![(a.clone(), Some(report)), (b.clone(), None)],
        "a business's records, in send order, each with its report",
    );
    let all = ok(store.cost_records(None).await, "list all costs");
    check_eq(
        [&a, &b, &c]
            .iter()
            .all(|p| all.iter().any(|r| &r.predicted == *p)),
        true,
        "every business's records are listed without a business",
    );
}

/// The messaging limit count: a customer counts once in the span, the limit holds
/// exactly when many tasks count at once, customers leave the count `span` after they
/// were last reached, and portfolios are apart. A bad portfolio name is refused.
pub async fn concurrent_reach<S: Store + Clone>(store: &S) {
    use crate::Reach;
    let t0 = base();
    let span = TimeDelta::hours(24);
    let limit = 5;
    let mut tasks = Vec::new();
    for customer in 0..24u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .reach_customer(
                    "conformance-a",
                    254_700_000_000 + customer % 12,
                    t0 + ms(customer as i64),
                    limit,
                    span,
                )
                .await
        }));
    }
    let mut counted = std::collections::HashSet::new();
    for task in tasks {
        let reach = ok(
            task.await
                .map_err(|e| StoreError::backend("tokio task", e))
                .and_then(|r| r),
            "reach",
        );
        if let Reach::Counted { reached } = reach {
            assert!(
                reached <= limit,
                "store conformance: a count above the limit: {reached}"
            );
            counted.insert(reached);
        }
    }
    check_eq(
        counted.len() as u64,
        limit,
        "exactly `limit` customers are counted, each once",
    );
    check_eq(
        ok(
            store.reached("conformance-a", t0 + ms(30), span).await,
            "reached",
        ),
        limit,
        "the count is the limit",
    );
    check_eq(
        ok(
            store.reached("conformance-b", t0 + ms(30), span).await,
            "reached b",
        ),
        0,
        "portfolios are counted apart",
    );
    // Who was counted may come back; nobody else may.
    let later = t0 + TimeDelta::hours(1);
    let mut again = 0;
    for customer in 0..12u64 {
        match ok(
            store
                .reach_customer(
                    "conformance-a",
                    254_700_000_000 + customer,
                    later,
                    limit,
                    span,
                )
                .await,
            "reach again",
        ) {
            Reach::AlreadyCounted { reached } => {
                check_eq(reached, limit, "a customer reached again costs nothing");
                again += 1;
            }
            Reach::LimitReached { reached } => check_eq(reached, limit, "the limit holds"),
            Reach::Counted { reached } => {
                panic!("store conformance: a customer counted above the limit ({reached})")
            }
        }
    }
    check_eq(
        again,
        limit,
        "the counted customers are the ones let through again",
    );
    // A day after the first reaches, only the customers reached again an hour later count.
    let next_day = t0 + span + ms(30);
    check_eq(
        ok(
            store.reached("conformance-a", next_day, span).await,
            "reached later",
        ),
        limit,
        "customers reached again stay counted",
    );
    check_eq(
        ok(
            store.reached("conformance-a", later + span, span).await,
            "reached after the span",
        ),
        0,
        "customers leave the count `span` after they were last reached",
    );
    let fresh = ok(
        store
            .reach_customer("conformance-a", 254_700_000_099, later + span, limit, span)
            .await,
        "reach after",
    );
    check_eq(
        fresh,
        Reach::Counted { reached: 1 },
        "after the span the count starts over",
    );
    let bad = store
        .reach_customer("no spaces allowed", 1, t0, limit, span)
        .await;
    assert!(
        matches!(bad, Err(StoreError::InvalidPortfolio { .. })),
        "store conformance: a bad portfolio name must be InvalidPortfolio, got {bad:?}"
    );
}

/// A messaging limit count keeps to one kind of clock: while a portfolio holds counts
/// made on a simulated clock (given times), a count on a real clock is refused with
/// [`StoreError::MixedCountClocks`] and counts nothing, and the reverse; the first kind
/// keeps counting, and another portfolio may use the other kind. (A simulated clock's
/// times and a real one's would prune each other's entries and let more than the tier
/// through.)
pub async fn mixed_count_clocks<S: Store>(store: &S) {
    use crate::{CountTime, Reach};
    let span = TimeDelta::hours(24);
    let now = truncate_to_millis(Utc::now());
    let limit = 2;
    let first = |kind: bool, at: DateTime<Utc>| {
        if kind {
            CountTime::SystemNow(at)
        } else {
            CountTime::Given(at)
        }
    };
    for (n, simulated_first) in [true, false].into_iter().enumerate() {
        let portfolio = format!("conformance-mixed-{n}");
        let (held, other) = (first(!simulated_first, now), first(simulated_first, now));
        check_eq(
            ok(
                store
                    .reach_customer(&portfolio, 254_700_000_001, held, limit, span)
                    .await,
                "first count",
            ),
            Reach::Counted { reached: 1 },
            "a portfolio's first count is counted",
        );
        let refused = store
            .reach_customer(&portfolio, 254_700_000_002, other, limit, span)
            .await;
        assert!(
            matches!(
                &refused,
                Err(StoreError::MixedCountClocks { portfolio: named, held: h, asked: a })
                    if *named == portfolio && *h == held.clock_kind() && *a == other.clock_kind()
            ),
            "store conformance: a count on a {} clock where {} counts live must be MixedCountClocks naming both, got {refused:?}",
            other.clock_kind(),
            held.clock_kind()
        );
        check_eq(
            ok(
                store
                    .reach_customer(&portfolio, 254_700_000_003, held, limit, span)
                    .await,
                "same-kind count",
            ),
            Reach::Counted { reached: 2 },
            "the refused count counted nothing; the first kind keeps counting",
        );
        check_eq(
            ok(
                store
                    .reach_customer(
                        &format!("conformance-mixed-other-{n}"),
                        254_700_000_002,
                        other,
                        limit,
                        span,
                    )
                    .await,
                "other portfolio",
            ),
            Reach::Counted { reached: 1 },
            "another portfolio may count on the other kind of clock",
        );
    }
}

/// Opt-outs and opt-ins carrying the same millisecond: whatever order they arrive in, the
/// stored consent is that of the latest time, opted out when any change at that time is
/// an opt-out (the safe side). Random orderings of changes with tied times, each on a
/// conversation of its own.
pub async fn opt_out_ties<S: Store>(store: &S) {
    let t0 = base();
    let mut sequence = Sequence(0x6f70_745f_7469_6573);
    for round in 0..40u64 {
        let conversation = chat(business(48, 0), round);
        // Two to six changes over three distinct times, so ties are frequent.
        let count = 2 + sequence.below(5);
        let changes: Vec<(bool, i64)> = (0..count)
            .map(|_| (sequence.below(2) == 1, sequence.below(3) as i64))
            .collect();
        let latest = changes.iter().map(|(_, at)| *at).max().unwrap_or(0);
        let expected = changes
            .iter()
            .any(|(opted_out, at)| *at == latest && *opted_out);
        let mut stored = crate::MarketingConsent::default();
        for (opted_out, at) in &changes {
            stored = ok(
                store
                    .record_opt_out(conversation, *opted_out, t0 + ms(*at))
                    .await,
                "record opt-out or opt-in",
            );
        }
        check_eq(
            (stored.opted_out, stored.changed_at),
            (expected, Some(t0 + ms(latest))),
            format!(
                "changes {changes:?} (opted out, ms after t0, in arrival order) end opted out when any change at the latest time is an opt-out"
            ),
        );
        check_eq(
            ok(store.marketing_consent(conversation).await, "read consent"),
            stored,
            "what the calls answered is what is stored",
        );
    }
}

/// A status's confirmed end of the free entry point window is taken only after the
/// window's opening and at most [`crate::MAX_CONFIRMED_FREE_ENTRY_POINT`] after it:
/// otherwise the prediction stays, unconfirmed.
pub async fn free_entry_point_confirmation_bounds<S: Store>(store: &S) {
    let t0 = base();
    let day = TimeDelta::hours(24);
    let three_days = TimeDelta::hours(72);
    let longest = crate::MAX_CONFIRMED_FREE_ENTRY_POINT;
    let conversation = chat(business(49, 0), 1);
    ok(store.record_referral(conversation, t0).await, "referral");
    let reply_at = t0 + TimeDelta::hours(1);
    let predicted = ok(
        store
            .record_business_reply(conversation, reply_at, reply_at + three_days, day)
            .await,
        "reply",
    )
    .unwrap_or_default();
    for (until, why) in [
        (
            reply_at + TimeDelta::days(365 * 70),
            "an end seventy years on",
        ),
        (reply_at + longest + ms(1), "an end just past the longest"),
        (reply_at, "an end at the opening"),
        (reply_at - TimeDelta::hours(1), "an end before the opening"),
    ] {
        check_eq(
            ok(
                store
                    .confirm_free_entry_point(conversation, until, reply_at)
                    .await,
                "confirm out of range",
            ),
            predicted,
            format!("{why} is not taken: the prediction stays"),
        );
    }
    check_eq(
        ok(store.free_entry_point(conversation).await, "read"),
        Some(predicted),
        "nothing out of range was stored",
    );
    let edge = reply_at + longest;
    let confirmed = ok(
        store
            .confirm_free_entry_point(conversation, edge, reply_at)
            .await,
        "confirm at the longest",
    );
    check_eq(
        (confirmed.until, confirmed.confirmed),
        (Some(edge), true),
        "an end exactly the longest after the opening is taken",
    );
    // Without a known opening, the range counts from the confirmed message's send.
    let unopened = chat(business(49, 0), 2);
    let sent_at = t0 + TimeDelta::hours(3);
    let refused = ok(
        store
            .confirm_free_entry_point(unopened, sent_at + TimeDelta::days(30), sent_at)
            .await,
        "confirm far without an opening",
    );
    check_eq(
        refused.confirmed,
        false,
        "an end far past the send is not taken when no window was known",
    );
    let taken = ok(
        store
            .confirm_free_entry_point(unopened, sent_at + three_days, sent_at)
            .await,
        "confirm without an opening",
    );
    check_eq(
        (taken.opened_at, taken.until, taken.confirmed),
        (Some(sent_at), Some(sent_at + three_days), true),
        "an end in range opens the window at the send",
    );
}

/// Moving a customer (a phone number change) moves its consent and free entry point
/// records with it: merged with the target's, opted out when either was (changed at the
/// later change), the later back-off, and the free entry point record whose window ends
/// later; nothing of the conversation's records is left under the source (the customer's
/// back-off, kept per customer, is carried and also stays: see [`customer_back_off`]).
pub async fn move_customer_consent<S: Store>(store: &S) {
    use crate::MarketingConsent;
    let business = business(50, 0);
    let t0 = base();
    let hour = TimeDelta::hours(1);
    let three_days = TimeDelta::hours(72);

    // Opted out, a back-off and an open free entry point window, then a number change
    // to a customer nothing is stored for.
    let (old, new) = (chat(business, 1), chat(business, 2));
    ok(store.record_opt_out(old, true, t0).await, "opt out");
    ok(store.extend_back_off(old, t0 + hour * 24).await, "back off");
    ok(store.record_referral(old, t0).await, "referral");
    let entry = ok(
        store
            .record_business_reply(old, t0 + hour, t0 + hour + three_days, hour * 24)
            .await,
        "reply",
    );
    let consent = ok(store.marketing_consent(old).await, "read consent");
    let moved = ok(
        store
            .move_customer(business, old.customer, new.customer)
            .await,
        "move",
    );
    check_eq(
        (moved.consent, moved.free_entry_point),
        (true, true),
        "the move reports the consent and free entry point records it moved",
    );
    check_eq(
        ok(store.marketing_consent(new).await, "read moved consent"),
        consent,
        "the opt-out and back-off move with the customer",
    );
    check_eq(
        ok(store.free_entry_point(new).await, "read moved entry"),
        entry,
        "the free entry point window moves with the customer",
    );
    check_eq(
        ok(store.marketing_consent(old).await, "read old consent"),
        MarketingConsent {
            back_off_until: consent.back_off_until,
            ..MarketingConsent::default()
        },
        "nothing of the conversation's consent record is left under the old number (the customer's back-off stays with it too)",
    );
    check_eq(
        ok(store.free_entry_point(old).await, "read old entry"),
        None,
        "no free entry point record is left under the old number",
    );

    // Both hold records: the source opted out earlier, the target opted in later; the
    // target's back-off is the later; the source's window ends later.
    let (source, target) = (chat(business, 3), chat(business, 4));
    ok(store.record_opt_out(source, true, t0).await, "opt out");
    ok(
        store.extend_back_off(source, t0 + hour).await,
        "short back off",
    );
    ok(
        store.record_opt_out(target, false, t0 + hour).await,
        "opt in",
    );
    ok(
        store.extend_back_off(target, t0 + hour * 24).await,
        "long back off",
    );
    ok(store.record_referral(target, t0).await, "target referral");
    ok(
        store.record_referral(source, t0 + hour).await,
        "source referral",
    );
    let source_entry = ok(
        store
            .record_business_reply(source, t0 + hour * 2, t0 + hour * 2 + three_days, hour * 24)
            .await,
        "source reply",
    );
    ok(
        store
            .move_customer(business, source.customer, target.customer)
            .await,
        "move onto a held customer",
    );
    check_eq(
        ok(store.marketing_consent(target).await, "read merged consent"),
        MarketingConsent {
            opted_out: true,
            changed_at: Some(t0 + hour),
            back_off_until: Some(t0 + hour * 24),
        },
        "opted out wins, changed at the later change, with the later back-off",
    );
    check_eq(
        ok(store.free_entry_point(target).await, "read merged entry"),
        source_entry,
        "the free entry point record whose window ends later is kept",
    );
    check_eq(
        ok(store.marketing_consent(source).await, "read source consent"),
        MarketingConsent {
            back_off_until: Some(t0 + hour),
            ..MarketingConsent::default()
        },
        "nothing of the conversation's consent record is left under the source (the customer's back-off stays with it too)",
    );
    // An opt-in made before the merged change time does not undo the opt-out.
    let stale = ok(
        store.record_opt_out(target, false, t0 + ms(1)).await,
        "stale opt in",
    );
    check_eq(stale.opted_out, true, "an older opt-in leaves the opt-out");
}

/// The marketing consent and free entry point records go through export and import:
/// exported (format version 3), then imported under another business number, they read
/// back the same (an opt-out with its time, a back-off, a predicted and a confirmed
/// window, a referral alone).
pub async fn consent_export_round_trip<S: Store>(store: &S) {
    use crate::export::{export, import};
    let (from, to) = (business(52, 0), business(52, 1));
    let t0 = base();
    let hour = TimeDelta::hours(1);
    let three_days = TimeDelta::hours(72);
    let customer = |business, n| chat(business, n);
    ok(
        store.record_opt_out(customer(from, 1), true, t0).await,
        "opt out",
    );
    ok(
        store
            .extend_back_off(customer(from, 1), t0 + hour * 24)
            .await,
        "back off",
    );
    ok(
        store
            .record_opt_out(customer(from, 2), false, t0 + hour)
            .await,
        "opt in",
    );
    // Customers 3 and 4: a timely reply opened a window (4's is then confirmed).
    for n in [3, 4] {
        ok(
            store.record_referral(customer(from, n), t0).await,
            "referral",
        );
        ok(
            store
                .record_business_reply(
                    customer(from, n),
                    t0 + hour,
                    t0 + hour + three_days,
                    hour * 24,
                )
                .await,
            "reply",
        );
    }
    ok(
        store
            .confirm_free_entry_point(customer(from, 4), t0 + hour * 70, t0 + hour)
            .await,
        "confirm",
    );
    ok(
        store.record_referral(customer(from, 5), t0).await,
        "referral alone",
    );

    let mut exported = Vec::new();
    let transfer = ok(export(store, &mut exported).await, "export");
    let text = String::from_utf8(exported).unwrap_or_default();
    assert!(
        transfer.consents >= 2 && transfer.free_entry_points >= 3,
        "store conformance: consent records are exported: {transfer:?}"
    );
    // The same lines under another business number.
    let moved: String = text
        .lines()
        .filter(|line| {
            line.contains("\"kind\":\"header\"")
                || (line.contains(&format!("\"business\":\"{from}\""))
                    && (line.contains("\"kind\":\"consent\"")
                        || line.contains("\"kind\":\"free_entry_point\"")))
        })
        .map(|line| format!("{}\n", line.replace(&from.to_string(), &to.to_string())))
        .collect();
    let imported = ok(import(store, moved.as_bytes()).await, "import");
    check_eq(
        (imported.consents, imported.free_entry_points),
        (2, 3),
        format!("the consent lines are imported:\n{moved}"),
    );
    for n in 1..=5 {
        let mut records = Vec::new();
        for business in [to, from] {
            let conversation = customer(business, n);
            records.push((
                ok(store.marketing_consent(conversation).await, "read consent"),
                ok(store.free_entry_point(conversation).await, "read entry"),
            ));
        }
        check_eq(
            records[0],
            records[1],
            format!("customer {n}'s consent and free entry point records read back the same"),
        );
    }
}

/// The per-user marketing back-off (131049) is the customer's, across business numbers:
/// recorded through one number it holds for the customer on every other (and for no
/// other customer) while the opt-out stays with its number; it is only ever extended,
/// from any number; every consent a call answers carries it; it is listed for export; a
/// move of the customer carries it to the new identity (the old one keeps it); and it
/// goes through export and import as a `back_off` line.
pub async fn customer_back_off<S: Store>(store: &S) {
    use crate::MarketingConsent;
    use crate::export::{export, import};
    let (first, second) = (business(53, 0), business(53, 1));
    let t0 = base();
    let (hour, day) = (TimeDelta::hours(1), TimeDelta::hours(24));
    // Customers of their own: the back-off is the customer's, whatever check wrote it.
    let n = |k: u64| 5300 + k;
    let (limited, elsewhere, other) = (chat(first, n(1)), chat(second, n(1)), chat(first, n(2)));

    ok(store.record_opt_out(limited, true, t0).await, "opt out");
    let answered = ok(store.extend_back_off(limited, t0 + day).await, "back off");
    check_eq(
        answered.back_off_until,
        Some(t0 + day),
        "extend_back_off answers the back-off in force",
    );
    check_eq(
        ok(
            store.marketing_consent(elsewhere).await,
            "read other number",
        ),
        MarketingConsent {
            back_off_until: Some(t0 + day),
            ..MarketingConsent::default()
        },
        "a back-off recorded through one business number holds for the customer on another; the opt-out does not",
    );
    check_eq(
        ok(store.marketing_consent(other).await, "read other customer"),
        MarketingConsent::default(),
        "a back-off belongs to one customer",
    );
    let shorter = ok(
        store.extend_back_off(elsewhere, t0 + hour).await,
        "shorter back off",
    );
    check_eq(
        shorter.back_off_until,
        Some(t0 + day),
        "a shorter back-off through another number does not shorten it",
    );
    ok(
        store.extend_back_off(elsewhere, t0 + day * 2).await,
        "longer back off",
    );
    check_eq(
        ok(store.marketing_consent(limited).await, "read first number"),
        MarketingConsent {
            opted_out: true,
            changed_at: Some(t0),
            back_off_until: Some(t0 + day * 2),
        },
        "a longer back-off through another number extends it on the first",
    );
    check_eq(
        ok(
            store.customer_back_off(limited.customer).await,
            "read the customer's back-off",
        ),
        Some(t0 + day * 2),
        "customer_back_off reads the customer's record",
    );
    check_eq(
        ok(
            store.extend_customer_back_off(limited.customer, t0).await,
            "extend to an earlier end",
        ),
        t0 + day * 2,
        "extend_customer_back_off answers the end stored",
    );
    let opted = ok(
        store.record_opt_out(elsewhere, true, t0 + ms(1)).await,
        "opt out on the other number",
    );
    check_eq(
        opted.back_off_until,
        Some(t0 + day * 2),
        "record_opt_out answers the consent in force, the customer's back-off included",
    );
    let listed = ok(store.customer_back_offs().await, "list back-offs");
    let ours = [limited.customer, other.customer];
    check_eq(
        listed
            .iter()
            .filter(|(customer, _)| ours.contains(customer))
            .map(|(customer, until)| (*customer, until.as_ref().ok().copied()))
            .collect::<Vec<_>>(),
        vec![(limited.customer, Some(t0 + day * 2))],
        "customer_back_offs lists the one stored",
    );

    // A number change within the first business number: carried to the new number (for
    // every business number), and kept by the old one.
    let new_number = chat(first, n(3));
    let moved = ok(
        store
            .move_customer(first, limited.customer, new_number.customer)
            .await,
        "move",
    );
    check_eq(
        moved.consent,
        true,
        "the move reports the back-off it carried",
    );
    check_eq(
        ok(
            store.marketing_consent(chat(second, n(3))).await,
            "read new number",
        )
        .back_off_until,
        Some(t0 + day * 2),
        "the back-off moves with the customer, for every business number",
    );
    check_eq(
        ok(store.marketing_consent(elsewhere).await, "read old number").back_off_until,
        Some(t0 + day * 2),
        "the old identity keeps the back-off (another number may still know the customer by it)",
    );
    check_eq(
        ok(
            store
                .move_customer(first, limited.customer, new_number.customer)
                .await,
            "move again",
        ),
        crate::MovedRecords::default(),
        "moving again carries nothing new",
    );

    // Export and import: the new number's `back_off` line, renamed to another customer.
    let mut exported = Vec::new();
    let transfer = ok(export(store, &mut exported).await, "export");
    assert!(
        transfer.back_offs >= 2,
        "store conformance: both customers' back-offs are exported: {transfer:?}"
    );
    let text = String::from_utf8(exported).unwrap_or_default();
    let (three, four) = (
        new_number.customer.to_string(),
        chat(first, n(4)).customer.to_string(),
    );
    let renamed: String = text
        .lines()
        .filter(|line| {
            line.contains("\"kind\":\"header\"")
                || (line.contains("\"kind\":\"back_off\"")
                    && line.contains(&format!("\"customer\":\"{three}\"")))
        })
        .map(|line| format!("{}\n", line.replace(&three, &four)))
        .collect();
    let imported = ok(import(store, renamed.as_bytes()).await, "import");
    check_eq(
        imported.back_offs,
        1,
        format!("the back_off line is imported:\n{renamed}"),
    );
    check_eq(
        ok(
            store.marketing_consent(chat(second, n(4))).await,
            "read imported",
        )
        .back_off_until,
        Some(t0 + day * 2),
        "an imported back-off holds for the customer on every business number",
    );
}

// ---------------------------------------------------------------------------------------
// Checks after a backend-specific setup: not in the suite (the record they start from is
// written the backend's own way, as an older version or a damaged store left it); each
// backend's tests write it, then call the check.

/// After the backend's test stored a 131049 back-off ending at `legacy_until` inside
/// `limited`'s own consent record (as a version that kept it per conversation did, with
/// no opt-out and nothing else stored for the customer): it is honoured for that
/// conversation and not for `elsewhere` (the same customer through another business
/// number); a shorter customer back-off does not shorten it, an opt-out keeps it, and a
/// longer customer back-off extends it.
pub async fn legacy_back_off_is_honoured<S: Store>(
    store: &S,
    limited: Conversation,
    elsewhere: Conversation,
    legacy_until: DateTime<Utc>,
) {
    let legacy_until = truncate_to_millis(legacy_until);
    let back_off = |consent: crate::MarketingConsent| consent.back_off_until;
    check_eq(
        back_off(ok(store.marketing_consent(limited).await, "read")),
        Some(legacy_until),
        "a back-off stored per conversation is honoured for its conversation",
    );
    check_eq(
        back_off(ok(store.marketing_consent(elsewhere).await, "read other")),
        None,
        "a back-off stored per conversation was that conversation's only",
    );
    let shorter = legacy_until - TimeDelta::hours(23);
    ok(
        store.extend_back_off(elsewhere, shorter).await,
        "shorter customer back-off",
    );
    check_eq(
        back_off(ok(store.marketing_consent(limited).await, "read")),
        Some(legacy_until),
        "a shorter customer back-off does not shorten the conversation's own",
    );
    let stopped = ok(
        store.record_opt_out(limited, true, shorter).await,
        "opt out",
    );
    check_eq(
        (stopped.opted_out, stopped.back_off_until),
        (true, Some(legacy_until)),
        "an opt-out keeps the conversation's own back-off",
    );
    let longer = legacy_until + TimeDelta::hours(6);
    ok(
        store.extend_back_off(elsewhere, longer).await,
        "longer customer back-off",
    );
    check_eq(
        back_off(ok(store.marketing_consent(limited).await, "read")),
        Some(longer),
        "a longer customer back-off extends it",
    );
}

/// After the backend's test recorded an inbound message for `limited` and made its
/// customer's stored back-off unreadable: reading the consent of that customer through
/// any number is [`StoreError::CorruptBackOff`] naming the customer (never "allowed"); a
/// move of the customer to `new_number` stops with nothing moved; a new back-off ending
/// at `until` replaces the unreadable one, after which the move carries it.
pub async fn unreadable_back_off_is_refused<S: Store>(
    store: &S,
    limited: Conversation,
    elsewhere: Conversation,
    new_number: Customer,
    until: DateTime<Utc>,
) {
    let until = truncate_to_millis(until);
    for conversation in [limited, elsewhere] {
        match store.marketing_consent(conversation).await {
            Err(StoreError::CorruptBackOff { customer, .. }) => check_eq(
                customer,
                limited.customer,
                "the error names the customer whose back-off is unreadable",
            ),
            other => {
                panic!("store conformance: an unreadable back-off is CorruptBackOff, got {other:?}")
            }
        }
    }
    let target = Conversation::with_customer(limited.business, new_number);
    assert!(
        matches!(
            store
                .move_customer(limited.business, limited.customer, new_number)
                .await,
            Err(StoreError::CorruptBackOff { .. })
        ),
        "store conformance: an unreadable back-off stops a move of its customer"
    );
    check_eq(
        (
            ok(store.window(limited).await, "read window").is_some(),
            ok(store.window(target).await, "read target window"),
        ),
        (true, None),
        "a move stopped by an unreadable back-off moves nothing",
    );
    check_eq(
        ok(store.extend_back_off(limited, until).await, "back off").back_off_until,
        Some(until),
        "a new back-off replaces an unreadable one",
    );
    let moved = ok(
        store
            .move_customer(limited.business, limited.customer, new_number)
            .await,
        "move",
    );
    check_eq(
        (moved.window, moved.consent),
        (true, true),
        "the move goes once the back-off reads",
    );
    check_eq(
        ok(
            store
                .marketing_consent(Conversation::with_customer(elsewhere.business, new_number))
                .await,
            "read new number",
        )
        .back_off_until,
        Some(until),
        "the back-off moved with the customer, for every business number",
    );
}
