//! Seventh hostile review of the reserved portfolio names (fa3814f): a portfolio named
//! like a monthly service counter (`svc.<business>.<YYYY-MM>`) is refused; names that
//! differ from one only by case or punctuation are accepted, and on a sled store on disk
//! they are counts of their own (the keys are compared byte for byte), so a real-clock
//! portfolio count beside the service counter's given-time count neither mixes clocks
//! nor changes the counter.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use chrono::{TimeDelta, Utc};
use lipachat_policy::consent::{MessagingLimits, MessagingTier, PortfolioError};
use lipachat_session::{ConsentStore, CountTime, PhoneNumber, Reach, SledStore};

#[tokio::test]
async fn only_a_service_counter_prefix_is_reserved_and_look_alikes_are_other_counts() {
    let number = PhoneNumber::parse("254110090747").unwrap();
    let month = Utc::now().format("%Y-%m").to_string();
    let counter = format!("svc.254110090747.{month}");
    for name in [counter.as_str(), "svc.x", "svc."] {
        let refused = MessagingLimits::default().portfolio(name, MessagingTier::Tier250, [number]);
        assert!(
            matches!(refused, Err(PortfolioError::ReservedName { .. })),
            "{name}: {refused:?}"
        );
    }
    let upper = format!("SVC.254110090747.{month}");
    let look_alikes = [upper.as_str(), "Svc.x", "svc", "svc-x", "svc_x", "xsvc.y"];
    for name in look_alikes {
        MessagingLimits::default()
            .portfolio(name, MessagingTier::Tier250, [number])
            .unwrap_or_else(|error| panic!("{name}: {error}"));
    }
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("db")).unwrap();
    let now = Utc::now();
    let span = TimeDelta::days(40);
    // The service counter, counted as the policy counts it (the send's time as given).
    store
        .reach_customer(&counter, 1, now, 1000, span)
        .await
        .unwrap();
    for name in look_alikes {
        let reach = store
            .reach_customer(
                name,
                2,
                CountTime::SystemNow(now),
                250,
                MessagingLimits::SPAN,
            )
            .await;
        assert_eq!(reach.unwrap(), Reach::Counted { reached: 1 }, "{name}");
    }
    assert_eq!(store.reached(&counter, now, span).await.unwrap(), 1);
    let next = store
        .reach_customer(&counter, 3, now, 1000, span)
        .await
        .unwrap();
    assert_eq!(next, Reach::Counted { reached: 2 });
}
