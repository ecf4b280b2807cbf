//! The table of uTP connections that share one UDP socket (BEP 29 "connection setup"): which
//! connection a datagram belongs to, which SYN starts a new one, what an unknown connection id
//! gets back (a rate-limited RESET), and the queue of datagrams the socket could not take yet.
//!
//! Connections are keyed by (peer address, the connection id the peer puts on its packets).
//! The table never awaits and never reads the clock: `now` comes in, datagrams go out through a
//! [`Transmit`], and the tasks waiting on a connection are woken through the wakers it keeps.
//! The tokio side ([`super::socket`], [`super::stream`]) only locks it and calls in.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::task::Waker;
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

/// Sends one datagram now or says `WouldBlock`; the UDP socket in production, a recorder in
/// tests.
pub trait Transmit {
    fn try_send(&self, to: SocketAddr, datagram: &[u8]) -> io::Result<()>;
}

impl Transmit for tokio::net::UdpSocket {
    fn try_send(&self, to: SocketAddr, datagram: &[u8]) -> io::Result<()> {
        self.try_send_to(datagram, to).map(|_| ())
    }
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
    /// Bytes of datagrams kept while the socket is not writable; beyond it connections keep
    /// their data until it drains.
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
            queue_bytes: 4 << 20,
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
    /// Datagrams dropped because the outgoing queue was full.
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
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    /// Datagrams are due (set by input, flushed at the end of a batch).
    dirty: bool,
    /// The peer is on loopback and reads big datagrams (its SYN or its answer to ours said
    /// so, see [`super::jumbo`]); answers to its SYN tell it we do too.
    jumbo: bool,
}

impl Entry {
    fn new(conn: Connection, holder: Holder) -> Entry {
        Entry { conn, holder, fin_queued: false, read_waker: None, write_waker: None, dirty: false, jumbo: false }
    }

    /// Wakes the tasks whose wait may be over after the connection moved from `before`.
    fn wake(&mut self, before: State, data_arrived: bool) {
        let changed = self.conn.state() != before;
        if changed || data_arrived {
            if let Some(w) = self.read_waker.take() {
                w.wake();
            }
        }
        if changed || self.conn.writable() || self.conn.all_acked() {
            if let Some(w) = self.write_waker.take() {
                w.wake();
            }
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
    accept_waker: Option<Waker>,
    dirty: Vec<Key>,
    queue: VecDeque<(SocketAddr, Vec<u8>)>,
    queued_bytes: usize,
    reset_tokens: u32,
    reset_refill: Option<Instant>,
    /// The deadline the timer task sleeps until; an earlier one must wake it.
    armed: Option<Instant>,
    wake_timer: bool,
    wake_sender: bool,
    rng: StdRng,
    buf: Vec<u8>,
    stats: MuxStats,
    limits: Limits,
}

/// What the driver must do after a call: wake the timer task (a deadline moved earlier), the
/// sender task (datagrams wait in the queue).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Signals {
    pub timer: bool,
    pub sender: bool,
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
            accept_waker: None,
            dirty: Vec::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            reset_tokens,
            reset_refill: None,
            armed: None,
            wake_timer: false,
            wake_sender: false,
            rng: StdRng::seed_from_u64(seed),
            buf: Vec::with_capacity(64 * 1024),
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

    /// Takes the signals raised since the last call.
    pub fn take_signals(&mut self) -> Signals {
        let s = Signals { timer: self.wake_timer, sender: self.wake_sender };
        self.wake_timer = false;
        self.wake_sender = false;
        s
    }

    // -----------------------------------------------------------------------------------------
    // Input

    /// One datagram from `from`. Replies (ACKs, data) are only marked due: call
    /// [`Mux::flush_dirty`] after a batch, so a burst of packets is answered once.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8], tx: &impl Transmit) {
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
            entry.wake(before, data);
            if !entry.dirty {
                entry.dirty = true;
                self.dirty.push(key);
            }
            return;
        }
        match packet.header.kind {
            PacketType::Syn => self.incoming(now, key, &packet, jumbo_payload, tx),
            _ => {
                self.stats.unknown += 1;
                self.send_reset(now, from, &packet.header, tx);
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

    fn incoming(&mut self, now: Instant, key: Key, syn: &Packet<'_>, jumbo: Option<usize>, tx: &impl Transmit) {
        let refuse = if !self.config.accept_incoming || self.backlog.len() >= self.config.accept_backlog {
            Some(None)
        } else {
            self.limits.admit(key.0.ip(), &self.conns, &self.config).err().map(Some)
        };
        if let Some(cap) = refuse {
            self.stats.refused += 1;
            tracing::debug!(peer = %key.0, ?cap, "refused an incoming uTP connection");
            self.send_reset(now, key.0, &syn.header, tx);
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
        self.flush(now, key, tx);
        if let Some(w) = self.accept_waker.take() {
            w.wake();
        }
    }

    fn send_reset(&mut self, now: Instant, to: SocketAddr, to_what: &Header, tx: &impl Transmit) {
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
        self.send(to, out, tx);
    }

    // -----------------------------------------------------------------------------------------
    // Output

    /// Sends a datagram now, or keeps it for the sender task when the socket is full (or
    /// datagrams already wait, so they leave in order).
    fn send(&mut self, to: SocketAddr, datagram: Vec<u8>, tx: &impl Transmit) {
        if self.queue.is_empty() {
            match tx.try_send(to, &datagram) {
                Ok(()) => return,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    // A full kernel buffer toward one host, an unreachable address: the
                    // connection's timers retransmit or give up, as for a lost packet.
                    tracing::trace!(%to, error = %e, "uTP send failed");
                    return;
                }
            }
        }
        if self.queued_bytes + datagram.len() > self.config.queue_bytes {
            self.stats.queue_drops += 1;
            return;
        }
        self.queued_bytes += datagram.len();
        self.queue.push_back((to, datagram));
        self.wake_sender = true;
    }

    /// True while the outgoing queue has room; connections keep their packets otherwise.
    fn queue_has_room(&self) -> bool {
        self.queued_bytes + self.config.loopback_payload.max(self.config.payload) + 64 <= self.config.queue_bytes
    }

    /// Sends what connection `key` has due, and notes a deadline that moved earlier.
    fn flush(&mut self, now: Instant, key: Key, tx: &impl Transmit) {
        let Some(entry) = self.conns.get_mut(&key) else { return };
        entry.dirty = false;
        let mut out = std::mem::take(&mut self.buf);
        loop {
            if !self.queue.is_empty() && !self.queue_has_room() {
                break;
            }
            let Some(entry) = self.conns.get_mut(&key) else { break };
            out.clear();
            if !entry.conn.poll_transmit(now, &mut out) {
                break;
            }
            // Our SYN to a loopback peer, and our answers to the SYN of a peer that asked, say
            // we read big datagrams.
            let kind = out.first().map(|b| b >> 4);
            let answer = entry.jumbo && entry.conn.state() == State::SynRecv;
            if (kind == Some(PacketType::Syn as u8) && is_loopback(key.0.ip()))
                || (kind == Some(PacketType::State as u8) && answer)
            {
                jumbo::add(&mut out, MAX_DATAGRAM);
            }
            if tracing::enabled!(tracing::Level::TRACE) {
                if let Ok(p) = Packet::parse(&out) {
                    let h = p.header;
                    tracing::trace!(to = %key.0, kind = ?h.kind, id = h.conn_id, seq = h.seq, ack = h.ack, wnd = h.wnd,
                        len = p.payload.len(), "uTP out");
                }
            }
            if self.queue.is_empty() {
                match tx.try_send(key.0, &out) {
                    Ok(()) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        tracing::trace!(to = %key.0, error = %e, "uTP send failed");
                        continue;
                    }
                }
            }
            self.queued_bytes += out.len();
            self.queue.push_back((key.0, out.clone()));
            self.wake_sender = true;
        }
        self.buf = out;
        if let Some(entry) = self.conns.get(&key) {
            if let Some(d) = entry.conn.next_deadline() {
                if self.armed.is_none_or(|a| d < a) {
                    self.wake_timer = true;
                }
            }
            if entry.removable(now, self.config.linger) {
                self.remove(now, key, tx);
            }
        }
    }

    /// Flushes every connection that received packets since the last call.
    pub fn flush_dirty(&mut self, now: Instant, tx: &impl Transmit) {
        let dirty = std::mem::take(&mut self.dirty);
        for key in &dirty {
            self.flush(now, *key, tx);
        }
        self.dirty = dirty;
        self.dirty.clear();
    }

    /// Sends queued datagrams until the socket would block; true when the queue is empty.
    pub fn drain_queue(&mut self, tx: &impl Transmit) -> bool {
        while let Some((to, datagram)) = self.queue.front() {
            match tx.try_send(*to, datagram) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Ok(()) | Err(_) => {
                    self.queued_bytes -= datagram.len();
                    self.queue.pop_front();
                }
            }
        }
        true
    }

    /// After the queue drained: connections that held back packets may send them now.
    pub fn flush_all(&mut self, now: Instant, tx: &impl Transmit) {
        let keys: Vec<Key> = self.conns.keys().copied().collect();
        for key in keys {
            self.flush(now, key, tx);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Timers

    /// The earliest deadline of any connection; the timer task sleeps until then.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        let d = self.conns.values().filter_map(|e| e.conn.next_deadline()).min();
        self.armed = d;
        d
    }

    /// Runs the timers that are due, sends what they produce, drops finished connections.
    pub fn handle_timeouts(&mut self, now: Instant, tx: &impl Transmit) {
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
                entry.wake(before, false);
            }
            self.flush(now, key, tx);
        }
    }

    fn remove(&mut self, now: Instant, key: Key, tx: &impl Transmit) {
        if let Some(e) = self.conns.get_mut(&key) {
            if e.conn.state() != State::Closed {
                // Lingered too long: tell the peer rather than go silent.
                e.conn.reset();
                let mut out = Vec::new();
                if e.conn.poll_transmit(now, &mut out) {
                    self.send(key.0, out, tx);
                }
            }
        }
        if let Some(e) = self.conns.remove(&key) {
            self.limits.removed(key);
            if e.holder == Holder::Backlog {
                // Never accepted (a SYN that timed out): its place in the backlog is free.
                self.backlog.retain(|k| *k != key);
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
