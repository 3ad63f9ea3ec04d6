//! Attack 8: the router end to end over real HTTP on 127.0.0.1 (sled store, stand-in
//! gateway) with WhatsApp text webhooks that the typed reader reads, and redeliveries of
//! the same message in other byte forms, some read by the typed reader (pretty-printed,
//! the id written with an escape or padded) and some by the walk (an empty `statuses`
//! list, a `context`): the message is recorded once, answered once, and every other copy
//! counted as a duplicate, whichever reader read the first copy.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::*;
use reqwest::StatusCode;

/// The same message (`id`) in six byte forms: four the typed reader reads, then two the
/// walk reads (or the walk's two first, unless `typed_first`).
fn copies(id: &str, customer: &str, text: &str, typed_first: bool) -> Vec<Vec<u8>> {
    let sent_at = Utc::now().timestamp();
    let plain = String::from_utf8(whatsapp_text(id, customer, text, sent_at)).unwrap();
    let value: serde_json::Value = serde_json::from_str(&plain).unwrap();
    let id_field = format!(r#""id":"{id}""#);
    assert!(plain.contains(&id_field), "{plain}");
    let escaped_id = format!(
        r#""id":"\u{:04x}{}""#,
        u32::from(id.as_bytes()[0]),
        &id[1..]
    );
    let typed = vec![
        plain.clone(),
        serde_json::to_string_pretty(&value).unwrap(),
        plain.replace(&id_field, &escaped_id),
        plain.replace(&id_field, &format!(r#""id":"  {id} ""#)),
    ];
    let walked = vec![
        plain.replace(
            r#""messaging_product":"whatsapp""#,
            r#""messaging_product":"whatsapp","statuses":[]"#,
        ),
        plain.replace(
            r#""from":"#,
            r#""context":{"from":"254110090747","id":"wamid.EARLIER"},"from":"#,
        ),
    ];
    // Every form but the first is another byte form of the same message.
    for body in typed.iter().skip(1).chain(&walked) {
        assert_ne!(body, &plain);
    }
    let ordered = if typed_first {
        typed.into_iter().chain(walked).collect::<Vec<_>>()
    } else {
        walked.into_iter().chain(typed).collect()
    };
    ordered.into_iter().map(String::into_bytes).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_text_and_its_redeliveries_in_other_forms_are_recorded_once() {
    let h = Harness::start().await;
    let cases = [
        ("wamid.ATTACK8TYPED", "254712345681", true),
        ("wamid.ATTACK8WALKED", "254712345682", false),
    ];
    let mut posted = 0;
    for (id, customer, typed_first) in cases {
        h.gateway.customer_writes(phone(BUSINESS), phone(customer));
        for body in copies(id, customer, "once", typed_first) {
            let response = h.post_whatsapp(&body).await;
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "{}",
                String::from_utf8_lossy(&body)
            );
            posted += 1;
        }
    }
    for (_, customer, _) in cases {
        let echoes = h.wait_for_echoes(customer, 1).await;
        assert_eq!(echoes.len(), 1, "{customer}: {echoes:?}");
        assert!(h.recorded(customer).await, "{customer}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (_, customer, _) in cases {
        assert_eq!(h.echoes_to(customer).len(), 1, "{customer}");
    }
    let duplicates = posted - cases.len();
    let metrics = h.metrics_text().await;
    assert!(
        metrics.contains(&format!("lipachat_webhook_duplicates_total {duplicates}")),
        "{metrics}"
    );
}

/// Two text messages in one typed body, then each redelivered alone: two answers, two
/// duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_typed_messages_in_one_body_then_each_alone_are_two_messages() {
    let h = Harness::start().await;
    let customer = "254712345683";
    h.gateway.customer_writes(phone(BUSINESS), phone(customer));
    let now = Utc::now().timestamp();
    let first = String::from_utf8(whatsapp_text("wamid.PAIR1", customer, "one", now)).unwrap();
    let second = String::from_utf8(whatsapp_text("wamid.PAIR2", customer, "two", now)).unwrap();
    let message = |body: &str| {
        let start = body.find(r#""messages":["#).unwrap() + r#""messages":["#.len();
        let end = body[start..].find("}]").unwrap() + start + 1;
        body[start..end].to_owned()
    };
    let both = first.replace(
        &message(&first),
        &format!("{},{}", message(&first), message(&second)),
    );
    assert_ne!(both, first);
    for body in [&both, &first, &second] {
        assert_eq!(
            h.post_whatsapp(body.as_bytes()).await.status(),
            StatusCode::OK
        );
    }
    let echoes = h.wait_for_echoes(customer, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.echoes_to(customer).len(), 2, "{echoes:?}");
    let metrics = h.metrics_text().await;
    assert!(
        metrics.contains("lipachat_webhook_duplicates_total 2"),
        "{metrics}"
    );
}
