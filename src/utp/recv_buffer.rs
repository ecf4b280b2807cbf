//! The receiving half of a uTP connection (BEP 29): in-order bytes waiting for the application,
//! the reorder buffer of packets that arrived ahead of a gap, the peer's FIN, and the
//! selective-ACK bitmask that tells the peer which packets past the gap we hold.
//!
//! Memory is bounded by the configured receive buffer: packets further ahead than
//! [`MAX_REORDER`] or that would overfill the buffer are dropped (the peer resends them), so a
//! hostile sequence number cannot make us allocate. Memory is also only what the data held
//! needs: nothing is reserved up front, growth stops at the window (plus the one packet that
//! may overshoot it), and what the application has read is given back, so a peer cannot
//! leave a window's worth of allocation behind in each of many idle connections.

use std::collections::VecDeque;

use super::header::seq_lt;

/// Packets ahead of the next expected one that we keep at most (libutp keeps 1023).
pub const MAX_REORDER: u16 = 2048;
/// Bytes of selective ACK we send at most: 256 packets past the gap (BEP 29 allows more, but
/// libutp and libtorrent stop at 32 bytes too).
pub const MAX_SACK_BYTES: usize = 32;
/// Bytes of in-order buffer a connection keeps once read empty: enough for a few packets, so a
/// reader that keeps up does not reallocate per packet.
const KEEP_READY: usize = 16 * 1024;

/// What happened to an incoming DATA or FIN packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// Delivered, possibly with packets that waited behind it.
    InOrder,
    /// Held in the reorder buffer.
    Buffered,
    /// Already had it (or it is before the ack point): just ack again.
    Duplicate,
    /// Too far ahead, past the FIN, or no room: the peer will resend it.
    Dropped,
}

enum Slot {
    Empty,
    Data(Vec<u8>),
    Fin,
}

pub struct RecvBuffer {
    capacity: usize,
    /// In-order bytes the application has not read yet.
    ready: VecDeque<u8>,
    /// Slot i holds the packet with sequence number ack_nr + 1 + i (slot 0 is always empty:
    /// it is the gap).
    reorder: VecDeque<Slot>,
    reorder_bytes: usize,
    reorder_packets: usize,
    /// Last sequence number received in order.
    ack_nr: u16,
    fin_seq: Option<u16>,
    /// Every packet up to and including the peer's FIN has arrived.
    eof: bool,
    delivered: u64,
    sack: [u8; MAX_SACK_BYTES],
    sack_len: usize,
    sack_dirty: bool,
}

impl RecvBuffer {
    pub fn new(capacity: usize, ack_nr: u16) -> RecvBuffer {
        RecvBuffer {
            capacity,
            ready: VecDeque::new(),
            reorder: VecDeque::new(),
            reorder_bytes: 0,
            reorder_packets: 0,
            ack_nr,
            fin_seq: None,
            eof: false,
            delivered: 0,
            sack: [0; MAX_SACK_BYTES],
            sack_len: 0,
            sack_dirty: false,
        }
    }

    pub fn ack_nr(&self) -> u16 {
        self.ack_nr
    }

    /// Used once, when the connect handshake tells us where the peer's numbering starts.
    pub fn set_ack_nr(&mut self, ack_nr: u16) {
        debug_assert!(self.reorder.is_empty() && self.fin_seq.is_none());
        self.ack_nr = ack_nr;
    }

    /// The window we advertise: room left in the buffer.
    pub fn window(&self) -> usize {
        self.capacity.saturating_sub(self.ready.len() + self.reorder_bytes)
    }

    pub fn eof(&self) -> bool {
        self.eof
    }

    /// Bytes ready to read.
    pub fn readable(&self) -> usize {
        self.ready.len()
    }

    /// In-order payload bytes received so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.ready.len());
        let (a, b) = self.ready.as_slices();
        let from_a = n.min(a.len());
        buf[..from_a].copy_from_slice(&a[..from_a]);
        buf[from_a..n].copy_from_slice(&b[..n - from_a]);
        self.ready.drain(..n);
        if self.ready.capacity() > KEEP_READY && self.ready.len() <= self.ready.capacity() / 4 {
            // The reader caught up: give back what a burst of unread data had grown.
            self.ready.shrink_to((self.ready.len() * 2).max(KEEP_READY));
        }
        if self.reorder.is_empty() && self.reorder.capacity() > 0 {
            // Slots for packets far ahead of a gap that has since been filled.
            self.reorder = VecDeque::new();
        }
        n
    }

    /// Bytes allocated for received data (in order and reordered) and the reorder slots.
    pub fn memory(&self) -> usize {
        self.ready.capacity() + self.reorder_bytes + self.reorder.capacity() * std::mem::size_of::<Slot>()
    }

    /// Appends in-order bytes. Grows by doubling like the deque itself would, but never past
    /// the window and one packet: doubling a full 1 MiB buffer would reserve 2 MiB.
    fn push_ready(&mut self, bytes: &[u8]) {
        let need = self.ready.len() + bytes.len();
        if need > self.ready.capacity() {
            let cap = need.next_power_of_two().min(self.capacity.saturating_add(bytes.len())).max(need);
            self.ready.reserve_exact(cap - self.ready.len());
        }
        self.ready.extend(bytes);
    }

    /// `distance` from the ack point, or None when the sequence number is at or before it.
    fn distance(&self, seq: u16) -> Option<u16> {
        seq_lt(self.ack_nr, seq).then(|| seq.wrapping_sub(self.ack_nr))
    }

    pub fn on_data(&mut self, seq: u16, payload: &[u8]) -> Incoming {
        let Some(d) = self.distance(seq) else { return Incoming::Duplicate };
        if self.eof || self.fin_seq.is_some_and(|f| !seq_lt(seq, f)) {
            // Nothing follows the FIN.
            return Incoming::Dropped;
        }
        if d > MAX_REORDER {
            return Incoming::Dropped;
        }
        if d == 1 {
            // While any room is left the packet is taken whole, so the buffer may overshoot by
            // one packet; with none left the peer is probing a zero window and resends later.
            if self.window() == 0 {
                return Incoming::Dropped;
            }
            self.deliver(payload);
            self.drain_reorder();
            return Incoming::InOrder;
        }
        let i = d as usize - 1;
        if matches!(self.reorder.get(i), Some(Slot::Data(_) | Slot::Fin)) {
            return Incoming::Duplicate;
        }
        if self.ready.len() + self.reorder_bytes + payload.len() > self.capacity {
            return Incoming::Dropped;
        }
        if self.reorder.len() <= i {
            self.reorder.resize_with(i + 1, || Slot::Empty);
        }
        self.reorder[i] = Slot::Data(payload.to_vec());
        self.reorder_bytes += payload.len();
        self.reorder_packets += 1;
        self.sack_dirty = true;
        Incoming::Buffered
    }

    pub fn on_fin(&mut self, seq: u16) -> Incoming {
        let Some(d) = self.distance(seq) else { return Incoming::Duplicate };
        if self.eof || self.fin_seq.is_some_and(|f| f != seq) || d > MAX_REORDER {
            return Incoming::Dropped;
        }
        self.fin_seq = Some(seq);
        if d == 1 {
            self.reach_fin();
            return Incoming::InOrder;
        }
        let i = d as usize - 1;
        // Whatever was buffered past the FIN can never be delivered.
        while self.reorder.len() > i {
            if let Some(slot) = self.reorder.pop_back() {
                self.forget(&slot);
            }
        }
        self.reorder.resize_with(i + 1, || Slot::Empty);
        self.reorder[i] = Slot::Fin;
        self.reorder_packets += 1;
        self.sack_dirty = true;
        Incoming::Buffered
    }

    fn deliver(&mut self, payload: &[u8]) {
        self.push_ready(payload);
        self.delivered += payload.len() as u64;
        self.ack_nr = self.ack_nr.wrapping_add(1);
        self.reorder.pop_front();
        self.sack_dirty = true;
    }

    fn reach_fin(&mut self) {
        self.ack_nr = self.ack_nr.wrapping_add(1);
        self.eof = true;
        while let Some(slot) = self.reorder.pop_front() {
            self.forget(&slot);
        }
        self.sack_dirty = true;
    }

    fn forget(&mut self, slot: &Slot) {
        match slot {
            Slot::Empty => {}
            Slot::Data(d) => {
                self.reorder_bytes -= d.len();
                self.reorder_packets -= 1;
            }
            Slot::Fin => self.reorder_packets -= 1,
        }
    }

    /// Moves packets that waited behind the gap just filled into the ready bytes.
    fn drain_reorder(&mut self) {
        loop {
            match self.reorder.front() {
                Some(Slot::Data(_)) => {
                    if let Some(Slot::Data(d)) = self.reorder.pop_front() {
                        self.reorder_bytes -= d.len();
                        self.reorder_packets -= 1;
                        self.push_ready(&d);
                        self.delivered += d.len() as u64;
                        self.ack_nr = self.ack_nr.wrapping_add(1);
                    }
                }
                Some(Slot::Fin) => {
                    self.reorder.pop_front();
                    self.reorder_packets -= 1;
                    self.reach_fin();
                    return;
                }
                _ => return,
            }
        }
    }

    /// The selective ACK to send, when packets past the gap are held: bit i means
    /// ack_nr + 2 + i arrived; the length is a multiple of 4 bytes.
    pub fn sack(&mut self) -> Option<&[u8]> {
        if self.reorder_packets == 0 {
            return None;
        }
        if self.sack_dirty {
            self.sack = [0; MAX_SACK_BYTES];
            let mut last = None;
            for (bit, slot) in self.reorder.iter().skip(1).take(MAX_SACK_BYTES * 8).enumerate() {
                if !matches!(slot, Slot::Empty) {
                    self.sack[bit / 8] |= 1 << (bit % 8);
                    last = Some(bit);
                }
            }
            self.sack_len = last.map_or(0, |b| (b / 32 + 1) * 4);
            self.sack_dirty = false;
        }
        (self.sack_len > 0).then(|| &self.sack[..self.sack_len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(r: &mut RecvBuffer) -> Vec<u8> {
        let mut buf = vec![0; r.readable()];
        let n = r.read(&mut buf);
        buf.truncate(n);
        buf
    }

    #[test]
    fn reorders_and_wraps() {
        let mut r = RecvBuffer::new(1000, 65_534);
        assert_eq!(r.on_data(1, b"c"), Incoming::Buffered);
        assert_eq!(r.sack(), Some(&[0b10, 0, 0, 0][..]));
        assert_eq!(r.on_data(0, b"b"), Incoming::Buffered);
        assert_eq!(r.sack(), Some(&[0b11, 0, 0, 0][..]));
        assert_eq!(r.on_data(0, b"b"), Incoming::Duplicate);
        assert_eq!(r.on_data(65_535, b"a"), Incoming::InOrder);
        assert_eq!(r.ack_nr(), 1);
        assert_eq!(r.sack(), None);
        assert_eq!(read_all(&mut r), b"abc");
        assert_eq!(r.on_data(65_535, b"a"), Incoming::Duplicate);
        assert_eq!(r.delivered(), 3);
    }

    #[test]
    fn fin_out_of_order_ends_the_stream_after_the_gap() {
        let mut r = RecvBuffer::new(1000, 10);
        assert_eq!(r.on_data(13, b"z"), Incoming::Buffered);
        assert_eq!(r.on_fin(12), Incoming::Buffered);
        // The packet past the FIN was thrown away.
        assert_eq!(r.sack(), Some(&[0b1, 0, 0, 0][..]));
        assert_eq!(r.on_data(13, b"z"), Incoming::Dropped);
        assert_eq!(r.on_fin(14), Incoming::Dropped);
        assert!(!r.eof());
        assert_eq!(r.on_data(11, b"y"), Incoming::InOrder);
        assert!(r.eof());
        assert_eq!(r.ack_nr(), 12);
        assert_eq!(read_all(&mut r), b"y");
        assert_eq!(r.on_fin(12), Incoming::Duplicate);
    }

    #[test]
    fn bounded_by_capacity_and_distance() {
        let mut r = RecvBuffer::new(10, 0);
        assert_eq!(r.on_data(MAX_REORDER + 1, b"x"), Incoming::Dropped);
        assert_eq!(r.on_data(40_000, b"x"), Incoming::Duplicate);
        assert_eq!(r.on_data(3, &[0; 8]), Incoming::Buffered);
        assert_eq!(r.on_data(4, &[0; 8]), Incoming::Dropped);
        assert_eq!(r.window(), 2);
        // In order always fits while the buffer is not over full.
        assert_eq!(r.on_data(1, &[0; 8]), Incoming::InOrder);
        assert_eq!(r.window(), 0);
        assert_eq!(r.on_data(2, &[0; 8]), Incoming::Dropped);
        assert_eq!(read_all(&mut r).len(), 8);
        assert_eq!(r.on_data(2, &[0; 8]), Incoming::InOrder);
        assert_eq!(r.ack_nr(), 3);
    }

    #[test]
    fn sack_is_a_multiple_of_four_bytes_and_at_most_32() {
        let mut r = RecvBuffer::new(1 << 20, 0);
        r.on_data(2 + 33, b"x");
        assert_eq!(r.sack().map(<[u8]>::len), Some(8));
        r.on_data(2 + 1000, b"x");
        assert_eq!(r.sack().map(<[u8]>::len), Some(8));
        r.on_data(2 + 255, b"x");
        let s = r.sack().unwrap();
        assert_eq!(s.len(), 32);
        assert_eq!(s[31], 0x80);
    }

    #[test]
    fn memory_follows_the_data_held_and_stops_at_the_window() {
        const WINDOW: usize = 1 << 20;
        let mut r = RecvBuffer::new(WINDOW, 0);
        assert_eq!(r.memory(), 0);
        let packet = [7u8; 1400];
        let mut seq = 1u16;
        let mut peak = 0;
        // A peer fills the whole window (and the one packet that may overshoot it) while the
        // application reads nothing.
        while r.on_data(seq, &packet) == Incoming::InOrder {
            seq = seq.wrapping_add(1);
            peak = peak.max(r.memory());
        }
        assert!(r.readable() >= WINDOW);
        assert!(peak <= WINDOW + packet.len(), "{peak} bytes held for a {WINDOW}-byte window");
        // Once read, the memory goes back.
        let mut buf = vec![0; 64 * 1024];
        while r.read(&mut buf) > 0 {}
        assert!(r.memory() <= KEEP_READY, "{} bytes kept after everything was read", r.memory());
        // A packet far ahead of a gap allocates slots up to it; filling the gap frees them.
        assert_eq!(r.on_data(seq.wrapping_add(1000), b"x"), Incoming::Buffered);
        assert!(r.memory() > 1000 * std::mem::size_of::<Slot>());
        for s in 0..1000 {
            r.on_data(seq.wrapping_add(s), b"x");
        }
        assert_eq!(r.readable(), 1001);
        while r.read(&mut buf) > 0 {}
        assert!(r.memory() <= KEEP_READY, "{} bytes kept after the gap was filled", r.memory());
    }
}
