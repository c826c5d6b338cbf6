//! Operations that change the server: mailbox CREATE/DELETE/RENAME, message MOVE, delete
//! (to Trash or expunge) and flag STORE (new files are in `newfiles.rs`). Each sends exactly
//! the commands for its one effect; local views are updated so `ls` shows the result at once.

use std::collections::HashMap;
use std::ffi::OsStr;

use super::inodes::{MessageRef, Node, NodeKey};
use super::mailboxes::{self, child_path};
use super::namespace::name_str;
use super::virtual_dirs::{self, VirtualNode};
use super::{AttrReply, Fs, FsError, FsResult, StatFs};
use crate::store::{Flag, LinkState, MailboxId, Section, StoreError, Uid, UidValidity};

/// What deleting a message directory does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteMode {
    /// Move it to the Trash mailbox; inside Trash, expunge it.
    Trash,
    /// Expunge it at once.
    Expunge,
    /// Refuse with EPERM.
    Off,
}

/// Free space shown when the server keeps no quota: 1 PiB, as rclone shows, so that `df`
/// and file managers never take the mount for full.
pub const UNKNOWN_FREE_BYTES: u64 = 1 << 50;

/// The free files `statfs` shows: IMAP tells no limit of that kind.
pub const UNKNOWN_FREE_FILES: u64 = 1 << 30;

impl Fs {
    pub(super) fn refuse_if_read_only(&self) -> FsResult<()> {
        if self.config.read_only {
            Err(FsError::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// The display path of a mailbox (for `user.imap.mailbox`).
    pub(super) fn mailbox_path(&self, mailbox: &MailboxId) -> String {
        self.tree(false)
            .ok()
            .and_then(|t| t.path_of(mailbox).map(str::to_string))
            .unwrap_or_else(|| mailbox.to_string())
    }

    /// The display path of a mailbox directory (the root is `""`).
    pub(super) fn mailbox_dir_path(&self, ino: u64) -> FsResult<String> {
        match self.node(ino)? {
            Node::Root => Ok(String::new()),
            Node::Mailbox { path } => Ok(path),
            _ => Err(FsError::NotPermitted(
                "only mailbox directories hold mailboxes and new messages".into(),
            )),
        }
    }

    /// Whether the directory `ino` is a mailbox that holds messages.
    fn holds_messages(&self, ino: u64) -> bool {
        self.mailbox_dir_path(ino)
            .is_ok_and(|path| self.holding_messages(&path).is_some())
    }

    /// The mailbox at the directory `path`, if it holds messages. One held as holding
    /// none may have been made a mailbox since (Dovecot makes its special-use mailboxes
    /// at a first login, after a LIST may have shown `Archive` as `\Noselect` for its
    /// children): the mailboxes are listed once again before saying no.
    pub(super) fn holding_messages(&self, path: &str) -> Option<MailboxId> {
        if path.is_empty() {
            return None;
        }
        let held = self.tree(false).ok()?;
        let dir = held.get(path)?;
        if let Some(id) = dir.selectable_id() {
            return Some(id.clone());
        }
        match self.list_tree() {
            Ok(listed) => listed.get(path)?.selectable_id().cloned(),
            Err(e) => {
                tracing::debug!(error = %e, "could not list the mailboxes again");
                None
            }
        }
    }

    /// The server path of a new mailbox `name` in the directory at `parent_path`.
    fn new_server_path(&self, parent_path: &str, name: &str) -> FsResult<Vec<String>> {
        let tree = self.tree(false)?;
        let parent = tree.get(parent_path).ok_or(FsError::NotFound)?;
        let mut path = parent.server_path.clone();
        path.push(name.to_string());
        Ok(path)
    }

    /// `mkdir`: CREATE a mailbox; or, named as a message directory of another mailbox,
    /// copy that message (`copies.rs`).
    pub fn mkdir(&self, parent: u64, name: &OsStr) -> FsResult<AttrReply> {
        self.refuse_if_read_only()?;
        if let node @ Node::Message { .. } = self.node(parent)? {
            let made = self.make_in_copy(&node, name, true)?;
            return Ok(self.remember(made));
        }
        let name = name
            .to_str()
            .ok_or_else(|| FsError::Invalid("name is not UTF-8".into()))?;
        let parent_path = self.mailbox_dir_path(parent)?;
        let path = child_path(&parent_path, name);
        if self.tree(true)?.get(&path).is_some() {
            return Err(FsError::Exists);
        }
        mailbox_name_fits(name)?;
        if virtual_dirs::is_reserved(name) {
            // The trash's directory exists already; other reserved names are imapfs's.
            return Err(match virtual_dirs::at_root(name) {
                Some(_) if parent_path.is_empty() => FsError::Exists,
                _ => FsError::NotPermitted(format!("{name} is a name imapfs reserves")),
            });
        }
        if let Some(mailbox) = self.holding_messages(&parent_path) {
            if let Some(made) = self.mkdir_copy(&parent_path, &mailbox, name)? {
                return Ok(made);
            }
        }
        let server_path = self.new_server_path(&parent_path, name)?;
        let id = match self.store.create_mailbox(&server_path) {
            Ok(id) => id,
            Err(e @ StoreError::AlreadyExists(_)) => {
                // Made elsewhere since the mailbox list was taken: EEXIST says it is
                // there, so the next look lists the mailboxes again and shows it.
                self.metadata.invalidate_tree();
                return Err(e.into());
            }
            Err(e) => return Err(name_too_long(e)),
        };
        tracing::info!(mailbox = %id, "created mailbox");
        self.metadata.invalidate_tree();
        let tree = self.tree(true)?;
        let shown = match tree.path_of(&id) {
            Some(shown) => shown.to_string(),
            None => {
                tracing::warn!(mailbox = %id, "the server does not list the mailbox it created");
                path
            }
        };
        Ok(self.remember(Node::Mailbox { path: shown }))
    }

    /// `rmdir`: DELETE an empty mailbox, delete a message whose files were all removed, or
    /// hide an emptied encapsulated message.
    pub fn rmdir(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.refuse_if_read_only()?;
        let child = self.resolve(parent, name_str(name)?)?;
        match child {
            Node::Mailbox { path } => self.delete_mailbox(&path),
            Node::Message {
                ref message,
                ref section,
                ..
            } => {
                if self.visible_entries(&child)? > 0 {
                    return Err(FsError::NotEmpty);
                }
                if section.is_whole() {
                    let result = self.delete_message(message);
                    if result.is_err() {
                        // Nothing happened on the server: show the message's files again.
                        self.unhide_message(message);
                    }
                    result
                } else {
                    self.hide_part(child);
                    Ok(())
                }
            }
            Node::Root => Err(FsError::NotPermitted("the root".into())),
            Node::File { .. } | Node::NewFile { .. } | Node::StoredFile { .. } => {
                Err(FsError::NotADirectory)
            }
            Node::Virtual(VirtualNode::Removed { path, name }) => {
                self.removed_dirs.remove(&path, &name);
                Ok(())
            }
            Node::Virtual(v) if v.is_dir() => Err(FsError::NotPermitted(
                "imapfs's own directories cannot be removed".into(),
            )),
            Node::Virtual(_) => Err(FsError::NotADirectory),
        }
    }

    /// Removes the message a stored file stands for, through the file (`rm`, or a move to
    /// the trash folder), and keeps its message directory's name for `rm -r`
    /// (`RemovedDirs`).
    pub(super) fn remove_stored_file(
        &self,
        dir_path: &str,
        message: &MessageRef,
        remove: impl FnOnce(&MessageRef) -> FsResult<()>,
    ) -> FsResult<()> {
        let name = self
            .metadata
            .message(message)
            .map(|meta| crate::mime::message_dir_name(message.uid, meta.subject.as_deref()));
        let dir_key = NodeKey::Message(message.clone(), Section::whole());
        let dir_ino = self.inodes.lock().ino_of(&dir_key);
        remove(message)?;
        if let Some(name) = name {
            // The directory the kernel may still hold at that name is the empty one too:
            // it must not follow the message into Trash, where `rm -r` would hide its
            // files.
            if let Some(ino) = dir_ino {
                let removed = VirtualNode::Removed {
                    path: dir_path.to_string(),
                    name: name.clone(),
                };
                self.inodes.lock().replace(ino, Node::Virtual(removed));
            }
            self.removed_dirs.insert(dir_path, name);
        }
        Ok(())
    }

    /// How many entries of a message directory have not been hidden.
    fn visible_entries(&self, dir: &Node) -> FsResult<usize> {
        let Node::Message {
            message, section, ..
        } = dir
        else {
            return Ok(0);
        };
        let layout = self.layout(message)?;
        let entries = super::namespace::entries_in(&layout, section).ok_or(FsError::NotFound)?;
        let hidden = self.hidden.lock();
        Ok(entries
            .iter()
            .filter(|e| {
                let node = super::namespace::entry_node(message, section, e, std::time::UNIX_EPOCH);
                !hidden.contains(&node.key())
            })
            .count())
    }

    pub(super) fn unhide_message(&self, message: &MessageRef) {
        self.hidden.lock().retain(|key| match key {
            super::inodes::NodeKey::File(m, ..) | super::inodes::NodeKey::Message(m, _) => {
                m != message
            }
            _ => true,
        });
    }

    fn delete_mailbox(&self, path: &str) -> FsResult<()> {
        let tree = self.tree(true)?;
        let dir = tree.get(path).ok_or(FsError::NotFound)?;
        let id = dir
            .id
            .clone()
            .ok_or_else(|| FsError::NotPermitted("this directory is not a mailbox".into()))?;
        if dir.server_path == ["INBOX"] {
            return Err(FsError::NotPermitted("INBOX cannot be deleted".into()));
        }
        if !dir.children.is_empty() {
            return Err(FsError::NotEmpty);
        }
        if dir.selectable {
            let listing = match self.store.list_messages(&id) {
                // Listed \Noselect and the server does not open it: no messages to lose.
                // Unreachable, it may hold some: the error.
                Err(e) if dir.unsure && !e.is_unreachable() => {
                    tracing::debug!(mailbox = %id, error = %e, "not listed before deleting it");
                    None
                }
                other => Some(other?),
            };
            if listing.is_some_and(|l| !l.messages.is_empty()) {
                return Err(FsError::NotEmpty);
            }
        }
        self.store.delete_mailbox(&id)?;
        tracing::info!(mailbox = %id, "deleted mailbox");
        self.metadata.mailbox_deleted(&id);
        Ok(())
    }

    /// The Trash mailbox: `--trash`, else SPECIAL-USE `\Trash`, else one named Trash.
    pub(super) fn trash_mailbox(&self) -> FsResult<MailboxId> {
        let tree = self.tree(false)?;
        if let Some(chosen) = &self.config.trash {
            return tree
                .get(chosen.trim_matches('/'))
                .and_then(|d| d.selectable_id().cloned())
                .ok_or_else(|| {
                    FsError::NotPermitted(format!(
                        "--trash {chosen:?} is not a mailbox that can hold messages"
                    ))
                });
        }
        if let Some(t) = tree.special_use("trash") {
            return Ok(t.clone());
        }
        match tree.get("Trash").and_then(|d| d.id.clone()) {
            Some(t) => Ok(t),
            None => Err(FsError::NotPermitted(
                "there is no Trash mailbox; create one or use --delete=expunge".into(),
            )),
        }
    }

    /// Moves `message` into `trash` (not its mailbox) and follows it there, logging `done`.
    /// Trash itself gone (another client deleted it) is EIO, never ENOENT, which `rm -rf`
    /// and `rsync --delete` take for "already removed"; the tree is listed again.
    pub(super) fn move_to_trash(
        &self,
        message: &MessageRef,
        trash: &MailboxId,
        done: &str,
    ) -> FsResult<()> {
        let moved = self
            .store
            .move_message(&message.mailbox, message.validity, message.uid, trash)
            .map_err(|e| match e {
                StoreError::NoSuchMailbox(m) if &m == trash => {
                    self.metadata.invalidate_tree();
                    FsError::Store(StoreError::Refused(format!(
                        "the Trash mailbox {m} is gone; nothing was moved"
                    )))
                }
                e => FsError::Store(e),
            })?;
        tracing::info!(mailbox = %message.mailbox, uid = %message.uid, ?moved, "{done}");
        self.follow_move(message, trash, moved, None);
        Ok(())
    }

    pub(super) fn delete_message(&self, message: &MessageRef) -> FsResult<()> {
        match self.config.delete {
            DeleteMode::Off => Err(FsError::NotPermitted(
                "deleting messages is turned off (--delete=off)".into(),
            )),
            DeleteMode::Expunge => self.expunge(message),
            DeleteMode::Trash => {
                let trash = self.trash_mailbox()?;
                if trash == message.mailbox {
                    return self.expunge(message);
                }
                self.move_to_trash(message, &trash, "moved message to Trash")
            }
        }
    }

    fn expunge(&self, message: &MessageRef) -> FsResult<()> {
        self.store
            .expunge_message(&message.mailbox, message.validity, message.uid)?;
        tracing::info!(mailbox = %message.mailbox, uid = %message.uid, "expunged message");
        self.metadata.message_left(message);
        Ok(())
    }

    /// `unlink`: hide a part file from this mount's view (the server is never changed), drop
    /// a new file, or delete the message a file shows (as `rm -r` of the message would).
    pub fn unlink(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.refuse_if_read_only()?;
        if let Some(done) = self.unlink_copy_temp(&self.node(parent)?, name_str(name)?) {
            return done;
        }
        match self.resolve(parent, name_str(name)?)? {
            node @ Node::File { .. } => {
                self.hide_part(node);
                Ok(())
            }
            Node::NewFile { dir_path, name } => self.unlink_new_file(&dir_path, &name),
            Node::StoredFile { message, .. } => {
                let dir_path = self.mailbox_dir_path(parent)?;
                self.remove_stored_file(&dir_path, &message, |m| self.delete_message(m))
            }
            Node::Virtual(VirtualNode::TrashNote { uid, name }) => self.remove_note(uid, &name),
            Node::Virtual(VirtualNode::Hit { .. }) => Err(FsError::NotPermitted(
                "search results cannot be removed; remove the message itself".into(),
            )),
            Node::Root | Node::Mailbox { .. } | Node::Message { .. } | Node::Virtual(_) => {
                Err(FsError::IsADirectory)
            }
        }
    }

    /// Hides a file or forwarded message of a message from this mount's view; the server
    /// keeps it.
    fn hide_part(&self, file: Node) {
        self.hidden.lock().insert(file.key());
    }

    /// `rename`: move a message to another mailbox, rename a mailbox, or rename a new file.
    pub fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        no_replace: bool,
        exchange: bool,
    ) -> FsResult<()> {
        self.refuse_if_read_only()?;
        if exchange {
            return Err(FsError::Invalid("RENAME_EXCHANGE is not supported".into()));
        }
        let new_name = name_str(new_name)?;
        let same_dir = parent == new_parent;
        if let Some(done) =
            self.rename_copy_temp(&self.node(parent)?, name_str(name)?, same_dir, new_name)
        {
            return done;
        }
        if no_replace && self.resolve(new_parent, new_name).is_ok() {
            return Err(FsError::Exists);
        }
        let moved_into_trash = matches!(
            self.node(new_parent)?,
            Node::Virtual(VirtualNode::TrashFiles { .. })
        );
        match self.resolve(parent, name_str(name)?)? {
            // A file manager's "Move to Trash": the message goes to the server's Trash.
            Node::Message {
                message, section, ..
            } if moved_into_trash && section.is_whole() => self.trash_message(&message),
            Node::StoredFile { message, .. } if moved_into_trash => self.trash_message(&message),
            // A file written here: its message (once stored) goes to Trash, as with `rm`.
            Node::NewFile { dir_path, name } if moved_into_trash => {
                self.trash_new_file(&dir_path, &name)
            }
            // A file or forwarded message of a message is hidden, as `rm` does: never the
            // message with it.
            node @ (Node::File { .. } | Node::Message { .. }) if moved_into_trash => {
                self.hide_part(node);
                Ok(())
            }
            _ if moved_into_trash => Err(FsError::NotPermitted(
                "only messages can be moved to the trash".into(),
            )),
            Node::Mailbox { path } => {
                mailbox_name_fits(new_name)?;
                let new_parent_path = self.mailbox_dir_path(new_parent)?;
                self.rename_mailbox(&path, &new_parent_path, new_name)
            }
            Node::Message {
                message, section, ..
            } if section.is_whole() => {
                let target = self.mailbox_dir_path(new_parent)?;
                self.move_message(&message, &target, Some(new_name))
                    .map(drop)
            }
            Node::NewFile { dir_path, name } => {
                if new_parent != parent {
                    return self.move_new_file(&dir_path, &name, new_parent, new_name);
                }
                // Editors and rsync write a temporary name and rename it when done.
                // Onto a file a message shows: that message is the old version.
                let replaced = self.replaced_by(new_parent, new_name)?;
                self.rename_new_file(&dir_path, &name, new_name, replaced)
            }
            // Into another mailbox under its own name where that name is free: the message
            // moves (`UID MOVE`: nothing sent, flags kept). Under another name, or onto a
            // file there (which it must replace; rsync's --delay-updates does so), `mv`
            // copies and removes instead (EXDEV): a MOVE kept the message's own name and
            // left the file it should have replaced.
            Node::StoredFile {
                message,
                name: stored_name,
                ..
            } if new_parent != parent => {
                let target = self.mailbox_dir_path(new_parent)?;
                if new_name != stored_name || self.file_named(&target, new_name) {
                    return Err(FsError::CrossDevice(
                        "a stored file goes under another name, or over a file, as a copy".into(),
                    ));
                }
                self.move_message(&message, &target, None).map(drop)
            }
            // Renamed within its mailbox: stored again under the new name, the old message
            // expunged, as a file written here and renamed after it was stored.
            Node::StoredFile {
                message,
                name: stored_name,
                size,
                mtime,
            } => {
                let dir_path = self.mailbox_dir_path(parent)?;
                let ino = self
                    .inodes
                    .lock()
                    .ino_of(&NodeKey::StoredFile(message.clone()))
                    .ok_or(FsError::NotFound)?;
                let replaced = self.replaced_by(new_parent, new_name)?;
                let (_, file) =
                    self.overwrite_stored_file(ino, &message, &stored_name, (size, size), mtime)?;
                file.closed();
                self.rename_new_file(&dir_path, &stored_name, new_name, replaced)
            }
            // An attachment dragged into another mailbox: mv and file managers then copy it
            // there (a new file, stored) and remove it here (hidden in this mount).
            Node::File { .. } if new_parent != parent && self.holds_messages(new_parent) => {
                Err(FsError::CrossDevice(
                    "a part of a message is copied into a mailbox, then removed".into(),
                ))
            }
            Node::Message { .. } | Node::File { .. } => Err(FsError::NotPermitted(
                "parts of a message cannot be moved or renamed".into(),
            )),
            Node::Root => Err(FsError::NotPermitted("the root".into())),
            Node::Virtual(_) => Err(FsError::NotPermitted(
                "imapfs's own directories and notes cannot be moved".into(),
            )),
        }
    }

    /// The message a file renamed onto `new_name` in `new_parent` replaces: the one a
    /// stored file there stands for (a new file there is simply replaced).
    fn replaced_by(&self, new_parent: u64, new_name: &str) -> FsResult<Option<MessageRef>> {
        match self.resolve(new_parent, new_name) {
            Ok(Node::StoredFile { message, .. }) => Ok(Some(message)),
            Ok(Node::NewFile { .. }) | Err(_) => Ok(None),
            Ok(_) => Err(FsError::IsADirectory),
        }
    }

    /// The mailbox of the directory at `path`, which must hold messages: ENOENT where no
    /// such directory is, EPERM (saying `why`) where it holds none.
    pub(super) fn mailbox_at(&self, path: &str, why: &str) -> FsResult<MailboxId> {
        if self.tree(false)?.get(path).is_none() {
            return Err(FsError::NotFound);
        }
        self.holding_messages(path)
            .ok_or_else(|| FsError::NotPermitted(why.into()))
    }

    /// Moves a message into the mailbox directory at `target_path`; `new_name` is the
    /// name its directory was given there (a stored file keeps its own).
    pub(super) fn move_message(
        &self,
        message: &MessageRef,
        target_path: &str,
        new_name: Option<&str>,
    ) -> FsResult<Option<MessageRef>> {
        let target = self.mailbox_at(target_path, "the target directory cannot hold messages")?;
        if target == message.mailbox {
            return Err(FsError::NotPermitted(
                "a message's name comes from its UID and subject; it cannot be renamed".into(),
            ));
        }
        let moved =
            self.store
                .move_message(&message.mailbox, message.validity, message.uid, &target)?;
        tracing::info!(from = %message.mailbox, to = %target, uid = %message.uid, ?moved, "moved message");
        self.follow_move(message, &target, moved, new_name);
        Ok(moved.map(|(validity, uid)| MessageRef {
            mailbox: target,
            validity,
            uid,
        }))
    }

    /// After a move to `target`: the inodes the kernel holds for the message follow it to
    /// its new UID (when the server told it), the name `mv` used resolves to it until the
    /// next listing of the target, and both mailboxes are listed again when next looked at.
    pub(super) fn follow_move(
        &self,
        message: &MessageRef,
        target: &MailboxId,
        moved: Option<(UidValidity, Uid)>,
        new_name: Option<&str>,
    ) {
        if let Some((validity, uid)) = moved {
            let new = MessageRef {
                mailbox: target.clone(),
                validity,
                uid,
            };
            self.inodes.lock().message_moved(message, &new);
            if self.metadata.message_moved(message, &new, new_name) {
                tracing::warn!(mailbox = %target, "UIDVALIDITY changed: dropping everything cached for the old mailbox");
                self.content.retain_validity(target, validity);
            }
            self.content.same_bytes(message, &new);
        }
        self.metadata.message_left(message);
        self.metadata.mark_stale(target);
    }

    fn rename_mailbox(&self, path: &str, new_parent_path: &str, new_name: &str) -> FsResult<()> {
        let before = self.tree(false)?;
        let dir = before.get(path).ok_or(FsError::NotFound)?;
        let from = dir
            .id
            .clone()
            .ok_or_else(|| FsError::NotPermitted("this directory is not a mailbox".into()))?;
        if dir.server_path == ["INBOX"] {
            return Err(FsError::NotPermitted("INBOX cannot be renamed".into()));
        }
        let new_path = child_path(new_parent_path, new_name);
        if self.tree(true)?.get(&new_path).is_some() {
            return Err(FsError::Exists);
        }
        let to_path = self.new_server_path(new_parent_path, new_name)?;
        let to = self
            .store
            .rename_mailbox(&from, &to_path)
            .map_err(name_too_long)?;
        tracing::info!(from = %from, to = %to, "renamed mailbox");
        self.metadata.invalidate_tree();
        let after = self.tree(true)?;
        let shown = after.path_of(&to).unwrap_or(&new_path).to_string();
        self.mailboxes_moved(&before, &after, path, &shown);
        // Its report comes too: the tree before is no place to find it in.
        self.metadata.forget_replaced_tree();
        Ok(())
    }

    /// The mailbox shown at `path` in `before` is at `shown` in `after` (renamed here or
    /// elsewhere): inodes, listings and files being written of it and its children follow,
    /// each mailbox's old identifier to its new one found by where its directory went.
    pub(super) fn mailboxes_moved(
        &self,
        before: &mailboxes::MailboxTree,
        after: &mailboxes::MailboxTree,
        path: &str,
        shown: &str,
    ) {
        let ids: HashMap<MailboxId, MailboxId> = before
            .mailboxes()
            .filter_map(|(old, p)| {
                let moved = mailboxes::moved_path(p, path, shown)?;
                let new = after.get(&moved)?.id.clone()?;
                Some((old.clone(), new))
            })
            .collect();
        self.inodes.lock().mailboxes_renamed(path, shown, &ids);
        self.metadata.mailboxes_renamed(&ids);
        self.new_files.dirs_renamed(path, shown, &ids);
    }

    /// `user.imap.flags` written: replace the message's flags.
    pub(super) fn set_message_flags(&self, message: &MessageRef, flags: &[Flag]) -> FsResult<()> {
        self.store
            .set_flags(&message.mailbox, message.validity, message.uid, flags)?;
        let flags = flags.iter().map(|f| f.as_str().to_string()).collect();
        self.metadata.flags_set(message, flags);
        Ok(())
    }

    /// Adds and removes flags of a message (`UID STORE +FLAGS` / `-FLAGS`), so that flags
    /// another client set meanwhile stay; the listing shows the change at once.
    pub(super) fn change_message_flags(
        &self,
        message: &MessageRef,
        add: &[Flag],
        remove: &[Flag],
    ) -> FsResult<()> {
        if !self.metadata.is_listed(message) {
            return Err(FsError::NotFound);
        }
        self.store
            .change_flags(&message.mailbox, message.validity, message.uid, add, remove)?;
        self.metadata
            .flags_changed(&message.mailbox, message.validity, &[message.uid], |now| {
                changed_flags(now, add, remove)
            });
        Ok(())
    }

    /// Adds and removes flags of every message the mount shows in `mailbox` (listed again
    /// if its listing is not fresh): a `UID STORE <set> +FLAGS` / `-FLAGS` per few hundred
    /// messages. Refused offline (EROFS), before anything is looked at.
    pub(super) fn change_mailbox_flags(
        &self,
        mailbox: &MailboxId,
        add: &[Flag],
        remove: &[Flag],
    ) -> FsResult<()> {
        if matches!(self.store.link_state(), LinkState::Offline { .. }) {
            return Err(FsError::Store(StoreError::Offline(
                "the flags of every message of a mailbox are changed only online".into(),
            )));
        }
        self.ensure_listing(mailbox, Some(super::metadata::LISTING_FRESH))?;
        let (validity, messages) = self
            .metadata
            .listed(mailbox)
            .ok_or_else(|| FsError::Store(StoreError::NoSuchMailbox(mailbox.clone())))?;
        let uids: Vec<Uid> = messages.iter().map(|m| m.uid).collect();
        let skipped = self
            .store
            .change_flags_of(mailbox, validity, &uids, add, remove)?;
        tracing::info!(mailbox = %mailbox, messages = uids.len(), skipped = skipped.len(), "flags of every message changed");
        let changed: Vec<Uid> = uids
            .into_iter()
            .filter(|uid| !skipped.contains(uid))
            .collect();
        self.metadata
            .flags_changed(mailbox, validity, &changed, |now| {
                changed_flags(now, add, remove)
            });
        Ok(())
    }

    /// `statfs`: the account's quota where the server keeps one (so `df` shows what is
    /// used of it and what is left); otherwise what is known to be used, and a large free
    /// space, since nothing says the account is full.
    pub fn statfs(&self) -> StatFs {
        let (files, bytes) = self.metadata.totals();
        let quota = match self.store.quota() {
            Ok(quota) => quota,
            Err(e) => {
                tracing::debug!(error = %e, "no quota for statfs");
                None
            }
        };
        let block = super::STATFS_BLOCK;
        let (files, free_files) = (files + UNKNOWN_FREE_FILES, UNKNOWN_FREE_FILES);
        match quota {
            Some(q) if q.limit_bytes > 0 => StatFs {
                blocks: q.limit_bytes.div_ceil(block),
                free_blocks: q.limit_bytes.saturating_sub(q.used_bytes) / block,
                files,
                free_files,
            },
            _ => {
                let free_blocks = UNKNOWN_FREE_BYTES / block;
                StatFs {
                    blocks: bytes.div_ceil(block) + free_blocks,
                    free_blocks,
                    files,
                    free_files,
                }
            }
        }
    }
}

/// The flags `shown` with `remove` taken out and `add` put in (keywords matched regardless
/// of case, as servers match them).
fn changed_flags(shown: &[String], add: &[Flag], remove: &[Flag]) -> Vec<String> {
    let same = |flag: &Flag, shown: &str| flag.as_str().eq_ignore_ascii_case(shown);
    let mut flags: Vec<String> = shown
        .iter()
        .filter(|f| !remove.iter().any(|r| same(r, f)))
        .cloned()
        .collect();
    for flag in add {
        if !flags.iter().any(|f| same(flag, f)) {
            flags.push(flag.as_str().to_string());
        }
    }
    flags
}

/// A refusal of a mailbox name as too long, ENAMETOOLONG (Dovecot: `NO [CANNOT] Mailbox
/// name too long`; in modified UTF-7 a name grows); any other error as it is.
fn name_too_long(e: StoreError) -> FsError {
    match e {
        StoreError::Invalid(why) if why.to_ascii_lowercase().contains("too long") => {
            FsError::NameTooLong(why)
        }
        e => e.into(),
    }
}

/// ENAMETOOLONG for a mailbox name longer than a listing shows (the directory could not
/// be found again under the name given).
fn mailbox_name_fits(name: &str) -> FsResult<()> {
    if name.len() > crate::mime::MAX_NAME_BYTES {
        return Err(FsError::NameTooLong(format!(
            "a mailbox's name is at most {} bytes",
            crate::mime::MAX_NAME_BYTES
        )));
    }
    Ok(())
}
