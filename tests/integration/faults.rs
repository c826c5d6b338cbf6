//! Connection faults under a live mount: stalls, cuts and restarts between imapfs and Dovecot,
//! mailboxes recreated and messages removed by another client, and a concurrent soak. Also the
//! probes of the imapfs process (deadlines, pid, memory, stderr) that `hostile.rs` shares.
//!
//! Every filesystem operation runs under a deadline: a hang is a failure, not a stuck suite.

use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::support::*;

// ---- probes shared with hostile.rs ---------------------------------------------------------

/// Runs `f` on its own thread and returns its result and how long it took; fails the test if
/// it has not returned within `limit` (the stuck thread is freed when the mount goes away).
pub(super) fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> (T, Duration) {
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => (v, start.elapsed()),
        Err(_) => panic!("{what}: still blocked after {limit:?} (a hang)"),
    }
}

/// The errno of a failed filesystem call, or `None` when it succeeded.
pub(super) fn errno<T>(result: &io::Result<T>) -> Option<i32> {
    result.as_ref().err().map(|e| e.raw_os_error().unwrap_or(-1))
}

/// The running imapfs process behind a mount.
pub(super) struct Imapfs {
    pub(super) pid: u32,
}

impl Imapfs {
    /// Finds the imapfs process whose command line names `mount`'s mount point.
    pub(super) fn of(mount: &Mount) -> Imapfs {
        let wanted = mount.path.to_string_lossy().to_string();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmdline
                .split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).to_string())
                .collect();
            if args.first().map(String::as_str) == Some(imapfs_bin()) && args.contains(&wanted)
            {
                return Imapfs { pid };
            }
        }
        panic!("no imapfs process serves {wanted}");
    }

    fn proc_file(&self, name: &str) -> Vec<u8> {
        std::fs::read(format!("/proc/{}/{name}", self.pid)).unwrap_or_default()
    }

    /// True while the process exists and is not a zombie.
    pub(super) fn is_alive(&self) -> bool {
        let stat = String::from_utf8_lossy(&self.proc_file("stat")).to_string();
        // The state follows the parenthesised command name.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
    }

    /// Peak resident memory (VmHWM) in KiB.
    pub(super) fn peak_rss_kib(&self) -> u64 {
        let status = String::from_utf8_lossy(&self.proc_file("status")).to_string();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmHWM for pid {}", self.pid))
    }

    /// The command line and environment as the kernel shows them to other processes.
    pub(super) fn cmdline_and_environ(&self) -> (Vec<u8>, Vec<u8>) {
        (self.proc_file("cmdline"), self.proc_file("environ"))
    }

    /// What imapfs wrote to stderr (a pipe nobody else reads) since the last call: opening
    /// the pipe through /proc gives a second read end of it.
    pub(super) fn take_stderr(&self) -> String {
        let Ok(mut pipe) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(format!("/proc/{}/fd/2", self.pid))
        else {
            return String::new();
        };
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            match io::Read::read(&mut pipe, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&out).to_string()
    }

    /// Fails the test if imapfs died or panicked (a panic message on stderr or in its log).
    pub(super) fn assert_healthy(&self, mount: &Mount) {
        let stderr = self.take_stderr();
        assert!(
            !stderr.contains("panicked") && !mount.log().contains("panicked"),
            "imapfs panicked:\n{stderr}\n{}",
            mount.log()
        );
        assert!(
            self.is_alive(),
            "imapfs (pid {}) is gone:\n{stderr}\n{}",
            self.pid,
            mount.log()
        );
    }
}

/// Names that readdir returned under `dir`, checked to be single safe path components;
/// directories that could not be listed are returned with their errno.
pub(super) fn walk_checking_names(dir: &Path, depth: usize, failures: &mut Vec<(String, i32)>) {
    let listing = std::fs::read_dir(dir);
    let entries = match listing {
        Ok(entries) => entries,
        Err(e) => {
            failures.push((dir.display().to_string(), e.raw_os_error().unwrap_or(-1)));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                failures.push((dir.display().to_string(), e.raw_os_error().unwrap_or(-1)));
                continue;
            }
        };
        assert_safe_name(dir, &entry.file_name());
        let path = entry.path();
        assert_eq!(path.parent(), Some(dir), "{} escapes its directory", path.display());
        if depth > 0 && entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk_checking_names(&path, depth - 1, failures);
        }
    }
}

/// Fails unless `name` is one harmless path component.
pub(super) fn assert_safe_name(dir: &Path, name: &std::ffi::OsStr) {
    let shown = format!("{name:?} in {}", dir.display());
    let len = name.len();
    let name = name
        .to_str()
        .unwrap_or_else(|| panic!("not UTF-8: {shown}"));
    assert!(!name.is_empty(), "empty name {shown}");
    assert!(name != "." && name != "..", "dot name {shown}");
    assert!(!name.contains('/') && !name.contains('\0'), "slash or NUL: {shown}");
    assert!(!name.chars().any(char::is_control), "control character: {shown}");
    assert!(len <= 255, "{len} bytes long: {shown}");
}
