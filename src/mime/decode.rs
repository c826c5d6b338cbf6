//! Content-Transfer-Encoding decoding (base64, quoted-printable) and charset conversion to UTF-8.
//!
//! Everything here is lenient: mail in the wild is often malformed, and a file that shows
//! most of a broken attachment is more useful than an I/O error. Nothing here panics.

use encoding_rs::Encoding;

use crate::store::TransferEncoding;

/// Undo a part's Content-Transfer-Encoding.
///
/// - base64 ([RFC 2045 §6.8](https://www.rfc-editor.org/rfc/rfc2045#section-6.8)): see
///   [`decode_base64`].
/// - quoted-printable ([RFC 2045 §6.7](https://www.rfc-editor.org/rfc/rfc2045#section-6.7)):
///   see [`decode_quoted_printable`].
/// - `7bit`, `8bit`, `binary` and unknown encodings: the bytes unchanged.
pub fn decode_transfer(encoding: &TransferEncoding, raw: &[u8]) -> Vec<u8> {
    match encoding {
        TransferEncoding::Base64 => decode_base64(raw),
        TransferEncoding::QuotedPrintable => decode_quoted_printable(raw),
        TransferEncoding::SevenBit
        | TransferEncoding::EightBit
        | TransferEncoding::Binary
        | TransferEncoding::Other(_) => raw.to_vec(),
    }
}

/// The value of one base64 alphabet character, or `None` for anything else.
fn base64_value(byte: u8) -> Option<u32> {
    match byte {
        b'A'..=b'Z' => Some(u32::from(byte - b'A')),
        b'a'..=b'z' => Some(u32::from(byte - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(byte - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Lenient base64 ([RFC 2045 §6.8](https://www.rfc-editor.org/rfc/rfc2045#section-6.8)).
///
/// Characters outside the alphabet (line breaks, spaces, garbage) are ignored, as §6.8 asks.
/// Padding is optional. A `=` ends the current 4-character group, so that several encoded
/// chunks glued together (as some mailers send) all decode. A lone trailing character, which
/// carries fewer than 8 bits, is dropped.
pub fn decode_base64(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut count = 0usize;
    let flush_partial = |acc: u32, count: usize, out: &mut Vec<u8>| match count {
        2 => out.push((acc >> 4) as u8),
        3 => {
            out.push((acc >> 10) as u8);
            out.push((acc >> 2) as u8);
        }
        _ => {}
    };
    for &byte in raw {
        if byte == b'=' {
            flush_partial(acc, count, &mut out);
            acc = 0;
            count = 0;
            continue;
        }
        let Some(value) = base64_value(byte) else {
            continue;
        };
        acc = (acc << 6) | value;
        count += 1;
        if count == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            count = 0;
        }
    }
    flush_partial(acc, count, &mut out);
    out
}

/// The value of one hexadecimal digit, either case.
pub(crate) fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Lenient quoted-printable
/// ([RFC 2045 §6.7](https://www.rfc-editor.org/rfc/rfc2045#section-6.7)).
///
/// - `=XX` (hex digits in either case) becomes the byte `XX`.
/// - A soft line break, `=` followed by optional spaces/tabs and then CRLF, LF or the end of
///   the input, is removed.
/// - A hard line break is kept exactly as written (CRLF stays CRLF, LF stays LF), but spaces
///   and tabs just before it are deleted, as rule 3 of §6.7 requires (they were added in
///   transport; an encoder writes significant trailing blanks as `=20`/`=09`).
/// - Any other `=` is malformed and is kept as-is with what follows it.
pub fn decode_quoted_printable(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let byte = raw[i];
        match byte {
            b'=' => {
                if let (Some(&h), Some(&l)) = (raw.get(i + 1), raw.get(i + 2)) {
                    if let (Some(h), Some(l)) = (hex_value(h), hex_value(l)) {
                        out.push(h << 4 | l);
                        i += 3;
                        continue;
                    }
                }
                let blanks_end = skip_blanks(raw, i + 1);
                match line_break_len(raw, blanks_end) {
                    Some(len) => i = blanks_end + len,
                    None if blanks_end == raw.len() => i = blanks_end,
                    None => {
                        out.push(b'=');
                        i += 1;
                    }
                }
            }
            b' ' | b'\t' => {
                let blanks_end = skip_blanks(raw, i);
                if blanks_end != raw.len() && line_break_len(raw, blanks_end).is_none() {
                    out.extend_from_slice(&raw[i..blanks_end]);
                }
                // Blanks before a hard line break or the end are transport padding: dropped.
                i = blanks_end;
            }
            _ => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// The index of the first byte at or after `from` that is not a space or tab.
fn skip_blanks(raw: &[u8], from: usize) -> usize {
    let mut i = from;
    while matches!(raw.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

/// The length of the line break (CRLF or bare LF) starting at `at`, if there is one.
fn line_break_len(raw: &[u8], at: usize) -> Option<usize> {
    match (raw.get(at), raw.get(at + 1)) {
        (Some(b'\r'), Some(b'\n')) => Some(2),
        (Some(b'\n'), _) => Some(1),
        _ => None,
    }
}

/// Charset labels seen in mail that the WHATWG label list (used by `encoding_rs`) lacks.
fn extra_label(label: &str) -> Option<&'static Encoding> {
    let encoding = match label {
        "cp932" | "windows-932" | "ms-932" => encoding_rs::SHIFT_JIS,
        "cp936" | "windows-936" | "ms936" => encoding_rs::GBK,
        "cp949" | "windows-949" | "ks_c_5601" => encoding_rs::EUC_KR,
        "cp950" | "windows-950" | "ms950" => encoding_rs::BIG5,
        "iso-8859-11" | "iso8859-11" => encoding_rs::WINDOWS_874,
        "utf8mb4" => encoding_rs::UTF_8,
        _ => return None,
    };
    Some(encoding)
}

/// The encoding for a MIME charset label, or `None` if it is unknown (or is a label that
/// `encoding_rs` maps to its "replacement" encoding, which would turn the text into one U+FFFD).
pub fn encoding_for_charset(charset: &str) -> Option<&'static Encoding> {
    let label = charset.trim().trim_matches('"').trim();
    let label = label.split('*').next().unwrap_or(label); // RFC 2231 §5 language suffix
    let lower = label.to_ascii_lowercase();
    Encoding::for_label_no_replacement(lower.as_bytes()).or_else(|| extra_label(&lower))
}

/// True for the labels of UTF-7, which `encoding_rs` leaves out (browsers dropped it) but
/// which old Outlook versions sent.
fn is_utf7(charset: &str) -> bool {
    let label = charset.trim().trim_matches('"').trim();
    ["utf-7", "utf7", "unicode-1-1-utf-7", "csunicode11utf7"]
        .iter()
        .any(|utf7| label.eq_ignore_ascii_case(utf7))
}

/// UTF-7 ([RFC 2152](https://www.rfc-editor.org/rfc/rfc2152)) to UTF-8: `+` starts base64
/// of UTF-16 code units, which any character outside base64 ends (an ending `-` is dropped);
/// `+-` is `+`. 8-bit bytes and unpaired surrogates become U+FFFD.
fn decode_utf7(bytes: &[u8]) -> Vec<u8> {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        i += 1;
        if byte != b'+' {
            out.push(if byte.is_ascii() {
                char::from(byte)
            } else {
                char::REPLACEMENT_CHARACTER
            });
            continue;
        }
        if bytes.get(i) == Some(&b'-') {
            out.push('+');
            i += 1;
            continue;
        }
        let mut units = Vec::new();
        let (mut acc, mut bits) = (0u32, 0u32);
        while let Some(value) = bytes.get(i).copied().and_then(base64_value) {
            acc = (acc << 6) | value;
            bits += 6;
            i += 1;
            if bits >= 16 {
                bits -= 16;
                units.push((acc >> bits) as u16);
                acc &= (1 << bits) - 1;
            }
        }
        if bytes.get(i) == Some(&b'-') {
            i += 1;
        }
        out.extend(char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)));
    }
    out.into_bytes()
}

/// True for the labels of US-ASCII that `encoding_rs` knows (it maps them to windows-1252).
fn is_us_ascii(charset: &str) -> bool {
    let label = charset.trim().trim_matches('"').trim();
    ["us-ascii", "ascii", "ansi_x3.4-1968"]
        .iter()
        .any(|ascii| label.eq_ignore_ascii_case(ascii))
}

/// Convert text in `charset` to UTF-8.
///
/// A known charset label (anything [`Encoding::for_label`] knows: `iso-8859-1`,
/// `windows-1252`, `koi8-r`, `shift_jis`, `iso-2022-jp`, `gb2312`, `utf-8`, ..., plus a few
/// Microsoft code-page aliases, and UTF-7) is decoded with it; malformed sequences become
/// U+FFFD. A byte-order mark, if present, wins over the label and is removed.
///
/// With no charset, an unknown one, or US-ASCII: the bytes unchanged if they are valid
/// UTF-8 (which covers US-ASCII), else decoded as windows-1252, the usual charset of
/// untagged 8-bit mail. US-ASCII is in this list because a server reports it for a part
/// that names no charset (the default of
/// [RFC 2045 §5.2](https://www.rfc-editor.org/rfc/rfc2045#section-5.2)), so the label tells
/// nothing about 8-bit bytes. The result is always valid UTF-8.
pub fn text_to_utf8(charset: Option<&str>, bytes: &[u8]) -> Vec<u8> {
    let charset = charset.filter(|label| !is_us_ascii(label));
    if charset.is_some_and(is_utf7) {
        return decode_utf7(bytes);
    }
    match charset.and_then(encoding_for_charset) {
        Some(encoding) => encoding.decode(bytes).0.into_owned().into_bytes(),
        None => match std::str::from_utf8(bytes) {
            Ok(_) => bytes.to_vec(),
            Err(_) => encoding_rs::WINDOWS_1252
                .decode_without_bom_handling(bytes)
                .0
                .into_owned()
                .into_bytes(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn base64_known_vectors() {
        // RFC 4648 §10 test vectors.
        let cases: [(&str, &str); 7] = [
            ("", ""),
            ("Zg==", "f"),
            ("Zm8=", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYg==", "foob"),
            ("Zm9vYmE=", "fooba"),
            ("Zm9vYmFy", "foobar"),
        ];
        for (encoded, plain) in cases {
            assert_eq!(
                decode_base64(encoded.as_bytes()),
                plain.as_bytes(),
                "{encoded}"
            );
        }
    }

    #[test]
    fn base64_ignores_line_breaks_garbage_and_missing_padding() {
        assert_eq!(decode_base64(b"Zm9v\r\nYmFy\r\n"), b"foobar");
        assert_eq!(decode_base64(b" Zm 9v\tYm*Fy!"), b"foobar");
        assert_eq!(decode_base64(b"Zm9vYg"), b"foob");
        assert_eq!(decode_base64(b"Zm9vYmE"), b"fooba");
        // A lone leftover character cannot make a byte.
        assert_eq!(decode_base64(b"Zm9vY"), b"foo");
    }

    #[test]
    fn base64_concatenated_chunks_decode_after_padding() {
        assert_eq!(decode_base64(b"Zg==Zm8="), b"ffo");
    }

    #[test]
    fn base64_binary_round_trip() {
        use base64::Engine as _;
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
        let wrapped: Vec<u8> = encoded
            .as_bytes()
            .chunks(76)
            .flat_map(|line| line.iter().copied().chain(*b"\r\n"))
            .collect();
        assert_eq!(decode_base64(&wrapped), data);
    }

    #[test]
    fn quoted_printable_hex_either_case() {
        assert_eq!(
            decode_quoted_printable(b"caf=E9 caf=e9"),
            b"caf\xe9 caf\xe9"
        );
        assert_eq!(decode_quoted_printable(b"a=3Db"), b"a=b");
    }

    #[test]
    fn quoted_printable_soft_breaks() {
        assert_eq!(decode_quoted_printable(b"abc=\r\ndef"), b"abcdef");
        assert_eq!(decode_quoted_printable(b"abc=\ndef"), b"abcdef");
        assert_eq!(decode_quoted_printable(b"abc=  \r\ndef"), b"abcdef");
        assert_eq!(decode_quoted_printable(b"abc="), b"abc");
    }

    #[test]
    fn quoted_printable_keeps_hard_breaks_as_written() {
        assert_eq!(decode_quoted_printable(b"a\r\nb\nc\r\n"), b"a\r\nb\nc\r\n");
    }

    #[test]
    fn quoted_printable_drops_transport_blanks_before_line_ends_only() {
        assert_eq!(decode_quoted_printable(b"a b  \r\nc\t\nd "), b"a b\r\nc\nd");
        assert_eq!(decode_quoted_printable(b"a=20\r\n"), b"a \r\n");
    }

    #[test]
    fn quoted_printable_keeps_malformed_equals() {
        assert_eq!(decode_quoted_printable(b"a=ZZb"), b"a=ZZb");
        assert_eq!(decode_quoted_printable(b"a=4"), b"a=4");
        assert_eq!(decode_quoted_printable(b"x=G1=3"), b"x=G1=3");
        assert_eq!(decode_quoted_printable(b"== "), b"=");
    }

    #[test]
    fn identity_encodings_are_unchanged() {
        let raw = b"=41 Zm9v\r\n";
        for encoding in [
            TransferEncoding::SevenBit,
            TransferEncoding::EightBit,
            TransferEncoding::Binary,
            TransferEncoding::Other("x-uuencode".into()),
        ] {
            assert_eq!(decode_transfer(&encoding, raw), raw, "{encoding:?}");
        }
        assert_eq!(decode_transfer(&TransferEncoding::Base64, b"Zm9v"), b"foo");
        assert_eq!(
            decode_transfer(&TransferEncoding::QuotedPrintable, b"=41"),
            b"A"
        );
    }

    #[test]
    fn charset_iso_8859_1() {
        assert_eq!(
            text_to_utf8(Some("iso-8859-1"), b"caf\xe9"),
            "café".as_bytes()
        );
        assert_eq!(
            text_to_utf8(Some("ISO-8859-1"), b"caf\xe9"),
            "café".as_bytes()
        );
        assert_eq!(
            text_to_utf8(Some("\"latin1\""), b"caf\xe9"),
            "café".as_bytes()
        );
    }

    #[test]
    fn charset_koi8_r() {
        // "Привет" in KOI8-R.
        let koi8 = b"\xf0\xd2\xc9\xd7\xc5\xd4";
        assert_eq!(text_to_utf8(Some("koi8-r"), koi8), "Привет".as_bytes());
    }

    #[test]
    fn charset_shift_jis_and_iso_2022_jp() {
        // "日本" in Shift_JIS and in ISO-2022-JP.
        assert_eq!(
            text_to_utf8(Some("shift_jis"), b"\x93\xfa\x96\x7b"),
            "日本".as_bytes()
        );
        assert_eq!(
            text_to_utf8(Some("cp932"), b"\x93\xfa\x96\x7b"),
            "日本".as_bytes()
        );
        assert_eq!(
            text_to_utf8(Some("iso-2022-jp"), b"\x1b$BF|K\\\x1b(B"),
            "日本".as_bytes()
        );
    }

    #[test]
    fn charset_gb2312() {
        // "中文" in GB2312.
        assert_eq!(
            text_to_utf8(Some("gb2312"), b"\xd6\xd0\xce\xc4"),
            "中文".as_bytes()
        );
    }

    #[test]
    fn charset_utf8_invalid_bytes_become_replacement() {
        assert_eq!(
            text_to_utf8(Some("utf-8"), b"a\xffb"),
            "a\u{fffd}b".as_bytes()
        );
    }

    #[test]
    fn missing_or_unknown_charset_falls_back() {
        assert_eq!(text_to_utf8(None, "naïve".as_bytes()), "naïve".as_bytes());
        assert_eq!(text_to_utf8(None, b"caf\xe9"), "café".as_bytes());
        assert_eq!(
            text_to_utf8(Some("x-unknown"), b"caf\xe9"),
            "café".as_bytes()
        );
        assert_eq!(
            text_to_utf8(Some("unknown-8bit"), "café".as_bytes()),
            "café".as_bytes()
        );
        // A label encoding_rs maps to "replacement" is treated as unknown, not as U+FFFD.
        assert_eq!(text_to_utf8(Some("iso-2022-kr"), b"abc"), b"abc");
    }

    #[test]
    fn charset_utf7() {
        // RFC 2152's examples, then `+-`, a surrogate pair, and an 8-bit byte.
        let cases: [(&[u8], &str); 6] = [
            (b"Hi Mom -+Jjo--!", "Hi Mom -\u{263a}-!"),
            (b"A+ImIDkQ.", "A\u{2262}\u{391}."),
            (b"+ZeVnLIqe-", "日本語"),
            (b"1 +- 1", "1 + 1"),
            (b"+2D3eAA-", "😀"),
            (b"caf\xe9", "caf\u{fffd}"),
        ];
        for (utf7, text) in cases {
            assert_eq!(
                text_to_utf8(Some("UTF-7"), utf7),
                text.as_bytes(),
                "{utf7:?}"
            );
        }
        assert_eq!(
            text_to_utf8(Some("unicode-1-1-utf-7"), b"Caf+AOk-"),
            "Café".as_bytes()
        );
        // A lone high surrogate.
        assert_eq!(
            text_to_utf8(Some("utf-7"), b"+2D0-x"),
            "\u{fffd}x".as_bytes()
        );
    }

    #[test]
    fn us_ascii_label_is_no_charset() {
        // Dovecot reports charset us-ascii for `Content-Type: text/plain` with 8-bit UTF-8.
        for label in ["us-ascii", "US-ASCII", "\"ascii\"", "ANSI_X3.4-1968"] {
            assert_eq!(
                text_to_utf8(Some(label), "naïve".as_bytes()),
                "naïve".as_bytes(),
                "{label}"
            );
            assert_eq!(text_to_utf8(Some(label), b"caf\xe9"), "café".as_bytes());
            assert_eq!(text_to_utf8(Some(label), b"plain"), b"plain");
        }
    }

    proptest! {
        #[test]
        fn decoders_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
            let b64 = decode_base64(&raw);
            prop_assert!(b64.len() <= raw.len() * 3 / 4 + 2);
            let qp = decode_quoted_printable(&raw);
            prop_assert!(qp.len() <= raw.len());
            for charset in [None, Some("utf-8"), Some("shift_jis"), Some("iso-2022-jp"), Some("utf-7"), Some("bogus")] {
                let text = text_to_utf8(charset, &raw);
                prop_assert!(std::str::from_utf8(&text).is_ok());
            }
        }

        #[test]
        fn quoted_printable_decodes_what_an_encoder_writes(
            data in proptest::collection::vec(any::<u8>(), 0..256)
        ) {
            let mut encoded = Vec::new();
            for (i, byte) in data.iter().enumerate() {
                if i > 0 && i % 20 == 0 {
                    encoded.extend_from_slice(b"=\r\n");
                }
                match byte {
                    b'!'..=b'<' | b'>'..=b'~' => encoded.push(*byte),
                    _ => encoded.extend_from_slice(format!("={byte:02X}").as_bytes()),
                }
            }
            prop_assert_eq!(decode_quoted_printable(&encoded), data);
        }
    }
}
