//! The data items of a FETCH response
//! ([RFC 3501 §7.4.2](https://www.rfc-editor.org/rfc/rfc3501#section-7.4.2)): UID, FLAGS,
//! RFC822.SIZE, INTERNALDATE, MODSEQ (RFC 7162), BODYSTRUCTURE (kept as sent), `BODY[s]<o>`,
//! and BINARY's `BINARY[s]<o>` and `BINARY.SIZE[s]`
//! ([RFC 3516 §4.3](https://www.rfc-editor.org/rfc/rfc3516#section-4.3)). Unknown items are
//! skipped whatever their value's shape; a known item with a malformed value is an error.

use std::time::SystemTime;

use super::cursor::Cursor;
use super::datetime::parse_date_time;
use super::WireError;

/// Which kind of section data an item holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SectionKind {
    /// `BODY[section]`: the bytes as stored.
    Body,
    /// `BINARY[section]`: the bytes with their Content-Transfer-Encoding undone.
    Binary,
}

/// One `BODY[...]` or `BINARY[...]` item of a FETCH response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionData {
    pub kind: SectionKind,
    /// The section spec as sent, upper-cased (`1.2`, `HEADER.FIELDS (SUBJECT)`, empty).
    pub section: String,
    /// The origin octet of a partial fetch (`<o>`).
    pub origin: Option<u64>,
    /// The bytes; `None` when the server answered NIL.
    pub data: Option<Vec<u8>>,
}

/// One FETCH response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fetch {
    /// The message sequence number (never leaves the IMAP module).
    pub seq: u32,
    pub uid: Option<u32>,
    pub flags: Option<Vec<String>>,
    pub size: Option<u64>,
    /// `None` also when the server sent a date that does not parse.
    pub internal_date: Option<SystemTime>,
    /// The message's MODSEQ (sent with every FETCH once CONDSTORE is enabled).
    pub modseq: Option<u64>,
    /// The BODYSTRUCTURE value exactly as sent, for `convert::structure`.
    pub bodystructure: Option<Vec<u8>>,
    pub sections: Vec<SectionData>,
    /// `BINARY.SIZE[section]` answers: (section, decoded size).
    pub binary_sizes: Vec<(String, u64)>,
}

impl Fetch {
    /// The data of the `kind[section]<origin>` item, if the server sent one (even NIL).
    pub fn section(
        &self,
        kind: SectionKind,
        section: &str,
        origin: Option<u64>,
    ) -> Option<&SectionData> {
        self.sections.iter().find(|s| {
            s.kind == kind && s.origin == origin && s.section.eq_ignore_ascii_case(section)
        })
    }

    /// The `BINARY.SIZE[section]` answer.
    pub fn binary_size(&self, section: &str) -> Option<u64> {
        self.binary_sizes
            .iter()
            .find(|(s, _)| s.eq_ignore_ascii_case(section))
            .map(|(_, n)| *n)
    }
}

/// Parses `(item value ...)` after `* n FETCH `.
pub fn parse_fetch(c: &mut Cursor<'_>, seq: u32) -> Result<Fetch, WireError> {
    let mut fetch = Fetch {
        seq,
        ..Fetch::default()
    };
    c.expect(b'(')?;
    let mut first = true;
    loop {
        if c.peek() == Some(b')') {
            c.expect(b')')?;
            return Ok(fetch);
        }
        if !first {
            c.space()?;
        }
        first = false;
        item(c, &mut fetch)?;
    }
}

fn item(c: &mut Cursor<'_>, fetch: &mut Fetch) -> Result<(), WireError> {
    let name = c.keyword()?;
    let section = if c.peek() == Some(b'[') {
        c.expect(b'[')?;
        let spec = String::from_utf8_lossy(c.until_bracket()?).to_ascii_uppercase();
        c.expect(b']')?;
        Some(spec)
    } else {
        None
    };
    let origin = if c.eat(b"<") {
        let n = c.number()?;
        c.expect(b'>')?;
        Some(n)
    } else {
        None
    };
    c.space()?;
    match (name.as_str(), section) {
        ("UID", None) => fetch.uid = Some(c.number32()?),
        ("FLAGS", None) => fetch.flags = Some(c.atom_list()?),
        ("RFC822.SIZE", None) => fetch.size = Some(c.number()?),
        ("INTERNALDATE", None) => {
            let text = c.string()?;
            fetch.internal_date = std::str::from_utf8(&text).ok().and_then(parse_date_time);
        }
        ("MODSEQ", None) => {
            c.expect(b'(')?;
            fetch.modseq = Some(c.number()?);
            c.expect(b')')?;
        }
        ("BODYSTRUCTURE", None) => fetch.bodystructure = Some(c.value()?.to_vec()),
        ("BODY" | "BINARY", Some(section)) => {
            let kind = if name == "BODY" {
                SectionKind::Body
            } else {
                SectionKind::Binary
            };
            let data = c.nstring()?.map(|d| d.into_owned());
            fetch.sections.push(SectionData {
                kind,
                section,
                origin,
                data,
            });
        }
        ("BINARY.SIZE", Some(section)) => {
            let n = c.number()?;
            fetch.binary_sizes.push((section, n));
        }
        // ENVELOPE, BODY (the non-extensible structure), RFC822*, X-GM-*, PREVIEW...
        _ => {
            c.value()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::imap::wire::response::{parse_response, Response, Untagged};
    use std::time::{Duration, UNIX_EPOCH};

    fn fetch(line: &[u8]) -> Fetch {
        match parse_response(line) {
            Ok(Response::Untagged(Untagged::Fetch(f))) => *f,
            other => panic!("not a FETCH: {other:?}"),
        }
    }

    #[test]
    fn a_listing_line_from_dovecot() {
        let f = fetch(b"* 2 FETCH (UID 2 FLAGS (\\Recent) RFC822.SIZE 487 INTERNALDATE \"04-Dec-2026 14:17:41 +0000\" MODSEQ (12) BODY[HEADER.FIELDS (SUBJECT)] {63}\r\nSubject: Quoted-printable: =?UTF-8?Q?Caf=C3=A9_cr=C3=A8me?=\r\n\r\n)\r\n");
        assert_eq!(f.seq, 2);
        assert_eq!(f.uid, Some(2));
        assert_eq!(f.flags.as_deref(), Some(&["\\Recent".to_string()][..]));
        assert_eq!(f.size, Some(487));
        assert_eq!(f.modseq, Some(12));
        assert_eq!(
            f.internal_date,
            Some(UNIX_EPOCH + Duration::from_secs(1_796_393_861))
        );
        let header = f
            .section(SectionKind::Body, "HEADER.FIELDS (SUBJECT)", None)
            .unwrap();
        assert_eq!(header.data.as_ref().unwrap().len(), 63);
    }

    #[test]
    fn binary_items_from_dovecot() {
        let f = fetch(b"* 1 FETCH (UID 1 BINARY[1] ~{14}\r\nbefore\x00after\r\n BODY[1] {14}\r\nbefore\x80after\r\n)\r\n");
        assert_eq!(
            f.section(SectionKind::Binary, "1", None)
                .unwrap()
                .data
                .as_deref(),
            Some(&b"before\x00after\r\n"[..])
        );
        assert_eq!(
            f.section(SectionKind::Body, "1", None)
                .unwrap()
                .data
                .as_deref(),
            Some(&b"before\x80after\r\n"[..])
        );
        let f = fetch(b"* 1 FETCH (UID 1 RFC822.SIZE 57 BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 14 1 NIL NIL NIL NIL) BINARY.SIZE[] 57 BINARY.SIZE[1] 14)\r\n");
        assert_eq!(f.binary_size(""), Some(57));
        assert_eq!(f.binary_size("1"), Some(14));
        assert_eq!(
            f.bodystructure.as_deref(),
            Some(&b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 14 1 NIL NIL NIL NIL)"[..])
        );
        let f =
            fetch(b"* 1 FETCH (UID 1 BODY[1]<100> {0}\r\n BINARY[2]<4> \"ab\" BINARY[3] NIL)\r\n");
        assert_eq!(
            f.section(SectionKind::Body, "1", Some(100))
                .unwrap()
                .data
                .as_deref(),
            Some(&b""[..])
        );
        assert_eq!(
            f.section(SectionKind::Binary, "2", Some(4))
                .unwrap()
                .data
                .as_deref(),
            Some(&b"ab"[..])
        );
        assert_eq!(
            f.section(SectionKind::Binary, "3", None).unwrap().data,
            None
        );
        assert!(f.section(SectionKind::Body, "1", None).is_none());
    }

    #[test]
    fn unknown_items_are_skipped_whatever_their_shape() {
        let f = fetch(b"* 4 FETCH (X-GM-MSGID 123 PREVIEW {3}\r\nabc ENVELOPE (NIL \"s\" ((NIL NIL \"a\" \"b\")) NIL NIL NIL NIL NIL NIL NIL) X-THING[1]<2> (a (b)) UID 9)\r\n");
        assert_eq!(f.uid, Some(9));
        assert_eq!(fetch(b"* 1 FETCH (UID 1)\r\n").uid, Some(1));
        assert_eq!(fetch(b"* 1 FETCH ()\r\n").uid, None);
    }

    #[test]
    fn malformed_known_items_are_errors() {
        for bad in [
            &b"* 1 FETCH (UID 1 RFC822.SIZE banana)\r\n"[..],
            b"* 1 FETCH (UID -1)\r\n",
            b"* 1 FETCH (UID 1 FLAGS \\Seen)\r\n",
            b"* 1 FETCH (UID 1 BODY[1] {5}\r\nab)\r\n",
            b"* 1 FETCH (UID 1 BINARY[1] \"a\0b\")\r\n",
            b"* 1 FETCH (UID 1 BINARY.SIZE[1] NIL)\r\n",
            b"* 1 FETCH (UID 1 BODYSTRUCTURE (\"text\" \"plain\" (\"charset\")\r\n",
            b"* 1 FETCH (UID 1 MODSEQ 5)\r\n",
            b"* 1 FETCH (UID 1\r\n",
            b"* 1 FETCH (UID 1) trailing\r\n",
            b"* 1 FETCH UID 1\r\n",
        ] {
            assert!(
                parse_response(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_bad_internaldate_is_left_out_not_fatal() {
        let f = fetch(b"* 1 FETCH (UID 1 INTERNALDATE \"yesterday\")\r\n");
        assert_eq!((f.uid, f.internal_date), (Some(1), None));
    }
}
