//! Crawls in the simulated network ([`crate::sim`]): populating it with announced swarms,
//! driving a crawler's node in virtual time, and scoring what the crawl found against the
//! truth. Shared by `tests/sim_crawl.rs` and `benches/crawl_sim.rs`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::RngExt;

use crate::dht::node::Event;
use crate::id::{Id, InfoHash};
use crate::sim::Network;

use super::{Crawler, Report};

/// The swarms announced: info-hash -> peers (each from its own node, so its own address).
pub type Truth = HashMap<InfoHash, HashSet<SocketAddr>>;

/// `swarms` info-hashes, each announced by 1..=`max_peers` distinct random nodes (none in
/// `except`), in batches so that the per-source limits of the receivers are not the test.
pub fn populate(net: &mut Network, swarms: usize, max_peers: usize, except: &[usize], rng: &mut StdRng) -> Truth {
    let mut truth = Truth::new();
    let mut pending = 0;
    for s in 0..swarms {
        let ih = Id::random(rng);
        let n = rng.random_range(1..=max_peers);
        let mut who = HashSet::new();
        while who.len() < n {
            let i = rng.random_range(0..net.len());
            if !except.contains(&i) && net.is_alive(i) {
                who.insert(i);
            }
        }
        let port = 7000 + (s % 1000) as u16;
        let peers = truth.entry(ih).or_default();
        for i in who {
            peers.insert(SocketAddr::new(net.addr(i).ip(), port));
            net.with_node(i, |node, now| node.announce(now, ih, Some(port), false));
            pending += 1;
        }
        if pending >= 400 {
            let t = net.now() + Duration::from_secs(5);
            net.run_until(t);
            pending = 0;
        }
    }
    let t = net.now() + Duration::from_secs(30);
    net.run_until(t);
    // The announcers' own events are of no use; those of the nodes in `except` (crawlers
    // that were listening) are theirs to read.
    for i in (0..net.len()).filter(|i| !except.contains(i)) {
        net.take_events(i);
    }
    truth
}

/// Runs the network with `crawler` driving node `at` until it finishes or `until`, and
/// returns its reports.
pub fn drive(net: &mut Network, at: usize, crawler: &mut Crawler, until: Instant) -> Vec<Report> {
    let mut reports = Vec::new();
    while net.now() < until && !crawler.is_finished() {
        let slice = net.now() + Duration::from_millis(20);
        let t = crawler.next_deadline().clamp(net.now() + Duration::from_millis(1), slice);
        net.run_until(t.min(until));
        let now = net.now();
        for ev in net.take_events(at) {
            crawler.handle_event(now, &ev);
        }
        net.with_node(at, |node, now| crawler.step(now, node));
        reports.extend(std::iter::from_fn(|| crawler.poll_report()));
    }
    reports
}

/// What a crawl found of the truth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coverage {
    pub info_hashes: usize,
    pub info_hashes_found: usize,
    pub peers: usize,
    pub peers_found: usize,
}

impl Coverage {
    pub fn info_hash_share(&self) -> f64 {
        self.info_hashes_found as f64 / self.info_hashes.max(1) as f64
    }

    pub fn peer_share(&self) -> f64 {
        self.peers_found as f64 / self.peers.max(1) as f64
    }
}

/// Scores swarm reports: an info-hash counts when it was reported, a peer when any report
/// of its swarm listed it.
pub fn score(truth: &Truth, reports: &[Report]) -> Coverage {
    let mut found: HashMap<InfoHash, HashSet<SocketAddr>> = HashMap::new();
    for r in reports {
        if let Report::Swarm(s) = r {
            found.entry(s.info_hash).or_default().extend(s.peers.iter().copied());
        }
    }
    let mut c = Coverage { info_hashes: truth.len(), info_hashes_found: 0, peers: 0, peers_found: 0 };
    for (ih, peers) in truth {
        c.peers += peers.len();
        if let Some(f) = found.get(ih) {
            c.info_hashes_found += 1;
            c.peers_found += peers.intersection(f).count();
        }
    }
    c
}

/// Info-hashes an event reveals to a passive observer: incoming queries and lookup values.
pub fn revealed(event: &Event) -> Option<InfoHash> {
    match event {
        Event::InfoHashSeen { info_hash, .. } => Some(*info_hash),
        Event::Peers { info_hash, peers, .. } if !peers.is_empty() => Some(*info_hash),
        _ => None,
    }
}
