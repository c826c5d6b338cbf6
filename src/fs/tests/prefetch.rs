//! Prefetch: every whole message into the cache in batches, resumed after a failure, and
//! started on a mailbox with `setfattr`.

use super::*;
use crate::fs::prefetch::{Depth, Progress};
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
        h.fs.prefetch_mailbox(&inbox(), Depth::Everything, 1, &small);
    assert!(first.is_err(), "the injected failure ends the prefetch");
    let fetched_first = h.count(Op::FetchSection);
    let again =
        h.fs.prefetch_mailbox(&inbox(), Depth::Everything, 2, &|_| {})
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
