//! Property tests of phone number keys: one key per person whatever the spelling, and the
//! spelling given is the one kept for sending.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use lipachat_session::PhoneNumber;
use proptest::prelude::*;

fn parse(digits: &str) -> PhoneNumber {
    PhoneNumber::parse(digits).unwrap()
}

proptest! {
    /// Any number parses back from its own spelling to the same key and spelling, and from
    /// its canonical digits to the same key.
    #[test]
    fn spellings_round_trip(value in 10_000_000u64..=999_999_999_999_999) {
        let number = parse(&value.to_string());
        let again = parse(&number.digits());
        prop_assert_eq!(again, number);
        prop_assert_eq!(again.digits(), number.digits());
        prop_assert_eq!(parse(&number.canonical_digits()), number);
        prop_assert_eq!(PhoneNumber::from_u64(number.as_u64()), Some(number.canonical()));
        prop_assert!(number.is_canonical());
    }

    /// A Brazilian mobile is one key with and without the ninth digit; each keeps its own
    /// spelling.
    #[test]
    fn brazil_ninth_digit(area in "[1-9][1-9]", subscriber in "[6-9][0-9]{7}") {
        let without = format!("55{area}{subscriber}");
        let with = format!("55{area}9{subscriber}");
        prop_assert_eq!(parse(&without), parse(&with));
        prop_assert_eq!(parse(&without).digits(), without);
        prop_assert_eq!(parse(&with).digits(), with);
    }

    /// A Mexican number is one key with and without the 1 after 52.
    #[test]
    fn mexico_one(national in "[1-9][0-9]{9}") {
        let with = format!("521{national}");
        let without = format!("52{national}");
        prop_assert_eq!(parse(&with), parse(&without));
        prop_assert_eq!(parse(&with).digits(), with);
        prop_assert_eq!(parse(&without).digits(), without);
    }

    /// An Argentinian number is one key with and without the 9 after 54.
    #[test]
    fn argentina_nine(national in "[1-3][0-9]{9}") {
        let with = format!("549{national}");
        let without = format!("54{national}");
        prop_assert_eq!(parse(&with), parse(&without));
        prop_assert_eq!(parse(&with).digits(), with);
        prop_assert_eq!(parse(&without).digits(), without);
    }

    /// Order, equality and hashing follow the key, never the spelling.
    #[test]
    fn order_follows_the_key(a in 10_000_000u64..=999_999_999_999_999, b in 10_000_000u64..=999_999_999_999_999) {
        let (x, y) = (parse(&a.to_string()), parse(&b.to_string()));
        prop_assert_eq!(x.cmp(&y), x.as_u64().cmp(&y.as_u64()));
        prop_assert_eq!(x == y, x.as_u64() == y.as_u64());
    }
}
