//! The sending half of a uTP connection (BEP 29): the bytes the application wrote that the
//! peer has not acknowledged yet, the packets in flight that carry them, and the round-trip
//! estimate those packets' acks feed.
//!
//! All unacked bytes sit in one ring; a packet is just (stream offset, length), so nothing is
//! copied until a datagram is encoded. Packets in flight are a queue indexed by their distance
//! from the oldest unacked sequence number, so an ack is O(packets it acks) and a selective ACK
//! O(its bits), whatever the window.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::header::PacketType;

/// BEP 29: the timeout never goes below half a second.
const MIN_RTO: Duration = Duration::from_millis(500);
/// Before any sample.
const INITIAL_RTO: Duration = Duration::from_secs(1);
/// Packets acked by the selective ACK after a hole (and sent after it) that make it lost.
const DUP_THRESH: usize = 3;
/// The backed-off timeout never exceeds this (the connection gives up after a few anyway).
const MAX_BACKED_OFF_RTO: Duration = Duration::from_secs(60);

/// The round-trip estimate of BEP 29 (the TCP one): smoothed rtt and mean deviation.
#[derive(Debug, Clone, Default)]
pub struct Rtt {
    srtt_us: i64,
    var_us: i64,
    sampled: bool,
    /// Doublings of the timeout since the last valid sample (Karn, RFC 6298 section 5): an
    /// ack of a retransmitted packet proves the path works but says nothing about its round
    /// trip, so only a fresh sample may bring the timeout back down.
    backoff: u32,
}

impl Rtt {
    pub fn sample(&mut self, rtt: Duration) {
        let us = rtt.as_micros().min(i64::MAX as u128 / 2) as i64;
        self.backoff = 0;
        if !self.sampled {
            self.srtt_us = us;
            self.var_us = us / 2;
            self.sampled = true;
        } else {
            let delta = self.srtt_us - us;
            self.var_us += (delta.abs() - self.var_us) / 4;
            self.srtt_us += (us - self.srtt_us) / 8;
        }
    }

    pub fn rtt(&self) -> Duration {
        Duration::from_micros(self.srtt_us.max(0) as u64)
    }

    /// max(rtt + 4 * rtt_var, 500 ms), one second until the first sample, doubled for every
    /// timeout since the last sample.
    pub fn rto(&self) -> Duration {
        self.base_rto().saturating_mul(1 << self.backoff.min(16)).min(MAX_BACKED_OFF_RTO)
    }

    fn base_rto(&self) -> Duration {
        if !self.sampled {
            return INITIAL_RTO;
        }
        Duration::from_micros((self.srtt_us + 4 * self.var_us).max(0) as u64).max(MIN_RTO)
    }

    /// A retransmission timeout fired: wait twice as long until a packet sent once is acked.
    pub fn back_off(&mut self) {
        self.backoff = (self.backoff + 1).min(16);
    }
}

#[derive(Debug, Clone)]
pub struct OutPacket {
    pub kind: PacketType,
    /// Stream offset of the payload.
    pub off: u64,
    pub len: u32,
    pub sent_at: Instant,
    /// Order of the last transmission among all of ours: what "sent after" means for loss
    /// detection, even when many packets leave in the same instant.
    pub tx_order: u64,
    pub transmissions: u32,
    /// Acked by a selective ACK (the cumulative ack has not reached it yet).
    pub sacked: bool,
    pub need_resend: bool,
    /// Counted in the bytes in flight.
    pub in_flight: bool,
    /// Marked lost by duplicate or selective acks (not by the timer).
    pub fast: bool,
    /// Every transmission carried an ack of the peer's FIN.
    pub acked_peer_fin: bool,
}

/// What a cumulative ack did.
#[derive(Debug, Default)]
pub struct Acked {
    pub bytes: usize,
    pub packets: usize,
    pub fin: bool,
    /// The peer got a packet of ours that acked its FIN.
    pub peer_saw_fin_ack: bool,
}

pub struct SendBuffer {
    /// Written bytes from the oldest unacked one on.
    data: VecDeque<u8>,
    /// Stream offset of data[0].
    base: u64,
    /// Stream offset of the first byte not yet put in a packet.
    next: u64,
    /// Packets sent and not cumulatively acked; packets[i] has sequence number una + i.
    packets: VecDeque<OutPacket>,
    next_seq: u16,
    flight: usize,
    /// No packet before this index needs a resend.
    resend_scan: usize,
    tx_counter: u64,
}

impl SendBuffer {
    pub fn new(initial_seq: u16) -> SendBuffer {
        SendBuffer {
            data: VecDeque::new(),
            base: 0,
            next: 0,
            packets: VecDeque::new(),
            next_seq: initial_seq,
            flight: 0,
            resend_scan: 0,
            tx_counter: 0,
        }
    }

    /// Bytes written and not acked yet (sent or not).
    pub fn buffered(&self) -> usize {
        self.data.len()
    }

    pub fn unsent(&self) -> usize {
        (self.base + self.data.len() as u64 - self.next) as usize
    }

    pub fn end_offset(&self) -> u64 {
        self.base + self.data.len() as u64
    }

    pub fn next_offset(&self) -> u64 {
        self.next
    }

    pub fn write(&mut self, bytes: &[u8], limit: usize) -> usize {
        let n = bytes.len().min(limit.saturating_sub(self.data.len()));
        self.data.extend(&bytes[..n]);
        n
    }

    pub fn packets(&self) -> usize {
        self.packets.len()
    }

    pub fn get(&self, i: usize) -> Option<&OutPacket> {
        self.packets.get(i)
    }

    pub fn next_seq(&self) -> u16 {
        self.next_seq
    }

    /// The oldest unacked sequence number (the next one when nothing is in flight).
    pub fn una(&self) -> u16 {
        self.next_seq.wrapping_sub(self.packets.len() as u16)
    }

    pub fn flight(&self) -> usize {
        self.flight
    }

    /// Queues a new packet carrying the next `len` unsent bytes (0 for SYN and FIN); it is
    /// sent by [`SendBuffer::transmit`]. Returns its index.
    pub fn push(&mut self, kind: PacketType, len: usize, now: Instant) -> usize {
        debug_assert!(len <= self.unsent());
        let packet = OutPacket {
            kind,
            off: self.next,
            len: len as u32,
            sent_at: now,
            tx_order: 0,
            transmissions: 0,
            sacked: false,
            need_resend: false,
            in_flight: false,
            fast: false,
            acked_peer_fin: true,
        };
        self.next += len as u64;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.packets.push_back(packet);
        self.packets.len() - 1
    }

    /// Records a (re)transmission of packet `i`; returns it for encoding.
    pub fn transmit(&mut self, i: usize, now: Instant, acks_peer_fin: bool) -> &OutPacket {
        self.tx_counter += 1;
        let p = &mut self.packets[i];
        p.sent_at = now;
        p.tx_order = self.tx_counter;
        p.transmissions += 1;
        p.need_resend = false;
        p.fast = false;
        p.acked_peer_fin &= acks_peer_fin;
        if !p.in_flight {
            p.in_flight = true;
            self.flight += p.len as usize;
        }
        p
    }

    /// Sequence number of packet `i`.
    pub fn seq_of(&self, i: usize) -> u16 {
        self.una().wrapping_add(i as u16)
    }

    /// Appends the payload of a packet to `out`.
    pub fn payload(&self, off: u64, len: u32, out: &mut Vec<u8>) {
        let start = (off - self.base) as usize;
        let end = start + len as usize;
        let (a, b) = self.data.as_slices();
        if start < a.len() {
            out.extend_from_slice(&a[start..end.min(a.len())]);
        }
        if end > a.len() {
            out.extend_from_slice(&b[start.saturating_sub(a.len())..end - a.len()]);
        }
    }

    /// Cumulative ack of everything up to and including `ack`, which the caller checked is
    /// within what we sent.
    pub fn ack_upto(&mut self, ack: u16, now: Instant, rtt: &mut Rtt) -> Acked {
        let count = (ack.wrapping_sub(self.una()).wrapping_add(1) as usize).min(self.packets.len());
        let mut acked = Acked::default();
        // Karn: no sample from a resent packet, nor from any after it in this ack, which may
        // have waited at the receiver for the resend to fill the hole before them.
        let mut sample = true;
        for p in self.packets.drain(..count) {
            sample &= p.transmissions == 1;
            if !p.sacked {
                acked.bytes += p.len as usize;
                if sample {
                    rtt.sample(now.saturating_duration_since(p.sent_at));
                }
            }
            if p.in_flight {
                self.flight -= p.len as usize;
            }
            acked.fin |= p.kind == PacketType::Fin;
            acked.peer_saw_fin_ack |= p.acked_peer_fin && p.transmissions > 0;
        }
        acked.packets = count;
        self.resend_scan = self.resend_scan.saturating_sub(count);
        // Bytes before the oldest packet still unacked are no longer needed.
        let keep_from = self.packets.front().map_or(self.next, |p| p.off);
        self.data.drain(..(keep_from - self.base) as usize);
        self.base = keep_from;
        acked
    }

    /// A selective ACK: bit j of `mask` acks the packet ack + 2 + j, where `ack` was just
    /// applied (so that packet is at index j + 1). Returns the bytes newly acked, and the
    /// number of packets it declared lost.
    pub fn selective_ack(&mut self, mask: &[u8], now: Instant, rtt: &mut Rtt) -> (usize, usize) {
        let mut bytes = 0;
        let mut highest = None;
        for (byte_i, &byte) in mask.iter().enumerate() {
            if byte == 0 {
                continue;
            }
            for bit in 0..8 {
                if byte & (1 << bit) == 0 {
                    continue;
                }
                let i = byte_i * 8 + bit + 1;
                let Some(p) = self.packets.get_mut(i) else { break };
                if p.transmissions == 0 {
                    continue;
                }
                highest = Some(i);
                if p.sacked {
                    continue;
                }
                p.sacked = true;
                p.need_resend = false;
                bytes += p.len as usize;
                if p.transmissions == 1 {
                    rtt.sample(now.saturating_duration_since(p.sent_at));
                }
                if p.in_flight {
                    p.in_flight = false;
                    self.flight -= p.len as usize;
                }
            }
        }
        let lost = highest.map_or(0, |h| self.detect_losses(h));
        (bytes, lost)
    }

    /// Declares lost every packet below index `highest` that at least [`DUP_THRESH`] packets
    /// sent after it overtook (were selectively acked). Comparing transmission order rather
    /// than sequence numbers also catches a retransmission that was lost again.
    fn detect_losses(&mut self, highest: usize) -> usize {
        // The DUP_THRESH latest transmission orders among acked packets above the cursor.
        let mut latest = [0u64; DUP_THRESH];
        let mut lost = 0;
        for i in (0..=highest.min(self.packets.len().saturating_sub(1))).rev() {
            let p = &self.packets[i];
            if p.sacked {
                if p.tx_order > latest[0] {
                    latest[0] = p.tx_order;
                    latest.sort_unstable();
                }
                continue;
            }
            if p.transmissions > 0 && !p.need_resend && latest[0] > p.tx_order && self.mark_lost(i, true) {
                lost += 1;
            }
        }
        lost
    }

    /// Marks packet `i` for resending; false when it already was, or is acked.
    pub fn mark_lost(&mut self, i: usize, fast: bool) -> bool {
        let Some(p) = self.packets.get_mut(i) else { return false };
        if p.need_resend || p.sacked {
            return false;
        }
        p.need_resend = true;
        p.fast = fast;
        if p.in_flight {
            p.in_flight = false;
            self.flight -= p.len as usize;
        }
        self.resend_scan = self.resend_scan.min(i);
        true
    }

    /// The retransmission timer fired: everything not acked is presumed lost.
    pub fn mark_all_lost(&mut self) {
        for i in 0..self.packets.len() {
            if self.packets[i].transmissions > 0 {
                self.mark_lost(i, false);
            }
        }
    }

    /// The first packet waiting to be resent.
    pub fn next_resend(&mut self) -> Option<usize> {
        while let Some(p) = self.packets.get(self.resend_scan) {
            if p.need_resend {
                return Some(self.resend_scan);
            }
            self.resend_scan += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::clock::now as t0;

    fn filled(now: Instant, packets: usize) -> SendBuffer {
        let mut s = SendBuffer::new(65_530);
        let bytes: Vec<u8> = (0..packets * 10).map(|i| i as u8).collect();
        assert_eq!(s.write(&bytes, usize::MAX), bytes.len());
        for _ in 0..packets {
            let i = s.push(PacketType::Data, 10, now);
            s.transmit(i, now, false);
        }
        s
    }

    #[test]
    fn acks_release_bytes_and_wrap() {
        let now = t0();
        let mut s = filled(now, 10);
        let mut rtt = Rtt::default();
        assert_eq!(s.flight(), 100);
        assert_eq!(s.next_seq(), 4);
        let mut out = Vec::new();
        s.payload(s.get(9).unwrap().off, 10, &mut out);
        assert_eq!(out, (90..100).map(|i| i as u8).collect::<Vec<_>>());
        let a = s.ack_upto(65_535, now + Duration::from_millis(100), &mut rtt);
        assert_eq!((a.bytes, a.packets), (60, 6));
        assert_eq!(s.una(), 0);
        assert_eq!(s.buffered(), 40);
        assert_eq!(rtt.rtt(), Duration::from_millis(100));
        assert_eq!(rtt.rto(), Duration::from_millis(300).max(MIN_RTO));
    }

    #[test]
    fn selective_ack_declares_the_hole_lost() {
        let now = t0();
        let mut s = filled(now, 10);
        let mut rtt = Rtt::default();
        s.ack_upto(65_530, now, &mut rtt);
        // Packets 2, 3 of the remaining (ack + 2, ack + 3) arrived: only two past the hole.
        assert_eq!(s.selective_ack(&[0b11, 0, 0, 0], now, &mut rtt), (20, 0));
        assert_eq!(s.selective_ack(&[0b111, 0, 0, 0], now, &mut rtt), (10, 1));
        assert_eq!(s.next_resend(), Some(0));
        assert_eq!(s.flight(), 90 - 30 - 10);
        // Resent, then three packets sent before the resend are acked: not lost again.
        s.transmit(0, now, false);
        assert_eq!(s.selective_ack(&[0b1111, 0, 0, 0], now, &mut rtt), (10, 0));
        assert_eq!(s.next_resend(), None);
    }

    #[test]
    fn a_timeout_marks_everything_unacked() {
        let now = t0();
        let mut s = filled(now, 4);
        let mut rtt = Rtt::default();
        s.selective_ack(&[0b1, 0, 0, 0], now, &mut rtt);
        s.mark_all_lost();
        assert_eq!(s.flight(), 0);
        let mut resends = Vec::new();
        while let Some(i) = s.next_resend() {
            resends.push(i);
            s.transmit(i, now, false);
        }
        assert_eq!(resends, vec![0, 2, 3]);
        assert_eq!(s.flight(), 30);
    }
}
