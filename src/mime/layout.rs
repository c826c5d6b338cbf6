//! The layout of a message directory: which files and subdirectories a BODYSTRUCTURE gives,
//! with their section numbers ([RFC 3501 §6.4.5](https://www.rfc-editor.org/rfc/rfc3501#section-6.4.5)).

use super::naming::{guess_extension, nested_message_dir_name, sanitize_name, UniqueNames};
use super::params::{is_attachment, param_value, part_file_name};
use super::{Content, Entry, EntryKind, FileSpec, BODY_HTML_FILE, BODY_TEXT_FILE, MESSAGE_FILE};
use crate::store::{BodyPart, PartHeader, Section, TransferEncoding};

/// How deep (multiparts plus encapsulated messages) a structure is followed. Deeper parts
/// are left out of the listing (they stay readable through message.eml); this bounds the
/// recursion on hostile input.
const MAX_DEPTH: usize = 64;

/// Layout of a top-level message directory. `whole_size` is RFC822.SIZE of the message (the
/// size of message.eml).
///
/// The directory holds `message.eml` (`BODY[]`), `body.txt` and `body.html` when the message
/// has such a main body, one file per other leaf part (under its decoded, sanitised file name,
/// else `part-<section>.<ext>`), and one subdirectory per message/rfc822 part. A body part
/// that has a file name is listed under that name too. Multipart
/// containers produce no entry. Names are unique in each directory: `message.eml`,
/// `body.txt` and `body.html` are always reserved, so an attachment called `body.txt`
/// is listed as `body (2).txt` whether or not the message has a text body.
pub fn message_layout(structure: &BodyPart, whole_size: u64) -> Vec<Entry> {
    message_entries(
        whole_message_file(whole_size),
        &Section::whole(),
        structure,
        0,
    )
}

/// The `message.eml` of a top-level message of RFC822.SIZE `whole_size`: `BODY[]` as is.
/// Every message directory has it, whatever its structure.
pub fn whole_message_file(whole_size: u64) -> FileSpec {
    FileSpec {
        section: Section::whole(),
        content: Content::Raw,
        size_hint: whole_size,
        stored_size: whole_size,
        lines: None,
        exact_size: true,
    }
}

/// The section of a message's body when the message is at `base`: a multipart body's
/// children are `base.1`, `base.2`, ... (so the multipart itself is addressed as `base`);
/// a single-part body is `base.1`.
fn body_section(base: &Section, body: &BodyPart) -> Section {
    match body {
        BodyPart::Multipart { .. } => base.clone(),
        BodyPart::Leaf { .. } | BodyPart::Message { .. } => base.child(1),
    }
}

/// The 1-based part number of the child at `index`.
fn child_number(index: usize) -> u32 {
    u32::try_from(index).map_or(u32::MAX, |n| n.saturating_add(1))
}

/// The entries of a message directory: `message_file`, then the bodies, then the parts of
/// `body`, the body of the message at section `base`.
fn message_entries(
    message_file: FileSpec,
    base: &Section,
    body: &BodyPart,
    depth: usize,
) -> Vec<Entry> {
    let mut names = UniqueNames::new();
    for reserved in [MESSAGE_FILE, BODY_TEXT_FILE, BODY_HTML_FILE] {
        names.claim(reserved, true);
    }
    let mut entries = vec![Entry {
        name: MESSAGE_FILE.to_string(),
        kind: EntryKind::File(message_file),
    }];

    let section = body_section(base, body);
    let text = find_main_body(body, &section, "plain", depth);
    let html = find_main_body(body, &section, "html", depth);
    for (name, found) in [(BODY_TEXT_FILE, &text), (BODY_HTML_FILE, &html)] {
        if let Some((
            section,
            BodyPart::Leaf {
                header,
                encoding,
                octets,
            },
        )) = found
        {
            let spec = FileSpec {
                section: section.clone(),
                content: Content::Text {
                    encoding: encoding.clone(),
                    charset: charset(header),
                },
                size_hint: decoded_size_hint(encoding, *octets),
                stored_size: *octets,
                lines: None,
                exact_size: false,
            };
            entries.push(Entry {
                name: name.to_string(),
                kind: EntryKind::File(spec),
            });
        }
    }
    let body_sections = [text, html].map(|found| found.map(|(section, _)| section));

    let mut leaves = Vec::new();
    collect_leaves(body, section, depth, &mut leaves);
    for (section, part) in leaves {
        // A body with a file name is an inline file as well: readers show it both ways.
        if body_sections.contains(&Some(section.clone())) && part_file_name(part.header()).is_none()
        {
            continue;
        }
        match part {
            BodyPart::Leaf {
                header,
                encoding,
                octets,
            } => {
                let wanted = match part_file_name(header) {
                    Some(name) => sanitize_name(&name),
                    None => {
                        let (media_type, subtype) = effective_type(header);
                        format!("part-{section}.{}", guess_extension(media_type, subtype))
                    }
                };
                let spec = FileSpec {
                    section,
                    content: Content::Decoded(encoding.clone()),
                    size_hint: decoded_size_hint(encoding, *octets),
                    stored_size: *octets,
                    lines: None,
                    // Nothing to undo: the part is its own content, `octets` long.
                    exact_size: is_identity(encoding),
                };
                entries.push(Entry {
                    name: names.claim(&wanted, true),
                    kind: EntryKind::File(spec),
                });
            }
            BodyPart::Message {
                header,
                encoding,
                octets,
                subject,
                body,
            } => {
                let wanted = match part_file_name(header).and_then(|n| dir_name_from_file(&n)) {
                    Some(name) => name,
                    None => nested_message_dir_name(&section, subject.as_deref()),
                };
                let sub_entries = if depth < MAX_DEPTH {
                    let file = encapsulated_message_file(&section, encoding, *octets);
                    message_entries(file, &section, body, depth + 1)
                } else {
                    tracing::warn!(%section, "MIME structure too deep; not listing its parts");
                    vec![Entry {
                        name: MESSAGE_FILE.to_string(),
                        kind: EntryKind::File(encapsulated_message_file(
                            &section, encoding, *octets,
                        )),
                    }]
                };
                entries.push(Entry {
                    name: names.claim(&wanted, false),
                    kind: EntryKind::Message {
                        section,
                        entries: sub_entries,
                    },
                });
            }
            // collect_leaves yields no multiparts.
            BodyPart::Multipart { .. } => {}
        }
    }
    entries
}

/// The message.eml of an encapsulated message at `section`: `BODY[section]` as is, which
/// is exactly `octets` long. A message/rfc822 part may only be 7bit, 8bit or binary
/// ([RFC 2046 §5.2.1](https://www.rfc-editor.org/rfc/rfc2046#section-5.2.1)); one that is
/// nevertheless base64 or quoted-printable is decoded, so that message.eml is a message.
fn encapsulated_message_file(
    section: &Section,
    encoding: &TransferEncoding,
    octets: u64,
) -> FileSpec {
    let (content, exact_size) = match encoding {
        TransferEncoding::SevenBit | TransferEncoding::EightBit | TransferEncoding::Binary => {
            (Content::Raw, true)
        }
        TransferEncoding::Base64 | TransferEncoding::QuotedPrintable => {
            (Content::Decoded(encoding.clone()), false)
        }
        TransferEncoding::Other(_) => (Content::Raw, true),
    };
    FileSpec {
        section: section.clone(),
        content,
        size_hint: decoded_size_hint(encoding, octets),
        stored_size: octets,
        lines: None,
        exact_size,
    }
}

/// A directory name from an encapsulated message's file name: sanitised, without a trailing
/// `.eml` (any case). `None` if nothing usable is left.
fn dir_name_from_file(file_name: &str) -> Option<String> {
    let clean = sanitize_name(file_name);
    let stem = match clean.len().checked_sub(4) {
        Some(cut) if clean.is_char_boundary(cut) && clean[cut..].eq_ignore_ascii_case(".eml") => {
            clean[..cut].trim_end()
        }
        _ => clean.as_str(),
    };
    match stem {
        "" | "." | ".." => None,
        _ => Some(stem.to_string()),
    }
}

/// Every leaf and message/rfc822 part under `part` (which is at `section`), in order, with
/// its section.
fn collect_leaves<'a>(
    part: &'a BodyPart,
    section: Section,
    depth: usize,
    out: &mut Vec<(Section, &'a BodyPart)>,
) {
    match part {
        BodyPart::Leaf { .. } | BodyPart::Message { .. } => out.push((section, part)),
        BodyPart::Multipart { children, .. } => {
            if depth >= MAX_DEPTH {
                tracing::warn!(%section, "MIME structure too deep; not listing its parts");
                return;
            }
            for (index, child) in children.iter().enumerate() {
                collect_leaves(child, section.child(child_number(index)), depth + 1, out);
            }
        }
    }
}

/// The main text/`subtype` body under `part` (at `section`): depth first, the first
/// text/`subtype` leaf that is not `Content-Disposition: attachment`, never inside a
/// message/rfc822.
///
/// Every child of a multipart is looked at, except in multipart/related, whose first part is
/// its root and the others are resources for it
/// ([RFC 2387 §3.2](https://www.rfc-editor.org/rfc/rfc2387#section-3.2); a `start`
/// parameter naming another root is not followed, as the BODYSTRUCTURE we keep has no
/// Content-IDs). So a text part after an inline photo or a forwarded message in a
/// multipart/mixed is the body, as readers show it and as Python's `email` `get_body`
/// finds it. A file name does not make a part an attachment: an inline part (or one with no
/// disposition) is shown in the message whatever it is called
/// ([RFC 2183 §2.1](https://www.rfc-editor.org/rfc/rfc2183#section-2.1)).
fn find_main_body<'a>(
    part: &'a BodyPart,
    section: &Section,
    subtype: &str,
    depth: usize,
) -> Option<(Section, &'a BodyPart)> {
    match part {
        BodyPart::Leaf { header, .. } => {
            let (media_type, own_subtype) = effective_type(header);
            let wanted = media_type.eq_ignore_ascii_case("text")
                && own_subtype.eq_ignore_ascii_case(subtype)
                && !is_attachment(header);
            wanted.then(|| (section.clone(), part))
        }
        BodyPart::Message { .. } => None,
        BodyPart::Multipart { header, children } => {
            if depth >= MAX_DEPTH {
                return None;
            }
            let searched = if header.subtype.eq_ignore_ascii_case("related") {
                1
            } else {
                children.len()
            };
            children
                .iter()
                .take(searched)
                .enumerate()
                .find_map(|(index, child)| {
                    let child_section = section.child(child_number(index));
                    find_main_body(child, &child_section, subtype, depth + 1)
                })
        }
    }
}

/// The media type and subtype a leaf is read as: its own, or text/plain when its Content-Type
/// has no subtype. Such a Content-Type is invalid, and
/// [RFC 2045 §5.2](https://www.rfc-editor.org/rfc/rfc2045#section-5.2) says to read the part
/// as text/plain then; Dovecot reports `Content-Type: text` as ("text" "") and one it cannot
/// parse at all (`text; charset=utf-8`) as ("" "").
fn effective_type(header: &PartHeader) -> (&str, &str) {
    if header.subtype.is_empty() {
        ("text", "plain")
    } else {
        (&header.media_type, &header.subtype)
    }
}

/// The `charset` Content-Type parameter, if present and not empty, RFC 2231 forms first
/// (see [`param_value`]). Dovecot passes `charset*=us-ascii''utf-8` through undecoded and
/// then adds its default `charset=us-ascii` beside it, so the plain one is only a fallback.
pub fn charset(header: &PartHeader) -> Option<String> {
    param_value(&header.params, "charset")
        .map(|value| value.trim().trim_matches('"').trim().to_string())
        .filter(|value| !value.is_empty())
}

/// How a base64 part is laid out in lines, when every line but the last has the same
/// width (as every mailer writes them, RFC 2045 §6.8): enough to know its decoded length
/// and where any decoded byte is, without fetching it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Base64Lines {
    /// Base64 characters in a full line.
    pub width: u64,
    /// Bytes from one line's start to the next (the width and the line break).
    pub stride: u64,
    /// The decoded length.
    pub decoded_len: u64,
}

impl Base64Lines {
    /// The encoded byte range that holds decoded bytes `[start, end)`, and the decoded
    /// offset where decoding that range begins (a multiple of 3 at or before `start`).
    pub fn encoded_window(&self, start: u64, end: u64) -> (u64, u64, u64) {
        let first_group = start / 3;
        let last_group = end.div_ceil(3);
        let at = |c: u64| c / self.width * self.stride + c % self.width;
        let from = at(first_group * 4);
        let to = if last_group == 0 {
            from
        } else {
            at(last_group * 4 - 1) + 1
        };
        (from, to, first_group * 3)
    }
}

/// The layout of a base64 part `octets` long, from its last bytes `tail` (which must hold
/// the last line and the full line before it, or the whole part). `None` when the tail does
/// not show lines of one width (the caller then needs the whole part). A wrong guess is
/// caught when the part is read: its decoded length must match.
pub fn base64_lines(octets: u64, tail: &[u8]) -> Option<Base64Lines> {
    let is_b64 = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=';
    let trimmed = tail
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |p| p + 1);
    let trailing = (tail.len() - trimmed) as u64;
    let body = &tail[..trimmed];
    let last_start = body.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let last = &body[last_start..];
    if last.is_empty() || !last.iter().all(|&b| is_b64(b)) {
        return None;
    }
    let padding = last.iter().rev().take_while(|&&b| b == b'=').count() as u64;
    if padding > 2 {
        return None;
    }
    let last_len = last.len() as u64;
    let before_last = octets.checked_sub(trailing + last_len)?;
    let (width, stride, chars) = if before_last == 0 {
        (last_len, last_len + 2, last_len)
    } else {
        // The full line before the last one, and its line break, give the width.
        let prev_end = last_start.checked_sub(1)?;
        let crlf = prev_end > 0 && body[prev_end - 1] == b'\r';
        let line_end = if crlf { prev_end - 1 } else { prev_end };
        let line_start = match body[..line_end].iter().rposition(|&b| b == b'\n') {
            Some(p) => p + 1,
            // The tail is the whole part: its first line starts it.
            None if tail.len() as u64 == octets => 0,
            None => return None,
        };
        let width = (line_end - line_start) as u64;
        if width == 0
            || !body[line_start..line_end]
                .iter()
                .all(|&b| is_b64(b) && b != b'=')
        {
            return None;
        }
        let stride = width + if crlf { 2 } else { 1 };
        if before_last % stride != 0 || last_len > width {
            return None;
        }
        (width, stride, before_last / stride * width + last_len)
    };
    if chars % 4 != 0 {
        return None;
    }
    let decoded_len = (chars / 4 * 3).checked_sub(padding)?;
    Some(Base64Lines {
        width,
        stride,
        decoded_len,
    })
}

/// The exact decoded length of a base64 part (see [`base64_lines`]).
pub fn base64_decoded_len(octets: u64, tail: &[u8]) -> Option<u64> {
    base64_lines(octets, tail).map(|l| l.decoded_len)
}

/// Whether decoding `encoding` leaves the bytes as they are (so the decoded size is the
/// encoded one). An unknown encoding is shown as it is stored.
pub fn is_identity(encoding: &TransferEncoding) -> bool {
    match encoding {
        TransferEncoding::SevenBit
        | TransferEncoding::EightBit
        | TransferEncoding::Binary
        | TransferEncoding::Other(_) => true,
        TransferEncoding::Base64 | TransferEncoding::QuotedPrintable => false,
    }
}

/// An estimate of the decoded size of a part that is `octets` long encoded. For base64 it
/// assumes the usual 76-character lines ending in CRLF; for everything else it is `octets`
/// (quoted-printable only shrinks, so that is an upper bound).
pub(crate) fn decoded_size_hint(encoding: &TransferEncoding, octets: u64) -> u64 {
    match encoding {
        TransferEncoding::Base64 => {
            let line_breaks = octets / 78 * 2;
            octets.saturating_sub(line_breaks) / 4 * 3
        }
        TransferEncoding::QuotedPrintable
        | TransferEncoding::SevenBit
        | TransferEncoding::EightBit
        | TransferEncoding::Binary
        | TransferEncoding::Other(_) => octets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn leaf(media: &str, encoding: TransferEncoding, octets: u64) -> BodyPart {
        let (media_type, subtype) = media.split_once('/').unwrap_or((media, ""));
        BodyPart::Leaf {
            header: PartHeader {
                media_type: media_type.into(),
                subtype: subtype.into(),
                ..PartHeader::default()
            },
            encoding,
            octets,
        }
    }

    fn text(subtype: &str, charset: &str) -> BodyPart {
        let mut part = leaf(
            &format!("text/{subtype}"),
            TransferEncoding::QuotedPrintable,
            100,
        );
        if let BodyPart::Leaf { header, .. } = &mut part {
            header.params = strings(&[("charset", charset)]);
        }
        part
    }

    /// A base64 attachment with Content-Disposition parameters `disposition_params`.
    fn attachment(media: &str, disposition_params: &[(&str, &str)]) -> BodyPart {
        let mut part = leaf(media, TransferEncoding::Base64, 780);
        if let BodyPart::Leaf { header, .. } = &mut part {
            header.disposition = Some("attachment".into());
            header.disposition_params = strings(disposition_params);
        }
        part
    }

    /// A part with only a Content-Type `name` parameter (no disposition), as old mailers send.
    fn named(media: &str, name: &str) -> BodyPart {
        let mut part = leaf(media, TransferEncoding::Base64, 780);
        if let BodyPart::Leaf { header, .. } = &mut part {
            header.params = strings(&[("name", name)]);
        }
        part
    }

    fn multipart(subtype: &str, children: Vec<BodyPart>) -> BodyPart {
        BodyPart::Multipart {
            header: PartHeader {
                media_type: "multipart".into(),
                subtype: subtype.into(),
                ..PartHeader::default()
            },
            children,
        }
    }

    fn rfc822(subject: Option<&str>, body: BodyPart) -> BodyPart {
        BodyPart::Message {
            header: PartHeader {
                media_type: "message".into(),
                subtype: "rfc822".into(),
                ..PartHeader::default()
            },
            encoding: TransferEncoding::SevenBit,
            octets: 5000,
            subject: subject.map(|s| s.as_bytes().to_vec()),
            body: Box::new(body),
        }
    }

    /// Every entry as `path@section`, directories as `path/@section`, depth first.
    fn listing(entries: &[Entry]) -> Vec<String> {
        fn walk(entries: &[Entry], prefix: &str, out: &mut Vec<String>) {
            for entry in entries {
                match &entry.kind {
                    EntryKind::File(spec) => {
                        out.push(format!("{prefix}{}@{}", entry.name, spec.section))
                    }
                    EntryKind::Message { section, entries } => {
                        out.push(format!("{prefix}{}/@{section}", entry.name));
                        walk(entries, &format!("{prefix}{}/", entry.name), out);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(entries, "", &mut out);
        out
    }

    fn find<'a>(entries: &'a [Entry], name: &str) -> &'a Entry {
        entries
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no entry {name} in {:?}", listing(entries)))
    }

    fn file<'a>(entries: &'a [Entry], name: &str) -> &'a FileSpec {
        find(entries, name)
            .file()
            .unwrap_or_else(|| panic!("{name} is not a file"))
    }

    fn dir<'a>(entries: &'a [Entry], name: &str) -> &'a [Entry] {
        match &find(entries, name).kind {
            EntryKind::Message { entries, .. } => entries,
            EntryKind::File(_) => panic!("{name} is not a directory"),
        }
    }

    /// The structure Dovecot reports for a typical forwarded-with-attachment message.
    fn dovecot_example() -> BodyPart {
        multipart(
            "mixed",
            vec![
                multipart(
                    "alternative",
                    vec![text("plain", "utf-8"), text("html", "iso-8859-1")],
                ),
                named("application/pdf", "report.pdf"),
                rfc822(
                    Some("Holiday =?utf-8?q?pictures_=E2=98=80?="),
                    multipart(
                        "mixed",
                        vec![
                            text("plain", "us-ascii"),
                            attachment("image/png", &[("filename", "photo.png")]),
                        ],
                    ),
                ),
            ],
        )
    }

    #[test]
    fn dovecot_example_names_and_sections() {
        let entries = message_layout(&dovecot_example(), 12345);
        assert_eq!(
            listing(&entries),
            [
                "message.eml@",
                "body.txt@1.1",
                "body.html@1.2",
                "report.pdf@2",
                "message-3 Holiday pictures ☀/@3",
                "message-3 Holiday pictures ☀/message.eml@3",
                "message-3 Holiday pictures ☀/body.txt@3.1",
                "message-3 Holiday pictures ☀/photo.png@3.2",
            ]
        );
    }

    #[test]
    fn dovecot_example_contents() {
        let entries = message_layout(&dovecot_example(), 12345);
        let eml = file(&entries, "message.eml");
        assert_eq!(eml.content, Content::Raw);
        assert_eq!((eml.size_hint, eml.exact_size), (12345, true));
        assert_eq!(
            file(&entries, "body.txt").content,
            Content::Text {
                encoding: TransferEncoding::QuotedPrintable,
                charset: Some("utf-8".into())
            }
        );
        assert_eq!(
            file(&entries, "body.html").content,
            Content::Text {
                encoding: TransferEncoding::QuotedPrintable,
                charset: Some("iso-8859-1".into())
            }
        );
        let pdf = file(&entries, "report.pdf");
        assert_eq!(pdf.content, Content::Decoded(TransferEncoding::Base64));
        assert_eq!((pdf.size_hint, pdf.exact_size), (570, false)); // (780 - 20) * 3 / 4
        let nested = dir(&entries, "message-3 Holiday pictures ☀");
        let nested_eml = file(nested, "message.eml");
        assert_eq!(nested_eml.content, Content::Raw);
        assert_eq!(nested_eml.section, Section(vec![3]));
        assert_eq!((nested_eml.size_hint, nested_eml.exact_size), (5000, true));
    }

    #[test]
    fn third_child_of_multipart_is_section_3() {
        let structure = multipart(
            "mixed",
            vec![
                text("plain", "utf-8"),
                named("application/pdf", "a.pdf"),
                leaf("application/octet-stream", TransferEncoding::Base64, 10),
                leaf("image/jpeg", TransferEncoding::Base64, 10),
            ],
        );
        assert_eq!(
            listing(&message_layout(&structure, 1)),
            [
                "message.eml@",
                "body.txt@1",
                "a.pdf@2",
                "part-3.bin@3",
                "part-4.jpg@4"
            ]
        );
    }

    #[test]
    fn single_part_message_body_is_section_1() {
        let entries = message_layout(&text("plain", "utf-8"), 10);
        assert_eq!(listing(&entries), ["message.eml@", "body.txt@1"]);
        let entries = message_layout(&named("application/pdf", "only.pdf"), 10);
        assert_eq!(listing(&entries), ["message.eml@", "only.pdf@1"]);
        let entries = message_layout(&text("html", "utf-8"), 10);
        assert_eq!(listing(&entries), ["message.eml@", "body.html@1"]);
    }

    #[test]
    fn rfc822_with_single_part_body() {
        let structure = multipart(
            "mixed",
            vec![
                text("plain", "utf-8"),
                rfc822(Some("Inner"), text("plain", "koi8-r")),
            ],
        );
        let entries = message_layout(&structure, 1);
        assert_eq!(
            listing(&entries),
            [
                "message.eml@",
                "body.txt@1",
                "message-2 Inner/@2",
                "message-2 Inner/message.eml@2",
                "message-2 Inner/body.txt@2.1",
            ]
        );
        let inner = dir(&entries, "message-2 Inner");
        assert_eq!(
            file(inner, "body.txt").content,
            Content::Text {
                encoding: TransferEncoding::QuotedPrintable,
                charset: Some("koi8-r".into())
            }
        );
    }

    #[test]
    fn rfc822_with_multipart_body_and_nested_rfc822() {
        let structure = multipart(
            "mixed",
            vec![
                text("plain", "utf-8"),
                rfc822(
                    Some("Outer"),
                    multipart(
                        "mixed",
                        vec![
                            multipart(
                                "alternative",
                                vec![text("plain", "utf-8"), text("html", "utf-8")],
                            ),
                            named("image/gif", "a.gif"),
                            rfc822(
                                None,
                                multipart(
                                    "mixed",
                                    vec![text("plain", "utf-8"), named("application/zip", "z.zip")],
                                ),
                            ),
                        ],
                    ),
                ),
            ],
        );
        assert_eq!(
            listing(&message_layout(&structure, 1)),
            [
                "message.eml@",
                "body.txt@1",
                "message-2 Outer/@2",
                "message-2 Outer/message.eml@2",
                "message-2 Outer/body.txt@2.1.1",
                "message-2 Outer/body.html@2.1.2",
                "message-2 Outer/a.gif@2.2",
                "message-2 Outer/message-2.3 (no subject)/@2.3",
                "message-2 Outer/message-2.3 (no subject)/message.eml@2.3",
                "message-2 Outer/message-2.3 (no subject)/body.txt@2.3.1",
                "message-2 Outer/message-2.3 (no subject)/z.zip@2.3.2",
            ]
        );
    }

    #[test]
    fn top_level_rfc822_body() {
        // A message whose own Content-Type is message/rfc822.
        let structure = rfc822(Some("Bounced"), text("plain", "utf-8"));
        assert_eq!(
            listing(&message_layout(&structure, 1)),
            [
                "message.eml@",
                "message-1 Bounced/@1",
                "message-1 Bounced/message.eml@1",
                "message-1 Bounced/body.txt@1.1",
            ]
        );
    }

    #[test]
    fn alternative_with_related_html() {
        let structure = multipart(
            "mixed",
            vec![
                multipart(
                    "alternative",
                    vec![
                        text("plain", "utf-8"),
                        multipart(
                            "related",
                            vec![
                                text("html", "utf-8"),
                                leaf("image/png", TransferEncoding::Base64, 100),
                            ],
                        ),
                    ],
                ),
                leaf("text/calendar", TransferEncoding::SevenBit, 50),
            ],
        );
        assert_eq!(
            listing(&message_layout(&structure, 1)),
            [
                "message.eml@",
                "body.txt@1.1",
                "body.html@1.2.1",
                "part-1.2.2.png@1.2.2",
                "part-2.ics@2",
            ]
        );
    }

    #[test]
    fn body_after_a_photo_or_a_forwarded_message_in_mixed() {
        let structure = multipart(
            "mixed",
            vec![named("image/jpeg", "photo.jpg"), text("plain", "utf-8")],
        );
        assert_eq!(
            listing(&message_layout(&structure, 1)),
            ["message.eml@", "body.txt@2", "photo.jpg@1"]
        );
        let structure = multipart(
            "mixed",
            vec![
                rfc822(Some("fwd"), text("plain", "utf-8")),
                text("plain", "utf-8"),
                text("plain", "utf-8"),
            ],
        );
        let entries = message_layout(&structure, 1);
        assert_eq!(
            listing(&entries),
            [
                "message.eml@",
                "body.txt@2",
                "message-1 fwd/@1",
                "message-1 fwd/message.eml@1",
                "message-1 fwd/body.txt@1.1",
                "part-3.txt@3",
            ]
        );
        // A text part that is not the body is byte-identical to what was sent: no conversion.
        assert_eq!(
            file(&entries, "part-3.txt").content,
            Content::Decoded(TransferEncoding::QuotedPrintable)
        );
    }

    #[test]
    fn only_the_root_of_related_is_searched_for_the_body() {
        let structure = multipart(
            "related",
            vec![named("image/png", "logo.png"), text("html", "utf-8")],
        );
        assert_eq!(
            listing(&message_layout(&structure, 1)),
            ["message.eml@", "logo.png@1", "part-2.html@2"]
        );
    }

    #[test]
    fn base64_lengths_follow_from_the_size_and_the_tail() {
        use base64::Engine;
        let engine = base64::engine::general_purpose::STANDARD;
        for width in [76usize, 72, 64, 60] {
            for (len, crlf) in [
                (0usize, true),
                (1, true),
                (2, true),
                (57, true),
                (1000, true),
                (4321, false),
                (100_000, true),
            ] {
                let data: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
                let encoded = engine.encode(&data);
                let mut part = Vec::new();
                for line in encoded.as_bytes().chunks(width) {
                    part.extend_from_slice(line);
                    part.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
                }
                let tail = &part[part.len().saturating_sub(160)..];
                let got = base64_decoded_len(part.len() as u64, tail);
                if len == 0 {
                    assert_eq!(got, None, "an empty part has no last line");
                } else {
                    assert_eq!(
                        got,
                        Some(len as u64),
                        "width {width}, {len} bytes, crlf {crlf}"
                    );
                }
            }
        }
        // The window of any decoded range holds exactly those bytes.
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 13 % 256) as u8).collect();
        let encoded = engine.encode(&data);
        let mut part = Vec::new();
        for line in encoded.as_bytes().chunks(72) {
            part.extend_from_slice(line);
            part.extend_from_slice(b"\r\n");
        }
        let lines = base64_lines(part.len() as u64, &part[part.len() - 160..]).unwrap();
        for (start, end) in [
            (0u64, 1u64),
            (0, 4096),
            (1, 2),
            (100, 3000),
            (4999, 5000),
            (3, 6),
        ] {
            let (from, to, origin) = lines.encoded_window(start, end);
            let decoded = crate::mime::decode_base64(&part[from as usize..to as usize]);
            let offset = (start - origin) as usize;
            assert_eq!(
                &decoded[offset..offset + (end - start) as usize],
                &data[start as usize..end as usize],
                "{start}..{end}"
            );
        }
        // Lines of uneven width do not add up: no guess.
        let part = b"QUJD\r\nREVGR0g=\r\n";
        assert_eq!(base64_decoded_len(part.len() as u64 + 3, part), None);
        assert_eq!(base64_decoded_len(10, b"not base64!"), None);
    }

    #[test]
    fn text_attachments_are_not_the_body_but_named_inline_text_is() {
        let mut disposed = text("plain", "utf-8");
        if let BodyPart::Leaf { header, .. } = &mut disposed {
            header.disposition = Some("attachment".into());
        }
        let structure = multipart(
            "mixed",
            vec![multipart(
                "alternative",
                vec![
                    disposed,
                    named("text/plain", "notes.txt"),
                    text("plain", "utf-8"),
                ],
            )],
        );
        assert_eq!(
            listing(&message_layout(&structure, 1)),
            [
                "message.eml@",
                "body.txt@1.2",
                "part-1.1.txt@1.1",
                "notes.txt@1.2",
                "part-1.3.txt@1.3",
            ]
        );
    }

    #[test]
    fn named_inline_text_first_in_mixed_is_the_body_and_a_file() {
        // `Content-Disposition: inline; filename="notes.txt"`, as Dovecot reports it.
        let mut inline = text("plain", "utf-8");
        if let BodyPart::Leaf { header, .. } = &mut inline {
            header.disposition = Some("inline".into());
            header.disposition_params = strings(&[("filename", "notes.txt")]);
        }
        let pdf = attachment("application/pdf", &[("filename", "report.pdf")]);
        let entries = message_layout(&multipart("mixed", vec![inline, pdf]), 1);
        assert_eq!(
            listing(&entries),
            ["message.eml@", "body.txt@1", "notes.txt@1", "report.pdf@2"]
        );
        assert_eq!(
            file(&entries, "body.txt").content,
            Content::Text {
                encoding: TransferEncoding::QuotedPrintable,
                charset: Some("utf-8".into())
            }
        );
        // The named file is the part as sent, like any other attachment.
        assert_eq!(
            file(&entries, "notes.txt").content,
            Content::Decoded(TransferEncoding::QuotedPrintable)
        );

        // Only a Content-Type name and no disposition, as old mailers send.
        let structure = multipart(
            "mixed",
            vec![
                named("text/plain", "readme.txt"),
                named("image/png", "dot.png"),
            ],
        );
        assert_eq!(
            listing(&message_layout(&structure, 1)),
            ["message.eml@", "body.txt@1", "readme.txt@1", "dot.png@2"]
        );
    }

    #[test]
    fn body_is_not_searched_inside_rfc822() {
        let structure = multipart("mixed", vec![rfc822(Some("x"), text("plain", "utf-8"))]);
        let names: Vec<String> = message_layout(&structure, 1)
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["message.eml", "message-1 x"]);
    }

    #[test]
    fn rfc2231_and_rfc2047_names() {
        let structure = multipart(
            "mixed",
            vec![
                text("plain", "utf-8"),
                attachment("application/pdf", &[("filename*", "utf-8''%E2%82%AC.pdf")]),
                attachment(
                    "application/pdf",
                    &[
                        ("FILENAME*0*", "utf-8''Sch%C3%B6ne"),
                        ("FILENAME*1*", "%20Gr%C3%BC%C3%9Fe.pdf"),
                    ],
                ),
                named("image/jpeg", "=?UTF-8?B?0YTQvtGC0L4uanBn?="),
            ],
        );
        assert_eq!(
            listing(&message_layout(&structure, 1)),
            [
                "message.eml@",
                "body.txt@1",
                "€.pdf@2",
                "Schöne Grüße.pdf@3",
                "фото.jpg@4",
            ]
        );
    }

    #[test]
    fn hostile_names_are_sanitised() {
        let structure = multipart(
            "mixed",
            vec![
                attachment(
                    "application/octet-stream",
                    &[("filename", "../../etc/passwd")],
                ),
                attachment("application/octet-stream", &[("filename", "..")]),
                attachment("application/octet-stream", &[("filename", "a\0b\x1b.txt")]),
            ],
        );
        assert_eq!(
            listing(&message_layout(&structure, 1)),
            ["message.eml@", ".._.._etc_passwd@1", "_@2", "a_b_.txt@3"]
        );
    }

    #[test]
    fn collisions_with_fixed_names_and_each_other() {
        let structure = multipart(
            "mixed",
            vec![
                multipart(
                    "alternative",
                    vec![text("plain", "utf-8"), text("html", "utf-8")],
                ),
                named("text/plain", "body.txt"),
                named("message/rfc822", "message.eml"),
                named("application/pdf", "report.pdf"),
                named("application/pdf", "report.pdf"),
                named("application/pdf", "Report.pdf"),
                rfc822(Some("report.pdf"), text("plain", "utf-8")),
            ],
        );
        let mut with_name = rfc822(None, text("plain", "utf-8"));
        if let BodyPart::Message { header, .. } = &mut with_name {
            header.params = strings(&[("name", "report.pdf.eml")]);
        }
        let BodyPart::Multipart {
            mut children,
            header,
        } = structure
        else {
            unreachable!()
        };
        children.push(with_name);
        let entries = message_layout(&BodyPart::Multipart { header, children }, 1);
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "message.eml",
                "body.txt",
                "body.html",
                "body (2).txt",
                "message (2).eml",
                "report.pdf",
                "report (2).pdf",
                "Report.pdf",
                "message-7 report.pdf",
                "report.pdf (2)",
            ]
        );
    }

    #[test]
    fn fixed_names_are_reserved_even_without_a_body() {
        // An attachment, so that it is not the body itself.
        let structure = multipart(
            "mixed",
            vec![attachment("text/html", &[("filename", "body.html")])],
        );
        let names: Vec<String> = message_layout(&structure, 1)
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["message.eml", "body (2).html"]);
    }

    #[test]
    fn fifty_attachments_with_the_same_name() {
        let children = (0..50).map(|_| named("image/png", "image.png")).collect();
        let entries = message_layout(&multipart("mixed", children), 1);
        let names: std::collections::HashSet<&str> =
            entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names.len(), 51);
        assert!(names.contains("image.png"));
        assert!(names.contains("image (50).png"));
        assert_eq!(file(&entries, "image (50).png").section, Section(vec![50]));
    }

    #[test]
    fn long_attachment_name_keeps_extension() {
        let long = format!("{}.pdf", "x".repeat(1000));
        let entries = message_layout(&named("application/pdf", &long), 1);
        let name = &entries[1].name;
        assert!(name.len() <= 200 && name.ends_with("xx.pdf"), "{name}");
    }

    #[test]
    fn encapsulated_message_with_file_name_and_odd_encoding() {
        let mut part = rfc822(Some("ignored"), text("plain", "utf-8"));
        if let BodyPart::Message {
            header, encoding, ..
        } = &mut part
        {
            header.disposition = Some("attachment".into());
            header.disposition_params = strings(&[("filename", "Forwarded.EML")]);
            *encoding = TransferEncoding::Base64;
        }
        let entries = message_layout(&multipart("mixed", vec![part]), 1);
        let nested = dir(&entries, "Forwarded");
        let eml = file(nested, "message.eml");
        assert_eq!(eml.content, Content::Decoded(TransferEncoding::Base64));
        assert!(!eml.exact_size);
        assert_eq!(eml.size_hint, (5000 - 128) / 4 * 3);
    }

    #[test]
    fn eml_only_file_name_falls_back_to_section_name() {
        let mut part = rfc822(Some("Subj"), text("plain", "utf-8"));
        if let BodyPart::Message { header, .. } = &mut part {
            header.params = strings(&[("name", ".eml")]);
        }
        let entries = message_layout(&multipart("mixed", vec![part]), 1);
        assert_eq!(entries[1].name, "message-1 Subj");
    }

    #[test]
    fn uppercase_media_types_and_charset_param() {
        let mut part = leaf("TEXT/PLAIN", TransferEncoding::Base64, 10);
        if let BodyPart::Leaf { header, .. } = &mut part {
            header.params = strings(&[("CHARSET", "\"Windows-1252\"")]);
        }
        let entries = message_layout(&part, 1);
        assert_eq!(
            file(&entries, "body.txt").content,
            Content::Text {
                encoding: TransferEncoding::Base64,
                charset: Some("Windows-1252".into())
            }
        );
    }

    #[test]
    fn rfc2231_charset_wins_over_dovecots_default() {
        // Dovecot's answer for `charset*0*=us-ascii''utf; charset*1*=-8`.
        let mut part = leaf("text/plain", TransferEncoding::Base64, 10);
        if let BodyPart::Leaf { header, .. } = &mut part {
            header.params = strings(&[("charset*", "us-ascii''utf-8"), ("charset", "us-ascii")]);
        }
        let signed = multipart(
            "signed",
            vec![
                part,
                leaf("application/pgp-signature", TransferEncoding::SevenBit, 10),
            ],
        );
        assert_eq!(
            file(&message_layout(&signed, 1), "body.txt").content,
            Content::Text {
                encoding: TransferEncoding::Base64,
                charset: Some("utf-8".into())
            }
        );
    }

    #[test]
    fn content_type_without_subtype_is_text_plain() {
        // Dovecot's answers for `Content-Type: text` and for the unparsable
        // `Content-Type: text; charset=us-ascii`.
        let mut bare = leaf("text", TransferEncoding::SevenBit, 10);
        if let BodyPart::Leaf { header, .. } = &mut bare {
            header.params = strings(&[("charset", "us-ascii")]);
        }
        let unparsable = leaf("", TransferEncoding::SevenBit, 10);
        for (part, charset) in [(&bare, Some("us-ascii")), (&unparsable, None)] {
            let entries = message_layout(part, 1);
            assert_eq!(listing(&entries), ["message.eml@", "body.txt@1"]);
            assert_eq!(
                file(&entries, "body.txt").content,
                Content::Text {
                    encoding: TransferEncoding::SevenBit,
                    charset: charset.map(String::from)
                }
            );
        }
        // Where it is not the body it is still text.
        let structure = multipart("mixed", vec![text("plain", "utf-8"), unparsable]);
        assert_eq!(
            listing(&message_layout(&structure, 1)),
            ["message.eml@", "body.txt@1", "part-2.txt@2"]
        );
    }

    #[test]
    fn empty_multipart_lists_only_message_eml() {
        let entries = message_layout(&multipart("mixed", Vec::new()), 7);
        assert_eq!(listing(&entries), ["message.eml@"]);
    }

    #[test]
    fn very_deep_structure_is_cut_off_without_crashing() {
        let mut part = text("plain", "utf-8");
        for _ in 0..500 {
            part = multipart("mixed", vec![part]);
        }
        let entries = message_layout(&part, 1);
        assert_eq!(listing(&entries), ["message.eml@"]);

        let mut message = text("plain", "utf-8");
        for _ in 0..200 {
            message = rfc822(None, message);
        }
        let entries = message_layout(&message, 1);
        let mut depth = 0;
        let mut current = &entries;
        while let Some(EntryKind::Message { entries, .. }) = current.get(1).map(|e| &e.kind) {
            depth += 1;
            current = entries;
        }
        assert_eq!(depth, MAX_DEPTH + 1);
    }

    #[test]
    fn size_hints() {
        assert_eq!(decoded_size_hint(&TransferEncoding::Base64, 0), 0);
        assert_eq!(decoded_size_hint(&TransferEncoding::Base64, 8), 6);
        // 10 full lines of 76 characters + CRLF decode to 570 bytes.
        assert_eq!(decoded_size_hint(&TransferEncoding::Base64, 780), 570);
        assert_eq!(
            decoded_size_hint(&TransferEncoding::QuotedPrintable, 99),
            99
        );
        assert_eq!(decoded_size_hint(&TransferEncoding::SevenBit, 5), 5);
    }

    mod numbering_properties {
        use super::*;
        use proptest::prelude::*;
        use std::collections::{BTreeSet, HashSet};

        /// Random BODYSTRUCTURE trees: text, named and unnamed leaves, multiparts, rfc822.
        fn tree() -> impl Strategy<Value = BodyPart> {
            let leaf_part = prop_oneof![
                Just(text("plain", "utf-8")),
                Just(text("html", "utf-8")),
                Just(leaf("image/png", TransferEncoding::Base64, 300)),
                "[a-z.]{0,12}".prop_map(|n| attachment("application/pdf", &[("filename", &n)])),
            ];
            leaf_part.prop_recursive(4, 40, 4, |inner| {
                prop_oneof![
                    (
                        prop_oneof![Just("mixed"), Just("alternative"), Just("related")],
                        proptest::collection::vec(inner.clone(), 1..4)
                    )
                        .prop_map(|(sub, children)| multipart(sub, children)),
                    inner.prop_map(|body| rfc822(Some("fwd"), body)),
                ]
            })
        }

        /// RFC 3501 §6.4.5 numbering, written independently of `message_layout`:
        /// (leaf sections, rfc822 sections).
        fn oracle(root: &BodyPart) -> (BTreeSet<String>, BTreeSet<String>) {
            fn body(part: &BodyPart, base: &[u32], out: &mut (BTreeSet<String>, BTreeSet<String>)) {
                match part {
                    BodyPart::Multipart { children, .. } => {
                        for (i, child) in children.iter().enumerate() {
                            walk(child, &[base, &[i as u32 + 1]].concat(), out);
                        }
                    }
                    _ => walk(part, &[base, &[1]].concat(), out),
                }
            }
            fn walk(part: &BodyPart, path: &[u32], out: &mut (BTreeSet<String>, BTreeSet<String>)) {
                let name = Section(path.to_vec()).to_string();
                match part {
                    BodyPart::Multipart { children, .. } => {
                        for (i, child) in children.iter().enumerate() {
                            walk(child, &[path, &[i as u32 + 1]].concat(), out);
                        }
                    }
                    BodyPart::Leaf { .. } => {
                        out.0.insert(name);
                    }
                    BodyPart::Message { body: inner, .. } => {
                        out.1.insert(name);
                        body(inner, path, out);
                    }
                }
            }
            let mut out = (BTreeSet::new(), BTreeSet::new());
            body(root, &[], &mut out);
            out
        }

        /// Sections listed: as files other than the bodies (each at most once), as body.txt
        /// or body.html, and as directories.
        #[derive(Default)]
        struct Seen {
            files: BTreeSet<String>,
            bodies: BTreeSet<String>,
            dirs: BTreeSet<String>,
        }

        fn collect(entries: &[Entry], seen: &mut Seen) {
            let mut names = HashSet::new();
            for entry in entries {
                assert!(
                    names.insert(entry.name.clone()),
                    "duplicate name {}",
                    entry.name
                );
                assert!(!entry.name.contains('/') && entry.name != "." && entry.name != "..");
                match &entry.kind {
                    EntryKind::File(spec) if entry.name == MESSAGE_FILE => {
                        assert!(matches!(spec.content, Content::Raw | Content::Decoded(_)));
                    }
                    // A body with a file name is listed under that name as well.
                    EntryKind::File(spec)
                        if entry.name == BODY_TEXT_FILE || entry.name == BODY_HTML_FILE =>
                    {
                        seen.bodies.insert(spec.section.to_string());
                    }
                    EntryKind::File(spec) => {
                        assert!(
                            seen.files.insert(spec.section.to_string()),
                            "section twice: {}",
                            spec.section
                        );
                    }
                    EntryKind::Message { section, entries } => {
                        seen.dirs.insert(section.to_string());
                        collect(entries, seen);
                    }
                }
            }
        }

        proptest! {
            #[test]
            fn every_leaf_is_one_file_at_its_rfc3501_section(root in tree()) {
                let (want_files, want_dirs) = oracle(&root);
                let mut seen = Seen::default();
                collect(&message_layout(&root, 1000), &mut seen);
                let mut files = seen.files;
                files.extend(seen.bodies);
                prop_assert_eq!(files, want_files);
                prop_assert_eq!(seen.dirs, want_dirs);
            }
        }
    }
}
