//! The checks every text field of the newer message kinds goes through: present and not
//! blank, within its limit in characters, and free of control characters (line breaks
//! are allowed only where WhatsApp shows several lines: bodies and captions).

use std::collections::HashSet;

use crate::error::ValidationError;

/// Whether a field may hold several lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lines {
    /// A title, label or name: no control character at all.
    One,
    /// A body or caption: line breaks and tabs are allowed, other control characters not.
    Many,
}

/// A required text field: not blank, at most `max` characters, no control characters
/// beyond what `lines` allows.
pub(crate) fn required(
    field: impl Fn() -> String,
    value: &str,
    max: usize,
    lines: Lines,
) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(ValidationError::EmptyField { field: field() });
    }
    within(field, value, max, lines)
}

/// An optional text field, when given: the same checks as [`required`].
pub(crate) fn optional(
    field: impl Fn() -> String,
    value: Option<&str>,
    max: usize,
    lines: Lines,
) -> Result<(), ValidationError> {
    match value {
        Some(value) => required(field, value, max, lines),
        None => Ok(()),
    }
}

/// The length and character checks alone.
fn within(
    field: impl Fn() -> String,
    value: &str,
    max: usize,
    lines: Lines,
) -> Result<(), ValidationError> {
    let chars = value.chars().count();
    if chars > max {
        return Err(ValidationError::FieldTooLong {
            field: field(),
            chars,
            max,
        });
    }
    let refused = |c: char| match lines {
        Lines::One => c.is_control(),
        Lines::Many => c.is_control() && !matches!(c, '\n' | '\r' | '\t'),
    };
    if value.chars().any(refused) {
        return Err(ValidationError::InvalidField {
            field: field(),
            reason: match lines {
                Lines::One => "line breaks, tabs and other control characters are not allowed",
                Lines::Many => "control characters other than line breaks and tabs are not allowed",
            },
        });
    }
    Ok(())
}

/// `count` items where `min..=max` are allowed.
pub(crate) fn count(
    field: &str,
    count: usize,
    min: usize,
    max: usize,
) -> Result<(), ValidationError> {
    if (min..=max).contains(&count) {
        Ok(())
    } else {
        Err(ValidationError::ItemCount {
            field: field.to_owned(),
            count,
            min,
            max,
        })
    }
}

/// Every value appears once.
pub(crate) fn unique<'a>(
    field: &str,
    values: impl IntoIterator<Item = &'a str>,
) -> Result<(), ValidationError> {
    let mut seen = HashSet::new();
    for value in values {
        if !seen.insert(value) {
            return Err(ValidationError::DuplicateValue {
                field: field.to_owned(),
                value: value.chars().take(80).collect(),
            });
        }
    }
    Ok(())
}

/// A field name built only when an error needs it.
pub(crate) fn named(name: &'static str) -> impl Fn() -> String {
    move || name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_characters_and_lines_are_per_kind() {
        assert!(required(named("title"), &"é".repeat(20), 20, Lines::One).is_ok());
        assert_eq!(
            required(named("title"), &"é".repeat(21), 20, Lines::One),
            Err(ValidationError::FieldTooLong {
                field: "title".into(),
                chars: 21,
                max: 20
            })
        );
        assert_eq!(
            required(named("title"), " \t", 20, Lines::One),
            Err(ValidationError::EmptyField {
                field: "title".into()
            })
        );
        assert!(required(named("title"), "a\nb", 20, Lines::One).is_err());
        assert!(required(named("body"), "a\nb\tc", 20, Lines::Many).is_ok());
        assert!(required(named("body"), "a\u{7}b", 20, Lines::Many).is_err());
        assert!(optional(named("x"), None, 1, Lines::One).is_ok());
        assert!(optional(named("x"), Some(""), 1, Lines::One).is_err());
    }

    #[test]
    fn counts_and_uniqueness() {
        assert!(count("buttons", 3, 1, 3).is_ok());
        assert_eq!(
            count("buttons", 4, 1, 3),
            Err(ValidationError::ItemCount {
                field: "buttons".into(),
                count: 4,
                min: 1,
                max: 3
            })
        );
        assert!(count("buttons", 0, 1, 3).is_err());
        assert!(unique("button id", ["a", "b"]).is_ok());
        assert_eq!(
            unique("button id", ["a", "b", "a"]),
            Err(ValidationError::DuplicateValue {
                field: "button id".into(),
                value: "a".into()
            })
        );
    }
}
