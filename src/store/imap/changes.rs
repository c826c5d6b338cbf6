//! Commands that change the server: CREATE, DELETE, RENAME, STORE, MOVE/COPY, EXPUNGE, APPEND.
//!
//! None of these is retried after a broken connection (the first attempt may have landed),
//! and every argument goes through `quote`.

use super::connection::{Connection, Selection, MAX_RESPONSE_BYTES};
use super::errors::{check, no_such_mailbox};
use super::wire::{fetches, format_date_time, Code, Command, Done, SectionKind, Untagged};
use super::{convert, quote, ImapStore, Mode, Retry};
use crate::store::MailStore;
use crate::store::{
    ConditionalStore, Flag, FlagsNow, MailboxId, NewMessage, StoreError, StoreResult, Uid,
    UidValidity,
};

/// What the answer to an APPEND may take: the tagged answer and a few untagged responses.
const APPEND_ANSWER_BUDGET: u64 = 1 << 20;

/// The longest UID set one `UID STORE` of a change to many messages names (RFC 7162 §4
/// advises lines under 8,192 octets): 500 sparse UIDs, or many more in runs.
const STORE_SET_BYTES: usize = 4096;

/// The destination UIDVALIDITY and UID for `uid` in a `COPYUID validity src dst` code
/// ([RFC 4315 §3](https://www.rfc-editor.org/rfc/rfc4315#section-3)), found in any status
/// response of `done` (MOVE sends it untagged, COPY in its tagged OK).
fn copied_uid(done: &Done, uid: Uid) -> Option<(UidValidity, Uid)> {
    done.codes().find_map(|code| match code {
        Code::CopyUid(validity, from, to) => {
            let (src, dst) = (expand(from)?, expand(to)?);
            let pos = src.iter().position(|&u| u == uid.0)?;
            dst.get(pos).map(|&u| (UidValidity(*validity), Uid(u)))
        }
        _ => None,
    })
}

/// How one conditional `UID STORE` of `uid` ended
/// ([RFC 7162 §3.1.3](https://www.rfc-editor.org/rfc/rfc7162#section-3.1.3)): `MODIFIED`
/// naming it (on an OK, as the RFC says, or on a NO, as some servers send it) is `Modified`;
/// otherwise an OK is `Stored` with the MODSEQ of the FETCH the server must send even for
/// `.SILENT` once CONDSTORE is in use, and anything else the error it stands for.
fn conditional_outcome(done: &Done, uid: Uid) -> StoreResult<ConditionalStore> {
    if let Some(Code::Modified(set)) = &done.tagged.code {
        // A set that cannot be read is taken to name the one UID sent.
        if expand(set).is_none_or(|uids| uids.contains(&uid.0)) {
            return Ok(ConditionalStore::Modified);
        }
    }
    check(&done.tagged)?;
    let modseq = fetches(&done.untagged)
        .filter(|f| f.uid == Some(uid.0))
        .find_map(|f| f.modseq);
    Ok(ConditionalStore::Stored(modseq))
}

/// `UID STORE <uid> (UNCHANGEDSINCE <since>) <item> <list>`.
fn conditional_store<'a>(uid: Uid, since: u64, item: &'a str, list: &'a str) -> Command<'a> {
    Command::new("UID STORE")
        .syntax(uid.to_string())
        .syntax(format!("(UNCHANGEDSINCE {since})"))
        .syntax(item)
        .syntax(list)
}

/// The most UIDs `expand` gives: imapfs copies, moves and stores one message at a time.
const EXPANDED_MOST: usize = 10_000;

/// Expands a small UID set (`3:5,9`) as COPYUID gives it; `None` if malformed or huge (more
/// than `EXPANDED_MOST` UIDs in all, however many ranges carry them).
fn expand(set: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for item in set.split(',') {
        match item.split_once(':') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                let (lo, hi) = (a.min(b), a.max(b));
                if (hi - lo) as usize >= EXPANDED_MOST - out.len() {
                    return None;
                }
                out.extend(lo..=hi);
            }
            None if out.len() < EXPANDED_MOST => out.push(item.parse().ok()?),
            None => return None,
        }
    }
    Some(out)
}

impl ImapStore {
    pub(super) fn create(&self, mailbox: &MailboxId) -> StoreResult<()> {
        let name = quote::mailbox(mailbox)?;
        self.with_connection(None, Retry::Never, |conn| {
            conn.run(Command::new("CREATE").arg(&name)).map(drop)
        })
    }

    /// Deletes `mailbox` only if it holds no message as it goes: a DELETE takes whatever is
    /// in the mailbox, and another client may file a message between a look and the
    /// DELETE. So the mailbox is first renamed to a name of this mount's own (a message
    /// filed meanwhile lands in it, or, sent to the old name, is refused with TRYCREATE),
    /// counted under that name, and deleted if empty; otherwise renamed back: `NotEmpty`.
    /// INBOX gets the DELETE alone (refused); a mailbox the server will not rename, a
    /// STATUS and the DELETE if it holds nothing.
    pub(super) fn delete(&self, mailbox: &MailboxId) -> StoreResult<()> {
        static ASIDE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = quote::mailbox(mailbox)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let aside = MailboxId::new(&format!(
            "{}{}{}-{nanos}-{}",
            mailbox.as_str(),
            crate::store::RMDIR_ASIDE,
            std::process::id(),
            ASIDE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let aside_name = quote::mailbox(&aside)?;
        let mut renamed_back = false;
        // Whether the mailbox is under the name set aside: a failure then must not leave
        // it there unsaid (a RENAME racing an APPEND can leave Dovecot's lock behind and
        // the next command waits for minutes).
        let aside_held = std::cell::Cell::new(false);
        // RENAME of INBOX moves its messages out and leaves it there (RFC 3501 §6.3.5).
        let inbox = mailbox.as_str().eq_ignore_ascii_case("INBOX");
        let deleted = self.with_connection(None, Retry::Never, |conn| {
            if conn.selection.mailbox().is_some() {
                // The mailbox or (Courier) any selected one cannot be renamed.
                deselect(conn)?;
            }
            if inbox {
                // Servers refuse it (RFC 3501 §6.3.4).
                return conn.run(Command::new("DELETE").arg(&name)).map(drop);
            }
            let set_aside = conn.run(Command::new("RENAME").arg(&name).arg(&aside_name));
            match set_aside {
                Ok(_) => aside_held.set(true),
                Err(e) if super::errors::connection_survives(&e) => {
                    // Not renamed (INBOX, a server that will not): deleted only if it
                    // holds nothing just before (a plain DELETE's narrower race); one that
                    // cannot be opened holds nothing.
                    tracing::debug!(%mailbox, error = %e, "not renamed before deleting it");
                    match messages_in(conn, &name) {
                        Ok(count) if count != Some(0) => {
                            return Err(StoreError::NotEmpty(format!("{mailbox} holds messages")))
                        }
                        Ok(_) | Err(StoreError::Refused(_)) => {}
                        Err(e) => return Err(e),
                    }
                    return conn.run(Command::new("DELETE").arg(&name)).map(drop);
                }
                Err(e) => {
                    // Cut off: the server may have renamed it.
                    aside_held.set(true);
                    return Err(e);
                }
            }
            // A child made meanwhile moved with it: a DELETE leaves the mailbox there as
            // its `\Noselect` parent, which goes back to the name (as a DELETE of the
            // mailbox itself would have left it).
            let delete_aside = |conn: &mut Connection| -> StoreResult<()> {
                conn.run(Command::new("DELETE").arg(&aside_name))?;
                aside_held.set(false);
                let left = conn.run(Command::new("LIST").syntax("\"\"").arg(&aside_name))?;
                if left.untagged.iter().any(|u| matches!(u, Untagged::List(_))) {
                    conn.run(Command::new("RENAME").arg(&aside_name).arg(&name))?;
                }
                Ok(())
            };
            let messages = match messages_in(conn, &aside_name) {
                Ok(count) => count,
                // One that cannot be opened (`\Noselect`) holds no message.
                Err(StoreError::Refused(_)) => return delete_aside(conn),
                Err(e) => return Err(e),
            };
            if messages == Some(0) {
                return delete_aside(conn);
            }
            tracing::info!(%mailbox, ?messages, "a mailbox to delete holds messages (filed since it was looked at); kept");
            renamed_back = true;
            conn.run(Command::new("RENAME").arg(&aside_name).arg(&name))?;
            aside_held.set(false);
            Err(StoreError::NotEmpty(format!(
                "{mailbox} holds messages now; nothing was deleted"
            )))
        });
        if aside_held.get() {
            // Failed (or timed out) with the mailbox set aside: it goes back under its name
            // on another connection, with a deadline of its own (the call's has passed or
            // was cancelled), or the log says where its messages are.
            let _own = crate::call::enter(crate::call::Call::new(
                std::time::Instant::now() + self.config.timeout,
                None,
            ));
            match self
                .rename(&aside, mailbox)
                .map_err(|e| no_such_mailbox(e, &aside))
            {
                Ok(()) => {
                    tracing::warn!(%mailbox, error = ?deleted.as_ref().err(), "deleting a mailbox failed; it is back under its name")
                }
                // A RENAME cut off that had not been done.
                Err(StoreError::NoSuchMailbox(_)) => {
                    tracing::debug!(%mailbox, "deleting a mailbox failed before it was renamed aside")
                }
                Err(e) => {
                    tracing::error!(%mailbox, aside = %aside, error = %e, "deleting a mailbox failed with it renamed aside, and it could not be renamed back: what it holds is in the mailbox named aside; rename it back (mv)")
                }
            }
        } else if renamed_back {
            // Back under its name: sessions may keep a stale list of it (see `rename`).
            self.renew_sessions();
        }
        // Only now: the connection above must still know what it has selected.
        self.forget_selection(mailbox);
        deleted.map_err(|e| no_such_mailbox(e, mailbox))
    }

    pub(super) fn rename(&self, from: &MailboxId, to: &MailboxId) -> StoreResult<()> {
        let (from_name, to_name) = (quote::mailbox(from)?, quote::mailbox(to)?);
        let renamed = self.with_connection(None, Retry::Never, |conn| {
            // Courier refuses to rename the selected mailbox ("Can't RENAME the
            // currently-open folder"), and one of its children may be selected as well.
            if conn.selection.mailbox().is_some() {
                deselect(conn)?;
            }
            conn.run(Command::new("RENAME").arg(&from_name).arg(&to_name))
                .map(drop)
        });
        if renamed.is_ok() {
            self.renew_sessions();
        } else {
            self.forget_selection(from);
        }
        renamed
    }

    pub(super) fn store_flags(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        flags: &[Flag],
    ) -> StoreResult<()> {
        let list = quote::flag_list(flags)?;
        self.with_connection(Some(mailbox), Retry::Never, |conn| {
            self.select_for(conn, mailbox, validity, Mode::Write, [uid])?;
            ensure_exists(conn, mailbox, uid)?;
            let cmd = Command::new("UID STORE")
                .syntax(uid.to_string())
                .syntax("FLAGS.SILENT")
                .syntax(list.as_str());
            conn.run(cmd).map(drop)
        })
    }

    /// `UID STORE <uid> +FLAGS.SILENT (...)` then `-FLAGS.SILENT (...)`: only the flags that
    /// changed, each command left out when it has nothing to say.
    pub(super) fn add_remove_flags(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        add: &[Flag],
        remove: &[Flag],
    ) -> StoreResult<()> {
        let items = flag_items(add, remove)?;
        self.with_connection(Some(mailbox), Retry::Never, |conn| {
            self.select_for(conn, mailbox, validity, Mode::Write, [uid])?;
            ensure_exists(conn, mailbox, uid)?;
            store_items(conn, &uid.to_string(), &items)
        })
    }

    /// `add_remove_flags` for many messages: a `UID STORE` of each kind per UID set of at
    /// most `STORE_SET_BYTES`.
    pub(super) fn add_remove_flags_of(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uids: &[Uid],
        add: &[Flag],
        remove: &[Flag],
    ) -> StoreResult<()> {
        let items = flag_items(add, remove)?;
        let sets = super::uid_sets(uids, STORE_SET_BYTES);
        if sets.is_empty() {
            return Ok(());
        }
        self.with_connection(Some(mailbox), Retry::Never, |conn| {
            self.select_for(conn, mailbox, validity, Mode::Write, uids.iter().copied())?;
            sets.iter()
                .try_for_each(|set| store_items(conn, set, &items))
        })
    }

    /// `add_remove_flags` made conditional: each `UID STORE` with `(UNCHANGEDSINCE m)`, `m`
    /// being `since` for the first and the MODSEQ the first left for the second, so that
    /// this change does not count as another client's. Stops at the first `MODIFIED`.
    pub(super) fn add_remove_flags_unchanged_since(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        add: &[Flag],
        remove: &[Flag],
        since: u64,
    ) -> StoreResult<ConditionalStore> {
        if !self.has_capability("CONDSTORE") {
            return Ok(ConditionalStore::NotOffered);
        }
        let items = flag_items(add, remove)?;
        self.with_connection(Some(mailbox), Retry::Never, |conn| {
            self.select_for(conn, mailbox, validity, Mode::Write, [uid])?;
            ensure_exists(conn, mailbox, uid)?;
            let (mut since, mut after) = (since, None);
            for (item, list) in &items {
                let cmd = conditional_store(uid, since, item, list.as_str());
                let done = conn.run_unchecked(MAX_RESPONSE_BYTES, cmd)?;
                match conditional_outcome(&done, uid)? {
                    ConditionalStore::Stored(Some(modseq)) => {
                        (since, after) = (modseq, Some(modseq));
                    }
                    ConditionalStore::Stored(None) => {}
                    other => return Ok(other),
                }
            }
            Ok(ConditionalStore::Stored(after))
        })
    }

    /// `UID FETCH <uid> (FLAGS MODSEQ)` (without CONDSTORE, `(FLAGS)`).
    pub(super) fn fetch_flags(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
    ) -> StoreResult<FlagsNow> {
        let items = if self.has_capability("CONDSTORE") {
            "(FLAGS MODSEQ)"
        } else {
            "(FLAGS)"
        };
        self.with_connection(Some(mailbox), Retry::Once, |conn| {
            self.select_to_read(conn, mailbox, validity, [uid])?;
            let done = conn.run(
                Command::new("UID FETCH")
                    .syntax(uid.to_string())
                    .syntax(items),
            )?;
            let found = fetches(&done.untagged)
                .find(|f| f.uid == Some(uid.0) && f.flags.is_some())
                .map(|f| FlagsNow {
                    flags: f.flags.clone().unwrap_or_default(),
                    modseq: f.modseq,
                });
            found.ok_or_else(|| StoreError::NoSuchMessage {
                mailbox: mailbox.clone(),
                uid,
            })
        })
    }

    pub(super) fn move_one(
        &self,
        from: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        to: &MailboxId,
    ) -> StoreResult<Option<(UidValidity, Uid)>> {
        let target = quote::mailbox(to)?;
        let caps = self.caps();
        if !caps.move_command && !caps.uidplus {
            return Err(StoreError::Unsupported(
                "the server has neither MOVE nor UIDPLUS, so a message cannot be moved without risking other clients' deleted messages".into(),
            ));
        }
        let moved = self.with_connection(Some(from), Retry::Never, |conn| {
            self.select_for(conn, from, validity, Mode::Write, [uid])?;
            ensure_exists(conn, from, uid)?;
            let verb = if caps.move_command {
                "UID MOVE"
            } else {
                "UID COPY"
            };
            let done = conn
                .run(Command::new(verb).syntax(uid.to_string()).arg(&target))
                .map_err(|e| refused_or_gone(conn, from, uid, no_such_mailbox(e, to)))?;
            if !caps.move_command {
                expunge_uid(conn, uid)?;
            }
            Ok(copied_uid(&done, uid))
        });
        match moved {
            Err(StoreError::Connection(why)) if caps.uidplus => {
                self.settle_move(from, validity, uid, to, StoreError::Connection(why))
            }
            other => other,
        }
    }

    /// `UID COPY` of one message, from its mailbox selected read-only (COPY needs no
    /// write access to the source, and so takes none of its `\Recent` flags).
    pub(super) fn copy_one(
        &self,
        from: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        to: &MailboxId,
    ) -> StoreResult<Option<(UidValidity, Uid)>> {
        let target = quote::mailbox(to)?;
        self.with_connection(Some(from), Retry::Never, |conn| {
            self.select_for(conn, from, validity, Mode::Read, [uid])?;
            ensure_exists(conn, from, uid)?;
            let done = conn
                .run(
                    Command::new("UID COPY")
                        .syntax(uid.to_string())
                        .arg(&target),
                )
                .map_err(|e| refused_or_gone(conn, from, uid, no_such_mailbox(e, to)))?;
            Ok(copied_uid(&done, uid))
        })
    }

    /// After a move whose connection broke: the server may have copied the message and not
    /// yet expunged it (Dovecot's MOVE is a copy, then an expunge; a client gone in between
    /// leaves both, and so does a COPY whose expunge never came). Looks at both mailboxes
    /// on a new connection: the message only in the target is a finished move; in both
    /// (the same Message-ID, size and INTERNALDATE in the target), the move is finished
    /// by expunging the source's UID; only in the source, nothing moved and `error` stands.
    /// If that cannot be told (no Message-ID, the server still gone), `error` stands.
    fn settle_move(
        &self,
        from: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        to: &MailboxId,
        error: StoreError,
    ) -> StoreResult<Option<(UidValidity, Uid)>> {
        tracing::warn!(%error, mailbox = %from, %uid, "the connection broke during a move; looking where the message is");
        let source = self.with_connection(Some(from), Retry::Once, |conn| {
            self.select_for(conn, from, validity, Mode::Read, [uid])?;
            let done =
                conn.run(Command::new("UID FETCH").syntax(uid.to_string()).syntax(
                    "(UID RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])",
                ))?;
            Ok(done.untagged.into_iter().find_map(|u| match u {
                Untagged::Fetch(f) if f.uid == Some(uid.0) => {
                    let id = f
                        .section(SectionKind::Body, "HEADER.FIELDS (MESSAGE-ID)", None)
                        .and_then(|s| s.data.as_deref())
                        .and_then(|h| convert::header_field(h, "message-id"));
                    Some((f.size, f.internal_date, id))
                }
                _ => None,
            }))
        });
        let (size, date, message_id) = match source {
            Ok(Some(found)) => found,
            Ok(None) => {
                tracing::info!(mailbox = %from, %uid, "the message left its mailbox: the move was done");
                return Ok(None);
            }
            Err(_) => return Err(error),
        };
        let Some(message_id) = message_id.and_then(|id| String::from_utf8(id).ok()) else {
            return Err(error);
        };
        let Ok((target_validity, candidates)) = self.find_by_message_id(to, &message_id) else {
            return Err(error);
        };
        let copy = candidates
            .iter()
            .filter(|m| Some(m.size) == size && Some(m.internal_date) == date)
            .map(|m| m.uid)
            .max();
        let Some(copy) = copy else {
            return Err(error);
        };
        tracing::warn!(mailbox = %from, %uid, target = %to, copy = %copy, "the server copied the message but did not expunge it; expunging it now");
        self.with_connection(Some(from), Retry::Never, |conn| {
            self.select_for(conn, from, validity, Mode::Write, [uid])?;
            expunge_uid(conn, uid)
        })?;
        Ok(Some((target_validity, copy)))
    }

    pub(super) fn expunge_one(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
    ) -> StoreResult<()> {
        if !self.caps().uidplus {
            return Err(StoreError::Unsupported(
                "the server lacks UIDPLUS; a plain EXPUNGE would also erase messages other clients marked \\Deleted".into(),
            ));
        }
        self.with_connection(Some(mailbox), Retry::Never, |conn| {
            self.select_for(conn, mailbox, validity, Mode::Write, [uid])?;
            ensure_exists(conn, mailbox, uid)?;
            expunge_uid(conn, uid)
        })
    }

    /// `APPEND mailbox (flags) "date-time" {n}` with the message streamed from its source
    /// after the server's `+` ([RFC 3501 §6.3.11](https://www.rfc-editor.org/rfc/rfc3501#section-6.3.11)),
    /// as a `literal8` (`~{n}`, [RFC 3516 §4.4](https://www.rfc-editor.org/rfc/rfc3516#section-4.4))
    /// when it holds NUL bytes. The literal is always synchronizing, so a server that will not
    /// take the message (`NO [OVERQUOTA]`, `[LIMIT]`, `[TRYCREATE]`) says so before a byte
    /// of it is sent. The deadline is "no progress for `--timeout`".
    ///
    /// Dovecot 2.3.19 takes NUL bytes in a `literal8` and, against RFC 3501, in a plain
    /// literal too, and stores both byte-exact; then `BINARY[]` gives the message back exact
    /// and `BODY[]` gives every NUL as 0x80.
    pub(super) fn append_one(
        &self,
        mailbox: &MailboxId,
        message: NewMessage<'_>,
    ) -> StoreResult<Option<(UidValidity, Uid)>> {
        if message.binary && !self.caps().binary {
            return Err(StoreError::Unsupported(
                "the message holds NUL bytes, which only a server with BINARY can store unaltered"
                    .into(),
            ));
        }
        let name = quote::mailbox(mailbox)?;
        let flags = quote::flag_list(message.flags)?;
        let date = message
            .internal_date
            .map(|t| format!("\"{}\"", format_date_time(t)));
        let NewMessage {
            content,
            len,
            binary,
            ..
        } = message;
        let mut content = Some(content);
        self.with_connection(None, Retry::Never, |conn| {
            let content = content.take().ok_or_else(|| {
                StoreError::Invalid("the message was already read for an earlier attempt".into())
            })?;
            // Courier refuses to APPEND to the mailbox the connection has EXAMINEd ("Current
            // box is selected READ-ONLY"); selecting it read-write is always accepted. If that
            // fails (the mailbox is gone), APPEND says why in its own answer.
            if matches!(&conn.selection, Selection::Examine(m, _) if m == mailbox) {
                if let Err(e) = self.select(conn, mailbox, None, Mode::Write) {
                    if !super::errors::connection_survives(&e) {
                        return Err(e);
                    }
                }
            }
            let mut cmd = Command::new("APPEND").arg(&name).syntax(flags.as_str());
            if let Some(date) = &date {
                cmd = cmd.syntax(date.as_str());
            }
            let done =
                conn.run_streaming(APPEND_ANSWER_BUDGET, cmd.stream(content, len, binary))?;
            let appended = done.codes().find_map(|code| match code {
                Code::AppendUid(validity, uid) => Some((UidValidity(*validity), Uid(*uid))),
                _ => None,
            });
            Ok(appended)
        })
    }
}

/// Leaves the selected mailbox: UNSELECT ([RFC 3691](https://www.rfc-editor.org/rfc/rfc3691)),
/// or else EXAMINE INBOX. Never CLOSE: on a read-write selection it would expunge messages
/// other clients marked `\Deleted`.
fn deselect(conn: &mut Connection) -> StoreResult<()> {
    conn.selection = Selection::None;
    if conn.has_capability("UNSELECT") {
        conn.run(Command::new("UNSELECT")).map(drop)
    } else {
        conn.run(Command::new("EXAMINE").syntax("INBOX")).map(drop)
    }
}

/// The `+FLAGS.SILENT` and `-FLAGS.SILENT` items of a change, each with its flag list quoted
/// (before anything is sent, so an unsafe flag sends nothing); one with no flags is left
/// out.
fn flag_items(add: &[Flag], remove: &[Flag]) -> StoreResult<Vec<(&'static str, String)>> {
    let mut items = Vec::new();
    for (item, flags) in [("+FLAGS.SILENT", add), ("-FLAGS.SILENT", remove)] {
        if !flags.is_empty() {
            items.push((item, quote::flag_list(flags)?));
        }
    }
    Ok(items)
}

/// `UID STORE <set> <item> <list>` for each of `items`, in order.
fn store_items(conn: &mut Connection, set: &str, items: &[(&str, String)]) -> StoreResult<()> {
    for (item, list) in items {
        let cmd = Command::new("UID STORE")
            .syntax(set)
            .syntax(*item)
            .syntax(list.as_str());
        conn.run(cmd)?;
    }
    Ok(())
}

/// `UID STORE uid +FLAGS.SILENT (\Deleted)` then `UID EXPUNGE uid`: that one message only.
fn expunge_uid(conn: &mut Connection, uid: Uid) -> StoreResult<()> {
    let uid = uid.to_string();
    conn.run(
        Command::new("UID STORE")
            .syntax(uid.as_str())
            .syntax("+FLAGS.SILENT (\\Deleted)"),
    )?;
    conn.run(Command::new("UID EXPUNGE").syntax(uid)).map(drop)
}

/// `STATUS <mailbox> (MESSAGES)`: how many messages the mailbox (an argument as quoted)
/// holds, if the server says.
fn messages_in(conn: &mut Connection, mailbox: &quote::Arg) -> StoreResult<Option<u32>> {
    let done = conn.run(Command::new("STATUS").arg(mailbox).syntax("(MESSAGES)"))?;
    Ok(done.untagged.iter().find_map(|u| match u {
        Untagged::MailboxStatus(st) => st.messages,
        _ => None,
    }))
}

/// `e`, the server's refusal of a command on `uid`; `NoSuchMessage` instead if the message
/// is gone (another client expunged or moved it since `ensure_exists`: Dovecot answers
/// `NO [EXPUNGEISSUED]`), so that the caller sees ENOENT, as with any message gone.
fn refused_or_gone(
    conn: &mut Connection,
    mailbox: &MailboxId,
    uid: Uid,
    e: StoreError,
) -> StoreError {
    if !matches!(e, StoreError::Refused(_)) {
        return e;
    }
    match ensure_exists(conn, mailbox, uid) {
        Err(gone @ StoreError::NoSuchMessage { .. }) => gone,
        _ => e,
    }
}

/// Refuses to act on a UID that is no longer there (UID commands on a missing UID
/// succeed silently, which would report a deletion or move that never happened).
fn ensure_exists(conn: &mut Connection, mailbox: &MailboxId, uid: Uid) -> StoreResult<()> {
    let done = conn.run(Command::new("UID SEARCH").syntax(format!("UID {uid}")))?;
    let found = done.untagged.iter().any(|u| match u {
        Untagged::Search(ranges) => ranges.iter().any(|&(a, b)| (a..=b).contains(&uid.0)),
        _ => false,
    });
    if found {
        Ok(())
    } else {
        Err(StoreError::NoSuchMessage {
            mailbox: mailbox.clone(),
            uid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::imap::wire::{parse_response, Response, Tagged};

    fn done(lines: &[&str]) -> Done {
        let mut untagged = Vec::new();
        let mut tagged: Option<Tagged> = None;
        for line in lines {
            match parse_response(line.as_bytes()).unwrap() {
                Response::Untagged(u) => untagged.push(u),
                Response::Tagged(t) => tagged = Some(t),
                Response::Continuation(_) => panic!(),
            }
        }
        Done {
            untagged,
            tagged: tagged.unwrap(),
        }
    }

    #[test]
    fn copyuid_maps_source_to_destination() {
        let moved = done(&[
            "* OK [COPYUID 1234 5 17] Moved UIDs.\r\n",
            "* 1 EXPUNGE\r\n",
            "A4 OK Move completed.\r\n",
        ]);
        assert_eq!(
            copied_uid(&moved, Uid(5)),
            Some((UidValidity(1234), Uid(17)))
        );
        let copied = done(&["A4 OK [COPYUID 99 3:5,9 20:22,30] Done\r\n"]);
        assert_eq!(
            copied_uid(&copied, Uid(9)),
            Some((UidValidity(99), Uid(30)))
        );
        assert_eq!(
            copied_uid(&copied, Uid(4)),
            Some((UidValidity(99), Uid(21)))
        );
        assert_eq!(copied_uid(&copied, Uid(6)), None);
        assert_eq!(copied_uid(&done(&["A4 OK done\r\n"]), Uid(6)), None);
        assert_eq!(
            copied_uid(&done(&["A4 OK [COPYUID 1 x y] odd\r\n"]), Uid(6)),
            None
        );
    }

    #[test]
    fn a_conditional_store_tells_a_conflict_from_success() {
        let uid = Uid(7);
        let outcome = |lines: &[&str]| conditional_outcome(&done(lines), uid);
        assert_eq!(
            conditional_store(uid, 40, "+FLAGS.SILENT", "($mine)").redacted("A5"),
            "A5 UID STORE 7 (UNCHANGEDSINCE 40) +FLAGS.SILENT ($mine)"
        );
        // Stored: the FETCH sent despite .SILENT carries the new MODSEQ.
        assert_eq!(
            outcome(&[
                "* 3 FETCH (UID 7 MODSEQ (41))\r\n",
                "A5 OK Conditional store completed.\r\n"
            ])
            .unwrap(),
            ConditionalStore::Stored(Some(41))
        );
        assert_eq!(
            outcome(&[
                "* 2 FETCH (UID 6 MODSEQ (50))\r\n",
                "A5 OK Store completed.\r\n"
            ])
            .unwrap(),
            ConditionalStore::Stored(None),
            "another message's MODSEQ is not this one's"
        );
        // MODIFIED on an OK (RFC 7162 §3.1.3; Dovecot 2.3.19's answer first) and on a NO,
        // in a set or unreadable.
        for line in [
            "A5 OK [MODIFIED 7] Conditional store failed (0.002 + 0.000 + 0.001 secs).\r\n",
            "A5 NO [MODIFIED 7] Conditional store failed.\r\n",
            "A5 OK [MODIFIED 1,5:9] Conditional STORE failed\r\n",
            "A5 OK [MODIFIED 7:*] odd\r\n",
        ] {
            assert_eq!(
                outcome(&[line]).unwrap(),
                ConditionalStore::Modified,
                "{line}"
            );
        }
        assert_eq!(
            outcome(&["A5 OK [MODIFIED 8] not ours\r\n"]).unwrap(),
            ConditionalStore::Stored(None)
        );
        assert!(matches!(
            outcome(&["A5 NO Permission denied\r\n"]),
            Err(StoreError::Refused(_))
        ));
        assert!(matches!(
            outcome(&["A5 BAD Error in IMAP command\r\n"]),
            Err(StoreError::Protocol(_))
        ));
    }

    #[test]
    fn huge_ranges_are_not_expanded() {
        assert_eq!(expand("1:4294967295"), None);
        assert_eq!(expand("2:1").unwrap(), vec![1, 2]);
        // Many ranges of a size each allowed: a 1 MiB answer line would expand to gigabytes.
        let many = vec!["1:9000"; 1000].join(",");
        assert_eq!(expand(&many), None);
        let singles = vec!["7"; EXPANDED_MOST + 1].join(",");
        assert_eq!(expand(&singles), None);
        assert_eq!(
            expand(&vec!["7"; EXPANDED_MOST].join(",")).unwrap().len(),
            EXPANDED_MOST
        );
        assert_eq!(expand("1:9999").unwrap().len(), EXPANDED_MOST - 1);
    }
}
