//! What a webhook event asks of the store: decided in one place, for the bot
//! ([`Messenger::on_webhook_event`](crate::Messenger::on_webhook_event), which then delivers
//! and reconciles) and for tools that only record ([`record_event`], used by
//! `session-check ingest`, which never sends).
//!
//! Deciding is pure ([`EventAction::of`]); who the event is about is then settled against
//! the store ([`EventAction::identify`]: aliases recorded, a user's conversation merged
//! into the phone's, handles allocated, an identity change moved), the same way for both.

use chrono::{DateTime, Utc};
use lipachat_api::{InboundContent, InboundMessage, MessageId, Recipient, WebhookEvent};
use lipachat_session::{
    Alias, Bsuid, Conversation, Customer, GroupId, InboundId, Merged, MovedRecords, PhoneNumber,
    RecordedOnce, SessionError, Sessions, Store, WindowState,
};

use crate::consent_events::carry_consent;
use crate::error::PolicyError;

/// Who an inbound message is from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Party {
    /// A 1:1 sender: a phone number, a business-scoped user id, or both (at least one).
    Sender {
        /// The phone number, when given.
        phone: Option<PhoneNumber>,
        /// The business-scoped user id, when given.
        user: Option<Bsuid>,
    },
    /// A group: the message opens the group's window, never the sender's.
    Group(GroupId),
}

/// An identity change a system message reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityChange {
    /// `user_changed_number`: the user's phone number changed (a new user id comes with
    /// it).
    Number {
        /// The old number (the message's sender), when given.
        old: Option<PhoneNumber>,
        /// The old user id (the sender's), when given.
        old_user: Option<Bsuid>,
        /// The new number.
        new: PhoneNumber,
        /// The new user id, when given.
        new_user: Option<Bsuid>,
    },
    /// `user_changed_user_id`: the user's business-scoped user id changed.
    UserId {
        /// The user's phone, when given.
        phone: Option<PhoneNumber>,
        /// The previous user id.
        previous: Bsuid,
        /// The new user id.
        new: Bsuid,
    },
}

/// What the store must record for one webhook event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventAction {
    /// A customer's message or call that (re)starts the window at `at`.
    RecordInbound {
        /// The business number.
        business: PhoneNumber,
        /// Who it is from.
        party: Party,
        /// The alias the sender's phone and user id make, when both are given (for a
        /// group message too: it tells who the member is).
        alias: Option<Alias>,
        /// The sender's time, capped at receipt.
        at: DateTime<Utc>,
        /// The platform's message id, by which a redelivered copy is recognised (`None`:
        /// the message still counts, but a copy of it cannot be recognised).
        id: Option<InboundId>,
    },
    /// The gateway reported a send refused as outside the window (131047 or 470).
    /// [`EventAction::identify`] ties it back by the conversation or recipient it names,
    /// else by the send outcome stored under our `messageId`
    /// ([`lipachat_session::OutboxStore::outcome_conversation`]).
    RecordClosure {
        /// The 1:1 phone conversation, when the report names it.
        conversation: Option<Conversation>,
        /// Who the report is about, as far as it tells (a user id, a group).
        recipient: Recipient,
        /// When the failure happened (the platform's time).
        at: DateTime<Utc>,
        /// Our `messageId` of the refused send, when the report names it.
        message_id: Option<MessageId>,
        /// WhatsApp's id of the refused send, when the report names it.
        wa_id: Option<String>,
    },
    /// A user's phone number or user id changed: what is stored moves to the new
    /// identity. It does not open the window.
    ChangeIdentity {
        /// The business number.
        business: PhoneNumber,
        /// What changed.
        change: IdentityChange,
    },
    /// Nothing to record about the window.
    Nothing {
        /// The conversation the event concerns, when it names one.
        conversation: Option<Conversation>,
        /// The alias the event tells (a status, or a message that does not open the
        /// window, naming both a phone and a user id): recorded all the same.
        alias: Option<Alias>,
        /// Why nothing is recorded.
        reason: String,
    },
}

/// The alias a phone and a user id given together make.
fn alias_of(
    business: Option<PhoneNumber>,
    phone: Option<PhoneNumber>,
    user: Option<&Bsuid>,
) -> Option<Alias> {
    Some(Alias {
        business: business?,
        user: user?.clone(),
        phone: phone?,
    })
}

fn sender_alias(message: &InboundMessage) -> Option<Alias> {
    alias_of(
        Some(message.business),
        message.sender.phone,
        message.sender.user_id.as_ref(),
    )
}

/// The alias a 1:1 recipient's phone and user id make.
fn recipient_alias(recipient: &Recipient) -> Option<Alias> {
    if recipient.group.is_some() {
        return None;
    }
    alias_of(
        recipient.business,
        recipient.phone,
        recipient.user_id.as_ref(),
    )
}

impl EventAction {
    /// What `event` asks of the store (pure: who it is about is settled by
    /// [`EventAction::identify`]).
    pub fn of(event: &WebhookEvent) -> Self {
        match event {
            WebhookEvent::Inbound(message) => Self::of_inbound(message),
            WebhookEvent::WindowClosed {
                conversation,
                recipient,
                message_id,
                wa_id,
                at,
                ..
            } => Self::RecordClosure {
                conversation: *conversation,
                recipient: recipient.clone(),
                at: *at,
                message_id: *message_id,
                wa_id: wa_id.clone(),
            },
            WebhookEvent::Status(status) => Self::Nothing {
                conversation: event.conversation(),
                alias: recipient_alias(&status.recipient),
                reason: format!("status {:?}", status.status),
            },
            WebhookEvent::TemplateStatus(update) => Self::nothing(format!(
                "template status {:?} for {:?}",
                update.status.as_deref().unwrap_or("unknown"),
                update
                    .template_name
                    .as_deref()
                    .unwrap_or("an unnamed template")
            )),
            WebhookEvent::Ignored { reason } => Self::nothing(reason.clone()),
            WebhookEvent::MarketingPreference {
                business, customer, ..
            } => Self::Nothing {
                conversation: event.conversation(),
                alias: alias_of(Some(*business), customer.phone, customer.user_id.as_ref()),
                reason: "a marketing preference (consent only)".into(),
            },
            other => Self::Nothing {
                conversation: other.conversation(),
                alias: None,
                reason: format!("unhandled event {other:?}"),
            },
        }
    }

    fn nothing(reason: String) -> Self {
        Self::Nothing {
            conversation: None,
            alias: None,
            reason,
        }
    }

    fn of_inbound(message: &InboundMessage) -> Self {
        let business = message.business;
        let sender = &message.sender;
        if let InboundContent::System(change) = &message.content {
            return Self::of_system(message, change);
        }
        if !message.opens_window {
            return Self::Nothing {
                // A group message is never the sender's 1:1 conversation.
                conversation: message.conversation(),
                alias: sender_alias(message),
                reason: format!("{} messages do not open the window", message.kind.name()),
            };
        }
        // Checked before the sender's own conversation: a group message must never open
        // (or be read as) the sender's 1:1 window.
        let party = match (&message.group, sender.phone, &sender.user_id) {
            (Some(group), _, _) => Party::Group(group.clone()),
            (None, None, None) => {
                return Self::nothing(
                    "message names no sender (neither a phone number nor a user id)".into(),
                );
            }
            (None, phone, user) => Party::Sender {
                phone,
                user: user.clone(),
            },
        };
        Self::RecordInbound {
            business,
            party,
            alias: sender_alias(message),
            at: message.inbound_time(),
            id: message
                .message_id
                .as_deref()
                .and_then(InboundId::from_platform),
        }
    }

    fn of_system(message: &InboundMessage, change: &lipachat_api::webhook::SystemChange) -> Self {
        let sender = &message.sender;
        let change = if change.is_number_change() {
            match change.new_phone {
                Some(new) => IdentityChange::Number {
                    old: sender.phone,
                    // Meta's pages add the previous user id to a number change since
                    // August 2026; before, only the sender's could name it.
                    old_user: change
                        .previous_user_id
                        .clone()
                        .or_else(|| sender.user_id.clone()),
                    new,
                    new_user: change.new_user_id.clone(),
                },
                None => return Self::nothing("number change without the new number".into()),
            }
        } else if change.is_user_id_change() {
            let previous = change.previous_user_id.as_ref().or(sender.user_id.as_ref());
            match (previous, &change.new_user_id) {
                (Some(previous), Some(new)) if previous != new => IdentityChange::UserId {
                    phone: sender.phone,
                    previous: previous.clone(),
                    new: new.clone(),
                },
                _ => {
                    return Self::nothing(
                        "user id change without both the previous and the new id".into(),
                    );
                }
            }
        } else {
            return Self::Nothing {
                conversation: message.conversation(),
                alias: sender_alias(message),
                reason: "system message that changes no identity".into(),
            };
        };
        Self::ChangeIdentity {
            business: message.business,
            change,
        }
    }

    /// Settles who the action is about against the store, and applies what it says about
    /// identities: records the alias it names (moving a conversation kept under the
    /// user's handle into the phone's), allocates a handle for a user or group met for
    /// the first time (for a message only: a report only looks up), and moves what is
    /// stored on an identity change. A closure report that names no conversation known
    /// here but our `messageId` (LipaChat's `MESSAGE_STATUS`) is tied back to the
    /// conversation whose send outcome is stored under it; a send with no stored outcome
    /// cannot be. Returns the conversation the window part of the
    /// action applies to, and what was merged.
    pub async fn identify<S: Store>(
        &self,
        sessions: &Sessions<S>,
    ) -> Result<Identified, PolicyError> {
        let identified = self.settle(sessions).await?;
        match (&identified.merged, self.alias()) {
            (Some(merged), _) => carry_consent(sessions.store(), merged).await?,
            // Nothing moved, yet the user may have a conversation of their own holding
            // only a consent (a `user_preferences` choice made while only the user id was
            // known): it applies to the phone's from now on.
            (None, Some(alias)) => {
                let store = sessions.store();
                if let Some(handle) = store
                    .find_user_ref(&alias.user)
                    .await
                    .map_err(SessionError::from)?
                {
                    let merged = Merged {
                        from: Conversation::with_customer(alias.business, Customer::User(handle)),
                        to: Conversation::new(alias.business, alias.phone),
                        moved: MovedRecords::default(),
                    };
                    carry_consent(store, &merged).await?;
                }
            }
            (None, None) => {}
        }
        Ok(identified)
    }

    /// [`EventAction::identify`] but for carrying the consent over a merge.
    async fn settle<S: Store>(&self, sessions: &Sessions<S>) -> Result<Identified, SessionError> {
        let linked = match self.alias() {
            Some(alias) => {
                sessions
                    .link(alias.business, &alias.user, alias.phone)
                    .await?
            }
            None => None,
        };
        let plain = |conversation| Identified {
            conversation,
            merged: linked,
        };
        Ok(match self {
            Self::RecordInbound {
                business, party, ..
            } => plain(Some(match party {
                Party::Group(group) => sessions.group_conversation(*business, group).await?,
                Party::Sender {
                    phone: Some(phone), ..
                } => Conversation::new(*business, *phone),
                Party::Sender { phone: None, user } => {
                    match sessions
                        .sender_conversation(*business, None, user.as_ref())
                        .await?
                    {
                        Some(resolved) => resolved.conversation,
                        None => return Ok(plain(None)),
                    }
                }
            })),
            Self::RecordClosure {
                conversation: Some(conversation),
                ..
            } => plain(Some(*conversation)),
            Self::RecordClosure {
                conversation: None,
                recipient,
                message_id,
                ..
            } => {
                let named = match recipient.business {
                    Some(business) => {
                        sessions
                            .find_conversation(
                                business,
                                recipient.phone,
                                recipient.user_id.as_ref(),
                                recipient.group.as_ref(),
                            )
                            .await?
                    }
                    None => None,
                };
                // A report naming only our `messageId` (LipaChat's MESSAGE_STATUS) is
                // tied back by the send outcome stored under it.
                let found = match (named, message_id) {
                    (None, Some(message_id)) => sessions
                        .store()
                        .outcome_conversation(recipient.business, *message_id)
                        .await
                        .map_err(SessionError::from)?,
                    (named, _) => named,
                };
                plain(found)
            }
            Self::ChangeIdentity { business, change } => {
                let merged = match change {
                    IdentityChange::Number {
                        old,
                        old_user,
                        new,
                        new_user,
                    } => {
                        sessions
                            .change_number(
                                *business,
                                *old,
                                old_user.as_ref(),
                                *new,
                                new_user.as_ref(),
                            )
                            .await?
                    }
                    IdentityChange::UserId {
                        phone,
                        previous,
                        new,
                    } => Some(
                        sessions
                            .change_user_id(*business, *phone, previous, new)
                            .await?,
                    ),
                };
                Identified {
                    conversation: merged.map(|merged| merged.to),
                    merged,
                }
            }
            Self::Nothing {
                conversation,
                alias,
                ..
            } => plain(conversation.or_else(|| {
                alias
                    .as_ref()
                    .map(|alias| Conversation::new(alias.business, alias.phone))
            })),
        })
    }

    /// The alias the action names, recorded by [`EventAction::identify`].
    pub fn alias(&self) -> Option<Alias> {
        match self {
            Self::RecordInbound { alias, .. } | Self::Nothing { alias, .. } => alias.clone(),
            Self::RecordClosure { recipient, .. } => recipient_alias(recipient),
            Self::ChangeIdentity { .. } => None,
        }
    }

    /// The business-scoped user id of a message from a user named by it alone: once
    /// recorded under the user's handle, [`Sessions::settle_user`] moves it to the phone
    /// an alias recorded meanwhile names.
    pub fn user_only(&self) -> Option<&Bsuid> {
        match self {
            Self::RecordInbound {
                party: Party::Sender { phone: None, user },
                ..
            } => user.as_ref(),
            _ => None,
        }
    }
}

/// Who an action is about, once settled against the store ([`EventAction::identify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identified {
    /// The conversation the window part of the action applies to: for a message, the
    /// conversation it is recorded in; for a report, the one it ties back to (`None`:
    /// nothing here knows it); for an identity change, the new identity's.
    pub conversation: Option<Conversation>,
    /// A conversation merged into another: a user's into the phone's (an alias
    /// recorded), or the old identity's into the new one's.
    pub merged: Option<Merged>,
}

/// What [`record_event`] stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventRecording {
    /// A customer's message: recorded, or recognised as a redelivered copy.
    Inbound {
        /// The conversation it was recorded in.
        conversation: Conversation,
        /// What recording it did.
        recorded: RecordedOnce,
    },
    /// A closure: recorded; the window's state after it.
    Closure {
        /// The conversation.
        conversation: Conversation,
        /// The window's state after it.
        state: WindowState,
    },
    /// What was stored for a user's old identity moved to the new one.
    IdentityMoved(Merged),
    /// Nothing was stored about a window.
    Nothing {
        /// The conversation the event concerns, when known.
        conversation: Option<Conversation>,
    },
}

/// Records what `action` asks of the store, and sends nothing: no queued message is
/// delivered and no closure is reconciled (a bot does both in
/// [`Messenger::on_webhook_event`](crate::Messenger::on_webhook_event)). A closure is
/// recorded at its time, never later than now, so a customer who wrote after the failure
/// keeps the window the reply opened. Returns also what [`EventAction::identify`] found.
pub async fn record_event<S: Store>(
    sessions: &Sessions<S>,
    action: &EventAction,
) -> Result<(EventRecording, Identified), PolicyError> {
    let mut identified = action.identify(sessions).await?;
    let recording = match (action, identified.conversation) {
        (EventAction::RecordInbound { at, id, .. }, Some(conversation)) => {
            let recorded = match id {
                Some(id) => sessions.record_inbound_once(conversation, *at, id).await?,
                None => RecordedOnce::First(sessions.record_inbound(conversation, *at).await?),
            };
            let mut conversation = conversation;
            if let Some(user) = action.user_only()
                && let Some(merged) = sessions.settle_user(conversation, user).await?
            {
                carry_consent(sessions.store(), &merged).await?;
                conversation = merged.to;
                identified = Identified {
                    conversation: Some(merged.to),
                    merged: Some(merged),
                };
            }
            EventRecording::Inbound {
                conversation,
                recorded,
            }
        }
        (EventAction::RecordClosure { at, .. }, Some(conversation)) => EventRecording::Closure {
            conversation,
            state: sessions
                .record_gateway_closure_at(conversation, (*at).min(sessions.now()))
                .await?,
        },
        (EventAction::ChangeIdentity { .. }, _) => match identified.merged {
            Some(merged) => EventRecording::IdentityMoved(merged),
            None => EventRecording::Nothing { conversation: None },
        },
        (_, conversation) => EventRecording::Nothing { conversation },
    };
    Ok((recording, identified))
}
