//! What the spool records about a message on its way, so that it is stored exactly once.
//! Before an APPEND, a note beside the spool file says what goes where (mailbox, name,
//! size, date, Message-ID); it goes once the server confirmed. A note found by a later
//! mount (imapfs was killed during the APPEND) is settled: the message is looked for on the
//! server and sent again only if it is not there. A spool file without a note was never
//! finished by its writer: it is kept and reported, never stored.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::newmail::MessageSource;
use super::Fs;
use crate::store::{MailboxId, NewMessage};

/// What is being sent, as recorded beside its spool file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sending {
    pub mailbox: MailboxId,
    /// The file's name (the message's Subject when wrapped).
    pub name: String,
    /// The message's length, and its INTERNALDATE (to the second, as IMAP keeps it).
    pub message_len: u64,
    pub internal_date: SystemTime,
    pub message_id: Option<String>,
    /// The file's own size and mtime, to make the same message again.
    pub file_size: u64,
    pub mtime: SystemTime,
}

/// The note beside `spool`.
pub fn note_path(spool: &Path) -> PathBuf {
    let mut name = spool.as_os_str().to_owned();
    name.push(".sending");
    PathBuf::from(name)
}

/// A time as `seconds.nanoseconds` since the epoch, as notes and `X-Imapfs-File` keep it.
pub(super) fn secs_nanos(t: SystemTime) -> String {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => format!("{}.{:09}", d.as_secs(), d.subsec_nanos()),
        // Before 1970 (`touch -d 1960-01-01`, a restored archive): the distance before it.
        Err(e) => {
            let d = e.duration();
            format!("-{}.{:09}", d.as_secs(), d.subsec_nanos())
        }
    }
}

/// Reads `secs_nanos`'s form; `None` for anything else, also from a hostile message or a
/// corrupt note: nanoseconds of a second or more, or a time past what `SystemTime` holds.
pub(super) fn parse_secs_nanos(v: &str) -> Option<SystemTime> {
    let (before, v) = match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let (s, n) = v.split_once('.')?;
    // Nine digits after the point, as written: `1700000000.5` is not 5 nanoseconds.
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(s) || n.len() != 9 || !digits(n) {
        return None;
    }
    let nanos: u32 = n.parse().ok()?;
    let d = Duration::from_secs(s.parse().ok()?).checked_add(Duration::from_nanos(nanos.into()))?;
    if before {
        UNIX_EPOCH.checked_sub(d)
    } else {
        UNIX_EPOCH.checked_add(d)
    }
}

impl Sending {
    /// Writes the note durably (a temporary file renamed over it, both synced).
    pub fn record(&self, spool: &Path) -> std::io::Result<()> {
        let text = format!(
            "mailbox={}\nname={}\nmessage_len={}\ninternal_date={}\nmessage_id={}\nfile_size={}\nmtime={}\n",
            self.mailbox,
            self.name.replace('\n', " "),
            self.message_len,
            secs_nanos(self.internal_date),
            self.message_id.as_deref().unwrap_or(""),
            self.file_size,
            secs_nanos(self.mtime),
        );
        let path = note_path(spool);
        let tmp = PathBuf::from(format!("{}.tmp", path.display()));
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Reads a note; `None` if it is not one imapfs wrote.
    pub fn read(path: &Path) -> Option<Sending> {
        let text = std::fs::read_to_string(path).ok()?;
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_string)
        };
        Some(Sending {
            mailbox: MailboxId::new(&get("mailbox")?),
            name: get("name")?,
            message_len: get("message_len")?.parse().ok()?,
            internal_date: parse_secs_nanos(&get("internal_date")?)?,
            message_id: get("message_id").filter(|v| !v.is_empty()),
            file_size: get("file_size")?.parse().ok()?,
            mtime: parse_secs_nanos(&get("mtime")?)?,
        })
    }
}

/// Whether the process that named a spool file (`<pid>-...`) is an imapfs still running.
fn writer_alive(spool: &Path) -> bool {
    let Some(pid) = spool
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('-').next())
        .and_then(|p| p.parse::<u32>().ok())
    else {
        return false;
    };
    if pid == std::process::id() {
        return true;
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmd| String::from_utf8_lossy(&cmd).contains("imapfs"))
        .unwrap_or(false)
}

impl Fs {
    /// Settles what an earlier imapfs left in the spool directory (call once, at mount):
    /// a message whose APPEND was under way is sent again unless the server has it; a file
    /// that was still being written is reported and kept. Returns one line per file.
    pub fn recover_spool(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.config.spool_dir) else {
            return Vec::new();
        };
        let mut report = Vec::new();
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let name = path.to_string_lossy();
            if name.ends_with(".sending")
                || name.ends_with(".tmp")
                || path.is_dir()
                || writer_alive(&path)
            {
                continue;
            }
            if name.ends_with(".stored") {
                // A stored file's copy an imapfs that stopped set aside: the server has it.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let line = match Sending::read(&note_path(&path)) {
                Some(sending) => self.settle(&path, &sending),
                None => format!(
                    "{}: left by an imapfs that stopped while it was written; not stored",
                    path.display()
                ),
            };
            tracing::warn!("spool: {line}");
            if path.exists() {
                self.spool_report.lock().insert(path.clone(), line.clone());
            }
            report.push(line);
        }
        let kept = self.spool_report.lock().len();
        if kept > 0 {
            tracing::warn!(
                spool = %self.config.spool_dir.display(),
                "{kept} file(s) from an earlier run are still in the spool, not stored; \
                 getfattr -n {} on the mount's root lists them",
                super::xattr::PENDING
            );
        }
        report
    }

    /// `user.imapfs.pending`: every file in the spool directory that is not stored (yet),
    /// one line each: its path, then why. Files of another imapfs still running are not
    /// this mount's business and are left out.
    pub fn pending_spool_files(&self) -> String {
        let Ok(entries) = std::fs::read_dir(&self.config.spool_dir) else {
            return String::new();
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        let ours = format!("{}-", std::process::id());
        let report = self.spool_report.lock();
        let mut out = String::new();
        for path in paths {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            if name.ends_with(".sending")
                || name.ends_with(".tmp")
                || name.ends_with(".stored")
                || path.is_dir()
            {
                continue;
            }
            let why = match report.get(&path) {
                Some(line) => line.clone(),
                None if name.starts_with(&ours) => {
                    "written through this mount and not stored yet: still open, kept local \
                     (empty, or a temporary or hidden name), or its APPEND failed (see the log)"
                        .to_owned()
                }
                None if writer_alive(&path) => continue,
                None if note_path(&path).exists() => {
                    "left by an imapfs that stopped while storing it; not settled yet".to_owned()
                }
                None => {
                    "left by an imapfs that stopped while it was written; not stored".to_owned()
                }
            };
            // A line of the recovery's report may name the path already.
            let shown = path.display().to_string();
            let why = why
                .strip_prefix(&format!("{shown}: "))
                .map_or(why.clone(), str::to_string);
            out.push_str(&format!("{shown}: {}\n", why.replace('\n', " ")));
        }
        out
    }

    /// Looks for a message whose APPEND was cut short, and sends it if it is not there.
    fn settle(&self, spool: &Path, sending: &Sending) -> String {
        match self.already_stored(sending) {
            Ok(true) => {
                let _ = std::fs::remove_file(note_path(spool));
                let _ = std::fs::remove_file(spool);
                format!(
                    "{} was stored before imapfs stopped; not sent again",
                    sending.name
                )
            }
            Ok(false) => match self.send_again(spool, sending) {
                Ok(()) => format!("{} was not stored; sent now", sending.name),
                Err(e) => format!(
                    "{} was not stored and sending it failed ({e}); kept in {}",
                    sending.name,
                    spool.display()
                ),
            },
            Err(e) => format!(
                "could not tell whether {} was stored ({e}); kept in {}",
                sending.name,
                spool.display()
            ),
        }
    }

    /// Whether the server holds the message a note describes.
    pub(super) fn already_stored(&self, sending: &Sending) -> crate::store::StoreResult<bool> {
        let date = sending
            .internal_date
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let same = |size: u64, at: SystemTime| {
            size == sending.message_len
                && at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) == date
        };
        match &sending.message_id {
            Some(id) => {
                let (_, found) = self.store.find_by_message_id(&sending.mailbox, id)?;
                Ok(found.iter().any(|m| same(m.size, m.internal_date)))
            }
            None => {
                let listing = self.store.list_messages(&sending.mailbox)?;
                Ok(listing
                    .messages
                    .iter()
                    .any(|m| same(m.size, m.internal_date)))
            }
        }
    }

    /// Sends a recovered spool file again, as it was written, noting it first.
    fn send_again(&self, spool: &Path, sending: &Sending) -> Result<(), String> {
        let file = File::open(spool).map_err(|e| e.to_string())?;
        let binary_ok = self.store.capabilities().binary;
        let mut source = MessageSource::for_file(
            &file,
            sending.file_size,
            &sending.name,
            sending.mtime,
            binary_ok,
        )
        .map_err(|e| e.to_string())?;
        // Dated as it is sent now (a note of a COPY that never landed has the source's).
        let again = Sending {
            message_len: source.byte_len(),
            message_id: source.message_id().map(str::to_string),
            internal_date: sending.mtime,
            ..sending.clone()
        };
        again.record(spool).map_err(|e| e.to_string())?;
        let len = source.byte_len();
        let binary = source.binary();
        self.store
            .append(
                &sending.mailbox,
                NewMessage {
                    content: &mut source,
                    len,
                    binary,
                    flags: &[],
                    internal_date: Some(sending.mtime),
                },
            )
            .map_err(|e| e.to_string())?;
        self.metadata.mark_stale(&sending.mailbox);
        let _ = std::fs::remove_file(note_path(spool));
        let _ = std::fs::remove_file(spool);
        Ok(())
    }
}
