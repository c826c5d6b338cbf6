//! Turning a file written into a mailbox directory into a message to APPEND: an RFC 5322
//! message goes in as it is (line endings made CRLF); anything else is wrapped as the
//! attachment of a new message named after the file.

use std::time::{SystemTime, UNIX_EPOCH};

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

/// Whether `data` starts with an RFC 5322 header block
/// ([RFC 5322 §2.2](https://www.rfc-editor.org/rfc/rfc5322#section-2.2)): field lines
/// (`Name: value`, folded lines allowed) up to an empty line, at least two fields, one of
/// them a field every message has.
pub fn is_message(data: &[u8]) -> bool {
    const MAX_HEADER: usize = 256 * 1024;
    let head = &data[..data.len().min(MAX_HEADER)];
    let mut fields = 0;
    let mut known = false;
    for (i, line) in head.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return i > 0 && fields >= 2 && known;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if i == 0 {
                return false;
            }
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return false;
        };
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b)) {
            return false;
        }
        fields += 1;
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        known |= MESSAGE_FIELDS.contains(&name.as_str());
    }
    false
}

/// Bare LF line endings become CRLF; existing CRLF pairs are kept.
pub fn to_crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 50);
    let mut prev = 0u8;
    for &b in data {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// The media type to declare for a file, from its extension.
pub fn media_type_for(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("pdf") => "application/pdf",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("svg") => "image/svg+xml",
        Some("txt" | "md" | "log") => "text/plain",
        Some("html" | "htm") => "text/html",
        Some("csv") => "text/csv",
        Some("ics") => "text/calendar",
        Some("json") => "application/json",
        Some("xml") => "application/xml",
        Some("zip") => "application/zip",
        Some("gz") => "application/gzip",
        Some("tar") => "application/x-tar",
        Some("mp3") => "audio/mpeg",
        Some("mp4") => "video/mp4",
        Some("doc") => "application/msword",
        Some("docx") => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        Some("xlsx") => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        Some("odt") => "application/vnd.oasis.opendocument.text",
        _ => "application/octet-stream",
    }
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

/// A `filename` parameter: quoted when ASCII, RFC 2231 `filename*=UTF-8''...` otherwise.
fn filename_param(name: &str) -> String {
    if name
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        return format!("filename=\"{name}\"");
    }
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("filename*=UTF-8''{encoded}")
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

/// Wraps an arbitrary file as the single attachment of a new message whose Subject is the
/// file's name; reading the attachment back gives exactly `data`.
pub fn wrap_file(name: &str, data: &[u8], now: SystemTime) -> Vec<u8> {
    let stamp = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let boundary = format!("imapfs-{stamp:x}");
    let mut m = String::new();
    m.push_str(&format!("Date: {}\r\n", rfc5322_date(now)));
    m.push_str("From: imapfs <imapfs@localhost>\r\n");
    m.push_str(&format!("Subject: {}\r\n", header_text(name)));
    m.push_str(&format!(
        "Message-ID: <{stamp:x}.{}@imapfs.localhost>\r\n",
        std::process::id()
    ));
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
        "Content-Type: {}\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; {}\r\n\r\n",
        media_type_for(name),
        filename_param(name)
    ));
    let encoded = base64_encode(data);
    for line in encoded.as_bytes().chunks(76) {
        m.push_str(std::str::from_utf8(line).unwrap_or_default());
        m.push_str("\r\n");
    }
    m.push_str(&format!("--{boundary}--\r\n"));
    m.into_bytes()
}

/// What to APPEND for a file named `name` holding `data`.
pub fn message_for_file(name: &str, data: &[u8], now: SystemTime) -> Vec<u8> {
    if is_message(data) {
        to_crlf(data)
    } else {
        wrap_file(name, data, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_recognised() {
        assert!(is_message(b"From: a@b\nSubject: hi\n\nbody\n"));
        assert!(is_message(b"Received: x\r\n\tfolded\r\nTo: y\r\n\r\n"));
        assert!(!is_message(b"%PDF-1.4\n1 0 obj\n"));
        assert!(!is_message(b"notes: one\nmore notes\n\n"));
        assert!(!is_message(b"X-A: 1\nX-B: 2\n\n"));
        assert!(!is_message(b"From: a@b\nSubject: no blank line"));
        assert!(!is_message(b""));
    }

    #[test]
    fn bare_lf_becomes_crlf_once() {
        assert_eq!(to_crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
    }

    #[test]
    fn wrapped_file_is_a_message_whose_attachment_decodes_back() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let msg = wrap_file("résumé.pdf", &data, UNIX_EPOCH);
        assert!(is_message(&msg));
        let text = String::from_utf8(msg).unwrap();
        assert!(text.contains("filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"));
        assert!(text.contains("Subject: =?UTF-8?B?"));
        assert!(text.contains("Content-Type: application/pdf"));
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
        use base64::Engine;
        let back = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn dates_are_rfc5322() {
        assert_eq!(rfc5322_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 +0000");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(rfc5322_date(t), "Tue, 14 Nov 2023 22:13:20 +0000");
    }
}
