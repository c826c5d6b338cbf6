//! Dovecot 2.3's header parsing for the memory store: a MIME entity's fields
//! (`message-header-parser.c`), its ENVELOPE subject (`imap-envelope.c`), and what its
//! `Content-*` fields say about the part (`message-part-data.c`), quirks included.

use super::rfc822_parser::{Lexer, NUL_REPLACEMENT};
use crate::store::{PartHeader, TransferEncoding};

/// Boundaries are cut to this length, as Dovecot does (70 allowed by RFC 2046, plus slack).
const MAX_BOUNDARY_LEN: usize = 80;

/// One header field: its name (trailing whitespace removed) and its raw value after the
/// colon, folds included, without the final line break.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    name: Vec<u8>,
    value: Vec<u8>,
}

/// The header fields of an entity, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Fields(Vec<Field>);

impl Fields {
    /// Split a header block (everything before the blank line) into fields
    /// ([RFC 5322 §2.2](https://www.rfc-editor.org/rfc/rfc5322#section-2.2)). A line without
    /// a colon is no field; continuation lines after it are dropped with it.
    pub(crate) fn parse(block: &[u8]) -> Fields {
        let mut fields: Vec<Field> = Vec::new();
        let mut continuing = false;
        for line in block.split_inclusive(|&b| b == b'\n') {
            if matches!(line.first(), Some(b' ' | b'\t')) {
                if let (true, Some(last)) = (continuing, fields.last_mut()) {
                    last.value.extend_from_slice(line);
                }
                continue;
            }
            // Finish the previous field: its value ends before its last line break.
            if let Some(last) = fields.last_mut() {
                strip_line_break(&mut last.value);
            }
            continuing = false;
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let name = &line[..colon];
            let name_len = name
                .iter()
                .rposition(|&b| b != b' ' && b != b'\t')
                .map_or(0, |i| i + 1);
            fields.push(Field {
                name: name[..name_len].to_vec(),
                value: line[colon + 1..].to_vec(),
            });
            continuing = true;
        }
        if let Some(last) = fields.last_mut() {
            strip_line_break(&mut last.value);
        }
        Fields(fields)
    }

    pub(crate) fn named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.0
            .iter()
            .filter(move |f| f.name.eq_ignore_ascii_case(name.as_bytes()))
            .map(|f| f.value.as_slice())
    }

    /// The Subject as an IMAP ENVELOPE gives it: the last Subject field, still RFC 2047
    /// encoded, with every run of whitespace and line breaks made one space and the ends
    /// trimmed (Dovecot's `imap_append_string_for_humans`).
    pub(crate) fn subject(&self) -> Option<Vec<u8>> {
        self.named("subject").last().map(for_humans)
    }

    /// What the `Content-*` fields say, for a part that is (`mime`) or is not a MIME entity.
    /// A message is MIME when it has MIME-Version or Content-Type; parts of a multipart
    /// always are. `in_digest`: the part sits in a multipart/digest.
    pub(crate) fn describe(&self, mime: bool, in_digest: bool) -> Description {
        let mime = mime || self.named("mime-version").next().is_some();
        let content_type = self.named("content-type").next();
        let mime = mime || content_type.is_some();
        if !mime {
            return Description::implicit(in_digest);
        }
        let (type_text, params) = match content_type {
            Some(value) => {
                let mut lexer = Lexer::new(value);
                let (text, ok) = lexer.content_type();
                let params = if ok { lexer.params() } else { Vec::new() };
                (Some(text), params)
            }
            None => (None, Vec::new()),
        };
        let mut description = match type_text {
            None => Description::implicit(in_digest),
            Some(text) => Description::from_content_type(&text, params),
        };
        description.encoding = self
            .named("content-transfer-encoding")
            .find_map(|value| Lexer::new(value).sole_token())
            .map_or(TransferEncoding::SevenBit, |token| encoding(&token));
        // Dovecot re-reads Content-Disposition fields until one has parameters.
        for value in self.named("content-disposition") {
            if !description.header.disposition_params.is_empty() {
                break;
            }
            let mut lexer = Lexer::new(value);
            let Some(kind) = lexer.leading_token() else {
                continue;
            };
            description.header.disposition = Some(lower(&kind));
            let params = lexer.params();
            if !params.is_empty() {
                description.header.disposition_params = params_to_strings(params);
            }
        }
        description
    }
}

/// How a part is to be parsed and reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Description {
    /// The fields BODYSTRUCTURE reports (type names and parameter names lower-cased).
    pub(crate) header: PartHeader,
    pub(crate) encoding: TransferEncoding,
    pub(crate) kind: PartKind,
}

/// What Dovecot's message parser makes of a part's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PartKind {
    Leaf,
    /// message/rfc822: the body is a message (whatever its transfer encoding).
    Message,
    /// multipart/*: split at `boundary` if there is one; `digest` parts default to
    /// message/rfc822.
    Multipart {
        boundary: Option<Vec<u8>>,
        digest: bool,
    },
}

impl Description {
    /// A part without a Content-Type: text/plain, or message/rfc822 inside a digest.
    fn implicit(in_digest: bool) -> Description {
        let header = if in_digest {
            header("message", "rfc822", Vec::new())
        } else {
            text_plain()
        };
        let kind = if in_digest {
            PartKind::Message
        } else {
            PartKind::Leaf
        };
        Description {
            header,
            encoding: TransferEncoding::SevenBit,
            kind,
        }
    }

    /// From the text Dovecot read out of Content-Type (`type/subtype`, a lone `type`, or
    /// empty) and the parameters that followed it.
    fn from_content_type(text: &[u8], params: Vec<(Vec<u8>, Vec<u8>)>) -> Description {
        let (media_type, subtype) = match text.iter().position(|&b| b == b'/') {
            Some(slash) => (&text[..slash], Some(&text[slash + 1..])),
            None => (text, None),
        };
        let media_type = lower(media_type);
        let subtype = subtype.map(lower);
        let kind = match (media_type.as_str(), subtype.as_deref()) {
            ("message", Some("rfc822")) => PartKind::Message,
            ("multipart", Some(subtype)) => PartKind::Multipart {
                boundary: params
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(b"boundary"))
                    .map(|(_, value)| value[..value.len().min(MAX_BOUNDARY_LEN)].to_vec()),
                digest: subtype == "digest",
            },
            _ => PartKind::Leaf,
        };
        let header = match (media_type.as_str(), subtype) {
            // "multipart" without a subtype is not parsed as one; Dovecot reports it so.
            ("multipart", None) => header("application", "octet-stream", Vec::new()),
            (media_type, subtype) => {
                let mut params = params_to_strings(params);
                if media_type == "text" && !params.iter().any(|(name, _)| name == "charset") {
                    params.push(("charset".into(), "us-ascii".into()));
                }
                header(media_type, &subtype.unwrap_or_default(), params)
            }
        };
        Description {
            header,
            encoding: TransferEncoding::SevenBit,
            kind,
        }
    }
}

/// The header BODYSTRUCTURE gives a part with no Content-Type.
pub(crate) fn text_plain() -> PartHeader {
    header("text", "plain", vec![("charset".into(), "us-ascii".into())])
}

fn header(media_type: &str, subtype: &str, params: Vec<(String, String)>) -> PartHeader {
    PartHeader {
        media_type: media_type.into(),
        subtype: subtype.into(),
        params,
        disposition: None,
        disposition_params: Vec::new(),
    }
}

fn encoding(token: &[u8]) -> TransferEncoding {
    match lower(token).as_str() {
        "7bit" => TransferEncoding::SevenBit,
        "8bit" => TransferEncoding::EightBit,
        "binary" => TransferEncoding::Binary,
        "base64" => TransferEncoding::Base64,
        "quoted-printable" => TransferEncoding::QuotedPrintable,
        other => TransferEncoding::Other(other.to_string()),
    }
}

/// Parameter names lower-cased (as the IMAP store reports them), values lossily UTF-8.
fn params_to_strings(params: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(String, String)> {
    params
        .into_iter()
        .map(|(name, value)| (lower(&name), String::from_utf8_lossy(&value).into_owned()))
        .collect()
}

fn lower(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_ascii_lowercase()
}

fn strip_line_break(value: &mut Vec<u8>) {
    if value.last() == Some(&b'\n') {
        value.pop();
        if value.last() == Some(&b'\r') {
            value.pop();
        }
    }
}

/// Whitespace runs (space, tab, CR, LF) become one space, ends trimmed, NUL replaced.
fn for_humans(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut pending_space = false;
    for &b in value {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => pending_space = !out.is_empty(),
            _ => {
                if pending_space {
                    out.push(b' ');
                    pending_space = false;
                }
                if b == 0 {
                    out.extend_from_slice(NUL_REPLACEMENT);
                } else {
                    out.push(b);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Fields {
        Fields::parse(text.as_bytes())
    }

    fn describe(text: &str) -> Description {
        fields(text).describe(false, false)
    }

    fn strings(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn subject_is_normalized_like_dovecot_envelope() {
        let subject = |text: &str| {
            fields(text)
                .subject()
                .map(|s| String::from_utf8(s).unwrap())
        };
        assert_eq!(
            subject("Subject:  a\r\n\tb  \r\n c\r\n").as_deref(),
            Some("a b c")
        );
        assert_eq!(subject("Subject: a\tb\r\n").as_deref(), Some("a b"));
        assert_eq!(subject("Subject: a  \r\n").as_deref(), Some("a"));
        assert_eq!(subject("Subject:\r\n").as_deref(), Some(""));
        assert_eq!(subject("Subject:   \r\n").as_deref(), Some(""));
        assert_eq!(subject("Subject : spaced\r\n").as_deref(), Some("spaced"));
        assert_eq!(subject("Subject:a").as_deref(), Some("a"));
        assert_eq!(
            subject("subject: one\r\nSUBJECT: two\r\n").as_deref(),
            Some("two")
        );
        assert_eq!(subject("Subject: a\0b\r\n").as_deref(), Some("a\u{fffd}b"));
        assert_eq!(
            subject("Subject: =?utf-8?q?a?=\r\n =?utf-8?q?b?=\r\n").as_deref(),
            Some("=?utf-8?q?a?= =?utf-8?q?b?=")
        );
        assert_eq!(subject("From: a\r\n"), None);
        assert_eq!(subject("no colon\r\n Subject: hidden\r\n"), None);
    }

    #[test]
    fn no_content_type_is_us_ascii_text_or_a_message_in_a_digest() {
        let d = describe("Subject: x\r\n");
        assert_eq!(d.header, text_plain());
        assert_eq!(d.kind, PartKind::Leaf);
        let d = fields("").describe(true, true);
        assert_eq!(
            (d.header.media_type.as_str(), d.kind),
            ("message", PartKind::Message)
        );
        assert!(d.header.params.is_empty());
    }

    #[test]
    fn content_fields_are_ignored_without_mime() {
        let text = "Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment\r\n";
        let d = describe(text);
        assert_eq!(d.encoding, TransferEncoding::SevenBit);
        assert_eq!(d.header.disposition, None);
        let d = fields(text).describe(true, false);
        assert_eq!(d.encoding, TransferEncoding::Base64);
        assert_eq!(d.header.disposition.as_deref(), Some("attachment"));
        let d = describe(&format!("MIME-Version: 1.0\r\n{text}"));
        assert_eq!(d.encoding, TransferEncoding::Base64);
    }

    #[test]
    fn broken_content_types_are_reported_as_dovecot_does() {
        let pair = |text: &str| {
            let d = describe(&format!("Content-Type: {text}\r\n"));
            (d.header.media_type, d.header.subtype, d.header.params)
        };
        assert_eq!(
            pair("text"),
            (
                "text".into(),
                "".into(),
                strings(&[("charset", "us-ascii")])
            )
        );
        assert_eq!(
            pair("application"),
            ("application".into(), "".into(), vec![])
        );
        assert_eq!(
            pair("MULTIPART"),
            ("application".into(), "octet-stream".into(), vec![])
        );
        assert_eq!(pair(""), ("".into(), "".into(), vec![]));
        assert_eq!(pair("message/rfc822 junk"), ("".into(), "".into(), vec![]));
        assert_eq!(
            pair("TEXT/Plain; CharSet=UTF-8; boundary=x"),
            (
                "text".into(),
                "plain".into(),
                strings(&[("charset", "UTF-8"), ("boundary", "x")])
            )
        );
    }

    #[test]
    fn kinds_from_content_type() {
        let kind = |text: &str| describe(&format!("Content-Type: {text}\r\n")).kind;
        assert_eq!(kind("Message/RFC822"), PartKind::Message);
        assert_eq!(kind("message/partial"), PartKind::Leaf);
        assert_eq!(
            kind("multipart/digest; Boundary=\"d\""),
            PartKind::Multipart {
                boundary: Some(b"d".to_vec()),
                digest: true
            }
        );
        assert_eq!(
            kind("multipart/mixed"),
            PartKind::Multipart {
                boundary: None,
                digest: false
            }
        );
        let long = "b".repeat(100);
        let PartKind::Multipart { boundary, .. } =
            kind(&format!("multipart/mixed; boundary={long}"))
        else {
            panic!("not multipart");
        };
        assert_eq!(boundary.map(|b| b.len()), Some(MAX_BOUNDARY_LEN));
        // Only the first Content-Type counts.
        let d =
            describe("Content-Type: text/html\r\nContent-Type: multipart/mixed; boundary=b\r\n");
        assert_eq!(
            (d.header.subtype.as_str(), d.kind),
            ("html", PartKind::Leaf)
        );
    }

    #[test]
    fn transfer_encoding_and_disposition() {
        let d = describe(concat!(
            "Content-Type: application/pdf\r\n",
            "Content-Transfer-Encoding: base64 junk\r\n",
            "Content-Transfer-Encoding: X-UUEncode\r\n",
            "Content-Disposition: inline\r\n",
            "Content-Disposition: ATTACHMENT; Filename*=utf-8''r%C3%A9.pdf\r\n",
            "Content-Disposition: inline; filename=ignored\r\n",
        ));
        assert_eq!(d.encoding, TransferEncoding::Other("x-uuencode".into()));
        assert_eq!(d.header.disposition.as_deref(), Some("attachment"));
        assert_eq!(
            d.header.disposition_params,
            strings(&[("filename*", "utf-8''r%C3%A9.pdf")])
        );
        let d = describe("Content-Type: a/b\r\nContent-Disposition: ;filename=x\r\n");
        assert_eq!(d.header.disposition.as_deref(), Some(""));
        assert_eq!(d.header.disposition_params, strings(&[("filename", "x")]));
    }
}
