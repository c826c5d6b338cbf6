//! A `SearchKey` as `UID SEARCH` arguments
//! ([RFC 3501 §6.4.4](https://www.rfc-editor.org/rfc/rfc3501#section-6.4.4)): every value
//! through the one quoting function (`quote::string`), non-ASCII values as literals under
//! `CHARSET UTF-8`, raw `imap:` keys checked again before they are put in parentheses.

use super::quote::{self, Arg};
use crate::search::{self, Address, SearchDate, SearchKey};
use crate::store::{StoreError, StoreResult};

/// One part of the search program: syntax built here, or a checked string.
pub enum Piece {
    Syntax(String),
    Arg(Arg),
}

/// The arguments of `UID SEARCH` after any `RETURN` and `CHARSET`.
pub struct Rendered {
    /// Whether a value is not ASCII (`CHARSET UTF-8` goes first).
    pub utf8: bool,
    pub pieces: Vec<Piece>,
}

/// What the server offers that a key may need.
pub struct Offered {
    /// Gmail's `X-GM-EXT-1` (`X-GM-RAW`).
    pub gmail: bool,
}

/// Renders `key` for a server offering `offered`.
pub fn render(key: &SearchKey, offered: &Offered) -> StoreResult<Rendered> {
    let mut pieces = Vec::new();
    match key {
        // The top level is a list of keys already: no parentheses.
        SearchKey::And(keys) => {
            for k in keys {
                put(k, offered, &mut pieces)?;
            }
        }
        _ => put(key, offered, &mut pieces)?,
    }
    Ok(Rendered {
        utf8: key.needs_utf8(),
        pieces,
    })
}

fn syntax(pieces: &mut Vec<Piece>, text: impl Into<String>) {
    pieces.push(Piece::Syntax(text.into()));
}

fn string(pieces: &mut Vec<Piece>, value: &str, what: &str) -> StoreResult<()> {
    if value.is_empty() {
        // `quote::string` refuses empty values; an empty one is harmless syntax.
        syntax(pieces, "\"\"");
    } else {
        pieces.push(Piece::Arg(quote::string(value, what)?));
    }
    Ok(())
}

/// `d-Mon-yyyy` ([RFC 3501 §9](https://www.rfc-editor.org/rfc/rfc3501#section-9), `date`).
pub fn imap_date(date: SearchDate) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS[(date.month.clamp(1, 12) - 1) as usize];
    format!("{}-{month}-{:04}", date.day, date.year)
}

fn put(key: &SearchKey, offered: &Offered, pieces: &mut Vec<Piece>) -> StoreResult<()> {
    match key {
        SearchKey::And(keys) => {
            syntax(pieces, "(");
            for k in keys {
                put(k, offered, pieces)?;
            }
            syntax(pieces, ")");
        }
        SearchKey::Or(a, b) => {
            syntax(pieces, "OR");
            put(a, offered, pieces)?;
            put(b, offered, pieces)?;
        }
        SearchKey::Not(k) => {
            syntax(pieces, "NOT");
            put(k, offered, pieces)?;
        }
        SearchKey::Text(s) => {
            syntax(pieces, "TEXT");
            string(pieces, s, "search text")?;
        }
        SearchKey::Body(s) => {
            syntax(pieces, "BODY");
            string(pieces, s, "search text")?;
        }
        SearchKey::Subject(s) => {
            syntax(pieces, "SUBJECT");
            string(pieces, s, "search text")?;
        }
        SearchKey::Address(which, s) => {
            syntax(
                pieces,
                match which {
                    Address::From => "FROM",
                    Address::To => "TO",
                    Address::Cc => "CC",
                    Address::Bcc => "BCC",
                },
            );
            string(pieces, s, "search text")?;
        }
        SearchKey::Header(name, s) => {
            syntax(pieces, "HEADER");
            string(pieces, name, "header name")?;
            string(pieces, s, "search text")?;
        }
        SearchKey::Since(d) => syntax(pieces, format!("SINCE {}", imap_date(*d))),
        SearchKey::Before(d) => syntax(pieces, format!("BEFORE {}", imap_date(*d))),
        SearchKey::On(d) => syntax(pieces, format!("ON {}", imap_date(*d))),
        SearchKey::Flag(flag) => {
            let text = flag.as_str();
            let system = match text.to_ascii_lowercase().as_str() {
                "\\seen" => Some("SEEN"),
                "\\answered" => Some("ANSWERED"),
                "\\flagged" => Some("FLAGGED"),
                "\\deleted" => Some("DELETED"),
                "\\draft" => Some("DRAFT"),
                _ => None,
            };
            match system {
                Some(word) => syntax(pieces, word),
                None => {
                    // A keyword is an atom; `flag_list` checks it is one.
                    let list = quote::flag_list(std::slice::from_ref(flag))?;
                    let atom = list.trim_start_matches('(').trim_end_matches(')');
                    if atom.starts_with('\\') {
                        return Err(StoreError::Invalid(format!("{text:?} is not a keyword")));
                    }
                    syntax(pieces, format!("KEYWORD {atom}"));
                }
            }
        }
        SearchKey::Larger(n) => syntax(pieces, format!("LARGER {n}")),
        SearchKey::Smaller(n) => syntax(pieces, format!("SMALLER {n}")),
        SearchKey::Uid(range) => syntax(
            pieces,
            match range.last {
                Some(last) => format!("UID {}:{}", range.first.0, last.0),
                // Not `N:*`: `*` is the highest UID there is, so `N:*` holds it even when it
                // is below N (RFC 3501 §6.4.8), and "UIDs from N on" would list the newest
                // message to a script asking for what came after it.
                None => format!("UID {}:4294967295", range.first.0),
            },
        ),
        SearchKey::Raw(raw) => {
            search::check_raw_imap(raw)
                .map_err(|(at, why)| StoreError::Invalid(format!("imap: at {at}: {why}")))?;
            syntax(pieces, "(");
            syntax(pieces, raw.trim());
            syntax(pieces, ")");
        }
        SearchKey::Gmail(query) => {
            if !offered.gmail {
                return Err(StoreError::Invalid(
                    "gmail: needs a server with Gmail's search (X-GM-EXT-1)".into(),
                ));
            }
            syntax(pieces, "X-GM-RAW");
            string(pieces, query, "Gmail query")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::parse;
    use quote::Form;

    /// The arguments as the wire layer writes them (literals as `{n+}` and their bytes).
    fn text(query: &str, offered: &Offered) -> String {
        let today = SearchDate::new(2026, 3, 31).unwrap();
        let rendered = render(&parse(query, today).unwrap(), offered).unwrap();
        let mut out = String::new();
        let mut after_open = false;
        if rendered.utf8 {
            out.push_str("CHARSET UTF-8");
        }
        for piece in &rendered.pieces {
            let (s, open, closes) = match piece {
                Piece::Syntax(s) => (s.clone(), s.ends_with('('), s.starts_with(')')),
                Piece::Arg(a) => match a.form() {
                    Form::Quoted(q) => (q.clone(), false, false),
                    Form::Literal(l) => (
                        format!("{{{}+}}{}", l.len(), String::from_utf8_lossy(l)),
                        false,
                        false,
                    ),
                },
            };
            if !out.is_empty() && !after_open && !closes {
                out.push(' ');
            }
            out.push_str(&s);
            after_open = open;
        }
        out
    }

    const PLAIN: Offered = Offered { gmail: false };

    #[test]
    fn every_key_as_imap() {
        let cases = [
            ("invoice", r#"TEXT "invoice""#),
            ("from:alice to:bob", r#"FROM "alice" TO "bob""#),
            ("cc:c bcc:d", r#"CC "c" BCC "d""#),
            ("subject:\"a \\\"b\\\"\"", r#"SUBJECT "a \"b\"""#),
            ("body:zanzibar", r#"BODY "zanzibar""#),
            ("header:List-Id:dev", r#"HEADER "List-Id" "dev""#),
            ("header:List-Id:", r#"HEADER "List-Id" """#),
            (
                "since:2024-02-09 before:1m",
                "SINCE 9-Feb-2024 BEFORE 28-Feb-2026",
            ),
            ("on:2025-12-31", "ON 31-Dec-2025"),
            ("is:unread is:flagged", "NOT SEEN FLAGGED"),
            (
                "is:answered is:draft is:deleted is:read",
                "ANSWERED DRAFT DELETED SEEN",
            ),
            ("tag:$Work", "KEYWORD $Work"),
            ("larger:1K smaller:2M", "LARGER 1024 SMALLER 2097152"),
            ("uid:5:9 uid:7:*", "UID 5:9 UID 7:4294967295"),
            ("a OR b", r#"OR TEXT "a" TEXT "b""#),
            ("(a b) OR c", r#"OR (TEXT "a" TEXT "b") TEXT "c""#),
            ("-(a b)", r#"NOT (TEXT "a" TEXT "b")"#),
            ("imap:\"OR SEEN DRAFT\"", "(OR SEEN DRAFT)"),
            ("Grüße", "CHARSET UTF-8 TEXT {7+}Grüße"),
        ];
        for (query, want) in cases {
            assert_eq!(text(query, &PLAIN), want, "{query}");
        }
    }

    #[test]
    fn gmail_needs_the_extension() {
        let key = parse(
            "gmail:\"has:attachment\"",
            SearchDate::new(2026, 1, 1).unwrap(),
        )
        .unwrap();
        assert!(matches!(render(&key, &PLAIN), Err(StoreError::Invalid(_))));
        assert_eq!(
            text("gmail:\"has:attachment\"", &Offered { gmail: true }),
            r#"X-GM-RAW "has:attachment""#
        );
    }

    #[test]
    fn a_raw_key_built_by_hand_is_checked_again() {
        let key = SearchKey::Raw("ALL\r\nx DELETE INBOX".into());
        assert!(matches!(render(&key, &PLAIN), Err(StoreError::Invalid(_))));
    }
}
