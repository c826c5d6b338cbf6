//! The journal of changes made while offline: an append-only file in the cache directory,
//! one checksummed record per change and per outcome, each synced before the call that
//! made it returns, so a crash or `kill -9` loses nothing. The bytes of each message to
//! APPEND wait beside it in `outbox/`.
//!
//! ```text
//! <dir>/journal        "IMAPFSJ1", then records: u32 length, u32 CRC-32, postcard payload
//! <dir>/outbox/<seq>   the message an APPEND change sends, exactly as it is sent
//! ```
//!
//! A record cut short at the end of the file (a write torn by a crash) is dropped; a bad
//! record with more after it means the file was damaged, and nothing of it is replayed or
//! rewritten until someone looks (`JournalError::Corrupt`).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::store::{MailboxId, Uid, UidValidity};

mod stored;

const MAGIC: &[u8; 8] = b"IMAPFSJ1";
const JOURNAL_FILE: &str = "journal";
const OUTBOX: &str = "outbox";
/// A record longer than this is damage, not a record.
const MAX_RECORD: u32 = 1 << 20;

/// Provisional UIDs, given to messages moved or appended offline until the server gives
/// theirs: far above any UID a server hands out in practice, and numbered by change.
pub const PROVISIONAL_UID: u32 = 0xF000_0000;
/// Provisional mailbox identifiers start with this; it is not ASCII, so no IMAP wire name
/// (modified UTF-7) can look like one, and the IMAP store refuses to send one.
pub const PROVISIONAL_MAILBOX: &str = "\u{b7}offline";

/// Whether `uid` is one this journal gave.
pub fn is_provisional_uid(uid: Uid) -> bool {
    uid.0 >= PROVISIONAL_UID
}

/// Whether `mailbox` is one created offline and not yet on the server.
pub fn is_provisional_mailbox(mailbox: &MailboxId) -> bool {
    mailbox.as_str().starts_with(PROVISIONAL_MAILBOX)
}

/// A message's place: mailbox, UIDVALIDITY, UID.
pub type Place = (MailboxId, UidValidity, Uid);

/// One change made offline, as it is to be replayed. The journal holds it in the form of
/// `stored::StoredChange`, which older journals still read as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "stored::StoredChange", into = "stored::StoredChange")]
pub enum Change {
    /// Flags added and removed (never the whole set: others may have changed meanwhile).
    /// `since`: the mailbox's HIGHESTMODSEQ as the mount last had it from the server
    /// (CONDSTORE), so the replay can tell whether another client changed the message
    /// meanwhile; `base`: the flags the mount showed before the change. Both are `None`
    /// in records from before they were kept, and where the mount did not know them.
    Flags {
        mailbox: MailboxId,
        validity: UidValidity,
        uid: Uid,
        add: Vec<String>,
        remove: Vec<String>,
        since: Option<u64>,
        base: Option<Vec<String>>,
    },
    /// A message moved; it was shown under `provisional` in `to` meanwhile. Its size and
    /// INTERNALDATE (as kept; a move keeps both) find it in `to` after a replay that was
    /// cut short between the MOVE and its outcome.
    Move {
        from: MailboxId,
        validity: UidValidity,
        uid: Uid,
        to: MailboxId,
        provisional: Uid,
        size: Option<u64>,
        internal_date: Option<SystemTime>,
    },
    /// One message expunged.
    Expunge {
        mailbox: MailboxId,
        validity: UidValidity,
        uid: Uid,
    },
    /// A new message, its bytes in `outbox/<seq>`; shown under `provisional` meanwhile.
    Append {
        mailbox: MailboxId,
        provisional: Uid,
        len: u64,
        binary: bool,
        internal_date: SystemTime,
        message_id: Option<String>,
        flags: Vec<String>,
        /// What it was called (a file's name or the Subject), for the pending list.
        name: String,
    },
    /// A mailbox created; shown as `provisional` meanwhile.
    Create {
        path: Vec<String>,
        provisional: MailboxId,
    },
}

/// How a replayed change ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Done on the server.
    Applied,
    /// A move or APPEND done: where the message is now, when the server told.
    Placed(Option<Place>),
    /// A CREATE done (or merged into a mailbox of that name): its identifier.
    Created(MailboxId),
    /// Not done, and never will be: why (the message vanished, the UIDVALIDITY changed).
    Dropped(String),
}

/// One record of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// The first record of a compacted journal: numbering goes on from here.
    Start { next_seq: u64 },
    /// A change made offline.
    Change {
        seq: u64,
        at: SystemTime,
        change: Change,
    },
    /// Change `seq` (an APPEND or a move) is about to be sent: if no outcome follows, it
    /// may have landed, and the message is looked for before anything is sent again.
    Sending { seq: u64 },
    /// The server refused change `seq`; it stays, and is tried again at the next replay.
    Refused { seq: u64, error: String },
    /// Change `seq` is settled.
    Done { seq: u64, outcome: Outcome },
}

/// Where a queued change stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryState {
    Queued,
    /// An APPEND or move was under way: look before sending again.
    Sending,
    Refused(String),
}

/// A change not yet settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub at: SystemTime,
    pub change: Change,
    pub state: EntryState,
}

/// What the journal says: the changes still to replay, in order, and where the settled
/// ones put their provisional messages and mailboxes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Queue {
    pub entries: Vec<Entry>,
    /// Provisional UID → where the message is on the server (`None`: not told, or dropped).
    pub placed: HashMap<Uid, Option<Place>>,
    /// Provisional mailbox → the server's.
    pub created: HashMap<MailboxId, MailboxId>,
    pub next_seq: u64,
}

impl Queue {
    /// Folds one record in.
    pub fn apply(&mut self, record: &Record) {
        match record {
            Record::Start { next_seq } => self.next_seq = self.next_seq.max(*next_seq),
            Record::Change { seq, at, change } => {
                self.next_seq = self.next_seq.max(seq + 1);
                self.entries.push(Entry {
                    seq: *seq,
                    at: *at,
                    change: change.clone(),
                    state: EntryState::Queued,
                });
            }
            Record::Sending { seq } => self.set_state(*seq, EntryState::Sending),
            Record::Refused { seq, error } => {
                self.set_state(*seq, EntryState::Refused(error.clone()))
            }
            Record::Done { seq, outcome } => {
                let Some(pos) = self.entries.iter().position(|e| e.seq == *seq) else {
                    return;
                };
                let entry = self.entries.remove(pos);
                match (&entry.change, outcome) {
                    (
                        Change::Move { provisional, .. } | Change::Append { provisional, .. },
                        Outcome::Placed(place),
                    ) => {
                        self.placed.insert(*provisional, place.clone());
                    }
                    (Change::Move { provisional, .. } | Change::Append { provisional, .. }, _) => {
                        self.placed.insert(*provisional, None);
                    }
                    (Change::Create { provisional, .. }, Outcome::Created(id)) => {
                        self.created.insert(provisional.clone(), id.clone());
                    }
                    _ => {}
                }
            }
        }
    }

    fn set_state(&mut self, seq: u64, state: EntryState) {
        if let Some(entry) = self.entries.iter_mut().find(|e| e.seq == seq) {
            entry.state = state;
        }
    }

    /// The unsettled change that gives `uid` (a provisional UID), if any.
    pub fn maker_of_uid(&self, uid: Uid) -> Option<u64> {
        self.entries.iter().find_map(|e| match &e.change {
            Change::Move { provisional, .. } | Change::Append { provisional, .. }
                if *provisional == uid =>
            {
                Some(e.seq)
            }
            _ => None,
        })
    }

    /// The HIGHESTMODSEQ of `mailbox` (under `validity`) an unsettled flag change was made
    /// at, the latest: what the mount last had from the server, once its own offline
    /// changes left the kept listing without a version.
    pub fn known_modseq(&self, mailbox: &MailboxId, validity: UidValidity) -> Option<u64> {
        self.entries.iter().rev().find_map(|e| match &e.change {
            Change::Flags {
                mailbox: m,
                validity: v,
                since,
                ..
            } if m == mailbox && *v == validity => *since,
            _ => None,
        })
    }

    /// The unsettled change that creates `mailbox` (a provisional one), if any.
    pub fn maker_of_mailbox(&self, mailbox: &MailboxId) -> Option<u64> {
        self.entries.iter().find_map(|e| match &e.change {
            Change::Create { provisional, .. } if provisional == mailbox => Some(e.seq),
            _ => None,
        })
    }
}

/// Why the journal cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("the journal of offline changes {path} is damaged at byte {offset} ({why}); it is left as it is, nothing in it is replayed, and changes cannot be made offline until it is moved away")]
    Corrupt {
        path: String,
        offset: u64,
        why: String,
    },
    #[error("the journal of offline changes {path}: {error}")]
    Io { path: String, error: io::Error },
}

/// The open journal file.
pub struct Journal {
    path: PathBuf,
    dir: PathBuf,
    file: File,
    /// Bytes of whole records (a failed write is cut back to this).
    len: u64,
}

fn encode_record(record: &Record) -> Vec<u8> {
    let payload = postcard::to_allocvec(record).expect("serializing to memory cannot fail");
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Reads the records of a journal's bytes. A record cut short or failing its check at the
/// very end is a torn write: it is left out, and the length of the good part returned.
pub fn decode_records(bytes: &[u8]) -> Result<(Vec<Record>, u64), (u64, String)> {
    if bytes.len() < MAGIC.len() {
        // Torn while the file was made: nothing was in it.
        return if MAGIC.starts_with(bytes) {
            Ok((Vec::new(), 0))
        } else {
            Err((0, "not a journal".into()))
        };
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err((0, "not a journal of this format".into()));
    }
    let mut records = Vec::new();
    let mut at = MAGIC.len();
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < 8 {
            break;
        }
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        let end = 8 + len as usize;
        if len > MAX_RECORD {
            return Err((at as u64, format!("a record claims {len} bytes")));
        }
        if rest.len() < end {
            break;
        }
        let payload = &rest[8..end];
        if crc32fast::hash(payload) != crc {
            if rest.len() == end {
                break;
            }
            return Err((at as u64, "a record fails its checksum".into()));
        }
        let record = postcard::from_bytes(payload)
            .map_err(|e| (at as u64, format!("a record cannot be read: {e}")))?;
        records.push(record);
        at += end;
    }
    Ok((records, at as u64))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Journal {
    /// Opens (creating) the journal in the cache directory `dir` and reads it. A torn last
    /// record is dropped from the file; the outbox is swept of messages no change names
    /// (their call failed before it was journaled).
    pub fn open(dir: &Path) -> Result<(Journal, Queue), JournalError> {
        let path = dir.join(JOURNAL_FILE);
        let io_error = |error: io::Error| JournalError::Io {
            path: path.display().to_string(),
            error,
        };
        // Appending: writes go at the end whatever a repair cut.
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_error)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_error)?;
        let (records, good) =
            decode_records(&bytes).map_err(|(offset, why)| JournalError::Corrupt {
                path: path.display().to_string(),
                offset,
                why,
            })?;
        if good < MAGIC.len() as u64 {
            file.set_len(0).map_err(io_error)?;
            file.write_all(MAGIC).map_err(io_error)?;
            file.sync_all().map_err(io_error)?;
            sync_dir(dir).map_err(io_error)?;
        } else if good < bytes.len() as u64 {
            tracing::warn!(journal = %path.display(), dropped = bytes.len() as u64 - good,
                "the journal's last record was torn by a crash; the change it held had not been confirmed, and is dropped");
            file.set_len(good).map_err(io_error)?;
            file.sync_all().map_err(io_error)?;
        }
        let len = file.metadata().map_err(io_error)?.len();
        let mut queue = Queue::default();
        for record in &records {
            queue.apply(record);
        }
        let journal = Journal {
            path: path.clone(),
            dir: dir.to_path_buf(),
            file,
            len,
        };
        journal.sweep_outbox(&queue).map_err(io_error)?;
        Ok((journal, queue))
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the message of APPEND change `seq` waits.
    pub fn outbox_path(&self, seq: u64) -> PathBuf {
        self.dir.join(OUTBOX).join(seq.to_string())
    }

    /// Keeps `content` (`len` bytes) as the message of change `seq`, synced, before the
    /// change is journaled.
    pub fn keep_message(&self, seq: u64, content: &mut dyn Read, len: u64) -> io::Result<()> {
        let outbox = self.dir.join(OUTBOX);
        if !outbox.is_dir() {
            fs::DirBuilder::new().mode(0o700).create(&outbox)?;
            sync_dir(&self.dir)?;
        }
        let path = self.outbox_path(seq);
        let tmp = outbox.join(format!("{seq}.tmp"));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        let copied = io::copy(&mut content.take(len), &mut file)?;
        if copied != len {
            let _ = fs::remove_file(&tmp);
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the message has {copied} bytes, not the {len} announced"),
            ));
        }
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        sync_dir(&outbox)
    }

    /// Appends a record and syncs it. A failed write is cut back, so the file never holds
    /// a torn record followed by good ones.
    pub fn append(&mut self, record: &Record) -> io::Result<()> {
        let bytes = encode_record(record);
        let written = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// With nothing left to replay: the journal starts over, numbering going on.
    pub fn compact(&mut self, next_seq: u64) -> io::Result<()> {
        let tmp = self.dir.join(format!("{JOURNAL_FILE}.new"));
        let mut bytes = MAGIC.to_vec();
        bytes.extend(encode_record(&Record::Start { next_seq }));
        let _ = fs::remove_file(&tmp);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, &self.path)?;
        sync_dir(&self.dir)?;
        self.file = file;
        self.len = bytes.len() as u64;
        Ok(())
    }

    /// Removes outbox files no unsettled APPEND names.
    fn sweep_outbox(&self, queue: &Queue) -> io::Result<()> {
        let Ok(entries) = fs::read_dir(self.dir.join(OUTBOX)) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let wanted = name
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|seq| {
                    queue
                        .entries
                        .iter()
                        .any(|e| e.seq == seq && matches!(e.change, Change::Append { .. }))
                });
            if !wanted {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn flags_change(uid: u32) -> Change {
        Change::Flags {
            mailbox: MailboxId::new("INBOX"),
            validity: UidValidity(7),
            uid: Uid(uid),
            add: vec!["\\Seen".into()],
            remove: vec!["$x".into()],
            since: None,
            base: None,
        }
    }

    fn change(seq: u64, change: Change) -> Record {
        Record::Change {
            seq,
            at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            change,
        }
    }

    fn append_change(seq: u64) -> Change {
        Change::Append {
            mailbox: MailboxId::new("INBOX"),
            provisional: Uid(PROVISIONAL_UID + seq as u32),
            len: 5,
            binary: false,
            internal_date: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            message_id: Some("<a@b>".into()),
            flags: Vec::new(),
            name: "notes.txt".into(),
        }
    }

    /// A flag change as imapfs journaled it before `since` and `base` were kept (the bytes
    /// `encode_record` gave at commit 8457fa4): seq 3, INBOX, UIDVALIDITY 7, UID 12,
    /// +$mine -\Seen.
    const OLD_FLAGS_RECORD: &str =
        "1f000000bae265d1010380e2cfaa06000005494e424f58070c0105246d696e6501055c5365656e";

    fn from_hex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn a_flag_change_journaled_before_since_and_base_were_kept_still_loads() {
        let root = tempfile::tempdir().unwrap();
        let mut bytes = MAGIC.to_vec();
        bytes.extend(from_hex(OLD_FLAGS_RECORD));
        fs::write(root.path().join(JOURNAL_FILE), &bytes).unwrap();
        let (mut journal, queue) = Journal::open(root.path()).unwrap();
        let old = Change::Flags {
            mailbox: MailboxId::new("INBOX"),
            validity: UidValidity(7),
            uid: Uid(12),
            add: vec!["$mine".into()],
            remove: vec!["\\Seen".into()],
            since: None,
            base: None,
        };
        assert_eq!(queue.entries.len(), 1);
        assert_eq!(queue.entries[0].seq, 3);
        assert_eq!(queue.entries[0].change, old);
        // A change journaled now, after it, keeps what it knew.
        let new = Change::Flags {
            mailbox: MailboxId::new("INBOX"),
            validity: UidValidity(7),
            uid: Uid(12),
            add: vec!["$mine".into()],
            remove: vec![],
            since: Some(4711),
            base: Some(vec!["\\Seen".into(), "$theirs".into()]),
        };
        journal.append(&change(4, new.clone())).unwrap();
        drop(journal);
        let (_, queue) = Journal::open(root.path()).unwrap();
        let changes: Vec<&Change> = queue.entries.iter().map(|e| &e.change).collect();
        assert_eq!(changes, [&old, &new]);
        assert_eq!(queue.next_seq, 5);
    }

    #[test]
    fn records_survive_a_reopen_and_outcomes_settle_them() {
        let root = tempfile::tempdir().unwrap();
        let (mut journal, queue) = Journal::open(root.path()).unwrap();
        assert_eq!(queue, Queue::default());
        journal.append(&change(0, flags_change(1))).unwrap();
        journal.keep_message(1, &mut &b"hello"[..], 5).unwrap();
        journal.append(&change(1, append_change(1))).unwrap();
        journal.append(&Record::Sending { seq: 1 }).unwrap();
        journal
            .append(&change(
                2,
                Change::Create {
                    path: vec!["New".into()],
                    provisional: MailboxId::new("\u{b7}offline2\u{b7}New"),
                },
            ))
            .unwrap();
        journal
            .append(&Record::Refused {
                seq: 2,
                error: "no".into(),
            })
            .unwrap();
        journal
            .append(&Record::Done {
                seq: 0,
                outcome: Outcome::Applied,
            })
            .unwrap();
        drop(journal);

        let (journal, queue) = Journal::open(root.path()).unwrap();
        assert_eq!(queue.next_seq, 3);
        let states: Vec<(u64, EntryState)> = queue
            .entries
            .iter()
            .map(|e| (e.seq, e.state.clone()))
            .collect();
        assert_eq!(
            states,
            [
                (1, EntryState::Sending),
                (2, EntryState::Refused("no".into()))
            ]
        );
        assert_eq!(queue.entries[0].change, append_change(1));
        assert_eq!(fs::read(journal.outbox_path(1)).unwrap(), b"hello");
    }

    #[test]
    fn a_torn_last_record_is_dropped_and_the_rest_kept() {
        let root = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(root.path()).unwrap();
        journal.append(&change(0, flags_change(1))).unwrap();
        journal.append(&change(1, flags_change(2))).unwrap();
        let path = journal.path().to_path_buf();
        drop(journal);
        let whole = fs::read(&path).unwrap();
        let last = encode_record(&change(1, flags_change(2))).len();
        // Every cut inside the last record: the first stays, the second is gone.
        for cut in 1..last {
            fs::write(&path, &whole[..whole.len() - cut]).unwrap();
            let (mut journal, queue) = Journal::open(root.path()).unwrap();
            assert_eq!(queue.entries.len(), 1, "cut {cut}");
            assert_eq!(queue.entries[0].change, flags_change(1));
            // Appending after the repair gives a readable journal.
            journal.append(&change(5, flags_change(3))).unwrap();
            drop(journal);
            let (_, queue) = Journal::open(root.path()).unwrap();
            assert_eq!(queue.entries.len(), 2, "cut {cut}");
            fs::write(&path, &whole).unwrap();
        }
        // A flipped bit in the last record: the same.
        let mut flipped = whole.clone();
        *flipped.last_mut().unwrap() ^= 0x40;
        fs::write(&path, &flipped).unwrap();
        let (_, queue) = Journal::open(root.path()).unwrap();
        assert_eq!(queue.entries.len(), 1);
        // A file torn while it was made holds nothing.
        fs::write(&path, &MAGIC[..3]).unwrap();
        let (_, queue) = Journal::open(root.path()).unwrap();
        assert!(queue.entries.is_empty());
    }

    #[test]
    fn damage_before_the_end_is_an_error_and_the_file_is_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(root.path()).unwrap();
        journal.append(&change(0, flags_change(1))).unwrap();
        journal.append(&change(1, flags_change(2))).unwrap();
        let path = journal.path().to_path_buf();
        drop(journal);
        let mut bytes = fs::read(&path).unwrap();
        bytes[MAGIC.len() + 10] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        match Journal::open(root.path()) {
            Err(JournalError::Corrupt { offset, why, .. }) => {
                assert_eq!(offset, MAGIC.len() as u64);
                assert!(why.contains("checksum"), "{why}");
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        assert_eq!(fs::read(&path).unwrap(), bytes, "nothing was rewritten");
        fs::write(&path, b"something else entirely").unwrap();
        assert!(matches!(
            Journal::open(root.path()),
            Err(JournalError::Corrupt { offset: 0, .. })
        ));
    }

    #[test]
    fn compaction_keeps_the_numbering_and_the_outbox_is_swept() {
        let root = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(root.path()).unwrap();
        journal.keep_message(0, &mut &b"abc"[..], 3).unwrap();
        journal.keep_message(9, &mut &b"orphan"[..], 6).unwrap();
        journal.append(&change(0, append_change(0))).unwrap();
        journal
            .append(&Record::Done {
                seq: 0,
                outcome: Outcome::Placed(Some((MailboxId::new("INBOX"), UidValidity(7), Uid(12)))),
            })
            .unwrap();
        journal.compact(1).unwrap();
        drop(journal);
        let (journal, queue) = Journal::open(root.path()).unwrap();
        assert!(queue.entries.is_empty());
        assert_eq!(queue.next_seq, 1);
        assert!(!journal.outbox_path(9).exists(), "no change names it");
        assert!(!journal.outbox_path(0).exists());
        // A message that is short of what was announced is not kept.
        assert!(journal.keep_message(3, &mut &b"ab"[..], 3).is_err());
        assert!(!journal.outbox_path(3).exists());
    }

    #[test]
    fn outcomes_say_where_provisional_messages_and_mailboxes_went() {
        let mut queue = Queue::default();
        let moved = Change::Move {
            from: MailboxId::new("INBOX"),
            validity: UidValidity(7),
            uid: Uid(3),
            to: MailboxId::new("Archive"),
            provisional: Uid(PROVISIONAL_UID),
            size: Some(120),
            internal_date: None,
        };
        queue.apply(&change(0, moved));
        assert_eq!(queue.maker_of_uid(Uid(PROVISIONAL_UID)), Some(0));
        let place = (MailboxId::new("Archive"), UidValidity(8), Uid(40));
        queue.apply(&Record::Done {
            seq: 0,
            outcome: Outcome::Placed(Some(place.clone())),
        });
        assert_eq!(queue.placed[&Uid(PROVISIONAL_UID)], Some(place));
        assert_eq!(queue.maker_of_uid(Uid(PROVISIONAL_UID)), None);
        let provisional = MailboxId::new("\u{b7}offline1\u{b7}New");
        queue.apply(&change(
            1,
            Change::Create {
                path: vec!["New".into()],
                provisional: provisional.clone(),
            },
        ));
        queue.apply(&Record::Done {
            seq: 1,
            outcome: Outcome::Created(MailboxId::new("New")),
        });
        assert_eq!(queue.created[&provisional], MailboxId::new("New"));
        assert!(is_provisional_mailbox(&provisional));
        assert!(is_provisional_uid(Uid(PROVISIONAL_UID + 1)));
        assert!(!is_provisional_uid(Uid(4711)));
    }
}
