//! Findings of an attack on the tool's claims, run against the built binary.

mod common;

use chrono::{SecondsFormat, Utc};
use common::{BUSINESS, CUSTOMER_DIGITS, Cli};

#[test]
fn an_unreadable_queued_message_is_refused_at_import_or_not_blamed_on_the_gateway() {
    let mut cli = Cli::new();
    // Nothing listens on the discard port: any request would fail to connect.
    cli.env("LIPACHAT_BASE_URL", "http://127.0.0.1:9")
        .env("LIPACHAT_API_KEY", "attack-key-1");
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let backup = format!(
        "{{\"kind\":\"header\",\"format\":\"lipachat-session-export\",\"version\":1}}\n\
         {{\"kind\":\"queued\",\"business\":\"{BUSINESS}\",\"customer\":\"{CUSTOMER_DIGITS}\",\
         \"message_id\":\"ca739107-4b0d-4581-acb1-4c4af70555de\",\"queued_at\":\"{now}\",\
         \"payload\":\"not a message\"}}\n"
    );
    let imported = cli.run_with_stdin(&["import"], &backup);
    if imported.code != 0 {
        // Refused at import: the claim holds.
        return;
    }
    cli.run(&["record", BUSINESS, CUSTOMER_DIGITS]).expect(0);
    let run = cli.run(&["deliver", BUSINESS, CUSTOMER_DIGITS]);
    assert!(
        !run.stderr.contains("refused by the gateway as invalid"),
        "no request was made, yet: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("unreadable (no request was made)"),
        "{}",
        run.stderr
    );
}
