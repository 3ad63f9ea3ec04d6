//! What the send path stored, read back for people: a queued message's content and a
//! send's outcome. Both are JSON text the policy wrote (the outbox payload, and
//! [`PreviousOutcome`]); this tool only reads them.

use lipachat_api::{FreeFormMessage, MessageId};
use lipachat_policy::PreviousOutcome;
use lipachat_session::{Conversation, QueuedMessage, Store};
use serde_json::Value;

use crate::error::CliError;

/// The message a queued entry holds; `None` when its stored form cannot be read.
pub fn queued_content(queued: &QueuedMessage) -> Option<FreeFormMessage> {
    let (kind, message) = lipachat_policy::queued_content(queued)?;
    viewed_content(kind, &message)
}

/// The message a queued-message view names by its `kind` and `message` (as `pending`
/// prints them and a running bot's `/admin/pending` answers them); `None` when they do
/// not make one.
pub fn viewed_content(kind: &str, message: &Value) -> Option<FreeFormMessage> {
    serde_json::from_value(serde_json::json!({ "kind": kind, "message": message })).ok()
}

/// The outcome stored for `message_id` in `conversation`, unless its time to keep has
/// passed. One that cannot be read is [`CliError::UnreadableOutcome`], as the send path
/// would refuse it.
pub async fn previous_outcome<S: Store>(
    store: &S,
    conversation: Conversation,
    message_id: MessageId,
) -> Result<Option<PreviousOutcome>, CliError> {
    let Some(text) = store.outcome(conversation, message_id).await? else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|error| CliError::UnreadableOutcome {
            message_id,
            detail: error.to_string(),
        })
}

/// Every outcome still kept for `conversation` that can be read, and how many could not.
pub async fn outcomes<S: Store>(
    store: &S,
    conversation: Conversation,
) -> Result<(Vec<PreviousOutcome>, usize), CliError> {
    let mut read = Vec::new();
    let mut unreadable = 0;
    for (_, text) in store.outcomes(conversation).await? {
        match serde_json::from_str::<PreviousOutcome>(&text) {
            Ok(outcome) => read.push(outcome),
            Err(_) => unreadable += 1,
        }
    }
    Ok((read, unreadable))
}

/// The longest part of a text [`describe`] shows, in characters.
const TEXT_SHOWN: usize = 60;

/// The most phone numbers of a contact card [`describe`] shows.
const PHONES_SHOWN: usize = 3;

/// A message in a few words, on one line: `contact card "Support desk" (254700000001)`,
/// `text "Your order has shipped."` (the first 60 characters).
pub fn describe(message: &FreeFormMessage) -> String {
    match message {
        FreeFormMessage::Contact(card) => {
            let mut phones: Vec<String> = card
                .phones()
                .iter()
                .take(PHONES_SHOWN)
                .map(|phone| phone.phone.to_string())
                .collect();
            if card.phones().len() > PHONES_SHOWN {
                phones.push("…".to_owned());
            }
            format!(
                "contact card \"{}\" ({})",
                one_line(card.formatted_name(), usize::MAX),
                phones.join(", ")
            )
        }
        FreeFormMessage::Text(text) => format!("text \"{}\"", one_line(text.body(), TEXT_SHOWN)),
        other => format!("{} message", other.kind()),
    }
}

/// `text` on one line (control characters and runs of white space become one space), cut
/// to `max` characters with an ellipsis.
fn one_line(text: &str, max: usize) -> String {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty())
        .collect();
    let line = words.join(" ");
    if line.chars().count() <= max {
        return line;
    }
    let mut cut: String = line.chars().take(max).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use lipachat_api::{ContactMessage, ContactPhone, TextMessage};

    use super::*;

    #[test]
    fn messages_in_a_few_words() {
        let phone = |digits: &str| ContactPhone::new(digits.parse().unwrap(), "Cell");
        let card = ContactMessage::new("Support desk", vec![phone("254700000001")]).unwrap();
        assert_eq!(
            describe(&FreeFormMessage::from(card)),
            "contact card \"Support desk\" (254700000001)"
        );
        let phones = (1..=5).map(|i| phone(&format!("25470000000{i}"))).collect();
        let many = ContactMessage::new("Desk", phones).unwrap();
        assert_eq!(
            describe(&FreeFormMessage::from(many)),
            "contact card \"Desk\" (254700000001, 254700000002, 254700000003, …)"
        );
        let text = TextMessage::new(format!("Hello\n\n  there {}", "x".repeat(100))).unwrap();
        let described = describe(&FreeFormMessage::from(text));
        assert!(
            described.starts_with("text \"Hello there xxx"),
            "{described}"
        );
        assert!(described.ends_with("x…\""), "{described}");
        assert_eq!(
            described.chars().count(),
            "text \"\"".len() + TEXT_SHOWN + 1
        );
    }
}
