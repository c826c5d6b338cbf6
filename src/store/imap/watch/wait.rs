//! Waiting without a command under way: for the server to speak, for another thread to
//! wake the watcher, or for a time on a clock that keeps counting while the machine sleeps.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// What ended a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// The server sent something.
    Input,
    /// Another thread called [`Waker::wake`].
    Signal,
    /// The time ran out.
    Timeout,
}

/// Wakes one watcher thread from any other: a byte in a socket pair it polls.
pub struct Waker {
    reader: UnixStream,
    writer: UnixStream,
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
        let (reader, writer) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        Ok(Waker { reader, writer })
    }

    /// Makes the next (or current) wait end with [`Woken::Signal`].
    pub fn wake(&self) {
        // A full pair already holds a wake-up; nothing is lost by dropping this one.
        let _ = (&self.writer).write(&[1]);
    }

    /// Forgets wake-ups already delivered.
    fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.reader).read(&mut buf), Ok(n) if n > 0) {}
    }

    /// Waits up to `timeout` for a wake-up alone (a pause between reconnections).
    pub fn sleep(&self, timeout: Duration) -> Woken {
        wait_on(None, self, timeout).unwrap_or(Woken::Timeout)
    }
}

/// Waits up to `timeout` for `fd` to become readable or `waker` to be woken. A wake-up wins
/// over input, so a thread asked to stop does not first read what the server sent.
pub fn wait_on(fd: Option<RawFd>, waker: &Waker, timeout: Duration) -> io::Result<Woken> {
    let mut fds = vec![libc::pollfd {
        fd: waker.reader.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    if let Some(fd) = fd {
        fds.push(libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
    }
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    loop {
        // SAFETY: `fds` is a valid array of initialised pollfd of the length given.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(Woken::Timeout);
        }
        if fds[0].revents != 0 {
            waker.drain();
            return Ok(Woken::Signal);
        }
        // Readable, hung up or in error: the next read says which.
        return Ok(Woken::Input);
    }
}

/// Time since boot, counting time suspended (`CLOCK_BOOTTIME`), so that a watcher whose
/// machine slept sees at once that its keepalive is overdue. `Instant` stops while the
/// machine sleeps.
pub fn boot_clock() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid `ts`.
    let done = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if done != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn a_wake_ends_the_wait_at_once_and_is_used_up() {
        let waker = Waker::new().unwrap();
        waker.wake();
        waker.wake();
        let start = Instant::now();
        assert_eq!(waker.sleep(Duration::from_secs(5)), Woken::Signal);
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(waker.sleep(Duration::from_millis(20)), Woken::Timeout);
    }

    #[test]
    fn input_on_the_socket_ends_the_wait() {
        let waker = Waker::new().unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        let fd = b.as_raw_fd();
        assert_eq!(
            wait_on(Some(fd), &waker, Duration::from_millis(20)).unwrap(),
            Woken::Timeout
        );
        a.write_all(b"* OK\r\n").unwrap();
        assert_eq!(
            wait_on(Some(fd), &waker, Duration::from_secs(5)).unwrap(),
            Woken::Input
        );
    }

    #[test]
    fn the_boot_clock_moves() {
        let a = boot_clock();
        std::thread::sleep(Duration::from_millis(5));
        assert!(boot_clock() > a);
    }
}
