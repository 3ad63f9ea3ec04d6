//! Validated phone numbers in international form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The fewest digits an international number may have (country code included).
pub const MIN_DIGITS: usize = 8;
/// The most digits an international number may have (E.164's limit).
pub const MAX_DIGITS: usize = 15;

/// Why a string is not a phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PhoneError {
    /// Nothing was left once separators were removed.
    #[error("phone number is empty")]
    Empty,
    /// A character that is neither a digit nor an allowed separator.
    #[error(
        "phone number {input:?} contains {found:?}; only digits, '+', spaces, '-', '.', '(' and ')' are allowed"
    )]
    InvalidCharacter {
        /// The input as given.
        input: String,
        /// The first offending character.
        found: char,
    },
    /// A national number (leading 0) with no default country calling code configured.
    #[error(
        "phone number {input:?} starts with 0: add the country code (for example 254712345678), or configure a default country calling code"
    )]
    MissingCountryCode {
        /// The input as given.
        input: String,
    },
    /// Too few or too many digits once normalised.
    #[error(
        "phone number {input:?} has {digits} digits; an international number has {MIN_DIGITS} to {MAX_DIGITS}, country code first"
    )]
    Length {
        /// The input as given.
        input: String,
        /// How many digits it had.
        digits: usize,
    },
    /// Starts with `00` (an international call prefix): write the country code without it.
    #[error(
        "phone number {input:?} starts with 00; write the country code without a call prefix (for example 254712345678)"
    )]
    CallPrefix {
        /// The input as given.
        input: String,
    },
    /// A default country calling code that is not 1 to 3 digits, or starts with 0.
    #[error("country calling code {input:?} must be 1 to 3 digits and must not start with 0")]
    InvalidCountryCode {
        /// The code as given.
        input: String,
    },
}

/// A phone number in international form: 8 to 15 digits, country code first, no leading 0.
///
/// Stored as a `u64` (15 digits always fit), which keeps store keys small and makes
/// `+254 712-345-678` and `254712345678` the same value everywhere.
///
/// ```
/// use lipachat_session::PhoneNumber;
///
/// let a: PhoneNumber = "+254 712-345-678".parse()?;
/// let b: PhoneNumber = "254712345678".parse()?;
/// assert_eq!(a, b);
/// assert_eq!(a.to_string(), "254712345678");
/// # Ok::<(), lipachat_session::PhoneError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhoneNumber(u64);

impl PhoneNumber {
    /// The smallest valid number (`10000000`).
    pub const MIN: Self = Self(10u64.pow(MIN_DIGITS as u32 - 1));
    /// The largest valid number (fifteen 9s).
    pub const MAX: Self = Self(10u64.pow(MAX_DIGITS as u32) - 1);

    /// Parses an international number; a leading 0 (a national number) is an error.
    pub fn parse(input: &str) -> Result<Self, PhoneError> {
        PhoneParser::international().parse(input)
    }

    /// The number as an integer (its digits read in base 10).
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// Rebuilds a number from [`PhoneNumber::as_u64`]; `None` when the value is not a valid
    /// number (too few or too many digits).
    pub fn from_u64(value: u64) -> Option<Self> {
        let digits = value.checked_ilog10().map_or(1, |d| d as usize + 1);
        (MIN_DIGITS..=MAX_DIGITS)
            .contains(&digits)
            .then_some(Self(value))
    }

    /// The digits, country code first, as the gateway expects them in `from` and `to`.
    pub fn digits(self) -> String {
        self.0.to_string()
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.0)
    }
}

impl FromStr for PhoneNumber {
    type Err = PhoneError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for PhoneNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PhoneNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Parses phone numbers, optionally completing national numbers with a default country
/// calling code.
///
/// ```
/// use lipachat_session::PhoneParser;
///
/// let kenya = PhoneParser::with_default_country("254")?;
/// assert_eq!(kenya.parse("0712 345 678")?.to_string(), "254712345678");
/// assert_eq!(kenya.parse("+254712345678")?.to_string(), "254712345678");
/// # Ok::<(), lipachat_session::PhoneError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PhoneParser {
    /// The default country calling code and its number of digits.
    country: Option<(u64, u32)>,
}

impl PhoneParser {
    /// A parser that accepts international numbers only.
    pub fn international() -> Self {
        Self { country: None }
    }

    /// A parser that turns a national number with a leading 0 into an international one
    /// with the given country calling code (1 to 3 digits, for example `"254"`).
    pub fn with_default_country(code: &str) -> Result<Self, PhoneError> {
        let code = code.trim().trim_start_matches('+');
        let valid = (1..=3).contains(&code.len())
            && code.bytes().all(|b| b.is_ascii_digit())
            && !code.starts_with('0');
        if !valid {
            return Err(PhoneError::InvalidCountryCode {
                input: code.to_owned(),
            });
        }
        let value = code
            .parse::<u64>()
            .map_err(|_| PhoneError::InvalidCountryCode {
                input: code.to_owned(),
            })?;
        Ok(Self {
            country: Some((value, code.len() as u32)),
        })
    }

    /// Parses `input`: strips `+`, spaces, `-`, `.`, `(` and `)`, then expects 8 to 15 digits
    /// not starting with 0 (or, with a default country code, a national number starting
    /// with 0).
    pub fn parse(&self, input: &str) -> Result<PhoneNumber, PhoneError> {
        let mut digits = String::with_capacity(input.len());
        for c in input.chars() {
            match c {
                '0'..='9' => digits.push(c),
                '+' | ' ' | '-' | '.' | '(' | ')' => {}
                other => {
                    return Err(PhoneError::InvalidCharacter {
                        input: input.to_owned(),
                        found: other,
                    });
                }
            }
        }
        if digits.is_empty() {
            return Err(PhoneError::Empty);
        }
        if digits.starts_with("00") {
            return Err(PhoneError::CallPrefix {
                input: input.to_owned(),
            });
        }
        let international = if let Some(national) = digits.strip_prefix('0') {
            let Some((code, _)) = self.country else {
                return Err(PhoneError::MissingCountryCode {
                    input: input.to_owned(),
                });
            };
            format!("{code}{national}")
        } else {
            digits
        };
        let length_error = || PhoneError::Length {
            input: input.to_owned(),
            digits: international.len(),
        };
        if !(MIN_DIGITS..=MAX_DIGITS).contains(&international.len())
            || international.starts_with('0')
        {
            return Err(length_error());
        }
        international
            .parse::<u64>()
            .map(PhoneNumber)
            .map_err(|_| length_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_are_stripped() {
        for input in [
            "+254 712-345-678",
            "254712345678",
            "(254) 712.345.678",
            " +254712345678 ",
        ] {
            assert_eq!(PhoneNumber::parse(input).unwrap().as_u64(), 254_712_345_678);
        }
    }

    #[test]
    fn national_number_needs_a_country_code() {
        let err = PhoneNumber::parse("0712 345 678").unwrap_err();
        assert!(matches!(err, PhoneError::MissingCountryCode { .. }));
        assert!(err.to_string().contains("add the country code"));
        let kenya = PhoneParser::with_default_country("+254").unwrap();
        assert_eq!(
            kenya.parse("0712 345 678").unwrap(),
            PhoneNumber::parse("254712345678").unwrap()
        );
    }

    #[test]
    fn length_limits() {
        assert!(matches!(
            PhoneNumber::parse("1234567"),
            Err(PhoneError::Length { digits: 7, .. })
        ));
        assert!(PhoneNumber::parse("12345678").is_ok());
        assert!(PhoneNumber::parse("123456789012345").is_ok());
        assert!(matches!(
            PhoneNumber::parse("1234567890123456"),
            Err(PhoneError::Length { digits: 16, .. })
        ));
        assert!(matches!(
            PhoneNumber::parse("99999999999999999999999"),
            Err(PhoneError::Length { .. })
        ));
    }

    #[test]
    fn rejects_bad_characters_and_empty() {
        assert!(matches!(
            PhoneNumber::parse("254712x45678"),
            Err(PhoneError::InvalidCharacter { found: 'x', .. })
        ));
        assert!(matches!(
            PhoneNumber::parse("٢٥٤٧١٢٣٤٥٦٧٨"),
            Err(PhoneError::InvalidCharacter { .. })
        ));
        assert_eq!(PhoneNumber::parse(" + "), Err(PhoneError::Empty));
        assert_eq!(PhoneNumber::parse(""), Err(PhoneError::Empty));
    }

    #[test]
    fn double_leading_zero_is_still_invalid() {
        let kenya = PhoneParser::with_default_country("254").unwrap();
        // "00254..." is an international call prefix, not a national number.
        for parser in [kenya, PhoneParser::international()] {
            assert!(matches!(
                parser.parse("00254712345678"),
                Err(PhoneError::CallPrefix { .. })
            ));
        }
    }

    #[test]
    fn country_code_validation() {
        assert!(PhoneParser::with_default_country("0").is_err());
        assert!(PhoneParser::with_default_country("2545").is_err());
        assert!(PhoneParser::with_default_country("").is_err());
        assert!(PhoneParser::with_default_country("1").is_ok());
    }

    #[test]
    fn u64_round_trip_and_serde() {
        let n = PhoneNumber::parse("254712345678").unwrap();
        assert_eq!(PhoneNumber::from_u64(n.as_u64()), Some(n));
        assert_eq!(PhoneNumber::from_u64(1234567), None);
        assert_eq!(PhoneNumber::from_u64(0), None);
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(json, "\"254712345678\"");
        assert_eq!(serde_json::from_str::<PhoneNumber>(&json).unwrap(), n);
        assert!(serde_json::from_str::<PhoneNumber>("\"abc\"").is_err());
    }
}
