//! One uTP connection (BEP 29) as a sans-IO state machine: packets and the time go in,
//! datagrams and a deadline come out, in the shape of quinn-proto. The connection never reads
//! the clock or touches a socket; the driver calls [`Connection::handle_packet`] for each
//! datagram the multiplexer routes here, [`Connection::handle_timeout`] when
//! [`Connection::next_deadline`] passes, and then [`Connection::poll_transmit`] until it returns
//! false (also after `write`, `read`, `close` and `reset`, which may queue a packet).
//!
//! What it owns: the handshake (SYN / STATE, with the BEP's connection ids: the initiator
//! receives on `id` and sends on `id + 1`), reliable in-order delivery with selective ACKs, the
//! retransmission timer of the BEP (rtt + 4 * rtt_var, at least 500 ms, doubled per timeout),
//! fast retransmit on three duplicate acks or selective-ACK evidence, the peer's advertised
//! window with a zero-window probe, Nagle-like coalescing of small writes, LEDBAT congestion
//! control ([`super::ledbat`]), and closing by FIN (each side's FIN has its own sequence
//! number) or RESET. Timestamps on the wire are microseconds since the connection was made.

use std::time::{Duration, Instant};

use thiserror::Error;

use super::header::{seq_lt, Packet, PacketType};
use super::ledbat::{Ledbat, LedbatConfig};
use super::recv_buffer::RecvBuffer;
use super::send_buffer::{Rtt, SendBuffer};

/// SYN transmissions before an outgoing connection gives up.
const SYN_TRIES: u32 = 3;
/// Packets in flight at most: libutp peers drop packets more than 1023 ahead of their ack.
const MAX_INFLIGHT_PACKETS: usize = 1000;
/// Duplicate acks that make the oldest packet lost.
const DUP_ACKS: u32 = 3;
const MAX_RTO: Duration = Duration::from_secs(60);
/// An idle connection sends a STATE this often, as libutp does, so NAT mappings stay open.
const KEEPALIVE: Duration = Duration::from_secs(29);
/// After our FIN is acked, how long a silent peer may take to send its own. A live peer is
/// never this quiet: it sends keepalives, and backs off its retransmissions to MAX_RTO at most.
const CLOSE_IDLE: Duration = Duration::from_secs(180);
/// How long we keep answering the peer's FIN after both sides are done, when it may not have
/// seen our ack of it.
const MAX_LINGER: Duration = Duration::from_secs(5);
const MAX_PERSIST: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct Config {
    /// Payload bytes per DATA packet we send.
    pub max_payload: usize,
    /// Bytes `write` accepts that are not yet acked.
    pub send_buffer: usize,
    /// Bytes we buffer for the application (the window we advertise).
    pub recv_buffer: usize,
    pub ledbat: LedbatConfig,
    /// Consecutive retransmission timeouts before the connection times out.
    pub max_retransmits: u32,
    /// First SYN timeout, doubled per retry; the SYN is given up after three tries.
    pub syn_timeout: Duration,
    /// How long an accepted connection waits for the first packet after the SYN (a repeated
    /// SYN restarts the wait). Short, because a spoofed SYN costs its sender nothing and holds
    /// a table slot this long: the connecting side sends at once (the BitTorrent handshake,
    /// or a bare STATE) and resends its data on its own timer, so a live peer is heard from
    /// within a few round trips.
    pub syn_recv_timeout: Duration,
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
            syn_recv_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    SynSent,
    SynRecv,
    Connected,
    /// Done, cleanly or not (see [`Connection::error`]).
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ConnError {
    #[error("connection reset by peer")]
    Reset,
    #[error("connection timed out")]
    TimedOut,
}

#[derive(Debug, Clone, Default)]
pub struct ConnStats {
    /// Payload bytes sent for the first time.
    pub bytes_sent: u64,
    pub bytes_retransmitted: u64,
    pub packets_sent: u64,
    /// Packets that passed validation.
    pub packets_received: u64,
    /// Packets sent again, for any reason.
    pub retransmits: u64,
    /// Of those, sent again because duplicate or selective acks showed them lost.
    pub fast_retransmits: u64,
    pub timeouts: u64,
    pub cwnd: usize,
    pub rtt: Duration,
    pub queuing_delay: Duration,
    /// In-order payload bytes received.
    pub bytes_delivered: u64,
    /// Bytes the receive buffer holds allocated now.
    pub recv_memory: usize,
}

pub struct Connection {
    config: Config,
    epoch: Instant,
    state: State,
    error: Option<ConnError>,
    recv_id: u16,
    send_id: u16,
    /// Acceptor: the sequence number of the peer's SYN, answered again if it comes again.
    peer_syn_seq: Option<u16>,
    send: SendBuffer,
    recv: RecvBuffer,
    ledbat: Ledbat,
    rtt: Rtt,
    /// The peer's last advertised window.
    peer_wnd: usize,
    /// Our receive time minus the peer's timestamp, of the last packet: sent back as ts_diff.
    reply_micro: u32,
    ack_pending: bool,
    reset_pending: bool,
    rto_deadline: Option<Instant>,
    timeouts_in_row: u32,
    dup_acks: u32,
    persist_deadline: Option<Instant>,
    persist_backoff: u32,
    /// The persist timer fired: one packet may go out despite a zero window.
    probe: bool,
    /// Bytes before this offset go out without waiting to fill a packet.
    flush_to: u64,
    closing: bool,
    fin_sent: bool,
    fin_acked: bool,
    peer_saw_fin_ack: bool,
    linger_until: Option<Instant>,
    last_recv: Instant,
    last_send: Instant,
    last_adv_wnd: usize,
    stats: ConnStats,
}

impl Connection {
    fn new(now: Instant, config: Config, recv_id: u16, send_id: u16, initial_seq: u16, ack_nr: u16) -> Connection {
        // The window never holds less than one of our packets.
        let min_window = config.ledbat.min_window.max(config.max_payload).max(1);
        let ledbat = Ledbat::new(LedbatConfig { min_window, ..config.ledbat.clone() });
        Connection {
            epoch: now,
            state: State::SynSent,
            error: None,
            recv_id,
            send_id,
            peer_syn_seq: None,
            send: SendBuffer::new(initial_seq),
            recv: RecvBuffer::new(config.recv_buffer, ack_nr),
            ledbat,
            rtt: Rtt::default(),
            peer_wnd: config.max_payload,
            reply_micro: 0,
            ack_pending: false,
            reset_pending: false,
            rto_deadline: None,
            timeouts_in_row: 0,
            dup_acks: 0,
            persist_deadline: None,
            persist_backoff: 0,
            probe: false,
            flush_to: 0,
            closing: false,
            fin_sent: false,
            fin_acked: false,
            peer_saw_fin_ack: false,
            linger_until: None,
            last_recv: now,
            last_send: now,
            last_adv_wnd: config.recv_buffer,
            stats: ConnStats::default(),
            config,
        }
    }

    /// Outgoing: queues a SYN. `recv_id` is the id the peer will put on its packets; we send
    /// with `recv_id + 1`.
    pub fn connect(now: Instant, config: Config, recv_id: u16, initial_seq: u16) -> Connection {
        let mut c = Connection::new(now, config, recv_id, recv_id.wrapping_add(1), initial_seq, 0);
        let i = c.send.push(PacketType::Syn, 0, now);
        c.send.mark_lost(i, false);
        c
    }

    /// Incoming: built from the peer's SYN. We send with its connection id and receive on that
    /// id + 1; the STATE that answers it is queued.
    pub fn accept(now: Instant, config: Config, syn: &Packet<'_>, initial_seq: u16) -> Connection {
        let h = &syn.header;
        let mut c = Connection::new(now, config, h.conn_id.wrapping_add(1), h.conn_id, initial_seq, h.seq);
        c.state = State::SynRecv;
        c.peer_syn_seq = Some(h.seq);
        c.peer_wnd = h.wnd as usize;
        c.reply_micro = c.now_us(now).wrapping_sub(h.ts_us);
        c.ack_pending = true;
        c
    }

    pub fn recv_id(&self) -> u16 {
        self.recv_id
    }

    pub fn send_id(&self) -> u16 {
        self.send_id
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn error(&self) -> Option<ConnError> {
        self.error
    }

    fn now_us(&self, now: Instant) -> u32 {
        // Zero means "no timestamp" to libutp's delay measurement.
        (now.saturating_duration_since(self.epoch).as_micros() as u32).max(1)
    }

    fn rto(&self) -> Duration {
        self.rtt.rto()
    }

    fn backoff_rto(&self, backoffs: u32) -> Duration {
        self.rto().saturating_mul(1 << backoffs.min(16)).min(MAX_RTO)
    }

    /// What we may have in flight: the congestion window and the peer's window.
    fn window(&self) -> usize {
        self.ledbat.window().min(self.peer_wnd)
    }

    fn fail(&mut self, error: ConnError) {
        self.state = State::Closed;
        self.error = Some(error);
    }

    pub fn handle_packet(&mut self, now: Instant, packet: &Packet<'_>) {
        if self.state == State::Closed {
            return;
        }
        let h = &packet.header;
        match h.kind {
            PacketType::Reset => {
                // libutp addresses a RESET with either of the connection's ids.
                if h.conn_id == self.recv_id || h.conn_id == self.send_id {
                    self.fail(ConnError::Reset);
                }
                return;
            }
            PacketType::Syn => {
                // Our STATE answer was lost and the peer tries again.
                if self.state == State::SynRecv && h.conn_id == self.send_id && self.peer_syn_seq == Some(h.seq) {
                    self.ack_pending = true;
                    self.last_recv = now;
                }
                return;
            }
            PacketType::Data | PacketType::Fin | PacketType::State => {}
        }
        if h.conn_id != self.recv_id {
            return;
        }
        // An ack of something we never sent is a spoof or a bug: drop the whole packet.
        let last_sent = self.send.next_seq().wrapping_sub(1);
        if seq_lt(last_sent, h.ack) {
            return;
        }
        match self.state {
            State::SynSent => {
                if h.ack != last_sent {
                    return;
                }
                // The STATE answering our SYN carries the peer's next sequence number.
                self.state = State::Connected;
                self.recv.set_ack_nr(h.seq.wrapping_sub(1));
                // Completes the handshake for an acceptor that waits before sending data.
                self.ack_pending = true;
            }
            State::SynRecv => self.state = State::Connected,
            State::Connected | State::Closed => {}
        }
        self.stats.packets_received += 1;
        self.last_recv = now;
        self.reply_micro = self.now_us(now).wrapping_sub(h.ts_us);
        // An ack older than one we already had arrived late; its window and selective ACK are
        // stale too, but its payload is good.
        if !seq_lt(h.ack, self.send.una().wrapping_sub(1)) {
            self.on_ack(now, packet);
        }
        match h.kind {
            PacketType::Data => {
                self.recv.on_data(h.seq, packet.payload);
                self.ack_pending = true;
            }
            PacketType::Fin => {
                self.recv.on_fin(h.seq);
                self.ack_pending = true;
            }
            _ => {}
        }
        self.check_done(now);
    }

    fn on_ack(&mut self, now: Instant, packet: &Packet<'_>) {
        let h = &packet.header;
        let window_update = self.peer_wnd != h.wnd as usize;
        self.peer_wnd = h.wnd as usize;
        if self.peer_wnd > 0 {
            self.persist_deadline = None;
            self.persist_backoff = 0;
        }
        let flight_before = self.send.flight();
        let mut bytes = 0;
        let mut lost = 0;
        if seq_lt(self.send.una().wrapping_sub(1), h.ack) {
            let acked = self.send.ack_upto(h.ack, now, &mut self.rtt);
            bytes += acked.bytes;
            self.fin_acked |= acked.fin;
            self.peer_saw_fin_ack |= acked.peer_saw_fin_ack;
            self.timeouts_in_row = 0;
            self.dup_acks = 0;
            self.rto_deadline = (self.send.packets() > 0).then(|| now + self.rto());
        } else if h.kind == PacketType::State && !window_update && self.send.packets() > 0 {
            // Only pure acks count: a data packet repeats the ack for its own reasons, and a
            // window update is news, not a sign of a hole.
            self.dup_acks += 1;
            let front_fresh = self.send.get(0).is_some_and(|p| p.transmissions == 1);
            if self.dup_acks == DUP_ACKS && front_fresh && self.send.mark_lost(0, true) {
                lost += 1;
            }
        }
        if let Some(mask) = packet.sack {
            let (b, l) = self.send.selective_ack(mask, now, &mut self.rtt);
            bytes += b;
            lost += l;
        }
        // Every packet but a SYN carries a real delay measurement (a peer answers a SYN only
        // after timing it), and acks of data never come on a SYN, so even 0 is a sample here.
        if bytes > 0 {
            self.ledbat.on_ack(now, bytes, h.ts_diff_us, flight_before);
        }
        if lost > 0 {
            self.ledbat.on_loss();
        }
    }

    /// Both directions finished: close, or linger while the peer may still resend its FIN.
    fn check_done(&mut self, now: Instant) {
        if self.state != State::Connected || !self.fin_acked || !self.recv.eof() {
            return;
        }
        if self.peer_saw_fin_ack {
            self.state = State::Closed;
        } else if self.linger_until.is_none() {
            self.linger_until = Some(now + (self.rto() * 2).min(MAX_LINGER));
        }
    }

    /// Runs the timers that are due; safe to call at any time.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        if self.linger_until.is_some_and(|t| now >= t) {
            self.state = State::Closed;
            return;
        }
        if self.rto_deadline.is_some_and(|t| now >= t) {
            self.on_rto(now);
            if self.state == State::Closed {
                return;
            }
        }
        if self.persist_deadline.is_some_and(|t| now >= t) {
            self.persist_deadline = None;
            self.persist_backoff += 1;
            self.probe = true;
        }
        match self.state {
            State::SynRecv if now >= self.last_recv + self.syn_recv_timeout() => self.fail(ConnError::TimedOut),
            State::Connected => {
                if now >= self.last_send + KEEPALIVE {
                    self.ack_pending = true;
                }
                if self.fin_acked && !self.recv.eof() && now >= self.last_recv + CLOSE_IDLE {
                    self.state = State::Closed;
                }
            }
            _ => {}
        }
    }

    fn syn_recv_timeout(&self) -> Duration {
        self.config.syn_recv_timeout
    }

    fn on_rto(&mut self, now: Instant) {
        self.rto_deadline = None;
        let Some(front) = self.send.get(0) else { return };
        if self.state == State::SynSent {
            let tries = front.transmissions;
            if tries >= SYN_TRIES {
                self.fail(ConnError::TimedOut);
                return;
            }
            self.stats.timeouts += 1;
            self.send.mark_lost(0, false);
            self.rto_deadline = Some(now + self.config.syn_timeout.saturating_mul(1 << tries.min(16)).min(MAX_RTO));
            return;
        }
        // The peer is alive (it answered after we sent) but said it has no room: this is a
        // zero-window probe going unanswered, not a dead path.
        let zero_window = self.peer_wnd < front.len as usize && self.last_recv >= front.sent_at;
        if zero_window {
            // It answered since we last sent, so the path is alive whatever came before.
            self.timeouts_in_row = 0;
            self.send.mark_lost(0, false);
            self.persist_backoff += 1;
            self.rto_deadline = Some(now + self.backoff_rto(self.persist_backoff).min(MAX_PERSIST));
            return;
        }
        if self.timeouts_in_row >= self.config.max_retransmits {
            self.fail(ConnError::TimedOut);
            return;
        }
        self.timeouts_in_row += 1;
        self.stats.timeouts += 1;
        self.ledbat.on_timeout();
        self.send.mark_all_lost();
        self.dup_acks = 0;
        self.rtt.back_off();
        self.rto_deadline = Some(now + self.rto());
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let mut deadlines = [self.rto_deadline, self.persist_deadline, self.linger_until, None, None];
        match self.state {
            State::Closed => return None,
            State::SynRecv => deadlines[3] = Some(self.last_recv + self.syn_recv_timeout()),
            State::Connected => {
                deadlines[3] = Some(self.last_send + KEEPALIVE);
                if self.fin_acked && !self.recv.eof() {
                    deadlines[4] = Some(self.last_recv + CLOSE_IDLE);
                }
            }
            State::SynSent => {}
        }
        deadlines.into_iter().flatten().min()
    }

    /// Changes the payload of the DATA packets made from now on; packets already made (and
    /// their retransmissions) keep their size. The driver raises it once a loopback peer has
    /// said it reads bigger datagrams. The congestion window's floor stays one packet of the
    /// size the connection started with: with nothing in flight one packet always goes.
    pub fn set_max_payload(&mut self, max_payload: usize) {
        self.config.max_payload = max_payload.max(1);
    }

    /// Bytes taken into the send buffer (0 when full, or after `close`).
    pub fn write(&mut self, data: &[u8]) -> usize {
        if !self.writable() {
            return 0;
        }
        self.send.write(data, self.config.send_buffer)
    }

    /// Sends what was written so far without waiting to fill a packet.
    pub fn flush(&mut self) {
        self.flush_to = self.send.end_offset();
    }

    /// In-order bytes delivered into `buf` (0 when none are ready).
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let n = self.recv.read(buf);
        // A peer that saw our window shrink waits for news that it reopened.
        let step = (self.config.recv_buffer / 4).max(1);
        // After the peer's FIN nothing more will come, so news of the window is noise.
        if n > 0
            && self.state != State::Closed
            && !self.recv.eof()
            && self.recv.window() >= self.last_adv_wnd.saturating_add(step)
        {
            self.ack_pending = true;
        }
        n
    }

    /// True when the peer's FIN arrived and every byte before it has been read.
    pub fn at_eof(&self) -> bool {
        self.recv.eof() && self.recv.readable() == 0
    }

    /// Queues a FIN after everything written so far.
    pub fn close(&mut self) {
        self.closing = true;
    }

    /// Abort: queues a RESET; the state becomes Closed.
    pub fn reset(&mut self) {
        if self.state != State::Closed {
            self.state = State::Closed;
            self.reset_pending = true;
        }
    }

    /// True when `write` would accept at least one byte.
    pub fn writable(&self) -> bool {
        self.state != State::Closed && !self.closing && self.send.buffered() < self.config.send_buffer
    }

    /// True when every written byte (and our FIN if closing) has been acked.
    pub fn all_acked(&self) -> bool {
        self.send.buffered() == 0 && self.send.packets() == 0 && (!self.closing || self.fin_acked)
    }

    pub fn stats(&self) -> ConnStats {
        ConnStats {
            cwnd: self.ledbat.window(),
            rtt: self.rtt.rtt(),
            queuing_delay: self.ledbat.queuing_delay(),
            bytes_delivered: self.recv.delivered(),
            recv_memory: self.recv.memory(),
            ..self.stats.clone()
        }
    }
}

mod transmit;

#[cfg(test)]
mod tests;
