//! Getting file content: raw byte ranges in chunks through the [`ContentCache`], whole
//! sections for decoding, each fetched once even when several threads ask at the same time,
//! and rendered files (decoded, converted) memoised in front of the cache.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::errors::FsResult;
use super::inodes::MessageRef;
use crate::cache::memory::ByteLru;
use crate::cache::{ContentCache, ContentKey};
use crate::mime::{self, Content};
use crate::store::{ByteRange, MailStore, MailboxId, Section, StoreError, Transfer, UidValidity};

/// Raw content is fetched and cached in aligned chunks of this size
/// (`BODY.PEEK[s]<offset.len>`).
pub const RAW_CHUNK: u64 = 1 << 20;
/// Whole sections are fetched in ranges of this size (several chunks per request), so no
/// single answer is huge.
pub const SECTION_CHUNK: u64 = 4 << 20;

/// A rendered file: which message part, shown how.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RenderKey {
    message: MessageRef,
    section: Section,
    content: Content,
}

/// Which fetch a caller is waiting for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Gate {
    Raw(ContentKey),
    Rendered(RenderKey),
}

/// Fetches content through the cache, one fetch per key at a time.
pub struct ContentFetcher {
    store: Arc<dyn MailStore>,
    cache: Arc<dyn ContentCache>,
    rendered: ByteLru<RenderKey>,
    inflight: Mutex<HashMap<Gate, Arc<Mutex<()>>>>,
}

fn key(message: &MessageRef, section: &Section, offset: u64) -> ContentKey {
    ContentKey {
        mailbox: message.mailbox.clone(),
        validity: message.validity,
        uid: message.uid,
        section: section.clone(),
        offset,
    }
}

impl ContentFetcher {
    /// A fetcher over `store` and `cache`, with a memo of at most `memo_bytes` of rendered
    /// files.
    pub fn new(store: Arc<dyn MailStore>, cache: Arc<dyn ContentCache>, memo_bytes: u64) -> Self {
        ContentFetcher {
            store,
            cache,
            rendered: ByteLru::new(memo_bytes),
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// Drops content of `mailbox` under any UIDVALIDITY other than `keep`.
    pub fn retain_validity(&self, mailbox: &MailboxId, keep: UidValidity) {
        self.cache.retain_validity(mailbox, keep);
        self.rendered
            .remove_where(|k| &k.message.mailbox == mailbox && k.message.validity != keep);
    }

    /// Runs `load` while other callers for the same `gate` wait, unless `cached` finds the
    /// value first (so concurrent kernel reads do not fetch the same bytes twice).
    fn once<T>(
        &self,
        gate: Gate,
        cached: impl Fn() -> Option<T>,
        load: impl FnOnce() -> FsResult<T>,
    ) -> FsResult<T> {
        if let Some(v) = cached() {
            return Ok(v);
        }
        let lock = Arc::clone(self.inflight.lock().entry(gate.clone()).or_default());
        let result = {
            let _held = lock.lock();
            match cached() {
                Some(v) => Ok(v),
                None => load(),
            }
        };
        let mut inflight = self.inflight.lock();
        if Arc::strong_count(&lock) <= 2 {
            inflight.remove(&gate);
        }
        result
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
        let mut out = Vec::with_capacity(size.min(RAW_CHUNK) as usize);
        let mut pos = offset;
        let end = offset.saturating_add(size);
        while pos < end {
            let chunk_start = pos - pos % RAW_CHUNK;
            let chunk = self.raw_chunk(message, section, chunk_start, expected_len)?;
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

    /// One aligned raw chunk, from the cache or the server.
    fn raw_chunk(
        &self,
        message: &MessageRef,
        section: &Section,
        start: u64,
        expected_len: Option<u64>,
    ) -> FsResult<Arc<Vec<u8>>> {
        let k = key(message, section, start);
        self.once(
            Gate::Raw(k.clone()),
            || self.cache.get(&k),
            || {
                let data = self.store.fetch_section(
                    &message.mailbox,
                    message.validity,
                    message.uid,
                    section,
                    Transfer::Encoded,
                    Some(ByteRange {
                        offset: start,
                        len: RAW_CHUNK,
                    }),
                )?;
                check_length(start, data.len() as u64, RAW_CHUNK, expected_len)?;
                let data = Arc::new(data);
                self.cache.insert(k.clone(), Arc::clone(&data));
                Ok(data)
            },
        )
    }

    /// Whether the first raw chunk of a section is cached.
    pub fn has_first_chunk(&self, message: &MessageRef, section: &Section) -> bool {
        self.cache.contains(&key(message, section, 0))
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
            Transfer::Encoded,
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
                self.cache.insert(key(message, section, 0), Arc::new(data));
            }
        }
        Ok(())
    }

    /// The size of a rendered file, if it was rendered and is still held.
    pub fn rendered_len(
        &self,
        message: &MessageRef,
        section: &Section,
        content: &Content,
    ) -> Option<u64> {
        let k = RenderKey {
            message: message.clone(),
            section: section.clone(),
            content: content.clone(),
        };
        self.rendered.get(&k).map(|v| v.len() as u64)
    }

    /// The complete rendered content of a file (decoded, converted), fetched once.
    pub fn rendered(
        &self,
        message: &MessageRef,
        section: &Section,
        content: &Content,
    ) -> FsResult<Arc<Vec<u8>>> {
        let k = RenderKey {
            message: message.clone(),
            section: section.clone(),
            content: content.clone(),
        };
        self.once(
            Gate::Rendered(k.clone()),
            || self.rendered.get(&k),
            || {
                let raw = self.whole_section(message, section)?;
                let data = Arc::new(mime::render(content, &raw));
                self.rendered.insert(k.clone(), Arc::clone(&data));
                Ok(data)
            },
        )
    }

    /// A whole section's raw bytes: cached chunks where held, the rest fetched in ranges of
    /// `SECTION_CHUNK` and kept in the cache chunk by chunk.
    fn whole_section(&self, message: &MessageRef, section: &Section) -> FsResult<Vec<u8>> {
        let mut raw = Vec::new();
        loop {
            let offset = raw.len() as u64;
            if let Some(chunk) = self.cache.get(&key(message, section, offset)) {
                raw.extend_from_slice(&chunk);
                if (chunk.len() as u64) < RAW_CHUNK {
                    return Ok(raw);
                }
                continue;
            }
            let part = self.store.fetch_section(
                &message.mailbox,
                message.validity,
                message.uid,
                section,
                Transfer::Encoded,
                Some(ByteRange {
                    offset,
                    len: SECTION_CHUNK,
                }),
            )?;
            let done = (part.len() as u64) < SECTION_CHUNK;
            for (i, chunk) in part.chunks(RAW_CHUNK as usize).enumerate() {
                let at = offset + i as u64 * RAW_CHUNK;
                self.cache
                    .insert(key(message, section, at), Arc::new(chunk.to_vec()));
            }
            if done && (part.len() as u64).is_multiple_of(RAW_CHUNK) {
                // The section ends on a chunk boundary: remember the empty chunk after it,
                // so a later read from the cache knows where the end is.
                let at = offset + part.len() as u64;
                self.cache
                    .insert(key(message, section, at), Arc::new(Vec::new()));
            }
            raw.extend_from_slice(&part);
            if done {
                return Ok(raw);
            }
        }
    }
}

/// A chunk of `got` bytes at `start` (of at most `asked`) must fit the size the kernel was
/// told, and be short only where the content ends.
fn check_length(start: u64, got: u64, asked: u64, expected_len: Option<u64>) -> FsResult<()> {
    let Some(want) = expected_len else {
        return Ok(());
    };
    let end = start + got;
    if end > want || (got < asked && end < want) {
        let said = if end > want {
            format!("more than {want}")
        } else {
            end.to_string()
        };
        return Err(StoreError::Protocol(format!(
            "the server sent {said} bytes of a message it said has {want}"
        ))
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_lengths_must_match_the_announced_size() {
        assert!(check_length(0, 100, 1000, Some(100)).is_ok());
        assert!(check_length(0, 1000, 1000, Some(5000)).is_ok());
        assert!(check_length(0, 99, 1000, Some(100)).is_err(), "short");
        assert!(check_length(0, 101, 1000, Some(100)).is_err(), "long");
        assert!(
            check_length(1000, 0, 1000, Some(1000)).is_ok(),
            "at the end"
        );
        assert!(check_length(0, 3, 1000, None).is_ok());
    }
}
