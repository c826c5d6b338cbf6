//! Prefetch (IMAP's offline mode): a mailbox's listing, every message's structure and
//! (unless only headers are wanted) every whole message, fetched in large batches over
//! several connections into the caches, so that the mount later works without the server.
//! What is cached already is skipped, so an interrupted prefetch resumes where it stopped.
//! Used by `imapfs prefetch` and by `setfattr -n user.imapfs.prefetch` on a mailbox.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::inodes::MessageRef;
use super::metadata::LISTING_FRESH;
use super::{Fs, FsError, FsResult};
use crate::store::{MailboxId, MessageMeta, Uid};

/// Messages whose structures are asked in one request.
const STRUCTURE_BATCH: usize = 256;
/// A batch of whole messages holds at most this many bytes (or one larger message)...
const BATCH_BYTES: u64 = 4 << 20;
/// ... and at most this many messages.
const BATCH_MESSAGES: usize = 256;

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
    pub fn enable_background_work(self: &Arc<Self>) {
        let _ = self.prefetches.core.set(Arc::downgrade(self));
    }

    /// Starts prefetching `mailbox` in the background with one connection (so that what
    /// the mount is asked in the meantime is not slowed much), unless one runs.
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
                let result = core.prefetch_mailbox(&mailbox, depth, 1, &|p| {
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

    /// Prefetches `mailbox` with `workers` requests at a time, telling `progress` after
    /// each batch. The first error ends it (what was fetched stays).
    pub fn prefetch_mailbox(
        &self,
        mailbox: &MailboxId,
        depth: Depth,
        workers: usize,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> FsResult<Progress> {
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
                && (batch_bytes + meta.size > BATCH_BYTES || batch.len() >= BATCH_MESSAGES)
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
