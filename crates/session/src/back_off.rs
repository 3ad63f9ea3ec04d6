//! The per-user marketing limit's back-off (WhatsApp error 131049), kept per customer.
//!
//! The platform's per-user marketing limit counts the marketing messages a user
//! receives, whoever sends them: after a 131049, no marketing template may go to that
//! customer from any of the bot's business numbers until the back-off ends. So the
//! back-off is one record per customer ([`crate::Customer::key`]), not per conversation:
//! [`ConsentStore::extend_back_off`](crate::ConsentStore::extend_back_off) writes it, and
//! every [`MarketingConsent`] a store answers carries it merged with the conversation's
//! own record ([`MarketingConsent::with_customer_back_off`]). An opt-out stays per
//! business number.
//!
//! Stores written before this record kept the back-off inside the conversation's consent
//! record ([`MarketingConsent::back_off_until`] as stored); such a back-off is still
//! read and honoured for its conversation.

use chrono::{DateTime, Utc};

use crate::{Customer, MarketingConsent, StoreError};

/// A stored customer back-off as [`ConsentStore::customer_back_offs`] lists it, with its
/// customer: an unreadable one as its error ([`StoreError::CorruptBackOff`]).
///
/// [`ConsentStore::customer_back_offs`]: crate::ConsentStore::customer_back_offs
pub type BackOffEntry = (Customer, Result<DateTime<Utc>, StoreError>);

/// The stored text of a customer's back-off end: its epoch milliseconds.
pub fn encode_back_off(until: DateTime<Utc>) -> String {
    crate::window::truncate_to_millis(until)
        .timestamp_millis()
        .to_string()
}

/// Reads [`encode_back_off`]'s text; the error says what is wrong.
pub fn decode_back_off(text: &str) -> Result<DateTime<Utc>, String> {
    let ms: i64 = text
        .parse()
        .map_err(|_| format!("back-off end {text:?} is not a number of milliseconds"))?;
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| format!("back-off end {ms} ms is out of range"))
}

/// The stored back-off end of `customer` read from `text`, or the store error naming the
/// customer ([`StoreError::CorruptBackOff`]).
pub fn back_off_of(customer: Customer, text: &str) -> Result<DateTime<Utc>, StoreError> {
    decode_back_off(text).map_err(|detail| StoreError::CorruptBackOff { customer, detail })
}

/// Checks a back-off a caller asks a store to keep ([`StoreError::InvalidBackOff`] when
/// it is not one a store keeps): a person's (a group never gets a template, so it has no
/// per-user marketing limit). Its end is not bounded here: a 131049 is recorded from
/// the messenger's clock, which may run ahead of the host's (a simulation, a wrapper
/// clock), and refusing it would let the next marketing template go (the fifth attack
/// review's finding). The policy takes a configured back-off as at most 30 days
/// (`ConsentConfig::back_off`); an export writes an end beyond what an import takes
/// ([`MAX_IMPORTED_BACK_OFF`]) as ending 29 days after the export, so every back-off a
/// store keeps survives its export and import as a running one.
///
/// [`MAX_IMPORTED_BACK_OFF`]: crate::export::MAX_IMPORTED_BACK_OFF
pub fn check_back_off(customer: Customer) -> Result<(), StoreError> {
    if customer.group().is_some() {
        return Err(StoreError::InvalidBackOff {
            customer,
            detail: "a group has no per-user marketing limit; a back-off is a person's".into(),
        });
    }
    Ok(())
}

/// The later of a stored back-off end and `until` (to the millisecond): a back-off is
/// only ever extended.
pub fn extended_back_off(stored: Option<DateTime<Utc>>, until: DateTime<Utc>) -> DateTime<Utc> {
    let until = crate::window::truncate_to_millis(until);
    stored.map_or(until, |stored| stored.max(until))
}

impl MarketingConsent {
    /// This consent (a conversation's own record) with its customer's back-off merged in:
    /// the later of the two back-off ends. What a store answers for a conversation.
    pub fn with_customer_back_off(self, customer_back_off: Option<DateTime<Utc>>) -> Self {
        Self {
            back_off_until: self.back_off_until.max(customer_back_off),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_back_off_text_round_trips_and_a_bad_one_is_named() {
        let until = t("2026-12-02T10:00:00.123Z");
        assert_eq!(decode_back_off(&encode_back_off(until)), Ok(until));
        assert!(
            decode_back_off("soon")
                .unwrap_err()
                .contains("milliseconds")
        );
        assert!(
            decode_back_off(&i64::MAX.to_string())
                .unwrap_err()
                .contains("out of range")
        );
    }

    #[test]
    fn the_merged_back_off_is_the_later_one_and_leaves_the_opt_out() {
        let own = MarketingConsent::default()
            .with_opt_out(true, t("2026-12-01T09:00:00Z"))
            .with_back_off(t("2026-12-01T12:00:00Z"));
        let later = own.with_customer_back_off(Some(t("2026-12-02T12:00:00Z")));
        assert_eq!(later.back_off_until, Some(t("2026-12-02T12:00:00Z")));
        assert!(later.opted_out);
        assert_eq!(later.changed_at, own.changed_at);
        let earlier = own.with_customer_back_off(Some(t("2026-12-01T10:00:00Z")));
        assert_eq!(
            earlier, own,
            "an earlier customer back-off shortens nothing"
        );
        assert_eq!(own.with_customer_back_off(None), own);
        assert_eq!(
            extended_back_off(Some(t("2026-12-02T00:00:00Z")), t("2026-12-01T00:00:00Z")),
            t("2026-12-02T00:00:00Z")
        );
    }
}
