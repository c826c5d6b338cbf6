//! New files in mailbox directories: spooled on local disk while written, stored as a
//! message (APPEND) when a writer closes them, stored again (and the old message expunged)
//! when rewritten or renamed after storing, and kept local when their names say they are
//! temporary: editor swap, backup and lock files, and dotfiles (rsync's temporary names)
//! until they are renamed to a visible name. Empty files are never stored.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use super::content::Source;
use super::inodes::{MessageRef, Node, NodeKey};
use super::mailboxes;
use super::newmail::{parse_origin, MessageSource};
use super::spool::{note_path, Sending};
use super::virtual_dirs::VirtualNode;
use super::{AttrReply, Fs, FsError, FsResult};
use crate::store::{
    Flag, MailboxId, NewMessage, Section, StoreError, StoreResult, Transfer, Uid, UidValidity,
};

/// What storing a file came to: where its message landed (the UID where the server tells
/// it), or why not.
type Stored = StoreResult<Option<(UidValidity, Uid)>>;

/// What a new file's name says about storing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// An ordinary file: stored when written and closed.
    Stored,
    /// A dotfile: stored only once renamed to a visible name (rsync writes `.name.XXXXXX`).
    Hidden,
    /// An editor's swap, backup or lock file: never stored.
    Local,
}

/// ENAMETOOLONG for a name a stored file could not be shown under again: a listing
/// shows names of at most `MAX_NAME_BYTES` (names kept local may be longer).
pub(super) fn stored_name_fits(name: &str) -> FsResult<()> {
    if name_kind(name) != NameKind::Stored {
        return Ok(());
    }
    if name.len() > crate::mime::MAX_NAME_BYTES {
        return Err(FsError::NameTooLong(format!(
            "a stored file's name is at most {} bytes",
            crate::mime::MAX_NAME_BYTES
        )));
    }
    // EINVAL for one a listing would show otherwise (names are made safe as every name
    // from the server is: spaces at either end trimmed, `=?...?=` decoded): the file
    // would be gone under its own name the moment it is stored, and each `rsync
    // --delete` would remove it and store it again.
    let origin = super::newmail::FileOrigin {
        name: name.to_string(),
        size: 0,
        mtime: std::time::UNIX_EPOCH,
    };
    let shown = super::newmail::parse_origin(super::newmail::origin_value(&origin).as_bytes());
    if shown.is_none_or(|o| o.name != name) {
        return Err(FsError::Invalid(format!(
            "{name:?} cannot be stored under that name (it would show as another); \
             no spaces at its ends or encoded words"
        )));
    }
    Ok(())
}

/// How a file named `name` is treated.
pub fn name_kind(name: &str) -> NameKind {
    let vim_swap =
        name.starts_with('.') && name.len() > 4 && name.is_char_boundary(name.len() - 4) && {
            let ext = &name[name.len() - 4..];
            ext == ".swx" || (ext.starts_with(".sw") && matches!(ext.as_bytes()[3], b'a'..=b'p'))
        };
    let local = vim_swap
        || name.ends_with('~')
        || name == "4913"
        || name.starts_with(".#")
        || (name.len() > 2 && name.starts_with('#') && name.ends_with('#'))
        || name.ends_with(".lock")
        || (name.starts_with(".~lock.") && name.ends_with('#'));
    if local {
        NameKind::Local
    } else if name.starts_with('.') {
        NameKind::Hidden
    } else {
        NameKind::Stored
    }
}

/// Where a new file stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Written since it was last stored (or never stored).
    Dirty,
    /// Stored as a message (known when the server told its UID); nothing written since.
    Stored(Option<MessageRef>),
    /// Storing failed: the bytes wait in the spool file.
    Failed { why: String, over_quota: bool },
    /// Writing to the spool failed (say, the disk is full): it will not be stored.
    Broken { no_space: bool, why: String },
}

/// A new file in a mailbox directory, spooled on local disk.
pub struct NewFile {
    /// Its mailbox on the server (follows a RENAME of it, `NewFiles::mailboxes_renamed`).
    mailbox: Mutex<MailboxId>,
    name: Mutex<String>,
    spool: PathBuf,
    file: File,
    size: AtomicU64,
    /// What `touch` or rsync set; the creation time otherwise. Becomes the INTERNALDATE.
    mtime: Mutex<SystemTime>,
    /// The mtime was set (rsync, `cp -p`, `touch -d`) since the file was last stored: a
    /// version with the same bytes and another date is stored, to keep the date.
    mtime_set: std::sync::atomic::AtomicBool,
    /// Open handles (create counts as one).
    pub(super) opens: AtomicU32,
    /// Counts its changes (writes, truncations): a store that finds it changed while it
    /// was sent leaves it to be stored again.
    changes: AtomicU64,
    state: Mutex<State>,
    /// Messages this file supersedes once stored (a file it was renamed onto, an older
    /// version of itself); expunged after the APPEND, so nothing is ever lost.
    replaces: Mutex<Vec<MessageRef>>,
    /// Held while the file is being stored.
    storing: Mutex<()>,
    /// The flags its last version was stored with.
    flags: Mutex<Vec<Flag>>,
}

impl NewFile {
    /// Holds the lock a store of this file holds, as an upload under way would (tests).
    #[cfg(test)]
    pub(super) fn hold_storing(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.storing.lock()
    }

    /// No descriptor holds it open (a stored file made a new file by a rename or a
    /// truncation by path, not by an open).
    pub(super) fn closed(&self) {
        self.opens.store(0, Ordering::Relaxed);
    }

    /// Marks the file as one whose APPEND failed, as a store elsewhere would (tests).
    #[cfg(test)]
    pub(super) fn mark_failed(&self, over_quota: bool) {
        *self.state.lock() = State::Failed {
            why: "refused".into(),
            over_quota,
        };
    }

    /// The messages this file supersedes once stored (tests).
    #[cfg(test)]
    pub(super) fn superseded(&self) -> Vec<MessageRef> {
        self.replaces.lock().clone()
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }

    /// Its mtime.
    pub fn mtime(&self) -> SystemTime {
        *self.mtime.lock()
    }

    pub(super) fn name(&self) -> String {
        self.name.lock().clone()
    }

    pub(super) fn mailbox(&self) -> MailboxId {
        self.mailbox.lock().clone()
    }

    /// `old` is a version this file supersedes once stored (once only).
    fn replaces_also(&self, old: MessageRef) {
        let mut replaces = self.replaces.lock();
        if !replaces.contains(&old) {
            replaces.push(old);
        }
    }

    pub(super) fn stored(&self) -> Option<Option<MessageRef>> {
        match &*self.state.lock() {
            State::Stored(message) => Some(message.clone()),
            _ => None,
        }
    }
}

/// What a close of a file whose APPEND failed says: ENOSPC if the server was over quota
/// (or, offline, this machine's disk was full), EIO otherwise; the bytes are in the spool.
fn failed_close(file: &NewFile, why: &str, over_quota: bool) -> FsError {
    let why = format!("{why}; its bytes are in {}", file.spool.display());
    FsError::Store(if over_quota {
        StoreError::OverQuota(why)
    } else {
        StoreError::Refused(why)
    })
}

/// The new files of every mailbox directory, by directory path and name.
#[derive(Default)]
pub struct NewFiles {
    files: Mutex<HashMap<(String, String), Arc<NewFile>>>,
    /// Stored files renamed to a name kept local (`mv f f~`, vim's and rsync's backups,
    /// `mv f .f`), by directory path and the name they left: the message no longer shows
    /// under that name here, and the next file stored under it replaces the message.
    renamed_away: Mutex<HashMap<(String, String), MessageRef>>,
}

impl NewFiles {
    /// The message a stored file renamed to a local name left `name` in `dir_path` with.
    pub fn renamed_away(&self, dir_path: &str, name: &str) -> Option<MessageRef> {
        self.renamed_away
            .lock()
            .get(&(dir_path.to_string(), name.to_string()))
            .cloned()
    }

    /// The name in `dir_path` that `file`'s stored version left when it was renamed to a
    /// local name, with that message, taken.
    fn take_left_by(
        &self,
        dir_path: &str,
        file: &NewFile,
    ) -> Option<((String, String), MessageRef)> {
        let mut left = self.renamed_away.lock();
        let key = left_key(&left, dir_path, file)?;
        left.remove_entry(&key)
    }

    /// Whether `file` is the backup of a stored file whose old name was not written since.
    fn left_by(&self, dir_path: &str, file: &NewFile) -> bool {
        left_key(&self.renamed_away.lock(), dir_path, file).is_some()
    }

    /// `renamed_away`, taken by a new file of that name, which replaces the message.
    fn take_renamed_away(&self, dir_path: &str, name: &str) -> Option<MessageRef> {
        self.renamed_away
            .lock()
            .remove(&(dir_path.to_string(), name.to_string()))
    }

    /// The new file `name` in the directory at `dir_path`.
    pub fn get(&self, dir_path: &str, name: &str) -> Option<Arc<NewFile>> {
        self.files
            .lock()
            .get(&(dir_path.to_string(), name.to_string()))
            .cloned()
    }

    fn insert(&self, dir_path: &str, file: Arc<NewFile>) -> Option<Arc<NewFile>> {
        self.files
            .lock()
            .insert((dir_path.to_string(), file.name()), file)
    }

    fn remove(&self, dir_path: &str, name: &str) -> Option<Arc<NewFile>> {
        self.files
            .lock()
            .remove(&(dir_path.to_string(), name.to_string()))
    }

    /// Stored files of `mailbox` closed everywhere here whose message is among `gone`,
    /// taken out.
    fn take_stored_among(&self, mailbox: &MailboxId, gone: &[MessageRef]) -> Vec<Arc<NewFile>> {
        let mut files = self.files.lock();
        let keys: Vec<(String, String)> = files
            .iter()
            .filter(|(_, f)| {
                f.mailbox() == *mailbox
                    && f.opens.load(Ordering::Relaxed) == 0
                    && matches!(f.stored(), Some(Some(m)) if gone.contains(&m))
            })
            .map(|(key, _)| key.clone())
            .collect();
        keys.iter().filter_map(|key| files.remove(key)).collect()
    }

    /// Names of the new files of a mailbox directory. Stored files stay visible until the
    /// directory is listed again; a listing (`listing` true) drops them, as the message
    /// (and, for a file-born message, its file) shows now.
    pub fn in_dir(&self, dir_path: &str, listing: bool) -> Vec<String> {
        let mut files = self.files.lock();
        if listing {
            files.retain(|(dir, _), f| {
                dir != dir_path || f.stored().is_none() || f.opens.load(Ordering::Relaxed) > 0
            });
        }
        files
            .keys()
            .filter(|(dir, _)| dir == dir_path)
            .map(|(_, name)| name.clone())
            .collect()
    }

    /// Moves the new files of a renamed mailbox directory (and those below it), with their
    /// mailboxes (`ids`: old identifier to new) and the messages they stand for.
    pub fn dirs_renamed(
        &self,
        old_path: &str,
        new_path: &str,
        ids: &HashMap<MailboxId, MailboxId>,
    ) {
        let moved_ref = |m: &MessageRef| match ids.get(&m.mailbox) {
            Some(new) => MessageRef {
                mailbox: new.clone(),
                ..m.clone()
            },
            None => m.clone(),
        };
        let mut files = self.files.lock();
        for file in files.values() {
            let mut mailbox = file.mailbox.lock();
            if let Some(new) = ids.get(&*mailbox) {
                *mailbox = new.clone();
            }
            drop(mailbox);
            let mut replaces = file.replaces.lock();
            *replaces = replaces.iter().map(moved_ref).collect();
            drop(replaces);
            let mut state = file.state.lock();
            if let State::Stored(Some(m)) = &*state {
                *state = State::Stored(Some(moved_ref(m)));
            }
        }
        rekey_dirs(&mut files, old_path, new_path, |file| file);
        drop(files);
        rekey_dirs(&mut self.renamed_away.lock(), old_path, new_path, |m| {
            moved_ref(&m)
        });
    }
}

impl Drop for NewFiles {
    /// At unmount, the files that were only ever local (temporary, hidden, empty) go with
    /// the mount; anything meant to be stored and not stored stays in the spool.
    fn drop(&mut self) {
        for file in self.files.get_mut().values() {
            let local = name_kind(&file.name()) != NameKind::Stored || file.size() == 0;
            if local && *file.state.lock() == State::Dirty {
                let _ = std::fs::remove_file(&file.spool);
            }
        }
    }
}

static SPOOL_SERIAL: AtomicU64 = AtomicU64::new(0);

/// Moves the entries of `map` (by directory path and name) in the directory at `old_path`
/// and below to `new_path`, each value through `moved`.
fn rekey_dirs<V>(
    map: &mut HashMap<(String, String), V>,
    old_path: &str,
    new_path: &str,
    moved: impl Fn(V) -> V,
) {
    let keys: Vec<(String, String)> = map
        .keys()
        .filter(|(dir, _)| mailboxes::is_within(dir, old_path))
        .cloned()
        .collect();
    for (dir, name) in keys {
        if let Some(value) = map.remove(&(dir.clone(), name.clone())) {
            let dir = mailboxes::moved_path(&dir, old_path, new_path).unwrap_or(dir);
            map.insert((dir, name), moved(value));
        }
    }
}

/// The name in `dir_path` of `left` (`NewFiles::renamed_away`) whose message `file`
/// replaces: the name its stored version left when it became a backup.
fn left_key(
    left: &HashMap<(String, String), MessageRef>,
    dir_path: &str,
    file: &NewFile,
) -> Option<(String, String)> {
    let replaces = file.replaces.lock();
    left.iter()
        .find(|((dir, _), m)| dir == dir_path && replaces.contains(m))
        .map(|(k, _)| k.clone())
}

/// Where a stored file's spool copy is set aside (`park_spool`).
pub(super) fn parked_path(spool: &std::path::Path) -> PathBuf {
    let mut name = spool.as_os_str().to_owned();
    name.push(".stored");
    PathBuf::from(name)
}

/// A stored file set aside, back in the spool (it is written again, or kept as a backup).
fn unpark_spool(file: &NewFile) {
    let _ = std::fs::rename(parked_path(&file.spool), &file.spool);
}

impl Drop for NewFile {
    /// Its stored copy set aside goes with it (the server holds it).
    fn drop(&mut self) {
        let _ = std::fs::remove_file(parked_path(&self.spool));
    }
}

/// An error of the spool file: ENOSPC when the disk is full, else EIO.
fn spool_error(what: &str, e: &std::io::Error) -> (bool, String) {
    let no_space = e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT);
    (no_space, format!("spool {what}: {e}"))
}

impl Fs {
    /// Messages of `mailbox` are gone on the server (another client stored a new version of
    /// a file, an APPEND then an EXPUNGE of the old one; or moved or removed it): a file
    /// this mount stored as one of them, closed here, stops standing for its name, which
    /// shows what the mailbox holds now rather than this mount's last version (the next
    /// `>>` here would build on that and drop the other client's change). A file open here
    /// stays what it was.
    pub(super) fn drop_stored_files_gone(&self, mailbox: &MailboxId, gone: &[MessageRef]) {
        if gone.is_empty() {
            return;
        }
        // By the files' own mailbox: the tree may be forgotten just now (a change of the
        // mailbox list), and this must not wait for it.
        for file in self.new_files.take_stored_among(mailbox, gone) {
            tracing::debug!(mailbox = %mailbox, name = %file.name(), "a file stored here was replaced or removed elsewhere");
            self.drop_spool(&file);
        }
    }

    /// The spool directory, created private (0700) if it is missing.
    fn spool_dir(&self) -> FsResult<&PathBuf> {
        let dir = &self.config.spool_dir;
        if !dir.is_dir() {
            std::fs::create_dir_all(dir).map_err(|e| {
                FsError::Spool(format!(
                    "cannot create spool directory {}: {e}",
                    dir.display()
                ))
            })?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
                FsError::Spool(format!(
                    "cannot protect spool directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        Ok(dir)
    }

    /// `mknod`: a regular file is made as `create` makes one and closed at once (an empty
    /// file, kept local until written); a FIFO, socket or device cannot be mail: EPERM, as
    /// for a symlink.
    pub fn mknod(&self, parent: u64, name: &OsStr, mode: u32) -> FsResult<AttrReply> {
        if mode & libc::S_IFMT != libc::S_IFREG {
            self.refuse_if_read_only()?;
            return Err(FsError::NotPermitted(
                "only regular files and directories can be made here".into(),
            ));
        }
        let (reply, fh) = self.create(parent, name)?;
        self.release(reply.attr.ino, fh)?;
        Ok(reply)
    }

    /// `create`: a new file in a mailbox directory, spooled until it is stored.
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
        if let node @ Node::Message { .. } = self.node(parent)? {
            let made = self.make_in_copy(&node, OsStr::new(name), false)?;
            let reply = self.remember(made);
            let ino = reply.attr.ino;
            return Ok((reply, ino));
        }
        if let Ok(Node::Virtual(dir)) = self.node(parent) {
            let node = self.create_note(&dir, name)?;
            let reply = self.remember(node);
            let ino = reply.attr.ino;
            return Ok((reply, 0)).map(|(r, _)| (r, ino));
        }
        let dir_path = self.mailbox_dir_path(parent)?;
        let mailbox = self.mailbox_at(&dir_path, "this directory cannot hold messages")?;
        stored_name_fits(name)?;
        let file = self.new_spooled_file(mailbox, name)?;
        if let Some(old) = self.new_files.insert(&dir_path, file) {
            // Created over a new file of the same name: that one is gone.
            self.drop_spool(&old);
        }
        let reply = self.remember(Node::NewFile {
            dir_path,
            name: name.to_string(),
        });
        let ino = reply.attr.ino;
        Ok((reply, ino))
    }

    fn new_spooled_file(&self, mailbox: MailboxId, name: &str) -> FsResult<Arc<NewFile>> {
        let dir = self.spool_dir()?;
        let serial = SPOOL_SERIAL.fetch_add(1, Ordering::Relaxed);
        let safe: String = name
            .chars()
            .map(|c| if c == '/' || c.is_control() { '_' } else { c })
            .take(100)
            .collect();
        let now = SystemTime::now();
        let spool = dir.join(format!(
            "{}-{}-{serial}-{safe}",
            std::process::id(),
            now.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        ));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&spool)
            .map_err(|e| {
                FsError::Spool(format!("cannot create spool file {}: {e}", spool.display()))
            })?;
        Ok(Arc::new(NewFile {
            mailbox: Mutex::new(mailbox),
            name: Mutex::new(name.to_string()),
            spool,
            file,
            size: AtomicU64::new(0),
            mtime: Mutex::new(now),
            mtime_set: std::sync::atomic::AtomicBool::new(false),
            opens: AtomicU32::new(1),
            changes: AtomicU64::new(0),
            state: Mutex::new(State::Dirty),
            replaces: Mutex::new(Vec::new()),
            storing: Mutex::new(()),
            flags: Mutex::new(Vec::new()),
        }))
    }

    /// A file a message shows, opened for writing: a new file under the same inode, holding
    /// the first `keep` of the stored file's `size` bytes to start with (copied a piece at a
    /// time), that replaces the message once stored.
    pub(super) fn overwrite_stored_file(
        &self,
        ino: u64,
        message: &MessageRef,
        name: &str,
        (size, keep): (u64, u64),
        mtime: SystemTime,
    ) -> FsResult<(String, Arc<NewFile>)> {
        /// The stored bytes are copied into the spool this much at a time, so that a big
        /// file is never held whole in memory.
        const COPY_CHUNK: u64 = 4 << 20;
        let dir_path = self
            .tree(false)?
            .path_of(&message.mailbox)
            .ok_or(FsError::NotFound)?
            .to_string();
        let file = self.new_spooled_file(message.mailbox.clone(), name)?;
        // Without BINARY the part is decoded here, whole: once, then written in pieces.
        let piece_len = if self.store.capabilities().binary {
            COPY_CHUNK
        } else {
            keep
        };
        let mut copied = 0;
        while copied < keep {
            let piece = self
                .read_stored_file(message, size, copied, piece_len.min(keep - copied))
                .and_then(|piece| {
                    if piece.is_empty() {
                        Err(FsError::Store(crate::store::StoreError::Protocol(format!(
                            "the stored file ended at {copied} bytes, its message says {size}"
                        ))))
                    } else {
                        Ok(piece)
                    }
                });
            let piece = match piece {
                Ok(piece) => piece,
                Err(e) => {
                    self.drop_spool(&file);
                    return Err(e);
                }
            };
            if let Err(e) = file.file.write_all_at(&piece, copied) {
                let (no_space, why) = spool_error("write", &e);
                return Err(self.break_new_file(&file, no_space, why));
            }
            copied += piece.len() as u64;
        }
        file.size.store(keep, Ordering::Relaxed);
        if keep == size {
            // The message's bytes as they are: stored, until written (`>>` opens it so; a
            // close with nothing written must not send it again). Its spool file goes, as
            // after a store; the bytes stay readable through the open file.
            *file.mtime.lock() = mtime;
            *file.state.lock() = State::Stored(Some(message.clone()));
            self.park_spool(&file);
        } else {
            file.replaces.lock().push(message.clone());
        }
        if let Some(old) = self.new_files.insert(&dir_path, Arc::clone(&file)) {
            self.drop_spool(&old);
        }
        self.inodes.lock().replace(
            ino,
            Node::NewFile {
                dir_path: dir_path.clone(),
                name: name.to_string(),
            },
        );
        Ok((dir_path, file))
    }

    /// Removes a new file's spool copy (its bytes stay readable through the open file) and
    /// any note about sending it.
    fn drop_spool(&self, file: &NewFile) {
        let _ = std::fs::remove_file(note_path(&file.spool));
        let _ = std::fs::remove_file(&file.spool);
        let _ = std::fs::remove_file(parked_path(&file.spool));
    }

    /// A new file is stored: its spool copy is set aside under a name recovery removes (the
    /// server holds it), and its note goes. Should it be written again, or be kept here as a
    /// backup, `unpark_spool` makes it a spool file again, so that its bytes are never only
    /// in memory.
    fn park_spool(&self, file: &NewFile) {
        let _ = std::fs::remove_file(note_path(&file.spool));
        if std::fs::rename(&file.spool, parked_path(&file.spool)).is_err() {
            let _ = std::fs::remove_file(&file.spool);
        }
    }

    /// The new file behind `ino`, if it is one, with its directory.
    fn new_file(&self, ino: u64) -> Option<(String, Arc<NewFile>)> {
        match self.node(ino).ok()? {
            Node::NewFile { dir_path, name } => {
                let file = self.new_files.get(&dir_path, &name)?;
                Some((dir_path, file))
            }
            _ => None,
        }
    }

    /// Opens a new file again (`open` after `create`, or a second descriptor).
    pub(super) fn open_new_file(&self, dir_path: &str, name: &str) -> FsResult<()> {
        let file = self
            .new_files
            .get(dir_path, name)
            .ok_or(FsError::NotFound)?;
        file.opens.fetch_add(1, Ordering::Relaxed);
        Ok(())
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
            .map_err(|e| FsError::Spool(format!("spool read: {e}")))?;
        Ok(buf)
    }

    /// Marks a new file unusable after its spool failed, and gives the space back at once.
    /// The first failure is the one every later write and close reports: the kernel can
    /// have several WRITEs of one `write()` in flight, and those that fail after the spool
    /// was dropped must not turn a full disk (ENOSPC) into an I/O error.
    pub(super) fn break_new_file(&self, file: &NewFile, no_space: bool, why: String) -> FsError {
        {
            let mut state = file.state.lock();
            if let State::Broken { no_space, why } = &*state {
                return Self::broken_error(*no_space, why);
            }
            *state = State::Broken {
                no_space,
                why: why.clone(),
            };
        }
        tracing::error!(mailbox = %file.mailbox(), name = %file.name(), error = %why,
            "writing the new file failed; it will not be stored");
        let _ = file.file.set_len(0);
        file.size.store(0, Ordering::Relaxed);
        self.drop_spool(file);
        if no_space {
            FsError::NoSpace(why)
        } else {
            FsError::Spool(why)
        }
    }

    /// The error a broken new file gives every later write and close.
    fn broken_error(no_space: bool, why: &str) -> FsError {
        let why = format!("{why}; the file was not stored");
        if no_space {
            FsError::NoSpace(why)
        } else {
            FsError::Spool(why)
        }
    }

    /// `write` into a new file (or a trash note).
    pub fn write(&self, ino: u64, _fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        self.refuse_if_read_only()?;
        match self.node(ino) {
            Ok(Node::Virtual(VirtualNode::TrashNote { uid, name })) => {
                return self.write_note(uid, &name, offset, data)
            }
            Ok(node @ Node::File { .. }) => return self.write_copy(&node, offset, data),
            _ => {}
        }
        let (_, p) = self.new_file(ino).ok_or_else(|| {
            FsError::NotPermitted("existing messages and parts cannot be changed".into())
        })?;
        if let State::Broken { no_space, why } = &*p.state.lock() {
            return Err(Self::broken_error(*no_space, why));
        }
        if let Err(e) = p.file.write_all_at(data, offset) {
            let (no_space, why) = spool_error("write", &e);
            return Err(self.break_new_file(&p, no_space, why));
        }
        p.size
            .fetch_max(offset + data.len() as u64, Ordering::Relaxed);
        self.rewritten(&p)?;
        Ok(data.len() as u32)
    }

    /// A new file changed: a stored version becomes one to replace at the next store. A
    /// file broken meanwhile (another WRITE of the same `write()` failed while this one
    /// ran, and its spool was dropped) stays broken, and this change fails with its error:
    /// what was written went to a dropped spool file, and must never be stored.
    pub(super) fn rewritten(&self, file: &NewFile) -> FsResult<()> {
        let mut state = file.state.lock();
        file.changes.fetch_add(1, Ordering::Relaxed);
        match &*state {
            State::Broken { no_space, why } => return Err(Self::broken_error(*no_space, why)),
            State::Stored(old) => {
                unpark_spool(file);
                file.replaces.lock().extend(old.clone());
                // A new version is dated when it is made (a later `touch -d` may say
                // otherwise), not as the one it replaces.
                *file.mtime.lock() = SystemTime::now();
            }
            State::Dirty | State::Failed { .. } => {}
        }
        *state = State::Dirty;
        Ok(())
    }

    /// Truncates a new file (`>` on an existing one, or `truncate`).
    fn truncate_new_file(&self, file: &NewFile, size: u64) -> FsResult<()> {
        if let Err(e) = file.file.set_len(size) {
            let (no_space, why) = spool_error("truncate", &e);
            return Err(self.break_new_file(file, no_space, why));
        }
        file.size.store(size, Ordering::Relaxed);
        self.rewritten(file)
    }

    /// `flush` (every `close` of a file that may be written; files that only show mail are
    /// opened with `no_flush`): store a new file that was written since it was last stored,
    /// so that `close()` reports whether it worked. A file whose storing failed reports it
    /// at every close. Temporary, hidden and empty files stay local.
    pub fn flush(&self, ino: u64, _fh: u64) -> FsResult<()> {
        self.flushes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some((dir_path, file)) = self.new_file(ino) else {
            return Ok(());
        };
        let state = file.state.lock().clone();
        match state {
            State::Broken { no_space, why } => Err(Self::broken_error(no_space, &why)),
            State::Failed { why, over_quota } => Err(failed_close(&file, &why, over_quota)),
            State::Dirty => self.store_if_wanted(&dir_path, &file),
            State::Stored(_) => Ok(()),
        }
    }

    /// Stores `file` if its name and size say it is to be stored.
    fn store_if_wanted(&self, dir_path: &str, file: &NewFile) -> FsResult<()> {
        let name = file.name();
        match name_kind(&name) {
            NameKind::Stored if file.size() > 0 => self.store_new_file(dir_path, file),
            kind => {
                tracing::debug!(mailbox = %file.mailbox(), name, ?kind, size = file.size(), "new file kept local");
                Ok(())
            }
        }
    }

    /// `release` (the last close of one open): when no descriptor is left, a file still
    /// to be stored is stored now (its error can only be logged).
    pub fn release(&self, ino: u64, fh: u64) -> FsResult<()> {
        // Handle 0: opened as something else (a stored file read before it became a new
        // file under the same inode), never counted among its opens.
        if fh == 0 {
            return Ok(());
        }
        let Some((dir_path, file)) = self.new_file(ino) else {
            return Ok(());
        };
        let before = file
            .opens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            })
            .unwrap_or(0);
        let left = before.saturating_sub(1);
        if left > 0 || *file.state.lock() != State::Dirty {
            return Ok(());
        }
        let result = self.store_if_wanted(&dir_path, &file);
        if let Err(e) = &result {
            tracing::error!(mailbox = %file.mailbox(), name = %file.name(), error = %e, "storing the new file at its last close failed");
        }
        result
    }

    /// APPENDs a new file as a message, streamed from its spool file, dated its mtime; then
    /// expunges what it supersedes. On failure the bytes stay in the spool file.
    fn store_new_file(&self, dir_path: &str, file: &NewFile) -> FsResult<()> {
        // Another close or a rename may be storing it (an APPEND of a big file over a slow
        // link): waited for as long as this call may wait, never longer.
        let _storing = crate::call::lock_within(&file.storing)?;
        self.store_locked(dir_path, file)
    }

    /// `store_new_file` for a caller holding the file's storing lock. A close that waited
    /// for another one's store (a forked child's close-on-exec, say) reports how it went.
    fn store_locked(&self, dir_path: &str, file: &NewFile) -> FsResult<()> {
        match file.state.lock().clone() {
            State::Dirty => {}
            State::Stored(_) => return Ok(()),
            State::Failed { why, over_quota } => return Err(failed_close(file, &why, over_quota)),
            State::Broken { no_space, why } => return Err(Self::broken_error(no_space, &why)),
        }
        // The stored file that left this name for a backup is this file's old version:
        // taken as the file is stored under the name, given back if that fails.
        let name = file.name();
        let taken = self.new_files.take_renamed_away(dir_path, &name);
        if let Some(old) = &taken {
            file.replaces_also(old.clone());
        }
        let stored = self.store_dirty(dir_path, file, name);
        if let (Err(_), Some(old)) = (&stored, taken) {
            file.replaces.lock().retain(|m| *m != old);
            self.new_files
                .renamed_away
                .lock()
                .insert((dir_path.to_string(), file.name()), old);
        }
        stored
    }

    /// `store_locked` of a file written since it was last stored, as `name`.
    fn store_dirty(&self, dir_path: &str, file: &NewFile, name: String) -> FsResult<()> {
        let binary_ok = self.store.capabilities().binary;
        let mtime = file.mtime();
        // What is sent is the file as it is now; another descriptor may change it meanwhile
        // (several writers of one name): then that version is stored by the next close.
        let changes = file.changes.load(Ordering::Relaxed);
        let size = file.size();
        if size == 0 {
            // Truncated by another writer since its close decided to store it: its own
            // close stores what it writes (an empty file stays local).
            return Ok(());
        }
        let mut source = MessageSource::for_file(&file.file, size, &name, mtime, binary_ok)
            .map_err(|e| FsError::Spool(format!("spool read: {e}")))?;
        let len = source.byte_len();
        let binary = source.binary();
        let raw_subject = source.subject().map(<[u8]>::to_vec);
        let sending = Sending {
            mailbox: file.mailbox(),
            name: name.clone(),
            message_len: len,
            internal_date: mtime,
            message_id: source.message_id().map(str::to_string),
            file_size: size,
            mtime,
        };
        // A note first, so a crash during the APPEND neither loses the message nor, on
        // recovery, stores it twice. An earlier attempt that may have landed is looked for.
        if let Some(previous) = Sending::read(&note_path(&file.spool)) {
            if self.already_stored(&previous).unwrap_or(false) {
                tracing::info!(mailbox = %file.mailbox(), name, "an earlier attempt stored it after all");
                *file.state.lock() = State::Stored(None);
                self.park_spool(file);
                return Ok(());
            }
        }
        if let Some(old) = self.unchanged_version(file, &name) {
            tracing::info!(mailbox = %file.mailbox(), name, uid = %old.uid, "written again with the bytes it held: nothing sent");
            file.replaces.lock().clear();
            *file.state.lock() = State::Stored(Some(old));
            self.park_spool(file);
            return Ok(());
        }
        let again = || MessageSource::for_file(&file.file, size, &name, mtime, binary_ok);
        let held = if source.as_is() {
            self.held_already(&sending, source.subject(), again)
        } else {
            None
        };
        let mut file_source = None;
        let copied = match (&held, source.as_is()) {
            (None, true) => {
                self.copied_from_elsewhere(&sending, source.subject(), again, &file.spool)?
            }
            (None, false) => {
                self.file_copied_from_elsewhere(&sending, file)?
                    .map(|(source, copied)| {
                        file_source = Some(source);
                        copied
                    })
            }
            _ => None,
        };
        // A new version keeps the flags of the one it replaces (someone flagged it): as
        // listed, or as this file's last version was stored (not listed yet).
        let replaced = file.replaces.lock().first().cloned();
        let kept_flags: Vec<Flag> = match replaced.and_then(|old| self.metadata.message(&old)) {
            Some(meta) => meta
                .flags
                .iter()
                .filter(|f| !f.eq_ignore_ascii_case("\\Deleted"))
                .filter_map(|f| Flag::parse(f).ok())
                .collect(),
            None => file.flags.lock().clone(),
        };
        *file.flags.lock() = kept_flags.clone();
        if held.is_none() && source.as_is() {
            // Copied or about to be sent: a copy of it stored next asks the server.
            self.metadata.stored_here(&file.mailbox(), len, raw_subject);
        }
        let appended = match (held, copied) {
            (Some(found), _) => {
                tracing::info!(mailbox = %file.mailbox(), name, uid = %found.1, "the mailbox holds this message already, byte for byte: not stored again");
                Ok(Some(found))
            }
            (None, Some(copy)) => copy,
            (None, None) => {
                sending
                    .record(&file.spool)
                    .map_err(|e| FsError::Spool(format!("spool note: {e}")))?;
                self.store.append(
                    &file.mailbox(),
                    NewMessage {
                        content: &mut source,
                        len,
                        binary,
                        flags: &kept_flags,
                        internal_date: Some(mtime),
                    },
                )
            }
        };
        self.metadata.mark_stale(&file.mailbox());
        match appended {
            Ok(uid) => {
                let message = match uid {
                    Some((validity, uid)) => Some(MessageRef {
                        mailbox: file.mailbox(),
                        validity,
                        uid,
                    }),
                    None => self.find_appended(&sending),
                };
                tracing::info!(mailbox = %file.mailbox(), name, ?message, bytes = len, "stored new file");
                // A message found held is the file's own only if it was its earlier
                // version: removing or rewriting a copy of another message's file must
                // never remove that message.
                let own = match &message {
                    Some(m) if held.is_some() && !file.replaces.lock().contains(m) => None,
                    _ => message.clone(),
                };
                let superseded: Vec<MessageRef> = std::mem::take(&mut *file.replaces.lock());
                let changed = {
                    let mut state = file.state.lock();
                    let changed = file.changes.load(Ordering::Relaxed) != changes;
                    if changed {
                        // Written again while it was sent: the version sent is superseded
                        // by the next store, which sends what the file holds then (its
                        // spool stays a spool file).
                        file.replaces.lock().extend(own.clone());
                        *state = State::Dirty;
                    } else {
                        *state = State::Stored(own);
                    }
                    changed
                };
                if changed {
                    // That send is settled (its message is superseded next): its note must
                    // not make the next store take the file for stored already.
                    let _ = std::fs::remove_file(note_path(&file.spool));
                } else {
                    file.mtime_set.store(false, Ordering::Relaxed);
                    self.park_spool(file);
                }
                if let (Some(source), Some(copy)) = (&file_source, &message) {
                    self.note_copy(source, copy);
                }
                for old in superseded
                    .into_iter()
                    .filter(|old| Some(old) != message.as_ref())
                {
                    self.expunge_superseded(&old, dir_path);
                }
                Ok(())
            }
            Err(e) => {
                // A refusal landed nothing; a broken connection may have: keep the note so
                // the next attempt (or the next mount) looks before sending again.
                let maybe_landed = matches!(
                    e,
                    StoreError::Connection(_) | StoreError::Timeout(_) | StoreError::Interrupted
                );
                if !maybe_landed {
                    let _ = std::fs::remove_file(note_path(&file.spool));
                }
                tracing::error!(mailbox = %file.mailbox(), name, spool = %file.spool.display(), error = %e,
                    "APPEND failed; the written bytes are kept in the spool file");
                // Where the answer was lost, the server may hold it: the next attempt looks
                // first (a bug hunt read "not stored" in the log of one that was).
                let why = if maybe_landed {
                    format!("{e}; the server may have stored it before the answer was lost, and the next attempt looks for it before sending again")
                } else {
                    format!("{e}; the message was not stored")
                };
                *file.state.lock() = State::Failed {
                    why,
                    over_quota: matches!(e, StoreError::OverQuota(_) | StoreError::NoSpaceHere(_)),
                };
                Err(FsError::Store(e))
            }
        }
    }

    /// The message of the mailbox that an RFC 5322 file about to be stored is already,
    /// byte for byte (a second `rsync` or `cp` of `.eml` files into a mailbox stores
    /// nothing again). Looked for only where the listing holds a message of its size and
    /// Subject (so that storing many messages costs no search each), among those of its
    /// Message-ID, and compared with `ours` (the message as it would
    /// be sent), through the caches, a MiB at a time.
    fn held_already(
        &self,
        sending: &Sending,
        subject: Option<&[u8]>,
        ours: impl Fn() -> std::io::Result<MessageSource>,
    ) -> Option<(UidValidity, Uid)> {
        let id = sending.message_id.as_deref()?;
        let len = sending.message_len;
        if !self.metadata.holds_like(&sending.mailbox, len, subject) {
            return None;
        }
        let (validity, found) = match self.store.find_by_message_id(&sending.mailbox, id) {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(mailbox = %sending.mailbox, error = %e, "could not look for the message before storing it");
                return None;
            }
        };
        let mut candidates: Vec<Uid> = found
            .iter()
            .filter(|m| m.size == len)
            .map(|m| m.uid)
            .collect();
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        for uid in candidates {
            let message = MessageRef {
                mailbox: sending.mailbox.clone(),
                validity,
                uid,
            };
            let same = self.holds_bytes(&message, len, &ours);
            match same {
                Ok(true) => return Some((validity, uid)),
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(mailbox = %sending.mailbox, %uid, error = %e, "could not compare a message before storing one like it");
                    return None;
                }
            }
        }
        None
    }

    /// An RFC 5322 file that is, byte for byte, a message of another mailbox whose bytes the
    /// caches hold (`cp MNT/INBOX/<msg>/message.eml MNT/Archive/`: the copier just read
    /// it) is copied on the server (`UID COPY`, flags and INTERNALDATE with it) rather than
    /// sent again; only where COPYUID tells the copy's UID, so that the file stands for it.
    /// A note of the copy (its date the source's) is kept while it is made, as for an
    /// APPEND, so that a crash or a cut connection never leads to a second one. Returns
    /// `Ok(None)` when no copy was made (no such message, or the COPY refused): the file is
    /// then APPENDed; a COPY whose outcome is not known is an error.
    fn copied_from_elsewhere(
        &self,
        sending: &Sending,
        subject: Option<&[u8]>,
        ours: impl Fn() -> std::io::Result<MessageSource>,
        spool: &std::path::Path,
    ) -> FsResult<Option<Stored>> {
        if !self.store.capabilities().uidplus {
            return Ok(None);
        }
        let len = sending.message_len;
        let candidates = self.metadata.like_elsewhere(&sending.mailbox, len, subject);
        for (source, internal_date) in candidates {
            if !self.content.has_whole_message(&source, len) {
                continue;
            }
            let same = self.holds_bytes(&source, len, &ours);
            if !matches!(same, Ok(true)) {
                continue;
            }
            let note = Sending {
                internal_date,
                ..sending.clone()
            };
            if let Some(copied) = self.copy_noted(&source, &note, spool, "a message")? {
                return Ok(Some(copied));
            }
        }
        Ok(None)
    }

    /// `UID COPY` of `source` into the note's mailbox, the note recorded beside `spool`
    /// first (`what` the file was found to be, for the log). `None`: the server refused,
    /// nothing landed, the note is gone; a copy whose outcome is not known is an error, and
    /// its note stays, so the next attempt looks for the copy before sending anything.
    fn copy_noted(
        &self,
        source: &MessageRef,
        note: &Sending,
        spool: &std::path::Path,
        what: &str,
    ) -> FsResult<Option<Stored>> {
        note.record(spool)
            .map_err(|e| FsError::Spool(format!("spool note: {e}")))?;
        let copied =
            self.store
                .copy_message(&source.mailbox, source.validity, source.uid, &note.mailbox);
        match copied {
            Ok(copy) => {
                tracing::info!(from = %source.mailbox, uid = %source.uid, to = %note.mailbox, new_uid = ?copy.map(|c| c.1), name = note.name, what, "the file is another mailbox's: copied on the server, not sent");
                Ok(Some(Ok(copy)))
            }
            Err(
                e @ (StoreError::Connection(_) | StoreError::Timeout(_) | StoreError::Interrupted),
            ) => Ok(Some(Err(e))),
            Err(e) => {
                let _ = std::fs::remove_file(note_path(spool));
                tracing::debug!(from = %source.mailbox, uid = %source.uid, error = %e, what, "could not copy what the file is; storing the file");
                Ok(None)
            }
        }
    }

    /// Whether the mailbox directory at `dir_path` shows a file named `name` (a new file,
    /// or a stored one in the listing held), asking the server nothing.
    pub(super) fn file_named(&self, dir_path: &str, name: &str) -> bool {
        self.new_files.get(dir_path, name).is_some()
            || self
                .holding_messages(dir_path)
                .is_some_and(|m| self.metadata.find_file(&m, name).is_some())
    }

    /// A file that is, byte for byte, the file another mailbox shows under the same name
    /// (`cp MNT/INBOX/report.pdf MNT/Archive/`, or `cp -r` of a mailbox holding stored
    /// files: the copier just read it, so the kernel holds it) is copied on the server
    /// (`UID COPY`: no upload, flags and date with it) rather than stored anew. Noted first,
    /// as an APPEND is. Returns `Ok(None)` when no copy was made.
    fn file_copied_from_elsewhere(
        &self,
        sending: &Sending,
        file: &NewFile,
    ) -> FsResult<Option<(MessageRef, Stored)>> {
        // A new version of a file here keeps that one's flags: an APPEND.
        if !self.store.capabilities().uidplus || !file.replaces.lock().is_empty() {
            return Ok(None);
        }
        let size = file.size();
        let held = |m: &MessageRef| {
            let inodes = self.inodes.lock();
            inodes.ino_of(&NodeKey::StoredFile(m.clone())).is_some()
                || inodes
                    .ino_of(&NodeKey::Message(m.clone(), Section::whole()))
                    .is_some()
        };
        let candidates = self
            .metadata
            .files_elsewhere(&sending.mailbox, &sending.name, size);
        for source in candidates.into_iter().filter(held) {
            let Some(meta) = self.metadata.message(&source) else {
                continue;
            };
            // Nothing is downloaded to compare: the copier has just read it.
            if !self.stored_file_at_hand(&source, size) {
                continue;
            }
            match self.same_file(&source, &file.file, size) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::debug!(from = %source.mailbox, uid = %source.uid, error = %e, "could not compare a stored file before storing one like it");
                    continue;
                }
            }
            // The copy is found again after a crash by its size and date (the source's).
            let note = Sending {
                message_len: meta.size,
                internal_date: meta.internal_date,
                message_id: None,
                ..sending.clone()
            };
            if let Some(copied) = self.copy_noted(&source, &note, &file.spool, "a stored file")? {
                return Ok(Some((source, copied)));
            }
        }
        Ok(None)
    }

    /// The one message `file` replaces, if it is the stored file `name` with the very bytes
    /// written (`cp` or rsync of an unchanged file over it, an editor saving unchanged):
    /// then nothing needs sending.
    /// Only where that is sure: the old version listed, the newest of its name, its bytes
    /// at hand (nothing is downloaded to compare), no other date set, and the server still
    /// holding it, not marked `\Deleted` (one `UID FETCH (FLAGS)`).
    fn unchanged_version(&self, file: &NewFile, name: &str) -> Option<MessageRef> {
        let old = match file.replaces.lock().as_slice() {
            [old] => old.clone(),
            _ => return None,
        };
        let meta = self.metadata.message(&old)?;
        let deleted = |flags: &[String]| flags.iter().any(|f| f.eq_ignore_ascii_case("\\Deleted"));
        if deleted(&meta.flags) {
            return None;
        }
        let origin = parse_origin(meta.origin.as_deref()?)?;
        let size = file.size();
        if origin.name != name || origin.size != size || size == 0 {
            return None;
        }
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if file.mtime_set.load(Ordering::Relaxed) && secs(file.mtime()) != secs(origin.mtime) {
            return None;
        }
        let newest = self.metadata.find_file(&old.mailbox, name);
        if newest.is_some_and(|(m, _)| m != old) {
            return None;
        }
        // A copy being filled holds its source's bytes, which the copier has just read.
        let held = [self.copy_source(&old), Some(old.clone())]
            .into_iter()
            .flatten()
            .find(|m| self.stored_file_at_hand(m, size))?;
        match self.same_file(&held, &file.file, size) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::debug!(uid = %old.uid, error = %e, "could not compare a file with its stored version");
                return None;
            }
        }
        match self.store.flags_now(&old.mailbox, old.validity, old.uid) {
            Ok(now) if !deleted(&now.flags) => Some(old),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(uid = %old.uid, error = %e, "the stored version could not be confirmed");
                None
            }
        }
    }

    /// Whether the bytes of the stored file of `message` (`size` of them) are in the
    /// caches: its part, or the whole message. Only with BINARY, where the part is read as
    /// it is (without, it would be decoded whole).
    fn stored_file_at_hand(&self, message: &MessageRef, size: u64) -> bool {
        if !self.store.capabilities().binary {
            return false;
        }
        let part = self.content.has_section(
            message,
            &super::newmail::file_section(),
            Transfer::Decoded,
            size,
        );
        part || self
            .metadata
            .message(message)
            .is_some_and(|m| self.content.has_whole_message(message, m.size))
    }

    /// Whether the stored file of `message` holds the `size` bytes of `spool`.
    fn same_file(&self, message: &MessageRef, spool: &File, size: u64) -> FsResult<bool> {
        const WINDOW: u64 = 1 << 20;
        let mut mine = vec![0u8; WINDOW.min(size) as usize];
        let mut at = 0;
        while at < size {
            let want = (size - at).min(WINDOW);
            let theirs = self.read_stored_file(message, size, at, want)?;
            let mine = &mut mine[..want as usize];
            spool
                .read_exact_at(mine, at)
                .map_err(|e| FsError::Spool(format!("spool read: {e}")))?;
            if theirs != *mine {
                return Ok(false);
            }
            at += want;
        }
        Ok(true)
    }

    /// Whether `message`, of `len` bytes, holds exactly what a source `ours` makes.
    fn holds_bytes(
        &self,
        message: &MessageRef,
        len: u64,
        ours: &impl Fn() -> std::io::Result<MessageSource>,
    ) -> FsResult<bool> {
        let spool = |e: std::io::Error| FsError::Spool(format!("spool read: {e}"));
        let mut ours = ours().map_err(spool)?;
        const WINDOW: u64 = 1 << 20;
        let whole = Section::whole();
        let mut mine = vec![0u8; WINDOW.min(len) as usize];
        let mut at = 0;
        while at < len {
            let want = (len - at).min(WINDOW);
            let source = Source {
                message,
                section: &whole,
                transfer: Transfer::Encoded,
                len,
                decode: None,
            };
            let theirs = self.content.read(source, at, want)?;
            let mine = &mut mine[..want as usize];
            std::io::Read::read_exact(&mut ours, mine).map_err(spool)?;
            if theirs != *mine {
                return Ok(false);
            }
            at += want;
        }
        Ok(true)
    }

    /// The message an APPEND without APPENDUID (a server without UIDPLUS) stored: the
    /// newest one with its Message-ID, size and date. `None` if it cannot be told (the
    /// next listing then shows it).
    fn find_appended(&self, sending: &Sending) -> Option<MessageRef> {
        let id = sending.message_id.as_deref()?;
        let date = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        match self.store.find_by_message_id(&sending.mailbox, id) {
            Ok((validity, found)) => found
                .iter()
                .filter(|m| {
                    m.size == sending.message_len
                        && date(m.internal_date) == date(sending.internal_date)
                })
                .map(|m| m.uid)
                .max()
                .map(|uid| MessageRef {
                    mailbox: sending.mailbox.clone(),
                    validity,
                    uid,
                }),
            Err(e) => {
                tracing::warn!(mailbox = %sending.mailbox, error = %e, "no APPENDUID, and the new message could not be found by its Message-ID");
                None
            }
        }
    }

    /// Expunges a message a newer version of its file replaced (APPEND came first, so
    /// nothing is lost if this fails; the old version then stays, and is logged).
    fn expunge_superseded(&self, old: &MessageRef, dir_path: &str) {
        match self
            .store
            .expunge_message(&old.mailbox, old.validity, old.uid)
        {
            Ok(()) => {
                tracing::info!(mailbox = %old.mailbox, uid = %old.uid, dir = dir_path, "expunged the version a new one replaced");
                self.metadata.message_left(old);
            }
            // Gone already (another version replaced it first, or another client).
            Err(StoreError::NoSuchMessage { .. }) => {
                tracing::debug!(mailbox = %old.mailbox, uid = %old.uid, "the version a new one replaced is gone already");
                self.metadata.message_left(old);
            }
            Err(e) => {
                tracing::warn!(mailbox = %old.mailbox, uid = %old.uid, error = %e, "could not expunge the version a new one replaced; both are kept");
            }
        }
    }

    /// Removes a new file: one never stored is dropped with its spool copy; a stored one
    /// deletes its message as `rm -r` of the message would.
    pub(super) fn unlink_new_file(&self, dir_path: &str, name: &str) -> FsResult<()> {
        self.drop_new_file(dir_path, name, |m| self.delete_message(m))
    }

    /// Drops a new file, after `remove` took the message it was stored as (if it was).
    pub(super) fn drop_new_file(
        &self,
        dir_path: &str,
        name: &str,
        remove: impl FnOnce(&MessageRef) -> FsResult<()>,
    ) -> FsResult<()> {
        let Some(file) = self.new_files.get(dir_path, name) else {
            return Err(FsError::NotFound);
        };
        if let Some(Some(message)) = file.stored() {
            self.remove_stored_file(dir_path, &message, remove)?;
        } else if let Some(left) = self.new_files.take_left_by(dir_path, &file) {
            // The backup a stored file was renamed to, its name not written since: the
            // message goes with it, as with `rm` of the file (gone already: nothing to do).
            match self.remove_stored_file(dir_path, &left.1, remove) {
                Ok(()) | Err(FsError::Store(StoreError::NoSuchMessage { .. })) => {}
                Err(e) => {
                    self.new_files.renamed_away.lock().insert(left.0, left.1);
                    return Err(e);
                }
            }
        }
        self.new_files.remove(dir_path, name);
        self.drop_spool(&file);
        Ok(())
    }

    /// A file manager's "Move to Trash" of a new file: its message goes to Trash. One
    /// not stored (still written, kept local, or its APPEND failed: its bytes wait in the
    /// spool) is refused, so that nothing is lost; `rm` removes it.
    pub(super) fn trash_new_file(&self, dir_path: &str, name: &str) -> FsResult<()> {
        let file = self
            .new_files
            .get(dir_path, name)
            .ok_or(FsError::NotFound)?;
        let backup = self.new_files.left_by(dir_path, &file);
        if !matches!(file.stored(), Some(Some(_))) && !backup {
            return Err(FsError::NotPermitted(
                "only a stored file can go to the trash; rm removes this one".into(),
            ));
        }
        self.drop_new_file(dir_path, name, |m| self.trash_message(m))
    }

    /// `mv` of a new file into another directory. Stored, closed and unchanged since, and
    /// keeping its name: its message is moved (`UID MOVE`) and the file goes with it.
    /// Otherwise EXDEV, so that `mv` copies it there (a new file, stored there) and
    /// removes it here, as between two filesystems: a file renamed on the way would show
    /// under its old name (the message's), and one not stored yet has no message to move.
    pub(super) fn move_new_file(
        &self,
        dir_path: &str,
        name: &str,
        new_parent: u64,
        new_name: &str,
    ) -> FsResult<()> {
        let file = self
            .new_files
            .get(dir_path, name)
            .ok_or(FsError::NotFound)?;
        let target = self.mailbox_dir_path(new_parent)?;
        let _storing = crate::call::lock_within(&file.storing)?;
        let closed = file.opens.load(Ordering::Relaxed) == 0;
        // Over a file there, which it must replace (rsync --delay-updates): copied too.
        let free = !self.file_named(&target, new_name);
        let message = match file.stored() {
            Some(Some(message)) if closed && new_name == name && free => message,
            _ => return Err(FsError::CrossDevice(
                "a file not stored yet, renamed on the way, or over a file there, is copied there"
                    .into(),
            )),
        };
        let moved = self.move_message(&message, &target, None)?;
        self.new_files.remove(dir_path, name);
        let Some(moved) = moved else {
            self.drop_spool(&file);
            return Ok(());
        };
        // The kernel moved its entry to the target: the file stands for the moved message
        // there, under its name, until the target is listed (`mv f Archive/ && cat
        // Archive/f` works at once, with or without a watcher, and reads what it read).
        *file.mailbox.lock() = moved.mailbox.clone();
        *file.state.lock() = State::Stored(Some(moved));
        self.new_files.insert(&target, Arc::clone(&file));
        self.inodes
            .lock()
            .new_file_renamed(dir_path, name, &target, name);
        Ok(())
    }

    /// Renames a new file within its directory. Renamed onto another new file or a file a
    /// message shows, it supersedes it. A file closed before this rename is stored now under
    /// its final name (if that name is one to store), and the rename fails if that does.
    pub(super) fn rename_new_file(
        &self,
        dir_path: &str,
        name: &str,
        new_name: &str,
        replaced: Option<MessageRef>,
    ) -> FsResult<()> {
        stored_name_fits(new_name)?;
        let file = self
            .new_files
            .get(dir_path, name)
            .ok_or(FsError::NotFound)?;
        // Nothing changes while a close stores it: that upload would take what this rename
        // supersedes. A rename that cannot wait (its deadline, its caller's signal) leaves
        // the file as it was.
        let locked = Arc::clone(&file);
        let _storing = crate::call::lock_within(&locked.storing)?;
        let replaces_before = file.replaces.lock().clone();
        if let Some(other) = self.new_files.get(dir_path, new_name) {
            if !Arc::ptr_eq(&other, &file) {
                if let Some(Some(message)) = other.stored() {
                    file.replaces.lock().push(message);
                }
            }
        }
        file.replaces.lock().extend(replaced);
        let stored_before = file.stored();
        *file.name.lock() = new_name.to_string();
        let closed = file.opens.load(Ordering::Relaxed) == 0;
        let wanted = name_kind(new_name) == NameKind::Stored && file.size() > 0;
        let mut left_behind = None;
        match stored_before {
            Some(previous) if wanted => {
                // Stored under the old name: store it again under the new one, then drop
                // the old.
                file.replaces.lock().extend(previous);
                unpark_spool(&file);
                *file.state.lock() = State::Dirty;
            }
            Some(Some(previous)) => {
                // To a name kept local (a backup): the bytes stay here under it; the
                // message leaves the old name, and the next file stored there replaces it
                // (or this one, renamed back, is it again, unchanged).
                file.replaces_also(previous.clone());
                unpark_spool(&file);
                *file.state.lock() = State::Dirty;
                left_behind = Some(previous);
            }
            _ => {}
        }
        let dirty = *file.state.lock() == State::Dirty;
        if closed && wanted && dirty {
            if let Err(e) = self.store_locked(dir_path, &file) {
                // Not stored: nothing is superseded, the name stays.
                *file.name.lock() = name.to_string();
                *file.replaces.lock() = replaces_before;
                return Err(e);
            }
        }
        // Commit the new name: the registry, and the inode the kernel holds.
        let mut files = self.new_files.files.lock();
        files.remove(&(dir_path.to_string(), name.to_string()));
        if let Some(other) = files.insert((dir_path.to_string(), new_name.to_string()), file) {
            drop(files);
            self.drop_spool(&other);
            // A backup renamed over: gone as with `rm`, and its message with it.
            if let Some((_, message)) = self.new_files.take_left_by(dir_path, &other) {
                if let Err(e) = self.delete_message(&message) {
                    tracing::warn!(uid = %message.uid, error = %e, "the message of a backup renamed over could not be removed");
                }
            }
        } else {
            drop(files);
        }
        if let Some(message) = left_behind {
            tracing::info!(dir = dir_path, name, new_name, uid = %message.uid, "a stored file renamed to a name kept local: kept here; its message leaves the old name");
            self.new_files
                .renamed_away
                .lock()
                .insert((dir_path.to_string(), name.to_string()), message);
        }
        self.inodes
            .lock()
            .new_file_renamed(dir_path, name, dir_path, new_name);
        Ok(())
    }

    /// `setattr`: a new file's size (truncate) and times (rsync sets them before renaming;
    /// the mtime becomes the message's INTERNALDATE and Date). Anything on existing mail
    /// is refused.
    pub fn setattr(
        &self,
        ino: u64,
        _fh: Option<u64>,
        changes: bool,
        size: Option<u64>,
        mtime: Option<SystemTime>,
    ) -> FsResult<AttrReply> {
        if let Ok(Node::StoredFile {
            message,
            name,
            size: len,
            mtime: shown,
        }) = self.node(ino)
        {
            let Some(size) = size else {
                // Times and modes are accepted as they are and kept nowhere, as on
                // messages (below): re-dating it would send it again, under a new UID.
                return self.getattr(ino);
            };
            self.refuse_if_read_only()?;
            // Truncated (`truncate -s`, by its path: no descriptor of it is open for
            // writing, or it would be a new file already): a new version of the file,
            // stored now, as no close will come.
            let (dir_path, file) =
                self.overwrite_stored_file(ino, &message, &name, (len, size.min(len)), shown)?;
            if size > len {
                self.truncate_new_file(&file, size)?;
            }
            file.closed();
            self.store_if_wanted(&dir_path, &file)?;
            return self.getattr(ino);
        }
        if let Some((_, file)) = self.new_file(ino) {
            if let Some(size) = size {
                self.truncate_new_file(&file, size)?;
            }
            if let Some(mtime) = mtime {
                // Set before storing, it is the message's date. A stored file keeps its own
                // (accepted and kept nowhere, as on messages, and not shown: every mount
                // shows the date it was stored with).
                if file.stored().is_none() {
                    *file.mtime.lock() = mtime;
                    file.mtime_set.store(true, Ordering::Relaxed);
                }
            }
            return self.getattr(ino);
        }
        if changes {
            self.refuse_if_read_only()?;
            // Times, modes and owners are taken as they are and kept nowhere, on mailboxes,
            // messages and their files alike: IMAP has no place for them (a message's date
            // is its INTERNALDATE), and `touch`, `rsync -a` and `cp -a` set them on what
            // they find, failing (rsync: exit 23) where that is refused. rclone does the
            // same on a remote that cannot keep a time.
            if size.is_none() {
                return self.getattr(ino);
            }
            // A copy being filled takes its own size (cp -a), and 0 (`cp` opening a file
            // of it that shows already to write it over: what it writes is compared).
            if let Some(message) = self.node(ino)?.message() {
                if self.is_copy(message) {
                    let now = self.getattr(ino)?;
                    if size.is_none_or(|s| s == now.attr.size || s == 0) {
                        return Ok(now);
                    }
                }
            }
            return Err(FsError::NotPermitted(
                "the size of a message or of its files cannot be changed".into(),
            ));
        }
        self.getattr(ino)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_are_kept_local_and_dotfiles_hidden() {
        for local in [
            ".notes.txt.swp",
            ".notes.txt.swx",
            ".notes.txt.swo",
            "notes.txt~",
            "4913",
            ".#notes.txt",
            "index.lock",
            ".~lock.report.odt#",
            "#notes.txt#",
        ] {
            assert_eq!(name_kind(local), NameKind::Local, "{local}");
        }
        for hidden in [".notes.txt.KWEOd0", ".profile", ".swp"] {
            assert_eq!(name_kind(hidden), NameKind::Hidden, "{hidden}");
        }
        for stored in [
            "notes.txt",
            "swap.swp",
            "lock",
            "é.pdf",
            "#",
            "#1 issue.txt",
        ] {
            assert_eq!(name_kind(stored), NameKind::Stored, "{stored}");
        }
    }
}
