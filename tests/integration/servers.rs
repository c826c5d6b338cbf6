//! The read path, the write path and search against every test server: Dovecot 2.3,
//! Cyrus IMAP 3.6 and Courier IMAP 5 (issue 17). Each scenario is written once and run
//! once per server (`servers::SCENARIO::dovecot`, `::cyrus`, `::courier`); where the
//! servers differ, [`Expect`] says how, and the difference is asserted, not skipped.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write as _;
use std::path::Path;

use fixture::{Courier, Cyrus, ServerKind};

use super::support::*;

/// A started server of `kind` with users alice and bob.
pub fn start(kind: ServerKind) -> Box<dyn ImapServer> {
    let users = [("alice", "alice-pass"), ("bob", "bob-pass")];
    match kind {
        ServerKind::Dovecot => {
            Box::new(Dovecot::start(DovecotOptions::default()).expect("dovecot"))
        }
        ServerKind::Cyrus => Box::new(Cyrus::start(&users).expect("cyrus")),
        ServerKind::Courier => Box::new(Courier::start(&users).expect("courier")),
    }
}

/// What differs between the servers, as far as a user of the mount can tell.
pub struct Expect {
    /// RFC 6154 SPECIAL-USE: Trash found by its attribute (else by its name).
    pub special_use: bool,
    /// RFC 6851 MOVE (else `UID COPY` + `UID EXPUNGE`).
    pub move_command: bool,
    /// RFC 3516 BINARY (else parts are fetched as stored and decoded by imapfs).
    pub binary: bool,
}

/// How the mount hears of changes made elsewhere on a stock server of `kind`: NOTIFY
/// (Dovecot), else IDLE (Cyrus, Courier).
fn watch_command(kind: ServerKind) -> &'static str {
    match kind {
        ServerKind::Dovecot => "NOTIFY",
        ServerKind::Cyrus | ServerKind::Courier => "IDLE",
    }
}

impl Expect {
    /// The stock configuration of each server.
    pub fn of(kind: ServerKind) -> Expect {
        match kind {
            ServerKind::Dovecot | ServerKind::Cyrus => Expect {
                special_use: true,
                move_command: true,
                binary: true,
            },
            ServerKind::Courier => Expect {
                special_use: false,
                move_command: false,
                binary: false,
            },
        }
    }
}

/// One `#[test]` per server for a scenario `fn NAME(kind: ServerKind)`.
macro_rules! on_every_server {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use fixture::ServerKind;
            #[test]
            fn dovecot() {
                super::$scenario(ServerKind::Dovecot)
            }
            #[test]
            fn cyrus() {
                super::$scenario(ServerKind::Cyrus)
            }
            #[test]
            fn courier() {
                super::$scenario(ServerKind::Courier)
            }
        }
    )*};
}

on_every_server!(
    the_tree_shows_mailboxes_without_the_namespace_prefix,
    samples_read_back_exactly_and_nothing_becomes_seen,
    mailboxes_are_created_renamed_and_deleted_through_the_delimiter,
    new_files_flags_moves_and_deletes_reach_the_server,
    search_finds_messages_on_the_server,
    changes_elsewhere_show_by_themselves,
    listed_mailboxes_cost_nothing_at_rest,
    parts_show_their_exact_size_before_they_are_read,
);

pub fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The names in a directory of the mount; a failure shows imapfs's log.
pub fn listed(mount: &Mount, rel: &str) -> BTreeSet<String> {
    match fs::read_dir(mount.join(rel)) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => panic!("ls {rel:?}: {e}\nimapfs log:\n{}", mount.log()),
    }
}

/// The value of `result`; a failure shows imapfs's log.
pub fn ok<T>(mount: &Mount, what: &str, result: std::io::Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {e}\nimapfs log:\n{}", mount.log()))
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

pub fn shq(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', r"'\''"))
}

pub fn sh_ok(script: &str, mount: &Mount) {
    let out = sh(script);
    assert!(
        out.status.success(),
        "`{script}` failed: {}\nimapfs log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        mount.log()
    );
}

/// Wire names the server lists for alice, sorted.
fn wire_mailboxes(server: &dyn ImapServer) -> Vec<String> {
    let mut client = server.client("alice").expect("login");
    let names = server_mailboxes(&mut client);
    let _ = client.logout();
    names
}

/// `(UID, flags, bytes)` of every message in a mailbox (display path).
pub fn messages(server: &dyn ImapServer, display: &str) -> Vec<(u32, Vec<String>, Vec<u8>)> {
    let wire = fixture::encode_mailbox_name(&server.naming().wire(display));
    let mut client = server.client("alice").expect("login");
    // The checking session itself: once, in a full run, Dovecot closed a fresh one at its
    // EXAMINE (no log kept); it is the server's view being read, not imapfs's, so a new
    // session looks again once.
    if let Err(e) = client.examine(&wire) {
        eprintln!("the checking session's EXAMINE {wire} failed ({e:?}); a new session looks");
        client = server.client("alice").expect("login");
    }
    let out = server_mailbox(&mut client, &wire)
        .into_iter()
        .map(|(uid, (flags, bytes))| (uid, flags, bytes))
        .collect();
    let _ = client.logout();
    out
}

fn with_samples(kind: ServerKind) -> Box<dyn ImapServer> {
    let server = start(kind);
    add_samples(server.as_ref());
    server
}

/// Appends the sample corpus for alice.
pub fn add_samples(server: &dyn ImapServer) {
    fixture::append_samples_to(server, "alice", &fixture::sample_messages())
        .expect("append samples");
}

fn the_tree_shows_mailboxes_without_the_namespace_prefix(kind: ServerKind) {
    tree_without_prefix(with_samples(kind).as_ref());
}

/// The root shows every personal mailbox at the top, nested ones under their parents, and
/// INBOX holds messages only (whatever the server's prefix and delimiter).
pub fn tree_without_prefix(server: &dyn ImapServer) {
    let kind = server.kind();
    let mount = MountSpec::on(server, "alice").mount();
    let root = listed(&mount, "");
    for wanted in [
        "INBOX",
        "Trash",
        "Sent",
        "Drafts",
        "Junk",
        "Archive",
        "Reçus",
        "Проекты",
    ] {
        assert!(root.contains(wanted), "{kind:?}: no {wanted} in {root:?}");
    }
    assert_eq!(
        names(&mount.join("Archive"))
            .into_iter()
            .filter(|n| !n.contains(' '))
            .collect::<Vec<_>>(),
        ["2023"],
        "{kind:?}: Archive's child mailbox"
    );
    assert!(names(&mount.join("Проекты")).contains("Q1"));
    // INBOX holds messages only: the other mailboxes are not shown again under it.
    let inbox_dirs: Vec<String> = names(&mount.join("INBOX"))
        .into_iter()
        .filter(|n| {
            n.split_once(' ')
                .is_none_or(|(uid, _)| uid.parse::<u32>().is_err())
        })
        .collect();
    assert!(
        inbox_dirs.is_empty(),
        "{kind:?}: INBOX shows {inbox_dirs:?}"
    );
}

fn samples_read_back_exactly_and_nothing_becomes_seen(kind: ServerKind) {
    read_back(with_samples(kind).as_ref(), &Expect::of(kind));
}

/// The messages of `read_path::misstated_sizes` (parts in uneven base64 lines, small and
/// large quoted-printable ones, parts whose `BINARY.SIZE` Dovecot 2.3 misstates): `stat`
/// of each file, before anything in it is read, shows its size, and it reads back
/// exactly. Without BINARY (Courier), a quoted-printable part over 1 MiB shows an
/// estimate until it is read (the server cannot decode a few bytes of it).
fn parts_show_their_exact_size_before_they_are_read(kind: ServerKind) {
    let server = start(kind);
    let expect = Expect::of(kind);
    let messages = super::read_path::misstated_sizes();
    let mut client = server.client("alice").expect("login");
    for (_, _, raw) in &messages {
        fixture::append(&mut client, "INBOX", raw, &[]).expect("append");
    }
    let _ = client.logout();
    let mount = MountSpec::on(server.as_ref(), "alice").mount();
    for (subject, files, _) in &messages {
        let dir = mount.message_dir("INBOX", subject);
        for (name, bytes) in files {
            let path = dir.join(name);
            let before = ok(&mount, name, fs::metadata(&path)).len();
            let got = ok(&mount, name, fs::read(&path));
            assert!(got == *bytes, "{kind:?} {subject}: {name} differs");
            let large_quoted_printable = ["early.csv", "late.csv"].contains(name);
            if expect.binary || !large_quoted_printable {
                assert_eq!(
                    before,
                    bytes.len() as u64,
                    "{kind:?} {subject}: the size of {name} before it is read\nimapfs log:\n{}",
                    mount.log()
                );
            }
            let after = ok(&mount, name, fs::metadata(&path)).len();
            assert_eq!(
                after,
                bytes.len() as u64,
                "{kind:?} {subject}: {name} after"
            );
        }
    }
}

/// Every sample reads back exactly (message.eml, body.txt, attachments, stat sizes), no
/// flag changes, and parts are fetched with BINARY exactly where the server has it.
pub fn read_back(server: &dyn ImapServer, expect: &Expect) {
    let kind = server.kind();
    let before: Vec<_> = fixture::sample_mailboxes()
        .iter()
        .chain(&["INBOX".to_string()])
        .map(|m| (m.clone(), messages(server, m)))
        .collect();
    let mount = MountSpec::on(server, "alice").mount();
    for sample in fixture::sample_messages() {
        let dir = mount.message_dir(&sample.mailbox, &sample.subject.replace('/', "_"));
        let eml = fs::read(dir.join("message.eml")).unwrap();
        assert!(
            eml == sample.raw,
            "{kind:?} {}: message.eml differs",
            sample.name
        );
        if let Some(text) = sample.body_file() {
            let body = fs::read_to_string(dir.join("body.txt")).unwrap();
            assert_eq!(body, text, "{kind:?} {}: body.txt", sample.name);
        }
        for (name, bytes) in &sample.attachments {
            let path = find_file(&dir, name)
                .unwrap_or_else(|| panic!("{kind:?} {}: no file {name:?}", sample.name));
            let got = fs::read(&path).unwrap();
            assert!(
                &got == bytes,
                "{kind:?} {}: {name} differs ({} vs {} bytes)",
                sample.name,
                got.len(),
                bytes.len()
            );
        }
        let mut files = Vec::new();
        all_files(&dir, &mut files);
        for file in files {
            let size = fs::metadata(&file).unwrap().len();
            let read = fs::read(&file).unwrap().len() as u64;
            assert_eq!(size, read, "{kind:?}: stat size of {}", file.display());
        }
    }
    let binary_fetches = sent_lines(&mount)
        .iter()
        .filter(|l| l.contains("BINARY"))
        .count();
    assert_eq!(
        binary_fetches > 0,
        expect.binary,
        "{kind:?}: {binary_fetches} commands with BINARY"
    );
    drop(mount);
    for (mailbox, messages_before) in before {
        let flags = |list: &[(u32, Vec<String>, Vec<u8>)]| -> Vec<(u32, Vec<String>)> {
            list.iter().map(|(u, f, _)| (*u, f.clone())).collect()
        };
        assert_eq!(
            flags(&messages(server, &mailbox)),
            flags(&messages_before),
            "{kind:?}: flags in {mailbox} changed by reading"
        );
    }
}

fn mailboxes_are_created_renamed_and_deleted_through_the_delimiter(kind: ServerKind) {
    mailbox_changes(start(kind).as_ref());
}

/// mkdir, mv and rmdir of nested mailboxes become the server's names (prefix, delimiter,
/// modified UTF-7); a level holding the delimiter is EINVAL.
pub fn mailbox_changes(server: &dyn ImapServer) {
    let kind = server.kind();
    let naming = server.naming();
    let mount = MountSpec::on(server, "alice").mount();
    let wire = |display: &str| fixture::encode_mailbox_name(&naming.wire(display));

    ok(&mount, "mkdir", fs::create_dir(mount.join("Projets")));
    ok(
        &mount,
        "mkdir",
        fs::create_dir(mount.join("Projets/Été 2024")),
    );
    let listed = wire_mailboxes(server);
    for display in ["Projets", "Projets/Été 2024"] {
        assert!(
            listed.contains(&wire(display)),
            "{kind:?}: {} not in {listed:?}",
            wire(display)
        );
    }
    // A name holding the server's delimiter cannot be one level on a server with `.`.
    let dotted = fs::create_dir(mount.join("v1.2"));
    if naming.delimiter == '.' {
        assert_eq!(
            dotted.map_err(|e| e.raw_os_error()),
            Err(Some(libc::EINVAL)),
            "{kind:?}: mkdir v1.2"
        );
    } else {
        dotted.unwrap();
        assert!(wire_mailboxes(server).contains(&wire("v1.2")));
    }

    ok(
        &mount,
        "mv",
        fs::rename(mount.join("Projets"), mount.join("Projects")),
    );
    let listed = wire_mailboxes(server);
    assert!(
        listed.contains(&wire("Projects/Été 2024")),
        "{kind:?}: {listed:?}"
    );
    assert!(!listed.contains(&wire("Projets")), "{kind:?}: {listed:?}");
    assert!(names(&mount.join("Projects")).contains("Été 2024"));

    ok(
        &mount,
        "rmdir",
        fs::remove_dir(mount.join("Projects/Été 2024")),
    );
    ok(&mount, "rmdir", fs::remove_dir(mount.join("Projects")));
    let listed = wire_mailboxes(server);
    assert!(
        !listed.iter().any(|n| n.contains("Proje")),
        "{kind:?}: {listed:?}"
    );
    assert!(!names(&mount.path).contains("Projects"));
}

fn new_files_flags_moves_and_deletes_reach_the_server(kind: ServerKind) {
    changes(start(kind).as_ref(), &Expect::of(kind), &[]);
}

/// A new file, flags, a move (MOVE or its fallback), rm -r to Trash and from Trash, each
/// checked on the server; `args` are extra mount options.
pub fn changes(server: &dyn ImapServer, expect: &Expect, args: &[&str]) {
    let kind = server.kind();
    let mut client = server.client("alice").unwrap();
    let plain = sample("plain");
    fixture::append(&mut client, "INBOX", &plain.raw, &[]).unwrap();
    let _ = client.logout();
    // Other messages may be there already: every count below is relative.
    let count = |mailbox: &str| messages(server, mailbox).len();
    let (inbox_before, archive_before) = (count("INBOX"), count("Archive"));
    let mount = MountSpec::on(server, "alice").args(args).mount();

    // A new file becomes a message whose attachment is the file.
    let data: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
    {
        let mut file = fs::File::create(mount.join("Archive/numbers.bin")).unwrap();
        file.write_all(&data).unwrap();
    }
    let archived = messages(server, "Archive");
    assert_eq!(
        archived.len(),
        archive_before + 1,
        "{kind:?}: Archive after cp\n{}",
        mount.log()
    );
    let raw = String::from_utf8_lossy(&archived.last().unwrap().2).into_owned();
    assert!(raw.contains("X-Imapfs-File"), "{kind:?}: {raw:.300}");
    assert_eq!(fs::read(mount.join("Archive/numbers.bin")).unwrap(), data);

    // Flags.
    let msg = mount.message_dir("INBOX", &plain.subject);
    sh_ok(
        &format!(
            "setfattr -n user.imap.flags -v '\\Flagged $Work' {}",
            shq(&msg)
        ),
        &mount,
    );
    // The flags of the newest message of INBOX on the server.
    let newest_flags = |inbox: &[(u32, Vec<String>, Vec<u8>)]| -> BTreeSet<String> {
        inbox.last().unwrap().1.iter().cloned().collect()
    };
    let inbox = messages(server, "INBOX");
    assert_eq!(
        newest_flags(&inbox),
        set(&["\\Flagged", "$Work"]),
        "{kind:?}: flags on the server"
    );
    // Flags added and removed one by one, and added to every message of a mailbox.
    sh_ok(
        &format!(
            "setfattr -n user.imap.flags -v '+\\Seen -$Work' {}",
            shq(&msg)
        ),
        &mount,
    );
    sh_ok(
        &format!(
            "setfattr -n user.imap.flags -v '+$Filed' {}",
            shq(&mount.join("INBOX"))
        ),
        &mount,
    );
    let inbox = messages(server, "INBOX");
    assert_eq!(
        newest_flags(&inbox),
        set(&["\\Flagged", "\\Seen", "$Filed"]),
        "{kind:?}: flags changed on the server"
    );
    assert!(
        inbox.iter().all(|m| m.1.iter().any(|f| f == "$Filed")),
        "{kind:?}: $Filed on every message of INBOX: {inbox:?}"
    );

    // A move to another mailbox, by MOVE or by its fallback.
    let before = sent_commands(&mount).len();
    sh_ok(
        &format!("mv {} {}", shq(&msg), shq(&mount.join("Sent"))),
        &mount,
    );
    let sent = messages(server, "Sent");
    assert_eq!(sent.len(), 1, "{kind:?}: Sent after mv");
    assert_eq!(sent[0].2, plain.raw);
    assert_eq!(count("INBOX"), inbox_before - 1);
    let sent_commands = sent_commands(&mount)[before..].to_vec();
    if expect.move_command {
        assert!(
            sent_commands.contains(&"UID MOVE".to_string()),
            "{sent_commands:?}"
        );
    } else {
        assert!(
            !sent_commands.contains(&"UID MOVE".to_string()),
            "{sent_commands:?}"
        );
        for fallback in ["UID COPY", "UID STORE", "UID EXPUNGE"] {
            assert!(
                sent_commands.contains(&fallback.to_string()),
                "{kind:?}: {fallback} missing from {sent_commands:?}"
            );
        }
    }

    // rm -r goes to Trash, found by SPECIAL-USE or by name.
    let moved = mount.message_dir("Sent", &plain.subject);
    sh_ok(&format!("rm -r {}", shq(&moved)), &mount);
    assert!(messages(server, "Sent").is_empty());
    let trash = messages(server, "Trash");
    assert_eq!(
        trash.len(),
        1,
        "{kind:?}: Trash after rm -r\n{}",
        mount.log()
    );
    assert_eq!(trash[0].2, plain.raw);
    let trash_attribute = {
        let mut client = server.client("alice").unwrap();
        let listed = client.list(Some(""), Some("*")).unwrap();
        let marked = listed.iter().any(|n| {
            n.attributes()
                .iter()
                .any(|a| matches!(a, imap_proto::NameAttribute::Trash))
        });
        let _ = client.logout();
        marked
    };
    assert_eq!(
        trash_attribute, expect.special_use,
        "{kind:?}: \\Trash attribute (Trash found by it, or by name)"
    );
    // ...and inside Trash, rm -r expunges that one message.
    let in_trash = mount.message_dir("Trash", &plain.subject);
    sh_ok(&format!("rm -r {}", shq(&in_trash)), &mount);
    assert!(messages(server, "Trash").is_empty());
}

/// Every IMAP command line imapfs sent so far, as its debug log shows it (`TAG VERB ...`,
/// literals as `{n}`, secrets as `***`).
pub fn sent_lines(mount: &Mount) -> Vec<String> {
    mount
        .log()
        .lines()
        .filter_map(|line| Some(line.split_once("C: ")?.1.to_string()))
        .collect()
}

/// The verb of every IMAP command imapfs sent so far (`UID MOVE`, `SELECT`...), from its
/// debug log (`C: TAG VERB ...`), in order.
pub fn sent_commands(mount: &Mount) -> Vec<String> {
    mount
        .log()
        .lines()
        .filter_map(|line| {
            let (_, command) = line.split_once("C: ")?;
            let mut words = command.split_whitespace().skip(1);
            let verb = words.next()?.to_ascii_uppercase();
            Some(if verb == "UID" {
                format!("UID {}", words.next()?.to_ascii_uppercase())
            } else {
                verb
            })
        })
        .collect()
}

fn search_finds_messages_on_the_server(kind: ServerKind) {
    search(with_samples(kind).as_ref());
}

/// `.search` in a mailbox and at the root.
pub fn search(server: &dyn ImapServer) {
    let kind = server.kind();
    let mount = MountSpec::on(server, "alice").mount();
    let hits = names(&mount.join("INBOX/.search/subject:greeting"));
    assert_eq!(hits.len(), 1, "{kind:?}: {hits:?}\n{}", mount.log());
    assert!(hits.iter().next().unwrap().ends_with("Plain text greeting"));
    let everywhere = names(&mount.join(".search/from:alice"));
    assert!(everywhere.contains("INBOX"), "{kind:?}: {everywhere:?}");
    // Non-ASCII text goes as a literal with CHARSET UTF-8.
    let hits = listed(&mount, "INBOX/.search/subject:crème");
    assert_eq!(hits.len(), 1, "{kind:?}: {hits:?}");
}

/// A live mount (issue 11) on each server: another client's new message in INBOX and in
/// another listed mailbox, and a flag it sets, show without anyone reading again, whatever
/// the server offers (Dovecot: NOTIFY; Cyrus and Courier: IDLE and polls, every second here).
fn changes_elsewhere_show_by_themselves(kind: ServerKind) {
    let server = with_samples(kind);
    let server = server.as_ref();
    let mount = MountSpec::on(server, "alice")
        .args(&["--poll-interval", "1"])
        .mount();
    let inbox = listed(&mount, "INBOX");
    listed(&mount, "Archive");
    let shows = |what: &str, check: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            if check() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "{kind:?}: {what} did not show; imapfs log:\n{}",
            mount.log()
        );
    };
    let names_in = |rel: &str| -> BTreeSet<String> {
        fs::read_dir(mount.join(rel))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut other = server.client("alice").expect("login");
    let raw = |subject: &str| {
        format!(
            "From: o@example.com\r\nSubject: {subject}\r\nMessage-ID: <{subject}@x>\r\n\r\nHi.\r\n"
        )
    };
    let uid = fixture::append(&mut other, "INBOX", raw("Arrived").as_bytes(), &[]).unwrap();
    let name = format!("{uid} Arrived");
    shows("a new message in INBOX", &|| {
        names_in("INBOX").contains(&name)
    });
    let archive = fixture::encode_mailbox_name(&server.naming().wire("Archive"));
    let uid = fixture::append(&mut other, &archive, raw("Filed").as_bytes(), &[]).unwrap();
    let filed = format!("{uid} Filed");
    shows("a new message in Archive", &|| {
        names_in("Archive").contains(&filed)
    });
    let first = inbox.iter().next().expect("a message in INBOX").clone();
    let first_uid = first.split(' ').next().unwrap().to_string();
    other.select("INBOX").unwrap();
    other.uid_store(&first_uid, "+FLAGS (\\Flagged)").unwrap();
    let flags_path = mount.join(&format!("INBOX/{first}"));
    shows("a flag set in INBOX", &|| {
        let out = sh(&format!(
            "getfattr --only-values -n user.imap.flags {}",
            shq(&flags_path)
        ));
        String::from_utf8_lossy(&out.stdout).contains("\\Flagged")
    });
    let _ = other.logout();
    // How it heard, per server.
    let sent = sent_commands(&mount);
    assert!(
        sent.iter().any(|c| c == watch_command(kind)),
        "{kind:?} should be watched with {}: {sent:?}",
        watch_command(kind)
    );
}

/// Once INBOX and another mailbox are listed and the watcher has them in hand, the mount
/// is quiet: on a server whose EXAMINE has no UIDNEXT (Courier), checking a listing could
/// only find it stale, and listing it again asked for another check, a loop of EXAMINEs.
fn listed_mailboxes_cost_nothing_at_rest(kind: ServerKind) {
    let server = with_samples(kind);
    let mount = MountSpec::on(server.as_ref(), "alice").mount();
    for mailbox in ["INBOX", "Reçus"] {
        assert!(
            !names(&mount.join(mailbox)).is_empty(),
            "{kind:?}: {mailbox}"
        );
    }
    super::live::settle(&mount);
    let before = counter(&mount, "commands");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let sent = counter(&mount, "commands") - before;
    // A poll of the mailbox list may fall in the window; the loop sent dozens.
    assert!(
        sent <= 4,
        "{kind:?}: {sent} commands in 3 s at rest\n{}",
        mount.log()
    );
}
