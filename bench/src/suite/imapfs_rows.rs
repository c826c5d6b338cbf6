//! The imapfs rows: cold `ls -l`, `body.txt` reads, cold and warm grep, each on a fresh mount
//! and measured the same way (wall time, bytes through the proxy, imapfs's command counter,
//! CPU of both sides).

use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::process::{Command, Stdio};

use fixture::proxy::Proxy;

use super::{brief, lines_of, progress, settled_bytes, Bench, Results};
use crate::mount::Mount;
use crate::process::{self, run_timed};
use crate::stats::Sample;

impl Bench<'_> {
    /// Runs `cmd` (stdout to `out`) on `mount`, reached through `proxy`, and measures it:
    /// wall time, bytes from the server, imapfs's commands, and the CPU of imapfs plus the
    /// command on one side and Dovecot on the other.
    pub(super) fn measure_on_mount(
        &self,
        mount: &Mount,
        proxy: &Proxy,
        cmd: &mut Command,
        out: &Path,
        ok_codes: &[i32],
    ) -> io::Result<Sample> {
        let name = cmd.get_program().to_string_lossy().into_owned();
        settled_bytes(proxy);
        proxy.reset_counters();
        let before = mount.stats()?;
        let imapfs_before = mount.cpu_seconds();
        let server_before = self.server_cpu();
        let timed = run_timed(cmd, &name, Stdio::from(File::create(out)?), ok_codes)?;
        let bytes = settled_bytes(proxy);
        let after = mount.stats()?;
        let imapfs_cpu = mount.cpu_seconds() - imapfs_before;
        let server_cpu = self.server_cpu() - server_before;
        Ok(Sample {
            seconds: timed.seconds(),
            bytes,
            commands: Some(after.commands.saturating_sub(before.commands)),
            client_cpu: Some(imapfs_cpu + timed.cpu_seconds),
            server_cpu: Some(server_cpu),
        })
    }

    /// Cold `ls -l` of the mailbox on a fresh mount, then (same mount, mailbox now listed)
    /// a cold read of one `body.txt`: the 10 MB message's on loopback, a bulk message's in
    /// the middle of the mailbox on the slow link.
    pub(super) fn imapfs_ls_then_body(
        &mut self,
        slow: bool,
        results: &mut Results,
    ) -> io::Result<()> {
        let port = if slow {
            self.slow.port()
        } else {
            self.loopback.port()
        };
        let mount = self.mount(port, None)?;
        let proxy = if slow { &self.slow } else { &self.loopback };
        let mailbox = Self::mailbox_dir(&mount);

        let out = self.scratch("ls.out");
        let mut ls = Command::new("ls");
        ls.arg("-l").arg(&mailbox);
        let ls_sample = self.measure_on_mount(&mount, proxy, &mut ls, &out, &[0])?;
        let entries = lines_of(&out)?
            .iter()
            .filter(|l| l.starts_with('d'))
            .count();
        let row = if slow { "4a" } else { "1" };
        if entries != self.corpus.messages {
            results.wrong(
                row,
                format!(
                    "ls -l showed {entries} message directories, expected {}",
                    self.corpus.messages
                ),
            );
        }

        let (dir, expected) = if slow {
            (&self.corpus.probe_dir, None)
        } else {
            (
                &self.corpus.large_dir,
                Some(self.corpus.large_body_file.as_bytes()),
            )
        };
        // The watcher starts while the mailbox is listed; what it sends then is not the
        // read's.
        super::live::quiet(&mount)?;
        let out = self.scratch("body.out");
        let mut cat = Command::new("cat");
        cat.arg(mailbox.join(dir).join("body.txt"));
        let body_sample = self.measure_on_mount(&mount, proxy, &mut cat, &out, &[0])?;
        let got = fs::read(&out)?;
        let row = if slow { "4b" } else { "2" };
        match expected {
            Some(want) if got != want => results.wrong(
                row,
                format!(
                    "body.txt of {dir:?} has {} bytes, not the {} expected",
                    got.len(),
                    want.len()
                ),
            ),
            None if got.is_empty() => results.wrong(row, format!("body.txt of {dir:?} is empty")),
            _ => {}
        }
        mount.unmount()?;

        let link = if slow { "slow" } else { "loopback" };
        progress(&format!(
            "  imapfs {link}: ls -l {}; body.txt {}",
            brief(&ls_sample),
            brief(&body_sample)
        ));
        if slow {
            results.ls_slow.push(ls_sample);
            results.body_slow.push(body_sample);
        } else {
            results.ls_cold.push(ls_sample);
            results.body_large.push(body_sample);
        }
        Ok(())
    }

    /// `grep -rl --include=message.eml` over the mounted mailbox; returns the matches.
    pub(super) fn grep_mount(&self, mount: &Mount) -> io::Result<(Sample, usize)> {
        let dir = Self::mailbox_dir(mount);
        self.grep_dir(mount, &self.loopback, &self.config.word, &dir)
    }

    /// `grep -rl --include=message.eml WORD DIR` on `mount`, reached through `proxy`;
    /// returns the matches.
    pub(super) fn grep_dir(
        &self,
        mount: &Mount,
        proxy: &Proxy,
        word: &str,
        dir: &Path,
    ) -> io::Result<(Sample, usize)> {
        let out = self.scratch("grep.out");
        let mut grep = Command::new("grep");
        grep.arg("-rl")
            .arg("--include=message.eml")
            .arg("--")
            .arg(word)
            .arg(dir);
        let sample = self.measure_on_mount(mount, proxy, &mut grep, &out, &[0, 1])?;
        Ok((sample, lines_of(&out)?.len()))
    }

    /// Cold then warm grep on one fresh mount with a cache large enough for everything.
    pub(super) fn imapfs_grep(&mut self, results: &mut Results) -> io::Result<()> {
        let mount = self.mount(self.loopback.port(), Some(self.grep_cache))?;
        let (cold, cold_matches) = self.grep_mount(&mount)?;
        progress(&format!("  imapfs grep cold: {}", brief(&cold)));
        process::check()?;
        let (warm, warm_matches) = self.grep_mount(&mount)?;
        let rss = mount.peak_rss()?;
        mount.unmount()?;
        progress(&format!(
            "  imapfs grep warm: {}; peak RSS {} MiB",
            brief(&warm),
            rss >> 20
        ));
        for (row, got) in [("3a", cold_matches), ("3b", warm_matches)] {
            results.check_against_maildir(row, got);
        }
        results.grep_matches.1 = cold_matches;
        results.grep_cold.push(cold);
        results.grep_warm.push(warm);
        results.rss_grep.push(rss);
        Ok(())
    }

    /// Cold then warm grep on a fresh read-only mount without compression, where the
    /// kernel opens files itself (no OPEN, FLUSH or RELEASE).
    pub(super) fn imapfs_grep_read_only(&mut self, results: &mut Results) -> io::Result<()> {
        let mount = self.mount_read_only(self.loopback.port(), Some(self.grep_cache))?;
        let (cold, cold_matches) = self.grep_mount(&mount)?;
        process::check()?;
        let (warm, warm_matches) = self.grep_mount(&mount)?;
        mount.unmount()?;
        progress(&format!(
            "  imapfs grep, read-only mount: cold {}; warm {}",
            brief(&cold),
            brief(&warm)
        ));
        for (row, got) in [("3f", cold_matches), ("3g", warm_matches)] {
            results.check_against_maildir(row, got);
        }
        results.grep_cold_read_only.push(cold);
        results.grep_warm_read_only.push(warm);
        Ok(())
    }

    /// One cold grep with a cache much smaller than the corpus, for the memory bound.
    pub(super) fn grep_small_cache(&mut self, results: &mut Results) -> io::Result<()> {
        let mount = self.mount(self.loopback.port(), Some(self.config.small_cache))?;
        let (sample, matches) = self.grep_mount(&mount)?;
        let rss = mount.peak_rss()?;
        mount.unmount()?;
        progress(&format!(
            "  imapfs grep, small cache: {}; peak RSS {} MiB",
            brief(&sample),
            rss >> 20
        ));
        results.check_against_maildir("5b", matches);
        results.grep_small.push(sample);
        results.rss_small.push(rss);
        Ok(())
    }
}
