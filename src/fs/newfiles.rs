//! New files in mailbox directories: spooled on local disk while written, appended to the
//! server when closed, kept in the spool if APPEND fails.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;

use super::inodes::Node;
use super::{newmail, AttrReply, Fs, FsError, FsResult, Kind};
use crate::store::{MailboxName, StoreError};

/// Where a new file stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PendingState {
    /// Being written; appended at the next close.
    Writing,
    /// Appended to the server; the file has become a message.
    Appended,
    /// APPEND failed and nothing was written since: the bytes wait in the spool file.
    Failed,
}

/// A new file in a mailbox directory, spooled on local disk until it is appended.
pub struct PendingFile {
    mailbox: MailboxName,
    name: String,
    spool: PathBuf,
    file: File,
    size: AtomicU64,
    state: Mutex<PendingState>,
    created: SystemTime,
}

static SPOOL_SERIAL: AtomicU64 = AtomicU64::new(0);

impl Fs {
    /// `create`: a new file in a mailbox directory, spooled until it is closed.
    pub fn create(&self, parent: u64, name: &OsStr) -> FsResult<(AttrReply, u64)> {
        self.refuse_if_read_only()?;
        let name = name
            .to_str()
            .ok_or_else(|| FsError::Invalid("name is not UTF-8".into()))?;
        if name.chars().any(char::is_control) {
            return Err(FsError::Invalid(format!(
                "{name:?} contains control characters"
            )));
        }
        let dir_path = self.mailbox_dir_path(parent)?;
        let tree = self.tree(false)?;
        let dir = tree.get(&dir_path).ok_or(FsError::NotFound)?;
        let mailbox = match (&dir.wire, dir.selectable) {
            (Some(w), true) => w.clone(),
            _ => {
                return Err(FsError::NotPermitted(
                    "this directory cannot hold messages".into(),
                ))
            }
        };
        std::fs::create_dir_all(&self.config.spool_dir).map_err(|e| {
            FsError::Store(StoreError::Refused(format!(
                "cannot create spool directory {}: {e}",
                self.config.spool_dir.display()
            )))
        })?;
        let serial = SPOOL_SERIAL.fetch_add(1, Ordering::Relaxed);
        let safe: String = name
            .chars()
            .map(|c| if c == '/' || c.is_control() { '_' } else { c })
            .take(100)
            .collect();
        let spool = self.config.spool_dir.join(format!(
            "{}-{}-{serial}-{safe}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        ));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&spool)
            .map_err(|e| {
                FsError::Store(StoreError::Refused(format!(
                    "cannot create spool file {}: {e}",
                    spool.display()
                )))
            })?;
        let pending = Arc::new(PendingFile {
            mailbox,
            name: name.to_string(),
            spool,
            file,
            size: AtomicU64::new(0),
            state: Mutex::new(PendingState::Writing),
            created: SystemTime::now(),
        });
        let ino = {
            let mut state = self.state.lock();
            let ino = state.inodes.pending(&dir_path, name);
            state.pending.insert(ino, pending);
            ino
        };
        Ok((self.getattr(ino)?, ino))
    }

    /// Drops a new file that was not appended (`rm` before close), with its spool copy.
    pub(super) fn discard_pending(&self, ino: u64) {
        let pending = self.state.lock().pending.remove(&ino);
        if let Some(p) = pending {
            if *p.state.lock() != PendingState::Appended {
                let _ = std::fs::remove_file(&p.spool);
            }
        }
    }

    pub(super) fn pending_file(&self, ino: u64) -> Option<Arc<PendingFile>> {
        self.state.lock().pending.get(&ino).cloned()
    }

    /// New files of a mailbox directory, for lookups and listings. Files already appended
    /// stay visible to lookups until the directory is listed again (tools like rsync close
    /// a temporary file and then rename it); a listing drops them, as the message now shows.
    pub(super) fn pending_in(&self, dir_path: &str, listing: bool) -> Vec<(u64, String)> {
        let mut state = self.state.lock();
        if listing {
            let appended: Vec<u64> = state
                .pending
                .iter()
                .filter(|(_, p)| *p.state.lock() == PendingState::Appended)
                .map(|(ino, _)| *ino)
                .filter(|ino| {
                    matches!(state.inodes.get(*ino), Some(Node::Pending { dir_path: d, .. }) if d == dir_path)
                })
                .collect();
            for ino in appended {
                state.pending.remove(&ino);
            }
        }
        state
            .pending
            .keys()
            .filter_map(|ino| match state.inodes.get(*ino) {
                Some(Node::Pending { dir_path: d, name }) if d == dir_path => {
                    Some((*ino, name.clone()))
                }
                _ => None,
            })
            .collect()
    }

    pub(super) fn pending_attr(&self, ino: u64) -> Option<AttrReply> {
        let p = self.pending_file(ino)?;
        Some(AttrReply {
            attr: super::Attr {
                ino,
                kind: Kind::File,
                size: p.size.load(Ordering::Relaxed),
                mtime: p.created,
                perm: 0o600,
                nlink: 1,
                uid: self.config.uid,
                gid: self.config.gid,
            },
            ttl: std::time::Duration::ZERO,
            entry_ttl: std::time::Duration::ZERO,
        })
    }

    pub(super) fn read_pending(&self, ino: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let p = self.pending_file(ino).ok_or(FsError::NotFound)?;
        let len = p.size.load(Ordering::Relaxed);
        let end = offset.saturating_add(u64::from(size)).min(len);
        let mut buf = vec![0; end.saturating_sub(offset) as usize];
        p.file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| FsError::Store(StoreError::Refused(format!("spool read: {e}"))))?;
        Ok(buf)
    }

    /// `write` into a new file.
    pub fn write(&self, ino: u64, _fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        self.refuse_if_read_only()?;
        let p = self.pending_file(ino).ok_or_else(|| {
            FsError::NotPermitted("existing messages and parts cannot be changed".into())
        })?;
        if *p.state.lock() == PendingState::Appended {
            return Err(FsError::NotPermitted(
                "the file was already stored as a message".into(),
            ));
        }
        p.file
            .write_all_at(data, offset)
            .map_err(|e| FsError::Store(StoreError::Refused(format!("spool write: {e}"))))?;
        p.size
            .fetch_max(offset + data.len() as u64, Ordering::Relaxed);
        *p.state.lock() = PendingState::Writing;
        Ok(data.len() as u32)
    }

    /// Truncates a new file (`>` on an existing one, or `truncate`).
    pub(super) fn truncate_pending(&self, ino: u64, size: u64) -> FsResult<()> {
        let p = self.pending_file(ino).ok_or(FsError::NotPermitted(
            "existing messages and parts cannot be changed".into(),
        ))?;
        p.file
            .set_len(size)
            .map_err(|e| FsError::Store(StoreError::Refused(format!("spool truncate: {e}"))))?;
        p.size.store(size, Ordering::Relaxed);
        *p.state.lock() = PendingState::Writing;
        Ok(())
    }

    /// `flush` (every `close`): APPEND a new file's content. The error reaches `close()`.
    pub fn flush(&self, ino: u64, _fh: u64) -> FsResult<()> {
        let Some(p) = self.pending_file(ino) else {
            return Ok(());
        };
        let mut state = p.state.lock();
        match *state {
            PendingState::Writing => {}
            PendingState::Failed => {
                // Every close of a file whose APPEND failed reports it, not only the first.
                return Err(FsError::Store(StoreError::Refused(format!(
                    "the message was not stored; its bytes are in {}",
                    p.spool.display()
                ))));
            }
            PendingState::Appended => return Ok(()),
        }
        let len = p.size.load(Ordering::Relaxed);
        let mut data = vec![0; len as usize];
        p.file
            .read_exact_at(&mut data, 0)
            .map_err(|e| FsError::Store(StoreError::Refused(format!("spool read: {e}"))))?;
        let message = newmail::message_for_file(&p.name, &data, SystemTime::now());
        match self.store.append(&p.mailbox, &message, &[]) {
            Ok(appended) => {
                *state = PendingState::Appended;
                drop(state);
                tracing::info!(mailbox = %p.mailbox, name = %p.name, ?appended, bytes = message.len(), "appended new message");
                let _ = std::fs::remove_file(&p.spool);
                self.mark_stale(&p.mailbox);
                Ok(())
            }
            Err(e) => {
                *state = PendingState::Failed;
                tracing::error!(mailbox = %p.mailbox, name = %p.name, spool = %p.spool.display(), error = %e,
                    "APPEND failed; the written bytes are kept in the spool file");
                let mut f = &p.file;
                let _ = f.flush();
                Err(FsError::Store(e))
            }
        }
    }

    /// `release`: a new file not yet appended is appended now (if `flush` never came).
    pub fn release(&self, ino: u64, fh: u64) -> FsResult<()> {
        self.flush(ino, fh)
    }

    /// `setattr`: sizes of new files can change; times and modes are accepted and ignored
    /// on new files; anything on existing mail is refused.
    pub fn setattr(
        &self,
        ino: u64,
        _fh: Option<u64>,
        changes: bool,
        size: Option<u64>,
    ) -> FsResult<AttrReply> {
        if self.pending_file(ino).is_some() {
            if let Some(size) = size {
                self.truncate_pending(ino, size)?;
            }
            return self.getattr(ino);
        }
        if changes {
            self.refuse_if_read_only()?;
            return Err(FsError::NotPermitted(
                "attributes of messages cannot be changed".into(),
            ));
        }
        self.getattr(ino)
    }
}
