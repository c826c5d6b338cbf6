//! Conformance of the memory store with Dovecot 2.3.19: the same messages and the same
//! remote changes on a real Dovecot (through the real `ImapStore`) and on a `MemoryStore`,
//! compared through the `MailStore` trait alone, answer for answer.
//!
//! The fast core tests in `fs/tests*` run on the memory store; they mean something only as
//! long as it answers like the server. What is compared: the mailbox list; each listing
//! (UIDs, sizes, raw subjects, flags, INTERNALDATE, version); every BODYSTRUCTURE with its
//! size; and the bytes of the whole message and of every section its structure has, whole
//! and in ranges (decoded bytes and sizes too once the IMAP store speaks BINARY).

mod stress;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fixture::{Dovecot, DovecotOptions, TlsSession};

use super::imap::connection::ConnectConfig;
use super::imap::{Auth, ImapStore, Transport};
use super::memory::MemoryStore;
use super::{
    BodyPart, ByteRange, Flag, MailStore, MailboxId, MailboxListing, MessageStructure, PartItem,
    PartValue, Section, StoreResult, Transfer, Uid, UidValidity,
};

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
/// The mailbox the remote-change helpers are compared in.
const CHANGES: &str = "Changes";
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
    fn client_command(
        &mut self,
        what: &str,
        command: impl FnOnce(&mut TlsSession) -> ::imap::error::Result<()>,
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
    }
}

/// The wire name of a UTF-8 mailbox name, as both stores key it.
fn wire(mailbox: &str) -> String {
    fixture::encode_mailbox_name(mailbox)
}

/// Messages whose BODYSTRUCTURE today's IMAP store cannot read, with why. Their bytes are
/// still compared; their structure is not, and that they still fail is checked, so that an
/// entry that no longer applies is noticed.
const REAL_STORE_CANNOT_READ: &[(&str, &str)] = &[(
    "stress latin1-headers",
    "imap-proto 0.16 parses BODYSTRUCTURE strings as UTF-8: a parameter value with Latin-1 \
     bytes (charset=\"caf\\xe9\") fails to parse, the imap crate reports the session as \
     closed, and so does the retry; the new wire layer is to take strings as bytes",
)];

/// Why the IMAP store cannot read the structure of the message called `name`, if it cannot.
fn cannot_read(name: &str) -> Option<&'static str> {
    REAL_STORE_CANNOT_READ
        .iter()
        .find_map(|(n, why)| (*n == name).then_some(*why))
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

/// Every section number of a message with this structure that names a part, in the order
/// a walk meets them: `BODY[1]` of a single-part message is its body, the parts of a
/// multipart are numbered from 1 under its own number, and a message/rfc822 part's own
/// number is the encapsulated message, under which its body is numbered as a message's
/// ([RFC 3501 §6.4.5](https://www.rfc-editor.org/rfc/rfc3501#section-6.4.5)). Also, in
/// `absent`, a number just past each multipart's last part and just under each leaf,
/// which name nothing.
fn sections(body: &BodyPart, present: &mut Vec<Section>, absent: &mut Vec<Section>) {
    message_body(body, &Section::whole(), present, absent);
}

/// The sections of a message's body whose message is numbered `number`.
fn message_body(
    body: &BodyPart,
    number: &Section,
    present: &mut Vec<Section>,
    absent: &mut Vec<Section>,
) {
    match body {
        BodyPart::Multipart { children, .. } => {
            for (i, child) in (1..).zip(children) {
                part(child, number.child(i), present, absent);
            }
            absent.push(number.child(children.len() as u32 + 1));
        }
        single => part(single, number.child(1), present, absent),
    }
}

/// The sections of a body part numbered `number`, itself included.
fn part(body: &BodyPart, number: Section, present: &mut Vec<Section>, absent: &mut Vec<Section>) {
    present.push(number.clone());
    match body {
        BodyPart::Leaf { .. } => absent.push(number.child(1)),
        BodyPart::Multipart { children, .. } => {
            for (i, child) in (1..).zip(children) {
                part(child, number.child(i), present, absent);
            }
            absent.push(number.child(children.len() as u32 + 1));
        }
        BodyPart::Message { body, .. } => message_body(body, &number, present, absent),
    }
}

/// Whether `section` of a message with this structure is a leaf (not a multipart, not a
/// message/rfc822), i.e. one whose decoded form means something.
fn is_leaf(body: &BodyPart, section: &Section) -> bool {
    fn in_message(body: &BodyPart, rest: &[u32]) -> Option<bool> {
        match body {
            BodyPart::Multipart { children, .. } => {
                let (&first, rest) = rest.split_first()?;
                in_part(children.get(first.checked_sub(1)? as usize)?, rest)
            }
            single => match rest.split_first()? {
                (1, rest) => in_part(single, rest),
                _ => None,
            },
        }
    }
    fn in_part(body: &BodyPart, rest: &[u32]) -> Option<bool> {
        if rest.is_empty() {
            return Some(matches!(body, BodyPart::Leaf { .. }));
        }
        match body {
            BodyPart::Leaf { .. } => None,
            BodyPart::Multipart { children, .. } => {
                let (&first, rest) = rest.split_first()?;
                in_part(children.get(first.checked_sub(1)? as usize)?, rest)
            }
            BodyPart::Message { body, .. } => in_message(body, rest),
        }
    }
    in_message(body, &section.0).unwrap_or(false)
}

/// The ranges asked of a section `len` bytes long: its start, a long run from near the
/// start, across its end, at its end, and well past it.
fn ranges(len: u64) -> Vec<ByteRange> {
    let range = |offset, len| ByteRange { offset, len };
    vec![
        range(0, 10),
        range(5, 100_000),
        range(len.saturating_sub(3), 10),
        range(len, 10),
        range(len + 100, 10),
    ]
}

/// One bytes item.
fn bytes(section: &Section, transfer: Transfer, range: Option<ByteRange>) -> PartItem {
    PartItem::Bytes {
        section: section.clone(),
        transfer,
        range,
    }
}

/// Both stores' answers to the same `fetch_parts`, keyed by UID and item.
type Answers = HashMap<(Uid, PartItem), PartValue>;

fn fetch_both(
    pair: &Pair,
    mailbox: &MailboxId,
    validity: (UidValidity, UidValidity),
    wanted: &[(Uid, Vec<PartItem>)],
) -> (Answers, Answers) {
    let collect = |answers: Vec<(Uid, PartItem, PartValue)>| -> Answers {
        answers
            .into_iter()
            .map(|(uid, item, value)| ((uid, item), value))
            .collect()
    };
    let real = pair.on_dovecot(
        &format!("fetch_parts in {mailbox}"),
        pair.real.fetch_parts(mailbox, validity.0, wanted),
    );
    let memory = pair
        .memory
        .fetch_parts(mailbox, validity.1, wanted)
        .unwrap_or_else(|e| panic!("memory fetch_parts in {mailbox}: {e}"));
    (collect(real), collect(memory))
}

/// Compares the answers for every item wanted; an item one side left out is `None`.
fn compare_answers(
    pair: &Pair,
    report: &mut Report,
    mailbox: &MailboxId,
    wanted: &[(Uid, Vec<PartItem>)],
    (real, memory): &(Answers, Answers),
) {
    for (uid, items) in wanted {
        for item in items {
            let key = (*uid, item.clone());
            let (r, m) = (real.get(&key), memory.get(&key));
            if r != m {
                report.disagreements.push(format!(
                    "{mailbox} {} {item:?}: {}",
                    pair.name(mailbox, *uid),
                    describe_difference(r, m)
                ));
            }
        }
    }
}

/// Where two answers part, in a few readable bytes.
fn describe_difference(real: Option<&PartValue>, memory: Option<&PartValue>) -> String {
    match (real, memory) {
        (Some(PartValue::Bytes(r)), Some(PartValue::Bytes(m))) => {
            let at = r.iter().zip(m).take_while(|(a, b)| a == b).count();
            let around = |b: &[u8]| {
                let start = at.saturating_sub(20);
                String::from_utf8_lossy(&b[start..(at + 40).min(b.len())]).into_owned()
            };
            format!(
                "Dovecot has {} bytes, memory {}; first difference at {at}: Dovecot {:?}, memory {:?}",
                r.len(),
                m.len(),
                around(r),
                around(m)
            )
        }
        (r, m) => format!("Dovecot {r:?}, memory {m:?}"),
    }
}

/// Compares one mailbox's listing, structures and every section of every message.
fn compare_mailbox(pair: &Pair, report: &mut Report, mailbox: &MailboxId) {
    let (real, memory) = compare_listing(pair, report, mailbox);
    let validity = (real.uid_validity, memory.uid_validity);
    let uids: Vec<Uid> = real.messages.iter().map(|m| m.uid).collect();
    report.messages += uids.len();
    let (readable, unreadable): (Vec<Uid>, Vec<Uid>) = uids
        .iter()
        .partition(|&&uid| cannot_read(&pair.name(mailbox, uid)).is_none());
    let real_structures = pair.on_dovecot(
        &format!("body_structures in {mailbox}"),
        pair.real.body_structures(mailbox, validity.0, &readable),
    );
    let memory_structures = pair
        .memory
        .body_structures(mailbox, validity.1, &uids)
        .expect("memory BODYSTRUCTURE");
    let memory_by_uid: HashMap<Uid, &MessageStructure> =
        memory_structures.iter().map(|s| (s.uid, s)).collect();
    for r in &real_structures {
        let what = format!("{mailbox} {} structure and size", pair.name(mailbox, r.uid));
        report.check(&what, &Some(r), &memory_by_uid.get(&r.uid).copied());
    }
    report.check(
        &format!("{mailbox} structures answered"),
        &uids.len(),
        &memory_structures.len(),
    );
    // Where the IMAP store cannot read Dovecot's answer, the bytes are still compared,
    // section by section as the memory store numbers them.
    let mut structures: Vec<&MessageStructure> = real_structures.iter().collect();
    for uid in unreadable {
        let name = pair.name(mailbox, uid);
        if pair
            .real
            .body_structures(mailbox, validity.0, &[uid])
            .is_ok()
        {
            report.disagreements.push(format!(
                "{name}: the IMAP store now reads its BODYSTRUCTURE; take it out of \
                 REAL_STORE_CANNOT_READ so that its structure is compared"
            ));
        }
        structures.extend(memory_by_uid.get(&uid).copied());
    }

    // The whole message and every section, whole; sections that name nothing too.
    let mut whole: Vec<(Uid, Vec<PartItem>)> = Vec::new();
    let mut leaves: Vec<(Uid, Vec<Section>)> = Vec::new();
    for structure in structures {
        let (mut present, mut absent) = (Vec::new(), Vec::new());
        sections(&structure.body, &mut present, &mut absent);
        report.sections += present.len();
        report.absent_sections += absent.len();
        let mut items = vec![bytes(&Section::whole(), Transfer::Encoded, None)];
        items.extend(
            present
                .iter()
                .chain(&absent)
                .map(|s| bytes(s, Transfer::Encoded, None)),
        );
        whole.push((structure.uid, items));
        let leaf_sections = present
            .into_iter()
            .filter(|s| is_leaf(&structure.body, s))
            .collect();
        leaves.push((structure.uid, leaf_sections));
    }
    let answers = fetch_both(pair, mailbox, validity, &whole);
    compare_answers(pair, report, mailbox, &whole, &answers);

    // Ranges of each, sized by Dovecot's answer.
    let mut ranged: Vec<(Uid, Vec<PartItem>)> = Vec::new();
    for (uid, items) in &whole {
        let mut asked = Vec::new();
        for item in items {
            let PartItem::Bytes { section, .. } = item else {
                continue;
            };
            let Some(PartValue::Bytes(full)) = answers.0.get(&(*uid, item.clone())) else {
                continue;
            };
            for range in ranges(full.len() as u64) {
                asked.push(bytes(section, Transfer::Encoded, Some(range)));
            }
        }
        report.ranges += asked.len();
        ranged.push((*uid, asked));
    }
    let answers = fetch_both(pair, mailbox, validity, &ranged);
    compare_answers(pair, report, mailbox, &ranged, &answers);

    // Decoded bytes and sizes of every leaf, once the IMAP store can ask for them.
    if pair.real.capabilities().binary {
        let decoded: Vec<(Uid, Vec<PartItem>)> = leaves
            .into_iter()
            .map(|(uid, sections)| {
                let items: Vec<PartItem> = sections
                    .iter()
                    .flat_map(|s| {
                        [
                            bytes(s, Transfer::Decoded, None),
                            PartItem::DecodedSize(s.clone()),
                        ]
                    })
                    .collect();
                (uid, items)
            })
            .collect();
        report.decoded += decoded.iter().map(|(_, items)| items.len()).sum::<usize>();
        let answers = fetch_both(pair, mailbox, validity, &decoded);
        compare_answers(pair, report, mailbox, &decoded, &answers);
    }
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

/// The remote-change helpers against the same changes made by another client on Dovecot,
/// as `list_messages` shows them after each step.
fn compare_remote_changes(pair: &mut Pair, report: &mut Report) {
    let mailbox = MailboxId::new(CHANGES);
    pair.create_mailbox(CHANGES);
    let step = |pair: &mut Pair, report: &mut Report, what: &str| {
        let before = report.disagreements.len();
        let listings = compare_listing(pair, report, &mailbox);
        for line in &mut report.disagreements[before..] {
            *line = format!("after {what}: {line}");
        }
        listings
    };
    let message = |n: u32| Load {
        name: format!("change {n}"),
        mailbox: CHANGES.into(),
        raw: format!("Subject: change {n}\r\nMessage-ID: <{n}@conformance>\r\n\r\nbody {n}\r\n")
            .into_bytes(),
        flags: match n {
            1 => vec![],
            2 => vec!["$Label2", "\\Seen"],
            _ => vec!["\\Draft", "$Label1", "\\Answered"],
        },
    };
    for n in 1..=3 {
        pair.add(&message(n));
    }
    let before = step(pair, report, "add_message x3");

    // Looking a message up by Message-ID (to find an APPEND that may have landed).
    for id in ["<2@conformance>", "2@conformance", "<9@conformance>"] {
        let found = |result: StoreResult<(UidValidity, Vec<super::MessageMeta>)>| {
            result.map(|(_, metas)| metas)
        };
        let real = found(pair.real.find_by_message_id(&mailbox, id));
        let memory = found(pair.memory.find_by_message_id(&mailbox, id));
        report.check(
            &format!("find_by_message_id {id}"),
            &real.as_ref().ok(),
            &memory.as_ref().ok(),
        );
        report.check(
            &format!("find_by_message_id {id}"),
            &outcome(&real),
            &outcome(&memory),
        );
    }

    // Flags replaced: system flags in any case and order, keywords old and new.
    let flags = [
        "$Label1",
        "\\seen",
        "$New",
        "\\Flagged",
        "$Label2",
        "$label1",
    ];
    pair.client_command("SELECT", |c| c.select(CHANGES).map(drop));
    pair.client_command("UID STORE", |c| {
        c.uid_store("1", "FLAGS ($Label1 \\seen $New \\Flagged $Label2 $label1)")
            .map(drop)
    });
    pair.memory.set_flags(CHANGES, Uid(1), &flags);
    step(pair, report, "set_flags");
    pair.client_command("UID STORE", |c| c.uid_store("3", "FLAGS ()").map(drop));
    pair.memory.set_flags(CHANGES, Uid(3), &[]);
    step(pair, report, "set_flags to none");

    // The store's own flag change SELECTs the mailbox, which takes \\Recent from a message
    // another client (not in the mailbox) just added; a UID that is gone is refused.
    pair.client_command("SELECT", |c| c.select("INBOX").map(drop));
    pair.add(&message(5));
    let (real, memory) = step(
        pair,
        report,
        "add_message while another client is elsewhere",
    );
    let flags = [
        Flag::parse("$Trait").unwrap(),
        Flag::parse("\\seen").unwrap(),
    ];
    let changed = (
        pair.real
            .set_flags(&mailbox, real.uid_validity, Uid(1), &flags),
        MailStore::set_flags(&pair.memory, &mailbox, memory.uid_validity, Uid(1), &flags),
    );
    report.check(
        "MailStore::set_flags",
        &outcome(&changed.0),
        &outcome(&changed.1),
    );
    step(pair, report, "MailStore::set_flags");
    let gone = (
        pair.real
            .set_flags(&mailbox, real.uid_validity, Uid(99), &flags),
        MailStore::set_flags(&pair.memory, &mailbox, memory.uid_validity, Uid(99), &flags),
    );
    report.check(
        "MailStore::set_flags of a UID that is gone",
        &outcome(&gone.0),
        &outcome(&gone.1),
    );
    pair.client_command("SELECT", |c| c.select(CHANGES).map(drop));

    // One message expunged.
    pair.client_command("UID STORE", |c| {
        c.uid_store("2", "+FLAGS.SILENT (\\Deleted)").map(drop)
    });
    pair.client_command("UID EXPUNGE", |c| c.uid_expunge("2").map(drop));
    pair.memory.remove_message(CHANGES, Uid(2));
    step(pair, report, "remove_message");

    // The mailbox deleted and created again: new UIDVALIDITY, UIDs from 1.
    pair.client_command("SELECT", |c| c.select("INBOX").map(drop));
    pair.client_command("DELETE", |c| c.delete(CHANGES));
    pair.client_command("CREATE", |c| c.create(CHANGES));
    pair.memory.recreate_mailbox(CHANGES);
    let (real, memory) = step(pair, report, "recreate_mailbox");
    report.check(
        "recreate_mailbox: UIDVALIDITY changed on Dovecot",
        &true,
        &(real.uid_validity != before.0.uid_validity),
    );
    report.check(
        "recreate_mailbox: UIDVALIDITY changed in memory",
        &true,
        &(memory.uid_validity != before.1.uid_validity),
    );
    pair.add(&message(4));
    step(pair, report, "add_message after recreate_mailbox");
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

/// The numbering the comparison relies on, on a structure small enough to check by hand.
#[test]
fn sections_are_numbered_as_rfc_3501_numbers_them() {
    use super::{PartHeader, TransferEncoding};
    let leaf = || BodyPart::Leaf {
        header: PartHeader::default(),
        encoding: TransferEncoding::SevenBit,
        octets: 0,
    };
    let message = |body: BodyPart| BodyPart::Message {
        header: PartHeader::default(),
        encoding: TransferEncoding::SevenBit,
        octets: 0,
        subject: None,
        body: Box::new(body),
    };
    let multipart = |children: Vec<BodyPart>| BodyPart::Multipart {
        header: PartHeader::default(),
        children,
    };
    let root = multipart(vec![
        leaf(),
        message(multipart(vec![leaf(), leaf()])),
        message(leaf()),
    ]);
    let numbers = |body: &BodyPart| {
        let (mut present, mut absent) = (Vec::new(), Vec::new());
        sections(body, &mut present, &mut absent);
        let show = |list: Vec<Section>| list.iter().map(ToString::to_string).collect::<Vec<_>>();
        (show(present), show(absent))
    };
    let (present, absent) = numbers(&root);
    assert_eq!(present, ["1", "2", "2.1", "2.2", "3", "3.1"]);
    assert_eq!(absent, ["1.1", "2.1.1", "2.2.1", "2.3", "3.1.1", "4"]);
    let leaves: Vec<bool> = ["1", "2", "2.1", "3", "3.1", "4", "1.1"]
        .iter()
        .map(|s| Section(s.split('.').map(|n| n.parse().unwrap()).collect()))
        .map(|s| is_leaf(&root, &s))
        .collect();
    assert_eq!(leaves, [true, false, true, false, true, false, false]);
    // A single-part message's body is part 1; a top-level message/rfc822 nests under it.
    assert_eq!(numbers(&leaf()), (vec!["1".into()], vec!["1.1".into()]));
    let (present, _) = numbers(&message(multipart(vec![leaf()])));
    assert_eq!(present, ["1", "1.1"]);
}
