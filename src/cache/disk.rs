//! The disk [`ContentCache`]: the server's bytes of every section read, kept across mounts.
//!
//! Each section (a message, a part, in one transfer form) is one sparse file under
//! `blobs/`, written at the offsets of its 16 KiB chunks; the index (`dir.rs`'s database)
//! says which chunks a file holds, with each chunk's length and CRC-32. A chunk is served
//! only if its bytes still match its checksum: one that does not (a torn write after a
//! crash, a flipped bit, a truncated file) is dropped and fetched again, never served.
//! Writes go to a thread of their own, so a read never waits for the disk; the index is
//! committed after the chunk's bytes are written. The least recently used sections are
//! evicted to stay under the size bound and above the free-space floor; a read in progress
//! never notices, since what it serves is copied into memory first.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lru::LruCache;
use parking_lot::Mutex;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::dir::{CacheDir, BLOBS};
use super::{ContentCache, ContentKey};
use crate::store::{MailboxId, Transfer, UidValidity};

/// Section key → (file id, bytes held, last used in seconds since the epoch).
const SECTIONS: TableDefinition<&[u8], (u64, u64, u64)> = TableDefinition::new("sections");
/// (section key, offset) → (length, CRC-32).
const CHUNKS: TableDefinition<(&[u8], u64), (u32, u32)> = TableDefinition::new("chunks");
/// Counters: `next_file`, `used`.
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("content_counters");

/// Writes waiting for the writer; a read that finds the queue full waits for room for at
/// most [`WRITER_WAIT`], then the chunk is not kept (it is a cache).
const QUEUE: usize = 1024;
/// How long a read waits for room in the writer's queue.
const WRITER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Open section files kept.
const OPEN_FILES: usize = 64;
/// The share of the filesystem that is kept free.
const FREE_FLOOR: f64 = 0.05;
/// Eviction goes down to this share of the bound, so it does not run at every write.
const EVICT_TO: f64 = 0.9;

/// The key of a section, ordered by mailbox first so that one mailbox's sections are one
/// range: the mailbox (never holding NUL), NUL, UIDVALIDITY, UID, transfer, section parts.
fn section_key(key: &ContentKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.mailbox.as_str().len() + 10 + 4 * key.section.0.len());
    out.extend_from_slice(key.mailbox.as_str().as_bytes());
    out.push(0);
    out.extend_from_slice(&key.validity.0.to_be_bytes());
    out.extend_from_slice(&key.uid.0.to_be_bytes());
    out.push(match key.transfer {
        Transfer::Encoded => 0,
        Transfer::Decoded => 1,
    });
    for part in &key.section.0 {
        out.extend_from_slice(&part.to_be_bytes());
    }
    out
}

/// The mailbox and UIDVALIDITY a section key belongs to.
fn key_mailbox(key: &[u8]) -> Option<(&[u8], u32)> {
    let nul = key.iter().position(|&b| b == 0)?;
    let validity = key.get(nul + 1..nul + 5)?;
    Some((&key[..nul], u32::from_be_bytes(validity.try_into().ok()?)))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn blob_path(root: &Path, file: u64) -> PathBuf {
    root.join(BLOBS)
        .join(format!("{:02x}", file & 0xff))
        .join(format!("{file:016x}"))
}

/// What the writer is asked to do.
enum Job {
    Write {
        section: Vec<u8>,
        offset: u64,
        bytes: Arc<Vec<u8>>,
    },
    /// A chunk that failed its check.
    Drop { section: Vec<u8>, offset: u64 },
    /// Everything of a mailbox under another UIDVALIDITY than `keep` (or all, if `None`).
    DropMailbox {
        mailbox: MailboxId,
        keep: Option<UidValidity>,
    },
    /// Reply once everything before has been done (tests, unmount).
    Flush(mpsc::Sender<()>),
    /// Finish what came before, then end.
    Stop,
}

/// Shared between the cache and its writer.
struct Shared {
    dir: Arc<CacheDir>,
    limit: u64,
    used: AtomicU64,
    /// Sections read since the writer last recorded it, with when.
    touched: Mutex<HashMap<Vec<u8>, u64>>,
    files: Mutex<LruCache<u64, Arc<File>>>,
    /// Damaged chunks reported lately (each read of one until its drop is written would
    /// report it again: four times a chunk were seen).
    reported: Mutex<LruCache<(Vec<u8>, u64), ()>>,
    /// The index refuses every write since one failed underway (redb's "previous I/O
    /// error", a disk that filled during a commit): nothing more is written this mount.
    broken: AtomicBool,
}

/// The disk cache of section bytes.
pub struct DiskCache {
    shared: Arc<Shared>,
    jobs: SyncSender<Job>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// Set when a job could not be queued within `WRITER_WAIT`; until the queue has room
    /// again, jobs are offered once and not waited for, so a stuck writer costs one wait
    /// rather than one per chunk of every read.
    stuck: AtomicBool,
}

/// Dropping the cache waits for its writer, so that the directory's lock is free after.
impl Drop for DiskCache {
    fn drop(&mut self) {
        let _ = self.jobs.send(Job::Stop);
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl DiskCache {
    /// The content cache in `dir`, holding at most `limit` bytes (and keeping 5% of the
    /// filesystem free).
    pub fn new(dir: Arc<CacheDir>, limit: u64) -> io::Result<DiskCache> {
        let root = dir.path().to_path_buf();
        if dir.is_fresh() {
            // Files without an index are orphans.
            match fs::remove_dir_all(root.join(BLOBS)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root.join(BLOBS))?;
        let used = {
            let txn = dir.db().begin_read().map_err(io::Error::other)?;
            match txn.open_table(COUNTERS) {
                Ok(table) => table
                    .get("used")
                    .map_err(io::Error::other)?
                    .map_or(0, |v| v.value()),
                Err(redb::TableError::TableDoesNotExist(_)) => 0,
                Err(e) => return Err(io::Error::other(e)),
            }
        };
        let shared = Arc::new(Shared {
            dir,
            limit,
            used: AtomicU64::new(used),
            touched: Mutex::new(HashMap::new()),
            files: Mutex::new(LruCache::new(
                std::num::NonZeroUsize::new(OPEN_FILES).expect("nonzero"),
            )),
            reported: Mutex::new(LruCache::new(
                std::num::NonZeroUsize::new(1024).expect("nonzero"),
            )),
            broken: AtomicBool::new(false),
        });
        let (jobs, queue) = mpsc::sync_channel(QUEUE);
        let serving = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("disk-cache".into())
            .spawn(move || serving.serve(queue))?;
        Ok(DiskCache {
            shared,
            jobs,
            writer: Some(writer),
            stuck: AtomicBool::new(false),
        })
    }

    /// Waits until every write asked for so far is on disk and in the index.
    pub fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        if self.jobs.send(Job::Flush(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    /// Drops everything held of `mailbox` (deleted on the server).
    pub fn drop_mailbox(&self, mailbox: &MailboxId) {
        self.send_within(Job::DropMailbox {
            mailbox: mailbox.clone(),
            keep: None,
        });
    }

    /// Queues `job` for the writer, waiting at most `WRITER_WAIT` for room: a writer behind
    /// (a busy machine, a slow disk) holds its caller up a little, a writer stuck (a hung
    /// disk) never holds it for good. A job not queued is lost, which a cache can afford:
    /// content is kept under its UIDVALIDITY, so what a lost drop leaves is never served
    /// for another mailbox, and it goes with the space it takes (least recently used).
    fn send_within(&self, job: Job) {
        let mut job = job;
        let wait = if self.stuck.load(Ordering::Relaxed) {
            Duration::ZERO
        } else {
            WRITER_WAIT
        };
        let deadline = Instant::now() + wait;
        loop {
            match self.jobs.try_send(job) {
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    job = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(TrySendError::Full(_)) => {
                    if !self.stuck.swap(true, Ordering::Relaxed) {
                        tracing::warn!("disk cache: the writer is stuck (a slow or hung disk?); what is read is not kept until it catches up");
                    }
                    return;
                }
                Ok(()) => {
                    if self.stuck.swap(false, Ordering::Relaxed) {
                        tracing::info!("disk cache: the writer caught up");
                    }
                    return;
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }

    /// All `len` bytes of a section held in chunks of `chunk` bytes from `start`'s offset,
    /// if every chunk is here.
    pub fn read_all(&self, start: &ContentKey, len: u64, chunk: u64) -> Option<Vec<u8>> {
        // `len` is what a listing said: grown to as the pieces come, not reserved at once.
        let mut out = Vec::with_capacity(usize::try_from(len.min(chunk)).unwrap_or(0));
        let mut key = start.clone();
        while (out.len() as u64) < len {
            key.offset = start.offset + out.len() as u64;
            let piece = self.get(&key)?;
            if piece.is_empty() || piece.len() as u64 > chunk {
                return None;
            }
            out.extend_from_slice(&piece);
        }
        (out.len() as u64 == len).then_some(out)
    }

    fn lookup(&self, key: &ContentKey) -> Option<(u64, u32, u32)> {
        let section = section_key(key);
        let txn = self.shared.dir.db().begin_read().ok()?;
        let sections = txn.open_table(SECTIONS).ok()?;
        let chunks = txn.open_table(CHUNKS).ok()?;
        let (file, _, _) = sections.get(section.as_slice()).ok()??.value();
        let (len, crc) = chunks.get((section.as_slice(), key.offset)).ok()??.value();
        Some((file, len, crc))
    }

    fn open_file(&self, file: u64) -> io::Result<Arc<File>> {
        if let Some(f) = self.shared.files.lock().get(&file) {
            return Ok(Arc::clone(f));
        }
        let f = Arc::new(File::open(blob_path(self.shared.dir.path(), file))?);
        self.shared.files.lock().put(file, Arc::clone(&f));
        Ok(f)
    }
}

impl ContentCache for DiskCache {
    fn get(&self, key: &ContentKey) -> Option<Arc<Vec<u8>>> {
        let (file, len, crc) = self.lookup(key)?;
        let mut bytes = vec![0u8; len as usize];
        let read = self
            .open_file(file)
            .and_then(|f| f.read_exact_at(&mut bytes, key.offset));
        let fault = match read {
            Ok(()) if crc32fast::hash(&bytes) == crc => None,
            Ok(()) => Some("its checksum does not match".to_string()),
            Err(e) => Some(e.to_string()),
        };
        let section = section_key(key);
        if let Some(why) = fault {
            let first = self
                .shared
                .reported
                .lock()
                .put((section.clone(), key.offset), ())
                .is_none();
            if first {
                tracing::warn!(mailbox = %key.mailbox, uid = %key.uid.0, section = %key.section, offset = key.offset, why, "disk cache: dropped a damaged chunk; it is fetched again");
            }
            let _ = self.jobs.try_send(Job::Drop {
                section,
                offset: key.offset,
            });
            return None;
        }
        self.shared.touched.lock().insert(section, now_secs());
        Some(Arc::new(bytes))
    }

    fn contains(&self, key: &ContentKey) -> bool {
        self.lookup(key).is_some()
    }

    fn insert(&self, key: ContentKey, bytes: Arc<Vec<u8>>) {
        if bytes.is_empty() || bytes.len() as u64 > self.shared.limit {
            return;
        }
        // Kept anew: should it be damaged again, that is reported again.
        self.shared
            .reported
            .lock()
            .pop(&(section_key(&key), key.offset));
        // Held up a little rather than leave a hole that an offline mount or a warm remount
        // would miss.
        self.send_within(Job::Write {
            section: section_key(&key),
            offset: key.offset,
            bytes,
        });
    }

    fn retain_validity(&self, mailbox: &MailboxId, keep: UidValidity) {
        self.send_within(Job::DropMailbox {
            mailbox: mailbox.clone(),
            keep: Some(keep),
        });
    }

    fn used_bytes(&self) -> u64 {
        self.shared.used.load(Ordering::Relaxed)
    }
}

/// The writer's state between batches.
struct Batch {
    jobs: Vec<Job>,
    bytes: usize,
}

impl Shared {
    /// The writer: takes jobs in batches and applies each batch in one transaction.
    fn serve(self: Arc<Self>, queue: Receiver<Job>) {
        loop {
            let first = match queue.recv_timeout(Duration::from_secs(5)) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    // Record what was read, now and then.
                    if !self.touched.lock().is_empty() {
                        self.apply(Vec::new());
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut stop = matches!(first, Job::Stop);
            let mut batch = Batch {
                jobs: vec![first],
                bytes: 0,
            };
            while !stop && batch.jobs.len() < 256 && batch.bytes < 16 << 20 {
                match queue.recv_timeout(Duration::from_millis(20)) {
                    Ok(job) => {
                        stop = matches!(job, Job::Stop);
                        if let Job::Write { bytes, .. } = &job {
                            batch.bytes += bytes.len();
                        }
                        batch.jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.apply(batch.jobs);
            if stop {
                return;
            }
        }
    }

    fn apply(&self, jobs: Vec<Job>) {
        let mut flushed = Vec::new();
        if self.broken.load(Ordering::Relaxed) {
            flushed.extend(jobs.into_iter().filter_map(|job| match job {
                Job::Flush(reply) => Some(reply),
                _ => None,
            }));
        } else if let Err(e) = self.apply_jobs(jobs, &mut flushed) {
            tracing::warn!(error = %e, "disk cache: could not record content");
            if matches!(
                self.dir.db().begin_write(),
                Err(redb::TransactionError::Storage(
                    redb::StorageError::PreviousIo
                ))
            ) && !self.broken.swap(true, Ordering::Relaxed)
            {
                tracing::error!(dir = %self.dir.path().display(), error = %e,
                    "the disk cache's index failed while it was written (is the disk full?); nothing more is kept in it until imapfs is mounted again");
            }
        }
        for reply in flushed {
            let _ = reply.send(());
        }
    }

    fn apply_jobs(&self, jobs: Vec<Job>, flushed: &mut Vec<mpsc::Sender<()>>) -> io::Result<()> {
        let root = self.dir.path().to_path_buf();
        let txn = self.dir.db().begin_write().map_err(io::Error::other)?;
        let mut doomed_files = Vec::new();
        {
            let mut sections = txn.open_table(SECTIONS).map_err(io::Error::other)?;
            let mut chunks = txn.open_table(CHUNKS).map_err(io::Error::other)?;
            let mut counters = txn.open_table(COUNTERS).map_err(io::Error::other)?;
            let get = |c: &redb::Table<&str, u64>, name: &str| -> io::Result<u64> {
                Ok(c.get(name)
                    .map_err(io::Error::other)?
                    .map_or(0, |v| v.value()))
            };
            let mut used = get(&counters, "used")?;
            let mut next_file = get(&counters, "next_file")?;
            let now = now_secs();
            // What the cache may hold: writing takes as much free space as it adds to
            // `used`, so this stays true through the batch. Room for the batch is made
            // before it is written (the files of what is evicted go first), so that the
            // filesystem never reaches its floor (a full disk breaks the index's next
            // commit); a chunk that still does not fit is not kept (it is fetched again
            // when read).
            let disk_room = self.disk_room(used);
            let room = self.within_limit(disk_room);
            let disk_room = disk_room.unwrap_or(u64::MAX);
            let incoming: u64 = jobs
                .iter()
                .map(|job| match job {
                    Job::Write { bytes, .. } => bytes.len() as u64,
                    _ => 0,
                })
                .sum();
            if used + incoming > room {
                let target = ((room as f64 * EVICT_TO) as u64).saturating_sub(incoming);
                // Not the sections this batch writes to: a read under way would leave a
                // hole where its first chunks were.
                let writing: std::collections::HashSet<&[u8]> = jobs
                    .iter()
                    .filter_map(|job| match job {
                        Job::Write { section, .. } => Some(section.as_slice()),
                        _ => None,
                    })
                    .collect();
                let freed = evict_to(&mut sections, &mut chunks, &mut used, target, &writing)?;
                self.remove_files(&root, freed);
            }
            let mut short = false;
            for job in jobs {
                match job {
                    Job::Write {
                        section,
                        offset,
                        bytes,
                    } => {
                        let existing = sections
                            .get(section.as_slice())
                            .map_err(io::Error::other)?
                            .map(|v| v.value());
                        let (file, mut held) = match existing {
                            Some((file, held, _)) => (file, held),
                            None => {
                                next_file += 1;
                                (next_file, 0)
                            }
                        };
                        let old = chunks
                            .get((section.as_slice(), offset))
                            .map_err(io::Error::other)?
                            .map(|v| v.value().0);
                        let len = bytes.len() as u32;
                        // Past the size bound, the eviction below makes up for it; past
                        // the free-space floor, it would be too late.
                        if short || used + u64::from(len) > disk_room + u64::from(old.unwrap_or(0))
                        {
                            // The rest of the batch is not kept either.
                            short = true;
                            continue;
                        }
                        if let Err(e) = write_chunk(&root, file, offset, &bytes) {
                            tracing::warn!(error = %e, "disk cache: could not write content");
                            short = true;
                            continue;
                        }
                        chunks
                            .insert((section.as_slice(), offset), (len, crc32fast::hash(&bytes)))
                            .map_err(io::Error::other)?;
                        let old = u64::from(old.unwrap_or(0));
                        held = held + u64::from(len) - old;
                        used = used + u64::from(len) - old;
                        sections
                            .insert(section.as_slice(), (file, held, now))
                            .map_err(io::Error::other)?;
                    }
                    Job::Drop { section, offset } => {
                        let removed = chunks
                            .remove((section.as_slice(), offset))
                            .map_err(io::Error::other)?
                            .map(|v| u64::from(v.value().0));
                        if let Some(len) = removed {
                            used = used.saturating_sub(len);
                            let entry = sections
                                .get(section.as_slice())
                                .map_err(io::Error::other)?
                                .map(|v| v.value());
                            if let Some((file, held, at)) = entry {
                                sections
                                    .insert(
                                        section.as_slice(),
                                        (file, held.saturating_sub(len), at),
                                    )
                                    .map_err(io::Error::other)?;
                            }
                        }
                    }
                    Job::DropMailbox { mailbox, keep } => {
                        let mut start = mailbox.as_str().as_bytes().to_vec();
                        start.push(0);
                        let mut end = mailbox.as_str().as_bytes().to_vec();
                        end.push(1);
                        let doomed: Vec<(Vec<u8>, u64, u64)> = sections
                            .range(start.as_slice()..end.as_slice())
                            .map_err(io::Error::other)?
                            .filter_map(Result::ok)
                            .filter(|(k, _)| {
                                key_mailbox(k.value())
                                    .is_some_and(|(_, v)| Some(v) != keep.map(|k| k.0))
                            })
                            .map(|(k, v)| (k.value().to_vec(), v.value().0, v.value().1))
                            .collect();
                        for (section, file, held) in doomed {
                            forget_section(&mut sections, &mut chunks, &section)?;
                            used = used.saturating_sub(held);
                            doomed_files.push(file);
                        }
                    }
                    Job::Flush(reply) => flushed.push(reply),
                    Job::Stop => {}
                }
            }
            for (section, at) in self.touched.lock().drain() {
                let entry = sections
                    .get(section.as_slice())
                    .map_err(io::Error::other)?
                    .map(|v| v.value());
                if let Some((file, held, _)) = entry {
                    sections
                        .insert(section.as_slice(), (file, held, at))
                        .map_err(io::Error::other)?;
                }
            }
            let budget = self.budget(used);
            if used > budget || short {
                let target = (budget as f64 * EVICT_TO) as u64;
                doomed_files.extend(evict_to(
                    &mut sections,
                    &mut chunks,
                    &mut used,
                    target,
                    &std::collections::HashSet::new(),
                )?);
            }
            counters.insert("used", used).map_err(io::Error::other)?;
            counters
                .insert("next_file", next_file)
                .map_err(io::Error::other)?;
            self.used.store(used, Ordering::Relaxed);
        }
        txn.commit().map_err(io::Error::other)?;
        // Files go once the index no longer names them.
        self.remove_files(&root, doomed_files);
        Ok(())
    }

    /// Closes and removes the content files `doomed`.
    fn remove_files(&self, root: &Path, doomed: Vec<u64>) {
        let mut files = self.files.lock();
        for file in doomed {
            files.pop(&file);
            let _ = fs::remove_file(blob_path(root, file));
        }
    }

    /// The bytes the cache may hold now: its bound, or less where the filesystem would
    /// otherwise fall under its free-space floor.
    fn budget(&self, used: u64) -> u64 {
        self.within_limit(self.disk_room(used))
    }

    /// The size bound, or `disk_room` where that is less.
    fn within_limit(&self, disk_room: Option<u64>) -> u64 {
        disk_room.map_or(self.limit, |room| self.limit.min(room))
    }

    /// The bytes the cache may hold before the filesystem falls under its free-space
    /// floor; `None` where the filesystem cannot tell.
    fn disk_room(&self, used: u64) -> Option<u64> {
        let (free, total) = free_space(self.dir.path())?;
        let floor = (total as f64 * FREE_FLOOR) as u64;
        Some((used + free).saturating_sub(floor))
    }
}

/// Forgets the least recently used sections (but those of `keep`) until `used` is at most
/// `target`; their files.
fn evict_to(
    sections: &mut redb::Table<&[u8], (u64, u64, u64)>,
    chunks: &mut redb::Table<(&[u8], u64), (u32, u32)>,
    used: &mut u64,
    target: u64,
    keep: &std::collections::HashSet<&[u8]>,
) -> io::Result<Vec<u64>> {
    let mut all: Vec<(u64, Vec<u8>, u64, u64)> = sections
        .iter()
        .map_err(io::Error::other)?
        .filter_map(Result::ok)
        .map(|(k, v)| {
            let (file, held, at) = v.value();
            (at, k.value().to_vec(), file, held)
        })
        .collect();
    all.sort();
    let mut files = Vec::new();
    for (_, section, file, held) in all {
        if *used <= target {
            break;
        }
        if keep.contains(section.as_slice()) {
            continue;
        }
        forget_section(sections, chunks, &section)?;
        *used = used.saturating_sub(held);
        files.push(file);
    }
    Ok(files)
}

/// Removes a section's chunks and its entry.
fn forget_section(
    sections: &mut redb::Table<&[u8], (u64, u64, u64)>,
    chunks: &mut redb::Table<(&[u8], u64), (u32, u32)>,
    section: &[u8],
) -> io::Result<()> {
    let offsets: Vec<u64> = chunks
        .range((section, 0)..=(section, u64::MAX))
        .map_err(io::Error::other)?
        .filter_map(Result::ok)
        .map(|(k, _)| k.value().1)
        .collect();
    for offset in offsets {
        chunks.remove((section, offset)).map_err(io::Error::other)?;
    }
    sections.remove(section).map_err(io::Error::other)?;
    Ok(())
}

/// Writes a chunk into its section's file, creating the file (and its directory).
fn write_chunk(root: &Path, file: u64, offset: u64, bytes: &[u8]) -> io::Result<()> {
    let path = blob_path(root, file);
    let open = || {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
    };
    let f = match open() {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)?;
            }
            open()?
        }
        Err(e) => return Err(e),
    };
    f.write_all_at(bytes, offset)
}

/// Free and total bytes of the filesystem holding `path`.
fn free_space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let unit = st.f_frsize;
    Some((st.f_bavail * unit, st.f_blocks * unit))
}

#[cfg(test)]
mod tests;
