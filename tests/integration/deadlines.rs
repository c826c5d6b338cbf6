//! Deadlines and cancellation with a frozen server: every filesystem call ends within
//! `--timeout` plus a little, whatever it waits on (a pooled connection, a new one's TLS
//! handshake, a read, an APPEND); a caller killed while its read waits is gone at once; and
//! storing a large file keeps memory bounded.

use std::fs;
use std::io::{self, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::faults::{errno, within, Imapfs, LISTING_FRESH};
use super::support::*;

/// `--timeout` for these mounts.
const TIMEOUT_SECS: u64 = 5;
/// What any one call may take with a frozen server: the timeout and a little.
const CALL_LIMIT: Duration = Duration::from_secs(7);

fn frozen_setup() -> (Dovecot, Proxy, Mount, Imapfs) {
    let dovecot = dovecot_with_samples();
    let proxy = Proxy::start(dovecot.imaps_addr(), ProxyOptions::default()).unwrap();
    let mount = MountSpec::new(&dovecot, "alice")
        .via_proxy(&proxy)
        .args(&["--timeout", "5"])
        .mount();
    let process = Imapfs::of(&mount);
    (dovecot, proxy, mount, process)
}

/// Runs one filesystem call under a hang guard; returns its errno (`None`: it succeeded)
/// and how long it took.
fn timed<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> (Option<i32>, Duration) {
    let (result, took) = within(Duration::from_secs(30), what, f);
    (errno(&result), took)
}

fn close(file: fs::File) -> io::Result<()> {
    use std::os::unix::io::IntoRawFd;
    let fd = file.into_raw_fd();
    // SAFETY: `fd` was just taken out of the File, so it is open and closed only here.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[test]
fn every_call_ends_within_the_timeout_when_the_server_freezes() {
    let (_dovecot, proxy, mount, process) = frozen_setup();
    let plain = mount.message_dir("INBOX", "Plain text greeting");
    let other = mount.message_dir("INBOX", "Quoted-printable: Café crème");
    let attached = mount.message_dir("INBOX", "Résumé and data");
    assert!(fs::read_dir(&plain).unwrap().count() > 0);
    assert!(fs::read_dir(&other).unwrap().count() > 0);
    // Small text parts come with the structure; an attachment is fetched when read.
    let attachment = fs::read_dir(&attached)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "pdf"))
        .expect("the PDF attachment");
    let eml = other.join("message.eml");
    std::thread::sleep(LISTING_FRESH);

    // A new file written before the freeze, stored (APPEND) by its close during it.
    let mut new_file = fs::File::create(mount.join("INBOX/frozen.txt")).unwrap();
    new_file
        .write_all(b"written before the server froze, stored after\n")
        .unwrap();

    proxy.set_stalled(true);
    let frozen = Instant::now();
    // (call, must fail, errno, time): a listing may be served from what is known.
    let mut calls: Vec<(&str, bool, Option<i32>, Duration)> = Vec::new();
    let mut call = |what: &'static str, r: (Option<i32>, Duration)| {
        let must_fail = !what.starts_with("readdir") && !what.starts_with("create");
        calls.push((what, must_fail, r.0, r.1));
    };

    call("close(new file)", timed("close", move || close(new_file)));
    let file = within(Duration::from_secs(30), "open the attachment", {
        let attachment = attachment.clone();
        move || fs::File::open(attachment)
    })
    .0
    .expect("opening needs nothing from the server");
    call(
        "read(résumé.pdf)",
        timed("read the attachment", move || {
            let mut file = file;
            let mut buf = vec![0; 1 << 16];
            file.read(&mut buf)
        }),
    );
    // Once the server has been silent for a while (SILENT_FOR, 2 s), a read waits its whole
    // deadline again; the kernel then retries the failed page-cache read with a second
    // request, which gets the short deadline: the worst case for one `read`.
    std::thread::sleep(Duration::from_millis(2500));
    call(
        "read(message.eml)",
        timed("read message.eml", move || fs::read(eml)),
    );
    let inbox = mount.join("INBOX");
    call(
        "readdir(INBOX)",
        timed("ls INBOX", move || {
            fs::read_dir(inbox)?.collect::<io::Result<Vec<_>>>()
        }),
    );
    let root = mount.path.clone();
    call(
        "readdir(/)",
        timed("ls /", move || {
            fs::read_dir(root)?.collect::<io::Result<Vec<_>>>()
        }),
    );
    let unlisted = mount.join("Archive/2023");
    call(
        "readdir(Archive/2023)",
        timed("ls Archive/2023", move || {
            fs::read_dir(unlisted)?.collect::<io::Result<Vec<_>>>()
        }),
    );
    let new_mailbox = mount.join("Frozen");
    call(
        "mkdir(Frozen)",
        timed("mkdir", move || fs::create_dir(new_mailbox)),
    );
    let flags_on = plain.clone();
    call(
        "setxattr(user.imap.flags)",
        timed("setxattr", move || {
            let out = Command::new("setfattr")
                .args(["-n", "user.imap.flags", "-v", "\\Flagged"])
                .arg(&flags_on)
                .output()?;
            if out.status.success() {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(libc::EIO))
            }
        }),
    );
    let created = mount.join("INBOX/frozen-late.txt");
    call(
        "create(INBOX/frozen-late.txt)",
        timed("create", move || fs::File::create(created)),
    );
    let frozen_for = frozen.elapsed();
    proxy.set_stalled(false);

    let report: Vec<String> = calls
        .iter()
        .map(|(what, _, errno, took)| format!("{what}: {took:.2?}, errno {errno:?}"))
        .collect();
    eprintln!(
        "with the server frozen for {frozen_for:.1?} (--timeout {TIMEOUT_SECS}):\n  {}",
        report.join("\n  ")
    );
    for (what, must_fail, errno, took) in &calls {
        assert!(
            *took < CALL_LIMIT,
            "{what} took {took:?}\n{}",
            report.join("\n")
        );
        // setfattr's own exit status stands for its errno.
        assert!(
            !must_fail || matches!(errno, Some(libc::EIO | libc::ETIMEDOUT)),
            "{what} ended with {errno:?}, expected EIO or ETIMEDOUT"
        );
    }

    // Thawed: everything works again, at once.
    let (again, took) = within(Duration::from_secs(30), "read after thaw", move || {
        fs::read(attachment)
    });
    assert!(again.is_ok(), "{again:?}\n{}", mount.log());
    assert!(took < Duration::from_secs(3), "recovering took {took:?}");
    process.assert_healthy(&mount);
}

/// Callers blocked on a frozen server are killed, and must be gone within a second: the
/// kernel keeps a killed caller until the filesystem answers a request it already took
/// (a lookup, a directory listing, a direct read), so only cancelling the store call in
/// flight frees it.
#[test]
fn a_caller_killed_while_its_call_waits_is_gone_within_a_second() {
    let (_dovecot, proxy, mount, process) = frozen_setup();
    let attachment = fs::read_dir(mount.message_dir("INBOX", "Large attachment (10 MB)"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "bin"))
        .expect("the large attachment");
    let unlisted = mount.join("Archive/2023");
    let callers: [(&str, Vec<String>); 2] = [
        (
            "a direct read",
            vec![
                "dd".into(),
                format!("if={}", attachment.display()),
                "of=/dev/null".into(),
                "bs=65536".into(),
                "iflag=direct".into(),
            ],
        ),
        (
            "a listing",
            vec!["ls".into(), "-l".into(), unlisted.display().to_string()],
        ),
    ];
    for (what, argv) in callers {
        proxy.set_stalled(true);
        let mut caller = Command::new(&argv[0])
            .args(&argv[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Long enough to be waiting on the server, far from the 5 s deadline.
        std::thread::sleep(Duration::from_millis(1000));
        assert!(
            caller.try_wait().unwrap().is_none(),
            "{what} ended before the server answered"
        );
        let killed = Instant::now();
        caller.kill().unwrap();
        let (status, _) = within(
            Duration::from_secs(30),
            "wait for the killed caller",
            move || caller.wait(),
        );
        let gone_after = killed.elapsed();
        assert!(status.is_ok());
        eprintln!(
            "{what} ({}) gone {gone_after:?} after SIGKILL",
            argv.join(" ")
        );
        assert!(
            gone_after < Duration::from_secs(1),
            "{what}: the killed caller lived on for {gone_after:?}\n{}",
            mount.log()
        );
        proxy.set_stalled(false);
    }
    // The connections they waited on were dropped; everything works again.
    assert!(
        within(Duration::from_secs(30), "read after the kills", move || {
            fs::read(attachment)
        })
        .0
        .is_ok()
    );
    assert!(fs::read_dir(&unlisted)
        .and_then(|d| d.collect::<io::Result<Vec<_>>>())
        .is_ok());
    let log = mount.log();
    assert!(
        log.matches("interrupted").count() >= 2,
        "the cancelled calls are not in the log:\n{log}"
    );
    process.assert_healthy(&mount);
}

/// VmRSS and VmHWM of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Storing a 200 MB message streams it from the spool file to the socket: imapfs's memory
/// grows by a few MB at most.
#[test]
fn storing_a_200_mb_file_keeps_memory_bounded() {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let process = Imapfs::of(&mount);
    let local = tempfile::tempdir().unwrap();
    let source = local.path().join("huge.eml");
    {
        let mut out = io::BufWriter::new(fs::File::create(&source).unwrap());
        out.write_all(
            b"From: Test <test@example.com>\r\nSubject: Huge\r\nMessage-ID: <huge@imapfs.test>\r\n\r\n",
        )
        .unwrap();
        let line = [
            b"0123456789abcdefghijklmnopqrstuvwxyz".repeat(2),
            b"\r\n".to_vec(),
        ]
        .concat();
        for _ in 0..(200_000_000 / line.len()) {
            out.write_all(&line).unwrap();
        }
    }
    let size = fs::metadata(&source).unwrap().len();
    let (rss_before, hwm_before) = memory_kib(process.pid);
    let target = mount.join("INBOX");
    let copy = std::thread::spawn(move || {
        Command::new("cp")
            .arg(&source)
            .arg(&target)
            .output()
            .unwrap()
    });
    let mut peak_rss = rss_before;
    while !copy.is_finished() {
        peak_rss = peak_rss.max(memory_kib(process.pid).0);
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = copy.join().unwrap();
    assert!(out.status.success(), "cp failed: {out:?}\n{}", mount.log());
    let (_, hwm_after) = memory_kib(process.pid);
    let grew_mib = peak_rss.saturating_sub(rss_before) / 1024;
    let hwm_grew_mib = hwm_after.saturating_sub(hwm_before.max(rss_before)) / 1024;
    eprintln!(
        "storing {size} bytes: VmRSS {rss_before} KiB before, peak {peak_rss} KiB sampled; VmHWM grew {hwm_grew_mib} MiB"
    );
    assert!(grew_mib <= 64, "VmRSS grew by {grew_mib} MiB");
    assert!(hwm_grew_mib <= 64, "VmHWM grew by {hwm_grew_mib} MiB");
    let mut client = dovecot.client("alice").unwrap();
    client.examine("INBOX").unwrap();
    let sizes = client.uid_fetch("1:*", "(RFC822.SIZE)").unwrap();
    assert!(
        sizes.iter().any(|f| f.size == Some(size as u32)),
        "no message of {size} bytes in INBOX"
    );
}
