//! The sending side of the uTP connection's state machine (BEP 29): which datagram goes out
//! next (a retransmission, new data within the congestion and advertised windows with Nagle-like
//! coalescing, our FIN, or a bare STATE ack) and how it is encoded with the current ack,
//! selective ACK, window and timestamps.

use std::time::Instant;

use super::{Connection, State, MAX_INFLIGHT_PACKETS, MAX_PERSIST, MAX_RTO};
use crate::utp::header::{self, Header, PacketType};

impl Connection {
    /// Appends one datagram to `out` (which the caller cleared) and returns true, or returns
    /// false when nothing is due now.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        if self.state == State::Closed {
            if self.reset_pending {
                self.reset_pending = false;
                self.encode(now, PacketType::Reset, self.send.next_seq(), out);
                return true;
            }
            return false;
        }
        if let Some(i) = self.send.next_resend() {
            if let Some(p) = self.send.get(i) {
                // The oldest packet goes out regardless of windows: everything waits on it.
                let fits = i == 0 || self.send.flight() + p.len as usize <= self.window();
                let may = self.state == State::Connected || p.kind == PacketType::Syn;
                if fits && may {
                    self.transmit(now, i, out);
                    return true;
                }
            }
        } else if let Some(len) = self.next_data_len(now) {
            let i = self.send.push(PacketType::Data, len, now);
            self.transmit(now, i, out);
            return true;
        } else if self.closing
            && !self.fin_sent
            && self.state == State::Connected
            && self.send.unsent() == 0
            && self.send.packets() < MAX_INFLIGHT_PACKETS
        {
            self.fin_sent = true;
            let i = self.send.push(PacketType::Fin, 0, now);
            self.transmit(now, i, out);
            return true;
        }
        if self.ack_pending {
            self.encode(now, PacketType::State, self.send.next_seq(), out);
            return true;
        }
        false
    }

    /// Size of the next new DATA packet, if one may go out now.
    fn next_data_len(&mut self, now: Instant) -> Option<usize> {
        let unsent = self.send.unsent();
        if self.state != State::Connected || unsent == 0 || self.send.packets() >= MAX_INFLIGHT_PACKETS {
            return None;
        }
        let len = unsent.min(self.config.max_payload);
        // Coalescing: a short packet waits for more bytes while anything is unacked, unless
        // the application flushed or closed.
        let idle = self.send.packets() == 0;
        if len < self.config.max_payload && !idle && !self.closing && self.flush_to <= self.send.next_offset() {
            return None;
        }
        if self.send.flight() + len <= self.window() {
            return Some(len);
        }
        if !idle {
            // Acks of what is in flight will open the window.
            return None;
        }
        // With nothing in flight the congestion window always admits one packet; only the
        // peer's window can be too small.
        if self.peer_wnd > 0 {
            return Some(len.min(self.peer_wnd));
        }
        if self.probe {
            self.probe = false;
            return Some(len);
        }
        if self.persist_deadline.is_none() {
            self.persist_deadline = Some(now + self.backoff_rto(self.persist_backoff).min(MAX_PERSIST));
        }
        None
    }

    fn transmit(&mut self, now: Instant, i: usize, out: &mut Vec<u8>) {
        let acks_peer_fin = self.recv.eof();
        let seq = self.send.seq_of(i);
        let Some(before) = self.send.get(i) else { return };
        let (retransmission, fast) = (before.transmissions > 0, before.fast);
        let p = self.send.transmit(i, now, acks_peer_fin);
        let (kind, off, len) = (p.kind, p.off, p.len);
        if retransmission {
            self.stats.retransmits += 1;
            self.stats.bytes_retransmitted += len as u64;
            self.stats.fast_retransmits += fast as u64;
        } else {
            self.stats.bytes_sent += len as u64;
        }
        out.reserve(header::HEADER_LEN + 34 + len as usize);
        self.encode(now, kind, seq, out);
        self.send.payload(off, len, out);
        if self.rto_deadline.is_none() {
            let rto = if kind == PacketType::Syn { self.config.syn_timeout.min(MAX_RTO) } else { self.rto() };
            self.rto_deadline = Some(now + rto);
        }
    }

    /// Appends a header (and our selective ACK) carrying the current ack, window and timestamps.
    fn encode(&mut self, now: Instant, kind: PacketType, seq: u16, out: &mut Vec<u8>) {
        let wnd = self.recv.window();
        let syn = kind == PacketType::Syn;
        let header = Header {
            kind,
            // A SYN names the id the peer must answer to; everything else the peer's id.
            conn_id: if syn { self.recv_id } else { self.send_id },
            ts_us: self.now_us(now),
            ts_diff_us: self.reply_micro,
            wnd: wnd.min(u32::MAX as usize) as u32,
            seq,
            ack: if syn { 0 } else { self.recv.ack_nr() },
        };
        let sack = if syn { None } else { self.recv.sack() };
        header::encode(&header, sack, &[], out);
        self.ack_pending = false;
        self.last_adv_wnd = wnd;
        self.last_send = now;
        self.stats.packets_sent += 1;
    }
}
