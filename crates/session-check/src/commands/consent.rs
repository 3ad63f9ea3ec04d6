//! `optout`, `optin` and `costs`, and the consent and free entry point fields `status`
//! adds to the window. None of them sends anything.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use lipachat_policy::consent::ConsentView;
use lipachat_policy::cost::reported_category;
use lipachat_session::{CostRecord, PhoneNumber, Store, StoredTime};
use serde::Serialize;

use super::{Context, Exit, Lookup, conversation_of, customer_name};
use crate::cli::{Costs, Pair};
use crate::error::CliError;
use crate::output::{Render, WindowView};

/// What `status` prints: the window object with the consent fields.
#[derive(Debug, Serialize)]
pub struct StatusView {
    #[serde(flatten)]
    window: WindowView,
    #[serde(flatten)]
    consent: ConsentView,
}

impl StatusView {
    /// The view of a window and its consent fields.
    pub fn new(window: WindowView, consent: ConsentView) -> Self {
        Self { window, consent }
    }

    /// Whether the window is open.
    pub fn is_open(&self) -> bool {
        self.window.is_open()
    }
}

impl Render for StatusView {
    /// The window's line, then the consent's when there is something to say (marketing
    /// not allowed, or a free entry point window open).
    fn human(&self) -> String {
        if self.consent.is_notable() {
            format!("{}\n{}", self.window.state_line(), self.consent.words())
        } else {
            self.window.state_line().to_owned()
        }
    }
}

/// What `optout` and `optin` print.
#[derive(Debug, Serialize)]
struct OptView {
    outcome: &'static str,
    business: String,
    customer: String,
    #[serde(flatten)]
    consent: ConsentView,
    #[serde(skip)]
    stale: bool,
}

impl Render for OptView {
    fn human(&self) -> String {
        let stale = if self.stale {
            " (a later choice is recorded and stays in force)"
        } else {
            ""
        };
        format!(
            "{}: {} {}{stale}; {}",
            self.outcome.replace('_', " "),
            self.business,
            self.customer,
            self.consent.words()
        )
    }
}

/// `optout BUSINESS CUSTOMER` (`opted_out`) and `optin BUSINESS CUSTOMER`: records the
/// customer's marketing choice at now (--now, else the real clock). Exit 0.
pub async fn opt<S: Store>(
    context: &Context<S>,
    pair: Pair,
    opted_out: bool,
) -> Result<Exit, CliError> {
    let conversation = conversation_of(&context.sessions, &pair, Lookup::Create)
        .await?
        .ok_or_else(|| CliError::Usage(format!("{} names no conversation", pair.customer)))?;
    let now = context.sessions.now();
    // --now far ahead would store a choice no later real one could undo: the real clock
    // bounds it, as every stored time.
    context
        .sessions
        .check_stored_time(StoredTime::MarketingConsent, now)?;
    let store = context.sessions.store();
    let consent = store.record_opt_out(conversation, opted_out, now).await?;
    context.printer.emit(&OptView {
        outcome: if opted_out { "opted_out" } else { "opted_in" },
        business: conversation.business.to_string(),
        customer: customer_name(store, conversation.customer).await?,
        consent: ConsentView::of(store, Some(conversation), now).await?,
        stale: consent.opted_out != opted_out,
    })?;
    Ok(Exit::Success)
}

/// One business's sends on one day: predicted and reported categories.
#[derive(Debug, Default, Serialize)]
struct DayCosts {
    business: String,
    day: String,
    /// Sends recorded.
    sends: u64,
    /// Predicted category → count.
    predicted: BTreeMap<&'static str, u64>,
    /// Predicted free.
    predicted_free: u64,
    /// Reported category → count (as the statuses wrote it).
    reported: BTreeMap<String, u64>,
    /// Reported as not billable (`billable: false`).
    reported_free: u64,
    /// Sends whose status reported no pricing (LipaChat's callback carries none).
    unreported: u64,
    /// Sends reported in another category than predicted.
    mismatched: u64,
}

impl Render for DayCosts {
    fn human(&self) -> String {
        let list = |counts: Vec<(String, u64)>| {
            if counts.is_empty() {
                "none".to_owned()
            } else {
                counts
                    .into_iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let predicted = list(
            self.predicted
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
        );
        let reported = list(self.reported.iter().map(|(k, v)| (k.clone(), *v)).collect());
        format!(
            "{} {}: {} sends; predicted {predicted} ({} free); reported {reported} ({} not billable); {} with no reported pricing (unknown: LipaChat's status callback carries none); {} reported in another category than predicted",
            self.business,
            self.day,
            self.sends,
            self.predicted_free,
            self.reported_free,
            self.unreported,
            self.mismatched
        )
    }
}

/// `costs [BUSINESS]`: per business and UTC day, the predicted categories of the sends
/// recorded and what statuses reported. Exit 0.
pub async fn costs<S: Store>(context: &Context<S>, args: Costs) -> Result<Exit, CliError> {
    let records = context.sessions.store().cost_records(args.business).await?;
    for day in summarise(&records) {
        context.printer.emit(&day)?;
    }
    Ok(Exit::Success)
}

fn summarise(records: &[CostRecord]) -> Vec<DayCosts> {
    let mut days: BTreeMap<(PhoneNumber, NaiveDate), DayCosts> = BTreeMap::new();
    for record in records {
        let predicted = &record.predicted;
        let business = predicted.conversation.business;
        let day = days
            .entry((business, record.day()))
            .or_insert_with(|| DayCosts {
                business: business.to_string(),
                day: record.day().to_string(),
                ..DayCosts::default()
            });
        day.sends += 1;
        *day.predicted.entry(predicted.category.name()).or_default() += 1;
        day.predicted_free += u64::from(predicted.free);
        match &record.reported {
            None => day.unreported += 1,
            Some(reported) => {
                *day.reported.entry(reported.category.clone()).or_default() += 1;
                day.reported_free += u64::from(reported.billable == Some(false));
                let same = reported_category(&reported.category) == Some(predicted.category)
                    // The platform reports a free entry point conversation's messages
                    // under its own category names; only known categories are compared.
                    || reported_category(&reported.category).is_none();
                day.mismatched += u64::from(!same);
            }
        }
    }
    days.into_values().collect()
}
