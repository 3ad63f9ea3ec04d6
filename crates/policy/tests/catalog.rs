//! Templates checked against the business's catalog, with the stand-in gateway serving
//! the catalog on loopback and a sled store on disk: refusals before any request (unknown
//! template or language, not approved, placeholder count, header), the category carried
//! in the outcome, one fetch per refresh interval and one on demand, and the fallbacks
//! when the catalog cannot be fetched (a copy within its maximum age, else unchecked with
//! a warning and a counter).

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_api::{
    CatalogRefusal, MessageId, TemplateCategory, TemplateHeader, TemplateMessage, TextMessage,
};
use lipachat_policy::{
    CatalogCheck, CatalogSettings, Messenger, OnClosed, PolicyConfig, PolicyError, SendOutcome,
    SendRequest, TemplateOutcome, TemplateRequest, TemplateSent,
};
use lipachat_session::{Clock, Conversation, ManualClock, OutboxStore, Sessions, SledStore};
use lipachat_testkit::{InjectedFailure, MessageKind, StandInGateway, template_entry};

fn start_time() -> DateTime<Utc> {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

fn chat() -> Conversation {
    Conversation::parse("254110090747", "254712345678").unwrap()
}

fn other_chat() -> Conversation {
    Conversation::parse("254110090747", "254712345679").unwrap()
}

struct Setup {
    gateway: StandInGateway,
    clock: ManualClock,
    messenger: Messenger<SledStore>,
    _dir: tempfile::TempDir,
}

/// The business's catalog: `order_update` (en, UTILITY, approved, an image header, two
/// body values), `welcome` (en and fr, MARKETING, approved, no values), `promo` (en,
/// paused).
fn catalog() -> Vec<serde_json::Value> {
    vec![
        template_entry(
            "order_update",
            "en",
            "UTILITY",
            "APPROVED",
            Some(("IMAGE", "")),
            "Hi {{1}}, order {{2}} is on its way",
        ),
        template_entry(
            "welcome",
            "en",
            "MARKETING",
            "APPROVED",
            None,
            "Welcome back!",
        ),
        template_entry(
            "welcome",
            "fr",
            "MARKETING",
            "APPROVED",
            None,
            "Bon retour !",
        ),
        template_entry("promo", "en", "MARKETING", "PAUSED", None, "Sale"),
    ]
}

async fn setup(on_closed: OnClosed, settings: CatalogSettings) -> Setup {
    let clock = ManualClock::at(start_time());
    let gateway = StandInGateway::builder()
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    gateway.set_templates(chat().business, catalog());
    let client = common::quick_client(&gateway);
    let dir = tempfile::tempdir().unwrap();
    let sessions =
        Sessions::new(SledStore::open(dir.path().join("db")).unwrap()).with_clock(clock.clone());
    let config = PolicyConfig::default()
        .on_closed(on_closed)
        .catalog(settings);
    Setup {
        gateway,
        clock,
        messenger: Messenger::new(sessions, client, config),
        _dir: dir,
    }
}

fn order_update() -> TemplateMessage {
    TemplateMessage::new("order_update", "en")
        .unwrap()
        .with_header(TemplateHeader::image("https://example.com/parcel.png").unwrap())
        .unwrap()
        .with_body_placeholders(["Jane", "A-42"])
        .unwrap()
}

fn text() -> TextMessage {
    TextMessage::new("Your parcel is at the depot").unwrap()
}

impl Setup {
    /// Sends a text to a closed window under the configured policy.
    async fn send_closed(&self, chat: Conversation) -> Result<SendOutcome, PolicyError> {
        self.messenger.send(SendRequest::text(chat, text())).await
    }

    fn catalog_fetches(&self) -> usize {
        self.gateway.template_requests().len()
    }

    async fn queued(&self) -> usize {
        self.messenger
            .sessions()
            .store()
            .queued(chat())
            .await
            .unwrap()
            .len()
    }
}

fn template_of(outcome: &SendOutcome) -> &TemplateSent {
    outcome.template().expect("a template was sent")
}

#[tokio::test]
async fn a_template_the_catalog_refuses_is_not_sent_and_nothing_is_queued() {
    type RefusalIs = fn(&CatalogRefusal) -> bool;
    let cases: Vec<(TemplateMessage, RefusalIs)> = vec![
        (TemplateMessage::new("no_such", "en").unwrap(), |r| {
            matches!(r, CatalogRefusal::UnknownTemplate { .. })
        }),
        (
            TemplateMessage::new("welcome", "de").unwrap(),
            |r| matches!(r, CatalogRefusal::UnknownLanguage { available, .. } if available == &["en", "fr"]),
        ),
        (TemplateMessage::new("promo", "en").unwrap(), |r| {
            matches!(r, CatalogRefusal::NotApproved { .. }) && r.to_string().contains("PAUSED")
        }),
        (
            order_update().with_body_placeholders(["Jane"]).unwrap(),
            |r| {
                matches!(
                    r,
                    CatalogRefusal::PlaceholderCount {
                        expected: 2,
                        given: 1,
                        ..
                    }
                )
            },
        ),
        (order_update().without_header(), |r| {
            matches!(r, CatalogRefusal::HeaderMismatch { given: None, .. })
        }),
    ];
    for (template, refusal_is) in cases {
        let s = setup(
            OnClosed::Queue(template.clone()),
            CatalogSettings::default(),
        )
        .await;
        let error = s.send_closed(chat()).await.unwrap_err();
        match &error {
            PolicyError::TemplateRefused { refusal, .. } => {
                assert!(refusal_is(refusal), "{}: {refusal:?}", template.name());
            }
            other => panic!("{}: {other:?}", template.name()),
        }
        assert!(!error.retry_later_may_help());
        assert_eq!(s.gateway.request_count(), 0, "no send reached the gateway");
        assert_eq!(s.queued().await, 0, "nothing queued");
        assert_eq!(s.catalog_fetches(), 1);
    }
}

#[tokio::test]
async fn an_approved_template_goes_with_its_category_in_the_outcome() {
    let s = setup(OnClosed::Queue(order_update()), CatalogSettings::default()).await;
    let outcome = s.send_closed(chat()).await.unwrap();
    assert_eq!(outcome.name(), "queued");
    let sent = template_of(&outcome);
    assert_eq!(sent.category, Some(TemplateCategory::Utility));
    assert_eq!(
        sent.check,
        CatalogCheck::Checked {
            fetched_at: start_time()
        }
    );
    // The reroute policy carries it too, and the request's placeholders are what is
    // checked.
    let welcome = TemplateMessage::new("welcome", "fr").unwrap();
    let s = setup(OnClosed::Template(welcome), CatalogSettings::default()).await;
    let outcome = s.send_closed(chat()).await.unwrap();
    assert_eq!(
        template_of(&outcome).category,
        Some(TemplateCategory::Marketing)
    );
    let s = setup(
        OnClosed::Queue(
            order_update()
                .with_body_placeholders(Vec::<String>::new())
                .unwrap(),
        ),
        CatalogSettings::default(),
    )
    .await;
    let request = SendRequest::text(chat(), text()).placeholders(["Jane", "A-42"]);
    assert_eq!(s.messenger.send(request).await.unwrap().name(), "queued");
}

#[tokio::test]
async fn the_catalog_is_fetched_once_per_refresh_interval_and_on_demand() {
    let settings = CatalogSettings::default().refresh_every(TimeDelta::minutes(15));
    let s = setup(OnClosed::Queue(order_update()), settings).await;
    s.send_closed(chat()).await.unwrap();
    s.send_closed(other_chat()).await.unwrap();
    assert_eq!(s.catalog_fetches(), 1, "one fetch for both");
    s.clock.advance(TimeDelta::minutes(16));
    s.send_closed(Conversation::parse("254110090747", "254712345670").unwrap())
        .await
        .unwrap();
    assert_eq!(s.catalog_fetches(), 2, "fetched again after the interval");

    // The template is paused; a refresh on demand (a TEMPLATE_STATUS webhook) sees it.
    s.gateway
        .set_template_status(chat().business, "order_update", "en", "PAUSED");
    s.messenger
        .catalogs()
        .refresh(s.messenger.client(), chat().business, s.clock.now())
        .await
        .unwrap();
    assert_eq!(s.catalog_fetches(), 3);
    let error = s
        .send_closed(Conversation::parse("254110090747", "254712345671").unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            PolicyError::TemplateRefused {
                refusal: CatalogRefusal::NotApproved { .. },
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_failed_fetch_falls_back_to_a_copy_within_its_maximum_age() {
    // Fetched on every use, so each send below tries the gateway first.
    let settings = CatalogSettings::default()
        .refresh_every(TimeDelta::zero())
        .retry_failed_after(TimeDelta::zero())
        .max_age(TimeDelta::hours(1))
        .fetch_timeout(Duration::from_millis(300));
    let s = setup(OnClosed::Template(order_update()), settings).await;
    let first = s.send_closed(chat()).await.unwrap();
    assert!(matches!(
        template_of(&first).check,
        CatalogCheck::Checked { .. }
    ));

    // A 503 (and its retry): the copy from a minute ago stands in.
    s.clock.advance(TimeDelta::minutes(1));
    s.gateway
        .fail_template_calls_next(2, InjectedFailure::status(503));
    let second = s.send_closed(other_chat()).await.unwrap();
    assert_eq!(
        template_of(&second).check,
        CatalogCheck::CachedCopy {
            fetched_at: start_time()
        }
    );
    assert_eq!(
        template_of(&second).category,
        Some(TemplateCategory::Utility)
    );

    // A fetch that takes longer than its timeout: the same.
    s.gateway
        .stall_template_calls_next(1, Duration::from_secs(3));
    let third = s
        .send_closed(Conversation::parse("254110090747", "254712345670").unwrap())
        .await
        .unwrap();
    assert!(matches!(
        template_of(&third).check,
        CatalogCheck::CachedCopy { .. }
    ));
    // The copy still refuses what it refuses: one body value where the template has two.
    s.gateway
        .fail_template_calls_next(2, InjectedFailure::status(503));
    let one_value = SendRequest::text(
        Conversation::parse("254110090747", "254712345671").unwrap(),
        text(),
    )
    .placeholders(["Jane"]);
    let error = s.messenger.send(one_value).await.unwrap_err();
    assert!(
        matches!(
            error,
            PolicyError::TemplateRefused {
                refusal: CatalogRefusal::PlaceholderCount { .. },
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(s.messenger.catalogs().unchecked_count(), 0);
}

#[tokio::test]
async fn with_no_copy_within_its_maximum_age_the_template_goes_unchecked_warned_and_counted() {
    let (captured, _guard) = lipachat_testkit::capture_log_at(tracing::Level::WARN);

    let settings = CatalogSettings::default()
        .refresh_every(TimeDelta::minutes(15))
        .max_age(TimeDelta::hours(1))
        .retry_failed_after(TimeDelta::minutes(1));
    // Unchecked, the template goes anyway (availability before the check), still one
    // invitation per closed window.
    let s = setup(OnClosed::Queue(order_update()), settings).await;
    s.gateway
        .fail_template_calls_next(2, InjectedFailure::status(500));
    let outcome = s.send_closed(chat()).await.unwrap();
    let sent = template_of(&outcome);
    assert_eq!(sent.check, CatalogCheck::Unchecked);
    assert_eq!(sent.category, None);
    assert_eq!(s.messenger.catalogs().unchecked_count(), 1);
    let logs = captured.text();
    assert!(logs.contains("template sent unchecked"), "{logs}");

    // Within a minute of the failure no fetch is tried: unchecked again, no request.
    let fetches = s.catalog_fetches();
    s.send_closed(other_chat()).await.unwrap();
    assert_eq!(s.catalog_fetches(), fetches);
    assert_eq!(s.messenger.catalogs().unchecked_count(), 2);
    // The second send to the first conversation queues without a second invitation.
    let again = s.send_closed(chat()).await.unwrap();
    assert!(again.template().is_none());
    assert_eq!(s.messenger.catalogs().unchecked_count(), 2);

    // After the wait it is fetched again, and checks again.
    s.clock.advance(TimeDelta::minutes(2));
    let checked = s
        .send_closed(Conversation::parse("254110090747", "254712345670").unwrap())
        .await
        .unwrap();
    assert!(matches!(
        template_of(&checked).check,
        CatalogCheck::Checked { .. }
    ));
    assert_eq!(s.catalog_fetches(), fetches + 1);

    // A copy older than the maximum age does not stand in either.
    let s = setup(
        OnClosed::Template(order_update()),
        CatalogSettings::default()
            .refresh_every(TimeDelta::minutes(15))
            .max_age(TimeDelta::minutes(30)),
    )
    .await;
    s.send_closed(chat()).await.unwrap();
    s.clock.advance(TimeDelta::minutes(45));
    s.gateway
        .fail_template_calls_next(2, InjectedFailure::status(502));
    let late = s.send_closed(other_chat()).await.unwrap();
    assert_eq!(template_of(&late).check, CatalogCheck::Unchecked);
    assert_eq!(s.messenger.catalogs().unchecked_count(), 1);
}

#[tokio::test]
async fn switched_off_nothing_is_fetched_and_the_gateway_is_left_to_refuse() {
    let s = setup(
        OnClosed::Template(order_update()),
        CatalogSettings::disabled(),
    )
    .await;
    let outcome = s.send_closed(chat()).await.unwrap();
    assert_eq!(template_of(&outcome).check, CatalogCheck::Disabled);
    assert_eq!(s.catalog_fetches(), 0);
    // Unchecked, a template the catalog does not have reaches the gateway, which refuses
    // it (WhatsApp's 132001): the request the check saves.
    let s = setup(
        OnClosed::Template(TemplateMessage::new("no_such", "en").unwrap()),
        CatalogSettings::disabled(),
    )
    .await;
    let error = s.send_closed(chat()).await.unwrap_err();
    assert!(
        matches!(&error, PolicyError::Template { source, .. } if source.to_string().contains("132001")),
        "{error:?}"
    );
    assert_eq!(s.gateway.request_count(), 1);
}

#[tokio::test]
async fn a_template_sent_on_its_own_goes_whatever_the_window_and_is_checked() {
    let s = setup(OnClosed::Reject, CatalogSettings::default()).await;
    let id = MessageId::new();
    let request = TemplateRequest::new(chat(), order_update()).message_id(id);
    let outcome = s.messenger.send_template(request.clone()).await.unwrap();
    let TemplateOutcome::Sent(sent) = &outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(sent.message_id, id);
    assert_eq!(sent.category, Some(TemplateCategory::Utility));
    let delivered = s.gateway.delivered();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].kind, MessageKind::Template);
    assert_eq!(delivered[0].message_id, id.to_string());

    // The same messageId again: the earlier outcome, nothing sent.
    let again = s.messenger.send_template(request).await.unwrap();
    let TemplateOutcome::Duplicate(previous) = &again else {
        panic!("{again:?}");
    };
    assert_eq!(previous.wa_id.as_deref(), sent.receipt.wa_id.as_deref());
    assert_eq!(s.gateway.request_count(), 1);

    // Refused by the catalog: nothing sent.
    let refused = s
        .messenger
        .send_template(TemplateRequest::new(
            chat(),
            TemplateMessage::new("promo", "en").unwrap(),
        ))
        .await
        .unwrap_err();
    assert!(matches!(refused, PolicyError::TemplateRefused { .. }));
    assert_eq!(s.gateway.request_count(), 1);
}

/// A checked template is priced by the catalog's category, so consent withholds it only
/// when the catalog calls it marketing; the configuration's category overrides the
/// catalog's; a template that went unchecked is taken as marketing.
#[tokio::test]
async fn a_checked_template_is_priced_and_withheld_by_the_catalogs_category() {
    use lipachat_policy::consent::{PricingConfig, Withholding};
    use lipachat_session::{ConsentStore, PricingCategory};

    let s = setup(OnClosed::Reject, CatalogSettings::default()).await;
    s.messenger
        .sessions()
        .store()
        .record_opt_out(chat(), true, start_time())
        .await
        .unwrap();
    // The catalog says UTILITY: priced utility, and an opt-out does not stop it.
    let outcome = s
        .messenger
        .send_template(TemplateRequest::new(chat(), order_update()))
        .await
        .unwrap();
    let TemplateOutcome::Sent(sent) = &outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(sent.pricing.category, PricingCategory::Utility);
    // The catalog says MARKETING: withheld for the opted-out customer, nothing sent.
    let requests = s.gateway.request_count();
    let welcome = TemplateMessage::new("welcome", "en").unwrap();
    let outcome = s
        .messenger
        .send_template(TemplateRequest::new(chat(), welcome.clone()))
        .await
        .unwrap();
    let TemplateOutcome::Withheld {
        reason, pricing, ..
    } = &outcome
    else {
        panic!("{outcome:?}");
    };
    assert_eq!(*reason, Withholding::OptedOut);
    assert_eq!(pricing.category, PricingCategory::Marketing);
    assert_eq!(outcome.name(), "rejected");
    assert_eq!(s.gateway.request_count(), requests);

    // The configuration's category wins over the catalog's for pricing; consent follows
    // the catalog's MARKETING (the platform's category): still withheld.
    let mut pricing = PricingConfig::default();
    pricing
        .template_categories
        .insert("welcome".to_owned(), PricingCategory::Utility);
    let dir = tempfile::tempdir().unwrap();
    let sessions =
        Sessions::new(SledStore::open(dir.path().join("db")).unwrap()).with_clock(s.clock.clone());
    sessions
        .store()
        .record_opt_out(chat(), true, start_time())
        .await
        .unwrap();
    let overridden = Messenger::new(
        sessions,
        common::quick_client(&s.gateway),
        PolicyConfig::default().pricing(pricing),
    );
    let outcome = overridden
        .send_template(TemplateRequest::new(chat(), welcome.clone()))
        .await
        .unwrap();
    let TemplateOutcome::Withheld {
        reason, pricing, ..
    } = &outcome
    else {
        panic!("{outcome:?}");
    };
    assert_eq!(*reason, Withholding::OptedOut);
    assert_eq!(pricing.category, PricingCategory::Utility);
    assert_eq!(s.gateway.request_count(), requests);

    // Unchecked (checking off): marketing, withheld for the opted-out customer.
    let unchecked = setup(OnClosed::Reject, CatalogSettings::disabled()).await;
    unchecked
        .messenger
        .sessions()
        .store()
        .record_opt_out(chat(), true, start_time())
        .await
        .unwrap();
    let outcome = unchecked
        .messenger
        .send_template(TemplateRequest::new(chat(), order_update()))
        .await
        .unwrap();
    assert!(
        matches!(
            &outcome,
            TemplateOutcome::Withheld {
                reason: Withholding::OptedOut,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(unchecked.gateway.request_count(), 0);
}
