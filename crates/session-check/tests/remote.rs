//! `session-check --remote URL` as a binary against a running bot's router on 127.0.0.1:
//! `status`, `list` and `pending` print what they print against the bot's store (run
//! again locally once the bot has stopped), with the same exit status; the token comes
//! from the environment and never shows; the option's conflicts are usage errors. The bot
//! runs on a sled store, and on a throwaway `redis-server` (skipped without one unless
//! `REQUIRE_REDIS=1`).

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use common::{Cli, Run};
use lipachat_api::{ApiKey, Client, ContactMessage, ContactPhone, TemplateMessage, WebhookToken};
use lipachat_policy::{Messenger, OnClosed, PolicyConfig, SendOutcome};
use lipachat_redis::RedisStore;
use lipachat_redis::test_server::RedisServer;
use lipachat_session::{Conversation, Sessions, SledStore, Store};
use lipachat_testkit::StandInGateway;
use lipachat_webhook::{Secret, ServingConfig, WebhookService, serve};
use serde_json::Value;

const ADMIN: &str = "remote-admin-token-0123456789";
const TOKEN: &str = "remote-webhook-token-0123456789";
const BUSINESS: &str = "254110090747";
const WROTE: &str = "254712345678";
const QUEUED_FOR: &str = "254712345679";
const CLOSED: &str = "254712345670";

/// Runs the binary off the runtime's worker (the bot serves on the others).
fn run(cli: &Cli, args: &[&str]) -> Run {
    tokio::task::block_in_place(|| cli.run_raw(args, None))
}

/// A JSON line without the fields that move with the clock between two runs.
fn steady(mut line: Value) -> Value {
    if let Some(object) = line.as_object_mut() {
        object.remove("remaining_secs");
        object.remove("age_secs");
    }
    line
}

/// A human line up to its last parenthesis (ages move with the clock).
fn steady_human(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|line| {
            line.rsplit_once(" (")
                .map_or(line, |(head, _)| head)
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn remote_status_list_and_pending_print_what_the_store_would() {
    let cli = Cli::new();
    let store = SledStore::open(cli.db()).unwrap();
    let db = cli.db().to_str().unwrap().to_owned();
    remote_prints_what_the_store_would(cli, store, &["--db", &db]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn remote_against_a_redis_backed_bot_prints_what_its_store_would() {
    let Some(server) = RedisServer::start() else {
        eprintln!(
            "remote_against_a_redis_backed_bot_prints_what_its_store_would: skipped, no \
             redis-server (set REQUIRE_REDIS=1 to make this a failure)"
        );
        return;
    };
    let url = server.url();
    let store = RedisStore::connect(&url).await.unwrap();
    remote_prints_what_the_store_would(Cli::new(), store, &["--store", &url]).await;
}

/// Serves a bot over `store` on 127.0.0.1 with one customer who wrote, one with a card
/// queued and one whose window the gateway closed; runs `status`, `list` and `pending`
/// with `--remote` against it; stops the bot; runs them again with `local` (the options
/// that open the same store) and checks both print the same with the same exit status.
async fn remote_prints_what_the_store_would<S: Store>(mut cli: Cli, store: S, local: &[&str]) {
    let gateway = StandInGateway::start().await.unwrap();
    let client = Client::builder(ApiKey::new(gateway.api_key()).unwrap())
        .base_url(&gateway.base_url())
        .build()
        .unwrap();
    let invite = TemplateMessage::new("contact_share", "en").unwrap();
    let messenger = Messenger::new(
        Sessions::new(store),
        client,
        PolicyConfig::default().on_closed(OnClosed::Queue(invite)),
    );
    let service = WebhookService::builder(messenger.clone())
        .lipachat_token(WebhookToken::new(TOKEN).unwrap())
        .admin_token(Secret::admin_token(ADMIN).unwrap())
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        service.router(),
        ServingConfig::default(),
        async {
            let _ = stopped.await;
        },
    ));

    // One customer wrote (through the webhook); another has a card queued.
    let inbound = serde_json::json!({"messageId": "in-remote", "from": WROTE, "to": BUSINESS,
        "type": "TEXT", "text": "hi"});
    let posted = reqwest::Client::new()
        .post(format!("{url}/webhooks/lipachat/{TOKEN}"))
        .json(&inbound)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), reqwest::StatusCode::OK);
    let card = ContactMessage::new(
        "Support",
        vec![ContactPhone::new("254700000001".parse().unwrap(), "Work")],
    )
    .unwrap();
    let queued = messenger
        .send_contact(Conversation::parse(BUSINESS, QUEUED_FOR).unwrap(), card)
        .await
        .unwrap();
    assert!(matches!(queued, SendOutcome::Queued { .. }), "{queued:?}");
    // A third wrote, then the gateway reported the window closed (131047).
    let closed = Conversation::parse(BUSINESS, CLOSED).unwrap();
    let now = messenger.sessions().now();
    messenger
        .on_inbound(closed, now - chrono::TimeDelta::seconds(10))
        .await
        .unwrap();
    messenger
        .sessions()
        .store()
        .record_gateway_closure(closed, now - chrono::TimeDelta::seconds(1))
        .await
        .unwrap();
    drop(messenger);

    cli.env("SESSION_CHECK_REMOTE_TOKEN", ADMIN);
    let commands: [&[&str]; 7] = [
        &["status", BUSINESS, WROTE],
        &["status", BUSINESS, QUEUED_FOR],
        &["status", BUSINESS, "254799999999"],
        &["list"],
        &["list", "--state", "open"],
        &["pending"],
        &["status", BUSINESS, CLOSED],
    ];
    let mut remote = Vec::new();
    for args in commands {
        for json in [false, true] {
            let mut full = vec!["--remote", url.as_str()];
            if json {
                full.push("--json");
            }
            full.extend_from_slice(args);
            let ran = run(&cli, &full);
            assert!(!ran.stdout.contains(ADMIN) && !ran.stderr.contains(ADMIN));
            assert_eq!(ran.stderr, "", "{args:?}: {ran:#?}");
            remote.push(ran);
        }
    }
    assert_eq!(remote[0].code, 0, "open: {:#?}", remote[0]);
    assert_eq!(
        remote[2].code, 1,
        "closed (never written): {:#?}",
        remote[2]
    );
    assert_eq!(remote[4].code, 1, "none: {:#?}", remote[4]);
    assert!(
        remote[1]
            .stdout
            .starts_with("{\"business\":\"254110090747\"")
    );
    assert!(
        remote[11].stdout.contains("\"message_id\""),
        "{:#?}",
        remote[11]
    );

    // The bot stops; the same commands against its store print the same.
    let _ = stop.send(());
    server.await.unwrap();
    service.shutdown().await.unwrap();
    let mut n = 0;
    for args in commands {
        for json in [false, true] {
            let mut full = local.to_vec();
            if json {
                full.push("--json");
            }
            full.extend_from_slice(args);
            let local = run(&cli, &full);
            let remote = &remote[n];
            assert_eq!(local.code, remote.code, "{args:?} json={json}");
            if json {
                let steady_lines =
                    |run: &Run| run.json_lines().into_iter().map(steady).collect::<Vec<_>>();
                assert_eq!(steady_lines(&local), steady_lines(remote), "{args:?}");
            } else {
                assert_eq!(
                    steady_human(&local.stdout),
                    steady_human(&remote.stdout),
                    "{args:?}"
                );
            }
            n += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_refusals_are_one_line_and_exit_2() {
    let gateway = StandInGateway::start().await.unwrap();
    let mut cli = Cli::new();
    let client = Client::builder(ApiKey::new(gateway.api_key()).unwrap())
        .base_url(&gateway.base_url())
        .build()
        .unwrap();
    let messenger = Messenger::new(
        Sessions::new(SledStore::open(cli.dir().join("bot.db")).unwrap()),
        client,
        PolicyConfig::default(),
    );
    let service = WebhookService::builder(messenger)
        .lipachat_token(WebhookToken::new(TOKEN).unwrap())
        .admin_token(Secret::admin_token(ADMIN).unwrap())
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(serve(
        listener,
        service.router(),
        ServingConfig::default(),
        std::future::pending(),
    ));
    let status = ["--remote", url.as_str(), "status", BUSINESS, WROTE];

    run(&cli, &status).expect_error(&["SESSION_CHECK_REMOTE_TOKEN", "not set"]);
    cli.env("SESSION_CHECK_REMOTE_TOKEN", "wrong-token-0123456789");
    run(&cli, &status).expect_error(&["refused the admin token (401)", &url]);
    cli.env("SESSION_CHECK_REMOTE_TOKEN", ADMIN);
    run(&cli, &status).expect(1);
    for (args, needles) in [
        (
            vec![
                "--remote",
                url.as_str(),
                "--db",
                "x",
                "status",
                BUSINESS,
                WROTE,
            ],
            vec!["--remote", "cannot be used"],
        ),
        (
            vec![
                "--remote",
                url.as_str(),
                "status",
                BUSINESS,
                WROTE,
                "--store",
                "x",
            ],
            vec!["--remote", "cannot be used"],
        ),
        (
            vec![
                "--remote",
                url.as_str(),
                "--now",
                "2026-11-23T10:00:00Z",
                "list",
            ],
            vec!["--now"],
        ),
        (
            vec!["--remote", url.as_str(), "record", BUSINESS, WROTE],
            vec!["record does not run with --remote"],
        ),
        (
            vec!["--remote", "ftp://127.0.0.1/", "list"],
            vec!["--remote", "not http or https"],
        ),
        (
            vec!["--remote", "http://127.0.0.1:9/", "list"],
            vec!["cannot reach it"],
        ),
    ] {
        let ran = run(&cli, &args);
        assert_eq!(ran.code, 2, "{args:?}: {ran:#?}");
        assert_eq!(ran.stderr.lines().count(), 1, "{args:?}: {ran:#?}");
        for needle in needles {
            assert!(
                ran.stderr.contains(needle),
                "{args:?} lacks {needle}: {ran:#?}"
            );
        }
        assert!(!ran.stderr.contains(ADMIN));
    }
    server.abort();
}
