//! How values are written in Redis, and how they are read back. Every reader returns a
//! description of what is wrong rather than panicking: the store turns it into
//! [`lipachat_session::StoreError::Corrupt`] for the one conversation concerned.
//!
//! | value             | text                          |
//! |-------------------|-------------------------------|
//! | time              | epoch milliseconds, decimal   |
//! | window record     | `<last inbound ms>` or `<last inbound ms>:<closure ms>` |
//! | queued message    | `<queued ms>:<payload>`       |
//! | invitation        | `<message id>:<sent ms>`      |
//! | claim             | lease end, epoch milliseconds |

use chrono::{DateTime, Utc};
use lipachat_session::MessageId;
use lipachat_session::{Customer, Invitation, PhoneNumber, QueuedMessage, WindowRecord};

/// A time as stored: epoch milliseconds, as text.
pub(crate) fn time(at: DateTime<Utc>) -> String {
    at.timestamp_millis().to_string()
}

/// Reads a time written by [`time`], or a sorted-set score (which Redis may print in
/// floating-point notation).
pub(crate) fn parse_time(text: &str, what: &str) -> Result<DateTime<Utc>, String> {
    let millis = match text.parse::<i64>() {
        Ok(millis) => millis,
        Err(_) => {
            let float: f64 = text
                .parse()
                .map_err(|_| format!("{what}: {text:?} is not a number"))?;
            // Exact integers up to 2^53 only: anything else was not written by us.
            if !float.is_finite() || float.fract() != 0.0 || float.abs() > 9_007_199_254_740_992.0 {
                return Err(format!(
                    "{what}: {text:?} is not a whole number of milliseconds"
                ));
            }
            float as i64
        }
    };
    DateTime::from_timestamp_millis(millis)
        .ok_or_else(|| format!("{what}: {millis} ms is out of range"))
}

/// A time in a window record: a decimal integer of milliseconds, at most 16 digits, as
/// the scripts accept it (`ms` in `scripts.rs`), so both sides agree on what is readable.
fn parse_record_time(text: &str, what: &str) -> Result<DateTime<Utc>, String> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || digits.len() > 16 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{what}: {text:?} is not a whole number of milliseconds"
        ));
    }
    parse_time(text, what)
}

/// Encodes a window record: `<last inbound ms>`, or `<last inbound ms>:<closure ms>`.
#[cfg(test)]
pub(crate) fn window(record: &WindowRecord) -> String {
    match record.gateway_closed_at {
        Some(closed) => format!("{}:{}", time(record.last_inbound), time(closed)),
        None => time(record.last_inbound),
    }
}

/// Reads a window record written by the scripts (see [`window`]).
pub(crate) fn parse_window(record: &str) -> Result<WindowRecord, String> {
    let (last, closed) = match record.split_once(':') {
        Some((last, closed)) => (last, Some(closed)),
        None => (record, None),
    };
    Ok(WindowRecord {
        last_inbound: parse_record_time(last, "last inbound")?,
        gateway_closed_at: closed
            .map(|c| parse_record_time(c, "gateway closure"))
            .transpose()?,
    })
}

/// Reads a business number stored as a member or field.
pub(crate) fn parse_phone(text: &str) -> Option<PhoneNumber> {
    text.parse::<u64>().ok().and_then(PhoneNumber::from_u64)
}

/// Reads a customer stored as a member or field: its key ([`Customer::key`]), in decimal.
pub(crate) fn parse_customer(text: &str) -> Option<Customer> {
    text.parse::<u64>().ok().and_then(Customer::from_key)
}

/// Encodes a queued message without its id (the id is the hash field).
pub(crate) fn queued(message: &QueuedMessage) -> String {
    format!(
        "{}:{}",
        message.queued_at.timestamp_millis(),
        message.payload
    )
}

/// Decodes a queued message stored under `id`.
pub(crate) fn parse_queued(id: &str, value: &str) -> Result<QueuedMessage, String> {
    let message_id = id
        .parse::<MessageId>()
        .map_err(|e| format!("queued message id {id:?}: {e}"))?;
    let (queued_at, payload) = value
        .split_once(':')
        .ok_or_else(|| format!("queued message {id}: no ':' after the queued time"))?;
    Ok(QueuedMessage {
        message_id,
        queued_at: parse_time(queued_at, "queued at")?,
        payload: payload.to_owned(),
    })
}

/// Encodes an invitation.
pub(crate) fn invitation(invitation: &Invitation) -> String {
    format!(
        "{}:{}",
        invitation.message_id,
        invitation.sent_at.timestamp_millis()
    )
}

/// Decodes an invitation.
pub(crate) fn parse_invitation(value: &str) -> Result<Invitation, String> {
    let (id, sent_at) = value
        .split_once(':')
        .ok_or_else(|| format!("invitation {value:?}: expected <message id>:<sent ms>"))?;
    Ok(Invitation {
        message_id: id
            .parse::<MessageId>()
            .map_err(|e| format!("invitation id {id:?}: {e}"))?,
        sent_at: parse_time(sent_at, "invitation sent at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let at: DateTime<Utc> = "2026-11-23T10:00:00.123Z".parse().unwrap();
        assert_eq!(parse_time(&time(at), "t").unwrap(), at);
        assert_eq!(
            parse_time("1.795435200123e+12", "t")
                .unwrap()
                .timestamp_millis(),
            1_795_435_200_123
        );
        assert_eq!(
            parse_time("-86400123", "t").unwrap().timestamp_millis(),
            -86_400_123
        );
        for bad in [
            "",
            "abc",
            "1.5",
            "inf",
            "nan",
            "1e300",
            "9223372036854775807",
        ] {
            assert!(parse_time(bad, "t").is_err(), "{bad}");
        }
    }

    #[test]
    fn records_messages_invitations() {
        let at: DateTime<Utc> = "2026-11-23T10:00:00.123Z".parse().unwrap();
        for record in [
            WindowRecord::inbound(at),
            WindowRecord::inbound(at).with_gateway_closure(at),
            WindowRecord::inbound(at).with_gateway_closure(at - chrono::TimeDelta::days(1)),
            WindowRecord::inbound("1969-12-31T23:59:59.999Z".parse().unwrap()),
        ] {
            assert_eq!(parse_window(&window(&record)).unwrap(), record);
        }
        assert_eq!(window(&WindowRecord::inbound(at)), "1795428000123");
        for (bad, what) in [
            ("1795428000123:x", "gateway closure"),
            ("1795428000123:", "gateway closure"),
            ("1795428000123:1:2", "gateway closure"),
            ("x", "last inbound"),
            ("", "last inbound"),
            (":1795428000123", "last inbound"),
            ("1.795428000123e+12", "last inbound"),
            ("+1795428000123", "last inbound"),
            ("12345678901234567", "last inbound"),
            ("9999999999999999", "last inbound"),
        ] {
            let error = parse_window(bad).unwrap_err();
            assert!(error.contains(what), "{bad}: {error}");
        }
        let message = QueuedMessage {
            message_id: MessageId::new(),
            queued_at: at,
            payload: "{\"a\":\"b:c\"}".into(),
        };
        let id = message.message_id.to_string();
        assert_eq!(parse_queued(&id, &queued(&message)).unwrap(), message);
        assert!(parse_queued("nope", &queued(&message)).is_err());
        assert!(parse_queued(&id, "no-colon").is_err());
        let invite = Invitation {
            message_id: MessageId::new(),
            sent_at: at,
        };
        assert_eq!(parse_invitation(&invitation(&invite)).unwrap(), invite);
        assert!(parse_invitation("x:1").is_err());
        assert!(parse_invitation("garbage").is_err());
        assert_eq!(
            parse_phone("254712345678").map(|p| p.as_u64()),
            Some(254_712_345_678)
        );
        assert_eq!(parse_phone("12"), None);
        assert_eq!(
            parse_customer("1000000000000005").map(|c| c.user().map(|u| u.index())),
            Some(Some(5))
        );
        assert_eq!(
            parse_customer("1125899906842624"),
            None,
            "2^50 names no customer"
        );
        assert_eq!(parse_phone("abc"), None);
    }
}
