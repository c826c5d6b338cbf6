//! A `SearchKey` evaluated over a message held here rather than by the server: the disk
//! cache's copy while offline, or the memory store's (which emulates Dovecot 2.3's search
//! without full-text indexes, `mail-search.c`). Header fields match as case-insensitive
//! substrings of their unfolded values, `TEXT` the header and the body, `BODY` the body,
//! dates by the UTC day of the internal date, sizes by RFC822.SIZE. As Dovecot does, header
//! values match with their MIME words decoded (RFC 2047), and the body part by part, its
//! transfer encoding decoded and a text part's charset made UTF-8: `subject:Käse` finds
//! `=?ISO-8859-1?Q?K=E4se?=`, `body:café` a quoted-printable Latin-1 body, and base64 text
//! is never matched as such.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{Address, SearchKey};
use crate::mime::dovecot::ParsedMessage;
use crate::mime::{decode_transfer, text_to_utf8};
use crate::store::{BodyPart, Section, Uid};

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
    /// The body as text: each part's content decoded (transfer encoding, and a text
    /// part's charset), one after another; the header of a message inside too.
    fn body(&self) -> String {
        if self.raw.is_empty() {
            return String::new();
        }
        let parsed = ParsedMessage::parse(self.raw);
        let mut out = String::new();
        let root = parsed.body_structure();
        let mut path = match root {
            BodyPart::Multipart { .. } => Vec::new(),
            _ => vec![1],
        };
        decoded_parts(self.raw, &parsed, &root, &mut path, &mut out);
        out
    }

    /// The header, its MIME words decoded.
    fn header(&self) -> String {
        crate::mime::decode_header(header_block(self.raw))
    }

    fn field_contains(&self, name: &str, text: &str) -> bool {
        let values = (self.fields)(name);
        if text.is_empty() {
            return !values.is_empty();
        }
        values
            .iter()
            .any(|v| contains(crate::mime::decode_header(v).as_bytes(), text))
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
                self.field_contains("subject", text)
                    || contains(self.header().as_bytes(), text)
                    || contains(self.body().as_bytes(), text)
            }
            SearchKey::Body(text) => contains(self.body().as_bytes(), text),
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

/// The header fields of message `raw`, up to the CRLF that ends the last one (all of it
/// when no empty line ends them).
pub(crate) fn header_block(raw: &[u8]) -> &[u8] {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |end| end + 2);
    &raw[..end]
}

/// The content of every part of `part` (at `path`, its section) of the message `raw`,
/// decoded, each followed by a line break; of a message inside, its header too.
fn decoded_parts(
    raw: &[u8],
    parsed: &ParsedMessage,
    part: &BodyPart,
    path: &mut Vec<u32>,
    out: &mut String,
) {
    match part {
        BodyPart::Multipart { children, .. } => {
            for (i, child) in children.iter().enumerate() {
                path.push(i as u32 + 1);
                decoded_parts(raw, parsed, child, path, out);
                path.pop();
            }
        }
        BodyPart::Message { body, .. } => {
            if let Some((range, _)) = parsed.section(&Section(path.clone())) {
                out.push_str(&crate::mime::decode_header(header_block(&raw[range])));
                out.push('\n');
            }
            let single = !matches!(**body, BodyPart::Multipart { .. });
            if single {
                path.push(1);
            }
            decoded_parts(raw, parsed, body, path, out);
            if single {
                path.pop();
            }
        }
        BodyPart::Leaf { header, .. } => {
            let Some((range, encoding)) = parsed.section(&Section(path.clone())) else {
                return;
            };
            let bytes = decode_transfer(&encoding, &raw[range]);
            let text = if header.media_type == "text" {
                text_to_utf8(crate::mime::charset(header).as_deref(), &bytes)
            } else {
                bytes
            };
            out.push_str(&String::from_utf8_lossy(&text));
            out.push('\n');
        }
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
