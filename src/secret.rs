//! Getting the password or OAuth2 token: from a command, from the environment (then
//! erased from the process's memory), or from a prompt on the terminal.
//!
//! Every buffer that held the secret is zeroed before it is freed, and the secret
//! never appears in an error message.

use std::ffi::{c_char, CStr};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStringExt;
use std::process::{Command, ExitStatus, Stdio};
use std::ptr;
use std::sync::atomic::{compiler_fence, Ordering};

/// Longest secret accepted from a command or the terminal, in bytes.
pub const MAX_SECRET_LEN: usize = 64 * 1024;

/// A password or token. Its buffer is zeroed when it is dropped; `Debug` prints
/// `Secret(***)` and there is no `Display`, so it cannot end up in a log by accident.
pub struct Secret(WipedBuf);

impl Secret {
    /// Checks that `bytes` are UTF-8 and takes them over without copying.
    fn from_buf(bytes: WipedBuf, origin: Origin) -> Result<Secret, SecretError> {
        if std::str::from_utf8(bytes.as_slice()).is_err() {
            return Err(SecretError::NotUtf8 { origin });
        }
        Ok(Secret(bytes))
    }

    /// The secret, for sending to the server and nowhere else.
    pub fn expose(&self) -> &str {
        // Checked in `from_buf`, so this never falls back to "".
        std::str::from_utf8(self.0.as_slice()).unwrap_or_default()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where a secret came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The standard output of this shell command.
    Command(String),
    /// This environment variable.
    Env(String),
    /// The prompt on the controlling terminal.
    Terminal,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Command(command) => write!(f, "command `{command}`"),
            Origin::Env(name) => write!(f, "environment variable {name}"),
            Origin::Terminal => f.write_str("the terminal"),
        }
    }
}

/// Why no secret could be obtained. No variant ever holds the secret or a command's output.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The command could not be started.
    #[error("could not run `{command}`: {source}")]
    CommandSpawn {
        /// The command as given.
        command: String,
        /// Why `sh` could not be started.
        source: io::Error,
    },
    /// Reading the command's standard output failed.
    #[error("could not read the output of `{command}`: {source}")]
    CommandRead {
        /// The command as given.
        command: String,
        /// The read error.
        source: io::Error,
    },
    /// The command exited unsuccessfully; its output was discarded unseen.
    #[error("`{command}` failed ({status}); its output was discarded")]
    CommandFailed {
        /// The command as given.
        command: String,
        /// How it ended.
        status: ExitStatus,
    },
    /// The secret is longer than [`MAX_SECRET_LEN`].
    #[error("the secret from {origin} is longer than {MAX_SECRET_LEN} bytes")]
    TooLong {
        /// Where it came from.
        origin: Origin,
    },
    /// The secret is empty (after removing one trailing newline from a command's output).
    #[error("the secret from {origin} is empty")]
    Empty {
        /// Where it came from.
        origin: Origin,
    },
    /// The secret is not valid UTF-8.
    #[error("the secret from {origin} is not valid UTF-8")]
    NotUtf8 {
        /// Where it came from.
        origin: Origin,
    },
    /// Prompting on `/dev/tty` failed.
    #[error("could not prompt on the terminal: {0}")]
    Terminal(io::Error),
    /// The user pressed Ctrl-C or Ctrl-D at the prompt.
    #[error("cancelled at the prompt")]
    Cancelled,
    /// No command, no environment variable, and standard input is not a terminal.
    #[error(
        "no secret available: standard input is not a terminal, so imapfs cannot prompt; \
         set the {env_var} environment variable or give a command \
         (--password-command or --oauth2-token-command)"
    )]
    Unavailable {
        /// The environment variable that was looked for.
        env_var: String,
    },
}

/// Obtains a secret, trying in order:
///
/// 1. `command`, run as `sh -c CMD` with standard input and standard error inherited.
///    Its standard output, with one trailing `"\n"` or `"\r\n"` removed, is the
///    secret. A non-zero exit or empty output is an error naming the command; the
///    output itself is never shown.
/// 2. The environment variable `env_var`.
/// 3. A prompt `prompt` on `/dev/tty` with echo off, if standard input is a terminal.
///    Backspace, Ctrl-U (clear), Ctrl-C and Ctrl-D (cancel) work; the terminal's
///    settings are restored whatever happens.
///
/// Otherwise it fails with [`SecretError::Unavailable`].
///
/// Whichever source is used, `env_var` is removed from the environment and its
/// bytes are overwritten with zeros in place, so it no longer shows in
/// `/proc/<pid>/environ` nor reaches child processes. Call this **before spawning
/// any thread**: the in-place erasure only runs while the process has a single
/// thread. With more threads it falls back to [`std::env::remove_var`], which
/// leaves the value visible in `/proc/<pid>/environ`, and logs a warning.
pub fn obtain(command: Option<&str>, env_var: &str, prompt: &str) -> Result<Secret, SecretError> {
    obtain_with(command, env_var, prompt, EnvAccess::detect())
}

/// [`obtain`], with the environment access decided by the caller.
fn obtain_with(
    command: Option<&str>,
    env_var: &str,
    prompt: &str,
    access: EnvAccess,
) -> Result<Secret, SecretError> {
    let from_env = take_env_var(env_var, access);
    if let Some(command) = command {
        return from_command(command);
    }
    if let Some(value) = from_env {
        let origin = Origin::Env(env_var.to_owned());
        if value.as_slice().is_empty() {
            return Err(SecretError::Empty { origin });
        }
        return Secret::from_buf(value, origin);
    }
    // SAFETY: isatty only inspects the descriptor.
    if unsafe { libc::isatty(libc::STDIN_FILENO) } == 1 {
        return from_terminal(prompt);
    }
    Err(SecretError::Unavailable {
        env_var: env_var.to_owned(),
    })
}

/// Runs `command` with `sh -c` and takes its standard output.
fn from_command(command: &str) -> Result<Secret, SecretError> {
    let origin = || Origin::Command(command.to_owned());
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|source| SecretError::CommandSpawn {
            command: command.to_owned(),
            source,
        })?;
    let mut output = WipedBuf::with_capacity(256);
    let read = match child.stdout.take() {
        Some(mut stdout) => read_limited(&mut stdout, &mut output),
        None => Ok(ReadOutcome::Complete),
    };
    if !matches!(read, Ok(ReadOutcome::Complete)) {
        // Do not wait for a command that may still be writing.
        let _ = child.kill();
    }
    let status = child.wait().map_err(|source| SecretError::CommandRead {
        command: command.to_owned(),
        source,
    })?;
    match read {
        Err(source) => {
            return Err(SecretError::CommandRead {
                command: command.to_owned(),
                source,
            })
        }
        Ok(ReadOutcome::TooLong) => return Err(SecretError::TooLong { origin: origin() }),
        Ok(ReadOutcome::Complete) => {}
    }
    if !status.success() {
        return Err(SecretError::CommandFailed {
            command: command.to_owned(),
            status,
        });
    }
    output.strip_one_newline();
    if output.as_slice().is_empty() {
        return Err(SecretError::Empty { origin: origin() });
    }
    Secret::from_buf(output, origin())
}

/// Whether a bounded read saw the end of its input.
enum ReadOutcome {
    Complete,
    TooLong,
}

/// Reads `source` to its end into `out`, stopping past [`MAX_SECRET_LEN`] bytes.
fn read_limited(source: &mut impl Read, out: &mut WipedBuf) -> io::Result<ReadOutcome> {
    let mut chunk = [0u8; 1024];
    let outcome = loop {
        match source.read(&mut chunk) {
            Ok(0) => break Ok(ReadOutcome::Complete),
            Ok(n) => {
                let data = chunk.get(..n).unwrap_or_default();
                if out.as_slice().len() + data.len() > MAX_SECRET_LEN {
                    break Ok(ReadOutcome::TooLong);
                }
                out.extend_from_slice(data);
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => break Err(err),
        }
    };
    wipe_slice(&mut chunk);
    outcome
}

/// How the environment may be touched, decided by whether other threads exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EnvAccess {
    /// No other thread can read or write the environment: erase in place.
    Exclusive,
    /// Other threads may exist: only go through `std::env`.
    Shared,
}

impl EnvAccess {
    /// `Exclusive` if this process has exactly one thread. Only this thread could
    /// start another, so the answer stays true until it does.
    fn detect() -> EnvAccess {
        let threads = std::fs::read_dir("/proc/self/task").map(|tasks| tasks.count());
        match threads {
            Ok(1) => EnvAccess::Exclusive,
            _ => EnvAccess::Shared,
        }
    }
}

/// Removes `name` from the environment and returns its value, erasing the original
/// bytes in place when `access` allows it. An invalid name is simply not found.
fn take_env_var(name: &str, access: EnvAccess) -> Option<WipedBuf> {
    if name.is_empty() || name.contains(['=', '\0']) {
        return None;
    }
    match access {
        EnvAccess::Exclusive => {
            // SAFETY: `environ` is the C library's environment array, and with
            // `Exclusive` no other thread can be reading or changing it.
            unsafe { take_from_env_array(environ, name.as_bytes()) }
        }
        EnvAccess::Shared => {
            let value = std::env::var_os(name)?;
            std::env::remove_var(name);
            tracing::warn!(
                "{name} was read after other threads started, so it could not be erased \
                 from /proc/self/environ; read secrets before starting threads"
            );
            Some(WipedBuf(value.into_vec()))
        }
    }
}

extern "C" {
    /// The C library's environment: a NULL-terminated array of `NAME=value` strings.
    /// At start-up these point into the block that `/proc/<pid>/environ` shows.
    static mut environ: *mut *mut c_char;
}

/// Takes every `name=...` entry out of the NULL-terminated array `env`, shifting the
/// later entries down (as glibc's `unsetenv` does), and overwrites each removed
/// string with NUL bytes. Returns a copy of the first entry's value, the one
/// `getenv` would have given. The removed strings are never freed: they may live in
/// the start-up block, and a C library may still own them.
///
/// # Safety
///
/// `env` must be null or a valid NULL-terminated array of writable NUL-terminated
/// strings, and no other thread may access it or the strings during the call.
unsafe fn take_from_env_array(env: *mut *mut c_char, name: &[u8]) -> Option<WipedBuf> {
    if env.is_null() {
        return None;
    }
    let mut value = None;
    let mut removed = Vec::new();
    let mut i = 0;
    loop {
        // SAFETY: `i` never passes the NULL terminator, by the loop's exits.
        let entry = unsafe { *env.add(i) };
        if entry.is_null() {
            break;
        }
        // SAFETY: a non-null entry is a valid NUL-terminated string.
        let bytes = unsafe { CStr::from_ptr(entry) }.to_bytes();
        if !(bytes.starts_with(name) && bytes.get(name.len()) == Some(&b'=')) {
            i += 1;
            continue;
        }
        if value.is_none() {
            let rest = bytes.get(name.len() + 1..).unwrap_or_default();
            value = Some(WipedBuf::from_slice(rest));
        }
        removed.push((entry.cast::<u8>(), bytes.len()));
        // Shift the later entries down over this one, NULL terminator included.
        let mut j = i;
        loop {
            // SAFETY: entry `j` is not the terminator, so `j + 1` is in the array.
            let next = unsafe { *env.add(j + 1) };
            // SAFETY: `j` is in the array and nobody else is looking at it.
            unsafe { *env.add(j) = next };
            if next.is_null() {
                break;
            }
            j += 1;
        }
    }
    for (start, len) in removed {
        for k in 0..len {
            // SAFETY: `start..start + len` is the writable string found above.
            unsafe { ptr::write_volatile(start.add(k), 0) };
        }
    }
    compiler_fence(Ordering::SeqCst);
    value
}

/// Prompts on `/dev/tty` with echo off and reads one line.
fn from_terminal(prompt: &str) -> Result<Secret, SecretError> {
    let mut tty = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(SecretError::Terminal)?;
    tty.write_all(prompt.as_bytes())
        .and_then(|()| tty.flush())
        .map_err(SecretError::Terminal)?;
    let line = match NoEcho::enable(&tty) {
        Ok(guard) => {
            let line = read_line(&tty);
            drop(guard);
            line
        }
        Err(err) => Err(SecretError::Terminal(err)),
    };
    // Echo was off, so the user's Enter did not move to a new line.
    let _ = tty.write_all(b"\n");
    let line = line?;
    if line.as_slice().is_empty() {
        return Err(SecretError::Empty {
            origin: Origin::Terminal,
        });
    }
    Secret::from_buf(line, Origin::Terminal)
}

/// Reads bytes from the terminal through a [`LineEditor`] until Enter.
fn read_line(mut tty: &File) -> Result<WipedBuf, SecretError> {
    let mut editor = LineEditor::default();
    let mut byte = [0u8; 1];
    let result = loop {
        match tty.read(&mut byte) {
            Ok(0) => break Err(SecretError::Cancelled),
            Ok(_) => match editor.feed(byte[0]) {
                Ok(Edit::More) => {}
                Ok(Edit::Done) => break Ok(()),
                Err(err) => break Err(err),
            },
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => break Err(SecretError::Terminal(err)),
        }
    };
    wipe_slice(&mut byte);
    result.map(|()| editor.line)
}

/// What the line editor wants after a key.
#[derive(Debug, PartialEq, Eq)]
enum Edit {
    More,
    Done,
}

/// The little line editing a password prompt needs, in non-canonical mode.
#[derive(Default)]
struct LineEditor {
    line: WipedBuf,
}

impl LineEditor {
    fn feed(&mut self, byte: u8) -> Result<Edit, SecretError> {
        match byte {
            b'\r' | b'\n' => return Ok(Edit::Done),
            // Ctrl-C always cancels; Ctrl-D cancels on an empty line, like a shell.
            0x03 => return Err(SecretError::Cancelled),
            0x04 if self.line.as_slice().is_empty() => return Err(SecretError::Cancelled),
            0x04 => {}
            // Backspace or DEL: drop the last UTF-8 character.
            0x08 | 0x7f => self.line.pop_char(),
            // Ctrl-U: start again.
            0x15 => self.line.truncate(0),
            _ if self.line.as_slice().len() >= MAX_SECRET_LEN => {
                return Err(SecretError::TooLong {
                    origin: Origin::Terminal,
                })
            }
            _ => self.line.extend_from_slice(&[byte]),
        }
        Ok(Edit::More)
    }
}

/// Turns terminal echo, line buffering and signal keys off; restores them on drop.
struct NoEcho<'a> {
    tty: &'a File,
    saved: libc::termios,
}

impl<'a> NoEcho<'a> {
    fn enable(tty: &'a File) -> io::Result<NoEcho<'a>> {
        let mut saved = MaybeUninit::<libc::termios>::uninit();
        // SAFETY: tcgetattr fills `saved` when it returns 0.
        if unsafe { libc::tcgetattr(tty.as_raw_fd(), saved.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: initialised by the successful tcgetattr above.
        let saved = unsafe { saved.assume_init() };
        let mut raw = saved;
        raw.c_lflag &= !(libc::ECHO | libc::ICANON | libc::ISIG | libc::IEXTEN);
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;
        // SAFETY: `raw` is a valid termios for this descriptor.
        if unsafe { libc::tcsetattr(tty.as_raw_fd(), libc::TCSAFLUSH, &raw) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(NoEcho { tty, saved })
    }
}

impl Drop for NoEcho<'_> {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `enable` on the same descriptor.
        unsafe { libc::tcsetattr(self.tty.as_raw_fd(), libc::TCSAFLUSH, &self.saved) };
    }
}

/// A byte buffer that zeroes its whole allocation before freeing it, including when
/// it has to grow.
#[derive(Default)]
struct WipedBuf(Vec<u8>);

impl WipedBuf {
    fn with_capacity(capacity: usize) -> WipedBuf {
        WipedBuf(Vec::with_capacity(capacity))
    }

    fn from_slice(data: &[u8]) -> WipedBuf {
        let mut buf = WipedBuf::with_capacity(data.len());
        buf.extend_from_slice(data);
        buf
    }

    fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// Appends `data`, moving to a larger allocation by hand so the old one is wiped.
    fn extend_from_slice(&mut self, data: &[u8]) {
        let needed = self.0.len() + data.len();
        if needed > self.0.capacity() {
            let mut bigger = Vec::with_capacity(needed.max(self.0.capacity() * 2).max(32));
            bigger.extend_from_slice(&self.0);
            let mut old = std::mem::replace(&mut self.0, bigger);
            wipe_vec(&mut old);
        }
        self.0.extend_from_slice(data);
    }

    fn truncate(&mut self, len: usize) {
        self.0.truncate(len);
    }

    /// Removes the last UTF-8 character (or stray byte).
    fn pop_char(&mut self) {
        while let Some(byte) = self.0.pop() {
            if byte & 0xc0 != 0x80 {
                break;
            }
        }
    }

    /// Removes one trailing `"\r\n"` or `"\n"`.
    fn strip_one_newline(&mut self) {
        if self.0.ends_with(b"\r\n") {
            self.truncate(self.0.len() - 2);
        } else if self.0.ends_with(b"\n") {
            self.truncate(self.0.len() - 1);
        }
    }
}

impl Drop for WipedBuf {
    fn drop(&mut self) {
        wipe_vec(&mut self.0);
    }
}

/// Zeroes every byte of `buf`'s allocation, spare capacity included.
fn wipe_vec(buf: &mut Vec<u8>) {
    wipe_slice(buf);
    for slot in buf.spare_capacity_mut() {
        // SAFETY: `slot` is a valid, exclusively borrowed byte of the allocation.
        unsafe { ptr::write_volatile(slot, MaybeUninit::new(0)) };
    }
    compiler_fence(Ordering::SeqCst);
}

/// Zeroes `bytes` with writes the compiler may not remove.
fn wipe_slice(bytes: &mut [u8]) {
    for byte in bytes.iter_mut() {
        // SAFETY: `byte` is a valid, exclusively borrowed byte.
        unsafe { ptr::write_volatile(byte, 0) };
    }
    compiler_fence(Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names the one test whose body a child process of the test binary is to run.
    const CHILD_MARKER: &str = "IMAPFS_SECRET_TEST_CHILD";
    /// Printed by a child once the body has run to its end.
    const CHILD_FINISHED: &str = "imapfs-secret-child-finished:";

    /// Runs `body` in a fresh process of this test binary, with `env` added to its
    /// environment, and asserts that it ran there to its end. `name` is the calling test:
    /// the child runs that test alone, which finds the marker and runs `body`. Erasing the
    /// environment changes the whole process, so it must not happen where other tests run;
    /// and there is no separate child-only test that would pass without asserting anything.
    fn in_child_process(name: &str, env: &[(&str, &str)], body: impl FnOnce()) {
        if std::env::var_os(CHILD_MARKER).is_some_and(|marked| marked == name) {
            body();
            println!("{CHILD_FINISHED} {name}");
            return;
        }
        let module = module_path!().split_once("::").map_or("", |(_, m)| m);
        let test = format!("{module}::{name}");
        let exe = std::env::current_exe().expect("test binary path");
        let output = Command::new(exe)
            .args([test.as_str(), "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_MARKER, name)
            .envs(env.iter().copied())
            .output()
            .expect("run the test binary");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success()
                && stdout.contains("1 passed")
                && stdout.contains(&format!("{CHILD_FINISHED} {name}")),
            "child {test} did not run to its end and pass:\n{stdout}\n{stderr}"
        );
    }

    fn proc_environ() -> Vec<u8> {
        std::fs::read("/proc/self/environ").expect("read /proc/self/environ")
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }

    #[test]
    fn env_secret_is_erased_from_proc_environ() {
        let env = [("IMAPFS_TEST_SECRET", "hunter2-xyz")];
        in_child_process("env_secret_is_erased_from_proc_environ", &env, || {
            assert!(contains(&proc_environ(), "hunter2-xyz"), "precondition");
            // libtest's main thread is idle waiting for this test, so nothing else
            // touches the environment; `obtain` itself would see two threads.
            let secret =
                obtain_with(None, "IMAPFS_TEST_SECRET", "unused: ", EnvAccess::Exclusive).unwrap();
            assert_eq!(secret.expose(), "hunter2-xyz");
            let shown = proc_environ();
            assert!(
                !contains(&shown, "hunter2-xyz"),
                "value still in /proc/self/environ"
            );
            assert!(
                !contains(&shown, "IMAPFS_TEST_SECRET"),
                "name still in /proc/self/environ"
            );
            assert!(std::env::var_os("IMAPFS_TEST_SECRET").is_none());
            assert!(contains(&shown, CHILD_MARKER), "other variables are kept");
            // Children do not inherit it either.
            let echoed = Command::new("sh")
                .args(["-c", "printf %s \"$IMAPFS_TEST_SECRET\""])
                .output()
                .unwrap();
            assert!(echoed.stdout.is_empty());
        });
    }

    #[test]
    fn env_secret_with_other_threads_is_still_removed() {
        let env = [("IMAPFS_TEST_SECRET", "hunter2-xyz")];
        in_child_process(
            "env_secret_with_other_threads_is_still_removed",
            &env,
            || {
                // Under libtest there are two threads, so `obtain` must not edit `environ`.
                assert_eq!(EnvAccess::detect(), EnvAccess::Shared);
                let secret = obtain(None, "IMAPFS_TEST_SECRET", "unused: ").unwrap();
                assert_eq!(secret.expose(), "hunter2-xyz");
                assert!(std::env::var_os("IMAPFS_TEST_SECRET").is_none());
            },
        );
    }

    #[test]
    fn env_is_erased_even_when_a_command_is_used() {
        let env = [("IMAPFS_TEST_SECRET", "hunter2-xyz")];
        in_child_process("env_is_erased_even_when_a_command_is_used", &env, || {
            assert!(contains(&proc_environ(), "hunter2-xyz"), "precondition");
            let secret = obtain_with(
                Some("printf 'from-command\\n'"),
                "IMAPFS_TEST_SECRET",
                "unused: ",
                EnvAccess::Exclusive,
            )
            .unwrap();
            assert_eq!(secret.expose(), "from-command");
            assert!(!contains(&proc_environ(), "hunter2-xyz"));
            assert!(std::env::var_os("IMAPFS_TEST_SECRET").is_none());
        });
    }

    #[test]
    fn empty_env_var_is_an_error() {
        let env = [("IMAPFS_TEST_SECRET", "")];
        in_child_process("empty_env_var_is_an_error", &env, || {
            assert_eq!(std::env::var_os("IMAPFS_TEST_SECRET"), Some("".into()));
            let err =
                obtain_with(None, "IMAPFS_TEST_SECRET", "", EnvAccess::Exclusive).unwrap_err();
            assert_eq!(
                err.to_string(),
                "the secret from environment variable IMAPFS_TEST_SECRET is empty"
            );
            assert!(std::env::var_os("IMAPFS_TEST_SECRET").is_none());
        });
    }

    #[test]
    fn env_array_entries_are_removed_and_zeroed() {
        let mut strings: Vec<Vec<u8>> = [
            "A=1",
            "SECRET=first",
            "SECRETX=keep",
            "B=2",
            "SECRET=second",
        ]
        .iter()
        .map(|s| format!("{s}\0").into_bytes())
        .collect();
        let mut array: Vec<*mut c_char> = strings
            .iter_mut()
            .map(|s| s.as_mut_ptr().cast::<c_char>())
            .chain([ptr::null_mut()])
            .collect();
        // SAFETY: a NULL-terminated array of NUL-terminated strings owned by this test.
        let value = unsafe { take_from_env_array(array.as_mut_ptr(), b"SECRET") };
        assert_eq!(value.unwrap().as_slice(), b"first");
        let left: Vec<&[u8]> = array
            .iter()
            .take_while(|p| !p.is_null())
            // SAFETY: the remaining entries still point at the strings above.
            .map(|&p| unsafe { CStr::from_ptr(p) }.to_bytes())
            .collect();
        assert_eq!(left, [&b"A=1"[..], b"SECRETX=keep", b"B=2"]);
        assert!(array[3].is_null());
        assert!(strings[1].iter().all(|&b| b == 0));
        assert!(strings[4].iter().all(|&b| b == 0));
        assert_eq!(strings[0], b"A=1\0");
    }

    #[test]
    fn env_array_without_the_name() {
        let mut only = b"A=1\0".to_vec();
        let mut array = [only.as_mut_ptr().cast::<c_char>(), ptr::null_mut()];
        // SAFETY: as above.
        assert!(unsafe { take_from_env_array(array.as_mut_ptr(), b"A=") }.is_none());
        // SAFETY: a null array is allowed.
        assert!(unsafe { take_from_env_array(ptr::null_mut(), b"A") }.is_none());
        assert!(take_env_var("", EnvAccess::Shared).is_none());
        assert!(take_env_var("A=B", EnvAccess::Shared).is_none());
        assert!(take_env_var("A\0", EnvAccess::Shared).is_none());
    }

    #[test]
    fn command_output_is_the_secret() {
        assert_eq!(from_command("printf 'pw'").unwrap().expose(), "pw");
        assert_eq!(from_command("printf 'pw\\n'").unwrap().expose(), "pw");
        assert_eq!(from_command("printf 'pw\\r\\n'").unwrap().expose(), "pw");
        // Only one newline is removed.
        assert_eq!(from_command("printf 'pw\\n\\n'").unwrap().expose(), "pw\n");
        assert_eq!(from_command("printf ' p w \\n'").unwrap().expose(), " p w ");
        assert_eq!(
            from_command("printf 'caf\\303\\251'").unwrap().expose(),
            "café"
        );
    }

    #[test]
    fn long_command_output_needs_several_reads() {
        let secret = from_command("head -c 5000 /dev/zero | tr '\\0' x").unwrap();
        assert_eq!(secret.expose(), "x".repeat(5000));
    }

    #[test]
    fn failing_command_is_named_but_its_output_is_not_shown() {
        let command = "printf '%s%s' leak ed; exit 3";
        let err = from_command(command).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, SecretError::CommandFailed { .. }), "{err:?}");
        assert!(message.contains(command), "{message}");
        assert!(message.contains("exit status: 3"), "{message}");
        assert!(!message.contains("leaked"), "{message}");
        assert!(!format!("{err:?}").contains("leaked"));
    }

    #[test]
    fn missing_command_fails() {
        let err = from_command("imapfs-no-such-command-xyz 2>/dev/null").unwrap_err();
        assert!(matches!(err, SecretError::CommandFailed { .. }), "{err:?}");
    }

    #[test]
    fn empty_command_output_is_an_error() {
        for command in ["true", "printf '\\n'", "printf '\\r\\n'"] {
            let err = from_command(command).unwrap_err();
            assert!(
                matches!(err, SecretError::Empty { .. }),
                "{command}: {err:?}"
            );
            assert!(err.to_string().contains(command));
        }
    }

    #[test]
    fn non_utf8_and_huge_outputs_are_errors() {
        let err = from_command("printf '\\377'").unwrap_err();
        assert!(matches!(err, SecretError::NotUtf8 { .. }), "{err:?}");
        let err = from_command("head -c 70000 /dev/zero | tr '\\0' x").unwrap_err();
        assert!(matches!(err, SecretError::TooLong { .. }), "{err:?}");
        // A command that never stops writing is killed rather than waited for.
        let err = from_command("yes").unwrap_err();
        assert!(matches!(err, SecretError::TooLong { .. }), "{err:?}");
    }

    #[test]
    fn debug_is_redacted() {
        let secret = Secret::from_buf(WipedBuf::from_slice(b"hunter2"), Origin::Terminal).unwrap();
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(format!("{secret:#?}"), "Secret(***)");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn line_editor_keys() {
        let mut editor = LineEditor::default();
        for &byte in b"hunx\x7fter" {
            assert_eq!(editor.feed(byte).unwrap(), Edit::More);
        }
        assert_eq!(editor.feed(b'\r').unwrap(), Edit::Done);
        assert_eq!(editor.line.as_slice(), b"hunter");

        let mut editor = LineEditor::default();
        for &byte in "abé\x08\x08c\x04".as_bytes() {
            editor.feed(byte).unwrap();
        }
        assert_eq!(editor.line.as_slice(), b"ac");
        editor.feed(0x15).unwrap();
        assert_eq!(editor.line.as_slice(), b"");
        assert!(matches!(editor.feed(0x04), Err(SecretError::Cancelled)));
        assert!(matches!(editor.feed(0x03), Err(SecretError::Cancelled)));
        // Backspace on an empty line is harmless.
        editor.feed(0x7f).unwrap();
        assert_eq!(editor.line.as_slice(), b"");
    }

    #[test]
    fn line_editor_limits_length() {
        let mut editor = LineEditor::default();
        for _ in 0..MAX_SECRET_LEN {
            editor.feed(b'x').unwrap();
        }
        assert!(matches!(
            editor.feed(b'x'),
            Err(SecretError::TooLong { .. })
        ));
    }

    #[test]
    fn wiped_buf_grows_and_wipes() {
        let mut buf = WipedBuf::with_capacity(2);
        for chunk in [&b"ab"[..], b"cdef", b"g"] {
            buf.extend_from_slice(chunk);
        }
        assert_eq!(buf.as_slice(), b"abcdefg");
        let mut bytes = b"secret".to_vec();
        bytes.truncate(3);
        wipe_vec(&mut bytes);
        assert_eq!(bytes, [0, 0, 0]);
        // SAFETY: the spare capacity was just written by `wipe_vec`.
        let spare = unsafe { std::slice::from_raw_parts(bytes.as_ptr().add(3), 3) };
        assert_eq!(spare, [0, 0, 0]);
    }

    #[test]
    fn unavailable_names_the_variable() {
        let err = SecretError::Unavailable {
            env_var: "IMAPFS_PASSWORD".into(),
        };
        assert!(err.to_string().contains("IMAPFS_PASSWORD"));
    }
}
