//! What depending on lipachat does to a user's own build.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

/// A user's own `serde_json` maps keep serde_json's default order (sorted keys):
/// depending on lipachat switches on no serde_json feature that changes them (as
/// `preserve_order` did, for every crate in the build). The request bodies keep the
/// gateway's key order by themselves.
#[test]
fn a_users_json_maps_keep_their_own_order() {
    let value: serde_json::Value = serde_json::from_str(r#"{"b":1,"a":2}"#).unwrap();
    assert_eq!(value.to_string(), r#"{"a":2,"b":1}"#);
}
