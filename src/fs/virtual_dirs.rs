//! Directories imapfs makes up rather than the server, under names reserved in the root
//! and in mailbox directories. A reserved name is never taken for a message or for a
//! mailbox created elsewhere; a real mailbox of the same name, already known, wins.
//!
//! - `.Trash-<uid>` at the root is this mount's FreeDesktop trash, so that a file manager's
//!   "Move to Trash" ends in the server's Trash mailbox: what is renamed into its `files`
//!   directory is moved to Trash, and the `.trashinfo` notes written into `info` stay in
//!   memory (they describe nothing the server keeps). Nothing is listed in `files`.
//! - `.search` (and `.imapfs-search`) at the root and in every mailbox directory holds
//!   server-side searches (`searches.rs`).
//! - The message directory of a stored file this mount removed through the file stays a
//!   minute as an empty directory (`RemovedDirs`), never listed.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use super::handles::DirItem;
use super::inodes::Node;
use super::searches;
use super::{Fs, FsError, FsResult, Kind};
use crate::store::{clip, ByteRange};

/// A node imapfs makes up.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VirtualNode {
    /// `.Trash-<uid>`.
    Trash { uid: u32 },
    /// `.Trash-<uid>/files`: what is moved here goes to the server's Trash.
    TrashFiles { uid: u32 },
    /// `.Trash-<uid>/info`: the notes a file manager writes about what it trashed.
    TrashInfo { uid: u32 },
    /// One note in `info`.
    TrashNote { uid: u32, name: String },
    /// `.search` in the mailbox directory at `mailbox`, or at the root (`None`).
    Searches { mailbox: Option<String> },
    /// `.search/QUERY`: the hits (in a mailbox), or a directory per mailbox with hits.
    Query {
        mailbox: Option<String>,
        query: String,
    },
    /// `MNT/.search/QUERY/MAILBOX`: the hits of a cross-mailbox search in one mailbox.
    QueryMailbox { query: String, mailbox: String },
    /// A hit: a symlink to the message directory `name` in `mailbox`.
    Hit {
        query: String,
        from_root: bool,
        mailbox: String,
        name: String,
        mtime: SystemTime,
    },
    /// The message directory `name` in the mailbox directory at `path` of a stored file
    /// this mount removed through the file (`RemovedDirs`): an empty directory.
    Removed { path: String, name: String },
}

impl VirtualNode {
    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind() == Kind::Directory
    }

    /// What kind of node it is.
    pub fn kind(&self) -> Kind {
        match self {
            VirtualNode::TrashNote { .. } => Kind::File,
            VirtualNode::Hit { .. } => Kind::Symlink,
            _ => Kind::Directory,
        }
    }
}

/// Whether `name` is reserved for a virtual directory.
pub fn is_reserved(name: &str) -> bool {
    searches::is_search_name(name) || trash_uid(name).is_some()
}

/// The uid of a `.Trash-<uid>` name.
fn trash_uid(name: &str) -> Option<u32> {
    let digits = name.strip_prefix(".Trash-")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The virtual node a reserved name at the root stands for, if any yet.
pub fn at_root(name: &str) -> Option<VirtualNode> {
    trash_uid(name).map(|uid| VirtualNode::Trash { uid })
}

/// How long the message directory of a stored file removed through the file stays.
const REMOVED_DIR_KEPT: Duration = Duration::from_secs(60);

/// Message directories of stored files this mount removed through the file. A stored
/// file's message directory is not listed, but a walk may hold it from an older listing
/// (or a file of its name given way): `rm -r` of the mailbox removes the file (its message
/// goes to Trash), then finds the directory gone and would fail with ENOENT. For a minute
/// it is an empty directory there, which `rmdir` removes; it is never listed.
#[derive(Default)]
pub struct RemovedDirs {
    dirs: Mutex<HashMap<(String, String), Instant>>,
}

impl RemovedDirs {
    /// `name` in the mailbox directory at `path` was removed through its file.
    pub fn insert(&self, path: &str, name: String) {
        let mut dirs = self.dirs.lock();
        dirs.retain(|_, at| at.elapsed() < REMOVED_DIR_KEPT);
        dirs.insert((path.to_string(), name), Instant::now());
    }

    /// The empty directory `name` in `path` stands for, if it was removed lately.
    pub fn get(&self, path: &str, name: &str) -> Option<VirtualNode> {
        let dirs = self.dirs.lock();
        let at = dirs.get(&(path.to_string(), name.to_string()))?;
        (at.elapsed() < REMOVED_DIR_KEPT).then(|| VirtualNode::Removed {
            path: path.to_string(),
            name: name.to_string(),
        })
    }

    /// `rmdir` of it: gone for good.
    pub fn remove(&self, path: &str, name: &str) {
        self.dirs
            .lock()
            .remove(&(path.to_string(), name.to_string()));
    }
}

/// One note: its bytes and when it was last written.
type Note = (Vec<u8>, SystemTime);

/// The `.trashinfo` notes, by trash uid and name.
#[derive(Default)]
pub struct TrashNotes {
    notes: Mutex<HashMap<(u32, String), Note>>,
}

impl TrashNotes {
    /// A note's size and mtime.
    pub fn stat(&self, uid: u32, name: &str) -> Option<(u64, SystemTime)> {
        self.notes
            .lock()
            .get(&(uid, name.to_string()))
            .map(|(bytes, at)| (bytes.len() as u64, *at))
    }
}

impl Fs {
    /// What `name` inside the virtual directory `dir` stands for.
    pub(super) fn resolve_virtual(&self, dir: &VirtualNode, name: &str) -> FsResult<Node> {
        let node = match (dir, name) {
            (VirtualNode::Trash { uid }, "files") => VirtualNode::TrashFiles { uid: *uid },
            (VirtualNode::Trash { uid }, "info") => VirtualNode::TrashInfo { uid: *uid },
            (VirtualNode::TrashInfo { uid }, name) if self.notes.stat(*uid, name).is_some() => {
                VirtualNode::TrashNote {
                    uid: *uid,
                    name: name.to_string(),
                }
            }
            (
                VirtualNode::Searches { .. }
                | VirtualNode::Query { .. }
                | VirtualNode::QueryMailbox { .. },
                name,
            ) => return self.resolve_search(dir, name),
            _ => return Err(FsError::NotFound),
        };
        Ok(Node::Virtual(node))
    }

    /// The entries of a virtual directory.
    pub(super) fn virtual_items(&self, dir: &VirtualNode) -> FsResult<Vec<DirItem>> {
        let names: Vec<(String, VirtualNode)> = match dir {
            VirtualNode::Trash { uid } => vec![
                ("files".into(), VirtualNode::TrashFiles { uid: *uid }),
                ("info".into(), VirtualNode::TrashInfo { uid: *uid }),
            ],
            VirtualNode::TrashFiles { .. } | VirtualNode::Removed { .. } => Vec::new(),
            VirtualNode::TrashInfo { uid } => {
                let notes = self.notes.notes.lock();
                let mut names: Vec<(String, VirtualNode)> = notes
                    .keys()
                    .filter(|(u, _)| u == uid)
                    .map(|(_, name)| {
                        let node = VirtualNode::TrashNote {
                            uid: *uid,
                            name: name.clone(),
                        };
                        (name.clone(), node)
                    })
                    .collect();
                names.sort();
                names
            }
            VirtualNode::TrashNote { .. } | VirtualNode::Hit { .. } => {
                return Err(FsError::NotADirectory)
            }
            VirtualNode::Searches { .. }
            | VirtualNode::Query { .. }
            | VirtualNode::QueryMailbox { .. } => return self.search_items(dir),
        };
        Ok(names
            .into_iter()
            .map(|(name, node)| DirItem::Child {
                name,
                node: Node::Virtual(node),
            })
            .collect())
    }

    /// A new note in a trash's `info` directory (created exclusively, as GIO does).
    pub(super) fn create_note(&self, dir: &VirtualNode, name: &str) -> FsResult<Node> {
        let VirtualNode::TrashInfo { uid } = dir else {
            return Err(FsError::NotPermitted(
                "only trash notes can be created here".into(),
            ));
        };
        let mut notes = self.notes.notes.lock();
        let key = (*uid, name.to_string());
        if notes.contains_key(&key) {
            return Err(FsError::Exists);
        }
        notes.insert(key, (Vec::new(), SystemTime::now()));
        Ok(Node::Virtual(VirtualNode::TrashNote {
            uid: *uid,
            name: name.to_string(),
        }))
    }

    /// Writes into a note.
    pub(super) fn write_note(
        &self,
        uid: u32,
        name: &str,
        offset: u64,
        data: &[u8],
    ) -> FsResult<u32> {
        let mut notes = self.notes.notes.lock();
        let (bytes, at) = notes
            .get_mut(&(uid, name.to_string()))
            .ok_or(FsError::NotFound)?;
        let offset = usize::try_from(offset)
            .ok()
            .filter(|o| o.saturating_add(data.len()) <= 1 << 20)
            .ok_or_else(|| FsError::NoSpace("a trash note holds at most 1 MiB".into()))?;
        if bytes.len() < offset + data.len() {
            bytes.resize(offset + data.len(), 0);
        }
        bytes[offset..offset + data.len()].copy_from_slice(data);
        *at = SystemTime::now();
        Ok(data.len() as u32)
    }

    /// Reads a note.
    pub(super) fn read_note(
        &self,
        uid: u32,
        name: &str,
        offset: u64,
        size: u32,
    ) -> FsResult<Vec<u8>> {
        let notes = self.notes.notes.lock();
        let (bytes, _) = notes
            .get(&(uid, name.to_string()))
            .ok_or(FsError::NotFound)?;
        let range = ByteRange {
            offset,
            len: u64::from(size),
        };
        Ok(clip(bytes, Some(range)).to_vec())
    }

    /// Removes a note.
    pub(super) fn remove_note(&self, uid: u32, name: &str) -> FsResult<()> {
        self.notes
            .notes
            .lock()
            .remove(&(uid, name.to_string()))
            .map(drop)
            .ok_or(FsError::NotFound)
    }

    /// A message moved into a trash's `files`: it goes to the server's Trash mailbox.
    pub(super) fn trash_message(&self, message: &super::inodes::MessageRef) -> FsResult<()> {
        let trash = self.trash_mailbox()?;
        if trash == message.mailbox {
            return Err(FsError::NotPermitted(
                "the message is in Trash already".into(),
            ));
        }
        self.move_to_trash(
            message,
            &trash,
            "moved message to Trash (file manager trash)",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trash_names_are_reserved_and_parsed() {
        assert_eq!(at_root(".Trash-0"), Some(VirtualNode::Trash { uid: 0 }));
        assert_eq!(
            at_root(".Trash-1000"),
            Some(VirtualNode::Trash { uid: 1000 })
        );
        for not in [".Trash", ".Trash-", ".Trash-x", ".Trash-1a", "Trash-0"] {
            assert_eq!(at_root(not), None, "{not}");
        }
        assert!(is_reserved(".search") && is_reserved(".Trash-7"));
        assert!(!is_reserved("Trash"));
    }
}
