//! Test harness: two [`Connection`]s joined by a simulated link in virtual time. The clock jumps
//! to the next delivery or deadline, loss, duplication and reordering come from a seeded RNG,
//! and a link may have a rate (a drop-tail queue in front of it), so the same seed replays the
//! same run. Every loop is bounded.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::conn::{Config, Connection};
use super::header::Packet;

#[derive(Debug, Clone)]
pub struct Link {
    pub delay: Duration,
    /// Probability that a packet is lost.
    pub loss: f64,
    /// Probability that a packet is delivered twice.
    pub dup: f64,
    /// Probability that a packet is held back by up to `delay` more (so it is reordered).
    pub reorder: f64,
    /// Bytes per second, or unlimited.
    pub rate: Option<u64>,
    /// With a rate: the drop-tail queue in front of the link holds this much sending time.
    pub queue: Duration,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            delay: Duration::from_millis(10),
            loss: 0.0,
            dup: 0.0,
            reorder: 0.0,
            rate: None,
            queue: Duration::from_secs(1),
        }
    }
}

/// Decides the fate of a datagram: (from side, parsed packet) -> drop it.
pub type Filter = Box<dyn FnMut(usize, &Packet<'_>) -> bool>;

/// A datagram on the link: (arrival, order sent, to side, bytes).
type OnWire = (Instant, u64, usize, Vec<u8>);

pub struct Pair {
    pub now: Instant,
    /// Side 0 connects, side 1 accepts when the SYN arrives.
    pub conns: [Option<Connection>; 2],
    pub config: [Config; 2],
    pub link: Link,
    pub filter: Option<Filter>,
    /// The application runs at least this often, even when the network is quiet.
    pub tick: Option<Duration>,
    /// Datagrams each side sent, and of those how many carried a selective ACK.
    pub sent: [u64; 2],
    pub sacks_sent: [u64; 2],
    pub lost: u64,
    /// Per side: datagrams that found a queue, and the total and largest wait in it.
    pub queued: [(u64, Duration, Duration); 2],
    rng: StdRng,
    wire: BinaryHeap<Reverse<OnWire>>,
    order: u64,
    link_free: [Instant; 2],
    accept_seq: u16,
}

pub fn t0() -> Instant {
    crate::clock::now()
}

impl Pair {
    pub fn new(config: Config, link: Link, seed: u64, seqs: (u16, u16)) -> Pair {
        Pair::with_configs([config.clone(), config], link, seed, seqs)
    }

    pub fn with_configs(config: [Config; 2], link: Link, seed: u64, seqs: (u16, u16)) -> Pair {
        let now = t0();
        let a = Connection::connect(now, config[0].clone(), 7_000, seqs.0);
        Pair {
            now,
            conns: [Some(a), None],
            config,
            link,
            filter: None,
            tick: None,
            sent: [0; 2],
            sacks_sent: [0; 2],
            lost: 0,
            queued: [(0, Duration::ZERO, Duration::ZERO); 2],
            rng: StdRng::seed_from_u64(seed),
            wire: BinaryHeap::new(),
            order: 0,
            link_free: [now; 2],
            accept_seq: seqs.1,
        }
    }

    pub fn a(&mut self) -> &mut Connection {
        self.conns[0].as_mut().expect("side 0 exists from the start")
    }

    pub fn b(&mut self) -> &mut Connection {
        self.conns[1].as_mut().expect("side 1 accepted")
    }

    /// Sends everything both sides have to send.
    pub fn transmit(&mut self) {
        let mut buf = Vec::new();
        for side in 0..2 {
            for _ in 0..100_000 {
                let Some(conn) = self.conns[side].as_mut() else { break };
                buf.clear();
                if !conn.poll_transmit(self.now, &mut buf) {
                    break;
                }
                self.put_on_wire(side, &buf);
            }
        }
    }

    fn put_on_wire(&mut self, from: usize, datagram: &[u8]) {
        let packet = Packet::parse(datagram).expect("a connection sends valid packets");
        self.sent[from] += 1;
        self.sacks_sent[from] += packet.sack.is_some() as u64;
        if let Some(filter) = self.filter.as_mut() {
            if filter(from, &packet) {
                self.lost += 1;
                return;
            }
        }
        if self.rng.random_bool(self.link.loss) {
            self.lost += 1;
            return;
        }
        let mut depart = self.now;
        if let Some(rate) = self.link.rate {
            let start = self.link_free[from].max(self.now);
            let wait = start - self.now;
            if wait > self.link.queue {
                self.lost += 1;
                return;
            }
            let q = &mut self.queued[from];
            *q = (q.0 + 1, q.1 + wait, q.2.max(wait));
            let serialize = Duration::from_nanos(datagram.len() as u64 * 1_000_000_000 / rate.max(1));
            self.link_free[from] = start + serialize;
            depart = start + serialize;
        }
        let copies = if self.rng.random_bool(self.link.dup) { 2 } else { 1 };
        for _ in 0..copies {
            let mut at = depart + self.link.delay;
            if self.rng.random_bool(self.link.reorder) {
                at += self.link.delay.mul_f64(self.rng.random_range(0.0..1.0));
            }
            self.order += 1;
            self.wire.push(Reverse((at, self.order, 1 - from, datagram.to_vec())));
        }
    }

    /// When the next thing happens: a delivery or a connection's deadline.
    pub fn next_event(&self) -> Option<Instant> {
        let wire = self.wire.peek().map(|Reverse((at, ..))| *at);
        let deadlines = self.conns.iter().flatten().filter_map(Connection::next_deadline);
        wire.into_iter().chain(deadlines).min()
    }

    /// Jumps to the next event, at most to `limit`, and runs it. False when nothing is left.
    pub fn advance(&mut self, limit: Instant) -> bool {
        let Some(next) = self.next_event() else { return false };
        let limit = self.tick.map_or(limit, |tick| limit.min(self.now + tick));
        self.now = self.now.max(next.min(limit));
        while let Some(Reverse((at, ..))) = self.wire.peek() {
            if *at > self.now {
                break;
            }
            let Some(Reverse((_, _, to, datagram))) = self.wire.pop() else { break };
            let Ok(packet) = Packet::parse(&datagram) else { continue };
            match self.conns[to].as_mut() {
                Some(conn) => conn.handle_packet(self.now, &packet),
                None => {
                    if packet.header.kind == super::header::PacketType::Syn {
                        let c = Connection::accept(self.now, self.config[to].clone(), &packet, self.accept_seq);
                        self.conns[to] = Some(c);
                    }
                }
            }
        }
        for conn in self.conns.iter_mut().flatten() {
            if conn.next_deadline().is_some_and(|d| d <= self.now) {
                conn.handle_timeout(self.now);
            }
        }
        true
    }

    /// Runs `app` (which returns true when done) between network steps, for at most `steps`
    /// steps and `time` of virtual time. Returns whether `app` finished.
    pub fn run(&mut self, steps: usize, time: Duration, mut app: impl FnMut(&mut Pair) -> bool) -> bool {
        let end = self.now + time;
        // With the network idle the application may still have buffered bytes to read, so it
        // gets a few more calls before the run gives up.
        let mut idle = 0;
        for _ in 0..steps {
            if app(self) {
                return true;
            }
            self.transmit();
            if self.now >= end {
                return app(self);
            }
            if self.advance(end) {
                idle = 0;
            } else {
                idle += 1;
                if idle > 100_000 {
                    return false;
                }
            }
        }
        false
    }
}

/// Moves `data` from side `from` to the other side, reading as it arrives; returns what was
/// received once the writer's FIN was seen (or the run ran out).
pub fn transfer(pair: &mut Pair, from: usize, data: &[u8], steps: usize, time: Duration) -> Vec<u8> {
    let mut written = 0;
    let mut received = Vec::with_capacity(data.len());
    let mut buf = vec![0u8; 64 * 1024];
    pair.run(steps, time, |p| {
        let Some(w) = p.conns[from].as_mut() else { return false };
        written += w.write(&data[written..]);
        if written == data.len() {
            w.close();
        }
        let Some(r) = p.conns[1 - from].as_mut() else { return false };
        for _ in 0..1000 {
            let n = r.read(&mut buf);
            if n == 0 {
                break;
            }
            received.extend_from_slice(&buf[..n]);
        }
        r.at_eof()
    });
    received
}

/// Deterministic bytes that show misordering: each 4-byte word is its own offset.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len.div_ceil(4)).flat_map(|i| (i as u32).to_le_bytes()).take(len).collect()
}
