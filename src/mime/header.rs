//! Decoding of header values: RFC 2047 encoded-words and raw 8-bit text, to a Rust string.

use super::decode::{decode_base64, hex_value, text_to_utf8};

/// One encoded-word found in a header value
/// ([RFC 2047 §2](https://www.rfc-editor.org/rfc/rfc2047#section-2)).
struct EncodedWord<'a> {
    charset: &'a [u8],
    /// The decoded bytes, still in `charset`.
    bytes: Vec<u8>,
    /// Length of the whole `=?charset?enc?text?=` in the input.
    len: usize,
}

/// Try to read an encoded-word at the start of `input` (which begins with `=?`).
///
/// Lenient where mailers are sloppy: the encoding letter may be either case, the encoded text
/// may contain spaces, and an RFC 2231 language suffix (`utf-8*en`) is ignored. Line breaks
/// never occur inside a word.
fn parse_encoded_word(input: &[u8]) -> Option<EncodedWord<'_>> {
    let rest = input.strip_prefix(b"=?")?;
    let charset_len = rest.iter().position(|&b| b == b'?')?;
    let charset = &rest[..charset_len];
    if charset.is_empty() || charset.iter().any(|b| b.is_ascii_whitespace()) {
        return None;
    }
    let rest = &rest[charset_len + 1..];
    let (&letter, rest) = rest.split_first()?;
    let rest = rest.strip_prefix(b"?")?;
    let text_len = rest.windows(2).position(|w| w == b"?=")?;
    let text = &rest[..text_len];
    if text.iter().any(|&b| b == b'\r' || b == b'\n') {
        return None;
    }
    let bytes = match letter.to_ascii_uppercase() {
        b'B' => decode_base64(text),
        b'Q' => decode_q(text),
        _ => return None,
    };
    let charset = charset.split(|&b| b == b'*').next().unwrap_or(charset);
    Some(EncodedWord {
        charset,
        bytes,
        len: 2 + charset_len + 1 + 2 + text_len + 2,
    })
}

/// The "Q" encoding ([RFC 2047 §4.2](https://www.rfc-editor.org/rfc/rfc2047#section-4.2)):
/// `_` is a space, `=XX` a byte; a malformed `=` is kept.
fn decode_q(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = (text.get(i + 1).copied().and_then(hex_value))
                    .zip(text.get(i + 2).copied().and_then(hex_value));
                if let Some((h, l)) = hex {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                out.push(b'=');
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    out
}

/// Builds the decoded string, joining the bytes of adjacent encoded-words in the same charset
/// before converting them, so that a multi-byte character split across two words survives.
#[derive(Default)]
struct Decoder {
    out: String,
    pending_charset: Vec<u8>,
    pending: Vec<u8>,
}

impl Decoder {
    fn push_word(&mut self, word: EncodedWord<'_>) {
        if !self.pending_charset.eq_ignore_ascii_case(word.charset) {
            self.flush();
            self.pending_charset = word.charset.to_vec();
        }
        self.pending.extend_from_slice(&word.bytes);
    }

    fn push_raw(&mut self, raw: &[u8]) {
        self.flush();
        self.out
            .push_str(&String::from_utf8_lossy(&text_to_utf8(None, raw)));
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let charset = String::from_utf8_lossy(&self.pending_charset).into_owned();
        let text = text_to_utf8(Some(&charset), &self.pending);
        self.out.push_str(&String::from_utf8_lossy(&text));
        self.pending.clear();
    }
}

/// Decode a header value to text.
///
/// - Folding is undone: a CRLF (or LF) followed by a space or tab is removed
///   ([RFC 5322 §2.2.3](https://www.rfc-editor.org/rfc/rfc5322#section-2.2.3)).
/// - Encoded-words ([RFC 2047](https://www.rfc-editor.org/rfc/rfc2047)) in any charset
///   `encoding_rs` knows, B or Q encoding, are decoded; whitespace between two adjacent
///   encoded-words is dropped (§6.2). An encoded-word in an unknown charset is decoded as
///   UTF-8 if valid, else as windows-1252. Something that only looks like an encoded-word is
///   kept as written.
/// - Other bytes are taken as UTF-8 where they are valid UTF-8, else as windows-1252 (raw
///   8-bit headers are usually Latin-1, as untagged bodies are): `caf\xe9` is `café`.
///
/// Never panics; control characters are kept (sanitising is the caller's job).
pub fn decode_header(raw: &[u8]) -> String {
    let unfolded = unfold(raw);
    let mut decoder = Decoder::default();
    let mut i = 0;
    let mut literal_start = 0;
    // Where the whitespace after the last encoded-word ends, if only whitespace followed it.
    let mut after_word: Option<usize> = None;
    while i < unfolded.len() {
        if unfolded[i..].starts_with(b"=?") {
            if let Some(word) = parse_encoded_word(&unfolded[i..]) {
                if after_word.is_none() {
                    decoder.push_raw(&unfolded[literal_start..i]);
                }
                i += word.len;
                decoder.push_word(word);
                literal_start = i;
                after_word = Some(i);
                continue;
            }
        }
        if !matches!(unfolded[i], b' ' | b'\t') {
            after_word = None;
        }
        i += 1;
    }
    decoder.push_raw(&unfolded[literal_start..]);
    decoder.flush();
    decoder.out
}

/// Remove folding line breaks (CRLF or LF followed by a space or tab).
fn unfold(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let break_len = match raw[i..] {
            [b'\r', b'\n', b' ' | b'\t', ..] => 2,
            [b'\n', b' ' | b'\t', ..] => 1,
            _ => 0,
        };
        if break_len > 0 {
            i += break_len;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_ascii_is_unchanged() {
        assert_eq!(decode_header(b"Hello, world"), "Hello, world");
        assert_eq!(decode_header(b""), "");
    }

    #[test]
    fn rfc2047_examples() {
        // RFC 2047 §8.
        assert_eq!(decode_header(b"=?ISO-8859-1?Q?a?="), "a");
        assert_eq!(decode_header(b"=?ISO-8859-1?Q?a?= b"), "a b");
        assert_eq!(
            decode_header(b"=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?="),
            "ab"
        );
        assert_eq!(
            decode_header(b"=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?="),
            "ab"
        );
        assert_eq!(
            decode_header(b"=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?="),
            "ab"
        );
        assert_eq!(decode_header(b"=?ISO-8859-1?Q?a_b?="), "a b");
        assert_eq!(
            decode_header(b"=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?="),
            "a b"
        );
        assert_eq!(
            decode_header(b"=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?="),
            "Keld Jørn Simonsen"
        );
    }

    #[test]
    fn base64_words_and_mixed_text() {
        assert_eq!(decode_header(b"Re: =?UTF-8?B?Y2Fmw6k=?= ok"), "Re: café ok");
        assert_eq!(decode_header(b"=?utf-8?b?4oKs?="), "€");
        assert_eq!(decode_header(b"=?koi8-r?B?8NLJ18XU?="), "Привет");
    }

    #[test]
    fn multibyte_character_split_across_words_survives() {
        // "€" is E2 82 AC; the mailer split it between two words.
        assert_eq!(decode_header(b"=?utf-8?Q?=E2=82?= =?utf-8?Q?=AC?="), "€");
    }

    #[test]
    fn text_between_words_is_kept() {
        assert_eq!(decode_header(b"=?utf-8?Q?a?= and =?utf-8?Q?b?="), "a and b");
    }

    #[test]
    fn malformed_words_are_kept_literally() {
        assert_eq!(decode_header(b"=?utf-8?X?abc?="), "=?utf-8?X?abc?=");
        assert_eq!(decode_header(b"=?utf-8?Q?abc"), "=?utf-8?Q?abc");
        assert_eq!(decode_header(b"1 =? 2"), "1 =? 2");
        assert_eq!(decode_header(b"=??Q?a?="), "=??Q?a?=");
    }

    #[test]
    fn raw_8bit_is_utf8_else_windows_1252() {
        assert_eq!(decode_header("Grüße".as_bytes()), "Grüße");
        assert_eq!(decode_header(b"a\xffb"), "a\u{ff}b");
        // A raw Latin-1 subject (a bug hunt saw `caf\u{fffd}` as its directory's name).
        assert_eq!(decode_header(b"raw latin1 caf\xe9"), "raw latin1 café");
    }

    #[test]
    fn folding_is_undone() {
        assert_eq!(decode_header(b"a long\r\n subject"), "a long subject");
        assert_eq!(decode_header(b"a\n\tb"), "a\tb");
    }

    #[test]
    fn unknown_charset_word_falls_back() {
        assert_eq!(decode_header(b"=?x-bogus?Q?caf=E9?="), "café");
        assert_eq!(decode_header(b"=?utf-8*en?Q?hi?="), "hi");
    }

    #[test]
    fn adjacent_words_without_whitespace_join() {
        assert_eq!(decode_header(b"=?utf-8?Q?a?==?utf-8?Q?b?="), "ab");
    }

    proptest! {
        #[test]
        fn text_without_encoded_words_is_utf8_or_windows_1252(
            raw in proptest::collection::vec(any::<u8>(), 0..256)
        ) {
            let decoded = decode_header(&raw);
            if !raw.windows(2).any(|w| w == b"=?") {
                let unfolded = unfold(&raw);
                let want = match std::str::from_utf8(&unfolded) {
                    Ok(text) => text.to_string(),
                    Err(_) => encoding_rs::WINDOWS_1252
                        .decode_without_bom_handling(&unfolded)
                        .0
                        .into_owned(),
                };
                prop_assert_eq!(decoded, want);
            }
        }

        #[test]
        fn base64_words_round_trip(text in any::<String>(), prefix in "[a-z ]{0,8}") {
            use base64::Engine as _;
            let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
            let header = format!("{prefix}=?UTF-8?B?{encoded}?=");
            prop_assert_eq!(decode_header(header.as_bytes()), format!("{prefix}{text}"));
        }

        #[test]
        fn word_like_input_never_panics(s in "[=?a-zA-Z0-9_ \r\n-]{0,64}") {
            let decoded = decode_header(s.as_bytes());
            // Decoding only removes or replaces: never more characters than went in.
            prop_assert!(decoded.chars().count() <= s.len());
        }
    }
}
