//! The stand-in's newer endpoints: media, buttons, list, location request and flow with
//! their limits (at and one past each) and the window; the template endpoints (catalog,
//! create, update, upload); and template sends checked against the catalog.

mod fixture;

use fixture::{BUSINESS, CUSTOMER, assert_success, send};
use lipachat_testkit::{
    ApiKeyCheck, InjectedFailure, MessageKind, RequestBody, RequestOutcome, StandInGateway,
    Violation, template_entry,
};
use serde_json::{Value, json};

async fn open_gateway() -> StandInGateway {
    let gateway = StandInGateway::start().await.expect("the stand-in starts");
    gateway.customer_writes(fixture::business(), fixture::customer());
    gateway
}

/// `fields` added to the addressing every send carries.
fn body(id: &str, fields: Value) -> Value {
    let mut body = json!({"messageId": id, "from": BUSINESS, "to": CUSTOMER});
    body.as_object_mut()
        .expect("an object")
        .extend(fields.as_object().expect("an object").clone());
    body
}

fn media(id: &str, media_type: &str, extra: Value) -> Value {
    let mut fields = json!({"mediaType": media_type, "mediaUrl": "https://example.com/f"});
    fields
        .as_object_mut()
        .expect("an object")
        .extend(extra.as_object().expect("an object").clone());
    body(id, fields)
}

fn buttons(id: &str, text: &str, buttons: Value) -> Value {
    body(id, json!({"text": text, "buttons": buttons}))
}

fn list(id: &str, header: &str, button_text: &str, sections: Value) -> Value {
    body(
        id,
        json!({"headerText": header, "body": "Pick one", "buttonText": button_text, "buttons": sections}),
    )
}

fn rows(n: usize, from: usize) -> Value {
    Value::Array(
        (from..from + n)
            .map(|i| json!({"id": format!("r{i}"), "title": format!("Row {i}")}))
            .collect(),
    )
}

fn flow(id: &str, cta: &str, data: Value) -> Value {
    body(
        id,
        json!({"text": "Sign up", "flowId": "1234", "flowCta": cta, "screen": "WELCOME", "data": data}),
    )
}

/// Sends `body` to `kind` and asserts it is accepted or refused with `expected`.
async fn expect(
    gateway: &StandInGateway,
    kind: MessageKind,
    body: &Value,
    expected: Option<Violation>,
) {
    let answer = send(gateway, kind, body).await;
    match expected {
        None => {
            assert_success(&answer, body["messageId"].as_str().expect("an id"));
        }
        Some(violation) => {
            assert_eq!(answer.status, 400, "{kind} {body}: {:?}", answer.body);
            let last = gateway.requests().pop().expect("recorded");
            assert_eq!(
                last.outcome,
                RequestOutcome::BadRequest(violation),
                "{body}"
            );
        }
    }
}

#[tokio::test]
async fn media_limits() {
    let g = open_gateway().await;
    let x = |n: usize| "x".repeat(n);
    let cases = [
        (media("m1", "IMAGE", json!({"caption": x(1024)})), None),
        (
            media("m2", "IMAGE", json!({"caption": x(1025)})),
            Some(Violation::MediaCaption),
        ),
        (
            media("m3", "AUDIO", json!({"caption": "hi"})),
            Some(Violation::MediaCaption),
        ),
        (
            media("m4", "STICKER", json!({"caption": "hi"})),
            Some(Violation::MediaCaption),
        ),
        (media("m5", "DOCUMENT", json!({"filename": x(255)})), None),
        (
            media("m6", "DOCUMENT", json!({"filename": x(256)})),
            Some(Violation::MediaFilename),
        ),
        (
            media("m7", "IMAGE", json!({"filename": "a.png"})),
            Some(Violation::MediaFilename),
        ),
        (media("m8", "image", json!({})), Some(Violation::MediaType)),
        (
            media(
                "m9",
                "VIDEO",
                json!({"mediaUrl": "http://example.com/v.mp4"}),
            ),
            Some(Violation::MediaUrl),
        ),
        (media("m10", "AUDIO", json!({})), None),
    ];
    for (body, expected) in cases {
        expect(&g, MessageKind::Media, &body, expected).await;
    }
}

#[tokio::test]
async fn buttons_limits() {
    let g = open_gateway().await;
    let button = |id: &str, title: &str| json!({"id": id, "title": title});
    let cases = [
        (
            buttons(
                "b1",
                &"t".repeat(1024),
                json!([button("a", &"x".repeat(20))]),
            ),
            None,
        ),
        (
            buttons("b2", &"t".repeat(1025), json!([button("a", "A")])),
            Some(Violation::ButtonsText),
        ),
        (
            buttons("b3", "t", json!([button("a", &"x".repeat(21))])),
            Some(Violation::Buttons),
        ),
        (
            buttons("b4", "t", json!([button(&"i".repeat(256), "A")])),
            None,
        ),
        (
            buttons("b5", "t", json!([button(&"i".repeat(257), "A")])),
            Some(Violation::Buttons),
        ),
        (
            buttons(
                "b6",
                "t",
                json!([button("a", "A"), button("b", "B"), button("c", "C")]),
            ),
            None,
        ),
        (
            buttons(
                "b7",
                "t",
                json!([
                    button("a", "A"),
                    button("b", "B"),
                    button("c", "C"),
                    button("d", "D")
                ]),
            ),
            Some(Violation::Buttons),
        ),
        (buttons("b8", "t", json!([])), Some(Violation::Buttons)),
        (
            buttons("b9", "t", json!([button("a", "A"), button("a", "B")])),
            Some(Violation::Buttons),
        ),
    ];
    for (body, expected) in cases {
        expect(&g, MessageKind::Buttons, &body, expected).await;
    }
}

#[tokio::test]
async fn list_limits() {
    let g = open_gateway().await;
    let section = |title: &str, rows: Value| json!({"sectionTitle": title, "sectionItems": rows});
    let ten_sections: Vec<Value> = (0..10)
        .map(|i| section(&format!("S{i}"), rows(1, i)))
        .collect();
    let mut eleven_sections = ten_sections.clone();
    eleven_sections.push(section("S10", rows(1, 10)));
    let row = |id: &str, title: &str, description: &str| json!([{"id": id, "title": title, "description": description}]);
    let cases = [
        (
            list(
                "l1",
                &"h".repeat(60),
                &"o".repeat(20),
                json!([section(&"s".repeat(24), rows(10, 0))]),
            ),
            None,
        ),
        (
            list(
                "l2",
                &"h".repeat(61),
                "o",
                json!([section("s", rows(1, 0))]),
            ),
            Some(Violation::ListHeader),
        ),
        (
            list(
                "l3",
                "h",
                &"o".repeat(21),
                json!([section("s", rows(1, 0))]),
            ),
            Some(Violation::ListButtonText),
        ),
        (
            list(
                "l4",
                "h",
                "o",
                json!([section(&"s".repeat(25), rows(1, 0))]),
            ),
            Some(Violation::ListSections),
        ),
        (
            list(
                "l5",
                "h",
                "o",
                json!([section("a", rows(6, 0)), section("b", rows(5, 6))]),
            ),
            Some(Violation::ListRows),
        ),
        (list("l6", "h", "o", Value::Array(ten_sections)), None),
        (
            list("l7", "h", "o", Value::Array(eleven_sections)),
            Some(Violation::ListSections),
        ),
        (
            list(
                "l8",
                "h",
                "o",
                json!([section("a", rows(1, 0)), section("b", rows(1, 0))]),
            ),
            Some(Violation::ListRows),
        ),
        (
            list(
                "l9",
                "h",
                "o",
                json!([section("a", row("r", &"t".repeat(24), &"d".repeat(72)))]),
            ),
            None,
        ),
        (
            list(
                "l10",
                "h",
                "o",
                json!([section("a", row("r", &"t".repeat(25), "d"))]),
            ),
            Some(Violation::ListRows),
        ),
        (
            list(
                "l11",
                "h",
                "o",
                json!([section("a", row("r", "t", &"d".repeat(73)))]),
            ),
            Some(Violation::ListRows),
        ),
        (
            list(
                "l12",
                "h",
                "o",
                json!([section("a", row(&"i".repeat(201), "t", "d"))]),
            ),
            Some(Violation::ListRows),
        ),
        (
            list("l13", "h", "o", json!([section("a", json!([]))])),
            Some(Violation::ListSections),
        ),
    ];
    for (body, expected) in cases {
        expect(&g, MessageKind::List, &body, expected).await;
    }
}

#[tokio::test]
async fn location_request_and_flow_limits() {
    let g = open_gateway().await;
    expect(
        &g,
        MessageKind::LocationRequest,
        &body("q1", json!({"text": "t".repeat(1024)})),
        None,
    )
    .await;
    expect(
        &g,
        MessageKind::LocationRequest,
        &body("q2", json!({"text": "t".repeat(1025)})),
        Some(Violation::LocationRequestText),
    )
    .await;
    expect(
        &g,
        MessageKind::Flow,
        &flow("f1", &"c".repeat(30), json!({"a": 1})),
        None,
    )
    .await;
    expect(
        &g,
        MessageKind::Flow,
        &flow("f2", &"c".repeat(31), Value::Null),
        Some(Violation::FlowCta),
    )
    .await;
    expect(
        &g,
        MessageKind::Flow,
        &flow("f3", "Go", json!([1])),
        Some(Violation::FlowData),
    )
    .await;
    let mut no_screen = flow("f4", "Go", Value::Null);
    no_screen["screen"] = json!(" ");
    expect(
        &g,
        MessageKind::Flow,
        &no_screen,
        Some(Violation::FlowScreen),
    )
    .await;
}

#[tokio::test]
async fn every_newer_kind_is_refused_outside_the_window() {
    // The customer never wrote.
    let g = StandInGateway::start().await.expect("starts");
    let bodies = [
        (MessageKind::Media, media("w1", "IMAGE", json!({}))),
        (
            MessageKind::Buttons,
            buttons("w2", "t", json!([{"id": "a", "title": "A"}])),
        ),
        (
            MessageKind::List,
            list(
                "w3",
                "h",
                "o",
                json!([{"sectionTitle": "s", "sectionItems": rows(1, 0)}]),
            ),
        ),
        (
            MessageKind::LocationRequest,
            body("w4", json!({"text": "where?"})),
        ),
        (MessageKind::Flow, flow("w5", "Go", Value::Null)),
    ];
    for (kind, body) in &bodies {
        let answer = send(&g, *kind, body).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body["status"], "error", "{kind}");
        assert!(
            answer.body["message"]
                .as_str()
                .is_some_and(|m| m.contains("131047"))
        );
    }
    assert_eq!(g.refusal_count(), 5);
    assert_eq!(g.delivered_count(), 0);
    let kinds: Vec<MessageKind> = g.refusals().iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            MessageKind::Media,
            MessageKind::Buttons,
            MessageKind::List,
            MessageKind::LocationRequest,
            MessageKind::Flow
        ]
    );
}

fn template_url(gateway: &StandInGateway, rest: &str) -> String {
    format!("{}/api/v1/template/{rest}", gateway.base_url())
}

#[tokio::test]
async fn the_catalog_is_listed_doubly_nested_and_unknown_businesses_are_404() {
    let g = StandInGateway::builder()
        .api_key("k")
        .start()
        .await
        .expect("starts");
    let http = reqwest::Client::new();
    let get = |rest: &str, key: &str| {
        http.get(template_url(&g, rest))
            .header("apiKey", key)
            .send()
    };
    let missing = get(BUSINESS, "k").await.expect("answers");
    assert_eq!(missing.status().as_u16(), 404);

    let entry = template_entry(
        "order_update",
        "en",
        "UTILITY",
        "APPROVED",
        None,
        "Hi {{1}}",
    );
    g.set_templates(fixture::business(), vec![entry.clone()]);
    let answer = fixture::answer(get(BUSINESS, "k").await.expect("answers")).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["status"], "success");
    assert_eq!(answer.body["data"]["data"], json!([entry]));

    let wrong_key = fixture::answer(get(BUSINESS, "nope").await.expect("answers")).await;
    assert_eq!(wrong_key.status, 401);
    assert_eq!(wrong_key.body["status"], "success", "the 401 quirk");

    g.fail_template_calls_next(1, InjectedFailure::status(503));
    assert_eq!(
        get(BUSINESS, "k").await.expect("answers").status().as_u16(),
        503
    );
    assert_eq!(
        get(BUSINESS, "k").await.expect("answers").status().as_u16(),
        200
    );

    let journal = g.template_requests();
    let outcomes: Vec<RequestOutcome> = journal.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [
            RequestOutcome::NotFound,
            RequestOutcome::CatalogListed,
            RequestOutcome::InvalidCredentials,
            RequestOutcome::InjectedFailure,
            RequestOutcome::CatalogListed
        ]
    );
    assert_eq!(journal[2].api_key, ApiKeyCheck::Wrong);
    assert!(
        g.requests().is_empty(),
        "template calls are kept apart from sends"
    );
}

#[tokio::test]
async fn templates_are_created_updated_and_files_uploaded() {
    let g = StandInGateway::start().await.expect("starts");
    let http = reqwest::Client::new();
    let draft = json!({"name": "order_ready", "language": "en", "category": "UTILITY",
        "component": {"body": {"text": "Hi {{1}}", "examples": ["Jane"]},
                      "buttons": [{"type": "QUICK_REPLY", "text": "Thanks"}]}});
    let post = |body: &Value| {
        http.post(template_url(&g, BUSINESS))
            .header("apiKey", g.api_key())
            .json(body)
            .send()
    };
    let created = fixture::answer(post(&draft).await.expect("answers")).await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    assert_eq!(created.body["data"]["status"], "PENDING");
    let id = created.body["data"]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let again = post(&draft).await.expect("answers");
    assert_eq!(
        again.status().as_u16(),
        400,
        "a name and language already taken"
    );
    let mut broken = draft.clone();
    broken["component"]["body"]["examples"] = json!([]);
    assert_eq!(post(&broken).await.expect("answers").status().as_u16(), 400);

    let mut updated = draft.clone();
    updated["component"]["body"] = json!({"text": "Hello {{1}}, {{2}}", "examples": ["Jane", "x"]});
    let put = |rest: String| {
        http.put(template_url(&g, &rest))
            .header("apiKey", g.api_key())
            .json(&updated)
            .send()
    };
    assert_eq!(
        put(format!("{BUSINESS}/{id}"))
            .await
            .expect("answers")
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        put(format!("{BUSINESS}/no-such-id"))
            .await
            .expect("answers")
            .status()
            .as_u16(),
        404
    );
    let catalog = g.templates(fixture::business()).expect("a catalog");
    assert_eq!(catalog.len(), 1);
    assert_eq!(catalog[0]["components"][0]["text"], "Hello {{1}}, {{2}}");

    let multipart = b"--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n--XYZ--\r\n".to_vec();
    let upload = http
        .post(template_url(&g, "upload/file"))
        .header("apiKey", g.api_key())
        .header("Content-Type", "multipart/form-data; boundary=XYZ")
        .body(multipart)
        .send()
        .await
        .expect("answers");
    let upload = fixture::answer(upload).await;
    assert_eq!(upload.status, 200);
    let uploads = g.uploads();
    assert_eq!(uploads.len(), 1);
    assert_eq!(upload.body["data"]["id"], uploads[0].id.as_str());
    assert_eq!(
        (uploads[0].filename.as_str(), uploads[0].bytes.as_slice()),
        ("a.png", &b"\x89PNG"[..])
    );
    let not_multipart = http
        .post(template_url(&g, "upload/file"))
        .header("apiKey", g.api_key())
        .json(&json!({"file": "x"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(not_multipart.status().as_u16(), 400);
    let last = g.template_requests().pop().expect("recorded");
    assert_eq!(
        last.outcome,
        RequestOutcome::BadRequest(Violation::UploadFile)
    );
    assert!(matches!(last.body, RequestBody::Json(_)));
}

fn template_send(id: &str, name: &str, placeholders: &[&str], header: Option<Value>) -> Value {
    let mut components = json!({"body": {"placeholders": placeholders}});
    if let Some(header) = header {
        components["header"] = header;
    }
    body(
        id,
        json!({"template": {"name": name, "languageCode": "en", "components": components}}),
    )
}

#[tokio::test]
async fn template_sends_are_checked_against_the_catalog_when_there_is_one() {
    let g = StandInGateway::start().await.expect("starts");
    // Without a catalog any template goes.
    assert_success(
        &send(
            &g,
            MessageKind::Template,
            &template_send("t0", "anything", &[], None),
        )
        .await,
        "t0",
    );
    g.set_templates(
        fixture::business(),
        vec![
            template_entry(
                "order_update",
                "en",
                "UTILITY",
                "APPROVED",
                Some(("IMAGE", "")),
                "Hi {{1}}, {{2}}",
            ),
            template_entry("promo", "en", "MARKETING", "PAUSED", None, "Sale"),
        ],
    );
    let image = json!({"type": "IMAGE", "mediaUrl": "https://e.com/a.png"});
    assert_success(
        &send(
            &g,
            MessageKind::Template,
            &template_send("t1", "order_update", &["a", "b"], Some(image.clone())),
        )
        .await,
        "t1",
    );
    for (id, body, code) in [
        ("t2", template_send("t2", "nope", &[], None), 132_001),
        ("t3", template_send("t3", "promo", &[], None), 132_015),
        (
            "t4",
            template_send("t4", "order_update", &["a"], Some(image.clone())),
            132_000,
        ),
        (
            "t5",
            template_send("t5", "order_update", &["a", "b"], None),
            132_012,
        ),
    ] {
        let answer = send(&g, MessageKind::Template, &body).await;
        assert_eq!(answer.status, 200, "{id}");
        assert_eq!(answer.body["status"], "error", "{id}");
        assert_eq!(answer.body["errors"][0]["code"], code, "{id}");
        assert_eq!(
            g.requests().pop().expect("recorded").outcome,
            RequestOutcome::TemplateRejected(code)
        );
    }
    assert!(g.set_template_status(fixture::business(), "promo", "en", "APPROVED"));
    assert_success(
        &send(
            &g,
            MessageKind::Template,
            &template_send("t6", "promo", &[], None),
        )
        .await,
        "t6",
    );
    assert_eq!(g.delivered_count(), 3);
}
