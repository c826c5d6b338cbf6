//! A `SearchKey` evaluated over a message held here rather than by the server: the disk
//! cache's copy while offline, or the memory store's (which emulates Dovecot 2.3's search
//! without full-text indexes, `mail-search.c`). Header fields match as case-insensitive
//! substrings of their unfolded values, `TEXT` the header and the body, `BODY` the body,
//! dates by the UTC day of the internal date, sizes by RFC822.SIZE. Dovecot also decodes
//! MIME words and transfer encodings before matching; this does not.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{Address, SearchKey};
use crate::store::Uid;

/// One message to match.
pub struct Candidate<'m> {
    pub uid: Uid,
    /// The message as stored (or as much of it as is known: a header alone still answers
    /// the keys about header fields).
    pub raw: &'m [u8],
    pub flags: &'m [String],
    pub internal_date: SystemTime,
    /// RFC822.SIZE.
    pub size: u64,
    /// Every value of the named header field, unfolded.
    pub fields: &'m dyn Fn(&str) -> Vec<Vec<u8>>,
}

/// A key that cannot be evaluated here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl Candidate<'_> {
    fn body(&self) -> &[u8] {
        match self.raw.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(end) => &self.raw[end + 4..],
            None => &[],
        }
    }

    fn field_contains(&self, name: &str, text: &str) -> bool {
        let values = (self.fields)(name);
        if text.is_empty() {
            return !values.is_empty();
        }
        values.iter().any(|v| contains(v, text))
    }

    fn day(&self) -> i64 {
        let secs = match self.internal_date.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        secs.div_euclid(86_400)
    }

    /// Whether the message matches `key`.
    pub fn matches(&self, key: &SearchKey) -> Result<bool, Unsupported> {
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
            // The subject is asked for too: where only the listing is known (`raw` empty),
            // it is the part of the text there is.
            SearchKey::Text(text) => {
                contains(self.raw, text) || self.field_contains("subject", text)
            }
            SearchKey::Body(text) => contains(self.body(), text),
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
            SearchKey::Larger(n) => self.size > *n,
            SearchKey::Smaller(n) => self.size < *n,
            SearchKey::Uid(range) => {
                self.uid >= range.first && range.last.is_none_or(|last| self.uid <= last)
            }
            SearchKey::Raw(_) => {
                return Err(Unsupported("raw IMAP search keys need the server".into()))
            }
            SearchKey::Gmail(_) => {
                return Err(Unsupported("Gmail's search needs the server".into()))
            }
        })
    }
}

/// Whether `key` asks about more than a message's header and listing (its body, or its
/// whole text).
pub fn needs_body(key: &SearchKey) -> bool {
    match key {
        SearchKey::And(keys) => keys.iter().any(needs_body),
        SearchKey::Or(a, b) => needs_body(a) || needs_body(b),
        SearchKey::Not(k) => needs_body(k),
        SearchKey::Text(_) | SearchKey::Body(_) => true,
        _ => false,
    }
}

/// A case-insensitive substring match (Unicode lower case over the bytes read as UTF-8).
fn contains(haystack: &[u8], needle: &str) -> bool {
    String::from_utf8_lossy(haystack)
        .to_lowercase()
        .contains(&needle.to_lowercase())
}
