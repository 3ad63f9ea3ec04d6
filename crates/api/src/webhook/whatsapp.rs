//! WhatsApp's own (nested) webhook payload.

use chrono::{DateTime, Utc};
use lipachat_session::{Bsuid, GroupId, PhoneNumber, PhoneParser};
use serde_json::{Map, Value};

use super::content::{self, CallDirection, CallEventKind, bsuid};
use super::{
    DeliveryStatus, InboundContent, InboundKind, InboundMessage, Leaf, Recipient, Sender,
    StatusPricing, StatusUpdate, WebhookError, WebhookEvent, WebhookParser, phone, phone_of,
    shorten, text, timestamp,
};
use crate::reengagement;

pub(super) fn parse(
    parser: &WebhookParser,
    object: &Map<String, Value>,
    received_at: DateTime<Utc>,
) -> Result<Vec<WebhookEvent>, WebhookError> {
    let Some(Value::Array(entries)) = object.get("entry") else {
        return Err(WebhookError::UnknownShape {
            detail: "WhatsApp's `entry` must be an array",
        });
    };
    let mut events = Vec::new();
    for entry in entries {
        let Some(changes) = entry.get("changes").and_then(Value::as_array) else {
            events.push(ignored("an entry without a `changes` array"));
            continue;
        };
        for change in changes {
            change_events(parser, change, received_at, &mut events);
        }
    }
    Ok(events)
}

pub(super) fn ignored(reason: impl Into<String>) -> WebhookEvent {
    WebhookEvent::Ignored {
        reason: reason.into(),
    }
}

/// The webhook fields read; any other is one ignored event.
const READ_FIELDS: [&str; 3] = ["messages", "calls", "user_preferences"];

fn change_events(
    parser: &WebhookParser,
    change: &Value,
    received_at: DateTime<Utc>,
    events: &mut Vec<WebhookEvent>,
) {
    if let Some(field) = change.get("field").and_then(Value::as_str)
        && !READ_FIELDS.contains(&field)
    {
        events.push(ignored(format!(
            "WhatsApp webhook field {:?} is not about messages, calls or statuses",
            shorten(field)
        )));
        return;
    }
    let Some(value) = change.get("value").and_then(Value::as_object) else {
        events.push(ignored("a change without a `value` object"));
        return;
    };
    let business = business_number(
        parser,
        value
            .get("metadata")
            .and_then(Value::as_object)
            .map(|metadata| Leaf::of(metadata, "display_phone_number")),
    );
    let contacts = value
        .get("contacts")
        .and_then(Value::as_array)
        .map(|contacts| contacts.iter().filter_map(Value::as_object).collect())
        .unwrap_or_default();
    let change = Change {
        parser,
        value,
        business,
        received_at,
        contacts,
    };
    let list = |name| value.get(name).and_then(Value::as_array);
    let (messages, statuses, calls) = (list("messages"), list("statuses"), list("calls"));
    if let Some(preferences) = list("user_preferences") {
        for preference in preferences {
            events.push(change.preference_event(preference));
        }
        return;
    }
    if messages.is_none() && statuses.is_none() && calls.is_none() {
        events.push(ignored(
            "a change with none of `messages`, `statuses` or `calls`",
        ));
        return;
    }
    for message in messages.into_iter().flatten() {
        events.push(
            change
                .inbound(message)
                .map_or_else(ignored, |m| WebhookEvent::Inbound(Box::new(m))),
        );
    }
    for status in statuses.into_iter().flatten() {
        events.push(change.status_event(status));
    }
    for call in calls.into_iter().flatten() {
        events.push(
            change
                .call(call)
                .map_or_else(ignored, |m| WebhookEvent::Inbound(Box::new(m))),
        );
    }
}

/// A change's business number from its metadata's `display_phone_number` (`None`: no
/// metadata object), else the configured one. A business number in the metadata that is
/// not one (a float, say) is never read as some other number: the configured business
/// number stands in for it, and without one the messages and calls are ignored with the
/// reason.
pub(super) fn business_number(
    parser: &WebhookParser,
    display_phone_number: Option<Leaf<'_>>,
) -> Result<Option<PhoneNumber>, String> {
    match display_phone_number {
        Some(field) => match phone_of(&PhoneParser::international(), field, "display_phone_number")
        {
            Ok(number) => Ok(number.or(parser.business)),
            Err(_) if parser.business.is_some() => Ok(parser.business),
            Err(error) => Err(error.to_string()),
        },
        None => Ok(parser.business),
    }
}

/// One change's `value`, with what every item in it shares.
struct Change<'a> {
    parser: &'a WebhookParser,
    value: &'a Map<String, Value>,
    /// The business number: from the metadata, else the configured one; an error when the
    /// metadata names one that is not a phone number.
    business: Result<Option<PhoneNumber>, String>,
    received_at: DateTime<Utc>,
    /// The objects of `value.contacts[]`, collected once for every item.
    contacts: Vec<&'a Map<String, Value>>,
}

/// An entry of `value.contacts[]`: the profile of the user a message is from (or a
/// status or call is about). Read from a `serde_json` object here and from a typed entry
/// by [`super::whatsapp_typed`], through the same matching ([`pick_contact`]).
pub(super) trait ContactEntry {
    /// The `wa_id`, when it is a phone number.
    fn wa_id(&self) -> Option<PhoneNumber>;
    /// The `user_id`, when it is a business-scoped user id.
    fn user_id(&self) -> Option<Bsuid>;
    /// The `parent_user_id`, when it is a business-scoped user id.
    fn parent_user_id(&self) -> Option<Bsuid>;
    /// A field of `profile` (`name`, `username`), shortened.
    fn profile(&self, field: &str) -> Option<String>;
}

impl ContactEntry for Map<String, Value> {
    fn wa_id(&self) -> Option<PhoneNumber> {
        phone(self, "wa_id").ok().flatten()
    }

    fn user_id(&self) -> Option<Bsuid> {
        bsuid(self, &["user_id"])
    }

    fn parent_user_id(&self) -> Option<Bsuid> {
        bsuid(self, &["parent_user_id"])
    }

    fn profile(&self, field: &str) -> Option<String> {
        self.get("profile")
            .and_then(Value::as_object)
            .and_then(|profile| text(profile, &[field]))
            .map(|value| shorten(&value))
    }
}

/// The entry of `contacts` for this user: the one whose `wa_id` is their phone or whose
/// `user_id` is their id, else the only one (unless it names someone else).
pub(super) fn pick_contact<'c, C: ContactEntry + ?Sized>(
    contacts: &[&'c C],
    phone_number: Option<PhoneNumber>,
    user_id: Option<&Bsuid>,
) -> Option<&'c C> {
    let matches = |contact: &&C| {
        phone_number.is_some_and(|p| contact.wa_id() == Some(p))
            || user_id.is_some_and(|id| contact.user_id().as_ref() == Some(id))
    };
    // The only contact stands for the user unless it names someone else.
    let consistent = |contact: &C| {
        phone_number.is_none_or(|p| contact.wa_id().is_none_or(|w| w == p))
            && user_id.is_none_or(|id| contact.user_id().is_none_or(|c| &c == id))
    };
    contacts.iter().copied().find(matches).or(match contacts {
        [only] if consistent(only) => Some(*only),
        _ => None,
    })
}

/// A user's identity from an item's own fields (`phone_number`: its phone field as read),
/// completed from its entry in `contacts`, with the profile name. A phone field that is
/// not a phone number is an error only when no user id names the user instead.
pub(super) fn identify<C: ContactEntry + ?Sized>(
    phone_number: Result<Option<PhoneNumber>, WebhookError>,
    user_id: Option<Bsuid>,
    parent_user_id: Option<Bsuid>,
    contacts: &[&C],
) -> Result<(Sender, Option<String>), String> {
    let phone_number = match phone_number {
        Ok(number) => number,
        Err(_) if user_id.is_some() => None,
        Err(error) => return Err(error.to_string()),
    };
    let mut sender = Sender {
        phone: phone_number,
        user_id,
        parent_user_id,
        username: None,
    };
    let Some(contact) = pick_contact(contacts, sender.phone, sender.user_id.as_ref()) else {
        return Ok((sender, None));
    };
    complete(contact, &mut sender);
    Ok((sender, contact.profile("name")))
}

/// Fills from a user's contact entry what the item itself did not say about them.
fn complete<C: ContactEntry + ?Sized>(contact: &C, sender: &mut Sender) {
    if sender.phone.is_none() {
        sender.phone = contact.wa_id();
    }
    if sender.user_id.is_none() {
        sender.user_id = contact.user_id();
    }
    if sender.parent_user_id.is_none() {
        sender.parent_user_id = contact.parent_user_id();
    }
    if sender.username.is_none() {
        sender.username = contact.profile("username");
    }
}

/// What an inbound message's fields say, read by either reader, before the checks that
/// make it an [`InboundMessage`] ([`InboundFields::into_message`]).
pub(super) struct InboundFields {
    pub(super) business: PhoneNumber,
    pub(super) sender: Sender,
    pub(super) profile_name: Option<String>,
    pub(super) kind: InboundKind,
    pub(super) content: InboundContent,
    /// `group_id` as text.
    pub(super) group_id: Option<String>,
    /// `id` as text, shortened.
    pub(super) message_id: Option<String>,
    pub(super) context: Option<content::MessageContext>,
    pub(super) referral: Option<content::Referral>,
    pub(super) sent_at: Option<DateTime<Utc>>,
}

impl InboundFields {
    /// The message, or why it is not one: a sender known by nothing (but for a system
    /// message), or a group id that is unusable.
    pub(super) fn into_message(
        self,
        parser: &WebhookParser,
        received_at: DateTime<Utc>,
    ) -> Result<InboundMessage, String> {
        let Self {
            business,
            mut sender,
            profile_name,
            kind,
            content,
            group_id,
            message_id,
            context,
            referral,
            sent_at,
        } = self;
        if let InboundContent::System(change) = &content
            && sender.user_id.is_none()
        {
            sender.user_id = change.previous_user_id.clone();
        }
        if sender.is_unknown() && kind != InboundKind::System {
            return Err("a message with neither `from` nor `from_user_id`".into());
        }
        let group = match group_id {
            None => None,
            // Never read as a 1:1 message: the group's id is what the window belongs to.
            Some(raw) => Some(
                GroupId::parse(&raw)
                    .map_err(|e| format!("a group message whose group_id is unusable: {e}"))?,
            ),
        };
        Ok(InboundMessage {
            business,
            sender,
            group,
            message_id,
            kind,
            opens_window: parser.opens_window(kind),
            content,
            context,
            referral,
            profile_name,
            sent_at,
            received_at,
        })
    }
}

impl Change<'_> {
    /// The business number, or why there is none (`missing`: what to say when nothing
    /// names one).
    fn business(&self, missing: &str) -> Result<PhoneNumber, String> {
        match &self.business {
            Ok(Some(business)) => Ok(*business),
            Ok(None) => Err(missing.to_owned()),
            Err(reason) => Err(reason.clone()),
        }
    }

    /// A user's identity from `phone_field` and the id fields of an item, completed from
    /// `value.contacts[]` ([`identify`]).
    fn user(
        &self,
        item: &Map<String, Value>,
        phone_field: &'static str,
        user_id_fields: &[&str],
        parent_fields: &[&str],
    ) -> Result<(Sender, Option<String>), String> {
        identify(
            phone(item, phone_field),
            bsuid(item, user_id_fields),
            bsuid(item, parent_fields),
            &self.contacts,
        )
    }

    fn inbound(&self, message: &Value) -> Result<InboundMessage, String> {
        let message = message
            .as_object()
            .ok_or("a message that is not an object")?;
        let business = self.business("a message without the business number (metadata)")?;
        let wire_type = message.get("type").and_then(Value::as_str).unwrap_or("");
        let kind = InboundKind::from_wire(wire_type);
        let content = content::read(kind, wire_type, message);
        let (sender, profile_name) =
            self.user(message, "from", &["from_user_id"], &["from_parent_user_id"])?;
        InboundFields {
            business,
            sender,
            profile_name,
            kind,
            content,
            group_id: text(message, &["group_id"]),
            message_id: text(message, &["id"]).map(|id| shorten(&id)),
            context: content::context(message),
            referral: content::referral(message),
            sent_at: timestamp(message.get("timestamp"), self.received_at),
        }
        .into_message(self.parser, self.received_at)
    }

    /// A `calls[]` item (`connect` or `terminate`) as an inbound event of kind call.
    fn call(&self, call: &Value) -> Result<InboundMessage, String> {
        let call = call.as_object().ok_or("a call that is not an object")?;
        let business = self.business("a call without the business number (metadata)")?;
        let event = match text(call, &["event"])
            .map(|e| e.to_ascii_lowercase())
            .as_deref()
        {
            Some("connect") => CallEventKind::Connect,
            Some("terminate") => CallEventKind::Terminate,
            _ => CallEventKind::Other,
        };
        // The direction as given, else told by which side is the business.
        let from_business = phone(call, "from").ok().flatten() == Some(business);
        let to_business = phone(call, "to").ok().flatten() == Some(business);
        let direction = text(call, &["direction", "call_direction"])
            .and_then(|d| CallDirection::from_wire(&d))
            .or(match (from_business, to_business) {
                (true, false) => Some(CallDirection::BusinessInitiated),
                (false, true) => Some(CallDirection::UserInitiated),
                _ => None,
            });
        // The user's side: the callee of a business's call, else the caller; never the
        // business's own number (a payload whose direction contradicts its numbers is
        // read by its numbers).
        let callee = || self.user(call, "to", &["to_user_id"], &["to_parent_user_id"]);
        let caller = || self.user(call, "from", &["from_user_id"], &["from_parent_user_id"]);
        let (sender, profile_name) = match direction {
            Some(CallDirection::BusinessInitiated) if !to_business => callee()?,
            Some(CallDirection::BusinessInitiated) => caller()?,
            _ if from_business => callee()?,
            _ => caller()?,
        };
        if sender.is_unknown() {
            return Err("a call whose user has neither a phone number nor a user id".into());
        }
        let mut details = content::call(call, event, direction, self.received_at);
        details.errors.extend(content::errors(self.value));
        let at = timestamp(call.get("timestamp"), self.received_at);
        Ok(self.call_message(business, sender, profile_name, details, at))
    }

    /// A call status (`statuses[]` with `type: call`), of a business-initiated call.
    fn call_status(&self, status: &Map<String, Value>) -> Result<InboundMessage, String> {
        let business = self.business("a call status without the business number (metadata)")?;
        let (sender, profile_name) = self.user(
            status,
            "recipient_id",
            &["recipient_user_id"],
            &["recipient_parent_user_id"],
        )?;
        if sender.is_unknown() {
            return Err("a call status whose user has neither a phone number nor a user id".into());
        }
        let details = content::call(status, CallEventKind::Status, None, self.received_at);
        let at = timestamp(status.get("timestamp"), self.received_at);
        Ok(self.call_message(business, sender, profile_name, details, at))
    }

    fn call_message(
        &self,
        business: PhoneNumber,
        sender: Sender,
        profile_name: Option<String>,
        call: content::CallEvent,
        at: Option<DateTime<Utc>>,
    ) -> InboundMessage {
        InboundMessage {
            business,
            sender,
            group: None,
            message_id: None,
            kind: InboundKind::Call,
            opens_window: self.parser.opens_window_for_call(&call),
            // The window counts from when the call was answered, else from the event.
            sent_at: call.started_at.or(at),
            content: InboundContent::Call(call),
            context: None,
            referral: None,
            profile_name,
            received_at: self.received_at,
        }
    }

    fn status_event(&self, status: &Value) -> WebhookEvent {
        let Some(status) = status.as_object() else {
            return ignored("a status that is not an object");
        };
        let is_call = text(status, &["type"]).is_some_and(|t| t.eq_ignore_ascii_case("call"))
            || text(status, &["id"]).is_some_and(|id| id.starts_with("wacid."));
        if is_call {
            return self
                .call_status(status)
                .map_or_else(ignored, |m| WebhookEvent::Inbound(Box::new(m)));
        }
        let recipient = self.recipient(status);
        let conversation = recipient.conversation();
        let wa_id = text(status, &["id"]).map(|id| shorten(&id));
        let at = timestamp(status.get("timestamp"), self.received_at).unwrap_or(self.received_at);
        let errors = status.get("errors");
        if let Some(signal) = errors.and_then(reengagement::find_in_json) {
            return WebhookEvent::WindowClosed {
                conversation,
                recipient,
                message_id: None,
                wa_id,
                at,
                code: signal.code,
            };
        }
        let Some(delivery) = status
            .get("status")
            .and_then(Value::as_str)
            .map(|s| DeliveryStatus::from_wire(s).unwrap_or(DeliveryStatus::Other))
        else {
            return ignored("a status without `status`");
        };
        let first_error = content::errors(status).into_iter().next();
        let pricing = status
            .get("pricing")
            .and_then(Value::as_object)
            .and_then(|p| {
                Some(StatusPricing {
                    category: text(p, &["category"])?.to_ascii_lowercase(),
                    pricing_type: text(p, &["type"]).map(|t| t.to_ascii_lowercase()),
                    billable: p.get("billable").and_then(Value::as_bool),
                })
            });
        let conversation_expires_at = status
            .get("conversation")
            .and_then(|c| c.get("expiration_timestamp"))
            .and_then(|t| timestamp(Some(t), DateTime::<Utc>::MAX_UTC));
        WebhookEvent::Status(StatusUpdate {
            pricing,
            conversation_expires_at,
            conversation,
            recipient,
            message_id: None,
            wa_id,
            status: delivery,
            at,
            error_code: first_error.as_ref().and_then(|e| e.code),
            error_title: first_error.and_then(|e| e.title.or(e.message)),
        })
    }

    /// A `user_preferences` item: a stop or resume of marketing messages.
    fn preference_event(&self, preference: &Value) -> WebhookEvent {
        let Some(preference) = preference.as_object() else {
            return ignored("a user preference that is not an object");
        };
        let category = text(preference, &["category"]).unwrap_or_default();
        if !category.eq_ignore_ascii_case("marketing_messages") {
            return ignored(format!(
                "user preference category {:?} is not marketing_messages",
                shorten(&category)
            ));
        }
        let opted_out = match text(preference, &["value"]).map(|v| v.to_ascii_lowercase()) {
            Some(v) if v == "stop" => true,
            Some(v) if v == "resume" => false,
            other => {
                return ignored(format!(
                    "user preference value {:?} is neither stop nor resume",
                    other.map(|v| shorten(&v)).unwrap_or_default()
                ));
            }
        };
        let business = match self.business("a user preference") {
            Ok(business) => business,
            Err(reason) => return ignored(reason),
        };
        let customer = Sender {
            phone: match phone(preference, "wa_id") {
                Ok(phone) => phone,
                Err(error) => return ignored(format!("user preference wa_id: {error}")),
            },
            user_id: bsuid(preference, &["user_id"]),
            parent_user_id: bsuid(preference, &["parent_user_id"]),
            username: None,
        };
        if customer.phone.is_none() && customer.user_id.is_none() {
            return ignored("a user preference naming the customer by neither wa_id nor user_id");
        }
        let at =
            timestamp(preference.get("timestamp"), self.received_at).unwrap_or(self.received_at);
        WebhookEvent::MarketingPreference {
            business,
            customer,
            opted_out,
            at,
        }
    }

    /// Who a status is about. A group status names the group in `recipient_id`; a
    /// placeholder or malformed value is left out rather than failing the status.
    fn recipient(&self, status: &Map<String, Value>) -> Recipient {
        let to_group =
            text(status, &["recipient_type"]).is_some_and(|t| t.eq_ignore_ascii_case("group"));
        let group = if to_group {
            text(status, &["recipient_id", "group_id"]).and_then(|g| GroupId::parse(&g).ok())
        } else {
            text(status, &["group_id"]).and_then(|g| GroupId::parse(&g).ok())
        };
        let mut user = Sender {
            phone: if group.is_some() || to_group {
                None
            } else {
                phone(status, "recipient_id").ok().flatten()
            },
            user_id: bsuid(status, &["recipient_user_id"]),
            parent_user_id: bsuid(
                status,
                &["recipient_parent_user_id", "parent_recipient_user_id"],
            ),
            username: None,
        };
        if !to_group
            && let Some(contact) = pick_contact(&self.contacts, user.phone, user.user_id.as_ref())
        {
            complete(contact, &mut user);
        }
        Recipient {
            business: self.business.clone().ok().flatten(),
            phone: user.phone,
            user_id: user.user_id,
            parent_user_id: user.parent_user_id,
            group,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lipachat_session::Conversation;
    use serde_json::json;

    fn received() -> DateTime<Utc> {
        "2026-11-23T10:00:00Z".parse().unwrap()
    }

    fn parse(body: Value) -> Vec<WebhookEvent> {
        WebhookParser::default()
            .parse(body.to_string().as_bytes(), received())
            .unwrap()
    }

    fn conversation() -> Conversation {
        Conversation::parse("15550001111", "254712345678").unwrap()
    }

    #[test]
    fn nested_messages_keep_the_sender_timestamp() {
        let sent = received().timestamp() - 90;
        let events = parse(json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "+1 555-000-1111", "phone_number_id": "123"},
                "contacts": [{"profile": {"name": "Jane"}, "wa_id": "254712345678"}],
                "messages": [
                    {"from": "254712345678", "id": "wamid.A", "timestamp": sent.to_string(), "type": "text", "text": {"body": "hi"}},
                    {"from": "254712345678", "id": "wamid.B", "timestamp": (received().timestamp() + 600).to_string(), "type": "reaction", "reaction": {"emoji": "👍"}}
                ]
            }}]}]
        }));
        assert_eq!(events.len(), 2);
        let WebhookEvent::Inbound(text_message) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(text_message.conversation(), Some(conversation()));
        assert_eq!(text_message.message_id.as_deref(), Some("wamid.A"));
        assert_eq!(text_message.profile_name.as_deref(), Some("Jane"));
        assert_eq!(text_message.sent_at, DateTime::from_timestamp(sent, 0));
        assert_eq!(
            text_message.inbound_time(),
            DateTime::from_timestamp(sent, 0).unwrap()
        );
        assert!(text_message.opens_window);
        let WebhookEvent::Inbound(reaction) = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(reaction.kind, InboundKind::Reaction);
        assert!(!reaction.opens_window);
        // A timestamp from the sender's future is capped at receipt.
        assert_eq!(reaction.inbound_time(), received());
    }

    #[test]
    fn failed_status_131047_closes_the_window() {
        let events = parse(json!({
            "object": "whatsapp_business_account",
            "entry": [{"changes": [{"field": "messages", "value": {
                "metadata": {"display_phone_number": "15550001111"},
                "statuses": [
                    {"id": "wamid.X", "status": "failed", "timestamp": "1700000000", "recipient_id": "254712345678",
                     "errors": [{"code": 131047, "title": "Re-engagement message",
                                 "error_data": {"details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number."}}]},
                    {"id": "wamid.Y", "status": "delivered", "timestamp": "1700000001", "recipient_id": "254712345678"},
                    {"id": "wamid.Z", "status": "failed", "recipient_id": "254712345678", "errors": [{"code": 131026, "title": "Message undeliverable"}]}
                ]
            }}]}]
        }));
        assert_eq!(
            events[0],
            WebhookEvent::WindowClosed {
                conversation: Some(conversation()),
                recipient: Recipient {
                    business: Some(conversation().business),
                    phone: conversation().phone(),
                    ..Recipient::default()
                },
                message_id: None,
                wa_id: Some("wamid.X".into()),
                at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
                code: 131047,
            }
        );
        assert!(matches!(
            &events[1],
            WebhookEvent::Status(StatusUpdate {
                status: DeliveryStatus::Delivered,
                ..
            })
        ));
        assert!(matches!(
            &events[2],
            WebhookEvent::Status(StatusUpdate {
                status: DeliveryStatus::Failed,
                error_code: Some(131026),
                ..
            })
        ));
    }

    #[test]
    fn bad_items_are_ignored_not_fatal() {
        let events = parse(json!({
            "entry": [
                {"changes": [
                    {"field": "account_update", "value": {}},
                    {"field": "messages", "value": {"metadata": {"display_phone_number": "15550001111"},
                        "messages": [
                            {"from": "not a phone", "id": "wamid.1", "type": "text"},
                            {"from": "254712345678", "type": "text"},
                            7,
                            {"from": "254712345678", "id": "wamid.2", "type": "text"}
                        ]}},
                    {"value": {"messages": [{"from": "254712345678", "id": "wamid.3", "type": "text"}]}}
                ]},
                {"no_changes": true}
            ]
        }));
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| match e {
                WebhookEvent::Inbound(_) => "inbound",
                WebhookEvent::Ignored { .. } => "ignored",
                _ => "other",
            })
            .collect();
        // A message without `id` still counts (the id only deduplicates).
        assert_eq!(
            kinds,
            [
                "ignored", "ignored", "inbound", "ignored", "inbound", "ignored", "ignored"
            ]
        );
        assert!(matches!(
            WebhookParser::default().parse(br#"{"entry": 3}"#, received()),
            Err(WebhookError::UnknownShape { .. })
        ));
    }

    #[test]
    fn configured_business_fills_missing_metadata() {
        let parser = WebhookParser::default().with_business_number("15550001111".parse().unwrap());
        let events = parser
            .parse(
                json!({"entry": [{"changes": [{"value": {"messages": [
                    {"from": "254712345678", "id": "wamid.3", "type": "button"}
                ]}}]}]})
                .to_string()
                .as_bytes(),
                received(),
            )
            .unwrap();
        assert_eq!(events[0].conversation(), Some(conversation()));
    }

    fn envelope(value: Value) -> Value {
        json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [
            {"field": "messages", "value": value}
        ]}]})
    }

    fn inbound_of(body: Value) -> InboundMessage {
        match parse(body).remove(0) {
            WebhookEvent::Inbound(message) => *message,
            other => panic!("not inbound: {other:?}"),
        }
    }

    #[test]
    fn a_group_message_is_never_the_senders_1_to_1() {
        let message = inbound_of(envelope(json!({
            "metadata": {"display_phone_number": "15550001111"},
            "contacts": [{"profile": {"name": "Jane"}, "wa_id": "254712345678"}],
            "messages": [{"from": "254712345678", "group_id": "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOTox",
                          "id": "wamid.G", "timestamp": "1700000000", "type": "text", "text": {"body": "hi all"}}]
        })));
        assert_eq!(
            message.group.as_ref().map(GroupId::as_str),
            Some("Y2FwaV9ncm91cDoxNzA1NTU1MDEzOTox")
        );
        assert_eq!(message.sender.phone, conversation().phone());
        assert_eq!(message.conversation(), None);
        assert_eq!(parse(envelope(json!({
            "metadata": {"display_phone_number": "15550001111"},
            "messages": [{"from": "254712345678", "group_id": "<GROUP_ID>", "id": "wamid.G", "type": "text"}]
        })))[0].conversation(), None);
        // An unusable group id is not read as a 1:1 message either.
        let events = parse(envelope(json!({
            "metadata": {"display_phone_number": "15550001111"},
            "messages": [{"from": "254712345678", "group_id": "two words", "id": "wamid.G", "type": "text"}]
        })));
        assert!(
            matches!(&events[0], WebhookEvent::Ignored { reason } if reason.contains("group_id")),
            "{events:?}"
        );
    }

    #[test]
    fn a_user_known_only_by_a_bsuid_is_an_inbound_event() {
        let message = inbound_of(envelope(json!({
            "metadata": {"display_phone_number": "15550001111"},
            "contacts": [{"profile": {"name": "Jane", "username": "@jane"}, "user_id": "US.13491208655302741918",
                          "parent_user_id": "US.ENT.11815799212886844830"}],
            "messages": [{"from_user_id": "US.13491208655302741918", "id": "wamid.B", "timestamp": "1700000000",
                          "type": "text", "text": {"body": "hello"}}]
        })));
        assert_eq!(message.sender.phone, None);
        assert_eq!(
            message.sender.user_id.as_ref().map(Bsuid::as_str),
            Some("US.13491208655302741918")
        );
        assert_eq!(
            message.sender.parent_user_id.as_ref().map(Bsuid::as_str),
            Some("US.ENT.11815799212886844830")
        );
        assert_eq!(message.sender.username.as_deref(), Some("@jane"));
        assert_eq!(message.profile_name.as_deref(), Some("Jane"));
        assert!(message.opens_window);
        assert_eq!(message.conversation(), None);
        // Phone and id together: both kept, and the 1:1 conversation is known.
        let both = inbound_of(envelope(json!({
            "metadata": {"display_phone_number": "15550001111"},
            "contacts": [{"wa_id": "254712345678", "user_id": "KE.1"}],
            "messages": [{"from": "254712345678", "id": "wamid.C", "type": "text", "text": {"body": "x"}}]
        })));
        assert_eq!(
            both.sender.user_id.as_ref().map(Bsuid::as_str),
            Some("KE.1")
        );
        assert_eq!(both.conversation(), Some(conversation()));
        // Neither: not an inbound event.
        let events = parse(envelope(json!({
            "metadata": {"display_phone_number": "15550001111"},
            "messages": [{"id": "wamid.D", "type": "text"}]
        })));
        assert!(
            matches!(&events[0], WebhookEvent::Ignored { reason } if reason.contains("from_user_id"))
        );
    }

    #[test]
    fn system_messages_never_open_and_may_name_only_ids() {
        let message = inbound_of(envelope(json!({
            "metadata": {"display_phone_number": "15550001111"},
            "messages": [{"id": "wamid.S", "timestamp": "1700000000", "type": "system",
                          "system": {"body": "User changed from CO.1 to MX.2", "user_id": "MX.2",
                                     "previous_user_id": "CO.1", "type": "user_changed_user_id"}}]
        })));
        assert_eq!(message.kind, InboundKind::System);
        assert!(!message.opens_window);
        assert_eq!(
            message.sender.user_id.as_ref().map(Bsuid::as_str),
            Some("CO.1")
        );
        let InboundContent::System(change) = &message.content else {
            panic!()
        };
        assert!(change.is_user_id_change());
        assert_eq!(change.new_user_id.as_ref().map(Bsuid::as_str), Some("MX.2"));
    }

    fn calls(call: Value) -> Vec<WebhookEvent> {
        parse(
            json!({"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "calls", "value": {
                "metadata": {"display_phone_number": "15550001111"},
                "contacts": [{"profile": {"name": "Jane"}, "wa_id": "254712345678", "user_id": "KE.77"}],
                "calls": [call]
            }}]}]}),
        )
    }

    fn call_of(call: Value) -> (InboundMessage, content::CallEvent) {
        let WebhookEvent::Inbound(message) = calls(call).remove(0) else {
            panic!()
        };
        let InboundContent::Call(details) = message.content.clone() else {
            panic!()
        };
        (*message, details)
    }

    #[test]
    fn a_users_call_opens_the_window_at_its_time() {
        let (message, call) = call_of(
            json!({"id": "wacid.1", "from": "254712345678", "to": "15550001111",
            "event": "connect", "timestamp": "1700000000", "direction": "USER_INITIATED",
            "session": {"sdp_type": "offer", "sdp": "..."}}),
        );
        assert_eq!(message.kind, InboundKind::Call);
        assert!(message.opens_window);
        assert_eq!(message.conversation(), Some(conversation()));
        assert_eq!(
            message.sender.user_id.as_ref().map(Bsuid::as_str),
            Some("KE.77")
        );
        assert_eq!(message.profile_name.as_deref(), Some("Jane"));
        assert_eq!(message.message_id, None);
        assert_eq!(
            message.inbound_time(),
            DateTime::from_timestamp(1_700_000_000, 0).unwrap()
        );
        assert_eq!(
            (call.event, call.direction),
            (CallEventKind::Connect, Some(CallDirection::UserInitiated))
        );
        assert_eq!(call.call_id.as_deref(), Some("wacid.1"));
        // Without `direction`, the business's side tells it.
        let (_, call) = call_of(
            json!({"id": "wacid.1", "from": "254712345678", "to": "15550001111", "event": "connect"}),
        );
        assert_eq!(call.direction, Some(CallDirection::UserInitiated));
        // An unanswered user call: opens by default, not when configured so.
        let unanswered = json!({"id": "wacid.2", "from": "254712345678", "to": "15550001111", "event": "terminate",
            "direction": "USER_INITIATED", "status": "FAILED", "timestamp": "1700000100"});
        assert!(call_of(unanswered.clone()).0.opens_window);
        let strict = WebhookParser::default().with_unanswered_user_calls_opening(false);
        let body = json!({"entry": [{"changes": [{"field": "calls", "value": {
            "metadata": {"display_phone_number": "15550001111"}, "calls": [unanswered]}}]}]});
        let WebhookEvent::Inbound(message) = strict
            .parse(body.to_string().as_bytes(), received())
            .unwrap()
            .remove(0)
        else {
            panic!()
        };
        assert!(!message.opens_window);
    }

    #[test]
    fn a_business_call_opens_the_window_only_once_accepted() {
        let (connect, call) = call_of(
            json!({"id": "wacid.3", "from": "15550001111", "to": "254712345678",
            "event": "connect", "timestamp": "1700000000", "direction": "BUSINESS_INITIATED"}),
        );
        assert_eq!(call.direction, Some(CallDirection::BusinessInitiated));
        assert_eq!(connect.sender.phone, conversation().phone());
        assert!(!connect.opens_window);
        let (completed, call) = call_of(
            json!({"id": "wacid.3", "from": "15550001111", "to": "254712345678",
            "event": "terminate", "timestamp": "1700000200", "direction": "BUSINESS_INITIATED",
            "status": "COMPLETED", "start_time": "1700000010", "end_time": "1700000130", "duration": 120}),
        );
        assert_eq!(call.answered(), Some(true));
        assert!(completed.opens_window);
        // Counted from when the call was answered.
        assert_eq!(
            completed.inbound_time(),
            DateTime::from_timestamp(1_700_000_010, 0).unwrap()
        );
        let (missed, _) = call_of(
            json!({"id": "wacid.4", "from": "15550001111", "to": "254712345678",
            "event": "terminate", "direction": "BUSINESS_INITIATED", "status": "FAILED"}),
        );
        assert!(!missed.opens_window);
        // Call statuses of a business call: ACCEPTED opens, RINGING and REJECTED do not.
        for (status, opens) in [("RINGING", false), ("ACCEPTED", true), ("REJECTED", false)] {
            let events = parse(json!({"entry": [{"changes": [{"field": "calls", "value": {
                "metadata": {"display_phone_number": "15550001111"},
                "statuses": [{"id": "wacid.3", "timestamp": "1700000005", "type": "call", "status": status,
                              "recipient_id": "254712345678"}]}}]}]}));
            let WebhookEvent::Inbound(message) = &events[0] else {
                panic!("{events:?}")
            };
            assert_eq!(
                (message.kind, message.opens_window),
                (InboundKind::Call, opens),
                "{status}"
            );
            assert_eq!(message.conversation(), Some(conversation()));
        }
    }

    #[test]
    fn statuses_name_their_recipient_however_addressed() {
        let events = parse(envelope(json!({
            "metadata": {"display_phone_number": "15550001111"},
            "statuses": [
                {"id": "wamid.1", "status": "delivered", "timestamp": "1700000000", "recipient_id": "254712345678",
                 "recipient_user_id": "KE.77", "recipient_parent_user_id": "KE.ENT.9"},
                {"id": "wamid.2", "status": "read", "timestamp": "1700000000", "recipient_user_id": "KE.77"},
                {"id": "wamid.3", "status": "sent", "timestamp": "1700000000", "recipient_id": "Y2FwaV9ncm91cA",
                 "recipient_type": "group", "recipient_participant_id": "254712345678"},
                {"id": "wamid.4", "status": "failed", "timestamp": "1700000000", "recipient_id": "Y2FwaV9ncm91cA",
                 "recipient_type": "group", "errors": [{"code": 131047, "title": "Re-engagement message"}]},
                {"id": "wamid.5", "status": "sent", "recipient_id": "<WHATSAPP_USER_PHONE_NUMBER>"}
            ]
        })));
        let recipient = |event: &WebhookEvent| match event {
            WebhookEvent::Status(status) => status.recipient.clone(),
            WebhookEvent::WindowClosed { recipient, .. } => recipient.clone(),
            other => panic!("{other:?}"),
        };
        let first = recipient(&events[0]);
        assert_eq!(first.user_id.as_ref().map(Bsuid::as_str), Some("KE.77"));
        assert_eq!(
            first.parent_user_id.as_ref().map(Bsuid::as_str),
            Some("KE.ENT.9")
        );
        assert_eq!(events[0].conversation(), Some(conversation()));
        assert_eq!(recipient(&events[1]).phone, None);
        assert_eq!(events[1].conversation(), None);
        for group_status in &events[2..4] {
            let r = recipient(group_status);
            assert_eq!(
                r.group.as_ref().map(GroupId::as_str),
                Some("Y2FwaV9ncm91cA")
            );
            assert_eq!((r.phone, group_status.conversation()), (None, None));
        }
        assert!(matches!(
            events[3],
            WebhookEvent::WindowClosed {
                code: 131047,
                conversation: None,
                ..
            }
        ));
        // A placeholder recipient: still a status, with no recipient.
        assert!(
            matches!(&events[4], WebhookEvent::Status(s) if s.recipient.phone.is_none() && s.recipient.business.is_some())
        );
        // A placeholder business: still a status, with no business.
        let events = parse(envelope(json!({
            "metadata": {"display_phone_number": "<BUSINESS_DISPLAY_PHONE_NUMBER>"},
            "statuses": [{"id": "wamid.6", "status": "sent", "recipient_id": "254712345678"}]
        })));
        assert!(
            matches!(&events[0], WebhookEvent::Status(s) if s.recipient.business.is_none() && s.recipient.phone.is_some() && s.conversation.is_none())
        );
    }

    #[test]
    fn changes_about_something_else_are_one_ignored_event_each() {
        let events = parse(
            json!({"object": "whatsapp_business_account", "entry": [{"changes": [
                {"field": "smb_message_echoes", "value": {"metadata": {"display_phone_number": "15550001111"},
                 "message_echoes": [{"from": "15550001111", "to": "254712345678", "id": "wamid.E", "type": "text"}]}},
                {"field": "account_update", "value": {"event": "ACCOUNT_DELETED"}},
                {"field": "messages", "value": {"metadata": {"display_phone_number": "15550001111"}}}
            ]}]}),
        );
        assert_eq!(events.len(), 3);
        let reasons: Vec<&str> = events
            .iter()
            .map(|e| match e {
                WebhookEvent::Ignored { reason } => reason.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(reasons[0].contains("smb_message_echoes"));
        assert!(reasons[1].contains("account_update"));
        assert!(reasons[2].contains("none of"));
    }

    /// The status `pricing` object and `conversation.expiration_timestamp`, shaped as in
    /// Meta's status webhook reference (whatsapp/webhooks/reference/messages/status, read
    /// 2026-12-01): category, type and the deprecated billable flag are kept.
    #[test]
    fn status_pricing_and_the_free_entry_point_expiry_are_read() {
        let events = parse(json!({
            "entry": [{"changes": [{"field": "messages", "value": {
                "metadata": {"display_phone_number": "15550001111"},
                "statuses": [{
                    "id": "wamid.FEP", "status": "sent", "timestamp": "1764583200",
                    "recipient_id": "254712345678",
                    "conversation": {"id": "CONV", "expiration_timestamp": "1764842400"},
                    "pricing": {"billable": false, "pricing_model": "PMP",
                                "category": "MARKETING", "type": "free_entry_point"}
                }, {
                    "id": "wamid.R", "status": "delivered", "timestamp": "1764583200",
                    "recipient_id": "254712345678"
                }]
            }}]}]
        }));
        let WebhookEvent::Status(first) = &events[0] else {
            panic!("not a status: {:?}", events[0])
        };
        let pricing = first.pricing.as_ref().unwrap();
        assert_eq!(pricing.category, "marketing");
        assert!(pricing.is_free_entry_point());
        assert_eq!(pricing.billable, Some(false));
        assert_eq!(
            first.conversation_expires_at,
            DateTime::from_timestamp(1_764_842_400, 0)
        );
        let WebhookEvent::Status(second) = &events[1] else {
            panic!("not a status")
        };
        assert_eq!(
            (&second.pricing, second.conversation_expires_at),
            (&None, None)
        );
    }

    #[test]
    fn user_preferences_stop_and_unknown_values() {
        let body = |value: &str, category: &str| {
            json!({
                "entry": [{"changes": [{"field": "user_preferences", "value": {
                    "metadata": {"display_phone_number": "15550001111"},
                    "user_preferences": [{"wa_id": "254712345678", "category": category,
                                          "value": value, "timestamp": 1764583200}]
                }}]}]
            })
        };
        let events = parse(body("stop", "marketing_messages"));
        assert!(matches!(
            events[0],
            WebhookEvent::MarketingPreference {
                opted_out: true,
                ..
            }
        ));
        // A user with a username: the user id alone names them.
        let mut by_user = body("stop", "marketing_messages");
        let item = &mut by_user["entry"][0]["changes"][0]["value"]["user_preferences"][0];
        item.as_object_mut().map(|o| o.remove("wa_id"));
        item["user_id"] = "US.13491208655302741918".into();
        let events = parse(by_user.clone());
        let WebhookEvent::MarketingPreference { customer, .. } = &events[0] else {
            panic!("not a marketing preference: {:?}", events[0])
        };
        assert_eq!(
            (
                customer.phone,
                customer.user_id.as_ref().map(|u| u.to_string())
            ),
            (None, Some("US.13491208655302741918".to_owned()))
        );
        assert_eq!(events[0].conversation(), None);
        by_user["entry"][0]["changes"][0]["value"]["user_preferences"][0]
            .as_object_mut()
            .map(|o| o.remove("user_id"));
        for (value, category, why) in [
            ("pause", "marketing_messages", "neither stop"),
            ("stop", "other", "not marketing_messages"),
        ] {
            let events = parse(body(value, category));
            let WebhookEvent::Ignored { reason } = &events[0] else {
                panic!("not ignored: {:?}", events[0])
            };
            assert!(reason.contains(why), "{reason}");
        }
        let WebhookEvent::Ignored { reason } = &parse(by_user)[0] else {
            panic!("a preference naming nobody is ignored")
        };
        assert!(reason.contains("neither wa_id nor user_id"), "{reason}");
    }
}
