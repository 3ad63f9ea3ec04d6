//! Seventh hostile review on a real `redis-server`: a person's 131049 back-off kept
//! whatever its end (e29da52). The key's expiry with far and ended ends (does Redis
//! accept it, does the key outlive the end, does an ended one vanish before it can be
//! read), a back-off extended to the last instant there is, carried to another customer,
//! and exported and imported into a second store on the same server. Skipped when
//! `redis-server` is not installed, unless `REQUIRE_REDIS=1`.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_redis::KeyLayout;
use lipachat_redis::test_server::RedisServer;
use lipachat_session::export::{export, import};
use lipachat_session::{ConsentStore, Customer, IdentityStore, PhoneNumber, truncate_to_millis};

/// How long a back-off key outlives the later of its end and the server's clock
/// (`BACK_OFF_KEPT` in crates/redis/src/store/back_off.rs).
const KEPT: TimeDelta = TimeDelta::days(7);

fn business() -> PhoneNumber {
    "254110090747".parse().unwrap()
}

fn person(n: u64) -> Customer {
    PhoneNumber::from_u64(254_712_000_700 + n).unwrap().into()
}

/// When the back-off key of `customer` expires (epoch ms; -1 none, -2 no key).
async fn expires_at(server: &RedisServer, prefix: &str, customer: Customer) -> i64 {
    redis::cmd("PEXPIRETIME")
        .arg(KeyLayout::new(prefix).back_off(customer))
        .query_async(&mut common::raw_connection(&server.url()).await)
        .await
        .unwrap()
}

#[tokio::test]
async fn far_and_ended_back_offs_keep_their_keys_and_survive_a_move_and_a_copy() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = common::store_at(&server.url(), "a7bo").await;
    let now = truncate_to_millis(Utc::now());
    let last = truncate_to_millis(DateTime::<Utc>::MAX_UTC);
    // Recorded for a day, then extended to the last instant there is.
    let extended = person(1);
    store
        .extend_customer_back_off(extended, now + TimeDelta::days(1))
        .await
        .unwrap();
    let day = expires_at(&server, "a7bo", extended).await;
    assert!(
        (day - (now + TimeDelta::days(1) + KEPT).timestamp_millis()).abs() < 5_000,
        "a day's back-off key expires a week after it: {day}"
    );
    assert_eq!(
        store
            .extend_customer_back_off(extended, DateTime::<Utc>::MAX_UTC)
            .await
            .unwrap(),
        last
    );
    assert_eq!(
        expires_at(&server, "a7bo", extended).await,
        last.timestamp_millis() + KEPT.num_milliseconds(),
        "the extended key lives a week past the last instant"
    );
    // Ended ones: just before 1970 and the first instant there is. Redis is given an
    // expiry a week after the server's clock, so the key is there to read.
    let ended = [
        (person(2), "1969-12-31T23:59:59.999Z".parse().unwrap()),
        (person(3), truncate_to_millis(DateTime::<Utc>::MIN_UTC)),
    ];
    for (customer, end) in ended {
        assert_eq!(
            store.extend_customer_back_off(customer, end).await.unwrap(),
            end
        );
        assert_eq!(store.customer_back_off(customer).await.unwrap(), Some(end));
        let expiry = expires_at(&server, "a7bo", customer).await;
        assert!(
            expiry > (now + KEPT - TimeDelta::minutes(1)).timestamp_millis(),
            "an ended back-off's key ({end}) expires at {expiry}"
        );
    }
    // Carried to another customer by a move: the end and the key's life go with it.
    let moved_to = person(4);
    store
        .move_customer(business(), extended, moved_to)
        .await
        .unwrap();
    assert_eq!(store.customer_back_off(moved_to).await.unwrap(), Some(last));
    assert_eq!(
        expires_at(&server, "a7bo", moved_to).await,
        last.timestamp_millis() + KEPT.num_milliseconds()
    );
    // The store's own export imports into a second store, marketing still withheld
    // for about 29 days, the key living past the imported end.
    let mut exported = Vec::new();
    export(&store, &mut exported).await.unwrap();
    let copy = common::store_at(&server.url(), "a7bo-copy").await;
    import(&copy, exported.as_slice())
        .await
        .unwrap_or_else(|error| {
            panic!(
                "the store's own export does not import: {error}\n{}",
                String::from_utf8_lossy(&exported)
            )
        });
    for customer in [extended, moved_to] {
        let imported = copy.customer_back_off(customer).await.unwrap().unwrap();
        assert!(
            imported > Utc::now() + TimeDelta::days(28)
                && imported <= Utc::now() + TimeDelta::days(30),
            "{customer}: {imported}"
        );
        let expiry = expires_at(&server, "a7bo-copy", customer).await;
        assert!(
            expiry >= (imported + KEPT).timestamp_millis() - 5_000,
            "{customer}: key expires at {expiry}, the back-off ends {imported}"
        );
    }
    for (customer, _) in ended {
        let imported = copy.customer_back_off(customer).await.unwrap();
        assert!(
            imported.is_none_or(|end| end <= Utc::now()),
            "{customer}: an ended back-off imported as {imported:?}"
        );
    }
}
