//! The top-level `--help` (and `session-check help`): the commands in two groups, those
//! that only read the store and those that change it, in place of clap's single list.

use clap::Command;

/// The commands that only read: they never create a store and never change one.
/// `send-contact --dry-run` reads too, but the command itself sends.
const READING: [&str; 8] = [
    "status",
    "list",
    "pending",
    "timeline",
    "costs",
    "templates",
    "export",
    "verify",
];

/// Whether the command named `name` changes the store (or may create it). A command not
/// named in [`READING`] does.
pub fn changes_store(name: &str) -> bool {
    !READING.contains(&name)
}

/// `command` with a help template that lists its subcommands in the two groups.
pub fn grouped(command: Command) -> Command {
    let subcommands: Vec<(String, String)> = command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set())
        .map(|sub| {
            let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
            (sub.get_name().to_owned(), about)
        })
        .collect();
    let width = subcommands
        .iter()
        .map(|(name, _)| name.len())
        .max()
        .unwrap_or(0)
        + 2;
    let list = |changing: bool| -> String {
        subcommands
            .iter()
            .filter(|(name, _)| changes_store(name) == changing)
            .map(|(name, about)| format!("  {name:<width$}{about}\n"))
            .collect()
    };
    let template = format!(
        "{{before-help}}{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n\
         Commands that only read (they never create a store, and change nothing):\n{}\n\
         Commands that change the store (record, ingest, import, optout, optin and send-contact create it if missing):\n{}\n\
         session-check help COMMAND (or COMMAND --help) shows a command's own options.\n\n\
         {{all-args}}{{after-help}}",
        list(false),
        list(true),
    );
    // Listed above; clap's own list of every command would repeat them.
    let names: Vec<String> = subcommands.into_iter().map(|(name, _)| name).collect();
    names
        .iter()
        .fold(command, |command, name| {
            command.mut_subcommand(name, |sub| sub.hide(true))
        })
        .help_template(template)
        .override_usage("session-check [OPTIONS] <COMMAND> [ARGS]")
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;
    use crate::cli::Cli;

    #[test]
    fn every_reading_command_exists() {
        let command = Cli::command();
        for name in READING {
            assert!(
                command.find_subcommand(name).is_some(),
                "{name} is not a command"
            );
        }
        assert!(changes_store("deliver") && changes_store("forget"));
        assert!(!changes_store("export"));
    }
}
