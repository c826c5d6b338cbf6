//! New files written the way tools write them: shells that dup and close a descriptor
//! before writing, editors and rsync that write a temporary name and rename it, files
//! rewritten after they were stored, and temporary files that are never stored.

use super::local_changes::copy_dir_in;
use super::*;

/// A file written into `dir` as `open(O_CREAT)`, `close` of a dup'ed descriptor, then the
/// writes, then the last close: what `echo x > file` does.
fn shell_write(h: &Harness, dir: u64, name: &str, data: &[u8]) -> u64 {
    let (attr, fh) = h.fs.create(dir, OsStr::new(name)).unwrap();
    let ino = attr.attr.ino;
    h.fs.flush(ino, fh).unwrap(); // the first descriptor closed before anything is written
    h.fs.write(ino, fh, 0, data).unwrap();
    h.fs.flush(ino, fh).unwrap();
    h.fs.release(ino, fh).unwrap();
    ino
}

/// The files of the only message stored in `mailbox`: its Subject and the attachment.
fn only_stored(h: &Harness, mailbox: &str) -> (String, Vec<u8>, MessageMeta) {
    let stored = h.stored(mailbox);
    assert_eq!(stored.len(), 1, "exactly one message: {stored:?}");
    let meta = stored[0].clone();
    let subject = String::from_utf8(meta.subject.clone().unwrap()).unwrap();
    let validity = h.store.uid_validity(mailbox);
    let attachment = h
        .store
        .fetch_section(
            &MailboxId::new(mailbox),
            validity,
            meta.uid,
            &Section(vec![2]),
            Transfer::Decoded,
            None,
        )
        .unwrap();
    (subject, attachment, meta)
}

#[test]
fn a_shell_redirection_stores_one_message_with_exactly_the_bytes_written() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    shell_write(&h, inbox, "hello.txt", b"x\n");
    assert_eq!(h.count(Op::Append), 1);
    let (subject, attachment, _) = only_stored(&h, "INBOX");
    assert_eq!(subject, "hello.txt");
    assert_eq!(attachment, b"x\n");
}

#[test]
fn a_file_renamed_before_it_is_stored_is_stored_once_under_its_final_name() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    // rsync: a hidden temporary name, written, closed, dated, then renamed.
    let (attr, fh) = h.fs.create(inbox, OsStr::new(".notes.txt.KWEOd0")).unwrap();
    let ino = attr.attr.ino;
    h.fs.write(ino, fh, 0, b"my notes\n").unwrap();
    h.fs.flush(ino, fh).unwrap();
    h.fs.release(ino, fh).unwrap();
    assert_eq!(h.count(Op::Append), 0, "a dotfile waits for its real name");
    let mtime = UNIX_EPOCH + Duration::new(1_650_000_000, 250_000_000);
    h.fs.setattr(ino, None, true, None, Some(mtime)).unwrap();
    h.fs.rename(
        inbox,
        OsStr::new(".notes.txt.KWEOd0"),
        inbox,
        OsStr::new("notes.txt"),
        false,
        false,
    )
    .unwrap();
    assert_eq!(h.count(Op::Append), 1);
    let (subject, attachment, meta) = only_stored(&h, "INBOX");
    assert_eq!(subject, "notes.txt");
    assert_eq!(attachment, b"my notes\n");
    assert_eq!(
        meta.internal_date,
        UNIX_EPOCH + Duration::from_secs(1_650_000_000),
        "the mtime set before storing is the INTERNALDATE"
    );
    assert_eq!(h.fs.getattr(ino).unwrap().attr.mtime, mtime);
}

#[test]
fn a_file_renamed_after_it_was_stored_is_stored_again_and_the_first_expunged() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    shell_write(&h, inbox, "draft.txt", b"v1");
    h.fs.rename(
        inbox,
        OsStr::new("draft.txt"),
        inbox,
        OsStr::new("final.txt"),
        false,
        false,
    )
    .unwrap();
    assert_eq!(h.count(Op::Append), 2);
    assert_eq!(h.count(Op::ExpungeMessage), 1);
    let (subject, attachment, _) = only_stored(&h, "INBOX");
    assert_eq!(subject, "final.txt");
    assert_eq!(attachment, b"v1");
}

#[test]
fn a_file_rewritten_after_it_was_stored_replaces_its_message() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    let (attr, fh) = h.fs.create(inbox, OsStr::new("log.txt")).unwrap();
    let ino = attr.attr.ino;
    h.fs.write(ino, fh, 0, b"one").unwrap();
    h.fs.flush(ino, fh).unwrap();
    h.fs.write(ino, fh, 3, b" two").unwrap();
    h.fs.flush(ino, fh).unwrap();
    h.fs.release(ino, fh).unwrap();
    assert_eq!(h.count(Op::Append), 2);
    let (_, attachment, _) = only_stored(&h, "INBOX");
    assert_eq!(attachment, b"one two");
}

#[test]
fn temporary_and_empty_files_are_never_stored_but_stay_visible() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    let temporary = [
        ".notes.txt.swp",
        "notes.txt~",
        "4913",
        ".#notes.txt",
        "notes.lock",
        ".~lock.notes.odt#",
    ];
    for name in temporary {
        shell_write(&h, inbox, name, b"scratch");
    }
    let (attr, fh) = h.fs.create(inbox, OsStr::new("empty.txt")).unwrap();
    h.fs.flush(attr.attr.ino, fh).unwrap();
    h.fs.release(attr.attr.ino, fh).unwrap();
    assert_eq!(h.count(Op::Append), 0);
    let names = h.names(inbox).unwrap();
    for name in temporary.iter().chain(&["empty.txt"]) {
        assert!(names.contains(&name.to_string()), "{name} in {names:?}");
    }
    // Removing them is local too.
    for name in temporary {
        h.fs.unlink(inbox, OsStr::new(name)).unwrap();
    }
    assert_eq!(h.change_calls(), 0);
}

#[test]
fn a_vim_save_stores_one_message() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    // vim: swap file, the 4913 probe, then the file itself; the swap file goes at exit.
    shell_write(&h, inbox, ".memo.txt.swp", b"swap");
    shell_write(&h, inbox, "4913", b"");
    h.fs.unlink(inbox, OsStr::new("4913")).unwrap();
    shell_write(&h, inbox, "memo.txt", b"hello\n");
    h.fs.unlink(inbox, OsStr::new(".memo.txt.swp")).unwrap();
    assert_eq!(h.count(Op::Append), 1);
    let (subject, attachment, _) = only_stored(&h, "INBOX");
    assert_eq!(
        (subject.as_str(), attachment.as_slice()),
        ("memo.txt", &b"hello\n"[..])
    );
}

#[test]
fn a_stored_file_removed_deletes_its_message() {
    let h = Harness::new();
    h.store
        .add_mailbox("Trash", Some('/'), true, Some("\\Trash"));
    let inbox = h.ino("INBOX").unwrap();
    shell_write(&h, inbox, "oops.txt", b"never mind");
    h.fs.unlink(inbox, OsStr::new("oops.txt")).unwrap();
    assert!(h.stored("INBOX").is_empty());
    assert_eq!(h.stored("Trash").len(), 1);
}

/// `mv note.txt ../Archive/` right after writing it (before INBOX is listed again): its
/// message moves there (`UID MOVE`) and the name resolves in Archive; renamed on the way,
/// or not stored yet, it is EXDEV (mv then copies it there and removes it here).
#[test]
fn a_stored_new_file_moved_to_another_mailbox_moves_its_message() {
    let h = Harness::new();
    h.store.add_mailbox("Archive", Some('/'), true, None);
    let inbox = h.ino("INBOX").unwrap();
    let archive = h.ino("Archive").unwrap();
    shell_write(&h, inbox, "note.txt", b"filed\n");
    let name = OsStr::new("note.txt");
    let renamed =
        h.fs.rename(inbox, name, archive, OsStr::new("other.txt"), false, false);
    assert_eq!(errno(renamed), libc::EXDEV);
    let (attr, fh) = h.fs.create(inbox, OsStr::new("open.txt")).unwrap();
    h.fs.write(attr.attr.ino, fh, 0, b"still open").unwrap();
    let open = OsStr::new("open.txt");
    assert_eq!(
        errno(h.fs.rename(inbox, open, archive, open, false, false)),
        libc::EXDEV
    );
    let appends = h.count(Op::Append);
    h.fs.rename(inbox, name, archive, name, false, false)
        .unwrap();
    assert_eq!(h.count(Op::Append), appends, "moved, not sent again");
    assert_eq!(only_stored(&h, "Archive").1, b"filed\n");
    assert!(!h.names(inbox).unwrap().contains(&"note.txt".to_string()));
    assert!(h.fs.lookup(archive, name).is_ok());
}

/// A file manager's "Move to Trash" of a file written here: its message goes to Trash.
#[test]
fn a_stored_new_file_moved_to_the_trash_folder_goes_to_trash() {
    let h = Harness::new();
    h.store
        .add_mailbox("Trash", Some('/'), true, Some("\\Trash"));
    let inbox = h.ino("INBOX").unwrap();
    shell_write(&h, inbox, "note.txt", b"bin me");
    let files = h.trash_files();
    let name = OsStr::new("note.txt");
    h.fs.rename(inbox, name, files, name, false, false).unwrap();
    assert!(h.stored("INBOX").is_empty());
    assert_eq!(only_stored(&h, "Trash").1, b"bin me");
    assert!(!h.names(inbox).unwrap().contains(&"note.txt".to_string()));
}

/// `rm -r` of a mailbox that holds a stored file: it removes the file (its message goes to
/// Trash); the message directory is not listed beside it, and if a walk held it from an
/// older listing, it is an empty directory that `rmdir` removes; then the mailbox.
#[test]
fn rm_r_of_a_mailbox_with_a_stored_file_removes_both_its_names() {
    let h = Harness::new();
    h.store
        .add_mailbox("Trash", Some('/'), true, Some("\\Trash"));
    h.store.add_mailbox("Work", Some('/'), true, None);
    let work = h.ino("Work").unwrap();
    shell_write(&h, work, "note.txt", b"a note");
    h.expire_listings();
    let uid = h.stored("Work")[0].uid;
    let dir_name = format!("{uid} note.txt");
    assert_eq!(h.names(work).unwrap(), ["note.txt".to_string()]);
    // The kernel holds the directory (an older walk): after the file's removal that inode
    // is the empty directory too, not the message now in Trash.
    let held = h.fs.lookup(work, OsStr::new(&dir_name)).unwrap().attr.ino;
    h.fs.unlink(work, OsStr::new("note.txt")).unwrap();
    assert_eq!(h.stored("Trash").len(), 1);
    assert!(h.names(held).unwrap().is_empty());
    let dir = h.fs.lookup(work, OsStr::new(&dir_name)).unwrap();
    assert_eq!(dir.attr.kind, Kind::Directory);
    assert!(h.names(dir.attr.ino).unwrap().is_empty());
    assert!(h.names(work).unwrap().is_empty(), "never listed");
    h.fs.rmdir(work, OsStr::new(&dir_name)).unwrap();
    assert_eq!(
        errno(h.fs.lookup(work, OsStr::new(&dir_name))),
        libc::ENOENT
    );
    h.fs.rmdir(ROOT, OsStr::new("Work")).unwrap();
    assert_eq!(h.stored("Trash").len(), 1, "nothing else removed");
}

/// Without UIDPLUS there is no APPENDUID: the new message is found by its Message-ID, so
/// the file still knows its message and removing it moves that message to Trash.
#[test]
fn without_appenduid_a_stored_file_finds_its_message_by_message_id() {
    let h = Harness::new();
    h.store.set_capabilities(crate::store::Capabilities {
        move_command: true,
        uidplus: false,
        binary: true,
    });
    h.store
        .add_mailbox("Trash", Some('/'), true, Some("\\Trash"));
    let inbox = h.ino("INBOX").unwrap();
    shell_write(&h, inbox, "oops.txt", b"never mind");
    assert_eq!(h.stored("INBOX").len(), 1);
    assert_eq!(h.store.count(Op::Search), 1, "one search by Message-ID");
    h.fs.unlink(inbox, OsStr::new("oops.txt")).unwrap();
    assert!(h.stored("INBOX").is_empty());
    assert_eq!(h.stored("Trash").len(), 1);
    assert_eq!(h.store.count(Op::MoveMessage), 1);
}

#[test]
fn a_stored_file_declares_its_media_type() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    shell_write(&h, inbox, "scan", b"%PDF-1.7\n%\xe2\xe3\n");
    let stored = h.stored("INBOX");
    let structure = h
        .store
        .body_structure(
            &MailboxId::new("INBOX"),
            h.store.uid_validity("INBOX"),
            stored[0].uid,
        )
        .unwrap();
    let crate::store::BodyPart::Multipart { children, .. } = structure else {
        panic!("a wrapped file is multipart")
    };
    let header = children[1].header();
    assert_eq!(
        (header.media_type.as_str(), header.subtype.as_str()),
        ("application", "pdf")
    );
}

/// A file imapfs stored shows as that file again once the mailbox is listed anew: same
/// name, size and mtime (what rsync compares), same bytes. Its message directory is not
/// listed (a second `rsync --delete` removed it, and the file with it), but is there by
/// name.
#[test]
fn a_stored_file_shows_as_itself_after_the_next_listing() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    let (attr, fh) = h.fs.create(inbox, OsStr::new("notes.txt")).unwrap();
    let ino = attr.attr.ino;
    h.fs.write(ino, fh, 0, b"my notes\n").unwrap();
    let mtime = UNIX_EPOCH + Duration::new(1_650_000_000, 250_000_000);
    h.fs.setattr(ino, None, true, None, Some(mtime)).unwrap();
    h.fs.flush(ino, fh).unwrap();
    h.fs.release(ino, fh).unwrap();
    h.expire_listings();
    let names = h.names(inbox).unwrap();
    let uid = h.stored("INBOX")[0].uid;
    assert_eq!(names, ["notes.txt".to_string()]);
    let dir = h.fs.lookup(inbox, OsStr::new(&format!("{uid} notes.txt")));
    assert_eq!(dir.unwrap().attr.kind, Kind::Directory);
    let file = h.fs.lookup(inbox, OsStr::new("notes.txt")).unwrap();
    assert_eq!(file.attr.kind, Kind::File);
    assert_eq!((file.attr.size, file.attr.mtime), (9, mtime));
    assert_eq!(h.read_all(file.attr.ino).unwrap(), b"my notes\n");
}

/// Anyone can send a message with an `X-Imapfs-File` header. One whose time cannot be a
/// time, or whose file would be bigger than the message holding it, is not a stored file:
/// it lists as a message directory, and nothing panics or reads a claimed size whole.
#[test]
fn a_forged_x_imapfs_file_header_lists_as_a_plain_message() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    let forged = |header: &str| {
        format!("From: a@example.org\r\nSubject: forged\r\nX-Imapfs-File: {header}\r\n\r\nbody\r\n")
    };
    for header in [
        "size=1; mtime=18446744073709551615.1000000000; name=a.txt",
        "size=1099511627776; mtime=1.000000000; name=b.txt",
    ] {
        h.store
            .add_message("INBOX", forged(header).as_bytes(), &[], UNIX_EPOCH);
    }
    h.expire_listings();
    let names = h.names(inbox).unwrap();
    assert!(
        names.iter().all(|n| n.ends_with(" forged")),
        "only message directories: {names:?}"
    );
    assert_eq!(names.len(), 2, "{names:?}");
}

/// A stored file whose name is another message's directory name (`2 r.txt` beside UID 2,
/// `r.txt`): each name shows once and opens as what the listing shows. The directory of a
/// message shown as its file is not listed, so the file keeps the name; a listed message
/// directory keeps it from a file, whose own directory is listed then (`cat` of the file
/// found a directory, and both were listed).
#[test]
fn a_stored_file_named_as_a_message_directory_shows_once_by_each_name() {
    let h = Harness::new();
    for mailbox in ["Box", "Mail"] {
        h.store.add_mailbox(mailbox, Some('/'), true, None);
    }
    let boxed = h.ino("Box").unwrap();
    shell_write(&h, boxed, "2 r.txt", b"one\n");
    shell_write(&h, boxed, "r.txt", b"two\n");
    assert_eq!(
        h.stored("Box").iter().map(|m| m.uid.0).collect::<Vec<_>>(),
        [1, 2]
    );
    h.expire_listings();
    assert_eq!(h.names(boxed).unwrap(), ["2 r.txt", "r.txt"]);
    assert_eq!(h.read_path("Box/2 r.txt").unwrap(), b"one\n");
    assert_eq!(h.read_path("Box/r.txt").unwrap(), b"two\n");

    let mail = h.ino("Mail").unwrap();
    shell_write(&h, mail, "2 r.txt", b"mine\n");
    let plain = b"From: a@example.org\r\nSubject: r.txt\r\n\r\nplain\r\n";
    assert_eq!(h.store.add_message("Mail", plain, &[], date()).0, 2);
    h.expire_listings();
    let mut names = h.names(mail).unwrap();
    names.sort();
    assert_eq!(names, ["1 2 r.txt", "2 r.txt"]);
    let found = h.fs.lookup(mail, OsStr::new("2 r.txt")).unwrap();
    assert_eq!(found.attr.kind, Kind::Directory);
    assert_eq!(h.read_path("Mail/1 2 r.txt/2 r.txt").unwrap(), b"mine\n");
}

/// A name a listing would show otherwise once the file is stored (spaces at its ends are
/// trimmed, encoded words decoded, as in every name from the server) is refused at create
/// and rename (EINVAL): it was stored, then gone under its own name, and every `rsync
/// --delete` removed it and stored it again.
#[test]
fn a_file_name_that_would_not_read_back_is_refused() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    for name in [
        " lead.txt",
        "trail.txt ",
        "x =?utf-8?q?a?= y.txt",
        "tab\tend.txt",
    ] {
        assert_eq!(
            errno(h.fs.create(inbox, OsStr::new(name))),
            libc::EINVAL,
            "{name:?}"
        );
    }
    shell_write(&h, inbox, ".tmp", b"kept");
    assert_eq!(
        errno(h.fs.rename(
            inbox,
            OsStr::new(".tmp"),
            inbox,
            OsStr::new(" lead.txt"),
            false,
            false
        )),
        libc::EINVAL
    );
    shell_write(&h, inbox, "in the middle.txt", b"fine");
    h.expire_listings();
    assert_eq!(h.read_path("INBOX/in the middle.txt").unwrap(), b"fine");
}

/// `mv` of a stored file into another mailbox: under its own name where it is free, the
/// message moves; under another name or over a file there, EXDEV, so that `mv` copies it
/// (replacing that file) and removes it (a MOVE kept the message's own name and left the
/// file it should have replaced: `rsync --delay-updates` left both versions).
#[test]
fn a_stored_file_moved_to_another_name_or_over_a_file_is_copied() {
    let h = Harness::new();
    for mailbox in ["A", "B"] {
        h.store.add_mailbox(mailbox, Some('/'), true, None);
    }
    let (a, b) = (h.ino("A").unwrap(), h.ino("B").unwrap());
    for name in ["new.txt", "same.txt", "free.txt"] {
        shell_write(&h, a, name, name.as_bytes());
    }
    shell_write(&h, b, "config.txt", b"old config");
    shell_write(&h, b, "same.txt", b"old same");
    h.expire_listings();
    h.names(a).unwrap();
    h.names(b).unwrap();
    let mv = |from: &str, to: &str| {
        h.fs.rename(a, OsStr::new(from), b, OsStr::new(to), false, false)
    };
    assert_eq!(errno(mv("new.txt", "config.txt")), libc::EXDEV);
    assert_eq!(errno(mv("same.txt", "same.txt")), libc::EXDEV);
    let moves = h.count(Op::MoveMessage);
    mv("free.txt", "free.txt").unwrap();
    assert_eq!(h.count(Op::MoveMessage), moves + 1);
    h.expire_listings();
    assert_eq!(h.names(b).unwrap(), ["config.txt", "free.txt", "same.txt"]);
    assert_eq!(h.read_path("B/config.txt").unwrap(), b"old config");
    // A file just written here, onto a file of its name there (rsync --delay-updates).
    shell_write(&h, a, "fresh.txt", b"new version");
    shell_write(&h, b, "fresh.txt", b"old version");
    assert_eq!(errno(mv("fresh.txt", "fresh.txt")), libc::EXDEV);
}

/// `rm` of a message when another client has deleted Trash: EIO (nothing was moved), not
/// ENOENT, which `rm -rf` and `rsync --delete` take for "already removed".
#[test]
fn rm_with_the_trash_gone_is_eio_not_enoent() {
    let h = Harness::new();
    h.store
        .add_mailbox("Trash", Some('/'), true, Some("\\Trash"));
    let sample = Sample::numbered(1);
    let uid = h.store.add_message("INBOX", &sample.raw, &[], date());
    let inbox = h.ino("INBOX").unwrap();
    let name = sample.dir_name(uid);
    let dir = h.ino(&format!("INBOX/{name}")).unwrap();
    h.store.delete_elsewhere("Trash").unwrap();
    for file in h.names(dir).unwrap() {
        h.fs.unlink(dir, OsStr::new(&file)).unwrap();
    }
    assert_eq!(errno(h.fs.rmdir(inbox, OsStr::new(&name))), libc::EIO);
    assert_eq!(h.stored("INBOX").len(), 1, "the message stays");
}

/// A file-born message whose `X-Imapfs-File` size is not its part's (anyone can mail one):
/// reading the file is EIO every time, also once the part is cached through its message
/// directory (it read short, or a prefix served as the whole file).
#[test]
fn a_stored_file_whose_part_is_not_its_claimed_size_is_eio_at_every_read() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    shell_write(&h, inbox, "real.txt", b"hello file\n");
    let uid = h.stored("INBOX")[0].uid;
    let raw = String::from_utf8(h.stored_raw("INBOX", uid)).unwrap();
    let claims = [("long.txt", 40u64), ("short.txt", 5)];
    for (name, claim) in claims {
        let forged = raw
            .replace("size=11;", &format!("size={claim};"))
            .replace("real.txt", name);
        assert!(forged.contains(&format!("size={claim};")), "{raw}");
        h.store
            .add_message("INBOX", forged.as_bytes(), &[], UNIX_EPOCH);
    }
    h.expire_listings();
    for (name, claim) in claims {
        let file = h.fs.lookup(inbox, OsStr::new(name)).unwrap();
        assert_eq!(file.attr.size, claim);
        assert_eq!(errno(h.read_all(file.attr.ino)), libc::EIO, "{name}, cold");
        let uid =
            h.fs.getxattr(file.attr.ino, OsStr::new(crate::fs::xattr::UID))
                .unwrap();
        let uid = String::from_utf8(uid).unwrap();
        let part = h.read_path(&format!("INBOX/{uid} {name}/{name}")).unwrap();
        assert_eq!(part, b"hello file\n");
        assert_eq!(
            errno(h.read_all(file.attr.ino)),
            libc::EIO,
            "{name}, cached"
        );
    }
    assert_eq!(h.read_path("INBOX/real.txt").unwrap(), b"hello file\n");
}

/// rsync's update of a file: a temporary name written and renamed onto the old one. The
/// old message goes once the new one is stored.
#[test]
fn a_file_renamed_onto_a_stored_file_replaces_its_message() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    shell_write(&h, inbox, "notes.txt", b"old");
    h.expire_listings();
    h.names(inbox).unwrap();
    shell_write(&h, inbox, ".notes.txt.Ab12Cd", b"new");
    h.fs.rename(
        inbox,
        OsStr::new(".notes.txt.Ab12Cd"),
        inbox,
        OsStr::new("notes.txt"),
        false,
        false,
    )
    .unwrap();
    let (subject, attachment, _) = only_stored(&h, "INBOX");
    assert_eq!(
        (subject.as_str(), attachment.as_slice()),
        ("notes.txt", &b"new"[..])
    );
    h.expire_listings();
    assert_eq!(h.read_path("INBOX/notes.txt").unwrap(), b"new");
}

/// `cp` over a stored file, and `>>` onto one: a new version replaces the message.
#[test]
fn a_stored_file_opened_for_writing_becomes_its_next_version() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    shell_write(&h, inbox, "log.txt", b"one\n");
    h.expire_listings();
    h.names(inbox).unwrap();
    let ino = h.fs.lookup(inbox, OsStr::new("log.txt")).unwrap().attr.ino;
    // Appending keeps what was there.
    let fh = h.fs.open_with(ino, true, false).unwrap().fh;
    h.fs.write(ino, fh, 4, b"two\n").unwrap();
    h.fs.flush(ino, fh).unwrap();
    h.fs.release(ino, fh).unwrap();
    let (_, attachment, _) = only_stored(&h, "INBOX");
    assert_eq!(attachment, b"one\ntwo\n");
    // Truncating starts afresh.
    h.expire_listings();
    h.names(inbox).unwrap();
    let ino = h.fs.lookup(inbox, OsStr::new("log.txt")).unwrap().attr.ino;
    let fh = h.fs.open_with(ino, true, true).unwrap().fh;
    h.fs.write(ino, fh, 0, b"three\n").unwrap();
    h.fs.flush(ino, fh).unwrap();
    h.fs.release(ino, fh).unwrap();
    let (_, attachment, _) = only_stored(&h, "INBOX");
    assert_eq!(attachment, b"three\n");
}

/// A stored file opened for writing but not written (`: >> f`, `touch f`, a shell's `>>`
/// whose first descriptor closes before the write) is not sent again; `>>` with bytes
/// sends exactly one new version, which keeps the flags of the one it replaces.
#[test]
fn a_stored_file_opened_and_closed_unwritten_or_touched_is_not_sent_again() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    // Written and dated long ago, as by cp -p.
    let (attr, fh) = h.fs.create(inbox, OsStr::new("log.txt")).unwrap();
    let long_ago = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    h.fs.write(attr.attr.ino, fh, 0, b"one\n").unwrap();
    h.fs.setattr(attr.attr.ino, Some(fh), true, None, Some(long_ago))
        .unwrap();
    h.fs.flush(attr.attr.ino, fh).unwrap();
    h.fs.release(attr.attr.ino, fh).unwrap();
    let relisted = || {
        h.expire_listings();
        h.names(inbox).unwrap();
        h.fs.lookup(inbox, OsStr::new("log.txt")).unwrap().attr.ino
    };
    let first = only_stored(&h, "INBOX").2;
    h.store
        .set_flags("INBOX", first.uid, &["\\Flagged", "$Todo"]);
    let appends = h.count(Op::Append);
    // : >> log.txt
    let ino = relisted();
    let fh = h.fs.open_with(ino, true, false).unwrap().fh;
    h.fs.flush(ino, fh).unwrap();
    h.fs.release(ino, fh).unwrap();
    // touch log.txt: open, the times, close.
    let ino = relisted();
    let fh = h.fs.open_with(ino, true, false).unwrap().fh;
    h.fs.setattr(ino, Some(fh), true, None, Some(SystemTime::now()))
        .unwrap();
    h.fs.flush(ino, fh).unwrap();
    h.fs.release(ino, fh).unwrap();
    // os.utime, without an open.
    let ino = relisted();
    h.fs.setattr(ino, None, true, None, Some(UNIX_EPOCH))
        .unwrap();
    assert_eq!(h.count(Op::Append), appends, "nothing sent again");
    assert_eq!(only_stored(&h, "INBOX").2.uid, first.uid);
    assert!(h.spool_is_empty(), "no copy left in the spool");
    // echo two >> log.txt
    let ino = relisted();
    let fh = h.fs.open_with(ino, true, false).unwrap().fh;
    h.fs.flush(ino, fh).unwrap();
    h.fs.write(ino, fh, 4, b"two\n").unwrap();
    h.fs.flush(ino, fh).unwrap();
    h.fs.release(ino, fh).unwrap();
    assert_eq!(h.count(Op::Append), appends + 1, "one new version");
    let (_, attachment, meta) = only_stored(&h, "INBOX");
    assert_eq!(attachment, b"one\ntwo\n");
    assert_ne!(meta.uid, first.uid);
    let mut flags = meta.flags.clone();
    flags.sort();
    assert_eq!(flags, ["$Todo", "\\Flagged"], "the flags went with it");
    assert!(meta.internal_date > long_ago, "a new version is dated now");
    // echo three >> log.txt, before INBOX is listed again: the flags go on.
    let fh = h.fs.open_with(ino, true, false).unwrap().fh;
    h.fs.write(ino, fh, 8, b"three\n").unwrap();
    h.fs.flush(ino, fh).unwrap();
    h.fs.release(ino, fh).unwrap();
    let (_, attachment, meta) = only_stored(&h, "INBOX");
    assert_eq!(attachment, b"one\ntwo\nthree\n");
    let mut flags = meta.flags.clone();
    flags.sort();
    assert_eq!(flags, ["$Todo", "\\Flagged"], "and on");
}

/// "Move to Trash" of a file not stored (still open here) is refused: its bytes are kept.
#[test]
fn a_new_file_not_stored_cannot_go_to_the_trash_folder() {
    let h = Harness::new();
    h.store
        .add_mailbox("Trash", Some('/'), true, Some("\\Trash"));
    let inbox = h.ino("INBOX").unwrap();
    let (attr, fh) = h.fs.create(inbox, OsStr::new("draft.txt")).unwrap();
    h.fs.write(attr.attr.ino, fh, 0, b"unsaved").unwrap();
    let files = h.trash_files();
    let name = OsStr::new("draft.txt");
    assert_eq!(
        errno(h.fs.rename(inbox, name, files, name, false, false)),
        libc::EPERM
    );
    assert_eq!(h.read_all(attr.attr.ino).unwrap(), b"unsaved");
}

/// `truncate -s` of a stored file by its path: no descriptor will close it, so its new
/// version is stored at once; to its own size, nothing is sent.
#[test]
fn a_stored_file_truncated_by_its_path_is_stored_at_once() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    shell_write(&h, inbox, "log.txt", b"one\ntwo\n");
    let relisted = || {
        h.expire_listings();
        h.names(inbox).unwrap();
        h.fs.lookup(inbox, OsStr::new("log.txt")).unwrap().attr.ino
    };
    let appends = h.count(Op::Append);
    let ino = relisted();
    h.fs.setattr(ino, None, true, Some(8), None).unwrap();
    assert_eq!(h.count(Op::Append), appends, "the same size: nothing");
    let ino = relisted();
    h.fs.setattr(ino, None, true, Some(4), None).unwrap();
    assert_eq!(h.count(Op::Append), appends + 1);
    assert_eq!(only_stored(&h, "INBOX").1, b"one\n");
    assert!(h.spool_is_empty(), "nothing left waiting in the spool");
}

/// `mv a.txt b.txt` of a stored file, after its mailbox was listed again: stored under the
/// new name, the old message expunged, as before the listing; its flags go with it.
#[test]
fn a_stored_file_renamed_within_its_mailbox_is_stored_under_the_new_name() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    shell_write(&h, inbox, "a.txt", b"same bytes");
    h.expire_listings();
    h.names(inbox).unwrap();
    let first = only_stored(&h, "INBOX").2;
    h.store.set_flags("INBOX", first.uid, &["\\Flagged"]);
    h.expire_listings();
    h.names(inbox).unwrap();
    h.fs.lookup(inbox, OsStr::new("a.txt")).unwrap();
    h.fs.rename(
        inbox,
        OsStr::new("a.txt"),
        inbox,
        OsStr::new("b.txt"),
        false,
        false,
    )
    .unwrap();
    let (subject, attachment, meta) = only_stored(&h, "INBOX");
    assert_eq!(
        (subject.as_str(), attachment.as_slice()),
        ("b.txt", &b"same bytes"[..])
    );
    assert_ne!(meta.uid, first.uid, "the old message expunged");
    assert_eq!(meta.flags, ["\\Flagged"]);
    h.expire_listings();
    let names = h.names(inbox).unwrap();
    assert!(names.contains(&"b.txt".to_string()) && !names.contains(&"a.txt".to_string()));
}

/// `>>` onto a stored file bigger than the pieces its bytes are copied in: the new version
/// holds every old byte, in order, then the new ones.
#[test]
fn a_big_stored_file_appended_to_keeps_every_byte() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    let old: Vec<u8> = (0..9 * 1024 * 1024 + 3).map(|i| (i % 251) as u8).collect();
    shell_write(&h, inbox, "big.bin", &old);
    h.expire_listings();
    h.names(inbox).unwrap();
    let ino = h.fs.lookup(inbox, OsStr::new("big.bin")).unwrap().attr.ino;
    let fh = h.fs.open_with(ino, true, false).unwrap().fh;
    h.fs.write(ino, fh, old.len() as u64, b"tail").unwrap();
    h.fs.flush(ino, fh).unwrap();
    h.fs.release(ino, fh).unwrap();
    let (_, attachment, _) = only_stored(&h, "INBOX");
    assert_eq!(attachment.len(), old.len() + 4);
    assert!(attachment[..old.len()] == old[..], "the old bytes are kept");
    assert_eq!(&attachment[old.len()..], b"tail");
}

/// `mv x.pdf y.pdf` while x.pdf's last close is still uploading it: the rename waits as
/// long as its call may, and when it cannot wait longer it fails with nothing changed:
/// y.pdf's message is not superseded, and the upload stores x.pdf under its own name.
/// Two closes at once (a child forked while the file was open closes it at its exec): the
/// one that waited for the other's store reports that store's failure, never success.
#[test]
fn a_close_that_waited_for_a_failed_store_fails_too() {
    let h = Arc::new(Harness::new());
    let inbox = h.ino("INBOX").unwrap();
    let (attr, fh) = h.fs.create(inbox, OsStr::new("big.txt")).unwrap();
    let ino = attr.attr.ino;
    h.fs.write(ino, fh, 0, b"too big").unwrap();
    let file = h.fs.new_files.get("INBOX", "big.txt").unwrap();
    let (held, is_held) = mpsc::channel();
    let (done, finish) = mpsc::channel::<()>();
    let storing = Arc::clone(&file);
    let other_close = std::thread::spawn(move || {
        let _storing = storing.hold_storing();
        held.send(()).unwrap();
        let _ = finish.recv();
        storing.mark_failed(true);
    });
    is_held.recv().unwrap();
    let closing = Arc::clone(&h);
    let closer = std::thread::spawn(move || closing.fs.flush(ino, fh));
    std::thread::sleep(Duration::from_millis(100));
    done.send(()).unwrap();
    other_close.join().unwrap();
    assert_eq!(errno(closer.join().unwrap()), libc::ENOSPC);
    assert_eq!(h.count(Op::Append), 0);
}

#[test]
fn a_rename_that_cannot_wait_for_an_upload_changes_nothing() {
    let h = Arc::new(Harness::new());
    let inbox = h.ino("INBOX").unwrap();
    shell_write(&h, inbox, "y.pdf", b"old y");
    h.expire_listings();
    h.names(inbox).unwrap();
    let y_uid = h.stored("INBOX")[0].uid;
    let (attr, fh) = h.fs.create(inbox, OsStr::new("x.pdf")).unwrap();
    let x = attr.attr.ino;
    h.fs.write(x, fh, 0, b"new x").unwrap();
    let file = h.fs.new_files.get("INBOX", "x.pdf").unwrap();
    // The upload of x.pdf under way: its last close waits on it.
    let (held, is_held) = mpsc::channel();
    let (done, finish) = mpsc::channel::<()>();
    let uploading = Arc::clone(&file);
    let uploader = std::thread::spawn(move || {
        let _storing = uploading.hold_storing();
        held.send(()).unwrap();
        let _ = finish.recv();
    });
    is_held.recv().unwrap();
    let closing = Arc::clone(&h);
    let closer = std::thread::spawn(move || closing.fs.release(x, fh));
    let renamed = {
        let _call = crate::call::enter(crate::call::Call::new(
            std::time::Instant::now() + Duration::from_millis(200),
            None,
        ));
        h.fs.rename(
            inbox,
            OsStr::new("x.pdf"),
            inbox,
            OsStr::new("y.pdf"),
            false,
            false,
        )
    };
    assert!(renamed.is_err(), "{renamed:?}");
    assert_eq!(file.name(), "x.pdf");
    assert!(file.superseded().is_empty(), "{:?}", file.superseded());
    done.send(()).unwrap();
    uploader.join().unwrap();
    closer.join().unwrap().unwrap();
    let stored: Vec<Uid> = h.stored("INBOX").iter().map(|m| m.uid).collect();
    assert!(
        stored.contains(&y_uid),
        "y.pdf's message is kept: {stored:?}"
    );
    assert_eq!(stored.len(), 2, "{stored:?}");
}

#[test]
fn removing_a_stored_file_deletes_its_message() {
    let h = Harness::new();
    h.store
        .add_mailbox("Trash", Some('/'), true, Some("\\Trash"));
    let inbox = h.ino("INBOX").unwrap();
    shell_write(&h, inbox, "gone.txt", b"bye");
    h.expire_listings();
    h.names(inbox).unwrap();
    h.fs.unlink(inbox, OsStr::new("gone.txt")).unwrap();
    assert!(h.stored("INBOX").is_empty());
    assert_eq!(h.stored("Trash").len(), 1);
    assert!(h.names(inbox).unwrap().is_empty());
}

/// What a killed imapfs left in the spool: a file without a note is reported and kept; a
/// noted APPEND that landed is not sent again; one that did not land is sent, once.
#[test]
fn a_later_mount_stores_what_a_killed_one_was_sending_exactly_once() {
    use crate::fs::spool::Sending;
    let h = Harness::new();
    let spool = h.spool.path();
    let dead = |name: &str| spool.join(format!("999999999-1-0-{name}"));
    // Cut during writing: no note.
    std::fs::write(dead("half.txt"), b"half written").unwrap();
    // Cut during APPEND, and the server never got it.
    std::fs::write(dead("lost.txt"), b"lost bytes").unwrap();
    let mtime = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let note = |name: &str, message_id: &str, len: u64| Sending {
        mailbox: MailboxId::new("INBOX"),
        name: name.into(),
        message_len: len,
        internal_date: mtime,
        message_id: Some(message_id.into()),
        file_size: 10,
        mtime,
    };
    note("lost.txt", "<never@there>", 999)
        .record(&dead("lost.txt"))
        .unwrap();
    // Cut after the server stored it.
    let landed = plain_message("landed", "x");
    std::fs::write(dead("landed.eml"), &landed).unwrap();
    h.store.add_message("INBOX", &landed, &[], mtime);
    note("landed.eml", "<landed@x>", landed.len() as u64)
        .record(&dead("landed.eml"))
        .unwrap();

    let report = h.fs.recover_spool();
    assert_eq!(report.len(), 3, "{report:?}");
    assert_eq!(h.count(Op::Append), 1, "only the lost one is sent");
    let stored = h.stored("INBOX");
    let subjects: Vec<String> = stored
        .iter()
        .map(|m| String::from_utf8_lossy(m.subject.as_deref().unwrap_or_default()).into_owned())
        .collect();
    assert_eq!(subjects, ["landed", "lost.txt"]);
    assert_eq!(stored[1].internal_date, mtime);
    let left: Vec<String> = std::fs::read_dir(spool)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        ["999999999-1-0-half.txt"],
        "only the unfinished file stays"
    );
    // A second mount finds nothing more to do.
    let again = h.fs.recover_spool();
    assert_eq!(h.count(Op::Append), 1, "{again:?}");
}

/// The kernel can have several WRITEs of one `write()` in flight. One that lands after
/// another failed on a full spool (which drops the spool file) fails with the first
/// error, and the file is never stored: a close reports ENOSPC, not an I/O error, and
/// nothing reaches the server.
#[test]
fn a_write_that_lands_after_the_spool_failed_fails_and_nothing_is_stored() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    let before = h.stored("INBOX").len();
    let errno = |e: FsError| e.errno_and_level().0;
    let (attr, fh) = h.fs.create(inbox, OsStr::new("big.bin")).unwrap();
    let ino = attr.attr.ino;
    h.fs.write(ino, fh, 0, b"the first megabyte").unwrap();
    let file = h.fs.new_files.get("INBOX", "big.bin").unwrap();
    // One WRITE fails on the full spool...
    let first =
        h.fs.break_new_file(&file, true, "spool write: No space left".into());
    assert_eq!(errno(first), libc::ENOSPC);
    // ...while another of the same write() had passed its check and wrote to the spool
    // file just dropped.
    assert_eq!(errno(h.fs.rewritten(&file).unwrap_err()), libc::ENOSPC);
    // A later failure of another kind does not replace the first.
    let later =
        h.fs.break_new_file(&file, false, "spool write: Bad file descriptor".into());
    assert_eq!(errno(later), libc::ENOSPC);
    assert_eq!(errno(h.fs.flush(ino, fh).unwrap_err()), libc::ENOSPC);
    let _ = h.fs.release(ino, fh);
    assert_eq!(h.stored("INBOX").len(), before);
    assert_eq!(h.store.count(Op::Append), 0);
}

#[test]
fn an_rfc_5322_message_the_mailbox_holds_already_is_not_stored_again() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    let raw = b"Message-ID: <once@example.org>\r\nSubject: once\r\n\r\nbody\r\n";
    h.names(inbox).unwrap();
    shell_write(&h, inbox, "once.eml", raw);
    assert_eq!(h.count(Op::Append), 1);
    // A second rsync or cp of the same file: the listing holds a message of its size, and
    // the server one of its Message-ID.
    h.names(inbox).unwrap();
    shell_write(&h, inbox, "once.eml", raw);
    assert_eq!(h.count(Op::Append), 1, "not stored again");
    assert_eq!(h.stored("INBOX").len(), 1);
    // Another message of the same Message-ID but other bytes is stored.
    let other = b"Message-ID: <once@example.org>\r\nSubject: once, edited\r\n\r\nbody\r\n";
    shell_write(&h, inbox, "edited.eml", other);
    assert_eq!(h.count(Op::Append), 2);
    assert_eq!(h.stored("INBOX").len(), 2);
}

/// `cp a.eml Scratch/; cp a.eml Scratch/b.eml` at once: the listing held predates the
/// first, but the mount knows it stored one of that size and Subject, so the server is
/// asked, and the second is not stored.
#[test]
fn an_rfc_5322_message_stored_twice_in_quick_succession_is_stored_once() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    let raw = b"Message-ID: <twice@example.org>\r\nSubject: twice\r\n\r\nbody\r\n";
    h.names(inbox).unwrap();
    shell_write(&h, inbox, "a.eml", raw);
    shell_write(&h, inbox, "b.eml", raw);
    assert_eq!(h.count(Op::Append), 1, "not stored again");
    assert_eq!(h.stored("INBOX").len(), 1);
}

#[test]
fn an_eml_edited_to_the_same_size_is_stored_and_a_copy_of_one_never_removes_it() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    let raw = b"Message-ID: <same@example.org>\r\nSubject: plan\r\n\r\nteh body\r\n";
    let edited = b"Message-ID: <same@example.org>\r\nSubject: plan\r\n\r\nthe body\r\n";
    h.names(inbox).unwrap();
    let ino = shell_write(&h, inbox, "plan.eml", raw);
    // Rewritten in place to bytes of the same size and Message-ID, once the listing
    // shows its message: stored, and its first version expunged.
    let fh = h.fs.open_with(ino, true, true).unwrap().fh;
    h.names(inbox).unwrap();
    h.fs.write(ino, fh, 0, edited).unwrap();
    h.fs.release(ino, fh).unwrap();
    assert_eq!(h.count(Op::Append), 2);
    let stored = h.stored("INBOX");
    assert_eq!(stored.len(), 1);
    assert_eq!(h.stored_raw("INBOX", stored[0].uid), edited);
    // A copy of it (cp plan.eml copy.eml) is the message held: nothing stored, and
    // removing the copy, or appending to it, leaves that message alone.
    h.names(inbox).unwrap();
    shell_write(&h, inbox, "copy.eml", edited);
    assert_eq!(h.count(Op::Append), 2);
    h.fs.unlink(inbox, OsStr::new("copy.eml")).unwrap();
    assert_eq!(h.stored("INBOX").len(), 1, "the message held stays");
    assert_eq!(h.count(Op::MoveMessage) + h.count(Op::ExpungeMessage), 1);
}

/// `cp MNT/INBOX/<msg>/message.eml MNT/Archive/x.eml`: the file is the message the copier
/// just read, so it is copied on the server (flags with it), not sent; the file then
/// stands for the copy alone. A message not held whole, or other bytes, is sent.
#[test]
fn an_eml_that_is_a_message_read_from_another_mailbox_is_copied_not_sent() {
    let h = Harness::new();
    h.store.add_mailbox("Archive", Some('/'), true, None);
    h.store
        .add_mailbox("Trash", Some('/'), true, Some("\\Trash"));
    let sample = Sample::numbered(1);
    let uid = h
        .store
        .add_message("INBOX", &sample.raw, &["\\Flagged"], date());
    let other = Sample::numbered(2);
    h.store.add_message("INBOX", &other.raw, &[], date());
    let eml = h
        .read_path(&format!("INBOX/{}/message.eml", sample.dir_name(uid)))
        .unwrap();
    assert_eq!(eml, sample.raw);
    let archive = h.ino("Archive").unwrap();
    h.names(archive).unwrap();

    shell_write(&h, archive, "copied.eml", &eml);
    assert_eq!((h.count(Op::CopyMessage), h.count(Op::Append)), (1, 0));
    let stored = h.stored("Archive");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].flags, ["\\Flagged"]);
    assert_eq!(h.stored_raw("Archive", stored[0].uid), sample.raw);
    // Removing the file removes the copy (to Trash), never the message it was copied from.
    h.fs.unlink(archive, OsStr::new("copied.eml")).unwrap();
    assert!(h.stored("Archive").is_empty());
    assert_eq!(h.stored("INBOX").len(), 2);
    assert_eq!(h.stored("Trash").len(), 1);

    // A message nobody read (its bytes are not at hand) is sent, not fetched to compare;
    // so are bytes that differ from the message read.
    let fetched = h.count(Op::FetchSection);
    shell_write(&h, archive, "other.eml", &other.raw);
    let mut changed = eml.clone();
    *changed.last_mut().unwrap() = b'!';
    shell_write(&h, archive, "changed.eml", &changed);
    assert_eq!((h.count(Op::CopyMessage), h.count(Op::Append)), (1, 2));
    assert_eq!(h.count(Op::FetchSection), fetched);

    // A COPY cut off may have landed: the close fails, and nothing is sent after it.
    h.store.fail_next(Op::CopyMessage, || {
        crate::store::StoreError::Connection("connection reset".into())
    });
    let (made, fh) = h.fs.create(archive, OsStr::new("cut.eml")).unwrap();
    h.fs.write(made.attr.ino, fh, 0, &eml).unwrap();
    assert_eq!(errno(h.fs.release(made.attr.ino, fh)), libc::EIO);
    assert_eq!((h.count(Op::CopyMessage), h.count(Op::Append)), (2, 2));

    // A message marked \Deleted is not copied (its copy would be too).
    let dir = h.ino(&format!("INBOX/{}", sample.dir_name(uid))).unwrap();
    h.fs.setxattr(dir, OsStr::new("user.imap.flags"), b"+\\Deleted")
        .unwrap();
    shell_write(&h, archive, "deleted.eml", &eml);
    assert_eq!((h.count(Op::CopyMessage), h.count(Op::Append)), (2, 3));
}

/// `setfattr -n user.imap.flags` on a stored file, as on its message directory: right
/// after it was stored (its mailbox not listed since), and after the listing shows it; a
/// file not stored yet has no flags to change.
#[test]
fn a_stored_file_shows_and_takes_its_message_flags() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    let flags = OsStr::new("user.imap.flags");
    let written = shell_write(&h, inbox, "a.txt", b"some bytes");
    assert!(h
        .fs
        .listxattr(written)
        .unwrap()
        .split(|b| *b == 0)
        .any(|n| n == flags.as_encoded_bytes()));
    h.fs.setxattr(written, flags, b"+\\Flagged").unwrap();
    assert_eq!(only_stored(&h, "INBOX").2.flags, ["\\Flagged"]);
    assert_eq!(h.fs.getxattr(written, flags).unwrap(), b"\\Flagged");
    h.expire_listings();
    h.names(inbox).unwrap();
    let stored = h.fs.lookup(inbox, OsStr::new("a.txt")).unwrap().attr.ino;
    assert_eq!(h.fs.getxattr(stored, flags).unwrap(), b"\\Flagged");
    h.fs.setxattr(stored, flags, b"-\\Flagged +\\Seen").unwrap();
    assert_eq!(only_stored(&h, "INBOX").2.flags, ["\\Seen"]);
    let uid = h.fs.getxattr(stored, OsStr::new("user.imap.uid")).unwrap();
    assert_eq!(uid, only_stored(&h, "INBOX").2.uid.to_string().as_bytes());
    // Written and still open: not a message yet.
    let (made, fh) = h.fs.create(inbox, OsStr::new("b.txt")).unwrap();
    h.fs.write(made.attr.ino, fh, 0, b"more").unwrap();
    assert_eq!(
        errno(h.fs.setxattr(made.attr.ino, flags, b"+\\Flagged")),
        libc::ENOTSUP
    );
    assert_eq!(errno(h.fs.getxattr(made.attr.ino, flags)), libc::ENODATA);
    h.fs.release(made.attr.ino, fh).unwrap();
}

/// A file just written and stored is read through the page cache (so it can be mmap'ed);
/// one still being written, or opened to write, with direct I/O.
#[test]
fn a_stored_new_file_opens_for_the_page_cache() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    let (made, fh) = h.fs.create(inbox, OsStr::new("a.txt")).unwrap();
    let ino = made.attr.ino;
    h.fs.write(ino, fh, 0, b"bytes").unwrap();
    let open = h.fs.open(ino, false).unwrap();
    assert!(open.direct_io, "written, not stored yet");
    h.fs.release(ino, open.fh).unwrap();
    h.fs.flush(ino, fh).unwrap();
    h.fs.release(ino, fh).unwrap();
    assert_eq!(h.stored("INBOX").len(), 1);
    let open = h.fs.open(ino, false).unwrap();
    assert!(!open.direct_io && !open.keep_cache);
    assert_eq!(h.fs.read(ino, open.fh, 0, 4096).unwrap(), b"bytes");
    // Open elsewhere too (a writer may hold it): direct I/O.
    let second = h.fs.open(ino, false).unwrap();
    assert!(second.direct_io);
    h.fs.release(ino, second.fh).unwrap();
    h.fs.release(ino, open.fh).unwrap();
    let open = h.fs.open(ino, true).unwrap();
    assert!(open.direct_io, "opened to write");
    h.fs.release(ino, open.fh).unwrap();
}

/// A file written into INBOX, stored, and looked at and read again through its listing,
/// as a copier does: its message directory's name (not listed, there by name).
fn stored_and_read(h: &Harness, bytes: &[u8]) -> String {
    for mailbox in ["Archive", "Work"] {
        h.store.add_mailbox(mailbox, Some('/'), true, None);
    }
    let inbox = h.ino("INBOX").unwrap();
    shell_write(h, inbox, "note.txt", bytes);
    h.expire_listings();
    assert_eq!(h.names(inbox).unwrap(), ["note.txt"]);
    assert_eq!(h.read_path("INBOX/note.txt").unwrap(), bytes);
    format!("{} note.txt", h.stored("INBOX")[0].uid)
}

/// `cp -r` of a mailbox holding a stored file: the walk finds the file alone (its message
/// directory is not listed), which is copied on the server (nothing sent): one copy.
#[test]
fn a_stored_file_copied_with_its_mailbox_is_one_copy() {
    let h = Harness::new();
    let bytes = b"a note worth keeping\n";
    let dir_name = stored_and_read(&h, bytes);
    let appends = h.count(Op::Append);
    let archive = h.ino("Archive").unwrap();
    for name in h.names_at("INBOX").unwrap() {
        let read = h.read_path(&format!("INBOX/{name}")).unwrap();
        shell_write(&h, archive, &name, &read);
    }
    assert_eq!(
        (h.count(Op::CopyMessage), h.count(Op::Append)),
        (1, appends)
    );
    let archived = h.stored("Archive");
    assert_eq!(archived.len(), 1, "{archived:?}");
    assert_eq!(
        h.stored_raw("Archive", archived[0].uid),
        h.stored_raw("INBOX", h.stored("INBOX")[0].uid)
    );
    h.expire_listings();
    assert_eq!(h.names_at("Archive").unwrap(), ["note.txt"]);
    assert_eq!(h.read_path("Archive/note.txt").unwrap(), bytes);
    // Other bytes of the same size under the same name are stored as themselves.
    let work = h.ino("Work").unwrap();
    shell_write(&h, work, "note.txt", b"a note worth kEEping\n");
    assert_eq!(
        (h.count(Op::CopyMessage), h.count(Op::Append)),
        (1, appends + 1)
    );
    // The copy's message directory, by name, is whole: rmdir of it is ENOTEMPTY.
    assert!(dir_name.ends_with(" note.txt"));
    let copy_dir = format!("{} note.txt", archived[0].uid);
    assert_eq!(
        errno(h.fs.rmdir(archive, OsStr::new(&copy_dir))),
        libc::ENOTEMPTY
    );
}

/// A plain `cp` of a stored file: the copy's message directory shows every file at once
/// (never an empty-looking directory whose rmdir would take the file along).
#[test]
fn a_stored_file_copied_alone_leaves_a_whole_message_directory() {
    let h = Harness::new();
    let bytes = b"a note worth keeping\n";
    stored_and_read(&h, bytes);
    let archive = h.ino("Archive").unwrap();
    shell_write(&h, archive, "note.txt", bytes);
    assert_eq!(h.count(Op::CopyMessage), 1);
    let copy = h.stored("Archive")[0].uid;
    let dir = format!("{copy} note.txt");
    let files = h.names_at(&format!("Archive/{dir}")).unwrap();
    assert_eq!(files.len(), 3, "{files:?}");
    assert_eq!(
        errno(h.fs.rmdir(archive, OsStr::new(&dir))),
        libc::ENOTEMPTY
    );
}

/// The same, the message directory first (`cp -r` reads entries in no set order): the
/// directory copies the message, and the file written after it over the copy's file,
/// byte for byte the same, sends nothing.
#[test]
fn a_stored_file_copied_directory_first_then_the_file_is_one_copy() {
    let h = Harness::new();
    let bytes = b"a note worth keeping\n";
    let dir_name = stored_and_read(&h, bytes);
    let appends = h.count(Op::Append);
    let archive = h.ino("Archive").unwrap();
    let read = |file: &str| h.read_path(&format!("INBOX/{dir_name}/{file}")).unwrap();
    copy_dir_in(&h, &format!("INBOX/{dir_name}"), archive, &dir_name, read).unwrap();
    assert_eq!(h.count(Op::CopyMessage), 1);
    // cp finds note.txt there and opens it to write, truncated.
    let ino =
        h.fs.lookup(archive, OsStr::new("note.txt"))
            .unwrap()
            .attr
            .ino;
    let fh = h.fs.open_with(ino, true, true).unwrap().fh;
    h.fs.write(ino, fh, 0, bytes).unwrap();
    h.fs.flush(ino, fh).unwrap();
    h.fs.release(ino, fh).unwrap();
    assert_eq!(h.count(Op::Append), appends, "nothing sent");
    assert_eq!(h.stored("Archive").len(), 1);
    assert_eq!(h.read_path("Archive/note.txt").unwrap(), bytes);
    // Written with other bytes of the same size, it is a new version as before.
    let fh = h.fs.open_with(ino, true, true).unwrap().fh;
    h.fs.write(ino, fh, 0, b"a note worth kEEping\n").unwrap();
    h.fs.release(ino, fh).unwrap();
    assert_eq!(h.count(Op::Append), appends + 1);
    assert_eq!(h.stored("Archive").len(), 1);
}

/// The same bytes written again are a new version where keeping the old one would lose
/// something: it is marked `\Deleted` (the next EXPUNGE would take the file), or another
/// date was set (rsync -a of a file whose time alone changed).
#[test]
fn the_same_bytes_written_again_are_stored_where_the_old_version_would_not_do() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    let bytes = b"the same bytes\n";
    shell_write(&h, inbox, "a.txt", bytes);
    let relisted_and_read = || {
        h.expire_listings();
        h.names(inbox).unwrap();
        assert_eq!(h.read_path("INBOX/a.txt").unwrap(), bytes);
        h.fs.lookup(inbox, OsStr::new("a.txt")).unwrap().attr.ino
    };
    let write_over = |ino: u64, mtime: Option<SystemTime>| {
        let fh = h.fs.open_with(ino, true, true).unwrap().fh;
        h.fs.write(ino, fh, 0, bytes).unwrap();
        if let Some(mtime) = mtime {
            h.fs.setattr(ino, Some(fh), true, None, Some(mtime))
                .unwrap();
        }
        h.fs.release(ino, fh).unwrap();
    };
    let appends = h.count(Op::Append);
    write_over(relisted_and_read(), None);
    assert_eq!(h.count(Op::Append), appends, "unchanged: nothing sent");
    let uid = only_stored(&h, "INBOX").2.uid;
    h.store.set_flags("INBOX", uid, &["\\Deleted"]);
    write_over(relisted_and_read(), None);
    assert_eq!(h.count(Op::Append), appends + 1, "the old one is \\Deleted");
    let newer = h
        .stored("INBOX")
        .into_iter()
        .find(|m| m.uid != uid)
        .unwrap();
    assert!(newer.flags.is_empty(), "{:?}", newer.flags);
    let long_ago = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    write_over(relisted_and_read(), Some(long_ago));
    assert_eq!(h.count(Op::Append), appends + 2, "another date");
}
/// Renames `from` to `to` within `dir`.
fn rename_in(h: &Harness, dir: u64, from: &str, to: &str) -> FsResult<()> {
    h.fs.rename(dir, OsStr::new(from), dir, OsStr::new(to), false, false)
}

/// vim's and rsync's backups: a stored file renamed to a name kept local (`f~`) is kept
/// here under it with its bytes, its name is free (ENOENT, unlisted), and the file written
/// there next replaces its message: one message, the backup readable until removed, and
/// nothing in Trash when it is. Right after the store, and after the mailbox was listed.
#[test]
fn a_stored_file_renamed_to_a_backup_name_keeps_its_bytes_and_frees_its_name() {
    for listed in [false, true] {
        let h = Harness::new();
        let inbox = h.ino("INBOX").unwrap();
        shell_write(&h, inbox, "plan.txt", b"version one\n");
        if listed {
            h.expire_listings();
            h.names(inbox).unwrap();
        }
        h.fs.lookup(inbox, OsStr::new("plan.txt")).unwrap();
        rename_in(&h, inbox, "plan.txt", "plan.txt~").unwrap();
        assert_eq!(
            errno(h.fs.lookup(inbox, OsStr::new("plan.txt"))),
            libc::ENOENT,
            "listed: {listed}"
        );
        h.expire_listings();
        let names = h.names(inbox).unwrap();
        assert!(names.contains(&"plan.txt~".to_string()), "{names:?}");
        assert!(!names.contains(&"plan.txt".to_string()), "{names:?}");
        assert_eq!(h.read_path("INBOX/plan.txt~").unwrap(), b"version one\n");
        assert_eq!(
            h.stored("INBOX").len(),
            1,
            "the message stays until replaced"
        );
        shell_write(&h, inbox, "plan.txt", b"version two\n");
        let stored = h.stored("INBOX");
        assert_eq!(stored.len(), 1, "listed: {listed}: {stored:?}");
        assert_eq!(only_stored(&h, "INBOX").1, b"version two\n");
        assert_eq!(h.read_path("INBOX/plan.txt~").unwrap(), b"version one\n");
        let moves = h.count(Op::MoveMessage);
        h.fs.unlink(inbox, OsStr::new("plan.txt~")).unwrap();
        assert_eq!(h.stored("INBOX").len(), 1);
        assert_eq!(h.count(Op::MoveMessage), moves, "nothing goes to Trash");
    }
}

/// `mv f .f` and back (or `cp -b` undoing its backup): the name comes back with the same
/// message, nothing sent.
#[test]
fn a_stored_file_renamed_to_a_local_name_and_back_is_the_same_message() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    shell_write(&h, inbox, "doc.txt", b"the document\n");
    // Listed and read: its bytes are at hand to compare.
    h.expire_listings();
    h.names(inbox).unwrap();
    assert_eq!(h.read_path("INBOX/doc.txt").unwrap(), b"the document\n");
    let first = only_stored(&h, "INBOX").2.uid;
    let appends = h.count(Op::Append);
    rename_in(&h, inbox, "doc.txt", ".doc.txt").unwrap();
    assert_eq!(
        errno(h.fs.lookup(inbox, OsStr::new("doc.txt"))),
        libc::ENOENT
    );
    rename_in(&h, inbox, ".doc.txt", "doc.txt").unwrap();
    assert_eq!(h.count(Op::Append), appends, "nothing sent");
    assert_eq!(only_stored(&h, "INBOX").2.uid, first);
    assert_eq!(h.read_path("INBOX/doc.txt").unwrap(), b"the document\n");
}

/// `mv f f~` then `rm f~`, its name not written since: the file is gone, its message to
/// Trash as with `rm f` (it would come back at the next mount otherwise).
#[test]
fn a_backup_removed_before_its_name_was_written_takes_the_message_along() {
    let h = Harness::new();
    h.store
        .add_mailbox("Trash", Some('/'), true, Some("\\Trash"));
    let inbox = h.ino("INBOX").unwrap();
    shell_write(&h, inbox, "plan.txt", b"version one\n");
    rename_in(&h, inbox, "plan.txt", "plan.txt~").unwrap();
    h.fs.unlink(inbox, OsStr::new("plan.txt~")).unwrap();
    assert!(h.stored("INBOX").is_empty());
    assert_eq!(h.stored("Trash").len(), 1);
    h.expire_listings();
    assert!(h.names(inbox).unwrap().iter().all(|n| !n.contains("plan")));
}

/// A name a listing could not show again (over 200 bytes) is ENAMETOOLONG for a file to
/// store, a rename to such a name and a mailbox; a name kept local may be longer.
#[test]
fn names_a_listing_could_not_show_again_are_enametoolong() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    let long = format!("{}.txt", "n".repeat(240));
    assert_eq!(
        errno(h.fs.create(inbox, OsStr::new(&long))),
        libc::ENAMETOOLONG
    );
    assert_eq!(
        errno(h.fs.mkdir(ROOT, OsStr::new(&long))),
        libc::ENAMETOOLONG
    );
    let fits = format!("{}.txt", "n".repeat(196));
    shell_write(&h, inbox, &fits, b"fits\n");
    assert_eq!(
        errno(rename_in(&h, inbox, &fits, &long)),
        libc::ENAMETOOLONG
    );
    // rsync's temporary name of a file whose name fits is longer: kept local, allowed.
    let temp = format!(".{fits}.Ab12Cd");
    shell_write(&h, inbox, &temp, b"temporary\n");
    assert_eq!(h.count(Op::CreateMailbox), 0);
    assert_eq!(h.stored("INBOX").len(), 1);
}

/// The bytes of a file waiting to be stored are in a spool file, never only in memory:
/// a stored file written again whose store failed, and a backup of a stored file. (Its
/// spool copy went once it was stored; a crash or an unmount would have lost them.)
#[test]
fn bytes_of_a_stored_file_written_again_wait_in_the_spool() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    let spooled = |h: &Harness| -> Vec<Vec<u8>> {
        let mut found: Vec<Vec<u8>> = std::fs::read_dir(h.spool.path())
            .unwrap()
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                !name.ends_with(".stored") && !name.ends_with(".sending")
            })
            .map(|e| std::fs::read(e.path()).unwrap())
            .collect();
        found.sort();
        found
    };
    let ino = shell_write(&h, inbox, "log.txt", b"one\n");
    assert!(spooled(&h).is_empty());
    let fh = h.fs.open_with(ino, true, false).unwrap().fh;
    h.fs.write(ino, fh, 4, b"two\n").unwrap();
    h.store.fail_next(Op::Append, || {
        crate::store::StoreError::Refused("not now".into())
    });
    assert!(h.fs.flush(ino, fh).is_err());
    h.fs.release(ino, fh).ok();
    assert_eq!(spooled(&h), [b"one\ntwo\n".to_vec()]);
    // A backup of a stored file: its bytes in the spool too.
    shell_write(&h, inbox, "plan.txt", b"plan\n");
    rename_in(&h, inbox, "plan.txt", "plan.txt~").unwrap();
    assert_eq!(spooled(&h), [b"one\ntwo\n".to_vec(), b"plan\n".to_vec()]);
}

/// A reader of a stored file (`less f`) that closes after the file became a backup
/// (`mv f f~`) does not count as one of the backup's closes: restored later (`mv f~ f`
/// over a newer `f`), the backup is stored at once, as a closed file is.
#[test]
fn a_readers_close_after_a_rename_leaves_the_backups_opens_alone() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    shell_write(&h, inbox, "f.txt", b"old\n");
    h.expire_listings();
    h.names(inbox).unwrap();
    let ino = h.fs.lookup(inbox, OsStr::new("f.txt")).unwrap().attr.ino;
    let reader = h.fs.open(ino, false).unwrap();
    rename_in(&h, inbox, "f.txt", "f.txt~").unwrap();
    h.fs.release(ino, reader.fh).unwrap();
    shell_write(&h, inbox, "f.txt", b"new!\n");
    let appends = h.count(Op::Append);
    rename_in(&h, inbox, "f.txt~", "f.txt").unwrap();
    assert_eq!(h.count(Op::Append), appends + 1, "stored at the rename");
    assert_eq!(only_stored(&h, "INBOX").1, b"old\n");
}

/// A backup's old name and message, when what happens next is not a new version: an
/// empty file made there and removed again takes nothing (`rm f~` then trashes the
/// message); a backup renamed over, trashed by a file manager, or whose message another
/// client removed is gone as with `rm`, never stuck.
#[test]
fn a_backups_message_follows_what_is_done_to_the_backup() {
    let h = Harness::new();
    h.store
        .add_mailbox("Trash", Some('/'), true, Some("\\Trash"));
    let inbox = h.ino("INBOX").unwrap();
    // mv f f~; touch f; rm f; rm f~
    shell_write(&h, inbox, "a.txt", b"a\n");
    rename_in(&h, inbox, "a.txt", "a.txt~").unwrap();
    let (made, fh) = h.fs.create(inbox, OsStr::new("a.txt")).unwrap();
    h.fs.release(made.attr.ino, fh).unwrap();
    h.fs.unlink(inbox, OsStr::new("a.txt")).unwrap();
    h.fs.unlink(inbox, OsStr::new("a.txt~")).unwrap();
    assert!(h.stored("INBOX").is_empty());
    assert_eq!(h.stored("Trash").len(), 1);
    // mv g b~ over the backup b~.
    shell_write(&h, inbox, "b.txt", b"b\n");
    rename_in(&h, inbox, "b.txt", "b.txt~").unwrap();
    shell_write(&h, inbox, ".g", b"g\n");
    rename_in(&h, inbox, ".g", "b.txt~").unwrap();
    assert!(h.stored("INBOX").is_empty());
    assert_eq!(h.stored("Trash").len(), 2);
    // A file manager's trash of the backup.
    shell_write(&h, inbox, "c.txt", b"c\n");
    rename_in(&h, inbox, "c.txt", "c.txt~").unwrap();
    let files = h.trash_files();
    h.fs.rename(
        inbox,
        OsStr::new("c.txt~"),
        files,
        OsStr::new("c.txt~"),
        false,
        false,
    )
    .unwrap();
    assert!(h.stored("INBOX").is_empty());
    assert_eq!(h.stored("Trash").len(), 3);
    // Its message removed by another client: rm of the backup still works.
    shell_write(&h, inbox, "d.txt", b"d\n");
    rename_in(&h, inbox, "d.txt", "d.txt~").unwrap();
    let uid = h.stored("INBOX")[0].uid;
    h.store.remove_message("INBOX", uid);
    h.fs.unlink(inbox, OsStr::new("d.txt~")).unwrap();
    assert_eq!(
        errno(h.fs.lookup(inbox, OsStr::new("d.txt~"))),
        libc::ENOENT
    );
}

/// A file of the message directory of a copy a stored file's `cp` made cannot be written
/// over (it is a message's part, as any other): refused, and the copy (the file the user
/// copied) stays.
#[test]
fn a_stored_file_copys_parts_are_not_written_over_and_the_copy_stays() {
    let h = Harness::new();
    let bytes = b"a note worth keeping\n";
    stored_and_read(&h, bytes);
    let archive = h.ino("Archive").unwrap();
    shell_write(&h, archive, "note.txt", bytes);
    let copy = h.stored("Archive")[0].uid;
    let dir = h.ino(&format!("Archive/{copy} note.txt")).unwrap();
    let ino = h.fs.lookup(dir, OsStr::new("note.txt")).unwrap().attr.ino;
    assert_eq!(errno(h.fs.open(ino, true)), libc::EPERM);
    assert_eq!(h.stored("Archive").len(), 1, "the copy stays");
    assert_eq!(h.read_path("Archive/note.txt").unwrap(), bytes);
}

/// A file written into a mailbox, then the mailbox renamed (`mv Work Projects`), then the
/// file written again before the mailbox is listed: the new version goes to the mailbox
/// under its new name, replacing the old one there (it went to the old name, refused).
#[test]
fn a_new_file_follows_its_mailbox_renamed() {
    let h = Harness::new();
    h.store.add_mailbox("Work", Some('/'), true, None);
    let work = h.ino("Work").unwrap();
    let ino = shell_write(&h, work, "a.txt", b"one\n");
    h.fs.rename(
        ROOT,
        OsStr::new("Work"),
        ROOT,
        OsStr::new("Projects"),
        false,
        false,
    )
    .unwrap();
    let fh = h.fs.open_with(ino, true, false).unwrap().fh;
    h.fs.write(ino, fh, 4, b"two\n").unwrap();
    h.fs.flush(ino, fh).unwrap();
    h.fs.release(ino, fh).unwrap();
    assert_eq!(only_stored(&h, "Projects").1, b"one\ntwo\n");
}

/// Another descriptor writes the file while its close sends it (the APPEND has its answer,
/// the store has not yet marked the file stored): that write's close stores it, and the
/// version sent in between goes. A bug hunt (eight shells writing one name) saw such a
/// write's close find the file marked stored and send nothing.
#[test]
fn a_write_while_the_file_is_sent_is_stored_by_its_own_close() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    let (attr, fh) = h.fs.create(inbox, OsStr::new("same.txt")).unwrap();
    let ino = attr.attr.ino;
    h.fs.write(ino, fh, 0, b"writer 1\n").unwrap();
    let fs = Arc::clone(&h.fs);
    h.store.after_next(Op::Append, move || {
        // The second writer: `echo writer 2 > same.txt` on its own descriptor.
        fs.setattr(ino, None, true, Some(0), None).unwrap();
        fs.write(ino, 0, 0, b"writer 2\n").unwrap();
    });
    h.fs.flush(ino, fh).unwrap();
    assert_eq!(h.count(Op::Append), 1);
    // The second writer's close.
    h.fs.flush(ino, fh).unwrap();
    assert_eq!(
        h.count(Op::Append),
        2,
        "the second close sends the second version"
    );
    h.fs.release(ino, fh).unwrap();
    let (_, attachment, _) = only_stored(&h, "INBOX");
    assert_eq!(attachment, b"writer 2\n");
}
