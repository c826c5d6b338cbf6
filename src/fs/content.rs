//! Getting file content: raw byte ranges in chunks, whole sections for decoding, each
//! fetched once even when several threads ask at the same time, and kept in the part cache.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::errors::FsResult;
use super::inodes::MessageRef;
use crate::cache::{CacheKey, Form, PartCache};
use crate::mime::{self, Content};
use crate::store::{ByteRange, MailStore, Section, StoreError};

/// Raw reads are fetched in aligned chunks of this size (`BODY.PEEK[s]<offset.len>`).
pub const RAW_CHUNK: u64 = 1 << 20;
/// Whole sections are fetched in ranges of this size, so no single answer is huge.
pub const SECTION_CHUNK: u64 = 4 << 20;

/// Fetches content through the cache, one fetch per key at a time.
pub struct ContentFetcher {
    store: Arc<dyn MailStore>,
    cache: PartCache,
    inflight: Mutex<HashMap<CacheKey, Arc<Mutex<()>>>>,
}

impl ContentFetcher {
    /// A fetcher over `store` with a cache of `cache_bytes`.
    pub fn new(store: Arc<dyn MailStore>, cache_bytes: u64) -> Self {
        ContentFetcher {
            store,
            cache: PartCache::new(cache_bytes),
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// The cache, for dropping a mailbox's content when its UIDVALIDITY changes.
    pub fn cache(&self) -> &PartCache {
        &self.cache
    }

    /// Returns the cached value for `key`, or computes it with `load` while other callers
    /// for the same key wait (so concurrent kernel reads do not fetch the same bytes twice).
    fn get_or_load(
        &self,
        key: CacheKey,
        load: impl FnOnce() -> FsResult<Vec<u8>>,
    ) -> FsResult<Arc<Vec<u8>>> {
        if let Some(v) = self.cache.get(&key) {
            return Ok(v);
        }
        let gate = Arc::clone(self.inflight.lock().entry(key.clone()).or_default());
        let result = {
            let _held = gate.lock();
            match self.cache.get(&key) {
                Some(v) => Ok(v),
                None => load().map(|v| {
                    let v = Arc::new(v);
                    self.cache.insert(key.clone(), Arc::clone(&v));
                    v
                }),
            }
        };
        let mut inflight = self.inflight.lock();
        if Arc::strong_count(&gate) <= 2 {
            inflight.remove(&key);
        }
        result
    }

    fn key(message: &MessageRef, section: &Section, form: Form) -> CacheKey {
        CacheKey {
            mailbox: message.mailbox.clone(),
            validity: message.validity,
            uid: message.uid,
            section: section.clone(),
            form,
        }
    }

    /// Bytes `[offset, offset+size)` of a section's raw content, fetched chunk by chunk.
    /// Returns fewer bytes only at the end of the section. With `expected_len` (the size the
    /// kernel was told), a server that sends less is an error, never a short file: the
    /// kernel would pad the gap with zeroes.
    pub fn read_raw(
        &self,
        message: &MessageRef,
        section: &Section,
        offset: u64,
        size: u64,
        expected_len: Option<u64>,
    ) -> FsResult<Vec<u8>> {
        let mut out = Vec::with_capacity(size as usize);
        let mut pos = offset;
        let end = offset.saturating_add(size);
        while pos < end {
            let chunk_start = pos - pos % RAW_CHUNK;
            let chunk = self.get_or_load(
                Self::key(message, section, Form::RawChunk(chunk_start)),
                || {
                    let data = self.store.fetch_section(
                        &message.mailbox,
                        message.validity,
                        message.uid,
                        section,
                        Some(ByteRange {
                            offset: chunk_start,
                            len: RAW_CHUNK,
                        }),
                    )?;
                    let end = chunk_start + data.len() as u64;
                    match expected_len {
                        Some(want)
                            if end > want || ((data.len() as u64) < RAW_CHUNK && end < want) =>
                        {
                            Err(StoreError::Protocol(format!(
                                "the server sent {} bytes of a message it said has {want}",
                                if end > want {
                                    format!("more than {want}")
                                } else {
                                    end.to_string()
                                }
                            ))
                            .into())
                        }
                        _ => Ok(data),
                    }
                },
            )?;
            let from = (pos - chunk_start) as usize;
            if from >= chunk.len() {
                break;
            }
            let to = ((end - chunk_start) as usize).min(chunk.len());
            out.extend_from_slice(&chunk[from..to]);
            pos = chunk_start + to as u64;
            if (chunk.len() as u64) < RAW_CHUNK {
                break;
            }
        }
        Ok(out)
    }

    /// Whether the first raw chunk of a section is cached.
    pub fn has_first_chunk(&self, message: &MessageRef, section: &Section) -> bool {
        self.cache
            .get(&Self::key(message, section, Form::RawChunk(0)))
            .is_some()
    }

    /// Fetches the first raw chunk of `section` of several messages of one mailbox in one
    /// request and caches each that came back complete (its length equal to the size given).
    pub fn prefetch_first_chunks(
        &self,
        wanted: &[(MessageRef, u64)],
        section: &Section,
    ) -> FsResult<()> {
        let Some((first, _)) = wanted.first() else {
            return Ok(());
        };
        let uids: Vec<_> = wanted.iter().map(|(m, _)| m.uid).collect();
        let fetched = self.store.fetch_sections(
            &first.mailbox,
            first.validity,
            &uids,
            section,
            Some(ByteRange {
                offset: 0,
                len: RAW_CHUNK,
            }),
        )?;
        for (uid, data) in fetched {
            let Some((message, size)) = wanted.iter().find(|(m, _)| m.uid == uid) else {
                continue;
            };
            if data.len() as u64 == *size {
                self.cache.insert(
                    Self::key(message, section, Form::RawChunk(0)),
                    Arc::new(data),
                );
            }
        }
        Ok(())
    }

    /// The complete rendered content of a file (decoded, converted), fetched once.
    pub fn rendered(
        &self,
        message: &MessageRef,
        section: &Section,
        content: &Content,
    ) -> FsResult<Arc<Vec<u8>>> {
        let form = Form::Rendered(content.clone());
        self.get_or_load(Self::key(message, section, form), || {
            let raw = self.fetch_whole(message, section)?;
            Ok(mime::render(content, &raw))
        })
    }

    /// A whole section, in ranges of `SECTION_CHUNK`, not cached as raw.
    fn fetch_whole(&self, message: &MessageRef, section: &Section) -> FsResult<Vec<u8>> {
        let mut raw = Vec::new();
        loop {
            let part = self.store.fetch_section(
                &message.mailbox,
                message.validity,
                message.uid,
                section,
                Some(ByteRange {
                    offset: raw.len() as u64,
                    len: SECTION_CHUNK,
                }),
            )?;
            let done = (part.len() as u64) < SECTION_CHUNK;
            raw.extend_from_slice(&part);
            if done {
                return Ok(raw);
            }
        }
    }
}
