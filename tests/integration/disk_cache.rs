//! The disk cache and offline use (issue 12), on a real mount: a warm remount costs almost
//! nothing; damaged cache files are dropped and fetched again; the cache keeps its bound;
//! a recreated mailbox never serves old content; with the server stopped the mount serves
//! what it holds, fails the rest at once, queues changes, and comes back online by itself.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fixture::proxy::{Proxy, ProxyOptions};

use super::support::*;

/// A cache directory that outlives the mounts of one test.
struct CacheDir {
    _dir: tempfile::TempDir,
    path: PathBuf,
    arg: String,
}

fn cache_dir() -> CacheDir {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache");
    let arg = format!("--cache-dir={}", path.display());
    CacheDir {
        _dir: dir,
        path,
        arg,
    }
}

/// Every `message.eml` under `dir`, read whole, in name order.
fn read_all_messages(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            (name, fs::read(p.join("message.eml")).unwrap())
        })
        .collect()
}

fn state(mount: &Mount) -> String {
    let out = sh(&format!(
        "getfattr --only-values -n user.imapfs.state '{}'",
        mount.path.display()
    ));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The bytes of the content files under the cache directory (their sizes, holes and all).
fn blob_bytes(cache: &Path) -> u64 {
    blob_files(cache)
        .iter()
        .map(|f| fs::metadata(f).unwrap().len())
        .sum()
}

fn blob_files(cache: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in fs::read_dir(cache.join("blobs")).unwrap() {
        for f in fs::read_dir(dir.unwrap().path()).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out.sort();
    out
}

#[test]
fn a_warm_remount_moves_almost_nothing() {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    fixture::fill_bulk(&dovecot, "alice", "INBOX", 5000, 3, 3_000).unwrap();
    let proxy = Proxy::start(dovecot.imaps_addr(), ProxyOptions::default()).unwrap();
    let cache = cache_dir();

    let mount = MountSpec::new(&dovecot, "alice")
        .via_proxy(&proxy)
        .args(&[&cache.arg])
        .mount();
    let inbox = mount.join("INBOX");
    proxy.reset_counters();
    let listed = sh(&format!("ls -l '{}' | wc -l", inbox.display()));
    let first_ls = proxy.bytes_from_server();
    proxy.reset_counters();
    let first = read_all_messages(&inbox);
    let first_read = proxy.bytes_from_server();
    assert_eq!(first.len(), 5000);
    assert!(mount.terminate(), "clean unmount");

    let mount = MountSpec::new(&dovecot, "alice")
        .via_proxy(&proxy)
        .args(&[&cache.arg])
        .mount();
    let inbox = mount.join("INBOX");
    proxy.reset_counters();
    let relisted = sh(&format!("ls -l '{}' | wc -l", inbox.display()));
    let warm_ls = proxy.bytes_from_server();
    assert_eq!(relisted.stdout, listed.stdout);
    assert!(
        warm_ls < 10_000,
        "warm ls -l moved {warm_ls} bytes (cold: {first_ls})"
    );
    proxy.reset_counters();
    let again = read_all_messages(&inbox);
    let warm_read = proxy.bytes_from_server();
    assert!(again == first, "the warm read differs from the first");
    assert!(
        warm_read * 100 < first_read,
        "warm read of every message.eml moved {warm_read} bytes (first: {first_read})"
    );
    println!("cold ls {first_ls} B, warm ls {warm_ls} B; first read {first_read} B, warm read {warm_read} B");
}

#[test]
fn damaged_cache_files_are_dropped_and_fetched_again() {
    let dovecot = dovecot_with_samples();
    let cache = cache_dir();
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    let want = read_all_messages(&mount.join("INBOX"));
    assert!(mount.terminate());

    // A flipped byte, a file cut short, and then the index gone.
    let files = blob_files(&cache.path);
    assert!(files.len() >= 2, "{files:?}");
    let mut bytes = fs::read(&files[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    fs::write(&files[0], bytes).unwrap();
    let cut = fs::OpenOptions::new().write(true).open(&files[1]).unwrap();
    cut.set_len(3).unwrap();
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    assert!(read_all_messages(&mount.join("INBOX")) == want);
    let log = mount.log();
    assert!(log.contains("dropped a damaged chunk"), "{log}");
    assert!(mount.terminate());

    fs::remove_file(cache.path.join("index.redb")).unwrap();
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    assert!(read_all_messages(&mount.join("INBOX")) == want);
    assert!(mount.terminate());
}

#[test]
fn the_cache_keeps_its_bound_while_a_walk_reads_more() {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    fixture::fill_bulk(&dovecot, "alice", "INBOX", 300, 5, 20_000).unwrap();
    let cache = cache_dir();
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg, "--disk-cache-size=1M", "--cache-size=1M"])
        .mount();
    let read = read_all_messages(&mount.join("INBOX"));
    let total: usize = read.iter().map(|(_, b)| b.len()).sum();
    assert!(total > 4 << 20, "the walk read {total} bytes");
    assert!(mount.terminate());
    let held = blob_bytes(&cache.path);
    assert!(
        held <= 1 << 20,
        "the disk cache holds {held} bytes over its 1 MiB bound"
    );
    assert!(held > 256 << 10, "the disk cache holds only {held} bytes");
}

#[test]
fn a_recreated_mailbox_never_serves_old_content() {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    let mut client = dovecot.client("alice").unwrap();
    client.create("Box").unwrap();
    let old = b"From: a@example.com\r\nSubject: old\r\n\r\nthe old message\r\n";
    fixture::append(&mut client, "Box", old, &[]).unwrap();
    let cache = cache_dir();
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    let first = read_all_messages(&mount.join("Box"));
    assert!(first[0].1 == old);
    assert!(mount.terminate());

    client.delete("Box").unwrap();
    // Dovecot's UIDVALIDITY is the time in seconds: let it move on.
    std::thread::sleep(Duration::from_millis(1100));
    client.create("Box").unwrap();
    let new = b"From: b@example.com\r\nSubject: new\r\n\r\nthe new message, longer\r\n";
    fixture::append(&mut client, "Box", new, &[]).unwrap();
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    let second = read_all_messages(&mount.join("Box"));
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].0, first[0].0.replace("old", "new"));
    assert!(second[0].1 == new);
}

#[test]
fn offline_the_mount_serves_the_cache_and_comes_back_by_itself() {
    let mut dovecot = dovecot_with_samples();
    let cache = cache_dir();
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    let inbox = mount.join("INBOX");
    // Read everything but one message's message.eml, and list the other mailboxes.
    let mut dirs: Vec<PathBuf> = fs::read_dir(&inbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    let (skipped, read) = dirs.split_first().unwrap();
    let mut want = Vec::new();
    for d in read {
        want.push((d.clone(), fs::read(d.join("message.eml")).unwrap()));
    }
    fs::read_dir(skipped).unwrap().for_each(drop);
    let root: Vec<String> = fs::read_dir(&mount.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(state(&mount), "online");
    assert!(mount.terminate());

    dovecot.stop();
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    assert!(
        state(&mount).starts_with("offline since "),
        "{}",
        state(&mount)
    );
    let mut again: Vec<String> = fs::read_dir(&mount.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    again.sort();
    let mut root = root;
    root.sort();
    assert_eq!(again, root);
    for (dir, bytes) in &want {
        let path = mount
            .path
            .join(dir.strip_prefix(&mount.path).unwrap_or(dir));
        let rel = dir.strip_prefix(inbox.parent().unwrap()).unwrap();
        let offline = fs::read(mount.path.join(rel).join("message.eml"))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(&offline == bytes, "{}", rel.display());
    }
    // Not cached: EIO at once.
    let rel = skipped.strip_prefix(inbox.parent().unwrap()).unwrap();
    let started = Instant::now();
    let err = fs::read(mount.path.join(rel).join("message.eml")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // A change is queued for the server (disconnected.rs tests what becomes of it).
    let flags = sh(&format!(
        "setfattr -n user.imap.flags -v '\\Flagged' '{}' 2>&1",
        mount
            .path
            .join(want[0].0.strip_prefix(inbox.parent().unwrap()).unwrap())
            .display()
    ));
    assert!(
        flags.status.success(),
        "{}",
        String::from_utf8_lossy(&flags.stdout)
    );

    // The server comes back: the mount goes online by itself and shows new mail.
    dovecot.restart().unwrap();
    let mut client = dovecot.client("alice").unwrap();
    let fresh = b"From: c@example.com\r\nSubject: arrived while offline\r\n\r\nhello\r\n";
    fixture::append(&mut client, "INBOX", fresh, &[]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while state(&mount) != "online" {
        assert!(Instant::now() < deadline, "still {}", state(&mount));
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let names: Vec<String> = fs::read_dir(mount.join("INBOX"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        if names.iter().any(|n| n.ends_with("arrived while offline")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new message never showed: {names:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let now = fs::read(mount.path.join(rel).join("message.eml")).unwrap();
    assert!(!now.is_empty());
}

#[test]
fn a_server_killed_mid_session_leaves_the_mount_serving_the_cache() {
    let mut dovecot = dovecot_with_samples();
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let want = read_all_messages(&mount.join("INBOX"));
    dovecot.stop();
    let started = Instant::now();
    let got = read_all_messages(&mount.join("INBOX"));
    assert!(got == want);
    let out = sh(&format!("ls -l '{}'", mount.path.display()));
    assert!(out.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(state(&mount).starts_with("offline") || state(&mount) == "online");
}

#[test]
fn a_second_mount_of_the_account_runs_without_the_busy_cache() {
    let dovecot = dovecot_with_samples();
    let cache = cache_dir();
    let first = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    let second = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    assert!(read_all_messages(&second.join("INBOX")) == read_all_messages(&first.join("INBOX")));
    let log = second.log();
    assert!(log.contains("in use by another imapfs"), "{log}");
    assert!(log.contains("without a disk cache"), "{log}");
}

/// `umount` returns before imapfs has flushed its cache and exited: a mount started at once
/// (`umount && imapfs ...`, a script, a changed option) waits for the cache rather than run
/// without it for its whole life, as a bug hunt saw.
#[test]
fn a_mount_right_after_umount_gets_the_disk_cache() {
    let dovecot = dovecot_with_samples();
    let cache = cache_dir();
    let first = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    let want = read_all_messages(&first.join("INBOX"));
    let out = sh(&format!("umount '{}'", first.path.display()));
    assert!(out.status.success(), "{out:?}");
    let second = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    assert!(read_all_messages(&second.join("INBOX")) == want);
    let log = second.log();
    assert!(!log.contains("in use by another imapfs"), "{log}");
    drop(first);
}

/// A disk cache given to a second account (one `--cache-dir` for two) is not used: a bug
/// hunt found it mounted offline as the other account's mail (whose offline changes would
/// then go to this server). Online it runs without it, with a warning; offline it fails.
#[test]
fn another_accounts_disk_cache_is_not_used() {
    let dovecot = dovecot_with_samples();
    let cache = cache_dir();
    {
        let alice = MountSpec::new(&dovecot, "alice")
            .args(&[&cache.arg])
            .mount();
        assert!(read_all_messages(&alice.join("INBOX")).len() > 5);
    }
    let bob = MountSpec::new(&dovecot, "bob").args(&[&cache.arg]).mount();
    let log = bob.log();
    assert!(
        log.contains("belongs to alice@") && log.contains("without a disk cache"),
        "{log}"
    );
    drop(bob);
    let dir = tempfile::tempdir().unwrap();
    let out = run_imapfs(
        &[
            "-f",
            "--offline",
            &cache.arg,
            &dovecot.source("bob"),
            dir.path().to_str().unwrap(),
        ],
        Some("bob-pass"),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("belongs to alice@"),
        "{out:?}"
    );
}

/// The message directories under `inbox` whose message.eml holds `needle`, by name./// The message directories under `inbox` whose message.eml holds `needle`, by name.
fn grep_hits(inbox: &Path, needle: &str) -> Vec<String> {
    let out = sh(&format!(
        "grep -rl --include=message.eml -e '{needle}' '{}'",
        inbox.display()
    ));
    let mut hits: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            Path::new(l)
                .parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default()
        })
        .collect();
    hits.sort();
    hits
}

#[test]
fn after_a_prefetch_an_offline_mount_greps_every_message() {
    let mut dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    fixture::fill_bulk(&dovecot, "alice", "INBOX", 400, 13, 6_000).unwrap();
    let cache = cache_dir();
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    let want = grep_hits(&mount.join("INBOX"), "bulk-0000");
    assert!(!want.is_empty());
    // A fresh cache: nothing read yet; prefetch it all in the background.
    assert!(mount.terminate());
    fs::remove_dir_all(&cache.path).unwrap();
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    let inbox = mount.join("INBOX");
    let set = sh(&format!(
        "setfattr -n user.imapfs.prefetch -v 1 '{}'",
        inbox.display()
    ));
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let progress = loop {
        let out = sh(&format!(
            "getfattr --only-values -n user.imapfs.prefetch '{}'",
            inbox.display()
        ));
        let progress = String::from_utf8_lossy(&out.stdout).to_string();
        if progress.starts_with("done") || progress.starts_with("failed") {
            break progress;
        }
        assert!(Instant::now() < deadline, "{progress}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        progress.starts_with("done: 400 of 400 messages"),
        "{progress}"
    );
    assert!(mount.terminate());

    dovecot.stop();
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    assert!(state(&mount).starts_with("offline"), "{}", state(&mount));
    assert_eq!(grep_hits(&mount.join("INBOX"), "bulk-0000"), want);
}

/// `imapfs prefetch OPTIONS SOURCE MAILBOXES` with the account's password, to completion:
/// whether it succeeded, its standard output and its standard error.
fn prefetch_command(
    dovecot: &Dovecot,
    cache: &CacheDir,
    options: &[&str],
    mailboxes: &[&str],
) -> (bool, String, String) {
    let ca = dovecot.ca_file().to_str().unwrap().to_owned();
    let source = dovecot.source("alice");
    let mut args = vec!["prefetch", &cache.arg, "--ca-file", &ca];
    args.extend_from_slice(options);
    args.push(&source);
    args.extend_from_slice(mailboxes);
    let out = run_imapfs(&args, Some(dovecot.password("alice")));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The exact byte count the prefetch summary gives for what came from the server.
fn bytes_from_server(summary: &str) -> u64 {
    summary
        .split("from the server: ")
        .nth(1)
        .and_then(|rest| rest.split('(').nth(1))
        .and_then(|n| n.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {summary:?}"))
}

#[test]
fn the_prefetch_command_fills_the_cache_resumes_and_an_offline_mount_greps_it() {
    let mut dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    fixture::fill_bulk(&dovecot, "alice", "INBOX", 300, 11, 5_000).unwrap();
    let cache = cache_dir();

    // A name the server does not have: an error before anything is fetched.
    let (ok, _, err) = prefetch_command(&dovecot, &cache, &[], &["Nowhere"]);
    assert!(!ok && err.contains("no mailbox \"Nowhere\""), "{err}");
    assert!(
        err.contains("INBOX"),
        "the error lists the mailboxes: {err}"
    );

    let (ok, out, err) = prefetch_command(&dovecot, &cache, &[], &["INBOX"]);
    assert!(ok, "{err}");
    // The password was read while no other thread ran, so it left /proc/PID/environ.
    assert!(!err.contains("could not be erased"), "{err}");
    assert!(
        out.starts_with("prefetched 1 of 1 mailboxes: 300 messages (0 cached already)"),
        "{out}"
    );
    // Off a terminal, progress comes as plain lines, the last one the mailbox's end.
    assert!(
        err.contains("[1/1] INBOX: done, 300 of 300 messages"),
        "{err}"
    );
    // Run again: everything is cached already, and no content is fetched.
    let (ok, out, err) = prefetch_command(&dovecot, &cache, &[], &["INBOX"]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("prefetched 1 of 1 mailboxes: 300 messages (300 cached already), 0 B"),
        "{out}"
    );

    // Offline, every message of INBOX greps whole.
    let want = {
        let mount = MountSpec::new(&dovecot, "alice")
            .args(&["--no-disk-cache"])
            .mount();
        grep_hits(&mount.join("INBOX"), "bulk-0000")
    };
    assert!(!want.is_empty());
    dovecot.stop();
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    assert!(state(&mount).starts_with("offline"), "{}", state(&mount));
    assert_eq!(grep_hits(&mount.join("INBOX"), "bulk-0000"), want);
}

#[test]
fn the_prefetch_command_with_headers_only_fetches_no_content() {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    fixture::fill_bulk(&dovecot, "alice", "INBOX", 200, 11, 20_000).unwrap();
    let cache = cache_dir();
    let (ok, out, err) = prefetch_command(&dovecot, &cache, &["--headers-only"], &[]);
    assert!(ok, "{err}");
    assert!(out.starts_with("prefetched "), "{out}");
    // 200 messages of ~20 KB: 4 MB of content, none of it fetched; structures and
    // listings are a small fraction of that.
    let received = bytes_from_server(&out);
    assert!(
        received < 400_000,
        "headers only moved {received} bytes: {out}"
    );
    assert_eq!(blob_bytes(&cache.path), 0, "no content is cached");
}

/// Every file under `dir`, in path order: its path below `dir`, the size `stat` shows
/// before anything is read, and its bytes.
fn every_file(dir: &Path) -> Vec<(String, u64, Vec<u8>)> {
    let mut paths = Vec::new();
    all_files(dir, &mut paths);
    paths.sort();
    let sizes: Vec<u64> = paths
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .collect();
    paths
        .iter()
        .zip(sizes)
        .map(|(p, size)| {
            let name = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            let bytes = fs::read(p).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, size, bytes)
        })
        .collect()
}

/// Every file of INBOX as a mount without a disk cache shows it (see [`every_file`]).
fn inbox_online(dovecot: &Dovecot) -> Vec<(String, u64, Vec<u8>)> {
    let mount = MountSpec::new(dovecot, "alice")
        .args(&["--no-disk-cache"])
        .mount();
    every_file(&mount.join("INBOX"))
}

/// With the server stopped, a mount on `cache` is offline and shows INBOX as `want`: the
/// same names, the same sizes before anything is read, the same bytes.
fn assert_offline_inbox_shows(
    dovecot: &Dovecot,
    cache: &CacheDir,
    want: &[(String, u64, Vec<u8>)],
) {
    let mount = MountSpec::new(dovecot, "alice").args(&[&cache.arg]).mount();
    assert!(state(&mount).starts_with("offline"), "{}", state(&mount));
    let got = std::panic::catch_unwind(|| every_file(&mount.join("INBOX")))
        .unwrap_or_else(|_| panic!("the offline walk failed; the mount's log:\n{}", mount.log()));
    let names = |files: &[(String, u64, Vec<u8>)]| -> Vec<(String, u64)> {
        files.iter().map(|(n, s, _)| (n.clone(), *s)).collect()
    };
    assert_eq!(names(&got), names(want), "names and sizes before reading");
    for ((name, _, bytes), (_, _, expected)) in got.iter().zip(want) {
        assert!(bytes == expected, "{name}: other bytes offline");
    }
}

#[test]
fn after_a_prefetch_every_part_of_every_message_reads_offline_as_online() {
    let mut dovecot = dovecot_with_samples();
    let want = inbox_online(&dovecot);
    for part in ["résumé.pdf", "dataset.bin", "budget.csv", "body.html"] {
        assert!(
            want.iter().any(|(name, ..)| name.ends_with(part)),
            "the samples have a {part}"
        );
    }
    let cache = cache_dir();
    let (ok, _, err) = prefetch_command(&dovecot, &cache, &[], &["INBOX"]);
    assert!(ok, "{err}");

    // The prefetch fetched whole messages, not their parts: every attachment, text body
    // and forwarded message is taken out of its message, with its exact size at once.
    dovecot.stop();
    assert_offline_inbox_shows(&dovecot, &cache, &want);
}

#[test]
fn a_part_of_a_message_read_whole_moves_no_content_again() {
    let dovecot = dovecot_with_samples();
    let cache = cache_dir();
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    let message = mount.join("INBOX/8 Large attachment (10 MB)");
    let whole = fs::read(message.join("message.eml")).unwrap();
    assert!(whole.len() > 10 << 20);
    let before = stats(&mount).1;
    let data = fs::read(message.join("dataset.bin")).unwrap();
    let moved = stats(&mount).1 - before;
    assert_eq!(data.len(), 10 << 20);
    assert!(
        moved < 64 << 10,
        "the 10 MiB attachment of a message read whole moved {moved} bytes"
    );
    // What the server would have sent: the same bytes through a mount that never read the
    // message whole.
    let other = MountSpec::new(&dovecot, "alice")
        .args(&["--no-disk-cache"])
        .mount();
    let expected = fs::read(other.join("INBOX/8 Large attachment (10 MB)/dataset.bin")).unwrap();
    assert!(data == expected, "other bytes than the server's");
}

/// With a fresh cache, reads every message.eml of INBOX whole (`read_messages_whole`),
/// stops the server, and checks that an offline mount shows INBOX as `want`.
fn read_whole_then_offline_shows(dovecot: &mut Dovecot, want: &[(String, u64, Vec<u8>)]) {
    let cache = cache_dir();
    read_messages_whole(dovecot, &cache, want);
    dovecot.stop();
    assert_offline_inbox_shows(dovecot, &cache, want);
}

/// Reads every message.eml of INBOX (as `want` lists it) by its path, on a mount with
/// `cache`: the message directories are never listed, so no structure is fetched or kept.
fn read_messages_whole(dovecot: &Dovecot, cache: &CacheDir, want: &[(String, u64, Vec<u8>)]) {
    let mount = MountSpec::new(dovecot, "alice").args(&[&cache.arg]).mount();
    let inbox = mount.join("INBOX");
    for (name, _, bytes) in want {
        if name.ends_with("/message.eml") && name.matches('/').count() == 1 {
            assert!(fs::read(inbox.join(name)).unwrap() == *bytes, "{name}");
        }
    }
    assert!(mount.terminate(), "clean unmount");
}

#[test]
fn messages_read_whole_but_never_opened_as_directories_show_their_parts_offline() {
    let mut dovecot = dovecot_with_samples();
    let want = inbox_online(&dovecot);
    read_whole_then_offline_shows(&mut dovecot, &want);
}

/// Parts whose `BINARY.SIZE` Dovecot 2.3 misstates (short, below zero; quoted-printable
/// ones over 1 MiB among them), in messages read whole: offline, where the messages
/// answer for the server, each shows the size an online mount shows before it is read,
/// and the same bytes.
#[test]
fn parts_of_misstated_size_in_messages_read_whole_show_exact_sizes_offline() {
    let mut dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    let mut client = dovecot.client("alice").unwrap();
    for (_, _, raw) in &super::read_path::misstated_sizes() {
        fixture::append(&mut client, "INBOX", raw, &[]).unwrap();
    }
    let want = inbox_online(&dovecot);
    let sizes: Vec<u64> = want.iter().map(|(_, size, _)| *size).collect();
    assert!(
        sizes.contains(&400_000),
        "the large quoted-printable parts: {sizes:?}"
    );
    read_whole_then_offline_shows(&mut dovecot, &want);
}

/// A mailbox directory is dated by its newest message once listed. Before a mount lists
/// it, the listing a disk cache kept from an earlier mount dates it, so its mtime does not
/// move when the listing comes (`rsync -a` sees no change, `ls -lt` of the root orders
/// mailboxes by their mail).
#[test]
fn a_mailbox_is_dated_by_its_kept_listing_before_it_is_listed() {
    let dovecot = dovecot_with_samples();
    let cache = cache_dir();
    let mtime = |p: &Path| fs::metadata(p).unwrap().modified().unwrap();
    let dated = {
        let mount = MountSpec::new(&dovecot, "alice")
            .args(&[&cache.arg])
            .mount();
        let inbox = mount.join("INBOX");
        let started = mtime(&inbox);
        assert!(fs::read_dir(&inbox).unwrap().count() > 0);
        // The kernel is told of the new date from a thread of imapfs's own.
        let deadline = Instant::now() + Duration::from_secs(10);
        let dated = loop {
            let now = mtime(&inbox);
            if now != started {
                break now;
            }
            assert!(
                Instant::now() < deadline,
                "INBOX kept the mount's start as its date"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(mount.terminate(), "clean unmount");
        dated
    };
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    let inbox = mount.join("INBOX");
    // In the mount's first moments the watcher's first report of the mailbox list can
    // race the lookup's LIST, and the directory shows the start (for at most 1 s, the
    // attribute lifetime of what is not known yet) until the list is held.
    let deadline = Instant::now() + Duration::from_secs(5);
    while mtime(&inbox) != dated && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        mtime(&inbox),
        dated,
        "the date before the listing\nimapfs log:\n{}",
        mount.log()
    );
    assert!(fs::read_dir(&inbox).unwrap().count() > 0);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(mtime(&inbox), dated, "the date after the listing");
}
