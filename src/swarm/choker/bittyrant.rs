//! BitTyrant (Piatek, Isdal, Anderson, Krishnamurthy, Venkataramani, "Do incentives build
//! robustness in BitTorrent?", NSDI 2007): a strategic client, for the swarm harness only.
//! It keeps per peer an estimate `d` of what the peer gives us in a round when it unchokes us,
//! and `u`, what we must give it in a round to be reciprocated, and each leeching round
//! unchokes peers by `d / u`, best return per byte first, while the sum of their `u` fits in
//! our upload capacity; each unchoked peer's weight is its `u`, so the upload scheduler gives
//! it about that much and no more.
//!
//! - `d` is measured (bytes it sent us in the round) when the peer had us unchoked; otherwise
//!   it is estimated from the `have`s it announced in the round times the piece length (what
//!   it downloads is about what its uplink can also give), and otherwise kept.
//! - `u` starts at an equal split of the capacity over the `slots` regular slots; after a
//!   peer reciprocated (had us unchoked) 3 rounds in a row in which we unchoked it, it shrinks
//!   by gamma = 10 % (we may be overpaying); when we unchoked a peer for a round and it did not
//!   unchoke us, it grows by delta = 20 % (we paid too little to be among its top uploaders).
//! - No optimistic unchoke: peers we have not measured are ranked by their `have` rate, which
//!   is how BitTyrant finds them.

use std::collections::{BTreeMap, BTreeSet};

use super::{Choker, PeerKey};

/// Rounds of reciprocation in a row after which `u` shrinks.
pub const RECIPROCATED_ROUNDS: u32 = 3;
/// gamma, in percent: how much `u` shrinks.
pub const SHRINK_PERCENT: u64 = 10;
/// delta, in percent: how much `u` grows.
pub const GROW_PERCENT: u64 = 20;

/// What BitTyrant keeps per peer, in bytes per round.
#[derive(Debug, Default, Clone)]
pub(super) struct Tyrant {
    pub d: u64,
    /// 0 until the first round that sees the peer: then the equal split.
    pub u: u64,
    pub streak: u32,
    /// The peer has us unchoked now, and did at some point of the current round.
    pub unchokes_us: bool,
    pub unchoked_us_in_round: bool,
    /// Valid new `have`s in the current round.
    pub haves: u64,
}

impl Choker {
    /// Our upload capacity over one round, in bytes.
    fn round_capacity(&self, capacity: u64) -> u64 {
        let secs = self.config.interval.as_secs_f64();
        (capacity as f64 * secs) as u64
    }

    /// Updates `d` and `u` from the round now ending (before the unchoke flags change) and
    /// returns the peers to unchoke.
    pub(super) fn bittyrant_regular(&mut self, capacity: u64) -> BTreeSet<PeerKey> {
        let cap = self.round_capacity(capacity);
        let equal = (cap / self.config.slots.max(1) as u64).max(1);
        let piece = self.piece_length;
        for p in self.peers.values_mut() {
            let t = &mut p.tyrant;
            if t.u == 0 {
                t.u = equal;
            }
            if t.unchoked_us_in_round && p.down[0] > 0 {
                t.d = p.down[0];
            } else if t.haves > 0 {
                t.d = t.haves.saturating_mul(piece);
            }
            if p.unchoked {
                if t.unchoked_us_in_round {
                    t.streak += 1;
                    if t.streak >= RECIPROCATED_ROUNDS {
                        t.u = (t.u - t.u * SHRINK_PERCENT / 100).max(1);
                        t.streak = 0;
                    }
                } else {
                    t.u = t.u.saturating_add(t.u * GROW_PERCENT / 100);
                    t.streak = 0;
                }
            }
            t.unchoked_us_in_round = t.unchokes_us;
            t.haves = 0;
        }
        let mut ranked: Vec<(u128, PeerKey, u64)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.interested)
            // d/u as a fixed-point fraction, so the order needs no floating point.
            .map(|(k, p)| ((u128::from(p.tyrant.d) << 32) / u128::from(p.tyrant.u.max(1)), *k, p.tyrant.u))
            .collect();
        ranked.sort_by_key(|r| (std::cmp::Reverse(r.0), r.1));
        let mut used = 0u64;
        let mut chosen = BTreeSet::new();
        for (_, peer, u) in ranked {
            if used.saturating_add(u) > cap {
                break;
            }
            used += u;
            chosen.insert(peer);
        }
        chosen
    }

    /// Each unchoked peer's `u`.
    pub(super) fn bittyrant_weights(&self, regular: &BTreeSet<PeerKey>) -> BTreeMap<PeerKey, u64> {
        regular.iter().filter_map(|k| Some((*k, self.peers.get(k)?.tyrant.u.max(1)))).collect()
    }
}
