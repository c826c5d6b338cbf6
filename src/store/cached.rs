//! A `MailStore` in front of another that keeps on disk what it was told (the mailbox
//! list, each mailbox's listing with its version, BODYSTRUCTUREs, and the sizes and small
//! bodies that make file sizes exact) and answers from that when the server cannot be
//! reached. Content bytes are kept by the disk `ContentCache` (`cache/disk.rs`), not here.
//!
//! - Warm: a mailbox whose version is the one kept costs one `EXAMINE` to list; one that
//!   changed costs what `changes_since` (QRESYNC) costs, or a full listing without it.
//! - Offline: when the server cannot be reached (at mount, or later), listings, structures
//!   and sizes come from disk, whatever is not there fails at once (EIO), and a thread
//!   tries the server again with backoff; when it answers, the mount is online again and
//!   the core is told to look again.
//! - Disconnected (`cached/disconnected.rs`): changes made offline are journaled and shown
//!   at once, and replayed when the server answers, before the mount is online again.
//!
//! Writes to the index go to a thread of their own, in order, so no answer waits for them.

use std::collections::{BTreeMap, HashSet};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{
    Capabilities, EventSink, Flag, LinkState, MailStore, MailboxChange, MailboxId, MailboxInfo,
    MailboxListing, MailboxVersion, MessageMeta, MessageStructure, NewMessage, PartItem, PartValue,
    Section, StoreError, StoreEvent, StoreResult, StoreStats, Transfer, Uid, UidValidity,
};
use crate::cache::dir::CacheDir;
use crate::cache::disk::DiskCache;
use crate::search::SearchKey;
use crate::store::{ByteRange, Quota};

mod disconnected;
pub mod journal;

use disconnected::{Disconnected, LocalChange};

/// `"list"` → the mailbox list; `"capabilities"` → what the server could do when last seen.
const MAILBOXES: TableDefinition<&str, &[u8]> = TableDefinition::new("mailboxes");
/// Mailbox → its `Head`.
const HEADS: TableDefinition<&str, &[u8]> = TableDefinition::new("heads");
/// (mailbox, UID) → `MessageMeta` as last known.
const MESSAGES: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("messages");
/// (mailbox, UIDVALIDITY, UID) → `MessageStructure`.
const STRUCTURES: TableDefinition<(&str, u32, u32), &[u8]> = TableDefinition::new("structures");
/// (mailbox, UIDVALIDITY, UID, `PartItem`) → `PartValue`.
const PARTS: TableDefinition<(&str, u32, u32, &[u8]), &[u8]> = TableDefinition::new("parts");

/// Byte answers of at most this many bytes asked for a range are kept (the tails that size
/// base64 parts); whole small bodies are kept whatever their size.
const KEPT_RANGE: u64 = 1024;
/// The longest wait between two tries of an unreachable server.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What is known of a mailbox's listing as kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Head {
    validity: UidValidity,
    /// The version the kept listing was taken at.
    version: Option<MailboxVersion>,
    /// Changes were applied after `version` (reports, this mount's changes): the rows are
    /// ahead of it, so it is a version to resync from, not one that describes them.
    dirty: bool,
}

/// Whether the server is being talked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Online,
    /// Since when; `deliberate` (`--offline`): no tries to reconnect.
    Offline {
        since: SystemTime,
        deliberate: bool,
    },
}

/// A write to the index.
enum Job {
    Mailboxes(Vec<MailboxInfo>),
    Capabilities(Capabilities),
    Listing(MailboxId, MailboxListing),
    Change(MailboxChange),
    /// A change of `MailboxId` made here, or a version to resync from next time.
    Dirty(MailboxId),
    /// A listing brought up to date by `changes_since`: the change from the version kept
    /// then (`from`) to the version after (`to`). Applied only to rows still at `from`.
    Resynced {
        change: MailboxChange,
        from: MailboxVersion,
        to: MailboxVersion,
    },
    Structures(MailboxId, Vec<MessageStructure>),
    Parts(MailboxId, UidValidity, Vec<(Uid, PartItem, PartValue)>),
    /// Everything of a mailbox that is gone.
    Forget(MailboxId),
    /// A change made offline, shown in what is kept until the server's listing replaces it.
    Local(LocalChange),
    /// A replay settled what it could: rows under provisional UIDs go, but for these
    /// (changes still waiting), since the server's listing shows the messages now.
    Replayed(HashSet<Uid>),
    Flush(Sender<()>),
    /// The store is going away: finish and end.
    Stop,
}

/// The writer's own handles (not the store's, so that it never keeps the store alive).
struct Writer {
    dir: Arc<CacheDir>,
    content: Option<Arc<DiskCache>>,
}

struct Shared {
    inner: Arc<dyn MailStore>,
    dir: Arc<CacheDir>,
    content: Option<Arc<DiskCache>>,
    link: Mutex<Link>,
    /// Whether a thread is trying the server.
    probing: Mutex<bool>,
    sink: Mutex<Option<EventSink>>,
    jobs: Mutex<Sender<Job>>,
    /// The journal of changes made offline. Locked before `link` where both are.
    disconnected: Mutex<Disconnected>,
    /// Held by the one replay that runs.
    replaying: Mutex<()>,
}

/// The caching, offline-capable store.
pub struct CachedStore {
    shared: Arc<Shared>,
    writer: Option<std::thread::JoinHandle<()>>,
}

/// Dropping the store waits for its writer, so that what was asked is written and the
/// cache directory is free after.
impl Drop for CachedStore {
    fn drop(&mut self) {
        self.shared.send(Job::Stop);
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("serializing to memory cannot fail")
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Option<T> {
    postcard::from_bytes(bytes).ok()
}

/// Whether an answer to `item` is kept: sizes, whole bodies, and short ranges.
fn kept(item: &PartItem) -> bool {
    match item {
        PartItem::DecodedSize(_) => true,
        PartItem::Bytes { range: None, .. } => true,
        PartItem::Bytes {
            range: Some(range), ..
        } => range.len <= KEPT_RANGE,
    }
}

/// The error for what the disk cache does not hold while offline.
fn not_cached(what: String) -> StoreError {
    StoreError::Connection(format!("offline, and {what} is not in the disk cache"))
}

fn refused_offline() -> StoreError {
    StoreError::Offline("the server cannot be reached; changes wait until it can".into())
}

impl CachedStore {
    /// `inner` behind the metadata kept in `dir`; `content` is the disk content cache
    /// (told when a mailbox is gone). `offline`: start offline on purpose (`--offline`),
    /// never trying the server.
    pub fn new(
        inner: Arc<dyn MailStore>,
        dir: Arc<CacheDir>,
        content: Option<Arc<DiskCache>>,
        offline: bool,
    ) -> CachedStore {
        let (tx, rx) = mpsc::channel();
        let disconnected = Disconnected::open(dir.path());
        // Changes left from before are replayed before this mount changes anything: until
        // then it serves what is kept, as offline.
        let pending = disconnected.has_pending() && !offline;
        let writer = Writer {
            dir: Arc::clone(&dir),
            content: content.clone(),
        };
        let shared = Arc::new(Shared {
            inner,
            dir,
            content,
            link: Mutex::new(match (offline, pending) {
                (true, _) => Link::Offline {
                    since: SystemTime::now(),
                    deliberate: true,
                },
                (false, true) => Link::Offline {
                    since: SystemTime::now(),
                    deliberate: false,
                },
                (false, false) => Link::Online,
            }),
            probing: Mutex::new(false),
            sink: Mutex::new(None),
            jobs: Mutex::new(tx),
            disconnected: Mutex::new(disconnected),
            replaying: Mutex::new(()),
        });
        let writer = std::thread::Builder::new()
            .name("metadata-cache".into())
            .spawn(move || writer.write(rx))
            .ok();
        if pending {
            shared.probe_after(Duration::ZERO);
        }
        CachedStore { shared, writer }
    }

    /// Starts offline because the server could not be reached at mount; tries it again in
    /// the background.
    pub fn start_offline(&self, why: &StoreError) {
        self.shared.went_offline(why);
    }

    /// Whether anything is kept (a mailbox list): an offline mount is useful only then.
    pub fn has_data(&self) -> bool {
        self.shared.kept_mailboxes().is_some()
    }

    /// Waits until every write asked for so far is in the index (tests).
    pub fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        self.shared.send(Job::Flush(tx));
        let _ = rx.recv_timeout(Duration::from_secs(30));
    }
}

impl Shared {
    fn send(&self, job: Job) {
        let _ = self.jobs.lock().send(job);
    }

    fn is_offline(&self) -> bool {
        matches!(*self.link.lock(), Link::Offline { .. })
    }

    /// Whether `e` says the server is gone, not only one command or connection: the inner
    /// store could not connect again. A connection cut, or a command that timed out, on a
    /// server that still takes connections stays an error of that call.
    fn lost(&self, e: &StoreError) -> bool {
        e.is_unreachable() && !self.inner.is_reachable()
    }

    /// The server could not be reached: serve from disk, and try it again in the background.
    fn went_offline(self: &Arc<Self>, why: &StoreError) {
        let went = {
            let mut link = self.link.lock();
            let went = matches!(*link, Link::Online);
            if went {
                tracing::warn!(error = %why, "the server cannot be reached; serving what the disk cache holds, and trying again in the background");
                *link = Link::Offline {
                    since: SystemTime::now(),
                    deliberate: false,
                };
            }
            went
        };
        if went {
            // Offline, nothing is followed (`is_followed`).
            let sink = self.sink.lock().clone();
            if let Some(sink) = sink {
                sink(StoreEvent::Unfollowed);
            }
        }
        self.probe();
    }

    /// Starts the thread that tries the server, unless one runs or offline is deliberate.
    fn probe(self: &Arc<Self>) {
        self.probe_after(Duration::from_secs(1));
    }

    /// The same, with the first try after `first`.
    fn probe_after(self: &Arc<Self>, first: Duration) {
        if matches!(
            *self.link.lock(),
            Link::Offline {
                deliberate: true,
                ..
            }
        ) {
            return;
        }
        let mut probing = self.probing.lock();
        if *probing {
            return;
        }
        *probing = true;
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("reconnect".into())
            .spawn(move || try_again(weak, first));
        if spawned.is_err() {
            *probing = false;
        }
    }

    /// Runs `online` when the server is thought reachable; on an error that says it is not,
    /// goes offline and runs `offline` instead.
    fn either<T>(
        self: &Arc<Self>,
        online: impl FnOnce() -> StoreResult<T>,
        offline: impl FnOnce() -> StoreResult<T>,
    ) -> StoreResult<T> {
        if self.is_offline() {
            return offline();
        }
        match online() {
            Err(e) if self.lost(&e) => {
                self.went_offline(&e);
                offline()
            }
            other => other,
        }
    }

    /// A change: only online.
    fn change<T>(
        self: &Arc<Self>,
        mailbox: Option<&MailboxId>,
        f: impl FnOnce() -> StoreResult<T>,
    ) -> StoreResult<T> {
        if self.is_offline() {
            return Err(refused_offline());
        }
        let result = f();
        match &result {
            Err(e) if self.lost(e) => self.went_offline(e),
            _ => {
                if let Some(m) = mailbox {
                    self.send(Job::Dirty(m.clone()));
                }
            }
        }
        result
    }

    // ---- reading what is kept ----------------------------------------------------------

    /// A search over what is kept, offline: whole messages where the content cache holds
    /// them, the listing's subject, flags, size and date otherwise. Says in the log when
    /// that may miss messages.
    fn search_kept(&self, mailbox: &MailboxId, key: &SearchKey) -> StoreResult<Vec<Uid>> {
        let (head, messages) = self
            .kept_listing(mailbox)
            .ok_or_else(|| not_cached(format!("the listing of {mailbox}")))?;
        let mut found = Vec::new();
        let mut without_content = 0;
        for meta in &messages {
            let raw = self.content.as_ref().and_then(|c| {
                let start = crate::cache::ContentKey {
                    mailbox: mailbox.clone(),
                    validity: head.validity,
                    uid: meta.uid,
                    section: Section::whole(),
                    transfer: Transfer::Encoded,
                    offset: 0,
                };
                c.read_all(&start, meta.size, crate::fs::content::CHUNK)
            });
            if raw.is_none() {
                without_content += 1;
            }
            let fields = |name: &str| -> Vec<Vec<u8>> {
                match &raw {
                    Some(raw) => super::imap::convert::header_field(raw, name)
                        .into_iter()
                        .collect(),
                    None if name.eq_ignore_ascii_case("subject") => {
                        meta.subject.iter().cloned().collect()
                    }
                    None => Vec::new(),
                }
            };
            let candidate = crate::search::local::Candidate {
                uid: meta.uid,
                raw: raw.as_deref().unwrap_or_default(),
                flags: &meta.flags,
                internal_date: meta.internal_date,
                size: meta.size,
                fields: &fields,
            };
            let matched = candidate
                .matches(key)
                .map_err(|crate::search::local::Unsupported(why)| StoreError::Invalid(why))?;
            if matched {
                found.push(meta.uid);
            }
        }
        if without_content > 0 {
            tracing::warn!(
                mailbox = %mailbox,
                cached = messages.len() - without_content,
                messages = messages.len(),
                "offline: searched what the disk cache holds; messages whose content is not cached were matched by their subject, flags, size and date only, so the result may be partial"
            );
        }
        Ok(found)
    }

    fn kept_mailboxes(&self) -> Option<Vec<MailboxInfo>> {
        let txn = self.dir.db().begin_read().ok()?;
        let table = txn.open_table(MAILBOXES).ok()?;
        let value = table.get("list").ok()??;
        decode(value.value())
    }

    fn kept_head(&self, mailbox: &MailboxId) -> Option<Head> {
        let txn = self.dir.db().begin_read().ok()?;
        let table = txn.open_table(HEADS).ok()?;
        let value = table.get(mailbox.as_str()).ok()??;
        decode(value.value())
    }

    fn kept_listing(&self, mailbox: &MailboxId) -> Option<(Head, Vec<MessageMeta>)> {
        let head = self.kept_head(mailbox)?;
        let txn = self.dir.db().begin_read().ok()?;
        let table = txn.open_table(MESSAGES).ok()?;
        let name = mailbox.as_str();
        let mut messages = Vec::new();
        for row in table.range((name, 0)..=(name, u32::MAX)).ok()? {
            let (_, value) = row.ok()?;
            messages.push(decode::<MessageMeta>(value.value())?);
        }
        Some((head, messages))
    }

    fn kept_structures(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uids: &[Uid],
    ) -> Vec<MessageStructure> {
        let Ok(txn) = self.dir.db().begin_read() else {
            return Vec::new();
        };
        let Ok(table) = txn.open_table(STRUCTURES) else {
            return Vec::new();
        };
        uids.iter()
            .filter_map(|uid| {
                let value = table.get((mailbox.as_str(), validity.0, uid.0)).ok()??;
                decode(value.value())
            })
            .collect()
    }

    /// `BODY[section]` (or `BINARY[section]` with `Decoded`) of a message written offline
    /// and not sent yet, from its bytes in the outbox.
    fn outbox_section(
        &self,
        mailbox: &MailboxId,
        uid: Uid,
        section: &Section,
        transfer: Transfer,
        range: Option<ByteRange>,
    ) -> Option<Vec<u8>> {
        if !journal::is_provisional_uid(uid) {
            return None;
        }
        let path = self.disconnected.lock().outbox_message(mailbox, uid)?;
        let raw = std::fs::read(path).ok()?;
        let bytes = if section.0.is_empty() {
            raw
        } else {
            let (at, encoding) =
                crate::mime::dovecot::ParsedMessage::parse(&raw).section(section)?;
            let part = raw.get(at)?;
            match transfer {
                Transfer::Decoded => crate::mime::decode_transfer(&encoding, part),
                _ => part.to_vec(),
            }
        };
        Some(match range {
            Some(r) => {
                let start = usize::try_from(r.offset)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                let end = usize::try_from(r.offset.saturating_add(r.len))
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                bytes[start..end].to_vec()
            }
            None => bytes,
        })
    }

    fn kept_part(
        &self,
        table: &redb::ReadOnlyTable<(&str, u32, u32, &[u8]), &[u8]>,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        item: &PartItem,
    ) -> Option<PartValue> {
        let key = encode(item);
        let value = table
            .get((mailbox.as_str(), validity.0, uid.0, key.as_slice()))
            .ok()??;
        decode(value.value())
    }
}

impl Writer {
    fn write(self, jobs: Receiver<Job>) {
        while let Ok(first) = jobs.recv() {
            let mut stop = matches!(first, Job::Stop);
            let mut batch = vec![first];
            while !stop && batch.len() < 64 {
                match jobs.recv_timeout(Duration::from_millis(5)) {
                    Ok(job) => {
                        stop = matches!(job, Job::Stop);
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            let (mut flushed, mut gone) = (Vec::new(), Vec::new());
            if let Err(e) = self.apply(batch, &mut flushed, &mut gone) {
                tracing::warn!(error = %e, "disk cache: could not record what the server said");
            }
            // Only once the write transaction is over: the content writer needs one too,
            // and its queue may be full, so asking it from inside would wait forever.
            if let Some(content) = &self.content {
                for mailbox in &gone {
                    content.drop_mailbox(mailbox);
                }
            }
            for reply in flushed {
                let _ = reply.send(());
            }
            if stop {
                return;
            }
        }
    }

    /// Writes `batch` in one transaction; Flush jobs' replies go to `flushed`, and the
    /// mailboxes the server no longer lists to `gone`, for the caller to answer once the
    /// transaction is over.
    fn apply(
        &self,
        batch: Vec<Job>,
        flushed: &mut Vec<Sender<()>>,
        gone: &mut Vec<MailboxId>,
    ) -> Result<(), redb::Error> {
        let txn = self.dir.db().begin_write()?;
        {
            let mut mailboxes = txn.open_table(MAILBOXES)?;
            let mut heads = txn.open_table(HEADS)?;
            let mut messages = txn.open_table(MESSAGES)?;
            let mut structures = txn.open_table(STRUCTURES)?;
            let mut parts = txn.open_table(PARTS)?;
            let mut tables = Tables {
                heads: &mut heads,
                messages: &mut messages,
                structures: &mut structures,
                parts: &mut parts,
            };
            for job in batch {
                match job {
                    Job::Mailboxes(list) => {
                        let old: Option<Vec<MailboxInfo>> =
                            mailboxes.get("list")?.and_then(|v| decode(v.value()));
                        let now: HashSet<&MailboxId> = list.iter().map(|m| &m.id).collect();
                        for dropped in old.iter().flatten().filter(|m| !now.contains(&m.id)) {
                            tracing::info!(mailbox = %dropped.id, "disk cache: dropping a mailbox the server no longer lists");
                            tables.forget(&dropped.id, None)?;
                            gone.push(dropped.id.clone());
                        }
                        mailboxes.insert("list", encode(&list).as_slice())?;
                    }
                    Job::Capabilities(caps) => {
                        mailboxes.insert("capabilities", encode(&caps).as_slice())?;
                    }
                    Job::Listing(mailbox, listing) => tables.listing(&mailbox, listing)?,
                    Job::Change(change) => {
                        tables.change(&change)?;
                        tables.mark_dirty(&change.mailbox)?;
                    }
                    Job::Resynced { change, from, to } => tables.resynced(&change, from, to)?,
                    Job::Dirty(mailbox) => tables.mark_dirty(&mailbox)?,
                    Job::Structures(mailbox, list) => {
                        let validity = tables.head(&mailbox)?.map(|h| h.validity);
                        for s in list {
                            // Kept under the UIDVALIDITY of the listing kept; without one
                            // they cannot be told apart from another mailbox's, so not kept.
                            if let Some(v) = validity {
                                tables.structures.insert(
                                    (mailbox.as_str(), v.0, s.uid.0),
                                    encode(&s).as_slice(),
                                )?;
                            }
                        }
                    }
                    Job::Parts(mailbox, validity, answers) => {
                        for (uid, item, value) in answers {
                            let key = encode(&item);
                            tables.parts.insert(
                                (mailbox.as_str(), validity.0, uid.0, key.as_slice()),
                                encode(&value).as_slice(),
                            )?;
                        }
                    }
                    Job::Forget(mailbox) => tables.forget(&mailbox, None)?,
                    Job::Local(LocalChange::Created(info)) => {
                        let mut list: Vec<MailboxInfo> = mailboxes
                            .get("list")?
                            .and_then(|v| decode(v.value()))
                            .unwrap_or_default();
                        let head = Head {
                            // Never a server's (0 is not a valid UIDVALIDITY).
                            validity: UidValidity(0),
                            version: None,
                            dirty: true,
                        };
                        tables
                            .heads
                            .insert(info.id.as_str(), encode(&head).as_slice())?;
                        list.push(info);
                        mailboxes.insert("list", encode(&list).as_slice())?;
                    }
                    Job::Local(change) => tables.local(change)?,
                    Job::Replayed(waiting) => {
                        tables.messages.retain(|key, _| {
                            key.1 < journal::PROVISIONAL_UID || waiting.contains(&Uid(key.1))
                        })?;
                    }
                    Job::Flush(reply) => flushed.push(reply),
                    Job::Stop => {}
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}

/// The tables one write transaction changes.
struct Tables<'a, 't> {
    heads: &'a mut redb::Table<'t, &'static str, &'static [u8]>,
    messages: &'a mut redb::Table<'t, (&'static str, u32), &'static [u8]>,
    structures: &'a mut redb::Table<'t, (&'static str, u32, u32), &'static [u8]>,
    parts: &'a mut redb::Table<'t, (&'static str, u32, u32, &'static [u8]), &'static [u8]>,
}

impl Tables<'_, '_> {
    fn head(&self, mailbox: &MailboxId) -> Result<Option<Head>, redb::Error> {
        Ok(self
            .heads
            .get(mailbox.as_str())?
            .and_then(|v| decode(v.value())))
    }

    fn mark_dirty(&mut self, mailbox: &MailboxId) -> Result<(), redb::Error> {
        if let Some(mut head) = self.head(mailbox)? {
            if !head.dirty {
                head.dirty = true;
                self.heads
                    .insert(mailbox.as_str(), encode(&head).as_slice())?;
            }
        }
        Ok(())
    }

    /// A full listing replaces what was kept.
    fn listing(&mut self, mailbox: &MailboxId, listing: MailboxListing) -> Result<(), redb::Error> {
        let name = mailbox.as_str();
        if let Some(old) = self.head(mailbox)? {
            if old.validity != listing.uid_validity {
                tracing::info!(mailbox = %mailbox, "disk cache: UIDVALIDITY changed; dropping the mailbox's old entries");
                self.forget(mailbox, Some(listing.uid_validity))?;
            }
        }
        self.messages
            .retain_in((name, 0)..=(name, u32::MAX), |_, _| false)?;
        for meta in &listing.messages {
            self.messages
                .insert((name, meta.uid.0), encode(meta).as_slice())?;
        }
        let head = Head {
            validity: listing.uid_validity,
            version: listing.version,
            dirty: false,
        };
        self.heads.insert(name, encode(&head).as_slice())?;
        Ok(())
    }

    /// A change from `from` to `to` found by a resynchronisation, applied if the rows kept
    /// are still those it was found from. Rows kept meanwhile at another version (another
    /// thread's listing, written first) describe that version, and are left alone.
    fn resynced(
        &mut self,
        change: &MailboxChange,
        from: MailboxVersion,
        to: MailboxVersion,
    ) -> Result<(), redb::Error> {
        let Some(mut head) = self.head(&change.mailbox)? else {
            return Ok(());
        };
        if head.version != Some(from) {
            tracing::debug!(mailbox = %change.mailbox, "disk cache: a resynchronisation from a version no longer kept is not applied");
            return Ok(());
        }
        self.change(change)?;
        head.version = Some(to);
        head.dirty = false;
        self.heads
            .insert(change.mailbox.as_str(), encode(&head).as_slice())?;
        Ok(())
    }

    /// A reported change, applied to the kept listing (if any).
    fn change(&mut self, change: &MailboxChange) -> Result<(), redb::Error> {
        let Some(head) = self.head(&change.mailbox)? else {
            return Ok(());
        };
        let name = change.mailbox.as_str();
        let validity = change.validity.unwrap_or(head.validity);
        if change.validity_changed || validity != head.validity {
            // Nothing kept is true any more; the next listing starts over.
            return self.forget(&change.mailbox, None);
        }
        for uid in &change.vanished {
            self.messages.remove((name, uid.0))?;
        }
        for meta in &change.arrived {
            self.messages
                .insert((name, meta.uid.0), encode(meta).as_slice())?;
        }
        for (uid, flags) in &change.flags {
            let old: Option<MessageMeta> = self
                .messages
                .get((name, uid.0))?
                .and_then(|v| decode(v.value()));
            if let Some(mut meta) = old {
                meta.flags = flags.clone();
                self.messages
                    .insert((name, uid.0), encode(&meta).as_slice())?;
            }
        }
        Ok(())
    }

    /// Drops what is kept of `mailbox`: all of it, or (`keep`) what belongs to any other
    /// UIDVALIDITY.
    fn forget(
        &mut self,
        mailbox: &MailboxId,
        keep: Option<UidValidity>,
    ) -> Result<(), redb::Error> {
        let name = mailbox.as_str();
        let other = |v: u32| Some(UidValidity(v)) != keep;
        self.structures
            .retain_in((name, 0, 0)..=(name, u32::MAX, u32::MAX), |k, _| {
                !other(k.1)
            })?;
        self.parts.retain_in(
            (name, 0, 0, &[][..])..(name, u32::MAX, u32::MAX, &[0xffu8; 64][..]),
            |k, _| !other(k.1),
        )?;
        if keep.is_none() {
            self.messages
                .retain_in((name, 0)..=(name, u32::MAX), |_, _| false)?;
            self.heads.remove(name)?;
        }
        Ok(())
    }
}

/// Tries the server with growing pauses until it answers, replays the changes made
/// offline, then goes online and tells the core to look again.
fn try_again(shared: Weak<Shared>, first: Duration) {
    let mut pause = first;
    loop {
        std::thread::sleep(pause);
        pause = (pause * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
        let Some(s) = shared.upgrade() else { return };
        match s.inner.list_mailboxes() {
            Ok(_) if s.inner.is_reachable() => {}
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "the server still cannot be reached");
                continue;
            }
        }
        if !s.replay() {
            continue;
        }
        tracing::info!("the server answers again; back online");
        *s.probing.lock() = false;
        if let Ok(list) = s.inner.list_mailboxes() {
            s.send(Job::Mailboxes(list));
        }
        if let Some(sink) = s.sink.lock().clone() {
            sink(StoreEvent::MailboxList);
        }
        return;
    }
}

impl MailStore for CachedStore {
    fn list_mailboxes(&self) -> StoreResult<Vec<MailboxInfo>> {
        let s = &self.shared;
        s.either(
            || {
                let list = s.inner.list_mailboxes()?;
                s.send(Job::Mailboxes(list.clone()));
                s.send(Job::Capabilities(s.inner.capabilities()));
                Ok(list)
            },
            || {
                s.kept_mailboxes()
                    .ok_or_else(|| not_cached("the mailbox list".into()))
            },
        )
    }

    fn list_messages(&self, mailbox: &MailboxId) -> StoreResult<MailboxListing> {
        let s = &self.shared;
        s.either(
            || {
                if let Some(listing) = self.warm_listing(mailbox)? {
                    return Ok(listing);
                }
                let listing = s.inner.list_messages(mailbox)?;
                s.send(Job::Listing(mailbox.clone(), listing.clone()));
                Ok(listing)
            },
            || {
                let (head, messages) = s
                    .kept_listing(mailbox)
                    .ok_or_else(|| not_cached(format!("the listing of {mailbox}")))?;
                Ok(MailboxListing {
                    uid_validity: head.validity,
                    messages,
                    // Offline nothing can be checked: the core lists again when it looks.
                    version: None,
                })
            },
        )
    }

    fn mailbox_version(&self, mailbox: &MailboxId) -> StoreResult<Option<MailboxVersion>> {
        let s = &self.shared;
        s.either(|| s.inner.mailbox_version(mailbox), || Ok(None))
    }

    fn changes_since(
        &self,
        mailbox: &MailboxId,
        known: MailboxVersion,
        held: &[Uid],
    ) -> StoreResult<Option<(MailboxChange, MailboxVersion)>> {
        let s = &self.shared;
        s.either(|| s.inner.changes_since(mailbox, known, held), || Ok(None))
    }

    fn body_structures(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uids: &[Uid],
    ) -> StoreResult<Vec<MessageStructure>> {
        let s = &self.shared;
        let mut found = s.kept_structures(mailbox, validity, uids);
        let have: HashSet<Uid> = found.iter().map(|m| m.uid).collect();
        let missing: Vec<Uid> = uids.iter().copied().filter(|u| !have.contains(u)).collect();
        if missing.is_empty() {
            return Ok(found);
        }
        let fetched = s.either(
            || {
                let fetched = s.inner.body_structures(mailbox, validity, &missing)?;
                s.send(Job::Structures(mailbox.clone(), fetched.clone()));
                Ok(fetched)
            },
            || {
                // Only the first message asked for is wanted; the rest is read-ahead.
                if have.contains(&uids[0]) {
                    Ok(Vec::new())
                } else {
                    Err(not_cached(format!(
                        "the structure of UID {} in {mailbox}",
                        uids[0].0
                    )))
                }
            },
        )?;
        found.extend(fetched);
        Ok(found)
    }

    fn fetch_parts(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        wanted: &[(Uid, Vec<PartItem>)],
    ) -> StoreResult<Vec<(Uid, PartItem, PartValue)>> {
        let s = &self.shared;
        let mut answers = Vec::new();
        let mut missing: BTreeMap<Uid, Vec<PartItem>> = BTreeMap::new();
        {
            let txn = s.dir.db().begin_read().ok();
            let table = txn.as_ref().and_then(|t| t.open_table(PARTS).ok());
            for (uid, items) in wanted {
                for item in items {
                    let value = table
                        .as_ref()
                        .filter(|_| kept(item))
                        .and_then(|t| s.kept_part(t, mailbox, validity, *uid, item));
                    match value {
                        Some(value) => answers.push((*uid, item.clone(), value)),
                        None => missing.entry(*uid).or_default().push(item.clone()),
                    }
                }
            }
        }
        if missing.is_empty() {
            return Ok(answers);
        }
        let missing: Vec<(Uid, Vec<PartItem>)> = missing.into_iter().collect();
        let fetched = s.either(
            || {
                let fetched = s.inner.fetch_parts(mailbox, validity, &missing)?;
                let keep: Vec<(Uid, PartItem, PartValue)> = fetched
                    .iter()
                    .filter(|(_, i, _)| kept(i))
                    .cloned()
                    .collect();
                if !keep.is_empty() {
                    s.send(Job::Parts(mailbox.clone(), validity, keep));
                }
                Ok(fetched)
            },
            || Err(not_cached(format!("parts of messages in {mailbox}"))),
        )?;
        answers.extend(fetched);
        Ok(answers)
    }

    fn fetch_section(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        section: &Section,
        transfer: Transfer,
        range: Option<ByteRange>,
    ) -> StoreResult<Vec<u8>> {
        let s = &self.shared;
        s.either(
            || {
                s.inner
                    .fetch_section(mailbox, validity, uid, section, transfer, range)
            },
            || {
                // A small body kept whole by `fetch_parts` (the one a directory came with).
                let whole = PartItem::Bytes {
                    section: section.clone(),
                    transfer,
                    range: None,
                };
                let txn = s.dir.db().begin_read().ok();
                let table = txn.as_ref().and_then(|t| t.open_table(PARTS).ok());
                match table.and_then(|t| s.kept_part(&t, mailbox, validity, uid, &whole)) {
                    Some(PartValue::Bytes(bytes)) => Ok(match range {
                        Some(r) => {
                            let start = usize::try_from(r.offset).unwrap_or(usize::MAX);
                            let end = usize::try_from(r.offset.saturating_add(r.len))
                                .unwrap_or(usize::MAX);
                            bytes[start.min(bytes.len())..end.min(bytes.len())].to_vec()
                        }
                        None => bytes,
                    }),
                    _ => s
                        .outbox_section(mailbox, uid, section, transfer, range)
                        .ok_or_else(|| not_cached(format!("UID {} of {mailbox}", uid.0))),
                }
            },
        )
    }

    fn fetch_sections(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uids: &[Uid],
        section: &Section,
        transfer: Transfer,
        range: Option<ByteRange>,
    ) -> StoreResult<Vec<(Uid, Vec<u8>)>> {
        let s = &self.shared;
        s.either(
            || {
                s.inner
                    .fetch_sections(mailbox, validity, uids, section, transfer, range)
            },
            || Err(not_cached(format!("messages of {mailbox}"))),
        )
    }

    fn find_by_message_id(
        &self,
        mailbox: &MailboxId,
        message_id: &str,
    ) -> StoreResult<(UidValidity, Vec<MessageMeta>)> {
        let s = &self.shared;
        s.either(
            || s.inner.find_by_message_id(mailbox, message_id),
            || Err(refused_offline()),
        )
    }

    fn flags_now(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
    ) -> StoreResult<crate::store::FlagsNow> {
        let s = &self.shared;
        s.either(
            || s.inner.flags_now(mailbox, validity, uid),
            || Err(refused_offline()),
        )
    }

    fn search(&self, mailbox: &MailboxId, key: &SearchKey) -> StoreResult<Vec<Uid>> {
        let s = &self.shared;
        s.either(
            || s.inner.search(mailbox, key),
            || s.search_kept(mailbox, key),
        )
    }

    fn stats(&self) -> StoreStats {
        self.shared.inner.stats()
    }

    /// The server's; before it was ever reached (a mount that started offline), what it
    /// could do when last seen, so that what is kept is asked for in the same form.
    fn capabilities(&self) -> Capabilities {
        let s = &self.shared;
        let known = s.inner.capabilities();
        if known != Capabilities::default() {
            return known;
        }
        let kept = || -> Option<Capabilities> {
            let txn = s.dir.db().begin_read().ok()?;
            let table = txn.open_table(MAILBOXES).ok()?;
            let value = table.get("capabilities").ok()??;
            decode(value.value())
        };
        kept().unwrap_or(known)
    }

    fn create_mailbox(&self, path: &[String]) -> StoreResult<MailboxId> {
        let s = &self.shared;
        if let Some(queued) = s.offline_create(path) {
            return queued;
        }
        s.change(None, || s.inner.create_mailbox(path))
    }

    fn delete_mailbox(&self, mailbox: &MailboxId) -> StoreResult<()> {
        let s = &self.shared;
        s.change(None, || s.inner.delete_mailbox(mailbox))?;
        s.send(Job::Forget(mailbox.clone()));
        if let Some(content) = &s.content {
            content.drop_mailbox(mailbox);
        }
        Ok(())
    }

    fn rename_mailbox(&self, from: &MailboxId, to: &[String]) -> StoreResult<MailboxId> {
        let s = &self.shared;
        let renamed = s.change(None, || s.inner.rename_mailbox(from, to))?;
        // What was kept under the old name would be served for a mailbox created there.
        s.send(Job::Forget(from.clone()));
        if let Some(content) = &s.content {
            content.drop_mailbox(from);
        }
        Ok(renamed)
    }

    fn set_flags(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        flags: &[Flag],
    ) -> StoreResult<()> {
        let s = &self.shared;
        if let Some(queued) = s.offline_set_flags(mailbox, validity, uid, flags) {
            return queued;
        }
        let (mailbox, validity, uid) = &s.real_place(mailbox, validity, uid)?;
        s.change(Some(mailbox), || {
            s.inner.set_flags(mailbox, *validity, *uid, flags)
        })
    }

    fn change_flags(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        add: &[Flag],
        remove: &[Flag],
    ) -> StoreResult<()> {
        let s = &self.shared;
        if let Some(queued) = s.offline_change_flags(mailbox, validity, uid, add, remove) {
            return queued;
        }
        let (mailbox, validity, uid) = &s.real_place(mailbox, validity, uid)?;
        s.change(Some(mailbox), || {
            s.inner.change_flags(mailbox, *validity, *uid, add, remove)
        })
    }

    /// Online only: offline, one journal record per message of a mailbox is not worth
    /// keeping (EROFS, as for a mailbox's rename); each message can be flagged by itself.
    fn change_flags_of(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uids: &[Uid],
        add: &[Flag],
        remove: &[Flag],
    ) -> StoreResult<Vec<Uid>> {
        let s = &self.shared;
        if s.is_offline() {
            return Err(refused_offline());
        }
        // Messages made offline go one by one, to where the replay put them; one the
        // replay has not put on the server is passed over (and returned).
        let (real, provisional): (Vec<Uid>, Vec<Uid>) = uids
            .iter()
            .partition(|&&uid| !journal::is_provisional_uid(uid));
        let mut gone = crate::store::change_flags_one_by_one(
            self,
            mailbox,
            validity,
            &provisional,
            add,
            remove,
        )?;
        let target = s.real_mailbox(mailbox)?;
        let more = s.change(Some(&target), || {
            s.inner
                .change_flags_of(&target, validity, &real, add, remove)
        })?;
        gone.extend(more);
        Ok(gone)
    }

    fn move_message(
        &self,
        from: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        to: &MailboxId,
    ) -> StoreResult<Option<(UidValidity, Uid)>> {
        let s = &self.shared;
        if let Some(queued) = s.offline_move(from, validity, uid, to) {
            return queued;
        }
        let (from, validity, uid) = &s.real_place(from, validity, uid)?;
        let to = &s.real_mailbox(to)?;
        let moved = s.change(Some(from), || {
            s.inner.move_message(from, *validity, *uid, to)
        })?;
        s.send(Job::Dirty(to.clone()));
        Ok(moved)
    }

    fn copy_message(
        &self,
        from: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        to: &MailboxId,
    ) -> StoreResult<Option<(UidValidity, Uid)>> {
        // Not queued offline: a copy's directory is filled at once, from the copy.
        let s = &self.shared;
        let (from, validity, uid) = &s.real_place(from, validity, uid)?;
        let to = &s.real_mailbox(to)?;
        s.change(Some(to), || s.inner.copy_message(from, *validity, *uid, to))
    }

    fn expunge_message(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
    ) -> StoreResult<()> {
        let s = &self.shared;
        if let Some(queued) = s.offline_expunge(mailbox, validity, uid) {
            return queued;
        }
        let (mailbox, validity, uid) = &s.real_place(mailbox, validity, uid)?;
        s.change(Some(mailbox), || {
            s.inner.expunge_message(mailbox, *validity, *uid)
        })
    }

    fn append(
        &self,
        mailbox: &MailboxId,
        message: NewMessage<'_>,
    ) -> StoreResult<Option<(UidValidity, Uid)>> {
        let s = &self.shared;
        let message = match s.offline_append(mailbox, message) {
            Ok(queued) => return queued,
            Err(message) => message,
        };
        let mailbox = &s.real_mailbox(mailbox)?;
        s.change(Some(mailbox), || s.inner.append(mailbox, message))
    }

    fn pending_changes(&self) -> Vec<String> {
        self.shared.pending_lines()
    }

    fn retry_pending(&self) {
        let s = &self.shared;
        if s.is_offline() {
            // The reconnect thread replays when the server answers.
            return s.probe_after(Duration::ZERO);
        }
        let weak = Arc::downgrade(s);
        let _ = std::thread::Builder::new()
            .name("replay".into())
            .spawn(move || {
                if let Some(s) = weak.upgrade() {
                    s.replay();
                }
            });
    }

    fn watch(&self, sink: EventSink) {
        let s = &self.shared;
        *s.sink.lock() = Some(Arc::clone(&sink));
        let weak = Arc::downgrade(s);
        s.inner.watch(Arc::new(move |event| {
            if let Some(s) = weak.upgrade() {
                if let StoreEvent::Mailbox(change) = &event {
                    s.send(Job::Change(change.clone()));
                }
            }
            sink(event);
        }));
    }

    fn follow(&self, mailbox: &MailboxId, known: Option<MailboxVersion>) {
        if !self.shared.is_offline() {
            self.shared.inner.follow(mailbox, known);
        }
    }

    fn kept_newest(&self, mailbox: &MailboxId) -> Option<SystemTime> {
        let (_, messages) = self.shared.kept_listing(mailbox)?;
        messages.iter().map(|m| m.internal_date).max()
    }

    fn is_followed(&self, mailbox: &MailboxId) -> bool {
        !self.shared.is_offline() && self.shared.inner.is_followed(mailbox)
    }

    fn is_list_followed(&self) -> bool {
        !self.shared.is_offline() && self.shared.inner.is_list_followed()
    }

    fn renamed_elsewhere(&self, mailbox: &MailboxId) {
        self.shared.inner.renamed_elsewhere(mailbox);
    }

    fn quota(&self) -> StoreResult<Option<Quota>> {
        let s = &self.shared;
        s.either(|| s.inner.quota(), || Ok(None))
    }

    fn is_reachable(&self) -> bool {
        !self.shared.is_offline() && self.shared.inner.is_reachable()
    }

    fn link_state(&self) -> LinkState {
        match *self.shared.link.lock() {
            Link::Online => LinkState::Online,
            Link::Offline { since, .. } => LinkState::Offline { since },
        }
    }
}

impl CachedStore {
    /// The kept listing, if it is still true or can be made true cheaply: its version is
    /// the server's (one `EXAMINE`), or the change since it can be had (`changes_since`).
    fn warm_listing(&self, mailbox: &MailboxId) -> StoreResult<Option<MailboxListing>> {
        let s = &self.shared;
        let Some((head, mut messages)) = s.kept_listing(mailbox) else {
            return Ok(None);
        };
        let Some(known) = head.version else {
            return Ok(None);
        };
        let now = s.inner.mailbox_version(mailbox)?;
        if now == Some(known) && !head.dirty && counts_agree(&messages, known) {
            return Ok(Some(MailboxListing {
                uid_validity: head.validity,
                messages,
                version: Some(known),
            }));
        }
        if now.is_some_and(|v| v.uid_validity != head.validity) {
            return Ok(None);
        }
        let held: Vec<Uid> = messages.iter().map(|m| m.uid).collect();
        let Some((change, version)) = s.inner.changes_since(mailbox, known, &held)? else {
            return Ok(None);
        };
        let gone: HashSet<Uid> = change.vanished.iter().copied().collect();
        messages.retain(|m| !gone.contains(&m.uid));
        let mut by_uid: BTreeMap<Uid, MessageMeta> =
            messages.into_iter().map(|m| (m.uid, m)).collect();
        for meta in &change.arrived {
            by_uid.insert(meta.uid, meta.clone());
        }
        for (uid, flags) in &change.flags {
            if let Some(meta) = by_uid.get_mut(uid) {
                meta.flags = flags.clone();
            }
        }
        let messages: Vec<MessageMeta> = by_uid.into_values().collect();
        // Without QRESYNC, expunges are found by counting from the version kept; rows that
        // drifted from it (a report of a message gone again since) would stay. The count
        // tells, and a full listing puts it right.
        if !counts_agree(&messages, version) {
            tracing::debug!(mailbox = %mailbox, kept = messages.len(), exists = version.exists,
                "the kept listing disagrees with the server's count; listing in full");
            return Ok(None);
        }
        s.send(Job::Resynced {
            change,
            from: known,
            to: version,
        });
        Ok(Some(MailboxListing {
            uid_validity: head.validity,
            messages,
            version: Some(version),
        }))
    }
}

/// Whether a listing holds as many messages as the server said it has at `version`.
fn counts_agree(messages: &[MessageMeta], version: MailboxVersion) -> bool {
    messages.len() == version.exists as usize
}

#[cfg(test)]
mod tests;
