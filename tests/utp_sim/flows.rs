//! The production uTP connection (src/utp/conn.rs) as simulator endpoints, each side also
//! playing its application: the sender writes a deterministic byte pattern as fast as the
//! connection takes it and closes, the receiver reads everything at once and checks every byte
//! against the pattern, so "arrived byte-exact" needs no copy of the data.

use std::time::Instant;

use kadswarm::utp::conn::{Config, ConnStats, Connection, State};
use kadswarm::utp::header::{Packet, PacketType};

use super::harness::Endpoint;

/// IPv4 + UDP headers under every uTP datagram, counted on the simulated wire.
pub const UDP_IP_OVERHEAD: usize = 28;
/// The connection id the sender asks the receiver to use (arbitrary but fixed: deterministic).
const CONN_ID: u16 = 0x4b53;

/// Byte `offset` of the test stream: a mixing function of its 8-byte word, so shifted,
/// repeated or swapped chunks never look right.
fn pattern_word(word: u64) -> u64 {
    let mut z = word.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn fill_pattern(offset: u64, buf: &mut [u8]) {
    let mut at = offset;
    let mut rest = buf;
    while !rest.is_empty() {
        let word = pattern_word(at / 8).to_le_bytes();
        let skip = (at % 8) as usize;
        let n = (8 - skip).min(rest.len());
        rest[..n].copy_from_slice(&word[skip..skip + n]);
        rest = &mut rest[n..];
        at += n as u64;
    }
}

fn datagram(data: &[u8]) -> Option<Packet<'_>> {
    Packet::parse(data).ok()
}

pub struct UtpSender {
    conn: Connection,
    /// Bytes to send before closing; `None` sends forever.
    total: Option<u64>,
    written: u64,
    closed: bool,
    /// Pattern bytes from stream offset `chunk_at` on, generated once and written as the
    /// connection takes them (it usually takes one packet's worth per ack).
    chunk: Vec<u8>,
    chunk_at: u64,
}

impl UtpSender {
    pub fn new(now: Instant, config: Config, total: Option<u64>) -> UtpSender {
        UtpSender {
            conn: Connection::connect(now, config, CONN_ID, 0x1234),
            total,
            written: 0,
            closed: false,
            chunk: Vec::new(),
            chunk_at: 0,
        }
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    pub fn stats(&self) -> ConnStats {
        self.conn.stats()
    }

    /// The application: keep the send buffer full, close after the last byte.
    fn pump(&mut self) {
        if self.conn.state() == State::Closed {
            return;
        }
        // Bounded: each round either fills the buffer, finishes the stream, or stops.
        for _ in 0..1024 {
            let left = self.total.map_or(u64::MAX, |t| t - self.written);
            if left == 0 || !self.conn.writable() {
                break;
            }
            if self.written == self.chunk_at + self.chunk.len() as u64 {
                self.chunk.resize(left.min(64 * 1024) as usize, 0);
                self.chunk_at = self.written;
                fill_pattern(self.chunk_at, &mut self.chunk);
            }
            let n = self.conn.write(&self.chunk[(self.written - self.chunk_at) as usize..]);
            self.written += n as u64;
            if n == 0 {
                break;
            }
        }
        if self.total == Some(self.written) && !self.closed && self.conn.state() == State::Connected {
            self.conn.close();
            self.closed = true;
        }
    }
}

impl Endpoint for UtpSender {
    fn handle_datagram(&mut self, now: Instant, data: &[u8]) {
        if let Some(packet) = datagram(data) {
            self.conn.handle_packet(now, &packet);
        }
        self.pump();
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.conn.handle_timeout(now);
        self.pump();
    }

    fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<usize> {
        self.pump();
        self.conn.poll_transmit(now, out).then(|| out.len() + UDP_IP_OVERHEAD)
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.conn.next_deadline()
    }
}

pub struct UtpReceiver {
    config: Config,
    conn: Option<Connection>,
    received: u64,
    /// Offset of the first byte that differed from the pattern.
    first_mismatch: Option<u64>,
    buf: Vec<u8>,
    expect: Vec<u8>,
    closed: bool,
}

impl UtpReceiver {
    pub fn new(config: Config) -> UtpReceiver {
        UtpReceiver {
            config,
            conn: None,
            received: 0,
            first_mismatch: None,
            buf: vec![0; 64 * 1024],
            expect: vec![0; 64 * 1024],
            closed: false,
        }
    }

    pub fn conn(&self) -> Option<&Connection> {
        self.conn.as_ref()
    }

    /// In-order bytes the application has read.
    pub fn received(&self) -> u64 {
        self.received
    }

    pub fn first_mismatch(&self) -> Option<u64> {
        self.first_mismatch
    }

    pub fn at_eof(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.at_eof())
    }

    /// The application: read whatever is ready and check it; close once the peer's FIN is in.
    fn drain(&mut self) {
        let Some(conn) = self.conn.as_mut() else { return };
        for _ in 0..1024 {
            let n = conn.read(&mut self.buf);
            if n == 0 {
                break;
            }
            fill_pattern(self.received, &mut self.expect[..n]);
            if self.first_mismatch.is_none() {
                if let Some(i) = self.buf[..n].iter().zip(&self.expect[..n]).position(|(a, b)| a != b) {
                    self.first_mismatch = Some(self.received + i as u64);
                }
            }
            self.received += n as u64;
        }
        if conn.at_eof() && !self.closed {
            conn.close();
            self.closed = true;
        }
    }
}

impl Endpoint for UtpReceiver {
    fn handle_datagram(&mut self, now: Instant, data: &[u8]) {
        let Some(packet) = datagram(data) else { return };
        match self.conn.as_mut() {
            Some(conn) => conn.handle_packet(now, &packet),
            None if packet.header.kind == PacketType::Syn => {
                self.conn = Some(Connection::accept(now, self.config.clone(), &packet, 0x8000));
            }
            None => {}
        }
        self.drain();
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let Some(conn) = self.conn.as_mut() {
            conn.handle_timeout(now);
        }
        self.drain();
    }

    fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<usize> {
        self.drain();
        let conn = self.conn.as_mut()?;
        conn.poll_transmit(now, out).then(|| out.len() + UDP_IP_OVERHEAD)
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.conn.as_ref().and_then(|c| c.next_deadline())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_position_dependent() {
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        fill_pattern(0, &mut a);
        fill_pattern(5, &mut b[5..]);
        assert_eq!(a[5..], b[5..], "a chunk is the same wherever the write was cut");
        fill_pattern(8, &mut b);
        assert_ne!(a, b);
    }
}
