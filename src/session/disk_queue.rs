//! The queue from a torrent's task to its disk thread: bounded like any queue the network
//! feeds, but with its free slots handed back in batches.
//!
//! A download is usually held back by the disk thread (it writes and hashes every block), so
//! the queue is full and the torrent task waits for a slot. A bounded channel frees one slot
//! per block taken and wakes the waiting task each time: a download of 512 MiB woke the async
//! worker 28,000 times from the disk thread (an `eventfd` write and a trip through `epoll`
//! each). Here the disk thread gives slots back `batch` at a time, or all of them when it has
//! emptied the queue and is about to sleep, so the task wakes once per batch and then queues
//! a batch of blocks in one go.

use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};

/// The disk thread is gone: nothing more can be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the disk thread is gone")]
pub struct Closed;

/// The torrent task's end: `send` waits while `cap` items are queued.
#[derive(Debug)]
pub struct QueueTx<T> {
    tx: mpsc::UnboundedSender<T>,
    slots: Arc<Semaphore>,
}

impl<T> Clone for QueueTx<T> {
    fn clone(&self) -> Self {
        QueueTx { tx: self.tx.clone(), slots: Arc::clone(&self.slots) }
    }
}

/// The disk thread's end.
#[derive(Debug)]
pub struct QueueRx<T> {
    rx: mpsc::UnboundedReceiver<T>,
    slots: Arc<Semaphore>,
    /// Items taken whose slots are not handed back yet.
    taken: usize,
    batch: usize,
}

/// A queue of at most `cap` items whose slots come back `batch` at a time (`1 <= batch <= cap`).
pub fn queue<T>(cap: usize, batch: usize) -> (QueueTx<T>, QueueRx<T>) {
    let cap = cap.max(1);
    let (tx, rx) = mpsc::unbounded_channel();
    let slots = Arc::new(Semaphore::new(cap));
    (QueueTx { tx, slots: Arc::clone(&slots) }, QueueRx { rx, slots, taken: 0, batch: batch.clamp(1, cap) })
}

impl<T> QueueTx<T> {
    /// Queues `item`, waiting for a free slot.
    pub async fn send(&self, item: T) -> Result<(), Closed> {
        // The slot travels with the item and is handed back by the receiver.
        self.slots.acquire().await.map_err(|_| Closed)?.forget();
        self.tx.send(item).map_err(|_| Closed)
    }
}

impl<T> QueueRx<T> {
    /// The next item, blocking the thread while there is none (never call it on an async
    /// worker). Hands back the slots of the items taken before it once there are `batch` of
    /// them, or as soon as the queue is empty, so a waiting sender is never left waiting on
    /// a receiver that sleeps.
    pub fn blocking_recv(&mut self) -> Option<T> {
        self.hand_back();
        let item = self.rx.blocking_recv()?;
        self.taken += 1;
        Some(item)
    }

    fn hand_back(&mut self) {
        if self.taken >= self.batch || (self.taken > 0 && self.rx.is_empty()) {
            self.slots.add_permits(self.taken);
            self.taken = 0;
        }
    }
}

impl<T> Drop for QueueRx<T> {
    fn drop(&mut self) {
        // Senders waiting for a slot would otherwise wait for ever.
        self.slots.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().build().unwrap()
    }

    /// Whether `send` completes without waiting.
    fn send_now(rt: &tokio::runtime::Runtime, tx: &QueueTx<u32>, item: u32) -> bool {
        rt.block_on(async {
            tokio::select! {
                biased;
                r = tx.send(item) => { r.unwrap(); true }
                () = std::future::ready(()) => false,
            }
        })
    }

    #[test]
    fn no_more_than_cap_items_are_queued() {
        let rt = runtime();
        let (tx, mut rx) = queue::<u32>(8, 4);
        for i in 0..8 {
            assert!(send_now(&rt, &tx, i), "item {i}");
        }
        assert!(!send_now(&rt, &tx, 8), "the ninth waits");
        assert_eq!(rx.blocking_recv(), Some(0));
    }

    #[test]
    fn slots_come_back_a_batch_at_a_time_while_the_queue_is_busy() {
        let rt = runtime();
        let (tx, mut rx) = queue::<u32>(8, 4);
        for i in 0..8 {
            assert!(send_now(&rt, &tx, i));
        }
        // Three taken (their slots are handed back on the next take): still full.
        for i in 0..4 {
            assert_eq!(rx.blocking_recv(), Some(i));
        }
        assert!(!send_now(&rt, &tx, 100), "three slots are not a batch");
        // The fifth take hands the first four back.
        assert_eq!(rx.blocking_recv(), Some(4));
        for i in 0..4 {
            assert!(send_now(&rt, &tx, 10 + i), "slot {i} of the batch");
        }
        assert!(!send_now(&rt, &tx, 100), "the fifth taken is not back yet");
    }

    /// A queue of 8 with batches of 8, three items sent and taken: fewer than a batch.
    fn three_taken(rt: &tokio::runtime::Runtime) -> (QueueTx<u32>, QueueRx<u32>) {
        let (tx, mut rx) = queue::<u32>(8, 8);
        for i in 0..3 {
            assert!(send_now(rt, &tx, i));
        }
        for i in 0..3 {
            assert_eq!(rx.blocking_recv(), Some(i));
        }
        (tx, rx)
    }

    #[test]
    fn an_emptied_queue_hands_every_slot_back() {
        let rt = runtime();
        let (tx, mut rx) = three_taken(&rt);
        // The queue is empty: the receiver's next take (which would sleep) hands all back.
        rx.hand_back();
        for i in 0..8 {
            assert!(send_now(&rt, &tx, 20 + i), "slot {i}");
        }
        assert!(!send_now(&rt, &tx, 100));
    }

    #[test]
    fn a_busy_queue_holds_slots_until_a_batch() {
        let rt = runtime();
        let (tx, mut rx) = three_taken(&rt);
        assert!(send_now(&rt, &tx, 10));
        // One item waits: the receiver will not sleep, so the three stay held.
        rx.hand_back();
        for i in 0..4 {
            assert!(send_now(&rt, &tx, 11 + i), "slot {i}");
        }
        assert!(!send_now(&rt, &tx, 100), "three slots still held");
    }

    #[test]
    fn senders_fail_once_the_receiver_is_gone() {
        let rt = runtime();
        let (tx, rx) = queue::<u32>(1, 1);
        assert!(send_now(&rt, &tx, 1));
        let waiting = tx.clone();
        let pending = std::thread::spawn(move || runtime().block_on(waiting.send(2)));
        drop(rx);
        assert_eq!(pending.join().unwrap(), Err(Closed));
        assert_eq!(rt.block_on(tx.send(3)), Err(Closed));
    }
}
