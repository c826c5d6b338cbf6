//! A live mount through faults (issue 11): the watcher's connection cut, the server
//! restarted, the server silent for longer than the keepalive. Each time the mount
//! notices, connects again, compares what it follows with the server, and shows the
//! changes made meanwhile; then looking costs nothing again.

use std::time::Duration;

use fixture::proxy::{Proxy, ProxyOptions};

use super::live::{flags_of, ls, ls_cost, server_without, settle, shows_within, Other};
use super::support::*;

/// How long a fault may take to be noticed and repaired: reconnecting backs off up to 5 s
/// between tries, and a restarted server may be slow to answer on a loaded machine.
const RECOVER_WITHIN: Duration = Duration::from_secs(30);

/// Like `live::shows`, with [`RECOVER_WITHIN`].
fn recovers(mount: &Mount, what: &str, check: impl Fn() -> bool) -> Duration {
    shows_within(mount, what, RECOVER_WITHIN, check)
}

/// Lists INBOX into the kernel's caches and waits until the watcher follows it (looking
/// again sends nothing).
fn followed(mount: &Mount) {
    assert_eq!(ls(mount, "INBOX"), ["1 One", "2 Two", "3 Three"]);
    recovers(mount, "the watcher started", || {
        mount.log().contains("watching the account")
    });
    settle(mount);
    assert_eq!(ls_cost(mount, "INBOX"), 0, "INBOX is followed");
}

/// Another client APPENDs `subject` and flags `1 One` while the watcher is away; both
/// must be reported by the watcher once it is back, show through the mount, and INBOX
/// must be followed again.
fn changes_while_away_show(dovecot: &Dovecot, mount: &Mount, subject: &str, away: &str) {
    let mut other = Other::new(dovecot);
    let uid = other.append("INBOX", subject);
    other.store("INBOX", 1, "+FLAGS", "\\Flagged");
    recovers(mount, away, || mount.log().contains(away));
    let name = format!("{uid} {subject}");
    recovers(mount, "the new message, after reconnecting", || {
        ls(mount, "INBOX").contains(&name)
    });
    recovers(mount, "the flag, after reconnecting", || {
        flags_of(mount, "INBOX/1 One").contains("\\Flagged")
    });
    recovers(mount, "the watcher back", || {
        mount.log().contains("watcher connection back")
    });
    settle(mount);
    assert_eq!(ls_cost(mount, "INBOX"), 0, "INBOX is followed again");
    // And a change after that is pushed as before.
    let later = other.append("INBOX", "Later");
    let later = format!("{later} Later");
    recovers(mount, "a change after the reconnection", || {
        ls(mount, "INBOX").contains(&later)
    });
}

#[test]
fn a_cut_watcher_connection_is_replaced() {
    let dovecot = server_without(&[]);
    let proxy = Proxy::start(dovecot.imaps_addr(), ProxyOptions::default()).unwrap();
    // One pool connection, so that the only other connection is the watcher's.
    let mount = MountSpec::new(&dovecot, "alice")
        .via_proxy(&proxy)
        .args(&["--connections", "1"])
        .mount();
    followed(&mount);
    // The pool logged in first (1); the other open one is the watcher's (2, or later if
    // its first try failed on a loaded machine).
    let open = proxy.open_connection_numbers();
    assert!(
        open.len() == 2 && open[0] == 1,
        "one pool, one watcher: {open:?}"
    );
    assert!(
        proxy.cut_connection(open[1]),
        "the watcher's connection was open"
    );
    changes_while_away_show(&dovecot, &mount, "While cut", "watcher connection lost");
    assert_eq!(
        proxy.open_connection_numbers().len(),
        2,
        "one pool, one watcher"
    );
}

#[test]
fn after_a_server_restart_the_watcher_catches_up() {
    let mut dovecot = server_without(&[]);
    let mount = MountSpec::new(&dovecot, "alice").mount();
    followed(&mount);
    dovecot.restart().expect("restart dovecot");
    changes_while_away_show(&dovecot, &mount, "After restart", "watcher connection lost");
}

/// A server that stops answering (a laptop asleep, a dead NAT entry) is noticed by the
/// keepalive: a NOOP (NOTIFY) or the end of an IDLE unanswered within `--timeout`.
fn a_silent_server_is_noticed(left_out: &[&str]) {
    let dovecot = server_without(left_out);
    let proxy = Proxy::start(dovecot.imaps_addr(), ProxyOptions::default()).unwrap();
    let mount = MountSpec::new(&dovecot, "alice")
        .via_proxy(&proxy)
        .args(&["--keepalive", "1", "--timeout", "3", "--poll-interval", "1"])
        .mount();
    followed(&mount);
    proxy.set_stalled(true);
    let mut other = Other::new(&dovecot);
    let uid = other.append("INBOX", "While silent");
    recovers(&mount, "the silence noticed", || {
        mount.log().contains("watcher connection lost")
    });
    proxy.set_stalled(false);
    let name = format!("{uid} While silent");
    recovers(&mount, "the new message, after the silence", || {
        ls(&mount, "INBOX").contains(&name)
    });
    recovers(&mount, "the watcher back", || {
        mount.log().contains("watcher connection back")
    });
    settle(&mount);
    assert_eq!(ls_cost(&mount, "INBOX"), 0, "INBOX is followed again");
    let later = other.append("INBOX", "Later");
    let later = format!("{later} Later");
    recovers(&mount, "a change after the silence", || {
        ls(&mount, "INBOX").contains(&later)
    });
}

#[test]
fn a_silent_server_is_noticed_with_notify() {
    a_silent_server_is_noticed(&[]);
}

#[test]
fn a_silent_server_is_noticed_while_idling() {
    a_silent_server_is_noticed(&["NOTIFY"]);
}
