//! Offline changes against the in-memory store: what each shows at once, what the replay
//! sends, and what conflicts, refusals and crashes give.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::super::journal::{Change, Journal, Record, PROVISIONAL_UID};
use super::super::CachedStore;
use crate::cache::dir::CacheDir;
use crate::store::memory::{MemoryStore, Op};
use crate::store::{
    Flag, LinkState, MailStore, MailboxId, MessageMeta, NewMessage, Section, StoreError,
    StoreEvent, Transfer, Uid, UidValidity,
};

fn message(n: u32) -> Vec<u8> {
    format!("From: a@example.com\r\nSubject: m{n}\r\nMessage-ID: <m{n}@example.com>\r\n\r\nbody {n}\r\n")
        .into_bytes()
}

fn date() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn id(name: &str) -> MailboxId {
    MailboxId::new(name)
}

fn flags(list: &[&str]) -> Vec<Flag> {
    list.iter().map(|f| Flag::parse(f).unwrap()).collect()
}

struct Account {
    memory: Arc<MemoryStore>,
    root: tempfile::TempDir,
}

impl Account {
    /// INBOX with `messages` messages (the first `\Flagged`), an empty Archive and Trash.
    fn new(messages: u32) -> Account {
        let memory = Arc::new(MemoryStore::new());
        for n in 1..=messages {
            let flags: &[&str] = if n == 1 { &["\\Flagged"] } else { &[] };
            memory.add_message("INBOX", &message(n), flags, date());
        }
        memory.add_mailbox("Archive", Some('/'), true, None);
        memory.add_mailbox("Trash", Some('/'), true, Some("\\Trash"));
        Account {
            memory,
            root: tempfile::tempdir().unwrap(),
        }
    }

    fn cache(&self) -> std::path::PathBuf {
        self.root.path().join("cache")
    }

    /// A store over the cache directory, once the last one let it go (its reconnect thread
    /// may hold it a moment longer).
    fn mount(&self, offline: bool) -> CachedStore {
        let deadline = Instant::now() + Duration::from_secs(30);
        let dir = loop {
            match CacheDir::open(&self.cache()) {
                Ok(dir) => break Arc::new(dir),
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("{e}"),
            }
        };
        CachedStore::new(
            Arc::clone(&self.memory) as Arc<dyn MailStore>,
            dir,
            None,
            offline,
        )
    }

    /// Waits until no store holds the cache directory (a replay thread may still run).
    fn released(&self) {
        drop(self.mount(true));
    }

    /// A mount that saw every mailbox, then went away: the cache knows them all.
    fn seen(&self) {
        let store = self.mount(false);
        for mailbox in store.list_mailboxes().unwrap() {
            if mailbox.selectable {
                store.list_messages(&mailbox.id).unwrap();
            }
        }
        store.flush();
    }

    /// What the server holds in `mailbox`, as (subject, flags) in UID order.
    fn server(&self, mailbox: &str) -> Vec<(String, Vec<String>)> {
        self.memory
            .list_messages(&id(mailbox))
            .unwrap()
            .messages
            .iter()
            .map(|m| (subject(m), sorted(&m.flags)))
            .collect()
    }

    fn write_calls(&self) -> u64 {
        [
            Op::SetFlags,
            Op::MoveMessage,
            Op::ExpungeMessage,
            Op::Append,
            Op::CreateMailbox,
        ]
        .iter()
        .map(|op| self.memory.count(*op))
        .sum()
    }
}

fn subject(m: &MessageMeta) -> String {
    String::from_utf8_lossy(m.subject.as_deref().unwrap_or_default()).to_string()
}

fn sorted(flags: &[String]) -> Vec<String> {
    let mut f = flags.to_vec();
    f.sort();
    f
}

fn append(store: &dyn MailStore, mailbox: &str, raw: &[u8]) -> Option<(UidValidity, Uid)> {
    let mut content = raw;
    store
        .append(
            &id(mailbox),
            NewMessage {
                content: &mut content,
                len: raw.len() as u64,
                binary: false,
                flags: &[],
                internal_date: Some(date()),
            },
        )
        .unwrap()
}

/// Waits (bounded) until the store is online with nothing left to replay but what the
/// server refused.
fn settled(store: &CachedStore) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.link_state() != LinkState::Online
        || store
            .pending_changes()
            .iter()
            .any(|l| !l.contains("refused") && !l.contains("damaged"))
    {
        assert!(
            Instant::now() < deadline,
            "never settled: {:?}",
            store.pending_changes()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn offline_changes_show_at_once_and_the_next_mount_replays_them_in_order() {
    let account = Account::new(4);
    account.seen();
    let validity = account.memory.uid_validity("INBOX");
    let archive_validity = account.memory.uid_validity("Archive");

    let offline = account.mount(true);
    let before = account.write_calls();
    // Flags: \Flagged off, \Seen and $done on.
    offline
        .set_flags(&id("INBOX"), validity, Uid(1), &flags(&["\\Seen", "$done"]))
        .unwrap();
    let moved = offline
        .move_message(&id("INBOX"), validity, Uid(2), &id("Archive"))
        .unwrap();
    assert_eq!(moved, Some((archive_validity, Uid(PROVISIONAL_UID + 1))));
    offline
        .expunge_message(&id("INBOX"), validity, Uid(3))
        .unwrap();
    let appended = append(&offline, "INBOX", &message(9));
    assert_eq!(appended, Some((validity, Uid(PROVISIONAL_UID + 3))));
    let created = offline.create_mailbox(&["Projects".into()]).unwrap();
    assert!(created.as_str().starts_with('\u{b7}'), "{created}");
    let into_new = offline
        .move_message(&id("INBOX"), validity, Uid(4), &created)
        .unwrap();
    assert_eq!(into_new, Some((UidValidity(0), Uid(PROVISIONAL_UID + 5))));
    // A flag on a message that has only a provisional UID yet.
    offline
        .change_flags(
            &id("Archive"),
            archive_validity,
            Uid(PROVISIONAL_UID + 1),
            &flags(&["$moved"]),
            &[],
        )
        .unwrap();
    assert_eq!(account.write_calls(), before, "nothing reached the server");

    // Shown at once.
    let inbox = offline.list_messages(&id("INBOX")).unwrap().messages;
    let shown: Vec<(Uid, String, Vec<String>)> = inbox
        .iter()
        .map(|m| (m.uid, subject(m), sorted(&m.flags)))
        .collect();
    assert_eq!(
        shown,
        [
            (Uid(1), "m1".into(), vec!["$done".into(), "\\Seen".into()]),
            (Uid(PROVISIONAL_UID + 3), "m9".into(), vec![]),
        ]
    );
    let archive = offline.list_messages(&id("Archive")).unwrap().messages;
    assert_eq!(archive.len(), 1);
    assert_eq!(subject(&archive[0]), "m2");
    assert_eq!(sorted(&archive[0].flags), ["$moved"]);
    let list = offline.list_mailboxes().unwrap();
    assert!(list
        .iter()
        .any(|m| m.id == created && m.path == ["Projects"]));
    assert_eq!(offline.list_messages(&created).unwrap().messages.len(), 1);
    let pending = offline.pending_changes();
    assert_eq!(pending.len(), 7, "{pending:#?}");
    assert!(pending[0].starts_with("#0 "), "{}", pending[0]);
    assert!(
        pending[0].contains("flags INBOX UID 1: +\\Seen +$done -\\Flagged"),
        "{}",
        pending[0]
    );
    assert!(pending[3].contains("append"), "{}", pending[3]);
    drop(offline);

    // Another client changed another flag of message 1 meanwhile: it is kept.
    account
        .memory
        .set_flags("INBOX", Uid(1), &["\\Flagged", "$other"]);
    let online = account.mount(false);
    settled(&online);
    assert!(online.pending_changes().is_empty());
    assert_eq!(
        account.server("INBOX"),
        [
            (
                "m1".into(),
                vec!["$done".into(), "$other".into(), "\\Seen".into()]
            ),
            ("m9".into(), vec![]),
        ]
    );
    assert_eq!(
        account.server("Archive"),
        [("m2".into(), vec!["$moved".into()])]
    );
    assert_eq!(account.server("Projects"), [("m4".into(), vec![])]);
    assert!(account.server("Trash").is_empty(), "an expunge, not a move");
    assert_eq!(account.memory.count(Op::Append), 1);
    assert_eq!(account.memory.count(Op::CreateMailbox), 1);
    // What is kept no longer shows provisional UIDs (the server has the messages now).
    online.flush();
    for mailbox in ["INBOX", "Archive"] {
        let (head, kept) = online.shared.kept_listing(&id(mailbox)).unwrap();
        assert!(kept.iter().all(|m| m.uid.0 < PROVISIONAL_UID), "{kept:?}");
        assert_eq!(head.version, None, "the next listing is a full one");
    }
    // Online again, the next listing is the server's.
    let inbox = online.list_messages(&id("INBOX")).unwrap().messages;
    assert!(inbox.iter().all(|m| m.uid.0 < PROVISIONAL_UID));
    drop(online);
    // Nothing is replayed twice.
    let calls = account.write_calls();
    let again = account.mount(false);
    settled(&again);
    assert_eq!(account.write_calls(), calls);
}

#[test]
fn conflicts_give_the_documented_result() {
    let account = Account::new(3);
    account.seen();
    let validity = account.memory.uid_validity("INBOX");
    let archive_validity = account.memory.uid_validity("Archive");
    let offline = account.mount(true);
    // Moved here, expunged there: dropped.
    offline
        .move_message(&id("INBOX"), validity, Uid(2), &id("Trash"))
        .unwrap();
    // Archive recreated there (UIDVALIDITY changes): UID actions on it are cancelled,
    // the APPEND into it is not.
    append(&offline, "Archive", &message(7));
    offline
        .change_flags(
            &id("Archive"),
            archive_validity,
            Uid(PROVISIONAL_UID + 1),
            &flags(&["\\Seen"]),
            &[],
        )
        .unwrap();
    // Created here and there: merged, and what moves into it arrives.
    let created = offline.create_mailbox(&["Shared".into()]).unwrap();
    offline
        .move_message(&id("INBOX"), validity, Uid(3), &created)
        .unwrap();
    drop(offline);
    account.memory.remove_message("INBOX", Uid(2));
    account.memory.recreate_mailbox("Archive");
    account.memory.add_mailbox("Shared", Some('/'), true, None);
    account
        .memory
        .add_message("Shared", &message(20), &[], date());

    let online = account.mount(false);
    settled(&online);
    assert!(online.pending_changes().is_empty());
    assert_eq!(
        account.server("INBOX"),
        [("m1".into(), vec!["\\Flagged".into()])]
    );
    assert!(account.server("Trash").is_empty());
    // The APPEND landed in the new Archive; the flag on its provisional UID followed it
    // (APPENDUID named it in the new UIDVALIDITY).
    assert_eq!(
        account.server("Archive"),
        [("m7".into(), vec!["\\Seen".into()])]
    );
    assert_eq!(
        account.server("Shared"),
        [("m20".into(), vec![]), ("m3".into(), vec![])]
    );
    // The move of the vanished message was tried once (and found it gone), the other went.
    assert_eq!(account.memory.count(Op::MoveMessage), 2);
}

#[test]
fn uid_actions_on_a_recreated_mailbox_are_cancelled() {
    let account = Account::new(2);
    account.seen();
    let validity = account.memory.uid_validity("INBOX");
    let offline = account.mount(true);
    offline
        .set_flags(&id("INBOX"), validity, Uid(2), &flags(&["\\Seen"]))
        .unwrap();
    offline
        .move_message(&id("INBOX"), validity, Uid(1), &id("Archive"))
        .unwrap();
    append(&offline, "INBOX", &message(5));
    drop(offline);
    account.memory.recreate_mailbox("INBOX");
    account
        .memory
        .add_message("INBOX", &message(30), &[], date());
    account
        .memory
        .add_message("INBOX", &message(31), &[], date());

    let online = account.mount(false);
    settled(&online);
    // UID 1 and 2 name other messages now: neither was touched.
    assert_eq!(
        account.server("INBOX"),
        [
            ("m30".into(), vec![]),
            ("m31".into(), vec![]),
            ("m5".into(), vec![])
        ]
    );
    assert!(account.server("Archive").is_empty());
}

#[test]
fn a_refused_append_stays_with_its_error_and_its_bytes_until_it_goes() {
    let account = Account::new(1);
    account.seen();
    let offline = account.mount(true);
    append(&offline, "INBOX", &message(8));
    drop(offline);
    account.memory.fail_next(Op::Append, || {
        StoreError::OverQuota("mailbox is full".into())
    });
    let online = account.mount(false);
    settled(&online);
    let pending = online.pending_changes();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert!(
        pending[0].contains("refused: over quota: mailbox is full"),
        "{}",
        pending[0]
    );
    assert!(account.cache().join("outbox/0").exists(), "bytes kept");
    // Changes online go straight to the server meanwhile.
    let validity = account.memory.uid_validity("INBOX");
    online
        .set_flags(&id("INBOX"), validity, Uid(1), &flags(&["\\Seen"]))
        .unwrap();
    assert_eq!(account.memory.count(Op::SetFlags), 1);
    // Tried again on demand (user.imapfs.pending = retry): it lands once.
    online.retry_pending();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !online.pending_changes().is_empty() {
        assert!(Instant::now() < deadline, "{:?}", online.pending_changes());
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(online);
    let again = account.mount(false);
    settled(&again);
    assert_eq!(
        account.memory.count(Op::Append),
        2,
        "refused once, then stored"
    );
    let subjects: Vec<String> = account.server("INBOX").into_iter().map(|m| m.0).collect();
    assert_eq!(subjects, ["m1", "m8"]);
    assert!(!account.cache().join("outbox/0").exists());
}

#[test]
fn an_append_cut_short_is_looked_for_before_it_is_sent_again() {
    for landed in [true, false] {
        let account = Account::new(1);
        account.seen();
        let offline = account.mount(true);
        append(&offline, "INBOX", &message(6));
        drop(offline);
        // As if imapfs was killed during the APPEND: `Sending` journaled, no outcome.
        {
            let (mut journal, queue) = Journal::open(&account.cache()).unwrap();
            assert!(matches!(queue.entries[0].change, Change::Append { .. }));
            journal.append(&Record::Sending { seq: 0 }).unwrap();
        }
        if landed {
            account
                .memory
                .add_message("INBOX", &message(6), &[], date());
        }
        let online = account.mount(false);
        settled(&online);
        let subjects: Vec<String> = account.server("INBOX").into_iter().map(|m| m.0).collect();
        assert_eq!(subjects, ["m1", "m6"], "landed before: {landed}");
        assert_eq!(account.memory.count(Op::Append), u64::from(!landed));
        assert_eq!(account.memory.count(Op::Search), 1, "looked for once");
    }
}

/// The server goes away under a running store, which finds out at its next look at INBOX.
fn lose_the_server(account: &Account, store: &CachedStore) {
    account.memory.set_reachable(false);
    account.memory.fail_next(Op::MailboxVersion, || {
        StoreError::Connection("connection refused".into())
    });
    store.list_messages(&id("INBOX")).unwrap();
    assert!(matches!(store.link_state(), LinkState::Offline { .. }));
}

#[test]
fn a_store_that_went_offline_replays_when_the_server_answers_again() {
    let account = Account::new(2);
    let store = account.mount(false);
    store.list_mailboxes().unwrap();
    let validity = store.list_messages(&id("INBOX")).unwrap().uid_validity;
    store.flush();
    lose_the_server(&account, &store);
    store
        .set_flags(&id("INBOX"), validity, Uid(2), &flags(&["\\Answered"]))
        .unwrap();
    assert_eq!(account.memory.count(Op::SetFlags), 0);
    account.memory.set_reachable(true);
    settled(&store);
    assert_eq!(
        account.server("INBOX")[1],
        ("m2".into(), vec!["\\Answered".into()])
    );
}

/// When the server is back and offline changes are replayed, every mailbox they touched
/// is reported stale, so that the mount lists it again: what it showed under provisional
/// UIDs stayed listed for good (a moved message twice, reading short then ENOENT).
#[test]
fn a_replay_reports_the_mailboxes_it_touched_as_stale() {
    let account = Account::new(2);
    let store = account.mount(false);
    let heard: Arc<parking_lot::Mutex<Vec<StoreEvent>>> = Arc::default();
    let sink = Arc::clone(&heard);
    store.watch(Arc::new(move |e| sink.lock().push(e)));
    store.list_mailboxes().unwrap();
    let validity = store.list_messages(&id("INBOX")).unwrap().uid_validity;
    store.list_messages(&id("Archive")).unwrap();
    store.flush();
    lose_the_server(&account, &store);
    store
        .move_message(&id("INBOX"), validity, Uid(1), &id("Archive"))
        .unwrap();
    account.memory.set_reachable(true);
    settled(&store);
    let stale: Vec<MailboxId> = heard
        .lock()
        .iter()
        .filter_map(|e| match e {
            StoreEvent::MailboxStale(m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(stale, [id("Archive"), id("INBOX")]);
}

/// A message written offline reads back from the outbox while its APPEND waits, also at
/// a later mount that is still offline (it was EIO: not in the disk cache), whole and by
/// part, encoded and decoded.
#[test]
fn a_message_written_offline_reads_from_the_outbox_until_it_is_sent() {
    let account = Account::new(1);
    let online = account.mount(false);
    online.list_mailboxes().unwrap();
    online.list_messages(&id("INBOX")).unwrap();
    online.flush();
    drop(online);
    let raw = b"From: a@example.com\r\nSubject: draft\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
hello\r\n--b\r\nContent-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQ=\r\n--b--\r\n";
    let offline = account.mount(true);
    let (validity, uid) = append(&offline, "INBOX", raw).expect("a provisional UID");
    drop(offline);
    let again = account.mount(true);
    let read = |section: &[u32], transfer: Transfer| {
        again
            .fetch_section(
                &id("INBOX"),
                validity,
                uid,
                &Section(section.to_vec()),
                transfer,
                None,
            )
            .unwrap()
    };
    assert_eq!(read(&[], Transfer::Encoded), raw);
    assert_eq!(read(&[2], Transfer::Encoded), b"aGVsbG8gd29ybGQ=");
    assert_eq!(read(&[2], Transfer::Decoded), b"hello world");
}

/// A message written offline and moved offline reads from the outbox where it went (a bug
/// hunt saw `mv f Archive/` offline, then `cat Archive/f`, fail: not in the disk cache).
#[test]
fn a_message_written_then_moved_offline_reads_from_the_outbox() {
    let account = Account::new(1);
    let online = account.mount(false);
    online.list_mailboxes().unwrap();
    online.list_messages(&id("INBOX")).unwrap();
    online.list_messages(&id("Archive")).unwrap();
    online.flush();
    drop(online);
    let raw = b"From: a@example.com\r\nSubject: moved\r\n\r\nhello\r\n";
    let offline = account.mount(true);
    let (validity, uid) = append(&offline, "INBOX", raw).expect("a provisional UID");
    let (to_validity, to_uid) = offline
        .move_message(&id("INBOX"), validity, uid, &id("Archive"))
        .unwrap()
        .expect("a provisional UID in Archive");
    let read = offline
        .fetch_section(
            &id("Archive"),
            to_validity,
            to_uid,
            &Section(Vec::new()),
            Transfer::Encoded,
            None,
        )
        .unwrap();
    assert_eq!(read, raw);
}

#[test]
fn a_damaged_journal_is_left_alone_and_said_so() {
    let account = Account::new(1);
    account.seen();
    let offline = account.mount(true);
    let validity = account.memory.uid_validity("INBOX");
    offline
        .set_flags(&id("INBOX"), validity, Uid(1), &flags(&["\\Seen"]))
        .unwrap();
    offline
        .set_flags(&id("INBOX"), validity, Uid(1), &flags(&[]))
        .unwrap();
    drop(offline);
    let path = account.cache().join("journal");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[12] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();

    let online = account.mount(false);
    settled(&online);
    let pending = online.pending_changes();
    assert_eq!(pending.len(), 1);
    assert!(
        pending[0].contains("is damaged at byte 8"),
        "{}",
        pending[0]
    );
    assert_eq!(account.memory.count(Op::SetFlags), 0);
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "left as it was");
    drop(online);
    // Offline, changes are refused rather than lost.
    let offline = account.mount(true);
    let refused = offline.set_flags(&id("INBOX"), validity, Uid(1), &flags(&["$x"]));
    assert!(matches!(refused, Err(StoreError::Offline(m)) if m.contains("damaged")));
}

/// One change made offline, on the `n`-th message still there and the `b`-th mailbox
/// (modulo how many there are).
#[derive(Debug, Clone)]
enum OfflineOp {
    Flags(usize, Vec<&'static str>),
    Move(usize, usize),
    Expunge(usize),
    Append(usize),
    Create,
}

fn offline_op() -> impl proptest::strategy::Strategy<Value = OfflineOp> {
    use proptest::prelude::*;
    let flag_set = proptest::sample::subsequence(vec!["\\Seen", "\\Flagged", "$a", "$b"], 0..=4);
    prop_oneof![
        3 => (0..16usize, flag_set).prop_map(|(n, f)| OfflineOp::Flags(n, f)),
        3 => (0..16usize, 0..5usize).prop_map(|(n, b)| OfflineOp::Move(n, b)),
        2 => (0..16usize).prop_map(OfflineOp::Expunge),
        2 => (0..5usize).prop_map(OfflineOp::Append),
        1 => Just(OfflineOp::Create),
    ]
}

/// A mailbox's messages as (subject, flags), sorted.
type Contents = Vec<(String, Vec<String>)>;

/// The mailboxes `names` of a store, the server's view.
fn everything(store: &MemoryStore, names: &[String]) -> Vec<(String, Contents)> {
    names
        .iter()
        .map(|b| {
            let mut list: Contents = store
                .list_messages(&id(b))
                .unwrap()
                .messages
                .iter()
                .map(|m| (subject(m), sorted(&m.flags)))
                .collect();
            list.sort();
            (b.to_string(), list)
        })
        .collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: std::env::var("DISCONNECTED_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(24),
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// Any sequence of offline changes, replayed at the next mount (after a crash of the
    /// first at a random point), leaves the server as the same changes made online would.
    #[test]
    fn a_replay_does_what_the_same_changes_online_would(
        ops in proptest::collection::vec(offline_op(), 1..24),
        crash_after in 0..24usize,
    ) {
        let account = Account::new(4);
        let reference = Account::new(4);
        account.seen();
        // Each mailbox: its name, its identifier offline (provisional when made offline),
        // and in the reference.
        let mut boxes: Vec<(String, MailboxId, MailboxId)> = ["INBOX", "Archive", "Trash"]
            .iter()
            .map(|b| (b.to_string(), id(b), id(b)))
            .collect();
        // (mailbox, UID offline, UID in the reference) of each message, while it exists.
        let mut messages: Vec<(usize, Uid, Uid)> = (1..=4).map(|n| (0, Uid(n), Uid(n))).collect();
        let mut appended = 0;
        let offline = account.mount(true);
        let there: &dyn MailStore = reference.memory.as_ref();
        for op in &ops {
            let validity = |store: &dyn MailStore, m: &MailboxId| {
                store.list_messages(m).unwrap().uid_validity
            };
            match op.clone() {
                OfflineOp::Flags(n, list) if !messages.is_empty() => {
                    let (b, uid_here, uid_there) = messages[n % messages.len()];
                    let (_, here_box, there_box) = &boxes[b];
                    let f = flags(&list);
                    offline.set_flags(here_box, validity(&offline, here_box), uid_here, &f).unwrap();
                    there.set_flags(there_box, validity(there, there_box), uid_there, &f).unwrap();
                }
                OfflineOp::Move(n, to) if !messages.is_empty() => {
                    let i = n % messages.len();
                    let to = to % boxes.len();
                    let (b, uid_here, uid_there) = messages[i];
                    if b == to {
                        continue;
                    }
                    let (_, here_box, there_box) = &boxes[b];
                    let (_, here_to, there_to) = &boxes[to];
                    let moved = offline
                        .move_message(here_box, validity(&offline, here_box), uid_here, here_to)
                        .unwrap()
                        .unwrap();
                    let real = there
                        .move_message(there_box, validity(there, there_box), uid_there, there_to)
                        .unwrap()
                        .unwrap();
                    messages[i] = (to, moved.1, real.1);
                }
                OfflineOp::Expunge(n) if !messages.is_empty() => {
                    let (b, uid_here, uid_there) = messages.remove(n % messages.len());
                    let (_, here_box, there_box) = &boxes[b];
                    offline.expunge_message(here_box, validity(&offline, here_box), uid_here).unwrap();
                    there.expunge_message(there_box, validity(there, there_box), uid_there).unwrap();
                }
                OfflineOp::Append(b) => {
                    let b = b % boxes.len();
                    appended += 1;
                    let raw = message(100 + appended);
                    let (_, here_box, there_box) = &boxes[b];
                    let here = append(&offline, here_box.as_str(), &raw).unwrap().1;
                    let real = append(there, there_box.as_str(), &raw).unwrap().1;
                    messages.push((b, here, real));
                }
                OfflineOp::Create => {
                    let name = format!("Box{}", boxes.len());
                    let here = offline.create_mailbox(std::slice::from_ref(&name)).unwrap();
                    let real = there.create_mailbox(std::slice::from_ref(&name)).unwrap();
                    boxes.push((name, here, real));
                }
                _ => {}
            }
        }
        drop(offline);
        let (_, queue) = Journal::open(&account.cache()).unwrap();
        let kinds: Vec<Op> = queue
            .entries
            .iter()
            .map(|e| match e.change {
                Change::Flags { .. } => Op::SetFlags,
                Change::Move { .. } => Op::MoveMessage,
                Change::Expunge { .. } => Op::ExpungeMessage,
                Change::Append { .. } => Op::Append,
                Change::Create { .. } => Op::CreateMailbox,
            })
            .collect();
        let crash = crash_after % (kinds.len() + 1);
        if crash < kinds.len() {
            // A first replay dies right after change `crash` reached the server, before
            // its outcome was journaled: the journal and outbox are put back as they were
            // at that moment, and the server refuses everything after it.
            let kind = kinds[crash];
            let earlier = kinds[..crash].iter().filter(|k| **k == kind).count();
            for _ in 0..earlier {
                account.memory.after_next(kind, || {});
            }
            let saved = tempfile::tempdir().unwrap();
            let (cache, keep) = (account.cache(), saved.path().to_path_buf());
            let memory = Arc::clone(&account.memory);
            let next = kinds.get(crash + 1).copied();
            let (fired, crashed) = std::sync::mpsc::channel();
            account.memory.after_next(kind, move || {
                std::fs::copy(cache.join("journal"), keep.join("journal")).unwrap();
                std::fs::create_dir_all(keep.join("outbox")).unwrap();
                if let Ok(dir) = std::fs::read_dir(cache.join("outbox")) {
                    for f in dir.flatten() {
                        std::fs::copy(f.path(), keep.join("outbox").join(f.file_name())).unwrap();
                    }
                }
                memory.set_reachable(false);
                if let Some(next) = next {
                    memory.fail_next(next, || StoreError::Connection("killed".into()));
                }
                let _ = fired.send(());
            });
            let first = account.mount(false);
            crashed.recv_timeout(Duration::from_secs(30)).expect("the replay reached the crash");
            drop(first);
            account.released();
            let cache = account.cache();
            std::fs::copy(saved.path().join("journal"), cache.join("journal")).unwrap();
            let _ = std::fs::remove_dir_all(cache.join("outbox"));
            std::fs::create_dir_all(cache.join("outbox")).unwrap();
            for f in std::fs::read_dir(saved.path().join("outbox")).unwrap().flatten() {
                std::fs::copy(f.path(), cache.join("outbox").join(f.file_name())).unwrap();
            }
            account.memory.set_reachable(true);
        }
        let again = account.mount(false);
        settled(&again);
        proptest::prop_assert!(again.pending_changes().is_empty());
        let names: Vec<String> = boxes.iter().map(|b| b.0.clone()).collect();
        proptest::prop_assert_eq!(
            everything(&account.memory, &names),
            everything(&reference.memory, &names)
        );
    }
}

mod merge;

/// A journal that cannot grow because the disk is full fails the change with ENOSPC (as a
/// full spool does), not the EROFS of "offline" (a bug hunt saw `cp` report "Read-only
/// file system" with the disk full).
#[test]
fn a_full_disk_under_the_journal_is_no_space() {
    let full = super::journal_error(std::io::Error::from(std::io::ErrorKind::StorageFull));
    assert!(matches!(full, StoreError::NoSpaceHere(_)), "{full:?}");
    let (errno, _) = crate::fs::FsError::Store(full).errno_and_level();
    assert_eq!(errno, libc::ENOSPC);
    let other = super::journal_error(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
    assert!(matches!(other, StoreError::Offline(_)), "{other:?}");
}
