//! What the files of a message directory hold: the raw message, the decoded text body, the
//! attachments, and exact slices at any offset.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::*;
use crate::cache::{ContentCache, ContentKey};
use crate::fs::content::CHUNK;

/// A message with a 2 MiB attachment (its message.eml spans three raw chunks).
fn big_sample() -> Sample {
    Sample::new(
        "Quarterly numbers",
        "Bonjour,\r\nle caf\u{e9} co\u{fb}te 2 \u{a3} (\u{bd} prix).\r\n= fin =",
        "report.pdf",
        pseudo_random_bytes(42, (2 << 20) + 12_345),
    )
}

#[test]
fn message_eml_is_the_message_as_stored() {
    let h = Harness::new();
    let sample = big_sample();
    let uid = h.store.add_message("INBOX", &sample.raw, &[], date());
    let ino = h
        .ino(&format!("INBOX/{}/message.eml", sample.dir_name(uid)))
        .unwrap();
    let open = h.fs.open(ino, false).unwrap();
    assert!(open.keep_cache && !open.direct_io, "the size is exact");
    assert_eq!(
        h.fs.getattr(ino).unwrap().attr.size,
        sample.raw.len() as u64
    );
    assert_eq!(h.read_all(ino).unwrap(), sample.raw);
    // One read as large as the file gives it all.
    let whole = h.fs.read(ino, open.fh, 0, 8 << 20).unwrap();
    assert_eq!(whole, sample.raw);
}

/// A fetch that panics (a bug meeting a server's answer) must not leave its chunks claimed:
/// the next reader of them would find a gate nobody holds and look again forever.
#[test]
fn a_fetch_that_panics_leaves_nothing_claimed() {
    let h = Arc::new(Harness::new());
    let sample = big_sample();
    let uid = h.store.add_message("INBOX", &sample.raw, &[], date());
    let ino = h
        .ino(&format!("INBOX/{}/message.eml", sample.dir_name(uid)))
        .unwrap();
    h.store
        .fail_next(Op::FetchSection, || panic!("a fetch that panics"));
    let panicked =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.read_all(ino))).is_err();
    assert!(panicked, "the injected panic reached the reader");
    let (done, read) = mpsc::channel();
    let again = Arc::clone(&h);
    std::thread::spawn(move || {
        let _ = done.send(again.read_all(ino));
    });
    let bytes = read
        .recv_timeout(Duration::from_secs(30))
        .expect("the next read of the same chunks ends")
        .unwrap();
    assert_eq!(bytes, sample.raw);
}

#[test]
fn body_txt_is_decoded_and_converted_to_utf8() {
    let h = Harness::new();
    let sample = big_sample();
    assert!(String::from_utf8_lossy(&sample.raw).contains("caf=E9 co=FBte 2 =A3 (=BD prix)"));
    let uid = h.store.add_message("INBOX", &sample.raw, &[], date());
    let ino = h
        .ino(&format!("INBOX/{}/body.txt", sample.dir_name(uid)))
        .unwrap();
    // Exact from the first stat, before any read: no tool sees it shrink or grow.
    let attr = h.fs.getattr(ino).unwrap();
    assert_eq!(attr.attr.size, sample.body.len() as u64);
    assert!(attr.ttl > Duration::ZERO);
    let open = h.fs.open(ino, false).unwrap();
    assert!(!open.direct_io && open.keep_cache);
    let body = h.read_all(ino).unwrap();
    assert_eq!(String::from_utf8(body).unwrap(), sample.body);
}

#[test]
fn attachments_are_byte_identical() {
    let h = Harness::new();
    let sample = big_sample();
    let uid = h.store.add_message("INBOX", &sample.raw, &[], date());
    let small = Sample::new("tiny", "x", "tiny.bin", vec![0, 255, 10, 13, 0x80]);
    let small_uid = h.store.add_message("INBOX", &small.raw, &[], date());
    for (s, uid) in [(&sample, uid), (&small, small_uid)] {
        let path = format!("INBOX/{}/{}", s.dir_name(uid), s.attachment_name);
        assert_eq!(h.read_path(&path).unwrap(), s.attachment, "{path}");
    }
}

/// Offsets spread over the file, with extra weight around chunk boundaries and the end.
fn offsets(len: u64) -> impl Strategy<Value = u64> {
    let edges: Vec<u64> = (1..=len / CHUNK).map(|k| k * CHUNK).chain([len]).collect();
    prop_oneof![
        0..=len + 4096,
        (prop::sample::select(edges), -300i64..300)
            .prop_map(|(edge, delta)| edge.saturating_add_signed(delta)),
    ]
}

fn sizes() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..5000, 0u32..=(3 << 20), Just(KERNEL_READ)]
}

#[test]
fn any_read_is_exactly_a_slice_of_the_content() {
    let h = Harness::new();
    let sample = big_sample();
    let uid = h.store.add_message("INBOX", &sample.raw, &[], date());
    let dir = format!("INBOX/{}", sample.dir_name(uid));
    let files: [(&str, &[u8]); 3] = [
        ("message.eml", &sample.raw),
        ("report.pdf", &sample.attachment),
        ("body.txt", sample.body.as_bytes()),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 200,
        failure_persistence: None,
        ..Config::default()
    });
    for (file, content) in files {
        let ino = h.ino(&format!("{dir}/{file}")).unwrap();
        let len = content.len() as u64;
        runner
            .run(&(offsets(len), sizes()), |(offset, size)| {
                let got = h.fs.read(ino, 0, offset, size).unwrap();
                let start = offset.min(len) as usize;
                let end = offset.saturating_add(u64::from(size)).min(len) as usize;
                prop_assert_eq!(
                    got.len(),
                    end - start,
                    "{} at {} size {}",
                    file,
                    offset,
                    size
                );
                prop_assert!(got == content[start..end], "{file} at {offset} size {size}");
                Ok(())
            })
            .unwrap();
    }
}

/// What `stat` says is what reads give, for every file, before any of it was read: the
/// kernel may keep pages and tools may trust sizes (tar, rsync, mmap, tail).
#[test]
fn every_size_is_exact_from_the_first_stat() {
    let h = Harness::new();
    let sample = big_sample();
    let uid = h.store.add_message("INBOX", &sample.raw, &[], date());
    let dir = format!("INBOX/{}", sample.dir_name(uid));
    let files = h.names_at(&dir).unwrap();
    assert_eq!(files, ["message.eml", "body.txt", "report.pdf"]);
    let attachment_fetches = h.store.bytes_served();
    assert!(
        attachment_fetches < 64 << 10,
        "no attachment bytes to learn sizes"
    );
    for file in files {
        let ino = h.ino(&format!("{dir}/{file}")).unwrap();
        let size = h.fs.getattr(ino).unwrap().attr.size;
        let open = h.fs.open(ino, false).unwrap();
        assert!(!open.direct_io && open.keep_cache, "{file}");
        assert_eq!(h.read_all(ino).unwrap().len() as u64, size, "{file}");
    }
}

/// `head -c 4096` and `tail -c 16` of a 2 MiB attachment move a chunk, not the file.
#[test]
fn a_range_of_an_attachment_moves_about_that_range() {
    let h = Harness::new();
    let sample = big_sample();
    let uid = h.store.add_message("INBOX", &sample.raw, &[], date());
    let ino = h
        .ino(&format!("INBOX/{}/report.pdf", sample.dir_name(uid)))
        .unwrap();
    let len = h.fs.getattr(ino).unwrap().attr.size;
    assert_eq!(len, sample.attachment.len() as u64);
    let before = h.store.bytes_served();
    assert_eq!(
        h.fs.read(ino, 0, 0, 4096).unwrap(),
        sample.attachment[..4096]
    );
    let head = h.store.bytes_served() - before;
    assert!(head <= CHUNK, "head -c 4096 moved {head} bytes");
    let before = h.store.bytes_served();
    assert_eq!(
        h.fs.read(ino, 0, len - 16, 16).unwrap(),
        sample.attachment[sample.attachment.len() - 16..]
    );
    let tail = h.store.bytes_served() - before;
    assert!(tail <= CHUNK, "tail -c 16 moved {tail} bytes");
    // Reading it all in order takes few requests, each up to 4 MiB.
    let fetches = h.count(Op::FetchSection);
    assert_eq!(h.read_all(ino).unwrap(), sample.attachment);
    let more = h.count(Op::FetchSection) - fetches;
    assert!(more <= 6, "{more} requests to read 2 MiB in order");
}

/// Without BINARY the server cannot tell a decoded size: a base64 attachment's follows
/// from its last bytes and line width (a few hundred bytes fetched, not the file), and
/// text bodies are exact as ever.
#[test]
fn without_binary_sizes_come_from_the_end_of_each_part() {
    let h = Harness::new();
    h.store.set_capabilities(crate::store::Capabilities {
        move_command: true,
        uidplus: true,
        binary: false,
    });
    let sample = big_sample();
    let uid = h.store.add_message("INBOX", &sample.raw, &[], date());
    let dir = format!("INBOX/{}", sample.dir_name(uid));
    let pdf = h.ino(&format!("{dir}/report.pdf")).unwrap();
    assert!(
        h.store.bytes_served() < 8 << 10,
        "{}",
        h.store.bytes_served()
    );
    assert_eq!(
        h.fs.getattr(pdf).unwrap().attr.size,
        sample.attachment.len() as u64
    );
    let open = h.fs.open(pdf, false).unwrap();
    assert!(!open.direct_io && open.keep_cache);
    // A range is decoded from the stored bytes that hold it, not from the whole part.
    let before = h.store.bytes_served();
    let len = sample.attachment.len() as u64;
    assert_eq!(
        h.fs.read(pdf, 0, len - 5000, 4096).unwrap(),
        sample.attachment[len as usize - 5000..len as usize - 904]
    );
    assert!(
        h.store.bytes_served() - before < 2 * CHUNK,
        "{}",
        h.store.bytes_served() - before
    );
    assert_eq!(h.read_all(pdf).unwrap(), sample.attachment);
    let body = h.ino(&format!("{dir}/body.txt")).unwrap();
    assert_eq!(
        h.fs.getattr(body).unwrap().attr.size,
        sample.body.len() as u64
    );
    assert!(!h.fs.open(body, false).unwrap().direct_io);
}

/// Adds `sample` to INBOX and reads its message.eml whole, so the cache holds the whole
/// message; its UID and its directory's path.
fn read_whole(h: &Harness, sample: &Sample) -> (Uid, String) {
    let uid = h.store.add_message("INBOX", &sample.raw, &[], date());
    let dir = format!("INBOX/{}", sample.dir_name(uid));
    let eml = h.ino(&format!("{dir}/message.eml")).unwrap();
    assert_eq!(h.read_all(eml).unwrap(), sample.raw);
    (uid, dir)
}

#[test]
fn the_parts_of_a_message_read_whole_are_taken_out_of_it() {
    let h = Harness::new();
    let sample = big_sample();
    let (_, dir) = read_whole(&h, &sample);
    let attachment = h.ino(&format!("{dir}/{}", sample.attachment_name)).unwrap();
    let fetches = h.count(Op::FetchSection);
    assert_eq!(h.read_all(attachment).unwrap(), sample.attachment);
    assert_eq!(
        h.count(Op::FetchSection),
        fetches,
        "the 2 MiB attachment came out of the message read whole"
    );
}

#[test]
fn when_the_store_cannot_answer_sizes_and_texts_come_out_of_a_message_held_whole() {
    let h = Harness::new();
    let sample = Sample::numbered(6);
    let (_, dir) = read_whole(&h, &sample);
    // The request for the parts' exact sizes and the text body fails (as offline, for
    // what the disk cache does not hold).
    h.store.fail_next(Op::FetchSection, || {
        crate::store::StoreError::Connection("offline".into())
    });
    let attachment = h.ino(&format!("{dir}/{}", sample.attachment_name)).unwrap();
    let attr = h.fs.getattr(attachment).unwrap().attr;
    assert_eq!(attr.size, sample.attachment.len() as u64, "an exact size");
    let body = h.ino(&format!("{dir}/body.txt")).unwrap();
    let fetches = h.count(Op::FetchSection);
    assert_eq!(h.read_all(body).unwrap(), sample.body.as_bytes());
    assert_eq!(h.read_all(attachment).unwrap(), sample.attachment);
    assert_eq!(h.count(Op::FetchSection), fetches);
}

#[test]
fn a_message_held_whole_that_does_not_parse_to_the_servers_structure_is_not_used() {
    let cache: Arc<dyn ContentCache> = Arc::new(MemoryCache::new(64 << 20));
    let held = Arc::clone(&cache);
    let h = Harness::with_parts(|p| p.cache = held);
    let sample = big_sample();
    let (uid, dir) = read_whole(&h, &sample);
    // The cached copy loses its boundaries (same length): it no longer has the parts the
    // server says the message has.
    let first = ContentKey {
        mailbox: MailboxId::new("INBOX"),
        validity: h.fs.metadata.validity(&MailboxId::new("INBOX")).unwrap(),
        uid,
        section: Section::whole(),
        transfer: Transfer::Encoded,
        offset: 0,
    };
    let damaged: Vec<u8> = cache
        .get(&first)
        .unwrap()
        .iter()
        .map(|&b| if b == b'=' { b'#' } else { b })
        .collect();
    cache.insert(first, Arc::new(damaged));
    let attachment = h.ino(&format!("{dir}/{}", sample.attachment_name)).unwrap();
    let fetches = h.count(Op::FetchSection);
    let structures = h.count(Op::BodyStructures);
    assert_eq!(h.read_all(attachment).unwrap(), sample.attachment);
    assert!(
        h.count(Op::FetchSection) > fetches + 1,
        "the 2 MiB attachment came from the server, in several runs"
    );
    assert_eq!(
        h.count(Op::BodyStructures),
        structures + 1,
        "the message was compared with the server's structure once, not once a run"
    );
}

#[test]
fn a_message_read_whole_shows_its_parts_when_its_structure_is_not_at_hand() {
    let h = Harness::new();
    let sample = big_sample();
    // message.eml needs no structure: only the listing and the content.
    let (_, dir) = read_whole(&h, &sample);
    assert_eq!(h.count(Op::BodyStructures), 0);
    // From now on the store answers nothing about the message (as offline, not kept).
    for _ in 0..8 {
        h.store.fail_next(Op::BodyStructures, || {
            crate::store::StoreError::Connection("offline".into())
        });
        h.store.fail_next(Op::FetchSection, || {
            crate::store::StoreError::Connection("offline".into())
        });
    }
    assert_eq!(
        h.names_at(&dir).unwrap(),
        ["message.eml", "body.txt", sample.attachment_name.as_str()]
    );
    let attachment = h.ino(&format!("{dir}/{}", sample.attachment_name)).unwrap();
    assert_eq!(
        h.fs.getattr(attachment).unwrap().attr.size,
        sample.attachment.len() as u64
    );
    assert_eq!(h.read_all(attachment).unwrap(), sample.attachment);
    let body = h.ino(&format!("{dir}/body.txt")).unwrap();
    assert_eq!(h.read_all(body).unwrap(), sample.body.as_bytes());
}

/// A quoted-printable attachment stored in more than 1 MiB shows the server's
/// `BINARY.SIZE` as an estimate until it is looked up; then one request of a few decoded
/// bytes makes it exact, and later `stat`s and opens ask nothing more.
#[test]
fn a_large_quoted_printable_part_is_made_exact_once_by_its_end() {
    let h = Harness::new();
    let data: Vec<u8> = (0..400_000u32)
        .map(|i| b"0123456789;\xe9"[(i % 12) as usize])
        .collect();
    let encoded: Vec<String> = data
        .chunks(25)
        .map(|chunk| chunk.iter().map(|b| format!("={b:02X}")).collect())
        .collect();
    let mut raw = b"From: a@example.com\r\nSubject: Large table\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
        Content-Type: text/plain\r\n\r\nA table.\r\n--b\r\n\
        Content-Type: text/csv; name=\"table.csv\"\r\n\
        Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        .to_vec();
    raw.extend_from_slice(encoded.join("=\r\n").as_bytes());
    raw.extend_from_slice(b"\r\n--b--\r\n");
    let uid = h.store.add_message("INBOX", &raw, &[], date());
    let dir = mime::message_dir_name(uid, Some(b"Large table"));
    // Listed as `ls -l` lists it (READDIRPLUS): the node the kernel holds is made with the
    // estimate, and `stat` asks for the attributes.
    let message = h.ino(&format!("INBOX/{dir}")).unwrap();
    let before = h.count(Op::FetchSection);
    let listed = h.plus_to_the_end(message);
    let (_, entry, estimate) = listed
        .iter()
        .find(|(_, e, _)| e.name == "table.csv")
        .unwrap();
    assert_eq!(estimate.ttl, Duration::ZERO, "an estimate is not kept");
    let ino = entry.ino;
    let attr = h.fs.getattr(ino).unwrap();
    assert_eq!(attr.attr.size, 400_000);
    assert!(
        attr.ttl > Duration::ZERO,
        "exact, so the kernel may keep it"
    );
    let asked = h.count(Op::FetchSection);
    assert!(
        asked - before <= 3,
        "its sizes, then its end: {} requests",
        asked - before
    );
    assert!(
        h.store.bytes_served() < 64 << 10,
        "{} bytes fetched for its size",
        h.store.bytes_served()
    );
    // The kernel's node keeps the estimate it was made with: the size learned is used.
    assert_eq!(h.fs.getattr(ino).unwrap().attr.size, 400_000);
    let open = h.fs.open(ino, false).unwrap();
    assert!(open.keep_cache && !open.direct_io);
    assert_eq!(h.count(Op::FetchSection), asked, "asked again");
    assert_eq!(h.read_all(ino).unwrap(), data);
}
