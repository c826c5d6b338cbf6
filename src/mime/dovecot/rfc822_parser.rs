//! Dovecot 2.3's RFC 822 and RFC 2231 value parsers (`rfc822-parser.c`,
//! `rfc2231-parser.c`) for the memory store: structured `Content-*` values (type, token,
//! parameters) read as Dovecot reads them, errors and recovery included.
//!
//! Grammar: [RFC 2045 §5.1](https://www.rfc-editor.org/rfc/rfc2045#section-5.1); parameter
//! continuations: [RFC 2231 §3–4](https://www.rfc-editor.org/rfc/rfc2231#section-3), merged
//! as Dovecot does (`name*0*` + `name*1*` become one `name*` whose value stays encoded).

/// What a step of the lexer left behind: more input, the end of it, or an error
/// (an unterminated comment or quoted string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lw {
    More,
    End,
    Error,
}

/// A MIME token byte: RFC 5322 atext minus the MIME tspecials `/ = ?`, plus `.` and any
/// 8-bit byte (Dovecot's `IS_ATEXT_NON_TSPECIAL`).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || b >= 0x80
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'^'
                | b'_'
                | b'`'
                | b'{'
                | b'|'
                | b'}'
                | b'~'
                | b'.'
        )
}

/// U+FFFD, which Dovecot puts where a header value has a NUL byte.
pub(crate) const NUL_REPLACEMENT: &[u8] = "\u{fffd}".as_bytes();

/// A cursor over one header value (folds still in it).
pub(crate) struct Lexer<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Lexer { data, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    fn status(&self) -> Lw {
        if self.pos < self.data.len() {
            Lw::More
        } else {
            Lw::End
        }
    }

    /// Skip a (nested) comment starting at `(`.
    fn skip_comment(&mut self) -> Lw {
        let mut level = 1u32;
        self.pos += 1;
        while let Some(b) = self.peek() {
            match b {
                b'(' => level += 1,
                b')' => {
                    level -= 1;
                    if level == 0 {
                        self.pos += 1;
                        return self.status();
                    }
                }
                b'\\' => match self.data.get(self.pos + 1) {
                    None => return Lw::Error,
                    Some(b'\r' | b'\n' | 0) => {}
                    Some(_) => self.pos += 1,
                },
                _ => {}
            }
            self.pos += 1;
        }
        Lw::Error
    }

    /// Skip whitespace, line breaks and comments.
    fn skip_lwsp(&mut self) -> Lw {
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'(' => {
                    if self.skip_comment() == Lw::Error {
                        return Lw::Error;
                    }
                }
                _ => break,
            }
        }
        self.status()
    }

    /// Append a (possibly empty) token to `out`, then skip whitespace; `End` when the token
    /// ran to the end of the value.
    fn mime_token(&mut self, out: &mut Vec<u8>) -> Lw {
        let start = self.pos;
        while self.peek().is_some_and(is_token_byte) {
            self.pos += 1;
        }
        out.extend_from_slice(&self.data[start..self.pos]);
        if self.pos >= self.data.len() {
            return Lw::End;
        }
        self.skip_lwsp()
    }

    /// Append the contents of a quoted string at `"`: escapes undone, folds removed, NUL
    /// replaced. `Error` when the closing quote is missing.
    fn quoted_string(&mut self, out: &mut Vec<u8>) -> Lw {
        self.pos += 1;
        while let Some(b) = self.peek() {
            match b {
                b'"' => {
                    self.pos += 1;
                    return self.skip_lwsp();
                }
                b'\n' => {
                    if out.last() == Some(&b'\r') {
                        out.pop();
                    }
                }
                0 => out.extend_from_slice(NUL_REPLACEMENT),
                b'\\' => match self.data.get(self.pos + 1) {
                    None => return Lw::Error,
                    // An escaped line break is no escape: the backslash stays.
                    Some(b'\r' | b'\n' | 0) => out.push(b'\\'),
                    Some(&escaped) => {
                        out.push(escaped);
                        self.pos += 1;
                    }
                },
                _ => out.push(b),
            }
            self.pos += 1;
        }
        Lw::Error
    }

    /// `type "/" subtype` as Dovecot's `rfc822_parse_content_type` reads it: the text read
    /// (`type/subtype`, a lone `type` that ran to the end, or empty when unreadable) and
    /// whether parameters may follow.
    pub(crate) fn content_type(&mut self) -> (Vec<u8>, bool) {
        let mut text = Vec::new();
        if self.skip_lwsp() != Lw::More {
            return (text, false);
        }
        if self.mime_token(&mut text) != Lw::More || text.is_empty() {
            return (text, false);
        }
        if self.peek() != Some(b'/') {
            return (Vec::new(), false);
        }
        self.pos += 1;
        if self.skip_lwsp() != Lw::More {
            return (Vec::new(), false);
        }
        text.push(b'/');
        let subtype_start = text.len();
        let status = self.mime_token(&mut text);
        let junk_after = self.peek().is_some_and(|b| b != b';');
        if status == Lw::Error || text.len() == subtype_start || junk_after {
            return (Vec::new(), false);
        }
        (text, true)
    }

    /// A lone token such as a disposition type (possibly empty); `None` on a broken comment.
    pub(crate) fn leading_token(&mut self) -> Option<Vec<u8>> {
        self.skip_lwsp();
        let mut token = Vec::new();
        (self.mime_token(&mut token) != Lw::Error).then_some(token)
    }

    /// A Content-Transfer-Encoding: one non-empty token and nothing after it.
    pub(crate) fn sole_token(&mut self) -> Option<Vec<u8>> {
        self.skip_lwsp();
        let mut token = Vec::new();
        let status = self.mime_token(&mut token);
        (status != Lw::Error && self.skip_lwsp() == Lw::End && !token.is_empty()).then_some(token)
    }

    /// One `; name=value`, Dovecot's `rfc822_parse_content_param`.
    fn param(&mut self) -> Param {
        if self.pos >= self.data.len() {
            return Param::Done;
        }
        if self.peek() != Some(b';') {
            return Param::Error;
        }
        self.pos += 1;
        if self.skip_lwsp() != Lw::More {
            return Param::Error;
        }
        let mut name = Vec::new();
        if self.mime_token(&mut name) != Lw::More || self.peek() != Some(b'=') {
            return Param::Error;
        }
        self.pos += 1;
        let mut value = Vec::new();
        let status = match self.skip_lwsp() {
            Lw::More => match self.peek() {
                Some(b'"') => self.quoted_string(&mut value),
                // Dovecot's workaround for unquoted encoded words: `name==?utf-8?b?...?=`.
                Some(b'=') => {
                    while let Some(b) = self
                        .peek()
                        .filter(|b| !matches!(b, b';' | b' ' | b'\t' | b'\r' | b'\n'))
                    {
                        value.push(b);
                        self.pos += 1;
                    }
                    Lw::More
                }
                _ => self.mime_token(&mut value),
            },
            other => other,
        };
        if status == Lw::Error {
            Param::Error
        } else {
            Param::Pair(name, value)
        }
    }

    /// All parameters from here on, RFC 2231 pieces merged as Dovecot's `rfc2231_parse`
    /// does. A broken parameter is skipped one byte at a time until the next one parses.
    pub(crate) fn params(&mut self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut plain = Vec::new();
        let mut pieces: Vec<Piece> = Vec::new();
        // Dovecot keeps the index of the previous piece for a bare `name*`; so do we.
        let mut index = 0u32;
        loop {
            match self.param() {
                Param::Done => break,
                Param::Error => {
                    if self.pos >= self.data.len() {
                        break;
                    }
                    self.pos += 1;
                }
                Param::Pair(name, value) => match split_piece(&name, &mut index) {
                    Some((base, extended)) => pieces.push(Piece {
                        name: base.to_vec(),
                        value,
                        index,
                        extended,
                    }),
                    None => plain.push((name, value)),
                },
            }
        }
        plain.extend(merge_pieces(pieces));
        plain
    }
}

enum Param {
    Done,
    Error,
    Pair(Vec<u8>, Vec<u8>),
}

/// One `name*n` / `name*n*` / `name*` parameter.
struct Piece {
    name: Vec<u8>,
    value: Vec<u8>,
    index: u32,
    extended: bool,
}

/// If `name` is an RFC 2231 piece, its base name and whether it is extended (`*` suffix);
/// `index` is updated when the name carries one.
fn split_piece<'n>(name: &'n [u8], index: &mut u32) -> Option<(&'n [u8], bool)> {
    let star = name.iter().position(|&b| b == b'*')?;
    let mut p = star;
    if p + 1 < name.len() {
        p += 1;
        *index = 0;
        while let Some(digit) = name.get(p).filter(|b| b.is_ascii_digit()) {
            *index = index.wrapping_mul(10).wrapping_add(u32::from(digit - b'0'));
            p += 1;
        }
    }
    let extended = name.get(p) == Some(&b'*');
    if extended {
        p += 1;
    }
    (p == name.len()).then_some((&name[..star], extended))
}

/// Join pieces with a complete `0..n` index run into one parameter (`name*` when any piece
/// is extended, the value still percent-encoded); otherwise keep them apart as `name*n[*]`.
fn merge_pieces(mut pieces: Vec<Piece>) -> Vec<(Vec<u8>, Vec<u8>)> {
    pieces.sort_by(|a, b| a.name.cmp(&b.name).then(a.index.cmp(&b.index)));
    let mut merged = Vec::new();
    let mut rest = pieces.as_slice();
    while let Some(first) = rest.first() {
        let len = rest
            .iter()
            .take_while(|p| p.name.eq_ignore_ascii_case(&first.name))
            .count();
        let (group, tail) = rest.split_at(len);
        rest = tail;
        let complete = group
            .iter()
            .zip(0u32..)
            .all(|(piece, expected)| piece.index == expected);
        if !complete {
            for piece in group {
                let mut name = piece.name.clone();
                name.extend_from_slice(format!("*{}", piece.index).as_bytes());
                if piece.extended {
                    name.push(b'*');
                }
                merged.push((name, piece.value.clone()));
            }
            continue;
        }
        let any_extended = group.iter().any(|p| p.extended);
        let mut value = Vec::new();
        if any_extended && !first.extended {
            value.extend_from_slice(b"''");
        }
        for piece in group {
            if any_extended && !piece.extended {
                for &b in &piece.value {
                    if b == b'%' {
                        value.extend_from_slice(b"%25");
                    } else {
                        value.push(b);
                    }
                }
            } else {
                value.extend_from_slice(&piece.value);
            }
        }
        let mut name = first.name.clone();
        if any_extended {
            name.push(b'*');
        }
        merged.push((name, value));
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content_type(value: &str) -> (String, bool, Vec<(String, String)>) {
        let mut lexer = Lexer::new(value.as_bytes());
        let (text, ok) = lexer.content_type();
        let params = if ok { lexer.params() } else { Vec::new() };
        let params = params
            .into_iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(&n).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect();
        (String::from_utf8_lossy(&text).into_owned(), ok, params)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn types_as_dovecot_reads_them() {
        assert_eq!(
            content_type(" text/plain"),
            ("text/plain".into(), true, vec![])
        );
        assert_eq!(content_type("(c) text (x) / (y) html (z)").0, "text/html");
        // A lone type is kept only when it runs to the end.
        assert_eq!(content_type("text").0, "text");
        assert_eq!(content_type("text;a=b").0, "");
        assert_eq!(content_type("foo/").0, "");
        assert_eq!(content_type("/bar").0, "");
        assert_eq!(content_type("").0, "");
        assert_eq!(
            content_type("text/plain junk; a=1"),
            ("".into(), false, vec![])
        );
    }

    #[test]
    fn params_with_quotes_comments_and_broken_ones() {
        let (_, ok, params) =
            content_type("text/plain; ; a=1;; b=2 ; c = \"3\" (comment); d=4 junk; e=5");
        assert!(ok);
        // Dovecot's one-byte-at-a-time recovery loses a and b here.
        assert_eq!(params, pairs(&[("c", "3"), ("d", "4"), ("e", "5")]));
        let (_, _, params) = content_type("x/y; name=a/b.txt; q=\"a \\\"b\\\"\"; e=");
        assert_eq!(params, pairs(&[("name", "a"), ("q", "a \"b\""), ("e", "")]));
        let (_, _, params) = content_type("x/y; a=1; name=\"unterminated");
        assert_eq!(params, pairs(&[("a", "1")]));
        let (_, _, params) = content_type("x/y; name==?utf-8?q?r=C3=A9?=; x=1");
        assert_eq!(
            params,
            pairs(&[("name", "=?utf-8?q?r=C3=A9?="), ("x", "1")])
        );
        let (_, _, params) = content_type("x/y; Boundary=\"a\r\n b\"");
        assert_eq!(params, pairs(&[("Boundary", "a b")]));
    }

    #[test]
    fn rfc2231_pieces_merge_like_dovecot() {
        let (_, _, params) = content_type(concat!(
            "a/b; name*0=\"a\"; name*1=\"b%\"; title*=us-ascii'en'x%20y;",
            " f*1*=b; f*0*=utf-8''a; g*0=x; g*2=z",
        ));
        assert_eq!(
            params,
            pairs(&[
                ("f*", "utf-8''ab"),
                ("g*0", "x"),
                ("g*2", "z"),
                ("name", "ab%"),
                // A bare `title*` takes the previous piece's index (1), as in Dovecot.
                ("title*1*", "us-ascii'en'x%20y"),
            ])
        );
        let (_, _, params) =
            content_type("a/b; name*0*=utf-8''a%20; name*1=b%c; X*Y=1; z*=q; w*0=p");
        assert_eq!(
            params,
            pairs(&[
                ("X*Y", "1"),
                ("name*", "utf-8''a%20b%25c"),
                ("w", "p"),
                ("z*", "q"),
            ])
        );
        let (_, _, params) = content_type("a/b; n*0=x; n*1*=y");
        assert_eq!(params, pairs(&[("n*", "''xy")]));
    }

    #[test]
    fn tokens_for_disposition_and_encoding() {
        assert_eq!(
            Lexer::new(b" attachment; x=1").leading_token(),
            Some(b"attachment".to_vec())
        );
        assert_eq!(Lexer::new(b";filename=x").leading_token(), Some(Vec::new()));
        // An unterminated comment before the token is skipped to the end, after it fails.
        assert_eq!(Lexer::new(b"(open").leading_token(), Some(Vec::new()));
        assert_eq!(Lexer::new(b"attachment (open").leading_token(), None);
        assert_eq!(
            Lexer::new(b" base64 ").sole_token(),
            Some(b"base64".to_vec())
        );
        assert_eq!(Lexer::new(b"base64 junk").sole_token(), None);
        assert_eq!(Lexer::new(b"").sole_token(), None);
    }

    #[test]
    fn nul_and_comment_escapes() {
        let (_, _, params) = content_type("a/b; n=\"x\0y\"; m=(c\\)) 1");
        assert_eq!(params, pairs(&[("n", "x\u{fffd}y"), ("m", "1")]));
    }
}
