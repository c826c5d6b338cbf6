//! A guard on the bytes a server sends: it tracks parenthesis nesting outside quoted strings
//! and literals, and stops a response that nests deeper than any real one does.
//!
//! imap-proto parses nested lists recursively, so a hostile server nesting a BODYSTRUCTURE a
//! hundred thousand levels deep would overflow the stack and kill the whole mount. This guard
//! sees the value's bytes before that parser does (`convert::structure`); imapfs's own reader
//! (`wire`) never recurses.

use std::io;

/// Deeper than any real BODYSTRUCTURE (a few levels per MIME level). imap-proto's recursive
/// parser gets a larger stack for values past a few dozen levels (`convert::structure`).
pub const MAX_DEPTH: u32 = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    Quoted {
        escaped: bool,
    },
    /// After `{`: the literal's length so far.
    Brace(u64),
    /// After `}`: expecting CRLF, then the literal.
    BraceEnd(u64),
    Literal(u64),
}

/// Scans a response stream (`syntax` of [RFC 3501 §4](https://www.rfc-editor.org/rfc/rfc3501#section-4):
/// quoted strings, `{n}` literals, parenthesised lists) for its nesting depth.
#[derive(Debug, Clone)]
pub struct NestingGuard {
    mode: Mode,
    depth: u32,
    /// The deepest nesting seen so far.
    deepest: u32,
}

impl Default for NestingGuard {
    fn default() -> Self {
        NestingGuard {
            mode: Mode::Normal,
            depth: 0,
            deepest: 0,
        }
    }
}

impl NestingGuard {
    /// Feeds received bytes; an error once nesting passes `MAX_DEPTH`.
    pub fn feed(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            self.mode = match self.mode {
                Mode::Literal(left) => {
                    // Skip the literal's content in one step.
                    let take = (left as usize).min(bytes.len() - i) as u64;
                    i += take as usize;
                    let left = left - take;
                    self.mode = if left == 0 {
                        Mode::Normal
                    } else {
                        Mode::Literal(left)
                    };
                    continue;
                }
                Mode::Quoted { escaped: true } => Mode::Quoted { escaped: false },
                Mode::Quoted { escaped: false } => match b {
                    b'\\' => Mode::Quoted { escaped: true },
                    b'"' => Mode::Normal,
                    b'\n' => {
                        self.depth = 0;
                        Mode::Normal
                    }
                    _ => Mode::Quoted { escaped: false },
                },
                Mode::Brace(n) => match b {
                    b'0'..=b'9' => {
                        Mode::Brace(n.saturating_mul(10).saturating_add(u64::from(b - b'0')))
                    }
                    b'+' => Mode::Brace(n),
                    b'}' => Mode::BraceEnd(n),
                    _ => self.normal(b)?,
                },
                Mode::BraceEnd(n) => match b {
                    b'\r' => Mode::BraceEnd(n),
                    b'\n' if n == 0 => Mode::Normal,
                    b'\n' => Mode::Literal(n),
                    _ => self.normal(b)?,
                },
                Mode::Normal => self.normal(b)?,
            };
            i += 1;
        }
        Ok(())
    }

    /// The deepest nesting fed so far.
    pub fn deepest(&self) -> u32 {
        self.deepest
    }

    fn normal(&mut self, b: u8) -> io::Result<Mode> {
        Ok(match b {
            b'"' => Mode::Quoted { escaped: false },
            b'{' => Mode::Brace(0),
            b'(' => {
                self.depth += 1;
                self.deepest = self.deepest.max(self.depth);
                if self.depth > MAX_DEPTH {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("the server's response nests deeper than {MAX_DEPTH} levels"),
                    ));
                }
                Mode::Normal
            }
            b')' => {
                self.depth = self.depth.saturating_sub(1);
                Mode::Normal
            }
            // A line that does not announce a literal ends the response.
            b'\n' => {
                self.depth = 0;
                Mode::Normal
            }
            _ => Mode::Normal,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_error(input: &[u8]) -> bool {
        NestingGuard::default().feed(input).is_err()
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut evil = b"* 1 FETCH (UID 1 BODYSTRUCTURE ".to_vec();
        evil.extend(std::iter::repeat_n(b'(', 100_000));
        assert!(depth_error(&evil));
    }

    #[test]
    fn real_responses_pass_in_any_chunking() {
        let line: &[u8] = b"* 1 FETCH (UID 5 BODYSTRUCTURE (((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 12 1 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"b\") NIL NIL NIL) \"mixed\" (\"boundary\" \"a\") NIL NIL NIL))\r\n";
        let mut stream = Vec::new();
        for _ in 0..(MAX_DEPTH as usize) {
            stream.extend_from_slice(line);
        }
        for chunk in [1, 7, 64, 4096] {
            let mut guard = NestingGuard::default();
            for part in stream.chunks(chunk) {
                guard.feed(part).unwrap();
            }
            assert_eq!(guard.depth, 0);
        }
    }

    #[test]
    fn parentheses_inside_literals_and_quotes_do_not_count() {
        let mut input = b"* 1 FETCH (BODY[] {300}\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'(', 300));
        input.extend_from_slice(b" SUBJECT \"((((\\\"((\")\r\n");
        let mut guard = NestingGuard::default();
        guard.feed(&input).unwrap();
        assert_eq!(guard.depth, 0);
        assert_eq!(guard.mode, Mode::Normal);
    }

    #[test]
    fn literal_split_across_reads_is_skipped() {
        let mut guard = NestingGuard::default();
        guard.feed(b"* 1 FETCH (BODY[] {10}\r").unwrap();
        guard.feed(b"\n((((").unwrap();
        guard.feed(b"(((((").unwrap();
        guard.feed(b")\r\n").unwrap();
        assert_eq!(guard.depth, 0);
    }
}
