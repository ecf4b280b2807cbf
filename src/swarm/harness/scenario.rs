//! Ready-made swarms for the harness: one seeder and classes of leechers of set capacities,
//! a torrent of random bytes made from the seed, and a dial plan like the real runner's (each
//! leecher dials the seeder and a few random other leechers as it joins). [`Scenario::run`]
//! plays it to completion and hands back the swarm for inspection.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::{Capacity, NodeSpec, Start, Swarm};
use crate::torrent::create::PieceHasher;
use crate::torrent::metainfo::{FileEntry, Info, MetainfoError};
use crate::torrent::Metainfo;

/// A group of leechers alike in capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    pub name: String,
    pub count: usize,
    pub capacity: Capacity,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub seed: u64,
    /// Bytes of the torrent's one file.
    pub size: usize,
    pub piece_length: u64,
    pub seeder: Capacity,
    pub classes: Vec<Class>,
    /// One-way latency of each connection, drawn uniformly from this range.
    pub latency: (Duration, Duration),
    /// Other leechers each leecher dials (it is dialled by others too).
    pub dials_per_leecher: usize,
    /// Leechers join at random times within this window.
    pub join_within: Duration,
    /// Leechers start from the info-hash alone and fetch the metadata (BEP 9).
    pub magnet: bool,
    pub disk_delay: Duration,
    /// Virtual time after which the run gives up.
    pub limit: Duration,
}

const KIB: u64 = 1024;

impl Scenario {
    /// One seeder (1 MiB/s up) and 50 leechers in three classes — slow (128 KiB/s up, 512
    /// down), medium (512 up, 1 MiB/s down), fast (2 MiB/s both ways) — sharing 4 MiB in
    /// 32 KiB pieces over 5-80 ms links.
    pub fn mixed(seed: u64) -> Scenario {
        let class = |name: &str, count, up, down| Class { name: name.into(), count, capacity: Capacity { up, down } };
        Scenario {
            seed,
            size: 4 << 20,
            piece_length: 32 * KIB,
            seeder: Capacity { up: 1024 * KIB, down: 1024 * KIB },
            classes: vec![
                class("slow", 17, 128 * KIB, 512 * KIB),
                class("medium", 17, 512 * KIB, 1024 * KIB),
                class("fast", 16, 2048 * KIB, 2048 * KIB),
            ],
            latency: (Duration::from_millis(5), Duration::from_millis(80)),
            dials_per_leecher: 8,
            join_within: Duration::from_secs(2),
            magnet: false,
            disk_delay: Duration::from_millis(1),
            limit: Duration::from_secs(3600),
        }
    }

    /// Builds the swarm and its dial plan, at virtual time zero.
    pub fn build(&self, epoch: Instant) -> Result<Built, MetainfoError> {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut content = vec![0u8; self.size];
        rng.fill(&mut content[..]);
        let meta = Arc::new(make_torrent("payload.bin", &content, self.piece_length)?);
        let mut swarm = Swarm::new(rng.random(), epoch);
        let seed = Start::Seed { meta: Arc::clone(&meta), content: content.clone() };
        swarm.add_node(NodeSpec { disk_delay: self.disk_delay, ..NodeSpec::new(self.seeder, seed) });
        let mut class_of = vec![None];
        for (c, class) in self.classes.iter().enumerate() {
            for _ in 0..class.count {
                let start =
                    if self.magnet { Start::Magnet(meta.info_hash) } else { Start::Metadata(Arc::clone(&meta)) };
                swarm.add_node(NodeSpec { disk_delay: self.disk_delay, ..NodeSpec::new(class.capacity, start) });
                class_of.push(Some(c));
            }
        }
        self.plan_dials(&mut swarm, &mut rng);
        Ok(Built { swarm, content, meta, class_of, completed: false, drained: false })
    }

    /// Each leecher dials the seeder when it joins, and `dials_per_leecher` other leechers
    /// once both are there (each pair once, from the later of the two).
    fn plan_dials(&self, swarm: &mut Swarm, rng: &mut StdRng) {
        let leechers = swarm.len() - 1;
        let window = self.join_within.as_millis() as u64;
        let joins: Vec<Duration> = (0..leechers)
            .map(|_| Duration::from_millis(if window == 0 { 0 } else { rng.random_range(0..window) }))
            .collect();
        let latency = |rng: &mut StdRng| {
            let (lo, hi) = (self.latency.0.as_micros() as u64, self.latency.1.as_micros() as u64);
            Duration::from_micros(if hi > lo { rng.random_range(lo..=hi) } else { lo })
        };
        for (i, at) in joins.iter().enumerate() {
            let l = latency(rng);
            swarm.dial(i + 1, 0, *at, l);
        }
        let mut pairs = BTreeSet::new();
        for i in 0..leechers {
            let wanted = self.dials_per_leecher.min(leechers - 1);
            let mut chosen = BTreeSet::new();
            while chosen.len() < wanted {
                let j = rng.random_range(0..leechers);
                if j != i {
                    chosen.insert(j);
                }
            }
            pairs.extend(chosen.into_iter().map(|j| (i.min(j), i.max(j))));
        }
        for (i, j) in pairs {
            // The later of the two dials the one already there.
            let (from, to) = if joins[i] >= joins[j] { (i, j) } else { (j, i) };
            let l = latency(rng);
            swarm.dial(from + 1, to + 1, joins[from], l);
        }
    }

    /// Builds and runs the scenario until every leecher has completed (or the limit), then
    /// lets the links drain.
    pub fn run(&self, epoch: Instant) -> Result<Built, MetainfoError> {
        let mut built = self.build(epoch)?;
        built.completed = built.swarm.run_until_complete(self.limit);
        built.drained = built.swarm.drain(Duration::from_secs(120));
        Ok(built)
    }
}

/// A built (and maybe run) scenario.
pub struct Built {
    pub swarm: Swarm,
    /// The torrent's bytes, as the seeder has them.
    pub content: Vec<u8>,
    pub meta: Arc<Metainfo>,
    /// The class of each node, `None` for the seeder (node 0).
    pub class_of: Vec<Option<usize>>,
    pub completed: bool,
    pub drained: bool,
}

impl Built {
    /// Completion times of the leechers of class `c`, in node order (`None`: not complete).
    pub fn completion_times(&self, c: usize) -> Vec<Option<Duration>> {
        (0..self.swarm.len())
            .filter(|&i| self.class_of[i] == Some(c))
            .map(|i| self.swarm.stats(i).completed_at)
            .collect()
    }

    /// Mean completion time of class `c`, if all of it completed.
    pub fn mean_completion(&self, c: usize) -> Option<Duration> {
        let times: Option<Vec<Duration>> = self.completion_times(c).into_iter().collect();
        let times = times?;
        let n = u32::try_from(times.len()).ok().filter(|&n| n > 0)?;
        Some(times.iter().sum::<Duration>() / n)
    }

    /// Whether node `i` holds exactly the seeder's bytes.
    pub fn byte_exact(&self, i: usize) -> bool {
        self.swarm.stored(i) == Some(&self.content[..])
    }

    /// What two runs of the same seed must agree on: per node, completion time and counters.
    pub fn fingerprint(&self) -> Vec<(Option<Duration>, u64, u64, u64)> {
        (0..self.swarm.len())
            .map(|i| {
                let c = self.swarm.core(i).counters();
                let s = self.swarm.stats(i);
                (s.completed_at, c.received, c.uploaded, s.wire_sent)
            })
            .collect()
    }
}

/// A single-file torrent of `content` cut into pieces of `piece_length` (a power of two from
/// 16 KiB).
pub fn make_torrent(name: &str, content: &[u8], piece_length: u64) -> Result<Metainfo, MetainfoError> {
    let mut hasher = PieceHasher::new(piece_length);
    hasher.update(content);
    let total_length = content.len() as u64;
    let file = FileEntry { path: PathBuf::from(name), length: total_length, offset: 0, pad: false };
    let info = Info {
        name: name.into(),
        piece_length,
        pieces: hasher.finish(),
        files: vec![file],
        total_length,
        private: false,
    };
    Metainfo::from_info_bytes(info.to_bytes())
}
