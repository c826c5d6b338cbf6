//! One FUSE mount (`imapfs -f`, or `bindfs -f` for the FUSE reference): started, waited for,
//! asked for its counters and memory, and always unmounted again (SIGTERM, which both
//! answer by unmounting; a lazy unmount if that fails).

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::process::{self, Process};

/// How long imapfs may take to log in and mount.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(60);

/// How to mount.
pub struct MountOptions<'a> {
    pub imapfs: &'a Path,
    /// `imaps://USER@127.0.0.1:PORT`.
    pub source: String,
    pub ca_file: &'a Path,
    pub password: &'a str,
    pub mountpoint: &'a Path,
    pub spool_dir: &'a Path,
    /// `--cache-size` in bytes; `None`: imapfs's default.
    pub cache_size: Option<u64>,
    /// `--log-file`; `None`: no log.
    pub log_file: Option<PathBuf>,
    /// `--cache-dir`; `None`: `--no-disk-cache`, a mount that starts cold.
    pub cache_dir: Option<&'a Path>,
    /// `--compress never`: no COMPRESS=DEFLATE even though the server offers it; otherwise
    /// `--compress always`, since the proxy on loopback stands for a server elsewhere (the
    /// default, `auto`, does not compress a connection to loopback).
    pub no_compress: bool,
    /// `--read-only`.
    pub read_only: bool,
}

/// The mount's own counters, from the root's `user.imapfs.stats` xattr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImapfsStats {
    pub commands: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
}

impl ImapfsStats {
    /// Parses `commands=N bytes_received=N bytes_sent=N`.
    pub fn parse(text: &str) -> Option<ImapfsStats> {
        let mut stats = ImapfsStats::default();
        let mut seen = 0;
        for item in text.split_whitespace() {
            let (key, value) = item.split_once('=')?;
            let value: u64 = value.parse().ok()?;
            match key {
                "commands" => stats.commands = value,
                "bytes_received" => stats.bytes_received = value,
                "bytes_sent" => stats.bytes_sent = value,
                _ => continue,
            }
            seen += 1;
        }
        (seen == 3).then_some(stats)
    }
}

/// A running mount; dropping it unmounts.
pub struct Mount {
    process: Process,
    mountpoint: PathBuf,
}

impl Mount {
    /// Starts `imapfs -f` and returns once the mountpoint shows in `/proc/mounts`.
    pub fn start(opts: &MountOptions<'_>) -> io::Result<Mount> {
        let mut cmd = Command::new(opts.imapfs);
        cmd.arg("-f")
            .arg("--ca-file")
            .arg(opts.ca_file)
            .arg("--spool-dir")
            .arg(opts.spool_dir);
        match opts.cache_dir {
            Some(dir) => cmd.arg("--cache-dir").arg(dir),
            // Most rows are about a mount that starts cold.
            None => cmd.arg("--no-disk-cache"),
        };
        cmd.arg("--compress")
            .arg(if opts.no_compress { "never" } else { "always" });
        if let Some(size) = opts.cache_size {
            cmd.arg("--cache-size").arg(size.to_string());
        }
        if opts.read_only {
            cmd.arg("--read-only");
        }
        if let Some(log) = &opts.log_file {
            cmd.arg("--log-file").arg(log);
        }
        cmd.arg(&opts.source)
            .arg(opts.mountpoint)
            .env("IMAPFS_PASSWORD", opts.password);
        Mount::spawn(cmd, opts.mountpoint, "imapfs")
    }

    /// Starts a FUSE daemon that stays in the foreground and unmounts on SIGTERM (imapfs -f,
    /// bindfs -f) and returns once `mountpoint` shows in `/proc/mounts`.
    pub fn spawn(mut cmd: Command, mountpoint: &Path, name: &str) -> io::Result<Mount> {
        fs::create_dir_all(mountpoint)?;
        if is_mounted(mountpoint) {
            return Err(io::Error::other(format!(
                "{} is already a mount point",
                mountpoint.display()
            )));
        }
        let mut stderr = tempfile::tempfile()?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr.try_clone()?));
        let mut process = Process::spawn(&mut cmd, name)?;
        let deadline = Instant::now() + MOUNT_TIMEOUT;
        loop {
            if is_mounted(mountpoint) {
                return Ok(Mount {
                    process,
                    mountpoint: mountpoint.to_path_buf(),
                });
            }
            process::check()?;
            if let Some(status) = process.try_wait()? {
                return Err(io::Error::other(format!(
                    "{name} exited ({status}) before mounting: {}",
                    process::read_tail(&mut stderr)
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{name} did not mount within {MOUNT_TIMEOUT:?}"),
                ));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// The mountpoint.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// The mount's counters so far.
    pub fn stats(&self) -> io::Result<ImapfsStats> {
        let text = getxattr(&self.mountpoint, "user.imapfs.stats")?;
        ImapfsStats::parse(&text)
            .ok_or_else(|| io::Error::other(format!("unexpected user.imapfs.stats: {text:?}")))
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// CPU seconds imapfs has used so far (all threads).
    pub fn cpu_seconds(&self) -> f64 {
        crate::cpu::process_seconds(self.process.id()).unwrap_or(0.0)
    }

    /// Peak resident memory of the imapfs process so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> io::Result<u64> {
        self.status_bytes("VmHWM")
    }

    /// Resident memory of the imapfs process now (`VmRSS`), in bytes.
    pub fn rss(&self) -> io::Result<u64> {
        self.status_bytes("VmRSS")
    }

    /// A `kB` field of `/proc/PID/status`, in bytes.
    fn status_bytes(&self, field: &str) -> io::Result<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.process.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|kb| kb.trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .ok_or_else(|| io::Error::other(format!("no {field} in /proc/PID/status")))
    }

    /// Unmounts and waits for imapfs to exit; an error if either needed force.
    pub fn unmount(mut self) -> io::Result<()> {
        self.stop(process::GRACE)
    }

    /// Like `unmount`, waiting up to `grace` for the exit: a mount with a disk cache
    /// writes out what it holds as it ends.
    pub fn unmount_within(mut self, grace: Duration) -> io::Result<()> {
        self.stop(grace)
    }

    fn stop(&mut self, grace: Duration) -> io::Result<()> {
        self.process.signal(libc::SIGTERM);
        let exited = self.process.wait_for_exit(grace);
        let mut problem = None;
        if !exited {
            problem = Some("the FUSE daemon did not exit on SIGTERM; killed it".to_string());
            self.process.signal(libc::SIGKILL);
            self.process.wait_for_exit(Duration::from_secs(5));
        }
        if is_mounted(&self.mountpoint) {
            force_unmount(&self.mountpoint);
            problem.get_or_insert_with(|| {
                "the FUSE daemon exited but left its mount; detached it".into()
            });
        }
        match problem {
            Some(p) => Err(io::Error::other(p)),
            None => Ok(()),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Err(e) = self.stop(process::GRACE) {
            eprintln!(
                "imapfs-bench: unmounting {}: {e}",
                self.mountpoint.display()
            );
        }
    }
}

/// Lazily detaches a mount whose daemon is gone or stuck.
fn force_unmount(path: &Path) {
    for (program, flag) in [("fusermount3", "-uz"), ("umount", "-l")] {
        let ok = Command::new(program)
            .arg(flag)
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok || !is_mounted(path) {
            return;
        }
    }
}

/// Whether `path` is a mount point now, from `/proc/mounts` (octal escapes decoded).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(mounts) = fs::read_to_string("/proc/mounts") else {
        return false;
    };
    let want = path.as_os_str().as_bytes();
    mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .any(|field| unescape_mount_field(field) == want)
}

/// Mount points at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(mounts) = fs::read_to_string("/proc/mounts") else {
        return Vec::new();
    };
    mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .map(|field| PathBuf::from(std::ffi::OsString::from_vec(unescape_mount_field(field))))
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// `/proc/mounts` writes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_field(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// Sets extended attribute `name` of `path` to `value`.
pub fn setxattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let c_name = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: both strings are NUL-terminated and live across the call; the value is
    // readable for its full length.
    let done = unsafe {
        libc::setxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if done != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("setxattr {name} of {}: {e}", path.display()),
        ));
    }
    Ok(())
}

/// The value of extended attribute `name` of `path`, as text.
pub fn getxattr(path: &Path, name: &str) -> io::Result<String> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let c_name = CString::new(name).map_err(io::Error::other)?;
    let mut buf = vec![0u8; 512];
    // SAFETY: both strings are NUL-terminated and live across the call; the buffer is
    // writable for its full length.
    let n = unsafe {
        libc::getxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("getxattr {name} of {}: {e}", path.display()),
        ));
    }
    buf.truncate(n as usize);
    String::from_utf8(buf).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_parse_in_any_order_and_need_all_three() {
        assert_eq!(
            ImapfsStats::parse("commands=7 bytes_received=1234 bytes_sent=56"),
            Some(ImapfsStats {
                commands: 7,
                bytes_received: 1234,
                bytes_sent: 56
            })
        );
        assert_eq!(
            ImapfsStats::parse("bytes_sent=1 commands=2 bytes_received=3 extra=9")
                .map(|s| s.commands),
            Some(2)
        );
        assert_eq!(ImapfsStats::parse("commands=7 bytes_received=1"), None);
        assert_eq!(
            ImapfsStats::parse("commands=x bytes_received=1 bytes_sent=1"),
            None
        );
    }

    #[test]
    fn mount_fields_are_unescaped() {
        assert_eq!(unescape_mount_field(r"/tmp/a\040b"), b"/tmp/a b");
        assert_eq!(unescape_mount_field(r"/tmp/a\\b"), br"/tmp/a\\b");
        assert_eq!(unescape_mount_field(r"/tmp/x\134y"), br"/tmp/x\y");
    }
}
