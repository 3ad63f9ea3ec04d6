//! [`RedisStore`]: the session traits over Redis.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use lipachat_session::store::{DEFAULT_OUTCOME_HORIZON, is_indexed_wa_id};
use lipachat_session::{
    Alias, Bsuid, Conversation, Customer, GroupId, GroupRef, IdentityStore, InboundDigest,
    InboundId, InboundReceipt, InboundUpdate, Invitation, MAX_GROUP_REFS, MAX_USER_REFS, MessageId,
    MovedRecords, OutboxStore, PhoneNumber, QueuedMessage, RememberedInbound, StoreError,
    StoredOutcome, UserRef, WindowEntry, WindowRecord, WindowStore,
};
use uuid::Uuid;

use lipachat_session::store::{registry_alias_phone, registry_group, registry_user};

mod back_off;
mod consent;

use crate::codec;
use crate::config::RedisConfig;
use crate::connect_error::ConnectError;
use crate::connection::{Connection, Eval, Retry};
use crate::error::RedisStoreError;
use crate::keys::KeyLayout;
use crate::scripts::SCRIPTS;
use crate::server::{self, ServerInfo};

/// How many keys one `SCAN` step asks the server to look at.
const SCAN_COUNT: usize = 1000;

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
    /// Connects to the server at `url` (`redis://HOST:PORT/DB`, `rediss://…`,
    /// `redis+cluster://HOST:PORT,…`; see [`RedisConfig`]) with the default key prefix
    /// and timeouts.
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        Self::connect_with(RedisConfig::new(url)?).await
    }

    /// Connects with a configuration: checks that the server (every primary of a
    /// cluster) is Redis 6.2 or newer, that a cluster URL names a cluster and another URL
    /// does not, and that the keys under the prefix use a schema this build understands.
    /// Warns (through `tracing`) when an append-only file is off.
    pub async fn connect_with(config: RedisConfig) -> Result<Self, ConnectError> {
        let connection = Connection::open(&config).await?;
        let checked = |error: StoreError| connection.connect_error(&error);
        let mut found = Vec::new();
        for shard in connection.shards().await.map_err(checked)? {
            let mut info = String::new();
            for section in ["server", "persistence", "cluster"] {
                let text: String = connection
                    .query_shard("INFO", shard, redis::cmd("INFO").arg(section))
                    .await
                    .map_err(checked)?;
                info.push_str(&text);
                info.push('\n');
            }
            found.push(info);
        }
        let mut server: Option<ServerInfo> = None;
        for info in &found {
            let this = server::check(info).map_err(|detail| connection.unsuitable(&detail))?;
            if !connection.is_cluster() && server::info_field(info, "cluster_enabled") == Some("1")
            {
                return Err(connection.unsuitable(
                    "this server is a Redis Cluster node: name the cluster with redis+cluster://HOST:PORT[,HOST:PORT…] (rediss+cluster:// for TLS)",
                ));
            }
            // The oldest primary is what the store can rely on; every append-only file
            // must be on for the store to count as durable.
            server = Some(match server {
                None => this,
                Some(known) => ServerInfo {
                    version: known.version.min(this.version),
                    aof_enabled: known.aof_enabled && this.aof_enabled,
                },
            });
        }
        let Some(server) = server else {
            return Err(connection.unsuitable("the cluster lists no primary (CLUSTER SLOTS)"));
        };
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
            .map(|(schema,): (Option<String>,)| schema)
            .map_err(|error| connection.connect_error(&error))?;
        match schema.as_deref().map(str::parse::<u32>) {
            Some(Ok(SCHEMA_VERSION)) => {}
            Some(Ok(found)) if found < SCHEMA_VERSION => {
                return Err(connection.unsuitable(&format!(
                    "key {} holds schema version {found}, an older layout this build does not read; export it with the lipachat version that wrote it, then import it here into another prefix or database, or after deleting this prefix's keys (docs/redis.md)",
                    keys.schema(),
                )));
            }
            _ => {
                return Err(connection.unsuitable(&format!(
                    "key {} holds schema version {:?}, but this build understands up to {SCHEMA_VERSION}; upgrade lipachat, or use another key prefix",
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

    /// One HASH of each business number in the registry (`key` names it), read in one
    /// round trip, with its business number.
    async fn hash_per_business(
        &self,
        what: &str,
        key: impl Fn(&KeyLayout, PhoneNumber) -> String,
    ) -> Result<Vec<(PhoneNumber, HashMap<String, String>)>, StoreError> {
        let businesses = self.businesses().await?;
        if businesses.is_empty() {
            return Ok(Vec::new());
        }
        let answers: Vec<HashMap<String, String>> = self
            .inner
            .connection
            .grouped(
                what,
                Retry::Once,
                per_business(&businesses, |business| {
                    redis::cmd("HGETALL")
                        .arg(key(&self.inner.keys, business))
                        .to_owned()
                }),
            )
            .await?;
        Ok(businesses.into_iter().zip(answers).collect())
    }

    fn register(&self, business: PhoneNumber) -> redis::Cmd {
        let mut command = redis::cmd("SADD");
        command
            .arg(self.inner.keys.businesses())
            .arg(business.as_u64());
        command
    }

    /// Every key matching `pattern` (a `SCAN … MATCH` pattern), each once: a walk of the
    /// whole key space, on every primary of a cluster (a slot lives on one, or on two
    /// while it migrates). For rare reads such as export; `what` names it in errors.
    pub(super) async fn scan_matching(
        &self,
        what: &str,
        pattern: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut found = Vec::new();
        for shard in self.inner.connection.shards().await? {
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = self
                    .inner
                    .connection
                    .query_shard(
                        what,
                        shard,
                        redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(pattern)
                            .arg("COUNT")
                            .arg(SCAN_COUNT),
                    )
                    .await?;
                found.extend(keys);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        // A scan may answer a key twice.
        found.sort();
        found.dedup();
        Ok(found)
    }

    /// The redelivery memory of `business` at `now`: its seen-id keys found by
    /// [`Self::scan_matching`], each read with `MGET` and `PTTL`. A key that vanished
    /// meanwhile, has no expiry or an unreadable name or value is skipped (the last three
    /// with a warning).
    async fn remembered_of(
        &self,
        business: PhoneNumber,
        now: DateTime<Utc>,
    ) -> Result<Vec<RememberedInbound>, StoreError> {
        let prefix = self.inner.keys.seen_inbound_prefix(business);
        let pattern = self.inner.keys.seen_inbound_pattern(business);
        let keys = self
            .scan_matching("scan the redelivery memory", &pattern)
            .await?;
        let mut found = Vec::new();
        for chunk in keys.chunks(SCAN_COUNT) {
            found.extend(
                self.remembered_keys(&prefix, business, now, chunk.to_vec())
                    .await?,
            );
        }
        Ok(found)
    }

    /// The redelivery memory entries among `keys` (seen-id keys of `business` found by a
    /// scan), each read with `MGET` and `PTTL`.
    async fn remembered_keys(
        &self,
        prefix: &str,
        business: PhoneNumber,
        now: DateTime<Utc>,
        keys: Vec<String>,
    ) -> Result<Vec<RememberedInbound>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<String>> = self
            .inner
            .connection
            .query(
                "read the redelivery memory",
                Retry::Once,
                redis::cmd("MGET").arg(&keys),
            )
            .await?;
        let mut lifetimes = redis::pipe();
        for key in &keys {
            lifetimes.cmd("PTTL").arg(key);
        }
        let lifetimes: Vec<i64> = self
            .inner
            .connection
            .pipeline(
                "read the redelivery memory's lifetimes",
                Retry::Once,
                &lifetimes,
            )
            .await?;
        let mut found = Vec::new();
        for ((key, value), lifetime) in keys.iter().zip(values).zip(lifetimes) {
            // -2: gone since the scan (expired or replaced); nothing to carry.
            let Some(value) = value.filter(|_| lifetime != -2) else {
                continue;
            };
            let digest = key
                .strip_prefix(prefix)
                .and_then(|hex| hex.parse::<InboundDigest>().ok());
            let first = codec::parse_time(&value, "first receipt");
            match (digest, first, lifetime) {
                (Some(digest), Ok(first_received_at), lifetime) if lifetime > 0 => {
                    found.push(RememberedInbound {
                        business,
                        digest,
                        first_received_at,
                        remember_until: now + TimeDelta::milliseconds(lifetime),
                    });
                }
                _ => tracing::warn!(
                    key,
                    lifetime,
                    "skipping an unreadable or unexpiring seen-id key"
                ),
            }
        }
        Ok(found)
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

    /// The outcomes HASH, the WhatsApp id HASH and the expiry ZSET of a conversation,
    /// then its business's outcome ids HASH and their expiry ZSET, in that order.
    fn outcome_keys(&self, conversation: Conversation) -> Vec<String> {
        let keys = &self.inner.keys;
        vec![
            keys.outcomes(conversation),
            keys.outcome_wa_ids(conversation),
            keys.outcome_expiry(conversation),
            keys.outcome_ids(conversation.business),
            keys.outcome_ids_expiry(conversation.business),
        ]
    }

    /// The script arguments of an outcome: id, text, WhatsApp id (empty: none), keep ms,
    /// the time to keep for outcomes written before outcomes expired, and the customer
    /// (for the business's index by message id).
    fn outcome_args(conversation: Conversation, outcome: &StoredOutcome) -> [String; 6] {
        [
            outcome.message_id.to_string(),
            outcome.text.clone(),
            outcome.indexed_wa_id().unwrap_or_default().to_owned(),
            outcome.keep_for_millis().to_string(),
            DEFAULT_OUTCOME_HORIZON.num_milliseconds().to_string(),
            conversation.customer.key().to_string(),
        ]
    }

    /// The conversation of `business` that the index by message id names for
    /// `message_id`, when the outcome it points to is live.
    async fn outcome_conversation_of(
        &self,
        business: PhoneNumber,
        message_id: MessageId,
    ) -> Result<Option<Conversation>, StoreError> {
        let customer = self
            .hget(
                "outcome_conversation",
                self.inner.keys.outcome_ids(business),
                message_id.to_string(),
            )
            .await?;
        let Some(customer) = customer else {
            return Ok(None);
        };
        let Some(customer) = codec::parse_customer(&customer) else {
            tracing::warn!(
                %business, %message_id, customer,
                "skipping an outcome index entry that names no customer"
            );
            return Ok(None);
        };
        let conversation = Conversation::with_customer(business, customer);
        Ok(self
            .outcome(conversation, message_id)
            .await?
            .map(|_| conversation))
    }

    /// The conversation of `business` and the `messageId` that the business's index by
    /// WhatsApp id names for `wa_id` (a `w:<wa id>` entry of [`KeyLayout::outcome_ids`]),
    /// when the conversation's own index confirms it and the outcome is live.
    async fn outcome_conversation_by_wa_id_of(
        &self,
        business: PhoneNumber,
        wa_id: &str,
    ) -> Result<Option<(Conversation, MessageId)>, StoreError> {
        let entry = self
            .hget(
                "outcome_conversation_by_wa_id",
                self.inner.keys.outcome_ids(business),
                format!("w:{wa_id}"),
            )
            .await?;
        let Some(entry) = entry else {
            return Ok(None);
        };
        let Some((customer, id)) = entry.split_once('/').and_then(|(customer, id)| {
            Some((
                codec::parse_customer(customer)?,
                id.parse::<MessageId>().ok()?,
            ))
        }) else {
            tracing::warn!(
                %business, entry,
                "skipping a WhatsApp id index entry that names no customer and message id"
            );
            return Ok(None);
        };
        let conversation = Conversation::with_customer(business, customer);
        Ok(self
            .outcome_by_wa_id(conversation, wa_id)
            .await?
            .filter(|(found, _)| *found == id)
            .map(|_| (conversation, id)))
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
        outbox_args.extend(Self::outcome_args(conversation, outcome));
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
    fn outcome_id(conversation: Conversation, field: &[u8]) -> Result<MessageId, StoreError> {
        let field = String::from_utf8_lossy(field);
        field
            .parse::<MessageId>()
            .map_err(|e| corrupt(conversation, format!("outcome field {field:?}: {e}")))
    }

    /// Reads `customer` members of one business, skipping (with a warning) those that
    /// name no customer.
    fn conversation(business: PhoneNumber, customer: &str) -> Option<Conversation> {
        let conversation =
            codec::parse_customer(customer).map(|c| Conversation::with_customer(business, c));
        if conversation.is_none() {
            tracing::warn!(%business, customer, "skipping a member that names no customer");
        }
        conversation
    }
}

/// One command per business (each on its business's slot), for
/// [`Connection::grouped`].
fn per_business(
    businesses: &[PhoneNumber],
    command: impl Fn(PhoneNumber) -> redis::Cmd,
) -> Vec<Vec<redis::Cmd>> {
    businesses
        .iter()
        .map(|business| vec![command(*business)])
        .collect()
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

impl RedisStore {
    /// One `HGET` of `field` in the hash `key` (a read: retried once after a broken
    /// connection); `what` names it in errors.
    async fn hget(
        &self,
        what: &str,
        key: impl redis::ToRedisArgs + Send + Sync,
        field: impl redis::ToRedisArgs + Send + Sync,
    ) -> Result<Option<String>, StoreError> {
        self.inner
            .connection
            .query(what, Retry::Once, redis::cmd("HGET").arg(key).arg(field))
            .await
    }
}

impl WindowStore for RedisStore {
    async fn record_inbound(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> Result<InboundUpdate, StoreError> {
        let at = at.trunc_subsecs(3);
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
                    args: vec![conversation.customer.key().to_string(), codec::time(at)],
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
        let at = at.trunc_subsecs(3);
        // The horizon runs in server time from now: a key with a non-positive lifetime
        // would be refused, and an id remembered for a millisecond still counts once.
        let remember_ms = (remember_until - received_at).num_milliseconds().max(1);
        let mut keys = self.window_keys(conversation.business);
        keys.push(
            self.inner
                .keys
                .seen_inbound(conversation.business, id.digest()),
        );
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
                        conversation.customer.key().to_string(),
                        codec::time(at),
                        codec::time(received_at),
                        remember_ms.to_string(),
                    ],
                },
            )
            .await?;
        let unexpected = || -> StoreError {
            self.inner
                .connection
                .unexpected(
                    &format!("record_inbound_once for {conversation}"),
                    &format!("{answer:?}"),
                )
                .into()
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

    async fn remembered_inbound(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<RememberedInbound>, StoreError> {
        let mut found = Vec::new();
        for business in self.businesses().await? {
            found.extend(self.remembered_of(business, now).await?);
        }
        // SCAN may return a key twice.
        found.sort_by_key(|entry| (entry.business, entry.digest));
        found.dedup_by_key(|entry| (entry.business, entry.digest));
        Ok(found)
    }

    async fn remember_inbound(
        &self,
        entry: RememberedInbound,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let lifetime = (entry.remember_until - now).num_milliseconds();
        if lifetime <= 0 {
            return Ok(false);
        }
        // The business joins the registry, so a later export lists its memory.
        let key = self.inner.keys.seen_inbound(entry.business, entry.digest);
        let first = codec::time(entry.first_received_at);
        // SET NX is idempotent, so a retry after a lost answer is harmless (it then
        // reports the entry as kept).
        let answer: Vec<Option<String>> = self
            .inner
            .connection
            .pipeline_after(
                "remember an inbound id",
                Retry::OnceWrite,
                &self.register(entry.business),
                |insert| {
                    insert
                        .cmd("SET")
                        .arg(&key)
                        .arg(&first)
                        .arg("NX")
                        .arg("PX")
                        .arg(lifetime);
                },
            )
            .await?;
        Ok(matches!(answer.as_slice(), [Some(_)]))
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
                    args: vec![conversation.customer.key().to_string(), codec::time(at)],
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
        let record = self
            .hget(
                "window",
                self.inner.keys.window(conversation.business),
                conversation.customer.key(),
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
        let (after, up_to) = (after.timestamp_millis(), up_to.timestamp_millis());
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
                        let at = record.last_inbound.timestamp_millis();
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
        let counts: Vec<u64> = self
            .inner
            .connection
            .grouped(
                "count",
                Retry::Once,
                per_business(&businesses, |business| {
                    redis::cmd("ZCARD")
                        .arg(self.inner.keys.inbound(business))
                        .to_owned()
                }),
            )
            .await?;
        Ok(counts.iter().sum())
    }

    async fn windows(&self) -> Result<Vec<WindowEntry>, StoreError> {
        let mut all = Vec::new();
        for (business, records) in self.hash_per_business("windows", KeyLayout::window).await? {
            let mut entries: Vec<WindowEntry> = records
                .iter()
                .filter_map(|(customer, record)| {
                    let conversation = Self::conversation(business, customer)?;
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
                        keys.outcome_ids(conversation.business),
                        keys.outcome_ids_expiry(conversation.business),
                    ],
                    args: vec![conversation.customer.key().to_string()],
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

    /// Sets the health key (`P:health`, the server's answer to a write, expiring after a
    /// minute). On a Redis Cluster it checks the node holding that key.
    async fn check_writable(&self) -> Result<(), StoreError> {
        self.inner
            .connection
            .query::<String>(
                "health check",
                Retry::Once,
                redis::cmd("SET")
                    .arg(self.inner.keys.health())
                    .arg(chrono::Utc::now().timestamp_millis())
                    .arg("PX")
                    .arg(60_000),
            )
            .await
            .map(drop)
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
                        conversation.customer.key().to_string(),
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
        message_id: MessageId,
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
                    args: vec![
                        conversation.customer.key().to_string(),
                        message_id.to_string(),
                    ],
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
        old: MessageId,
        new: MessageId,
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
            _ => Err(RedisStoreError::Refused {
                operation: format!("reassign {old} to {new} for {conversation}"),
                reason: format!("{new} is already queued"),
            }
            .into()),
        }
    }

    async fn conversations_with_queued(&self) -> Result<Vec<Conversation>, StoreError> {
        let businesses = self.businesses().await?;
        if businesses.is_empty() {
            return Ok(Vec::new());
        }
        let answers: Vec<Vec<String>> = self
            .inner
            .connection
            .grouped(
                "conversations_with_queued",
                Retry::Once,
                per_business(&businesses, |business| {
                    redis::cmd("SMEMBERS")
                        .arg(self.inner.keys.outboxes(business))
                        .to_owned()
                }),
            )
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
        message_id: MessageId,
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
    async fn release(&self, message_id: MessageId, holder: Uuid) -> Result<(), StoreError> {
        self.inner
            .connection
            .eval_one::<i64>(
                "release",
                Retry::OnceWrite,
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
        let value = self
            .hget(
                "invitation",
                self.inner.keys.invitations(conversation.business),
                conversation.customer.key(),
            )
            .await?;
        value
            .map(|v| codec::parse_invitation(&v).map_err(|detail| corrupt(conversation, detail)))
            .transpose()
    }

    async fn invitations(&self) -> Result<Vec<(Conversation, Invitation)>, StoreError> {
        let mut all = Vec::new();
        for (business, invitations) in self
            .hash_per_business("invitations", KeyLayout::invitations)
            .await?
        {
            for (customer, value) in invitations {
                let Some(conversation) = Self::conversation(business, &customer) else {
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
        let customer = conversation.customer.key();
        let connection = &self.inner.connection;
        match invitation {
            Some(invitation) => {
                let value = codec::invitation(&invitation);
                connection
                    .pipeline_after(
                        "set_invitation",
                        Retry::Never,
                        &self.register(conversation.business),
                        |pipeline| {
                            pipeline.hset(&key, customer, &value).ignore();
                        },
                    )
                    .await
            }
            None => {
                connection
                    .pipeline(
                        "set_invitation",
                        Retry::Never,
                        redis::pipe().hdel(key, customer).ignore(),
                    )
                    .await
            }
        }
    }

    async fn outcome(
        &self,
        conversation: Conversation,
        message_id: MessageId,
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
    ) -> Result<Option<(MessageId, String)>, StoreError> {
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

    async fn outcome_conversation(
        &self,
        business: Option<PhoneNumber>,
        message_id: MessageId,
    ) -> Result<Option<Conversation>, StoreError> {
        let businesses = match business {
            Some(business) => vec![business],
            None => self.businesses().await?,
        };
        for business in businesses {
            if let Some(found) = self.outcome_conversation_of(business, message_id).await? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    async fn outcome_conversation_by_wa_id(
        &self,
        business: Option<PhoneNumber>,
        wa_id: &str,
    ) -> Result<Option<(Conversation, MessageId)>, StoreError> {
        if !is_indexed_wa_id(wa_id) {
            return Ok(None);
        }
        let businesses = match business {
            Some(business) => vec![business],
            None => self.businesses().await?,
        };
        for business in businesses {
            if let Some(found) = self
                .outcome_conversation_by_wa_id_of(business, wa_id)
                .await?
            {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    async fn outcomes(
        &self,
        conversation: Conversation,
    ) -> Result<Vec<(MessageId, String)>, StoreError> {
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
                Some(self.register(conversation.business)),
                Eval {
                    script: &SCRIPTS.put_outcome,
                    keys: self.outcome_keys(conversation),
                    args: Self::outcome_args(conversation, &outcome).into(),
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
                conversation.customer.key().to_string(),
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
        message_id: MessageId,
        outcome: StoredOutcome,
    ) -> Result<bool, StoreError> {
        let (keys, args) = self.outbox_with_outcome(
            conversation,
            vec![
                conversation.customer.key().to_string(),
                message_id.to_string(),
            ],
            &outcome,
        );
        let removed: i64 = self
            .inner
            .connection
            .eval_one(
                "dequeue_with_outcome",
                Retry::Never,
                Some(self.register(conversation.business)),
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

/// A kind of handle in the registry: its three keys and its limit.
#[derive(Clone, Copy)]
enum Registry {
    Users,
    Groups,
}

impl Registry {
    fn name(self) -> &'static str {
        match self {
            Self::Users => "user",
            Self::Groups => "group",
        }
    }

    fn limit(self) -> u64 {
        match self {
            Self::Users => MAX_USER_REFS,
            Self::Groups => MAX_GROUP_REFS,
        }
    }

    /// The forward HASH, the reverse HASH and the counter.
    fn keys(self, layout: &KeyLayout) -> [String; 3] {
        match self {
            Self::Users => [layout.users(), layout.user_ids(), layout.last_user()],
            Self::Groups => [layout.groups(), layout.group_ids(), layout.last_group()],
        }
    }
}

fn corrupt_identity(record: String, detail: impl Into<String>) -> StoreError {
    StoreError::CorruptIdentity {
        record,
        detail: detail.into(),
    }
}

impl RedisStore {
    /// The handle number of `id`, allocated if it has none (one script on the
    /// registry's slot, so concurrent callers with one id get one number).
    async fn allocate(&self, registry: Registry, id: &str) -> Result<u64, StoreError> {
        let number: i64 = self
            .inner
            .connection
            .eval_one(
                "allocate a handle",
                Retry::Never,
                None,
                Eval {
                    script: &SCRIPTS.allocate,
                    keys: registry.keys(&self.inner.keys).to_vec(),
                    args: vec![id.to_owned(), registry.limit().to_string()],
                },
            )
            .await?;
        u64::try_from(number).map_err(|_| StoreError::HandlesExhausted {
            kind: registry.name(),
        })
    }

    /// The handle number of `id`, if allocated.
    async fn find(&self, registry: Registry, id: &str) -> Result<Option<u64>, StoreError> {
        let [forward, ..] = registry.keys(&self.inner.keys);
        let number = self.hget("find a handle", forward, id).await?;
        number
            .map(|n| {
                n.parse::<u64>().map_err(|_| {
                    corrupt_identity(format!("{} {id}", registry.name()), format!("handle {n:?}"))
                })
            })
            .transpose()
    }

    /// The id a handle number stands for.
    async fn id_of(&self, registry: Registry, number: u64) -> Result<Option<String>, StoreError> {
        let [_, reverse, _] = registry.keys(&self.inner.keys);
        self.hget("resolve a handle", reverse, number).await
    }

    /// Every handle number with its id, in number order.
    async fn all_of(&self, registry: Registry) -> Result<Vec<(u64, String)>, StoreError> {
        let [_, reverse, _] = registry.keys(&self.inner.keys);
        let entries: HashMap<String, String> = self
            .inner
            .connection
            .query(
                "list handles",
                Retry::Once,
                redis::cmd("HGETALL").arg(reverse),
            )
            .await?;
        let mut all = entries
            .into_iter()
            .map(|(number, id)| {
                number.parse::<u64>().map(|n| (n, id)).map_err(|_| {
                    corrupt_identity(
                        format!("{} handle {number:?}", registry.name()),
                        "not a number",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        all.sort();
        Ok(all)
    }
}

fn user_ref(number: u64) -> Result<UserRef, StoreError> {
    UserRef::new(number).ok_or(StoreError::HandlesExhausted { kind: "user" })
}

fn group_ref(number: u64) -> Result<GroupRef, StoreError> {
    GroupRef::new(number).ok_or(StoreError::HandlesExhausted { kind: "group" })
}

impl IdentityStore for RedisStore {
    async fn user_ref(&self, user: &Bsuid) -> Result<UserRef, StoreError> {
        user_ref(self.allocate(Registry::Users, user.as_str()).await?)
    }

    async fn find_user_ref(&self, user: &Bsuid) -> Result<Option<UserRef>, StoreError> {
        self.find(Registry::Users, user.as_str())
            .await?
            .map(user_ref)
            .transpose()
    }

    async fn group_ref(&self, group: &GroupId) -> Result<GroupRef, StoreError> {
        group_ref(self.allocate(Registry::Groups, group.as_str()).await?)
    }

    async fn find_group_ref(&self, group: &GroupId) -> Result<Option<GroupRef>, StoreError> {
        self.find(Registry::Groups, group.as_str())
            .await?
            .map(group_ref)
            .transpose()
    }

    async fn user_id(&self, user: UserRef) -> Result<Option<Bsuid>, StoreError> {
        self.id_of(Registry::Users, user.index())
            .await?
            .map(|id| registry_user(user.index(), &id).map(|(_, id)| id))
            .transpose()
    }

    async fn group_id(&self, group: GroupRef) -> Result<Option<GroupId>, StoreError> {
        self.id_of(Registry::Groups, group.index())
            .await?
            .map(|id| registry_group(group.index(), &id).map(|(_, id)| id))
            .transpose()
    }

    async fn users(&self) -> Result<Vec<(UserRef, Bsuid)>, StoreError> {
        self.all_of(Registry::Users)
            .await?
            .iter()
            .map(|(number, id)| registry_user(*number, id))
            .collect()
    }

    async fn groups(&self) -> Result<Vec<(GroupRef, GroupId)>, StoreError> {
        self.all_of(Registry::Groups)
            .await?
            .iter()
            .map(|(number, id)| registry_group(*number, id))
            .collect()
    }

    async fn record_alias(
        &self,
        business: PhoneNumber,
        user: &Bsuid,
        phone: PhoneNumber,
    ) -> Result<Option<PhoneNumber>, StoreError> {
        let previous: Option<String> = self
            .inner
            .connection
            .eval_one(
                "record_alias",
                Retry::Never,
                Some(self.register(business)),
                Eval {
                    script: &SCRIPTS.record_alias,
                    keys: vec![self.inner.keys.aliases(business)],
                    args: vec![user.as_str().to_owned(), phone.digits()],
                },
            )
            .await?;
        // An unreadable old value is replaced: the new fact is worth more.
        Ok(previous.and_then(|old| {
            registry_alias_phone(business, user.as_str(), &old)
                .inspect_err(|error| tracing::warn!(%error, "replaced a corrupt alias"))
                .ok()
        }))
    }

    async fn alias(
        &self,
        business: PhoneNumber,
        user: &Bsuid,
    ) -> Result<Option<PhoneNumber>, StoreError> {
        let phone = self
            .hget("alias", self.inner.keys.aliases(business), user.as_str())
            .await?;
        phone
            .map(|phone| registry_alias_phone(business, user.as_str(), &phone))
            .transpose()
    }

    async fn aliases(&self) -> Result<Vec<Alias>, StoreError> {
        let mut all = Vec::new();
        for (business, aliases) in self
            .hash_per_business("aliases", KeyLayout::aliases)
            .await?
        {
            for (user, phone) in aliases {
                let phone = registry_alias_phone(business, &user, &phone)?;
                let user = Bsuid::parse(&user).map_err(|e| {
                    corrupt_identity(format!("alias {user:?} of {business}"), e.to_string())
                })?;
                all.push(Alias {
                    business,
                    user,
                    phone,
                });
            }
        }
        all.sort();
        Ok(all)
    }

    /// As the trait says: one script on the business's slot, so the move is applied
    /// whole or not at all (a server crash included, with the append-only file on).
    async fn move_customer(
        &self,
        business: PhoneNumber,
        from: Customer,
        to: Customer,
    ) -> Result<MovedRecords, StoreError> {
        if from == to {
            return Ok(MovedRecords::default());
        }
        // The customer's back-off is carried first, on its own slot (it is the customer's
        // across business numbers, and stays with `from` too): a crash between the two
        // leaves it on both, never on neither.
        let back_off = self.carry_back_off(from, to).await?;
        let keys = &self.inner.keys;
        let source = Conversation::with_customer(business, from);
        let target = Conversation::with_customer(business, to);
        let moved: Vec<i64> = self
            .inner
            .connection
            .eval_one(
                "move_customer",
                Retry::Never,
                Some(self.register(business)),
                Eval {
                    script: &SCRIPTS.move_customer,
                    keys: vec![
                        keys.window(business),
                        keys.inbound(business),
                        keys.outboxes(business),
                        keys.invitations(business),
                        keys.outbox(source),
                        keys.outbox_messages(source),
                        keys.outbox(target),
                        keys.outbox_messages(target),
                        keys.outcomes(source),
                        keys.outcomes(target),
                        keys.outcome_wa_ids(source),
                        keys.outcome_wa_ids(target),
                        keys.outcome_expiry(source),
                        keys.outcome_expiry(target),
                        keys.outcome_ids(business),
                        keys.consent(business),
                        keys.free_entry_point(business),
                    ],
                    args: vec![from.key().to_string(), to.key().to_string()],
                },
            )
            .await?;
        let count = |n: i64| usize::try_from(n).unwrap_or(0);
        match moved.as_slice() {
            [window, queued, invitation, outcomes, consent, entry] => Ok(MovedRecords {
                window: *window == 1,
                queued: count(*queued),
                invitation: *invitation == 1,
                outcomes: count(*outcomes),
                consent: *consent == 1 || back_off,
                free_entry_point: *entry == 1,
            }),
            other => Err(self
                .inner
                .connection
                .unexpected(
                    &format!("move_customer for {source}"),
                    &format!("{other:?}"),
                )
                .into()),
        }
    }
}
