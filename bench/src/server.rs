//! The mail server under test: a private Dovecot filled with the deterministic bulk corpus and
//! the one message with a 10 MB attachment, plus a mailbox of many small messages for the
//! forget row, warmed up so every measurement sees the same server-side caches.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use fixture::{
    append, bulk_message, fill_bulk, maildir_folder, sample_messages, Dovecot, DovecotOptions,
};

use crate::raw_imap::RawImap;

/// The account every measurement uses.
pub const USER: &str = "alice";
/// The mailbox every measurement uses.
pub const MAILBOX: &str = "INBOX";
/// The mailbox the forget row walks: many small messages, so that the walk's cost is its
/// inodes rather than its content.
pub const WALK_MAILBOX: &str = "Walk";
/// Average size of a message in [`WALK_MAILBOX`], bytes.
pub const WALK_AVG_SIZE: usize = 2_000;
/// The mailbox of the search rows and of the slow-link compression rows: a corpus small
/// enough to grep over the slow link in seconds.
pub const SEARCH_MAILBOX: &str = "Search";
/// The word the search rows look for: in none of the bulk messages, added to the body of
/// [`SEARCH_HITS`] of them.
pub const SEARCH_WORD: &str = "zanzibar";
/// Messages of [`SEARCH_MAILBOX`] whose body holds [`SEARCH_WORD`].
pub const SEARCH_HITS: usize = 5;

/// What the benchmark needs to know about the filled mailbox.
pub struct Corpus {
    /// Messages in the mailbox (bulk plus the large one).
    pub messages: usize,
    /// Bytes of all messages as stored.
    pub total_bytes: u64,
    /// Directory name (`<UID> <Subject>`) of the message with the 10 MB attachment.
    pub large_dir: String,
    /// Its raw size.
    pub large_bytes: u64,
    /// Its text part as sent (CRLF line ends): the bytes the read of `body.txt` is held to.
    pub large_body: String,
    /// What imapfs shows as that part's `body.txt` (its lines end with LF).
    pub large_body_file: String,
    /// Directory name of a bulk message in the middle of the mailbox, for the slow-link read.
    pub probe_dir: String,
    /// Messages in [`WALK_MAILBOX`].
    pub walk_messages: usize,
    /// Their bytes as stored.
    pub walk_bytes: u64,
    /// Lines `find` of the Walk directory must print (see [`walk_entries`]).
    pub walk_entries: usize,
    /// Messages in [`SEARCH_MAILBOX`] (bulk plus the [`SEARCH_HITS`]).
    pub search_messages: usize,
    /// Their bytes as stored.
    pub search_bytes: u64,
    /// Seconds the fill took (all mailboxes).
    pub fill_seconds: f64,
}

/// The first line of `dovecot --version`.
pub fn dovecot_version() -> String {
    std::process::Command::new("/usr/sbin/dovecot")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .map_or_else(|| "unknown".into(), |v| format!("Dovecot {v}"))
}

/// Starts Dovecot in `dir` (which must not exist or be empty).
pub fn start(dir: &Path) -> io::Result<Dovecot> {
    Dovecot::start(DovecotOptions {
        dir: Some(dir.to_path_buf()),
        ..DovecotOptions::default()
    })
}

/// Writes `count` bulk messages (seed `seed`, about `avg_size` bytes each) straight into the
/// Maildir, then APPENDs the 10 MB sample, which gets the next UID; then `walk` bulk
/// messages of about [`WALK_AVG_SIZE`] bytes (same seed) into [`WALK_MAILBOX`], and `search`
/// of about `avg_size` into [`SEARCH_MAILBOX`] (see [`fill_search`]).
pub fn fill(
    dovecot: &Dovecot,
    count: usize,
    walk: usize,
    search: usize,
    seed: u64,
    avg_size: usize,
) -> io::Result<Corpus> {
    let started = Instant::now();
    fill_bulk(dovecot, USER, MAILBOX, count, seed, avg_size)?;
    let large = sample_messages()
        .into_iter()
        .find(|s| s.raw.len() > 10_000_000)
        .ok_or_else(|| io::Error::other("the fixture corpus has no 10 MB message"))?;
    let mut session = dovecot.client(USER)?;
    let large_uid = append(&mut session, MAILBOX, &large.raw, &[])?;
    let _ = session.logout();
    fill_bulk(dovecot, USER, WALK_MAILBOX, walk, seed, WALK_AVG_SIZE)?;
    fill_search(dovecot, search, seed, avg_size)?;
    let fill_seconds = started.elapsed().as_secs_f64();

    let total_bytes = maildir_bytes(&dovecot.maildir(USER))?;
    let walk_bytes = maildir_bytes(&maildir_folder(&dovecot.maildir(USER), WALK_MAILBOX)?)?;
    let search_bytes = maildir_bytes(&maildir_folder(&dovecot.maildir(USER), SEARCH_MAILBOX)?)?;
    let probe_index = count / 2;
    let probe = bulk_message(seed, probe_index, avg_size);
    Ok(Corpus {
        messages: count + 1,
        total_bytes,
        large_dir: format!("{large_uid} {}", large.subject),
        large_bytes: large.raw.len() as u64,
        large_body_file: large.body_file().unwrap_or_default(),
        large_body: large.body_text.unwrap_or_default(),
        probe_dir: format!("{} {}", probe_index + 1, probe.subject),
        walk_messages: walk,
        walk_bytes,
        walk_entries: walk_entries(walk, seed),
        search_messages: search + SEARCH_HITS,
        search_bytes,
        fill_seconds,
    })
}

/// `count` bulk messages (seed `seed + 1`) in [`SEARCH_MAILBOX`], then [`SEARCH_HITS`] more
/// APPENDed: plain bulk messages with a line naming [`SEARCH_WORD`] at the end of the body.
fn fill_search(dovecot: &Dovecot, count: usize, seed: u64, avg_size: usize) -> io::Result<()> {
    let seed = seed + 1;
    fill_bulk(dovecot, USER, SEARCH_MAILBOX, count, seed, avg_size)?;
    let mut session = dovecot.client(USER)?;
    let plain = (count..)
        .map(|index| bulk_message(seed, index, avg_size))
        .filter(|m| m.structure == "plain")
        .take(SEARCH_HITS);
    for message in plain {
        let mut raw = message.raw;
        raw.extend_from_slice(format!("Next stop: {SEARCH_WORD}.\r\n").as_bytes());
        append(&mut session, SEARCH_MAILBOX, &raw, &[])?;
    }
    let _ = session.logout();
    Ok(())
}

/// What `find` of the Walk directory prints for `count` bulk messages of seed `seed`: the
/// directory itself, and each message directory with its files: `message.eml` and
/// `body.txt`, plus `body.html` (multipart/alternative) or the attachment.
pub fn walk_entries(count: usize, seed: u64) -> usize {
    let files = |index| match bulk_message(seed, index, WALK_AVG_SIZE).structure {
        "plain" => 2,
        _ => 3,
    };
    1 + (0..count).map(|index| 1 + files(index)).sum::<usize>()
}

/// Sum of the sizes of the message files in `cur/` and `new/` of a Maildir folder.
pub fn maildir_bytes(folder: &Path) -> io::Result<u64> {
    let mut total = 0;
    for sub in ["cur", "new"] {
        for entry in fs::read_dir(folder.join(sub))? {
            total += entry?.metadata()?.len();
        }
    }
    Ok(total)
}

/// Asks for everything any measurement will ask for once, so that Dovecot's index and cache
/// files and the kernel's page cache hold it before the first timed run.
pub fn warm_up(dovecot: &Dovecot) -> io::Result<()> {
    let ca = fs::read(dovecot.ca_file())?;
    let mut session = RawImap::connect(dovecot.imaps_addr(), &ca)?;
    session.login(USER, dovecot.password(USER))?;
    for mailbox in [MAILBOX, WALK_MAILBOX, SEARCH_MAILBOX] {
        session.run(&format!("EXAMINE {mailbox}"))?;
        session.run(
            "UID FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE \
             BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
        )?;
    }
    session.logout();
    Ok(())
}

/// A PEM file with the fixture CA and the server certificate, for mbsync (see
/// [`crate::mbsync::Account::trust_file`]).
pub fn write_trust_file(dovecot: &Dovecot, path: &Path) -> io::Result<PathBuf> {
    let mut pem = fs::read(dovecot.ca_file())?;
    pem.extend(fs::read(dovecot.dir().join("server.crt"))?);
    fs::write(path, pem)?;
    Ok(path.to_path_buf())
}
