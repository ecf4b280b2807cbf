//! One direction of a simulated link, in virtual time: a transmitter that serialises packets at
//! a fixed rate out of a drop-tail FIFO buffer, a fixed propagation delay, and optional random
//! faults (loss, reordering, duplication) drawn from a seeded RNG, so every run is the same.
//!
//! The FIFO is kept analytically: the transmitter is busy until `busy_until`, so a packet
//! accepted now leaves the wire at `max(now, busy_until) + size / rate` and the queue holds
//! `(busy_until - now) * rate` bytes. That is exactly what a packet-by-packet queue would do,
//! without an event per dequeue.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Bits per second the transmitter serialises; `None` = infinitely fast (no queue).
    pub rate_bps: Option<u64>,
    /// Propagation delay added after serialisation.
    pub delay: Duration,
    /// Drop-tail limit on the bytes waiting (including the one being serialised).
    pub buffer_bytes: usize,
    /// Probability that a packet is lost on the wire (after it used the transmitter).
    pub loss: f64,
    /// Probability that a packet is held back by up to `reorder_delay`, so later ones pass it.
    pub reorder: f64,
    pub reorder_delay: Duration,
    /// Probability that a packet arrives twice (the copy up to `reorder_delay` later).
    pub duplicate: f64,
}

impl LinkConfig {
    /// A clean link of `rate_bps` and one-way `delay` whose buffer holds `buffer` of traffic.
    pub fn bottleneck(rate_bps: u64, delay: Duration, buffer: Duration) -> LinkConfig {
        let buffer_bytes = (rate_bps as f64 / 8.0 * buffer.as_secs_f64()) as usize;
        LinkConfig {
            rate_bps: Some(rate_bps),
            delay,
            buffer_bytes,
            loss: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
            duplicate: 0.0,
        }
    }

    /// The same link with random loss, reordering and duplication.
    pub fn faulty(mut self, loss: f64, reorder: f64, reorder_delay: Duration, duplicate: f64) -> LinkConfig {
        self.loss = loss;
        self.reorder = reorder;
        self.reorder_delay = reorder_delay;
        self.duplicate = duplicate;
        self
    }
}

#[derive(Debug, Clone, Default)]
pub struct LinkStats {
    pub offered: u64,
    /// Packets refused because the buffer was full.
    pub tail_drops: u64,
    /// Packets lost on the wire by the random loss.
    pub random_drops: u64,
    pub reordered: u64,
    pub duplicated: u64,
    /// Wire bytes the buffer accepted.
    pub bytes_accepted: u64,
}

#[derive(Debug)]
pub struct Link {
    config: LinkConfig,
    rng: StdRng,
    busy_until: Instant,
    stats: LinkStats,
}

impl Link {
    pub fn new(config: LinkConfig, seed: u64, epoch: Instant) -> Link {
        Link { config, rng: StdRng::seed_from_u64(seed), busy_until: epoch, stats: LinkStats::default() }
    }

    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// Changes the propagation delay from now on (a route change), for packets sent later.
    pub fn set_delay(&mut self, delay: Duration) {
        self.config.delay = delay;
    }

    fn serialisation(&self, bytes: u64) -> Duration {
        match self.config.rate_bps {
            Some(rate) => Duration::from_nanos((bytes as u128 * 8 * 1_000_000_000 / rate as u128) as u64),
            None => Duration::ZERO,
        }
    }

    /// The time a packet accepted now would wait before its own serialisation starts: the
    /// bottleneck's queuing delay, bytes queued / rate.
    pub fn backlog(&self, now: Instant) -> Duration {
        self.busy_until.saturating_duration_since(now)
    }

    /// Bytes in the buffer now, the partly sent packet included.
    pub fn queued_bytes(&self, now: Instant) -> u64 {
        match self.config.rate_bps {
            Some(rate) => (self.backlog(now).as_nanos() * rate as u128 / 8 / 1_000_000_000) as u64,
            None => 0,
        }
    }

    /// Wire bytes that have left the transmitter by `now` (for utilisation over an interval).
    pub fn bytes_serialised(&self, now: Instant) -> u64 {
        self.stats.bytes_accepted - self.queued_bytes(now)
    }

    /// Offers a packet of `size` wire bytes at `now`; returns when its copies (none, one, or
    /// two when duplicated) arrive at the far end.
    pub fn send(&mut self, now: Instant, size: usize) -> [Option<Instant>; 2] {
        self.stats.offered += 1;
        if self.queued_bytes(now) + size as u64 > self.config.buffer_bytes as u64 {
            self.stats.tail_drops += 1;
            return [None, None];
        }
        self.stats.bytes_accepted += size as u64;
        self.busy_until = self.busy_until.max(now) + self.serialisation(size as u64);
        if self.config.loss > 0.0 && self.rng.random_bool(self.config.loss) {
            self.stats.random_drops += 1;
            return [None, None];
        }
        let mut arrival = self.busy_until + self.config.delay;
        if self.config.reorder > 0.0 && self.rng.random_bool(self.config.reorder) {
            self.stats.reordered += 1;
            arrival += self.jitter();
        }
        let copy = if self.config.duplicate > 0.0 && self.rng.random_bool(self.config.duplicate) {
            self.stats.duplicated += 1;
            Some(arrival + self.jitter())
        } else {
            None
        };
        [Some(arrival), copy]
    }

    fn jitter(&mut self) -> Duration {
        let max = self.config.reorder_delay.as_nanos() as u64;
        Duration::from_nanos(if max == 0 { 0 } else { self.rng.random_range(0..=max) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_queues_and_drops_at_the_tail() {
        let t0 = crate::epoch();
        // 8 Mbit/s = 1 byte per microsecond; a buffer of 3,000 bytes.
        let cfg = LinkConfig {
            buffer_bytes: 3000,
            ..LinkConfig::bottleneck(8_000_000, Duration::from_millis(10), Duration::ZERO)
        };
        let mut link = Link::new(cfg, 1, t0);
        let us = Duration::from_micros;
        assert_eq!(link.send(t0, 1000)[0], Some(t0 + us(1000) + Duration::from_millis(10)));
        assert_eq!(link.send(t0, 1000)[0], Some(t0 + us(2000) + Duration::from_millis(10)));
        assert_eq!(link.queued_bytes(t0), 2000);
        assert_eq!(link.backlog(t0), us(2000));
        assert_eq!(link.send(t0, 1000)[0], Some(t0 + us(3000) + Duration::from_millis(10)));
        assert_eq!(link.send(t0, 1), [None, None], "a full buffer drops at the tail");
        assert_eq!(link.stats().tail_drops, 1);
        assert_eq!(link.queued_bytes(t0 + us(1500)), 1500);
        assert_eq!(link.bytes_serialised(t0 + us(1500)), 1500);
        assert_eq!(link.backlog(t0 + us(5000)), Duration::ZERO);
    }

    #[test]
    fn faults_follow_their_probabilities_and_the_seed() {
        let t0 = crate::epoch();
        let cfg = LinkConfig::bottleneck(1_000_000_000, Duration::from_millis(5), Duration::from_secs(1)).faulty(
            0.1,
            0.1,
            Duration::from_millis(3),
            0.05,
        );
        let run = |seed| {
            let mut link = Link::new(cfg.clone(), seed, t0);
            let arrivals: Vec<_> =
                (0..10_000u64).map(|i| link.send(t0 + Duration::from_micros(i * 100), 100)).collect();
            (arrivals, link.stats().clone())
        };
        let (a, stats) = run(3);
        assert_eq!(a, run(3).0, "same seed, same faults");
        assert!((800..1200).contains(&stats.random_drops), "{stats:?}");
        assert!((700..1100).contains(&stats.reordered), "{stats:?}");
        assert!((300..600).contains(&stats.duplicated), "{stats:?}");
        let out_of_order = a.windows(2).filter(|w| matches!((w[0][0], w[1][0]), (Some(x), Some(y)) if y < x)).count();
        assert!(out_of_order > 100, "reordering makes later packets overtake: {out_of_order}");
    }
}
