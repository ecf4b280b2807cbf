//! Byte-rate limits (`--upload-limit`, `--download-limit`): a token bucket of bytes, kept in the
//! form of GCRA (the generic cell rate algorithm): instead of a token count and a refill time it
//! keeps one number, the "theoretical arrival time" `tat`, the moment at which everything charged
//! so far is paid for at the rate. The bucket holds `burst - (tat - now)` worth of bytes (full
//! when `tat <= now`), so one `u64` carries all of its state and the process-wide handle,
//! [`RateLimit`], updates it with a single compare-and-swap: peer tasks share a limit with no
//! lock on the data path.
//!
//! Consumers charge what they moved *after* moving it (a read cannot know its length before) and
//! then wait until their own charge is paid, `tat - burst`. Waiting for one's own charge rather
//! than for the bucket as a whole is what makes it fair: consumers resume in the order they
//! charged, like a virtual-clock queue, so a task that happens to be woken first cannot take every
//! byte. Each I/O is at most one [`RateLimit::quantum`], so the overshoot is bounded by a quantum
//! per consumer and the long-run rate is exact.
//!
//! Sans-IO: time is an `Instant` passed in. A rate of 0 means unlimited.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NANOS: u128 = 1_000_000_000;
/// Smallest and largest single I/O under a limit; in between, about 1/32 s of the rate, so that a
/// slow limit is kept smoothly and a fast one without a flood of small system calls.
const MIN_QUANTUM: u64 = 1024;
const MAX_QUANTUM: u64 = 64 * 1024;
/// The smallest burst: a few blocks, so one 16 KiB block message can always pass at once.
const MIN_BURST: u64 = 64 * 1024;

/// The arithmetic of one bucket, shared by [`ByteBucket`] and [`RateLimit`]. Times are
/// nanoseconds since the bucket's origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Params {
    /// Bytes per second; 0 is unlimited.
    rate: u64,
    /// Most bytes that may pass at once after an idle spell, in nanoseconds of the rate.
    burst_ns: u64,
}

impl Params {
    fn new(rate: u64, burst: u64) -> Params {
        Params { rate, burst_ns: cost_ns(rate, burst) }
    }

    /// The new `tat` once `bytes` are charged at `now`: an idle bucket (`tat` in the past) starts
    /// from `now`, which caps what idling saves up at the burst.
    fn charge(self, tat: u64, now: u64, bytes: u64) -> u64 {
        tat.max(now).saturating_add(cost_ns(self.rate, bytes))
    }

    /// When a consumer whose last charge left the bucket at `tat` may go on: `None` for at once.
    fn resume(self, tat: u64, now: u64) -> Option<u64> {
        let at = tat.saturating_sub(self.burst_ns);
        (at > now).then_some(at)
    }

    /// Bytes that may pass at `now` without waiting.
    fn available(self, tat: u64, now: u64) -> u64 {
        let ns = (now.saturating_add(self.burst_ns)).saturating_sub(tat.max(now));
        (u128::from(ns) * u128::from(self.rate) / NANOS) as u64
    }
}

/// Nanoseconds that `bytes` take at `rate` bytes a second.
fn cost_ns(rate: u64, bytes: u64) -> u64 {
    if rate == 0 {
        return 0;
    }
    (u128::from(bytes) * NANOS / u128::from(rate)).min(u128::from(u64::MAX)) as u64
}

fn nanos_since(origin: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(origin).as_nanos().min(u128::from(u64::MAX)) as u64
}

/// The burst a limit of `rate` gets by default: a quarter second of it, at least [`MIN_BURST`].
pub fn default_burst(rate: u64) -> u64 {
    (rate / 4).max(MIN_BURST)
}

/// A bucket owned by one caller (`&mut self`): the sans-IO form of [`RateLimit`].
#[derive(Debug, Clone)]
pub struct ByteBucket {
    params: Params,
    origin: Instant,
    tat: u64,
}

impl ByteBucket {
    /// `rate` bytes a second (0: unlimited), at most `burst` bytes at once; starts full.
    pub fn new(rate: u64, burst: u64, now: Instant) -> ByteBucket {
        ByteBucket { params: Params::new(rate, burst), origin: now, tat: 0 }
    }

    /// Charges `bytes` that just passed; returns when the caller may move more (`None`: now).
    pub fn charge(&mut self, now: Instant, bytes: u64) -> Option<Instant> {
        let t = nanos_since(self.origin, now);
        self.tat = self.params.charge(self.tat, t, bytes);
        self.params.resume(self.tat, t).map(|ns| self.origin + Duration::from_nanos(ns))
    }

    /// Bytes that may pass at `now` without waiting (`u64::MAX` when unlimited).
    pub fn available(&self, now: Instant) -> u64 {
        if self.params.rate == 0 {
            return u64::MAX;
        }
        self.params.available(self.tat, nanos_since(self.origin, now))
    }
}

/// The bucket behind a shared [`RateLimit`]: the parameters and `tat`, alone in an atomic.
#[derive(Debug)]
struct Shared {
    params: Params,
    origin: Instant,
    quantum: u64,
    tat: AtomicU64,
}

/// The limits of a session: one handle for each direction, shared by every peer of every
/// torrent over both transports (`--upload-limit`, `--download-limit`).
#[derive(Debug, Clone, Default)]
pub struct RateLimits {
    pub upload: RateLimit,
    pub download: RateLimit,
}

/// A process-wide byte-rate limit, cloned into every peer task (over TCP and uTP, of every
/// torrent) that must share it. The unlimited handle is `None` inside: one branch, no atomic.
#[derive(Debug, Clone, Default)]
pub struct RateLimit(Option<Arc<Shared>>);

impl RateLimit {
    /// No limit.
    pub fn unlimited() -> RateLimit {
        RateLimit(None)
    }

    /// `rate` bytes a second (0: unlimited) with the default burst, starting full at `now`.
    pub fn new(rate: u64, now: Instant) -> RateLimit {
        RateLimit::with_burst(rate, default_burst(rate), now)
    }

    pub fn with_burst(rate: u64, burst: u64, now: Instant) -> RateLimit {
        if rate == 0 {
            return RateLimit(None);
        }
        let quantum = (rate / 32).clamp(MIN_QUANTUM, MAX_QUANTUM);
        let params = Params::new(rate, burst);
        RateLimit(Some(Arc::new(Shared { params, origin: now, quantum, tat: AtomicU64::new(0) })))
    }

    pub fn is_limited(&self) -> bool {
        self.0.is_some()
    }

    /// Bytes a second, `None` when unlimited.
    pub fn rate(&self) -> Option<u64> {
        self.0.as_ref().map(|s| s.params.rate)
    }

    /// The most one I/O under this limit should move (`None`: as much as it likes).
    pub fn quantum(&self) -> Option<u64> {
        self.0.as_ref().map(|s| s.quantum)
    }

    /// Charges `bytes` that just passed; returns when this consumer may move more (`None`: now).
    pub fn charge(&self, now: Instant, bytes: u64) -> Option<Instant> {
        let shared = self.0.as_ref()?;
        let t = nanos_since(shared.origin, now);
        let update = |tat| Some(shared.params.charge(tat, t, bytes));
        // The closure always returns `Some`, so this cannot fail; either arm holds the old value.
        let old = match shared.tat.fetch_update(Ordering::AcqRel, Ordering::Acquire, update) {
            Ok(old) | Err(old) => old,
        };
        let new = shared.params.charge(old, t, bytes);
        shared.params.resume(new, t).map(|ns| shared.origin + Duration::from_nanos(ns))
    }
}

#[cfg(test)]
mod tests;
