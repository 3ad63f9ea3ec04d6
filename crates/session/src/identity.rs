//! Identities other than a phone number: business-scoped user ids and group ids.
//!
//! Since 2026 a WhatsApp user may be known to a business only by a business-scoped user
//! id (BSUID), for example when they use a username and have not exchanged a message or
//! call with the business recently; and a business may message a group, whose window is
//! the group's, not any member's. These newtypes validate what webhooks carry so that the
//! stores can key on them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The most alphanumerics after the country code (and `ENT.`) of a BSUID.
pub const MAX_BSUID_ID_CHARS: usize = 128;

/// The longest group id accepted, in bytes.
pub const MAX_GROUP_ID_BYTES: usize = 256;

/// Why a string is not a business-scoped user id or a group id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Nothing was given.
    #[error("{what} is empty")]
    Empty {
        /// What was expected (`business-scoped user id`, `group id`).
        what: &'static str,
    },
    /// Not two uppercase letters, a dot, (for a parent id `ENT.`,) then 1 to 128 ASCII
    /// letters and digits.
    #[error(
        "business-scoped user id {input:?} is malformed: expected a two-letter country code, a dot, then 1 to {MAX_BSUID_ID_CHARS} letters or digits (for example US.13491208655302741918, or US.ENT.11815799212886844830 for a parent id)"
    )]
    Bsuid {
        /// The input as given (shortened).
        input: String,
    },
    /// Too long, or a character outside ASCII letters, digits and `-_.=@:+/`.
    #[error(
        "group id {input:?} is malformed: expected 1 to {MAX_GROUP_ID_BYTES} ASCII letters, digits or -_.=@:+/"
    )]
    GroupId {
        /// The input as given (shortened).
        input: String,
    },
}

/// The input quoted in an error, shortened so a hostile payload cannot flood a log.
fn quoted(input: &str) -> String {
    input.chars().take(64).collect()
}

/// `FromStr` (via `parse`), `Display` (as written), `Debug` (`Name(…)`) and serde as a
/// string (validated on the way in) for a validated string newtype.
macro_rules! validated_string_impls {
    ($name:ident) => {
        impl FromStr for $name {
            type Err = IdentityError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A business-scoped user id (BSUID): how WhatsApp names a user to one business
/// portfolio, beside or instead of their phone number.
///
/// The form is a two-letter country code, a dot, then up to 128 letters and digits
/// (`US.13491208655302741918`). A *parent* id, shared by linked business portfolios, has
/// `ENT.` after the country code (`US.ENT.11815799212886844830`). Surrounding whitespace
/// is trimmed; nothing else is changed (ids are compared exactly).
///
/// ```
/// use lipachat_session::Bsuid;
///
/// let user: Bsuid = "US.13491208655302741918".parse()?;
/// assert_eq!(user.country(), "US");
/// assert!(!user.is_parent());
/// let parent: Bsuid = "US.ENT.11815799212886844830".parse()?;
/// assert!(parent.is_parent());
/// assert!("13491208655302741918".parse::<Bsuid>().is_err());
/// # Ok::<(), lipachat_session::IdentityError>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bsuid(Box<str>);

impl Bsuid {
    /// Parses a BSUID or a parent BSUID.
    pub fn parse(input: &str) -> Result<Self, IdentityError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(IdentityError::Empty {
                what: "business-scoped user id",
            });
        }
        let malformed = || IdentityError::Bsuid {
            input: quoted(input),
        };
        let (country, rest) = trimmed.split_once('.').ok_or_else(malformed)?;
        let id = rest.strip_prefix("ENT.").unwrap_or(rest);
        let country_ok = country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase());
        let id_ok = (1..=MAX_BSUID_ID_CHARS).contains(&id.len())
            && id.bytes().all(|b| b.is_ascii_alphanumeric());
        if country_ok && id_ok {
            Ok(Self(trimmed.into()))
        } else {
            Err(malformed())
        }
    }

    /// The id as written (`US.13491208655302741918`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The two-letter country code it starts with.
    pub fn country(&self) -> &str {
        &self.0[..2]
    }

    /// Whether it is a parent id (`CC.ENT.…`), shared by linked business portfolios.
    pub fn is_parent(&self) -> bool {
        self.0[3..].starts_with("ENT.")
    }
}

validated_string_impls!(Bsuid);

/// A WhatsApp group's id, as the Groups API and group webhooks give it (for example
/// `Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD`).
///
/// A message in a group opens the window of the (business, group) conversation, never a
/// member's 1:1 window. The id is opaque: 1 to 256 ASCII letters, digits or `-_.=@:+/`
/// (base64 ids and `…@g.us` ids both fit), surrounding whitespace trimmed.
///
/// ```
/// use lipachat_session::GroupId;
///
/// let group: GroupId = " Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD ".parse()?;
/// assert_eq!(group.as_str(), "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD");
/// assert!("two words".parse::<GroupId>().is_err());
/// # Ok::<(), lipachat_session::IdentityError>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(Box<str>);

impl GroupId {
    /// Parses a group id.
    pub fn parse(input: &str) -> Result<Self, IdentityError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(IdentityError::Empty { what: "group id" });
        }
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-_.=@:+/".contains(&b);
        if trimmed.len() <= MAX_GROUP_ID_BYTES && trimmed.bytes().all(allowed) {
            Ok(Self(trimmed.into()))
        } else {
            Err(IdentityError::GroupId {
                input: quoted(input),
            })
        }
    }

    /// The id as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

validated_string_impls!(GroupId);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bsuids_from_the_platform_docs() {
        for (input, country, parent) in [
            ("US.13491208655302741918", "US", false),
            ("US.ENT.11815799212886844830", "US", true),
            ("BR.1502576394655843", "BR", false),
            ("MX.0987654321", "MX", false),
            (" IN.1648738043044942 ", "IN", false),
            ("HK.xxxxxxxxxxxxx", "HK", false),
        ] {
            let id = Bsuid::parse(input).unwrap();
            assert_eq!(id.as_str(), input.trim());
            assert_eq!((id.country(), id.is_parent()), (country, parent), "{input}");
            assert_eq!(id.to_string().parse::<Bsuid>().unwrap(), id);
            assert_eq!(format!("{id:?}"), format!("Bsuid({})", input.trim()));
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(serde_json::from_str::<Bsuid>(&json).unwrap(), id);
        }
    }

    #[test]
    fn malformed_bsuids_are_refused_with_a_reason() {
        assert_eq!(
            Bsuid::parse("  "),
            Err(IdentityError::Empty {
                what: "business-scoped user id"
            })
        );
        for bad in [
            "13491208655302741918",
            "us.1349",
            "USA.1349",
            "U.1349",
            "US.",
            "US.ENT.",
            "US.13-49",
            "US.13 49",
            "<BSUID>",
            "US.ENT.ENT.1",
            "ÜS.1349",
        ] {
            let error = Bsuid::parse(bad).unwrap_err();
            assert!(matches!(error, IdentityError::Bsuid { .. }), "{bad}");
            assert!(error.to_string().contains("two-letter country code"));
        }
        let longest = format!("US.{}", "9".repeat(MAX_BSUID_ID_CHARS));
        assert!(Bsuid::parse(&longest).is_ok());
        assert!(Bsuid::parse(&format!("{longest}9")).is_err());
        assert!(serde_json::from_str::<Bsuid>("\"not one\"").is_err());
        // A long hostile input is shortened in the error.
        let error = Bsuid::parse(&"x".repeat(10_000)).unwrap_err();
        assert!(error.to_string().len() < 400);
    }

    #[test]
    fn group_ids() {
        for ok in [
            "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD",
            "120363040694233820@g.us",
            "abc-_.=:+/",
        ] {
            assert_eq!(GroupId::parse(ok).unwrap().as_str(), ok);
        }
        assert_eq!(
            GroupId::parse(""),
            Err(IdentityError::Empty { what: "group id" })
        );
        for bad in ["two words", "<GROUP_ID>", "é", &"a".repeat(257)] {
            assert!(
                matches!(GroupId::parse(bad), Err(IdentityError::GroupId { .. })),
                "{bad}"
            );
        }
        let group = GroupId::parse("g1").unwrap();
        let json = serde_json::to_string(&group).unwrap();
        assert_eq!(json, "\"g1\"");
        assert_eq!(serde_json::from_str::<GroupId>(&json).unwrap(), group);
    }

    proptest! {
        #[test]
        fn well_formed_bsuids_round_trip(
            country in "[A-Z]{2}",
            parent in any::<bool>(),
            id in "[A-Za-z0-9]{1,128}",
        ) {
            let text = format!("{country}.{}{id}", if parent { "ENT." } else { "" });
            let parsed = Bsuid::parse(&text).unwrap();
            prop_assert_eq!(parsed.as_str(), text.as_str());
            prop_assert_eq!(parsed.country(), country.as_str());
            prop_assert_eq!(parsed.is_parent(), parent);
        }

        #[test]
        fn whatever_parses_as_a_bsuid_has_its_form(input in "\\PC{0,40}|[A-Z]{2}\\.[A-Za-z0-9.]{0,20}") {
            if let Ok(id) = Bsuid::parse(&input) {
                let text = id.as_str();
                let (country, rest) = text.split_once('.').unwrap();
                prop_assert!(country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase()));
                let rest = rest.strip_prefix("ENT.").unwrap_or(rest);
                prop_assert!(!rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()));
            }
        }
    }
}
