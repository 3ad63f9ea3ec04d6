//! Who a conversation is with, resolved by the engine on a sled store on disk: a user known
//! by a business-scoped user id and the same user's phone end as one conversation, in
//! whatever order their messages arrive.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::MessageId;
use lipachat_session::{
    Bsuid, Conversation, Customer, IdentityStore, ManualClock, OutboxStore, PhoneNumber,
    QueuedMessage, Sessions, SledStore, WindowStore,
};
use proptest::prelude::*;

fn business() -> PhoneNumber {
    "254110090747".parse().unwrap()
}

fn phone() -> PhoneNumber {
    "254712345678".parse().unwrap()
}

fn user() -> Bsuid {
    "KE.13491208655302741918".parse().unwrap()
}

fn base() -> DateTime<Utc> {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

/// One message from the user: with their phone and user id, or the user id alone.
#[derive(Debug, Clone, Copy)]
struct Message {
    with_phone: bool,
    minutes: i64,
}

/// Applies a message as the webhook handling does: resolve, record, then settle a
/// message recorded under the user's handle.
async fn apply(sessions: &Sessions<SledStore>, message: Message) -> Conversation {
    let phone = message.with_phone.then(phone);
    let resolved = sessions
        .sender_conversation(business(), phone, Some(&user()))
        .await
        .unwrap()
        .unwrap();
    let at = base() + TimeDelta::minutes(message.minutes);
    sessions
        .record_inbound(resolved.conversation, at)
        .await
        .unwrap();
    match sessions
        .settle_user(resolved.conversation, &user())
        .await
        .unwrap()
    {
        Some(merged) => merged.to,
        None => resolved.conversation,
    }
}

fn sessions(dir: &tempfile::TempDir) -> Sessions<SledStore> {
    let store = SledStore::open(dir.path().join("db")).unwrap();
    Sessions::new(store).with_clock(ManualClock::at(base() + TimeDelta::days(1)))
}

#[tokio::test]
async fn phone_and_id_first_then_id_alone_is_one_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let sessions = sessions(&dir);
    let first = apply(
        &sessions,
        Message {
            with_phone: true,
            minutes: 0,
        },
    )
    .await;
    let second = apply(
        &sessions,
        Message {
            with_phone: false,
            minutes: 5,
        },
    )
    .await;
    let phone_chat = Conversation::new(business(), phone());
    assert_eq!((first, second), (phone_chat, phone_chat));
    assert_eq!(sessions.count().await.unwrap(), 1);
    assert_eq!(
        sessions
            .store()
            .window(phone_chat)
            .await
            .unwrap()
            .unwrap()
            .last_inbound,
        base() + TimeDelta::minutes(5)
    );
    // The user id alone never needed a handle: the alias answered it.
    assert_eq!(sessions.store().find_user_ref(&user()).await.unwrap(), None);
}

#[tokio::test]
async fn id_alone_first_then_phone_and_id_merges_everything_into_the_phone() {
    let dir = tempfile::tempdir().unwrap();
    let sessions = sessions(&dir);
    let first = apply(
        &sessions,
        Message {
            with_phone: false,
            minutes: 7,
        },
    )
    .await;
    let handle = sessions
        .store()
        .find_user_ref(&user())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.customer, Customer::User(handle));
    // Something stored under the user's handle (as an import could bring) moves too.
    let queued = QueuedMessage {
        message_id: MessageId::new(),
        queued_at: base(),
        payload: "{}".into(),
    };
    sessions
        .store()
        .enqueue(first, queued.clone(), 10)
        .await
        .unwrap();
    let second = apply(
        &sessions,
        Message {
            with_phone: true,
            minutes: 3,
        },
    )
    .await;
    let phone_chat = Conversation::new(business(), phone());
    assert_eq!(second, phone_chat);
    assert_eq!(sessions.count().await.unwrap(), 1, "one conversation");
    let store = sessions.store();
    assert_eq!(store.window(first).await.unwrap(), None);
    assert_eq!(
        store
            .window(phone_chat)
            .await
            .unwrap()
            .unwrap()
            .last_inbound,
        base() + TimeDelta::minutes(7),
        "the latest inbound time of either identity"
    );
    assert_eq!(store.queued(phone_chat).await.unwrap(), vec![queued]);
    assert!(store.queued(first).await.unwrap().is_empty());
    // Later messages under either identity find the phone's conversation.
    for with_phone in [false, true] {
        let later = apply(
            &sessions,
            Message {
                with_phone,
                minutes: 9,
            },
        )
        .await;
        assert_eq!(later, phone_chat);
    }
    assert_eq!(sessions.count().await.unwrap(), 1);
}

/// A number change moves the window to the new number; the old user id, the new one and
/// the number are then one person at the new number.
#[tokio::test]
async fn a_number_change_moves_the_window_and_ties_both_user_ids_to_the_new_number() {
    let dir = tempfile::tempdir().unwrap();
    let sessions = sessions(&dir);
    apply(
        &sessions,
        Message {
            with_phone: true,
            minutes: 1,
        },
    )
    .await;
    let new: PhoneNumber = "254799999999".parse().unwrap();
    let new_user: Bsuid = "KE.55".parse().unwrap();
    let merged = sessions
        .change_number(
            business(),
            Some(phone()),
            Some(&user()),
            new,
            Some(&new_user),
        )
        .await
        .unwrap()
        .unwrap();
    let new_chat = Conversation::new(business(), new);
    assert_eq!(merged.from, Conversation::new(business(), phone()));
    assert_eq!(merged.to, new_chat);
    assert!(merged.moved.window);
    assert_eq!(sessions.count().await.unwrap(), 1);
    for id in [user(), new_user] {
        assert_eq!(
            sessions.store().alias(business(), &id).await.unwrap(),
            Some(new)
        );
    }
}

fn messages() -> impl Strategy<Value = Vec<Message>> {
    prop::collection::vec(
        (any::<bool>(), 0i64..600).prop_map(|(with_phone, minutes)| Message {
            with_phone,
            minutes,
        }),
        1..6,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever the order of the user's messages, with and without their phone: once one
    /// names the phone, the user has one conversation (the phone's), holding the latest
    /// inbound time of all; before that, one conversation under the user id.
    #[test]
    fn resolution_does_not_depend_on_the_order_messages_arrive_in(
        messages in messages(),
        rotation in 0usize..6,
    ) {
        let mut order = messages.clone();
        let len = order.len();
        order.rotate_left(rotation % len);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let sessions = sessions(&dir);
            for message in &order {
                apply(&sessions, *message).await;
            }
            let latest = base() + TimeDelta::minutes(messages.iter().map(|m| m.minutes).max().unwrap());
            let store = sessions.store();
            let windows = store.windows().await.unwrap();
            prop_assert_eq!(windows.len(), 1, "one conversation: {:?}", windows);
            let (conversation, record) = &windows[0];
            prop_assert_eq!(record.as_ref().unwrap().last_inbound, latest);
            let expected = if messages.iter().any(|m| m.with_phone) {
                Customer::Phone(phone())
            } else {
                Customer::User(store.find_user_ref(&user()).await.unwrap().unwrap())
            };
            prop_assert_eq!(conversation.customer, expected);
            Ok(())
        })?;
    }
}
