//! `kadswarm crawl` (issue 11): the sans-IO crawler core. It drives a full, answering DHT
//! [`Node`](crate::dht::node::Node): discovery walks the DHT asking every node for BEP 51
//! samples ([`discovery`]), and learns info-hashes from the BEP 5 get_peers and announce_peer
//! queries that reach its node; membership looks up each info-hash once per round with a
//! get_peers lookup that scrapes (BEP 33) and reports who is in the swarm ([`membership`]).
//!
//! The driver feeds node events to [`Crawler::handle_event`], calls [`Crawler::step`] with
//! the node after every batch and at [`Crawler::next_deadline`], and drains
//! [`Crawler::poll_report`]. The core never reads a clock nor touches a socket.
//!
//! Politeness: one query budget covers everything the node sends (the crawler's queries,
//! its lookups, the node's own maintenance), at `rate` per second; queries in flight are
//! capped; each node's BEP 51 `interval` is honoured (clamped to a sane range).
//!
//! Memory is bounded by the caps whatever the DHT answers. At the defaults: info-hashes
//! 1,000,000 × about 60 bytes (map entry and queue slot) ≈ 60 MB; nodes asked 1,000,000 ×
//! about 60 bytes plus the visited filter's two generations of as many addresses (≈ 40 bytes
//! each) ≈ 140 MB; queued contacts 200,000 × about 60 bytes ≈ 12 MB; peers of running lookups
//! 16 × 2,000 addresses; reports queued 10,000.

pub mod app;
pub mod crawler;
pub mod discovery;
pub mod membership;
pub mod metadata;
pub mod record;
pub mod sim;
pub mod sink;
pub mod store;
pub mod visited;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::id::InfoHash;

pub use crawler::{CrawlStats, Crawler};

#[derive(Debug, Clone)]
pub struct CrawlConfig {
    /// Queries per second, all the node sends included. 150 by default: about 150 × 100
    /// bytes out and as many answers of up to 1.5 kB in, ~2 Mbit/s down, and a few hundred
    /// NAT mappings live at once: what a home router and line carry beside other traffic
    /// (thousands of Q/s fill consumer NAT tables and get a node rate-limited by its peers).
    pub rate: u32,
    /// Queries the budget may save up for a burst.
    pub burst: u32,
    /// Queries in flight at most: direct ones, plus `alpha` for each running lookup.
    pub max_in_flight: usize,
    /// Membership lookups running at once.
    pub max_lookups: usize,
    /// Parallel queries of one lookup, as the node's lookup config has it (for the in-flight
    /// count).
    pub lookup_alpha: usize,
    /// Rounds of membership lookups; `None`: until `duration` ends.
    pub rounds: Option<u32>,
    /// A round starts at most this often; a round also ends by it when discovery never idles.
    pub round_interval: Duration,
    /// The crawl stops starting work after this long; `None`: no limit.
    pub duration: Option<Duration>,
    /// Scrape (BEP 33) in membership lookups.
    pub scrape: bool,
    pub max_info_hashes: usize,
    pub max_known_nodes: usize,
    pub max_fresh_nodes: usize,
    pub max_peers_per_swarm: usize,
    /// Samples read from one BEP 51 reply (BEP 51 replies fit about 20 in a datagram).
    pub max_samples_per_reply: usize,
    /// Contacts read from one reply (BEP 5 replies carry 8).
    pub max_nodes_per_reply: usize,
    /// A node's `interval` is clamped to this range (0 would mean a tight loop, 2^31 never).
    pub min_sample_interval: Duration,
    pub max_sample_interval: Duration,
    /// Visits of one node at most, however large its `num`.
    pub max_visits_per_node: u8,
    /// A node visited is not visited again (but for revisits) for about this long.
    pub visited_window: Duration,
    /// Reports waiting for the driver at most; work pauses while the queue is full.
    pub max_reports: usize,
}

impl Default for CrawlConfig {
    fn default() -> Self {
        CrawlConfig {
            rate: 150,
            burst: 300,
            max_in_flight: 128,
            max_lookups: 16,
            lookup_alpha: 5,
            rounds: Some(1),
            round_interval: Duration::from_secs(30 * 60),
            duration: None,
            scrape: true,
            max_info_hashes: 1_000_000,
            max_known_nodes: 1_000_000,
            max_fresh_nodes: 200_000,
            max_peers_per_swarm: 2000,
            max_samples_per_reply: 64,
            max_nodes_per_reply: 16,
            min_sample_interval: Duration::from_secs(60),
            max_sample_interval: Duration::from_secs(6 * 3600),
            max_visits_per_node: 8,
            visited_window: Duration::from_secs(3600),
            max_reports: 10_000,
        }
    }
}

/// Who was in a swarm when: the peers one round's get_peers lookup found, and the BEP 33
/// estimates when close nodes scraped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmReport {
    pub info_hash: InfoHash,
    pub round: u32,
    pub peers: Vec<SocketAddr>,
    pub seeds: Option<u32>,
    pub leechers: Option<u32>,
    pub at: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Swarm(SwarmReport),
    /// Every info-hash of the round was looked up.
    RoundDone(u32),
}

#[cfg(test)]
mod tests;
