//! The clock that freshness decisions read, injected so that tests can move time on
//! instead of sleeping.

use std::time::Instant;

/// A monotonic clock.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to (tests).
#[cfg(test)]
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    offset: parking_lot::Mutex<std::time::Duration>,
}

#[cfg(test)]
impl ManualClock {
    /// A clock standing at the current instant.
    pub fn new() -> Self {
        ManualClock {
            start: Instant::now(),
            offset: parking_lot::Mutex::default(),
        }
    }

    /// Moves the clock `by` forward.
    pub fn advance(&self, by: std::time::Duration) {
        *self.offset.lock() += by;
    }
}

#[cfg(test)]
impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

#[cfg(test)]
impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + *self.offset.lock()
    }
}
