//! Iterative Kademlia lookups (BEP 5 find_node / get_peers) as a traversal state machine.
//!
//! The lookup only decides whom to ask next; the node core sends the queries and feeds back
//! answers and timeouts. `alpha` queries are in flight at once. After the short timeout a
//! silent node stops holding its slot (libtorrent's idea: one slow node must not stall the
//! whole lookup) and is asked once more; its answer is still used if it arrives before the
//! full timeout. The lookup ends when the `k` closest nodes that have not failed have all
//! answered.
//!
//! One host must not be able to own a lookup: a candidate is taken only if no candidate of
//! its host is there yet and its network (/24, /48) has few, a reply is read for at most
//! `max_nodes_per_reply` nodes and `max_values_per_reply` peers, the peers a lookup holds
//! are capped, and among the closest, nodes whose ids are valid for their address (BEP 42)
//! come first.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Instant;

use crate::dht::bep42;
use crate::dht::bloom::Bloom;
use crate::dht::compact::CompactNode;
use crate::id::{Id, NodeId};
use crate::net::addr::{host_key, net_key, KeyCounts};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupKind {
    FindNode,
    GetPeers,
    /// get_peers, then announce_peer to the closest nodes that gave a token. `port: None`
    /// asks them to use our source port (implied_port, for uTP/NAT users).
    Announce {
        port: Option<u16>,
        seed: bool,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct LookupConfig {
    pub k: usize,
    pub alpha: usize,
    /// Candidates remembered; the farthest are forgotten beyond this.
    pub max_candidates: usize,
    /// Queries one lookup may send at most, retries included.
    pub max_queries: usize,
    /// Candidates from one network (IPv4 /24, IPv6 /48) at most; one per host always.
    pub max_per_net: usize,
    /// Nodes read from one reply (BEP 5 replies carry 8); the rest are ignored.
    pub max_nodes_per_reply: usize,
    /// Peers read from one reply (one datagram holds about 200).
    pub max_values_per_reply: usize,
    /// Peers one lookup holds at most.
    pub max_peers: usize,
}

impl Default for LookupConfig {
    fn default() -> Self {
        LookupConfig {
            k: 8,
            alpha: 5,
            max_candidates: 128,
            max_queries: 400,
            max_per_net: 3,
            max_nodes_per_reply: 32,
            max_values_per_reply: 200,
            max_peers: 2000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Fresh,
    /// Asked and holding a slot.
    InFlight,
    /// Asked, silent past the short timeout: no longer holds a slot.
    Slow,
    Responded,
    Failed,
}

/// The values follow-up of a scrape answer without values (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Followup {
    None,
    Wanted,
    Sent,
    Done,
}

/// BEP 33 estimates from the union of the filters of the closest responders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrapeEstimate {
    pub seeds: u32,
    pub leechers: u32,
    /// Responders among the k closest that sent filters.
    pub nodes: usize,
}

#[derive(Debug, Clone)]
struct Candidate {
    /// Unknown for bootstrap routers until they answer.
    id: Option<NodeId>,
    addr: SocketAddr,
    state: State,
    /// Hops from the nodes the lookup started with.
    depth: u32,
    attempts: u8,
    outstanding: u8,
    token: Option<Vec<u8>>,
    /// BEP 33 (seeds, peers) filters this node answered with.
    filters: Option<Box<(Bloom, Bloom)>>,
    followup: Followup,
}

/// Statistics of a finished (or running) lookup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupStats {
    pub queries: usize,
    pub responses: usize,
    pub timeouts: usize,
    /// Longest chain of answers that led to the result: the lookup's round trips.
    pub rounds: u32,
}

pub struct Lookup {
    pub id: LookupId,
    pub kind: LookupKind,
    pub target: Id,
    pub started: Instant,
    /// BEP 33: ask with `scrape: 1` (get_peers lookups).
    pub scrape: bool,
    own_id: NodeId,
    config: LookupConfig,
    /// Kept sorted by distance to the target; unknown ids last.
    candidates: Vec<Candidate>,
    /// Candidates per host key and per network key.
    hosts: HashSet<u128>,
    nets: KeyCounts,
    peers: HashSet<SocketAddr>,
    stats: LookupStats,
    /// Logs about this lookup carry its id, kind and target: the node enters the span whenever
    /// it works on the lookup, so an operator can follow one search through interleaved ones.
    pub span: tracing::Span,
}

/// How to retry a query whose short timeout passed.
pub enum ShortTimeout {
    Retry { id: Option<NodeId>, addr: SocketAddr },
    Nothing,
}

impl Lookup {
    pub fn new(id: LookupId, kind: LookupKind, target: Id, own_id: NodeId, config: LookupConfig, now: Instant) -> Self {
        Lookup {
            id,
            kind,
            target,
            started: now,
            scrape: false,
            own_id,
            config,
            candidates: Vec::new(),
            hosts: HashSet::new(),
            nets: KeyCounts::default(),
            peers: HashSet::new(),
            stats: LookupStats::default(),
            span: tracing::debug_span!("lookup", id = id.0, kind = ?kind, %target),
        }
    }

    fn distance(&self, c: &Candidate) -> Id {
        c.id.map_or(Id::MAX, |id| id.distance(&self.target))
    }

    fn sort(&mut self) {
        let target = self.target;
        self.candidates.sort_by_key(|c| c.id.map_or(Id::MAX, |id| id.distance(&target)));
        if self.candidates.len() > self.config.max_candidates {
            // Forget the farthest candidates we have not asked; asked ones stay so their
            // answers can still be matched.
            let mut excess = self.candidates.len() - self.config.max_candidates;
            let mut i = self.candidates.len();
            while excess > 0 && i > 0 {
                i -= 1;
                if self.candidates[i].state == State::Fresh {
                    let gone = self.candidates.remove(i);
                    self.forget_addr(gone.addr);
                    excess -= 1;
                }
            }
        }
    }

    fn forget_addr(&mut self, addr: SocketAddr) {
        self.hosts.remove(&host_key(addr));
        self.nets.remove(net_key(addr));
    }

    /// Whether a candidate at `addr` may join: one per host, a few per network.
    fn admit_addr(&mut self, addr: SocketAddr) -> bool {
        let net = self.nets.get(net_key(addr));
        if self.hosts.contains(&host_key(addr)) || net >= self.config.max_per_net {
            return false;
        }
        self.hosts.insert(host_key(addr));
        self.nets.add(net_key(addr));
        true
    }

    /// Adds nodes learned from the routing table (depth 0) or from an answer.
    pub fn add_nodes<'a>(&mut self, nodes: impl IntoIterator<Item = &'a CompactNode>, depth: u32) {
        for n in nodes {
            if n.id == self.own_id || n.addr.port() == 0 {
                continue;
            }
            if self.candidates.iter().any(|c| c.id == Some(n.id)) || !self.admit_addr(n.addr) {
                continue;
            }
            self.candidates.push(Candidate {
                id: Some(n.id),
                addr: n.addr,
                state: State::Fresh,
                depth,
                attempts: 0,
                outstanding: 0,
                token: None,
                filters: None,
                followup: Followup::None,
            });
        }
        self.sort();
    }

    /// Adds a bootstrap router whose id we do not know.
    pub fn add_router(&mut self, addr: SocketAddr) {
        if self.candidates.iter().any(|c| c.addr == addr) {
            return;
        }
        // The user chose the routers: no network cap, but they count against one.
        self.hosts.insert(host_key(addr));
        self.nets.add(net_key(addr));
        self.candidates.push(Candidate {
            id: None,
            addr,
            state: State::Fresh,
            depth: 0,
            attempts: 0,
            outstanding: 0,
            token: None,
            filters: None,
            followup: Followup::None,
        });
        self.sort();
    }

    /// The next node to ask, if a slot is free and a node worth asking is left. The caller
    /// sends the query and keeps calling until `None`.
    pub fn next_query(&mut self) -> Option<(Option<NodeId>, SocketAddr)> {
        if self.stats.queries >= self.config.max_queries {
            return None;
        }
        let in_flight = self.candidates.iter().filter(|c| c.state == State::InFlight).count();
        if in_flight >= self.config.alpha {
            return None;
        }
        // Only the k closest nodes that may still answer are worth asking; slow ones do not
        // count against that window, so the lookup can move past them.
        let mut window = 0;
        for c in self.candidates.iter_mut() {
            match c.state {
                State::Failed | State::Slow => continue,
                State::Fresh => {
                    c.state = State::InFlight;
                    c.attempts = 1;
                    c.outstanding = 1;
                    self.stats.queries += 1;
                    return Some((c.id, c.addr));
                }
                State::InFlight | State::Responded => {}
            }
            window += 1;
            if window >= self.config.k {
                break;
            }
        }
        None
    }

    fn find(&mut self, addr: SocketAddr) -> Option<&mut Candidate> {
        self.candidates.iter_mut().find(|c| c.addr == addr)
    }

    /// An answer from `addr`. Returns the peers not seen before in this lookup.
    pub fn on_response(
        &mut self,
        addr: SocketAddr,
        responder: NodeId,
        nodes: &[CompactNode],
        values: &[SocketAddr],
        token: Option<Vec<u8>>,
    ) -> Vec<SocketAddr> {
        self.stats.responses += 1;
        let Some(c) = self.find(addr) else { return Vec::new() };
        c.outstanding = c.outstanding.saturating_sub(1);
        if c.state == State::Responded && c.followup == Followup::Sent && c.id == Some(responder) {
            // The values a scrape answer left out.
            c.followup = Followup::Done;
            return self.take_values(values);
        }
        if c.state == State::Responded || c.state == State::Failed {
            return Vec::new();
        }
        match c.id {
            // A node answering with another id than it was listed under is not the node we
            // looked for; trust neither it nor the nodes it names.
            Some(expected) if expected != responder => {
                c.state = State::Failed;
                return Vec::new();
            }
            _ => c.id = Some(responder),
        }
        c.state = State::Responded;
        c.token = token;
        let depth = c.depth + 1;
        self.add_nodes(nodes.iter().take(self.config.max_nodes_per_reply), depth);
        self.take_values(values)
    }

    /// Keeps the peers of one answer not seen before, within the caps, and returns them.
    fn take_values(&mut self, values: &[SocketAddr]) -> Vec<SocketAddr> {
        let room = self.config.max_peers.saturating_sub(self.peers.len());
        let fresh: Vec<SocketAddr> = values
            .iter()
            .take(self.config.max_values_per_reply)
            .copied()
            .filter(|p| self.peers.insert(*p))
            .take(room)
            .collect();
        // `take(room)` stops the filter, so at most `room` were inserted.
        fresh
    }

    /// The BEP 33 part of an answer `on_response` took: keeps the filters, and asks for a
    /// follow-up when they show peers the answer did not list.
    pub fn on_scrape(&mut self, addr: SocketAddr, seeds: Option<&Bloom>, peers: Option<&Bloom>, had_values: bool) {
        if !self.scrape || (seeds.is_none() && peers.is_none()) {
            return;
        }
        let Some(c) = self.find(addr) else { return };
        if c.state != State::Responded || c.followup != Followup::None {
            return;
        }
        let (s, p) = (seeds.cloned().unwrap_or_default(), peers.cloned().unwrap_or_default());
        let holds_peers = !s.is_empty() || !p.is_empty();
        if holds_peers && !had_values {
            c.followup = Followup::Wanted;
        }
        c.filters = Some(Box::new((s, p)));
    }

    /// A follow-up get_peers without `scrape` to send, within the query budget.
    pub fn next_followup(&mut self) -> Option<(Option<NodeId>, SocketAddr)> {
        if self.stats.queries >= self.config.max_queries {
            return None;
        }
        let c = self.candidates.iter_mut().find(|c| c.followup == Followup::Wanted)?;
        c.followup = Followup::Sent;
        c.outstanding += 1;
        self.stats.queries += 1;
        Some((c.id, c.addr))
    }

    fn followups_pending(&self) -> bool {
        let budget = self.stats.queries < self.config.max_queries;
        self.candidates.iter().any(|c| c.followup == Followup::Sent || (budget && c.followup == Followup::Wanted))
    }

    /// The union of the filters of the k closest responders, when any sent filters.
    pub fn scrape_estimate(&self) -> Option<ScrapeEstimate> {
        let (mut seeds, mut peers, mut nodes) = (Bloom::default(), Bloom::default(), 0);
        for c in self.candidates.iter().filter(|c| c.state == State::Responded).take(self.config.k) {
            if let Some(f) = &c.filters {
                seeds.union(&f.0);
                peers.union(&f.1);
                nodes += 1;
            }
        }
        (nodes > 0).then(|| ScrapeEstimate { seeds: seeds.estimate(), leechers: peers.estimate(), nodes })
    }

    /// The node answered with a KRPC error: alive, but of no use to this lookup.
    pub fn on_error(&mut self, addr: SocketAddr) {
        if let Some(c) = self.find(addr) {
            if c.followup == Followup::Sent {
                c.followup = Followup::Done;
            }
            c.outstanding = c.outstanding.saturating_sub(1);
            if c.state != State::Responded {
                c.state = State::Failed;
            }
        }
    }

    pub fn on_short_timeout(&mut self, addr: SocketAddr) -> ShortTimeout {
        let max_queries = self.config.max_queries;
        let queries = self.stats.queries;
        let Some(c) = self.find(addr) else { return ShortTimeout::Nothing };
        if c.state != State::InFlight {
            return ShortTimeout::Nothing;
        }
        c.state = State::Slow;
        if c.attempts >= 2 || queries >= max_queries {
            return ShortTimeout::Nothing;
        }
        c.attempts += 1;
        c.outstanding += 1;
        let retry = ShortTimeout::Retry { id: c.id, addr: c.addr };
        self.stats.queries += 1;
        retry
    }

    pub fn on_timeout(&mut self, addr: SocketAddr) {
        self.stats.timeouts += 1;
        if let Some(c) = self.find(addr) {
            if c.followup == Followup::Sent {
                c.followup = Followup::Done;
            }
            c.outstanding = c.outstanding.saturating_sub(1);
            if c.outstanding == 0 && matches!(c.state, State::InFlight | State::Slow) {
                c.state = State::Failed;
            }
        }
    }

    /// Done when the k closest nodes that have not failed all answered, or nothing is left,
    /// and no follow-up is owed.
    pub fn is_done(&self) -> bool {
        self.traversal_done() && !self.followups_pending()
    }

    fn traversal_done(&self) -> bool {
        let mut window = 0;
        for c in &self.candidates {
            match c.state {
                State::Failed => continue,
                State::Responded => {}
                State::Fresh | State::InFlight | State::Slow => {
                    return self.stats.queries >= self.config.max_queries
                        && !self.candidates.iter().any(|c| c.outstanding > 0);
                }
            }
            window += 1;
            if window >= self.config.k {
                break;
            }
        }
        true
    }

    /// The closest nodes that answered, closest first, with the tokens they gave. Among the
    /// 2k closest, nodes whose id is valid for their address (BEP 42, or exempt) come first:
    /// a Sybil can pick any id to sit next to a target, but not a valid one for its address.
    pub fn closest(&self) -> Vec<(CompactNode, Option<Vec<u8>>)> {
        let mut answered: Vec<(bool, CompactNode, Option<Vec<u8>>)> = self
            .candidates
            .iter()
            .filter(|c| c.state == State::Responded)
            .filter_map(|c| {
                let id = c.id?;
                let valid = bep42::is_exempt(c.addr.ip()) || bep42::is_valid_id(&id, c.addr.ip());
                Some((valid, CompactNode { id, addr: c.addr }, c.token.clone()))
            })
            .take(2 * self.config.k)
            .collect();
        // A stable sort keeps the distance order within each group.
        answered.sort_by_key(|(valid, _, _)| !*valid);
        answered.into_iter().take(self.config.k).map(|(_, n, t)| (n, t)).collect()
    }

    /// Peers found without asking anybody (our own store); returns the ones not seen before.
    pub fn on_local_peers(&mut self, peers: &[SocketAddr]) -> Vec<SocketAddr> {
        let room = self.config.max_peers.saturating_sub(self.peers.len());
        peers.iter().copied().filter(|p| self.peers.insert(*p)).take(room).collect()
    }

    pub fn peers(&self) -> &HashSet<SocketAddr> {
        &self.peers
    }

    pub fn stats(&self) -> LookupStats {
        let rounds = self
            .candidates
            .iter()
            .filter(|c| c.state == State::Responded)
            .take(self.config.k)
            .map(|c| c.depth + 1)
            .max()
            .unwrap_or(0);
        LookupStats { rounds, ..self.stats.clone() }
    }

    /// Distance of the closest answer so far (for progress reporting).
    pub fn best_distance(&self) -> Option<Id> {
        self.candidates.iter().find(|c| c.state == State::Responded).map(|c| self.distance(c))
    }
}

#[cfg(test)]
mod tests;
