//! File and directory names: sanitising, message directory names, extensions, uniqueness.

use std::collections::{HashMap, HashSet};

use super::header::decode_header;
use crate::store::{Section, Uid};

/// Longest name, in bytes, that sanitising produces. Leaves room under the usual 255-byte
/// NAME_MAX for a ` (NNN)` uniqueness suffix.
pub const MAX_NAME_BYTES: usize = 200;

/// Longest extension (with its dot) that shortening keeps; a longer "extension" is just a
/// dot in a long name.
const MAX_EXTENSION_BYTES: usize = 20;

/// Subject shown for a message without one.
pub const NO_SUBJECT: &str = "(no subject)";

/// Characters replaced by `_` in every name: `/`, NUL and other control characters (C0, DEL,
/// C1; an escape sequence keeps its harmless printable tail), and the line separators and
/// bidirectional overrides that could make a name display as something else.
fn is_unsafe(c: char) -> bool {
    c == '/'
        || c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The longest prefix of `s` that is at most `max` bytes and ends on a char boundary.
fn cut_to_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Split `name` into stem and extension (with its dot). A leading dot (`.profile`) is not an
/// extension, nor is an empty one (`name.`).
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(dot) if dot > 0 && dot + 1 < name.len() => name.split_at(dot),
        _ => (name, ""),
    }
}

/// Make one file name safe for a directory listing.
///
/// - `/`, NUL, control characters (C0, DEL, C1) and Unicode line separators and bidi
///   overrides are each replaced by `_`.
/// - Leading and trailing whitespace is trimmed.
/// - An empty name, `.` and `..` become `_`.
/// - A name over [`MAX_NAME_BYTES`] bytes is shortened on a char boundary, keeping its
///   extension (up to 20 bytes of it): `aaaa…aaa.pdf`.
///
/// The result is never empty, `.` or `..`, and never contains `/` or NUL.
pub fn sanitize_name(name: &str) -> String {
    let replaced: String = name
        .chars()
        .map(|c| if is_unsafe(c) { '_' } else { c })
        .collect();
    let trimmed = replaced.trim();
    let shortened = shorten_keeping_extension(trimmed);
    match shortened.as_str() {
        "" | "." | ".." => "_".to_string(),
        _ => shortened,
    }
}

/// Shorten `name` to [`MAX_NAME_BYTES`] keeping a short extension.
fn shorten_keeping_extension(name: &str) -> String {
    if name.len() <= MAX_NAME_BYTES {
        return name.to_string();
    }
    let (stem, extension) = split_extension(name);
    let extension = if extension.len() <= MAX_EXTENSION_BYTES {
        extension
    } else {
        ""
    };
    let stem = if extension.is_empty() { name } else { stem };
    let stem = cut_to_bytes(stem, MAX_NAME_BYTES - extension.len()).trim_end();
    let stem = if stem.is_empty() { "_" } else { stem };
    format!("{stem}{extension}")
}

/// A subject made fit for a name: decoded ([`decode_header`]), whitespace runs (including
/// folding, tabs and line breaks) collapsed to one space, `/` and other unsafe characters
/// (see [`sanitize_name`]) replaced by `_`, trimmed; [`NO_SUBJECT`] when nothing is left.
pub fn clean_subject(subject: Option<&[u8]>) -> String {
    let decoded = subject.map(decode_header).unwrap_or_default();
    let mut out = String::with_capacity(decoded.len());
    let mut pending_space = false;
    for c in decoded.chars() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(if is_unsafe(c) { '_' } else { c });
    }
    if out.is_empty() {
        NO_SUBJECT.to_string()
    } else {
        out
    }
}

/// Join a prefix and a cleaned subject, cut to [`MAX_NAME_BYTES`] on a char boundary.
fn prefixed_name(prefix: &str, subject: Option<&[u8]>) -> String {
    let full = format!("{prefix} {}", clean_subject(subject));
    cut_to_bytes(&full, MAX_NAME_BYTES).trim_end().to_string()
}

/// Name of a top-level message directory: `<UID> <Subject>`, the subject cleaned by
/// [`clean_subject`] and the whole name cut to [`MAX_NAME_BYTES`] bytes on a char boundary.
pub fn message_dir_name(uid: Uid, subject: Option<&[u8]>) -> String {
    prefixed_name(&uid.to_string(), subject)
}

/// Name of the directory for an encapsulated message without a file name:
/// `message-<section> <Subject>`, cleaned and cut like [`message_dir_name`].
pub fn nested_message_dir_name(section: &Section, subject: Option<&[u8]>) -> String {
    prefixed_name(&format!("message-{section}"), subject)
}

/// A file extension (without the dot) for a media type; `bin` when unknown. Type and subtype
/// are compared case-insensitively.
pub fn guess_extension(media_type: &str, subtype: &str) -> &'static str {
    let media_type = media_type.to_ascii_lowercase();
    let subtype = subtype.to_ascii_lowercase();
    match (media_type.as_str(), subtype.as_str()) {
        ("text", "plain") => "txt",
        ("text", "html") => "html",
        ("text", "calendar") => "ics",
        ("text", "csv") => "csv",
        ("text", "css") => "css",
        ("text", "xml") => "xml",
        ("text", "markdown") => "md",
        ("text", "rtf") | ("application", "rtf") => "rtf",
        ("text", "vcard") | ("text", "x-vcard") => "vcf",
        ("text", "enriched") | ("text", "richtext") => "txt",
        ("image", "png") => "png",
        ("image", "jpeg") | ("image", "jpg") | ("image", "pjpeg") => "jpg",
        ("image", "gif") => "gif",
        ("image", "webp") => "webp",
        ("image", "bmp") => "bmp",
        ("image", "tiff") => "tif",
        ("image", "svg+xml") => "svg",
        ("image", "heic") => "heic",
        ("image", "x-icon") | ("image", "vnd.microsoft.icon") => "ico",
        ("audio", "mpeg") => "mp3",
        ("audio", "ogg") => "ogg",
        ("audio", "wav") | ("audio", "x-wav") => "wav",
        ("video", "mp4") => "mp4",
        ("video", "mpeg") => "mpg",
        ("video", "quicktime") => "mov",
        ("application", "pdf") => "pdf",
        ("application", "zip") | ("application", "x-zip-compressed") => "zip",
        ("application", "gzip") | ("application", "x-gzip") => "gz",
        ("application", "x-tar") => "tar",
        ("application", "json") => "json",
        ("application", "xml") => "xml",
        ("application", "ics") => "ics",
        ("application", "pgp-signature") => "asc",
        ("application", "pgp-encrypted") | ("application", "pgp-keys") => "asc",
        ("application", "pkcs7-signature") | ("application", "x-pkcs7-signature") => "p7s",
        ("application", "pkcs7-mime") | ("application", "x-pkcs7-mime") => "p7m",
        ("application", "msword") => "doc",
        ("application", "vnd.ms-excel") => "xls",
        ("application", "vnd.ms-powerpoint") => "ppt",
        ("application", "vnd.openxmlformats-officedocument.wordprocessingml.document") => "docx",
        ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet") => "xlsx",
        ("application", "vnd.openxmlformats-officedocument.presentationml.presentation") => "pptx",
        ("application", "vnd.oasis.opendocument.text") => "odt",
        ("application", "vnd.oasis.opendocument.spreadsheet") => "ods",
        ("message", "rfc822") | ("message", "global") => "eml",
        ("message", "delivery-status") | ("message", "disposition-notification") => "txt",
        ("message", "global-delivery-status") => "txt",
        ("text", _) => "txt",
        _ => "bin",
    }
}

/// Hands out names unique within one directory (compared case-sensitively). A repeated name
/// gets ` (2)`, ` (3)`, ... before its extension: `report.pdf`, `report (2).pdf`.
#[derive(Debug, Default)]
pub struct UniqueNames {
    used: HashSet<String>,
    /// For each (stem, extension), the next suffix number to try, so that many repeats of
    /// one name stay linear.
    next_suffix: HashMap<(String, String), u32>,
}

impl UniqueNames {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Claim `wanted` or, if taken, the first free `stem (n).ext`. With `keep_extension`
    /// false (directories), the suffix goes at the very end: `name (n)`.
    pub fn claim(&mut self, wanted: &str, keep_extension: bool) -> String {
        if self.used.insert(wanted.to_string()) {
            return wanted.to_string();
        }
        let (stem, extension) = if keep_extension {
            split_extension(wanted)
        } else {
            (wanted, "")
        };
        let key = (stem.to_string(), extension.to_string());
        let mut n = self.next_suffix.get(&key).copied().unwrap_or(2);
        loop {
            let candidate = format!("{stem} ({n}){extension}");
            n = n.saturating_add(1);
            if self.used.insert(candidate.clone()) {
                self.next_suffix.insert(key, n);
                return candidate;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sanitize_dots_and_traversal() {
        assert_eq!(sanitize_name(".."), "_");
        assert_eq!(sanitize_name("."), "_");
        assert_eq!(sanitize_name(""), "_");
        assert_eq!(sanitize_name("   "), "_");
        assert_eq!(sanitize_name("../../etc/passwd"), ".._.._etc_passwd");
        assert_eq!(sanitize_name("a/b"), "a_b");
        assert_eq!(sanitize_name(" report.pdf  "), "report.pdf");
        assert_eq!(sanitize_name(".profile"), ".profile");
    }

    #[test]
    fn sanitize_controls() {
        assert_eq!(sanitize_name("a\0b"), "a_b");
        assert_eq!(sanitize_name("a\tb\r\nc"), "a_b__c");
        assert_eq!(sanitize_name("x\u{7f}y\u{85}z\u{9f}"), "x_y_z_");
        assert_eq!(sanitize_name("\u{1b}[31mred.txt"), "_[31mred.txt");
        assert_eq!(sanitize_name("gnp\u{202e}.exe"), "gnp_.exe");
        assert_eq!(sanitize_name("€ café.pdf"), "€ café.pdf");
    }

    #[test]
    fn sanitize_long_name_keeps_extension() {
        let long = format!("{}.pdf", "a".repeat(1000));
        let short = sanitize_name(&long);
        assert_eq!(short.len(), MAX_NAME_BYTES);
        assert!(short.ends_with("aaa.pdf"), "{short}");
        assert!(short.starts_with("aaaa"));
    }

    #[test]
    fn sanitize_long_name_cuts_on_char_boundary() {
        let long = format!("{}.txt", "é".repeat(500));
        let short = sanitize_name(&long);
        assert!(short.len() <= MAX_NAME_BYTES);
        assert!(short.ends_with("é.txt"));
        let no_ext = "€".repeat(300);
        let short = sanitize_name(&no_ext);
        assert_eq!(short.len(), 198); // 66 three-byte chars
                                      // A "extension" longer than 20 bytes is not kept as one.
        let long_ext = format!("a.{}", "b".repeat(500));
        assert_eq!(sanitize_name(&long_ext), format!("a.{}", "b".repeat(198)));
    }

    #[test]
    fn subject_cleaning() {
        assert_eq!(clean_subject(None), "(no subject)");
        assert_eq!(clean_subject(Some(b"  \r\n ")), "(no subject)");
        assert_eq!(
            clean_subject(Some(b"Re:  a\r\n\tfolded   \t subject ")),
            "Re: a folded subject"
        );
        assert_eq!(clean_subject(Some(b"a/b\x00c\x1b[0m")), "a_b_c_[0m");
        assert_eq!(clean_subject(Some(b"=?utf-8?q?caf=C3=A9?=")), "café");
    }

    #[test]
    fn message_dir_names() {
        assert_eq!(message_dir_name(Uid(42), Some(b"Hello")), "42 Hello");
        assert_eq!(message_dir_name(Uid(7), None), "7 (no subject)");
        assert_eq!(message_dir_name(Uid(7), Some(b"")), "7 (no subject)");
        assert_eq!(message_dir_name(Uid(1), Some(b"..")), "1 ..");
        assert_eq!(
            message_dir_name(Uid(3), Some(b"=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?= / c")),
            "3 ab _ c"
        );
    }

    #[test]
    fn message_dir_name_is_cut_to_200_bytes() {
        let subject = "ü".repeat(300);
        let name = message_dir_name(Uid(12345), Some(subject.as_bytes()));
        assert!(name.len() <= MAX_NAME_BYTES, "{}", name.len());
        assert!(name.len() >= MAX_NAME_BYTES - 1);
        assert!(name.starts_with("12345 üü"));
    }

    #[test]
    fn nested_dir_names() {
        let section = Section(vec![2, 3]);
        assert_eq!(
            nested_message_dir_name(&section, Some(b"Fwd: x")),
            "message-2.3 Fwd: x"
        );
        assert_eq!(
            nested_message_dir_name(&section, None),
            "message-2.3 (no subject)"
        );
    }

    #[test]
    fn extensions() {
        assert_eq!(guess_extension("text", "plain"), "txt");
        assert_eq!(guess_extension("text", "html"), "html");
        assert_eq!(guess_extension("IMAGE", "PNG"), "png");
        assert_eq!(guess_extension("image", "jpeg"), "jpg");
        assert_eq!(guess_extension("application", "pdf"), "pdf");
        assert_eq!(guess_extension("text", "calendar"), "ics");
        assert_eq!(guess_extension("message", "delivery-status"), "txt");
        assert_eq!(guess_extension("application", "octet-stream"), "bin");
        assert_eq!(guess_extension("application", "x-never-heard-of"), "bin");
        assert_eq!(guess_extension("text", "x-weird"), "txt");
    }

    #[test]
    fn unique_names_keep_extension() {
        let mut names = UniqueNames::new();
        assert_eq!(names.claim("body.txt", true), "body.txt");
        assert_eq!(names.claim("body.txt", true), "body (2).txt");
        assert_eq!(names.claim("Body.txt", true), "Body.txt");
        assert_eq!(names.claim("body (2).txt", true), "body (2) (2).txt");
        assert_eq!(names.claim("README", true), "README");
        assert_eq!(names.claim("README", true), "README (2)");
        assert_eq!(names.claim("a.b", false), "a.b");
        assert_eq!(names.claim("a.b", false), "a.b (2)");
    }

    #[test]
    fn fifty_same_names_are_distinct() {
        let mut names = UniqueNames::new();
        let got: Vec<String> = (0..50).map(|_| names.claim("photo.jpg", true)).collect();
        let distinct: HashSet<&String> = got.iter().collect();
        assert_eq!(distinct.len(), 50);
        assert_eq!(got[0], "photo.jpg");
        assert_eq!(got[1], "photo (2).jpg");
        assert_eq!(got[49], "photo (50).jpg");
    }

    proptest! {
        #[test]
        fn sanitized_names_are_always_safe(name in any::<String>()) {
            let clean = sanitize_name(&name);
            prop_assert!(!clean.is_empty());
            prop_assert!(clean != "." && clean != "..");
            prop_assert!(!clean.contains('/') && !clean.contains('\0'));
            prop_assert!(clean.len() <= MAX_NAME_BYTES);
            prop_assert!(!clean.chars().any(char::is_control));
        }

        #[test]
        fn dir_names_are_always_safe(subject in proptest::collection::vec(any::<u8>(), 0..400)) {
            let name = message_dir_name(Uid(u32::MAX), Some(&subject));
            prop_assert!(name.len() <= MAX_NAME_BYTES);
            prop_assert!(!name.contains('/') && !name.contains('\0'));
            prop_assert!(!name.chars().any(char::is_control));
            prop_assert!(name.starts_with("4294967295 "));
        }
    }
}
