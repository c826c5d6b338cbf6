//! The replay of the journal: in order, each change resolved to where its message and
//! mailbox are on the server now, its outcome journaled; the rules are in `disconnected.rs`.

use std::collections::HashSet;
use std::fs::File;
use std::sync::Arc;
use std::time::SystemTime;

use super::super::journal::{
    is_provisional_mailbox, is_provisional_uid, Change, Entry, EntryState, Outcome, Place, Queue,
    Record,
};
use super::super::{Job, Link, Shared};
use super::merge::{FlagChange, OwnModseqs};
use super::whole_seconds;
use crate::store::{
    Flag, MailboxId, MessageMeta, NewMessage, StoreError, StoreResult, Uid, UidValidity,
};

/// How replaying one change ended.
enum Step {
    Done(Outcome),
    Refused(String),
    /// The server cannot be reached: stop, and go on when it can.
    Unreachable(StoreError),
}

impl Shared {
    /// Replays the journal, in order, until every change is settled or refused; then the
    /// store is online (set under the journal's lock, so no change queued meanwhile is
    /// left behind). `false`: the server went away again.
    pub(in crate::store::cached) fn replay(self: &Arc<Self>) -> bool {
        let _one = self.replaying.lock();
        let mut tried: HashSet<u64> = HashSet::new();
        let mut own = OwnModseqs::new();
        let mut replayed = 0usize;
        // The mailboxes replayed changes touched: what the mount shows of them (messages
        // under provisional UIDs) is listed again from the server.
        let mut touched: std::collections::BTreeSet<MailboxId> = Default::default();
        loop {
            let next = {
                let mut guard = self.disconnected.lock();
                let next = match &mut guard.state {
                    Ok((journal, queue)) => {
                        let next = queue
                            .entries
                            .iter()
                            .find(|e| !tried.contains(&e.seq))
                            .cloned();
                        if next.is_none() && queue.entries.is_empty() && replayed > 0 {
                            if let Err(e) = journal.compact(queue.next_seq) {
                                tracing::warn!(error = %e, "could not start the journal of offline changes over; it is read again next time");
                            }
                        }
                        next.map(|entry| (entry, queue.clone()))
                    }
                    Err(_) => None,
                };
                if next.is_none() {
                    if replayed > 0 {
                        if let Ok((_, queue)) = &guard.state {
                            let waiting = queue
                                .entries
                                .iter()
                                .filter_map(|e| match e.change {
                                    Change::Move { provisional, .. }
                                    | Change::Append { provisional, .. } => Some(provisional),
                                    _ => None,
                                })
                                .collect();
                            self.send(Job::Replayed(waiting));
                        }
                    }
                    let mut link = self.link.lock();
                    if matches!(
                        *link,
                        Link::Offline {
                            deliberate: false,
                            ..
                        }
                    ) {
                        *link = Link::Online;
                    }
                    if replayed > 0 {
                        tracing::info!(replayed, "offline changes replayed");
                    }
                }
                next
            };
            let Some((entry, queue)) = next else {
                // With no lock held: the sink may act on the report at once.
                self.report_stale(std::mem::take(&mut touched));
                return true;
            };
            tried.insert(entry.seq);
            let step = self.replay_one(&entry, &queue, &mut own);
            let record = match step {
                Step::Unreachable(e) => {
                    tracing::info!(seq = entry.seq, error = %e, "the server went away during the replay of offline changes; it goes on when the server is back");
                    self.report_stale(std::mem::take(&mut touched));
                    return false;
                }
                Step::Done(outcome) => {
                    touched.extend(touched_by(&entry.change));
                    match &outcome {
                        Outcome::Dropped(why) => {
                            tracing::warn!(seq = entry.seq, change = ?entry.change, why, "offline change dropped")
                        }
                        outcome => {
                            tracing::info!(seq = entry.seq, change = ?entry.change, ?outcome, "offline change replayed")
                        }
                    }
                    Record::Done {
                        seq: entry.seq,
                        outcome,
                    }
                }
                Step::Refused(error) => {
                    tracing::warn!(seq = entry.seq, change = ?entry.change, error, "the server refused an offline change; it stays in the journal and is tried again at the next replay");
                    Record::Refused {
                        seq: entry.seq,
                        error,
                    }
                }
            };
            replayed += 1;
            if let Err(e) = self.record(&record) {
                tracing::error!(error = %e, "could not journal the outcome of an offline change; the replay stops");
                self.report_stale(std::mem::take(&mut touched));
                return false;
            }
            if let (Record::Done { .. }, Change::Append { .. }) = (&record, &entry.change) {
                if let Ok((journal, _)) = &self.disconnected.lock().state {
                    let _ = std::fs::remove_file(journal.outbox_path(entry.seq));
                }
            }
        }
    }

    /// Reports `touched` mailboxes stale (the mount lists each again), with no lock held.
    fn report_stale(&self, touched: std::collections::BTreeSet<MailboxId>) {
        if touched.is_empty() {
            return;
        }
        let sink = self.sink.lock().clone();
        if let Some(sink) = sink {
            for mailbox in touched {
                sink(crate::store::StoreEvent::MailboxStale(mailbox));
            }
        }
    }

    fn record(&self, record: &Record) -> std::io::Result<()> {
        let mut guard = self.disconnected.lock();
        let Ok((journal, queue)) = &mut guard.state else {
            return Ok(());
        };
        journal.append(record)?;
        queue.apply(record);
        Ok(())
    }

    fn replay_one(&self, entry: &Entry, queue: &Queue, own: &mut OwnModseqs) -> Step {
        let inner = &self.inner;
        match &entry.change {
            Change::Flags {
                mailbox,
                validity,
                uid,
                add,
                remove,
                since,
                base,
            } => {
                let (mailbox, validity, uid) = match resolve(queue, mailbox, *validity, *uid) {
                    Ok(place) => place,
                    Err(step) => return step,
                };
                let parse = |list: &[String]| -> Result<Vec<Flag>, Step> {
                    list.iter()
                        .map(|f| Flag::parse(f))
                        .collect::<StoreResult<Vec<Flag>>>()
                        .map_err(|e| Step::Done(Outcome::Dropped(e.to_string())))
                };
                let (add, remove) = match (parse(add), parse(remove)) {
                    (Ok(a), Ok(r)) => (a, r),
                    (Err(step), _) | (_, Err(step)) => return step,
                };
                let change = FlagChange {
                    mailbox: &mailbox,
                    validity,
                    uid,
                    add: &add,
                    remove: &remove,
                    since: *since,
                    base: base.as_deref(),
                };
                settle(self.replay_flags(&change, own), |()| Outcome::Applied)
            }
            Change::Move {
                from,
                validity,
                uid,
                to,
                size,
                internal_date,
                ..
            } => {
                let (from, validity, uid) = match resolve(queue, from, *validity, *uid) {
                    Ok(place) => place,
                    Err(step) => return step,
                };
                let to = match resolve_mailbox(queue, to) {
                    Ok(to) => to,
                    Err(step) => return step,
                };
                let cut_short = entry.state == EntryState::Sending;
                // Later changes may name the message by where it goes: that must not be
                // lost if imapfs dies between the MOVE and its outcome.
                if let Err(e) = self.record(&Record::Sending { seq: entry.seq }) {
                    return Step::Refused(format!("could not journal the move first: {e}"));
                }
                match inner.move_message(&from, validity, uid, &to) {
                    Ok(placed) => {
                        Step::Done(Outcome::Placed(placed.map(|(v, u)| (to.clone(), v, u))))
                    }
                    Err(StoreError::NoSuchMessage { .. }) if cut_short => {
                        match (size, internal_date) {
                            (Some(size), Some(date)) => {
                                match self.look_for(&to, *size, *date, None) {
                                    Ok(Some(place)) => {
                                        tracing::info!(seq = entry.seq, mailbox = %to, uid = %place.2, "a move cut short before had been done; found the message where it went");
                                        Step::Done(Outcome::Placed(Some(place)))
                                    }
                                    Ok(None) => Step::Done(Outcome::Dropped(
                                        "the message is gone from where it was, and not found where it was moved to".into(),
                                    )),
                                    Err(e) => classify(e),
                                }
                            }
                            _ => Step::Done(Outcome::Dropped(
                                "the message is gone; where a move cut short put it is unknown"
                                    .into(),
                            )),
                        }
                    }
                    Err(e) => classify(e),
                }
            }
            Change::Expunge {
                mailbox,
                validity,
                uid,
            } => {
                let (mailbox, validity, uid) = match resolve(queue, mailbox, *validity, *uid) {
                    Ok(place) => place,
                    Err(step) => return step,
                };
                settle(inner.expunge_message(&mailbox, validity, uid), |()| {
                    Outcome::Applied
                })
            }
            Change::Append { mailbox, .. } => {
                let mailbox = match resolve_mailbox(queue, mailbox) {
                    Ok(m) => m,
                    // An APPEND is never dropped: it waits for its mailbox.
                    Err(Step::Done(Outcome::Dropped(why))) => return Step::Refused(why),
                    Err(step) => return step,
                };
                self.replay_append(entry, &mailbox)
            }
            Change::Create { path, .. } => match inner.create_mailbox(path) {
                Ok(id) => Step::Done(Outcome::Created(id)),
                Err(StoreError::AlreadyExists(_)) => match inner.list_mailboxes() {
                    Ok(list) => match list.into_iter().find(|m| m.path == *path) {
                        Some(existing) => {
                            tracing::info!(mailbox = %existing.id, "a mailbox created offline exists on the server now; merged into it");
                            Step::Done(Outcome::Created(existing.id))
                        }
                        None => Step::Refused(
                            "the server says the mailbox exists but does not list it".into(),
                        ),
                    },
                    Err(e) => classify(e),
                },
                Err(e) => classify(e),
            },
        }
    }

    /// An APPEND, exactly once: an attempt that may have landed is looked for first.
    fn replay_append(&self, entry: &Entry, mailbox: &MailboxId) -> Step {
        let Change::Append {
            len,
            binary,
            internal_date,
            message_id,
            flags,
            ..
        } = &entry.change
        else {
            unreachable!("replay_append is given APPENDs")
        };
        if entry.state == EntryState::Sending {
            match self.look_for(mailbox, *len, *internal_date, message_id.as_deref()) {
                Ok(Some(place)) => {
                    tracing::info!(seq = entry.seq, mailbox = %mailbox, uid = %place.2, "an APPEND cut short before had landed; not sent again");
                    return Step::Done(Outcome::Placed(Some(place)));
                }
                Ok(None) => {}
                Err(e) => return never_dropped(classify(e)),
            }
        }
        let path = match &self.disconnected.lock().state {
            Ok((journal, _)) => journal.outbox_path(entry.seq),
            Err(why) => return Step::Refused(why.clone()),
        };
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => return Step::Refused(format!("its bytes in {}: {e}", path.display())),
        };
        let flags: Vec<Flag> = flags.iter().filter_map(|f| Flag::parse(f).ok()).collect();
        if let Err(e) = self.record(&Record::Sending { seq: entry.seq }) {
            return Step::Refused(format!("could not journal the APPEND first: {e}"));
        }
        let appended = self.inner.append(
            mailbox,
            NewMessage {
                content: &mut file,
                len: *len,
                binary: *binary,
                flags: &flags,
                internal_date: Some(*internal_date),
            },
        );
        match appended {
            Ok(placed) => Step::Done(Outcome::Placed(
                placed.map(|(v, u)| (mailbox.clone(), v, u)),
            )),
            // A NO never lands: `Refused` clears `Sending`.
            Err(e) => never_dropped(classify(e)),
        }
    }

    /// A message that an interrupted APPEND may have stored: same Message-ID (when it has
    /// one), size and INTERNALDATE (to the second).
    fn look_for(
        &self,
        mailbox: &MailboxId,
        len: u64,
        date: SystemTime,
        message_id: Option<&str>,
    ) -> StoreResult<Option<Place>> {
        let same = |m: &MessageMeta| {
            m.size == len && whole_seconds(m.internal_date) == whole_seconds(date)
        };
        let (validity, found) = match message_id {
            Some(id) => self.inner.find_by_message_id(mailbox, id)?,
            None => {
                let listing = self.inner.list_messages(mailbox)?;
                (listing.uid_validity, listing.messages)
            }
        };
        Ok(found
            .iter()
            .filter(|m| same(m))
            .map(|m| m.uid)
            .max()
            .map(|uid| (mailbox.clone(), validity, uid)))
    }
}

/// A mailbox a change names, as the server names it.
fn resolve_mailbox(queue: &Queue, mailbox: &MailboxId) -> Result<MailboxId, Step> {
    if !is_provisional_mailbox(mailbox) {
        return Ok(mailbox.clone());
    }
    if let Some(real) = queue.created.get(mailbox) {
        return Ok(real.clone());
    }
    match queue.maker_of_mailbox(mailbox) {
        Some(seq) => Err(Step::Refused(format!(
            "waits for change #{seq}, which creates its mailbox"
        ))),
        None => Err(Step::Done(Outcome::Dropped(
            "its mailbox was never created on the server".into(),
        ))),
    }
}

/// A message a change names, where it is on the server.
fn resolve(
    queue: &Queue,
    mailbox: &MailboxId,
    validity: UidValidity,
    uid: Uid,
) -> Result<Place, Step> {
    if !is_provisional_uid(uid) {
        return Ok((resolve_mailbox(queue, mailbox)?, validity, uid));
    }
    match queue.placed.get(&uid) {
        Some(Some(place)) => Ok(place.clone()),
        Some(None) => Err(Step::Done(Outcome::Dropped(
            "the server did not tell where the message went (no UIDPLUS), so it cannot be named by UID".into(),
        ))),
        None => match queue.maker_of_uid(uid) {
            Some(seq) => Err(Step::Refused(format!(
                "waits for change #{seq}, which puts the message there"
            ))),
            None => Err(Step::Done(Outcome::Dropped(
                "the message it acts on never reached the server".into(),
            ))),
        },
    }
}

/// APPENDs are never dropped: what would drop another change keeps them, refused.
fn never_dropped(step: Step) -> Step {
    match step {
        Step::Done(Outcome::Dropped(why)) => Step::Refused(why),
        step => step,
    }
}

/// What an error of a replayed change means for it.
fn classify(e: StoreError) -> Step {
    match e {
        // A certificate refused waits too: the change is kept until the server is trusted.
        StoreError::Connection(_)
        | StoreError::Untrusted(_)
        | StoreError::Timeout(_)
        | StoreError::Interrupted
        | StoreError::Offline(_)
        | StoreError::NoSpaceHere(_) => Step::Unreachable(e),
        StoreError::NoSuchMessage { .. } => {
            Step::Done(Outcome::Dropped(format!("{e}: it vanished while offline")))
        }
        StoreError::UidValidityChanged { .. } => Step::Done(Outcome::Dropped(format!(
            "{e}: the mailbox was recreated, and its old UIDs name nothing"
        ))),
        StoreError::NoSuchMailbox(_) => Step::Done(Outcome::Dropped(format!(
            "{e}: it was deleted while offline"
        ))),
        StoreError::Refused(_)
        | StoreError::Protocol(_)
        | StoreError::Invalid(_)
        | StoreError::Unsupported(_)
        | StoreError::OverQuota(_)
        | StoreError::AlreadyExists(_)
        | StoreError::NotEmpty(_) => Step::Refused(e.to_string()),
    }
}

fn settle<T>(result: StoreResult<T>, done: impl FnOnce(T) -> Outcome) -> Step {
    match result {
        Ok(value) => Step::Done(done(value)),
        Err(e) => classify(e),
    }
}

/// The mailboxes whose messages `change` changes.
fn touched_by(change: &Change) -> Vec<MailboxId> {
    match change {
        Change::Flags { mailbox, .. }
        | Change::Expunge { mailbox, .. }
        | Change::Append { mailbox, .. } => vec![mailbox.clone()],
        Change::Move { from, to, .. } => vec![from.clone(), to.clone()],
        Change::Create { .. } => Vec::new(),
    }
}
