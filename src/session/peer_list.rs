//! One torrent's candidate peers, whatever told us about them: DHT get_peers (BEP 5), peer
//! exchange (BEP 11), local service discovery (BEP 14), `--peer`, magnet `x.pe` hints and
//! incoming connections all feed the one [`PeerList`] the runner dials from.
//!
//! Sans-IO: the runner passes `now` and reports what became of each dial. The list decides
//! whom to dial next (peers that worked before, then never-tried ones by how much we trust their
//! source, then failed ones once their backoff is over), so that good addresses are found first
//! and dead ones are not hammered, and it stays bounded however many addresses a source floods
//! us with.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::swarm::peer_source::{PeerSource, PeerSources};

/// Addresses kept at most per torrent.
pub const MAX_ADDRESSES: usize = 2000;
/// Failures after which an address is given up on (unless the user named it with `--peer`).
pub const MAX_FAILURES: u32 = 8;
/// A peer that left is not dialled again sooner than this: it may have closed on purpose
/// (enough peers, or we were of no use to it), and redialling at once would just be refused.
pub const REDIAL_AFTER: Duration = Duration::from_secs(30);
/// The wait after the first failure; it doubles with each further one, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(30 * 60);
/// How long a given-up address is refused when a source offers it again: DHT answers repeat
/// the same dead peers for hours.
const GIVEN_UP_FOR: Duration = Duration::from_secs(2 * 60 * 60);
/// Given-up or evicted addresses remembered at most.
const MAX_REFUSED: usize = 1000;

/// How long to wait after the `failures`-th failure in a row: 30 s · 2^(failures-1), capped.
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Idle,
    /// Handed out by [`PeerList::next`]; the dial has not reported back.
    Dialling,
    /// A live connection (dialled or incoming).
    Connected,
}

#[derive(Debug, Clone)]
struct Entry {
    sources: PeerSources,
    status: Status,
    /// Failed dials since the last success.
    failures: u32,
    /// Connected and handshaken at least once: tried first, never evicted for a stranger.
    good: bool,
    /// Not dialled before this.
    not_before: Option<Instant>,
    /// When a source last offered it: fresher addresses win when the list is full.
    seen: Instant,
    /// Insertion order, so never-tried addresses of one source are dialled first come first.
    seq: u64,
    /// False while the only thing we know is the remote end of an incoming TCP connection,
    /// whose port is an ephemeral one, not where the peer listens.
    dialable: bool,
}

/// How many addresses in the list each source gave (an address two sources gave counts for
/// both), and how many addresses the list holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceCounts {
    counts: [usize; 6],
    pub known: usize,
}

impl SourceCounts {
    pub fn get(&self, source: PeerSource) -> usize {
        self.counts[source.index()]
    }

    /// Every source with its count, in [`PeerSource::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (PeerSource, usize)> + '_ {
        PeerSource::ALL.into_iter().map(|s| (s, self.get(s)))
    }
}

/// A torrent's candidate peers: deduplicated, with their sources, failures and backoff.
#[derive(Debug)]
pub struct PeerList {
    entries: HashMap<SocketAddr, Entry>,
    /// Our own listen addresses: a source echoing us back is not worth a dial.
    own: Vec<SocketAddr>,
    counts: [usize; 6],
    /// Addresses given up on or evicted in backoff, and when they may come back: re-offering
    /// one must not wipe its failure history.
    refused: HashMap<SocketAddr, Instant>,
    capacity: usize,
    next_seq: u64,
}

impl PeerList {
    /// An empty list that ignores `own` (our listen addresses).
    pub fn new(own: Vec<SocketAddr>) -> PeerList {
        PeerList::with_capacity(own, MAX_ADDRESSES)
    }

    pub fn with_capacity(own: Vec<SocketAddr>, capacity: usize) -> PeerList {
        PeerList {
            entries: HashMap::new(),
            own,
            counts: [0; 6],
            refused: HashMap::new(),
            capacity: capacity.max(1),
            next_seq: 0,
        }
    }

    /// Addresses in the list.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, addr: SocketAddr) -> bool {
        self.entries.contains_key(&addr)
    }

    /// The sources that gave `addr` (none if the list does not hold it).
    pub fn sources(&self, addr: SocketAddr) -> PeerSources {
        self.entries.get(&addr).map_or_else(PeerSources::default, |e| e.sources)
    }

    /// Dials handed out that have not reported back yet.
    pub fn dialling(&self) -> usize {
        self.entries.values().filter(|e| e.status == Status::Dialling).count()
    }

    pub fn source_counts(&self) -> SourceCounts {
        SourceCounts { counts: self.counts, known: self.entries.len() }
    }

    /// `source` told us about `addr`. Returns whether the address is new to the list.
    pub fn add(&mut self, source: PeerSource, addr: SocketAddr, now: Instant) -> bool {
        self.insert(source, addr, now, source != PeerSource::Incoming)
    }

    /// A peer connected to us from `addr` and got through the handshake. `dialable`: whether
    /// `addr` is where it listens (uTP connections come from the peer's listen socket; TCP ones
    /// from an ephemeral port).
    pub fn add_incoming(&mut self, addr: SocketAddr, now: Instant, dialable: bool) {
        self.insert(PeerSource::Incoming, addr, now, dialable);
        if let Some(e) = self.entries.get_mut(&addr) {
            e.status = Status::Connected;
            e.good = true;
            e.failures = 0;
        }
    }

    fn insert(&mut self, source: PeerSource, addr: SocketAddr, now: Instant, dialable: bool) -> bool {
        if addr.port() == 0 || addr.ip().is_unspecified() || self.own.contains(&addr) {
            return false;
        }
        if let Some(e) = self.entries.get_mut(&addr) {
            if e.sources.insert(source) {
                self.counts[source.index()] += 1;
            }
            e.seen = now;
            e.dialable |= dialable;
            return false;
        }
        // The user's own `--peer` always gets in; anyone else waits out the refusal.
        if source == PeerSource::Manual {
            self.refused.remove(&addr);
        } else if self.refused.get(&addr).is_some_and(|until| now < *until) {
            return false;
        }
        if self.entries.len() >= self.capacity && !self.evict_one() {
            return false;
        }
        let mut sources = PeerSources::default();
        sources.insert(source);
        self.counts[source.index()] += 1;
        let seq = self.next_seq;
        self.next_seq += 1;
        let entry = Entry {
            sources,
            status: Status::Idle,
            failures: 0,
            good: false,
            not_before: None,
            seen: now,
            seq,
            dialable,
        };
        self.entries.insert(addr, entry);
        true
    }

    /// Makes room for one address: an undialable one (a past incoming TCP connection) goes
    /// first, then the most-failed idle stranger, the least recently offered among equals.
    /// Dialable addresses that worked before, live ones and `--peer` ones stay. False when
    /// nothing may go.
    fn evict_one(&mut self) -> bool {
        let victim = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.status == Status::Idle && !(e.good && e.dialable) && !e.sources.contains(PeerSource::Manual)
            })
            .max_by_key(|(addr, e)| {
                (!e.dialable, e.failures, std::cmp::Reverse(e.seen), std::cmp::Reverse(e.seq), **addr)
            })
            .map(|(addr, _)| *addr);
        let Some(addr) = victim else { return false };
        let entry = self.remove(addr);
        // Evicted in backoff: its wait still holds if a source offers it again.
        if let Some(until) = entry.and_then(|e| e.not_before) {
            self.refuse(addr, until);
        }
        true
    }

    fn remove(&mut self, addr: SocketAddr) -> Option<Entry> {
        let e = self.entries.remove(&addr)?;
        for s in e.sources.iter() {
            self.counts[s.index()] -= 1;
        }
        Some(e)
    }

    fn refuse(&mut self, addr: SocketAddr, until: Instant) {
        if self.refused.len() >= MAX_REFUSED && !self.refused.contains_key(&addr) {
            // Forget the refusal that ends first: it was the least of them.
            if let Some(first) = self.refused.iter().min_by_key(|(a, t)| (**t, **a)).map(|(a, _)| *a) {
                self.refused.remove(&first);
            }
        }
        self.refused.insert(addr, until);
    }

    /// The address to dial now, or None. Good ones first, then never-tried ones by source
    /// (manual > magnet > lsd > pex > dht), then failed ones whose backoff is over, fewest
    /// failures first. `is_usable` vetoes addresses the torrent will not have (banned,
    /// already connected). The address is marked as being dialled until a report comes.
    pub fn next(&mut self, now: Instant, mut is_usable: impl FnMut(SocketAddr) -> bool) -> Option<SocketAddr> {
        let mut ready: Vec<((u8, usize, u32, u64), SocketAddr)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.status == Status::Idle && e.dialable && e.not_before.is_none_or(|t| t <= now))
            .map(|(addr, e)| {
                let group = match (e.failures, e.good) {
                    (0, true) => 0,
                    (0, false) => 1,
                    _ => 2,
                };
                ((group, e.sources.best(), e.failures, e.seq), *addr)
            })
            .collect();
        ready.sort_unstable();
        let addr = ready.into_iter().map(|(_, a)| a).find(|a| is_usable(*a))?;
        if let Some(e) = self.entries.get_mut(&addr) {
            e.status = Status::Dialling;
        }
        Some(addr)
    }

    /// The dial of `addr` connected and got through the handshake.
    pub fn on_connected(&mut self, addr: SocketAddr) {
        if let Some(e) = self.entries.get_mut(&addr) {
            e.status = Status::Connected;
            e.good = true;
            e.failures = 0;
            e.not_before = None;
        }
    }

    /// The dial of `addr` did not get through (refused, timed out, broke in the handshake):
    /// it backs off, and after [`MAX_FAILURES`] it is given up on unless it is a `--peer`.
    pub fn on_failed(&mut self, addr: SocketAddr, now: Instant) {
        let Some(e) = self.entries.get_mut(&addr) else { return };
        if e.status != Status::Dialling {
            // A live incoming connection from the same address outranks a failed dial.
            return;
        }
        e.status = Status::Idle;
        e.failures = e.failures.saturating_add(1);
        let give_up = e.failures >= MAX_FAILURES && !e.sources.contains(PeerSource::Manual);
        e.not_before = Some(now + backoff(e.failures));
        if give_up {
            self.remove(addr);
            self.refuse(addr, now + GIVEN_UP_FOR);
        }
    }

    /// The peer at `addr` answered for another swarm or was ourselves: not worth another dial
    /// (a `--peer` only backs off, as the user may know better).
    pub fn on_unwanted(&mut self, addr: SocketAddr, now: Instant) {
        let manual = self.entries.get(&addr).is_some_and(|e| e.sources.contains(PeerSource::Manual));
        if manual {
            self.on_failed(addr, now);
        } else if self.entries.get(&addr).is_some_and(|e| e.status == Status::Dialling) {
            self.remove(addr);
            self.refuse(addr, now + GIVEN_UP_FOR);
        }
    }

    /// A connection with `addr` (dialled or incoming) ended. It worked, so the address is
    /// tried first once [`REDIAL_AFTER`] has passed.
    pub fn on_disconnected(&mut self, addr: SocketAddr, now: Instant) {
        let Some(e) = self.entries.get_mut(&addr) else { return };
        if e.status == Status::Idle {
            return;
        }
        e.status = Status::Idle;
        e.good = true;
        e.failures = 0;
        e.not_before = Some(now + REDIAL_AFTER);
    }

    /// Debug check of the bookkeeping: the bound, and counts matching the entries.
    #[cfg(test)]
    fn check_invariants(&self) {
        assert!(self.entries.len() <= self.capacity, "{} > {}", self.entries.len(), self.capacity);
        assert!(self.refused.len() <= MAX_REFUSED);
        for s in PeerSource::ALL {
            let n = self.entries.values().filter(|e| e.sources.contains(s)).count();
            assert_eq!(self.counts[s.index()], n, "count of {s:?}");
        }
    }
}

#[cfg(test)]
mod tests;
