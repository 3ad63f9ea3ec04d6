//! Watching the send path (for metrics): a [`SendObserver`] is told of every send a
//! [`Messenger`](crate::Messenger) (or any of its clones) makes, whoever calls it — how
//! each free-form and template send ended and how long it took — and, on every send path
//! (a send, a template sent on its own, a reroute, an invitation, a delivery from the
//! outbox), of every template withheld and every message's predicted pricing as it
//! reaches the gateway.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::consent::Withholding;
use crate::cost::Pricing;
use crate::error::PolicyError;
use crate::outcome::SendOutcome;
use crate::template_send::TemplateOutcome;

/// What the send path reports as it goes ([`Messenger::observe`](crate::Messenger::observe)).
/// Called on the sending task: keep it quick (count, never wait). Every method does
/// nothing by default, so an observer implements only what it watches.
pub trait SendObserver: Send + Sync + 'static {
    /// A free-form send ended ([`Messenger::send`](crate::Messenger::send), and
    /// `send_text` and `send_contact`, which go through it): its outcome or error, when it
    /// started on the engine's clock, and how long it took.
    fn free_form_sent(
        &self,
        outcome: Result<&SendOutcome, &PolicyError>,
        started_at: DateTime<Utc>,
        took: Duration,
    ) {
        let _ = (outcome, started_at, took);
    }

    /// A template send ended ([`Messenger::send_template`](crate::Messenger::send_template)):
    /// its outcome or error, when it started on the engine's clock, and how long it took.
    fn template_sent(
        &self,
        outcome: Result<&TemplateOutcome, &PolicyError>,
        started_at: DateTime<Utc>,
        took: Duration,
    ) {
        let _ = (outcome, started_at, took);
    }

    /// A template was withheld for `reason`: refused locally and never sent, or, with
    /// `refused_by_gateway`, refused by the gateway (131049 / 131050) and recorded so the
    /// next is refused locally. An invitation withheld while its message is queued counts
    /// too.
    fn withheld(&self, reason: Withholding, refused_by_gateway: bool) {
        let _ = (reason, refused_by_gateway);
    }

    /// A message (free-form, a template, or a queued message delivered) was accepted by
    /// the gateway, predicted to cost `pricing`.
    fn priced(&self, pricing: &Pricing) {
        let _ = pricing;
    }
}

/// The observers a messenger and its clones share.
#[derive(Default)]
pub(crate) struct Observers {
    /// Whether there is any (read without the lock, so a messenger without observers pays
    /// one atomic load per send).
    any: AtomicBool,
    list: RwLock<Vec<Arc<dyn SendObserver>>>,
}

/// A send being observed: when it started.
pub(crate) struct ObservedSend {
    started_at: DateTime<Utc>,
    started: Instant,
}

impl Observers {
    /// Adds `observer`.
    pub(crate) fn add(&self, observer: Arc<dyn SendObserver>) {
        self.list
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(observer);
        self.any.store(true, Ordering::Release);
    }

    fn each(&self, tell: impl Fn(&dyn SendObserver)) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        for observer in self
            .list
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            tell(observer.as_ref());
        }
    }

    /// A send starting at `now` (the engine's clock): `None` when nobody observes.
    pub(crate) fn start(&self, now: impl FnOnce() -> DateTime<Utc>) -> Option<ObservedSend> {
        self.any.load(Ordering::Acquire).then(|| ObservedSend {
            started_at: now(),
            started: Instant::now(),
        })
    }

    /// Tells every observer how a free-form send started with [`Observers::start`] ended.
    pub(crate) fn free_form_sent(
        &self,
        send: Option<ObservedSend>,
        result: &Result<SendOutcome, PolicyError>,
    ) {
        self.ended(send, |o, at, took| {
            o.free_form_sent(result.as_ref(), at, took)
        });
    }

    /// Tells every observer how a template send started with [`Observers::start`] ended.
    pub(crate) fn template_sent(
        &self,
        send: Option<ObservedSend>,
        result: &Result<TemplateOutcome, PolicyError>,
    ) {
        self.ended(send, |o, at, took| {
            o.template_sent(result.as_ref(), at, took)
        });
    }

    /// Tells every observer, with `tell`, that the observed `send` ended (when it started,
    /// how long it took); nothing when it was not observed.
    fn ended(
        &self,
        send: Option<ObservedSend>,
        tell: impl Fn(&dyn SendObserver, DateTime<Utc>, Duration),
    ) {
        if let Some(send) = send {
            let took = send.started.elapsed();
            self.each(|o| tell(o, send.started_at, took));
        }
    }

    /// Tells every observer a template was withheld.
    pub(crate) fn withheld(&self, reason: Withholding, refused_by_gateway: bool) {
        self.each(|o| o.withheld(reason, refused_by_gateway));
    }

    /// Tells every observer a message was accepted, priced `pricing`.
    pub(crate) fn priced(&self, pricing: &Pricing) {
        self.each(|o| o.priced(pricing));
    }
}
