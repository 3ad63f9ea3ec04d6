//! `examples/webhook_bot.rs` run as a process, configured from the environment only: it
//! prints its ready line, echoes a LipaChat text through the stand-in gateway, exits 0
//! on SIGTERM with the store flushed, and exits 2 with one line when the key is missing.
//!
//! The example's binary is the one `cargo test` builds beside this test
//! (`target/<profile>/examples/webhook_bot`); when only this test was built, it is built
//! first with `cargo build --example webhook_bot`.

#![cfg(unix)]
#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lipachat::session::{Conversation, SledStore, WindowStore};
use lipachat_testkit::{MessageKind, StandInGateway};

const TOKEN: &str = "example-webhook-token-0123456789";
const BUSINESS: &str = "254110090747";
const CUSTOMER: &str = "254712345678";

/// The example's binary, built if it is not there yet.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/<profile>/examples/webhook_bot
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let binary = profile_dir.join("examples").join("webhook_bot");
    if !binary.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--example", "webhook_bot"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success(), "building the example failed");
    }
    binary
}

/// The example with only the variables given (and PATH).
fn bot(vars: &[(&str, String)]) -> Command {
    let mut command = Command::new(example_binary());
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command.envs(vars.iter().map(|(k, v)| (*k, v.as_str())));
    command
}

/// Waits for the child to exit, at most `limit`.
fn wait(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_bot_serves_echoes_and_stops_cleanly_on_sigterm() {
    let gateway = StandInGateway::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("sessions.db");
    let mut child = bot(&[
        ("LIPACHAT_API_KEY", gateway.api_key().to_owned()),
        ("LIPACHAT_BASE_URL", gateway.base_url()),
        ("LIPACHAT_WEBHOOK_TOKEN", TOKEN.to_owned()),
        ("LIPACHAT_STORE", store.display().to_string()),
        ("LIPACHAT_BIND", "127.0.0.1:0".to_owned()),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();

    let stdout = child.stdout.take().unwrap();
    let ready = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(60), ready)
        .await
        .expect("a ready line within a minute")
        .unwrap()
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("webhook_bot ready on ")
        .unwrap_or_else(|| panic!("not the ready line: {line:?}"))
        .to_owned();

    gateway.customer_writes(BUSINESS.parse().unwrap(), CUSTOMER.parse().unwrap());
    let body = serde_json::json!({"messageId": "in-process-1", "from": CUSTOMER, "to": BUSINESS,
        "profileName": "Jane", "type": "TEXT", "text": "are you there?"});
    let answer = reqwest::Client::new()
        .post(format!("{base}/webhooks/lipachat/{TOKEN}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(10);
    let echo = loop {
        let texts: Vec<_> = gateway
            .delivered()
            .into_iter()
            .filter(|m| m.kind == MessageKind::Text)
            .collect();
        if let Some(first) = texts.first() {
            break first.body.to_string();
        }
        assert!(Instant::now() < deadline, "no echo reached the gateway");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(echo.contains("echo: are you there?"), "{echo}");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = wait(&mut child, Duration::from_secs(30)).expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0));
    // Flushed and closed: the store opens again with the window.
    let reopened = SledStore::open(&store).unwrap();
    let chat = Conversation::parse(BUSINESS, CUSTOMER).unwrap();
    assert!(reopened.window(chat).await.unwrap().is_some());
}

#[test]
fn a_missing_key_exits_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let output = bot(&[
        ("LIPACHAT_WEBHOOK_TOKEN", TOKEN.to_owned()),
        (
            "LIPACHAT_STORE",
            dir.path().join("s.db").display().to_string(),
        ),
        ("LIPACHAT_BIND", "127.0.0.1:0".to_owned()),
    ])
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: LIPACHAT_API_KEY is not set"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
    assert!(!dir.path().join("s.db").exists(), "nothing was created");
}
