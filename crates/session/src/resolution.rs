//! Who a conversation is with, from what a webhook says: a phone number, a business-scoped
//! user id (BSUID), both, or a group; and moving a person's records when their identity
//! changes.
//!
//! The rules (the platform's business-scoped user id pages, see `docs/architecture.md`):
//!
//! - A message with a phone number belongs to the phone's conversation. When it also
//!   carries a BSUID, the two are one person: the alias BSUID → phone is recorded, and a
//!   conversation kept so far under the BSUID's handle is moved into the phone's.
//! - A message with a BSUID and no phone belongs to the phone's conversation when an
//!   alias names it, else to the conversation keyed by the BSUID's handle.
//! - A group message belongs to the (business, group) conversation.
//!
//! The outcome does not depend on the order messages arrive in: a BSUID-only message
//! recorded under the handle is moved into the phone's conversation as soon as a message
//! names both (and [`Sessions::settle_user`], run after recording under a handle, moves
//! it when the alias was recorded meanwhile by another replica).

use crate::store::{MovedRecords, Store};
use crate::{Bsuid, Conversation, Customer, GroupId, PhoneNumber, SessionError, Sessions};

/// A conversation merged into another: where from, and what moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Merged {
    /// The conversation whose records moved (now empty).
    pub from: Conversation,
    /// The conversation they moved into.
    pub to: Conversation,
    /// What moved.
    pub moved: MovedRecords,
}

/// The conversation a sender or recipient was resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// The conversation.
    pub conversation: Conversation,
    /// A conversation kept under the user's handle that was merged into it (the first
    /// message naming both the phone and the BSUID).
    pub merged: Option<Merged>,
}

impl Resolved {
    fn plain(conversation: Conversation) -> Self {
        Self {
            conversation,
            merged: None,
        }
    }
}

impl<S: Store> Sessions<S> {
    /// The 1:1 conversation of a message from a sender known by `phone`, `user` (a BSUID),
    /// or both, to `business`; `None` when neither is given. Allocates a handle for a
    /// BSUID-only sender met for the first time, and records the alias (merging the
    /// handle's conversation into the phone's) when both are given.
    pub async fn sender_conversation(
        &self,
        business: PhoneNumber,
        phone: Option<PhoneNumber>,
        user: Option<&Bsuid>,
    ) -> Result<Option<Resolved>, SessionError> {
        Ok(match (phone, user) {
            (Some(phone), Some(user)) => Some(Resolved {
                conversation: Conversation::new(business, phone),
                merged: self.link(business, user, phone).await?,
            }),
            (Some(phone), None) => Some(Resolved::plain(Conversation::new(business, phone))),
            (None, Some(user)) => {
                let store = self.store();
                let customer = match store.alias(business, user).await? {
                    Some(phone) => Customer::Phone(phone),
                    None => Customer::User(store.user_ref(user).await?),
                };
                Some(Resolved::plain(Conversation::with_customer(
                    business, customer,
                )))
            }
            (None, None) => None,
        })
    }

    /// The conversation a status or report about a message sent to `phone`, `user` or
    /// `group` belongs to, looked up only: `None` when nothing is known of it here (a
    /// group or user id never met has no conversation to tie back to). A group wins over
    /// the others (a message sent to a group), then the phone, then the user's alias or
    /// handle.
    pub async fn find_conversation(
        &self,
        business: PhoneNumber,
        phone: Option<PhoneNumber>,
        user: Option<&Bsuid>,
        group: Option<&GroupId>,
    ) -> Result<Option<Conversation>, SessionError> {
        let store = self.store();
        let customer = match (group, phone, user) {
            (Some(group), _, _) => store.find_group_ref(group).await?.map(Customer::Group),
            (None, Some(phone), _) => Some(Customer::Phone(phone)),
            (None, None, Some(user)) => match store.alias(business, user).await? {
                Some(phone) => Some(Customer::Phone(phone)),
                None => store.find_user_ref(user).await?.map(Customer::User),
            },
            (None, None, None) => None,
        };
        Ok(customer.map(|customer| Conversation::with_customer(business, customer)))
    }

    /// The conversation of `business` with a group, allocating the group's handle when it
    /// is met for the first time.
    pub async fn group_conversation(
        &self,
        business: PhoneNumber,
        group: &GroupId,
    ) -> Result<Conversation, SessionError> {
        let group = self.store().group_ref(group).await?;
        Ok(Conversation::with_customer(
            business,
            Customer::Group(group),
        ))
    }

    /// Records that `user` is `phone` for `business`, and moves a conversation kept so
    /// far under the user's handle into the phone's. Returns the merge, when something
    /// was moved.
    pub async fn link(
        &self,
        business: PhoneNumber,
        user: &Bsuid,
        phone: PhoneNumber,
    ) -> Result<Option<Merged>, SessionError> {
        let store = self.store();
        // The alias first: a replica that records under the handle after this looks
        // the alias up again (`settle_user`) and moves what it recorded itself.
        store.record_alias(business, user, phone).await?;
        let Some(handle) = store.find_user_ref(user).await? else {
            return Ok(None);
        };
        self.merge(business, Customer::User(handle), Customer::Phone(phone))
            .await
    }

    /// After recording under a user's handle: when an alias names the user's phone now
    /// (recorded by another replica since this one resolved the sender), moves the
    /// handle's conversation into the phone's. Returns the merge, when something moved.
    pub async fn settle_user(
        &self,
        conversation: Conversation,
        user: &Bsuid,
    ) -> Result<Option<Merged>, SessionError> {
        let Customer::User(handle) = conversation.customer else {
            return Ok(None);
        };
        match self.store().alias(conversation.business, user).await? {
            Some(phone) => {
                self.merge(
                    conversation.business,
                    Customer::User(handle),
                    Customer::Phone(phone),
                )
                .await
            }
            None => Ok(None),
        }
    }

    /// Moves everything stored for (`business`, `from`) into (`business`, `to`);
    /// `None` when nothing was there.
    pub async fn merge(
        &self,
        business: PhoneNumber,
        from: Customer,
        to: Customer,
    ) -> Result<Option<Merged>, SessionError> {
        let moved = self.store().move_customer(business, from, to).await?;
        Ok((!moved.is_empty()).then(|| Merged {
            from: Conversation::with_customer(business, from),
            to: Conversation::with_customer(business, to),
            moved,
        }))
    }

    /// A user changed their phone number (`user_changed_number`): what was stored for
    /// `old` (the sender's phone, else their user id's alias or handle, allocated if
    /// new) moves to `new`;
    /// the new user id that comes with it, and the old one, are recorded as aliases of
    /// `new` (moving a conversation kept under the new one's handle), and so is every user
    /// id already recorded as `old`'s alias. Returns the
    /// conversations moved from and to, and what moved (nothing, when nothing was
    /// stored). `None` when the old identity is not named at all.
    pub async fn change_number(
        &self,
        business: PhoneNumber,
        old: Option<PhoneNumber>,
        old_user: Option<&Bsuid>,
        new: PhoneNumber,
        new_user: Option<&Bsuid>,
    ) -> Result<Option<Merged>, SessionError> {
        let from = match (old, old_user) {
            (Some(old), _) => Some(Conversation::new(business, old)),
            (None, Some(user)) => self
                .sender_conversation(business, None, Some(user))
                .await?
                .map(|resolved| resolved.conversation),
            (None, None) => None,
        };
        let to = Conversation::new(business, new);
        let moved = match from {
            Some(from) => {
                self.store()
                    .move_customer(business, from.customer, to.customer)
                    .await?
            }
            None => MovedRecords::default(),
        };
        // A late message under the old user id is the same person, at the new number.
        for user in [old_user, new_user].into_iter().flatten() {
            self.link(business, user, new).await?;
        }
        // So is one under any user id already known as the old number's (the system
        // message may name no user id): otherwise a later stop by user id alone would
        // land on the old number. Number changes are rare; the alias list is read whole.
        if let Some(old) = old.filter(|old| *old != new) {
            for alias in self.store().aliases().await? {
                if alias.business == business
                    && alias.phone == old
                    && Some(&alias.user) != old_user
                    && Some(&alias.user) != new_user
                {
                    self.link(business, &alias.user, new).await?;
                }
            }
        }
        Ok(from.map(|from| Merged { from, to, moved }))
    }

    /// A user's business-scoped user id changed (`user_changed_user_id`): when the user's
    /// phone is known (given, or the alias of the previous id), the new id becomes an
    /// alias of it and what was kept under either id's handle moves into the phone's
    /// conversation; otherwise what was kept under the previous id's handle moves to the
    /// new id's. Returns the conversations moved from and to, and what moved.
    pub async fn change_user_id(
        &self,
        business: PhoneNumber,
        phone: Option<PhoneNumber>,
        previous: &Bsuid,
        new: &Bsuid,
    ) -> Result<Merged, SessionError> {
        let store = self.store();
        let phone = match phone {
            Some(phone) => Some(phone),
            None => store.alias(business, previous).await?,
        };
        let previous_handle = store.find_user_ref(previous).await?;
        let from = Conversation::with_customer(
            business,
            match (previous_handle, phone) {
                (Some(handle), _) => Customer::User(handle),
                (None, Some(phone)) => Customer::Phone(phone),
                (None, None) => Customer::User(store.user_ref(previous).await?),
            },
        );
        let to = match phone {
            Some(phone) => Conversation::new(business, phone),
            None => {
                Conversation::with_customer(business, Customer::User(store.user_ref(new).await?))
            }
        };
        let mut moved = store
            .move_customer(business, from.customer, to.customer)
            .await?;
        if let Some(phone) = phone {
            for user in [previous, new] {
                if let Some(merged) = self.link(business, user, phone).await? {
                    moved = MovedRecords {
                        window: moved.window || merged.moved.window,
                        queued: moved.queued + merged.moved.queued,
                        invitation: moved.invitation || merged.moved.invitation,
                        outcomes: moved.outcomes + merged.moved.outcomes,
                        consent: moved.consent || merged.moved.consent,
                        free_entry_point: moved.free_entry_point || merged.moved.free_entry_point,
                    };
                }
            }
        }
        Ok(Merged { from, to, moved })
    }
}
