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

#[test]
fn opening_a_message_directory_is_one_body_structure_request() {
    let h = Harness::new();
    mailbox_of(&h, 3);
    h.names_at("INBOX").unwrap();
    let before = h.store.stats().commands;
    assert_eq!(
        h.names_at("INBOX/2 s2").unwrap(),
        ["message.eml", "body.txt"]
    );
    let structures = h.count(Op::BodyStructure) + h.count(Op::BodyStructures);
    assert_eq!(structures, 1);
    assert_eq!(h.store.stats().commands, before + 1);
    assert_eq!(h.count(Op::FetchSection), 0);
    // Looking at it again costs nothing.
    h.names_at("INBOX/2 s2").unwrap();
    h.ino("INBOX/2 s2/body.txt").unwrap();
    assert_eq!(h.store.stats().commands, before + 1);
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
    let requests = h.count(Op::BodyStructure) + h.count(Op::BodyStructures);
    let bound = N.div_ceil(STRUCTURE_READ_AHEAD) as u64 + 1;
    assert!(
        requests <= bound,
        "{requests} BODYSTRUCTURE requests for {N} messages walked in order (at most {bound})"
    );
    assert_eq!(h.count(Op::FetchSection), 0);
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
    for (file, expected) in [
        ("body.txt", sample.body.as_bytes()),
        ("a1.bin", &sample.attachment[..]),
        ("message.eml", &sample.raw[..]),
    ] {
        let path = format!("{dir}/{file}");
        let fetches = h.count(Op::FetchSection);
        let served = h.store.bytes_served();
        assert_eq!(h.read_path(&path).unwrap(), expected, "{file}");
        assert_eq!(h.count(Op::FetchSection), fetches + 1, "{file}");
        let once = h.store.bytes_served() - served;
        assert_eq!(h.read_path(&path).unwrap(), expected, "{file}, again");
        assert_eq!(h.count(Op::FetchSection), fetches + 1, "{file}, again");
        assert_eq!(h.store.bytes_served() - served, once);
    }
}

/// `ls -l INBOX INBOX/*`: READDIRPLUS of the mailbox and of every message directory.
#[test]
fn ls_long_fetches_no_message_bytes() {
    let h = Harness::new();
    for serial in 1..=20 {
        h.store
            .add_message("INBOX", &Sample::numbered(serial).raw, &[], date());
    }
    let inbox = h.ino("INBOX").unwrap();
    let fh = h.fs.opendir(inbox).unwrap();
    let listed = h.fs.readdirplus(fh, 0, usize::MAX).unwrap();
    h.fs.releasedir(fh);
    let messages: Vec<_> = listed
        .iter()
        .filter(|(_, e, _)| e.name != "." && e.name != "..")
        .collect();
    assert_eq!(messages.len(), 20);
    for (_, entry, attr) in messages {
        assert_eq!(attr.attr.kind, Kind::Directory);
        let fh = h.fs.opendir(entry.ino).unwrap();
        let files = h.fs.readdirplus(fh, 0, usize::MAX).unwrap();
        h.fs.releasedir(fh);
        assert_eq!(files.len(), 2 + 3, "{}: . .. and three files", entry.name);
        for (_, file, attr) in files.iter().skip(2) {
            assert_eq!(attr.attr.kind, Kind::File, "{}", file.name);
            assert!(attr.attr.size > 0, "{}", file.name);
        }
    }
    assert_eq!(h.count(Op::FetchSection), 0);
    assert_eq!(h.store.bytes_served(), 0);
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
    assert_eq!(h.count(Op::FetchSection), 2, "one per file");
}
