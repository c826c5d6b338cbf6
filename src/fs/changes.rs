//! Operations that change the server: mailbox CREATE/DELETE/RENAME, message MOVE, delete
//! (to Trash or expunge) and flag STORE (new files are in `newfiles.rs`). Each sends exactly
//! the commands for its one effect; local views are updated so `ls` shows the result at once.

use std::ffi::OsStr;
use std::time::SystemTime;

use super::inodes::{MessageRef, Node};
use super::{name_str, AttrReply, Fs, FsError, FsResult, StatFs};
use crate::store::{Flag, MailboxName};
use crate::utf7;

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

impl Fs {
    pub(super) fn refuse_if_read_only(&self) -> FsResult<()> {
        if self.config.read_only {
            Err(FsError::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// The display path of a wire mailbox name (for `user.imap.mailbox`).
    pub(super) fn mailbox_path(&self, mailbox: &MailboxName) -> String {
        self.tree(false)
            .ok()
            .and_then(|t| t.path_of(mailbox).map(str::to_string))
            .unwrap_or_else(|| utf7::decode(&mailbox.0).unwrap_or_else(|_| mailbox.0.clone()))
    }

    /// The wire name of a mailbox directory path, or `None` if it is only implied.
    fn wire_of(&self, path: &str) -> FsResult<Option<MailboxName>> {
        let tree = self.tree(false)?;
        Ok(tree.get(path).ok_or(FsError::NotFound)?.wire.clone())
    }

    /// The wire name for a new mailbox `name` inside directory `parent_path`.
    fn new_wire_name(&self, parent_path: &str, name: &str) -> FsResult<MailboxName> {
        if name.is_empty() || name.chars().any(|c| c.is_control()) {
            return Err(FsError::Invalid(format!(
                "{name:?} cannot be a mailbox name"
            )));
        }
        let tree = self.tree(false)?;
        let delimiter = tree.delimiter();
        if delimiter.is_some_and(|d| name.contains(d)) || name.contains(['*', '%']) {
            return Err(FsError::Invalid(format!(
                "{name:?} contains the hierarchy delimiter or a LIST wildcard"
            )));
        }
        let leaf = utf7::encode(name);
        if parent_path.is_empty() {
            return Ok(MailboxName(leaf));
        }
        let Some(delimiter) = delimiter else {
            return Err(FsError::NotPermitted(
                "the server has no mailbox hierarchy".into(),
            ));
        };
        // The parent's wire name, or for an implied directory its encoded path.
        let parent_wire = match tree.get(parent_path).and_then(|d| d.wire.clone()) {
            Some(w) => w.0,
            None => parent_path
                .split('/')
                .map(utf7::encode)
                .collect::<Vec<_>>()
                .join(&delimiter.to_string()),
        };
        Ok(MailboxName(format!("{parent_wire}{delimiter}{leaf}")))
    }

    pub(super) fn mailbox_dir_path(&self, ino: u64) -> FsResult<String> {
        match self.node(ino)? {
            Node::Root => Ok(String::new()),
            Node::Mailbox { path } => Ok(path),
            _ => Err(FsError::NotPermitted(
                "only mailbox directories hold mailboxes and new messages".into(),
            )),
        }
    }

    fn child_path(parent: &str, name: &str) -> String {
        if parent.is_empty() {
            name.to_string()
        } else {
            format!("{parent}/{name}")
        }
    }

    /// `mkdir`: CREATE a mailbox.
    pub fn mkdir(&self, parent: u64, name: &OsStr) -> FsResult<AttrReply> {
        self.refuse_if_read_only()?;
        let name = name
            .to_str()
            .ok_or_else(|| FsError::Invalid("name is not UTF-8".into()))?;
        let parent_path = self.mailbox_dir_path(parent)?;
        let path = Self::child_path(&parent_path, name);
        if self.tree(true)?.get(&path).is_some() {
            return Err(FsError::Exists);
        }
        let wire = self.new_wire_name(&parent_path, name)?;
        self.store.create_mailbox(&wire)?;
        tracing::info!(mailbox = %wire, "created mailbox");
        self.invalidate_tree();
        let tree = self.tree(true)?;
        if tree.get(&path).is_none() {
            tracing::warn!(mailbox = %wire, "server created the mailbox under another name");
        }
        let ino = self.state.lock().inodes.mailbox(&path);
        self.getattr(ino)
    }

    /// `rmdir`: DELETE an empty mailbox, delete a message whose files were all removed, or
    /// hide an emptied encapsulated message.
    pub fn rmdir(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.refuse_if_read_only()?;
        let child = self.lookup(parent, name)?.attr.ino;
        match self.node(child)? {
            Node::Mailbox { path } => self.delete_mailbox(&path),
            Node::Message {
                message, section, ..
            } => {
                if self.visible_entries(child)? > 0 {
                    return Err(FsError::NotEmpty);
                }
                if section.is_whole() {
                    let result = self.delete_message(&message);
                    if result.is_err() {
                        // Nothing happened on the server: show the message's files again.
                        self.unhide_message(&message);
                    }
                    result
                } else {
                    self.state.lock().hidden.insert(child);
                    Ok(())
                }
            }
            Node::Root => Err(FsError::NotPermitted("the root".into())),
            Node::File { .. } | Node::Pending { .. } => Err(FsError::NotADirectory),
        }
    }

    /// How many entries of a directory have not been hidden.
    fn visible_entries(&self, ino: u64) -> FsResult<usize> {
        let fh = self.opendir(ino)?;
        let count = self
            .readdir(fh, 0, usize::MAX)?
            .iter()
            .filter(|(_, e)| e.name != "." && e.name != "..")
            .count();
        self.releasedir(fh);
        Ok(count)
    }

    fn unhide_message(&self, message: &MessageRef) {
        let mut state = self.state.lock();
        let inos: Vec<u64> = state
            .hidden
            .iter()
            .copied()
            .filter(|ino| {
                matches!(state.inodes.get(*ino),
                    Some(Node::File { message: m, .. }) | Some(Node::Message { message: m, .. }) if m == message)
            })
            .collect();
        for ino in inos {
            state.hidden.remove(&ino);
        }
    }

    fn delete_mailbox(&self, path: &str) -> FsResult<()> {
        let tree = self.tree(true)?;
        let dir = tree.get(path).ok_or(FsError::NotFound)?;
        let wire = dir
            .wire
            .clone()
            .ok_or_else(|| FsError::NotPermitted("this directory is not a mailbox".into()))?;
        if wire.0.eq_ignore_ascii_case("INBOX") {
            return Err(FsError::NotPermitted("INBOX cannot be deleted".into()));
        }
        if !dir.children.is_empty() {
            return Err(FsError::NotEmpty);
        }
        if dir.selectable {
            let listing = self.store.list_messages(&wire)?;
            if !listing.messages.is_empty() {
                return Err(FsError::NotEmpty);
            }
        }
        self.store.delete_mailbox(&wire)?;
        tracing::info!(mailbox = %wire, "deleted mailbox");
        self.state.lock().listings.remove(&wire);
        self.invalidate_tree();
        Ok(())
    }

    /// The Trash mailbox: SPECIAL-USE `\Trash`, else one named Trash.
    fn trash_mailbox(&self) -> FsResult<MailboxName> {
        let tree = self.tree(false)?;
        if let Some(t) = tree.special_use("trash") {
            return Ok(t.clone());
        }
        match tree.get("Trash").and_then(|d| d.wire.clone()) {
            Some(t) => Ok(t),
            None => Err(FsError::NotPermitted(
                "there is no Trash mailbox; create one or use --delete=expunge".into(),
            )),
        }
    }

    fn delete_message(&self, message: &MessageRef) -> FsResult<()> {
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
                let new_uid = self.store.move_message(
                    &message.mailbox,
                    message.validity,
                    message.uid,
                    &trash,
                )?;
                tracing::info!(mailbox = %message.mailbox, uid = %message.uid, ?new_uid, "moved message to Trash");
                self.forget_message(message);
                self.mark_stale(&trash);
                Ok(())
            }
        }
    }

    fn expunge(&self, message: &MessageRef) -> FsResult<()> {
        self.store
            .expunge_message(&message.mailbox, message.validity, message.uid)?;
        tracing::info!(mailbox = %message.mailbox, uid = %message.uid, "expunged message");
        self.forget_message(message);
        Ok(())
    }

    /// Removes a message from its mailbox's listing after it left the mailbox.
    fn forget_message(&self, message: &MessageRef) {
        self.mark_stale(&message.mailbox);
        let mut state = self.state.lock();
        if let Some(listing) = state.listings.get_mut(&message.mailbox) {
            listing.by_uid.remove(&message.uid);
            listing.names.retain(|_, u| *u != message.uid);
            listing.order.retain(|u| *u != message.uid);
        }
    }

    /// `unlink`: hide a part file from this mount's view (the server is never changed), or
    /// drop a new file that has not been appended.
    pub fn unlink(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.refuse_if_read_only()?;
        let child = self.lookup(parent, name)?.attr.ino;
        match self.node(child)? {
            Node::File { .. } => {
                self.state.lock().hidden.insert(child);
                Ok(())
            }
            Node::Pending { .. } => {
                self.discard_pending(child);
                Ok(())
            }
            _ => Err(FsError::IsADirectory),
        }
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
        if no_replace && self.lookup(new_parent, new_name).is_ok() {
            return Err(FsError::Exists);
        }
        let new_name_str = name_str(new_name)?.to_string();
        let child = self.lookup(parent, name)?.attr.ino;
        match self.node(child)? {
            Node::Mailbox { path } => {
                let new_parent_path = self.mailbox_dir_path(new_parent)?;
                self.rename_mailbox(&path, &new_parent_path, &new_name_str)
            }
            Node::Message {
                message, section, ..
            } if section.is_whole() => {
                let target = self.mailbox_dir_path(new_parent)?;
                self.move_message(&message, &target, &new_name_str)
            }
            Node::Pending { .. } => {
                // Tools write a temporary name and rename it when done (rsync does).
                // The message is named when it is appended, so the rename changes nothing.
                if new_parent != parent {
                    return Err(FsError::NotPermitted(
                        "a new file stays in its mailbox".into(),
                    ));
                }
                Ok(())
            }
            Node::Message { .. } | Node::File { .. } => Err(FsError::NotPermitted(
                "parts of a message cannot be moved or renamed".into(),
            )),
            Node::Root => Err(FsError::NotPermitted("the root".into())),
        }
    }

    fn move_message(
        &self,
        message: &MessageRef,
        target_path: &str,
        new_name: &str,
    ) -> FsResult<()> {
        let tree = self.tree(false)?;
        let dir = tree.get(target_path).ok_or(FsError::NotFound)?;
        let target = match (&dir.wire, dir.selectable) {
            (Some(w), true) => w.clone(),
            _ => {
                return Err(FsError::NotPermitted(
                    "the target directory cannot hold messages".into(),
                ))
            }
        };
        if target == message.mailbox {
            return Err(FsError::NotPermitted(
                "a message's name comes from its UID and subject; it cannot be renamed".into(),
            ));
        }
        let moved =
            self.store
                .move_message(&message.mailbox, message.validity, message.uid, &target)?;
        tracing::info!(from = %message.mailbox, to = %target, uid = %message.uid, ?moved, "moved message");
        if let Some((validity, uid)) = moved {
            let new = MessageRef {
                mailbox: target.clone(),
                validity,
                uid,
            };
            self.follow_move(message, &new, new_name);
        }
        self.forget_message(message);
        self.mark_stale(&target);
        Ok(())
    }

    /// After a move, the inodes the kernel holds for the message (and its files) follow it
    /// to its new mailbox and UID, and the name `mv` used resolves to it until the next
    /// listing of the target.
    fn follow_move(&self, old: &MessageRef, new: &MessageRef, new_name: &str) {
        let mut state = self.state.lock();
        state.inodes.rewrite(|node| match node {
            Node::Message { message, .. } | Node::File { message, .. } if message == old => {
                *message = new.clone();
                true
            }
            _ => false,
        });
        if let Some(layout) = state.layouts.remove(old) {
            state.layouts.insert(new.clone(), layout);
        }
        let meta = state
            .listings
            .get(&old.mailbox)
            .and_then(|l| l.by_uid.get(&old.uid).cloned());
        let mtime = meta
            .as_ref()
            .map_or(SystemTime::UNIX_EPOCH, |m| m.internal_date);
        if let (Some(listing), Some(mut meta)) = (state.listings.get_mut(&new.mailbox), meta) {
            if listing.validity == new.validity {
                meta.uid = new.uid;
                listing.by_uid.insert(new.uid, meta);
            }
        }
        state
            .aliases
            .entry(new.mailbox.clone())
            .or_default()
            .insert(new_name.to_string(), (new.clone(), mtime));
    }

    fn rename_mailbox(&self, path: &str, new_parent_path: &str, new_name: &str) -> FsResult<()> {
        let from = self
            .wire_of(path)?
            .ok_or_else(|| FsError::NotPermitted("this directory is not a mailbox".into()))?;
        if from.0.eq_ignore_ascii_case("INBOX") {
            return Err(FsError::NotPermitted("INBOX cannot be renamed".into()));
        }
        let new_path = Self::child_path(new_parent_path, new_name);
        if self.tree(true)?.get(&new_path).is_some() {
            return Err(FsError::Exists);
        }
        let to = self.new_wire_name(new_parent_path, new_name)?;
        self.store.rename_mailbox(&from, &to)?;
        tracing::info!(from = %from, to = %to, "renamed mailbox");
        let delimiter = self.tree(false)?.delimiter();
        {
            let mut state = self.state.lock();
            let old_prefix = format!("{path}/");
            let wire_prefix = delimiter.map(|d| format!("{}{d}", from.0));
            let rename_wire = |w: &MailboxName| -> Option<MailboxName> {
                if *w == from {
                    return Some(to.clone());
                }
                let d = delimiter?;
                let rest = w.0.strip_prefix(wire_prefix.as_deref()?)?;
                Some(MailboxName(format!("{}{d}{rest}", to.0)))
            };
            state.inodes.rewrite(|node| match node {
                Node::Mailbox { path: p } if p == path || p.starts_with(&old_prefix) => {
                    *p = format!("{new_path}{}", &p[path.len()..]);
                    true
                }
                Node::Message { message, .. } | Node::File { message, .. } => {
                    match rename_wire(&message.mailbox) {
                        Some(w) => {
                            message.mailbox = w;
                            true
                        }
                        None => false,
                    }
                }
                _ => false,
            });
            let moved: Vec<MailboxName> = state
                .listings
                .keys()
                .filter(|w| rename_wire(w).is_some())
                .cloned()
                .collect();
            for w in moved {
                if let (Some(listing), Some(new)) = (state.listings.remove(&w), rename_wire(&w)) {
                    state.listings.insert(new, listing);
                }
            }
            let layouts: Vec<MessageRef> = state
                .layouts
                .keys()
                .filter(|m| rename_wire(&m.mailbox).is_some())
                .cloned()
                .collect();
            for m in layouts {
                if let (Some(layout), Some(w)) = (state.layouts.remove(&m), rename_wire(&m.mailbox))
                {
                    state.layouts.insert(MessageRef { mailbox: w, ..m }, layout);
                }
            }
        }
        self.invalidate_tree();
        Ok(())
    }

    /// `user.imap.flags` written: replace the message's flags.
    pub(super) fn set_message_flags(&self, message: &MessageRef, flags: &[Flag]) -> FsResult<()> {
        self.store
            .set_flags(&message.mailbox, message.validity, message.uid, flags)?;
        let mut state = self.state.lock();
        if let Some(meta) = state
            .listings
            .get_mut(&message.mailbox)
            .and_then(|l| l.by_uid.get_mut(&message.uid))
        {
            meta.flags = flags.iter().map(|f| f.as_str().to_string()).collect();
        }
        Ok(())
    }

    /// `statfs`: counts of what is known, so `df` shows something sensible.
    pub fn statfs(&self) -> StatFs {
        let state = self.state.lock();
        let files = state.listings.values().map(|l| l.by_uid.len() as u64).sum();
        let bytes: u64 = state
            .listings
            .values()
            .flat_map(|l| l.by_uid.values())
            .map(|m| m.size)
            .sum();
        StatFs {
            blocks: bytes.div_ceil(4096),
            files,
        }
    }
}
