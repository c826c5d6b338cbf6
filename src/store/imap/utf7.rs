//! Modified UTF-7 mailbox names, as IMAP sends them on the wire ([RFC 3501 §5.1.3]).
//!
//! Printable US-ASCII except `&` stands for itself, `&` is written `&-`, and every
//! other character is written as UTF-16BE in a modified base64 (`,` instead of `/`,
//! no `=` padding) between `&` and `-`.
//!
//! The decoder is strict: it accepts only the one canonical spelling of each name, so
//! `decode(w) == Ok(n)` implies `encode(&n) == w`. Two different wire names therefore
//! never decode to the same display name, and a decoded name always maps back to the
//! mailbox it came from.
//!
//! [RFC 3501 §5.1.3]: https://www.rfc-editor.org/rfc/rfc3501#section-5.1.3

/// Why a wire mailbox name is not valid modified UTF-7.
///
/// Every variant carries `pos`, the byte offset in the wire string where the problem
/// starts (for an encoded run, the offset of its `&`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Utf7Error {
    /// A character outside US-ASCII appears unencoded.
    #[error("raw non-ASCII character {ch:?} at byte {pos} (must be encoded)")]
    RawNonAscii {
        /// Byte offset of the character.
        pos: usize,
        /// The offending character.
        ch: char,
    },
    /// A control character (0x00-0x1f, 0x7f) appears unencoded.
    #[error("raw control character 0x{byte:02x} at byte {pos} (must be encoded)")]
    RawControl {
        /// Byte offset of the character.
        pos: usize,
        /// The offending byte.
        byte: u8,
    },
    /// An `&` starts an encoded run that no `-` ends.
    #[error("encoded run starting at byte {pos} has no closing '-'")]
    Unterminated {
        /// Byte offset of the `&`.
        pos: usize,
    },
    /// A character inside an encoded run is not in the modified base64 alphabet.
    #[error("invalid modified base64 character {ch:?} at byte {pos}")]
    BadBase64 {
        /// Byte offset of the character.
        pos: usize,
        /// The offending character.
        ch: char,
    },
    /// The run has a base64 character too many: its last character carries no byte.
    #[error("encoded run at byte {pos} has a superfluous base64 character")]
    BadLength {
        /// Byte offset of the `&`.
        pos: usize,
    },
    /// The bits left over after the last whole byte are not all zero.
    #[error("encoded run at byte {pos} has non-zero padding bits")]
    NonZeroPadding {
        /// Byte offset of the `&`.
        pos: usize,
    },
    /// The run decodes to an odd number of bytes, so it is not UTF-16.
    #[error("encoded run at byte {pos} decodes to an odd number of bytes")]
    OddByteCount {
        /// Byte offset of the `&`.
        pos: usize,
    },
    /// The run holds a UTF-16 surrogate without its partner.
    #[error("encoded run at byte {pos} contains an unpaired UTF-16 surrogate")]
    UnpairedSurrogate {
        /// Byte offset of the `&`.
        pos: usize,
    },
    /// The run encodes a printable ASCII character, which must be written directly.
    #[error("encoded run at byte {pos} encodes {ch:?}, which must be written directly")]
    EncodedPrintable {
        /// Byte offset of the `&`.
        pos: usize,
        /// The printable character found in the run.
        ch: char,
    },
    /// An encoded run follows another directly; the encoder would have merged them.
    #[error("encoded run at byte {pos} directly follows another encoded run")]
    AdjacentRuns {
        /// Byte offset of the second run's `&`.
        pos: usize,
    },
}

/// The modified base64 alphabet of RFC 3501 §5.1.3: RFC 2045 base64 with `,` for `/`.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Whether `c` is written as itself on the wire (printable US-ASCII other than `&`).
fn is_direct(c: char) -> bool {
    matches!(c, '\x20'..='\x7e') && c != '&'
}

/// The 6-bit value of a modified base64 character, if it is one.
fn sextet(byte: u8) -> Option<u8> {
    match byte {
        b'A'..=b'Z' => Some(byte - b'A'),
        b'a'..=b'z' => Some(byte - b'a' + 26),
        b'0'..=b'9' => Some(byte - b'0' + 52),
        b'+' => Some(62),
        b',' => Some(63),
        _ => None,
    }
}

/// Decodes a wire mailbox name from modified UTF-7 ([RFC 3501 §5.1.3]).
///
/// `"Re&AOc-us"` becomes `"Reçus"` and `"&-"` becomes `"&"`. Anything that is not
/// the canonical encoding of some name is an error; see [`Utf7Error`].
///
/// [RFC 3501 §5.1.3]: https://www.rfc-editor.org/rfc/rfc3501#section-5.1.3
pub fn decode(wire: &str) -> Result<String, Utf7Error> {
    let bytes = wire.as_bytes();
    let mut out = String::with_capacity(wire.len());
    let mut pos = 0;
    // End offset of the last non-empty encoded run, to spot a run that follows it.
    let mut last_run_end = None;
    while let Some(&byte) = bytes.get(pos) {
        if byte == b'&' {
            let body_start = pos + 1;
            let Some(len) = bytes[body_start..].iter().position(|&b| b == b'-') else {
                return Err(Utf7Error::Unterminated { pos });
            };
            let end = body_start + len;
            if len == 0 {
                out.push('&');
            } else {
                if last_run_end == Some(pos) {
                    return Err(Utf7Error::AdjacentRuns { pos });
                }
                decode_run(&wire[body_start..end], pos, &mut out)?;
                last_run_end = Some(end + 1);
            }
            pos = end + 1;
        } else if byte.is_ascii() {
            if !is_direct(char::from(byte)) {
                return Err(Utf7Error::RawControl { pos, byte });
            }
            out.push(char::from(byte));
            pos += 1;
        } else {
            // `pos` is on a char boundary: every earlier step advanced over ASCII only.
            let ch = wire[pos..]
                .chars()
                .next()
                .unwrap_or(char::REPLACEMENT_CHARACTER);
            return Err(Utf7Error::RawNonAscii { pos, ch });
        }
    }
    Ok(out)
}

/// Decodes the base64 body of one encoded run (between `&` and `-`) into `out`.
/// `amp` is the offset of the run's `&`, for error positions.
fn decode_run(body: &str, amp: usize, out: &mut String) -> Result<(), Utf7Error> {
    let mut bytes = Vec::with_capacity(body.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for (i, ch) in body.char_indices() {
        let value = u8::try_from(ch)
            .ok()
            .and_then(sextet)
            .ok_or(Utf7Error::BadBase64 {
                pos: amp + 1 + i,
                ch,
            })?;
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            // Truncation is intended: the byte is the top 8 of the pending bits.
            bytes.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 {
        return Err(Utf7Error::BadLength { pos: amp });
    }
    if acc != 0 {
        return Err(Utf7Error::NonZeroPadding { pos: amp });
    }
    if bytes.len() % 2 != 0 {
        return Err(Utf7Error::OddByteCount { pos: amp });
    }
    let units = bytes
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
    for unit in char::decode_utf16(units) {
        let ch = unit.map_err(|_| Utf7Error::UnpairedSurrogate { pos: amp })?;
        if is_direct(ch) || ch == '&' {
            return Err(Utf7Error::EncodedPrintable { pos: amp, ch });
        }
        out.push(ch);
    }
    Ok(())
}

/// Encodes a mailbox name into modified UTF-7 for the wire ([RFC 3501 §5.1.3]).
///
/// `"Reçus"` becomes `"Re&AOc-us"` and `"&"` becomes `"&-"`. Printable US-ASCII
/// other than `&` stays as it is; every other character, control characters
/// included, goes into an encoded run. The result is pure printable ASCII.
///
/// [RFC 3501 §5.1.3]: https://www.rfc-editor.org/rfc/rfc3501#section-5.1.3
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + name.len() / 2);
    let mut run = Vec::new();
    for ch in name.chars() {
        if is_direct(ch) || ch == '&' {
            flush_run(&mut run, &mut out);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut units = [0u16; 2];
            run.extend_from_slice(ch.encode_utf16(&mut units));
        }
    }
    flush_run(&mut run, &mut out);
    out
}

/// Writes the pending UTF-16 units as one `&...-` run and empties `run`.
fn flush_run(run: &mut Vec<u16>, out: &mut String) {
    if run.is_empty() {
        return;
    }
    out.push('&');
    let mut acc: u32 = 0;
    let mut bits = 0;
    for unit in run.drain(..) {
        acc = (acc << 16) | u32::from(unit);
        bits += 16;
        while bits >= 6 {
            bits -= 6;
            out.push(char::from(ALPHABET[((acc >> bits) & 0x3f) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        // Pad the last sextet with zero bits, as the strict decoder requires.
        out.push(char::from(ALPHABET[((acc << (6 - bits)) & 0x3f) as usize]));
    }
    out.push('-');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_3501_example_decodes() {
        assert_eq!(
            decode("~peter/mail/&U,BTFw-/&ZeVnLIqe-").unwrap(),
            "~peter/mail/台北/日本語"
        );
    }

    #[test]
    fn rfc_3501_example_encodes() {
        assert_eq!(
            encode("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
    }

    #[test]
    fn accented_latin() {
        assert_eq!(decode("Re&AOc-us").unwrap(), "Reçus");
        assert_eq!(encode("Reçus"), "Re&AOc-us");
        assert_eq!(encode("Éléments envoyés"), "&AMk-l&AOk-ments envoy&AOk-s");
        assert_eq!(
            decode("&AMk-l&AOk-ments envoy&AOk-s").unwrap(),
            "Éléments envoyés"
        );
    }

    #[test]
    fn ampersand_is_amp_dash() {
        assert_eq!(decode("&-").unwrap(), "&");
        assert_eq!(encode("&"), "&-");
        assert_eq!(encode("Tom & Jerry"), "Tom &- Jerry");
        assert_eq!(decode("Tom &- Jerry").unwrap(), "Tom & Jerry");
        assert_eq!(decode("&-&-").unwrap(), "&&");
    }

    #[test]
    fn plain_ascii_is_unchanged() {
        let name = "INBOX/Sent Items [2024] ~!@#$%^*()_+-=";
        assert_eq!(encode(name), name);
        assert_eq!(decode(name).unwrap(), name);
        assert_eq!(encode(""), "");
        assert_eq!(decode("").unwrap(), "");
    }

    #[test]
    fn emoji_uses_a_surrogate_pair() {
        // U+1F4E7 is D83D DCE7 in UTF-16: four bytes, six base64 characters.
        assert_eq!(encode("📧"), "&2D3c5w-");
        assert_eq!(decode("&2D3c5w-").unwrap(), "📧");
        assert_eq!(decode("Mail &2D3c5w- box").unwrap(), "Mail 📧 box");
    }

    #[test]
    fn controls_are_encoded() {
        assert_eq!(encode("a\tb"), "a&AAk-b");
        assert_eq!(decode("a&AAk-b").unwrap(), "a\tb");
        assert_eq!(encode("\u{7f}"), "&AH8-");
        assert_eq!(encode("\0"), "&AAA-");
    }

    #[test]
    fn run_then_ampersand_and_dash() {
        assert_eq!(encode("ç&"), "&AOc-&-");
        assert_eq!(decode("&AOc-&-").unwrap(), "ç&");
        assert_eq!(encode("ç-"), "&AOc--");
        assert_eq!(decode("&AOc--").unwrap(), "ç-");
    }

    #[test]
    fn rejects_unterminated_run() {
        assert_eq!(decode("a&AOc"), Err(Utf7Error::Unterminated { pos: 1 }));
        assert_eq!(decode("&"), Err(Utf7Error::Unterminated { pos: 0 }));
    }

    #[test]
    fn rejects_bad_base64_characters() {
        assert_eq!(
            decode("&AO/-"),
            Err(Utf7Error::BadBase64 { pos: 3, ch: '/' })
        );
        assert_eq!(
            decode("&AOc=-"),
            Err(Utf7Error::BadBase64 { pos: 4, ch: '=' })
        );
        assert_eq!(
            decode("&AOé-"),
            Err(Utf7Error::BadBase64 { pos: 3, ch: 'é' })
        );
    }

    #[test]
    fn rejects_nonzero_padding() {
        // "AOd" is 0x00E7 plus the padding bits 01.
        assert_eq!(decode("&AOd-"), Err(Utf7Error::NonZeroPadding { pos: 0 }));
    }

    #[test]
    fn rejects_superfluous_character() {
        assert_eq!(decode("&A-"), Err(Utf7Error::BadLength { pos: 0 }));
        assert_eq!(decode("&AOcAA-"), Err(Utf7Error::BadLength { pos: 0 }));
    }

    #[test]
    fn rejects_odd_byte_count() {
        // "AA" is 12 bits: one whole byte and 4 zero bits.
        assert_eq!(decode("&AA-"), Err(Utf7Error::OddByteCount { pos: 0 }));
    }

    #[test]
    fn rejects_unpaired_surrogates() {
        // A lone high surrogate D83D.
        assert_eq!(
            decode("&2D0-"),
            Err(Utf7Error::UnpairedSurrogate { pos: 0 })
        );
        // A lone low surrogate DCE7.
        assert_eq!(
            decode("&3Oc-"),
            Err(Utf7Error::UnpairedSurrogate { pos: 0 })
        );
        // A high surrogate followed by a non-surrogate (D83D 00E7).
        assert_eq!(
            decode("&2D0A5w-"),
            Err(Utf7Error::UnpairedSurrogate { pos: 0 })
        );
    }

    #[test]
    fn rejects_encoded_printable_ascii() {
        // "AGE" is U+0061 'a'.
        assert_eq!(
            decode("&AGE-"),
            Err(Utf7Error::EncodedPrintable { pos: 0, ch: 'a' })
        );
        // 'ç' then 'a' in one run: the 'a' should have been direct.
        assert_eq!(
            decode("x&AOcAYQ-"),
            Err(Utf7Error::EncodedPrintable { pos: 1, ch: 'a' })
        );
        // An encoded '&' must be written "&-".
        assert_eq!(
            decode("&ACY-"),
            Err(Utf7Error::EncodedPrintable { pos: 0, ch: '&' })
        );
    }

    #[test]
    fn rejects_adjacent_runs() {
        assert_eq!(
            decode("&AOc-&AOc-"),
            Err(Utf7Error::AdjacentRuns { pos: 5 })
        );
        assert_eq!(decode("&AOc-x&AOc-").unwrap(), "çxç");
    }

    #[test]
    fn rejects_raw_non_ascii_and_controls() {
        assert_eq!(
            decode("Reçus"),
            Err(Utf7Error::RawNonAscii { pos: 2, ch: 'ç' })
        );
        assert_eq!(
            decode("a\nb"),
            Err(Utf7Error::RawControl {
                pos: 1,
                byte: b'\n'
            })
        );
        assert_eq!(
            decode("\u{7f}"),
            Err(Utf7Error::RawControl { pos: 0, byte: 0x7f })
        );
    }

    #[test]
    fn errors_read_well() {
        let err = decode("&AOc").unwrap_err();
        assert_eq!(
            err.to_string(),
            "encoded run starting at byte 0 has no closing '-'"
        );
    }

    /// Wire-like strings built from the characters that matter to the decoder.
    fn wire_like() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just('&'),
                Just('-'),
                Just('A'),
                Just('O'),
                Just('c'),
                Just(','),
                Just('2'),
                Just('D'),
                Just('3'),
                Just('x'),
                Just('é'),
                Just('\n'),
            ],
            0..16,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(name in any::<String>()) {
            let wire = encode(&name);
            prop_assert!(wire.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            prop_assert_eq!(decode(&wire), Ok(name));
        }

        #[test]
        fn decode_never_panics(wire in any::<String>()) {
            let _ = decode(&wire);
        }

        #[test]
        fn decoding_is_canonical(wire in wire_like()) {
            if let Ok(name) = decode(&wire) {
                prop_assert_eq!(encode(&name), wire);
            }
        }

        #[test]
        fn altered_encodings_are_canonical_or_rejected(
            name in any::<String>(),
            index in any::<prop::sample::Index>(),
            replacement in prop::sample::select(b"&-AOcw,+2D0x/=".to_vec()),
        ) {
            let mut wire = encode(&name).into_bytes();
            if !wire.is_empty() {
                let i = index.index(wire.len());
                wire[i] = replacement;
            }
            let wire = String::from_utf8(wire).expect("encode output is ASCII");
            if let Ok(decoded) = decode(&wire) {
                prop_assert_eq!(encode(&decoded), wire);
            }
        }
    }
}
