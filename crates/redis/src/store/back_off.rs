//! The customer back-off (131049, [`lipachat_session::back_off`]) on Redis: one STRING
//! per customer ([`KeyLayout::back_off`], all under the hash tag `{back-off}`), the end's
//! epoch milliseconds. Extending it (keep the later end) and carrying it to another
//! customer are Lua scripts, so replicas on one server agree. A key expires
//! [`BACK_OFF_KEPT`] after the later of its end and the server's clock: the expiry only
//! cleans up, a read compares the end with the caller's clock, so hosts whose clocks
//! differ from the server's by less than that read the same.

use std::sync::LazyLock;

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::back_off::{BackOffEntry, back_off_of};
use lipachat_session::{Conversation, Customer, MarketingConsent, StoreError};
use redis::Script;

use super::RedisStore;
use crate::connection::{Eval, Retry};

/// How long a back-off key outlives the later of its end and the server's clock.
pub(super) const BACK_OFF_KEPT: TimeDelta = TimeDelta::days(7);

/// Lua: whether a stored back-off reads as epoch milliseconds the store can decode
/// (digits, within the range of times [`back_off_of`] reads: a longer number, or one
/// past the last time there is, is as unreadable to the scripts as to the store), and
/// the server's clock.
fn back_off_lua() -> String {
    format!(
        r"
local function readable(v)
  if not (v and string.match(v, '^[%+%-]?%d+$')) then return false end
  local n = tonumber(v)
  return n >= {} and n <= {}
end{STORE_LUA}",
        DateTime::<Utc>::MIN_UTC.timestamp_millis(),
        DateTime::<Utc>::MAX_UTC.timestamp_millis(),
    )
}

/// Lua: writes a back-off end with its expiry (see the module documentation).
const STORE_LUA: &str = r"
local function store(key, ends, kept)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('SET', key, ends, 'PXAT', string.format('%.0f', math.max(tonumber(ends), now) + tonumber(kept)))
end
";

/// Extends a back-off to at least the given end; an unreadable one is replaced. KEYS:
/// the back-off. ARGV: end ms, kept ms. Returns the end now stored.
static EXTEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{}{}",
        back_off_lua(),
        r"
local v = redis.call('GET', KEYS[1])
if readable(v) and tonumber(v) >= tonumber(ARGV[1]) then return v end
store(KEYS[1], ARGV[1], ARGV[2])
return ARGV[1]
"
    ))
});

/// Carries one customer's back-off to another (the later end kept; the source keeps
/// its own). KEYS: source, target. ARGV: kept ms. Returns `{0, ''}` nothing to carry or
/// the target's is as late, `{1, end}` carried, `{2, text}` the source unreadable,
/// `{3, text}` the target unreadable (nothing written for either).
static CARRY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{}{}",
        back_off_lua(),
        r"
local s = redis.call('GET', KEYS[1])
if not s then return {0, ''} end
if not readable(s) then return {2, s} end
local d = redis.call('GET', KEYS[2])
if d and not readable(d) then return {3, d} end
if d and tonumber(d) >= tonumber(s) then return {0, ''} end
store(KEYS[2], s, ARGV[1])
return {1, s}
"
    ))
});

impl RedisStore {
    /// The conversation's own consent record (`own`, the HASH field's text, if any) and
    /// its customer's back-off, read in one round trip (two slots: on a cluster, two
    /// requests at once).
    pub(super) async fn consent_in_force(
        &self,
        what: &str,
        conversation: Conversation,
    ) -> Result<(Option<String>, Option<DateTime<Utc>>), StoreError> {
        let keys = &self.inner.keys;
        let mut own = redis::cmd("HGET");
        own.arg(keys.consent(conversation.business))
            .arg(conversation.customer.key());
        let mut back_off = redis::cmd("GET");
        back_off.arg(keys.back_off(conversation.customer));
        let mut answers: Vec<Option<String>> = self
            .inner
            .connection
            .grouped(what, Retry::Once, vec![vec![own], vec![back_off]])
            .await?;
        let back_off = answers.pop().flatten();
        let own = answers.pop().flatten();
        let back_off = back_off
            .map(|text| back_off_of(conversation.customer, &text))
            .transpose()?;
        Ok((own, back_off))
    }

    /// `consent` (the conversation's own record) with its customer's back-off merged in.
    pub(super) async fn with_customer_back_off(
        &self,
        conversation: Conversation,
        consent: MarketingConsent,
    ) -> Result<MarketingConsent, StoreError> {
        Ok(consent.with_customer_back_off(self.read_back_off(conversation.customer).await?))
    }

    /// The customer's stored back-off end, if any.
    pub(super) async fn read_back_off(
        &self,
        customer: Customer,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let text: Option<String> = self
            .inner
            .connection
            .query(
                "customer_back_off",
                Retry::Once,
                redis::cmd("GET").arg(self.inner.keys.back_off(customer)),
            )
            .await?;
        text.map(|text| back_off_of(customer, &text)).transpose()
    }

    /// [`lipachat_session::ConsentStore::extend_customer_back_off`]: one script.
    pub(super) async fn extend_back_off_of(
        &self,
        customer: Customer,
        until: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, StoreError> {
        lipachat_session::back_off::check_back_off(customer)?;
        let now: String = self
            .inner
            .connection
            .eval_one(
                "extend_customer_back_off",
                Retry::Never,
                None,
                Eval {
                    script: &EXTEND,
                    keys: vec![self.inner.keys.back_off(customer)],
                    args: vec![
                        lipachat_session::back_off::encode_back_off(until),
                        BACK_OFF_KEPT.num_milliseconds().to_string(),
                    ],
                },
            )
            .await?;
        back_off_of(customer, &now)
    }

    /// Carries `from`'s back-off to `to` (a move of a customer within `business`, see
    /// `IdentityStore::move_customer`): answers whether `to`'s changed. An unreadable
    /// one of either is [`StoreError::CorruptBackOff`], nothing written.
    pub(super) async fn carry_back_off(
        &self,
        from: Customer,
        to: Customer,
    ) -> Result<bool, StoreError> {
        let keys = &self.inner.keys;
        let (carried, text): (i64, String) = self
            .inner
            .connection
            .eval_one(
                "carry the customer's back-off",
                Retry::Never,
                None,
                Eval {
                    script: &CARRY,
                    keys: vec![keys.back_off(from), keys.back_off(to)],
                    args: vec![BACK_OFF_KEPT.num_milliseconds().to_string()],
                },
            )
            .await?;
        match carried {
            0 => Ok(false),
            1 => Ok(true),
            unreadable => {
                let customer = if unreadable == 2 { from } else { to };
                // The script found it unreadable: decoding says why.
                back_off_of(customer, &text)?;
                Err(StoreError::CorruptBackOff {
                    customer,
                    detail: format!("unreadable back-off {text:?}"),
                })
            }
        }
    }

    /// Every stored customer back-off: its keys found by `SCAN … MATCH`
    /// (`RedisStore::scan_matching`; export is rare), read with `MGET`. A key that vanished meanwhile is skipped; one
    /// whose name holds no customer is skipped with a warning.
    pub(super) async fn list_back_offs(&self) -> Result<Vec<BackOffEntry>, StoreError> {
        let prefix = self.inner.keys.back_off_prefix();
        let pattern = self.inner.keys.back_off_pattern();
        let keys = self
            .scan_matching("scan the customer back-offs", &pattern)
            .await?;
        let mut entries = Vec::new();
        for chunk in keys.chunks(super::SCAN_COUNT) {
            let values: Vec<Option<String>> = self
                .inner
                .connection
                .query(
                    "read the customer back-offs",
                    Retry::Once,
                    redis::cmd("MGET").arg(chunk),
                )
                .await?;
            for (key, value) in chunk.iter().zip(values) {
                let Some(value) = value else { continue };
                let customer = key
                    .strip_prefix(&prefix)
                    .and_then(|digits| digits.parse().ok())
                    .and_then(Customer::from_key);
                let Some(customer) = customer else {
                    tracing::warn!(key, "skipping a back-off whose key names no customer");
                    continue;
                };
                entries.push((customer, back_off_of(customer, &value)));
            }
        }
        Ok(entries)
    }
}
