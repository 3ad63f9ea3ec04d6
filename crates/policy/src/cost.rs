//! What a send costs: its pricing category and whether the platform bills it, by the
//! pricing rule in force at the send's time, and an estimate from the user's own price
//! file.
//!
//! The rules, as read on 2026-12-01 (sources in docs/architecture.md, "Cost, consent and
//! limits"):
//!
//! - From 1 July 2025 ([`PER_MESSAGE_PRICING_SINCE`]) every delivered template is billed
//!   by its category, except utility templates inside an open customer service window;
//!   service (free-form) messages are free.
//! - From 1 October 2026 ([`SERVICE_BILLING_SINCE`]) utility templates are billed inside
//!   the window too, and service messages are billed (at the utility rate) beyond a free
//!   tier per business number and month ([`crate::consent::PricingConfig::service_free_per_month`]).
//! - Inside a free entry point window every message is free, under both rules.
//!
//! A time before 1 July 2025 is priced by the July 2025 rule (the conversation-based
//! pricing before it is not modelled).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use lipachat_session::{FreeEntryPoint, PricingCategory};
use serde::{Deserialize, Serialize};

/// When per-message pricing began (utility free inside the customer service window).
pub const PER_MESSAGE_PRICING_SINCE: NaiveDate = match NaiveDate::from_ymd_opt(2025, 7, 1) {
    Some(date) => date,
    None => NaiveDate::MIN,
};

/// When service messages (beyond a monthly free tier) and utility templates inside the
/// customer service window began to be billed.
pub const SERVICE_BILLING_SINCE: NaiveDate = match NaiveDate::from_ymd_opt(2026, 10, 1) {
    Some(date) => date,
    None => NaiveDate::MAX,
};

/// Why a send is free, or that it is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FreeBecause {
    /// Inside a free entry point window.
    FreeEntryPoint,
    /// A service message, or (before 1 October 2026) a utility template, inside the
    /// customer service window.
    CustomerServiceWindow,
    /// A service message within the business number's monthly free tier (from
    /// 1 October 2026).
    ServiceFreeTier,
    /// Not free: billed by its category.
    Billed,
}

impl FreeBecause {
    /// `free_entry_point`, `customer_service_window`, `service_free_tier` or `billed`.
    pub fn name(self) -> &'static str {
        match self {
            Self::FreeEntryPoint => "free_entry_point",
            Self::CustomerServiceWindow => "customer_service_window",
            Self::ServiceFreeTier => "service_free_tier",
            Self::Billed => "billed",
        }
    }
}

/// What a send is predicted to cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pricing {
    /// The pricing category.
    pub category: PricingCategory,
    /// Whether it is predicted free.
    pub free: bool,
    /// Why (or that it is billed).
    pub because: FreeBecause,
    /// The free entry point window's end when one is open: a prediction until a status
    /// confirmed it (`free_entry_point_confirmed`).
    pub free_entry_point_until: Option<DateTime<Utc>>,
    /// Whether `free_entry_point_until` is the platform's.
    pub free_entry_point_confirmed: bool,
    /// The estimated price, from the user's price file, when it has one for the market.
    pub estimate: Option<Estimate>,
}

/// An estimated price from the user's price file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Estimate {
    /// The amount, in decimal (`0` when free).
    pub amount: String,
    /// The currency the file names.
    pub currency: String,
    /// The market the price is for (the file's key).
    pub market: String,
}

/// The facts a price is predicted from.
#[derive(Debug, Clone, Copy)]
pub struct PricingInput {
    /// The message's category (service for a free-form message).
    pub category: PricingCategory,
    /// Whether the customer service window is open at the send.
    pub window_open: bool,
    /// The conversation's free entry point record.
    pub free_entry_point: Option<FreeEntryPoint>,
    /// Whether the business number is still within its monthly free tier of service
    /// messages (only consulted from 1 October 2026).
    pub within_service_free_tier: bool,
    /// The send's time.
    pub at: DateTime<Utc>,
}

/// Predicts category and whether it is free (without an estimate).
///
/// ```
/// use lipachat_policy::cost::{predict, PricingInput};
/// use lipachat_session::PricingCategory;
///
/// let utility_in_window = |at: &str| PricingInput {
///     category: PricingCategory::Utility,
///     window_open: true,
///     free_entry_point: None,
///     within_service_free_tier: true,
///     at: at.parse().unwrap(),
/// };
/// assert!(predict(&utility_in_window("2026-09-30T23:59:59Z")).free);
/// assert!(!predict(&utility_in_window("2026-10-01T00:00:00Z")).free);
/// ```
pub fn predict(input: &PricingInput) -> Pricing {
    let open_entry = input
        .free_entry_point
        .filter(|entry| entry.is_open_at(input.at));
    let service_billed = input.at.date_naive() >= SERVICE_BILLING_SINCE;
    let because = if open_entry.is_some() {
        FreeBecause::FreeEntryPoint
    } else {
        match input.category {
            PricingCategory::Service if !service_billed => FreeBecause::CustomerServiceWindow,
            PricingCategory::Service if input.within_service_free_tier => {
                FreeBecause::ServiceFreeTier
            }
            PricingCategory::Utility if input.window_open && !service_billed => {
                FreeBecause::CustomerServiceWindow
            }
            _ => FreeBecause::Billed,
        }
    };
    Pricing {
        category: input.category,
        free: because != FreeBecause::Billed,
        because,
        free_entry_point_until: open_entry.and_then(|e| e.until),
        free_entry_point_confirmed: open_entry.is_some_and(|e| e.confirmed),
        estimate: None,
    }
}

/// The category a status's `pricing.category` is compared as: its own, or `None` for a
/// category this library does not model.
pub fn reported_category(category: &str) -> Option<PricingCategory> {
    PricingCategory::parse(category)
}

/// A price file: the user's own prices per market and category. The repository's
/// `docs/prices.sample.toml` is a sample of the format, not current prices.
///
/// ```toml
/// currency = "USD"
/// [markets.254]          # the customer's country calling code, or "default"
/// marketing = 0.02
/// utility = 0.004
/// authentication = 0.004
/// service = 0.004        # billed service messages (beyond the free tier)
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// The currency of every price.
    pub currency: String,
    /// Prices per market: a country calling code (`254`) or `default`.
    #[serde(default)]
    pub markets: BTreeMap<String, MarketPrices>,
}

/// One market's prices per category.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MarketPrices {
    /// A marketing template.
    pub marketing: Option<f64>,
    /// A utility template.
    pub utility: Option<f64>,
    /// An authentication template.
    pub authentication: Option<f64>,
    /// A billed service message.
    pub service: Option<f64>,
}

/// A price file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PriceFileError {
    /// The file is not valid TOML of the price file's shape.
    #[error("price file: {0}")]
    Syntax(String),
    /// A price is negative or not a finite number.
    #[error(
        "price file: market {market}, {category}: {value} is not a price (a number of 0 or more)"
    )]
    BadPrice {
        /// The market.
        market: String,
        /// The category.
        category: &'static str,
        /// The value given.
        value: f64,
    },
    /// A market key is neither digits (a country calling code) nor `default`.
    #[error(
        "price file: market {0:?} is neither a country calling code (1 to 3 digits) nor \"default\""
    )]
    BadMarket(String),
}

impl PriceTable {
    /// Reads a price file's text.
    pub fn parse(text: &str) -> Result<Self, PriceFileError> {
        let table: Self =
            toml::from_str(text).map_err(|e| PriceFileError::Syntax(e.to_string()))?;
        for (market, prices) in &table.markets {
            let digits =
                (1..=3).contains(&market.len()) && market.bytes().all(|b| b.is_ascii_digit());
            if !digits && market != "default" {
                return Err(PriceFileError::BadMarket(market.clone()));
            }
            for category in PricingCategory::ALL {
                if let Some(value) = prices.of(category)
                    && !(value.is_finite() && value >= 0.0)
                {
                    return Err(PriceFileError::BadPrice {
                        market: market.clone(),
                        category: category.name(),
                        value,
                    });
                }
            }
        }
        Ok(table)
    }

    /// The estimate for `pricing` to a customer whose phone's digits are `customer`:
    /// the longest market key that starts them, else `default`; `None` when no market
    /// gives the category a price.
    pub fn estimate(&self, pricing: &Pricing, customer: &str) -> Option<Estimate> {
        let (market, prices) = (1..=3)
            .rev()
            .filter_map(|len| customer.get(..len))
            .find_map(|code| self.markets.get_key_value(code))
            .or_else(|| self.markets.get_key_value("default"))?;
        let price = prices.of(pricing.category)?;
        Some(Estimate {
            amount: if pricing.free {
                "0".into()
            } else {
                price.to_string()
            },
            currency: self.currency.clone(),
            market: market.clone(),
        })
    }
}

impl MarketPrices {
    /// The price of a category.
    pub fn of(&self, category: PricingCategory) -> Option<f64> {
        match category {
            PricingCategory::Marketing => self.marketing,
            PricingCategory::Utility => self.utility,
            PricingCategory::Authentication => self.authentication,
            PricingCategory::Service => self.service,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn input(category: PricingCategory, window_open: bool, at: &str) -> PricingInput {
        PricingInput {
            category,
            window_open,
            free_entry_point: None,
            within_service_free_tier: true,
            at: at.parse().unwrap_or_default(),
        }
    }

    #[test]
    fn the_rule_changes_on_1_october_2026() {
        let before = "2026-09-30T12:00:00Z";
        let after = "2026-10-02T12:00:00Z";
        assert!(predict(&input(PricingCategory::Utility, true, before)).free);
        assert!(!predict(&input(PricingCategory::Utility, true, after)).free);
        assert!(!predict(&input(PricingCategory::Utility, false, before)).free);
        assert!(predict(&input(PricingCategory::Service, true, before)).free);
        let tier = predict(&input(PricingCategory::Service, true, after));
        assert_eq!(tier.because, FreeBecause::ServiceFreeTier);
        let beyond = PricingInput {
            within_service_free_tier: false,
            ..input(PricingCategory::Service, true, after)
        };
        assert!(!predict(&beyond).free);
        assert!(!predict(&input(PricingCategory::Marketing, true, before)).free);
    }

    #[test]
    fn the_free_entry_point_window_makes_everything_free_while_open() {
        let at: DateTime<Utc> = "2026-11-01T12:00:00Z".parse().unwrap_or_default();
        let entry = FreeEntryPoint::default()
            .with_referral(at - TimeDelta::hours(2))
            .with_reply(
                at - TimeDelta::hours(1),
                at + TimeDelta::hours(71),
                TimeDelta::hours(24),
            );
        let mut marketing = input(PricingCategory::Marketing, false, "2026-11-01T12:00:00Z");
        marketing.free_entry_point = Some(entry);
        let priced = predict(&marketing);
        assert!(priced.free);
        assert_eq!(
            priced.free_entry_point_until,
            Some(at + TimeDelta::hours(71))
        );
        marketing.at = at + TimeDelta::hours(71);
        assert!(!predict(&marketing).free, "the window's end is exclusive");
    }

    #[test]
    fn price_files_are_checked_and_estimate_by_the_longest_market() {
        let table = PriceTable::parse(
            "currency = \"USD\"\n[markets.254]\nmarketing = 0.02\n[markets.default]\nmarketing = 0.05\n",
        )
        .unwrap_or_default();
        let pricing = predict(&input(
            PricingCategory::Marketing,
            false,
            "2026-11-01T00:00:00Z",
        ));
        let kenya = table.estimate(&pricing, "254712345678");
        assert_eq!(
            kenya.map(|e| (e.market, e.amount)),
            Some(("254".into(), "0.02".into()))
        );
        let other = table.estimate(&pricing, "4479460000");
        assert_eq!(other.map(|e| e.market), Some("default".into()));
        assert!(matches!(
            PriceTable::parse("currency = \"USD\"\n[markets.254]\nmarketing = -1\n"),
            Err(PriceFileError::BadPrice { .. })
        ));
        assert!(matches!(
            PriceTable::parse("currency = \"USD\"\n[markets.kenya]\n"),
            Err(PriceFileError::BadMarket(_))
        ));
        assert!(matches!(
            PriceTable::parse("currency = "),
            Err(PriceFileError::Syntax(_))
        ));
    }
}
