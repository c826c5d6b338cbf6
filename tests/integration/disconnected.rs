//! Disconnected changes (issue 13), on a real mount and a real Dovecot: changes made
//! offline show at once, are journaled, and reach the server when it is back, leaving the
//! server exactly as they imply; conflicts with another client give the documented result;
//! `kill -9` of imapfs, with changes queued or in the middle of a replay, loses nothing and
//! stores every new message exactly once.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::support::*;

/// A cache directory that outlives the mounts of one test.
struct CacheDir {
    _dir: tempfile::TempDir,
    arg: String,
}

fn cache_dir() -> CacheDir {
    let dir = tempfile::tempdir().unwrap();
    let arg = format!("--cache-dir={}", dir.path().join("cache").display());
    CacheDir { _dir: dir, arg }
}

fn xattr(path: &Path, name: &str) -> String {
    let out = sh(&format!(
        "getfattr --only-values -n {name} '{}'",
        path.display()
    ));
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn state(mount: &Mount) -> String {
    xattr(&mount.path, "user.imapfs.state").trim().to_string()
}

/// The changes waiting, one a line.
fn pending(mount: &Mount) -> Vec<String> {
    xattr(&mount.path, "user.imapfs.pending")
        .lines()
        .map(str::to_string)
        .collect()
}

fn set_flags(dir: &Path, flags: &str) {
    let out = sh(&format!(
        "setfattr -n user.imap.flags -v '{flags}' '{}' 2>&1",
        dir.display()
    ));
    assert!(
        out.status.success(),
        "setfattr {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Unmounts cleanly (SIGTERM), saying why not.
fn stop(mount: Mount) {
    let log = mount.log.clone();
    let started = Instant::now();
    let clean = mount.terminate();
    assert!(
        clean,
        "imapfs did not exit cleanly within {:?}:\n{}",
        started.elapsed(),
        fs::read_to_string(log).unwrap_or_default()
    );
}

/// Waits until `done` holds, polling; fails after `secs` seconds with `what`.
fn wait_until(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Lists what the tests touch, so the disk cache holds it for the offline mount.
fn warm(mount: &Mount) {
    let out = sh(&format!(
        "ls -l '{0}' '{0}/INBOX' '{0}/INBOX'/* '{0}/Archive/2023' '{0}/Trash' '{0}/Reçus' '{0}/Reçus'/* >/dev/null",
        mount.path.display()
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One message as the server holds it: flags (sorted) and bytes.
type Held = (Vec<String>, Vec<u8>);

/// Every mailbox on the server, by wire name: UID → message.
fn snapshot(dovecot: &Dovecot) -> BTreeMap<String, BTreeMap<u32, Held>> {
    let mut client = dovecot.client("alice").unwrap();
    let mut out = BTreeMap::new();
    let listed = client.list(Some(""), Some("*")).unwrap();
    let mut selectable = Vec::new();
    let mut directories = Vec::new();
    for n in listed.iter() {
        // `\Noselect` parents have no messages (EXAMINE of one is refused).
        match format!("{:?}", n.attributes()).contains("NoSelect") {
            true => directories.push(n.name().to_string()),
            false => selectable.push(n.name().to_string()),
        }
    }
    drop(listed);
    for name in directories {
        out.insert(name, BTreeMap::new());
    }
    for name in selectable {
        let messages = server_mailbox(&mut client, &name)
            .into_iter()
            .map(|(uid, (mut flags, bytes))| {
                flags.sort();
                (uid, (flags, bytes))
            })
            .collect();
        out.insert(name, messages);
    }
    let _ = client.logout();
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The UID of the message in `messages` whose bytes hold `needle`.
fn uid_with(messages: &BTreeMap<u32, Held>, needle: &str) -> u32 {
    let found: Vec<u32> = messages
        .iter()
        .filter(|(_, (_, bytes))| contains(bytes, needle))
        .map(|(uid, _)| *uid)
        .collect();
    assert_eq!(found.len(), 1, "{needle:?} in {found:?}");
    found[0]
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

/// Names that carry a provisional UID (4026531840 and up).
fn provisional(names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter(|n| {
            n.split(' ')
                .next()
                .and_then(|u| u.parse::<u64>().ok())
                .is_some_and(|u| u >= 0xF000_0000)
        })
        .cloned()
        .collect()
}

fn flags(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|f| f.to_string()).collect();
    v.sort();
    v
}

#[test]
fn offline_changes_show_at_once_and_reach_the_server_when_it_is_back() {
    let mut dovecot = dovecot_with_samples();
    let cache = cache_dir();
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    warm(&mount);
    stop(mount);
    let before = snapshot(&dovecot);

    dovecot.stop();
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    assert!(state(&mount).starts_with("offline since "));
    assert!(pending(&mount).is_empty());
    // Flags replaced: \Seen off, \Flagged and $offline on.
    let plain = mount.message_dir("INBOX", "Plain text greeting");
    set_flags(&plain, "\\Flagged $offline");
    assert_eq!(
        xattr(&plain, "user.imap.flags").trim(),
        "\\Flagged $offline"
    );
    // A move, a delete (to Trash), a new message, a new mailbox with a message in it.
    let base64 = mount.message_dir("INBOX", "Base64 body");
    let archive = mount.join("Archive/2023");
    fs::rename(&base64, archive.join(base64.file_name().unwrap())).unwrap();
    let qp = mount.message_dir("INBOX", "Quoted-printable: Café crème");
    let rm = sh(&format!("rm -r '{}' 2>&1", qp.display()));
    assert!(
        rm.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&rm.stdout),
        mount.log()
    );
    fs::write(
        mount.join("INBOX/offline-note.txt"),
        b"written while offline\n",
    )
    .unwrap();
    fs::create_dir(mount.join("Offline")).unwrap();
    fs::write(mount.join("Offline/inside.txt"), b"inside a new mailbox\n").unwrap();

    // Shown at once.
    let inbox = names(&mount.join("INBOX"));
    assert!(
        !inbox.iter().any(|n| n.ends_with("Base64 body")),
        "{inbox:?}"
    );
    assert!(!inbox
        .iter()
        .any(|n| n.ends_with("Quoted-printable: Café crème")));
    assert!(inbox.iter().any(|n| n == "offline-note.txt"), "{inbox:?}");
    let moved = names(&archive);
    assert!(
        moved.iter().any(|n| n.ends_with("Base64 body")),
        "{moved:?}"
    );
    assert!(names(&mount.path).contains(&"Offline".to_string()));
    assert!(names(&mount.join("Offline")).contains(&"inside.txt".to_string()));
    let queued = pending(&mount);
    assert_eq!(queued.len(), 6, "{queued:#?}");
    for (line, what) in queued.iter().zip([
        "flags INBOX UID",
        "move INBOX UID",
        "move INBOX UID",
        "append",
        "create Offline",
        "append",
    ]) {
        assert!(line.contains(what), "{line} lacks {what}");
    }
    assert!(!dovecot.is_running(), "nothing could be sent");

    // The server is back: the journal is replayed, and the mount is online.
    dovecot.restart().unwrap();
    wait_until(120, "the replay", || {
        state(&mount) == "online" && pending(&mount).is_empty()
    });
    let after = snapshot(&dovecot);
    let mut expected = before.clone();
    let inbox = expected.get_mut("INBOX").unwrap();
    let plain_uid = uid_with(inbox, "Subject: Plain text greeting");
    inbox.get_mut(&plain_uid).unwrap().0 = flags(&["\\Flagged", "$offline"]);
    let base64_msg = inbox
        .remove(&uid_with(inbox, "Subject: Base64 body"))
        .unwrap();
    let qp_msg = inbox
        .remove(&uid_with(
            inbox,
            "Subject: Quoted-printable: =?UTF-8?Q?Caf=C3=A9_cr=C3=A8me?=",
        ))
        .unwrap();
    // New messages are compared without their UIDs.
    let strip = |m: &BTreeMap<u32, Held>| -> Vec<Held> {
        let mut v: Vec<Held> = m.values().cloned().collect();
        v.sort();
        v
    };
    let mut got = after.clone();
    let new_in_inbox: Vec<Held> = got["INBOX"]
        .iter()
        .filter(|(uid, _)| !before["INBOX"].contains_key(uid))
        .map(|(_, m)| m.clone())
        .collect();
    assert_eq!(new_in_inbox.len(), 1, "one new message in INBOX");
    assert!(contains(
        &new_in_inbox[0].1,
        "File stored by imapfs: offline-note.txt"
    ));
    got.get_mut("INBOX")
        .unwrap()
        .retain(|uid, _| before["INBOX"].contains_key(uid));
    let offline_box = got.remove("Offline").expect("the mailbox made offline");
    assert_eq!(offline_box.len(), 1);
    assert!(contains(
        &offline_box.values().next().unwrap().1,
        "File stored by imapfs: inside.txt"
    ));
    for (name, gained) in [("Archive/2023", &base64_msg), ("Trash", &qp_msg)] {
        let mut want = strip(&expected[name]);
        want.push(gained.clone());
        want.sort();
        assert_eq!(strip(&got[name]), want, "{name}");
        got.remove(name);
        expected.remove(name);
    }
    assert_eq!(got, expected, "nothing else changed");

    // The mount shows the server's state: real UIDs only.
    wait_until(30, "provisional names to go", || {
        provisional(&names(&mount.join("INBOX"))).is_empty()
            && provisional(&names(&archive)).is_empty()
    });
    assert!(names(&archive).iter().any(|n| n.ends_with("Base64 body")));
}

#[test]
fn conflicts_with_another_client_give_the_documented_result() {
    let dovecot = dovecot_with_samples();
    let cache = cache_dir();
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    warm(&mount);
    stop(mount);
    let before = snapshot(&dovecot);

    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg, "--offline"])
        .mount();
    // Plain text greeting has \Seen: add $mine. Another client adds $theirs meanwhile.
    set_flags(
        &mount.message_dir("INBOX", "Plain text greeting"),
        "\\Seen $mine",
    );
    // Moved here, expunged there: dropped.
    let base64 = mount.message_dir("INBOX", "Base64 body");
    let archive = mount.join("Archive/2023");
    fs::rename(&base64, archive.join(base64.file_name().unwrap())).unwrap();
    // Reçus is recreated there: the flag change on its old UID is cancelled, the new
    // message still goes in.
    set_flags(&mount.message_dir("Reçus", "Café ouvert"), "\\Flagged");
    fs::write(
        mount.join("Reçus/kept.txt"),
        b"an APPEND is never cancelled\n",
    )
    .unwrap();
    // Created here and there: merged.
    fs::create_dir(mount.join("Shared")).unwrap();
    assert_eq!(pending(&mount).len(), 5, "{:#?}", pending(&mount));
    stop(mount);

    let mut client = dovecot.client("alice").unwrap();
    let inbox = &before["INBOX"];
    let plain_uid = uid_with(inbox, "Subject: Plain text greeting");
    let base64_uid = uid_with(inbox, "Subject: Base64 body");
    client.select("INBOX").unwrap();
    client
        .uid_store(plain_uid.to_string(), "+FLAGS.SILENT ($theirs)")
        .unwrap();
    client
        .uid_store(base64_uid.to_string(), "+FLAGS.SILENT (\\Deleted)")
        .unwrap();
    client.uid_expunge(base64_uid.to_string()).unwrap();
    let recus = fixture::encode_mailbox_name("Reçus");
    client.delete(&recus).unwrap();
    client.create(&recus).unwrap();
    client.create("Shared").unwrap();
    fixture::append(
        &mut client,
        "Shared",
        b"Subject: theirs\r\n\r\nfrom elsewhere\r\n",
        &[],
    )
    .unwrap();
    let _ = client.logout();
    let changed = snapshot(&dovecot);

    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    wait_until(60, "the replay", || {
        state(&mount) == "online" && pending(&mount).is_empty()
    });
    let after = snapshot(&dovecot);
    let mut expected = changed.clone();
    expected
        .get_mut("INBOX")
        .unwrap()
        .get_mut(&plain_uid)
        .unwrap()
        .0 = flags(&["\\Seen", "$theirs", "$mine"]);
    // The APPEND went into the new Reçus; nothing else of the offline changes did.
    let new_recus = &after[&recus];
    assert_eq!(new_recus.len(), 1, "{:?}", new_recus.keys());
    assert!(contains(
        &new_recus.values().next().unwrap().1,
        "File stored by imapfs: kept.txt"
    ));
    expected.insert(recus.clone(), new_recus.clone());
    assert_eq!(after, expected, "exactly the implied changes");
    let log = mount.log();
    assert!(log.contains("offline change dropped"), "{log}");
    assert!(log.contains("merged into it"), "{log}");
}

/// A Dovecot whose INBOX holds one message, `Plain text greeting` (`\\Seen`).
fn small_dovecot() -> Dovecot {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    let mut client = dovecot.client("alice").unwrap();
    let raw = b"From: a@example.com\r\nSubject: Plain text greeting\r\n\r\nhello\r\n";
    fixture::append(&mut client, "INBOX", raw, &["\\Seen"]).unwrap();
    let _ = client.logout();
    dovecot
}

/// Lists INBOX and its messages, so the disk cache holds them.
fn warm_inbox(mount: &Mount) {
    let out = sh(&format!(
        "ls -l '{0}' '{0}/INBOX' '{0}/INBOX'/* >/dev/null",
        mount.path.display()
    ));
    assert!(out.status.success());
}

/// `n` distinct RFC 5322 messages, written as files `m<i>.eml` into `dir`.
fn write_messages(dir: &Path, n: usize, body_bytes: usize) {
    for i in 0..n {
        let body = "x".repeat(76) + "\r\n";
        let body = body.repeat(body_bytes / 78 + 1);
        let raw = format!(
            "From: a@example.com\r\nSubject: replay {i}\r\nMessage-ID: <replay-{i}@imapfs.test>\r\n\r\n{body}"
        );
        fs::write(dir.join(format!("m{i}.eml")), raw).unwrap();
    }
}

/// How many messages of INBOX have each `replay <i>` subject.
fn replay_counts(dovecot: &Dovecot, n: usize) -> Vec<usize> {
    let mut client = dovecot.client("alice").unwrap();
    let inbox = server_mailbox(&mut client, "INBOX");
    let _ = client.logout();
    (0..n)
        .map(|i| {
            let subject = format!("Subject: replay {i}\r\n");
            inbox
                .values()
                .filter(|(_, bytes)| contains(bytes, &subject))
                .count()
        })
        .collect()
}

fn kill_9(mount: Mount) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(mount.pid() as i32, libc::SIGKILL) };
    drop(mount);
}

#[test]
fn kill_9_with_changes_queued_loses_nothing() {
    let dovecot = small_dovecot();
    let cache = cache_dir();
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    warm_inbox(&mount);
    stop(mount);
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg, "--offline"])
        .mount();
    write_messages(&mount.join("INBOX"), 5, 1000);
    let plain = mount.message_dir("INBOX", "Plain text greeting");
    set_flags(&plain, "\\Seen \\Answered");
    assert_eq!(pending(&mount).len(), 6);
    kill_9(mount);
    assert_eq!(replay_counts(&dovecot, 5), [0; 5]);

    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    wait_until(60, "the replay", || {
        state(&mount) == "online" && pending(&mount).is_empty()
    });
    assert_eq!(replay_counts(&dovecot, 5), [1; 5]);
    let mut client = dovecot.client("alice").unwrap();
    let inbox = server_mailbox(&mut client, "INBOX");
    let uid = uid_with(&inbox, "Subject: Plain text greeting");
    let mut got = inbox[&uid].0.clone();
    got.sort();
    assert_eq!(got, flags(&["\\Answered", "\\Seen"]));
    stop(mount);
    // Once more: nothing is sent again.
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    wait_until(60, "online", || state(&mount) == "online");
    assert_eq!(replay_counts(&dovecot, 5), [1; 5]);
}

#[test]
fn kill_9_in_the_middle_of_a_replay_stores_every_append_exactly_once() {
    let dovecot = small_dovecot();
    let cache = cache_dir();
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    warm_inbox(&mount);
    stop(mount);
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg, "--offline"])
        .mount();
    const N: usize = 20;
    write_messages(&mount.join("INBOX"), N, 100_000);
    assert_eq!(pending(&mount).len(), N);
    stop(mount);

    // The replay runs through a slow link, and imapfs is killed once it has begun.
    let proxy = Proxy::start(
        dovecot.imaps_addr(),
        ProxyOptions {
            bandwidth_bytes_per_sec: Some(400_000),
            ..ProxyOptions::default()
        },
    )
    .unwrap();
    let mount = MountSpec::new(&dovecot, "alice")
        .via_proxy(&proxy)
        .args(&[&cache.arg])
        .mount();
    wait_until(120, "the first APPEND", || {
        replay_counts(&dovecot, N).iter().any(|&c| c > 0)
    });
    kill_9(mount);
    // What the dead process had written still travels the slow link, and the server may
    // complete an APPEND from it: a restart cannot tell that from an APPEND that never
    // came, so it waits until that connection is gone (as a restart by hand does).
    wait_until(60, "the killed mount's connections to end", || {
        proxy.open_connections() == 0
    });
    let partial = replay_counts(&dovecot, N);
    println!("stored by the killed mount: {partial:?}");
    assert!(partial.iter().all(|&c| c <= 1), "{partial:?}");

    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    wait_until(120, "the rest of the replay", || {
        state(&mount) == "online" && pending(&mount).is_empty()
    });
    assert_eq!(replay_counts(&dovecot, N), [1; N]);
}

#[test]
fn a_refused_append_stays_pending_with_its_error_and_its_bytes() {
    let dovecot = Dovecot::start(DovecotOptions {
        quota_bytes: Some(200_000),
        ..DovecotOptions::default()
    })
    .unwrap();
    let cache = cache_dir();
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    fs::read_dir(mount.join("INBOX")).unwrap().for_each(drop);
    stop(mount);
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg, "--offline"])
        .mount();
    write_messages(&mount.join("INBOX"), 1, 500_000);
    write_messages_named(&mount.join("INBOX"), "small", 1000);
    stop(mount);

    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    wait_until(60, "the replay", || {
        state(&mount) == "online" && pending(&mount).iter().all(|l| l.contains("refused"))
    });
    let left = pending(&mount);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].contains("append \"replay 0\""), "{}", left[0]);
    assert!(left[0].contains("refused: over quota"), "{}", left[0]);
    assert_eq!(replay_counts(&dovecot, 1), [0]);
    let mut client = dovecot.client("alice").unwrap();
    let inbox = server_mailbox(&mut client, "INBOX");
    assert_eq!(inbox.len(), 1, "the small one went after the refused one");
    // The bytes wait in the cache directory's outbox.
    let outbox: Vec<PathBuf> = fs::read_dir(
        cache
            .arg
            .strip_prefix("--cache-dir=")
            .map(|p| Path::new(p).join("outbox"))
            .unwrap(),
    )
    .unwrap()
    .map(|e| e.unwrap().path())
    .collect();
    assert_eq!(outbox.len(), 1);
    assert!(fs::metadata(&outbox[0]).unwrap().len() > 500_000);
    // It can be tried again on demand; the server refuses it again, and it stays.
    let retry = |value: &str| {
        sh(&format!(
            "setfattr -n user.imapfs.pending -v {value} '{}'",
            mount.path.display()
        ))
        .status
        .success()
    };
    assert!(!retry("bogus"));
    assert!(retry("retry"));
    wait_until(60, "the retry", || {
        mount
            .log()
            .matches("the server refused an offline change")
            .count()
            >= 2
    });
    assert_eq!(pending(&mount).len(), 1);
    assert_eq!(replay_counts(&dovecot, 1), [0]);
}

fn write_messages_named(dir: &Path, name: &str, body_bytes: usize) {
    let raw = format!(
        "From: a@example.com\r\nSubject: {name}\r\nMessage-ID: <{name}@imapfs.test>\r\n\r\n{}\r\n",
        "y".repeat(body_bytes)
    );
    fs::write(dir.join(format!("{name}.eml")), raw).unwrap();
}

/// A Dovecot (announcing `capabilities`, or its own list) whose INBOX holds `one`
/// (`\Seen \Answered`), `two` (`\Flagged`) and `three` (`$Label`).
fn flags_dovecot(capabilities: Option<String>) -> Dovecot {
    let dovecot = Dovecot::start(DovecotOptions {
        imap_capability: capabilities,
        ..DovecotOptions::default()
    })
    .unwrap();
    let mut client = dovecot.client("alice").unwrap();
    for (subject, flags) in [
        ("one", &["\\Seen", "\\Answered"][..]),
        ("two", &["\\Flagged"]),
        ("three", &["$Label"]),
    ] {
        let raw = format!("From: a@example.com\r\nSubject: {subject}\r\n\r\n{subject}\r\n");
        fixture::append(&mut client, "INBOX", raw.as_bytes(), flags).unwrap();
    }
    let _ = client.logout();
    dovecot
}

/// Every message of INBOX on the server: UID → flags, sorted.
fn inbox_flags(dovecot: &Dovecot) -> BTreeMap<u32, Vec<String>> {
    let mut client = dovecot.client("alice").unwrap();
    let flags = server_flags(&mut client, "INBOX")
        .into_iter()
        .map(|(uid, mut f)| {
            f.sort();
            (uid, f)
        })
        .collect();
    let _ = client.logout();
    flags
}

/// `$mine` added to `one` offline while another client adds `$theirs` to it and takes
/// `\Answered` (which the mount left alone) off; then the server is back for the mount.
/// Returns the replaying mount, once it is online with nothing pending, and UID of `one`.
fn flag_changed_here_and_there(dovecot: &Dovecot) -> (Mount, u32) {
    let cache = cache_dir();
    let mount = MountSpec::new(dovecot, "alice").args(&[&cache.arg]).mount();
    warm_inbox(&mount);
    stop(mount);
    let before = inbox_flags(dovecot);
    let one = *before.keys().next().unwrap();

    let offline = MountSpec::new(dovecot, "alice")
        .args(&[&cache.arg, "--offline"])
        .mount();
    set_flags(
        &offline.message_dir("INBOX", "one"),
        "\\Seen \\Answered $mine",
    );
    let queued = pending(&offline);
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert!(
        queued[0].contains(&format!("flags INBOX UID {one}: +$mine")),
        "{}",
        queued[0]
    );
    // Another client, while the mount is offline.
    let mut client = dovecot.client("alice").unwrap();
    client.select("INBOX").unwrap();
    client
        .uid_store(one.to_string(), "+FLAGS.SILENT ($theirs)")
        .unwrap();
    client
        .uid_store(one.to_string(), "-FLAGS.SILENT (\\Answered)")
        .unwrap();
    let _ = client.logout();
    assert_eq!(inbox_flags(dovecot)[&one], flags(&["\\Seen", "$theirs"]));
    stop(offline);

    let mount = MountSpec::new(dovecot, "alice").args(&[&cache.arg]).mount();
    wait_until(60, "the replay", || {
        state(&mount) == "online" && pending(&mount).is_empty()
    });
    let mut expected = before;
    expected.insert(one, flags(&["\\Seen", "$theirs", "$mine"]));
    assert_eq!(
        inbox_flags(dovecot),
        expected,
        "both changes kept, nothing else changed\n{}",
        mount.log()
    );
    (mount, one)
}

/// The flag commands the mount sent for `uid`, without their tags.
fn stores_of(mount: &Mount, uid: u32) -> Vec<String> {
    super::servers::sent_lines(mount)
        .into_iter()
        .filter_map(|line| Some(line.split_once(' ')?.1.to_string()))
        .filter(|command| {
            command.starts_with(&format!("UID STORE {uid} "))
                || command.starts_with(&format!("UID FETCH {uid} "))
        })
        .collect()
}

#[test]
fn an_offline_flag_change_meets_another_clients_with_unchangedsince_and_is_merged() {
    let dovecot = flags_dovecot(None);
    let (mount, one) = flag_changed_here_and_there(&dovecot);
    let sent = stores_of(&mount, one);
    // Conditional on the HIGHESTMODSEQ last listed: MODIFIED. Then the message's flags
    // and MODSEQ, and nothing left to add but $mine, conditional on that MODSEQ.
    let since = |command: &str| -> u64 {
        let rest = command.split_once("(UNCHANGEDSINCE ").unwrap().1;
        rest.split_once(')').unwrap().0.parse().unwrap()
    };
    assert_eq!(sent.len(), 3, "{sent:#?}");
    assert!(
        sent[0].starts_with(&format!("UID STORE {one} (UNCHANGEDSINCE "))
            && sent[0].ends_with(") +FLAGS.SILENT ($mine)"),
        "{sent:#?}"
    );
    assert_eq!(sent[1], format!("UID FETCH {one} (FLAGS MODSEQ)"));
    assert!(
        sent[2].starts_with(&format!("UID STORE {one} (UNCHANGEDSINCE "))
            && sent[2].ends_with(") +FLAGS.SILENT ($mine)"),
        "{sent:#?}"
    );
    assert!(since(&sent[2]) > since(&sent[0]), "{sent:#?}");
    let log = mount.log();
    let conflict = log
        .lines()
        .find(|l| l.contains("another client changed the message meanwhile (MODIFIED)"))
        .unwrap_or_else(|| panic!("no conflict logged:\n{log}"));
    for part in [
        format!("uid={one}"),
        "mailbox=INBOX".to_string(),
        r#"add=["$mine"] remove=[]"#.to_string(),
    ] {
        assert!(conflict.contains(&part), "{part} in {conflict}");
    }
    // The flags before and the server's now, in the server's order.
    let listed = |field: &str| -> Vec<String> {
        let list = conflict.split_once(field).unwrap().1;
        let list = list.split_once(']').unwrap().0;
        let mut flags: Vec<String> = list
            .split(", ")
            .map(|f| f.trim_matches('"').replace("\\\\", "\\"))
            .collect();
        flags.sort();
        flags
    };
    assert_eq!(listed("base=Some(["), flags(&["\\Seen", "\\Answered"]));
    assert_eq!(listed("server=["), flags(&["\\Seen", "$theirs"]));
}

#[test]
fn without_condstore_an_offline_flag_change_goes_as_before() {
    let dovecot = flags_dovecot(Some(fixture::capabilities_without(&[
        "CONDSTORE",
        "QRESYNC",
    ])));
    let (mount, one) = flag_changed_here_and_there(&dovecot);
    assert_eq!(
        stores_of(&mount, one),
        [format!("UID STORE {one} +FLAGS.SILENT ($mine)")]
    );
    let log = mount.log();
    assert!(!log.contains("UNCHANGEDSINCE"), "{log}");
    assert!(!log.contains("MODIFIED"), "{log}");
}

/// The server goes away under a running mount and comes back. Meanwhile a message read
/// before and moved reads exactly from the disk cache (it was EIO: its bytes were kept
/// under its old UID), a message moves into a mailbox never listed (rename(2) was EIO,
/// the target name unknown), and once the replay placed them the mount shows each under
/// its real UID alone (their provisional entries stayed listed for good, reading short).
#[test]
fn moves_while_the_server_is_away_read_and_then_show_once() {
    let mut dovecot = dovecot_with_samples();
    let cache = cache_dir();
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&[&cache.arg])
        .mount();
    let plain = mount.message_dir("INBOX", "Plain text greeting");
    let eml = fs::read(plain.join("message.eml")).unwrap();
    let base64 = mount.message_dir("INBOX", "Base64 body");
    let archive = mount.join("Archive/2023");
    names(&archive);
    dovecot.stop();
    wait_until(30, "the mount to go offline", || {
        let _ = fs::read(base64.join("message.eml"));
        state(&mount).starts_with("offline")
    });
    fs::rename(&plain, archive.join(plain.file_name().unwrap())).unwrap();
    let never_listed = mount.join("Reçus");
    fs::rename(&base64, never_listed.join(base64.file_name().unwrap())).unwrap();
    let note = mount.join("INBOX/written-away.txt");
    fs::write(&note, b"written while the server was away\n").unwrap();
    // Read again from the cache, not from pages the kernel kept.
    sh("sync; echo 3 > /proc/sys/vm/drop_caches");
    let moved = names(&archive)
        .into_iter()
        .find(|n| n.ends_with("Plain text greeting"))
        .expect("shown moved");
    assert_eq!(
        fs::read(archive.join(&moved).join("message.eml")).unwrap(),
        eml
    );
    dovecot.restart().unwrap();
    wait_until(120, "the replay", || {
        state(&mount) == "online" && pending(&mount).is_empty()
    });
    wait_until(30, "one entry each, under its real UID", || {
        let shown = names(&archive);
        let plain: Vec<&String> = shown
            .iter()
            .filter(|n| n.ends_with("Plain text greeting"))
            .collect();
        let recus = names(&never_listed);
        provisional(&shown).is_empty()
            && plain.len() == 1
            && provisional(&recus).is_empty()
            && recus.iter().filter(|n| n.ends_with("Base64 body")).count() == 1
    });
    // The file written meanwhile reads, and takes more (it was ENOENT for minutes).
    assert_eq!(
        fs::read(&note).unwrap(),
        b"written while the server was away\n"
    );
    let mut more = fs::OpenOptions::new().append(true).open(&note).unwrap();
    std::io::Write::write_all(&mut more, b"and more\n").unwrap();
    drop(more);
    assert_eq!(
        fs::read(&note).unwrap(),
        b"written while the server was away\nand more\n"
    );
}
