//! The gateway's API key, kept out of logs, errors and panic messages.

use std::fmt;

use crate::error::ValidationError;

/// The longest key accepted, in bytes.
const MAX_KEY_LEN: usize = 1024;

/// A LipaChat API key (from the LipaChat app's settings tab).
///
/// Validated on creation: non-empty, at most 1024 characters, printable ASCII without
/// whitespace (it travels in the `apiKey` header). `Debug` and `Display` print
/// `ApiKey(***)`; only [`ApiKey::expose_secret`] gives the key, for the header.
///
/// ```
/// use lipachat_api::ApiKey;
///
/// let key = ApiKey::new("sk_live_0123456789")?;
/// assert_eq!(format!("{key:?}"), "ApiKey(***)");
/// assert_eq!(key.to_string(), "ApiKey(***)");
/// assert!(ApiKey::new("has space").is_err());
/// # Ok::<(), lipachat_api::ValidationError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Validates and wraps a key. Surrounding whitespace (a trailing newline from a file
    /// or an environment variable) is trimmed first.
    pub fn new(key: impl Into<String>) -> Result<Self, ValidationError> {
        let key = key.into();
        let trimmed = key.trim();
        if trimmed.is_empty() {
            return Err(ValidationError::ApiKey { reason: "empty" });
        }
        if trimmed.len() > MAX_KEY_LEN {
            return Err(ValidationError::ApiKey {
                reason: "longer than 1024 characters",
            });
        }
        if !trimmed.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ValidationError::ApiKey {
                reason: "holds whitespace, control or non-ASCII characters",
            });
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The key itself. Use it for the `apiKey` header and nowhere else.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the key replaced by `***`, in whatever form a
    /// gateway may echo it back: as it is, JSON-escaped (`\"`, `\\`, `\/`, `\u0022`), or
    /// percent-encoded (`%2F` or `%2f`; form encoding, whose `+` stands only for a space,
    /// which a key never holds, is the same), or HTML-escaped (`&quot;`, `&#34;`,
    /// `&#x22;`, as an HTML error page quotes it). Each character of the key may be written in
    /// any of these ways, so a mix (a JSON string quoting a URL) is found too.
    pub(crate) fn redact(&self, text: &str) -> String {
        let bytes = text.as_bytes();
        // Every encoded form starts an escape with `%`, `\` or `&`: in a text holding none
        // (a WhatsApp id, a gateway's messageId), the key can only be there as it is.
        // Vectorised searches for both: every accepted send redacts two ids, and a
        // substring search's set-up alone cost more than these.
        let key = self.0.as_bytes();
        let may_hold_key = memchr::memchr3(b'%', b'\\', b'&', bytes).is_some()
            || key.first().is_some_and(|&first| {
                memchr::memchr_iter(first, bytes).any(|at| bytes[at..].starts_with(key))
            });
        if !may_hold_key {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        let mut at = 0;
        while at < bytes.len() {
            match self.encoded_end(bytes, at) {
                Some(end) => {
                    // A match starts and ends on ASCII bytes, so both are char boundaries.
                    out.push_str(&text[copied..at]);
                    out.push_str("***");
                    copied = end;
                    at = end;
                }
                None => at += 1,
            }
        }
        out.push_str(&text[copied..]);
        out
    }

    /// Where the longest encoded occurrence of the key starting at `start` ends, if one
    /// starts there. Every character may be written in several ways (`%` is itself or
    /// `%25`), so the positions reachable after each character are followed together.
    fn encoded_end(&self, text: &[u8], start: usize) -> Option<usize> {
        // Most positions cannot start one: only the first character, `%`, a backslash or
        // `&` can.
        let first = *text.get(start)?;
        if Some(&first) != self.0.as_bytes().first() && !matches!(first, b'%' | b'\\' | b'&') {
            return None;
        }
        let mut reachable = vec![start];
        let mut next = Vec::new();
        for &wanted in self.0.as_bytes() {
            next.clear();
            for &at in &reachable {
                for end in encoded_char_ends(text, at, wanted).into_iter().flatten() {
                    if !next.contains(&end) {
                        next.push(end);
                    }
                }
            }
            if next.is_empty() {
                return None;
            }
            std::mem::swap(&mut reachable, &mut next);
        }
        reachable.into_iter().max()
    }
}

/// Where the ASCII character `wanted`, written at `at` in one of the forms
/// [`ApiKey::redact`] knows, ends: as itself, `%XX`, `\c` (for `"`, `\` and `/`) or
/// `\uXXXX` (hex digits in either case), or an HTML character reference (`&#34;`,
/// `&#x22;`, and `&quot;`, `&amp;`, `&lt;`, `&gt;`, `&apos;` for the characters they name).
fn encoded_char_ends(text: &[u8], at: usize, wanted: u8) -> [Option<usize>; 5] {
    let byte = |i: usize| text.get(at + i).copied();
    let hex = |from: usize, len: usize| -> Option<u32> {
        let digits = text.get(at + from..at + from + len)?;
        let digits = std::str::from_utf8(digits).ok()?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(digits, 16).ok()
    };
    let wanted_code = u32::from(wanted);
    [
        (byte(0) == Some(wanted)).then_some(at + 1),
        (byte(0) == Some(b'%') && hex(1, 2) == Some(wanted_code)).then_some(at + 3),
        (byte(0) == Some(b'\\')
            && matches!(wanted, b'"' | b'\\' | b'/')
            && byte(1) == Some(wanted))
        .then_some(at + 2),
        (byte(0) == Some(b'\\') && byte(1) == Some(b'u') && hex(2, 4) == Some(wanted_code))
            .then_some(at + 6),
        html_reference_end(text, at, wanted),
    ]
}

/// Where an HTML character reference for `wanted` starting at `at` ends: `&#NN;`,
/// `&#xHH;` (either case, leading zeros allowed) or a named one for `"`, `&`, `<`, `>`
/// and `'`.
fn html_reference_end(text: &[u8], at: usize, wanted: u8) -> Option<usize> {
    let rest = text.get(at..)?;
    if rest.first() != Some(&b'&') {
        return None;
    }
    let end = rest.iter().take(12).position(|&b| b == b';')?;
    let name = std::str::from_utf8(rest.get(1..end)?).ok()?;
    let code = if let Some(number) = name.strip_prefix('#') {
        match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => number.parse().ok()?,
        }
    } else {
        u32::from(match name {
            "quot" => b'"',
            "amp" => b'&',
            "lt" => b'<',
            "gt" => b'>',
            "apos" => b'\'',
            _ => return None,
        })
    };
    (code == u32::from(wanted)).then_some(at + end + 1)
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

#[cfg(test)]
#[path = "attack13_redaction.rs"]
mod attack13_redaction;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert_eq!(
            ApiKey::new("  k3y\n").unwrap().expose_secret(),
            "k3y",
            "surrounding whitespace is trimmed"
        );
        for bad in [
            "",
            "   ",
            "a b",
            "a\tb",
            "a\u{7f}b",
            "clé",
            &"x".repeat(1025),
        ] {
            assert!(
                matches!(ApiKey::new(bad), Err(ValidationError::ApiKey { .. })),
                "{bad:?} should be refused"
            );
        }
        let err = ApiKey::new("secret value").unwrap_err();
        assert!(!err.to_string().contains("secret"));
    }

    #[test]
    fn redaction() {
        let key = ApiKey::new("s3cr3t-key").unwrap();
        assert_eq!(
            format!("{key:?} {key} {key:#?}"),
            "ApiKey(***) ApiKey(***) ApiKey(***)"
        );
        assert_eq!(
            key.redact("got s3cr3t-key twice: s3cr3t-key"),
            "got *** twice: ***"
        );
    }

    #[test]
    fn redaction_of_encoded_forms() {
        let key = ApiKey::new(r#"a"b\c/d+e=f%g"#).unwrap();
        for (text, expected) in [
            (r#"x a"b\c/d+e=f%g y"#, "x *** y"),
            (r#"{"k": "a\"b\\c\/d+e=f%g"}"#, r#"{"k": "***"}"#),
            (r#"{"k": "a\"b\\c/d+e=f%g"}"#, r#"{"k": "***"}"#),
            ("?k=a%22b%5Cc%2Fd%2Be%3Df%25g&", "?k=***&"),
            ("?k=a%22b%5cc%2fd%2be%3df%25g&", "?k=***&"),
            (
                r"\u0061\u0022\u0062\u005C\u0063\u002f\u0064\u002B\u0065\u003d\u0066\u0025\u0067",
                "***",
            ),
            // Mixed in one occurrence, and twice in a row.
            (r#"a\"b%5C\u0063/d+e=f%25ga"b\c/d+e=f%g"#, "******"),
            // Not the key: left alone (a different character, or a cut-off escape).
            (r#"a"b\c/d+e=f%h"#, r#"a"b\c/d+e=f%h"#),
            ("a%22b%5", "a%22b%5"),
            (r"é a\u00", r"é a\u00"),
        ] {
            assert_eq!(key.redact(text), expected, "{text}");
        }
        // `%` in the key matches itself even where it looks like an escape.
        let key = ApiKey::new("k%41").unwrap();
        assert_eq!(key.redact("k%41 k%2541 k%2541"), "*** *** ***");
        assert_eq!(key.redact("kA"), "kA");
    }

    proptest::proptest! {
        /// A text with no escape (`%`, `\`, `&`) can only hold the key as it is: it is
        /// redacted as a plain replace would, the quick way a WhatsApp id takes.
        #[test]
        fn a_text_without_escapes_is_redacted_as_a_plain_replace(
            key in "[a-z0-9]{1,6}",
            text in "[a-z0-9 .:_-]{0,40}",
            at in 0_usize..40,
        ) {
            let secret = ApiKey::new(&key).unwrap();
            let cut = text.len().min(at);
            let text = format!("{}{key}{}", &text[..cut], &text[cut..]);
            proptest::prop_assert_eq!(secret.redact(&text), text.replace(&key, "***"));
            let without = text.replace(&key, "");
            if !without.contains(&key) {
                proptest::prop_assert_eq!(secret.redact(&without), without.clone());
            }
        }
    }
}
