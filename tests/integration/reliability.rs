//! Reliability, second round: what a full disk, NUL bytes, a killed imapfs, a core dump and
//! a recreated mailbox must never do to mail. Each checked on a real mount against a real
//! Dovecot, with an independent client looking at the server.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mail_parser::MessageParser;

use super::support::*;

/// A fresh account with an empty Archive and a Trash.
fn archive_account() -> (Dovecot, Session) {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    let mut client = dovecot.client("alice").unwrap();
    fixture::create_mailbox(&mut client, "Archive").unwrap();
    fixture::create_mailbox(&mut client, "Trash").unwrap();
    (dovecot, client)
}

/// A tmpfs of `mb` megabytes mounted at `path`; unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn new(path: &Path, mb: u32) -> Tmpfs {
        fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mb}m,mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount tmpfs: {out:?}");
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

/// Bytes in use on the filesystem at `path`.
fn used_bytes(path: &Path) -> u64 {
    let c = std::ffi::CString::new(path.to_string_lossy().as_bytes()).unwrap();
    // SAFETY: statvfs fills the zeroed struct for a valid C path.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(c.as_ptr(), &mut s), 0);
        (s.f_blocks - s.f_bfree) * s.f_frsize
    }
}

#[test]
fn a_full_spool_fails_the_write_and_the_close_and_stores_nothing() {
    let (dovecot, mut client) = archive_account();
    let work = tempfile::tempdir().unwrap();
    let spool = work.path().join("spool");
    let _tmpfs = Tmpfs::new(&spool, 50);
    let spool_arg = spool.to_str().unwrap().to_string();
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&["--spool-dir", &spool_arg])
        .mount();
    let source = work.path().join("big.bin");
    fs::write(&source, vec![7u8; 100 << 20]).unwrap();
    let target = mount.join("Archive/big.bin");
    // Written by hand to see which call fails with what.
    let mut out = fs::File::create(&target).unwrap();
    let data = fs::read(&source).unwrap();
    let mut write_error = None;
    for chunk in data.chunks(1 << 20) {
        if let Err(e) = out.write_all(chunk) {
            write_error = Some(e);
            break;
        }
    }
    let write_error = write_error.expect("a 100 MB file cannot fit a 50 MB spool");
    assert_eq!(
        write_error.raw_os_error(),
        Some(libc::ENOSPC),
        "{write_error}"
    );
    // The space is given back at once, before the close.
    assert!(
        used_bytes(&spool) < 1 << 20,
        "{} bytes still used",
        used_bytes(&spool)
    );
    let fd = std::os::unix::io::IntoRawFd::into_raw_fd(out);
    // SAFETY: closing the descriptor we own, once.
    let closed = unsafe { libc::close(fd) };
    let close_error = std::io::Error::last_os_error();
    assert_eq!(closed, -1, "close() must fail");
    assert_eq!(
        close_error.raw_os_error(),
        Some(libc::ENOSPC),
        "close(): {close_error}\nimapfs log:\n{}",
        mount.log()
    );
    let archive = server_mailbox(&mut client, "Archive");
    let stored: Vec<String> = archive
        .values()
        .map(|(flags, raw)| {
            format!(
                "{flags:?} {} bytes: {:?}",
                raw.len(),
                String::from_utf8_lossy(&raw[..raw.len().min(300)])
            )
        })
        .collect();
    assert!(
        stored.is_empty(),
        "nothing is stored, yet Archive holds {stored:#?}\nimapfs log:\n{}",
        mount.log()
    );
    assert!(
        mount.log().contains("will not be stored"),
        "the log says why"
    );
}

/// A disk cache on a filesystem too small for what is read leaves the filesystem's free
/// floor (5%) free and keeps working: a bug hunt saw it fill a 20 MB filesystem to the
/// last byte, after which its index refused every write and an offline mount lost the
/// listings. Reads stay exact; an offline mount of the cache lists what was listed.
#[test]
fn a_disk_cache_on_a_small_filesystem_leaves_its_floor_free() {
    let dovecot = dovecot_with_samples();
    let base = tempfile::tempdir().unwrap();
    let small = base.path().join("small");
    let _tmpfs = Tmpfs::new(&small, 20);
    let arg = format!("--cache-dir={}", small.join("cache").display());
    let listed;
    {
        let mount = MountSpec::new(&dovecot, "alice").args(&[&arg]).mount();
        listed = fs::read_dir(mount.join("INBOX")).unwrap().count();
        let large = mount.message_dir("INBOX", "Large attachment (10 MB)");
        for name in ["dataset.bin", "message.eml"] {
            let size = fs::metadata(large.join(name)).unwrap().len();
            let read = fs::read(large.join(name)).unwrap();
            assert_eq!(read.len() as u64, size, "{name}");
        }
        let c = std::ffi::CString::new(small.to_string_lossy().as_bytes()).unwrap();
        // SAFETY: statvfs fills the zeroed struct for a valid C path.
        let (free, total) = unsafe {
            let mut s: libc::statvfs = std::mem::zeroed();
            assert_eq!(libc::statvfs(c.as_ptr(), &mut s), 0);
            (s.f_bavail * s.f_frsize, s.f_blocks * s.f_frsize)
        };
        // The floor, less what the index itself may take past it.
        assert!(
            free >= total / 20 - (256 << 10),
            "{free} of {total} bytes free\n{}",
            mount.log()
        );
        assert!(!mount.log().contains("Previous I/O"), "{}", mount.log());
    }
    let offline = MountSpec::new(&dovecot, "alice")
        .args(&[&arg, "--offline"])
        .mount();
    assert_eq!(fs::read_dir(offline.join("INBOX")).unwrap().count(), listed);
}

#[test]
fn a_message_with_nul_bytes_is_stored_without_a_byte_changed() {
    let (dovecot, mut client) = archive_account();
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let raw =
        b"From: a@example.com\r\nSubject: nul\r\nMessage-ID: <nul@x>\r\n\r\nbefore\0after\r\n";
    fs::write(mount.join("Archive/nul.eml"), raw).unwrap();
    let stored = server_mailbox(&mut client, "Archive");
    assert_eq!(stored.len(), 1);
    let (uid, (_, bytes)) = stored.iter().next().unwrap();
    // Either the message itself (literal8 where the server has BINARY), or the file as
    // the attachment of a new message: never a NUL changed into something else.
    // Dovecot's BODY[] shows a stored NUL as 0x80; its BINARY[] gives the bytes back.
    let as_body_shows: Vec<u8> = raw.iter().map(|&b| if b == 0 { 0x80 } else { b }).collect();
    if *bytes == as_body_shows {
        assert_eq!(binary_peek(&dovecot, "Archive", *uid, ""), raw);
    } else if bytes.as_slice() != raw {
        let parsed = MessageParser::default().parse(bytes).unwrap();
        let attachment = parsed
            .attachments()
            .next()
            .expect("wrapped as an attachment");
        assert_eq!(attachment.contents(), raw, "the bytes were altered");
    }
}

#[test]
fn a_message_is_stored_exactly_once_whenever_imapfs_is_killed() {
    // Killed at several moments of storing a 20 MB file; each time a new mount settles it.
    for delay_ms in [0u64, 150, 400, 1200] {
        let (dovecot, mut client) = archive_account();
        let work = tempfile::tempdir().unwrap();
        let spool = work.path().join("spool");
        let spool_arg = spool.to_str().unwrap().to_string();
        let source = work.path().join("data.bin");
        let data: Vec<u8> = (0..20u32 << 20).map(|i| (i % 251) as u8).collect();
        fs::write(&source, &data).unwrap();
        let mount = MountSpec::new(&dovecot, "alice")
            .args(&["--spool-dir", &spool_arg])
            .mount();
        let target = mount.join("Archive/data.bin");
        let copier = {
            let (source, target) = (source.clone(), target.clone());
            std::thread::spawn(move || {
                let _ = Command::new("cp").arg(&source).arg(&target).output();
            })
        };
        // Wait until the file is closed (being stored) or a little after, then kill.
        let start = Instant::now();
        while !mount.log().contains("stored new file")
            && !spool_has_note(&spool)
            && start.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        let pid = mount.pid();
        // SAFETY: kill(2) on the imapfs child.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        drop(mount);
        copier.join().unwrap();
        // A new mount with the same spool settles what was under way.
        let again = MountSpec::new(&dovecot, "alice")
            .args(&["--spool-dir", &spool_arg])
            .mount();
        let deadline = Instant::now() + Duration::from_secs(30);
        while spool_has_files(&spool) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let copies = server_mailbox(&mut client, "Archive")
            .values()
            .filter(|(_, raw)| {
                MessageParser::default()
                    .parse(raw)
                    .and_then(|m| m.attachments().next().map(|a| a.contents() == data))
                    .unwrap_or(false)
            })
            .count();
        assert_eq!(
            copies,
            1,
            "killed {delay_ms} ms into storing: {copies} copies; spool {:?}\nlog:\n{}",
            fs::read_dir(&spool).map(|d| d.count()),
            again.log()
        );
    }
}

fn spool_has_note(spool: &Path) -> bool {
    fs::read_dir(spool).is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".sending"))
    })
}

fn spool_has_files(spool: &Path) -> bool {
    fs::read_dir(spool).is_ok_and(|mut d| d.next().is_some())
}

#[test]
fn an_aborted_imapfs_leaves_no_core_dump_with_the_password() {
    const PASSWORD: &str = "Core-dump-secret-8d41";
    let dovecot = Dovecot::start(DovecotOptions {
        users: vec![("alice".into(), PASSWORD.into())],
        ..DovecotOptions::default()
    })
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    // The machine does write cores where a process allows it: a plain process proves it.
    let control = Command::new("sh")
        .arg("-c")
        .arg("ulimit -c unlimited; kill -ABRT $$")
        .current_dir(work.path())
        .status()
        .unwrap();
    assert!(!control.success());
    let control_core = fs::read_dir(work.path())
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("core"));
    for entry in fs::read_dir(work.path()).unwrap().flatten() {
        let _ = fs::remove_file(entry.path());
    }
    let mnt = work.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -c unlimited; exec {} -f --no-disk-cache --ca-file {} {} {}",
            imapfs_bin(),
            dovecot.ca_file().display(),
            dovecot.source("alice"),
            mnt.display()
        ))
        .current_dir(work.path())
        .env("IMAPFS_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !is_mounted(&mnt) && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(is_mounted(&mnt));
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGABRT) };
    let _ = child.wait();
    let _ = Command::new("umount").arg("-l").arg(&mnt).output();
    let cores: Vec<_> = fs::read_dir(work.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("core"))
        .collect();
    for core in &cores {
        let mut bytes = Vec::new();
        fs::File::open(core.path())
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        let found = bytes
            .windows(PASSWORD.len())
            .any(|w| w == PASSWORD.as_bytes());
        assert!(!found, "the password is in {}", core.path().display());
    }
    if control_core {
        assert!(cores.is_empty(), "imapfs dumped core: {cores:?}");
    }
}

#[test]
fn the_spool_and_the_log_are_private() {
    let (dovecot, _client) = archive_account();
    let work = tempfile::tempdir().unwrap();
    let spool = work.path().join("state/imapfs/spool");
    let log = work.path().join("imapfs.log");
    let (spool_arg, log_arg) = (
        spool.to_str().unwrap().to_string(),
        log.to_str().unwrap().to_string(),
    );
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&["--spool-dir", &spool_arg, "--log-file", &log_arg])
        .mount();
    // The spool is made when the first file is written.
    let mut f = fs::File::create(mount.join("Archive/.draft")).unwrap();
    f.write_all(b"x").unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&spool), 0o700, "spool directory");
    assert_eq!(mode(&log), 0o600, "log file");
    for entry in fs::read_dir(&spool).unwrap().flatten() {
        assert_eq!(mode(&entry.path()), 0o600, "{}", entry.path().display());
    }
}

#[test]
fn a_held_message_of_a_recreated_mailbox_reads_as_estale() {
    let (dovecot, mut client) = archive_account();
    let raw = b"From: a@example.com\r\nSubject: old\r\n\r\nthe old message\r\n".to_vec();
    fixture::append(&mut client, "Archive", &raw, &[]).unwrap();
    // Dovecot's NOTIFY usually reports what follows; when it does not (it has sent
    // nothing at all), the poll finds the new UIDVALIDITY.
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&["--poll-interval", "1"])
        .mount();
    let dir = mount.message_dir("Archive", "old");
    let mut held = fs::File::open(dir.join("message.eml")).unwrap();
    let mut first = Vec::new();
    held.read_to_end(&mut first).unwrap();
    assert_eq!(first, raw);
    // Another client deletes and recreates the mailbox, with another message at UID 1.
    let _ = client.select("INBOX");
    client.delete("Archive").unwrap();
    // Dovecot makes Archive again by itself (`auto = subscribe`) as soon as any session
    // lists mailboxes, as the mount's watcher does when told of the DELETE.
    if let Err(e) = fixture::create_mailbox(&mut client, "Archive") {
        assert!(e.to_string().contains("ALREADYEXISTS"), "{e}");
    }
    let new = b"From: b@example.com\r\nSubject: new\r\n\r\nsomething else\r\n".to_vec();
    fixture::append(&mut client, "Archive", &new, &[]).unwrap();
    let listed = || -> Vec<String> {
        fs::read_dir(mount.join("Archive"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while listed() != ["1 new"] && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(listed(), ["1 new"], "{}", mount.log());
    // The kernel is told to drop its pages from a thread of its own, so a read right
    // after the listing may still be served from them: the old message's own bytes, never
    // the new one's. Once they are dropped, the read comes to imapfs and is ESTALE.
    use std::io::Seek;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        held.rewind().unwrap();
        let mut again = Vec::new();
        match held.read_to_end(&mut again) {
            Err(e) if e.raw_os_error() == Some(libc::ESTALE) => break,
            Ok(_) if again == raw && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            other => panic!(
                "a held handle of the old mailbox gave {:?}, having read {:?}",
                other.map_err(|e| e.raw_os_error()),
                String::from_utf8_lossy(&again)
            ),
        }
    }
}
