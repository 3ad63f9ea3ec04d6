//! Who a conversation is with: a phone number, a user known only by a business-scoped user
//! id, or a group.
//!
//! A [`Customer`] is `Copy` and fits the 50 bits a phone number's store key uses, so every
//! store keeps its fixed 16-byte conversation keys and a phone-keyed window check costs
//! what it always did. Users and groups are named in keys by opaque handles
//! ([`UserRef`], [`GroupRef`]) that a store allocates for each business-scoped user id or
//! group id it meets ([`crate::IdentityStore`]) and resolves back for display.
//!
//! Key encoding (the customer half of [`crate::Conversation::to_key`]):
//!
//! | customer          | key                                            |
//! |-------------------|------------------------------------------------|
//! | phone             | its canonical digits as an integer, below 10^15 |
//! | user handle *n*   | 10^15 + *n*, below 10^15 + 2^46                 |
//! | group handle *n*  | 10^15 + 2^46 + *n*, below 2^50                  |
//!
//! Phones keep the keys they always had, so a store written before users and groups
//! existed reads unchanged.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::PhoneNumber;

/// Where handles start in the key space: the first value above every phone number.
const HANDLE_BASE: u64 = 1_000_000_000_000_000;
/// How many user handles there are (2^46, about 7 × 10^13).
pub const MAX_USER_REFS: u64 = 1 << 46;
/// The first key past every customer: keys fit 50 bits (what the sled index packs).
const KEY_LIMIT: u64 = 1 << 50;
/// Where group handles start in the key space.
const GROUP_BASE: u64 = HANDLE_BASE + MAX_USER_REFS;
/// How many group handles there are (2^50 − 10^15 − 2^46, about 5.5 × 10^13).
pub const MAX_GROUP_REFS: u64 = KEY_LIMIT - GROUP_BASE;

/// A store's handle for a user known by a business-scoped user id ([`crate::Bsuid`]).
///
/// Opaque and local to one store: the store hands it out
/// ([`IdentityStore::user_ref`](crate::IdentityStore::user_ref)) and turns it back into the
/// id ([`IdentityStore::user_id`](crate::IdentityStore::user_id)). Exports name the id, never
/// the handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserRef(u64);

impl UserRef {
    /// The handle numbered `index`; `None` at or beyond [`MAX_USER_REFS`].
    pub fn new(index: u64) -> Option<Self> {
        (index < MAX_USER_REFS).then_some(Self(index))
    }

    /// Its number.
    pub fn index(self) -> u64 {
        self.0
    }
}

/// A store's handle for a group ([`crate::GroupId`]); opaque and local to one store, like
/// [`UserRef`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupRef(u64);

impl GroupRef {
    /// The handle numbered `index`; `None` at or beyond [`MAX_GROUP_REFS`].
    pub fn new(index: u64) -> Option<Self> {
        (index < MAX_GROUP_REFS).then_some(Self(index))
    }

    /// Its number.
    pub fn index(self) -> u64 {
        self.0
    }
}

/// The other side of a conversation: a phone number, a user known only by a
/// business-scoped user id, or a group.
///
/// Only a phone number can be sent to: the gateway offers no way to address a user by
/// business-scoped user id, or a group ([`Customer::phone`]).
///
/// ```
/// use lipachat_session::{Customer, PhoneNumber, UserRef};
///
/// let phone: PhoneNumber = "254712345678".parse()?;
/// let customer = Customer::from(phone);
/// assert_eq!(customer.key(), 254_712_345_678);
/// assert_eq!(Customer::from_key(customer.key()), Some(customer));
/// assert_eq!(customer.phone(), Some(phone));
///
/// let user = Customer::User(UserRef::new(7).unwrap());
/// assert_eq!(user.to_string(), "user#7");
/// assert!(user.key() >= 1_000_000_000_000_000); // above every phone number
/// assert_eq!(user.phone(), None);
/// # Ok::<(), lipachat_session::PhoneError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Customer {
    /// A phone number (what WhatsApp calls the `wa_id`).
    Phone(PhoneNumber),
    /// A user known only by a business-scoped user id, by its handle.
    User(UserRef),
    /// A group, by its handle.
    Group(GroupRef),
}

impl Customer {
    /// The smallest customer in key order.
    pub const MIN: Self = Self::Phone(PhoneNumber::MIN);
    /// The largest customer in key order.
    pub const MAX: Self = Self::Group(GroupRef(MAX_GROUP_REFS - 1));

    /// The store key: a phone's canonical digits, or a handle above every phone (see the
    /// module's table). Always below 2^50.
    pub fn key(self) -> u64 {
        match self {
            Self::Phone(phone) => phone.as_u64(),
            Self::User(user) => HANDLE_BASE + user.0,
            Self::Group(group) => GROUP_BASE + group.0,
        }
    }

    /// Reads a key made by [`Customer::key`]; `None` when it is none (a value below the
    /// shortest phone number, or at or above 2^50).
    pub fn from_key(key: u64) -> Option<Self> {
        match key {
            _ if key < HANDLE_BASE => PhoneNumber::from_u64(key).map(Self::Phone),
            _ if key < GROUP_BASE => Some(Self::User(UserRef(key - HANDLE_BASE))),
            _ if key < KEY_LIMIT => Some(Self::Group(GroupRef(key - GROUP_BASE))),
            _ => None,
        }
    }

    /// The phone number, for a customer that has one: the only kind a send can address.
    pub fn phone(self) -> Option<PhoneNumber> {
        match self {
            Self::Phone(phone) => Some(phone),
            Self::User(_) | Self::Group(_) => None,
        }
    }

    /// The user handle, for a user known only by a business-scoped user id.
    pub fn user(self) -> Option<UserRef> {
        match self {
            Self::User(user) => Some(user),
            _ => None,
        }
    }

    /// The group handle, for a group.
    pub fn group(self) -> Option<GroupRef> {
        match self {
            Self::Group(group) => Some(group),
            _ => None,
        }
    }
}

impl From<PhoneNumber> for Customer {
    fn from(phone: PhoneNumber) -> Self {
        Self::Phone(phone)
    }
}

impl From<UserRef> for Customer {
    fn from(user: UserRef) -> Self {
        Self::User(user)
    }
}

impl From<GroupRef> for Customer {
    fn from(group: GroupRef) -> Self {
        Self::Group(group)
    }
}

impl fmt::Display for Customer {
    /// A phone's canonical digits, `user#N` or `group#N` (a handle: resolve it through
    /// the store to show the id).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Phone(phone) => write!(f, "{phone}"),
            Self::User(user) => write!(f, "user#{}", user.0),
            Self::Group(group) => write!(f, "group#{}", group.0),
        }
    }
}

/// Why a string is not a customer written by [`Customer`]'s `Display`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CustomerError {
    /// Not a phone number, nor `user#N` or `group#N` with `N` in range.
    #[error(
        "customer {input:?} is neither a phone number nor a handle (user#N below {MAX_USER_REFS}, group#N below {MAX_GROUP_REFS})"
    )]
    Unreadable {
        /// The input, shortened.
        input: String,
    },
}

impl FromStr for Customer {
    type Err = CustomerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unreadable = || CustomerError::Unreadable {
            input: s.chars().take(64).collect(),
        };
        let handle = |digits: &str| {
            (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| digits.parse::<u64>().ok())
                .flatten()
        };
        if let Some(digits) = s.strip_prefix("user#") {
            return handle(digits)
                .and_then(UserRef::new)
                .map(Self::User)
                .ok_or_else(unreadable);
        }
        if let Some(digits) = s.strip_prefix("group#") {
            return handle(digits)
                .and_then(GroupRef::new)
                .map(Self::Group)
                .ok_or_else(unreadable);
        }
        PhoneNumber::parse(s)
            .map(Self::Phone)
            .map_err(|_| unreadable())
    }
}

impl Serialize for Customer {
    /// A phone as its spelling ([`PhoneNumber`]'s serialisation, as before users and
    /// groups existed); a handle as `user#N` or `group#N`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Phone(phone) => phone.serialize(serializer),
            other => serializer.collect_str(other),
        }
    }
}

impl<'de> Deserialize<'de> for Customer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_key_ranges_meet_where_the_table_says() {
        assert_eq!(
            Customer::from_key(999_999_999_999_999).map(|c| c.phone().is_some()),
            Some(true)
        );
        assert_eq!(
            Customer::from_key(1_000_000_000_000_000),
            UserRef::new(0).map(Customer::User)
        );
        assert_eq!(
            Customer::from_key(GROUP_BASE - 1),
            UserRef::new(MAX_USER_REFS - 1).map(Customer::User)
        );
        assert_eq!(
            Customer::from_key(GROUP_BASE),
            GroupRef::new(0).map(Customer::Group)
        );
        assert_eq!(Customer::from_key(KEY_LIMIT - 1), Some(Customer::MAX));
        assert_eq!(Customer::from_key(KEY_LIMIT), None);
        assert_eq!(Customer::from_key(u64::MAX), None);
        assert_eq!(Customer::from_key(1_234_567), None, "too short for a phone");
        assert_eq!(Customer::from_key(0), None);
        assert!(UserRef::new(MAX_USER_REFS).is_none());
        assert!(GroupRef::new(MAX_GROUP_REFS).is_none());
        assert_eq!(Customer::MIN.key(), PhoneNumber::MIN.as_u64());
        assert!(Customer::MAX.key() < KEY_LIMIT);
    }

    #[test]
    fn text_and_serde() {
        let phone: PhoneNumber = "554188887777".parse().unwrap();
        for customer in [
            Customer::Phone(phone),
            Customer::User(UserRef(42)),
            Customer::Group(GroupRef(0)),
        ] {
            let json = serde_json::to_string(&customer).unwrap();
            assert_eq!(serde_json::from_str::<Customer>(&json).unwrap(), customer);
            assert_eq!(customer.to_string().parse::<Customer>().unwrap(), customer);
        }
        // A phone serialises as its spelling, as it did before customers had kinds.
        assert_eq!(
            serde_json::to_string(&Customer::Phone(phone)).unwrap(),
            "\"554188887777\""
        );
        for bad in [
            "user#",
            "user#x",
            "group#-1",
            "user#70368744177664",
            "nobody",
            "",
        ] {
            assert!(bad.parse::<Customer>().is_err(), "{bad}");
        }
    }

    fn any_customer() -> impl Strategy<Value = Customer> {
        prop_oneof![
            (10_000_000u64..1_000_000_000_000_000)
                .prop_map(|n| Customer::Phone(PhoneNumber::from_u64(n).unwrap())),
            (0..MAX_USER_REFS).prop_map(|n| Customer::User(UserRef(n))),
            (0..MAX_GROUP_REFS).prop_map(|n| Customer::Group(GroupRef(n))),
        ]
    }

    proptest! {
        #[test]
        fn keys_round_trip_fit_fifty_bits_and_sort_like_customers(
            a in any_customer(),
            b in any_customer(),
        ) {
            prop_assert_eq!(Customer::from_key(a.key()), Some(a));
            prop_assert!(a.key() < KEY_LIMIT);
            prop_assert_eq!(a.key().cmp(&b.key()), a.cmp(&b));
            prop_assert_eq!(a.key() == b.key(), a == b);
        }

        #[test]
        fn no_handle_collides_with_a_phone(
            digits in "[1-9][0-9]{7,14}",
            user in 0..MAX_USER_REFS,
            group in 0..MAX_GROUP_REFS,
        ) {
            let phone: PhoneNumber = digits.parse().unwrap();
            let key = Customer::Phone(phone).key();
            prop_assert!(key < HANDLE_BASE);
            prop_assert_ne!(key, Customer::User(UserRef(user)).key());
            prop_assert_ne!(key, Customer::Group(GroupRef(group)).key());
            prop_assert_ne!(Customer::User(UserRef(user)).key(), Customer::Group(GroupRef(group)).key());
            prop_assert_eq!(Customer::from_key(key).and_then(Customer::phone), Some(phone));
        }
    }
}
