//! Changing mail through the mount (issue 3): flags as xattrs, deleting and moving messages,
//! creating, deleting and renaming mailboxes, new files appended as messages, and refusing
//! user strings that could smuggle IMAP syntax.
//!
//! Every test takes a snapshot of the whole server with an independent client before and
//! after, and checks that exactly the intended change happened and nothing else.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::IntoRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mail_parser::{MessageParser, MimeHeaders};

use super::support::*;

// ---- the server as an independent client sees it ---------------------------------------------

#[derive(Clone, PartialEq, Eq)]
struct Message {
    flags: BTreeSet<String>,
    bytes: Vec<u8>,
}

#[derive(Clone, PartialEq, Eq)]
struct Mailbox {
    /// UIDNEXT and HIGHESTMODSEQ. Every APPEND, STORE or EXPUNGE moves one of them, so a
    /// mailbox the test did not mean to touch keeps both (this catches a change that was made
    /// and undone). `None` for a `\Noselect` directory.
    counters: Option<(u32, u64)>,
    messages: BTreeMap<u32, Message>,
}

/// Every mailbox (wire name) with every message.
#[derive(Clone)]
struct Server {
    mailboxes: BTreeMap<String, Mailbox>,
}

impl Server {
    fn mailbox(&mut self, wire: &str) -> &mut Mailbox {
        self.mailboxes
            .get_mut(wire)
            .unwrap_or_else(|| panic!("no mailbox {wire:?} on the server"))
    }

    fn message(&self, wire: &str, uid: u32) -> &Message {
        &self.mailboxes[wire].messages[&uid]
    }

    fn set_flags(&mut self, wire: &str, uid: u32, flags: &[&str]) {
        let message = self.mailbox(wire).messages.get_mut(&uid);
        message
            .unwrap_or_else(|| panic!("no UID {uid} in {wire:?}"))
            .flags = set(flags);
    }

    /// Removes a message from the model and returns it.
    fn take(&mut self, wire: &str, uid: u32) -> Message {
        self.mailbox(wire)
            .messages
            .remove(&uid)
            .unwrap_or_else(|| panic!("no UID {uid} in {wire:?}"))
    }

    fn add_empty_mailbox(&mut self, wire: &str) {
        let empty = Mailbox {
            counters: None,
            messages: BTreeMap::new(),
        };
        assert!(self.mailboxes.insert(wire.into(), empty).is_none());
    }

    /// UIDs in `wire` that `self` has and `before` had not.
    fn new_uids(&self, before: &Server, wire: &str) -> Vec<u32> {
        let old = before.mailboxes.get(wire).map(|m| &m.messages);
        self.mailboxes[wire]
            .messages
            .keys()
            .filter(|uid| !old.is_some_and(|o| o.contains_key(uid)))
            .copied()
            .collect()
    }
}

/// Reads every mailbox and message with `client`, changing nothing (EXAMINE, BODY.PEEK).
fn snapshot(client: &mut Session) -> Server {
    let mut mailboxes = BTreeMap::new();
    for listed in server_mailboxes(client) {
        let name = unescape_quoted(&listed);
        let counters = client
            .status(&name, "(UIDNEXT HIGHESTMODSEQ)")
            .ok()
            .map(|s| (s.uid_next.unwrap_or(0), s.highest_mod_seq.unwrap_or(0)));
        let messages = match counters {
            Some(_) => server_mailbox(client, &name)
                .into_iter()
                .map(|(uid, (flags, bytes))| {
                    let flags = flags.into_iter().collect();
                    (uid, Message { flags, bytes })
                })
                .collect(),
            None => BTreeMap::new(),
        };
        mailboxes.insert(name, Mailbox { counters, messages });
    }
    Server { mailboxes }
}

/// A mailbox name as LIST sent it in a quoted string (imap-proto hands over `\"` and `\\`
/// still escaped; names with those characters always come quoted).
fn unescape_quoted(listed: &str) -> String {
    let mut out = String::with_capacity(listed.len());
    let mut chars = listed.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// What differs between two snapshots, one line per difference.
fn differences(expected: &Server, actual: &Server) -> Vec<String> {
    let mut out = Vec::new();
    let names: BTreeSet<&String> = expected
        .mailboxes
        .keys()
        .chain(actual.mailboxes.keys())
        .collect();
    for name in names {
        let (want, got) = match (expected.mailboxes.get(name), actual.mailboxes.get(name)) {
            (Some(w), Some(g)) => (w, g),
            (Some(_), None) => {
                out.push(format!("mailbox {name:?} is missing"));
                continue;
            }
            (None, Some(_)) => {
                out.push(format!("mailbox {name:?} appeared"));
                continue;
            }
            (None, None) => unreachable!(),
        };
        if want.counters != got.counters {
            out.push(format!(
                "{name:?}: (UIDNEXT, HIGHESTMODSEQ) {:?} -> {:?}",
                want.counters, got.counters
            ));
        }
        let uids: BTreeSet<&u32> = want.messages.keys().chain(got.messages.keys()).collect();
        for uid in uids {
            match (want.messages.get(uid), got.messages.get(uid)) {
                (Some(w), Some(g)) => {
                    if w.flags != g.flags {
                        out.push(format!(
                            "{name:?} UID {uid}: flags {:?} -> {:?}",
                            w.flags, g.flags
                        ));
                    }
                    if w.bytes != g.bytes {
                        out.push(format!(
                            "{name:?} UID {uid}: bytes differ ({} vs {} bytes)",
                            w.bytes.len(),
                            g.bytes.len()
                        ));
                    }
                }
                (Some(w), None) => out.push(format!(
                    "{name:?} UID {uid} is missing ({} bytes, {:?})",
                    w.bytes.len(),
                    w.flags
                )),
                (None, Some(g)) => out.push(format!(
                    "{name:?} UID {uid} appeared ({} bytes, {:?})",
                    g.bytes.len(),
                    g.flags
                )),
                (None, None) => unreachable!(),
            }
        }
    }
    out
}

/// Takes a snapshot and asserts it equals `expected`. The counters of the `touched`
/// mailboxes (where the intended change happened) are not compared; their messages are.
/// Returns the snapshot.
fn assert_server(
    client: &mut Session,
    expected: &Server,
    touched: &[&str],
    mount: &Mount,
) -> Server {
    let (actual, diff) = compare_server(client, expected, touched);
    assert!(
        diff.is_empty(),
        "the server is not as expected:\n  {}\nimapfs log:\n{}",
        diff.join("\n  "),
        log_tail(mount)
    );
    actual
}

/// Like [`assert_server`], but returns the differences instead of failing.
fn compare_server(
    client: &mut Session,
    expected: &Server,
    touched: &[&str],
) -> (Server, Vec<String>) {
    let actual = snapshot(client);
    let mut expected = expected.clone();
    for name in touched {
        if let (Some(want), Some(got)) = (
            expected.mailboxes.get_mut(*name),
            actual.mailboxes.get(*name),
        ) {
            want.counters = got.counters;
        }
    }
    let diff = differences(&expected, &actual);
    (actual, diff)
}

/// The last lines of the imapfs log, for failure messages.
fn log_tail(mount: &Mount) -> String {
    let log = mount.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

// ---- set-up -----------------------------------------------------------------------------------

/// A server with the sample corpus except its 10 MB message (every snapshot reads every
/// message), and an independent client logged in to it.
fn server() -> (Dovecot, Session) {
    let dovecot = Dovecot::start(DovecotOptions::default()).expect("start dovecot");
    let mut client = dovecot.client("alice").expect("login");
    let samples: Vec<fixture::Sample> = fixture::sample_messages()
        .into_iter()
        .filter(|s| s.raw.len() < 1_000_000)
        .collect();
    fixture::append_samples(&mut client, &samples).expect("append samples");
    (dovecot, client)
}

/// The UID of the message in `wire` whose bytes are `raw`.
fn uid_with_bytes(server: &Server, wire: &str, raw: &[u8]) -> u32 {
    *server.mailboxes[wire]
        .messages
        .iter()
        .find(|(_, m)| m.bytes == raw)
        .unwrap_or_else(|| panic!("no such message in {wire:?}"))
        .0
}

/// SELECTs `wire` with the independent client and runs `UID STORE uid <what>`.
fn client_store(client: &mut Session, wire: &str, uid: u32, what: &str) {
    client.select(wire).expect("select");
    client.uid_store(uid.to_string(), what).expect("uid store");
}

// ---- looking through the mount ----------------------------------------------------------------

/// The last component of `path`.
fn name_of(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().to_string()
}

/// The UID at the start of a message directory's name.
fn uid_of(dir: &Path) -> u32 {
    name_of(dir).split(' ').next().unwrap().parse().unwrap()
}

/// Names in a directory.
fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect()
}

/// Every path under `dir`, relative to it, recursively.
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.insert(path.strip_prefix(root).unwrap().to_path_buf());
            if path.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

fn errno<T>(result: io::Result<T>) -> Option<i32> {
    result.err().and_then(|e| e.raw_os_error())
}

/// Asserts that `result` failed with `want`, naming `what` and showing the log otherwise.
fn assert_errno<T: std::fmt::Debug>(what: &str, result: io::Result<T>, want: i32, mount: &Mount) {
    let got = match &result {
        Ok(v) => format!("success ({v:?})"),
        Err(e) => format!("{e}"),
    };
    assert_eq!(
        errno(result),
        Some(want),
        "{what}: expected {}, got {got}\nimapfs log:\n{}",
        io::Error::from_raw_os_error(want),
        log_tail(mount)
    );
}

/// A path quoted for `sh`.
fn shq(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', r"'\''"))
}

/// Runs `script` and asserts it succeeded.
fn sh_ok(script: &str, mount: &Mount) {
    let out = sh(script);
    assert!(
        out.status.success(),
        "`{script}` failed: {}\nimapfs log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        log_tail(mount)
    );
}

/// Creates `path`, writes `data` and closes it, returning what `close()` returned (std's
/// `File` drops close errors, and a failed APPEND is reported there).
fn write_new_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut file = fs::File::create(path)?;
    file.write_all(data)?;
    close(file)
}

fn close(file: fs::File) -> io::Result<()> {
    let fd = file.into_raw_fd();
    // SAFETY: `fd` was just taken out of the File, so it is open and closed only here.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

// ---- xattrs through libc, for exact errnos ---------------------------------------------------

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

fn c_name(name: &str) -> CString {
    CString::new(name).unwrap()
}

/// getxattr(2) with a `size`-byte buffer: the value, or with size 0 a buffer of its length.
fn get_xattr(path: &Path, name: &str, size: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; size];
    // SAFETY: valid C strings; the buffer has `size` bytes.
    let n = unsafe {
        libc::getxattr(
            c_path(path).as_ptr(),
            c_name(name).as_ptr(),
            buf.as_mut_ptr().cast(),
            size,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.resize(n as usize, 0);
    Ok(buf)
}

/// The whole value of an attribute (asks for its length first).
fn xattr(path: &Path, name: &str) -> io::Result<Vec<u8>> {
    let len = get_xattr(path, name, 0)?.len();
    get_xattr(path, name, len)
}

fn xattr_string(path: &Path, name: &str) -> String {
    String::from_utf8(xattr(path, name).unwrap_or_else(|e| panic!("getxattr {name}: {e}"))).unwrap()
}

fn flags_xattr(dir: &Path) -> BTreeSet<String> {
    xattr_string(dir, "user.imap.flags")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    // SAFETY: valid C strings; `value` is readable for its length.
    let rc = unsafe {
        libc::setxattr(
            c_path(path).as_ptr(),
            c_name(name).as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn remove_xattr(path: &Path, name: &str) -> io::Result<()> {
    // SAFETY: valid C strings.
    let rc = unsafe { libc::removexattr(c_path(path).as_ptr(), c_name(name).as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// listxattr(2) with a `size`-byte buffer.
fn list_xattr(path: &Path, size: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; size];
    // SAFETY: valid C string; the buffer has `size` bytes.
    let n = unsafe { libc::listxattr(c_path(path).as_ptr(), buf.as_mut_ptr().cast(), size) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.resize(n as usize, 0);
    Ok(buf)
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

const ALL_XATTRS: [&str; 5] = [
    "user.imap.flags",
    "user.imap.uid",
    "user.imap.uidvalidity",
    "user.imap.internaldate",
    "user.imap.mailbox",
];

// ---- flags and other xattrs -------------------------------------------------------------------

#[test]
fn flags_xattr_shows_the_servers_flags_without_recent() {
    let (dovecot, mut client) = server();
    fixture::append(&mut client, "INBOX", &sample("plain").raw, &["$Fresh"]).unwrap();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    // No session has SELECTed these mailboxes, so every message is \Recent to imapfs.
    let mut checked = 0;
    for (dir, wire) in [
        ("INBOX", "INBOX"),
        ("Reçus", "Re&AOc-us"),
        ("Archive/2023", "Archive/2023"),
    ] {
        for entry in fs::read_dir(mount.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let flags = flags_xattr(&path);
            let want = &before.message(wire, uid_of(&path)).flags;
            assert_eq!(&flags, want, "{}", path.display());
            checked += 1;
        }
    }
    assert_eq!(checked, 12);
    let fresh = mount.join("INBOX").join(format!(
        "{} Plain text greeting",
        before.mailboxes["INBOX"].messages.keys().max().unwrap()
    ));
    assert_eq!(xattr_string(&fresh, "user.imap.flags"), "$Fresh");
    assert_server(&mut client, &before, &[], &mount);
}

#[test]
fn identity_xattrs_name_the_message_on_the_server() {
    let (dovecot, mut client) = server();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let msg = mount.message_dir("INBOX", "Quarterly numbers (text and HTML)");
    let uid = uid_of(&msg);
    let validity = client.examine("INBOX").unwrap().uid_validity.unwrap();
    let fetched = client.uid_fetch(uid.to_string(), "INTERNALDATE").unwrap();
    let date = fetched
        .iter()
        .next()
        .and_then(|f| f.internal_date())
        .unwrap()
        .naive_utc()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();

    // getfattr -d prints each attribute as name="value" with backslashes doubled.
    let out = sh(&format!("getfattr --absolute-names -d -m - {}", shq(&msg)));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dumped: BTreeMap<String, String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').replace(r"\\", r"\")))
        .collect();
    let flag_words: BTreeSet<String> = dumped["user.imap.flags"]
        .split(' ')
        .map(str::to_string)
        .collect();
    assert_eq!(flag_words, set(&["\\Seen", "\\Flagged"]));
    assert_eq!(dumped["user.imap.uid"], uid.to_string());
    assert_eq!(dumped["user.imap.uidvalidity"], validity.to_string());
    assert_eq!(dumped["user.imap.internaldate"], date);
    assert_eq!(dumped["user.imap.mailbox"], "INBOX");
    assert_eq!(dumped.len(), 5, "{dumped:?}");

    // The mailbox is the display path, decoded from modified UTF-7.
    let latin = mount.message_dir("Reçus", "Café ouvert");
    assert_eq!(xattr_string(&latin, "user.imap.mailbox"), "Reçus");
    let nested = mount.message_dir("Archive/2023", "会議の議題");
    assert_eq!(xattr_string(&nested, "user.imap.mailbox"), "Archive/2023");
    let validity = client
        .examine("Archive/2023")
        .unwrap()
        .uid_validity
        .unwrap();
    assert_eq!(
        xattr_string(&nested, "user.imap.uidvalidity"),
        validity.to_string()
    );
    assert_server(&mut client, &before, &[], &mount);
}

#[test]
fn writing_flags_replaces_the_whole_set() {
    let (dovecot, mut client) = server();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let msg = mount.message_dir("INBOX", "Quarterly numbers (text and HTML)");
    let uid = uid_of(&msg);
    assert_eq!(
        before.message("INBOX", uid).flags,
        set(&["\\Seen", "\\Flagged"])
    );
    let mut expected = before.clone();

    sh_ok(
        &format!("setfattr -n user.imap.flags -v '\\Seen' {}", shq(&msg)),
        &mount,
    );
    assert_eq!(flags_xattr(&msg), set(&["\\Seen"]));
    expected.set_flags("INBOX", uid, &["\\Seen"]);
    assert_server(&mut client, &expected, &["INBOX"], &mount);

    set_xattr(&msg, "user.imap.flags", b"\\Answered $Label1").unwrap();
    assert_eq!(flags_xattr(&msg), set(&["\\Answered", "$Label1"]));
    expected.set_flags("INBOX", uid, &["\\Answered", "$Label1"]);
    assert_server(&mut client, &expected, &["INBOX"], &mount);

    // An empty value clears every flag.
    set_xattr(&msg, "user.imap.flags", b"").unwrap();
    assert_eq!(xattr_string(&msg, "user.imap.flags"), "");
    expected.set_flags("INBOX", uid, &[]);
    assert_server(&mut client, &expected, &["INBOX"], &mount);
}

/// `setfattr -v '+\Answered -\Seen'` adds and removes those flags alone: a flag another
/// client set after the mount listed the mailbox stays on the server.
#[test]
fn plus_and_minus_flags_change_only_those() {
    let (dovecot, mut client) = server();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let msg = mount.message_dir("INBOX", "Quarterly numbers (text and HTML)");
    let uid = uid_of(&msg);
    assert_eq!(flags_xattr(&msg), set(&["\\Seen", "\\Flagged"]));
    client.select("INBOX").unwrap();
    client
        .uid_store(uid.to_string(), "+FLAGS.SILENT ($Theirs)")
        .unwrap();
    let mut expected = before.clone();

    sh_ok(
        &format!(
            "setfattr -n user.imap.flags -v '+\\Answered -\\Seen' {}",
            shq(&msg)
        ),
        &mount,
    );
    expected.set_flags("INBOX", uid, &["\\Answered", "\\Flagged", "$Theirs"]);
    assert_server(&mut client, &expected, &["INBOX"], &mount);
    let shown = flags_xattr(&msg);
    assert!(
        shown.contains("\\Answered") && !shown.contains("\\Seen"),
        "{shown:?}"
    );
}

/// `setfattr -v '+\Flagged -\Seen' INBOX`: every message of the mailbox, in one `UID STORE`
/// of each kind; their other flags stay.
#[test]
fn plus_and_minus_flags_on_a_mailbox_change_all_its_messages_in_two_commands() {
    let (dovecot, mut client) = server();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let inbox = mount.join("INBOX");
    names(&inbox);
    let stores = || mount.log().matches("UID STORE").count();
    let before_stores = stores();
    sh_ok(
        &format!(
            "setfattr -n user.imap.flags -v '+\\Flagged -\\Seen' {}",
            shq(&inbox)
        ),
        &mount,
    );
    // One STORE of each kind, where one per message would be 18 (what else is sent, the
    // listing's check, a SELECT and the watcher's resynchronisations, depends on when
    // the server's reports come).
    let count = before.mailboxes["INBOX"].messages.len();
    assert!(count >= 9, "{count} messages");
    let sent = stores() - before_stores;
    assert_eq!(sent, 2, "{sent} STOREs for {count} messages");
    let mut expected = before.clone();
    for message in expected.mailbox("INBOX").messages.values_mut() {
        message.flags.insert("\\Flagged".into());
        message.flags.remove("\\Seen");
    }
    assert_server(&mut client, &expected, &["INBOX"], &mount);
    let msg = mount.message_dir("INBOX", "Quarterly numbers (text and HTML)");
    assert_eq!(flags_xattr(&msg), set(&["\\Flagged"]));
}

#[test]
fn invalid_flag_values_are_einval_and_nothing_is_sent() {
    let (dovecot, mut client) = server();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    // A message without flags: a partly applied value would show.
    let msg = mount.message_dir("INBOX", "Base64 body");
    assert!(before.message("INBOX", uid_of(&msg)).flags.is_empty());
    let bad: [&[u8]; 14] = [
        b"\\Seen\r\nA1 DELETE INBOX",
        b"\\Seen\nA1 DELETE INBOX",
        b"\\Seen\rx",
        b"\\Seen\0\\Flagged",
        b"(\\Seen)",
        b"\\Seen)",
        b"\"\\Seen\"",
        b"\\Foo",
        b"\\Seen \\Foo",
        b"\\Recent",
        b"{5}",
        b"\\Seen {5}",
        b"*",
        b"$a%",
    ];
    for value in bad {
        let what = format!(
            "setxattr user.imap.flags {:?}",
            String::from_utf8_lossy(value)
        );
        assert_errno(
            &what,
            set_xattr(&msg, "user.imap.flags", value),
            libc::EINVAL,
            &mount,
        );
    }
    assert_eq!(xattr_string(&msg, "user.imap.flags"), "");
    // INBOX is not "touched": its HIGHESTMODSEQ proves no STORE reached the server.
    assert_server(&mut client, &before, &[], &mount);
}

#[test]
fn read_only_xattrs_refuse_writes_with_eperm() {
    let (dovecot, mut client) = server();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let msg = mount.message_dir("INBOX", "Plain text greeting");
    for name in &ALL_XATTRS[1..] {
        let old = xattr(&msg, name).unwrap();
        assert_errno(
            &format!("setxattr {name}"),
            set_xattr(&msg, name, b"1"),
            libc::EPERM,
            &mount,
        );
        assert_errno(
            &format!("removexattr {name}"),
            remove_xattr(&msg, name),
            libc::EPERM,
            &mount,
        );
        assert_eq!(xattr(&msg, name).unwrap(), old, "{name} changed");
    }
    assert_server(&mut client, &before, &[], &mount);
}

#[test]
fn xattr_sizes_follow_the_getxattr_protocol() {
    let (dovecot, mut client) = server();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let msg = mount.message_dir("INBOX", "Plain text greeting");

    let len = list_xattr(&msg, 0).unwrap().len();
    let list = list_xattr(&msg, len).unwrap();
    let listed: BTreeSet<String> = list
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8(n.to_vec()).unwrap())
        .collect();
    assert_eq!(listed, set(&ALL_XATTRS));
    assert_eq!(list.last(), Some(&0), "names are NUL-terminated");
    assert_errno(
        "listxattr, small buffer",
        list_xattr(&msg, len - 1),
        libc::ERANGE,
        &mount,
    );

    assert_eq!(
        get_xattr(&msg, "user.imap.flags", 0).unwrap().len(),
        "\\Seen".len()
    );
    assert_eq!(get_xattr(&msg, "user.imap.flags", 5).unwrap(), b"\\Seen");
    assert_eq!(get_xattr(&msg, "user.imap.flags", 100).unwrap(), b"\\Seen");
    assert_errno(
        "getxattr, small buffer",
        get_xattr(&msg, "user.imap.flags", 4),
        libc::ERANGE,
        &mount,
    );
    for unknown in ["user.imap.nope", "user.other", "user.imap.flag"] {
        assert_errno(
            unknown,
            get_xattr(&msg, unknown, 100),
            libc::ENODATA,
            &mount,
        );
    }
    // Part files carry no attributes.
    let body = msg.join("body.txt");
    assert_eq!(list_xattr(&body, 0).unwrap().len(), 0);
    assert_errno(
        "getxattr on a part",
        get_xattr(&body, "user.imap.flags", 100),
        libc::ENODATA,
        &mount,
    );
    assert_server(&mut client, &before, &[], &mount);
}

#[test]
fn flags_set_by_another_client_show_after_the_next_listing() {
    let (dovecot, mut client) = server();
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let msg = mount.message_dir("INBOX", "Base64 body");
    let uid = uid_of(&msg);
    assert_eq!(xattr_string(&msg, "user.imap.flags"), "");
    let mut expected = snapshot(&mut client);

    client_store(
        &mut client,
        "INBOX",
        uid,
        "+FLAGS (\\Flagged $FromElsewhere)",
    );
    std::thread::sleep(Duration::from_millis(1100));
    assert!(names(&mount.join("INBOX")).contains(&name_of(&msg)));
    assert_eq!(flags_xattr(&msg), set(&["\\Flagged", "$FromElsewhere"]));

    expected.set_flags("INBOX", uid, &["\\Flagged", "$FromElsewhere"]);
    assert_server(&mut client, &expected, &["INBOX"], &mount);
}

// ---- deleting messages ------------------------------------------------------------------------

#[test]
fn rm_r_moves_a_message_to_trash() {
    let (dovecot, mut client) = server();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    // It holds a forwarded message, so rm -r also removes a nested message directory.
    let msg = mount.message_dir("INBOX", "Fwd: Original with attachment");
    let uid = uid_of(&msg);
    let name = name_of(&msg);
    assert!(names(&mount.join("Trash")).is_empty());

    sh_ok(&format!("rm -r {}", shq(&msg)), &mount);

    assert!(!names(&mount.join("INBOX")).contains(&name));
    assert_errno("stat after rm -r", fs::metadata(&msg), libc::ENOENT, &mount);
    let mut expected = before.clone();
    let moved = expected.take("INBOX", uid);
    let after = snapshot(&mut client);
    let new = after.new_uids(&before, "Trash");
    assert_eq!(new.len(), 1, "Trash gained {new:?}\n{}", log_tail(&mount));
    expected.mailbox("Trash").messages.insert(new[0], moved);
    assert_server(&mut client, &expected, &["INBOX", "Trash"], &mount);
    assert_eq!(
        names(&mount.join("Trash")),
        set(&[&format!("{} Fwd: Original with attachment", new[0])])
    );
}

#[test]
fn rm_r_inside_trash_expunges() {
    let (dovecot, mut client) = server();
    let uid = fixture::append(&mut client, "Trash", &sample("plain").raw, &["\\Seen"]).unwrap();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let msg = mount.message_dir("Trash", "Plain text greeting");
    assert_eq!(uid_of(&msg), uid);

    sh_ok(&format!("rm -r {}", shq(&msg)), &mount);

    assert!(names(&mount.join("Trash")).is_empty());
    assert_errno("stat after rm -r", fs::metadata(&msg), libc::ENOENT, &mount);
    let mut expected = before.clone();
    expected.take("Trash", uid);
    assert_server(&mut client, &expected, &["Trash"], &mount);
}

#[test]
fn delete_expunge_expunges_the_message() {
    let (dovecot, mut client) = server();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&["--delete", "expunge"])
        .mount();
    let msg = mount.message_dir("INBOX", "Base64 body");
    let uid = uid_of(&msg);

    sh_ok(&format!("rm -r {}", shq(&msg)), &mount);

    assert!(!names(&mount.join("INBOX")).contains(&name_of(&msg)));
    assert_errno("stat after rm -r", fs::metadata(&msg), libc::ENOENT, &mount);
    let mut expected = before.clone();
    expected.take("INBOX", uid);
    // Trash is not touched.
    assert_server(&mut client, &expected, &["INBOX"], &mount);
}

#[test]
fn delete_off_refuses_with_eperm_and_the_files_come_back() {
    let (dovecot, mut client) = server();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&["--delete", "off"])
        .mount();
    let msg = mount.message_dir("INBOX", "Fwd: Original with attachment");
    let uid = uid_of(&msg);
    let files = tree(&msg);
    assert!(files.len() > 3, "{files:?}");

    let out = sh(&format!("rm -r {}", shq(&msg)));
    assert!(!out.status.success(), "rm -r succeeded with --delete=off");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
    assert_errno("rmdir", fs::remove_dir(&msg), libc::ENOTEMPTY, &mount);

    assert!(names(&mount.join("INBOX")).contains(&name_of(&msg)));
    assert_eq!(tree(&msg), files, "the message's files did not come back");
    assert!(fs::read(msg.join("message.eml")).unwrap() == before.message("INBOX", uid).bytes);
    assert_server(&mut client, &before, &[], &mount);
}

#[test]
fn unlinking_a_part_only_hides_it_from_this_mount() {
    let (dovecot, mut client) = server();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let msg = mount.message_dir("INBOX", "Plain text greeting");
    let uid = uid_of(&msg);
    assert!(names(&msg).contains("body.txt"));

    fs::remove_file(msg.join("body.txt")).unwrap();

    assert!(!names(&msg).contains("body.txt"));
    assert!(names(&msg).contains("message.eml"));
    assert_errno(
        "stat body.txt",
        fs::metadata(msg.join("body.txt")),
        libc::ENOENT,
        &mount,
    );
    assert!(fs::read(msg.join("message.eml")).unwrap() == before.message("INBOX", uid).bytes);
    assert!(names(&mount.join("INBOX")).contains(&name_of(&msg)));
    // INBOX is not touched: not even a flag was stored.
    assert_server(&mut client, &before, &[], &mount);
    let other = MountSpec::new(&dovecot, "alice").mount();
    let same = other.message_dir("INBOX", "Plain text greeting");
    assert_eq!(
        fs::read_to_string(same.join("body.txt")).unwrap(),
        sample("plain").body_file().unwrap()
    );
}

#[test]
fn a_message_marked_deleted_elsewhere_survives_our_deletes() {
    let (dovecot, mut client) = server();
    let marked = uid_with_bytes(&snapshot(&mut client), "INBOX", &sample("plain").raw);
    client_store(&mut client, "INBOX", marked, "+FLAGS (\\Deleted)");
    let before = snapshot(&mut client);
    assert_eq!(
        before.message("INBOX", marked).flags,
        set(&["\\Seen", "\\Deleted"])
    );
    let mut expected = before.clone();

    // Expunging one message must not expunge the other \Deleted one.
    {
        let mount = MountSpec::new(&dovecot, "alice")
            .args(&["--delete", "expunge"])
            .mount();
        let msg = mount.message_dir("INBOX", "Base64 body");
        expected.take("INBOX", uid_of(&msg));
        sh_ok(&format!("rm -r {}", shq(&msg)), &mount);
        assert_server(&mut client, &expected, &["INBOX"], &mount);
    }
    // Nor must moving one to Trash.
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let msg = mount.message_dir("INBOX", "Chart with a long file name");
    let moved = expected.take("INBOX", uid_of(&msg));
    sh_ok(&format!("rm -r {}", shq(&msg)), &mount);
    let after = snapshot(&mut client);
    let new = after.new_uids(&before, "Trash");
    assert_eq!(new.len(), 1, "Trash gained {new:?}");
    expected.mailbox("Trash").messages.insert(new[0], moved);
    let after = assert_server(&mut client, &expected, &["INBOX", "Trash"], &mount);
    assert_eq!(
        after.message("INBOX", marked).flags,
        set(&["\\Seen", "\\Deleted"])
    );
}

#[test]
fn rmdir_of_a_non_empty_message_dir_is_enotempty() {
    let (dovecot, mut client) = server();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let msg = mount.message_dir("INBOX", "Plain text greeting");
    let files = names(&msg);
    assert_errno("rmdir", fs::remove_dir(&msg), libc::ENOTEMPTY, &mount);
    assert_eq!(names(&msg), files);
    assert_server(&mut client, &before, &[], &mount);
}

// ---- moving messages --------------------------------------------------------------------------

#[test]
fn mv_moves_a_message_to_another_mailbox() {
    let (dovecot, mut client) = server();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let msg = mount.message_dir("INBOX", "Résumé and data");
    let uid = uid_of(&msg);
    let name = name_of(&msg);
    let bytes = before.message("INBOX", uid).bytes.clone();

    sh_ok(
        &format!("mv {} {}/", shq(&msg), shq(&mount.join("Archive"))),
        &mount,
    );

    let mut expected = before.clone();
    let moved = expected.take("INBOX", uid);
    let after = snapshot(&mut client);
    let new = after.new_uids(&before, "Archive");
    assert_eq!(new.len(), 1, "Archive gained {new:?}\n{}", log_tail(&mount));
    expected.mailbox("Archive").messages.insert(new[0], moved);
    assert_server(&mut client, &expected, &["INBOX", "Archive"], &mount);

    assert!(!names(&mount.join("INBOX")).contains(&name));
    assert_errno(
        "stat the old path",
        fs::metadata(&msg),
        libc::ENOENT,
        &mount,
    );
    // The name mv used resolves until the next listing of Archive: at once, and once the
    // kernel's one-second entry cache has expired (so imapfs itself resolves it).
    let target = mount.join("Archive").join(&name);
    let mut problems = Vec::new();
    for when in ["at once", "after 1.1 s"] {
        if when != "at once" {
            std::thread::sleep(Duration::from_millis(1100));
        }
        match fs::metadata(&target) {
            Ok(m) if m.is_dir() => {}
            other => problems.push(format!("{when}: stat {name:?} in Archive: {other:?}")),
        }
        let eml = target.join("message.eml");
        match fs::read(&eml) {
            Ok(got) if got == bytes => {}
            Ok(got) => problems.push(format!(
                "{when}: message.eml has {} bytes (stat says {:?}), the message has {}",
                got.len(),
                fs::metadata(&eml).map(|m| m.len()),
                bytes.len()
            )),
            Err(e) => problems.push(format!("{when}: read message.eml: {e}")),
        }
    }
    // The next listing shows it once, under its new UID, with the same content.
    let listed = names(&mount.join("Archive"));
    let new_name = format!("{} Résumé and data", new[0]);
    if listed != set(&["2023", &new_name]) {
        problems.push(format!("Archive lists {listed:?}"));
    }
    let eml = mount.join("Archive").join(&new_name).join("message.eml");
    match fs::read(&eml) {
        Ok(got) if got == bytes => {}
        Ok(got) => problems.push(format!(
            "after the listing: {new_name}/message.eml has {} bytes, the message has {}",
            got.len(),
            bytes.len()
        )),
        Err(e) => problems.push(format!(
            "after the listing: read {new_name}/message.eml: {e}"
        )),
    }
    assert!(
        problems.is_empty(),
        "{}\nimapfs log:\n{}",
        problems.join("\n"),
        log_tail(&mount)
    );
}

#[test]
fn renaming_a_message_within_its_mailbox_is_eperm() {
    let (dovecot, mut client) = server();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let msg = mount.message_dir("INBOX", "Plain text greeting");
    let listing = names(&mount.join("INBOX"));
    for new_name in ["999 Renamed", "Renamed"] {
        assert_errno(
            &format!("rename to {new_name:?}"),
            fs::rename(&msg, mount.join("INBOX").join(new_name)),
            libc::EPERM,
            &mount,
        );
    }
    assert_eq!(names(&mount.join("INBOX")), listing);
    assert_server(&mut client, &before, &[], &mount);
}

#[test]
fn renaming_a_part_file_is_eperm_and_into_a_mailbox_exdev() {
    let (dovecot, mut client) = server();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let msg = mount.message_dir("INBOX", "Plain text greeting");
    let other = mount.message_dir("INBOX", "Base64 body");
    let body = msg.join("body.txt");
    // Into a mailbox, rename(2) says EXDEV, and mv copies the file there instead
    // (tools.rs); within its message or into another one it cannot be done at all.
    for (target, errno) in [
        (mount.join("Archive/body.txt"), libc::EXDEV),
        (msg.join("renamed.txt"), libc::EPERM),
        (other.join("body2.txt"), libc::EPERM),
    ] {
        assert_errno(
            &format!("rename body.txt to {}", target.display()),
            fs::rename(&body, &target),
            errno,
            &mount,
        );
    }
    assert!(names(&msg).contains("body.txt"));
    assert!(!names(&mount.join("Archive")).contains("body.txt"));
    assert_server(&mut client, &before, &[], &mount);
}

/// `mkfifo`, `mknod` and `ln -s` cannot make mail: EPERM with nothing sent; a regular
/// file made by `mknod(2)` is an empty new file, like `touch`'s.
#[test]
fn fifos_devices_and_symlinks_are_eperm_and_mknod_of_a_file_makes_an_empty_one() {
    use std::os::unix::fs::FileTypeExt;
    let (dovecot, mut client) = server();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let mknod = |path: &Path, mode: libc::mode_t| {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path for the call's duration.
        if unsafe { libc::mknod(c.as_ptr(), mode, 0) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    let inbox = mount.join("INBOX");
    for (what, mode) in [
        ("a FIFO", libc::S_IFIFO | 0o600),
        ("a socket", libc::S_IFSOCK | 0o600),
        ("a character device", libc::S_IFCHR | 0o600),
    ] {
        assert_errno(
            &format!("mknod of {what}"),
            mknod(&inbox.join("special"), mode),
            libc::EPERM,
            &mount,
        );
    }
    assert_errno(
        "ln -s",
        std::os::unix::fs::symlink("body.txt", inbox.join("link")),
        libc::EPERM,
        &mount,
    );
    assert!(!names(&inbox).contains("special") && !names(&inbox).contains("link"));
    mknod(&inbox.join("empty.txt"), libc::S_IFREG | 0o600).unwrap();
    let meta = fs::metadata(inbox.join("empty.txt")).unwrap();
    assert!(meta.file_type().is_file() && !meta.file_type().is_fifo());
    assert_eq!(meta.len(), 0);
    assert_server(&mut client, &before, &[], &mount);
}

/// Anyone can mail the user an `X-Imapfs-File` header. A forged one (a time past what a
/// clock holds, a file bigger than its message) lists as an ordinary message that reads as
/// one; imapfs stays up.
#[test]
fn a_forged_x_imapfs_file_header_is_an_ordinary_message() {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    let mut client = dovecot.client("alice").unwrap();
    for (subject, header) in [
        (
            "Forged time",
            "size=1; mtime=18446744073709551615.1000000000; name=a.txt",
        ),
        (
            "Forged size",
            "size=1099511627776; mtime=1.000000000; name=b.txt",
        ),
    ] {
        let raw = format!(
            "From: x@example.org\r\nSubject: {subject}\r\nX-Imapfs-File: {header}\r\n\r\nhi\r\n"
        );
        fixture::append(&mut client, "INBOX", raw.as_bytes(), &[]).unwrap();
    }
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let process = super::faults::Imapfs::of(&mount);
    assert_eq!(
        names(&mount.join("INBOX")),
        set(&["1 Forged time", "2 Forged size"])
    );
    assert_eq!(
        fs::read(mount.join("INBOX/2 Forged size/body.txt")).unwrap(),
        b"hi\n"
    );
    process.assert_healthy(&mount);
}

// ---- mailboxes --------------------------------------------------------------------------------

#[test]
fn mkdir_creates_a_mailbox_named_in_modified_utf7() {
    let (dovecot, mut client) = server();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();

    fs::create_dir(mount.join("Reçus2")).unwrap();
    assert!(names(&mount.path).contains("Reçus2"));
    assert!(fs::metadata(mount.join("Reçus2")).unwrap().is_dir());
    assert!(names(&mount.join("Reçus2")).is_empty());
    fs::create_dir(mount.join("Archive/2024")).unwrap();
    assert_eq!(names(&mount.join("Archive")), set(&["2023", "2024"]));
    assert!(names(&mount.join("Archive/2024")).is_empty());
    assert_errno(
        "mkdir an existing mailbox",
        fs::create_dir(mount.join("Reçus2")),
        libc::EEXIST,
        &mount,
    );

    let mut expected = before.clone();
    expected.add_empty_mailbox("Re&AOc-us2");
    expected.add_empty_mailbox("Archive/2024");
    assert_eq!(fixture::encode_mailbox_name("Reçus2"), "Re&AOc-us2");
    assert_server(
        &mut client,
        &expected,
        &["Re&AOc-us2", "Archive/2024"],
        &mount,
    );
}

#[test]
fn rmdir_deletes_an_empty_mailbox() {
    let (dovecot, mut client) = server();
    fixture::create_mailbox(&mut client, "Vide é").unwrap();
    fixture::create_mailbox(&mut client, "Archive/Old").unwrap();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    assert!(names(&mount.path).contains("Vide é"));

    fs::remove_dir(mount.join("Vide é")).unwrap();
    fs::remove_dir(mount.join("Archive/Old")).unwrap();

    assert!(!names(&mount.path).contains("Vide é"));
    assert_errno(
        "stat",
        fs::metadata(mount.join("Vide é")),
        libc::ENOENT,
        &mount,
    );
    assert_eq!(names(&mount.join("Archive")), set(&["2023"]));
    let mut expected = before.clone();
    expected
        .mailboxes
        .remove(&fixture::encode_mailbox_name("Vide é"));
    expected.mailboxes.remove("Archive/Old");
    assert_server(&mut client, &expected, &[], &mount);
}

#[test]
fn rmdir_of_a_non_empty_mailbox_is_enotempty() {
    let (dovecot, mut client) = server();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let root = names(&mount.path);
    // Messages; a child and no messages; a \Noselect parent with a child.
    for dir in ["Reçus", "Archive", "Проекты"] {
        assert_errno(
            &format!("rmdir {dir}"),
            fs::remove_dir(mount.join(dir)),
            libc::ENOTEMPTY,
            &mount,
        );
    }
    assert_eq!(names(&mount.path), root);
    assert!(!names(&mount.join("Reçus")).is_empty());
    assert_server(&mut client, &before, &[], &mount);
}

#[test]
fn mv_renames_a_mailbox_also_across_the_hierarchy() {
    let (dovecot, mut client) = server();
    fixture::create_mailbox(&mut client, "Work").unwrap();
    fixture::create_mailbox(&mut client, "Work/Sub").unwrap();
    fixture::append(&mut client, "Work", &sample("base64").raw, &["\\Seen"]).unwrap();
    fixture::append(&mut client, "Work/Sub", &sample("plain").raw, &[]).unwrap();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let old_eml = mount.message_dir("Work", "Base64 body").join("message.eml");
    let rel_eml = old_eml
        .strip_prefix(mount.join("Work"))
        .unwrap()
        .to_path_buf();

    sh_ok(
        &format!(
            "mv {} {}",
            shq(&mount.join("Reçus")),
            shq(&mount.join("Reçus 2023"))
        ),
        &mount,
    );
    let root = names(&mount.path);
    assert!(
        root.contains("Reçus 2023") && !root.contains("Reçus"),
        "{root:?}"
    );
    mount.message_dir("Reçus 2023", "Café ouvert");

    sh_ok(
        &format!(
            "mv {} {}",
            shq(&mount.join("Work")),
            shq(&mount.join("Archive/Work"))
        ),
        &mount,
    );
    assert!(!names(&mount.path).contains("Work"));
    assert_eq!(names(&mount.join("Archive")), set(&["2023", "Work"]));
    assert!(names(&mount.join("Archive/Work")).contains("Sub"));
    let eml = fs::read(mount.join("Archive/Work").join(&rel_eml)).unwrap();
    assert!(eml == sample("base64").raw);
    let sub = mount.message_dir("Archive/Work/Sub", "Plain text greeting");
    assert!(fs::read(sub.join("message.eml")).unwrap() == sample("plain").raw);

    let mut expected = before.clone();
    let renames = [
        ("Re&AOc-us", "Re&AOc-us 2023"),
        ("Work", "Archive/Work"),
        ("Work/Sub", "Archive/Work/Sub"),
    ];
    for (from, to) in renames {
        let mailbox = expected.mailboxes.remove(from).unwrap();
        expected.mailboxes.insert(to.into(), mailbox);
    }
    assert_server(
        &mut client,
        &expected,
        &["Re&AOc-us 2023", "Archive/Work", "Archive/Work/Sub"],
        &mount,
    );
}

#[test]
fn inbox_cannot_be_deleted_or_renamed() {
    let (dovecot, mut client) = server();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let inbox = mount.join("INBOX");
    assert_errno("rmdir INBOX", fs::remove_dir(&inbox), libc::EPERM, &mount);
    for target in ["Inbox2", "Archive/INBOX"] {
        assert_errno(
            &format!("rename INBOX to {target}"),
            fs::rename(&inbox, mount.join(target)),
            libc::EPERM,
            &mount,
        );
    }
    assert!(names(&mount.path).contains("INBOX"));
    assert!(!names(&mount.path).contains("Inbox2"));
    assert_eq!(names(&inbox).len(), 9);
    assert_server(&mut client, &before, &[], &mount);
}

#[test]
fn a_mailbox_name_the_server_cannot_store_is_einval() {
    let (dovecot, mut client) = server();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let root = names(&mount.path);
    // Dovecot refuses these (NO [CANNOT]): a leading '~', and Maildir's own directory names.
    let outcomes = [
        ("mkdir ~tilde", errno(fs::create_dir(mount.join("~tilde")))),
        (
            "mkdir Archive/new",
            errno(fs::create_dir(mount.join("Archive/new"))),
        ),
        ("mkdir tmp", errno(fs::create_dir(mount.join("tmp")))),
        (
            "mv Reçus cur",
            errno(fs::rename(mount.join("Reçus"), mount.join("cur"))),
        ),
    ];
    let wrong: Vec<String> = outcomes
        .iter()
        .filter(|(_, e)| *e != Some(libc::EINVAL))
        .map(|(what, e)| format!("{what}: {:?}", e.map(io::Error::from_raw_os_error)))
        .collect();
    assert_eq!(names(&mount.path), root);
    assert_eq!(names(&mount.join("Archive")), set(&["2023"]));
    assert_server(&mut client, &before, &[], &mount);
    assert!(
        wrong.is_empty(),
        "expected EINVAL from:\n  {}\nimapfs log:\n{}",
        wrong.join("\n  "),
        log_tail(&mount)
    );
}

// ---- new messages -----------------------------------------------------------------------------

#[test]
fn an_rfc5322_file_is_appended_as_is_with_crlf_line_ends() {
    let (dovecot, mut client) = server();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let written: &[u8] = b"From: Alice <alice@example.org>\n\
        To: Bob <bob@example.org>\n\
        Subject: Written through the mount\n\
        Date: Mon, 01 Jan 2024 10:00:00 +0000\n\
        Message-ID: <written-1@imapfs.test>\n\
        \n\
        First line\n\
        A line that already ends in CRLF\r\n\
        \n\
        Last line\n";
    let crlf = String::from_utf8(written.to_vec())
        .unwrap()
        .replace("\r\n", "\n")
        .replace('\n', "\r\n")
        .into_bytes();

    write_new_file(&mount.join("INBOX/hand.eml"), written).unwrap();

    let after = snapshot(&mut client);
    let new = after.new_uids(&before, "INBOX");
    assert_eq!(new.len(), 1, "INBOX gained {new:?}\n{}", log_tail(&mount));
    let stored = after.message("INBOX", new[0]);
    assert!(
        stored.bytes == crlf,
        "stored bytes differ:\n{:?}",
        String::from_utf8_lossy(&stored.bytes)
    );
    let mut expected = before.clone();
    expected.mailbox("INBOX").messages.insert(
        new[0],
        Message {
            flags: BTreeSet::new(),
            bytes: crlf.clone(),
        },
    );
    assert_server(&mut client, &expected, &["INBOX"], &mount);

    let listing = names(&mount.join("INBOX"));
    let dir_name = format!("{} Written through the mount", new[0]);
    assert!(listing.contains(&dir_name), "{listing:?}");
    assert!(!listing.contains("hand.eml"), "{listing:?}");
    let eml = fs::read(mount.join("INBOX").join(&dir_name).join("message.eml")).unwrap();
    assert!(eml == crlf);
}

#[test]
fn any_other_file_is_wrapped_as_an_attachment_that_reads_back_the_same() {
    let (dovecot, mut client) = server();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let all_bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    let mut pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n".to_vec();
    pdf.extend(0..=255u8);
    pdf.extend_from_slice(b"\n%%EOF\n");
    // Looks like header fields, but none a message has: still a plain file.
    let notes = b"Shopping: milk, eggs\nTodo: call Bob\r\n\nThat is all.\n".to_vec();
    // Fields a message has, but no originator: a blog post's metadata.
    let post = b"Title: My first post\nDate: 2024-01-01\nCategory: notes\n\nHello.\n".to_vec();
    // A mail's fields under a name that says another kind of document.
    let saved = b"From: a@example.org\nDate: Mon, 1 Jan 2024 10:00:00 +0000\n\nHi\n".to_vec();
    // Named like mail, but none: wrapped, never declared `message/rfc822`.
    let not_mail = b"hello\n".to_vec();
    let files: [(&str, &[u8]); 7] = [
        ("all-bytes.bin", &all_bytes),
        ("Relevé 2024.pdf", &pdf),
        ("notes.txt", &notes),
        ("post.md", &post),
        ("saved.txt", &saved),
        ("not-mail.eml", &not_mail),
        ("page.mht", b"abc\n"),
    ];

    for (name, data) in &files[3..] {
        write_new_file(&mount.join("INBOX").join(name), data).unwrap();
    }
    write_new_file(&mount.join("INBOX/all-bytes.bin"), &all_bytes).unwrap();
    let local = tempfile::tempdir().unwrap();
    let source = local.path().join("Relevé 2024.pdf");
    fs::write(&source, &pdf).unwrap();
    sh_ok(
        &format!("cp {} {}/", shq(&source), shq(&mount.join("INBOX"))),
        &mount,
    );
    write_new_file(&mount.join("INBOX/notes.txt"), &notes).unwrap();

    let after = snapshot(&mut client);
    let new = after.new_uids(&before, "INBOX");
    assert_eq!(new.len(), 7, "INBOX gained {new:?}\n{}", log_tail(&mount));
    let mut expected = before.clone();
    for (name, data) in files {
        // Independently of imapfs, the server holds a message named after the file with the
        // file as its one attachment.
        let uid = *new
            .iter()
            .find(|uid| {
                let parsed = MessageParser::default().parse(&after.message("INBOX", **uid).bytes);
                parsed.is_some_and(|m| m.subject() == Some(name))
            })
            .unwrap_or_else(|| panic!("no message with Subject {name:?}"));
        let stored = after.message("INBOX", uid);
        assert!(stored.flags.is_empty(), "{name}: {:?}", stored.flags);
        let parsed = MessageParser::default().parse(&stored.bytes).unwrap();
        let attachments: Vec<_> = parsed.attachments().collect();
        assert_eq!(attachments.len(), 1, "{name}");
        assert_eq!(attachments[0].attachment_name(), Some(name));
        assert!(
            attachments[0].contents() == data,
            "{name}: attachment differs"
        );
        expected
            .mailbox("INBOX")
            .messages
            .insert(uid, stored.clone());

        // And through the mount, under `<uid> <name>/<name>`.
        let dir = mount.join("INBOX").join(format!("{uid} {name}"));
        assert!(fs::metadata(&dir).unwrap().is_dir(), "{name}");
        assert!(names(&dir).contains(name), "{name}: {:?}", names(&dir));
        let copy = local.path().join(format!("back-{uid}"));
        sh_ok(
            &format!("cp {} {}", shq(&dir.join(name)), shq(&copy)),
            &mount,
        );
        assert!(fs::read(&copy).unwrap() == data, "{name} read back differs");
        assert_eq!(
            fs::metadata(dir.join(name)).unwrap().len(),
            data.len() as u64
        );
    }
    // The mailbox shows each stored file as that file again, with the bytes written.
    let listing = names(&mount.join("INBOX"));
    for (name, data) in files {
        assert!(
            listing.contains(name),
            "{name} not shown as a file: {listing:?}"
        );
        let shown = mount.join("INBOX").join(name);
        assert!(
            fs::read(&shown).unwrap() == *data,
            "{name} as a file differs"
        );
    }
    assert_server(&mut client, &expected, &["INBOX"], &mount);
    // Another mount, whose caches never held them, reads the same bytes from the server.
    let other = MountSpec::new(&dovecot, "alice").mount();
    for (name, data) in files {
        let read = fs::read(other.join("INBOX").join(name));
        assert!(
            read.as_deref().ok() == Some(data),
            "{name} through another mount: {:?}\n{}",
            read.map(|d| d.len()),
            log_tail(&other)
        );
    }
}

/// A message imapfs stored from a file named `*.eml` before it stopped declaring such files
/// `message/rfc822` (base64-encoded, which Dovecot's BINARY decodes as a message, one byte
/// off): its file reads back exactly, decoded here from the part's bytes.
#[test]
fn a_file_stored_as_a_base64_message_rfc822_part_reads_back_exactly() {
    let (dovecot, mut client) = server();
    let raw = "Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n\
        From: imapfs <imapfs@localhost>\r\n\
        Subject: notes.eml\r\n\
        X-Imapfs-File: size=6; mtime=1704103200.000000000; name=notes.eml\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
        --b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nFile stored by imapfs: notes.eml\r\n\
        --b\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\
        Content-Disposition: attachment; filename=\"notes.eml\"\r\n\r\naGVsbG8K\r\n--b--\r\n";
    fixture::append(&mut client, "INBOX", raw.as_bytes(), &[]).unwrap();
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let read = fs::read(mount.join("INBOX/notes.eml"));
    assert!(
        read.as_deref().ok() == Some(&b"hello\n"[..]),
        "{read:?}\n{}",
        log_tail(&mount)
    );
}

#[test]
fn a_failed_append_fails_close_and_keeps_the_bytes_in_the_spool() {
    let (dovecot, mut client) = server();
    fixture::create_mailbox(&mut client, "Doomed").unwrap();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let data = b"Notes that must not be lost.\n".repeat(100);

    let mut file = fs::File::create(mount.join("Doomed/notes.txt")).unwrap();
    file.write_all(&data).unwrap();
    client.delete("Doomed").unwrap();
    assert_errno(
        "close after a failed APPEND",
        close(file),
        libc::EIO,
        &mount,
    );

    let spooled: Vec<PathBuf> = fs::read_dir(&mount.spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(spooled.len(), 1, "{spooled:?}");
    assert!(
        fs::read(&spooled[0]).unwrap() == data,
        "the spool file lost the bytes"
    );
    let mut expected = before.clone();
    expected.mailboxes.remove("Doomed");
    // Dovecot 2.3 can leave a deleted mailbox behind as a `\Noselect` name when an EXAMINE
    // of it runs while it is deleted (here the watcher's, bringing it up to date after the
    // mailbox list changed). Without imapfs, a loop of EXAMINE against CREATE and DELETE
    // from another session left 8 ghosts in 200 tries. Such a name holds nothing; what
    // this test asks is that nothing was stored anywhere.
    let (actual, mut diff) = compare_server(&mut client, &expected, &[]);
    if actual
        .mailboxes
        .get("Doomed")
        .is_some_and(|ghost| ghost.counters.is_none() && ghost.messages.is_empty())
    {
        diff.retain(|d| d != "mailbox \"Doomed\" appeared");
    }
    assert!(
        diff.is_empty(),
        "the server is not as expected:\n  {}\nimapfs log:\n{}",
        diff.join("\n  "),
        log_tail(&mount)
    );
}

// ---- strings that could carry IMAP syntax -----------------------------------------------------

#[test]
fn line_breaks_in_user_strings_are_einval_and_the_server_is_untouched() {
    let (dovecot, mut client) = server();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let root = names(&mount.path);
    let msg = mount.message_dir("INBOX", "Base64 body");
    for evil in [
        "x\r\nA1 DELETE INBOX",
        "x\nA1 DELETE INBOX",
        "x\rA1 DELETE INBOX",
    ] {
        let name = OsStr::from_bytes(evil.as_bytes());
        assert_errno(
            &format!("mkdir {evil:?}"),
            fs::create_dir(mount.path.join(name)),
            libc::EINVAL,
            &mount,
        );
        assert_errno(
            &format!("mkdir Archive/{evil:?}"),
            fs::create_dir(mount.join("Archive").join(name)),
            libc::EINVAL,
            &mount,
        );
        assert_errno(
            &format!("rename Reçus to {evil:?}"),
            fs::rename(mount.join("Reçus"), mount.path.join(name)),
            libc::EINVAL,
            &mount,
        );
        assert_errno(
            &format!("create INBOX/{evil:?}"),
            fs::File::create(mount.join("INBOX").join(name)),
            libc::EINVAL,
            &mount,
        );
        let value = format!("\\Seen{}", &evil[1..]);
        assert_errno(
            &format!("setxattr {value:?}"),
            set_xattr(&msg, "user.imap.flags", value.as_bytes()),
            libc::EINVAL,
            &mount,
        );
    }
    assert_eq!(names(&mount.path), root);
    assert_server(&mut client, &before, &[], &mount);
}

#[test]
fn imap_specials_in_mailbox_names_are_never_interpreted() {
    let (dovecot, mut client) = server();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let mut expected = before.clone();
    let mut created: Vec<String> = Vec::new();
    let mut problems = Vec::new();
    for name in [
        "q\"uote",
        "back\\slash",
        "INBOX\" \"x",
        "{5}",
        "x {5+}",
        "two words",
        "paren (1)",
        "star*",
        "per%cent",
    ] {
        // Either refused with EINVAL and nothing changed, or exactly this one mailbox
        // appeared under exactly this name and the mount shows it.
        match fs::create_dir(mount.join(name)) {
            Ok(()) => {
                let wire = fixture::encode_mailbox_name(name);
                expected.add_empty_mailbox(&wire);
                created.push(wire);
                let root = names(&mount.path);
                if !root.contains(name) {
                    problems.push(format!("{name:?} created but not listed; root: {root:?}"));
                } else if let Err(e) = fs::read_dir(mount.join(name)) {
                    problems.push(format!("{name:?} created but read_dir fails: {e}"));
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => problems.push(format!("mkdir {name:?}: {e}")),
        }
        let touched: Vec<&str> = created.iter().map(String::as_str).collect();
        let (_, diff) = compare_server(&mut client, &expected, &touched);
        problems.extend(diff.iter().map(|d| format!("after mkdir {name:?}: {d}")));
        if !diff.is_empty() {
            // Judge the next name against what is there now.
            expected = snapshot(&mut client);
        }
    }
    assert_eq!(names(&mount.join("INBOX")).len(), 9);
    assert!(
        problems.is_empty(),
        "{}\nimapfs log:\n{}",
        problems.join("\n"),
        log_tail(&mount)
    );
}

#[test]
fn a_temporary_file_renamed_after_close_is_stored_once() {
    // rsync and many editors write a temporary name, close it, then rename it.
    let (dovecot, mut client) = server();
    let before = snapshot(&mut client);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let local = tempfile::tempdir().unwrap();
    let source = local.path().join("report.pdf");
    let data: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    fs::write(&source, &data).unwrap();
    let tmp = mount.join("INBOX/.report.pdf.Xy12Ab");
    sh_ok(
        &format!(
            "cp {} {} && mv {} {}",
            shq(&source),
            shq(&tmp),
            shq(&tmp),
            shq(&mount.join("INBOX/report.pdf"))
        ),
        &mount,
    );
    let after = snapshot(&mut client);
    let new = after.new_uids(&before, "INBOX");
    assert_eq!(new.len(), 1, "INBOX gained {new:?}\n{}", log_tail(&mount));
    // Stored once, under its final name: the file it shows is listed, the message's
    // directory is there by name.
    let listed = names(&mount.join("INBOX"));
    assert!(listed.contains("report.pdf") && !listed.contains(".report.pdf.Xy12Ab"));
    let dir = format!("{} report.pdf", new[0]);
    assert!(!listed.contains(&dir), "{dir} listed: {listed:?}");
    let back = fs::read(mount.join("INBOX").join(&dir).join("report.pdf")).unwrap();
    assert_eq!(back, data);
    assert_eq!(fs::read(mount.join("INBOX/report.pdf")).unwrap(), data);
}
