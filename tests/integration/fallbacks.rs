//! What imapfs does on a server without each capability it can use (issue 17): Dovecot with
//! the capability left out of `imap_capability` (it would still accept the command, so a
//! client that used it anyway would pass unnoticed; every test also checks what was sent),
//! with other hierarchy delimiters and namespace prefixes, and without SPECIAL-USE.

use std::fs;
use std::time::{Duration, Instant};

use fixture::capabilities_without;

use super::servers::{self, listed, messages, ok, sent_commands, sent_lines, shq, Expect};
use super::support::*;

/// Dovecot announcing everything but `left_out`.
fn without(left_out: &[&str]) -> Dovecot {
    Dovecot::start(DovecotOptions {
        imap_capability: Some(capabilities_without(left_out)),
        ..DovecotOptions::default()
    })
    .expect("start dovecot")
}

/// Dovecot's stock behaviour, as the shared scenarios expect it.
fn full() -> Expect {
    Expect {
        special_use: true,
        move_command: true,
        binary: true,
    }
}

fn errno<T>(result: std::io::Result<T>) -> Option<i32> {
    result.err().and_then(|e| e.raw_os_error())
}

#[test]
fn without_move_a_move_is_uid_copy_store_and_expunge_of_that_uid() {
    let server = without(&["MOVE"]);
    servers::changes(
        &server,
        &Expect {
            move_command: false,
            ..full()
        },
        &[],
    );
}

#[test]
fn without_uidplus_moves_use_move_appends_are_found_and_expunges_are_refused() {
    let server = without(&["UIDPLUS"]);
    let mut client = server.client("alice").unwrap();
    let plain = sample("plain");
    fixture::append(&mut client, "INBOX", &plain.raw, &[]).unwrap();
    let mount = MountSpec::on(&server, "alice").mount();

    // A new file is stored and shown as itself. (Dovecot sends APPENDUID even when it does
    // not announce UIDPLUS; finding the message by Message-ID without it is tested on the
    // core: `without_appenduid_a_stored_file_finds_its_message_by_message_id`.)
    fs::write(mount.join("INBOX/notes.txt"), b"remember the milk\n").unwrap();
    assert_eq!(messages(&server, "INBOX").len(), 2, "{}", mount.log());
    assert!(listed(&mount, "INBOX").iter().any(|n| n == "notes.txt"));
    assert_eq!(
        fs::read(mount.join("INBOX/notes.txt")).unwrap(),
        b"remember the milk\n"
    );

    // MOVE needs no UIDPLUS.
    let msg = mount.message_dir("INBOX", &plain.subject);
    servers::sh_ok(
        &format!("mv {} {}", shq(&msg), shq(&mount.join("Archive"))),
        &mount,
    );
    assert_eq!(messages(&server, "Archive").len(), 1);

    // rm -r moves to Trash, by MOVE; in Trash it would expunge, and a plain EXPUNGE would
    // also erase what other clients marked \Deleted: refused, and nothing is sent.
    let moved = mount.message_dir("Archive", &plain.subject);
    ok(&mount, "rm -r", fs::remove_dir_all(&moved));
    assert_eq!(messages(&server, "Trash").len(), 1);
    let in_trash = mount.message_dir("Trash", &plain.subject);
    let before = sent_commands(&mount).len();
    let out = sh(&format!("rm -r {}", shq(&in_trash)));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not permitted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = sent_commands(&mount)[before..].to_vec();
    assert!(
        !after
            .iter()
            .any(|c| c.contains("EXPUNGE") || c == "UID STORE"),
        "sent {after:?}"
    );
    assert_eq!(messages(&server, "Trash").len(), 1);
    drop(mount);
    // --delete=expunge the same way, wherever the message is.
    let mount = MountSpec::on(&server, "alice")
        .args(&["--delete", "expunge"])
        .mount();
    let in_trash = mount.message_dir("Trash", &plain.subject);
    assert_eq!(errno(fs::remove_dir_all(&in_trash)), Some(libc::EPERM));
    assert_eq!(messages(&server, "Trash").len(), 1);
}

#[test]
fn without_move_and_uidplus_a_move_is_refused_and_nothing_changes() {
    let server = without(&["MOVE", "UIDPLUS"]);
    let mut client = server.client("alice").unwrap();
    let plain = sample("plain");
    fixture::append(&mut client, "INBOX", &plain.raw, &[]).unwrap();
    let mount = MountSpec::on(&server, "alice").mount();
    let msg = mount.message_dir("INBOX", &plain.subject);
    let target = mount.join("Archive").join(msg.file_name().unwrap());
    assert_eq!(errno(fs::rename(&msg, &target)), Some(libc::EPERM));
    assert_eq!(messages(&server, "INBOX").len(), 1);
    assert!(messages(&server, "Archive").is_empty());
    let sent = sent_commands(&mount);
    assert!(
        !sent.iter().any(|c| c == "UID COPY" || c == "UID MOVE"),
        "{sent:?}"
    );
    assert!(mount.log().contains("neither MOVE nor UIDPLUS"));
}

/// Lists INBOX until it holds `count` messages (listings are fresh for a second).
fn wait_for_count(mount: &Mount, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = listed(mount, "INBOX").len();
        if n == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "INBOX shows {n} entries, not {count}\n{}",
            mount.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Another client's new message shows at a later listing; `left_out` is not used.
fn changes_elsewhere_show(server: &Dovecot, forbidden: &[&str]) {
    let mut client = server.client("alice").unwrap();
    let plain = sample("plain");
    fixture::append(&mut client, "INBOX", &plain.raw, &[]).unwrap();
    let mount = MountSpec::on(server, "alice").mount();
    wait_for_count(&mount, 1);
    fixture::append(&mut client, "INBOX", &plain.raw, &["\\Seen"]).unwrap();
    wait_for_count(&mount, 2);
    for line in sent_lines(&mount) {
        let upper = line.to_ascii_uppercase();
        for word in forbidden {
            assert!(!upper.contains(word), "sent {line:?}");
        }
    }
}

#[test]
fn without_condstore_and_qresync_every_listing_fetches_again() {
    let server = without(&["CONDSTORE", "QRESYNC"]);
    changes_elsewhere_show(&server, &["CONDSTORE", "QRESYNC", "MODSEQ", "CHANGEDSINCE"]);
}

#[test]
fn without_enable_condstore_is_not_enabled() {
    let server = without(&["ENABLE"]);
    changes_elsewhere_show(&server, &["ENABLE"]);
}

#[test]
fn without_esearch_search_uses_plain_uid_search() {
    let server = without(&["ESEARCH"]);
    servers::add_samples(&server);
    servers::search(&server);
    // The scenario's mount is gone; one more to look at what it sends.
    let mount = MountSpec::on(&server, "alice").mount();
    assert_eq!(listed(&mount, "INBOX/.search/subject:greeting").len(), 1);
    let searches: Vec<String> = sent_lines(&mount)
        .into_iter()
        .filter(|l| l.contains("SEARCH"))
        .collect();
    assert!(!searches.is_empty());
    assert!(
        searches.iter().all(|l| !l.contains("RETURN")),
        "{searches:?}"
    );
}

/// The synchronizing literals imapfs sent (each `+` it waited for, as its log shows) and
/// the commands they belonged to.
fn literal_waits(mount: &Mount) -> (usize, Vec<String>) {
    let log = mount.log();
    let waits = log.matches("S: + (go ahead with the literal)").count();
    let with_literals = sent_lines(mount)
        .into_iter()
        .filter(|l| l.contains('{'))
        .collect();
    (waits, with_literals)
}

#[test]
fn without_literal_plus_literals_wait_for_the_continuation() {
    for (left_out, search_waits) in [(&["LITERAL+"][..], true), (&[][..], false)] {
        let server = without(left_out);
        servers::add_samples(&server);
        let mount = MountSpec::on(&server, "alice").mount();
        // Non-ASCII search text goes as a literal; APPEND's is always synchronizing.
        let hits = listed(&mount, "INBOX/.search/subject:crème");
        assert_eq!(hits.len(), 1, "{hits:?}\n{}", mount.log());
        let (waits_after_search, sent) = literal_waits(&mount);
        assert!(sent.iter().any(|l| l.contains("SEARCH")), "{sent:?}");
        assert_eq!(
            waits_after_search > 0,
            search_waits,
            "{left_out:?}: {sent:?}"
        );
        fs::write(mount.join("INBOX/notes.txt"), b"literal\n").unwrap();
        assert!(listed(&mount, "INBOX").iter().any(|n| n == "notes.txt"));
        let (waits, _) = literal_waits(&mount);
        assert_eq!(
            waits,
            waits_after_search + 1,
            "{left_out:?}: APPEND waits once"
        );
    }
}

#[test]
fn without_binary_parts_are_fetched_as_stored_and_decoded_here() {
    let server = without(&["BINARY"]);
    servers::add_samples(&server);
    servers::read_back(
        &server,
        &Expect {
            binary: false,
            ..full()
        },
    );
}

#[test]
fn without_list_status_and_compress_the_tree_and_reads_work() {
    let server = without(&["LIST-STATUS", "COMPRESS=DEFLATE", "NOTIFY", "IDLE"]);
    servers::add_samples(&server);
    servers::tree_without_prefix(&server);
    let mount = MountSpec::on(&server, "alice").mount();
    let dir = mount.message_dir("INBOX", "Plain text greeting");
    assert_eq!(
        fs::read(dir.join("message.eml")).unwrap(),
        sample("plain").raw
    );
    for line in sent_lines(&mount) {
        assert!(
            !line.contains("RETURN (STATUS") && !line.contains("COMPRESS"),
            "sent {line:?}"
        );
    }
}

#[test]
fn without_special_use_trash_is_found_by_name() {
    let server = Dovecot::start(DovecotOptions {
        imap_capability: Some(capabilities_without(&["SPECIAL-USE"])),
        special_use: false,
        ..DovecotOptions::default()
    })
    .unwrap();
    servers::changes(
        &server,
        &Expect {
            special_use: false,
            ..full()
        },
        &[],
    );
}

#[test]
fn trash_chooses_where_deleted_messages_go() {
    let server = Dovecot::start(DovecotOptions {
        special_use: false,
        ..DovecotOptions::default()
    })
    .unwrap();
    let mut client = server.client("alice").unwrap();
    fixture::create_mailbox(&mut client, "Corbeille").unwrap();
    let plain = sample("plain");
    fixture::append(&mut client, "INBOX", &plain.raw, &[]).unwrap();
    let mount = MountSpec::on(&server, "alice")
        .args(&["--trash", "Corbeille"])
        .mount();
    let msg = mount.message_dir("INBOX", &plain.subject);
    ok(&mount, "rm -r", fs::remove_dir_all(&msg));
    assert_eq!(messages(&server, "Corbeille").len(), 1);
    assert!(messages(&server, "Trash").is_empty());
    drop(mount);
    // A --trash that is not a mailbox refuses deletes instead of guessing.
    fixture::append(&mut client, "INBOX", &plain.raw, &[]).unwrap();
    let mount = MountSpec::on(&server, "alice")
        .args(&["--trash", "Nowhere"])
        .mount();
    let msg = mount.message_dir("INBOX", &plain.subject);
    assert_eq!(errno(fs::remove_dir_all(&msg)), Some(libc::EPERM));
    assert_eq!(messages(&server, "INBOX").len(), 1);
}

/// Dovecot with `namespace`: (delimiter, prefix).
fn with_namespace(delimiter: char, prefix: &str) -> Dovecot {
    Dovecot::start(DovecotOptions {
        namespace: (delimiter, prefix.into()),
        ..DovecotOptions::default()
    })
    .unwrap()
}

#[test]
fn a_dot_delimiter_splits_names_and_refuses_dots_in_new_ones() {
    let server = with_namespace('.', "");
    servers::add_samples(&server);
    servers::tree_without_prefix(&server);
    servers::mailbox_changes(&server);
}

#[test]
fn the_inbox_prefix_is_not_shown_and_new_mailboxes_get_it() {
    let server = with_namespace('.', "INBOX.");
    servers::add_samples(&server);
    servers::tree_without_prefix(&server);
    servers::mailbox_changes(&server);
    servers::changes(&with_namespace('.', "INBOX."), &full(), &[]);
    // INBOX has no mailboxes of its own on such a server: mkdir under it is refused.
    let mount = MountSpec::on(&server, "alice").mount();
    assert_eq!(
        errno(fs::create_dir(mount.join("INBOX/Sub"))),
        Some(libc::EINVAL)
    );
}

#[test]
fn hide_virtual_folders_leaves_all_mail_out_of_walks() {
    let server = Dovecot::start(DovecotOptions {
        all_mail: vec!["All Mail".into()],
        ..DovecotOptions::default()
    })
    .unwrap();
    let plain = sample("plain");
    let mut client = server.client("alice").unwrap();
    fixture::append(&mut client, "INBOX", &plain.raw, &[]).unwrap();
    fixture::append(&mut client, "All Mail", &plain.raw, &[]).unwrap();

    let shown = MountSpec::on(&server, "alice").mount();
    assert!(listed(&shown, "").contains("All Mail"));
    assert_eq!(
        listed(&shown, ".search/subject:greeting"),
        ["All Mail", "INBOX"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    drop(shown);

    let hidden = MountSpec::on(&server, "alice")
        .args(&["--hide-virtual-folders"])
        .mount();
    let root = listed(&hidden, "");
    assert!(
        !root.contains("All Mail") && root.contains("INBOX"),
        "{root:?}"
    );
    // Reachable by name, and what it holds reads as usual.
    let dir = hidden.message_dir("All Mail", &plain.subject);
    assert_eq!(fs::read(dir.join("message.eml")).unwrap(), plain.raw);
    assert_eq!(
        listed(&hidden, ".search/subject:greeting"),
        ["INBOX"].iter().map(|s| s.to_string()).collect()
    );
    let out = sh(&format!(
        "find {} -name message.eml | wc -l",
        shq(&hidden.path)
    ));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
}
