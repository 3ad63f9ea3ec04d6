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
use lipachat_session::consent::SERVICE_COUNTER_PREFIX;

/// The consent settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentConfig {
    /// Inbound texts (or button replies) that opt a customer out of marketing: the whole
    /// message, read by [`ConsentConfig::keyword`]. Default: `STOP`, and `STOP
    /// PROMOTIONS` (the text of the marketing opt-out button Meta adds to marketing
    /// templates).
    pub stop_keywords: Vec<String>,
    /// Inbound texts that opt a customer back in.
    pub start_keywords: Vec<String>,
    /// How long no marketing template goes after a 131049 (the platform publishes no
    /// number; 24 hours is our choice). Taken as at most 30 days
    /// ([`lipachat_session::export::MAX_IMPORTED_BACK_OFF`], the longest a store keeps,
    /// so that every back-off survives an export and import) and at least zero
    /// ([`ConsentConfig::back_off`]).
    pub marketing_back_off: TimeDelta,
}

impl Default for ConsentConfig {
    fn default() -> Self {
        Self {
            stop_keywords: vec!["STOP".into(), "STOP PROMOTIONS".into()],
            start_keywords: vec!["START".into()],
            marketing_back_off: TimeDelta::hours(24),
        }
    }
}

impl ConsentConfig {
    /// The back-off after a 131049 as applied: [`ConsentConfig::marketing_back_off`]
    /// within zero and 30 days.
    ///
    /// ```
    /// use chrono::TimeDelta;
    /// use lipachat_policy::consent::ConsentConfig;
    ///
    /// let long = ConsentConfig { marketing_back_off: TimeDelta::days(45), ..ConsentConfig::default() };
    /// assert_eq!(long.back_off(), TimeDelta::days(30));
    /// assert_eq!(ConsentConfig::default().back_off(), TimeDelta::hours(24));
    /// ```
    pub fn back_off(&self) -> TimeDelta {
        self.marketing_back_off.clamp(
            TimeDelta::zero(),
            lipachat_session::export::MAX_IMPORTED_BACK_OFF,
        )
    }

    /// Whether an inbound message is an opt-out (`Some(true)`), an opt-in (`Some(false)`)
    /// or neither: a text, or a button reply (a template's quick-reply button, or an
    /// interactive reply button) whose text or payload (id) is a keyword, each read by
    /// [`ConsentConfig::keyword`]. Other kinds of message (media captions, list choices,
    /// reactions) are neither.
    pub fn keyword_in(&self, content: &lipachat_api::webhook::InboundContent) -> Option<bool> {
        use lipachat_api::webhook::{InboundContent, InteractiveReply};
        let (first, second) = match content {
            InboundContent::Text { body } => (Some(body.as_str()), None),
            InboundContent::Button { payload, text } => (text.as_deref(), payload.as_deref()),
            InboundContent::Interactive(InteractiveReply::Button { id, title }) => {
                (title.as_deref(), id.as_deref())
            }
            _ => (None, None),
        };
        first
            .and_then(|text| self.keyword(text))
            .or_else(|| second.and_then(|text| self.keyword(text)))
    }

    /// Whether an inbound text is an opt-out (`Some(true)`), an opt-in (`Some(false)`) or
    /// neither: the whole message equal to a keyword once both are read by
    /// [`keyword_form`] (surrounding whitespace, punctuation and emoji trimmed, full-width
    /// forms folded, zero-width and format characters dropped, any case). "STOP.",
    /// " stop!", "Ｓｔｏｐ", "S\u{200B}TOP" and "STOP 🛑" are opt-outs; "please don't stop"
    /// and "S.T.O.P" are not (another word, or punctuation inside the word).
    pub fn keyword(&self, text: &str) -> Option<bool> {
        let text = keyword_form(text);
        let named = |words: &[String]| words.iter().any(|w| keyword_form(w) == text);
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

/// The form a message and a keyword are compared in: zero-width and format characters
/// (and emoji variation selectors) dropped, full-width forms folded to ASCII as Unicode's
/// NFKC folds them (U+FF01 to U+FF5E, and the ideographic space), lowercased, runs of
/// whitespace made one space, and everything that is not a letter or a digit trimmed from
/// both ends (whitespace, punctuation, symbols, emoji; a combining mark after the last
/// letter stays, being part of it). Inner punctuation stays, so
/// "S.T.O.P" is not "stop". Other compatibility forms (mathematical or circled letters)
/// are not folded.
pub fn keyword_form(text: &str) -> String {
    let mut folded = String::with_capacity(text.len());
    for c in text.chars() {
        if is_invisible(c) {
            continue;
        }
        let c = match u32::from(c) {
            0xFF01..=0xFF5E => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
            0x3000 => ' ',
            _ => c,
        };
        if c.is_whitespace() {
            if !folded.ends_with(' ') {
                folded.push(' ');
            }
        } else {
            folded.extend(c.to_lowercase());
        }
    }
    folded
        .trim_start_matches(|c: char| !c.is_alphanumeric())
        // A combining mark after a letter belongs to it ("STOP\u{301}" ends in a
        // different letter, as the precomposed "STÓP" does): not trimmed at the end.
        .trim_end_matches(|c: char| !c.is_alphanumeric() && !is_combining_mark(c))
        .to_owned()
}

/// Combining marks (the blocks of Unicode's combining diacritics: U+0300–036F, U+1AB0–1AFF,
/// U+1DC0–1DFF, U+20D0–20FF, U+FE20–FE2F), which change the letter before them.
fn is_combining_mark(c: char) -> bool {
    matches!(
        u32::from(c),
        0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F
    )
}

/// Zero-width and format characters (Unicode's `Cf` ones a chat message carries: zero
/// width space and joiners, direction marks, word joiner, byte order mark, soft hyphen,
/// invisible operators, tags), Hangul fillers and variation selectors: dropped before a
/// keyword is compared.
fn is_invisible(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F
            | 0x1160
            | 0x17B4
            | 0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF9..=0xFFFB
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE007F
            | 0xE0100..=0xE01EF
    )
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

    /// Puts `numbers` in the portfolio `name` with `tier`. Refused, naming what is wrong:
    /// a bad name (or one beginning `svc.`, kept for the store's monthly service
    /// counters), a name already configured with another tier (its numbers share one
    /// count, so they must share one limit), or a number already in another portfolio
    /// (a number belongs to one portfolio; moving it silently would hide its sends from
    /// the first portfolio's count). Adding numbers to a portfolio again with the same
    /// tier is allowed.
    pub fn portfolio(
        mut self,
        name: &str,
        tier: MessagingTier,
        numbers: impl IntoIterator<Item = PhoneNumber>,
    ) -> Result<Self, PortfolioError> {
        lipachat_session::consent::check_portfolio_name(name).map_err(PortfolioError::Name)?;
        if name.starts_with(SERVICE_COUNTER_PREFIX) {
            return Err(PortfolioError::ReservedName {
                name: name.to_owned(),
            });
        }
        if let Some(existing) = self.portfolios.values().find(|p| p.name == name)
            && existing.tier != tier
        {
            return Err(PortfolioError::TwoTiers {
                name: name.to_owned(),
                configured: existing.tier,
                given: tier,
            });
        }
        let numbers: Vec<PhoneNumber> = numbers.into_iter().collect();
        for number in &numbers {
            if let Some(existing) = self.portfolios.get(number)
                && existing.name != name
            {
                return Err(PortfolioError::NumberInTwoPortfolios {
                    number: *number,
                    configured: existing.name.clone(),
                    given: name.to_owned(),
                });
            }
        }
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

/// Why [`MessagingLimits::portfolio`] refused a portfolio.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PortfolioError {
    /// The portfolio's name is not usable (the reason says why).
    #[error("bad portfolio name: {0}")]
    Name(String),
    /// The name begins like the store's monthly service counters (`svc.`), whose counts
    /// it would share.
    #[error(
        "portfolio name {name:?} begins with \"svc.\", kept for the monthly service counters; choose another name"
    )]
    ReservedName {
        /// The name given.
        name: String,
    },
    /// The portfolio is already configured with another tier.
    #[error("portfolio {name:?} is already configured with tier {configured:?}, not {given:?}")]
    TwoTiers {
        /// The portfolio's name.
        name: String,
        /// The tier it has.
        configured: MessagingTier,
        /// The other tier given.
        given: MessagingTier,
    },
    /// The business number already belongs to another portfolio.
    #[error("business number {number} is already in portfolio {configured:?}, not {given:?}")]
    NumberInTwoPortfolios {
        /// The number.
        number: PhoneNumber,
        /// The portfolio it is in.
        configured: String,
        /// The other portfolio named.
        given: String,
    },
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
    use proptest::prelude::*;

    #[test]
    fn keywords_are_the_whole_message_in_any_case() {
        let config = ConsentConfig::default();
        assert_eq!(config.keyword(" stop "), Some(true));
        assert_eq!(config.keyword("Start"), Some(false));
        assert_eq!(config.keyword("please stop"), None);
        assert_eq!(config.keyword(""), None);
    }

    #[test]
    fn decorated_keywords_are_recognised_and_other_words_are_not() {
        let config = ConsentConfig::default();
        for text in [
            "STOP.",
            " stop!",
            "\u{ff33}\u{ff54}\u{ff4f}\u{ff50}",
            "S\u{200B}TOP",
            "STOP \u{1f6d1}",
            "\u{1f6d1}\u{fe0f} Stop!!! \u{1f64f}\u{1f3fd}",
            "\u{feff}stop\u{2060}",
            "\u{3000}ＳＴＯＰ。",
            "\"stop\"",
            "Stop promotions",
        ] {
            assert_eq!(config.keyword(text), Some(true), "{text:?}");
        }
        assert_eq!(config.keyword("¡START!"), Some(false));
        for text in [
            "please don't stop",
            "stop it",
            "STOP STOP",
            "S.T.O.P",
            "stopp",
            "\u{1f6d1}",
            "...",
            "don't",
        ] {
            assert_eq!(config.keyword(text), None, "{text:?}");
        }
    }

    #[test]
    fn a_button_reply_counts_by_its_text_or_payload() {
        use lipachat_api::webhook::{InboundContent, InteractiveReply};
        let config = ConsentConfig::default();
        let button = |payload: Option<&str>, text: Option<&str>| InboundContent::Button {
            payload: payload.map(str::to_owned),
            text: text.map(str::to_owned),
        };
        assert_eq!(
            config.keyword_in(&button(Some("promo-7"), Some("Stop promotions"))),
            Some(true)
        );
        assert_eq!(
            config.keyword_in(&button(Some("STOP"), Some("No thanks"))),
            Some(true)
        );
        assert_eq!(
            config.keyword_in(&button(Some("promo-7"), Some("Buy now"))),
            None
        );
        let reply = InboundContent::Interactive(InteractiveReply::Button {
            id: Some("start".into()),
            title: Some("Yes please".into()),
        });
        assert_eq!(config.keyword_in(&reply), Some(false));
    }

    /// Decorations of a keyword: surrounding whitespace, punctuation and emoji, any case,
    /// full-width forms, zero-width and format characters between its letters.
    fn decorated(keyword: &'static str) -> impl Strategy<Value = String> {
        let around = prop::collection::vec(
            prop::sample::select(vec![
                " ",
                "\t",
                "\n",
                "\u{3000}",
                "\u{a0}",
                ".",
                "!",
                "?",
                "¡",
                "¿",
                ",",
                ";",
                ":",
                "\"",
                "'",
                "(",
                ")",
                "*",
                "-",
                "…",
                "。",
                "！",
                "\u{1f6d1}",
                "\u{1f64f}",
                "\u{1f3fd}",
                "\u{fe0f}",
                "\u{200d}",
                "\u{2764}",
                "\u{200b}",
            ]),
            0..4,
        );
        let letters = prop::collection::vec(
            (
                any::<bool>(),
                any::<bool>(),
                prop::sample::select(vec![
                    "", "", "\u{200b}", "\u{200c}", "\u{200d}", "\u{2060}", "\u{feff}", "\u{ad}",
                ]),
            ),
            keyword.len(),
        );
        (around.clone(), letters, around).prop_map(move |(before, letters, after)| {
            let mut text: String = before.concat();
            for (c, (upper, wide, gap)) in keyword.chars().zip(letters) {
                let c = if upper {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                };
                let c = if wide {
                    char::from_u32(c as u32 + 0xFEE0).unwrap_or(c)
                } else {
                    c
                };
                text.push(c);
                text.push_str(gap);
            }
            text.push_str(&after.concat());
            text
        })
    }

    proptest::proptest! {
        #[test]
        fn any_decoration_of_a_keyword_is_recognised(
            stop in decorated("stop"),
            start in decorated("start"),
        ) {
            let config = ConsentConfig::default();
            proptest::prop_assert_eq!(config.keyword(&stop), Some(true), "{:?}", stop);
            proptest::prop_assert_eq!(config.keyword(&start), Some(false), "{:?}", start);
        }

        #[test]
        fn a_keyword_with_another_word_is_not(
            keyword in decorated("stop"),
            word in "[a-zA-Z0-9\u{e9}\u{4e00}]{1,8}",
            before in any::<bool>(),
        ) {
            let text = if before { format!("{word} {keyword}") } else { format!("{keyword} {word}") };
            proptest::prop_assert_eq!(ConsentConfig::default().keyword(&text), None, "{:?}", text);
        }
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
        assert!(matches!(
            MessagingLimits::default().portfolio("a b", MessagingTier::Tier250, []),
            Err(PortfolioError::Name(_))
        ));
    }

    /// A portfolio named like a monthly service counter would share its count (and count
    /// on the counter's given times): refused, naming the name.
    #[test]
    fn a_portfolio_named_like_a_service_counter_is_refused() {
        let a = PhoneNumber::parse("254700000001").unwrap();
        let refused = MessagingLimits::default().portfolio(
            "svc.254110090747.2026-11",
            MessagingTier::Tier250,
            [a],
        );
        assert_eq!(
            refused,
            Err(PortfolioError::ReservedName {
                name: "svc.254110090747.2026-11".to_owned()
            })
        );
        assert!(
            refused
                .unwrap_err()
                .to_string()
                .contains("svc.254110090747.2026-11")
        );
        assert!(
            MessagingLimits::default()
                .portfolio("svcs", MessagingTier::Tier250, [a])
                .is_ok()
        );
    }

    /// A number belongs to one portfolio, and a portfolio has one tier; adding more
    /// numbers to a portfolio with its own tier is fine.
    #[test]
    fn portfolios_do_not_conflict() {
        let a = PhoneNumber::parse("254700000001").unwrap();
        let b = PhoneNumber::parse("254700000002").unwrap();
        let limits = MessagingLimits::default()
            .portfolio("acme", MessagingTier::Tier250, [a])
            .unwrap();
        assert!(matches!(
            limits
                .clone()
                .portfolio("other", MessagingTier::Tier250, [a]),
            Err(PortfolioError::NumberInTwoPortfolios { .. })
        ));
        assert!(matches!(
            limits
                .clone()
                .portfolio("acme", MessagingTier::Tier100k, [b]),
            Err(PortfolioError::TwoTiers { .. })
        ));
        let both = limits
            .portfolio("acme", MessagingTier::Tier250, [a, b])
            .unwrap();
        assert_eq!(both.of(a), both.of(b));
    }
}
