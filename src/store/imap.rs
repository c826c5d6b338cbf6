//! `MailStore` over IMAP: a small pool of connections, each with its selected mailbox.
//!
//! Every read uses UIDs, `EXAMINE` and `BODY.PEEK`/`BINARY.PEEK`, so nothing here can set
//! `\Seen`. A connection that times out, breaks or is cancelled is dropped; reads are retried
//! once on a fresh one while the filesystem call has time left.

mod changes;
pub mod connection;
pub mod convert;
mod deflate;
pub mod errors;
mod login;
pub mod names;
mod nesting;
mod parts;
pub mod quote;
pub mod search_keys;
pub mod utf7;
pub mod watch;
pub mod wire;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use self::connection::{
    connect, ConnectConfig, Connection, Counters, Selection, MAX_RESPONSE_BYTES,
};
use self::errors::connection_survives;
use self::watch::{ListingNote, Watch, WatchSettings};
use self::wire::{fetches, Code, Command, Untagged};
use crate::call;
use crate::search::SearchKey;
use crate::store::{
    Capabilities, ConditionalStore, Flag, FlagsNow, MailStore, MailboxChange, MailboxId,
    MailboxInfo, MailboxListing, MailboxPath, MailboxVersion, MessageStructure, NewMessage,
    PartItem, PartValue, Quota, StoreError, StoreResult, StoreStats, Uid, UidValidity,
};

pub use self::connection::{Auth, Compression, Transport};

/// More UIDs than any mailbox holds: a search answer with more is not believed.
const MAX_SEARCH_HITS: u64 = 10_000_000;

/// How deep a BODYSTRUCTURE may nest before the rest is ignored.
const MAX_NESTING: u32 = 32;

/// What EXAMINE or SELECT told of a mailbox.
struct Selected {
    exists: u32,
    uid_next: Option<u32>,
    version: Option<MailboxVersion>,
}

/// Why a mailbox is being selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Reading: EXAMINE, or reuse any selection of the mailbox.
    Read,
    /// Listing: always EXAMINE afresh, to see the current UIDVALIDITY and message count.
    Relist,
    /// Changing: SELECT (read-write).
    Write,
}

/// Whether an operation may be repeated on a new connection after the old one broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads: repeating changes nothing.
    Once,
    /// Changes: the first attempt may have been applied, so never repeat it blindly.
    Never,
}

struct Pool {
    idle: Vec<Connection>,
    open: usize,
    /// Connection attempts that failed in a row, and when the next may be made.
    failures: u32,
    retry_at: Option<Instant>,
    /// Whether the server is reachable, as the last connection attempt found.
    reach: Reach,
    /// Bumped when every session must end (see [`ImapStore::renew_sessions`]): a
    /// connection borrowed before is closed when given back.
    epoch: u64,
}

/// What the last connection attempt found; while `Down`, calls that need a new connection
/// fail at once rather than wait out the backoff, and the first call after it tries again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    Up,
    /// Unreachable since then; `probing` while one call is trying to reconnect.
    Down {
        since: Instant,
        probing: bool,
    },
}

/// The wait before reconnecting after `failures` failed attempts: 100 ms doubling to 5 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.min(6))).min(Duration::from_secs(5))
}

/// A mail store backed by an IMAP server.
pub struct ImapStore {
    config: Arc<ConnectConfig>,
    counters: Arc<Counters>,
    pool: Mutex<Pool>,
    returned: Condvar,
    max_connections: usize,
    /// As the server announced them after the last login (empty until one succeeded).
    capabilities: parking_lot::RwLock<Vec<String>>,
    naming: Mutex<Naming>,
    /// Learns of other clients' changes, once given somewhere to report them.
    watch: Option<Watch>,
    /// The last quota answer and when it came (see [`QUOTA_FRESH`]).
    quota: Mutex<Option<(Instant, Option<Quota>)>>,
}

/// How long a quota answer is used before GETQUOTAROOT is sent again: `df` in a loop, or a
/// file manager refreshing its status bar, costs one command per few seconds.
const QUOTA_FRESH: Duration = Duration::from_secs(5);

/// What the last LIST said about names: the delimiter, and each mailbox's wire name by path
/// (so that a new mailbox under an existing one keeps the server's spelling of the parent).
#[derive(Default)]
struct Naming {
    delimiter: Option<char>,
    /// The personal namespace's prefix, from NAMESPACE before the first LIST.
    prefix: names::Prefix,
    listed: bool,
    wire_by_path: std::collections::HashMap<MailboxPath, String>,
}

/// A connection borrowed from the pool; it goes back on drop unless it was found broken.
struct Borrowed<'a> {
    store: &'a ImapStore,
    conn: Option<Connection>,
    /// The pool's epoch when it was borrowed.
    epoch: u64,
}

impl Drop for Borrowed<'_> {
    fn drop(&mut self) {
        let mut pool = self.store.pool.lock();
        match self.conn.take() {
            Some(conn) if self.epoch == pool.epoch => pool.idle.push(conn),
            _ => pool.open -= 1,
        }
        self.store.returned.notify_one();
    }
}

impl ImapStore {
    /// Connects and logs in once, so that a wrong password or an unreachable server is
    /// reported before anything is mounted.
    pub fn connect(config: ConnectConfig, max_connections: usize) -> StoreResult<ImapStore> {
        let store = ImapStore::unconnected(config, max_connections);
        store.log_in()?;
        Ok(store)
    }

    /// A store that has not connected yet (a mount that starts offline): it connects when
    /// first asked something.
    pub fn unconnected(config: ConnectConfig, max_connections: usize) -> ImapStore {
        ImapStore {
            config: Arc::new(config),
            counters: Arc::new(Counters::default()),
            pool: Mutex::new(Pool {
                idle: Vec::new(),
                open: 0,
                failures: 0,
                retry_at: None,
                reach: Reach::Up,
                epoch: 0,
            }),
            quota: Mutex::new(None),
            returned: Condvar::new(),
            max_connections: max_connections.max(1),
            capabilities: parking_lot::RwLock::new(Vec::new()),
            naming: Mutex::new(Naming::default()),
            watch: None,
        }
    }

    /// Connects and logs in once, keeping the connection.
    pub fn log_in(&self) -> StoreResult<()> {
        let first = connect(&self.config, &self.counters)?;
        self.learned(&first);
        tracing::info!(host = %self.config.host, user = %self.config.user, "logged in");
        let mut pool = self.pool.lock();
        pool.idle.push(first);
        pool.open += 1;
        Ok(())
    }

    /// Keeps what a new connection says the server can do.
    fn learned(&self, conn: &Connection) {
        let announced = conn.capabilities();
        let mut held = self.capabilities.write();
        if *held != announced {
            tracing::debug!(capabilities = ?announced, "server capabilities");
            *held = announced.to_vec();
        }
    }

    /// Watches the account for changes made elsewhere (see `watch.rs`) once `MailStore::watch`
    /// is called. Without this the store reports nothing and follows nothing.
    pub fn with_watch(mut self, settings: WatchSettings) -> ImapStore {
        match Watch::new(
            Arc::clone(&self.config),
            Arc::clone(&self.counters),
            settings,
        ) {
            Ok(watch) => self.watch = Some(watch),
            Err(e) => tracing::warn!(error = %e, "cannot watch for changes; they show when listed"),
        }
        self
    }

    /// The wire name for a mailbox at `path`, spelled as the last LIST spelled its existing
    /// levels (listing first if nothing was listed yet, to learn the delimiter).
    fn wire_for(&self, path: &[String]) -> StoreResult<MailboxId> {
        if !self.naming.lock().listed {
            self.list_mailboxes()?;
        }
        let naming = self.naming.lock();
        names::wire_for(path, naming.delimiter, &naming.prefix, &naming.wire_by_path)
            .map(|w| MailboxId::new(&w))
    }

    /// True if the server announced `cap` at login.
    pub fn has_capability(&self, cap: &str) -> bool {
        self.capabilities
            .read()
            .iter()
            .any(|c| c.eq_ignore_ascii_case(cap))
    }

    /// When this store call must end: `--timeout` from now, or the filesystem call's
    /// deadline if that is earlier.
    fn deadline(&self) -> Instant {
        let own = Instant::now() + self.config.timeout;
        call::deadline().map_or(own, |d| d.min(own))
    }

    /// Waits on the pool until `until` or a connection comes back, waking often enough to
    /// see a cancelled call. False once `until` has passed.
    fn wait_for_pool(
        &self,
        pool: &mut parking_lot::MutexGuard<'_, Pool>,
        until: Instant,
    ) -> StoreResult<bool> {
        const CHECK_EVERY: Duration = Duration::from_millis(50);
        call::goes_on()?;
        let now = Instant::now();
        if now >= until {
            return Ok(false);
        }
        self.returned.wait_until(pool, until.min(now + CHECK_EVERY));
        Ok(true)
    }

    /// Takes an idle connection (preferring one with `mailbox` selected), opens a new one
    /// while under the limit, or waits for one to come back until the deadline.
    fn borrow(&self, mailbox: Option<&MailboxId>) -> StoreResult<Borrowed<'_>> {
        let deadline = self.deadline();
        let mut pool = self.pool.lock();
        loop {
            call::goes_on()?;
            if !pool.idle.is_empty() {
                let pos = mailbox
                    .and_then(|m| {
                        pool.idle
                            .iter()
                            .position(|c| c.selection.mailbox().is_some_and(|(sel, _)| sel == m))
                    })
                    .unwrap_or(pool.idle.len() - 1);
                let conn = pool.idle.swap_remove(pos);
                return Ok(Borrowed {
                    store: self,
                    conn: Some(conn),
                    epoch: pool.epoch,
                });
            }
            if pool.open < self.max_connections {
                // While the server is known to be down, fail at once until the backoff has
                // passed; then this call alone tries again while the others still fail.
                if let Reach::Down { since, probing } = pool.reach {
                    let waiting = pool.retry_at.is_some_and(|at| at > Instant::now());
                    if waiting || probing {
                        return Err(StoreError::Connection(format!(
                            "the server has been unreachable for {}s; failing at once until it answers again",
                            since.elapsed().as_secs()
                        )));
                    }
                    pool.reach = Reach::Down {
                        since,
                        probing: true,
                    };
                }
                pool.open += 1;
                let was_up = pool.reach == Reach::Up;
                drop(pool);
                let result = connect(&self.config, &self.counters).or_else(|e| match e {
                    // A connection lost while it was being made says little of the server:
                    // a network blip that cuts every connection at once catches one in its
                    // handshake. One more try at once before the server is called
                    // unreachable (and everything not cached fails at once).
                    StoreError::Connection(_) if was_up => {
                        tracing::debug!(error = %e, "a new connection failed; trying once more");
                        connect(&self.config, &self.counters)
                    }
                    e => Err(e),
                });
                let mut pool = self.pool.lock();
                if let Reach::Down { since, .. } = pool.reach {
                    pool.reach = Reach::Down {
                        since,
                        probing: false,
                    };
                }
                return match result {
                    Ok(conn) => {
                        self.learned(&conn);
                        if let Reach::Down { since, .. } = pool.reach {
                            tracing::info!(failures = pool.failures, down_for = ?since.elapsed(), "reconnected: the server is reachable again");
                        }
                        pool.failures = 0;
                        pool.retry_at = None;
                        pool.reach = Reach::Up;
                        Ok(Borrowed {
                            store: self,
                            conn: Some(conn),
                            epoch: pool.epoch,
                        })
                    }
                    Err(e) => {
                        pool.open -= 1;
                        // Backoff spaces out attempts that fail at once (refused, reset, TLS
                        // errors). One that timed out already waited its whole deadline (the
                        // silent-server rule in `connection` covers that case), and a
                        // cancelled call says nothing about the server.
                        if !matches!(e, StoreError::Interrupted | StoreError::Timeout(_)) {
                            pool.failures += 1;
                            let wait = backoff(pool.failures);
                            pool.retry_at = Some(Instant::now() + wait);
                            if pool.reach == Reach::Up {
                                pool.reach = Reach::Down {
                                    since: Instant::now(),
                                    probing: false,
                                };
                                tracing::warn!(error = %e, "the server is unreachable; until it answers again, what is not cached fails at once");
                            } else {
                                tracing::debug!(error = %e, retry_in = ?wait, "the server is still unreachable");
                            }
                        }
                        drop(pool);
                        self.returned.notify_one();
                        Err(e)
                    }
                };
            }
            if !self.wait_for_pool(&mut pool, deadline)? {
                return Err(StoreError::Timeout(
                    "every IMAP connection stayed busy".into(),
                ));
            }
        }
    }

    /// Runs `op` on a pooled connection. A connection left in an unknown state is dropped;
    /// a broken connection (or one the server failed internally on, SERVERBUG) is replaced
    /// and `op` retried once, which is safe for the read-only operations this is used for,
    /// unless the filesystem call was cancelled or has no time left. While `op` waits on the
    /// server, a cancelled call shuts the socket down, and the error is then `Interrupted`.
    fn with_connection<T>(
        &self,
        mailbox: Option<&MailboxId>,
        retry: Retry,
        mut op: impl FnMut(&mut Connection) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut borrowed = self.borrow(mailbox)?;
            let (result, keep, server_fault) = {
                let conn = borrowed.conn.as_mut().expect("borrowed connection present");
                let cancel = conn.cancel_with_call();
                let result = match op(conn) {
                    Err(_) if call::cancelled() => Err(StoreError::Interrupted),
                    other => other,
                };
                drop(cancel);
                let keep =
                    !conn.is_broken() && result.as_ref().err().is_none_or(connection_survives);
                // A refusal that closed the connection is the server failing internally
                // (SERVERBUG), which a new session may well not meet.
                let server_fault =
                    conn.is_broken() && matches!(result, Err(StoreError::Refused(_)));
                (result, keep, server_fault)
            };
            if !keep {
                borrowed.conn = None;
            }
            let e = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if matches!(e, StoreError::Connection(_)) {
                // The server likely restarted or the network dropped: the other idle
                // connections are as dead as this one.
                self.discard_idle();
            }
            if attempt == 1
                && retry == Retry::Once
                && (server_fault || matches!(e, StoreError::Connection(_)))
                && call::goes_on().is_ok()
            {
                tracing::warn!(error = %e, "IMAP connection broke; retrying once on a new one");
                drop(borrowed);
                continue;
            }
            return Err(e);
        }
    }

    /// Closes every idle connection.
    fn discard_idle(&self) {
        let mut pool = self.pool.lock();
        let dropped = pool.idle.len();
        pool.idle.clear();
        pool.open -= dropped;
    }

    /// Ends every session of this store, the watcher's too: idle connections now, busy ones
    /// when given back. After a RENAME, a session that was reading the mailbox as it moved
    /// may still hold its lock: Dovecot 2.3 leaves `dovecot-uidlist.lock` behind in the
    /// renamed directory, under the pid of a live session, and every other session waits
    /// on it for minutes. When that session ends, the lock is stale and taken at once.
    fn renew_sessions(&self) {
        self.pool.lock().epoch += 1;
        self.discard_idle();
        self.returned.notify_all();
        if let Some(watch) = &self.watch {
            watch.renew();
        }
    }

    /// Marks idle connections that have `mailbox` selected as having nothing selected, so
    /// the next use selects again (after a RENAME or DELETE of that mailbox).
    fn forget_selection(&self, mailbox: &MailboxId) {
        for conn in self.pool.lock().idle.iter_mut() {
            if conn.selection.mailbox().is_some_and(|(m, _)| m == mailbox) {
                conn.selection = Selection::None;
            }
        }
    }

    fn caps(&self) -> Capabilities {
        Capabilities {
            move_command: self.has_capability("MOVE"),
            uidplus: self.has_capability("UIDPLUS"),
            binary: self.has_capability("BINARY"),
        }
    }

    /// Makes `mailbox` the selected mailbox of `conn` (EXAMINE for reading, SELECT for
    /// changes) unless it already is; checks UIDVALIDITY if one is expected. Returns the
    /// UIDVALIDITY and, when the mailbox was (re)selected, what the server said of it.
    /// `select` to read `uids`.
    pub(super) fn select_to_read(
        &self,
        conn: &mut Connection,
        mailbox: &MailboxId,
        validity: UidValidity,
        uids: impl IntoIterator<Item = Uid>,
    ) -> StoreResult<()> {
        self.select_for(conn, mailbox, validity, Mode::Read, uids)
    }

    /// `select` to read or change `uids`. A selection made before the newest of them
    /// arrived (the UIDNEXT it saw was not above it) is made again: Dovecot shows a session
    /// the messages that arrived since it selected only after its next command, so a `UID
    /// FETCH` (or STORE, COPY, MOVE) of one there finds nothing, and the message would be
    /// taken for gone. A UID that is truly gone costs one `EXAMINE`; a server that gave no
    /// UIDNEXT is not asked again.
    fn select_for(
        &self,
        conn: &mut Connection,
        mailbox: &MailboxId,
        validity: UidValidity,
        mode: Mode,
        uids: impl IntoIterator<Item = Uid>,
    ) -> StoreResult<()> {
        let newest = uids.into_iter().map(|u| u.0).max();
        let selected_here = conn.selection.mailbox().is_some_and(|(m, _)| m == mailbox);
        let before = match (newest, conn.uid_next_seen) {
            (Some(newest), Some(next)) => newest >= next,
            _ => false,
        };
        if selected_here && before {
            conn.selection = Selection::None;
        }
        self.select(conn, mailbox, Some(validity), mode).map(drop)
    }

    fn select(
        &self,
        conn: &mut Connection,
        mailbox: &MailboxId,
        expected: Option<UidValidity>,
        mode: Mode,
    ) -> StoreResult<(UidValidity, Option<Selected>)> {
        let reusable = match (&conn.selection, mode) {
            (Selection::Select(m, v), _) | (Selection::Examine(m, v), Mode::Read)
                if m == mailbox =>
            {
                Some(*v)
            }
            _ => None,
        };
        if let (Some(current), Some(expected), false) = (reusable, expected, mode == Mode::Relist) {
            return check_validity(mailbox, expected, current).map(|v| (v, None));
        }
        let name = quote::mailbox(mailbox)?;
        conn.selection = Selection::None;
        let verb = match mode {
            Mode::Read | Mode::Relist => "EXAMINE",
            Mode::Write => "SELECT",
        };
        let done = conn
            .run(Command::new(verb).arg(&name))
            .map_err(|e| match e {
                StoreError::Refused(_) => StoreError::NoSuchMailbox(mailbox.clone()),
                other => other,
            })?;
        let mut exists = None;
        let (mut validity, mut uid_next, mut highest_modseq) = (None, None, None);
        for untagged in &done.untagged {
            if let Untagged::Exists(n) = untagged {
                exists = Some(*n);
            }
        }
        for code in done.codes() {
            match code {
                Code::UidValidity(v) => validity = Some(UidValidity(*v)),
                Code::UidNext(n) => uid_next = Some(*n),
                Code::HighestModSeq(n) => highest_modseq = Some(*n),
                _ => {}
            }
        }
        let validity = validity
            .ok_or_else(|| StoreError::Protocol(format!("no UIDVALIDITY for {mailbox}")))?;
        let exists = exists.unwrap_or(0);
        conn.selection = match mode {
            Mode::Read | Mode::Relist => Selection::Examine(mailbox.clone(), validity),
            Mode::Write => Selection::Select(mailbox.clone(), validity),
        };
        conn.uid_next_seen = uid_next;
        let selected = Selected {
            exists,
            uid_next,
            version: uid_next
                .zip(highest_modseq)
                .map(|(uid_next, highest_modseq)| MailboxVersion {
                    uid_validity: validity,
                    uid_next,
                    exists,
                    highest_modseq,
                }),
        };
        match expected {
            Some(expected) => {
                check_validity(mailbox, expected, validity).map(|v| (v, Some(selected)))
            }
            None => Ok((validity, Some(selected))),
        }
    }
}

fn check_validity(
    mailbox: &MailboxId,
    expected: UidValidity,
    actual: UidValidity,
) -> StoreResult<UidValidity> {
    if expected == actual {
        Ok(actual)
    } else {
        Err(StoreError::UidValidityChanged {
            mailbox: mailbox.clone(),
            expected,
            actual,
        })
    }
}

/// A UID set such as `3:5,9` ([RFC 3501 §9](https://www.rfc-editor.org/rfc/rfc3501#section-9), `sequence-set`).
pub fn uid_set(uids: &[Uid]) -> String {
    uid_sets(uids, usize::MAX).pop().unwrap_or_default()
}

/// `uids` as UID sets (`3:5,9`) of at most `max` bytes each (one run or UID may pass it).
pub fn uid_sets(uids: &[Uid], max: usize) -> Vec<String> {
    let mut sorted: Vec<u32> = uids.iter().map(|u| u.0).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut sets = Vec::new();
    let mut set = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        while i + 1 < sorted.len() && sorted[i + 1] == sorted[i] + 1 {
            i += 1;
        }
        let run = match sorted[i] {
            end if end == start => start.to_string(),
            end => format!("{start}:{end}"),
        };
        if !set.is_empty() && set.len() + 1 + run.len() > max {
            sets.push(std::mem::take(&mut set));
        }
        if !set.is_empty() {
            set.push(',');
        }
        set.push_str(&run);
        i += 1;
    }
    if !set.is_empty() {
        sets.push(set);
    }
    sets
}

/// The metadata in FETCH answers, for the UIDs in `wanted` (all when `None`), sorted by UID
/// with duplicates dropped. A message the server describes without its UID, size or date
/// is logged and skipped; a FETCH without a UID is an unsolicited flag update.
fn metadata(
    mailbox: &MailboxId,
    untagged: &[Untagged],
    wanted: Option<&[(u32, u32)]>,
) -> Vec<crate::store::MessageMeta> {
    let mut messages = Vec::new();
    for fetch in fetches(untagged) {
        if let (Some(uid), Some(ranges)) = (fetch.uid, wanted) {
            if !ranges.iter().any(|&(a, b)| (a..=b).contains(&uid)) {
                continue;
            }
        }
        match convert::message_meta(fetch) {
            Some(meta) => messages.push(meta),
            None if fetch.uid.is_none() => {}
            None => {
                tracing::warn!(mailbox = %mailbox, uid = ?fetch.uid, size = ?fetch.size, "server left out UID, size or date, or sent a size past 4 GiB; message skipped")
            }
        }
    }
    messages.sort_by_key(|m| m.uid);
    messages.dedup_by_key(|m| m.uid);
    messages
}

impl MailStore for ImapStore {
    fn list_mailboxes(&self) -> StoreResult<Vec<MailboxInfo>> {
        let ask_namespace = !self.naming.lock().listed && self.has_capability("NAMESPACE");
        let (namespace, entries) = self.with_connection(None, Retry::Once, |conn| {
            // Once per mount: where the personal mailboxes live (RFC 2342).
            let namespace = if ask_namespace {
                let done = conn.run(Command::new("NAMESPACE"))?;
                done.untagged.into_iter().find_map(|u| match u {
                    Untagged::Namespace(personal) => personal,
                    _ => None,
                })
            } else {
                None
            };
            let done = conn.run(Command::new("LIST").syntax("\"\" \"*\""))?;
            let entries = done
                .untagged
                .into_iter()
                .filter_map(|u| match u {
                    Untagged::List(entry) => Some(entry),
                    _ => None,
                })
                .collect::<Vec<_>>();
            Ok((namespace, entries))
        })?;
        tracing::debug!(names = ?entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), "mailboxes listed");
        let mut naming = self.naming.lock();
        if let Some((prefix, delimiter)) = namespace {
            tracing::debug!(prefix, ?delimiter, "personal namespace");
            naming.prefix = names::Prefix(prefix);
            naming.delimiter = naming.delimiter.or(delimiter);
        }
        naming.listed = true;
        naming.wire_by_path.clear();
        let mut infos = Vec::with_capacity(entries.len());
        for entry in entries {
            let has = |name: &str| {
                entry
                    .attributes
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(name))
            };
            let selectable = !has("\\Noselect") && !has("\\NonExistent");
            let special_use = entry.attributes.iter().find_map(|a| special_use(a));
            if naming.delimiter.is_none() {
                naming.delimiter = entry.delimiter;
            }
            let path = names::path_of(&entry.name, entry.delimiter, &naming.prefix);
            naming.wire_by_path.insert(path.clone(), entry.name.clone());
            infos.push(MailboxInfo {
                id: MailboxId::new(&entry.name),
                path,
                selectable,
                special_use,
            });
        }
        Ok(infos)
    }

    fn mailbox_version(&self, mailbox: &MailboxId) -> StoreResult<Option<MailboxVersion>> {
        if !self.has_capability("CONDSTORE") {
            return Ok(None);
        }
        self.with_connection(Some(mailbox), Retry::Once, |conn| {
            let started = std::time::Instant::now();
            let (_, selected) = self.select(conn, mailbox, None, Mode::Relist)?;
            let version = selected.and_then(|s| s.version);
            if let (Some(watch), Some(v)) = (&self.watch, version) {
                // A listing kept at this version (the disk cache's) is one taken now: the
                // watcher may trust it without a command of its own.
                watch.note_listing(
                    mailbox,
                    ListingNote {
                        started,
                        validity: v.uid_validity,
                        uid_next: Some(v.uid_next),
                        exists: v.exists,
                        modseq: Some(v.highest_modseq),
                        uids: None,
                    },
                );
            }
            Ok(version)
        })
    }

    fn list_messages(&self, mailbox: &MailboxId) -> StoreResult<MailboxListing> {
        self.with_connection(Some(mailbox), Retry::Once, |conn| {
            let started = std::time::Instant::now();
            let (validity, selected) = self.select(conn, mailbox, None, Mode::Relist)?;
            let exists = selected.as_ref().map(|s| s.exists);
            let uid_next = selected.as_ref().and_then(|s| s.uid_next);
            let version = selected.and_then(|s| s.version);
            let messages = if exists == Some(0) {
                Vec::new()
            } else {
                // A listing is a few hundred bytes per message; allow 4 KiB each.
                let budget = MAX_RESPONSE_BYTES.max(u64::from(exists.unwrap_or(0)) * 4096);
                let cmd = Command::new("UID FETCH")
                    .syntax("1:*")
                    .syntax(convert::LISTING_ITEMS);
                let done = conn.run_with_budget(budget, cmd)?;
                metadata(mailbox, &done.untagged, None)
            };
            if let (Some(watch), Some(exists)) = (&self.watch, exists) {
                // Without QRESYNC the watcher finds expunges by comparing UIDs.
                let uids = (!self.has_capability("QRESYNC"))
                    .then(|| messages.iter().map(|m| m.uid.0).collect());
                let note = ListingNote {
                    started,
                    validity,
                    uid_next,
                    exists,
                    modseq: version.map(|v| v.highest_modseq),
                    uids,
                };
                watch.note_listing(mailbox, note);
            }
            Ok(MailboxListing {
                uid_validity: validity,
                messages,
                version,
            })
        })
    }

    fn body_structures(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uids: &[Uid],
    ) -> StoreResult<Vec<MessageStructure>> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let set = uid_set(uids);
        self.with_connection(Some(mailbox), Retry::Once, |conn| {
            self.select_to_read(conn, mailbox, validity, uids.iter().copied())?;
            // The size comes in the same answer as the structure: a message that vanishes
            // between two requests can never get a structure with a wrong size.
            let cmd = Command::new("UID FETCH")
                .syntax(set.as_str())
                .syntax("(UID RFC822.SIZE BODYSTRUCTURE)");
            let done = conn.run(cmd)?;
            let mut out: Vec<MessageStructure> = Vec::with_capacity(uids.len());
            for f in fetches(&done.untagged) {
                let Some(uid) = f.uid.map(Uid).filter(|u| uids.contains(u)) else {
                    continue;
                };
                let Some(raw) = &f.bodystructure else {
                    continue;
                };
                if out.iter().any(|s| s.uid == uid) {
                    continue;
                }
                let size = f.size.and_then(convert::message_size).ok_or_else(|| {
                    StoreError::Protocol(format!(
                        "the server sent the BODYSTRUCTURE of UID {uid} without its RFC822.SIZE, or with one past 4 GiB"
                    ))
                })?;
                out.push(MessageStructure {
                    uid,
                    size,
                    body: convert::structure(raw, MAX_NESTING)?,
                });
            }
            Ok(out)
        })
    }

    fn fetch_parts(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        wanted: &[(Uid, Vec<PartItem>)],
    ) -> StoreResult<Vec<(Uid, PartItem, PartValue)>> {
        let plan = parts::Plan::new(wanted, self.caps().binary)?;
        if plan.is_empty() {
            return Ok(Vec::new());
        }
        let answers = self.with_connection(Some(mailbox), Retry::Once, |conn| {
            self.select_to_read(conn, mailbox, validity, wanted.iter().map(|(u, _)| *u))?;
            match conn.run_pipelined(plan.budget(), plan.commands()) {
                Ok((untagged, _)) => plan.answers(untagged).map(Some),
                // The server cannot decode a part: Dovecot 2.3.19 answers an unknown
                // encoding with NO [UNKNOWN-CTE], and base64 it cannot read with NO
                // ("Invalid data in MIME part") or, in a FETCH of several messages, with
                // BYE ("FETCH failed") and a closed connection; for the whole FETCH.
                Err(StoreError::Unsupported(_) | StoreError::Refused(_)) if plan.has_decoded() => {
                    Ok(None)
                }
                Err(StoreError::Connection(_)) if plan.has_decoded() && conn.said_bye() => Ok(None),
                Err(e) => Err(e),
            }
        })?;
        match answers {
            Some(answers) => Ok(answers),
            // One message the server cannot decode fails the FETCH of all: ask for each
            // alone, so that only those it cannot decode are fetched whole and decoded here.
            None if wanted.len() > 1 => {
                let mut all = Vec::new();
                for one in wanted {
                    all.extend(self.fetch_parts(mailbox, validity, std::slice::from_ref(one))?);
                }
                Ok(all)
            }
            None => self.decode_here(mailbox, validity, wanted),
        }
    }

    fn find_by_message_id(
        &self,
        mailbox: &MailboxId,
        message_id: &str,
    ) -> StoreResult<(UidValidity, Vec<crate::store::MessageMeta>)> {
        let id = quote::string(message_id, "Message-ID")?;
        self.with_connection(Some(mailbox), Retry::Once, |conn| {
            let (validity, _) = self.select(conn, mailbox, None, Mode::Read)?;
            let mut search = Command::new("UID SEARCH");
            if !message_id.is_ascii() {
                search = search.syntax("CHARSET UTF-8");
            }
            let done = conn.run(search.syntax("HEADER Message-ID").arg(&id))?;
            let found: Vec<(u32, u32)> = done
                .untagged
                .iter()
                .filter_map(|u| match u {
                    Untagged::Search(ranges) => Some(ranges.iter().copied()),
                    _ => None,
                })
                .flatten()
                .collect();
            if found.is_empty() {
                return Ok((validity, Vec::new()));
            }
            let set = found
                .iter()
                .map(|&(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}:{b}")
                    }
                })
                .collect::<Vec<_>>()
                .join(",");
            let cmd = Command::new("UID FETCH")
                .syntax(set)
                .syntax(convert::LISTING_ITEMS);
            let done = conn.run(cmd)?;
            Ok((validity, metadata(mailbox, &done.untagged, Some(&found))))
        })
    }

    fn changes_since(
        &self,
        mailbox: &MailboxId,
        known: MailboxVersion,
        held: &[Uid],
    ) -> StoreResult<Option<(MailboxChange, MailboxVersion)>> {
        if !self.has_capability("CONDSTORE") {
            return Ok(None);
        }
        let esearch = self.has_capability("ESEARCH");
        let found = self.with_connection(Some(mailbox), Retry::Once, |conn| {
            watch::changes_since(conn, mailbox, known, held, esearch)
        })?;
        Ok(found.map(|(change, version, note)| {
            if let Some(watch) = &self.watch {
                // Without QRESYNC the watcher finds expunges by comparing UIDs.
                let note = ListingNote {
                    uids: note.uids.filter(|_| !self.has_capability("QRESYNC")),
                    ..note
                };
                watch.note_listing(mailbox, note);
            }
            (change, version)
        }))
    }

    fn search(&self, mailbox: &MailboxId, key: &SearchKey) -> StoreResult<Vec<Uid>> {
        let offered = search_keys::Offered {
            gmail: self.has_capability("X-GM-EXT-1"),
        };
        let rendered = search_keys::render(key, &offered)?;
        let esearch = self.has_capability("ESEARCH");
        self.with_connection(Some(mailbox), Retry::Once, |conn| {
            self.select(conn, mailbox, None, Mode::Read)?;
            let mut cmd = Command::new("UID SEARCH");
            if esearch {
                // Ranges instead of every UID (RFC 4731).
                cmd = cmd.syntax("RETURN (ALL)");
            }
            if rendered.utf8 {
                cmd = cmd.syntax("CHARSET UTF-8");
            }
            for piece in &rendered.pieces {
                cmd = match piece {
                    search_keys::Piece::Syntax(s) => cmd.syntax(s.as_str()),
                    search_keys::Piece::Arg(a) => cmd.arg(a),
                };
            }
            // A query the server will not take (`imap:` keys of the user's) is the query's
            // fault, not the connection's: EINVAL.
            let done = conn.run(cmd).map_err(|e| match e {
                StoreError::Protocol(text) if text.starts_with(errors::BAD_ANSWER) => {
                    StoreError::Invalid(format!("the server refused the search: {text}"))
                }
                other => other,
            })?;
            let ranges: Vec<(u32, u32)> = done
                .untagged
                .iter()
                .filter_map(|u| match u {
                    Untagged::Search(ranges) => Some(ranges.iter().copied()),
                    _ => None,
                })
                .flatten()
                .map(|(a, b)| (a.min(b), a.max(b)))
                .collect();
            let count: u64 = ranges.iter().map(|&(a, b)| u64::from(b - a) + 1).sum();
            if count > MAX_SEARCH_HITS {
                return Err(StoreError::Protocol(format!(
                    "the server answered a search with {count} UIDs"
                )));
            }
            let mut uids: Vec<Uid> = ranges
                .into_iter()
                .flat_map(|(a, b)| (a..=b).map(Uid))
                .collect();
            uids.sort();
            uids.dedup();
            Ok(uids)
        })
    }

    fn capabilities(&self) -> Capabilities {
        self.caps()
    }

    fn create_mailbox(&self, path: &[String]) -> StoreResult<MailboxId> {
        let wire = self.wire_for(path)?;
        self.create(&wire)?;
        Ok(wire)
    }

    fn delete_mailbox(&self, mailbox: &MailboxId) -> StoreResult<()> {
        self.delete(mailbox)
    }

    fn rename_mailbox(&self, from: &MailboxId, to: &[String]) -> StoreResult<MailboxId> {
        let wire = self.wire_for(to)?;
        self.rename(from, &wire)?;
        Ok(wire)
    }

    fn set_flags(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        flags: &[Flag],
    ) -> StoreResult<()> {
        self.store_flags(mailbox, validity, uid, flags)
    }

    fn change_flags(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        add: &[Flag],
        remove: &[Flag],
    ) -> StoreResult<()> {
        self.add_remove_flags(mailbox, validity, uid, add, remove)
    }

    fn change_flags_unchanged_since(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        add: &[Flag],
        remove: &[Flag],
        since: u64,
    ) -> StoreResult<ConditionalStore> {
        self.add_remove_flags_unchanged_since(mailbox, validity, uid, add, remove, since)
    }

    fn change_flags_of(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uids: &[Uid],
        add: &[Flag],
        remove: &[Flag],
    ) -> StoreResult<Vec<Uid>> {
        self.add_remove_flags_of(mailbox, validity, uids, add, remove)
            .map(|()| Vec::new())
    }

    fn flags_now(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
    ) -> StoreResult<FlagsNow> {
        self.fetch_flags(mailbox, validity, uid)
    }

    fn move_message(
        &self,
        from: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        to: &MailboxId,
    ) -> StoreResult<Option<(UidValidity, Uid)>> {
        self.move_one(from, validity, uid, to)
    }

    fn copy_message(
        &self,
        from: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        to: &MailboxId,
    ) -> StoreResult<Option<(UidValidity, Uid)>> {
        self.copy_one(from, validity, uid, to)
    }

    fn expunge_message(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uid: Uid,
    ) -> StoreResult<()> {
        self.expunge_one(mailbox, validity, uid)
    }

    fn append(
        &self,
        mailbox: &MailboxId,
        message: NewMessage<'_>,
    ) -> StoreResult<Option<(UidValidity, Uid)>> {
        self.append_one(mailbox, message)
    }

    fn quota(&self) -> StoreResult<Option<Quota>> {
        if !self.has_capability("QUOTA") {
            return Ok(None);
        }
        if let Some((at, known)) = *self.quota.lock() {
            if at.elapsed() < QUOTA_FRESH {
                return Ok(known);
            }
        }
        let inbox = quote::string("INBOX", "mailbox name")?;
        let done = self.with_connection(None, Retry::Once, |conn| {
            conn.run(Command::new("GETQUOTAROOT").arg(&inbox))
        })?;
        let known = quota_of_inbox(&done.untagged);
        *self.quota.lock() = Some((Instant::now(), known));
        Ok(known)
    }

    fn is_reachable(&self) -> bool {
        self.pool.lock().reach == Reach::Up
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            commands: self.counters.commands.load(Ordering::Relaxed),
            bytes_received: self.counters.bytes_received.load(Ordering::Relaxed),
            bytes_sent: self.counters.bytes_sent.load(Ordering::Relaxed),
        }
    }

    fn watch(&self, sink: crate::store::EventSink) {
        if let Some(watch) = &self.watch {
            watch.start(sink);
        }
    }

    fn follow(&self, mailbox: &MailboxId, known: Option<MailboxVersion>) {
        if let Some(watch) = &self.watch {
            // Without CONDSTORE offered, a version is not to be relied on.
            let known = known.filter(|_| self.has_capability("CONDSTORE"));
            watch.follow(mailbox, known);
        }
    }

    fn is_followed(&self, mailbox: &MailboxId) -> bool {
        self.watch.as_ref().is_some_and(|w| w.is_followed(mailbox))
    }

    /// Every session is renewed, as after a RENAME here (see `renew_sessions`): which ones
    /// have the mailbox selected on the server is not known for busy ones.
    fn renamed_elsewhere(&self, _mailbox: &MailboxId) {
        self.renew_sessions();
    }

    fn is_list_followed(&self) -> bool {
        self.watch.as_ref().is_some_and(Watch::is_list_followed)
    }
}

impl Drop for ImapStore {
    fn drop(&mut self) {
        if let Some(watch) = &self.watch {
            watch.stop();
        }
    }
}

impl ImapStore {
    /// `fetch_parts` for a server that could not decode: the stored bytes of each section
    /// wanted decoded, and the structures that tell their encodings, then decoded here with
    /// the decoder the filesystem core uses (lenient, as `crate::mime` is).
    fn decode_here(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        wanted: &[(Uid, Vec<PartItem>)],
    ) -> StoreResult<Vec<(Uid, PartItem, PartValue)>> {
        tracing::debug!(mailbox = %mailbox, "the server cannot decode a part; decoding it here");
        let uids: Vec<Uid> = wanted.iter().map(|(uid, _)| *uid).collect();
        let structures = self.body_structures(mailbox, validity, &uids)?;
        let stored_items = parts::stored_items(wanted);
        let plan = parts::Plan::new(&stored_items, false)?;
        let stored = self.with_connection(Some(mailbox), Retry::Once, |conn| {
            self.select_to_read(conn, mailbox, validity, uids.iter().copied())?;
            let (untagged, _) = conn.run_pipelined(plan.budget(), plan.commands())?;
            plan.answers(untagged)
        })?;
        Ok(parts::decode_here(wanted, &structures, stored))
    }
}

/// The STORAGE quota of INBOX's first quota root that has one, in bytes (RFC 2087 counts
/// STORAGE in units of 1024 octets). A root without a STORAGE limit is no quota.
fn quota_of_inbox(untagged: &[Untagged]) -> Option<Quota> {
    let roots: Vec<&String> = untagged
        .iter()
        .filter_map(|u| match u {
            Untagged::QuotaRoot { mailbox, roots } if mailbox.eq_ignore_ascii_case("INBOX") => {
                Some(roots)
            }
            _ => None,
        })
        .flatten()
        .collect();
    untagged.iter().find_map(|u| match u {
        Untagged::Quota { root, resources } if roots.contains(&root) => resources
            .iter()
            .find(|r| r.name == "STORAGE")
            .map(|r| Quota {
                used_bytes: r.usage.saturating_mul(1024),
                limit_bytes: r.limit.saturating_mul(1024),
            }),
        _ => None,
    })
}

/// The RFC 6154 special use of a mailbox, lower-cased without the backslash.
fn special_use(attribute: &str) -> Option<String> {
    const USES: [&str; 7] = [
        "all", "archive", "drafts", "flagged", "junk", "sent", "trash",
    ];
    let name = attribute.strip_prefix('\\')?.to_ascii_lowercase();
    USES.contains(&name.as_str()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_use_attributes_are_recognised() {
        assert_eq!(special_use("\\Trash").as_deref(), Some("trash"));
        assert_eq!(special_use("\\SENT").as_deref(), Some("sent"));
        assert_eq!(special_use("\\HasNoChildren"), None);
        assert_eq!(special_use("Trash"), None);
    }

    #[test]
    fn backoff_doubles_up_to_five_seconds() {
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(2), Duration::from_millis(400));
        assert_eq!(backoff(10), Duration::from_secs(5));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn the_quota_is_inbox_roots_storage_in_bytes() {
        use super::wire::QuotaResource;
        let resource = |name: &str, usage, limit| QuotaResource {
            name: name.into(),
            usage,
            limit,
        };
        let untagged = vec![
            Untagged::Quota {
                root: "other".into(),
                resources: vec![resource("STORAGE", 1, 2)],
            },
            Untagged::QuotaRoot {
                mailbox: "inbox".into(),
                roots: vec!["User quota".into()],
            },
            Untagged::Quota {
                root: "User quota".into(),
                resources: vec![resource("MESSAGE", 3, 100), resource("STORAGE", 10, 512)],
            },
        ];
        assert_eq!(
            quota_of_inbox(&untagged),
            Some(Quota {
                used_bytes: 10 * 1024,
                limit_bytes: 512 * 1024
            })
        );
        let no_storage = vec![
            Untagged::QuotaRoot {
                mailbox: "INBOX".into(),
                roots: vec!["".into()],
            },
            Untagged::Quota {
                root: "".into(),
                resources: vec![resource("MESSAGE", 3, 100)],
            },
        ];
        assert_eq!(quota_of_inbox(&no_storage), None);
        assert_eq!(quota_of_inbox(&[]), None);
    }

    #[test]
    fn uid_sets_compress_runs() {
        let uids = [Uid(9), Uid(3), Uid(4), Uid(5), Uid(11), Uid(4)];
        assert_eq!(uid_set(&uids), "3:5,9,11");
        assert_eq!(uid_set(&[Uid(1)]), "1");
        assert_eq!(uid_set(&[]), "");
    }

    #[test]
    fn uid_sets_are_cut_to_a_length() {
        let uids = [Uid(9), Uid(3), Uid(4), Uid(5), Uid(11), Uid(4), Uid(13)];
        assert_eq!(uid_sets(&uids, 8), ["3:5,9,11", "13"]);
        assert_eq!(uid_sets(&uids, 3), ["3:5", "9", "11", "13"]);
        assert!(uid_sets(&[], 8).is_empty());
        // 2,000 sparse UIDs: every set within the bound, all of them once, in order.
        let sparse: Vec<Uid> = (1..=2_000).map(|i| Uid(i * 2)).collect();
        let sets = uid_sets(&sparse, 4096);
        assert!(sets.len() > 1 && sets.iter().all(|s| s.len() <= 4096));
        let back: Vec<String> = sets
            .iter()
            .flat_map(|s| s.split(','))
            .map(String::from)
            .collect();
        let want: Vec<String> = sparse.iter().map(|u| u.0.to_string()).collect();
        assert_eq!(back, want);
    }
}
