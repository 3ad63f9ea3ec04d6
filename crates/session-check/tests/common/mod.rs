//! Running the built `session-check` binary against a temporary database.
#![allow(clippy::unwrap_used, dead_code)]

pub mod gateway;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

/// The business number used throughout.
pub const BUSINESS: &str = "254110090747";
/// The customer, in the spaced form people type.
pub const CUSTOMER: &str = "+254 712 345 678";
/// The customer's digits.
pub const CUSTOMER_DIGITS: &str = "254712345678";
/// The instant most tests start from.
pub const T0: &str = "2026-11-23T10:00:00Z";

/// `--on-closed queue` with its template.
pub const QUEUE: [&str; 6] = [
    "--on-closed",
    "queue",
    "--template",
    "contact_share",
    "--language",
    "en",
];

/// `--on-closed template` with its template.
pub const TEMPLATE: [&str; 6] = [
    "--on-closed",
    "template",
    "--template",
    "contact_share",
    "--language",
    "en",
];

/// `send-contact BUSINESS customer --name "Support desk" --phone "+254 700 000 001"`, then
/// `extra`.
pub fn send_contact<'a>(customer: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "send-contact",
        BUSINESS,
        customer,
        "--name",
        "Support desk",
        "--phone",
        "+254 700 000 001",
    ];
    args.extend_from_slice(extra);
    args
}

/// `send-template BUSINESS CUSTOMER --template order_update --language en`, then `extra`.
pub fn order_update<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec![
        "send-template",
        BUSINESS,
        CUSTOMER,
        "--template",
        "order_update",
        "--language",
        "en",
    ];
    all.extend_from_slice(extra);
    all
}

/// The path of a body of the webhook fixture corpus (crates/api/tests/fixtures/webhooks,
/// whose README cites each body's source).
pub fn fixture(name: &str) -> String {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "api",
        "tests",
        "fixtures",
        "webhooks",
        name,
    ]
    .iter()
    .collect();
    path.to_str().unwrap().to_owned()
}

/// `T0` as a time.
pub fn t0() -> DateTime<Utc> {
    T0.parse().unwrap()
}

/// `T0` moved by `by`, as RFC 3339 text.
pub fn at(by: TimeDelta) -> String {
    (t0() + by).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// What one run printed, and how it ended.
#[derive(Debug)]
pub struct Run {
    /// The exit status.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Every stdout line, parsed as JSON.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not a JSON line: {line:?}: {e}\n{self:?}"))
            })
            .collect()
    }

    /// The one JSON object printed.
    pub fn json(&self) -> Value {
        let mut lines = self.json_lines();
        assert_eq!(lines.len(), 1, "expected one JSON line: {self:?}");
        lines.remove(0)
    }

    /// Asserts the exit status, showing the whole run when it differs.
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(self.code, code, "unexpected exit status: {self:#?}");
        self
    }

    /// Asserts an error run: exit 2, nothing on stdout, one line on stderr containing
    /// every one of `needles`.
    pub fn expect_error(self, needles: &[&str]) -> Self {
        assert_eq!(self.code, 2, "expected exit status 2: {self:#?}");
        assert_eq!(
            self.stdout, "",
            "an error prints nothing on stdout: {self:#?}"
        );
        self.expect_error_line(needles)
    }

    /// Asserts an error run under `--json`: exit 2, nothing on stdout, and one JSON object
    /// on stderr whose `error` contains every one of `needles`; returns the object.
    pub fn expect_json_error(&self, needles: &[&str]) -> Value {
        assert_eq!(
            self.stdout, "",
            "an error prints nothing on stdout: {self:#?}"
        );
        self.json_error_line(needles)
    }

    /// Asserts exit 2 and exactly one line on stderr, a JSON object with a string `error`
    /// containing every one of `needles` and a string `kind`; returns the object. Results
    /// may be on stdout.
    pub fn json_error_line(&self, needles: &[&str]) -> Value {
        assert_eq!(self.code, 2, "expected exit status 2: {self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one stderr line: {self:#?}");
        let error: Value = serde_json::from_str(lines[0])
            .unwrap_or_else(|e| panic!("stderr is not one JSON object ({e}): {self:#?}"));
        let message = error["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{self:#?}"));
        assert!(error["kind"].is_string(), "{self:#?}");
        for needle in needles {
            assert!(
                message.contains(needle),
                "error lacks {needle:?}: {self:#?}"
            );
        }
        error
    }

    /// Asserts exactly one line on stderr containing every one of `needles`.
    pub fn expect_error_line(self, needles: &[&str]) -> Self {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one stderr line: {self:#?}");
        assert!(lines[0].starts_with("error: "), "{self:#?}");
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "stderr lacks {needle:?}: {self:#?}"
            );
        }
        self
    }
}

/// The binary, a temporary database, and the environment the child gets.
pub struct Cli {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    /// A secret that must never appear in any output.
    secret: Option<String>,
}

impl Cli {
    /// A fresh temporary directory; the database is `sessions.db` inside it.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            env: Vec::new(),
            secret: None,
        }
    }

    /// The same, with `LIPACHAT_API_KEY` and `LIPACHAT_BASE_URL` for a gateway; every run
    /// then checks that the key appears in no output.
    pub fn with_gateway(base_url: &str, api_key: &str) -> Self {
        let mut cli = Self::new();
        cli.env.push(("LIPACHAT_BASE_URL".into(), base_url.into()));
        cli.env.push(("LIPACHAT_API_KEY".into(), api_key.into()));
        cli.secret = Some(api_key.into());
        cli
    }

    /// Sets an environment variable for the following runs.
    pub fn env(&mut self, name: &str, value: &str) -> &mut Self {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.into(), value.into()));
        self
    }

    /// Removes an environment variable for the following runs.
    pub fn env_remove(&mut self, name: &str) -> &mut Self {
        self.env.retain(|(n, _)| n != name);
        self
    }

    /// The temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The database directory.
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("sessions.db")
    }

    /// Runs with `--db <the database>` first, then `args`.
    pub fn run(&self, args: &[&str]) -> Run {
        let db = self.db();
        let mut full = vec!["--db", db.to_str().unwrap()];
        full.extend_from_slice(args);
        self.run_raw(&full, None)
    }

    /// Runs like [`Cli::run`], retrying (up to 10 s) while the database this test process
    /// just closed is still reported in use: a raw `sled::Db`'s flusher thread, or a child
    /// that a concurrent test is spawning (it holds copies of our descriptors until it
    /// execs), can keep the lock a moment after the handle is dropped.
    pub fn run_once_released(&self, args: &[&str]) -> Run {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let run = self.run(args);
            if !run.stderr.contains("is in use by another process")
                || std::time::Instant::now() > deadline
            {
                return run;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Runs with `--db`, feeding `stdin`.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let db = self.db();
        let mut full = vec!["--db", db.to_str().unwrap()];
        full.extend_from_slice(args);
        self.run_raw(&full, Some(stdin))
    }

    /// Runs exactly `args` (no `--db`), in the temporary directory.
    pub fn run_raw(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_session-check"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("LIPACHAT_API_KEY")
            .env_remove("LIPACHAT_BASE_URL")
            .env_remove("SESSION_CHECK_DB")
            .env_remove("SESSION_CHECK_STORE")
            .env_remove("SESSION_CHECK_DEFAULT_COUNTRY")
            .env_remove("RUST_LOG")
            .env_remove("LIPACHAT_REDIS_CA_CERT")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in &self.env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(input.as_bytes()).unwrap();
        }
        let output = child.wait_with_output().unwrap();
        let run = Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        };
        if let Some(secret) = &self.secret {
            assert!(
                !run.stdout.contains(secret.as_str()) && !run.stderr.contains(secret.as_str()),
                "the API key appeared in the output: {run:#?}"
            );
        }
        run
    }
}
