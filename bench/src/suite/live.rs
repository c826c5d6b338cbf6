//! The live-update rows (issue 11): what one APPEND by another client costs until it shows
//! through a mount whose mailbox is listed and in the kernel's caches (11a, loopback), and a
//! second `ls -l` of the unchanged mailbox on the slow link (11b), which a followed mailbox
//! answers without asking the server.

use std::fs::File;
use std::io;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{brief, progress, settled_bytes, Bench, Results};
use crate::mount::Mount;
use crate::process::run_timed;
use crate::server::{MAILBOX, USER};
use crate::stats::Sample;

/// How long the new message may take to show before the row is marked wrong.
const SHOW_WITHIN: Duration = Duration::from_secs(30);

/// Waits until `mount` sent no command for 3.2 s (the watcher follows what was listed,
/// and has made the checks of the mailbox list it makes 1 s and 3 s after the server
/// reports a list change, which a new server does for its special-use mailboxes), at
/// most 30 s.
pub(super) fn quiet(mount: &Mount) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = mount.stats()?.commands;
    let mut since = Instant::now();
    while Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
        let now = mount.stats()?.commands;
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= Duration::from_millis(3_200) {
            break;
        }
    }
    Ok(())
}

/// `ls -l dir`, output dropped.
fn ls_l(dir: &Path) -> io::Result<()> {
    let status = Command::new("ls")
        .arg("-l")
        .arg(dir)
        .stdout(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("ls -l {} failed", dir.display())))
    }
}

impl Bench<'_> {
    /// 11a and 11b, each on a fresh mount.
    pub(super) fn imapfs_live(&mut self, results: &mut Results) -> io::Result<()> {
        let append = self.one_append_shows(results)?;
        progress(&format!(
            "  imapfs live: one APPEND to visible: {}",
            brief(&append)
        ));
        results.live_append.push(append);

        let mount = self.mount(self.slow.port(), None)?;
        let mailbox = Self::mailbox_dir(&mount);
        ls_l(&mailbox)?;
        quiet(&mount)?;
        let out = self.scratch("ls-again.out");
        let mut ls = Command::new("ls");
        ls.arg("-l").arg(&mailbox);
        let again = self.measure_on_mount(&mount, &self.slow, &mut ls, &out, &[0])?;
        mount.unmount()?;
        progress(&format!(
            "  imapfs live: second ls -l, slow link: {}",
            brief(&again)
        ));
        results.live_ls_again.push(again);

        let local = self.local_ls()?;
        progress(&format!(
            "  ls -l of as many local directories: {}",
            brief(&local)
        ));
        results.live_ls_local.push(local);
        Ok(())
    }

    /// `ls -l` (second run) of a local directory with as many subdirectories as the
    /// mailbox has messages: what `ls -l` itself costs here, without any server.
    fn local_ls(&self) -> io::Result<Sample> {
        let dir = self.scratch("local-ls");
        if !dir.exists() {
            std::fs::create_dir(&dir)?;
            for n in 0..self.corpus.messages {
                std::fs::create_dir(dir.join(format!("{n} local message")))?;
            }
        }
        ls_l(&dir)?;
        let out = self.scratch("local-ls.out");
        let mut ls = Command::new("ls");
        ls.arg("-l").arg(&dir);
        let timed = run_timed(&mut ls, "ls", Stdio::from(File::create(out)?), &[0])?;
        Ok(Sample {
            seconds: timed.seconds(),
            bytes: 0,
            commands: None,
            client_cpu: Some(timed.cpu_seconds),
            server_cpu: None,
        })
    }

    /// Lists the mailbox into the kernel's caches on a loopback mount, APPENDs one message
    /// from another client straight to the server, and measures until `stat` of its
    /// directory succeeds: wall time, bytes the mount received, its commands. The message
    /// is expunged after, so the other rows see the corpus unchanged.
    fn one_append_shows(&mut self, results: &mut Results) -> io::Result<Sample> {
        let mount = self.mount(self.loopback.port(), None)?;
        let mailbox = Self::mailbox_dir(&mount);
        ls_l(&mailbox)?;
        quiet(&mount)?;
        let mut other = self.dovecot.client(USER)?;
        let subject = format!("Live {}", std::process::id());
        let raw = format!(
            "From: other@example.com\r\nSubject: {subject}\r\nMessage-ID: <{subject}@bench>\r\n\r\nHello.\r\n"
        );
        settled_bytes(&self.loopback);
        self.loopback.reset_counters();
        let before = mount.stats()?;
        let started = Instant::now();
        let uid = fixture::append(&mut other, MAILBOX, raw.as_bytes(), &[])?;
        let path = mailbox.join(format!("{uid} {subject}"));
        let mut shown = false;
        while started.elapsed() < SHOW_WITHIN {
            if path.exists() {
                shown = true;
                break;
            }
            thread::sleep(Duration::from_millis(5));
        }
        let seconds = started.elapsed().as_secs_f64();
        let bytes = settled_bytes(&self.loopback);
        let after = mount.stats()?;
        if !shown {
            results.wrong(
                "7a",
                format!("the APPENDed message did not show within {SHOW_WITHIN:?}"),
            );
        }
        other
            .select(MAILBOX)
            .and_then(|_| other.uid_store(uid.to_string(), "+FLAGS.SILENT (\\Deleted)"))
            .and_then(|_| other.uid_expunge(uid.to_string()))
            .map_err(|e| io::Error::other(format!("expunging the benchmark's message: {e}")))?;
        let _ = other.logout();
        mount.unmount()?;
        Ok(Sample {
            seconds,
            bytes,
            commands: Some(after.commands.saturating_sub(before.commands)),
            client_cpu: None,
            server_cpu: None,
        })
    }
}
