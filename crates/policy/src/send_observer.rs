//! Observers of a messenger's sends ([`SendObserver`]): told of each free-form and each
//! template send a [`Messenger`] (or any of its clones) makes, whoever calls it, with the
//! outcome or error and the time it took; a metrics exporter counts sends by outcome with
//! one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lipachat_session::Store;

use crate::error::PolicyError;
use crate::messenger::Messenger;
use crate::outcome::SendOutcome;
use crate::template_send::TemplateOutcome;

/// Told of every send a [`Messenger`] makes, once the send has ended. Called on the
/// sending task: keep it short and never block.
pub trait SendObserver: Send + Sync + 'static {
    /// A free-form send ended ([`Messenger::send`], and [`Messenger::send_text`] and
    /// [`Messenger::send_contact`], which go through it): its outcome or error, when it
    /// started on the engine's clock, and how long it took.
    fn free_form_sent(
        &self,
        outcome: Result<&SendOutcome, &PolicyError>,
        started_at: DateTime<Utc>,
        took: Duration,
    );

    /// A template send ended ([`Messenger::send_template`]): its outcome or error, when it
    /// started on the engine's clock, and how long it took.
    fn template_sent(
        &self,
        outcome: Result<&TemplateOutcome, &PolicyError>,
        started_at: DateTime<Utc>,
        took: Duration,
    );
}

/// The observers a messenger and its clones share.
#[derive(Default)]
pub(crate) struct SendObservers {
    /// Whether there is any (read without the lock, so a messenger without observers pays
    /// one atomic load per send).
    any: AtomicBool,
    observers: RwLock<Vec<Arc<dyn SendObserver>>>,
}

/// A send being observed: when it started.
pub(crate) struct ObservedSend {
    started_at: DateTime<Utc>,
    started: Instant,
}

impl SendObservers {
    fn add(&self, observer: Arc<dyn SendObserver>) {
        self.observers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(observer);
        self.any.store(true, Ordering::Release);
    }

    /// A send starting at `now` (the engine's clock): `None` when nobody observes.
    pub(crate) fn start(&self, now: impl FnOnce() -> DateTime<Utc>) -> Option<ObservedSend> {
        self.any.load(Ordering::Acquire).then(|| ObservedSend {
            started_at: now(),
            started: Instant::now(),
        })
    }

    /// Tells every observer how a free-form send started with [`SendObservers::start`]
    /// ended.
    pub(crate) fn free_form_sent(
        &self,
        send: Option<ObservedSend>,
        result: &Result<SendOutcome, PolicyError>,
    ) {
        self.tell(send, |observer, started_at, took| {
            observer.free_form_sent(result.as_ref(), started_at, took);
        });
    }

    /// Tells every observer how a template send started with [`SendObservers::start`]
    /// ended.
    pub(crate) fn template_sent(
        &self,
        send: Option<ObservedSend>,
        result: &Result<TemplateOutcome, PolicyError>,
    ) {
        self.tell(send, |observer, started_at, took| {
            observer.template_sent(result.as_ref(), started_at, took);
        });
    }

    fn tell(
        &self,
        send: Option<ObservedSend>,
        tell: impl Fn(&dyn SendObserver, DateTime<Utc>, Duration),
    ) {
        let Some(send) = send else { return };
        let took = send.started.elapsed();
        let observers = self
            .observers
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        for observer in observers.iter() {
            tell(observer.as_ref(), send.started_at, took);
        }
    }
}

impl<S: Store> Messenger<S> {
    /// Adds an observer of every send this messenger makes from now on: free-form sends
    /// ([`Messenger::send`], [`Messenger::send_text`], [`Messenger::send_contact`]) and
    /// template sends ([`Messenger::send_template`]), by any of its clones, whoever calls
    /// them. Deliveries of queued messages ([`Messenger::deliver`], and those a webhook
    /// triggers) are not sends here: they are reported in their
    /// [`DeliveryReport`](crate::DeliveryReport)s.
    pub fn observe_sends(&self, observer: Arc<dyn SendObserver>) {
        self.shared.observers.add(observer);
    }
}
