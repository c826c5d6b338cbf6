//! Names: looking them up, listing directories, and forgetting what the kernel dropped.
//! Mailbox directories come from the mailbox tree and each mailbox's listing; message
//! directories from the message's BODYSTRUCTURE (its layout).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::handles::{self, DirItem, DirStamp, Snapshot};
use super::inodes::{MessageRef, Node, ROOT};
use super::mailboxes::MailboxTree;
use super::metadata::{ListingPlan, LISTING_FRESH, LISTING_RECHECK_ON_MISS, TREE_FRESH};
use super::newmail::FileOrigin;
use super::walk::Walk;
use super::{searches, virtual_dirs, AttrReply, DirEntry, Fs, FsError, FsResult, Invalidation};
use crate::mime::{self, Entry, EntryKind};
use crate::store::{LinkState, MailboxId, Section, StoreError, Uid};

/// How many BODYSTRUCTUREs to fetch at once when a walk visits messages in order.
pub const STRUCTURE_READ_AHEAD: usize = 64;
/// Dropping this many nodes (since memory was last released) tells the process so.
const MANY_FORGOTTEN: u64 = 4096;
/// How often the mailbox directories the kernel keeps are checked for a mailbox no longer
/// followed: as often as an unfollowed mailbox's attributes expire.
const KEPT_DIRS_CHECK: Duration = Duration::from_secs(1);
/// A listing or a directory snapshot this large leaves megabytes behind when it is freed.
const MANY_ENTRIES: usize = 1000;

/// A name as UTF-8; other names cannot exist here.
pub(super) fn name_str(name: &OsStr) -> FsResult<&str> {
    name.to_str().ok_or(FsError::NotFound)
}

/// Finds the entries of the (possibly nested) message directory at `section`.
pub(super) fn entries_in<'a>(entries: &'a [Entry], section: &Section) -> Option<&'a [Entry]> {
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
                entries_in(inner, section)
            } else {
                None
            }
        }
        EntryKind::File(_) => None,
    })
}

/// The node of one entry of a message directory.
pub(super) fn entry_node(
    message: &MessageRef,
    dir: &Section,
    entry: &Entry,
    mtime: std::time::SystemTime,
) -> Node {
    match &entry.kind {
        EntryKind::File(spec) => Node::File {
            message: message.clone(),
            dir: dir.clone(),
            name: entry.name.clone(),
            spec: Box::new(spec.clone()),
            mtime,
            known_size: None,
        },
        EntryKind::Message { section, .. } => Node::Message {
            message: message.clone(),
            section: section.clone(),
            mtime,
        },
    }
}

impl Fs {
    // ---- what is known, fetched when needed ---------------------------------------------

    /// The mailbox tree: any held (`refresh` false), or one at most `TREE_FRESH` old. If
    /// the server cannot be reached or does not answer in time, the tree held before is
    /// shown, however old: what is cached stays reachable through it.
    pub(super) fn tree(&self, refresh: bool) -> FsResult<Arc<MailboxTree>> {
        // A followed list is kept true by the store's reports: any tree held will do, but
        // not one forgotten after a report.
        let max_age = match (refresh, self.store.is_list_followed()) {
            (false, _) => None,
            (true, true) => Some(Duration::MAX),
            (true, false) => Some(TREE_FRESH),
        };
        if let Some(tree) = self.metadata.tree(max_age) {
            return Ok(tree);
        }
        match self.list_tree() {
            Err(FsError::Store(e @ (StoreError::Connection(_) | StoreError::Timeout(_)))) => {
                match self.metadata.tree(None) {
                    Some(held) => {
                        tracing::warn!(error = %e, "could not list the mailboxes; showing them as last listed");
                        Ok(held)
                    }
                    None => Err(FsError::Store(e)),
                }
            }
            listed => listed,
        }
    }

    /// LISTs the mailboxes now and keeps the tree.
    pub(super) fn list_tree(&self) -> FsResult<Arc<MailboxTree>> {
        let ticket = self.metadata.tree_ticket();
        let list = self.store.list_mailboxes()?;
        let tree = Arc::new(MailboxTree::build(&list));
        self.metadata.set_tree(Arc::clone(&tree), ticket);
        Ok(tree)
    }

    /// Lists `mailbox` unless a listing at most `max_age` old is held (any age with `None`).
    /// With CONDSTORE, an unchanged mailbox costs one EXAMINE instead of a listing.
    pub(super) fn ensure_listing(
        &self,
        mailbox: &MailboxId,
        max_age: Option<Duration>,
    ) -> FsResult<()> {
        let followed = self.store.is_followed(mailbox);
        let ticket = match self.metadata.plan_listing(mailbox, max_age, followed) {
            ListingPlan::Use => return Ok(()),
            ListingPlan::CheckVersion { known, ticket } => {
                tracing::debug!(mailbox = %mailbox, followed, "checking a listing's version");
                if self.store.mailbox_version(mailbox)? == Some(known)
                    && self.metadata.confirm_unchanged(mailbox, ticket)
                {
                    return Ok(());
                }
                ticket
            }
            ListingPlan::Relist { ticket } => ticket,
        };
        tracing::debug!(mailbox = %mailbox, followed, "listing a mailbox");
        let fresh = self.store.list_messages(mailbox)?;
        let validity = fresh.uid_validity;
        let version = fresh.version;
        let change = self.metadata.install_listing(mailbox, fresh, ticket);
        // From this state on, the store reports the mailbox's changes (where it can).
        self.store.follow(mailbox, version);
        if change.validity_changed {
            self.content.retain_validity(mailbox, validity);
        }
        self.announce(mailbox, &change);
        if change.size > MANY_ENTRIES {
            // Parsing a large listing leaves megabytes of freed buffers behind.
            self.released_memory();
        }
        Ok(())
    }

    /// The directory layout of a message, from its BODYSTRUCTURE. When messages are visited
    /// in listing order (a recursive walk), the next ones' structures come in the same
    /// request. `message.eml` is sized by the same answer, never by a listing that may
    /// have changed since: a message that vanished is ENOENT, never a file of size 0.
    pub(super) fn layout(&self, message: &MessageRef) -> FsResult<Arc<Vec<Entry>>> {
        let previous = self.metadata.previous_uid(message);
        let walking = self
            .walks
            .visit(Walk::Structures, &message.mailbox, message.uid, previous);
        let held = match self.metadata.layout(message) {
            Some(layout) => Some(layout),
            None => {
                // On its way for a walk: wait for it (as long as this call may) rather than
                // ask again.
                self.layouts_coming.wait(message)?;
                self.metadata.layout(message)
            }
        };
        if let Some(layout) = held {
            if walking {
                self.structures_ahead(message);
            }
            return Ok(layout);
        }
        let uids = if walking {
            self.structures_from(message, true)
        } else {
            vec![message.uid]
        };
        let claim = self
            .layouts_coming
            .claim(uids.iter().map(|&uid| MessageRef {
                uid,
                ..message.clone()
            }));
        let layouts = self.fetch_layouts(message, &uids, !walking);
        drop(claim);
        if walking {
            let last = uids.last().copied().unwrap_or(message.uid);
            self.structures_ahead.fetched_to(message, last);
            self.structures_ahead(message);
        }
        layouts?
            .into_iter()
            .find_map(|(uid, layout)| (uid == message.uid).then_some(layout))
            .ok_or_else(|| {
                FsError::Store(StoreError::NoSuchMessage {
                    mailbox: message.mailbox.clone(),
                    uid: message.uid,
                })
            })
    }

    /// The messages from `message` on (or after it) whose structures a walk wants next:
    /// at most `STRUCTURE_READ_AHEAD`, less those held or on their way.
    fn structures_from(&self, message: &MessageRef, with_it: bool) -> Vec<Uid> {
        let next = self
            .metadata
            .following(message, 2 * STRUCTURE_READ_AHEAD, |_| true);
        let others = next
            .into_iter()
            .map(|m| m.uid)
            .filter(|&uid| uid != message.uid)
            .filter(|&uid| {
                let m = MessageRef {
                    uid,
                    ..message.clone()
                };
                !self.metadata.has_layout(&m) && !self.layouts_coming.contains(&m)
            });
        let first = with_it.then_some(message.uid);
        first
            .into_iter()
            .chain(others)
            .take(STRUCTURE_READ_AHEAD)
            .collect()
    }

    /// Sends the walk's next batch of structures to the read-ahead thread, if it is due now
    /// that the walk is at `message`.
    fn structures_ahead(&self, message: &MessageRef) {
        self.structures_ahead.send_due(message, |after| {
            let uids = self.structures_from(after, false);
            let (first, end) = (*uids.first()?, *uids.last()?);
            Some((first, end, (after.clone(), uids)))
        });
    }

    /// On the read-ahead thread: the layouts of `uids` (messages of `of`'s mailbox), unless
    /// held or on their way already.
    pub(super) fn structures_for_walk(&self, of: &MessageRef, uids: &[Uid]) {
        let claim = self.layouts_coming.claim(
            uids.iter()
                .map(|&uid| MessageRef { uid, ..of.clone() })
                .filter(|m| !self.metadata.has_layout(m)),
        );
        let uids: Vec<Uid> = claim.keys().iter().map(|m| m.uid).collect();
        if uids.is_empty() {
            return;
        }
        if let Err(e) = self.fetch_layouts(of, &uids, false) {
            tracing::debug!(mailbox = %of.mailbox, error = %e, "read-ahead of BODYSTRUCTUREs failed");
        }
    }

    /// Fetches the structures of `uids` (messages of `of`'s mailbox, `of` the first), makes
    /// their layouts with exact sizes, and keeps them. `alone`: `of` is looked at by itself,
    /// and its small text bodies come with its sizes.
    fn fetch_layouts(
        &self,
        of: &MessageRef,
        uids: &[Uid],
        alone: bool,
    ) -> FsResult<Vec<(Uid, Arc<Vec<Entry>>)>> {
        let structures = match self.store.body_structures(&of.mailbox, of.validity, uids) {
            // One unusable message must not spoil its neighbours: ask for the first alone.
            Err(e) if uids.len() > 1 && !matches!(e, StoreError::UidValidityChanged { .. }) => {
                if matches!(self.store.link_state(), LinkState::Online) {
                    tracing::warn!(mailbox = %of.mailbox, error = %e, "read-ahead of BODYSTRUCTUREs failed; fetching one");
                } else {
                    // Offline, a structure not kept is no news: one line per message
                    // would flood the log of a walk.
                    tracing::debug!(mailbox = %of.mailbox, error = %e, "read-ahead of BODYSTRUCTUREs failed; fetching one");
                }
                self.store
                    .body_structures(&of.mailbox, of.validity, &uids[..1])
            }
            other => other,
        };
        let structures = match structures {
            Ok(structures) => structures,
            Err(e @ StoreError::UidValidityChanged { .. }) => return Err(e.into()),
            Err(e) => {
                // Not at hand (offline, and not kept): made from the message if it is held
                // whole, else the error.
                let made = self
                    .metadata
                    .message(of)
                    .and_then(|meta| self.content.structure_from_held(of, meta.size));
                match made {
                    Some(made) => {
                        tracing::debug!(uid = of.uid.0, error = %e, "structure made from the message held whole");
                        vec![made]
                    }
                    None => return Err(e.into()),
                }
            }
        };
        let mut layouts: Vec<(Uid, Vec<Entry>)> = structures
            .iter()
            .map(|s| (s.uid, mime::message_layout(&s.body, s.size)))
            .collect();
        self.exact_sizes(
            &of.mailbox,
            of.validity,
            &mut layouts,
            alone.then_some(of.uid),
            &structures,
        );
        Ok(layouts
            .into_iter()
            .map(|(uid, layout)| {
                let layout = Arc::new(layout);
                let one = MessageRef { uid, ..of.clone() };
                self.metadata.insert_layout(one, Arc::clone(&layout));
                (uid, layout)
            })
            .collect())
    }

    // ---- lookups --------------------------------------------------------------------------

    /// What `name` in directory `parent` stands for, asking the server if needed. Nothing
    /// is counted: the kernel has not been told.
    pub(super) fn resolve(&self, parent: u64, name: &str) -> FsResult<Node> {
        match self.node(parent)? {
            Node::Root => self.resolve_in_mailbox_dir("", name),
            Node::Mailbox { path } => self.resolve_in_mailbox_dir(&path, name),
            Node::Message {
                message,
                section,
                mtime,
            } => {
                if let Some(temp) = self.resolve_copy_temp(&message, &section, name) {
                    return temp;
                }
                let node = self
                    .message_entry(&message, &section, name, mtime)?
                    .ok_or(FsError::NotFound)?;
                if self.hidden.lock().contains(&node.key()) {
                    return Err(FsError::NotFound);
                }
                self.exact_file(node)
            }
            Node::Virtual(dir) if dir.is_dir() => self.resolve_virtual(&dir, name),
            Node::File { .. }
            | Node::NewFile { .. }
            | Node::StoredFile { .. }
            | Node::Virtual(_) => Err(FsError::NotADirectory),
        }
    }

    /// What `name` is in the directory of `message` at `section`, hidden or not, as the
    /// layout has it (sizes not made exact yet); `None` when the directory has no such
    /// entry. Every message directory has message.eml, sized by the listing: `cat
    /// DIR/message.eml` needs no structure, only the content (one round trip).
    pub(super) fn message_entry(
        &self,
        message: &MessageRef,
        section: &Section,
        name: &str,
        mtime: std::time::SystemTime,
    ) -> FsResult<Option<Node>> {
        if section.is_whole() && name == mime::MESSAGE_FILE {
            if let Some(meta) = self.metadata.message(message) {
                return Ok(Some(Node::File {
                    message: message.clone(),
                    dir: section.clone(),
                    name: name.to_string(),
                    spec: Box::new(mime::whole_message_file(meta.size)),
                    mtime,
                    known_size: None,
                }));
            }
        }
        let layout = self.layout(message)?;
        let entries = entries_in(&layout, section).ok_or(FsError::NotFound)?;
        Ok(entries
            .iter()
            .find(|e| e.name == name)
            .map(|entry| entry_node(message, section, entry, mtime)))
    }

    fn resolve_in_mailbox_dir(&self, path: &str, name: &str) -> FsResult<Node> {
        let tree = self.tree(false)?;
        let dir = tree.get(path).ok_or(FsError::NotFound)?;
        if let Some(child) = dir.children.get(name) {
            return Ok(Node::Mailbox {
                path: child.clone(),
            });
        }
        if let Some((message, mtime)) = self.copy_named(path, name) {
            return Ok(Node::Message {
                message,
                section: Section::whole(),
                mtime,
            });
        }
        if self.new_files.get(path, name).is_some() {
            return Ok(Node::NewFile {
                dir_path: path.to_string(),
                name: name.to_string(),
            });
        }
        if searches::is_search_name(name) {
            return self.search_dir(path);
        }
        if virtual_dirs::is_reserved(name) {
            // Never a message, and no reason to ask the server for new mailboxes.
            return match virtual_dirs::at_root(name).filter(|_| path.is_empty()) {
                Some(node) => Ok(Node::Virtual(node)),
                None => Err(FsError::NotFound),
            };
        }
        if let Some(mailbox) = dir.selectable_id() {
            let opens = match self.listing_at_hand(dir, mailbox, None) {
                Ok(opens) => opens,
                // Offline, and no listing of it kept: no name in it is known, so none is
                // there (`mv` and rename(2) into it look the name up first; EIO failed them).
                Err(FsError::Store(StoreError::Connection(_)))
                    if matches!(self.store.link_state(), LinkState::Offline { .. }) =>
                {
                    false
                }
                Err(e) => return Err(e),
            };
            let left = |m: &MessageRef| self.new_files.renamed_away(path, name).as_ref() == Some(m);
            let file = || {
                self.metadata
                    .find_file(mailbox, name)
                    .filter(|(m, _)| opens && !left(m))
            };
            if opens && name.as_bytes().first().is_some_and(u8::is_ascii_digit) {
                if let Some(node) = self.find_message_dir(mailbox, name)? {
                    // A file of the same name shows where the listing shows it (the
                    // directory is then one of a message shown as its file).
                    let shows = file().is_some_and(|(m, _)| {
                        let messages = self.metadata.listed_names(mailbox);
                        self.files_shown(mailbox, dir, &messages)
                            .iter()
                            .any(|(shown, _)| *shown == m)
                    });
                    if !shows {
                        return Ok(node);
                    }
                }
            }
            if let Some((message, origin)) = file() {
                return Ok(Node::StoredFile {
                    message,
                    name: origin.name,
                    size: origin.size,
                    mtime: origin.mtime,
                });
            }
            if let Some(removed) = self.removed_dirs.get(path, name) {
                return Ok(Node::Virtual(removed));
            }
        }
        // Perhaps another client created it: ask again, at most once per `TREE_FRESH`.
        let tree = self.tree(true)?;
        match tree.get(path).and_then(|d| d.children.get(name)) {
            Some(child) => Ok(Node::Mailbox {
                path: child.clone(),
            }),
            None => Err(FsError::NotFound),
        }
    }

    /// The message directory `name` in `mailbox`, relisting once if the listing held is
    /// old enough that the message may have arrived since.
    fn find_message_dir(&self, mailbox: &MailboxId, name: &str) -> FsResult<Option<Node>> {
        self.ensure_listing(mailbox, None)?;
        let found = match self.metadata.find_message(mailbox, name) {
            Some(found) => Some(found),
            None => {
                self.ensure_listing(mailbox, Some(LISTING_RECHECK_ON_MISS))?;
                self.metadata.find_message(mailbox, name)
            }
        };
        Ok(found.map(|(message, mtime)| Node::Message {
            message,
            section: Section::whole(),
            mtime,
        }))
    }

    /// Gives the kernel an inode for `node`, counting the lookup, with its attributes.
    pub(super) fn remember(&self, node: Node) -> AttrReply {
        self.remember_by(|inodes| inodes.remember(node))
    }

    /// The same, for `node` found in directory `parent` (see `InodeTable::remember_in`).
    fn remember_in(&self, parent: u64, node: Node) -> AttrReply {
        self.remember_by(|inodes| inodes.remember_in(parent, node))
    }

    /// The attributes of the inode `remember` gives, the node as the table keeps it.
    fn remember_by(
        &self,
        remember: impl FnOnce(&mut super::inodes::InodeTable) -> u64,
    ) -> AttrReply {
        let (ino, node) = {
            let mut inodes = self.inodes.lock();
            let ino = remember(&mut inodes);
            (ino, inodes.get(ino).cloned().expect("just remembered"))
        };
        self.attr_of(ino, &node)
    }

    /// Looks up `name` in directory `parent`; the kernel now holds the answer's inode.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> FsResult<AttrReply> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let node = self.resolve(parent, name_str(name)?)?;
        Ok(self.remember_in(parent, node))
    }

    /// The kernel forgot `count` lookups of `ino`. The process hears that memory was freed
    /// when the inode table gave back its slots (the kernel forgets in bursts, e.g. after
    /// drop_caches) and after every [`MANY_FORGOTTEN`] nodes dropped.
    pub fn forget(&self, ino: u64, count: u64) {
        let (dropped_node, shrank) = {
            let mut inodes = self.inodes.lock();
            let Some(node) = inodes.forget(ino, count) else {
                return;
            };
            (node, inodes.compact())
        };
        // A message directory the kernel forgot takes its layout along: what a walk
        // looked at comes back, and the kernel keeps the inodes of what it will ask again.
        if let Node::Message {
            message, section, ..
        } = &dropped_node
        {
            if section.is_whole() {
                self.metadata.drop_layout(message);
            }
        }
        let dropped = self.forgotten.fetch_add(1, Ordering::Relaxed) + 1;
        if shrank || dropped >= MANY_FORGOTTEN {
            // A drop counted by another thread meanwhile is lost: it only delays a release.
            self.forgotten.store(0, Ordering::Relaxed);
            self.released_memory();
        }
    }

    // ---- directories ----------------------------------------------------------------------

    /// A snapshot of directory `ino`'s entries, refreshing a mailbox's listing from the
    /// server first (as every `ls` did when directories were opened).
    fn snapshot(&self, ino: u64) -> FsResult<Snapshot> {
        let mut stamp = None;
        let items = match self.node(ino)? {
            Node::Root => self.mailbox_dir_items(ino, "", &mut stamp)?,
            Node::Mailbox { path } => self.mailbox_dir_items(ino, &path, &mut stamp)?,
            Node::Message {
                message,
                section,
                mtime,
            } => {
                // Expunged or moved by another client since it was looked up: an error
                // (ESTALE), not an empty listing a backup would copy as an empty directory.
                if self.metadata.is_gone(&message) {
                    return Err(FsError::NotFound);
                }
                let layout = self.layout(&message)?;
                let entries = entries_in(&layout, &section).ok_or(FsError::NotFound)?;
                let hidden = self.hidden.lock();
                let mut items = vec![
                    DirItem::Dot { name: ".", ino },
                    DirItem::Dot {
                        name: "..",
                        ino: ROOT,
                    },
                ];
                for entry in entries {
                    let node = entry_node(&message, &section, entry, mtime);
                    if !hidden.contains(&node.key()) {
                        items.push(DirItem::Child {
                            name: entry.name.clone(),
                            node,
                        });
                    }
                }
                items
            }
            Node::Virtual(dir) if dir.is_dir() => {
                let mut items = vec![
                    DirItem::Dot { name: ".", ino },
                    DirItem::Dot {
                        name: "..",
                        ino: ROOT,
                    },
                ];
                items.extend(self.virtual_items(&dir)?);
                items
            }
            Node::File { .. }
            | Node::NewFile { .. }
            | Node::StoredFile { .. }
            | Node::Virtual(_) => return Err(FsError::NotADirectory),
        };
        Ok(Snapshot {
            ino,
            items,
            stamp,
            kept: self.dir_is_final(ino),
        })
    }

    /// Whether the kernel may keep a directory's entries once read: true for message
    /// directories, whose contents never change (hiding a file with `rm` is seen by the
    /// kernel itself), and for mailboxes the store follows (a change bumps the directory's
    /// mtime and invalidates it, which drops the kernel's copy).
    fn dir_is_final(&self, ino: u64) -> bool {
        match self.node(ino) {
            Ok(Node::Message { .. }) => true,
            Ok(Node::Mailbox { path }) => self.followed_path(&path),
            _ => false,
        }
    }

    /// Lists `mailbox`, shown by `dir`, unless a listing at most `max_age` old is held (see
    /// `ensure_listing`); whether its listing is at hand. One listed `\Noselect` with a
    /// special use (`MailboxDir::unsure`) that the server does not open is shown with its
    /// children alone: false. So is one with children while the server cannot be reached and
    /// it is not kept; without children there is nothing to show, and it may hold messages
    /// (Dovecot lists `Trash` so at times): the error (EIO), as for any mailbox.
    fn listing_at_hand(
        &self,
        dir: &super::mailboxes::MailboxDir,
        mailbox: &MailboxId,
        max_age: Option<Duration>,
    ) -> FsResult<bool> {
        match self.ensure_listing(mailbox, max_age) {
            Ok(()) => Ok(true),
            Err(e) if dir.unsure && (!dir.children.is_empty() || !e.is_unreachable()) => {
                tracing::debug!(mailbox = %mailbox, error = %e, "a mailbox listed \\Noselect with a special use does not open (or, unreachable, is not kept): its children alone");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the mailbox shown at `path` is followed by the store (kept true by reports).
    pub(super) fn followed_path(&self, path: &str) -> bool {
        self.metadata
            .tree(None)
            .and_then(|t| t.get(path).and_then(|d| d.selectable_id().cloned()))
            .is_some_and(|id| self.store.is_followed(&id))
    }

    fn mailbox_dir_items(
        &self,
        ino: u64,
        path: &str,
        stamp: &mut Option<DirStamp>,
    ) -> FsResult<Vec<DirItem>> {
        let tree = self.tree(true)?;
        let dir = tree.get(path).ok_or(FsError::NotFound)?;
        let mut mailbox = dir.selectable_id();
        if let Some(id) = mailbox {
            if self.listing_at_hand(dir, id, Some(LISTING_FRESH))? {
                // Taken before the snapshot: a change between them shows as one since.
                *stamp = Some(DirStamp {
                    mailbox: id.clone(),
                    generation: self.metadata.generation(id),
                });
            } else {
                mailbox = None;
            }
        }
        let mut items = vec![
            DirItem::Dot { name: ".", ino },
            DirItem::Dot {
                name: "..",
                ino: ROOT,
            },
        ];
        for (name, child_path) in &dir.children {
            // Still reachable by name: only walks (ls, find, grep -r) pass it by.
            let hidden = self.config.hide_virtual_folders
                && tree.get(child_path).is_some_and(|d| d.is_virtual());
            if hidden {
                continue;
            }
            items.push(DirItem::Child {
                name: name.clone(),
                node: Node::Mailbox {
                    path: child_path.clone(),
                },
            });
        }
        let new_files = self.new_files.in_dir(path, true);
        for name in &new_files {
            items.push(DirItem::Child {
                node: Node::NewFile {
                    dir_path: path.to_string(),
                    name: name.clone(),
                },
                name: name.clone(),
            });
        }
        if let Some(mailbox) = mailbox {
            let messages = self.metadata.snapshot(mailbox);
            let files = self.files_shown(mailbox, dir, &messages);
            let shown_as_file: HashSet<Uid> = files.iter().map(|(m, _)| m.uid).collect();
            // A new file of the same name is the newer version.
            for (message, origin) in files {
                let left =
                    self.new_files.renamed_away(path, &origin.name).as_ref() == Some(&message);
                if new_files.contains(&origin.name) || left {
                    continue;
                }
                items.push(DirItem::Child {
                    name: origin.name.clone(),
                    node: Node::StoredFile {
                        message,
                        name: origin.name,
                        size: origin.size,
                        mtime: origin.mtime,
                    },
                });
            }
            for (name, message, mtime) in messages {
                if dir.children.contains_key(&name) || shown_as_file.contains(&message.uid) {
                    continue;
                }
                items.push(DirItem::Child {
                    name,
                    node: Node::Message {
                        message,
                        section: Section::whole(),
                        mtime,
                    },
                });
            }
        }
        Ok(items)
    }

    /// The files that file-born messages of `mailbox` (listed as `messages`) show in its
    /// directory `dir`: the newest of each name, unless a child mailbox or a listed message
    /// directory has the name; then that file's own message directory is listed instead,
    /// so that no name shows twice (`cat` of a file found a directory) and nothing is out
    /// of reach. The directory of a message shown as a file is not listed (still there by
    /// name): walks (`rsync --delete`, `du`, `grep -r`, `cp -r`) see each file once, and
    /// never remove the directory of a file they just stored as something the source
    /// lacks.
    fn files_shown(
        &self,
        mailbox: &MailboxId,
        dir: &super::mailboxes::MailboxDir,
        messages: &[(String, MessageRef, std::time::SystemTime)],
    ) -> Vec<(MessageRef, FileOrigin)> {
        let mut files: BTreeMap<String, (MessageRef, FileOrigin)> = self
            .metadata
            .files(mailbox)
            .into_iter()
            .filter(|(_, origin)| !dir.children.contains_key(&origin.name))
            .map(|(message, origin)| (origin.name.clone(), (message, origin)))
            .collect();
        // Message directory names begin with their UID: only such a file name can clash.
        if !files
            .keys()
            .any(|name| name.as_bytes().first().is_some_and(u8::is_ascii_digit))
        {
            return files.into_values().collect();
        }
        let dir_names: HashMap<Uid, &str> = messages
            .iter()
            .map(|(name, m, _)| (m.uid, name.as_str()))
            .collect();
        let shown: HashSet<Uid> = files.values().map(|(m, _)| m.uid).collect();
        let mut listed: HashSet<&str> = messages
            .iter()
            .filter(|(_, m, _)| !shown.contains(&m.uid))
            .map(|(name, _, _)| name.as_str())
            .collect();
        // A file given way lists its own directory, whose name may take another's.
        let mut giving_way: Vec<String> = files
            .keys()
            .filter(|name| listed.contains(name.as_str()))
            .cloned()
            .collect();
        while let Some(name) = giving_way.pop() {
            let Some((message, _)) = files.remove(&name) else {
                continue;
            };
            if let Some(dir_name) = dir_names.get(&message.uid) {
                if listed.insert(dir_name) && files.contains_key(*dir_name) {
                    giving_way.push(dir_name.to_string());
                }
            }
        }
        files.into_values().collect()
    }

    /// Items of directory `ino` from `offset` on, at most `max`, each with the offset of
    /// the next. From offset 0 a new snapshot is taken; any other offset is one handed out
    /// here, and names its snapshot and place. A message that left its mailbox since the
    /// snapshot is left out, so one directory never shows under two parents. Asked past
    /// the end, the snapshot is done with (see `read_to_the_end`).
    fn page(&self, ino: u64, offset: u64, max: usize) -> FsResult<Vec<(u64, DirItem)>> {
        let found = match offset {
            0 => None,
            _ => self.dirs.at(ino, offset),
        };
        let (id, snapshot, start) = match found {
            Some(found) => found,
            None => {
                if offset == 0 {
                    self.dir_reads.fetch_add(1, Ordering::Relaxed);
                } else {
                    // Dropped: many directories were read since this reader stopped. It
                    // goes on at the same place in a new snapshot.
                    tracing::debug!(ino, offset, "a directory read goes on in a new snapshot");
                }
                let (id, snapshot) = self.dirs.keep(self.snapshot(ino)?);
                tracing::debug!(
                    ino,
                    id,
                    entries = snapshot.items.len(),
                    kept = snapshot.kept,
                    "directory snapshot"
                );
                (id, snapshot, handles::index_of(offset))
            }
        };
        if start >= snapshot.items.len() {
            self.read_to_the_end(id);
            return Ok(Vec::new());
        }
        Ok(snapshot
            .items
            .iter()
            .enumerate()
            .skip(start)
            .filter(|(_, item)| match item {
                DirItem::Child {
                    node:
                        Node::Message {
                            message, section, ..
                        },
                    ..
                } if section.is_whole() => self.metadata.is_listed(message),
                DirItem::Child {
                    node: Node::StoredFile { message, .. },
                    ..
                } => self.metadata.is_listed(message),
                _ => true,
            })
            .take(max)
            .map(|(i, item)| (handles::offset_after(id, i), item.clone()))
            .collect())
    }

    /// The kernel read snapshot `id` to the end, and now holds it (`FOPEN_CACHE_DIR`). A
    /// directory whose changes do not all reach the kernel is invalidated, so the next
    /// reader comes here again; so is a mailbox whose listing changed since the snapshot
    /// (the change's invalidation may have come before the kernel kept the old one). A
    /// mailbox directory the kernel keeps is watched until its mailbox is no longer
    /// followed (see [`Fs::drop_unfollowed_dirs`]).
    fn read_to_the_end(&self, id: u64) {
        let Some(snapshot) = self.dirs.drop_snapshot(id) else {
            return;
        };
        if snapshot.items.len() > MANY_ENTRIES {
            // A large directory's snapshot (a name and a node per message) was just freed.
            self.released_memory();
        }
        let changed = snapshot
            .stamp
            .as_ref()
            .is_some_and(|s| self.metadata.generation(&s.mailbox) != s.generation);
        if !snapshot.kept || changed {
            self.invalidations
                .send(Invalidation::Inode { ino: snapshot.ino });
        } else if let Some(stamp) = &snapshot.stamp {
            self.dirs.kept_while_followed(snapshot.ino, &stamp.mailbox);
        }
    }

    /// Mailbox directories the kernel keeps whose mailboxes are no longer followed (the
    /// watcher lost its connection, or idles elsewhere now): the kernel is told to drop
    /// them, so the next reader lists them again.
    pub fn drop_unfollowed_dirs(&self) {
        for ino in self.dirs.unfollowed(|m| self.store.is_followed(m)) {
            self.invalidations.send(Invalidation::Inode { ino });
        }
    }

    /// Checks the kept directories (`drop_unfollowed_dirs`) every [`KEPT_DIRS_CHECK`], on
    /// a thread of its own, until the core is dropped.
    pub fn check_kept_dirs(self: &Arc<Self>) {
        let core = Arc::downgrade(self);
        let started = std::thread::Builder::new()
            .name("kept-dirs".into())
            .spawn(move || loop {
                std::thread::sleep(KEPT_DIRS_CHECK);
                match core.upgrade() {
                    Some(fs) => fs.drop_unfollowed_dirs(),
                    None => return,
                }
            });
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot start the thread that checks kept directories");
        }
    }

    /// Entries of directory `ino` from `offset` on (see `page`). The numbers are those a
    /// lookup would give; nothing is counted.
    pub fn readdir(&self, ino: u64, offset: u64, max: usize) -> FsResult<Vec<(u64, DirEntry)>> {
        let page = self.page(ino, offset, max)?;
        let inodes = self.inodes.lock();
        Ok(page
            .into_iter()
            .map(|(next, item)| {
                let ino = match &item {
                    DirItem::Dot { ino, .. } => *ino,
                    DirItem::Child { node, .. } => inodes.peek(node),
                };
                let entry = DirEntry {
                    ino,
                    kind: item.kind(),
                    name: item.name().to_string(),
                };
                (next, entry)
            })
            .collect())
    }

    /// Like `readdir`, with each entry's attributes (READDIRPLUS saves a lookup per entry).
    /// Every entry but `.` and `..` counts as a lookup: an entry the caller does not pass to
    /// the kernel must be given back with `forget(ino, 1)`.
    pub fn readdirplus(
        &self,
        ino: u64,
        offset: u64,
        max: usize,
    ) -> FsResult<Vec<(u64, DirEntry, AttrReply)>> {
        let page = self.page(ino, offset, max)?;
        let mut out = Vec::with_capacity(page.len());
        for (next, item) in page {
            let reply = match &item {
                // An entry that vanished since the snapshot is skipped, not an error.
                DirItem::Dot { ino, .. } => match self.getattr(*ino) {
                    Ok(reply) => reply,
                    Err(_) => continue,
                },
                // A text body's size is not learned here: a walk passing by (`find`) must not
                // fetch every body. Its estimate goes with no attribute lifetime, so a
                // `stat` asks again and gets the exact size (`getattr`).
                DirItem::Child { node, .. } => self.remember_in(ino, node.clone()),
            };
            let entry = DirEntry {
                ino: reply.attr.ino,
                kind: item.kind(),
                name: item.name().to_string(),
            };
            out.push((next, entry, reply));
        }
        Ok(out)
    }
}
