//! Content caches. [`ContentCache`] holds section bytes as the server sent them, keyed
//! by (mailbox, UIDVALIDITY, UID, section, transfer form, offset); `memory.rs` implements it in memory, and
//! a disk cache is the other implementation to come. What the core renders from those bytes
//! (decoded, converted) is memoised in front of it with the same LRU.
//!
//! For a given UIDVALIDITY and UID the server's bytes never change (RFC 3501 §2.3.1.1), so
//! entries never go stale; they leave by eviction, or when a mailbox's UIDVALIDITY changes.

pub mod dir;
pub mod disk;
pub mod memory;
pub mod tiered;

use std::sync::Arc;

use crate::store::{MailboxId, Section, Transfer, Uid, UidValidity};

/// The key of one cached piece of content as the server sent it: bytes of `section`, in
/// `transfer` form (as stored, or decoded by the server), from `offset` on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContentKey {
    pub mailbox: MailboxId,
    pub validity: UidValidity,
    pub uid: Uid,
    pub section: Section,
    pub transfer: Transfer,
    pub offset: u64,
}

/// A cache of raw section bytes, shared by every FUSE thread.
pub trait ContentCache: Send + Sync {
    /// The bytes under `key`, marking them recently used.
    fn get(&self, key: &ContentKey) -> Option<Arc<Vec<u8>>>;

    /// Whether `key` is cached, without marking it used.
    fn contains(&self, key: &ContentKey) -> bool;

    /// Keeps `bytes` under `key` (or not, if they do not fit).
    fn insert(&self, key: ContentKey, bytes: Arc<Vec<u8>>);

    /// Drops everything of `mailbox` under any UIDVALIDITY other than `keep`.
    fn retain_validity(&self, mailbox: &MailboxId, keep: UidValidity);

    /// Bytes held.
    fn used_bytes(&self) -> u64;
}
