//! MIME: from a BODYSTRUCTURE to the files of a message directory, and from a section's raw
//! bytes to a file's content (transfer decoding, charsets, header decoding, names).
//!
//! Nothing here does I/O: [`message_layout`] says which section each file needs and how to
//! turn its bytes into content, and [`render`] does the turning once the bytes are fetched.

mod decode;
pub mod dovecot;
mod header;
mod layout;
mod naming;
mod params;

pub use decode::{
    decode_base64, decode_quoted_printable, decode_transfer, encoding_for_charset, text_to_utf8,
};
pub use header::decode_header;
pub use layout::{
    base64_decoded_len, base64_lines, charset, is_identity, message_layout, whole_message_file,
    Base64Lines,
};
pub use naming::{
    clean_subject, guess_extension, message_dir_name, nested_message_dir_name, sanitize_name,
    UniqueNames, MAX_NAME_BYTES, NO_SUBJECT,
};
pub use params::{is_attachment, param_value, part_file_name};

use crate::store::{Section, TransferEncoding};

/// Name of the file holding a message exactly as the server stores it.
pub const MESSAGE_FILE: &str = "message.eml";
/// Name of the file holding the main text/plain body, in UTF-8.
pub const BODY_TEXT_FILE: &str = "body.txt";
/// Name of the file holding the main text/html body, in UTF-8.
pub const BODY_HTML_FILE: &str = "body.html";

/// What a file in a message directory holds, computed from the part's raw (transfer-encoded)
/// bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Content {
    /// Bytes exactly as the server returns them for the section (message.eml).
    Raw,
    /// Transfer-decoded bytes (attachments, unnamed parts).
    Decoded(TransferEncoding),
    /// Transfer-decoded, then converted from `charset` to UTF-8 (body.txt, body.html).
    Text {
        encoding: TransferEncoding,
        charset: Option<String>,
    },
}

/// One file of a message directory: what to fetch and how to present it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Which `BODY[section]` to fetch; [`Section::whole`] is `BODY[]`.
    pub section: Section,
    /// How the fetched bytes become the file's content.
    pub content: Content,
    /// Best estimate of the content's size without fetching it.
    pub size_hint: u64,
    /// The section's size as stored (still transfer-encoded), as the server reported it.
    pub stored_size: u64,
    /// For a base64 part whose lines all have one width (learned from its end): where any
    /// decoded byte is, so a range can be read without the whole part.
    pub lines: Option<Base64Lines>,
    /// True only when `size_hint` is certainly exact (raw content whose size the server
    /// reported).
    pub exact_size: bool,
}

/// What a directory entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A file.
    File(FileSpec),
    /// An encapsulated message/rfc822: a subdirectory of the same shape.
    Message {
        /// The section of the message/rfc822 part (`BODY[section]` is the whole message).
        section: Section,
        /// Its files and subdirectories.
        entries: Vec<Entry>,
    },
}

/// One named entry of a message directory. Names are unique within a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The sanitised, unique file name.
    pub name: String,
    /// File or subdirectory.
    pub kind: EntryKind,
}

impl Entry {
    /// The file spec, if this entry is a file.
    pub fn file(&self) -> Option<&FileSpec> {
        match &self.kind {
            EntryKind::File(spec) => Some(spec),
            EntryKind::Message { .. } => None,
        }
    }
}

/// Render a file's content from the raw bytes of its section.
pub fn render(content: &Content, raw: &[u8]) -> Vec<u8> {
    match content {
        Content::Raw => raw.to_vec(),
        Content::Decoded(encoding) => decode_transfer(encoding, raw),
        Content::Text { encoding, charset } => unix_line_ends(text_to_utf8(
            charset.as_deref(),
            &decode_transfer(encoding, raw),
        )),
    }
}

/// Render a file's content from its section's bytes already transfer-decoded (by the
/// server: `BINARY[section]`).
pub fn render_decoded(content: &Content, decoded: &[u8]) -> Vec<u8> {
    match content {
        Content::Raw | Content::Decoded(_) => decoded.to_vec(),
        Content::Text { charset, .. } => unix_line_ends(text_to_utf8(charset.as_deref(), decoded)),
    }
}

/// Text with each CRLF made LF, as Linux tools expect a text file's lines to end (`grep
/// 'x$'`, `read`, `cut`, `diff`); a CR on its own stays.
fn unix_line_ends(text: Vec<u8>) -> Vec<u8> {
    if !text.windows(2).any(|w| w == b"\r\n") {
        return text;
    }
    let ends_line = |at: usize| text.get(at + 1) == Some(&b'\n');
    let mut out = Vec::with_capacity(text.len());
    for (at, &byte) in text.iter().enumerate() {
        if byte != b'\r' || !ends_line(at) {
            out.push(byte);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_raw_is_untouched() {
        let raw = b"Subject: x\r\n\r\n=E9 Zm9v\r\n";
        assert_eq!(render(&Content::Raw, raw), raw);
    }

    #[test]
    fn render_decoded_does_not_convert_charset() {
        let content = Content::Decoded(TransferEncoding::QuotedPrintable);
        assert_eq!(render(&content, b"caf=E9"), b"caf\xe9");
    }

    #[test]
    fn render_text_decodes_then_converts() {
        let content = Content::Text {
            encoding: TransferEncoding::QuotedPrintable,
            charset: Some("iso-8859-1".into()),
        };
        assert_eq!(render(&content, b"caf=E9\r\n"), "café\n".as_bytes());
        let content = Content::Text {
            encoding: TransferEncoding::Base64,
            charset: Some("utf-8".into()),
        };
        assert_eq!(render(&content, b"Y2Fmw6k=\r\n"), "café".as_bytes());
        let content = Content::Text {
            encoding: TransferEncoding::SevenBit,
            charset: None,
        };
        assert_eq!(render(&content, b"plain"), b"plain");
    }

    #[test]
    fn text_bodies_end_lines_with_lf_and_nothing_else_changes() {
        let text = Content::Text {
            encoding: TransferEncoding::SevenBit,
            charset: None,
        };
        let raw = b"one\r\ntwo\rstill two\r\n\r\nlast\r";
        assert_eq!(render(&text, raw), b"one\ntwo\rstill two\n\nlast\r");
        assert_eq!(render_decoded(&text, raw), b"one\ntwo\rstill two\n\nlast\r");
        // In UTF-16 a line end is four bytes; it is made LF once the text is UTF-8.
        let utf16 = Content::Text {
            encoding: TransferEncoding::Binary,
            charset: Some("utf-16le".into()),
        };
        assert_eq!(render_decoded(&utf16, b"a\0\r\0\n\0b\0"), b"a\nb");
        // Attachments and message.eml keep their bytes.
        let attachment = Content::Decoded(TransferEncoding::SevenBit);
        assert_eq!(render(&attachment, raw), raw);
        assert_eq!(render_decoded(&Content::Raw, raw), raw);
    }
}
