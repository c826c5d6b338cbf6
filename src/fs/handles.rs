//! Open directories: the entries each showed when it was opened, so that paging through it
//! by offset is stable while the mailbox changes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::inodes::Node;
use super::Kind;

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
                Node::Virtual(v) if v.is_dir() => Kind::Directory,
                Node::Virtual(_) => Kind::File,
            },
        }
    }
}

/// The snapshots of open directories, by handle.
pub struct DirHandles {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Vec<DirItem>>>>,
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
    /// Keeps a snapshot; returns its handle.
    pub fn open(&self, items: Vec<DirItem>) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.open.lock().insert(fh, Arc::new(items));
        fh
    }

    /// The snapshot behind a handle.
    pub fn get(&self, fh: u64) -> Option<Arc<Vec<DirItem>>> {
        self.open.lock().get(&fh).cloned()
    }

    /// Forgets a snapshot.
    pub fn close(&self, fh: u64) {
        self.open.lock().remove(&fh);
    }
}
