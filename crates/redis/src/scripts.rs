//! The Lua scripts: every change that touches several keys, or reads then writes, runs
//! as one script, which Redis executes atomically (no other command runs in between).
//!
//! Each script touches the keys of one business number only (one hash tag, so one
//! Cluster slot), or a single claim key. Times are epoch milliseconds, which Lua's
//! doubles and Redis's sorted-set scores hold exactly.

use std::sync::LazyLock;

use redis::Script;

/// Keep-max of the inbound time, dropping a gateway closure the new time overrides.
///
/// KEYS: inbound ZSET, closed HASH. ARGV: customer, time ms.
/// Returns `{previous score or nil, previous closure or nil, current score}`.
const RECORD_INBOUND: &str = r"
local previous = redis.call('ZSCORE', KEYS[1], ARGV[1])
local closed = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
local current = redis.call('ZSCORE', KEYS[1], ARGV[1])
if closed then
  local at = tonumber(closed)
  if at == nil or at < tonumber(current) then
    redis.call('HDEL', KEYS[2], ARGV[1])
  end
end
return {previous, closed, current}
";

/// Records a gateway closure (keeping the latest) on a known conversation.
///
/// KEYS: inbound ZSET, closed HASH. ARGV: customer, time ms.
/// Returns nil when the conversation has no record, else `{score, closure}`.
const RECORD_CLOSURE: &str = r"
local last = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not last then return false end
local closed = redis.call('HGET', KEYS[2], ARGV[1])
local keep = false
if closed then
  local at = tonumber(closed)
  keep = at ~= nil and at >= tonumber(ARGV[2])
end
if not keep then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  closed = ARGV[2]
end
return {last, closed}
";

/// One business's conversations with `min <= score <= max` (Redis range syntax, so
/// `(` makes a bound exclusive), with their closures.
///
/// KEYS: inbound ZSET, closed HASH. ARGV: min, max.
/// Returns a flat list of `customer, score, closure or nil`.
const INBOUND_BETWEEN: &str = r"
local found = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2], 'WITHSCORES')
local out = {}
for i = 1, #found, 2 do
  out[#out + 1] = found[i]
  out[#out + 1] = found[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], found[i])
end
return out
";

/// Erases one conversation: window, closure, outbox, invitation, outcomes.
///
/// KEYS: inbound, closed, outbox LIST, outbox messages HASH, outboxes SET, invitations
/// HASH, outcomes HASH. ARGV: customer. Returns how many things were removed.
const FORGET: &str = r"
local n = redis.call('ZREM', KEYS[1], ARGV[1])
n = n + redis.call('HDEL', KEYS[2], ARGV[1])
n = n + redis.call('DEL', KEYS[3], KEYS[4], KEYS[7])
n = n + redis.call('SREM', KEYS[5], ARGV[1])
n = n + redis.call('HDEL', KEYS[6], ARGV[1])
return n
";

/// Appends a message unless its id is queued (0) or the outbox is full (-1); 1 if added.
///
/// KEYS: outbox LIST, outbox messages HASH, outboxes SET. ARGV: customer, message id,
/// encoded message, limit.
const ENQUEUE: &str = r"
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return 0 end
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[4]) then return -1 end
redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
";

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
const DEQUEUE: &str = r"
local n = redis.call('HDEL', KEYS[2], ARGV[2]) + redis.call('LREM', KEYS[1], 0, ARGV[2])
if redis.call('LLEN', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
  redis.call('SREM', KEYS[3], ARGV[1])
end
return n
";

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

/// Claims a message until a lease ends: refused (0) while a claim whose end (by the
/// claimers' clock) is after `now` exists; else taken (1), the key expiring after the
/// lease in server time too, so a dead claimer's claim always ends.
///
/// KEYS: claim key. ARGV: now ms, lease end ms, lease ms.
const CLAIM: &str = r"
local held = redis.call('GET', KEYS[1])
if held then
  local until_ms = tonumber(held)
  if until_ms ~= nil and until_ms > tonumber(ARGV[1]) then return 0 end
end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('DEL', KEYS[1])
end
return 1
";

/// One business's windows, atomically: ZSET with scores and the closures.
///
/// KEYS: inbound ZSET, closed HASH. Returns `{customer, score, ...}, {customer, closure, ...}`.
const WINDOWS: &str = r"
return {redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES'), redis.call('HGETALL', KEYS[2])}
";

/// The compiled scripts (each knows its SHA1; Redis caches them by it).
pub(crate) struct Scripts {
    pub(crate) record_inbound: Script,
    pub(crate) record_closure: Script,
    pub(crate) inbound_between: Script,
    pub(crate) forget: Script,
    pub(crate) enqueue: Script,
    pub(crate) queued: Script,
    pub(crate) dequeue: Script,
    pub(crate) reassign: Script,
    pub(crate) claim: Script,
    pub(crate) windows: Script,
}

/// The scripts, hashed once per process.
pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    record_inbound: Script::new(RECORD_INBOUND),
    record_closure: Script::new(RECORD_CLOSURE),
    inbound_between: Script::new(INBOUND_BETWEEN),
    forget: Script::new(FORGET),
    enqueue: Script::new(ENQUEUE),
    queued: Script::new(QUEUED),
    dequeue: Script::new(DEQUEUE),
    reassign: Script::new(REASSIGN),
    claim: Script::new(CLAIM),
    windows: Script::new(WINDOWS),
});
