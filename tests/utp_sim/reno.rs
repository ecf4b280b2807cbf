//! A loss-based TCP-like bulk flow, as a small sans-IO model for the simulator: the
//! competitor LEDBAT must yield to (RFC 6817 section 2). Reno AIMD (RFC 5681): slow start,
//! +1 MSS per RTT in congestion avoidance, the window halved once per window of losses, and a
//! retransmission timeout (RFC 6298, 200 ms floor as Linux has) that falls back to one segment.
//!
//! Loss recovery is SACK-like so a big drop-tail buffer overflowing many segments at once does
//! not stall it: each ACK carries the cumulative ack and the segment that triggered it, and a
//! segment with three later segments acknowledged is deemed lost (RFC 6675's DupThresh) and
//! sent again while the pipe is below the window. Segments are numbered, not byte-addressed.
//! The receiver ACKs every segment (no delayed ACKs).

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use super::harness::Endpoint;

/// Payload bytes per segment, and the wire sizes with 40 bytes of IPv4 + TCP headers.
pub const MSS: usize = 1460;
const DATA_WIRE: usize = MSS + 40;
const ACK_WIRE: usize = 40;
const DUP_THRESH: usize = 3;
const MIN_RTO: Duration = Duration::from_millis(200);
const MAX_RTO: Duration = Duration::from_secs(60);
/// The receiver's window in segments (about 4 MiB, as a Linux receive buffer autotunes to).
const RWND: u64 = 3000;

const KIND_DATA: u8 = 0;
const KIND_ACK: u8 = 1;

#[derive(Debug, Clone, Copy)]
struct Seg {
    sent_at: Instant,
    sacked: bool,
    lost: bool,
    /// Sent again since it was marked lost (Karn: no RTT sample from it).
    retransmitted: bool,
}

impl Seg {
    /// Whether the segment is believed to be in the network (RFC 6675's pipe).
    fn in_pipe(&self) -> bool {
        !self.sacked && (!self.lost || self.retransmitted)
    }
}

#[derive(Debug, Clone, Default)]
pub struct RenoStats {
    pub segments_sent: u64,
    pub retransmits: u64,
    pub timeouts: u64,
    pub loss_events: u64,
}

#[derive(Debug)]
pub struct RenoSender {
    start: Instant,
    /// Segments to send in all (`None`: an endless bulk transfer).
    total: Option<u64>,
    una: u64,
    next: u64,
    /// State of segments una..next.
    segs: VecDeque<Seg>,
    cwnd: f64,
    ssthresh: f64,
    /// While recovering from a loss, the `next` at its detection: the window is cut once.
    recovery: Option<u64>,
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
    rto_at: Option<Instant>,
    stats: RenoStats,
}

impl RenoSender {
    pub fn new(start: Instant, total: Option<u64>) -> RenoSender {
        RenoSender {
            start,
            total,
            una: 0,
            next: 0,
            segs: VecDeque::new(),
            cwnd: 10.0,
            ssthresh: f64::INFINITY,
            recovery: None,
            srtt: None,
            rttvar: Duration::ZERO,
            rto: Duration::from_secs(1),
            rto_at: None,
            stats: RenoStats::default(),
        }
    }

    pub fn stats(&self) -> &RenoStats {
        &self.stats
    }

    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    pub fn done(&self) -> bool {
        self.total.is_some_and(|t| self.una >= t)
    }

    fn on_rtt_sample(&mut self, rtt: Duration) {
        // RFC 6298 section 2.
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let err = srtt.abs_diff(rtt);
                self.rttvar = self.rttvar * 3 / 4 + err / 4;
                self.srtt = Some(srtt * 7 / 8 + rtt / 8);
            }
        }
        self.rto = (self.srtt.unwrap_or(rtt) + 4 * self.rttvar).clamp(MIN_RTO, MAX_RTO);
    }

    fn on_ack(&mut self, now: Instant, cum: u64, trigger: u64) {
        if cum > self.next || cum < self.una {
            return;
        }
        let mut sample = None;
        if let Some(seg) = trigger.checked_sub(self.una).and_then(|i| self.segs.get_mut(i as usize)) {
            if !seg.sacked && !seg.retransmitted {
                sample = Some(now - seg.sent_at);
            }
            seg.sacked = true;
        }
        if let Some(rtt) = sample {
            self.on_rtt_sample(rtt);
        }
        let newly = cum - self.una;
        if newly > 0 {
            self.segs.drain(..newly as usize);
            self.una = cum;
            self.rto_at = (self.una < self.next).then_some(now + self.rto);
            match self.recovery {
                Some(point) if cum >= point => self.recovery = None,
                Some(_) => {}
                None if self.cwnd < self.ssthresh => self.cwnd += newly as f64,
                None => self.cwnd += newly as f64 / self.cwnd,
            }
        }
        self.detect_losses();
    }

    /// Marks as lost every segment with `DUP_THRESH` later segments SACKed, and halves the
    /// window once for a new episode.
    fn detect_losses(&mut self) {
        let mut later_sacked = 0;
        let mut newly_lost = false;
        for seg in self.segs.iter_mut().rev() {
            if seg.sacked {
                later_sacked += 1;
            } else if later_sacked >= DUP_THRESH && !seg.lost {
                seg.lost = true;
                newly_lost = true;
            }
        }
        if newly_lost && self.recovery.is_none() {
            self.stats.loss_events += 1;
            self.recovery = Some(self.next);
            self.ssthresh = (self.pipe() as f64 / 2.0).max(2.0);
            self.cwnd = self.ssthresh;
        }
    }

    fn pipe(&self) -> usize {
        self.segs.iter().filter(|s| s.in_pipe()).count()
    }
}

impl Endpoint for RenoSender {
    fn handle_datagram(&mut self, now: Instant, data: &[u8]) {
        if let Some((KIND_ACK, cum, trigger)) = decode(data) {
            self.on_ack(now, cum, trigger);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.rto_at.is_none_or(|t| t > now) {
            return;
        }
        // RFC 5681 section 3.1 on a timeout: one segment, ssthresh at half the flight, and
        // everything not SACKed is presumed lost and goes again.
        self.stats.timeouts += 1;
        self.ssthresh = ((self.next - self.una) as f64 / 2.0).max(2.0);
        self.cwnd = 1.0;
        self.recovery = Some(self.next);
        for seg in self.segs.iter_mut().filter(|s| !s.sacked) {
            seg.lost = true;
            seg.retransmitted = false;
        }
        self.rto = (self.rto * 2).min(MAX_RTO);
        self.rto_at = Some(now + self.rto);
    }

    fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<usize> {
        if now < self.start || self.pipe() as f64 >= self.cwnd.floor().max(1.0) {
            return None;
        }
        let seq = if let Some(i) = self.segs.iter().position(|s| s.lost && !s.retransmitted) {
            let seg = &mut self.segs[i];
            seg.retransmitted = true;
            seg.sent_at = now;
            self.stats.retransmits += 1;
            self.una + i as u64
        } else if self.total.is_none_or(|t| self.next < t) && self.next - self.una < RWND {
            self.segs.push_back(Seg { sent_at: now, sacked: false, lost: false, retransmitted: false });
            self.next += 1;
            self.next - 1
        } else {
            return None;
        };
        self.stats.segments_sent += 1;
        self.rto_at.get_or_insert(now + self.rto);
        encode(KIND_DATA, seq, 0, out);
        Some(DATA_WIRE)
    }

    fn next_deadline(&self) -> Option<Instant> {
        if self.next == 0 && !self.done() {
            return Some(self.start);
        }
        self.rto_at
    }
}

/// The receiving end: in-order delivery counted in bytes, one ACK per segment.
#[derive(Debug, Default)]
pub struct RenoReceiver {
    next: u64,
    out_of_order: BTreeSet<u64>,
    /// ACKs waiting to go: (cumulative ack, triggering segment).
    pending: VecDeque<(u64, u64)>,
}

impl RenoReceiver {
    /// Payload bytes delivered in order so far.
    pub fn delivered_bytes(&self) -> u64 {
        self.next * MSS as u64
    }
}

impl Endpoint for RenoReceiver {
    fn handle_datagram(&mut self, _now: Instant, data: &[u8]) {
        let Some((KIND_DATA, seq, _)) = decode(data) else { return };
        if seq == self.next {
            self.next += 1;
            while self.out_of_order.remove(&self.next) {
                self.next += 1;
            }
        } else if seq > self.next && seq < self.next + RWND {
            self.out_of_order.insert(seq);
        }
        // Bounded: at most one ACK per segment received since the last poll.
        if self.pending.len() < RWND as usize {
            self.pending.push_back((self.next, seq));
        }
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_transmit(&mut self, _now: Instant, out: &mut Vec<u8>) -> Option<usize> {
        let (cum, trigger) = self.pending.pop_front()?;
        encode(KIND_ACK, cum, trigger, out);
        Some(ACK_WIRE)
    }

    fn next_deadline(&self) -> Option<Instant> {
        None
    }
}

fn encode(kind: u8, a: u64, b: u64, out: &mut Vec<u8>) {
    out.push(kind);
    out.extend_from_slice(&a.to_be_bytes());
    out.extend_from_slice(&b.to_be_bytes());
}

fn decode(data: &[u8]) -> Option<(u8, u64, u64)> {
    let (&kind, rest) = data.split_first()?;
    let a = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let b = u64::from_be_bytes(rest.get(8..16)?.try_into().ok()?);
    Some((kind, a, b))
}
