//! The disk-cache rows: `imapfs prefetch` into an empty cache against mbsync's full sync,
//! and a warm remount (`ls -l`, then grep) with the cache a first mount filled.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use fixture::proxy::Proxy;

use super::{brief, lines_of, progress, settled_bytes, Bench, Results};
use crate::mount::{getxattr, setxattr};
use crate::process::run_timed;
use crate::server::{MAILBOX, SEARCH_HITS, SEARCH_MAILBOX, SEARCH_WORD, USER};
use crate::stats::Sample;

/// How long a mount with a disk cache may take to exit: it writes out what the cache
/// holds as it ends.
const DISK_CACHE_GRACE: Duration = Duration::from_secs(120);

/// An empty directory at `path` (what was there is removed).
fn fresh_dir(path: &Path) -> io::Result<PathBuf> {
    if path.exists() {
        fs::remove_dir_all(path)?;
    }
    fs::create_dir_all(path)?;
    Ok(path.to_path_buf())
}

/// The command count in prefetch's summary (`... in N commands`).
fn summary_commands(summary: &str) -> Option<u64> {
    let words: Vec<&str> = summary.split_whitespace().collect();
    words
        .windows(2)
        .rev()
        .find(|w| w[1].starts_with("commands"))
        .and_then(|w| w[0].parse().ok())
}

impl Bench<'_> {
    /// `imapfs prefetch MAILBOX` through `proxy` into an empty disk cache, timed and counted
    /// like the mounts' rows (CPU: imapfs prefetch, and Dovecot). Checks that the summary
    /// names `messages` messages.
    pub(super) fn prefetch(
        &self,
        proxy: &Proxy,
        mailbox: &str,
        messages: usize,
        no_compress: bool,
    ) -> io::Result<Sample> {
        let cache = fresh_dir(&self.scratch("prefetch-cache"))?;
        let mut cmd = Command::new(&self.config.imapfs);
        cmd.arg("prefetch")
            .arg("--ca-file")
            .arg(self.dovecot.ca_file())
            .arg("--cache-dir")
            .arg(&cache);
        cmd.arg("--compress")
            .arg(if no_compress { "never" } else { "always" });
        cmd.arg(format!("imaps://{USER}@127.0.0.1:{}", proxy.port()))
            .arg(mailbox)
            .env("IMAPFS_PASSWORD", self.dovecot.password(USER));
        let out = self.scratch("prefetch.out");
        settled_bytes(proxy);
        proxy.reset_counters();
        let server_before = self.server_cpu();
        let timed = run_timed(
            &mut cmd,
            "imapfs prefetch",
            Stdio::from(File::create(&out)?),
            &[0],
        )?;
        let bytes = settled_bytes(proxy);
        let server_cpu = self.server_cpu() - server_before;
        let summary = fs::read_to_string(&out)?;
        let want = format!("prefetched 1 of 1 mailboxes: {messages} messages");
        if !summary.contains(&want) {
            return Err(io::Error::other(format!(
                "imapfs prefetch {mailbox}: expected \"{want}\", got {summary:?}"
            )));
        }
        Ok(Sample {
            seconds: timed.seconds(),
            bytes,
            commands: summary_commands(&summary),
            client_cpu: Some(timed.cpu_seconds),
            server_cpu: Some(server_cpu),
        })
    }

    /// 7: prefetch of INBOX on loopback with compression (against R2) and without (R3).
    pub(super) fn prefetch_rows(&mut self, results: &mut Results) -> io::Result<()> {
        let messages = self.corpus.messages;
        for no_compress in [false, true] {
            let sample = self.prefetch(&self.loopback, MAILBOX, messages, no_compress)?;
            let name = if no_compress { "plain" } else { "deflate" };
            progress(&format!("  imapfs prefetch ({name}): {}", brief(&sample)));
            if no_compress {
                results.prefetch_plain.push(sample);
            } else {
                results.prefetch_deflate.push(sample);
            }
        }
        fs::remove_dir_all(self.scratch("prefetch-cache"))?;
        for background in [false, true] {
            let (sample, matches, state) = self.grep_search_beside_prefetch(background)?;
            progress(&format!(
                "  cold grep over {SEARCH_MAILBOX}{}: {}",
                if background {
                    format!(" while INBOX is prefetched in the background ({state})")
                } else {
                    String::new()
                },
                brief(&sample)
            ));
            if matches != SEARCH_HITS {
                results.wrong(
                    "7e",
                    format!("grep found {matches} files, expected {SEARCH_HITS}"),
                );
            }
            if background {
                results.prefetch_state_after_grep = state;
                results.grep_beside_prefetch.push(sample);
            } else {
                results.grep_without_prefetch.push(sample);
            }
        }
        Ok(())
    }

    /// A cold grep over the Search mailbox on a fresh mount with an empty disk cache, with
    /// or without a prefetch of INBOX started on the mount (`setfattr -n
    /// user.imapfs.prefetch`) a second before. Returns the grep, its matches, and the
    /// prefetch's state when the grep ended.
    fn grep_search_beside_prefetch(
        &mut self,
        background: bool,
    ) -> io::Result<(Sample, usize, String)> {
        let cache = fresh_dir(&self.scratch("background-cache"))?;
        let mount = self.mount_with(
            self.loopback.port(),
            Some(self.grep_cache),
            Some(&cache),
            false,
        )?;
        let search = mount.path().join(SEARCH_MAILBOX);
        let inbox = Self::mailbox_dir(&mount);
        // Both listings first, untimed: the prefetch lists INBOX itself.
        fs::read_dir(&search)?.count();
        fs::read_dir(&inbox)?.count();
        if background {
            setxattr(&inbox, "user.imapfs.prefetch", b"1")?;
            std::thread::sleep(Duration::from_secs(1));
        }
        let (sample, matches) = self.grep_dir(&mount, &self.loopback, SEARCH_WORD, &search)?;
        let state = if background {
            getxattr(&inbox, "user.imapfs.prefetch")?
        } else {
            String::new()
        };
        mount.unmount_within(DISK_CACHE_GRACE)?;
        fs::remove_dir_all(&cache)?;
        Ok((sample, matches, state))
    }

    /// 8: a first mount with a disk cache greps everything twice (cold, warm); unmounted,
    /// then mounted again on the same cache: `ls -l` of the mailbox, then the grep.
    pub(super) fn remount_rows(&mut self, results: &mut Results) -> io::Result<()> {
        let cache = fresh_dir(&self.scratch("remount-cache"))?;
        let port = self.loopback.port();
        let mount = self.mount_with(port, Some(self.grep_cache), Some(&cache), false)?;
        let (cold, cold_matches) = self.grep_mount(&mount)?;
        let (warm, warm_matches) = self.grep_mount(&mount)?;
        mount.unmount_within(DISK_CACHE_GRACE)?;
        progress(&format!(
            "  first mount with a disk cache: grep cold {}; warm {}",
            brief(&cold),
            brief(&warm)
        ));

        let mount = self.mount_with(port, Some(self.grep_cache), Some(&cache), false)?;
        let out = self.scratch("ls.out");
        let mut ls = Command::new("ls");
        ls.arg("-l").arg(Self::mailbox_dir(&mount));
        let ls_sample = self.measure_on_mount(&mount, &self.loopback, &mut ls, &out, &[0])?;
        let entries = lines_of(&out)?
            .iter()
            .filter(|l| l.starts_with('d'))
            .count();
        let (grep, remount_matches) = self.grep_mount(&mount)?;
        mount.unmount_within(DISK_CACHE_GRACE)?;
        fs::remove_dir_all(&cache)?;
        progress(&format!(
            "  warm remount: ls -l {}; grep {}",
            brief(&ls_sample),
            brief(&grep)
        ));
        if entries != self.corpus.messages {
            results.wrong(
                "8a",
                format!(
                    "ls -l after the remount showed {entries} message directories, expected {}",
                    self.corpus.messages
                ),
            );
        }
        for (row, got) in [("8", warm_matches), ("8b", remount_matches)] {
            if got != cold_matches {
                results.wrong(
                    row,
                    format!("grep found {got} files, the first cold grep {cold_matches}"),
                );
            }
        }
        results.remount_first_cold.push(cold);
        results.remount_first_warm.push(warm);
        results.remount_ls.push(ls_sample);
        results.remount_grep.push(grep);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_count_comes_from_the_summary() {
        let summary = "prefetched 1 of 1 mailboxes: 10001 messages (0 cached already), 256.5 MiB \
                       in 9.1 s (28.2 MiB/s); from the server: 88.0 MiB (92274688 bytes) in 83 commands\n";
        assert_eq!(summary_commands(summary), Some(83));
        assert_eq!(summary_commands("nothing"), None);
    }
}
