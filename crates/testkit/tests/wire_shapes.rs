//! The stand-in's answers on the wire: the 401 quirk, 400 for each invalid body, the
//! success envelope, 404, 405 and 413.

mod fixture;

use fixture::{BUSINESS, CUSTOMER, assert_success, contact, send, template, text, url};
use lipachat_testkit::{
    ApiKeyCheck, MAX_BODY_BYTES, MessageKind, RequestBody, RequestOutcome, StandInGateway,
    Violation,
};
use serde_json::{Value, json};

async fn open_gateway() -> StandInGateway {
    let gateway = StandInGateway::builder()
        .api_key("the-right-key")
        .start()
        .await
        .expect("the stand-in starts");
    gateway.customer_writes(fixture::business(), fixture::customer());
    gateway
}

#[tokio::test]
async fn a_contact_gets_the_documented_success_envelope_and_is_recorded() {
    let gateway = open_gateway().await;
    let answer = send(&gateway, MessageKind::Contact, &contact("m-1")).await;
    let wa_id = assert_success(&answer, "m-1");
    let timestamp = answer.body["timestamp"].as_str().expect("a timestamp");
    // The gateway's own format: no zone, nanoseconds.
    assert!(
        chrono::NaiveDateTime::parse_from_str(timestamp, "%Y-%m-%dT%H:%M:%S%.9f").is_ok(),
        "{timestamp}"
    );
    assert_eq!(timestamp.len(), "2023-08-06T01:27:56.825898971".len());

    let delivered = gateway.delivered();
    assert_eq!(delivered.len(), 1);
    let message = &delivered[0];
    assert_eq!(message.kind, MessageKind::Contact);
    assert_eq!(message.business.digits(), BUSINESS);
    assert_eq!(message.customer.digits(), CUSTOMER);
    assert_eq!(message.message_id, "m-1");
    assert_eq!(message.wa_id, wa_id);
    assert_eq!(message.body, contact("m-1"));

    let requests = gateway.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].api_key, ApiKeyCheck::Valid);
    assert_eq!(requests[0].outcome, RequestOutcome::Delivered);
    assert_eq!(requests[0].status, 200);
    assert_eq!(requests[0].message_id(), Some("m-1"));
    assert_eq!(requests[0].path, "/api/v1/whatsapp/contact");
    assert_eq!(requests[0].kind, Some(MessageKind::Contact));
}

#[tokio::test]
async fn every_kind_is_delivered_when_the_window_is_open() {
    let gateway = open_gateway().await;
    let bodies = [
        (MessageKind::Contact, contact("k-1")),
        (MessageKind::Template, template("k-2")),
        (MessageKind::Text, text("k-3", "hello")),
        (
            MessageKind::Media,
            json!({"messageId": "k-4", "from": BUSINESS, "to": CUSTOMER,
                   "mediaType": "IMAGE", "mediaUrl": "https://example.com/a.png", "caption": "a"}),
        ),
        (
            MessageKind::Buttons,
            json!({"messageId": "k-5", "from": BUSINESS, "to": CUSTOMER, "text": "Pick",
                   "buttons": [{"id": "yes", "title": "Yes"}, {"id": "no", "title": "No"}]}),
        ),
    ];
    for (kind, body) in &bodies {
        let id = body["messageId"].as_str().expect("an id");
        assert_success(&send(&gateway, *kind, body).await, id);
    }
    let kinds: Vec<MessageKind> = gateway.delivered().iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        bodies.iter().map(|(kind, _)| *kind).collect::<Vec<_>>()
    );
}

async fn assert_invalid_credentials(gateway: &StandInGateway, key: Option<&str>) {
    let mut request = reqwest::Client::new()
        .post(url(gateway, MessageKind::Contact))
        .json(&contact("unauthorised"));
    if let Some(key) = key {
        request = request.header("apiKey", key);
    }
    let answer = fixture::answer(request.send().await.expect("an answer")).await;
    assert_eq!(answer.status, 401);
    let body = answer.body.as_object().expect("an object");
    assert_eq!(body.len(), 5, "{body:?}");
    assert!(body["timestamp"].is_string());
    assert_eq!(body["data"], Value::Null);
    // The quirk: a failed request whose body says success.
    assert_eq!(body["status"], "success");
    assert_eq!(body["message"], "Invalid credentials");
    assert_eq!(body["errors"], Value::Null);
}

#[tokio::test]
async fn a_missing_or_wrong_key_gets_the_401_quirk_and_delivers_nothing() {
    let gateway = open_gateway().await;
    assert_invalid_credentials(&gateway, None).await;
    assert_invalid_credentials(&gateway, Some("the-wrong-key")).await;
    assert_invalid_credentials(&gateway, Some("")).await;
    // Keys compare exactly: case matters, a prefix is not enough.
    assert_invalid_credentials(&gateway, Some("The-Right-Key")).await;
    assert_invalid_credentials(&gateway, Some("the-right-ke")).await;
    assert!(gateway.delivered().is_empty());

    let checks: Vec<ApiKeyCheck> = gateway.requests().iter().map(|r| r.api_key).collect();
    assert_eq!(
        checks,
        [
            ApiKeyCheck::Missing,
            ApiKeyCheck::Wrong,
            ApiKeyCheck::Wrong,
            ApiKeyCheck::Wrong,
            ApiKeyCheck::Wrong
        ]
    );
    assert!(
        gateway
            .requests()
            .iter()
            .all(|r| r.outcome == RequestOutcome::InvalidCredentials && r.status == 401)
    );
    // The key is never kept, so it cannot leak through a record or the handle.
    let printed = format!("{:?} {:?}", gateway.requests(), gateway);
    assert!(!printed.contains("the-right-key"), "{printed}");
    assert!(!printed.contains("the-wrong-key"), "{printed}");
}

#[tokio::test]
async fn the_key_header_name_is_case_insensitive() {
    let gateway = open_gateway().await;
    let response = reqwest::Client::new()
        .post(url(&gateway, MessageKind::Contact))
        .header("APIKEY", gateway.api_key())
        .json(&contact("case"))
        .send()
        .await
        .expect("an answer");
    assert_success(&fixture::answer(response).await, "case");
}

#[tokio::test]
async fn a_random_key_is_required_by_default() {
    let gateway = StandInGateway::start().await.expect("the stand-in starts");
    assert!(gateway.api_key().len() >= 16);
    let other = StandInGateway::start().await.expect("the stand-in starts");
    assert_ne!(gateway.api_key(), other.api_key());
    assert_invalid_credentials(&gateway, Some(other.api_key())).await;
}

/// One invalid body per rule: the endpoint, the body, and the violation it must be
/// rejected for.
fn invalid_bodies() -> Vec<(MessageKind, Value, Violation)> {
    let with = |mut body: Value, pointer: &str, value: Value| {
        *body.pointer_mut(pointer).expect("the field exists") = value;
        body
    };
    let without = |mut body: Value, field: &str| {
        body.as_object_mut().expect("an object").remove(field);
        body
    };
    let c = || contact("bad");
    let t = || template("bad");
    vec![
        (
            MessageKind::Contact,
            without(c(), "messageId"),
            Violation::MessageId,
        ),
        (
            MessageKind::Contact,
            with(c(), "/messageId", json!("")),
            Violation::MessageId,
        ),
        (
            MessageKind::Contact,
            with(c(), "/messageId", json!("  ")),
            Violation::MessageId,
        ),
        (
            MessageKind::Contact,
            with(c(), "/messageId", json!(7)),
            Violation::MessageId,
        ),
        (MessageKind::Contact, without(c(), "from"), Violation::From),
        (
            MessageKind::Contact,
            with(c(), "/from", json!("+254110090747")),
            Violation::From,
        ),
        (
            MessageKind::Contact,
            with(c(), "/from", json!("1234567")),
            Violation::From,
        ),
        (MessageKind::Contact, without(c(), "to"), Violation::To),
        (
            MessageKind::Contact,
            with(c(), "/to", json!("2547XXXX")),
            Violation::To,
        ),
        (
            MessageKind::Contact,
            with(c(), "/to", json!("1234567890123456")),
            Violation::To,
        ),
        (
            MessageKind::Contact,
            with(c(), "/to", json!(254712345678_u64)),
            Violation::To,
        ),
        (
            MessageKind::Contact,
            without(c(), "name"),
            Violation::ContactName,
        ),
        (
            MessageKind::Contact,
            with(c(), "/name", json!({})),
            Violation::ContactName,
        ),
        (
            MessageKind::Contact,
            with(c(), "/name/formattedName", json!("")),
            Violation::ContactName,
        ),
        (
            MessageKind::Contact,
            without(c(), "phones"),
            Violation::ContactPhones,
        ),
        (
            MessageKind::Contact,
            with(c(), "/phones", json!([])),
            Violation::ContactPhones,
        ),
        (
            MessageKind::Contact,
            with(c(), "/phones", json!({"phone": "1"})),
            Violation::ContactPhones,
        ),
        (
            MessageKind::Contact,
            with(c(), "/phones/0", json!({"type": "Cell"})),
            Violation::ContactPhone,
        ),
        (
            MessageKind::Contact,
            with(c(), "/phones/0/phone", json!("")),
            Violation::ContactPhone,
        ),
        (
            MessageKind::Contact,
            with(c(), "/phones/0", json!("254712345678")),
            Violation::ContactPhone,
        ),
        (
            MessageKind::Template,
            without(t(), "template"),
            Violation::TemplateName,
        ),
        (
            MessageKind::Template,
            with(t(), "/template/name", json!("Contact Share")),
            Violation::TemplateName,
        ),
        (
            MessageKind::Template,
            with(t(), "/template/name", json!("")),
            Violation::TemplateName,
        ),
        (
            MessageKind::Template,
            with(t(), "/template/name", json!("contact-share")),
            Violation::TemplateName,
        ),
        (
            MessageKind::Template,
            with(t(), "/template/languageCode", json!("")),
            Violation::TemplateLanguage,
        ),
        (
            MessageKind::Template,
            with(t(), "/template/languageCode", Value::Null),
            Violation::TemplateLanguage,
        ),
        (
            MessageKind::Template,
            with(t(), "/template/components", json!([])),
            Violation::TemplateComponents,
        ),
        (MessageKind::Text, text("bad", ""), Violation::Text),
        (
            MessageKind::Text,
            without(text("bad", "hi"), "message"),
            Violation::Text,
        ),
        (
            MessageKind::Text,
            text("bad", &"x".repeat(4097)),
            Violation::Text,
        ),
        (
            MessageKind::Contact,
            json!([contact("bad")]),
            Violation::NotJson,
        ),
        (MessageKind::Contact, json!("a string"), Violation::NotJson),
        (
            MessageKind::Media,
            json!({"messageId": "bad", "from": BUSINESS, "to": CUSTOMER, "mediaType": "GIF", "mediaUrl": "https://x.example/a"}),
            Violation::MediaType,
        ),
        (
            MessageKind::Media,
            json!({"messageId": "bad", "from": BUSINESS, "to": CUSTOMER, "mediaType": "IMAGE", "mediaUrl": "http://x.example/a"}),
            Violation::MediaUrl,
        ),
        (
            MessageKind::Buttons,
            json!({"messageId": "bad", "from": BUSINESS, "to": CUSTOMER, "text": "Pick", "buttons": []}),
            Violation::Buttons,
        ),
        (
            MessageKind::Buttons,
            json!({"messageId": "bad", "from": BUSINESS, "to": CUSTOMER, "buttons": [{"id": "a", "title": "A"}]}),
            Violation::ButtonsText,
        ),
    ]
}

fn assert_bad_request_page(answer: &fixture::Answer, path: &str) {
    assert_eq!(answer.status, 400, "{}", answer.body);
    let body = answer.body.as_object().expect("an object");
    assert_eq!(body.len(), 4, "{body:?}");
    // Here `status` is a number, and the timestamp carries a zone.
    assert_eq!(body["status"], 400);
    assert_eq!(body["error"], "Bad Request");
    assert_eq!(body["path"], path);
    let timestamp = body["timestamp"].as_str().expect("a timestamp");
    assert!(
        chrono::DateTime::parse_from_str(timestamp, "%Y-%m-%dT%H:%M:%S%.3f%:z").is_ok(),
        "{timestamp}"
    );
}

#[tokio::test]
async fn each_invalid_body_gets_400_for_its_own_reason() {
    let gateway = open_gateway().await;
    let cases = invalid_bodies();
    for (kind, body, _) in &cases {
        let answer = send(&gateway, *kind, body).await;
        assert_bad_request_page(&answer, kind.path());
    }
    let outcomes: Vec<RequestOutcome> = gateway.requests().iter().map(|r| r.outcome).collect();
    let expected: Vec<RequestOutcome> = cases
        .iter()
        .map(|(_, _, violation)| RequestOutcome::BadRequest(*violation))
        .collect();
    assert_eq!(outcomes, expected);
    assert!(gateway.delivered().is_empty());
    // The bodies are recorded for assertions, the invalid ones too.
    assert_eq!(
        gateway.requests()[0].body,
        RequestBody::Json(cases[0].1.clone())
    );
}

#[tokio::test]
async fn text_of_exactly_4096_characters_is_accepted() {
    let gateway = open_gateway().await;
    let longest = "é".repeat(4096);
    assert_success(
        &send(&gateway, MessageKind::Text, &text("t-1", &longest)).await,
        "t-1",
    );
}

#[tokio::test]
async fn unknown_fields_and_minimal_bodies_are_accepted() {
    let gateway = open_gateway().await;
    let mut body = contact("extra");
    body["emails"] = json!([{"email": "a@example.com"}]);
    body["phones"] = json!([{"phone": "254712345678"}]);
    assert_success(&send(&gateway, MessageKind::Contact, &body).await, "extra");
    let minimal = json!({"messageId": "tpl", "from": BUSINESS, "to": CUSTOMER,
                         "template": {"name": "hello_world", "languageCode": "en_US"}});
    assert_success(
        &send(&gateway, MessageKind::Template, &minimal).await,
        "tpl",
    );
}

async fn post_raw(
    gateway: &StandInGateway,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> fixture::Answer {
    let mut request = reqwest::Client::new()
        .post(url(gateway, MessageKind::Contact))
        .header("apiKey", gateway.api_key())
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header("Content-Type", content_type);
    }
    fixture::answer(request.send().await.expect("an answer")).await
}

#[tokio::test]
async fn wrong_content_type_and_broken_json_get_400() {
    let gateway = open_gateway().await;
    let valid = serde_json::to_vec(&contact("ct")).expect("serialises");
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let answer = post_raw(&gateway, content_type, valid.clone()).await;
        assert_bad_request_page(&answer, "/api/v1/whatsapp/contact");
    }
    for broken in [&b"{\"messageId\": "[..], b"", b"\xff\xfe", b"null"] {
        let answer = post_raw(&gateway, Some("application/json"), broken.to_vec()).await;
        assert_bad_request_page(&answer, "/api/v1/whatsapp/contact");
    }
    let outcomes: Vec<RequestOutcome> = gateway.requests().iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [
            [RequestOutcome::BadRequest(Violation::ContentType); 3].as_slice(),
            &[RequestOutcome::BadRequest(Violation::NotJson); 4],
        ]
        .concat()
    );
    let bodies: Vec<RequestBody> = gateway.requests().into_iter().map(|r| r.body).collect();
    assert_eq!(bodies[3], RequestBody::Text("{\"messageId\": ".to_owned()));
    assert_eq!(bodies[4], RequestBody::Empty);
    // A charset parameter is fine.
    let answer = post_raw(&gateway, Some("application/json; charset=utf-8"), valid).await;
    assert_success(&answer, "ct");
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_and_the_server_goes_on() {
    let gateway = open_gateway().await;
    let answer = post_raw(
        &gateway,
        Some("application/json"),
        vec![b' '; MAX_BODY_BYTES + 1],
    )
    .await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.body["status"], 413);
    assert_eq!(answer.body["path"], "/api/v1/whatsapp/contact");
    let request = &gateway.requests()[0];
    assert_eq!(request.outcome, RequestOutcome::PayloadTooLarge);
    assert_eq!(request.body, RequestBody::TooLarge);
    assert_success(
        &send(&gateway, MessageKind::Contact, &contact("after")).await,
        "after",
    );
}

#[tokio::test]
async fn unknown_paths_get_404_and_other_methods_405() {
    let gateway = open_gateway().await;
    let client = reqwest::Client::new();
    let missing = client
        .post(format!("{}/api/v1/whatsapp/contacts", gateway.base_url()))
        .header("apiKey", gateway.api_key())
        .json(&contact("x"))
        .send()
        .await
        .expect("an answer");
    let missing = fixture::answer(missing).await;
    assert_eq!(
        (missing.status, &missing.body["error"]),
        (404, &json!("Not Found"))
    );
    let get = client
        .get(url(&gateway, MessageKind::Contact))
        .header("apiKey", gateway.api_key())
        .send()
        .await
        .expect("an answer");
    let get = fixture::answer(get).await;
    assert_eq!(
        (get.status, &get.body["error"]),
        (405, &json!("Method Not Allowed"))
    );
    let outcomes: Vec<RequestOutcome> = gateway.requests().iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [RequestOutcome::NotFound, RequestOutcome::MethodNotAllowed]
    );
    assert!(gateway.delivered().is_empty());
}

#[tokio::test]
async fn bodies_can_be_left_unrecorded_for_benchmarks() {
    let gateway = StandInGateway::builder()
        .record_bodies(false)
        .start()
        .await
        .expect("the stand-in starts");
    gateway.customer_writes(fixture::business(), fixture::customer());
    let first = send(&gateway, MessageKind::Contact, &contact("quiet")).await;
    let wa_id = assert_success(&first, "quiet");
    let again = send(&gateway, MessageKind::Contact, &contact("quiet")).await;
    assert_eq!(again.body, first.body);
    let delivered = gateway.delivered();
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        (
            delivered[0].message_id.as_str(),
            delivered[0].wa_id.as_str()
        ),
        ("quiet", wa_id.as_str())
    );
    assert_eq!(delivered[0].body, Value::Null);
    assert!(
        gateway
            .requests()
            .iter()
            .all(|r| r.body == RequestBody::NotKept)
    );
    assert_eq!(gateway.request_count(), 2);
}
