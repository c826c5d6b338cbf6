//! The filesystem core driven directly with the in-memory store: request counts, file
//! content, consistency under remote changes, local changes, and a reference model.
//!
//! Helpers shared by the test modules live here: a harness that owns a store, a core and a
//! spool directory, path lookups and kernel-like reads, and hand-built MIME messages.

mod file_content;
mod linux_tool;
mod local_changes;
mod new_files;
mod prefetch;
mod reference_model;
mod remote_changes;
mod request_counts;
mod searches;

use std::ffi::OsStr;
use std::fmt::Debug;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;

use super::clock::ManualClock;
use super::inodes::ROOT;
use super::metadata::LISTING_RECHECK_ON_MISS;
use super::namespace::STRUCTURE_READ_AHEAD;
use super::reads::BODY_READ_AHEAD;
use super::*;
use crate::mime;
use crate::store::memory::{MemoryStore, Op};
use crate::store::{MailStore, MailboxId, MessageMeta, Section, Transfer, Uid, UidValidity};

/// What the kernel asks for in one read (FUSE `max_read` with 4 KiB pages).
const KERNEL_READ: u32 = 128 * 1024;

/// A core over its own in-memory account, with a spool directory that lives as long, a
/// clock the test moves, and the kernel invalidations the core sent.
struct Harness {
    store: Arc<MemoryStore>,
    fs: Arc<Fs>,
    clock: Arc<ManualClock>,
    invalidations: parking_lot::Mutex<Receiver<Invalidation>>,
    spool: tempfile::TempDir,
}

impl Harness {
    /// Default settings: writable, `--delete=trash`, a 64 MiB cache.
    fn new() -> Harness {
        Harness::with(|_| {})
    }

    /// Default settings changed by `tune`.
    fn with(tune: impl FnOnce(&mut FsConfig)) -> Harness {
        Harness::build(tune, |_| {})
    }

    /// Default settings, with parts changed by `tune`.
    fn with_parts(tune: impl FnOnce(&mut FsParts)) -> Harness {
        Harness::build(|_| {}, tune)
    }

    fn build(tune: impl FnOnce(&mut FsConfig), tune_parts: impl FnOnce(&mut FsParts)) -> Harness {
        let spool = tempfile::tempdir().expect("temporary spool directory");
        let mut config = FsConfig {
            uid: 1000,
            gid: 1000,
            read_only: false,
            cache_bytes: 64 << 20,
            delete: DeleteMode::Trash,
            spool_dir: spool.path().to_path_buf(),
            trash: None,
            hide_virtual_folders: false,
            connections: crate::cli::DEFAULT_CONNECTIONS,
        };
        tune(&mut config);
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::new());
        let mut parts = FsParts {
            clock: clock.clone(),
            ..FsParts::defaults(&config)
        };
        tune_parts(&mut parts);
        let fs = Arc::new(Fs::with_parts(
            Arc::clone(&store) as Arc<dyn MailStore>,
            config,
            parts,
        ));
        fs.enable_background_work();
        let (tx, invalidations) = mpsc::channel();
        fs.send_invalidations_to(tx);
        Harness {
            store,
            fs,
            clock,
            invalidations: parking_lot::Mutex::new(invalidations),
            spool,
        }
    }

    /// A harness whose store reports other clients' changes to the core as they happen
    /// (as a server that pushes changes does).
    fn watching() -> Harness {
        let h = Harness::new();
        let fs = Arc::downgrade(&h.fs);
        h.store.watch(Arc::new(move |event| {
            if let Some(fs) = fs.upgrade() {
                fs.apply_store_event(event);
            }
        }));
        h
    }

    /// The kernel invalidations sent since the last call.
    fn sent_invalidations(&self) -> Vec<Invalidation> {
        self.invalidations.lock().try_iter().collect()
    }

    fn count(&self, op: Op) -> u64 {
        self.store.count(op)
    }

    /// Calls of every operation that changes the account.
    fn change_calls(&self) -> u64 {
        [
            Op::CreateMailbox,
            Op::DeleteMailbox,
            Op::RenameMailbox,
            Op::SetFlags,
            Op::MoveMessage,
            Op::ExpungeMessage,
            Op::Append,
        ]
        .into_iter()
        .map(|op| self.count(op))
        .sum()
    }

    /// The inode at `path` (`/`-separated names from the root), looked up one name at a
    /// time as the kernel does.
    fn ino(&self, path: &str) -> FsResult<u64> {
        let mut ino = ROOT;
        for name in path.split('/').filter(|n| !n.is_empty()) {
            ino = self.fs.lookup(ino, OsStr::new(name))?.attr.ino;
        }
        Ok(ino)
    }

    /// Names in a directory (without `.` and `..`), read as `ls` does: from offset 0 until
    /// the end.
    fn names(&self, dir: u64) -> FsResult<Vec<String>> {
        Ok(self
            .entries(dir)?
            .into_iter()
            .map(|e| e.name)
            .filter(|n| n != "." && n != "..")
            .collect())
    }

    /// All entries of a directory, paging through readdir by offset.
    fn entries(&self, dir: u64) -> FsResult<Vec<DirEntry>> {
        let mut out = Vec::new();
        let mut next = 0;
        // Small pages, as the kernel asks for, to exercise paging by offset.
        loop {
            let page = self.fs.readdir(dir, next, 7)?;
            if page.is_empty() {
                return Ok(out);
            }
            next = page.last().map_or(next, |(off, _)| *off);
            out.extend(page.into_iter().map(|(_, e)| e));
        }
    }

    /// Every entry of a directory with its attributes, in one page, then the read past the
    /// end that ends the snapshot (as the kernel asks).
    fn plus_to_the_end(&self, dir: u64) -> Vec<(u64, DirEntry, AttrReply)> {
        let all = self.fs.readdirplus(dir, 0, usize::MAX).unwrap();
        let end = all.last().map_or(0, |(off, _, _)| *off);
        assert!(self
            .fs
            .readdirplus(dir, end, usize::MAX)
            .unwrap()
            .is_empty());
        all
    }

    /// Every entry of a directory, in one page, then the read past the end.
    fn plain_to_the_end(&self, dir: u64) -> Vec<(u64, DirEntry)> {
        let all = self.fs.readdir(dir, 0, usize::MAX).unwrap();
        let end = all.last().map_or(0, |(off, _)| *off);
        assert!(self.fs.readdir(dir, end, usize::MAX).unwrap().is_empty());
        all
    }

    fn names_at(&self, path: &str) -> FsResult<Vec<String>> {
        self.names(self.ino(path)?)
    }

    /// A whole file read as the kernel reads with direct I/O: open, then reads of
    /// `KERNEL_READ` bytes until one returns nothing. Checks the core's promise that only
    /// the end of a file gives a short read.
    fn read_all(&self, ino: u64) -> FsResult<Vec<u8>> {
        let fh = self.fs.open(ino, false)?.fh;
        let result = self.read_open(ino, fh);
        self.fs.release(ino, fh)?;
        result
    }

    fn read_open(&self, ino: u64, fh: u64) -> FsResult<Vec<u8>> {
        let mut out = Vec::new();
        let mut short = false;
        loop {
            let data = self.fs.read(ino, fh, out.len() as u64, KERNEL_READ)?;
            if data.is_empty() {
                return Ok(out);
            }
            assert!(
                !short,
                "a short read came before the end of the file (at {})",
                out.len()
            );
            assert!(data.len() <= KERNEL_READ as usize);
            short = data.len() < KERNEL_READ as usize;
            out.extend_from_slice(&data);
        }
    }

    fn read_path(&self, path: &str) -> FsResult<Vec<u8>> {
        self.read_all(self.ino(path)?)
    }

    /// Adds `Sample::numbered(serial)` to INBOX for each of `serials`, as another client.
    fn add_numbered(&self, serials: std::ops::RangeInclusive<u32>) {
        for serial in serials {
            self.store
                .add_message("INBOX", &Sample::numbered(serial).raw, &[], date());
        }
    }

    /// Whether the spool directory holds no file (nothing waits to be stored).
    fn spool_is_empty(&self) -> bool {
        // A stored file's copy set aside (`.stored`) waits for nothing: the server has it.
        std::fs::read_dir(self.spool.path())
            .unwrap()
            .flatten()
            .all(|e| e.file_name().to_string_lossy().ends_with(".stored"))
    }

    /// The mount's FreeDesktop trash folder `.Trash-1000/files`, where a file manager's
    /// "Move to Trash" renames what it trashes.
    fn trash_files(&self) -> u64 {
        let trash = self.fs.lookup(ROOT, OsStr::new(".Trash-1000")).unwrap();
        let files = self.fs.lookup(trash.attr.ino, OsStr::new("files"));
        files.unwrap().attr.ino
    }

    /// Moves the clock past `LISTING_RECHECK_ON_MISS`: the next directory listing (and the
    /// next lookup that misses) asks the server again.
    fn expire_listings(&self) {
        self.clock.advance(LISTING_RECHECK_ON_MISS);
    }

    /// Messages in `mailbox` as the store holds them (a trait call: it counts).
    fn stored(&self, mailbox: &str) -> Vec<MessageMeta> {
        self.store
            .list_messages(&MailboxId::new(mailbox))
            .expect("listing the store")
            .messages
    }

    /// The whole stored message (a trait call: it counts).
    fn stored_raw(&self, mailbox: &str, uid: Uid) -> Vec<u8> {
        self.store
            .fetch_section(
                &MailboxId::new(mailbox),
                self.store.uid_validity(mailbox),
                uid,
                &Section::whole(),
                Transfer::Encoded,
                None,
            )
            .expect("fetching from the store")
    }
}

/// The errno of a failed call; panics on success.
fn errno<T: Debug>(result: FsResult<T>) -> i32 {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(e) => e.errno_and_level().0,
    }
}

/// A fixed INTERNALDATE.
fn date() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// `len` bytes that look random and differ by `seed` (xorshift64*).
fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// Quoted-printable of `text` in ISO-8859-1; lines stay as written (keep them short and
/// without trailing blanks).
fn quoted_printable_latin1(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '\r' | '\n' => out.push(c),
            ' '..='~' if c != '=' => out.push(c),
            _ => {
                let byte = u8::try_from(u32::from(c)).expect("an ISO-8859-1 character");
                out.push_str(&format!("={byte:02X}"));
            }
        }
    }
    out
}

/// A hand-built message and what its files must hold.
#[derive(Debug, Clone)]
struct Sample {
    /// The message with CRLF line ends, as the store keeps and serves it.
    raw: Vec<u8>,
    /// The expected body.txt: the text body decoded, in UTF-8, its lines ended by LF.
    body: String,
    /// The attachment's file name and exact bytes.
    attachment_name: String,
    attachment: Vec<u8>,
}

impl Sample {
    /// multipart/mixed: a quoted-printable ISO-8859-1 text/plain body (section 1) and a
    /// base64 attachment (section 2).
    fn new(subject: &str, body: &str, attachment_name: &str, attachment: Vec<u8>) -> Sample {
        let encoded = base64::engine::general_purpose::STANDARD.encode(&attachment);
        let lines: Vec<&str> = encoded
            .as_bytes()
            .chunks(76)
            .map(|l| std::str::from_utf8(l).expect("base64 is ASCII"))
            .collect();
        let raw = [
            "From: Alice <alice@example.com>\r\n".to_string(),
            "To: bob@example.com\r\n".to_string(),
            format!("Subject: {subject}\r\n"),
            "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n".to_string(),
            "MIME-Version: 1.0\r\n".to_string(),
            "Content-Type: multipart/mixed; boundary=\"=_part\"\r\n".to_string(),
            "\r\n".to_string(),
            "This is a multi-part message in MIME format.\r\n".to_string(),
            "--=_part\r\n".to_string(),
            "Content-Type: text/plain; charset=iso-8859-1\r\n".to_string(),
            "Content-Transfer-Encoding: quoted-printable\r\n".to_string(),
            "\r\n".to_string(),
            format!("{}\r\n", quoted_printable_latin1(body)),
            "--=_part\r\n".to_string(),
            format!("Content-Type: application/octet-stream; name=\"{attachment_name}\"\r\n"),
            format!("Content-Disposition: attachment; filename=\"{attachment_name}\"\r\n"),
            "Content-Transfer-Encoding: base64\r\n".to_string(),
            "\r\n".to_string(),
            format!("{}\r\n", lines.join("\r\n")),
            "--=_part--\r\n".to_string(),
        ]
        .concat()
        .into_bytes();
        Sample {
            raw,
            body: body.replace("\r\n", "\n"),
            attachment_name: attachment_name.to_string(),
            attachment,
        }
    }

    /// A small message whose subject and contents are unique to `serial`.
    fn numbered(serial: u32) -> Sample {
        Sample::new(
            &format!("m{serial}"),
            &format!("Caf\u{e9} cr\u{e8}me n\u{b0}{serial}\r\nna\u{ef}ve line two"),
            &format!("a{serial}.bin"),
            pseudo_random_bytes(u64::from(serial), 200 + (serial as usize * 397) % 3000),
        )
    }

    /// The name of this message's directory when it has `uid`.
    fn dir_name(&self, uid: Uid) -> String {
        let subject = self
            .raw
            .split(|&b| b == b'\n')
            .find_map(|line| line.strip_prefix(b"Subject: "))
            .map(|s| s.strip_suffix(b"\r").unwrap_or(s));
        mime::message_dir_name(uid, subject)
    }
}

/// A text/plain-only message (for bulk listings).
fn plain_message(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: a@example.com\r\nSubject: {subject}\r\nMessage-ID: <{subject}@x>\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

#[test]
fn the_hand_built_sample_parses_as_intended() {
    let h = Harness::new();
    let sample = Sample::numbered(7);
    let uid = h.store.add_message("INBOX", &sample.raw, &[], date());
    assert_eq!(h.stored_raw("INBOX", uid), sample.raw, "kept exactly");
    let dir = format!("INBOX/{}", sample.dir_name(uid));
    assert_eq!(dir, "INBOX/1 m7");
    assert_eq!(
        h.names_at(&dir).unwrap(),
        ["message.eml", "body.txt", "a7.bin"]
    );
}
