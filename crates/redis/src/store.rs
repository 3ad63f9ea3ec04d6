//! [`RedisStore`]: the session traits over Redis.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::store::DEFAULT_OUTCOME_HORIZON;
use lipachat_session::window::{to_millis, truncate_to_millis};
use lipachat_session::{
    Conversation, InboundId, InboundReceipt, InboundUpdate, Invitation, OutboxStore, PhoneNumber,
    QueuedMessage, StoreError, StoredOutcome, WindowEntry, WindowRecord, WindowStore,
};
use uuid::Uuid;

use crate::codec;
use crate::config::RedisConfig;
use crate::connection::{Connection, Eval, Retry};
use crate::keys::KeyLayout;
use crate::scripts::SCRIPTS;
use crate::server::{self, ServerInfo};

/// The key layout's schema version this build writes and reads.
///
/// Version 2 keeps each window record in one hash per business (one `HGET` per check);
/// version 1 kept the last inbound time in the sorted set and the closure in a second
/// hash. This build refuses a version 1 prefix: export it with the build that wrote it
/// and import it here (see `docs/redis.md`).
pub const SCHEMA_VERSION: u32 = 2;

struct Inner {
    connection: Connection,
    config: RedisConfig,
    keys: KeyLayout,
    server: ServerInfo,
}

/// A store on a Redis server (6.2 or newer), shared by every process that connects to it
/// with the same key prefix.
///
/// Implements [`WindowStore`] and [`OutboxStore`] with the same semantics as the sled
/// store (the conformance suite checks both). Cheap to clone: clones share one
/// multiplexed connection, which reconnects by itself after a failure. Every call
/// returns within the operation timeout (4 s by default), with
/// [`StoreError::Backend`] when the server cannot be reached or does not answer.
///
/// Durability is the server's: with `appendonly yes` and `appendfsync always`, every
/// acknowledged write is on disk before the call returns.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("config", &self.inner.config)
            .field("server", &self.inner.server)
            .finish_non_exhaustive()
    }
}

/// The longest claim lease the Redis store keeps (100 years); a longer one is cut to
/// it, so the lease end stays a whole number of milliseconds that Lua and Redis's `PX`
/// hold exactly.
pub const MAX_CLAIM_LEASE: TimeDelta = TimeDelta::days(36_525);

fn corrupt(conversation: Conversation, detail: String) -> StoreError {
    StoreError::Corrupt {
        conversation,
        detail,
    }
}

impl RedisStore {
    /// Connects to the server at `url` (`redis://HOST:PORT/DB`) with the default key
    /// prefix and timeouts.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let config =
            RedisConfig::new(url).map_err(|error| StoreError::Backend(error.to_string()))?;
        Self::connect_with(config).await
    }

    /// Connects with a configuration: checks that the server is Redis 6.2 or newer and
    /// that the keys under the prefix use a schema this build understands. Warns (through
    /// `tracing`) when the server's append-only file is off.
    pub async fn connect_with(config: RedisConfig) -> Result<Self, StoreError> {
        let connection = Connection::open(&config).await?;
        let info: (String, String) = connection
            .pipeline(
                "INFO",
                Retry::Once,
                redis::pipe()
                    .cmd("INFO")
                    .arg("server")
                    .cmd("INFO")
                    .arg("persistence"),
            )
            .await?;
        let server = server::check(&format!("{}\n{}", info.0, info.1))
            .map_err(|detail| connection.backend(format!("redis at {config}: {detail}")))?;
        if !server.aof_enabled {
            tracing::warn!(
                redis = %config,
                "the Redis server's append-only file is off (appendonly no): a server crash loses acknowledged writes; set appendonly yes and appendfsync always"
            );
        }
        let keys = KeyLayout::new(config.key_prefix());
        let schema: Option<String> = connection
            .pipeline(
                "schema version",
                Retry::Once,
                redis::pipe()
                    .cmd("SET")
                    .arg(keys.schema())
                    .arg(SCHEMA_VERSION)
                    .arg("NX")
                    .ignore()
                    .cmd("GET")
                    .arg(keys.schema()),
            )
            .await
            .map(|(schema,): (Option<String>,)| schema)?;
        match schema.as_deref().map(str::parse::<u32>) {
            Some(Ok(SCHEMA_VERSION)) => {}
            Some(Ok(found)) if found < SCHEMA_VERSION => {
                return Err(connection.backend(format!(
                    "redis at {config}: key {} holds schema version {found}, an older layout this build does not read; export it with the lipachat version that wrote it, then import it here into another prefix or database, or after deleting this prefix's keys (docs/redis.md)",
                    keys.schema(),
                )));
            }
            _ => {
                return Err(connection.backend(format!(
                    "redis at {config}: key {} holds schema version {:?}, but this build understands up to {SCHEMA_VERSION}; upgrade lipachat, or use another key prefix",
                    keys.schema(),
                    schema.as_deref().unwrap_or("(nothing)")
                )));
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                connection,
                config,
                keys,
                server,
            }),
        })
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// The key layout.
    pub fn keys(&self) -> &KeyLayout {
        &self.inner.keys
    }

    /// What was learnt of the server at connect.
    pub fn server(&self) -> ServerInfo {
        self.inner.server
    }

    /// Checks that the server answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.inner
            .connection
            .query::<String>("PING", Retry::Once, &redis::cmd("PING"))
            .await
            .map(drop)
    }

    /// The business numbers in the registry, in order. Members that are not phone
    /// numbers are skipped with a warning.
    pub async fn businesses(&self) -> Result<Vec<PhoneNumber>, StoreError> {
        let members: Vec<String> = self
            .inner
            .connection
            .query(
                "list businesses",
                Retry::Once,
                redis::cmd("SMEMBERS").arg(self.inner.keys.businesses()),
            )
            .await?;
        let mut businesses: Vec<PhoneNumber> = members
            .iter()
            .filter_map(|member| {
                let phone = codec::parse_phone(member);
                if phone.is_none() {
                    tracing::warn!(
                        member,
                        "skipping a registry member that is not a phone number"
                    );
                }
                phone
            })
            .collect();
        businesses.sort();
        Ok(businesses)
    }

    fn register(&self, business: PhoneNumber) -> redis::Cmd {
        let mut command = redis::cmd("SADD");
        command
            .arg(self.inner.keys.businesses())
            .arg(business.as_u64());
        command
    }

    /// The window HASH and the inbound ZSET of one business, in that order.
    fn window_keys(&self, business: PhoneNumber) -> Vec<String> {
        vec![
            self.inner.keys.window(business),
            self.inner.keys.inbound(business),
        ]
    }

    fn outbox_keys(&self, conversation: Conversation) -> Vec<String> {
        let keys = &self.inner.keys;
        vec![
            keys.outbox(conversation),
            keys.outbox_messages(conversation),
            keys.outboxes(conversation.business),
        ]
    }

    /// Reads the enqueue script's answer: 1 added, 0 already queued, -1 full.
    fn enqueued(conversation: Conversation, limit: usize, answer: i64) -> Result<bool, StoreError> {
        match answer {
            1 => Ok(true),
            0 => Ok(false),
            _ => Err(StoreError::OutboxFull {
                conversation,
                limit,
            }),
        }
    }

    /// The outcomes HASH, the WhatsApp id HASH and the expiry ZSET of a conversation, in
    /// that order.
    fn outcome_keys(&self, conversation: Conversation) -> Vec<String> {
        let keys = &self.inner.keys;
        vec![
            keys.outcomes(conversation),
            keys.outcome_wa_ids(conversation),
            keys.outcome_expiry(conversation),
        ]
    }

    /// The script arguments of an outcome: id, text, WhatsApp id (empty: none), keep ms,
    /// and the time to keep for outcomes written before outcomes expired.
    fn outcome_args(outcome: &StoredOutcome) -> [String; 5] {
        [
            outcome.message_id.to_string(),
            outcome.text.clone(),
            outcome.indexed_wa_id().unwrap_or_default().to_owned(),
            outcome.keep_for_millis().to_string(),
            DEFAULT_OUTCOME_HORIZON.num_milliseconds().to_string(),
        ]
    }

    /// The keys and arguments of a script that changes the outbox and stores an
    /// outcome: the outbox's keys then the outcome's; `outbox_args` then the outcome's.
    fn outbox_with_outcome(
        &self,
        conversation: Conversation,
        mut outbox_args: Vec<String>,
        outcome: &StoredOutcome,
    ) -> (Vec<String>, Vec<String>) {
        let mut keys = self.outbox_keys(conversation);
        keys.extend(self.outcome_keys(conversation));
        outbox_args.extend(Self::outcome_args(outcome));
        (keys, outbox_args)
    }

    /// Reads an outcome's text.
    fn outcome_text(
        conversation: Conversation,
        id: &str,
        bytes: Vec<u8>,
    ) -> Result<String, StoreError> {
        String::from_utf8(bytes).map_err(|e| corrupt(conversation, format!("outcome of {id}: {e}")))
    }

    /// Reads an outcome's id.
    fn outcome_id(conversation: Conversation, field: &[u8]) -> Result<Uuid, StoreError> {
        let field = String::from_utf8_lossy(field);
        Uuid::parse_str(&field)
            .map_err(|e| corrupt(conversation, format!("outcome field {field:?}: {e}")))
    }

    /// Reads `customer` members of one business, skipping (with a warning) those that
    /// are not phone numbers.
    fn conversation(business: PhoneNumber, customer: &str) -> Option<Conversation> {
        let conversation = codec::parse_phone(customer).map(|c| Conversation::new(business, c));
        if conversation.is_none() {
            tracing::warn!(%business, customer, "skipping a member that is not a phone number");
        }
        conversation
    }
}

/// Reads the records a keep-max script answered. A corrupt previous value is replaced, as
/// the sled store does: a new fact is worth more than an unreadable one.
fn inbound_update(
    conversation: Conversation,
    previous: Option<&str>,
    current: &str,
) -> Result<InboundUpdate, StoreError> {
    let previous = previous.and_then(|record| {
        codec::parse_window(record)
            .inspect_err(
                |detail| tracing::warn!(%conversation, %detail, "replacing a corrupt window"),
            )
            .ok()
    });
    let current = codec::parse_window(current).map_err(|detail| corrupt(conversation, detail))?;
    Ok(InboundUpdate { previous, current })
}

impl WindowStore for RedisStore {
    async fn record_inbound(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> Result<InboundUpdate, StoreError> {
        let at = truncate_to_millis(at);
        let (previous, current): (Option<String>, String) = self
            .inner
            .connection
            .eval_one(
                "record_inbound",
                Retry::Never,
                Some(self.register(conversation.business)),
                Eval {
                    script: &SCRIPTS.record_inbound,
                    keys: self.window_keys(conversation.business),
                    args: vec![conversation.customer.to_string(), codec::time(at)],
                },
            )
            .await?;
        inbound_update(conversation, previous.as_deref(), &current)
    }

    async fn record_inbound_once(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
        id: &InboundId,
        received_at: DateTime<Utc>,
        remember_until: DateTime<Utc>,
    ) -> Result<InboundReceipt, StoreError> {
        let at = truncate_to_millis(at);
        // The horizon runs in server time from now: a key with a non-positive lifetime
        // would be refused, and an id remembered for a millisecond still counts once.
        let remember_ms = (remember_until - received_at).num_milliseconds().max(1);
        let mut keys = self.window_keys(conversation.business);
        keys.push(self.inner.keys.seen_inbound(conversation.business, id));
        let answer: Vec<Option<String>> = self
            .inner
            .connection
            .eval_one(
                "record_inbound_once",
                Retry::Never,
                Some(self.register(conversation.business)),
                Eval {
                    script: &SCRIPTS.record_inbound_once,
                    keys,
                    args: vec![
                        conversation.customer.to_string(),
                        codec::time(at),
                        codec::time(received_at),
                        remember_ms.to_string(),
                    ],
                },
            )
            .await?;
        let unexpected = || {
            self.inner.connection.backend(format!(
                "record_inbound_once for {conversation}: unexpected answer {answer:?}"
            ))
        };
        match answer.as_slice() {
            [Some(tag), Some(first)] if tag == "duplicate" => {
                let first_received_at = codec::parse_time(first, "first receipt")
                    .map_err(|detail| corrupt(conversation, detail))?;
                Ok(InboundReceipt::Duplicate { first_received_at })
            }
            [Some(tag), previous, Some(current)] if tag == "recorded" => {
                Ok(InboundReceipt::Recorded(inbound_update(
                    conversation,
                    previous.as_deref(),
                    current,
                )?))
            }
            _ => Err(unexpected()),
        }
    }

    async fn record_gateway_closure(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> Result<Option<WindowRecord>, StoreError> {
        let stored: Option<String> = self
            .inner
            .connection
            .eval_one(
                "record_gateway_closure",
                Retry::Never,
                None,
                Eval {
                    script: &SCRIPTS.record_closure,
                    keys: vec![self.inner.keys.window(conversation.business)],
                    args: vec![conversation.customer.to_string(), codec::time(at)],
                },
            )
            .await?;
        stored
            .map(|record| {
                codec::parse_window(&record).map_err(|detail| corrupt(conversation, detail))
            })
            .transpose()
    }

    async fn window(&self, conversation: Conversation) -> Result<Option<WindowRecord>, StoreError> {
        // One command on one key: the whole record is one field of the business's
        // window hash, so a check costs the server what a naive `EXISTS` gate does.
        let record: Option<String> = self
            .inner
            .connection
            .query(
                "window",
                Retry::Once,
                redis::cmd("HGET")
                    .arg(self.inner.keys.window(conversation.business))
                    .arg(conversation.customer.as_u64()),
            )
            .await?;
        record
            .map(|record| {
                codec::parse_window(&record).map_err(|detail| corrupt(conversation, detail))
            })
            .transpose()
    }

    async fn inbound_between(
        &self,
        after: DateTime<Utc>,
        up_to: DateTime<Utc>,
    ) -> Result<Vec<(Conversation, WindowRecord)>, StoreError> {
        let (after, up_to) = (to_millis(after), to_millis(up_to));
        if after >= up_to {
            return Ok(Vec::new());
        }
        let businesses = self.businesses().await?;
        let evals: Vec<Eval<'_>> = businesses
            .iter()
            .map(|business| Eval {
                script: &SCRIPTS.inbound_between,
                keys: vec![
                    self.inner.keys.inbound(*business),
                    self.inner.keys.window(*business),
                ],
                args: vec![format!("({after}"), up_to.to_string()],
            })
            .collect();
        let answers: Vec<Vec<Option<String>>> = self
            .inner
            .connection
            .eval("inbound_between", Retry::Once, None, &evals)
            .await?;
        let mut found = Vec::new();
        for (business, answer) in businesses.iter().zip(answers) {
            for entry in answer.chunks_exact(2) {
                let Some(customer) = &entry[0] else {
                    continue;
                };
                let Some(conversation) = Self::conversation(*business, customer) else {
                    continue;
                };
                let Some(record) = &entry[1] else {
                    // Only a hand-made index entry can lack its record.
                    tracing::warn!(%conversation, "skipping an index entry without a window record");
                    continue;
                };
                match codec::parse_window(record) {
                    // The scripts keep the score equal to the record's last inbound time;
                    // the record is what counts.
                    Ok(record) => {
                        let at = to_millis(record.last_inbound);
                        if after < at && at <= up_to {
                            found.push((conversation, record));
                        }
                    }
                    // Like the sled index, which holds no corrupt record.
                    Err(detail) => {
                        tracing::warn!(%conversation, %detail, "skipping a corrupt window");
                    }
                }
            }
        }
        found.sort_by_key(|(c, r)| (r.last_inbound, *c));
        Ok(found)
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let businesses = self.businesses().await?;
        if businesses.is_empty() {
            return Ok(0);
        }
        let mut pipeline = redis::pipe();
        for business in &businesses {
            pipeline.zcard(self.inner.keys.inbound(*business));
        }
        let counts: Vec<u64> = self
            .inner
            .connection
            .pipeline("count", Retry::Once, &pipeline)
            .await?;
        Ok(counts.iter().sum())
    }

    async fn windows(&self) -> Result<Vec<WindowEntry>, StoreError> {
        let businesses = self.businesses().await?;
        if businesses.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipeline = redis::pipe();
        for business in &businesses {
            pipeline.hgetall(self.inner.keys.window(*business));
        }
        let answers: Vec<HashMap<String, String>> = self
            .inner
            .connection
            .pipeline("windows", Retry::Once, &pipeline)
            .await?;
        let mut all = Vec::new();
        for (business, records) in businesses.iter().zip(answers) {
            let mut entries: Vec<WindowEntry> = records
                .iter()
                .filter_map(|(customer, record)| {
                    let conversation = Self::conversation(*business, customer)?;
                    let record =
                        codec::parse_window(record).map_err(|detail| corrupt(conversation, detail));
                    Some((conversation, record))
                })
                .collect();
            entries.sort_by_key(|(c, _)| *c);
            all.extend(entries);
        }
        Ok(all)
    }

    async fn forget(&self, conversation: Conversation) -> Result<bool, StoreError> {
        let keys = &self.inner.keys;
        let removed: i64 = self
            .inner
            .connection
            .eval_one(
                "forget",
                Retry::Never,
                None,
                Eval {
                    script: &SCRIPTS.forget,
                    keys: vec![
                        keys.window(conversation.business),
                        keys.inbound(conversation.business),
                        keys.outbox(conversation),
                        keys.outbox_messages(conversation),
                        keys.outboxes(conversation.business),
                        keys.invitations(conversation.business),
                        keys.outcomes(conversation),
                        keys.outcome_wa_ids(conversation),
                        keys.outcome_expiry(conversation),
                    ],
                    args: vec![conversation.customer.to_string()],
                },
            )
            .await?;
        Ok(removed > 0)
    }

    /// Checks that the server answers. Each write was already acknowledged by the
    /// server, which makes it durable according to its `appendfsync` setting.
    async fn flush(&self) -> Result<(), StoreError> {
        self.ping().await
    }
}

impl OutboxStore for RedisStore {
    async fn enqueue(
        &self,
        conversation: Conversation,
        message: QueuedMessage,
        limit: usize,
    ) -> Result<bool, StoreError> {
        let added: i64 = self
            .inner
            .connection
            .eval_one(
                "enqueue",
                Retry::Never,
                Some(self.register(conversation.business)),
                Eval {
                    script: &SCRIPTS.enqueue,
                    keys: self.outbox_keys(conversation),
                    args: vec![
                        conversation.customer.to_string(),
                        message.message_id.to_string(),
                        codec::queued(&message),
                        limit.to_string(),
                    ],
                },
            )
            .await?;
        Self::enqueued(conversation, limit, added)
    }

    async fn queued(&self, conversation: Conversation) -> Result<Vec<QueuedMessage>, StoreError> {
        let answer: Vec<Option<String>> = self
            .inner
            .connection
            .eval_one(
                "queued",
                Retry::Once,
                None,
                Eval {
                    script: &SCRIPTS.queued,
                    keys: self.outbox_keys(conversation)[..2].to_vec(),
                    args: Vec::new(),
                },
            )
            .await?;
        answer
            .chunks_exact(2)
            .map(|entry| {
                let id = entry[0].as_deref().unwrap_or_default();
                let value = entry[1].as_deref().ok_or_else(|| {
                    corrupt(
                        conversation,
                        format!("queued message {id} is listed but has no content"),
                    )
                })?;
                codec::parse_queued(id, value).map_err(|detail| corrupt(conversation, detail))
            })
            .collect()
    }

    async fn dequeue(
        &self,
        conversation: Conversation,
        message_id: Uuid,
    ) -> Result<bool, StoreError> {
        let removed: i64 = self
            .inner
            .connection
            .eval_one(
                "dequeue",
                Retry::Never,
                None,
                Eval {
                    script: &SCRIPTS.dequeue,
                    keys: self.outbox_keys(conversation),
                    args: vec![conversation.customer.to_string(), message_id.to_string()],
                },
            )
            .await?;
        Ok(removed > 0)
    }

    /// As the trait says; a `new` id that is already queued for the conversation is
    /// refused with [`StoreError::Backend`] (two queue entries cannot share an id).
    async fn reassign(
        &self,
        conversation: Conversation,
        old: Uuid,
        new: Uuid,
    ) -> Result<bool, StoreError> {
        let done: i64 = self
            .inner
            .connection
            .eval_one(
                "reassign",
                Retry::Never,
                None,
                Eval {
                    script: &SCRIPTS.reassign,
                    keys: self.outbox_keys(conversation)[..2].to_vec(),
                    args: vec![old.to_string(), new.to_string()],
                },
            )
            .await?;
        match done {
            1 => Ok(true),
            0 => Ok(false),
            _ => Err(StoreError::Backend(format!(
                "reassign {old} to {new} for {conversation}: {new} is already queued"
            ))),
        }
    }

    async fn conversations_with_queued(&self) -> Result<Vec<Conversation>, StoreError> {
        let businesses = self.businesses().await?;
        if businesses.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipeline = redis::pipe();
        for business in &businesses {
            pipeline.smembers(self.inner.keys.outboxes(*business));
        }
        let answers: Vec<Vec<String>> = self
            .inner
            .connection
            .pipeline("conversations_with_queued", Retry::Once, &pipeline)
            .await?;
        let mut found: Vec<Conversation> = businesses
            .iter()
            .zip(answers)
            .flat_map(|(business, customers)| {
                customers
                    .iter()
                    .filter_map(|c| Self::conversation(*business, c))
                    .collect::<Vec<_>>()
            })
            .collect();
        found.sort();
        Ok(found)
    }

    /// As the trait says, to the millisecond, on the Redis server's clock: the claim
    /// key expires after the lease (`PX`) in server time, and while it exists the claim
    /// is held, so replicas whose clocks disagree (by any amount) never hold one message
    /// at once, and the claim of a replica that died always ends. A lease under a
    /// millisecond counts as one; a lease longer than [`MAX_CLAIM_LEASE`] as that.
    async fn claim(
        &self,
        message_id: Uuid,
        holder: Uuid,
        now: DateTime<Utc>,
        lease: TimeDelta,
    ) -> Result<bool, StoreError> {
        lipachat_session::store::check_claim_time(now)?;
        let lease = lease.min(MAX_CLAIM_LEASE);
        let mut lease_ms = lease.num_milliseconds();
        if lease > TimeDelta::zero() && lease_ms == 0 {
            lease_ms = 1;
        }
        let claimed: i64 = self
            .inner
            .connection
            .eval_one(
                "claim",
                Retry::Never,
                None,
                Eval {
                    script: &SCRIPTS.claim,
                    keys: vec![self.inner.keys.claim(message_id)],
                    args: vec![lease_ms.max(0).to_string(), holder.to_string()],
                },
            )
            .await?;
        Ok(claimed == 1)
    }

    /// A compare-and-delete script: only the holder's own claim is deleted.
    async fn release(&self, message_id: Uuid, holder: Uuid) -> Result<(), StoreError> {
        self.inner
            .connection
            .eval_one::<i64>(
                "release",
                Retry::Once,
                None,
                Eval {
                    script: &SCRIPTS.release,
                    keys: vec![self.inner.keys.claim(message_id)],
                    args: vec![holder.to_string()],
                },
            )
            .await
            .map(drop)
    }

    async fn invitation(
        &self,
        conversation: Conversation,
    ) -> Result<Option<Invitation>, StoreError> {
        let value: Option<String> = self
            .inner
            .connection
            .query(
                "invitation",
                Retry::Once,
                redis::cmd("HGET")
                    .arg(self.inner.keys.invitations(conversation.business))
                    .arg(conversation.customer.as_u64()),
            )
            .await?;
        value
            .map(|v| codec::parse_invitation(&v).map_err(|detail| corrupt(conversation, detail)))
            .transpose()
    }

    async fn invitations(&self) -> Result<Vec<(Conversation, Invitation)>, StoreError> {
        let businesses = self.businesses().await?;
        if businesses.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipeline = redis::pipe();
        for business in &businesses {
            pipeline.hgetall(self.inner.keys.invitations(*business));
        }
        let answers: Vec<HashMap<String, String>> = self
            .inner
            .connection
            .pipeline("invitations", Retry::Once, &pipeline)
            .await?;
        let mut all = Vec::new();
        for (business, invitations) in businesses.iter().zip(answers) {
            for (customer, value) in invitations {
                let Some(conversation) = Self::conversation(*business, &customer) else {
                    continue;
                };
                let invitation = codec::parse_invitation(&value)
                    .map_err(|detail| corrupt(conversation, detail))?;
                all.push((conversation, invitation));
            }
        }
        all.sort_by_key(|(c, _)| *c);
        Ok(all)
    }

    async fn set_invitation(
        &self,
        conversation: Conversation,
        invitation: Option<Invitation>,
    ) -> Result<(), StoreError> {
        let key = self.inner.keys.invitations(conversation.business);
        let customer = conversation.customer.as_u64();
        let mut pipeline = redis::pipe();
        match invitation {
            Some(invitation) => pipeline
                .add_command(self.register(conversation.business))
                .ignore()
                .hset(key, customer, codec::invitation(&invitation))
                .ignore(),
            None => pipeline.hdel(key, customer).ignore(),
        };
        self.inner
            .connection
            .pipeline("set_invitation", Retry::Never, &pipeline)
            .await
    }

    async fn outcome(
        &self,
        conversation: Conversation,
        message_id: Uuid,
    ) -> Result<Option<String>, StoreError> {
        let keys = self.outcome_keys(conversation);
        let value: Option<Vec<u8>> = self
            .inner
            .connection
            .eval_one(
                "outcome",
                Retry::Once,
                None,
                Eval {
                    script: &SCRIPTS.outcome,
                    keys: vec![keys[0].clone(), keys[2].clone()],
                    args: vec![message_id.to_string()],
                },
            )
            .await?;
        value
            .map(|bytes| Self::outcome_text(conversation, &message_id.to_string(), bytes))
            .transpose()
    }

    async fn outcome_by_wa_id(
        &self,
        conversation: Conversation,
        wa_id: &str,
    ) -> Result<Option<(Uuid, String)>, StoreError> {
        let found: Option<(Vec<u8>, Vec<u8>)> = self
            .inner
            .connection
            .eval_one(
                "outcome_by_wa_id",
                Retry::Once,
                None,
                Eval {
                    script: &SCRIPTS.outcome_by_wa_id,
                    keys: self.outcome_keys(conversation),
                    args: vec![wa_id.to_owned()],
                },
            )
            .await?;
        found
            .map(|(id, text)| {
                let id = Self::outcome_id(conversation, &id)?;
                Ok((id, Self::outcome_text(conversation, &id.to_string(), text)?))
            })
            .transpose()
    }

    async fn outcomes(
        &self,
        conversation: Conversation,
    ) -> Result<Vec<(Uuid, String)>, StoreError> {
        let keys = self.outcome_keys(conversation);
        let entries: Vec<Vec<u8>> = self
            .inner
            .connection
            .eval_one(
                "outcomes",
                Retry::Once,
                None,
                Eval {
                    script: &SCRIPTS.outcomes,
                    keys: vec![keys[0].clone(), keys[2].clone()],
                    args: Vec::new(),
                },
            )
            .await?;
        let mut entries = entries.into_iter();
        let mut live = Vec::new();
        while let (Some(field), Some(text)) = (entries.next(), entries.next()) {
            let id = Self::outcome_id(conversation, &field)?;
            live.push((id, Self::outcome_text(conversation, &id.to_string(), text)?));
        }
        Ok(live)
    }

    async fn put_outcome(
        &self,
        conversation: Conversation,
        outcome: StoredOutcome,
    ) -> Result<(), StoreError> {
        self.inner
            .connection
            .eval_one::<i64>(
                "put_outcome",
                Retry::Never,
                None,
                Eval {
                    script: &SCRIPTS.put_outcome,
                    keys: self.outcome_keys(conversation),
                    args: Self::outcome_args(&outcome).into(),
                },
            )
            .await
            .map(drop)
    }

    /// As the trait says: one script over the outbox and outcome keys of the
    /// conversation (one hash-tag slot), durable as the server's `appendfsync` makes
    /// every acknowledged write.
    async fn enqueue_with_outcome(
        &self,
        conversation: Conversation,
        message: QueuedMessage,
        limit: usize,
        outcome: StoredOutcome,
    ) -> Result<bool, StoreError> {
        let (keys, args) = self.outbox_with_outcome(
            conversation,
            vec![
                conversation.customer.to_string(),
                message.message_id.to_string(),
                codec::queued(&message),
                limit.to_string(),
            ],
            &outcome,
        );
        let added: i64 = self
            .inner
            .connection
            .eval_one(
                "enqueue_with_outcome",
                Retry::Never,
                Some(self.register(conversation.business)),
                Eval {
                    script: &SCRIPTS.enqueue_with_outcome,
                    keys,
                    args,
                },
            )
            .await?;
        Self::enqueued(conversation, limit, added)
    }

    /// As the trait says: one script, as [`OutboxStore::enqueue_with_outcome`].
    async fn dequeue_with_outcome(
        &self,
        conversation: Conversation,
        message_id: Uuid,
        outcome: StoredOutcome,
    ) -> Result<bool, StoreError> {
        let (keys, args) = self.outbox_with_outcome(
            conversation,
            vec![conversation.customer.to_string(), message_id.to_string()],
            &outcome,
        );
        let removed: i64 = self
            .inner
            .connection
            .eval_one(
                "dequeue_with_outcome",
                Retry::Never,
                None,
                Eval {
                    script: &SCRIPTS.dequeue_with_outcome,
                    keys,
                    args,
                },
            )
            .await?;
        Ok(removed > 0)
    }
}
