//! Connection faults under a live mount: stalls, cuts and restarts between imapfs and Dovecot,
//! mailboxes recreated and messages removed by another client, and a concurrent soak. Also the
//! probes of the imapfs process (deadlines, pid, memory, stderr) that `hostile.rs` shares.
//!
//! Every filesystem operation runs under a deadline: a hang is a failure, not a stuck suite.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::soak::{soak_subject, soak_token};
use super::support::*;

// ---- probes shared with hostile.rs ---------------------------------------------------------

/// Runs `f` on its own thread and returns its result and how long it took; fails the test if
/// it has not returned within `limit` (the stuck thread is freed when the mount goes away).
pub(super) fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> (T, Duration) {
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => (v, start.elapsed()),
        Err(_) => panic!("{what}: still blocked after {limit:?} (a hang)"),
    }
}

/// The errno of a failed filesystem call, or `None` when it succeeded.
pub(super) fn errno<T>(result: &io::Result<T>) -> Option<i32> {
    result
        .as_ref()
        .err()
        .map(|e| e.raw_os_error().unwrap_or(-1))
}

/// The running imapfs process behind a mount.
pub(super) struct Imapfs {
    pub(super) pid: u32,
}

impl Imapfs {
    /// Finds the imapfs process whose command line names `mount`'s mount point.
    pub(super) fn of(mount: &Mount) -> Imapfs {
        let wanted = mount.path.to_string_lossy().to_string();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmdline
                .split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).to_string())
                .collect();
            if args.first() == Some(&imapfs_bin()) && args.contains(&wanted) {
                return Imapfs { pid };
            }
        }
        panic!("no imapfs process serves {wanted}");
    }

    fn proc_file(&self, name: &str) -> Vec<u8> {
        std::fs::read(format!("/proc/{}/{name}", self.pid)).unwrap_or_default()
    }

    /// True while the process exists and is not a zombie.
    pub(super) fn is_alive(&self) -> bool {
        let stat = String::from_utf8_lossy(&self.proc_file("stat")).to_string();
        // The state follows the parenthesised command name.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
    }

    /// Peak resident memory (VmHWM) in KiB.
    pub(super) fn peak_rss_kib(&self) -> u64 {
        let status = String::from_utf8_lossy(&self.proc_file("status")).to_string();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmHWM for pid {}", self.pid))
    }

    /// The command line and environment as the kernel shows them to other processes.
    pub(super) fn cmdline_and_environ(&self) -> (Vec<u8>, Vec<u8>) {
        (self.proc_file("cmdline"), self.proc_file("environ"))
    }

    /// What imapfs wrote to stderr (a pipe nobody else reads) since the last call: opening
    /// the pipe through /proc gives a second read end of it.
    pub(super) fn take_stderr(&self) -> String {
        let Ok(mut pipe) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(format!("/proc/{}/fd/2", self.pid))
        else {
            return String::new();
        };
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            match io::Read::read(&mut pipe, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&out).to_string()
    }

    /// Fails the test if imapfs died or panicked (a panic message on stderr or in its log).
    pub(super) fn assert_healthy(&self, mount: &Mount) {
        let stderr = self.take_stderr();
        assert!(
            !stderr.contains("panicked") && !mount.log().contains("panicked"),
            "imapfs panicked:\n{stderr}\n{}",
            mount.log()
        );
        assert!(
            self.is_alive(),
            "imapfs (pid {}) is gone:\n{stderr}\n{}",
            self.pid,
            mount.log()
        );
    }
}

/// Names that readdir returned under `dir`, checked to be single safe path components;
/// directories that could not be listed are returned with their errno.
pub(super) fn walk_checking_names(dir: &Path, depth: usize, failures: &mut Vec<(String, i32)>) {
    let listing = std::fs::read_dir(dir);
    let entries = match listing {
        Ok(entries) => entries,
        Err(e) => {
            failures.push((dir.display().to_string(), e.raw_os_error().unwrap_or(-1)));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                failures.push((dir.display().to_string(), e.raw_os_error().unwrap_or(-1)));
                continue;
            }
        };
        assert_safe_name(dir, &entry.file_name());
        let path = entry.path();
        assert_eq!(
            path.parent(),
            Some(dir),
            "{} escapes its directory",
            path.display()
        );
        if depth > 0 && entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk_checking_names(&path, depth - 1, failures);
        }
    }
}

/// Fails unless `name` is one harmless path component.
pub(super) fn assert_safe_name(dir: &Path, name: &std::ffi::OsStr) {
    let shown = format!("{name:?} in {}", dir.display());
    let len = name.len();
    let name = name
        .to_str()
        .unwrap_or_else(|| panic!("not UTF-8: {shown}"));
    assert!(!name.is_empty(), "empty name {shown}");
    assert!(name != "." && name != "..", "dot name {shown}");
    assert!(
        !name.contains('/') && !name.contains('\0'),
        "slash or NUL: {shown}"
    );
    assert!(
        !name.chars().any(char::is_control),
        "control character: {shown}"
    );
    assert!(len <= 255, "{len} bytes long: {shown}");
}

// ---- helpers for the Dovecot-backed tests ---------------------------------------------------

/// Per-command deadline given to imapfs in these tests.
const TIMEOUT: &str = "3";
/// Longest one filesystem call may take: a few command deadlines, a retry and a reconnect.
pub(super) const OP_LIMIT: Duration = Duration::from_secs(20);
/// A listing younger than this is reused by imapfs; wait it out to force a new one.
pub(super) const LISTING_FRESH: Duration = Duration::from_millis(1100);

pub(super) fn read(path: PathBuf) -> (io::Result<Vec<u8>>, Duration) {
    within(OP_LIMIT, &format!("read {}", path.display()), move || {
        fs::read(&path)
    })
}

/// The sorted names in a directory.
pub(super) fn list(path: PathBuf) -> (io::Result<Vec<String>>, Duration) {
    within(OP_LIMIT, &format!("ls {}", path.display()), move || {
        let mut names = fs::read_dir(&path)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().to_string()))
            .collect::<io::Result<Vec<String>>>()?;
        names.sort();
        Ok(names)
    })
}

/// Runs a command (no shell) under `timeout`, returning its output.
pub(super) fn run(args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("30")
        .args(args)
        .output()
        .expect("run command")
}

/// The UID at the start of a message directory name.
fn uid_of(name: &str) -> u32 {
    name.split(' ').next().unwrap().parse().unwrap()
}

/// The message names the mount should show for a server mailbox (UID order is name order
/// only by accident, so compare as sets of UIDs).
fn uids(names: &[String]) -> BTreeSet<u32> {
    names.iter().map(|n| uid_of(n)).collect()
}

/// Waits (bounded) until the mount has no change queued (`user.imapfs.pending` empty).
fn wait_until_nothing_pending(mount: &Mount) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = Command::new("getfattr")
            .args(["--only-values", "-n", "user.imapfs.pending"])
            .arg(&mount.path)
            .output()
            .expect("getfattr");
        let pending = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && pending.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "still pending: {pending}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Mounts through `proxy` with `--timeout timeout` and `extra` arguments.
fn mount_via(
    dovecot: &Dovecot,
    proxy: &Proxy,
    timeout: &'static str,
    extra: &[&'static str],
) -> (Mount, Imapfs) {
    let mount = MountSpec::new(dovecot, "alice")
        .via_proxy(proxy)
        .args(&["--timeout", timeout])
        .args(extra)
        .mount();
    let process = Imapfs::of(&mount);
    (mount, process)
}

fn assert_timeout_errno<T: std::fmt::Debug>(what: &str, result: &io::Result<T>, took: Duration) {
    assert!(
        matches!(errno(result), Some(libc::EIO | libc::ETIMEDOUT)),
        "{what}: expected EIO or ETIMEDOUT, got {result:?}"
    );
    assert!(
        took < Duration::from_secs(12),
        "{what}: took {took:?} with --timeout {TIMEOUT}"
    );
}

/// A small message with a unique subject and body token.
pub(super) fn small_message(subject: &str, token: &str) -> Vec<u8> {
    format!(
        "From: Test <test@example.com>\r\nTo: Alice <alice@example.org>\r\n\
         Subject: {subject}\r\nMessage-ID: <{token}@imapfs.test>\r\n\
         Date: Wed, 01 Mar 2023 10:00:00 +0000\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\r\n\
         This is {subject}.\r\nIts token is {token}.\r\n"
    )
    .into_bytes()
}

/// The body.txt imapfs shows for [`small_message`].
pub(super) fn small_body(subject: &str, token: &str) -> Vec<u8> {
    format!("This is {subject}.\nIts token is {token}.\n").into_bytes()
}

// ---- stalls: every command has a deadline -------------------------------------------------

#[test]
fn a_stalled_read_fails_within_the_deadline_and_the_next_read_is_exact() {
    let dovecot = dovecot_with_samples();
    let proxy = Proxy::start(dovecot.imaps_addr(), ProxyOptions::default()).unwrap();
    // With the watcher, whose own connection stalls too: a change it reported just before
    // (the mailbox list, at its start) must not make the cached body.txt wait for a LIST.
    let (mount, process) = mount_via(&dovecot, &proxy, TIMEOUT, &[]);
    let plain = sample("plain");
    let dir = mount.message_dir("INBOX", &plain.subject);
    assert!(list(dir.clone()).0.is_ok());
    let base64 = sample("base64");
    let other = mount.message_dir("INBOX", &base64.subject);
    assert!(list(other.clone()).0.is_ok());

    // body.txt, once read, is cached: it reads from memory, stalled link or not.
    assert!(read(dir.join("body.txt")).0.is_ok());
    proxy.set_stalled(true);
    let (stalled, took) = read(dir.join("message.eml"));
    assert_timeout_errno("read while the link is stalled", &stalled, took);
    let (stalled_body, took) = read(dir.join("body.txt"));
    assert_eq!(
        stalled_body.ok(),
        Some(plain.body_file().unwrap().into_bytes()),
        "body.txt while stalled; imapfs log:\n{}",
        mount.log()
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
    let (stalled_other, took) = read(other.join("message.eml"));
    assert_timeout_errno("another message while stalled", &stalled_other, took);
    proxy.set_stalled(false);

    let (again, took) = read(dir.join("message.eml"));
    assert!(again.as_ref().ok() == Some(&plain.raw), "{again:?}");
    assert!(took < Duration::from_secs(5), "recovering took {took:?}");
    assert_eq!(
        read(dir.join("body.txt")).0.unwrap(),
        plain.body_file().unwrap().into_bytes()
    );
    process.assert_healthy(&mount);
}

#[test]
fn a_stalled_listing_fails_within_the_deadline_the_root_shows_the_last_tree_and_the_next_listing_is_complete(
) {
    let dovecot = dovecot_with_samples();
    fixture::fill_bulk(&dovecot, "alice", "Bulk", 40, 3, 2_000).unwrap();
    let proxy = Proxy::start(dovecot.imaps_addr(), ProxyOptions::default()).unwrap();
    // What listings do when the server stalls: without the watcher, which would keep the
    // mailbox list followed (the root needs no server) until its keepalive notices.
    let (mount, process) = mount_via(&dovecot, &proxy, TIMEOUT, &["--no-watch"]);
    let mut client = dovecot.client("alice").unwrap();
    let expected: BTreeSet<u32> = server_mailbox(&mut client, "Bulk").into_keys().collect();
    assert!(list(mount.join("INBOX")).0.is_ok());
    let before_stall = list(mount.path.clone()).0.unwrap();
    assert!(
        before_stall.contains(&"Bulk".to_string()),
        "{before_stall:?}"
    );
    std::thread::sleep(LISTING_FRESH);

    proxy.set_stalled(true);
    let (stalled, took) = list(mount.join("Bulk"));
    assert_timeout_errno("ls of a mailbox while stalled", &stalled, took);
    // The root's LIST times out too: the mailboxes are shown as last listed, so that what
    // is cached stays reachable.
    let (stalled_root, took) = list(mount.path.clone());
    assert_eq!(
        stalled_root.as_ref().ok(),
        Some(&before_stall),
        "ls of the root while stalled: {stalled_root:?}"
    );
    assert!(
        took < Duration::from_secs(12),
        "ls of the root while stalled took {took:?} with --timeout {TIMEOUT}"
    );
    proxy.set_stalled(false);

    let (names, took) = list(mount.join("Bulk"));
    assert_eq!(uids(&names.unwrap()), expected);
    assert!(took < Duration::from_secs(5), "recovering took {took:?}");
    assert!(list(mount.path.clone())
        .0
        .unwrap()
        .contains(&"Bulk".to_string()));
    process.assert_healthy(&mount);
}

// ---- cuts: reconnect, and never a wrong or partial file -----------------------------------

#[test]
fn a_cut_during_a_large_read_reconnects_and_the_bytes_are_exact() {
    let dovecot = dovecot_with_samples();
    let proxy = Proxy::start(dovecot.imaps_addr(), ProxyOptions::default()).unwrap();
    let (mount, process) = mount_via(&dovecot, &proxy, TIMEOUT, &[]);
    let large = sample("large");
    let dir = mount.message_dir("INBOX", &large.subject);
    assert!(list(dir.clone()).0.is_ok());
    let connections = proxy.connections();

    // ~14 MB at 4 MB/s: the cut lands in the middle of the download.
    proxy.set_trickle(Some(4_000_000));
    let eml = dir.join("message.eml");
    let reader = std::thread::spawn(move || read(eml));
    std::thread::sleep(Duration::from_millis(1200));
    proxy.cut_all();
    let (first, _) = reader.join().unwrap();
    proxy.set_trickle(None);
    assert!(
        first.is_err() || first.as_ref().ok() == Some(&large.raw),
        "the read across the cut returned {} wrong bytes",
        first.as_ref().map_or(0, Vec::len)
    );
    assert!(
        proxy.connections() > connections,
        "imapfs did not reconnect"
    );

    let (again, _) = read(dir.join("message.eml"));
    assert!(
        again.as_ref().ok() == Some(&large.raw),
        "read after the cut"
    );
    process.assert_healthy(&mount);
}

/// Cuts every connection every 100 ms for `window`, defeating the one retry.
fn keep_cutting(proxy: &Proxy, window: Duration) {
    let end = Instant::now() + window;
    while Instant::now() < end {
        proxy.cut_all();
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_read_that_fails_halfway_is_an_error_and_the_cache_keeps_only_complete_content() {
    let dovecot = dovecot_with_samples();
    let proxy = Proxy::start(dovecot.imaps_addr(), ProxyOptions::default()).unwrap();
    let (mount, process) = mount_via(&dovecot, &proxy, TIMEOUT, &[]);
    let large = sample("large");
    let (attachment_name, attachment) = large.attachments[0].clone();
    let dir = mount.message_dir("INBOX", &large.subject);
    assert!(list(dir.clone()).0.is_ok());

    for (file, expected) in [
        ("message.eml", large.raw.clone()),
        (attachment_name.as_str(), attachment),
    ] {
        // Slow enough (per connection, and the kernel reads ahead on several) that the read
        // is still under way when the cuts begin.
        proxy.set_trickle(Some(2_000_000));
        let path = dir.join(file);
        let reader = std::thread::spawn(move || read(path));
        std::thread::sleep(Duration::from_millis(500));
        keep_cutting(&proxy, Duration::from_millis(2500));
        let (broken, took) = reader.join().unwrap();
        proxy.set_trickle(None);
        // An error, or (the kernel's read-ahead retried what failed once the cuts were
        // over) the whole file: never a part of it, nor one padded with zeroes.
        match &broken {
            Err(e) => assert!(
                matches!(e.raw_os_error(), Some(libc::EIO | libc::ETIMEDOUT)),
                "{file}: {e}"
            ),
            Ok(bytes) => assert!(
                *bytes == expected,
                "{file}: a read broken halfway returned {} bytes that are not the file ({} expected)",
                bytes.len(),
                expected.len()
            ),
        }
        assert!(took < OP_LIMIT, "{file}: {took:?}");
        // Whatever was fetched before the failure must not be served as the whole file.
        // The cuts made the server look unreachable: reads fail at once (EIO) until the
        // next connection attempt, at most 5 s (the backoff) later, finds it back.
        let deadline = Instant::now() + Duration::from_secs(20);
        let again = loop {
            match read(dir.join(file)).0 {
                Ok(bytes) => break bytes,
                Err(e) if e.raw_os_error() == Some(libc::EIO) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => panic!("{file} after the cuts: {e}"),
            }
        };
        assert!(
            again == expected,
            "{file} after the cuts: {} bytes, {} expected",
            again.len(),
            expected.len()
        );
    }
    process.assert_healthy(&mount);
}

#[test]
fn a_cut_during_a_listing_is_retried_and_the_listing_is_complete() {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    fixture::fill_bulk(&dovecot, "alice", "Big", 3000, 5, 1_500).unwrap();
    let mut client = dovecot.client("alice").unwrap();
    let expected: BTreeSet<u32> = server_mailbox(&mut client, "Big").into_keys().collect();
    let proxy = Proxy::start(dovecot.imaps_addr(), ProxyOptions::default()).unwrap();
    let (mount, process) = mount_via(&dovecot, &proxy, "10", &[]);

    // Measure the listing, then slow the link so that it takes about three seconds.
    let before = proxy.bytes_from_server();
    assert_eq!(uids(&list(mount.join("Big")).0.unwrap()), expected);
    let listing_bytes = proxy.bytes_from_server() - before;
    std::thread::sleep(LISTING_FRESH);
    proxy.set_trickle(Some(listing_bytes / 3 + 1));
    let path = mount.join("Big");
    let lister = std::thread::spawn(move || list(path));
    std::thread::sleep(Duration::from_millis(1200));
    proxy.cut_all();
    let (first, _) = lister.join().unwrap();
    proxy.set_trickle(None);
    if let Ok(names) = &first {
        assert_eq!(
            uids(names),
            expected,
            "a listing across the cut is incomplete"
        );
        assert_eq!(names.len(), expected.len(), "duplicate names");
    } else {
        assert!(
            matches!(errno(&first), Some(libc::EIO | libc::ETIMEDOUT)),
            "{first:?}"
        );
    }
    std::thread::sleep(LISTING_FRESH);
    let (again, _) = list(mount.join("Big"));
    assert_eq!(uids(&again.unwrap()), expected);
    process.assert_healthy(&mount);
}

/// Where a message (known by its exact bytes) is on the server: (mailbox, UID) pairs.
fn places(client: &mut Session, mailboxes: &[&str], raw: &[u8]) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for mailbox in mailboxes {
        for (uid, (_, bytes)) in server_mailbox(client, mailbox) {
            if bytes == raw {
                out.push((mailbox.to_string(), uid));
            }
        }
    }
    out
}

/// Moves messages with `mv` and cuts the connection at points spread over the time a move
/// takes: whatever `mv` says, each message ends up in exactly one mailbox, in `Dst` if `mv`
/// succeeded, and the mount then shows what the server has.
#[test]
fn a_cut_during_mv_leaves_each_message_in_exactly_one_mailbox() {
    // Cut points spread over the whole move: one of them, now and then, lands inside the
    // server's MOVE, between its copy and its expunge.
    const COUNT: usize = 13;
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    fixture::fill_bulk(&dovecot, "alice", "Src", COUNT, 11, 1_500).unwrap();
    let mut client = dovecot.client("alice").unwrap();
    fixture::create_mailbox(&mut client, "Dst").unwrap();
    let messages: Vec<fixture::BulkMessage> = (0..COUNT)
        .map(|i| fixture::bulk_message(11, i, 1_500))
        .collect();
    // 100 ms each way: a move is several round trips, so a cut can land between any two.
    let proxy = Proxy::start(
        dovecot.imaps_addr(),
        ProxyOptions {
            delay_each_way: Duration::from_millis(100),
            ..ProxyOptions::default()
        },
    )
    .unwrap();
    let (mount, process) = mount_via(&dovecot, &proxy, "5", &[]);

    let mv = |i: usize, cut_after: Option<Duration>| {
        std::thread::sleep(LISTING_FRESH);
        // A fresh listing, so that each move starts from a live connection.
        assert!(list(mount.join("Src")).0.is_ok());
        let dir = mount.message_dir("Src", &messages[i].subject);
        let target = mount.join("Dst");
        let start = Instant::now();
        let mover = std::thread::spawn(move || {
            run(&["mv", dir.to_str().unwrap(), target.to_str().unwrap()])
        });
        if let Some(at) = cut_after {
            std::thread::sleep(at);
            proxy.cut_all();
        }
        let out = mover.join().unwrap();
        (out, start.elapsed())
    };

    let (baseline, took) = mv(0, None);
    assert!(
        baseline.status.success(),
        "{}",
        String::from_utf8_lossy(&baseline.stderr)
    );
    let mut outcomes = Vec::new();
    for (i, message) in messages.iter().enumerate().skip(1) {
        let cut_after = took.mul_f64(i as f64 / (COUNT - 1) as f64 * 1.1);
        let (out, _) = mv(i, Some(cut_after));
        // A cut that made the mount think the server gone queues the move (disconnected
        // mode) and `mv` succeeds: wait until the queue is replayed before asking the server.
        wait_until_nothing_pending(&mount);
        let found = places(&mut client, &["Src", "Dst"], &message.raw);
        outcomes.push(format!(
            "cut at {cut_after:?}: mv {} -> {found:?}",
            if out.status.success() { "ok" } else { "failed" }
        ));
        assert_eq!(found.len(), 1, "message {i} after a cut: {outcomes:#?}");
        if out.status.success() {
            assert_eq!(found[0].0, "Dst", "mv succeeded but: {outcomes:#?}");
        }
    }
    // Nothing lost or duplicated, and the mount shows exactly what the server has.
    std::thread::sleep(LISTING_FRESH);
    let src: BTreeSet<u32> = server_mailbox(&mut client, "Src").into_keys().collect();
    let dst: BTreeSet<u32> = server_mailbox(&mut client, "Dst").into_keys().collect();
    assert_eq!(src.len() + dst.len(), COUNT, "{outcomes:#?}");
    assert_eq!(uids(&list(mount.join("Src")).0.unwrap()), src);
    assert_eq!(uids(&list(mount.join("Dst")).0.unwrap()), dst);
    process.assert_healthy(&mount);
}

#[test]
fn a_server_restart_under_a_live_mount_is_survived() {
    let mut dovecot = dovecot_with_samples();
    let mut client = dovecot.client("alice").unwrap();
    let before = server_mailbox(&mut client, "INBOX");
    drop(client);
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&["--timeout", TIMEOUT])
        .mount();
    let process = Imapfs::of(&mount);
    let plain = sample("plain");
    let attachments = sample("attachments");
    let plain_dir = mount.message_dir("INBOX", &plain.subject);
    assert_eq!(read(plain_dir.join("message.eml")).0.unwrap(), plain.raw);

    dovecot.restart().unwrap();
    std::thread::sleep(LISTING_FRESH);
    // The first use of the dead connections may fail; it must not hang or be wrong.
    let (first, took) = list(mount.join("INBOX"));
    match &first {
        Ok(names) => assert_eq!(uids(names), before.keys().copied().collect()),
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}"),
    }
    assert!(took < OP_LIMIT);
    // The next ones work without a remount.
    let (names, _) = list(mount.join("INBOX"));
    assert_eq!(uids(&names.unwrap()), before.keys().copied().collect());
    let dir = mount.message_dir("INBOX", &attachments.subject);
    let (name, bytes) = &attachments.attachments[0];
    assert_eq!(&read(dir.join(name)).0.unwrap(), bytes);
    assert_eq!(read(plain_dir.join("message.eml")).0.unwrap(), plain.raw);
    // Reading changed nothing on the server.
    let mut client = dovecot.client("alice").unwrap();
    assert!(server_mailbox(&mut client, "INBOX") == before);
    process.assert_healthy(&mount);
}

// ---- another client changes the mailbox under the mount -----------------------------------

/// Reads through a handle opened earlier.
fn read_handle(mut file: fs::File, what: &str) -> io::Result<Vec<u8>> {
    within(OP_LIMIT, what, move || {
        let mut out = Vec::new();
        io::Read::read_to_end(&mut file, &mut out).map(|_| out)
    })
    .0
}

/// Fails unless `got` is one of the allowed errors or exactly `old` (the bytes of that same
/// message, still cached); never anything else, such as another message's bytes.
fn assert_gone_or_same(what: &str, got: &io::Result<Vec<u8>>, allowed: &[i32], old: &[u8]) {
    match got {
        Ok(bytes) => assert!(
            bytes == old,
            "{what}: read {:?}, which is not this message",
            String::from_utf8_lossy(bytes)
        ),
        Err(e) => assert!(
            e.raw_os_error().is_some_and(|c| allowed.contains(&c)),
            "{what}: {e}, expected one of {allowed:?}"
        ),
    }
}

#[test]
fn a_recreated_mailbox_never_shows_old_content_under_new_names() {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    let mut client = dovecot.client("alice").unwrap();
    fixture::create_mailbox(&mut client, "Box").unwrap();
    let old_subjects = ["Same subject", "Old two", "Old three"];
    let new_subjects = ["Same subject", "New two", "New three"];
    for (i, subject) in old_subjects.iter().enumerate() {
        let raw = small_message(subject, &format!("old{i}"));
        assert_eq!(
            fixture::append(&mut client, "Box", &raw, &[]).unwrap(),
            i as u32 + 1
        );
    }
    // STATUS, not EXAMINE: Dovecot disconnects a client that deletes its selected mailbox.
    let validity = |c: &mut Session| c.status("Box", "(UIDVALIDITY)").unwrap().uid_validity;
    let old_validity = validity(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let process = Imapfs::of(&mount);
    let box_dir = mount.join("Box");
    assert_eq!(
        list(box_dir.clone()).0.unwrap(),
        ["1 Same subject", "2 Old two", "3 Old three"]
    );
    // UID 1 is read (and cached); UIDs 2 and 3 are only opened.
    let one = box_dir.join("1 Same subject");
    assert_eq!(
        read(one.join("message.eml")).0.unwrap(),
        small_message("Same subject", "old0")
    );
    assert_eq!(
        read(one.join("body.txt")).0.unwrap(),
        small_body("Same subject", "old0")
    );
    let open = |p: PathBuf| {
        within(OP_LIMIT, "open", move || fs::File::open(p))
            .0
            .unwrap()
    };
    let h1 = open(one.join("message.eml"));
    let h2 = open(box_dir.join("2 Old two/message.eml"));
    let h3 = open(box_dir.join("3 Old three/body.txt"));

    client.delete("Box").unwrap();
    fixture::create_mailbox(&mut client, "Box").unwrap();
    for (i, subject) in new_subjects.iter().enumerate() {
        let raw = small_message(subject, &format!("new{i}"));
        assert_eq!(
            fixture::append(&mut client, "Box", &raw, &[]).unwrap(),
            i as u32 + 1
        );
    }
    let new_validity = validity(&mut client);
    assert_ne!(old_validity, new_validity, "the server kept UIDVALIDITY");
    std::thread::sleep(LISTING_FRESH);

    assert_eq!(
        list(box_dir.clone()).0.unwrap(),
        ["1 Same subject", "2 New two", "3 New three"]
    );
    // Same UID, same name, new mailbox: the new bytes, never the cached old ones.
    assert_eq!(
        String::from_utf8_lossy(&read(one.join("message.eml")).0.unwrap()),
        String::from_utf8_lossy(&small_message("Same subject", "new0"))
    );
    assert_eq!(
        String::from_utf8_lossy(&read(one.join("body.txt")).0.unwrap()),
        String::from_utf8_lossy(&small_body("Same subject", "new0"))
    );
    assert_eq!(
        read(box_dir.join("2 New two/body.txt")).0.unwrap(),
        small_body("New two", "new1")
    );
    assert_eq!(
        errno(&read(box_dir.join("2 Old two/message.eml")).0),
        Some(libc::ENOENT)
    );
    // Handles opened on the old mailbox: ESTALE or ENOENT, or that very message's bytes.
    let stale = [libc::ESTALE, libc::ENOENT];
    let old1 = small_message("Same subject", "old0");
    let old2 = small_message("Old two", "old1");
    let old3 = small_body("Old three", "old2");
    assert_gone_or_same("old handle of UID 1", &read_handle(h1, "h1"), &stale, &old1);
    assert_gone_or_same("old handle of UID 2", &read_handle(h2, "h2"), &stale, &old2);
    assert_gone_or_same("old handle of UID 3", &read_handle(h3, "h3"), &stale, &old3);
    process.assert_healthy(&mount);
}

/// Like [`assert_gone_or_same`], collecting the violation instead of failing at once.
fn check_gone_or_same(
    problems: &mut Vec<String>,
    what: &str,
    got: &io::Result<Vec<u8>>,
    allowed: &[i32],
    old: &[u8],
) {
    match got {
        Ok(bytes) if bytes == old => {}
        Ok(bytes) => problems.push(format!(
            "{what}: read {:?}, which is not this message",
            String::from_utf8_lossy(bytes)
        )),
        Err(e) if e.raw_os_error().is_some_and(|c| allowed.contains(&c)) => {}
        Err(e) => problems.push(format!("{what}: {e}, expected one of {allowed:?}")),
    }
}

/// Dovecot answers the first FETCH of a message that another session just removed with
/// `BODY[...] NIL` and a tagged OK (RFC 2180 §4.1.3), and only then reports the EXPUNGE.
#[test]
fn messages_deleted_or_moved_by_another_client_give_enoent() {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    let mut client = dovecot.client("alice").unwrap();
    fixture::create_mailbox(&mut client, "Box").unwrap();
    fixture::create_mailbox(&mut client, "Other").unwrap();
    let subjects = ["Read one", "Moved two", "Expunged three", "Kept four"];
    let raws: Vec<Vec<u8>> = subjects
        .iter()
        .enumerate()
        .map(|(i, s)| small_message(s, &format!("tok{i}")))
        .collect();
    for raw in &raws {
        fixture::append(&mut client, "Box", raw, &[]).unwrap();
    }
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let process = Imapfs::of(&mount);
    let box_dir = mount.join("Box");
    assert_eq!(list(box_dir.clone()).0.unwrap().len(), 4);
    let dir = |i: usize| box_dir.join(format!("{} {}", i + 1, subjects[i]));
    assert_eq!(read(dir(0).join("message.eml")).0.unwrap(), raws[0]);
    let open = |p: PathBuf| {
        within(OP_LIMIT, "open", move || fs::File::open(p))
            .0
            .unwrap()
    };
    let moved_body = open(dir(1).join("body.txt"));
    let moved_eml = open(dir(1).join("message.eml"));
    let expunged_eml = open(dir(2).join("message.eml"));
    let moved_dir = open(dir(1));

    client.select("Box").unwrap();
    client.uid_mv("2", "Other").unwrap();
    client
        .uid_store("1,3", "+FLAGS.SILENT (\\Deleted)")
        .unwrap();
    client.uid_expunge("1,3").unwrap();
    let flags_before = server_flags(&mut client, "Other");

    let mut problems = Vec::new();
    let gone = [libc::ENOENT];
    let reads = [
        (
            "body.txt of the moved message, open handle",
            read_handle(moved_body, "moved body"),
            small_body(subjects[1], "tok1"),
        ),
        (
            "message.eml of the moved message, open handle",
            read_handle(moved_eml, "moved eml"),
            raws[1].clone(),
        ),
        (
            "message.eml of an expunged message, open handle",
            read_handle(expunged_eml, "expunged eml"),
            raws[2].clone(),
        ),
        (
            "message.eml of an expunged message read before",
            read(dir(0).join("message.eml")).0,
            raws[0].clone(),
        ),
    ];
    for (what, got, old) in &reads {
        check_gone_or_same(&mut problems, what, got, &gone, old);
    }
    // Setting flags on a message that is no longer there must fail, not pretend.
    let (set, _) = within(OP_LIMIT, "fsetxattr", move || {
        set_flags_on(&moved_dir, "\\Flagged")
    });
    if errno(&set) != Some(libc::ENOENT) {
        problems.push(format!(
            "setting flags through a handle on a message another client moved away: {set:?}"
        ));
    }
    if server_flags(&mut client, "Other") != flags_before {
        problems.push("the moved message's flags changed".into());
    }
    // The one left still works, and a new listing shows only it.
    let out = run(&[
        "setfattr",
        "-n",
        "user.imap.flags",
        "-v",
        "\\Flagged",
        dir(3).to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(LISTING_FRESH);
    assert_eq!(list(box_dir.clone()).0.unwrap(), ["4 Kept four"]);
    for i in 0..3 {
        assert_eq!(
            errno(&read(dir(i).join("message.eml")).0),
            Some(libc::ENOENT)
        );
    }
    let other = list(mount.join("Other")).0.unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(
        read(mount.join("Other").join(&other[0]).join("message.eml"))
            .0
            .unwrap(),
        raws[1]
    );
    assert!(problems.is_empty(), "{problems:#?}");
    process.assert_healthy(&mount);
}

/// `fsetxattr(user.imap.flags)` on an open message directory.
fn set_flags_on(dir: &fs::File, flags: &str) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let name = c"user.imap.flags";
    // SAFETY: a valid fd, a NUL-terminated name, and a buffer of the length given.
    let rc = unsafe {
        libc::fsetxattr(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags.as_ptr().cast(),
            flags.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A listing of the target that was already on its way when `mv` finished was fetched
/// before the MOVE: it must not count as fresh, or the moved message is missing from `ls`.
#[test]
fn a_listing_in_flight_during_mv_does_not_hide_the_moved_message() {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    fixture::fill_bulk(&dovecot, "alice", "Big", 2000, 7, 1_500).unwrap();
    let mut client = dovecot.client("alice").unwrap();
    fixture::create_mailbox(&mut client, "Src").unwrap();
    let raw = small_message("Moving in", "mov1");
    fixture::append(&mut client, "Src", &raw, &[]).unwrap();
    let proxy = Proxy::start(dovecot.imaps_addr(), ProxyOptions::default()).unwrap();
    // A full relisting raced by a move: without the watcher, which would report the flag
    // change below, and without the disk cache, which would bring Big up to date by the
    // change (CONDSTORE) instead of listing it again.
    let (mount, process) = mount_via(&dovecot, &proxy, "10", &["--no-watch", "--no-disk-cache"]);
    assert_eq!(list(mount.join("Src")).0.unwrap(), ["1 Moving in"]);
    let before = proxy.bytes_from_server();
    assert_eq!(list(mount.join("Big")).0.unwrap().len(), 2000);
    let listing_bytes = proxy.bytes_from_server() - before;
    // Another client's flag change makes Big's next listing a full one (an unchanged
    // mailbox is only EXAMINEd again, which is too quick to race with).
    client.select("Big").unwrap();
    client.uid_store("1", "+FLAGS.SILENT (\\Flagged)").unwrap();
    std::thread::sleep(LISTING_FRESH);

    // A relisting of Big that takes about eight seconds (long enough that a move made
    // meanwhile on a loaded machine is still well inside it), and a move into Big. The
    // relisting is a background prefetch's: an `ls` of Big would hold Big's lock in the
    // kernel while it lists (imapfs lists on READDIR), and the kernel makes a rename into
    // Big wait for that.
    proxy.set_trickle(Some(listing_bytes / 8 + 1));
    let out = run(&[
        "setfattr",
        "-n",
        "user.imapfs.prefetch",
        "-v",
        "headers",
        mount.join("Big").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    std::thread::sleep(Duration::from_millis(500));
    let before_mv = proxy.bytes_from_server();
    let out = run(&[
        "mv",
        mount.join("Src/1 Moving in").to_str().unwrap(),
        mount.join("Big").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let during_mv = proxy.bytes_from_server() - before_mv;
    let prefetch = |mount: &Path| {
        let out = run(&[
            "getfattr",
            "--only-values",
            "-n",
            "user.imapfs.prefetch",
            mount.join("Big").to_str().unwrap(),
        ]);
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(
        during_mv < listing_bytes / 2 && !prefetch(&mount.path).starts_with("done"),
        "the listing was not in flight during the move ({during_mv} bytes moved meanwhile)"
    );
    proxy.set_trickle(None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !prefetch(&mount.path).starts_with("done") {
        assert!(
            Instant::now() < deadline,
            "prefetch: {}",
            prefetch(&mount.path)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // At once: within the second that imapfs trusts a listing.
    let (after, _) = list(mount.join("Big"));
    let after = after.unwrap();
    assert!(
        server_mailbox(&mut client, "Big")
            .values()
            .any(|(_, b)| *b == raw),
        "the move did not happen"
    );
    let moved: Vec<&String> = after.iter().filter(|n| n.ends_with(" Moving in")).collect();
    assert_eq!(
        moved.len(),
        1,
        "ls Big right after a successful mv into it and a listing taken meanwhile: {} \
         entries, the moved message {}",
        after.len(),
        if moved.is_empty() { "missing" } else { "twice" },
    );
    assert_eq!(
        read(mount.join("Big").join(moved[0]).join("message.eml"))
            .0
            .unwrap(),
        raw
    );
    process.assert_healthy(&mount);
}

// ---- secrets and permissions ----------------------------------------------------------------

#[test]
fn the_password_never_shows_in_the_log_cmdline_or_environment() {
    const PASSWORD: &str = "Pw-7f3c91e2-correct-horse";
    let dovecot = Dovecot::start(DovecotOptions {
        users: vec![("alice".into(), PASSWORD.into())],
        ..DovecotOptions::default()
    })
    .unwrap();
    let mut client = dovecot.client("alice").unwrap();
    fixture::append_samples(&mut client, &fixture::sample_messages()).unwrap();
    let proxy = Proxy::start(dovecot.imaps_addr(), ProxyOptions::default()).unwrap();
    let (mount, process) = mount_via(&dovecot, &proxy, TIMEOUT, &["--debug"]);

    // Work that logs a lot: listings, reads, a reconnect (a second LOGIN) and a timeout.
    let plain = sample("plain");
    let dir = mount.message_dir("INBOX", &plain.subject);
    assert_eq!(read(dir.join("message.eml")).0.unwrap(), plain.raw);
    proxy.cut_all();
    let listed = list(mount.join("Archive/2023")).0;
    assert!(
        listed.is_ok(),
        "after the cut: {listed:?}\nimapfs log:\n{}",
        mount.log()
    );
    let base64 = mount.message_dir("INBOX", &sample("base64").subject);
    proxy.set_stalled(true);
    assert!(read(base64.join("message.eml")).0.is_err());
    proxy.set_stalled(false);
    assert!(read(base64.join("message.eml")).0.is_ok());
    // ENOENT is logged at debug level: proof that debug lines reach the log.
    assert_eq!(
        errno(&read(mount.join("INBOX/999 missing")).0),
        Some(libc::ENOENT)
    );

    let log = mount.log();
    assert!(
        log.contains("DEBUG") && log.contains("logged in"),
        "the log is not at debug level: {log}"
    );
    let plain_auth = base64_of(format!("\0alice\0{PASSWORD}").as_bytes());
    for (what, text) in [
        ("the log file", log.into_bytes()),
        ("stderr", process.take_stderr().into_bytes()),
        ("/proc/<pid>/cmdline", process.cmdline_and_environ().0),
        ("/proc/<pid>/environ", process.cmdline_and_environ().1),
    ] {
        for secret in [PASSWORD, plain_auth.as_str()] {
            assert!(
                !text.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "the password is in {what}"
            );
        }
    }
    let environ = process.cmdline_and_environ().1;
    assert!(
        !environ
            .split(|&b| b == 0)
            .any(|var| var.starts_with(b"IMAPFS_PASSWORD=") && var.len() > 16),
        "IMAPFS_PASSWORD still set in /proc/<pid>/environ"
    );
    process.assert_healthy(&mount);
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn files_are_0600_and_directories_0700_owned_by_the_mounting_user() {
    use std::os::unix::fs::PermissionsExt;
    let dovecot = dovecot_with_samples();
    let mount = MountSpec::new(&dovecot, "alice").mount();
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut checked = (0, 0);
    let mut pending = vec![(mount.path.clone(), 0)];
    while let Some((path, depth)) = pending.pop() {
        let meta = fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        assert_eq!((meta.uid(), meta.gid()), (uid, gid), "{}", path.display());
        if meta.is_dir() {
            assert_eq!(mode, 0o700, "{}: {mode:o}", path.display());
            checked.0 += 1;
            if depth < 4 {
                for entry in fs::read_dir(&path).unwrap() {
                    pending.push((entry.unwrap().path(), depth + 1));
                }
            }
        } else {
            assert!(
                meta.is_file(),
                "{} is neither file nor directory",
                path.display()
            );
            assert_eq!(mode, 0o600, "{}: {mode:o}", path.display());
            checked.1 += 1;
        }
    }
    assert!(checked.0 > 10 && checked.1 > 20, "checked only {checked:?}");
    // Without --allow-other, another user cannot look in even where the path lets them.
    let parent = mount.path.parent().unwrap();
    fs::set_permissions(parent, fs::Permissions::from_mode(0o755)).unwrap();
    let out = run(&[
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "ls",
        mount.path.to_str().unwrap(),
    ]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "another user could list the mount: {out:?}"
    );
}

/// `opendir` snapshots a directory's entries with their inode numbers; a `mv` then hands the
/// moved message's directory inode to the target mailbox. Reading the rest of the snapshot
/// must not put that same directory inode back under the old mailbox: the kernel allows one
/// parent per directory, and answers the conflict with ESTALE (as the soak shows).
#[test]
fn a_readdir_begun_before_a_mv_never_shows_one_directory_in_two_mailboxes() {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    let mut client = dovecot.client("alice").unwrap();
    fixture::create_mailbox(&mut client, "A").unwrap();
    fixture::create_mailbox(&mut client, "B").unwrap();
    for i in 0..3 {
        let raw = small_message(&soak_subject(i), &soak_token(i));
        fixture::append(&mut client, "A", &raw, &[]).unwrap();
    }
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let process = Imapfs::of(&mount);
    assert_eq!(list(mount.join("A")).0.unwrap().len(), 3);
    assert!(list(mount.join("B")).0.unwrap().is_empty());

    let snapshot = fs::read_dir(mount.join("A")).unwrap();
    let (old, new) = (mount.join("A/2 Soak 01"), mount.join("B/2 Soak 01"));
    let out = run(&[
        "mv",
        old.to_str().unwrap(),
        mount.join("B").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let seen: Vec<_> = snapshot.map(|e| e.map(|e| e.file_name())).collect();
    assert!(seen.iter().all(Result::is_ok), "{seen:?}");

    // What a tool does next with the names it just listed: look at them.
    let stale = fs::metadata(&old);
    let moved = fs::metadata(&new).expect("the moved message under the name mv gave it");
    assert!(
        errno(&stale) == Some(libc::ENOENT) || stale.as_ref().is_ok_and(|m| m.ino() != moved.ino()),
        "A/2 Soak 01 is the moved directory itself (inode {}), now in two mailboxes: {stale:?}",
        moved.ino()
    );
    let expected = small_message(&soak_subject(1), &soak_token(1));
    assert_eq!(read(new.join("message.eml")).0.unwrap(), expected);
    std::thread::sleep(LISTING_FRESH);
    let b = list(mount.join("B")).0.unwrap();
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(
        read(mount.join("B").join(&b[0]).join("message.eml"))
            .0
            .unwrap(),
        expected
    );
    process.assert_healthy(&mount);
}
