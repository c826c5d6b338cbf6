//! Dovecot 2.3's message parsing, rebuilt: its message parser (`message_parser.rs`, after
//! `message-parser.c`), header parser and RFC 822 / RFC 2231 value parsers. The memory store
//! answers BODYSTRUCTURE and `BODY[section]` with it, checked against Dovecot by
//! `store/conformance.rs`; the core uses it ([`ParsedMessage`]) to take a part out of a
//! message it holds whole, where the server's BODYSTRUCTURE agrees with the parser's.

pub(crate) mod header_parser;
pub(crate) mod message_parser;
pub(crate) mod rfc822_parser;

use self::message_parser::Entity;
use crate::store::{BodyPart, Section, TransferEncoding};

/// A whole message as Dovecot's message parser splits it: the BODYSTRUCTURE a server reports
/// for it, and where each section lies in it.
pub struct ParsedMessage {
    root: Entity,
    len: usize,
}

impl ParsedMessage {
    /// Parses a whole message as the server sends it (`BODY[]`). Never fails: malformed MIME
    /// gives the tree Dovecot would make of it.
    pub fn parse(raw: &[u8]) -> Self {
        ParsedMessage {
            root: Entity::parse_message(raw),
            len: raw.len(),
        }
    }

    /// Its BODYSTRUCTURE.
    pub fn body_structure(&self) -> BodyPart {
        self.root.body_structure()
    }

    /// Where `BODY[section]` lies in the message, and the part's Content-Transfer-Encoding;
    /// `None` for a part number 0.
    pub fn section(&self, section: &Section) -> Option<(std::ops::Range<usize>, TransferEncoding)> {
        let range = self.root.section_range(&section.0, self.len).ok()?;
        let encoding = self.root.section_encoding(&section.0).ok()?;
        Some((range, encoding))
    }
}
