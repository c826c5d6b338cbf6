use std::time::{Instant, UNIX_EPOCH};

use super::*;
use crate::store::memory::{MemoryStore, Op};

fn message(n: u32) -> Vec<u8> {
    format!("From: a@example.com\r\nSubject: m{n}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nbody {n}\r\n").into_bytes()
}

fn date() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

struct Account {
    memory: Arc<MemoryStore>,
    root: tempfile::TempDir,
}

impl Account {
    fn new(messages: u32) -> Account {
        let memory = Arc::new(MemoryStore::new());
        for n in 1..=messages {
            memory.add_message("INBOX", &message(n), &[], date());
        }
        Account {
            memory,
            root: tempfile::tempdir().unwrap(),
        }
    }

    /// A store over the account with the cache directory, as a new mount makes it.
    fn mount(&self, offline: bool) -> CachedStore {
        let dir = Arc::new(CacheDir::open(&self.root.path().join("cache")).unwrap());
        CachedStore::new(
            Arc::clone(&self.memory) as Arc<dyn MailStore>,
            dir,
            None,
            offline,
        )
    }
}

fn inbox() -> MailboxId {
    MailboxId::new("INBOX")
}

fn connection_lost() -> StoreError {
    StoreError::Connection("connection refused".into())
}

#[test]
fn a_kept_listing_costs_one_version_check_when_the_mailbox_is_unchanged() {
    let account = Account::new(3);
    let first = account.mount(false);
    first.list_mailboxes().unwrap();
    let listing = first.list_messages(&inbox()).unwrap();
    assert_eq!(listing.messages.len(), 3);
    drop(first);

    let lists = account.memory.count(Op::ListMessages);
    let second = account.mount(false);
    assert_eq!(second.list_messages(&inbox()).unwrap(), listing);
    assert_eq!(account.memory.count(Op::ListMessages), lists);

    // A change elsewhere: the next mount asks what changed, and lists nothing again.
    account
        .memory
        .add_message("INBOX", &message(4), &[], date());
    drop(second);
    let third = account.mount(false);
    assert_eq!(third.list_messages(&inbox()).unwrap().messages.len(), 4);
    assert_eq!(account.memory.count(Op::ListMessages), lists);
    assert_eq!(account.memory.count(Op::ChangesSince), 1);
}

/// A report of a message that is gone again by the next listing (moved on, say) leaves a
/// row that counting from the kept version cannot find: the count tells, and the listing
/// is taken in full. Seen in the soak: a message moved away kept showing in its old
/// mailbox after a remount-free resync, and reading it failed.
#[test]
fn kept_rows_that_drifted_from_their_version_are_listed_in_full() {
    let account = Account::new(3);
    let store = account.mount(false);
    let listing = store.list_messages(&inbox()).unwrap();
    // Message 4 comes and goes; the report of its arrival is applied late.
    let uid = account
        .memory
        .add_message("INBOX", &message(4), &[], date());
    let meta = account.memory.list_messages(&inbox()).unwrap().messages[3].clone();
    account.memory.remove_message("INBOX", uid);
    let mut late = MailboxChange::new(inbox());
    late.arrived.push(meta);
    store.shared.send(Job::Change(late));
    store.flush();
    let lists = account.memory.count(Op::ListMessages);
    let now = store.list_messages(&inbox()).unwrap();
    assert_eq!(now.messages, listing.messages, "message 4 is not listed");
    assert_eq!(account.memory.count(Op::ListMessages), lists + 1);
    // Kept as listed: the next look costs no listing.
    store.flush();
    assert_eq!(
        store.list_messages(&inbox()).unwrap().messages,
        listing.messages
    );
    assert_eq!(account.memory.count(Op::ListMessages), lists + 1);
}

/// A resynchronisation found from a version no longer kept (a newer listing was written
/// first) is not applied to the newer rows.
#[test]
fn a_resync_from_a_version_no_longer_kept_is_not_applied() {
    let account = Account::new(2);
    let store = account.mount(false);
    let old = store.list_messages(&inbox()).unwrap().version.unwrap();
    account.memory.remove_message("INBOX", Uid(2));
    let newer = store.shared.inner.list_messages(&inbox()).unwrap();
    store.shared.send(Job::Listing(inbox(), newer.clone()));
    // Found from `old`: UID 2 as arrived (as a stale report would say it).
    let mut stale = MailboxChange::new(inbox());
    stale
        .arrived
        .push(store.shared.inner.list_messages(&inbox()).unwrap().messages[0].clone());
    stale.arrived[0].uid = Uid(2);
    let to = MailboxVersion {
        highest_modseq: old.highest_modseq + 1,
        ..old
    };
    store.shared.send(Job::Resynced {
        change: stale,
        from: old,
        to,
    });
    store.flush();
    let (head, kept) = store.shared.kept_listing(&inbox()).unwrap();
    assert_eq!(kept, newer.messages);
    assert_eq!(head.version, newer.version);
}

#[test]
fn structures_and_sizes_are_asked_once_across_mounts() {
    let account = Account::new(2);
    let store = account.mount(false);
    let listing = store.list_messages(&inbox()).unwrap();
    let validity = listing.uid_validity;
    let uids = [Uid(1), Uid(2)];
    let structures = store.body_structures(&inbox(), validity, &uids).unwrap();
    let items = vec![
        PartItem::DecodedSize(Section(vec![1])),
        PartItem::Bytes {
            section: Section(vec![1]),
            transfer: Transfer::Decoded,
            range: None,
        },
    ];
    let wanted = vec![(Uid(1), items.clone())];
    let parts = store.fetch_parts(&inbox(), validity, &wanted).unwrap();
    drop(store);

    let asked = (
        account.memory.count(Op::BodyStructures),
        account.memory.count(Op::FetchSection),
    );
    let store = account.mount(false);
    store.list_messages(&inbox()).unwrap();
    assert_eq!(
        store.body_structures(&inbox(), validity, &uids).unwrap(),
        structures
    );
    let mut again = store.fetch_parts(&inbox(), validity, &wanted).unwrap();
    let mut parts = parts;
    let key = |a: &(Uid, PartItem, PartValue)| format!("{:?}", a.1);
    again.sort_by_key(key);
    parts.sort_by_key(key);
    assert_eq!(again, parts);
    assert_eq!(
        (
            account.memory.count(Op::BodyStructures),
            account.memory.count(Op::FetchSection)
        ),
        asked
    );
}

#[test]
fn offline_the_kept_answers_come_from_disk_and_the_rest_fails_at_once() {
    let account = Account::new(2);
    let store = account.mount(false);
    store.list_mailboxes().unwrap();
    let listing = store.list_messages(&inbox()).unwrap();
    let validity = listing.uid_validity;
    store
        .body_structures(&inbox(), validity, &[Uid(1)])
        .unwrap();
    store.flush();

    // The server goes away (the first thing a listing asks is the mailbox's version).
    account.memory.set_reachable(false);
    account
        .memory
        .fail_next(Op::MailboxVersion, connection_lost);
    let offline = store.list_messages(&inbox()).unwrap();
    assert_eq!(offline.messages, listing.messages);
    assert!(matches!(store.link_state(), LinkState::Offline { .. }));
    let calls: u64 = [Op::ListMessages, Op::BodyStructures, Op::FetchSection]
        .iter()
        .map(|op| account.memory.count(*op))
        .sum();
    assert_eq!(store.list_mailboxes().unwrap().len(), 1);
    assert_eq!(
        store
            .body_structures(&inbox(), validity, &[Uid(1)])
            .unwrap()
            .len(),
        1
    );
    let started = Instant::now();
    let missing = store.body_structures(&inbox(), validity, &[Uid(2)]);
    assert!(
        matches!(missing, Err(StoreError::Connection(m)) if m.contains("not in the disk cache"))
    );
    let content = store.fetch_section(
        &inbox(),
        validity,
        Uid(1),
        &Section::whole(),
        Transfer::Encoded,
        None,
    );
    assert!(matches!(content, Err(StoreError::Connection(_))));
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "no waiting offline"
    );
    // A change is journaled and shown (cached/disconnected.rs), not sent.
    let flags = [Flag::parse("\\Seen").unwrap()];
    store.set_flags(&inbox(), validity, Uid(1), &flags).unwrap();
    assert!(!store.is_followed(&inbox()));
    // ... but a change to every message of a mailbox is refused.
    let all = store.change_flags_of(&inbox(), validity, &[Uid(1), Uid(2)], &flags, &[]);
    assert!(matches!(all, Err(StoreError::Offline(_))), "{all:?}");
    // Nothing of that reached the server.
    let after: u64 = [
        Op::ListMessages,
        Op::BodyStructures,
        Op::FetchSection,
        Op::SetFlags,
    ]
    .iter()
    .map(|op| account.memory.count(*op))
    .sum();
    assert_eq!(after, calls);

    // The server answers again: the store goes back online by itself.
    account.memory.set_reachable(true);
    let deadline = Instant::now() + Duration::from_secs(60);
    while matches!(store.link_state(), LinkState::Offline { .. }) {
        assert!(Instant::now() < deadline, "never back online");
        std::thread::sleep(Duration::from_millis(50));
    }
    // ... and it was replayed before.
    assert_eq!(account.memory.count(Op::SetFlags), 1);
    let listing = account.memory.list_messages(&inbox()).unwrap();
    assert_eq!(listing.messages[0].flags, ["\\Seen"]);
}

#[test]
fn a_deliberately_offline_store_never_asks_the_server() {
    let account = Account::new(1);
    let store = account.mount(false);
    store.list_mailboxes().unwrap();
    store.list_messages(&inbox()).unwrap();
    drop(store);
    let commands = account.memory.stats().commands;
    let store = account.mount(true);
    assert!(store.has_data());
    assert_eq!(store.list_messages(&inbox()).unwrap().messages.len(), 1);
    assert!(store.list_messages(&MailboxId::new("Archive")).is_err());
    std::thread::sleep(Duration::from_millis(1500));
    assert!(matches!(store.link_state(), LinkState::Offline { .. }));
    assert_eq!(account.memory.stats().commands, commands);
}

#[test]
fn a_recreated_or_deleted_mailbox_loses_what_was_kept() {
    let account = Account::new(1);
    account.memory.add_mailbox("Archive", Some('/'), true, None);
    account
        .memory
        .add_message("Archive", &message(9), &[], date());
    let store = account.mount(false);
    store.list_mailboxes().unwrap();
    let old = store.list_messages(&inbox()).unwrap();
    let old_structure = store
        .body_structures(&inbox(), old.uid_validity, &[Uid(1)])
        .unwrap();
    store.list_messages(&MailboxId::new("Archive")).unwrap();
    drop(store);

    account.memory.recreate_mailbox("INBOX");
    account
        .memory
        .add_message("INBOX", &message(12345), &[], date());
    account.memory.delete_elsewhere("Archive").unwrap();
    let store = account.mount(false);
    let new = store.list_messages(&inbox()).unwrap();
    assert_ne!(new.uid_validity, old.uid_validity);
    let new_structure = store
        .body_structures(&inbox(), new.uid_validity, &[Uid(1)])
        .unwrap();
    assert_ne!(new_structure, old_structure);
    store.list_mailboxes().unwrap();
    store.flush();
    assert!(store
        .shared
        .kept_listing(&MailboxId::new("Archive"))
        .is_none());
    assert!(store
        .shared
        .kept_structures(&inbox(), old.uid_validity, &[Uid(1)])
        .is_empty());
}

#[test]
fn reported_changes_reach_the_kept_listing() {
    let account = Account::new(2);
    let store = account.mount(false);
    store.watch(Arc::new(|_| {}));
    let listing = store.list_messages(&inbox()).unwrap();
    store.follow(&inbox(), listing.version);
    account.memory.set_flags("INBOX", Uid(1), &["\\Flagged"]);
    account.memory.remove_message("INBOX", Uid(2));
    store.flush();
    let (head, kept) = store.shared.kept_listing(&inbox()).unwrap();
    assert!(head.dirty, "the kept version is one to resync from");
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].flags, ["\\Flagged"]);
}

#[test]
fn the_encoding_is_pinned_to_the_format() {
    // If this fails, what the disk cache stores changed shape: raise `dir::FORMAT` so
    // that older caches are dropped, then update the bytes here.
    let meta = MessageMeta {
        uid: Uid(7),
        size: 300,
        internal_date: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        subject: Some(b"Hi".to_vec()),
        flags: vec!["\\Seen".into()],
        origin: None,
    };
    let head = Head {
        validity: UidValidity(5),
        version: Some(MailboxVersion {
            uid_validity: UidValidity(5),
            uid_next: 8,
            exists: 1,
            highest_modseq: 9,
        }),
        dirty: false,
    };
    let item = PartItem::Bytes {
        section: Section(vec![1, 2]),
        transfer: Transfer::Decoded,
        range: Some(ByteRange { offset: 3, len: 4 }),
    };
    let bytes = [encode(&meta), encode(&head), encode(&item)].concat();
    assert_eq!(crate::cache::dir::FORMAT, 1);
    assert_eq!(
        bytes,
        [
            7, 172, 2, 128, 226, 207, 170, 6, 0, 1, 2, 72, 105, 1, 5, 92, 83, 101, 101, 110, 0, 5,
            1, 5, 8, 1, 9, 0, 1, 2, 1, 2, 1, 1, 3, 4
        ]
    );
}

#[test]
fn offline_a_search_runs_over_what_is_kept() {
    let account = Account::new(0);
    let with_body = |subject: &str, body: &str| {
        format!("From: a@example.com\r\nSubject: {subject}\r\n\r\n{body}\r\n").into_bytes()
    };
    let raws = [
        with_body("zanzibar trip", "plain"),
        with_body("lunch", "about zanzibar"),
        with_body("other", "nothing"),
    ];
    for raw in &raws {
        account.memory.add_message("INBOX", raw, &[], date());
    }
    let dir = Arc::new(CacheDir::open(&account.root.path().join("cache")).unwrap());
    let disk = Arc::new(DiskCache::new(Arc::clone(&dir), 1 << 30).unwrap());
    let store = CachedStore::new(
        Arc::clone(&account.memory) as Arc<dyn MailStore>,
        dir,
        Some(Arc::clone(&disk)),
        false,
    );
    let listing = store.list_messages(&inbox()).unwrap();
    // Only the second message's content is cached.
    use crate::cache::ContentCache;
    disk.insert(
        crate::cache::ContentKey {
            mailbox: inbox(),
            validity: listing.uid_validity,
            uid: Uid(2),
            section: Section::whole(),
            transfer: Transfer::Encoded,
            offset: 0,
        },
        Arc::new(raws[1].clone()),
    );
    disk.flush();
    store.flush();
    let key = crate::search::parse(
        "zanzibar",
        crate::search::SearchDate::new(2026, 1, 1).unwrap(),
    )
    .unwrap();
    assert_eq!(store.search(&inbox(), &key).unwrap(), [Uid(1), Uid(2)]);

    account.memory.set_reachable(false);
    account
        .memory
        .fail_next(Op::SearchMessages, connection_lost);
    // Offline: UID 1 by its subject (listing), UID 2 by its cached body; UID 3 neither.
    assert_eq!(store.search(&inbox(), &key).unwrap(), [Uid(1), Uid(2)]);
    assert!(matches!(store.link_state(), LinkState::Offline { .. }));
    let by_body = crate::search::parse(
        "body:zanzibar",
        crate::search::SearchDate::new(2026, 1, 1).unwrap(),
    )
    .unwrap();
    assert_eq!(store.search(&inbox(), &by_body).unwrap(), [Uid(2)]);
}

#[test]
fn offline_the_capabilities_and_small_bodies_kept_are_used() {
    let account = Account::new(1);
    let store = account.mount(false);
    store.list_mailboxes().unwrap();
    let validity = store.list_messages(&inbox()).unwrap().uid_validity;
    let body = PartItem::Bytes {
        section: Section(vec![1]),
        transfer: Transfer::Decoded,
        range: None,
    };
    store
        .fetch_parts(&inbox(), validity, &[(Uid(1), vec![body])])
        .unwrap();
    drop(store);

    // A mount that never reached the server asks in the form the server allowed.
    let offline = account.mount(true);
    assert_eq!(offline.capabilities(), account.memory.capabilities());
    let range = Some(ByteRange { offset: 2, len: 3 });
    let served = offline
        .fetch_section(
            &inbox(),
            validity,
            Uid(1),
            &Section(vec![1]),
            Transfer::Decoded,
            range,
        )
        .unwrap();
    assert_eq!(served, b"dy ");
    let encoded = offline.fetch_section(
        &inbox(),
        validity,
        Uid(1),
        &Section(vec![1]),
        Transfer::Encoded,
        None,
    );
    assert!(matches!(encoded, Err(StoreError::Connection(_))));
}
