//! TEMPORARY stand-in for the sans-IO connection (`conn.rs`, branch utp-core) with the pinned
//! API, so the driver can be built and exercised before the real one is merged: go-back-N with
//! a fixed window, no SACK, no LEDBAT. Deleted at the merge.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::utp::header::{encode, seq_lt, Header, Packet, PacketType};

#[derive(Debug, Clone)]
pub struct LedbatConfig {
    pub target: Duration,
    pub gain: f64,
    pub min_window: usize,
    pub max_window: usize,
    pub base_history: Duration,
}

impl Default for LedbatConfig {
    fn default() -> Self {
        LedbatConfig {
            target: Duration::from_millis(100),
            gain: 1.0,
            min_window: 1400,
            max_window: 4 << 20,
            base_history: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub max_payload: usize,
    pub send_buffer: usize,
    pub recv_buffer: usize,
    pub ledbat: LedbatConfig,
    pub max_retransmits: u32,
    pub syn_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_payload: 1400,
            send_buffer: 1 << 20,
            recv_buffer: 1 << 20,
            ledbat: LedbatConfig::default(),
            max_retransmits: 6,
            syn_timeout: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    SynSent,
    SynRecv,
    Connected,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnError {
    #[error("connection reset by peer")]
    Reset,
    #[error("connection timed out")]
    TimedOut,
}

#[derive(Debug, Clone, Default)]
pub struct ConnStats {
    pub bytes_sent: u64,
    pub bytes_retransmitted: u64,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub retransmits: u64,
    pub fast_retransmits: u64,
    pub timeouts: u64,
    pub cwnd: usize,
    pub rtt: Duration,
    pub queuing_delay: Duration,
    pub bytes_delivered: u64,
}

struct Sent {
    seq: u16,
    kind: PacketType,
    payload: Vec<u8>,
    sent: bool,
}

pub struct Connection {
    config: Config,
    epoch: Instant,
    state: State,
    error: Option<ConnError>,
    recv_id: u16,
    send_id: u16,
    seq_nr: u16,
    ack_nr: u16,
    send_buf: VecDeque<u8>,
    inflight: VecDeque<Sent>,
    recv_buf: VecDeque<u8>,
    eof: bool,
    closing: bool,
    fin_queued: bool,
    ack_due: bool,
    reset_due: bool,
    peer_wnd: u32,
    reply_diff: u32,
    rto: Duration,
    rto_deadline: Option<Instant>,
    retries: u32,
    stats: ConnStats,
}

const WINDOW_PACKETS: usize = 64;

impl Connection {
    fn base(now: Instant, config: Config, recv_id: u16, send_id: u16, seq: u16, state: State) -> Connection {
        let rto = config.syn_timeout;
        Connection {
            config,
            epoch: now,
            state,
            error: None,
            recv_id,
            send_id,
            seq_nr: seq,
            ack_nr: 0,
            send_buf: VecDeque::new(),
            inflight: VecDeque::new(),
            recv_buf: VecDeque::new(),
            eof: false,
            closing: false,
            fin_queued: false,
            ack_due: false,
            reset_due: false,
            peer_wnd: 1 << 20,
            reply_diff: 0,
            rto,
            rto_deadline: None,
            retries: 0,
            stats: ConnStats::default(),
        }
    }

    pub fn connect(now: Instant, config: Config, recv_id: u16, initial_seq: u16) -> Connection {
        let mut c = Self::base(now, config, recv_id, recv_id.wrapping_add(1), initial_seq, State::SynSent);
        c.push(now, PacketType::Syn, Vec::new());
        c
    }

    pub fn accept(now: Instant, config: Config, syn: &Packet<'_>, initial_seq: u16) -> Connection {
        let id = syn.header.conn_id;
        let mut c = Self::base(now, config, id.wrapping_add(1), id, initial_seq, State::Connected);
        c.ack_nr = syn.header.seq;
        c.ack_due = true;
        c.rto = Duration::from_millis(500);
        c
    }

    pub fn recv_id(&self) -> u16 {
        self.recv_id
    }
    pub fn send_id(&self) -> u16 {
        self.send_id
    }

    fn push(&mut self, now: Instant, kind: PacketType, payload: Vec<u8>) {
        self.inflight.push_back(Sent { seq: self.seq_nr, kind, payload, sent: false });
        self.seq_nr = self.seq_nr.wrapping_add(1);
        if self.rto_deadline.is_none() {
            self.rto_deadline = Some(now + self.rto);
        }
    }

    fn ts(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.epoch).as_micros() as u32
    }

    pub fn handle_packet(&mut self, now: Instant, p: &Packet<'_>) {
        if self.state == State::Closed {
            return;
        }
        self.stats.packets_received += 1;
        let h = p.header;
        self.reply_diff = self.ts(now).wrapping_sub(h.ts_us);
        self.peer_wnd = h.wnd;
        match h.kind {
            PacketType::Reset => {
                self.state = State::Closed;
                self.error = Some(ConnError::Reset);
                return;
            }
            PacketType::Syn => {
                self.ack_due = true;
                return;
            }
            _ => {}
        }
        if self.state == State::SynSent {
            if h.kind != PacketType::State {
                return;
            }
            self.state = State::Connected;
            self.ack_nr = h.seq.wrapping_sub(1);
            self.rto = Duration::from_millis(500);
        }
        // Cumulative ack.
        let mut acked = false;
        while let Some(front) = self.inflight.front() {
            if front.seq == h.ack || seq_lt(front.seq, h.ack) {
                self.inflight.pop_front();
                acked = true;
            } else {
                break;
            }
        }
        if acked {
            self.retries = 0;
            self.rto_deadline = (!self.inflight.is_empty()).then(|| now + self.rto);
        }
        match h.kind {
            PacketType::Data | PacketType::Fin if h.seq == self.ack_nr.wrapping_add(1) && !self.eof => {
                if self.recv_buf.len() + p.payload.len() <= self.config.recv_buffer {
                    self.recv_buf.extend(p.payload);
                    self.stats.bytes_delivered += p.payload.len() as u64;
                    self.ack_nr = h.seq;
                    if h.kind == PacketType::Fin {
                        self.eof = true;
                    }
                }
                self.ack_due = true;
            }
            PacketType::Data | PacketType::Fin => self.ack_due = true,
            _ => {}
        }
        self.maybe_closed();
    }

    fn maybe_closed(&mut self) {
        if self.eof && self.fin_queued && self.inflight.is_empty() {
            self.state = State::Closed;
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(d) = self.rto_deadline else { return };
        if now < d || self.state == State::Closed {
            return;
        }
        self.retries += 1;
        self.stats.timeouts += 1;
        let limit = if self.state == State::SynSent { 3 } else { self.config.max_retransmits };
        if self.retries >= limit {
            self.state = State::Closed;
            self.error = Some(ConnError::TimedOut);
            self.rto_deadline = None;
            return;
        }
        for s in &mut self.inflight {
            s.sent = false;
        }
        self.rto *= 2;
        self.rto_deadline = Some(now + self.rto);
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        self.rto_deadline
    }

    fn inflight_bytes(&self) -> usize {
        self.inflight.iter().map(|s| s.payload.len()).sum()
    }

    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        if self.reset_due {
            self.reset_due = false;
            self.emit(now, PacketType::Reset, self.seq_nr, &[], out);
            return true;
        }
        if self.state == State::Closed {
            // The last ACK (of the peer's FIN) still goes out.
            if self.ack_due && self.error.is_none() {
                self.ack_due = false;
                self.emit(now, PacketType::State, self.seq_nr, &[], out);
                return true;
            }
            return false;
        }
        let window = (WINDOW_PACKETS * self.config.max_payload).min(self.peer_wnd.max(1) as usize);
        if self.state == State::Connected
            && !self.send_buf.is_empty()
            && self.inflight.iter().all(|s| s.sent)
            && self.inflight_bytes() < window
        {
            let n = self.send_buf.len().min(self.config.max_payload);
            let payload: Vec<u8> = self.send_buf.drain(..n).collect();
            self.push(now, PacketType::Data, payload);
        }
        if self.state == State::Connected && self.closing && !self.fin_queued && self.send_buf.is_empty() {
            self.fin_queued = true;
            self.push(now, PacketType::Fin, Vec::new());
        }
        if let Some(i) = self.inflight.iter().position(|s| !s.sent) {
            let (seq, kind, payload) = {
                let s = &mut self.inflight[i];
                s.sent = true;
                (s.seq, s.kind, std::mem::take(&mut s.payload))
            };
            self.emit(now, kind, seq, &payload, out);
            self.stats.bytes_sent += payload.len() as u64;
            self.inflight[i].payload = payload;
            self.ack_due = false;
            return true;
        }
        if self.ack_due {
            self.ack_due = false;
            self.emit(now, PacketType::State, self.seq_nr, &[], out);
            return true;
        }
        false
    }

    fn emit(&mut self, now: Instant, kind: PacketType, seq: u16, payload: &[u8], out: &mut Vec<u8>) {
        let conn_id = if kind == PacketType::Syn { self.recv_id } else { self.send_id };
        let wnd = self.config.recv_buffer.saturating_sub(self.recv_buf.len()) as u32;
        let h = Header { kind, conn_id, ts_us: self.ts(now), ts_diff_us: self.reply_diff, wnd, seq, ack: self.ack_nr };
        encode(&h, None, payload, out);
        self.stats.packets_sent += 1;
    }

    pub fn write(&mut self, data: &[u8]) -> usize {
        if self.closing || self.state == State::Closed {
            return 0;
        }
        let used = self.send_buf.len() + self.inflight_bytes();
        let n = self.config.send_buffer.saturating_sub(used).min(data.len());
        self.send_buf.extend(&data[..n]);
        n
    }

    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let before = self.recv_buf.len();
        let n = before.min(buf.len());
        for (d, s) in buf.iter_mut().zip(self.recv_buf.drain(..n)) {
            *d = s;
        }
        // Tell the peer when the window reopens from (nearly) closed.
        if n > 0 && before + self.config.max_payload > self.config.recv_buffer {
            self.ack_due = true;
        }
        n
    }

    pub fn at_eof(&self) -> bool {
        self.eof && self.recv_buf.is_empty()
    }

    pub fn close(&mut self) {
        self.closing = true;
    }

    pub fn reset(&mut self) {
        if self.state != State::Closed {
            self.reset_due = true;
            self.state = State::Closed;
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn error(&self) -> Option<ConnError> {
        self.error
    }

    pub fn writable(&self) -> bool {
        !self.closing
            && matches!(self.state, State::Connected | State::SynRecv)
            && self.send_buf.len() + self.inflight_bytes() < self.config.send_buffer
    }

    pub fn all_acked(&self) -> bool {
        self.send_buf.is_empty() && self.inflight.is_empty() && (!self.closing || self.fin_queued)
    }

    pub fn stats(&self) -> ConnStats {
        self.stats.clone()
    }
}
