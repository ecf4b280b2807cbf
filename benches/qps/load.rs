//! The load generator of the qps bench: many loopback source sockets, each keeping a bounded
//! number of KRPC queries (BEP 5 ping, find_node, get_peers) in flight against one server.
//!
//! A query counts as answered when a datagram carrying its transaction id comes back. One that
//! stays unanswered for the timeout counts as lost and its slot is reissued, so the number in
//! flight never grows. Queries are written by hand (the bench checks them against kadswarm's own
//! decoder once at start) and replies are only walked far enough to read `t` and `y`: the
//! generator must cost as little per query as the servers it measures.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use tokio::net::UdpSocket;

/// Sources bind to 127.0.60.1, 127.0.60.2, ...: one IP each, as distinct DHT nodes would.
pub const SOURCE_NET: [u8; 3] = [127, 0, 60];
pub const MAX_SOURCES: usize = 250;
/// The slot index is one byte of the 2-byte transaction id.
pub const MAX_INFLIGHT: usize = 64;
/// Datagrams read from one socket before the others get a turn.
const DRAIN_BATCH: usize = 64;
/// How often a socket looks for queries past their timeout.
const SWEEP_EVERY: Duration = Duration::from_millis(20);
/// Deepest bencode nesting walked in a reply; KRPC needs 3.
const MAX_DEPTH: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    Ping,
    FindNode,
    GetPeers,
}

/// What one run does. Counting happens only in `[warm, end)`.
#[derive(Debug, Clone)]
pub struct Plan {
    pub server: SocketAddr,
    pub sources: usize,
    pub inflight: usize,
    pub timeout: Duration,
    pub threads: usize,
    /// A new random node id on every query instead of one per source.
    pub fresh_ids: bool,
    /// The server sends our own queries back (`y` = `q`); count those as answers.
    pub echo: bool,
    pub seed: u64,
    pub warm: Instant,
    pub end: Instant,
}

impl Plan {
    fn counting(&self, now: Instant) -> bool {
        now >= self.warm && now < self.end
    }
}

/// Counts over the measuring window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tally {
    pub sent: u64,
    /// Responses (`y` = `r`, or our own query back from the echo server).
    pub answered: u64,
    /// KRPC errors (`y` = `e`) to our queries.
    pub errors: u64,
    /// Queries unanswered after the timeout.
    pub timeouts: u64,
    /// Answers to a query already given up on.
    pub late: u64,
    /// Datagrams that are no answer of ours (queries the server sends us, garbage).
    pub stray: u64,
    /// Sends refused because the socket buffer was full (the slot then times out).
    pub send_blocked: u64,
    pub io_errors: u64,
    /// Sum of the round trips of the answered queries, for the mean.
    pub rtt_us: u64,
}

impl Tally {
    pub fn add(&mut self, o: &Tally) {
        self.sent += o.sent;
        self.answered += o.answered;
        self.errors += o.errors;
        self.timeouts += o.timeouts;
        self.late += o.late;
        self.stray += o.stray;
        self.send_blocked += o.send_blocked;
        self.io_errors += o.io_errors;
        self.rtt_us += o.rtt_us;
    }
}

/// Writes a KRPC query with keys in sorted order, as bencode requires.
pub fn encode_query(out: &mut Vec<u8>, kind: QueryKind, id: &[u8; 20], key: &[u8; 20], tid: [u8; 2]) {
    out.clear();
    out.extend_from_slice(b"d1:ad2:id20:");
    out.extend_from_slice(id);
    let method: &[u8] = match kind {
        QueryKind::Ping => b"4:ping",
        QueryKind::FindNode => {
            out.extend_from_slice(b"6:target20:");
            out.extend_from_slice(key);
            b"9:find_node"
        }
        QueryKind::GetPeers => {
            out.extend_from_slice(b"9:info_hash20:");
            out.extend_from_slice(key);
            b"9:get_peers"
        }
    };
    out.extend_from_slice(b"e1:q");
    out.extend_from_slice(method);
    out.extend_from_slice(b"1:t2:");
    out.extend_from_slice(&tid);
    out.extend_from_slice(b"1:y1:qe");
}

/// The transaction id and message type (`y`) of a KRPC datagram, or `None` if it has none.
pub fn reply_header(b: &[u8]) -> Option<(&[u8], u8)> {
    if *b.first()? != b'd' {
        return None;
    }
    let (mut tid, mut kind) = (None, None);
    let mut i = 1;
    // Every key takes at least two bytes, so the datagram's length bounds the loop.
    for _ in 0..b.len() {
        if *b.get(i)? == b'e' {
            break;
        }
        let (key, next) = read_str(b, i)?;
        match key {
            b"t" => (tid, i) = read_str(b, next).map(|(v, n)| (Some(v), n))?,
            b"y" => (kind, i) = read_str(b, next).map(|(v, n)| (v.first().copied(), n))?,
            _ => i = skip_value(b, next, 1)?,
        }
    }
    Some((tid?, kind?))
}

/// A bencode string at `i`: its bytes and where the next item starts.
fn read_str(b: &[u8], i: usize) -> Option<(&[u8], usize)> {
    let mut len = 0usize;
    let mut j = i;
    // Lengths in a datagram have at most 5 digits; allow a few more, never unboundedly many.
    for _ in 0..8 {
        let c = *b.get(j)?;
        if c == b':' {
            break;
        }
        if !c.is_ascii_digit() {
            return None;
        }
        len = len * 10 + usize::from(c - b'0');
        j += 1;
    }
    if *b.get(j)? != b':' || j == i {
        return None;
    }
    let end = (j + 1).checked_add(len)?;
    Some((b.get(j + 1..end)?, end))
}

/// Where the bencode value at `i` ends.
fn skip_value(b: &[u8], i: usize, depth: usize) -> Option<usize> {
    match *b.get(i)? {
        b'i' => Some(i + 2 + b.get(i + 1..)?.iter().position(|&c| c == b'e')?),
        c @ (b'l' | b'd') if depth < MAX_DEPTH => {
            let mut j = i + 1;
            for _ in 0..b.len() {
                if *b.get(j)? == b'e' {
                    return Some(j + 1);
                }
                if c == b'd' {
                    j = read_str(b, j)?.1;
                }
                j = skip_value(b, j, depth + 1)?;
            }
            None
        }
        b'0'..=b'9' => Some(read_str(b, i)?.1),
        _ => None,
    }
}

/// Binds the sources (127.0.60.1 and up, any port), each connected to the server so that the
/// kernel hands it only the server's datagrams.
pub fn bind_sources(plan: &Plan) -> io::Result<Vec<std::net::UdpSocket>> {
    (0..plan.sources.min(MAX_SOURCES))
        .map(|i| {
            let ip = Ipv4Addr::new(SOURCE_NET[0], SOURCE_NET[1], SOURCE_NET[2], 1 + i as u8);
            let s = std::net::UdpSocket::bind(SocketAddrV4::new(ip, 0))?;
            s.connect(plan.server)?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .collect()
}

/// Runs the load until `plan.end` on `plan.threads` threads (one tokio runtime each) and sums
/// what every source counted.
pub fn run(plan: Arc<Plan>, sockets: Vec<std::net::UdpSocket>) -> io::Result<Tally> {
    let threads = plan.threads.clamp(1, sockets.len().max(1));
    let mut groups: Vec<Vec<(usize, std::net::UdpSocket)>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, s) in sockets.into_iter().enumerate() {
        groups[i % threads].push((i, s));
    }
    let handles: Vec<_> = groups
        .into_iter()
        .map(|group| {
            let plan = plan.clone();
            std::thread::spawn(move || run_thread(plan, group))
        })
        .collect();
    let mut total = Tally::default();
    for h in handles {
        let tally = h.join().map_err(|_| io::Error::other("a generator thread panicked"))??;
        total.add(&tally);
    }
    Ok(total)
}

fn run_thread(plan: Arc<Plan>, group: Vec<(usize, std::net::UdpSocket)>) -> io::Result<Tally> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, s) in group {
            let source = Source::new(UdpSocket::from_std(s)?, &plan, i);
            tasks.spawn(source.drive(plan.clone()));
        }
        let mut total = Tally::default();
        while let Some(done) = tasks.join_next().await {
            total.add(&done.map_err(io::Error::other)?);
        }
        Ok(total)
    })
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    seq: u8,
    sent: Option<Instant>,
}

/// One source socket and its in-flight queries; slot `i` uses transaction ids `[i, seq]`.
struct Source {
    sock: UdpSocket,
    rng: SmallRng,
    id: [u8; 20],
    slots: Vec<Slot>,
    out: Vec<u8>,
    tally: Tally,
}

impl Source {
    fn new(sock: UdpSocket, plan: &Plan, index: usize) -> Source {
        let mut rng = SmallRng::seed_from_u64(plan.seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut id = [0u8; 20];
        rng.fill(&mut id);
        let slots = vec![Slot { seq: 0, sent: None }; plan.inflight.clamp(1, MAX_INFLIGHT)];
        Source { sock, rng, id, slots, out: Vec::with_capacity(128), tally: Tally::default() }
    }

    async fn drive(mut self, plan: Arc<Plan>) -> Tally {
        let mut buf = vec![0u8; 2048];
        // tokio's try_send refuses until the reactor has seen the socket writable once.
        let _ = tokio::time::timeout(SWEEP_EVERY, self.sock.writable()).await;
        let mut now = Instant::now();
        for slot in 0..self.slots.len() {
            self.issue(slot, now, &plan);
        }
        let mut next_sweep = now + SWEEP_EVERY;
        // Bounded in time by `plan.end`; each pass reads at most DRAIN_BATCH datagrams.
        while now < plan.end {
            for _ in 0..DRAIN_BATCH {
                match self.sock.try_recv(&mut buf) {
                    Ok(n) => {
                        now = Instant::now();
                        self.on_datagram(&buf[..n], now, &plan);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        self.tally.io_errors += 1;
                        break;
                    }
                }
            }
            now = Instant::now();
            if now >= next_sweep {
                self.sweep(now, &plan);
                next_sweep = now + SWEEP_EVERY;
            }
            let wake = next_sweep.min(plan.end).saturating_duration_since(now);
            let _ = tokio::time::timeout(wake, self.sock.readable()).await;
            now = Instant::now();
        }
        self.tally
    }

    /// Sends a new query in `slot`, with a fresh sequence number so that a late answer to the
    /// previous one is not mistaken for it.
    fn issue(&mut self, slot: usize, now: Instant, plan: &Plan) {
        let s = &mut self.slots[slot];
        s.seq = s.seq.wrapping_add(1);
        s.sent = Some(now);
        let tid = [slot as u8, s.seq];
        if plan.fresh_ids {
            self.rng.fill(&mut self.id);
        }
        let mut key = [0u8; 20];
        self.rng.fill(&mut key);
        let kind = match self.rng.random_range(0..3u8) {
            0 => QueryKind::Ping,
            1 => QueryKind::FindNode,
            _ => QueryKind::GetPeers,
        };
        encode_query(&mut self.out, kind, &self.id, &key, tid);
        match self.sock.try_send(&self.out) {
            Ok(_) if plan.counting(now) => self.tally.sent += 1,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.tally.send_blocked += 1,
            Err(_) => self.tally.io_errors += 1,
        }
    }

    fn on_datagram(&mut self, bytes: &[u8], now: Instant, plan: &Plan) {
        let counting = plan.counting(now);
        let Some((tid, kind)) = reply_header(bytes) else {
            self.tally.stray += 1;
            return;
        };
        let answer = kind == b'r' || kind == b'e' || (plan.echo && kind == b'q');
        let slot = match tid {
            [i, seq] if answer && usize::from(*i) < self.slots.len() => {
                let s = self.slots[usize::from(*i)];
                if s.seq != *seq || s.sent.is_none() {
                    self.tally.late += 1;
                    return;
                }
                usize::from(*i)
            }
            _ => {
                self.tally.stray += 1;
                return;
            }
        };
        if counting {
            if kind == b'e' {
                self.tally.errors += 1;
            } else {
                self.tally.answered += 1;
            }
            let sent = self.slots[slot].sent.unwrap_or(now);
            self.tally.rtt_us += now.saturating_duration_since(sent).as_micros() as u64;
        }
        self.slots[slot].sent = None;
        if now < plan.end {
            self.issue(slot, now, plan);
        }
    }

    fn sweep(&mut self, now: Instant, plan: &Plan) {
        for slot in 0..self.slots.len() {
            let expired = self.slots[slot].sent.is_some_and(|t| now.saturating_duration_since(t) >= plan.timeout);
            if expired {
                if plan.counting(now) {
                    self.tally.timeouts += 1;
                }
                self.issue(slot, now, plan);
            }
        }
    }
}
