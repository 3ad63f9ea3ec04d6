//! Reading a WhatsApp text webhook allocates far less than building a `serde_json::Value`
//! of it and walking that: the parser reads the common shape straight into its events.
//! (Counts of allocations, not times: deterministic. The only test in this binary, so no
//! other thread allocates while it counts.)

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::alloc::System;

use chrono::{DateTime, Utc};
use lipachat_api::{WebhookEvent, WebhookParser};
use serde_json::Value;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// How many allocations (reallocations included) `f` makes.
fn allocations<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let region = Region::new(GLOBAL);
    let out = f();
    let change = region.change();
    (change.allocations + change.reallocations, out)
}

/// What a WhatsApp text webhook looks like (the shape the benchmark posts).
const TEXT_WEBHOOK: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"254110090747","phone_number_id":"1"},"contacts":[{"profile":{"name":"Jane"},"wa_id":"254712345678"}],"messages":[{"from":"254712345678","id":"wamid.HBgMMjU0NzEyMzQ1Njc4FQIAEhgg","timestamp":"1764583200","type":"text","text":{"body":"hello"}}]}}]}]}"#;

#[test]
fn a_text_webhook_is_read_with_under_half_the_allocations_of_a_value_walk() {
    let parser = WebhookParser::default();
    let received: DateTime<Utc> = "2026-12-01T10:00:00Z".parse().unwrap();
    let (walk_count, walked) = allocations(|| {
        let value: Value = serde_json::from_slice(TEXT_WEBHOOK.as_bytes()).unwrap();
        parser.parse_value(&value, received).unwrap()
    });
    let (parse_count, parsed) =
        allocations(|| parser.parse(TEXT_WEBHOOK.as_bytes(), received).unwrap());
    assert_eq!(parsed, walked);
    assert!(matches!(&parsed[..], [WebhookEvent::Inbound(_)]));
    eprintln!("parse: {parse_count} allocations; Value walk: {walk_count}");
    assert!(
        parse_count * 2 <= walk_count,
        "parse: {parse_count} allocations; Value walk: {walk_count}"
    );
}
