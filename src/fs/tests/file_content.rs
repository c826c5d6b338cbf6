//! What the files of a message directory hold: the raw message, the decoded text body, the
//! attachments, and exact slices at any offset.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::*;
use crate::fs::content::RAW_CHUNK;

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

#[test]
fn body_txt_is_decoded_and_converted_to_utf8() {
    let h = Harness::new();
    let sample = big_sample();
    assert!(String::from_utf8_lossy(&sample.raw).contains("caf=E9 co=FBte 2 =A3 (=BD prix)"));
    let uid = h.store.add_message("INBOX", &sample.raw, &[], date());
    let ino = h
        .ino(&format!("INBOX/{}/body.txt", sample.dir_name(uid)))
        .unwrap();
    let open = h.fs.open(ino, false).unwrap();
    assert!(open.direct_io, "the size is an estimate until read");
    let body = h.read_all(ino).unwrap();
    assert_eq!(String::from_utf8(body).unwrap(), sample.body);
    // Once read, the size is exact.
    let attr = h.fs.getattr(ino).unwrap();
    assert_eq!(attr.attr.size, sample.body.len() as u64);
    assert!(attr.ttl > Duration::ZERO);
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
    let edges: Vec<u64> = (1..=len / RAW_CHUNK)
        .map(|k| k * RAW_CHUNK)
        .chain([len])
        .collect();
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
