//! The template catalog, template create/update and file upload against the stand-in
//! gateway on loopback: what the client sends, what it reads back, and which failures it
//! retries (a catalog read on any transient failure; a create or upload only when the
//! request cannot have been processed).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use lipachat_api::{
    ApiError, ApiKey, CatalogRefusal, Client, DraftButton, DraftHeader, HeaderFormat, RetryPolicy,
    TemplateCategory, TemplateDraft, TemplateFile, TemplateHeader, TemplateMessage, TemplateStatus,
};
use lipachat_session::PhoneNumber;
use lipachat_testkit::{InjectedFailure, RequestOutcome, StandInGateway, template_entry};

fn business() -> PhoneNumber {
    "254110090747".parse().unwrap()
}

fn client(gateway: &StandInGateway) -> Client {
    Client::builder(ApiKey::new(gateway.api_key()).unwrap())
        .base_url(&gateway.base_url())
        .retry(RetryPolicy {
            max_retries: 2,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(10),
        })
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_catalog_is_read_and_checks_sends() {
    let gateway = StandInGateway::start().await.unwrap();
    gateway.set_templates(
        business(),
        vec![
            template_entry(
                "order_update",
                "en",
                "UTILITY",
                "APPROVED",
                Some(("IMAGE", "")),
                "Hi {{1}}, order {{2}}",
            ),
            template_entry("promo", "en", "MARKETING", "PAUSED", None, "Sale!"),
        ],
    );
    let client = client(&gateway);
    let catalog = client.templates(business()).await.unwrap();
    assert_eq!(catalog.templates.len(), 2);
    let order = catalog.find("order_update", "en").unwrap();
    assert_eq!(order.category, Some(TemplateCategory::Utility));
    assert_eq!(order.body_placeholders, 2);
    assert_eq!(
        order.header.as_ref().map(|h| h.format.clone()),
        Some(HeaderFormat::Image)
    );
    let promo = TemplateMessage::new("promo", "en").unwrap();
    assert!(matches!(
        catalog.check(&promo),
        Err(CatalogRefusal::NotApproved {
            status: TemplateStatus::Paused,
            ..
        })
    ));
    let ok = TemplateMessage::new("order_update", "en")
        .unwrap()
        .with_header(TemplateHeader::image("https://e.com/a.png").unwrap())
        .unwrap()
        .with_body_placeholders(["Jane", "42"])
        .unwrap();
    assert!(catalog.check(&ok).is_ok());
    let request = &gateway.template_requests()[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("GET", "/api/v1/template/254110090747")
    );
}

#[tokio::test]
async fn a_catalog_read_is_retried_and_its_failures_are_typed() {
    let gateway = StandInGateway::start().await.unwrap();
    gateway.set_templates(business(), vec![]);
    let client = client(&gateway);
    gateway.fail_template_calls_next(2, InjectedFailure::status(503));
    assert!(
        client
            .templates(business())
            .await
            .unwrap()
            .templates
            .is_empty()
    );
    assert_eq!(
        gateway.template_requests().len(),
        3,
        "two failures, then the answer"
    );

    let unknown: PhoneNumber = "254799999999".parse().unwrap();
    assert!(matches!(
        client.templates(unknown).await,
        Err(ApiError::UnexpectedResponse { status: 404, .. })
    ));
    let wrong = Client::builder(ApiKey::new("wrong-key").unwrap())
        .base_url(&gateway.base_url())
        .build()
        .unwrap();
    assert_eq!(
        wrong.templates(business()).await.unwrap_err(),
        ApiError::InvalidCredentials
    );
}

fn draft() -> TemplateDraft {
    TemplateDraft::new(
        "order_ready",
        "en",
        TemplateCategory::Utility,
        "Hi {{1}}, your order is ready.",
    )
    .unwrap()
    .with_body_examples(["Jane"])
    .unwrap()
    .with_button(DraftButton::QuickReply {
        text: "Thanks".into(),
    })
    .unwrap()
}

#[tokio::test]
async fn templates_are_created_and_updated_with_the_documented_body() {
    let gateway = StandInGateway::start().await.unwrap();
    let client = client(&gateway);
    let saved = client.create_template(business(), &draft()).await.unwrap();
    assert_eq!(saved.status, Some(TemplateStatus::Pending));
    let id = saved.id.unwrap();
    let sent = gateway.template_requests()[0].body.json().unwrap().clone();
    assert_eq!(sent, draft().to_body().unwrap().to_value());

    // The same name and language again: the gateway refuses it, and it is not retried.
    assert!(matches!(
        client.create_template(business(), &draft()).await,
        Err(ApiError::BadRequest { .. })
    ));
    let changed = draft().with_footer("See you soon").unwrap();
    let updated = client
        .update_template(business(), &id, &changed)
        .await
        .unwrap();
    assert_eq!(updated.id.as_deref(), Some(id.as_str()));
    let catalog = client.templates(business()).await.unwrap();
    assert_eq!(catalog.templates.len(), 1);
    assert!(matches!(
        client
            .update_template(business(), "no-such-id", &changed)
            .await,
        Err(ApiError::UnexpectedResponse { status: 404, .. })
    ));
    // A header named by an uploaded file's id.
    let renamed = TemplateDraft::new("order_photo", "en", TemplateCategory::Utility, "Your order")
        .unwrap()
        .with_header(DraftHeader::Media {
            format: HeaderFormat::Image,
            example: "upload-1".into(),
        })
        .unwrap();
    client.create_template(business(), &renamed).await.unwrap();
}

#[tokio::test]
async fn a_create_is_retried_only_when_it_cannot_have_been_processed() {
    let gateway = StandInGateway::start().await.unwrap();
    let client = client(&gateway);
    gateway.fail_template_calls_next(1, InjectedFailure::status(503));
    assert!(matches!(
        client.create_template(business(), &draft()).await,
        Err(ApiError::Unavailable { status: 503, .. })
    ));
    assert_eq!(
        gateway.template_requests().len(),
        1,
        "a 503 may have created it: no retry"
    );
    gateway.fail_template_calls_next(1, InjectedFailure::status(429));
    client.create_template(business(), &draft()).await.unwrap();
    let outcomes: Vec<RequestOutcome> = gateway
        .template_requests()
        .iter()
        .map(|r| r.outcome)
        .collect();
    assert_eq!(
        outcomes,
        [
            RequestOutcome::InjectedFailure,
            RequestOutcome::InjectedFailure,
            RequestOutcome::TemplateCreated
        ]
    );
}

#[tokio::test]
async fn a_file_is_uploaded_as_multipart_and_its_id_returned() {
    let gateway = StandInGateway::start().await.unwrap();
    let client = client(&gateway);
    let bytes = b"\x89PNG\r\n\x1a\n--not-a-boundary--\r\n".to_vec();
    let file = TemplateFile::new("card.png", "image/png", bytes.clone()).unwrap();
    let uploaded = client.upload_template_file(&file).await.unwrap();
    let stored = gateway.uploads();
    assert_eq!(stored.len(), 1);
    assert_eq!(uploaded.id, stored[0].id);
    assert_eq!(stored[0].filename, "card.png");
    assert_eq!(stored[0].content_type, "image/png");
    assert_eq!(stored[0].bytes, bytes);
    assert_eq!(
        gateway.template_requests()[0].path,
        "/api/v1/template/upload/file"
    );
}
