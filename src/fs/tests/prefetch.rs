//! Prefetch: every whole message into the cache in batches, resumed after a failure, and
//! started on a mailbox with `setfattr`.

use super::*;
use crate::fs::prefetch::{Depth, Pace, Progress};
use crate::store::StoreError;

fn inbox() -> MailboxId {
    MailboxId::new("INBOX")
}

#[test]
fn a_prefetch_caches_every_message_and_resumes_after_a_failure() {
    let h = Harness::new();
    // More messages than one batch holds.
    let samples: Vec<Sample> = (1..=300).map(Sample::numbered).collect();
    let mut uids = Vec::new();
    for s in &samples {
        uids.push(h.store.add_message("INBOX", &s.raw, &[], date()));
    }
    // The second batch of messages fails; what came before stays.
    h.store.after_next(Op::FetchSection, {
        let store = Arc::clone(&h.store);
        move || store.fail_next(Op::FetchSection, || StoreError::Connection("cut".into()))
    });
    let seen = parking_lot::Mutex::new(Vec::new());
    let small = |p: &Progress| seen.lock().push(*p);
    // Small batches, to see several.
    let first =
        h.fs.prefetch_mailbox(&inbox(), Depth::Everything, Pace::Full(1), &small);
    assert!(first.is_err(), "the injected failure ends the prefetch");
    let fetched_first = h.count(Op::FetchSection);
    let again =
        h.fs.prefetch_mailbox(&inbox(), Depth::Everything, Pace::Full(2), &|_| {})
            .unwrap();
    assert_eq!(again.messages, 300);
    assert!(
        again.skipped > 0,
        "what came before the failure was not fetched again"
    );
    assert_eq!(again.bytes, again.bytes_total);

    // Everything is cached now: reading every message.eml asks nothing more (once the
    // directories' sizes are known).
    assert!(h.count(Op::FetchSection) > fetched_first);
    for (s, uid) in samples.iter().zip(&uids) {
        h.names_at(&format!("INBOX/{}", s.dir_name(*uid))).unwrap();
    }
    let fetches = h.count(Op::FetchSection);
    for (s, uid) in samples.iter().zip(&uids) {
        let path = format!("INBOX/{}/message.eml", s.dir_name(*uid));
        assert_eq!(h.read_path(&path).unwrap(), s.raw);
    }
    assert_eq!(h.count(Op::FetchSection), fetches);
}

#[test]
fn setfattr_on_a_mailbox_prefetches_it_in_the_background() {
    let h = Harness::new();
    let samples: Vec<Sample> = (1..=10).map(Sample::numbered).collect();
    let mut uids = Vec::new();
    for s in &samples {
        uids.push(h.store.add_message("INBOX", &s.raw, &[], date()));
    }
    let inbox = h.ino("INBOX").unwrap();
    let name = OsStr::new("user.imapfs.prefetch");
    assert_eq!(errno(h.fs.getxattr(inbox, name)), libc::ENODATA);
    assert!(h.fs.listxattr(inbox).unwrap().is_empty());
    assert_eq!(
        errno(h.fs.setxattr(inbox, name, b"sometimes")),
        libc::EINVAL
    );
    h.fs.setxattr(inbox, name, b"1").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let state = loop {
        let state = String::from_utf8(h.fs.getxattr(inbox, name).unwrap()).unwrap();
        if !state.starts_with("running") {
            break state;
        }
        assert!(std::time::Instant::now() < deadline, "{state}");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(state.starts_with("done: 10 of 10 messages"), "{state}");
    // `getfattr -d` shows it from now on.
    assert_eq!(h.fs.listxattr(inbox).unwrap(), b"user.imapfs.prefetch\0");
    for (s, uid) in samples.iter().zip(&uids) {
        h.names_at(&format!("INBOX/{}", s.dir_name(*uid))).unwrap();
    }
    let fetches = h.count(Op::FetchSection);
    for (s, uid) in samples.iter().zip(&uids) {
        let path = format!("INBOX/{}/message.eml", s.dir_name(*uid));
        assert_eq!(h.read_path(&path).unwrap(), s.raw);
    }
    assert_eq!(h.count(Op::FetchSection), fetches);
}

#[test]
fn a_background_prefetch_waits_while_the_mount_is_busy_and_goes_on_when_it_is_quiet() {
    let h = Harness::new();
    for s in (1..=10).map(Sample::numbered) {
        h.store.add_message("INBOX", &s.raw, &[], date());
    }
    let inbox = h.ino("INBOX").unwrap();
    let name = OsStr::new("user.imapfs.prefetch");
    // Quiet means 2 s without a request here, and it waits for that as long as it takes.
    h.fs.set_background_pacing(Duration::from_secs(2), Duration::from_secs(600));
    let asked = || h.count(Op::BodyStructures) + h.count(Op::FetchSection);
    let before = asked();
    h.fs.note_foreground();
    h.fs.setxattr(inbox, name, b"1").unwrap();
    // Busy: a request every 50 ms for 3 s. The prefetch asks nothing meanwhile.
    for _ in 0..60 {
        h.fs.note_foreground();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(asked(), before, "the prefetch did not give way");
    let state = String::from_utf8(h.fs.getxattr(inbox, name).unwrap()).unwrap();
    assert!(state.starts_with("running: 0 of"), "{state}");
    // Quiet: it goes on, and ends.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let state = loop {
        let state = String::from_utf8(h.fs.getxattr(inbox, name).unwrap()).unwrap();
        if !state.starts_with("running") {
            break state;
        }
        assert!(std::time::Instant::now() < deadline, "{state}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(state.starts_with("done: 10 of 10 messages"), "{state}");
    // `getfattr -d` shows it from now on.
    assert_eq!(h.fs.listxattr(inbox).unwrap(), b"user.imapfs.prefetch\0");
    assert!(asked() > before);
}
