//! Disk and memory per conversation, measured in a child process that holds nothing but
//! the store.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lipachat_session::{Durability, SledConfig, SledStore, WindowStore};

use crate::data::member;
use crate::measure::progress;

/// What the child measured.
#[derive(Debug, Default, Clone, Copy)]
pub struct Footprint {
    /// Bytes of the database directory after a flush and reopen.
    pub disk_bytes: u64,
    /// The rise of resident memory while opening the store and loading the pairs.
    pub rss_bytes: u64,
}

/// Resident set size of this process, from `/proc/self/status`.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or(0, |kb| kb * 1024)
}

/// The bytes of the files below `path`.
pub fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Runs the child and reads its figures.
pub fn measure(dir: &Path, n: usize) -> Result<Footprint, Box<dyn std::error::Error>> {
    progress(&format!(
        "disk and memory footprint: loading {n} conversations in a child process"
    ));
    let output = Command::new(std::env::current_exe()?)
        .arg("--footprint-child")
        .arg(dir)
        .arg("--conversations")
        .arg(n.to_string())
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "footprint child failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let text = String::from_utf8(output.stdout)?;
    let mut numbers = text.split_whitespace().map(str::parse::<u64>);
    match (numbers.next(), numbers.next()) {
        (Some(Ok(disk_bytes)), Some(Ok(rss_bytes))) => Ok(Footprint {
            disk_bytes,
            rss_bytes,
        }),
        _ => Err(format!("footprint child printed {text:?}").into()),
    }
}

/// The child: open, load `n` pairs through the public record call, measure, flush, reopen.
pub async fn child(dir: &Path, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let path = dir.join("footprint");
    let before = rss_bytes();
    let store = Arc::new(
        SledConfig::new(&path)
            .durability(Durability::Periodic {
                interval: Duration::from_millis(500),
            })
            .open()?,
    );
    let now = Utc::now();
    let tasks = 8u64;
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut i = task;
                while i < n as u64 {
                    if let Some((conversation, at)) = member(i, now)
                        && let Err(error) = store.record_inbound(conversation, at).await
                    {
                        eprintln!("record failed: {error}");
                    }
                    i += tasks;
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await?;
    }
    let after = rss_bytes();
    store.flush().await?;
    drop(store);
    drop(SledStore::open(&path)?);
    println!("{} {}", dir_bytes(&path), after.saturating_sub(before));
    Ok(())
}
