//! Watching the send path for metrics: a [`SendObserver`] is told of every template
//! withheld and of every message's predicted pricing as it reaches the gateway, on every
//! send path (a send, a template sent on its own, a reroute, an invitation, a delivery
//! from the outbox), whichever clone of the messenger made it.

use std::sync::{Arc, PoisonError, RwLock};

use crate::consent::Withholding;
use crate::cost::Pricing;

/// What the send path reports as it goes ([`Messenger::observe`](crate::Messenger::observe)).
/// Called on the sending task: keep it quick (count, do not wait).
pub trait SendObserver: Send + Sync + 'static {
    /// A template was withheld for `reason`: refused locally and never sent, or, with
    /// `refused_by_gateway`, refused by the gateway (131049 / 131050) and recorded so the
    /// next is refused locally. An invitation withheld while its message is queued counts
    /// too.
    fn withheld(&self, reason: Withholding, refused_by_gateway: bool);

    /// A message (free-form, a template, or a queued message delivered) was accepted by
    /// the gateway, predicted to cost `pricing`.
    fn sent(&self, pricing: &Pricing);
}

/// The observers a messenger and its clones report to.
#[derive(Default)]
pub(crate) struct Observers {
    list: RwLock<Vec<Arc<dyn SendObserver>>>,
}

impl Observers {
    /// Adds `observer`.
    pub(crate) fn add(&self, observer: Arc<dyn SendObserver>) {
        self.list
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(observer);
    }

    fn each(&self, tell: impl Fn(&dyn SendObserver)) {
        for observer in self
            .list
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            tell(observer.as_ref());
        }
    }

    /// Tells every observer a template was withheld.
    pub(crate) fn withheld(&self, reason: Withholding, refused_by_gateway: bool) {
        self.each(|o| o.withheld(reason, refused_by_gateway));
    }

    /// Tells every observer a message was sent, priced `pricing`.
    pub(crate) fn sent(&self, pricing: &Pricing) {
        self.each(|o| o.sent(pricing));
    }
}
