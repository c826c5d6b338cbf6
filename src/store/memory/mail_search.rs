//! Dovecot 2.3's `UID SEARCH` without full-text indexes (`mail-search.c`,
//! `index-search.c`), for the keys imapfs sends: header fields matched as case-insensitive
//! substrings of their unfolded values, `TEXT` over the header and the body, `BODY` over
//! the body, dates by the UTC day of the internal date, sizes by RFC822.SIZE. Dovecot also
//! decodes MIME words and transfer encodings before matching; tests keep to plain ASCII
//! text where that would differ.

use std::time::{SystemTime, UNIX_EPOCH};

use super::header_parser::Fields;
use crate::search::{Address, SearchKey};
use crate::store::{StoreError, StoreResult, Uid};

/// What a key is matched against: one message.
pub(super) struct Candidate<'m> {
    pub uid: Uid,
    pub raw: &'m [u8],
    pub flags: &'m [String],
    pub internal_date: SystemTime,
}

impl Candidate<'_> {
    fn header_and_body(&self) -> (&[u8], &[u8]) {
        match self.raw.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(end) => (&self.raw[..end + 2], &self.raw[end + 4..]),
            None => (self.raw, &[]),
        }
    }

    fn field_contains(&self, name: &str, text: &str) -> bool {
        let (header, _) = self.header_and_body();
        let fields = Fields::parse(header);
        let mut values = fields.named(name).peekable();
        if text.is_empty() {
            return values.peek().is_some();
        }
        values.any(|v| contains(&unfold(v), text))
    }

    fn day(&self) -> i64 {
        let secs = match self.internal_date.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        secs.div_euclid(86_400)
    }

    /// Whether the message matches `key`.
    pub fn matches(&self, key: &SearchKey) -> StoreResult<bool> {
        Ok(match key {
            SearchKey::And(keys) => {
                for k in keys {
                    if !self.matches(k)? {
                        return Ok(false);
                    }
                }
                true
            }
            SearchKey::Or(a, b) => self.matches(a)? || self.matches(b)?,
            SearchKey::Not(k) => !self.matches(k)?,
            SearchKey::Text(text) => contains(self.raw, text),
            SearchKey::Body(text) => contains(self.header_and_body().1, text),
            SearchKey::Subject(text) => self.field_contains("subject", text),
            SearchKey::Address(which, text) => {
                let name = match which {
                    Address::From => "from",
                    Address::To => "to",
                    Address::Cc => "cc",
                    Address::Bcc => "bcc",
                };
                self.field_contains(name, text)
            }
            SearchKey::Header(name, text) => self.field_contains(name, text),
            SearchKey::Since(date) => self.day() >= date.days(),
            SearchKey::Before(date) => self.day() < date.days(),
            SearchKey::On(date) => self.day() == date.days(),
            SearchKey::Flag(flag) => self
                .flags
                .iter()
                .any(|f| f.eq_ignore_ascii_case(flag.as_str())),
            SearchKey::Larger(n) => self.raw.len() as u64 > *n,
            SearchKey::Smaller(n) => (self.raw.len() as u64) < *n,
            SearchKey::Uid(range) => {
                self.uid >= range.first && range.last.is_none_or(|last| self.uid <= last)
            }
            SearchKey::Raw(_) => {
                return Err(StoreError::Unsupported(
                    "raw IMAP search keys in the memory store".into(),
                ))
            }
            SearchKey::Gmail(_) => {
                return Err(StoreError::Invalid(
                    "the server has no Gmail search (X-GM-EXT-1)".into(),
                ))
            }
        })
    }
}

/// A header value with its folds undone.
fn unfold(value: &[u8]) -> Vec<u8> {
    value
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect()
}

/// A case-insensitive substring match (Unicode lower case over the bytes read as UTF-8).
fn contains(haystack: &[u8], needle: &str) -> bool {
    String::from_utf8_lossy(haystack)
        .to_lowercase()
        .contains(&needle.to_lowercase())
}
