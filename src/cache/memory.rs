//! A byte-bounded LRU in memory: the in-memory [`ContentCache`], and the memo of rendered
//! files in front of it.

use std::hash::Hash;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use super::{ContentCache, ContentKey};
use crate::store::{MailboxId, UidValidity};

struct Inner<K: Hash + Eq> {
    entries: LruCache<K, Arc<Vec<u8>>>,
    used: u64,
}

/// Values of at most `capacity` bytes in all, least recently used out first.
pub struct ByteLru<K: Hash + Eq> {
    inner: Mutex<Inner<K>>,
    capacity: u64,
}

impl<K: Hash + Eq + Clone> ByteLru<K> {
    /// An empty cache that holds at most `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        ByteLru {
            inner: Mutex::new(Inner {
                entries: LruCache::unbounded(),
                used: 0,
            }),
            capacity,
        }
    }

    /// The value under `key`, marking it recently used.
    pub fn get(&self, key: &K) -> Option<Arc<Vec<u8>>> {
        self.inner.lock().entries.get(key).cloned()
    }

    /// Whether `key` is held, without marking it used.
    pub fn contains(&self, key: &K) -> bool {
        self.inner.lock().entries.contains(key)
    }

    /// Stores `value`, evicting the least recently used entries to stay within capacity.
    /// A value larger than the whole cache is not stored.
    pub fn insert(&self, key: K, value: Arc<Vec<u8>>) {
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

    /// Drops every entry whose key `drop` selects.
    pub fn remove_where(&self, drop: impl Fn(&K) -> bool) {
        let mut inner = self.inner.lock();
        let doomed: Vec<K> = inner
            .entries
            .iter()
            .filter(|(k, _)| drop(k))
            .map(|(k, _)| k.clone())
            .collect();
        for key in doomed {
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

/// The in-memory content cache.
pub type MemoryCache = ByteLru<ContentKey>;

impl ContentCache for MemoryCache {
    fn get(&self, key: &ContentKey) -> Option<Arc<Vec<u8>>> {
        ByteLru::get(self, key)
    }

    fn contains(&self, key: &ContentKey) -> bool {
        ByteLru::contains(self, key)
    }

    fn insert(&self, key: ContentKey, bytes: Arc<Vec<u8>>) {
        ByteLru::insert(self, key, bytes);
    }

    fn retain_validity(&self, mailbox: &MailboxId, keep: UidValidity) {
        self.remove_where(|k| &k.mailbox == mailbox && k.validity != keep);
    }

    fn used_bytes(&self) -> u64 {
        self.used()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Section, Transfer, Uid};

    fn key(uid: u32, validity: u32) -> ContentKey {
        ContentKey {
            mailbox: MailboxId::new("INBOX"),
            validity: UidValidity(validity),
            uid: Uid(uid),
            section: Section(vec![1]),
            transfer: Transfer::Encoded,
            offset: 0,
        }
    }

    #[test]
    fn stays_within_its_byte_bound() {
        let cache = MemoryCache::new(1000);
        for uid in 0..10 {
            ContentCache::insert(&cache, key(uid, 1), Arc::new(vec![0; 300]));
            assert!(cache.used_bytes() <= 1000);
        }
        assert!(ContentCache::get(&cache, &key(9, 1)).is_some());
        assert!(ContentCache::get(&cache, &key(0, 1)).is_none());
        assert_eq!(cache.used_bytes(), 900);
    }

    #[test]
    fn too_large_values_are_not_stored() {
        let cache = MemoryCache::new(100);
        ContentCache::insert(&cache, key(1, 1), Arc::new(vec![0; 101]));
        assert!(!ContentCache::contains(&cache, &key(1, 1)));
        assert_eq!(cache.used_bytes(), 0);
    }

    #[test]
    fn replacing_a_key_does_not_leak_accounting() {
        let cache = MemoryCache::new(1000);
        ContentCache::insert(&cache, key(1, 1), Arc::new(vec![0; 300]));
        ContentCache::insert(&cache, key(1, 1), Arc::new(vec![0; 200]));
        assert_eq!(cache.used_bytes(), 200);
    }

    #[test]
    fn validity_change_drops_old_content_only() {
        let cache = MemoryCache::new(1000);
        ContentCache::insert(&cache, key(1, 1), Arc::new(vec![1; 10]));
        ContentCache::insert(&cache, key(1, 2), Arc::new(vec![2; 10]));
        cache.retain_validity(&MailboxId::new("INBOX"), UidValidity(2));
        assert!(ContentCache::get(&cache, &key(1, 1)).is_none());
        assert_eq!(ContentCache::get(&cache, &key(1, 2)).unwrap()[0], 2);
        assert_eq!(cache.used_bytes(), 10);
    }
}
