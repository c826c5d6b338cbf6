//! In-memory `MailStore` for fast tests of the filesystem core: operation counters,
//! injectable failures, and helpers that play "another client" changing the account.
//!
//! It answers as Dovecot 2.3 (Maildir `LAYOUT=fs`, separator `/`) answers the IMAP store,
//! each part of Dovecot in the file named after it: BODYSTRUCTURE and `BODY[section]` bytes
//! come from its message parser (`mime/dovecot/message_parser.rs`, shared with the core), which
//! reads headers with its header parser and structured values with its RFC 822 and RFC 2231
//! parsers (`mime/dovecot/`); mailbox changes follow its mailbox commands
//! (`memory/mailbox_commands.rs`); flags are kept as its mail index keeps them
//! (`memory/mail_index.rs`). `store/conformance.rs` checks the answers against Dovecot
//! 2.3.19 through the `MailStore` trait. It is never a substitute for the real-server tests.

mod mail_index;
mod mailbox_commands;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use self::mail_index::{listed_flags, Keywords};
use super::imap::{convert, names};
use super::{
    BodyPart, Capabilities, ConditionalStore, EventSink, Flag, FlagsNow, MailStore, MailboxChange,
    MailboxId, MailboxInfo, MailboxListing, MailboxVersion, MessageMeta, MessageStructure,
    NewMessage, PartItem, PartValue, StoreError, StoreEvent, StoreResult, StoreStats, Transfer,
    Uid, UidValidity,
};
use crate::mime::dovecot::header_parser;
use crate::mime::dovecot::message_parser::{Entity, SectionError};
use crate::search::SearchKey;

/// The wire name of the inbox; matched case-insensitively
/// ([RFC 3501 §5.1](https://www.rfc-editor.org/rfc/rfc3501#section-5.1)).
const INBOX: &str = "INBOX";

/// A `MailStore` operation, for counting calls and injecting failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `MailStore::list_mailboxes`.
    ListMailboxes,
    /// `MailStore::list_messages`.
    ListMessages,
    /// `MailStore::body_structures` (one request, for one message or several).
    BodyStructures,
    /// `MailStore::fetch_section` or `fetch_sections` (one request each).
    FetchSection,
    /// `MailStore::mailbox_version`.
    MailboxVersion,
    /// `MailStore::find_by_message_id`.
    Search,
    /// `MailStore::create_mailbox`.
    CreateMailbox,
    /// `MailStore::delete_mailbox`.
    DeleteMailbox,
    /// `MailStore::rename_mailbox`.
    RenameMailbox,
    /// `MailStore::set_flags`.
    SetFlags,
    /// `MailStore::move_message`.
    MoveMessage,
    /// `MailStore::expunge_message`.
    ExpungeMessage,
    /// `MailStore::copy_message`.
    CopyMessage,
    /// `MailStore::append`.
    Append,
    /// `MailStore::search`.
    SearchMessages,
    /// `MailStore::flags_now`.
    FetchFlags,
    /// `MailStore::changes_since`.
    ChangesSince,
}

impl Op {
    const COUNT: usize = 17;

    fn index(self) -> usize {
        match self {
            Op::ListMailboxes => 0,
            Op::ListMessages => 1,
            Op::MailboxVersion => 2,
            Op::BodyStructures => 3,
            Op::FetchSection => 4,
            Op::CreateMailbox => 5,
            Op::DeleteMailbox => 6,
            Op::RenameMailbox => 7,
            Op::SetFlags => 8,
            Op::MoveMessage => 9,
            Op::ExpungeMessage => 10,
            Op::Append => 11,
            Op::Search => 12,
            Op::SearchMessages => 13,
            Op::FetchFlags => 14,
            Op::ChangesSince => 15,
            Op::CopyMessage => 16,
        }
    }
}

/// An in-memory mail account. Share it behind an `Arc`: every method takes `&self` and
/// holds one mutex for the length of the call.
pub struct MemoryStore {
    state: Mutex<State>,
}

struct State {
    /// A pretended outage: `is_reachable` says false (see `set_reachable`).
    unreachable: bool,
    /// Where remote changes are reported, once a watcher is set.
    sink: Option<EventSink>,
    /// Mailboxes followed (reported on) since `follow`, while a watcher is set.
    followed: BTreeSet<String>,
    /// A hook run once after the next call of an operation has its answer, before the
    /// answer is returned (to interleave "another thread" deterministically).
    after: Vec<(Op, Box<dyn FnOnce() + Send>)>,
    /// Keyed by wire name; the inbox is stored as `INBOX`.
    mailboxes: BTreeMap<String, Mailbox>,
    /// The next UIDVALIDITY to hand out; unique across mailboxes so mix-ups show.
    next_validity: u32,
    calls: [u64; Op::COUNT],
    bytes_served: u64,
    /// Bytes of appended messages.
    bytes_sent: u64,
    failures: [VecDeque<fn() -> StoreError>; Op::COUNT],
    capabilities: Capabilities,
    /// Whether CONDSTORE is offered (see `set_condstore`).
    condstore: bool,
    /// Whether listings show `\Recent` as Dovecot does (see `report_recent`).
    recent_reported: bool,
}

struct Mailbox {
    delimiter: Option<char>,
    selectable: bool,
    /// LIST says `\Noselect` though it opens (Dovecot's special-use parent; see
    /// `list_as_noselect`).
    listed_noselect: bool,
    special_use: Option<String>,
    validity: UidValidity,
    next_uid: u32,
    /// Raised by every change of a message, as CONDSTORE's HIGHESTMODSEQ is.
    highest_modseq: u64,
    /// The keywords used in the mailbox, which order every message's keywords.
    keywords: Keywords,
    /// Messages from this UID on are `\Recent`: they arrived after the last read-write
    /// SELECT of the mailbox, by the IMAP store's writes or by another client.
    first_recent_uid: u32,
    messages: BTreeMap<Uid, Message>,
}

struct Message {
    raw: Vec<u8>,
    root: Entity,
    /// As the mailbox's index keeps them (see `Mailbox::insert`), without `\Recent`.
    flags: Vec<String>,
    internal_date: SystemTime,
    /// CONDSTORE's MODSEQ: the mailbox's HIGHESTMODSEQ at the message's last change.
    modseq: u64,
}

impl Message {
    /// A message kept as Dovecot's Maildir keeps and serves it (see `add_message`).
    fn new(raw: &[u8], flags: Vec<String>, internal_date: SystemTime) -> Self {
        let mut stored = normalize_line_breaks(raw);
        let root = Entity::parse_message(&stored);
        replace_nuls(&mut stored);
        Message {
            raw: stored,
            root,
            flags,
            internal_date: whole_seconds(internal_date),
            modseq: 0,
        }
    }

    /// A message appended as a `literal8`: its NUL bytes are kept.
    fn new_binary(raw: &[u8], flags: Vec<String>, internal_date: SystemTime) -> Self {
        let stored = normalize_line_breaks(raw);
        let root = Entity::parse_message(&stored);
        Message {
            raw: stored,
            root,
            flags,
            internal_date: whole_seconds(internal_date),
            modseq: 0,
        }
    }

    /// One item of `UID FETCH`, or `None` where the server answers NIL or nothing.
    fn part(&self, item: &PartItem) -> StoreResult<Option<PartValue>> {
        let zero = |SectionError::Zero| StoreError::Invalid("a section has a part number 0".into());
        let section = &item.section().0;
        let part = self
            .root
            .section_range(section, self.raw.len())
            .map_err(zero)?;
        let stored = self.raw.get(part).unwrap_or_default();
        let encoding = self.root.section_encoding(section).map_err(zero)?;
        Ok(Some(item.answer_from_stored(stored, &encoding)))
    }
}

impl Message {
    /// What a listing says of this message; the Subject and origin as the IMAP store reads
    /// them from `BODY.PEEK[HEADER.FIELDS (SUBJECT X-IMAPFS-FILE)]`.
    fn meta(&self, uid: Uid, recent: bool) -> MessageMeta {
        MessageMeta {
            uid,
            size: self.raw.len() as u64,
            internal_date: self.internal_date,
            subject: convert::subject_from_header(&self.raw),
            flags: listed_flags(&self.flags, recent),
            origin: convert::header_field(&self.raw, convert::ORIGIN_FIELD),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("MemoryStore")
            .field("mailboxes", &state.mailboxes.keys().collect::<Vec<_>>())
            .field("calls", &state.calls)
            .field("bytes_served", &state.bytes_served)
            .finish()
    }
}

impl MemoryStore {
    /// An account with an empty, selectable `INBOX` (delimiter `/`).
    pub fn new() -> Self {
        let mut state = State {
            unreachable: false,
            sink: None,
            followed: BTreeSet::new(),
            after: Vec::new(),
            mailboxes: BTreeMap::new(),
            next_validity: 1,
            calls: [0; Op::COUNT],
            bytes_served: 0,
            bytes_sent: 0,
            failures: Default::default(),
            capabilities: Capabilities {
                move_command: true,
                uidplus: true,
                binary: true,
            },
            condstore: true,
            recent_reported: false,
        };
        state.create_mailbox(INBOX, Some('/'), true, None);
        MemoryStore {
            state: Mutex::new(state),
        }
    }

    /// Create a mailbox, or change the LIST attributes of an existing one (its messages and
    /// UIDVALIDITY stay). `special_use` may be given as `\Trash` or `trash`. Missing parents
    /// (by `delimiter`) appear as `\Noselect` mailboxes, as on a server.
    pub fn add_mailbox(
        &self,
        name: &str,
        delimiter: Option<char>,
        selectable: bool,
        special_use: Option<&str>,
    ) {
        let name = canonical_name(name);
        let mut state = self.state.lock();
        if let Some(delimiter) = delimiter {
            state.create_ancestors(&name, delimiter);
        }
        match state.mailboxes.get_mut(name.as_str()) {
            Some(mailbox) => {
                mailbox.delimiter = delimiter;
                mailbox.selectable = selectable;
                mailbox.special_use = special_use.map(normalize_special_use);
            }
            None => state.create_mailbox(&name, delimiter, selectable, special_use),
        }
        let sink = state.sink.clone();
        drop(state);
        emit(sink, StoreEvent::MailboxList);
    }

    /// LIST says `\Noselect` for the mailbox from now on, while it still opens and holds
    /// messages: what Dovecot 2.3 lists for a special-use mailbox of its configuration
    /// first made as the parent of another.
    pub fn list_as_noselect(&self, name: &str) {
        let name = canonical_name(name);
        if let Some(mailbox) = self.state.lock().mailboxes.get_mut(name.as_str()) {
            mailbox.listed_noselect = true;
        }
    }

    /// Makes a `\Noselect` mailbox one that holds messages without any report, as
    /// Dovecot does when it creates a special-use mailbox at a first login after a LIST
    /// showed it as the parent of another.
    pub fn make_selectable_unannounced(&self, name: &str) {
        let name = canonical_name(name);
        if let Some(mailbox) = self.state.lock().mailboxes.get_mut(name.as_str()) {
            mailbox.selectable = true;
        }
    }

    /// Append a message as another client would, and return its UID (the mailbox's next).
    /// That client has not selected the mailbox, so the message is `\Recent`.
    ///
    /// The bytes are kept as Dovecot's Maildir keeps and serves them: bare LF becomes CRLF
    /// (a CR before a CRLF and a CR at the very end are lost) and NUL becomes 0x80, so a
    /// CRLF message without NULs is kept exactly. The internal date is kept to whole
    /// seconds, as INTERNALDATE is. A mailbox that does not exist yet is created
    /// (selectable, delimiter `/`).
    pub fn add_message(
        &self,
        mailbox: &str,
        raw: &[u8],
        flags: &[&str],
        internal_date: SystemTime,
    ) -> Uid {
        let flags = flags.iter().map(|f| f.to_string()).collect();
        let message = Message::new(raw, flags, internal_date);
        let name = canonical_name(mailbox);
        let mut state = self.state.lock();
        let recent_reported = state.recent_reported;
        let target = state.mailbox_or_create(&name);
        let uid = target.insert(message);
        let change = MailboxChange {
            validity: Some(target.validity),
            arrived: target.meta(uid, recent_reported).into_iter().collect(),
            ..MailboxChange::new(MailboxId::new(&name))
        };
        let sink = state.sink.clone();
        drop(state);
        emit(sink, StoreEvent::Mailbox(change));
        uid
    }

    /// Expunge a message as another client would. Unknown mailbox or UID: nothing happens.
    pub fn remove_message(&self, mailbox: &str, uid: Uid) {
        self.change_message(mailbox, |mailbox, change| {
            mailbox.remove(uid)?;
            change.vanished.push(uid);
            Some(())
        });
    }

    /// Replace a message's flags as another client would. Unknown mailbox or UID: nothing
    /// happens.
    pub fn set_flags(&self, mailbox: &str, uid: Uid, flags: &[&str]) {
        self.change_message(mailbox, |mailbox, change| {
            let kept = mailbox.replace_flags(uid, flags)?;
            change.flags.push((uid, kept));
            Some(())
        });
    }

    /// Runs `change` on a mailbox as another client, and reports what it did. That client
    /// has SELECTed the mailbox to change it, so its messages are no longer `\Recent`.
    fn change_message(
        &self,
        mailbox: &str,
        change: impl FnOnce(&mut Mailbox, &mut MailboxChange) -> Option<()>,
    ) {
        let name = canonical_name(mailbox);
        let mut state = self.state.lock();
        let Some(target) = state.mailboxes.get_mut(name.as_str()) else {
            return;
        };
        target.claim_recent();
        let mut report = MailboxChange {
            validity: Some(target.validity),
            ..MailboxChange::new(MailboxId::new(&name))
        };
        if change(target, &mut report).is_none() {
            return;
        }
        let sink = state.sink.clone();
        drop(state);
        emit(sink, StoreEvent::Mailbox(report));
    }

    /// The watcher stopped following every mailbox (as when its connection is lost); each
    /// is followed again when `follow` is called for it. `report`: say so (`Unfollowed`), as the
    /// IMAP store does when a watcher connection is lost (but not when its IDLE moves to
    /// another mailbox).
    pub fn unfollow_all(&self, report: bool) {
        let mut state = self.state.lock();
        state.followed.clear();
        let sink = state.sink.clone();
        drop(state);
        if report {
            emit(sink, StoreEvent::Unfollowed);
        }
    }

    /// Another client's DELETE, which takes the mailbox with the messages it holds (the
    /// trait's `delete_mailbox`, imapfs's, keeps one that holds any). Returns what the
    /// DELETE answered.
    pub fn delete_elsewhere(&self, mailbox: &str) -> StoreResult<()> {
        let name = canonical_name(mailbox);
        let mut state = self.state.lock();
        if let Some(target) = state.mailboxes.get_mut(name.as_str()) {
            target.messages.clear();
        }
        state.delete(&MailboxId::new(mailbox))
    }

    /// Delete and re-create a mailbox: a new UIDVALIDITY, no messages, UIDs from 1 again.
    /// Unknown mailbox: nothing happens.
    pub fn recreate_mailbox(&self, mailbox: &str) {
        let name = canonical_name(mailbox);
        let mut state = self.state.lock();
        let validity = take_validity(&mut state.next_validity);
        let Some(target) = state.mailboxes.get_mut(name.as_str()) else {
            return;
        };
        target.validity = validity;
        target.next_uid = 1;
        target.first_recent_uid = 1;
        target.keywords = Keywords::default();
        target.highest_modseq += 1;
        target.messages.clear();
        let change = MailboxChange {
            validity: Some(validity),
            validity_changed: true,
            ..MailboxChange::new(MailboxId::new(&name))
        };
        let sink = state.sink.clone();
        drop(state);
        emit(sink, StoreEvent::Mailbox(change));
    }

    /// The BODYSTRUCTURE of one message (the trait asks in batches; a batch of one).
    pub fn body_structure(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
    ) -> StoreResult<BodyPart> {
        let batch = self.body_structures(mailbox, validity, &[uid])?;
        batch
            .into_iter()
            .find(|s| s.uid == uid)
            .map(|s| s.body)
            .ok_or_else(|| StoreError::NoSuchMessage {
                mailbox: mailbox.clone(),
                uid,
            })
    }

    /// Runs `hook` once, right after the next call of `op` has its answer and before it
    /// returns it: "another thread" acting at the worst moment, deterministically.
    pub fn after_next(&self, op: Op, hook: impl FnOnce() + Send + 'static) {
        self.state.lock().after.push((op, Box::new(hook)));
    }

    /// Runs the hook waiting for `op`, if any, with no lock held.
    fn run_after(&self, op: Op) {
        let hook = {
            let mut state = self.state.lock();
            let pos = state.after.iter().position(|(o, _)| *o == op);
            pos.map(|pos| state.after.remove(pos).1)
        };
        if let Some(hook) = hook {
            hook();
        }
    }

    /// The mailbox's current UIDVALIDITY; `UidValidity(0)` (never valid in IMAP) if the
    /// mailbox does not exist.
    pub fn uid_validity(&self, mailbox: &str) -> UidValidity {
        let state = self.state.lock();
        state
            .mailboxes
            .get(canonical_name(mailbox).as_str())
            .map_or(UidValidity(0), |mailbox| mailbox.validity)
    }

    /// Make the next call of `op` fail with `err()`. Several injections queue up in order.
    /// The failing call still counts in `count` and `stats`.
    pub fn fail_next(&self, op: Op, err: fn() -> StoreError) {
        self.state.lock().failures[op.index()].push_back(err);
    }

    /// Pretend the server can (not) be connected to: `is_reachable` says so, as the IMAP
    /// store's does after a failed connection attempt. Calls still answer; pair it with
    /// `fail_next` for the calls that should fail.
    pub fn set_reachable(&self, reachable: bool) {
        self.state.lock().unreachable = !reachable;
    }

    /// How many times `op` has been called so far, failed calls included.
    pub fn count(&self, op: Op) -> u64 {
        self.state.lock().calls[op.index()]
    }

    /// Bytes returned by `fetch_section` so far.
    pub fn bytes_served(&self) -> u64 {
        self.state.lock().bytes_served
    }

    /// Pretend to be a server with other abilities (Dovecot has both MOVE and UIDPLUS,
    /// which is the default), to test how imapfs copes without them.
    pub fn set_capabilities(&self, capabilities: Capabilities) {
        self.state.lock().capabilities = capabilities;
    }

    /// Pretend to be a server with CONDSTORE (the default, as Dovecot) or without: then
    /// listings carry no version and a flag change cannot be made conditional.
    pub fn set_condstore(&self, offered: bool) {
        self.state.lock().condstore = offered;
    }

    /// Show `\Recent` in listings as Dovecot does: on every message that arrived after the
    /// last read-write SELECT of its mailbox (by the IMAP store's changes, or by another
    /// client's through `set_flags` and `remove_message`).
    ///
    /// Off by default, where the store leaves `\Recent` out, unlike Dovecot: core tests
    /// assert exact flag lists without it (`fs/tests/local_changes.rs` expects a message
    /// just moved to Archive to have `\Seen` alone, where Dovecot also lists `\Recent`).
    /// The core drops `\Recent` wherever it shows flags, so those tests mean the same with it.
    pub fn report_recent(&self, on: bool) {
        self.state.lock().recent_reported = on;
    }
}

impl Mailbox {
    fn new(
        validity: UidValidity,
        delimiter: Option<char>,
        selectable: bool,
        special_use: Option<&str>,
    ) -> Self {
        Mailbox {
            delimiter,
            selectable,
            listed_noselect: false,
            special_use: special_use.map(normalize_special_use),
            validity,
            next_uid: 1,
            highest_modseq: 1,
            keywords: Keywords::default(),
            first_recent_uid: 1,
            messages: BTreeMap::new(),
        }
    }
}

impl Mailbox {
    /// Add a message under the next UID, its flags kept as the mailbox's index keeps them.
    fn insert(&mut self, mut message: Message) -> Uid {
        let uid = Uid(self.next_uid);
        self.next_uid = self.next_uid.saturating_add(1);
        message.flags = self.keywords.index_flags(&message.flags);
        self.highest_modseq += 1;
        message.modseq = self.highest_modseq;
        self.messages.insert(uid, message);
        uid
    }

    /// Take a message out (expunge, or the source side of a move).
    fn remove(&mut self, uid: Uid) -> Option<Message> {
        let message = self.messages.remove(&uid)?;
        self.highest_modseq += 1;
        Some(message)
    }

    /// Replace a message's flags; returns them as kept, or `None` if there is no such
    /// message.
    fn replace_flags<S: AsRef<str>>(&mut self, uid: Uid, flags: &[S]) -> Option<Vec<String>> {
        let message = self.messages.get_mut(&uid)?;
        message.flags = self.keywords.index_flags(flags);
        self.highest_modseq += 1;
        message.modseq = self.highest_modseq;
        Some(message.flags.clone())
    }

    /// A read-write SELECT: the session that made it takes the `\Recent` flags, so no
    /// message is recent for anyone else any more.
    fn claim_recent(&mut self) {
        self.first_recent_uid = self.next_uid;
    }

    /// What a listing says of the message `uid`, if there is one; `\Recent` only where
    /// `recent_reported`.
    fn meta(&self, uid: Uid, recent_reported: bool) -> Option<MessageMeta> {
        let message = self.messages.get(&uid)?;
        let recent = recent_reported && uid.0 >= self.first_recent_uid;
        Some(message.meta(uid, recent))
    }

    /// What CONDSTORE's EXAMINE reports.
    fn version(&self) -> MailboxVersion {
        MailboxVersion {
            uid_validity: self.validity,
            uid_next: self.next_uid,
            exists: self.messages.len() as u32,
            highest_modseq: self.highest_modseq,
        }
    }
}

/// Hand out the next UIDVALIDITY.
fn take_validity(next_validity: &mut u32) -> UidValidity {
    let validity = UidValidity(*next_validity);
    *next_validity = next_validity.saturating_add(1);
    validity
}

impl State {
    fn create_mailbox(
        &mut self,
        name: &str,
        delimiter: Option<char>,
        selectable: bool,
        special_use: Option<&str>,
    ) {
        let validity = take_validity(&mut self.next_validity);
        let mailbox = Mailbox::new(validity, delimiter, selectable, special_use);
        self.mailboxes.insert(name.to_string(), mailbox);
    }

    /// Make every missing parent of `name` a `\Noselect` mailbox, as a server lists them.
    fn create_ancestors(&mut self, name: &str, delimiter: char) {
        for (end, _) in name.match_indices(delimiter) {
            let parent = &name[..end];
            if !parent.is_empty() && !self.mailboxes.contains_key(parent) {
                self.create_mailbox(parent, Some(delimiter), false, None);
            }
        }
    }

    /// The mailbox called `name`, created (selectable, delimiter `/`, with its parents) if
    /// missing.
    fn mailbox_or_create(&mut self, name: &str) -> &mut Mailbox {
        if !self.mailboxes.contains_key(name) {
            self.create_ancestors(name, '/');
        }
        let State {
            mailboxes,
            next_validity,
            ..
        } = self;
        mailboxes
            .entry(name.to_string())
            .or_insert_with(|| Mailbox::new(take_validity(next_validity), Some('/'), true, None))
    }

    /// The wire name for a new or renamed mailbox at `path`, as the IMAP store makes it.
    fn wire_for(&self, path: &[String]) -> StoreResult<MailboxId> {
        let known = self
            .mailboxes
            .iter()
            .map(|(wire, mailbox)| {
                (
                    names::path_of(wire, mailbox.delimiter, &names::Prefix::default()),
                    wire.clone(),
                )
            })
            .collect();
        names::wire_for(path, Some('/'), &names::Prefix::default(), &known)
            .map(|w| MailboxId::new(&w))
    }

    /// Count a call of `op` and hand out its injected failure, if one is queued.
    fn begin(&mut self, op: Op) -> StoreResult<()> {
        self.calls[op.index()] += 1;
        match self.failures[op.index()].pop_front() {
            Some(err) => Err(err()),
            None => Ok(()),
        }
    }

    /// A mailbox that can be selected, or the error a server gives for it.
    fn selectable(&self, name: &MailboxId) -> StoreResult<&Mailbox> {
        validate_name(name)?;
        let mailbox = self
            .mailboxes
            .get(canonical_name(name.as_str()).as_str())
            .ok_or_else(|| StoreError::NoSuchMailbox(name.clone()))?;
        if !mailbox.selectable {
            return Err(StoreError::Refused(format!("{name} is \\Noselect")));
        }
        Ok(mailbox)
    }

    /// A selectable mailbox, still under the UIDVALIDITY the caller knows.
    fn selected(&self, name: &MailboxId, validity: UidValidity) -> StoreResult<&Mailbox> {
        let mailbox = self.selectable(name)?;
        if mailbox.validity != validity {
            return Err(StoreError::UidValidityChanged {
                mailbox: name.clone(),
                expected: validity,
                actual: mailbox.validity,
            });
        }
        Ok(mailbox)
    }

    /// A message under the UIDVALIDITY the caller knows.
    fn message(&self, name: &MailboxId, validity: UidValidity, uid: Uid) -> StoreResult<&Message> {
        self.selected(name, validity)?
            .messages
            .get(&uid)
            .ok_or_else(|| StoreError::NoSuchMessage {
                mailbox: name.clone(),
                uid,
            })
    }
}

impl MailStore for MemoryStore {
    fn list_mailboxes(&self) -> StoreResult<Vec<MailboxInfo>> {
        let mut state = self.state.lock();
        state.begin(Op::ListMailboxes)?;
        // INBOX sorts first among upper-case names but not before e.g. "Archive"; put it first.
        let (inbox, others): (Vec<_>, Vec<_>) = state
            .mailboxes
            .iter()
            .partition(|(name, _)| name.as_str() == INBOX);
        let infos = inbox
            .into_iter()
            .chain(others)
            .map(|(name, mailbox)| MailboxInfo {
                id: MailboxId::new(name),
                path: names::path_of(name, mailbox.delimiter, &names::Prefix::default()),
                selectable: mailbox.selectable && !mailbox.listed_noselect,
                special_use: mailbox.special_use.clone(),
            })
            .collect();
        Ok(infos)
    }

    fn list_messages(&self, mailbox: &MailboxId) -> StoreResult<MailboxListing> {
        let mut state = self.state.lock();
        state.begin(Op::ListMessages)?;
        let mailbox = state.selectable(mailbox)?;
        let messages = mailbox
            .messages
            .keys()
            .filter_map(|&uid| mailbox.meta(uid, state.recent_reported))
            .collect();
        Ok(MailboxListing {
            uid_validity: mailbox.validity,
            messages,
            version: state.condstore.then(|| mailbox.version()),
        })
    }

    fn mailbox_version(&self, mailbox: &MailboxId) -> StoreResult<Option<MailboxVersion>> {
        let mut state = self.state.lock();
        state.begin(Op::MailboxVersion)?;
        let version = state.selectable(mailbox)?.version();
        Ok(state.condstore.then_some(version))
    }

    /// As the IMAP store finds it with CONDSTORE and no QRESYNC: flags changed since
    /// `known`, messages from its UIDNEXT on, and expunges only where the count says some
    /// went (then by comparing `held` with every UID now).
    fn changes_since(
        &self,
        mailbox: &MailboxId,
        known: MailboxVersion,
        held: &[Uid],
    ) -> StoreResult<Option<(MailboxChange, MailboxVersion)>> {
        let mut state = self.state.lock();
        state.begin(Op::ChangesSince)?;
        if !state.condstore {
            return Ok(None);
        }
        let recent = state.recent_reported;
        let boxed = state.selectable(mailbox)?;
        if boxed.validity != known.uid_validity {
            return Ok(None);
        }
        let mut change = MailboxChange {
            validity: Some(boxed.validity),
            ..MailboxChange::new(mailbox.clone())
        };
        for (&uid, message) in &boxed.messages {
            if uid.0 >= known.uid_next {
                change.arrived.extend(boxed.meta(uid, recent));
            } else if message.modseq > known.highest_modseq {
                if let Some(meta) = boxed.meta(uid, recent) {
                    change.flags.push((uid, meta.flags));
                }
            }
        }
        let now = boxed.version();
        if now.exists as usize != known.exists as usize + change.arrived.len() {
            change.vanished = held
                .iter()
                .copied()
                .filter(|uid| !boxed.messages.contains_key(uid))
                .collect();
        }
        Ok(Some((change, now)))
    }

    /// One request for all of `uids`; UIDs that are gone are left out.
    fn body_structures(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uids: &[Uid],
    ) -> StoreResult<Vec<MessageStructure>> {
        if uids.is_empty() {
            return Ok(Vec::new()); // the IMAP store sends nothing either
        }
        let answer = {
            let mut state = self.state.lock();
            state.begin(Op::BodyStructures)?;
            let mailbox = state.selected(mailbox, validity)?;
            let wanted: BTreeSet<Uid> = uids.iter().copied().collect();
            wanted
                .into_iter()
                .filter_map(|uid| {
                    let message = mailbox.messages.get(&uid)?;
                    Some(MessageStructure {
                        uid,
                        size: message.raw.len() as u64,
                        body: message.root.body_structure(),
                    })
                })
                .collect()
        };
        self.run_after(Op::BodyStructures);
        Ok(answer)
    }

    /// One request for everything wanted; UIDs that are gone are left out.
    fn fetch_parts(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        wanted: &[(Uid, Vec<PartItem>)],
    ) -> StoreResult<Vec<(Uid, PartItem, PartValue)>> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let answer = {
            let mut state = self.state.lock();
            state.begin(Op::FetchSection)?;
            let binary = state.capabilities.binary;
            let mailbox = state.selected(mailbox, validity)?;
            let mut out = Vec::new();
            for (uid, items) in wanted {
                let Some(message) = mailbox.messages.get(uid) else {
                    continue;
                };
                for item in items {
                    let decoded = matches!(
                        item,
                        PartItem::DecodedSize(_)
                            | PartItem::Bytes {
                                transfer: Transfer::Decoded,
                                ..
                            }
                    );
                    if decoded && !binary {
                        return Err(StoreError::Unsupported("no BINARY".into()));
                    }
                    if let Some(value) = message.part(item)? {
                        out.push((*uid, item.clone(), value));
                    }
                }
            }
            state.bytes_served += out
                .iter()
                .map(|(_, _, v)| match v {
                    PartValue::Bytes(b) => b.len() as u64,
                    PartValue::Size(_) => 8,
                })
                .sum::<u64>();
            out
        };
        self.run_after(Op::FetchSection);
        Ok(answer)
    }

    fn find_by_message_id(
        &self,
        mailbox: &MailboxId,
        message_id: &str,
    ) -> StoreResult<(UidValidity, Vec<MessageMeta>)> {
        let mut state = self.state.lock();
        state.begin(Op::Search)?;
        let mailbox = state.selectable(mailbox)?;
        let found = mailbox
            .messages
            .iter()
            // `SEARCH HEADER` matches a substring, without regard to case (RFC 3501 §6.4.4).
            .filter(|(_, m)| {
                convert::header_field(&m.raw, "message-id").is_some_and(|v| {
                    String::from_utf8_lossy(&v)
                        .to_lowercase()
                        .contains(&message_id.to_lowercase())
                })
            })
            .filter_map(|(&uid, _)| mailbox.meta(uid, state.recent_reported))
            .collect();
        Ok((mailbox.validity, found))
    }

    fn search(&self, mailbox: &MailboxId, key: &SearchKey) -> StoreResult<Vec<Uid>> {
        let mut state = self.state.lock();
        state.begin(Op::SearchMessages)?;
        let mailbox = state.selectable(mailbox)?;
        let mut found = Vec::new();
        for (&uid, m) in &mailbox.messages {
            let fields = header_parser::Fields::parse(crate::search::local::header_block(&m.raw));
            let values = |name: &str| -> Vec<Vec<u8>> {
                fields
                    .named(name)
                    .map(|v| {
                        v.iter()
                            .copied()
                            .filter(|&b| b != b'\r' && b != b'\n')
                            .collect()
                    })
                    .collect()
            };
            let candidate = crate::search::local::Candidate {
                uid,
                raw: &m.raw,
                flags: &m.flags,
                internal_date: m.internal_date,
                size: m.raw.len() as u64,
                fields: &values,
            };
            let matched = candidate
                .matches(key)
                .map_err(|crate::search::local::Unsupported(why)| StoreError::Invalid(why))?;
            if matched {
                found.push(uid);
            }
        }
        Ok(found)
    }

    fn stats(&self) -> StoreStats {
        let state = self.state.lock();
        StoreStats {
            commands: state.calls.iter().sum(),
            bytes_received: state.bytes_served,
            bytes_sent: state.bytes_sent,
        }
    }

    fn capabilities(&self) -> Capabilities {
        self.state.lock().capabilities
    }

    fn is_reachable(&self) -> bool {
        !self.state.lock().unreachable
    }

    fn create_mailbox(&self, path: &[String]) -> StoreResult<MailboxId> {
        let created = {
            let mut state = self.state.lock();
            // A name the IMAP store refuses is refused before any command goes out.
            let wire = state.wire_for(path)?;
            state.begin(Op::CreateMailbox)?;
            state.create(&wire).map(|()| wire)
        };
        self.run_after(Op::CreateMailbox);
        created
    }

    fn delete_mailbox(&self, mailbox: &MailboxId) -> StoreResult<()> {
        let mut state = self.state.lock();
        state.begin(Op::DeleteMailbox)?;
        state.delete(mailbox)
    }

    fn rename_mailbox(&self, from: &MailboxId, to: &[String]) -> StoreResult<MailboxId> {
        let mut state = self.state.lock();
        let wire = state.wire_for(to)?;
        state.begin(Op::RenameMailbox)?;
        state.rename(from, &wire)?;
        Ok(wire)
    }

    fn set_flags(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        flags: &[Flag],
    ) -> StoreResult<()> {
        let stored = {
            let mut state = self.state.lock();
            state.begin(Op::SetFlags)?;
            state.store_flags(mailbox, validity, uid, flags)
        };
        self.run_after(Op::SetFlags);
        stored
    }

    fn change_flags(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        add: &[Flag],
        remove: &[Flag],
    ) -> StoreResult<()> {
        let stored = {
            let mut state = self.state.lock();
            state.begin(Op::SetFlags)?;
            state.add_remove_flags(mailbox, validity, uid, add, remove)
        };
        self.run_after(Op::SetFlags);
        stored
    }

    /// Both commands at once: the message is changed whole or not at all.
    fn change_flags_unchanged_since(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        add: &[Flag],
        remove: &[Flag],
        since: u64,
    ) -> StoreResult<ConditionalStore> {
        let stored = {
            let mut state = self.state.lock();
            if !state.condstore {
                return Ok(ConditionalStore::NotOffered);
            }
            state.begin(Op::SetFlags)?;
            state.add_remove_flags_unchanged_since(mailbox, validity, uid, add, remove, since)
        };
        self.run_after(Op::SetFlags);
        stored
    }

    fn flags_now(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
    ) -> StoreResult<FlagsNow> {
        let now = {
            let mut state = self.state.lock();
            state.begin(Op::FetchFlags)?;
            let modseq = state.message(mailbox, validity, uid)?.modseq;
            let meta = state
                .selected(mailbox, validity)?
                .meta(uid, state.recent_reported);
            FlagsNow {
                flags: meta.map(|m| m.flags).unwrap_or_default(),
                modseq: state.condstore.then_some(modseq),
            }
        };
        self.run_after(Op::FetchFlags);
        Ok(now)
    }

    fn move_message(
        &self,
        from: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        to: &MailboxId,
    ) -> StoreResult<Option<(UidValidity, Uid)>> {
        let moved = {
            let mut state = self.state.lock();
            state.begin(Op::MoveMessage)?;
            state.move_one(from, validity, uid, to)
        };
        self.run_after(Op::MoveMessage);
        moved
    }

    fn copy_message(
        &self,
        from: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        to: &MailboxId,
    ) -> StoreResult<Option<(UidValidity, Uid)>> {
        let copied = {
            let mut state = self.state.lock();
            state.begin(Op::CopyMessage)?;
            state.copy_one(from, validity, uid, to)
        };
        self.run_after(Op::CopyMessage);
        copied
    }

    fn expunge_message(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
    ) -> StoreResult<()> {
        let expunged = {
            let mut state = self.state.lock();
            state.begin(Op::ExpungeMessage)?;
            state.expunge_one(mailbox, validity, uid)
        };
        self.run_after(Op::ExpungeMessage);
        expunged
    }

    fn append(
        &self,
        mailbox: &MailboxId,
        message: NewMessage<'_>,
    ) -> StoreResult<Option<(UidValidity, Uid)>> {
        let mut bytes = Vec::with_capacity(usize::try_from(message.len).unwrap_or(0));
        std::io::Read::read_to_end(message.content, &mut bytes)
            .map_err(|e| StoreError::Invalid(format!("reading the message to store: {e}")))?;
        if bytes.len() as u64 != message.len {
            return Err(StoreError::Invalid(format!(
                "the message to store has {} bytes, not the {} announced",
                bytes.len(),
                message.len
            )));
        }
        let appended = {
            let mut state = self.state.lock();
            state.begin(Op::Append)?;
            let uidplus = state.capabilities.uidplus;
            // Without UIDPLUS: no APPENDUID, as most such servers (Dovecot sends it anyway).
            state
                .append_one(
                    mailbox,
                    &bytes,
                    message.flags,
                    message.internal_date,
                    message.binary,
                )
                .map(|appended| appended.filter(|_| uidplus))
        };
        self.run_after(Op::Append);
        appended
    }

    fn watch(&self, sink: EventSink) {
        self.state.lock().sink = Some(sink);
    }

    /// A store with a watcher reports every change of a followed mailbox (its remote-change
    /// helpers do), as NOTIFY does.
    fn follow(&self, mailbox: &MailboxId, _known: Option<MailboxVersion>) {
        let mut state = self.state.lock();
        if state.sink.is_some() {
            state.followed.insert(canonical_name(mailbox.as_str()));
        }
    }

    fn is_followed(&self, mailbox: &MailboxId) -> bool {
        let state = self.state.lock();
        state.sink.is_some() && state.followed.contains(&canonical_name(mailbox.as_str()))
    }

    fn is_list_followed(&self) -> bool {
        self.state.lock().sink.is_some()
    }
}

/// Sends an event to the watcher, if there is one (called with no lock held).
fn emit(sink: Option<EventSink>, event: StoreEvent) {
    if let Some(sink) = sink {
        sink(event);
    }
}

/// The inbox is `INBOX` whatever its case, also as the first level of a name
/// (`inbox/sub` is `INBOX/sub`, as Dovecot lists it); other names are case-sensitive.
fn canonical_name(name: &str) -> String {
    let (first, rest) = name.split_at(name.find('/').unwrap_or(name.len()));
    if first.eq_ignore_ascii_case(INBOX) {
        format!("{INBOX}{rest}")
    } else {
        name.to_string()
    }
}

/// The real store refuses names it could not send (`quote::mailbox_arg`); so does this one.
fn validate_name(name: &MailboxId) -> StoreResult<()> {
    if name.as_str().is_empty() {
        return Err(StoreError::Invalid("empty mailbox name".into()));
    }
    if name.as_str().contains(['\r', '\n', '\0']) || !name.as_str().is_ascii() {
        return Err(StoreError::Invalid(format!(
            "mailbox name {:?} has CR, LF, NUL or 8-bit characters",
            name.as_str()
        )));
    }
    Ok(())
}

/// `\Trash` -> `trash`, as `MailboxInfo::special_use` holds it.
fn normalize_special_use(attribute: &str) -> String {
    attribute.trim_start_matches('\\').to_ascii_lowercase()
}

/// Line breaks as Dovecot's Maildir stores a message (CRLF -> LF, a final lone CR dropped)
/// and then serves it (LF -> CRLF).
fn normalize_line_breaks(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    let mut previous_stored = None;
    for (i, &b) in raw.iter().enumerate() {
        let next = raw.get(i + 1).copied();
        if b == b'\r' && matches!(next, Some(b'\n') | None) {
            continue; // not stored
        }
        if b == b'\n' && previous_stored != Some(b'\r') {
            out.push(b'\r');
        }
        out.push(b);
        previous_stored = Some(b);
    }
    out
}

/// Dovecot sends NUL bytes of a message as 0x80.
fn replace_nuls(bytes: &mut [u8]) {
    for b in bytes.iter_mut().filter(|b| **b == 0) {
        *b = 0x80;
    }
}

/// IMAP INTERNALDATE has whole-second resolution; truncate toward the past.
fn whole_seconds(time: SystemTime) -> SystemTime {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => UNIX_EPOCH + Duration::from_secs(since.as_secs()),
        Err(before) => {
            let before = before.duration();
            let secs = before.as_secs() + u64::from(before.subsec_nanos() > 0);
            UNIX_EPOCH
                .checked_sub(Duration::from_secs(secs))
                .unwrap_or(time)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mime::dovecot::message_parser::tests::{header, leaf};
    use crate::store::{ByteRange, Section, TransferEncoding};

    /// multipart/mixed: [1 multipart/alternative: [1.1 text/plain, 1.2 text/html],
    /// 2 image/png attachment, 3 message/rfc822: [multipart/mixed: [3.1
    /// multipart/alternative: [3.1.1 text/plain, 3.1.2 text/html], 3.2 text/csv]]].
    const SAMPLE: &str = concat!(
        "Subject: =?utf-8?q?Re=3A_caf=C3=A9?=\r\n",
        "\t=?utf-8?q?_au_lait?=\r\n",
        "MIME-Version: 1.0\r\n",
        "Content-Type: multipart/mixed; boundary=\"=_outer\"\r\n",
        "\r\n",
        "--=_outer\r\n",
        "Content-Type: multipart/alternative; boundary=alt\r\n",
        "\r\n",
        "--alt\r\n",
        "Content-Type: text/plain; charset=utf-8\r\n",
        "\r\n",
        "hello\r\n",
        "--alt\r\n",
        "Content-Type: text/html; charset=utf-8\r\n",
        "\r\n",
        "<p>hello</p>\r\n",
        "--alt--\r\n",
        "\r\n",
        "--=_outer\r\n",
        "Content-Type: image/png; name=dot.png\r\n",
        "Content-Disposition: attachment; filename=\"dot.png\"\r\n",
        "Content-Transfer-Encoding: base64\r\n",
        "\r\n",
        "iVBORw0KGgo=\r\n",
        "--=_outer\r\n",
        "Content-Type: message/rfc822\r\n",
        "\r\n",
        "Subject: forwarded\r\n",
        "Content-Type: multipart/mixed; boundary=fwd\r\n",
        "\r\n",
        "--fwd\r\n",
        "Content-Type: multipart/alternative; boundary=fwd-alt\r\n",
        "\r\n",
        "--fwd-alt\r\n",
        "\r\n",
        "inner plain\r\n",
        "--fwd-alt\r\n",
        "Content-Type: text/html\r\n",
        "\r\n",
        "<i>inner</i>\r\n",
        "--fwd-alt--\r\n",
        "--fwd\r\n",
        "Content-Type: text/csv\r\n",
        "\r\n",
        "a,b\r\n",
        "--fwd--\r\n",
        "--=_outer--\r\n",
    );

    const INBOX_NAME: &str = "INBOX";

    fn inbox() -> MailboxId {
        MailboxId::new(INBOX_NAME)
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// A store with SAMPLE in INBOX as UID 1.
    fn sample_store() -> (MemoryStore, UidValidity, Uid) {
        let store = MemoryStore::new();
        let uid = store.add_message(
            INBOX_NAME,
            SAMPLE.as_bytes(),
            &["\\Seen"],
            at(1_700_000_000),
        );
        let validity = store.uid_validity(INBOX_NAME);
        (store, validity, uid)
    }

    fn fetch(store: &MemoryStore, validity: UidValidity, uid: Uid, path: &[u32]) -> String {
        let bytes = store
            .fetch_section(
                &inbox(),
                validity,
                uid,
                &Section(path.to_vec()),
                Transfer::Encoded,
                None,
            )
            .unwrap();
        String::from_utf8(bytes).unwrap()
    }

    fn range(offset: u64, len: u64) -> Option<ByteRange> {
        Some(ByteRange { offset, len })
    }

    #[test]
    fn store_is_send_and_sync() {
        fn shared<T: Send + Sync + 'static>() {}
        shared::<MemoryStore>();
        let store: Arc<dyn MailStore> = Arc::new(MemoryStore::new());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || store.list_mailboxes().map(|m| m.len()))
            })
            .collect();
        for handle in handles {
            assert_eq!(handle.join().unwrap().unwrap(), 1);
        }
        assert_eq!(store.stats().commands, 4);
    }

    #[test]
    fn mailboxes_are_listed_inbox_first() {
        let store = MemoryStore::default();
        store.add_mailbox("Archive", Some('/'), true, Some("\\Archive"));
        store.add_mailbox("Work", Some('.'), false, None);
        store.add_mailbox("Work.Old", Some('.'), true, None);
        store.add_mailbox("Trash", Some('/'), true, Some("trash"));
        let names: Vec<String> = store
            .list_mailboxes()
            .unwrap()
            .into_iter()
            .map(|m| m.id.to_string())
            .collect();
        assert_eq!(names, ["INBOX", "Archive", "Trash", "Work", "Work.Old"]);
        let list = store.list_mailboxes().unwrap();
        assert_eq!(
            list[0],
            MailboxInfo {
                id: inbox(),
                path: vec!["INBOX".to_string()],
                selectable: true,
                special_use: None,
            }
        );
        assert_eq!(list[1].special_use.as_deref(), Some("archive"));
        assert_eq!(list[2].special_use.as_deref(), Some("trash"));
        assert_eq!((list[3].path.len(), list[3].selectable), (1, false));
        // The delimiter splits the path.
        assert_eq!(list[4].path, ["Work", "Old"]);
        // Adding again changes attributes but keeps messages and UIDVALIDITY.
        let validity = store.uid_validity("Trash");
        store.add_message("Trash", b"Subject: x\r\n\r\n", &[], at(0));
        store.add_mailbox("Trash", None, true, None);
        let trash = &store.list_mailboxes().unwrap()[2];
        assert_eq!(trash.special_use.as_deref(), None);
        assert_eq!(store.uid_validity("Trash"), validity);
        assert_eq!(
            store
                .list_messages(&MailboxId::new("Trash"))
                .unwrap()
                .messages
                .len(),
            1
        );
    }

    #[test]
    fn listing_reports_metadata_like_a_fetch() {
        let (store, validity, uid) = sample_store();
        let late = UNIX_EPOCH + Duration::from_millis(1_700_000_100_900);
        let second = store.add_message("inbox", b"No subject here\r\n\r\nbody\r\n", &[], late);
        let listing = store.list_messages(&inbox()).unwrap();
        assert_eq!(listing.uid_validity, validity);
        assert_eq!(listing.messages.len(), 2);
        let first = &listing.messages[0];
        assert_eq!(first.uid, uid);
        assert_eq!(first.size, SAMPLE.len() as u64);
        assert_eq!(first.internal_date, at(1_700_000_000));
        assert_eq!(first.flags, vec!["\\Seen".to_string()]);
        // ENVELOPE subject: unfolded, whitespace runs made one space, still encoded.
        assert_eq!(
            first.subject.as_deref(),
            Some(&b"=?utf-8?q?Re=3A_caf=C3=A9?= =?utf-8?q?_au_lait?="[..])
        );
        let next = &listing.messages[1];
        assert_eq!((next.uid, next.subject.as_deref()), (second, None));
        assert_eq!(second, Uid(2));
        // INTERNALDATE has whole seconds.
        assert_eq!(next.internal_date, at(1_700_000_100));
    }

    #[test]
    fn unknown_and_unselectable_mailboxes() {
        let store = MemoryStore::new();
        store.add_mailbox("Folders", Some('/'), false, None);
        let missing = MailboxId::new("Nope");
        assert!(matches!(
            store.list_messages(&missing),
            Err(StoreError::NoSuchMailbox(name)) if name == missing
        ));
        let noselect = MailboxId::new("Folders");
        assert!(matches!(
            store.list_messages(&noselect),
            Err(StoreError::Refused(_))
        ));
        assert!(matches!(
            store.body_structure(&noselect, UidValidity(1), Uid(1)),
            Err(StoreError::Refused(_))
        ));
        let bad = MailboxId::new("a\r\nb");
        assert!(matches!(
            store.list_messages(&bad),
            Err(StoreError::Invalid(_))
        ));
        // The inbox is found whatever its case.
        assert!(store.list_messages(&MailboxId::new("Inbox")).is_ok());
    }

    #[test]
    fn body_structure_of_the_sample() {
        let (store, validity, uid) = sample_store();
        let part = store.body_structure(&inbox(), validity, uid).unwrap();
        let mut png = header("image", "png", &[("name", "dot.png")]);
        png.disposition = Some("attachment".into());
        png.disposition_params = vec![("filename".into(), "dot.png".into())];
        let us_ascii = |subtype: &str| header("text", subtype, &[("charset", "us-ascii")]);
        let utf8 = |subtype: &str| header("text", subtype, &[("charset", "utf-8")]);
        let forwarded = fetch(&store, validity, uid, &[3]);
        let expected = BodyPart::Multipart {
            header: header("multipart", "mixed", &[("boundary", "=_outer")]),
            children: vec![
                BodyPart::Multipart {
                    header: header("multipart", "alternative", &[("boundary", "alt")]),
                    children: vec![
                        leaf(utf8("plain"), TransferEncoding::SevenBit, "hello"),
                        leaf(utf8("html"), TransferEncoding::SevenBit, "<p>hello</p>"),
                    ],
                },
                leaf(png, TransferEncoding::Base64, "iVBORw0KGgo="),
                BodyPart::Message {
                    header: header("message", "rfc822", &[]),
                    encoding: TransferEncoding::SevenBit,
                    octets: forwarded.len() as u64,
                    subject: Some(b"forwarded".to_vec()),
                    body: Box::new(BodyPart::Multipart {
                        header: header("multipart", "mixed", &[("boundary", "fwd")]),
                        children: vec![
                            BodyPart::Multipart {
                                header: header(
                                    "multipart",
                                    "alternative",
                                    &[("boundary", "fwd-alt")],
                                ),
                                children: vec![
                                    leaf(
                                        us_ascii("plain"),
                                        TransferEncoding::SevenBit,
                                        "inner plain",
                                    ),
                                    leaf(
                                        us_ascii("html"),
                                        TransferEncoding::SevenBit,
                                        "<i>inner</i>",
                                    ),
                                ],
                            },
                            leaf(us_ascii("csv"), TransferEncoding::SevenBit, "a,b"),
                        ],
                    }),
                },
            ],
        };
        assert_eq!(part, expected);
    }

    #[test]
    fn sections_of_the_sample_are_exact() {
        let (store, validity, uid) = sample_store();
        let get = |path: &[u32]| fetch(&store, validity, uid, path);
        assert_eq!(get(&[]), SAMPLE);
        assert_eq!(
            get(&[1]),
            concat!(
                "--alt\r\n",
                "Content-Type: text/plain; charset=utf-8\r\n",
                "\r\n",
                "hello\r\n",
                "--alt\r\n",
                "Content-Type: text/html; charset=utf-8\r\n",
                "\r\n",
                "<p>hello</p>\r\n",
                "--alt--\r\n",
            )
        );
        assert_eq!(get(&[1, 1]), "hello");
        assert_eq!(get(&[1, 2]), "<p>hello</p>");
        assert_eq!(get(&[2]), "iVBORw0KGgo=");
        let forwarded = get(&[3]);
        assert!(forwarded.starts_with("Subject: forwarded\r\nContent-Type: multipart/mixed"));
        assert!(forwarded.ends_with("a,b\r\n--fwd--\r\n"));
        assert!(get(&[3, 1]).starts_with("--fwd-alt\r\n\r\ninner plain\r\n"));
        assert_eq!(get(&[3, 1, 1]), "inner plain");
        assert_eq!(get(&[3, 1, 2]), "<i>inner</i>");
        assert_eq!(get(&[3, 2]), "a,b");
        // Sections that name no part are empty, as Dovecot answers them.
        assert_eq!(get(&[4]), "");
        assert_eq!(get(&[3, 3]), "");
        assert!(matches!(
            store.fetch_section(
                &inbox(),
                validity,
                uid,
                &Section(vec![3, 0]),
                Transfer::Encoded,
                None
            ),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn partial_fetches_are_clipped() {
        let (store, validity, uid) = sample_store();
        let partial = |path: &[u32], r: Option<ByteRange>| {
            let bytes = store
                .fetch_section(
                    &inbox(),
                    validity,
                    uid,
                    &Section(path.to_vec()),
                    Transfer::Encoded,
                    r,
                )
                .unwrap();
            String::from_utf8(bytes).unwrap()
        };
        assert_eq!(partial(&[1, 2], range(3, 5)), "hello");
        assert_eq!(partial(&[1, 2], range(3, 1000)), "hello</p>");
        assert_eq!(partial(&[1, 2], range(12, 1)), "");
        assert_eq!(partial(&[1, 2], range(100, 1)), "");
        assert_eq!(partial(&[1, 2], range(0, 0)), "");
        assert_eq!(partial(&[1, 2], range(u64::MAX, u64::MAX)), "");
        assert_eq!(partial(&[1, 2], range(4, u64::MAX)), "ello</p>");
        assert_eq!(partial(&[], range(0, 9)), "Subject: ");
        assert_eq!(partial(&[3, 1, 1], range(6, 5)), "plain");
    }

    #[test]
    fn wrong_validity_and_missing_messages() {
        let (store, validity, uid) = sample_store();
        let stale = UidValidity(validity.0 + 100);
        match store.body_structure(&inbox(), stale, uid) {
            Err(StoreError::UidValidityChanged {
                mailbox,
                expected,
                actual,
            }) => assert_eq!((mailbox, expected, actual), (inbox(), stale, validity)),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            store.fetch_section(
                &inbox(),
                stale,
                uid,
                &Section::whole(),
                Transfer::Encoded,
                None
            ),
            Err(StoreError::UidValidityChanged { .. })
        ));
        assert!(matches!(
            store.body_structure(&inbox(), validity, Uid(99)),
            Err(StoreError::NoSuchMessage { uid: Uid(99), .. })
        ));
    }

    #[test]
    fn remote_changes_by_another_client() {
        let (store, validity, uid) = sample_store();
        store.set_flags(
            INBOX_NAME,
            uid,
            &["\\Seen", "\\Flagged", "\\seen", "$Label1"],
        );
        // Listed as Dovecot lists them: system flags first, in its order and spelling.
        let listing = store.list_messages(&inbox()).unwrap();
        assert_eq!(
            listing.messages[0].flags,
            ["\\Flagged", "\\Seen", "$Label1"]
        );
        store.remove_message(INBOX_NAME, uid);
        assert!(store.list_messages(&inbox()).unwrap().messages.is_empty());
        assert!(matches!(
            store.fetch_section(
                &inbox(),
                validity,
                uid,
                &Section::whole(),
                Transfer::Encoded,
                None
            ),
            Err(StoreError::NoSuchMessage { .. })
        ));
        // UIDs are not reused.
        assert_eq!(store.add_message(INBOX_NAME, b"\r\n", &[], at(0)), Uid(2));
        // Helpers on things that do not exist do nothing.
        store.remove_message("Nope", uid);
        store.set_flags("Nope", uid, &[]);
        store.set_flags(INBOX_NAME, Uid(77), &["\\Seen"]);
        store.recreate_mailbox("Nope");
        assert_eq!(store.uid_validity("Nope"), UidValidity(0));
        assert_eq!(store.list_mailboxes().unwrap().len(), 1);
    }

    #[test]
    fn recent_is_reported_until_a_read_write_select() {
        let (store, validity, uid) = sample_store();
        let flags = |store: &MemoryStore| -> Vec<Vec<String>> {
            let listing = store.list_messages(&inbox()).unwrap();
            listing.messages.into_iter().map(|m| m.flags).collect()
        };
        assert_eq!(flags(&store), [["\\Seen"]], "off by default");
        store.report_recent(true);
        assert_eq!(flags(&store), [["\\Seen", "\\Recent"]]);
        // Reading (EXAMINE) leaves it; another client's STORE (SELECT) takes it.
        assert_eq!(flags(&store), [["\\Seen", "\\Recent"]]);
        store.set_flags(INBOX_NAME, uid, &["$x", "\\Answered"]);
        assert_eq!(flags(&store), [["\\Answered", "$x"]]);
        // A new message is recent until the IMAP store's own change SELECTs the mailbox.
        let second = store.add_message(INBOX_NAME, b"Subject: 2\r\n\r\n", &["$x"], at(0));
        assert_eq!(
            flags(&store),
            [vec!["\\Answered", "$x"], vec!["\\Recent", "$x"]]
        );
        let seen = [Flag::parse("\\Seen").unwrap()];
        MailStore::set_flags(&store, &inbox(), validity, uid, &seen).unwrap();
        assert_eq!(flags(&store), [vec!["\\Seen"], vec!["$x"]]);
        // A message moved in is recent in its new mailbox; a recreated one starts afresh.
        store.add_mailbox("Archive", Some('/'), true, None);
        let archive = MailboxId::new("Archive");
        store
            .move_message(&inbox(), validity, second, &archive)
            .unwrap();
        let moved = store.list_messages(&archive).unwrap().messages;
        assert_eq!(moved[0].flags, ["\\Recent", "$x"]);
        store.recreate_mailbox("Archive");
        store.add_message("Archive", b"Subject: 3\r\n\r\n", &[], at(0));
        let fresh = store.list_messages(&archive).unwrap().messages;
        assert_eq!(fresh[0].flags, ["\\Recent"]);
    }

    #[test]
    fn message_ids_are_found_as_search_header_finds_them() {
        let store = MemoryStore::new();
        let raw = b"Subject: x\r\nMessage-ID: <Abc.1@Example.org>\r\n\r\nbody\r\n";
        let uid = store.add_message(INBOX_NAME, raw, &[], at(0));
        store.add_message(INBOX_NAME, b"Subject: no id\r\n\r\n", &[], at(0));
        let found = |id: &str| -> Vec<Uid> {
            let (_, metas) = store.find_by_message_id(&inbox(), id).unwrap();
            metas.into_iter().map(|m| m.uid).collect()
        };
        assert_eq!(found("<Abc.1@Example.org>"), [uid]);
        assert_eq!(found("abc.1@example.ORG"), [uid], "a substring, any case");
        assert!(found("<Abc.2@Example.org>").is_empty());
        assert_eq!(store.count(Op::Search), 3);
    }

    #[test]
    fn recreating_a_mailbox_changes_its_validity() {
        let (store, old, uid) = sample_store();
        store.add_mailbox("Other", Some('/'), true, None);
        let other = store.uid_validity("Other");
        store.recreate_mailbox(INBOX_NAME);
        let new = store.uid_validity(INBOX_NAME);
        assert!(new > old && new != other);
        let listing = store.list_messages(&inbox()).unwrap();
        assert_eq!((listing.uid_validity, listing.messages.len()), (new, 0));
        assert!(matches!(
            store.body_structure(&inbox(), old, uid),
            Err(StoreError::UidValidityChanged { actual, .. }) if actual == new
        ));
        // UIDs start again at 1 under the new UIDVALIDITY.
        assert_eq!(
            store.add_message(INBOX_NAME, SAMPLE.as_bytes(), &[], at(0)),
            Uid(1)
        );
    }

    #[test]
    fn add_message_creates_a_missing_mailbox() {
        let store = MemoryStore::new();
        let uid = store.add_message("Lists/rust", b"Subject: hi\r\n\r\n", &[], at(0));
        assert_eq!(uid, Uid(1));
        let list: Vec<(String, bool)> = store
            .list_mailboxes()
            .unwrap()
            .into_iter()
            .map(|m| (m.id.to_string(), m.selectable))
            .collect();
        let expected = [("INBOX", true), ("Lists", false), ("Lists/rust", true)];
        assert_eq!(list, expected.map(|(n, s)| (n.to_string(), s)));
        assert_ne!(
            store.uid_validity("Lists/rust"),
            store.uid_validity(INBOX_NAME)
        );
    }

    #[test]
    fn messages_are_kept_as_dovecot_serves_them() {
        let store = MemoryStore::new();
        let uid = store.add_message(
            INBOX_NAME,
            b"Subject: x\nX: a\0b\n\nbody\r\r\nend\r",
            &[],
            at(0),
        );
        let validity = store.uid_validity(INBOX_NAME);
        let whole = store
            .fetch_section(
                &inbox(),
                validity,
                uid,
                &Section::whole(),
                Transfer::Encoded,
                None,
            )
            .unwrap();
        assert_eq!(whole, b"Subject: x\r\nX: a\x80b\r\n\r\nbody\r\nend");
        let listing = store.list_messages(&inbox()).unwrap();
        assert_eq!(listing.messages[0].size, whole.len() as u64);
        let body = store
            .fetch_section(
                &inbox(),
                validity,
                uid,
                &Section(vec![1]),
                Transfer::Encoded,
                None,
            )
            .unwrap();
        assert_eq!(body, b"body\r\nend");
    }

    #[test]
    fn counters_count_every_call() {
        let (store, validity, uid) = sample_store();
        store.list_mailboxes().unwrap();
        store.list_messages(&inbox()).unwrap();
        store.list_messages(&MailboxId::new("Nope")).unwrap_err();
        store.body_structure(&inbox(), validity, uid).unwrap();
        let whole = Section::whole();
        store
            .fetch_section(
                &inbox(),
                validity,
                uid,
                &Section(vec![1, 1]),
                Transfer::Encoded,
                None,
            )
            .unwrap();
        store
            .fetch_section(
                &inbox(),
                validity,
                uid,
                &whole,
                Transfer::Encoded,
                range(0, 7),
            )
            .unwrap();
        store
            .fetch_section(&inbox(), validity, Uid(9), &whole, Transfer::Encoded, None)
            .unwrap_err();
        assert_eq!(store.count(Op::ListMailboxes), 1);
        assert_eq!(store.count(Op::ListMessages), 2);
        assert_eq!(store.count(Op::BodyStructures), 1);
        assert_eq!(store.count(Op::FetchSection), 3);
        assert_eq!(store.bytes_served(), 5 + 7);
        assert_eq!(
            store.stats(),
            StoreStats {
                commands: 7,
                bytes_received: 12,
                bytes_sent: 0
            }
        );
        // The helpers that play another client are not calls.
        store.add_message(INBOX_NAME, b"\r\n", &[], at(0));
        store.uid_validity(INBOX_NAME);
        assert_eq!(store.stats().commands, 7);
        assert!(format!("{store:?}").contains("INBOX"));
    }

    #[test]
    fn injected_failures_hit_the_next_call_of_their_operation_only() {
        let (store, validity, uid) = sample_store();
        store.fail_next(Op::FetchSection, || StoreError::Timeout("injected".into()));
        store.fail_next(Op::FetchSection, || StoreError::Connection("second".into()));
        store.fail_next(Op::ListMailboxes, || StoreError::Refused("no".into()));
        // Other operations are not affected.
        assert!(store.body_structure(&inbox(), validity, uid).is_ok());
        assert!(store.list_messages(&inbox()).is_ok());
        let whole = Section::whole();
        assert!(matches!(
            store.fetch_section(&inbox(), validity, uid, &whole, Transfer::Encoded, None),
            Err(StoreError::Timeout(m)) if m == "injected"
        ));
        assert!(matches!(
            store.fetch_section(&inbox(), validity, uid, &whole, Transfer::Encoded, None),
            Err(StoreError::Connection(_))
        ));
        assert_eq!(
            store
                .fetch_section(&inbox(), validity, uid, &whole, Transfer::Encoded, None)
                .unwrap(),
            SAMPLE.as_bytes()
        );
        assert!(matches!(
            store.list_mailboxes(),
            Err(StoreError::Refused(_))
        ));
        assert!(store.list_mailboxes().is_ok());
        // Failed calls count, and serve no bytes.
        assert_eq!(store.count(Op::FetchSection), 3);
        assert_eq!(store.count(Op::ListMailboxes), 2);
        assert_eq!(store.bytes_served(), SAMPLE.len() as u64);
        // An injected failure comes before any other check.
        store.fail_next(Op::ListMessages, || StoreError::OverQuota("full".into()));
        assert!(matches!(
            store.list_messages(&MailboxId::new("Nope")),
            Err(StoreError::OverQuota(_))
        ));
    }

    #[test]
    fn whole_seconds_truncate_toward_the_past() {
        assert_eq!(whole_seconds(at(5)), at(5));
        assert_eq!(whole_seconds(at(5) + Duration::from_millis(999)), at(5));
        let before = UNIX_EPOCH - Duration::from_millis(1500);
        assert_eq!(whole_seconds(before), UNIX_EPOCH - Duration::from_secs(2));
    }

    proptest::proptest! {
        #[test]
        fn any_message_can_be_stored_and_fetched(
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            path in proptest::collection::vec(0u32..4, 0..4),
            offset in 0u64..500,
            len in 0u64..500,
        ) {
            let store = MemoryStore::new();
            let uid = store.add_message(INBOX_NAME, &raw, &[], at(0));
            let validity = store.uid_validity(INBOX_NAME);
            store.body_structure(&inbox(), validity, uid).unwrap();
            let whole = store
                .fetch_section(&inbox(), validity, uid, &Section::whole(), Transfer::Encoded, None)
                .unwrap();
            let section = Section(path);
            match store.fetch_section(&inbox(), validity, uid, &section, Transfer::Encoded, range(offset, len)) {
                Ok(bytes) => {
                    proptest::prop_assert!(bytes.len() as u64 <= len);
                    let inside = bytes.is_empty()
                        || whole.windows(bytes.len()).any(|w| w == bytes.as_slice());
                    proptest::prop_assert!(inside);
                }
                Err(StoreError::Invalid(_)) => proptest::prop_assert!(section.0.contains(&0)),
                Err(other) => proptest::prop_assert!(false, "unexpected {other:?}"),
            }
        }
    }
}
