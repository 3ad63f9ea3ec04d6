//! The commands that need no gateway: record, status, list, forget, export, import, and
//! the command line's errors, run as the built binary against temporary databases.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::TimeDelta;
use common::{BUSINESS, CUSTOMER, CUSTOMER_DIGITS, Cli, T0, at};
use lipachat_session::Conversation;
use serde_json::json;

#[test]
fn record_opens_a_window_and_status_follows_it_through_time() {
    let cli = Cli::new();
    let run = cli
        .run(&["record", BUSINESS, CUSTOMER, "--now", T0])
        .expect(0);
    assert_eq!(
        run.stdout,
        "recorded an inbound message at 2026-11-23T10:00:00Z (it opened the window)\n\
         open: closes 2026-11-24T10:00:00Z (in 24h 0m)\n"
    );
    assert_eq!(run.stderr, "");

    // Global options after the command, and other spellings of the same numbers.
    let later = at(TimeDelta::seconds(30));
    let run = cli
        .run(&[
            "status",
            "+254-110-090-747",
            "(254) 712.345.678",
            "--now",
            &later,
        ])
        .expect(0);
    assert_eq!(
        run.stdout,
        "open: closes 2026-11-24T10:00:00Z (in 23h 59m)\n"
    );
    let run = cli
        .run(&["status", BUSINESS, CUSTOMER, "--now", &later, "--json"])
        .expect(0);
    assert_eq!(
        run.json(),
        json!({
            "business": BUSINESS, "customer": CUSTOMER_DIGITS, "state": "open",
            "last_inbound": T0, "expires_at": "2026-11-24T10:00:00Z",
            "remaining_secs": 86_370,
            "free_entry_point_until": null, "free_entry_point_confirmed": false,
            "marketing": "allowed", "marketing_retry_at": null
        })
    );
    // Before the command too.
    let run = cli
        .run(&["--json", "--now", &later, "status", BUSINESS, CUSTOMER])
        .expect(0);
    assert_eq!(run.json()["remaining_secs"], 86_370);

    // Whole seconds left, rounded down.
    let run = cli
        .run(&[
            "status",
            BUSINESS,
            CUSTOMER,
            "--json",
            "--now",
            "2026-11-24T09:59:59.900Z",
        ])
        .expect(0);
    assert_eq!(run.json()["remaining_secs"], 0);

    // At exactly 24 hours the window is closed.
    let end = "2026-11-24T10:00:00Z";
    let run = cli
        .run(&["status", BUSINESS, CUSTOMER, "--now", end])
        .expect(1);
    assert_eq!(run.stdout, "closed: since 2026-11-24T10:00:00Z (expired)\n");
    let run = cli
        .run(&["status", BUSINESS, CUSTOMER, "--now", end, "--json"])
        .expect(1);
    assert_eq!(
        run.json(),
        json!({
            "business": BUSINESS, "customer": CUSTOMER_DIGITS, "state": "closed",
            "last_inbound": T0, "expires_at": end, "remaining_secs": null,
            "free_entry_point_until": null, "free_entry_point_confirmed": false,
            "marketing": "allowed", "marketing_retry_at": null
        })
    );

    // Another customer of the same business never wrote.
    let run = cli
        .run(&["status", BUSINESS, "254799999999", "--now", T0])
        .expect(1);
    assert_eq!(
        run.stdout,
        "none: never messaged (no inbound message recorded)\n"
    );
    let run = cli
        .run(&["status", BUSINESS, "254799999999", "--json"])
        .expect(1);
    assert_eq!(
        run.json(),
        json!({
            "business": BUSINESS, "customer": "254799999999", "state": "none",
            "last_inbound": null, "expires_at": null, "remaining_secs": null,
            "free_entry_point_until": null, "free_entry_point_confirmed": false,
            "marketing": "allowed", "marketing_retry_at": null
        })
    );
}

#[test]
fn record_json_keeps_the_latest_time_and_milliseconds() {
    let cli = Cli::new();
    let now = at(TimeDelta::hours(2));
    let run = cli
        .run(&[
            "record",
            BUSINESS,
            CUSTOMER,
            "--json",
            "--now",
            &now,
            "--at",
            "2026-11-23T11:00:00.250Z",
        ])
        .expect(0);
    assert_eq!(
        run.json(),
        json!({
            "business": BUSINESS, "customer": CUSTOMER_DIGITS, "state": "open",
            "last_inbound": "2026-11-23T11:00:00.250Z",
            "expires_at": "2026-11-24T11:00:00.250Z", "remaining_secs": 82_800, "recorded_at": "2026-11-23T11:00:00.250Z", "opened": true
        })
    );
    // An older message (a late webhook) does not move the window back.
    let run = cli
        .run(&[
            "record", BUSINESS, CUSTOMER, "--json", "--now", &now, "--at", T0,
        ])
        .expect(0);
    let answer = run.json();
    assert_eq!(answer["last_inbound"], "2026-11-23T11:00:00.250Z");
    assert_eq!(answer["recorded_at"], T0);
    assert_eq!(answer["opened"], false);
    // Recording a message from long ago leaves a closed window: still a success.
    let run = cli
        .run(&[
            "record",
            BUSINESS,
            "254700000009",
            "--now",
            &now,
            "--at",
            "2026-11-20T10:00:00Z",
        ])
        .expect(0);
    assert_eq!(
        run.stdout,
        "recorded an inbound message at 2026-11-20T10:00:00Z\n\
         closed: since 2026-11-21T10:00:00Z (expired)\n"
    );
}

#[test]
fn record_refuses_a_time_more_than_five_minutes_ahead_and_stores_nothing() {
    let cli = Cli::new();
    let too_far = at(TimeDelta::minutes(5) + TimeDelta::seconds(1));
    cli.run(&["record", BUSINESS, CUSTOMER, "--now", T0, "--at", &too_far])
        .expect_error(&[
            "inbound time 2026-11-23T10:05:01Z",
            "ahead of the clock (2026-11-23T10:00:00Z)",
            "nothing was stored",
        ]);
    cli.run(&["status", BUSINESS, CUSTOMER, "--now", T0])
        .expect(1);
    // Exactly five minutes ahead is tolerated.
    let edge = at(TimeDelta::minutes(5));
    let run = cli
        .run(&[
            "record", BUSINESS, CUSTOMER, "--now", T0, "--at", &edge, "--json",
        ])
        .expect(0);
    assert_eq!(run.json()["last_inbound"], "2026-11-23T10:05:00Z");
    // Without --now, the system clock decides: a time in 2999 is refused.
    cli.run(&["record", BUSINESS, CUSTOMER, "--at", "2999-01-01T00:00:00Z"])
        .expect_error(&["ahead of the real clock"]);
}

/// Three conversations seen at T0 + 23 h: one closing in an hour, one in three, one closed.
fn three_conversations() -> Cli {
    let cli = Cli::new();
    let now = at(TimeDelta::hours(2));
    for (customer, inbound) in [
        ("254700000001", T0.to_owned()),
        ("254700000002", at(TimeDelta::hours(2))),
        ("254700000003", at(TimeDelta::days(-2))),
    ] {
        cli.run(&[
            "record", BUSINESS, customer, "--at", &inbound, "--now", &now,
        ])
        .expect(0);
    }
    cli
}

#[test]
fn list_shows_every_conversation_and_filters_by_state() {
    let cli = three_conversations();
    let now = at(TimeDelta::hours(23));
    let run = cli.run(&["list", "--now", &now]).expect(0);
    assert_eq!(
        run.stdout,
        "254110090747 254700000001 open: closes 2026-11-24T10:00:00Z (in 1h 0m)\n\
         254110090747 254700000002 open: closes 2026-11-24T12:00:00Z (in 3h 0m)\n\
         254110090747 254700000003 closed: since 2026-11-22T10:00:00Z (expired)\n"
    );
    let customers = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["list", "--json", "--now", &now];
        full.extend_from_slice(args);
        cli.run(&full)
            .expect(0)
            .json_lines()
            .iter()
            .map(|line| line["customer"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        customers(&[]),
        ["254700000001", "254700000002", "254700000003"]
    );
    assert_eq!(
        customers(&["--state", "open"]),
        ["254700000001", "254700000002"]
    );
    assert_eq!(customers(&["--state", "closed"]), ["254700000003"]);

    // Each line has the same window fields as `status` (which adds the consent fields).
    let lines = cli
        .run(&["list", "--json", "--now", &now])
        .expect(0)
        .json_lines();
    for line in &lines {
        let customer = line["customer"].as_str().unwrap();
        let mut status = cli
            .run(&["status", BUSINESS, customer, "--json", "--now", &now])
            .json();
        for consent in [
            "free_entry_point_until",
            "free_entry_point_confirmed",
            "marketing",
            "marketing_retry_at",
        ] {
            status.as_object_mut().unwrap().remove(consent);
        }
        assert_eq!(&status, line);
    }
}

#[test]
fn list_closing_within_keeps_open_windows_closing_by_then() {
    let cli = three_conversations();
    let now = at(TimeDelta::hours(23));
    let closing = |span: &str| -> Vec<String> {
        cli.run(&["list", "--json", "--now", &now, "--closing-within", span])
            .expect(0)
            .json_lines()
            .iter()
            .map(|line| line["customer"].as_str().unwrap().to_owned())
            .collect()
    };
    // now < expires_at <= now + D: the first window closes in exactly one hour.
    assert_eq!(closing("1h"), ["254700000001"]);
    assert_eq!(closing("60m"), ["254700000001"]);
    assert_eq!(closing("3599s"), Vec::<String>::new());
    assert_eq!(closing("3h"), ["254700000001", "254700000002"]);
    assert_eq!(closing("1d"), ["254700000001", "254700000002"]);
    // With --state open it is the same; the closed window never shows.
    let run = cli
        .run(&[
            "list",
            "--now",
            &now,
            "--closing-within",
            "90s",
            "--state",
            "open",
        ])
        .expect(0);
    assert_eq!(run.stdout, "no conversations match\n");
    let run = cli
        .run(&["list", "--json", "--now", &now, "--closing-within", "90s"])
        .expect(0);
    assert_eq!(run.stdout, "");
    cli.run(&["list", "--closing-within", "1h", "--state", "closed"])
        .expect_error(&["--closing-within", "--state closed"]);
}

#[test]
fn forget_erases_a_conversation() {
    let cli = Cli::new();
    cli.run(&["record", BUSINESS, CUSTOMER]).expect(0);
    let run = cli.run(&["forget", BUSINESS, CUSTOMER]).expect(0);
    assert_eq!(
        run.stdout,
        "forgot everything stored for 254110090747 254712345678\n"
    );
    cli.run(&["status", BUSINESS, CUSTOMER]).expect(1);
    let run = cli.run(&["forget", BUSINESS, CUSTOMER, "--json"]).expect(0);
    assert_eq!(
        run.json(),
        json!({"business": BUSINESS, "customer": CUSTOMER_DIGITS, "forgotten": false})
    );
    let run = cli.run(&["list"]).expect(0);
    assert_eq!(run.stdout, "no conversations match\n");
}

#[test]
fn export_and_import_move_windows_between_databases() {
    let source = three_conversations();
    let exported = source.run(&["export"]).expect(0);
    assert_eq!(exported.stderr, "");
    let lines = exported.json_lines();
    assert_eq!(lines.len(), 4, "a header and three windows: {exported:?}");
    assert_eq!(lines[0]["kind"], "header");

    let target = Cli::new();
    let run = target
        .run_with_stdin(&["import"], &exported.stdout)
        .expect(0);
    assert_eq!(
        run.stdout,
        "imported 3 window(s), 0 queued message(s) and 0 invitation(s)\n"
    );
    assert_eq!(target.run(&["export"]).expect(0).stdout, exported.stdout);
    let now = at(TimeDelta::hours(23));
    assert_eq!(
        target.run(&["list", "--now", &now]).stdout,
        source.run(&["list", "--now", &now]).stdout
    );
    // Importing again merges: nothing changes.
    let run = target
        .run_with_stdin(&["import", "--json"], &exported.stdout)
        .expect(0);
    assert_eq!(
        run.json(),
        json!({"windows": 3, "queued": 0, "invitations": 0, "users": 0, "groups": 0, "aliases": 0, "seen": 0, "consents": 0, "back_offs": 0, "free_entry_points": 0})
    );
    assert_eq!(target.run(&["export"]).stdout, exported.stdout);
}

#[test]
fn import_checks_every_line_before_writing_anything() {
    let source = three_conversations();
    let exported = source.run(&["export"]).expect(0).stdout;
    let mut broken: Vec<&str> = exported.lines().collect();
    broken.insert(2, "{\"kind\": \"window\", \"business\": \"nope\"}");
    let target = Cli::new();
    target
        .run_with_stdin(&["import"], &broken.join("\n"))
        .expect_error(&["import line 3"]);
    // Nothing was imported: the failed import left no store behind.
    target.run(&["list"]).expect_error(&["no store at"]);
    // No header: refused as well.
    let windows_only: Vec<&str> = exported.lines().skip(1).collect();
    target
        .run_with_stdin(&["import"], &windows_only.join("\n"))
        .expect_error(&["import line 1", "header"]);
    target
        .run_with_stdin(&["import"], "not json\n")
        .expect_error(&["import line 1"]);
}

#[test]
fn a_corrupt_record_is_reported_without_hiding_the_others() {
    let cli = Cli::new();
    cli.run(&["record", BUSINESS, "254700000001", "--now", T0])
        .expect(0);
    cli.run(&["record", BUSINESS, "254700000002", "--now", T0])
        .expect(0);
    {
        let db = sled::open(cli.db()).unwrap();
        let windows = db.open_tree("windows").unwrap();
        let broken = Conversation::parse(BUSINESS, "254700000002").unwrap();
        windows
            .insert(lipachat_session::SledStore::window_key(broken), &b"bad"[..])
            .unwrap();
        db.flush().unwrap();
    }
    // A value changed behind the store's back is damage: refused until accepted.
    cli.run_once_released(&["list", "--now", T0])
        .expect_error(&[
            "is damaged",
            "windows: 2 entries as expected, but the checksum differs",
        ]);
    let run = cli.run(&["verify"]).expect(2);
    assert!(run.stdout.contains("damaged: windows"), "{run:#?}");
    cli.run(&["verify", "--accept"]).expect(0);
    let run = cli.run(&["list", "--now", T0]).expect_error_line(&[
        "1 stored record(s) could not be read",
        "254700000002",
        "corrupt",
    ]);
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stdout,
        "254110090747 254700000001 open: closes 2026-11-24T10:00:00Z (in 24h 0m)\n"
    );
    cli.run(&["status", BUSINESS, "254700000002"])
        .expect_error(&["corrupt"]);
    let run = cli
        .run(&["export"])
        .expect_error_line(&["1 corrupt record(s)", "missing from the export"]);
    assert_eq!(run.code, 2);
    assert_eq!(
        run.json_lines().len(),
        2,
        "the header and the readable window"
    );
    // Forgetting the broken conversation repairs the database.
    cli.run(&["forget", BUSINESS, "254700000002"]).expect(0);
    cli.run(&["list", "--now", T0]).expect(0);
    cli.run(&["export"]).expect(0);
}

#[test]
fn the_database_comes_from_db_then_the_environment_then_the_default() {
    let mut cli = Cli::new();
    // Default: ./sessions.db in the working directory.
    cli.run_raw(&["record", BUSINESS, CUSTOMER], None).expect(0);
    assert!(cli.dir().join("sessions.db").is_dir());
    // An empty variable counts as unset.
    cli.env("SESSION_CHECK_DB", "");
    cli.run_raw(&["status", BUSINESS, CUSTOMER], None).expect(0);
    // The variable.
    let from_env = cli.dir().join("from-env.db");
    cli.env("SESSION_CHECK_DB", from_env.to_str().unwrap());
    cli.run_raw(&["record", BUSINESS, "254700000001"], None)
        .expect(0);
    assert!(from_env.is_dir());
    cli.run_raw(&["status", BUSINESS, "254700000001"], None)
        .expect(0);
    cli.run_raw(&["status", BUSINESS, CUSTOMER], None).expect(1);
    // --db wins over the variable, before or after the command.
    let default = cli.dir().join("sessions.db");
    let default = default.to_str().unwrap();
    cli.run_raw(&["status", BUSINESS, CUSTOMER, "--db", default], None)
        .expect(0);
    cli.run_raw(&["--db", default, "status", BUSINESS, CUSTOMER], None)
        .expect(0);
    cli.env_remove("SESSION_CHECK_DB");
}

#[test]
fn a_database_held_by_another_process_is_reported_as_in_use() {
    let cli = Cli::new();
    cli.run(&["record", BUSINESS, CUSTOMER]).expect(0);
    let held = lipachat_session::SledStore::open(cli.db()).unwrap();
    for args in [
        &["status", BUSINESS, CUSTOMER][..],
        &["record", BUSINESS, CUSTOMER],
        &["list"],
        &["export"],
    ] {
        cli.run(args)
            .expect_error(&["is in use by another process"]);
    }
    cli.run(&["list", "--json"])
        .expect_json_error(&["is in use by another process"]);
    drop(held);
    cli.run_once_released(&["status", BUSINESS, CUSTOMER])
        .expect(0);
}

#[test]
fn usage_errors_exit_2_with_one_line_naming_what_was_wrong() {
    let cli = Cli::new();
    let name = ["--name", "Support desk", "--phone", "254700000001"];
    let send = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut args = vec!["send-contact", BUSINESS, CUSTOMER];
        args.extend_from_slice(&name);
        args.extend_from_slice(extra);
        args
    };
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (
            vec!["status", BUSINESS, "0712345678"],
            &["<CUSTOMER>", "starts with 0"],
        ),
        (vec!["status", "abc", CUSTOMER], &["<BUSINESS>", "'a'"]),
        (
            vec!["status", BUSINESS, "12345"],
            &["<CUSTOMER>", "5 digits"],
        ),
        (
            vec!["status", BUSINESS, CUSTOMER, "--now", "yesterday"],
            &["--now", "RFC 3339"],
        ),
        (
            vec!["record", BUSINESS, CUSTOMER, "--at", "2026-13-01T00:00:00Z"],
            &["--at"],
        ),
        (
            vec!["record", BUSINESS, CUSTOMER, "--at", "2026-11-23 10:00"],
            &["--at"],
        ),
        (
            vec!["list", "--closing-within", "2x"],
            &["--closing-within", "90s"],
        ),
        (
            vec!["list", "--closing-within", "-1h"],
            &["--closing-within"],
        ),
        (
            vec!["list", "--closing-within", "99999999999999999d"],
            &["--closing-within", "too long"],
        ),
        (vec!["list", "--state", "ajar"], &["--state", "ajar"]),
        (vec!["status", BUSINESS], &["<CUSTOMER>"]),
        (vec!["pending", BUSINESS], &["<CUSTOMER>"]),
        (vec!["frobnicate"], &["frobnicate"]),
        (vec![], &["no command given", "status"]),
        (
            vec!["status", BUSINESS, CUSTOMER, "--colour"],
            &["--colour"],
        ),
        (
            vec![
                "send-contact",
                BUSINESS,
                CUSTOMER,
                "--phone",
                "254700000001",
            ],
            &["--name"],
        ),
        (send(&["--phone", "12"]), &["--phone"]),
        (send(&["--on-closed", "maybe"]), &["--on-closed", "maybe"]),
        (
            send(&["--on-closed", "queue"]),
            &["--on-closed queue needs --template"],
        ),
        (
            send(&["--on-closed", "template"]),
            &["--on-closed template needs --template"],
        ),
        (
            send(&["--on-closed", "queue", "--template", "contact_share"]),
            &["--template needs --language"],
        ),
        (
            send(&["--on-closed", "queue", "--language", "en"]),
            &["--language needs --template"],
        ),
        (send(&["--param", "Jane"]), &["--param needs --template"]),
        (
            send(&["--template", "contact_share", "--language", "en"]),
            &["--on-closed template or queue"],
        ),
        (
            send(&[
                "--on-closed",
                "queue",
                "--template",
                "Contact Share",
                "--language",
                "en",
            ]),
            &["template name"],
        ),
        (
            send(&[
                "--on-closed",
                "queue",
                "--template",
                "contact_share",
                "--language",
                "english",
            ]),
            &["language code"],
        ),
        (send(&["--phone-type", " "]), &["phone type"]),
        (send(&["--margin", "-1"]), &["--margin"]),
        (send(&["--max-retries", "lots"]), &["--max-retries"]),
        (send(&["--message-id", "not-a-uuid"]), &["--message-id"]),
        (
            vec![
                "send-contact",
                BUSINESS,
                CUSTOMER,
                "--name",
                " ",
                "--phone",
                "254700000001",
            ],
            &["contact name"],
        ),
    ];
    for (args, needles) in cases {
        let run = cli.run(&args);
        assert_eq!(run.code, 2, "{args:?}: {run:#?}");
        run.expect_error(needles);
    }
    // No usage error created the database.
    assert!(!cli.db().exists());
    // A margin the rule refuses is an error too (it is checked with the window length).
    cli.run(&["record", BUSINESS, CUSTOMER]).expect(0);
    cli.run(&send(&["--margin", "86400", "--dry-run"]))
        .expect_error(&["--margin"]);
}

#[test]
fn help_and_version_exit_0_on_stdout() {
    let cli = Cli::new();
    let run = cli.run_raw(&["--help"], None).expect(0);
    assert!(run.stdout.contains("Usage: session-check"), "{run:?}");
    assert!(run.stdout.contains("send-contact"));
    assert!(run.stdout.contains("Exit status"));
    assert_eq!(run.stderr, "");
    let run = cli.run_raw(&["send-contact", "--help"], None).expect(0);
    assert!(run.stdout.contains("--dry-run"));
    assert!(run.stdout.contains("Needs no API key"));
    assert!(run.stdout.contains("LIPACHAT_API_KEY"));
    let run = cli.run_raw(&["list", "-h"], None).expect(0);
    assert!(run.stdout.contains("--closing-within"));
    cli.run_raw(&[], None)
        .expect_error(&["no command given", "send-contact"]);
    let run = cli.run_raw(&["--version"], None).expect(0);
    assert!(run.stdout.starts_with("session-check "), "{run:?}");
    assert!(!cli.db().exists());
}
