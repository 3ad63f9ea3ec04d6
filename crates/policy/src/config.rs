//! What the send path does, per business number: the closed-window choice and its limits.

use std::collections::HashMap;

use chrono::TimeDelta;
use lipachat_api::TemplateMessage;
use lipachat_session::PhoneNumber;

use crate::catalog::CatalogSettings;
use crate::consent::{ConsentConfig, MessagingLimits, PricingConfig};

/// What to do with a free-form message when the window is closed (or closes within the
/// safety margin).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum OnClosed {
    /// Send nothing; the caller gets the reason and the window's state.
    Reject,
    /// Send this approved template instead (at most one per closed window and cool-down);
    /// the free-form message is dropped.
    Template(TemplateMessage),
    /// Send this approved template to invite a reply (at most one per closed window and
    /// cool-down) and keep the free-form message in the durable outbox until the customer
    /// writes back.
    Queue(TemplateMessage),
}

impl OnClosed {
    /// `reject`, `template` or `queue`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Reject => "reject",
            Self::Template(_) => "template",
            Self::Queue(_) => "queue",
        }
    }

    /// The template this choice sends, if any.
    pub fn template(&self) -> Option<&TemplateMessage> {
        match self {
            Self::Reject => None,
            Self::Template(t) | Self::Queue(t) => Some(t),
        }
    }
}

/// The send path's settings.
///
/// The window rule (its length and safety margin) is not among them: the session engine
/// owns it ([`Sessions::with_rule`](lipachat_session::Sessions::with_rule)), and the send
/// path, a dry run and every status read decide with that one.
///
/// ```
/// use chrono::TimeDelta;
/// use lipachat_api::TemplateMessage;
/// use lipachat_policy::{OnClosed, PolicyConfig};
///
/// let invite = TemplateMessage::new("contact_share", "en")?;
/// let config = PolicyConfig::default()
///     .on_closed(OnClosed::Queue(invite))
///     .outbox_ttl(TimeDelta::days(3))
///     .outbox_limit(50);
/// assert_eq!(config.outbox_limit_value(), 50);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    pub(crate) on_closed: OnClosed,
    pub(crate) per_business: HashMap<PhoneNumber, OnClosed>,
    pub(crate) invitation_cooldown: TimeDelta,
    pub(crate) outbox_limit: usize,
    pub(crate) outbox_ttl: TimeDelta,
    pub(crate) delivery_lease: TimeDelta,
    pub(crate) send_lease: TimeDelta,
    pub(crate) outcome_horizon: TimeDelta,
    pub(crate) consent: ConsentConfig,
    pub(crate) pricing: PricingConfig,
    pub(crate) limits: MessagingLimits,
    pub(crate) catalog: CatalogSettings,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            on_closed: OnClosed::Reject,
            per_business: HashMap::new(),
            invitation_cooldown: Self::DEFAULT_INVITATION_COOLDOWN,
            outbox_limit: Self::DEFAULT_OUTBOX_LIMIT,
            outbox_ttl: Self::DEFAULT_OUTBOX_TTL,
            delivery_lease: Self::DEFAULT_DELIVERY_LEASE,
            send_lease: Self::DEFAULT_SEND_LEASE,
            outcome_horizon: Self::DEFAULT_OUTCOME_HORIZON,
            consent: ConsentConfig::default(),
            pricing: PricingConfig::default(),
            limits: MessagingLimits::default(),
            catalog: CatalogSettings::default(),
        }
    }
}

impl PolicyConfig {
    /// A template is sent again to a still-closed conversation only after 24 hours.
    pub const DEFAULT_INVITATION_COOLDOWN: TimeDelta = TimeDelta::hours(24);
    /// At most 20 messages wait per conversation.
    pub const DEFAULT_OUTBOX_LIMIT: usize = lipachat_session::store::DEFAULT_OUTBOX_LIMIT;
    /// A queued message expires after 7 days.
    pub const DEFAULT_OUTBOX_TTL: TimeDelta = TimeDelta::days(7);
    /// A replica's claim on a queued message (or on sending an invitation) lasts
    /// 120 seconds: longer than the client's worst case with default settings (four
    /// attempts of 15 s plus back-off, about 75 s), so a claim does not lapse mid-send.
    pub const DEFAULT_DELIVERY_LEASE: TimeDelta = TimeDelta::seconds(120);
    /// A call's claim on a caller-given `messageId` (so that calls naming it never
    /// overlap) lasts 15 minutes: one call may make a free-form send, an invitation
    /// template and a delivery pass, each bounded by the client's retry budget, and the
    /// claim must not lapse while it runs. A call that ends or is cancelled releases it
    /// at once; only a process that dies mid-call leaves it to the lease.
    pub const DEFAULT_SEND_LEASE: TimeDelta = TimeDelta::minutes(15);
    /// A send's outcome is kept for 7 days, as long as the gateway may redeliver a
    /// webhook: a retry naming the same `messageId`, or a late report, within that span
    /// finds it (see [`PolicyConfig::outcome_horizon`]).
    pub const DEFAULT_OUTCOME_HORIZON: TimeDelta = lipachat_session::store::DEFAULT_OUTCOME_HORIZON;

    /// The closed-window choice for every business number without its own.
    pub fn on_closed(mut self, on_closed: OnClosed) -> Self {
        self.on_closed = on_closed;
        self
    }

    /// The closed-window choice for one business number.
    pub fn on_closed_for(mut self, business: PhoneNumber, on_closed: OnClosed) -> Self {
        self.per_business.insert(business, on_closed);
        self
    }

    /// How long after an invitation template another may be sent without a reply.
    pub fn invitation_cooldown(mut self, cooldown: TimeDelta) -> Self {
        self.invitation_cooldown = cooldown;
        self
    }

    /// How many messages may wait per conversation.
    pub fn outbox_limit(mut self, limit: usize) -> Self {
        self.outbox_limit = limit;
        self
    }

    /// How long a queued message may wait before it expires.
    pub fn outbox_ttl(mut self, ttl: TimeDelta) -> Self {
        self.outbox_ttl = ttl;
        self
    }

    /// How long one replica's claim on a queued message lasts.
    pub fn delivery_lease(mut self, lease: TimeDelta) -> Self {
        self.delivery_lease = lease;
        self
    }

    /// How long a call's claim on a caller-given `messageId` lasts (see
    /// [`PolicyConfig::DEFAULT_SEND_LEASE`]).
    pub fn send_lease(mut self, lease: TimeDelta) -> Self {
        self.send_lease = lease;
        self
    }

    /// How long a send's outcome is kept. Within it, a call naming a `messageId` already
    /// used returns the earlier outcome and sends nothing; after it, the outcome is gone
    /// and such a call sends again (only the gateway's own deduplication, whose span is
    /// not published, then stands between the customer and a second copy). An outcome
    /// saying a message is queued is kept at least as long as the message may wait
    /// ([`PolicyConfig::outbox_ttl`]).
    pub fn outcome_horizon(mut self, horizon: TimeDelta) -> Self {
        self.outcome_horizon = horizon;
        self
    }

    /// The consent settings (keywords, the 131049 back-off). Consent is always applied.
    pub fn consent(mut self, consent: ConsentConfig) -> Self {
        self.consent = consent;
        self
    }

    /// How sends are priced (template categories, the service free tier, prices).
    pub fn pricing(mut self, pricing: PricingConfig) -> Self {
        self.pricing = pricing;
        self
    }

    /// Which business numbers form which portfolio, for the messaging limit (off until
    /// set).
    pub fn messaging_limits(mut self, limits: MessagingLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The consent settings in use.
    pub fn consent_value(&self) -> &ConsentConfig {
        &self.consent
    }

    /// The pricing settings in use.
    pub fn pricing_value(&self) -> &PricingConfig {
        &self.pricing
    }

    /// The messaging limits in use.
    pub fn messaging_limits_value(&self) -> &MessagingLimits {
        &self.limits
    }

    /// How templates are checked against the business's catalog before they are sent
    /// (see [`CatalogSettings`]; on by default).
    pub fn catalog(mut self, settings: CatalogSettings) -> Self {
        self.catalog = settings;
        self
    }

    /// The catalog settings in use.
    pub fn catalog_settings(&self) -> CatalogSettings {
        self.catalog
    }

    /// The outcome horizon in use.
    pub fn outcome_horizon_value(&self) -> TimeDelta {
        self.outcome_horizon
    }

    /// The closed-window choice for `business`.
    pub fn on_closed_of(&self, business: PhoneNumber) -> &OnClosed {
        self.per_business.get(&business).unwrap_or(&self.on_closed)
    }

    /// The outbox limit in use.
    pub fn outbox_limit_value(&self) -> usize {
        self.outbox_limit
    }
}
