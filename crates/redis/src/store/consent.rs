//! [`ConsentStore`] on Redis: the consent and free entry point records in one HASH per
//! business number each, cost records in two, and a portfolio's reached customers in a
//! ZSET (see [`KeyLayout`]); a customer's 131049 back-off in a key of its own (module
//! `back_off`). Every read-modify-write is one Lua script, so replicas on one
//! server agree: the rules are those of [`MarketingConsent`] and [`FreeEntryPoint`] in
//! `lipachat-session`, applied to the same text. A stored value a script cannot read is
//! left as it is and answered, so the caller reports it as corrupt (as sled does).

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::back_off::BackOffEntry;
use lipachat_session::consent::{
    ConsentEntry, ConsentStore, CostRecord, FreeEntryPoint, MAX_CONFIRMED_FREE_ENTRY_POINT,
    MarketingConsent, PredictedCost, Reach, ReportedPricing, check_portfolio_name, corrupt_record,
    pair_cost_records, warn_if_confirmation_refused,
};
use lipachat_session::truncate_to_millis;
use lipachat_session::{Conversation, CountTime, Customer, MessageId, PhoneNumber, StoreError};
use redis::Script;

use super::RedisStore;
use crate::connection::{Eval, Retry};
use crate::keys::KeyLayout;

/// Lua reading a consent record into its three parts (nil when unreadable).
const CONSENT_LUA: &str = r"
local function read(hash, customer)
  local v = redis.call('HGET', hash, customer)
  if not v then return nil, '0', '', '' end
  local f, c, b = string.match(v, '^([01]):(%-?%d*):(%-?%d*)$')
  return v, f, c, b
end
";

/// `MarketingConsent::with_opt_out`: the later change wins; of two at the same
/// millisecond, an opt-out. KEYS: consent HASH. ARGV: customer, 0|1, at ms. Returns the
/// record now stored.
static RECORD_OPT_OUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{CONSENT_LUA}{}",
        r"
local v, flag, changed, back = read(KEYS[1], ARGV[1])
if not flag then return v end
local at = tonumber(ARGV[3])
if changed == '' or tonumber(changed) < at then
  flag, changed = ARGV[2], ARGV[3]
elseif tonumber(changed) == at and ARGV[2] == '1' then
  flag = '1'
end
local now = flag .. ':' .. changed .. ':' .. back
redis.call('HSET', KEYS[1], ARGV[1], now)
return now
"
    ))
});

/// Lua reading a free entry point record into its four parts (nil when unreadable).
const ENTRY_LUA: &str = r"
local function read(hash, customer)
  local v = redis.call('HGET', hash, customer)
  if not v then return nil, '', '', '', '0', false end
  local r, o, u, c = string.match(v, '^(%-?%d*):(%-?%d*):(%-?%d*):([01])$')
  return v, r, o, u, c, true
end
local function write(hash, customer, r, o, u, c)
  local now = r .. ':' .. o .. ':' .. u .. ':' .. c
  redis.call('HSET', hash, customer, now)
  return now
end
";

/// `FreeEntryPoint::with_referral`. KEYS: entry HASH. ARGV: customer, at ms.
static RECORD_REFERRAL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{ENTRY_LUA}{}",
        r"
local v, r, o, u, c = read(KEYS[1], ARGV[1])
if not r then return v end
local at = tonumber(ARGV[2])
if r ~= '' and tonumber(r) >= at then return v end
if o ~= '' and tonumber(o) <= at and u ~= '' and at < tonumber(u) then
  return write(KEYS[1], ARGV[1], ARGV[2], o, u, c)
end
return write(KEYS[1], ARGV[1], ARGV[2], '', '', '0')
"
    ))
});

/// `FreeEntryPoint::with_reply`. KEYS: entry HASH. ARGV: customer, reply ms, until ms,
/// within ms. Returns false when nothing is stored.
static RECORD_REPLY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{ENTRY_LUA}{}",
        r"
local v, r, o, u, c, found = read(KEYS[1], ARGV[1])
if not found then return false end
if not r or r == '' or o ~= '' or c == '1' then return v end
local reply, referral = tonumber(ARGV[2]), tonumber(r)
if reply < referral or reply - referral > tonumber(ARGV[4]) then return v end
return write(KEYS[1], ARGV[1], r, ARGV[2], ARGV[3], '0')
"
    ))
});

/// `FreeEntryPoint::with_confirmation`: an end at or before the opening, or more than
/// the longest after it, is not taken (the record is answered unchanged; false when
/// nothing is stored). KEYS: entry HASH. ARGV: customer, until ms, sent ms, longest ms
/// (`MAX_CONFIRMED_FREE_ENTRY_POINT`).
static CONFIRM_ENTRY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{ENTRY_LUA}{}",
        r"
local v, r, o, u, c, found = read(KEYS[1], ARGV[1])
if not r then return v end
if o == '' then o = ARGV[3] end
local ends, opened = tonumber(ARGV[2]), tonumber(o)
if ends <= opened or ends - opened > tonumber(ARGV[4]) then
  if found then return v end
  return false
end
return write(KEYS[1], ARGV[1], r, o, ARGV[2], '1')
"
    ))
});

/// The Lua the counting scripts start with: `at`, the count's time in epoch ms: the
/// server's clock (`TIME`) when `ARGV[flag_arg]` is `1` (the caller read the system
/// clock: [`CountTime::SystemNow`]), else the time in `ARGV[at_arg]` as it was given.
fn count_time_lua(at_arg: usize, flag_arg: usize) -> String {
    format!(
        "
local at
if ARGV[{flag_arg}] == '1' then
  local t = redis.call('TIME')
  at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  at = tonumber(ARGV[{at_arg}])
end"
    )
}

/// The messaging limit count. KEYS: reached ZSET, its clock-kind STRING. ARGV: customer,
/// at ms, limit, span ms, `1` to count on the server's clock, the kind (`1` or `0`) a
/// count without its clock-kind key is taken as made on
/// ([`lipachat_session::consent::kind_of_an_unmarked_count`]). A count read from a host's system clock is
/// stamped with the server's `TIME` instead, so replicas whose clocks differ, or whose
/// clock steps while a send is under way, stamp and prune on one clock; a given time (a
/// simulation, a test) is used as it is. Customers last reached at or before a span
/// before that time no longer count. Returns `{0 counted | 1 already counted | 2 limit
/// reached, unique customers}`, or `{3, unique customers}` when the count holds entries
/// made on the other kind of clock (nothing written: a simulated clock's given times and
/// the server's would prune each other's entries). A write also sets both keys to expire
/// a span after it (server time), so a count nobody touches again (a past month's service
/// messages) does not stay.
static REACH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{}{}",
        count_time_lua(2, 5),
        r"
local marked = redis.call('GET', KEYS[2])
if not marked then
  -- A count written before the marker existed: taken as made on the kind its name
  -- implies (a service counter's on given times, a portfolio's on the server's clock).
  marked = ARGV[6]
end
if marked ~= ARGV[5] and redis.call('EXISTS', KEYS[1]) == 1 then
  return {3, redis.call('ZCARD', KEYS[1])}
end
local function written()
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[4])
end
local at_text = string.format('%d', at)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', at - tonumber(ARGV[4])))
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
local count = redis.call('ZCARD', KEYS[1])
if score then
  if tonumber(score) < at then
    redis.call('ZADD', KEYS[1], at_text, ARGV[1])
    written()
  end
  return {1, count}
end
if count >= tonumber(ARGV[3]) then return {2, count} end
redis.call('ZADD', KEYS[1], at_text, ARGV[1])
written()
return {0, count + 1}
",
    ))
});

/// How many customers a count holds. KEYS: reached ZSET. ARGV: at ms, span ms, `1` to
/// count on the server's clock (as in [`REACH`]); nothing is written.
static REACHED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{}{}",
        count_time_lua(1, 3),
        r"
return redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%d', at - tonumber(ARGV[2])), '+inf')
",
    ))
});

/// The counting scripts' time arguments for `at`: its epoch ms, and whether the server
/// stamps with its own clock instead.
fn count_time_args(at: CountTime) -> (String, String) {
    let server_clock = matches!(at, CountTime::SystemNow(_));
    (
        ms(at.time()),
        if server_clock { "1" } else { "0" }.to_owned(),
    )
}

/// [`REACH`]'s last argument: `1` when a count on `portfolio` without its clock-kind key
/// is taken as on the server's clock (real), `0` as on given times.
fn unmarked_kind_arg(portfolio: &str) -> &'static str {
    if lipachat_session::consent::kind_of_an_unmarked_count(portfolio) == CountTime::REAL_CLOCK {
        "1"
    } else {
        "0"
    }
}

fn ms(at: DateTime<Utc>) -> String {
    truncate_to_millis(at).timestamp_millis().to_string()
}

fn consent_of(conversation: Conversation, text: &str) -> Result<MarketingConsent, StoreError> {
    MarketingConsent::decode(text)
        .map_err(|detail| corrupt_record(conversation, "marketing consent", detail))
}

fn entry_of(conversation: Conversation, text: &str) -> Result<FreeEntryPoint, StoreError> {
    FreeEntryPoint::decode(text)
        .map_err(|detail| corrupt_record(conversation, "free entry point", detail))
}

fn portfolio_key(keys: &KeyLayout, portfolio: &str) -> Result<String, StoreError> {
    check_portfolio_name(portfolio).map_err(|detail| StoreError::InvalidPortfolio { detail })?;
    Ok(keys.reached(portfolio))
}

impl RedisStore {
    /// Every record of a per-business consent HASH (`key`), decoded by `decode`; a field
    /// that names no customer is skipped with a warning.
    async fn list_records<T>(
        &self,
        what: &str,
        key: impl Fn(&KeyLayout, PhoneNumber) -> String,
        decode: fn(Conversation, &str) -> Result<T, StoreError>,
    ) -> Result<Vec<ConsentEntry<T>>, StoreError> {
        let mut records = Vec::new();
        for (business, fields) in self.hash_per_business(what, key).await? {
            for (field, value) in fields {
                let Some(customer) = field.parse().ok().and_then(Customer::from_key) else {
                    tracing::warn!(%business, field, what, "skipping a record whose field names no customer");
                    continue;
                };
                let conversation = Conversation::with_customer(business, customer);
                records.push((conversation, decode(conversation, &value)));
            }
        }
        Ok(records)
    }

    /// Runs one consent script on `conversation`'s record in the HASH `hash`.
    async fn consent_script(
        &self,
        what: &str,
        script: &Script,
        hash: String,
        conversation: Conversation,
        mut args: Vec<String>,
    ) -> Result<Option<String>, StoreError> {
        args.insert(0, conversation.customer.key().to_string());
        self.inner
            .connection
            .eval_one(
                what,
                Retry::Never,
                Some(self.register(conversation.business)),
                Eval {
                    script,
                    keys: vec![hash],
                    args,
                },
            )
            .await
    }

    async fn change_consent(
        &self,
        what: &str,
        script: &Script,
        conversation: Conversation,
        args: Vec<String>,
    ) -> Result<MarketingConsent, StoreError> {
        let hash = self.inner.keys.consent(conversation.business);
        let now = self
            .consent_script(what, script, hash, conversation, args)
            .await?;
        consent_of(conversation, now.as_deref().unwrap_or_default())
    }

    async fn change_entry(
        &self,
        what: &str,
        script: &Script,
        conversation: Conversation,
        args: Vec<String>,
    ) -> Result<Option<FreeEntryPoint>, StoreError> {
        let hash = self.inner.keys.free_entry_point(conversation.business);
        let now = self
            .consent_script(what, script, hash, conversation, args)
            .await?;
        now.map(|text| entry_of(conversation, &text)).transpose()
    }
}

impl ConsentStore for RedisStore {
    async fn marketing_consent(
        &self,
        conversation: Conversation,
    ) -> Result<MarketingConsent, StoreError> {
        let (own, back_off) = self
            .consent_in_force("marketing_consent", conversation)
            .await?;
        let own = match own {
            None => MarketingConsent::default(),
            Some(text) => consent_of(conversation, &text)?,
        };
        Ok(own.with_customer_back_off(back_off))
    }

    async fn record_opt_out(
        &self,
        conversation: Conversation,
        opted_out: bool,
        at: DateTime<Utc>,
    ) -> Result<MarketingConsent, StoreError> {
        let flag = if opted_out { "1" } else { "0" };
        let own = self
            .change_consent(
                "record_opt_out",
                &RECORD_OPT_OUT,
                conversation,
                vec![flag.into(), ms(at)],
            )
            .await?;
        self.with_customer_back_off(conversation, own).await
    }

    async fn extend_customer_back_off(
        &self,
        customer: Customer,
        until: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, StoreError> {
        self.extend_back_off_of(customer, until).await
    }

    async fn customer_back_off(
        &self,
        customer: Customer,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read_back_off(customer).await
    }

    async fn customer_back_offs(&self) -> Result<Vec<BackOffEntry>, StoreError> {
        self.list_back_offs().await
    }

    async fn marketing_consents(&self) -> Result<Vec<ConsentEntry<MarketingConsent>>, StoreError> {
        self.list_records("marketing_consents", KeyLayout::consent, consent_of)
            .await
    }

    async fn free_entry_points(&self) -> Result<Vec<ConsentEntry<FreeEntryPoint>>, StoreError> {
        self.list_records("free_entry_points", KeyLayout::free_entry_point, entry_of)
            .await
    }

    async fn free_entry_point(
        &self,
        conversation: Conversation,
    ) -> Result<Option<FreeEntryPoint>, StoreError> {
        let key = self.inner.keys.free_entry_point(conversation.business);
        self.hget("free_entry_point", key, conversation.customer.key())
            .await?
            .map(|text| entry_of(conversation, &text))
            .transpose()
    }

    async fn record_referral(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> Result<FreeEntryPoint, StoreError> {
        let now = self
            .change_entry(
                "record_referral",
                &RECORD_REFERRAL,
                conversation,
                vec![ms(at)],
            )
            .await?;
        Ok(now.unwrap_or_default())
    }

    async fn record_business_reply(
        &self,
        conversation: Conversation,
        reply_at: DateTime<Utc>,
        until: DateTime<Utc>,
        within: TimeDelta,
    ) -> Result<Option<FreeEntryPoint>, StoreError> {
        self.change_entry(
            "record_business_reply",
            &RECORD_REPLY,
            conversation,
            vec![
                ms(reply_at),
                ms(until),
                within.num_milliseconds().to_string(),
            ],
        )
        .await
    }

    async fn confirm_free_entry_point(
        &self,
        conversation: Conversation,
        until: DateTime<Utc>,
        sent_at: DateTime<Utc>,
    ) -> Result<FreeEntryPoint, StoreError> {
        let now = self
            .change_entry(
                "confirm_free_entry_point",
                &CONFIRM_ENTRY,
                conversation,
                vec![
                    ms(until),
                    ms(sent_at),
                    MAX_CONFIRMED_FREE_ENTRY_POINT
                        .num_milliseconds()
                        .to_string(),
                ],
            )
            .await?
            .unwrap_or_default();
        warn_if_confirmation_refused(conversation, &now, until, sent_at);
        Ok(now)
    }

    async fn record_predicted_cost(&self, cost: PredictedCost) -> Result<(), StoreError> {
        let business = cost.conversation.business;
        let value = cost.encode();
        // The registry's SADD is on a slot of its own: on a cluster it goes first, then
        // the write on the business's slot.
        let key = self.inner.keys.predicted_costs(business);
        let field = cost.message_id.to_string();
        self.inner
            .connection
            .pipeline_after(
                "record_predicted_cost",
                Retry::Never,
                &self.register(business),
                |write| {
                    write.hset(&key, &field, &value).ignore();
                },
            )
            .await
    }

    async fn record_reported_pricing(
        &self,
        business: PhoneNumber,
        message_id: MessageId,
        pricing: ReportedPricing,
    ) -> Result<(), StoreError> {
        let value = pricing.encode();
        // The registry's SADD is on a slot of its own: on a cluster it goes first, then
        // the write on the business's slot.
        let key = self.inner.keys.reported_pricing(business);
        let field = message_id.to_string();
        self.inner
            .connection
            .pipeline_after(
                "record_reported_pricing",
                Retry::Never,
                &self.register(business),
                |write| {
                    write.hset(&key, &field, &value).ignore();
                },
            )
            .await
    }

    async fn cost_records(
        &self,
        business: Option<PhoneNumber>,
    ) -> Result<Vec<CostRecord>, StoreError> {
        let wanted = |b: &PhoneNumber| business.is_none_or(|only| only == *b);
        let mut predicted = Vec::new();
        for (_, costs) in self
            .hash_per_business("cost_records", KeyLayout::predicted_costs)
            .await?
            .into_iter()
            .filter(|(b, _)| wanted(b))
        {
            for (id, value) in costs {
                match PredictedCost::decode(value.as_bytes()) {
                    Ok(cost) => predicted.push(cost),
                    Err(error) => {
                        tracing::warn!(
                            message_id = id,
                            error,
                            "skipping an unreadable predicted cost"
                        );
                    }
                }
            }
        }
        let mut reported = HashMap::new();
        for (b, reports) in self
            .hash_per_business("cost_records", KeyLayout::reported_pricing)
            .await?
            .into_iter()
            .filter(|(b, _)| wanted(b))
        {
            for (id, value) in reports {
                match (
                    id.parse::<MessageId>(),
                    ReportedPricing::decode(value.as_bytes()),
                ) {
                    (Ok(message_id), Ok(pricing)) => {
                        reported.insert((b, message_id), pricing);
                    }
                    _ => tracing::warn!(message_id = id, "skipping an unreadable reported pricing"),
                }
            }
        }
        Ok(pair_cost_records(predicted, reported))
    }

    async fn reach_customer(
        &self,
        portfolio: &str,
        customer: u64,
        at: impl Into<CountTime> + Send,
        limit: u64,
        span: TimeDelta,
    ) -> Result<Reach, StoreError> {
        let key = portfolio_key(&self.inner.keys, portfolio)?;
        let at = at.into();
        let (at_ms, server_clock) = count_time_args(at);
        let (kind, reached): (u8, u64) = self
            .inner
            .connection
            .eval_one(
                "reach_customer",
                Retry::Never,
                None,
                Eval {
                    script: &REACH,
                    keys: vec![key, self.inner.keys.reached_clock(portfolio)],
                    args: vec![
                        customer.to_string(),
                        at_ms,
                        limit.to_string(),
                        span.num_milliseconds().max(1).to_string(),
                        server_clock,
                        unmarked_kind_arg(portfolio).to_owned(),
                    ],
                },
            )
            .await?;
        Ok(match kind {
            0 => Reach::Counted { reached },
            1 => Reach::AlreadyCounted { reached },
            3 => return Err(at.mixed_with_the_other_kind(portfolio)),
            _ => Reach::LimitReached { reached },
        })
    }

    async fn reached(
        &self,
        portfolio: &str,
        at: impl Into<CountTime> + Send,
        span: TimeDelta,
    ) -> Result<u64, StoreError> {
        let key = portfolio_key(&self.inner.keys, portfolio)?;
        let (at_ms, server_clock) = count_time_args(at.into());
        self.inner
            .connection
            .eval_one(
                "reached",
                Retry::Once,
                None,
                Eval {
                    script: &REACHED,
                    keys: vec![key],
                    args: vec![at_ms, span.num_milliseconds().to_string(), server_clock],
                },
            )
            .await
    }
}
