//! `import` and `export`: a failed import leaves no new database behind, a time RFC 3339
//! cannot write survives the round trip, and both show a progress bar on a terminal only
//! (none when stderr is not a terminal, or with `--json`).
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{BUSINESS, CUSTOMER, CUSTOMER_DIGITS, Cli, T0};

const HEADER: &str = r#"{"kind":"header","format":"lipachat-session-export","version":2}"#;

fn window_line(customer: &str) -> String {
    format!(
        r#"{{"kind":"window","business":"{BUSINESS}","customer":"{customer}","last_inbound":"{T0}","gateway_closed_at":null}}"#
    )
}

#[test]
fn a_failed_import_leaves_no_new_database_behind() {
    let cli = Cli::new();
    // A line that is not JSON, a time from the future, a header of another format.
    let future = r#"{"kind":"window","business":"254110090747","customer":"254712345678","last_inbound":"9999-01-01T00:00:00.000Z","gateway_closed_at":null}"#;
    for input in [
        format!("{HEADER}\n{{not json\n"),
        format!("{HEADER}\n{future}\n"),
        r#"{"kind":"header","format":"something-else","version":1}"#.to_owned(),
    ] {
        cli.run_with_stdin(&["import"], &input)
            .expect_error(&["line"]);
        assert!(!cli.db().exists(), "a store was left at {:?}", cli.db());
    }
    // An empty directory given as the store stays, empty.
    std::fs::create_dir(cli.db()).unwrap();
    cli.run_with_stdin(&["import"], &format!("{HEADER}\n{{not json\n"))
        .expect_error(&["line 2"]);
    assert!(cli.db().is_dir());
    assert_eq!(std::fs::read_dir(cli.db()).unwrap().count(), 0);
    std::fs::remove_dir(cli.db()).unwrap();

    // A good import creates it.
    let good = format!("{HEADER}\n{}\n", window_line(CUSTOMER_DIGITS));
    cli.run_with_stdin(&["import"], &good).expect(0);
    assert!(cli.db().is_dir());
    // A failed import into an existing store leaves it, and what it holds.
    cli.run_with_stdin(&["import"], &format!("{HEADER}\n{{not json\n"))
        .expect_error(&["line 2"]);
    let run = cli.run(&["status", BUSINESS, CUSTOMER, "--json"]).expect(1);
    assert_eq!(run.json()["last_inbound"], T0);
}

#[test]
fn no_progress_bar_when_stderr_is_not_a_terminal() {
    let cli = Cli::new();
    let input: String = std::iter::once(HEADER.to_owned())
        .chain((0..500).map(|i| window_line(&format!("2547123{i:05}"))))
        .collect::<Vec<_>>()
        .join("\n");
    for json in [false, true] {
        let mut args = vec!["import"];
        if json {
            args.push("--json");
        }
        let run = cli.run_with_stdin(&args, &input).expect(0);
        assert_eq!(run.stderr, "", "{run:?}");
        let mut args = vec!["export"];
        if json {
            args.push("--json");
        }
        let run = cli.run(&args).expect(0);
        assert_eq!(run.stderr, "", "{run:?}");
        assert_eq!(run.stdout.lines().count(), 501);
    }
}

/// Runs `shell` (a command line for `sh`) under a pseudo-terminal with `script`, and
/// returns what the terminal showed; `None` when `script` is not installed.
fn on_a_terminal(cli: &Cli, shell: &str) -> Option<String> {
    let output = Command::new("script")
        .args(["-q", "-e", "-c", shell, "/dev/null"])
        .current_dir(cli.dir())
        .env_remove("SESSION_CHECK_DB")
        .env_remove("SESSION_CHECK_STORE")
        .env_remove("RUST_LOG")
        .env("TERM", "xterm")
        .output();
    match output {
        Ok(output) => {
            assert!(output.status.success(), "{output:?}");
            Some(String::from_utf8_lossy(&output.stdout).into_owned())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("skipped: script (util-linux) is not installed");
            None
        }
        Err(error) => panic!("script: {error}"),
    }
}

#[test]
fn import_and_export_show_a_progress_bar_on_a_terminal_but_not_with_json() {
    let cli = Cli::new();
    let input: String = std::iter::once(HEADER.to_owned())
        .chain((0..500).map(|i| window_line(&format!("2547123{i:05}"))))
        .collect::<Vec<_>>()
        .join("\n");
    let file = cli.dir().join("backup.jsonl");
    std::fs::write(&file, &input).unwrap();
    let binary = env!("CARGO_BIN_EXE_session-check");
    let db = cli.db();
    let run =
        |args: &str| on_a_terminal(&cli, &format!("'{binary}' --db '{}' {args}", db.display()));
    let Some(shown) = run(&format!("import < '{}'", file.display())) else {
        return;
    };
    assert!(shown.contains("import: read"), "{shown}");
    assert!(shown.contains("KiB"), "{shown}");
    assert!(shown.contains("imported 500 window(s)"), "{shown}");
    let shown = run("export > exported.jsonl").unwrap();
    assert!(shown.contains("export: wrote 501 lines"), "{shown}");
    assert_eq!(
        std::fs::read_to_string(cli.dir().join("exported.jsonl"))
            .unwrap()
            .lines()
            .count(),
        501
    );

    // Lines exported to the terminal itself: no bar drawn over them.
    let shown = run("export").unwrap();
    assert!(!shown.contains("export: wrote"), "{shown}");
    assert_eq!(shown.lines().count(), 501, "{shown}");

    // With --json, nothing but the result.
    let shown = run(&format!("import --json < '{}'", file.display())).unwrap();
    assert!(!shown.contains("import:"), "{shown}");
    assert!(shown.trim_end().ends_with('}'), "{shown}");
    let shown = run("export --json > exported.jsonl").unwrap();
    assert_eq!(shown, "", "{shown}");
}

/// A `--at` with a large offset stores a time in the year -1, which RFC 3339 cannot write:
/// the export writes it in ISO 8601's signed form, and the export imports into a new store
/// with the same window (before, the import refused the whole file).
#[test]
fn a_time_before_the_year_0_survives_export_and_import() {
    let source = Cli::new();
    source
        .run(&[
            "record",
            BUSINESS,
            CUSTOMER,
            "--at",
            "0000-01-01T00:00:00+23:59",
        ])
        .expect(0);
    let exported = source.run(&["export"]).expect(0).stdout;
    assert!(
        exported.contains("\"last_inbound\":\"-0001-12-31T00:01:00.000Z\""),
        "{exported}"
    );
    let target = Cli::new();
    target.run_with_stdin(&["import"], &exported).expect(0);
    let status = |cli: &Cli| cli.run(&["status", BUSINESS, CUSTOMER, "--json"]).json();
    let (before, after) = (status(&source), status(&target));
    assert_eq!(after["last_inbound"], before["last_inbound"]);
    assert_eq!(after["last_inbound"], "-0001-12-31T00:01:00Z");
    assert_eq!(target.run(&["export"]).expect(0).stdout, exported);
}
