//! The harness's virtual clock: one queue of future events ordered by (time, sequence). Time
//! is an `Instant` origin plus offsets that only ever move forward when an event is taken, so
//! the simulation jumps from one thing happening to the next instead of sleeping. The
//! sequence number makes events due at the same instant come out in the order they were
//! queued, which is what keeps a run reproducible and messages between two nodes in order.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

struct Entry<E> {
    at: Instant,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    /// Reversed, so that `BinaryHeap` (a max-heap) hands out the earliest entry first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

pub(super) struct Clock<E> {
    epoch: Instant,
    now: Instant,
    seq: u64,
    queue: BinaryHeap<Entry<E>>,
}

impl<E> Clock<E> {
    pub fn new(epoch: Instant) -> Clock<E> {
        Clock { epoch, now: epoch, seq: 0, queue: BinaryHeap::new() }
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the start of the run.
    pub fn elapsed(&self) -> Duration {
        self.now - self.epoch
    }

    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Queues `event` for `at`; a time in the past means "now" (time never runs backwards).
    pub fn schedule(&mut self, at: Instant, event: E) {
        self.seq += 1;
        self.queue.push(Entry { at: at.max(self.now), seq: self.seq, event });
    }

    /// Takes the next event due no later than `limit`, moving the clock to its time.
    pub fn next_before(&mut self, limit: Instant) -> Option<E> {
        if self.queue.peek()?.at > limit {
            return None;
        }
        let entry = self.queue.pop()?;
        self.now = self.now.max(entry.at);
        Some(entry.event)
    }

    /// Moves the clock to `t` when nothing is left to do before it.
    pub fn advance_to(&mut self, t: Instant) {
        self.now = self.now.max(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_by_time_then_in_the_order_they_were_queued() {
        let t0 = super::super::test_epoch();
        let mut c = Clock::new(t0);
        c.schedule(t0 + Duration::from_millis(5), "late");
        c.schedule(t0 + Duration::from_millis(1), "first");
        c.schedule(t0 + Duration::from_millis(1), "second");
        let far = t0 + Duration::from_secs(1);
        assert_eq!(c.next_before(far), Some("first"));
        assert_eq!(c.next_before(far), Some("second"));
        assert_eq!(c.elapsed(), Duration::from_millis(1));
        assert_eq!(c.next_before(t0 + Duration::from_millis(2)), None, "not due before the limit");
        assert_eq!(c.next_before(far), Some("late"));
        assert_eq!(c.now(), t0 + Duration::from_millis(5));
    }

    #[test]
    fn an_event_scheduled_in_the_past_runs_now_and_time_never_goes_back() {
        let t0 = super::super::test_epoch();
        let mut c = Clock::new(t0);
        c.schedule(t0 + Duration::from_millis(10), 1);
        assert_eq!(c.next_before(t0 + Duration::from_secs(1)), Some(1));
        c.schedule(t0, 2);
        assert_eq!(c.next_before(t0 + Duration::from_secs(1)), Some(2));
        assert_eq!(c.now(), t0 + Duration::from_millis(10));
    }
}
