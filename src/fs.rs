//! The filesystem core: inodes, directory listings, attributes and reads, in its own types.
//!
//! `fuse.rs` adapts this to the kernel; nothing here sees a FUSE request or reply, so the
//! core is driven directly in tests with the in-memory store.

pub mod changes;
pub mod content;
pub mod errors;
pub mod inodes;
pub mod mailboxes;
pub mod newfiles;
pub mod newmail;
pub mod xattr;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

pub use self::changes::DeleteMode;
use self::content::ContentFetcher;
pub use self::errors::{FsError, FsResult, Level};
use self::inodes::{Inodes, MessageRef, Node, ROOT};
use self::mailboxes::MailboxTree;
use crate::mime::{self, Content, Entry, EntryKind};
use crate::store::{
    MailStore, MailboxName, MailboxVersion, MessageMeta, Section, StoreError, Uid, UidValidity,
};

/// How long the kernel may trust a directory entry or attributes that can change remotely.
const TTL_VOLATILE: Duration = Duration::from_secs(1);
/// How long for files whose size and content are final (content never changes per UID).
const TTL_FINAL: Duration = Duration::from_secs(60);
/// A listing younger than this is reused instead of asking the server again.
const LISTING_FRESH: Duration = Duration::from_secs(1);
/// A lookup that misses relists the mailbox if the listing is older than this.
const LISTING_RECHECK_ON_MISS: Duration = Duration::from_secs(5);
/// How many whole messages (of at most 1 MiB) to fetch at once when a walk reads them in
/// order, and how many bytes they may add up to.
const BODY_READ_AHEAD: usize = 64;
const BODY_READ_AHEAD_BYTES: u64 = 2 << 20;
/// How many BODYSTRUCTUREs to fetch at once when a walk visits messages in order.
const STRUCTURE_READ_AHEAD: usize = 64;

/// Numbers for `statfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub files: u64,
}

/// File or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Directory,
    File,
}

/// Attributes of a node, as the kernel needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub mtime: SystemTime,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
}

/// An attribute answer with how long the kernel may cache it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrReply {
    pub attr: Attr,
    /// How long the attributes may be cached.
    pub ttl: Duration,
    /// How long the name may be cached (for lookups).
    pub entry_ttl: Duration,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: Kind,
    pub name: String,
}

/// How an opened file is to be read by the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenReply {
    pub fh: u64,
    /// The size shown so far is only an estimate: bypass the page cache so reads reach EOF.
    pub direct_io: bool,
    /// Content is final: keep the kernel's pages across opens.
    pub keep_cache: bool,
}

/// Settings of the filesystem core.
#[derive(Debug, Clone)]
pub struct FsConfig {
    pub uid: u32,
    pub gid: u32,
    pub read_only: bool,
    pub cache_bytes: u64,
    /// What removing a message directory does.
    pub delete: DeleteMode,
    /// Where new files are kept until they are appended (and kept if APPEND fails).
    pub spool_dir: PathBuf,
}

struct Listing {
    validity: UidValidity,
    by_uid: HashMap<Uid, MessageMeta>,
    names: HashMap<String, Uid>,
    order: Vec<Uid>,
    fetched: Instant,
    /// Set after a change here: the next directory listing asks the server again.
    stale: bool,
    /// The mailbox's version when listed, if the server tells one.
    version: Option<MailboxVersion>,
}

/// One entry of an open directory's snapshot, with the message it showed (if any).
type SnapshotEntry = (DirEntry, Option<MessageRef>);

#[derive(Default)]
struct State {
    inodes: Inodes,
    tree: Option<(Arc<MailboxTree>, Instant)>,
    listings: HashMap<MailboxName, Listing>,
    layouts: HashMap<MessageRef, Arc<Vec<Entry>>>,
    last_structure: HashMap<MailboxName, Uid>,
    /// The last message whose message.eml was read from its start, per mailbox.
    last_body_read: HashMap<MailboxName, Uid>,
    /// Open directories' snapshots; message entries remember which message they showed.
    dir_handles: HashMap<u64, Arc<Vec<SnapshotEntry>>>,
    next_fh: u64,
    /// Part files and encapsulated messages removed from this mount's view.
    hidden: HashSet<u64>,
    /// Local changes made per mailbox (see `mark_stale`).
    changes: HashMap<MailboxName, u64>,
    /// Names that `mv` gave messages moved into a mailbox, valid until its next directory
    /// listing: mailbox -> name -> (message, mtime).
    aliases: HashMap<MailboxName, HashMap<String, (MessageRef, SystemTime)>>,
    /// New files being written, by inode.
    pending: HashMap<u64, Arc<newfiles::PendingFile>>,
}

/// The filesystem core.
pub struct Fs {
    store: Arc<dyn MailStore>,
    content: ContentFetcher,
    config: FsConfig,
    state: Mutex<State>,
}

fn name_str(name: &OsStr) -> FsResult<&str> {
    name.to_str().ok_or(FsError::NotFound)
}

/// Finds the entries of the (possibly nested) message directory at `section`.
fn entries_at<'a>(entries: &'a [Entry], section: &Section) -> Option<&'a [Entry]> {
    if section.is_whole() {
        return Some(entries);
    }
    entries.iter().find_map(|e| match &e.kind {
        EntryKind::Message {
            section: s,
            entries: inner,
        } => {
            if s == section {
                Some(inner.as_slice())
            } else if section.0.starts_with(&s.0) {
                entries_at(inner, section)
            } else {
                None
            }
        }
        EntryKind::File(_) => None,
    })
}

impl Fs {
    /// A filesystem over `store`.
    pub fn new(store: Arc<dyn MailStore>, config: FsConfig) -> Fs {
        Fs {
            content: ContentFetcher::new(Arc::clone(&store), config.cache_bytes),
            store,
            config,
            state: Mutex::new(State {
                next_fh: 1,
                ..State::default()
            }),
        }
    }

    fn dir_attr(&self, ino: u64, mtime: SystemTime) -> Attr {
        Attr {
            ino,
            kind: Kind::Directory,
            size: 0,
            mtime,
            perm: 0o700,
            nlink: 2,
            uid: self.config.uid,
            gid: self.config.gid,
        }
    }

    fn file_attr(&self, ino: u64, size: u64, mtime: SystemTime) -> Attr {
        Attr {
            ino,
            kind: Kind::File,
            size,
            mtime,
            perm: 0o600,
            nlink: 1,
            uid: self.config.uid,
            gid: self.config.gid,
        }
    }

    fn attr_of(&self, ino: u64, node: &Node) -> AttrReply {
        match node {
            Node::Root | Node::Mailbox { .. } => AttrReply {
                attr: self.dir_attr(ino, UNIX_EPOCH),
                ttl: TTL_VOLATILE,
                entry_ttl: TTL_VOLATILE,
            },
            // A message never changes for its UIDVALIDITY and UID, so its attributes and
            // the names inside it are final. Its own name is not: the message can vanish, or
            // the mailbox be recreated with another message under the same name.
            Node::Message { mtime, .. } => AttrReply {
                attr: self.dir_attr(ino, *mtime),
                ttl: TTL_FINAL,
                entry_ttl: TTL_VOLATILE,
            },
            Node::Pending { .. } => AttrReply {
                attr: self.file_attr(ino, 0, UNIX_EPOCH),
                ttl: Duration::ZERO,
                entry_ttl: Duration::ZERO,
            },
            Node::File {
                spec,
                mtime,
                known_size,
                ..
            } => {
                let exact = known_size.or(spec.exact_size.then_some(spec.size_hint));
                AttrReply {
                    attr: self.file_attr(ino, exact.unwrap_or(spec.size_hint), *mtime),
                    // An estimated size must not be cached: the kernel would cut reads at it.
                    entry_ttl: TTL_FINAL,
                    ttl: if exact.is_some() {
                        TTL_FINAL
                    } else {
                        Duration::ZERO
                    },
                }
            }
        }
    }

    fn node(&self, ino: u64) -> FsResult<Node> {
        self.state
            .lock()
            .inodes
            .get(ino)
            .cloned()
            .ok_or(FsError::NotFound)
    }

    // ---- mailbox tree -------------------------------------------------------------------

    /// The mailbox tree, shared rather than copied: every lookup in a mailbox reads it.
    fn tree(&self, refresh: bool) -> FsResult<Arc<MailboxTree>> {
        {
            let state = self.state.lock();
            if let Some((tree, at)) = &state.tree {
                if !refresh || at.elapsed() < LISTING_FRESH {
                    return Ok(Arc::clone(tree));
                }
            }
        }
        let list = self.store.list_mailboxes()?;
        let tree = Arc::new(MailboxTree::build(&list));
        self.state.lock().tree = Some((Arc::clone(&tree), Instant::now()));
        Ok(tree)
    }

    /// Forgets the mailbox tree so the next look at it asks the server.
    fn invalidate_tree(&self) {
        self.state.lock().tree = None;
    }

    /// Marks a mailbox's listing as out of date after a change there.
    /// Counts a local change, so that a listing fetched while it happened is not trusted.
    fn mark_stale(&self, mailbox: &MailboxName) {
        let mut state = self.state.lock();
        *state.changes.entry(mailbox.clone()).or_default() += 1;
        if let Some(listing) = state.listings.get_mut(mailbox) {
            listing.stale = true;
        }
    }

    /// The listing's metadata of one message.
    fn message_meta(&self, message: &MessageRef) -> FsResult<MessageMeta> {
        let state = self.state.lock();
        let listing = state
            .listings
            .get(&message.mailbox)
            .ok_or(FsError::NotFound)?;
        if listing.validity != message.validity {
            return Err(FsError::NotFound);
        }
        listing
            .by_uid
            .get(&message.uid)
            .cloned()
            .ok_or(FsError::NotFound)
    }

    // ---- mailbox listings -----------------------------------------------------------------

    /// Lists `mailbox` unless a listing at most `max_age` old exists. A changed UIDVALIDITY
    /// drops everything known about the old mailbox.
    fn ensure_listing(&self, mailbox: &MailboxName, max_age: Option<Duration>) -> FsResult<()> {
        if let Some(listing) = self.state.lock().listings.get(mailbox) {
            match max_age {
                None => return Ok(()),
                Some(age) if !listing.stale && listing.fetched.elapsed() < age => return Ok(()),
                Some(_) => {}
            }
        }
        let (changes_before, known_version) = {
            let state = self.state.lock();
            let known = state
                .listings
                .get(mailbox)
                .filter(|l| !l.stale)
                .and_then(|l| l.version);
            (state.changes.get(mailbox).copied(), known)
        };
        if let Some(known) = known_version {
            // One EXAMINE instead of the whole listing when nothing changed (CONDSTORE).
            if self.store.mailbox_version(mailbox)? == Some(known) {
                let mut state = self.state.lock();
                if state.changes.get(mailbox).copied() == changes_before {
                    if let Some(listing) = state.listings.get_mut(mailbox) {
                        listing.fetched = Instant::now();
                        return Ok(());
                    }
                }
            }
        }
        let fresh = self.store.list_messages(mailbox)?;
        let big = fresh.messages.len() > 1000;
        let mut names = HashMap::with_capacity(fresh.messages.len());
        let mut by_uid = HashMap::with_capacity(fresh.messages.len());
        let mut order = Vec::with_capacity(fresh.messages.len());
        for meta in fresh.messages {
            names.insert(
                mime::message_dir_name(meta.uid, meta.subject.as_deref()),
                meta.uid,
            );
            order.push(meta.uid);
            by_uid.insert(meta.uid, meta);
        }
        let mut state = self.state.lock();
        let changed = state
            .listings
            .get(mailbox)
            .is_some_and(|old| old.validity != fresh.uid_validity);
        if changed {
            tracing::warn!(mailbox = %mailbox, "UIDVALIDITY changed: dropping everything cached for the old mailbox");
            state
                .layouts
                .retain(|m, _| &m.mailbox != mailbox || m.validity == fresh.uid_validity);
            self.content
                .cache()
                .retain_validity(mailbox, fresh.uid_validity);
        }
        // A change made here while the listing was on its way may be missing from it.
        let stale = state.changes.get(mailbox).copied() != changes_before;
        state.listings.insert(
            mailbox.clone(),
            Listing {
                validity: fresh.uid_validity,
                by_uid,
                names,
                order,
                fetched: Instant::now(),
                stale,
                version: fresh.version,
            },
        );
        drop(state);
        if big {
            // Parsing a large listing leaves megabytes of freed buffers that glibc keeps;
            // give them back so resident memory stays near what is really held.
            // SAFETY: malloc_trim only releases free memory at the top of the heaps.
            unsafe { libc::malloc_trim(0) };
        }
        Ok(())
    }

    // ---- message layouts ------------------------------------------------------------------

    /// The directory layout of a message, from its BODYSTRUCTURE. When messages are visited
    /// in listing order (a recursive walk), the next ones' structures come in the same request.
    fn layout(&self, message: &MessageRef) -> FsResult<Arc<Vec<Entry>>> {
        let uids = {
            let mut state = self.state.lock();
            // Every visit counts for detecting a walk, also those answered from the cache.
            let previous = state
                .last_structure
                .insert(message.mailbox.clone(), message.uid);
            if let Some(layout) = state.layouts.get(message) {
                return Ok(Arc::clone(layout));
            }
            let mut uids = vec![message.uid];
            if let Some(listing) = state.listings.get(&message.mailbox) {
                let pos = listing.order.binary_search(&message.uid).ok();
                let sequential = match (pos, previous) {
                    (Some(p), Some(prev)) => p > 0 && listing.order[p - 1] == prev,
                    _ => false,
                };
                if let (Some(p), true) = (pos, sequential) {
                    uids.extend(
                        listing.order[p + 1..]
                            .iter()
                            .filter(|u| {
                                !state.layouts.contains_key(&MessageRef {
                                    uid: **u,
                                    ..message.clone()
                                })
                            })
                            .take(STRUCTURE_READ_AHEAD - 1),
                    );
                }
            }
            uids
        };
        let structures = match self
            .store
            .body_structures(&message.mailbox, message.validity, &uids)
        {
            // One unusable message must not spoil its neighbours: ask for this one alone.
            Err(e) if uids.len() > 1 && !matches!(e, StoreError::UidValidityChanged { .. }) => {
                tracing::warn!(mailbox = %message.mailbox, error = %e, "read-ahead of BODYSTRUCTUREs failed; fetching one");
                self.store
                    .body_structures(&message.mailbox, message.validity, &[message.uid])?
            }
            other => other?,
        };
        // The size of message.eml comes from the listing; a message that arrived (or was
        // moved here) since the last listing needs a fresh one.
        let known = {
            let state = self.state.lock();
            state.listings.get(&message.mailbox).is_some_and(|l| {
                l.validity == message.validity && l.by_uid.contains_key(&message.uid)
            })
        };
        if !known {
            self.ensure_listing(&message.mailbox, Some(Duration::ZERO))?;
        }
        let mut state = self.state.lock();
        let mut wanted = None;
        for (uid, structure) in structures {
            let msg = MessageRef {
                uid,
                ..message.clone()
            };
            let size = state
                .listings
                .get(&message.mailbox)
                .and_then(|l| l.by_uid.get(&uid))
                .map_or(0, |m| m.size);
            let layout = Arc::new(mime::message_layout(&structure, size));
            if uid == message.uid {
                wanted = Some(Arc::clone(&layout));
            }
            state.layouts.insert(msg, layout);
        }
        wanted.ok_or_else(|| {
            FsError::Store(StoreError::NoSuchMessage {
                mailbox: message.mailbox.clone(),
                uid: message.uid,
            })
        })
    }

    fn entry_ino(
        state: &mut State,
        message: &MessageRef,
        dir_section: &Section,
        entry: &Entry,
        mtime: SystemTime,
    ) -> (u64, Kind) {
        match &entry.kind {
            EntryKind::File(spec) => (
                state
                    .inodes
                    .file(message, dir_section, &entry.name, spec, mtime),
                Kind::File,
            ),
            EntryKind::Message { section, .. } => (
                state.inodes.message(message, section, mtime),
                Kind::Directory,
            ),
        }
    }

    // ---- operations -----------------------------------------------------------------------

    /// Looks up `name` in directory `parent`.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> FsResult<AttrReply> {
        let name = name_str(name)?;
        match self.node(parent)? {
            Node::Root => self.lookup_in_mailbox_dir("", name),
            Node::Mailbox { path } => self.lookup_in_mailbox_dir(&path, name),
            Node::Message {
                message,
                section,
                mtime,
            } => {
                let layout = self.layout(&message)?;
                let entries = entries_at(&layout, &section).ok_or(FsError::NotFound)?;
                let entry = entries
                    .iter()
                    .find(|e| e.name == name)
                    .ok_or(FsError::NotFound)?;
                let mut state = self.state.lock();
                let (ino, _) = Self::entry_ino(&mut state, &message, &section, entry, mtime);
                if state.hidden.contains(&ino) {
                    return Err(FsError::NotFound);
                }
                let node = state.inodes.get(ino).cloned().ok_or(FsError::NotFound)?;
                Ok(self.attr_of(ino, &node))
            }
            Node::File { .. } | Node::Pending { .. } => Err(FsError::NotADirectory),
        }
    }

    fn lookup_in_mailbox_dir(&self, path: &str, name: &str) -> FsResult<AttrReply> {
        let mut tree = self.tree(false)?;
        let mut dir = tree.get(path).ok_or(FsError::NotFound)?;
        if !dir.children.contains_key(name)
            && !name.as_bytes().first().is_some_and(u8::is_ascii_digit)
        {
            // Perhaps another client created it: ask again, at most once per second.
            tree = self.tree(true)?;
            dir = tree.get(path).ok_or(FsError::NotFound)?;
        }
        if let Some(child) = dir.children.get(name) {
            let ino = self.state.lock().inodes.mailbox(child);
            return Ok(AttrReply {
                attr: self.dir_attr(ino, UNIX_EPOCH),
                ttl: TTL_VOLATILE,
                entry_ttl: TTL_VOLATILE,
            });
        }
        if let Some((ino, _)) = self
            .pending_in(path, false)
            .into_iter()
            .find(|(_, n)| n == name)
        {
            return self.getattr(ino);
        }
        let mailbox = match (&dir.wire, dir.selectable) {
            (Some(m), true) => m.clone(),
            _ => return Err(FsError::NotFound),
        };
        if !name.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            return Err(FsError::NotFound);
        }
        self.ensure_listing(&mailbox, None)?;
        let found = self.find_message(&mailbox, name);
        let (message, mtime) = match found {
            Some(found) => found,
            None => {
                self.ensure_listing(&mailbox, Some(LISTING_RECHECK_ON_MISS))?;
                self.find_message(&mailbox, name).ok_or(FsError::NotFound)?
            }
        };
        let ino = self
            .state
            .lock()
            .inodes
            .message(&message, &Section::whole(), mtime);
        let node = self.node(ino)?;
        Ok(self.attr_of(ino, &node))
    }

    fn find_message(&self, mailbox: &MailboxName, name: &str) -> Option<(MessageRef, SystemTime)> {
        let state = self.state.lock();
        if let Some(alias) = state.aliases.get(mailbox).and_then(|a| a.get(name)) {
            return Some(alias.clone());
        }
        let listing = state.listings.get(mailbox)?;
        let uid = *listing.names.get(name)?;
        let meta = listing.by_uid.get(&uid)?;
        Some((
            MessageRef {
                mailbox: mailbox.clone(),
                validity: listing.validity,
                uid,
            },
            meta.internal_date,
        ))
    }

    /// Attributes of `ino`.
    pub fn getattr(&self, ino: u64) -> FsResult<AttrReply> {
        if let Some(reply) = self.pending_attr(ino) {
            return Ok(reply);
        }
        let node = self.node(ino)?;
        Ok(self.attr_of(ino, &node))
    }

    /// Opens a directory: takes a snapshot of its entries so that paging through it with
    /// offsets is stable, refreshing the listing from the server.
    pub fn opendir(&self, ino: u64) -> FsResult<u64> {
        let entries = match self.node(ino)? {
            Node::Root => self.mailbox_dir_entries(ino, "")?,
            Node::Mailbox { path } => self.mailbox_dir_entries(ino, &path)?,
            Node::Message {
                message,
                section,
                mtime,
            } => {
                let layout = self.layout(&message)?;
                let entries = entries_at(&layout, &section).ok_or(FsError::NotFound)?;
                let mut state = self.state.lock();
                let mut out = vec![(dot(ino, "."), None), (dot(ROOT, ".."), None)];
                for entry in entries {
                    let (child, kind) =
                        Self::entry_ino(&mut state, &message, &section, entry, mtime);
                    if state.hidden.contains(&child) {
                        continue;
                    }
                    let entry = DirEntry {
                        ino: child,
                        kind,
                        name: entry.name.clone(),
                    };
                    out.push((entry, None));
                }
                out
            }
            Node::File { .. } | Node::Pending { .. } => return Err(FsError::NotADirectory),
        };
        let mut state = self.state.lock();
        let fh = state.next_fh;
        state.next_fh += 1;
        state.dir_handles.insert(fh, Arc::new(entries));
        Ok(fh)
    }

    /// Whether the kernel may keep an open directory's entries across opens: true for
    /// message directories, whose contents never change (hiding a file with `rm` is seen by
    /// the kernel itself).
    pub fn dir_is_final(&self, ino: u64) -> bool {
        matches!(self.node(ino), Ok(Node::Message { .. }))
    }

    fn mailbox_dir_entries(&self, ino: u64, path: &str) -> FsResult<Vec<SnapshotEntry>> {
        let tree = self.tree(true)?;
        let dir = tree.get(path).ok_or(FsError::NotFound)?;
        let mailbox = match (&dir.wire, dir.selectable) {
            (Some(m), true) => Some(m),
            _ => None,
        };
        if let Some(mailbox) = mailbox {
            self.ensure_listing(mailbox, Some(LISTING_FRESH))?;
        }
        let pending = self.pending_in(path, true);
        let mut state = self.state.lock();
        let state = &mut *state;
        let mut out = vec![(dot(ino, "."), None), (dot(ROOT, ".."), None)];
        for (name, child_path) in &dir.children {
            let entry = DirEntry {
                ino: state.inodes.mailbox(child_path),
                kind: Kind::Directory,
                name: name.clone(),
            };
            out.push((entry, None));
        }
        for (pending_ino, name) in pending {
            let entry = DirEntry {
                ino: pending_ino,
                kind: Kind::File,
                name,
            };
            out.push((entry, None));
        }
        if let Some(mailbox) = mailbox {
            // A directory listing is "the next listing": names `mv` used stop resolving now.
            state.aliases.remove(mailbox);
        }
        let Some((mailbox, listing)) =
            mailbox.and_then(|m| state.listings.get_mut(m).map(|l| (m, l)))
        else {
            return Ok(out);
        };
        let mut names: Vec<(&String, &Uid)> = listing.names.iter().collect();
        names.sort_by_key(|(_, uid)| **uid);
        for (name, uid) in names {
            let Some(meta) = listing.by_uid.get(uid) else {
                continue;
            };
            if dir.children.contains_key(name) {
                continue;
            }
            let message = MessageRef {
                mailbox: mailbox.clone(),
                validity: listing.validity,
                uid: *uid,
            };
            let entry = DirEntry {
                ino: state
                    .inodes
                    .message(&message, &Section::whole(), meta.internal_date),
                kind: Kind::Directory,
                name: name.clone(),
            };
            out.push((entry, Some(message)));
        }
        Ok(out)
    }

    /// Entries of an open directory from `offset` on (the offset of an entry is its index + 1).
    /// A message that moved away since the snapshot is left out, so one directory never
    /// shows under two parents.
    /// At most `max` entries are returned: a reply page holds a few dozen, and a mailbox
    /// may hold many thousands.
    pub fn readdir(&self, fh: u64, offset: u64, max: usize) -> FsResult<Vec<(u64, DirEntry)>> {
        let state = self.state.lock();
        let entries = state.dir_handles.get(&fh).ok_or(FsError::BadHandle)?;
        Ok(entries
            .iter()
            .enumerate()
            .skip(offset as usize)
            .filter(|(_, (entry, shown))| match shown {
                None => true,
                Some(shown) => matches!(
                    state.inodes.get(entry.ino),
                    Some(Node::Message { message, .. }) if message == shown
                ),
            })
            .take(max)
            .map(|(i, (entry, _))| (i as u64 + 1, entry.clone()))
            .collect())
    }

    /// Like `readdir`, with each entry's attributes (READDIRPLUS saves a lookup per entry).
    pub fn readdirplus(
        &self,
        fh: u64,
        offset: u64,
        max: usize,
    ) -> FsResult<Vec<(u64, DirEntry, AttrReply)>> {
        Ok(self
            .readdir(fh, offset, max)?
            .into_iter()
            .filter_map(|(next, entry)| {
                // An entry that vanished since the snapshot is skipped, not an error.
                let attr = self.getattr(entry.ino).ok()?;
                Some((next, entry, attr))
            })
            .collect())
    }

    /// Forgets an open directory's snapshot.
    pub fn releasedir(&self, fh: u64) {
        self.state.lock().dir_handles.remove(&fh);
    }

    /// Opens a file for reading; writing is refused on a read-only mount.
    pub fn open(&self, ino: u64, write: bool) -> FsResult<OpenReply> {
        if self.pending_file(ino).is_some() {
            return Ok(OpenReply {
                fh: ino,
                direct_io: true,
                keep_cache: false,
            });
        }
        let node = self.node(ino)?;
        let Node::File {
            spec, known_size, ..
        } = node
        else {
            return Err(FsError::IsADirectory);
        };
        if write {
            return Err(if self.config.read_only {
                FsError::ReadOnly
            } else {
                FsError::NotPermitted("message parts cannot be changed".into())
            });
        }
        let exact = known_size.is_some() || spec.exact_size;
        Ok(OpenReply {
            fh: 0,
            direct_io: !exact,
            keep_cache: exact,
        })
    }

    /// Reads up to `size` bytes at `offset`. Only the end of the file gives fewer bytes.
    pub fn read(&self, ino: u64, _fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        if self.pending_file(ino).is_some() {
            return self.read_pending(ino, offset, size);
        }
        let Node::File { message, spec, .. } = self.node(ino)? else {
            return Err(FsError::IsADirectory);
        };
        if matches!(spec.content, Content::Raw) && spec.exact_size {
            if offset == 0 && spec.section.is_whole() {
                self.read_ahead_messages(&message);
            }
            return self.content.read_raw(
                &message,
                &spec.section,
                offset,
                u64::from(size),
                Some(spec.size_hint),
            );
        }
        let data = self
            .content
            .rendered(&message, &spec.section, &spec.content)?;
        self.state
            .lock()
            .inodes
            .set_known_size(ino, data.len() as u64);
        let start = (offset as usize).min(data.len());
        let end = start.saturating_add(size as usize).min(data.len());
        Ok(data[start..end].to_vec())
    }

    /// When whole messages are read one after another in listing order (`grep -r`, `cat */
    /// message.eml`), fetch the next few small ones in the same request: one round trip for
    /// `BODY_READ_AHEAD` messages instead of one each. A failed read-ahead is only logged;
    /// the read itself then fetches what it needs.
    fn read_ahead_messages(&self, message: &MessageRef) {
        if self.content.has_first_chunk(message, &Section::whole()) {
            self.state
                .lock()
                .last_body_read
                .insert(message.mailbox.clone(), message.uid);
            return;
        }
        let wanted: Vec<(MessageRef, u64)> = {
            let mut state = self.state.lock();
            let previous = state
                .last_body_read
                .insert(message.mailbox.clone(), message.uid);
            let Some(listing) = state
                .listings
                .get(&message.mailbox)
                .filter(|l| l.validity == message.validity)
            else {
                return;
            };
            let Ok(pos) = listing.order.binary_search(&message.uid) else {
                return;
            };
            let sequential = pos > 0 && previous == Some(listing.order[pos - 1]);
            if !sequential {
                return;
            }
            let mut budget = BODY_READ_AHEAD_BYTES;
            listing.order[pos..]
                .iter()
                .filter_map(|uid| listing.by_uid.get(uid))
                .filter(|meta| meta.size <= content::RAW_CHUNK)
                .take(BODY_READ_AHEAD)
                .take_while(|meta| {
                    let fits = meta.size <= budget;
                    budget = budget.saturating_sub(meta.size);
                    fits
                })
                .map(|meta| {
                    let m = MessageRef {
                        uid: meta.uid,
                        ..message.clone()
                    };
                    (m, meta.size)
                })
                .filter(|(m, _)| !self.content.has_first_chunk(m, &Section::whole()))
                .collect()
        };
        if wanted.len() > 1 {
            if let Err(e) = self
                .content
                .prefetch_first_chunks(&wanted, &Section::whole())
            {
                tracing::debug!(error = %e, "read-ahead of messages failed");
            }
        }
    }

    /// Whether changes are refused with EROFS.
    pub fn read_only(&self) -> bool {
        self.config.read_only
    }
}

fn dot(ino: u64, name: &str) -> DirEntry {
    DirEntry {
        ino,
        kind: Kind::Directory,
        name: name.to_string(),
    }
}

#[cfg(test)]
mod tests;
