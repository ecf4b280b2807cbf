//! LEDBAT congestion control (RFC 6817), as uTP (BEP 29) uses it: a pure controller with no
//! clock and no socket. The connection feeds it one-way delay samples (the peer's
//! `timestamp_difference` of each ack), acked byte counts and loss signals; it answers with the
//! congestion window in bytes.
//!
//! The base delay is the minimum one-way delay seen over a sliding window of a few minutes,
//! kept as one minimum per minute so that old minima age out and a drifting clock offset
//! between the two hosts is followed. Queuing delay is the current delay (the minimum of the
//! last few samples, the RFC's noise filter) minus the base; the window moves in proportion to
//! how far that is from the target. Timestamps are wrapping 32-bit microseconds, so every
//! comparison is done on wrapping differences.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Samples of the current delay the RFC's filter takes the minimum of.
const CURRENT_FILTER: usize = 4;
/// Length of one slot of the base-delay history.
const BASE_SLOT: Duration = Duration::from_secs(60);
/// The window only grows while it limits the sender: flight + this many packets >= window.
const ALLOWED_INCREASE_PACKETS: usize = 2;

#[derive(Debug, Clone)]
pub struct LedbatConfig {
    /// Queuing delay LEDBAT aims at (RFC 6817: 100 ms at most).
    pub target: Duration,
    /// Window change per RTT at zero delay, in packets (RFC 6817: at most 1).
    pub gain: f64,
    /// Bytes; never below one packet. Also the MSS of the window update.
    pub min_window: usize,
    /// Bytes; a cap (the peer's advertised window also limits the sender).
    pub max_window: usize,
    /// The base delay is the minimum over this long, kept as per-minute minima.
    pub base_history: Duration,
}

impl Default for LedbatConfig {
    fn default() -> Self {
        LedbatConfig {
            target: Duration::from_millis(100),
            gain: 1.0,
            min_window: 1400,
            max_window: 4 << 20,
            base_history: Duration::from_secs(5 * 60),
        }
    }
}

/// `a` is before `b` on the wrapping 32-bit microsecond circle.
fn wrap_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

#[derive(Debug, Clone)]
pub struct Ledbat {
    config: LedbatConfig,
    /// Bytes, fractional so that small per-ack changes accumulate.
    cwnd: f64,
    /// Exponential growth until the first sign of queuing or loss. Not in RFC 6817, which
    /// starts linear; libtorrent does the same so a connection fills a fast path in a few RTTs
    /// instead of thousands.
    slow_start: bool,
    /// Slow start ends when the window reaches this (set on a timeout).
    ssthresh: f64,
    /// (start of the minute, minimum delay seen in it), oldest first.
    base: VecDeque<(Instant, u32)>,
    current: [u32; CURRENT_FILTER],
    current_len: usize,
    current_next: usize,
    queuing_delay_us: u32,
    /// Bytes still to be acked before another loss may halve the window: the data that was in
    /// flight when the window last halved belongs to the same loss event.
    loss_guard: usize,
}

impl Ledbat {
    pub fn new(config: LedbatConfig) -> Ledbat {
        let min = config.min_window.max(1);
        let config = LedbatConfig { min_window: min, max_window: config.max_window.max(min), ..config };
        // Two packets to begin with (RFC 6817 INIT_CWND), so one loss does not stall.
        let cwnd = (2 * min).min(config.max_window) as f64;
        Ledbat {
            config,
            cwnd,
            slow_start: true,
            ssthresh: f64::INFINITY,
            base: VecDeque::new(),
            current: [0; CURRENT_FILTER],
            current_len: 0,
            current_next: 0,
            queuing_delay_us: 0,
            loss_guard: 0,
        }
    }

    pub fn config(&self) -> &LedbatConfig {
        &self.config
    }

    /// Congestion window in bytes, between `min_window` and `max_window`.
    pub fn window(&self) -> usize {
        self.cwnd as usize
    }

    /// Switches the exponential start on or off (tests of the linear law turn it off).
    pub fn set_slow_start(&mut self, on: bool) {
        self.slow_start = on;
    }

    pub fn in_slow_start(&self) -> bool {
        self.slow_start
    }

    /// The last computed queuing delay (current filtered delay minus base delay).
    pub fn queuing_delay(&self) -> Duration {
        Duration::from_micros(self.queuing_delay_us as u64)
    }

    /// The base delay (wrapping microseconds, including the hosts' clock offset), once known.
    pub fn base_delay_us(&self) -> Option<u32> {
        self.base.iter().map(|&(_, d)| d).reduce(|a, b| if wrap_lt(b, a) { b } else { a })
    }

    /// An ack arrived: `bytes_acked` newly acknowledged, `one_way_delay_us` is the peer's
    /// measurement of how long our packet took (including the clocks' offset), `flight_size`
    /// the bytes that were in flight when the ack arrived (counting those it acknowledges).
    pub fn on_ack(&mut self, now: Instant, bytes_acked: usize, one_way_delay_us: u32, flight_size: usize) {
        self.add_sample(now, one_way_delay_us);
        let current = self.current[..self.current_len].iter().copied().reduce(|a, b| if wrap_lt(b, a) { b } else { a });
        let (Some(current), Some(base)) = (current, self.base_delay_us()) else { return };
        // The base is the minimum of all samples, the filter only of recent ones, so this is
        // never negative; saturate anyway against a history that just rolled over.
        let queuing = current.wrapping_sub(base);
        self.queuing_delay_us = if (queuing as i32) < 0 { 0 } else { queuing };
        self.loss_guard = self.loss_guard.saturating_sub(bytes_acked);
        if bytes_acked == 0 {
            return;
        }

        let target = (self.config.target.as_micros() as f64).max(1.0);
        let queuing = self.queuing_delay_us as f64;
        if self.slow_start && queuing >= target / 2.0 {
            // Queues are starting to build: from here on the linear law holds the delay.
            self.slow_start = false;
        }
        // Growing a window the sender does not fill would only let it burst later.
        let mss = self.config.min_window as f64;
        let limited = flight_size.saturating_add(ALLOWED_INCREASE_PACKETS.saturating_mul(self.config.min_window))
            >= self.cwnd as usize;
        let off_target = (target - queuing) / target;
        let mut delta = self.config.gain * off_target * bytes_acked as f64 * mss / self.cwnd;
        if self.slow_start && limited {
            delta = delta.max(bytes_acked as f64);
            if self.cwnd + delta >= self.ssthresh {
                self.slow_start = false;
                delta = (self.ssthresh - self.cwnd).max(0.0);
            }
        }
        if delta > 0.0 && !limited {
            delta = 0.0;
        }
        // Never shrink faster than halving per round trip (about a window of acked bytes).
        delta = delta.max(-(bytes_acked as f64) / 2.0);
        self.set_cwnd(self.cwnd + delta);
    }

    /// A packet was lost (fast retransmit): halve the window, once per window of data.
    /// Returns whether the window was cut.
    pub fn on_loss(&mut self) -> bool {
        self.slow_start = false;
        if self.loss_guard > 0 {
            return false;
        }
        self.loss_guard = self.window();
        self.set_cwnd(self.cwnd / 2.0);
        true
    }

    /// The retransmission timer fired: back to one packet, then slow start up to half of what
    /// the window was.
    pub fn on_timeout(&mut self) {
        self.ssthresh = (self.cwnd / 2.0).max(self.config.min_window as f64 * 2.0);
        self.slow_start = true;
        self.loss_guard = 0;
        self.set_cwnd(self.config.min_window as f64);
    }

    fn set_cwnd(&mut self, cwnd: f64) {
        self.cwnd = cwnd.clamp(self.config.min_window as f64, self.config.max_window as f64);
    }

    fn add_sample(&mut self, now: Instant, delay: u32) {
        self.current[self.current_next] = delay;
        self.current_next = (self.current_next + 1) % CURRENT_FILTER;
        self.current_len = (self.current_len + 1).min(CURRENT_FILTER);

        match self.base.back_mut() {
            Some((start, min)) if now.saturating_duration_since(*start) < BASE_SLOT => {
                if wrap_lt(delay, *min) {
                    *min = delay;
                }
            }
            _ => self.base.push_back((now, delay)),
        }
        while let Some(&(start, _)) = self.base.front() {
            if now.saturating_duration_since(start) < self.config.base_history || self.base.len() == 1 {
                break;
            }
            self.base.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;

    use crate::clock::now as t0;

    fn linear(max_window: usize) -> Ledbat {
        let config = LedbatConfig { min_window: MSS, max_window, ..LedbatConfig::default() };
        let mut l = Ledbat::new(config);
        l.set_slow_start(false);
        l
    }

    /// One window's worth of acks, one packet each, all with the given delay.
    fn round(l: &mut Ledbat, now: Instant, delay_us: u32) {
        let packets = l.window() / MSS;
        for _ in 0..packets {
            let flight = l.window();
            l.on_ack(now, MSS, delay_us, flight);
        }
    }

    #[test]
    fn grows_when_delay_is_below_target() {
        let now = t0();
        let mut l = linear(1 << 20);
        assert_eq!(l.window(), 2 * MSS);
        // Base 10 ms and no queuing: off_target = 1, so about one MSS per window of acks.
        round(&mut l, now, 10_000);
        assert!(l.window() > 2 * MSS + MSS / 2, "{}", l.window());
        assert!(l.window() <= 3 * MSS + 10, "{}", l.window());
        // 50 ms of queuing: half the growth.
        let mut m = linear(1 << 20);
        m.on_ack(now, 0, 10_000, 0);
        m.set_cwnd(10.0 * MSS as f64);
        for _ in 0..CURRENT_FILTER {
            m.on_ack(now, 0, 60_000, 0);
        }
        assert_eq!(m.queuing_delay(), Duration::from_millis(50));
        let before = m.window();
        m.on_ack(now, 10 * MSS, 60_000, before);
        assert_eq!(m.window(), before + MSS / 2);
    }

    #[test]
    fn does_not_grow_when_the_sender_does_not_fill_the_window() {
        let now = t0();
        let mut l = linear(1 << 20);
        l.set_cwnd(20.0 * MSS as f64);
        for _ in 0..100 {
            l.on_ack(now, MSS, 10_000, MSS);
        }
        assert_eq!(l.window(), 20 * MSS);
    }

    #[test]
    fn shrinks_when_delay_is_above_target_and_stops_at_one_packet() {
        let now = t0();
        let mut l = linear(1 << 20);
        l.on_ack(now, 0, 10_000, 0);
        l.set_cwnd(50.0 * MSS as f64);
        // 200 ms of queuing: off_target = -1, one MSS less per window.
        for _ in 0..CURRENT_FILTER {
            l.on_ack(now, 0, 210_000, 0);
        }
        let before = l.window();
        round(&mut l, now, 210_000);
        assert!(l.window() < before - MSS / 2, "{} -> {}", before, l.window());
        for _ in 0..200 {
            round(&mut l, now, 210_000);
        }
        assert_eq!(l.window(), MSS);
    }

    #[test]
    fn noise_is_filtered_by_the_minimum_of_recent_samples() {
        let now = t0();
        let mut l = linear(1 << 20);
        l.on_ack(now, 0, 10_000, 0);
        l.on_ack(now, 0, 10_000, 0);
        // One late packet among timely ones does not count as queuing.
        l.on_ack(now, 0, 900_000, 0);
        assert_eq!(l.queuing_delay(), Duration::ZERO);
    }

    #[test]
    fn base_delay_follows_drift_once_the_history_has_passed() {
        let now = t0();
        let config =
            LedbatConfig { min_window: MSS, base_history: Duration::from_secs(180), ..LedbatConfig::default() };
        let mut l = Ledbat::new(config);
        l.on_ack(now, 0, 10_000, 0);
        // The clocks drift: the same path now reads 40 ms more.
        let mut t = now + Duration::from_secs(30);
        for _ in 0..CURRENT_FILTER {
            l.on_ack(t, 0, 50_000, 0);
        }
        assert_eq!(l.queuing_delay(), Duration::from_millis(40));
        while t < now + Duration::from_secs(300) {
            t += Duration::from_secs(10);
            l.on_ack(t, 0, 50_000, 0);
        }
        assert_eq!(l.base_delay_us(), Some(50_000));
        assert_eq!(l.queuing_delay(), Duration::ZERO);
    }

    #[test]
    fn base_delay_survives_the_timestamp_wrapping() {
        let now = t0();
        let mut l = linear(1 << 20);
        l.on_ack(now, 0, u32::MAX - 5_000, 0);
        for _ in 0..CURRENT_FILTER {
            l.on_ack(now, 0, 15_000, 0);
        }
        assert_eq!(l.base_delay_us(), Some(u32::MAX - 5_000));
        assert_eq!(l.queuing_delay(), Duration::from_micros(20_001));
    }

    #[test]
    fn a_loss_halves_once_per_window() {
        let now = t0();
        let mut l = linear(1 << 20);
        l.set_cwnd(40.0 * MSS as f64);
        assert!(l.on_loss());
        assert_eq!(l.window(), 20 * MSS);
        // More losses from the same window of data: no further cut.
        assert!(!l.on_loss());
        assert!(!l.on_loss());
        assert_eq!(l.window(), 20 * MSS);
        // Once the data in flight at the cut has been acked, a new loss is a new event.
        for _ in 0..20 {
            l.on_ack(now, 2 * MSS, 10_000, 20 * MSS);
        }
        assert!(l.on_loss());
        assert!(l.window() <= 12 * MSS, "{}", l.window());
    }

    #[test]
    fn a_timeout_goes_back_to_one_packet_then_slow_starts() {
        let now = t0();
        let mut l = linear(1 << 20);
        l.set_cwnd(40.0 * MSS as f64);
        l.on_timeout();
        assert_eq!(l.window(), MSS);
        assert!(l.in_slow_start());
        l.on_ack(now, MSS, 10_000, MSS);
        assert_eq!(l.window(), 2 * MSS);
        for _ in 0..100 {
            if !l.in_slow_start() {
                break;
            }
            let w = l.window();
            l.on_ack(now, w, 10_000, w);
        }
        // Slow start stopped at half the old window; linear growth after.
        assert!(!l.in_slow_start());
        assert_eq!(l.window(), 20 * MSS);
    }

    #[test]
    fn slow_start_ends_when_queuing_builds() {
        let now = t0();
        let config = LedbatConfig { min_window: MSS, ..LedbatConfig::default() };
        let mut l = Ledbat::new(config);
        l.on_ack(now, MSS, 10_000, 2 * MSS);
        assert_eq!(l.window(), 3 * MSS);
        for _ in 0..CURRENT_FILTER {
            l.on_ack(now, MSS, 70_000, l.window());
        }
        assert!(!l.in_slow_start());
    }

    #[test]
    fn window_is_capped() {
        let now = t0();
        let mut l = linear(8 * MSS);
        for _ in 0..1000 {
            let w = l.window();
            l.on_ack(now, w, 10_000, w);
        }
        assert_eq!(l.window(), 8 * MSS);
    }
}
