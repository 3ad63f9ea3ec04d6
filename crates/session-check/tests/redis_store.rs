//! `--store redis://HOST:PORT/DB`: every command run as the built binary against a
//! throwaway `redis-server` (one per test), compared with the same commands on a sled
//! database; a sled database moved to Redis with export and import; an unreachable or
//! vanished server; and which of `--store`, `--db` and their variables names the store.
//!
//! Without `redis-server` (and `REQUIRE_REDIS` unset) the tests that need a server print a
//! skip notice and pass; with `REQUIRE_REDIS=1` a missing server fails them.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use common::{BUSINESS, CUSTOMER, CUSTOMER_DIGITS, Cli, QUEUE, Run, T0, at, send_contact, t0};
use lipachat_redis::RedisStore;
use lipachat_redis::test_server::RedisServer;
use lipachat_session::{Conversation, OutboxStore, PhoneNumber, WindowStore};
use lipachat_testkit::{MessageKind, StandInGateway};
use serde_json::json;

/// A second customer.
const OTHER: &str = "254700000002";

/// Starts a server, or says why the test is skipped.
fn redis(test: &str) -> Option<RedisServer> {
    let server = RedisServer::start();
    if server.is_none() {
        eprintln!("{test}: skipped, no redis-server (set REQUIRE_REDIS=1 to make this a failure)");
    }
    server
}

/// `--store URL` followed by `args`.
fn on<'a>(url: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut full = vec!["--store", url];
    full.extend_from_slice(args);
    full
}

fn phone(text: &str) -> PhoneNumber {
    text.parse().unwrap()
}

fn conversation(customer: &str) -> Conversation {
    Conversation::new(phone(BUSINESS), phone(customer))
}

fn text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

/// The window commands, each with a fixed `--now`, and the exit status each must end with.
fn window_script() -> Vec<(Vec<String>, i32)> {
    let t = |hours: i64| at(TimeDelta::hours(hours));
    let lines: Vec<(Vec<&str>, String, i32)> = vec![
        (vec!["record", BUSINESS, CUSTOMER, "--at", T0], t(0), 0),
        (vec!["record", BUSINESS, OTHER, "--json"], t(1), 0),
        // An earlier time than the one stored changes nothing.
        (
            vec![
                "record",
                BUSINESS,
                CUSTOMER,
                "--at",
                "2026-11-23T09:00:00Z",
                "--json",
            ],
            t(1),
            0,
        ),
        (vec!["status", BUSINESS, CUSTOMER, "--json"], t(2), 0),
        (vec!["status", BUSINESS, CUSTOMER], t(2), 0),
        (vec!["status", BUSINESS, "254799999999", "--json"], t(2), 1),
        (vec!["list", "--json"], t(2), 0),
        (
            vec!["list", "--state", "open", "--closing-within", "22h"],
            t(2),
            0,
        ),
        (vec!["pending", "--json"], t(2), 0),
        (vec!["status", BUSINESS, CUSTOMER, "--json"], t(24), 1),
        (vec!["list", "--state", "closed", "--json"], t(24), 0),
        (vec!["export"], t(24), 0),
        (vec!["forget", BUSINESS, CUSTOMER, "--json"], t(24), 0),
        (vec!["forget", BUSINESS, CUSTOMER], t(24), 0),
        (vec!["status", BUSINESS, CUSTOMER], t(24), 1),
        (vec!["list"], t(24), 0),
        (vec!["export"], t(24), 0),
    ];
    lines
        .into_iter()
        .map(|(args, now, code)| {
            let mut args: Vec<String> = args.into_iter().map(str::to_owned).collect();
            args.extend(["--now".to_owned(), now]);
            (args, code)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn every_window_command_answers_on_redis_as_on_sled() {
    let Some(server) = redis("every_window_command_answers_on_redis_as_on_sled") else {
        return;
    };
    let url = server.url();
    let sled = Cli::new();
    let on_redis = Cli::new();
    let mut redis_runs: Vec<Run> = Vec::new();
    for (index, (args, code)) in window_script().iter().enumerate() {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let from_sled = sled.run(&args).expect(*code);
        // The store given before the command, or after it.
        let full = if index % 2 == 0 {
            on(&url, &args)
        } else {
            let mut after = args.clone();
            after.extend(["--store", url.as_str()]);
            after
        };
        let from_redis = on_redis.run_raw(&full, None).expect(*code);
        assert_eq!(
            (&from_redis.stdout, &from_redis.stderr),
            (&from_sled.stdout, &from_sled.stderr),
            "{args:?} answered differently on Redis"
        );
        redis_runs.push(from_redis);
    }
    // Not merely the same: the right answers.
    assert_eq!(redis_runs[1].json()["opened"], true);
    assert_eq!(
        redis_runs[2].json()["last_inbound"],
        "2026-11-23T10:00:00Z",
        "the later inbound time is kept"
    );
    assert_eq!(redis_runs[3].json()["state"], "open");
    assert_eq!(redis_runs[3].json()["remaining_secs"], 22 * 3600);
    assert_eq!(redis_runs[5].json()["state"], "none");
    assert_eq!(redis_runs[6].json_lines().len(), 2);
    assert_eq!(
        redis_runs[7].stdout.lines().count(),
        1,
        "{:?}",
        redis_runs[7]
    );
    assert!(redis_runs[7].stdout.contains(CUSTOMER_DIGITS));
    assert_eq!(redis_runs[9].json()["state"], "closed");
    assert_eq!(redis_runs[10].json_lines().len(), 1);
    assert_eq!(
        redis_runs[11].json_lines().len(),
        3,
        "header and two windows"
    );
    assert!(
        redis_runs[14].stdout.contains("none"),
        "{:?}",
        redis_runs[14]
    );
    assert_eq!(
        redis_runs[16].json_lines().len(),
        2,
        "header and one window"
    );

    // It all happened in Redis, not in a sled directory beside it.
    assert!(!on_redis.db().exists());
    let store = RedisStore::connect(&url).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 1);
    assert!(
        store
            .window(conversation(CUSTOMER))
            .await
            .unwrap()
            .is_none()
    );
    let other = store.window(conversation(OTHER)).await.unwrap().unwrap();
    assert_eq!(other.last_inbound, t0() + TimeDelta::hours(1));
}

/// A gateway on the system clock, a Redis server, and the command line pointed at both.
/// Sends and deliveries run on the real clock (they refuse `--now`).
struct Setup {
    gateway: StandInGateway,
    server: RedisServer,
    url: String,
    cli: Cli,
}

impl Setup {
    async fn start(test: &str) -> Option<Self> {
        let server = redis(test)?;
        let gateway = StandInGateway::start().await.unwrap();
        let cli = Cli::with_gateway(&gateway.base_url(), gateway.api_key());
        Some(Self {
            gateway,
            url: server.url(),
            server,
            cli,
        })
    }

    /// Runs with `--store` naming the Redis server.
    fn run(&self, args: &[&str]) -> Run {
        self.cli.run_raw(&on(&self.url, args), None)
    }

    /// The customer wrote `ago` before now (to the whole second): the gateway learns it,
    /// and `record` stores it in Redis (`on_sled`: in the sled database). Returns that time.
    fn customer_wrote(&self, customer: &str, ago: TimeDelta, on_sled: bool) -> DateTime<Utc> {
        let at = Utc::now().trunc_subsecs(0) - ago;
        self.gateway
            .customer_writes_at(phone(BUSINESS), phone(customer), at);
        let args = ["record", BUSINESS, customer, "--at", &text(at)];
        if on_sled {
            self.cli.run(&args).expect(0);
        } else {
            self.run(&args).expect(0);
        }
        at
    }
}

/// `send-contact … --on-closed queue --template contact_share --language en --json`.
fn queue_args<'a>(customer: &'a str, message_id: &'a str) -> Vec<&'a str> {
    send_contact(
        customer,
        &[&QUEUE[..], &["--message-id", message_id, "--json"]].concat(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_card_queued_in_redis_waits_and_is_delivered_after_the_reply() {
    let Some(s) =
        Setup::start("a_card_queued_in_redis_waits_and_is_delivered_after_the_reply").await
    else {
        return;
    };
    let caller = "8f0c1d2e-3b4a-4c5d-9e6f-7a8b9c0d1e2f";
    s.customer_wrote(CUSTOMER, TimeDelta::hours(30), false);
    let run = s.run(&queue_args(CUSTOMER, caller)).expect(0);
    let template = s.gateway.delivered()[0].clone();
    assert_eq!(template.kind, MessageKind::Template);
    // Queued under an id derived from the caller's (the same on every retry), never the
    // caller's own.
    let queued = run.json()["message_id"].as_str().unwrap().to_owned();
    assert_ne!(queued, caller);
    assert_eq!(
        run.json(),
        json!({
            "outcome": "queued", "message_id": queued, "wa_id": template.wa_id,
            "template_message_id": template.message_id, "reason": "expired",
            "template_category": null, "catalog": "unchecked",
            "category": "marketing", "free": false
        })
    );
    let id = queued.as_str();

    // pending, seen ten minutes after it was queued: every conversation, and this one.
    let queued_at = s.run(&["pending", "--json"]).expect(0).json()["queued_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let later = text(queued_at.parse::<DateTime<Utc>>().unwrap() + TimeDelta::minutes(10));
    let expected = json!({
        "business": BUSINESS, "customer": CUSTOMER_DIGITS, "message_id": id,
        "kind": "contact",
        "message": {
            "formatted_name": "Support desk",
            "phones": [{"phone": "254700000001", "phone_type": "Cell"}]
        },
        "queued_at": queued_at, "age_secs": 600
    });
    assert_eq!(
        s.run(&["pending", "--json", "--now", &later])
            .expect(0)
            .json(),
        expected
    );
    let run = s
        .run(&["pending", BUSINESS, CUSTOMER, "--json", "--now", &later])
        .expect(0);
    assert_eq!(run.json(), expected);

    // The same send again is a duplicate: nothing more is sent or queued.
    let run = s.run(&queue_args(CUSTOMER, caller)).expect(0);
    let answer = run.json();
    assert_eq!(
        (
            &answer["outcome"],
            &answer["message_id"],
            &answer["duplicate"]
        ),
        (&json!("queued"), &json!(id), &json!(true)),
        "{run:?}"
    );
    assert_eq!(s.gateway.request_count(), 1);

    // Still closed: deliver leaves it queued, exit 1, nothing sent.
    let run = s.run(&["deliver", BUSINESS, CUSTOMER, "--json"]).expect(1);
    assert_eq!(run.json()["remaining"], 1);
    assert_eq!(run.json()["stopped"], "window_not_open");
    assert_eq!(s.gateway.request_count(), 1);

    // The customer replies: deliver sends the card under the id it was queued with.
    s.customer_wrote(CUSTOMER, TimeDelta::zero(), false);
    let run = s.run(&["deliver", BUSINESS, CUSTOMER, "--json"]).expect(0);
    let delivered = s.gateway.delivered();
    assert_eq!(delivered.len(), 2);
    let card = &delivered[1];
    assert_eq!(card.kind, MessageKind::Contact);
    assert_eq!(card.message_id, id);
    assert_eq!(
        run.json(),
        json!({
            "business": BUSINESS, "customer": CUSTOMER_DIGITS,
            "delivered": [{"message_id": id, "wa_id": card.wa_id, "queued_at": queued_at}],
            "expired": [], "failed": [], "remaining": 0, "stopped": null, "reason": null
        })
    );
    assert_eq!(s.gateway.refusal_count(), 0);
    let run = s.run(&["pending"]).expect(0);
    assert_eq!(run.stdout, "no messages queued\n");
    let run = s.run(&["deliver", BUSINESS, CUSTOMER]).expect(0);
    assert_eq!(
        run.stdout,
        "0 delivered, 0 expired, 0 failed; 0 still queued\n"
    );
    assert_eq!(s.gateway.request_count(), 2);

    // Redis itself holds the result.
    let store = RedisStore::connect(&s.url).await.unwrap();
    assert!(
        store
            .queued(conversation(CUSTOMER))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.conversations_with_queued().await.unwrap().is_empty());
    assert!(!s.cli.db().exists());
    drop(s.server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_sled_database_moves_to_redis_with_export_and_import() {
    let Some(s) = Setup::start("a_sled_database_moves_to_redis_with_export_and_import").await
    else {
        return;
    };
    // On sled: two windows, and a card queued (with its invitation) for the first.
    s.customer_wrote(CUSTOMER, TimeDelta::hours(30), true);
    let other = Utc::now().trunc_subsecs(0) - TimeDelta::hours(10);
    s.cli
        .run(&["record", BUSINESS, OTHER, "--at", &text(other)])
        .expect(0);
    let caller_id = "0d9c8b7a-6f5e-4d3c-8b2a-1f0e9d8c7b6a";
    let queued = s.cli.run(&queue_args(CUSTOMER, caller_id)).expect(0).json();
    let queued = queued["message_id"].as_str().unwrap().to_owned();
    let id = queued.as_str();
    let exported = s.cli.run(&["export"]).expect(0).stdout;
    assert_eq!(
        exported.lines().count(),
        5,
        "header, 2 windows, 1 queued, 1 invitation: {exported}"
    );

    // Into Redis, through the command line.
    let run = s
        .cli
        .run_raw(&on(&s.url, &["import", "--json"]), Some(&exported))
        .expect(0);
    assert_eq!(
        run.json(),
        json!({"windows": 2, "queued": 1, "invitations": 1, "users": 0, "groups": 0, "aliases": 0, "seen": 0, "consents": 0, "back_offs": 0, "free_entry_points": 0})
    );
    let from_redis = s.run(&["export"]).expect(0).stdout;
    assert_eq!(from_redis, exported);
    // Importing again merges: nothing doubles.
    s.cli
        .run_raw(&on(&s.url, &["import"]), Some(&exported))
        .expect(0);
    assert_eq!(s.run(&["export"]).expect(0).stdout, exported);
    let run = s.run(&["pending", "--json"]).expect(0);
    assert_eq!(run.json()["message_id"], id);
    let seen_at = text(other + TimeDelta::hours(10));
    let run = s
        .run(&["status", BUSINESS, OTHER, "--json", "--now", &seen_at])
        .expect(0);
    assert_eq!(run.json()["remaining_secs"], 14 * 3600);

    // The imported invitation is honoured (no second template while the window stays
    // closed) and the imported card goes out from Redis after the reply.
    let run = s
        .run(&queue_args(
            CUSTOMER,
            "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d",
        ))
        .expect(0);
    let again = run.json()["message_id"].as_str().unwrap().to_owned();
    let again = again.as_str();
    assert_eq!(run.json()["outcome"], "queued");
    assert_eq!(run.json()["template_message_id"], serde_json::Value::Null);
    assert_eq!(s.gateway.request_count(), 1, "only the sled run's template");
    s.customer_wrote(CUSTOMER, TimeDelta::zero(), false);
    let run = s.run(&["deliver", BUSINESS, CUSTOMER, "--json"]).expect(0);
    let sent: Vec<String> = s
        .gateway
        .delivered()
        .iter()
        .filter(|m| m.kind == MessageKind::Contact)
        .map(|m| m.message_id.clone())
        .collect();
    assert_eq!(sent, [id, again], "oldest first");
    assert_eq!(run.json()["delivered"].as_array().unwrap().len(), 2);
    // The sled database still has its own copy, untouched by the Redis deliveries.
    let run = s.cli.run(&["pending", "--json"]).expect(0);
    assert_eq!(run.json()["message_id"], id);
}

#[test]
fn an_unreachable_redis_is_one_error_line_within_seconds() {
    let cli = Cli::new();
    // Nothing listens on the port.
    let url = format!("redis://127.0.0.1:{}/0", closed_port());
    for args in [
        &["status", BUSINESS, CUSTOMER][..],
        &["record", BUSINESS, CUSTOMER],
        &["list"],
        &["import"],
    ] {
        let started = Instant::now();
        cli.run_raw(&on(&url, args), Some("")).expect_error(&[
            "cannot open the Redis store",
            &url,
            "cannot connect",
        ]);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "{args:?} took {took:?}");
    }

    // A port that accepts connections but never answers (a hung server, or something
    // that is not Redis): the handshake times out.
    let silent = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let url = format!(
        "redis://127.0.0.1:{}/0",
        silent.local_addr().unwrap().port()
    );
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            held.push(stream);
        }
    });
    let started = Instant::now();
    cli.run_raw(&on(&url, &["status", BUSINESS, CUSTOMER]), None)
        .expect_error(&["cannot open the Redis store", &url]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "took {took:?}");
    // No sled directory appeared in the working directory instead.
    assert!(!cli.db().exists());
}

#[test]
fn a_redis_server_that_goes_away_is_an_error_and_its_data_survives() {
    let Some(mut server) = redis("a_redis_server_that_goes_away_is_an_error_and_its_data_survives")
    else {
        return;
    };
    let url = server.url();
    let cli = Cli::new();
    cli.run_raw(
        &on(&url, &["record", BUSINESS, CUSTOMER, "--now", T0]),
        None,
    )
    .expect(0);
    server.kill();
    let started = Instant::now();
    cli.run_raw(
        &on(&url, &["status", BUSINESS, CUSTOMER, "--now", T0]),
        None,
    )
    .expect_error(&["cannot open the Redis store"]);
    assert!(started.elapsed() < Duration::from_secs(5));
    // Restarted on the same data (append-only, fsync always): the window is there.
    server.restart();
    let run = cli
        .run_raw(
            &on(&url, &["status", BUSINESS, CUSTOMER, "--json", "--now", T0]),
            None,
        )
        .expect(0);
    assert_eq!(run.json()["state"], "open");
}

#[test]
fn the_store_comes_from_store_then_db_then_the_variables() {
    let mut cli = Cli::new();
    // A Redis URL nobody answers: where it is used, the run fails naming it.
    let redis_url = format!("redis://127.0.0.1:{}/0", closed_port());
    let path = cli.dir().join("given.db");
    let path = path.to_str().unwrap().to_owned();

    // --store and --db together, on either side of the command: a usage error, and
    // nothing is opened or created.
    for args in [
        &[
            "--store", &redis_url, "--db", &path, "record", BUSINESS, CUSTOMER,
        ][..],
        &[
            "--store", &path, "record", BUSINESS, CUSTOMER, "--db", &path,
        ],
        &[
            "record", BUSINESS, CUSTOMER, "--db", &path, "--store", &redis_url,
        ],
        &[
            "--db", &path, "record", BUSINESS, CUSTOMER, "--store", &path,
        ],
    ] {
        cli.run_raw(args, None).expect_error(&[
            "--store <STORE>",
            "--db <PATH>",
            "cannot be used with",
        ]);
    }
    assert!(!std::path::Path::new(&path).exists());

    // --store with a path is a sled directory.
    cli.run_raw(&["--store", &path, "record", BUSINESS, CUSTOMER], None)
        .expect(0);
    assert!(std::path::Path::new(&path).is_dir());
    cli.run_raw(&["status", BUSINESS, CUSTOMER, "--db", &path], None)
        .expect(0);

    // $SESSION_CHECK_STORE is used when neither option is given ...
    cli.env("SESSION_CHECK_STORE", &redis_url);
    cli.run_raw(&["status", BUSINESS, CUSTOMER], None)
        .expect_error(&["cannot open the Redis store", &redis_url]);
    // ... before $SESSION_CHECK_DB ...
    cli.env("SESSION_CHECK_DB", &path);
    cli.run_raw(&["status", BUSINESS, CUSTOMER], None)
        .expect_error(&["cannot open the Redis store", &redis_url]);
    // ... but after --db and --store.
    cli.run_raw(&["status", BUSINESS, CUSTOMER, "--db", &path], None)
        .expect(0);
    cli.run_raw(&["--store", &path, "status", BUSINESS, CUSTOMER], None)
        .expect(0);
    // A path in the variable is a sled directory; an empty variable counts as unset.
    cli.env("SESSION_CHECK_STORE", &path);
    cli.env("SESSION_CHECK_DB", "");
    cli.run_raw(&["status", BUSINESS, CUSTOMER], None).expect(0);
    cli.env("SESSION_CHECK_STORE", "");
    cli.env("SESSION_CHECK_DB", &path);
    cli.run_raw(&["status", BUSINESS, CUSTOMER], None).expect(0);
    cli.env_remove("SESSION_CHECK_DB");
    // Neither: ./sessions.db, which a reading command does not create.
    cli.run_raw(&["status", BUSINESS, CUSTOMER], None)
        .expect_error(&["does not exist", "--store STORE"]);

    // Other URLs are refused rather than taken for a directory name.
    cli.run_raw(
        &["--store", "redis+sentinel://127.0.0.1:26379", "list"],
        None,
    )
    .expect_error(&[
        "--store",
        "redis+sentinel:// is not a store this build opens",
    ]);
    cli.run_raw(&["--store", "redis://127.0.0.1:notaport/0", "list"], None)
        .expect_error(&["--store", "is not a Redis URL"]);
    cli.run_raw(&["--store", "", "list"], None)
        .expect_error(&["--store", "empty store"]);
    cli.env("SESSION_CHECK_STORE", "http://example.invalid/");
    cli.run_raw(&["list"], None)
        .expect_error(&["$SESSION_CHECK_STORE", "http:// is not a store"]);
    cli.env_remove("SESSION_CHECK_STORE");
    assert!(!cli.db().exists());

    // --help tells all this.
    let run = cli.run_raw(&["--help"], None).expect(0);
    for needle in [
        "--store <STORE>",
        "redis://HOST:PORT/DB",
        "SESSION_CHECK_STORE",
        "--db <PATH>",
    ] {
        assert!(run.stdout.contains(needle), "--help lacks {needle:?}");
    }
}

/// A `--store` URL that cannot be used is refused without its password: clap's own
/// message would quote the value as given.
#[test]
fn an_unusable_store_url_never_shows_its_password() {
    let cli = Cli::new();
    for url in [
        "redis://:hunter2@127.0.0.1:notaport/0",
        "redis://admin:hunter2@127.0.0.1:99999/0",
        "redis://:hunter2@[::1/0",
        "rediss+cluster://:hunter2@127.0.0.1:7000/3",
        "http://user:hunter2@example.invalid/",
        "redis+unix://:hunter2@/no/socket?db=notanumber",
    ] {
        let joined = format!("--store={url}");
        for args in [
            vec!["--store", url, "list"],
            vec!["list", "--store", url],
            vec!["status", BUSINESS, CUSTOMER, joined.as_str()],
        ] {
            let run = cli.run_raw(&args, None);
            assert_eq!(run.code, 2, "{url}: {run:#?}");
            assert!(
                !run.stderr.contains("hunter2") && !run.stdout.contains("hunter2"),
                "{url}: the password shows: {run:#?}"
            );
            assert!(run.stderr.contains("--store"), "{url}: {run:#?}");
        }
        let mut cli = Cli::new();
        cli.env("SESSION_CHECK_STORE", url);
        let run = cli.run_raw(&["list"], None);
        assert_eq!(run.code, 2, "{url}: {run:#?}");
        assert!(
            !run.stderr.contains("hunter2"),
            "{url}: the password shows: {run:#?}"
        );
    }
}
