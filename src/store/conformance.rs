//! Conformance of the memory store with Dovecot 2.3.19: the same messages and the same
//! remote changes on a real Dovecot (through the real `ImapStore`) and on a `MemoryStore`,
//! compared through the `MailStore` trait alone, answer for answer.
//!
//! The fast core tests in `fs/tests*` run on the memory store; they mean something only as
//! long as it answers like the server. What is compared: the mailbox list; each listing
//! (UIDs, sizes, raw subjects, flags, INTERNALDATE, version); every BODYSTRUCTURE with its
//! size; the bytes of the whole message and of every section its structure has, whole and
//! in ranges (decoded bytes and sizes too once the IMAP store speaks BINARY), in
//! `conformance/sections.rs`; and the same changes made on both, by another client and by
//! the store itself, in `conformance/changes.rs`. Where the two cannot agree, the test
//! names why and checks that the reason still holds.

mod changes;
mod sections;
mod stress;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fixture::{Dovecot, DovecotOptions, TlsSession};

use self::changes::{compare_remote_changes, compare_store_writes};
use self::sections::compare_mailbox;
use super::imap::connection::ConnectConfig;
use super::imap::{Auth, ImapStore, Transport};
use super::memory::MemoryStore;
use super::{MailStore, MailboxId, MailboxListing, StoreResult, Uid};

/// The user the test logs in as, on both the independent client and the `ImapStore`.
const USER: &str = "alice";
/// The special-use mailboxes the fixture's Dovecot creates at first login.
const SPECIAL_USE: [(&str, &str); 5] = [
    ("Trash", "\\Trash"),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
];
/// Where the body corpus and the stress messages go.
const BODIES: &str = "Bodies";
const STRESS: &str = "Stress";
/// Per-command deadline: generous, so that a busy machine does not fail the test.
const TIMEOUT: Duration = Duration::from_secs(120);

/// One message to load into both stores.
struct Load {
    name: String,
    /// UTF-8 mailbox name, `/`-separated.
    mailbox: String,
    raw: Vec<u8>,
    flags: Vec<&'static str>,
}

/// The two stores side by side, the Dovecot behind the real one, and an independent client
/// that plays "another client" on Dovecot.
struct Pair {
    real: ImapStore,
    client: TlsSession,
    memory: MemoryStore,
    /// Declared after its clients, so dropped after them.
    dovecot: Dovecot,
    /// Each message's name, by mailbox and UID, for the report.
    names: HashMap<(MailboxId, Uid), String>,
    /// How many INTERNALDATEs were handed out; each message gets the next.
    dates_given: u64,
}

/// What was compared, and every disagreement found.
#[derive(Default)]
struct Report {
    messages: usize,
    sections: usize,
    absent_sections: usize,
    ranges: usize,
    decoded: usize,
    disagreements: Vec<String>,
}

impl Report {
    fn check<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, real: &T, memory: &T) {
        if real != memory {
            self.disagreements.push(format!(
                "{what}:\n  Dovecot: {real:?}\n  memory:  {memory:?}"
            ));
        }
    }
}

impl Pair {
    /// A fresh Dovecot with the fixture's default account, an `ImapStore` logged in to it,
    /// and a memory store with the same (empty) mailboxes.
    fn start() -> Pair {
        let dovecot = Dovecot::start(DovecotOptions::default()).expect("start Dovecot");
        // The first login creates the special-use mailboxes.
        let client = dovecot.client(USER).expect("independent client logs in");
        let real = ImapStore::connect(connect_config(&dovecot), 2).expect("ImapStore logs in");
        let memory = MemoryStore::new();
        memory.report_recent(true);
        for (name, special_use) in SPECIAL_USE {
            memory.add_mailbox(name, Some('/'), true, Some(special_use));
        }
        Pair {
            real,
            client,
            memory,
            dovecot,
            names: HashMap::new(),
            dates_given: 0,
        }
    }

    /// Creates `mailbox` (UTF-8) on both sides, as another client would; its parents are
    /// left to each side to make.
    fn create_mailbox(&mut self, mailbox: &str) {
        let created = fixture::ensure_mailbox(&mut self.client, mailbox);
        self.on_dovecot(&format!("CREATE {mailbox}"), created);
        self.memory
            .add_mailbox(&wire(mailbox), Some('/'), true, None);
    }

    /// The next INTERNALDATE: distinct whole seconds, in 2023.
    fn next_date(&mut self) -> SystemTime {
        self.dates_given += 1;
        UNIX_EPOCH + Duration::from_secs(1_680_000_000 + self.dates_given * 3_607)
    }

    /// Appends one message on both sides with the same flags and date (the independent
    /// client's APPEND, the memory store's `add_message`); both must give it the same UID.
    fn add(&mut self, load: &Load) -> Uid {
        let date = self.next_date();
        let appended = fixture::append_at(
            &mut self.client,
            &load.mailbox,
            &load.raw,
            &load.flags,
            date,
        );
        let real = self.on_dovecot(&format!("APPEND {}", load.name), appended);
        let memory = self
            .memory
            .add_message(&wire(&load.mailbox), &load.raw, &load.flags, date);
        assert_eq!(Uid(real), memory, "UID of {} on both sides", load.name);
        self.names.insert(
            (MailboxId::new(&wire(&load.mailbox)), memory),
            load.name.clone(),
        );
        memory
    }

    /// Runs one command on the independent client.
    fn client_command<E: std::fmt::Display>(
        &mut self,
        what: &str,
        command: impl FnOnce(&mut TlsSession) -> Result<(), E>,
    ) {
        let result = command(&mut self.client);
        self.on_dovecot(what, result);
    }

    /// The value of a request to Dovecot; on failure, a panic that shows the end of
    /// Dovecot's log, where the server says why.
    fn on_dovecot<T, E: std::fmt::Display>(&self, what: &str, result: Result<T, E>) -> T {
        result.unwrap_or_else(|e| {
            let log = self.dovecot.log();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!("{what}: {e}\nDovecot's log ends:\n{}", tail.join("\n"))
        })
    }

    fn name(&self, mailbox: &MailboxId, uid: Uid) -> String {
        self.names
            .get(&(mailbox.clone(), uid))
            .cloned()
            .unwrap_or_else(|| format!("UID {uid}"))
    }
}

/// How `run.rs` would connect to the fixture's IMAPS port as `USER`, trusting its CA.
fn connect_config(dovecot: &Dovecot) -> ConnectConfig {
    // A command, not the environment: erasing a variable is not for a threaded test run.
    let command = format!("printf %s '{}'", dovecot.password(USER));
    let secret = crate::secret::obtain(Some(&command), "IMAPFS_CONFORMANCE_UNUSED", "")
        .expect("password from a command");
    ConnectConfig {
        host: "127.0.0.1".into(),
        port: dovecot.imaps_port(),
        transport: Transport::Tls,
        user: USER.into(),
        secret,
        auth: Auth::Login,
        ca_file: Some(dovecot.ca_file().to_path_buf()),
        insecure: false,
        allow_plaintext: false,
        timeout: TIMEOUT,
        tls: Default::default(),
        plaintext_warned: Default::default(),
        compress: crate::store::imap::Compression::Always,
    }
}

/// The wire name of a UTF-8 mailbox name, as both stores key it.
fn wire(mailbox: &str) -> String {
    fixture::encode_mailbox_name(mailbox)
}

/// Everything to load: the fixture's samples (in their own mailboxes), the body corpus
/// and the stress messages.
fn corpus() -> Vec<Load> {
    let mut loads: Vec<Load> = fixture::sample_messages()
        .into_iter()
        .map(|s| Load {
            name: format!("sample {}", s.name),
            mailbox: s.mailbox,
            raw: s.raw,
            flags: s.flags,
        })
        .collect();
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bodies");
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .expect("read the body corpus")
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    assert!(files.len() >= 50, "the body corpus is missing");
    for path in files {
        loads.push(Load {
            name: format!("bodies/{}", path.file_name().unwrap().to_string_lossy()),
            mailbox: BODIES.into(),
            raw: std::fs::read(&path).expect("read a corpus message"),
            flags: vec!["\\Seen"],
        });
    }
    for (name, raw) in stress::stress_messages() {
        loads.push(Load {
            name: format!("stress {name}"),
            mailbox: STRESS.into(),
            raw,
            flags: vec!["\\Flagged", "$Stress"],
        });
    }
    loads
}

/// Compares `list_messages` and `mailbox_version` of one mailbox; returns both listings.
fn compare_listing(
    pair: &Pair,
    report: &mut Report,
    mailbox: &MailboxId,
) -> (MailboxListing, MailboxListing) {
    let real = pair.on_dovecot("list_messages", pair.real.list_messages(mailbox));
    let memory = pair.memory.list_messages(mailbox).expect("memory listing");
    for (r, m) in real.messages.iter().zip(&memory.messages) {
        let what = |field: &str| format!("{mailbox} {} {field}", pair.name(mailbox, r.uid));
        report.check(&what("size"), &r.size, &m.size);
        report.check(&what("INTERNALDATE"), &r.internal_date, &m.internal_date);
        report.check(&what("subject"), &r.subject, &m.subject);
        report.check(&what("flags"), &r.flags, &m.flags);
    }
    let uids = |l: &MailboxListing| l.messages.iter().map(|m| m.uid).collect::<Vec<_>>();
    report.check(&format!("{mailbox} UIDs"), &uids(&real), &uids(&memory));
    // UIDVALIDITY and HIGHEST MODSEQ values are each server's own; the rest must agree.
    let version = |v: Option<super::MailboxVersion>| v.map(|v| (v.uid_next, v.exists));
    report.check(
        &format!("{mailbox} listing version (UIDNEXT, EXISTS)"),
        &version(real.version),
        &version(memory.version),
    );
    let real_version = pair.on_dovecot("mailbox_version", pair.real.mailbox_version(mailbox));
    let memory_version = pair
        .memory
        .mailbox_version(mailbox)
        .expect("memory version");
    report.check(
        &format!("{mailbox} mailbox_version (UIDNEXT, EXISTS)"),
        &version(real_version),
        &version(memory_version),
    );
    (real, memory)
}

/// The mailbox lists, as sets: Dovecot lists a Maildir++ `LAYOUT=fs` tree in directory
/// order, which is no order at all, and the core sorts what it shows.
fn compare_mailbox_lists(pair: &Pair, report: &mut Report) -> Vec<MailboxId> {
    let sorted = |mut list: Vec<super::MailboxInfo>| {
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    };
    let real = sorted(pair.on_dovecot("list_mailboxes", pair.real.list_mailboxes()));
    let memory = sorted(pair.memory.list_mailboxes().expect("memory LIST"));
    report.check("list_mailboxes", &real, &memory);
    real.into_iter()
        .filter(|m| m.selectable)
        .map(|m| m.id)
        .collect()
}

/// The same call on both stores: (Dovecot's answer, the memory store's).
fn on_both<T>(pair: &Pair, call: impl Fn(&dyn MailStore) -> T) -> (T, T) {
    (call(&pair.real), call(&pair.memory))
}

/// A result reduced to what both stores must agree on: success, or the kind of error.
fn outcome<T>(result: &StoreResult<T>) -> Result<(), String> {
    match result {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("{e:?}")
            .split(['(', ' ', '{'])
            .next()
            .unwrap_or_default()
            .to_string()),
    }
}

#[test]
fn memory_store_answers_as_dovecot_does() {
    let mut pair = Pair::start();
    let loads = corpus();
    let mut mailboxes: BTreeSet<&str> = BTreeSet::new();
    for load in &loads {
        if load.mailbox != "INBOX" && mailboxes.insert(&load.mailbox) {
            pair.create_mailbox(&load.mailbox);
        }
    }
    for load in &loads {
        pair.add(load);
    }

    let mut report = Report::default();
    let real_caps = pair.real.capabilities();
    let memory_caps = pair.memory.capabilities();
    report.check(
        "capabilities (MOVE, UIDPLUS)",
        &(real_caps.move_command, real_caps.uidplus),
        &(memory_caps.move_command, memory_caps.uidplus),
    );
    for mailbox in compare_mailbox_lists(&pair, &mut report) {
        compare_mailbox(&pair, &mut report, &mailbox);
    }
    compare_remote_changes(&mut pair, &mut report);
    compare_store_writes(&mut pair, &mut report);
    compare_mailbox_lists(&pair, &mut report);

    eprintln!(
        "conformance: {} messages, {} sections and {} absent sections, {} ranges, {} decoded items compared",
        report.messages, report.sections, report.absent_sections, report.ranges, report.decoded
    );
    assert_eq!(report.messages, loads.len(), "every message was compared");
    assert!(
        report.disagreements.is_empty(),
        "the memory store disagrees with Dovecot {} times:\n{}",
        report.disagreements.len(),
        report.disagreements.join("\n")
    );
}

/// Dovecot shows a session that has a mailbox selected the messages that arrived since
/// only after its next command: the store selects again before it reads one of them.
#[test]
fn a_message_that_arrived_after_its_mailbox_was_selected_is_read_not_gone() {
    let dovecot = Dovecot::start(DovecotOptions::default()).expect("start Dovecot");
    let mut client = dovecot.client(USER).expect("independent client logs in");
    let raw = b"Subject: first\r\n\r\nfirst\r\n";
    fixture::append(&mut client, "INBOX", raw, &[]).expect("append");
    // One connection, so the read below is made where the listing selected INBOX.
    let store = ImapStore::connect(connect_config(&dovecot), 1).expect("ImapStore logs in");
    let inbox = MailboxId::new("INBOX");
    let listing = store.list_messages(&inbox).expect("listing");
    assert_eq!(listing.messages.len(), 1);
    let later = b"Subject: later\r\n\r\nlater\r\n";
    let uid = Uid(fixture::append(&mut client, "INBOX", later, &[]).expect("append"));
    let structures = store
        .body_structures(&inbox, listing.uid_validity, &[uid])
        .expect("structure");
    assert_eq!(structures.len(), 1, "the message read as gone");
    assert_eq!(structures[0].uid, uid);
    let flags = store.flags_now(&inbox, listing.uid_validity, uid);
    assert!(flags.is_ok(), "{flags:?}");
    // A search made there finds one that arrived since, too.
    let newest = b"Subject: newest\r\n\r\nnewest\r\n";
    let uid = Uid(fixture::append(&mut client, "INBOX", newest, &[]).expect("append"));
    let key = crate::search::SearchKey::Subject("newest".into());
    assert_eq!(store.search(&inbox, &key).expect("search"), [uid]);
}
