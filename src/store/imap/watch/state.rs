//! What the watcher knows and promises: for each followed mailbox, the state it last
//! reported (its basis) and whether that is still being kept true; which connection keeps
//! each mailbox true; and the listings taken, so that a new listing can be trusted without
//! asking the server. Pure bookkeeping under one lock: no I/O here.

use std::collections::HashMap;
use std::time::Instant;

use crate::store::{EventSink, MailboxChange, MailboxId, MailboxVersion, StoreEvent, UidValidity};

/// How the watcher learns of changes, by what the server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// NOTIFY (RFC 5465) with CONDSTORE: one connection hears of every mailbox.
    Notify,
    /// IDLE (RFC 2177) on INBOX and on the mailbox listed last; the others are polled.
    Idle,
    /// Polling alone, every `--poll-interval`.
    Poll,
}

/// A watcher connection's job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The one NOTIFY connection.
    Notify = 0,
    /// IDLE on INBOX (where IDLE is offered), polls of the mailbox list and the other
    /// mailboxes.
    Primary = 1,
    /// IDLE on the mailbox listed last, when that is not INBOX.
    Recent = 2,
}

impl Role {
    /// The connections a mode needs.
    pub fn for_mode(mode: Mode) -> &'static [Role] {
        match mode {
            Mode::Notify => &[Role::Notify],
            Mode::Idle => &[Role::Primary, Role::Recent],
            Mode::Poll => &[Role::Primary],
        }
    }
}

/// A mailbox's state as last reported (by a listing the core took, or by the watcher).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Basis {
    pub validity: UidValidity,
    pub uid_next: u32,
    pub exists: u32,
    /// HIGHESTMODSEQ (CONDSTORE). Without it flag changes cannot be asked for, only heard
    /// of while the mailbox is idled on.
    pub modseq: Option<u64>,
    /// The UIDs, ascending, where expunges must be found by comparing (without QRESYNC).
    pub uids: Option<Vec<u32>>,
}

impl Basis {
    /// Whether this is the state `version` describes.
    fn is(&self, version: &MailboxVersion) -> bool {
        self.validity == version.uid_validity
            && self.uid_next == version.uid_next
            && self.exists == version.exists
            && self.modseq == Some(version.highest_modseq)
    }

    /// Whether changes since this state can be asked of the server (CONDSTORE).
    pub fn versioned(&self) -> bool {
        self.modseq.is_some()
    }
}

/// How a STATUS came: pushed by the server (NOTIFY), or the answer to a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    Pushed,
    Polled,
}

/// What a STATUS said of a mailbox (any item may be missing: NOTIFY sends what changed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    pub messages: Option<u32>,
    pub uid_next: Option<u32>,
    pub validity: Option<u32>,
    pub modseq: Option<u64>,
}

impl Status {
    /// Whether the mailbox differs from `basis` by what the status tells.
    fn differs_from(&self, basis: &Basis) -> bool {
        self.validity.is_some_and(|v| v != basis.validity.0)
            || self.uid_next.is_some_and(|n| n != basis.uid_next)
            || self.messages.is_some_and(|n| n != basis.exists)
            || self.modseq.is_some_and(|m| Some(m) != basis.modseq)
    }
}

/// A listing the core took, noted when it was taken: when its EXAMINE went out, and what
/// it said.
#[derive(Debug, Clone)]
pub struct ListingNote {
    pub started: Instant,
    pub validity: UidValidity,
    pub uid_next: Option<u32>,
    pub exists: u32,
    pub modseq: Option<u64>,
    pub uids: Option<Vec<u32>>,
}

impl ListingNote {
    /// Whether this note is of the listing whose version is `known`.
    fn matches(&self, known: Option<&MailboxVersion>) -> bool {
        match known {
            Some(v) => {
                self.validity == v.uid_validity
                    && self.uid_next == Some(v.uid_next)
                    && self.exists == v.exists
                    && self.modseq == Some(v.highest_modseq)
            }
            None => true,
        }
    }
}

/// One followed mailbox.
#[derive(Debug)]
struct Tracked {
    /// The state reported last; `None` when nothing checkable is known.
    basis: Option<Basis>,
    /// The basis came from a listing the watcher cannot vouch for yet: until a connection
    /// has compared it with the server, changes since may go unreported.
    pending: bool,
    /// The server said something changed since the basis: a resynchronisation is due.
    dirty: bool,
    /// A connection is resynchronising it.
    busy: bool,
    /// Raised whenever a listing replaces the basis.
    generation: u64,
    /// When a change of it was last heard of.
    noticed: Option<Instant>,
    /// NOTIFY did not name it when it started (no STATUS of it then): the server may not
    /// report its changes, so it is not followed until a STATUS of it is heard. Dovecot 2.3
    /// has left out a mailbox being deleted and made again as NOTIFY started, and then
    /// reported nothing of the new one.
    unreported: bool,
}

/// What one watcher connection is doing.
#[derive(Debug, Default, Clone)]
struct Channel {
    /// Since when everything it watches is kept true (`None`: not connected).
    live_since: Option<Instant>,
    /// The mailbox it idles on, and since when (the end of its EXAMINE).
    idling: Option<(MailboxId, Instant)>,
}

/// A resynchronisation a connection took on: what it starts from.
#[derive(Debug, Clone)]
pub struct Claim {
    pub mailbox: MailboxId,
    pub basis: Option<Basis>,
    generation: u64,
}

/// What a resynchronisation found.
#[derive(Debug)]
pub enum Outcome {
    /// The mailbox now, and what changed since the basis.
    Synced { basis: Basis, change: MailboxChange },
    /// UIDVALIDITY changed: every UID known before means nothing.
    Recreated { validity: UidValidity },
    /// The server cannot say what changed since the basis: the core must list it again.
    Stale,
    /// The mailbox is gone (deleted or renamed elsewhere).
    Gone,
}

/// Everything the watcher knows, under one lock.
pub struct State {
    pub mode: Mode,
    /// The mode was learned from the server: until then nothing is followed.
    learned: bool,
    pub sink: Option<EventSink>,
    pub stopping: bool,
    tracked: HashMap<MailboxId, Tracked>,
    notes: HashMap<MailboxId, ListingNote>,
    /// The mailbox listed last other than INBOX (Idle mode: the second IDLE).
    recent: Option<MailboxId>,
    channels: [Channel; 3],
    /// Whether the mailbox list is kept true: its connection checked it since connecting.
    list_live: bool,
    /// Listings the core asked to follow before the mode was learned (the first moments
    /// of a mount): followed once it is.
    early: Vec<(MailboxId, Option<MailboxVersion>)>,
    /// Mailboxes NOTIFY reported made (or made again) under their name: Dovecot 2.3 has
    /// pushed nothing at all of a mailbox made again at once, so one is followed only
    /// once a STATUS of it is pushed, and its listing is looked at again until then.
    made: std::collections::HashSet<MailboxId>,
}

/// How many mailboxes reported made are remembered (`State::made`).
const MADE_AT_MOST: usize = 1024;

/// How many listings taken before the mode was learned are remembered.
const EARLY_AT_MOST: usize = 64;

/// The mailbox a Primary connection idles on.
pub fn inbox() -> MailboxId {
    MailboxId::new("INBOX")
}

impl State {
    /// Nothing known yet; [`State::learned`] sets the mode.
    pub fn new() -> State {
        State {
            mode: Mode::Poll,
            learned: false,
            sink: None,
            stopping: false,
            tracked: HashMap::new(),
            notes: HashMap::new(),
            recent: None,
            channels: Default::default(),
            list_live: false,
            early: Vec::new(),
            made: std::collections::HashSet::new(),
        }
    }

    /// How the watcher watches, now that the server told what it offers. Listings taken
    /// before are followed now: each is due a check, which its connection makes when it
    /// starts.
    pub fn learned(&mut self, mode: Mode) {
        self.mode = mode;
        self.learned = true;
        for (mailbox, known) in std::mem::take(&mut self.early) {
            self.follow(&mailbox, known);
        }
    }

    /// Whether the watcher runs (a sink was given, the mode learned, and not stopped).
    pub fn running(&self) -> bool {
        self.sink.is_some() && self.learned && !self.stopping
    }

    /// The connection that keeps `mailbox` true.
    pub fn owner(&self, mailbox: &MailboxId) -> Role {
        match self.mode {
            Mode::Notify => Role::Notify,
            Mode::Idle if self.idled_by(Role::Recent, mailbox) => Role::Recent,
            Mode::Idle | Mode::Poll => Role::Primary,
        }
    }

    fn idled_by(&self, role: Role, mailbox: &MailboxId) -> bool {
        self.channels[role as usize]
            .idling
            .as_ref()
            .is_some_and(|(m, _)| m == mailbox)
    }

    fn live(&self, role: Role) -> bool {
        self.channels[role as usize].live_since.is_some()
    }

    /// Whether the owner of `mailbox` hears of every change of it now: NOTIFY or a poll
    /// hears of any change of a mailbox with a MODSEQ; IDLE of every change, but only of
    /// the mailbox it idles on.
    fn covered(&self, mailbox: &MailboxId, basis: &Basis) -> bool {
        let owner = self.owner(mailbox);
        if !self.live(owner) {
            return false;
        }
        self.idled_by(owner, mailbox) || basis.versioned()
    }

    /// Whether a listing whose EXAMINE went out at `snapshot` holds every change the
    /// watcher will not report: its owner was hearing of the mailbox's changes by then (a
    /// poll compares whole states, so any time will do), and no change heard of later
    /// was reported against an older listing.
    fn trusts(&self, mailbox: &MailboxId, basis: &Basis, snapshot: Instant) -> bool {
        let owner = self.owner(mailbox);
        let channel = &self.channels[owner as usize];
        let hearing = match &channel.idling {
            Some((m, since)) if m == mailbox => *since <= snapshot,
            _ => match self.mode {
                Mode::Notify => channel.live_since.is_some_and(|s| s <= snapshot),
                Mode::Idle | Mode::Poll => channel.live_since.is_some() && basis.versioned(),
            },
        };
        let noticed = self
            .tracked
            .get(mailbox)
            .and_then(|t| t.noticed)
            .is_none_or(|n| n <= snapshot);
        hearing && noticed
    }

    /// Whether every change of `mailbox` since the listing held was, or will be, reported.
    pub fn is_followed(&self, mailbox: &MailboxId) -> bool {
        if !self.running() {
            return false;
        }
        match self.tracked.get(mailbox) {
            Some(t) if !t.pending && !t.unreported => {
                t.basis.as_ref().is_some_and(|b| self.covered(mailbox, b))
            }
            _ => false,
        }
    }

    /// Whether mailboxes created, renamed or deleted elsewhere are reported.
    pub fn is_list_followed(&self) -> bool {
        self.running() && self.list_live
    }

    /// A listing of `mailbox` was taken: noted until the core follows it.
    pub fn note_listing(&mut self, mailbox: &MailboxId, note: ListingNote) {
        if self.running() {
            self.notes.insert(mailbox.clone(), note);
        }
    }

    /// The core installed a listing of `mailbox` whose version is `known`, and asks that
    /// every change after it be reported. Returns the connection that must act now, if
    /// one must (to check the listing against the server, or to idle on it).
    pub fn follow(&mut self, mailbox: &MailboxId, known: Option<MailboxVersion>) -> Vec<Role> {
        if !self.learned && !self.stopping {
            self.early.retain(|(m, _)| m != mailbox);
            if self.early.len() < EARLY_AT_MOST {
                self.early.push((mailbox.clone(), known));
            }
            return Vec::new();
        }
        if !self.running() {
            return Vec::new();
        }
        let mut wake = Vec::new();
        if self.mode == Mode::Idle && *mailbox != inbox() && self.recent.as_ref() != Some(mailbox) {
            self.recent = Some(mailbox.clone());
            wake.push(Role::Recent);
        }
        let note = self
            .notes
            .remove(mailbox)
            .filter(|n| n.matches(known.as_ref()));
        let basis = match (known, &note) {
            (Some(v), _) => Some(Basis {
                validity: v.uid_validity,
                uid_next: v.uid_next,
                exists: v.exists,
                modseq: Some(v.highest_modseq),
                uids: note.as_ref().and_then(|n| n.uids.clone()),
            }),
            (None, Some(n)) => n.uid_next.map(|uid_next| Basis {
                validity: n.validity,
                uid_next,
                exists: n.exists,
                modseq: None,
                uids: n.uids.clone(),
            }),
            (None, None) => None,
        };
        if let Some(t) = self.tracked.get_mut(mailbox) {
            let same = match (&t.basis, &known) {
                (Some(b), Some(v)) => b.is(v),
                _ => false,
            };
            if same && !t.pending {
                if let (Some(b), Some(uids)) = (t.basis.as_mut(), basis.and_then(|b| b.uids)) {
                    b.uids.get_or_insert(uids);
                }
                return wake;
            }
        }
        let trusted = match (&basis, &note) {
            (Some(b), Some(n)) => self.trusts(mailbox, b, n.started),
            _ => false,
        };
        let made = self.made.remove(mailbox);
        let t = self.tracked.entry(mailbox.clone()).or_insert(Tracked {
            basis: None,
            pending: true,
            dirty: false,
            busy: false,
            generation: 0,
            noticed: None,
            unreported: made,
        });
        t.basis = basis;
        t.generation += 1;
        t.pending = !trusted;
        // Without a basis (Courier's EXAMINE has no UIDNEXT) a check could only find the
        // listing stale again, and the new listing would ask for another check: a loop of
        // EXAMINEs. Such a mailbox is not followed; a change heard on it still relists it.
        if t.pending && t.basis.is_some() {
            t.dirty = true;
            wake.push(self.owner(mailbox));
        }
        wake
    }

    /// A STATUS for `name` was heard (NOTIFY, or a poll) by `role`: the mailbox is due a
    /// resynchronisation if it differs from what was reported. True if it is. Only a
    /// pushed one shows that the server reports the mailbox.
    pub fn status_heard(
        &mut self,
        role: Role,
        name: &str,
        status: Status,
        how: Heard,
        now: Instant,
    ) -> bool {
        let Some(mailbox) = self.find(name) else {
            return false;
        };
        if self.owner(&mailbox) != role {
            return false;
        }
        let Some(t) = self.tracked.get_mut(&mailbox) else {
            return false;
        };
        if how == Heard::Pushed {
            t.unreported = false;
        }
        let differs = t.basis.as_ref().is_none_or(|b| status.differs_from(b));
        if differs {
            t.noticed = Some(now);
            t.dirty = true;
        }
        differs
    }

    /// The server pushed a change of `mailbox` (IDLE): it is due a resynchronisation.
    pub fn change_heard(&mut self, mailbox: &MailboxId, now: Instant) {
        if let Some(t) = self.tracked.get_mut(mailbox) {
            t.noticed = Some(now);
            t.dirty = true;
        }
    }

    /// NOTIFY started without a STATUS of `mailbox` (or renewed after a RENAME): it is due a
    /// resynchronisation (it may be gone), and not followed until a STATUS of it is pushed.
    pub fn unreported_at_start(&mut self, mailbox: &MailboxId, now: Instant) {
        self.change_heard(mailbox, now);
        if let Some(t) = self.tracked.get_mut(mailbox) {
            t.unreported = true;
        }
    }

    /// The followed mailbox called `name` on the wire: as tracked, or (Dovecot's NOTIFY
    /// sends names in UTF-8) encoded to modified UTF-7.
    fn find(&self, name: &str) -> Option<MailboxId> {
        let exact = MailboxId::new(name);
        if self.tracked.contains_key(&exact) {
            return Some(exact);
        }
        let encoded = MailboxId::new(&super::super::utf7::encode(name));
        self.tracked.contains_key(&encoded).then_some(encoded)
    }

    /// A mailbox `role` must resynchronise now, if any: dirty, owned by it, and not being
    /// resynchronised elsewhere. A mailbox whose changes can only be heard by idling on it
    /// waits for the connection that idles on it.
    pub fn next_due(&self, role: Role) -> Option<MailboxId> {
        self.tracked
            .iter()
            .filter(|(m, t)| t.dirty && !t.busy && self.owner(m) == role)
            .filter(|(m, t)| {
                t.basis.as_ref().is_some_and(Basis::versioned) || self.idled_by(role, m)
            })
            .map(|(m, _)| m.clone())
            .next()
    }

    /// Takes on the resynchronisation of `mailbox`, unless another connection has it.
    pub fn claim(&mut self, mailbox: &MailboxId) -> Option<Claim> {
        let t = self.tracked.get_mut(mailbox)?;
        if t.busy {
            return None;
        }
        t.busy = true;
        t.dirty = false;
        Some(Claim {
            mailbox: mailbox.clone(),
            basis: t.basis.clone(),
            generation: t.generation,
        })
    }

    /// Whether `mailbox` is followed at all.
    pub fn is_tracked(&self, mailbox: &MailboxId) -> bool {
        self.tracked.contains_key(mailbox)
    }

    /// Gives back a claim whose work failed (the connection broke): still due.
    pub fn release(&mut self, claim: &Claim) {
        if let Some(t) = self.tracked.get_mut(&claim.mailbox) {
            t.busy = false;
            t.dirty = true;
        }
    }

    /// Records what a resynchronisation found and returns what to report. `changed_since`:
    /// the server spoke of further changes while it ran.
    pub fn commit(
        &mut self,
        claim: Claim,
        outcome: Outcome,
        changed_since: bool,
    ) -> Vec<StoreEvent> {
        let mailbox = claim.mailbox;
        let Some(t) = self.tracked.get_mut(&mailbox) else {
            return Vec::new();
        };
        t.busy = false;
        t.dirty |= changed_since;
        let current = t.generation == claim.generation;
        match outcome {
            Outcome::Synced { basis, change } => {
                if current {
                    t.basis = Some(basis);
                    t.pending = false;
                }
                let empty = change.arrived.is_empty()
                    && change.vanished.is_empty()
                    && change.flags.is_empty();
                if empty {
                    Vec::new()
                } else {
                    vec![StoreEvent::Mailbox(change)]
                }
            }
            Outcome::Recreated { validity } => {
                self.tracked.remove(&mailbox);
                vec![StoreEvent::Mailbox(MailboxChange {
                    validity: Some(validity),
                    validity_changed: true,
                    ..MailboxChange::new(mailbox)
                })]
            }
            Outcome::Stale => {
                // Not followed until the core's new listing is.
                t.pending = true;
                t.dirty = false;
                vec![StoreEvent::MailboxStale(mailbox)]
            }
            Outcome::Gone => {
                self.tracked.remove(&mailbox);
                Vec::new()
            }
        }
    }

    /// `role` is connected and hears of changes since `since`; for the list connection,
    /// the mailbox list is kept true from now on.
    pub fn went_live(&mut self, role: Role, since: Instant) {
        self.channels[role as usize].live_since = Some(since);
        if matches!(role, Role::Notify | Role::Primary) {
            self.list_live = true;
        }
    }

    /// `role` lost its connection: what it kept true is not followed until it is back.
    pub fn went_down(&mut self, role: Role) {
        self.channels[role as usize] = Channel::default();
        if matches!(role, Role::Notify | Role::Primary) {
            self.list_live = false;
        }
        for t in self.tracked.values_mut() {
            t.busy = false;
        }
    }

    /// Every followed mailbox `role` owns is due a comparison with the server (after
    /// reconnecting, before anything is trusted again).
    pub fn owned(&self, role: Role) -> Vec<MailboxId> {
        self.tracked
            .keys()
            .filter(|m| self.owner(m) == role)
            .cloned()
            .collect()
    }

    /// `role` now idles on `mailbox` (or on nothing), hearing of its changes since `since`.
    pub fn idling(&mut self, role: Role, mailbox: Option<(MailboxId, Instant)>) {
        self.channels[role as usize].idling = mailbox;
    }

    /// The mailbox the Recent connection should idle on.
    pub fn recent(&self) -> Option<MailboxId> {
        self.recent.clone()
    }

    /// `mailbox` cannot be idled on (it is gone).
    pub fn forget_recent(&mut self, mailbox: &MailboxId) {
        if self.recent.as_ref() == Some(mailbox) {
            self.recent = None;
        }
    }

    /// Mailboxes deleted or renamed away elsewhere (their old names): no longer followed.
    /// Returns the mailbox if it was followed.
    pub fn forget(&mut self, name: &str) -> Option<MailboxId> {
        let mailbox = self.find(name)?;
        self.tracked.remove(&mailbox);
        self.forget_recent(&mailbox);
        Some(mailbox)
    }

    /// NOTIFY listed `name`: deleted, or made (by renaming `old_name`, or anew). The
    /// names that went are no longer followed; the followed mailboxes among them are
    /// returned, since what the core listed there is stale even if a mailbox of that name
    /// is listed again (deleted and made again before the core looked at the mailbox
    /// list). A followed mailbox reported as made is another mailbox under its name: on a
    /// loaded machine Dovecot 2.3 has reported a delete and a create close together as the
    /// create alone, and sent no STATUS of the new mailbox.
    pub fn list_heard(&mut self, name: &str, old_name: Option<&str>) -> Vec<MailboxId> {
        if self.made.len() >= MADE_AT_MOST {
            self.made.clear();
        }
        self.made.insert(MailboxId::new(name));
        self.made
            .insert(MailboxId::new(&crate::store::imap::utf7::encode(name)));
        let here = self.forget(name);
        let moved = old_name.and_then(|old| self.forget(old));
        here.into_iter().chain(moved).collect()
    }

    /// Mailboxes not in `listed` (wire names) are gone: no longer followed.
    pub fn keep_only(&mut self, listed: &[String]) {
        let listed: std::collections::HashSet<&str> = listed.iter().map(String::as_str).collect();
        self.tracked.retain(|m, _| listed.contains(m.as_str()));
        if self
            .recent
            .as_ref()
            .is_some_and(|m| !listed.contains(m.as_str()))
        {
            self.recent = None;
        }
    }

    /// The basis of `mailbox` (for tests).
    #[cfg(test)]
    fn basis_of(&self, mailbox: &MailboxId) -> Option<Basis> {
        self.tracked.get(mailbox).and_then(|t| t.basis.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn running(mode: Mode) -> State {
        let mut state = State::new();
        state.learned(mode);
        state.sink = Some(Arc::new(|_| {}));
        state
    }

    /// IDLE mode with both connections live since `t0`, the first idling on INBOX.
    fn idling_on_inbox(t0: Instant) -> State {
        let mut s = running(Mode::Idle);
        s.went_live(Role::Primary, t0);
        s.went_live(Role::Recent, t0);
        s.idling(Role::Primary, Some((inbox(), t0)));
        s
    }

    fn version(uid_next: u32, exists: u32, modseq: u64) -> MailboxVersion {
        MailboxVersion {
            uid_validity: UidValidity(7),
            uid_next,
            exists,
            highest_modseq: modseq,
        }
    }

    fn note(at: Instant, v: &MailboxVersion) -> ListingNote {
        ListingNote {
            started: at,
            validity: v.uid_validity,
            uid_next: Some(v.uid_next),
            exists: v.exists,
            modseq: Some(v.highest_modseq),
            uids: None,
        }
    }

    fn synced(claim: &Claim, uid_next: u32, modseq: u64) -> Outcome {
        Outcome::Synced {
            basis: Basis {
                uid_next,
                modseq: Some(modseq),
                ..claim.basis.clone().unwrap()
            },
            change: MailboxChange::new(claim.mailbox.clone()),
        }
    }

    /// A listing taken while NOTIFY was already on is followed at once, with no command.
    #[test]
    fn a_listing_taken_while_notify_is_on_is_trusted() {
        let mut s = running(Mode::Notify);
        let t0 = Instant::now();
        s.went_live(Role::Notify, t0);
        let inbox = inbox();
        let v = version(5, 4, 9);
        s.note_listing(&inbox, note(t0 + Duration::from_millis(1), &v));
        assert!(s.follow(&inbox, Some(v)).is_empty(), "nothing to do");
        assert!(s.is_followed(&inbox));
        assert!(s.is_list_followed());
        // The same listing again changes nothing.
        assert!(s.follow(&inbox, Some(v)).is_empty());
        assert!(s.is_followed(&inbox));
    }

    /// A listing taken before NOTIFY was on, or one whose note is missing, must be checked
    /// against the server first; it is followed once the check is committed.
    #[test]
    fn an_older_listing_is_checked_first() {
        let mut s = running(Mode::Notify);
        let t0 = Instant::now();
        let m = MailboxId::new("Archive");
        let v = version(5, 4, 9);
        s.note_listing(&m, note(t0, &v));
        s.went_live(Role::Notify, t0 + Duration::from_millis(1));
        assert_eq!(s.follow(&m, Some(v)), [Role::Notify]);
        assert!(!s.is_followed(&m));
        assert_eq!(s.next_due(Role::Notify), Some(m.clone()));
        let claim = s.claim(&m).unwrap();
        assert!(s.claim(&m).is_none(), "one connection at a time");
        assert!(s
            .commit(claim.clone(), synced(&claim, 5, 9), false)
            .is_empty());
        assert!(s.is_followed(&m));
        assert_eq!(s.next_due(Role::Notify), None);
    }

    /// A change heard of after a listing was taken, and reported against an older one,
    /// would be lost if the new listing were trusted: it is checked instead.
    #[test]
    fn a_listing_older_than_a_reported_change_is_checked() {
        let mut s = running(Mode::Notify);
        let t0 = Instant::now();
        s.went_live(Role::Notify, t0);
        let m = inbox();
        let v1 = version(5, 4, 9);
        s.note_listing(&m, note(t0, &v1));
        s.follow(&m, Some(v1));
        assert!(s.is_followed(&m));
        let heard = t0 + Duration::from_millis(10);
        let later = Status {
            modseq: Some(10),
            ..Status::default()
        };
        assert!(s.status_heard(Role::Notify, "INBOX", later, Heard::Pushed, heard));
        assert!(s.is_followed(&m), "a change heard of will be reported");
        let claim = s.claim(&m).unwrap();
        s.commit(claim.clone(), synced(&claim, 5, 10), false);
        // A listing that went out before the change was heard of.
        let v2 = version(5, 4, 9);
        s.note_listing(&m, note(t0 + Duration::from_millis(5), &v2));
        assert_eq!(s.follow(&m, Some(v2)), [Role::Notify]);
        assert!(!s.is_followed(&m));
        // A status that says nothing new does not make work.
        let same = Status {
            uid_next: Some(5),
            ..Status::default()
        };
        assert!(!s.status_heard(Role::Notify, "INBOX", same, Heard::Pushed, heard));
    }

    #[test]
    fn nothing_is_followed_while_its_connection_is_down() {
        let mut s = running(Mode::Notify);
        let t0 = Instant::now();
        s.went_live(Role::Notify, t0);
        let m = inbox();
        let v = version(5, 4, 9);
        s.note_listing(&m, note(t0, &v));
        s.follow(&m, Some(v));
        assert!(s.is_followed(&m));
        s.went_down(Role::Notify);
        assert!(!s.is_followed(&m));
        assert!(!s.is_list_followed());
        s.went_live(Role::Notify, t0 + Duration::from_secs(1));
        assert!(s.is_followed(&m), "back, after its statuses were compared");
        s.stopping = true;
        assert!(!s.is_followed(&m));
    }

    /// Without CONDSTORE only IDLE hears of flag changes: INBOX and the mailbox listed last
    /// are followed while idled on; the mailbox listed before is not.
    #[test]
    fn without_condstore_only_idled_mailboxes_are_followed() {
        let t0 = Instant::now();
        let mut s = idling_on_inbox(t0);
        let unversioned = |at| ListingNote {
            started: at,
            validity: UidValidity(7),
            uid_next: Some(3),
            exists: 2,
            modseq: None,
            uids: None,
        };
        s.note_listing(&inbox(), unversioned(t0 + Duration::from_millis(1)));
        assert!(s.follow(&inbox(), None).is_empty());
        assert!(s.is_followed(&inbox()));
        let a = MailboxId::new("A");
        s.note_listing(&a, unversioned(t0 + Duration::from_millis(2)));
        assert_eq!(s.follow(&a, None), [Role::Recent, Role::Primary]);
        assert!(!s.is_followed(&a), "not idled on yet");
        assert_eq!(s.next_due(Role::Primary), None, "a poll cannot check it");
        let idle_at = t0 + Duration::from_millis(3);
        s.idling(Role::Recent, Some((a.clone(), idle_at)));
        assert_eq!(s.owner(&a), Role::Recent);
        assert_eq!(s.next_due(Role::Recent), Some(a.clone()));
        // The listing predates the IDLE: the core must list again.
        let claim = s.claim(&a).unwrap();
        assert_eq!(
            s.commit(claim, Outcome::Stale, false),
            [StoreEvent::MailboxStale(a.clone())]
        );
        s.note_listing(&a, unversioned(idle_at + Duration::from_millis(1)));
        assert!(s.follow(&a, None).is_empty());
        assert!(s.is_followed(&a));
        // Another mailbox listed: the IDLE moves there, and A is no longer followed.
        let b = MailboxId::new("B");
        s.follow(&b, None);
        s.idling(Role::Recent, Some((b, idle_at)));
        assert!(!s.is_followed(&a));
    }

    /// A listing without UIDNEXT (Courier) gives nothing to check against: it makes no
    /// connection resynchronise, which would only find it stale and have it listed again,
    /// forever. A change heard while idling on it still has it listed again, once.
    #[test]
    fn a_listing_without_uidnext_is_not_checked_again_and_again() {
        let t0 = Instant::now();
        let mut s = idling_on_inbox(t0);
        let a = MailboxId::new("A");
        s.idling(Role::Recent, Some((a.clone(), t0)));
        let courier = |at| ListingNote {
            started: at,
            validity: UidValidity(7),
            uid_next: None,
            exists: 2,
            modseq: None,
            uids: Some(vec![1, 2]),
        };
        for (mailbox, owner) in [(inbox(), Role::Primary), (a.clone(), Role::Recent)] {
            for i in 1..4 {
                s.note_listing(&mailbox, courier(t0 + Duration::from_millis(i)));
                s.follow(&mailbox, None);
                assert_eq!(s.next_due(owner), None, "{mailbox}: listing {i}");
                assert!(!s.is_followed(&mailbox));
            }
            s.change_heard(&mailbox, t0 + Duration::from_millis(5));
            assert_eq!(s.next_due(owner), Some(mailbox.clone()));
            let claim = s.claim(&mailbox).unwrap();
            assert_eq!(
                s.commit(claim, Outcome::Stale, false),
                [StoreEvent::MailboxStale(mailbox.clone())]
            );
            s.note_listing(&mailbox, courier(t0 + Duration::from_millis(6)));
            s.follow(&mailbox, None);
            assert_eq!(s.next_due(owner), None, "{mailbox}: after the change");
        }
    }

    /// A mailbox listed in a mount's first moments, before the watcher learned how to
    /// watch, is followed once it has: checked by its connection, then kept true. Before,
    /// it stayed unfollowed until listed again, and a `stat` alone never looked again.
    #[test]
    fn a_listing_taken_before_the_mode_is_learned_is_followed_after() {
        let mut s = State::new();
        s.sink = Some(Arc::new(|_| {}));
        let work = MailboxId::new("Work");
        let v = version(2, 1, 2);
        assert!(s.follow(&work, Some(v)).is_empty());
        assert!(!s.is_tracked(&work));
        s.learned(Mode::Notify);
        assert!(s.is_tracked(&work));
        assert!(!s.is_followed(&work), "not checked yet");
        s.went_live(Role::Notify, Instant::now());
        assert_eq!(s.next_due(Role::Notify), Some(work.clone()));
        let claim = s.claim(&work).unwrap();
        let outcome = synced(&claim, 2, 2);
        assert!(s.commit(claim, outcome, false).is_empty());
        assert!(s.is_followed(&work));
    }

    /// A mailbox listed before NOTIFY started, that NOTIFY gave no STATUS of then, is
    /// checked but not followed (the server may not report it) until a STATUS of it is
    /// heard: its listing is looked at again whenever it is read.
    #[test]
    fn a_mailbox_notify_did_not_name_at_its_start_is_not_followed_until_it_does() {
        let mut s = State::new();
        s.sink = Some(Arc::new(|_| {}));
        let archive = MailboxId::new("Archive");
        let v = version(2, 1, 2);
        s.follow(&archive, Some(v));
        s.learned(Mode::Notify);
        let t0 = Instant::now();
        s.unreported_at_start(&archive, t0);
        s.went_live(Role::Notify, t0);
        assert_eq!(s.next_due(Role::Notify), Some(archive.clone()));
        let claim = s.claim(&archive).unwrap();
        let outcome = synced(&claim, 2, 2);
        assert!(s.commit(claim, outcome, false).is_empty());
        assert!(!s.is_followed(&archive), "checked, but not reported");
        let status = Status {
            messages: Some(1),
            uid_next: Some(2),
            validity: Some(7),
            modseq: Some(2),
        };
        let heard = t0 + Duration::from_millis(1);
        s.status_heard(Role::Notify, "Archive", status, Heard::Polled, heard);
        assert!(!s.is_followed(&archive), "a poll's answer is no report");
        s.status_heard(Role::Notify, "Archive", status, Heard::Pushed, heard);
        assert!(s.is_followed(&archive), "reported now");
    }

    /// A poll's STATUS that differs from what is known only by its UIDVALIDITY (a mailbox
    /// deleted and made again with as many messages, which Dovecot's NOTIFY may not
    /// report at all) makes the mailbox due.
    #[test]
    fn a_polled_status_with_another_uidvalidity_makes_a_followed_mailbox_due() {
        let mut s = running(Mode::Notify);
        let t0 = Instant::now();
        s.went_live(Role::Notify, t0);
        let archive = MailboxId::new("Archive");
        let v = version(2, 1, 2);
        s.note_listing(&archive, note(t0 + Duration::from_millis(1), &v));
        s.follow(&archive, Some(v));
        assert!(s.is_followed(&archive));
        let same = Status {
            messages: Some(1),
            uid_next: Some(2),
            validity: Some(v.uid_validity.0),
            modseq: Some(2),
        };
        let later = t0 + Duration::from_millis(2);
        assert!(!s.status_heard(Role::Notify, "Archive", same, Heard::Polled, later));
        assert_eq!(s.next_due(Role::Notify), None);
        let recreated = Status {
            validity: Some(v.uid_validity.0 + 1),
            ..same
        };
        assert!(s.status_heard(Role::Notify, "Archive", recreated, Heard::Polled, later));
        assert_eq!(s.next_due(Role::Notify), Some(archive));
    }

    /// A followed mailbox deleted (or renamed away) elsewhere is reported, so that its
    /// listing is looked at again even when a mailbox of its name is made again at once.
    #[test]
    fn a_followed_mailbox_deleted_elsewhere_is_returned_once() {
        let mut s = running(Mode::Notify);
        let t0 = Instant::now();
        s.went_live(Role::Notify, t0);
        let (a, b) = (MailboxId::new("A"), MailboxId::new("B"));
        for m in [&a, &b] {
            s.note_listing(m, note(t0 + Duration::from_millis(1), &version(5, 4, 9)));
            s.follow(m, Some(version(5, 4, 9)));
            assert!(s.is_followed(m));
        }
        assert_eq!(s.list_heard("A", None), vec![a.clone()]);
        assert!(!s.is_followed(&a));
        assert!(s.list_heard("A", None).is_empty(), "once");
        assert!(s.list_heard("C", None).is_empty(), "a new name");
        // Made again under a followed name, reported as the create alone.
        let e = MailboxId::new("E");
        s.note_listing(&e, note(t0 + Duration::from_millis(1), &version(5, 4, 9)));
        s.follow(&e, Some(version(5, 4, 9)));
        assert!(s.is_followed(&e));
        assert_eq!(s.list_heard("E", None), vec![e.clone()], "made again");
        assert!(!s.is_followed(&e));
        assert_eq!(s.list_heard("D", Some("B")), vec![b.clone()], "renamed");
        assert!(!s.is_followed(&b));
    }

    /// A mailbox NOTIFY reported made (again) is followed only once a STATUS of it is
    /// pushed: until then its listing is looked at again when read.
    #[test]
    fn a_mailbox_reported_made_is_followed_once_notify_speaks_of_it() {
        let mut s = running(Mode::Notify);
        let t0 = Instant::now();
        s.went_live(Role::Notify, t0);
        let work = MailboxId::new("Work");
        let v = version(2, 1, 2);
        assert!(s.list_heard("Work", None).is_empty());
        s.note_listing(&work, note(t0 + Duration::from_millis(1), &v));
        s.follow(&work, Some(v));
        assert!(!s.is_followed(&work), "not reported yet");
        let status = Status {
            messages: Some(1),
            uid_next: Some(2),
            validity: Some(7),
            modseq: Some(2),
        };
        let heard = t0 + Duration::from_millis(2);
        s.status_heard(Role::Notify, "Work", status, Heard::Pushed, heard);
        assert!(s.is_followed(&work));
    }

    /// With CONDSTORE, a mailbox not idled on is followed by polls.
    #[test]
    fn with_condstore_polled_mailboxes_are_followed() {
        let mut s = running(Mode::Idle);
        let t0 = Instant::now();
        s.went_live(Role::Primary, t0);
        let a = MailboxId::new("A");
        let v = version(5, 4, 9);
        s.note_listing(&a, note(t0, &v));
        assert_eq!(s.follow(&a, Some(v)), [Role::Recent]);
        assert!(s.is_followed(&a), "a poll compares whole states");
        assert_eq!(s.owner(&a), Role::Primary);
        let moved = Status {
            messages: Some(5),
            uid_next: Some(6),
            validity: Some(7),
            modseq: Some(10),
        };
        assert!(
            !s.status_heard(Role::Recent, "A", moved, Heard::Pushed, t0),
            "not its owner"
        );
        assert!(s.status_heard(Role::Primary, "A", moved, Heard::Pushed, t0));
        assert_eq!(s.next_due(Role::Primary), Some(a));
    }

    #[test]
    fn a_recreated_or_gone_mailbox_is_no_longer_followed() {
        let mut s = running(Mode::Notify);
        let t0 = Instant::now();
        s.went_live(Role::Notify, t0);
        let m = inbox();
        let v = version(5, 4, 9);
        s.note_listing(&m, note(t0, &v));
        s.follow(&m, Some(v));
        let claim = s.claim(&m).unwrap();
        let events = s.commit(
            claim,
            Outcome::Recreated {
                validity: UidValidity(8),
            },
            false,
        );
        assert!(matches!(
            &events[..],
            [StoreEvent::Mailbox(MailboxChange {
                validity_changed: true,
                validity: Some(UidValidity(8)),
                ..
            })]
        ));
        assert!(!s.is_followed(&m));
        assert!(!s.is_tracked(&m));
    }

    /// Dovecot's NOTIFY names mailboxes in UTF-8; they are followed by their wire names.
    #[test]
    fn notify_names_in_utf8_find_their_mailbox() {
        let mut s = running(Mode::Notify);
        let t0 = Instant::now();
        s.went_live(Role::Notify, t0);
        let m = MailboxId::new("&BB8EQAQ+BDUEOgRCBEs-/Q1");
        let v = version(2, 1, 2);
        s.note_listing(&m, note(t0, &v));
        s.follow(&m, Some(v));
        let moved = Status {
            modseq: Some(3),
            ..Status::default()
        };
        assert!(s.status_heard(Role::Notify, "Проекты/Q1", moved, Heard::Pushed, t0));
        s.forget("Проекты/Q1");
        assert!(!s.is_tracked(&m));
    }

    #[test]
    fn a_commit_for_a_replaced_basis_keeps_the_new_one_pending() {
        let mut s = running(Mode::Notify);
        let t0 = Instant::now();
        s.went_live(Role::Notify, t0 + Duration::from_secs(1));
        let m = inbox();
        let v1 = version(5, 4, 9);
        s.note_listing(&m, note(t0, &v1));
        s.follow(&m, Some(v1));
        let claim = s.claim(&m).unwrap();
        let v2 = version(6, 5, 11);
        s.note_listing(&m, note(t0, &v2));
        s.follow(&m, Some(v2));
        s.commit(claim.clone(), synced(&claim, 6, 10), false);
        assert!(
            !s.is_followed(&m),
            "the listing installed meanwhile is unchecked"
        );
        assert_eq!(s.basis_of(&m).unwrap().modseq, Some(11));
        assert_eq!(s.next_due(Role::Notify), Some(m));
    }
}
