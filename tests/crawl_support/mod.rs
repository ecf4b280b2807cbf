//! What the crawl-store tests share: a deterministic synthetic crawl, and readers that turn a
//! JSONL file, an SQLite file or a PostgreSQL database back into one comparable form.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use kadswarm::crawl::record::Observation;
use kadswarm::crawl::store::{addr_from_bytes, JsonlLine};
use kadswarm::id::{Id, InfoHash};

/// One observation as every backend can give it back.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seen {
    pub crawler: String,
    pub round: u32,
    pub info_hash: String,
    pub observed_at: i64,
    pub peers: BTreeSet<String>,
    pub seeds: Option<u32>,
    pub leechers: Option<u32>,
}

/// Swarm `i` of a crawl: swarms below `shared` are the same for every crawler.
pub fn swarm(crawler: u8, i: u32, shared: u32) -> InfoHash {
    let mut b = [0u8; 20];
    b[0] = if i < shared { 0xff } else { crawler };
    b[1..5].copy_from_slice(&i.to_be_bytes());
    Id(b)
}

/// A round of a synthetic crawl: `swarms` swarms with up to `peers` peers each, peers drifting
/// from round to round (some leave, some join), IPv4 and IPv6, some scrapes unanswered.
pub fn round(crawler: u8, round: u32, swarms: u32, shared: u32, peers: u32, at: i64) -> Vec<Observation> {
    (0..swarms)
        .map(|i| {
            let n = (i + round) % (peers + 1);
            let peers = (0..n)
                .map(|p| {
                    let x = p + round;
                    if p % 5 == 4 {
                        SocketAddr::new(
                            std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, i as u16, x as u16).into(),
                            6881,
                        )
                    } else {
                        SocketAddr::new(
                            std::net::Ipv4Addr::new(10, crawler, (i % 250) as u8, (x % 250) as u8).into(),
                            1000 + p as u16,
                        )
                    }
                })
                .collect();
            Observation {
                info_hash: swarm(crawler, i, shared),
                round,
                observed_at_ms: at + i64::from(i % 7),
                peers,
                seeds: (i % 3 != 0).then_some(i % 11),
                leechers: (i % 3 != 0).then_some(i % 13),
            }
        })
        .collect()
}

pub fn read_jsonl(path: &std::path::Path) -> Vec<JsonlLine> {
    let text = std::fs::read_to_string(path).expect("read JSONL");
    text.lines().map(|l| serde_json::from_str(l).expect("JSONL line")).collect()
}

pub fn seen_from_jsonl(lines: &[JsonlLine], crawler: &str) -> Vec<Seen> {
    lines
        .iter()
        .map(|l| Seen {
            crawler: crawler.to_string(),
            round: l.round,
            info_hash: l.info_hash.clone(),
            observed_at: l.observed_at,
            peers: l.peers.iter().cloned().collect(),
            seeds: l.seeds,
            leechers: l.leechers,
        })
        .collect()
}

/// first_seen, last_seen per swarm from JSONL lines (the last line of a swarm has the span).
pub fn spans_from_jsonl(lines: &[JsonlLine]) -> BTreeMap<String, (i64, i64)> {
    let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for l in lines {
        let e = out.entry(l.info_hash.clone()).or_insert((l.first_seen, l.last_seen));
        *e = (e.0.min(l.first_seen), e.1.max(l.last_seen));
    }
    out
}

/// The observation query, the same text for SQLite and PostgreSQL.
pub const SEEN_SQL: &str =
    "SELECT r.crawler, o.id, o.round, s.info_hash, o.observed_at, o.seeds, o.leechers, p.ip, p.port
     FROM observations o JOIN runs r ON r.id = o.run JOIN swarms s ON s.id = o.swarm
     LEFT JOIN observation_peers m ON m.observation = o.id LEFT JOIN peers p ON p.id = m.peer
     ORDER BY o.id";

/// One row of [`SEEN_SQL`], folded into `Seen`s by observation id.
pub type SeenRow = (String, i64, i64, Vec<u8>, i64, Option<i64>, Option<i64>, Option<Vec<u8>>, Option<i64>);

pub fn fold_seen(rows: Vec<SeenRow>) -> Vec<Seen> {
    let mut by_id: BTreeMap<i64, Seen> = BTreeMap::new();
    for (crawler, id, round, hash, at, seeds, leechers, ip, port) in rows {
        let seen = by_id.entry(id).or_insert_with(|| Seen {
            crawler,
            round: round as u32,
            info_hash: Id::from_slice(&hash).expect("20-byte hash").to_hex(),
            observed_at: at,
            peers: BTreeSet::new(),
            seeds: seeds.map(|s| s as u32),
            leechers: leechers.map(|s| s as u32),
        });
        if let (Some(ip), Some(port)) = (ip, port) {
            seen.peers.insert(addr_from_bytes(&ip, port as u16).expect("stored IP").to_string());
        }
    }
    by_id.into_values().collect()
}
