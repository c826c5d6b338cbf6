//! Converting parsed responses into the store's domain types.
//!
//! A BODYSTRUCTURE is parsed by `imap-proto`, given the value alone exactly as the server
//! sent it: its parser is thorough and well tried on BODYSTRUCTURE and ENVELOPE, the two
//! deepest structures of IMAP, while our own layer only needs to find where the value ends.
//! Section numbers are assigned by `crate::mime` from our `BodyPart` tree.

use std::borrow::Cow;
use std::time::UNIX_EPOCH;

use imap_proto::types::{AttributeValue, BodyContentCommon, BodyStructure, ContentEncoding};

use super::wire::{Fetch, SectionKind};
use crate::store::{
    BodyPart, MessageMeta, PartHeader, StoreError, StoreResult, TransferEncoding, Uid,
};

type Params<'a> = Option<Vec<(Cow<'a, str>, Cow<'a, str>)>>;

fn params(p: &Params<'_>) -> Vec<(String, String)> {
    p.iter()
        .flatten()
        .map(|(k, v)| (unquote(k).to_ascii_lowercase(), unquote(v)))
        .collect()
}

/// The text of an IMAP string whose escapes imap-proto left in place: it hands over a
/// quoted string's content as sent (`say \"hi\".txt`), and a literal's as is, without saying
/// which it was ([RFC 3501 §4.3](https://www.rfc-editor.org/rfc/rfc3501#section-4.3)).
/// A quoted string's content never holds a lone `"` or `\`, CR, LF or 8-bit bytes (a server
/// sends such text as a literal), so only text of that shape is unescaped; anything else
/// was a literal and is kept.
fn unquote(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (b'\\', Some(&escaped @ (b'\\' | b'"'))) => {
                out.push(escaped);
                i += 2;
            }
            (b'\\' | b'"' | b'\r' | b'\n' | 0x80.., _) => return text.to_string(),
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_string())
}

fn header(common: &BodyContentCommon<'_>) -> PartHeader {
    PartHeader {
        media_type: common.ty.ty.to_ascii_lowercase(),
        subtype: common.ty.subtype.to_ascii_lowercase(),
        params: params(&common.ty.params),
        disposition: common
            .disposition
            .as_ref()
            .map(|d| d.ty.to_ascii_lowercase()),
        disposition_params: common
            .disposition
            .as_ref()
            .map(|d| params(&d.params))
            .unwrap_or_default(),
    }
}

fn encoding(e: &ContentEncoding<'_>) -> TransferEncoding {
    match e {
        ContentEncoding::SevenBit => TransferEncoding::SevenBit,
        ContentEncoding::EightBit => TransferEncoding::EightBit,
        ContentEncoding::Binary => TransferEncoding::Binary,
        ContentEncoding::Base64 => TransferEncoding::Base64,
        ContentEncoding::QuotedPrintable => TransferEncoding::QuotedPrintable,
        ContentEncoding::Other(o) => TransferEncoding::Other(o.to_ascii_lowercase()),
    }
}

/// Converts a BODYSTRUCTURE ([RFC 3501 §7.4.2](https://www.rfc-editor.org/rfc/rfc3501#section-7.4.2)).
/// Nesting deeper than `depth_left` is cut off (a hostile server could nest without end).
pub fn body_part(bs: &BodyStructure<'_>, depth_left: u32) -> BodyPart {
    match bs {
        BodyStructure::Basic { common, other, .. } | BodyStructure::Text { common, other, .. } => {
            BodyPart::Leaf {
                header: header(common),
                encoding: encoding(&other.transfer_encoding),
                octets: u64::from(other.octets),
            }
        }
        BodyStructure::Message {
            common,
            other,
            envelope,
            body,
            ..
        } => {
            let inner = if depth_left == 0 {
                BodyPart::Leaf {
                    header: PartHeader {
                        media_type: "application".into(),
                        subtype: "octet-stream".into(),
                        ..PartHeader::default()
                    },
                    encoding: TransferEncoding::Binary,
                    octets: 0,
                }
            } else {
                body_part(body, depth_left - 1)
            };
            BodyPart::Message {
                header: header(common),
                encoding: encoding(&other.transfer_encoding),
                octets: u64::from(other.octets),
                subject: envelope.subject.as_ref().map(|s| s.to_vec()),
                body: Box::new(inner),
            }
        }
        BodyStructure::Multipart { common, bodies, .. } => BodyPart::Multipart {
            header: header(common),
            children: if depth_left == 0 {
                Vec::new()
            } else {
                bodies
                    .iter()
                    .map(|b| body_part(b, depth_left - 1))
                    .collect()
            },
        },
    }
}

/// Lists nested deeper than this are parsed on a thread of their own with `DEEP_STACK`:
/// imap-proto parses (and drops) BODYSTRUCTURE recursively, and a debug build's frames
/// overflow a bare 2 MiB thread stack at about 100 levels of multiparts and 74 of
/// message/rfc822 parts (54 with 1.5 MiB free; a FUSE thread's own frames come first). A
/// real message nests a few levels, and a forwarded one a few more per forward.
const SHALLOW_DEPTH: u32 = 24;

/// Enough for the deepest value the nesting guard lets through (`MAX_DEPTH`) in any build.
const DEEP_STACK: usize = 64 << 20;

/// Parses a BODYSTRUCTURE value (as sent, literals included) and converts it. `raw` has
/// passed the nesting guard and our own parser's depth bound before it gets here. imap-proto
/// takes strings as UTF-8, so any string that is not (a Latin-1 parameter) is made UTF-8
/// first, lossily, as everywhere else in imapfs.
pub fn structure(raw: &[u8], depth_left: u32) -> StoreResult<BodyPart> {
    let value = super::wire::lossy_utf8_strings(raw)
        .map_err(|e| StoreError::Protocol(format!("unusable BODYSTRUCTURE: {e}")))?;
    let mut line = Vec::with_capacity(value.len() + 32);
    line.extend_from_slice(b"* 1 FETCH (BODYSTRUCTURE ");
    line.extend_from_slice(&value);
    line.extend_from_slice(b")\r\n");
    let unusable = || {
        StoreError::Protocol(format!(
            "unusable BODYSTRUCTURE: {}",
            super::wire::short(&String::from_utf8_lossy(raw))
        ))
    };
    let parse = || -> StoreResult<BodyPart> {
        let (rest, response) = imap_proto::parser::parse_response(&line).map_err(|_| unusable())?;
        let imap_proto::Response::Fetch(_, attributes) = response else {
            return Err(unusable());
        };
        if !rest.is_empty() {
            return Err(unusable());
        }
        attributes
            .iter()
            .find_map(|a| match a {
                AttributeValue::BodyStructure(bs) => Some(body_part(bs, depth_left)),
                _ => None,
            })
            .ok_or_else(unusable)
    };
    let mut guard = super::nesting::NestingGuard::default();
    guard
        .feed(&value)
        .map_err(|e| StoreError::Protocol(format!("unusable BODYSTRUCTURE: {e}")))?;
    if guard.deepest() <= SHALLOW_DEPTH {
        return parse();
    }
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("deep-structure".into())
            .stack_size(DEEP_STACK)
            .spawn_scoped(scope, parse)
            .map_err(|e| StoreError::Protocol(format!("cannot parse a deep BODYSTRUCTURE: {e}")))?
            .join()
            .map_err(|_| unusable())?
    })
}

/// The header field imapfs writes into a message it made from a file (see `fs/newmail.rs`).
pub const ORIGIN_FIELD: &str = "X-Imapfs-File";

/// The message items of a listing: what `message_meta` reads.
pub const LISTING_ITEMS: &str =
    "(UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (SUBJECT X-IMAPFS-FILE)])";

/// Turns one FETCH response of a listing into `MessageMeta`; `None` if the server left out
/// something we need (such a message is logged and skipped, not guessed at).
pub fn message_meta(fetch: &Fetch) -> Option<MessageMeta> {
    let uid = Uid(fetch.uid?);
    let size = message_size(fetch.size?)?;
    let internal_date = fetch.internal_date.unwrap_or(UNIX_EPOCH);
    let header = fetch
        .sections
        .iter()
        .find(|s| s.kind == SectionKind::Body && s.section.starts_with("HEADER.FIELDS"))
        .and_then(|s| s.data.as_deref());
    let subject = header.and_then(subject_from_header);
    let origin = header.and_then(|h| header_field(h, ORIGIN_FIELD));
    let flags = fetch.flags.clone().unwrap_or_default();
    Some(MessageMeta {
        uid,
        size,
        internal_date,
        subject,
        flags,
        origin,
    })
}

/// A message's RFC822.SIZE, if it can be one: RFC 3501 makes it a 32-bit number. A bigger
/// one (a broken or hostile server) would size reads, cache entries and prefetch plans
/// past what any message is, so such a message is not taken.
pub fn message_size(size: u64) -> Option<u64> {
    (size <= u64::from(u32::MAX)).then_some(size)
}

/// The unfolded value of the Subject field in a `HEADER.FIELDS (SUBJECT ...)` answer.
pub fn subject_from_header(header: &[u8]) -> Option<Vec<u8>> {
    header_field(header, "subject")
}

/// The unfolded value of the first `name` field of a header block (folds joined with one
/// space, outer blanks trimmed); the block ends at its first empty line.
pub fn header_field(header: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut value: Option<Vec<u8>> = None;
    for line in header.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some(v) = value.as_mut() {
                v.push(b' ');
                v.extend_from_slice(trim(line));
            }
            continue;
        }
        if value.is_some() {
            break;
        }
        let field = line.split(|&b| b == b':').next().unwrap_or_default();
        if field.len() < line.len() && field.eq_ignore_ascii_case(name.as_bytes()) {
            value = Some(trim(&line[field.len() + 1..]).to_vec());
        }
    }
    value
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A multipart nested `levels` deep around one text part.
    fn nested_multipart(levels: usize) -> Vec<u8> {
        let mut value = String::from("(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 1 1)");
        for _ in 0..levels {
            value = format!("({value} \"MIXED\")");
        }
        value.into_bytes()
    }

    /// A message/rfc822 part nested `levels` deep around one text part: a message forwarded
    /// as an attachment, again and again.
    fn nested_messages(levels: usize) -> Vec<u8> {
        let mut value = String::from("(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 1 1)");
        for _ in 0..levels {
            value = format!(
                "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 100 \
                 (NIL \"Fwd\" NIL NIL NIL NIL NIL NIL NIL NIL) {value} 5)"
            );
        }
        value.into_bytes()
    }

    /// How many levels of `Multipart` or `Message` wrap `part`'s one leaf.
    fn levels(mut part: BodyPart) -> usize {
        let mut levels = 0;
        loop {
            part = match part {
                BodyPart::Multipart { mut children, .. } => {
                    assert_eq!(children.len(), 1);
                    children.pop().unwrap()
                }
                BodyPart::Message { body, .. } => *body,
                BodyPart::Leaf { .. } => return levels,
            };
            levels += 1;
        }
    }

    /// As deep as the nesting guard lets a response be, of either shape: parsed on this
    /// thread's default stack, a debug build overflowed it (and the process aborted).
    #[test]
    fn the_deepest_structure_the_guard_lets_through_parses_without_overflowing() {
        let most = super::super::nesting::MAX_DEPTH as usize - 1;
        let deep = structure(&nested_multipart(most), 400).unwrap();
        assert_eq!(levels(deep), most);
        let deep = structure(&nested_messages(most), 400).unwrap();
        assert_eq!(levels(deep), most);
        for shallow in [nested_multipart(3), nested_messages(3)] {
            assert_eq!(levels(structure(&shallow, 32).unwrap()), 3);
        }
    }

    #[test]
    fn subject_is_unfolded() {
        let h = b"Subject: =?UTF-8?Q?caf=C3=A9?=\r\n =?UTF-8?Q?_au_lait?=\r\n\r\n";
        assert_eq!(
            subject_from_header(h).unwrap(),
            b"=?UTF-8?Q?caf=C3=A9?= =?UTF-8?Q?_au_lait?=".to_vec()
        );
    }

    #[test]
    fn missing_subject_is_none() {
        assert_eq!(subject_from_header(b"\r\n"), None);
        assert_eq!(subject_from_header(b"Subjectx: a\r\n\r\n"), None);
    }

    /// The first BODYSTRUCTURE in a literal FETCH response, converted.
    fn converted(line: &[u8]) -> BodyPart {
        let (_, resp) = imap_proto::parser::parse_response(line).unwrap();
        let imap_proto::Response::Fetch(_, attrs) = resp else {
            panic!("not a fetch")
        };
        let bs = attrs
            .iter()
            .find_map(|a| match a {
                imap_proto::types::AttributeValue::BodyStructure(b) => Some(b),
                _ => None,
            })
            .unwrap();
        body_part(bs, 32)
    }

    fn name_param(line: &[u8]) -> String {
        let part = converted(line);
        let (key, value) = &part.header().params[0];
        assert_eq!(key, "name");
        value.clone()
    }

    #[test]
    fn quoted_parameter_values_are_unescaped_and_literals_kept() {
        // Dovecot 2.3.19's answers for `name="say \"hi\".txt"`, for a name with six
        // quotes (more than four escapes: a literal) and for one with 8-bit text (a literal).
        let quoted = b"* 1 FETCH (BODYSTRUCTURE (\"text\" \"plain\" (\"name\" \"say \\\"hi\\\".txt\" \"charset\" \"utf-8\") NIL NIL \"7bit\" 36 1 NIL (\"inline\" NIL) NIL NIL))\r\n";
        assert_eq!(name_param(quoted), "say \"hi\".txt");
        let backslashes = b"* 1 FETCH (BODYSTRUCTURE (\"application\" \"octet-stream\" (\"name\" \"a\\\\\\\\b.bin\") NIL NIL \"7bit\" 3 NIL NIL NIL NIL))\r\n";
        assert_eq!(name_param(backslashes), "a\\\\b.bin");
        let many = b"* 1 FETCH (BODYSTRUCTURE (\"application\" \"octet-stream\" (\"name\" {17}\r\na\"b\"c\"d\"e\"f\"g.bin) NIL NIL \"7bit\" 3 NIL NIL NIL NIL))\r\n";
        assert_eq!(name_param(many), "a\"b\"c\"d\"e\"f\"g.bin");
        let eight_bit = "* 1 FETCH (BODYSTRUCTURE (\"application\" \"octet-stream\" (\"name\" {16}\r\ncafé \"q\" \\ .bin) NIL NIL \"7bit\" 3 NIL NIL NIL NIL))\r\n";
        assert_eq!(name_param(eight_bit.as_bytes()), "café \"q\" \\ .bin");
    }

    #[test]
    fn bodystructure_from_real_dovecot_response_converts() {
        // A literal BODYSTRUCTURE as Dovecot 2.3 sends it for multipart/mixed with an
        // alternative and a PDF.
        let line = b"* 1 FETCH (UID 5 BODYSTRUCTURE (((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 12 1 NIL NIL NIL NIL)(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 30 1 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"b2\") NIL NIL NIL)(\"application\" \"pdf\" (\"name\" \"r.pdf\") NIL NIL \"base64\" 400 NIL (\"attachment\" (\"filename\" \"r.pdf\")) NIL NIL) \"mixed\" (\"boundary\" \"b1\") NIL NIL NIL))\r\n";
        let BodyPart::Multipart { header, children } = converted(line) else {
            panic!("not multipart")
        };
        assert_eq!(header.subtype, "mixed");
        assert_eq!(children.len(), 2);
        let BodyPart::Leaf {
            header,
            encoding,
            octets,
        } = &children[1]
        else {
            panic!("not a leaf")
        };
        assert_eq!(header.media_type, "application");
        assert_eq!(header.disposition.as_deref(), Some("attachment"));
        assert_eq!(
            header.disposition_params,
            vec![("filename".into(), "r.pdf".into())]
        );
        assert_eq!(*encoding, TransferEncoding::Base64);
        assert_eq!(*octets, 400);
    }
}
