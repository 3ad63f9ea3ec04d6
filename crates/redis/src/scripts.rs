//! The Lua scripts: every change that touches several keys, or reads then writes, runs
//! as one script, which Redis executes atomically (no other command runs in between).
//!
//! Each script touches the keys of one business number only (one hash tag, so one
//! Cluster slot), or a single claim key. Times are epoch milliseconds, which Lua's
//! doubles and Redis's sorted-set scores hold exactly.

use std::sync::LazyLock;

use redis::Script;

/// Lua shared by the window scripts: how a record is read.
///
/// A record (the value in the window HASH) is `<last inbound ms>` or
/// `<last inbound ms>:<gateway closure ms>`. `ms` accepts a time as the store writes it
/// (an integer of at most 16 digits, which a double holds exactly up to 2^53, beyond any
/// time chrono represents) and answers nil for anything else. `split` answers the two
/// parts as text (the closure nil when there is none); the scripts compare numbers but
/// write back the original text, since Lua prints large numbers in exponent notation.
macro_rules! record_lua {
    () => {
        r"
local function ms(text)
  if not text then return nil end
  local digits = string.match(text, '^%-?(%d+)$')
  if digits and #digits <= 16 then return tonumber(text) end
  return nil
end
local function split(record)
  local last, closed = string.match(record, '^([^:]*):(.*)$')
  if last then return last, closed end
  return record, nil
end
"
    };
}

/// Lua of the keep-max of the inbound time: `record_inbound(hash, zset, customer, ms)`
/// answers the previous record (false when none) and the current one.
macro_rules! record_inbound_lua {
    () => {
        r"
local function record_inbound(hash, zset, customer, time)
  local previous = redis.call('HGET', hash, customer)
  local last, closed = time, nil
  if previous then
    local old, old_closed = split(previous)
    local old_ms = ms(old)
    if old_ms then
      if old_ms > tonumber(time) then last = old end
      local closed_ms = ms(old_closed)
      if closed_ms and closed_ms >= tonumber(last) then closed = old_closed end
    end
  end
  local current = last
  if closed then current = last .. ':' .. closed end
  if current ~= previous then
    redis.call('HSET', hash, customer, current)
  end
  redis.call('ZADD', zset, last, customer)
  return previous, current
end
"
    };
}

/// Keep-max of the inbound time, dropping a gateway closure the new time overrides
/// (`WindowRecord::with_inbound`), in the record and in the index.
///
/// KEYS: window HASH, inbound ZSET. ARGV: customer, time ms.
/// Returns `{previous record or nil, current record}`. A previous record whose last
/// inbound time is unreadable is replaced by the new time alone; an unreadable closure is
/// dropped.
const RECORD_INBOUND: &str = concat!(
    record_lua!(),
    record_inbound_lua!(),
    r"
local previous, current = record_inbound(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
return {previous, current}
"
);

/// [`RECORD_INBOUND`] unless the inbound message's id is remembered: the id's key is set
/// (to the receipt time, expiring after the horizon in server time) in the same step.
///
/// KEYS: window HASH, inbound ZSET, seen-id STRING. ARGV: customer, time ms, received
/// ms, remember ms (> 0).
/// Returns `{'duplicate', first received ms}` or `{'recorded', previous or nil, current}`.
const RECORD_INBOUND_ONCE: &str = concat!(
    record_lua!(),
    record_inbound_lua!(),
    r"
local first = redis.call('GET', KEYS[3])
if first then return {'duplicate', first} end
local previous, current = record_inbound(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
return {'recorded', previous, current}
"
);

/// Records a gateway closure, keeping the latest (`WindowRecord::with_gateway_closure`),
/// on a known conversation. The last inbound time, hence the index, does not change.
///
/// KEYS: window HASH. ARGV: customer, time ms.
/// Returns nil when the conversation has no record, else the record now stored (left
/// as it is when its last inbound time is unreadable: the caller reports it corrupt).
const RECORD_CLOSURE: &str = concat!(
    record_lua!(),
    r"
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then return false end
local last, closed = split(record)
if not ms(last) then return record end
local closed_ms = ms(closed)
if closed_ms and closed_ms >= tonumber(ARGV[2]) then return record end
local current = last .. ':' .. ARGV[2]
redis.call('HSET', KEYS[1], ARGV[1], current)
return current
"
);

/// One business's conversations whose index score is in `min <= score <= max` (Redis
/// range syntax, so `(` makes a bound exclusive), with their records, as one snapshot.
/// The records are fetched with `HMGET`, in batches that stay within Lua's `unpack`
/// limit.
///
/// KEYS: inbound ZSET, window HASH. ARGV: min, max.
/// Returns a flat list of `customer, record or nil`.
const INBOUND_BETWEEN: &str = r"
local found = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2])
local out = {}
for i = 1, #found, 1000 do
  local last = math.min(i + 999, #found)
  local records = redis.call('HMGET', KEYS[2], unpack(found, i, last))
  for j = 1, #records do
    out[#out + 1] = found[i + j - 1]
    out[#out + 1] = records[j]
  end
end
return out
";

/// Erases one conversation: window record and index entry, outbox, invitation, outcomes
/// and their indexes.
///
/// KEYS: window HASH, inbound ZSET, outbox LIST, outbox messages HASH, outboxes SET,
/// invitations HASH, outcomes HASH, outcome WhatsApp ids HASH, outcome expiry ZSET,
/// outcome ids HASH, outcome ids expiry ZSET. ARGV: customer. Returns how many things
/// were removed.
const FORGET: &str = r"
for _, id in ipairs(redis.call('HKEYS', KEYS[7])) do
  if redis.call('HGET', KEYS[10], id) == ARGV[1] then
    redis.call('HDEL', KEYS[10], id)
    redis.call('ZREM', KEYS[11], id)
  end
  local wa = redis.call('HGET', KEYS[8], 'i:' .. id)
  if wa and redis.call('HGET', KEYS[10], 'w:' .. wa) == ARGV[1] .. '/' .. id then
    redis.call('HDEL', KEYS[10], 'w:' .. wa)
    redis.call('ZREM', KEYS[11], 'w:' .. wa)
  end
end
local n = redis.call('HDEL', KEYS[1], ARGV[1])
n = n + redis.call('ZREM', KEYS[2], ARGV[1])
n = n + redis.call('DEL', KEYS[3], KEYS[4], KEYS[7])
redis.call('DEL', KEYS[8], KEYS[9])
n = n + redis.call('SREM', KEYS[5], ARGV[1])
n = n + redis.call('HDEL', KEYS[6], ARGV[1])
return n
";

/// Lua shared by the outbox scripts.
///
/// `enqueue(list, messages, outboxes, customer, id, message, limit)` appends a message
/// unless its id is queued (0) or the outbox is full (-1); 1 if added.
/// `dequeue(list, messages, outboxes, customer, id)` removes one queued message and drops
/// the conversation from the business's outboxes when its queue is empty; how many
/// entries it removed.
macro_rules! outbox_lua {
    () => {
        r"
local function enqueue(list, messages, outboxes, customer, id, message, limit)
  if redis.call('HEXISTS', messages, id) == 1 then return 0 end
  if redis.call('LLEN', list) >= tonumber(limit) then return -1 end
  redis.call('RPUSH', list, id)
  redis.call('HSET', messages, id, message)
  redis.call('SADD', outboxes, customer)
  return 1
end
local function dequeue(list, messages, outboxes, customer, id)
  local n = redis.call('HDEL', messages, id) + redis.call('LREM', list, 0, id)
  if redis.call('LLEN', list) == 0 then
    redis.call('DEL', messages)
    redis.call('SREM', outboxes, customer)
  end
  return n
end
"
    };
}

/// Lua shared by the outcome scripts. Expiry is by the server's clock (`TIME`), so every
/// replica agrees on it.
///
/// The keys of one conversation's outcomes are `outcomes` (HASH id → text), `wa_ids`
/// (HASH `w:<wa id>` → id and `i:<id>` → wa id) and `expiry` (ZSET id, score = expiry
/// ms). An outcome without a score was written before outcomes expired.
///
/// The business's index of outcomes by our message id is `ids` (HASH id → customer, the
/// last written) and `ids_expiry` (ZSET id, score = expiry ms of that last write). The
/// same two keys index outcomes by WhatsApp id across the business's conversations: field
/// `w:<wa id>` → `<customer>/<id>` (the last written), member `w:<wa id>` of
/// `ids_expiry`, so expired entries leave with the rest (a message id never starts with
/// `w:`). An entry is only believed once the conversation's own index confirms it.
///
/// `put_outcome(outcomes, wa_ids, expiry, id, text, wa, keep, legacy_keep, ids,
/// ids_expiry, customer)` stores an outcome (`wa` empty: none to index) kept for `keep`
/// ms and points `ids` at `customer` for it, after removing up to 16 expired outcomes of
/// the conversation and up to 16 expired entries of `ids`; the first write to a hash
/// written before outcomes expired gives its outcomes `legacy_keep` ms (and indexes
/// them). Each key expires with its newest entry, so a conversation (or business) that
/// stops sending leaves nothing behind. `unlink_id(ids, ids_expiry, id, customer)`
/// removes the `ids` entry of `id` when it points at `customer`. `live(expiry, id,
/// now)`: whether an outcome has not expired.
macro_rules! outcome_lua {
    () => {
        r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function live(expiry, id, now)
  local score = redis.call('ZSCORE', expiry, id)
  return (not score) or tonumber(score) > now
end
local function drop_wa(wa_ids, id)
  local wa = redis.call('HGET', wa_ids, 'i:' .. id)
  if wa then
    if redis.call('HGET', wa_ids, 'w:' .. wa) == id then redis.call('HDEL', wa_ids, 'w:' .. wa) end
    redis.call('HDEL', wa_ids, 'i:' .. id)
  end
end
local function unlink_id(ids, ids_expiry, id, customer)
  if redis.call('HGET', ids, id) == customer then
    redis.call('HDEL', ids, id)
    redis.call('ZREM', ids_expiry, id)
  end
end
local function put_outcome(outcomes, wa_ids, expiry, id, text, wa, keep, legacy_keep, ids, ids_expiry, customer)
  local now = now_ms()
  local longest = tonumber(keep)
  for _, old in ipairs(redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, 16)) do
    drop_wa(wa_ids, old)
    unlink_id(ids, ids_expiry, old, customer)
    redis.call('HDEL', outcomes, old)
    redis.call('ZREM', expiry, old)
  end
  for _, old in ipairs(redis.call('ZRANGEBYSCORE', ids_expiry, '-inf', now, 'LIMIT', 0, 16)) do
    redis.call('HDEL', ids, old)
    redis.call('ZREM', ids_expiry, old)
  end
  if redis.call('PTTL', outcomes) == -1 then
    for _, field in ipairs(redis.call('HKEYS', outcomes)) do
      if not redis.call('ZSCORE', expiry, field) then
        redis.call('ZADD', expiry, now + tonumber(legacy_keep), field)
        if redis.call('HSETNX', ids, field, customer) == 1 then
          redis.call('ZADD', ids_expiry, now + tonumber(legacy_keep), field)
        end
        longest = math.max(longest, tonumber(legacy_keep))
      end
    end
  end
  drop_wa(wa_ids, id)
  redis.call('HSET', outcomes, id, text)
  if wa ~= '' then redis.call('HSET', wa_ids, 'w:' .. wa, id, 'i:' .. id, wa) end
  redis.call('ZADD', expiry, now + tonumber(keep), id)
  redis.call('HSET', ids, id, customer)
  redis.call('ZADD', ids_expiry, now + tonumber(keep), id)
  if wa ~= '' then
    redis.call('HSET', ids, 'w:' .. wa, customer .. '/' .. id)
    redis.call('ZADD', ids_expiry, now + tonumber(keep), 'w:' .. wa)
  end
  for _, key in ipairs({outcomes, wa_ids, expiry, ids, ids_expiry}) do
    local ttl = redis.call('PTTL', key)
    if ttl ~= -2 and ttl < longest then redis.call('PEXPIRE', key, longest) end
  end
end
"
    };
}

/// Appends a message unless its id is queued (0) or the outbox is full (-1); 1 if added.
///
/// KEYS: outbox LIST, outbox messages HASH, outboxes SET. ARGV: customer, message id,
/// encoded message, limit.
const ENQUEUE: &str = concat!(
    outbox_lua!(),
    "return enqueue(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4])"
);

/// [`ENQUEUE`] and storing the send's outcome, as one script: a full outbox (-1) stores
/// neither; otherwise the outcome is stored and the answer is `ENQUEUE`'s.
///
/// KEYS: outbox LIST, outbox messages HASH, outboxes SET, outcomes HASH, outcome
/// WhatsApp ids HASH, outcome expiry ZSET, outcome ids HASH, outcome ids expiry ZSET.
/// ARGV: customer, message id, encoded message, limit, outcome id, outcome text, wa id
/// or empty, keep ms, legacy keep ms, customer.
const ENQUEUE_WITH_OUTCOME: &str = concat!(
    outbox_lua!(),
    outcome_lua!(),
    r"
local added = enqueue(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
if added < 0 then return added end
put_outcome(KEYS[4], KEYS[5], KEYS[6], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], KEYS[7], KEYS[8], ARGV[10])
return added
"
);

/// Stores a send's outcome.
///
/// KEYS: outcomes HASH, outcome WhatsApp ids HASH, outcome expiry ZSET, outcome ids
/// HASH, outcome ids expiry ZSET. ARGV: outcome id, outcome text, wa id or empty, keep
/// ms, legacy keep ms, customer.
const PUT_OUTCOME: &str = concat!(
    outcome_lua!(),
    r"
put_outcome(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], KEYS[4], KEYS[5], ARGV[6])
return 1
"
);

/// The outcome stored under an id, unless expired.
///
/// KEYS: outcomes HASH, outcome expiry ZSET. ARGV: outcome id. Returns the text or nil.
const OUTCOME: &str = concat!(
    outcome_lua!(),
    r"
local text = redis.call('HGET', KEYS[1], ARGV[1])
if not text or not live(KEYS[2], ARGV[1], now_ms()) then return false end
return text
"
);

/// The outcome indexed under a WhatsApp id, unless expired or since replaced by one
/// without that id.
///
/// KEYS: outcomes HASH, outcome WhatsApp ids HASH, outcome expiry ZSET. ARGV: wa id.
/// Returns `{id, text}` or nil.
const OUTCOME_BY_WA_ID: &str = concat!(
    outcome_lua!(),
    r"
local id = redis.call('HGET', KEYS[2], 'w:' .. ARGV[1])
if not id or redis.call('HGET', KEYS[2], 'i:' .. id) ~= ARGV[1] then return false end
local text = redis.call('HGET', KEYS[1], id)
if not text or not live(KEYS[3], id, now_ms()) then return false end
return {id, text}
"
);

/// Every outcome of a conversation that has not expired.
///
/// KEYS: outcomes HASH, outcome expiry ZSET. Returns a flat list of `id, text`.
const OUTCOMES: &str = concat!(
    outcome_lua!(),
    r"
local now = now_ms()
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  if live(KEYS[2], all[i], now) then
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  end
end
return out
"
);

/// One conversation's queue in order.
///
/// KEYS: outbox LIST, outbox messages HASH. Returns a flat list of `id, message or nil`.
const QUEUED: &str = r"
local ids = redis.call('LRANGE', KEYS[1], 0, -1)
local out = {}
for _, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[2], id)
end
return out
";

/// Removes one queued message; drops the conversation from the business's outboxes
/// when its queue is empty. Returns whether anything was removed.
///
/// KEYS: outbox LIST, outbox messages HASH, outboxes SET. ARGV: customer, message id.
const DEQUEUE: &str = concat!(
    outbox_lua!(),
    "return dequeue(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])"
);

/// [`DEQUEUE`] and storing the send's outcome, as one script; the outcome is stored
/// whether or not the message was queued. Returns `DEQUEUE`'s answer.
///
/// KEYS: as [`ENQUEUE_WITH_OUTCOME`]. ARGV: customer, message id, outcome id, outcome
/// text, wa id or empty, keep ms, legacy keep ms, customer.
const DEQUEUE_WITH_OUTCOME: &str = concat!(
    outbox_lua!(),
    outcome_lua!(),
    r"
local removed = dequeue(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
put_outcome(KEYS[4], KEYS[5], KEYS[6], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], KEYS[7], KEYS[8], ARGV[8])
return removed
"
);

/// Gives a queued message a new id in place. Returns 1 if done, 0 if the old id is not
/// queued, -1 if the new id is already queued.
///
/// KEYS: outbox LIST, outbox messages HASH. ARGV: old id, new id.
const REASSIGN: &str = r"
local message = redis.call('HGET', KEYS[2], ARGV[1])
if not message then return 0 end
if ARGV[1] == ARGV[2] then return 1 end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return -1 end
local position = redis.call('LPOS', KEYS[1], ARGV[1])
if position then
  redis.call('LSET', KEYS[1], position, ARGV[2])
else
  redis.call('RPUSH', KEYS[1], ARGV[2])
end
redis.call('HSET', KEYS[2], ARGV[2], message)
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
";

/// Allocates a handle for an id unless it has one: the next number of the counter, in
/// both directions of the registry. Returns the handle's number, or -1 when the next one
/// would reach the limit (nothing is allocated then).
///
/// KEYS: forward HASH (id → number), reverse HASH (number → id), counter STRING.
/// ARGV: id, limit.
const ALLOCATE: &str = r"
local found = redis.call('HGET', KEYS[1], ARGV[1])
if found then return tonumber(found) end
local next = redis.call('INCR', KEYS[3])
if next >= tonumber(ARGV[2]) then
  redis.call('DECR', KEYS[3])
  return -1
end
local number = string.format('%d', next)
redis.call('HSET', KEYS[1], ARGV[1], number)
redis.call('HSET', KEYS[2], number, ARGV[1])
return next
";

/// Records an alias and answers the phone it replaced (false when none).
///
/// KEYS: aliases HASH. ARGV: user id, phone digits.
const RECORD_ALIAS: &str = r"
local previous = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return previous
";

/// Moves everything stored for one customer of a business to another, in one step: the
/// window record merged (`WindowRecord::merged_with`: the later inbound time, the later
/// closure while still in force) with its index entry, the outbox appended in order
/// without a message id the target holds, the later invitation, and the outcomes (the
/// target's own wins). An unreadable source window stops it before anything is written
/// (an error reply); an unreadable target window is replaced.
///
/// The outcomes move with their expiry and WhatsApp id index entries, and each target
/// key expires no sooner than its source did (one written before outcomes expired, with
/// no expiry, keeps none).
///
/// KEYS: window HASH, inbound ZSET, outboxes SET, invitations HASH, source outbox LIST,
/// source outbox messages HASH, target outbox LIST, target outbox messages HASH, then
/// source and target of each of: outcomes HASH, outcome WhatsApp ids HASH, outcome
/// expiry ZSET; then the outcome ids HASH (entries pointing at the source are pointed
/// at the target); then the consent HASH and the free entry point HASH (the records
/// merged as `MarketingConsent::merged_with` and `FreeEntryPoint::merged_with` do; an
/// unreadable one of either customer stops the move before anything is written).
/// ARGV: source customer, target customer.
/// Returns `{window moved 0|1, messages moved, invitation moved 0|1, outcomes moved,
/// consent moved 0|1, free entry point moved 0|1}`.
const MOVE_CUSTOMER: &str = concat!(
    record_lua!(),
    r"
local from, to = ARGV[1], ARGV[2]
local moved = {0, 0, 0, 0, 0, 0}
if from == to then return moved end
-- The consent and free entry point records are read (and checked) before anything is
-- written: an unreadable one stops the move.
local function parts(key, customer, pattern, what)
  local v = redis.call('HGET', key, customer)
  if not v then return nil end
  local found = {string.match(v, pattern)}
  if #found == 0 then
    return nil, 'the ' .. what .. ' of customer ' .. customer .. ' is unreadable: ' .. v
  end
  return found
end
-- Compares two times as stored (milliseconds, '' for none, which is the earliest).
local function compare(a, b)
  if a == b then return 0 end
  if a == '' then return -1 end
  if b == '' then return 1 end
  if tonumber(a) < tonumber(b) then return -1 end
  if tonumber(a) > tonumber(b) then return 1 end
  return 0
end
local function later(a, b)
  if compare(a, b) >= 0 then return a end
  return b
end
local consent_pattern = '^([01]):(%-?%d*):(%-?%d*)$'
local entry_pattern = '^(%-?%d*):(%-?%d*):(%-?%d*):([01])$'
local s_consent, bad = parts(KEYS[16], from, consent_pattern, 'marketing consent')
if bad then return redis.error_reply(bad) end
local t_consent, bad = parts(KEYS[16], to, consent_pattern, 'marketing consent')
if bad then return redis.error_reply(bad) end
local s_entry, bad = parts(KEYS[17], from, entry_pattern, 'free entry point')
if bad then return redis.error_reply(bad) end
local t_entry, bad = parts(KEYS[17], to, entry_pattern, 'free entry point')
if bad then return redis.error_reply(bad) end
local source = redis.call('HGET', KEYS[1], from)
if source then
  local s_last, s_closed = split(source)
  local s_ms = ms(s_last)
  if not s_ms then
    return redis.error_reply('the window of customer ' .. from .. ' is unreadable: ' .. source)
  end
  local last, closed = s_last, nil
  if ms(s_closed) then closed = s_closed end
  local target = redis.call('HGET', KEYS[1], to)
  if target then
    local t_last, t_closed = split(target)
    local t_ms = ms(t_last)
    if t_ms then
      if t_ms > s_ms then last = t_last end
      local t_c = ms(t_closed)
      if t_c and (not closed or t_c > tonumber(closed)) then closed = t_closed end
    end
  end
  if closed and tonumber(closed) < tonumber(last) then closed = nil end
  local merged = last
  if closed then merged = last .. ':' .. closed end
  redis.call('HSET', KEYS[1], to, merged)
  redis.call('ZADD', KEYS[2], last, to)
  redis.call('HDEL', KEYS[1], from)
  redis.call('ZREM', KEYS[2], from)
  moved[1] = 1
end
local ids = redis.call('LRANGE', KEYS[5], 0, -1)
local pushed = {}
for _, id in ipairs(ids) do
  if not pushed[id] and redis.call('HEXISTS', KEYS[8], id) == 0 then
    pushed[id] = true
    redis.call('RPUSH', KEYS[7], id)
    local message = redis.call('HGET', KEYS[6], id)
    if message then redis.call('HSET', KEYS[8], id, message) end
    moved[2] = moved[2] + 1
  end
end
redis.call('DEL', KEYS[5], KEYS[6])
redis.call('SREM', KEYS[3], from)
if redis.call('LLEN', KEYS[7]) > 0 then redis.call('SADD', KEYS[3], to) end
local invitation = redis.call('HGET', KEYS[4], from)
if invitation then
  local existing = redis.call('HGET', KEYS[4], to)
  local keep = true
  if existing then
    local sent = ms(string.match(invitation, ':([^:]*)$'))
    local other = ms(string.match(existing, ':([^:]*)$'))
    keep = sent ~= nil and (other == nil or sent > other)
  end
  if keep then
    redis.call('HSET', KEYS[4], to, invitation)
    moved[3] = 1
  end
  redis.call('HDEL', KEYS[4], from)
end
local existed = {}
for i = 10, 14, 2 do existed[i] = redis.call('EXISTS', KEYS[i]) == 1 end
local outcomes = redis.call('HGETALL', KEYS[9])
for i = 1, #outcomes, 2 do
  local id = outcomes[i]
  if redis.call('HGET', KEYS[15], id) == from then redis.call('HSET', KEYS[15], id, to) end
  local moved_wa = redis.call('HGET', KEYS[11], 'i:' .. id)
  if moved_wa and redis.call('HGET', KEYS[15], 'w:' .. moved_wa) == from .. '/' .. id then
    redis.call('HSET', KEYS[15], 'w:' .. moved_wa, to .. '/' .. id)
  end
  if redis.call('HSETNX', KEYS[10], id, outcomes[i + 1]) == 1 then
    moved[4] = moved[4] + 1
    local expires = redis.call('ZSCORE', KEYS[13], id)
    if expires then redis.call('ZADD', KEYS[14], expires, id) end
    local wa = redis.call('HGET', KEYS[11], 'i:' .. id)
    if wa and redis.call('HGET', KEYS[11], 'w:' .. wa) == id then
      redis.call('HSET', KEYS[12], 'w:' .. wa, id, 'i:' .. id, wa)
    end
  end
end
for i = 10, 14, 2 do
  local ttl = redis.call('PTTL', KEYS[i - 1])
  local own = redis.call('PTTL', KEYS[i])
  if ttl > 0 and own ~= -2 and ((not existed[i] and own == -1) or (own > 0 and own < ttl)) then
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
redis.call('DEL', KEYS[9], KEYS[11], KEYS[13])
-- Consent: opted out when either is, the later change time, the later back-off.
if s_consent then
  local merged = s_consent
  if t_consent then
    local flag = '0'
    if s_consent[1] == '1' or t_consent[1] == '1' then flag = '1' end
    merged = {flag, later(s_consent[2], t_consent[2]), later(s_consent[3], t_consent[3])}
  end
  redis.call('HSET', KEYS[16], to, merged[1] .. ':' .. merged[2] .. ':' .. merged[3])
  redis.call('HDEL', KEYS[16], from)
  moved[5] = 1
end
-- Free entry point: the record whose window ends later, then the later referral; on a
-- tie the target's.
if s_entry then
  local keep = s_entry
  if t_entry then
    local by_end = compare(s_entry[3], t_entry[3])
    if by_end < 0 or (by_end == 0 and compare(s_entry[1], t_entry[1]) <= 0) then
      keep = t_entry
    end
  end
  redis.call('HSET', KEYS[17], to, table.concat(keep, ':'))
  redis.call('HDEL', KEYS[17], from)
  moved[6] = 1
end
return moved
"
);

/// Claims a message for a lease on the server's clock: refused (0) while the claim key
/// exists (it expires after its lease, `PX`, in server time, so neither a caller's clock
/// nor the stamp in the value decides); else taken (1), the key holding
/// `<lease end ms by the server's TIME>:<holder>`. A lease of 0 takes nothing.
///
/// `TIME` makes the script non-deterministic; Redis replicates and logs its effects
/// (the `SET`), not the script, which is the only mode from Redis 7 and the default
/// from 5 (the store needs 6.2), so a replica or an AOF replay keeps the same value.
///
/// KEYS: claim key. ARGV: lease ms (a whole number), holder.
const CLAIM: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local lease = tonumber(ARGV[1])
if lease and lease > 0 then
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  redis.call('SET', KEYS[1], string.format('%d', now + lease) .. ':' .. ARGV[2], 'PX', ARGV[1])
end
return 1
";

/// Releases a claim only for its holder: a claim taken by another caller after this
/// one's lease ran out stays. Returns 1 when it deleted the claim.
///
/// KEYS: claim key. ARGV: holder.
const RELEASE: &str = r"
local held = redis.call('GET', KEYS[1])
if not held then return 0 end
local suffix = ':' .. ARGV[1]
if string.sub(held, -string.len(suffix)) == suffix then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// The compiled scripts (each knows its SHA1; Redis caches them by it).
pub(crate) struct Scripts {
    pub(crate) record_inbound: Script,
    pub(crate) record_inbound_once: Script,
    pub(crate) record_closure: Script,
    pub(crate) inbound_between: Script,
    pub(crate) forget: Script,
    pub(crate) enqueue: Script,
    pub(crate) enqueue_with_outcome: Script,
    pub(crate) queued: Script,
    pub(crate) dequeue: Script,
    pub(crate) dequeue_with_outcome: Script,
    pub(crate) put_outcome: Script,
    pub(crate) outcome: Script,
    pub(crate) outcome_by_wa_id: Script,
    pub(crate) outcomes: Script,
    pub(crate) reassign: Script,
    pub(crate) claim: Script,
    pub(crate) release: Script,
    pub(crate) allocate: Script,
    pub(crate) record_alias: Script,
    pub(crate) move_customer: Script,
}

/// The scripts, hashed once per process.
pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    record_inbound: Script::new(RECORD_INBOUND),
    record_inbound_once: Script::new(RECORD_INBOUND_ONCE),
    record_closure: Script::new(RECORD_CLOSURE),
    inbound_between: Script::new(INBOUND_BETWEEN),
    forget: Script::new(FORGET),
    enqueue: Script::new(ENQUEUE),
    enqueue_with_outcome: Script::new(ENQUEUE_WITH_OUTCOME),
    queued: Script::new(QUEUED),
    dequeue: Script::new(DEQUEUE),
    dequeue_with_outcome: Script::new(DEQUEUE_WITH_OUTCOME),
    put_outcome: Script::new(PUT_OUTCOME),
    outcome: Script::new(OUTCOME),
    outcome_by_wa_id: Script::new(OUTCOME_BY_WA_ID),
    outcomes: Script::new(OUTCOMES),
    reassign: Script::new(REASSIGN),
    claim: Script::new(CLAIM),
    release: Script::new(RELEASE),
    allocate: Script::new(ALLOCATE),
    record_alias: Script::new(RECORD_ALIAS),
    move_customer: Script::new(MOVE_CUSTOMER),
});
