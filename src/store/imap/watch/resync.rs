//! Bringing one mailbox's report up to date from the state last reported (its basis), with
//! the best the server offers: QRESYNC (`EXAMINE m (QRESYNC (validity modseq))`, one
//! command, [RFC 7162 §3.2.5](https://www.rfc-editor.org/rfc/rfc7162#section-3.2.5)), else
//! CONDSTORE (`CHANGEDSINCE` for flags and arrivals, a UID-only `UID SEARCH` for expunges,
//! [RFC 7162 §3.1.4](https://www.rfc-editor.org/rfc/rfc7162#section-3.1.4)), else nothing
//! exact: the core must list the mailbox again. New messages are then fetched with the
//! listing's items, so a report carries what a listing would.
//!
//! The mailbox is left selected (EXAMINE, read-only) on the connection.

use super::state::{Basis, Outcome};
use crate::store::imap::connection::{Connection, Selection, MAX_RESPONSE_BYTES};
use crate::store::imap::wire::{fetches, Code, Command, Done, Untagged};
use crate::store::imap::{convert, metadata, quote, uid_set};
use crate::store::{MailboxChange, MailboxId, StoreError, StoreResult, Uid, UidValidity};

/// More UIDs than a mailbox holds: a server that names more is not believed.
const MAX_UIDS: u64 = 10_000_000;

/// What this connection can ask.
#[derive(Debug, Clone, Copy)]
pub struct Asks {
    /// QRESYNC is enabled on it.
    pub qresync: bool,
    /// The server offers CONDSTORE.
    pub condstore: bool,
    /// The server offers ESEARCH (RFC 4731): a UID search answers with ranges.
    pub esearch: bool,
}

/// What a resynchronisation found, and what the server said besides.
pub struct Resynced {
    pub outcome: Outcome,
    /// The mailbox changed again while this ran (after its EXAMINE).
    pub changed_since: bool,
    /// Every untagged response, for reports about other mailboxes (NOTIFY's STATUS).
    pub heard: Vec<Untagged>,
    /// What the EXAMINE showed (`None` if the mailbox is gone): the mailbox is selected.
    pub examined: Option<Examined>,
}

/// The mailbox as EXAMINE showed it.
#[derive(Debug, Clone, Copy)]
pub struct Examined {
    pub validity: u32,
    pub uid_next: Option<u32>,
    pub exists: u32,
    pub modseq: Option<u64>,
}

/// What EXAMINE's answer says of the mailbox.
pub fn examined(done: &Done) -> StoreResult<Examined> {
    let (mut validity, mut uid_next, mut modseq, mut exists) = (None, None, None, 0);
    for untagged in &done.untagged {
        if let Untagged::Exists(n) = untagged {
            exists = *n;
        }
    }
    for code in done.codes() {
        match code {
            Code::UidValidity(v) => validity = Some(*v),
            Code::UidNext(n) => uid_next = Some(*n),
            Code::HighestModSeq(n) => modseq = Some(*n),
            _ => {}
        }
    }
    Ok(Examined {
        validity: validity
            .ok_or_else(|| StoreError::Protocol("EXAMINE without UIDVALIDITY".into()))?,
        uid_next,
        exists,
        modseq,
    })
}

/// Whether `u`, heard while `examined` was selected, says it changed after EXAMINE
/// showed it: messages came or went, or a MODSEQ moved past the one it showed. A FETCH
/// without a size is a flag change (answers to imapfs's own FETCHes carry one, or a MODSEQ).
pub fn speaks_of_change(u: &Untagged, examined: &Examined) -> bool {
    let later = |m: u64| examined.modseq.is_none_or(|known| m > known);
    match u {
        Untagged::Exists(n) => *n != examined.exists,
        Untagged::Expunge(_) => true,
        Untagged::Vanished { earlier, .. } => !earlier,
        Untagged::Fetch(f) => match f.modseq {
            Some(m) => later(m),
            None => f.size.is_none(),
        },
        Untagged::Status {
            code: Some(Code::HighestModSeq(m)),
            ..
        } => later(*m),
        _ => false,
    }
}

/// The UIDs in `ranges` below `below`, ascending; too many is the server's error.
fn expand(ranges: &[(u32, u32)], below: u32) -> StoreResult<Vec<u32>> {
    let mut out = Vec::new();
    let mut count = 0u64;
    for &(a, b) in ranges {
        let (a, b) = (a.min(b), a.max(b).min(below.saturating_sub(1)));
        if a > b {
            continue;
        }
        count += u64::from(b - a) + 1;
        if count > MAX_UIDS {
            return Err(StoreError::Protocol(format!(
                "the server named more than {MAX_UIDS} UIDs"
            )));
        }
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Runs commands of one resynchronisation, keeping what the server says besides.
struct Exchange<'a> {
    conn: &'a mut Connection,
    heard: Vec<Untagged>,
    examined: Option<Examined>,
    changed_since: bool,
}

impl Exchange<'_> {
    fn run(&mut self, budget: u64, cmd: Command<'_>) -> StoreResult<Vec<Untagged>> {
        let done = self.conn.run_with_budget(budget, cmd)?;
        Ok(self.keep(done.untagged))
    }

    /// Notes changes after the EXAMINE and returns the responses.
    fn keep(&mut self, untagged: Vec<Untagged>) -> Vec<Untagged> {
        if let Some(examined) = &self.examined {
            self.changed_since |= untagged.iter().any(|u| speaks_of_change(u, examined));
        }
        self.heard.extend(untagged.iter().cloned());
        untagged
    }

    fn finish(self, outcome: Outcome) -> Resynced {
        Resynced {
            outcome,
            changed_since: self.changed_since,
            heard: self.heard,
            examined: self.examined,
        }
    }
}

/// Resynchronises `mailbox` from `basis` on `conn`, leaving it selected.
pub fn resync(
    conn: &mut Connection,
    mailbox: &MailboxId,
    basis: Option<&Basis>,
    asks: Asks,
) -> StoreResult<Resynced> {
    let name = quote::mailbox(mailbox)?;
    // Before the first command: flags changed here later may be newer than what it tells.
    let asked_at = std::time::Instant::now();
    let modseq = basis.and_then(|b| b.modseq).filter(|_| asks.condstore);
    let qresync = match (basis, modseq) {
        (Some(b), Some(m)) if asks.qresync => Some(format!("(QRESYNC ({} {m}))", b.validity)),
        _ => None,
    };
    let mut cmd = Command::new("EXAMINE").arg(&name);
    if let Some(q) = &qresync {
        cmd = cmd.syntax(q.as_str());
    }
    let mut x = Exchange {
        conn,
        heard: Vec::new(),
        examined: None,
        changed_since: false,
    };
    let done = match x.conn.run(cmd) {
        Ok(done) => done,
        // A refusal that closed the connection (SERVERBUG) says nothing of the mailbox.
        Err(StoreError::Refused(_) | StoreError::NoSuchMailbox(_)) if !x.conn.is_broken() => {
            x.conn.selection = Selection::None;
            return Ok(x.finish(Outcome::Gone));
        }
        Err(e) => return Err(e),
    };
    let now = examined(&done)?;
    x.conn.selection = Selection::Examine(mailbox.clone(), UidValidity(now.validity));
    x.conn.uid_next_seen = now.uid_next;
    let untagged = x.keep(done.untagged);
    x.examined = Some(now);
    let Some(basis) = basis else {
        return Ok(x.finish(Outcome::Stale));
    };
    if now.validity != basis.validity.0 {
        let validity = UidValidity(now.validity);
        return Ok(x.finish(Outcome::Recreated { validity }));
    }
    let (Some(known), Some(current), Some(uid_next)) = (modseq, now.modseq, now.uid_next) else {
        return Ok(x.finish(Outcome::Stale));
    };
    let mut change = MailboxChange {
        validity: Some(basis.validity),
        asked_at: Some(asked_at),
        ..MailboxChange::new(mailbox.clone())
    };
    let mut fresh = Basis {
        validity: basis.validity,
        uid_next,
        exists: now.exists,
        modseq: Some(current),
        uids: basis.uids.clone(),
    };
    let changed = if qresync.is_some() {
        untagged
    } else if current == known && uid_next == basis.uid_next && now.exists == basis.exists {
        Vec::new()
    } else {
        let cmd = Command::new("UID FETCH")
            .syntax("1:*")
            .syntax("(UID FLAGS)")
            .syntax(format!("(CHANGEDSINCE {known})"));
        let budget = MAX_RESPONSE_BYTES.max(u64::from(now.exists) * 256);
        x.run(budget, cmd)?
    };
    for ranges in changed.iter().filter_map(|u| match u {
        Untagged::Vanished { uids, .. } => Some(uids),
        _ => None,
    }) {
        change
            .vanished
            .extend(expand(ranges, basis.uid_next)?.into_iter().map(Uid));
    }
    let mut arrived = Vec::new();
    for f in fetches(&changed) {
        let Some(uid) = f.uid else { continue };
        if uid >= basis.uid_next {
            arrived.push(Uid(uid));
        } else if let Some(flags) = &f.flags {
            change.flags.push((Uid(uid), flags.clone()));
        }
    }
    if qresync.is_none() {
        // Without VANISHED: count. What is here now is what was, less what went, plus what
        // came; if the counts agree nothing went.
        let expected = u64::from(basis.exists) + arrived.len() as u64;
        if u64::from(now.exists) != expected {
            let Some(old) = &basis.uids else {
                return Ok(x.finish(Outcome::Stale));
            };
            let present = search_all(&mut x, asks, uid_next)?;
            change.vanished.extend(
                old.iter()
                    .filter(|u| present.binary_search(u).is_err())
                    .map(|&u| Uid(u)),
            );
            fresh.uids = Some(present);
        }
    }
    if let Some(uids) = fresh.uids.as_mut() {
        let gone: std::collections::HashSet<u32> = change.vanished.iter().map(|u| u.0).collect();
        uids.retain(|u| !gone.contains(u));
        uids.extend(arrived.iter().map(|u| u.0));
        uids.sort_unstable();
        uids.dedup();
    }
    if !arrived.is_empty() {
        let cmd = Command::new("UID FETCH")
            .syntax(uid_set(&arrived))
            .syntax(convert::LISTING_ITEMS);
        let budget = MAX_RESPONSE_BYTES.max(arrived.len() as u64 * 4096);
        let answer = x.run(budget, cmd)?;
        let ranges: Vec<(u32, u32)> = arrived.iter().map(|u| (u.0, u.0)).collect();
        change.arrived = metadata(mailbox, &answer, Some(&ranges));
    }
    change.vanished.sort();
    change.vanished.dedup();
    Ok(x.finish(Outcome::Synced {
        basis: fresh,
        change,
    }))
}

/// Every UID in the selected mailbox: `UID SEARCH ALL`, as ranges with ESEARCH.
fn search_all(x: &mut Exchange<'_>, asks: Asks, uid_next: u32) -> StoreResult<Vec<u32>> {
    let mut cmd = Command::new("UID SEARCH");
    if asks.esearch {
        cmd = cmd.syntax("RETURN (ALL)");
    }
    let answer = x.run(MAX_RESPONSE_BYTES, cmd.syntax("ALL"))?;
    let ranges: Vec<(u32, u32)> = answer
        .iter()
        .filter_map(|u| match u {
            Untagged::Search(r) => Some(r.iter().copied()),
            _ => None,
        })
        .flatten()
        .collect();
    expand(&ranges, uid_next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::imap::wire::{parse_response, Response};

    fn untagged(line: &[u8]) -> Untagged {
        match parse_response(line).unwrap() {
            Response::Untagged(u) => u,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn uid_ranges_are_expanded_below_the_next_uid() {
        assert_eq!(
            expand(&[(2, 2), (5, 7), (9, 4_000_000_000)], 8).unwrap(),
            [2, 5, 6, 7]
        );
        assert!(expand(&[(1, 4_000_000_000)], u32::MAX).is_err());
        assert!(expand(&[], 0).unwrap().is_empty());
    }

    #[test]
    fn what_was_heard_after_an_examine_says_the_mailbox_changed_again() {
        let seen = Examined {
            validity: 7,
            uid_next: Some(13),
            exists: 10,
            modseq: Some(20),
        };
        for line in [
            &b"* 11 EXISTS\r\n"[..],
            b"* 3 EXPUNGE\r\n",
            b"* VANISHED 8\r\n",
            b"* 3 FETCH (UID 4 MODSEQ (24) FLAGS (\\Seen))\r\n",
            b"* 3 FETCH (FLAGS (\\Seen))\r\n",
            b"* OK [HIGHESTMODSEQ 26] Highest\r\n",
        ] {
            assert!(speaks_of_change(&untagged(line), &seen), "{line:?}");
        }
        for line in [
            &b"* 10 EXISTS\r\n"[..],
            b"* VANISHED (EARLIER) 8\r\n",
            b"* 3 FETCH (UID 4 FLAGS (\\Seen) MODSEQ (19))\r\n",
            b"* 9 FETCH (UID 11 RFC822.SIZE 12 FLAGS ())\r\n",
            b"* OK [HIGHESTMODSEQ 20] Highest\r\n",
            b"* STATUS Archive (HIGHESTMODSEQ 99)\r\n",
            b"* 2 RECENT\r\n",
        ] {
            assert!(!speaks_of_change(&untagged(line), &seen), "{line:?}");
        }
    }
}
