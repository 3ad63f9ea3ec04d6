//! A contact card (the seed's `POST /api/v1/whatsapp/contact`).

use lipachat_session::PhoneNumber;
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// The longest formatted name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 512;
/// The longest phone `type` accepted, in characters.
pub const MAX_PHONE_TYPE_CHARS: usize = 64;
/// The most phone numbers one card may hold.
pub const MAX_PHONES: usize = 20;

/// One phone number on a contact card.
///
/// Checked when it is put on a [`ContactMessage`]: `phone_type` must be 1 to 64
/// characters without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactPhone {
    /// The number shown on the card.
    pub phone: PhoneNumber,
    /// Free text such as `Cell`, `Mobile`, `Main`, `iPhone`, `Home` or `Work` (the wire's
    /// `type`).
    pub phone_type: String,
    /// The WhatsApp user id (the number's digits) when the number is on WhatsApp. Without
    /// it, WhatsApp shows an "Invite to WhatsApp" button instead of the usual ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<PhoneNumber>,
}

impl ContactPhone {
    /// A phone of the given type, without a WhatsApp id.
    pub fn new(phone: PhoneNumber, phone_type: impl Into<String>) -> Self {
        Self {
            phone,
            phone_type: phone_type.into(),
            wa_id: None,
        }
    }

    /// A phone of the given type whose WhatsApp id is the number itself (the usual case
    /// for a number registered on WhatsApp).
    pub fn on_whatsapp(phone: PhoneNumber, phone_type: impl Into<String>) -> Self {
        Self {
            wa_id: Some(phone),
            ..Self::new(phone, phone_type)
        }
    }

    /// The same phone with a WhatsApp id.
    pub fn with_wa_id(mut self, wa_id: PhoneNumber) -> Self {
        self.wa_id = Some(wa_id);
        self
    }

    fn validate(&self) -> Result<(), ValidationError> {
        let chars = self.phone_type.chars().count();
        if self.phone_type.trim().is_empty() || chars > MAX_PHONE_TYPE_CHARS {
            return Err(ValidationError::PhoneType {
                chars,
                max: MAX_PHONE_TYPE_CHARS,
            });
        }
        if self.phone_type.chars().any(char::is_control) {
            return Err(ValidationError::ControlCharacter {
                field: "phone type",
            });
        }
        Ok(())
    }
}

/// A contact card: a formatted name and one or more phone numbers.
///
/// Always valid: the constructor and deserialisation both check it, so a tampered stored
/// copy cannot smuggle an invalid card into a send.
///
/// ```
/// use lipachat_api::{ContactMessage, ContactPhone};
///
/// let phone = "254712345678".parse()?;
/// let card = ContactMessage::new("Test User", vec![ContactPhone::on_whatsapp(phone, "Cell")])?;
/// assert_eq!(card.formatted_name(), "Test User");
/// assert!(ContactMessage::new(" ", vec![ContactPhone::new(phone, "Cell")]).is_err());
/// assert!(ContactMessage::new("Test User", vec![]).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ContactMessageRepr")]
pub struct ContactMessage {
    formatted_name: String,
    phones: Vec<ContactPhone>,
}

/// The unchecked shape [`ContactMessage`] is deserialised through.
#[derive(Deserialize)]
struct ContactMessageRepr {
    formatted_name: String,
    phones: Vec<ContactPhone>,
}

impl TryFrom<ContactMessageRepr> for ContactMessage {
    type Error = ValidationError;

    fn try_from(repr: ContactMessageRepr) -> Result<Self, Self::Error> {
        Self::new(repr.formatted_name, repr.phones)
    }
}

impl ContactMessage {
    /// A card with a formatted name (non-empty, at most 512 characters, no control
    /// characters) and 1 to 20 phones.
    pub fn new(
        formatted_name: impl Into<String>,
        phones: Vec<ContactPhone>,
    ) -> Result<Self, ValidationError> {
        let formatted_name = formatted_name.into();
        if formatted_name.trim().is_empty() {
            return Err(ValidationError::EmptyName);
        }
        let chars = formatted_name.chars().count();
        if chars > MAX_NAME_CHARS {
            return Err(ValidationError::NameTooLong {
                chars,
                max: MAX_NAME_CHARS,
            });
        }
        if formatted_name.chars().any(char::is_control) {
            return Err(ValidationError::ControlCharacter {
                field: "contact name",
            });
        }
        if phones.is_empty() {
            return Err(ValidationError::NoPhones);
        }
        if phones.len() > MAX_PHONES {
            return Err(ValidationError::TooManyPhones {
                count: phones.len(),
                max: MAX_PHONES,
            });
        }
        for phone in &phones {
            phone.validate()?;
        }
        Ok(Self {
            formatted_name,
            phones,
        })
    }

    /// The name shown in the chat beside the profile arrow (`name.formattedName`).
    pub fn formatted_name(&self) -> &str {
        &self.formatted_name
    }

    /// The phone numbers, at least one.
    pub fn phones(&self) -> &[ContactPhone] {
        &self.phones
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone() -> PhoneNumber {
        "254712345678".parse().unwrap()
    }

    #[test]
    fn validation_errors() {
        let p = ContactPhone::new(phone(), "Cell");
        assert_eq!(
            ContactMessage::new("", vec![p.clone()]),
            Err(ValidationError::EmptyName)
        );
        assert!(matches!(
            ContactMessage::new("x".repeat(513), vec![p.clone()]),
            Err(ValidationError::NameTooLong { chars: 513, .. })
        ));
        assert!(matches!(
            ContactMessage::new("a\nb", vec![p.clone()]),
            Err(ValidationError::ControlCharacter { .. })
        ));
        assert_eq!(
            ContactMessage::new("A", vec![]),
            Err(ValidationError::NoPhones)
        );
        assert!(matches!(
            ContactMessage::new("A", vec![p.clone(); 21]),
            Err(ValidationError::TooManyPhones { count: 21, .. })
        ));
        assert!(matches!(
            ContactMessage::new("A", vec![ContactPhone::new(phone(), " ")]),
            Err(ValidationError::PhoneType { .. })
        ));
        assert!(ContactMessage::new("A", vec![p; 20]).is_ok());
    }

    #[test]
    fn storage_round_trip_and_revalidation() {
        let card = ContactMessage::new(
            "Test User",
            vec![
                ContactPhone::on_whatsapp(phone(), "Cell"),
                ContactPhone::new("14155550100".parse().unwrap(), "Work"),
            ],
        )
        .unwrap();
        let json = serde_json::to_value(&card).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "formatted_name": "Test User",
                "phones": [
                    {"phone": "254712345678", "phone_type": "Cell", "wa_id": "254712345678"},
                    {"phone": "14155550100", "phone_type": "Work"}
                ]
            })
        );
        assert_eq!(
            serde_json::from_value::<ContactMessage>(json).unwrap(),
            card
        );
        for tampered in [
            serde_json::json!({"formatted_name": "", "phones": [{"phone": "254712345678", "phone_type": "Cell"}]}),
            serde_json::json!({"formatted_name": "A", "phones": []}),
            serde_json::json!({"formatted_name": "A", "phones": [{"phone": "0712", "phone_type": "Cell"}]}),
            serde_json::json!({"formatted_name": "A", "phones": [{"phone": "254712345678", "phone_type": ""}]}),
        ] {
            assert!(serde_json::from_value::<ContactMessage>(tampered).is_err());
        }
    }
}
