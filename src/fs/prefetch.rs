//! Prefetch (IMAP's offline mode): a mailbox's listing, every message's structure and
//! (unless only headers are wanted) every whole message, fetched in large batches over
//! several connections into the caches, so that the mount later works without the server.
//! What is cached already is skipped, so an interrupted prefetch resumes where it stopped.
//! Used by `imapfs prefetch` and by `setfattr -n user.imapfs.prefetch` on a mailbox.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::content::SMALL_MESSAGE;
use super::inodes::MessageRef;
use super::metadata::LISTING_FRESH;
use super::reads::Batch;
use super::{Fs, FsError, FsResult};
use crate::store::{MailboxId, MessageMeta, Uid};

/// Messages whose structures are asked in one request.
const STRUCTURE_BATCH: usize = 256;
/// A batch of whole messages holds at most this many bytes (or one larger message)...
const BATCH_BYTES: u64 = 4 << 20;
/// ... and at most this many messages.
const BATCH_MESSAGES: usize = 256;
/// A background prefetch's batches are smaller, so that one under way when the user starts
/// something holds a connection and the server only briefly.
const BACKGROUND_BATCH_BYTES: u64 = 1 << 20;
/// A background prefetch sends its next batch once the mount has served no request for
/// this long...
const QUIET: Duration = Duration::from_millis(300);
/// ... or after waiting this long, so that it still ends on a busy mount (at a batch of
/// 1 MiB per 5 s, it takes little from what the user does).
const MAX_YIELD: Duration = Duration::from_secs(5);

/// How hard a prefetch goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// `imapfs prefetch`: this many batches at a time, as fast as they come.
    Full(usize),
    /// A prefetch on a mount: one connection, small batches, each sent when the mount is
    /// quiet (what the user asks goes first).
    Background,
}

/// When the mount last began serving a request that may go to the server.
pub(super) struct Foreground {
    epoch: Instant,
    /// Milliseconds since `epoch`, plus one (0: never).
    last: AtomicU64,
    quiet: parking_lot::RwLock<(Duration, Duration)>,
}

impl Default for Foreground {
    fn default() -> Self {
        Foreground {
            epoch: Instant::now(),
            last: AtomicU64::new(0),
            quiet: parking_lot::RwLock::new((QUIET, MAX_YIELD)),
        }
    }
}

impl Foreground {
    fn note(&self) {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        self.last.fetch_max(now, Ordering::Relaxed);
    }

    /// Waits until no request began for the quiet time, or at most the longest yield.
    fn wait_for_quiet(&self) {
        let (quiet, max_yield) = *self.quiet.read();
        let started = Instant::now();
        loop {
            let last = self.last.load(Ordering::Relaxed);
            let idle = match last {
                0 => return,
                ms => self
                    .epoch
                    .elapsed()
                    .saturating_sub(Duration::from_millis(ms - 1)),
            };
            let waited = started.elapsed();
            if idle >= quiet || waited >= max_yield {
                return;
            }
            std::thread::sleep((quiet - idle).min(max_yield - waited));
        }
    }
}

/// How far a prefetch has come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub messages: u64,
    pub messages_total: u64,
    pub bytes: u64,
    pub bytes_total: u64,
    /// Messages that were cached already (so not fetched), and their bytes.
    pub skipped: u64,
    pub skipped_bytes: u64,
}

/// A prefetch started on a mounted mailbox (`setfattr -n user.imapfs.prefetch`).
#[derive(Debug, Clone)]
pub enum Background {
    Running(Progress),
    Done(Progress),
    Failed(Progress, String),
}

impl Background {
    /// What `getfattr -n user.imapfs.prefetch` shows.
    pub fn describe(&self) -> String {
        let (word, p, why) = match self {
            Background::Running(p) => ("running", p, None),
            Background::Done(p) => ("done", p, None),
            Background::Failed(p, why) => ("failed", p, Some(why)),
        };
        let mut out = format!(
            "{word}: {} of {} messages, {} of {} bytes",
            p.messages, p.messages_total, p.bytes, p.bytes_total
        );
        if let Some(why) = why {
            out.push_str(&format!(" ({why})"));
        }
        out
    }
}

/// The prefetches started on this mount, by mailbox.
#[derive(Default)]
pub struct Prefetches {
    pub(super) by_mailbox: Mutex<std::collections::HashMap<MailboxId, Background>>,
    /// The core itself, for the threads that run them.
    pub(super) core: std::sync::OnceLock<Weak<Fs>>,
    /// What they give way to.
    pub(super) foreground: Foreground,
}

/// What the prefetch is asked to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Listings and structures.
    Headers,
    /// Those and every whole message.
    Everything,
}

impl Fs {
    /// Lets work the core starts by itself (a prefetch asked by `setfattr`) run on threads
    /// of its own; call once the core is shared.
    /// Tells background prefetches that the mount serves a request that may need the
    /// server: they wait for a quiet moment before their next batch.
    pub fn note_foreground(&self) {
        self.prefetches.foreground.note();
    }

    /// How long a background prefetch waits for quiet, and at most (for tests).
    #[cfg(test)]
    pub(super) fn set_background_pacing(&self, quiet: Duration, max_yield: Duration) {
        *self.prefetches.foreground.quiet.write() = (quiet, max_yield);
    }

    /// Lets the core work on threads of its own: prefetches asked for on the mount, and
    /// bodies read ahead of walks.
    pub fn enable_background_work(self: &Arc<Self>) {
        let _ = self.prefetches.core.set(Arc::downgrade(self));
        // All connections but one: structures on one, bodies on up to two.
        let spare = self.config.connections.saturating_sub(1);
        let structure_threads = usize::from(spare >= 2);
        let body_threads = spare.saturating_sub(structure_threads).min(2);
        let content = Arc::clone(&self.content);
        let bodies = self.bodies_ahead.start("read-ahead", body_threads, move |batch: Batch| {
            if let Err(e) = content.fetch_whole(&batch, SMALL_MESSAGE) {
                tracing::debug!(error = %e, messages = batch.len(), "read-ahead of messages failed");
            }
        });
        let core = Arc::downgrade(self);
        let structures = self.structures_ahead.start(
            "structures-ahead",
            structure_threads,
            move |(of, uids): (MessageRef, Vec<Uid>)| {
                if let Some(fs) = core.upgrade() {
                    fs.structures_for_walk(&of, &uids);
                }
            },
        );
        if let Err(e) = bodies.and(structures) {
            tracing::warn!(error = %e, "cannot start a read-ahead thread; walks fetch as they go");
        }
    }

    /// Starts prefetching `mailbox` in the background (see [`Pace::Background`]), unless
    /// one runs.
    pub(super) fn start_prefetch(&self, mailbox: &MailboxId, depth: Depth) -> FsResult<()> {
        let core = self
            .prefetches
            .core
            .get()
            .and_then(Weak::upgrade)
            .ok_or(FsError::NotSupported)?;
        {
            let mut all = self.prefetches.by_mailbox.lock();
            if matches!(all.get(mailbox), Some(Background::Running(_))) {
                return Ok(());
            }
            all.insert(mailbox.clone(), Background::Running(Progress::default()));
        }
        let mailbox = mailbox.clone();
        std::thread::Builder::new()
            .name("prefetch".into())
            .spawn(move || {
                tracing::info!(mailbox = %mailbox, "prefetch started");
                let record = |state: Background| {
                    core.prefetches.by_mailbox.lock().insert(mailbox.clone(), state);
                };
                let result = core.prefetch_mailbox(&mailbox, depth, Pace::Background, &|p| {
                    record(Background::Running(*p));
                });
                let last = match core.prefetches.by_mailbox.lock().get(&mailbox) {
                    Some(Background::Running(p)) => *p,
                    _ => Progress::default(),
                };
                match result {
                    Ok(p) => {
                        tracing::info!(mailbox = %mailbox, messages = p.messages, bytes = p.bytes, "prefetch done");
                        record(Background::Done(p));
                    }
                    Err(e) => {
                        tracing::warn!(mailbox = %mailbox, error = %e, "prefetch failed");
                        record(Background::Failed(last, e.to_string()));
                    }
                }
            })
            .map_err(|e| FsError::Spool(format!("cannot start a prefetch: {e}")))?;
        Ok(())
    }

    /// Prefetches `mailbox` at `pace`, telling `progress` after each batch. The first error
    /// ends it (what was fetched stays).
    pub fn prefetch_mailbox(
        &self,
        mailbox: &MailboxId,
        depth: Depth,
        pace: Pace,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> FsResult<Progress> {
        let (workers, batch_limit) = match pace {
            Pace::Full(workers) => (workers, BATCH_BYTES),
            Pace::Background => (1, BACKGROUND_BATCH_BYTES),
        };
        let give_way = || {
            if pace == Pace::Background {
                self.prefetches.foreground.wait_for_quiet();
            }
        };
        self.ensure_listing(mailbox, Some(LISTING_FRESH))?;
        let (validity, messages) = self.metadata.listed(mailbox).ok_or_else(|| {
            FsError::Store(crate::store::StoreError::NoSuchMailbox(mailbox.clone()))
        })?;
        let message = |uid: Uid| MessageRef {
            mailbox: mailbox.clone(),
            validity,
            uid,
        };
        let mut done = Progress {
            messages_total: messages.len() as u64,
            bytes_total: match depth {
                Depth::Headers => 0,
                Depth::Everything => messages.iter().map(|m| m.size).sum(),
            },
            ..Progress::default()
        };
        // Structures: the store keeps them (on disk with the disk cache).
        let uids: Vec<Uid> = messages.iter().map(|m| m.uid).collect();
        for batch in uids.chunks(STRUCTURE_BATCH) {
            give_way();
            self.store.body_structures(mailbox, validity, batch)?;
            if depth == Depth::Headers {
                done.messages += batch.len() as u64;
                progress(&done);
            }
        }
        if depth == Depth::Headers {
            return Ok(done);
        }
        // Whole messages, in batches by bytes, fetched by `workers` threads.
        let mut wanted: Vec<&MessageMeta> = Vec::new();
        for meta in &messages {
            if self
                .content
                .has_whole_message(&message(meta.uid), meta.size)
            {
                done.messages += 1;
                done.skipped += 1;
                done.skipped_bytes += meta.size;
                done.bytes += meta.size;
            } else {
                wanted.push(meta);
            }
        }
        progress(&done);
        let mut batches: VecDeque<Vec<(MessageRef, u64)>> = VecDeque::new();
        let mut batch: Vec<(MessageRef, u64)> = Vec::new();
        let mut batch_bytes = 0;
        for meta in wanted {
            if !batch.is_empty()
                && (batch_bytes + meta.size > batch_limit || batch.len() >= BATCH_MESSAGES)
            {
                batches.push_back(std::mem::take(&mut batch));
                batch_bytes = 0;
            }
            batch_bytes += meta.size;
            batch.push((message(meta.uid), meta.size));
        }
        if !batch.is_empty() {
            batches.push_back(batch);
        }
        let queue = Mutex::new(batches);
        let fetched_messages = AtomicU64::new(done.messages);
        let fetched_bytes = AtomicU64::new(done.bytes);
        let failure: Mutex<Option<FsError>> = Mutex::new(None);
        let report = Mutex::new(());
        std::thread::scope(|scope| {
            for _ in 0..workers.max(1) {
                scope.spawn(|| loop {
                    if failure.lock().is_some() {
                        return;
                    }
                    give_way();
                    let Some(batch) = queue.lock().pop_front() else {
                        return;
                    };
                    let limit = batch.iter().map(|(_, size)| *size).max().unwrap_or(0);
                    match self.content.fetch_whole(&batch, limit.max(1)) {
                        Ok(_) => {
                            let count = batch.len() as u64;
                            let size: u64 = batch.iter().map(|(_, size)| size).sum();
                            let messages =
                                fetched_messages.fetch_add(count, Ordering::Relaxed) + count;
                            let bytes = fetched_bytes.fetch_add(size, Ordering::Relaxed) + size;
                            let _one_at_a_time = report.lock();
                            progress(&Progress {
                                messages,
                                bytes,
                                ..done
                            });
                        }
                        Err(e) => {
                            failure.lock().get_or_insert(e);
                            return;
                        }
                    }
                });
            }
        });
        if let Some(e) = failure.into_inner() {
            return Err(e);
        }
        done.messages = fetched_messages.into_inner();
        done.bytes = fetched_bytes.into_inner();
        Ok(done)
    }
}
