//! A message directory copied into another mailbox (`cp -r`, rsync, a file manager's
//! copy). The copier makes the directory, then each file in it. `mkdir` of a name that is
//! the directory of a message the mount shows in another mailbox (the kernel holds it:
//! the copier just looked at it) copies that message on the server (`UID COPY`: flags and
//! date kept, no byte sent), and the directory it makes is the copy's, its files hidden.
//! Each file the copier then creates (rsync's temporary name, renamed onto it) shows
//! again, and what it writes into it must be the bytes the file holds (compared with the
//! message copied): writing stores nothing. A write of other bytes removes the copy
//! (unless `--delete=off`) and fails, so a different message of the same name never
//! passes for the one written.
//!
//! The name the copier made resolves to the copy while the copy is in its mailbox and
//! used, until `NAME_KEPT` after its last use (the copy's own name has its own UID); then
//! the copy is ended, and every file of it shows (an interrupted copy is whole on the
//! server). Offline, without UIDPLUS, or with two shown messages of the name, `mkdir`
//! makes a mailbox as for any name.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use super::changes::DeleteMode;
use super::inodes::{MessageRef, Node, NodeKey};
use super::namespace::entry_node;
use super::{AttrReply, Fs, FsError, FsResult, Invalidation};
use crate::mime::{self, Entry, EntryKind};
use crate::store::{LinkState, MailboxId, Section, StoreError};

/// How long after its last use the name a copier made keeps resolving to the copy.
pub const NAME_KEPT: Duration = Duration::from_secs(300);

/// At most this many copies are remembered; the least recently used go first.
const COPIES_KEPT: usize = 4096;

/// One copy being filled.
#[derive(Clone)]
struct Copy {
    /// The message copied: what is written is compared with it.
    source: MessageRef,
    /// The directory the name was made in, and the name.
    dir: String,
    name: String,
    mtime: SystemTime,
    used: Instant,
    /// rsync's temporary names (`.body.txt.Ab12Cd`) in the copy, by directory, and the
    /// file each is renamed to when written.
    temps: HashMap<(Section, String), String>,
    /// Made by a `mkdir` of its name: other bytes written into it mean it is not the
    /// message written, and it is removed. A copy a stored file's `cp` made is the file
    /// the user copied: other bytes are refused, and it stays.
    by_mkdir: bool,
}

/// The copies made by `mkdir` on this mount and being filled.
#[derive(Default)]
pub struct Copies {
    /// Whether any copy is held: lookups pass by without a lock when none is.
    held: AtomicBool,
    inner: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    copies: HashMap<MessageRef, Copy>,
    /// The copy each name a copier made stands for, by directory and name.
    names: HashMap<(String, String), MessageRef>,
}

impl Table {
    fn remove(&mut self, copy: &MessageRef) -> Option<Copy> {
        let entry = self.copies.remove(copy)?;
        let name = (entry.dir.clone(), entry.name.clone());
        if self.names.get(&name) == Some(copy) {
            self.names.remove(&name);
        }
        Some(entry)
    }

    /// The copy, if used within `NAME_KEPT` (an older one is ended by `take_ended`).
    fn live(&mut self, copy: &MessageRef, now: Instant) -> Option<&mut Copy> {
        let entry = self.copies.get_mut(copy)?;
        if now.saturating_duration_since(entry.used) >= NAME_KEPT {
            return None;
        }
        entry.used = now;
        Some(entry)
    }
}

impl Copies {
    /// Keeps a copy; returns the least recently used one it ends to stay in bounds.
    fn insert(&self, copy: MessageRef, entry: Copy) -> Option<MessageRef> {
        let mut table = self.inner.lock();
        let mut ended = None;
        if table.copies.len() >= COPIES_KEPT {
            let oldest = table
                .copies
                .iter()
                .min_by_key(|(_, c)| c.used)
                .map(|(m, _)| m.clone());
            if let Some(oldest) = oldest {
                table.remove(&oldest);
                ended = Some(oldest);
            }
        }
        table
            .names
            .insert((entry.dir.clone(), entry.name.clone()), copy.clone());
        table.copies.insert(copy, entry);
        self.held.store(true, Ordering::Release);
        ended
    }

    /// The copies unused for `NAME_KEPT`, forgotten.
    fn take_ended(&self, now: Instant) -> Vec<MessageRef> {
        if !self.held.load(Ordering::Acquire) {
            return Vec::new();
        }
        let mut table = self.inner.lock();
        let ended: Vec<MessageRef> = table
            .copies
            .iter()
            .filter(|(_, c)| now.saturating_duration_since(c.used) >= NAME_KEPT)
            .map(|(m, _)| m.clone())
            .collect();
        for copy in &ended {
            table.remove(copy);
        }
        if table.copies.is_empty() {
            self.held.store(false, Ordering::Release);
        }
        ended
    }

    /// The copy the name `name` in the mailbox directory `dir` was made for, if still used.
    fn named(&self, dir: &str, name: &str, now: Instant) -> Option<(MessageRef, SystemTime)> {
        if !self.held.load(Ordering::Acquire) {
            return None;
        }
        let mut table = self.inner.lock();
        let copy = table
            .names
            .get(&(dir.to_string(), name.to_string()))?
            .clone();
        let mtime = table.live(&copy, now)?.mtime;
        Some((copy, mtime))
    }

    /// The copy of `source` made in the mailbox directory `dir` and still used, now also
    /// named `name` there (the copier names it after the message copied).
    fn made_from(
        &self,
        dir: &str,
        source: &MessageRef,
        name: &str,
        now: Instant,
    ) -> Option<(MessageRef, SystemTime)> {
        if !self.held.load(Ordering::Acquire) {
            return None;
        }
        let mut table = self.inner.lock();
        let copy = table
            .copies
            .iter()
            .find(|(_, c)| c.dir == dir && c.source == *source)
            .map(|(m, _)| m.clone())?;
        let entry = table.live(&copy, now)?;
        let old = std::mem::replace(&mut entry.name, name.to_string());
        let mtime = entry.mtime;
        let old = (dir.to_string(), old);
        if table.names.get(&old) == Some(&copy) {
            table.names.remove(&old);
        }
        table
            .names
            .insert((dir.to_string(), name.to_string()), copy.clone());
        Some((copy, mtime))
    }

    /// The message `copy` was copied from, while it is being filled.
    fn source_of(&self, copy: &MessageRef, now: Instant) -> Option<MessageRef> {
        if !self.held.load(Ordering::Acquire) {
            return None;
        }
        Some(self.inner.lock().live(copy, now)?.source.clone())
    }

    /// Whether `copy` was made by a `mkdir` of its name (see `Copy::by_mkdir`).
    fn by_mkdir(&self, copy: &MessageRef) -> bool {
        self.inner
            .lock()
            .copies
            .get(copy)
            .is_some_and(|c| c.by_mkdir)
    }

    fn forget(&self, copy: &MessageRef) -> Option<Copy> {
        let mut table = self.inner.lock();
        let gone = table.remove(copy);
        if table.copies.is_empty() {
            self.held.store(false, Ordering::Release);
        }
        gone
    }

    /// The file the temporary name `name` in `copy`'s directory at `dir` stands for.
    fn temp(&self, copy: &MessageRef, dir: &Section, name: &str, now: Instant) -> Option<String> {
        if !self.held.load(Ordering::Acquire) {
            return None;
        }
        let mut table = self.inner.lock();
        table
            .live(copy, now)?
            .temps
            .get(&(dir.clone(), name.to_string()))
            .cloned()
    }

    fn set_temp(
        &self,
        copy: &MessageRef,
        (dir, name): (&Section, &str),
        file: Option<&str>,
        now: Instant,
    ) {
        if let Some(entry) = self.inner.lock().live(copy, now) {
            let key = (dir.clone(), name.to_string());
            match file {
                Some(file) => entry.temps.insert(key, file.to_string()),
                None => entry.temps.remove(&key),
            };
        }
    }
}

/// The file an rsync temporary name (`.NAME.XXXXXX`, mkstemp's six characters) is for.
fn temp_target(name: &str) -> Option<&str> {
    let (file, suffix) = name.strip_prefix('.')?.rsplit_once('.')?;
    let random = suffix.len() == 6 && suffix.bytes().all(|b| b.is_ascii_alphanumeric());
    (random && !file.is_empty()).then_some(file)
}

fn differs(name: &str) -> FsError {
    FsError::NotPermitted(format!(
        "{name} differs from the file of the message of that name, so it cannot be copied \
         into a message directory"
    ))
}

/// Every node of a message directory's layout, files and encapsulated messages, at any
/// depth, with `message.eml` of the message itself.
fn every_node(message: &MessageRef, layout: &[Entry]) -> Vec<NodeKey> {
    fn walk(message: &MessageRef, dir: &Section, entries: &[Entry], out: &mut Vec<NodeKey>) {
        for entry in entries {
            out.push(entry_node(message, dir, entry, SystemTime::UNIX_EPOCH).key());
            if let EntryKind::Message { section, entries } = &entry.kind {
                walk(message, section, entries, out);
            }
        }
    }
    let mut out = vec![NodeKey::File(
        message.clone(),
        Section::whole(),
        mime::MESSAGE_FILE.to_string(),
    )];
    walk(message, &Section::whole(), layout, &mut out);
    out
}

impl Fs {
    /// `mkdir NAME` in the mailbox directory at `dir_path` (`mailbox`), where NAME is the
    /// directory of exactly one listed message in another mailbox: that message is copied
    /// here, and the copy's directory, its files hidden, is what `mkdir` made. `None` when
    /// NAME is no such name (then a mailbox is made, as for any other name).
    pub(super) fn mkdir_copy(
        &self,
        dir_path: &str,
        mailbox: &MailboxId,
        name: &str,
    ) -> FsResult<Option<AttrReply>> {
        let offline = matches!(self.store.link_state(), LinkState::Offline { .. });
        if offline || !self.store.capabilities().uidplus {
            // Without COPYUID the copy could not be told from other messages; offline it
            // cannot be made. A mailbox is made, as for any other name.
            return Ok(None);
        }
        // The copier looks at what it copies first: the kernel holds that directory.
        let held = |m: &MessageRef| {
            let key = NodeKey::Message(m.clone(), Section::whole());
            self.inodes.lock().ino_of(&key).is_some()
        };
        let mut found = self.metadata.find_message_elsewhere(name, mailbox);
        found.retain(|(m, _)| held(m));
        if found.len() > 1 {
            tracing::info!(
                name,
                "several messages have this directory name: making a mailbox of it"
            );
            return Ok(None);
        }
        let Some((source, _)) = found.pop() else {
            tracing::debug!(name, "no listed message elsewhere has this directory name");
            return Ok(None);
        };
        // Copied already, as a file the copier wrote first (a stored file's message).
        let now = self.metadata.now();
        if let Some((copy, mtime)) = self.copies.made_from(dir_path, &source, name, now) {
            if self.still_listed(&copy) {
                tracing::debug!(name, uid = %copy.uid, "the message was copied with its file: the copy is filled");
                return Ok(Some(self.remember(Node::Message {
                    message: copy,
                    section: Section::whole(),
                    mtime,
                })));
            }
        }
        let layout = self.layout(&source)?;
        let Some((validity, uid)) =
            self.store
                .copy_message(&source.mailbox, source.validity, source.uid, mailbox)?
        else {
            return Err(FsError::Store(StoreError::Protocol(format!(
                "the server copied message {} into {mailbox} without saying its UID \
                 (COPYUID): its directory is the next listing's",
                source.uid
            ))));
        };
        let copy = MessageRef {
            mailbox: mailbox.clone(),
            validity,
            uid,
        };
        tracing::info!(from = %source.mailbox, uid = %source.uid, to = %mailbox, copy = %uid, "copied a message for a directory made by its name");
        let mtime = self.begin_copy(dir_path, name, source, &copy, layout, true)?;
        Ok(Some(self.remember(Node::Message {
            message: copy,
            section: Section::whole(),
            mtime,
        })))
    }

    /// `copy` was just made of `source` (`UID COPY`): it reads from the bytes the caches
    /// hold of the source, its listing is known stale. A new file stored as a copy of
    /// another mailbox's stored file needs no more: its message directory is not listed,
    /// so no walk (`cp -r`) goes into it.
    pub(super) fn note_copy(&self, source: &MessageRef, copy: &MessageRef) {
        let (mailbox, validity) = (&copy.mailbox, copy.validity);
        self.content.same_bytes(source, copy);
        if self.metadata.message_copied(source, copy) {
            tracing::warn!(%mailbox, "UIDVALIDITY changed: dropping everything cached for the old mailbox");
            self.content.retain_validity(mailbox, validity);
        }
        self.metadata.mark_stale(mailbox);
    }

    /// Keeps `copy` (just made of `source` in the mailbox at `dir_path`) as a copy being
    /// filled under `name`: listed as `source` is; made `by_mkdir`, its files hidden until
    /// written (see `Copy::by_mkdir`). Returns its date.
    fn begin_copy(
        &self,
        dir_path: &str,
        name: &str,
        source: MessageRef,
        copy: &MessageRef,
        layout: Arc<Vec<Entry>>,
        by_mkdir: bool,
    ) -> FsResult<SystemTime> {
        let (mailbox, uid) = (&copy.mailbox, copy.uid);
        self.note_copy(&source, copy);
        if self.metadata.message(copy).is_none() {
            self.ensure_listing(mailbox, None)?;
        }
        let Some(meta) = self.metadata.message(copy) else {
            return Err(FsError::Store(StoreError::Protocol(format!(
                "the copy {uid} made in {mailbox} is not in its listing"
            ))));
        };
        // The copy holds the same bytes: the same layout, without asking for it.
        if !self.metadata.has_layout(copy) {
            self.metadata
                .insert_layout(copy.clone(), Arc::clone(&layout));
        }
        if by_mkdir {
            self.hidden.lock().extend(every_node(copy, &layout));
        }
        self.end_copies(self.copies.take_ended(self.metadata.now()));
        let evicted = self.copies.insert(
            copy.clone(),
            Copy {
                source,
                dir: dir_path.to_string(),
                name: name.to_string(),
                mtime: meta.internal_date,
                used: self.metadata.now(),
                temps: HashMap::new(),
                by_mkdir,
            },
        );
        self.end_copies(evicted);
        Ok(meta.internal_date)
    }

    /// A file or encapsulated message created by name in a copy's directory (`create` or
    /// `mkdir` in a message directory): a hidden entry of the copy shows again. Anything
    /// else cannot be made in a message directory.
    pub(super) fn make_in_copy(&self, parent: &Node, name: &OsStr, dir: bool) -> FsResult<Node> {
        let refused =
            || FsError::NotPermitted("message directories hold only the message's files".into());
        let Node::Message {
            message, section, ..
        } = parent
        else {
            return Err(refused());
        };
        let source = self.copy_source(message).ok_or_else(refused)?;
        let name = name.to_str().ok_or_else(refused)?;
        if !dir {
            if let Some(file) = temp_target(name) {
                // rsync writes `.body.txt.Ab12Cd`, then renames it: the same file, shown
                // under its own name only once renamed.
                // Also when the file shows already (rsync -I): the rename changes nothing.
                let node = match self.copy_file(message, &source, section, file) {
                    Err(FsError::NotFound) => return Err(refused()),
                    other => other?,
                };
                self.copies
                    .set_temp(message, (section, name), Some(file), self.metadata.now());
                return Ok(node);
            }
        }
        let node = self
            .message_entry(message, section, name, self.copy_mtime(message))?
            .ok_or_else(refused)?;
        if matches!(node, Node::Message { .. }) != dir {
            return Err(refused());
        }
        if !self.hidden.lock().remove(&node.key()) {
            return Err(FsError::Exists);
        }
        if dir {
            return Ok(node);
        }
        self.copy_file(message, &source, section, name)
    }

    /// The file `name` of the copy `message`, sized as the message copied shows it (which
    /// the copier has just read), so that nothing of the copy is fetched for it.
    fn copy_file(
        &self,
        message: &MessageRef,
        source: &MessageRef,
        section: &Section,
        name: &str,
    ) -> FsResult<Node> {
        match self.source_file(source, section, name)? {
            Node::File {
                spec, known_size, ..
            } => Ok(Node::File {
                message: message.clone(),
                dir: section.clone(),
                name: name.to_string(),
                spec,
                mtime: self.copy_mtime(message),
                known_size,
            }),
            _ => Err(FsError::NotPermitted(
                "message directories hold only the message's files".into(),
            )),
        }
    }

    /// The file an rsync temporary name in a copy's directory stands for, if it is one.
    pub(super) fn resolve_copy_temp(
        &self,
        message: &MessageRef,
        section: &Section,
        name: &str,
    ) -> Option<FsResult<Node>> {
        let file = self
            .copies
            .temp(message, section, name, self.metadata.now())?;
        let source = self.copy_source(message)?;
        Some(self.copy_file(message, &source, section, &file))
    }

    /// `rename` of an rsync temporary name onto its file in a copy's directory: the file
    /// shows. `None` when `name` is no such name.
    pub(super) fn rename_copy_temp(
        &self,
        parent: &Node,
        name: &str,
        same_dir: bool,
        new_name: &str,
    ) -> Option<FsResult<()>> {
        let Node::Message {
            message, section, ..
        } = parent
        else {
            return None;
        };
        let file = self
            .copies
            .temp(message, section, name, self.metadata.now())?;
        if !same_dir || file != new_name {
            return Some(Err(FsError::NotPermitted(
                "a file of a message keeps its name".into(),
            )));
        }
        let source = self.copy_source(message)?;
        let shown = self.copy_file(message, &source, section, &file);
        Some(shown.map(|node| {
            self.hidden.lock().remove(&node.key());
            self.copies
                .set_temp(message, (section, name), None, self.metadata.now());
        }))
    }

    /// `unlink` of an rsync temporary name in a copy's directory (rsync gave up on it).
    pub(super) fn unlink_copy_temp(&self, parent: &Node, name: &str) -> Option<FsResult<()>> {
        let Node::Message {
            message, section, ..
        } = parent
        else {
            return None;
        };
        self.copies
            .temp(message, section, name, self.metadata.now())?;
        self.copies
            .set_temp(message, (section, name), None, self.metadata.now());
        Some(Ok(()))
    }

    /// The copy the name a copier made in the mailbox directory `dir` stands for, while
    /// it is used and still in its mailbox (removed, moved or expunged elsewhere, the
    /// name is forgotten: copying again makes a new copy).
    pub(super) fn copy_named(&self, dir: &str, name: &str) -> Option<(MessageRef, SystemTime)> {
        self.end_copies(self.copies.take_ended(self.metadata.now()));
        let (copy, mtime) = self.copies.named(dir, name, self.metadata.now())?;
        self.still_listed(&copy).then_some((copy, mtime))
    }

    /// The message `copy` was copied from, while the copy is being filled.
    pub(super) fn copy_source(&self, copy: &MessageRef) -> Option<MessageRef> {
        let source = self.copies.source_of(copy, self.metadata.now())?;
        self.still_listed(copy).then_some(source)
    }

    /// Copies no copier fills any more (an interrupted `cp -r`) show whole: every file
    /// of the message, which the server holds.
    fn end_copies(&self, ended: impl IntoIterator<Item = MessageRef>) {
        for copy in ended {
            tracing::debug!(mailbox = %copy.mailbox, uid = %copy.uid, "a copy is no longer filled: all its files show");
            self.unhide_message(&copy);
            let key = NodeKey::Message(copy, Section::whole());
            let ino = self.inodes.lock().ino_of(&key);
            if let Some(ino) = ino {
                self.invalidations.send(Invalidation::Inode { ino });
            }
        }
    }

    fn still_listed(&self, copy: &MessageRef) -> bool {
        let listed = self.metadata.is_listed(copy);
        if !listed {
            self.copies.forget(copy);
        }
        listed
    }

    fn copy_mtime(&self, message: &MessageRef) -> SystemTime {
        self.metadata
            .message(message)
            .map_or(SystemTime::UNIX_EPOCH, |m| m.internal_date)
    }

    /// Whether `message` is a copy being filled.
    pub(super) fn is_copy(&self, message: &MessageRef) -> bool {
        self.copy_source(message).is_some()
    }

    /// `write` into a file of a copy being filled: the bytes must be the file's own,
    /// which are the message copied's. Other bytes remove the copy (it is not the message
    /// written) and fail.
    pub(super) fn write_copy(&self, node: &Node, offset: u64, data: &[u8]) -> FsResult<u32> {
        let Node::File {
            message, dir, name, ..
        } = node
        else {
            return Err(FsError::NotPermitted(
                "existing messages and parts cannot be changed".into(),
            ));
        };
        let source = self.copy_source(message).ok_or_else(|| {
            FsError::NotPermitted("existing messages and parts cannot be changed".into())
        })?;
        let own = self.source_file(&source, dir, name)?;
        let held = self.read_node(own, None, offset, data.len() as u32)?;
        if held == data {
            return Ok(data.len() as u32);
        }
        if !self.copies.by_mkdir(message) {
            return Err(differs(name));
        }
        tracing::warn!(
            mailbox = %message.mailbox, uid = %message.uid, file = name, offset,
            "what is written into a copied message's directory is not the message copied: removing the copy"
        );
        let copy = self.copies.forget(message);
        if self.config.delete == DeleteMode::Off {
            tracing::warn!(uid = %message.uid, "--delete=off: the copy stays");
            return Err(differs(name));
        }
        let real = self.metadata.named(&message.mailbox, &[message.uid]).pop();
        if let Err(e) = self
            .store
            .expunge_message(&message.mailbox, message.validity, message.uid)
        {
            tracing::warn!(error = %e, uid = %message.uid, "the copy could not be removed");
        } else {
            self.metadata.message_left(message);
            if let Some(copy) = copy {
                self.copy_gone(message, &copy, real.map(|(name, ..)| name));
            }
        }
        Err(differs(name))
    }

    /// The kernel forgets the name a copier made for `message`, now removed, and the
    /// copy's own name.
    fn copy_gone(&self, message: &MessageRef, copy: &Copy, own: Option<String>) {
        let out = {
            let inodes = self.inodes.lock();
            let Some(parent) = inodes.ino_of(&NodeKey::Mailbox(copy.dir.clone())) else {
                return;
            };
            let key = NodeKey::Message(message.clone(), Section::whole());
            let name = copy.name.clone();
            let gone = match inodes.ino_of(&key) {
                Some(child) => Invalidation::Deleted {
                    parent,
                    child,
                    name,
                },
                None => Invalidation::Entry { parent, name },
            };
            let mut out = vec![gone, Invalidation::Inode { ino: parent }];
            out.extend(
                own.filter(|own| *own != copy.name)
                    .map(|name| Invalidation::Entry { parent, name }),
            );
            out
        };
        for invalidation in out {
            self.invalidations.send(invalidation);
        }
    }

    /// The file `name` in the directory at `dir` of `source`.
    fn source_file(&self, source: &MessageRef, dir: &Section, name: &str) -> FsResult<Node> {
        let node = self
            .message_entry(source, dir, name, SystemTime::UNIX_EPOCH)?
            .ok_or(FsError::NotFound)?;
        self.exact_file(node)
    }
}
