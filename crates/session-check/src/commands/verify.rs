//! `verify`: a sled store's integrity check, reported per tree.

use lipachat_session::{
    CheckpointReport, IntegrityReport, LastShutdown, OpenMode, SledConfig, StoreError, TreeTally,
};
use serde::Serialize;

use super::Exit;
use crate::cli::{StoreChoice, Verify};
use crate::error::CliError;
use crate::output::{Printer, Render};

/// What `verify` prints: the report, whether the store is intact, and whether a damaged
/// store was accepted.
#[derive(Debug, Serialize)]
struct VerifyView<'a> {
    #[serde(flatten)]
    report: &'a IntegrityReport,
    intact: bool,
    problems: Vec<String>,
    accepted: bool,
}

fn tally(tally: TreeTally) -> String {
    let noun = if tally.entries == 1 {
        "entry"
    } else {
        "entries"
    };
    format!("{} {noun}, checksum {:016x}", tally.entries, tally.checksum)
}

impl Render for VerifyView<'_> {
    fn human(&self) -> String {
        let report = self.report;
        let shutdown = match report.last_shutdown {
            LastShutdown::Clean => "clean",
            LastShutdown::Unclean => "not clean (a crash or a kill)",
            LastShutdown::RecordLost => "unknown: the integrity record is missing or unreadable",
            _ => "no record (a new store, or one made before the integrity check)",
        };
        let mut lines = vec![format!(
            "store {}: last shutdown {shutdown}; every tree read",
            report.path.display()
        )];
        for tree in &report.trees {
            let line = match tree.expected {
                Some(expected) if expected == tree.found => {
                    format!("{}: {}, as expected", tree.tree, tally(tree.found))
                }
                Some(expected) => format!(
                    "{}: expected {}, found {}",
                    tree.tree,
                    tally(expected),
                    tally(tree.found)
                ),
                None => format!(
                    "{}: {} (nothing to compare with)",
                    tree.tree,
                    tally(tree.found)
                ),
            };
            lines.push(line);
        }
        if let Some(CheckpointReport { durable, found }) = report.checkpoint {
            lines.push(format!(
                "checkpoint: the last durable one was {durable}, the store holds {found}"
            ));
        }
        if let Some(backup) = &report.backup {
            lines.push(format!(
                "the files before recovery were copied to {}",
                backup.display()
            ));
        }
        lines.push(match (self.intact, self.accepted) {
            (true, _) => "intact".to_owned(),
            (false, false) => format!("damaged: {}", self.problems.join("; ")),
            (false, true) => format!(
                "damaged: {}; accepted: what the store holds is now its reference",
                self.problems.join("; ")
            ),
        });
        lines.join("\n")
    }
}

/// `verify [--accept]`: exit 0 intact (or damaged and accepted), 2 damaged. Opens an
/// existing sled store only; Redis has no such check here.
pub fn verify(store: &StoreChoice, args: &Verify, json: bool) -> Result<Exit, CliError> {
    let Verify { accept } = *args;
    let StoreChoice::Sled(path) = store else {
        return Err(CliError::Usage(
            "verify checks a sled store's files; a Redis server keeps its own (see redis-check-aof and redis-check-rdb)".to_owned(),
        ));
    };
    let printer = Printer::new(json);
    let opened = SledConfig::new(path)
        .mode(OpenMode::Existing)
        .accept_damage(accept)
        .full_check(true)
        .open();
    let (opened, report) = match opened {
        Ok(store) => (true, store.integrity().clone()),
        Err(StoreError::Damaged { report }) => (false, *report),
        Err(other) => return Err(other.into()),
    };
    let problems = report.problems();
    let intact = problems.is_empty();
    let accepted = !intact && accept && opened;
    printer.emit(&VerifyView {
        report: &report,
        intact,
        problems,
        accepted,
    })?;
    if intact || accepted {
        return Ok(Exit::Success);
    }
    Err(CliError::Damaged(report.to_string()))
}
