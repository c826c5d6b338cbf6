//! One watcher connection and its thread: connect (again, with backoff, after a failure),
//! ask to be told of changes (NOTIFY) or listen where changes are pushed (IDLE), poll
//! what nothing pushes, bring up to date each mailbox said to have changed, and keep the
//! connection alive: a NOOP, or IDLE begun again, every keepalive, which must be answered
//! within the command deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::resync::{examined, resync, speaks_of_change, Asks, Examined};
use super::state::{inbox, Heard, Outcome, Role, Status};
use super::wait::{boot_clock, wait_on, Woken};
use super::{Offers, Shared};
use crate::store::imap::backoff;
use crate::store::imap::connection::{connect, Connection, Selection};
use crate::store::imap::errors::{check, from_wire};
use crate::store::imap::quote;
use crate::store::imap::wire::{Code, Command, Response, Untagged};
use crate::store::{MailboxId, StoreError, StoreEvent, StoreResult, UidValidity};

/// The most one unsolicited response may take (a STATUS, a LIST, a FETCH of flags).
const UNSOLICITED_BUDGET: u64 = 1 << 20;

/// The longest single wait: the boot clock is looked at this often, so a keepalive due
/// while the machine slept goes out soon after it wakes.
const MAX_SLICE: Duration = Duration::from_secs(5);

/// Dovecot 2.3 reports some mailbox-list changes late, with the next one, or not at all:
/// after a LIST report the list is checked again this long after it, and then again...
const RECHECK_AFTER: Duration = Duration::from_secs(1);
/// ...this long after that.
const RECHECK_AGAIN_AFTER: Duration = Duration::from_secs(2);

/// Items a poll asks of each mailbox.
const STATUS_ITEMS: &str = "(MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)";
const STATUS_ITEMS_NO_MODSEQ: &str = "(MESSAGES UIDNEXT UIDVALIDITY)";

/// What to be told of: every mailbox's new, gone and re-flagged messages (as STATUS, since
/// nothing is selected) and every mailbox created, renamed or deleted (RFC 5465 §5).
const NOTIFY_SET: &str = "SET STATUS (personal (MessageNew MessageExpunge FlagChange MailboxName))";

/// A watcher connection's thread.
pub struct Channel {
    shared: Arc<Shared>,
    role: Role,
    /// The mailbox list as last polled: names and whether each is selectable.
    listed: Option<Vec<(String, bool)>>,
    /// A connection already logged in, to use first.
    first: Option<Connection>,
    /// The session before this one was ended to be renewed (after a mailbox RENAME).
    renewed: bool,
}

/// One connection's life.
struct Session {
    conn: Connection,
    asks: Asks,
    /// The mailbox selected, and what its EXAMINE showed.
    selected: Option<(MailboxId, Examined)>,
    /// When (on the boot clock) the connection is next checked, and next polled.
    next_keepalive: Duration,
    next_poll: Option<Duration>,
    /// Polls due before `next_poll` to catch mailbox-list changes reported late.
    rechecks: Vec<Duration>,
    /// The mailbox list changed: report it.
    list_changed: bool,
    /// Followed mailboxes deleted or renamed away (NOTIFY): reported stale with the list.
    forgotten: Vec<MailboxId>,
    /// Mailboxes renamed (NOTIFY's `OLDNAME`), old name and new: reported before the list.
    renamed: Vec<(MailboxId, MailboxId)>,
}

/// Why a connection was let go without an error.
enum End {
    /// The watcher stops.
    Stopped,
    /// Every session must end ([`super::Watch::renew`]): connect again at once.
    Renew,
}

impl Channel {
    pub fn new(shared: Arc<Shared>, role: Role, first: Option<Connection>) -> Channel {
        Channel {
            shared,
            role,
            listed: None,
            first,
            renewed: false,
        }
    }

    /// Connects, watches, and connects again after every failure, until stopped.
    pub fn run(mut self) {
        let mut failures = 0u32;
        loop {
            if self.shared.stopping() {
                return;
            }
            let conn = match self.first.take() {
                Some(conn) => Ok(conn),
                None => connect(&self.shared.config, &self.shared.counters),
            };
            let result = conn.and_then(|conn| self.serve(conn, &mut failures));
            self.shared.with(|s| s.went_down(self.role));
            if !matches!(result, Ok(End::Stopped)) {
                self.shared.emit(vec![StoreEvent::Unfollowed]);
            }
            match result {
                Ok(End::Stopped) => return,
                Ok(End::Renew) => self.renewed = true,
                Err(e) => {
                    failures += 1;
                    let wait = backoff(failures);
                    if failures == 1 {
                        tracing::warn!(role = ?self.role, error = %e, retry_in = ?wait, "watcher connection lost; changes elsewhere show when listed until it is back");
                    } else {
                        tracing::debug!(role = ?self.role, error = %e, retry_in = ?wait, "watcher connection still down");
                    }
                    self.shared.wakers[self.role as usize].sleep(wait);
                }
            }
        }
    }

    /// One connection, until it fails (an error), the watcher stops, or it must be renewed.
    fn serve(&mut self, conn: Connection, failures: &mut u32) -> StoreResult<End> {
        let renewal = self.shared.renewals();
        let offers = self.shared.offers();
        let mut s = Session {
            conn,
            asks: Asks {
                qresync: false,
                condstore: offers.condstore,
                esearch: offers.esearch,
            },
            selected: None,
            next_keepalive: boot_clock() + self.shared.settings.keepalive,
            next_poll: None,
            rechecks: Vec::new(),
            list_changed: false,
            forgotten: Vec::new(),
            renamed: Vec::new(),
        };
        if offers.qresync {
            // VANISHED instead of EXPUNGE, and EXAMINE that resynchronises (RFC 7162 §3.2.3).
            let done = s.conn.run(Command::new("ENABLE").syntax("QRESYNC"))?;
            s.asks.qresync = done.untagged.iter().any(|u| {
                matches!(u, Untagged::Enabled(caps) if caps.iter().any(|c| c.eq_ignore_ascii_case("QRESYNC")))
            });
        }
        self.start(&mut s)?;
        if *failures > 0 {
            tracing::info!(role = ?self.role, "watcher connection back; comparing what it watches with the server");
        }
        *failures = 0;
        loop {
            if self.shared.stopping() {
                let _ = s.conn.run(Command::new("LOGOUT"));
                return Ok(End::Stopped);
            }
            if self.shared.renewals() != renewal {
                tracing::debug!(role = ?self.role, "ending this session and starting a new one");
                let _ = s.conn.run(Command::new("LOGOUT"));
                return Ok(End::Renew);
            }
            self.work(&mut s)?;
            if self.shared.stopping() {
                continue;
            }
            match self.idle_target() {
                Some(mailbox) => {
                    let ready = match &s.selected {
                        Some((m, _)) if *m == mailbox => true,
                        _ => self.select(&mut s, &mailbox)?,
                    };
                    if ready {
                        self.idle(&mut s, &mailbox)?;
                    } else {
                        // Another connection is bringing it up to date; try again soon.
                        self.shared.wakers[self.role as usize].sleep(Duration::from_millis(50));
                    }
                }
                None => self.wait(&mut s)?,
            }
        }
    }

    /// What makes the connection live: NOTIFY with every mailbox's status, or a first poll.
    fn start(&mut self, s: &mut Session) -> StoreResult<()> {
        match self.role {
            Role::Notify => {
                let done = s.conn.run(Command::new("NOTIFY").syntax(NOTIFY_SET))?;
                let since = Instant::now();
                // Mailboxes with no STATUS are gone: finding so is their resynchronisation.
                let reported: Vec<String> = done
                    .untagged
                    .iter()
                    .filter_map(|u| match u {
                        Untagged::MailboxStatus(st) => Some(st.mailbox.clone()),
                        _ => None,
                    })
                    .collect();
                self.hear(s, done.untagged)?;
                // After a RENAME's renewal, Dovecot 2.3 has named INBOX at the start and
                // then pushed nothing of a message that arrived there: nothing is followed
                // until the new session pushes something of it.
                let renewed = std::mem::take(&mut self.renewed);
                self.shared.with(|st| {
                    for mailbox in st.owned(self.role) {
                        let named = reported.iter().any(|r| {
                            r == mailbox.as_str()
                                || crate::store::imap::utf7::encode(r) == mailbox.as_str()
                        });
                        if !named || renewed {
                            st.unreported_at_start(&mailbox, since);
                        }
                    }
                    st.went_live(self.role, since);
                });
                // Mailboxes may have come and gone while nobody was listening (NOTIFY
                // just gave every mailbox's STATUS).
                self.poll(s, false)?;
                s.list_changed = true;
            }
            Role::Primary => {
                self.poll(s, true)?;
                let now = Instant::now();
                self.shared.with(|st| st.went_live(self.role, now));
            }
            Role::Recent => {
                let now = Instant::now();
                self.shared.with(|st| st.went_live(self.role, now));
            }
        }
        Ok(())
    }

    /// The mailbox this connection idles on, if any.
    fn idle_target(&self) -> Option<MailboxId> {
        if !self.shared.offers().idle {
            return None;
        }
        match self.role {
            Role::Notify => None,
            Role::Primary => Some(inbox()),
            Role::Recent => self.shared.with(|st| st.recent()),
        }
    }

    /// Everything due: a poll, the mailbox list's report, each mailbox said to have changed.
    fn work(&mut self, s: &mut Session) -> StoreResult<()> {
        let now = boot_clock();
        let periodic = s.next_poll.is_some_and(|at| now >= at);
        if periodic || s.rechecks.first().is_some_and(|&at| now >= at) {
            s.rechecks.retain(|&at| at > now);
            // With NOTIFY, the rechecks after a reported list change look at the list alone.
            self.poll(s, periodic || self.role != Role::Notify)?;
        }
        if s.list_changed {
            s.list_changed = false;
            // A followed mailbox deleted elsewhere is no longer kept true, and one made again
            // under its name is another mailbox: what the core listed there is stale,
            // though the name is still listed.
            let stale = s.forgotten.drain(..).map(StoreEvent::MailboxStale);
            let renamed = s
                .renamed
                .drain(..)
                .map(|(from, to)| StoreEvent::MailboxRenamed { from, to });
            self.shared.emit(
                renamed
                    .chain(std::iter::once(StoreEvent::MailboxList))
                    .chain(stale)
                    .collect(),
            );
        }
        while let Some(mailbox) = self.shared.with(|st| st.next_due(self.role)) {
            if !self.resync(s, &mailbox)? {
                break;
            }
        }
        Ok(())
    }

    /// Brings `mailbox` up to date, leaving it selected; false if another connection has it
    /// in hand or it is gone. On the mailbox this connection idles on, that also starts
    /// hearing of its changes. With NOTIFY, or polls alone, nothing stays selected (NOTIFY
    /// reports a selected mailbox's changes otherwise, and Dovecot answers a STATUS of the
    /// selected mailbox from before its latest changes).
    fn resync(&mut self, s: &mut Session, mailbox: &MailboxId) -> StoreResult<bool> {
        let Some(claim) = self.shared.with(|st| st.claim(mailbox)) else {
            return Ok(false);
        };
        let role = self.role;
        tracing::debug!(?role, mailbox = %mailbox, from = ?claim.basis.as_ref().map(|b| (b.uid_next, b.exists, b.modseq)), "bringing a followed mailbox up to date");
        let idle_here = role != Role::Notify && self.idle_target().as_ref() == Some(mailbox);
        // Selecting another mailbox ends listening on the one idled on.
        self.shared.with(|st| st.idling(role, None));
        let found = match resync(&mut s.conn, mailbox, claim.basis.as_ref(), s.asks) {
            Ok(found) => found,
            Err(e) => {
                self.shared.with(|st| st.release(&claim));
                return Err(e);
            }
        };
        s.selected = found.examined.map(|e| (mailbox.clone(), e));
        let gone = matches!(found.outcome, Outcome::Gone);
        let since = Instant::now();
        self.shared
            .commit(claim, found.outcome, found.changed_since, |st| {
                if gone {
                    st.forget_recent(mailbox);
                } else if idle_here {
                    st.idling(role, Some((mailbox.clone(), since)));
                }
            });
        self.hear(s, found.heard)?;
        if role == Role::Notify || !self.shared.offers().idle {
            self.unselect(s)?;
        }
        Ok(!gone)
    }

    /// Selects `mailbox` to idle on it (bringing its report up to date if it is followed).
    /// False if that must wait (another connection has it in hand) or it is gone.
    fn select(&mut self, s: &mut Session, mailbox: &MailboxId) -> StoreResult<bool> {
        if self.shared.with(|st| st.is_tracked(mailbox)) {
            return self.resync(s, mailbox);
        }
        self.shared.with(|st| st.idling(self.role, None));
        let name = quote::mailbox(mailbox)?;
        let done = match s.conn.run(Command::new("EXAMINE").arg(&name)) {
            Ok(done) => done,
            Err(StoreError::Refused(_)) if !s.conn.is_broken() => {
                s.selected = None;
                self.shared.with(|st| st.forget_recent(mailbox));
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let shown = examined(&done)?;
        s.conn.selection = Selection::Examine(mailbox.clone(), UidValidity(shown.validity));
        s.conn.uid_next_seen = shown.uid_next;
        s.selected = Some((mailbox.clone(), shown));
        let since = Instant::now();
        self.shared
            .with(|st| st.idling(self.role, Some((mailbox.clone(), since))));
        self.hear(s, done.untagged)?;
        Ok(true)
    }

    /// Leaves the selected mailbox (UNSELECT, or CLOSE, which expunges nothing after
    /// EXAMINE); what the server says meanwhile of it is a change after its EXAMINE.
    fn unselect(&mut self, s: &mut Session) -> StoreResult<()> {
        let Some((mailbox, shown)) = s.selected.take() else {
            return Ok(());
        };
        let verb = if self.shared.offers().unselect {
            "UNSELECT"
        } else {
            "CLOSE"
        };
        let done = s.conn.run(Command::new(verb))?;
        s.conn.selection = Selection::None;
        if done.untagged.iter().any(|u| speaks_of_change(u, &shown)) {
            self.shared
                .with(|st| st.change_heard(&mailbox, Instant::now()));
        }
        self.hear(s, done.untagged)
    }

    /// IDLE on `mailbox` until it changes, something else is due, or the keepalive.
    fn idle(&mut self, s: &mut Session, mailbox: &MailboxId) -> StoreResult<()> {
        let shown = s.selected.as_ref().map(|(_, e)| *e);
        let changes = |u: &Untagged| shown.is_none_or(|e| speaks_of_change(u, &e));
        s.conn.begin_exchange(UNSOLICITED_BUDGET);
        let tag = s.conn.wire.send(Command::new("IDLE")).map_err(from_wire)?;
        let mut changed = false;
        loop {
            match s.conn.wire.next_response().map_err(from_wire)? {
                Response::Continuation(_) => break,
                Response::Untagged(u) => changed |= changes(&u),
                Response::Tagged(t) => {
                    s.conn.wire.forget(&tag);
                    check(&t)?;
                    return Err(StoreError::Protocol("IDLE ended before it began".into()));
                }
            }
        }
        let mut ended_by_server = false;
        while !changed {
            if self.shared.stopping() || self.shared.with(|st| st.next_due(self.role).is_some()) {
                break;
            }
            let now = boot_clock();
            let due = s
                .next_poll
                .map_or(s.next_keepalive, |p| p.min(s.next_keepalive));
            if now >= due {
                break;
            }
            match self.wait_for_server(s, (due - now).min(MAX_SLICE))? {
                Woken::Signal => break,
                Woken::Timeout => {}
                Woken::Input => {
                    s.conn.start_step(UNSOLICITED_BUDGET);
                    match s.conn.wire.next_response().map_err(from_wire)? {
                        Response::Untagged(u) => changed |= changes(&u),
                        Response::Tagged(t) if t.tag == tag => {
                            // The server ended the IDLE itself; begin again.
                            s.conn.wire.forget(&tag);
                            check(&t)?;
                            ended_by_server = true;
                            break;
                        }
                        other => {
                            return Err(StoreError::Protocol(format!(
                                "unexpected during IDLE: {other:?}"
                            )))
                        }
                    }
                }
            }
        }
        if !ended_by_server {
            // DONE must be answered within the command deadline: the liveness check.
            s.conn.start_step(UNSOLICITED_BUDGET);
            s.conn.wire.write_line(b"DONE").map_err(from_wire)?;
            let tagged = s.conn.wire.finish(&tag).map_err(from_wire)?;
            check(&tagged)?;
            changed |= s.conn.wire.take_untagged().iter().any(changes);
        }
        s.next_keepalive = boot_clock() + self.shared.settings.keepalive;
        if changed {
            self.shared
                .with(|st| st.change_heard(mailbox, Instant::now()));
        }
        Ok(())
    }

    /// Waits (nothing selected, or no IDLE) for reports, work, a poll or the keepalive.
    fn wait(&mut self, s: &mut Session) -> StoreResult<()> {
        loop {
            if self.shared.stopping()
                || s.list_changed
                || self.shared.with(|st| st.next_due(self.role).is_some())
            {
                return Ok(());
            }
            let now = boot_clock();
            if now >= s.next_keepalive {
                self.noop(s)?;
                continue;
            }
            let mut due = s.next_keepalive;
            for at in [s.next_poll, s.rechecks.first().copied()]
                .into_iter()
                .flatten()
            {
                if now >= at {
                    return Ok(());
                }
                due = due.min(at);
            }
            match self.wait_for_server(s, (due - now).min(MAX_SLICE))? {
                Woken::Signal => return Ok(()),
                Woken::Timeout => {}
                Woken::Input => {
                    // Everything the server sent at once is heard before acting on it, so
                    // that a burst of reports (a mailbox list replayed) is one relist.
                    loop {
                        s.conn.start_step(UNSOLICITED_BUDGET);
                        match s.conn.wire.next_response().map_err(from_wire)? {
                            Response::Untagged(u) => self.hear(s, vec![u])?,
                            other => {
                                return Err(StoreError::Protocol(format!(
                                    "unexpected with no command under way: {other:?}"
                                )))
                            }
                        }
                        if !s.conn.has_buffered_input() {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Waits up to `timeout` for the server or a wake-up; input already read wins.
    fn wait_for_server(&self, s: &Session, timeout: Duration) -> StoreResult<Woken> {
        if s.conn.has_buffered_input() {
            return Ok(Woken::Input);
        }
        wait_on(
            Some(s.conn.raw_fd()),
            &self.shared.wakers[self.role as usize],
            timeout,
        )
        .map_err(|e| StoreError::Connection(format!("waiting for the server: {e}")))
    }

    /// A NOOP: the keepalive, and a nudge for reports the server holds back.
    fn noop(&mut self, s: &mut Session) -> StoreResult<()> {
        tracing::debug!(role = ?self.role, "keepalive");
        let done = s.conn.run(Command::new("NOOP"))?;
        s.next_keepalive = boot_clock() + self.shared.settings.keepalive;
        if let Some((mailbox, shown)) = &s.selected {
            if done.untagged.iter().any(|u| speaks_of_change(u, shown)) {
                self.shared
                    .with(|st| st.change_heard(mailbox, Instant::now()));
            }
        }
        self.hear(s, done.untagged)
    }

    /// Checks the mailbox list and the followed mailboxes: LIST-STATUS, or LIST then one
    /// STATUS each (not of the mailbox selected here, whose STATUS Dovecot answers from
    /// before its last changes). With NOTIFY, the periodic poll asks LIST-STATUS where
    /// offered, for what the server did not report (Dovecot 2.3 has sent nothing at all
    /// of a mailbox deleted and made again with as many messages, which only its
    /// UIDVALIDITY tells apart); its answers are acted on as reports (Dovecot then sends
    /// no report of what they told), but do not make a mailbox followed.
    fn poll(&mut self, s: &mut Session, with_status: bool) -> StoreResult<()> {
        tracing::debug!(role = ?self.role, with_status, "polling");
        let offers = Offers {
            list_status: self.shared.offers().list_status && with_status,
            ..self.shared.offers()
        };
        let items = if offers.condstore {
            STATUS_ITEMS
        } else {
            STATUS_ITEMS_NO_MODSEQ
        };
        let mut list = Command::new("LIST").syntax("\"\" \"*\"");
        if offers.list_status {
            list = list.syntax(format!("RETURN (STATUS {items})"));
        }
        let mut untagged = s.conn.run(list)?.untagged;
        let mut listed: Vec<(String, bool)> = untagged
            .iter()
            .filter_map(|u| match u {
                Untagged::List(e) => Some((
                    e.name.clone(),
                    !e.attributes.iter().any(|a| {
                        a.eq_ignore_ascii_case("\\Noselect")
                            || a.eq_ignore_ascii_case("\\NonExistent")
                    }),
                )),
                _ => None,
            })
            .collect();
        listed.sort();
        let names: Vec<String> = listed.iter().map(|(n, _)| n.clone()).collect();
        self.shared.with(|st| st.keep_only(&names));
        if self.listed.as_ref() != Some(&listed) {
            tracing::debug!(role = ?self.role, names = ?names, "the mailbox list changed");
            s.list_changed = true;
            self.listed = Some(listed);
        }
        // A STATUS of each followed mailbox where LIST-STATUS is missing, but not for
        // NOTIFY, which reports their changes itself.
        if !offers.list_status && offers.condstore && self.role != Role::Notify {
            let selected = s.selected.as_ref().map(|(m, _)| m.clone());
            let wanted: Vec<MailboxId> = self
                .shared
                .with(|st| st.owned(self.role))
                .into_iter()
                .filter(|m| Some(m) != selected.as_ref())
                .collect();
            let names: Vec<_> = wanted
                .iter()
                .map(quote::mailbox)
                .collect::<StoreResult<_>>()?;
            let commands = names
                .iter()
                .map(|n| Command::new("STATUS").arg(n).syntax(items))
                .collect();
            if !names.is_empty() {
                let (answers, _) = s.conn.run_pipelined(UNSOLICITED_BUDGET, commands)?;
                untagged.extend(answers);
            }
        }
        s.next_poll = Some(boot_clock() + self.shared.settings.poll_interval);
        // The mailbox selected here is idled on; its STATUS may predate its changes. The
        // LIST answers are not reports of changes.
        let selected = s.selected.as_ref().map(|(m, _)| m.as_str().to_string());
        untagged.retain(|u| match u {
            Untagged::List(_) => false,
            Untagged::MailboxStatus(st) => Some(&st.mailbox) != selected.as_ref(),
            _ => true,
        });
        self.hear_as(s, untagged, Heard::Polled)
    }

    /// What the server said besides answers: STATUS of a mailbox (NOTIFY, or a poll's),
    /// LIST of one created, renamed or deleted (NOTIFY), a refusal to go on notifying.
    fn hear(&mut self, s: &mut Session, untagged: Vec<Untagged>) -> StoreResult<()> {
        self.hear_as(s, untagged, Heard::Pushed)
    }

    fn hear_as(&mut self, s: &mut Session, untagged: Vec<Untagged>, how: Heard) -> StoreResult<()> {
        let now = Instant::now();
        for u in untagged {
            match u {
                Untagged::MailboxStatus(st) => {
                    let status = Status {
                        messages: st.messages,
                        uid_next: st.uid_next,
                        validity: st.uid_validity,
                        modseq: st.highest_modseq,
                    };
                    let role = self.role;
                    let due = self
                        .shared
                        .with(|state| state.status_heard(role, &st.mailbox, status, how, now));
                    tracing::debug!(role = ?role, mailbox = %st.mailbox, ?status, due, "status heard");
                }
                Untagged::List(entry) if self.role == Role::Notify => {
                    let forgotten = self
                        .shared
                        .with(|state| state.list_heard(&entry.name, entry.old_name.as_deref()));
                    tracing::debug!(name = %entry.name, attributes = ?entry.attributes, old_name = ?entry.old_name, ?forgotten, "mailbox list report heard");
                    s.forgotten.extend(forgotten);
                    if let Some(old) = &entry.old_name {
                        s.renamed
                            .push((MailboxId::new(old), MailboxId::new(&entry.name)));
                    }
                    s.list_changed = true;
                    let now = boot_clock();
                    s.rechecks = vec![
                        now + RECHECK_AFTER,
                        now + RECHECK_AFTER + RECHECK_AGAIN_AFTER,
                    ];
                }
                Untagged::Status {
                    code: Some(Code::Other(name, _)),
                    text,
                    ..
                } if name == "NOTIFICATIONOVERFLOW" => {
                    return Err(StoreError::Protocol(format!(
                        "the server stopped notifying: {text}"
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }
}
