//! What each kind of walk costs in store requests and bytes: the reason the fake counts.

use super::*;

/// A mailbox of `n` plain messages with subjects `s1`, `s2`...
fn mailbox_of(h: &Harness, n: usize) {
    for i in 1..=n {
        h.store.add_message(
            "INBOX",
            &plain_message(&format!("s{i}"), "hello"),
            &[],
            date(),
        );
    }
}

#[test]
fn listing_a_thousand_messages_is_one_request_and_stat_is_free() {
    let h = Harness::new();
    mailbox_of(&h, 1000);
    let inbox = h.ino("INBOX").unwrap();
    let names = h.names(inbox).unwrap();
    assert_eq!(names.len(), 1000);
    assert_eq!(names[0], "1 s1");
    assert_eq!(h.count(Op::ListMessages), 1);
    assert!(h.count(Op::ListMailboxes) <= 1);
    let after_listing = h.store.stats().commands;

    for name in &names {
        let attr = h.fs.lookup(inbox, OsStr::new(name)).unwrap().attr;
        assert_eq!(attr.kind, Kind::Directory);
        assert_eq!(attr.mtime, date());
        assert_eq!(h.fs.getattr(attr.ino).unwrap().attr, attr);
    }
    assert_eq!(
        h.store.stats().commands,
        after_listing,
        "lookups asked the store"
    );
}

/// A message directory looked at by itself costs its BODYSTRUCTURE and one request for
/// the decoded sizes of encoded parts and its small text bodies: body.txt's exact size and
/// content are known then (two round trips for `cat body.txt` of a message not seen).
#[test]
fn opening_a_message_directory_is_a_structure_and_one_request_for_sizes_and_bodies() {
    let h = Harness::new();
    mailbox_of(&h, 3);
    h.names_at("INBOX").unwrap();
    let before = h.store.stats().commands;
    assert_eq!(
        h.names_at("INBOX/2 s2").unwrap(),
        ["message.eml", "body.txt"]
    );
    assert_eq!(h.count(Op::BodyStructures), 1);
    assert_eq!(h.count(Op::FetchSection), 1);
    assert_eq!(h.store.stats().commands, before + 2);
    // message.eml's size comes with the structure.
    let eml = h.ino("INBOX/2 s2/message.eml").unwrap();
    assert!(h.fs.getattr(eml).unwrap().ttl > Duration::ZERO);
    let body = h.ino("INBOX/2 s2/body.txt").unwrap();
    assert_eq!(h.fs.getattr(body).unwrap().attr.size, 6);
    assert_eq!(h.store.stats().commands, before + 2);
    // Looking at it again, and reading the body, costs nothing.
    h.names_at("INBOX/2 s2").unwrap();
    assert_eq!(h.read_all(body).unwrap(), b"hello\n");
    assert_eq!(h.store.stats().commands, before + 2);
}

/// `grep -r --include=message.eml`, `find`: a walk that never looks at body.txt fetches no
/// text body (the bodies come with message.eml's reads alone), but for the messages looked
/// at before it shows as a walk.
#[test]
fn a_walk_that_passes_text_files_by_fetches_no_body() {
    let h = Harness::new();
    mailbox_of(&h, 100);
    let inbox = h.ino("INBOX").unwrap();
    for name in h.names(inbox).unwrap() {
        let dir = h.fs.lookup(inbox, OsStr::new(&name)).unwrap().attr.ino;
        h.plus_to_the_end(dir);
        h.fs.lookup(dir, OsStr::new("message.eml")).unwrap();
    }
    let fetches = h.count(Op::FetchSection);
    assert!(fetches <= 2, "{fetches} requests for text bodies");
    assert!(h.count(Op::BodyStructures) <= 100u64.div_ceil(STRUCTURE_READ_AHEAD as u64) + 1);
}

/// `find INBOX` / `ls -R`: every message directory in listing order, looking up each file.
#[test]
fn walking_messages_in_order_batches_body_structures() {
    const N: usize = 200;
    let h = Harness::new();
    mailbox_of(&h, N);
    let inbox = h.ino("INBOX").unwrap();
    for name in h.names(inbox).unwrap() {
        let dir = h.fs.lookup(inbox, OsStr::new(&name)).unwrap().attr.ino;
        for file in h.names(dir).unwrap() {
            h.fs.lookup(dir, OsStr::new(&file)).unwrap();
        }
    }
    let requests = h.count(Op::BodyStructures);
    let bound = N.div_ceil(STRUCTURE_READ_AHEAD) as u64 + 1;
    assert!(
        requests <= bound,
        "{requests} BODYSTRUCTURE requests for {N} messages walked in order (at most {bound})"
    );
    // The sizes come in one request per batch of structures. On a busy machine the walk
    // can overtake the thread that fetches the next batch's sizes, and then asks for one
    // message's sizes itself (seen: 7 requests for 5 batches, with the lib tests and
    // their Dovecots in parallel); one request per message would be 200.
    let sizes = h.count(Op::FetchSection);
    let slack = 2 * bound;
    assert!(sizes <= slack, "{sizes} size requests (at most {slack})");
}

#[test]
fn reading_the_text_body_does_not_download_the_attachment() {
    let h = Harness::new();
    let big = Sample::new(
        "Quarterly numbers",
        "See the attached report.\r\nAlice",
        "report.pdf",
        pseudo_random_bytes(1, 2 << 20),
    );
    assert!(big.raw.len() > 2 << 20);
    let uid = h.store.add_message("INBOX", &big.raw, &[], date());
    let body = h
        .read_path(&format!("INBOX/{}/body.txt", big.dir_name(uid)))
        .unwrap();
    assert_eq!(body, big.body.as_bytes());
    assert!(
        h.store.bytes_served() < 100 * 1024,
        "{} bytes fetched to read a {}-byte body",
        h.store.bytes_served(),
        body.len()
    );
}

#[test]
fn reading_a_file_twice_fetches_it_once() {
    let h = Harness::new();
    let sample = Sample::numbered(1);
    let uid = h.store.add_message("INBOX", &sample.raw, &[], date());
    let dir = format!("INBOX/{}", sample.dir_name(uid));
    // The directory's structure and sizes first, so that what is counted is the reads;
    // the text body came with the sizes.
    h.names_at(&dir).unwrap();
    for (file, expected, fetched) in [
        ("body.txt", sample.body.as_bytes(), 0),
        ("a1.bin", &sample.attachment[..], 1),
        ("message.eml", &sample.raw[..], 1),
    ] {
        let path = format!("{dir}/{file}");
        let fetches = h.count(Op::FetchSection);
        let served = h.store.bytes_served();
        assert_eq!(h.read_path(&path).unwrap(), expected, "{file}");
        assert_eq!(h.count(Op::FetchSection), fetches + fetched, "{file}");
        let once = h.store.bytes_served() - served;
        assert_eq!(h.read_path(&path).unwrap(), expected, "{file}, again");
        assert_eq!(
            h.count(Op::FetchSection),
            fetches + fetched,
            "{file}, again"
        );
        assert_eq!(h.store.bytes_served() - served, once);
    }
}

/// `ls -l INBOX INBOX/*`: READDIRPLUS of the mailbox and of every message directory, then
/// an lstat of each file whose size READDIRPLUS could not give for good. Exact sizes cost
/// the small text bodies, 64 messages at a time (which body.txt then reads from memory),
/// never the attachments.
#[test]
fn ls_long_fetches_only_small_text_bodies() {
    let h = Harness::new();
    h.add_numbered(1..=20);
    let inbox = h.ino("INBOX").unwrap();
    let listed = h.plus_to_the_end(inbox);
    let messages: Vec<_> = listed
        .iter()
        .filter(|(_, e, _)| e.name != "." && e.name != "..")
        .collect();
    assert_eq!(messages.len(), 20);
    for (_, entry, attr) in messages {
        assert_eq!(attr.attr.kind, Kind::Directory);
        let files = h.plus_to_the_end(entry.ino);
        assert_eq!(files.len(), 2 + 3, "{}: . .. and three files", entry.name);
        for (_, file, attr) in files.iter().skip(2) {
            assert_eq!(attr.attr.kind, Kind::File, "{}", file.name);
            // What the kernel does for `ls -l`: an lstat when the attributes expired.
            let attr = if attr.ttl == Duration::ZERO {
                assert_eq!(file.name, "body.txt", "only text bodies wait for a stat");
                h.fs.getattr(file.ino).unwrap()
            } else {
                attr.clone()
            };
            assert!(attr.attr.size > 0, "{}", file.name);
            assert!(
                attr.ttl > Duration::ZERO,
                "{}: exact, so cacheable",
                file.name
            );
        }
    }
    // One request of sizes per batch of structures, and the text bodies in batches.
    assert!(
        h.count(Op::FetchSection) <= h.count(Op::BodyStructures) + 2,
        "{} fetches for {} structure requests",
        h.count(Op::FetchSection),
        h.count(Op::BodyStructures)
    );
    let bodies: u64 = (1..=20)
        .map(|s| Sample::numbered(s).body.len() as u64)
        .sum();
    let sizes = 20 * (8 + 8); // one decoded size and at most 8 bytes of padding per attachment
    assert!(
        h.store.bytes_served() <= bodies + sizes,
        "{} bytes served; the bodies are {bodies}",
        h.store.bytes_served()
    );
    assert_eq!(h.count(Op::ListMessages), 1);
}

#[test]
fn concurrent_reads_of_one_file_fetch_it_once() {
    let h = Harness::new();
    let sample = Sample::new("shared", "x", "shared.bin", pseudo_random_bytes(5, 300_000));
    let uid = h.store.add_message("INBOX", &sample.raw, &[], date());
    let dir = format!("INBOX/{}", sample.dir_name(uid));
    let attachment = h.ino(&format!("{dir}/shared.bin")).unwrap();
    let eml = h.ino(&format!("{dir}/message.eml")).unwrap();
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                assert_eq!(h.read_all(attachment).unwrap(), sample.attachment);
                assert_eq!(h.read_all(eml).unwrap(), sample.raw);
            });
        }
    });
    // Nothing was fetched twice: the sizes with the directory, then each file once.
    assert!(
        h.store.bytes_served() <= (sample.attachment.len() + sample.raw.len() + 100) as u64,
        "{} bytes served",
        h.store.bytes_served()
    );
}

#[test]
fn an_unchanged_mailbox_is_not_listed_again() {
    let h = Harness::new();
    mailbox_of(&h, 10);
    let inbox = h.ino("INBOX").unwrap();
    h.names(inbox).unwrap();
    h.names(inbox).unwrap();
    assert_eq!(h.count(Op::ListMessages), 1, "fresh: reused");
    assert_eq!(h.count(Op::MailboxVersion), 0);
    h.expire_listings();
    h.names(inbox).unwrap();
    assert_eq!(h.count(Op::MailboxVersion), 1, "one cheap check");
    assert_eq!(h.count(Op::ListMessages), 1, "unchanged: not listed");
    h.store
        .add_message("INBOX", &plain_message("new", "x"), &[], date());
    h.expire_listings();
    assert_eq!(h.names(inbox).unwrap().len(), 11);
    assert_eq!(h.count(Op::ListMessages), 2, "changed: listed");
}

/// `grep -r`: message.eml of every message, in listing order.
#[test]
fn reading_messages_in_order_fetches_them_in_batches() {
    const N: usize = 150;
    let h = Harness::new();
    mailbox_of(&h, N);
    let inbox = h.ino("INBOX").unwrap();
    for name in h.names(inbox).unwrap() {
        let body = h.read_path(&format!("INBOX/{name}/message.eml")).unwrap();
        assert!(body.ends_with(b"hello\r\n"));
    }
    // Per batch: one request for the sizes (the bodies) and one for the whole messages.
    let fetches = h.count(Op::FetchSection);
    let bound = 2 * N.div_ceil(BODY_READ_AHEAD) as u64 + 2;
    assert!(
        fetches <= bound,
        "{fetches} fetches for {N} messages (at most {bound})"
    );
}

/// Polls `done` for up to 20 s (a thread of the core's works meanwhile).
fn eventually(done: impl Fn() -> bool) -> bool {
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    done()
}

/// What `grep -r` does with a message of INBOX: lists its directory, reads message.eml.
fn grep_message(h: &Harness, name: &str) -> Vec<u8> {
    h.names_at(&format!("INBOX/{name}")).unwrap();
    h.read_path(&format!("INBOX/{name}/message.eml")).unwrap()
}

fn inbox_message(h: &Harness, uid: u32) -> MessageRef {
    MessageRef {
        mailbox: MailboxId::new("INBOX"),
        validity: h.store.uid_validity("INBOX"),
        uid: Uid(uid),
    }
}

/// `grep -r`: while the reader works through one batch of messages, the next batch is
/// fetched on the read-ahead thread, structures and bodies both; the reader then finds it
/// ready instead of waiting for the server after every batch.
#[test]
fn a_walk_has_its_next_batch_fetched_before_it_gets_there() {
    let h = Harness::new();
    mailbox_of(&h, 300);
    let names = h.names_at("INBOX").unwrap();
    for name in &names[..3] {
        grep_message(&h, name);
    }
    // The reader is at message 3: its batch (2 to 65) came with its read; the next one
    // (66 to 129) comes without it asking.
    let ahead = inbox_message(&h, 100);
    assert!(
        eventually(|| h.fs.metadata.has_layout(&ahead)),
        "the structure of message 100 was not fetched ahead"
    );
    assert!(
        eventually(|| h.fs.content.has_first_chunk(&ahead, &Section::whole())),
        "message 100 was not fetched ahead"
    );
    // No further: the walk is not ahead of itself by more than two batches.
    std::thread::sleep(Duration::from_millis(200));
    let far = inbox_message(&h, 250);
    assert!(!h.fs.metadata.has_layout(&far));
    assert!(!h.fs.content.has_first_chunk(&far, &Section::whole()));
}

/// With a single connection there is none to spare: the walk fetches as it goes, and what
/// the user asks meanwhile never waits behind a batch nobody asked for yet.
#[test]
fn with_one_connection_a_walk_fetches_nothing_ahead() {
    let h = Harness::with(|c| c.connections = 1);
    mailbox_of(&h, 300);
    let names = h.names_at("INBOX").unwrap();
    for name in &names[..3] {
        grep_message(&h, name);
    }
    std::thread::sleep(Duration::from_millis(300));
    let ahead = inbox_message(&h, 100);
    assert!(!h.fs.metadata.has_layout(&ahead));
    assert!(!h.fs.content.has_first_chunk(&ahead, &Section::whole()));
    // The reader's own batch still comes in one request.
    let near = inbox_message(&h, 60);
    assert!(h.fs.content.has_first_chunk(&near, &Section::whole()));
}

/// The read-ahead thread and the reader never fetch the same message twice: a walk over
/// every message moves each message's bytes once, in batches.
/// Greps every message of a mailbox of `n` made by `mailbox_of`: the bytes the store
/// served for the walk from the second message on, and the bytes read there.
fn walk_every_message(h: &Harness, n: usize) -> (u64, u64) {
    mailbox_of(h, n);
    let names = h.names_at("INBOX").unwrap();
    let mut before = 0;
    let mut total = 0;
    for (i, name) in names.iter().enumerate() {
        // The first message is looked at alone (its text body comes with its structure);
        // the walk starts at the second.
        if i == 1 {
            before = h.store.bytes_served();
        }
        let body = grep_message(h, name);
        assert!(body.ends_with(b"hello\r\n"), "message {i}");
        if i >= 1 {
            total += body.len() as u64;
        }
    }
    // The last batch sent ahead may still be on its way when the reader ends.
    std::thread::sleep(Duration::from_millis(200));
    (h.store.bytes_served() - before, total)
}

#[test]
fn a_walk_with_read_ahead_fetches_every_message_once() {
    const N: usize = 300;
    let h = Harness::new();
    let (served, total) = walk_every_message(&h, N);
    assert_eq!(served, total, "bytes served");
    let structures = h.count(Op::BodyStructures);
    let bound = N.div_ceil(STRUCTURE_READ_AHEAD) as u64 + 2;
    assert!(
        structures <= bound,
        "{structures} structure requests (at most {bound})"
    );
}

/// With a cache smaller than a batch sent ahead, the walk still moves each message about
/// once (a bug hunt saw 1.3 GB moved to read 52.7 MB with `--cache-size 1M`: batches
/// evicted before the reader came to them, and every message began a new one).
#[test]
fn read_ahead_keeps_to_a_small_cache() {
    let h = Harness::with(|c| c.cache_bytes = 8 << 10);
    let (served, total) = walk_every_message(&h, 300);
    assert!(served <= 2 * total, "{served} bytes served to read {total}");
}

#[test]
fn forgotten_inodes_are_dropped_and_come_back_with_the_same_numbers() {
    const N: usize = 5000;
    let h = Harness::new();
    let released = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    mailbox_of(&h, N);
    let start = h.fs.inode_count();
    let inbox = h.ino("INBOX").unwrap();
    let listed = h.plus_to_the_end(inbox);
    assert_eq!(listed.len(), N + 2);
    assert_eq!(
        h.fs.inode_count(),
        start + 1 + N,
        "READDIRPLUS counts as lookups"
    );
    // Plain readdir shows the same numbers and keeps nothing.
    let plain = h.plain_to_the_end(inbox);
    assert_eq!(h.fs.inode_count(), start + 1 + N);
    for ((_, a), (_, b, _)) in plain.iter().zip(&listed) {
        assert_eq!(a.ino, b.ino, "{}", a.name);
    }
    let _ = released;
    for (_, entry, _) in listed.iter().skip(2) {
        h.fs.forget(entry.ino, 1);
    }
    h.fs.forget(inbox, 1);
    assert_eq!(h.fs.inode_count(), start, "everything forgotten is dropped");
    let again = h.fs.lookup(inbox_parent(), OsStr::new("INBOX")).unwrap();
    assert_eq!(
        again.attr.ino, inbox,
        "the same number for the same mailbox"
    );
    let first = &listed[2].1;
    let looked = h.fs.lookup(inbox, OsStr::new(&first.name)).unwrap();
    assert_eq!(looked.attr.ino, first.ino);
}

fn inbox_parent() -> u64 {
    ROOT
}

#[test]
fn many_forgotten_inodes_tell_the_process_memory_was_freed() {
    let released = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&released);
    let h = Harness::with_parts(move |parts| {
        parts.release_memory = Some(Arc::new(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }));
    });
    mailbox_of(&h, 5000);
    let inbox = h.ino("INBOX").unwrap();
    let listed = h.fs.readdirplus(inbox, 0, usize::MAX).unwrap();
    let after_listing = released.load(std::sync::atomic::Ordering::Relaxed);
    // The large listing itself was one.
    assert_eq!(after_listing, 1);
    let next = listed.last().unwrap().0;
    assert!(h
        .fs
        .readdirplus(inbox, next, usize::MAX)
        .unwrap()
        .is_empty());
    // And the end of the snapshot, which named every message, another.
    let after_listing = released.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(after_listing, 2);
    for (_, entry, _) in listed.iter().skip(2) {
        h.fs.forget(entry.ino, 1);
    }
    // Each time the inode table gave its slots back (halving steps), not once per node.
    let releases = released.load(std::sync::atomic::Ordering::Relaxed) - after_listing;
    assert!((1..=4).contains(&releases), "{releases} releases");
}

#[test]
fn a_reserved_name_is_never_a_message_and_costs_no_request_but_a_real_mailbox_wins() {
    let h = Harness::new();
    mailbox_of(&h, 3);
    let inbox = h.ino("INBOX").unwrap();
    h.names(inbox).unwrap();
    let before = h.store.stats().commands;
    // The search directories: found by name, never listed, free until a query runs.
    for dir in [inbox, ROOT] {
        let search = h.fs.lookup(dir, OsStr::new(".search")).unwrap();
        assert_eq!(search.attr.kind, Kind::Directory);
        assert_eq!(h.names(search.attr.ino).unwrap(), Vec::<String>::new());
        h.fs.lookup(search.attr.ino, OsStr::new("from:someone"))
            .unwrap();
    }
    assert_eq!(h.store.stats().commands, before);
    assert!(!h.names(inbox).unwrap().contains(&".search".to_string()));
    assert!(!h.names(ROOT).unwrap().contains(&".search".to_string()));
    h.store.add_mailbox(".search", Some('/'), true, None);
    let sample = Sample::numbered(9);
    let uid = h.store.add_message(".search", &sample.raw, &[], date());
    h.expire_listings();
    h.names(ROOT).unwrap();
    let real = h.fs.lookup(ROOT, OsStr::new(".search")).unwrap();
    assert_eq!(real.attr.kind, Kind::Directory);
    assert_eq!(h.names(real.attr.ino).unwrap(), [sample.dir_name(uid)]);
    assert!(h.names(ROOT).unwrap().contains(&".search".to_string()));
}

#[test]
fn a_forgotten_message_directory_takes_its_layout_along() {
    let h = Harness::new();
    mailbox_of(&h, 3);
    let inbox = h.ino("INBOX").unwrap();
    let listed = h.plain_to_the_end(inbox);
    let name = &listed[2].1.name;
    let dir = h.fs.lookup(inbox, OsStr::new(name)).unwrap().attr.ino;
    assert!(h.plain_to_the_end(dir).len() > 2);
    let message = match h.fs.inodes.lock().get(dir) {
        Some(Node::Message { message, .. }) => message.clone(),
        other => panic!("{other:?}"),
    };
    assert!(h.fs.metadata.has_layout(&message));
    h.fs.forget(dir, 1);
    assert!(
        !h.fs.metadata.has_layout(&message),
        "the layout of a forgotten message directory stays"
    );
    // Looked up again, it is built again.
    let again = h.fs.lookup(inbox, OsStr::new(name)).unwrap().attr.ino;
    assert!(h.plain_to_the_end(again).len() > 2);
}

/// `cat DIR/message.eml` of a listed message costs its content alone: message.eml is in
/// every message directory and sized by the listing, so no structure is asked for.
#[test]
fn message_eml_of_a_listed_message_costs_one_request() {
    let h = Harness::new();
    mailbox_of(&h, 3);
    h.names_at("INBOX").unwrap();
    let before = h.store.stats().commands;
    let eml = h.ino("INBOX/2 s2/message.eml").unwrap();
    let size = h.fs.getattr(eml).unwrap().attr.size;
    let bytes = h.read_all(eml).unwrap();
    assert_eq!(bytes.len() as u64, size, "the listing's size is exact");
    assert_eq!(h.count(Op::BodyStructures), 0);
    assert_eq!(h.count(Op::FetchSection), 1);
    assert_eq!(h.store.stats().commands, before + 1);
    // The directory, listed afterwards, shows the same inode for it.
    assert_eq!(
        h.names_at("INBOX/2 s2").unwrap(),
        ["message.eml", "body.txt"]
    );
    assert_eq!(h.ino("INBOX/2 s2/message.eml").unwrap(), eml);
    // A name that is not message.eml still needs the structure to be known.
    assert!(h.ino("INBOX/3 s3/nothing.txt").is_err());
    assert_eq!(h.count(Op::BodyStructures), 2);
}
