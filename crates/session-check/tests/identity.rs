//! Customers known by a business-scoped user id, and groups, in the window commands: the
//! binary accepts a user id (and `group:ID`) wherever it accepts a customer, names them by
//! their ids in its output (never by the store's handle), refuses to send to a customer
//! without a phone (exit 2), and export/import carries users, groups and aliases.
#![allow(clippy::unwrap_used)]

mod common;

use common::{BUSINESS, CUSTOMER_DIGITS, Cli, fixture, send_contact};
use serde_json::Value;

const USER: &str = "KE.13491208655302741918";
const GROUP: &str = "group:120363040694233820@g.us";

fn state(cli: &Cli, customer: &str, code: i32) -> Value {
    cli.run(&["--json", "status", BUSINESS, customer])
        .expect(code)
        .json()
}

#[test]
fn a_user_id_is_a_customer_of_its_own_until_an_alias_names_its_phone() {
    let cli = Cli::new();
    cli.run(&["record", BUSINESS, USER]).expect(0);
    // An id never met: no window, and looking creates nothing.
    let unknown = state(&cli, "KE.999", 1);
    assert_eq!(unknown["state"], "none");
    assert_eq!(unknown["customer"], "KE.999");
    let open = state(&cli, USER, 0);
    assert_eq!(open["state"], "open");
    assert_eq!(open["customer"], USER, "named by the id, not a handle");
    // The phone's own window is apart.
    assert_eq!(state(&cli, CUSTOMER_DIGITS, 1)["state"], "none");
    let listed = cli.run(&["--json", "list"]).expect(0).json_lines();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["customer"], USER);
    let human = cli.run(&["list"]).expect(0).stdout;
    assert!(
        human.starts_with(&format!("{BUSINESS} {USER} open")),
        "{human}"
    );

    // A send to it is refused before anything goes out: exit 2, one line naming it.
    for args in [
        send_contact(USER, &["--dry-run"]),
        send_contact(USER, &[]),
        vec!["deliver", BUSINESS, USER],
    ] {
        let run = cli
            .run(&args)
            .expect_error_line(&[USER, "no phone number to send to"]);
        assert!(run.stdout.is_empty(), "{run:?}");
    }
    assert_eq!(
        cli.run(&["--json", "pending"]).expect(0).json_lines().len(),
        0
    );

    // A message naming the user id and a phone ties them: the user's window moves into
    // the phone's conversation, and the id now names that conversation.
    let body = serde_json::json!({
        "messageId": "m-1", "from": CUSTOMER_DIGITS, "fromUserId": USER, "to": BUSINESS,
        "type": "TEXT", "text": "hi"
    })
    .to_string();
    let ingested = cli
        .run_with_stdin(&["--json", "ingest"], &body)
        .expect(0)
        .json_lines();
    assert_eq!(ingested[0]["customer"], CUSTOMER_DIGITS);
    let by_id = state(&cli, USER, 0);
    assert_eq!(by_id["customer"], CUSTOMER_DIGITS, "the id finds the phone");
    let listed = cli.run(&["--json", "list"]).expect(0).json_lines();
    assert_eq!(listed.len(), 1, "one conversation: {listed:?}");
    assert_eq!(listed[0]["customer"], CUSTOMER_DIGITS);
    // Now addressable: a dry run through the id plans a send to the phone.
    let plan = cli
        .run(&{
            let mut args = vec!["--json"];
            args.extend(send_contact(USER, &["--dry-run"]));
            args
        })
        .expect(0)
        .json();
    assert_eq!(plan["body"]["to"], CUSTOMER_DIGITS);
    // Forgetting through the id forgets the phone's conversation.
    let forgotten = cli
        .run(&["--json", "forget", BUSINESS, USER])
        .expect(0)
        .json();
    assert_eq!(forgotten["forgotten"], true);
    assert_eq!(forgotten["customer"], CUSTOMER_DIGITS);
}

#[test]
fn a_group_is_named_group_colon_id() {
    let cli = Cli::new();
    cli.run(&["record", BUSINESS, GROUP]).expect(0);
    assert_eq!(state(&cli, GROUP, 0)["customer"], GROUP);
    let listed = cli.run(&["--json", "list"]).expect(0).json_lines();
    assert_eq!(listed[0]["customer"], GROUP);
    cli.run(&send_contact(GROUP, &[]))
        .expect_error_line(&[GROUP, "no phone number to send to"]);
    cli.run(&["status", BUSINESS, "group:two words"])
        .expect_error(&["group id"]);
}

#[test]
fn the_fixture_user_with_a_username_is_listed_by_user_id() {
    let cli = Cli::new();
    cli.run(&["ingest", &fixture("meta-bsuid-contact-request.json")])
        .expect(0);
    let listed = cli.run(&["--json", "list"]).expect(0).json_lines();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["business"], "15550783881");
    assert_eq!(listed[0]["customer"], "US.13491208655302741918");
}

#[test]
fn export_and_import_carry_users_groups_and_aliases() {
    let cli = Cli::new();
    cli.run(&["record", BUSINESS, USER]).expect(0);
    cli.run(&["record", BUSINESS, GROUP]).expect(0);
    let tied = serde_json::json!({
        "messageId": "m-2", "from": "254799000001", "fromUserId": "KE.77", "to": BUSINESS,
        "type": "TEXT", "text": "hi"
    })
    .to_string();
    cli.run_with_stdin(&["ingest"], &tied).expect(0);
    let export = cli.run(&["export"]).expect(0).stdout;
    let kinds: Vec<String> = export
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for kind in ["user", "group", "alias", "window"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {export}");
    }
    assert!(
        export.contains(&format!("\"user_id\":\"{USER}\"")),
        "{export}"
    );

    let other = Cli::new();
    let imported = other
        .run_with_stdin(&["--json", "import"], &export)
        .expect(0)
        .json();
    assert_eq!(imported["users"], 1);
    assert_eq!(imported["groups"], 1);
    assert_eq!(imported["aliases"], 1);
    assert_eq!(imported["windows"], 3);
    // Both listings examine the same instant: taken a moment apart on the real clock,
    // their remaining seconds could differ by one.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let listed = |cli: &Cli| {
        cli.run(&["--json", "--now", &now, "list"])
            .expect(0)
            .json_lines()
    };
    assert_eq!(listed(&other), listed(&cli));
    // The alias came along: the id finds the phone in the new store too.
    assert_eq!(state(&other, "KE.77", 0)["customer"], "254799000001");
    // And the new store exports the same lines.
    assert_eq!(other.run(&["export"]).expect(0).stdout, export);
}
