//! The (business number, customer) pair that owns a window.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Customer, PhoneNumber};

/// One business number talking to one customer: a phone number, a user known only by a
/// business-scoped user id, or a group ([`Customer`]).
///
/// WhatsApp keeps one customer service window per pair: a customer may be inside the
/// window with one business number and outside it with another. A group has one window
/// with the business, apart from its members' own.
///
/// ```
/// use lipachat_session::Conversation;
///
/// let conversation = Conversation::parse("254110090747", "+254 712 345 678")?;
/// assert_eq!(conversation.to_string(), "254110090747→254712345678");
/// # Ok::<(), lipachat_session::PhoneError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Conversation {
    /// The business's WhatsApp number (the gateway's `from` on a send).
    pub business: PhoneNumber,
    /// The customer (the gateway's `to` on a send, when it is a phone number).
    pub customer: Customer,
}

impl Conversation {
    /// The smallest conversation in key order (for range bounds).
    pub const MIN: Self = Self {
        business: PhoneNumber::MIN,
        customer: Customer::MIN,
    };
    /// The largest conversation in key order (for range bounds).
    pub const MAX: Self = Self {
        business: PhoneNumber::MAX,
        customer: Customer::MAX,
    };

    /// The conversation between `business` and the phone number `customer`.
    pub fn new(business: PhoneNumber, customer: PhoneNumber) -> Self {
        Self {
            business,
            customer: Customer::Phone(customer),
        }
    }

    /// The conversation between `business` and any kind of customer.
    pub fn with_customer(business: PhoneNumber, customer: Customer) -> Self {
        Self { business, customer }
    }

    /// The customer's phone number, when the conversation is with one: the only kind of
    /// conversation a message can be sent in.
    pub fn phone(self) -> Option<PhoneNumber> {
        self.customer.phone()
    }

    /// Parses both numbers in international form.
    pub fn parse(business: &str, customer: &str) -> Result<Self, crate::PhoneError> {
        Ok(Self::new(business.parse()?, customer.parse()?))
    }

    /// The 16-byte binary key: business then customer ([`Customer::key`]), each a
    /// big-endian `u64`, so keys sort by business number and one business's
    /// conversations are contiguous (phones first, then users, then groups).
    pub fn to_key(self) -> [u8; 16] {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&self.business.as_u64().to_be_bytes());
        key[8..].copy_from_slice(&self.customer.key().to_be_bytes());
        key
    }

    /// Reads a key made by [`Conversation::to_key`]; `None` when it is not one.
    pub fn from_key(key: &[u8]) -> Option<Self> {
        let key: &[u8; 16] = key.get(..16)?.try_into().ok()?;
        let (business, customer) = key.split_at(8);
        let business = PhoneNumber::from_u64(u64::from_be_bytes(business.try_into().ok()?))?;
        let customer = Customer::from_key(u64::from_be_bytes(customer.try_into().ok()?))?;
        Some(Self::with_customer(business, customer))
    }
}

impl fmt::Display for Conversation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}→{}", self.business, self.customer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trip_and_order() {
        let a = Conversation::parse("254110090747", "254712345678").unwrap();
        let b = Conversation::parse("254110090747", "254799999999").unwrap();
        let c = Conversation::parse("254110090748", "12345678").unwrap();
        assert_eq!(Conversation::from_key(&a.to_key()), Some(a));
        assert!(a.to_key() < b.to_key() && b.to_key() < c.to_key());
        assert_eq!(Conversation::from_key(&[0u8; 16]), None);
        assert_eq!(Conversation::from_key(&[1u8; 3]), None);
    }

    #[test]
    fn users_and_groups_sort_after_phones_of_their_business() {
        let business: PhoneNumber = "254110090747".parse().unwrap();
        let phone = Conversation::new(business, PhoneNumber::MAX);
        let user =
            Conversation::with_customer(business, Customer::User(crate::UserRef::new(0).unwrap()));
        let group = Conversation::with_customer(
            business,
            Customer::Group(crate::GroupRef::new(0).unwrap()),
        );
        let next = Conversation::new("254110090748".parse().unwrap(), PhoneNumber::MIN);
        for c in [phone, user, group, next] {
            assert_eq!(Conversation::from_key(&c.to_key()), Some(c));
        }
        assert!(phone.to_key() < user.to_key() && user.to_key() < group.to_key());
        assert!(group.to_key() < next.to_key());
        assert!(phone < user && user < group && group < next);
        assert_eq!(user.to_string(), "254110090747→user#0");
        assert_eq!(user.phone(), None);
        assert_eq!(phone.phone(), Some(PhoneNumber::MAX));
        assert!(Conversation::MIN.to_key() <= phone.to_key());
        assert!(Conversation::MAX.to_key() >= group.to_key());
    }
}
