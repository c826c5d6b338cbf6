//! imapfs against a hostile or broken server (the scripted fake of `fake_server.rs`).
//!
//! Whatever the server sends, imapfs must answer EIO or ENOENT for what it cannot use, never
//! panic, never show a name that is not one safe path component, keep its memory bounded, and
//! go on serving everything else (the INBOX control message is checked after each test).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::fake_server::*;
use super::faults::{errno, walk_checking_names, within, Imapfs};
use super::support::*;

/// Longest any single filesystem call may take (`--timeout 3`, one retry, reconnects).
const OP_LIMIT: Duration = Duration::from_secs(20);
const CONTROL_BODY: &str = "The control message is fine.\n";
const INTERNALDATE: &str = "\"01-Mar-2023 10:00:00 +0000\"";

/// INBOX with one well-behaved message, read after every test to show the mount still works.
fn control_mailbox() -> FakeMailbox {
    FakeMailbox::new("INBOX", vec![FakeMessage::text(1, "Control", CONTROL_BODY)])
}

fn mount(server: &FakeServer) -> (Mount, Imapfs) {
    let mount = MountSpec {
        source: server.source(),
        password: PASSWORD.into(),
        ca_file: None,
        args: Vec::new(),
    }
    .args(&["--allow-plaintext", "--timeout", "3"])
    .mount();
    let process = Imapfs::of(&mount);
    (mount, process)
}

fn read(path: PathBuf) -> io::Result<Vec<u8>> {
    within(OP_LIMIT, &format!("read {}", path.display()), move || {
        fs::read(&path)
    })
    .0
}

/// The sorted names in a directory.
fn list(path: PathBuf) -> io::Result<Vec<String>> {
    within(OP_LIMIT, &format!("list {}", path.display()), move || {
        let mut names = fs::read_dir(&path)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().to_string()))
            .collect::<io::Result<Vec<String>>>()?;
        names.sort();
        Ok(names)
    })
    .0
}

/// Walks `depth` levels below `root`, checking that every name is one safe component (see
/// `walk_checking_names`), and returns the directories that could not be listed, relative to
/// `root`, with their errno.
fn unlistable(root: PathBuf, depth: usize) -> BTreeMap<String, i32> {
    let what = format!("walk {}", root.display());
    within(OP_LIMIT * 3, &what, move || {
        let mut failures = Vec::new();
        walk_checking_names(&root, depth, &mut failures);
        failures
            .into_iter()
            .map(|(path, e)| {
                let relative = path.strip_prefix(root.to_str().unwrap()).unwrap_or(&path);
                (relative.trim_start_matches('/').to_string(), e)
            })
            .collect()
    })
    .0
}

/// Fails unless `result` failed with one of `allowed`.
fn assert_fails_with<T: std::fmt::Debug>(what: &str, result: &io::Result<T>, allowed: &[i32]) {
    match errno(result) {
        Some(e) if allowed.contains(&e) => {}
        Some(e) => panic!(
            "{what}: failed with {} (errno {e}), expected one of {allowed:?}",
            io::Error::from_raw_os_error(e)
        ),
        None => panic!("{what}: succeeded ({result:?}); expected an error"),
    }
}

/// The mount still works: INBOX lists and its control message reads exactly; imapfs is alive
/// and printed no panic.
fn assert_still_serving(mount: &Mount, process: &Imapfs) {
    assert_eq!(
        list(mount.join("INBOX")).expect("INBOX still lists"),
        ["1 Control"]
    );
    let body = read(mount.join("INBOX/1 Control/body.txt")).expect("control body reads");
    assert_eq!(body, CONTROL_BODY.as_bytes());
    process.assert_healthy(mount);
}

/// A listing FETCH line built by hand (`items` go between UID and the subject literal).
fn listing_line(seq: usize, uid: u32, items: &str, subject: &str) -> Vec<u8> {
    let field = format!("Subject: {subject}\r\n\r\n");
    format!(
        "* {seq} FETCH (UID {uid} {items} BODY[HEADER.FIELDS (SUBJECT)] {{{}}}\r\n{field})\r\n",
        field.len()
    )
    .into_bytes()
}

fn good(uid: u32) -> FakeMessage {
    FakeMessage::text(uid, &format!("Good {uid}"), &format!("good body {uid}\n"))
}

#[test]
fn broken_bodystructures_give_eio_and_spare_the_good_messages() {
    let mut truncated = FakeMessage::text(3, "Truncated", "x\n");
    truncated.bodystructure = b"(\"text\" \"plain\" (\"charset\"".to_vec();
    let mut cut = FakeMessage::text(5, "Cut", "x\n");
    cut.on_structure = Misbehaviour::CutAfter(40);
    let mut other_uid = FakeMessage::text(7, "Other uid", "x\n");
    other_uid.on_structure = Misbehaviour::Replace(
        b"* 7 FETCH (UID 99 BODYSTRUCTURE (\"text\" \"plain\" NIL NIL NIL \"7bit\" 3 1 NIL NIL NIL NIL))\r\n"
            .to_vec(),
    );
    let mut envelope = FakeMessage::text(9, "Broken envelope", "x\n");
    envelope.bodystructure = b"(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 40 (NIL \"x\" NIL) (\"text\" \"plain\" NIL NIL NIL \"7bit\" 3 1 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)".to_vec();
    let mut not_a_list = FakeMessage::text(11, "Not a list", "x\n");
    not_a_list.bodystructure = b"NIL".to_vec();
    let messages = vec![
        good(1),
        good(2),
        truncated,
        good(4),
        cut,
        good(6),
        other_uid,
        good(8),
        envelope,
        good(10),
        not_a_list,
        good(12),
    ];
    let bad: BTreeSet<u32> = [3, 5, 7, 9, 11].into();
    let server = FakeServer::start(Script::new(vec![
        control_mailbox(),
        FakeMailbox::new("Broken", messages.clone()),
    ]));
    let (mount, process) = mount(&server);

    // Walk the message directories in order, as `ls -R` or `find` would.
    let mut wrong = Vec::new();
    for message in &messages {
        let name = format!("{} {}", message.uid, message.subject_text());
        let dir = mount.join("Broken").join(&name);
        let listed = list(dir.clone());
        if bad.contains(&message.uid) {
            // ESTALE: a directory read fails so when what it shows is gone (see `fuse.rs`).
            if !matches!(
                errno(&listed),
                Some(libc::EIO | libc::ENOENT | libc::ESTALE)
            ) {
                wrong.push(format!(
                    "{name}: {listed:?}, expected EIO, ENOENT or ESTALE"
                ));
            }
            continue;
        }
        match listed {
            Ok(names) if names == ["body.txt", "message.eml"] => {
                let body = read(dir.join("body.txt"));
                let want = format!("good body {}\n", message.uid).into_bytes();
                if body.as_ref().ok() != Some(&want) {
                    wrong.push(format!("{name}/body.txt: {body:?}"));
                }
            }
            other => wrong.push(format!("{name}: {other:?}, expected its two files")),
        }
    }
    let structure_fetches: Vec<String> = server
        .commands()
        .into_iter()
        .filter(|c| c.contains("BODYSTRUCTURE"))
        .collect();
    assert!(
        wrong.is_empty(),
        "walking the mailbox in order:\n{}\nBODYSTRUCTURE requests: {structure_fetches:#?}",
        wrong.join("\n")
    );
    // A walk of the whole mount fails on the broken messages alone, with EIO, ENOENT or
    // ESTALE.
    let failures = unlistable(mount.path.clone(), 3);
    let failed: BTreeSet<String> = failures.keys().cloned().collect();
    let broken: BTreeSet<String> = messages
        .iter()
        .filter(|m| bad.contains(&m.uid))
        .map(|m| format!("Broken/{} {}", m.uid, m.subject_text()))
        .collect();
    assert_eq!(failed, broken, "{failures:?}");
    assert!(
        failures
            .values()
            .all(|e| [libc::EIO, libc::ENOENT, libc::ESTALE].contains(e)),
        "{failures:?}"
    );
    assert_still_serving(&mount, &process);
}

#[test]
fn broken_listing_responses_fail_only_their_mailbox() {
    let mut no_size = FakeMessage::text(2, "Dropped", "x\n");
    no_size.on_listing = Misbehaviour::Replace(listing_line(
        2,
        2,
        &format!("FLAGS () INTERNALDATE {INTERNALDATE}"),
        "Dropped",
    ));
    let mut garbage = FakeMessage::text(1, "Garbage", "x\n");
    garbage.on_listing =
        Misbehaviour::Replace(b"* 1 FETCH (UID 1 RFC822.SIZE banana)\r\n".to_vec());
    let mut cut = FakeMessage::text(1, "Cut", "x\n");
    cut.on_listing = Misbehaviour::CutAfter(25);
    let mut short = FakeMessage::text(1, "Short", "x\n");
    short.on_listing = Misbehaviour::ShortLiteral {
        announced: 500,
        sent: 10,
    };
    let mut bye_once = FakeMessage::text(1, "Fine after a bye", "after bye\n");
    bye_once.on_listing = Misbehaviour::FirstTimes(1, Box::new(Misbehaviour::Bye));
    let mut twice = FakeMessage::text(1, "First", "twice\n");
    let size = twice.raw.len();
    let mut lines = listing_line(
        1,
        1,
        &format!("FLAGS () RFC822.SIZE {size} INTERNALDATE {INTERNALDATE}"),
        "First",
    );
    lines.extend(listing_line(
        1,
        1,
        &format!("FLAGS () RFC822.SIZE {size} INTERNALDATE {INTERNALDATE}"),
        "Second",
    ));
    twice.on_listing = Misbehaviour::Replace(lines);
    let server = FakeServer::start(Script::new(vec![
        control_mailbox(),
        FakeMailbox::new(
            "Skips",
            vec![
                FakeMessage::text(1, "Kept one", "one\n"),
                no_size,
                FakeMessage::text(3, "Kept three", "three\n"),
            ],
        ),
        FakeMailbox::new("Garbage", vec![garbage]),
        FakeMailbox::new("Cut", vec![cut]),
        FakeMailbox::new("Short", vec![short]),
        FakeMailbox::new("ByeOnce", vec![bye_once]),
        FakeMailbox::new("Twice", vec![twice]),
    ]));
    let (mount, process) = mount(&server);

    // A message the server describes without RFC822.SIZE is left out; the rest are listed.
    assert_eq!(
        list(mount.join("Skips")).unwrap(),
        ["1 Kept one", "3 Kept three"]
    );
    assert_eq!(
        read(mount.join("Skips/3 Kept three/body.txt")).unwrap(),
        b"three\n"
    );
    for mailbox in ["Garbage", "Cut", "Short"] {
        assert_fails_with(
            &format!("ls {mailbox}"),
            &list(mount.join(mailbox)),
            &[libc::EIO],
        );
    }
    // One BYE costs a reconnect and a retry, not the listing.
    let before = server.connections();
    assert_eq!(list(mount.join("ByeOnce")).unwrap(), ["1 Fine after a bye"]);
    assert!(server.connections() > before, "no reconnect after BYE");
    assert_eq!(
        read(mount.join("ByeOnce/1 Fine after a bye/body.txt")).unwrap(),
        b"after bye\n"
    );
    // The same UID twice: one directory, never two names for one UID.
    let twice = list(mount.join("Twice")).unwrap();
    assert_eq!(twice.len(), 1, "{twice:?}");
    assert_eq!(
        read(mount.join("Twice").join(&twice[0]).join("body.txt")).unwrap(),
        b"twice\n"
    );
    // A walk of the whole mount fails on the three broken mailboxes alone, with EIO.
    let failures = unlistable(mount.path.clone(), 3);
    let expected: BTreeMap<String, i32> = ["Garbage", "Cut", "Short"]
        .into_iter()
        .map(|mailbox| (mailbox.to_string(), libc::EIO))
        .collect();
    assert_eq!(failures, expected);
    assert_still_serving(&mount, &process);
}

#[test]
fn short_literals_and_size_lies_are_errors_never_short_files() {
    let mut short = FakeMessage::text(1, "Short literal", "short literal body\n");
    short.on_section = Misbehaviour::ShortLiteral {
        announced: 1000,
        sent: 100,
    };
    let mut short_once = FakeMessage::text(2, "Short once", "short once body\n");
    short_once.on_section = Misbehaviour::FirstTimes(
        1,
        Box::new(Misbehaviour::ShortLiteral {
            announced: 1000,
            sent: 100,
        }),
    );
    // RFC822.SIZE larger than the message: the server sends less than it promised.
    let mut too_big = FakeMessage::text(3, "Size too big", "size too big body\n");
    too_big.size = (too_big.raw.len() + 5000).to_string();
    // RFC822.SIZE smaller than the message: a file cut at the announced size would be wrong.
    let mut too_small = FakeMessage::text(4, "Size too small", "size too small body\n");
    too_small.size = "10".into();
    let raw_too_small = too_small.raw.clone();
    // RFC822.SIZE past the 32 bits RFC 3501 gives it: no message is that, and reads, the
    // cache and `df` would be sized by it. The message is left out of the listing.
    let mut absurd = FakeMessage::text(5, "Size absurd", "size absurd body\n");
    absurd.size = "1000000000000000".into();
    let server = FakeServer::start(Script::new(vec![
        control_mailbox(),
        FakeMailbox::new("Lies", vec![short, short_once, too_big, too_small, absurd]),
    ]));
    let (mount, process) = mount(&server);
    let dir = |name: &str| mount.join("Lies").join(name);
    assert_eq!(
        list(mount.join("Lies")).unwrap(),
        [
            "1 Short literal",
            "2 Short once",
            "3 Size too big",
            "4 Size too small"
        ]
    );
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    let c_path = std::ffi::CString::new(mount.path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path and a buffer statvfs fills.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stats.as_mut_ptr()) };
    assert_eq!(rc, 0, "df of the mount: {}", io::Error::last_os_error());

    assert_fails_with(
        "body.txt of a literal cut short",
        &read(dir("1 Short literal").join("body.txt")),
        &[libc::EIO],
    );
    assert_fails_with(
        "message.eml of a literal cut short",
        &read(dir("1 Short literal").join("message.eml")),
        &[libc::EIO],
    );
    // Cut short once: the read is retried on a new connection and is exact.
    assert_eq!(
        read(dir("2 Short once").join("body.txt")).unwrap(),
        b"short once body\n"
    );
    assert_fails_with(
        "message.eml shorter than its RFC822.SIZE",
        &read(dir("3 Size too big").join("message.eml")),
        &[libc::EIO],
    );
    let got = read(dir("4 Size too small").join("message.eml"));
    assert!(
        matches!(errno(&got), Some(libc::EIO)) || got.as_ref().ok() == Some(&raw_too_small),
        "message.eml longer than its RFC822.SIZE must be EIO or the whole message, got {:?}",
        got.map(|b| String::from_utf8_lossy(&b).to_string())
    );
    assert_still_serving(&mount, &process);
}

#[test]
fn huge_literals_are_refused_without_allocating_them() {
    let flood = |announced: &str| Misbehaviour::Flood {
        announced: announced.into(),
        limit: 2 << 30,
    };
    let mut u32_flood = FakeMessage::text(1, "Four GB", "x\n");
    u32_flood.on_section = flood("4000000000");
    let mut u64_flood = FakeMessage::text(2, "Five GB", "x\n");
    u64_flood.on_section = flood("5000000000");
    let mut absurd = FakeMessage::text(3, "Absurd", "x\n");
    absurd.on_section = flood("99999999999999999999999999");
    let mut structure = FakeMessage::text(4, "Structure flood", "x\n");
    structure.on_structure = flood("4000000000");
    let mut listing = FakeMessage::text(1, "Listing flood", "x\n");
    listing.on_listing = flood("4000000000");
    let server = FakeServer::start(Script::new(vec![
        control_mailbox(),
        FakeMailbox::new("Floods", vec![u32_flood, u64_flood, absurd]),
        // Alone, so that BODYSTRUCTURE read-ahead for the others never includes it.
        FakeMailbox::new("FloodStructure", vec![structure]),
        FakeMailbox::new("FloodList", vec![listing]),
    ]));
    let (mount, process) = mount(&server);
    let floods = mount.join("Floods");
    // Looked up before any flood, so each failure below is the flood's alone.
    assert_eq!(
        list(floods.clone()).unwrap(),
        ["1 Four GB", "2 Five GB", "3 Absurd"]
    );
    for name in ["1 Four GB", "2 Five GB", "3 Absurd"] {
        assert_fails_with(
            &format!("{name}/body.txt"),
            &read(floods.join(name).join("body.txt")),
            &[libc::EIO],
        );
        assert_fails_with(
            &format!("{name}/message.eml"),
            &read(floods.join(name).join("message.eml")),
            &[libc::EIO],
        );
    }
    assert_fails_with(
        "ls of a message whose BODYSTRUCTURE floods",
        &list(mount.join("FloodStructure/4 Structure flood")),
        &[libc::EIO],
    );
    assert_fails_with(
        "ls of a mailbox whose listing floods",
        &list(mount.join("FloodList")),
        &[libc::EIO],
    );
    let peak_mib = process.peak_rss_kib() / 1024;
    assert!(
        peak_mib < 200,
        "imapfs peaked at {peak_mib} MiB resident while refusing huge literals"
    );
    assert_still_serving(&mount, &process);
}

/// A server whose mailbox `name` answers with `failure`: the first read of message 1's
/// part, every read of message 2's, and the first BODYSTRUCTURE of message 3. Subjects are
/// `{word} once`, `{word} always` and `{word} on structure`.
fn failing_reads(name: &str, word: &str, failure: Misbehaviour) -> FakeServer {
    let first_time = || Misbehaviour::FirstTimes(1, Box::new(failure.clone()));
    let once_body = format!("{} once body\n", word.to_lowercase());
    let mut once = FakeMessage::text(1, &format!("{word} once"), &once_body);
    once.on_section = first_time();
    let mut always = FakeMessage::text(2, &format!("{word} always"), "never seen\n");
    always.on_section = failure.clone();
    let mut structure = FakeMessage::text(3, &format!("{word} on structure"), "structure body\n");
    structure.on_structure = first_time();
    FakeServer::start(Script::new(vec![
        control_mailbox(),
        FakeMailbox::new(name, vec![once, always, structure]),
    ]))
}

/// Message 3 of `failing_reads` in `dir`: its BODYSTRUCTURE, failed once, was asked again,
/// and the directory lists and reads whole.
fn assert_structure_asked_again(dir: &Path, word: &str) {
    let message = dir.join(format!("3 {word} on structure"));
    assert_eq!(list(message.clone()).unwrap(), ["body.txt", "message.eml"]);
    assert_eq!(read(message.join("body.txt")).unwrap(), b"structure body\n");
}

#[test]
fn an_unexpected_bye_is_retried_once_then_eio() {
    let server = failing_reads("Byes", "Bye", Misbehaviour::Bye);
    let (mount, process) = mount(&server);
    let dir = mount.join("Byes");
    let connections = server.connections();
    assert_eq!(
        read(dir.join("1 Bye once/body.txt")).unwrap(),
        b"bye once body\n"
    );
    assert_fails_with(
        "a part the server always answers with BYE",
        &read(dir.join("2 Bye always/body.txt")),
        &[libc::EIO],
    );
    assert_structure_asked_again(&dir, "Bye");
    assert!(
        server.connections() >= connections + 3,
        "each BYE should cost one new connection: {} -> {}",
        connections,
        server.connections()
    );
    assert_still_serving(&mount, &process);
}

/// A `NO [SERVERBUG]` (the server failed internally, RFC 5530) closes the connection it came
/// on, since that session may hold what the failed command took (Dovecot can keep a
/// mailbox's lock file, which stalls every other session), and a read is retried once on a
/// new connection. A part the server always fails is EIO, and the mount goes on serving.
#[test]
fn a_serverbug_answer_closes_its_connection_and_a_read_is_retried_once() {
    const BUG: &str =
        "[SERVERBUG] Internal error occurred. Refer to server log for more information.";
    let server = failing_reads("Bugs", "Bug", Misbehaviour::Refuse(BUG.into()));
    let (mount, process) = mount(&server);
    let dir = mount.join("Bugs");
    // Counted by what the server refused and heard afterwards, not by connections made:
    // the watcher and the pool may open theirs at any moment on a loaded machine.
    assert_eq!(
        read(dir.join("1 Bug once/body.txt")).unwrap(),
        b"bug once body\n"
    );
    assert_eq!(
        server.refused_sections(),
        1,
        "message 1's part is refused once"
    );
    assert_eq!(
        server.commands_after_refusal(),
        0,
        "the connection that met SERVERBUG is given up, and the read retried on another\nimapfs log:\n{}",
        mount.log()
    );
    assert_fails_with(
        "a part the server always fails on",
        &read(dir.join("2 Bug always/body.txt")),
        &[libc::EIO],
    );
    // Each command it failed on was tried on two connections, both given up; a read may
    // send two (the part read ahead with the next message's, then the part alone), never
    // more. (Message 3's structure, read ahead with message 2's, may be refused too.)
    let refused = server.refused_sections() - 1;
    assert!(
        (2..=4).contains(&refused),
        "{refused} refusals for one failing read: {:#?}",
        server.commands()
    );
    assert_eq!(
        server.commands_after_refusal(),
        0,
        "a connection that met SERVERBUG was used again\nimapfs log:\n{}",
        mount.log()
    );
    assert_structure_asked_again(&dir, "Bug");
    assert_still_serving(&mount, &process);
}

/// Responses nobody asked for, in the middle of answers (RFC 3501 §7 allows most of them at
/// any time): an ALERT, which is logged for the user to see, mailbox news, a flag update
/// without a UID, a CAPABILITY, a NO and a code imapfs does not know. Reads stay exact.
#[test]
fn untagged_responses_in_unexpected_places_are_taken_in_stride() {
    let unexpected = b"* OK [ALERT] Maintenance at 22:00 UTC\r\n\
        * 7 EXISTS\r\n\
        * 2 RECENT\r\n\
        * 1 FETCH (FLAGS (\\Seen))\r\n\
        * CAPABILITY IMAP4rev1 LITERAL+\r\n\
        * NO [UNAVAILABLE] Search backend down\r\n\
        * OK [XWHATEVER 1 2 (3)] new code\r\n"
        .to_vec();
    let mut on_section = FakeMessage::text(1, "Noisy section", "noisy section body\n");
    on_section.on_section = Misbehaviour::Prepend(unexpected.clone());
    let mut on_structure = FakeMessage::text(2, "Noisy structure", "noisy structure body\n");
    on_structure.on_structure = Misbehaviour::Prepend(unexpected.clone());
    let mut on_listing = FakeMessage::text(3, "Noisy listing", "noisy listing body\n");
    on_listing.on_listing = Misbehaviour::Prepend(unexpected);
    let server = FakeServer::start(Script::new(vec![
        control_mailbox(),
        FakeMailbox::new("Noisy", vec![on_section, on_structure, on_listing]),
    ]));
    let (mount, process) = mount(&server);
    let dir = mount.join("Noisy");
    assert_eq!(
        list(dir.clone()).unwrap(),
        ["1 Noisy section", "2 Noisy structure", "3 Noisy listing"]
    );
    for (name, body) in [
        ("1 Noisy section", "noisy section body\n"),
        ("2 Noisy structure", "noisy structure body\n"),
        ("3 Noisy listing", "noisy listing body\n"),
    ] {
        assert_eq!(
            read(dir.join(name).join("body.txt")).unwrap(),
            body.as_bytes()
        );
    }
    let log = mount.log();
    let alerts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("ALERT"))
        .collect();
    assert!(
        !alerts.is_empty()
            && alerts
                .iter()
                .all(|l| l.contains("Maintenance at 22:00 UTC")),
        "{log}"
    );
    assert_still_serving(&mount, &process);
}

/// A server without hierarchy (LIST's delimiter `NIL`): every name is one level, `/` and
/// `.` included, and a nested `mkdir` is EINVAL before anything is sent.
#[test]
fn without_a_hierarchy_every_name_is_one_level() {
    let mut script = Script::new(vec![
        control_mailbox(),
        FakeMailbox::new("a/b", vec![FakeMessage::text(1, "slash", "from a/b\n")]),
        FakeMailbox::new("x.y", vec![FakeMessage::text(1, "dot", "from x.y\n")]),
    ]);
    script.delimiter = None;
    let server = FakeServer::start(script);
    let (mount, process) = mount(&server);
    assert_eq!(list(mount.path.clone()).unwrap(), ["INBOX", "a_b", "x.y"]);
    assert_eq!(
        read(mount.join("x.y/1 dot/body.txt")).unwrap(),
        b"from x.y\n"
    );
    assert_eq!(
        read(mount.join("a_b/1 slash/body.txt")).unwrap(),
        b"from a/b\n"
    );
    let before = server.commands().len();
    let nested = fs::create_dir(mount.join("x.y/sub"));
    assert_eq!(
        nested.map_err(|e| e.raw_os_error()),
        Err(Some(libc::EINVAL))
    );
    assert!(
        !server.commands()[before..]
            .iter()
            .any(|c| c.to_ascii_uppercase().contains("CREATE")),
        "{:?}",
        server.commands()
    );
    assert_still_serving(&mount, &process);
}

/// Attachment file names a server might send, as Content-Disposition (name, value).
fn hostile_file_names() -> Vec<(&'static str, Vec<u8>)> {
    let mut names: Vec<(&str, Vec<u8>)> = vec![
        ("filename", b"..".to_vec()),
        ("filename", b".".to_vec()),
        ("filename", b"../../etc/passwd".to_vec()),
        ("filename", b"a/b".to_vec()),
        ("filename", b"/".to_vec()),
        ("filename", b"/etc/shadow".to_vec()),
        ("filename", Vec::new()),
        ("filename", b"   ".to_vec()),
        ("filename", b"nul\0inside.txt".to_vec()),
        ("filename", b"cr\r\nlf.txt".to_vec()),
        ("filename", b"=?utf-8?q?encoded=00nul.txt?=".to_vec()),
        ("filename", b"=?utf-8?q?..=2F..=2Fetc=2Fshadow?=".to_vec()),
        ("filename", b"=?utf-8?q?..?=".to_vec()),
        (
            "filename*",
            b"utf-8''..%2F..%2Froot%2F.ssh%2Fauthorized_keys".to_vec(),
        ),
        ("filename*", b"utf-8''%2E%2E".to_vec()),
        ("filename*", b"utf-8''%00".to_vec()),
        ("filename", b"\x1b[31mred\x1b[0m.txt".to_vec()),
        ("filename", b"tab\there\x7f.txt".to_vec()),
        ("filename", b"bell\x07\x01\x1f.txt".to_vec()),
        ("filename", "\u{202e}fdp.exe".as_bytes().to_vec()),
        ("filename", "line\u{2028}sep\u{85}.txt".as_bytes().to_vec()),
        ("filename", format!("{}.pdf", "a".repeat(996)).into_bytes()),
        ("filename", "é".repeat(500).into_bytes()),
        ("filename", "b".repeat(255).into_bytes()),
        ("filename", "c".repeat(1000).into_bytes()),
    ];
    names.extend((0..50).map(|_| ("filename", b"same.txt".to_vec())));
    names
}

/// Subjects a server might send, raw.
fn hostile_subjects() -> Vec<Vec<u8>> {
    vec![
        b"\x1b[31mRed alert\x1b[0m".to_vec(),
        b"=?utf-8?q?=1B]0;pwned=07?=".to_vec(),
        b"../../etc/passwd".to_vec(),
        b"..".to_vec(),
        b".".to_vec(),
        b"/".to_vec(),
        b"a\0b\rc".to_vec(),
        b"=?utf-8?b?AAAA?=".to_vec(),
        "x".repeat(1000).into_bytes(),
        "ü".repeat(600).into_bytes(),
        b"\x01\x02".to_vec(),
        Vec::new(),
    ]
}

#[test]
fn hostile_names_become_single_safe_components() {
    let file_names = hostile_file_names();
    let attachments: Vec<FakeAttachment> = file_names
        .iter()
        .enumerate()
        .map(|(i, (param, value))| FakeAttachment {
            params: vec![(param.to_string(), value.clone())],
            content: format!("content of part {i}\n").into_bytes(),
        })
        .collect();
    let mut messages = vec![FakeMessage::with_attachments(
        1,
        b"\x1b[2JAttachments",
        "see attached\n",
        &attachments,
    )];
    for (i, subject) in hostile_subjects().into_iter().enumerate() {
        let mut message = FakeMessage::text(i as u32 + 2, "placeholder", "x\n");
        message.subject = Some(subject);
        messages.push(message);
    }
    // A forwarded message whose envelope subject and file name are hostile.
    let forwarded_uid = messages.len() as u32 + 1;
    let mut structure = b"((\"text\" \"plain\" NIL NIL NIL \"7bit\" 4 1 NIL NIL NIL NIL)".to_vec();
    for disposition in ["NIL", "(\"attachment\" (\"filename\" \"../../evil.eml\"))"] {
        structure.extend_from_slice(b"(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 7 (NIL ");
        structure.extend_from_slice(&imap_string(b"../\x1b[2J\0x/y"));
        structure.extend_from_slice(
            format!(" NIL NIL NIL NIL NIL NIL NIL NIL) (\"text\" \"plain\" NIL NIL NIL \"7bit\" 5 1 NIL NIL NIL NIL) 3 NIL {disposition} NIL NIL)").as_bytes(),
        );
    }
    structure.extend_from_slice(b" \"mixed\" (\"boundary\" \"b\") NIL NIL NIL)");
    messages.push(FakeMessage::with_structure(
        forwarded_uid,
        Some(b"Forwarded"),
        &structure,
        BTreeMap::from([
            ("1".to_string(), b"text".to_vec()),
            ("2".to_string(), b"Subject: x\r\n\r\ninner".to_vec()),
            ("3".to_string(), b"Subject: x\r\n\r\ninner".to_vec()),
        ]),
    ));
    let message_count = messages.len();
    let server = FakeServer::start(Script::new(vec![
        control_mailbox(),
        FakeMailbox::new("Names", messages),
    ]));
    let (mount, process) = mount(&server);

    // Every message has its own directory, told apart by its UID.
    let dirs = list(mount.join("Names")).unwrap();
    let uids: BTreeSet<u32> = dirs
        .iter()
        .map(|n| n.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(uids, (1..=message_count as u32).collect(), "{dirs:?}");

    // Every name anywhere is one safe component, and everything lists.
    let failures = unlistable(mount.path.clone(), 4);
    assert!(failures.is_empty(), "could not list: {failures:?}");

    // Each attachment is shown exactly once, under some name, with its exact content.
    let attachments_dir = mount.join("Names").join(&dirs[0]);
    let names = list(attachments_dir.clone()).unwrap();
    let mut contents = BTreeMap::new();
    for name in &names {
        if name == "message.eml" || name == "body.txt" {
            continue;
        }
        let content = read(attachments_dir.join(name)).unwrap();
        contents.insert(String::from_utf8_lossy(&content).to_string(), name.clone());
    }
    let expected: BTreeSet<String> = attachments
        .iter()
        .map(|a| String::from_utf8_lossy(&a.content).to_string())
        .collect();
    assert_eq!(names.len(), attachments.len() + 2, "{names:?}");
    assert_eq!(
        contents.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "attachments lost or duplicated: {names:?}"
    );
    // The forwarded message: its text, its message.eml and one directory per message/rfc822.
    let forwarded_dir = dirs
        .iter()
        .find(|n| n.starts_with(&format!("{forwarded_uid} ")))
        .unwrap();
    let forwarded = list(mount.join("Names").join(forwarded_dir)).unwrap();
    assert_eq!(forwarded.len(), 4, "{forwarded:?}");
    // The 50 repeats are same.txt, same (2).txt, ... in part order.
    let first_same = file_names.len() - 50;
    for k in 1..=50 {
        let name = if k == 1 {
            "same.txt".to_string()
        } else {
            format!("same ({k}).txt")
        };
        let content = format!("content of part {}\n", first_same + k - 1);
        assert_eq!(contents.get(&content), Some(&name), "repeat {k}");
    }
    assert_still_serving(&mount, &process);
}

#[test]
fn mailbox_names_that_are_not_valid_modified_utf7() {
    let wire_names = [
        "&Jjo",       // base64 cut short, no terminating '-'
        "&AGE-",      // encodes a printable ASCII letter, which must stand for itself
        "&-",         // valid: "&"
        "&ZeVnLIqe-", // valid: 日本語
        "s&AC8-lash", // encodes '/'
        "n&AAA-ul",   // encodes NUL
        "e&ABs-sc",   // encodes ESC
        "&AC4-",      // encodes "."
        "..",
        "a/b",
        "c/",
        "/lead",
        "d//e",
        "x\x01y",
        "wild*%",
    ];
    let mut mailboxes = vec![control_mailbox()];
    for (i, wire) in wire_names.iter().enumerate() {
        let message = FakeMessage::text(1, &format!("in {i}"), &format!("mailbox {i}\n"));
        mailboxes.push(FakeMailbox::new(wire, vec![message]));
    }
    let server = FakeServer::start(Script::new(mailboxes));
    let (mount, process) = mount(&server);

    let failures = unlistable(mount.path.clone(), 3);
    assert!(failures.is_empty(), "could not list: {failures:?}");
    // Every mailbox is reachable exactly once, and its directory holds its own message.
    let mut found: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut dirs = vec![mount.path.clone()];
    while let Some(dir) = dirs.pop() {
        let Ok(names) = list(dir.clone()) else {
            continue;
        };
        for name in names {
            let path = dir.join(&name);
            match name.strip_prefix("1 in ") {
                Some(i) => {
                    let i: usize = i.parse().unwrap();
                    let body = read(path.join("body.txt"));
                    assert_eq!(
                        body.as_ref().ok(),
                        Some(&format!("mailbox {i}\n").into_bytes()),
                        "{}",
                        path.display()
                    );
                    found.entry(i).or_default().push(dir.display().to_string());
                }
                None if path.is_dir() && !name.starts_with(|c: char| c.is_ascii_digit()) => {
                    dirs.push(path)
                }
                None => {}
            }
        }
    }
    let missing: Vec<&str> = (0..wire_names.len())
        .filter(|i| !found.contains_key(i))
        .map(|i| wire_names[i])
        .collect();
    assert!(missing.is_empty(), "mailboxes not reachable: {missing:?}");
    for (i, places) in &found {
        assert_eq!(places.len(), 1, "{:?} shows in {places:?}", wire_names[*i]);
    }
    assert_still_serving(&mount, &process);
}

/// imap-proto parses BODYSTRUCTURE by recursive descent, one stack frame group per level, so
/// the depth must be bounded before the answer reaches it (a bigger stack would only move the
/// limit: a server can nest as deep as the response budget allows).
#[test]
fn deeply_nested_bodystructures_do_not_crash_imapfs() {
    let leaf = "(\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1 NIL NIL NIL NIL)";
    let multipart = format!(
        "{}{leaf}{}",
        "(".repeat(100_000),
        " \"mixed\")".repeat(100_000)
    );
    let rfc822 = format!(
        "{}{leaf}{}",
        "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 1 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) "
            .repeat(20_000),
        " 1)".repeat(20_000)
    );
    let nested = |uid, subject: &str, structure: &str| {
        FakeMessage::with_structure(
            uid,
            Some(subject.as_bytes()),
            structure.as_bytes(),
            BTreeMap::from([("1".to_string(), b"x".to_vec())]),
        )
    };
    let server = FakeServer::start(Script::new(vec![
        control_mailbox(),
        FakeMailbox::new(
            "Deep",
            vec![
                nested(1, "Deep multipart", &multipart),
                good(2),
                nested(3, "Deep rfc822", &rfc822),
            ],
        ),
    ]));
    let (mount, process) = mount(&server);
    for name in ["1 Deep multipart", "3 Deep rfc822"] {
        let dir = mount.join("Deep").join(name);
        let (failures, _) = within(OP_LIMIT * 2, &format!("walk {name}"), move || {
            let mut failures = Vec::new();
            walk_checking_names(&dir, 40, &mut failures);
            failures
        });
        process.assert_healthy(&mount);
        for (path, e) in failures {
            assert!([libc::EIO, libc::ENOENT].contains(&e), "{path}: errno {e}");
        }
    }
    assert_eq!(
        read(mount.join("Deep/2 Good 2/body.txt")).unwrap(),
        b"good body 2\n"
    );
    assert_still_serving(&mount, &process);
}

/// Names longer than NAME_MAX (255 bytes) break `cp -r`, rsync and any reader that copies
/// `d_name` into a `NAME_MAX + 1` buffer; message and attachment names are cut to 200 bytes.
#[test]
fn a_1000_byte_mailbox_name_is_shortened_and_still_reachable() {
    let long = "m".repeat(1000);
    let server = FakeServer::start(Script::new(vec![
        control_mailbox(),
        FakeMailbox::new(
            &long,
            vec![FakeMessage::text(1, "Long", "in the long one\n")],
        ),
    ]));
    let (mount, process) = mount(&server);
    let root = list(mount.path.clone()).unwrap();
    assert_eq!(root.len(), 2, "{root:?}");
    let name = root.iter().find(|n| *n != "INBOX").unwrap();
    assert!(
        name.len() <= 255,
        "the mailbox shows under a {}-byte name",
        name.len()
    );
    assert_eq!(
        read(mount.path.join(name).join("1 Long/body.txt")).unwrap(),
        b"in the long one\n"
    );
    assert_still_serving(&mount, &process);
}

/// With `.` as the delimiter, `/` may be part of a name: `Q1/Q2` shows as `Q1_Q2`, like the
/// mailbox that is really called `Q1_Q2`. Both must stay reachable, each with its own messages.
#[test]
fn mailboxes_whose_names_clean_to_the_same_text_are_both_reachable() {
    let mut script = Script::new(vec![
        control_mailbox(),
        FakeMailbox::new("Q1/Q2", vec![FakeMessage::text(1, "slash", "from Q1/Q2\n")]),
        FakeMailbox::new(
            "Q1_Q2",
            vec![FakeMessage::text(1, "underscore", "from Q1_Q2\n")],
        ),
    ]);
    script.delimiter = Some('.');
    let server = FakeServer::start(script);
    let (mount, process) = mount(&server);
    let failures = unlistable(mount.path.clone(), 3);
    assert!(failures.is_empty(), "could not list: {failures:?}");
    let mut bodies = BTreeSet::new();
    for name in list(mount.path.clone()).unwrap() {
        if name == "INBOX" {
            continue;
        }
        for message in list(mount.path.join(&name)).unwrap() {
            let body = read(mount.path.join(&name).join(&message).join("body.txt")).unwrap();
            bodies.insert(format!(
                "{name}/{message}: {}",
                String::from_utf8_lossy(&body).trim()
            ));
        }
    }
    assert_eq!(bodies.len(), 2, "one mailbox hides the other: {bodies:?}");
    assert_still_serving(&mount, &process);
}
