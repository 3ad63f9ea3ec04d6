//! Under `--json` an error is one JSON object on stderr, so a script reads every line the
//! tool prints as JSON; results stay on stdout.
#![allow(clippy::unwrap_used)]

mod common;

use common::{BUSINESS, CUSTOMER, CUSTOMER_DIGITS, Cli, T0};

#[test]
fn a_command_error_is_one_json_object_on_stderr() {
    let cli = Cli::new();
    // No store at the path: a command that only reads refuses it.
    let error = cli
        .run(&["--json", "pending"])
        .expect_json_error(&["no store at"]);
    assert_eq!(error["kind"], "no_store");
    assert!(!cli.db().exists());

    // A bad import: the line is named, nothing on stdout.
    let error = cli
        .run_with_stdin(&["import", "--json"], "{not json\n")
        .expect_json_error(&["line 1"]);
    assert_eq!(error["kind"], "store");
}

#[test]
fn a_usage_error_is_one_json_object_on_stderr_too() {
    let cli = Cli::new();
    // --json after the command, and before it.
    for args in [
        vec!["status", BUSINESS, "not-a-phone", "--json"],
        vec!["--json", "status", BUSINESS, "not-a-phone"],
    ] {
        let error = cli.run(&args).expect_json_error(&["CUSTOMER"]);
        assert_eq!(error["kind"], "usage");
    }
    let error = cli
        .run(&["--json", "no-such-command"])
        .expect_json_error(&["no-such-command"]);
    assert_eq!(error["kind"], "usage");
    let error = cli
        .run_raw(&["--json"], None)
        .expect_json_error(&["no command given"]);
    assert_eq!(error["kind"], "usage");
    assert!(!cli.db().exists());
}

#[test]
fn results_stay_on_stdout_and_plain_errors_stay_plain() {
    let cli = Cli::new();
    let run = cli
        .run(&["record", BUSINESS, CUSTOMER, "--at", T0, "--json"])
        .expect(0);
    assert_eq!(run.json()["customer"], CUSTOMER_DIGITS);
    assert_eq!(run.stderr, "");
    // Without --json, an error is the usual line.
    cli.run(&["status", BUSINESS, "not-a-phone"])
        .expect_error(&["CUSTOMER"]);
    cli.run(&["--db", "other", "list"]).expect_error(&["--db"]);
}
