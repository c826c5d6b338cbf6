//! The inode table: a number for every node the kernel holds, counted as the kernel counts
//! its lookups and dropped when the kernel forgets it, so memory comes back after a walk.
//!
//! A node's identity is its key (a mailbox path, or a message and section under one
//! UIDVALIDITY), so the same message always gets the same inode, and a message from a
//! recreated mailbox (new UIDVALIDITY) never gets an old message's inode. The number is
//! derived from the key, so a plain `readdir` can show the number a later lookup will give
//! without keeping anything.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::SystemTime;

use super::mailboxes::{is_within, moved_path};
use super::virtual_dirs::VirtualNode;
use crate::mime::FileSpec;
use crate::store::{MailboxId, Section, Uid, UidValidity};

/// The inode number of the mount's root.
pub const ROOT: u64 = 1;

/// One message, unambiguously: mailbox, UIDVALIDITY and UID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageRef {
    pub mailbox: MailboxId,
    pub validity: UidValidity,
    pub uid: Uid,
}

/// What an inode stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// The root: top-level mailboxes.
    Root,
    /// A mailbox directory by display path.
    Mailbox { path: String },
    /// A message directory (`section` empty) or an encapsulated message/rfc822 inside one.
    Message {
        message: MessageRef,
        section: Section,
        mtime: SystemTime,
    },
    /// A file of the message directory at `dir`.
    File {
        message: MessageRef,
        dir: Section,
        name: String,
        spec: Box<FileSpec>,
        mtime: SystemTime,
        /// The exact size once the content has been rendered.
        known_size: Option<u64>,
    },
    /// A new file being written into a mailbox directory; it becomes a message on close.
    NewFile { dir_path: String, name: String },
    /// A directory or file imapfs makes up (`virtual_dirs.rs`).
    Virtual(VirtualNode),
    /// A message imapfs made from a file, shown as that file again in its mailbox.
    StoredFile {
        message: MessageRef,
        name: String,
        size: u64,
        mtime: SystemTime,
    },
}

/// What makes a node the node it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeKey {
    Root,
    Mailbox(String),
    Message(MessageRef, Section),
    File(MessageRef, Section, String),
    NewFile(String, String),
    StoredFile(MessageRef),
    Virtual(VirtualNode),
}

impl Node {
    /// The node's identity.
    pub fn key(&self) -> NodeKey {
        match self {
            Node::Root => NodeKey::Root,
            Node::Mailbox { path } => NodeKey::Mailbox(path.clone()),
            Node::Message {
                message, section, ..
            } => NodeKey::Message(message.clone(), section.clone()),
            Node::File {
                message, dir, name, ..
            } => NodeKey::File(message.clone(), dir.clone(), name.clone()),
            Node::NewFile { dir_path, name } => NodeKey::NewFile(dir_path.clone(), name.clone()),
            Node::StoredFile { message, .. } => NodeKey::StoredFile(message.clone()),
            Node::Virtual(v) => NodeKey::Virtual(v.clone()),
        }
    }

    /// The message this node belongs to, if any.
    pub fn message(&self) -> Option<&MessageRef> {
        match self {
            Node::Message { message, .. }
            | Node::File { message, .. }
            | Node::StoredFile { message, .. } => Some(message),
            Node::Root | Node::Mailbox { .. } | Node::NewFile { .. } | Node::Virtual(_) => None,
        }
    }

    fn message_mut(&mut self) -> Option<&mut MessageRef> {
        match self {
            Node::Message { message, .. }
            | Node::File { message, .. }
            | Node::StoredFile { message, .. } => Some(message),
            Node::Root | Node::Mailbox { .. } | Node::NewFile { .. } | Node::Virtual(_) => None,
        }
    }
}

struct Slot {
    node: Node,
    /// Lookups the kernel has not forgotten yet.
    lookups: u64,
}

/// Inode numbers both ways, with the kernel's lookup counts, and indexes for what renames
/// and moves rewrite.
pub struct InodeTable {
    slots: HashMap<u64, Slot>,
    by_key: HashMap<NodeKey, u64>,
    /// The inodes of each message's nodes, by mailbox: what a move or rename rewrites.
    by_message: HashMap<MailboxId, HashMap<(UidValidity, Uid), Vec<u64>>>,
    /// Mailbox directories and new files by display path, ordered, for subtree renames.
    by_path: BTreeMap<String, Vec<u64>>,
    /// Mailboxes renamed on this mount, latest last: (old identifier, new identifier, the
    /// path the rename moved the subtree to).
    renamed: VecDeque<(MailboxId, MailboxId, String)>,
}

/// How many mailbox renames `remember_in` can still see through.
const RENAMES_KEPT: usize = 256;

impl Default for InodeTable {
    fn default() -> Self {
        let mut table = InodeTable {
            slots: HashMap::new(),
            by_key: HashMap::new(),
            by_message: HashMap::new(),
            by_path: BTreeMap::new(),
            renamed: VecDeque::new(),
        };
        table.by_key.insert(NodeKey::Root, ROOT);
        table.slots.insert(
            ROOT,
            Slot {
                node: Node::Root,
                lookups: 1,
            },
        );
        table
    }
}

/// The numbers of message directories have this bit set; every other node's is a hash
/// without it.
const MESSAGE_DIR: u64 = 1 << 63;

/// The first number tried for a key: a hash of it, never 0 or the root's. A message
/// directory's number is its mailbox's (and UIDVALIDITY's) hash followed by its UID, so
/// that numbers ascend with UIDs: `find` and `grep -r` (gnulib's fts) visit a directory of
/// more than 10,000 entries in inode order, and in UID order the walk read-ahead works.
fn hashed(key: &NodeKey) -> u64 {
    let mut hasher = DefaultHasher::new();
    if let NodeKey::Message(message, section) = key {
        if section.is_whole() {
            (&message.mailbox, message.validity).hash(&mut hasher);
            let mailbox = hasher.finish() & 0x7fff_ffff;
            return MESSAGE_DIR | mailbox << 32 | u64::from(message.uid.0);
        }
    }
    key.hash(&mut hasher);
    (hasher.finish() >> 1).max(ROOT + 1)
}

/// The next number after `ino` in the probe sequence, skipping 0 and the root, and staying
/// among message directories' numbers or among the others'.
fn next_candidate(ino: u64) -> u64 {
    let space = ino & MESSAGE_DIR;
    let next = (ino.wrapping_add(1) & !MESSAGE_DIR) | space;
    if space == 0 {
        next.max(ROOT + 1)
    } else {
        next
    }
}

/// The capacity below which the table's maps are not shrunk: not worth reallocating.
const MIN_CAPACITY: usize = 1024;

/// Shrinks `map` to twice its length once it is at most a quarter full (amortised: the
/// next shrink needs the length to fall by half again). Returns whether it shrank.
fn shrink_if_sparse<K: Eq + Hash, V>(map: &mut HashMap<K, V>) -> bool {
    let capacity = map.capacity();
    if capacity <= MIN_CAPACITY || map.len() * 4 > capacity {
        return false;
    }
    map.shrink_to((map.len() * 2).max(MIN_CAPACITY));
    map.capacity() < capacity
}

impl InodeTable {
    /// The number `node` has, or would get if it were looked up now.
    pub fn peek(&self, node: &Node) -> u64 {
        let key = node.key();
        if let Some(&ino) = self.by_key.get(&key) {
            return ino;
        }
        self.free_number(&key)
    }

    fn free_number(&self, key: &NodeKey) -> u64 {
        let mut ino = hashed(key);
        while self.slots.contains_key(&ino) {
            ino = next_candidate(ino);
        }
        ino
    }

    /// The inode of `node`, counting one lookup by the kernel (call only when the number
    /// goes to the kernel in an entry).
    pub fn remember(&mut self, node: Node) -> u64 {
        let key = node.key();
        if let Some(&ino) = self.by_key.get(&key) {
            let slot = self.slots.get_mut(&ino).expect("indexed inode has a slot");
            slot.lookups += 1;
            // Keep what was learned (an exact size) when the node is seen again.
            if !matches!(
                slot.node,
                Node::File {
                    known_size: Some(_),
                    ..
                }
            ) {
                slot.node = node;
            }
            return ino;
        }
        let ino = self.free_number(&key);
        self.index(ino, &node);
        self.by_key.insert(key, ino);
        self.slots.insert(ino, Slot { node, lookups: 1 });
        ino
    }

    /// The inode of `node`, found in directory `parent`, counting one lookup as `remember`
    /// does. A node of a message whose directory was moved meanwhile (found before the move
    /// renumbered the directory, remembered after) is taken to the message the directory
    /// stands for now: the kernel keeps what it is given under the moved directory, and
    /// the old message is gone. Likewise a message found in a mailbox directory before the
    /// mailbox was renamed takes the mailbox's new identifier.
    pub fn remember_in(&mut self, parent: u64, mut node: Node) -> u64 {
        match (self.slots.get(&parent).map(|s| &s.node), node.message_mut()) {
            (Some(Node::Message { message: now, .. }), Some(message)) => message.clone_from(now),
            (Some(Node::Mailbox { path }), Some(message)) => {
                let renamed = self
                    .renamed
                    .iter()
                    .rev()
                    .find(|(old, _, to)| *old == message.mailbox && is_within(path, to));
                if let Some((_, new, _)) = renamed {
                    message.mailbox = new.clone();
                }
            }
            _ => {}
        }
        self.remember(node)
    }

    fn index(&mut self, ino: u64, node: &Node) {
        match node {
            Node::Message { message, .. }
            | Node::File { message, .. }
            | Node::StoredFile { message, .. } => self
                .by_message
                .entry(message.mailbox.clone())
                .or_default()
                .entry((message.validity, message.uid))
                .or_default()
                .push(ino),
            Node::Mailbox { path } | Node::NewFile { dir_path: path, .. } => {
                self.by_path.entry(path.clone()).or_default().push(ino)
            }
            Node::Root | Node::Virtual(_) => {}
        }
    }

    fn unindex(&mut self, ino: u64, node: &Node) {
        match node {
            Node::Message { message, .. }
            | Node::File { message, .. }
            | Node::StoredFile { message, .. } => {
                if let Some(messages) = self.by_message.get_mut(&message.mailbox) {
                    let id = (message.validity, message.uid);
                    if let Some(inos) = messages.get_mut(&id) {
                        inos.retain(|i| *i != ino);
                        if inos.is_empty() {
                            messages.remove(&id);
                        }
                    }
                    if messages.is_empty() {
                        self.by_message.remove(&message.mailbox);
                    }
                }
            }
            Node::Mailbox { path } | Node::NewFile { dir_path: path, .. } => {
                if let Some(inos) = self.by_path.get_mut(path) {
                    inos.retain(|i| *i != ino);
                    if inos.is_empty() {
                        self.by_path.remove(path);
                    }
                }
            }
            Node::Root | Node::Virtual(_) => {}
        }
    }

    /// The kernel forgot `count` lookups of `ino`; at zero the node is dropped. Returns
    /// the node if it was.
    pub fn forget(&mut self, ino: u64, count: u64) -> Option<Node> {
        if ino == ROOT {
            return None;
        }
        let slot = self.slots.get_mut(&ino)?;
        slot.lookups = slot.lookups.saturating_sub(count);
        if slot.lookups > 0 {
            return None;
        }
        let slot = self.slots.remove(&ino).expect("slot present");
        self.unkey(ino, &slot.node);
        self.unindex(ino, &slot.node);
        Some(slot.node)
    }

    /// Gives back the memory of dropped nodes' slots once the table is mostly empty (after
    /// the kernel forgot a walk). A `HashMap` never shrinks by itself, and its slots were
    /// all written, so without this they stay resident however much is forgotten. Returns
    /// whether anything was given back.
    pub fn compact(&mut self) -> bool {
        let slots = shrink_if_sparse(&mut self.slots);
        let keys = shrink_if_sparse(&mut self.by_key);
        slots || keys
    }

    /// Drops the key of `node` if it still names `ino` (a renamed node may have taken it).
    fn unkey(&mut self, ino: u64, node: &Node) {
        let key = node.key();
        if self.by_key.get(&key) == Some(&ino) {
            self.by_key.remove(&key);
        }
    }

    /// The node behind an inode.
    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.slots.get(&ino).map(|s| &s.node)
    }

    /// The inode of a node the kernel holds, if it holds it.
    pub fn ino_of(&self, key: &NodeKey) -> Option<u64> {
        self.by_key.get(key).copied()
    }

    /// How many nodes the kernel holds (the root always).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Never: the root is always held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Records the exact size of a file once its content is known.
    pub fn set_known_size(&mut self, ino: u64, size: u64) {
        if let Some(Slot {
            node: Node::File { known_size, .. },
            ..
        }) = self.slots.get_mut(&ino)
        {
            *known_size = Some(size);
        }
    }

    /// Changes the nodes `inos` in place, keeping their numbers, and re-keys them.
    fn rekey(&mut self, inos: Vec<u64>, mut change: impl FnMut(&mut Node)) {
        for ino in inos {
            let Some(slot) = self.slots.get_mut(&ino) else {
                continue;
            };
            let old = slot.node.clone();
            change(&mut slot.node);
            let new = slot.node.clone();
            if new == old {
                continue;
            }
            self.unindex(ino, &old);
            self.unkey(ino, &old);
            // Should another node hold the new key already, the renamed one wins: it is
            // what the kernel sees at that name now.
            self.by_key.insert(new.key(), ino);
            self.index(ino, &new);
        }
    }

    /// After a move on the server, the inodes the kernel holds for a message (and its files)
    /// follow it to its new mailbox and UID.
    pub fn message_moved(&mut self, old: &MessageRef, new: &MessageRef) {
        let inos = self
            .by_message
            .get(&old.mailbox)
            .and_then(|m| m.get(&(old.validity, old.uid)))
            .cloned()
            .unwrap_or_default();
        self.rekey(inos, |node| {
            if let Some(message) = node.message_mut() {
                *message = new.clone();
            }
        });
    }

    /// After a mailbox rename: directories under `old_path` move to `new_path`, and nodes of
    /// messages in a renamed mailbox take its new identifier (`ids`: old to new).
    pub fn mailboxes_renamed(
        &mut self,
        old_path: &str,
        new_path: &str,
        ids: &HashMap<MailboxId, MailboxId>,
    ) {
        let dirs: Vec<u64> = self
            .by_path
            .range(old_path.to_string()..)
            .take_while(|(p, _)| p.starts_with(old_path))
            .filter(|(p, _)| is_within(p, old_path))
            .flat_map(|(_, inos)| inos.iter().copied())
            .collect();
        let moved = |path: &mut String| {
            if let Some(new) = moved_path(path, old_path, new_path) {
                *path = new;
            }
        };
        self.rekey(dirs, |node| match node {
            Node::Mailbox { path } | Node::NewFile { dir_path: path, .. } => moved(path),
            _ => {}
        });
        for (old, new) in ids {
            self.renamed
                .push_back((old.clone(), new.clone(), new_path.to_string()));
            if self.renamed.len() > RENAMES_KEPT {
                self.renamed.pop_front();
            }
            let inos: Vec<u64> = self
                .by_message
                .get(old)
                .map(|m| m.values().flatten().copied().collect())
                .unwrap_or_default();
            self.rekey(inos, |node| {
                if let Some(message) = node.message_mut() {
                    message.mailbox = new.clone();
                }
            });
        }
    }

    /// Puts `node` behind `ino` in place of what was there (a file a message shows, opened
    /// for writing, becomes a new file), keeping the number the kernel holds.
    pub fn replace(&mut self, ino: u64, node: Node) {
        let new = node.clone();
        self.rekey(vec![ino], move |n| *n = new.clone());
    }

    /// A new file was renamed (within its directory, or moved to `new_dir`): the inode
    /// the kernel holds follows.
    pub fn new_file_renamed(&mut self, dir_path: &str, old: &str, new_dir: &str, new: &str) {
        let key = NodeKey::NewFile(dir_path.to_string(), old.to_string());
        if let Some(ino) = self.by_key.get(&key).copied() {
            self.rekey(vec![ino], |node| {
                if let Node::NewFile { dir_path, name } = node {
                    *dir_path = new_dir.to_string();
                    *name = new.to_string();
                }
            });
        }
    }

    /// Inodes of the message nodes of `mailbox` (for dropping a recreated mailbox's nodes
    /// from the kernel's caches).
    pub fn message_inodes(&self, mailbox: &MailboxId) -> Vec<u64> {
        self.by_message
            .get(mailbox)
            .map(|m| m.values().flatten().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn message(mailbox: &str, uid: u32) -> Node {
        Node::Message {
            message: MessageRef {
                mailbox: MailboxId::new(mailbox),
                validity: UidValidity(1),
                uid: Uid(uid),
            },
            section: Section::whole(),
            mtime: UNIX_EPOCH,
        }
    }

    /// A sibling whose name sorts between the mailbox and its children (`Projects-2` before
    /// `Projects/Sub`) does not hide the children from the rename.
    #[test]
    fn a_renamed_mailbox_takes_its_children_past_a_sibling_with_a_longer_name() {
        let mut table = InodeTable::default();
        let sibling = table.remember(Node::Mailbox {
            path: "Projects-2".into(),
        });
        let child = table.remember(Node::Mailbox {
            path: "Projects/Sub".into(),
        });
        table.mailboxes_renamed("Projects", "Old", &HashMap::new());
        assert_eq!(
            table.get(child),
            Some(&Node::Mailbox {
                path: "Old/Sub".into()
            })
        );
        assert_eq!(
            table.get(sibling),
            Some(&Node::Mailbox {
                path: "Projects-2".into()
            })
        );
    }

    /// A lookup in a mailbox directory that resolved a message before the mailbox was
    /// renamed, and is remembered after: the kernel keeps the entry under the renamed
    /// directory, so the node must name the mailbox by its new identifier.
    #[test]
    fn a_message_found_before_its_mailbox_was_renamed_takes_the_new_name() {
        let mut table = InodeTable::default();
        let dir = table.remember(Node::Mailbox {
            path: "Projects".into(),
        });
        let sub = table.remember(Node::Mailbox {
            path: "Projects/Sub".into(),
        });
        let ids = HashMap::from([
            (MailboxId::new("Projects"), MailboxId::new("Old")),
            (MailboxId::new("Projects/Sub"), MailboxId::new("Old/Sub")),
        ]);
        table.mailboxes_renamed("Projects", "Old", &ids);
        let late = table.remember_in(dir, message("Projects", 6));
        assert_eq!(table.get(late), Some(&message("Old", 6)));
        let late = table.remember_in(sub, message("Projects/Sub", 2));
        assert_eq!(table.get(late), Some(&message("Old/Sub", 2)));
        // A new mailbox made at the old name is another mailbox.
        let again = table.remember(Node::Mailbox {
            path: "Projects".into(),
        });
        let fresh = table.remember_in(again, message("Projects", 1));
        assert_eq!(table.get(fresh), Some(&message("Projects", 1)));
    }

    #[test]
    fn numbers_are_stable_and_peek_matches_a_later_lookup() {
        let mut table = InodeTable::default();
        let node = message("INBOX", 7);
        let predicted = table.peek(&node);
        assert!(predicted > ROOT);
        assert_eq!(table.len(), 1, "peeking keeps nothing");
        let ino = table.remember(node.clone());
        assert_eq!(ino, predicted);
        assert_eq!(table.remember(node.clone()), ino);
        assert_eq!(table.get(ino), Some(&node));
    }

    #[test]
    fn message_directories_are_numbered_in_uid_order() {
        // fts (find, grep -r) walks a directory of over 10,000 entries in inode order.
        let mut table = InodeTable::default();
        let inbox: Vec<u64> = [3, 9, 10, 11, 4000, 70_000]
            .into_iter()
            .map(|uid| table.remember(message("INBOX", uid)))
            .collect();
        assert!(inbox.windows(2).all(|w| w[0] < w[1]), "{inbox:?}");
        let other = table.remember(message("Archive", 3));
        assert!(!inbox.contains(&other));
        let file = Node::File {
            message: MessageRef {
                mailbox: MailboxId::new("INBOX"),
                validity: UidValidity(1),
                uid: Uid(3),
            },
            dir: Section::whole(),
            name: "message.eml".into(),
            spec: Box::new(crate::mime::FileSpec {
                section: Section::whole(),
                content: crate::mime::Content::Raw,
                size_hint: 10,
                stored_size: 10,
                lines: None,
                exact_size: true,
            }),
            mtime: UNIX_EPOCH,
            known_size: None,
        };
        assert!(
            table.remember(file) < MESSAGE_DIR,
            "other nodes keep to their own numbers"
        );
        assert!(next_candidate(u64::MAX) >= MESSAGE_DIR);
        assert!(
            next_candidate(MESSAGE_DIR - 1) > ROOT && next_candidate(MESSAGE_DIR - 1) < MESSAGE_DIR
        );
    }

    #[test]
    fn a_node_is_dropped_when_every_lookup_is_forgotten() {
        let mut table = InodeTable::default();
        let ino = table.remember(message("INBOX", 1));
        table.remember(message("INBOX", 1));
        assert!(table.forget(ino, 1).is_none());
        assert!(table.get(ino).is_some());
        assert!(table.forget(ino, 1).is_some());
        assert!(table.get(ino).is_none());
        assert_eq!(table.len(), 1);
        assert!(table.by_message.is_empty(), "indexes are emptied too");
        // The root is never forgotten; unknown numbers are ignored.
        assert!(table.forget(ROOT, 100).is_none());
        assert!(table.forget(12345, 1).is_none());
    }

    #[test]
    fn a_mostly_forgotten_table_gives_its_memory_back() {
        let mut table = InodeTable::default();
        let inos: Vec<u64> = (1..=20_000)
            .map(|uid| table.remember(message("INBOX", uid)))
            .collect();
        let full = table.slots.capacity();
        assert!(!table.compact(), "a full table keeps its capacity");
        let mut shrinks = 0;
        for ino in &inos[..19_990] {
            assert!(table.forget(*ino, 1).is_some());
            shrinks += usize::from(table.compact());
        }
        assert!(
            table.slots.capacity() <= 2 * MIN_CAPACITY,
            "{}",
            table.slots.capacity()
        );
        assert!(table.by_key.capacity() <= 2 * MIN_CAPACITY);
        assert!(table.slots.capacity() < full / 8);
        // Halving steps, not one per forget.
        assert!((1..=8).contains(&shrinks), "{shrinks} shrinks");
        for ino in &inos[19_990..] {
            assert!(table.get(*ino).is_some(), "the rest are still held");
        }
    }

    #[test]
    fn moves_and_renames_keep_the_numbers_the_kernel_holds() {
        let mut table = InodeTable::default();
        let dir = table.remember(Node::Mailbox { path: "A".into() });
        let sub = table.remember(Node::Mailbox {
            path: "A/sub".into(),
        });
        let other = table.remember(Node::Mailbox { path: "AB".into() });
        let msg = table.remember(message("A", 3));
        let old = MessageRef {
            mailbox: MailboxId::new("A"),
            validity: UidValidity(1),
            uid: Uid(3),
        };
        let new = MessageRef {
            mailbox: MailboxId::new("B"),
            validity: UidValidity(9),
            uid: Uid(40),
        };
        table.message_moved(&old, &new);
        assert_eq!(table.get(msg).and_then(Node::message), Some(&new));
        assert_eq!(
            table.ino_of(&NodeKey::Message(new.clone(), Section::whole())),
            Some(msg)
        );
        assert_eq!(table.ino_of(&NodeKey::Message(old, Section::whole())), None);

        let ids = HashMap::from([(MailboxId::new("B"), MailboxId::new("C"))]);
        table.mailboxes_renamed("A", "Z", &ids);
        assert_eq!(table.get(dir), Some(&Node::Mailbox { path: "Z".into() }));
        assert_eq!(
            table.get(sub),
            Some(&Node::Mailbox {
                path: "Z/sub".into()
            })
        );
        assert_eq!(table.get(other), Some(&Node::Mailbox { path: "AB".into() }));
        assert_eq!(
            table
                .get(msg)
                .and_then(Node::message)
                .map(|m| m.mailbox.clone()),
            Some(MailboxId::new("C"))
        );
    }

    /// A lookup in a message's directory that found its file before the message moved,
    /// and is remembered after: the file is the moved message's, never a new inode of the
    /// old one under the moved directory (reads of it would fail: the old UID is gone).
    #[test]
    fn a_file_found_before_its_message_moved_is_the_moved_messages() {
        let mut table = InodeTable::default();
        let dir = table.remember(message("A", 3));
        // An attached message's directory inside the message's.
        let file_of = |m: &Node| Node::Message {
            message: m.message().unwrap().clone(),
            section: Section::whole().child(2),
            mtime: UNIX_EPOCH,
        };
        let found_before = file_of(&message("A", 3));
        let old = message("A", 3).message().unwrap().clone();
        let new = message("B", 40).message().unwrap().clone();
        table.message_moved(&old, &new);
        let ino = table.remember_in(dir, found_before);
        assert_eq!(table.get(ino).and_then(Node::message), Some(&new));
        assert_eq!(table.remember(file_of(&message("B", 40))), ino);
        // Elsewhere a node is kept as found.
        let root_child = table.remember_in(ROOT, message("A", 3));
        assert_eq!(table.get(root_child).and_then(Node::message), Some(&old));
    }

    #[test]
    fn colliding_numbers_are_probed_past() {
        let mut table = InodeTable::default();
        let wanted = message("INBOX", 2);
        let taken = hashed(&wanted.key());
        // Another node already holds the number the key hashes to.
        table.slots.insert(
            taken,
            Slot {
                node: message("Other", 9),
                lookups: 1,
            },
        );
        assert_eq!(table.peek(&wanted), next_candidate(taken));
        assert_eq!(table.remember(wanted), next_candidate(taken));
        assert_eq!(next_candidate(u64::MAX >> 1), ROOT + 1);
    }
}
