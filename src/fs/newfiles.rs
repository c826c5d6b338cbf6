//! New files in mailbox directories: spooled on local disk while written, appended to the
//! server when closed, kept in the spool if APPEND fails.

use std::collections::HashMap;
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
use super::{newmail, AttrReply, Fs, FsError, FsResult};
use crate::store::{MailboxId, NewMessage, StoreError};

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
    mailbox: MailboxId,
    name: String,
    spool: PathBuf,
    file: File,
    size: AtomicU64,
    state: Mutex<PendingState>,
    created: SystemTime,
}

impl PendingFile {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }

    /// When it was created (its mtime).
    pub fn created(&self) -> SystemTime {
        self.created
    }

    fn is_appended(&self) -> bool {
        *self.state.lock() == PendingState::Appended
    }
}

/// The new files of every mailbox directory, by directory path and name.
#[derive(Default)]
pub struct NewFiles {
    files: Mutex<HashMap<(String, String), Arc<PendingFile>>>,
}

impl NewFiles {
    /// The new file `name` in the directory at `dir_path`.
    pub fn get(&self, dir_path: &str, name: &str) -> Option<Arc<PendingFile>> {
        self.files
            .lock()
            .get(&(dir_path.to_string(), name.to_string()))
            .cloned()
    }

    fn insert(&self, dir_path: &str, file: Arc<PendingFile>) {
        self.files
            .lock()
            .insert((dir_path.to_string(), file.name.clone()), file);
    }

    fn remove(&self, dir_path: &str, name: &str) -> Option<Arc<PendingFile>> {
        self.files
            .lock()
            .remove(&(dir_path.to_string(), name.to_string()))
    }

    /// Names of the new files of a mailbox directory. Files already appended stay visible
    /// to lookups until the directory is listed again (tools like rsync close a temporary
    /// file and then rename it); a listing (`listing` true) drops them, as the message
    /// shows now.
    pub fn in_dir(&self, dir_path: &str, listing: bool) -> Vec<String> {
        let mut files = self.files.lock();
        if listing {
            files.retain(|(dir, _), f| dir != dir_path || !f.is_appended());
        }
        files
            .keys()
            .filter(|(dir, _)| dir == dir_path)
            .map(|(_, name)| name.clone())
            .collect()
    }

    /// Moves the new files of a renamed mailbox directory (and those below it).
    pub fn dirs_renamed(&self, old_path: &str, new_path: &str) {
        let mut files = self.files.lock();
        let prefix = format!("{old_path}/");
        let moved: Vec<(String, String)> = files
            .keys()
            .filter(|(dir, _)| dir == old_path || dir.starts_with(&prefix))
            .cloned()
            .collect();
        for (dir, name) in moved {
            if let Some(file) = files.remove(&(dir.clone(), name.clone())) {
                let dir = format!("{new_path}{}", &dir[old_path.len()..]);
                files.insert((dir, name), file);
            }
        }
    }
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
        let mailbox = dir
            .selectable_id()
            .cloned()
            .ok_or_else(|| FsError::NotPermitted("this directory cannot hold messages".into()))?;
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
        self.new_files.insert(&dir_path, pending);
        let reply = self.remember(Node::NewFile {
            dir_path,
            name: name.to_string(),
        });
        let ino = reply.attr.ino;
        Ok((reply, ino))
    }

    /// Drops a new file that was not appended (`rm` before close), with its spool copy.
    pub(super) fn discard_new_file(&self, dir_path: &str, name: &str) {
        if let Some(p) = self.new_files.remove(dir_path, name) {
            if !p.is_appended() {
                let _ = std::fs::remove_file(&p.spool);
            }
        }
    }

    /// The new file behind `ino`, if it is one.
    fn new_file(&self, ino: u64) -> Option<Arc<PendingFile>> {
        match self.node(ino).ok()? {
            Node::NewFile { dir_path, name } => self.new_files.get(&dir_path, &name),
            _ => None,
        }
    }

    pub(super) fn read_new_file(
        &self,
        dir_path: &str,
        name: &str,
        offset: u64,
        size: u32,
    ) -> FsResult<Vec<u8>> {
        let p = self
            .new_files
            .get(dir_path, name)
            .ok_or(FsError::NotFound)?;
        let len = p.size();
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
        let p = self.new_file(ino).ok_or_else(|| {
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
    fn truncate_new_file(&self, ino: u64, size: u64) -> FsResult<()> {
        let p = self.new_file(ino).ok_or(FsError::NotPermitted(
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
        let Some(p) = self.new_file(ino) else {
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
        let mut content = std::io::Cursor::new(&message[..]);
        let new = NewMessage {
            content: &mut content,
            len: message.len() as u64,
            binary: message.contains(&0),
            flags: &[],
            internal_date: None,
        };
        match self.store.append(&p.mailbox, new) {
            Ok(appended) => {
                *state = PendingState::Appended;
                drop(state);
                tracing::info!(mailbox = %p.mailbox, name = %p.name, ?appended, bytes = message.len(), "appended new message");
                let _ = std::fs::remove_file(&p.spool);
                self.metadata.mark_stale(&p.mailbox);
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
        if self.new_file(ino).is_some() {
            if let Some(size) = size {
                self.truncate_new_file(ino, size)?;
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
