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
    /// A national number (a leading trunk `0`, or a national length) that is not a valid
    /// number of the default country.
    #[error(
        "phone number {input:?} reads as a national number of country code {country} but is not a valid one there; write it in international form, country code first"
    )]
    NotNational {
        /// The input as given.
        input: String,
        /// The default country calling code it was read under.
        country: u16,
    },
    /// A default country calling code that no country has.
    #[error("no country has the calling code {code}")]
    UnknownCountryCode {
        /// The code as given.
        code: u16,
    },
}

/// A phone number in international form: 8 to 15 digits, country code first, no leading 0.
///
/// One person, one number: spellings WhatsApp and people use for the same mobile are one
/// value (see [`PhoneNumber::canonical_digits`]), so `5541988887777` and WhatsApp's id
/// `554188887777` are equal, hash alike and make one store key. The spelling the number
/// was given in is kept beside it ([`PhoneNumber::digits`]) and is what a send uses.
///
/// Stored as a `u64` (15 digits need 50 bits; one spare bit says the spelling differs
/// from the canonical form), which keeps store keys small and makes `+254 712-345-678`
/// and `254712345678` the same value everywhere.
///
/// ```
/// use lipachat_session::PhoneNumber;
///
/// let a: PhoneNumber = "+254 712-345-678".parse()?;
/// let b: PhoneNumber = "254712345678".parse()?;
/// assert_eq!(a, b);
/// assert_eq!(a.to_string(), "254712345678");
///
/// // A Brazilian mobile with and without the ninth digit is one person.
/// let with_nine: PhoneNumber = "+55 41 9 8888-7777".parse()?;
/// let whatsapp_id: PhoneNumber = "554188887777".parse()?;
/// assert_eq!(with_nine, whatsapp_id);
/// assert_eq!(whatsapp_id.to_string(), "5541988887777"); // the key
/// assert_eq!(whatsapp_id.digits(), "554188887777"); // what a send uses
/// # Ok::<(), lipachat_session::PhoneError>(())
/// ```
#[derive(Clone, Copy)]
pub struct PhoneNumber(u64);

/// The bit that marks a number spelled in the alternative form of its country's mobile
/// spellings (the canonical digits are the other bits).
const ALTERNATE: u64 = 1 << 63;

impl PhoneNumber {
    /// The smallest valid number (`10000000`).
    pub const MIN: Self = Self(10u64.pow(MIN_DIGITS as u32 - 1));
    /// The largest valid number (fifteen 9s).
    pub const MAX: Self = Self(10u64.pow(MAX_DIGITS as u32) - 1);

    /// Parses an international number; a leading 0 (a national number) is an error.
    pub fn parse(input: &str) -> Result<Self, PhoneError> {
        PhoneParser::international().parse(input)
    }

    /// The canonical number as an integer (its digits read in base 10): the store key.
    pub fn as_u64(self) -> u64 {
        self.0 & !ALTERNATE
    }

    /// Rebuilds a number from [`PhoneNumber::as_u64`] (canonical, with no other spelling);
    /// `None` when the value is not a valid number (too few or too many digits).
    ///
    /// The value is taken as it is, not canonicalised: a key written before spellings were
    /// unified reads back as the number it was ([`PhoneNumber::is_canonical`] tells).
    pub fn from_u64(value: u64) -> Option<Self> {
        let digits = value.checked_ilog10().map_or(1, |d| d as usize + 1);
        (MIN_DIGITS..=MAX_DIGITS)
            .contains(&digits)
            .then_some(Self(value))
    }

    /// The digits as given, country code first: what the gateway gets in `from` and `to`
    /// (for a number WhatsApp reported, WhatsApp's own spelling).
    pub fn digits(self) -> String {
        match self.alternate_spelling() {
            Some(spelling) => spelling,
            None => self.as_u64().to_string(),
        }
    }

    /// The canonical digits: one spelling per person ([`PhoneNumber::canonical_digits`]).
    pub fn canonical_digits(self) -> String {
        self.as_u64().to_string()
    }

    /// Whether this number's value is in the canonical form (always, for numbers parsed by
    /// this version; a number read back from an older store key may not be).
    pub fn is_canonical(self) -> bool {
        let value = self.as_u64();
        // Only 12- and 13-digit numbers of Mexico (52), Argentina (54) and Brazil (55) have
        // another spelling: everything else is canonical without looking at its digits.
        let digits = value.checked_ilog10().map_or(1, |d| d + 1);
        let leading = if digits >= 2 {
            value / 10u64.pow(digits - 2)
        } else {
            0
        };
        if !matches!(digits, 12 | 13) || !matches!(leading, 52 | 54 | 55) {
            return true;
        }
        let digits = value.to_string();
        canonical(&digits).0 == digits
    }

    /// The same number, spelled canonically.
    pub fn canonical(self) -> Self {
        Self(self.as_u64())
    }

    /// The alternative spelling this number was given in, if any.
    fn alternate_spelling(self) -> Option<String> {
        if self.0 & ALTERNATE == 0 {
            return None;
        }
        let digits = self.as_u64().to_string();
        Some(match MobileSpelling::of_canonical(&digits)? {
            MobileSpelling::Brazil => format!("{}{}", &digits[..4], &digits[5..]),
            MobileSpelling::Mexico => format!("521{}", &digits[2..]),
            MobileSpelling::Argentina => format!("54{}", &digits[3..]),
        })
    }
}

impl PartialEq for PhoneNumber {
    fn eq(&self, other: &Self) -> bool {
        self.as_u64() == other.as_u64()
    }
}

impl Eq for PhoneNumber {}

impl std::hash::Hash for PhoneNumber {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_u64().hash(state);
    }
}

impl PartialOrd for PhoneNumber {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PhoneNumber {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_u64().cmp(&other.as_u64())
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_u64())
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.alternate_spelling() {
            Some(spelling) => write!(f, "PhoneNumber({} spelled {spelling})", self.as_u64()),
            None => write!(f, "PhoneNumber({})", self.as_u64()),
        }
    }
}

impl FromStr for PhoneNumber {
    type Err = PhoneError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for PhoneNumber {
    /// The spelling as given ([`PhoneNumber::digits`]): what a send needs, and what an
    /// export must keep.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.digits())
    }
}

impl<'de> Deserialize<'de> for PhoneNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The countries whose mobiles WhatsApp and people spell two ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MobileSpelling {
    /// Brazil: mobiles gained a ninth digit (a `9` after the two-digit area code) from 2012
    /// to 2016; WhatsApp ids of older accounts lack it (`55 AA 8888-7777` vs
    /// `55 AA 9 8888-7777`). Canonical: with the `9`. Only mobiles (subscriber number
    /// starting 6 to 9); landlines have eight digits and no `9`.
    Brazil,
    /// Mexico: mobiles were dialled from abroad with a `1` after `52` until 2019, and
    /// WhatsApp ids often keep it (`521 55 1234 5678` vs `52 55 1234 5678`). Canonical:
    /// without the `1`.
    Mexico,
    /// Argentina: mobiles take a `9` after `54` internationally (`549 11 1234-5678`), which
    /// people and some systems leave out. Canonical: with the `9`.
    Argentina,
}

impl MobileSpelling {
    /// The country whose alternative spelling a canonical number has, if it has one.
    fn of_canonical(digits: &str) -> Option<Self> {
        let bytes = digits.as_bytes();
        match (digits.len(), bytes) {
            (13, [b'5', b'5', a, b, b'9', s, ..]) if is_br_area(*a, *b) && is_br_mobile(*s) => {
                Some(Self::Brazil)
            }
            (12, [b'5', b'2', ..]) => Some(Self::Mexico),
            (13, [b'5', b'4', b'9', area, ..]) if is_ar_area(*area) => Some(Self::Argentina),
            _ => None,
        }
    }
}

fn is_br_area(a: u8, b: u8) -> bool {
    (b'1'..=b'9').contains(&a) && (b'1'..=b'9').contains(&b)
}

fn is_br_mobile(first: u8) -> bool {
    (b'6'..=b'9').contains(&first)
}

/// Argentina's area codes start with 1, 2 or 3.
fn is_ar_area(first: u8) -> bool {
    (b'1'..=b'3').contains(&first)
}

/// The canonical digits of an international number and whether the input was the
/// alternative spelling.
fn canonical(digits: &str) -> (String, bool) {
    let bytes = digits.as_bytes();
    match (digits.len(), bytes) {
        // Brazil without the ninth digit: 55 AA [6-9]XXXXXXX.
        (12, [b'5', b'5', a, b, s, ..]) if is_br_area(*a, *b) && is_br_mobile(*s) => {
            (format!("{}9{}", &digits[..4], &digits[4..]), true)
        }
        // Mexico with the 1: 521 + ten digits.
        (13, [b'5', b'2', b'1', ..]) => (format!("52{}", &digits[3..]), true),
        // Argentina without the 9: 54 + ten digits, area code first.
        (12, [b'5', b'4', area, ..]) if is_ar_area(*area) => (format!("549{}", &digits[2..]), true),
        _ => (digits.to_owned(), false),
    }
}

/// Parses phone numbers, optionally completing national numbers with a default country
/// calling code.
///
/// Rules, for every parser: separators (`+`, spaces, `-`, `.`, `(`, `)`) are dropped; a
/// trunk prefix written after the country code, `(0)`, is dropped (`+254 (0) 712 345 678`
/// is `254712345678`); a leading `00` is refused (write the country code without a call
/// prefix); Brazilian, Mexican and Argentinian mobile spellings are unified
/// ([`PhoneNumber`]).
///
/// With a default country ([`PhoneParser::with_default_country`]), a national number is
/// completed with it, using libphonenumber's metadata for that country (via the
/// `phonenumber` crate: trunk prefixes, national lengths, Argentina's `15`): a number
/// with a leading trunk `0`, or one written without `+` whose digit count is a national
/// length of the default country (`(650) 555-1234` under country 1). Numbers WhatsApp
/// sends in webhooks are international and never start with 0; parse those with
/// [`PhoneParser::parse_international_or_trunk`], which applies only the trunk rule.
///
/// ```
/// use lipachat_session::PhoneParser;
///
/// let kenya = PhoneParser::with_default_country("254")?;
/// assert_eq!(kenya.parse("0712 345 678")?.to_string(), "254712345678");
/// assert_eq!(kenya.parse("+254712345678")?.to_string(), "254712345678");
/// let us = PhoneParser::with_default_country("1")?;
/// assert_eq!(us.parse("(650) 555-1234")?.to_string(), "16505551234");
/// # Ok::<(), lipachat_session::PhoneError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PhoneParser {
    /// The default country calling code.
    country: Option<u16>,
}

impl PhoneParser {
    /// A parser that accepts international numbers only.
    pub fn international() -> Self {
        Self { country: None }
    }

    /// A parser that completes national numbers with the given country calling code (1 to
    /// 3 digits, for example `"254"`; a leading `+` is allowed).
    pub fn with_default_country(code: &str) -> Result<Self, PhoneError> {
        let trimmed = code.trim().trim_start_matches('+');
        let invalid = || PhoneError::InvalidCountryCode {
            input: code.trim().to_owned(),
        };
        let valid = (1..=3).contains(&trimmed.len())
            && trimmed.bytes().all(|b| b.is_ascii_digit())
            && !trimmed.starts_with('0');
        if !valid {
            return Err(invalid());
        }
        let value = trimmed.parse::<u16>().map_err(|_| invalid())?;
        if national_lengths(value).is_none() {
            return Err(PhoneError::UnknownCountryCode { code: value });
        }
        Ok(Self {
            country: Some(value),
        })
    }

    /// The default country calling code, if any.
    pub fn default_country(&self) -> Option<u16> {
        self.country
    }

    /// Parses `input` as a person writes it: international, or (with a default country)
    /// national by a leading trunk `0` or by its length.
    pub fn parse(&self, input: &str) -> Result<PhoneNumber, PhoneError> {
        self.parse_with(input, true)
    }

    /// Parses `input` as a machine sends it: international, or (with a default country)
    /// national only by a leading trunk `0`. For webhook payloads, where a short
    /// international number must not be taken for a national one.
    pub fn parse_international_or_trunk(&self, input: &str) -> Result<PhoneNumber, PhoneError> {
        self.parse_with(input, false)
    }

    fn parse_with(&self, input: &str, by_length: bool) -> Result<PhoneNumber, PhoneError> {
        let written = Written::read(input)?;
        if written.digits.is_empty() {
            return Err(PhoneError::Empty);
        }
        if written.digits.starts_with("00") {
            return Err(PhoneError::CallPrefix {
                input: input.to_owned(),
            });
        }
        let national = written.digits.starts_with('0')
            || (by_length
                && !written.plus
                && self.country.is_some_and(|code| {
                    national_lengths(code)
                        .is_some_and(|lengths| lengths.contains(&written.digits.len()))
                }));
        let international = if national {
            let Some(code) = self.country else {
                return Err(PhoneError::MissingCountryCode {
                    input: input.to_owned(),
                });
            };
            national_to_international(code, &written.digits).ok_or_else(|| {
                PhoneError::NotNational {
                    input: input.to_owned(),
                    country: code,
                }
            })?
        } else {
            written.digits
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
        let (canonical, alternate) = canonical(&international);
        let value = canonical.parse::<u64>().map_err(|_| length_error())?;
        Ok(PhoneNumber(if alternate {
            value | ALTERNATE
        } else {
            value
        }))
    }
}

/// The digits of an input and whether it was written with a leading `+`.
struct Written {
    digits: String,
    plus: bool,
}

impl Written {
    fn read(input: &str) -> Result<Self, PhoneError> {
        let mut digits = String::with_capacity(input.len());
        let mut plus = false;
        let mut rest = input.trim();
        while let Some(c) = rest.chars().next() {
            // A trunk prefix after the country code: "+254 (0) 712...", "+44 (0)20 ...".
            if !digits.is_empty()
                && let Some(after) = rest.strip_prefix("(0)")
            {
                rest = after;
                continue;
            }
            match c {
                '0'..='9' => digits.push(c),
                '+' if digits.is_empty() => plus = true,
                '+' | ' ' | '-' | '.' | '(' | ')' => {}
                other => {
                    return Err(PhoneError::InvalidCharacter {
                        input: input.to_owned(),
                        found: other,
                    });
                }
            }
            rest = &rest[c.len_utf8()..];
        }
        Ok(Self { digits, plus })
    }
}

/// The libphonenumber metadata of the main country of a calling code.
fn main_country(code: u16) -> Option<&'static phonenumber::metadata::Metadata> {
    let all = phonenumber::metadata::DATABASE.by_code(&code)?;
    all.iter()
        .find(|m| m.is_main_country_for_code())
        .or_else(|| all.first())
        .copied()
}

/// The national number lengths of a calling code's main country: those of its fixed
/// and mobile numbers.
fn national_lengths(code: u16) -> Option<Vec<usize>> {
    let descriptors = main_country(code)?.descriptors();
    let mut lengths: Vec<usize> = [descriptors.fixed_line(), descriptors.mobile()]
        .into_iter()
        .flatten()
        .flat_map(|d| d.possible_length().iter().map(|&n| usize::from(n)))
        .collect();
    lengths.sort_unstable();
    lengths.dedup();
    Some(lengths)
}

/// A national number (digits, perhaps with its trunk prefix) under `code`, as
/// international digits, read with libphonenumber's metadata: the trunk prefix is
/// stripped and the country's transformations applied (Argentina: `0 11 15 1234-5678` is
/// `549 11 1234-5678`). `None` when it is not a valid number of that country.
fn national_to_international(code: u16, national: &str) -> Option<String> {
    let id = main_country(code)?
        .id()
        .parse::<phonenumber::country::Id>()
        .ok()?;
    let number = phonenumber::parse(Some(id), national)
        .ok()
        .filter(|number| number.code().value() == code && number.is_valid())?;
    let zeros = "0".repeat(usize::from(number.national().zeros()));
    Some(format!("{code}{zeros}{}", number.national().value()))
}

#[cfg(test)]
mod tests {
    use super::*;
    fn parse(input: &str) -> PhoneNumber {
        PhoneNumber::parse(input).unwrap()
    }

    #[test]
    fn a_trunk_zero_after_the_country_code_is_dropped() {
        assert_eq!(parse("+254 (0) 712 345 678").as_u64(), 254_712_345_678);
        assert_eq!(parse("+44 (0)20 7946 0958").as_u64(), 442_079_460_958);
        // A "(0)" before any digit is a national trunk prefix, not one to drop.
        assert!(matches!(
            PhoneNumber::parse("(0) 712 345 678"),
            Err(PhoneError::MissingCountryCode { .. })
        ));
    }

    #[test]
    fn brazilian_mobiles_with_and_without_the_ninth_digit_are_one_key() {
        let whatsapp_id = parse("554188887777");
        let written = parse("55 41 9 8888-7777");
        assert_eq!(whatsapp_id, written);
        assert_eq!(whatsapp_id.as_u64(), 5_541_988_887_777);
        assert_eq!(
            whatsapp_id.digits(),
            "554188887777",
            "WhatsApp's spelling is kept"
        );
        assert_eq!(written.digits(), "5541988887777");
        // A landline (subscriber number starting 2 to 5) has no ninth digit to add.
        assert_eq!(parse("55 41 3333-4444").digits(), "554133334444");
        assert_eq!(parse("55 41 3333-4444").as_u64(), 554_133_334_444);
    }

    #[test]
    fn mexican_mobiles_with_and_without_the_one_are_one_key() {
        let whatsapp_id = parse("5215512345678");
        let written = parse("+52 55 1234 5678");
        assert_eq!(whatsapp_id, written);
        assert_eq!(whatsapp_id.to_string(), "525512345678");
        assert_eq!(whatsapp_id.digits(), "5215512345678");
    }

    #[test]
    fn argentinian_mobiles_with_and_without_the_nine_are_one_key() {
        let whatsapp_id = parse("5491112345678");
        let without = parse("+54 11 1234-5678");
        assert_eq!(whatsapp_id, without);
        assert_eq!(without.digits(), "541112345678");
        // The national spelling with the mobile prefix 15, under the default country 54.
        let argentina = PhoneParser::with_default_country("54").unwrap();
        assert_eq!(argentina.parse("011 15 1234-5678").unwrap(), whatsapp_id);
        assert_eq!(
            argentina.parse("0351 15 412-3456").unwrap().as_u64(),
            5_493_514_123_456
        );
    }

    #[test]
    fn national_numbers_use_the_default_country() {
        let us = PhoneParser::with_default_country("1").unwrap();
        assert_eq!(us.parse("(650) 555-1234").unwrap(), parse("16505551234"));
        assert_eq!(us.parse("16505551234").unwrap(), parse("16505551234"));
        let kenya = PhoneParser::with_default_country("254").unwrap();
        assert_eq!(kenya.parse("712 345 678").unwrap(), parse("254712345678"));
        assert_eq!(kenya.parse("0712 345 678").unwrap(), parse("254712345678"));
        // Written with +, a number is never national.
        assert_eq!(
            kenya.parse("+4420 7946 0958").unwrap().as_u64(),
            442_079_460_958
        );
        // A machine's number is national only by its trunk 0.
        assert_eq!(
            kenya
                .parse_international_or_trunk("71234567")
                .unwrap()
                .as_u64(),
            71_234_567
        );
        assert_eq!(
            kenya.parse_international_or_trunk("0712345678").unwrap(),
            parse("254712345678")
        );
        // Mexico's old mobile prefix 044 is no number there any more: refused, not guessed.
        let mexico = PhoneParser::with_default_country("52").unwrap();
        assert!(matches!(
            mexico.parse("044 55 1234 5678"),
            Err(PhoneError::NotNational { country: 52, .. })
        ));
        assert_eq!(mexico.parse("55 1234 5678").unwrap(), parse("525512345678"));
        assert!(matches!(
            PhoneParser::with_default_country("999"),
            Err(PhoneError::UnknownCountryCode { code: 999 })
        ));
    }

    #[test]
    fn serde_keeps_the_spelling_and_display_the_key() {
        let n = parse("554188887777");
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"554188887777\"");
        let back: PhoneNumber = serde_json::from_str("\"554188887777\"").unwrap();
        assert_eq!(back.digits(), "554188887777");
        assert_eq!(
            format!("{n:?}"),
            "PhoneNumber(5541988887777 spelled 554188887777)"
        );
        assert!(n.is_canonical());
        // A key written by an earlier release, before spellings were unified, reads back
        // as it was and says so.
        let legacy = PhoneNumber::from_u64(554_188_887_777).unwrap();
        assert!(!legacy.is_canonical());
        assert_ne!(legacy, n);
    }

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
