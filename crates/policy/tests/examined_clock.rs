//! A `Messenger` built over `Sessions` whose examined clock runs ahead of the real one:
//! no time beyond the skew of the real clock may reach the store through the send path
//! (queued messages, invitations), as it may not through the engine's record paths.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use chrono::{TimeDelta, Utc};
use lipachat_api::{ApiKey, Client, ContactMessage, ContactPhone, TemplateMessage};
use lipachat_policy::{Messenger, OnClosed, PolicyConfig, SendRequest};
use lipachat_session::{Conversation, ManualClock, OutboxStore, Sessions, SkewLimit, SledStore};
use lipachat_testkit::StandInGateway;

#[tokio::test]
#[ignore = "finding: Messenger stamps queued messages and invitations with Sessions::now(), the \
            examined clock when one is set, so a Sessions examined a year ahead stores times a \
            year ahead of the real clock through the send path (session-check refuses --now for \
            sends, but the library does not); the fix belongs with the enqueue/outcome work \
            under way in messenger.rs"]
async fn a_send_under_an_examined_clock_stores_no_future_time() {
    let gateway = StandInGateway::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ahead = Utc::now() + TimeDelta::days(365);
    let sessions = Sessions::new(SledStore::open(dir.path().join("db")).unwrap())
        .with_examined_clock(ManualClock::at(ahead));
    let client = Client::builder(ApiKey::new(gateway.api_key()).unwrap())
        .base_url(&gateway.base_url())
        .build()
        .unwrap();
    let messenger = Messenger::new(sessions, client, PolicyConfig::default());
    let chat = Conversation::parse("254110090747", "254712345678").unwrap();
    let card = ContactMessage::new(
        "Card",
        vec![ContactPhone::new("254700000001".parse().unwrap(), "Work")],
    )
    .unwrap();
    // Never messaged: the card is queued behind an invitation.
    let request = SendRequest::contact(chat, card).on_closed(OnClosed::Queue(
        TemplateMessage::new("contact_share", "en").unwrap(),
    ));
    let sent = messenger.send(request).await;
    let bound = Utc::now() + SkewLimit::DEFAULT_MAX_SKEW;
    let store = messenger.sessions().store();
    for queued in store.queued(chat).await.unwrap() {
        assert!(
            queued.queued_at <= bound,
            "queued at {} (send: {sent:?})",
            queued.queued_at
        );
    }
    if let Some(invitation) = store.invitation(chat).await.unwrap() {
        assert!(
            invitation.sent_at <= bound,
            "invitation at {}",
            invitation.sent_at
        );
    }
}
