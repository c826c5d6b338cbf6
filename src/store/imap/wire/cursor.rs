//! A cursor over one complete response: the lexical pieces of
//! [RFC 3501 §4](https://www.rfc-editor.org/rfc/rfc3501#section-4) (atoms, numbers, quoted
//! strings, literals, `literal8`, NIL, parenthesised lists), each checked as it is taken.
//!
//! The buffer holds the response exactly as received, literals included, so a literal is
//! taken in place. Nothing here recurses: nested lists are skipped with a depth counter
//! bounded by [`MAX_DEPTH`].

use std::borrow::Cow;

use super::WireError;
use crate::store::imap::nesting::MAX_DEPTH;

/// Longest number we read: 20 digits is every `u64`.
const MAX_DIGITS: usize = 20;

/// A position in one response.
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// Bytes that end an atom (`atom-specials` of RFC 3501 §9, less `\`, `%`, `*` and `]`,
/// which flags, LIST patterns and response codes use inside atoms).
fn ends_atom(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'(' | b')' | b'{' | b'"' | b'[' | b']' | b'<' | b'>'
    ) || b < 0x20
        || b == 0x7f
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of one complete response.
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    /// A parse error that shows where it happened (the text around it, shortened).
    pub fn error(&self, what: &str) -> WireError {
        let from = self.pos.saturating_sub(40);
        let to = (self.pos + 40).min(self.buf.len());
        WireError::Protocol(format!(
            "{what} at byte {} of the response, near {:?}",
            self.pos,
            String::from_utf8_lossy(&self.buf[from..to])
        ))
    }

    /// Where the cursor is, to come back with [`Cursor::reset`].
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Goes back to a position taken with [`Cursor::pos`].
    pub fn reset(&mut self, pos: usize) {
        self.pos = pos;
    }

    /// The next byte, not taken.
    pub fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// True if the input continues with `word`, in any case.
    pub fn at(&self, word: &[u8]) -> bool {
        self.buf
            .get(self.pos..self.pos + word.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(word))
    }

    /// Takes `word` (any case) if it is next.
    pub fn eat(&mut self, word: &[u8]) -> bool {
        let found = self.at(word);
        if found {
            self.pos += word.len();
        }
        found
    }

    /// Takes the byte `b`, or fails.
    pub fn expect(&mut self, b: u8) -> Result<(), WireError> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected {:?}", b as char)))
        }
    }

    /// Takes one space.
    pub fn space(&mut self) -> Result<(), WireError> {
        self.expect(b' ')
    }

    /// True at the end of the line (CRLF, or a bare LF from a sloppy server).
    pub fn at_eol(&self) -> bool {
        matches!(&self.buf[self.pos..], b"\r\n" | b"\n" | b"")
    }

    /// Takes the line end, which must end the response.
    pub fn eol(&mut self) -> Result<(), WireError> {
        if self.at_eol() {
            self.pos = self.buf.len();
            Ok(())
        } else {
            Err(self.error("expected the end of the line"))
        }
    }

    /// The rest of the line as text (response text), without the line end.
    pub fn text(&mut self) -> String {
        let rest = &self.buf[self.pos..];
        let line = rest
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(rest);
        self.pos = self.buf.len();
        String::from_utf8_lossy(line).into_owned()
    }

    /// One or more atom characters.
    pub fn atom(&mut self) -> Result<&'a [u8], WireError> {
        let start = self.pos;
        while self.peek().is_some_and(|b| !ends_atom(b)) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.error("expected an atom"));
        }
        Ok(&self.buf[start..self.pos])
    }

    /// An atom as text, upper-cased (for names compared case-insensitively).
    pub fn keyword(&mut self) -> Result<String, WireError> {
        Ok(String::from_utf8_lossy(self.atom()?).to_ascii_uppercase())
    }

    /// A decimal number of at most 20 digits that fits in a `u64`.
    pub fn number(&mut self) -> Result<u64, WireError> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        let digits = &self.buf[start..self.pos];
        if digits.is_empty() || digits.len() > MAX_DIGITS {
            self.pos = start;
            return Err(self.error("expected a number"));
        }
        digits
            .iter()
            .try_fold(0u64, |n, &d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })
            .ok_or_else(|| self.error("number too large"))
    }

    /// A number that must fit in 32 bits (`nz-number`, UIDs, sequence numbers).
    pub fn number32(&mut self) -> Result<u32, WireError> {
        let n = self.number()?;
        u32::try_from(n).map_err(|_| self.error("number too large for 32 bits"))
    }

    /// NIL, or a string.
    pub fn nstring(&mut self) -> Result<Option<Cow<'a, [u8]>>, WireError> {
        if self.at_nil() {
            self.pos += 3;
            return Ok(None);
        }
        self.string().map(Some)
    }

    /// True if `NIL` comes next as a whole atom.
    fn at_nil(&self) -> bool {
        self.at(b"NIL") && self.buf.get(self.pos + 3).is_none_or(|&b| ends_atom(b))
    }

    /// A quoted string, a literal or a `literal8` (accepted wherever a string may be: what
    /// BINARY answers hold, and harmless elsewhere).
    pub fn string(&mut self) -> Result<Cow<'a, [u8]>, WireError> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal().map(Cow::Borrowed),
            Some(b'~') if self.buf.get(self.pos + 1) == Some(&b'{') => {
                self.pos += 1;
                self.literal().map(Cow::Borrowed)
            }
            _ => Err(self.error("expected a string")),
        }
    }

    /// An atom or a string (`astring`): mailbox names in LIST.
    pub fn astring(&mut self) -> Result<Cow<'a, [u8]>, WireError> {
        match self.peek() {
            Some(b'"' | b'{' | b'~') => self.string(),
            _ => {
                // ASTRING-CHAR also allows `]`.
                let start = self.pos;
                while self.peek().is_some_and(|b| !ends_atom(b) || b == b']') {
                    self.pos += 1;
                }
                if self.pos == start {
                    return Err(self.error("expected an atom or a string"));
                }
                Ok(Cow::Borrowed(&self.buf[start..self.pos]))
            }
        }
    }

    /// A quoted string with its `\"` and `\\` escapes undone. NUL, CR and LF cannot be in
    /// one; 8-bit bytes are taken as they come (servers with UTF8=ACCEPT send them).
    fn quoted(&mut self) -> Result<Cow<'a, [u8]>, WireError> {
        self.expect(b'"')?;
        let start = self.pos;
        let mut owned: Option<Vec<u8>> = None;
        loop {
            match self.peek() {
                Some(b'"') => {
                    let text = &self.buf[start..self.pos];
                    self.pos += 1;
                    return Ok(owned.map_or(Cow::Borrowed(text), Cow::Owned));
                }
                Some(b'\\') => {
                    let Some(&escaped) = self.buf.get(self.pos + 1) else {
                        return Err(self.error("unterminated quoted string"));
                    };
                    if matches!(escaped, b'\0' | b'\r' | b'\n') {
                        return Err(self.error("NUL or line break in a quoted string"));
                    }
                    let buf = owned.get_or_insert_with(|| self.buf[start..self.pos].to_vec());
                    buf.push(escaped);
                    self.pos += 2;
                }
                Some(b'\0') => return Err(self.error("NUL in a quoted string")),
                Some(b'\r' | b'\n') | None => return Err(self.error("unterminated quoted string")),
                Some(b) => {
                    if let Some(buf) = owned.as_mut() {
                        buf.push(b);
                    }
                    self.pos += 1;
                }
            }
        }
    }

    /// `{n}` (or `{n+}`) CRLF and the n bytes that follow.
    fn literal(&mut self) -> Result<&'a [u8], WireError> {
        self.expect(b'{')?;
        let n = self.number()?;
        self.eat(b"+");
        self.expect(b'}')?;
        if !self.eat(b"\r\n") && !self.eat(b"\n") {
            return Err(self.error("a literal's length must end its line"));
        }
        let n = usize::try_from(n).map_err(|_| self.error("literal too large"))?;
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| self.error("literal runs past the response"))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    /// A parenthesised list of atoms, such as FLAGS or LIST attributes.
    pub fn atom_list(&mut self) -> Result<Vec<String>, WireError> {
        self.expect(b'(')?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                Some(b')') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b' ') if !out.is_empty() => self.pos += 1,
                _ => out.push(String::from_utf8_lossy(self.atom()?).into_owned()),
            }
        }
    }

    /// Skips one value of any shape (an unknown FETCH item's, an extension's), and returns
    /// its bytes as sent. Lists may nest at most [`MAX_DEPTH`] levels.
    pub fn value(&mut self) -> Result<&'a [u8], WireError> {
        let start = self.pos;
        let mut depth = 0u32;
        loop {
            match self.peek() {
                Some(b'(') => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(self.error("lists nest too deep"));
                    }
                    self.pos += 1;
                    continue;
                }
                Some(b')') if depth > 0 => {
                    depth -= 1;
                    self.pos += 1;
                }
                Some(b' ') if depth > 0 => {
                    self.pos += 1;
                    continue;
                }
                Some(b'"' | b'{') => {
                    self.string()?;
                }
                Some(b'~') if self.buf.get(self.pos + 1) == Some(&b'{') => {
                    self.string()?;
                }
                _ => {
                    // An atom, possibly with a section and a partial (`BODY[1]<0>`).
                    let begin = self.pos;
                    while self
                        .peek()
                        .is_some_and(|b| !ends_atom(b) || matches!(b, b'[' | b']' | b'<' | b'>'))
                    {
                        self.pos += 1;
                    }
                    if self.pos == begin {
                        return Err(self.error("expected a value"));
                    }
                }
            }
            if depth == 0 {
                return Ok(&self.buf[start..self.pos]);
            }
        }
    }

    /// The text up to the next `]` (a section spec or a response code's data).
    pub fn until_bracket(&mut self) -> Result<&'a [u8], WireError> {
        let start = self.pos;
        while let Some(b) = self.peek() {
            match b {
                b']' => return Ok(&self.buf[start..self.pos]),
                b'\r' | b'\n' => break,
                _ => self.pos += 1,
            }
        }
        Err(self.error("unterminated [...]"))
    }
}

/// `value` (a value as sent, such as a BODYSTRUCTURE) with every string that is not UTF-8
/// sent again as a literal of its lossy UTF-8 text (each bad sequence U+FFFD), for a parser
/// that takes strings as UTF-8 text. Borrowed when every string already is UTF-8.
pub fn lossy_utf8_strings(value: &[u8]) -> Result<Cow<'_, [u8]>, WireError> {
    if std::str::from_utf8(value).is_ok() {
        return Ok(Cow::Borrowed(value));
    }
    let mut c = Cursor::new(value);
    let mut out = Vec::with_capacity(value.len() + 32);
    let mut copied = 0;
    while let Some(b) = c.peek() {
        let string = b == b'"' || b == b'{' || (b == b'~' && value.get(c.pos + 1) == Some(&b'{'));
        if !string {
            c.pos += 1;
            continue;
        }
        let start = c.pos;
        let text = c.string()?;
        if std::str::from_utf8(&text).is_err() {
            let lossy = String::from_utf8_lossy(&text);
            out.extend_from_slice(&value[copied..start]);
            out.extend_from_slice(format!("{{{}}}\r\n", lossy.len()).as_bytes());
            out.extend_from_slice(lossy.as_bytes());
            copied = c.pos;
        }
    }
    out.extend_from_slice(&value[copied..]);
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_that_are_not_utf8_become_lossy_literals() {
        let dovecot = b"((\"text\" \"plain\" (\"charset\" {4}\r\ncaf\xe9) NIL NIL \"7bit\" 4 0 NIL (\"attachment\" (\"filename\" {10}\r\nr\xe9sum\xe9.txt)) NIL NIL) \"mixed\" (\"boundary\" \"l\") NIL NIL NIL)";
        let fixed = lossy_utf8_strings(dovecot).unwrap();
        let text = std::str::from_utf8(&fixed).expect("UTF-8 now");
        assert!(text.contains("(\"charset\" {6}\r\ncaf\u{fffd})"), "{text}");
        assert!(text.contains("{14}\r\nr\u{fffd}sum\u{fffd}.txt"), "{text}");
        assert!(text.ends_with("(\"boundary\" \"l\") NIL NIL NIL)"));
        let quoted = b"(\"a\\\"\xff\")";
        assert_eq!(
            &*lossy_utf8_strings(quoted).unwrap(),
            "({5}\r\na\"\u{fffd})".as_bytes()
        );
        let fine = b"(\"caf\xc3\xa9\")";
        assert!(matches!(
            lossy_utf8_strings(fine).unwrap(),
            Cow::Borrowed(_)
        ));
        assert!(lossy_utf8_strings(b"(\"\xff").is_err());
    }

    #[test]
    fn quoted_strings_are_unescaped_and_borrowed_when_they_can_be() {
        let mut c = Cursor::new(br#""plain" "a\"b\\c""#);
        assert!(matches!(c.string().unwrap(), Cow::Borrowed(b"plain")));
        c.space().unwrap();
        assert_eq!(&*c.string().unwrap(), br#"a"b\c"#);
    }

    #[test]
    fn nul_and_line_breaks_in_quoted_strings_are_errors() {
        for bad in [&b"\"a\0b\""[..], b"\"a\r\nb\"", b"\"open", b"\"a\\\0\""] {
            assert!(Cursor::new(bad).string().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn literals_are_taken_in_place_and_checked_against_the_buffer() {
        let mut c = Cursor::new(b"{5}\r\nhello ~{3}\r\na\0b {9}\r\nshort");
        assert_eq!(&*c.string().unwrap(), b"hello");
        c.space().unwrap();
        assert_eq!(&*c.string().unwrap(), b"a\0b");
        c.space().unwrap();
        assert!(c.string().is_err());
    }

    #[test]
    fn numbers_refuse_overflow_and_missing_digits() {
        assert_eq!(
            Cursor::new(b"18446744073709551615").number().unwrap(),
            u64::MAX
        );
        assert!(Cursor::new(b"18446744073709551616").number().is_err());
        assert!(Cursor::new(b"99999999999999999999999").number().is_err());
        assert!(Cursor::new(b"4294967296").number32().is_err());
        assert!(Cursor::new(b"x").number().is_err());
    }

    #[test]
    fn values_of_any_shape_are_skipped_whole() {
        let mut c = Cursor::new(b"(\"a\" (NIL {2}\r\n()) x[1]<0>) rest");
        assert_eq!(c.value().unwrap(), b"(\"a\" (NIL {2}\r\n()) x[1]<0>)");
        let deep = format!("{}x{}", "(".repeat(300), ")".repeat(300));
        assert!(Cursor::new(deep.as_bytes()).value().is_err());
        assert!(Cursor::new(b"(unclosed").value().is_err());
    }

    #[test]
    fn nil_is_only_a_whole_atom() {
        assert_eq!(Cursor::new(b"NIL)").nstring().unwrap(), None);
        assert!(Cursor::new(b"NILS").nstring().is_err());
    }
}
