//! Disconnected changes ([RFC 4549](https://www.rfc-editor.org/rfc/rfc4549)): while offline,
//! flags, moves, expunges, APPENDs and CREATEs are written to the journal (synced) and shown
//! at once in what is kept; when the server answers again (or at the next mount) they are
//! replayed in order, the server's state being the authority:
//!
//! - flags go as `+FLAGS.SILENT` / `-FLAGS.SILENT` of what changed, never as a replacement;
//!   with CONDSTORE, conditional on the HIGHESTMODSEQ the change was made at
//!   (`UNCHANGEDSINCE`), and merged with another client's change on `MODIFIED`
//!   (`disconnected/merge.rs`);
//! - moves and expunges go by UID only (the IMAP store's `UID MOVE`, or `UID COPY` and
//!   `UID EXPUNGE <uid>`); a message gone meanwhile, or a mailbox whose UIDVALIDITY
//!   changed, drops the change (logged); APPENDs are never dropped;
//! - an APPEND is sent exactly once: `Sending` is journaled first, and a replay that finds
//!   it unsettled looks for the message (Message-ID, size, INTERNALDATE) before sending;
//! - a CREATE of a name that exists by now merges into that mailbox;
//! - a change the server refuses stays in the journal with its error, and is tried again
//!   at the next replay.

use std::fs::File;
use std::time::{SystemTime, UNIX_EPOCH};

use super::journal::{
    self, is_provisional_mailbox, is_provisional_uid, Change, Entry, EntryState, Journal,
    JournalError, Place, Queue, Record,
};
use super::{Job, Shared};
use crate::store::imap::convert;
use crate::store::{
    Flag, MailboxId, MailboxInfo, MessageMeta, NewMessage, StoreError, StoreResult, Uid,
    UidValidity,
};

/// The journal and what it says, or why it cannot be used.
pub(super) struct Disconnected {
    state: Result<(Journal, Queue), String>,
}

impl Disconnected {
    /// Opens the journal in the cache directory `dir`.
    pub(super) fn open(dir: &std::path::Path) -> Disconnected {
        let state = Journal::open(dir).map_err(|e: JournalError| {
            tracing::error!(error = %e, "offline changes");
            e.to_string()
        });
        if let Ok((journal, queue)) = &state {
            if !queue.entries.is_empty() {
                tracing::info!(journal = %journal.path().display(), changes = queue.entries.len(),
                    "changes made offline wait for the server");
            }
        }
        Disconnected { state }
    }

    /// Where the bytes of the message written offline and shown as `uid` (provisional) in
    /// `mailbox` wait in the outbox, while its APPEND waits (read them with no lock held).
    /// A message written offline and then moved offline (`mv f Archive/`) is followed back
    /// through its moves to where it was written.
    pub(super) fn outbox_message(
        &self,
        mailbox: &MailboxId,
        uid: Uid,
    ) -> Option<std::path::PathBuf> {
        let (journal, queue) = self.state.as_ref().ok()?;
        let (mut mailbox, mut uid) = (mailbox.clone(), uid);
        // Each step goes to an earlier entry: as many steps as entries at most.
        for _ in 0..=queue.entries.len() {
            let step = queue.entries.iter().find_map(|e| match &e.change {
                Change::Append {
                    mailbox: m,
                    provisional,
                    ..
                } if *m == mailbox && *provisional == uid => Some(Err(e.seq)),
                Change::Move {
                    from,
                    uid: moved,
                    to,
                    provisional,
                    ..
                } if *to == mailbox && *provisional == uid => Some(Ok((from.clone(), *moved))),
                _ => None,
            })?;
            match step {
                Err(seq) => return Some(journal.outbox_path(seq)),
                Ok(before) => (mailbox, uid) = before,
            }
        }
        None
    }

    /// Whether changes wait to be replayed.
    pub(super) fn has_pending(&self) -> bool {
        self.state
            .as_ref()
            .is_ok_and(|(_, queue)| !queue.entries.is_empty())
    }
}

fn journal_error(e: std::io::Error) -> StoreError {
    let why = format!("the change could not be written to the journal of offline changes: {e}");
    // A full disk is ENOSPC, as for a full spool, not the EROFS of "offline".
    if matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) {
        StoreError::NoSpaceHere(why)
    } else {
        StoreError::Offline(why)
    }
}

/// The flags of a listed message as a set to compare, without `\Recent` (the server's).
fn flag_names(flags: &[String]) -> Vec<String> {
    flags
        .iter()
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        .cloned()
        .collect()
}

fn contains(flags: &[String], flag: &str) -> bool {
    flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
}

fn whole_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// One line of `user.imapfs.pending`.
fn describe(entry: &Entry) -> String {
    let what = match &entry.change {
        Change::Flags {
            mailbox,
            uid,
            add,
            remove,
            ..
        } => {
            let mut parts = Vec::new();
            if !add.is_empty() {
                parts.push(format!("+{}", add.join(" +")));
            }
            if !remove.is_empty() {
                parts.push(format!("-{}", remove.join(" -")));
            }
            format!("flags {mailbox} UID {uid}: {}", parts.join(" "))
        }
        Change::Move { from, uid, to, .. } => format!("move {from} UID {uid} to {to}"),
        Change::Expunge { mailbox, uid, .. } => format!("expunge {mailbox} UID {uid}"),
        Change::Append {
            mailbox, len, name, ..
        } => format!("append {name:?} ({len} bytes) to {mailbox}"),
        Change::Create { path, .. } => format!("create {}", path.join("/")),
    };
    let state = match &entry.state {
        EntryState::Queued => String::new(),
        EntryState::Sending => " (being sent)".into(),
        EntryState::Refused(why) => format!(" -- refused: {why}"),
    };
    format!(
        "#{} {} {what}{state}",
        entry.seq,
        crate::fs::xattr::rfc3339(entry.at)
    )
}

impl Shared {
    /// Journals a change if the store is offline (`None` when online: send it now).
    /// `build` makes the change from its sequence number (and what waits already), and may
    /// keep bytes first.
    fn enqueue(
        &self,
        build: impl FnOnce(&Journal, &Queue, u64) -> StoreResult<Change>,
    ) -> Option<StoreResult<(u64, Change)>> {
        let mut guard = self.disconnected.lock();
        if !self.is_offline() {
            return None;
        }
        let (journal, queue) = match &mut guard.state {
            Ok(state) => state,
            Err(why) => return Some(Err(StoreError::Offline(why.clone()))),
        };
        let seq = queue.next_seq;
        Some((|| {
            let change = build(journal, queue, seq)?;
            let record = Record::Change {
                seq,
                at: SystemTime::now(),
                change: change.clone(),
            };
            journal.append(&record).map_err(journal_error)?;
            queue.apply(&record);
            tracing::info!(seq, ?change, "offline: change queued for the server");
            Ok((seq, change))
        })())
    }

    /// Applies a change to what is kept, and waits until it is there (the core lists the
    /// mailbox again at once), up to 30 s and never past the call's deadline or its
    /// caller's signal: the change is journaled already, only its showing would lag.
    fn show_locally(&self, change: LocalChange) {
        self.send(Job::Local(change));
        let (tx, rx) = std::sync::mpsc::channel();
        self.send(Job::Flush(tx));
        let _ = crate::call::recv_within(
            &rx,
            std::time::Instant::now() + std::time::Duration::from_secs(30),
        );
    }

    fn kept_meta(&self, mailbox: &MailboxId, uid: Uid) -> Option<MessageMeta> {
        let (_, messages) = self.kept_listing(mailbox)?;
        messages.into_iter().find(|m| m.uid == uid)
    }

    /// `user.imap.flags` written offline: the flags added and removed are journaled.
    pub(super) fn offline_set_flags(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        flags: &[Flag],
    ) -> Option<StoreResult<()>> {
        let wanted: Vec<String> = flags.iter().map(|f| f.as_str().to_string()).collect();
        let old = self.kept_meta(mailbox, uid).map(|m| flag_names(&m.flags));
        if old.is_none() {
            tracing::warn!(mailbox = %mailbox, uid = %uid, "offline: the message's flags are not kept; only adding flags");
        }
        let old = old.unwrap_or_default();
        let add: Vec<Flag> = flags
            .iter()
            .filter(|f| !contains(&old, f.as_str()))
            .cloned()
            .collect();
        let remove: Vec<Flag> = old
            .iter()
            .filter(|f| !contains(&wanted, f))
            .filter_map(|f| Flag::parse(f).ok())
            .collect();
        self.offline_change_flags(mailbox, validity, uid, &add, &remove)
    }

    /// Flags added and removed offline, journaled with the flags shown before and the
    /// mailbox's HIGHESTMODSEQ as last had from the server, for the replay's
    /// `UNCHANGEDSINCE`.
    pub(super) fn offline_change_flags(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        add: &[Flag],
        remove: &[Flag],
    ) -> Option<StoreResult<()>> {
        let names = |flags: &[Flag]| -> Vec<String> {
            flags.iter().map(|f| f.as_str().to_string()).collect()
        };
        if add.is_empty() && remove.is_empty() {
            return self.is_offline().then_some(Ok(()));
        }
        let kept = self
            .kept_listing(mailbox)
            .filter(|(head, _)| head.validity == validity);
        let base = kept.as_ref().and_then(|(_, messages)| {
            let meta = messages.iter().find(|m| m.uid == uid)?;
            Some(flag_names(&meta.flags))
        });
        let kept_modseq = kept
            .and_then(|(head, _)| head.version)
            .filter(|v| v.uid_validity == validity)
            .map(|v| v.highest_modseq);
        // A provisional UID gets a MODSEQ only when the replay puts its message there.
        let real = !is_provisional_uid(uid);
        let queued = self.enqueue(|_, queue, _| {
            Ok(Change::Flags {
                mailbox: mailbox.clone(),
                validity,
                uid,
                add: names(add),
                remove: names(remove),
                // Once this mount's offline changes left the kept listing without a
                // version, an earlier offline change of the mailbox still knows it.
                since: kept_modseq
                    .or_else(|| queue.known_modseq(mailbox, validity))
                    .filter(|_| real),
                base,
            })
        })?;
        Some(queued.map(|_| {
            let mut flags = self
                .kept_meta(mailbox, uid)
                .map(|m| flag_names(&m.flags))
                .unwrap_or_default();
            flags.retain(|f| !remove.iter().any(|r| r.as_str().eq_ignore_ascii_case(f)));
            for flag in add {
                if !contains(&flags, flag.as_str()) {
                    flags.push(flag.as_str().to_string());
                }
            }
            self.show_locally(LocalChange::Flags {
                mailbox: mailbox.clone(),
                uid,
                flags,
            });
        }))
    }

    /// A move offline: the message shows in `to` under a provisional UID.
    pub(super) fn offline_move(
        &self,
        from: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        to: &MailboxId,
    ) -> Option<StoreResult<Option<(UidValidity, Uid)>>> {
        let kept = self.kept_meta(from, uid);
        let queued = self.enqueue(|_, _, seq| {
            Ok(Change::Move {
                from: from.clone(),
                validity,
                uid,
                to: to.clone(),
                provisional: provisional_uid(seq),
                size: kept.as_ref().map(|m| m.size),
                internal_date: kept.as_ref().map(|m| m.internal_date),
            })
        })?;
        Some(queued.map(|(seq, _)| {
            let new_uid = provisional_uid(seq);
            let target = self.kept_head(to).map(|h| h.validity);
            self.show_locally(LocalChange::Moved {
                from: from.clone(),
                validity,
                uid,
                to: to.clone(),
                target: target.map(|v| (v, new_uid)),
            });
            target.map(|v| (v, new_uid))
        }))
    }

    /// An expunge offline.
    pub(super) fn offline_expunge(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
    ) -> Option<StoreResult<()>> {
        let queued = self.enqueue(|_, _, _| {
            Ok(Change::Expunge {
                mailbox: mailbox.clone(),
                validity,
                uid,
            })
        })?;
        Some(queued.map(|_| {
            self.show_locally(LocalChange::Expunged {
                mailbox: mailbox.clone(),
                uid,
            });
        }))
    }

    /// An APPEND offline: the bytes are kept in the outbox (synced) before the change is
    /// journaled; the message shows under a provisional UID. Online, the message is
    /// handed back.
    pub(super) fn offline_append<'a>(
        &self,
        mailbox: &MailboxId,
        message: NewMessage<'a>,
    ) -> Result<StoreResult<Option<(UidValidity, Uid)>>, NewMessage<'a>> {
        let NewMessage {
            content,
            len,
            binary,
            flags,
            internal_date,
        } = message;
        let date = internal_date.unwrap_or_else(SystemTime::now);
        let mut head = Vec::new();
        let Some(queued) = self.enqueue(|journal, _, seq| {
            journal
                .keep_message(seq, content, len)
                .map_err(journal_error)?;
            let kept = journal.outbox_path(seq);
            head = read_head(&kept);
            let field = |name: &str| {
                convert::header_field(&head, name)
                    .map(|v| String::from_utf8_lossy(&v).trim().to_string())
            };
            // A file's name (the last item of `X-Imapfs-File`), else the Subject.
            let name = field(convert::ORIGIN_FIELD)
                .and_then(|v| v.split_once("name=").map(|(_, n)| n.to_string()))
                .or_else(|| field("subject"))
                .unwrap_or_default();
            Ok(Change::Append {
                mailbox: mailbox.clone(),
                provisional: provisional_uid(seq),
                len,
                binary,
                internal_date: date,
                message_id: field("message-id").filter(|v| !v.is_empty()),
                flags: flags.iter().map(|f| f.as_str().to_string()).collect(),
                name,
            })
        }) else {
            return Err(NewMessage {
                content,
                len,
                binary,
                flags,
                internal_date,
            });
        };
        Ok(queued.map(|(seq, _)| {
            let uid = provisional_uid(seq);
            let validity = self.kept_head(mailbox).map(|h| h.validity)?;
            self.show_locally(LocalChange::Appended {
                mailbox: mailbox.clone(),
                meta: MessageMeta {
                    uid,
                    size: len,
                    internal_date: UNIX_EPOCH + std::time::Duration::from_secs(whole_seconds(date)),
                    subject: convert::subject_from_header(&head),
                    flags: flags.iter().map(|f| f.as_str().to_string()).collect(),
                    origin: convert::header_field(&head, convert::ORIGIN_FIELD),
                },
            });
            Some((validity, uid))
        }))
    }

    /// A CREATE offline: the mailbox shows at once under a provisional identifier.
    pub(super) fn offline_create(&self, path: &[String]) -> Option<StoreResult<MailboxId>> {
        let exists = self
            .kept_mailboxes()
            .is_some_and(|list| list.iter().any(|m| m.path == path));
        if exists && self.is_offline() {
            return Some(Err(StoreError::AlreadyExists(path.join("/"))));
        }
        let queued = self.enqueue(|_, _, seq| {
            Ok(Change::Create {
                path: path.to_vec(),
                provisional: MailboxId::new(&format!(
                    "{}{seq}\u{b7}{}",
                    journal::PROVISIONAL_MAILBOX,
                    path.join("/")
                )),
            })
        })?;
        Some(queued.map(|(_, change)| {
            let Change::Create { provisional, .. } = change else {
                unreachable!("a CREATE was queued")
            };
            self.show_locally(LocalChange::Created(MailboxInfo {
                id: provisional.clone(),
                path: path.to_vec(),
                selectable: true,
                special_use: None,
            }));
            provisional
        }))
    }

    /// Online: a provisional mailbox the core still holds, as the server names it now.
    pub(super) fn real_mailbox(&self, mailbox: &MailboxId) -> StoreResult<MailboxId> {
        if !is_provisional_mailbox(mailbox) {
            return Ok(mailbox.clone());
        }
        let guard = self.disconnected.lock();
        guard
            .state
            .as_ref()
            .ok()
            .and_then(|(_, q)| q.created.get(mailbox).cloned())
            .ok_or_else(|| StoreError::NoSuchMailbox(mailbox.clone()))
    }

    /// Online: a message under a provisional UID the core still holds, where it is now.
    pub(super) fn real_place(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
    ) -> StoreResult<Place> {
        if !is_provisional_uid(uid) {
            return Ok((self.real_mailbox(mailbox)?, validity, uid));
        }
        let guard = self.disconnected.lock();
        guard
            .state
            .as_ref()
            .ok()
            .and_then(|(_, q)| q.placed.get(&uid).cloned().flatten())
            .ok_or_else(|| StoreError::NoSuchMessage {
                mailbox: mailbox.clone(),
                uid,
            })
    }

    /// The lines of `user.imapfs.pending`.
    pub(super) fn pending_lines(&self) -> Vec<String> {
        match &self.disconnected.lock().state {
            Ok((_, queue)) => queue.entries.iter().map(describe).collect(),
            Err(why) => vec![why.clone()],
        }
    }
}

/// The provisional UID of change `seq`.
fn provisional_uid(seq: u64) -> Uid {
    Uid(journal::PROVISIONAL_UID + (seq % u64::from(u32::MAX - journal::PROVISIONAL_UID)) as u32)
}

/// The first bytes of a kept message, enough for its header fields.
fn read_head(path: &std::path::Path) -> Vec<u8> {
    use std::io::Read;
    let mut head = Vec::new();
    if let Ok(file) = File::open(path) {
        let _ = file.take(64 * 1024).read_to_end(&mut head);
    }
    match head.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) => head.truncate(end + 2),
        None => {
            if let Some(end) = head.windows(2).position(|w| w == b"\n\n") {
                head.truncate(end + 1);
            }
        }
    }
    head
}

mod local;
mod merge;
mod replay;

pub(super) use local::LocalChange;

#[cfg(test)]
mod tests;
