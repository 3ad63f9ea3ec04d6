//! The order of a JSON object's keys as written: what a test checks of an output meant to
//! be read in a fixed order, which a `serde_json::Value` does not keep.

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

/// The top-level keys of the JSON object `json`, in the order they are written.
///
/// ```
/// let keys = lipachat_testkit::keys_in_order(r#"{"state": "open", "business": "254110090747"}"#)?;
/// assert_eq!(keys, ["state", "business"]);
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn keys_in_order(json: &str) -> Result<Vec<String>, serde_json::Error> {
    serde_json::Deserializer::from_str(json).deserialize_map(Keys)
}

/// Collects an object's keys, skipping their values.
struct Keys;

impl<'de> Visitor<'de> for Keys {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut keys = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            map.next_value::<IgnoredAny>()?;
            keys.push(key);
        }
        Ok(keys)
    }
}
