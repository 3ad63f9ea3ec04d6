//! The key layout: where each fact lives in Redis.
//!
//! Every key of one business number carries the hash tag `{<business>}`, so a Redis
//! Cluster keeps that business's keys in one slot and each Lua script touches one slot
//! only; the registry of user and group handles carries `{identity}`. A customer is
//! written as its key ([`lipachat_session::Customer::key`]): a phone's canonical digits, or a handle's
//! number above every phone. See `docs/redis.md` for the whole layout.

use lipachat_session::MessageId;
use lipachat_session::{Conversation, Customer, InboundDigest, PhoneNumber};

/// The names of the store's keys under one prefix.
///
/// ```
/// use lipachat_redis::KeyLayout;
/// use lipachat_session::Conversation;
///
/// let keys = KeyLayout::new("lipachat");
/// let chat = Conversation::parse("254110090747", "254712345678")?;
/// assert_eq!(keys.window(chat.business), "lipachat:{254110090747}:window");
/// assert_eq!(keys.inbound(chat.business), "lipachat:{254110090747}:inbound");
/// assert_eq!(keys.outbox(chat), "lipachat:{254110090747}:outbox:254712345678");
/// assert_eq!(keys.businesses(), "lipachat:businesses");
/// # Ok::<(), lipachat_session::PhoneError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    prefix: String,
}

impl KeyLayout {
    /// The layout under `prefix` (validated by [`crate::RedisConfig`]).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// SET of every business number with data: the registry for queries across them.
    pub fn businesses(&self) -> String {
        format!("{}:businesses", self.prefix)
    }

    /// STRING: the layout's schema version.
    pub fn schema(&self) -> String {
        format!("{}:schema", self.prefix)
    }

    /// STRING: the health check's last write (epoch ms, this host's clock), expiring
    /// after a minute; read by nothing.
    pub fn health(&self) -> String {
        format!("{}:health", self.prefix)
    }

    fn business_key(&self, business: PhoneNumber, what: &str) -> String {
        format!("{}:{{{business}}}:{what}", self.prefix)
    }

    /// HASH: customer → the whole window record, `<last inbound ms>` or
    /// `<last inbound ms>:<gateway closure ms>`. A window check is one `HGET` on it.
    pub fn window(&self, business: PhoneNumber) -> String {
        self.business_key(business, "window")
    }

    /// ZSET: member customer, score the last inbound time in epoch milliseconds. The
    /// closing-soon index (and the count); the records themselves are in [`Self::window`].
    pub fn inbound(&self, business: PhoneNumber) -> String {
        self.business_key(business, "inbound")
    }

    /// STRING: an inbound message id already recorded for this business (the redelivery
    /// memory), named by its digest ([`lipachat_session::InboundId::digest`], 32 hex
    /// digits, as sled keys it): the first receipt time in epoch milliseconds, expiring
    /// after the horizon.
    ///
    /// ```
    /// use lipachat_redis::KeyLayout;
    /// use lipachat_session::{InboundDigest, PhoneNumber};
    ///
    /// let keys = KeyLayout::new("lipachat");
    /// let business: PhoneNumber = "254110090747".parse()?;
    /// let digest = InboundDigest::from_bytes([0xab; 16]);
    /// assert_eq!(
    ///     keys.seen_inbound(business, digest),
    ///     "lipachat:{254110090747}:seen:abababababababababababababababab"
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seen_inbound(&self, business: PhoneNumber, digest: InboundDigest) -> String {
        format!("{}{digest}", self.seen_inbound_prefix(business))
    }

    /// The part of every [`Self::seen_inbound`] key of `business` before the digest.
    pub fn seen_inbound_prefix(&self, business: PhoneNumber) -> String {
        self.business_key(business, "seen:")
    }

    /// A `SCAN … MATCH` pattern for every [`Self::seen_inbound`] key of `business`: its
    /// prefix with glob characters escaped, then `*`.
    pub fn seen_inbound_pattern(&self, business: PhoneNumber) -> String {
        glob_escaped(&self.seen_inbound_prefix(business)) + "*"
    }

    /// The least ACL rules a Redis user needs for the store under this prefix: every key
    /// under the prefix (glob characters escaped) and no other, no channel, and only the
    /// commands the store and its scripts send.
    ///
    /// ```
    /// use lipachat_redis::KeyLayout;
    ///
    /// let rules = KeyLayout::new("support-bot").acl_rules();
    /// assert!(rules.starts_with("resetkeys ~support-bot:* resetchannels -@all +ping +info"));
    /// // As an operator would give it: ACL SETUSER bot on >PASSWORD <rules>
    /// ```
    pub fn acl_rules(&self) -> String {
        let mut rules = format!(
            "resetkeys ~{} resetchannels -@all",
            glob_escaped(&format!("{}:", self.prefix)) + "*"
        );
        for command in ACL_COMMANDS {
            rules.push_str(" +");
            rules.push_str(command);
        }
        rules
    }

    /// SET: the customers of this business with queued messages.
    pub fn outboxes(&self, business: PhoneNumber) -> String {
        self.business_key(business, "outboxes")
    }

    /// LIST: one conversation's queued message ids, oldest first.
    pub fn outbox(&self, conversation: Conversation) -> String {
        self.business_key(
            conversation.business,
            &format!("outbox:{}", conversation.customer.key()),
        )
    }

    /// HASH: one conversation's queued messages, message id → `<queued ms>:<payload>`.
    pub fn outbox_messages(&self, conversation: Conversation) -> String {
        self.business_key(
            conversation.business,
            &format!("outbox:{}:messages", conversation.customer.key()),
        )
    }

    /// HASH: customer → invitation, `<message id>:<sent ms>`.
    pub fn invitations(&self, business: PhoneNumber) -> String {
        self.business_key(business, "invitations")
    }

    /// HASH: one conversation's send outcomes, message id → outcome JSON.
    pub fn outcomes(&self, conversation: Conversation) -> String {
        self.business_key(
            conversation.business,
            &format!("outcomes:{}", conversation.customer.key()),
        )
    }

    /// HASH: one conversation's outcomes by WhatsApp id: `w:<wa id>` → message id, and
    /// back, `i:<message id>` → wa id.
    pub fn outcome_wa_ids(&self, conversation: Conversation) -> String {
        self.business_key(
            conversation.business,
            &format!("outcomes:{}:wa", conversation.customer.key()),
        )
    }

    /// ZSET: one conversation's outcomes in order of expiry: member message id, score
    /// the expiry in epoch milliseconds by the server's clock.
    pub fn outcome_expiry(&self, conversation: Conversation) -> String {
        self.business_key(
            conversation.business,
            &format!("outcomes:{}:expiry", conversation.customer.key()),
        )
    }

    /// HASH: our message id → the customer whose conversation holds a send outcome under
    /// it (the last written, when several did): how a report naming only our
    /// `messageId` finds its conversation. Written, removed and moved by the same
    /// scripts as the outcomes; an entry is only believed once the outcome it points to
    /// is read live. The same hash indexes the business's outcomes by WhatsApp id:
    /// field `w:<wa id>` → `<customer>/<message id>` (the last written), so a status
    /// naming our WhatsApp id but not the recipient's phone finds the customer the
    /// message went to; believed only once the conversation's own index confirms it.
    pub fn outcome_ids(&self, business: PhoneNumber) -> String {
        self.business_key(business, "outcome-ids")
    }

    /// ZSET: the entries of [`Self::outcome_ids`] in order of expiry (member message id
    /// or `w:<wa id>`,
    /// score the expiry of the last outcome written under it, in epoch milliseconds by
    /// the server's clock), so expired entries leave the index a few per write.
    pub fn outcome_ids_expiry(&self, business: PhoneNumber) -> String {
        self.business_key(business, "outcome-ids:expiry")
    }

    /// HASH: business-scoped user id → the phone number recorded for it with this
    /// business, in the spelling it was recorded with.
    pub fn aliases(&self, business: PhoneNumber) -> String {
        self.business_key(business, "aliases")
    }

    fn identity_key(&self, what: &str) -> String {
        format!("{}:{{identity}}:{what}", self.prefix)
    }

    /// HASH: business-scoped user id → its handle's number (the registry of users).
    pub fn users(&self) -> String {
        self.identity_key("users")
    }

    /// HASH: a user handle's number → the business-scoped user id.
    pub fn user_ids(&self) -> String {
        self.identity_key("user_ids")
    }

    /// STRING: the last user handle number allocated (`INCR`).
    pub fn last_user(&self) -> String {
        self.identity_key("last_user")
    }

    /// HASH: group id → its handle's number (the registry of groups).
    pub fn groups(&self) -> String {
        self.identity_key("groups")
    }

    /// HASH: a group handle's number → the group id.
    pub fn group_ids(&self) -> String {
        self.identity_key("group_ids")
    }

    /// STRING: the last group handle number allocated (`INCR`).
    pub fn last_group(&self) -> String {
        self.identity_key("last_group")
    }

    /// HASH: customer → marketing consent, `<0|1 opted out>:<changed ms>:<back-off ms>`
    /// ([`lipachat_session::MarketingConsent::encode`]).
    pub fn consent(&self, business: PhoneNumber) -> String {
        self.business_key(business, "consent")
    }

    /// STRING: a customer's per-user marketing back-off after a 131049, the end's epoch
    /// milliseconds ([`lipachat_session::back_off::encode_back_off`]), kept per customer
    /// across business numbers ([`lipachat_session::back_off`]). Every back-off carries
    /// the hash tag `{back-off}`, so a script carrying one customer's to another touches
    /// one slot. Expires a week after the later of its end and the server's clock.
    ///
    /// ```
    /// use lipachat_redis::KeyLayout;
    /// use lipachat_session::Customer;
    ///
    /// let keys = KeyLayout::new("lipachat");
    /// let customer = Customer::Phone("254712345678".parse()?);
    /// assert_eq!(keys.back_off(customer), "lipachat:{back-off}:254712345678");
    /// # Ok::<(), lipachat_session::PhoneError>(())
    /// ```
    pub fn back_off(&self, customer: Customer) -> String {
        format!("{}{}", self.back_off_prefix(), customer.key())
    }

    /// The part of every [`Self::back_off`] key before the customer.
    pub fn back_off_prefix(&self) -> String {
        format!("{}:{{back-off}}:", self.prefix)
    }

    /// A `SCAN … MATCH` pattern for every [`Self::back_off`] key: its prefix with glob
    /// characters escaped, then `*`.
    pub fn back_off_pattern(&self) -> String {
        glob_escaped(&self.back_off_prefix()) + "*"
    }

    /// HASH: customer → free entry point window,
    /// `<referral ms>:<opened ms>:<until ms>:<0|1 confirmed>`
    /// ([`lipachat_session::FreeEntryPoint::encode`]).
    pub fn free_entry_point(&self, business: PhoneNumber) -> String {
        self.business_key(business, "free_entry_point")
    }

    /// HASH: message id → predicted cost JSON.
    pub fn predicted_costs(&self, business: PhoneNumber) -> String {
        self.business_key(business, "predicted_costs")
    }

    /// HASH: message id → reported pricing JSON.
    pub fn reported_pricing(&self, business: PhoneNumber) -> String {
        self.business_key(business, "reported_pricing")
    }

    /// ZSET: customer → when the portfolio last reached it outside a customer service
    /// window (epoch ms); the messaging limit's count. Hash-tagged by the portfolio, whose
    /// numbers share it.
    pub fn reached(&self, portfolio: &str) -> String {
        format!("{}:{{portfolio:{portfolio}}}:reached", self.prefix)
    }

    /// STRING with an expiry (the count's span, set with each count written): the kind of
    /// clock the portfolio's count is kept on, `1` the server's (counts read from a real
    /// clock), `0` given times (a simulated clock); a count on the other kind is refused
    /// while the count holds entries. Same hash tag as [`KeyLayout::reached`].
    pub fn reached_clock(&self, portfolio: &str) -> String {
        format!("{}:{{portfolio:{portfolio}}}:reached-clock", self.prefix)
    }

    /// STRING with an expiry: a delivery claim on a message, valued
    /// `<lease end>:<holder>`, the lease end in epoch milliseconds by the server's clock;
    /// the key's expiry (`PX`, server time) is what ends the claim.
    pub fn claim(&self, message_id: MessageId) -> String {
        format!("{}:claim:{message_id}", self.prefix)
    }
}

/// The commands the store sends, and those its scripts call: what [`KeyLayout::acl_rules`]
/// allows. Connection set-up (`AUTH`, `HELLO`) needs no permission; `SELECT` is for a
/// database other than 0; `ASKING` and `CLUSTER SLOTS` are for a cluster.
const ACL_COMMANDS: &[&str] = &[
    // The connection and the checks at connect.
    "ping",
    "info",
    "select",
    "asking",
    "cluster|slots",
    // The replica wait, when configured.
    "wait",
    // Scripts, loaded once per server.
    "evalsha",
    "script|load",
    // Sent directly.
    "get",
    "set",
    "mget",
    "pttl",
    "scan",
    "sadd",
    "smembers",
    "hget",
    "hgetall",
    "hset",
    "hdel",
    "zcard",
    "zcount",
    // Called by the scripts.
    "decr",
    "del",
    "exists",
    "hexists",
    "hkeys",
    "hmget",
    "hsetnx",
    "incr",
    "llen",
    "lpos",
    "lrange",
    "lrem",
    "lset",
    "pexpire",
    "rpush",
    "srem",
    "time",
    "zadd",
    "zrangebyscore",
    "zrem",
    "zremrangebyscore",
    "zscore",
];

/// `text` with the glob characters of `SCAN … MATCH` and ACL key patterns escaped.
fn glob_escaped(text: &str) -> String {
    let mut pattern = String::new();
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The part of a key Redis Cluster hashes: the first `{...}` with something inside.
    fn hash_tag(key: &str) -> &str {
        match key.find('{') {
            Some(open) => match key[open + 1..].find('}') {
                Some(len) if len > 0 => &key[open + 1..open + 1 + len],
                _ => key,
            },
            None => key,
        }
    }

    /// Glob characters of the prefix match themselves only; the digest part matches all.
    #[test]
    fn the_seen_pattern_escapes_the_prefix() {
        let keys = KeyLayout::new(r"a*b?[c]\d");
        let business: PhoneNumber = "254110090747".parse().unwrap();
        assert_eq!(
            keys.seen_inbound_pattern(business),
            r"a\*b\?\[c\]\\d:{254110090747}:seen:*"
        );
    }

    #[test]
    fn a_portfolio_count_is_one_slot_of_its_own() {
        let keys = KeyLayout::new("bot:a");
        let reached = keys.reached("east-africa.1");
        assert!(reached.starts_with("bot:a:"), "{reached}");
        assert_eq!(hash_tag(&reached), "portfolio:east-africa.1");
    }

    #[test]
    fn one_business_one_slot() {
        let keys = KeyLayout::new("bot:a");
        let chat = Conversation::parse("254110090747", "254712345678").unwrap();
        let per_business = [
            keys.window(chat.business),
            keys.inbound(chat.business),
            keys.outboxes(chat.business),
            keys.outbox(chat),
            keys.outbox_messages(chat),
            keys.invitations(chat.business),
            keys.outcomes(chat),
            keys.outcome_wa_ids(chat),
            keys.outcome_expiry(chat),
            keys.outcome_ids(chat.business),
            keys.outcome_ids_expiry(chat.business),
            keys.aliases(chat.business),
            keys.seen_inbound(
                chat.business,
                lipachat_session::InboundDigest::from_bytes([7; 16]),
            ),
            keys.consent(chat.business),
            keys.free_entry_point(chat.business),
            keys.predicted_costs(chat.business),
            keys.reported_pricing(chat.business),
        ];
        for key in &per_business {
            assert!(key.starts_with("bot:a:"), "{key}");
            assert_eq!(hash_tag(key), "254110090747", "{key}");
        }
        let mut unique = per_business.to_vec();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), per_business.len());
        // The registry is one slot of its own.
        for key in [
            keys.users(),
            keys.user_ids(),
            keys.last_user(),
            keys.groups(),
            keys.group_ids(),
            keys.last_group(),
        ] {
            assert_eq!(hash_tag(&key), "identity", "{key}");
        }
        // A user's conversation is keyed by its handle's number, above every phone.
        let user = Conversation::with_customer(
            chat.business,
            lipachat_session::Customer::User(lipachat_session::UserRef::new(3).unwrap()),
        );
        assert_eq!(
            keys.outbox(user),
            "bot:a:{254110090747}:outbox:1000000000000003"
        );
        assert_eq!(
            keys.claim(MessageId::from_uuid(uuid::Uuid::nil())),
            "bot:a:claim:00000000-0000-0000-0000-000000000000"
        );
    }
}
