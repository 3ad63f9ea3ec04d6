//! The command line as people write it: durations in humantime's forms (bare seconds still
//! work for `--margin`), `help` as a command, and `--help` grouping the commands by whether
//! they change the store.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::TimeDelta;
use common::{BUSINESS, CUSTOMER, Cli, T0, at, send_contact};

#[test]
fn closing_within_takes_humantime_durations() {
    let cli = Cli::new();
    cli.run(&["record", BUSINESS, CUSTOMER, "--at", T0])
        .expect(0);
    // Seen at T0 + 22h30m, the window closes in exactly 1h30m.
    let now = at(TimeDelta::minutes(22 * 60 + 30));
    let listed = |within: &str| {
        cli.run(&["list", "--json", "--now", &now, "--closing-within", within])
            .expect(0)
            .json_lines()
            .len()
    };
    assert_eq!(listed("1h30m"), 1);
    assert_eq!(listed("1h 30m"), 1);
    assert_eq!(listed("1h29m"), 0);
    assert_eq!(listed("90min"), 1);
    assert_eq!(listed("2d"), 1);
    assert_eq!(listed("5400s"), 1);
    assert_eq!(listed("5399s"), 0);
}

#[test]
fn margin_takes_humantime_durations_and_bare_seconds() {
    let cli = Cli::new();
    cli.run(&["record", BUSINESS, CUSTOMER, "--at", T0])
        .expect(0);
    // Seen at T0 + 23h58m, the window closes in 2 minutes.
    let late = at(TimeDelta::minutes(23 * 60 + 58));
    let decision = |margin: &str| {
        let run = cli.run(&send_contact(
            CUSTOMER,
            &["--dry-run", "--json", "--now", &late, "--margin", margin],
        ));
        run.json()["decision"].as_str().unwrap().to_owned()
    };
    assert_eq!(decision("90"), "open");
    assert_eq!(decision("90s"), "open");
    assert_eq!(decision("1m30s"), "open");
    assert_eq!(decision("1m 59s"), "open");
    assert_eq!(decision("120"), "closed");
    assert_eq!(decision("2m"), "closed");
    assert_eq!(decision("1h"), "closed");
}

#[test]
fn a_duration_that_cannot_be_read_is_a_usage_error_naming_the_option() {
    let cli = Cli::new();
    let send = |margin: &str| {
        let mut args = send_contact(CUSTOMER, &["--dry-run", "--margin"]);
        args.push(margin);
        cli.run(&args)
    };
    let list = |within: &str| cli.run(&["list", "--closing-within", within]);
    for (run, needles) in [
        (list("90"), vec!["--closing-within", "unit", "90s"]),
        (list("-5m"), vec!["--closing-within", "1h30m"]),
        (list("soon"), vec!["--closing-within", "soon"]),
        (list("3 fortnights"), vec!["--closing-within", "fortnights"]),
        (send("1.5"), vec!["--margin", "1.5"]),
        (send("-1s"), vec!["--margin"]),
        (
            send("1d"),
            vec!["--margin", "shorter than the 24-hour window"],
        ),
        (
            send("86400"),
            vec!["--margin", "shorter than the 24-hour window"],
        ),
    ] {
        run.expect_error(&needles);
    }
    // No usage error created the database.
    assert!(!cli.db().exists());
}

#[test]
fn help_is_a_command_too() {
    let cli = Cli::new();
    let run = cli.run_raw(&["help"], None).expect(0);
    assert!(run.stdout.contains("Usage: session-check"), "{run:?}");
    assert!(run.stdout.contains("Exit status"), "{run:?}");
    assert_eq!(run.stderr, "");
    let run = cli.run_raw(&["help", "send-contact"], None).expect(0);
    assert!(run.stdout.contains("--dry-run"), "{run:?}");
    let run = cli.run_raw(&["help", "timeline"], None).expect(0);
    assert!(run.stdout.contains("BUSINESS"), "{run:?}");
    assert!(!cli.db().exists());
}

/// The lines of the section that starts with a line beginning with `heading`, up to the
/// next blank line.
fn section<'a>(text: &'a str, heading: &str) -> Vec<&'a str> {
    let mut lines = text.lines().skip_while(|line| !line.starts_with(heading));
    assert!(lines.next().is_some(), "no {heading:?} section in {text}");
    lines.take_while(|line| !line.trim().is_empty()).collect()
}

/// The command names a help section lists (the first word of each line).
fn names<'a>(lines: &[&'a str]) -> Vec<&'a str> {
    lines
        .iter()
        .filter_map(|line| line.split_whitespace().next())
        .collect()
}

#[test]
fn help_groups_the_commands_by_whether_they_change_the_store() {
    let cli = Cli::new();
    let help = cli.run_raw(&["--help"], None).expect(0).stdout;
    let mut reading = names(&section(&help, "Commands that only read"));
    let changing = names(&section(&help, "Commands that change the store"));
    reading.sort_unstable();
    assert_eq!(
        reading,
        [
            "costs",
            "export",
            "list",
            "pending",
            "status",
            "templates",
            "timeline",
            "verify"
        ],
        "{help}"
    );
    for name in [
        "record",
        "ingest",
        "import",
        "send-contact",
        "deliver",
        "forget",
        "optout",
        "optin",
    ] {
        assert!(changing.contains(&name), "{name} in {changing:?}: {help}");
    }
    // No other list of every command: each command is named once, in its group.
    assert!(!help.contains("\nCommands:\n"), "{help}");

    // export says what it covers and what it leaves out.
    let export = cli
        .run_raw(&["export", "--help"], None)
        .expect(0)
        .stdout
        .to_lowercase();
    for covered in [
        "windows",
        "queued messages",
        "invitations",
        "user ids",
        "groups",
        "aliases",
        "redelivery memory",
        "not exported",
        "send outcomes",
    ] {
        assert!(export.contains(covered), "{covered:?} in {export}");
    }
}
