//! APPEND streams the message: storing 200 MB through the IMAP store keeps this process's
//! memory within a few MB. A test binary of its own, so that no other test shares the
//! process whose memory is measured.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use fixture::{Dovecot, DovecotOptions};
use imapfs::store::imap::connection::{Auth, ConnectConfig, Transport};
use imapfs::store::imap::ImapStore;
use imapfs::store::{MailStore, MailboxId, NewMessage};

/// A message made up line by line as it is read, never held whole.
struct Generated {
    header: Vec<u8>,
    line: Vec<u8>,
    len: u64,
    pos: u64,
}

impl Generated {
    fn new(len: u64) -> Self {
        Generated {
            header: b"From: Test <test@example.com>\r\nSubject: Streamed\r\n\r\n".to_vec(),
            line: [
                b"0123456789abcdefghijklmnopqrstuvwxyz".repeat(2),
                b"\r\n".to_vec(),
            ]
            .concat(),
            len,
            pos: 0,
        }
    }
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() && self.pos < self.len {
            let byte = match self.header.get(self.pos as usize) {
                Some(&b) => b,
                None => {
                    let at = (self.pos - self.header.len() as u64) % self.line.len() as u64;
                    self.line[at as usize]
                }
            };
            buf[n] = byte;
            n += 1;
            self.pos += 1;
        }
        Ok(n)
    }
}

/// VmRSS and VmHWM of this process, in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
fn a_200_mb_append_keeps_memory_within_a_few_mb() {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    let command = format!("printf %s '{}'", dovecot.password("alice"));
    let secret = imapfs::secret::obtain(Some(&command), "IMAPFS_APPEND_TEST_UNUSED", "").unwrap();
    let store = ImapStore::connect(
        ConnectConfig {
            host: "127.0.0.1".into(),
            port: dovecot.imaps_port(),
            transport: Transport::Tls,
            user: "alice".into(),
            secret,
            auth: Auth::Login,
            ca_file: Some(dovecot.ca_file().to_path_buf()),
            insecure: false,
            allow_plaintext: false,
            timeout: Duration::from_secs(30),
            tls: Default::default(),
            plaintext_warned: Default::default(),
            compress: imapfs::store::imap::Compression::Always,
        },
        1,
    )
    .unwrap();
    const LEN: u64 = 200_000_000;
    let mut message = Generated::new(LEN);
    let (rss_before, hwm_before) = memory_kib();
    let started = Instant::now();
    let appended = store
        .append(
            &MailboxId::new("INBOX"),
            NewMessage {
                content: &mut message,
                len: LEN,
                binary: false,
                flags: &[],
                internal_date: None,
            },
        )
        .unwrap();
    let took = started.elapsed();
    let (_, hwm_after) = memory_kib();
    let grew_kib = hwm_after.saturating_sub(hwm_before.max(rss_before));
    eprintln!(
        "APPEND of {LEN} bytes took {took:?}; VmRSS before {rss_before} KiB, VmHWM grew {grew_kib} KiB"
    );
    assert!(appended.is_some(), "APPENDUID");
    assert!(grew_kib < 8 * 1024, "memory grew by {grew_kib} KiB");
    // Dovecot offers COMPRESS=DEFLATE, so the message went out compressed (the generated
    // content is repetitive): the counter counts the bytes on the wire.
    let sent = store.stats().bytes_sent;
    assert!(sent > 0 && sent < LEN / 10, "{sent} bytes sent for {LEN}");
    let mut client = dovecot.client("alice").unwrap();
    client.examine("INBOX").unwrap();
    let sizes = client.uid_fetch("1:*", "(RFC822.SIZE)").unwrap();
    assert_eq!(
        sizes.iter().filter_map(|f| f.size).collect::<Vec<_>>(),
        [LEN as u32]
    );
}
