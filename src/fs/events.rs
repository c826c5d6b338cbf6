//! Changes that did not come through this mount (reported by the store, or seen in a new
//! listing) become updates of what is known and kernel invalidations, queued for a thread
//! of their own: the kernel must not be told from inside a request handler.

use std::sync::mpsc::Sender;

use parking_lot::Mutex;

use super::inodes::{MessageRef, NodeKey, ROOT};
use super::metadata::ListingChange;
use super::{Fs, FsError};
use crate::store::{MailboxId, Section, StoreEvent};

/// What the kernel must drop from its caches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Invalidation {
    /// The name `name` in directory `parent` (a cached entry, positive or negative).
    Entry { parent: u64, name: String },
    /// The entry `name` in `parent` that stood for `child` is gone (inotify watchers learn
    /// of it too).
    Deleted {
        parent: u64,
        child: u64,
        name: String,
    },
    /// The attributes and cached contents (pages, or a directory's listing) of `ino`.
    Inode { ino: u64 },
}

/// Where invalidations go, once someone listens.
#[derive(Default)]
pub struct Invalidations {
    sink: Mutex<Option<Sender<Invalidation>>>,
}

impl Invalidations {
    pub(super) fn send(&self, invalidation: Invalidation) {
        let mut sink = self.sink.lock();
        if let Some(tx) = sink.as_ref() {
            if tx.send(invalidation).is_err() {
                // The listener is gone (unmounting): stop queueing.
                *sink = None;
            }
        }
    }
}

impl Fs {
    /// Sends kernel invalidations to `sink` from now on (the process hands them to the
    /// kernel on a thread of its own).
    pub fn send_invalidations_to(&self, sink: Sender<Invalidation>) {
        *self.invalidations.sink.lock() = Some(sink);
    }

    /// Applies a change the store reported.
    pub fn apply_store_event(&self, event: StoreEvent) {
        match event {
            StoreEvent::Mailbox(reported) => {
                let change = self.metadata.apply_change(&reported);
                // What went: what the listing lost, and what the server says vanished (a
                // version this mount stored lately may not be in the listing yet).
                let mut gone: Vec<MessageRef> =
                    change.removed.iter().map(|(_, m)| m.clone()).collect();
                if let Some(validity) = reported
                    .validity
                    .or_else(|| self.metadata.validity(&reported.mailbox))
                {
                    gone.extend(reported.vanished.iter().map(|&uid| MessageRef {
                        mailbox: reported.mailbox.clone(),
                        validity,
                        uid,
                    }));
                }
                self.drop_stored_files_gone(&reported.mailbox, &gone);
                if change.validity_changed {
                    if let Some(validity) = reported.validity {
                        self.content.retain_validity(&reported.mailbox, validity);
                    }
                }
                self.announce(&reported.mailbox, &change);
            }
            StoreEvent::MailboxList => self.mailbox_list_changed(),
            StoreEvent::MailboxRenamed { from, to } => self.mailbox_renamed_elsewhere(&from, &to),
            StoreEvent::MailboxStale(mailbox) => self.mailbox_stale(&mailbox),
            StoreEvent::Unfollowed => self.drop_unfollowed_dirs(),
        }
    }

    /// Something changed in `mailbox` that the store cannot tell exactly: a mailbox listed
    /// here is listed again now (the kernel is told what the new listing changed), so the
    /// change shows without anyone reading the directory first.
    fn mailbox_stale(&self, mailbox: &MailboxId) {
        if self.metadata.generation(mailbox).is_none() {
            return;
        }
        self.metadata.mark_stale(mailbox);
        match self.ensure_listing(mailbox, Some(std::time::Duration::ZERO)) {
            Ok(()) => {}
            // Deleted elsewhere: the new mailbox list drops it.
            Err(FsError::NotFound) => {
                tracing::debug!(mailbox = %mailbox, "a mailbox reported stale is gone")
            }
            Err(e) => {
                tracing::warn!(mailbox = %mailbox, error = %e, "could not list a mailbox after a change")
            }
        }
    }

    /// Another client renamed `from` to `to`: the mount's directories of it and its
    /// children (a shell's cwd, an open file, a file being written there) go on under the
    /// new names, as after a rename through the mount; the kernel forgets the old name.
    /// A mailbox this mount renamed itself (its report comes too) is not found under its
    /// old name any more: nothing to do.
    fn mailbox_renamed_elsewhere(&self, from: &MailboxId, to: &MailboxId) {
        // An rmdir's (this mount's or another's) renames a mailbox aside to delete it:
        // nothing of it may follow there (a file written there would be stored into what
        // is deleted next). The mailbox list's change shows it gone.
        if to.as_str().contains(crate::store::RMDIR_ASIDE) {
            return;
        }
        // The tree may have been listed again since the rename (a lookup): the one before.
        let Some(before) = self.metadata.tree_with(from) else {
            return;
        };
        let Some(old_path) = before.path_of(from).map(str::to_string) else {
            return;
        };
        self.metadata.invalidate_tree();
        let after = match self.list_tree() {
            Ok(after) => after,
            Err(e) => {
                tracing::warn!(error = %e, "could not list the mailboxes after a rename elsewhere");
                return;
            }
        };
        let Some(new_path) = after.path_of(to).map(str::to_string) else {
            return;
        };
        if after.path_of(from).is_some() {
            // Made again under the old name meanwhile: the old directories are that one's.
            return;
        }
        tracing::info!(%from, %to, "a mailbox was renamed elsewhere");
        self.store.renamed_elsewhere(from);
        self.mailboxes_moved(&before, &after, &old_path, &new_path);
        let parent_ino = |path: &str| match path.rsplit_once('/') {
            None => Some(ROOT),
            Some((parent, _)) => self
                .inodes
                .lock()
                .ino_of(&NodeKey::Mailbox(parent.to_string())),
        };
        if let Some(parent) = parent_ino(&old_path) {
            let name = old_path.rsplit('/').next().unwrap_or(&old_path).to_string();
            self.invalidations
                .send(Invalidation::Entry { parent, name });
            self.invalidations.send(Invalidation::Inode { ino: parent });
        }
        if let Some(parent) = parent_ino(&new_path) {
            self.invalidations.send(Invalidation::Inode { ino: parent });
        }
    }

    /// Mailboxes were created, renamed or deleted elsewhere: list them again, and tell the
    /// kernel which names went and which directories changed.
    fn mailbox_list_changed(&self) {
        let old = self.metadata.tree(None);
        self.metadata.invalidate_tree();
        let new = match self.list_tree() {
            Ok(new) => new,
            Err(e) => {
                tracing::warn!(error = %e, "could not list the mailboxes after a change");
                self.invalidations.send(Invalidation::Inode { ino: ROOT });
                return;
            }
        };
        let Some(old) = old else {
            self.invalidations.send(Invalidation::Inode { ino: ROOT });
            return;
        };
        let mut out = Vec::new();
        {
            let inodes = self.inodes.lock();
            let ino_of = |path: &str| match path {
                "" => Some(ROOT),
                p => inodes.ino_of(&NodeKey::Mailbox(p.to_string())),
            };
            for (path, dir) in old.dirs() {
                let Some(parent) = ino_of(path) else { continue };
                let now = new.get(path).map(|d| &d.children);
                if now == Some(&dir.children) {
                    continue;
                }
                for name in dir.children.keys() {
                    if now.is_none_or(|n| !n.contains_key(name)) {
                        out.push(Invalidation::Entry {
                            parent,
                            name: name.clone(),
                        });
                    }
                }
                out.push(Invalidation::Inode { ino: parent });
            }
            for (path, _) in new.dirs() {
                if old.get(path).is_none() {
                    if let Some(parent) =
                        path.rsplit_once('/').map_or(Some(ROOT), |(p, _)| ino_of(p))
                    {
                        out.push(Invalidation::Inode { ino: parent });
                    }
                }
            }
        }
        out.dedup();
        for invalidation in out {
            self.invalidations.send(invalidation);
        }
    }

    /// Tells the kernel what a change in `mailbox` made untrue: the names of messages that
    /// are gone, and the directory's listing when messages came or went.
    pub(super) fn announce(&self, mailbox: &MailboxId, change: &ListingChange) {
        if change.removed.is_empty() && !change.arrived && change.flagged.is_empty() {
            return;
        }
        let Some(path) = self
            .metadata
            .tree(None)
            .and_then(|t| t.path_of(mailbox).map(str::to_string))
        else {
            return;
        };
        let mut out = Vec::new();
        {
            let inodes = self.inodes.lock();
            // Nothing to say about a directory the kernel does not hold.
            let parent = match path.as_str() {
                "" => None,
                p => inodes.ino_of(&NodeKey::Mailbox(p.to_string())),
            };
            let Some(parent) = parent else {
                return;
            };
            // A message whose flags changed: its attributes (ctime, for tools that watch).
            for message in &change.flagged {
                let key = NodeKey::Message(message.clone(), Section::whole());
                if let Some(ino) = inodes.ino_of(&key) {
                    out.push(Invalidation::Inode { ino });
                }
            }
            if change.removed.is_empty() && !change.arrived {
                drop(inodes);
                for invalidation in out {
                    self.invalidations.send(invalidation);
                }
                return;
            }
            for (name, message) in &change.removed {
                let key = NodeKey::Message(message.clone(), Section::whole());
                out.push(match inodes.ino_of(&key) {
                    Some(child) => Invalidation::Deleted {
                        parent,
                        child,
                        name: name.clone(),
                    },
                    None => Invalidation::Entry {
                        parent,
                        name: name.clone(),
                    },
                });
            }
            out.push(Invalidation::Inode { ino: parent });
            if change.validity_changed {
                // Pages the kernel keeps of the old mailbox's files must not be served
                // again: the next read comes here, and is ESTALE.
                out.extend(
                    inodes
                        .message_inodes(mailbox)
                        .into_iter()
                        .map(|ino| Invalidation::Inode { ino }),
                );
            }
        }
        for invalidation in out {
            self.invalidations.send(invalidation);
        }
    }
}
