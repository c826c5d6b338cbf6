//! Directory snapshots. imapfs answers ENOSYS to OPENDIR, so the kernel never opens or
//! closes a directory here: it reads one by offset, from 0, and keeps what it read
//! (`FOPEN_CACHE_DIR`). A read from offset 0 takes a snapshot of the directory's entries;
//! every offset handed out names its snapshot and a place in it, so that paging through a
//! directory is stable while the mailbox changes, also with two readers at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;

use super::inodes::Node;
use super::Kind;
use crate::store::MailboxId;

/// How many snapshots are kept at most, and how many entries in all: a reader that stops
/// half-way (`ls | head`) leaves one behind, and the oldest go first. A 20,000-message
/// mailbox's snapshot holds about 2 MB.
const SNAPSHOTS_AT_MOST: usize = 32;
const ENTRIES_AT_MOST: usize = 1 << 18;

/// One entry of a directory.
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
/// the listing changed while the kernel read the snapshot, the kernel may have kept it
/// after the change's invalidation went out, so it is invalidated again at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirStamp {
    pub mailbox: MailboxId,
    pub generation: Option<u64>,
}

/// A directory's entries as one read from offset 0 found them.
#[derive(Debug)]
pub struct Snapshot {
    /// The directory.
    pub ino: u64,
    pub items: Vec<DirItem>,
    /// The mailbox listing it was taken from, if any.
    pub stamp: Option<DirStamp>,
    /// Whether the kernel may keep it: the directory's changes all reach the kernel as
    /// invalidations (a message directory, a followed mailbox). Any other directory is
    /// invalidated once it was read to the end, so the next reader asks again.
    pub kept: bool,
}

/// The place an offset names: the snapshot, and the index of the next entry.
fn split(offset: u64) -> (u64, usize) {
    (
        offset >> 32,
        usize::try_from(offset & 0xffff_ffff).unwrap_or(usize::MAX),
    )
}

/// The index an offset names the entry of (0 for offset 0).
pub fn index_of(offset: u64) -> usize {
    split(offset).1
}

/// The offset of entry `index + 1` of snapshot `id` (never 0, and positive as an `i64`,
/// which the kernel's directory positions are).
pub fn offset_after(id: u64, index: usize) -> u64 {
    (id << 32) | (index as u64 + 1)
}

/// The snapshots being read, by number, and the mailbox directories the kernel keeps.
#[derive(Default)]
pub struct DirSnapshots {
    state: Mutex<Snapshots>,
    kept: Mutex<HashMap<u64, MailboxId>>,
}

#[derive(Default)]
struct Snapshots {
    last: u64,
    by_id: BTreeMap<u64, Arc<Snapshot>>,
    /// Entries in all the snapshots held.
    entries: usize,
}

impl Snapshots {
    fn remove(&mut self, id: u64) -> Option<Arc<Snapshot>> {
        let gone = self.by_id.remove(&id)?;
        self.entries -= gone.items.len();
        Some(gone)
    }
}

impl DirSnapshots {
    /// Keeps `snapshot`; returns its number.
    pub fn keep(&self, snapshot: Snapshot) -> (u64, Arc<Snapshot>) {
        let mut s = self.state.lock();
        // Numbers wrap below 2^31, so that offsets stay positive.
        s.last = s.last % 0x7fff_ffff + 1;
        let id = s.last;
        let snapshot = Arc::new(snapshot);
        s.entries += snapshot.items.len();
        s.by_id.insert(id, Arc::clone(&snapshot));
        while s.by_id.len() > SNAPSHOTS_AT_MOST || s.entries > ENTRIES_AT_MOST {
            // The oldest: the lowest number, unless the numbers wrapped.
            let oldest = s
                .by_id
                .range(id + 1..)
                .next()
                .or_else(|| s.by_id.iter().next())
                .map(|(k, _)| *k);
            match oldest {
                Some(k) if k != id => s.remove(k),
                _ => break,
            };
        }
        (id, snapshot)
    }

    /// The snapshot `offset` points into, of directory `ino`, and the index it names;
    /// `None` if it was dropped (or the offset is not one of ours).
    pub fn at(&self, ino: u64, offset: u64) -> Option<(u64, Arc<Snapshot>, usize)> {
        let (id, index) = split(offset);
        let snapshot = self.state.lock().by_id.get(&id).cloned()?;
        (snapshot.ino == ino).then_some((id, snapshot, index))
    }

    /// Drops snapshot `id` (read to the end); returns it unless it was dropped already.
    pub fn drop_snapshot(&self, id: u64) -> Option<Arc<Snapshot>> {
        self.state.lock().remove(id)
    }

    /// The kernel keeps directory `ino`'s listing of `mailbox`, for as long as it is
    /// followed.
    pub fn kept_while_followed(&self, ino: u64, mailbox: &MailboxId) {
        self.kept.lock().insert(ino, mailbox.clone());
    }

    /// The kept directories whose mailboxes `followed` says are no longer followed; they
    /// are not kept from now on.
    pub fn unfollowed(&self, followed: impl Fn(&MailboxId) -> bool) -> Vec<u64> {
        let mut gone = Vec::new();
        self.kept.lock().retain(|ino, mailbox| {
            let keep = followed(mailbox);
            if !keep {
                gone.push(*ino);
            }
            keep
        });
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(ino: u64, n: usize) -> Snapshot {
        Snapshot {
            ino,
            items: (0..n).map(|_| DirItem::Dot { name: ".", ino }).collect(),
            stamp: None,
            kept: false,
        }
    }

    #[test]
    fn an_offset_names_its_snapshot_and_place_and_only_for_its_directory() {
        let snaps = DirSnapshots::default();
        let (a, _) = snaps.keep(snapshot(5, 3));
        let (b, _) = snaps.keep(snapshot(5, 4));
        assert_ne!(a, b);
        let (id, snap, index) = snaps.at(5, offset_after(b, 2)).unwrap();
        assert_eq!((id, snap.items.len(), index), (b, 4, 3));
        assert!(
            snaps.at(6, offset_after(b, 2)).is_none(),
            "another directory"
        );
        assert!(snaps.drop_snapshot(a).is_some());
        assert!(snaps.at(5, offset_after(a, 0)).is_none(), "dropped");
        assert!(offset_after(0x7fff_ffff, usize::MAX >> 33) <= i64::MAX as u64);
    }

    #[test]
    fn snapshots_hold_a_bounded_number_of_entries() {
        let snaps = DirSnapshots::default();
        let (first, _) = snaps.keep(snapshot(1, ENTRIES_AT_MOST / 2));
        let (second, _) = snaps.keep(snapshot(2, ENTRIES_AT_MOST / 2));
        assert!(snaps.at(1, offset_after(first, 0)).is_some());
        let (third, _) = snaps.keep(snapshot(3, 10));
        assert!(
            snaps.at(1, offset_after(first, 0)).is_none(),
            "the oldest went"
        );
        assert!(snaps.at(2, offset_after(second, 0)).is_some());
        assert!(snaps.drop_snapshot(second).is_some());
        assert_eq!(snaps.state.lock().entries, 10);
        let (huge, _) = snaps.keep(snapshot(4, ENTRIES_AT_MOST * 2));
        assert!(
            snaps.at(4, offset_after(huge, 0)).is_some(),
            "the newest stays, however large"
        );
        assert!(snaps.at(3, offset_after(third, 0)).is_none());
    }

    #[test]
    fn the_oldest_snapshots_go_first_also_when_the_numbers_wrap() {
        let snaps = DirSnapshots::default();
        snaps.state.lock().last = 0x7fff_ffff - 4;
        let ids: Vec<u64> = (0..SNAPSHOTS_AT_MOST + 8)
            .map(|_| snaps.keep(snapshot(1, 1)).0)
            .collect();
        let held: Vec<u64> = snaps.state.lock().by_id.keys().copied().collect();
        assert_eq!(held.len(), SNAPSHOTS_AT_MOST);
        for id in &ids[..8] {
            assert!(!held.contains(id), "{id} is among the oldest");
        }
        for id in &ids[8..] {
            assert!(held.contains(id), "{id} is among the newest");
        }
    }
}
