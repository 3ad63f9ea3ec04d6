//! The service's Prometheus metrics, kept in a recorder of its own (not the process-wide
//! one), so two services in one process (tests, two bots) count apart and a backend's own
//! recorder is left alone.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lipachat_api::WebhookEvent;
use lipachat_policy::consent::Withholding;
use lipachat_policy::cost::Pricing;
use lipachat_policy::{DeliveryReport, PolicyError, SendObserver, SendOutcome, TemplateOutcome};
use lipachat_session::{ClosedCause, WindowState};
use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Webhook events applied, by `source` (`lipachat`, `whatsapp`) and `kind` (`inbound`,
/// `window_closed`, `status`, `template_status`, `ignored`).
pub const EVENTS: &str = "lipachat_webhook_events_total";
/// Redelivered inbound messages recognised (recorded nothing, not handed to the bot).
pub const DUPLICATES: &str = "lipachat_webhook_duplicates_total";
/// Requests refused for their credentials, by `reason`: `token` (LipaChat's path token),
/// `signature_missing`, `signature_malformed`, `signature_mismatch` (WhatsApp's
/// signature), `verify_token` (the subscription handshake), `admin_token`.
pub const AUTH_FAILURES: &str = "lipachat_webhook_auth_failures_total";
/// Webhooks answered 503 because the bot's queue was full (nothing recorded).
pub const QUEUE_FULL: &str = "lipachat_webhook_queue_full_total";
/// Every send of the service's messenger, by `outcome`: `sent`, `rerouted`, `queued`,
/// `rejected`, `duplicate`, `error`. Counted are the bot's replies and the backend's own
/// sends through that messenger or a clone of it, free-form and template alike (a
/// template withheld by consent or a limit counts as `rejected`); deliveries of queued
/// messages are counted by [`QUEUED_DELIVERED`] and [`QUEUED_EXPIRED`] instead, as the
/// completion of the `queued` send they belong to.
pub const SENDS: &str = "lipachat_sends_total";
/// How long each send counted in [`SENDS`] took, in seconds (the guarded path, retries
/// included).
pub const SEND_DURATION: &str = "lipachat_send_duration_seconds";
/// Windows closed by the gateway's 131047: reported by a webhook, or a send refused.
pub const CLOSURES: &str = "lipachat_window_closures_131047_total";
/// Queued messages delivered after the customer's reply.
pub const QUEUED_DELIVERED: &str = "lipachat_queued_delivered_total";
/// Queued messages that expired undelivered.
pub const QUEUED_EXPIRED: &str = "lipachat_queued_expired_total";
/// Templates withheld, by `reason`: `opted_out`, `marketing_limit` (a 131049
/// back-off), `messaging_limit` (the portfolio's limit; an invitation withheld while its
/// message is queued counts too), on every send path of the messenger (its observer),
/// including a 131049 / 131050 answered by the gateway.
pub const WITHHELD: &str = "lipachat_sends_withheld_total";
/// Messages the gateway accepted, on every send path of the messenger (replies, sends
/// and templates through the messenger itself, reroutes, invitations, deliveries from the
/// outbox), by predicted pricing `category` (`service`, `utility`, `marketing`,
/// `authentication`) and `free` (`true`, `false`).
pub const PREDICTED_CATEGORIES: &str = "lipachat_sends_predicted_category_total";
/// Statuses that reported pricing, by the reported `category` (as the platform writes it,
/// or `other`); `session-check costs` pairs them with the predictions per send.
pub const REPORTED_CATEGORIES: &str = "lipachat_statuses_reported_category_total";
/// Messages waiting in the bot's queue (handed over, not yet taken by a handler).
pub const QUEUE_DEPTH: &str = "lipachat_bot_queue_depth";

/// The send latency histogram's buckets, in seconds.
const SEND_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The counters, histogram and gauge the service keeps, and their Prometheus text.
#[derive(Debug, Clone)]
pub struct WebhookMetrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    duplicates: Counter,
    queue_full: Counter,
    closures: Counter,
    delivered: Counter,
    expired: Counter,
    send_duration: Histogram,
    queue_depth: Gauge,
    /// The event counters by source ([`EVENT_SOURCES`]) and kind ([`EVENT_KINDS`]),
    /// registered on first use (so `/metrics` shows only what happened) and kept, so
    /// counting a webhook's event allocates nothing.
    events: [[OnceLock<Counter>; EVENT_KINDS.len()]; EVENT_SOURCES.len()],
}

/// The `source` labels of [`EVENTS`].
const EVENT_SOURCES: [&str; 2] = ["lipachat", "whatsapp"];
/// The `kind` labels of [`EVENTS`].
const EVENT_KINDS: [&str; 5] = [
    "inbound",
    "window_closed",
    "status",
    "template_status",
    "ignored",
];

const METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

impl Default for WebhookMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl WebhookMetrics {
    /// A recorder with every metric registered (each shows in the text from the start,
    /// at zero).
    pub fn new() -> Self {
        let recorder = match PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(SEND_DURATION.to_owned()), &SEND_BUCKETS)
        {
            Ok(with_buckets) => with_buckets.build_recorder(),
            // Only an empty bucket list is refused; this one is not.
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let describe = |name: &'static str, unit: Option<Unit>, text: &'static str| {
            recorder.describe_counter(name.into(), unit, text.into());
        };
        describe(EVENTS, None, "Webhook events applied, by source and kind.");
        describe(DUPLICATES, None, "Redelivered inbound messages recognised.");
        describe(
            AUTH_FAILURES,
            None,
            "Requests refused for their credentials, by reason.",
        );
        describe(
            QUEUE_FULL,
            None,
            "Webhooks answered 503: the bot's queue was full.",
        );
        describe(SENDS, None, "Sends of the service's messenger, by outcome.");
        describe(WITHHELD, None, "Templates withheld locally, by reason.");
        describe(
            PREDICTED_CATEGORIES,
            None,
            "Sends by predicted pricing category and whether free.",
        );
        describe(
            REPORTED_CATEGORIES,
            None,
            "Statuses that reported pricing, by reported category.",
        );
        describe(CLOSURES, None, "Windows closed by the gateway (131047).");
        describe(
            QUEUED_DELIVERED,
            None,
            "Queued messages delivered after a reply.",
        );
        describe(QUEUED_EXPIRED, None, "Queued messages expired undelivered.");
        recorder.describe_histogram(
            SEND_DURATION.into(),
            Some(Unit::Seconds),
            "How long sends took.".into(),
        );
        recorder.describe_gauge(
            QUEUE_DEPTH.into(),
            None,
            "Messages waiting in the bot's queue.".into(),
        );
        let counter =
            |name: &'static str| recorder.register_counter(&Key::from_static_name(name), &METADATA);
        let inner = Inner {
            duplicates: counter(DUPLICATES),
            queue_full: counter(QUEUE_FULL),
            closures: counter(CLOSURES),
            delivered: counter(QUEUED_DELIVERED),
            expired: counter(QUEUED_EXPIRED),
            send_duration: recorder
                .register_histogram(&Key::from_static_name(SEND_DURATION), &METADATA),
            queue_depth: recorder.register_gauge(&Key::from_static_name(QUEUE_DEPTH), &METADATA),
            handle: recorder.handle(),
            recorder,
            events: Default::default(),
        };
        let metrics = Self {
            inner: Arc::new(inner),
        };
        for outcome in [
            "sent",
            "rerouted",
            "queued",
            "rejected",
            "duplicate",
            "error",
        ] {
            metrics.labelled(SENDS, "outcome", outcome).increment(0);
        }
        metrics
    }

    /// The metrics as Prometheus text.
    pub fn render(&self) -> String {
        self.inner.handle.render()
    }

    fn labelled(&self, name: &'static str, label: &'static str, value: &'static str) -> Counter {
        let key = Key::from_parts(name, vec![Label::new(label, value)]);
        self.inner.recorder.register_counter(&key, &METADATA)
    }

    /// Counts one webhook event from `source`.
    pub(crate) fn event(&self, source: &'static str, event: &WebhookEvent) {
        let kind = match event {
            WebhookEvent::Inbound(_) => 0,
            WebhookEvent::WindowClosed { .. } => 1,
            WebhookEvent::Status(_) => 2,
            WebhookEvent::TemplateStatus(_) => 3,
            _ => 4,
        };
        let register = |source: &'static str| {
            let key = Key::from_parts(
                EVENTS,
                vec![
                    Label::new("source", source),
                    Label::new("kind", EVENT_KINDS[kind]),
                ],
            );
            self.inner.recorder.register_counter(&key, &METADATA)
        };
        match EVENT_SOURCES.iter().position(|known| *known == source) {
            Some(at) => self.inner.events[at][kind]
                .get_or_init(|| register(EVENT_SOURCES[at]))
                .increment(1),
            None => register(source).increment(1),
        }
        if let WebhookEvent::Status(status) = event
            && let Some(pricing) = &status.pricing
        {
            let category = lipachat_session::PricingCategory::parse(&pricing.category)
                .map_or("other", lipachat_session::PricingCategory::name);
            self.labelled(REPORTED_CATEGORIES, "category", category)
                .increment(1);
        }
    }

    /// Counts a redelivered inbound message.
    pub(crate) fn duplicate(&self) {
        self.inner.duplicates.increment(1);
    }

    /// Counts a request refused for its credentials.
    pub(crate) fn auth_failure(&self, reason: &'static str) {
        self.labelled(AUTH_FAILURES, "reason", reason).increment(1);
    }

    /// Counts a webhook refused because the bot's queue was full.
    pub(crate) fn queue_full(&self) {
        self.inner.queue_full.increment(1);
    }

    /// Counts a 131047 closure.
    pub(crate) fn closure(&self) {
        self.inner.closures.increment(1);
    }

    /// Counts what a delivery run of the outbox did.
    pub(crate) fn delivery(&self, report: &DeliveryReport) {
        self.inner
            .delivered
            .increment(report.delivered.len() as u64);
        self.inner.expired.increment(report.expired.len() as u64);
    }

    /// Counts one send that began at `started`: its outcome (or `None` for an error) and
    /// how long it took. A 131047 met by this send counts as a closure: a rejection the
    /// gateway refused, or a reroute or queueing after a gateway closure recorded since
    /// the send began.
    pub(crate) fn send(
        &self,
        outcome: Option<&SendOutcome>,
        started: DateTime<Utc>,
        took: Duration,
    ) {
        // Withheld templates and predicted categories are counted by the observer's
        // `withheld` and `priced`, on every send path, not here.
        self.count_send(
            match outcome {
                None => "error",
                Some(SendOutcome::Duplicate(_)) => "duplicate",
                Some(outcome) => outcome.name(),
            },
            took,
        );
        match outcome {
            Some(SendOutcome::Rejected {
                refused_by_gateway: true,
                ..
            }) => self.closure(),
            Some(SendOutcome::Rerouted { state, .. } | SendOutcome::Queued { state, .. })
                if closed_by_gateway_since(state, started) =>
            {
                self.closure()
            }
            _ => {}
        }
        if let Some(SendOutcome::Queued {
            delivered, expired, ..
        }) = outcome
        {
            self.inner.delivered.increment(delivered.len() as u64);
            self.inner.expired.increment(expired.len() as u64);
        }
    }

    /// Counts a template send: its outcome (or `None` for an error) and how long it took.
    fn template_send(&self, outcome: Option<&TemplateOutcome>, took: Duration) {
        self.count_send(
            match outcome {
                None => "error",
                Some(TemplateOutcome::Duplicate(_)) => "duplicate",
                Some(outcome) => outcome.name(),
            },
            took,
        );
        // Withheld and sent templates are counted by the observer's `withheld` and
        // `priced`.
    }

    /// Counts one send by its outcome's name, and how long it took.
    fn count_send(&self, outcome: &'static str, took: Duration) {
        self.inner.send_duration.record(took.as_secs_f64());
        self.labelled(SENDS, "outcome", outcome).increment(1);
    }

    /// Sets the bot queue's depth.
    pub(crate) fn queue_depth(&self, depth: usize) {
        self.inner.queue_depth.set(depth as f64);
    }
}

/// The service counts every send of the messenger it owns
/// ([`Messenger::observe`](lipachat_policy::Messenger::observe)): the bot's replies and the
/// backend's own sends through that messenger or any clone of it, by outcome; and, on
/// every send path (reroutes, invitations, deliveries from the outbox too), withheld
/// templates by reason and accepted messages by predicted category.
impl SendObserver for WebhookMetrics {
    fn free_form_sent(
        &self,
        outcome: Result<&SendOutcome, &PolicyError>,
        started_at: DateTime<Utc>,
        took: Duration,
    ) {
        self.send(outcome.ok(), started_at, took);
    }

    fn template_sent(
        &self,
        outcome: Result<&TemplateOutcome, &PolicyError>,
        _started_at: DateTime<Utc>,
        took: Duration,
    ) {
        self.template_send(outcome.ok(), took);
    }

    fn withheld(&self, reason: Withholding, _refused_by_gateway: bool) {
        self.labelled(WITHHELD, "reason", reason.name())
            .increment(1);
    }

    fn priced(&self, pricing: &Pricing) {
        let key = Key::from_parts(
            PREDICTED_CATEGORIES,
            vec![
                Label::new("category", pricing.category.name()),
                Label::new("free", if pricing.free { "true" } else { "false" }),
            ],
        );
        self.inner
            .recorder
            .register_counter(&key, &METADATA)
            .increment(1);
    }
}

/// Whether `state` is a closure by the gateway recorded at or after `since`.
fn closed_by_gateway_since(state: &WindowState, since: DateTime<Utc>) -> bool {
    matches!(state, WindowState::Closed { cause: ClosedCause::Gateway, closed_since, .. } if *closed_since >= since)
}

#[cfg(test)]
mod tests {
    use lipachat_api::webhook::{DeliveryStatus, Recipient, StatusPricing, StatusUpdate};
    use lipachat_policy::consent::Withholding;
    use lipachat_policy::cost::{PricingInput, predict};
    use lipachat_session::{MessageId, PricingCategory};

    use super::*;

    #[test]
    fn withheld_sends_and_reported_categories_are_counted() {
        let metrics = WebhookMetrics::new();
        let at: DateTime<Utc> = "2026-12-01T10:00:00Z".parse().unwrap_or_default();
        let pricing = predict(&PricingInput {
            category: PricingCategory::Marketing,
            window_open: false,
            free_entry_point: None,
            within_service_free_tier: true,
            at,
        });
        let withheld = SendOutcome::Withheld {
            message_id: MessageId::new(),
            reason: Withholding::OptedOut,
            state: WindowState::Never,
            pricing: Box::new(pricing),
            refused_by_gateway: false,
        };
        metrics.send(Some(&withheld), at, Duration::from_millis(1));
        metrics.withheld(Withholding::OptedOut, false);
        let status = WebhookEvent::Status(StatusUpdate {
            conversation: None,
            recipient: Recipient::default(),
            message_id: None,
            wa_id: Some("wamid.X".into()),
            status: DeliveryStatus::Delivered,
            at,
            error_code: None,
            error_title: None,
            pricing: Some(StatusPricing {
                category: "marketing".into(),
                pricing_type: Some("regular".into()),
                billable: Some(true),
            }),
            conversation_expires_at: None,
        });
        metrics.event("whatsapp", &status);
        let text = metrics.render();
        assert!(
            text.contains(r#"lipachat_sends_withheld_total{reason="opted_out"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"lipachat_statuses_reported_category_total{category="marketing"} 1"#),
            "{text}"
        );
        assert!(
            !text.contains("lipachat_sends_predicted_category_total{"),
            "a withheld template went nowhere: {text}"
        );
    }
}
