//! send-text, send-media, send-buttons, send-list, send-template and templates, run as the
//! built binary against a temporary database and the stand-in gateway on loopback (which
//! enforces the limits, the window and its own catalog).
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{SubsecRound, TimeDelta, Utc};
use common::{BUSINESS, CUSTOMER, CUSTOMER_DIGITS, Cli, order_update};
use lipachat_session::PhoneNumber;
use lipachat_testkit::{MessageKind, StandInGateway, template_entry};
use serde_json::{Value, json};

struct Setup {
    gateway: StandInGateway,
    cli: Cli,
}

impl Setup {
    async fn start() -> Self {
        let gateway = StandInGateway::start().await.unwrap();
        let cli = Cli::with_gateway(&gateway.base_url(), gateway.api_key());
        Self { gateway, cli }
    }

    /// The customer wrote an hour ago: the gateway and the store both know.
    fn customer_wrote(&self) {
        let at = Utc::now().trunc_subsecs(0) - TimeDelta::hours(1);
        self.gateway
            .customer_writes_at(phone(BUSINESS), phone(CUSTOMER), at);
        let at = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        self.cli
            .run(&["record", BUSINESS, CUSTOMER, "--at", &at])
            .expect(0);
    }

    /// The business's catalog on the stand-in: `order_update` (UTILITY, an image header,
    /// two body values), `promo` (paused), `welcome` (en and fr, no values).
    fn with_catalog(&self) {
        self.gateway.set_templates(
            phone(BUSINESS),
            vec![
                template_entry(
                    "order_update",
                    "en",
                    "UTILITY",
                    "APPROVED",
                    Some(("IMAGE", "")),
                    "Hi {{1}}, order {{2}} ships today",
                ),
                template_entry("promo", "en", "MARKETING", "PAUSED", None, "Sale"),
                template_entry("welcome", "en", "MARKETING", "APPROVED", None, "Welcome!"),
                template_entry(
                    "welcome",
                    "fr",
                    "MARKETING",
                    "APPROVED",
                    None,
                    "Bienvenue !",
                ),
            ],
        );
    }

    fn last_delivered(&self) -> lipachat_testkit::DeliveredMessage {
        self.gateway
            .delivered()
            .pop()
            .expect("something was delivered")
    }
}

fn phone(text: &str) -> PhoneNumber {
    text.parse().unwrap()
}

fn args<'a>(command: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec![command, BUSINESS, CUSTOMER];
    all.extend_from_slice(extra);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn send_text_and_send_media_in_an_open_window() {
    let s = Setup::start().await;
    s.customer_wrote();
    let run = s
        .cli
        .run(&args("send-text", &["--text", "Your order shipped"]))
        .expect(0);
    let text = s.last_delivered();
    assert_eq!(text.kind, MessageKind::Text);
    assert_eq!(text.body["message"], "Your order shipped");
    assert!(
        run.stdout.starts_with(&format!(
            "sent: text message {} (WhatsApp message id ",
            text.message_id
        )),
        "{}",
        run.stdout
    );

    let run = s
        .cli
        .run(&args(
            "send-media",
            &[
                "--json",
                "--type",
                "document",
                "--url",
                "https://example.com/invoice.pdf",
                "--caption",
                "Your invoice",
                "--filename",
                "invoice.pdf",
            ],
        ))
        .expect(0);
    let media = s.last_delivered();
    assert_eq!(media.kind, MessageKind::Media);
    assert_eq!(
        media.body,
        json!({"messageId": media.message_id, "from": BUSINESS, "to": CUSTOMER_DIGITS,
               "mediaType": "DOCUMENT", "mediaUrl": "https://example.com/invoice.pdf",
               "caption": "Your invoice", "filename": "invoice.pdf"})
    );
    assert_eq!(
        run.json(),
        json!({"outcome": "sent", "message_id": media.message_id, "wa_id": media.wa_id,
               "template_message_id": null, "reason": null,
               // A free-form message in the open window: service, free.
               "category": "service", "free": true})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_message_over_a_limit_exits_2_naming_the_field_before_any_request() {
    let s = Setup::start().await;
    s.customer_wrote();
    let title_21 = format!("a:{}", "x".repeat(21));
    let text_4097 = "t".repeat(4097);
    let rows_11: Vec<String> = (0..11).map(|i| format!("r{i}:Row {i}")).collect();
    let mut list_11 = vec![
        "send-list",
        BUSINESS,
        CUSTOMER,
        "--header",
        "H",
        "--body",
        "B",
        "--button-text",
        "Open",
        "--section",
        "S",
    ];
    for row in &rows_11 {
        list_11.extend(["--row", row.as_str()]);
    }
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            args("send-text", &["--text", &text_4097]),
            vec!["4097", "4096"],
        ),
        (
            args(
                "send-media",
                &[
                    "--type",
                    "audio",
                    "--url",
                    "https://e.com/a.ogg",
                    "--caption",
                    "hi",
                ],
            ),
            vec!["caption", "audio"],
        ),
        (
            args(
                "send-media",
                &["--type", "image", "--url", "http://e.com/a.png"],
            ),
            vec!["https"],
        ),
        (
            args(
                "send-buttons",
                &[
                    "--text", "Pick", "--button", "a:A", "--button", "b:B", "--button", "c:C",
                    "--button", "d:D",
                ],
            ),
            vec!["buttons", "4 given", "1 to 3"],
        ),
        (
            args("send-buttons", &["--text", "Pick", "--button", &title_21]),
            vec!["button #1 title", "21", "20"],
        ),
        (
            args(
                "send-buttons",
                &["--text", "Pick", "--button", "a:A", "--button", "a:B"],
            ),
            vec!["button id", "\"a\"", "unique"],
        ),
        (list_11, vec!["rows", "11 given", "1 to 10"]),
    ];
    for (run_args, needles) in cases {
        s.cli.run(&run_args).expect_error(&needles);
    }
    assert_eq!(s.gateway.request_count(), 0, "nothing reached the gateway");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn send_buttons_and_send_list_group_rows_under_their_sections() {
    let s = Setup::start().await;
    s.customer_wrote();
    s.cli
        .run(&args(
            "send-buttons",
            &[
                "--text",
                "Did this help?",
                "--button",
                "yes:Yes, thanks",
                "--button",
                "no:No",
            ],
        ))
        .expect(0);
    let buttons = s.last_delivered();
    assert_eq!(
        buttons.body["buttons"],
        json!([{"id": "yes", "title": "Yes, thanks"}, {"id": "no", "title": "No"}])
    );

    let list = [
        "--header",
        "Branches",
        "--body",
        "Where do you pick up?",
        "--button-text",
        "Choose",
        "--section",
        "Nairobi",
        "--row",
        "cbd:CBD:Kenyatta Ave, 8:00-20:00",
        "--row",
        "west:Westlands",
        "--section",
        "Mombasa",
        "--row",
        "nyali:Nyali",
    ];
    s.cli.run(&args("send-list", &list)).expect(0);
    let delivered = s.last_delivered();
    assert_eq!(delivered.kind, MessageKind::List);
    assert_eq!(
        delivered.body["buttons"],
        json!([
            {"sectionTitle": "Nairobi", "sectionItems": [
                {"id": "cbd", "title": "CBD", "description": "Kenyatta Ave, 8:00-20:00"},
                {"id": "west", "title": "Westlands"}]},
            {"sectionTitle": "Mombasa", "sectionItems": [{"id": "nyali", "title": "Nyali"}]}
        ])
    );
    assert_eq!(delivered.body["headerText"], "Branches");
    assert_eq!(delivered.body["buttonText"], "Choose");

    // A row before any section, and a section without rows: usage errors, exit 2.
    let bare_list = |sections: &[&'static str]| {
        let mut all = args(
            "send-list",
            &["--header", "H", "--body", "B", "--button-text", "O"],
        );
        all.extend_from_slice(sections);
        all
    };
    let run = s.cli.run(&bare_list(&["--row", "a:A", "--section", "S"]));
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--section before it"), "{run:?}");
    s.cli
        .run(&bare_list(&[
            "--section",
            "S",
            "--row",
            "a:A",
            "--section",
            "Empty",
        ]))
        .expect_error(&["rows of section #2", "0 given"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_closed_window_rejects_or_queues_behind_a_checked_template_and_deliver_sends_it() {
    let s = Setup::start().await;
    s.with_catalog();
    // Never messaged: rejected (exit 1), nothing sent.
    let run = s
        .cli
        .run(&args("send-text", &["--json", "--text", "Are you there?"]))
        .expect(1);
    assert_eq!(run.json()["outcome"], "rejected");
    assert_eq!(s.gateway.request_count(), 0);

    // A reroute template the catalog refuses: exit 2 before anything is sent or queued.
    s.cli
        .run(&args(
            "send-text",
            &[
                "--text",
                "Hi",
                "--on-closed",
                "queue",
                "--template",
                "promo",
                "--language",
                "en",
            ],
        ))
        .expect_error(&["promo", "PAUSED", "not APPROVED"]);
    s.cli
        .run(&args(
            "send-text",
            &[
                "--text",
                "Hi",
                "--on-closed",
                "template",
                "--template",
                "welcome",
                "--language",
                "de",
            ],
        ))
        .expect_error(&["welcome", "\"de\"", "en, fr"]);
    assert_eq!(s.gateway.request_count(), 0);
    let pending = s.cli.run(&["--json", "pending"]).expect(0);
    assert_eq!(pending.stdout, "");

    // Queued behind the invitation, with the template's category in the output.
    let queue = [
        "--json",
        "--type",
        "image",
        "--url",
        "https://example.com/parcel.png",
        "--caption",
        "Your parcel",
        "--on-closed",
        "queue",
        "--template",
        "welcome",
        "--language",
        "fr",
    ];
    let run = s.cli.run(&args("send-media", &queue)).expect(0);
    let answer = run.json();
    let template = s.last_delivered();
    assert_eq!(template.kind, MessageKind::Template);
    assert_eq!(
        answer,
        json!({"outcome": "queued", "message_id": answer["message_id"], "wa_id": template.wa_id,
               "template_message_id": template.message_id, "reason": "never_messaged",
               "template_category": "MARKETING", "catalog": "checked",
               // The pricing of what this call sent (the template, by the catalog's
               // category), as every send command prints it.
               "category": "marketing", "free": false})
    );
    // The customer replies: deliver sends the image under the id it was queued with.
    s.customer_wrote();
    s.cli.run(&["deliver", BUSINESS, CUSTOMER]).expect(0);
    let image = s.last_delivered();
    assert_eq!(image.kind, MessageKind::Media);
    assert_eq!(image.message_id, answer["message_id"].as_str().unwrap());
    assert_eq!(image.body["caption"], "Your parcel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn send_template_goes_whatever_the_window_once_the_catalog_agrees() {
    let s = Setup::start().await;
    s.with_catalog();
    let id = "0b9a6f2e-2f3c-4d59-9a53-3f1d6b8c1e77";
    let full = [
        "--json",
        "--param",
        "Jane",
        "--param",
        "A-42",
        "--header-url",
        "https://example.com/parcel.png",
        "--message-id",
        id,
    ];
    // Never messaged: a template goes anyway.
    let run = s.cli.run(&order_update(&full)).expect(0);
    let sent = s.last_delivered();
    assert_eq!(sent.kind, MessageKind::Template);
    assert_eq!(sent.message_id, id);
    assert_eq!(
        sent.body["template"],
        json!({"name": "order_update", "languageCode": "en", "components": {
            "header": {"type": "IMAGE", "mediaUrl": "https://example.com/parcel.png"},
            "body": {"placeholders": ["Jane", "A-42"]}}})
    );
    assert_eq!(
        run.json(),
        json!({"outcome": "sent", "message_id": id, "wa_id": sent.wa_id,
               "template_message_id": id, "reason": null,
               "template_category": "UTILITY", "catalog": "checked",
               // Priced by the catalog's category; never messaged, so not free.
               "category": "utility", "free": false})
    );
    // The same --message-id again: the earlier outcome, nothing sent.
    let again = s.cli.run(&order_update(&full)).expect(0).json();
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["wa_id"], sent.wa_id.as_str());
    assert_eq!(s.gateway.request_count(), 1);

    // Refusals, each exit 2 before anything is sent.
    let refusals: [(Vec<&str>, Vec<&str>); 4] = [
        (
            order_update(&["--param", "Jane", "--header-url", "https://e.com/p.png"]),
            vec!["takes 2 body placeholder", "1 given"],
        ),
        (
            order_update(&["--param", "Jane", "--param", "A-42"]),
            vec!["header value (IMAGE)", "none was given"],
        ),
        (
            order_update(&[
                "--param",
                "Jane",
                "--param",
                "A-42",
                "--header-url",
                "https://e.com/clip.mp4",
            ]),
            vec!["header value (IMAGE)", "(VIDEO) was given"],
        ),
        (
            vec![
                "send-template",
                BUSINESS,
                CUSTOMER,
                "--template",
                "nope",
                "--language",
                "en",
            ],
            vec!["\"nope\"", "not in the catalog"],
        ),
    ];
    for (run_args, needles) in refusals {
        s.cli.run(&run_args).expect_error(&needles);
    }
    assert_eq!(
        s.gateway.request_count(),
        1,
        "no refused template reached the gateway"
    );

    // A dry run prints the body and sends nothing.
    let run = s
        .cli
        .run(&order_update(&[
            "--json",
            "--dry-run",
            "--param",
            "a",
            "--param",
            "b",
            "--header-url",
            "https://e.com/doc",
        ]))
        .expect(0)
        .json();
    assert_eq!(run["outcome"], "dry-run");
    assert_eq!(run["decision"], "closed");
    assert_eq!(
        run["body"]["template"]["components"]["header"],
        json!({"type": "DOCUMENT", "mediaUrl": "https://e.com/doc"})
    );
    assert_eq!(s.gateway.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn templates_lists_the_catalog() {
    let s = Setup::start().await;
    s.with_catalog();
    let lines = s
        .cli
        .run(&["--json", "templates", BUSINESS])
        .expect(0)
        .json_lines();
    assert_eq!(lines.len(), 4);
    assert_eq!(
        lines[0],
        json!({"name": "order_update", "language": "en", "category": "UTILITY",
               "status": "APPROVED", "placeholders": 2, "header": "IMAGE",
               "quality_score": "UNKNOWN", "id": "order_update-en"})
    );
    let statuses: Vec<&Value> = lines.iter().map(|l| &l["status"]).collect();
    assert_eq!(
        statuses,
        [
            &json!("APPROVED"),
            &json!("PAUSED"),
            &json!("APPROVED"),
            &json!("APPROVED")
        ]
    );
    let human = s.cli.run(&["templates", BUSINESS]).expect(0);
    assert_eq!(
        human.stdout.lines().nth(1),
        Some("promo en MARKETING PAUSED placeholders=0 header=- quality=UNKNOWN id=promo-en")
    );
    // No store is opened or created.
    assert!(!s.cli.db().exists());
    // A business the gateway does not know: exit 2.
    s.cli
        .run(&["templates", "254799999999"])
        .expect_error(&["404"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_new_sends_refuse_now_unless_dry_run_and_name_themselves() {
    let s = Setup::start().await;
    let now = Utc::now().to_rfc3339();
    s.cli
        .run(&args("send-text", &["--text", "hi", "--now", &now]))
        .expect_error(&["send-text", "--now", "--dry-run"]);
    s.cli
        .run(&order_update(&["--now", &now]))
        .expect_error(&["send-template", "--now"]);
    let help = s.cli.run(&["send-list", "--help"]).expect(0);
    assert!(help.stdout.contains("--row"), "{}", help.stdout);
    assert!(
        help.stdout.contains("the --row options after"),
        "{}",
        help.stdout
    );
    assert_eq!(s.gateway.request_count(), 0);
}
