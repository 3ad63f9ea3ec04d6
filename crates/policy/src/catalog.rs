//! The template catalogs the send path checks templates against: one per business
//! number, fetched from the gateway on first use, refreshed on an interval and on demand,
//! kept in this process's memory.
//!
//! Each replica fetches its own copy rather than sharing one through the store: the
//! gateway is the catalog's only source (a copy in the store would be one more thing to
//! go stale), a fetch is one small read per business per refresh interval, and the store
//! traits stay as they are. Replicas may therefore see a status change (a template
//! paused) up to one refresh interval apart; [`TemplateCatalogs::refresh`] on a
//! `TEMPLATE_STATUS` webhook narrows that.
//!
//! When a fetch fails (a gateway error, a timeout), a copy fetched within
//! [`CatalogSettings::max_age`] is used; with none, the template goes unchecked: a
//! warning is logged and [`TemplateCatalogs::unchecked_count`] goes up. Availability comes
//! before the check; the send is still guarded by the window rules. After a failed fetch
//! the next one waits [`CatalogSettings::retry_failed_after`], so an unreachable catalog
//! does not cost every send a request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_api::{ApiError, Catalog, CatalogRefusal, Client, TemplateCategory, TemplateMessage};
use lipachat_session::PhoneNumber;
use tracing::{info, warn};

/// How the send path checks templates against the business's catalog.
///
/// ```
/// use chrono::TimeDelta;
/// use lipachat_policy::{CatalogSettings, PolicyConfig};
///
/// let config = PolicyConfig::default().catalog(
///     CatalogSettings::default()
///         .refresh_every(TimeDelta::minutes(5))
///         .max_age(TimeDelta::hours(6)),
/// );
/// assert!(config.catalog_settings().is_enabled());
/// assert!(!CatalogSettings::disabled().is_enabled());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogSettings {
    enabled: bool,
    refresh_every: TimeDelta,
    max_age: TimeDelta,
    retry_failed_after: TimeDelta,
    fetch_timeout: Duration,
}

impl Default for CatalogSettings {
    /// Checking on; refreshed every 15 minutes; a copy up to 24 hours old stands in when a
    /// fetch fails; a failed fetch is tried again after a minute; a fetch gets 10 seconds.
    fn default() -> Self {
        Self {
            enabled: true,
            refresh_every: TimeDelta::minutes(15),
            max_age: TimeDelta::hours(24),
            retry_failed_after: TimeDelta::minutes(1),
            fetch_timeout: Duration::from_secs(10),
        }
    }
}

impl CatalogSettings {
    /// No checking: every template goes as it is, nothing is fetched, and
    /// [`CatalogCheck::Disabled`] is reported.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// Whether templates are checked.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// How long a fetched catalog is used before it is fetched again (default 15 min).
    pub fn refresh_every(mut self, interval: TimeDelta) -> Self {
        self.refresh_every = interval;
        self
    }

    /// How old a copy may be and still stand in when a fetch fails (default 24 h).
    pub fn max_age(mut self, age: TimeDelta) -> Self {
        self.max_age = age;
        self
    }

    /// How long after a failed fetch the next is tried (default 1 min); until then the
    /// fallback applies without a request.
    pub fn retry_failed_after(mut self, wait: TimeDelta) -> Self {
        self.retry_failed_after = wait;
        self
    }

    /// The time one fetch may take, its retries included (default 10 s).
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }
}

/// How a template that was sent had been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CatalogCheck {
    /// Against a catalog fetched within the refresh interval (or just now).
    Checked {
        /// When that catalog was fetched.
        fetched_at: DateTime<Utc>,
    },
    /// Against an older copy, because the fetch failed; the copy was within the
    /// maximum age.
    CachedCopy {
        /// When that copy was fetched.
        fetched_at: DateTime<Utc>,
    },
    /// Not checked: no catalog could be fetched and no copy within the maximum age was
    /// at hand. Logged as a warning and counted ([`TemplateCatalogs::unchecked_count`]).
    Unchecked,
    /// Checking is switched off ([`CatalogSettings::disabled`]).
    Disabled,
}

impl CatalogCheck {
    /// `checked`, `cached_copy`, `unchecked` or `disabled`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Checked { .. } => "checked",
            Self::CachedCopy { .. } => "cached_copy",
            Self::Unchecked => "unchecked",
            Self::Disabled => "disabled",
        }
    }
}

/// A template that passed the check (or went unchecked): what the outcome reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateApproval {
    /// The template's category as the catalog spells it; `None` when unchecked or the
    /// catalog gave none.
    pub category: Option<TemplateCategory>,
    /// How it was checked.
    pub check: CatalogCheck,
}

/// One business's catalog in memory.
#[derive(Debug, Default)]
struct Entry {
    /// The last catalog fetched, and when.
    catalog: Option<(Arc<Catalog>, DateTime<Utc>)>,
    /// When the last fetch failed, if it failed after the last success.
    failed_at: Option<DateTime<Utc>>,
}

/// The catalogs of every business number this process sends templates for.
///
/// Each is fetched from the gateway on first use, used for
/// [`CatalogSettings::refresh_every`], and refreshed on demand with
/// [`TemplateCatalogs::refresh`]; it is kept in this process's memory, not shared through
/// the store (the gateway is the catalog's only source). When a fetch fails, a copy within
/// [`CatalogSettings::max_age`] stands in; with none, a template goes unchecked, with a
/// warning, and [`TemplateCatalogs::unchecked_count`] goes up.
#[derive(Debug)]
pub struct TemplateCatalogs {
    settings: CatalogSettings,
    entries: Mutex<HashMap<PhoneNumber, Entry>>,
    /// Held while fetching, so that callers arriving together make one fetch.
    fetching: tokio::sync::Mutex<()>,
    unchecked: AtomicU64,
}

impl TemplateCatalogs {
    /// Empty catalogs under `settings`.
    pub fn new(settings: CatalogSettings) -> Self {
        Self {
            settings,
            entries: Mutex::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
            unchecked: AtomicU64::new(0),
        }
    }

    /// The settings in use.
    pub fn settings(&self) -> CatalogSettings {
        self.settings
    }

    /// How many templates went unchecked since this process started, because no catalog
    /// could be fetched and no copy within the maximum age was at hand.
    pub fn unchecked_count(&self) -> u64 {
        self.unchecked.load(Ordering::Relaxed)
    }

    /// The copy in memory for `business`, and when it was fetched.
    pub fn cached(&self, business: PhoneNumber) -> Option<(Arc<Catalog>, DateTime<Utc>)> {
        self.lock()
            .get(&business)
            .and_then(|entry| entry.catalog.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PhoneNumber, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fetches `business`'s catalog now and keeps it (on demand: after creating a
    /// template, or on a `TEMPLATE_STATUS` webhook). A failure keeps the earlier copy.
    pub async fn refresh(
        &self,
        client: &Client,
        business: PhoneNumber,
        now: DateTime<Utc>,
    ) -> Result<Arc<Catalog>, ApiError> {
        let fetched = tokio::time::timeout(self.settings.fetch_timeout, client.templates(business))
            .await
            .unwrap_or(Err(ApiError::Timeout {
                after: self.settings.fetch_timeout,
            }));
        let mut entries = self.lock();
        let entry = entries.entry(business).or_default();
        match fetched {
            Ok(catalog) => {
                info!(%business, templates = catalog.templates.len(), "template catalog fetched");
                let catalog = Arc::new(catalog);
                entry.catalog = Some((Arc::clone(&catalog), now));
                entry.failed_at = None;
                Ok(catalog)
            }
            Err(error) => {
                entry.failed_at = Some(now);
                Err(error)
            }
        }
    }

    /// Checks `template` for `business` before it is sent: against a catalog within the
    /// refresh interval (fetching one if needed), else a copy within the maximum age,
    /// else not at all (warned and counted). A refusal is the catalog's answer: unknown
    /// template or language, not approved, placeholders or header not matching.
    pub async fn check(
        &self,
        client: &Client,
        business: PhoneNumber,
        template: &TemplateMessage,
        now: DateTime<Utc>,
    ) -> Result<TemplateApproval, CatalogRefusal> {
        if !self.settings.enabled {
            return Ok(TemplateApproval {
                category: None,
                check: CatalogCheck::Disabled,
            });
        }
        let (catalog, check) = match self.fresh(business, now) {
            Some(found) => found,
            None => {
                let _one_fetch = self.fetching.lock().await;
                // Another caller may have fetched while this one waited.
                match self.fresh(business, now) {
                    Some(found) => found,
                    None => self.fetch_or_fall_back(client, business, now).await,
                }
            }
        };
        let Some(catalog) = catalog else {
            self.unchecked.fetch_add(1, Ordering::Relaxed);
            warn!(%business, template = template.name(), language = template.language(), "template sent unchecked: no catalog could be fetched and no copy within the maximum age is at hand");
            return Ok(TemplateApproval {
                category: None,
                check: CatalogCheck::Unchecked,
            });
        };
        let found = catalog.check(template)?;
        Ok(TemplateApproval {
            category: found.category.clone(),
            check,
        })
    }

    /// A catalog within the refresh interval; or, after a failed fetch that is too recent
    /// to try again, the fallback without a request.
    fn fresh(
        &self,
        business: PhoneNumber,
        now: DateTime<Utc>,
    ) -> Option<(Option<Arc<Catalog>>, CatalogCheck)> {
        let entries = self.lock();
        let entry = entries.get(&business)?;
        if let Some((catalog, fetched_at)) = &entry.catalog
            && now - *fetched_at < self.settings.refresh_every
        {
            return Some((
                Some(Arc::clone(catalog)),
                CatalogCheck::Checked {
                    fetched_at: *fetched_at,
                },
            ));
        }
        let failed_at = entry.failed_at?;
        (now - failed_at < self.settings.retry_failed_after).then(|| self.fallback(entry, now))
    }

    /// A copy within the maximum age, or none.
    fn fallback(&self, entry: &Entry, now: DateTime<Utc>) -> (Option<Arc<Catalog>>, CatalogCheck) {
        match &entry.catalog {
            Some((catalog, fetched_at)) if now - *fetched_at <= self.settings.max_age => (
                Some(Arc::clone(catalog)),
                CatalogCheck::CachedCopy {
                    fetched_at: *fetched_at,
                },
            ),
            _ => (None, CatalogCheck::Unchecked),
        }
    }

    async fn fetch_or_fall_back(
        &self,
        client: &Client,
        business: PhoneNumber,
        now: DateTime<Utc>,
    ) -> (Option<Arc<Catalog>>, CatalogCheck) {
        match self.refresh(client, business, now).await {
            Ok(catalog) => (Some(catalog), CatalogCheck::Checked { fetched_at: now }),
            Err(error) => {
                warn!(%business, %error, "the template catalog could not be fetched");
                let entries = self.lock();
                match entries.get(&business) {
                    Some(entry) => self.fallback(entry, now),
                    None => (None, CatalogCheck::Unchecked),
                }
            }
        }
    }
}
