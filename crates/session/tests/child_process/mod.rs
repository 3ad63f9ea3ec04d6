//! Running one of a test binary's own ignored tests as a child process, for tests that
//! kill a store's process (SIGKILL) at some point and then check what it left.

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
