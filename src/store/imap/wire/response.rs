//! Responses as imapfs uses them: tagged and untagged status with their response codes,
//! CAPABILITY, LIST, STATUS, FLAGS, EXISTS, EXPUNGE, VANISHED, SEARCH, ESEARCH, ENABLED and
//! FETCH ([RFC 3501 §7](https://www.rfc-editor.org/rfc/rfc3501#section-7),
//! [RFC 7162 §3.2.10](https://www.rfc-editor.org/rfc/rfc7162#section-3.2.10)). Untagged
//! responses of any other kind are recognised by their shape alone and skipped.

use super::cursor::Cursor;
use super::fetch::{parse_fetch, Fetch};
use super::WireError;

/// The status of an OK/NO/BAD/PREAUTH/BYE response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    PreAuth,
    Bye,
}

/// A response code ([RFC 3501 §7.1](https://www.rfc-editor.org/rfc/rfc3501#section-7.1),
/// [RFC 5530](https://www.rfc-editor.org/rfc/rfc5530), RFC 4315, RFC 7162, RFC 3516).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    Capability(Vec<String>),
    UidValidity(u32),
    UidNext(u32),
    HighestModSeq(u64),
    /// `APPENDUID validity uids` (RFC 4315 §3): the first UID of the set.
    AppendUid(u32, u32),
    /// `COPYUID validity source-set destination-set` (RFC 4315 §3), sets as sent.
    CopyUid(u32, String, String),
    /// `MODIFIED uid-set` (RFC 7162 §3.1.3): the messages a conditional STORE left alone,
    /// since they changed after its `UNCHANGEDSINCE`; the set as sent.
    Modified(String),
    OverQuota,
    Limit,
    TryCreate,
    NonExistent,
    AlreadyExists,
    Cannot,
    /// RFC 3516 §4.2: the server cannot decode this part's Content-Transfer-Encoding.
    UnknownCte,
    ReadOnly,
    /// RFC 3501 §7.1: text the server wants a human to read.
    Alert,
    /// RFC 5530 §3: a subsystem is down; the command may succeed later.
    Unavailable,
    /// RFC 5530 §3: the server hit an internal error. Its session may be left holding
    /// what the failed command took (Dovecot can keep a mailbox's lock file), so the
    /// connection is not used again.
    ServerBug,
    /// Any other code: its name (upper case) and its data as sent.
    Other(String, String),
}

/// A tagged completion: the answer to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    pub tag: String,
    pub status: Status,
    pub code: Option<Code>,
    pub text: String,
}

/// One mailbox of a LIST answer ([RFC 3501 §7.2.2](https://www.rfc-editor.org/rfc/rfc3501#section-7.2.2)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// Name attributes as sent (`\Noselect`, `\HasChildren`, `\Trash`...).
    pub attributes: Vec<String>,
    pub delimiter: Option<char>,
    /// The name, with quoted-string escapes undone (a literal is taken as is).
    pub name: String,
    /// The name it had before a RENAME, when the server says (`OLDNAME`, RFC 5465 §5.4).
    pub old_name: Option<String>,
}

/// A STATUS response ([RFC 3501 §7.2.4](https://www.rfc-editor.org/rfc/rfc3501#section-7.2.4)):
/// the items imapfs asks for, each absent when the server left it out (a NOTIFY report
/// carries only what changed, [RFC 5465 §5.5](https://www.rfc-editor.org/rfc/rfc5465#section-5.5)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxStatus {
    /// The name as sent, with quoted-string escapes undone (a literal is taken as is).
    pub mailbox: String,
    pub messages: Option<u32>,
    pub uid_next: Option<u32>,
    pub uid_validity: Option<u32>,
    /// RFC 7162 §3.1.6.
    pub highest_modseq: Option<u64>,
}

/// An untagged response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untagged {
    Status {
        status: Status,
        code: Option<Code>,
        text: String,
    },
    Capability(Vec<String>),
    List(ListEntry),
    MailboxStatus(MailboxStatus),
    Flags(Vec<String>),
    Exists(u32),
    Expunge(u32),
    /// `VANISHED [(EARLIER)] uids` (QRESYNC): UIDs gone, as ranges. `earlier` when they
    /// went before the command that reports them (a resynchronisation), not just now.
    Vanished {
        earlier: bool,
        uids: Vec<(u32, u32)>,
    },
    /// SEARCH or ESEARCH `ALL`: the matching numbers as ranges (never expanded).
    Search(Vec<(u32, u32)>),
    Enabled(Vec<String>),
    Fetch(Box<Fetch>),
    /// `* QUOTAROOT mailbox root...` ([RFC 2087 §5.2](https://www.rfc-editor.org/rfc/rfc2087#section-5.2)).
    QuotaRoot {
        mailbox: String,
        roots: Vec<String>,
    },
    /// `* QUOTA root (RESOURCE usage limit ...)` ([RFC 2087 §5.1](https://www.rfc-editor.org/rfc/rfc2087#section-5.1)).
    Quota {
        root: String,
        resources: Vec<QuotaResource>,
    },
    /// `* NAMESPACE`'s first personal namespace as (prefix, delimiter), `None` when the
    /// server has none ([RFC 2342 §5](https://www.rfc-editor.org/rfc/rfc2342#section-5)).
    Namespace(Option<(String, Option<char>)>),
    /// A response imapfs does not use (RECENT, an extension's...).
    Other,
}

/// One resource of a QUOTA response: its name (upper case), usage and limit, in the
/// resource's units (`STORAGE` in KiB, `MESSAGE` in messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaResource {
    pub name: String,
    pub usage: u64,
    pub limit: u64,
}

/// One response of any kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `+ text`: go on with the literal (or the SASL exchange).
    Continuation(String),
    Untagged(Untagged),
    Tagged(Tagged),
}

/// Parses one complete response (its line and every literal it announced).
pub fn parse_response(unit: &[u8]) -> Result<Response, WireError> {
    let mut c = Cursor::new(unit);
    if c.eat(b"+") {
        c.eat(b" ");
        return Ok(Response::Continuation(c.text()));
    }
    if c.eat(b"* ") {
        return untagged(&mut c).map(Response::Untagged);
    }
    let tag = String::from_utf8_lossy(c.atom()?).into_owned();
    c.space()?;
    let status = status(&mut c)?.ok_or_else(|| c.error("expected OK, NO or BAD"))?;
    let (code, text) = resp_text(&mut c)?;
    Ok(Response::Tagged(Tagged {
        tag,
        status,
        code,
        text,
    }))
}

/// The status word, if the cursor is at one (else the cursor is left where it was).
fn status(c: &mut Cursor<'_>) -> Result<Option<Status>, WireError> {
    let start = c.pos();
    let word = c.atom().map(|a| a.to_ascii_uppercase()).unwrap_or_default();
    let status = match word.as_slice() {
        b"OK" => Status::Ok,
        b"NO" => Status::No,
        b"BAD" => Status::Bad,
        b"PREAUTH" => Status::PreAuth,
        b"BYE" => Status::Bye,
        _ => {
            c.reset(start);
            return Ok(None);
        }
    };
    Ok(Some(status))
}

/// `[code] text`, either part optional.
fn resp_text(c: &mut Cursor<'_>) -> Result<(Option<Code>, String), WireError> {
    c.eat(b" ");
    let code = if c.eat(b"[") {
        let code = response_code(c)?;
        c.expect(b']')?;
        c.eat(b" ");
        Some(code)
    } else {
        None
    };
    Ok((code, c.text()))
}

fn response_code(c: &mut Cursor<'_>) -> Result<Code, WireError> {
    let name = c.keyword()?;
    let data = if c.eat(b" ") {
        String::from_utf8_lossy(c.until_bracket()?).into_owned()
    } else {
        String::new()
    };
    let mut words = data.split(' ');
    let mut number = |c: &Cursor<'_>| -> Result<u64, WireError> {
        words
            .next()
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| c.error(&format!("{name} without its number")))
    };
    let n32 = |n: u64, c: &Cursor<'_>| u32::try_from(n).map_err(|_| c.error("number too large"));
    Ok(match name.as_str() {
        "CAPABILITY" => Code::Capability(data.split(' ').map(str::to_string).collect()),
        "UIDVALIDITY" => Code::UidValidity(n32(number(c)?, c)?),
        "UIDNEXT" => Code::UidNext(n32(number(c)?, c)?),
        "HIGHESTMODSEQ" => Code::HighestModSeq(number(c)?),
        "APPENDUID" => {
            let validity = n32(number(c)?, c)?;
            let first = data
                .split(' ')
                .nth(1)
                .and_then(|set| set.split([',', ':']).next())
                .and_then(|u| u.parse().ok())
                .ok_or_else(|| c.error("APPENDUID without a UID"))?;
            Code::AppendUid(validity, first)
        }
        "COPYUID" => {
            let validity = n32(number(c)?, c)?;
            let mut sets = data.split(' ').skip(1);
            match (sets.next(), sets.next()) {
                (Some(from), Some(to)) => Code::CopyUid(validity, from.into(), to.into()),
                _ => return Err(c.error("COPYUID without its UID sets")),
            }
        }
        "MODIFIED" if !data.is_empty() => Code::Modified(data),
        "OVERQUOTA" => Code::OverQuota,
        "LIMIT" => Code::Limit,
        "TRYCREATE" => Code::TryCreate,
        "NONEXISTENT" => Code::NonExistent,
        "ALREADYEXISTS" => Code::AlreadyExists,
        "CANNOT" => Code::Cannot,
        "UNKNOWN-CTE" => Code::UnknownCte,
        "READ-ONLY" => Code::ReadOnly,
        "ALERT" => Code::Alert,
        "UNAVAILABLE" => Code::Unavailable,
        "SERVERBUG" => Code::ServerBug,
        _ => Code::Other(name, data),
    })
}

fn untagged(c: &mut Cursor<'_>) -> Result<Untagged, WireError> {
    if c.peek().is_some_and(|b| b.is_ascii_digit()) {
        let n = c.number32()?;
        c.space()?;
        let name = c.keyword()?;
        return Ok(match name.as_str() {
            "EXISTS" => Untagged::Exists(n),
            "EXPUNGE" => Untagged::Expunge(n),
            "FETCH" => {
                c.space()?;
                let fetch = parse_fetch(c, n)?;
                c.eol()?;
                Untagged::Fetch(Box::new(fetch))
            }
            _ => Untagged::Other,
        });
    }
    if let Some(status) = status(c)? {
        let (code, text) = resp_text(c)?;
        return Ok(Untagged::Status { status, code, text });
    }
    let name = c.keyword()?;
    Ok(match name.as_str() {
        "CAPABILITY" => Untagged::Capability(words(c)?),
        "ENABLED" => Untagged::Enabled(words(c)?),
        "FLAGS" => {
            c.space()?;
            Untagged::Flags(c.atom_list()?)
        }
        "LIST" => Untagged::List(list(c)?),
        "STATUS" => Untagged::MailboxStatus(mailbox_status(c)?),
        "VANISHED" => vanished(c)?,
        "NAMESPACE" => Untagged::Namespace(personal_namespace(c)?),
        "SEARCH" => Untagged::Search(search(c)?),
        "ESEARCH" => Untagged::Search(esearch(c)?),
        "QUOTAROOT" => quota_root(c)?,
        "QUOTA" => quota(c)?,
        _ => Untagged::Other,
    })
}

/// Space-separated atoms to the end of the line.
fn words(c: &mut Cursor<'_>) -> Result<Vec<String>, WireError> {
    let mut out = Vec::new();
    while c.eat(b" ") {
        if c.at_eol() {
            break;
        }
        out.push(String::from_utf8_lossy(c.atom()?).into_owned());
    }
    c.eol()?;
    Ok(out)
}

fn list(c: &mut Cursor<'_>) -> Result<ListEntry, WireError> {
    c.space()?;
    let attributes = c.atom_list()?;
    c.space()?;
    let delimiter = delimiter(c)?;
    c.space()?;
    let name = String::from_utf8_lossy(&c.astring()?).into_owned();
    // LIST-EXTENDED data may follow: `("OLDNAME" ("old"))` is kept, CHILDINFO skipped.
    let mut old_name = None;
    while c.eat(b" ") {
        if c.eat(b"(") {
            while !c.eat(b")") {
                c.eat(b" ");
                let tag = c.astring()?.to_ascii_uppercase();
                c.space()?;
                if tag == b"OLDNAME" {
                    c.expect(b'(')?;
                    old_name = Some(String::from_utf8_lossy(&c.astring()?).into_owned());
                    c.expect(b')')?;
                } else {
                    c.value()?;
                }
            }
        } else {
            c.value()?;
        }
    }
    c.eol()?;
    Ok(ListEntry {
        attributes,
        delimiter,
        name,
        old_name,
    })
}

/// `* STATUS name (MESSAGES 3 UIDNEXT 12 ...)`; items imapfs does not use are skipped.
fn mailbox_status(c: &mut Cursor<'_>) -> Result<MailboxStatus, WireError> {
    c.space()?;
    let mailbox = String::from_utf8_lossy(&c.astring()?).into_owned();
    c.space()?;
    c.expect(b'(')?;
    let mut status = MailboxStatus {
        mailbox,
        ..MailboxStatus::default()
    };
    let n32 = |n: u64, c: &Cursor<'_>| u32::try_from(n).map_err(|_| c.error("number too large"));
    let mut first = true;
    while !c.eat(b")") {
        if !first {
            c.space()?;
        }
        first = false;
        let name = c.keyword()?;
        c.space()?;
        match name.as_str() {
            "MESSAGES" => status.messages = Some(n32(c.number()?, c)?),
            "UIDNEXT" => status.uid_next = Some(n32(c.number()?, c)?),
            "UIDVALIDITY" => status.uid_validity = Some(n32(c.number()?, c)?),
            "HIGHESTMODSEQ" => status.highest_modseq = Some(c.number()?),
            _ => {
                c.value()?;
            }
        }
    }
    c.eol()?;
    Ok(status)
}

/// `* VANISHED (EARLIER) 41,43:116` ([RFC 7162 §3.2.10](https://www.rfc-editor.org/rfc/rfc7162#section-3.2.10)).
fn vanished(c: &mut Cursor<'_>) -> Result<Untagged, WireError> {
    c.space()?;
    let earlier = if c.eat(b"(") {
        let tag = c.keyword()?;
        c.expect(b')')?;
        c.space()?;
        if tag != "EARLIER" {
            return Err(c.error("VANISHED with an unknown tag"));
        }
        true
    } else {
        false
    };
    let uids = sequence_set(c)?;
    c.eol()?;
    Ok(Untagged::Vanished { earlier, uids })
}

/// The first namespace of `* NAMESPACE personal other shared`: `NIL`, or
/// `(("prefix" "delimiter" extensions...) ...)`; the rest of the line is skipped.
fn personal_namespace(c: &mut Cursor<'_>) -> Result<Option<(String, Option<char>)>, WireError> {
    c.space()?;
    let first = if c.eat(b"NIL") || c.eat(b"nil") {
        None
    } else {
        c.expect(b'(')?;
        c.expect(b'(')?;
        let prefix = String::from_utf8_lossy(&c.string()?).into_owned();
        c.space()?;
        let delimiter = delimiter(c)?;
        while c.eat(b" ") {
            c.value()?;
        }
        c.expect(b')')?;
        // Further personal namespaces: not used.
        while c.peek() == Some(b'(') {
            c.value()?;
        }
        c.expect(b')')?;
        Some((prefix, delimiter))
    };
    // The other users' and the shared namespaces: not used.
    while c.eat(b" ") {
        c.value()?;
    }
    c.eol()?;
    Ok(first)
}

/// A hierarchy delimiter: one character in a quoted string, or `NIL` (no hierarchy).
fn delimiter(c: &mut Cursor<'_>) -> Result<Option<char>, WireError> {
    match c.nstring()? {
        None => Ok(None),
        Some(d) => {
            let text = String::from_utf8_lossy(&d).into_owned();
            let mut chars = text.chars();
            match (chars.next(), chars.next()) {
                (Some(d), None) => Ok(Some(d)),
                _ => Err(c.error("a hierarchy delimiter must be one character")),
            }
        }
    }
}

/// `* SEARCH 1 2 3` ([RFC 3501 §7.2.5](https://www.rfc-editor.org/rfc/rfc3501#section-7.2.5)),
/// with CONDSTORE's trailing `(MODSEQ n)` ignored.
fn search(c: &mut Cursor<'_>) -> Result<Vec<(u32, u32)>, WireError> {
    let mut out = Vec::new();
    while c.eat(b" ") {
        if c.peek() == Some(b'(') {
            c.value()?;
            continue;
        }
        if c.at_eol() {
            break;
        }
        let n = c.number32()?;
        out.push((n, n));
    }
    c.eol()?;
    Ok(out)
}

/// `* ESEARCH (TAG "a1") UID ALL 1:3,7` ([RFC 4731 §3.1](https://www.rfc-editor.org/rfc/rfc4731#section-3.1)).
fn esearch(c: &mut Cursor<'_>) -> Result<Vec<(u32, u32)>, WireError> {
    let mut out = Vec::new();
    while c.eat(b" ") {
        if c.peek() == Some(b'(') {
            c.value()?;
            continue;
        }
        let name = c.keyword()?;
        match name.as_str() {
            "UID" => {}
            "ALL" => {
                c.space()?;
                out = sequence_set(c)?;
            }
            _ => {
                c.space()?;
                c.value()?;
            }
        }
    }
    c.eol()?;
    Ok(out)
}

/// `QUOTAROOT INBOX "User quota"`: the mailbox, then its quota roots (maybe none).
fn quota_root(c: &mut Cursor<'_>) -> Result<Untagged, WireError> {
    c.space()?;
    let mailbox = String::from_utf8_lossy(&c.astring()?).into_owned();
    let mut roots = Vec::new();
    while c.eat(b" ") {
        if c.at_eol() {
            break;
        }
        roots.push(String::from_utf8_lossy(&c.astring()?).into_owned());
    }
    c.eol()?;
    Ok(Untagged::QuotaRoot { mailbox, roots })
}

/// `QUOTA "User quota" (STORAGE 10 512 MESSAGE 3 1000)`.
fn quota(c: &mut Cursor<'_>) -> Result<Untagged, WireError> {
    c.space()?;
    let root = String::from_utf8_lossy(&c.astring()?).into_owned();
    c.space()?;
    c.expect(b'(')?;
    let mut resources = Vec::new();
    while !c.eat(b")") {
        if !resources.is_empty() {
            c.space()?;
        }
        let name = c.keyword()?;
        c.space()?;
        let usage = c.number()?;
        c.space()?;
        let limit = c.number()?;
        resources.push(QuotaResource { name, usage, limit });
    }
    c.eol()?;
    Ok(Untagged::Quota { root, resources })
}

/// `1:3,7` as ranges (either end first).
fn sequence_set(c: &mut Cursor<'_>) -> Result<Vec<(u32, u32)>, WireError> {
    let mut out = Vec::new();
    loop {
        let a = c.number32()?;
        let b = if c.eat(b":") { c.number32()? } else { a };
        out.push((a.min(b), a.max(b)));
        if !c.eat(b",") {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn untagged_of(line: &[u8]) -> Untagged {
        match parse_response(line).unwrap() {
            Response::Untagged(u) => u,
            other => panic!("not untagged: {other:?}"),
        }
    }

    #[test]
    fn tagged_answers_with_codes_from_dovecot() {
        let r = parse_response(
            b"a5 NO [ALREADYEXISTS] Mailbox already exists (0.001 + 0.000 secs).\r\n",
        )
        .unwrap();
        assert_eq!(
            r,
            Response::Tagged(Tagged {
                tag: "a5".into(),
                status: Status::No,
                code: Some(Code::AlreadyExists),
                text: "Mailbox already exists (0.001 + 0.000 secs).".into()
            })
        );
        let Response::Tagged(t) =
            parse_response(b"c2 OK [APPENDUID 1796393861 11] Append completed.\r\n").unwrap()
        else {
            panic!()
        };
        assert_eq!(t.code, Some(Code::AppendUid(1796393861, 11)));
        let Response::Tagged(t) = parse_response(b"x OK\r\n").unwrap() else {
            panic!()
        };
        assert_eq!((t.status, t.code, t.text.as_str()), (Status::Ok, None, ""));
    }

    #[test]
    fn modified_after_a_conditional_store() {
        let tagged = |line: &[u8]| match parse_response(line).unwrap() {
            Response::Tagged(t) => t,
            other => panic!("{other:?}"),
        };
        // RFC 7162 §3.1.3's examples.
        let t = tagged(b"d105 OK [MODIFIED 7,9] Conditional STORE failed\r\n");
        assert_eq!(
            (t.status, t.code),
            (Status::Ok, Some(Code::Modified("7,9".into())))
        );
        let t = tagged(b"a102 NO [MODIFIED 2] Some of the messages no longer exist.\r\n");
        assert_eq!(
            (t.status, t.code),
            (Status::No, Some(Code::Modified("2".into())))
        );
        let t = tagged(b"A7 OK [MODIFIED 1:3,12] Conditional store failed.\r\n");
        assert_eq!(t.code, Some(Code::Modified("1:3,12".into())));
        // Without its set it is not one.
        let t = tagged(b"A7 OK [MODIFIED] odd\r\n");
        assert_eq!(t.code, Some(Code::Other("MODIFIED".into(), String::new())));
    }

    #[test]
    fn select_responses_from_dovecot() {
        assert_eq!(untagged_of(b"* 10 EXISTS\r\n"), Untagged::Exists(10));
        assert_eq!(
            untagged_of(b"* OK [UIDVALIDITY 1796393861] UIDs valid\r\n"),
            Untagged::Status {
                status: Status::Ok,
                code: Some(Code::UidValidity(1796393861)),
                text: "UIDs valid".into()
            }
        );
        assert!(matches!(
            untagged_of(b"* OK [HIGHESTMODSEQ 12] Highest\r\n"),
            Untagged::Status {
                code: Some(Code::HighestModSeq(12)),
                ..
            }
        ));
        assert_eq!(
            untagged_of(b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Important)\r\n"),
            Untagged::Flags(
                [
                    "\\Answered",
                    "\\Flagged",
                    "\\Deleted",
                    "\\Seen",
                    "\\Draft",
                    "$Important"
                ]
                .map(String::from)
                .to_vec()
            )
        );
        assert!(matches!(
            untagged_of(b"* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n"),
            Untagged::Status {
                code: Some(Code::Other(..)),
                ..
            }
        ));
        assert_eq!(untagged_of(b"* 10 RECENT\r\n"), Untagged::Other);
    }

    #[test]
    fn list_names_quoted_atom_literal_and_nil_delimiter() {
        let entry = |line: &[u8]| match untagged_of(line) {
            Untagged::List(e) => e,
            other => panic!("{other:?}"),
        };
        let e = entry(b"* LIST (\\Noselect \\HasChildren) \"/\" &BB8EQAQ+BDUEOgRCBEs-\r\n");
        assert_eq!(e.attributes, ["\\Noselect", "\\HasChildren"]);
        assert_eq!(e.delimiter, Some('/'));
        assert_eq!(e.name, "&BB8EQAQ+BDUEOgRCBEs-");
        let e = entry(b"* LIST () \"\\\\\" \"q\\\"uote\\\\\"\r\n");
        assert_eq!((e.delimiter, e.name.as_str()), (Some('\\'), "q\"uote\\"));
        let e = entry(b"* LIST (\\NonExistent) NIL {6}\r\nR\xc3\xa9\"x)\r\n");
        assert_eq!((e.delimiter, e.name.as_str()), (None, "R\u{e9}\"x)"));
        let e = entry(b"* LIST (\\Subscribed) \".\" INBOX (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n");
        assert_eq!((e.name.as_str(), e.old_name), ("INBOX", None));
        let e = entry(b"* LIST () \"/\" Baz/Bar (\"OLDNAME\" (Foo/Bar))\r\n");
        assert_eq!(e.old_name.as_deref(), Some("Foo/Bar"));
        assert!(parse_response(b"* LIST (\\X) \"ab\" x\r\n").is_err());
    }

    #[test]
    fn search_and_esearch() {
        assert_eq!(untagged_of(b"* SEARCH\r\n"), Untagged::Search(vec![]));
        assert_eq!(
            untagged_of(b"* SEARCH 1 2 (MODSEQ 9)\r\n"),
            Untagged::Search(vec![(1, 1), (2, 2)])
        );
        assert_eq!(
            untagged_of(b"* ESEARCH (TAG \"c6\") UID ALL 1:5,9,12:10\r\n"),
            Untagged::Search(vec![(1, 5), (9, 9), (10, 12)])
        );
        assert_eq!(
            untagged_of(b"* ESEARCH (TAG \"c6\") UID COUNT 0\r\n"),
            Untagged::Search(vec![])
        );
    }

    #[test]
    fn capabilities_and_enabled() {
        assert_eq!(
            untagged_of(b"* CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN\r\n"),
            Untagged::Capability(vec![
                "IMAP4rev1".into(),
                "LITERAL+".into(),
                "AUTH=PLAIN".into()
            ])
        );
        assert_eq!(
            untagged_of(b"* ENABLED CONDSTORE\r\n"),
            Untagged::Enabled(vec!["CONDSTORE".into()])
        );
        let Response::Untagged(Untagged::Status { code, .. }) = parse_response(
            b"* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ STARTTLS] Dovecot (Debian) ready.\r\n",
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            code,
            Some(Code::Capability(
                ["IMAP4rev1", "SASL-IR", "LITERAL+", "STARTTLS"]
                    .map(String::from)
                    .to_vec()
            ))
        );
    }

    #[test]
    fn namespace_gives_the_first_personal_prefix_and_delimiter() {
        let ns = |line: &[u8]| match untagged_of(line) {
            Untagged::Namespace(n) => n,
            other => panic!("{other:?}"),
        };
        // Dovecot, Cyrus (classic namespace), Courier, and a server without personal ones.
        assert_eq!(
            ns(b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n"),
            Some((String::new(), Some('/')))
        );
        assert_eq!(
            ns(b"* NAMESPACE ((\"INBOX.\" \".\")) ((\"user.\" \".\")) ((\"\" \".\"))\r\n"),
            Some(("INBOX.".into(), Some('.')))
        );
        assert_eq!(
            ns(b"* NAMESPACE ((\"INBOX.\" \".\" \"X-PARAM\" (\"a\" \"b\"))(\"#mh/\" \"/\")) NIL ((\"#shared.\" \".\")(\"shared.\" \".\"))\r\n"),
            Some(("INBOX.".into(), Some('.')))
        );
        assert_eq!(
            ns(b"* NAMESPACE ((\"\" NIL)) NIL NIL\r\n"),
            Some((String::new(), None))
        );
        assert_eq!(ns(b"* NAMESPACE NIL NIL ((\"\" \"/\"))\r\n"), None);
        assert!(parse_response(b"* NAMESPACE ((\"a\" \"//\")) NIL NIL\r\n").is_err());
    }

    #[test]
    fn unknown_untagged_responses_are_skipped_and_garbage_is_an_error() {
        for line in [
            &b"* 3 RECENT\r\n"[..],
            b"* 3 XWEIRD (((\r\n",
            b"* XYZZY\r\n",
        ] {
            assert_eq!(untagged_of(line), Untagged::Other, "{line:?}");
        }
        for bad in [
            &b"\r\n"[..],
            b"a1\r\n",
            b"a1 MAYBE done\r\n",
            b"* 1 FETCH (UID banana)\r\n",
            b"* 99999999999 EXISTS\r\n",
            b"* OK [UIDVALIDITY x] y\r\n",
            b"* OK [UIDNEXT 1\r\n",
        ] {
            assert!(parse_response(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn continuations() {
        assert_eq!(
            parse_response(b"+ OK\r\n").unwrap(),
            Response::Continuation("OK".into())
        );
        assert_eq!(
            parse_response(b"+\r\n").unwrap(),
            Response::Continuation(String::new())
        );
    }
}
