//! CPU time, to show which side of a measurement did the work: a live process (all its
//! threads), a process group plus the children its leader reaped (Dovecot), or this thread.

use std::fs;
use std::path::Path;

/// The numbers of `/proc/PID/stat` this module uses, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    pgrp: i64,
    utime: u64,
    stime: u64,
    cutime: u64,
    cstime: u64,
}

/// Parses `pid (comm) state ppid pgrp ... utime stime cutime cstime ...` (see proc(5)); the
/// command name may hold spaces and parentheses, so fields are counted after the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let fields: Vec<&str> = text
        .get(text.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let number = |i: usize| -> Option<u64> { fields.get(i)?.parse().ok() };
    Some(Stat {
        pgrp: fields.get(2)?.parse().ok()?,
        utime: number(11)?,
        stime: number(12)?,
        cutime: number(13)?,
        cstime: number(14)?,
    })
}

fn read_stat(pid: u32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// User plus system time of a live process, all threads, in seconds.
pub fn process_seconds(pid: u32) -> Option<f64> {
    let stat = read_stat(pid)?;
    Some((stat.utime + stat.stime) as f64 / ticks_per_second())
}

/// User plus system time of every live member of process group `leader`, plus what the
/// leader's reaped children used, in seconds. For Dovecot, whose master leads its group and
/// reaps its `imap` and `imap-login` processes, this is the server's CPU time so far.
pub fn group_seconds(leader: u32) -> f64 {
    let mut ticks = 0;
    if let Some(stat) = read_stat(leader) {
        ticks += stat.cutime + stat.cstime;
    }
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(stat) = read_stat(pid).filter(|s| s.pgrp == i64::from(leader)) {
                ticks += stat.utime + stat.stime;
            }
        }
    }
    ticks as f64 / ticks_per_second()
}

/// The pid in a `master.pid` file.
pub fn pid_file(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// User plus system time of the calling thread, in seconds.
pub fn thread_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut usage);
        usage
    };
    rusage_seconds(&usage)
}

/// User plus system time in a `rusage`, in seconds.
pub fn rusage_seconds(usage: &libc::rusage) -> f64 {
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "4242 (imap (x) y) S 1 4200 4200 0 -1 4194560 10 20 0 0 \
                    150 25 7 3 20 0 1 0 100 1000 50";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                pgrp: 4200,
                utime: 150,
                stime: 25,
                cutime: 7,
                cstime: 3
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_has_a_cpu_time() {
        assert!(process_seconds(std::process::id()).is_some());
        assert!(thread_seconds() >= 0.0);
    }
}
