//! `.search` directories: queries as names, hits as symlinks, kept results that follow
//! changes, and bad queries that never reach the server.

use super::*;

/// Adds a message with `subject` and `body` to `mailbox`; returns its directory name.
fn add(h: &Harness, mailbox: &str, subject: &str, body: &str, flags: &[&str]) -> String {
    let sample = Sample::new(subject, body, "a.bin", vec![1, 2, 3]);
    let uid = h.store.add_message(mailbox, &sample.raw, flags, date());
    sample.dir_name(uid)
}

/// `dir/target` with `..` steps taken, as the kernel follows a relative symlink.
fn follow(dir: &str, target: &str) -> String {
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for step in target.split('/') {
        match step {
            ".." => {
                parts.pop();
            }
            "" | "." => {}
            name => parts.push(name),
        }
    }
    parts.join("/")
}

#[test]
fn a_query_lists_its_hits_as_symlinks_to_their_message_directories() {
    let h = Harness::new();
    let march = add(&h, "INBOX", "Invoice March", "pay by Friday", &[]);
    add(&h, "INBOX", "Lunch", "noodles", &[]);
    let april = add(&h, "INBOX", "invoice April", "again", &["\\Seen"]);

    assert!(!h
        .names_at("INBOX")
        .unwrap()
        .contains(&".search".to_string()));
    assert!(!h.names_at("").unwrap().contains(&".search".to_string()));
    let dir = "INBOX/.search/subject:invoice";
    assert_eq!(h.names_at(dir).unwrap(), [march.clone(), april.clone()]);
    assert_eq!(h.count(Op::SearchMessages), 1);

    let hit = format!("{dir}/{march}");
    let ino = h.ino(&hit).unwrap();
    let attr = h.fs.getattr(ino).unwrap().attr;
    assert_eq!(attr.kind, Kind::Symlink);
    let target = String::from_utf8(h.fs.readlink(ino).unwrap()).unwrap();
    assert_eq!(target, format!("../../{march}"));
    assert_eq!(attr.size, target.len() as u64);
    let message = follow(dir, &target);
    assert_eq!(message, format!("INBOX/{march}"));
    assert!(h.read_path(&format!("{message}/body.txt")).is_ok());

    // Unchanged: the kept result answers.
    assert_eq!(h.names_at(dir).unwrap().len(), 2);
    assert_eq!(h.count(Op::SearchMessages), 1);

    assert_eq!(
        h.names_at("INBOX/.search/is:unread invoice").unwrap(),
        vec![march.clone()]
    );
    assert_eq!(
        h.names_at("INBOX/.search/-subject:invoice").unwrap().len(),
        1
    );
    assert_eq!(
        h.names_at("INBOX/.search/body:nothing-like-this").unwrap(),
        Vec::<String>::new()
    );

    // A hit is not a file to remove.
    let parent = h.ino(dir).unwrap();
    assert_eq!(errno(h.fs.unlink(parent, OsStr::new(&march))), libc::EPERM);
}

#[test]
fn kept_results_follow_changes_of_the_mailbox() {
    let h = Harness::watching();
    let first = add(&h, "INBOX", "report one", "x", &[]);
    let dir = "INBOX/.search/report is:unread";
    assert_eq!(h.names_at(dir).unwrap(), vec![first.clone()]);
    let searches = h.count(Op::SearchMessages);

    // Another client adds a matching message: the report refreshes the result.
    let second = add(&h, "INBOX", "report two", "y", &[]);
    assert_eq!(h.names_at(dir).unwrap(), [first.clone(), second.clone()]);
    assert_eq!(h.count(Op::SearchMessages), searches + 1);

    // ... and reads the first one elsewhere.
    let uid = h.stored("INBOX")[0].uid;
    h.store.set_flags("INBOX", uid, &["\\Seen"]);
    assert_eq!(h.names_at(dir).unwrap(), [second]);
}

#[test]
fn without_reports_a_result_is_as_fresh_as_the_listing() {
    let h = Harness::new();
    let first = add(&h, "INBOX", "report one", "x", &[]);
    let dir = "INBOX/.search/report";
    assert_eq!(h.names_at(dir).unwrap(), vec![first.clone()]);
    let second = add(&h, "INBOX", "report two", "y", &[]);
    h.expire_listings();
    assert_eq!(h.names_at(dir).unwrap(), [first, second]);
}

#[test]
fn bad_queries_are_einval_and_ask_the_server_nothing() {
    let h = Harness::new();
    add(&h, "INBOX", "hello", "x", &[]);
    let search = h.ino("INBOX/.search").unwrap();
    let before = h.store.stats().commands;
    for query in [
        "colour:red",
        "from:",
        "\"open",
        "(a",
        "since:2024-02-30",
        "larger:1X",
        "subject:\"x\\\" ) DELETE INBOX",
        "imap:\"ALL {3}\"",
    ] {
        assert_eq!(
            errno(h.fs.lookup(search, OsStr::new(query))),
            libc::EINVAL,
            "{query}"
        );
    }
    assert_eq!(h.store.stats().commands, before);
    // A query that only looks like injection is text.
    assert_eq!(
        h.names_at("INBOX/.search/subject:\"x\\\" ) DELETE INBOX\"")
            .unwrap(),
        Vec::<String>::new()
    );
    assert!(h.names_at("INBOX").is_ok());
}

#[test]
fn a_search_at_the_root_covers_every_mailbox() {
    let h = Harness::new();
    h.store.add_mailbox("Archive/2024", Some('/'), true, None);
    h.store.add_mailbox("Archive", Some('/'), false, None);
    let inbox = add(&h, "INBOX", "budget", "x", &[]);
    add(&h, "INBOX", "other", "x", &[]);
    let archived = add(&h, "Archive/2024", "old budget", "x", &[]);

    let dir = ".search/budget";
    assert_eq!(
        h.names_at(dir).unwrap(),
        ["Archive\u{2044}2024".to_string(), "INBOX".to_string()]
    );
    let in_archive = format!("{dir}/Archive\u{2044}2024");
    assert_eq!(h.names_at(&in_archive).unwrap(), vec![archived.clone()]);
    let link = h.ino(&format!("{in_archive}/{archived}")).unwrap();
    let target = String::from_utf8(h.fs.readlink(link).unwrap()).unwrap();
    assert_eq!(
        follow(&in_archive, &target),
        format!("Archive/2024/{archived}")
    );
    let in_inbox = format!("{dir}/INBOX/{inbox}");
    let link = h.ino(&in_inbox).unwrap();
    let target = String::from_utf8(h.fs.readlink(link).unwrap()).unwrap();
    assert!(h.ino(&follow(&format!("{dir}/INBOX"), &target)).is_ok());

    // No hits: no directory.
    assert_eq!(errno(h.ino(".search/budget/Archive")), libc::ENOENT);
    assert_eq!(errno(h.ino(".search/nothing/INBOX")), libc::ENOENT);
}

#[test]
fn a_mailbox_called_search_wins_and_the_alias_still_searches() {
    let h = Harness::new();
    h.store.add_mailbox(".search", Some('/'), true, None);
    let kept = add(&h, ".search", "in the mailbox", "x", &[]);
    let hit = add(&h, "INBOX", "findme", "x", &[]);
    assert_eq!(h.names_at(".search").unwrap(), [kept]);
    assert_eq!(
        h.names_at(".imapfs-search/findme/INBOX").unwrap(),
        vec![hit.clone()]
    );
    assert_eq!(h.names_at("INBOX/.imapfs-search/findme").unwrap(), [hit]);
}
