//! The public handle: start the stand-in, tell it about customers, inject faults, read what
//! it recorded, stop it.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::{Clock, Conversation, PhoneNumber, SystemClock, WindowRule, WindowState};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::catalog::{TemplateBook, UploadedTemplateFile};
use crate::fault::{FaultPlan, InjectedFailure};
use crate::ledger::Ledger;
use crate::record::{DeliveredMessage, ReceivedRequest, Refusal};
use crate::server::{self, Shared, WamidSource, lock};
use crate::window::WindowRefusal;
use crate::wire::{self, MarketingAnswer, StatusPricingWire};

/// How long [`StandInGateway::shutdown`] waits for requests in flight before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A stand-in LipaChat gateway serving HTTP on `127.0.0.1` until dropped.
///
/// See the [crate documentation](crate) for an example and for what it checks.
pub struct StandInGateway {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for StandInGateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandInGateway")
            .field("addr", &self.addr)
            .field("api_key", &"<redacted>")
            .field("clock", &self.shared.clock)
            .finish_non_exhaustive()
    }
}

/// Configures a [`StandInGateway`] before it starts.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use chrono::TimeDelta;
/// use lipachat_session::ManualClock;
/// use lipachat_testkit::{StandInGateway, WindowRefusal};
///
/// let clock = ManualClock::at("2026-11-23T10:00:00Z".parse().expect("a date"));
/// let gateway = StandInGateway::builder()
///     .api_key("test-key")
///     .clock(clock.clone())
///     .window(TimeDelta::hours(24))
///     .refusal(WindowRefusal::StatusCallback)
///     .start()
///     .await?;
/// assert_eq!(gateway.api_key(), "test-key");
/// assert_eq!(gateway.now(), clock.now());
/// # Ok(())
/// # }
/// # use lipachat_session::Clock;
/// ```
#[must_use = "a builder does nothing until `start` is awaited"]
pub struct GatewayBuilder {
    api_key: Option<String>,
    clock: Arc<dyn Clock>,
    window: TimeDelta,
    refusal: WindowRefusal,
    record_bodies: bool,
}

impl fmt::Debug for GatewayBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayBuilder")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("clock", &self.clock)
            .field("window", &self.window)
            .field("refusal", &self.refusal)
            .field("record_bodies", &self.record_bodies)
            .finish()
    }
}

impl Default for GatewayBuilder {
    fn default() -> Self {
        Self {
            api_key: None,
            clock: Arc::new(SystemClock),
            window: WindowRule::DEFAULT_WINDOW,
            refusal: WindowRefusal::default(),
            record_bodies: true,
        }
    }
}

impl GatewayBuilder {
    /// The key the gateway accepts in the `apiKey` header (default: a random one, read it
    /// back with [`StandInGateway::api_key`]).
    pub fn api_key(mut self, key: &str) -> Self {
        self.api_key = Some(key.to_owned());
        self
    }

    /// The gateway's clock (default: the system clock). Windows, timestamps and record
    /// times all follow it; hand it a clone of a `ManualClock` to move time in tests.
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The window's length (default: 24 hours). A window is open while
    /// `now < last inbound + window`.
    pub fn window(mut self, window: TimeDelta) -> Self {
        self.window = window;
        self
    }

    /// How a free-form send outside the window is refused (default:
    /// [`WindowRefusal::Immediate`]).
    pub fn refusal(mut self, refusal: WindowRefusal) -> Self {
        self.refusal = refusal;
        self
    }

    /// Whether request bodies are kept in [`StandInGateway::requests`] and
    /// [`StandInGateway::delivered`] (default: yes). Benchmarks that send millions of
    /// messages can switch this off to save memory.
    pub fn record_bodies(mut self, record: bool) -> Self {
        self.record_bodies = record;
        self
    }

    /// Binds `127.0.0.1` on a free port and starts serving on the current Tokio runtime.
    ///
    /// Fails with [`io::ErrorKind::InvalidInput`] when the key is empty or the window is
    /// not a positive whole number of milliseconds, and with the bind error when no port
    /// can be had.
    pub async fn start(self) -> io::Result<StandInGateway> {
        let api_key = self
            .api_key
            .unwrap_or_else(|| format!("standin-{}", uuid::Uuid::new_v4().simple()));
        if api_key.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the stand-in gateway's API key must not be empty",
            ));
        }
        let ledger = Ledger::new(self.window, self.refusal)
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
        let shared = Arc::new(Shared {
            api_key,
            clock: self.clock,
            record_bodies: self.record_bodies,
            wamids: WamidSource::new(),
            faults: Mutex::new(FaultPlan::default()),
            ledger: Mutex::new(ledger),
            journal: Mutex::new(Vec::new()),
            marketing_refusals: Mutex::default(),
            templates: Mutex::new(TemplateBook::default()),
            template_faults: Mutex::new(FaultPlan::default()),
            template_journal: Mutex::new(Vec::new()),
        });
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = server::router(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    // A dropped sender stops the server too.
                    let _ = stopped.await;
                })
                .await;
            if let Err(err) = served {
                tracing::warn!(%err, "stand-in gateway stopped with an error");
            }
        });
        tracing::debug!(%addr, "stand-in gateway listening");
        Ok(StandInGateway {
            shared,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }
}

impl StandInGateway {
    /// Starts a gateway with the system clock, a random key, a 24-hour window and
    /// immediate refusals.
    pub async fn start() -> io::Result<Self> {
        Self::builder().start().await
    }

    /// A builder to configure the key, clock, window and refusal mode.
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder::default()
    }

    /// The base URL to configure a client with, for example `http://127.0.0.1:40123` (no
    /// trailing slash; append [`MessageKind::path`](crate::MessageKind::path)).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The key it accepts in the `apiKey` header.
    pub fn api_key(&self) -> &str {
        &self.shared.api_key
    }

    /// The time on the gateway's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.shared.clock.now()
    }

    /// Records that `customer` wrote to `business` now (on the gateway's clock): opens or
    /// renews that pair's window.
    pub fn customer_writes(&self, business: PhoneNumber, customer: PhoneNumber) {
        self.customer_writes_at(business, customer, self.now());
    }

    /// Records that `customer` wrote to `business` at `at`. An earlier time than one
    /// already recorded changes nothing.
    pub fn customer_writes_at(
        &self,
        business: PhoneNumber,
        customer: PhoneNumber,
        at: DateTime<Utc>,
    ) {
        lock(&self.shared.ledger).customer_writes(Conversation::new(business, customer), at);
    }

    /// The window between `business` and `customer` now, as the gateway sees it.
    pub fn window_state(&self, business: PhoneNumber, customer: PhoneNumber) -> WindowState {
        let now = self.now();
        lock(&self.shared.ledger).window_state(Conversation::new(business, customer), now)
    }

    /// Answers the next `n` requests to send endpoints with HTTP `status` and the generic
    /// failure body, before checking anything else. They are recorded in
    /// [`requests`](Self::requests) but deliver nothing.
    ///
    /// # Panics
    ///
    /// When `status` is not an HTTP status code (100 to 999).
    pub fn fail_next(&self, n: usize, status: u16) {
        self.fail_next_with(n, InjectedFailure::status(status));
    }

    /// Answers the next `n` requests to send endpoints with `failure` (its status and
    /// optional `Retry-After`). Planned after any failures already waiting.
    pub fn fail_next_with(&self, n: usize, failure: InjectedFailure) {
        lock(&self.shared.faults).fail_next(n, failure);
    }

    /// Holds back the answers to the next `n` requests to send endpoints for `delay`.
    ///
    /// The request takes effect when it arrives (a send is delivered at once); only the
    /// answer is late. A client that gives up in the meantime therefore sees a timeout for
    /// a message that was delivered, as with a real gateway, and its retry with the same
    /// `messageId` must come back as a duplicate.
    pub fn stall_next(&self, n: usize, delay: Duration) {
        lock(&self.shared.faults).stall_next(n, delay);
    }

    /// Every request received so far, in order of arrival at the recorder (answers held
    /// back by [`stall_next`](Self::stall_next) are recorded before they are sent).
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        lock(&self.shared.journal).clone()
    }

    /// How many requests were received so far.
    pub fn request_count(&self) -> usize {
        lock(&self.shared.journal).len()
    }

    /// Every message that reached a customer, one per unique `messageId`, in order.
    pub fn delivered(&self) -> Vec<DeliveredMessage> {
        lock(&self.shared.ledger).delivered().to_vec()
    }

    /// The messages that reached `customer` (from any business number), in order.
    pub fn delivered_to(&self, customer: PhoneNumber) -> Vec<DeliveredMessage> {
        lock(&self.shared.ledger)
            .delivered()
            .iter()
            .filter(|message| message.customer == customer)
            .cloned()
            .collect()
    }

    /// How many free-form messages (not templates) reached `customer`.
    pub fn free_form_delivered_to(&self, customer: PhoneNumber) -> usize {
        lock(&self.shared.ledger)
            .delivered()
            .iter()
            .filter(|message| message.customer == customer && message.kind.is_free_form())
            .count()
    }

    /// How many messages reached a customer.
    pub fn delivered_count(&self) -> usize {
        lock(&self.shared.ledger).delivered().len()
    }

    /// Every free-form send that arrived outside its window, in order.
    pub fn refusals(&self) -> Vec<Refusal> {
        lock(&self.shared.ledger).refusals().to_vec()
    }

    /// How many free-form sends arrived outside their window.
    pub fn refusal_count(&self) -> usize {
        lock(&self.shared.ledger).refusals().len()
    }

    /// Answers every template to `customer` with a marketing error from now on (`None`:
    /// delivers them again): HTTP 200, `"status": "error"`, and error 131049 (the
    /// per-user marketing limit) or 131050 (the customer stopped marketing messages),
    /// as WhatsApp reports them through the gateway. Nothing is delivered. The stand-in
    /// does not know templates' categories: the test decides which to refuse.
    pub fn answer_templates_with(&self, customer: PhoneNumber, answer: Option<MarketingAnswer>) {
        let mut refusals = lock(&self.shared.marketing_refusals);
        match answer {
            Some(answer) => refusals.insert(customer, answer),
            None => refusals.remove(&customer),
        };
    }

    /// A WhatsApp-shaped status callback for a delivered message, carrying `pricing`
    /// (`category`, `type`, `billable`) and, for a free entry point, the conversation's
    /// `expiration_timestamp`, as the platform's status webhooks do (LipaChat's own status
    /// callback carries no pricing).
    pub fn priced_status_callback(
        &self,
        delivered: &DeliveredMessage,
        pricing: &StatusPricingWire,
    ) -> Value {
        wire::priced_status_callback(delivered, pricing)
    }

    /// Takes the status callbacks produced so far (oldest first), leaving none.
    ///
    /// With [`WindowRefusal::StatusCallback`] each free-form send outside the window yields
    /// one WhatsApp-shaped failed status:
    /// `{"object": "whatsapp_business_account", "entry": [{"changes": [{"value": {"metadata": {"display_phone_number": <business>}, "statuses": [{"id": <wamid>, "status": "failed", "recipient_id": <customer>, "timestamp": <unix seconds>, "errors": [{"code": 131047, ...}]}]}}]}]}`.
    pub fn take_status_callbacks(&self) -> Vec<Value> {
        lock(&self.shared.ledger).take_callbacks()
    }

    /// Forgets the requests received, the messages delivered and refused, the `messageId`s
    /// it would deduplicate and the pending status callbacks, as a fresh stand-in would;
    /// the customers' windows and any injected failures stay.
    ///
    /// Its memory then no longer grows with what came before, which keeps the rounds of a
    /// long benchmark comparable.
    pub fn forget_history(&self) {
        lock(&self.shared.journal).clear();
        lock(&self.shared.template_journal).clear();
        lock(&self.shared.ledger).forget_history();
    }

    /// Sets `business`'s template catalog: the entries `GET /api/v1/template/{business}`
    /// lists, as the gateway lists them (see [`template_entry`](crate::template_entry)).
    /// From then on a template send from `business` is checked against it: a name and
    /// language without an `APPROVED` entry, a number of body placeholders other than
    /// the body's `{{n}}` markers, or a header value missing, unwanted or of another
    /// format is answered with WhatsApp's error (132001, 132015 paused, 132016 disabled,
    /// 132000, 132012) in an error envelope and not delivered. A business whose catalog
    /// was never set answers the catalog with 404, as if the gateway did not know it,
    /// and takes any template.
    ///
    /// Creates (`POST /api/v1/template/{business}`) add a `PENDING` entry; updates (`PUT
    /// …/{id}`) replace one and set it `PENDING`. Both take the documented body and refuse
    /// (400) one that breaks WhatsApp's rules: a name of `[a-z0-9_]`, a category of
    /// MARKETING, UTILITY or AUTHENTICATION, a body of 1 to 1024 characters with one
    /// example per marker, a TEXT header of at most 60 characters with an example per
    /// marker or a media header with an example, a footer of at most 60, at most 10
    /// buttons (QUICK_REPLY, URL with an https `url`, PHONE_NUMBER with a `phoneNumber`)
    /// with a text of at most 25.
    pub fn set_templates(&self, business: PhoneNumber, entries: Vec<Value>) {
        lock(&self.shared.templates).set(business, entries);
    }

    /// `business`'s catalog as it is now (after creates and updates), if it has one.
    pub fn templates(&self, business: PhoneNumber) -> Option<Vec<Value>> {
        lock(&self.shared.templates).get(business)
    }

    /// Sets the status (`APPROVED`, `PAUSED`, ...) of `business`'s template of that name
    /// and language, as WhatsApp's review or quality rating would; whether it has one.
    pub fn set_template_status(
        &self,
        business: PhoneNumber,
        name: &str,
        language: &str,
        status: &str,
    ) -> bool {
        lock(&self.shared.templates).set_status(business, name, language, status)
    }

    /// The files uploaded so far, in order.
    pub fn uploads(&self) -> Vec<UploadedTemplateFile> {
        lock(&self.shared.templates).uploads()
    }

    /// Every request to a template endpoint (catalog, create, update, upload), in order
    /// of arrival. These are kept apart from [`requests`](Self::requests), which holds
    /// the sends (and requests to paths not served).
    pub fn template_requests(&self) -> Vec<ReceivedRequest> {
        lock(&self.shared.template_journal).clone()
    }

    /// Answers the next `n` requests to template endpoints with `failure`, before
    /// checking anything else (sends are not affected; see
    /// [`fail_next_with`](Self::fail_next_with) for them).
    pub fn fail_template_calls_next(&self, n: usize, failure: InjectedFailure) {
        lock(&self.shared.template_faults).fail_next(n, failure);
    }

    /// Holds back the answers to the next `n` requests to template endpoints for
    /// `delay` (a client that gives up first sees a timeout).
    pub fn stall_template_calls_next(&self, n: usize, delay: Duration) {
        lock(&self.shared.template_faults).stall_next(n, delay);
    }

    /// Stops accepting connections, lets requests in flight finish (for up to 5 seconds)
    /// and waits for the server to stop. Dropping the gateway stops it too, without waiting.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for StandInGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shareable<T: Send + Sync + 'static>() {}

    #[test]
    fn the_handle_can_be_shared_across_tasks() {
        shareable::<StandInGateway>();
        shareable::<GatewayBuilder>();
    }

    #[tokio::test]
    async fn an_empty_key_is_refused_and_debug_hides_the_key() {
        let err = StandInGateway::builder()
            .api_key("")
            .start()
            .await
            .expect_err("an empty key");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let builder = StandInGateway::builder().api_key("secret-key-123");
        assert!(!format!("{builder:?}").contains("secret-key-123"));
        let gateway = builder.start().await.expect("starts");
        assert!(!format!("{gateway:?}").contains("secret-key-123"));
        assert!(gateway.base_url().starts_with("http://127.0.0.1:"));
        assert!(gateway.local_addr().ip().is_loopback());
    }
}
