//! The inode table: a stable number for every node the kernel has seen.
//!
//! A node's identity is its key (a mailbox path, or a message and section under one
//! UIDVALIDITY), so the same message always gets the same inode, and a message from a
//! recreated mailbox (new UIDVALIDITY) never gets an old message's inode.

use std::collections::HashMap;
use std::time::SystemTime;

use crate::mime::FileSpec;
use crate::store::{MailboxName, Section, Uid, UidValidity};

/// The inode number of the mount's root.
pub const ROOT: u64 = 1;

/// One message, unambiguously: mailbox, UIDVALIDITY and UID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageRef {
    pub mailbox: MailboxName,
    pub validity: UidValidity,
    pub uid: Uid,
}

/// What an inode stands for.
#[derive(Debug, Clone)]
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
    /// A new file being written into a mailbox directory; it becomes a message on close.
    Pending { dir_path: String, name: String },
    /// A file inside a message directory.
    File {
        message: MessageRef,
        spec: FileSpec,
        mtime: SystemTime,
        /// The exact size once the content has been rendered.
        known_size: Option<u64>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum NodeKey {
    Root,
    Mailbox(String),
    Message(MessageRef, Section),
    File(MessageRef, Section, String),
    Pending(String, String),
}

impl Node {
    fn key(&self) -> NodeKey {
        match self {
            Node::Root => NodeKey::Root,
            Node::Mailbox { path } => NodeKey::Mailbox(path.clone()),
            Node::Message {
                message, section, ..
            } => NodeKey::Message(message.clone(), section.clone()),
            Node::File { message, spec, .. } => {
                // Files are keyed by their directory; recomputed from the stored key below.
                NodeKey::File(message.clone(), spec.section.clone(), String::new())
            }
            Node::Pending { dir_path, name } => NodeKey::Pending(dir_path.clone(), name.clone()),
        }
    }
}

/// Inode numbers both ways.
#[derive(Debug)]
pub struct Inodes {
    by_key: HashMap<NodeKey, u64>,
    nodes: HashMap<u64, Node>,
    next: u64,
}

impl Default for Inodes {
    fn default() -> Self {
        let mut inodes = Inodes {
            by_key: HashMap::new(),
            nodes: HashMap::new(),
            next: ROOT + 1,
        };
        inodes.by_key.insert(NodeKey::Root, ROOT);
        inodes.nodes.insert(ROOT, Node::Root);
        inodes
    }
}

impl Inodes {
    fn intern(&mut self, key: NodeKey, node: Node) -> u64 {
        if let Some(&ino) = self.by_key.get(&key) {
            // Keep what was learned (an exact size) when the node is seen again.
            if let (Some(Node::File { known_size, .. }), Node::File { .. }) =
                (self.nodes.get(&ino), &node)
            {
                if known_size.is_some() {
                    return ino;
                }
            }
            self.nodes.insert(ino, node);
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.by_key.insert(key, ino);
        self.nodes.insert(ino, node);
        ino
    }

    /// The inode of a mailbox directory.
    pub fn mailbox(&mut self, path: &str) -> u64 {
        self.intern(
            NodeKey::Mailbox(path.to_string()),
            Node::Mailbox {
                path: path.to_string(),
            },
        )
    }

    /// The inode of a message directory or an encapsulated message inside one.
    pub fn message(&mut self, message: &MessageRef, section: &Section, mtime: SystemTime) -> u64 {
        self.intern(
            NodeKey::Message(message.clone(), section.clone()),
            Node::Message {
                message: message.clone(),
                section: section.clone(),
                mtime,
            },
        )
    }

    /// The inode of a file in the message directory at `dir_section`.
    pub fn file(
        &mut self,
        message: &MessageRef,
        dir_section: &Section,
        name: &str,
        spec: &FileSpec,
        mtime: SystemTime,
    ) -> u64 {
        self.intern(
            NodeKey::File(message.clone(), dir_section.clone(), name.to_string()),
            Node::File {
                message: message.clone(),
                spec: spec.clone(),
                mtime,
                known_size: None,
            },
        )
    }

    /// The inode of a new file being written.
    pub fn pending(&mut self, dir_path: &str, name: &str) -> u64 {
        self.intern(
            NodeKey::Pending(dir_path.to_string(), name.to_string()),
            Node::Pending {
                dir_path: dir_path.to_string(),
                name: name.to_string(),
            },
        )
    }

    /// Rewrites nodes in place (after a move or rename on the server), so that inodes the
    /// kernel already holds follow the message or mailbox to its new name.
    pub fn rewrite(&mut self, mut change: impl FnMut(&mut Node) -> bool) {
        let mut changed = std::collections::HashSet::new();
        for (ino, node) in self.nodes.iter_mut() {
            if change(node) {
                changed.insert(*ino);
            }
        }
        if changed.is_empty() {
            return;
        }
        let by_key = std::mem::take(&mut self.by_key);
        for (key, ino) in by_key {
            let key = if changed.contains(&ino) {
                match (key, &self.nodes[&ino]) {
                    (NodeKey::File(_, dir, name), Node::File { message, .. }) => {
                        NodeKey::File(message.clone(), dir, name)
                    }
                    (_, node) => node.key(),
                }
            } else {
                key
            };
            self.by_key.insert(key, ino);
        }
    }

    /// The node behind an inode.
    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    /// Records the exact size of a file once its content is known.
    pub fn set_known_size(&mut self, ino: u64, size: u64) {
        if let Some(Node::File { known_size, .. }) = self.nodes.get_mut(&ino) {
            *known_size = Some(size);
        }
    }
}
