//! Export to and import from JSON lines: backups, and moving between versions or stores.
//!
//! The first line is a header naming the format and its version; each further line is one
//! fact: a window, a queued message, an invitation, a user known by a business-scoped user
//! id, a group, an alias tying a user id to a phone number, or an inbound message id the
//! redelivery memory holds (`seen`: the business, the id's digest as 32 hex digits, when
//! the first copy was received and when the memory of it ends), so a webhook redelivered
//! after a move is still recognised. Version 3 adds a customer's marketing consent (the
//! opt-out with the time it was made, and the per-user marketing back-off) and the free
//! entry point window. Version 4 adds a customer's per-user marketing back-off (131049)
//! as a line of its own (`back_off`: the customer and when it ends), as it is kept per
//! customer across business numbers; a version 3 `consent` line's `back_off_until` (and
//! one a version 4 export writes for a record kept per conversation by an older version)
//! imports as the customer's back-off. A stored back-off that cannot be read is exported
//! as one lasting [`UNREADABLE_BACK_OFF_EXPORTED_FOR`] (29 days) from the export, with a
//! warning, and counted in [`Transfer::unreadable_back_offs`]: marketing stays withheld
//! from that customer after an import (fail closed), where skipping it would let it go.
//! One ending later than an import takes (recorded from a clock ahead of this host, or kept by an older release) is
//! exported the same way, a group's (likewise) is left out, and one that ended before
//! the year 0 is written as ending at its start, so a store's own export always imports.
//! An unreadable marketing consent record is exported, the same way, as an opt-out made
//! at the export (counted in [`Transfer::unreadable_consents`]). Send outcomes (the
//! idempotency cache), cost
//! records and the messaging limit count are not exported.
//!
//! A line about a conversation names its customer by one of three fields: `customer` (a
//! phone number, as version 1 did), `user_id` (a business-scoped user id) or `group_id`.
//! Handles are local to a store and never exported: an import allocates its own. An
//! export of version 1 (phone numbers only), 2 (without consent) or 3 (without `back_off`
//! lines) imports unchanged.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};

use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::store::{DEFAULT_OUTBOX_LIMIT, Invitation, QueuedMessage, RememberedInbound, Store};
use crate::{
    Bsuid, Conversation, Customer, FreeEntryPoint, GroupId, InboundDigest, MarketingConsent,
    MessageId, PhoneNumber, SkewLimit, StoreError, StoredTime, WindowRecord,
};

/// The format name in the header line.
pub const FORMAT: &str = "lipachat-session-export";
/// The format version this build writes; it reads this one and every earlier one.
pub const FORMAT_VERSION: u32 = 4;

/// Who a line's conversation is with, as exported: exactly one of the three fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Party {
    /// A phone number (the only field of version 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<PhoneNumber>,
    /// A user known by a business-scoped user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Bsuid>,
    /// A group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<GroupId>,
}

impl Party {
    /// A phone number.
    pub fn phone(phone: PhoneNumber) -> Self {
        Self {
            customer: Some(phone),
            ..Self::default()
        }
    }

    /// Checks that exactly one field is given.
    fn check(&self, line: usize) -> Result<(), StoreError> {
        let given = usize::from(self.customer.is_some())
            + usize::from(self.user_id.is_some())
            + usize::from(self.group_id.is_some());
        if given == 1 {
            return Ok(());
        }
        Err(StoreError::Import {
            line,
            detail: format!(
                "the line names {given} customers; name exactly one, by customer (a phone number), user_id or group_id"
            ),
        })
    }

    /// The store's customer for it, looked up only: `None` for a user or group the store
    /// does not know.
    async fn find<S: Store>(&self, store: &S) -> Result<Option<Customer>, StoreError> {
        Ok(match (&self.customer, &self.user_id, &self.group_id) {
            (Some(phone), _, _) => Some(Customer::Phone(*phone)),
            (None, Some(user), _) => store.find_user_ref(user).await?.map(Customer::User),
            (None, None, Some(group)) => store.find_group_ref(group).await?.map(Customer::Group),
            (None, None, None) => None,
        })
    }

    /// The store's customer for it, allocating a handle for a user or group it does not
    /// know.
    async fn resolve<S: Store>(&self, store: &S) -> Result<Customer, StoreError> {
        Ok(match (&self.customer, &self.user_id, &self.group_id) {
            (Some(phone), _, _) => Customer::Phone(*phone),
            (None, Some(user), _) => Customer::User(store.user_ref(user).await?),
            (None, None, Some(group)) => Customer::Group(store.group_ref(group).await?),
            // Checked when the line was read.
            (None, None, None) => {
                return Err(StoreError::Import {
                    line: 0,
                    detail: "a line names no customer".into(),
                });
            }
        })
    }
}

impl std::fmt::Display for Party {
    /// The phone's digits, the user id, or `group:ID`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.customer, &self.user_id, &self.group_id) {
            (Some(phone), _, _) => write!(f, "{phone}"),
            (None, Some(user), _) => write!(f, "{user}"),
            (None, None, Some(group)) => write!(f, "group:{group}"),
            (None, None, None) => f.write_str("no customer"),
        }
    }
}

/// The ids of a store's users and groups, to name customers by in an export.
struct Names {
    users: HashMap<crate::UserRef, Bsuid>,
    groups: HashMap<crate::GroupRef, GroupId>,
}

impl Names {
    async fn of<S: Store>(store: &S) -> Result<Self, StoreError> {
        Ok(Self {
            users: store.users().await?.into_iter().collect(),
            groups: store.groups().await?.into_iter().collect(),
        })
    }

    /// The party of `customer`; `None` for a handle the registry does not name.
    fn party(&self, customer: Customer) -> Option<Party> {
        Some(match customer {
            Customer::Phone(phone) => Party::phone(phone),
            Customer::User(user) => Party {
                user_id: Some(self.users.get(&user)?.clone()),
                ..Party::default()
            },
            Customer::Group(group) => Party {
                group_id: Some(self.groups.get(&group)?.clone()),
                ..Party::default()
            },
        })
    }
}

mod rfc3339_millis {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339(*at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        super::read_time(&text).map_err(serde::de::Error::custom)
    }
}

/// Reads a time as an export writes it ([`rfc3339`]): RFC 3339, or, for a year before 0
/// or after 9999 (which RFC 3339 cannot write), the same with a signed year of four or more
/// digits (ISO 8601's expanded form, as chrono writes it: `-0001-12-31T00:01:00.000Z`).
/// Every time the store can hold reads back as it was written, to the millisecond: a
/// stored time in such a year (a `--at` given with a large offset) would otherwise make
/// the whole export refused by its own import.
fn read_time(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    match DateTime::parse_from_rfc3339(text) {
        Ok(at) => Ok(at.with_timezone(&Utc)),
        Err(error) if text.starts_with(['-', '+']) => text.parse().map_err(|_| error),
        Err(error) => Err(error),
    }
}

/// One line of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ExportLine {
    /// The first line.
    Header {
        /// Always [`FORMAT`].
        format: String,
        /// The format version.
        version: u32,
    },
    /// A conversation's window record.
    Window {
        /// The business number.
        business: PhoneNumber,
        /// The customer.
        #[serde(flatten)]
        customer: Party,
        /// The last inbound message.
        #[serde(with = "rfc3339_millis")]
        last_inbound: DateTime<Utc>,
        /// The gateway closure in force, if any.
        gateway_closed_at: Option<String>,
    },
    /// A message waiting in the outbox.
    Queued {
        /// The business number.
        business: PhoneNumber,
        /// The customer.
        #[serde(flatten)]
        customer: Party,
        /// Its `messageId`.
        message_id: MessageId,
        /// When it was queued.
        #[serde(with = "rfc3339_millis")]
        queued_at: DateTime<Utc>,
        /// The message, as JSON text.
        payload: String,
    },
    /// An invitation template sent for a closed window.
    Invitation {
        /// The business number.
        business: PhoneNumber,
        /// The customer.
        #[serde(flatten)]
        customer: Party,
        /// The template's `messageId`.
        message_id: MessageId,
        /// When it was sent.
        #[serde(with = "rfc3339_millis")]
        sent_at: DateTime<Utc>,
    },
    /// A user known by a business-scoped user id (version 2).
    User {
        /// The id.
        user_id: Bsuid,
    },
    /// A group (version 2).
    Group {
        /// The id.
        group_id: GroupId,
    },
    /// A business-scoped user id known to be a phone number, for one business number
    /// (version 2).
    Alias {
        /// The business number.
        business: PhoneNumber,
        /// The user id.
        user_id: Bsuid,
        /// The phone number.
        phone: PhoneNumber,
    },
    /// An inbound message id the redelivery memory holds for a business number
    /// (version 2): a redelivered webhook with this id is a duplicate until
    /// `remember_until`.
    Seen {
        /// The business number.
        business: PhoneNumber,
        /// The id's digest ([`crate::InboundId::digest`]), 32 hex digits.
        digest: String,
        /// When the first copy was received.
        #[serde(with = "rfc3339_millis")]
        first_received: DateTime<Utc>,
        /// When the memory of it ends (an expiry: in the future).
        #[serde(with = "rfc3339_millis")]
        remember_until: DateTime<Utc>,
    },
    /// A customer's marketing consent towards a business number (version 3).
    Consent {
        /// The business number.
        business: PhoneNumber,
        /// The customer.
        #[serde(flatten)]
        customer: Party,
        /// Whether the customer stopped marketing messages.
        opted_out: bool,
        /// When the opt-out or opt-in in force was made, if one was.
        changed_at: Option<String>,
        /// When the per-user marketing back-off ends, if one was recorded (an expiry).
        back_off_until: Option<String>,
    },
    /// A customer's per-user marketing back-off (131049), across business numbers
    /// (version 4).
    BackOff {
        /// The customer: a phone number or a user id (never a group).
        #[serde(flatten)]
        customer: Party,
        /// When the back-off ends (an expiry).
        #[serde(with = "rfc3339_millis")]
        until: DateTime<Utc>,
    },
    /// A conversation's free entry point window (version 3).
    FreeEntryPoint {
        /// The business number.
        business: PhoneNumber,
        /// The customer.
        #[serde(flatten)]
        customer: Party,
        /// The latest inbound message carrying a click-to-WhatsApp referral.
        referral_at: Option<String>,
        /// When the business's reply opened the window.
        opened_at: Option<String>,
        /// When the window ends (an expiry).
        until: Option<String>,
        /// Whether the end is the platform's (else our prediction).
        confirmed: bool,
    },
}

/// The RFC 3339 text (milliseconds) of a time, as the export's optional times are
/// written (a year outside 0 to 9999 gets a sign and as many digits as it needs; see
/// [`read_time`]).
fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Counts of what an export wrote or an import read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transfer {
    /// Window records.
    pub windows: u64,
    /// Queued messages.
    pub queued: u64,
    /// Invitations.
    pub invitations: u64,
    /// Users known by a business-scoped user id.
    pub users: u64,
    /// Groups.
    pub groups: u64,
    /// Aliases.
    pub aliases: u64,
    /// Remembered inbound ids (the redelivery memory). On import, lines read: one already
    /// remembered by the store, or expired by the time it is read, changes nothing.
    pub seen: u64,
    /// Marketing consent records (version 3).
    pub consents: u64,
    /// Free entry point records (version 3).
    pub free_entry_points: u64,
    /// Customer back-offs (version 4).
    pub back_offs: u64,
    /// Corrupt records skipped (export only): unreadable values, and records of a user
    /// or group whose id the registry does not hold.
    pub skipped_corrupt: u64,
    /// Unreadable customer back-offs exported as back-offs of
    /// [`UNREADABLE_BACK_OFF_EXPORTED_FOR`] from the export (export only; also counted in
    /// `back_offs`), so marketing stays withheld after an import.
    pub unreadable_back_offs: u64,
    /// Unreadable marketing consent records exported as opt-outs made at the export
    /// (export only; also counted in `consents`), so marketing stays withheld after an
    /// import until the customer opts in again.
    pub unreadable_consents: u64,
}

fn write_line(out: &mut impl Write, line: &ExportLine) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: "<export output>".into(),
        source,
    };
    serde_json::to_writer(&mut *out, line).map_err(|e| io(e.into()))?;
    out.write_all(b"\n").map_err(io)
}

/// Writes every user, group, alias, window, queued message, invitation, marketing consent
/// record, customer back-off, free entry point record and remembered inbound id (those not
/// expired now) in `store` as JSON lines.
pub async fn export<S: Store>(store: &S, mut out: impl Write) -> Result<Transfer, StoreError> {
    let mut transfer = Transfer::default();
    write_line(
        &mut out,
        &ExportLine::Header {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
        },
    )?;
    let names = Names::of(store).await?;
    for (_, user_id) in store.users().await? {
        write_line(&mut out, &ExportLine::User { user_id })?;
        transfer.users += 1;
    }
    for (_, group_id) in store.groups().await? {
        write_line(&mut out, &ExportLine::Group { group_id })?;
        transfer.groups += 1;
    }
    for alias in store.aliases().await? {
        write_line(
            &mut out,
            &ExportLine::Alias {
                business: alias.business,
                user_id: alias.user,
                phone: alias.phone,
            },
        )?;
        transfer.aliases += 1;
    }
    for (conversation, record) in store.windows().await? {
        let (Ok(record), Some(customer)) = (record, names.party(conversation.customer)) else {
            transfer.skipped_corrupt += 1;
            continue;
        };
        write_line(
            &mut out,
            &ExportLine::Window {
                business: conversation.business,
                customer,
                last_inbound: record.last_inbound,
                gateway_closed_at: record
                    .gateway_closed_at
                    .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)),
            },
        )?;
        transfer.windows += 1;
    }
    for conversation in store.conversations_with_queued().await? {
        let Some(customer) = names.party(conversation.customer) else {
            transfer.skipped_corrupt += store.queued(conversation).await?.len() as u64;
            continue;
        };
        for message in store.queued(conversation).await? {
            write_line(
                &mut out,
                &ExportLine::Queued {
                    business: conversation.business,
                    customer: customer.clone(),
                    message_id: message.message_id,
                    queued_at: message.queued_at,
                    payload: message.payload,
                },
            )?;
            transfer.queued += 1;
        }
    }
    for (conversation, invitation) in store.invitations().await? {
        let Some(customer) = names.party(conversation.customer) else {
            transfer.skipped_corrupt += 1;
            continue;
        };
        write_line(
            &mut out,
            &ExportLine::Invitation {
                business: conversation.business,
                customer,
                message_id: invitation.message_id,
                sent_at: invitation.sent_at,
            },
        )?;
        transfer.invitations += 1;
    }
    for (conversation, consent) in store.marketing_consents().await? {
        let Some(customer) = names.party(conversation.customer) else {
            transfer.skipped_corrupt += 1;
            continue;
        };
        let consent = match consent {
            Ok(consent) => consent,
            Err(error) => {
                // Skipping it would let marketing templates reach a customer who may have
                // opted out: fail closed, as an opt-out made at the export (a later
                // opt-in, the customer's START, still takes it back).
                tracing::warn!(%conversation, %error, "exporting an unreadable marketing consent record as an opt-out");
                transfer.unreadable_consents += 1;
                MarketingConsent {
                    opted_out: true,
                    changed_at: Some(crate::window::truncate_to_millis(Utc::now())),
                    ..MarketingConsent::default()
                }
            }
        };
        write_line(
            &mut out,
            &ExportLine::Consent {
                business: conversation.business,
                customer,
                opted_out: consent.opted_out,
                changed_at: consent.changed_at.map(rfc3339),
                back_off_until: consent
                    .back_off_until
                    .map(|until| rfc3339(importable_back_off(conversation.customer, until))),
            },
        )?;
        transfer.consents += 1;
    }
    for (customer, until) in store.customer_back_offs().await? {
        if customer.group().is_some() {
            // Only a release before `check_back_off` kept one; a group gets no templates.
            tracing::warn!(%customer, "not exporting a group's marketing back-off: a group has no per-user marketing limit");
            continue;
        }
        let Some(named) = names.party(customer) else {
            transfer.skipped_corrupt += 1;
            continue;
        };
        let until = match until {
            Ok(until) => importable_back_off(customer, until),
            Err(error) => {
                // Skipping it would let marketing reach the customer after an import:
                // fail closed, with the longest back-off an import takes (less a margin).
                let until = Utc::now() + UNREADABLE_BACK_OFF_EXPORTED_FOR;
                tracing::warn!(%customer, %error, %until, "exporting an unreadable marketing back-off as one ending at the latest an import takes");
                transfer.unreadable_back_offs += 1;
                until
            }
        };
        write_line(
            &mut out,
            &ExportLine::BackOff {
                customer: named,
                until,
            },
        )?;
        transfer.back_offs += 1;
    }
    for (conversation, entry) in store.free_entry_points().await? {
        let (Ok(entry), Some(customer)) = (entry, names.party(conversation.customer)) else {
            transfer.skipped_corrupt += 1;
            continue;
        };
        write_line(
            &mut out,
            &ExportLine::FreeEntryPoint {
                business: conversation.business,
                customer,
                referral_at: entry.referral_at.map(rfc3339),
                opened_at: entry.opened_at.map(rfc3339),
                until: entry.until.map(rfc3339),
                confirmed: entry.confirmed,
            },
        )?;
        transfer.free_entry_points += 1;
    }
    for entry in store.remembered_inbound(Utc::now()).await? {
        write_line(
            &mut out,
            &ExportLine::Seen {
                business: entry.business,
                digest: entry.digest.to_string(),
                first_received: entry.first_received_at,
                remember_until: entry.remember_until,
            },
        )?;
        transfer.seen += 1;
    }
    out.flush().map_err(|source| StoreError::Io {
        path: "<export output>".into(),
        source,
    })?;
    Ok(transfer)
}

fn parse_time(text: &str, line: usize) -> Result<DateTime<Utc>, StoreError> {
    read_time(text).map_err(|e| StoreError::Import {
        line,
        detail: format!("time {text:?}: {e}"),
    })
}

/// Reads the digest of a `seen` line.
fn parse_digest(text: &str, line: usize) -> Result<InboundDigest, StoreError> {
    text.parse().map_err(|e| StoreError::Import {
        line,
        detail: format!("digest {text:?}: {e}"),
    })
}

/// Refuses a time of line `line` that lies beyond the tolerated skew ahead of the system
/// clock ([`SkewLimit`]).
fn check_not_future(what: StoredTime, at: DateTime<Utc>, line: usize) -> Result<(), StoreError> {
    SkewLimit::default()
        .check(what, at, Utc::now())
        .map_err(|source| StoreError::ImportFutureTime { line, source })
}

/// The furthest ahead of the real clock an imported 131049 back-off may end: 30 days,
/// far above any sensible back-off (the default is 24 hours); a later end is refused, so a
/// broken or forged export cannot pin marketing off for years.
pub const MAX_IMPORTED_BACK_OFF: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// How long from the export an unreadable stored back-off is exported as lasting: the
/// longest an import takes ([`MAX_IMPORTED_BACK_OFF`], 30 days) less a day, so a clock
/// somewhat ahead on the exporting machine, or an import made later, still takes it. The
/// export fails closed: skipping the record would let marketing templates reach the
/// customer again once imported.
pub const UNREADABLE_BACK_OFF_EXPORTED_FOR: chrono::TimeDelta = chrono::TimeDelta::days(29);

/// A stored back-off end as an export writes it: one ending later than an import takes
/// (more than [`MAX_IMPORTED_BACK_OFF`] ahead: recorded from a clock ahead of this
/// host's, or kept by a release that took any configured back-off) is written as
/// ending [`UNREADABLE_BACK_OFF_EXPORTED_FOR`] after the export, with a warning, so the
/// export still imports and marketing stays withheld after it. One that ended before
/// the year 0 (RFC 3339 has no earlier years) is written as ending at its start: it has
/// ended either way.
fn importable_back_off(customer: Customer, until: DateTime<Utc>) -> DateTime<Utc> {
    /// 0000-01-01T00:00:00Z, the earliest time RFC 3339 writes, in epoch seconds.
    const YEAR_0: i64 = -62_167_219_200;
    let now = Utc::now();
    if until.year() < 0 {
        return DateTime::from_timestamp(YEAR_0, 0).unwrap_or(until);
    }
    if until <= now + MAX_IMPORTED_BACK_OFF {
        return until;
    }
    let exported = now + UNREADABLE_BACK_OFF_EXPORTED_FOR;
    tracing::warn!(%customer, %until, %exported, "exporting a marketing back-off longer than an import takes as one ending at the latest an import takes");
    exported
}

/// The longest redelivery memory an imported `seen` line may carry (from its first receipt
/// to the end of its memory): a year, far above any sensible horizon (the default is 7
/// days).
pub const MAX_IMPORTED_MEMORY: chrono::TimeDelta = chrono::TimeDelta::days(366);

/// Refuses a back-off end (`field` of line `line`) more than [`MAX_IMPORTED_BACK_OFF`]
/// ahead of the system clock.
fn check_back_off_end(field: &str, until: DateTime<Utc>, line: usize) -> Result<(), StoreError> {
    if until > Utc::now() + MAX_IMPORTED_BACK_OFF {
        return Err(StoreError::Import {
            line,
            detail: format!(
                "{field} {} is more than {} days ahead: no 131049 back-off runs that long",
                until.to_rfc3339_opts(SecondsFormat::Millis, true),
                MAX_IMPORTED_BACK_OFF.num_days()
            ),
        });
    }
    Ok(())
}

/// Reads JSON lines written by [`export`] into `store`, merging with what is there (inbound
/// times keep the maximum). Every line is checked before anything is written: a bad line,
/// or a time more than the tolerated skew ([`SkewLimit`], 5 minutes) ahead of the system
/// clock, is reported with its number and nothing is imported. A `seen` line's
/// `remember_until` is an expiry, so it may lie ahead (it must follow `first_received`);
/// one already past is skipped, and an id the store already remembers keeps its entry. No outbox may end up
/// holding more than [`DEFAULT_OUTBOX_LIMIT`] messages (see [`import_with_limit`]).
pub async fn import<S: Store>(store: &S, input: impl BufRead) -> Result<Transfer, StoreError> {
    import_with_limit(store, input, DEFAULT_OUTBOX_LIMIT).await
}

/// [`import`] with an outbox limit: a conversation whose outbox would hold more than
/// `outbox_limit` messages (those already queued in `store` and those imported, each
/// `messageId` counted once) is refused with [`StoreError::Import`] naming the line of
/// the first message over the limit, and nothing is imported.
///
/// The store operations are linear in the input: one pass over the lines, one read of
/// the outbox of each conversation with queued lines, and one write per line. Each
/// queued line's write reads its conversation's outbox on sled (to keep one entry per
/// `messageId`), so the work is linear for a bounded limit such as the default, and
/// grows with the square of the messages imported into one conversation when the limit
/// lets thousands wait there.
pub async fn import_with_limit<S: Store>(
    store: &S,
    input: impl BufRead,
    outbox_limit: usize,
) -> Result<Transfer, StoreError> {
    let mut lines = Vec::new();
    for (number, text) in input.lines().enumerate() {
        let number = number + 1;
        let text = text.map_err(|source| StoreError::Io {
            path: "<import input>".into(),
            source,
        })?;
        if text.trim().is_empty() {
            continue;
        }
        let line: ExportLine = serde_json::from_str(&text).map_err(|e| StoreError::Import {
            line: number,
            detail: e.to_string(),
        })?;
        match &line {
            ExportLine::Header { format, version }
                if format != FORMAT || *version > FORMAT_VERSION =>
            {
                return Err(StoreError::Import {
                    line: number,
                    detail: format!(
                        "format {format:?} version {version}; this build reads {FORMAT:?} up to version {FORMAT_VERSION}"
                    ),
                });
            }
            ExportLine::Window {
                customer,
                last_inbound,
                gateway_closed_at,
                ..
            } => {
                customer.check(number)?;
                check_not_future(StoredTime::Inbound, *last_inbound, number)?;
                if let Some(closed) = gateway_closed_at {
                    let closed = parse_time(closed, number)?;
                    check_not_future(StoredTime::GatewayClosure, closed, number)?;
                }
            }
            ExportLine::Queued {
                customer,
                queued_at,
                ..
            } => {
                customer.check(number)?;
                check_not_future(StoredTime::Queued, *queued_at, number)?;
            }
            ExportLine::Invitation {
                customer, sent_at, ..
            } => {
                customer.check(number)?;
                check_not_future(StoredTime::InvitationSent, *sent_at, number)?;
            }
            ExportLine::Seen {
                digest,
                first_received,
                remember_until,
                ..
            } => {
                parse_digest(digest, number)?;
                // The receipt is an event; the end of its memory is an expiry, in the
                // future while it lasts.
                check_not_future(StoredTime::InboundReceipt, *first_received, number)?;
                if remember_until <= first_received {
                    return Err(StoreError::Import {
                        line: number,
                        detail: format!(
                            "remember_until {} is not after first_received {}",
                            remember_until.to_rfc3339_opts(SecondsFormat::Millis, true),
                            first_received.to_rfc3339_opts(SecondsFormat::Millis, true)
                        ),
                    });
                }
                // A memory longer than any horizon would keep a message unanswerable for
                // that long if it came again: refused, not cut short.
                if *remember_until - *first_received > MAX_IMPORTED_MEMORY {
                    return Err(StoreError::Import {
                        line: number,
                        detail: format!(
                            "remember_until {} is more than {} days after first_received {}",
                            remember_until.to_rfc3339_opts(SecondsFormat::Millis, true),
                            MAX_IMPORTED_MEMORY.num_days(),
                            first_received.to_rfc3339_opts(SecondsFormat::Millis, true)
                        ),
                    });
                }
            }
            ExportLine::Consent {
                customer,
                opted_out,
                changed_at,
                back_off_until,
                ..
            } => {
                customer.check(number)?;
                // The change is an event; the back-off's end is an expiry.
                let changed = optional_time(changed_at.as_deref(), number)?;
                if let Some(changed) = changed {
                    check_not_future(StoredTime::MarketingConsent, changed, number)?;
                } else if *opted_out {
                    return Err(StoreError::Import {
                        line: number,
                        detail: "an opt-out without changed_at; give the time it was made".into(),
                    });
                }
                if let Some(until) = optional_time(back_off_until.as_deref(), number)? {
                    check_back_off_end("back_off_until", until, number)?;
                }
            }
            ExportLine::BackOff { customer, until } => {
                customer.check(number)?;
                if customer.group_id.is_some() {
                    return Err(StoreError::Import {
                        line: number,
                        detail: "a back_off line names a group; a back-off is a person's: name them by customer (a phone number) or user_id".into(),
                    });
                }
                check_back_off_end("until", *until, number)?;
            }
            ExportLine::FreeEntryPoint {
                customer,
                referral_at,
                opened_at,
                until,
                ..
            } => {
                customer.check(number)?;
                if let Some(referral) = optional_time(referral_at.as_deref(), number)? {
                    check_not_future(StoredTime::Referral, referral, number)?;
                }
                let opened = optional_time(opened_at.as_deref(), number)?;
                if let Some(opened) = opened {
                    check_not_future(StoredTime::BusinessReply, opened, number)?;
                }
                if opened.is_some() != until.is_some() {
                    return Err(StoreError::Import {
                        line: number,
                        detail: "opened_at and until go together: give both or neither".into(),
                    });
                }
                if let (Some(opened), Some(until)) =
                    (opened, optional_time(until.as_deref(), number)?)
                    && (until <= opened || until - opened > crate::MAX_CONFIRMED_FREE_ENTRY_POINT)
                {
                    return Err(StoreError::Import {
                        line: number,
                        detail: format!(
                            "until must fall after opened_at and at most {} minutes after it (a free entry point window lasts 72 hours)",
                            crate::MAX_CONFIRMED_FREE_ENTRY_POINT.num_minutes()
                        ),
                    });
                }
            }
            ExportLine::Header { .. }
            | ExportLine::User { .. }
            | ExportLine::Group { .. }
            | ExportLine::Alias { .. } => {}
        }
        lines.push((number, line));
    }
    if !matches!(lines.first(), Some((_, ExportLine::Header { .. }))) {
        return Err(StoreError::Import {
            line: 1,
            detail: format!("the first line must be the {FORMAT:?} header"),
        });
    }
    check_outbox_limit(store, &lines, outbox_limit).await?;
    check_stored_consent(store, &lines).await?;
    let mut transfer = Transfer::default();
    for (number, line) in lines {
        match line {
            ExportLine::Header { .. } => {}
            ExportLine::Window {
                business,
                customer,
                last_inbound,
                gateway_closed_at,
            } => {
                let customer = customer.resolve(store).await?;
                let conversation = Conversation::with_customer(business, customer);
                store.record_inbound(conversation, last_inbound).await?;
                if let Some(closed) = gateway_closed_at {
                    let record = WindowRecord::inbound(last_inbound)
                        .with_gateway_closure(parse_time(&closed, number)?);
                    if let Some(at) = record.effective_gateway_closure() {
                        store.record_gateway_closure(conversation, at).await?;
                    }
                }
                transfer.windows += 1;
            }
            ExportLine::Queued {
                business,
                customer,
                message_id,
                queued_at,
                payload,
            } => {
                let message = QueuedMessage {
                    message_id,
                    queued_at,
                    payload,
                };
                let customer = customer.resolve(store).await?;
                store
                    .enqueue(
                        Conversation::with_customer(business, customer),
                        message,
                        outbox_limit,
                    )
                    .await?;
                transfer.queued += 1;
            }
            ExportLine::Invitation {
                business,
                customer,
                message_id,
                sent_at,
            } => {
                let invitation = Invitation {
                    message_id,
                    sent_at,
                };
                let customer = customer.resolve(store).await?;
                store
                    .set_invitation(
                        Conversation::with_customer(business, customer),
                        Some(invitation),
                    )
                    .await?;
                transfer.invitations += 1;
            }
            ExportLine::User { user_id } => {
                store.user_ref(&user_id).await?;
                transfer.users += 1;
            }
            ExportLine::Group { group_id } => {
                store.group_ref(&group_id).await?;
                transfer.groups += 1;
            }
            ExportLine::Alias {
                business,
                user_id,
                phone,
            } => {
                store.record_alias(business, &user_id, phone).await?;
                transfer.aliases += 1;
            }
            ExportLine::Seen {
                business,
                digest,
                first_received,
                remember_until,
            } => {
                let entry = RememberedInbound {
                    business,
                    digest: parse_digest(&digest, number)?,
                    first_received_at: first_received,
                    remember_until,
                };
                store.remember_inbound(entry, Utc::now()).await?;
                transfer.seen += 1;
            }
            ExportLine::Consent {
                business,
                customer,
                opted_out,
                changed_at,
                back_off_until,
            } => {
                let conversation =
                    Conversation::with_customer(business, customer.resolve(store).await?);
                // Through the store's own rules, so an import merges with what is there:
                // the later change wins (an opt-out on a tie), the later back-off.
                if let Some(changed) = optional_time(changed_at.as_deref(), number)? {
                    store
                        .record_opt_out(conversation, opted_out, changed)
                        .await?;
                }
                // Kept per customer now, whatever version wrote it.
                // A release that kept the back-off per conversation could keep one for a
                // group's; a group has no per-user marketing limit, so it is not imported.
                if let Some(until) = optional_time(back_off_until.as_deref(), number)?
                    .filter(|_| conversation.customer.group().is_none())
                {
                    store.extend_back_off(conversation, until).await?;
                }
                transfer.consents += 1;
            }
            ExportLine::BackOff { customer, until } => {
                let customer = customer.resolve(store).await?;
                store.extend_customer_back_off(customer, until).await?;
                transfer.back_offs += 1;
            }
            ExportLine::FreeEntryPoint {
                business,
                customer,
                referral_at,
                opened_at,
                until,
                confirmed,
            } => {
                let conversation =
                    Conversation::with_customer(business, customer.resolve(store).await?);
                import_free_entry_point(
                    store,
                    conversation,
                    FreeEntryPoint {
                        referral_at: optional_time(referral_at.as_deref(), number)?,
                        opened_at: optional_time(opened_at.as_deref(), number)?,
                        until: optional_time(until.as_deref(), number)?,
                        confirmed,
                    },
                )
                .await?;
                transfer.free_entry_points += 1;
            }
        }
    }
    store.flush().await?;
    Ok(transfer)
}

/// A line's optional time.
fn optional_time(text: Option<&str>, line: usize) -> Result<Option<DateTime<Utc>>, StoreError> {
    text.map(|text| parse_time(text, line)).transpose()
}

/// Writes an exported free entry point record through the store's own rules (a referral,
/// the reply that opened the window, the platform's confirmation), so it merges with
/// what is stored as live events would: a window already open is not moved, and a
/// confirmed end outside the accepted range stays a prediction.
async fn import_free_entry_point<S: Store>(
    store: &S,
    conversation: Conversation,
    record: FreeEntryPoint,
) -> Result<(), StoreError> {
    if let Some(referral) = record.referral_at {
        store.record_referral(conversation, referral).await?;
    }
    let (Some(opened), Some(until)) = (record.opened_at, record.until) else {
        return Ok(());
    };
    if record.confirmed {
        store
            .confirm_free_entry_point(conversation, until, opened)
            .await?;
    } else if let Some(referral) = record.referral_at {
        let within = (opened - referral).max(chrono::TimeDelta::zero());
        store
            .record_business_reply(conversation, opened, until, within)
            .await?;
    }
    Ok(())
}

/// Reads, before anything is written, the stored consent, customer back-off and free entry
/// point records the import's `consent`, `back_off` and `free_entry_point` lines merge
/// into, so one already stored and
/// unreadable fails the import with nothing imported (rather than after the lines before
/// it were applied). Read-only: a user or group id the store does not know yet has no
/// record to read.
async fn check_stored_consent<S: Store>(
    store: &S,
    lines: &[(usize, ExportLine)],
) -> Result<(), StoreError> {
    for (_, line) in lines {
        let (business, party, entry) = match line {
            ExportLine::BackOff { customer, .. } => {
                if let Some(customer) = customer.find(store).await? {
                    store.customer_back_off(customer).await?;
                }
                continue;
            }
            ExportLine::Consent {
                business, customer, ..
            } => (*business, customer, false),
            ExportLine::FreeEntryPoint {
                business, customer, ..
            } => (*business, customer, true),
            _ => continue,
        };
        let Some(customer) = party.find(store).await? else {
            continue;
        };
        let conversation = Conversation::with_customer(business, customer);
        if entry {
            store.free_entry_point(conversation).await?;
        } else {
            store.marketing_consent(conversation).await?;
        }
    }
    Ok(())
}

/// Refuses the import if any outbox would end up over `limit`: the messages already
/// queued in `store` plus the imported ones not among them, each id once. Reads each
/// conversation's outbox once.
async fn check_outbox_limit<S: Store>(
    store: &S,
    lines: &[(usize, ExportLine)],
    limit: usize,
) -> Result<(), StoreError> {
    let mut imported: HashMap<(PhoneNumber, &Party), Vec<(usize, MessageId)>> = HashMap::new();
    for (number, line) in lines {
        if let ExportLine::Queued {
            business,
            customer,
            message_id,
            ..
        } = line
        {
            imported
                .entry((*business, customer))
                .or_default()
                .push((*number, *message_id));
        }
    }
    // The first line over a limit, of every conversation, is the one reported.
    let mut over: Option<(usize, PhoneNumber, &Party)> = None;
    for ((business, party), messages) in imported {
        // A user or group the store does not know yet has nothing queued.
        let mut ids: HashSet<MessageId> = match party.find(store).await? {
            Some(customer) => store
                .queued(Conversation::with_customer(business, customer))
                .await?
                .into_iter()
                .map(|m| m.message_id)
                .collect(),
            None => HashSet::new(),
        };
        let first_over = messages
            .into_iter()
            .find(|(_, id)| ids.insert(*id) && ids.len() > limit);
        if let Some((number, _)) = first_over
            && over.is_none_or(|(earliest, ..)| number < earliest)
        {
            over = Some((number, business, party));
        }
    }
    match over {
        Some((line, business, party)) => Err(StoreError::Import {
            line,
            detail: format!(
                "the outbox of {business}→{party} would hold more than {limit} messages (the outbox limit); nothing was imported"
            ),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use proptest::prelude::*;

    use super::{read_time, rfc3339};

    proptest! {
        /// Every time the store can hold reads back as the export wrote it, to the
        /// millisecond, in the years RFC 3339 writes and in those it cannot.
        #[test]
        fn every_time_an_export_writes_reads_back(
            millis in DateTime::<Utc>::MIN_UTC.timestamp_millis()..=DateTime::<Utc>::MAX_UTC.timestamp_millis(),
        ) {
            let at = DateTime::from_timestamp_millis(millis).unwrap_or_default();
            prop_assert_eq!(read_time(&rfc3339(at)), Ok(at), "{}", rfc3339(at));
        }
    }

    #[test]
    fn years_rfc_3339_cannot_write_are_signed_and_read_back() {
        for (text, written) in [
            ("-0001-12-31T00:01:00Z", "-0001-12-31T00:01:00.000Z"),
            ("+10000-01-01T00:00:00.5Z", "+10000-01-01T00:00:00.500Z"),
        ] {
            let at: DateTime<Utc> = text.parse().unwrap_or_default();
            assert_eq!(rfc3339(at), written);
            assert_eq!(read_time(written), Ok(at));
        }
        // A sign is taken only before a year: anything else stays an RFC 3339 error.
        for bad in [
            "-",
            "+2026",
            "-2026-13-01T00:00:00Z",
            "2026-12-03T09:00:00",
            "",
        ] {
            assert!(read_time(bad).is_err(), "{bad:?} was read");
        }
    }
}
