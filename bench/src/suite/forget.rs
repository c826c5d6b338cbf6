//! The forget row: `find` over a large mailbox on a fresh mount, then `drop_caches`, which
//! makes the kernel forget every inode of the mount, and imapfs's resident memory before,
//! at its peak and once it has settled afterwards.

use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{brief, lines_of, progress, Bench, Results};
use crate::mount::Mount;
use crate::process::{self, run_timed};
use crate::report::mib;
use crate::server::WALK_MAILBOX;
use crate::stats::Series;

/// The target: after drop_caches, RSS at most this much above RSS after the mount.
pub const FORGET_TARGET: u64 = 16 << 20;
/// The performance issue's target: a cold `ls -l` of the 20,000-message Walk peaks at most
/// this much above RSS after the mount.
pub const LISTING_PEAK_TARGET: u64 = 32 << 20;

/// A cold `ls -l` of Walk on a fresh mount, and imapfs's resident memory around it.
#[derive(Debug, Default)]
pub struct ListingPeak {
    pub ls: Series,
    /// VmRSS after the mount and a first `ls` of its root, bytes.
    pub after_mount: u64,
    /// VmHWM after `ls -l`.
    pub peak: u64,
}

/// How often RSS is read while it settles.
const SETTLE_POLL: Duration = Duration::from_millis(100);
/// RSS has settled once it stayed within [`SETTLE_TOLERANCE`] for this long...
const SETTLE_STABLE: Duration = Duration::from_secs(1);
/// ...of the value it had then (imapfs's other threads may move it by a few pages).
const SETTLE_TOLERANCE: u64 = 256 << 10;
/// The longest wait for RSS to settle.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// What the forget row measured on one mount.
#[derive(Debug, Default)]
pub struct Forget {
    /// `--cache-size` of the mount; `None`: imapfs's default.
    pub cache: Option<u64>,
    /// The `find`: time, bytes from the server, commands, CPU.
    pub find: Series,
    /// Lines `find` printed, and how many of them were message directories.
    pub entries: usize,
    pub message_dirs: usize,
    /// VmRSS after the mount and a first `ls` of its root, bytes.
    pub after_mount: u64,
    /// VmHWM after `find`.
    pub peak: u64,
    /// VmRSS right after `find`.
    pub after_find: u64,
    /// VmRSS once settled after drop_caches.
    pub after_drop: u64,
    /// Seconds from the end of drop_caches until RSS reached the value it settled at.
    pub settle_seconds: f64,
    /// False when RSS was still moving after [`SETTLE_LIMIT`] (`after_drop` is the last).
    pub settled: bool,
}

impl Forget {
    /// RSS after drop_caches must not exceed this.
    pub fn limit(&self) -> u64 {
        self.after_mount + FORGET_TARGET
    }
}

/// `sync; echo 2 > /proc/sys/vm/drop_caches`: the kernel drops the unused dentries and inodes
/// of every filesystem, and sends FUSE FORGET for each inode of the mount it drops.
fn drop_dentries_and_inodes() -> io::Result<()> {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    fs::write("/proc/sys/vm/drop_caches", "2")
}

/// Polls RSS until it settles; returns (RSS, seconds until it reached that value, settled).
fn settle(mount: &Mount) -> io::Result<(u64, f64, bool)> {
    let started = Instant::now();
    let mut value = mount.rss()?;
    let mut since = Duration::ZERO;
    loop {
        process::check()?;
        thread::sleep(SETTLE_POLL);
        let now = started.elapsed();
        let rss = mount.rss()?;
        if rss.abs_diff(value) > SETTLE_TOLERANCE {
            (value, since) = (rss, now);
        } else if now - since >= SETTLE_STABLE {
            return Ok((rss, since.as_secs_f64(), true));
        }
        if now >= SETTLE_LIMIT {
            return Ok((rss, since.as_secs_f64(), false));
        }
    }
}

/// Lines of `find`'s output, and those naming a direct child of `dir` (message directories).
fn count_entries(lines: &[String], dir: &Path) -> (usize, usize) {
    let children = lines
        .iter()
        .filter(|l| {
            Path::new(l.as_str())
                .strip_prefix(dir)
                .is_ok_and(|rest| rest.components().count() == 1)
        })
        .count();
    (lines.len(), children)
}

impl Bench<'_> {
    /// A fresh mount on loopback (`cache`: its `--cache-size`) after `ls` of its root, and
    /// imapfs's RSS then (*after mount*).
    fn mount_at_rest(&mut self, cache: Option<u64>) -> io::Result<(Mount, u64)> {
        process::check()?;
        let mount = self.mount(self.loopback.port(), cache)?;
        let mut ls = Command::new("ls");
        ls.arg(mount.path());
        let out = Stdio::from(File::create(self.scratch("root.out"))?);
        run_timed(&mut ls, "ls", out, &[0])?;
        let after_mount = mount.rss()?;
        Ok((mount, after_mount))
    }

    /// On a fresh mount: RSS after `ls` of the root, then `ls -l` of Walk (timed and
    /// counted like the other rows) and the peak RSS it reached.
    pub(super) fn listing_peak(&mut self, results: &mut Results) -> io::Result<ListingPeak> {
        let (mount, after_mount) = self.mount_at_rest(None)?;
        let out = self.scratch("ls-walk.out");
        let mut ls = Command::new("ls");
        ls.arg("-l").arg(mount.path().join(WALK_MAILBOX));
        let sample = self.measure_on_mount(&mount, &self.loopback, &mut ls, &out, &[0])?;
        let peak = mount.peak_rss()?;
        mount.unmount()?;
        let lines = lines_of(&out)?.len();
        // One line per message, after the "total" line.
        if lines != self.corpus.walk_messages + 1 {
            results.wrong(
                "6c",
                format!(
                    "ls -l printed {lines} lines for {} messages",
                    self.corpus.walk_messages
                ),
            );
        }
        progress(&format!(
            "  listing peak: ls -l Walk {}; RSS after mount {}, peak {}",
            brief(&sample),
            mib(after_mount),
            mib(peak)
        ));
        let mut series = Series::default();
        series.push(sample);
        Ok(ListingPeak {
            ls: series,
            after_mount,
            peak,
        })
    }

    /// On a fresh mount (`cache`: its `--cache-size`): RSS after `ls` of the root, `find`
    /// over the Walk mailbox (timed and counted like the other rows), RSS and its peak,
    /// drop_caches, RSS once settled. Checks that `find` printed every entry.
    pub(super) fn forget_after_walk(
        &mut self,
        cache: Option<u64>,
        results: &mut Results,
    ) -> io::Result<Forget> {
        let (mount, after_mount) = self.mount_at_rest(cache)?;

        let walk = mount.path().join(WALK_MAILBOX);
        let out = self.scratch("find.out");
        let mut find = Command::new("find");
        find.arg(&walk);
        let sample = self.measure_on_mount(&mount, &self.loopback, &mut find, &out, &[0])?;
        let after_find = mount.rss()?;
        let peak = mount.peak_rss()?;
        drop_dentries_and_inodes()?;
        let (after_drop, settle_seconds, settled) = settle(&mount)?;
        mount.unmount()?;

        let (entries, message_dirs) = count_entries(&lines_of(&out)?, &walk);
        let row = if cache.is_some() { "6b" } else { "6a" };
        let (want_entries, want_dirs) = (self.corpus.walk_entries, self.corpus.walk_messages);
        if entries != want_entries || message_dirs != want_dirs {
            results.wrong(
                row,
                format!(
                    "find printed {entries} entries ({message_dirs} message directories), \
                     expected {want_entries} ({want_dirs})"
                ),
            );
        }
        let settled_text = if settled { "settled" } else { "still moving" };
        progress(&format!(
            "  forget{}: find {}; RSS after mount {}, peak {}, after find {}, after \
             drop_caches {} ({settled_text} after {settle_seconds:.1} s)",
            cache.map_or(String::new(), |c| format!(" (--cache-size {})", mib(c))),
            brief(&sample),
            mib(after_mount),
            mib(peak),
            mib(after_find),
            mib(after_drop),
        ));
        let mut find = Series::default();
        find.push(sample);
        Ok(Forget {
            cache,
            find,
            entries,
            message_dirs,
            after_mount,
            peak,
            after_find,
            after_drop,
            settle_seconds,
            settled,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_direct_children_are_message_directories() {
        let dir = Path::new("/m/Walk");
        let lines: Vec<String> = [
            "/m/Walk",
            "/m/Walk/1 Hello [bulk-00000]",
            "/m/Walk/1 Hello [bulk-00000]/body.txt",
            "/m/Walk/2 A b",
            "/m/Walk/2 A b/message.eml",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(count_entries(&lines, dir), (5, 2));
    }
}
