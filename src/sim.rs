//! A simulated network of DHT nodes in virtual time: the production [`Node`] cores wired
//! through an in-memory packet queue with seeded latency, loss and churn. No sockets, no
//! sleeping: the clock jumps straight to the next delivery or deadline, so thousands of nodes
//! run for simulated minutes in seconds, and the same seed gives the same run.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::dht::lookup::LookupId;
use crate::dht::node::{Config, Event, LookupSummary, Node};
use crate::id::{Id, InfoHash};

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    /// One-way latency of each packet, drawn uniformly (so packets also reorder).
    pub latency: (Duration, Duration),
    /// Probability that a packet is lost.
    pub loss: f64,
    pub node: Config,
}

impl Default for SimConfig {
    fn default() -> Self {
        // Every simulated node has its own private address; BEP 42 ids do not apply.
        let node = Config { derive_id_from_ip: false, ..Config::default() };
        SimConfig { seed: 1, latency: (Duration::from_millis(10), Duration::from_millis(80)), loss: 0.0, node }
    }
}

struct SimNode {
    addr: SocketAddr,
    node: Node,
    alive: bool,
    /// The earliest wake-up queued for this node, to skip stale timer entries.
    scheduled: Option<Instant>,
    events: VecDeque<Event>,
}

/// Counters of the simulated links.
#[derive(Debug, Clone, Default)]
pub struct NetStats {
    pub delivered: u64,
    pub lost: u64,
    pub to_dead: u64,
}

/// A datagram on the wire: (arrival, sequence for a stable order, to, from, payload).
type InFlight = (Instant, u64, usize, SocketAddr, Vec<u8>);

/// A hostile stand-in for a node: given (sender, datagram), what it answers, if anything.
pub type Impostor = Box<dyn FnMut(SocketAddr, &[u8]) -> Option<Vec<u8>>>;

pub struct Network {
    config: SimConfig,
    rng: StdRng,
    now: Instant,
    nodes: Vec<SimNode>,
    by_addr: HashMap<SocketAddr, usize>,
    packets: BinaryHeap<Reverse<InFlight>>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    seq: u64,
    /// Nodes whose datagrams go to an impostor instead of their core, and how many it got.
    impostors: HashMap<usize, (Impostor, u64)>,
    pub stats: NetStats,
}

/// The address of simulated node `i`: each in its own /24 so routing-table subnet limits
/// behave as on the Internet.
pub fn sim_addr(i: usize) -> SocketAddr {
    let i = i as u32;
    // 10.A.B.1: 65,536 distinct /24s, more nodes than any simulation here runs.
    let ip = Ipv4Addr::new(10, (i >> 8) as u8, i as u8, 1);
    SocketAddr::new(IpAddr::V4(ip), 6881)
}

impl Network {
    /// A network with no nodes yet; `epoch` is virtual time zero.
    pub fn new(config: SimConfig, epoch: Instant) -> Network {
        Network {
            rng: StdRng::seed_from_u64(config.seed),
            config,
            now: epoch,
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            packets: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            seq: 0,
            impostors: HashMap::new(),
            stats: NetStats::default(),
        }
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].addr
    }

    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i].node
    }

    pub fn is_alive(&self, i: usize) -> bool {
        self.nodes[i].alive
    }

    /// From now on, what reaches node `i` is answered by `impostor` (at `i`'s address and
    /// under whatever id it chooses) instead of the node's core: a liar the others already
    /// know from their routing tables.
    pub fn replace_with_impostor(&mut self, i: usize, impostor: Impostor) {
        self.impostors.insert(i, (impostor, 0));
    }

    /// Datagrams the impostor at `i` received.
    pub fn impostor_hits(&self, i: usize) -> u64 {
        self.impostors.get(&i).map_or(0, |(_, n)| *n)
    }

    /// Adds a node that joins through `routers` (indices of existing nodes).
    pub fn add_node(&mut self, routers: &[usize]) -> usize {
        self.add_node_with(self.config.node.clone(), routers)
    }

    /// Adds a node with its own configuration (a crawler's, say) that joins through `routers`.
    pub fn add_node_with(&mut self, config: Config, routers: &[usize]) -> usize {
        let i = self.nodes.len();
        let addr = sim_addr(i + 1);
        let seed = self.rng.random::<u64>();
        let mut node = Node::new(config, None, seed, self.now);
        let router_addrs = routers.iter().map(|&r| self.nodes[r].addr).collect();
        node.set_routers(self.now, router_addrs);
        self.nodes.push(SimNode { addr, node, alive: true, scheduled: None, events: VecDeque::new() });
        self.by_addr.insert(addr, i);
        self.after_activity(i);
        i
    }

    /// Builds a network of `n` nodes: each joins through up to three random earlier nodes,
    /// a little apart in time, and then the whole network runs for `settle`.
    pub fn grow(&mut self, n: usize, join_gap: Duration, settle: Duration) {
        for _ in 0..n {
            let existing = self.nodes.len();
            let routers: Vec<usize> = if existing == 0 {
                Vec::new()
            } else {
                (0..3.min(existing)).map(|_| self.rng.random_range(0..existing)).collect()
            };
            self.add_node(&routers);
            let t = self.now + join_gap;
            self.run_until(t);
        }
        let t = self.now + settle;
        self.run_until(t);
    }

    /// Stops node `i` without warning: it no longer answers or sends.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].alive = false;
        self.nodes[i].events.clear();
    }

    /// Takes the events node `i` produced so far.
    pub fn take_events(&mut self, i: usize) -> Vec<Event> {
        self.nodes[i].events.drain(..).collect()
    }

    /// Runs `f` on node `i` at the current time, then collects what it sent.
    pub fn with_node<T>(&mut self, i: usize, f: impl FnOnce(&mut Node, Instant) -> T) -> T {
        let now = self.now;
        let out = f(&mut self.nodes[i].node, now);
        self.after_activity(i);
        out
    }

    /// Collects node `i`'s datagrams and events and queues its next wake-up.
    fn after_activity(&mut self, i: usize) {
        let from = self.nodes[i].addr;
        while let Some(t) = self.nodes[i].node.poll_transmit() {
            self.queue_packet(from, t.to, t.payload);
        }
        while let Some(ev) = self.nodes[i].node.poll_event() {
            self.nodes[i].events.push_back(ev);
        }
        let deadline = self.nodes[i].node.next_deadline().max(self.now);
        let n = &mut self.nodes[i];
        if n.scheduled.is_none_or(|s| deadline < s) {
            n.scheduled = Some(deadline);
            self.timers.push(Reverse((deadline, i)));
        }
    }

    fn queue_packet(&mut self, from: SocketAddr, to: SocketAddr, payload: Vec<u8>) {
        if self.rng.random_bool(self.config.loss.clamp(0.0, 1.0)) {
            self.stats.lost += 1;
            return;
        }
        let Some(&dest) = self.by_addr.get(&to) else {
            self.stats.to_dead += 1;
            return;
        };
        let (lo, hi) = self.config.latency;
        let latency = if hi > lo { self.rng.random_range(lo..=hi) } else { lo };
        self.seq += 1;
        self.packets.push(Reverse((self.now + latency, self.seq, dest, from, payload)));
    }

    /// Processes the next packet or timer; false when nothing is left to do before `limit`.
    fn step(&mut self, limit: Instant) -> bool {
        let next_packet = self.packets.peek().map(|Reverse(p)| p.0);
        let next_timer = self.timers.peek().map(|Reverse(t)| t.0);
        let take_packet = match (next_packet, next_timer) {
            (None, None) => return false,
            (Some(p), Some(t)) => p <= t,
            (Some(_), None) => true,
            (None, Some(_)) => false,
        };
        if take_packet {
            let Some(Reverse((at, seq, dest, from, payload))) = self.packets.pop() else { return false };
            if at > limit {
                self.packets.push(Reverse((at, seq, dest, from, payload)));
                return false;
            }
            self.now = self.now.max(at);
            if !self.nodes[dest].alive {
                self.stats.to_dead += 1;
                return true;
            }
            self.stats.delivered += 1;
            if let Some((impostor, hits)) = self.impostors.get_mut(&dest) {
                *hits += 1;
                if let Some(reply) = impostor(from, &payload) {
                    let own = self.nodes[dest].addr;
                    self.queue_packet(own, from, reply);
                }
                return true;
            }
            let now = self.now;
            self.nodes[dest].node.handle_packet(now, from, &payload);
            self.after_activity(dest);
        } else {
            let Some(Reverse((at, i))) = self.timers.pop() else { return false };
            if at > limit {
                self.timers.push(Reverse((at, i)));
                return false;
            }
            self.now = self.now.max(at);
            if self.nodes[i].scheduled != Some(at) {
                return true;
            }
            self.nodes[i].scheduled = None;
            if !self.nodes[i].alive {
                return true;
            }
            let now = self.now;
            if self.nodes[i].node.next_deadline() <= now {
                self.nodes[i].node.handle_timeout(now);
            }
            self.after_activity(i);
        }
        true
    }

    /// Runs the network until virtual time `t`.
    pub fn run_until(&mut self, t: Instant) {
        while self.step(t) {}
        self.now = self.now.max(t);
    }

    /// Runs until node `i` reports the end of `lookup` (or `limit` of virtual time passes),
    /// returning the summary and every peer the lookup reported.
    pub fn run_lookup(
        &mut self,
        i: usize,
        lookup: LookupId,
        limit: Duration,
    ) -> Option<(LookupSummary, Vec<SocketAddr>)> {
        let end = self.now + limit;
        let mut peers = Vec::new();
        loop {
            for ev in self.nodes[i].events.drain(..) {
                match ev {
                    Event::Peers { lookup: l, peers: p, .. } if l == lookup => peers.extend(p),
                    Event::LookupDone(s) if s.id == lookup => return Some((s, peers)),
                    _ => {}
                }
            }
            if self.now >= end || !self.step(end) {
                return None;
            }
        }
    }

    pub fn find_node(&mut self, i: usize, target: Id) -> Option<LookupSummary> {
        let id = self.with_node(i, |n, now| n.find_node(now, target));
        self.run_lookup(i, id, Duration::from_secs(120)).map(|(s, _)| s)
    }

    pub fn get_peers(&mut self, i: usize, info_hash: InfoHash) -> Option<(LookupSummary, Vec<SocketAddr>)> {
        let id = self.with_node(i, |n, now| n.get_peers(now, info_hash));
        self.run_lookup(i, id, Duration::from_secs(120))
    }

    pub fn announce(&mut self, i: usize, info_hash: InfoHash, port: u16) -> Option<LookupSummary> {
        let id = self.with_node(i, |n, now| n.announce(now, info_hash, Some(port), false));
        let summary = self.run_lookup(i, id, Duration::from_secs(120)).map(|(s, _)| s);
        // Let the announce_peer queries land.
        let t = self.now + Duration::from_secs(2);
        self.run_until(t);
        summary
    }

    /// The `k` live nodes closest to `target`, other than `except`, by brute force.
    pub fn true_closest(&self, target: &Id, k: usize, except: usize) -> Vec<Id> {
        let mut ids: Vec<Id> =
            self.nodes.iter().enumerate().filter(|(j, n)| n.alive && *j != except).map(|(_, n)| n.node.id()).collect();
        ids.sort_by_key(|id| id.distance(target));
        ids.truncate(k);
        ids
    }

    /// A random live node; `None` when all are dead.
    pub fn random_alive(&mut self) -> Option<usize> {
        let alive: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].alive).collect();
        if alive.is_empty() {
            return None;
        }
        Some(alive[self.rng.random_range(0..alive.len())])
    }

    pub fn random_id(&mut self) -> Id {
        Id::random(&mut self.rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_simulated_node_has_its_own_subnet() {
        // Shared /24s would trip the routing table's per-subnet limit and starve the tables.
        let subnets: std::collections::HashSet<[u8; 3]> = (1..=20_000)
            .map(|i| match sim_addr(i).ip() {
                IpAddr::V4(v4) => [v4.octets()[0], v4.octets()[1], v4.octets()[2]],
                IpAddr::V6(_) => unreachable!("simulated nodes are IPv4"),
            })
            .collect();
        assert_eq!(subnets.len(), 20_000);
    }
}
