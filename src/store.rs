//! The `MailStore` trait: everything imapfs asks of a mail server, in domain types.
//!
//! The filesystem core talks only to this trait. `store/imap.rs` implements it over IMAP
//! and `store/memory.rs` in memory for tests. UIDs and UIDVALIDITY are distinct newtypes;
//! message sequence numbers never leave the IMAP module.

pub mod imap;
pub mod memory;

use std::fmt;
use std::time::SystemTime;

/// A message's unique identifier within one mailbox and UIDVALIDITY
/// ([RFC 3501 §2.3.1.1](https://www.rfc-editor.org/rfc/rfc3501#section-2.3.1.1)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uid(pub u32);

/// The UIDVALIDITY of a mailbox: when it changes, every UID in it means something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UidValidity(pub u32);

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for UidValidity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A mailbox name exactly as the server spells it on the wire (still modified UTF-7).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MailboxName(pub String);

impl fmt::Display for MailboxName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A body section number such as `1`, `2.1` or `3.2.1`
/// ([RFC 3501 §6.4.5](https://www.rfc-editor.org/rfc/rfc3501#section-6.4.5)).
/// The empty section is the whole message (`BODY[]`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Section(pub Vec<u32>);

impl Section {
    /// The whole message: `BODY[]`.
    pub fn whole() -> Self {
        Section(Vec::new())
    }

    /// This section with one more level: `2` -> `2.n`.
    pub fn child(&self, n: u32) -> Self {
        let mut v = self.0.clone();
        v.push(n);
        Section(v)
    }

    /// True for `BODY[]`, the whole message.
    pub fn is_whole(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{n}")?;
        }
        Ok(())
    }
}

/// One mailbox as LIST reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    /// The wire name (modified UTF-7).
    pub name: MailboxName,
    /// The hierarchy delimiter, if the server has one.
    pub delimiter: Option<char>,
    /// `\Noselect` (or `\NonExistent`): a directory with children and no messages.
    pub selectable: bool,
    /// The SPECIAL-USE attribute, lower-cased without the backslash (`trash`, `sent`...).
    pub special_use: Option<String>,
}

/// What one batched metadata fetch says about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    pub uid: Uid,
    /// RFC822.SIZE: the size of `BODY[]` in octets.
    pub size: u64,
    pub internal_date: SystemTime,
    /// The raw Subject from the ENVELOPE (may be RFC 2047 encoded), if any.
    pub subject: Option<Vec<u8>>,
    pub flags: Vec<String>,
}

/// The listing of one mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxListing {
    pub uid_validity: UidValidity,
    pub messages: Vec<MessageMeta>,
    /// The mailbox's version when the server can tell one (CONDSTORE).
    pub version: Option<MailboxVersion>,
}

/// What changes whenever anything in a mailbox changes: with CONDSTORE
/// ([RFC 7162](https://www.rfc-editor.org/rfc/rfc7162)) a flag change raises HIGHESTMODSEQ,
/// a new message UIDNEXT, an expunge the message count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxVersion {
    pub uid_validity: UidValidity,
    pub uid_next: u32,
    pub exists: u32,
    pub highest_modseq: u64,
}

/// Content-Transfer-Encoding of a leaf part.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TransferEncoding {
    SevenBit,
    EightBit,
    Binary,
    Base64,
    QuotedPrintable,
    Other(String),
}

/// The fields every body part has (lower-cased type names).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartHeader {
    /// `text`, `image`, `multipart`, `message`... lower case.
    pub media_type: String,
    /// `plain`, `html`, `mixed`, `rfc822`... lower case.
    pub subtype: String,
    /// Content-Type parameters as the server gives them (names lower-cased).
    pub params: Vec<(String, String)>,
    /// Content-Disposition type, lower case (`attachment`, `inline`), if known.
    pub disposition: Option<String>,
    /// Content-Disposition parameters (names lower-cased).
    pub disposition_params: Vec<(String, String)>,
}

/// A parsed BODYSTRUCTURE ([RFC 3501 §7.4.2](https://www.rfc-editor.org/rfc/rfc3501#section-7.4.2)),
/// in our own types so that the filesystem core never sees the IMAP crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyPart {
    /// A leaf part (text, image, application, ...).
    Leaf {
        header: PartHeader,
        encoding: TransferEncoding,
        /// Size of the encoded body in octets, as the server reports it.
        octets: u64,
    },
    /// A `message/rfc822` part with its encapsulated message's structure.
    Message {
        header: PartHeader,
        encoding: TransferEncoding,
        octets: u64,
        /// The Subject of the encapsulated message's envelope, raw.
        subject: Option<Vec<u8>>,
        body: Box<BodyPart>,
    },
    /// A `multipart/*` part.
    Multipart {
        header: PartHeader,
        children: Vec<BodyPart>,
    },
}

impl BodyPart {
    /// The part's header fields.
    pub fn header(&self) -> &PartHeader {
        match self {
            BodyPart::Leaf { header, .. }
            | BodyPart::Message { header, .. }
            | BodyPart::Multipart { header, .. } => header,
        }
    }
}

/// How much of a section to fetch: all of it, or a byte range of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub offset: u64,
    pub len: u64,
}

/// Counters of what a store sent and received; used by tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub commands: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
}

/// Errors from a mail store. The errno for each is decided in `fs/errors.rs`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("mailbox {0} does not exist")]
    NoSuchMailbox(MailboxName),
    #[error("message UID {uid} is gone from {mailbox}")]
    NoSuchMessage { mailbox: MailboxName, uid: Uid },
    #[error("UIDVALIDITY of {mailbox} changed from {expected} to {actual}")]
    UidValidityChanged {
        mailbox: MailboxName,
        expected: UidValidity,
        actual: UidValidity,
    },
    #[error("the server refused: {0}")]
    Refused(String),
    #[error("the server's answer could not be used: {0}")]
    Protocol(String),
    #[error("connection failed: {0}")]
    Connection(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("not supported by the server: {0}")]
    Unsupported(String),
    #[error("over quota: {0}")]
    OverQuota(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
}

/// The result type of every store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// Everything imapfs needs from a mail server. Implementations are shared between FUSE
/// threads, so every method takes `&self` and is safe to call concurrently.
pub trait MailStore: Send + Sync + 'static {
    /// All mailboxes (LIST "" "*").
    fn list_mailboxes(&self) -> StoreResult<Vec<MailboxInfo>>;

    /// UIDVALIDITY and per-message metadata of every message in `mailbox`, in one batch.
    fn list_messages(&self, mailbox: &MailboxName) -> StoreResult<MailboxListing>;

    /// The BODYSTRUCTURE of one message.
    fn body_structure(
        &self,
        mailbox: &MailboxName,
        validity: UidValidity,
        uid: Uid,
    ) -> StoreResult<BodyPart>;

    /// The mailbox's current version, in one cheap request, when the server can tell one;
    /// `None` means "relist to find out".
    fn mailbox_version(&self, _mailbox: &MailboxName) -> StoreResult<Option<MailboxVersion>> {
        Ok(None)
    }

    /// BODYSTRUCTUREs of several messages in one request (used to read ahead when a
    /// directory walk visits one message after another). Missing UIDs are left out.
    fn body_structures(
        &self,
        mailbox: &MailboxName,
        validity: UidValidity,
        uids: &[Uid],
    ) -> StoreResult<Vec<(Uid, BodyPart)>> {
        each_uid(uids, |uid| self.body_structure(mailbox, validity, uid))
    }

    /// The raw (still transfer-encoded) bytes of `section` of a message, or the byte range
    /// `range` of it. An empty section is the whole message. Never sets `\Seen`.
    fn fetch_section(
        &self,
        mailbox: &MailboxName,
        validity: UidValidity,
        uid: Uid,
        section: &Section,
        range: Option<ByteRange>,
    ) -> StoreResult<Vec<u8>>;

    /// The same section and range of several messages in one request (read-ahead when a
    /// walk reads messages one after another). Missing UIDs are left out.
    fn fetch_sections(
        &self,
        mailbox: &MailboxName,
        validity: UidValidity,
        uids: &[Uid],
        section: &Section,
        range: Option<ByteRange>,
    ) -> StoreResult<Vec<(Uid, Vec<u8>)>> {
        each_uid(uids, |uid| {
            self.fetch_section(mailbox, validity, uid, section, range)
        })
    }

    /// Counters so far.
    fn stats(&self) -> StoreStats;

    /// What the server can do that changes how imapfs changes mail.
    fn capabilities(&self) -> Capabilities;

    /// `CREATE` a mailbox ([RFC 3501 §6.3.3](https://www.rfc-editor.org/rfc/rfc3501#section-6.3.3)).
    fn create_mailbox(&self, mailbox: &MailboxName) -> StoreResult<()>;

    /// `DELETE` a mailbox ([RFC 3501 §6.3.4](https://www.rfc-editor.org/rfc/rfc3501#section-6.3.4)).
    fn delete_mailbox(&self, mailbox: &MailboxName) -> StoreResult<()>;

    /// `RENAME` a mailbox ([RFC 3501 §6.3.5](https://www.rfc-editor.org/rfc/rfc3501#section-6.3.5)).
    fn rename_mailbox(&self, from: &MailboxName, to: &MailboxName) -> StoreResult<()>;

    /// Replaces a message's flags: `UID STORE <uid> FLAGS.SILENT (...)`.
    fn set_flags(
        &self,
        mailbox: &MailboxName,
        validity: UidValidity,
        uid: Uid,
        flags: &[Flag],
    ) -> StoreResult<()>;

    /// Moves one message (`UID MOVE`, or `UID COPY` then expunging that UID alone).
    /// Returns the target's UIDVALIDITY and the new UID when the server tells them
    /// (COPYUID, RFC 4315).
    fn move_message(
        &self,
        from: &MailboxName,
        validity: UidValidity,
        uid: Uid,
        to: &MailboxName,
    ) -> StoreResult<Option<(UidValidity, Uid)>>;

    /// Expunges exactly one message: `UID STORE +FLAGS.SILENT (\Deleted)` then
    /// `UID EXPUNGE <uid>`. Without UIDPLUS this is refused, since a plain EXPUNGE would also
    /// remove messages other clients marked deleted.
    fn expunge_message(
        &self,
        mailbox: &MailboxName,
        validity: UidValidity,
        uid: Uid,
    ) -> StoreResult<()>;

    /// `APPEND`s a message; returns its UIDVALIDITY and UID when the server tells them
    /// (APPENDUID, RFC 4315).
    fn append(
        &self,
        mailbox: &MailboxName,
        message: &[u8],
        flags: &[Flag],
    ) -> StoreResult<Option<(UidValidity, Uid)>>;
}

/// Runs `fetch` for each UID in turn, leaving out messages that are gone (the per-message
/// fallback of the batch operations).
fn each_uid<T>(
    uids: &[Uid],
    mut fetch: impl FnMut(Uid) -> StoreResult<T>,
) -> StoreResult<Vec<(Uid, T)>> {
    let mut out = Vec::with_capacity(uids.len());
    for &uid in uids {
        match fetch(uid) {
            Ok(value) => out.push((uid, value)),
            Err(StoreError::NoSuchMessage { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The answer for `uid` from a batch asked for it alone; `NoSuchMessage` if it is gone.
pub fn only<T>(batch: Vec<(Uid, T)>, mailbox: &MailboxName, uid: Uid) -> StoreResult<T> {
    batch
        .into_iter()
        .find_map(|(u, value)| (u == uid).then_some(value))
        .ok_or_else(|| StoreError::NoSuchMessage {
            mailbox: mailbox.clone(),
            uid,
        })
}

/// Server abilities that change which commands imapfs sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// RFC 6851 MOVE.
    pub move_command: bool,
    /// RFC 4315 UIDPLUS (UID EXPUNGE, APPENDUID, COPYUID).
    pub uidplus: bool,
}

/// A validated flag or keyword ([RFC 3501 §2.3.2](https://www.rfc-editor.org/rfc/rfc3501#section-2.3.2)):
/// one of the system flags, or an atom keyword. Only `Flag::parse` makes one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Flag(String);

/// The system flags a client may set (`\Recent` is the server's alone).
pub const SYSTEM_FLAGS: [&str; 5] = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"];

impl Flag {
    /// Checks one flag: a known system flag (any case, normalised), or a keyword made of
    /// atom characters (no space, parentheses, braces, quotes, `%`, `*`, `]`, `\\`, controls).
    pub fn parse(s: &str) -> StoreResult<Flag> {
        if let Some(known) = SYSTEM_FLAGS.iter().find(|f| f.eq_ignore_ascii_case(s)) {
            return Ok(Flag((*known).to_string()));
        }
        let atom_char = |c: char| {
            c.is_ascii_graphic()
                && !matches!(c, '(' | ')' | '{' | '}' | '"' | '%' | '*' | ']' | '\\')
        };
        if s.is_empty() || s.len() > 200 || !s.chars().all(atom_char) {
            return Err(StoreError::Invalid(format!(
                "{s:?} is not a valid IMAP flag or keyword"
            )));
        }
        Ok(Flag(s.to_string()))
    }

    /// Parses a space-separated list (an xattr value); duplicates are dropped.
    pub fn parse_list(s: &str) -> StoreResult<Vec<Flag>> {
        let mut flags = Vec::new();
        for word in s.split([' ', '\t']).filter(|w| !w.is_empty()) {
            let flag = Flag::parse(word)?;
            if !flags.contains(&flag) {
                flags.push(flag);
            }
        }
        Ok(flags)
    }

    /// The flag as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_flags_are_normalised() {
        assert_eq!(Flag::parse("\\seen").unwrap().as_str(), "\\Seen");
        assert_eq!(Flag::parse("$label1").unwrap().as_str(), "$label1");
    }

    #[test]
    fn unsafe_flags_are_refused() {
        for bad in [
            "\\Recent",
            "\\Unknown",
            "a b",
            "(x",
            "x)",
            "\"q\"",
            "a\r\nb",
            "a\0",
            "{5}",
            "*",
            "%",
            "",
        ] {
            assert!(Flag::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Flag::parse_list("\\Seen x\r\nA1 DELETE INBOX").is_err());
    }

    #[test]
    fn lists_split_on_spaces_and_drop_duplicates() {
        let flags = Flag::parse_list(" \\Seen  \\Flagged \\seen $x").unwrap();
        let names: Vec<&str> = flags.iter().map(Flag::as_str).collect();
        assert_eq!(names, ["\\Seen", "\\Flagged", "$x"]);
    }

    #[test]
    fn sections_print_as_dotted_numbers() {
        assert_eq!(Section(vec![2, 1, 3]).to_string(), "2.1.3");
        assert_eq!(Section::whole().to_string(), "");
        assert_eq!(Section::whole().child(2).child(1), Section(vec![2, 1]));
    }
}
