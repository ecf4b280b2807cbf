//! The plain records the crawler hands to a [`CrawlStore`](super::store::CrawlStore): what was
//! seen of one swarm in one round, what its metadata says, and which crawl run saw it. They
//! carry no I/O and no clock: the crawler stamps times (unix milliseconds) when it observes.

use std::net::SocketAddr;

use crate::id::InfoHash;

/// One swarm as seen in one round of a crawl: the peers `get_peers` returned and, when a BEP 33
/// scrape answered, its seed and leecher estimates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub info_hash: InfoHash,
    /// The round of the run this was seen in (0-based, as the crawler counts).
    pub round: u32,
    /// When it was seen, in unix milliseconds.
    pub observed_at_ms: i64,
    pub peers: Vec<SocketAddr>,
    /// BEP 33 seed estimate; `None` when no scrape answered.
    pub seeds: Option<u32>,
    /// BEP 33 leecher estimate; `None` when no scrape answered.
    pub leechers: Option<u32>,
}

/// What BEP 9 metadata told about a swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub info_hash: InfoHash,
    pub name: String,
    /// Total size of the torrent's files in bytes.
    pub size: u64,
}

/// One crawl run: a process crawling from `started_at_ms` until it ends or is stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    /// Unix milliseconds.
    pub started_at_ms: i64,
    /// Who crawled: the node id in hex, or a host name; several crawlers may share one store.
    pub crawler: String,
    /// The command line, for the record.
    pub args: String,
}

/// A run's number in its store, unique within that store (across all crawlers sharing it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(pub i64);

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}
