//! Turning a file written into a mailbox directory into a message to APPEND, streamed from
//! its spool file: an RFC 5322 message goes in as it is (line endings made CRLF); anything
//! else becomes the attachment of a new message named after the file, with an
//! `X-Imapfs-File` header (size, mtime, name) so the mailbox can show it as that file again.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;

/// The header that marks a message made from a file.
pub const ORIGIN_FIELD: &str = crate::store::imap::convert::ORIGIN_FIELD;

/// What a file-born message says of the file it was made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOrigin {
    pub name: String,
    pub size: u64,
    pub mtime: SystemTime,
}

/// Header fields that mark a file as a mail message rather than an arbitrary document.
const MESSAGE_FIELDS: [&str; 9] = [
    "from",
    "date",
    "subject",
    "message-id",
    "received",
    "return-path",
    "mime-version",
    "to",
    "delivered-to",
];

/// The fields of the RFC 5322 header block `data` starts with
/// ([RFC 5322 §2.2](https://www.rfc-editor.org/rfc/rfc5322#section-2.2)): field lines
/// (`Name: value`, folded lines allowed) up to an empty line; their names, lowercased.
/// `None` if `data` does not start so.
fn header_fields(data: &[u8]) -> Option<Vec<String>> {
    const MAX_HEADER: usize = 256 * 1024;
    let head = &data[..data.len().min(MAX_HEADER)];
    let mut names = Vec::new();
    for (i, line) in head.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return (i > 0).then_some(names);
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if i == 0 {
                return None;
            }
            continue;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b)) {
            return None;
        }
        names.push(String::from_utf8_lossy(name).to_ascii_lowercase());
    }
    None
}

/// Whether the file `name` holding `data` is a mail message, to be stored as it is.
/// - Named as mail (`.eml`): a header block of at least two fields, one of them a field
///   messages have.
/// - Named so that no media type is known (no extension, a Maildir file's name): the
///   same, and one of them `From` (every message names its originator,
///   [§3.6](https://www.rfc-editor.org/rfc/rfc5322#section-3.6)): notes that open with
///   `To:` or `Date:` lines name none.
/// - Named as another kind of document (`post.md` with `Title:`/`Date:` lines,
///   `notes.txt`, `data.json`): never; it stays a file.
pub fn is_message(name: &str, data: &[u8]) -> bool {
    let named_as_mail = match mime_guess::from_path(name).first() {
        Some(media) if media.type_() == mime_guess::mime::MESSAGE => true,
        Some(_) => return false,
        None => false,
    };
    let Some(fields) = header_fields(data) else {
        return false;
    };
    let known = fields
        .iter()
        .filter(|f| MESSAGE_FIELDS.contains(&f.as_str()))
        .count();
    let from = fields.iter().any(|f| f == "from");
    fields.len() >= 2 && known > 0 && (named_as_mail || (from && known > 1))
}

/// The media type to declare for a file: from its name, else from its first bytes. Never a
/// composite type (`message/rfc822` for a `.eml` that is no message, `multipart/*`): the
/// file goes base64-encoded, which RFC 2046 forbids for those, and a server takes such a
/// part for a message of its own (Dovecot's BINARY then answers other bytes than the file's).
pub fn media_type_for(name: &str, head: &[u8]) -> String {
    let by_name = mime_guess::from_path(name)
        .first()
        .filter(|m| {
            m.type_() != mime_guess::mime::MESSAGE && m.type_() != mime_guess::mime::MULTIPART
        })
        .map(|m| m.essence_str().to_string())
        .filter(|m| m != "application/octet-stream");
    let media = by_name.unwrap_or_else(|| sniff(head).to_string());
    if media.starts_with("text/") && std::str::from_utf8(head).is_ok() {
        format!("{media}; charset=utf-8")
    } else {
        media
    }
}

/// The media type the first bytes of a file announce.
fn sniff(head: &[u8]) -> &'static str {
    const MAGIC: [(&[u8], &str); 8] = [
        (b"%PDF-", "application/pdf"),
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF8", "image/gif"),
        (b"PK\x03\x04", "application/zip"),
        (b"\x1f\x8b", "application/gzip"),
        (b"%!PS", "application/postscript"),
        (b"BEGIN:VCALENDAR", "text/calendar"),
    ];
    if let Some((_, media)) = MAGIC.iter().find(|(magic, _)| head.starts_with(magic)) {
        return media;
    }
    if !head.contains(&0) && std::str::from_utf8(head).is_ok() {
        "text/plain"
    } else {
        "application/octet-stream"
    }
}

/// The `X-Imapfs-File` value for `origin`: `size=N; mtime=S.NNNNNNNNN; name=...`.
pub fn origin_value(origin: &FileOrigin) -> String {
    format!(
        "size={}; mtime={}; {}",
        origin.size,
        super::spool::secs_nanos(origin.mtime),
        param("name", &origin.name)
    )
}

/// Reads an `X-Imapfs-File` value; `None` if it is not one imapfs wrote.
pub fn parse_origin(raw: &[u8]) -> Option<FileOrigin> {
    let text = std::str::from_utf8(raw).ok()?;
    let params = split_params(text);
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    };
    let size = get("size")?.parse().ok()?;
    let mtime = super::spool::parse_secs_nanos(get("mtime")?)?;
    let name = crate::mime::param_value(&params, "name")?;
    let name = crate::mime::sanitize_name(&name);
    // A name the mount keeps for itself (`.search`) is never one it stored.
    if super::virtual_dirs::is_reserved(&name) {
        return None;
    }
    Some(FileOrigin { name, size, mtime })
}

/// `key=value` pairs separated by `;`, quoted values unquoted.
fn split_params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(';').trim().to_string();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next().map(|(_, c)| c)),
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end..])
        } else {
            let end = after.find(';').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.push((key, value));
        rest = next.trim_start().trim_start_matches(';');
    }
    out
}

/// An RFC 2047 `B` encoded-word for non-ASCII header text; ASCII text is returned as is.
fn header_text(text: &str) -> String {
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return text.to_string();
    }
    // Encoded words are at most 75 characters; split on character boundaries.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    words.push(chunk);
    words
        .iter()
        .map(|w| format!("=?UTF-8?B?{}?=", base64_encode(w.as_bytes())))
        .collect::<Vec<_>>()
        .join("\r\n ")
}

fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// An RFC 5322 date-time in UTC.
pub fn rfc5322_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d, hh, mm, ss) = super::xattr::civil_from_unix(secs);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][((secs / 86_400) % 7) as usize];
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    format!("{weekday}, {d:02} {month} {y} {hh:02}:{mm:02}:{ss:02} +0000")
}

/// A MIME parameter: quoted when printable ASCII, RFC 2231 `key*=UTF-8''...` otherwise.
fn param(key: &str, value: &str) -> String {
    if value
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        return format!("{key}=\"{value}\"");
    }
    let mut encoded = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{key}*=UTF-8''{encoded}")
}

/// Bytes of the source file read per step.
const BLOCK: usize = 57 * 1024;

/// One stretch of a message being streamed.
enum Piece {
    /// Bytes made here (headers, boundaries).
    Bytes(Vec<u8>),
    /// A stretch of the spool file, base64 in lines of 76 characters.
    Base64 { offset: u64, end: u64 },
    /// A stretch of the spool file, bare LF made CRLF.
    Crlf { offset: u64, end: u64, last: u8 },
}

/// A message to APPEND, made on the fly from a spool file: its exact length is known
/// before the first byte is sent, and memory stays bounded whatever the file's size.
pub struct MessageSource {
    file: File,
    pieces: VecDeque<Piece>,
    ready: Vec<u8>,
    at: usize,
    len: u64,
    binary: bool,
    message_id: Option<String>,
    /// An RFC 5322 message sent as it is (not a file wrapped in a new message).
    as_is: bool,
    /// Its raw Subject, as a listing holds it.
    subject: Option<Vec<u8>>,
}

/// What a file holds, read in one pass: its first bytes, bare line feeds and NULs.
struct Scan {
    head: Vec<u8>,
    bare_lf: u64,
    nul: bool,
}

fn scan(file: &File, size: u64) -> io::Result<Scan> {
    let mut head = Vec::new();
    let (mut bare_lf, mut nul, mut prev) = (0u64, false, 0u8);
    let mut buf = vec![0; BLOCK];
    let mut offset = 0u64;
    while offset < size {
        let want = ((size - offset) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..want], offset)?;
        for &b in &buf[..want] {
            if b == b'\n' && prev != b'\r' {
                bare_lf += 1;
            }
            nul |= b == 0;
            prev = b;
        }
        if head.len() < HEAD {
            head.extend_from_slice(&buf[..want.min(HEAD - head.len())]);
        }
        offset += want as u64;
    }
    Ok(Scan { head, bare_lf, nul })
}

/// How much of a file decides whether it is a message.
const HEAD: usize = 256 * 1024;

/// The length of `size` bytes as base64 in lines of 76 characters with CRLF.
fn base64_len(size: u64) -> u64 {
    let chars = size.div_ceil(3) * 4;
    chars + chars.div_ceil(76) * 2
}

impl MessageSource {
    /// The message for the file `name` (of `size` bytes in `file`), dated `mtime`. With
    /// `binary_ok` (the server takes `literal8`), a message holding NUL bytes goes as it is;
    /// otherwise it is wrapped, so that no byte is ever altered.
    pub fn for_file(
        file: &File,
        size: u64,
        name: &str,
        mtime: SystemTime,
        binary_ok: bool,
    ) -> io::Result<MessageSource> {
        let file = file.try_clone()?;
        let scanned = scan(&file, size)?;
        if is_message(name, &scanned.head) && (!scanned.nul || binary_ok) {
            let message_id = crate::store::imap::convert::header_field(&scanned.head, "message-id")
                .map(|v| String::from_utf8_lossy(&v).into_owned());
            let subject = crate::store::imap::convert::subject_from_header(&scanned.head);
            return Ok(MessageSource {
                file,
                pieces: VecDeque::from([Piece::Crlf {
                    offset: 0,
                    end: size,
                    last: 0,
                }]),
                ready: Vec::new(),
                at: 0,
                len: size + scanned.bare_lf,
                binary: scanned.nul,
                message_id,
                as_is: true,
                subject,
            });
        }
        let origin = FileOrigin {
            name: name.to_string(),
            size,
            mtime,
        };
        let (head, tail, message_id) = wrapping(&origin, &media_type_for(name, &scanned.head));
        let len = head.len() as u64 + base64_len(size) + tail.len() as u64;
        Ok(MessageSource {
            file,
            pieces: VecDeque::from([
                Piece::Bytes(head),
                Piece::Base64 {
                    offset: 0,
                    end: size,
                },
                Piece::Bytes(tail),
            ]),
            ready: Vec::new(),
            at: 0,
            len,
            binary: false,
            message_id: Some(message_id),
            as_is: false,
            subject: None,
        })
    }

    /// Whether the file is an RFC 5322 message, sent as it is.
    pub fn as_is(&self) -> bool {
        self.as_is
    }

    /// The message's raw Subject, if it is sent as it is and has one.
    pub fn subject(&self) -> Option<&[u8]> {
        self.subject.as_deref()
    }

    /// The message's exact length in bytes.
    pub fn byte_len(&self) -> u64 {
        self.len
    }

    /// Whether the message holds NUL bytes (a `literal8` is needed).
    pub fn binary(&self) -> bool {
        self.binary
    }

    /// The message's Message-ID, if it has one (to find it again after a crash).
    pub fn message_id(&self) -> Option<&str> {
        self.message_id.as_deref()
    }

    /// Makes the next bytes; false at the end.
    fn refill(&mut self) -> io::Result<bool> {
        self.ready.clear();
        self.at = 0;
        let Some(piece) = self.pieces.pop_front() else {
            return Ok(false);
        };
        match piece {
            Piece::Bytes(bytes) => self.ready = bytes,
            Piece::Base64 { offset, end } => {
                let want = ((end - offset) as usize).min(BLOCK);
                let mut buf = vec![0; want];
                self.file.read_exact_at(&mut buf, offset)?;
                let encoded = base64::engine::general_purpose::STANDARD.encode(&buf);
                for line in encoded.as_bytes().chunks(76) {
                    self.ready.extend_from_slice(line);
                    self.ready.extend_from_slice(b"\r\n");
                }
                if offset + (want as u64) < end {
                    self.pieces.push_front(Piece::Base64 {
                        offset: offset + want as u64,
                        end,
                    });
                }
            }
            Piece::Crlf { offset, end, last } => {
                let want = ((end - offset) as usize).min(BLOCK);
                let mut buf = vec![0; want];
                self.file.read_exact_at(&mut buf, offset)?;
                let mut prev = last;
                for &b in &buf {
                    if b == b'\n' && prev != b'\r' {
                        self.ready.push(b'\r');
                    }
                    self.ready.push(b);
                    prev = b;
                }
                if offset + (want as u64) < end {
                    self.pieces.push_front(Piece::Crlf {
                        offset: offset + want as u64,
                        end,
                        last: prev,
                    });
                }
            }
        }
        Ok(true)
    }
}

impl Read for MessageSource {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at >= self.ready.len() {
            if !self.refill()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.ready.len() - self.at);
        out[..n].copy_from_slice(&self.ready[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The headers and first part of the message that wraps a file (up to where the base64
/// attachment starts), the closing boundary, and the Message-ID.
fn wrapping(origin: &FileOrigin, media_type: &str) -> (Vec<u8>, Vec<u8>, String) {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let boundary = format!("imapfs-{stamp:x}");
    let message_id = format!("<{stamp:x}.{}@imapfs.localhost>", std::process::id());
    let name = &origin.name;
    let mut m = String::new();
    m.push_str(&format!("Date: {}\r\n", rfc5322_date(origin.mtime)));
    m.push_str("From: imapfs <imapfs@localhost>\r\n");
    m.push_str(&format!("Subject: {}\r\n", header_text(name)));
    m.push_str(&format!("Message-ID: {message_id}\r\n"));
    m.push_str(&format!("{ORIGIN_FIELD}: {}\r\n", origin_value(origin)));
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str(&format!(
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"
    ));
    m.push_str(&format!("--{boundary}\r\n"));
    m.push_str(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
    );
    m.push_str(&format!("File stored by imapfs: {name}\r\n"));
    m.push_str(&format!("--{boundary}\r\n"));
    m.push_str(&format!(
        "Content-Type: {media_type}\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; {}\r\n\r\n",
        param("filename", name)
    ));
    let tail = format!("--{boundary}--\r\n");
    (m.into_bytes(), tail.into_bytes(), message_id)
}

/// The section of a file-born message that holds the file (its second part).
pub fn file_section() -> crate::store::Section {
    crate::store::Section(vec![2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    /// A spool-like file holding `data`.
    fn file_with(data: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(data).unwrap();
        f
    }

    /// The whole message a source streams, checking its announced length.
    fn streamed(mut source: MessageSource) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 1000];
        loop {
            let n = source.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(
            out.len() as u64,
            source.byte_len(),
            "the announced length is exact"
        );
        out
    }

    #[test]
    fn messages_are_recognised_by_name_and_content() {
        let mail = b"From: a@b\nSubject: hi\n\nbody\n";
        let folded = b"Received: x\r\n\tfolded\r\nfrom: y\r\nDate: z\r\n\r\n";
        for name in [
            "saved.eml",
            "1700000000.M1P2.host,S=120:2,S",
            "draft",
            "x.EML",
        ] {
            assert!(is_message(name, mail), "{name}");
            assert!(is_message(name, folded), "{name}");
        }
        // Named as another kind of document: a file, whatever it holds.
        for name in ["post.md", "notes.txt", "data.json", "page.html", "a.pdf"] {
            assert!(!is_message(name, mail), "{name}");
        }
        // No originator: mail only where the name says so (an export without From).
        let exported = b"Message-ID: <1@x>\r\nSubject: exported\r\nDate: z\r\n\r\nhi\r\n";
        assert!(is_message("1.eml", exported));
        assert!(!is_message("1", exported));
        // Header-like lines that name no originator: a blog post's metadata, a note.
        let post = b"Title: My first post\nDate: 2024-01-01\nCategory: notes\n\nHello\n";
        assert!(!is_message("post", post));
        assert!(!is_message("post.md", post));
        assert!(!is_message(
            "note",
            b"To: Bob\nSubject: groceries\n\nmilk\n"
        ));
        // An mbox `From ` line first: not a header field.
        let mbox = b"From alice@example.org Mon Jan  1 10:00:00 2024\nFrom: a@b\nDate: x\n\nbody\n";
        assert!(!is_message("saved.eml", mbox));
        assert!(!is_message("x.eml", b"%PDF-1.4\n1 0 obj\n"));
        assert!(!is_message("x.eml", b"notes: one\nmore notes\n\n"));
        assert!(!is_message("x.eml", b"X-A: 1\nX-B: 2\n\n"));
        assert!(!is_message("x.eml", b"From: a@b\nSubject: no blank line"));
        assert!(!is_message("x.eml", b""));
    }

    #[test]
    fn a_message_streams_as_it_is_with_crlf_line_ends() {
        let data = b"From: a@b\nSubject: hi\nMessage-ID: <x@y>\n\nline\r\nbare\n";
        let source = MessageSource::for_file(
            &file_with(data),
            data.len() as u64,
            "m.eml",
            UNIX_EPOCH,
            true,
        )
        .unwrap();
        assert_eq!(source.message_id(), Some("<x@y>"));
        assert!(!source.binary());
        assert_eq!(
            streamed(source),
            b"From: a@b\r\nSubject: hi\r\nMessage-ID: <x@y>\r\n\r\nline\r\nbare\r\n"
        );
    }

    #[test]
    fn a_message_with_nul_goes_as_it_is_only_where_literal8_can_carry_it() {
        let data = b"From: a@b\nSubject: nul\n\nx\0y\n";
        let f = file_with(data);
        let as_is =
            MessageSource::for_file(&f, data.len() as u64, "m.eml", UNIX_EPOCH, true).unwrap();
        assert!(as_is.binary());
        assert!(streamed(as_is).contains(&0));
        let wrapped =
            MessageSource::for_file(&f, data.len() as u64, "m.eml", UNIX_EPOCH, false).unwrap();
        assert!(!wrapped.binary());
        let text = streamed(wrapped);
        assert!(
            !text.contains(&0),
            "the NUL is inside the base64 attachment"
        );
    }

    #[test]
    fn a_wrapped_file_streams_and_its_attachment_decodes_back() {
        // Sizes around the 57-byte line and the block boundaries.
        for size in [
            0usize,
            1,
            56,
            57,
            58,
            1000,
            BLOCK - 1,
            BLOCK,
            BLOCK + 1,
            3 * BLOCK + 5,
        ] {
            let data: Vec<u8> = (0..=255u8).cycle().take(size).collect();
            let mtime = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
            let source =
                MessageSource::for_file(&file_with(&data), size as u64, "résumé.pdf", mtime, true)
                    .unwrap();
            let msg = streamed(source);
            assert!(is_message("x.eml", &msg));
            let text = String::from_utf8(msg).unwrap();
            assert!(text.contains("filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"));
            assert!(text.contains("Subject: =?UTF-8?B?"));
            assert!(text.contains("Date: Tue, 14 Nov 2023 22:13:20 +0000"));
            let origin = text
                .lines()
                .find_map(|l| l.strip_prefix("X-Imapfs-File: "))
                .unwrap();
            assert_eq!(
                parse_origin(origin.as_bytes()),
                Some(FileOrigin {
                    name: "résumé.pdf".into(),
                    size: size as u64,
                    mtime
                })
            );
            let body = text.split("Content-Disposition").nth(1).unwrap();
            let b64: String = body
                .split("\r\n\r\n")
                .nth(1)
                .unwrap()
                .split("--imapfs")
                .next()
                .unwrap()
                .split_whitespace()
                .collect();
            assert!(body
                .split("\r\n\r\n")
                .nth(1)
                .unwrap()
                .lines()
                .all(|l| l.len() <= 76));
            let back = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            assert_eq!(back, data, "size {size}");
        }
    }

    #[test]
    fn media_types_come_from_the_name_then_the_content() {
        assert_eq!(media_type_for("report.pdf", b""), "application/pdf");
        assert_eq!(
            media_type_for("notes.txt", b"hi"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(media_type_for("scan", b"%PDF-1.7\n"), "application/pdf");
        // A composite type is never declared for a base64-encoded file.
        for name in ["notes.eml", "page.mht", "page.mhtml"] {
            assert_eq!(media_type_for(name, b"\x00"), "application/octet-stream");
        }
        assert_eq!(media_type_for("photo", b"\xff\xd8\xff\xe0"), "image/jpeg");
        assert_eq!(
            media_type_for("data", b"\x00\x01\x02"),
            "application/octet-stream"
        );
        assert_eq!(
            media_type_for("README", b"plain words"),
            "text/plain; charset=utf-8"
        );
    }

    #[test]
    fn times_before_1970_are_kept() {
        // `touch -d 1960-01-01 12:00:00.5`: stored, then shown, as that time, not as 1970.
        let mtime = UNIX_EPOCH - Duration::new(315_575_999, 500_000_000);
        let origin = FileOrigin {
            name: "old.txt".into(),
            size: 3,
            mtime,
        };
        let value = origin_value(&origin);
        assert!(value.contains("mtime=-315575999.500000000"), "{value}");
        assert_eq!(parse_origin(value.as_bytes()), Some(origin));
        assert_eq!(
            parse_origin(b"size=1; mtime=-0.000000000; name=a").map(|o| o.mtime),
            Some(UNIX_EPOCH)
        );
    }

    #[test]
    fn origins_that_are_not_ours_are_ignored() {
        assert_eq!(parse_origin(b"garbage"), None);
        assert_eq!(parse_origin(b"size=x; mtime=1.000000000; name=\"a\""), None);
        assert_eq!(parse_origin(b"size=3; name=\"a\""), None);
        let origin = parse_origin(b"size=3; mtime=5.000000007; name=\"a/b\"").unwrap();
        assert_eq!(origin.name, "a_b", "names are made safe");
        // Anyone can send a message with this header: no time in it may panic.
        for mtime in [
            "18446744073709551615.1000000000",
            "18446744073709551615.999999999",
            "1.4294967296",
            "1.-1",
            "-1.0",
            ".",
            // Fewer digits than imapfs writes: read as nanoseconds, `.5` was 5 ns.
            "1700000000.5",
            "+1.000000000",
            "--1.000000000",
            "-18446744073709551615.999999999",
        ] {
            let header = format!("size=1; mtime={mtime}; name=a");
            assert_eq!(parse_origin(header.as_bytes()), None, "{mtime}");
        }
        // A name the mount keeps for itself.
        for name in [".search", ".Trash-0"] {
            let header = format!("size=1; mtime=1.000000000; name=\"{name}\"");
            assert_eq!(parse_origin(header.as_bytes()), None, "{name}");
        }
    }

    #[test]
    fn dates_are_rfc5322() {
        assert_eq!(rfc5322_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 +0000");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(rfc5322_date(t), "Tue, 14 Nov 2023 22:13:20 +0000");
    }
}
