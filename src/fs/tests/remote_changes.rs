//! Consistency when another client changes the account, and after failed fetches: never
//! old or partial bytes, and a precise errno.

use super::*;
use crate::store::{StoreError, StoreEvent};

#[test]
fn a_recreated_mailbox_never_serves_old_bytes() {
    let h = Harness::new();
    let old = Sample::numbered(1);
    let old_uid = h.store.add_message("INBOX", &old.raw, &[], date());
    let old_dir = format!("INBOX/{}", old.dir_name(old_uid));
    let inbox = h.ino("INBOX").unwrap();
    assert_eq!(h.names(inbox).unwrap(), [old.dir_name(old_uid)]);
    let old_msg = h.ino(&old_dir).unwrap();
    let old_eml = h.ino(&format!("{old_dir}/message.eml")).unwrap();
    let old_body = h.ino(&format!("{old_dir}/body.txt")).unwrap();
    let old_attachment = h.ino(&format!("{old_dir}/a1.bin")).unwrap();
    // message.eml and the attachment are cached; body.txt never was.
    assert_eq!(h.read_all(old_eml).unwrap(), old.raw);
    assert_eq!(h.read_all(old_attachment).unwrap(), old.attachment);

    // Another client deletes and re-creates INBOX; a different message gets the same UID.
    h.store.recreate_mailbox("INBOX");
    let new = Sample::numbered(2);
    let new_uid = h.store.add_message("INBOX", &new.raw, &[], date());
    assert_eq!(new_uid, old_uid);
    h.expire_listings();
    assert_eq!(h.names(inbox).unwrap(), [new.dir_name(new_uid)]);

    for ino in [old_eml, old_body, old_attachment] {
        assert_eq!(errno(h.read_all(ino)), libc::ESTALE, "inode {ino}");
    }
    assert_eq!(errno(h.fs.readdir(old_msg, 0, 8)), libc::ESTALE);
    assert_eq!(errno(h.ino(&old_dir)), libc::ENOENT);

    let new_dir = format!("INBOX/{}", new.dir_name(new_uid));
    let new_eml = h.ino(&format!("{new_dir}/message.eml")).unwrap();
    assert_ne!(new_eml, old_eml, "a new UIDVALIDITY never reuses an inode");
    assert_eq!(h.read_all(new_eml).unwrap(), new.raw);
    assert_eq!(
        h.read_path(&format!("{new_dir}/body.txt")).unwrap(),
        new.body.as_bytes()
    );
    assert_eq!(
        h.fs.getxattr(
            h.ino(&new_dir).unwrap(),
            OsStr::new("user.imap.uidvalidity")
        )
        .unwrap(),
        h.store.uid_validity("INBOX").to_string().into_bytes()
    );
}

#[test]
fn a_message_deleted_elsewhere_reads_as_enoent() {
    let h = Harness::new();
    let sample = Sample::numbered(1);
    let uid = h.store.add_message("INBOX", &sample.raw, &[], date());
    let dir = format!("INBOX/{}", sample.dir_name(uid));
    let body = h.ino(&format!("{dir}/body.txt")).unwrap();
    let eml = h.ino(&format!("{dir}/message.eml")).unwrap();
    h.store.remove_message("INBOX", uid);
    // body.txt came with its directory: the cached bytes of that very message, or ENOENT.
    match h.read_all(body) {
        Ok(bytes) => assert_eq!(bytes, sample.body.as_bytes()),
        Err(e) => assert_eq!(e.errno_and_level().0, libc::ENOENT),
    }
    assert_eq!(errno(h.read_all(eml)), libc::ENOENT);
    // The next listing of the mailbox drops the name too.
    h.expire_listings();
    assert!(h.names_at("INBOX").unwrap().is_empty());
    assert_eq!(errno(h.ino(&dir)), libc::ENOENT);
}

/// A message directory held open (a shell's cwd, `ls` of its path) whose message another
/// client expunged: reading it is an error (ESTALE through the mount), never an empty
/// listing that a backup copies as an empty directory.
#[test]
fn a_message_directory_whose_message_is_gone_does_not_list_empty() {
    let h = Harness::new();
    let sample = Sample::numbered(1);
    let uid = h.store.add_message("INBOX", &sample.raw, &[], date());
    let dir = h.ino(&format!("INBOX/{}", sample.dir_name(uid))).unwrap();
    assert!(h.names(dir).unwrap().contains(&"message.eml".to_string()));
    h.store.remove_message("INBOX", uid);
    h.expire_listings();
    assert!(h.names_at("INBOX").unwrap().is_empty());
    assert_eq!(errno(h.names(dir)), libc::ENOENT);
}

#[test]
fn a_failed_fetch_is_an_error_and_caches_nothing() {
    let h = Harness::new();
    let sample = Sample::numbered(3);
    let uid = h.store.add_message("INBOX", &sample.raw, &[], date());
    // A part of another message (one read whole gives its parts without a fetch).
    let other = Sample::numbered(4);
    let other_uid = h.store.add_message("INBOX", &other.raw, &[], date());
    let dir = format!("INBOX/{}", sample.dir_name(uid));
    let eml = h.ino(&format!("{dir}/message.eml")).unwrap();
    let fetches = h.count(Op::FetchSection);
    h.store
        .fail_next(Op::FetchSection, || StoreError::Timeout("injected".into()));
    assert_eq!(errno(h.read_all(eml)), libc::ETIMEDOUT);
    assert_eq!(h.read_all(eml).unwrap(), sample.raw);
    assert_eq!(h.count(Op::FetchSection), fetches + 2);

    let dir = format!("INBOX/{}", other.dir_name(other_uid));
    let attachment = h.ino(&format!("{dir}/a4.bin")).unwrap();
    h.store
        .fail_next(Op::FetchSection, || StoreError::Connection("reset".into()));
    assert_eq!(errno(h.read_all(attachment)), libc::EIO);
    assert_eq!(h.read_all(attachment).unwrap(), other.attachment);
}

/// message.eml is fetched in chunks: a failure after the first chunk must not leave a
/// short or zero-padded file behind.
#[test]
fn a_fetch_failing_halfway_through_a_message_caches_no_partial_content() {
    let h = Harness::new();
    let sample = Sample::new("big", "x", "big.bin", pseudo_random_bytes(9, 2 << 20));
    let uid = h.store.add_message("INBOX", &sample.raw, &[], date());
    let eml = h
        .ino(&format!("INBOX/{}/message.eml", sample.dir_name(uid)))
        .unwrap();
    let first = h.fs.read(eml, 0, 0, KERNEL_READ).unwrap();
    assert_eq!(first, sample.raw[..KERNEL_READ as usize]);
    h.store
        .fail_next(Op::FetchSection, || StoreError::Connection("reset".into()));
    assert_eq!(errno(h.fs.read(eml, 0, 0, 4 << 20)), libc::EIO);
    assert_eq!(h.fs.read(eml, 0, 0, 4 << 20).unwrap(), sample.raw);
    assert_eq!(h.read_all(eml).unwrap(), sample.raw);
}

/// The bug behind an empty `message.eml`: a message moved away between the BODYSTRUCTURE
/// answer and the layout being built got the size of a listing that no longer held it, 0.
/// The move runs at exactly that moment here, through the store's hook.
#[test]
fn a_message_moved_while_its_structure_is_fetched_is_never_a_file_of_size_zero() {
    let h = Harness::new();
    h.store.add_mailbox("Archive", Some('/'), true, None);
    let sample = Sample::numbered(1);
    let uid = h.store.add_message("INBOX", &sample.raw, &[], date());
    let name = sample.dir_name(uid);
    let inbox = h.ino("INBOX").unwrap();
    let archive = h.ino("Archive").unwrap();
    h.names(inbox).unwrap();
    let dir = h.ino(&format!("INBOX/{name}")).unwrap();
    let fs = Arc::clone(&h.fs);
    let moved_name = name.clone();
    h.store.after_next(Op::BodyStructures, move || {
        fs.rename(
            inbox,
            OsStr::new(&moved_name),
            archive,
            OsStr::new(&moved_name),
            false,
            false,
        )
        .expect("mv while the structure is on its way");
    });
    // Listing the directory builds its layout, so the structure is fetched (message.eml
    // alone is known from the listing and would need none).
    let _ = h.entries(dir);
    let eml = h.fs.lookup(dir, OsStr::new("message.eml"));
    assert_eq!(h.count(Op::MoveMessage), 1, "the move ran in between");
    match eml {
        Ok(reply) => {
            assert_eq!(reply.attr.size, sample.raw.len() as u64, "exact, never 0");
            match h.read_all(reply.attr.ino) {
                Ok(bytes) => assert_eq!(bytes, sample.raw),
                Err(e) => assert_eq!(e.errno_and_level().0, libc::ENOENT),
            }
        }
        Err(e) => assert_eq!(e.errno_and_level().0, libc::ENOENT),
    }
    // Under its new name the message reads exactly.
    h.expire_listings();
    let archived = h.names(archive).unwrap();
    assert_eq!(archived.len(), 1);
    assert_eq!(
        h.read_path(&format!("Archive/{}/message.eml", archived[0]))
            .unwrap(),
        sample.raw
    );
}

#[test]
fn changes_the_store_reports_update_the_mount_and_invalidate_the_kernel() {
    let h = Harness::watching();
    let first = Sample::numbered(1);
    let second = Sample::numbered(2);
    let uid1 = h.store.add_message("INBOX", &first.raw, &[], date());
    let uid2 = h.store.add_message("INBOX", &second.raw, &[], date());
    let inbox = h.ino("INBOX").unwrap();
    assert_eq!(h.names(inbox).unwrap().len(), 2);
    let gone = h.ino(&format!("INBOX/{}", first.dir_name(uid1))).unwrap();
    let listings = h.count(Op::ListMessages);
    h.sent_invalidations();

    // Expunged elsewhere: the kernel drops the name, and the mailbox's cached listing.
    h.store.remove_message("INBOX", uid1);
    let sent = h.sent_invalidations();
    assert!(
        sent.contains(&Invalidation::Deleted {
            parent: inbox,
            child: gone,
            name: first.dir_name(uid1),
        }),
        "{sent:?}"
    );
    assert!(
        sent.contains(&Invalidation::Inode { ino: inbox }),
        "{sent:?}"
    );
    assert_eq!(h.names(inbox).unwrap(), [second.dir_name(uid2)]);

    // New mail and flags show without listing the mailbox again.
    let third = Sample::numbered(3);
    let uid3 = h.store.add_message("INBOX", &third.raw, &[], date());
    assert!(h
        .sent_invalidations()
        .contains(&Invalidation::Inode { ino: inbox }));
    assert_eq!(
        h.names(inbox).unwrap(),
        [second.dir_name(uid2), third.dir_name(uid3)]
    );
    h.store.set_flags("INBOX", uid2, &["\\Flagged"]);
    let dir = h.ino(&format!("INBOX/{}", second.dir_name(uid2))).unwrap();
    assert_eq!(
        h.fs.getxattr(dir, OsStr::new("user.imap.flags")).unwrap(),
        b"\\Flagged"
    );
    assert_eq!(h.count(Op::ListMessages), listings, "no listing was needed");

    // Recreated elsewhere: every old name goes, old handles are stale.
    h.store.recreate_mailbox("INBOX");
    let sent = h.sent_invalidations();
    assert!(sent
        .iter()
        .any(|i| matches!(i, Invalidation::Deleted { child, .. } if *child == dir)));
    assert!(h.names(inbox).unwrap().is_empty());
    assert_eq!(errno(h.fs.readdir(dir, 0, 8)), libc::ESTALE);
}

#[test]
fn a_new_listing_tells_the_kernel_which_names_are_gone() {
    let h = Harness::new();
    let sample = Sample::numbered(1);
    let uid = h.store.add_message("INBOX", &sample.raw, &[], date());
    let inbox = h.ino("INBOX").unwrap();
    h.names(inbox).unwrap();
    h.sent_invalidations();
    // Another client expunges it; this store does not say so, the next listing does.
    h.store.remove_message("INBOX", uid);
    assert!(h.sent_invalidations().is_empty());
    h.expire_listings();
    assert!(h.names(inbox).unwrap().is_empty());
    assert_eq!(
        h.sent_invalidations(),
        [
            Invalidation::Entry {
                parent: inbox,
                name: sample.dir_name(uid),
            },
            Invalidation::Inode { ino: inbox },
            // Read to the end, and not followed: the kernel must not keep it.
            Invalidation::Inode { ino: inbox },
        ]
    );
}

/// A mailbox the store follows stays true by its reports: looking again costs nothing,
/// however long after, and the kernel may keep its listing until a change bumps its mtime.
#[test]
fn a_followed_mailbox_costs_nothing_to_look_at_again() {
    let h = Harness::watching();
    h.add_numbered(1..=3);
    let inbox = h.ino("INBOX").unwrap();
    h.sent_invalidations();
    assert_eq!(h.names(inbox).unwrap().len(), 3);
    assert!(
        h.sent_invalidations().is_empty(),
        "the kernel may keep its listing"
    );
    let commands = h.store.stats().commands;
    let before = h.fs.getattr(inbox).unwrap();
    assert!(before.ttl >= Duration::from_secs(60), "followed: long TTLs");
    h.clock.advance(Duration::from_secs(3600));
    assert_eq!(h.names(inbox).unwrap().len(), 3);
    assert_eq!(
        h.store.stats().commands,
        commands,
        "no command to look again"
    );
    // A change elsewhere: the directory's mtime moves, the kernel is told, nothing asked.
    std::thread::sleep(Duration::from_millis(10));
    h.store
        .add_message("INBOX", &Sample::numbered(4).raw, &[], date());
    let after = h.fs.getattr(inbox).unwrap();
    assert!(after.attr.mtime > before.attr.mtime);
    assert_eq!(h.names(inbox).unwrap().len(), 4);
    assert_eq!(h.store.stats().commands, commands);
    // A flag changed elsewhere invalidates the message's inode.
    let dir = h
        .ino(&format!("INBOX/{}", Sample::numbered(1).dir_name(Uid(1))))
        .unwrap();
    h.sent_invalidations();
    h.store.set_flags("INBOX", Uid(1), &["\\Flagged"]);
    assert!(h
        .sent_invalidations()
        .contains(&Invalidation::Inode { ino: dir }));
}

#[test]
fn mailboxes_created_elsewhere_show_when_the_store_reports_them() {
    let h = Harness::watching();
    assert_eq!(h.names(ROOT).unwrap(), ["INBOX"]);
    h.sent_invalidations();
    h.store.add_mailbox("Projects", Some('/'), true, None);
    assert!(h
        .sent_invalidations()
        .contains(&Invalidation::Inode { ino: ROOT }));
    let lists = h.count(Op::ListMailboxes);
    assert_eq!(h.names(ROOT).unwrap(), ["INBOX", "Projects"]);
    assert_eq!(
        h.count(Op::ListMailboxes),
        lists,
        "listed once, when reported"
    );
}

/// A store that cannot say what changed says which mailbox did: the core lists it again at
/// once and tells the kernel, so nobody has to read the directory first.
#[test]
fn a_mailbox_the_store_reports_stale_is_listed_again_at_once() {
    let h = Harness::new();
    let first = Sample::numbered(1);
    let uid1 = h.store.add_message("INBOX", &first.raw, &[], date());
    let inbox = h.ino("INBOX").unwrap();
    assert_eq!(h.names(inbox).unwrap().len(), 1);
    h.sent_invalidations();
    // Another client expunges it and adds another; this store does not say what.
    h.store.remove_message("INBOX", uid1);
    let second = Sample::numbered(2);
    let uid2 = h.store.add_message("INBOX", &second.raw, &[], date());
    let listings = h.count(Op::ListMessages);
    h.fs.apply_store_event(StoreEvent::MailboxStale(MailboxId::new("INBOX")));
    assert_eq!(
        h.count(Op::ListMessages),
        listings + 1,
        "listed again at once"
    );
    let sent = h.sent_invalidations();
    assert!(
        sent.contains(&Invalidation::Entry {
            parent: inbox,
            name: first.dir_name(uid1),
        }),
        "{sent:?}"
    );
    assert!(
        sent.contains(&Invalidation::Inode { ino: inbox }),
        "{sent:?}"
    );
    assert_eq!(h.names(inbox).unwrap(), [second.dir_name(uid2)]);
    // A mailbox never listed here is left alone: nothing to tell the kernel.
    h.store.add_mailbox("Elsewhere", Some('/'), true, None);
    let listings = h.count(Op::ListMessages);
    h.fs.apply_store_event(StoreEvent::MailboxStale(MailboxId::new("Elsewhere")));
    assert_eq!(h.count(Op::ListMessages), listings);
}

/// A directory whose reading began before a change and ended after its invalidation went
/// out may fill the kernel's cache with the old snapshot: reaching its end invalidates the
/// directory again. One read with nothing changed meanwhile sends nothing, since the
/// kernel may keep a followed mailbox's listing.
#[test]
fn a_directory_read_across_a_change_is_invalidated_again_at_its_end() {
    let h = Harness::watching();
    h.add_numbered(1..=2);
    let inbox = h.ino("INBOX").unwrap();
    assert_eq!(h.names(inbox).unwrap().len(), 2);
    h.sent_invalidations();

    assert_eq!(h.names(inbox).unwrap().len(), 2);
    assert!(h.sent_invalidations().is_empty(), "nothing changed");

    let first = h.fs.readdir(inbox, 0, 3).unwrap();
    assert_eq!(first.len(), 3, "., .. and the first message");
    h.store
        .add_message("INBOX", &Sample::numbered(3).raw, &[], date());
    assert!(h
        .sent_invalidations()
        .contains(&Invalidation::Inode { ino: inbox }));
    let mut next = first.last().unwrap().0;
    let mut rest = Vec::new();
    loop {
        let page = h.fs.readdir(inbox, next, 3).unwrap();
        let Some((last, _)) = page.last() else { break };
        next = *last;
        rest.extend(page.into_iter().map(|(_, e)| e.name));
    }
    assert_eq!(
        rest.len(),
        1,
        "the rest of the snapshot taken before: {rest:?}"
    );
    assert_eq!(
        h.sent_invalidations(),
        [Invalidation::Inode { ino: inbox }],
        "invalidated again once the old snapshot is read to the end"
    );
    assert_eq!(
        h.names(inbox).unwrap().len(),
        3,
        "a new read sees the change"
    );
}

/// A directory the kernel cannot be told about (a mailbox nobody follows, the root) is
/// invalidated once read to the end, so that the next reader asks again; a followed
/// mailbox the kernel keeps is invalidated once it is no longer followed.
#[test]
fn directories_the_kernel_cannot_keep_are_invalidated_once_read() {
    let h = Harness::new();
    h.store
        .add_message("INBOX", &Sample::numbered(1).raw, &[], date());
    let inbox = h.ino("INBOX").unwrap();
    h.sent_invalidations();
    assert_eq!(h.names(inbox).unwrap().len(), 1);
    assert_eq!(h.sent_invalidations(), [Invalidation::Inode { ino: inbox }]);
    assert!(h.names(ROOT).unwrap().contains(&"INBOX".to_string()));
    assert_eq!(h.sent_invalidations(), [Invalidation::Inode { ino: ROOT }]);

    let h = Harness::watching();
    h.store
        .add_message("INBOX", &Sample::numbered(1).raw, &[], date());
    let inbox = h.ino("INBOX").unwrap();
    assert_eq!(h.names(inbox).unwrap().len(), 1);
    h.sent_invalidations();
    h.fs.drop_unfollowed_dirs();
    assert!(h.sent_invalidations().is_empty(), "still followed");
    // Unfollowed without a word (an IDLE moved elsewhere): the next check finds it.
    h.store.unfollow_all(false);
    assert!(h.sent_invalidations().is_empty());
    h.fs.drop_unfollowed_dirs();
    assert_eq!(h.sent_invalidations(), [Invalidation::Inode { ino: inbox }]);
    h.fs.drop_unfollowed_dirs();
    assert!(h.sent_invalidations().is_empty(), "told once");
    // The watcher is back: read again, it is kept; a lost connection says so at once.
    h.store.follow(&MailboxId::new("INBOX"), None);
    assert_eq!(h.names(inbox).unwrap().len(), 1);
    assert!(h.sent_invalidations().is_empty(), "kept");
    h.store.unfollow_all(true);
    assert_eq!(h.sent_invalidations(), [Invalidation::Inode { ino: inbox }]);
}

/// Two readers of one directory, one of them begun before a change: each pages through
/// the snapshot its first read took, by the offsets it was given.
#[test]
fn two_readers_of_a_directory_page_through_their_own_snapshots() {
    let h = Harness::new();
    h.add_numbered(1..=4);
    let inbox = h.ino("INBOX").unwrap();
    let names =
        |page: Vec<(u64, DirEntry)>| page.into_iter().map(|(_, e)| e.name).collect::<Vec<_>>();
    let old = h.fs.readdir(inbox, 0, 4).unwrap();
    let old_next = old.last().unwrap().0;
    h.store
        .add_message("INBOX", &Sample::numbered(5).raw, &[], date());
    h.expire_listings();
    let all = h.names(inbox).unwrap();
    assert_eq!(all.len(), 5, "a new reader sees the new message");
    let rest = names(h.fs.readdir(inbox, old_next, 100).unwrap());
    assert_eq!(
        rest.len(),
        2,
        "the old reader finishes its own snapshot: {rest:?}"
    );
    let mut seen = names(old);
    seen.extend(rest);
    assert_eq!(&seen[2..], &all[..4]);
}

/// A change to the mailbox list reported while the server does not answer: the mailboxes
/// stay reachable as last listed (a cached file reads at once), and the next LIST that
/// works shows the change.
#[test]
fn a_mailbox_list_change_while_the_server_stalls_keeps_the_tree_last_listed() {
    let h = Harness::watching();
    let sample = Sample::numbered(1);
    let uid = h.store.add_message("INBOX", &sample.raw, &[], date());
    let body = format!("INBOX/{}/body.txt", sample.dir_name(uid));
    let cached = h.read_path(&body).unwrap();
    for _ in 0..2 {
        h.store
            .fail_next(Op::ListMailboxes, || StoreError::Timeout("stalled".into()));
    }
    h.store.add_mailbox("Projects", Some('/'), true, None);
    let lists = h.count(Op::ListMailboxes);
    assert_eq!(h.read_path(&body).unwrap(), cached);
    assert_eq!(
        h.count(Op::ListMailboxes),
        lists,
        "a lookup asked the stalled server for the mailbox list"
    );
    // A look at the root asks again (the second failure): the last tree is shown. Then
    // the server answers again, and the next look shows the change.
    assert_eq!(
        h.names(ROOT).unwrap(),
        ["INBOX"],
        "the last tree, shown while stalled"
    );
    assert_eq!(h.count(Op::ListMailboxes), lists + 1);
    assert_eq!(h.names(ROOT).unwrap(), ["INBOX", "Projects"]);
}

/// Another client renames a mailbox this mount has open (a shell's cwd in `Clients/Acme`,
/// an open `message.eml`): the directories go on under the new names, as after a rename
/// through the mount (they were ESTALE and ENOENT), and the kernel forgets the old name.
#[test]
fn a_mailbox_renamed_elsewhere_keeps_the_mounts_directories_and_files() {
    let h = Harness::new();
    h.store.add_mailbox("Clients", Some('/'), true, None);
    h.store.add_mailbox("Clients/Acme", Some('/'), true, None);
    let sample = Sample::numbered(1);
    let uid = h
        .store
        .add_message("Clients/Acme", &sample.raw, &[], date());
    let acme = h.ino("Clients/Acme").unwrap();
    let name = sample.dir_name(uid);
    let eml = h.ino(&format!("Clients/Acme/{name}/message.eml")).unwrap();
    assert_eq!(h.names(acme).unwrap(), std::slice::from_ref(&name));
    h.sent_invalidations();

    h.store
        .rename_mailbox(&MailboxId::new("Clients"), &["Customers".to_string()])
        .unwrap();
    h.fs.apply_store_event(StoreEvent::MailboxRenamed {
        from: MailboxId::new("Clients"),
        to: MailboxId::new("Customers"),
    });
    h.fs.apply_store_event(StoreEvent::MailboxList);
    assert_eq!(h.names(acme).unwrap(), std::slice::from_ref(&name));
    assert_eq!(h.read_all(eml).unwrap(), sample.raw);
    assert_eq!(h.ino("Customers/Acme").unwrap(), acme);
    assert_eq!(errno(h.ino("Clients")), libc::ENOENT);
    let sent = h.sent_invalidations();
    assert!(
        sent.iter().any(|i| matches!(
            i,
            Invalidation::Entry { parent: ROOT, name } if name == "Clients"
        )),
        "{sent:?}"
    );
}

/// An rmdir (of another mount) renames a mailbox aside before it deletes it: nothing of
/// this mount's follows it there (a file being written would be stored into what is
/// deleted next).
#[test]
fn a_mailbox_renamed_aside_to_be_deleted_is_not_followed() {
    let h = Harness::new();
    h.store.add_mailbox("Old", Some('/'), true, None);
    let old = h.ino("Old").unwrap();
    h.names(old).unwrap();
    let aside = format!("Old{}1-2-3", crate::store::RMDIR_ASIDE);
    h.store
        .rename_mailbox(&MailboxId::new("Old"), std::slice::from_ref(&aside))
        .unwrap();
    h.fs.apply_store_event(StoreEvent::MailboxRenamed {
        from: MailboxId::new("Old"),
        to: MailboxId::new(&aside),
    });
    h.fs.apply_store_event(StoreEvent::MailboxList);
    assert_eq!(errno(h.names(old)), libc::ENOENT);
}
