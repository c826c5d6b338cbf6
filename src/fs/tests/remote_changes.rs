//! Consistency when another client changes the account, and after failed fetches: never
//! old or partial bytes, and a precise errno.

use super::*;
use crate::store::StoreError;

/// Past `LISTING_FRESH`: the next directory listing asks the server again.
fn wait_out_listing_fresh() {
    std::thread::sleep(LISTING_FRESH + Duration::from_millis(100));
}

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
    wait_out_listing_fresh();
    assert_eq!(h.names(inbox).unwrap(), [new.dir_name(new_uid)]);

    for ino in [old_eml, old_body, old_attachment] {
        assert_eq!(errno(h.read_all(ino)), libc::ESTALE, "inode {ino}");
    }
    assert_eq!(errno(h.fs.opendir(old_msg)), libc::ESTALE);
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
    assert_eq!(errno(h.read_all(body)), libc::ENOENT);
    assert_eq!(errno(h.read_all(eml)), libc::ENOENT);
    // The next listing of the mailbox drops the name too.
    h.expire_listing("INBOX");
    assert!(h.names_at("INBOX").unwrap().is_empty());
    assert_eq!(errno(h.ino(&dir)), libc::ENOENT);
}

#[test]
fn a_failed_fetch_is_an_error_and_caches_nothing() {
    let h = Harness::new();
    let sample = Sample::numbered(3);
    let uid = h.store.add_message("INBOX", &sample.raw, &[], date());
    let dir = format!("INBOX/{}", sample.dir_name(uid));
    let body = h.ino(&format!("{dir}/body.txt")).unwrap();
    h.store
        .fail_next(Op::FetchSection, || StoreError::Timeout("injected".into()));
    assert_eq!(errno(h.read_all(body)), libc::ETIMEDOUT);
    assert_eq!(h.read_all(body).unwrap(), sample.body.as_bytes());
    assert_eq!(h.count(Op::FetchSection), 2);

    let attachment = h.ino(&format!("{dir}/a3.bin")).unwrap();
    h.store
        .fail_next(Op::FetchSection, || StoreError::Connection("reset".into()));
    assert_eq!(errno(h.read_all(attachment)), libc::EIO);
    assert_eq!(h.read_all(attachment).unwrap(), sample.attachment);
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
