//! The global rate limits as one peer task applies them: before each read or write it asks its
//! [`Gate`] whether it may go and how much to move, and afterwards charges what moved. A task
//! held back simply does not read, so the kernel's TCP window or our uTP receive window fills
//! and the sender slows down; nothing is buffered on our side beyond one read. On the sending
//! side the bytes wait in the peer's own write queue, which is already capped.
//!
//! With no limit every call is one branch on an `Option`: `ready` is always true, `len` is what
//! was asked for, and `moved` returns at once.

use std::time::Instant;

use crate::net::rate_limit::{RateLimit, RateLimits};

/// One direction of one peer connection under a limit.
#[derive(Debug)]
pub struct Gate {
    limit: RateLimit,
    /// Until when this task waits for its last charge to be paid.
    resume: Option<Instant>,
}

impl Gate {
    pub fn new(limit: &RateLimit) -> Gate {
        Gate { limit: limit.clone(), resume: None }
    }

    /// Whether the next I/O may start at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        self.resume.is_none_or(|r| now >= r)
    }

    /// How much of `want` bytes the next I/O may move.
    pub fn len(&self, want: usize) -> usize {
        match self.limit.quantum() {
            None => want,
            Some(q) => want.min(usize::try_from(q).unwrap_or(usize::MAX)),
        }
    }

    /// `n` bytes moved just now; the clock is read only under a limit.
    pub fn moved(&mut self, n: usize, now: impl FnOnce() -> Instant) {
        if self.limit.is_limited() {
            self.resume = self.limit.charge(now(), n as u64);
        }
    }

    /// When a gate that is not ready at `now` opens.
    fn waiting(&self, now: Instant) -> Option<Instant> {
        self.resume.filter(|r| now < *r)
    }
}

/// Both directions of one peer connection.
#[derive(Debug)]
pub struct Throttle {
    pub up: Gate,
    pub down: Gate,
}

impl Throttle {
    pub fn new(limits: &RateLimits) -> Throttle {
        Throttle { up: Gate::new(&limits.upload), down: Gate::new(&limits.download) }
    }

    /// The earliest moment a closed gate opens: the peer task sleeps until then at most.
    pub fn wake(&self, now: Instant) -> Option<Instant> {
        match (self.up.waiting(now), self.down.waiting(now)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::clock::now as t0;

    #[test]
    fn without_limits_every_gate_is_open_and_takes_everything() {
        let t = t0();
        let mut th = Throttle::new(&RateLimits::default());
        for _ in 0..100 {
            th.down.moved(1 << 30, || unreachable!("no clock without a limit"));
            th.up.moved(1 << 30, || unreachable!("no clock without a limit"));
        }
        assert!(th.down.ready(t) && th.up.ready(t));
        assert_eq!(th.down.len(65_536), 65_536);
        assert_eq!(th.wake(t), None);
    }

    #[test]
    fn a_limited_direction_closes_after_its_burst_and_opens_when_paid() {
        let t = t0();
        let limits = RateLimits { upload: RateLimit::unlimited(), download: RateLimit::with_burst(100_000, 50_000, t) };
        let mut th = Throttle::new(&limits);
        let q = th.down.len(1 << 20);
        assert!(q < 1 << 20, "reads are cut to the quantum");
        let mut moved = 0;
        while th.down.ready(t) {
            th.down.moved(q, || t);
            moved += q;
            assert!(moved <= 50_000 + q, "the gate stays open past the burst");
        }
        assert!(th.up.ready(t), "the other direction is not limited");
        let wake = th.wake(t).expect("a closed gate has a time to open");
        // What was moved beyond the burst, at 100 kB/s.
        let owed = Duration::from_secs_f64((moved - 50_000) as f64 / 100_000.0);
        assert!(wake - t >= owed.saturating_sub(Duration::from_millis(1)), "{:?} < {owed:?}", wake - t);
        assert!(th.down.ready(wake));
    }
}
