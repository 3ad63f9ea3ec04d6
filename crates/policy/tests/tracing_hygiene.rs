//! What the send path logs: decisions and ids at info level, never the API key.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use lipachat_api::{ApiKey, Client, ContactMessage, ContactPhone, TemplateMessage};
use lipachat_policy::{Messenger, OnClosed, PolicyConfig};
use lipachat_session::{Conversation, Sessions, SledStore};
use lipachat_testkit::StandInGateway;

#[tokio::test]
async fn decisions_are_traced_and_the_key_never_is() {
    let (captured, _guard) = lipachat_testkit::capture_log();

    let secret = "sk-live-very-secret-key-1234567890";
    let gateway = StandInGateway::builder()
        .api_key(secret)
        .start()
        .await
        .unwrap();
    let client = Client::builder(ApiKey::new(secret).unwrap())
        .base_url(&gateway.base_url())
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = PolicyConfig::default().on_closed(OnClosed::Queue(
        TemplateMessage::new("contact_share", "en").unwrap(),
    ));
    let messenger = Messenger::new(
        Sessions::new(SledStore::open(dir.path().join("db")).unwrap()),
        client,
        config,
    );
    let chat = Conversation::parse("254110090747", "254712345678").unwrap();
    let card = ContactMessage::new(
        "Support",
        vec![ContactPhone::new("254700000001".parse().unwrap(), "Work")],
    )
    .unwrap();
    let queued = messenger.send_contact(chat, card.clone()).await.unwrap();
    gateway.customer_writes(chat.business, chat.phone().unwrap());
    messenger
        .on_inbound(chat, messenger.sessions().now())
        .await
        .unwrap();
    messenger.send_contact(chat, card).await.unwrap();
    // A wrong key: the error path is traced too.
    let bad = Client::builder(ApiKey::new("sk-wrong-secret-abcdef").unwrap())
        .base_url(&gateway.base_url())
        .build()
        .unwrap();
    let other = Messenger::new(
        Sessions::new(SledStore::open(dir.path().join("db2")).unwrap()),
        bad,
        PolicyConfig::default(),
    );
    other.sessions().record_inbound_now(chat).await.unwrap();
    assert!(
        other
            .send_contact(
                chat,
                ContactMessage::new(
                    "X",
                    vec![ContactPhone::new("254700000001".parse().unwrap(), "Work")]
                )
                .unwrap()
            )
            .await
            .is_err()
    );

    let log = captured.text();
    assert!(!log.contains(secret), "the key leaked into the log");
    assert!(
        !log.contains("sk-wrong-secret-abcdef"),
        "the key leaked into the log"
    );
    assert!(log.contains("queued until the customer replies"), "{log}");
    assert!(
        log.contains(&queued.message_id().to_string()),
        "message ids are traced"
    );
    assert!(log.contains("delivered queued message"));
    assert!(
        log.contains("decision=\"closed\"") && log.contains("reason=\"never_messaged\""),
        "{log}"
    );
    assert!(log.contains("254712345678"), "the conversation is traced");
}
