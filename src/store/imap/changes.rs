//! Commands that change the server: CREATE, DELETE, RENAME, STORE, MOVE/COPY, EXPUNGE, APPEND.
//!
//! None of these is retried after a broken connection (the first attempt may have landed),
//! and every argument goes through `quote`.

use super::connection::Connection;
use super::errors::from_imap;
use super::{quote, ImapStore, Mode, Retry};
use crate::store::{Flag, MailboxId, StoreError, StoreResult, Uid, UidValidity};

/// Finds `[CODE a b c]` in a response and returns its arguments.
fn response_code<'a>(response: &'a str, code: &str) -> Option<Vec<&'a str>> {
    let start = response.find(&format!("[{code} "))? + code.len() + 2;
    let end = start + response[start..].find(']')?;
    Some(response[start..end].split(' ').collect())
}

/// The destination UIDVALIDITY and UID for `uid` in a `COPYUID validity src dst` code
/// ([RFC 4315 §3](https://www.rfc-editor.org/rfc/rfc4315#section-3)).
fn copied_uid(response: &str, uid: Uid) -> Option<(UidValidity, Uid)> {
    let args = response_code(response, "COPYUID")?;
    let validity = UidValidity(args.first()?.parse().ok()?);
    let (src, dst) = (expand(args.get(1)?)?, expand(args.get(2)?)?);
    let pos = src.iter().position(|&u| u == uid.0)?;
    dst.get(pos).map(|&u| (validity, Uid(u)))
}

/// Expands a small UID set (`3:5,9`) as COPYUID gives it; `None` if malformed or huge.
fn expand(set: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for item in set.split(',') {
        match item.split_once(':') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                let (lo, hi) = (a.min(b), a.max(b));
                if hi - lo > 10_000 {
                    return None;
                }
                out.extend(lo..=hi);
            }
            None => out.push(item.parse().ok()?),
        }
    }
    Some(out)
}

fn flag_list(flags: &[Flag]) -> String {
    flags.iter().map(Flag::as_str).collect::<Vec<_>>().join(" ")
}

impl ImapStore {
    /// Runs a command built from validated parts and returns its whole response as text.
    fn run_raw(&self, conn: &mut Connection, command: &str) -> StoreResult<String> {
        quote::validate(command, "command")?;
        self.begin(conn);
        let (data, _) = conn.session.run(command).map_err(from_imap)?;
        Ok(String::from_utf8_lossy(&data).into_owned())
    }

    pub(super) fn create(&self, mailbox: &MailboxId) -> StoreResult<()> {
        let arg = quote::quoted(quote::mailbox_arg(mailbox)?, "mailbox name")?;
        self.with_connection(None, Retry::Never, |conn| {
            self.run_raw(conn, &format!("CREATE {arg}")).map(drop)
        })
    }

    pub(super) fn delete(&self, mailbox: &MailboxId) -> StoreResult<()> {
        let arg = quote::quoted(quote::mailbox_arg(mailbox)?, "mailbox name")?;
        self.forget_selection(mailbox);
        self.with_connection(None, Retry::Never, |conn| {
            // Deselect first where possible. Never CLOSE: on a read-write selection it would
            // expunge messages other clients marked \Deleted.
            if conn.selection.mailbox().is_some_and(|(m, _)| m == mailbox) {
                if conn.has_capability("UNSELECT") {
                    self.run_raw(conn, "UNSELECT")?;
                } else {
                    self.begin(conn);
                    conn.session.examine("INBOX").map_err(from_imap)?;
                }
                conn.selection = super::connection::Selection::None;
            }
            self.run_raw(conn, &format!("DELETE {arg}")).map(drop)
        })
    }

    pub(super) fn rename(&self, from: &MailboxId, to: &MailboxId) -> StoreResult<()> {
        let from_arg = quote::quoted(quote::mailbox_arg(from)?, "mailbox name")?;
        let to_arg = quote::quoted(quote::mailbox_arg(to)?, "mailbox name")?;
        self.forget_selection(from);
        self.with_connection(None, Retry::Never, |conn| {
            self.run_raw(conn, &format!("RENAME {from_arg} {to_arg}"))
                .map(drop)
        })
    }

    pub(super) fn store_flags(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        flags: &[Flag],
    ) -> StoreResult<()> {
        let list = flag_list(flags);
        self.with_connection(Some(mailbox), Retry::Never, |conn| {
            self.select(conn, mailbox, Some(validity), Mode::Write)?;
            self.ensure_exists(conn, mailbox, uid)?;
            self.run_raw(conn, &format!("UID STORE {uid} FLAGS.SILENT ({list})"))
                .map(drop)
        })
    }

    pub(super) fn move_one(
        &self,
        from: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        to: &MailboxId,
    ) -> StoreResult<Option<(UidValidity, Uid)>> {
        let to_arg = quote::quoted(quote::mailbox_arg(to)?, "mailbox name")?;
        let caps = self.caps();
        if !caps.move_command && !caps.uidplus {
            return Err(StoreError::Unsupported(
                "the server has neither MOVE nor UIDPLUS, so a message cannot be moved without risking other clients' deleted messages".into(),
            ));
        }
        self.with_connection(Some(from), Retry::Never, |conn| {
            self.select(conn, from, Some(validity), Mode::Write)?;
            self.ensure_exists(conn, from, uid)?;
            if caps.move_command {
                let response = self.run_raw(conn, &format!("UID MOVE {uid} {to_arg}"))?;
                return Ok(copied_uid(&response, uid));
            }
            let response = self.run_raw(conn, &format!("UID COPY {uid} {to_arg}"))?;
            self.run_raw(conn, &format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"))?;
            self.run_raw(conn, &format!("UID EXPUNGE {uid}"))?;
            Ok(copied_uid(&response, uid))
        })
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
            self.select(conn, mailbox, Some(validity), Mode::Write)?;
            self.ensure_exists(conn, mailbox, uid)?;
            self.run_raw(conn, &format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"))?;
            self.run_raw(conn, &format!("UID EXPUNGE {uid}")).map(drop)
        })
    }

    /// Refuses to act on a UID that is no longer there (UID commands on a missing UID
    /// succeed silently, which would report a deletion or move that never happened).
    fn ensure_exists(
        &self,
        conn: &mut Connection,
        mailbox: &MailboxId,
        uid: Uid,
    ) -> StoreResult<()> {
        self.begin(conn);
        let found = conn
            .session
            .uid_search(format!("UID {uid}"))
            .map_err(from_imap)?;
        if found.contains(&uid.0) {
            Ok(())
        } else {
            Err(StoreError::NoSuchMessage {
                mailbox: mailbox.clone(),
                uid,
            })
        }
    }

    pub(super) fn append_one(
        &self,
        mailbox: &MailboxId,
        message: &[u8],
        flags: &[Flag],
    ) -> StoreResult<Option<(UidValidity, Uid)>> {
        // The imap crate puts the mailbox between quotes without escaping, so a name with a
        // quote or backslash is refused here rather than sent broken.
        let name = quote::mailbox_arg(mailbox)?;
        if name.contains(['"', '\\']) {
            return Err(StoreError::Invalid(format!(
                "cannot APPEND to {name:?}: quotes and backslashes are not supported in this name"
            )));
        }
        let imap_flags: Vec<imap::types::Flag<'static>> = flags
            .iter()
            .map(|f| imap::types::Flag::from(f.as_str().to_string()))
            .collect();
        self.with_connection(None, Retry::Never, |conn| {
            self.begin(conn);
            let appended = conn
                .session
                .append(name, message)
                .flags(imap_flags.iter().cloned())
                .finish()
                .map_err(from_imap)?;
            let uid = appended
                .uids
                .as_ref()
                .and_then(|u| u.first())
                .map(|m| match m {
                    imap_proto::UidSetMember::Uid(u) => *u,
                    imap_proto::UidSetMember::UidRange(r) => *r.start(),
                });
            Ok(appended
                .uid_validity
                .zip(uid)
                .map(|(v, u)| (UidValidity(v), Uid(u))))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copyuid_maps_source_to_destination() {
        let r = "* OK [COPYUID 1234 5 17] Moved UIDs.\r\n* 1 EXPUNGE\r\nA4 OK Move completed.\r\n";
        assert_eq!(copied_uid(r, Uid(5)), Some((UidValidity(1234), Uid(17))));
        let r = "A4 OK [COPYUID 99 3:5,9 20:22,30] Done\r\n";
        assert_eq!(copied_uid(r, Uid(9)), Some((UidValidity(99), Uid(30))));
        assert_eq!(copied_uid(r, Uid(4)), Some((UidValidity(99), Uid(21))));
        assert_eq!(copied_uid(r, Uid(6)), None);
        assert_eq!(copied_uid("A4 OK done\r\n", Uid(6)), None);
        assert_eq!(copied_uid("A4 OK [COPYUID x y", Uid(6)), None);
    }

    #[test]
    fn huge_ranges_are_not_expanded() {
        assert_eq!(expand("1:4294967295"), None);
        assert_eq!(expand("2:1").unwrap(), vec![1, 2]);
    }
}
