//! The tools people point at a mount, run for real on a cold mount: tar, rsync, tail,
//! head, sha256sum, mmap, shells, dd, tee, Python, vim and GIO's trash. Every byte is
//! checked against an independent client's view of the server, and every exit status.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use mail_parser::{MessageParser, MimeHeaders};

use super::support::*;

/// A cold mount of a fresh Dovecot holding the sample corpus.
fn corpus_mount() -> (Dovecot, Mount) {
    let dovecot = dovecot_with_samples();
    let mount = MountSpec::new(&dovecot, "alice").mount();
    (dovecot, mount)
}

/// Quotes a path for `sh -c`.
fn q(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "'\\''"))
}

/// Runs a script that must succeed without a word on stderr.
fn run_clean(script: &str, mount: &Mount) -> Output {
    let out = sh(script);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "{script}\nexit {:?}\nstderr: {stderr}\nimapfs log tail:\n{}",
        out.status.code(),
        mount
            .log()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    out
}

/// What an independent client knows the mount must show for INBOX: for each message
/// directory name, the files whose exact bytes it can tell (message.eml from the server,
/// body.txt and the attachments from the corpus).
fn expected_inbox(mount: &Mount, dovecot: &Dovecot) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
    let mut client = dovecot.client("alice").unwrap();
    let server = server_mailbox(&mut client, "INBOX");
    let mut out = BTreeMap::new();
    // (A subject with `/` shows with `_`: those messages are left to other tests.)
    for sample in fixture::sample_messages()
        .into_iter()
        .filter(|s| s.mailbox == "INBOX" && !s.subject.contains('/'))
    {
        let dir = mount.message_dir("INBOX", &sample.subject);
        let uid: u32 = dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let mut files = BTreeMap::new();
        files.insert("message.eml".to_string(), server[&uid].1.clone());
        if let Some(body) = sample.body_file() {
            files.insert("body.txt".to_string(), body.into_bytes());
        }
        // Attachments of forwarded messages live one directory down; keep to the top.
        for (name, data) in &sample.attachments {
            if dir.join(name).exists() {
                files.insert(name.clone(), data.clone());
            }
        }
        out.insert(
            dir.file_name().unwrap().to_string_lossy().into_owned(),
            files,
        );
    }
    out
}

/// Every regular file under `root`, relative to it, with its bytes.
fn files_under(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// Checks a copy of INBOX (from tar or rsync) against what the server holds: every file
/// the independent client can tell exactly, and every other file as long as `stat` said.
fn check_copy(copy: &Path, mount: &Mount, dovecot: &Dovecot, tool: &str) {
    let copied = files_under(copy);
    assert!(!copied.is_empty(), "{tool} copied nothing");
    for (rel, bytes) in &copied {
        let original = mount.join("INBOX").join(rel);
        let size = fs::metadata(&original).unwrap().len();
        assert_eq!(
            bytes.len() as u64,
            size,
            "{tool}: {} against stat",
            rel.display()
        );
    }
    for (dir, files) in expected_inbox(mount, dovecot) {
        for (name, want) in files {
            let rel = Path::new(&dir).join(&name);
            let got = copied
                .get(&rel)
                .unwrap_or_else(|| panic!("{tool}: {} missing", rel.display()));
            assert!(*got == want, "{tool}: {} differs", rel.display());
        }
    }
}

#[test]
fn cold_tar_of_a_mailbox_is_exact_and_warns_of_nothing() {
    let (dovecot, mount) = corpus_mount();
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("inbox.tar");
    run_clean(
        &format!("tar cf {} -C {} INBOX", q(&archive), q(&mount.path)),
        &mount,
    );
    let out = work.path().join("out");
    fs::create_dir(&out).unwrap();
    run_clean(&format!("tar xf {} -C {}", q(&archive), q(&out)), &mount);
    check_copy(&out.join("INBOX"), &mount, &dovecot, "tar");
}

#[test]
fn cold_rsync_of_a_mailbox_is_exact_and_exits_0() {
    let (dovecot, mount) = corpus_mount();
    let work = tempfile::tempdir().unwrap();
    run_clean(
        &format!("rsync -a {}/ {}/", q(&mount.join("INBOX")), q(work.path())),
        &mount,
    );
    check_copy(work.path(), &mount, &dovecot, "rsync");
}

#[test]
fn cold_tail_sha256sum_and_mmap_of_every_file_are_exact() {
    let (dovecot, mount) = corpus_mount();
    let expected = expected_inbox(&mount, &dovecot);
    for (dir, files) in &expected {
        for (name, want) in files {
            let path = mount.join("INBOX").join(dir).join(name);
            // tail first, on the cold file: the last 16 bytes, exactly.
            let tail = run_clean(&format!("tail -c 16 {}", q(&path)), &mount);
            let end = &want[want.len().saturating_sub(16)..];
            assert!(tail.stdout == end, "tail -c 16 {dir}/{name}");
        }
    }
    let mount = {
        drop(mount);
        MountSpec::new(&dovecot, "alice").mount()
    };
    for (dir, files) in &expected {
        for (name, want) in files {
            let path = mount.join("INBOX").join(dir).join(name);
            let mapped = run_clean(
                &format!(
                    "python3 -c 'import mmap,sys,hashlib\n\
                     f=open(sys.argv[1],\"rb\")\n\
                     m=mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ) if f.seek(0,2) else b\"\"\n\
                     print(hashlib.sha256(m).hexdigest())' {}",
                    q(&path)
                ),
                &mount,
            );
            let summed = run_clean(&format!("sha256sum {}", q(&path)), &mount);
            let want_sum = sha256_hex(want);
            assert_eq!(
                String::from_utf8_lossy(&mapped.stdout).trim(),
                want_sum,
                "mmap {dir}/{name}"
            );
            assert!(
                String::from_utf8_lossy(&summed.stdout).starts_with(&want_sum),
                "sha256sum {dir}/{name}"
            );
        }
    }
}

/// The SHA-256 of `data` as `sha256sum` prints it, computed by the system's tool.
fn sha256_hex(data: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    fs::write(&path, data).unwrap();
    let out = sh(&format!("sha256sum {}", q(&path)));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Bytes the mount received from the server so far.
fn received(mount: &Mount) -> u64 {
    counter(mount, "bytes_received")
}

#[test]
fn head_of_a_large_attachment_and_a_listing_of_its_directory_move_kilobytes() {
    let (_dovecot, mount) = corpus_mount();
    let large = sample("large");
    let dir = mount.message_dir("INBOX", &large.subject);
    let before = received(&mount);
    let listed = run_clean(&format!("ls -l {}", q(&dir)), &mount);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("dataset.bin"));
    let listing = received(&mount) - before;
    assert!(
        listing < 16 << 10,
        "ls -l of the message directory moved {listing} bytes"
    );
    let before = received(&mount);
    let head = run_clean(
        &format!("head -c 4096 {}", q(&dir.join("dataset.bin"))),
        &mount,
    );
    assert!(head.stdout == large.attachments[0].1[..4096]);
    let moved = received(&mount) - before;
    assert!(
        moved < 160 << 10,
        "head -c 4096 of a 10 MB attachment moved {moved} bytes"
    );
}

// ---- writing the way tools write -------------------------------------------------------

/// A fresh account with an empty Archive, mounted.
fn archive_mount() -> (Dovecot, Mount, Session) {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    let mut client = dovecot.client("alice").unwrap();
    fixture::create_mailbox(&mut client, "Archive").unwrap();
    fixture::create_mailbox(&mut client, "Trash").unwrap();
    let mount = MountSpec::new(&dovecot, "alice").mount();
    (dovecot, mount, client)
}

/// The messages in `mailbox`, each as (Subject, the only attachment's name and bytes).
fn stored_files(client: &mut Session, mailbox: &str) -> BTreeMap<String, Vec<u8>> {
    server_mailbox(client, mailbox)
        .values()
        .map(|(_, raw)| {
            let parsed = MessageParser::default().parse(raw).unwrap();
            let subject = parsed.subject().unwrap_or_default().to_string();
            let attachments: Vec<_> = parsed.attachments().collect();
            assert_eq!(attachments.len(), 1, "{subject}: one attachment");
            assert_eq!(attachments[0].attachment_name(), Some(subject.as_str()));
            (subject, attachments[0].contents().to_vec())
        })
        .collect()
}

#[test]
fn shells_dd_tee_cat_cp_and_python_store_one_message_each_with_the_bytes_written() {
    let (_dovecot, mount, mut client) = archive_mount();
    let a = mount.join("Archive");
    let source = tempfile::NamedTempFile::new().unwrap();
    fs::write(source.path(), b"copied bytes\n").unwrap();
    let writes: Vec<(&str, String, &[u8])> = vec![
        (
            "echo.txt",
            format!("echo x > {}", q(&a.join("echo.txt"))),
            b"x\n",
        ),
        (
            "printf.txt",
            format!("printf 'a\\nb' > {}", q(&a.join("printf.txt"))),
            b"a\nb",
        ),
        (
            "cat.txt",
            format!("printf 'typed\\n' | cat > {}", q(&a.join("cat.txt"))),
            b"typed\n",
        ),
        (
            "dd.bin",
            format!(
                "printf 'ddddd' | dd of={} bs=2 status=none",
                q(&a.join("dd.bin"))
            ),
            b"ddddd",
        ),
        (
            "tee.txt",
            format!("printf 'tee\\n' | tee {} >/dev/null", q(&a.join("tee.txt"))),
            b"tee\n",
        ),
        (
            "cp.txt",
            format!("cp {} {}", q(source.path()), q(&a.join("cp.txt"))),
            b"copied bytes\n",
        ),
        (
            "exec.txt",
            format!(
                "exec 3> {f}; echo one >&3; echo two >&3; exec 3>&-",
                f = q(&a.join("exec.txt"))
            ),
            b"one\ntwo\n",
        ),
        (
            "python.txt",
            format!(
                "python3 -c 'import sys; open(sys.argv[1], \"w\").write(\"py\\n\")' {}",
                q(&a.join("python.txt"))
            ),
            b"py\n",
        ),
    ];
    for (_, script, _) in &writes {
        run_clean(script, &mount);
    }
    let stored = stored_files(&mut client, "Archive");
    let expected: BTreeMap<String, Vec<u8>> = writes
        .iter()
        .map(|(name, _, data)| (name.to_string(), data.to_vec()))
        .collect();
    assert_eq!(stored, expected);
}

/// Both runs with `--delete`, as a mirror script does: the second found the message
/// directories of the files it stored listed beside them and removed them, and the files
/// with them (every file lost).
#[test]
fn rsync_into_a_mailbox_stores_each_file_once_and_a_second_run_nothing() {
    let (_dovecot, mount, mut client) = archive_mount();
    let source = tempfile::tempdir().unwrap();
    let mut expected = BTreeMap::new();
    for (name, data) in [
        ("notes.txt", b"my notes\n".to_vec()),
        ("report.pdf", b"%PDF-1.7\n...".to_vec()),
        ("data.bin", (0..=255u8).cycle().take(70_000).collect()),
    ] {
        fs::write(source.path().join(name), &data).unwrap();
        expected.insert(name.to_string(), data);
    }
    let rsync = format!(
        "rsync -a --delete {}/ {}/",
        q(source.path()),
        q(&mount.join("Archive"))
    );
    run_clean(&rsync, &mount);
    assert_eq!(stored_files(&mut client, "Archive"), expected);
    // A walk sees each file once, as the source has it.
    let mut walked: Vec<String> = fs::read_dir(mount.join("Archive"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    walked.sort();
    assert_eq!(walked, ["data.bin", "notes.txt", "report.pdf"]);
    let uids: BTreeSet<u32> = server_mailbox(&mut client, "Archive")
        .keys()
        .copied()
        .collect();
    // The second, identical run finds every file as it left it: same size, same mtime.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let again = run_clean(&format!("{rsync} --itemize-changes"), &mount);
    let changes = String::from_utf8_lossy(&again.stdout);
    assert!(
        !changes
            .lines()
            .any(|l| l.starts_with('>') || l.starts_with('c')),
        "the second rsync sent: {changes}"
    );
    let after: BTreeSet<u32> = server_mailbox(&mut client, "Archive")
        .keys()
        .copied()
        .collect();
    assert_eq!(after, uids, "the second rsync stored or removed messages");
}

/// Several shells writing one name at once (`echo ... > same.txt` in loops), then one more
/// write: the server ends with one message for it, holding the last bytes (a bug hunt saw
/// several versions left, and an empty one stored). The core's test
/// `a_write_while_the_file_is_sent_is_stored_by_its_own_close` holds the worst interleaving.
#[test]
fn writers_of_one_name_at_once_leave_one_version_with_the_files_bytes() {
    let (_dovecot, mount, mut client) = archive_mount();
    let file = q(&mount.join("Archive/same.txt"));
    let writers: Vec<_> = (1..=8)
        .map(|w| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "for k in 1 2 3 4 5 6 7 8 9 10; do echo \"writer {w} round $k\" > {file}; done"
                ))
                .spawn()
                .unwrap()
        })
        .collect();
    for mut w in writers {
        w.wait().unwrap();
    }
    run_clean(&format!("echo the last word > {file}"), &mount);
    let shown = fs::read(mount.join("Archive/same.txt")).unwrap();
    assert_eq!(shown, b"the last word\n");
    let mut stored = BTreeMap::new();
    for _ in 0..50 {
        stored = stored_files(&mut client, "Archive");
        if stored.len() == 1 && stored.get("same.txt") == Some(&shown) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        stored.into_iter().collect::<Vec<_>>(),
        [("same.txt".to_string(), shown)],
        "{}",
        mount.log()
    );
}

/// `cp -p` of a file dated before 1970 (an old archive's): another mount shows its date, so
/// `rsync -a` finds it unchanged rather than sending it again at every run.
#[test]
fn a_file_dated_before_1970_keeps_its_date() {
    use std::os::unix::fs::MetadataExt as _;
    let (dovecot, mount, _client) = archive_mount();
    let source = tempfile::tempdir().unwrap();
    let old = source.path().join("old.txt");
    fs::write(&old, b"from the sixties\n").unwrap();
    run_clean(
        &format!(
            "touch -d '1960-01-01 00:00:00.25 UTC' {0} && cp -p {0} {1}/",
            q(&old),
            q(&mount.join("Archive"))
        ),
        &mount,
    );
    let other = MountSpec::new(&dovecot, "alice").mount();
    for m in [&mount, &other] {
        let meta = fs::metadata(m.join("Archive/old.txt")).unwrap();
        assert_eq!(
            (meta.mtime(), meta.mtime_nsec()),
            (-315_619_200, 250_000_000),
            "{}",
            m.path.display()
        );
    }
}

#[test]
fn a_vim_save_stores_one_message() {
    let (_dovecot, mount, mut client) = archive_mount();
    let file = mount.join("Archive/memo.txt");
    // vim as users run it: a swap file next to the file, a backup while writing.
    run_clean(
        &format!(
            "HOME=/nonexistent vim -u NONE -i NONE -N -es -c 'set backup writebackup' \
             -c 'call setline(1, \"hello from vim\")' -c 'wq' {}",
            q(&file)
        ),
        &mount,
    );
    let stored = stored_files(&mut client, "Archive");
    assert_eq!(
        stored,
        BTreeMap::from([("memo.txt".to_string(), b"hello from vim\n".to_vec())])
    );
}

/// Backups of a stored file, as vim (`set backup backupcopy=no`: rename, then write),
/// `rsync --backup` and `mv -b` make them: the backup keeps the old bytes, the file the
/// new ones, the server one message with the new ones (the backups were lost, and the old
/// versions expunged, with no error).
#[test]
fn backups_of_a_stored_file_keep_the_old_bytes() {
    let (_dovecot, mount, mut client) = archive_mount();
    let a = mount.join("Archive");
    let local = tempfile::tempdir().unwrap();
    let l = q(local.path());
    run_clean(
        &format!(
            "cd {a} && printf 'line1\\n' > notes.txt && echo v1 > doc.txt && echo m1 > moved.txt && \
             ls >/dev/null && \
             HOME=/nonexistent vim -u NONE -i NONE -N -es \
               -c 'set backup backupskip= backupcopy=no' -c 'call append(1, \"line2\")' \
               -c 'wq' notes.txt && \
             echo v2 > {l}/doc.txt && touch -d 2020-01-01 {l}/doc.txt && rsync -a --backup {l}/doc.txt {a}/ && \
             echo m2 > {l}/moved.txt && mv -b {l}/moved.txt {a}/moved.txt",
            a = q(&a)
        ),
        &mount,
    );
    let read = |name: &str| {
        std::fs::read_to_string(a.join(name)).unwrap_or_else(|e| format!("{name}: {e}"))
    };
    assert_eq!(
        [read("notes.txt~"), read("doc.txt~"), read("moved.txt~")],
        ["line1\n", "v1\n", "m1\n"]
    );
    assert_eq!(
        stored_files(&mut client, "Archive")
            .into_iter()
            .collect::<Vec<_>>(),
        [
            ("doc.txt".to_string(), b"v2\n".to_vec()),
            ("moved.txt".to_string(), b"m2\n".to_vec()),
            ("notes.txt".to_string(), b"line1\nline2\n".to_vec())
        ]
    );
    assert_eq!(server_mailbox(&mut client, "Archive").len(), 3);
    let listed: Vec<String> = std::fs::read_dir(&a)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| !n.as_bytes()[0].is_ascii_digit())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        listed,
        [
            "doc.txt",
            "doc.txt~",
            "moved.txt",
            "moved.txt~",
            "notes.txt",
            "notes.txt~"
        ]
    );
}

#[test]
fn gio_trash_of_a_message_moves_it_to_the_servers_trash_and_creates_no_mailbox() {
    let dovecot = dovecot_with_samples();
    let mut client = dovecot.client("alice").unwrap();
    fixture::ensure_mailbox(&mut client, "Trash").unwrap();
    let mailboxes = server_mailboxes(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let plain = sample("plain");
    let dir = mount.message_dir("INBOX", &plain.subject);
    run_clean(&format!("gio trash {}", q(&dir)), &mount);
    assert!(!dir.exists());
    assert_eq!(
        server_mailboxes(&mut client),
        mailboxes,
        "no mailbox was created"
    );
    let in_trash: Vec<Vec<u8>> = server_mailbox(&mut client, "Trash")
        .into_values()
        .map(|(_, raw)| raw)
        .collect();
    assert_eq!(in_trash, std::slice::from_ref(&plain.raw));
    let inbox = server_mailbox(&mut client, "INBOX");
    assert!(!inbox.values().any(|(_, raw)| *raw == plain.raw));
}

/// A file written into a mailbox, then at once `mv`ed into another (same name: its message
/// moves; another name: mv copies it, and removing the original sends that to Trash, as
/// `rm` does) or moved to the trash with `gio trash`: nothing is left behind.
#[test]
fn mv_and_gio_trash_of_a_file_just_written_file_it() {
    let (_dovecot, mount, mut client) = archive_mount();
    fixture::create_mailbox(&mut client, "Work").unwrap();
    let (w, a) = (q(&mount.join("Work")), q(&mount.join("Archive")));
    // Read at once where it went (a bug hunt found it ENOENT there until the mailbox was
    // listed): `mv f Archive/ && sha256sum Archive/f`.
    let out = run_clean(
        &format!(
            "echo one > {w}/one.txt && mv {w}/one.txt {a}/ && cat {a}/one.txt && \
             stat -c %s {a}/one.txt && \
             echo two > {w}/two.txt && mv {w}/two.txt {a}/renamed.txt && \
             echo three > {w}/three.txt && gio trash {w}/three.txt"
        ),
        &mount,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\n4\n");
    assert!(stored_files(&mut client, "Work").is_empty());
    let archived = stored_files(&mut client, "Archive");
    assert_eq!(
        archived.into_iter().collect::<Vec<_>>(),
        [
            ("one.txt".to_string(), b"one\n".to_vec()),
            ("renamed.txt".to_string(), b"two\n".to_vec())
        ]
    );
    let trashed = stored_files(&mut client, "Trash");
    assert_eq!(
        trashed.into_iter().collect::<Vec<_>>(),
        [
            ("three.txt".to_string(), b"three\n".to_vec()),
            ("two.txt".to_string(), b"two\n".to_vec())
        ]
    );
}

/// A file stored through the mount and flagged, then `: >>`, `touch` and `>>` as a shell
/// does them: the first two send nothing; the last sends one new version, flags kept.
#[test]
fn touch_and_appends_to_a_stored_file_send_only_what_changed() {
    let (_dovecot, mount, mut client) = archive_mount();
    let a = mount.join("Archive");
    let note = q(&a.join("note.txt"));
    run_clean(
        &format!("echo one > {note} && ls {} >/dev/null", q(&a)),
        &mount,
    );
    let dir = mount.message_dir("Archive", "note.txt");
    run_clean(
        &format!("setfattr -n user.imap.flags -v '+\\Flagged' {}", q(&dir)),
        &mount,
    );
    let before = server_flags(&mut client, "Archive");
    assert_eq!(before.len(), 1);
    run_clean(
        &format!("ls {} >/dev/null && : >> {note} && touch {note}", q(&a)),
        &mount,
    );
    assert_eq!(server_flags(&mut client, "Archive"), before, "nothing sent");
    run_clean(
        &format!("ls {} >/dev/null && echo two >> {note}", q(&a)),
        &mount,
    );
    let after = server_flags(&mut client, "Archive");
    assert_eq!(after.len(), 1, "one version: {after:?}");
    assert_ne!(after.keys().next(), before.keys().next());
    assert!(after
        .values()
        .next()
        .unwrap()
        .iter()
        .any(|f| f == "\\Flagged"));
    assert_eq!(
        stored_files(&mut client, "Archive")
            .into_iter()
            .collect::<Vec<_>>(),
        [("note.txt".to_string(), b"one\ntwo\n".to_vec())]
    );
}

/// `setfattr` and `getfattr -d` on a stored file, right after it was written and once the
/// mailbox is listed again: the flags of its message, as on its message directory.
#[test]
fn setfattr_on_a_stored_file_flags_its_message() {
    let (_dovecot, mount, mut client) = archive_mount();
    let a = mount.join("Archive");
    let note = q(&a.join("note.txt"));
    run_clean(
        &format!("echo one > {note} && setfattr -n user.imap.flags -v '+\\Flagged' {note}"),
        &mount,
    );
    let flags = server_flags(&mut client, "Archive");
    assert_eq!(flags.values().collect::<Vec<_>>(), [&["\\Flagged"]]);
    let out = run_clean(
        &format!(
            "ls {} >/dev/null && setfattr -n user.imap.flags -v '+\\Seen' {note} && \
             getfattr --absolute-names -d {note}",
            q(&a)
        ),
        &mount,
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("user.imap.flags=\"\\\\Flagged \\\\Seen\"")
            || shown.contains("user.imap.flags=\"\\\\Seen \\\\Flagged\""),
        "{shown}"
    );
    let mut flags: Vec<String> = server_flags(&mut client, "Archive")
        .into_values()
        .flatten()
        .collect();
    flags.sort();
    assert_eq!(flags, ["\\Flagged", "\\Seen"]);
}

/// A file just written through the mount, read back with `mmap` before its mailbox is
/// listed again (it was direct I/O, ENODEV), and `tail` and `cmp` too.
#[test]
fn a_file_just_written_can_be_mmapped() {
    let (_dovecot, mount, _client) = archive_mount();
    let note = q(&mount.join("Archive").join("note.txt"));
    let out = run_clean(
        &format!(
            "seq 1 2000 > {note} && python3 -c 'import mmap,sys\n\
             f=open(sys.argv[1],\"rb\")\n\
             m=mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ)\n\
             sys.stdout.write(m[-10:].decode())' {note} && tail -n 1 {note} && \
             seq 1 2000 | cmp - {note}"
        ),
        &mount,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1999\n2000\n2000\n");
}

/// A stored file copied into other mailboxes with the real `cp`: alone (`One`), its
/// message directory by name and then the file (`Two`), `cp -r` of its mailbox, which
/// lists the file alone (`Three`), then `cp` of the same file over it: one copy in each,
/// made on the server (nothing sent), its message directory whole by its name.
#[test]
fn cp_r_of_a_mailbox_with_a_stored_file_copies_it_once() {
    let (_dovecot, mount, mut client) = archive_mount();
    let m = |name: &str| q(&mount.join(name));
    run_clean(
        &format!(
            "mkdir {src} {one} {two} {three} && seq 1 20000 > {src}/note.txt && ls {src} >/dev/null",
            src = m("Src"),
            one = m("One"),
            two = m("Two"),
            three = m("Three")
        ),
        &mount,
    );
    let dir = mount.message_dir("Src", "note.txt");
    let dir_name = dir.file_name().unwrap().to_string_lossy().to_string();
    let sent = || counter(&mount, "bytes_sent");
    let before = sent();
    run_clean(
        &format!(
            "cp {src}/note.txt {one}/ && \
             cp -r {dir} {two}/ && cp {src}/note.txt {two}/ && \
             cp -r {src}/. {three}/ && cp {src}/note.txt {three}/",
            src = m("Src"),
            dir = q(&dir),
            one = m("One"),
            two = m("Two"),
            three = m("Three")
        ),
        &mount,
    );
    let expected: Vec<u8> = (1..=20000)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    for mailbox in ["One", "Two", "Three"] {
        assert_eq!(
            server_mailbox(&mut client, mailbox).len(),
            1,
            "{mailbox}: one message"
        );
        assert_eq!(
            stored_files(&mut client, mailbox)
                .into_iter()
                .collect::<Vec<_>>(),
            [("note.txt".to_string(), expected.clone())],
            "{mailbox}"
        );
        let copy_dir = mount.message_dir(mailbox, "note.txt");
        let copied = std::fs::read(copy_dir.join("note.txt"));
        assert!(
            copied.is_ok_and(|c| c == expected),
            "{mailbox}: {copy_dir:?}"
        );
        if mailbox == "Two" {
            assert_eq!(copy_dir.file_name().unwrap().to_string_lossy(), dir_name);
        }
    }
    assert!(
        sent() - before < 20_000,
        "copied on the server, not sent: {} bytes",
        sent() - before
    );
}

/// `tar` of mailboxes the mount has not listed yet, an empty one and one with a message
/// newer than the mount, made by another client after it started: no "file changed as
/// we read it" (tar exited 1).
#[test]
fn tar_of_mailboxes_not_listed_yet_exits_cleanly() {
    let (dovecot, mount, mut client) = archive_mount();
    fixture::create_mailbox(&mut client, "Later").unwrap();
    fixture::create_mailbox(&mut client, "Later/Empty").unwrap();
    let mut other = dovecot.client("alice").unwrap();
    let raw = b"From: other@example.com\r\nSubject: New\r\n\r\nHello.\r\n";
    fixture::append(&mut other, "Later", raw, &[]).unwrap();
    let out = tempfile::tempdir().unwrap();
    run_clean(
        &format!(
            "tar cf {}/later.tar -C {} Later",
            q(out.path()),
            q(&mount.path)
        ),
        &mount,
    );
}

/// A file name a listing could not show again (over 200 bytes): the shell says "File name
/// too long" at once, where the file was stored and then ENOENT by its own name.
#[test]
fn a_name_too_long_to_show_again_is_refused_at_create() {
    let (_dovecot, mount, mut client) = archive_mount();
    let long = format!("{}.txt", "n".repeat(240));
    let out = sh(&format!(
        "echo long > {}",
        q(&mount.join("Archive").join(&long))
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("File name too long"),
        "{stderr}"
    );
    assert!(server_mailbox(&mut client, "Archive").is_empty());
}

/// `mv` of a stored file within its mailbox, before and after the mailbox is listed
/// again: the same each time, one message under the last name.
#[test]
fn mv_of_a_stored_file_within_its_mailbox_renames_it_every_time() {
    let (_dovecot, mount, mut client) = archive_mount();
    let a = q(&mount.join("Archive"));
    run_clean(
        &format!(
            "echo x > {a}/one.txt && mv {a}/one.txt {a}/two.txt && ls {a} >/dev/null && \
             mv {a}/two.txt {a}/three.txt && ls {a} >/dev/null && mv {a}/three.txt {a}/four.txt"
        ),
        &mount,
    );
    assert_eq!(
        stored_files(&mut client, "Archive")
            .into_iter()
            .collect::<Vec<_>>(),
        [("four.txt".to_string(), b"x\n".to_vec())]
    );
}

/// The same .eml copied into a mailbox twice at once, under two names: one message.
#[test]
fn an_eml_copied_in_twice_at_once_is_stored_once() {
    let (_dovecot, mount, mut client) = archive_mount();
    let work = tempfile::tempdir().unwrap();
    let eml = work.path().join("d.eml");
    let raw = b"From: a@example.com\r\nMessage-ID: <d@example.com>\r\nSubject: d\r\n\r\nbody\r\n";
    fs::write(&eml, raw).unwrap();
    let a = mount.join("Archive");
    run_clean(
        &format!(
            "ls {a} >/dev/null && cp {e} {a}/ && cp {e} {a}/d2.eml",
            a = q(&a),
            e = q(&eml)
        ),
        &mount,
    );
    let stored: Vec<Vec<u8>> = server_mailbox(&mut client, "Archive")
        .into_values()
        .map(|(_, raw)| raw)
        .collect();
    assert_eq!(stored, [raw.to_vec()]);
}

/// `rm -r` of a mailbox holding stored files (each listed once, as itself; their message
/// directories are not listed) removes it at the first try: the files' messages are in
/// Trash.
#[test]
fn rm_r_of_a_mailbox_with_stored_files_succeeds_at_once() {
    let (_dovecot, mount, mut client) = archive_mount();
    let w = q(&mount.join("Work"));
    run_clean(
        &format!("mkdir {w} && echo a > {w}/a.txt && echo b > {w}/b.txt && ls {w} >/dev/null"),
        &mount,
    );
    let listed = std::fs::read_dir(mount.join("Work")).unwrap().count();
    assert_eq!(listed, 2, "the files alone");
    run_clean(&format!("rm -r {w}"), &mount);
    assert!(!server_mailboxes(&mut client).contains(&"Work".to_string()));
    assert_eq!(
        stored_files(&mut client, "Trash")
            .into_keys()
            .collect::<Vec<_>>(),
        ["a.txt", "b.txt"]
    );
}

/// Every message of INBOX on the server: its INTERNALDATE (seconds since the epoch) and
/// bytes, sorted.
fn dated_messages(client: &mut Session) -> Vec<(i64, Vec<u8>)> {
    client.examine("INBOX").unwrap();
    let fetches = client
        .uid_fetch("1:*", "(UID INTERNALDATE BODY.PEEK[])")
        .unwrap();
    let mut out: Vec<(i64, Vec<u8>)> = fetches
        .iter()
        .map(|f| {
            let date = f.internal_date().expect("an INTERNALDATE").timestamp();
            (date, f.body().unwrap_or_default().to_vec())
        })
        .collect();
    out.sort();
    out
}

/// The README's backup and restore: `rsync -a` of a mailbox, then `cp -p` of each backed-up
/// message.eml into the mailbox. The messages lost since come back byte for byte with
/// their INTERNALDATE; those still there are not stored twice.
#[test]
fn a_backup_restores_from_its_message_eml_files() {
    let dovecot = dovecot_with_samples();
    let mut client = dovecot.client("alice").unwrap();
    let before = dated_messages(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let backup = tempfile::tempdir().unwrap();
    let inbox = mount.join("INBOX");
    run_clean(
        &format!("rsync -a {}/ {}/", q(&inbox), q(backup.path())),
        &mount,
    );
    // Two messages lost: expunged by another client.
    client.select("INBOX").unwrap();
    client
        .uid_store("1:2", "+FLAGS.SILENT (\\Deleted)")
        .unwrap();
    client.uid_expunge("1:2").unwrap();
    assert_eq!(dated_messages(&mut client).len(), before.len() - 2);
    run_clean(
        &format!(
            "for f in {}/*/message.eml; do cp -p \"$f\" {}/\"$(basename \"$(dirname \"$f\")\").eml\"; done",
            q(backup.path()),
            q(&inbox)
        ),
        &mount,
    );
    assert!(
        dated_messages(&mut client) == before,
        "INBOX differs from before"
    );
}

/// `touch` and `chmod` of a message and its files, and `rsync -a` of a backup whose
/// directories' times changed since (a file was added to each, say), succeed and send
/// nothing that changes the server; `truncate` of a message's file is EPERM.
#[test]
fn touch_chmod_and_rsync_of_a_retimed_backup_succeed_and_change_nothing() {
    let dovecot = dovecot_with_samples();
    let mut client = dovecot.client("alice").unwrap();
    let before = dated_messages(&mut client);
    let flags = server_flags(&mut client, "INBOX");
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let backup = tempfile::tempdir().unwrap();
    let inbox = mount.join("INBOX");
    let (b, i) = (q(backup.path()), q(&inbox));
    run_clean(&format!("rsync -a {i}/ {b}/"), &mount);
    run_clean(&format!("touch -d 2001-02-03 {b}/*/"), &mount);
    run_clean(&format!("rsync -a {b}/ {i}/"), &mount);
    let msg = q(&mount.message_dir("INBOX", "Plain text greeting"));
    run_clean(
        &format!("touch {msg} {msg}/message.eml && chmod 600 {msg}/body.txt && chmod 700 {msg}"),
        &mount,
    );
    let out = sh(&format!("truncate -s 0 {msg}/message.eml"));
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
        "{out:?}"
    );
    assert!(dated_messages(&mut client) == before, "INBOX changed");
    assert_eq!(server_flags(&mut client, "INBOX"), flags);
}

/// `cp MNT/INBOX/<msg>/message.eml MNT/Archive/`: the message the copier just read is
/// copied on the server (`UID COPY`), not sent again.
#[test]
fn cp_of_a_message_eml_into_another_mailbox_copies_it_on_the_server() {
    let dovecot = dovecot_with_samples();
    let mut client = dovecot.client("alice").unwrap();
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let large = fixture::sample_messages()
        .into_iter()
        .find(|s| s.raw.len() > 10_000_000)
        .expect("a large sample");
    let eml = mount
        .message_dir(&large.mailbox, &large.subject)
        .join("message.eml");
    let sent = || counter(&mount, "bytes_sent");
    let before = sent();
    run_clean(
        &format!("cp {} {}/copied.eml", q(&eml), q(&mount.join("Archive"))),
        &mount,
    );
    let sent = sent() - before;
    assert!(
        sent < 100_000,
        "{sent} bytes sent for a copy of {}",
        large.raw.len()
    );
    let archive = server_mailbox(&mut client, "Archive");
    assert!(
        archive.values().any(|(_, raw)| *raw == large.raw),
        "the copy in Archive"
    );
    let inbox = server_mailbox(&mut client, &large.mailbox);
    assert!(inbox.values().any(|(_, raw)| *raw == large.raw));
}

/// Dovecot 2.3 lists its special-use `Archive`, first made as the parent of
/// `Archive/2023`, as `\Noselect` for good, though it opens and holds what is put there:
/// the mount shows those messages, and `mv` puts more there.
#[test]
fn a_special_use_mailbox_dovecot_lists_as_noselect_shows_its_messages() {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    let mut client = dovecot.client("alice").unwrap();
    fixture::create_mailbox(&mut client, "Archive/2023").unwrap();
    let raw = b"From: a@example.org\r\nSubject: Kept\r\n\r\nArchived.\r\n";
    fixture::append(&mut client, "Archive", raw, &[]).unwrap();
    fixture::append(&mut client, "INBOX", raw, &[]).unwrap();
    let listed = client.list(Some(""), Some("Archive")).unwrap();
    let attributes = format!("{:?}", listed.iter().next().unwrap().attributes());
    assert!(attributes.contains("NoSelect"), "{attributes}");
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let archive = mount.join("Archive");
    let names = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&archive), ["1 Kept", "2023"]);
    assert_eq!(fs::read(archive.join("1 Kept/message.eml")).unwrap(), raw);
    run_clean(
        &format!("mv {} {}/", q(&mount.join("INBOX/1 Kept")), q(&archive)),
        &mount,
    );
    assert_eq!(server_mailbox(&mut client, "Archive").len(), 2);
}

/// `gio trash` of one attachment hides that file, as `rm` does: the message stays in INBOX
/// on the server, unchanged, and nothing reaches Trash.
#[test]
fn gio_trash_of_an_attachment_hides_it_and_leaves_the_message() {
    let dovecot = dovecot_with_samples();
    let mut client = dovecot.client("alice").unwrap();
    fixture::ensure_mailbox(&mut client, "Trash").unwrap();
    let inbox = server_mailbox(&mut client, "INBOX");
    let trash = server_mailbox(&mut client, "Trash");
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let sample = sample("attachments");
    let dir = mount.message_dir("INBOX", &sample.subject);
    let (name, _) = &sample.attachments[0];
    run_clean(&format!("gio trash {}", q(&dir.join(name))), &mount);
    assert!(!dir.join(name).exists());
    assert!(dir.join("message.eml").exists());
    assert_eq!(server_mailbox(&mut client, "INBOX"), inbox);
    assert_eq!(server_mailbox(&mut client, "Trash"), trash);
}

#[test]
fn cp_r_of_a_message_directory_into_a_mailbox_copies_the_message_and_makes_no_mailbox() {
    let dovecot = dovecot_with_samples();
    let mut client = dovecot.client("alice").unwrap();
    let mailboxes = server_mailboxes(&mut client);
    let inbox = server_mailbox(&mut client, "INBOX");
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let (attachments, forwarded) = (sample("attachments"), sample("forwarded"));
    let first = mount.message_dir("INBOX", &attachments.subject);
    let second = mount.message_dir("INBOX", &forwarded.subject);
    let archive = mount.join("Archive");
    // A file manager's copy is cp -r; cp -a also sets times (and tries the xattrs).
    run_clean(&format!("cp -r {} {}/", q(&first), q(&archive)), &mount);
    run_clean(&format!("cp -a {} {}/", q(&second), q(&archive)), &mount);
    // rsync writes each file under a temporary name and renames it.
    let sent = mount.join("Sent");
    run_clean(&format!("rsync -a {} {}/", q(&first), q(&sent)), &mount);
    for (dir, into) in [(&first, &archive), (&second, &archive), (&first, &sent)] {
        let made = into.join(dir.file_name().unwrap());
        let out = sh(&format!("diff -r {} {}", q(dir), q(&made)));
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            mount.log()
        );
    }

    assert_eq!(
        server_mailboxes(&mut client),
        mailboxes,
        "no mailbox was made"
    );
    assert_eq!(
        server_mailbox(&mut client, "INBOX"),
        inbox,
        "INBOX is as it was"
    );
    let archived: Vec<(Vec<String>, Vec<u8>)> = server_mailbox(&mut client, "Archive")
        .into_values()
        .collect();
    let raws: Vec<&[u8]> = archived.iter().map(|(_, raw)| raw.as_slice()).collect();
    assert_eq!(raws, [&attachments.raw[..], &forwarded.raw[..]]);
    let copied_flags = &archived[1].0;
    let original_flags = inbox
        .values()
        .find(|(_, raw)| *raw == forwarded.raw)
        .map(|(flags, _)| flags)
        .unwrap();
    assert_eq!(copied_flags, original_flags, "the copy keeps the flags");
    let sent_raws: Vec<Vec<u8>> = server_mailbox(&mut client, "Sent")
        .into_values()
        .map(|(_, raw)| raw)
        .collect();
    assert_eq!(sent_raws, std::slice::from_ref(&attachments.raw));

    // Each copy also shows under its own name (its UID in Archive).
    let listed: BTreeSet<String> = fs::read_dir(&archive)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    for sample in [&attachments, &forwarded] {
        let own = mount.message_dir("Archive", &sample.subject);
        assert!(listed.contains(own.file_name().unwrap().to_str().unwrap()));
        assert_eq!(fs::read(own.join("message.eml")).unwrap(), sample.raw);
    }
}

#[test]
fn a_message_directory_changed_outside_and_copied_back_in_is_refused_and_leaves_nothing() {
    let dovecot = dovecot_with_samples();
    let mut client = dovecot.client("alice").unwrap();
    let mailboxes = server_mailboxes(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let dir = mount.message_dir("INBOX", "Base64 body");
    let work = tempfile::tempdir().unwrap();
    let outside = work.path().join("copy");
    run_clean(&format!("cp -r {} {}", q(&dir), q(&outside)), &mount);
    fs::write(outside.join("body.txt"), "not what the message says\n").unwrap();
    let drafts = mount.join("Drafts");
    let out = sh(&format!(
        "cp -r {} {}",
        q(&outside),
        q(&drafts.join(dir.file_name().unwrap()))
    ));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Operation not permitted"),
        "{stderr}\n{}",
        mount.log()
    );
    assert!(
        server_mailbox(&mut client, "Drafts").is_empty(),
        "the copy was removed"
    );
    assert_eq!(
        server_mailboxes(&mut client),
        mailboxes,
        "no mailbox was made"
    );
    assert_eq!(fs::read_dir(&drafts).unwrap().count(), 0);
    assert!(!drafts.join(dir.file_name().unwrap()).exists());
}

#[test]
fn rsync_of_eml_files_into_a_mailbox_twice_stores_each_message_once() {
    let (dovecot, mount, mut client) = archive_mount();
    let source = tempfile::tempdir().unwrap();
    let mut raws = Vec::new();
    for n in 1..=3 {
        let raw = format!(
            "Message-ID: <export-{n}@example.org>\r\nSubject: exported {n}\r\n\
             Date: Thu, 3 Dec 2026 10:00:00 +0000\r\n\r\nexported message {n}\r\n"
        );
        fs::write(source.path().join(format!("{n}.eml")), &raw).unwrap();
        raws.push(raw);
    }
    let rsync = format!(
        "rsync -a {}/ {}/",
        q(source.path()),
        q(&mount.join("Archive"))
    );
    let stored = |client: &mut _| {
        let mut raws: Vec<String> = server_mailbox(client, "Archive")
            .into_values()
            .map(|(_, raw)| String::from_utf8(raw).unwrap())
            .collect();
        raws.sort();
        raws
    };
    run_clean(&rsync, &mount);
    assert_eq!(stored(&mut client), raws);
    // An RFC 5322 message is stored as it is, so a later mount does not show it as its
    // file: the next run sends each file again, and each is found in the mailbox already.
    drop(mount);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let rsync = format!(
        "rsync -a {}/ {}/",
        q(source.path()),
        q(&mount.join("Archive"))
    );
    run_clean(&rsync, &mount);
    assert_eq!(
        stored(&mut client),
        raws,
        "the second rsync stored them again"
    );
}

#[test]
fn cp_r_of_a_whole_mailbox_into_another_copies_each_message_on_the_server() {
    let dovecot = dovecot_with_samples();
    let mut client = dovecot.client("alice").unwrap();
    let before = server_mailboxes(&mut client);
    let inbox = server_mailbox(&mut client, "INBOX");
    let mount = MountSpec::new(&dovecot, "alice").mount();
    run_clean(
        &format!(
            "cp -r {} {}/",
            q(&mount.join("INBOX")),
            q(&mount.join("Archive"))
        ),
        &mount,
    );
    // One mailbox made (Archive/INBOX), holding every message of INBOX, flags and all.
    let mut expected = before.clone();
    expected.push("Archive/INBOX".to_string());
    expected.sort();
    let mut after = server_mailboxes(&mut client);
    after.sort();
    assert_eq!(after, expected, "one mailbox made, none per message");
    // In whatever order cp went: the same messages with the same flags.
    let held = |m: BTreeMap<u32, (Vec<String>, Vec<u8>)>| {
        let mut held: Vec<(Vec<u8>, Vec<String>)> = m
            .into_values()
            .map(|(flags, raw)| {
                let flags = flags.into_iter().filter(|f| f != "\\Recent").collect();
                (raw, flags)
            })
            .collect();
        held.sort();
        held
    };
    assert_eq!(
        held(server_mailbox(&mut client, "Archive/INBOX")),
        held(inbox)
    );
}

#[test]
fn mv_of_an_attachment_into_another_mailbox_stores_it_there_and_hides_it_here() {
    let dovecot = dovecot_with_samples();
    let mut client = dovecot.client("alice").unwrap();
    let inbox = server_mailbox(&mut client, "INBOX");
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let attachments = sample("attachments");
    let dir = mount.message_dir("INBOX", &attachments.subject);
    let part = dir.join("résumé.pdf");
    let bytes = fs::read(&part).unwrap();
    // rename(2) says EXDEV; mv copies the file into Archive and removes it here.
    run_clean(
        &format!("mv {} {}/", q(&part), q(&mount.join("Archive"))),
        &mount,
    );
    assert_eq!(
        stored_files(&mut client, "Archive"),
        BTreeMap::from([("résumé.pdf".to_string(), bytes.clone())])
    );
    assert!(!part.exists(), "hidden in its message here");
    assert_eq!(
        server_mailbox(&mut client, "INBOX"),
        inbox,
        "the message is as it was"
    );
    assert_eq!(fs::read(mount.join("Archive/résumé.pdf")).unwrap(), bytes);
}
