//! `export` and `import`: the whole database as JSON lines, for backups and for moving
//! between versions or stores.

use std::io::{self, BufWriter};

use lipachat_session::Store;
use lipachat_session::export::{Transfer, export as export_to, import as import_from};
use serde::Serialize;

use super::{Context, Exit};
use crate::error::CliError;
use crate::output::Render;
use crate::progress::Progress;

/// `export`: JSON lines on stdout (in either output mode: they are the data), with a
/// progress bar on a terminal's stderr. Exit 2 when corrupt records had to be skipped,
/// since the backup is then incomplete.
pub async fn export<S: Store>(context: &Context<S>) -> Result<Exit, CliError> {
    let progress = Progress::export(context.printer.is_json());
    let out = progress.writer(BufWriter::new(io::stdout().lock()));
    let exported = export_to(context.sessions.store(), out).await;
    progress.finish(if exported.is_ok() { "done" } else { "failed" });
    let transfer = exported?;
    if transfer.unreadable_back_offs > 0 {
        eprintln!(
            "warning: {} unreadable marketing back-off(s) were exported as back-offs of {} days from now, so marketing stays withheld from those customers after an import (see the log for who)",
            transfer.unreadable_back_offs,
            lipachat_session::export::UNREADABLE_BACK_OFF_EXPORTED_FOR.num_days()
        );
    }
    if transfer.unreadable_consents > 0 {
        eprintln!(
            "warning: {} unreadable marketing consent record(s) were exported as opt-outs made now, so marketing stays withheld from those customers after an import until they opt in again (see the log for who)",
            transfer.unreadable_consents
        );
    }
    if transfer.skipped_corrupt > 0 {
        return Err(CliError::Incomplete(format!(
            "{} corrupt record(s) could not be read and are missing from the export",
            transfer.skipped_corrupt
        )));
    }
    Ok(Exit::Success)
}

/// What `import` prints: how much it read.
#[derive(Debug, Serialize)]
struct Imported {
    windows: u64,
    queued: u64,
    invitations: u64,
    users: u64,
    groups: u64,
    aliases: u64,
    seen: u64,
    consents: u64,
    back_offs: u64,
    free_entry_points: u64,
}

impl Render for Imported {
    fn human(&self) -> String {
        let mut line = format!(
            "imported {} window(s), {} queued message(s) and {} invitation(s)",
            self.windows, self.queued, self.invitations
        );
        if self.users + self.groups + self.aliases > 0 {
            line.push_str(&format!(
                ", with {} user id(s), {} group(s) and {} alias(es)",
                self.users, self.groups, self.aliases
            ));
        }
        if self.consents + self.back_offs + self.free_entry_points > 0 {
            line.push_str(&format!(
                "; {} marketing consent record(s), {} marketing back-off(s) and {} free entry point window(s)",
                self.consents, self.back_offs, self.free_entry_points
            ));
        }
        if self.seen > 0 {
            line.push_str(&format!(
                "; {} remembered inbound id(s) (the redelivery memory)",
                self.seen
            ));
        }
        line
    }
}

/// `import`: JSON lines from stdin, merged into the database (inbound times keep the
/// latest), with a progress bar on a terminal's stderr. A bad line is reported with its
/// number and nothing is imported.
pub async fn import<S: Store>(context: &Context<S>) -> Result<Exit, CliError> {
    let progress = Progress::import(context.printer.is_json());
    let imported = import_from(
        context.sessions.store(),
        progress.reader(io::stdin().lock()),
    )
    .await;
    progress.finish(if imported.is_ok() { "done" } else { "failed" });
    let Transfer {
        windows,
        queued,
        invitations,
        users,
        groups,
        aliases,
        seen,
        consents,
        back_offs,
        free_entry_points,
        ..
    } = imported?;
    context.printer.emit(&Imported {
        windows,
        queued,
        invitations,
        users,
        groups,
        aliases,
        seen,
        consents,
        back_offs,
        free_entry_points,
    })?;
    Ok(Exit::Success)
}
