//! COMPRESS=DEFLATE through a real mount: reads are exact with it, far fewer bytes come from
//! the server for text mail, and a server without it (or `--no-compress`) is read plainly.
//! The fixture's server is on loopback, where `--compress auto` (the default) does not
//! compress; a proxy on loopback stands in for a remote server with `--compress always`.

use std::fs;
use std::path::Path;

use super::support::*;

/// Messages and their average size: text mail, some with small attachments.
const COUNT: usize = 60;
const SEED: u64 = 14;
const AVG_SIZE: usize = 6_000;

/// A server whose INBOX holds the bulk messages (UID `i + 1` is message `i`).
fn server(compress: bool) -> Dovecot {
    let dovecot = Dovecot::start(DovecotOptions {
        compress,
        ..DovecotOptions::default()
    })
    .unwrap();
    fixture::fill_bulk(&dovecot, "alice", "INBOX", COUNT, SEED, AVG_SIZE).unwrap();
    dovecot
}

/// Reads every `message.eml` of INBOX, checks each against the message stored, and returns
/// how many bytes of content that was.
fn read_every_message_exactly(inbox: &Path) -> u64 {
    let mut total = 0;
    let mut seen = 0;
    for entry in fs::read_dir(inbox).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let uid: usize = name.split(' ').next().unwrap().parse().unwrap();
        let eml = fs::read(dir.join("message.eml")).unwrap();
        let stored = fixture::bulk_message(SEED, uid - 1, AVG_SIZE).raw;
        assert!(
            eml == stored,
            "{name}/message.eml differs from what is stored"
        );
        total += eml.len() as u64;
        seen += 1;
    }
    assert_eq!(seen, COUNT);
    total
}

/// Bytes from the server for listing and reading all of INBOX on a fresh mount with `args`,
/// the content's size, and the mount's log.
fn cold_read(dovecot: &Dovecot, args: &[&str]) -> (u64, u64, String) {
    let proxy = Proxy::start(dovecot.imaps_addr(), ProxyOptions::default()).unwrap();
    let mount = MountSpec::new(dovecot, "alice")
        .via_proxy(&proxy)
        .args(args)
        .mount();
    let content = read_every_message_exactly(&mount.join("INBOX"));
    (proxy.bytes_from_server(), content, mount.log())
}

#[test]
fn compression_keeps_reads_exact_and_cuts_the_bytes_of_text_mail() {
    let dovecot = server(true);
    let (compressed, content, log) = cold_read(&dovecot, &["--compress", "always"]);
    assert!(
        log.contains("COMPRESS DEFLATE"),
        "--compress always did not ask for compression:\n{log}"
    );
    for never in [&["--no-compress"][..], &["-o", "compress=never"]] {
        let (plain, plain_content, log) = cold_read(&dovecot, never);
        assert!(
            !log.contains("COMPRESS DEFLATE"),
            "{never:?} asked for it:\n{log}"
        );
        assert_eq!(plain_content, content);
        // Uncompressed, every byte of content crosses the wire (TLS adds a little).
        assert!(plain >= content, "{plain} bytes for {content} of content");
        assert!(
            compressed * 2 < plain,
            "compressed: {compressed} bytes from the server, uncompressed: {plain}"
        );
    }
}

#[test]
fn by_default_a_server_on_this_machine_is_read_plainly() {
    let dovecot = server(true);
    let (plain, content, log) = cold_read(&dovecot, &[]);
    assert!(
        !log.contains("COMPRESS DEFLATE"),
        "the default compressed a connection to loopback:\n{log}"
    );
    assert!(
        log.contains("the server is on this machine"),
        "the log does not say why it did not compress:\n{log}"
    );
    assert!(plain >= content, "{plain} bytes for {content} of content");
}

#[test]
fn a_server_without_compression_is_read_plainly() {
    let dovecot = server(false);
    let (bytes, content, log) = cold_read(&dovecot, &["--compress", "always"]);
    assert!(
        !log.contains("COMPRESS DEFLATE"),
        "asked a server that does not offer it:\n{log}"
    );
    assert!(bytes >= content, "{bytes} bytes for {content} of content");
}
