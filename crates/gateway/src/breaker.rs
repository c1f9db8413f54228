//! A circuit breaker per provider: after `failure_threshold` consecutive failures it opens and
//! the provider is skipped for `cooldown`; then one probe request is let through (half-open):
//! success closes the circuit, failure opens it again. Lock-free, so it costs nothing on the
//! hot path.

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

/// Permission to send one request, returned by [`Breaker::try_acquire`].
#[derive(Debug, PartialEq, Eq)]
pub enum Permit {
    /// Normal traffic.
    Normal,
    /// The single half-open probe; its outcome decides the state.
    Probe,
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
    pub fn try_acquire(&self) -> Option<Permit> {
        match self.state() {
            State::Closed => Some(Permit::Normal),
            State::Open => None,
            State::HalfOpen => self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .ok()
                .map(|_| Permit::Probe),
        }
    }

    /// Records a success: closes the circuit.
    pub fn on_success(&self, permit: &Permit) {
        self.failures.store(0, Ordering::Release);
        self.open_until_ms.store(0, Ordering::Release);
        if *permit == Permit::Probe {
            self.probing.store(false, Ordering::Release);
        }
    }

    /// Records a failure; returns true if this failure opened the circuit.
    pub fn on_failure(&self, permit: &Permit) -> bool {
        let open = |b: &Self| {
            b.open_until_ms.store(
                b.now_ms() + b.cooldown.as_millis() as u64,
                Ordering::Release,
            )
        };
        if *permit == Permit::Probe {
            open(self);
            self.probing.store(false, Ordering::Release);
            return true;
        }
        let n = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= self.threshold && self.open_until_ms.load(Ordering::Acquire) == 0 {
            open(self);
            return true;
        }
        false
    }

    /// Releases a probe whose outcome says nothing about the provider's health (e.g. the client
    /// went away), so the next request may probe.
    pub fn release(&self, permit: &Permit) {
        if *permit == Permit::Probe {
            self.probing.store(false, Ordering::Release);
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
            let p = b.try_acquire().unwrap();
            assert!(!b.on_failure(&p));
        }
        let p = b.try_acquire().unwrap();
        assert!(b.on_failure(&p));
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.try_acquire(), None);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(b.state(), State::HalfOpen);
        let probe = b.try_acquire().unwrap();
        assert_eq!(probe, Permit::Probe);
        assert_eq!(b.try_acquire(), None, "only one probe at a time");
        b.on_success(&probe);
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.try_acquire(), Some(Permit::Normal));
    }

    #[test]
    fn failed_probe_reopens() {
        let b = Breaker::new(1, Duration::from_millis(20));
        b.on_failure(&b.try_acquire().unwrap());
        std::thread::sleep(Duration::from_millis(30));
        let probe = b.try_acquire().unwrap();
        assert!(b.on_failure(&probe));
        assert_eq!(b.state(), State::Open);
    }

    #[test]
    fn success_resets_the_failure_count() {
        let b = Breaker::new(2, Duration::from_secs(60));
        b.on_failure(&Permit::Normal);
        b.on_success(&Permit::Normal);
        assert!(!b.on_failure(&Permit::Normal));
        assert_eq!(b.state(), State::Closed);
    }
}
