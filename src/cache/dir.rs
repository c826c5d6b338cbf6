//! The account's cache directory: created private (0700), locked against a second imapfs,
//! its format checked, and its index database opened, or dropped and made anew when it
//! cannot be trusted (another format, a file that does not open). What is in it:
//!
//! ```text
//! <dir>/lock          flock'd while a mount uses the cache; holds that process's pid
//! <dir>/FORMAT        "imapfs-cache N": anything else and the cache is dropped
//! <dir>/index.redb    the index: metadata (store/cached.rs) and where content is (disk.rs)
//! <dir>/blobs/xx/...  content, one sparse file per section (disk.rs)
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// The format of everything in the directory. Raise it whenever what is stored changes
/// shape (a table, a key's encoding, a serialized type): an older cache is then dropped
/// rather than misread. `store::cached`'s test of the encoding fails until it is raised.
pub const FORMAT: u32 = 1;

const FORMAT_FILE: &str = "FORMAT";
const INDEX_FILE: &str = "index.redb";
const LOCK_FILE: &str = "lock";
/// Where content lives.
pub const BLOBS: &str = "blobs";

/// Why a cache directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the disk cache {dir} is in use by another imapfs{}", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    InUse { dir: String, pid: Option<u32> },
    #[error("the disk cache {dir} cannot be used: {error}")]
    Io { dir: String, error: io::Error },
}

/// An open, locked cache directory.
pub struct CacheDir {
    path: PathBuf,
    /// Held for the life of the mount: the flock is the lock.
    _lock: File,
    db: redb::Database,
    /// The index was made anew: whatever content files are there are orphans.
    fresh: bool,
}

impl CacheDir {
    /// Opens (creating) the cache directory at `path`.
    pub fn open(path: &Path) -> Result<CacheDir, OpenError> {
        let shown = path.display().to_string();
        let io_error = |error: io::Error| OpenError::Io {
            dir: shown.clone(),
            error,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(io_error)?;
        // A directory that existed with wider permissions is made private.
        fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(io_error)?;
        let lock = lock(path).map_err(|e| match e {
            Locked::Busy(pid) => OpenError::InUse {
                dir: shown.clone(),
                pid,
            },
            Locked::Io(e) => io_error(e),
        })?;
        let mut fresh = false;
        if read_format(path) != Some(FORMAT) {
            if path.join(INDEX_FILE).exists() || path.join(BLOBS).exists() {
                tracing::warn!(dir = %shown, "the disk cache has another format; dropping it");
            }
            wipe(path).map_err(io_error)?;
            write_format(path).map_err(io_error)?;
            fresh = true;
        }
        if fs::metadata(path.join(INDEX_FILE)).map_or(true, |m| m.len() == 0) {
            // Whatever content is there has no index to say what it is.
            fresh = true;
        }
        let db = match open_index(path) {
            Ok(db) => db,
            Err(why) => {
                tracing::warn!(dir = %shown, error = %why, "the disk cache's index cannot be read; dropping the cache");
                wipe(path).map_err(io_error)?;
                write_format(path).map_err(io_error)?;
                fresh = true;
                open_index(path).map_err(|e| io_error(io::Error::other(e)))?
            }
        };
        Ok(CacheDir {
            path: path.to_path_buf(),
            _lock: lock,
            db,
            fresh,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The index database.
    pub fn db(&self) -> &redb::Database {
        &self.db
    }

    /// Whether the index was made anew at this open.
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }
}

/// The default place: `$XDG_CACHE_HOME/imapfs/<user>@<host>:<port>` (or `~/.cache/...`).
pub fn default_path(user: &str, host: &str, port: u16) -> Option<PathBuf> {
    Some(
        dirs::cache_dir()?
            .join("imapfs")
            .join(account_name(user, host, port)),
    )
}

/// An account's directory name, `<user>@<host>:<port>` (the disk cache's, the spool's).
pub fn account_name(user: &str, host: &str, port: u16) -> String {
    format!("{user}@{host}:{port}").replace('/', "_")
}

enum Locked {
    Busy(Option<u32>),
    Io(io::Error),
}

/// Takes the directory's lock and writes our pid into it.
/// How long an open waits for another imapfs to let go of the cache.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

fn lock(dir: &Path) -> Result<File, Locked> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(dir.join(LOCK_FILE))
        .map_err(Locked::Io)?;
    // An imapfs just unmounted still holds the lock while it flushes and exits (`umount`
    // returns before it has): `umount && imapfs ...` waits for it, for a while.
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    // SAFETY: flock on a descriptor this function owns.
    while unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(Locked::Io(e));
        }
        if std::time::Instant::now() >= deadline {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(Locked::Busy(text.trim().parse().ok()));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    file.set_len(0).map_err(Locked::Io)?;
    writeln!(file, "{}", std::process::id()).map_err(Locked::Io)?;
    Ok(file)
}

fn read_format(dir: &Path) -> Option<u32> {
    let text = fs::read_to_string(dir.join(FORMAT_FILE)).ok()?;
    text.trim().strip_prefix("imapfs-cache ")?.parse().ok()
}

/// Writes the format file atomically (a temporary file renamed into place).
fn write_format(dir: &Path) -> io::Result<()> {
    let temporary = dir.join(format!("{FORMAT_FILE}.new"));
    fs::write(&temporary, format!("imapfs-cache {FORMAT}\n"))?;
    fs::rename(&temporary, dir.join(FORMAT_FILE))
}

/// Removes the index and the content, keeping the lock.
fn wipe(dir: &Path) -> io::Result<()> {
    for name in [INDEX_FILE, FORMAT_FILE] {
        match fs::remove_file(dir.join(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    match fs::remove_dir_all(dir.join(BLOBS)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Opens the index, and reads it once to be sure it can be read.
fn open_index(dir: &Path) -> Result<redb::Database, redb::Error> {
    let db = redb::Database::create(dir.join(INDEX_FILE))?;
    let txn = redb::ReadableDatabase::begin_read(&db)?;
    let _ = txn.list_tables()?.count();
    Ok(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_open_is_refused_while_the_first_holds_it() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        let first = CacheDir::open(&dir).unwrap();
        assert!(first.is_fresh());
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        match CacheDir::open(&dir) {
            Err(OpenError::InUse { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("{:?}", other.map(|_| ())),
        }
        drop(first);
        let again = CacheDir::open(&dir).unwrap();
        assert!(!again.is_fresh(), "a cache of the same format is kept");
    }

    #[test]
    fn another_format_or_an_unreadable_index_is_dropped() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("c");
        drop(CacheDir::open(&dir).unwrap());
        fs::create_dir_all(dir.join(BLOBS).join("00")).unwrap();
        fs::write(dir.join(BLOBS).join("00").join("x"), b"old").unwrap();
        fs::write(dir.join(FORMAT_FILE), "imapfs-cache 0\n").unwrap();
        let reopened = CacheDir::open(&dir).unwrap();
        assert!(reopened.is_fresh());
        assert!(
            !dir.join(BLOBS).exists(),
            "old content went with the old format"
        );
        drop(reopened);

        fs::write(dir.join(INDEX_FILE), b"this is not a database").unwrap();
        let reopened = CacheDir::open(&dir).unwrap();
        assert!(reopened.is_fresh());
        drop(reopened);
        // Truncated to nothing: the same.
        fs::write(dir.join(INDEX_FILE), b"").unwrap();
        assert!(CacheDir::open(&dir).unwrap().is_fresh());
    }

    #[test]
    fn the_default_path_names_the_account() {
        let path = default_path("alice", "mail.example.com", 993).unwrap();
        assert!(path.ends_with("imapfs/alice@mail.example.com:993"));
    }
}
