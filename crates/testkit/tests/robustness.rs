//! Whatever arrives, the stand-in answers with JSON and keeps serving; only a success
//! answer delivers anything.

mod fixture;

use std::sync::OnceLock;

use fixture::{BUSINESS, CUSTOMER, business, contact, customer, text};
use lipachat_testkit::{MessageKind, RequestOutcome, StandInGateway};
use proptest::prelude::*;
use serde_json::{Value, json};

/// One runtime and one gateway for all cases, so a crash in one case shows in the next.
struct Harness {
    runtime: tokio::runtime::Runtime,
    gateway: StandInGateway,
    client: reqwest::Client,
}

impl Harness {
    fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let gateway = runtime
            .block_on(StandInGateway::start())
            .expect("the stand-in starts");
        gateway.customer_writes(business(), customer());
        Self {
            runtime,
            gateway,
            client: reqwest::Client::new(),
        }
    }

    /// Posts raw bytes and returns the status and the answer, which must be JSON.
    fn post(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        self.runtime.block_on(async {
            let response = self
                .client
                .post(format!("{}{path}", self.gateway.base_url()))
                .header("apiKey", self.gateway.api_key())
                .header("Content-Type", content_type)
                .body(body)
                .send()
                .await
                .expect("the stand-in answers every request");
            let status = response.status().as_u16();
            let bytes = response.bytes().await.expect("a readable answer");
            let value = serde_json::from_slice(&bytes).expect("every answer is JSON");
            (status, value)
        })
    }

    /// Posts `body`, checks the answer is consistent with what the gateway recorded, and
    /// that a success delivered exactly one message.
    fn check(&self, path: &str, content_type: &str, body: Vec<u8>) -> Result<(), TestCaseError> {
        let before = self.gateway.delivered_count();
        let (status, answer) = self.post(path, content_type, body);
        let after = self.gateway.delivered_count();
        let recorded = self
            .gateway
            .requests()
            .pop()
            .expect("the request was recorded");
        prop_assert_eq!(recorded.status, status);
        let success = status == 200 && answer["status"] == "success";
        match recorded.outcome {
            RequestOutcome::Delivered => {
                prop_assert!(success);
                prop_assert_eq!(after, before + 1);
                prop_assert_eq!(answer["data"]["status"].as_str(), Some("SENT"));
            }
            RequestOutcome::Duplicate => {
                prop_assert!(success);
                prop_assert_eq!(after, before);
            }
            RequestOutcome::BadRequest(_) => {
                prop_assert_eq!(status, 400);
                prop_assert_eq!(after, before);
                prop_assert_eq!(&answer["status"], &json!(400));
            }
            RequestOutcome::NotFound => prop_assert_eq!(status, 404),
            RequestOutcome::RefusedOutsideWindow => {
                prop_assert_eq!(after, before);
                prop_assert_eq!(&answer["errors"][0]["code"], &json!(131047));
            }
            other => prop_assert!(false, "unexpected outcome {:?}", other),
        }
        Ok(())
    }
}

fn send_path() -> impl Strategy<Value = &'static str> {
    prop::sample::select(
        MessageKind::ALL
            .iter()
            .map(|k| k.path())
            .collect::<Vec<_>>(),
    )
}

fn content_type() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/octet-stream",
    ])
}

/// JSON values of any shape, small.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[0-9]{0,17}".prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z]{1,12}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A valid body for `path` with one field replaced by an arbitrary value (or removed).
fn mutated_body(path: &str, field: &str, replacement: Option<Value>, id: u64) -> Value {
    let id = format!("prop-{id}");
    let mut body = match MessageKind::from_path(path) {
        Some(MessageKind::Text) => text(&id, "hello"),
        Some(MessageKind::Template) => json!({"messageId": id, "from": BUSINESS, "to": CUSTOMER,
            "template": {"name": "contact_share", "languageCode": "en"}}),
        Some(MessageKind::Media) => json!({"messageId": id, "from": BUSINESS, "to": CUSTOMER,
            "mediaType": "IMAGE", "mediaUrl": "https://example.com/a.png"}),
        Some(MessageKind::Buttons) => json!({"messageId": id, "from": BUSINESS, "to": CUSTOMER,
            "text": "Pick", "buttons": [{"id": "a", "title": "A"}]}),
        _ => contact(&id),
    };
    let object = body.as_object_mut().expect("an object");
    match replacement {
        Some(value) => {
            object.insert(field.to_owned(), value);
        }
        None => {
            object.remove(field);
        }
    }
    body
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_bytes_never_break_the_server(
        path in send_path(),
        content_type in content_type(),
        body in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let harness = harness(0);
        harness.check(path, content_type, body)?;
    }

    #[test]
    fn arbitrary_json_never_breaks_the_server(
        path in send_path(),
        body in any_json(),
    ) {
        let harness = harness(1);
        harness.check(path, "application/json", serde_json::to_vec(&body).expect("serialises"))?;
    }

    #[test]
    fn a_valid_body_with_one_field_changed_is_answered_consistently(
        path in send_path(),
        field in prop::sample::select(vec![
            "messageId", "from", "to", "name", "phones", "template", "message",
            "mediaType", "mediaUrl", "text", "buttons",
        ]),
        replacement in prop::option::of(any_json()),
        id in any::<u64>(),
    ) {
        let harness = harness(2);
        let body = mutated_body(path, field, replacement, id);
        harness.check(path, "application/json", serde_json::to_vec(&body).expect("serialises"))?;
    }

    #[test]
    fn arbitrary_paths_get_json_answers(path in "/[a-zA-Z0-9/._-]{0,40}") {
        let harness = harness(3);
        let (status, _) = harness.post(&path, "application/json", b"{}".to_vec());
        prop_assert!(matches!(status, 400 | 404), "{} answered {}", path, status);
    }
}

/// One harness per property (tests run in parallel, and each checks the last request
/// recorded), shared by that property's cases.
fn harness(property: usize) -> &'static Harness {
    static HARNESSES: [OnceLock<Harness>; 4] = [const { OnceLock::new() }; 4];
    HARNESSES[property].get_or_init(Harness::new)
}
