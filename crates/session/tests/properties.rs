//! Property tests of the rule and the store, on a real sled database.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::{
    Conversation, ManualClock, PhoneNumber, Sessions, SledStore, WindowRecord, WindowRule,
};
use proptest::prelude::*;

const WINDOW_MS: i64 = 24 * 3600 * 1000;

fn base() -> DateTime<Utc> {
    "2026-11-23T00:00:00Z".parse().unwrap()
}

struct Shared {
    _dir: tempfile::TempDir,
    store: SledStore,
    runtime: tokio::runtime::Runtime,
    next_customer: AtomicU64,
}

/// One database for all cases (sled dislikes rapid reopening); each case uses fresh
/// conversations.
fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path().join("db")).unwrap();
        Shared {
            _dir: dir,
            store,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            next_customer: AtomicU64::new(254_700_000_000),
        }
    })
}

fn fresh_conversation() -> Conversation {
    let customer = shared().next_customer.fetch_add(1, Ordering::Relaxed);
    Conversation::new(
        PhoneNumber::from_u64(254_110_090_747).unwrap(),
        PhoneNumber::from_u64(customer).unwrap(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever the order, the stored time is the maximum of the accepted inbound times;
    /// times beyond the skew tolerance are refused and change nothing.
    #[test]
    fn stored_time_is_the_max_of_accepted(offsets in prop::collection::vec(-100_000_000i64..1_000_000, 1..30)) {
        let s = shared();
        let clock = ManualClock::at(base());
        let sessions = Sessions::new(s.store.clone()).with_clock(clock);
        let chat = fresh_conversation();
        let mut accepted = Vec::new();
        for offset in &offsets {
            let at = base() + TimeDelta::milliseconds(*offset);
            let result = s.runtime.block_on(sessions.record_inbound(chat, at));
            if *offset > 5 * 60 * 1000 {
                prop_assert!(result.is_err());
            } else {
                prop_assert!(result.is_ok());
                accepted.push(at);
            }
        }
        let stored = s.store.window_blocking(chat).unwrap().map(|r| r.last_inbound);
        prop_assert_eq!(stored, accepted.into_iter().max());
    }

    /// The decision equals `now < max + window`, to the millisecond, via the store.
    #[test]
    fn decision_matches_the_rule(
        offsets in prop::collection::vec(-WINDOW_MS..0, 1..5),
        probe in -10i64..10,
        probe_base in 0i64..(2 * WINDOW_MS),
    ) {
        let s = shared();
        let clock = ManualClock::at(base());
        let sessions = Sessions::new(s.store.clone()).with_clock(clock);
        let chat = fresh_conversation();
        for offset in &offsets {
            s.runtime.block_on(sessions.record_inbound(chat, base() + TimeDelta::milliseconds(*offset))).unwrap();
        }
        let max = base() + TimeDelta::milliseconds(*offsets.iter().max().unwrap());
        // Probe around the exact expiry and at an arbitrary instant.
        for now in [max + TimeDelta::milliseconds(WINDOW_MS + probe), max + TimeDelta::milliseconds(probe_base)] {
            let state = s.runtime.block_on(sessions.state_at(chat, now)).unwrap();
            prop_assert_eq!(state.is_open(), now < max + TimeDelta::milliseconds(WINDOW_MS));
            let decision = s.runtime.block_on(sessions.decide_at(chat, now)).unwrap();
            prop_assert_eq!(decision.is_allowed(), now + TimeDelta::seconds(60) < max + TimeDelta::milliseconds(WINDOW_MS));
        }
    }

    /// The pure rule: open exactly when now < last + window, margin respected, for any
    /// window length.
    #[test]
    fn rule_is_exact(last in -1_000_000_000i64..1_000_000_000, now in -1_000_000_000i64..1_000_000_000, window in 1i64..200_000_000, margin_fraction in 0.0f64..1.0) {
        let margin = ((window as f64) * margin_fraction) as i64 % window;
        let rule = WindowRule::new(TimeDelta::milliseconds(window), TimeDelta::milliseconds(margin)).unwrap();
        let at = |ms: i64| base() + TimeDelta::milliseconds(ms);
        let record = WindowRecord::inbound(at(last));
        prop_assert_eq!(rule.state(Some(&record), at(now)).is_open(), now < last + window);
        prop_assert_eq!(rule.decide(Some(&record), at(now)).is_allowed(), now + margin < last + window);
    }

    /// The closing-soon query equals filtering every pair by hand.
    #[test]
    fn closing_soon_equals_a_full_filter(
        offsets in prop::collection::vec(-(2 * WINDOW_MS)..0, 1..40),
        span_ms in 0i64..(2 * WINDOW_MS),
        now_offset in 0i64..(WINDOW_MS / 2),
    ) {
        let s = shared();
        // Other cases' conversations share the store; only this case's are compared.
        let case_base = base();
        let clock = ManualClock::at(case_base);
        let sessions = Sessions::new(s.store.clone()).with_clock(clock);
        let mut mine = Vec::new();
        for offset in &offsets {
            let chat = fresh_conversation();
            let at = case_base + TimeDelta::milliseconds(*offset);
            s.runtime.block_on(sessions.record_inbound(chat, at)).unwrap();
            mine.push((chat, at));
        }
        let now = case_base + TimeDelta::milliseconds(now_offset);
        let span = TimeDelta::milliseconds(span_ms);
        let found: Vec<Conversation> = s
            .runtime
            .block_on(sessions.closing_within_at(span, now))
            .unwrap()
            .into_iter()
            .map(|(c, _)| c)
            .filter(|c| mine.iter().any(|(m, _)| m == c))
            .collect();
        let window = TimeDelta::hours(24);
        let mut expected: Vec<(DateTime<Utc>, Conversation)> = mine
            .iter()
            .filter(|(_, at)| now < *at + window && *at + window <= now + span)
            .map(|(c, at)| (*at, *c))
            .collect();
        expected.sort();
        prop_assert_eq!(found, expected.into_iter().map(|(_, c)| c).collect::<Vec<_>>());
    }
}
