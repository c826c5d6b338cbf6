//! Getting file content: byte ranges of sections through the [`ContentCache`] in aligned
//! chunks, fetched in runs that grow while a file is read in order (so `head -c 4096` of a
//! 10 MB attachment moves kilobytes, and `cat` of it a few large requests), each fetched once
//! even when several threads ask at the same time; and rendered files (decoded, converted)
//! memoised in front of the cache.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use super::errors::FsResult;
use super::inodes::MessageRef;
use crate::cache::memory::ByteLru;
use crate::cache::{ContentCache, ContentKey};
use crate::call;
use crate::mime::dovecot::ParsedMessage;
use crate::mime::{self, Base64Lines, Content};
use crate::store::{
    ByteRange, MailStore, MailboxId, MessageStructure, PartItem, PartValue, Section, StoreError,
    StoreResult, Transfer, TransferEncoding, Uid, UidValidity,
};

/// Content is cached in aligned chunks of this size (a first read of a few kilobytes moves
/// little more than that).
pub const CHUNK: u64 = 16 << 10;
/// The most chunks one request fetches (4 MiB) once a file is read in order.
const MAX_RUN: u64 = 256;
/// Whole messages of at most this size are read ahead in walks (`reads.rs`).
pub const SMALL_MESSAGE: u64 = 1 << 20;
/// The largest message whose parts are taken out of it when it is held whole (it is read
/// into memory for that; a larger one's parts are fetched by themselves).
const HELD_WHOLE_MAX: u64 = 64 << 20;
/// How many structures made from messages held whole are remembered (and as many messages
/// that are not taken apart).
const STRUCTURES_MADE_KEPT: usize = 4096;
/// How many sections' read positions are remembered for growing runs.
const RUNS_KEPT: usize = 1024;

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
    Chunk(ContentKey),
    Rendered(RenderKey),
    /// A section being taken out of its message held whole.
    Held(MessageRef, Section, Transfer),
}

/// Where a section was last read up to, and how many chunks that request fetched.
#[derive(Debug, Clone, Copy)]
struct Run {
    end: u64,
    chunks: u64,
}

/// One section in one form, whose exact length is known.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub message: &'a MessageRef,
    pub section: &'a Section,
    pub transfer: Transfer,
    /// The exact length the kernel was told: a server that sends more or less is an error.
    pub len: u64,
    /// Decoded here rather than by the server (no BINARY): the base64 part's line layout,
    /// which maps each decoded range to the stored bytes that hold it.
    pub decode: Option<Base64Lines>,
}

/// A message held whole in the cache, parsed.
struct Held {
    raw: Vec<u8>,
    parsed: ParsedMessage,
}

impl Held {
    /// `BODY[section]` of the message as stored, and the part's transfer encoding; not the
    /// whole message.
    fn stored(&self, section: &Section) -> Option<(&[u8], TransferEncoding)> {
        if section.is_whole() {
            return None;
        }
        let (range, encoding) = self.parsed.section(section)?;
        Some((self.raw.get(range)?, encoding))
    }

    /// `BODY[section]` (or `BINARY[section]`) of the message; not the whole message.
    fn section(&self, section: &Section, transfer: Transfer) -> Option<Vec<u8>> {
        let (stored, encoding) = self.stored(section)?;
        Some(match transfer {
            Transfer::Encoded => stored.to_vec(),
            Transfer::Decoded => mime::decode_transfer(&encoding, stored),
        })
    }

    /// The answer to one item of `fetch_parts`.
    fn answer(&self, item: &PartItem) -> Option<PartValue> {
        let (stored, encoding) = self.stored(item.section())?;
        Some(item.answer_from_stored(stored, &encoding))
    }
}

/// Chunk keys claimed in the in-flight table, released when dropped: also when the fetch
/// panics, since a key left behind would have every later reader of it find a gate nobody
/// holds and look again, forever.
struct Claim<'a> {
    fetcher: &'a ContentFetcher,
    keys: Vec<ContentKey>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.fetcher.release(std::mem::take(&mut self.keys));
    }
}

/// Fetches content through the cache, one fetch per key at a time.
pub struct ContentFetcher {
    store: Arc<dyn MailStore>,
    cache: Arc<dyn ContentCache>,
    rendered: ByteLru<RenderKey>,
    inflight: Mutex<HashMap<Gate, Arc<Mutex<()>>>>,
    runs: Mutex<LruCache<(MessageRef, Section, Transfer), Run>>,
    /// Structures made from messages held whole (`structure_from_held`).
    made: Mutex<LruCache<MessageRef, MessageStructure>>,
    /// Messages held whole that parse to another structure than the server's: their parts
    /// are fetched by themselves.
    not_taken_apart: Mutex<LruCache<MessageRef, ()>>,
    /// Messages moved or copied by this mount, to the message they were made from: the
    /// same bytes, so what the cache holds of that one is theirs (offline, a message
    /// moved under a provisional UID reads from it; online, nothing is fetched again).
    same_bytes: Mutex<LruCache<MessageRef, MessageRef>>,
}

/// How many moved or copied messages are remembered (`ContentFetcher::same_bytes`).
const SAME_BYTES_KEPT: usize = 4096;

fn key(message: &MessageRef, section: &Section, transfer: Transfer, offset: u64) -> ContentKey {
    ContentKey {
        mailbox: message.mailbox.clone(),
        validity: message.validity,
        uid: message.uid,
        section: section.clone(),
        transfer,
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
            runs: Mutex::new(LruCache::new(
                NonZeroUsize::new(RUNS_KEPT).expect("nonzero"),
            )),
            made: Mutex::new(LruCache::new(
                NonZeroUsize::new(STRUCTURES_MADE_KEPT).expect("nonzero"),
            )),
            not_taken_apart: Mutex::new(LruCache::new(
                NonZeroUsize::new(STRUCTURES_MADE_KEPT).expect("nonzero"),
            )),
            same_bytes: Mutex::new(LruCache::new(
                NonZeroUsize::new(SAME_BYTES_KEPT).expect("nonzero"),
            )),
        }
    }

    /// `new` holds the bytes of `old` (moved or copied there by this mount).
    pub fn same_bytes(&self, old: &MessageRef, new: &MessageRef) {
        if old != new {
            self.same_bytes.lock().put(new.clone(), old.clone());
        }
    }

    /// Keeps a chunk in the cache. Not one of a message shown under a provisional UID
    /// (moved or written offline): such a UID names another message once the journal of
    /// offline changes starts over.
    fn keep(&self, k: ContentKey, chunk: Arc<Vec<u8>>) {
        if !crate::store::cached::journal::is_provisional_uid(k.uid) {
            self.cache.insert(k, chunk);
        }
    }

    /// The same key of the messages `k`'s was moved or copied from, nearest first (a few
    /// moves back at most).
    fn originals(&self, k: &ContentKey) -> Vec<ContentKey> {
        let mut message = MessageRef {
            mailbox: k.mailbox.clone(),
            validity: k.validity,
            uid: k.uid,
        };
        let mut out = Vec::new();
        let mut same_bytes = self.same_bytes.lock();
        while out.len() < 4 {
            let Some(from) = same_bytes.get(&message) else {
                break;
            };
            message = from.clone();
            out.push(key(&message, &k.section, k.transfer, k.offset));
        }
        out
    }

    /// What the cache holds under `k`, or under the same key of a message `k`'s was moved
    /// or copied from (`originals`), then kept under `k` too (so that what is read of it
    /// stays, in the disk cache for later mounts, for search and prefetch).
    fn cached(&self, k: &ContentKey) -> Option<Arc<Vec<u8>>> {
        if let Some(chunk) = self.cache.get(k) {
            return Some(chunk);
        }
        let chunk = self
            .originals(k)
            .iter()
            .find_map(|old| self.cache.get(old))?;
        self.keep(k.clone(), Arc::clone(&chunk));
        Some(chunk)
    }

    /// Whether `cached` would find `k`.
    fn holds(&self, k: &ContentKey) -> bool {
        self.cache.contains(k) || self.originals(k).iter().any(|old| self.cache.contains(old))
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
        let result = match call::lock_within(&lock) {
            Ok(_held) => match cached() {
                Some(v) => Ok(v),
                None => load(),
            },
            Err(e) => Err(e.into()),
        };
        let mut inflight = self.inflight.lock();
        if Arc::strong_count(&lock) <= 2 {
            inflight.remove(&gate);
        }
        result
    }

    /// Bytes `[offset, offset+size)` of `source`, fewer only at its end.
    pub fn read(&self, source: Source<'_>, offset: u64, size: u64) -> FsResult<Vec<u8>> {
        let end = offset.saturating_add(size).min(source.len);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut pos = offset;
        while pos < end {
            let start = pos - pos % CHUNK;
            let chunk = self.chunk(source, start, end)?;
            let from = (pos - start) as usize;
            let to = ((end - start) as usize).min(chunk.len());
            if from >= to {
                break;
            }
            out.extend_from_slice(&chunk[from..to]);
            pos = start + to as u64;
        }
        Ok(out)
    }

    /// The chunk at `start` (aligned), from the cache, or fetched with the chunks after it
    /// in one request: as many as the read wants up to `want_end` for a first or random read,
    /// twice as many as last time (up to `MAX_RUN`) when the section is being read in order.
    /// A run stops before any chunk that is cached or already on its way, and a reader of a
    /// chunk on its way waits for it, so nothing is fetched twice.
    fn chunk(&self, source: Source<'_>, start: u64, want_end: u64) -> FsResult<Arc<Vec<u8>>> {
        let k = key(source.message, source.section, source.transfer, start);
        loop {
            if let Some(chunk) = self.cached(&k) {
                return Ok(chunk);
            }
            let gate = {
                let mut inflight = self.inflight.lock();
                // A fetch that ended since the look above put its chunks in the cache before
                // it left the in-flight table: look again under the table's lock.
                if let Some(chunk) = self.cache.get(&k) {
                    return Ok(chunk);
                }
                if let Some(gate) = inflight.get(&Gate::Chunk(k.clone())) {
                    Err(Arc::clone(gate))
                } else {
                    let wanted = want_end.saturating_sub(start).div_ceil(CHUNK).max(1);
                    let mut chunks = self.run_from(source, start, wanted);
                    // Stop before a chunk someone else fetches or the cache holds.
                    for i in 1..chunks {
                        let next = key(
                            source.message,
                            source.section,
                            source.transfer,
                            start + i * CHUNK,
                        );
                        if self.held_or_in(&inflight, &next) {
                            chunks = i;
                            break;
                        }
                    }
                    let gate = Arc::new(Mutex::new(()));
                    let keys: Vec<ContentKey> = (0..chunks)
                        .map(|i| {
                            key(
                                source.message,
                                source.section,
                                source.transfer,
                                start + i * CHUNK,
                            )
                        })
                        .collect();
                    for k in &keys {
                        inflight.insert(Gate::Chunk(k.clone()), Arc::clone(&gate));
                    }
                    Ok((gate, keys))
                }
            };
            match gate {
                Err(theirs) => {
                    // Wait for the fetch under way, then look again.
                    drop(call::lock_within(&theirs)?);
                }
                Ok((gate, keys)) => {
                    let _held = gate.lock();
                    // Released before the gate opens (dropped in reverse order).
                    let claim = Claim {
                        fetcher: self,
                        keys,
                    };
                    return match self.whole_section_here(source, start) {
                        Some(chunk) => Ok(chunk),
                        None => self.fetch_run(source, start, claim.keys.len() as u64),
                    };
                }
            }
        }
    }

    /// Fetches `chunks` chunks from `start` in one request, keeps each in the cache, and
    /// returns the first. A run that reaches the end asks for one byte more: a server whose
    /// part is longer than it said sends it, and that is an error, not a cut-off file.
    fn fetch_run(&self, source: Source<'_>, start: u64, chunks: u64) -> FsResult<Arc<Vec<u8>>> {
        let len = (chunks * CHUNK).min(source.len - start);
        let at_end = start + len == source.len;
        let data = match source.decode {
            Some(lines) => self.fetch_decoded_window(source, lines, start, len)?,
            None => self.fetch_range(source, start, len + u64::from(at_end))?,
        };
        if data.len() as u64 != len {
            return Err(StoreError::Protocol(format!(
                "the server sent {} bytes at {start} of a part it said has {}",
                data.len(),
                source.len
            ))
            .into());
        }
        let mut first = None;
        for (i, piece) in data.chunks(CHUNK as usize).enumerate() {
            let piece = Arc::new(piece.to_vec());
            let at = start + i as u64 * CHUNK;
            if i == 0 {
                first = Some(Arc::clone(&piece));
            }
            self.keep(
                key(source.message, source.section, source.transfer, at),
                piece,
            );
        }
        Ok(first.unwrap_or_default())
    }

    /// The chunk at `start` of a section taken out of its message held whole (see
    /// [`section_of_held_message`](Self::section_of_held_message)), every chunk of the section kept in
    /// the cache as a fetch would keep it; `None` when the server must be asked.
    fn whole_section_here(&self, source: Source<'_>, start: u64) -> Option<Arc<Vec<u8>>> {
        // One reader takes the section out; one reading another part of it meanwhile (the
        // kernel's read-ahead) waits for that and finds its chunk kept.
        let gate = Gate::Held(
            source.message.clone(),
            source.section.clone(),
            source.transfer,
        );
        let at_start = || {
            self.cache
                .get(&key(source.message, source.section, source.transfer, start))
                .map(Some)
        };
        self.once(gate, at_start, || Ok(self.take_out_section(source, start)))
            .ok()
            .flatten()
    }

    /// The work of [`whole_section_here`](Self::whole_section_here).
    fn take_out_section(&self, source: Source<'_>, start: u64) -> Option<Arc<Vec<u8>>> {
        let data = self.section_of_held_message(source.message, source.section, source.transfer)?;
        if data.len() as u64 != source.len {
            tracing::debug!(
                uid = source.message.uid.0,
                section = %source.section,
                len = data.len(),
                expected = source.len,
                "a part taken from the whole message has another length; asking the server"
            );
            return None;
        }
        let mut wanted = None;
        for (i, piece) in data.chunks(CHUNK as usize).enumerate() {
            let piece = Arc::new(piece.to_vec());
            let at = i as u64 * CHUNK;
            if at == start {
                wanted = Some(Arc::clone(&piece));
            }
            self.keep(
                key(source.message, source.section, source.transfer, at),
                piece,
            );
        }
        wanted
    }

    /// `section` of a message held whole (see [`held_whole`](Self::held_whole)), in
    /// `transfer` form, with no request for its bytes; `None` when the server must be asked.
    fn section_of_held_message(
        &self,
        message: &MessageRef,
        section: &Section,
        transfer: Transfer,
    ) -> Option<Vec<u8>> {
        if section.is_whole() || self.not_taken_apart.lock().contains(message) {
            return None;
        }
        let structures =
            self.whole_structures(&message.mailbox, message.validity, &[message.uid], &[]);
        let held = self.held_whole(message, structures.get(&message.uid)?)?;
        held.section(section, transfer)
    }

    /// The BODYSTRUCTUREs of those of `uids` whose whole message the cache may hold (its
    /// first chunk is there): from `known`, the rest from the store in one request.
    fn whole_structures(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uids: &[Uid],
        known: &[MessageStructure],
    ) -> HashMap<Uid, MessageStructure> {
        let whole = Section::whole();
        let message = |uid| MessageRef {
            mailbox: mailbox.clone(),
            validity,
            uid,
        };
        let mut found: HashMap<Uid, MessageStructure> = HashMap::new();
        let mut ask = Vec::new();
        for &uid in uids {
            if !self
                .cache
                .contains(&key(&message(uid), &whole, Transfer::Encoded, 0))
            {
                continue;
            }
            match known.iter().find(|s| s.uid == uid) {
                Some(s) => {
                    found.insert(uid, s.clone());
                }
                None => ask.push(uid),
            }
        }
        if !ask.is_empty() {
            match self.store.body_structures(mailbox, validity, &ask) {
                Ok(asked) => found.extend(asked.into_iter().map(|s| (s.uid, s))),
                Err(e) => {
                    tracing::debug!(error = %e, "structures of messages held whole: not known");
                    // Those made here when the server's were not at hand either.
                    let mut made = self.made.lock();
                    for uid in ask {
                        if let Some(s) = made.get(&message(uid)) {
                            found.insert(uid, s.clone());
                        }
                    }
                }
            }
        }
        found
    }

    /// A message the cache holds whole, all `structure.size` bytes of it, parsed as Dovecot
    /// parses it; only when that gives the very BODYSTRUCTURE the server reported for it, so
    /// that every section taken out of it is what the server would send.
    fn held_whole(&self, message: &MessageRef, structure: &MessageStructure) -> Option<Held> {
        let raw = self.held_bytes(message, structure.size)?;
        let parsed = ParsedMessage::parse(&raw);
        if parsed.body_structure() != structure.body {
            tracing::debug!(
                uid = message.uid.0,
                "the whole message parses to another structure than the server's; asking the server"
            );
            // Not again for every range of its parts (a server that is not Dovecot may
            // describe many messages otherwise).
            self.not_taken_apart.lock().put(message.clone(), ());
            return None;
        }
        Some(Held { raw, parsed })
    }

    /// All `size` bytes of a message the cache holds whole (at most `HELD_WHOLE_MAX`).
    fn held_bytes(&self, message: &MessageRef, size: u64) -> Option<Vec<u8>> {
        if size > HELD_WHOLE_MAX {
            return None;
        }
        let whole = Section::whole();
        let mut raw = Vec::with_capacity(usize::try_from(size).ok()?);
        while (raw.len() as u64) < size {
            let at = raw.len() as u64;
            let chunk = self
                .cache
                .get(&key(message, &whole, Transfer::Encoded, at))?;
            if chunk.is_empty() {
                return None;
            }
            raw.extend_from_slice(&chunk);
        }
        (raw.len() as u64 == size).then_some(raw)
    }

    /// The structure of a message of `size` bytes the cache holds whole, made here from its
    /// bytes as Dovecot makes it, for when the server's is not at hand (offline, and not
    /// kept): so a message read whole shows its parts offline too. Remembered for the
    /// mount's life, so that its parts are then taken out of it by the same structure.
    pub fn structure_from_held(&self, message: &MessageRef, size: u64) -> Option<MessageStructure> {
        let raw = self.held_bytes(message, size)?;
        let made = MessageStructure {
            uid: message.uid,
            size,
            body: ParsedMessage::parse(&raw).body_structure(),
        };
        self.made.lock().put(message.clone(), made.clone());
        Some(made)
    }

    /// What `MailStore::fetch_parts` answers for `asked` (messages of one mailbox). When the
    /// store cannot answer (offline, and not kept), the items of messages held whole are
    /// taken out of them here (decoding a part to learn its size costs more than the store's
    /// kept answer, so the store goes first), and the others asked again. `known`:
    /// structures the caller has (the others are asked for).
    pub fn fetch_parts(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        asked: &[(Uid, Vec<PartItem>)],
        known: &[MessageStructure],
    ) -> StoreResult<Vec<(Uid, PartItem, PartValue)>> {
        let failed = match self.store.fetch_parts(mailbox, validity, asked) {
            Ok(answers) => return Ok(answers),
            Err(e) => e,
        };
        let uids: Vec<Uid> = asked.iter().map(|(uid, _)| *uid).collect();
        let structures = self.whole_structures(mailbox, validity, &uids, known);
        let mut answers = Vec::new();
        let mut rest = Vec::new();
        for (uid, items) in asked {
            let message = MessageRef {
                mailbox: mailbox.clone(),
                validity,
                uid: *uid,
            };
            let held = structures
                .get(uid)
                .and_then(|s| self.held_whole(&message, s));
            let mut missing = Vec::new();
            for item in items {
                match held.as_ref().and_then(|h| h.answer(item)) {
                    Some(value) => answers.push((*uid, item.clone(), value)),
                    None => missing.push(item.clone()),
                }
            }
            if !missing.is_empty() {
                rest.push((*uid, missing));
            }
        }
        if answers.is_empty() {
            return Err(failed);
        }
        if !rest.is_empty() {
            answers.extend(self.store.fetch_parts(mailbox, validity, &rest)?);
        }
        Ok(answers)
    }

    /// `len` bytes of `source` from `start`, as the server sends them.
    fn fetch_range(&self, source: Source<'_>, start: u64, len: u64) -> FsResult<Vec<u8>> {
        Ok(self.store.fetch_section(
            &source.message.mailbox,
            source.message.validity,
            source.message.uid,
            source.section,
            source.transfer,
            Some(ByteRange { offset: start, len }),
        )?)
    }

    /// Decoded bytes `[start, start+len)` of a base64 part, from the stored bytes that hold
    /// them (a window a little larger than the range, never the whole part).
    fn fetch_decoded_window(
        &self,
        source: Source<'_>,
        lines: Base64Lines,
        start: u64,
        len: u64,
    ) -> FsResult<Vec<u8>> {
        let (from, to, origin) = lines.encoded_window(start, start + len);
        let stored = self.store.fetch_section(
            &source.message.mailbox,
            source.message.validity,
            source.message.uid,
            source.section,
            Transfer::Encoded,
            Some(ByteRange {
                offset: from,
                len: to - from,
            }),
        )?;
        let decoded = mime::decode_base64(&stored);
        let skip = (start - origin) as usize;
        Ok(decoded.into_iter().skip(skip).take(len as usize).collect())
    }

    /// How many chunks to fetch from `start` (at least `wanted`), remembering the read.
    fn run_from(&self, source: Source<'_>, start: u64, wanted: u64) -> u64 {
        let id = (
            source.message.clone(),
            source.section.clone(),
            source.transfer,
        );
        let mut runs = self.runs.lock();
        let grown = match runs.get(&id) {
            Some(run) if run.end == start => (run.chunks * 2).min(MAX_RUN),
            _ => 1,
        };
        let chunks = grown.max(wanted.min(MAX_RUN));
        let end = (start + chunks * CHUNK).min(source.len);
        runs.put(id, Run { end, chunks });
        chunks
    }

    /// Whether the first chunk of a section is cached.
    pub fn has_first_chunk(&self, message: &MessageRef, section: &Section) -> bool {
        self.holds(&key(message, section, Transfer::Encoded, 0))
    }

    /// The keys of a section's first and last chunks, for `size` bytes: a section whose
    /// both are cached is cached whole (its chunks are kept together).
    fn ends(
        message: &MessageRef,
        section: &Section,
        transfer: Transfer,
        size: u64,
    ) -> [ContentKey; 2] {
        let last = size.saturating_sub(1) / CHUNK * CHUNK;
        [
            key(message, section, transfer, 0),
            key(message, section, transfer, last),
        ]
    }

    /// Whether all `size` bytes of a section read as `transfer` are cached, under its own
    /// key or an original's (`holds`).
    pub fn has_section(
        &self,
        message: &MessageRef,
        section: &Section,
        transfer: Transfer,
        size: u64,
    ) -> bool {
        Self::ends(message, section, transfer, size)
            .iter()
            .all(|k| self.holds(k))
    }

    /// Whether the cache holds bytes of `source`'s section past `len`: the section is
    /// longer than `len` says (a read stops at `len` and cannot see it).
    pub fn holds_past(&self, source: &Source<'_>, len: u64) -> bool {
        let start = len - len % CHUNK;
        self.cache
            .get(&key(source.message, source.section, source.transfer, start))
            .is_some_and(|chunk| start + chunk.len() as u64 > len)
    }

    /// Whether all of a whole message of `size` bytes is cached under its own key.
    pub fn has_whole_message(&self, message: &MessageRef, size: u64) -> bool {
        Self::ends(message, &Section::whole(), Transfer::Encoded, size)
            .iter()
            .all(|k| self.cache.contains(k))
    }

    /// Fetches whole small messages (`BODY[]`, each at most `SMALL_MESSAGE` bytes) of one
    /// mailbox in one request and caches each that came back complete (its length equal to
    /// the size given).
    pub fn prefetch_messages(&self, wanted: &[(MessageRef, u64)]) -> FsResult<()> {
        self.fetch_whole(wanted, SMALL_MESSAGE).map(drop)
    }

    /// Whether the first chunk of a whole message is cached or on its way (a read of it
    /// would not send a request of its own).
    pub fn held_or_coming(&self, message: &MessageRef) -> bool {
        let first = key(message, &Section::whole(), Transfer::Encoded, 0);
        self.held_or_in(&self.inflight.lock(), &first)
    }

    /// Whether chunk `k` is cached or on its way, `inflight` being the locked table.
    fn held_or_in(&self, inflight: &HashMap<Gate, Arc<Mutex<()>>>, k: &ContentKey) -> bool {
        self.cache.contains(k) || inflight.contains_key(&Gate::Chunk(k.clone()))
    }

    /// The fetch of `keys` is over (its chunks kept, or not): their readers look again.
    fn release(&self, keys: Vec<ContentKey>) {
        let mut inflight = self.inflight.lock();
        for k in keys {
            inflight.remove(&Gate::Chunk(k));
        }
    }

    /// Fetches whole messages of one mailbox, each at most `limit` bytes, in one request,
    /// caches each that came back complete, and says how many bytes that was. Messages
    /// cached or on their way already are left out; a reader of one of the others waits
    /// for this request rather than sending its own.
    pub fn fetch_whole(&self, wanted: &[(MessageRef, u64)], limit: u64) -> FsResult<u64> {
        let whole = Section::whole();
        let chunk_keys = |message: &MessageRef, size: u64| -> Vec<ContentKey> {
            (0..size.max(1))
                .step_by(CHUNK as usize)
                .map(|at| key(message, &whole, Transfer::Encoded, at))
                .collect()
        };
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock();
        let (claimed, keys) = {
            let mut inflight = self.inflight.lock();
            let mut claimed = Vec::with_capacity(wanted.len());
            let mut keys = Vec::new();
            for (message, size) in wanted {
                if self.held_or_in(&inflight, &key(message, &whole, Transfer::Encoded, 0)) {
                    continue;
                }
                for k in chunk_keys(message, *size) {
                    inflight.insert(Gate::Chunk(k.clone()), Arc::clone(&gate));
                    keys.push(k);
                }
                claimed.push((message, *size));
            }
            (claimed, keys)
        };
        let claim = Claim {
            fetcher: self,
            keys,
        };
        let result = self.fetch_claimed(&claimed, limit);
        drop(claim);
        drop(held);
        result
    }

    /// The request of [`fetch_whole`](Self::fetch_whole), for messages it claimed.
    fn fetch_claimed(&self, claimed: &[(&MessageRef, u64)], limit: u64) -> FsResult<u64> {
        let Some((first, _)) = claimed.first() else {
            return Ok(0);
        };
        let uids: Vec<_> = claimed.iter().map(|(m, _)| m.uid).collect();
        let whole = Section::whole();
        let fetched = self.store.fetch_sections(
            &first.mailbox,
            first.validity,
            &uids,
            &whole,
            Transfer::Encoded,
            Some(ByteRange {
                offset: 0,
                len: limit,
            }),
        )?;
        let mut kept = 0;
        for (uid, data) in fetched {
            let Some((message, size)) = claimed.iter().find(|(m, _)| m.uid == uid) else {
                continue;
            };
            if data.len() as u64 != *size {
                continue;
            }
            for (i, piece) in data.chunks(CHUNK as usize).enumerate() {
                let at = i as u64 * CHUNK;
                self.keep(
                    key(message, &whole, Transfer::Encoded, at),
                    Arc::new(piece.to_vec()),
                );
            }
            kept += *size;
        }
        Ok(kept)
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

    /// Keeps a file rendered from bytes fetched elsewhere (with its message directory).
    pub fn keep_rendered(
        &self,
        message: &MessageRef,
        section: &Section,
        content: &Content,
        data: Arc<Vec<u8>>,
    ) {
        let k = RenderKey {
            message: message.clone(),
            section: section.clone(),
            content: content.clone(),
        };
        self.rendered.insert(k, data);
    }

    /// The complete rendered content of a file (decoded, converted), fetched once: from
    /// the server's decoding where it has BINARY, else from the bytes as stored.
    pub fn rendered(
        &self,
        message: &MessageRef,
        section: &Section,
        content: &Content,
        binary: bool,
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
                let decoded_by_server = binary && !matches!(content, Content::Raw);
                let transfer = if decoded_by_server {
                    Transfer::Decoded
                } else {
                    Transfer::Encoded
                };
                // The server's decoding first, as always, so that a file rendered again
                // comes out the same; a message held whole when the server cannot answer.
                let data = Arc::new(match self.whole_section(message, section, transfer) {
                    Ok(bytes) if decoded_by_server => mime::render_decoded(content, &bytes),
                    Ok(bytes) => mime::render(content, &bytes),
                    Err(e) => {
                        match self.section_of_held_message(message, section, Transfer::Encoded) {
                            Some(stored) => mime::render(content, &stored),
                            None => return Err(e),
                        }
                    }
                });
                self.rendered.insert(k.clone(), Arc::clone(&data));
                Ok(data)
            },
        )
    }

    /// A whole section whose length is not known: cached chunks where held, the rest in
    /// requests of `MAX_RUN` chunks, each kept in the cache.
    fn whole_section(
        &self,
        message: &MessageRef,
        section: &Section,
        transfer: Transfer,
    ) -> FsResult<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let offset = out.len() as u64;
            if let Some(chunk) = self.cached(&key(message, section, transfer, offset)) {
                out.extend_from_slice(&chunk);
                if (chunk.len() as u64) < CHUNK {
                    return Ok(out);
                }
                continue;
            }
            let want = MAX_RUN * CHUNK;
            let part = self.store.fetch_section(
                &message.mailbox,
                message.validity,
                message.uid,
                section,
                transfer,
                Some(ByteRange { offset, len: want }),
            )?;
            let done = (part.len() as u64) < want;
            for (i, piece) in part.chunks(CHUNK as usize).enumerate() {
                let at = offset + i as u64 * CHUNK;
                self.keep(
                    key(message, section, transfer, at),
                    Arc::new(piece.to_vec()),
                );
            }
            if done && (part.len() as u64).is_multiple_of(CHUNK) {
                // The section ends on a chunk boundary: remember the empty chunk after it,
                // so a later read from the cache knows where the end is.
                let at = offset + part.len() as u64;
                self.cache
                    .insert(key(message, section, transfer, at), Arc::new(Vec::new()));
            }
            out.extend_from_slice(&part);
            if done {
                return Ok(out);
            }
        }
    }
}
