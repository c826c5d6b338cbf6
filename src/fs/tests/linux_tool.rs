//! What `df`, `ls -ld` and `getfattr` of the root show: free space without a quota,
//! mailbox directory times, and the spool files an earlier run left behind.

use super::*;
use crate::fs::changes::{UNKNOWN_FREE_BYTES, UNKNOWN_FREE_FILES};

#[test]
fn without_a_quota_df_shows_what_is_known_and_a_large_free_space() {
    let h = Harness::new();
    h.store.add_message(
        "INBOX",
        &plain_message("a", &"x".repeat(10_000)),
        &[],
        date(),
    );
    h.names_at("INBOX").unwrap();
    let s = h.fs.statfs();
    assert_eq!(s.free_blocks, UNKNOWN_FREE_BYTES / STATFS_BLOCK);
    assert!(s.blocks > s.free_blocks, "used blocks are counted: {s:?}");
    assert_eq!(s.files - s.free_files, 1, "one known: {s:?}");
    assert_eq!(s.free_files, UNKNOWN_FREE_FILES, "df -i shows room");
}

#[test]
fn a_mailbox_directory_is_dated_by_its_newest_message_then_by_changes_seen() {
    let h = Harness::new();
    let newest = date() + Duration::from_secs(3600);
    h.store
        .add_message("INBOX", &plain_message("old", "b"), &[], date());
    h.store
        .add_message("INBOX", &plain_message("new", "b"), &[], newest);
    let started = SystemTime::now();
    let inbox = h.ino("INBOX").unwrap();
    let before = h.fs.getattr(inbox).unwrap().attr.mtime;
    assert!(
        before + Duration::from_secs(60) > started,
        "not yet listed: the mount's start, not 1970: {before:?}"
    );
    let ctime = h.fs.getattr(inbox).unwrap().attr.ctime;
    h.names(inbox).unwrap();
    assert_eq!(h.fs.getattr(inbox).unwrap().attr.mtime, newest);
    // Listing is no change: tar compares the ctime before and after reading a directory.
    assert_eq!(h.fs.getattr(inbox).unwrap().attr.ctime, ctime);
    // A message arriving later is a change seen now.
    h.store
        .add_message("INBOX", &plain_message("newer", "b"), &[], date());
    h.expire_listings();
    h.names(inbox).unwrap();
    assert!(h.fs.getattr(inbox).unwrap().attr.mtime > newest);
    assert!(h.fs.getattr(inbox).unwrap().attr.ctime > ctime);
    assert!(h.fs.getattr(ROOT).unwrap().attr.mtime > UNIX_EPOCH);
}

/// `tar` of a mailbox not listed yet: an empty one, and one whose newest message is newer
/// than the mount, are dated at their first listing, but their ctime stays (tar exited 1
/// with "file changed as we read it" for each).
#[test]
fn a_first_listing_never_moves_a_directory_ctime() {
    let h = Harness::new();
    h.store.add_mailbox("Empty", Some('/'), true, None);
    h.store.add_mailbox("Fresh", Some('/'), true, None);
    let in_an_hour = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let later = UNIX_EPOCH + Duration::from_secs(in_an_hour);
    h.store
        .add_message("Fresh", &plain_message("new", "b"), &[], later);
    for name in ["Empty", "Fresh"] {
        let dir = h.ino(name).unwrap();
        let before = h.fs.getattr(dir).unwrap().attr;
        h.names(dir).unwrap();
        let after = h.fs.getattr(dir).unwrap().attr;
        assert_eq!(after.ctime, before.ctime, "{name}");
        if name == "Fresh" {
            assert_eq!(after.mtime, later);
        }
    }
}

#[test]
fn pending_lists_every_spool_file_not_stored_with_why() {
    let h = Harness::new();
    let spool = h.spool.path();
    // Left by a process that is gone (pid 1 is not imapfs): one written halfway, one whose
    // APPEND was under way but whose mailbox no longer exists.
    std::fs::write(spool.join("1-7-halfway.txt"), b"half").unwrap();
    std::fs::write(spool.join("1-8-sending.txt"), b"whole").unwrap();
    std::fs::write(
        spool.join("1-8-sending.txt.sending"),
        "mailbox=Gone\nname=sending.txt\nmessage_len=5\ninternal_date=1700000000.000000000\n\
         message_id=\nfile_size=5\nmtime=1700000000.000000000\n",
    )
    .unwrap();
    let report = h.fs.recover_spool();
    assert_eq!(report.len(), 2, "{report:?}");
    let pending = String::from_utf8(
        h.fs.getxattr(ROOT, OsStr::new(crate::fs::xattr::PENDING))
            .unwrap(),
    )
    .unwrap();
    let lines: Vec<&str> = pending.lines().collect();
    assert_eq!(lines.len(), 2, "{pending}");
    assert!(
        lines[0].contains("1-7-halfway.txt") && lines[0].contains("while it was written"),
        "{pending}"
    );
    // Each path once (a bug hunt saw `PATH: PATH: left by ...`).
    assert_eq!(lines[0].matches("1-7-halfway.txt").count(), 1, "{pending}");
    assert!(
        lines[1].contains("1-8-sending.txt") && lines[1].contains("kept in"),
        "{pending}"
    );
    let names = h.fs.listxattr(ROOT).unwrap();
    assert!(String::from_utf8_lossy(&names).contains(crate::fs::xattr::PENDING));
    // Once gone from the spool, a file is no longer pending.
    std::fs::remove_file(spool.join("1-7-halfway.txt")).unwrap();
    let pending =
        h.fs.getxattr(ROOT, OsStr::new(crate::fs::xattr::PENDING))
            .unwrap();
    assert_eq!(String::from_utf8(pending).unwrap().lines().count(), 1);
}
