//! The stand-in gateway on loopback, on the system clock, and the command line pointed at
//! it. Sends and deliveries run on the real clock (they refuse `--now`), so the customer's
//! messages are placed at times before it.

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use lipachat_session::PhoneNumber;
use lipachat_testkit::StandInGateway;

use super::{BUSINESS, Cli};

/// A gateway and the command line pointed at it.
pub struct Setup {
    /// The stand-in gateway.
    pub gateway: StandInGateway,
    /// The command line, with its key and URL.
    pub cli: Cli,
}

impl Setup {
    /// A gateway on the system clock.
    pub async fn start() -> Self {
        Self::on(StandInGateway::start().await.unwrap())
    }

    /// The command line pointed at `gateway`.
    pub fn on(gateway: StandInGateway) -> Self {
        let cli = Cli::with_gateway(&gateway.base_url(), gateway.api_key());
        Self { gateway, cli }
    }

    /// The customer wrote `ago` before now (to the whole second): the gateway learns it,
    /// and `record` stores it. Returns that time.
    pub fn customer_wrote(&self, customer: &str, ago: TimeDelta) -> DateTime<Utc> {
        customer_wrote(&self.gateway, &self.cli, customer, ago)
    }

    /// The catalog of `business` holds the approved marketing template `contact_share`
    /// (language `en`).
    pub fn offer_contact_share(&self, business: &str) {
        self.gateway.set_templates(
            phone(business),
            vec![lipachat_testkit::template_entry(
                "contact_share",
                "en",
                "MARKETING",
                "APPROVED",
                None,
                "Our offers",
            )],
        );
    }
}

/// [`Setup::customer_wrote`] into any database.
pub fn customer_wrote(
    gateway: &StandInGateway,
    cli: &Cli,
    customer: &str,
    ago: TimeDelta,
) -> DateTime<Utc> {
    let at = Utc::now().trunc_subsecs(0) - ago;
    gateway.customer_writes_at(phone(BUSINESS), phone(customer), at);
    cli.run(&["record", BUSINESS, customer, "--at", &text(at)])
        .expect(0);
    at
}

/// A phone number written in any accepted form.
pub fn phone(text: &str) -> PhoneNumber {
    text.parse().unwrap()
}

/// A time as RFC 3339, with fractional seconds only when there are some.
pub fn text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}
