//! Running one of a test binary's own ignored tests as a child process, for tests that
//! kill a store's process (SIGKILL) at some point and then check what it left.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Starts this test binary again running only the ignored test `name`, with `env` set to
/// `path` (the child's store directory) and its stdout piped for the parent to follow.
pub fn spawn_test_child(name: &str, env: &str, path: &Path) -> Child {
    Command::new(std::env::current_exe().expect("the test binary's path"))
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(env, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the child test process starts")
}

/// Runs the ignored test `name` as [`spawn_test_child`] does, reads its `ack N` lines
/// until `wanted` of them, then kills it with SIGKILL; the acknowledged `N`s.
#[allow(dead_code)] // Not every test binary that includes this module kills on acks.
pub fn acknowledged_until_killed(name: &str, env: &str, path: &Path, wanted: usize) -> Vec<u64> {
    let mut child = spawn_test_child(name, env, path);
    let stdout = BufReader::new(child.stdout.take().expect("the child's stdout is piped"));
    let mut acknowledged = Vec::new();
    for line in stdout.lines() {
        let line = line.expect("the child's stdout reads");
        if let Some(i) = line.strip_prefix("ack ") {
            acknowledged.push(i.parse::<u64>().expect("an ack names a number"));
            if acknowledged.len() == wanted {
                break;
            }
        }
    }
    child.kill().expect("the child is killed"); // SIGKILL on Unix
    child.wait().expect("the killed child is reaped");
    assert_eq!(acknowledged.len(), wanted, "the child stopped early");
    acknowledged
}
