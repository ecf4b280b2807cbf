//! Swarms for the fair-play experiments (issue 13): leechers with upload capacities drawn from
//! a skewed, measured-looking distribution, download a multiple of upload, arriving over time,
//! served by one or more seeds, each leecher playing a [`Strategy`]. Every random choice
//! (capacities, arrivals, the torrent's bytes, latencies, who dials whom, the cores' seeds)
//! comes from [`FairPlay::seed`], so a scenario is one run, event for event.
//!
//! Upload capacities ([`upload_capacity`]): the BitTyrant paper (Piatek et al., NSDI 2007)
//! measured the upload capacity of BitTorrent peers and found it heavily skewed — most peers
//! with modest uplinks, a small share with far more. Its figure's numbers were not available
//! to us, so this is a documented substitute in that shape: a piecewise log-uniform
//! distribution over consumer access links of the time (our own assumption, not the paper's
//! data):
//!
//! | upload KiB/s | share |
//! |--------------|-------|
//! | 16-32        | 10 %  |
//! | 32-64        | 25 %  |
//! | 64-128       | 25 %  |
//! | 128-256      | 20 %  |
//! | 256-1024     | 15 %  |
//! | 1024-4096    | 5 %   |
//!
//! (median about 100 KiB/s, mean about 290 KiB/s: the top 5 % hold about half the upload).
//!
//! How each strategy is measured: a peer's completion time is counted from its arrival. A
//! Sybil is one client (one core, one disk, one [`Capacity`]) under several peer ids on one IP,
//! as a Sybil client would run: each of its neighbours holds a connection to every identity,
//! so it is another candidate there for whatever a choker hands out per connection. Its
//! neighbours are found as an honest peer's are (its dials, and later arrivals dialling it),
//! so the comparison with its honest twin is about identities, not about how many peers it
//! knows. Two earlier models, for the record: four separate cores on one link, each with its
//! own six random dials, counted done when they held as many pieces between them as the
//! torrent (0.5x its twin's time against PropShare: each of four downloads is credited with its
//! fast first quarter, and the machine knows four times the neighbours); one core with those
//! four sets of random dials (0.7x: the wider view, which an honest peer dialling as many
//! neighbours gets too).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::scenario::make_torrent;
use super::strategies::{BitThief, Reveal};
use super::{Behaviour, Capacity, Honest, NodeSpec, Start, Swarm};
use crate::swarm::choker::ChokerKind;
use crate::torrent::metainfo::MetainfoError;
use crate::torrent::Metainfo;

const KIB: u64 = 1024;

/// Uplinks of the probe pairs ([`FairPlay::add_probe_pairs`]): from about the 25th to the
/// 80th percentile of [`upload_capacity`]. Six pairs per run, because two honest peers of one
/// capacity joining together can finish tens of per cent apart (different neighbours).
pub const PROBE_UPLINKS: [u64; 6] = [48 * KIB, 64 * KIB, 96 * KIB, 128 * KIB, 192 * KIB, 256 * KIB];

/// What a peer plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The swarm's own choker ([`FairPlay::choker`]), unchanged.
    Honest,
    /// The BitTyrant choker, told its own uplink.
    BitTyrant,
    /// Never uploads, dials a large share of the swarm ([`FairPlay::large_view_per_mille`]).
    BitThief,
    /// One honest core (the swarm's choker) under `identities` peer ids on one IP.
    Sybil { identities: usize },
    /// The swarm's choker, hiding about `hidden_per_mille` of its pieces while leeching.
    Reveal { hidden_per_mille: u32 },
}

impl Strategy {
    /// A short name for tables.
    pub fn name(&self) -> String {
        match self {
            Strategy::Honest => "honest".into(),
            Strategy::BitTyrant => "bittyrant".into(),
            Strategy::BitThief => "bitthief".into(),
            Strategy::Sybil { identities } => format!("sybil-{identities}"),
            Strategy::Reveal { hidden_per_mille } => format!("reveal-{}pc", hidden_per_mille / 10),
        }
    }
}

/// One peer of the swarm: one machine, one node (a Sybil's identities are one node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub strategy: Strategy,
    pub capacity: Capacity,
    /// When it joins, from the start of the run.
    pub joins_at: Duration,
}

/// When leechers arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrivals {
    /// All at the start (a flash crowd).
    Together,
    /// A Poisson process: exponential gaps of this mean between consecutive arrivals.
    Poisson { mean_gap: Duration },
}

/// How to draw a swarm of honest leechers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Population {
    pub leechers: usize,
    pub arrivals: Arrivals,
    /// Each leecher's download capacity is its upload times this.
    pub down_per_up: u64,
}

/// A fair-play scenario: see the module doc.
#[derive(Debug, Clone)]
pub struct FairPlay {
    pub seed: u64,
    /// Bytes of the torrent's one file.
    pub size: usize,
    pub piece_length: u64,
    /// The seeds, present from the start.
    pub seeds: Vec<Capacity>,
    /// The choker of every honest core, seeds included (seeding uses its seeding turns
    /// whatever the kind).
    pub choker: ChokerKind,
    pub peers: Vec<Peer>,
    /// One-way latency of each connection, drawn uniformly from this range.
    pub latency: (Duration, Duration),
    /// Other leechers each node dials when it joins (among those already there), as a
    /// tracker's answer would give it; it is dialled by later ones too.
    pub dials: usize,
    /// Share of the other leechers a BitThief connects to (those there when it joins, and
    /// each later one as it arrives): its large view.
    pub large_view_per_mille: u32,
    pub max_peers: usize,
    /// Leechers leave this long after completing (`None`: they stay and seed); seeds stay.
    pub linger: Option<Duration>,
    /// A BitThief keeps connections to many more peers.
    pub thief_max_peers: usize,
    pub disk_delay: Duration,
    /// Virtual time after which the run gives up.
    pub limit: Duration,
}

/// One upload capacity (bytes/s) from the distribution in the module doc.
pub fn upload_capacity(rng: &mut StdRng) -> u64 {
    // (share in per mille, low KiB/s, high KiB/s)
    const BINS: [(u32, f64, f64); 6] = [
        (100, 16.0, 32.0),
        (250, 32.0, 64.0),
        (250, 64.0, 128.0),
        (200, 128.0, 256.0),
        (150, 256.0, 1024.0),
        (50, 1024.0, 4096.0),
    ];
    let mut ticket = rng.random_range(0..1000u32);
    let (_, lo, hi) = BINS
        .iter()
        .copied()
        .find(|(share, _, _)| {
            let inside = ticket < *share;
            ticket = ticket.saturating_sub(*share);
            inside
        })
        .unwrap_or(BINS[BINS.len() - 1]);
    let kib = lo * (hi / lo).powf(rng.random::<f64>());
    (kib * KIB as f64) as u64
}

impl FairPlay {
    /// `pop.leechers` honest leechers with capacities from [`upload_capacity`], one seed of
    /// `seed_up` bytes/s up, 8 MiB in 32 KiB pieces, tit-for-tat, 10-60 ms links, 6 dials per
    /// join, a BitThief's view 80 % of the swarm; leechers leave as soon as they complete, so
    /// only the seed serves a peer for nothing in return (the finished peers staying on as
    /// seeds would hand a free rider what the strategies compete for).
    pub fn population(seed: u64, pop: &Population, seed_up: u64) -> FairPlay {
        // Its own stream, so adding probes later leaves the population as it was.
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED_CAFE);
        let mut at = Duration::ZERO;
        let peers = (0..pop.leechers)
            .map(|_| {
                let up = upload_capacity(&mut rng);
                let joins_at = at;
                if let Arrivals::Poisson { mean_gap } = pop.arrivals {
                    let u: f64 = rng.random();
                    at += mean_gap.mul_f64(-(1.0 - u).ln());
                }
                Peer { strategy: Strategy::Honest, capacity: Capacity { up, down: up * pop.down_per_up }, joins_at }
            })
            .collect();
        FairPlay {
            seed,
            size: 8 << 20,
            piece_length: 32 * KIB,
            seeds: vec![Capacity { up: seed_up, down: seed_up }],
            choker: ChokerKind::TitForTat,
            peers,
            latency: (Duration::from_millis(10), Duration::from_millis(60)),
            dials: 6,
            large_view_per_mille: 800,
            max_peers: 80,
            linger: Some(Duration::ZERO),
            thief_max_peers: 500,
            disk_delay: Duration::from_millis(1),
            limit: Duration::from_secs(3 * 3600),
        }
    }

    /// The experiments' swarm (benches/fairplay.rs and tests/fairplay.rs): 40 leechers from
    /// the distribution, arriving as a Poisson process one second apart on average, download
    /// four times upload, one seed of 256 KiB/s, 8 MiB, every honest core on `choker`.
    /// Upload is what is scarce: the seed alone would need 32 s per copy, and a leecher can
    /// take four times what it gives.
    pub fn standard(seed: u64, choker: ChokerKind) -> FairPlay {
        let pop = Population {
            leechers: 40,
            arrivals: Arrivals::Poisson { mean_gap: Duration::from_secs(1) },
            down_per_up: 4,
        };
        FairPlay { choker, ..FairPlay::population(seed, &pop, 256 * KIB) }
    }

    /// For each of [`PROBE_UPLINKS`], an honest peer and one playing `strategy`, of the same
    /// capacity (download four times upload) and joining together, 10 s into the run, so the
    /// swarm is under way: the pairs to compare, (honest, strategic) indices in
    /// [`FairPlay::peers`].
    pub fn add_probe_pairs(&mut self, strategy: Strategy) -> Vec<(usize, usize)> {
        PROBE_UPLINKS
            .iter()
            .map(|&up| {
                let cap = Capacity { up, down: 4 * up };
                let at = Duration::from_secs(10);
                (self.add(Strategy::Honest, cap, at), self.add(strategy, cap, at))
            })
            .collect()
    }

    /// Adds a peer; returns its index in [`FairPlay::peers`].
    pub fn add(&mut self, strategy: Strategy, capacity: Capacity, joins_at: Duration) -> usize {
        self.peers.push(Peer { strategy, capacity, joins_at });
        self.peers.len() - 1
    }

    /// Every honest leecher plays `strategy` instead.
    pub fn all_play(&mut self, strategy: Strategy) {
        for p in self.peers.iter_mut().filter(|p| p.strategy == Strategy::Honest) {
            p.strategy = strategy;
        }
    }

    fn spec(&self, peer: &Peer, start: Start, identity_seed: u64) -> NodeSpec {
        let (choker, behaviour, max_peers): (ChokerKind, Box<dyn Behaviour>, usize) = match peer.strategy {
            Strategy::Honest | Strategy::Sybil { .. } => (self.choker, Box::new(Honest), self.max_peers),
            Strategy::BitTyrant => {
                (ChokerKind::BitTyrant { upload_capacity: peer.capacity.up }, Box::new(Honest), self.max_peers)
            }
            Strategy::BitThief => (self.choker, Box::new(BitThief), self.thief_max_peers),
            Strategy::Reveal { hidden_per_mille } => {
                (self.choker, Box::new(Reveal::new(hidden_per_mille, identity_seed)), self.max_peers)
            }
        };
        NodeSpec {
            capacity: peer.capacity,
            start,
            disk_delay: self.disk_delay,
            max_peers,
            choker,
            behaviour,
            shares_link_with: None,
            leaves_after: self.linger,
        }
    }

    /// Builds the swarm and its dial plan, at virtual time zero.
    pub fn build(&self, epoch: Instant) -> Result<Played, MetainfoError> {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut content = vec![0u8; self.size];
        rng.fill(&mut content[..]);
        let meta = Arc::new(make_torrent("payload.bin", &content, self.piece_length)?);
        let mut swarm = Swarm::new(rng.random(), epoch);
        for cap in &self.seeds {
            let start = Start::Seed { meta: Arc::clone(&meta), content: content.clone() };
            swarm.add_node(NodeSpec {
                choker: self.choker,
                disk_delay: self.disk_delay,
                max_peers: self.thief_max_peers,
                ..NodeSpec::new(*cap, start)
            });
        }
        let mut nodes = Vec::with_capacity(self.peers.len());
        let mut joins = Vec::with_capacity(self.peers.len());
        for peer in &self.peers {
            let spec = self.spec(peer, Start::Metadata(Arc::clone(&meta)), rng.random());
            nodes.push(swarm.add_node(spec));
            joins.push(peer.joins_at);
        }
        self.plan_dials(&mut swarm, &mut rng, &nodes, &joins);
        Ok(Played { swarm, meta, nodes, peers: self.peers.clone(), completed: false })
    }

    /// How many identities peer `p` shows the swarm.
    fn identities(&self, p: usize) -> u16 {
        match self.peers[p].strategy {
            Strategy::Sybil { identities } => identities.clamp(1, 64) as u16,
            _ => 1,
        }
    }

    /// Each peer dials every seed and `dials` random leechers already there when it joins; a
    /// BitThief also connects to its large view. Each pair of peers at most once. A Sybil's
    /// every identity takes each of its connections: the same neighbours, one connection per
    /// pair of identities.
    fn plan_dials(&self, swarm: &mut Swarm, rng: &mut StdRng, nodes: &[usize], joins: &[Duration]) {
        let thief: Vec<bool> = self.peers.iter().map(|p| p.strategy == Strategy::BitThief).collect();
        let latency = |rng: &mut StdRng| {
            let (lo, hi) = (self.latency.0.as_micros() as u64, self.latency.1.as_micros() as u64);
            Duration::from_micros(if hi > lo { rng.random_range(lo..=hi) } else { lo })
        };
        // Peer `a` is there before `b` when it joins earlier, or at the same time with a
        // lower index.
        let before = |a: usize, b: usize| (joins[a], a) < (joins[b], b);
        let count = nodes.len();
        let mut pairs = BTreeSet::new();
        for i in 0..count {
            for s in 0..self.seeds.len() {
                for id in 0..self.identities(i) {
                    let l = latency(rng);
                    swarm.dial_as((nodes[i], id), (s, 0), joins[i], l);
                }
            }
            let there: Vec<usize> = (0..count).filter(|&j| before(j, i)).collect();
            let mut chosen = BTreeSet::new();
            if thief[i] {
                for &j in &there {
                    if rng.random_range(0..1000) < self.large_view_per_mille {
                        chosen.insert(j);
                    }
                }
            } else {
                let wanted = self.dials.min(there.len());
                while chosen.len() < wanted {
                    chosen.insert(there[rng.random_range(0..there.len())]);
                }
            }
            for j in chosen {
                pairs.insert((i.min(j), i.max(j)));
            }
            // A thief's view takes in later arrivals as they come (it asks the tracker again).
            if thief[i] {
                for j in (0..count).filter(|&j| before(i, j)) {
                    if rng.random_range(0..1000) < self.large_view_per_mille {
                        pairs.insert((i, j));
                    }
                }
            }
        }
        for (a, b) in pairs {
            let (from, to) = if before(a, b) { (b, a) } else { (a, b) };
            let l = latency(rng);
            for ia in 0..self.identities(from) {
                for ib in 0..self.identities(to) {
                    swarm.dial_as((nodes[from], ia), (nodes[to], ib), joins[from].max(joins[to]), l);
                }
            }
        }
    }

    /// Builds and runs the scenario until every leecher has completed (or the limit).
    pub fn run(&self, epoch: Instant) -> Result<Played, MetainfoError> {
        let mut played = self.build(epoch)?;
        played.completed = played.swarm.run_until_complete(self.limit);
        Ok(played)
    }
}

/// A built (and maybe run) fair-play scenario.
pub struct Played {
    pub swarm: Swarm,
    pub meta: Arc<Metainfo>,
    /// The node of each peer of [`FairPlay::peers`] (a Sybil's identities are one node).
    pub nodes: Vec<usize>,
    pub peers: Vec<Peer>,
    pub completed: bool,
}

impl Played {
    /// Peer `p`'s completion time from its arrival; `None` if it did not complete.
    pub fn completion(&self, p: usize) -> Option<Duration> {
        let done = self.swarm.stats(self.nodes[p]).completed_at?;
        Some(done.saturating_sub(self.peers[p].joins_at))
    }

    /// Completion times of the peers that `pick` selects, sorted; `None` if one did not
    /// complete.
    pub fn times(&self, pick: impl Fn(&Peer) -> bool) -> Option<Vec<Duration>> {
        let mut t: Vec<Duration> = (0..self.peers.len())
            .filter(|&p| pick(&self.peers[p]))
            .map(|p| self.completion(p))
            .collect::<Option<_>>()?;
        t.sort();
        Some(t)
    }

    /// Median completion time of the peers that `pick` selects.
    pub fn median(&self, pick: impl Fn(&Peer) -> bool) -> Option<Duration> {
        median(&self.times(pick)?)
    }
}

/// The median of sorted times (the mean of the middle two for an even count).
pub fn median(sorted: &[Duration]) -> Option<Duration> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities_follow_the_documented_distribution() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut up: Vec<u64> = (0..20_000).map(|_| upload_capacity(&mut rng)).collect();
        up.sort();
        assert!(up[0] >= 16 * KIB && up[up.len() - 1] <= 4096 * KIB);
        let share_below = |kib: u64| up.iter().filter(|&&u| u < kib * KIB).count() as f64 / up.len() as f64;
        for (kib, expected) in [(32, 0.10), (64, 0.35), (128, 0.60), (256, 0.80), (1024, 0.95)] {
            let got = share_below(kib);
            assert!((got - expected).abs() < 0.015, "below {kib} KiB/s: {got}, expected {expected}");
        }
    }

    #[test]
    fn a_population_is_the_same_for_a_seed_and_arrives_over_time() {
        let pop = Population {
            leechers: 40,
            arrivals: Arrivals::Poisson { mean_gap: Duration::from_secs(2) },
            down_per_up: 4,
        };
        let a = FairPlay::population(3, &pop, 256 * KIB);
        let b = FairPlay::population(3, &pop, 256 * KIB);
        assert_eq!(a.peers, b.peers);
        assert_ne!(a.peers, FairPlay::population(4, &pop, 256 * KIB).peers);
        let last = a.peers.last().expect("peers").joins_at;
        assert!(last > Duration::from_secs(40) && last < Duration::from_secs(160), "40 gaps of ~2 s: {last:?}");
        assert!(a.peers.iter().all(|p| p.capacity.down == 4 * p.capacity.up));
    }

    #[test]
    fn a_sybil_is_one_client_holding_a_connection_per_identity_to_each_neighbour() {
        let pop = Population { leechers: 3, arrivals: Arrivals::Together, down_per_up: 4 };
        let mut s = FairPlay { size: 1 << 20, ..FairPlay::population(5, &pop, 512 * KIB) };
        let cap = Capacity { up: 128 * KIB, down: 512 * KIB };
        let p = s.add(Strategy::Sybil { identities: 3 }, cap, Duration::ZERO);
        let mut run = s.build(super::super::test_epoch()).expect("torrent");
        run.swarm.run_until(Duration::from_secs(1));
        let sybil = run.nodes[p];
        let ip = run.swarm.addr(sybil).ip();
        // The seed and the three leechers (it joined last, so it dialled all of them), each
        // under three identities.
        assert_eq!(run.swarm.core(sybil).connected().count(), 4 * 3);
        for other in (0..run.swarm.len()).filter(|&n| n != sybil) {
            let from_it = run.swarm.core(other).connected().filter(|a| a.ip() == ip).count();
            assert_eq!(from_it, 3, "node {other} sees every identity");
        }
        run.completed = run.swarm.run_until_complete(s.limit);
        assert!(run.completed);
        assert!(run.completion(p).is_some(), "one client, one disk: done when its core is");
    }
}
