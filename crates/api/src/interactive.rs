//! Interactive messages: reply buttons (`POST /api/v1/whatsapp/interactive/buttons`) and
//! lists (`POST /api/v1/whatsapp/interactive/list`).
//!
//! The limits are WhatsApp's (the gateway forwards to it and documents only the counts):
//! a reply button's title at most 20 characters and its id 256; a list's header 60
//! characters, its button text 20, a section title 24, a row title 24, a row description
//! 72 and a row id 200; a body at most 1024 characters. Ids must be unique within a
//! message, and so must button titles (WhatsApp refuses two buttons with one title).

use lipachat_session::Conversation;
use serde::{Deserialize, Serialize};

use crate::MessageId;
use crate::error::ValidationError;
use crate::field::{self, Lines, named};
use crate::request::Addressing;

/// The longest body of a buttons or list message, in characters.
pub const MAX_INTERACTIVE_BODY_CHARS: usize = 1024;
/// The fewest reply buttons on a buttons message.
pub const MIN_BUTTONS: usize = 1;
/// The most reply buttons on a buttons message.
pub const MAX_BUTTONS: usize = 3;
/// The longest reply button title, in characters.
pub const MAX_BUTTON_TITLE_CHARS: usize = 20;
/// The longest reply button id, in characters.
pub const MAX_BUTTON_ID_CHARS: usize = 256;
/// The longest list header, in characters.
pub const MAX_LIST_HEADER_CHARS: usize = 60;
/// The longest text of the button that opens a list, in characters.
pub const MAX_LIST_BUTTON_TEXT_CHARS: usize = 20;
/// The most sections in a list.
pub const MAX_LIST_SECTIONS: usize = 10;
/// The most rows in a list, all sections together.
pub const MAX_LIST_ROWS: usize = 10;
/// The longest section title, in characters.
pub const MAX_SECTION_TITLE_CHARS: usize = 24;
/// The longest row title, in characters.
pub const MAX_ROW_TITLE_CHARS: usize = 24;
/// The longest row description, in characters.
pub const MAX_ROW_DESCRIPTION_CHARS: usize = 72;
/// The longest row id, in characters.
pub const MAX_ROW_ID_CHARS: usize = 200;

/// One reply button: the id the customer's reply carries back, and the title shown.
/// Checked when put on a [`ButtonsMessage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyButton {
    /// Comes back in the customer's `button_reply` (1 to 256 characters).
    pub id: String,
    /// Shown on the button (1 to 20 characters, one line).
    pub title: String,
}

impl ReplyButton {
    /// A button.
    pub fn new(id: impl Into<String>, title: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            title: title.into(),
        }
    }
}

/// Text with one to three reply buttons.
///
/// ```
/// use lipachat_api::{ButtonsMessage, ReplyButton};
///
/// let question = ButtonsMessage::new(
///     "Did this answer your question?",
///     vec![ReplyButton::new("yes", "Yes"), ReplyButton::new("no", "No")],
/// )?;
/// assert_eq!(question.buttons().len(), 2);
/// assert!(ButtonsMessage::new("Pick", vec![]).is_err());
/// assert!(ButtonsMessage::new("Pick", vec![ReplyButton::new("a", "A title over twenty chars")]).is_err());
/// # Ok::<(), lipachat_api::ValidationError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ButtonsRepr")]
pub struct ButtonsMessage {
    text: String,
    buttons: Vec<ReplyButton>,
}

/// The unchecked shape [`ButtonsMessage`] is deserialised through.
#[derive(Deserialize)]
struct ButtonsRepr {
    text: String,
    buttons: Vec<ReplyButton>,
}

impl TryFrom<ButtonsRepr> for ButtonsMessage {
    type Error = ValidationError;

    fn try_from(repr: ButtonsRepr) -> Result<Self, Self::Error> {
        Self::new(repr.text, repr.buttons)
    }
}

impl ButtonsMessage {
    /// A buttons message: `text` (1 to 1024 characters) and 1 to 3 buttons with unique
    /// ids and titles.
    pub fn new(
        text: impl Into<String>,
        buttons: Vec<ReplyButton>,
    ) -> Result<Self, ValidationError> {
        let text = text.into();
        field::required(
            named("text"),
            &text,
            MAX_INTERACTIVE_BODY_CHARS,
            Lines::Many,
        )?;
        field::count("buttons", buttons.len(), MIN_BUTTONS, MAX_BUTTONS)?;
        for (index, button) in buttons.iter().enumerate() {
            let place = |part: &'static str| move || format!("button #{} {part}", index + 1);
            field::required(place("id"), &button.id, MAX_BUTTON_ID_CHARS, Lines::One)?;
            field::required(
                place("title"),
                &button.title,
                MAX_BUTTON_TITLE_CHARS,
                Lines::One,
            )?;
        }
        field::unique("button id", buttons.iter().map(|b| b.id.as_str()))?;
        field::unique("button title", buttons.iter().map(|b| b.title.as_str()))?;
        Ok(Self { text, buttons })
    }

    /// The text above the buttons.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The buttons, in order.
    pub fn buttons(&self) -> &[ReplyButton] {
        &self.buttons
    }
}

/// One row of a list: the id the customer's reply carries back, a title and an optional
/// description. Checked when its list is built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRow {
    /// Comes back in the customer's `list_reply` (1 to 200 characters).
    pub id: String,
    /// Shown in the list (1 to 24 characters, one line).
    pub title: String,
    /// Shown under the title (1 to 72 characters, one line), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl ListRow {
    /// A row without a description.
    pub fn new(id: impl Into<String>, title: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            title: title.into(),
            description: None,
        }
    }

    /// The same row with a description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }
}

/// A titled group of rows. Checked when its list is built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListSection {
    /// The section's title (1 to 24 characters, one line).
    pub title: String,
    /// Its rows, at least one.
    pub rows: Vec<ListRow>,
}

impl ListSection {
    /// A section.
    pub fn new(title: impl Into<String>, rows: Vec<ListRow>) -> Self {
        Self {
            title: title.into(),
            rows,
        }
    }
}

/// A list message: a header, a body, the text of the button that opens the list, and 1
/// to 10 sections holding 1 to 10 rows in all (each section at least one), row ids
/// unique.
///
/// ```
/// use lipachat_api::{ListMessage, ListRow, ListSection};
///
/// let menu = ListMessage::new(
///     "Our branches",
///     "Where would you like to pick up your order?",
///     "Choose",
///     vec![ListSection::new("Nairobi", vec![
///         ListRow::new("nbo-cbd", "CBD").with_description("Kenyatta Avenue, open 8-20"),
///         ListRow::new("nbo-west", "Westlands"),
///     ])],
/// )?;
/// assert_eq!(menu.row_count(), 2);
/// # Ok::<(), lipachat_api::ValidationError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ListRepr")]
pub struct ListMessage {
    header: String,
    body: String,
    button_text: String,
    sections: Vec<ListSection>,
}

/// The unchecked shape [`ListMessage`] is deserialised through.
#[derive(Deserialize)]
struct ListRepr {
    header: String,
    body: String,
    button_text: String,
    sections: Vec<ListSection>,
}

impl TryFrom<ListRepr> for ListMessage {
    type Error = ValidationError;

    fn try_from(repr: ListRepr) -> Result<Self, Self::Error> {
        Self::new(repr.header, repr.body, repr.button_text, repr.sections)
    }
}

impl ListMessage {
    /// A list message, checked against WhatsApp's limits: a header of at most 60
    /// characters, a button text of 20, section titles and row titles of 24, row
    /// descriptions of 72, row ids of 200 (unique within the message), a body of 1024.
    pub fn new(
        header: impl Into<String>,
        body: impl Into<String>,
        button_text: impl Into<String>,
        sections: Vec<ListSection>,
    ) -> Result<Self, ValidationError> {
        let (header, body, button_text) = (header.into(), body.into(), button_text.into());
        field::required(named("header"), &header, MAX_LIST_HEADER_CHARS, Lines::One)?;
        field::required(
            named("body"),
            &body,
            MAX_INTERACTIVE_BODY_CHARS,
            Lines::Many,
        )?;
        field::required(
            named("button text"),
            &button_text,
            MAX_LIST_BUTTON_TEXT_CHARS,
            Lines::One,
        )?;
        field::count("sections", sections.len(), 1, MAX_LIST_SECTIONS)?;
        for (s, section) in sections.iter().enumerate() {
            let section_place = move || format!("section #{} title", s + 1);
            field::required(
                section_place,
                &section.title,
                MAX_SECTION_TITLE_CHARS,
                Lines::One,
            )?;
            field::count(
                &format!("rows of section #{}", s + 1),
                section.rows.len(),
                1,
                MAX_LIST_ROWS,
            )?;
            for (r, row) in section.rows.iter().enumerate() {
                let place = |part: &'static str| {
                    move || format!("section #{} row #{} {part}", s + 1, r + 1)
                };
                field::required(place("id"), &row.id, MAX_ROW_ID_CHARS, Lines::One)?;
                field::required(place("title"), &row.title, MAX_ROW_TITLE_CHARS, Lines::One)?;
                field::optional(
                    place("description"),
                    row.description.as_deref(),
                    MAX_ROW_DESCRIPTION_CHARS,
                    Lines::One,
                )?;
            }
        }
        let rows = sections.iter().map(|s| s.rows.len()).sum();
        field::count("rows in all", rows, 1, MAX_LIST_ROWS)?;
        field::unique(
            "row id",
            sections
                .iter()
                .flat_map(|s| s.rows.iter().map(|r| r.id.as_str())),
        )?;
        Ok(Self {
            header,
            body,
            button_text,
            sections,
        })
    }

    /// The header text.
    pub fn header(&self) -> &str {
        &self.header
    }

    /// The body text.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The text of the button that opens the list.
    pub fn button_text(&self) -> &str {
        &self.button_text
    }

    /// The sections, in order.
    pub fn sections(&self) -> &[ListSection] {
        &self.sections
    }

    /// How many rows the sections hold together.
    pub fn row_count(&self) -> usize {
        self.sections.iter().map(|s| s.rows.len()).sum()
    }
}

/// Body of `POST /api/v1/whatsapp/interactive/buttons`, in the documented field order:
/// `{messageId, from, to, text, buttons: [{id, title}]}` (the docs' field table says
/// `message`; their example and a working client use `text`, as here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ButtonsRequest {
    /// `messageId`, `from` and `to`.
    #[serde(flatten)]
    pub addressing: Addressing,
    /// The text above the buttons.
    pub text: String,
    /// The buttons.
    pub buttons: Vec<ReplyButton>,
}

impl ButtonsRequest {
    /// The request for one send of `message` in `conversation`;
    /// [`ValidationError::NotAddressable`] when the customer has no phone number.
    pub fn new(
        conversation: Conversation,
        id: MessageId,
        message: &ButtonsMessage,
    ) -> Result<Self, ValidationError> {
        Ok(Self {
            addressing: Addressing::new(conversation, id)?,
            text: message.text.clone(),
            buttons: message.buttons.clone(),
        })
    }

    /// The conversation, id and (re-validated) message this request carries.
    #[cfg(test)]
    pub(crate) fn into_parts(
        self,
    ) -> Result<(Conversation, MessageId, ButtonsMessage), ValidationError> {
        Ok((
            self.addressing.conversation(),
            self.addressing.message_id,
            ButtonsMessage::new(self.text, self.buttons)?,
        ))
    }
}

/// Body of `POST /api/v1/whatsapp/interactive/list`, in the documented field order:
/// `{messageId, from, to, headerText, body, buttonText, buttons: [{sectionTitle,
/// sectionItems: [{id, title, description?}]}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListRequest {
    /// `messageId`, `from` and `to`.
    #[serde(flatten)]
    pub addressing: Addressing,
    /// The header.
    pub header_text: String,
    /// The body.
    pub body: String,
    /// The text of the button that opens the list.
    pub button_text: String,
    /// The sections (the gateway calls them `buttons`).
    pub buttons: Vec<ListRequestSection>,
}

/// One section of a list request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListRequestSection {
    /// The section's title.
    pub section_title: String,
    /// Its rows.
    pub section_items: Vec<ListRow>,
}

impl ListRequest {
    /// The request for one send of `message` in `conversation`;
    /// [`ValidationError::NotAddressable`] when the customer has no phone number.
    pub fn new(
        conversation: Conversation,
        id: MessageId,
        message: &ListMessage,
    ) -> Result<Self, ValidationError> {
        Ok(Self {
            addressing: Addressing::new(conversation, id)?,
            header_text: message.header.clone(),
            body: message.body.clone(),
            button_text: message.button_text.clone(),
            buttons: message
                .sections
                .iter()
                .map(|section| ListRequestSection {
                    section_title: section.title.clone(),
                    section_items: section.rows.clone(),
                })
                .collect(),
        })
    }

    /// The conversation, id and (re-validated) list this request carries.
    #[cfg(test)]
    pub(crate) fn into_parts(
        self,
    ) -> Result<(Conversation, MessageId, ListMessage), ValidationError> {
        let sections = self
            .buttons
            .into_iter()
            .map(|s| ListSection::new(s.section_title, s.section_items))
            .collect();
        Ok((
            self.addressing.conversation(),
            self.addressing.message_id,
            ListMessage::new(self.header_text, self.body, self.button_text, sections)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buttons(n: usize) -> Vec<ReplyButton> {
        (0..n)
            .map(|i| ReplyButton::new(format!("id-{i}"), format!("Title {i}")))
            .collect()
    }

    #[test]
    fn buttons_limits() {
        assert!(ButtonsMessage::new("Pick", buttons(1)).is_ok());
        assert!(ButtonsMessage::new("Pick", buttons(3)).is_ok());
        assert!(matches!(
            ButtonsMessage::new("Pick", buttons(4)),
            Err(ValidationError::ItemCount {
                count: 4,
                max: 3,
                ..
            })
        ));
        assert!(matches!(
            ButtonsMessage::new("Pick", buttons(0)),
            Err(ValidationError::ItemCount {
                count: 0,
                min: 1,
                ..
            })
        ));
        let twice = vec![ReplyButton::new("a", "One"), ReplyButton::new("a", "Two")];
        assert_eq!(
            ButtonsMessage::new("Pick", twice),
            Err(ValidationError::DuplicateValue {
                field: "button id".into(),
                value: "a".into()
            })
        );
        let same_title = vec![ReplyButton::new("a", "Same"), ReplyButton::new("b", "Same")];
        assert!(ButtonsMessage::new("Pick", same_title).is_err());
        let long = vec![
            ReplyButton::new("a", "t"),
            ReplyButton::new("b", "x".repeat(21)),
        ];
        assert_eq!(
            ButtonsMessage::new("Pick", long),
            Err(ValidationError::FieldTooLong {
                field: "button #2 title".into(),
                chars: 21,
                max: 20
            })
        );
        assert!(ButtonsMessage::new("x".repeat(1025), buttons(1)).is_err());
        assert!(ButtonsMessage::new(" ", buttons(1)).is_err());
    }

    #[test]
    fn list_limits() {
        let rows = |n: usize, from: usize| -> Vec<ListRow> {
            (from..from + n)
                .map(|i| ListRow::new(format!("r{i}"), format!("Row {i}")))
                .collect()
        };
        let list =
            |sections: Vec<ListSection>| ListMessage::new("Header", "Body", "Open", sections);
        assert!(list(vec![ListSection::new("A", rows(10, 0))]).is_ok());
        assert!(matches!(
            list(vec![
                ListSection::new("A", rows(6, 0)),
                ListSection::new("B", rows(5, 6))
            ]),
            Err(ValidationError::ItemCount {
                count: 11,
                max: 10,
                ..
            })
        ));
        let ten: Vec<ListSection> = (0..10)
            .map(|i| ListSection::new(format!("S{i}"), rows(1, i)))
            .collect();
        assert!(list(ten.clone()).is_ok());
        let mut eleven = ten;
        eleven.push(ListSection::new("S10", rows(1, 10)));
        assert!(matches!(
            list(eleven),
            Err(ValidationError::ItemCount { count: 11, .. })
        ));
        assert!(list(vec![ListSection::new("Empty", vec![])]).is_err());
        let duplicate = vec![
            ListSection::new("A", rows(1, 0)),
            ListSection::new("B", rows(1, 0)),
        ];
        assert!(matches!(
            list(duplicate),
            Err(ValidationError::DuplicateValue { .. })
        ));
        let described = ListRow::new("r", "Row").with_description("d".repeat(73));
        assert_eq!(
            list(vec![ListSection::new("A", vec![described])]),
            Err(ValidationError::FieldTooLong {
                field: "section #1 row #1 description".into(),
                chars: 73,
                max: 72
            })
        );
        assert!(
            ListMessage::new(
                "h".repeat(61),
                "Body",
                "Open",
                vec![ListSection::new("A", rows(1, 0))]
            )
            .is_err()
        );
        assert!(
            ListMessage::new(
                "Header",
                "Body",
                "o".repeat(21),
                vec![ListSection::new("A", rows(1, 0))]
            )
            .is_err()
        );
    }
}
