//! Interrupts and child processes: a signal ends every child at once, and nothing the
//! benchmark starts outlives it.
//!
//! SIGINT, SIGTERM and SIGHUP are blocked in every thread and taken by one thread with
//! `sigwait`, which sets the stop flag and sends SIGTERM to every registered child (an
//! `imapfs -f` child unmounts on SIGTERM). The main thread notices the flag at its next
//! check and unwinds, and the guards' `Drop`s stop the proxies and Dovecot.

use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);
/// Pids of running children, for the signal thread to end.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// How long a child gets between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(10);

fn signal_set() -> libc::sigset_t {
    // SAFETY: plain signal-set manipulation on a local, zero-initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// Blocks the stop signals and starts the thread that waits for them. Call first in `main`,
/// before any other thread exists, so that every later thread inherits the mask.
pub fn install_signal_thread() -> io::Result<()> {
    let set = signal_set();
    // SAFETY: changes this thread's signal mask only.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // A shell starts background jobs with SIGINT ignored, and an ignored signal is discarded
    // even while blocked, so sigwait would never see it: restore the default action.
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the signal is blocked in this thread and no other thread exists yet.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut signal: libc::c_int = 0;
            // SAFETY: waits for one of the signals blocked above; `signal` is a local out-param.
            if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
                continue;
            }
            if !STOP.swap(true, Ordering::SeqCst) {
                eprintln!("imapfs-bench: signal {signal}: stopping and cleaning up");
            }
            terminate_children();
        })?;
    Ok(())
}

/// Whether a stop signal has arrived.
pub fn interrupted() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// `Err(Interrupted)` once a stop signal has arrived.
pub fn check() -> io::Result<()> {
    if interrupted() {
        Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"))
    } else {
        Ok(())
    }
}

fn terminate_children() {
    let pids = CHILDREN.lock().map(|c| c.clone()).unwrap_or_default();
    for pid in pids {
        if let Ok(pid) = libc::pid_t::try_from(pid) {
            // SAFETY: kill(2) on a child of ours that has not been reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

fn register(pid: u32) {
    if let Ok(mut children) = CHILDREN.lock() {
        children.push(pid);
    }
}

fn unregister(pid: u32) {
    if let Ok(mut children) = CHILDREN.lock() {
        children.retain(|p| *p != pid);
    }
}

/// A running child that is ended (SIGTERM, then SIGKILL) if it is dropped unreaped, and
/// gets SIGTERM if the driver dies first.
pub struct Process {
    child: Option<Child>,
    name: String,
}

impl Process {
    /// Spawns `cmd` with default signal handling and a parent-death signal. Must be called from
    /// the main thread: the parent-death signal fires when the spawning thread ends.
    pub fn spawn(cmd: &mut Command, name: &str) -> io::Result<Process> {
        let set = signal_set();
        // SAFETY: runs in the forked child before exec; prctl and sigprocmask are
        // async-signal-safe and touch only the child.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting {name}: {e}")))?;
        register(child.id());
        let mut process = Process {
            child: Some(child),
            name: name.to_string(),
        };
        // A signal that came between spawn and register found nothing to end.
        if interrupted() {
            process.terminate();
        }
        Ok(process)
    }

    /// The child's pid.
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits for the child to exit and returns its status and CPU time (user plus system,
    /// its reaped descendants included). An interrupt ends it and returns `Interrupted`.
    pub fn wait(&mut self) -> io::Result<(ExitStatus, f64)> {
        let Some(child) = self.child.as_ref() else {
            return Err(io::Error::other(format!("{} already reaped", self.name)));
        };
        let pid = child.id();
        let raw_pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: waits for our own child; both out-params are locals.
            let reaped = unsafe { libc::wait4(raw_pid, &mut status, 0, &mut usage) };
            if reaped == raw_pid {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        // Reaped here, so `Child` must not be asked again (dropping it does not wait).
        self.child = None;
        unregister(pid);
        check()?;
        Ok((
            ExitStatus::from_raw(status),
            crate::cpu::rusage_seconds(&usage),
        ))
    }

    /// The exit status if the child has exited, without blocking.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        let status = child.try_wait()?;
        if status.is_some() {
            unregister(child.id());
            self.child = None;
        }
        Ok(status)
    }

    /// Sends `signal` unless the child has been reaped.
    pub fn signal(&self, signal: libc::c_int) {
        if let Some(Ok(pid)) = self.child.as_ref().map(|c| libc::pid_t::try_from(c.id())) {
            // SAFETY: kill(2) on our own unreaped child.
            unsafe { libc::kill(pid, signal) };
        }
    }

    /// Waits up to `limit` for the child to exit on its own; true if it did.
    pub fn wait_for_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            // try_wait drops the child once it is reaped.
            let _ = self.try_wait();
            if self.child.is_none() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, up to [`GRACE`] to exit, then SIGKILL; reaps the child.
    pub fn terminate(&mut self) {
        if self.child.is_none() {
            return;
        }
        self.signal(libc::SIGTERM);
        if !self.wait_for_exit(GRACE) {
            eprintln!("imapfs-bench: {} ignored SIGTERM; killing it", self.name);
            if let Some(child) = self.child.as_mut() {
                let _ = child.kill();
                let _ = child.wait();
                unregister(child.id());
            }
            self.child = None;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// How long a command took and how much CPU it used.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    pub wall: Duration,
    pub cpu_seconds: f64,
}

impl Timed {
    pub fn seconds(&self) -> f64 {
        self.wall.as_secs_f64()
    }
}

/// Runs `cmd` to completion with stdout to `stdout`. An exit code outside `ok_codes` is an
/// error that quotes the command's stderr.
pub fn run_timed(
    cmd: &mut Command,
    name: &str,
    stdout: Stdio,
    ok_codes: &[i32],
) -> io::Result<Timed> {
    let mut stderr = tempfile::tempfile()?;
    cmd.stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::from(stderr.try_clone()?));
    let started = Instant::now();
    let mut process = Process::spawn(cmd, name)?;
    let (status, cpu_seconds) = process.wait()?;
    let wall = started.elapsed();
    if status.code().is_some_and(|c| ok_codes.contains(&c)) {
        return Ok(Timed { wall, cpu_seconds });
    }
    Err(io::Error::other(format!(
        "{name} failed ({status}): {}",
        read_tail(&mut stderr)
    )))
}

/// The last 2 KB of an error file, for a one-paragraph message.
pub fn read_tail(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut text);
    let text = text.trim();
    let start = text.len().saturating_sub(2048);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_string()
}
