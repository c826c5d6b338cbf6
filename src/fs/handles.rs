//! Open directories: the entries each showed when it was opened, so that paging through it
//! by offset is stable while the mailbox changes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::inodes::Node;
use super::Kind;
use crate::store::MailboxId;

/// One entry of an open directory.
#[derive(Debug, Clone)]
pub enum DirItem {
    /// `.` or `..`, with the number it shows.
    Dot { name: &'static str, ino: u64 },
    /// A child, by what it stands for (its number is given out when it is read).
    Child { name: String, node: Node },
}

impl DirItem {
    /// The entry's name.
    pub fn name(&self) -> &str {
        match self {
            DirItem::Dot { name, .. } => name,
            DirItem::Child { name, .. } => name,
        }
    }

    /// File or directory.
    pub fn kind(&self) -> Kind {
        match self {
            DirItem::Dot { .. } => Kind::Directory,
            DirItem::Child { node, .. } => match node {
                Node::Root | Node::Mailbox { .. } | Node::Message { .. } => Kind::Directory,
                Node::File { .. } | Node::NewFile { .. } | Node::StoredFile { .. } => Kind::File,
                Node::Virtual(v) => v.kind(),
            },
        }
    }
}

/// What a mailbox directory's snapshot was taken from: the listing's generation then. If
/// the listing changed while the directory was open, the kernel may have cached the
/// snapshot after the change's invalidation went out, so it is invalidated again on close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirStamp {
    pub ino: u64,
    pub mailbox: MailboxId,
    pub generation: Option<u64>,
}

/// An open directory: its snapshot, and where it came from.
struct OpenDir {
    items: Arc<Vec<DirItem>>,
    stamp: Option<DirStamp>,
}

/// The snapshots of open directories, by handle.
pub struct DirHandles {
    next: AtomicU64,
    open: Mutex<HashMap<u64, OpenDir>>,
}

impl Default for DirHandles {
    fn default() -> Self {
        DirHandles {
            next: AtomicU64::new(1),
            open: Mutex::new(HashMap::new()),
        }
    }
}

impl DirHandles {
    /// Keeps a snapshot (of a mailbox's listing at `stamp`); returns its handle.
    pub fn open(&self, items: Vec<DirItem>, stamp: Option<DirStamp>) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = OpenDir {
            items: Arc::new(items),
            stamp,
        };
        self.open.lock().insert(fh, dir);
        fh
    }

    /// The snapshot behind a handle.
    pub fn get(&self, fh: u64) -> Option<Arc<Vec<DirItem>>> {
        self.open.lock().get(&fh).map(|d| Arc::clone(&d.items))
    }

    /// Forgets a snapshot; says what it was taken from and how many entries it held.
    pub fn close(&self, fh: u64) -> Option<(Option<DirStamp>, usize)> {
        self.open
            .lock()
            .remove(&fh)
            .map(|d| (d.stamp, d.items.len()))
    }
}
