//! Membership: who is in each swarm, round after round. For every info-hash known, one
//! get_peers lookup per round (BEP 5) that keeps the values of all responders, scraping
//! (BEP 33) for seed and leecher estimates; a bounded number run at once.
//!
//! A round is a pass over every info-hash known when it starts, plus those learned while it
//! runs. It ends when its queue is empty, no lookup runs, and discovery has gone idle or the
//! round interval has passed (a real DHT is never walked to the end). The next round starts
//! one interval after the previous one started.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use crate::dht::lookup::LookupId;
use crate::dht::node::LookupSummary;
use crate::id::InfoHash;

use super::{CrawlConfig, SwarmReport};

struct Running {
    info_hash: InfoHash,
    round: u32,
    peers: Vec<SocketAddr>,
}

pub struct Membership {
    max_info_hashes: usize,
    max_peers_per_swarm: usize,
    /// Every info-hash known, with the number of the last round that looked it up, plus one
    /// (0: never).
    known: HashMap<InfoHash, u32>,
    queue: VecDeque<InfoHash>,
    running: HashMap<LookupId, Running>,
    pub round: u32,
    pub round_start: Instant,
    /// The current round ended (its `RoundDone` was reported).
    pub round_closed: bool,
    pub dropped_info_hashes: u64,
    pub dropped_peers: u64,
    pub lookups_done: u64,
}

impl Membership {
    pub fn new(cfg: &CrawlConfig, now: Instant) -> Membership {
        Membership {
            max_info_hashes: cfg.max_info_hashes,
            max_peers_per_swarm: cfg.max_peers_per_swarm,
            known: HashMap::new(),
            queue: VecDeque::new(),
            running: HashMap::new(),
            round: 0,
            round_start: now,
            round_closed: false,
            dropped_info_hashes: 0,
            dropped_peers: 0,
            lookups_done: 0,
        }
    }

    pub fn known(&self) -> usize {
        self.known.len()
    }

    pub fn contains(&self, ih: &InfoHash) -> bool {
        self.known.contains_key(ih)
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// A new info-hash is remembered and queued for the current round; false if it was
    /// known or the cap is reached (then it is counted as dropped).
    pub fn learn(&mut self, ih: InfoHash) -> bool {
        if self.known.contains_key(&ih) {
            return false;
        }
        if self.known.len() >= self.max_info_hashes {
            self.dropped_info_hashes += 1;
            return false;
        }
        self.known.insert(ih, 0);
        self.queue.push_back(ih);
        true
    }

    /// The next info-hash to look up in this round.
    pub fn next_info_hash(&mut self) -> Option<InfoHash> {
        if self.round_closed {
            return None;
        }
        let mark = self.round + 1;
        while let Some(ih) = self.queue.pop_front() {
            if let Some(last) = self.known.get_mut(&ih) {
                if *last != mark {
                    *last = mark;
                    return Some(ih);
                }
            }
        }
        None
    }

    pub fn started(&mut self, lookup: LookupId, info_hash: InfoHash) {
        self.running.insert(lookup, Running { info_hash, round: self.round, peers: Vec::new() });
    }

    pub fn on_peers(&mut self, lookup: LookupId, peers: &[SocketAddr]) {
        let Some(r) = self.running.get_mut(&lookup) else { return };
        let room = self.max_peers_per_swarm.saturating_sub(r.peers.len());
        self.dropped_peers += peers.len().saturating_sub(room) as u64;
        r.peers.extend(peers.iter().take(room));
    }

    pub fn on_done(&mut self, now: Instant, s: &LookupSummary) -> Option<SwarmReport> {
        let r = self.running.remove(&s.id)?;
        self.lookups_done += 1;
        Some(SwarmReport {
            info_hash: r.info_hash,
            round: r.round,
            peers: r.peers,
            seeds: s.scrape.map(|e| e.seeds),
            leechers: s.scrape.map(|e| e.leechers),
            at: now,
        })
    }

    /// Whether the current round has nothing left to do.
    pub fn drained(&self) -> bool {
        self.queue.is_empty() && self.running.is_empty()
    }

    /// Starts the next round: every info-hash known is queued again.
    pub fn next_round(&mut self, now: Instant) {
        self.round += 1;
        self.round_start = now;
        self.round_closed = false;
        self.queue.clear();
        self.queue.extend(self.known.keys().copied());
    }
}
