//! A throwaway `redis-server` for tests and benchmarks (feature `test-server`).
//!
//! [`RedisServer::start`] runs `redis-server` on a free loopback port with its data in a
//! temporary directory, durable (`appendonly yes`, `appendfsync always`, no snapshots),
//! and kills it when dropped. Without `redis-server` on `PATH` it returns `None`, so
//! tests can skip, unless the environment sets `REQUIRE_REDIS=1` (as CI does), in which
//! case it panics. `REDIS_SERVER` names another binary.
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

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable that makes a missing `redis-server` a failure.
pub const REQUIRE_ENV: &str = "REQUIRE_REDIS";
/// The environment variable naming the `redis-server` binary (default: from `PATH`).
pub const BINARY_ENV: &str = "REDIS_SERVER";

/// How long a start may take before it counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A `redis-server` child process on `127.0.0.1`, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    binary: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
}

fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

fn free_port() -> u16 {
    match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()) {
        Ok(address) => address.port(),
        Err(error) => panic!("no free loopback port for redis-server: {error}"),
    }
}

impl RedisServer {
    /// Starts a server, or returns `None` when `redis-server` is not installed and
    /// `REQUIRE_REDIS=1` is not set.
    ///
    /// # Panics
    ///
    /// When `redis-server` is missing and required, or it is there but does not start.
    pub fn start() -> Option<Self> {
        let binary = PathBuf::from(std::env::var_os(BINARY_ENV).unwrap_or("redis-server".into()));
        match Command::new(&binary).arg("--version").output() {
            Ok(output) if output.status.success() => {}
            Ok(output) => panic!(
                "{} --version failed: {}",
                binary.display(),
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(error) if required() => panic!(
                "{REQUIRE_ENV}=1 but {} cannot be run ({error}); install it (Debian/Ubuntu: apt-get install redis-server)",
                binary.display()
            ),
            Err(error) => {
                eprintln!(
                    "skipping: {} cannot be run ({error}); install redis-server (apt-get install redis-server) to run the Redis tests",
                    binary.display()
                );
                return None;
            }
        }
        let dir = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(error) => panic!("cannot create a directory for redis-server: {error}"),
        };
        let mut server = Self {
            child: None,
            binary,
            port: 0,
            dir,
        };
        // Another process may take the port between our probe and redis-server's bind:
        // try a few.
        let mut last_error = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.spawn() {
                Ok(()) => return Some(server),
                Err(error) => last_error = error,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = self.dir.path().join("redis.log");
        let mut child = Command::new(&self.binary)
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--dir"])
            .arg(self.dir.path())
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
                "--logfile",
            ])
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("exited with {status}; its log:\n{log}"));
            }
            if self.answers_ping() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "no PONG on port {} within {START_TIMEOUT:?}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut answer = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }

    /// The URL to connect to: `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The port.
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
