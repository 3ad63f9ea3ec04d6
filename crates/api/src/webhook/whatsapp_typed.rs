//! WhatsApp's webhook read straight into the event types through typed serde structs,
//! strings borrowed from the body (no `serde_json::Value` tree: no map, key or string
//! allocated for fields no event keeps), for the shape almost every webhook about
//! customers' messages has: `messages` changes whose messages are text, with their
//! `metadata` and `contacts`.
//!
//! Anything else gives `None`, and the body is read by the `serde_json::Value` walk
//! ([`super::whatsapp`]), which reads every shape: another field, kind or item list
//! (statuses, calls, preferences), a `context` or `referral`, a field this reader does
//! not know, a duplicated key, a value of an unexpected JSON type, malformed JSON. So a
//! body either reads here exactly as the walk reads it, or goes to the walk.
//!
//! Exactly as the walk: every struct is read only from a JSON object ([`Object`]: serde
//! would take an array's items as the fields in order) and refuses unknown fields, and
//! every field the events do not use is still read as a [`Scalar`], which reads nested
//! values whole and strings as strings, as `serde_json::Value` does (never skipped
//! unchecked: an ignored value would let through a lone surrogate escape or a number out
//! of range that the walk refuses). The fields go to the same readers as the walk's ([`Leaf`]: `phone_of`,
//! `timestamp_of`, `bsuid_of`, [`identify`], [`InboundFields::into_message`]).

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Utc};
use lipachat_session::{Bsuid, PhoneNumber, PhoneParser};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use super::content::bsuid_of;
use super::whatsapp::{ContactEntry, InboundFields, business_number, identify, ignored};
use super::{
    InboundContent, InboundKind, Leaf, WebhookEvent, WebhookParser, phone_of, timestamp_of,
};

/// Reads `body` when it has the shape this reader covers; `None` otherwise (then the
/// `serde_json::Value` walk reads it).
pub(super) fn parse(
    parser: &WebhookParser,
    body: &[u8],
    received_at: DateTime<Utc>,
) -> Option<Vec<WebhookEvent>> {
    let Object(envelope): Object<Envelope<'_>> = serde_json::from_slice(body).ok()?;
    let mut events = Vec::new();
    for Object(entry) in &envelope.entry {
        for Object(change) in &entry.changes {
            change.events(parser, received_at, &mut events)?;
        }
    }
    Some(events)
}

/// A JSON value read where an event takes a string or a number: any other value (`null`,
/// a boolean, an array, an object) is read whole, as `serde_json::Value` reads it, and
/// kept as [`Scalar::Other`].
#[derive(Debug)]
enum Scalar<'a> {
    /// A string, borrowed from the body unless it holds escapes.
    Text(Cow<'a, str>),
    /// A number.
    Number(serde_json::Number),
    /// Anything else.
    Other,
}

impl Scalar<'_> {
    fn leaf(&self) -> Leaf<'_> {
        match self {
            Self::Text(text) => Leaf::Text(text),
            Self::Number(number) => Leaf::Number(number),
            Self::Other => Leaf::Other,
        }
    }
}

/// An optional field as the readers see it: absent (or `null`) is [`Leaf::Other`].
fn leaf<'v>(field: &'v Option<Scalar<'_>>) -> Leaf<'v> {
    field.as_ref().map_or(Leaf::Other, Scalar::leaf)
}

/// A struct read only from a JSON object. (Serde reads a struct from an array too, its
/// items taken as the fields in order; the walk takes an array where an object belongs
/// for no object at all, so such a body must go to it.)
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor(std::marker::PhantomData))
    }
}

struct ObjectVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = Object<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Object)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Text(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Text(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Text(Cow::Owned(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::Number(v.into()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // As `serde_json::Value` does: a float that is no JSON number reads as `null`.
        Ok(serde_json::Number::from_f64(v).map_or(Scalar::Other, Scalar::Number))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        Scalar::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<Scalar<'de>>()?.is_some() {}
        Ok(Scalar::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut first = true;
        while let Some(key) = map.next_key::<Scalar<'de>>()? {
            if first
                && matches!(&key, Scalar::Text(key) if SERDE_JSON_PRIVATE_KEYS.contains(&key.as_ref()))
            {
                return Err(de::Error::custom(
                    "a map serde_json's Value reads as another value (a number or raw JSON): left to the walk",
                ));
            }
            first = false;
            map.next_value::<Scalar<'de>>()?;
        }
        Ok(Scalar::Other)
    }
}

/// The one key of the map serde_json hands a number over as when it is built with its
/// `arbitrary_precision` feature (which any crate in a user's build may turn on, for the
/// whole build). The walk's `serde_json::Value` reads such a number as a number.
const ARBITRARY_PRECISION_NUMBER: &str = "$serde_json::private::Number";

/// The first keys of a map serde_json's `Value` reads as something else: a number
/// ([`ARBITRARY_PRECISION_NUMBER`]), and under its `raw_value` feature (which this crate
/// turns on) the raw JSON held in the string after `$serde_json::private::RawValue`, even
/// when the map is in the body as sent. This reader would take such a map for some other
/// value, so a body holding one is left to the walk.
const SERDE_JSON_PRIVATE_KEYS: [&str; 2] =
    [ARBITRARY_PRECISION_NUMBER, "$serde_json::private::RawValue"];

/// `{"object", "entry": [...]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    #[serde(borrow, rename = "object")]
    _object: Option<Scalar<'a>>,
    #[serde(borrow)]
    entry: Vec<Object<Entry<'a>>>,
}

/// `{"id", "time", "changes": [...]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry<'a> {
    #[serde(borrow, rename = "id")]
    _id: Option<Scalar<'a>>,
    #[serde(borrow, rename = "time")]
    _time: Option<Scalar<'a>>,
    #[serde(borrow)]
    changes: Vec<Object<Change<'a>>>,
}

/// `{"field", "value"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Change<'a> {
    #[serde(borrow)]
    field: Option<Scalar<'a>>,
    #[serde(borrow)]
    value: Object<ChangeValue<'a>>,
}

/// A `messages` change's value holding messages (no statuses, calls or preferences).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeValue<'a> {
    #[serde(borrow, rename = "messaging_product")]
    _messaging_product: Option<Scalar<'a>>,
    #[serde(borrow)]
    metadata: Option<Object<Metadata<'a>>>,
    #[serde(borrow)]
    contacts: Option<Vec<Object<Contact<'a>>>>,
    #[serde(borrow)]
    messages: Vec<Object<Message<'a>>>,
}

/// `value.metadata`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata<'a> {
    #[serde(borrow)]
    display_phone_number: Option<Scalar<'a>>,
    #[serde(borrow, rename = "phone_number_id")]
    _phone_number_id: Option<Scalar<'a>>,
}

/// An entry of `value.contacts[]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Contact<'a> {
    #[serde(borrow)]
    profile: Option<Object<Profile<'a>>>,
    #[serde(borrow)]
    wa_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    user_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    parent_user_id: Option<Scalar<'a>>,
}

/// `contacts[].profile`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Profile<'a> {
    #[serde(borrow)]
    name: Option<Scalar<'a>>,
    #[serde(borrow)]
    username: Option<Scalar<'a>>,
}

impl ContactEntry for Contact<'_> {
    fn wa_id(&self) -> Option<PhoneNumber> {
        phone_of(&PhoneParser::international(), leaf(&self.wa_id), "wa_id")
            .ok()
            .flatten()
    }

    fn user_id(&self) -> Option<Bsuid> {
        bsuid_of(leaf(&self.user_id))
    }

    fn parent_user_id(&self) -> Option<Bsuid> {
        bsuid_of(leaf(&self.parent_user_id))
    }

    fn profile(&self, field: &str) -> Option<String> {
        let Object(profile) = self.profile.as_ref()?;
        let value = match field {
            "name" => &profile.name,
            "username" => &profile.username,
            _ => return None,
        };
        leaf(value).short_text()
    }
}

/// An item of `value.messages[]` this reader covers: a text message without `context` or
/// `referral`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Message<'a> {
    #[serde(borrow)]
    from: Option<Scalar<'a>>,
    #[serde(borrow)]
    from_user_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    from_parent_user_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    id: Option<Scalar<'a>>,
    #[serde(borrow)]
    timestamp: Option<Scalar<'a>>,
    #[serde(borrow)]
    group_id: Option<Scalar<'a>>,
    #[serde(borrow, rename = "type")]
    wire_type: Scalar<'a>,
    #[serde(borrow)]
    text: Object<TextBody<'a>>,
}

/// A text message's `text` object.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TextBody<'a> {
    #[serde(borrow)]
    body: Option<Scalar<'a>>,
}

impl Change<'_> {
    /// Appends this change's events; `None` when it is not a `messages` change of text
    /// messages.
    fn events(
        &self,
        parser: &WebhookParser,
        received_at: DateTime<Utc>,
        events: &mut Vec<WebhookEvent>,
    ) -> Option<()> {
        match &self.field {
            None => {}
            Some(Scalar::Text(field)) if field == "messages" => {}
            Some(_) => return None,
        }
        let Object(value) = &self.value;
        // Every message is a text message, or the walk reads the body.
        for Object(message) in &value.messages {
            let Scalar::Text(wire_type) = &message.wire_type else {
                return None;
            };
            if InboundKind::from_wire(wire_type) != InboundKind::Text {
                return None;
            }
        }
        let business = business_number(
            parser,
            value
                .metadata
                .as_ref()
                .map(|Object(metadata)| leaf(&metadata.display_phone_number)),
        );
        let contacts: Vec<&Contact<'_>> = value
            .contacts
            .iter()
            .flatten()
            .map(|Object(contact)| contact)
            .collect();
        for Object(message) in &value.messages {
            let inbound = match &business {
                Ok(Some(business)) => message.inbound(*business, &contacts, received_at),
                Ok(None) => Err("a message without the business number (metadata)".to_owned()),
                Err(reason) => Err(reason.clone()),
            };
            events.push(inbound.map_or_else(ignored, |fields| {
                fields
                    .into_message(parser, received_at)
                    .map_or_else(ignored, |m| WebhookEvent::Inbound(Box::new(m)))
            }));
        }
        Some(())
    }
}

impl Message<'_> {
    /// What the message says, from a business number (for the readers' checks).
    fn inbound(
        &self,
        business: PhoneNumber,
        contacts: &[&Contact<'_>],
        received_at: DateTime<Utc>,
    ) -> Result<InboundFields, String> {
        let (sender, profile_name) = identify(
            phone_of(&PhoneParser::international(), leaf(&self.from), "from"),
            bsuid_of(leaf(&self.from_user_id)),
            bsuid_of(leaf(&self.from_parent_user_id)),
            contacts,
        )?;
        Ok(InboundFields {
            business,
            sender,
            profile_name,
            kind: InboundKind::Text,
            // Kept as sent; a body that is not a string is an empty text, as in the walk.
            content: InboundContent::Text {
                body: match &self.text.0.body {
                    Some(Scalar::Text(body)) => body.clone().into_owned(),
                    _ => String::new(),
                },
            },
            group_id: leaf(&self.group_id).text(),
            message_id: leaf(&self.id).short_text(),
            context: None,
            referral: None,
            sent_at: timestamp_of(leaf(&self.timestamp), received_at),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use serde_json::Value;

    use super::*;
    use crate::webhook::WebhookError;

    fn received() -> DateTime<Utc> {
        "2026-11-23T10:00:00Z".parse().unwrap()
    }

    /// The reader this module stands in front of, as `WebhookParser::parse` was before
    /// it: the whole body into a `serde_json::Value`, then the walk.
    fn walk(parser: &WebhookParser, body: &[u8]) -> Result<Vec<WebhookEvent>, WebhookError> {
        if body.trim_ascii().is_empty() {
            return Err(WebhookError::Empty);
        }
        let value: Value = serde_json::from_slice(body).map_err(|e| WebhookError::NotJson {
            detail: e.to_string(),
        })?;
        parser.parse_value(&value, received())
    }

    /// A number as serde_json hands it over under `arbitrary_precision` (a one-entry map)
    /// is no value this reader reads: the read fails and the body goes to the walk,
    /// which reads it as a number. Any other map is read whole as some other value.
    #[test]
    fn a_number_under_arbitrary_precision_is_left_to_the_walk() {
        use serde::de::value::{Error, MapDeserializer};
        let number = MapDeserializer::<_, Error>::new(std::iter::once((
            ARBITRARY_PRECISION_NUMBER,
            "1764583200",
        )));
        assert!(Scalar::deserialize(number).is_err());
        let other = MapDeserializer::<_, Error>::new(
            [("amount", "1764583200"), (ARBITRARY_PRECISION_NUMBER, "1")].into_iter(),
        );
        assert!(matches!(Scalar::deserialize(other), Ok(Scalar::Other)));
    }

    /// The body the benchmark posts: one text message with its contact.
    const TEXT_WEBHOOK: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"254110090747","phone_number_id":"1"},"contacts":[{"profile":{"name":"Bench"},"wa_id":"254700000001"}],"messages":[{"from":"254700000001","id":"wamid.BENCH1","timestamp":"1764583200","type":"text","text":{"body":"hello"}}]}}]}]}"#;

    #[test]
    fn a_text_webhook_is_read_here_as_the_walk_reads_it() {
        let parser = WebhookParser::default();
        let direct = parse(&parser, TEXT_WEBHOOK.as_bytes(), received());
        assert!(
            direct.is_some(),
            "the common shape is read without the walk"
        );
        let events = direct.unwrap();
        assert_eq!(Ok(events.clone()), walk(&parser, TEXT_WEBHOOK.as_bytes()));
        let WebhookEvent::Inbound(message) = &events[0] else {
            panic!("not inbound: {events:?}")
        };
        assert_eq!(message.profile_name.as_deref(), Some("Bench"));
        assert_eq!(message.message_id.as_deref(), Some("wamid.BENCH1"));
        assert_eq!(
            message.content,
            InboundContent::Text {
                body: "hello".into()
            }
        );
    }

    /// Shapes this reader leaves to the walk, each with the walk's own answer (an event, an
    /// ignored item, or a typed error).
    #[test]
    fn other_shapes_and_anything_doubtful_go_to_the_walk() {
        let parser = WebhookParser::default();
        let cases = [
            // Statuses, a reply's context, another kind, another field.
            TEXT_WEBHOOK.replace(r#""messages":[{"#, r#""statuses":[{"status":"read","#),
            TEXT_WEBHOOK.replace(r#""type":"text""#, r#""type":"text","context":{"id":"wamid.0"}"#),
            TEXT_WEBHOOK.replace(r#""type":"text""#, r#""type":"reaction""#),
            TEXT_WEBHOOK.replace(r#""field":"messages""#, r#""field":"calls""#),
            // A field it does not know; a duplicated key (the walk keeps the last).
            TEXT_WEBHOOK.replace(r#""type":"text""#, r#""type":"text","errors":[]"#),
            TEXT_WEBHOOK.replace(r#""from":"254700000001""#, r#""from":"1","from":"254700000001""#),
            // Values the walk refuses in fields no event reads: a lone surrogate, a number
            // out of range.
            TEXT_WEBHOOK.replace(r#""id":"1""#, r#""id":"\ud800""#),
            TEXT_WEBHOOK.replace(r#""phone_number_id":"1""#, r#""phone_number_id":1e999"#),
            // Arrays where objects belong (serde would read a struct from an array, by
            // position): the top level as an array is a LipaChat batch to the walk, a
            // `metadata` array is no metadata, a message array is no message.
            format!(r#"["whatsapp_business_account",{}]"#, &TEXT_WEBHOOK[TEXT_WEBHOOK.find(r#"[{"id""#).unwrap()..TEXT_WEBHOOK.len() - 1]),
            TEXT_WEBHOOK.replace(r#"{"display_phone_number":"254110090747","phone_number_id":"1"}"#, r#"["254110090747","1"]"#),
            TEXT_WEBHOOK.replace(r#"{"profile":{"name":"Bench"},"wa_id":"254700000001"}"#, r#"[{"name":"Bench"},"254700000001"]"#),
            TEXT_WEBHOOK.replace(r#"{"body":"hello"}"#, r#"["hello"]"#),
            // Not JSON; a LipaChat body.
            TEXT_WEBHOOK[..TEXT_WEBHOOK.len() - 1].to_owned(),
            r#"{"messageId":"m","from":"254700000001","to":"254110090747","type":"TEXT","text":"hi"}"#.to_owned(),
        ];
        for body in cases {
            assert!(
                parse(&parser, body.as_bytes(), received()).is_none(),
                "read here: {body}"
            );
            assert_eq!(
                parser.parse(body.as_bytes(), received()),
                walk(&parser, body.as_bytes()),
                "{body}"
            );
        }
        // The two refused values are refused as before.
        for bad in [r#""\ud800""#, "1e999"] {
            let body = TEXT_WEBHOOK.replace(r#""id":"1""#, &format!(r#""id":{bad}"#));
            assert!(matches!(
                parser.parse(body.as_bytes(), received()),
                Err(WebhookError::NotJson { .. })
            ));
        }
    }

    /// A JSON text for a phone field: valid, formatted, placeholder, a float as text or
    /// number, a negative, another type, an escaped string.
    fn phone_field() -> impl Strategy<Value = &'static str> {
        let good = prop::sample::select(vec![
            r#""254700000001""#,
            r#""254110090747""#,
            "254700000002",
        ]);
        prop_oneof![2 => good, 1 => prop::sample::select(vec![
            r#""254700000001""#,
            r#""254700000002""#,
            r#""+254 700 000 001""#,
            r#"" 254110090747 ""#,
            r#""254110090747""#,
            r#""254700000001.0""#,
            r#""<WHATSAPP_USER_PHONE_NUMBER>""#,
            r#""""#,
            r#""\u0032\u0035\u0034700000001""#,
            "254700000001",
            "254700000001.0",
            "2.54700000001e11",
            "-254700000001",
            "null",
            "true",
            "[]",
            r#"{"a":1}"#,
        ])]
    }

    fn user_id_field() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            r#""KE.77""#,
            r#""US.13491208655302741918""#,
            r#""not an id""#,
            r#""""#,
            "77",
            "null",
        ])
    }

    fn text_field() -> impl Strategy<Value = &'static str> {
        // Longer than an event keeps (200 characters).
        let long: &'static str = Box::leak(format!(r#""{}""#, "é".repeat(250)).into_boxed_str());
        prop::sample::select(vec![
            long,
            r#""wamid.A""#,
            r#""wamid.B""#,
            r#"" padded ""#,
            r#""""#,
            r#""esc\"aped\n\u00e9\ud83d\ude00""#,
            "12345",
            "1.5",
            "1e3",
            "false",
            "null",
            "[1,2]",
        ])
    }

    fn timestamp_field() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            r#""1764583200""#,
            "1764583200",
            "1764583200000",
            "1.7645832e9",
            r#""0""#,
            "-5",
            r#""soon""#,
            r#""2026-11-23T12:00:00+03:00""#,
            r#""2026-11-23T09:00:00""#,
            "99999999999999999999",
            "null",
        ])
    }

    /// `"name":value` when the field is present (with probability `present`).
    fn optional(
        name: &'static str,
        present: f64,
        value: impl Strategy<Value = &'static str> + 'static,
    ) -> BoxedStrategy<String> {
        prop::option::weighted(present, value)
            .prop_map(move |v| v.map_or_else(String::new, |v| format!(r#""{name}":{v},"#)))
            .boxed()
    }

    fn contact() -> impl Strategy<Value = String> {
        (
            optional("wa_id", 0.5, phone_field()),
            optional("user_id", 0.5, user_id_field()),
            optional("parent_user_id", 0.5, user_id_field()),
            prop::option::of((
                optional("name", 0.5, text_field()),
                optional("username", 0.5, text_field()),
            )),
            mostly("", vec![r#""extra":1,"#]),
            prop::bool::weighted(0.05),
        )
            .prop_map(|(wa_id, user_id, parent, profile, extra, as_array)| {
                if as_array {
                    // A contact's fields in order, as an array.
                    return r#"[{"name":"Jane"},"254700000001"]"#.to_owned();
                }
                let profile = profile.map_or_else(String::new, |(name, username)| {
                    format!(
                        r#""profile":{{{}}},"#,
                        trim_comma(&format!("{name}{username}"))
                    )
                });
                format!(
                    "{{{}}}",
                    trim_comma(&format!("{wa_id}{user_id}{parent}{profile}{extra}"))
                )
            })
    }

    fn message() -> impl Strategy<Value = String> {
        (
            (
                optional("from", 0.9, phone_field()),
                optional("from_user_id", 0.5, user_id_field()),
                optional("from_parent_user_id", 0.5, user_id_field()),
                optional("id", 0.5, text_field()),
                optional("timestamp", 0.5, timestamp_field()),
                mostly(
                    "",
                    vec![
                        r#""group_id":"Y2FwaV9ncm91cA","#,
                        r#""group_id":"bad group!","#,
                        r#""group_id":7,"#,
                    ],
                ),
            ),
            mostly(
                r#""type":"text","#,
                vec![
                    r#""type":"TEXT","#,
                    r#""type":" Text ","#,
                    r#""type":"image","#,
                    r#""type":"reaction","#,
                    r#""type":7,"#,
                    "",
                ],
            ),
            mostly(
                r#""text":{"body":"hello"},"#,
                vec![
                    r#""text":{"body":" esc\"aped \ud83d\ude00 "},"#,
                    r#""text":{"body":5},"#,
                    r#""text":{},"#,
                    r#""text":"plain","#,
                    r#""text":null,"#,
                    r#""text":["hello"],"#,
                    "",
                    r#""body":"top","#,
                ],
            ),
            mostly(
                "",
                vec![
                    r#""context":{"id":"wamid.0","from":"254700000001"},"#,
                    r#""referral":{"source_url":"https://x"},"#,
                    r#""unknown":[{"a":null}],"#,
                ],
            ),
        )
            .prop_map(|((from, uid, parent, id, ts, group), kind, text, extra)| {
                format!(
                    "{{{}}}",
                    trim_comma(&format!(
                        "{from}{uid}{parent}{id}{ts}{group}{kind}{text}{extra}"
                    ))
                )
            })
    }

    fn change() -> impl Strategy<Value = String> {
        (
            mostly(r#""field":"messages","#, vec![
                "",
                r#""field":"calls","#,
                r#""field":"account_update","#,
                r#""field":3,"#,
            ]),
            optional("display_phone_number", 0.9, phone_field()),
            prop::sample::select(vec!["", r#""phone_number_id":"1","#]),
            prop::option::weighted(0.8, prop::bool::weighted(0.95)),
            prop::option::of(prop::collection::vec(contact(), 0..3)),
            prop::option::weighted(0.9, prop::collection::vec(message(), 0..3)),
            mostly("", vec![
                r#""statuses":[{"id":"wamid.A","status":"read","recipient_id":"254700000001"}],"#,
                r#""messaging_product":"whatsapp","#,
            ]),
        )
            .prop_map(|(field, display, phone_id, has_metadata, contacts, messages, extra)| {
                let metadata = match has_metadata {
                    Some(true) => format!(
                        r#""metadata":{{{}}},"#,
                        trim_comma(&format!("{display}{phone_id}"))
                    ),
                    // The metadata's fields in order, as an array.
                    Some(false) => r#""metadata":["254110090747","1"],"#.to_owned(),
                    None => String::new(),
                };
                let list = |name: &str, items: Option<Vec<String>>| {
                    items.map_or_else(String::new, |items| {
                        format!(r#""{name}":[{}],"#, items.join(","))
                    })
                };
                let value = format!(
                    "{{{}}}",
                    trim_comma(&format!(
                        "{metadata}{}{}{extra}",
                        list("contacts", contacts),
                        list("messages", messages)
                    ))
                );
                format!(r#"{{{field}"value":{value}}}"#)
            })
    }

    fn body() -> impl Strategy<Value = String> {
        (
            prop::sample::select(vec![r#""object":"whatsapp_business_account","#, ""]),
            prop::collection::vec(
                (
                    prop::sample::select(vec![r#""id":"E","#, r#""time":1764583200,"#, ""]),
                    prop::collection::vec(change(), 1..3),
                ),
                0..3,
            ),
            prop::bool::weighted(0.05),
        )
            .prop_map(|(object, entries, as_array)| {
                let entries: Vec<String> = entries
                    .into_iter()
                    .map(|(id, changes)| format!(r#"{{{id}"changes":[{}]}}"#, changes.join(",")))
                    .collect();
                if as_array {
                    // The envelope's fields in order, as an array.
                    format!(r#"["whatsapp_business_account",[{}]]"#, entries.join(","))
                } else {
                    format!(r#"{{{object}"entry":[{}]}}"#, entries.join(","))
                }
            })
    }

    /// `good` six times in seven, else one of `others`.
    fn mostly(
        good: &'static str,
        others: Vec<&'static str>,
    ) -> impl Strategy<Value = &'static str> {
        prop_oneof![6 => Just(good), 1 => prop::sample::select(others)]
    }

    fn trim_comma(fields: &str) -> &str {
        fields.strip_suffix(',').unwrap_or(fields)
    }

    /// Damages a well-formed body: cut short, a byte replaced, a key given twice, a value
    /// the walk refuses (a lone surrogate, a number out of range, invalid UTF-8).
    fn damage(body: &str, how: u8, at: usize) -> Vec<u8> {
        let mut bytes = body.as_bytes().to_vec();
        let at = at % bytes.len().max(1);
        match how {
            0 => bytes.truncate(at),
            1 => bytes[at] = b'"',
            2 => bytes[at] = b'}',
            3 => bytes[at] = 0xff,
            4 => {
                return body
                    .replacen(r#""type":"#, r#""type":"text","type":"#, 1)
                    .into_bytes();
            }
            5 => {
                return body
                    .replacen(r#""id":"E""#, r#""id":"\udc00""#, 1)
                    .into_bytes();
            }
            6 => {
                return body
                    .replacen(r#""phone_number_id":"1""#, r#""phone_number_id":-1e400"#, 1)
                    .into_bytes();
            }
            7 => {
                return body
                    .replacen(r#""time":1764583200"#, r#""time":"\ud800x""#, 1)
                    .into_bytes();
            }
            _ => {}
        }
        bytes
    }

    fn parser() -> impl Strategy<Value = WebhookParser> {
        prop::sample::select(vec![
            WebhookParser::default(),
            WebhookParser::default().with_business_number("254110090747".parse().unwrap()),
            WebhookParser::default().with_opening(InboundKind::Text, false),
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// The parser (this reader, else the walk) and the walk alone agree on every body,
        /// well-formed or damaged: the same events, or the same error.
        #[test]
        fn the_parser_agrees_with_the_walk(
            parser in parser(),
            body in body(),
            how in 0u8..16,
            at in any::<usize>(),
        ) {
            let bytes = damage(&body, how, at);
            prop_assert_eq!(
                parser.parse(&bytes, received()),
                walk(&parser, &bytes),
                "{}", String::from_utf8_lossy(&bytes)
            );
        }
    }

    /// The bodies above reach this reader often enough for the comparison to test it: a
    /// quarter of the undamaged ones at least are read here, with events of every kind.
    #[test]
    fn the_generated_bodies_exercise_this_reader() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = (parser(), body());
        let (mut read_here, mut inbound, mut ignored_items) = (0, 0, 0);
        let total = 2000;
        for _ in 0..total {
            let (parser, body) = strategy.new_tree(&mut runner).unwrap().current();
            if let Some(events) = parse(&parser, body.as_bytes(), received()) {
                read_here += 1;
                for event in events {
                    match event {
                        WebhookEvent::Inbound(_) => inbound += 1,
                        WebhookEvent::Ignored { .. } => ignored_items += 1,
                        _ => {}
                    }
                }
            }
        }
        assert!(read_here * 4 >= total, "{read_here} of {total} read here");
        assert!(
            inbound > 200 && ignored_items > 100,
            "{read_here} read here: {inbound} inbound, {ignored_items} ignored"
        );
    }
}
