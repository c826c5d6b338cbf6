//! Memory in front of disk: a [`ContentCache`] that answers from the memory LRU, then from
//! the disk cache (keeping what it found in memory), and keeps what is inserted in both.

use std::sync::Arc;

use super::disk::DiskCache;
use super::memory::MemoryCache;
use super::{ContentCache, ContentKey};
use crate::store::{MailboxId, UidValidity};

/// The memory cache backed by the disk cache.
pub struct TieredCache {
    memory: MemoryCache,
    disk: Arc<DiskCache>,
}

impl TieredCache {
    pub fn new(memory: MemoryCache, disk: Arc<DiskCache>) -> Self {
        TieredCache { memory, disk }
    }
}

impl ContentCache for TieredCache {
    fn get(&self, key: &ContentKey) -> Option<Arc<Vec<u8>>> {
        if let Some(bytes) = self.memory.get(key) {
            return Some(bytes);
        }
        let bytes = self.disk.get(key)?;
        self.memory.insert(key.clone(), Arc::clone(&bytes));
        Some(bytes)
    }

    fn contains(&self, key: &ContentKey) -> bool {
        self.memory.contains(key) || self.disk.contains(key)
    }

    fn insert(&self, key: ContentKey, bytes: Arc<Vec<u8>>) {
        self.disk.insert(key.clone(), Arc::clone(&bytes));
        self.memory.insert(key, bytes);
    }

    fn retain_validity(&self, mailbox: &MailboxId, keep: UidValidity) {
        self.memory.retain_validity(mailbox, keep);
        self.disk.retain_validity(mailbox, keep);
    }

    /// Memory held (the disk cache is bounded on its own).
    fn used_bytes(&self) -> u64 {
        self.memory.used_bytes()
    }
}
