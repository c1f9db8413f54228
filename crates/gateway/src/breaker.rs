//! A circuit breaker per provider: after `failure_threshold` consecutive failures it opens and
//! the provider is skipped for `cooldown`; then one probe request is let through (half-open):
//! success closes the circuit, failure opens it again. Lock-free, so it costs nothing on the
//! hot path.
//!
//! A [`Permit`] is a guard: if the request holding the probe is dropped before it reports an
//! outcome (the client went away), the probe slot is released, so the provider cannot be
//! left half-open with no probe ever allowed again.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Circuit state, as exported in `warden_circuit_state` (0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Requests flow.
    Closed = 0,
    /// Requests skip this provider.
    Open = 1,
    /// One probe may go through.
    HalfOpen = 2,
}

/// One provider's breaker.
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    epoch: Instant,
    failures: AtomicU32,
    /// Milliseconds since `epoch` until which the circuit is open; 0 = closed.
    open_until_ms: AtomicU64,
    probing: AtomicBool,
}

/// Permission to send one request. Report its outcome with [`Permit::success`] or
/// [`Permit::failure`]; dropping it unreported reports nothing (and frees a probe slot).
#[must_use]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold,
            cooldown,
            epoch: Instant::now(),
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// The state now.
    pub fn state(&self) -> State {
        let until = self.open_until_ms.load(Ordering::Acquire);
        if until == 0 {
            State::Closed
        } else if self.now_ms() < until {
            State::Open
        } else {
            State::HalfOpen
        }
    }

    /// Asks to send a request: `None` while open (or while another probe is out).
    pub fn try_acquire(&self) -> Option<Permit<'_>> {
        match self.state() {
            State::Closed => Some(Permit {
                breaker: self,
                probe: false,
            }),
            State::Open => None,
            State::HalfOpen => self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .ok()
                .map(|_| Permit {
                    breaker: self,
                    probe: true,
                }),
        }
    }

    fn open(&self) {
        let until = self.now_ms() + self.cooldown.as_millis() as u64;
        self.open_until_ms.store(until, Ordering::Release);
    }
}

impl Permit<'_> {
    /// Whether this is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The request succeeded (or the provider answered sensibly): close the circuit.
    pub fn success(self) {
        self.breaker.failures.store(0, Ordering::Release);
        self.breaker.open_until_ms.store(0, Ordering::Release);
    }

    /// The request failed; returns true if this failure opened the circuit.
    pub fn failure(self) -> bool {
        let b = self.breaker;
        if self.probe {
            b.open();
            return true;
        }
        let n = b.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= b.threshold && b.open_until_ms.load(Ordering::Acquire) == 0 {
            b.open();
            return true;
        }
        false
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe {
            self.breaker.probing.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_half_opens_for_one_probe() {
        let b = Breaker::new(3, Duration::from_millis(40));
        for _ in 0..2 {
            assert!(!b.try_acquire().unwrap().failure());
        }
        assert!(b.try_acquire().unwrap().failure());
        assert_eq!(b.state(), State::Open);
        assert!(b.try_acquire().is_none());
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(b.state(), State::HalfOpen);
        let probe = b.try_acquire().unwrap();
        assert!(probe.is_probe());
        assert!(b.try_acquire().is_none(), "only one probe at a time");
        probe.success();
        assert_eq!(b.state(), State::Closed);
        assert!(!b.try_acquire().unwrap().is_probe());
    }

    #[test]
    fn failed_probe_reopens() {
        let b = Breaker::new(1, Duration::from_millis(20));
        assert!(b.try_acquire().unwrap().failure());
        std::thread::sleep(Duration::from_millis(30));
        let probe = b.try_acquire().unwrap();
        assert!(probe.failure());
        assert_eq!(b.state(), State::Open);
    }

    #[test]
    fn a_dropped_probe_frees_the_slot_for_the_next_request() {
        let b = Breaker::new(1, Duration::from_millis(10));
        assert!(b.try_acquire().unwrap().failure());
        std::thread::sleep(Duration::from_millis(20));
        drop(b.try_acquire().unwrap());
        let next = b.try_acquire().expect("a new probe is allowed");
        assert!(next.is_probe());
    }

    #[test]
    fn success_resets_the_failure_count() {
        let b = Breaker::new(2, Duration::from_secs(60));
        assert!(!b.try_acquire().unwrap().failure());
        b.try_acquire().unwrap().success();
        assert!(!b.try_acquire().unwrap().failure());
        assert_eq!(b.state(), State::Closed);
    }
}
