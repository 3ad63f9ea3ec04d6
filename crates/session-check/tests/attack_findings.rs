//! Findings of an attack on the tool's claims that are left open (ignored, each with the
//! reason), run against the built binary.

mod common;

use chrono::{SecondsFormat, Utc};
use common::{BUSINESS, CUSTOMER_DIGITS, Cli};

#[test]
#[ignore = "finding: import takes a queued message whose payload is not a message (it checks \
            times, not payloads), and deliver then takes it out with exit 2 saying it was \
            'refused by the gateway for good', though no request was made"]
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
        !run.stderr.contains("refused by the gateway"),
        "no request was made, yet: {}",
        run.stderr
    );
}
