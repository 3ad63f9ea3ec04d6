//! Throwaway Redis deployments for tests and benchmarks (feature `test-server`), all on
//! `127.0.0.1` with free ports and temporary directories, all killed when dropped:
//!
//! - [`RedisServer::start`]: one durable server (`appendonly yes`, `appendfsync always`,
//!   no snapshots); [`RedisServer::start_with`] and a [`ServerSetup`] add TLS (with
//!   [`TestCertificates`], made with rcgen at test time), a password, ACL users, or make
//!   it a replica of another server;
//! - [`RedisCluster::start`]: a Redis Cluster of N primaries (and replicas), created with
//!   `redis-cli --cluster create`, with helpers to find, migrate and fail over a slot;
//! - [`RedisSentinel::start`]: a Sentinel watching a primary, which promotes a replica
//!   when the primary dies.
//!
//! Without `redis-server` (and, for clusters, `redis-cli`) on `PATH` the starters return
//! `None`, so tests can skip, unless the environment sets `REQUIRE_REDIS=1` (as CI does),
//! in which case they panic. `REDIS_SERVER` and `REDIS_CLI` name other binaries.
//!
//! ```no_run
//! use lipachat_redis::test_server::RedisServer;
//!
//! # #[tokio::main] async fn main() {
//! let Some(server) = RedisServer::start() else {
//!     eprintln!("redis-server not installed: skipping");
//!     return;
//! };
//! let store = lipachat_redis::RedisStore::connect(&server.url()).await.unwrap();
//! # drop(store);
//! # }
//! ```

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The environment variable that makes a missing `redis-server` a failure.
pub const REQUIRE_ENV: &str = "REQUIRE_REDIS";
/// The environment variable naming the `redis-server` binary (default: from `PATH`).
pub const BINARY_ENV: &str = "REDIS_SERVER";
/// The environment variable naming the `redis-cli` binary (default: from `PATH`).
pub const CLI_ENV: &str = "REDIS_CLI";

/// How long a start may take before it counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a cluster may take to agree on its slots, or to fail over.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);
/// The cluster node timeout of test clusters: a dead primary is failed over within a few
/// seconds.
const CLUSTER_NODE_TIMEOUT_MS: u64 = 1000;
/// The name a [`RedisSentinel`] monitors its primary under.
pub const SENTINEL_PRIMARY_NAME: &str = "lipachat";

fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

fn free_port() -> u16 {
    match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()) {
        Ok(address) => address.port(),
        Err(error) => panic!("no free loopback port for redis-server: {error}"),
    }
}

/// The binary named by `variable`, else `default`, if it runs (`--version`); `None` (skip)
/// when it cannot be run and [`REQUIRE_ENV`] is not set.
///
/// # Panics
///
/// When it cannot be run and is required, or it runs but `--version` fails.
fn find_binary(variable: &str, default: &str, package: &str) -> Option<PathBuf> {
    let binary = PathBuf::from(std::env::var_os(variable).unwrap_or(default.into()));
    match Command::new(&binary).arg("--version").output() {
        Ok(output) if output.status.success() => Some(binary),
        Ok(output) => panic!(
            "{} --version failed: {}",
            binary.display(),
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(error) if required() => panic!(
            "{REQUIRE_ENV}=1 but {} cannot be run ({error}); install it (Debian/Ubuntu: apt-get install {package})",
            binary.display()
        ),
        Err(error) => {
            eprintln!(
                "skipping: {} cannot be run ({error}); install {package} (apt-get install {package}) to run the Redis tests",
                binary.display()
            );
            None
        }
    }
}

/// A certificate authority and a server certificate signed by it (for `localhost` and
/// `127.0.0.1`), made with rcgen at test time, as PEM files in a temporary directory.
/// Clones share the files.
#[derive(Debug, Clone)]
pub struct TestCertificates {
    dir: Arc<tempfile::TempDir>,
}

impl TestCertificates {
    /// Makes a new authority and server certificate.
    ///
    /// # Panics
    ///
    /// When rcgen fails or the files cannot be written.
    pub fn new() -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        };
        let made = (|| -> Result<_, Box<dyn std::error::Error>> {
            let dir = tempfile::tempdir()?;
            // Each authority has a name of its own, so another one's certificate is
            // "unknown issuer", not "bad signature".
            let name = format!(
                "lipachat test CA {}",
                dir.path().file_name().unwrap_or_default().to_string_lossy()
            );
            let ca_key = KeyPair::generate()?;
            let mut ca = CertificateParams::new(Vec::<String>::new())?;
            ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            ca.distinguished_name.push(DnType::CommonName, name);
            ca.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let ca_cert = ca.self_signed(&ca_key)?;
            let issuer = Issuer::new(ca, ca_key);
            let server_key = KeyPair::generate()?;
            let mut server =
                CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
            server
                .distinguished_name
                .push(DnType::CommonName, "lipachat test redis");
            let server_cert = server.signed_by(&server_key, &issuer)?;
            std::fs::write(dir.path().join("ca.pem"), ca_cert.pem())?;
            std::fs::write(dir.path().join("server.pem"), server_cert.pem())?;
            std::fs::write(dir.path().join("server.key"), server_key.serialize_pem())?;
            Ok(dir)
        })();
        match made {
            Ok(dir) => Self { dir: Arc::new(dir) },
            Err(error) => panic!("cannot make test certificates: {error}"),
        }
    }

    /// The authority's certificate (PEM): what a client must trust.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server's certificate (PEM).
    pub fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server's private key (PEM).
    pub fn server_key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}

impl Default for TestCertificates {
    fn default() -> Self {
        Self::new()
    }
}

/// One ACL user of a test server.
#[derive(Debug, Clone)]
struct AclUser {
    name: String,
    password: String,
    rules: String,
}

/// How a test server is set up beyond the defaults (plain TCP, no password, standalone).
///
/// ```
/// use lipachat_redis::test_server::{ServerSetup, TestCertificates};
///
/// let certificates = TestCertificates::new();
/// let setup = ServerSetup::new()
///     .tls(&certificates)
///     .password("admin-secret")
///     .user("bot", "bot-secret", "~lipachat:* +@all");
/// # drop(setup);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ServerSetup {
    tls: Option<TestCertificates>,
    password: Option<String>,
    users: Vec<AclUser>,
    replica_of: Option<u16>,
    cluster: bool,
}

impl ServerSetup {
    /// The defaults: plain TCP, no password, standalone.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves TLS only (`--port 0`, `--tls-port`), with `certificates`' server
    /// certificate; replication and the cluster bus use TLS too. Clients need no
    /// certificate of their own.
    pub fn tls(mut self, certificates: &TestCertificates) -> Self {
        self.tls = Some(certificates.clone());
        self
    }

    /// Gives the default user a password (`requirepass`).
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }

    /// Adds an ACL user, enabled, with `password` and the ACL `rules` (for example
    /// `~lipachat:* -@all +get`).
    pub fn user(mut self, name: &str, password: &str, rules: &str) -> Self {
        self.users.push(AclUser {
            name: name.to_owned(),
            password: password.to_owned(),
            rules: rules.to_owned(),
        });
        self
    }

    /// Makes the server a replica of the one on `primary_port` (same TLS and password).
    pub fn replica_of(mut self, primary_port: u16) -> Self {
        self.replica_of = Some(primary_port);
        self
    }

    /// Makes the server a cluster node (`cluster-enabled yes`, a node timeout of one
    /// second, replicas that always take over a dead primary).
    pub fn cluster(mut self) -> Self {
        self.cluster = true;
        self
    }
}

/// Quotes a value for a Redis configuration file.
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A `redis-server` child process on `127.0.0.1`, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    binary: PathBuf,
    port: u16,
    bus_port: u16,
    dir: tempfile::TempDir,
    setup: ServerSetup,
}

impl RedisServer {
    /// Starts a server, or returns `None` when `redis-server` is not installed and
    /// `REQUIRE_REDIS=1` is not set.
    ///
    /// # Panics
    ///
    /// When `redis-server` is missing and required, or it is there but does not start.
    pub fn start() -> Option<Self> {
        Self::start_with(ServerSetup::new())
    }

    /// Starts a server set up as `setup` says; see [`RedisServer::start`].
    ///
    /// # Panics
    ///
    /// As [`RedisServer::start`].
    pub fn start_with(setup: ServerSetup) -> Option<Self> {
        let binary = find_binary(BINARY_ENV, "redis-server", "redis-server")?;
        let dir = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(error) => panic!("cannot create a directory for redis-server: {error}"),
        };
        let mut server = Self {
            child: None,
            binary,
            port: 0,
            bus_port: 0,
            dir,
            setup,
        };
        // Another process may take the port between our probe and redis-server's bind:
        // try a few.
        let mut last_error = String::new();
        for _ in 0..5 {
            server.port = free_port();
            server.bus_port = free_port();
            match server.spawn() {
                Ok(()) => return Some(server),
                Err(error) => last_error = error,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// The configuration file's text.
    fn config(&self) -> String {
        let mut config = String::new();
        let mut line = |text: String| {
            config.push_str(&text);
            config.push('\n');
        };
        line("bind 127.0.0.1".to_owned());
        line(format!(
            "dir {}",
            quoted(&self.dir.path().to_string_lossy())
        ));
        line(format!(
            "logfile {}",
            quoted(&self.log_path().to_string_lossy())
        ));
        line("daemonize no".to_owned());
        line("appendonly yes".to_owned());
        line("appendfsync always".to_owned());
        line("save \"\"".to_owned());
        match &self.setup.tls {
            Some(tls) => {
                line("port 0".to_owned());
                line(format!("tls-port {}", self.port));
                line(format!(
                    "tls-cert-file {}",
                    quoted(&tls.server_cert().to_string_lossy())
                ));
                line(format!(
                    "tls-key-file {}",
                    quoted(&tls.server_key().to_string_lossy())
                ));
                line(format!(
                    "tls-ca-cert-file {}",
                    quoted(&tls.ca_cert().to_string_lossy())
                ));
                line("tls-auth-clients no".to_owned());
                line("tls-replication yes".to_owned());
                line("tls-cluster yes".to_owned());
            }
            None => line(format!("port {}", self.port)),
        }
        if let Some(password) = &self.setup.password {
            line(format!("requirepass {}", quoted(password)));
            line(format!("masterauth {}", quoted(password)));
        }
        for user in &self.setup.users {
            line(format!(
                "user {} on >{} {}",
                user.name, user.password, user.rules
            ));
        }
        if let Some(primary) = self.setup.replica_of {
            line(format!("replicaof 127.0.0.1 {primary}"));
        }
        if self.setup.cluster {
            line("cluster-enabled yes".to_owned());
            line("cluster-config-file nodes.conf".to_owned());
            line(format!("cluster-node-timeout {CLUSTER_NODE_TIMEOUT_MS}"));
            line(format!("cluster-port {}", self.bus_port));
            line("cluster-replica-validity-factor 0".to_owned());
        }
        config
    }

    fn spawn(&mut self) -> Result<(), String> {
        let config_path = self.dir.path().join("redis.conf");
        std::fs::write(&config_path, self.config())
            .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
        let log = self.log_path();
        let logged_before = std::fs::metadata(&log).map_or(0, |m| m.len());
        let mut child = Command::new(&self.binary)
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let logged = std::fs::read(&log).unwrap_or_default();
            let new = logged
                .get(usize::try_from(logged_before).unwrap_or(0)..)
                .unwrap_or_default();
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "exited with {status}; its log:\n{}",
                    String::from_utf8_lossy(new)
                ));
            }
            if String::from_utf8_lossy(new).contains("Ready to accept connections") {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "not ready on port {} within {START_TIMEOUT:?}; its log:\n{}",
                    self.port,
                    String::from_utf8_lossy(new)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The URL to connect to: `redis://127.0.0.1:PORT/0` (`rediss://` with TLS), no
    /// credentials.
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}/0", self.scheme(), self.port)
    }

    /// The URL with credentials: `redis://USER:PASSWORD@127.0.0.1:PORT/0`, or
    /// `redis://:PASSWORD@…` without a user (the default user).
    pub fn url_as(&self, user: Option<&str>, password: &str) -> String {
        format!(
            "{}://{}:{password}@127.0.0.1:{}/0",
            self.scheme(),
            user.unwrap_or_default(),
            self.port
        )
    }

    fn scheme(&self) -> &'static str {
        if self.setup.tls.is_some() {
            "rediss"
        } else {
            "redis"
        }
    }

    /// The port (the TLS port with TLS).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory (the append-only files live here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process runs (it may be frozen).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Runs `redis-cli` against this server (with its TLS and default-user password) with
    /// `args`; answers its standard output.
    ///
    /// # Errors
    ///
    /// When `redis-cli` cannot run, fails, or prints an error (`ERR …`).
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let binary = PathBuf::from(std::env::var_os(CLI_ENV).unwrap_or("redis-cli".into()));
        let mut command = Command::new(&binary);
        command
            .args(["-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string());
        if let Some(tls) = &self.setup.tls {
            command.arg("--tls").arg("--cacert").arg(tls.ca_cert());
        }
        if let Some(password) = &self.setup.password {
            command.args(["--no-auth-warning", "-a", password]);
        }
        let output = command
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success()
            || out.starts_with("ERR")
            || out.starts_with("(error)")
            || out.starts_with("NOPERM")
        {
            return Err(format!(
                "redis-cli {args:?} on port {}: {}{}",
                self.port,
                out,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(out)
    }

    /// One field of `INFO section`, if the server answers and has it.
    pub fn info_field(&self, section: &str, field: &str) -> Option<String> {
        let info = self.cli(&["INFO", section]).ok()?;
        crate::server::info_field(&info, field).map(str::to_owned)
    }

    /// Kills the server with SIGKILL (no shutdown, no final save) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data directory (after [`kill`]).
    ///
    /// # Panics
    ///
    /// When it does not start.
    ///
    /// [`kill`]: RedisServer::kill
    pub fn restart(&mut self) {
        self.kill();
        if let Err(error) = self.spawn() {
            panic!(
                "redis-server did not restart on port {}: {error}",
                self.port
            );
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Resumes a frozen server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let Some(pid) = self.pid() else {
            panic!("redis-server is not running");
        };
        match Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
        {
            Ok(status) if status.success() => {}
            other => panic!("kill {signal} {pid} failed: {other:?}"),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL also ends a paused (SIGSTOPped) process.
        self.kill();
    }
}

/// Waits until `done` holds, up to `within`; panics naming `what` otherwise.
fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    wait_for(what, within, || done().then_some(()));
}

/// Waits until `find` finds something, up to `within`, and answers it; panics naming
/// `what` otherwise.
fn wait_for<T>(what: &str, within: Duration, mut find: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = find() {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A primary as a node of `CLUSTER NODES` lists it.
#[derive(Debug, Clone)]
struct ClusterNode {
    port: u16,
    primary: bool,
    failed: bool,
    slots: Vec<(u16, u16)>,
}

/// Reads `CLUSTER NODES`.
fn cluster_nodes(text: &str) -> Vec<ClusterNode> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let address = fields.get(1)?;
            let port = address
                .split('@')
                .next()?
                .rsplit(':')
                .next()?
                .parse()
                .ok()?;
            let flags = fields.get(2)?;
            let slots = fields
                .iter()
                .skip(8)
                .filter(|range| !range.starts_with('['))
                .filter_map(|range| match range.split_once('-') {
                    Some((start, end)) => Some((start.parse().ok()?, end.parse().ok()?)),
                    None => range.parse().ok().map(|slot| (slot, slot)),
                })
                .collect();
            Some(ClusterNode {
                port,
                primary: flags.contains("master"),
                failed: flags.contains("fail") && !flags.contains("fail?"),
                slots,
            })
        })
        .collect()
}

/// A Redis Cluster of `redis-server` nodes on `127.0.0.1`, created with `redis-cli
/// --cluster create`, every node killed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    tls: bool,
}

impl RedisCluster {
    /// Starts `primaries` primaries, each with `replicas` replicas (over TLS with
    /// `tls`), and waits until every node sees all 16,384 slots served. `None` when
    /// `redis-server` or `redis-cli` is missing and `REQUIRE_REDIS=1` is not set.
    ///
    /// # Panics
    ///
    /// When a binary is missing and required, or the cluster does not form.
    pub fn start(
        primaries: usize,
        replicas: usize,
        tls: Option<&TestCertificates>,
    ) -> Option<Self> {
        find_binary(CLI_ENV, "redis-cli", "redis-tools")?;
        let mut setup = ServerSetup::new().cluster();
        if let Some(tls) = tls {
            setup = setup.tls(tls);
        }
        let mut nodes = Vec::new();
        for _ in 0..primaries * (1 + replicas) {
            nodes.push(RedisServer::start_with(setup.clone())?);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        let mut create: Vec<&str> = vec!["--cluster", "create"];
        create.extend(addresses.iter().map(String::as_str));
        let replicas_text = replicas.to_string();
        create.extend(["--cluster-replicas", &replicas_text, "--cluster-yes"]);
        if let Err(error) = nodes[0].cli(&create) {
            panic!("redis-cli --cluster create failed: {error}");
        }
        let cluster = Self {
            nodes,
            tls: tls.is_some(),
        };
        cluster.wait_until_stable(None);
        Some(cluster)
    }

    /// The URL naming every node: `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,…`
    /// (`rediss+cluster://` with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls {
            "rediss+cluster"
        } else {
            "redis+cluster"
        };
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        format!("{scheme}://{}", nodes.join(","))
    }

    /// The nodes, in the order they were started.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The node at `index`, to kill or restart it.
    pub fn node_mut(&mut self, index: usize) -> &mut RedisServer {
        &mut self.nodes[index]
    }

    fn index_of_port(&self, port: u16) -> Option<usize> {
        self.nodes.iter().position(|node| node.port() == port)
    }

    /// `CLUSTER NODES` as a running node sees it.
    fn view(&self, from: Option<usize>) -> Vec<ClusterNode> {
        let candidates: Vec<usize> = match from {
            Some(index) => vec![index],
            None => (0..self.nodes.len()).collect(),
        };
        candidates
            .into_iter()
            .filter(|&index| self.nodes[index].is_running())
            .find_map(|index| self.nodes[index].cli(&["CLUSTER", "NODES"]).ok())
            .map(|text| cluster_nodes(&text))
            .unwrap_or_default()
    }

    /// The slot Redis Cluster places `key` in (`CLUSTER KEYSLOT`).
    ///
    /// # Panics
    ///
    /// When no node answers.
    pub fn slot_of(&self, key: &str) -> u16 {
        let answer = (0..self.nodes.len())
            .filter(|&index| self.nodes[index].is_running())
            .find_map(|index| self.nodes[index].cli(&["CLUSTER", "KEYSLOT", key]).ok());
        match answer.and_then(|text| text.trim().parse().ok()) {
            Some(slot) => slot,
            None => panic!("no node answered CLUSTER KEYSLOT {key}"),
        }
    }

    /// The index of the primary serving `slot`, as the running nodes see it.
    pub fn owner_of(&self, slot: u16) -> Option<usize> {
        self.view(None)
            .iter()
            .filter(|node| node.primary && !node.failed)
            .find(|node| {
                node.slots
                    .iter()
                    .any(|(start, end)| (*start..=*end).contains(&slot))
            })
            .and_then(|node| self.index_of_port(node.port))
    }

    /// The index of the primary serving the slot of `key`.
    pub fn owner_of_key(&self, key: &str) -> Option<usize> {
        self.owner_of(self.slot_of(key))
    }

    /// The indexes of the primaries that serve slots.
    pub fn primaries(&self) -> Vec<usize> {
        let mut primaries: Vec<usize> = self
            .view(None)
            .iter()
            .filter(|node| node.primary && !node.failed && !node.slots.is_empty())
            .filter_map(|node| self.index_of_port(node.port))
            .collect();
        primaries.sort_unstable();
        primaries
    }

    fn node_id(&self, index: usize) -> String {
        match self.nodes[index].cli(&["CLUSTER", "MYID"]) {
            Ok(id) => id.trim().to_owned(),
            Err(error) => panic!("CLUSTER MYID: {error}"),
        }
    }

    /// Waits until every running node reports `cluster_state:ok` and, if given, sees
    /// `slot` served by a primary other than `not_by`.
    fn wait_until_stable(&self, moved: Option<(u16, usize)>) {
        wait_until("the cluster to be ok", CLUSTER_TIMEOUT, || {
            let all_ok = self
                .nodes
                .iter()
                .filter(|node| node.is_running())
                .all(|node| {
                    node.cli(&["CLUSTER", "INFO"]).is_ok_and(|info| {
                        crate::server::info_field(&info, "cluster_state") == Some("ok")
                    })
                });
            all_ok
                && moved
                    .is_none_or(|(slot, old)| self.owner_of(slot).is_some_and(|owner| owner != old))
        });
    }

    /// Moves `slot` from its primary to the primary `to`, as an operator does: `CLUSTER
    /// SETSLOT … IMPORTING` on the target, `… MIGRATING` on the source, then `MIGRATE`
    /// of its keys `batch` at a time with `pause` between batches (so writes run meanwhile
    /// and meet `ASK` and `TRYAGAIN`), then `CLUSTER SETSLOT … NODE` everywhere.
    ///
    /// # Panics
    ///
    /// When a step fails.
    pub fn migrate_slot(&self, slot: u16, to: usize, batch: usize, pause: Duration) {
        let Some(from) = self.owner_of(slot) else {
            panic!("no primary serves slot {slot}");
        };
        assert_ne!(from, to, "slot {slot} is already on node {to}");
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        let slot_text = slot.to_string();
        let step = |node: usize, args: &[&str]| match self.nodes[node].cli(args) {
            Ok(out) => out,
            Err(error) => panic!("migrating slot {slot}: {error}"),
        };
        step(
            to,
            &["CLUSTER", "SETSLOT", &slot_text, "IMPORTING", &from_id],
        );
        step(
            from,
            &["CLUSTER", "SETSLOT", &slot_text, "MIGRATING", &to_id],
        );
        let to_port = self.nodes[to].port().to_string();
        let batch_text = batch.max(1).to_string();
        loop {
            let keys = step(from, &["CLUSTER", "GETKEYSINSLOT", &slot_text, &batch_text]);
            let keys: Vec<&str> = keys.lines().filter(|key| !key.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let mut migrate = vec!["MIGRATE", "127.0.0.1", &to_port, "", "0", "5000", "KEYS"];
            migrate.extend(keys);
            step(from, &migrate);
            std::thread::sleep(pause);
        }
        step(to, &["CLUSTER", "SETSLOT", &slot_text, "NODE", &to_id]);
        step(from, &["CLUSTER", "SETSLOT", &slot_text, "NODE", &to_id]);
        for other in self.primaries() {
            if other != from && other != to {
                step(other, &["CLUSTER", "SETSLOT", &slot_text, "NODE", &to_id]);
            }
        }
        wait_until(
            "every node to see the migrated slot",
            CLUSTER_TIMEOUT,
            || self.owner_of(slot) == Some(to),
        );
    }

    /// Waits until a replica has taken over `slot` from the primary `old` (killed), and
    /// the cluster is ok again; answers the new primary's index.
    ///
    /// # Panics
    ///
    /// When that does not happen within 30 seconds.
    pub fn wait_for_failover(&self, slot: u16, old: usize) -> usize {
        self.wait_until_stable(Some((slot, old)));
        match self.owner_of(slot) {
            Some(owner) => owner,
            None => panic!("slot {slot} has no primary after the failover"),
        }
    }

    /// Waits until the replica at `index` has a live link to its primary.
    ///
    /// # Panics
    ///
    /// When it does not within 30 seconds.
    pub fn wait_for_replica(&self, index: usize) {
        wait_until("the replica to sync", CLUSTER_TIMEOUT, || {
            self.nodes[index]
                .info_field("replication", "master_link_status")
                .as_deref()
                == Some("up")
        });
    }

    /// A replica of the primary at `primary`, by index, once the primary lists one: its
    /// view of the cluster may not yet name the replicas `--cluster-create` gave it (seen
    /// on a loaded machine, where it listed none).
    ///
    /// # Panics
    ///
    /// When it lists none within 30 seconds.
    pub fn replica_of(&self, primary: usize) -> usize {
        let id = self.node_id(primary);
        wait_for("the primary to list a replica", CLUSTER_TIMEOUT, || {
            let text = self.nodes[primary]
                .cli(&["CLUSTER", "REPLICAS", &id])
                .ok()?;
            cluster_nodes(&text)
                .iter()
                .find_map(|node| self.index_of_port(node.port))
        })
    }
}

/// A Sentinel (`redis-server --sentinel`) on `127.0.0.1` watching one primary as
/// [`SENTINEL_PRIMARY_NAME`] (quorum 1, down after one second), killed on drop.
#[derive(Debug)]
pub struct RedisSentinel {
    server: RedisServer,
}

impl RedisSentinel {
    /// Starts a Sentinel watching the plain-TCP `primary` (without a password). `None`
    /// when `redis-server` is missing and not required.
    ///
    /// # Panics
    ///
    /// When it does not start.
    pub fn start(primary: &RedisServer) -> Option<Self> {
        let binary = find_binary(BINARY_ENV, "redis-server", "redis-server")?;
        let dir = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(error) => panic!("cannot create a directory for redis-sentinel: {error}"),
        };
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut config = String::new();
            let _ = writeln!(config, "port {port}");
            let _ = writeln!(config, "bind 127.0.0.1");
            let _ = writeln!(config, "dir {}", quoted(&dir.path().to_string_lossy()));
            let _ = writeln!(
                config,
                "sentinel monitor {SENTINEL_PRIMARY_NAME} 127.0.0.1 {} 1",
                primary.port()
            );
            let _ = writeln!(
                config,
                "sentinel down-after-milliseconds {SENTINEL_PRIMARY_NAME} 1000"
            );
            let _ = writeln!(
                config,
                "sentinel failover-timeout {SENTINEL_PRIMARY_NAME} 10000"
            );
            let path = dir.path().join("sentinel.conf");
            if let Err(error) = std::fs::write(&path, config) {
                panic!("cannot write {}: {error}", path.display());
            }
            let child = Command::new(&binary)
                .arg(&path)
                .arg("--sentinel")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let mut child = match child {
                Ok(child) => child,
                Err(error) => panic!("cannot run {}: {error}", binary.display()),
            };
            let deadline = Instant::now() + START_TIMEOUT;
            let started = loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last_error = format!("sentinel exited with {status}");
                    break false;
                }
                if answers_ping(port) {
                    break true;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_error = format!("no PONG from the sentinel on port {port}");
                    break false;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if started {
                return Some(Self {
                    server: RedisServer {
                        child: Some(child),
                        binary,
                        port,
                        bus_port: 0,
                        dir,
                        setup: ServerSetup::new(),
                    },
                });
            }
        }
        panic!("redis-sentinel did not start: {last_error}");
    }

    /// The Sentinel's port.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The port of the primary the Sentinel currently names.
    pub fn primary_port(&self) -> Option<u16> {
        let answer = self
            .server
            .cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_PRIMARY_NAME])
            .ok()?;
        answer.lines().nth(1)?.trim().parse().ok()
    }

    /// Waits until the Sentinel names a primary other than the one on `old_port`, and
    /// answers its port.
    ///
    /// # Panics
    ///
    /// When it does not within 30 seconds.
    pub fn wait_for_failover(&self, old_port: u16) -> u16 {
        let mut found = None;
        wait_until("the Sentinel to promote a replica", CLUSTER_TIMEOUT, || {
            found = self.primary_port().filter(|port| *port != old_port);
            found.is_some()
        });
        found.unwrap_or(old_port)
    }
}

fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut answer = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"+PONG\r\n"
}
