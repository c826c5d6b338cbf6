//! The FUSE reference: a warm grep through bindfs (a FUSE passthrough) over a tree of the same
//! shape as imapfs's, and the cost of one FUSE round trip on this machine.

use std::fs::{self, File};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;

use super::{lines_of, Bench, MAILBOX};
use crate::fuse_probe;
use crate::mount::Mount;
use crate::process::run_timed;
use crate::stats::Sample;

/// bindfs options for the FUSE reference: read-only, page cache kept across opens, dentries
/// and attributes trusted for a minute.
pub const BINDFS_OPTIONS: &str =
    "ro,kernel_cache,entry_timeout=60,attr_timeout=60,negative_timeout=60";

/// `program` from PATH (or /usr/bin, /usr/sbin), if installed.
pub(super) fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Makes `to/<n>/message.eml` for every message file in the Maildir folder `from` (hard
/// links, so nothing is copied): the shape imapfs shows, one directory per message.
pub(super) fn link_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    let mut files = Vec::new();
    for sub in ["cur", "new"] {
        for entry in fs::read_dir(from.join(sub))? {
            files.push(entry?.path());
        }
    }
    files.sort();
    for (n, file) in files.iter().enumerate() {
        let dir = to.join((n + 1).to_string());
        fs::create_dir(&dir)?;
        fs::hard_link(file, dir.join("message.eml"))?;
    }
    Ok(())
}

impl Bench<'_> {
    /// The grep over the same tree shape through bindfs: mount, the first grep (the kernel's
    /// caches of the mount empty, the files in the page cache underneath: what a warm
    /// remount of imapfs faces), then the warm one; unmount. Returns both, and the files
    /// the warm one matched.
    pub(super) fn grep_fuse_reference(&self) -> io::Result<(Sample, Sample, usize)> {
        let Some((bindfs, tree)) = &self.fuse_reference else {
            return Err(io::Error::other("bindfs is not installed"));
        };
        let mut cmd = Command::new(bindfs);
        cmd.arg("-f")
            .arg("-o")
            .arg(BINDFS_OPTIONS)
            .arg(tree)
            .arg(self.scratch("mnt-bindfs"));
        let mount = Mount::spawn(cmd, &self.scratch("mnt-bindfs"), "bindfs")?;
        let grep = || {
            let mut grep = Command::new("grep");
            grep.arg("-rl")
                .arg("--include=message.eml")
                .arg("--")
                .arg(&self.config.word)
                .arg(mount.path().join(MAILBOX));
            grep
        };
        let out = self.scratch("grep.out");
        let timed_grep = |output: Stdio| -> io::Result<Sample> {
            let fuse_before = mount.cpu_seconds();
            let timed = run_timed(&mut grep(), "grep", output, &[0, 1])?;
            Ok(Sample {
                seconds: timed.seconds(),
                bytes: 0,
                commands: Some(0),
                client_cpu: Some(mount.cpu_seconds() - fuse_before + timed.cpu_seconds),
                server_cpu: None,
            })
        };
        let fresh = timed_grep(Stdio::null())?;
        let warm = timed_grep(Stdio::from(File::create(&out)?))?;
        mount.unmount()?;
        Ok((fresh, warm, lines_of(&out)?.len()))
    }

    /// Seconds of one FUSE round trip (one GETATTR to bindfs mounted with `attr_timeout=0`),
    /// measured by a child process (like grep) pinned to the daemon's CPU, then to another.
    pub(super) fn fuse_roundtrips(&self) -> io::Result<Option<(f64, Option<f64>)>> {
        let Some((bindfs, tree)) = &self.fuse_reference else {
            return Ok(None);
        };
        let mountpoint = self.scratch("mnt-bindfs");
        let mut cmd = Command::new(bindfs);
        cmd.arg("-f")
            .arg("-o")
            .arg("ro,attr_timeout=0")
            .arg(tree)
            .arg(&mountpoint);
        let mount = Mount::spawn(cmd, &mountpoint, "bindfs")?;
        // bindfs runs single-threaded, so pinning its process pins the thread that answers.
        fuse_probe::pin_to_cpu(mount.pid(), 0)?;
        let file = mount.path().join(MAILBOX).join("1").join("message.eml");
        let same = self.probe_from_cpu(&file, 0)?;
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        let other = if cores > 1 {
            Some(self.probe_from_cpu(&file, 1)?)
        } else {
            None
        };
        mount.unmount()?;
        Ok(Some((same, other)))
    }

    /// Runs this program's hidden `--fuse-probe` on `cpu` and reads its answer.
    pub(super) fn probe_from_cpu(&self, file: &Path, cpu: usize) -> io::Result<f64> {
        let out = self.scratch("probe.out");
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("--fuse-probe").arg(file);
        // SAFETY: runs in the forked child before exec; sched_setaffinity is a plain system
        // call on the child itself.
        unsafe {
            cmd.pre_exec(move || fuse_probe::pin_to_cpu(0, cpu));
        }
        run_timed(
            &mut cmd,
            "fuse probe",
            Stdio::from(File::create(&out)?),
            &[0],
        )?;
        let text = fs::read_to_string(&out)?;
        text.trim()
            .parse::<f64>()
            .map_err(|_| io::Error::other(format!("fuse probe said {text:?}")))
    }
}
