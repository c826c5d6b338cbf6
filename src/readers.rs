//! Which FUSE threads read the next request. The kernel hands each request to the thread
//! that has waited longest in read(2), so with several threads every request wakes a thread
//! that has been asleep, often on the other core, and the one that just answered goes to
//! sleep: a context switch or two per request, which on two cores costs a cold `grep -r`
//! more than half its time. One thread alone avoids that, but then a request waiting on the
//! server holds up every other.
//!
//! So one thread reads while requests are answered quickly: after answering, a thread
//! that is not the only one left reading parks instead of reading again. A spare is let go
//! back to reading when the request being served has run for [`SLOW`] (it waits on the
//! server, or on another request), so a slow download never holds up a listing.
//!
//! A parked thread goes back to reading when the mount has been quiet for [`PARK`], so an
//! unmount that the mount did not make itself (`fusermount -u`) ends every thread.
//!
//! Each request takes one turn ([`Readers::turn`]) for its whole length, reply included.
//! What `fuser` calls several times within one request (`forget`, once per node of a
//! BATCH_FORGET) takes none: a thread may park at the end of a turn, which must be the end
//! of its request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// How long a request runs before a spare thread is let go to read the next one.
const SLOW: Duration = Duration::from_millis(1);

/// How long a parked thread waits before reading again if nothing happens meanwhile.
const PARK: Duration = Duration::from_millis(100);

/// How long the watchdog ticks on after the last request before it sleeps.
const AWAKE: Duration = Duration::from_millis(50);

#[derive(Default)]
struct State {
    /// Threads serving a request.
    busy: usize,
    /// Threads parked.
    parked: usize,
    /// Spares let go: that many parked threads leave.
    released: usize,
    /// Requests begun and ended so far; unchanged over a tick means nothing moved.
    events: u64,
    /// The watchdog is asleep until a request begins.
    asleep: bool,
    /// The mount is ending: nobody parks.
    stopped: bool,
    /// The thread that began the last request.
    last: Option<ThreadId>,
}

struct Inner {
    threads: usize,
    /// [`SLOW`] and [`PARK`] (shorter or longer in tests).
    slow: Duration,
    park: Duration,
    counts: Arc<RequestCounts>,
    state: Mutex<State>,
    parked: Condvar,
    watchdog: Condvar,
}

impl Inner {
    /// Threads in read(2) now (or about to be).
    fn reading(&self, st: &State) -> usize {
        self.threads.saturating_sub(st.busy + st.parked)
    }

    /// Requests are being served, nobody reads, and a parked thread could.
    fn spare_wanted(&self, st: &State) -> bool {
        st.busy > 0 && self.reading(st) == 0 && st.parked > st.released
    }
}

/// What the FUSE threads served, for `user.imapfs.stats`.
#[derive(Debug, Default)]
pub struct RequestCounts {
    /// Requests served (FORGET aside: it takes no turn).
    pub requests: AtomicU64,
    /// Requests begun on another thread than the request before.
    pub handoffs: AtomicU64,
}

/// The mount's FUSE threads, as above.
#[derive(Clone)]
pub struct Readers {
    inner: Arc<Inner>,
}

/// A request being served; when dropped, after the reply, its thread reads again or parks.
#[must_use]
pub struct Turn<'a> {
    readers: &'a Readers,
}

impl Readers {
    /// Readers for a session of `threads` threads, with the watchdog that lets spares go.
    /// `counts` counts the requests, and those begun on another thread than the one before.
    pub fn new(threads: usize, counts: Arc<RequestCounts>) -> Self {
        Self::with_timing(threads, counts, SLOW, PARK)
    }

    fn with_timing(
        threads: usize,
        counts: Arc<RequestCounts>,
        slow: Duration,
        park: Duration,
    ) -> Self {
        let readers = Readers {
            inner: Arc::new(Inner {
                threads,
                slow,
                park,
                counts,
                state: Mutex::new(State::default()),
                parked: Condvar::new(),
                watchdog: Condvar::new(),
            }),
        };
        if threads > 1 {
            let watched = readers.clone();
            let spawned = std::thread::Builder::new()
                .name("fuse-readers".into())
                .spawn(move || watched.watch());
            if let Err(e) = spawned {
                // Without the watchdog no thread parks: every thread reads, as before.
                tracing::warn!(error = %e, "could not start the FUSE reader watchdog");
                readers.inner.state.lock().stopped = true;
            }
        }
        readers
    }

    /// A request begins on this thread.
    pub fn turn(&self) -> Turn<'_> {
        let me = std::thread::current().id();
        let mut st = self.inner.state.lock();
        st.busy += 1;
        st.events += 1;
        self.inner.counts.requests.fetch_add(1, Ordering::Relaxed);
        if st.last.replace(me).is_some_and(|last| last != me) {
            self.inner.counts.handoffs.fetch_add(1, Ordering::Relaxed);
        }
        if st.asleep {
            st.asleep = false;
            self.inner.watchdog.notify_one();
        }
        Turn { readers: self }
    }

    /// Every parked thread reads again, and none parks any more (the mount is ending).
    pub fn stop(&self) {
        let mut st = self.inner.state.lock();
        st.stopped = true;
        self.inner.parked.notify_all();
        self.inner.watchdog.notify_one();
    }

    fn end_turn(&self) {
        let inner = &*self.inner;
        let mut st = inner.state.lock();
        st.busy -= 1;
        st.events += 1;
        // Park while another thread reads, until let go, or until a quiet PARK.
        while !st.stopped && inner.reading(&st) > 1 {
            st.parked += 1;
            let seen = st.events;
            let timed_out = inner.parked.wait_for(&mut st, inner.park).timed_out();
            st.parked -= 1;
            if st.released > 0 {
                st.released -= 1;
                break;
            }
            if timed_out && st.events == seen {
                break;
            }
        }
    }

    /// Lets a parked thread go whenever requests are being served, nobody reads, and
    /// nothing has moved for a tick. Sleeps while no spare could be wanted (nothing is
    /// served, or a thread reads, or none is parked) once that has lasted [`AWAKE`]: a
    /// request that begins wakes it, and only then can a spare be wanted again.
    fn watch(&self) {
        let inner = &*self.inner;
        let mut st = inner.state.lock();
        let mut quiet_since = Instant::now();
        loop {
            if st.stopped {
                return;
            }
            let seen = st.events;
            if !inner.spare_wanted(&st) && quiet_since.elapsed() >= AWAKE {
                st.asleep = true;
                while st.asleep && !st.stopped {
                    inner.watchdog.wait(&mut st);
                }
                quiet_since = Instant::now();
                continue;
            }
            inner.watchdog.wait_for(&mut st, inner.slow);
            if st.events != seen {
                quiet_since = Instant::now();
                continue;
            }
            if inner.spare_wanted(&st) {
                st.released += 1;
                inner.parked.notify_one();
            }
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.readers.end_turn();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::thread;

    use super::*;

    const LONG: Duration = Duration::from_secs(3600);
    const PATIENCE: Duration = Duration::from_secs(10);

    impl Readers {
        fn parked(&self) -> usize {
            self.inner.state.lock().parked
        }
    }

    fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < PATIENCE, "{what}");
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops the readers when dropped. Declared after the turns a test holds, it drops
    /// first: a failed assertion then ends the test instead of parking its thread.
    struct Stopper<'a>(&'a Readers);

    impl Drop for Stopper<'_> {
        fn drop(&mut self) {
            self.0.stop();
        }
    }

    /// Runs one request on a thread of its own; the channel says when the thread reads again.
    fn serve_one(readers: &Readers) -> mpsc::Receiver<()> {
        let readers = readers.clone();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            drop(readers.turn());
            let _ = tx.send(());
        });
        rx
    }

    #[test]
    fn after_its_request_a_thread_parks_while_another_reads() {
        let readers = Readers::with_timing(3, Arc::default(), LONG, LONG);
        let _stop = Stopper(&readers);
        let first = serve_one(&readers);
        wait_until("the first thread did not park", || readers.parked() == 1);
        let second = serve_one(&readers);
        wait_until("the second thread did not park", || readers.parked() == 2);
        // One thread is left reading (this one, to the counts): a third does not park.
        drop(readers.turn());
        assert_eq!(readers.parked(), 2);
        assert!(first.try_recv().is_err() && second.try_recv().is_err());
        readers.stop();
        first.recv_timeout(PATIENCE).expect("stop let the first go");
        second
            .recv_timeout(PATIENCE)
            .expect("stop let the second go");
    }

    #[test]
    fn a_slow_request_lets_a_parked_thread_read() {
        let counts = Arc::new(RequestCounts::default());
        let readers = Readers::with_timing(2, Arc::clone(&counts), Duration::from_millis(5), LONG);
        let parked = serve_one(&readers);
        wait_until("the thread did not park", || readers.parked() == 1);
        // This thread now serves a request that waits (on the server, say): nobody reads.
        let _turn = readers.turn();
        let _stop = Stopper(&readers);
        parked
            .recv_timeout(PATIENCE)
            .expect("the parked thread was not let go while a request waited");
        assert_eq!(readers.parked(), 0);
        assert_eq!(
            counts.handoffs.load(Ordering::Relaxed),
            1,
            "two threads took a turn"
        );
        assert_eq!(counts.requests.load(Ordering::Relaxed), 2);
    }

    /// A long request (a large download) with a spare reading: the watchdog sleeps rather
    /// than ticking every millisecond for as long as the request lasts.
    #[test]
    fn the_watchdog_sleeps_while_a_long_request_has_a_spare_reading() {
        let readers = Readers::with_timing(2, Arc::default(), Duration::from_millis(1), LONG);
        // One thread serves a long request; the other (counted as reading) is free.
        let _turn = readers.turn();
        let _stop = Stopper(&readers);
        wait_until("the watchdog kept ticking through the long request", || {
            readers.inner.state.lock().asleep
        });
    }

    #[test]
    fn the_one_thread_left_reading_never_parks() {
        let readers = Readers::with_timing(2, Arc::default(), LONG, LONG);
        let parked = serve_one(&readers);
        wait_until("the thread did not park", || readers.parked() == 1);
        let _stop = Stopper(&readers);
        let reader = readers.clone();
        let (tx, quick) = mpsc::channel();
        thread::spawn(move || {
            for _ in 0..1000 {
                drop(reader.turn());
            }
            let _ = tx.send(());
        });
        quick
            .recv_timeout(PATIENCE)
            .expect("the one thread reading parked");
        assert_eq!(readers.parked(), 1);
        assert!(parked.try_recv().is_err());
        readers.stop();
        parked
            .recv_timeout(PATIENCE)
            .expect("stop let the parked thread go");
    }

    /// After `fusermount -u`, only a thread that reads learns that the mount is gone.
    #[test]
    fn a_parked_thread_reads_again_once_the_mount_is_quiet() {
        let readers = Readers::with_timing(2, Arc::default(), LONG, Duration::from_millis(20));
        let parked = serve_one(&readers);
        parked
            .recv_timeout(PATIENCE)
            .expect("a parked thread stayed parked on a quiet mount");
        assert_eq!(readers.parked(), 0);
    }
}
