//! Discovery: walking the DHT (BEP 5 node contacts) and asking every node for a sample of the
//! info-hashes it stores (BEP 51 sample_infohashes). One query per node gives both: the
//! samples, and the node's closest contacts to the query's target, which feed the walk.
//!
//! Targets are spread out on purpose (random targets work poorly, users of other crawlers
//! found): the id space is cut into 256 regions by the first byte, and each query aims at the
//! region least asked so far, while the next node to ask is taken from the least visited
//! region that has some waiting. A node is asked again only after its `interval` (clamped)
//! and only while its `num` says it holds more than it showed and the last answer was new;
//! a node that named only contacts leading nowhere (never answering), or named itself, is a
//! liar: what it names from then on is ignored. Every table here has a cap.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::RngExt;

use crate::dht::compact::CompactNode;
use crate::dht::krpc::Response;
use crate::dht::node::QueryId;
use crate::id::{Id, InfoHash, NodeId};

use super::visited::Visited;
use super::CrawlConfig;

const REGIONS: usize = 256;
/// Referrals that must fail, none answering, before a referrer is taken for a liar.
const LIAR_AFTER: u16 = 8;

#[derive(Debug, Clone, Copy)]
struct Fresh {
    node: CompactNode,
    referrer: Option<SocketAddr>,
}

/// What we know of a node we asked, for revisits and for judging what it names.
#[derive(Debug, Default, Clone, Copy)]
struct Asked {
    id: Option<NodeId>,
    visits: u8,
    referrals_ok: u16,
    referrals_failed: u16,
    /// It listed itself among the contacts closest to a target: BEP 5 nodes answer from
    /// their routing table, which never holds themselves, so this is a node built to keep a
    /// crawler (or a lookup) going round in circles.
    names_itself: bool,
}

impl Asked {
    fn liar(&self) -> bool {
        self.names_itself || (self.referrals_ok == 0 && self.referrals_failed >= LIAR_AFTER)
    }
}

struct InFlight {
    node: CompactNode,
    referrer: Option<SocketAddr>,
}

/// Counters of the walk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoveryStats {
    pub visits: u64,
    pub revisits: u64,
    pub answers: u64,
    pub failures: u64,
    pub sample_replies: u64,
    pub samples_received: u64,
    /// Contacts not queued because the queue was full.
    pub fresh_dropped: u64,
    /// Nodes whose referrals never answered: their further contacts are ignored.
    pub liars: u64,
}

pub struct Discovery {
    max_fresh: usize,
    max_known: usize,
    max_samples_per_reply: usize,
    max_nodes_per_reply: usize,
    interval_range: (Duration, Duration),
    max_visits: u8,
    fresh: Vec<VecDeque<Fresh>>,
    fresh_len: usize,
    /// Nodes visited and targets aimed at, per region.
    visits: Vec<u32>,
    targeted: Vec<u32>,
    visited: Visited,
    asked: HashMap<SocketAddr, Asked>,
    revisits: BTreeSet<(Instant, SocketAddr)>,
    in_flight: HashMap<QueryId, InFlight>,
    pub stats: DiscoveryStats,
}

/// What one answer taught.
#[derive(Debug, Default)]
pub struct Learned {
    pub samples: Vec<InfoHash>,
    pub new_nodes: usize,
}

impl Discovery {
    pub fn new(cfg: &CrawlConfig, now: Instant) -> Discovery {
        Discovery {
            max_fresh: cfg.max_fresh_nodes,
            max_known: cfg.max_known_nodes,
            max_samples_per_reply: cfg.max_samples_per_reply,
            max_nodes_per_reply: cfg.max_nodes_per_reply,
            interval_range: (cfg.min_sample_interval, cfg.max_sample_interval),
            max_visits: cfg.max_visits_per_node,
            fresh: (0..REGIONS).map(|_| VecDeque::new()).collect(),
            fresh_len: 0,
            visits: vec![0; REGIONS],
            targeted: vec![0; REGIONS],
            visited: Visited::new(cfg.visited_window, cfg.max_known_nodes, now),
            asked: HashMap::new(),
            revisits: BTreeSet::new(),
            in_flight: HashMap::new(),
            stats: DiscoveryStats::default(),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn fresh_len(&self) -> usize {
        self.fresh_len
    }

    pub fn known_len(&self) -> usize {
        self.asked.len()
    }

    pub fn visited_len(&self) -> usize {
        self.visited.len()
    }

    pub fn next_revisit(&self) -> Option<Instant> {
        self.revisits.first().map(|(t, _)| *t)
    }

    /// Nothing to ask now and nothing awaited (revisits due later do not count).
    pub fn idle(&self) -> bool {
        self.fresh_len == 0 && self.in_flight.is_empty() && self.stats.visits > 0
    }

    /// Queues a contact to ask, unless visited lately, named by a liar, or the queue is full.
    pub fn offer(&mut self, node: CompactNode, referrer: Option<SocketAddr>) -> bool {
        if node.addr.port() == 0 || self.visited.contains(&node.addr) || self.asked.contains_key(&node.addr) {
            return false;
        }
        if self.fresh_len >= self.max_fresh {
            self.stats.fresh_dropped += 1;
            return false;
        }
        self.fresh[region(&node.id)].push_back(Fresh { node, referrer });
        self.fresh_len += 1;
        true
    }

    /// The next node to ask, the target to ask it with, and who named it, if any is due.
    pub fn next_contact(&mut self, now: Instant, rng: &mut StdRng) -> Option<(CompactNode, Id, Option<SocketAddr>)> {
        if let Some(&(at, addr)) = self.revisits.first() {
            if at <= now {
                self.revisits.pop_first();
                if let Some(id) = self.asked.get(&addr).and_then(|a| a.id) {
                    self.stats.revisits += 1;
                    return Some((CompactNode { id, addr }, self.target(rng), None));
                }
            }
        }
        while self.fresh_len > 0 {
            // The least visited region that has contacts waiting, from a random start so
            // that ties do not always favour low ids.
            let start = rng.random_range(0..REGIONS);
            let r = (0..REGIONS)
                .map(|i| (start + i) % REGIONS)
                .filter(|&r| !self.fresh[r].is_empty())
                .min_by_key(|&r| self.visits[r])?;
            let f = self.fresh[r].pop_front()?;
            self.fresh_len -= 1;
            let named_by_liar = f.referrer.and_then(|a| self.asked.get(&a)).is_some_and(Asked::liar);
            if named_by_liar || !self.visited.insert(now, f.node.addr) {
                continue;
            }
            self.visits[r] += 1;
            self.stats.visits += 1;
            return Some((f.node, self.target(rng), f.referrer));
        }
        None
    }

    /// A random id in the region least aimed at and visited.
    fn target(&mut self, rng: &mut StdRng) -> Id {
        let start = rng.random_range(0..REGIONS);
        let r =
            (0..REGIONS).map(|i| (start + i) % REGIONS).min_by_key(|&r| self.targeted[r] + self.visits[r]).unwrap_or(0);
        self.targeted[r] += 1;
        let mut id = Id::random(rng);
        id.0[0] = r as u8;
        id
    }

    pub fn sent(&mut self, q: QueryId, node: CompactNode, referrer: Option<SocketAddr>) {
        self.in_flight.insert(q, InFlight { node, referrer });
    }

    /// Whether `q` is one of ours.
    pub fn owns(&self, q: &QueryId) -> bool {
        self.in_flight.contains_key(q)
    }

    /// An answer to `q`. `learn` is told each sample (within the cap) and says if it was new.
    pub fn on_answer(
        &mut self,
        now: Instant,
        q: QueryId,
        r: &Response,
        learn: &mut dyn FnMut(InfoHash) -> bool,
    ) -> Option<Learned> {
        let f = self.in_flight.remove(&q)?;
        self.stats.answers += 1;
        if let Some(referrer) = f.referrer.and_then(|a| self.asked.get_mut(&a)) {
            referrer.referrals_ok = referrer.referrals_ok.saturating_add(1);
        }
        let addr = f.node.addr;
        let mut learned = Learned::default();
        if r.nodes.iter().chain(r.nodes6.iter()).any(|n| n.addr == addr) {
            self.mark_self_naming(addr);
        }
        let me = self.asked.get(&addr).copied();
        if !me.is_some_and(|a| a.liar()) {
            for n in r.nodes.iter().chain(r.nodes6.iter()).take(self.max_nodes_per_reply) {
                if self.offer(*n, Some(addr)) {
                    learned.new_nodes += 1;
                }
            }
        }
        let mut new_samples = 0;
        if let Some(samples) = &r.samples {
            self.stats.sample_replies += 1;
            // A reply of 10,000 samples is read for the cap's worth only.
            for ih in samples.iter().take(self.max_samples_per_reply) {
                self.stats.samples_received += 1;
                learned.samples.push(*ih);
                if learn(*ih) {
                    new_samples += 1;
                }
            }
        }
        if self.asked.len() < self.max_known || self.asked.contains_key(&addr) {
            let a = self.asked.entry(addr).or_default();
            a.id = Some(r.id);
            a.visits = a.visits.saturating_add(1);
            let shown = r.samples.as_ref().map_or(0, |s| s.len().min(self.max_samples_per_reply)) as i64;
            // `num` is only a hint: it may ask for a revisit, never for more than
            // `max_visits` of them, and only while the node keeps showing new info-hashes.
            let holds_more = r.num.is_some_and(|n| n > shown) && new_samples > 0;
            if holds_more && a.visits < self.max_visits {
                let (lo, hi) = self.interval_range;
                let secs = r.interval.unwrap_or(0).clamp(0, hi.as_secs() as i64) as u64;
                let wait = Duration::from_secs(secs).clamp(lo, hi);
                self.revisits.insert((now + wait, addr));
            }
        }
        Some(learned)
    }

    /// A node listed itself as a contact: a liar from now on (within the cap on nodes known).
    fn mark_self_naming(&mut self, addr: SocketAddr) {
        if self.asked.len() >= self.max_known && !self.asked.contains_key(&addr) {
            return;
        }
        let a = self.asked.entry(addr).or_default();
        if !a.liar() {
            self.stats.liars += 1;
        }
        a.names_itself = true;
    }

    /// `q` timed out or was refused.
    pub fn on_failure(&mut self, q: QueryId) {
        let Some(f) = self.in_flight.remove(&q) else { return };
        self.stats.failures += 1;
        if let Some(referrer) = f.referrer.and_then(|a| self.asked.get_mut(&a)) {
            let was_liar = referrer.liar();
            referrer.referrals_failed = referrer.referrals_failed.saturating_add(1);
            if !was_liar && referrer.liar() {
                self.stats.liars += 1;
            }
        }
        let _ = f.node;
    }
}

fn region(id: &Id) -> usize {
    id.0[0] as usize
}
