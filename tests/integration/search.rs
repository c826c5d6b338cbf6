//! Search directories on a real mount (issue 14): every operator of the query language
//! gives the UIDs an independent client gets from the equivalent `UID SEARCH`; bad
//! queries are EINVAL and send nothing; hits are symlinks that lead to the exact message;
//! a search at the root covers every mailbox; results refresh after another client's
//! change.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use imapfs::search::SearchDate;

use super::support::*;

/// The mount's command counter (`user.imapfs.stats` on the root).
fn commands(mount: &Mount) -> u64 {
    counter(mount, "commands")
}

/// `UID SEARCH` by an independent client (Python's imaplib): `keys` as they are, then,
/// if given, one UTF-8 value sent as a literal under `CHARSET UTF-8`.
fn independent_search(
    dovecot: &Dovecot,
    mailbox: &str,
    keys: &str,
    literal: Option<&str>,
) -> BTreeSet<u32> {
    const SCRIPT: &str = r#"
import imaplib, sys
port, user, password, mailbox, keys, literal = sys.argv[1:7]
m = imaplib.IMAP4("127.0.0.1", int(port))
m.login(user, password)
typ, _ = m.select(mailbox, readonly=True)
assert typ == "OK", typ
if literal:
    m.literal = literal.encode("utf-8")
    typ, data = m.uid("SEARCH", "CHARSET", "UTF-8", keys)
else:
    typ, data = m.uid("SEARCH", keys)
assert typ == "OK", (typ, data)
print(b" ".join(data).decode())
"#;
    let out = std::process::Command::new("timeout")
        .args(["30", "python3", "-c", SCRIPT])
        .arg(dovecot.imap_port().to_string())
        .args(["alice", dovecot.password("alice"), mailbox, keys])
        .arg(literal.unwrap_or(""))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python imaplib ({keys}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|u| u.parse().unwrap())
        .collect()
}

/// The UIDs a result directory lists (each entry is named like its message directory).
fn listed_uids(dir: &Path) -> io::Result<BTreeSet<u32>> {
    let mut uids = BTreeSet::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        assert!(entry.file_type()?.is_symlink(), "{:?}", entry.path());
        let name = entry.file_name().to_string_lossy().to_string();
        uids.insert(name.split(' ').next().unwrap().parse().unwrap());
    }
    Ok(uids)
}

fn day(year: i32, month: u32, d: u32) -> SystemTime {
    let days = SearchDate::new(year, month, d).unwrap().days();
    UNIX_EPOCH + Duration::from_secs(days as u64 * 86_400 + 12 * 3600)
}

/// Message `i` of the corpus: senders, recipients, subjects (one RFC 2047 encoded, with
/// non-ASCII), a custom header, "zanzibar" in some bodies, growing sizes.
fn message(i: usize) -> Vec<u8> {
    let from = [
        "alice@example.com",
        "Bob Builder <bob@example.org>",
        "carol@example.net",
    ][i % 3];
    let to = if i % 2 == 1 {
        "team@example.com"
    } else {
        "dave@example.com"
    };
    let subject = match i % 4 {
        0 => format!("Invoice {i}"),
        1 => format!("Lunch plans {i}"),
        2 => format!("Report Q{i}"),
        _ => format!("=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_Z=C3=BCrich?= {i}"),
    };
    let mut raw = format!("From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\n");
    if i.is_multiple_of(5) {
        raw.push_str("Cc: eve@example.com\r\n");
    }
    if i.is_multiple_of(3) {
        raw.push_str("X-Project: apollo\r\n");
    }
    raw.push_str("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
    if i.is_multiple_of(7) {
        raw.push_str("The shipment reached zanzibar today.\r\n");
    } else {
        raw.push_str(&format!("Ordinary text number {i}.\r\n"));
    }
    for _ in 0..i * 8 {
        raw.push_str("padding padding padding padding padding padding padding pad\r\n");
    }
    raw.into_bytes()
}

fn flags(i: usize) -> Vec<&'static str> {
    let mut f = Vec::new();
    if i.is_multiple_of(2) {
        f.push("\\Seen");
    }
    if i.is_multiple_of(3) {
        f.push("\\Flagged");
    }
    if i % 6 == 1 {
        f.push("$Work");
    }
    if i.is_multiple_of(8) {
        f.push("\\Answered");
    }
    if i.is_multiple_of(10) {
        f.push("\\Draft");
    }
    f
}

const MESSAGES: usize = 30;

/// A server whose INBOX holds the corpus (internal dates ten days apart from 2024-01-01)
/// and whose Archive holds two more messages with "zanzibar".
fn server() -> Dovecot {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    let mut client = dovecot.client("alice").unwrap();
    let start = day(2024, 1, 1);
    for i in 0..MESSAGES {
        let date = start + Duration::from_secs(i as u64 * 10 * 86_400);
        fixture::append_at(&mut client, "INBOX", &message(i), &flags(i), date).unwrap();
    }
    for i in [7, 14] {
        fixture::append_at(&mut client, "Archive", &message(i), &[], start).unwrap();
    }
    dovecot
}

#[test]
fn every_operator_gives_what_uid_search_gives() {
    let dovecot = server();
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let today = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    let a_year_ago = SearchDate::from_days(today as i64).days() - 365;
    let a_year_ago = SearchDate::from_days(a_year_ago);
    let a_year_ago_imap = format!(
        "{}-{}-{}",
        a_year_ago.day,
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
            [a_year_ago.month as usize - 1],
        a_year_ago.year
    );
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        ("invoice", "TEXT invoice".into(), None),
        (
            "\"shipment reached\"",
            "TEXT \"shipment reached\"".into(),
            None,
        ),
        ("body:zanzibar", "BODY zanzibar".into(), None),
        ("from:bob", "FROM bob".into(), None),
        ("to:team", "TO team".into(), None),
        ("cc:eve", "CC eve".into(), None),
        ("bcc:nobody", "BCC nobody".into(), None),
        ("subject:report", "SUBJECT report".into(), None),
        (
            "header:X-Project:apollo",
            "HEADER X-Project apollo".into(),
            None,
        ),
        ("since:2024-03-01", "SINCE 1-Mar-2024".into(), None),
        ("before:2024-03-01", "BEFORE 1-Mar-2024".into(), None),
        ("on:2024-01-11", "ON 11-Jan-2024".into(), None),
        ("before:1y", format!("BEFORE {a_year_ago_imap}"), None),
        ("is:unread", "UNSEEN".into(), None),
        ("is:read", "SEEN".into(), None),
        ("is:flagged", "FLAGGED".into(), None),
        ("is:answered", "ANSWERED".into(), None),
        ("is:draft", "DRAFT".into(), None),
        ("is:deleted", "DELETED".into(), None),
        ("tag:$Work", "KEYWORD $Work".into(), None),
        ("larger:5K", "LARGER 5120".into(), None),
        ("smaller:2K", "SMALLER 2048".into(), None),
        ("uid:3:7", "UID 3:7".into(), None),
        ("uid:25:*", "UID 25:*".into(), None),
        ("from:alice -is:read", "FROM alice UNSEEN".into(), None),
        (
            "from:alice OR from:carol",
            "OR FROM alice FROM carol".into(),
            None,
        ),
        (
            "(subject:invoice OR subject:report) is:flagged",
            "OR SUBJECT invoice SUBJECT report FLAGGED".into(),
            None,
        ),
        (
            "-(from:bob OR is:read)",
            "NOT (OR FROM bob SEEN)".into(),
            None,
        ),
        (
            "imap:\"OR DRAFT ANSWERED\"",
            "OR DRAFT ANSWERED".into(),
            None,
        ),
        ("subject:Zürich", "SUBJECT".into(), Some("Zürich")),
        ("Grüße", "TEXT".into(), Some("Grüße")),
    ];
    let mut informative = 0;
    for (query, keys, literal) in &cases {
        let want = independent_search(&dovecot, "INBOX", keys, *literal);
        let dir = mount.join("INBOX/.search").join(query);
        let got = listed_uids(&dir).unwrap_or_else(|e| panic!("{query}: {e}"));
        assert_eq!(got, want, "{query} (UID SEARCH {keys})");
        if !want.is_empty() && want.len() < MESSAGES {
            informative += 1;
        }
    }
    // `uid:N:*` is the UIDs from N on: none past the highest, where IMAP's `N:*` would
    // hold the highest (a script asking what came after the last UID it saw).
    let past = mount.join(&format!("INBOX/.search/uid:{}:*", MESSAGES + 10));
    assert_eq!(listed_uids(&past).unwrap(), BTreeSet::new());
    // The corpus makes nearly every query pick some messages and leave others.
    assert!(
        informative >= cases.len() - 3,
        "{informative} of {}",
        cases.len()
    );

    // .search is never listed, so find and grep -r stay out of it.
    let listed: Vec<String> = fs::read_dir(mount.join("INBOX"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(!listed.iter().any(|n| n.starts_with(".search")));
    let found = sh(&format!(
        "find '{}' -name '*zanzibar*' | wc -l",
        mount.path.display()
    ));
    assert_eq!(String::from_utf8_lossy(&found.stdout).trim(), "0");
}

#[test]
fn bad_queries_are_einval_and_send_nothing() {
    let dovecot = server();
    // Counted: without the watcher's own commands, which may fall into the window.
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&["--no-watch"])
        .mount();
    let search = mount.join("INBOX/.search");
    fs::read_dir(mount.join("INBOX")).unwrap().for_each(drop);
    let before = commands(&mount);
    for query in [
        "colour:red",
        "from:",
        "\"unbalanced",
        "(a b",
        "a b)",
        "since:2024-02-30",
        "before:yesterday",
        "larger:12X",
        "uid:0",
        "is:important",
        "imap:\"ALL {3}\"",
        "imap:\"ALL\nA2 DELETE INBOX\"",
        "OR",
    ] {
        let err = fs::read_dir(search.join(query)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{query:?}: {err}");
    }
    assert_eq!(commands(&mount), before, "a bad query reached the server");
    assert!(mount.log().contains("at character"), "the log says where");

    // Raw keys the server refuses (BAD): the query's fault, EINVAL too, and the mount
    // goes on searching.
    for query in ["imap:\"DELETE INBOX\"", "imap:\"NOSUCHKEY 1\""] {
        let err = listed_uids(&search.join(query)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{query:?}: {err}");
    }
    assert_eq!(
        listed_uids(&search.join("imap:ALL")).unwrap().len(),
        MESSAGES
    );

    // What looks like a command is a value: it finds nothing and changes nothing.
    let injected = search.join("subject:\"x\\\" ) DELETE INBOX\" OR (imap:\"ALL\")");
    let hits = listed_uids(&injected).unwrap();
    assert_eq!(hits.len(), MESSAGES, "the OR with ALL matches everything");
    let mut client = dovecot.client("alice").unwrap();
    assert_eq!(server_mailbox(&mut client, "INBOX").len(), MESSAGES);
}

#[test]
fn hits_lead_to_the_exact_message_and_root_searches_cover_every_mailbox() {
    let dovecot = server();
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let mut client = dovecot.client("alice").unwrap();

    let dir = mount.join("INBOX/.search/zanzibar");
    let uids = listed_uids(&dir).unwrap();
    assert_eq!(uids.len(), MESSAGES.div_ceil(7));
    let inbox = server_mailbox(&mut client, "INBOX");
    for entry in fs::read_dir(&dir).unwrap() {
        let link = entry.unwrap().path();
        let target = fs::read_link(&link).unwrap();
        let name = link.file_name().unwrap();
        assert_eq!(target, Path::new("../..").join(name));
        let uid: u32 = name
            .to_string_lossy()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(fs::read(link.join("message.eml")).unwrap() == inbox[&uid].1);
    }

    let root = mount.join(".search/zanzibar");
    let mut mailboxes: Vec<String> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    mailboxes.sort();
    assert_eq!(mailboxes, ["Archive", "INBOX"]);
    assert_eq!(listed_uids(&root.join("INBOX")).unwrap(), uids);
    let archive = server_mailbox(&mut client, "Archive");
    let in_archive = listed_uids(&root.join("Archive")).unwrap();
    assert_eq!(in_archive.len(), 2);
    for entry in fs::read_dir(root.join("Archive")).unwrap() {
        let link = entry.unwrap().path();
        let uid: u32 = link
            .file_name()
            .unwrap()
            .to_string_lossy()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(fs::read(link.join("message.eml")).unwrap() == archive[&uid].1);
    }
    // `cd` into a hit and back out, as a shell does.
    let out = sh(&format!(
        "cd '{}' && cd \"$(ls | head -n 1)\" && pwd -P && ls",
        dir.display()
    ));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("message.eml"), "{text}");
}

#[test]
fn a_result_shows_a_message_another_client_adds() {
    let dovecot = server();
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let dir = mount.join("INBOX/.search/body:zanzibar");
    let before = listed_uids(&dir).unwrap();
    let mut client = dovecot.client("alice").unwrap();
    let uid = fixture::append_at(&mut client, "INBOX", &message(0), &[], day(2024, 6, 1)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = listed_uids(&dir).unwrap();
        if now.contains(&uid) {
            assert_eq!(now.len(), before.len() + 1);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new message never showed: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
