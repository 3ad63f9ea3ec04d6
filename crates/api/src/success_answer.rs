//! The gateway's common answer, an accepted send, read in one pass over its bytes.
//!
//! Nearly every answer is the success envelope (`{"timestamp": …, "data": {"messageId": …,
//! "waId": …, "status": "SENT", …}, "status": "success", …}`). Reading it with serde
//! (even into borrowed fields) was the largest part of what a guarded send costs beyond
//! posting the body (about 5,300 of 7,400 instructions, measured with callgrind). This
//! reader walks the bytes once and keeps the four strings the receipt needs.
//!
//! It reads only a subset of JSON and *declines* (answers `None`) on anything outside it:
//! a body that is not UTF-8, a string holding an escape, a repeated field of the four, a
//! value of the wrong kind for one of them, nesting deeper than [`MAX_DEPTH`], or any
//! syntax error. A declined body goes the serde way, so declining is always safe; what
//! this reader must never do is answer differently from serde for a body it accepts (the
//! property test beside it checks exactly that).

/// Nesting deeper than this (in fields the receipt does not read) is declined.
const MAX_DEPTH: usize = 32;

/// The fields of a success envelope a receipt is made of, borrowed from the body. `None`
/// where the field is absent or `null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct SuccessFields<'a> {
    /// The envelope's `status`.
    pub status: Option<&'a str>,
    /// `data.status`.
    pub data_status: Option<&'a str>,
    /// `data.messageId`.
    pub message_id: Option<&'a str>,
    /// `data.waId`.
    pub wa_id: Option<&'a str>,
}

impl<'a> SuccessFields<'a> {
    /// The fields of `body`, or `None` when the body is outside what this reader reads
    /// (see the module's docs): then serde must read it.
    pub(crate) fn read(body: &'a [u8]) -> Option<Self> {
        let text = std::str::from_utf8(body).ok()?;
        let mut reader = Reader { text, at: 0 };
        let mut fields = SuccessFields::default();
        let mut seen = Seen::default();
        reader.skip_whitespace();
        reader.object(|reader, name| match name {
            "status" => seen.once(Seen::STATUS, || {
                fields.status = reader.string_or_null()?;
                Some(())
            }),
            "data" => seen.once(Seen::DATA, || {
                if reader.null() {
                    return Some(());
                }
                let mut inner = Seen::default();
                reader.object(|reader, name| match name {
                    "status" => inner.once(Seen::STATUS, || {
                        fields.data_status = reader.string_or_null()?;
                        Some(())
                    }),
                    "messageId" => inner.once(Seen::MESSAGE_ID, || {
                        fields.message_id = reader.string_or_null()?;
                        Some(())
                    }),
                    "waId" => inner.once(Seen::WA_ID, || {
                        fields.wa_id = reader.string_or_null()?;
                        Some(())
                    }),
                    _ => reader.skip_value(1),
                })
            }),
            _ => reader.skip_value(1),
        })?;
        reader.skip_whitespace();
        (reader.at == text.len()).then_some(fields)
    }
}

/// Which of the read fields an object has had (a second one is declined, as serde
/// refuses it).
#[derive(Default)]
struct Seen(u8);

impl Seen {
    const STATUS: u8 = 1;
    const DATA: u8 = 2;
    const MESSAGE_ID: u8 = 4;
    const WA_ID: u8 = 8;

    /// Runs `read` for the field `bit` the first time; declines a second one.
    fn once(&mut self, bit: u8, read: impl FnOnce() -> Option<()>) -> Option<()> {
        if self.0 & bit != 0 {
            return None;
        }
        self.0 |= bit;
        read()
    }
}

/// A position in the body.
struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// Consumes `byte` if it is next.
    fn eat(&mut self, byte: u8) -> bool {
        let next = self.peek() == Some(byte);
        if next {
            self.at += 1;
        }
        next
    }

    /// Consumes `word` if it is next.
    fn eat_word(&mut self, word: &str) -> bool {
        let next = self.text.as_bytes()[self.at..].starts_with(word.as_bytes());
        if next {
            self.at += word.len();
        }
        next
    }

    fn null(&mut self) -> bool {
        self.eat_word("null")
    }

    /// An object, each field's value read by `field(reader, name)` (which must consume
    /// it); the reader is left after the closing brace.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        if !self.eat(b'{') {
            return None;
        }
        self.skip_whitespace();
        if self.eat(b'}') {
            return Some(());
        }
        loop {
            self.skip_whitespace();
            let name = self.string()?;
            self.skip_whitespace();
            if !self.eat(b':') {
                return None;
            }
            self.skip_whitespace();
            field(self, name)?;
            self.skip_whitespace();
            if self.eat(b'}') {
                return Some(());
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }

    /// A string without escapes or control characters, without its quotes.
    fn string(&mut self) -> Option<&'a str> {
        if !self.eat(b'"') {
            return None;
        }
        let rest = &self.text.as_bytes()[self.at..];
        let end = memchr::memchr2(b'"', b'\\', rest)?;
        // A control character is a syntax error in a JSON string. Checked over the whole
        // string without stopping early, which the compiler vectorises.
        let controls = rest[..end]
            .iter()
            .fold(false, |found, &b| found | (b < 0x20));
        if rest[end] != b'"' || controls {
            return None;
        }
        // `end` is at an ASCII quote, so both ends are char boundaries.
        let value = self.text.get(self.at..self.at + end)?;
        self.at += end + 1;
        Some(value)
    }

    /// A string, or `null` (`None`); anything else is declined.
    fn string_or_null(&mut self) -> Option<Option<&'a str>> {
        if self.null() {
            Some(None)
        } else {
            self.string().map(Some)
        }
    }

    /// Any JSON value this reader reads, at nesting `depth`.
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.object(|reader, _| reader.skip_value(depth + 1)),
            b'[' => {
                self.at += 1;
                self.skip_whitespace();
                if self.eat(b']') {
                    return Some(());
                }
                loop {
                    self.skip_whitespace();
                    self.skip_value(depth + 1)?;
                    self.skip_whitespace();
                    if self.eat(b']') {
                        return Some(());
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                }
            }
            b't' => self.eat_word("true").then_some(()),
            b'f' => self.eat_word("false").then_some(()),
            b'n' => self.null().then_some(()),
            _ => self.number(),
        }
    }

    /// A number as JSON writes one: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Option<()> {
        self.eat(b'-');
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.eat(b'.') {
            self.at_least_one_digit()?;
        }
        if self.eat(b'e') || self.eat(b'E') {
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            self.at_least_one_digit()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
    }

    fn at_least_one_digit(&mut self) -> Option<()> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return None;
        }
        self.digits();
        Some(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The answer the gateway's "Sending Contacts" page shows for HTTP 200 (the seed,
    /// `../shared/seeds/001_9f83e10d8a3d3971.txt`), as the page writes it; the fixture's
    /// README cites it.
    pub(crate) const DOCUMENTED: &str =
        include_str!("../tests/fixtures/seeds/contact-success-answer.json");

    #[test]
    fn the_documented_answer_is_read() {
        assert_eq!(
            SuccessFields::read(DOCUMENTED.as_bytes()),
            Some(SuccessFields {
                status: Some("success"),
                data_status: Some("SENT"),
                message_id: Some("7addc006-07db-4fae-aac5-b285903b41d4"),
                wa_id: Some("wamid.HBgMMjU0NzE3NzQ2NTY1FQIAEnRgSRjJGRkMzNkQ0QUVENTIxQ0NBAA=="),
            })
        );
    }

    #[test]
    fn bodies_outside_the_subset_are_declined() {
        for body in [
            // An escape in a string, read or not.
            r#"{"status":"succ\u0065ss","data":{"status":"SENT"}}"#,
            r#"{"status":"success","data":{"status":"SENT"},"message":"a\"b"}"#,
            // A read field twice, or of the wrong kind.
            r#"{"status":"success","status":"success","data":{"status":"SENT"}}"#,
            r#"{"status":"success","data":{"status":"SENT","status":"SENT"}}"#,
            r#"{"status":1,"data":{"status":"SENT"}}"#,
            r#"{"status":"success","data":[]}"#,
            // Not JSON, or more after the object.
            r#"{"status":"success","data":{"status":"SENT"}"#,
            r#"{"status":"success","data":{"status":"SENT"}} x"#,
            r#"{"status":"success","x":01}"#,
            r#"{"status":"success","x":1.}"#,
            r#"{"status":"success","x":[1,]}"#,
            "[\"success\"]",
            "",
        ] {
            assert_eq!(SuccessFields::read(body.as_bytes()), None, "{body}");
        }
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(40), "]".repeat(40));
        assert_eq!(SuccessFields::read(deep.as_bytes()), None);
        assert_eq!(SuccessFields::read(b"{\"status\":\"\xff\"}"), None);
    }

    #[test]
    fn null_and_absent_fields_read_as_none() {
        assert_eq!(
            SuccessFields::read(br#" {"status":null,"data":null} "#),
            Some(SuccessFields::default())
        );
        assert_eq!(
            SuccessFields::read(br#"{"data":{},"n":-1.5e+3,"t":true,"f":false,"a":[{}]}"#),
            Some(SuccessFields::default())
        );
    }
}
