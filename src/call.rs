//! The filesystem call being served on this thread: when it must be answered by, and
//! whether its caller gave up. Store code reads it to bound every wait by one deadline
//! shared by the call's retries and lookups, and to stop at once when the caller is
//! signalled (by shutting down the socket it waits on).
//!
//! The kernel only sends FUSE INTERRUPT to a filesystem that answers it, and `fuser` does
//! not; so a watcher thread looks at each waiting caller's pending signals in `/proc`
//! instead. A call whose caller has a signal it neither blocks nor ignores is cancelled:
//! its reply is EINTR, the caller's handler runs or the caller dies, as with a local disk.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::store::StoreError;

type Hook = Box<dyn Fn() + Send + Sync>;

/// One filesystem call in flight.
pub struct Call {
    deadline: Instant,
    /// The calling thread's id (FUSE's `pid`), if known.
    caller: Option<u32>,
    cancelled: AtomicBool,
    hooks: Mutex<HashMap<u64, Hook>>,
    next_hook: AtomicU64,
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Call>>> = const { RefCell::new(None) };
}

/// The call this thread is serving, if any.
pub fn current() -> Option<Arc<Call>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// The deadline of the current call, if any.
pub fn deadline() -> Option<Instant> {
    current().map(|c| c.deadline)
}

/// Whether the current call was cancelled.
pub fn cancelled() -> bool {
    current().is_some_and(|c| c.is_cancelled())
}

/// How often a wait of the current call looks whether it must end.
const CHECK_EVERY: Duration = Duration::from_millis(50);

/// Whether the current call may still go on (start something, or wait longer): not once
/// its caller gave up (`Interrupted`), nor once its deadline passed (`Timeout`).
pub fn goes_on() -> Result<(), StoreError> {
    if cancelled() {
        return Err(StoreError::Interrupted);
    }
    if deadline().is_some_and(|d| d <= Instant::now()) {
        return Err(StoreError::Timeout(
            "the filesystem call ran out of time".into(),
        ));
    }
    Ok(())
}

/// Locks `gate`, which another thread holds while it fetches what this call wants, as
/// long as the current call goes on. Outside a call, until the gate opens.
pub fn lock_within<T>(gate: &Mutex<T>) -> Result<parking_lot::MutexGuard<'_, T>, StoreError> {
    loop {
        if let Some(held) = gate.try_lock_for(CHECK_EVERY) {
            return Ok(held);
        }
        goes_on()?;
    }
}

/// Why `recv_within` came back without a value.
#[derive(Debug, PartialEq, Eq)]
pub enum Unanswered {
    /// The call's caller gave up.
    Interrupted,
    /// `until`, or the call's deadline, passed.
    TimedOut,
    /// The sender is gone.
    Gone,
}

/// Waits for `rx`'s next value until `until`, and no longer than the current call may
/// (its deadline, its caller giving up).
pub fn recv_within<T>(rx: &std::sync::mpsc::Receiver<T>, until: Instant) -> Result<T, Unanswered> {
    let until = deadline().map_or(until, |d| d.min(until));
    loop {
        if cancelled() {
            return Err(Unanswered::Interrupted);
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Unanswered::TimedOut);
        }
        match rx.recv_timeout(left.min(CHECK_EVERY)) {
            Ok(value) => return Ok(value),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Err(Unanswered::Gone),
        }
    }
}

/// Makes `call` the current call of this thread until the guard is dropped.
pub fn enter(call: Arc<Call>) -> Entered {
    let previous = CURRENT.with(|c| c.borrow_mut().replace(call));
    Entered { previous }
}

/// Restores the previous current call when dropped.
pub struct Entered {
    previous: Option<Arc<Call>>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

impl Call {
    /// A call that must be answered by `deadline`, made by thread `caller`.
    pub fn new(deadline: Instant, caller: Option<u32>) -> Arc<Call> {
        Arc::new(Call {
            deadline,
            caller,
            cancelled: AtomicBool::new(false),
            hooks: Mutex::new(HashMap::new()),
            next_hook: AtomicU64::new(0),
        })
    }

    /// When the call must be answered by.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the caller gave up.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Cancels the call: every hook registered runs (once).
    pub fn cancel(&self) {
        if self.cancelled.swap(true, Ordering::AcqRel) {
            return;
        }
        let hooks: Vec<Hook> = self.hooks.lock().drain().map(|(_, h)| h).collect();
        for hook in hooks {
            hook();
        }
    }

    /// Runs `hook` if the call is cancelled while the returned guard lives (at once if it
    /// already is): what a blocked wait needs to be woken, such as shutting a socket down.
    pub fn on_cancel(self: &Arc<Self>, hook: impl Fn() + Send + Sync + 'static) -> OnCancel {
        let id = self.next_hook.fetch_add(1, Ordering::Relaxed);
        self.hooks.lock().insert(id, Box::new(hook));
        if self.is_cancelled() {
            if let Some(hook) = self.hooks.lock().remove(&id) {
                hook();
            }
        }
        OnCancel {
            call: Arc::downgrade(self),
            id,
        }
    }
}

/// Unregisters a cancel hook when dropped.
pub struct OnCancel {
    call: Weak<Call>,
    id: u64,
}

impl Drop for OnCancel {
    fn drop(&mut self) {
        if let Some(call) = self.call.upgrade() {
            call.hooks.lock().remove(&self.id);
        }
    }
}

/// The calls in flight, watched for callers that were signalled.
#[derive(Default)]
pub struct Calls {
    in_flight: Mutex<HashMap<u64, (Arc<Call>, Instant)>>,
    next: AtomicU64,
}

/// Removes a call from the calls in flight when dropped (and leaves the thread's context).
pub struct Serving {
    calls: Arc<Calls>,
    id: u64,
    _entered: Entered,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.calls.in_flight.lock().remove(&self.id);
    }
}

/// How often waiting callers are looked at, and how long a call runs before it is.
const WATCH_EVERY: Duration = Duration::from_millis(50);

impl Calls {
    /// Starts serving a call from thread `caller` that must end within `limit`; it is the
    /// current call of this thread until the guard is dropped.
    pub fn serve(self: &Arc<Self>, caller: Option<u32>, limit: Duration) -> Serving {
        let now = Instant::now();
        let call = Call::new(now + limit, caller);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.in_flight.lock().insert(id, (Arc::clone(&call), now));
        Serving {
            calls: Arc::clone(self),
            id,
            _entered: enter(call),
        }
    }

    /// Cancels every call in flight whose caller has a signal pending (see the module doc).
    /// Returns how many were cancelled.
    pub fn cancel_signalled(&self) -> usize {
        let waiting: Vec<Arc<Call>> = self
            .in_flight
            .lock()
            .values()
            .filter(|(call, started)| started.elapsed() >= WATCH_EVERY && !call.is_cancelled())
            .map(|(call, _)| Arc::clone(call))
            .collect();
        let mut cancelled = 0;
        for call in waiting {
            if call.caller.is_some_and(signal_pending) {
                tracing::debug!(caller = ?call.caller, "the caller was signalled; cancelling its call");
                call.cancel();
                cancelled += 1;
            }
        }
        cancelled
    }

    /// Watches the calls in flight on a thread of its own, for as long as `self` lives.
    pub fn watch(self: &Arc<Self>) {
        let calls = Arc::downgrade(self);
        std::thread::spawn(move || loop {
            std::thread::sleep(WATCH_EVERY);
            match calls.upgrade() {
                Some(calls) => {
                    calls.cancel_signalled();
                }
                None => return,
            }
        });
    }
}

/// Whether thread `tid` has a signal pending that it neither blocks nor ignores.
fn signal_pending(tid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{tid}/status")) else {
        // The caller is gone: nobody waits for the answer.
        return true;
    };
    let mask = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    let pending = mask("SigPnd:") | mask("ShdPnd:");
    pending & !mask("SigBlk:") & !mask("SigIgn:") != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A reader waiting for another thread's fetch stops at its call's deadline, and at
    /// once when its caller gives up; it gets the gate when the fetch ends.
    #[test]
    fn waiting_for_another_fetch_ends_with_the_call() {
        let gate = Arc::new(Mutex::new(()));
        let (locked, is_locked) = std::sync::mpsc::channel();
        let (open, opened) = std::sync::mpsc::channel::<()>();
        let fetcher = Arc::clone(&gate);
        let holder = std::thread::spawn(move || {
            let _fetching = fetcher.lock();
            locked.send(()).unwrap();
            let _ = opened.recv();
        });
        is_locked.recv().unwrap();
        let soon = Call::new(Instant::now() + Duration::from_millis(200), None);
        {
            let _in = enter(Arc::clone(&soon));
            let started = Instant::now();
            let waited = lock_within(&gate).map(drop);
            assert!(matches!(waited, Err(StoreError::Timeout(_))), "{waited:?}");
            assert!(started.elapsed() >= Duration::from_millis(200));
        }
        let patient = Call::new(Instant::now() + Duration::from_secs(600), None);
        let giving_up = Arc::clone(&patient);
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            giving_up.cancel();
        });
        {
            let _in = enter(Arc::clone(&patient));
            let waited = lock_within(&gate).map(drop);
            assert!(matches!(waited, Err(StoreError::Interrupted)), "{waited:?}");
        }
        canceller.join().unwrap();
        let opener = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            open.send(()).unwrap();
        });
        assert!(lock_within(&gate).is_ok(), "outside a call, until it opens");
        opener.join().unwrap();
        holder.join().unwrap();
    }

    /// A wait for a reply ends with what comes, at its bound, at the call's deadline, or
    /// when the caller gives up, whichever is first.
    #[test]
    fn waiting_for_a_reply_ends_with_the_call() {
        let far = || Instant::now() + Duration::from_secs(600);
        let (tx, rx) = std::sync::mpsc::channel::<u8>();
        tx.send(1).unwrap();
        assert_eq!(recv_within(&rx, far()), Ok(1));
        let started = Instant::now();
        assert_eq!(
            recv_within(&rx, started + Duration::from_millis(100)),
            Err(Unanswered::TimedOut)
        );
        assert!(started.elapsed() >= Duration::from_millis(100));
        let soon = Call::new(Instant::now() + Duration::from_millis(100), None);
        {
            let _in = enter(soon);
            let started = Instant::now();
            assert_eq!(recv_within(&rx, far()), Err(Unanswered::TimedOut));
            assert!(started.elapsed() < Duration::from_secs(300));
        }
        let patient = Call::new(far(), None);
        patient.cancel();
        {
            let _in = enter(patient);
            let started = Instant::now();
            assert_eq!(recv_within(&rx, far()), Err(Unanswered::Interrupted));
            assert!(started.elapsed() < Duration::from_secs(300));
        }
        drop(tx);
        assert_eq!(recv_within(&rx, far()), Err(Unanswered::Gone));
    }

    #[test]
    fn the_current_call_is_per_thread_and_restored() {
        assert!(current().is_none());
        let outer = Call::new(Instant::now() + Duration::from_secs(5), None);
        let _a = enter(Arc::clone(&outer));
        assert_eq!(deadline(), Some(outer.deadline()));
        {
            let inner = Call::new(Instant::now() + Duration::from_secs(1), None);
            let _b = enter(Arc::clone(&inner));
            assert_eq!(deadline(), Some(inner.deadline()));
            std::thread::spawn(|| assert!(current().is_none()))
                .join()
                .unwrap();
        }
        assert_eq!(deadline(), Some(outer.deadline()));
    }

    #[test]
    fn cancelling_runs_the_hooks_registered_then_and_later() {
        let call = Call::new(Instant::now() + Duration::from_secs(5), None);
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&ran);
        let guard = call.on_cancel(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        let counter = Arc::clone(&ran);
        let dropped = call.on_cancel(move || {
            counter.fetch_add(100, Ordering::Relaxed);
        });
        drop(dropped);
        call.cancel();
        call.cancel();
        assert_eq!(
            ran.load(Ordering::Relaxed),
            1,
            "once, and not the dropped one"
        );
        let counter = Arc::clone(&ran);
        let _late = call.on_cancel(move || {
            counter.fetch_add(10, Ordering::Relaxed);
        });
        assert_eq!(
            ran.load(Ordering::Relaxed),
            11,
            "at once when already cancelled"
        );
        drop(guard);
        assert!(call.is_cancelled());
    }

    #[test]
    fn a_signalled_caller_is_told_from_one_that_is_not() {
        // A child that ignores SIGUSR2 and waits; nothing is pending yet.
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("trap '' USR2; sleep 30")
            .spawn()
            .unwrap();
        let pid = child.id();
        std::thread::sleep(Duration::from_millis(100));
        assert!(!signal_pending(pid));
        // SIGSTOP it, then send SIGTERM: pending (it cannot run to take it), not ignored.
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(pid as i32, libc::SIGSTOP);
            libc::kill(pid as i32, libc::SIGUSR2);
        }
        std::thread::sleep(Duration::from_millis(50));
        assert!(!signal_pending(pid), "an ignored signal does not count");
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        std::thread::sleep(Duration::from_millis(50));
        assert!(signal_pending(pid));
        let calls = Arc::new(Calls::default());
        let serving = {
            let calls = Arc::clone(&calls);
            std::thread::spawn(move || {
                let _serving = calls.serve(Some(pid), Duration::from_secs(5));
                let call = current().unwrap();
                let deadline = Instant::now() + Duration::from_secs(5);
                while !call.is_cancelled() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                call.is_cancelled()
            })
        };
        std::thread::sleep(WATCH_EVERY * 2);
        assert_eq!(calls.cancel_signalled(), 1);
        assert!(serving.join().unwrap());
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        let _ = child.wait();
        assert!(signal_pending(pid), "a caller that is gone needs no answer");
    }
}
