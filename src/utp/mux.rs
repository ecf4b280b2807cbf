//! The table of uTP connections that share one UDP socket (BEP 29 "connection setup"): which
//! connection a datagram belongs to, which SYN starts a new one, what an unknown connection id
//! gets back (a rate-limited RESET), and which connection sends next.
//!
//! Connections are keyed by (peer address, the connection id the peer puts on its packets).
//! The table is sans-IO and polled like the DHT node: datagrams and `now` go in
//! ([`Mux::handle_datagram`], [`Mux::handle_timeout`]), datagrams come out of
//! [`Mux::poll_transmit`] and wake-ups of waiting streams out of [`Mux::poll_wake`], and
//! [`Mux::next_deadline`] says when to call again. It never awaits, never reads the clock and
//! holds no wakers: the socket's owner task (`net::udp_endpoint`) and the stream side
//! ([`super::socket`], [`super::stream`]) do.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::utp::conn::{Config, ConnError, ConnStats, Connection, State};
use crate::utp::header::{encode, Header, Packet, PacketType, HEADER_LEN};
use crate::utp::jumbo;
use limits::Limits;

/// The biggest datagram our readers take (their buffers are 64 KiB; this is UDP's limit).
pub const MAX_DATAGRAM: u16 = 65_507;

/// (peer address, connection id on the packets it sends us).
pub type Key = (SocketAddr, u16);

/// A stream that waited may go on: what [`Mux::poll_wake`] hands out. Only a stream that was
/// told to wait (a read, write, connect or accept that returned `None`) is ever named, once
/// per wait, so there are at most two per connection and one for `accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    Read(Key),
    Write(Key),
    Accept,
}

#[derive(Debug, Clone)]
pub struct MuxConfig {
    /// The connection settings; `max_payload` is replaced per destination.
    pub conn: Config,
    /// Payload per packet to peers on the Internet: 1400 bytes fit a 1500-byte MTU with the
    /// IP, UDP and uTP headers and a SACK.
    pub payload: usize,
    /// Payload per packet to loopback peers whose SYN said they read big datagrams (see
    /// [`super::jumbo`]): the loopback MTU is 64 KiB and bigger datagrams cost far less CPU per
    /// byte. Other loopback peers (libtorrent reads 1500-byte datagrams) get `payload`.
    pub loopback_payload: usize,
    /// Connections at most (all states); SYNs beyond it are refused with a RESET.
    pub max_connections: usize,
    /// Of those, how many incoming connections may never take: a SYN flood must not stop our
    /// own dials.
    pub reserved_for_dials: usize,
    /// Incoming connections from one host (an IPv4 address, an IPv6 /64) at most.
    pub max_per_ip: usize,
    /// Of those, how many may be half-open (SYN received, nothing after it) at once.
    pub max_half_open_per_ip: usize,
    /// Incoming connections waiting for `accept` at most.
    pub accept_backlog: usize,
    /// Take incoming connections at all (false: every SYN gets a RESET).
    pub accept_incoming: bool,
    /// RESETs sent to unknown connection ids per second at most (a burst of as many).
    pub resets_per_sec: u32,
    /// Bytes of RESETs (and lingering connections' last words) waiting for the owner task to
    /// send them; beyond it they are dropped and counted. Connections' own packets never
    /// queue here: they stay in their send buffers until the owner polls them.
    pub queue_bytes: usize,
    /// How long a connection whose handle was dropped may take to deliver its FIN.
    pub linger: Duration,
}

impl Default for MuxConfig {
    fn default() -> Self {
        MuxConfig {
            conn: Config::default(),
            payload: 1400,
            loopback_payload: 32 * 1024,
            max_connections: 1000,
            reserved_for_dials: 200,
            // A client has one connection per torrent it shares with us; a host with more
            // parks up to this many receive windows with us.
            max_per_ip: 32,
            max_half_open_per_ip: 8,
            accept_backlog: 64,
            accept_incoming: true,
            resets_per_sec: 100,
            queue_bytes: 64 << 10,
            linger: Duration::from_secs(60),
        }
    }
}

/// Counters of the multiplexer, for tests, logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MuxStats {
    pub accepted: u64,
    pub connected: u64,
    /// SYNs refused: not accepting, too many connections or a full backlog.
    pub refused: u64,
    /// Datagrams that are not uTP packets (bad version, type, extensions, truncated).
    pub unparseable: u64,
    /// Packets for a connection we do not have.
    pub unknown: u64,
    pub resets_sent: u64,
    /// RESETs not sent because of the rate limit.
    pub resets_suppressed: u64,
    /// RESETs dropped because the queue of them was full (see `MuxConfig::queue_bytes`).
    pub queue_drops: u64,
    /// Payload bytes handed to and taken from the streams.
    pub bytes_written: u64,
    pub bytes_read: u64,
    /// Connections in the table now.
    pub open: u64,
    /// Of those, incoming.
    pub open_incoming: u64,
}

/// Who holds a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    /// Incoming, waiting in the accept queue.
    Backlog,
    /// A `UtpStream` (or a `connect` in progress).
    Stream,
    /// The stream was dropped at this time; the connection only finishes its close.
    Dropped(Instant),
}

struct Entry {
    conn: Connection,
    holder: Holder,
    fin_queued: bool,
    /// A stream waits to read (or for the handshake to end, for `want_write`): the next change
    /// that may end its wait is reported by [`Mux::poll_wake`].
    want_read: bool,
    want_write: bool,
    /// In [`Mux::dirty`]: may have datagrams to send.
    dirty: bool,
    /// The peer is on loopback and reads big datagrams (its SYN or its answer to ours said
    /// so, see [`super::jumbo`]); answers to its SYN tell it we do too.
    jumbo: bool,
}

impl Entry {
    fn new(conn: Connection, holder: Holder) -> Entry {
        Entry { conn, holder, fin_queued: false, want_read: false, want_write: false, dirty: false, jumbo: false }
    }

    /// Reports the waits that may be over after the connection moved from `before`.
    fn wake(&mut self, key: Key, before: State, data_arrived: bool, wakes: &mut VecDeque<Wake>) {
        let changed = self.conn.state() != before;
        if self.want_read && (changed || data_arrived) {
            self.want_read = false;
            wakes.push_back(Wake::Read(key));
        }
        if self.want_write && (changed || self.conn.writable() || self.conn.all_acked()) {
            self.want_write = false;
            wakes.push_back(Wake::Write(key));
        }
    }

    fn removable(&self, now: Instant, linger: Duration) -> bool {
        match self.holder {
            Holder::Stream => false,
            Holder::Backlog => self.conn.state() == State::Closed,
            // The connection lingers by itself until the peer has seen our ack of its FIN;
            // `linger` bounds a peer that never closes its side.
            Holder::Dropped(at) => self.conn.state() == State::Closed || now.saturating_duration_since(at) >= linger,
        }
    }
}

pub struct Mux {
    config: MuxConfig,
    conns: HashMap<Key, Entry>,
    backlog: VecDeque<Key>,
    want_accept: bool,
    /// Connections that may have datagrams to send, in the order they became so. Each is in
    /// it at most once (`Entry::dirty`), so it is bounded by the table.
    dirty: VecDeque<Key>,
    /// RESETs to unknown ids and the last words of connections removed from the table: they
    /// have no connection to keep them, so they wait here (bounded by `queue_bytes`).
    control: VecDeque<(SocketAddr, Vec<u8>)>,
    control_bytes: usize,
    wakes: VecDeque<Wake>,
    reset_tokens: u32,
    reset_refill: Option<Instant>,
    rng: StdRng,
    stats: MuxStats,
    limits: Limits,
}

pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

fn conn_error(e: ConnError) -> io::Error {
    match e {
        ConnError::Reset => io::Error::new(io::ErrorKind::ConnectionReset, e),
        ConnError::TimedOut => io::Error::new(io::ErrorKind::TimedOut, e),
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "uTP connection is gone")
}

impl Mux {
    pub fn new(config: MuxConfig, seed: u64) -> Mux {
        let reset_tokens = config.resets_per_sec;
        Mux {
            config,
            conns: HashMap::new(),
            backlog: VecDeque::new(),
            want_accept: false,
            dirty: VecDeque::new(),
            control: VecDeque::new(),
            control_bytes: 0,
            wakes: VecDeque::new(),
            reset_tokens,
            reset_refill: None,
            rng: StdRng::seed_from_u64(seed),
            stats: MuxStats::default(),
            limits: Limits::default(),
        }
    }

    pub fn stats(&self) -> MuxStats {
        MuxStats { open: self.conns.len() as u64, open_incoming: self.limits.incoming() as u64, ..self.stats.clone() }
    }

    pub fn conn_stats(&self, key: Key) -> Option<ConnStats> {
        self.conns.get(&key).map(|e| e.conn.stats())
    }

    /// The settings for a new connection: big packets to a peer that asked for them.
    fn config_for(&self, jumbo_payload: Option<usize>) -> Config {
        let mut c = self.config.conn.clone();
        c.max_payload = self.config.payload;
        c.ledbat.min_window = c.max_payload;
        if let Some(p) = jumbo_payload {
            c.max_payload = p;
        }
        c
    }

    /// The payload for packets to `peer` if `datagram` says it reads big ones: only on
    /// loopback, where nothing between us can be smaller.
    fn jumbo_payload(&self, peer: SocketAddr, datagram: &[u8]) -> Option<usize> {
        if !is_loopback(peer.ip()) {
            return None;
        }
        // Room for the header and a full selective ACK.
        let fits = (jumbo::advertised(datagram)? as usize).saturating_sub(HEADER_LEN + 64);
        Some(self.config.loopback_payload.min(fits).max(self.config.payload))
    }

    /// Marks `key` as having datagrams to send.
    fn mark_dirty(&mut self, key: Key) {
        if let Some(entry) = self.conns.get_mut(&key) {
            if !entry.dirty {
                entry.dirty = true;
                self.dirty.push_back(key);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Input

    /// One datagram from `from`. Answers (ACKs, data) leave through [`Mux::poll_transmit`], so
    /// the owner feeding a burst of packets before polling answers the burst once.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let packet = match Packet::parse(bytes) {
            Ok(p) => p,
            Err(e) => {
                self.stats.unparseable += 1;
                tracing::trace!(%from, error = %e, "dropped a datagram that is not uTP");
                return;
            }
        };
        let id = packet.header.conn_id;
        tracing::trace!(%from, kind = ?packet.header.kind, id, seq = packet.header.seq, ack = packet.header.ack,
            wnd = packet.header.wnd, len = packet.payload.len(), sack = packet.sack.is_some(), "uTP in");
        let key = match packet.header.kind {
            // The SYN carries the id the initiator receives on; it sends on id + 1.
            PacketType::Syn => (from, id.wrapping_add(1)),
            PacketType::Reset => match self.reset_target(from, id) {
                Some(k) => k,
                // A RESET is never answered: two stacks that both forgot a connection would
                // otherwise bounce RESETs between them.
                None => {
                    self.stats.unknown += 1;
                    return;
                }
            },
            _ => (from, id),
        };
        let jumbo_payload = self.jumbo_payload(from, bytes);
        if let Some(entry) = self.conns.get_mut(&key) {
            let before = entry.conn.state();
            if let (State::SynSent, Some(payload)) = (before, jumbo_payload) {
                // The answer to our SYN says the peer reads big datagrams.
                entry.jumbo = true;
                entry.conn.set_max_payload(payload);
            }
            if packet.header.kind == PacketType::Reset && entry.conn.recv_id() != id {
                // Matched through our send id: hand it over as the connection expects it.
                let mut p = packet;
                p.header.conn_id = entry.conn.recv_id();
                entry.conn.handle_packet(now, &p);
            } else {
                entry.conn.handle_packet(now, &packet);
            }
            let data = !packet.payload.is_empty() || matches!(packet.header.kind, PacketType::Fin | PacketType::Reset);
            entry.wake(key, before, data, &mut self.wakes);
            self.mark_dirty(key);
            return;
        }
        match packet.header.kind {
            PacketType::Syn => self.incoming(now, key, &packet, jumbo_payload),
            _ => {
                self.stats.unknown += 1;
                self.send_reset(now, from, &packet.header);
            }
        }
    }

    /// The connection a RESET with `id` is for: libutp puts either our receive id or our send
    /// id on it, and the send id is the receive id plus or minus one.
    fn reset_target(&self, from: SocketAddr, id: u16) -> Option<Key> {
        if self.conns.contains_key(&(from, id)) {
            return Some((from, id));
        }
        [id.wrapping_add(1), id.wrapping_sub(1)]
            .into_iter()
            .map(|r| (from, r))
            .find(|k| self.conns.get(k).is_some_and(|e| e.conn.send_id() == id))
    }

    fn incoming(&mut self, now: Instant, key: Key, syn: &Packet<'_>, jumbo: Option<usize>) {
        let refuse = if !self.config.accept_incoming || self.backlog.len() >= self.config.accept_backlog {
            Some(None)
        } else {
            self.limits.admit(key.0.ip(), &self.conns, &self.config).err().map(Some)
        };
        if let Some(cap) = refuse {
            self.stats.refused += 1;
            tracing::debug!(peer = %key.0, ?cap, "refused an incoming uTP connection");
            self.send_reset(now, key.0, &syn.header);
            return;
        }
        let seq = self.rng.random::<u16>();
        let conn = Connection::accept(now, self.config_for(jumbo), syn, seq);
        self.stats.accepted += 1;
        tracing::debug!(peer = %key.0, recv_id = key.1, jumbo = jumbo.is_some(), "incoming uTP connection");
        let mut entry = Entry::new(conn, Holder::Backlog);
        entry.jumbo = jumbo.is_some();
        self.conns.insert(key, entry);
        self.limits.added_incoming(key);
        self.backlog.push_back(key);
        self.mark_dirty(key);
        if std::mem::take(&mut self.want_accept) {
            self.wakes.push_back(Wake::Accept);
        }
    }

    fn send_reset(&mut self, now: Instant, to: SocketAddr, to_what: &Header) {
        if to_what.kind == PacketType::Reset {
            return;
        }
        let refill = *self.reset_refill.get_or_insert(now);
        if now.saturating_duration_since(refill) >= Duration::from_secs(1) {
            self.reset_tokens = self.config.resets_per_sec;
            self.reset_refill = Some(now);
        }
        if self.reset_tokens == 0 {
            self.stats.resets_suppressed += 1;
            return;
        }
        self.reset_tokens -= 1;
        let header = Header {
            kind: PacketType::Reset,
            conn_id: to_what.conn_id,
            ts_us: 0,
            ts_diff_us: 0,
            wnd: 0,
            seq: self.rng.random(),
            ack: to_what.seq,
        };
        let mut out = Vec::with_capacity(HEADER_LEN);
        encode(&header, None, &[], &mut out);
        self.stats.resets_sent += 1;
        self.queue_control(to, out);
    }

    /// Keeps a datagram that belongs to no connection until the owner polls it.
    fn queue_control(&mut self, to: SocketAddr, datagram: Vec<u8>) {
        if self.control_bytes + datagram.len() > self.config.queue_bytes {
            self.stats.queue_drops += 1;
            return;
        }
        self.control_bytes += datagram.len();
        self.control.push_back((to, datagram));
    }

    // -----------------------------------------------------------------------------------------
    // Output

    /// True when [`Mux::poll_transmit`] may have something: the owner task is told to come.
    pub fn has_transmit(&self) -> bool {
        !self.control.is_empty() || !self.dirty.is_empty()
    }

    /// The next datagram to send, written into `out` (cleared first), and its destination.
    /// A connection with more to send stays first in line until it has sent it all (its
    /// congestion window bounds how much that is); connections that are done and may go
    /// leave the table here.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<SocketAddr> {
        out.clear();
        if let Some((to, datagram)) = self.control.pop_front() {
            self.control_bytes -= datagram.len();
            out.extend_from_slice(&datagram);
            return Some(to);
        }
        // Bounded: each round takes one key off the list or returns.
        while let Some(&key) = self.dirty.front() {
            let Some(entry) = self.conns.get_mut(&key) else {
                self.dirty.pop_front();
                continue;
            };
            if entry.conn.poll_transmit(now, out) {
                // Our SYN to a loopback peer, and our answers to the SYN of a peer that asked,
                // say we read big datagrams.
                let kind = out.first().map(|b| b >> 4);
                let answer = entry.jumbo && entry.conn.state() == State::SynRecv;
                if (kind == Some(PacketType::Syn as u8) && is_loopback(key.0.ip()))
                    || (kind == Some(PacketType::State as u8) && answer)
                {
                    jumbo::add(out, MAX_DATAGRAM);
                }
                if tracing::enabled!(tracing::Level::TRACE) {
                    if let Ok(p) = Packet::parse(out) {
                        let h = p.header;
                        tracing::trace!(to = %key.0, kind = ?h.kind, id = h.conn_id, seq = h.seq, ack = h.ack,
                            wnd = h.wnd, len = p.payload.len(), "uTP out");
                    }
                }
                return Some(key.0);
            }
            entry.dirty = false;
            self.dirty.pop_front();
            if entry.removable(now, self.config.linger) {
                self.remove(now, key);
                if let Some((to, datagram)) = self.control.pop_front() {
                    self.control_bytes -= datagram.len();
                    out.extend_from_slice(&datagram);
                    return Some(to);
                }
            }
        }
        None
    }

    /// The next stream whose wait may be over.
    pub fn poll_wake(&mut self) -> Option<Wake> {
        self.wakes.pop_front()
    }

    // -----------------------------------------------------------------------------------------
    // Timers

    /// The earliest deadline of any connection: call [`Mux::handle_timeout`] then.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.conns.values().filter_map(|e| e.conn.next_deadline()).min()
    }

    /// Runs the timers that are due; what they produce and the connections that may leave
    /// the table are handled by the next [`Mux::poll_transmit`] calls.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<Key> = self
            .conns
            .iter()
            .filter(|(_, e)| e.conn.next_deadline().is_some_and(|d| d <= now) || e.removable(now, self.config.linger))
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            if let Some(entry) = self.conns.get_mut(&key) {
                let before = entry.conn.state();
                entry.conn.handle_timeout(now);
                entry.wake(key, before, false, &mut self.wakes);
            }
            self.mark_dirty(key);
        }
    }

    fn remove(&mut self, now: Instant, key: Key) {
        if let Some(e) = self.conns.get_mut(&key) {
            if e.conn.state() != State::Closed {
                // Lingered too long: tell the peer rather than go silent.
                e.conn.reset();
                let mut out = Vec::new();
                if e.conn.poll_transmit(now, &mut out) {
                    self.queue_control(key.0, out);
                }
            }
        }
        if let Some(e) = self.conns.remove(&key) {
            self.limits.removed(key);
            if e.holder == Holder::Backlog {
                // Never accepted (a SYN that timed out): its place in the backlog is free.
                self.backlog.retain(|k| *k != key);
            }
            if e.dirty {
                self.dirty.retain(|k| *k != key);
            }
            let st = e.conn.stats();
            tracing::debug!(peer = %key.0, recv_id = key.1, error = ?e.conn.error(), sent = st.bytes_sent,
                delivered = st.bytes_delivered, retransmits = st.retransmits, fast = st.fast_retransmits,
                timeouts = st.timeouts, rtt = ?st.rtt, cwnd = st.cwnd, packets_sent = st.packets_sent,
                packets_received = st.packets_received, "uTP connection removed");
        }
    }
}

mod limits;

// What the streams call: connect, accept, read, write, shutdown, drop.
mod streams;

#[cfg(test)]
mod tests;
