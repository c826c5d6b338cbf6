//! A live mount (issue 11): another client's changes show through the mount by themselves,
//! through the kernel's caches, within 2 s, against Dovecot with all it offers and with
//! NOTIFY, IDLE, QRESYNC or CONDSTORE left out; and what learning of one change costs in a
//! 5,000-message mailbox. Faults (a cut, a restart, a silent server) are in `live_faults.rs`.

use std::time::{Duration, Instant};

use super::support::*;

/// How long a test waits for a change to show before it fails: far past the 2 s target,
/// so a loaded machine does not fail it, while the median is held to the target.
pub const SHOW_WITHIN: Duration = Duration::from_secs(10);

/// The target the issue sets for a change to show.
const TARGET: Duration = Duration::from_secs(2);

/// A server that announces Dovecot's capabilities without `left_out`, with three messages
/// in INBOX (`1 One`, `2 Two`, `3 Three`) and one in Work (`1 Work one`).
pub fn server_without(left_out: &[&str]) -> Dovecot {
    let dovecot = Dovecot::start(DovecotOptions {
        imap_capability: (!left_out.is_empty()).then(|| fixture::capabilities_without(left_out)),
        ..DovecotOptions::default()
    })
    .expect("start dovecot");
    let mut other = Other::new(&dovecot);
    for subject in ["One", "Two", "Three"] {
        other.append("INBOX", subject);
    }
    fixture::create_mailbox(&mut other.session, "Work").unwrap();
    other.append("Work", "Work one");
    dovecot
}

/// The other client: an independent IMAP session making changes.
pub struct Other {
    pub session: Session,
}

impl Other {
    pub fn new(dovecot: &Dovecot) -> Other {
        Other {
            session: dovecot.client("alice").expect("the other client logs in"),
        }
    }

    /// APPENDs a small message with `subject`; its UID.
    pub fn append(&mut self, mailbox: &str, subject: &str) -> u32 {
        let raw = format!(
            "From: other@example.com\r\nSubject: {subject}\r\nMessage-ID: <{subject}.{}@example.com>\r\n\r\nHello.\r\n",
            std::process::id()
        );
        fixture::append(&mut self.session, mailbox, raw.as_bytes(), &[]).expect("APPEND")
    }

    /// `UID STORE uid <how> (flags)` in `mailbox`, e.g. `+FLAGS` or `-FLAGS`.
    pub fn store(&mut self, mailbox: &str, uid: u32, how: &str, flags: &str) {
        self.session.select(mailbox).expect("SELECT");
        self.session
            .uid_store(uid.to_string(), format!("{how} ({flags})"))
            .expect("UID STORE");
    }

    /// Expunges exactly `uid` from `mailbox`.
    pub fn expunge(&mut self, mailbox: &str, uid: u32) {
        self.store(mailbox, uid, "+FLAGS.SILENT", "\\Deleted");
        self.session
            .uid_expunge(uid.to_string())
            .expect("UID EXPUNGE");
    }

    /// `UID MOVE` of `uid` from `from` to `to`.
    pub fn move_to(&mut self, from: &str, uid: u32, to: &str) {
        self.session.select(from).expect("SELECT");
        self.session.uid_mv(uid.to_string(), to).expect("UID MOVE");
    }
}

/// Whether `script` (run with `sh -c`) succeeds.
pub fn holds(script: &str) -> bool {
    sh(script).status.success()
}

/// Waits until the mount sends no command for 400 ms (what follows a listing is done),
/// at most 10 s.
pub fn settle(mount: &Mount) {
    settle_for(mount, Duration::from_millis(400));
}

/// Waits until the mount sends no command for `quiet`, at most 10 s more than that.
pub fn settle_for(mount: &Mount, quiet: Duration) {
    let deadline = Instant::now() + quiet + Duration::from_secs(10);
    let mut last = stats(mount).0;
    let mut since = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let now = stats(mount).0;
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return;
        }
    }
}

/// How long `check` took to hold, polled every 20 ms; fails the test (with the mount's log)
/// after [`SHOW_WITHIN`].
pub fn shows(mount: &Mount, what: &str, check: impl Fn() -> bool) -> Duration {
    shows_within(mount, what, SHOW_WITHIN, check)
}

/// How long `check` took to hold, polled every 20 ms; fails the test (with the mount's log
/// and where its threads are) after `limit`.
pub fn shows_within(
    mount: &Mount,
    what: &str,
    limit: Duration,
    check: impl Fn() -> bool,
) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = mount.log();
    // The watcher's routine (keepalives, polls of the mailbox list) would fill the tail.
    let routine = [
        "keepalive",
        "polling",
        "NOOP",
        "LIST \"\" \"*\"",
        "List completed",
    ];
    let tail: Vec<&str> = log
        .lines()
        .rev()
        .filter(|l| !routine.iter().any(|r| l.contains(r)))
        .take(80)
        .collect();
    // Where each of imapfs's threads is, if it still runs.
    let threads = sh(&format!(
        "gdb -p {} -batch -ex 'thread apply all bt 12' 2>/dev/null | grep -E '^Thread|^#' | head -300",
        mount.pid()
    ));
    panic!(
        "{what}: not visible after {limit:?}; log ends:\n{}\nthreads:\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        String::from_utf8_lossy(&threads.stdout)
    );
}

/// The fewest commands `ls -l` of `dir` sent over a few tries (a background poll or
/// keepalive may fall into one try, never into all).
pub fn ls_cost(mount: &Mount, dir: &str) -> u64 {
    let path = mount.join(dir);
    (0..5)
        .map(|_| {
            let before = stats(mount).0;
            assert!(holds(&format!("ls -l '{}' > /dev/null", path.display())));
            stats(mount).0 - before
        })
        .min()
        .unwrap()
}

/// The names in `dir` of the mount (`ls -1`).
pub fn ls(mount: &Mount, dir: &str) -> Vec<String> {
    let out = sh(&format!("ls -1 '{}'", mount.join(dir).display()));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Whether `ls` of `dir` succeeds and lists no `name` (a failing `ls` shows nothing).
fn shown_without(mount: &Mount, dir: &str, name: &str) -> bool {
    let out = sh(&format!("ls -1 '{}'", mount.join(dir).display()));
    out.status.success()
        && !String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l == name)
}

pub fn flags_of(mount: &Mount, message: &str) -> String {
    let out = sh(&format!(
        "getfattr --only-values -n user.imap.flags '{}'",
        mount.join(message).display()
    ));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Another client makes every kind of change while the mount's directories are in the
/// kernel's caches; each must show through `ls`, `stat` and `getfattr`. Returns how long
/// each took.
fn every_change_shows(dovecot: &Dovecot, mount: &Mount) -> Vec<(&'static str, Duration)> {
    let mut other = Other::new(dovecot);
    // Into the kernel's caches: the root, both mailboxes, the messages' attributes.
    assert_eq!(
        ls(mount, ""),
        ["Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash", "Work"]
    );
    assert_eq!(ls(mount, "INBOX"), ["1 One", "2 Two", "3 Three"]);
    assert_eq!(ls(mount, "Work"), ["1 Work one"]);
    for path in [
        "INBOX/1 One",
        "INBOX/2 Two",
        "INBOX/3 Three",
        "Work/1 Work one",
    ] {
        assert!(holds(&format!(
            "stat '{}' > /dev/null",
            mount.join(path).display()
        )));
    }
    assert_eq!(flags_of(mount, "INBOX/1 One"), "");
    settle(mount);
    let mut took = Vec::new();

    let uid = other.append("INBOX", "Arrived");
    let name = format!("{uid} Arrived");
    took.push((
        "new mail",
        shows(mount, "a message APPENDed elsewhere", || {
            ls(mount, "INBOX").contains(&name)
        }),
    ));
    assert!(holds(&format!(
        "stat '{}' > /dev/null",
        mount.join(&format!("INBOX/{name}")).display()
    )));

    other.store("INBOX", 1, "+FLAGS", "\\Flagged $Work");
    took.push((
        "flags set",
        shows(mount, "flags set elsewhere", || {
            let flags = flags_of(mount, "INBOX/1 One");
            flags.contains("\\Flagged") && flags.contains("$Work")
        }),
    ));
    other.store("INBOX", 1, "-FLAGS", "\\Flagged");
    took.push((
        "flags cleared",
        shows(mount, "a flag cleared elsewhere", || {
            !flags_of(mount, "INBOX/1 One").contains("\\Flagged")
        }),
    ));

    other.expunge("INBOX", 2);
    let gone = mount.join("INBOX/2 Two");
    took.push((
        "expunge",
        shows(mount, "a message expunged elsewhere", || {
            !holds(&format!("stat '{}' 2>/dev/null", gone.display()))
                && shown_without(mount, "INBOX", "2 Two")
        }),
    ));

    other.move_to("INBOX", 3, "Work");
    took.push((
        "move",
        shows(
            mount,
            "a message moved elsewhere between two watched mailboxes",
            || {
                shown_without(mount, "INBOX", "3 Three")
                    && ls(mount, "Work").iter().any(|n| n.ends_with(" Three"))
            },
        ),
    ));

    // Created, created, deleted, renamed, in this order: Dovecot 2.3.19's mailbox list
    // index, with a NOTIFY session open, can leave a mailbox CREATEd just after another was
    // DELETEd out of every LIST (even the creating session's) while STATUS finds it; and
    // after a RENAME it may serve the old list to sessions open then until one logs in.
    fixture::create_mailbox(&mut other.session, "Fresh").unwrap();
    took.push((
        "mailbox created",
        shows(mount, "a mailbox created elsewhere", || {
            ls(mount, "").contains(&"Fresh".to_string())
        }),
    ));
    fixture::create_mailbox(&mut other.session, "Old").unwrap();
    shows(mount, "a second mailbox created elsewhere", || {
        ls(mount, "").contains(&"Old".to_string())
    });
    other.session.delete("Fresh").expect("DELETE");
    took.push((
        "mailbox deleted",
        shows(mount, "a mailbox deleted elsewhere", || {
            shown_without(mount, "", "Fresh")
        }),
    ));
    other.session.rename("Old", "New").expect("RENAME");
    took.push((
        "mailbox renamed",
        shows(mount, "a mailbox renamed elsewhere", || {
            let root = ls(mount, "");
            root.contains(&"New".to_string()) && !root.contains(&"Old".to_string())
        }),
    ));

    // Between changes, looking again costs nothing.
    settle(mount);
    assert_eq!(ls_cost(mount, "INBOX"), 0, "a second ls -l of INBOX");
    assert_eq!(ls_cost(mount, "Work"), 0, "a second ls -l of Work");
    took
}

/// The median of what `every_change_shows` measured is within the target; each is
/// printed (the test's output says how fast each kind of change showed).
/// `allowance`: what a mode waits by design on top (a poll interval where only polling is
/// left). Each change is already held to [`SHOW_WITHIN`]; the median, which one slow moment
/// of a loaded machine does not move, to the target.
fn within_target(config: &str, took: &[(&str, Duration)], allowance: Duration) {
    let mut times: Vec<Duration> = took.iter().map(|(_, t)| *t).collect();
    times.sort();
    let median = times[times.len() / 2];
    eprintln!("{config}: median {median:?}; {took:?}");
    assert!(
        median < TARGET + allowance,
        "{config}: median {median:?} ({took:?})"
    );
}

#[test]
fn every_change_elsewhere_shows_within_two_seconds() {
    let dovecot = server_without(&[]);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let took = every_change_shows(&dovecot, &mount);
    within_target("NOTIFY, QRESYNC", &took, Duration::ZERO);
    assert!(mount.log().contains("mode=Notify"), "watched with NOTIFY");
    // Unmounting does not wait for the watcher.
    let start = Instant::now();
    assert!(mount.terminate(), "imapfs exits cleanly");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn without_notify_idle_and_polls_show_every_change() {
    let dovecot = server_without(&["NOTIFY"]);
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&["--poll-interval", "1"])
        .mount();
    let took = every_change_shows(&dovecot, &mount);
    within_target("IDLE, polls", &took, Duration::ZERO);
    assert!(mount.log().contains("mode=Idle"));
}

#[test]
fn with_polls_alone_every_change_shows_within_the_poll_interval() {
    let dovecot = server_without(&["NOTIFY", "IDLE"]);
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&["-o", "poll_interval=1"])
        .mount();
    let took = every_change_shows(&dovecot, &mount);
    within_target("polls alone", &took, Duration::from_secs(1));
    assert!(mount.log().contains("mode=Poll"));
}

#[test]
fn without_qresync_condstore_tells_every_change() {
    let dovecot = server_without(&["QRESYNC"]);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    let took = every_change_shows(&dovecot, &mount);
    within_target("NOTIFY, CONDSTORE", &took, Duration::ZERO);
}

#[test]
fn without_condstore_idle_and_listings_show_every_change() {
    let dovecot = server_without(&["CONDSTORE", "QRESYNC"]);
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&["--poll-interval", "1"])
        .mount();
    let took = every_change_shows(&dovecot, &mount);
    within_target("IDLE without CONDSTORE", &took, Duration::ZERO);
    assert!(mount.log().contains("mode=Idle"));
}

/// Learning of one change in a 5,000-message mailbox costs bytes in proportion to the
/// change: under 20 KB and at most 3 commands from the change to its visibility; and
/// looking at the unchanged mailbox again costs no command.
#[test]
fn one_change_in_a_large_mailbox_costs_little() {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    fixture::fill_bulk(&dovecot, "alice", "INBOX", 5000, 11, 1_500).unwrap();
    // The mailbox-list check NOTIFY mode runs every poll interval is not the change's
    // cost: kept out of the counted windows.
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&["--poll-interval", "600"])
        .mount();
    let listed = ls(&mount, "INBOX");
    assert_eq!(listed.len(), 5000);
    settle(&mount);
    assert_eq!(
        ls_cost(&mount, "INBOX"),
        0,
        "a second ls -l of 5,000 messages"
    );
    let mut other = Other::new(&dovecot);
    let mut costs = Vec::new();
    let mut measure =
        |what: &'static str, change: &mut dyn FnMut(&mut Other), check: &dyn Fn() -> bool| {
            // Past the checks of the mailbox list the watcher makes 1 s and 3 s after the
            // server reports a list change (Dovecot reports some late): not this change's.
            settle_for(&mount, Duration::from_millis(3_200));
            let (commands, bytes) = stats(&mount);
            let start = Instant::now();
            change(&mut other);
            shows(&mount, what, check);
            let took = start.elapsed();
            let (commands_after, bytes_after) = stats(&mount);
            costs.push((what, commands_after - commands, bytes_after - bytes, took));
        };
    let uid = std::cell::Cell::new(0);
    let new_name = std::cell::RefCell::new(String::new());
    measure(
        "one APPEND",
        &mut |o| {
            uid.set(o.append("INBOX", "Among many"));
            *new_name.borrow_mut() = format!("INBOX/{} Among many", uid.get());
        },
        &|| {
            holds(&format!(
                "stat '{}' >/dev/null 2>&1",
                mount.join(&new_name.borrow()).display()
            ))
        },
    );
    let first = listed.iter().find(|n| n.starts_with("1 ")).unwrap().clone();
    let first_path = format!("INBOX/{first}");
    measure(
        "one flag set",
        &mut |o| o.store("INBOX", 1, "+FLAGS", "\\Flagged"),
        &|| flags_of(&mount, &first_path).contains("\\Flagged"),
    );
    let gone = mount.join(&new_name.borrow());
    measure(
        "one expunge",
        &mut |o| o.expunge("INBOX", uid.get()),
        &|| !holds(&format!("stat '{}' >/dev/null 2>&1", gone.display())),
    );
    eprintln!("5,000 messages: (change, commands, bytes received, time to show) {costs:?}");
    for (what, commands, bytes, _) in &costs {
        if *commands > 3 || *bytes >= 20_000 {
            let log = mount.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "{what}: {commands} commands, {bytes} bytes; log ends:\n{}",
                tail.join("\n")
            );
        }
    }
    settle(&mount);
    assert_eq!(ls_cost(&mount, "INBOX"), 0, "unchanged again: no command");
}

/// A remount with a warm disk cache brings a 5,000-message mailbox up to date by what
/// changed while nothing was mounted (`changes_since`: CONDSTORE), not by listing it again.
#[test]
fn a_warm_remount_catches_up_by_the_change() {
    let dovecot = Dovecot::start(DovecotOptions::default()).unwrap();
    fixture::fill_bulk(&dovecot, "alice", "INBOX", 5000, 11, 1_500).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let arg = format!("--cache-dir={}", cache.path().join("cache").display());
    let mount = MountSpec::new(&dovecot, "alice").args(&[&arg]).mount();
    settle(&mount);
    let (_, before) = stats(&mount);
    let listed = ls(&mount, "INBOX");
    let (_, after) = stats(&mount);
    let cold = after - before;
    assert_eq!(listed.len(), 5000);
    assert!(mount.terminate(), "clean unmount");

    let mut other = Other::new(&dovecot);
    let uid = other.append("INBOX", "While away");
    other.store("INBOX", 1, "+FLAGS", "\\Flagged");
    let second = listed.iter().find(|n| n.starts_with("2 ")).unwrap().clone();
    other.expunge("INBOX", 2);

    let mount = MountSpec::new(&dovecot, "alice").args(&[&arg]).mount();
    settle(&mount);
    let (commands, before) = stats(&mount);
    let now = ls(&mount, "INBOX");
    let (commands_after, after) = stats(&mount);
    let warm = after - before;
    let mut expected: Vec<String> = listed.into_iter().filter(|n| *n != second).collect();
    expected.push(format!("{uid} While away"));
    expected.sort();
    let mut now_sorted = now.clone();
    now_sorted.sort();
    assert_eq!(now_sorted, expected);
    let first = now.iter().find(|n| n.starts_with("1 ")).unwrap();
    assert!(flags_of(&mount, &format!("INBOX/{first}")).contains("\\Flagged"));
    eprintln!(
        "warm remount after 3 changes: ls moved {warm} bytes in {} commands (cold ls: {cold} bytes)",
        commands_after - commands
    );
    assert!(warm < 20_000, "warm ls moved {warm} bytes (cold: {cold})");
}

/// `--no-watch`: nothing is watched; a directory is checked with the server when read
/// again, as before live updates.
/// After `mv` of a mailbox every session the mount had open ends (the watcher's too) and
/// new ones carry on: Dovecot 2.3 can leave a renamed mailbox's lock file held by a
/// session that was reading the mailbox as it moved, and every other session, the mount's
/// next `rmdir` or another client's LIST, then waited on it for 30 s and more (seen in CI).
#[test]
fn a_mailbox_rename_renews_every_session_and_changes_still_show() {
    let dovecot = server_without(&[]);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    assert_eq!(ls(&mount, "INBOX"), ["1 One", "2 Two", "3 Three"]);
    assert_eq!(ls(&mount, "Work"), ["1 Work one"]);
    settle(&mount);
    let before = dovecot.session_pids();
    assert!(
        before.len() >= 2,
        "the pool's and the watcher's: {before:?}"
    );
    std::fs::rename(mount.join("Work"), mount.join("Projects")).unwrap();
    shows(&mount, "the sessions open before the rename ending", || {
        let now = dovecot.session_pids();
        before.iter().all(|pid| !now.contains(pid))
    });
    assert_eq!(ls(&mount, "Projects"), ["1 Work one"]);
    let mut other = Other::new(&dovecot);
    let uid = other.append("Projects", "After the rename");
    let name = format!("{uid} After the rename");
    shows(&mount, "a message arriving after the rename", || {
        ls(&mount, "Projects").contains(&name)
    });
    let uid = other.append("INBOX", "In INBOX after the rename");
    let name = format!("{uid} In INBOX after the rename");
    shows(
        &mount,
        "a message arriving in INBOX after the rename",
        || ls(&mount, "INBOX").contains(&name),
    );
}

/// Another client deletes a followed mailbox and makes it again under the same name: the
/// name stays in the mailbox list, yet the listing of the old mailbox must not (its names
/// stayed in the kernel's cache for their whole 60 s before).
#[test]
fn a_mailbox_deleted_and_made_again_elsewhere_shows_its_new_messages() {
    let dovecot = server_without(&[]);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    assert_eq!(ls(&mount, "Work"), ["1 Work one"]);
    // A listing taken before the watcher was live is not followed: a later one is.
    shows(
        &mount,
        "Work followed (a second ls -l costs nothing)",
        || ls_cost(&mount, "Work") == 0,
    );
    settle(&mount);
    let mut other = Other::new(&dovecot);
    other.session.delete("Work").expect("DELETE");
    fixture::create_mailbox(&mut other.session, "Work").expect("CREATE");
    let uid = other.append("Work", "New work");
    // `stat` alone, which the kernel answers from its caches while they are held true.
    let old = mount.join("Work/1 Work one");
    shows(&mount, "the old mailbox's message gone from a stat", || {
        !old.exists()
    });
    let name = format!("{uid} New work");
    shows(&mount, "the new mailbox's message, alone", || {
        ls(&mount, "Work") == [name.as_str()]
    });
}

/// Dovecot 2.3's NOTIFY reports nothing at all when a mailbox with a child is deleted
/// (it stays as the child's `\Noselect` parent), made again and given as many messages:
/// only its UIDVALIDITY tells the new mailbox from the old, and the poll finds it.
#[test]
fn a_mailbox_made_again_that_notify_says_nothing_of_shows_by_the_poll() {
    let dovecot = server_without(&[]);
    let mut other = Other::new(&dovecot);
    fixture::create_mailbox(&mut other.session, "Work/2023").unwrap();
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&["--poll-interval", "1"])
        .mount();
    assert_eq!(ls(&mount, "Work"), ["1 Work one", "2023"]);
    shows(&mount, "Work followed", || ls_cost(&mount, "Work") == 0);
    settle(&mount);
    other.session.delete("Work").expect("DELETE");
    fixture::create_mailbox(&mut other.session, "Work").expect("CREATE");
    let uid = other.append("Work", "New work");
    assert_eq!(uid, 1, "as many messages as before");
    shows(&mount, "the new mailbox's message, alone", || {
        ls(&mount, "Work") == ["1 New work", "2023"]
    });
}

#[test]
fn no_watch_looks_again_when_read() {
    let dovecot = server_without(&[]);
    let mount = MountSpec::new(&dovecot, "alice")
        .args(&["--no-watch"])
        .mount();
    assert_eq!(ls(&mount, "INBOX"), ["1 One", "2 Two", "3 Three"]);
    settle(&mount);
    // Past the listing's freshness, reading again asks the server.
    std::thread::sleep(Duration::from_millis(1100));
    let (commands, _) = stats(&mount);
    assert_eq!(ls(&mount, "INBOX").len(), 3);
    assert!(stats(&mount).0 > commands, "the server was asked");
    let mut other = Other::new(&dovecot);
    let uid = other.append("INBOX", "Arrived");
    let name = format!("{uid} Arrived");
    shows(&mount, "a new message, when read again", || {
        ls(&mount, "INBOX").contains(&name)
    });
    let log = mount.log();
    assert!(!log.contains("watching the account"), "nothing watched");
    assert!(log.contains("--no-watch"));
}

/// `--offline` never contacts the server: the watcher stays off too.
#[test]
fn offline_on_purpose_the_watcher_stays_off() {
    let dovecot = server_without(&[]);
    let proxy = fixture::proxy::Proxy::start(
        dovecot.imaps_addr(),
        fixture::proxy::ProxyOptions::default(),
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let arg = format!("--cache-dir={}", cache.path().join("cache").display());
    let mount = MountSpec::new(&dovecot, "alice")
        .via_proxy(&proxy)
        .args(&[&arg])
        .mount();
    assert_eq!(ls(&mount, "INBOX"), ["1 One", "2 Two", "3 Three"]);
    assert!(mount.terminate(), "clean unmount");
    let before = proxy.connections();
    let mount = MountSpec::new(&dovecot, "alice")
        .via_proxy(&proxy)
        .args(&[&arg, "--offline"])
        .mount();
    assert_eq!(ls(&mount, "INBOX"), ["1 One", "2 Two", "3 Three"]);
    // The watcher would have connected by now (it starts with the mount).
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(proxy.connections(), before, "a connection to the server");
    assert!(!mount.log().contains("watching the account"));
}

/// Another client renames a mailbox while this mount has it open (a shell's cwd in it, an
/// open `message.eml`): both go on under the new name, as after a rename through the
/// mount (`ls .` was ESTALE, relative opens and reads ENOENT). Only the cwd's path is
/// the kernel's and is lost, as on NFS.
#[test]
fn a_mailbox_renamed_elsewhere_keeps_open_directories_and_files_working() {
    let dovecot = server_without(&[]);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    assert_eq!(ls(&mount, "Work"), ["1 Work one"]);
    shows(&mount, "Work followed", || ls_cost(&mount, "Work") == 0);
    settle(&mount);
    let eml = mount.join("Work/1 Work one/message.eml");
    let whole = std::fs::read(&eml).unwrap();
    let mut open = std::fs::File::open(&eml).unwrap();
    let mut head = [0u8; 10];
    std::io::Read::read_exact(&mut open, &mut head).unwrap();
    // A shell in the mailbox: it waits for `go`, then lists `.` and reads by a relative path.
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let script = format!(
        "import os, sys, time\n\
         os.chdir(sys.argv[1])\n\
         end = time.time() + 60\n\
         while not os.path.exists({go:?}) and time.time() < end: time.sleep(0.02)\n\
         print(sorted(os.listdir('.')))\n\
         print(len(open('1 Work one/message.eml', 'rb').read()))\n",
        go = go.to_str().unwrap()
    );
    let shell = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .arg(mount.join("Work"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // A file being written there, opened after the shell started (a child's exec closes
    // what the parent holds, which stores it): it failed at close with EIO, not stored.
    let mut note = std::fs::File::create(mount.join("Work/note.txt")).unwrap();
    std::io::Write::write_all(&mut note, b"begun, ").unwrap();
    let mut other = Other::new(&dovecot);
    other.session.rename("Work", "Projects").expect("RENAME");
    // Looked at without a child process: its exec would close (and so store) the file
    // being written.
    shows(&mount, "the new name, the old one gone", || {
        let root: Vec<String> = std::fs::read_dir(&mount.path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        root.iter().any(|n| n == "Projects")
            && !root.iter().any(|n| n == "Work")
            && mount.log().contains("a mailbox was renamed elsewhere")
    });
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut open, &mut rest).unwrap();
    assert_eq!([&head[..], &rest[..]].concat(), whole);
    std::io::Write::write_all(&mut note, b"ended\n").unwrap();
    drop(note);
    let stored = server_mailbox(&mut other.session, "Projects");
    assert_eq!(stored.len(), 2, "{}", mount.log());
    assert_eq!(
        String::from_utf8_lossy(&std::fs::read(mount.join("Projects/note.txt")).unwrap()),
        "begun, ended\n",
        "{}",
        mount.log()
    );
    std::fs::write(&go, b"").unwrap();
    let out = shell.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("['1 Work one', 'note.txt']\n{}\n", whole.len()),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        mount.log()
    );
}

/// A file this mount stored and then opened to write (`touch`, `>>`) stays what the server
/// holds: another mount's new version of it shows here, and the next append here builds on
/// that version, losing nothing (a bug hunt found this mount's last version kept until the
/// mailbox was listed again, and the other change dropped by the next edit).
#[test]
fn another_mounts_new_version_of_a_file_written_here_shows_and_is_built_on() {
    let dovecot = server_without(&[]);
    let here = MountSpec::new(&dovecot, "alice").mount();
    let there = MountSpec::new(&dovecot, "alice").mount();
    let path = |m: &Mount, name: &str| m.join("Work").join(name);
    for name in ["touched.txt", "appended.txt"] {
        std::fs::write(path(&here, name), b"a\n").unwrap();
    }
    for m in [&here, &there] {
        shows(m, "the files, followed", || {
            ls(m, "Work").contains(&"appended.txt".to_string()) && ls_cost(m, "Work") == 0
        });
    }
    // Opened to write here, closed unwritten; and appended to here.
    std::fs::OpenOptions::new()
        .append(true)
        .open(path(&here, "touched.txt"))
        .unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path(&here, "appended.txt"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"A\n").unwrap();
    drop(f);
    for (name, now) in [("touched.txt", "a\n"), ("appended.txt", "a\nA\n")] {
        shows(&there, "this mount's version there", || {
            std::fs::read(path(&there, name)).ok().as_deref() == Some(now.as_bytes())
        });
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(path(&there, name))
            .unwrap();
        std::io::Write::write_all(&mut f, b"B\n").unwrap();
    }
    for (name, now) in [("touched.txt", "a\nB\n"), ("appended.txt", "a\nA\nB\n")] {
        shows(&here, &format!("the other mount's {name} here"), || {
            std::fs::read(path(&here, name)).ok().as_deref() == Some(now.as_bytes())
        });
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path(&here, "touched.txt"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"C\n").unwrap();
    drop(f);
    shows(&there, "the edit built on both", || {
        std::fs::read(path(&there, "touched.txt")).ok().as_deref() == Some(&b"a\nB\nC\n"[..])
    });
    assert_eq!(
        ls(&here, "Work"),
        ["1 Work one", "appended.txt", "touched.txt"]
    );
}
