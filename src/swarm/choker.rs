//! Whom we let download from us (BEP 3, "Choking and optimistic unchoking"): tit-for-tat. Every
//! round the interested peers that gave us the most data get the regular upload slots, and one
//! more peer gets an optimistic unchoke, rotated less often, so that newcomers and peers we have
//! not tried get a chance to show they reciprocate. Sans-IO: the driver reports traffic and
//! interest, calls [`Choker::tick`] at [`Choker::next_deadline`] and sends the choke/unchoke
//! messages it returns.
//!
//! Rates are bytes over the current and the previous round (20 s at the default 10 s interval):
//! short enough that a peer that speeds up wins a slot in the next round, long enough that one
//! quiet round does not throw out a good peer. Rounds are ticks, so the window needs no clock.
//!
//! Seeding, downloads tell us nothing, so the slots go to the peers that take data from us
//! fastest (faster uploads spread our pieces sooner), but in turns: a peer that held a regular
//! slot for `seed_turn_rounds` rounds in a row ranks after every peer whose turn is not used up,
//! so others get a go, and it is back in the running once it has been choked for a round. A
//! peer we are not uploading to has no upload rate at all, so without turns the first four to
//! be unchoked would keep the slots for as long as they stay.
//!
//! Between rounds a slot does not stay empty: a newly interested peer takes a free one at once,
//! and a slot freed by a peer that left or lost interest goes to the best-ranked waiting peer
//! at once ([`Choker::fill_free_slots`]). Seeding, slots turn over each time a leecher finishes:
//! waiting for the round left the upload idle, and 30 leechers of one seeder finished in waves
//! ten seconds apart.
//!
//! Other kinds ([`ChokerKind`]) change only the leeching rounds: PropShare ([`propshare`])
//! unchokes everyone who sent us data and gives each unchoked peer a weight, its share of our
//! upload, which the core's upload path enforces (`session::fair`); BitTyrant ([`bittyrant`],
//! harness only) unchokes by best return per byte within a capacity and weighs each peer by
//! what it estimates reciprocation costs. Seeding, every kind uses
//! the seeding turns above with no weights (a seeder gets nothing back to be proportional to).
//!
//! PropShare also holds free riders back: while leeching it answers a giver at once, treats a
//! gift as a short trial and stops drawing peers that refused one ([`reciprocity`]); while
//! seeding it ranks last a leecher that passed on none of the pieces only it got from us
//! ([`spread`]). Tit-for-tat stays the stock BEP 3 choker, the yardstick of the fair-play
//! experiments.
//!
//! Left out: "anti-snubbing" that we could only judge knowing whether *we* are interested and
//! unchoked by them; snubbing here is simply "no data from them for `snub_after`".

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::PeerKey;

mod bittyrant;
mod hosts;
mod propshare;
mod reciprocity;
mod spread;
pub use bittyrant::{GROW_PERCENT, RECIPROCATED_ROUNDS, SHRINK_PERCENT};
pub use propshare::{OPTIMISTIC_PERCENT, WEIGHT_SCALE};
pub use reciprocity::{DEBT_TRIALS, MIN_TRIAL_BYTES};
pub use spread::SINK_PIECES;

/// A peer counts as new for the optimistic unchoke for this many rounds after connecting: it has
/// nothing to trade yet and needs a first piece, so it gets a better chance at the free slot.
const NEW_PEER_ROUNDS: u32 = 3;

/// How the upload is shared out while leeching. Seeding uses the seeding turns whatever the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChokerKind {
    /// BEP 3: the fastest uploaders to us get the regular slots, plus one optimistic unchoke.
    #[default]
    TitForTat,
    /// PropShare (Levin et al., SIGCOMM 2008): upload shared in proportion to what each peer
    /// gave us in the last round, plus an optimistic share.
    PropShare,
    /// BitTyrant (Piatek et al., NSDI 2007), a strategic client for the swarm harness only
    /// (never offered on the command line): unchoke the peers with the best return per byte,
    /// giving each just enough to be reciprocated, within `upload_capacity` bytes/s.
    BitTyrant { upload_capacity: u64 },
}

/// The classic BitTorrent numbers by default: 4 slots, 10 s rounds, 30 s optimistic turns.
#[derive(Debug, Clone)]
pub struct ChokerConfig {
    pub kind: ChokerKind,
    /// Regular upload slots, given by rate.
    pub slots: usize,
    /// Length of a round: how often the regular slots are recomputed.
    pub interval: Duration,
    /// How often the optimistic unchoke moves to another peer.
    pub optimistic_interval: Duration,
    /// While leeching, a peer that sent us nothing for this long (counted from when it connected,
    /// we unchoked it, or it last sent data) loses its regular slot.
    pub snub_after: Duration,
    /// How many times likelier a new peer is to get the optimistic unchoke than an old one.
    pub new_peer_weight: u32,
    /// While seeding, rounds a peer may hold a regular slot in a row before it yields it to a
    /// peer whose turn is not used up (0: no turns, the fastest keep their slots).
    pub seed_turn_rounds: u32,
}

impl Default for ChokerConfig {
    fn default() -> Self {
        ChokerConfig {
            kind: ChokerKind::TitForTat,
            slots: 4,
            interval: Duration::from_secs(10),
            optimistic_interval: Duration::from_secs(30),
            snub_after: Duration::from_secs(60),
            new_peer_weight: 3,
            seed_turn_rounds: 3,
        }
    }
}

/// A change to send: `unchoke` or `choke` to `peer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChokeDecision {
    pub peer: PeerKey,
    pub unchoke: bool,
}

#[derive(Debug)]
struct PeerState {
    connected_at: Instant,
    /// The peer is interested in what we have.
    interested: bool,
    /// Bytes from (`down`) and to (`up`) the peer in the current round and the one before.
    down: [u64; 2],
    up: [u64; 2],
    /// Start of the current silence: connection, our unchoke of it, or its last data.
    snub_clock: Instant,
    unchoked: bool,
    /// Rounds in a row it has held a regular slot (the optimistic one does not count).
    turns: u32,
    /// BitTyrant's estimates and what they are made from.
    tyrant: bittyrant::Tyrant,
    /// Whether it answered our gifts (PropShare's free-rider memory).
    ledger: reciprocity::Ledger,
    /// What it did with the pieces we gave it as a seed (PropShare's sink rule).
    spread: spread::Spread,
    /// The host it connects from (`net::addr::host_key`), for PropShare's [`hosts`] rules.
    host: u128,
}

/// The upload slots of one torrent.
pub struct Choker {
    config: ChokerConfig,
    /// Ordered, so that ranking ties and decisions come out the same for the same seed.
    peers: BTreeMap<PeerKey, PeerState>,
    seeding: bool,
    optimistic: Option<PeerKey>,
    optimistic_until: Option<Instant>,
    next_tick: Option<Instant>,
    rng: StdRng,
    /// Upload weights of the unchoked peers for this round, when the last round was a
    /// weighted one (PropShare or BitTyrant while leeching; see [`Choker::is_weighted`]).
    weights: BTreeMap<PeerKey, u64>,
    weighted: bool,
    /// Chokes and unchokes made between rounds ([`reciprocity`]), until the driver takes them.
    changes: Vec<ChokeDecision>,
    /// Per piece, whom we gave it to as a seed ([`spread`]); empty until the piece count is known.
    given: Vec<spread::Given>,
    /// Bytes a PropShare trial carries this round ([`Choker::trial_bytes`]).
    trial_limit: u64,
    /// Bytes per piece, for BitTyrant's estimate from `have`s (0 until the metadata is known).
    piece_length: u64,
}

impl Choker {
    pub fn new(config: ChokerConfig, seed: u64) -> Self {
        Choker {
            config,
            peers: BTreeMap::new(),
            seeding: false,
            optimistic: None,
            optimistic_until: None,
            next_tick: None,
            rng: StdRng::seed_from_u64(seed),
            weights: BTreeMap::new(),
            weighted: false,
            changes: Vec::new(),
            given: Vec::new(),
            trial_limit: MIN_TRIAL_BYTES,
            piece_length: 0,
        }
    }

    /// A new connection, choked and not interested, as BEP 3 starts every connection. The first
    /// peer ever makes a round due at once, so a fresh swarm does not wait a whole interval.
    /// It counts as a host of its own (see [`Choker::peer_connected_from`]).
    pub fn peer_connected(&mut self, now: Instant, peer: PeerKey) {
        self.peer_connected_from(now, peer, u128::MAX - u128::from(peer.0));
    }

    /// [`Choker::peer_connected`] for a connection from `host` (`net::addr::host_key` of its
    /// address): PropShare shares out per host what it hands out per peer ([`hosts`]).
    pub fn peer_connected_from(&mut self, now: Instant, peer: PeerKey, host: u128) {
        let state = PeerState {
            connected_at: now,
            interested: false,
            down: [0; 2],
            up: [0; 2],
            snub_clock: now,
            unchoked: false,
            turns: 0,
            tyrant: bittyrant::Tyrant::default(),
            ledger: reciprocity::Ledger::default(),
            spread: spread::Spread::default(),
            host,
        };
        self.peers.insert(peer, state);
        self.next_tick.get_or_insert(now);
    }

    /// The connection is gone; its slot is refilled at the next round.
    pub fn peer_left(&mut self, peer: PeerKey) {
        self.peers.remove(&peer);
        self.weights.remove(&peer);
        if self.optimistic == Some(peer) {
            self.optimistic = None;
        }
    }

    /// The peer sent `interested` (true) or `not interested` (false). Unknown peers are ignored.
    pub fn set_interested(&mut self, peer: PeerKey, interested: bool) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.interested = interested;
        }
    }

    /// A peer just became interested: if a regular slot is free it is unchoked now rather than
    /// at the next round, up to `interval` later (a lone leecher of a seeder would otherwise
    /// wait seconds for its first byte). Returns whether it was unchoked.
    /// Never during a weighted round: every unchoked peer there holds a computed share, and a
    /// newcomer waits for the next round (where it is a candidate for the optimistic share).
    pub fn unchoke_if_slot_free(&mut self, peer: PeerKey, now: Instant) -> bool {
        if self.weighted || self.regular_in_use() >= self.config.slots {
            return false;
        }
        match self.peers.get_mut(&peer) {
            Some(p) if p.interested && !p.unchoked => {
                p.unchoked = true;
                p.snub_clock = now;
                true
            }
            _ => false,
        }
    }

    /// Regular slots held: unchoked, interested peers other than the optimistic one (a peer
    /// that lost interest takes nothing from us and holds no slot).
    fn regular_in_use(&self) -> usize {
        let optimistic = self.optimistic;
        self.peers.iter().filter(|(k, p)| p.unchoked && p.interested && Some(**k) != optimistic).count()
    }

    /// Gives the regular slots that are free now (their holders left or lost interest since the
    /// round) to the best-ranked waiting peers, as the next round would; returns the peers it
    /// unchoked, which are also queued for [`Choker::take_changes`]. Tit-for-tat and seeding
    /// only: other kinds share out their upload by round.
    pub fn fill_free_slots(&mut self, now: Instant) -> Vec<PeerKey> {
        if self.weighted || (!self.seeding && self.config.kind != ChokerKind::TitForTat) {
            return Vec::new();
        }
        let free = self.config.slots.saturating_sub(self.regular_in_use());
        if free == 0 {
            return Vec::new();
        }
        let waiting: Vec<PeerKey> = self
            .ranked(now)
            .into_iter()
            .filter(|k| self.peers.get(k).is_some_and(|p| !p.unchoked))
            .take(free)
            .collect();
        for k in &waiting {
            self.unchoke_between_rounds(*k, now, None);
        }
        waiting
    }

    /// Unchokes a choked peer between rounds and queues the decision for the driver, with
    /// `weight` as its share until the next round when the round is weighted. Returns whether
    /// it was unchoked (false if unknown or already unchoked).
    fn unchoke_between_rounds(&mut self, peer: PeerKey, now: Instant, weight: Option<u64>) -> bool {
        let Some(p) = self.peers.get_mut(&peer).filter(|p| !p.unchoked) else { return false };
        p.unchoked = true;
        // Give the peer a full `snub_after` to answer our unchoke with data, and a fresh trial.
        p.snub_clock = p.snub_clock.max(now);
        p.ledger.trial = 0;
        if let Some(w) = weight {
            self.weights.insert(peer, w);
        }
        self.changes.push(ChokeDecision { peer, unchoke: true });
        true
    }

    /// Piece data we received from the peer.
    pub fn on_downloaded(&mut self, peer: PeerKey, now: Instant, bytes: u64) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.down[0] += bytes;
            if bytes > 0 {
                p.snub_clock = p.snub_clock.max(now);
                self.answer_gift(peer, now);
            }
        }
    }

    /// Piece data we sent to the peer (and, under PropShare, a step of its trial).
    pub fn on_uploaded(&mut self, peer: PeerKey, now: Instant, bytes: u64) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.up[0] += bytes;
            self.charge_trial(peer, now, bytes);
        }
    }

    /// The peer unchoked (true) or choked (false) us. BitTyrant judges reciprocation by it.
    pub fn peer_unchoked_us(&mut self, peer: PeerKey, unchoked: bool) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.tyrant.unchokes_us = unchoked;
            p.tyrant.unchoked_us_in_round |= unchoked;
        }
        if unchoked {
            self.trial_answered(peer);
        }
    }

    /// The peer announced a piece it did not have before. BitTyrant estimates from these what
    /// a peer that has not unchoked us could give.
    pub fn on_have(&mut self, peer: PeerKey) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.tyrant.haves += 1;
        }
    }

    /// Bytes per piece, once the metadata is known.
    pub fn set_piece_length(&mut self, bytes: u64) {
        self.piece_length = bytes;
    }

    /// Once we have everything, downloads tell us nothing: rank by how fast peers take from us,
    /// which spreads our pieces quickest. Takes effect at the next round.
    pub fn set_seeding(&mut self, seeding: bool) {
        self.seeding = seeding;
    }

    /// Runs a round if one is due (returns nothing otherwise): the changes to send, in peer order.
    pub fn tick(&mut self, now: Instant) -> Vec<ChokeDecision> {
        match self.next_tick {
            Some(due) if now >= due => {}
            _ => return Vec::new(),
        }
        // From `now`, not from `due`: a late driver should not get a burst of catch-up rounds.
        self.next_tick = Some(now + self.config.interval);

        let propshare = self.config.kind == ChokerKind::PropShare && !self.seeding;
        if propshare {
            self.close_reciprocity_round();
        }
        let mut previous = None;
        if let Some(o) = self.optimistic {
            let still_interested = self.peers.get(&o).is_some_and(|p| p.interested);
            let due = self.optimistic_until.is_none_or(|t| now >= t);
            // PropShare: a peer that refused a round of its turn loses the rest of it.
            let refused = propshare && self.refused(o);
            if !still_interested || due || refused {
                previous = Some(o);
                self.optimistic = None;
            }
        }

        self.weighted = !self.seeding && self.config.kind != ChokerKind::TitForTat;
        let regular = match self.config.kind {
            ChokerKind::PropShare if !self.seeding => self.propshare_regular(),
            ChokerKind::BitTyrant { upload_capacity } if !self.seeding => {
                // No optimistic unchoke for BitTyrant (see its module doc).
                previous = previous.or(self.optimistic.take());
                self.bittyrant_regular(upload_capacity)
            }
            _ => self.rank(now),
        };
        if let Some(o) = self.optimistic.filter(|o| regular.contains(o)) {
            // PropShare: the optimistic peer answered with data and now earns a share of its
            // own, so the optimistic share moves on to someone else. (TitForTat's ranking
            // leaves the optimistic peer out, so this never happens there.)
            previous = Some(o);
            self.optimistic = None;
        }
        let tyrant = matches!(self.config.kind, ChokerKind::BitTyrant { .. }) && !self.seeding;
        if self.optimistic.is_none() && !tyrant {
            self.optimistic = self.choose_optimistic(now, &regular, previous);
            self.optimistic_until = self.optimistic.map(|_| now + self.config.optimistic_interval);
        }

        // Changes made since the last time the driver looked come first, so that this round's
        // decisions, made on top of them, are the last word.
        let mut decisions = std::mem::take(&mut self.changes);
        for (&peer, p) in &mut self.peers {
            let unchoke = regular.contains(&peer) || self.optimistic == Some(peer);
            p.turns = if regular.contains(&peer) { p.turns.saturating_add(1) } else { 0 };
            if unchoke != p.unchoked {
                p.unchoked = unchoke;
                if unchoke {
                    // Give the peer a full `snub_after` to answer our unchoke with data.
                    p.snub_clock = p.snub_clock.max(now);
                    p.ledger.trial = 0;
                }
                decisions.push(ChokeDecision { peer, unchoke });
            }
        }
        self.weights = match self.config.kind {
            _ if !self.weighted => BTreeMap::new(),
            ChokerKind::BitTyrant { .. } => self.bittyrant_weights(&regular),
            _ => self.propshare_weights(&regular),
        };
        for p in self.peers.values_mut() {
            p.down = [0, p.down[0]];
            p.up = [0, p.up[0]];
            p.ledger.answered = false;
        }
        self.size_trials();
        decisions
    }

    /// Whether the last round gave the unchoked peers weights that the upload must honour
    /// (PropShare or BitTyrant while leeching). Otherwise every unchoked peer is served alike.
    pub fn is_weighted(&self) -> bool {
        self.weighted
    }

    /// The share of our upload `peer` is owed this round, relative to the other unchoked peers'
    /// (only meaningful while [`Choker::is_weighted`]); 0 for a choked peer.
    pub fn weight(&self, peer: PeerKey) -> u64 {
        self.weights.get(&peer).copied().unwrap_or(0)
    }

    /// When [`Choker::tick`] next has work: `None` until the first peer connects.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_tick
    }

    /// Whether the peer is unchoked (regularly or optimistically) as of the last round.
    pub fn is_unchoked(&self, peer: PeerKey) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.unchoked)
    }

    /// The peer holding the optimistic unchoke.
    pub fn optimistic(&self) -> Option<PeerKey> {
        self.optimistic
    }

    /// Whether the peer would be passed over for a regular slot as snubbing us (never while seeding).
    pub fn is_snubbed(&self, peer: PeerKey, now: Instant) -> bool {
        !self.seeding && self.peers.get(&peer).is_some_and(|p| self.snubbed(p, now))
    }

    fn snubbed(&self, p: &PeerState, now: Instant) -> bool {
        now.saturating_duration_since(p.snub_clock) >= self.config.snub_after
    }

    /// The regular slots: interested peers by rate over the last two rounds. The optimistic peer
    /// stays out until its turn ends, so the extra slot really is extra. Ties go to peers already
    /// unchoked (no flapping between equals), then at random. Seeding, a peer whose turn is used
    /// up ranks after all the others (see the module doc).
    fn rank(&mut self, now: Instant) -> BTreeSet<PeerKey> {
        self.ranked(now).into_iter().take(self.config.slots).collect()
    }

    /// Every peer that may hold a regular slot, best first (see [`Choker::rank`]).
    fn ranked(&mut self, now: Instant) -> Vec<PeerKey> {
        let turn = self.config.seed_turn_rounds;
        let sinks_last = self.judges_spread();
        let mut ranked: Vec<(bool, bool, u64, bool, u64, PeerKey)> = Vec::new();
        for (&peer, p) in &self.peers {
            if !p.interested || self.optimistic == Some(peer) || (!self.seeding && self.snubbed(p, now)) {
                continue;
            }
            let rate = if self.seeding { p.up[0] + p.up[1] } else { p.down[0] + p.down[1] };
            let in_turn = !self.seeding || turn == 0 || p.turns < turn;
            let passes_on = !(sinks_last && p.spread.is_sink());
            ranked.push((passes_on, in_turn, rate, p.unchoked, self.rng.random(), peer));
        }
        ranked.sort_unstable_by_key(|r| std::cmp::Reverse((r.0, r.1, r.2, r.3, r.4)));
        self.first_per_host(ranked.into_iter().map(|(_, _, _, _, _, peer)| peer).collect())
    }

    /// Weighted at random among interested peers without a regular slot, newcomers weighted up,
    /// and not the peer whose turn just ended unless it is the only one left.
    fn choose_optimistic(
        &mut self,
        now: Instant,
        regular: &BTreeSet<PeerKey>,
        previous: Option<PeerKey>,
    ) -> Option<PeerKey> {
        let new_for = self.config.interval * NEW_PEER_ROUNDS;
        let mut candidates: Vec<(PeerKey, u64)> = self
            .peers
            .iter()
            .filter(|(peer, p)| p.interested && !regular.contains(peer))
            .map(|(&peer, p)| {
                let new = now.saturating_duration_since(p.connected_at) < new_for;
                (peer, if new { u64::from(self.config.new_peer_weight.max(1)) } else { 1 })
            })
            .collect();
        if candidates.len() > 1 {
            candidates.retain(|(peer, _)| Some(*peer) != previous);
        }
        // PropShare: a peer that refused our upload is not drawn again (`reciprocity`).
        if self.judges_reciprocity() {
            candidates.retain(|(peer, _)| !self.refused(*peer));
        }
        self.tickets_per_host(&mut candidates);
        let total: u64 = candidates.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return None;
        }
        let mut ticket = self.rng.random_range(0..total);
        for (peer, weight) in candidates {
            if ticket < weight {
                return Some(peer);
            }
            ticket -= weight;
        }
        None
    }
}

#[cfg(test)]
mod fair_tests;
#[cfg(test)]
mod free_rider_tests;
#[cfg(test)]
mod sybil_tests;
#[cfg(test)]
mod tests;
