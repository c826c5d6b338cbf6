//! A byte-bounded LRU cache of fetched and rendered message content.
//!
//! Content is keyed by (mailbox, UIDVALIDITY, UID, section, form): for a given UIDVALIDITY
//! and UID the server's bytes never change (RFC 3501 §2.3.1.1), so entries never go stale;
//! they only leave by eviction or when a mailbox's UIDVALIDITY changes.

use std::hash::Hash;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use crate::mime::Content;
use crate::store::{MailboxName, Section, Uid, UidValidity};

/// Which bytes of a section an entry holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Form {
    /// Raw bytes of the section starting at this offset (one fetched chunk).
    RawChunk(u64),
    /// The complete file as shown to the user (decoded, converted).
    Rendered(Content),
}

/// The key of one cached piece of content.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub mailbox: MailboxName,
    pub validity: UidValidity,
    pub uid: Uid,
    pub section: Section,
    pub form: Form,
}

struct Inner {
    entries: LruCache<CacheKey, Arc<Vec<u8>>>,
    used: u64,
}

/// The cache itself; shared by every FUSE thread.
pub struct PartCache {
    inner: Mutex<Inner>,
    capacity: u64,
}

impl PartCache {
    /// A cache holding at most `capacity` bytes of content.
    pub fn new(capacity: u64) -> Self {
        PartCache {
            inner: Mutex::new(Inner {
                entries: LruCache::unbounded(),
                used: 0,
            }),
            capacity,
        }
    }

    /// The content under `key`, marking it recently used.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<Vec<u8>>> {
        self.inner.lock().entries.get(key).cloned()
    }

    /// Stores `value`, evicting the least recently used entries to stay within capacity.
    /// A value larger than the whole cache is not stored.
    pub fn insert(&self, key: CacheKey, value: Arc<Vec<u8>>) {
        let size = value.len() as u64;
        if size > self.capacity {
            return;
        }
        let mut inner = self.inner.lock();
        if let Some(old) = inner.entries.put(key, value) {
            inner.used -= old.len() as u64;
        }
        inner.used += size;
        while inner.used > self.capacity {
            match inner.entries.pop_lru() {
                Some((_, evicted)) => inner.used -= evicted.len() as u64,
                None => break,
            }
        }
    }

    /// Drops everything cached for `mailbox` under any UIDVALIDITY other than `keep`.
    pub fn retain_validity(&self, mailbox: &MailboxName, keep: UidValidity) {
        let mut inner = self.inner.lock();
        let stale: Vec<CacheKey> = inner
            .entries
            .iter()
            .filter(|(k, _)| &k.mailbox == mailbox && k.validity != keep)
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            if let Some(v) = inner.entries.pop(&key) {
                inner.used -= v.len() as u64;
            }
        }
    }

    /// Bytes currently held.
    pub fn used(&self) -> u64 {
        self.inner.lock().used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(uid: u32, validity: u32) -> CacheKey {
        CacheKey {
            mailbox: MailboxName("INBOX".into()),
            validity: UidValidity(validity),
            uid: Uid(uid),
            section: Section(vec![1]),
            form: Form::RawChunk(0),
        }
    }

    #[test]
    fn stays_within_its_byte_bound() {
        let cache = PartCache::new(1000);
        for uid in 0..10 {
            cache.insert(key(uid, 1), Arc::new(vec![0; 300]));
            assert!(cache.used() <= 1000);
        }
        assert!(cache.get(&key(9, 1)).is_some());
        assert!(cache.get(&key(0, 1)).is_none());
        assert_eq!(cache.used(), 900);
    }

    #[test]
    fn too_large_values_are_not_stored() {
        let cache = PartCache::new(100);
        cache.insert(key(1, 1), Arc::new(vec![0; 101]));
        assert!(cache.get(&key(1, 1)).is_none());
        assert_eq!(cache.used(), 0);
    }

    #[test]
    fn replacing_a_key_does_not_leak_accounting() {
        let cache = PartCache::new(1000);
        cache.insert(key(1, 1), Arc::new(vec![0; 300]));
        cache.insert(key(1, 1), Arc::new(vec![0; 200]));
        assert_eq!(cache.used(), 200);
    }

    #[test]
    fn validity_change_drops_old_content_only() {
        let cache = PartCache::new(1000);
        cache.insert(key(1, 1), Arc::new(vec![1; 10]));
        cache.insert(key(1, 2), Arc::new(vec![2; 10]));
        cache.retain_validity(&MailboxName("INBOX".into()), UidValidity(2));
        assert!(cache.get(&key(1, 1)).is_none());
        assert_eq!(cache.get(&key(1, 2)).unwrap()[0], 2);
        assert_eq!(cache.used(), 10);
    }
}
