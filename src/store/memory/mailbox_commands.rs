//! Dovecot 2.3's mailbox commands for the memory store: CREATE, DELETE, RENAME, STORE, MOVE,
//! EXPUNGE and APPEND change the in-memory account as Dovecot with Maildir `LAYOUT=fs` and
//! separator `/` changes a real one (the answers were checked against it). Refusals are
//! mapped to errors as the IMAP store maps their response codes: `[CANNOT]` is `Invalid`,
//! `[ALREADYEXISTS]` is `AlreadyExists`, `[NONEXISTENT]` and `[TRYCREATE]` are "no such
//! mailbox" refusals, and any other `NO` is `Refused`.

use std::time::SystemTime;

use super::{canonical_name, validate_name, Mailbox, Message, State, INBOX};
use crate::store::{ConditionalStore, Flag, MailboxId, StoreError, StoreResult, Uid, UidValidity};

/// The hierarchy separator of the inbox namespace.
const SEPARATOR: char = '/';

fn refused(text: impl Into<String>) -> StoreError {
    StoreError::Refused(text.into())
}

/// `NO [CANNOT]`.
fn cannot(text: &str) -> StoreError {
    StoreError::Invalid(format!("[CANNOT] {text}"))
}

/// `NO [ALREADYEXISTS]`.
fn already_exists(text: &str) -> StoreError {
    StoreError::AlreadyExists(format!("[ALREADYEXISTS] {text}"))
}

/// `NO [NONEXISTENT]` (DELETE, RENAME) and `NO [TRYCREATE]` (APPEND, MOVE).
fn no_such_mailbox(code: &str, name: &str) -> StoreError {
    refused(format!(
        "no such mailbox: [{code}] Mailbox doesn't exist: {name}"
    ))
}

/// Dovecot's checks on a name to create or rename to.
fn check_new_name(name: &str) -> StoreResult<()> {
    if name.starts_with(SEPARATOR) {
        return Err(cannot(
            "Invalid mailbox name: Begins with hierarchy separator",
        ));
    }
    if name.contains("//") {
        return Err(cannot(
            "Invalid mailbox name: Has adjacent hierarchy separators",
        ));
    }
    Ok(())
}

impl State {
    fn has_children(&self, name: &str) -> bool {
        let prefix = format!("{name}{SEPARATOR}");
        self.mailboxes
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(key, _)| key.starts_with(&prefix))
    }

    /// A mailbox messages can be put in, or Dovecot's `NO [TRYCREATE]`.
    fn destination(&mut self, name: &MailboxId) -> StoreResult<&mut Mailbox> {
        validate_name(name)?;
        match self
            .mailboxes
            .get_mut(canonical_name(name.as_str()).as_str())
        {
            Some(mailbox) if mailbox.selectable => Ok(mailbox),
            _ => Err(no_such_mailbox("TRYCREATE", name.as_str())),
        }
    }

    /// `CREATE`: missing parents become `\Noselect`; a trailing separator makes only a
    /// `\Noselect` directory; creating over a `\Noselect` one makes it selectable.
    pub(super) fn create(&mut self, name: &MailboxId) -> StoreResult<()> {
        validate_name(name)?;
        let canonical = canonical_name(name.as_str());
        check_new_name(&canonical)?;
        let (target, directory_only) = match canonical.strip_suffix(SEPARATOR) {
            Some(target) => (target, true),
            None => (canonical.as_str(), false),
        };
        if let Some(existing) = self.mailboxes.get(target) {
            if existing.selectable || directory_only {
                return Err(already_exists("Mailbox already exists"));
            }
        }
        self.create_ancestors(target, SEPARATOR);
        self.create_mailbox(target, Some(SEPARATOR), !directory_only, None);
        Ok(())
    }

    /// `DELETE`: a mailbox with children keeps them and becomes `\Noselect`; a `\Noselect`
    /// one with children cannot go.
    pub(super) fn delete(&mut self, name: &MailboxId) -> StoreResult<()> {
        validate_name(name)?;
        let canonical = canonical_name(name.as_str());
        if canonical == INBOX {
            return Err(refused("INBOX can't be deleted"));
        }
        let has_children = self.has_children(&canonical);
        let Some(mailbox) = self.mailboxes.get_mut(canonical.as_str()) else {
            // The IMAP store says which mailbox the server found missing.
            return Err(StoreError::NoSuchMailbox(name.clone()));
        };
        // imapfs's DELETE keeps a mailbox that holds messages (`ImapStore::delete`).
        if !mailbox.messages.is_empty() {
            return Err(StoreError::NotEmpty(format!(
                "{} holds messages",
                name.as_str()
            )));
        }
        match (has_children, mailbox.selectable) {
            (true, false) => Err(refused("Mailbox has children, delete them first")),
            (true, true) => {
                mailbox.selectable = false;
                mailbox.messages.clear();
                Ok(())
            }
            (false, _) => {
                self.mailboxes.remove(canonical.as_str());
                Ok(())
            }
        }
    }

    /// `RENAME`: the mailbox and everything under it move, keeping UIDVALIDITY and
    /// messages; missing parents of the new name become `\Noselect`.
    pub(super) fn rename(&mut self, from: &MailboxId, to: &MailboxId) -> StoreResult<()> {
        validate_name(from)?;
        validate_name(to)?;
        let from_name = canonical_name(from.as_str());
        let to_name = canonical_name(to.as_str());
        check_new_name(&to_name)?;
        if from_name == INBOX {
            return Err(cannot("Renaming INBOX isn't supported"));
        }
        if !self.mailboxes.contains_key(from_name.as_str()) {
            return Err(no_such_mailbox("NONEXISTENT", from.as_str()));
        }
        if self.mailboxes.contains_key(to_name.as_str()) {
            return Err(already_exists("Target mailbox already exists"));
        }
        let inferior_prefix = format!("{from_name}{SEPARATOR}");
        if to_name.starts_with(&inferior_prefix) {
            return Err(refused("Can't rename mailbox under its own child"));
        }
        let moving: Vec<String> = self
            .mailboxes
            .keys()
            .filter(|key| **key == from_name || key.starts_with(&inferior_prefix))
            .cloned()
            .collect();
        for old in moving {
            if let Some(mut mailbox) = self.mailboxes.remove(&old) {
                // Dovecot ties special use to the configured name, not to the mailbox.
                mailbox.special_use = None;
                let new = format!("{to_name}{}", &old[from_name.len()..]);
                self.mailboxes.insert(new, mailbox);
            }
        }
        self.create_ancestors(&to_name, SEPARATOR);
        Ok(())
    }

    /// The read-write `SELECT` the IMAP store makes before it changes a mailbox: it takes
    /// the mailbox's `\Recent` flags, whatever comes next.
    fn select_for_write(&mut self, name: &MailboxId, validity: UidValidity) -> StoreResult<()> {
        self.selected(name, validity)?;
        if let Some(mailbox) = self
            .mailboxes
            .get_mut(canonical_name(name.as_str()).as_str())
        {
            mailbox.claim_recent();
        }
        Ok(())
    }

    /// `UID STORE uid FLAGS.SILENT (...)`. Dovecot says OK to a UID that is gone, but the
    /// IMAP store looks for it first (`UID SEARCH`) and answers "no such message".
    pub(super) fn store_flags(
        &mut self,
        name: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        flags: &[Flag],
    ) -> StoreResult<()> {
        self.select_for_write(name, validity)?;
        self.message(name, validity, uid)?;
        let canonical = canonical_name(name.as_str());
        if let Some(mailbox) = self.mailboxes.get_mut(canonical.as_str()) {
            let flags: Vec<&str> = flags.iter().map(Flag::as_str).collect();
            mailbox.replace_flags(uid, &flags);
        }
        Ok(())
    }

    /// `UID STORE uid +FLAGS.SILENT (...)` and `-FLAGS.SILENT (...)`: the other flags stay.
    pub(super) fn add_remove_flags(
        &mut self,
        name: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        add: &[Flag],
        remove: &[Flag],
    ) -> StoreResult<()> {
        self.select_for_write(name, validity)?;
        let old = self.message(name, validity, uid)?.flags.clone();
        let gone = |f: &String| remove.iter().any(|r| r.as_str().eq_ignore_ascii_case(f));
        let mut flags: Vec<String> = old.into_iter().filter(|f| !gone(f)).collect();
        for flag in add {
            if !flags.iter().any(|f| f.eq_ignore_ascii_case(flag.as_str())) {
                flags.push(flag.as_str().to_string());
            }
        }
        let canonical = canonical_name(name.as_str());
        if let Some(mailbox) = self.mailboxes.get_mut(canonical.as_str()) {
            mailbox.replace_flags(uid, &flags);
        }
        Ok(())
    }

    /// `UID STORE uid (UNCHANGEDSINCE since) +FLAGS.SILENT (...)` and `-FLAGS.SILENT`:
    /// `MODIFIED` if the message changed after `since`, as Dovecot answers (an OK).
    pub(super) fn add_remove_flags_unchanged_since(
        &mut self,
        name: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        add: &[Flag],
        remove: &[Flag],
        since: u64,
    ) -> StoreResult<ConditionalStore> {
        self.select_for_write(name, validity)?;
        if self.message(name, validity, uid)?.modseq > since {
            return Ok(ConditionalStore::Modified);
        }
        self.add_remove_flags(name, validity, uid, add, remove)?;
        Ok(ConditionalStore::Stored(Some(
            self.message(name, validity, uid)?.modseq,
        )))
    }

    /// Take out a message that must exist (the IMAP store checks with `UID SEARCH` first).
    fn take_message(
        &mut self,
        name: &MailboxId,
        validity: UidValidity,
        uid: Uid,
    ) -> StoreResult<Message> {
        self.message(name, validity, uid)?;
        self.mailboxes
            .get_mut(canonical_name(name.as_str()).as_str())
            .and_then(|mailbox| mailbox.remove(uid))
            .ok_or_else(|| StoreError::NoSuchMessage {
                mailbox: name.clone(),
                uid,
            })
    }

    /// `UID MOVE` (or COPY + EXPUNGE with UIDPLUS): flags and internal date go along; the
    /// target's UIDVALIDITY and the new UID are known only with UIDPLUS (COPYUID).
    pub(super) fn move_one(
        &mut self,
        from: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        to: &MailboxId,
    ) -> StoreResult<Option<(UidValidity, Uid)>> {
        validate_name(to)?;
        let capabilities = self.capabilities;
        if !capabilities.move_command && !capabilities.uidplus {
            return Err(StoreError::Unsupported(
                "neither MOVE nor UIDPLUS: a message cannot be moved safely".into(),
            ));
        }
        self.select_for_write(from, validity)?;
        self.message(from, validity, uid)?;
        self.destination(to)?;
        let message = self.take_message(from, validity, uid)?;
        let target = self.destination(to)?;
        let new_uid = target.insert(message);
        Ok(capabilities.uidplus.then_some((target.validity, new_uid)))
    }

    /// `UID COPY` of one message, from its mailbox selected read-only: the copy keeps
    /// the flags and INTERNALDATE, and is `\Recent` in the target.
    pub(super) fn copy_one(
        &mut self,
        from: &MailboxId,
        validity: UidValidity,
        uid: Uid,
        to: &MailboxId,
    ) -> StoreResult<Option<(UidValidity, Uid)>> {
        validate_name(to)?;
        self.selected(from, validity)?;
        let source = self.message(from, validity, uid)?;
        let copy = Message::new(&source.raw, source.flags.clone(), source.internal_date);
        let uidplus = self.capabilities.uidplus;
        let target = self.destination(to)?;
        let new_uid = target.insert(copy);
        Ok(uidplus.then_some((target.validity, new_uid)))
    }

    /// `UID EXPUNGE` of one message; without UIDPLUS the IMAP store refuses.
    pub(super) fn expunge_one(
        &mut self,
        name: &MailboxId,
        validity: UidValidity,
        uid: Uid,
    ) -> StoreResult<()> {
        if !self.capabilities.uidplus {
            return Err(StoreError::Unsupported(
                "no UIDPLUS: a plain EXPUNGE would also erase other clients' deleted messages"
                    .into(),
            ));
        }
        self.select_for_write(name, validity)?;
        self.take_message(name, validity, uid).map(drop)
    }

    /// `APPEND`: the message is kept as Dovecot keeps it, with the current time as its
    /// internal date; UIDVALIDITY and UID are known only with UIDPLUS (APPENDUID).
    /// `binary`: sent as a `literal8`, NUL bytes and all.
    pub(super) fn append_one(
        &mut self,
        name: &MailboxId,
        raw: &[u8],
        flags: &[Flag],
        internal_date: Option<SystemTime>,
        binary: bool,
    ) -> StoreResult<Option<(UidValidity, Uid)>> {
        validate_name(name)?;
        let uidplus = self.capabilities.uidplus;
        if binary && !self.capabilities.binary {
            return Err(StoreError::Unsupported("no BINARY: no literal8".into()));
        }
        let mailbox = self.destination(name)?;
        if raw.is_empty() {
            return Err(refused("Can't save a zero byte message"));
        }
        let flags = flags.iter().map(|f| f.as_str().to_string()).collect();
        let date = internal_date.unwrap_or_else(SystemTime::now);
        let message = if binary {
            Message::new_binary(raw, flags, date)
        } else {
            Message::new(raw, flags, date)
        };
        let size = message.raw.len() as u64;
        let uid = mailbox.insert(message);
        let validity = mailbox.validity;
        self.bytes_sent += size;
        Ok(uidplus.then_some((validity, uid)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use crate::store::memory::{MemoryStore, Op};
    use crate::store::{Capabilities, MailStore, NewMessage, Section, Transfer};

    use super::*;

    fn name(text: &str) -> MailboxId {
        MailboxId::new(text)
    }

    fn listing(store: &MemoryStore) -> Vec<(String, bool)> {
        store
            .list_mailboxes()
            .unwrap()
            .into_iter()
            .map(|m| (m.id.to_string(), m.selectable))
            .collect()
    }

    /// `CREATE` of a wire name, counted like the trait's call (the trait takes paths, so
    /// wire spellings such as a trailing separator are reached here).
    fn create_wire(store: &MemoryStore, wire: &str) -> StoreResult<()> {
        let mut state = store.state.lock();
        state.begin(Op::CreateMailbox)?;
        state.create(&name(wire))
    }

    /// `RENAME` between wire names.
    fn rename_wire(store: &MemoryStore, from: &str, to: &str) -> StoreResult<()> {
        let mut state = store.state.lock();
        state.begin(Op::RenameMailbox)?;
        state.rename(&name(from), &name(to))
    }

    /// A message to append from `bytes`, without flags or date.
    fn new_message(bytes: &'static [u8]) -> NewMessage<'static> {
        let content = Box::leak(Box::new(std::io::Cursor::new(bytes)));
        NewMessage {
            content,
            len: bytes.len() as u64,
            binary: false,
            flags: &[],
            internal_date: None,
        }
    }

    fn path(levels: &[&str]) -> Vec<String> {
        levels.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn the_trait_takes_paths_and_encodes_them_as_the_imap_store_does() {
        let store = MemoryStore::new();
        let id = store
            .create_mailbox(&path(&["Re\u{e7}us", "2023"]))
            .unwrap();
        assert_eq!(id, name("Re&AOc-us/2023"));
        assert!(listing(&store).contains(&("Re&AOc-us/2023".to_string(), true)));
        let infos = store.list_mailboxes().unwrap();
        let info = infos.iter().find(|i| i.id == id).unwrap();
        assert_eq!(info.path, path(&["Re\u{e7}us", "2023"]));
        let renamed = store.rename_mailbox(&id, &path(&["INBOX", "old"])).unwrap();
        assert_eq!(renamed, name("INBOX/old"));
        for bad in [path(&["a/b"]), path(&["*"]), path(&["x%"]), path(&[""])] {
            assert!(is_invalid(store.create_mailbox(&bad)), "{bad:?}");
        }
    }

    fn entries(list: &[(&str, bool)]) -> Vec<(String, bool)> {
        list.iter().map(|(n, s)| (n.to_string(), *s)).collect()
    }

    fn flags(list: &[&str]) -> Vec<Flag> {
        list.iter().map(|f| Flag::parse(f).unwrap()).collect()
    }

    fn is_refused<T: std::fmt::Debug>(result: StoreResult<T>, text: &str) -> bool {
        matches!(result, Err(StoreError::Refused(message)) if message.contains(text))
    }

    fn is_invalid<T: std::fmt::Debug>(result: StoreResult<T>) -> bool {
        matches!(result, Err(StoreError::Invalid(_)))
    }

    fn exists_already<T: std::fmt::Debug>(result: StoreResult<T>) -> bool {
        matches!(result, Err(StoreError::AlreadyExists(_)))
    }

    #[test]
    fn create_makes_parents_noselect() {
        let store = MemoryStore::new();
        create_wire(&store, "a/b/c").unwrap();
        create_wire(&store, "x/").unwrap();
        assert_eq!(
            listing(&store),
            entries(&[
                ("INBOX", true),
                ("a", false),
                ("a/b", false),
                ("a/b/c", true),
                ("x", false)
            ])
        );
        // Creating over a \Noselect parent makes it a mailbox.
        create_wire(&store, "a").unwrap();
        assert!(listing(&store).contains(&("a".to_string(), true)));
        assert!(store.list_messages(&name("a")).unwrap().messages.is_empty());
        assert!(exists_already(create_wire(&store, "a")));
        assert!(exists_already(create_wire(&store, "x/")));
        assert!(exists_already(create_wire(&store, "inbox")));
        for bad in ["/x", "q//r", "", "a\r\nb", "caf\u{e9}"] {
            assert!(is_invalid(create_wire(&store, bad)), "{bad:?}");
        }
        // The inbox keeps its spelling as a parent.
        create_wire(&store, "inbox/sub").unwrap();
        assert!(listing(&store).contains(&("INBOX/sub".to_string(), true)));
        assert_eq!(store.count(Op::CreateMailbox), 12);
    }

    #[test]
    fn delete_follows_dovecot() {
        let store = MemoryStore::new();
        create_wire(&store, "p/q").unwrap();
        create_wire(&store, "p").unwrap();
        let uid = store.add_message("p", b"Subject: x\r\n\r\n", &[], UNIX_EPOCH);
        assert!(matches!(
            store.delete_mailbox(&name("nope")),
            Err(StoreError::NoSuchMailbox(_))
        ));
        assert!(is_refused(store.delete_mailbox(&name("INBOX")), "INBOX"));
        // imapfs's DELETE keeps a mailbox that holds a message.
        let kept = store.delete_mailbox(&name("p"));
        assert!(matches!(kept, Err(StoreError::NotEmpty(_))), "{kept:?}");
        store.remove_message("p", uid);
        // A mailbox with children becomes \Noselect.
        store.delete_mailbox(&name("p")).unwrap();
        assert_eq!(
            listing(&store),
            entries(&[("INBOX", true), ("p", false), ("p/q", true)])
        );
        assert!(is_refused(store.delete_mailbox(&name("p")), "has children"));
        store.delete_mailbox(&name("p/q")).unwrap();
        store.delete_mailbox(&name("p")).unwrap();
        assert_eq!(listing(&store), entries(&[("INBOX", true)]));
    }

    #[test]
    fn rename_moves_the_subtree() {
        let store = MemoryStore::new();
        store.add_mailbox("Trash", Some('/'), true, Some("\\Trash"));
        create_wire(&store, "x/y").unwrap();
        let uid = store.add_message("x/y", b"Subject: kept\r\n\r\nbody\r\n", &[], UNIX_EPOCH);
        let validity = store.uid_validity("x/y");
        rename_wire(&store, "x", "z/w").unwrap();
        assert_eq!(
            listing(&store),
            entries(&[
                ("INBOX", true),
                ("Trash", true),
                ("z", false),
                ("z/w", false),
                ("z/w/y", true)
            ])
        );
        // Messages and UIDVALIDITY move along.
        assert_eq!(store.uid_validity("z/w/y"), validity);
        let body = store
            .fetch_section(
                &name("z/w/y"),
                validity,
                uid,
                &Section(vec![1]),
                Transfer::Encoded,
                None,
            )
            .unwrap();
        assert_eq!(body, b"body\r\n");
        rename_wire(&store, "Trash", "Old").unwrap();
        let old = store.list_mailboxes().unwrap();
        assert_eq!(old[1].id, name("Old"));
        assert_eq!(old[1].special_use, None);
        assert!(is_refused(
            rename_wire(&store, "nope", "q"),
            "no such mailbox"
        ));
        assert!(exists_already(rename_wire(&store, "z", "Old")));
        assert!(is_refused(rename_wire(&store, "z", "z/new"), "own child"));
        assert!(is_invalid(rename_wire(&store, "Inbox", "q")));
        assert!(is_invalid(rename_wire(&store, "z", "/q")));
    }

    #[test]
    fn set_flags_replaces_and_refuses_missing_uids() {
        let store = MemoryStore::new();
        let uid = store.add_message(INBOX, b"Subject: x\r\n\r\n", &["\\Seen"], UNIX_EPOCH);
        let validity = store.uid_validity(INBOX);
        // The inherent `set_flags` is the "another client" helper; this is the trait's.
        MailStore::set_flags(
            &store,
            &name(INBOX),
            validity,
            uid,
            &flags(&["\\Flagged", "$Work"]),
        )
        .unwrap();
        let listing = store.list_messages(&name(INBOX)).unwrap();
        assert_eq!(listing.messages[0].flags, ["\\Flagged", "$Work"]);
        // A UID that is gone: Dovecot would say OK, but the IMAP store looks first.
        assert!(matches!(
            MailStore::set_flags(&store, &name(INBOX), validity, Uid(99), &flags(&["\\Seen"])),
            Err(StoreError::NoSuchMessage { uid: Uid(99), .. })
        ));
        assert!(matches!(
            MailStore::set_flags(&store, &name(INBOX), UidValidity(0), uid, &[]),
            Err(StoreError::UidValidityChanged { .. })
        ));
        assert_eq!(store.count(Op::SetFlags), 3);
    }

    #[test]
    fn move_keeps_flags_and_reports_the_new_uid() {
        let store = MemoryStore::new();
        create_wire(&store, "Archive").unwrap();
        create_wire(&store, "Dir/Sub").unwrap();
        let date = UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        let uid = store.add_message(INBOX, b"Subject: m\r\n\r\nx\r\n", &["\\Seen"], date);
        let validity = store.uid_validity(INBOX);
        let inbox = name(INBOX);
        assert!(is_refused(
            store.move_message(&inbox, validity, uid, &name("nope")),
            "TRYCREATE"
        ));
        assert!(is_refused(
            store.move_message(&inbox, validity, uid, &name("Dir")),
            "TRYCREATE"
        ));
        let moved = store
            .move_message(&inbox, validity, uid, &name("Archive"))
            .unwrap();
        assert_eq!(moved, Some((store.uid_validity("Archive"), Uid(1))));
        assert!(store.list_messages(&inbox).unwrap().messages.is_empty());
        let archive = store.list_messages(&name("Archive")).unwrap();
        assert_eq!(archive.messages[0].flags, ["\\Seen"]);
        assert_eq!(archive.messages[0].internal_date, date);
        assert!(matches!(
            store.move_message(&inbox, validity, uid, &name("Archive")),
            Err(StoreError::NoSuchMessage { .. })
        ));
        // Moving within one mailbox gives a new UID.
        let archive_validity = archive.uid_validity;
        let again = store
            .move_message(&name("Archive"), archive_validity, Uid(1), &name("Archive"))
            .unwrap();
        assert_eq!(again, Some((archive_validity, Uid(2))));
    }

    #[test]
    fn capabilities_decide_what_is_possible() {
        let store = MemoryStore::new();
        assert_eq!(
            store.capabilities(),
            Capabilities {
                move_command: true,
                uidplus: true,
                binary: true,
            }
        );
        let uid = store.add_message(INBOX, b"Subject: m\r\n\r\n", &[], UNIX_EPOCH);
        let validity = store.uid_validity(INBOX);
        let inbox = name(INBOX);
        store.set_capabilities(Capabilities {
            move_command: true,
            uidplus: false,
            binary: true,
        });
        assert!(matches!(
            store.expunge_message(&inbox, validity, uid),
            Err(StoreError::Unsupported(_))
        ));
        // MOVE without UIDPLUS works but does not tell the new UID.
        create_wire(&store, "Other").unwrap();
        assert_eq!(
            store
                .move_message(&inbox, validity, uid, &name("Other"))
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .append(&inbox, new_message(b"Subject: a\r\n\r\n"))
                .unwrap(),
            None
        );
        store.set_capabilities(Capabilities::default());
        let other = store.uid_validity("Other");
        assert!(matches!(
            store.move_message(&name("Other"), other, Uid(1), &inbox),
            Err(StoreError::Unsupported(_))
        ));
    }

    #[test]
    fn expunge_removes_exactly_one_message() {
        let store = MemoryStore::new();
        let first = store.add_message(INBOX, b"Subject: 1\r\n\r\n", &[], UNIX_EPOCH);
        let second = store.add_message(INBOX, b"Subject: 2\r\n\r\n", &[], UNIX_EPOCH);
        let validity = store.uid_validity(INBOX);
        store
            .expunge_message(&name(INBOX), validity, first)
            .unwrap();
        let left: Vec<Uid> = store
            .list_messages(&name(INBOX))
            .unwrap()
            .messages
            .iter()
            .map(|m| m.uid)
            .collect();
        assert_eq!(left, [second]);
        assert!(matches!(
            store.expunge_message(&name(INBOX), validity, first),
            Err(StoreError::NoSuchMessage { .. })
        ));
    }

    #[test]
    fn append_stores_as_dovecot_does() {
        let store = MemoryStore::new();
        let inbox = name(INBOX);
        let before = SystemTime::now();
        let seen = flags(&["\\Seen", "$x"]);
        let mut content = std::io::Cursor::new(&b"Subject: new\n\nbody\n"[..]);
        let appended = store.append(
            &inbox,
            NewMessage {
                content: &mut content,
                len: 19,
                binary: false,
                flags: &seen,
                internal_date: None,
            },
        );
        let (validity, uid) = appended.unwrap().unwrap();
        assert_eq!((validity, uid), (store.uid_validity(INBOX), Uid(1)));
        let listing = store.list_messages(&inbox).unwrap();
        let meta = &listing.messages[0];
        assert_eq!(meta.flags, ["\\Seen", "$x"]);
        assert_eq!(meta.subject.as_deref(), Some(&b"new"[..]));
        assert_eq!(meta.size, 22); // line breaks became CRLF
        assert!(meta.internal_date + std::time::Duration::from_secs(1) >= before);
        assert_eq!(store.stats().bytes_sent, 22);
        assert!(is_refused(
            store.append(&inbox, new_message(b"")),
            "zero byte"
        ));
        assert!(is_refused(
            store.append(&name("nope"), new_message(b"x")),
            "TRYCREATE"
        ));
        create_wire(&store, "dir/").unwrap();
        assert!(is_refused(
            store.append(&name("dir"), new_message(b"x")),
            "TRYCREATE"
        ));
        // A date given is kept, to the second.
        let date = UNIX_EPOCH + std::time::Duration::from_millis(1_600_000_000_500);
        let mut content = std::io::Cursor::new(&b"Subject: dated\r\n\r\n"[..]);
        store
            .append(
                &inbox,
                NewMessage {
                    content: &mut content,
                    len: 18,
                    binary: false,
                    flags: &[],
                    internal_date: Some(date),
                },
            )
            .unwrap();
        let listing = store.list_messages(&inbox).unwrap();
        assert_eq!(
            listing.messages[1].internal_date,
            UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000)
        );
        assert_eq!(store.count(Op::Append), 5);
    }

    #[test]
    fn write_failures_can_be_injected() {
        let store = MemoryStore::new();
        store.fail_next(Op::CreateMailbox, || StoreError::OverQuota("full".into()));
        assert!(matches!(
            create_wire(&store, "x"),
            Err(StoreError::OverQuota(_))
        ));
        assert_eq!(listing(&store).len(), 1);
        create_wire(&store, "x").unwrap();
        assert_eq!(store.count(Op::CreateMailbox), 2);
        assert_eq!(store.stats().commands, 3); // two CREATEs and one LIST
    }
}
