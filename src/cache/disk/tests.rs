use super::*;
use crate::store::{Section, Uid};

fn key(mailbox: &str, validity: u32, uid: u32, section: &[u32], offset: u64) -> ContentKey {
    ContentKey {
        mailbox: MailboxId::new(mailbox),
        validity: UidValidity(validity),
        uid: Uid(uid),
        section: Section(section.to_vec()),
        transfer: Transfer::Decoded,
        offset,
    }
}

fn bytes(seed: u8, len: usize) -> Arc<Vec<u8>> {
    Arc::new(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect(),
    )
}

fn open(path: &Path, limit: u64) -> DiskCache {
    DiskCache::new(Arc::new(CacheDir::open(path).unwrap()), limit).unwrap()
}

/// The one blob file in the cache.
fn blob_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in fs::read_dir(root.join(BLOBS)).unwrap() {
        for f in fs::read_dir(dir.unwrap().path()).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out.sort();
    out
}

#[test]
fn chunks_come_back_exactly_also_after_a_reopen() {
    let root = tempfile::tempdir().unwrap();
    let cache = open(root.path(), 1 << 30);
    let a = key("INBOX", 7, 1, &[2], 0);
    let b = key("INBOX", 7, 1, &[2], 16384);
    let c = key("INBOX", 7, 1, &[], 0);
    cache.insert(a.clone(), bytes(1, 16384));
    cache.insert(b.clone(), bytes(2, 100));
    cache.insert(c.clone(), bytes(3, 5000));
    cache.flush();
    assert_eq!(cache.get(&a).unwrap(), bytes(1, 16384));
    assert_eq!(cache.get(&b).unwrap(), bytes(2, 100));
    assert_eq!(cache.get(&c).unwrap(), bytes(3, 5000));
    assert!(cache.get(&key("INBOX", 7, 1, &[2], 32768)).is_none());
    assert!(cache.get(&key("INBOX", 8, 1, &[2], 0)).is_none());
    assert_eq!(cache.used_bytes(), 16384 + 100 + 5000);
    drop(cache);

    let cache = open(root.path(), 1 << 30);
    assert_eq!(cache.get(&a).unwrap(), bytes(1, 16384));
    assert_eq!(cache.get(&c).unwrap(), bytes(3, 5000));
    assert!(cache.contains(&b));
    assert_eq!(cache.used_bytes(), 16384 + 100 + 5000);
}

#[test]
fn a_damaged_chunk_is_dropped_never_served() {
    let root = tempfile::tempdir().unwrap();
    let cache = open(root.path(), 1 << 30);
    let a = key("INBOX", 7, 1, &[], 0);
    let b = key("INBOX", 7, 2, &[], 0);
    cache.insert(a.clone(), bytes(1, 3000));
    cache.insert(b.clone(), bytes(2, 3000));
    cache.flush();
    let files = blob_files(root.path());
    assert_eq!(files.len(), 2);
    // One flipped bit, one file cut short.
    let mut first = fs::read(&files[0]).unwrap();
    first[1234] ^= 0x10;
    fs::write(&files[0], first).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&files[1])
        .unwrap()
        .set_len(10)
        .unwrap();
    drop(cache);
    let cache = open(root.path(), 1 << 30);
    assert!(cache.get(&a).is_none());
    assert!(cache.get(&b).is_none());
    // Read again before its drop is written: reported once (each was logged four times).
    assert!(cache.get(&a).is_none());
    assert_eq!(cache.shared.reported.lock().len(), 2);
    cache.flush();
    assert!(
        !cache.contains(&a) && !cache.contains(&b),
        "dropped from the index"
    );
    assert_eq!(cache.used_bytes(), 0);
    // Fetched again, kept again.
    cache.insert(a.clone(), bytes(1, 3000));
    cache.flush();
    assert_eq!(cache.get(&a).unwrap(), bytes(1, 3000));
}

#[test]
fn a_new_uidvalidity_or_a_deleted_mailbox_drops_what_was_held() {
    let root = tempfile::tempdir().unwrap();
    let cache = open(root.path(), 1 << 30);
    let old = key("INBOX", 7, 1, &[], 0);
    let new = key("INBOX", 8, 1, &[], 0);
    let other = key("INBOX.x", 7, 1, &[], 0);
    let archive = key("Archive", 3, 1, &[1], 0);
    for k in [&old, &new, &other, &archive] {
        cache.insert(k.clone(), bytes(9, 2000));
    }
    cache.flush();
    cache.retain_validity(&MailboxId::new("INBOX"), UidValidity(8));
    cache.flush();
    assert!(!cache.contains(&old));
    assert!(cache.contains(&new));
    assert!(
        cache.contains(&other),
        "another mailbox whose name starts the same"
    );
    cache.drop_mailbox(&MailboxId::new("Archive"));
    cache.flush();
    assert!(!cache.contains(&archive));
    assert_eq!(cache.used_bytes(), 4000);
    assert_eq!(blob_files(root.path()).len(), 2);
}

#[test]
fn eviction_keeps_the_bound_and_drops_the_least_recently_used() {
    let root = tempfile::tempdir().unwrap();
    let limit = 100_000;
    let cache = open(root.path(), limit);
    let keys: Vec<ContentKey> = (0..40).map(|uid| key("INBOX", 1, uid, &[], 0)).collect();
    for (i, k) in keys.iter().enumerate() {
        cache.insert(k.clone(), bytes(i as u8, 10_000));
        cache.flush();
        assert!(cache.used_bytes() <= limit, "{}", cache.used_bytes());
    }
    assert!(cache.contains(&keys[39]));
    assert!(!cache.contains(&keys[0]));
    let files = blob_files(root.path()).len() as u64;
    assert!(files * 10_000 <= limit, "{files} files left");
}

#[test]
fn orphan_files_of_a_dropped_index_are_removed() {
    let root = tempfile::tempdir().unwrap();
    let cache = open(root.path(), 1 << 30);
    cache.insert(key("INBOX", 1, 1, &[], 0), bytes(1, 100));
    cache.flush();
    drop(cache);
    fs::remove_file(root.path().join("index.redb")).unwrap();
    let cache = open(root.path(), 1 << 30);
    assert!(blob_files(root.path()).is_empty());
    assert!(cache.get(&key("INBOX", 1, 1, &[], 0)).is_none());
}

/// A writer that cannot write (another holder of the index's write lock stands for a hung
/// disk, or the metadata writer in the middle of its own transaction) never holds a caller
/// for good: the first job waits `WRITER_WAIT` for room, later ones not at all, a mailbox's
/// drop included, which used to wait on the full queue forever. Once the writer gets the
/// lock, jobs are taken again.
#[test]
fn a_stuck_writer_costs_one_wait_and_never_holds_a_caller_for_good() {
    let root = tempfile::tempdir().unwrap();
    let dir = Arc::new(CacheDir::open(root.path()).unwrap());
    let cache = Arc::new(DiskCache::new(Arc::clone(&dir), 1 << 30).unwrap());
    let lock = dir.db().begin_write().unwrap();
    // Fill the queue: the writer takes a batch and waits for the lock.
    let started = std::time::Instant::now();
    let mut offset = 0;
    while !cache.stuck.load(Ordering::Relaxed) {
        cache.insert(key("INBOX", 7, 1, &[], offset), bytes(1, 16));
        offset += 16;
        assert!(offset < 16 * 10 * QUEUE as u64, "the queue never filled");
    }
    assert!(started.elapsed() >= WRITER_WAIT, "one wait for room");
    let (done, finished) = mpsc::channel();
    let later = Arc::clone(&cache);
    std::thread::spawn(move || {
        let started = std::time::Instant::now();
        for i in 0..100 {
            later.insert(key("INBOX", 7, 2, &[], i * 16), bytes(2, 16));
        }
        later.drop_mailbox(&MailboxId::new("Gone"));
        later.retain_validity(&MailboxId::new("INBOX"), UidValidity(7));
        let _ = done.send(started.elapsed());
    });
    let took = finished
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("jobs offered to a stuck writer returned");
    assert!(took < WRITER_WAIT, "no further waits: {took:?}");
    drop(lock);
    cache.flush();
    cache.insert(key("INBOX", 7, 3, &[], 0), bytes(3, 16));
    cache.flush();
    assert!(!cache.stuck.load(Ordering::Relaxed), "taken again");
    assert_eq!(
        cache.get(&key("INBOX", 7, 3, &[], 0)).unwrap(),
        bytes(3, 16)
    );
}
