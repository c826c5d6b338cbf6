//! Changes made through the mount: deleting and moving messages, mailboxes, flags, new
//! files, and the read-only mount that refuses them all.

use super::*;
use crate::store::StoreError;

const FLAGS: &str = "user.imap.flags";

/// INBOX with one sample message, an Archive and a `\Trash` mailbox.
fn account(h: &Harness) -> (Sample, String) {
    h.store.add_mailbox("Archive", Some('/'), true, None);
    h.store
        .add_mailbox("Trash", Some('/'), true, Some("\\Trash"));
    let sample = Sample::numbered(1);
    let uid = h
        .store
        .add_message("INBOX", &sample.raw, &["\\Seen"], date());
    let name = sample.dir_name(uid);
    (sample, name)
}

/// `rm -r dir` as coreutils does it: unlink every file, then rmdir.
fn remove_files(h: &Harness, dir: u64) {
    for name in h.names(dir).unwrap() {
        h.fs.unlink(dir, OsStr::new(&name)).unwrap();
    }
}

#[test]
fn rmdir_of_a_message_with_files_is_enotempty() {
    let h = Harness::new();
    let (_, name) = account(&h);
    let inbox = h.ino("INBOX").unwrap();
    assert_eq!(errno(h.fs.rmdir(inbox, OsStr::new(&name))), libc::ENOTEMPTY);
    assert_eq!(h.change_calls(), 0);
    assert_eq!(h.stored("INBOX").len(), 1);
}

#[test]
fn removing_a_message_moves_it_to_trash_and_in_trash_expunges_it() {
    let h = Harness::new();
    let (sample, name) = account(&h);
    let inbox = h.ino("INBOX").unwrap();
    let dir = h.ino(&format!("INBOX/{name}")).unwrap();
    remove_files(&h, dir);
    assert!(h.names(dir).unwrap().is_empty());
    // Hiding files is local to the mount.
    assert_eq!(h.change_calls(), 0);
    h.fs.rmdir(inbox, OsStr::new(&name)).unwrap();
    assert_eq!(h.count(Op::MoveMessage), 1);
    assert_eq!(h.count(Op::ExpungeMessage), 0);
    assert!(!h.names(inbox).unwrap().contains(&name));

    assert!(h.stored("INBOX").is_empty());
    let trashed = h.stored("Trash");
    assert_eq!(trashed.len(), 1);
    assert_eq!(h.stored_raw("Trash", trashed[0].uid), sample.raw);

    let trash = h.ino("Trash").unwrap();
    let in_trash = sample.dir_name(trashed[0].uid);
    assert_eq!(h.names(trash).unwrap(), std::slice::from_ref(&in_trash));
    let dir = h.fs.lookup(trash, OsStr::new(&in_trash)).unwrap().attr.ino;
    assert_eq!(
        h.names(dir).unwrap(),
        ["message.eml", "body.txt", "a1.bin"],
        "a file hidden in INBOX is not hidden in Trash"
    );
    remove_files(&h, dir);
    h.fs.rmdir(trash, OsStr::new(&in_trash)).unwrap();
    assert_eq!(h.count(Op::MoveMessage), 1);
    assert_eq!(h.count(Op::ExpungeMessage), 1);
    assert!(h.stored("Trash").is_empty());
    assert!(h.names(trash).unwrap().is_empty());
}

#[test]
fn with_delete_off_rmdir_is_eperm_and_the_files_come_back() {
    let h = Harness::with(|c| c.delete = DeleteMode::Off);
    let (_, name) = account(&h);
    let inbox = h.ino("INBOX").unwrap();
    let dir = h.ino(&format!("INBOX/{name}")).unwrap();
    remove_files(&h, dir);
    assert_eq!(errno(h.fs.rmdir(inbox, OsStr::new(&name))), libc::EPERM);
    assert_eq!(h.change_calls(), 0);
    assert_eq!(h.names(dir).unwrap(), ["message.eml", "body.txt", "a1.bin"]);
    assert_eq!(h.stored("INBOX").len(), 1);
}

#[test]
fn mv_of_a_message_moves_it_and_the_name_used_resolves() {
    let h = Harness::new();
    let (sample, name) = account(&h);
    let earlier = Sample::numbered(2);
    h.store.add_message("Archive", &earlier.raw, &[], date());
    let inbox = h.ino("INBOX").unwrap();
    let archive = h.ino("Archive").unwrap();
    let old_dir = h.ino(&format!("INBOX/{name}")).unwrap();
    h.fs.rename(
        inbox,
        OsStr::new(&name),
        archive,
        OsStr::new(&name),
        false,
        false,
    )
    .unwrap();
    assert_eq!(h.count(Op::MoveMessage), 1);

    assert!(h.stored("INBOX").is_empty());
    let archived = h.stored("Archive");
    assert_eq!(archived.len(), 2);
    let new_uid = archived[1].uid;
    assert_eq!(h.stored_raw("Archive", new_uid), sample.raw);
    assert_eq!(archived[1].flags, ["\\Seen"]);

    // The name `mv` used resolves, to the moved message...
    let moved = format!("Archive/{name}");
    assert_eq!(
        h.read_path(&format!("{moved}/message.eml")).unwrap(),
        sample.raw
    );
    let xattr = |ino, attr: &str| h.fs.getxattr(ino, OsStr::new(attr)).unwrap();
    let moved_ino = h.ino(&moved).unwrap();
    assert_eq!(xattr(moved_ino, "user.imap.mailbox"), b"Archive");
    assert_eq!(
        xattr(moved_ino, "user.imap.uid"),
        new_uid.to_string().as_bytes()
    );
    // ...and so does the inode the kernel already held.
    assert_eq!(
        xattr(old_dir, "user.imap.uid"),
        new_uid.to_string().as_bytes()
    );
    assert_eq!(errno(h.ino(&format!("INBOX/{name}"))), libc::ENOENT);
    assert!(h.names(inbox).unwrap().is_empty());

    // After the next listing, the message shows under its new UID.
    let listed = h.names(archive).unwrap();
    assert_eq!(listed, [earlier.dir_name(Uid(1)), sample.dir_name(new_uid)]);
    assert_eq!(
        h.read_path(&format!("Archive/{}/body.txt", sample.dir_name(new_uid)))
            .unwrap(),
        sample.body.as_bytes()
    );
}

#[test]
fn mv_within_a_mailbox_is_eperm() {
    let h = Harness::new();
    let (_, name) = account(&h);
    let inbox = h.ino("INBOX").unwrap();
    let result = h.fs.rename(
        inbox,
        OsStr::new(&name),
        inbox,
        OsStr::new("1 other"),
        false,
        false,
    );
    assert_eq!(errno(result), libc::EPERM);
    assert_eq!(h.change_calls(), 0);
}

/// `touch`, `chmod` and `rsync -a` set times and modes on what they find: a message's
/// directory and files take them as they are (nothing is sent, the times shown stay the
/// message's), while a size change (truncation) is refused.
#[test]
fn times_and_modes_of_a_message_are_accepted_and_its_size_is_not() {
    let h = Harness::new();
    let (_, name) = account(&h);
    let dir = h.ino(&format!("INBOX/{name}")).unwrap();
    let eml = h.ino(&format!("INBOX/{name}/message.eml")).unwrap();
    let later = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    for ino in [dir, eml] {
        let shown = h.fs.getattr(ino).unwrap().attr;
        let after =
            h.fs.setattr(ino, None, true, None, Some(later))
                .unwrap()
                .attr;
        assert_eq!(after.mtime, shown.mtime, "the message's time stays");
        assert_eq!(after.size, shown.size);
    }
    let size = h.fs.getattr(eml).unwrap().attr.size;
    assert_eq!(
        errno(h.fs.setattr(eml, None, true, Some(0), None)),
        libc::EPERM
    );
    assert_eq!(h.fs.getattr(eml).unwrap().attr.size, size);
    assert_eq!(h.change_calls(), 0);
}

#[test]
fn mkdir_refuses_names_that_could_smuggle_commands() {
    let h = Harness::new();
    for bad in ["x\r\nA1 DELETE INBOX", "a\nb", "tab\there", "nul\0"] {
        assert_eq!(
            errno(h.fs.mkdir(ROOT, OsStr::new(bad))),
            libc::EINVAL,
            "{bad:?}"
        );
    }
    assert_eq!(h.count(Op::CreateMailbox), 0);
    let attr = h.fs.mkdir(ROOT, OsStr::new("Projects")).unwrap();
    assert_eq!(attr.attr.kind, Kind::Directory);
    assert_eq!(h.count(Op::CreateMailbox), 1);
    assert!(h.names(ROOT).unwrap().contains(&"Projects".to_string()));
    assert_eq!(
        errno(h.fs.mkdir(ROOT, OsStr::new("Projects"))),
        libc::EEXIST
    );
    assert_eq!(h.count(Op::CreateMailbox), 1);
}

/// `mkdir` of a name another client made a moment ago, while the mount's mailbox list
/// is fresh: EEXIST, and the mailbox shows at once, as EEXIST says it does.
#[test]
fn mkdir_of_a_mailbox_made_elsewhere_meanwhile_shows_it() {
    let h = Harness::new();
    assert!(!h.names(ROOT).unwrap().contains(&"Projects".to_string()));
    h.store.add_mailbox("Projects", Some('/'), true, None);
    assert_eq!(
        errno(h.fs.mkdir(ROOT, OsStr::new("Projects"))),
        libc::EEXIST
    );
    assert!(h.fs.lookup(ROOT, OsStr::new("Projects")).is_ok());
}

#[test]
fn invalid_flags_are_einval_and_valid_flags_are_one_store() {
    let h = Harness::new();
    let (_, name) = account(&h);
    let dir = h.ino(&format!("INBOX/{name}")).unwrap();
    assert_eq!(h.fs.getxattr(dir, OsStr::new(FLAGS)).unwrap(), b"\\Seen");
    let bad: [&[u8]; 6] = [
        b"\\Seen x\r\nA1 DELETE INBOX",
        b"\\Recent",
        b"\\Bogus",
        b"(x",
        b"a\"b",
        b"\xff\xfe",
    ];
    for value in bad {
        let result = h.fs.setxattr(dir, OsStr::new(FLAGS), value);
        assert_eq!(errno(result), libc::EINVAL, "{value:?}");
    }
    assert_eq!(h.count(Op::SetFlags), 0);
    assert_eq!(h.fs.getxattr(dir, OsStr::new(FLAGS)).unwrap(), b"\\Seen");

    h.fs.setxattr(dir, OsStr::new(FLAGS), b"\\Flagged \\seen $label1\n")
        .unwrap();
    assert_eq!(h.count(Op::SetFlags), 1);
    assert_eq!(
        h.fs.getxattr(dir, OsStr::new(FLAGS)).unwrap(),
        b"\\Flagged \\Seen $label1"
    );
    assert_eq!(
        h.stored("INBOX")[0].flags,
        ["\\Flagged", "\\Seen", "$label1"]
    );

    h.fs.removexattr(dir, OsStr::new(FLAGS)).unwrap();
    assert_eq!(h.count(Op::SetFlags), 2);
    assert_eq!(h.fs.getxattr(dir, OsStr::new(FLAGS)).unwrap(), b"");
    assert!(h.stored("INBOX")[0].flags.is_empty());

    assert_eq!(
        errno(h.fs.setxattr(dir, OsStr::new("user.imap.uid"), b"7")),
        libc::EPERM
    );
    assert_eq!(h.count(Op::SetFlags), 2);
}

/// `setfattr -n user.imap.flags -v '+\Flagged -\Seen'`: only those change; a flag another
/// client set since the listing stays, where replacing the set would drop it.
#[test]
fn plus_and_minus_flags_change_only_those_and_keep_another_clients() {
    let h = Harness::new();
    let (_, name) = account(&h);
    let dir = h.ino(&format!("INBOX/{name}")).unwrap();
    assert_eq!(h.fs.getxattr(dir, OsStr::new(FLAGS)).unwrap(), b"\\Seen");
    // Another client, unseen by the mount.
    h.store.set_flags("INBOX", Uid(1), &["\\Seen", "$theirs"]);

    h.fs.setxattr(dir, OsStr::new(FLAGS), b"+\\Flagged -\\seen +$mine\n")
        .unwrap();
    assert_eq!(h.count(Op::SetFlags), 1);
    assert_eq!(
        h.fs.getxattr(dir, OsStr::new(FLAGS)).unwrap(),
        b"\\Flagged $mine"
    );
    let mut stored = h.stored("INBOX")[0].flags.clone();
    stored.sort();
    assert_eq!(stored, ["$mine", "$theirs", "\\Flagged"]);

    // Signed and unsigned words together, or one flag both ways: EINVAL, nothing sent.
    for bad in [&b"+\\Seen \\Flagged"[..], b"+$x -$X"] {
        assert_eq!(
            errno(h.fs.setxattr(dir, OsStr::new(FLAGS), bad)),
            libc::EINVAL
        );
    }
    assert_eq!(h.count(Op::SetFlags), 1);
}

/// `setfattr -n user.imap.flags -v '+\Seen' INBOX`: every message shown there changes;
/// a plain list, which would replace every message's flags, is EINVAL.
#[test]
fn plus_and_minus_flags_on_a_mailbox_change_every_message_it_shows() {
    let h = Harness::new();
    for (i, flags) in [&["\\Seen"][..], &[], &["\\Flagged", "$x"]]
        .iter()
        .enumerate()
    {
        let raw = plain_message(&format!("m{i}"), "hello");
        h.store.add_message("INBOX", &raw, flags, date());
    }
    let inbox = h.ino("INBOX").unwrap();
    let names = h.names(inbox).unwrap();
    assert_eq!(
        errno(h.fs.setxattr(inbox, OsStr::new(FLAGS), b"\\Seen")),
        libc::EINVAL
    );
    assert_eq!(
        errno(h.fs.removexattr(inbox, OsStr::new(FLAGS))),
        libc::ENODATA
    );
    assert_eq!(h.count(Op::SetFlags), 0);
    h.fs.setxattr(inbox, OsStr::new(FLAGS), b"+\\Seen -$X\n")
        .unwrap();
    let stored: Vec<Vec<String>> = h.stored("INBOX").into_iter().map(|m| m.flags).collect();
    assert_eq!(
        stored,
        [vec!["\\Seen"], vec!["\\Seen"], vec!["\\Flagged", "\\Seen"]]
    );
    let shown: Vec<Vec<u8>> = names
        .iter()
        .map(|name| {
            let dir = h.fs.lookup(inbox, OsStr::new(name)).unwrap().attr.ino;
            h.fs.getxattr(dir, OsStr::new(FLAGS)).unwrap()
        })
        .collect();
    assert_eq!(shown, [&b"\\Seen"[..], b"\\Seen", b"\\Flagged \\Seen"]);
}

#[test]
fn a_read_only_mount_refuses_every_change_without_asking_the_server() {
    let h = Harness::with(|c| c.read_only = true);
    let (_, name) = account(&h);
    let inbox = h.ino("INBOX").unwrap();
    let archive = h.ino("Archive").unwrap();
    let dir = h.ino(&format!("INBOX/{name}")).unwrap();
    let body = h.ino(&format!("INBOX/{name}/body.txt")).unwrap();
    let n = OsStr::new(&name);

    let refusals: Vec<(&str, FsResult<()>)> = vec![
        ("mkdir", h.fs.mkdir(ROOT, OsStr::new("New")).map(drop)),
        ("rmdir mailbox", h.fs.rmdir(ROOT, OsStr::new("Archive"))),
        ("rmdir message", h.fs.rmdir(inbox, n)),
        ("unlink", h.fs.unlink(dir, OsStr::new("body.txt"))),
        (
            "mv message",
            h.fs.rename(inbox, n, archive, n, false, false),
        ),
        (
            "mv mailbox",
            h.fs.rename(
                ROOT,
                OsStr::new("Archive"),
                ROOT,
                OsStr::new("Old"),
                false,
                false,
            ),
        ),
        (
            "create",
            h.fs.create(inbox, OsStr::new("new.eml")).map(drop),
        ),
        ("write", h.fs.write(body, 0, 0, b"x").map(drop)),
        ("open for writing", h.fs.open(body, true).map(drop)),
        (
            "setattr",
            h.fs.setattr(body, None, true, Some(0), None).map(drop),
        ),
        ("setxattr", h.fs.setxattr(dir, OsStr::new(FLAGS), b"\\Seen")),
        ("removexattr", h.fs.removexattr(dir, OsStr::new(FLAGS))),
        (
            "removexattr uid",
            h.fs.removexattr(dir, OsStr::new("user.imap.uid")),
        ),
    ];
    for (what, result) in refusals {
        assert_eq!(errno(result), libc::EROFS, "{what}");
    }
    assert_eq!(h.change_calls(), 0);
    assert_eq!(
        h.names(dir).unwrap(),
        ["message.eml", "body.txt", "a1.bin"],
        "nothing was hidden"
    );
    assert!(h.spool_is_empty());
}

#[test]
fn a_new_file_is_appended_once_on_close() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    let sample = Sample::numbered(5);
    let (attr, fh) = h.fs.create(inbox, OsStr::new("saved.eml")).unwrap();
    let ino = attr.attr.ino;
    let (first, rest) = sample.raw.split_at(1000);
    assert_eq!(h.fs.write(ino, fh, 0, first).unwrap(), 1000);
    assert_eq!(
        h.fs.write(ino, fh, 1000, rest).unwrap() as usize,
        rest.len()
    );
    assert_eq!(
        h.fs.getattr(ino).unwrap().attr.size,
        sample.raw.len() as u64
    );
    assert_eq!(h.read_all(ino).unwrap(), sample.raw);
    assert!(h.names(inbox).unwrap().contains(&"saved.eml".to_string()));
    assert_eq!(h.count(Op::Append), 0, "nothing is sent before close");

    h.fs.flush(ino, fh).unwrap();
    assert_eq!(h.count(Op::Append), 1);
    h.fs.flush(ino, fh).unwrap();
    h.fs.release(ino, fh).unwrap();
    assert_eq!(h.count(Op::Append), 1, "a second flush appended again");

    let stored = h.stored("INBOX");
    assert_eq!(stored.len(), 1);
    assert_eq!(h.stored_raw("INBOX", stored[0].uid), sample.raw);
    let name = sample.dir_name(stored[0].uid);
    assert_eq!(h.names(inbox).unwrap(), std::slice::from_ref(&name));
    assert_eq!(
        h.read_path(&format!("INBOX/{name}/a5.bin")).unwrap(),
        sample.attachment
    );
    assert!(
        h.spool_is_empty(),
        "the spool file is removed once appended"
    );
}

#[test]
fn a_failed_append_is_reported_and_keeps_the_bytes_in_the_spool() {
    let h = Harness::new();
    let inbox = h.ino("INBOX").unwrap();
    let data = pseudo_random_bytes(3, 10_000);
    let (attr, fh) = h.fs.create(inbox, OsStr::new("photo.png")).unwrap();
    let ino = attr.attr.ino;
    h.fs.write(ino, fh, 0, &data).unwrap();
    h.store.fail_next(Op::Append, || {
        StoreError::OverQuota("mailbox is full".into())
    });
    assert_eq!(errno(h.fs.flush(ino, fh)), libc::ENOSPC);
    assert_eq!(h.count(Op::Append), 1);
    assert!(h.stored("INBOX").is_empty());

    let spooled: Vec<_> = std::fs::read_dir(h.spool.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(spooled.len(), 1);
    assert!(spooled[0].to_string_lossy().ends_with("photo.png"));
    assert_eq!(std::fs::read(&spooled[0]).unwrap(), data);

    // No new bytes: closing again does not send the same message again, and still
    // reports that it was not stored, and why; the last release sends nothing either.
    assert_eq!(errno(h.fs.flush(ino, fh)), libc::ENOSPC);
    h.fs.release(ino, fh).unwrap();
    assert_eq!(h.count(Op::Append), 1);
    assert_eq!(std::fs::read(&spooled[0]).unwrap(), data);
}

/// Found by the reference model: a message deleted into a Trash that another client had
/// recreated got the name a message moved there before the recreation still held, and
/// read as ESTALE. The move's COPYUID tells the new UIDVALIDITY: the old listing goes.
#[test]
fn a_message_deleted_into_a_recreated_trash_reads_exactly() {
    let h = Harness::new();
    h.store.add_mailbox("Archive", Some('/'), true, None);
    h.store
        .add_mailbox("Trash", Some('/'), true, Some("\\Trash"));
    let sample = Sample::numbered(1);
    let uid = h.store.add_message("Archive", &sample.raw, &[], date());
    let (archive, trash) = (h.ino("Archive").unwrap(), h.ino("Trash").unwrap());
    let name = sample.dir_name(uid);
    h.names(archive).unwrap();
    // Into Trash and back: Trash's listing and a name `mv` gave are held.
    h.fs.rename(
        archive,
        OsStr::new(&name),
        trash,
        OsStr::new(&name),
        false,
        false,
    )
    .unwrap();
    let in_trash = h.names(trash).unwrap();
    h.fs.rename(
        trash,
        OsStr::new(&in_trash[0]),
        archive,
        OsStr::new(&in_trash[0]),
        false,
        false,
    )
    .unwrap();
    // Another client recreates Trash; then this mount deletes the message into it.
    h.store.recreate_mailbox("Trash");
    h.expire_listings();
    let back = h.names(archive).unwrap();
    let dir = h.ino(&format!("Archive/{}", back[0])).unwrap();
    for file in h.names(dir).unwrap() {
        h.fs.unlink(dir, OsStr::new(&file)).unwrap();
    }
    h.fs.rmdir(archive, OsStr::new(&back[0])).unwrap();
    // The first message of the new Trash has the name the old one's had; read it before
    // anything lists Trash again.
    let name = sample.dir_name(Uid(1));
    assert_eq!(name, in_trash[0]);
    assert_eq!(
        h.read_path(&format!("Trash/{name}/message.eml")).unwrap(),
        sample.raw
    );
    assert_eq!(h.names(trash).unwrap(), [name]);
}

/// Found by the reference model: the name `mv` gave a message kept resolving after the
/// message left again, and hid a later message listed under the same name.
#[test]
fn a_name_mv_gave_never_hides_a_listed_message() {
    let h = Harness::new();
    h.store
        .add_mailbox("Trash", Some('/'), true, Some("\\Trash"));
    h.store
        .add_message("Trash", &plain_message("old", "x"), &[], date());
    for subject in ["x", "y", "m"] {
        h.store
            .add_message("INBOX", &plain_message(subject, "x"), &[], date());
    }
    let (inbox, trash) = (h.ino("INBOX").unwrap(), h.ino("Trash").unwrap());
    h.names(inbox).unwrap();
    h.names(trash).unwrap();
    let mv = |from: u64, name: &str, to: u64| {
        h.fs.rename(from, OsStr::new(name), to, OsStr::new(name), false, false)
            .unwrap()
    };
    mv(inbox, "3 m", trash); // Trash/2 m, and "3 m" resolves there until Trash is listed
    mv(trash, "2 m", inbox); // INBOX/4 m
    mv(inbox, "4 m", trash); // Trash/3 m: a listed message named "3 m"
    let read = h.read_path("Trash/3 m/message.eml").unwrap();
    assert!(read.ends_with(b"x\r\n"));
    assert_eq!(h.names(trash).unwrap(), ["1 old", "3 m"]);
}

/// A file manager's "Move to Trash" (GIO and the FreeDesktop trash rules): it finds the
/// mount's `.Trash-<uid>`, writes a note into `info`, and renames the message into `files`.
/// The message ends in the server's Trash, and no mailbox is created.
#[test]
fn a_file_manager_trash_moves_the_message_to_the_servers_trash() {
    let h = Harness::new();
    let (sample, name) = account(&h);
    let inbox = h.ino("INBOX").unwrap();
    let mailboxes_before = h.store.list_mailboxes().unwrap().len();
    let trash_dir = h.fs.lookup(ROOT, OsStr::new(".Trash-1000")).unwrap();
    assert_eq!(trash_dir.attr.kind, Kind::Directory);
    assert_eq!(trash_dir.attr.perm, 0o700);
    assert_eq!(
        errno(h.fs.mkdir(ROOT, OsStr::new(".Trash-1000"))),
        libc::EEXIST
    );
    let files =
        h.fs.lookup(trash_dir.attr.ino, OsStr::new("files"))
            .unwrap()
            .attr
            .ino;
    let info =
        h.fs.lookup(trash_dir.attr.ino, OsStr::new("info"))
            .unwrap()
            .attr
            .ino;
    let note_name = format!("{name}.trashinfo");
    let (note, fh) = h.fs.create(info, OsStr::new(&note_name)).unwrap();
    let text = b"[Trash Info]\nPath=/INBOX/x\nDeletionDate=2026-12-04T12:00:00\n";
    h.fs.write(note.attr.ino, fh, 0, text).unwrap();
    h.fs.flush(note.attr.ino, fh).unwrap();
    h.fs.release(note.attr.ino, fh).unwrap();
    assert_eq!(
        errno(h.fs.create(info, OsStr::new(&note_name))),
        libc::EEXIST
    );
    assert_eq!(h.read_all(note.attr.ino).unwrap(), text);
    h.fs.rename(
        inbox,
        OsStr::new(&name),
        files,
        OsStr::new(&name),
        false,
        false,
    )
    .unwrap();
    assert!(h.stored("INBOX").is_empty());
    let trashed = h.stored("Trash");
    assert_eq!(trashed.len(), 1);
    assert_eq!(h.stored_raw("Trash", trashed[0].uid), sample.raw);
    assert_eq!(h.store.list_mailboxes().unwrap().len(), mailboxes_before);
    assert!(h.names(files).unwrap().is_empty());
    assert_eq!(h.names(info).unwrap(), std::slice::from_ref(&note_name));
    h.fs.unlink(info, OsStr::new(&note_name)).unwrap();
    assert!(h.names(info).unwrap().is_empty());
    // Not listed at the root, like .snapshot on filers.
    assert!(!h
        .names(ROOT)
        .unwrap()
        .iter()
        .any(|n| n.starts_with(".Trash")));
}

/// "Move to Trash" of one file of a message (an attachment) hides that file, as `rm` does;
/// the message stays where it is, whole.
#[test]
fn a_file_manager_trash_of_an_attachment_hides_it_and_keeps_the_message() {
    let h = Harness::new();
    let (sample, name) = account(&h);
    let dir = h.ino(&format!("INBOX/{name}")).unwrap();
    let files = h.trash_files();
    let attachment = OsStr::new(&sample.attachment_name);
    h.fs.rename(dir, attachment, files, attachment, false, false)
        .unwrap();
    assert_eq!(h.names(dir).unwrap(), ["message.eml", "body.txt"]);
    assert_eq!(h.stored("INBOX").len(), 1);
    assert!(h.stored("Trash").is_empty());
    assert_eq!(h.change_calls(), 0);
}

/// `cp -r INBOX/<message> Archive/` as coreutils does it: `mkdir`, then each file created
/// and written, with the bytes read from the message directory copied.
pub(super) fn copy_dir_in(
    h: &Harness,
    from: &str,
    into: u64,
    name: &str,
    bytes: impl Fn(&str) -> Vec<u8>,
) -> FsResult<u64> {
    // cp looks at what it copies first.
    let source = h.ino(from).unwrap();
    let dir = match h.fs.mkdir(into, OsStr::new(name)) {
        Ok(made) => made.attr.ino,
        // There already: cp goes on into it.
        Err(FsError::Exists) => h.fs.lookup(into, OsStr::new(name))?.attr.ino,
        Err(e) => return Err(e),
    };
    for file in h.names(source).unwrap() {
        let data = bytes(&file);
        // A file that shows already is opened to write and truncated; another is made.
        let (ino, fh) = match h.fs.lookup(dir, OsStr::new(&file)) {
            Ok(found) => {
                let ino = found.attr.ino;
                let fh = h.fs.open(ino, true)?.fh;
                h.fs.setattr(ino, Some(fh), true, Some(0), None)?;
                (ino, fh)
            }
            Err(_) => {
                let (made, fh) = h.fs.create(dir, OsStr::new(&file))?;
                (made.attr.ino, fh)
            }
        };
        assert_eq!(h.fs.write(ino, fh, 0, &data)?, data.len() as u32);
        h.fs.release(ino, fh)?;
    }
    Ok(dir)
}

#[test]
fn cp_r_of_a_message_directory_into_a_mailbox_copies_the_message() {
    let h = Harness::new();
    let (sample, name) = account(&h);
    let earlier = Sample::numbered(2);
    h.store.add_message("Archive", &earlier.raw, &[], date());
    let archive = h.ino("Archive").unwrap();
    let from = format!("INBOX/{name}");
    let read = |file: &str| h.read_path(&format!("{from}/{file}")).unwrap();
    let dir = copy_dir_in(&h, &from, archive, &name, read).unwrap();

    // One COPY on the server, no mailbox, nothing stored from the files.
    assert_eq!(h.count(Op::CopyMessage), 1);
    assert_eq!(h.count(Op::CreateMailbox), 0);
    assert_eq!(h.count(Op::Append), 0);
    assert_eq!(h.stored("INBOX").len(), 1, "the message copied stays");
    let archived = h.stored("Archive");
    assert_eq!(archived.len(), 2);
    let copy = archived[1].uid;
    assert_eq!(h.stored_raw("Archive", copy), sample.raw);
    assert_eq!(archived[1].flags, ["\\Seen"], "flags go with the copy");

    // The directory made is the copy's, whole, under the name made and its own.
    assert_eq!(h.names(dir).unwrap(), ["message.eml", "body.txt", "a1.bin"]);
    for file in ["message.eml", "body.txt", "a1.bin"] {
        let copied = h.read_path(&format!("Archive/{name}/{file}")).unwrap();
        assert_eq!(copied, read(file), "{file}");
    }
    assert_eq!(
        h.names(archive).unwrap(),
        [earlier.dir_name(Uid(1)), sample.dir_name(copy)]
    );
    assert_eq!(
        h.read_path(&format!("Archive/{}/body.txt", sample.dir_name(copy)))
            .unwrap(),
        sample.body.as_bytes()
    );
}

#[test]
fn a_message_directory_copied_in_with_other_bytes_is_refused_and_its_copy_removed() {
    let h = Harness::new();
    let (_, name) = account(&h);
    let archive = h.ino("Archive").unwrap();
    let from = format!("INBOX/{name}");
    let changed = |file: &str| {
        let mut bytes = h.read_path(&format!("{from}/{file}")).unwrap();
        if file == "body.txt" {
            bytes[0] ^= 1;
        }
        bytes
    };
    let result = copy_dir_in(&h, &from, archive, &name, changed);
    assert_eq!(errno(result), libc::EPERM);
    assert_eq!(h.count(Op::CopyMessage), 1);
    assert!(h.stored("Archive").is_empty(), "the copy is removed");
    assert_eq!(h.stored("INBOX").len(), 1);
    assert!(h.names(archive).unwrap().is_empty());
}

#[test]
fn a_copy_holds_only_the_message_files_and_other_numbered_names_are_mailboxes() {
    let h = Harness::new();
    let (_, name) = account(&h);
    let archive = h.ino("Archive").unwrap();
    h.ino(&format!("INBOX/{name}")).unwrap();
    let dir = h.fs.mkdir(archive, OsStr::new(&name)).unwrap().attr.ino;
    assert_eq!(
        errno(h.fs.create(dir, OsStr::new("notes.txt"))),
        libc::EPERM
    );
    assert_eq!(errno(h.fs.mkdir(dir, OsStr::new("sub"))), libc::EPERM);
    h.fs.create(dir, OsStr::new("body.txt")).unwrap();
    assert_eq!(
        errno(h.fs.create(dir, OsStr::new("body.txt"))),
        libc::EEXIST
    );
    assert_eq!(h.count(Op::Append), 0);

    // A name no listed message has is a mailbox, as before.
    h.fs.mkdir(archive, OsStr::new("2024 Receipts")).unwrap();
    assert_eq!(h.count(Op::CreateMailbox), 1);
    assert_eq!(h.count(Op::CopyMessage), 1);
}

#[test]
fn rsync_of_a_message_directory_writes_temporary_names_and_renames_them() {
    let h = Harness::new();
    let (_, name) = account(&h);
    let archive = h.ino("Archive").unwrap();
    let from = format!("INBOX/{name}");
    let source = h.ino(&from).unwrap();
    let dir = h.fs.mkdir(archive, OsStr::new(&name)).unwrap().attr.ino;
    for file in h.names(source).unwrap() {
        let temp = format!(".{file}.Ab12Cd");
        let (made, fh) = h.fs.create(dir, OsStr::new(&temp)).unwrap();
        let data = h.read_path(&format!("{from}/{file}")).unwrap();
        h.fs.write(made.attr.ino, fh, 0, &data).unwrap();
        h.fs.release(made.attr.ino, fh).unwrap();
        assert!(
            !h.names(dir).unwrap().contains(&file),
            "{file} shows once renamed"
        );
        h.fs.rename(dir, OsStr::new(&temp), dir, OsStr::new(&file), false, false)
            .unwrap();
    }
    assert_eq!(h.names(dir).unwrap(), ["message.eml", "body.txt", "a1.bin"]);
    // A temporary name of no file of the message, or renamed elsewhere, is refused.
    assert_eq!(
        errno(h.fs.create(dir, OsStr::new(".notes.txt.Ab12Cd"))),
        libc::EPERM
    );
    assert_eq!(h.count(Op::CopyMessage), 1);
    assert_eq!(h.count(Op::Append), 0);
    assert_eq!(h.stored("Archive").len(), 1);
}

#[test]
fn a_copy_removed_and_copied_again_is_copied_again() {
    let h = Harness::new();
    let (sample, name) = account(&h);
    let archive = h.ino("Archive").unwrap();
    let from = format!("INBOX/{name}");
    let read = |file: &str| h.read_path(&format!("{from}/{file}")).unwrap();
    let dir = copy_dir_in(&h, &from, archive, &name, read).unwrap();
    // rm -r of it, by the name the copier made: the copy goes to Trash.
    remove_files(&h, dir);
    h.fs.rmdir(archive, OsStr::new(&name)).unwrap();
    assert!(h.stored("Archive").is_empty());
    assert_eq!(h.stored("Trash").len(), 1);
    assert_eq!(errno(h.ino(&format!("Archive/{name}"))), libc::ENOENT);
    // The name is forgotten with the copy: the same cp -r copies the message again.
    copy_dir_in(&h, &from, archive, &name, read).unwrap();
    assert_eq!(h.count(Op::CopyMessage), 2);
    let archived = h.stored("Archive");
    assert_eq!(archived.len(), 1);
    assert_eq!(h.stored_raw("Archive", archived[0].uid), sample.raw);
}

#[test]
fn a_name_of_a_message_nobody_looked_at_is_a_mailbox() {
    let h = Harness::new();
    let (_, name) = account(&h);
    let archive = h.ino("Archive").unwrap();
    // INBOX is listed, but its message's directory was never looked up.
    h.names(h.ino("INBOX").unwrap()).unwrap();
    h.fs.forget(h.ino(&format!("INBOX/{name}")).unwrap(), 1);
    h.fs.mkdir(archive, OsStr::new(&name)).unwrap();
    assert_eq!(h.count(Op::CopyMessage), 0);
    assert_eq!(h.count(Op::CreateMailbox), 1);
}

#[test]
fn an_interrupted_copy_shows_whole_once_no_copier_fills_it() {
    let h = Harness::new();
    let (_, name) = account(&h);
    // The copy's UID is not the original's, so the name the copier made is not its own.
    h.store
        .add_message("Archive", &Sample::numbered(2).raw, &[], date());
    let archive = h.ino("Archive").unwrap();
    let from = format!("INBOX/{name}");
    let source = h.ino(&from).unwrap();
    let dir = h.fs.mkdir(archive, OsStr::new(&name)).unwrap().attr.ino;
    // cp was stopped after message.eml.
    let (made, fh) = h.fs.create(dir, OsStr::new("message.eml")).unwrap();
    let data = h.read_path(&format!("{from}/message.eml")).unwrap();
    h.fs.write(made.attr.ino, fh, 0, &data).unwrap();
    h.fs.release(made.attr.ino, fh).unwrap();
    assert_eq!(h.names(dir).unwrap(), ["message.eml"]);
    h.clock.advance(crate::fs::copies::NAME_KEPT);
    // The next lookup in a mailbox ends the copy: every file shows, the kernel is told.
    h.sent_invalidations();
    let _ = h.fs.lookup(archive, OsStr::new("nothing"));
    assert!(h
        .sent_invalidations()
        .contains(&Invalidation::Inode { ino: dir }));
    assert_eq!(h.names(dir).unwrap(), h.names(source).unwrap());
    assert_eq!(errno(h.ino(&format!("Archive/{name}"))), libc::ENOENT);
}

#[test]
fn mv_of_a_part_into_another_mailbox_is_exdev_so_tools_copy_it_there() {
    let h = Harness::new();
    let (_, name) = account(&h);
    let dir = h.ino(&format!("INBOX/{name}")).unwrap();
    let archive = h.ino("Archive").unwrap();
    let moved = h.fs.rename(
        dir,
        OsStr::new("a1.bin"),
        archive,
        OsStr::new("a1.bin"),
        false,
        false,
    );
    assert_eq!(errno(moved), libc::EXDEV);
    // Within its message, or into the root (which holds no messages): EPERM as before.
    let renamed = h.fs.rename(
        dir,
        OsStr::new("a1.bin"),
        dir,
        OsStr::new("b.bin"),
        false,
        false,
    );
    assert_eq!(errno(renamed), libc::EPERM);
    let to_root = h.fs.rename(
        dir,
        OsStr::new("a1.bin"),
        ROOT,
        OsStr::new("a1.bin"),
        false,
        false,
    );
    assert_eq!(errno(to_root), libc::EPERM);
    assert_eq!(h.change_calls(), 0);
}

#[test]
fn a_mailbox_first_listed_as_holding_no_messages_is_asked_again_before_a_move_or_copy() {
    let h = Harness::new();
    h.store.add_mailbox("Later", Some('/'), false, None);
    let (_, name) = account(&h);
    let dir = h.ino(&format!("INBOX/{name}")).unwrap();
    let later = h.ino("Later").unwrap();
    // Made a mailbox since the tree was listed, and nobody said so.
    h.store.make_selectable_unannounced("Later");
    let moved = h.fs.rename(
        dir,
        OsStr::new("a1.bin"),
        later,
        OsStr::new("a1.bin"),
        false,
        false,
    );
    assert_eq!(errno(moved), libc::EXDEV, "a mailbox now: copied by mv");
    let inbox = h.ino("INBOX").unwrap();
    h.fs.mkdir(later, OsStr::new(&name)).unwrap();
    assert_eq!(
        h.count(Op::CopyMessage),
        1,
        "and a message directory made there copies"
    );
    assert!(h.names(inbox).unwrap().contains(&name));
}

/// The same for a new file, a message moved in, and `setfattr` on the mailbox.
#[test]
fn a_mailbox_first_listed_as_holding_no_messages_takes_new_files_and_messages() {
    let h = Harness::new();
    h.store.add_mailbox("Later", Some('/'), false, None);
    h.store.add_mailbox("Also", Some('/'), false, None);
    let (_, name) = account(&h);
    let later = h.ino("Later").unwrap();
    let also = h.ino("Also").unwrap();
    h.store.make_selectable_unannounced("Later");
    h.store.make_selectable_unannounced("Also");
    let (made, fh) = h.fs.create(later, OsStr::new("note.txt")).unwrap();
    h.fs.write(made.attr.ino, fh, 0, b"a note\n").unwrap();
    h.fs.release(made.attr.ino, fh).unwrap();
    assert_eq!(h.stored("Later").len(), 1);
    let inbox = h.ino("INBOX").unwrap();
    h.fs.rename(
        inbox,
        OsStr::new(&name),
        also,
        OsStr::new(&name),
        false,
        false,
    )
    .unwrap();
    assert_eq!(h.stored("Also").len(), 1);
    h.fs.setxattr(also, OsStr::new(FLAGS), b"+$done").unwrap();
    assert_eq!(h.stored("Also")[0].flags.last().unwrap(), "$done");
}

/// Dovecot 2.3 lists a special-use mailbox first made as a parent (`Archive`, of
/// `Archive/2023`) as `\Noselect`, yet it opens and holds messages: they show, and it
/// takes more. A special-use mailbox that truly does not open shows its children alone.
#[test]
fn a_special_use_mailbox_listed_noselect_shows_its_messages_or_its_children() {
    let h = Harness::new();
    h.store
        .add_mailbox("Archive", Some('/'), true, Some("\\Archive"));
    h.store.add_mailbox("Archive/2023", Some('/'), true, None);
    let old = Sample::numbered(1);
    let uid = h.store.add_message("Archive", &old.raw, &[], date());
    h.store.list_as_noselect("Archive");
    h.store
        .add_mailbox("Junk", Some('/'), false, Some("\\Junk"));
    h.store.add_mailbox("Junk/Old", Some('/'), true, None);
    let archive = h.ino("Archive").unwrap();
    assert_eq!(
        h.names(archive).unwrap(),
        ["2023".to_string(), old.dir_name(uid)]
    );
    assert_eq!(
        h.read_path(&format!("Archive/{}/message.eml", old.dir_name(uid)))
            .unwrap(),
        old.raw
    );
    let (made, fh) = h.fs.create(archive, OsStr::new("note.txt")).unwrap();
    h.fs.write(made.attr.ino, fh, 0, b"a note\n").unwrap();
    h.fs.release(made.attr.ino, fh).unwrap();
    assert_eq!(h.stored("Archive").len(), 2);

    let junk = h.ino("Junk").unwrap();
    assert_eq!(h.names(junk).unwrap(), ["Old"]);
    assert!(h.ino("Junk/Old").is_ok());
    // A search of every mailbox passes it by; emptied, it can be deleted.
    h.store.add_message("INBOX", &old.raw, &[], date());
    assert_eq!(h.names_at(".search/m1").unwrap(), ["Archive", "INBOX"]);
    h.fs.rmdir(junk, OsStr::new("Old")).unwrap();
    h.fs.rmdir(ROOT, OsStr::new("Junk")).unwrap();
    assert!(errno(h.ino("Junk")) == libc::ENOENT);
}

/// A `\Noselect` special-use mailbox that cannot be listed because the server is
/// unreachable may hold messages: without children it is EIO like any other mailbox (Dovecot
/// lists `Trash` so at times; it was shown empty), with children they show; rmdir refuses.
#[test]
fn an_unreachable_noselect_special_use_mailbox_is_eio_unless_it_has_children() {
    let h = Harness::new();
    h.store
        .add_mailbox("Trash", Some('/'), true, Some("\\Trash"));
    h.store.list_as_noselect("Trash");
    h.store
        .add_mailbox("Archive", Some('/'), true, Some("\\Archive"));
    h.store.add_mailbox("Archive/2023", Some('/'), true, None);
    h.store.list_as_noselect("Archive");
    let trash = h.ino("Trash").unwrap();
    let archive = h.ino("Archive").unwrap();
    let lost = || StoreError::Connection("gone".into());
    h.store.fail_next(Op::ListMessages, lost);
    assert_eq!(errno(h.names(trash)), libc::EIO);
    h.store.fail_next(Op::ListMessages, lost);
    assert_eq!(h.names(archive).unwrap(), ["2023"]);
    h.store.fail_next(Op::ListMessages, lost);
    assert_eq!(errno(h.fs.rmdir(ROOT, OsStr::new("Trash"))), libc::EIO);
    assert!(h.ino("Trash").is_ok());
}

/// A message read, then moved or copied by this mount: its bytes are the same, so reading
/// it in its new place takes them from the cache (offline, a message moved under a
/// provisional UID was EIO; online, it was fetched again).
#[test]
fn a_message_moved_or_copied_here_reads_from_what_the_cache_holds() {
    let h = Harness::new();
    let (sample, name) = account(&h);
    let inbox = h.ino("INBOX").unwrap();
    assert_eq!(
        h.read_path(&format!("INBOX/{name}/message.eml")).unwrap(),
        sample.raw
    );
    let archive = h.ino("Archive").unwrap();
    h.fs.rename(
        inbox,
        OsStr::new(&name),
        archive,
        OsStr::new(&name),
        false,
        false,
    )
    .unwrap();
    let fetched = h.count(Op::FetchSection);
    let moved = h.stored("Archive")[0].uid;
    h.expire_listings();
    let moved_name = sample.dir_name(moved);
    assert!(h.names(archive).unwrap().contains(&moved_name));
    assert_eq!(
        h.read_path(&format!("Archive/{moved_name}/message.eml"))
            .unwrap(),
        sample.raw
    );
    assert_eq!(h.count(Op::FetchSection), fetched, "nothing fetched again");
    // Kept under its own UID from then on (a prefetch or a later mount finds it there).
    let moved_ref = MessageRef {
        mailbox: MailboxId::new("Archive"),
        validity: h.store.uid_validity("Archive"),
        uid: moved,
    };
    assert!(h
        .fs
        .content
        .has_whole_message(&moved_ref, sample.raw.len() as u64));
}
