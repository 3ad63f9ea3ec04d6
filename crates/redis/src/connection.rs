//! The connection: redis-rs's `ConnectionManager` for one server (one multiplexed
//! connection shared by every clone of the store, reconnecting by itself) or its
//! cluster-aware `ClusterConnection` for a Redis Cluster (following `MOVED` and `ASK`,
//! refreshing the slot map after a failover), over TCP or TLS; every call bounded in
//! time, every failure turned into a [`RedisStoreError`] (a [`StoreError::Backend`] by the
//! time it leaves the store), and every write followed by the configured replica wait.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::future::try_join_all;
use lipachat_session::StoreError;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ErrorKind, FromRedisValue, Pipeline, RedisError,
    RedisFuture, RedisResult, Script, TlsCertificates, Value,
};

use crate::config::{Deployment, RedisConfig, ReplicaWait, hide_passwords, password_forms, redact};
use crate::connect_error::{ConnectError, classify};
use crate::error::RedisStoreError;

/// Whether a call may be sent again after the connection broke under it, and whether it
/// writes (and so waits for replicas, when a [`ReplicaWait`] is configured).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// A read: retried once after a broken connection, within the time bound.
    Once,
    /// A write whose second run changes nothing and answers the same (`SET NX`, a
    /// compare-and-delete): retried once, like a read.
    OnceWrite,
    /// A write: never resent by the store, the caller decides (it may have been applied).
    Never,
}

impl Retry {
    fn resend(self) -> bool {
        matches!(self, Self::Once | Self::OnceWrite)
    }

    fn writes(self) -> bool {
        matches!(self, Self::OnceWrite | Self::Never)
    }
}

/// One script call: the script, its keys and its arguments.
pub(crate) struct Eval<'a> {
    pub(crate) script: &'a Script,
    pub(crate) keys: Vec<String>,
    pub(crate) args: Vec<String>,
}

/// One place a key scan runs: the one server, or the primary that owns a slot of the
/// cluster (one slot per primary stands for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shard {
    /// The one server.
    Server,
    /// The cluster primary serving this slot.
    Primary(u16),
}

/// How long sent data may stay unacknowledged by the peer's kernel before the
/// connection counts as dead (Linux `TCP_USER_TIMEOUT`), so a connection to a vanished
/// host is dropped and replaced instead of timing out call after call. A frozen but
/// running server's kernel still acknowledges, so this never fires for it.
pub(crate) const DEAD_PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times the cluster connection resends a command redirected (`MOVED`, `ASK`),
/// told to try again (`TRYAGAIN` while a slot migrates, `CLUSTERDOWN` during a failover)
/// or cut by a broken connection; the operation timeout bounds them all.
const CLUSTER_RETRIES: u32 = 24;
/// The shortest and longest pause between two of those resends, in milliseconds
/// (redis-rs's default shortest, 1.28 s, would spend the whole operation timeout on a
/// few `TRYAGAIN`s).
const CLUSTER_RETRY_WAIT_MS: (u64, u64) = (10, 250);

/// How many times a script refused by the cluster (redirected or told to try again)
/// inside a pipeline is sent again by the store itself; the operation timeout bounds
/// them all.
const SLOT_MOVE_RESENDS: u32 = 8;

/// No Nagle delay (requests are small), and [`DEAD_PEER_TIMEOUT`] where supported.
fn tcp_settings() -> redis::io::tcp::TcpSettings {
    let settings = redis::io::tcp::TcpSettings::default().set_nodelay(true);
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    let settings = settings.set_user_timeout(DEAD_PEER_TIMEOUT);
    settings
}

/// The redis-rs connection: to one server, or to a cluster.
#[derive(Clone)]
enum Link {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Server(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Server(connection) => connection.req_packed_commands(cmd, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Server(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

impl Link {
    /// Runs `cmd` where `shard` says: as routed by its key on one server, on the primary
    /// of the slot in a cluster.
    async fn on_shard(&mut self, shard: Shard, cmd: &Cmd) -> RedisResult<Value> {
        match (self, shard) {
            (Self::Cluster(connection), Shard::Primary(slot)) => {
                connection
                    .route_command(
                        cmd,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
                            slot,
                            SlotAddr::Master,
                        ))),
                    )
                    .await
            }
            (link, _) => cmd.query_async(link).await,
        }
    }
}

/// The shared connection.
#[derive(Clone)]
pub(crate) struct Connection {
    link: Link,
    operation: Duration,
    endpoint: String,
    /// The password's forms, taken out of every message (a wrong server may quote it).
    passwords: Arc<[String]>,
    /// The `WAIT` sent after each write, if any.
    wait: Option<ReplicaWait>,
    /// On a cluster: the registry commands sent before a business's writes (`SADD`),
    /// packed, with when each was last acknowledged (see [`REGISTRY_REFRESH`]).
    registered: Arc<Mutex<HashMap<Vec<u8>, Instant>>>,
}

/// On a cluster, how long a business's registry `SADD`, once acknowledged, is not sent
/// again by this store value: the `SADD` goes to the registry key's own slot, so sending
/// it before every write would cost each write a second round trip, all of them to one
/// node. It is idempotent, and sent again after this long, so a registry entry lost
/// meanwhile (a failover without a replica wait, a flushed database) comes back with
/// the business's next write.
pub(crate) const REGISTRY_REFRESH: Duration = Duration::from_secs(60);

/// How many registry commands [`Connection::registered`] remembers before dropping the
/// stale ones.
const REGISTRY_MEMORY: usize = 100_000;

/// The PEM certificates trusted for TLS: the CA file's, then the system's roots (redis-rs
/// trusts only the given ones once any are given, so the system's are added here).
fn trusted_roots(path: &Path) -> Result<Vec<u8>, ConnectError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let refused = |detail: String| ConnectError::CaCertificate {
        path: path.to_owned(),
        detail,
    };
    let file = std::fs::read(path).map_err(|error| refused(error.to_string()))?;
    let mut check = rustls::RootCertStore::empty();
    let mut count = 0usize;
    for cert in CertificateDer::pem_slice_iter(&file) {
        let cert = cert.map_err(|error| refused(format!("not PEM: {error}")))?;
        check
            .add(cert)
            .map_err(|error| refused(format!("certificate {}: {error}", count + 1)))?;
        count += 1;
    }
    if count == 0 {
        return Err(refused(
            "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned(),
        ));
    }
    let mut pem = file;
    if !pem.ends_with(b"\n") {
        pem.push(b'\n');
    }
    let system = rustls_native_certs::load_native_certs();
    for error in &system.errors {
        tracing::warn!(%error, "cannot read some of the system's trusted roots");
    }
    for cert in system.certs {
        // A system root rustls cannot use would make redis-rs refuse them all: skip it.
        if check.add(cert.clone()).is_err() {
            continue;
        }
        pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        let encoded = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        for line in encoded.as_bytes().chunks(64) {
            pem.extend_from_slice(line);
            pem.push(b'\n');
        }
        pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    Ok(pem)
}

/// A redis-rs client for `url`, trusting `roots` (PEM) when given.
fn client(url: &str, roots: Option<&[u8]>) -> RedisResult<Client> {
    match roots {
        Some(roots) => Client::build_with_tls(
            url,
            TlsCertificates {
                client_tls: None,
                root_cert: Some(roots.to_vec()),
            },
        ),
        None => Client::open(url),
    }
}

impl Connection {
    /// Connects, within the operation timeout.
    pub(crate) async fn open(config: &RedisConfig) -> Result<Self, ConnectError> {
        let timeouts = config.timeouts();
        let endpoint = redact(config.url());
        let passwords: Arc<[String]> = password_forms(config.url()).into();
        let hide = |text: &str| hide_passwords(&passwords, text);
        let roots = match (config.uses_tls(), config.effective_ca_cert()) {
            (true, Some(path)) => Some(trusted_roots(&path)?),
            _ => None,
        };
        if config.uses_tls() {
            // rustls needs a crypto provider; ring is the one this crate builds with. An
            // application that installed its own keeps it.
            let _ = rustls::crypto::ring::default_provider().install_default();
            if config.url().ends_with("#insecure") {
                tracing::warn!(
                    redis = %endpoint,
                    "TLS certificate verification is off (#insecure): anyone on the path can read and change the store's traffic"
                );
            }
        }
        let connecting = async {
            match config.deployment() {
                Deployment::Server => {
                    let client = client(config.url(), roots.as_deref())
                        .map_err(|error| classify(&endpoint, "configure", &error, hide))?;
                    // Reconnection: one retry after at most 200 ms; each attempt bounded
                    // by the connect timeout. A call waiting for it is bounded by the
                    // operation timeout.
                    let manager_config = ConnectionManagerConfig::new()
                        .set_connection_timeout(timeouts.connect)
                        .set_response_timeout(timeouts.response)
                        .set_number_of_retries(1)
                        .set_max_delay(200)
                        .set_tcp_settings(tcp_settings());
                    ConnectionManager::new_with_config(client, manager_config)
                        .await
                        .map(Link::Server)
                        .map_err(|error| classify(&endpoint, "connect", &error, hide))
                }
                Deployment::Cluster { nodes } => {
                    Self::open_cluster(config, nodes, roots.as_deref(), &endpoint, &hide)
                        .await
                        .map(Link::Cluster)
                }
            }
        };
        let link = match tokio::time::timeout(timeouts.operation, connecting).await {
            Ok(link) => link?,
            Err(_) => {
                return Err(ConnectError::Unreachable {
                    endpoint,
                    detail: format!("no connection within {:?}", timeouts.operation),
                });
            }
        };
        Ok(Self {
            link,
            operation: timeouts.operation,
            endpoint,
            passwords,
            wait: config.replica_wait(),
            registered: Arc::default(),
        })
    }

    /// Connects to a cluster: first to the seed nodes one by one (the first that answers
    /// is enough, and a refused password or certificate is reported as such, not as "no
    /// node"), checking it is a cluster node; then redis-rs's cluster connection, which
    /// discovers the others.
    async fn open_cluster(
        config: &RedisConfig,
        nodes: &[String],
        roots: Option<&[u8]>,
        endpoint: &str,
        hide: &impl Fn(&str) -> String,
    ) -> Result<ClusterConnection, ConnectError> {
        let timeouts = config.timeouts();
        let probe_config = AsyncConnectionConfig::new()
            .set_connection_timeout(timeouts.connect)
            .set_response_timeout(timeouts.response)
            .set_tcp_settings(tcp_settings());
        let mut unreachable = None;
        let mut reached = false;
        for node in nodes {
            let node_endpoint = redact(node);
            let client = client(node, roots)
                .map_err(|error| classify(&node_endpoint, "configure", &error, hide))?;
            let probe = async {
                let mut connection = client
                    .get_multiplexed_async_connection_with_config(&probe_config)
                    .await?;
                redis::cmd("INFO")
                    .arg("cluster")
                    .query_async::<String>(&mut connection)
                    .await
            };
            match probe.await {
                Ok(info) => {
                    if crate::server::info_field(&info, "cluster_enabled") != Some("1") {
                        return Err(ConnectError::Unsuitable {
                            endpoint: node_endpoint,
                            detail: "this server is not a Redis Cluster node (cluster_enabled:0); name it with redis:// or rediss://".to_owned(),
                        });
                    }
                    reached = true;
                    break;
                }
                Err(error) => match classify(&node_endpoint, "connect", &error, hide) {
                    error @ ConnectError::Unreachable { .. } => unreachable = Some(error),
                    other => return Err(other),
                },
            }
        }
        if !reached {
            return Err(unreachable.unwrap_or_else(|| ConnectError::Unreachable {
                endpoint: endpoint.to_owned(),
                detail: "no seed node".to_owned(),
            }));
        }
        let (shortest, longest) = CLUSTER_RETRY_WAIT_MS;
        let mut builder = ClusterClientBuilder::new(nodes.to_vec())
            .connection_timeout(timeouts.connect)
            .response_timeout(timeouts.response)
            .retries(CLUSTER_RETRIES)
            .min_retry_wait(shortest)
            .max_retry_wait(longest)
            .retry_wait_formula(shortest, 2)
            .tcp_settings(tcp_settings());
        if let Some(roots) = roots {
            builder = builder.certs(TlsCertificates {
                client_tls: None,
                root_cert: Some(roots.to_vec()),
            });
        }
        let client = builder
            .build()
            .map_err(|error| classify(endpoint, "configure", &error, hide))?;
        client
            .get_async_connection()
            .await
            .map_err(|error| classify(endpoint, "connect to the cluster", &error, hide))
    }

    /// Whether this is a cluster connection.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.link, Link::Cluster(_))
    }

    fn error(&self, what: &str, error: &RedisError) -> RedisStoreError {
        RedisStoreError::Call {
            endpoint: self.endpoint.clone(),
            operation: what.to_owned(),
            detail: self.hidden(&error.to_string()),
        }
    }

    /// `text` with the password taken out of it in every form (a server's answer quoted
    /// in it may hold it).
    fn hidden(&self, text: &str) -> String {
        hide_passwords(&self.passwords, text)
    }

    /// The server's `answer` to `operation` is not what the store expects.
    pub(crate) fn unexpected(&self, operation: &str, answer: &str) -> RedisStoreError {
        RedisStoreError::UnexpectedAnswer {
            operation: operation.to_owned(),
            answer: self.hidden(answer),
        }
    }

    /// A [`ConnectError`] for a check at connect that failed with `error`.
    pub(crate) fn connect_error(&self, error: &StoreError) -> ConnectError {
        let detail = match error {
            StoreError::Backend { source, .. } => {
                let message = source.to_string();
                message
                    .strip_prefix(&format!("redis at {}: ", self.endpoint))
                    .unwrap_or(&message)
                    .to_owned()
            }
            other => other.to_string(),
        };
        let detail = hide_passwords(&self.passwords, &detail);
        let endpoint = self.endpoint.clone();
        if detail.contains("NOAUTH") || detail.contains("WRONGPASS") {
            ConnectError::Authentication { endpoint }
        } else if detail.contains("ReadOnly") || detail.contains("READONLY") {
            ConnectError::Unsuitable {
                endpoint,
                detail: format!(
                    "{detail}; this is a read-only replica: name its primary (the store writes at connect and after)"
                ),
            }
        } else if detail.contains("NOPERM") {
            ConnectError::Permission { endpoint, detail }
        } else if detail.contains("no answer within") {
            ConnectError::Unreachable { endpoint, detail }
        } else {
            ConnectError::Server { endpoint, detail }
        }
    }

    /// An [`ConnectError::Unsuitable`] naming this server.
    pub(crate) fn unsuitable(&self, detail: &str) -> ConnectError {
        ConnectError::Unsuitable {
            endpoint: self.endpoint.clone(),
            detail: hide_passwords(&self.passwords, detail),
        }
    }

    /// On a cluster, `before` unless this store value had it acknowledged within
    /// [`REGISTRY_REFRESH`]; on one server nothing (it goes in the same pipeline).
    fn cluster_prelude<'a>(&self, before: Option<&'a Cmd>) -> Option<&'a Cmd> {
        let before = before.filter(|_| self.is_cluster())?;
        let registered = self
            .registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match registered.get(&before.get_packed_command()) {
            Some(at) if at.elapsed() < REGISTRY_REFRESH => None,
            _ => Some(before),
        }
    }

    /// Notes that `before` was acknowledged.
    fn prelude_sent(&self, before: &Cmd) {
        let mut registered = self
            .registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if registered.len() >= REGISTRY_MEMORY {
            registered.retain(|_, at| at.elapsed() < REGISTRY_REFRESH);
        }
        registered.insert(before.get_packed_command(), Instant::now());
    }

    /// Sends `before` on its own (a cluster prelude) and notes it acknowledged.
    async fn send_prelude(&self, link: &mut Link, retry: Retry, before: &Cmd) -> RedisResult<()> {
        self.send(link, retry, &one(before)).await?;
        self.prelude_sent(before);
        Ok(())
    }

    /// Runs `call` on the connection, bounded by the operation timeout; with a
    /// [`Retry`] that resends, runs it a second time if the connection broke under the
    /// first.
    async fn run<T, F, Fut>(&self, what: &str, retry: Retry, call: F) -> Result<T, StoreError>
    where
        F: Fn(Link) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        // Boxed: redis-rs's futures (a cluster connection's above all) are large, and every
        // store call passes here; inline, they would sit on the stack of whatever thread
        // polls the caller's future (a send path nests several store calls).
        let attempts = Box::pin(async {
            let first = call(self.link.clone()).await;
            match first {
                Err(error) if retry.resend() && error.is_unrecoverable_error() => {
                    tracing::debug!(%error, what, "redis connection broke; retrying once");
                    call(self.link.clone()).await
                }
                other => other,
            }
        });
        match tokio::time::timeout(self.operation, attempts).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.error(what, &error).into()),
            Err(_) => Err(RedisStoreError::Timeout {
                endpoint: self.endpoint.clone(),
                operation: what.to_owned(),
                after: self.operation,
            }
            .into()),
        }
    }

    /// `pipeline` with the replica wait after it when `retry` writes and one is set.
    fn waiting(&self, retry: Retry, pipeline: &Pipeline) -> Option<Pipeline> {
        let wait = self.wait.filter(|_| retry.writes())?;
        let mut waiting = pipeline.clone();
        waiting
            .cmd("WAIT")
            .arg(wait.replicas)
            .arg(u64::try_from(wait.timeout.as_millis()).unwrap_or(u64::MAX));
        Some(waiting)
    }

    /// Sends `pipeline` on `link` (a pipeline of one slot), then the replica wait when
    /// `retry` writes; answers the pipeline's answers (ignored commands left out), or an
    /// error when fewer replicas than required confirmed in time.
    async fn send(
        &self,
        link: &mut Link,
        retry: Retry,
        pipeline: &Pipeline,
    ) -> RedisResult<Vec<Value>> {
        let Some(waiting) = self.waiting(retry, pipeline) else {
            return pipeline.query_async(link).await;
        };
        let mut answers: Vec<Value> = waiting.query_async(link).await?;
        let confirmed = answers
            .pop()
            .map(i64::from_owned_redis_value)
            .transpose()?
            .unwrap_or(0);
        let wait = self.wait.unwrap_or(ReplicaWait {
            replicas: 0,
            timeout: Duration::ZERO,
        });
        if confirmed < i64::from(wait.replicas) {
            return Err(RedisError::from((
                ErrorKind::ClientError,
                "replicas did not confirm the write",
                format!(
                    "it is applied on the primary, but {confirmed} of the {} replicas asked for confirmed it within {:?} (WAIT); a failover now could lose it",
                    wait.replicas, wait.timeout
                ),
            )));
        }
        Ok(answers)
    }

    /// Runs one command (with the replica wait after it, if it writes).
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        what: &str,
        retry: Retry,
        command: &Cmd,
    ) -> Result<T, StoreError> {
        if self.wait.is_some() && retry.writes() {
            let mut pipeline = redis::pipe();
            pipeline.add_command(command.clone());
            let (answer,): (T,) = self.pipeline(what, retry, &pipeline).await?;
            return Ok(answer);
        }
        self.run(what, retry, |mut link| async move {
            command.query_async(&mut link).await
        })
        .await
    }

    /// Runs a pipeline whose keys are all in one slot (with the replica wait after it, if
    /// it writes).
    pub(crate) async fn pipeline<T: FromRedisValue>(
        &self,
        what: &str,
        retry: Retry,
        pipeline: &Pipeline,
    ) -> Result<T, StoreError> {
        self.pipeline_first(what, retry, None, pipeline).await
    }

    /// Runs `before` (a command on another slot, such as the registry's `SADD`, its
    /// answer ignored), then the pipeline `build` makes (keys of one slot): on one server
    /// in one round trip, on a cluster `before` first, then the pipeline once `before` is
    /// acknowledged.
    pub(crate) async fn pipeline_after<T: FromRedisValue>(
        &self,
        what: &str,
        retry: Retry,
        before: &Cmd,
        build: impl Fn(&mut Pipeline),
    ) -> Result<T, StoreError> {
        let mut pipeline = redis::pipe();
        if !self.is_cluster() {
            pipeline.add_command(before.clone()).ignore();
        }
        build(&mut pipeline);
        let first = self.cluster_prelude(Some(before));
        self.pipeline_first(what, retry, first, &pipeline).await
    }

    /// Runs `first` (its answer ignored), then `pipeline`, as two round trips.
    async fn pipeline_first<T: FromRedisValue>(
        &self,
        what: &str,
        retry: Retry,
        first: Option<&Cmd>,
        pipeline: &Pipeline,
    ) -> Result<T, StoreError> {
        let answers = self
            .run(what, retry, |mut link| async move {
                if let Some(first) = first {
                    self.send_prelude(&mut link, retry, first).await?;
                }
                self.send(&mut link, retry, pipeline).await
            })
            .await?;
        T::from_owned_redis_value(Value::Array(answers))
            .map_err(|error| self.error(what, &error).into())
    }

    /// Reads each answer as a `T`.
    fn each<T: FromRedisValue>(
        &self,
        what: &str,
        answers: Vec<Value>,
    ) -> Result<Vec<T>, StoreError> {
        answers
            .into_iter()
            .map(|answer| {
                T::from_owned_redis_value(answer).map_err(|e| self.error(what, &e).into())
            })
            .collect()
    }

    /// Runs commands of several slots (`groups`, each one slot, for example one per
    /// business), one answer per command, in order: on one server as one pipeline, on a
    /// cluster one pipeline per group, all at once.
    pub(crate) async fn grouped<T: FromRedisValue>(
        &self,
        what: &str,
        retry: Retry,
        groups: Vec<Vec<Cmd>>,
    ) -> Result<Vec<T>, StoreError> {
        let pipelines: Vec<Pipeline> = if self.is_cluster() {
            groups.iter().map(|group| pipe_of(group)).collect()
        } else {
            vec![pipe_of(&groups.concat())]
        };
        let answers = self
            .run(what, retry, |link| {
                let pipelines = &pipelines;
                async move {
                    let sent = pipelines.iter().map(|pipeline| {
                        let mut link = link.clone();
                        async move { self.send(&mut link, retry, pipeline).await }
                    });
                    Ok(try_join_all(sent).await?.concat())
                }
            })
            .await?;
        self.each(what, answers)
    }

    /// Runs scripts (`EVALSHA`, loading the scripts once if the server does not know
    /// them, as after a restart or on a new primary), preceded by `before` (for example
    /// the registry's `SADD`, whose answer is ignored). Returns each script's answer. On
    /// one server all go in one round trip; on a cluster `before` goes first, then each
    /// script in its own pipeline (each touches one business's slot), all at once.
    pub(crate) async fn eval<T: FromRedisValue>(
        &self,
        what: &str,
        retry: Retry,
        before: Option<Cmd>,
        evals: &[Eval<'_>],
    ) -> Result<Vec<T>, StoreError> {
        if evals.is_empty() {
            return Ok(Vec::new());
        }
        let evalsha = |eval: &Eval<'_>| {
            let mut command = redis::cmd("EVALSHA");
            command
                .arg(eval.script.get_hash())
                .arg(eval.keys.len())
                .arg(&eval.keys)
                .arg(&eval.args);
            command
        };
        let mut pipelines: Vec<Pipeline> = Vec::new();
        let first = self.cluster_prelude(before.as_ref());
        if self.is_cluster() {
            pipelines.extend(evals.iter().map(|eval| one(&evalsha(eval))));
        } else {
            let mut pipeline = redis::pipe();
            if let Some(command) = &before {
                pipeline.add_command(command.clone()).ignore();
            }
            for eval in evals {
                pipeline.add_command(evalsha(eval));
            }
            pipelines.push(pipeline);
        }
        let answers = self
            .run(what, retry, |link| {
                let (pipelines, first) = (&pipelines, &first);
                async move {
                    if let Some(first) = first {
                        self.send_prelude(&mut link.clone(), retry, first).await?;
                    }
                    let sent = pipelines.iter().map(|pipeline| {
                        let mut link = link.clone();
                        async move {
                            let mut refused = 0;
                            loop {
                                let answer = match self.send(&mut link, retry, pipeline).await {
                                    Err(error) if error.kind() == ErrorKind::NoScriptError => {
                                        for eval in evals {
                                            eval.script
                                                .prepare_invoke()
                                                .load_async(&mut link)
                                                .await?;
                                        }
                                        // The scripts were not run (EVALSHA failed), and
                                        // `before` is idempotent: sending again is safe.
                                        self.send(&mut link, retry, pipeline).await
                                    }
                                    other => other,
                                };
                                match answer {
                                    // A cluster pipeline holds one script: a server that
                                    // redirected it (`ASK`, `MOVED`) or told it to try
                                    // again ran nothing, so it is sent again whatever
                                    // the call. redis-rs follows these for a command;
                                    // inside a pipeline one can reach here (seen once
                                    // while a slot migrated).
                                    Err(error)
                                        if self.is_cluster()
                                            && error.is_cluster_error()
                                            && refused < SLOT_MOVE_RESENDS =>
                                    {
                                        refused += 1;
                                        tracing::debug!(%error, what, refused, "the cluster refused a script while a slot moves; sending it again");
                                        tokio::time::sleep(Duration::from_millis(
                                            CLUSTER_RETRY_WAIT_MS.0 * u64::from(refused),
                                        ))
                                        .await;
                                    }
                                    other => break other,
                                }
                            }
                        }
                    });
                    Ok(try_join_all(sent).await?.concat())
                }
            })
            .await?;
        self.each(what, answers)
    }

    /// Runs one script; see [`Connection::eval`].
    pub(crate) async fn eval_one<T: FromRedisValue>(
        &self,
        what: &str,
        retry: Retry,
        before: Option<redis::Cmd>,
        eval: Eval<'_>,
    ) -> Result<T, StoreError> {
        let mut answers = self.eval(what, retry, before, &[eval]).await?;
        answers.pop().ok_or_else(|| {
            self.unexpected(what, "nothing (the script gave no answer)")
                .into()
        })
    }

    /// Where a scan of every key must run: the one server, or each primary of the
    /// cluster (read from `CLUSTER SLOTS`, one slot of each standing for it).
    pub(crate) async fn shards(&self) -> Result<Vec<Shard>, StoreError> {
        if !self.is_cluster() {
            return Ok(vec![Shard::Server]);
        }
        let slots: Vec<Vec<Value>> = self
            .query(
                "list the cluster's primaries",
                Retry::Once,
                redis::cmd("CLUSTER").arg("SLOTS"),
            )
            .await?;
        let mut primaries: Vec<(String, u16)> = Vec::new();
        for range in &slots {
            let start = range.first().map(i64::from_redis_value);
            let id = range
                .get(2)
                .map(Vec::<Value>::from_redis_value)
                .transpose()
                .ok()
                .flatten()
                .and_then(|node| node.get(2).map(String::from_redis_value));
            match (start, id) {
                (Some(Ok(start)), Some(Ok(id))) => {
                    let Ok(start) = u16::try_from(start) else {
                        continue;
                    };
                    if !primaries.iter().any(|(known, _)| *known == id) {
                        primaries.push((id, start));
                    }
                }
                _ => {
                    return Err(self
                        .unexpected("CLUSTER SLOTS", &format!("{range:?}"))
                        .into());
                }
            }
        }
        Ok(primaries
            .into_iter()
            .map(|(_, slot)| Shard::Primary(slot))
            .collect())
    }

    /// Runs `command` (a read without a key, such as `SCAN` or `INFO`) on `shard`.
    pub(crate) async fn query_shard<T: FromRedisValue>(
        &self,
        what: &str,
        shard: Shard,
        command: &Cmd,
    ) -> Result<T, StoreError> {
        let answer = self
            .run(what, Retry::Once, |mut link| async move {
                link.on_shard(shard, command).await
            })
            .await?;
        T::from_owned_redis_value(answer).map_err(|error| self.error(what, &error).into())
    }
}

/// A pipeline of one command.
fn one(command: &Cmd) -> Pipeline {
    let mut pipeline = redis::pipe();
    pipeline.add_command(command.clone());
    pipeline
}

/// A pipeline of `commands`, none ignored.
fn pipe_of(commands: &[Cmd]) -> Pipeline {
    let mut pipeline = redis::pipe();
    for command in commands {
        pipeline.add_command(command.clone());
    }
    pipeline
}
