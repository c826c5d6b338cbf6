//! How long one FUSE request takes here, with the caller and the daemon on the same CPU and
//! on different CPUs: on a virtual machine a wake-up on another CPU can cost far more than
//! the request itself, and a warm grep through any FUSE filesystem pays it per request.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Instant;

/// Mean seconds of one `fstat(2)` of `path` over `calls` calls. On a FUSE mount with
/// `attr_timeout=0` each call is one GETATTR request to the daemon.
pub fn fstat_seconds(path: &Path, calls: u32) -> io::Result<f64> {
    let file = File::open(path)?;
    let started = Instant::now();
    for _ in 0..calls {
        // Plain fstat: std's metadata() uses statx, which the kernel may answer from its
        // cache for the fields GETATTR does not carry.
        // SAFETY: fstat on an fd we own into a zeroed struct we own.
        let rc = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            libc::fstat(file.as_raw_fd(), &mut st)
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(started.elapsed().as_secs_f64() / f64::from(calls.max(1)))
}

/// Restricts process (or thread) `pid` (0: the caller) to CPU `cpu`.
pub fn pin_to_cpu(pid: u32, cpu: usize) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes within it and
    // sched_setaffinity reads it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fstat_of_a_local_file_is_fast_and_positive() {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        let s = fstat_seconds(file.path(), 100).expect("fstat");
        assert!(s > 0.0 && s < 0.01, "{s}");
    }
}
