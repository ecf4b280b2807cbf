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
//! Sybil peer is one machine (one [`Capacity`]) under several identities, each an honest core
//! that dials and is dialled like any peer (never its siblings: they share a disk). Our
//! identities do not coordinate their requests, so two may fetch the same piece; counting the
//! Sybil done when the union of their pieces covers the torrent would charge the attack for
//! that clumsiness. It is counted done when its identities between them have verified as
//! many pieces as the torrent has ([`Played::volume_done`]): the upload the swarm gave the
//! machine, the time a coordinating Sybil client would need, the attacker's best case. The
//! union time ([`Played::union_done`]) is reported too.

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
    /// `identities` honest cores (the swarm's choker) sharing one machine's link.
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

/// One peer of the swarm (one machine; several nodes for a Sybil).
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
        let mut members = Vec::with_capacity(self.peers.len());
        let mut joins = Vec::new();
        for peer in &self.peers {
            let identities = match peer.strategy {
                Strategy::Sybil { identities } => identities.max(1),
                _ => 1,
            };
            let mut nodes = Vec::with_capacity(identities);
            for _ in 0..identities {
                let mut spec = self.spec(peer, Start::Metadata(Arc::clone(&meta)), rng.random());
                spec.shares_link_with = nodes.first().copied();
                nodes.push(swarm.add_node(spec));
                joins.push(peer.joins_at);
            }
            members.push(nodes);
        }
        self.plan_dials(&mut swarm, &mut rng, &members, &joins);
        Ok(Played { swarm, meta, members, peers: self.peers.clone(), completed: false })
    }

    /// Each node dials every seed and `dials` random leechers already there when it joins; a
    /// BitThief also connects to its large view. Each pair at most once.
    fn plan_dials(&self, swarm: &mut Swarm, rng: &mut StdRng, members: &[Vec<usize>], joins: &[Duration]) {
        let first = self.seeds.len();
        let nodes = joins.len();
        let thief: Vec<bool> = members
            .iter()
            .zip(&self.peers)
            .flat_map(|(m, p)| std::iter::repeat_n(p.strategy == Strategy::BitThief, m.len()))
            .collect();
        let latency = |rng: &mut StdRng| {
            let (lo, hi) = (self.latency.0.as_micros() as u64, self.latency.1.as_micros() as u64);
            Duration::from_micros(if hi > lo { rng.random_range(lo..=hi) } else { lo })
        };
        // Node `a` (leecher index) is there before `b` when it joins earlier, or at the same
        // time with a lower index.
        let before = |a: usize, b: usize| (joins[a], a) < (joins[b], b);
        let mut pairs = BTreeSet::new();
        for i in 0..nodes {
            for s in 0..first {
                let l = latency(rng);
                swarm.dial(first + i, s, joins[i], l);
            }
            let there: Vec<usize> =
                (0..nodes).filter(|&j| before(j, i) && !swarm.same_machine(first + i, first + j)).collect();
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
                for j in (0..nodes).filter(|&j| before(i, j) && !swarm.same_machine(first + i, first + j)) {
                    if rng.random_range(0..1000) < self.large_view_per_mille {
                        pairs.insert((i, j));
                    }
                }
            }
        }
        for (a, b) in pairs {
            let (from, to) = if before(a, b) { (b, a) } else { (a, b) };
            let l = latency(rng);
            swarm.dial(first + from, first + to, joins[from].max(joins[to]), l);
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
    /// The nodes of each peer of [`FairPlay::peers`] (several for a Sybil).
    pub members: Vec<Vec<usize>>,
    pub peers: Vec<Peer>,
    pub completed: bool,
}

impl Played {
    /// Peer `p`'s completion time from its arrival; for a Sybil, when its identities between
    /// them had verified as many pieces as the torrent has ([`Played::volume_done`]). `None` if
    /// it did not complete.
    pub fn completion(&self, p: usize) -> Option<Duration> {
        let done = match self.members[p][..] {
            [one] => self.swarm.stats(one).completed_at?,
            _ => self.volume_done(p)?,
        };
        Some(done.saturating_sub(self.peers[p].joins_at))
    }

    /// When peer `p`'s identities between them had verified as many pieces as the torrent has,
    /// a piece two identities both got counted twice (from the start of the run). This is what
    /// a Sybil client that kept its identities from fetching the same piece twice would need
    /// to assemble the file: the upload the swarm gave the machine, which is what the attack
    /// is after. Ours do not coordinate (each is a stock core), so see also
    /// [`Played::union_done`].
    pub fn volume_done(&self, p: usize) -> Option<Duration> {
        let mut times: Vec<Duration> =
            self.members[p].iter().flat_map(|&n| self.swarm.stats(n).verified.iter().map(|&(_, at)| at)).collect();
        times.sort();
        times.get(self.meta.info.piece_count().checked_sub(1)?).copied()
    }

    /// When the union of what peer `p`'s identities verified covered the torrent (from the
    /// start of the run): the file as uncoordinated identities sharing a disk could assemble it.
    pub fn union_done(&self, p: usize) -> Option<Duration> {
        let mut first = vec![None::<Duration>; self.meta.info.piece_count()];
        for &n in &self.members[p] {
            for &(index, at) in &self.swarm.stats(n).verified {
                if let Some(slot) = first.get_mut(index as usize) {
                    *slot = Some(slot.map_or(at, |t| t.min(at)));
                }
            }
        }
        first.into_iter().collect::<Option<Vec<_>>>()?.into_iter().max()
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
    fn a_sybil_is_done_when_its_identities_together_hold_every_piece() {
        let pop = Population { leechers: 3, arrivals: Arrivals::Together, down_per_up: 4 };
        let mut s = FairPlay { size: 1 << 20, ..FairPlay::population(5, &pop, 512 * KIB) };
        let cap = Capacity { up: 128 * KIB, down: 512 * KIB };
        let p = s.add(Strategy::Sybil { identities: 3 }, cap, Duration::ZERO);
        let run = s.run(super::super::test_epoch()).expect("torrent");
        assert!(run.completed);
        assert_eq!(run.members[p].len(), 3);
        let (a, b) = (run.members[p][0], run.members[p][1]);
        assert!(run.swarm.same_machine(a, b));
        assert_eq!(
            run.swarm.stats(a).refused + run.swarm.stats(b).refused,
            0,
            "identities are not dialled to each other"
        );
        let first_alone = run.members[p].iter().filter_map(|&n| run.swarm.stats(n).completed_at).min().expect("done");
        let union = run.union_done(p).expect("done");
        let volume = run.volume_done(p).expect("done");
        assert!(union <= first_alone, "the union is done no later than any identity alone");
        assert!(volume <= union, "as many pieces as the torrent has come no later than all of them");
        assert_eq!(run.completion(p), Some(volume), "it joined at zero");
        // A lone node's volume time is its completion.
        assert_eq!(run.volume_done(0), run.swarm.stats(run.members[0][0]).completed_at);
    }
}
