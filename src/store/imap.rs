//! `MailStore` over IMAP: a small pool of connections, each with its selected mailbox.
//!
//! Every read uses UIDs, `EXAMINE` and `BODY.PEEK`, so nothing here can set `\Seen`.
//! A connection that times out or breaks is dropped; reads are retried once on a fresh one.

mod changes;
pub mod connection;
pub mod convert;
pub mod errors;
pub mod names;
mod nesting;
pub mod quote;
pub mod utf7;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use self::connection::{
    connect, ConnectConfig, Connection, Counters, Selection, MAX_RESPONSE_BYTES,
};
use self::errors::{connection_survives, from_imap};
use crate::search::SearchKey;
use crate::store::{
    ByteRange, Capabilities, Flag, MailStore, MailboxId, MailboxInfo, MailboxListing, MailboxPath,
    MailboxVersion, MessageStructure, NewMessage, PartItem, PartValue, Section, StoreError,
    StoreResult, StoreStats, Transfer, Uid, UidValidity,
};

pub use self::connection::{Auth, Transport};

/// How deep a BODYSTRUCTURE may nest before the rest is ignored.
const MAX_NESTING: u32 = 32;

/// What EXAMINE or SELECT told of a mailbox.
struct Selected {
    exists: u32,
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
}

/// The wait before reconnecting after `failures` failed attempts: 100 ms doubling to 5 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.min(6))).min(Duration::from_secs(5))
}

/// A mail store backed by an IMAP server.
pub struct ImapStore {
    config: ConnectConfig,
    counters: Arc<Counters>,
    pool: Mutex<Pool>,
    returned: Condvar,
    max_connections: usize,
    capabilities: Vec<String>,
    naming: Mutex<Naming>,
}

/// What the last LIST said about names: the delimiter, and each mailbox's wire name by path
/// (so that a new mailbox under an existing one keeps the server's spelling of the parent).
#[derive(Default)]
struct Naming {
    delimiter: Option<char>,
    listed: bool,
    wire_by_path: std::collections::HashMap<MailboxPath, String>,
}

/// A connection borrowed from the pool; it goes back on drop unless it was found broken.
struct Borrowed<'a> {
    store: &'a ImapStore,
    conn: Option<Connection>,
}

impl Drop for Borrowed<'_> {
    fn drop(&mut self) {
        let mut pool = self.store.pool.lock();
        match self.conn.take() {
            Some(conn) => pool.idle.push(conn),
            None => pool.open -= 1,
        }
        self.store.returned.notify_one();
    }
}

impl ImapStore {
    /// Connects and logs in once, so that a wrong password or an unreachable server is
    /// reported before anything is mounted.
    pub fn connect(config: ConnectConfig, max_connections: usize) -> StoreResult<ImapStore> {
        let counters = Arc::new(Counters::default());
        let first = connect(&config, &counters)?;
        let capabilities = first.capabilities.clone();
        tracing::info!(host = %config.host, user = %config.user, "logged in");
        tracing::debug!(capabilities = ?capabilities, "server capabilities");
        Ok(ImapStore {
            config,
            counters,
            pool: Mutex::new(Pool {
                idle: vec![first],
                open: 1,
                failures: 0,
                retry_at: None,
            }),
            returned: Condvar::new(),
            max_connections: max_connections.max(1),
            capabilities,
            naming: Mutex::new(Naming::default()),
        })
    }

    /// The wire name for a mailbox at `path`, spelled as the last LIST spelled its existing
    /// levels (listing first if nothing was listed yet, to learn the delimiter).
    fn wire_for(&self, path: &[String]) -> StoreResult<MailboxId> {
        if !self.naming.lock().listed {
            self.list_mailboxes()?;
        }
        let naming = self.naming.lock();
        names::wire_for(path, naming.delimiter, &naming.wire_by_path).map(|w| MailboxId::new(&w))
    }

    /// True if the server announced `cap` at login.
    pub fn has_capability(&self, cap: &str) -> bool {
        self.capabilities
            .iter()
            .any(|c| c.eq_ignore_ascii_case(cap))
    }

    /// Takes an idle connection (preferring one with `mailbox` selected), opens a new one
    /// while under the limit, or waits for one to come back until the deadline.
    fn borrow(&self, mailbox: Option<&MailboxId>) -> StoreResult<Borrowed<'_>> {
        let deadline = Instant::now() + self.config.timeout;
        let mut pool = self.pool.lock();
        loop {
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
                });
            }
            if pool.open < self.max_connections {
                // After failed attempts, wait out the backoff (within this request's deadline).
                if let Some(at) = pool.retry_at {
                    if at > deadline {
                        return Err(StoreError::Connection(format!(
                            "the server is unreachable; next attempt in {:?}",
                            at.saturating_duration_since(Instant::now())
                        )));
                    }
                    if at > Instant::now() {
                        self.returned.wait_until(&mut pool, at);
                        continue;
                    }
                }
                pool.open += 1;
                drop(pool);
                let result = connect(&self.config, &self.counters);
                let mut pool = self.pool.lock();
                return match result {
                    Ok(conn) => {
                        if pool.failures > 0 {
                            tracing::info!(failures = pool.failures, "reconnected to the server");
                        }
                        pool.failures = 0;
                        pool.retry_at = None;
                        Ok(Borrowed {
                            store: self,
                            conn: Some(conn),
                        })
                    }
                    Err(e) => {
                        pool.open -= 1;
                        pool.failures += 1;
                        let wait = backoff(pool.failures);
                        pool.retry_at = Some(Instant::now() + wait);
                        tracing::warn!(error = %e, retry_in = ?wait, "cannot connect to the server");
                        drop(pool);
                        self.returned.notify_one();
                        Err(e)
                    }
                };
            }
            if self.returned.wait_until(&mut pool, deadline).timed_out() {
                return Err(StoreError::Timeout(
                    "every IMAP connection stayed busy".into(),
                ));
            }
        }
    }

    /// Runs `op` on a pooled connection. A connection left in an unknown state is dropped;
    /// a broken connection is replaced and `op` retried once, which is safe for the
    /// read-only operations this is used for.
    fn with_connection<T>(
        &self,
        mailbox: Option<&MailboxId>,
        retry: Retry,
        op: impl Fn(&mut Connection) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut borrowed = self.borrow(mailbox)?;
            let conn = borrowed.conn.as_mut().expect("borrowed connection present");
            let result = op(conn);
            // Unsolicited responses are not used yet; do not let them pile up.
            conn.session.take_all_unsolicited().for_each(drop);
            match result {
                Ok(v) => return Ok(v),
                Err(e) => {
                    if !connection_survives(&e) {
                        borrowed.conn = None;
                    }
                    if matches!(e, StoreError::Connection(_)) {
                        // The server likely restarted or the network dropped: the other idle
                        // connections are as dead as this one.
                        self.discard_idle();
                    }
                    if attempt == 1
                        && retry == Retry::Once
                        && matches!(e, StoreError::Connection(_))
                    {
                        tracing::warn!(error = %e, "IMAP connection broke; retrying once on a new one");
                        drop(borrowed);
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Closes every idle connection.
    fn discard_idle(&self) {
        let mut pool = self.pool.lock();
        let dropped = pool.idle.len();
        pool.idle.clear();
        pool.open -= dropped;
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
            // Not used until the wire layer can parse BINARY answers.
            binary: false,
        }
    }

    /// Called before every command: counts it and starts its deadline and byte budget.
    fn begin(&self, conn: &Connection) {
        self.begin_with_budget(conn, MAX_RESPONSE_BYTES);
    }

    /// Like `begin`, for a command whose answer may legitimately be larger.
    fn begin_with_budget(&self, conn: &Connection, budget: u64) {
        self.counters.commands.fetch_add(1, Ordering::Relaxed);
        conn.limits.start_command(budget);
    }

    /// Makes `mailbox` the selected mailbox of `conn` (EXAMINE for reading, SELECT for
    /// changes) unless it already is; checks UIDVALIDITY if one is expected. Returns the
    /// UIDVALIDITY and, when the mailbox was (re)selected, what the server said of it.
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
        let wire = quote::mailbox_arg(mailbox)?;
        conn.selection = Selection::None;
        self.begin(conn);
        let result = match mode {
            Mode::Read | Mode::Relist => conn.session.examine(wire),
            Mode::Write => conn.session.select(wire),
        };
        let info = result.map_err(|e| match from_imap(e) {
            StoreError::Refused(_) => StoreError::NoSuchMailbox(mailbox.clone()),
            other => other,
        })?;
        let validity = UidValidity(
            info.uid_validity
                .ok_or_else(|| StoreError::Protocol(format!("no UIDVALIDITY for {mailbox}")))?,
        );
        conn.selection = match mode {
            Mode::Read | Mode::Relist => Selection::Examine(mailbox.clone(), validity),
            Mode::Write => Selection::Select(mailbox.clone(), validity),
        };
        let selected = Selected {
            exists: info.exists,
            version: info
                .uid_next
                .zip(info.highest_mod_seq)
                .map(|(uid_next, highest_modseq)| MailboxVersion {
                    uid_validity: validity,
                    uid_next,
                    exists: info.exists,
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

    /// Sends one `UID FETCH` and returns the responses for the UIDs asked for.
    fn uid_fetch(
        &self,
        conn: &mut Connection,
        set: &str,
        query: &str,
        budget: u64,
    ) -> StoreResult<imap::types::Fetches> {
        self.begin_with_budget(conn, budget);
        conn.session.uid_fetch(set, query).map_err(from_imap)
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
    let mut sorted: Vec<u32> = uids.iter().map(|u| u.0).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

impl ImapStore {
    /// `UID FETCH set (UID BODY.PEEK[section]<range>)`.
    fn fetch_body_sections(
        &self,
        mailbox: &MailboxId,
        validity: UidValidity,
        uids: &[Uid],
        section: &Section,
        range: Option<ByteRange>,
    ) -> StoreResult<Vec<(Uid, Vec<u8>)>> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let partial = range.map_or(String::new(), |r| format!("<{}.{}>", r.offset, r.len));
        let query = format!("(UID BODY.PEEK[{section}]{partial})");
        let path = (!section.is_whole())
            .then(|| imap_proto::types::SectionPath::Part(section.0.clone(), None));
        let set = uid_set(uids);
        // Each part plus room for the response around it.
        let each = range.map_or(MAX_RESPONSE_BYTES, |r| r.len.saturating_add(64 << 10));
        let budget = each.saturating_mul(uids.len() as u64);
        self.with_connection(Some(mailbox), Retry::Once, |conn| {
            self.select(conn, mailbox, Some(validity), Mode::Read)?;
            let fetches = self.uid_fetch(conn, &set, &query, budget)?;
            let mut out = Vec::with_capacity(uids.len());
            for fetch in fetches.iter() {
                let Some(uid) = fetch.uid.map(Uid).filter(|u| uids.contains(u)) else {
                    continue;
                };
                let data = match &path {
                    None => fetch.body(),
                    Some(p) => fetch.section(p),
                };
                // NIL (not an empty string) is what Dovecot answers for a message expunged by
                // another client but not yet announced as gone: leave it out, as missing.
                if let Some(data) = data {
                    if !out.iter().any(|(u, _)| *u == uid) {
                        out.push((uid, data.to_vec()));
                    }
                }
            }
            Ok(out)
        })
    }
}

impl MailStore for ImapStore {
    fn list_mailboxes(&self) -> StoreResult<Vec<MailboxInfo>> {
        let names = self.with_connection(None, Retry::Once, |conn| {
            self.begin(conn);
            let names = conn.session.list(Some(""), Some("*")).map_err(from_imap)?;
            Ok(names
                .iter()
                .map(|n| {
                    use imap_proto::types::NameAttribute as A;
                    let attrs = n.attributes();
                    let selectable = !attrs
                        .iter()
                        .any(|a| matches!(a, A::NoSelect) || is_extension(a, "\\NonExistent"));
                    let special_use = attrs.iter().find_map(special_use);
                    let delimiter = n.delimiter().and_then(|d| d.chars().next());
                    (
                        unescape_quoted(n.name()),
                        delimiter,
                        selectable,
                        special_use,
                    )
                })
                .collect::<Vec<_>>())
        })?;
        let mut naming = self.naming.lock();
        naming.listed = true;
        naming.wire_by_path.clear();
        let mut infos = Vec::with_capacity(names.len());
        for (wire, delimiter, selectable, special_use) in names {
            if naming.delimiter.is_none() {
                naming.delimiter = delimiter;
            }
            let path = names::path_of(&wire, delimiter);
            naming.wire_by_path.insert(path.clone(), wire.clone());
            infos.push(MailboxInfo {
                id: MailboxId::new(&wire),
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
            let (_, selected) = self.select(conn, mailbox, None, Mode::Relist)?;
            Ok(selected.and_then(|s| s.version))
        })
    }

    fn list_messages(&self, mailbox: &MailboxId) -> StoreResult<MailboxListing> {
        self.with_connection(Some(mailbox), Retry::Once, |conn| {
            let (validity, selected) = self.select(conn, mailbox, None, Mode::Relist)?;
            let exists = selected.as_ref().map(|s| s.exists);
            let version = selected.and_then(|s| s.version);
            if exists == Some(0) {
                return Ok(MailboxListing {
                    uid_validity: validity,
                    messages: Vec::new(),
                    version,
                });
            }
            // A listing is a few hundred bytes per message; allow 4 KiB each.
            let budget = MAX_RESPONSE_BYTES.max(u64::from(exists.unwrap_or(0)) * 4096);
            let fetches = self.uid_fetch(
                conn,
                "1:*",
                convert::LISTING_ITEMS,
                budget,
            )?;
            let mut messages = Vec::with_capacity(fetches.len());
            for fetch in fetches.iter() {
                match convert::message_meta(fetch) {
                    Some(meta) => messages.push(meta),
                    None if fetch.uid.is_none() => {} // an unsolicited flag update
                    None => tracing::warn!(mailbox = %mailbox, uid = ?fetch.uid, "server left out UID, size or date; message skipped"),
                }
            }
            messages.sort_by_key(|m| m.uid);
            messages.dedup_by_key(|m| m.uid);
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
            self.select(conn, mailbox, Some(validity), Mode::Read)?;
            // The size comes in the same answer as the structure: a message that vanishes
            // between two requests can never get a structure with a wrong size.
            let fetches = self.uid_fetch(
                conn,
                &set,
                "(UID RFC822.SIZE BODYSTRUCTURE)",
                MAX_RESPONSE_BYTES,
            )?;
            let mut out = Vec::with_capacity(uids.len());
            for f in fetches.iter() {
                let Some(uid) = f.uid.map(Uid).filter(|u| uids.contains(u)) else {
                    continue;
                };
                let Some(bs) = f.bodystructure() else {
                    continue;
                };
                let size = f.size.ok_or_else(|| {
                    StoreError::Protocol(format!(
                        "the server sent the BODYSTRUCTURE of UID {uid} without its RFC822.SIZE"
                    ))
                })?;
                out.push(MessageStructure {
                    uid,
                    size: u64::from(size),
                    body: convert::body_part(bs, MAX_NESTING),
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
        // Until the wire layer parses BINARY, only BODY.PEEK items are asked for, one
        // request per distinct item.
        let mut items: Vec<&PartItem> = wanted.iter().flat_map(|(_, i)| i).collect();
        items.sort_by_key(|i| format!("{i:?}"));
        items.dedup();
        let mut out = Vec::new();
        for item in items {
            let PartItem::Bytes {
                section,
                transfer: Transfer::Encoded,
                range,
            } = item
            else {
                return Err(StoreError::Unsupported(
                    "BINARY fetches are not implemented yet".into(),
                ));
            };
            let uids: Vec<Uid> = wanted
                .iter()
                .filter(|(_, i)| i.contains(item))
                .map(|(u, _)| *u)
                .collect();
            for (uid, bytes) in
                self.fetch_body_sections(mailbox, validity, &uids, section, *range)?
            {
                out.push((uid, item.clone(), PartValue::Bytes(bytes)));
            }
        }
        Ok(out)
    }

    fn find_by_message_id(
        &self,
        mailbox: &MailboxId,
        message_id: &str,
    ) -> StoreResult<(UidValidity, Vec<crate::store::MessageMeta>)> {
        let id = quote::quoted(message_id, "Message-ID")?;
        self.with_connection(Some(mailbox), Retry::Once, |conn| {
            let (validity, _) = self.select(conn, mailbox, None, Mode::Read)?;
            self.begin(conn);
            let found = conn
                .session
                .uid_search(format!("HEADER Message-ID {id}"))
                .map_err(from_imap)?;
            if found.is_empty() {
                return Ok((validity, Vec::new()));
            }
            let set = uid_set(&found.iter().map(|u| Uid(*u)).collect::<Vec<_>>());
            let fetches = self.uid_fetch(conn, &set, convert::LISTING_ITEMS, MAX_RESPONSE_BYTES)?;
            Ok((
                validity,
                fetches.iter().filter_map(convert::message_meta).collect(),
            ))
        })
    }

    fn search(&self, _mailbox: &MailboxId, _key: &SearchKey) -> StoreResult<Vec<Uid>> {
        // UID SEARCH comes with the wire layer, which sends its literals.
        Err(StoreError::Unsupported("search".into()))
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

    fn move_message(
        &self,
        from: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        to: &MailboxId,
    ) -> StoreResult<Option<(UidValidity, Uid)>> {
        self.move_one(from, validity, uid, to)
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
        if message.binary {
            return Err(StoreError::Unsupported(
                "a message with NUL bytes needs a literal8 APPEND, not implemented yet".into(),
            ));
        }
        let mut bytes = Vec::with_capacity(message.len as usize);
        std::io::Read::read_to_end(message.content, &mut bytes)
            .map_err(|e| StoreError::Invalid(format!("reading the message to store: {e}")))?;
        self.append_one(mailbox, &bytes, message.flags)
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            commands: self.counters.commands.load(Ordering::Relaxed),
            bytes_received: self.counters.bytes_received.load(Ordering::Relaxed),
            bytes_sent: self.counters.bytes_sent.load(Ordering::Relaxed),
        }
    }
}

/// The mailbox name LIST gave, without the quoted-string escapes (`\"`, `\\`) that the
/// imap-proto parser leaves in ([RFC 3501 §4.3](https://www.rfc-editor.org/rfc/rfc3501#section-4.3)).
fn unescape_quoted(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

fn is_extension(a: &imap_proto::types::NameAttribute<'_>, name: &str) -> bool {
    matches!(a, imap_proto::types::NameAttribute::Extension(e) if e.eq_ignore_ascii_case(name))
}

/// The RFC 6154 special use of a mailbox, lower-cased without the backslash.
fn special_use(a: &imap_proto::types::NameAttribute<'_>) -> Option<String> {
    use imap_proto::types::NameAttribute as A;
    Some(
        match a {
            A::All => "all",
            A::Archive => "archive",
            A::Drafts => "drafts",
            A::Flagged => "flagged",
            A::Junk => "junk",
            A::Sent => "sent",
            A::Trash => "trash",
            _ => return None,
        }
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_names_lose_their_quoting_escapes() {
        assert_eq!(unescape_quoted(r#"q\"uote"#), r#"q"uote"#);
        assert_eq!(unescape_quoted(r"back\\slash"), r"back\slash");
        assert_eq!(unescape_quoted("Re&AOc-us"), "Re&AOc-us");
    }

    #[test]
    fn backoff_doubles_up_to_five_seconds() {
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(2), Duration::from_millis(400));
        assert_eq!(backoff(10), Duration::from_secs(5));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn uid_sets_compress_runs() {
        let uids = [Uid(9), Uid(3), Uid(4), Uid(5), Uid(11), Uid(4)];
        assert_eq!(uid_set(&uids), "3:5,9,11");
        assert_eq!(uid_set(&[Uid(1)]), "1");
        assert_eq!(uid_set(&[]), "");
    }
}
