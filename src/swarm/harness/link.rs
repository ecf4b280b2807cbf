//! The harness's links (see the model in the module doc of `harness`): each node has an
//! uplink and a downlink of set capacities in bytes per second, and each connection a one-way
//! latency. The uplink keeps one FIFO queue of encoded frames per connection, as each
//! connection's socket buffer would, and serves the connections round-robin one frame at a
//! time, so a `have` to one peer is not stuck behind a megabyte of blocks for another. A frame
//! leaves the uplink in `len / up` seconds; its bytes reach the receiver `latency` later and
//! pass its downlink, a single FIFO shared by every sender, at `down` bytes per second. The
//! downlink is cut-through: a frame that the sender's uplink sends slower than the receiver's
//! downlink could take arrives as the last byte leaves the sender plus the latency, not after
//! a second serialisation.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// A node's access link, in bytes per second each way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub up: u64,
    pub down: u64,
}

/// Time to push `len` bytes through a link of `rate` bytes/s (a zero rate is taken as 1 B/s,
/// never a division by zero).
pub fn transmit_time(len: usize, rate: u64) -> Duration {
    let nanos = (len as u128 * 1_000_000_000) / u128::from(rate.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// A frame on its way out: the connection it belongs to and its bytes.
#[derive(Debug)]
pub(super) struct Frame {
    pub conn: usize,
    pub bytes: Vec<u8>,
}

/// The frame being transmitted and when it started.
#[derive(Debug)]
pub(super) struct OnAir {
    pub frame: Frame,
    pub started: Instant,
}

/// One node's uplink: per-connection queues served round-robin.
#[derive(Debug)]
pub(super) struct Uplink {
    rate: u64,
    queues: HashMap<usize, VecDeque<Vec<u8>>>,
    /// Connections with something queued, in the order they are served next.
    rotation: VecDeque<usize>,
    pub on_air: Option<OnAir>,
}

impl Uplink {
    pub fn new(rate: u64) -> Uplink {
        Uplink { rate, queues: HashMap::new(), rotation: VecDeque::new(), on_air: None }
    }

    /// Queues a frame; true when the uplink is idle and should start sending now.
    pub fn push(&mut self, frame: Frame) -> bool {
        let queue = self.queues.entry(frame.conn).or_default();
        if queue.is_empty() {
            self.rotation.push_back(frame.conn);
        }
        queue.push_back(frame.bytes);
        self.on_air.is_none()
    }

    /// Starts the next frame, round-robin over the connections; returns when it will have
    /// left. `None` when idle or already sending.
    pub fn start_next(&mut self, now: Instant) -> Option<Instant> {
        if self.on_air.is_some() {
            return None;
        }
        let conn = self.rotation.pop_front()?;
        let queue = self.queues.get_mut(&conn)?;
        let bytes = queue.pop_front()?;
        if queue.is_empty() {
            self.queues.remove(&conn);
        } else {
            self.rotation.push_back(conn);
        }
        let done = now + transmit_time(bytes.len(), self.rate);
        self.on_air = Some(OnAir { frame: Frame { conn, bytes }, started: now });
        Some(done)
    }

    /// Forgets what is queued for a closed connection; returns those frames.
    pub fn drop_conn(&mut self, conn: usize) -> Vec<Vec<u8>> {
        self.rotation.retain(|c| *c != conn);
        self.queues.remove(&conn).map(Vec::from).unwrap_or_default()
    }

    /// Bytes waiting (not counting the frame on the air).
    pub fn queued_bytes(&self) -> usize {
        self.queues.values().flatten().map(Vec::len).sum()
    }
}

/// One node's downlink: a FIFO shared by all senders.
#[derive(Debug)]
pub(super) struct Downlink {
    rate: u64,
    free_at: Option<Instant>,
}

impl Downlink {
    pub fn new(rate: u64) -> Downlink {
        Downlink { rate, free_at: None }
    }

    /// When a frame of `len` bytes whose first byte left the sender at `sent_from` and last
    /// byte at `sent_until` has wholly arrived, across `latency`; reserves the downlink.
    pub fn arrival(&mut self, sent_from: Instant, sent_until: Instant, latency: Duration, len: usize) -> Instant {
        let first_in = sent_from + latency;
        let start = self.free_at.map_or(first_in, |f| f.max(first_in));
        let done = (start + transmit_time(len, self.rate)).max(sent_until + latency);
        self.free_at = Some(done);
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn transmit_time_is_bytes_over_rate() {
        assert_eq!(transmit_time(1000, 1000), Duration::from_secs(1));
        assert_eq!(transmit_time(16_384, 16_384 * 4), ms(250));
        assert_eq!(transmit_time(10, 0), Duration::from_secs(10), "a zero rate is 1 B/s");
    }

    #[test]
    fn the_uplink_serves_connections_round_robin_and_each_in_order() {
        let t0 = super::super::test_epoch();
        let mut up = Uplink::new(1000);
        assert!(up.push(Frame { conn: 1, bytes: vec![1; 100] }));
        up.push(Frame { conn: 1, bytes: vec![2; 100] });
        up.push(Frame { conn: 2, bytes: vec![3; 10] });
        let mut order = Vec::new();
        let mut now = t0;
        while let Some(done) = up.start_next(now) {
            let on_air = up.on_air.take().expect("started");
            order.push((on_air.frame.conn, on_air.frame.bytes[0], done - t0));
            now = done;
        }
        // Connection 2's small frame goes between connection 1's two, not after both.
        assert_eq!(order, vec![(1, 1, ms(100)), (2, 3, ms(110)), (1, 2, ms(210))]);
    }

    #[test]
    fn a_busy_uplink_does_not_start_another_frame_and_closed_connections_are_dropped() {
        let t0 = super::super::test_epoch();
        let mut up = Uplink::new(1000);
        up.push(Frame { conn: 1, bytes: vec![0; 100] });
        assert!(up.start_next(t0).is_some());
        assert!(!up.push(Frame { conn: 2, bytes: vec![0; 50] }), "busy: no new start");
        assert_eq!(up.start_next(t0), None);
        assert_eq!(up.queued_bytes(), 50);
        assert_eq!(up.drop_conn(2).len(), 1);
        up.on_air = None;
        assert_eq!(up.start_next(t0), None, "nothing left after the drop");
    }

    #[test]
    fn the_downlink_is_cut_through_when_faster_and_the_bottleneck_when_slower() {
        let t0 = super::super::test_epoch();
        // Fast downlink: arrival = sender's last byte + latency.
        let mut fast = Downlink::new(1_000_000);
        assert_eq!(fast.arrival(t0, t0 + ms(100), ms(20), 100), t0 + ms(120));
        // Slow downlink: 1000 bytes at 1000 B/s take a second after the first byte lands.
        let mut slow = Downlink::new(1000);
        assert_eq!(slow.arrival(t0, t0 + ms(100), ms(20), 1000), t0 + ms(1020));
        // The next frame queues behind it, even though it left its sender long before.
        assert_eq!(slow.arrival(t0, t0 + ms(10), ms(20), 100), t0 + ms(1120));
    }
}
