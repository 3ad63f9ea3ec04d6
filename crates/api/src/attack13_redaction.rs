//! Attack on the redaction's pre-check (no `%`, `\` or `&` and no plain key: the text is
//! returned as it is). The full redaction is forced by a prefix of one of those three
//! (one that is not the whole key) and a space, which no match can include (a key holds
//! no space, so a match starting on the first byte would need its second character at
//! the space); both answers must agree for keys and texts built from the key's characters, every escape
//! the redaction knows, and near misses.

use proptest::prelude::*;

use super::ApiKey;

/// `text` redacted by the full search, whatever the pre-check would say.
fn fully_redacted(key: &ApiKey, text: &str) -> String {
    let trigger = ["%", "\\", "&"]
        .into_iter()
        .find(|trigger| *trigger != key.expose_secret())
        .unwrap();
    let prefix = format!("{trigger} ");
    let forced = key.redact(&format!("{prefix}{text}"));
    forced
        .strip_prefix(&prefix)
        .expect("the prefix is never part of a match")
        .to_owned()
}

/// A text: pieces of the key, its characters one by one, escapes of them, and noise.
fn text_around(key: String) -> impl Strategy<Value = String> {
    let chars: Vec<char> = key.chars().collect();
    let key_chars = key.clone();
    let piece = prop_oneof![
        3 => Just(key.clone()),
        2 => (0..=key.len(), 0..=key.len()).prop_map(move |(a, b)| key[a.min(b)..a.max(b)].to_owned()),
        2 => proptest::sample::select(chars.clone()).prop_map(String::from),
        1 => proptest::sample::select(chars).prop_map(|c| {
            let code = u32::from(c);
            format!("%{code:02x}")
        }),
        1 => (proptest::sample::select(key_chars.chars().collect::<Vec<char>>()), 0..4_u8).prop_map(|(c, how)| {
            let code = u32::from(c);
            match how {
                0 => format!("&#{code};"),
                1 => format!("&#X{code:X};"),
                2 => format!("\\u{code:04X}"),
                _ => format!("\\{c}"),
            }
        }),
        1 => proptest::sample::select(vec![
            "%", "\\", "&", "%2", "\\u00", "&#", "&#x", ";", "é", "✓", "wamid.", "-", "0", " ",
        ]).prop_map(str::to_owned),
    ];
    proptest::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(4096))]

    /// The pre-check never answers differently from the full redaction.
    #[test]
    fn the_pre_check_answers_as_the_full_redaction(
        (key, text) in "[a-c0-9%&;#x\\\\_/.-]{1,6}".prop_flat_map(|key| {
            (Just(key.clone()), text_around(key))
        })
    ) {
        let key = ApiKey::new(key).unwrap();
        let redacted = key.redact(&text);
        prop_assert_eq!(&redacted, &fully_redacted(&key, &text));
        prop_assert!(!redacted.contains(key.expose_secret()) || text.is_empty());
    }
}

#[test]
fn plain_texts_without_escapes_are_left_or_redacted_as_the_full_search_does() {
    let key = ApiKey::new("wamid.AB").unwrap();
    for text in [
        "",
        "wamid.A",
        "wamid.AB",
        "wamid.ABwamid.AB",
        "wwamid.AB",
        "wamid.AwAB",
        "xwamid.ABx",
        "éwamid.AB✓",
        "wamid.HBgMMjU0NzE3NzQ2NTY1FQIAEnRgSRjJGRkMzNkQ0QUVENTIxQ0NBAA==",
    ] {
        assert_eq!(key.redact(text), fully_redacted(&key, text), "{text:?}");
    }
    assert_eq!(key.redact("xwamid.ABx"), "x***x");
}
