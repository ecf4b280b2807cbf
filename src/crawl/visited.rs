//! An aging visited filter: which nodes (BEP 5 contacts) the crawler asked lately. Users of
//! other crawlers saw them revisit the same nodes over and over, and a set that never forgets
//! grows with the DHT; two generations that rotate every half window do neither: a node asked
//! is skipped for between half a window and a whole one, and memory stays at two capped sets.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub struct Visited {
    current: HashSet<SocketAddr>,
    previous: HashSet<SocketAddr>,
    rotated: Instant,
    half_window: Duration,
    /// Entries per generation at most; a full generation rotates early.
    cap: usize,
}

impl Visited {
    pub fn new(window: Duration, cap: usize, now: Instant) -> Visited {
        Visited {
            current: HashSet::new(),
            previous: HashSet::new(),
            rotated: now,
            half_window: window / 2,
            cap: cap.max(1),
        }
    }

    fn age(&mut self, now: Instant) {
        if now.saturating_duration_since(self.rotated) >= self.half_window || self.current.len() >= self.cap {
            self.previous = std::mem::take(&mut self.current);
            self.rotated = now;
        }
    }

    pub fn contains(&self, addr: &SocketAddr) -> bool {
        self.current.contains(addr) || self.previous.contains(addr)
    }

    /// Marks `addr` visited; false when it already was.
    pub fn insert(&mut self, now: Instant, addr: SocketAddr) -> bool {
        self.age(now);
        if self.contains(&addr) {
            return false;
        }
        self.current.insert(addr)
    }

    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::clock::now as t0;

    fn a(i: u32) -> SocketAddr {
        SocketAddr::from((i.to_be_bytes(), 6881))
    }

    #[test]
    fn a_node_is_forgotten_after_the_window_and_memory_stays_at_two_generations() {
        let now = t0();
        let mut v = Visited::new(Duration::from_secs(600), 1000, now);
        assert!(v.insert(now, a(1)));
        assert!(!v.insert(now + Duration::from_secs(299), a(1)));
        // One rotation: still remembered in the previous generation.
        assert!(!v.insert(now + Duration::from_secs(301), a(1)));
        // Two rotations: forgotten, may be visited again.
        assert!(v.insert(now + Duration::from_secs(602), a(1)));
        for i in 0..100_000 {
            v.insert(now + Duration::from_secs(603), a(i + 10));
            assert!(v.len() <= 2000, "{} entries", v.len());
        }
    }
}
