//! Live updates: the watcher learns of other clients' changes on connections of its own
//! and reports them as `StoreEvent`s.
//!
//! With NOTIFY ([RFC 5465](https://www.rfc-editor.org/rfc/rfc5465)) and CONDSTORE, one
//! connection with nothing selected hears a STATUS for every mailbox that changes and a
//! LIST for every mailbox created, renamed or deleted. Otherwise IDLE
//! ([RFC 2177](https://www.rfc-editor.org/rfc/rfc2177)) listens on INBOX and, on a second
//! connection, on the mailbox listed last, and every `--poll-interval` a LIST-STATUS
//! ([RFC 5819](https://www.rfc-editor.org/rfc/rfc5819)), or LIST and STATUS, checks the
//! mailbox list and the other followed mailboxes. A mailbox said to have changed is brought
//! up to date from the state last reported (`resync.rs`). The connections are never the
//! pool's and have no deadline while they wait; a keepalive (NOOP, or IDLE begun again)
//! with the command deadline notices a dead or silent one, which is replaced, after which
//! everything it watched is compared with the server again.

mod channel;
mod resync;
mod state;
mod wait;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;

use self::channel::Channel;
use self::state::{Claim, Mode, Outcome, Role, State};
use self::wait::Waker;
use super::backoff;
use super::connection::{connect, ConnectConfig, Connection, Counters};
use crate::store::{
    EventSink, MailboxChange, MailboxId, MailboxVersion, StoreEvent, StoreResult, Uid,
};

pub use self::state::ListingNote;

/// IDLE is begun again at least this often (RFC 2177 §3 asks for 29 minutes at most).
const IDLE_AT_MOST: Duration = Duration::from_secs(25 * 60);

/// How the watcher is tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchSettings {
    /// How often mailboxes that nothing pushes are checked (`--poll-interval`).
    pub poll_interval: Duration,
    /// How long a watcher connection may stay quiet before it is checked with a command
    /// that must be answered within the command deadline.
    pub keepalive: Duration,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings {
            poll_interval: Duration::from_secs(60),
            keepalive: Duration::from_secs(120),
        }
    }
}

/// What the server offers that the watcher uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offers {
    pub notify: bool,
    pub idle: bool,
    pub qresync: bool,
    pub condstore: bool,
    pub esearch: bool,
    pub list_status: bool,
    pub unselect: bool,
}

impl Offers {
    /// What `has` (a capability test) says the server offers.
    pub fn from(has: impl Fn(&str) -> bool) -> Offers {
        Offers {
            notify: has("NOTIFY"),
            idle: has("IDLE"),
            qresync: has("QRESYNC") && has("ENABLE"),
            condstore: has("CONDSTORE"),
            esearch: has("ESEARCH"),
            list_status: has("LIST-STATUS"),
            unselect: has("UNSELECT"),
        }
    }

    /// How to watch: NOTIFY needs CONDSTORE to hear of flag changes in mailboxes not
    /// selected; without both, IDLE hears of them in the mailboxes it listens on.
    fn mode(&self) -> Mode {
        if self.notify && self.condstore {
            Mode::Notify
        } else if self.idle {
            Mode::Idle
        } else {
            Mode::Poll
        }
    }
}

/// What the watcher's threads share.
struct Shared {
    config: Arc<ConnectConfig>,
    counters: Arc<Counters>,
    settings: WatchSettings,
    /// What the server offers, as the watcher's first connection heard it after login.
    offers: OnceLock<Offers>,
    state: Mutex<State>,
    /// Held while events go out, taken before the state lock is let go: reports of one
    /// mailbox leave in the order they were committed.
    sending: Mutex<()>,
    wakers: [Waker; 3],
    /// Bumped when every connection must log out and connect again ([`Watch::renew`]).
    renewals: AtomicU64,
}

impl Shared {
    /// What the server offers (nothing until the first connection logged in).
    fn offers(&self) -> Offers {
        self.offers.get().copied().unwrap_or_default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock())
    }

    fn wake(&self, roles: &[Role]) {
        for role in roles {
            self.wakers[*role as usize].wake();
        }
    }

    fn stopping(&self) -> bool {
        self.state.lock().stopping
    }

    fn renewals(&self) -> u64 {
        self.renewals.load(Ordering::SeqCst)
    }

    /// Records a resynchronisation's outcome (with `then` under the same lock) and reports
    /// what it found.
    fn commit(
        &self,
        claim: Claim,
        outcome: Outcome,
        changed_since: bool,
        then: impl FnOnce(&mut State),
    ) {
        let mut state = self.state.lock();
        let events = state.commit(claim, outcome, changed_since);
        then(&mut state);
        self.send(state, events);
    }

    /// Reports `events`, in order with every other report.
    fn emit(&self, events: Vec<StoreEvent>) {
        let state = self.state.lock();
        self.send(state, events);
    }

    fn send(&self, state: parking_lot::MutexGuard<'_, State>, events: Vec<StoreEvent>) {
        let sink = state.sink.clone();
        let _sending = self.sending.lock();
        drop(state);
        if let Some(sink) = sink {
            for event in events {
                tracing::debug!(?event, "reporting a change");
                sink(event);
            }
        }
    }
}

/// The watcher of one store.
pub struct Watch {
    shared: Arc<Shared>,
}

impl Watch {
    /// A watcher that starts when given a sink.
    pub fn new(
        config: Arc<ConnectConfig>,
        counters: Arc<Counters>,
        settings: WatchSettings,
    ) -> std::io::Result<Watch> {
        let settings = WatchSettings {
            keepalive: settings.keepalive.min(IDLE_AT_MOST),
            ..settings
        };
        Ok(Watch {
            shared: Arc::new(Shared {
                config,
                counters,
                settings,
                offers: OnceLock::new(),
                state: Mutex::new(State::new()),
                sending: Mutex::new(()),
                wakers: [Waker::new()?, Waker::new()?, Waker::new()?],
                renewals: AtomicU64::new(0),
            }),
        })
    }

    /// Starts watching, reporting to `sink` from now on (once; later calls only change the
    /// sink). How to watch is decided by what the server offers, which the first watcher
    /// connection learns (a mount that started offline has not logged in yet).
    pub fn start(&self, sink: EventSink) {
        {
            let mut state = self.shared.state.lock();
            let first = state.sink.is_none();
            state.sink = Some(sink);
            if !first || state.stopping {
                return;
            }
        }
        let shared = Arc::clone(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("imapfs-watch".into())
            .spawn(move || {
                if let Some(first) = first_connection(&shared) {
                    start_channels(&shared, first);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the watcher; changes elsewhere show only when listed");
        }
    }

    /// A listing taken by the pool, noted so that following it may need no command.
    pub fn note_listing(&self, mailbox: &MailboxId, note: ListingNote) {
        self.shared.with(|s| s.note_listing(mailbox, note));
    }

    /// See `MailStore::follow`.
    pub fn follow(&self, mailbox: &MailboxId, known: Option<MailboxVersion>) {
        let wake = self.shared.with(|s| s.follow(mailbox, known));
        self.shared.wake(&wake);
    }

    /// See `MailStore::is_followed`.
    pub fn is_followed(&self, mailbox: &MailboxId) -> bool {
        self.shared.with(|s| s.is_followed(mailbox))
    }

    /// See `MailStore::is_list_followed`.
    pub fn is_list_followed(&self) -> bool {
        self.shared.with(|s| s.is_list_followed())
    }

    /// Has every connection log out and connect again (see `ImapStore::renew_sessions`).
    pub fn renew(&self) {
        self.shared.renewals.fetch_add(1, Ordering::SeqCst);
        if self.shared.with(|s| s.sink.is_some()) {
            self.shared
                .wake(&[Role::Notify, Role::Primary, Role::Recent]);
        }
    }

    /// Stops every connection (they log out if they can); nothing is reported after.
    pub fn stop(&self) {
        let started = self.shared.with(|s| {
            s.stopping = true;
            s.sink.take().is_some()
        });
        // Only threads started here listen (a forked parent shares the wakers' sockets).
        if started {
            self.shared
                .wake(&[Role::Notify, Role::Primary, Role::Recent]);
        }
    }
}

/// What changed in `mailbox` since the listing at `known`, which held `held`, asked on
/// `conn` (a pool connection, without QRESYNC enabled) as a resynchronisation from that
/// state does it with CONDSTORE: `EXAMINE`, `UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE m)`
/// where anything moved, a UID search where messages went, the new messages' listing
/// items. `None` when only a full listing can tell (recreated, gone, no MODSEQ); with the
/// listing note for the watcher.
pub fn changes_since(
    conn: &mut Connection,
    mailbox: &MailboxId,
    known: MailboxVersion,
    held: &[Uid],
    esearch: bool,
) -> StoreResult<Option<(MailboxChange, MailboxVersion, ListingNote)>> {
    let started = std::time::Instant::now();
    let mut uids: Vec<u32> = held.iter().map(|u| u.0).collect();
    uids.sort_unstable();
    let basis = state::Basis {
        validity: known.uid_validity,
        uid_next: known.uid_next,
        exists: known.exists,
        modseq: Some(known.highest_modseq),
        uids: Some(uids),
    };
    let asks = resync::Asks {
        qresync: false,
        condstore: true,
        esearch,
    };
    let found = resync::resync(conn, mailbox, Some(&basis), asks)?;
    let Outcome::Synced { basis, change } = found.outcome else {
        return Ok(None);
    };
    let Some(modseq) = basis.modseq else {
        return Ok(None);
    };
    let version = MailboxVersion {
        uid_validity: basis.validity,
        uid_next: basis.uid_next,
        exists: basis.exists,
        highest_modseq: modseq,
    };
    let note = ListingNote {
        started,
        validity: basis.validity,
        uid_next: Some(basis.uid_next),
        exists: basis.exists,
        modseq: Some(modseq),
        uids: basis.uids,
    };
    Ok(Some((change, version, note)))
}

/// The watcher's first connection, tried with backoff until it logs in (or the watcher
/// stops): what it announces decides how to watch.
fn first_connection(shared: &Shared) -> Option<Connection> {
    let mut failures = 0u32;
    loop {
        if shared.stopping() {
            return None;
        }
        match connect(&shared.config, &shared.counters) {
            Ok(conn) => return Some(conn),
            Err(e) => {
                failures += 1;
                let wait = backoff(failures);
                // Said once; a mount that started offline tries every few seconds.
                if failures == 1 {
                    tracing::warn!(error = %e, "the watcher cannot connect; changes elsewhere show when listed until it does");
                } else {
                    tracing::debug!(error = %e, retry_in = ?wait, "the watcher still cannot connect");
                }
                shared.wakers[Role::Primary as usize].sleep(wait);
            }
        }
    }
}

/// Decides how to watch from what `first` announced, and starts a thread per connection
/// that needs (the first of them takes `first`).
fn start_channels(shared: &Arc<Shared>, first: Connection) {
    let offers = Offers::from(|cap| first.has_capability(cap));
    let _ = shared.offers.set(offers);
    let mode = offers.mode();
    shared.with(|s| s.learned(mode));
    tracing::info!(?mode, "watching the account for changes made elsewhere");
    let mut first = Some(first);
    for &role in Role::for_mode(mode) {
        let channel = Channel::new(Arc::clone(shared), role, first.take());
        let spawned = std::thread::Builder::new()
            .name(format!("imapfs-watch-{role:?}").to_lowercase())
            .spawn(move || channel.run());
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start a watcher thread; changes elsewhere show only when listed");
        }
    }
}
