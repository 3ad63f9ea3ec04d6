//! The send path's checks of cost, consent and limits, over the store: what a send is
//! predicted to cost, whether consent or a limit withholds a template, counting a
//! customer against the portfolio's messaging limit, and the records after a send
//! (the predicted cost, the free entry point window a reply opens, a 131049 / 131050
//! answer).

use chrono::{DateTime, Datelike, TimeDelta, Utc};
use lipachat_api::MarketingRefusal;
use lipachat_api::MessageId;
use lipachat_session::consent::SERVICE_COUNTER_PREFIX;
use lipachat_session::{
    Conversation, CountTime, FreeEntryPoint, PredictedCost, PricingCategory, Reach, Store,
};
use lipachat_session::{saturating_add, truncate_to_millis};
use tracing::{info, warn};

use crate::consent::{ConsentConfig, MarketingStatus, MessagingLimits, PricingConfig, Withholding};
use crate::cost::{Pricing, PricingInput, SERVICE_BILLING_SINCE, predict};
use crate::error::PolicyError;
use crate::shared::Shared;

/// The counter of a business number's service messages in one UTC month: a portfolio
/// name in the store's reach count, one member per message.
///
/// Every service send names it: it is written digit by digit, without the formatting
/// machinery (which cost about 2,200 instructions a send by callgrind, three times the
/// window check's).
fn service_tier_counter(conversation: Conversation, at: DateTime<Utc>) -> String {
    let date = at.date_naive();
    let Ok(year) = u64::try_from(date.year()) else {
        // Before year 0: never a real send's date.
        return formatted_tier_counter(conversation, at);
    };
    let mut name = String::with_capacity(SERVICE_COUNTER_PREFIX.len() + 24);
    name.push_str(SERVICE_COUNTER_PREFIX);
    push_decimal(&mut name, conversation.business.as_u64(), 1);
    name.push('.');
    push_decimal(&mut name, year, 4);
    name.push('-');
    push_decimal(&mut name, u64::from(date.month()), 2);
    name
}

/// The counter's name as `format!` writes it: the text counts were first stored under,
/// which [`service_tier_counter`] writes faster.
fn formatted_tier_counter(conversation: Conversation, at: DateTime<Utc>) -> String {
    format!(
        "{SERVICE_COUNTER_PREFIX}{}.{:04}-{:02}",
        conversation.business,
        at.year(),
        at.month()
    )
}

/// Appends `n` in decimal, zero-padded to `width` digits, as `{n:0width$}` would.
fn push_decimal(out: &mut String, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    while n > 0 || start == digits.len() {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    for _ in digits.len() - start..width {
        out.push('0');
    }
    for &digit in &digits[start..] {
        out.push(char::from(digit));
    }
}

/// A month and a bit: every message of one calendar month stays counted in it.
const SERVICE_TIER_SPAN: TimeDelta = TimeDelta::days(40);

/// The member a message is counted as in the free tier's count: all 128 bits of its
/// `messageId` folded into the store's 64 (the upper half mixed, then combined with the
/// lower half), never a prefix: ids made in one millisecond share their leading
/// timestamp (UUID v7) and a caller's ids may share any prefix, and a prefix would count
/// them as one. Two distinct ids fold to one member only by a 64-bit coincidence.
fn message_member(message_id: MessageId) -> u64 {
    let whole = u128::from_be_bytes(*message_id.as_bytes());
    let (high, low) = ((whole >> 64) as u64, whole as u64);
    mix64(high) ^ low
}

/// SplitMix64's finaliser: a fixed bijection on 64 bits that spreads every input bit
/// over the output (the same in every process and version, as a count shared by
/// replicas on one Redis needs).
fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl<S: Store> Shared<S> {
    /// What a send of `category` to `conversation` at `at` is predicted to cost
    /// ([`price_send`]).
    pub async fn predict_pricing(
        &self,
        conversation: Conversation,
        category: PricingCategory,
        window_open: bool,
        at: DateTime<Utc>,
        count: Option<MessageId>,
    ) -> Result<Pricing, PolicyError> {
        price_send(
            self.store(),
            &self.config.pricing,
            conversation,
            category,
            window_open,
            at,
            count,
        )
        .await
    }

    /// The customer's marketing status towards the business number at `at`.
    pub async fn marketing_status(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> Result<MarketingStatus, PolicyError> {
        let consent = self.store().marketing_consent(conversation).await?;
        Ok(MarketingStatus::of(&consent, at))
    }

    /// Whether consent withholds a template of `category` (only marketing is affected).
    pub async fn consent_withholds(
        &self,
        conversation: Conversation,
        category: PricingCategory,
        at: DateTime<Utc>,
    ) -> Result<Option<Withholding>, PolicyError> {
        let status = self.marketing_status(conversation, at).await?;
        Ok(Withholding::by_consent(category, status))
    }

    /// Counts the customer against its business number's portfolio for a message
    /// delivered outside the customer service window: `Some` when the limit withholds
    /// it (nothing counted). No portfolio, or an unlimited tier: never withheld.
    pub async fn reach(
        &self,
        conversation: Conversation,
        at: DateTime<Utc>,
    ) -> Result<Option<Withholding>, PolicyError> {
        let Some(portfolio) = self.config.limits.of(conversation.business) else {
            return Ok(None);
        };
        let Some(limit) = portfolio.tier.limit() else {
            return Ok(None);
        };
        let reach = self
            .store()
            .reach_customer(
                &portfolio.name,
                conversation.customer.key(),
                // Read from the system clock: a shared store may count on its own clock.
                CountTime::read_from(&**self.sessions.clock(), at),
                limit,
                MessagingLimits::SPAN,
            )
            .await?;
        Ok(match reach {
            Reach::LimitReached { reached } => {
                info!(%conversation, portfolio = portfolio.name, reached, limit, "messaging limit reached: not sending");
                Some(Withholding::MessagingLimit { reached, limit })
            }
            Reach::Counted { .. } | Reach::AlreadyCounted { .. } => None,
        })
    }

    /// Records a gateway's 131049 / 131050 answer ([`record_marketing_refusal`]).
    pub async fn record_marketing_refusal(
        &self,
        conversation: Conversation,
        refusal: MarketingRefusal,
        at: DateTime<Utc>,
    ) -> Result<Withholding, PolicyError> {
        record_marketing_refusal(
            self.store(),
            &self.config.consent,
            conversation,
            refusal,
            at,
        )
        .await
    }

    /// [`Shared::record_sent`] for a free-form (service) message sent inside the window,
    /// boxed (its future would otherwise swell every send's and delivery's).
    pub async fn record_service_sent(
        &self,
        conversation: Conversation,
        message_id: MessageId,
        wa_id: Option<String>,
        at: DateTime<Utc>,
    ) -> Result<Box<Pricing>, PolicyError> {
        let pricing = Box::pin(self.record_sent(
            conversation,
            message_id,
            wa_id,
            PricingCategory::Service,
            true,
            at,
        ))
        .await?;
        Ok(Box::new(pricing))
    }

    /// Records a business message sent at `at`: the free entry point window it may
    /// open (a reply within 24 hours of a referral-carrying inbound message), then its
    /// predicted cost, priced after that (a reply that opens the window is free);
    /// answers the pricing. `count` is the `messageId` a service message is counted
    /// against the monthly free tier with.
    #[allow(clippy::too_many_arguments)] // One record of one send: every part is needed.
    pub async fn record_sent(
        &self,
        conversation: Conversation,
        message_id: MessageId,
        wa_id: Option<String>,
        category: PricingCategory,
        window_open: bool,
        at: DateTime<Utc>,
    ) -> Result<Pricing, PolicyError> {
        let store = self.store();
        let opened = store
            .record_business_reply(
                conversation,
                at,
                saturating_add(at, PricingConfig::FREE_ENTRY_POINT_LENGTH),
                PricingConfig::FREE_ENTRY_POINT_REPLY_WITHIN,
            )
            .await?;
        if let Some(entry) = opened.filter(|e| e.opened_at == Some(truncate_to_millis(at))) {
            info!(%conversation, until = ?entry.until, "the reply opened a free entry point window (predicted)");
        }
        let count = (category == PricingCategory::Service).then_some(message_id);
        // The reply's call answered the record now stored: priced from it, not read again.
        let pricing = price_with_entry(
            store,
            &self.config.pricing,
            PricedSend {
                conversation,
                category,
                window_open,
                at,
                count,
                spent: Some(&self.spent_tiers),
            },
            opened,
        )
        .await?;
        store
            .record_predicted_cost(PredictedCost {
                conversation,
                message_id,
                wa_id,
                sent_at: at,
                category: pricing.category,
                free: pricing.free,
            })
            .await?;
        self.observers.priced(&pricing);
        Ok(pricing)
    }
}

/// Records a 131049 / 131050 (a gateway's answer to a template send, or a failed status)
/// at `at`, so the next marketing template is refused locally; answers the withholding
/// it stands for.
pub async fn record_marketing_refusal<S: Store>(
    store: &S,
    consent: &ConsentConfig,
    conversation: Conversation,
    refusal: MarketingRefusal,
    at: DateTime<Utc>,
) -> Result<Withholding, PolicyError> {
    Ok(match refusal {
        MarketingRefusal::OptedOut => {
            warn!(%conversation, "the customer stopped marketing messages (131050): recording the opt-out");
            store.record_opt_out(conversation, true, at).await?;
            Withholding::OptedOut
        }
        _ => {
            let until = saturating_add(at, consent.back_off());
            warn!(%conversation, %until, "per-user marketing limit (131049): no marketing template until the back-off ends");
            let stored = store.extend_back_off(conversation, until).await?;
            Withholding::MarketingLimit {
                retry_at: stored.back_off_until.unwrap_or(until),
            }
        }
    })
}

/// What a send of `category` to `conversation` at `at` is predicted to cost, with the
/// window open or not, from the store's free entry point record and the pricing
/// settings. `count` (the send's `messageId`) counts a service message against the
/// business number's monthly free tier; `None` only reads it (a dry run, a status).
pub async fn price_send<S: Store>(
    store: &S,
    pricing_config: &PricingConfig,
    conversation: Conversation,
    category: PricingCategory,
    window_open: bool,
    at: DateTime<Utc>,
    count: Option<MessageId>,
) -> Result<Pricing, PolicyError> {
    let free_entry_point = store.free_entry_point(conversation).await?;
    let send = PricedSend {
        conversation,
        category,
        window_open,
        at,
        count,
        spent: None,
    };
    price_with_entry(store, pricing_config, send, free_entry_point).await
}

/// The send [`price_send`] prices.
#[derive(Clone, Copy)]
struct PricedSend<'a> {
    conversation: Conversation,
    category: PricingCategory,
    window_open: bool,
    at: DateTime<Utc>,
    count: Option<MessageId>,
    /// The messenger's memory of used-up tiers, when a messenger prices it.
    spent: Option<&'a SpentTiers>,
}

/// A business number's month (UTC year and month) and the free tier it was counted
/// against.
type TierMonth = (u64, i32, u32, u64);

/// The months whose free tier of service messages this messenger has seen used up.
///
/// A count that reached its tier stays reached for the rest of its month: its members are
/// kept for [`SERVICE_TIER_SPAN`], longer than any month, and are never taken out. So once
/// the store answers "limit reached", later sends that month are priced as billed without
/// asking it again (at a high volume, every send after the first thousand of a month).
///
/// Where memory and store can differ (pricing only: no send waits on it): a message
/// priced again after the tier was used up (a retry under the same `messageId` after its
/// outcome could not be stored) is priced billed, where the store would find it already
/// counted, free; a count the store lost (a Redis failover without persistence) is not
/// seen until the messenger restarts or the month ends; and a count on the other kind of
/// clock, which the store refuses, is not attempted, so not refused.
///
/// Each thread also remembers the last month it found used up (a month used up stays
/// used up, so the memory is never wrong): a busy month is then answered without the
/// lock, whose cache line otherwise moved between the worker threads on every send
/// (perf: about 0.3 % of a guarded send's time).
#[derive(Debug)]
pub(crate) struct SpentTiers {
    /// This memory's number, naming it in the threads' memories (no two are the same
    /// in one process).
    id: u64,
    months: std::sync::Mutex<std::collections::HashSet<TierMonth>>,
}

thread_local! {
    /// The last month this thread found used up, and in which [`SpentTiers`] (its id).
    static LAST_SPENT: std::cell::Cell<Option<(u64, TierMonth)>> = const { std::cell::Cell::new(None) };
}

impl Default for SpentTiers {
    fn default() -> Self {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Self {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            months: std::sync::Mutex::default(),
        }
    }
}

impl SpentTiers {
    /// Months remembered at most: past it the memory starts again (the store still
    /// answers), but for the one month each thread remembers as its last used up.
    const MAX_MONTHS: usize = 4096;

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<TierMonth>> {
        self.months
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `month`'s tier was seen used up.
    fn holds(&self, month: TierMonth) -> bool {
        if LAST_SPENT.get() == Some((self.id, month)) {
            return true;
        }
        let spent = self.lock().contains(&month);
        if spent {
            LAST_SPENT.set(Some((self.id, month)));
        }
        spent
    }

    /// Notes that `month`'s tier is used up.
    fn note(&self, month: TierMonth) {
        let mut months = self.lock();
        if months.len() >= Self::MAX_MONTHS {
            months.clear();
        }
        months.insert(month);
    }
}

/// [`price_send`] with the conversation's free entry point record already known.
async fn price_with_entry<S: Store>(
    store: &S,
    pricing_config: &PricingConfig,
    send: PricedSend<'_>,
    free_entry_point: Option<FreeEntryPoint>,
) -> Result<Pricing, PolicyError> {
    let PricedSend {
        conversation,
        category,
        window_open,
        at,
        count,
        spent,
    } = send;
    let within_service_free_tier =
        if category == PricingCategory::Service && at.date_naive() >= SERVICE_BILLING_SINCE {
            within_free_tier(store, pricing_config, conversation, at, count, spent).await?
        } else {
            true
        };
    let mut pricing = predict(&PricingInput {
        category,
        window_open,
        free_entry_point,
        within_service_free_tier,
        at,
    });
    if let (Some(prices), Some(phone)) = (&pricing_config.prices, conversation.phone()) {
        pricing.estimate = prices.estimate(&pricing, &phone.digits());
    }
    Ok(pricing)
}

/// Whether the business number is within its monthly free tier of service messages at
/// `at`, counting `count` in it when given. A month `spent` holds is used up without
/// asking the store; one the store finds used up is noted there.
async fn within_free_tier<S: Store>(
    store: &S,
    config: &PricingConfig,
    conversation: Conversation,
    at: DateTime<Utc>,
    count: Option<MessageId>,
    spent: Option<&SpentTiers>,
) -> Result<bool, PolicyError> {
    let tier = config.service_free_per_month_value();
    let date = at.date_naive();
    let month = (
        conversation.business.as_u64(),
        date.year(),
        date.month(),
        tier,
    );
    if spent.is_some_and(|spent| spent.holds(month)) {
        return Ok(false);
    }
    let counter = service_tier_counter(conversation, at);
    let within = match count {
        Some(message_id) => !matches!(
            store
                .reach_customer(
                    &counter,
                    message_member(message_id),
                    at,
                    tier,
                    SERVICE_TIER_SPAN
                )
                .await?,
            Reach::LimitReached { .. }
        ),
        None => store.reached(&counter, at, SERVICE_TIER_SPAN).await? < tier,
    };
    if !within && let Some(spent) = spent {
        spent.note(month);
    }
    Ok(within)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use lipachat_session::ConsentStore;
    use proptest::prelude::*;

    /// A thread's memory of the last used-up month answers only for the memory that
    /// found it: another messenger's (another store's) months are its own.
    #[test]
    fn a_used_up_month_is_remembered_per_memory_not_per_thread() {
        let (first, second) = (SpentTiers::default(), SpentTiers::default());
        let march = (254_110_090_747, 2026, 3, 1000);
        let april = (254_110_090_747, 2026, 4, 1000);
        assert!(!first.holds(march));
        first.note(march);
        assert!(first.holds(march));
        assert!(first.holds(march), "answered from the thread's memory");
        assert!(!second.holds(march));
        assert!(!first.holds(april));
        second.note(april);
        assert!(second.holds(april));
        assert!(first.holds(march));
        assert!(!first.holds(april));
        // Another thread asks the lock, and finds the same.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                assert!(first.holds(march));
                assert!(!second.holds(march));
            });
        });
    }

    #[test]
    fn the_counter_name_pads_the_year_and_month() {
        let chat = Conversation::parse("254110090747", "254700000001").unwrap();
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        assert_eq!(service_tier_counter(chat, at), "svc.254110090747.2026-03");
        let early = Utc.with_ymd_and_hms(7, 12, 31, 23, 59, 59).unwrap();
        assert_eq!(
            service_tier_counter(chat, early),
            "svc.254110090747.0007-12"
        );
    }

    /// The memory of used-up months answers as the store would: the same answers with it
    /// and without, no count written once the tier is used up, and another month or
    /// another tier asks the store again.
    #[tokio::test]
    async fn a_used_up_month_is_answered_from_memory_as_the_store_would() {
        let dir = tempfile::tempdir().unwrap();
        let store = lipachat_session::SledStore::open(dir.path().join("db")).unwrap();
        let chat = Conversation::parse("254110090747", "254700000001").unwrap();
        let config = |tier| PricingConfig {
            service_free_per_month: Some(tier),
            ..PricingConfig::default()
        };
        let december = Utc.with_ymd_and_hms(2026, 12, 2, 3, 0, 0).unwrap();
        let spent = SpentTiers::default();
        let mut answers = Vec::new();
        for _ in 0..5 {
            let id = Some(MessageId::new());
            answers.push(
                within_free_tier(&store, &config(2), chat, december, id, Some(&spent))
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(answers, [true, true, false, false, false]);
        let counter = service_tier_counter(chat, december);
        assert_eq!(
            store
                .reached(&counter, december, SERVICE_TIER_SPAN)
                .await
                .unwrap(),
            2
        );
        // Without the memory, the store gives the same answer.
        let fresh = Some(MessageId::new());
        assert!(
            !within_free_tier(&store, &config(2), chat, december, fresh, None)
                .await
                .unwrap()
        );
        // A larger tier, and the next month, are asked of the store again.
        assert!(
            within_free_tier(&store, &config(5), chat, december, fresh, Some(&spent))
                .await
                .unwrap()
        );
        let january = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
        assert!(
            within_free_tier(&store, &config(2), chat, january, fresh, Some(&spent))
                .await
                .unwrap()
        );
    }

    proptest! {
        #[test]
        fn the_counter_name_is_the_formatted_one(
            business in 1_000_000_u64..999_999_999_999_999,
            seconds in -70_000_000_000_i64..250_000_000_000,
        ) {
            let Ok(chat) = Conversation::parse(&business.to_string(), "254700000001") else {
                return Ok(());
            };
            let at = Utc.timestamp_opt(seconds, 0).unwrap();
            prop_assert_eq!(service_tier_counter(chat, at), formatted_tier_counter(chat, at));
        }
    }
}
