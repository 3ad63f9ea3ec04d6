//! Consent and the limits the platform applies per customer and per portfolio: the
//! settings ([`ConsentConfig`], [`PricingConfig`], [`MessagingLimits`]), a customer's
//! marketing status ([`MarketingStatus`]) and why a send was withheld ([`Withholding`]).
//!
//! Consent is always on: a customer who opted out of marketing (error 131050, the
//! `user_preferences` webhook's stop, or a stop keyword) gets no marketing template from
//! that business number until they opt back in; after the per-user marketing limit
//! (error 131049) no marketing template goes for a back-off. Utility and authentication
//! templates and free-form messages are unaffected. The messaging limit is off until a
//! portfolio and tier are configured.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::{MarketingConsent, PhoneNumber, PricingCategory};
use serde::{Deserialize, Serialize};

use crate::cost::PriceTable;

/// The consent settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentConfig {
    /// Inbound texts that opt a customer out of marketing (whole message, any case).
    pub stop_keywords: Vec<String>,
    /// Inbound texts that opt a customer back in.
    pub start_keywords: Vec<String>,
    /// How long no marketing template goes after a 131049 (the platform publishes no
    /// number; 24 hours is our choice).
    pub marketing_back_off: TimeDelta,
}

impl Default for ConsentConfig {
    fn default() -> Self {
        Self {
            stop_keywords: vec!["STOP".into()],
            start_keywords: vec!["START".into()],
            marketing_back_off: TimeDelta::hours(24),
        }
    }
}

impl ConsentConfig {
    /// Whether an inbound message is an opt-out (`Some(true)`), an opt-in (`Some(false)`)
    /// or neither: a text read by [`ConsentConfig::keyword`].
    pub fn keyword_in(&self, content: &lipachat_api::webhook::InboundContent) -> Option<bool> {
        match content {
            lipachat_api::webhook::InboundContent::Text { body } => self.keyword(body),
            _ => None,
        }
    }

    /// Whether an inbound text is an opt-out (`Some(true)`), an opt-in (`Some(false)`) or
    /// neither: the whole message, trimmed, equal to a keyword in any case.
    pub fn keyword(&self, text: &str) -> Option<bool> {
        let text = text.trim();
        let named = |words: &[String]| words.iter().any(|w| w.trim().eq_ignore_ascii_case(text));
        if text.is_empty() {
            None
        } else if named(&self.stop_keywords) {
            Some(true)
        } else if named(&self.start_keywords) {
            Some(false)
        } else {
            None
        }
    }
}

/// How sends are priced.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PricingConfig {
    /// Template categories by template name, overriding the catalog's; a template not
    /// named here takes the category the business's template catalog gave when it was
    /// checked, else marketing (the category consent restricts, and the costliest).
    pub template_categories: HashMap<String, PricingCategory>,
    /// Service messages free per business number and calendar month (UTC) from
    /// 1 October 2026. `None`: the default, [`PricingConfig::DEFAULT_SERVICE_FREE_PER_MONTH`].
    pub service_free_per_month: Option<u64>,
    /// The user's prices, for estimates.
    pub prices: Option<PriceTable>,
}

impl PricingConfig {
    /// Service messages free per business number and month from 1 October 2026: 1,000.
    pub const DEFAULT_SERVICE_FREE_PER_MONTH: u64 = 1000;
    /// How long after a referral-carrying inbound message the business's reply opens a
    /// free entry point window: 24 hours.
    pub const FREE_ENTRY_POINT_REPLY_WITHIN: TimeDelta = TimeDelta::hours(24);
    /// How long a free entry point window lasts from the business's reply: 72 hours.
    pub const FREE_ENTRY_POINT_LENGTH: TimeDelta = TimeDelta::hours(72);

    /// The category of the template named `name`.
    ///
    /// The configuration's override for `name` first, else `catalog`, the category the
    /// business's template catalog gave when the template was checked against it, else
    /// marketing (a template that went unchecked, or a category this crate does not know).
    pub fn template_category(
        &self,
        name: &str,
        catalog: Option<&lipachat_api::TemplateCategory>,
    ) -> PricingCategory {
        use lipachat_api::TemplateCategory;
        if let Some(category) = self.template_categories.get(name) {
            return *category;
        }
        match catalog {
            Some(TemplateCategory::Utility) => PricingCategory::Utility,
            Some(TemplateCategory::Authentication) => PricingCategory::Authentication,
            _ => PricingCategory::Marketing,
        }
    }

    /// The monthly free tier of service messages in use.
    pub fn service_free_per_month_value(&self) -> u64 {
        self.service_free_per_month
            .unwrap_or(Self::DEFAULT_SERVICE_FREE_PER_MONTH)
    }
}

/// A messaging limit tier: unique customers a portfolio may reach outside a customer
/// service window in a moving 24 hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessagingTier {
    /// 250 (new portfolios).
    Tier250,
    /// 2,000.
    Tier2k,
    /// 10,000.
    Tier10k,
    /// 100,000.
    Tier100k,
    /// No limit.
    Unlimited,
}

impl MessagingTier {
    /// The number of unique customers, `None` when unlimited.
    pub fn limit(self) -> Option<u64> {
        match self {
            Self::Tier250 => Some(250),
            Self::Tier2k => Some(2_000),
            Self::Tier10k => Some(10_000),
            Self::Tier100k => Some(100_000),
            Self::Unlimited => None,
        }
    }

    /// Reads `250`, `2000` (or `2k`), `10000`, `100000` or `unlimited`.
    pub fn parse(text: &str) -> Option<Self> {
        match text
            .trim()
            .to_ascii_lowercase()
            .replace([',', '_'], "")
            .as_str()
        {
            "250" => Some(Self::Tier250),
            "2000" | "2k" => Some(Self::Tier2k),
            "10000" | "10k" => Some(Self::Tier10k),
            "100000" | "100k" => Some(Self::Tier100k),
            "unlimited" => Some(Self::Unlimited),
            _ => None,
        }
    }
}

/// A business portfolio: its name and tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Portfolio {
    /// Its name ([`lipachat_session::consent::check_portfolio_name`]).
    pub name: String,
    /// Its tier.
    pub tier: MessagingTier,
}

/// Which business numbers form which portfolio. Empty (the default): no limit is applied.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessagingLimits {
    pub(crate) portfolios: HashMap<PhoneNumber, Portfolio>,
}

impl MessagingLimits {
    /// The span the platform counts unique customers in: a moving 24 hours.
    pub const SPAN: TimeDelta = TimeDelta::hours(24);

    /// Puts `numbers` in the portfolio `name` with `tier`. A bad name is an error naming
    /// what is wrong.
    pub fn portfolio(
        mut self,
        name: &str,
        tier: MessagingTier,
        numbers: impl IntoIterator<Item = PhoneNumber>,
    ) -> Result<Self, String> {
        lipachat_session::consent::check_portfolio_name(name)?;
        for number in numbers {
            self.portfolios.insert(
                number,
                Portfolio {
                    name: name.to_owned(),
                    tier,
                },
            );
        }
        Ok(self)
    }

    /// The portfolio of a business number, if configured.
    pub fn of(&self, business: PhoneNumber) -> Option<&Portfolio> {
        self.portfolios.get(&business)
    }
}

/// A customer's marketing status towards a business number at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "marketing", rename_all = "snake_case")]
pub enum MarketingStatus {
    /// Marketing templates may go.
    Allowed,
    /// The customer opted out.
    OptedOut,
    /// Inside a 131049 back-off.
    Limited {
        /// When a marketing template may be tried again.
        retry_at: DateTime<Utc>,
    },
}

impl MarketingStatus {
    /// The status a stored consent gives at `at` (an opt-out outranks a back-off).
    pub fn of(consent: &MarketingConsent, at: DateTime<Utc>) -> Self {
        match consent.back_off_until {
            _ if consent.opted_out => Self::OptedOut,
            Some(until) if at < until => Self::Limited { retry_at: until },
            _ => Self::Allowed,
        }
    }

    /// `allowed`, `opted_out` or `limited`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::OptedOut => "opted_out",
            Self::Limited { .. } => "limited",
        }
    }

    /// When a marketing template may be tried again, inside a back-off.
    pub fn retry_at(self) -> Option<DateTime<Utc>> {
        match self {
            Self::Limited { retry_at } => Some(retry_at),
            _ => None,
        }
    }
}

/// Why a template was withheld: refused locally, never sent to the gateway (or, for the
/// two gateway answers, refused by it and recorded so the next is refused locally).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Withholding {
    /// The customer opted out of marketing from this business number.
    OptedOut,
    /// Inside the per-user marketing limit's back-off.
    MarketingLimit {
        /// When a marketing template may be tried again.
        retry_at: DateTime<Utc>,
    },
    /// The portfolio reached its messaging limit in the moving 24 hours.
    MessagingLimit {
        /// Unique customers the portfolio reached in the span.
        reached: u64,
        /// The limit.
        limit: u64,
    },
}

impl Withholding {
    /// What consent withholds from a template of `category` for a customer whose
    /// marketing status is `status`: only marketing templates are withheld.
    pub fn by_consent(category: PricingCategory, status: MarketingStatus) -> Option<Self> {
        match status {
            _ if category != PricingCategory::Marketing => None,
            MarketingStatus::Allowed => None,
            MarketingStatus::OptedOut => Some(Self::OptedOut),
            MarketingStatus::Limited { retry_at } => Some(Self::MarketingLimit { retry_at }),
        }
    }

    /// `opted_out`, `marketing_limit` or `messaging_limit`.
    pub fn name(self) -> &'static str {
        match self {
            Self::OptedOut => "opted_out",
            Self::MarketingLimit { .. } => "marketing_limit",
            Self::MessagingLimit { .. } => "messaging_limit",
        }
    }

    /// When a send may be tried again, when known.
    pub fn retry_at(self) -> Option<DateTime<Utc>> {
        match self {
            Self::MarketingLimit { retry_at } => Some(retry_at),
            _ => None,
        }
    }
}

/// A conversation's marketing consent and free entry point window as tools show them:
/// the fields `session-check status --json` adds to the window object, and a running
/// bot's admin route answers with it (one shape for both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentView {
    /// The free entry point window's end while one is open (RFC 3339), else null.
    pub free_entry_point_until: Option<String>,
    /// Whether that end is the platform's (a status confirmed it) rather than predicted.
    pub free_entry_point_confirmed: bool,
    /// `allowed`, `opted_out` or `limited`.
    pub marketing: String,
    /// When a marketing template may be tried again inside a 131049 back-off, else null.
    pub marketing_retry_at: Option<String>,
}

impl ConsentView {
    /// The view for `conversation` at `now` (`None`: a conversation never met).
    pub async fn of<S: lipachat_session::Store>(
        store: &S,
        conversation: Option<lipachat_session::Conversation>,
        now: DateTime<Utc>,
    ) -> Result<Self, lipachat_session::StoreError> {
        let (consent, entry) = match conversation {
            Some(conversation) => (
                store.marketing_consent(conversation).await?,
                store.free_entry_point(conversation).await?,
            ),
            None => Default::default(),
        };
        let status = MarketingStatus::of(&consent, now);
        let open = entry.filter(|e| e.is_open_at(now));
        Ok(Self {
            free_entry_point_until: open
                .and_then(|e| e.until)
                .map(lipachat_session::view::view_time),
            free_entry_point_confirmed: open.is_some_and(|e| e.confirmed),
            marketing: status.name().to_owned(),
            marketing_retry_at: status.retry_at().map(lipachat_session::view::view_time),
        })
    }

    /// Whether there is something beyond the default to say: marketing not allowed, or
    /// a free entry point window open.
    pub fn is_notable(&self) -> bool {
        self.marketing != "allowed" || self.free_entry_point_until.is_some()
    }

    /// The human words: marketing, and the free entry point window when one is open.
    pub fn words(&self) -> String {
        let marketing = match (self.marketing.as_str(), &self.marketing_retry_at) {
            ("limited", Some(at)) => format!("marketing: limited (131049) until {at}"),
            ("opted_out", _) => "marketing: opted out".to_owned(),
            (other, _) => format!("marketing: {other}"),
        };
        match &self.free_entry_point_until {
            Some(until) => format!(
                "{marketing}; free entry point window until {until} ({})",
                if self.free_entry_point_confirmed {
                    "confirmed by the platform"
                } else {
                    "predicted"
                }
            ),
            None => marketing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_the_whole_message_in_any_case() {
        let config = ConsentConfig::default();
        assert_eq!(config.keyword(" stop "), Some(true));
        assert_eq!(config.keyword("Start"), Some(false));
        assert_eq!(config.keyword("please stop"), None);
        assert_eq!(config.keyword(""), None);
    }

    #[test]
    fn an_opt_out_outranks_a_back_off_and_a_back_off_ends() {
        let at: DateTime<Utc> = "2026-12-01T10:00:00Z".parse().unwrap_or_default();
        let limited = MarketingConsent::default().with_back_off(at + TimeDelta::hours(1));
        assert_eq!(
            MarketingStatus::of(&limited, at),
            MarketingStatus::Limited {
                retry_at: at + TimeDelta::hours(1)
            }
        );
        assert_eq!(
            MarketingStatus::of(&limited, at + TimeDelta::hours(1)),
            MarketingStatus::Allowed
        );
        let out = limited.with_opt_out(true, at);
        assert_eq!(MarketingStatus::of(&out, at), MarketingStatus::OptedOut);
    }

    #[test]
    fn tiers_and_portfolio_names_are_checked() {
        assert_eq!(MessagingTier::parse("2,000"), Some(MessagingTier::Tier2k));
        assert_eq!(
            MessagingTier::parse("unlimited").and_then(MessagingTier::limit),
            None
        );
        assert_eq!(MessagingTier::parse("300"), None);
        assert!(
            MessagingLimits::default()
                .portfolio("a b", MessagingTier::Tier250, [])
                .is_err()
        );
    }
}
