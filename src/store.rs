//! The `MailStore` trait: everything imapfs asks of a mail server, in domain types.
//!
//! The filesystem core talks only to this trait. `store/imap.rs` implements it over IMAP
//! and `store/memory.rs` in memory for tests. UIDs and UIDVALIDITY are distinct newtypes;
//! message sequence numbers never leave the IMAP module.

pub mod cached;
#[cfg(test)]
mod conformance;
pub mod imap;
#[cfg(any(test, feature = "memory-store"))]
pub mod memory;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use crate::search::SearchKey;

/// A message's unique identifier within one mailbox and UIDVALIDITY
/// ([RFC 3501 §2.3.1.1](https://www.rfc-editor.org/rfc/rfc3501#section-2.3.1.1)).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Uid(pub u32);

/// The UIDVALIDITY of a mailbox: when it changes, every UID in it means something else.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
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

/// The server's own identifier of a mailbox (for IMAP, its wire name in modified UTF-7).
/// The filesystem core treats it as opaque: it keys caches with it and hands it back to the
/// store, but never splits, decodes or compares it with a user's name. Cheap to clone.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct MailboxId(Arc<str>);

impl MailboxId {
    /// An identifier as the store spells it.
    pub fn new(id: &str) -> Self {
        MailboxId(Arc::from(id))
    }

    /// The identifier's text; only the store that made it interprets it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MailboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A mailbox's place in the hierarchy as the user sees it: its names from the top, decoded
/// (no modified UTF-7, no delimiter), the inbox always spelled `INBOX`.
pub type MailboxPath = Vec<String>;

/// A body section number such as `1`, `2.1` or `3.2.1`
/// ([RFC 3501 §6.4.5](https://www.rfc-editor.org/rfc/rfc3501#section-6.4.5)).
/// The empty section is the whole message (`BODY[]`).
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MailboxInfo {
    /// The server's identifier.
    pub id: MailboxId,
    /// Where it sits in the hierarchy, decoded. Never empty.
    pub path: MailboxPath,
    /// `\Noselect` (or `\NonExistent`): a directory with children and no messages.
    pub selectable: bool,
    /// The SPECIAL-USE attribute, lower-cased without the backslash (`trash`, `sent`...).
    pub special_use: Option<String>,
}

/// What one batched metadata fetch says about a message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MessageMeta {
    pub uid: Uid,
    /// RFC822.SIZE: the size of `BODY[]` in octets.
    pub size: u64,
    pub internal_date: SystemTime,
    /// The raw Subject from the ENVELOPE (may be RFC 2047 encoded), if any.
    pub subject: Option<Vec<u8>>,
    pub flags: Vec<String>,
    /// The raw `X-Imapfs-File` header, if imapfs made this message from a file.
    pub origin: Option<Vec<u8>>,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MailboxVersion {
    pub uid_validity: UidValidity,
    pub uid_next: u32,
    pub exists: u32,
    pub highest_modseq: u64,
}

/// Content-Transfer-Encoding of a leaf part.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum TransferEncoding {
    SevenBit,
    EightBit,
    Binary,
    Base64,
    QuotedPrintable,
    Other(String),
}

/// The fields every body part has (lower-cased type names).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ByteRange {
    pub offset: u64,
    pub len: u64,
}

/// In which form a section's bytes are asked for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Transfer {
    /// As stored, still transfer-encoded: `BODY.PEEK[s]`.
    Encoded,
    /// Transfer-decoded by the server: `BINARY.PEEK[s]`
    /// ([RFC 3516](https://www.rfc-editor.org/rfc/rfc3516)); only with [`Capabilities::binary`].
    Decoded,
}

/// One thing to fetch about a part of a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum PartItem {
    /// The decoded size of a section: `BINARY.SIZE[s]` (only with [`Capabilities::binary`]).
    DecodedSize(Section),
    /// Bytes of a section, all of it or a range: `BODY.PEEK[s]<o.n>` or `BINARY.PEEK[s]<o.n>`.
    /// The whole message is the empty section (and only `Encoded`).
    Bytes {
        section: Section,
        transfer: Transfer,
        range: Option<ByteRange>,
    },
}

/// The answer for one [`PartItem`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PartValue {
    Size(u64),
    Bytes(Vec<u8>),
}

impl PartItem {
    /// The section this item is about.
    pub fn section(&self) -> &Section {
        match self {
            PartItem::DecodedSize(section) | PartItem::Bytes { section, .. } => section,
        }
    }

    /// The answer to this item made from its section's bytes as stored (`BODY[section]`),
    /// decoded here with the part's `encoding` where the item asks for decoded bytes.
    pub fn answer_from_stored(&self, stored: &[u8], encoding: &TransferEncoding) -> PartValue {
        match self {
            PartItem::DecodedSize(_) => {
                PartValue::Size(crate::mime::decode_transfer(encoding, stored).len() as u64)
            }
            PartItem::Bytes {
                transfer: Transfer::Encoded,
                range,
                ..
            } => PartValue::Bytes(clip(stored, *range).to_vec()),
            PartItem::Bytes {
                transfer: Transfer::Decoded,
                range,
                ..
            } => {
                let decoded = crate::mime::decode_transfer(encoding, stored);
                PartValue::Bytes(clip(&decoded, *range).to_vec())
            }
        }
    }
}

/// The `<offset.len>` slice of a section: clipped to its end, empty past it
/// ([RFC 3501 §6.4.5](https://www.rfc-editor.org/rfc/rfc3501#section-6.4.5)); all of it
/// for `None`.
pub fn clip(bytes: &[u8], range: Option<ByteRange>) -> &[u8] {
    let Some(range) = range else {
        return bytes;
    };
    let len = bytes.len() as u64;
    let start = range.offset.min(len);
    let end = range.offset.saturating_add(range.len).min(len);
    // Both are at most `bytes.len()`, so they fit in usize.
    bytes.get(start as usize..end as usize).unwrap_or_default()
}

/// A message to APPEND, read once from `content`.
pub struct NewMessage<'a> {
    /// The message, `len` bytes, read from start to end exactly once.
    pub content: &'a mut (dyn std::io::Read + Send),
    pub len: u64,
    /// The message holds NUL bytes: it must go as a `literal8`
    /// ([RFC 3516 §4.4](https://www.rfc-editor.org/rfc/rfc3516#section-4.4)), which needs
    /// [`Capabilities::binary`]; a plain literal would have them altered.
    pub binary: bool,
    pub flags: &'a [Flag],
    /// The INTERNALDATE to give it; the server's clock if `None`.
    pub internal_date: Option<SystemTime>,
}

/// Counters of what a store sent and received; used by tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub commands: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
}

/// The account's storage quota ([RFC 2087](https://www.rfc-editor.org/rfc/rfc2087)): what
/// `df` shows of the mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Bytes counted against the quota.
    pub used_bytes: u64,
    /// The most the account may hold, in bytes.
    pub limit_bytes: u64,
}

/// Errors from a mail store. The errno for each is decided in `fs/errors.rs`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("mailbox {0} does not exist")]
    NoSuchMailbox(MailboxId),
    #[error("message UID {uid} is gone from {mailbox}")]
    NoSuchMessage { mailbox: MailboxId, uid: Uid },
    #[error("UIDVALIDITY of {mailbox} changed from {expected} to {actual}")]
    UidValidityChanged {
        mailbox: MailboxId,
        expected: UidValidity,
        actual: UidValidity,
    },
    #[error("the server refused: {0}")]
    Refused(String),
    #[error("the server's answer could not be used: {0}")]
    Protocol(String),
    #[error("connection failed: {0}")]
    Connection(String),
    /// The server was reached, and its TLS was refused (a certificate this machine does not
    /// trust, another name, a port that speaks plain IMAP): not "unreachable", so no mount
    /// starts offline on it, nor waits for it to pass.
    #[error("connection failed: {0}")]
    Untrusted(String),
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
    /// A mailbox to delete holds messages (one may have arrived since it was looked at).
    #[error("not empty: {0}")]
    NotEmpty(String),
    #[error("interrupted: the caller gave up")]
    Interrupted,
    #[error("offline: {0}")]
    Offline(String),
    /// This machine's disk is full (the journal of offline changes could not grow).
    #[error("no space left on this machine: {0}")]
    NoSpaceHere(String),
}

impl StoreError {
    /// Whether it means the server cannot be reached (rather than refusing a request).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StoreError::Connection(_) | StoreError::Timeout(_))
    }
}

/// What the name of a mailbox an rmdir renamed aside to delete holds.
pub const RMDIR_ASIDE: &str = "-imapfs-rmdir-";

/// The result type of every store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// The structure of one message and the size of the whole message, from one request, so
/// a message directory's `message.eml` is sized by the same answer that lists its parts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MessageStructure {
    pub uid: Uid,
    /// RFC822.SIZE: the size of `BODY[]` in octets.
    pub size: u64,
    pub body: BodyPart,
}

/// A change in one mailbox, as a server reports it (or as a new listing shows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxChange {
    pub mailbox: MailboxId,
    /// The UIDVALIDITY the UIDs below belong to.
    pub validity: Option<UidValidity>,
    /// The mailbox was recreated: every UID known before means nothing now.
    pub validity_changed: bool,
    /// Messages that arrived, with their metadata.
    pub arrived: Vec<MessageMeta>,
    /// Messages that are gone (expunged, or moved elsewhere).
    pub vanished: Vec<Uid>,
    /// Messages whose flags changed, with their new flags.
    pub flags: Vec<(Uid, Vec<String>)>,
    /// When the server was first asked for what this tells (none: told as it happened).
    /// Flags this mount changed after that may be newer than the ones told here.
    pub asked_at: Option<std::time::Instant>,
}

impl MailboxChange {
    /// No change yet, in `mailbox`.
    pub fn new(mailbox: MailboxId) -> Self {
        MailboxChange {
            mailbox,
            validity: None,
            validity_changed: false,
            arrived: Vec::new(),
            vanished: Vec::new(),
            flags: Vec::new(),
            asked_at: None,
        }
    }
}

/// How a flag change made only if the message was unchanged since a MODSEQ ended
/// ([RFC 7162 §3.1.3](https://www.rfc-editor.org/rfc/rfc7162#section-3.1.3)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionalStore {
    /// Done; the message's MODSEQ after it, when the server said.
    Stored(Option<u64>),
    /// Not done, or only in part: the message changed after that MODSEQ (`MODIFIED`).
    Modified,
    /// The server cannot make a change conditional (no CONDSTORE): nothing was sent.
    NotOffered,
}

/// A message's flags as the server holds them now, and its MODSEQ (with CONDSTORE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagsNow {
    pub flags: Vec<String>,
    pub modseq: Option<u64>,
}

/// Whether a store is talking to its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Online,
    /// Serving what was kept, since then.
    Offline {
        since: SystemTime,
    },
}

/// What a store can report without being asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// Messages of one mailbox changed.
    Mailbox(MailboxChange),
    /// Mailboxes were created, deleted or renamed: the mailbox list must be read again.
    MailboxList,
    /// Another client renamed mailbox `from` to `to` (NOTIFY's `OLDNAME`): what is held
    /// of it and its children, and handles on them, stand for the new names. A
    /// `MailboxList` follows.
    MailboxRenamed { from: MailboxId, to: MailboxId },
    /// Messages of one mailbox changed in a way the store cannot tell exactly (a server
    /// without CONDSTORE, or one that was out of reach for a while): list it again.
    MailboxStale(MailboxId),
    /// Mailboxes followed until now may not be any more (a watcher connection was lost, or
    /// the server went out of reach): their changes may go unreported until each is
    /// followed again (`MailStore::is_followed` says which).
    Unfollowed,
}

/// `MailStore::change_flags` of each of `uids` in turn; those found gone are passed over
/// and returned.
pub fn change_flags_one_by_one<S: MailStore + ?Sized>(
    store: &S,
    mailbox: &MailboxId,
    validity: UidValidity,
    uids: &[Uid],
    add: &[Flag],
    remove: &[Flag],
) -> StoreResult<Vec<Uid>> {
    let mut gone = Vec::new();
    for &uid in uids {
        match store.change_flags(mailbox, validity, uid, add, remove) {
            Ok(()) => {}
            Err(StoreError::NoSuchMessage { .. }) => gone.push(uid),
            Err(e) => return Err(e),
        }
    }
    Ok(gone)
}

/// Where a store sends its events; called on the store's own thread, so it must not block.
pub type EventSink = Arc<dyn Fn(StoreEvent) + Send + Sync>;

/// Everything imapfs needs from a mail server. Implementations are shared between FUSE
/// threads, so every method takes `&self` and is safe to call concurrently.
pub trait MailStore: Send + Sync + 'static {
    /// All mailboxes (LIST "" "*").
    fn list_mailboxes(&self) -> StoreResult<Vec<MailboxInfo>>;

    /// UIDVALIDITY and per-message metadata of every message in `mailbox`, in one batch.
    fn list_messages(&self, mailbox: &MailboxId) -> StoreResult<MailboxListing>;

    /// The mailbox's current version, in one cheap request, when the server can tell one;
    /// `None` means "relist to find out".
    fn mailbox_version(&self, _mailbox: &MailboxId) -> StoreResult<Option<MailboxVersion>> {
        Ok(None)
    }

    /// BODYSTRUCTUREs and sizes of one or more messages in one request (several when a
    /// directory walk visits one message after another). Missing UIDs are left out.
    fn body_structures(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uids: &[Uid],
    ) -> StoreResult<Vec<MessageStructure>>;

    /// Sizes and bytes of parts of one or more messages of one mailbox, in as few requests
    /// as the store can (one, where the same items are wanted of every message). Missing
    /// UIDs are left out; an item the server answers with NIL is left out too.
    fn fetch_parts(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        wanted: &[(Uid, Vec<PartItem>)],
    ) -> StoreResult<Vec<(Uid, PartItem, PartValue)>>;

    /// The bytes of `section` of a message in `transfer` form, or the byte range `range`
    /// of them. An empty section is the whole message. Never sets `\Seen`.
    fn fetch_section(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        section: &Section,
        transfer: Transfer,
        range: Option<ByteRange>,
    ) -> StoreResult<Vec<u8>> {
        let batch = self.fetch_sections(mailbox, validity, &[uid], section, transfer, range)?;
        only(batch, mailbox, uid)
    }

    /// The same section and range of one or more messages in one request (read-ahead when
    /// a walk reads messages one after another). Missing UIDs are left out.
    fn fetch_sections(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uids: &[Uid],
        section: &Section,
        transfer: Transfer,
        range: Option<ByteRange>,
    ) -> StoreResult<Vec<(Uid, Vec<u8>)>> {
        let item = PartItem::Bytes {
            section: section.clone(),
            transfer,
            range,
        };
        let wanted: Vec<(Uid, Vec<PartItem>)> =
            uids.iter().map(|&uid| (uid, vec![item.clone()])).collect();
        Ok(self
            .fetch_parts(mailbox, validity, &wanted)?
            .into_iter()
            .filter_map(|(uid, _, value)| match value {
                PartValue::Bytes(bytes) => Some((uid, bytes)),
                PartValue::Size(_) => None,
            })
            .collect())
    }

    /// Messages in `mailbox` whose Message-ID header is `message_id` (to find a message
    /// whose APPEND may or may not have landed), with their metadata.
    fn find_by_message_id(
        &self,
        mailbox: &MailboxId,
        message_id: &str,
    ) -> StoreResult<(UidValidity, Vec<MessageMeta>)>;

    /// Counters so far.
    fn stats(&self) -> StoreStats;

    /// What the server can do that changes how imapfs changes mail.
    fn capabilities(&self) -> Capabilities;

    /// `CREATE`s the mailbox at `path` ([RFC 3501 §6.3.3](https://www.rfc-editor.org/rfc/rfc3501#section-6.3.3))
    /// and returns its identifier. A name the server cannot hold (one with its hierarchy
    /// delimiter or a LIST wildcard, or a nested path on a server without hierarchy) is
    /// `Invalid`.
    fn create_mailbox(&self, path: &[String]) -> StoreResult<MailboxId>;

    /// `DELETE` a mailbox ([RFC 3501 §6.3.4](https://www.rfc-editor.org/rfc/rfc3501#section-6.3.4))
    /// that holds no message; one that does (a message another client filed since it was
    /// looked at) is `NotEmpty` and kept.
    fn delete_mailbox(&self, mailbox: &MailboxId) -> StoreResult<()>;

    /// `RENAME`s a mailbox, with everything under it, to `to`
    /// ([RFC 3501 §6.3.5](https://www.rfc-editor.org/rfc/rfc3501#section-6.3.5)); returns its
    /// new identifier.
    fn rename_mailbox(&self, from: &MailboxId, to: &[String]) -> StoreResult<MailboxId>;

    /// Replaces a message's flags: `UID STORE <uid> FLAGS.SILENT (...)`.
    fn set_flags(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        flags: &[Flag],
    ) -> StoreResult<()>;

    /// Adds and removes flags of one message, leaving its other flags as they are:
    /// `UID STORE <uid> +FLAGS.SILENT (...)` and `-FLAGS.SILENT (...)`
    /// ([RFC 3501 §6.4.6](https://www.rfc-editor.org/rfc/rfc3501#section-6.4.6)), so a change
    /// another client made meanwhile to other flags is kept (RFC 4549 §4.3).
    fn change_flags(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        add: &[Flag],
        remove: &[Flag],
    ) -> StoreResult<()>;

    /// `change_flags` for many messages of one mailbox: `UID STORE <set> +FLAGS.SILENT (...)`
    /// and `-FLAGS.SILENT (...)`, a few commands for any number of messages. A UID that is
    /// gone is passed over; those known to be gone are returned. The default changes them
    /// one by one.
    fn change_flags_of(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uids: &[Uid],
        add: &[Flag],
        remove: &[Flag],
    ) -> StoreResult<Vec<Uid>> {
        change_flags_one_by_one(self, mailbox, validity, uids, add, remove)
    }

    /// `change_flags` only if the message has not changed since `since` (a MODSEQ):
    /// `UID STORE <uid> (UNCHANGEDSINCE <since>) +FLAGS.SILENT (...)`, then the same for
    /// `-FLAGS.SILENT` conditional on the MODSEQ the first left
    /// ([RFC 7162 §3.1.3](https://www.rfc-editor.org/rfc/rfc7162#section-3.1.3)). A store
    /// without CONDSTORE sends nothing and says `NotOffered` (the default).
    fn change_flags_unchanged_since(
        &self,
        _mailbox: &MailboxId,
        _validity: UidValidity,
        _uid: Uid,
        _add: &[Flag],
        _remove: &[Flag],
        _since: u64,
    ) -> StoreResult<ConditionalStore> {
        Ok(ConditionalStore::NotOffered)
    }

    /// One message's flags and MODSEQ now: `UID FETCH <uid> (FLAGS MODSEQ)`. A message
    /// that is gone is `NoSuchMessage`.
    fn flags_now(
        &self,
        mailbox: &MailboxId,
        _validity: UidValidity,
        _uid: Uid,
    ) -> StoreResult<FlagsNow> {
        Err(StoreError::Unsupported(format!(
            "this store cannot fetch one message's flags in {mailbox}"
        )))
    }

    /// Moves one message (`UID MOVE`, or `UID COPY` then expunging that UID alone).
    /// Returns the target's UIDVALIDITY and the new UID when the server tells them
    /// (COPYUID, RFC 4315).
    fn move_message(
        &self,
        from: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        to: &MailboxId,
    ) -> StoreResult<Option<(UidValidity, Uid)>>;

    /// Copies one message into `to` (`UID COPY`), flags and INTERNALDATE with it. Returns
    /// the target's UIDVALIDITY and the copy's UID when the server tells them (COPYUID,
    /// RFC 4315). Never retried on another connection: a COPY cut off may have been done.
    fn copy_message(
        &self,
        from: &MailboxId,
        _validity: UidValidity,
        _uid: Uid,
        _to: &MailboxId,
    ) -> StoreResult<Option<(UidValidity, Uid)>> {
        Err(StoreError::Unsupported(format!(
            "this store cannot copy messages out of {from}"
        )))
    }

    /// Expunges exactly one message: `UID STORE +FLAGS.SILENT (\Deleted)` then
    /// `UID EXPUNGE <uid>`. Without UIDPLUS this is refused, since a plain EXPUNGE would also
    /// remove messages other clients marked deleted.
    fn expunge_message(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
    ) -> StoreResult<()>;

    /// `APPEND`s a message, streaming it; returns its UIDVALIDITY and UID when the server
    /// tells them (APPENDUID, RFC 4315). Over quota is `OverQuota`.
    fn append(
        &self,
        mailbox: &MailboxId,
        message: NewMessage<'_>,
    ) -> StoreResult<Option<(UidValidity, Uid)>>;

    /// The UIDs of the messages of `mailbox` that match `key`, ascending (`UID SEARCH`,
    /// ESEARCH where offered). A key this server cannot run is `Invalid`.
    fn search(&self, mailbox: &MailboxId, key: &SearchKey) -> StoreResult<Vec<Uid>>;

    /// What changed in `mailbox` since a listing at `known` was taken, given the UIDs that
    /// listing held: the change and the version after it, asked in requests that cost in
    /// proportion to the change (QRESYNC, or CONDSTORE and a UID search). `None`: only a
    /// full listing can tell (the default).
    fn changes_since(
        &self,
        _mailbox: &MailboxId,
        _known: MailboxVersion,
        _held: &[Uid],
    ) -> StoreResult<Option<(MailboxChange, MailboxVersion)>> {
        Ok(None)
    }

    /// Changes made while offline that wait for the server, one line each (refused ones
    /// with why); empty for a store that never queues.
    fn pending_changes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Replays the changes that wait (the refused ones too) now, in the background, if the
    /// server can be reached; a store that never queues does nothing.
    fn retry_pending(&self) {}

    /// Whether the server is being talked to (a store with a disk cache can be offline).
    fn link_state(&self) -> LinkState {
        LinkState::Online
    }

    /// Sends changes the store learns of by itself (another client's, pushed by the server)
    /// to `sink` from now on. A store that cannot learn of changes by itself keeps the
    /// default, which sends nothing.
    fn watch(&self, _sink: EventSink) {}

    /// Asks the store to report every change of `mailbox` after the state `known` (the
    /// version of the listing just taken) through the `watch` sink. The default does
    /// nothing: the core then lists the mailbox again to see changes.
    fn follow(&self, _mailbox: &MailboxId, _known: Option<MailboxVersion>) {}

    /// The newest INTERNALDATE of the listing of `mailbox` kept from an earlier mount (a
    /// disk cache), without asking the server: what dates its directory before it is
    /// listed again.
    fn kept_newest(&self, _mailbox: &MailboxId) -> Option<SystemTime> {
        None
    }

    /// Whether every change of `mailbox` since it was followed was, or will be, reported:
    /// while true, a listing held for it stays true without asking the server.
    fn is_followed(&self, _mailbox: &MailboxId) -> bool {
        false
    }

    /// Another client renamed `mailbox`: a session that has it selected would be ended by
    /// the server at its next command (Dovecot: "IMAP session state is inconsistent"),
    /// failing whatever that was (an APPEND of a file being written there). The default
    /// does nothing.
    fn renamed_elsewhere(&self, _mailbox: &MailboxId) {}

    /// The storage quota of the account (of its INBOX's quota root), if the server keeps
    /// one. A store may answer from what it learnt a few seconds ago.
    fn quota(&self) -> StoreResult<Option<Quota>> {
        Ok(None)
    }

    /// False while the server is known to be unreachable: calls that need it then fail at
    /// once (`Connection`) instead of waiting, until an attempt to reconnect succeeds.
    fn is_reachable(&self) -> bool {
        true
    }

    /// Whether mailboxes created, renamed or deleted elsewhere are reported (as
    /// `StoreEvent::MailboxList`): while true, the mailbox list held stays true.
    fn is_list_followed(&self) -> bool {
        false
    }
}

/// The answer for `uid` from a batch asked for it alone; `NoSuchMessage` if it is gone.
pub fn only<T>(batch: Vec<(Uid, T)>, mailbox: &MailboxId, uid: Uid) -> StoreResult<T> {
    batch
        .into_iter()
        .find_map(|(u, value)| (u == uid).then_some(value))
        .ok_or_else(|| StoreError::NoSuchMessage {
            mailbox: mailbox.clone(),
            uid,
        })
}

/// Server abilities that change which commands imapfs sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Capabilities {
    /// RFC 6851 MOVE.
    pub move_command: bool,
    /// RFC 4315 UIDPLUS (UID EXPUNGE, APPENDUID, COPYUID).
    pub uidplus: bool,
    /// RFC 3516 BINARY (decoded fetches and sizes, `literal8` APPEND).
    pub binary: bool,
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
