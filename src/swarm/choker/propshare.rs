//! PropShare (Levin, LaCurts, Spring, Bhattacharjee, "BitTorrent is an Auction", SIGCOMM 2008)
//! while leeching: every interested peer that sent us data in the last round is unchoked, and
//! our upload is split between them in proportion to what each sent; a fixed part of it goes
//! to the optimistic unchoke, a peer that sent nothing, so that newcomers can bootstrap.
//!
//! The optimistic part is [`OPTIMISTIC_PERCENT`] = 20 %, the figure the paper uses: large
//! enough that a newcomer gets its first pieces within a round or two, small enough that a
//! peer who gives nothing gets a fifth of one share-holder's worth at most. The optimistic
//! peer is chosen and rotated as tit-for-tat does (newcomers weighted up, every
//! `optimistic_interval`); once it sends data it earns a proportional share and the
//! optimistic part moves on.
//!
//! A round in which nobody sent us anything (the start of a swarm, or a leecher among peers
//! with nothing for it) has no proportions to follow: up to `slots` interested peers, those
//! already unchoked first, then at random, share the non-optimistic part equally, as
//! tit-for-tat would unchoke them.
//!
//! The choker only computes the weights; the upload path of the core honours them on the
//! wire (`session::fair`).

use std::collections::{BTreeMap, BTreeSet};

use rand::RngExt;

use super::{Choker, PeerKey};

/// The part of the upload that goes to the optimistic unchoke, in percent.
pub const OPTIMISTIC_PERCENT: u64 = 20;

/// Weights are parts of this whole (a round's upload), so rounding is far below a block.
pub const WEIGHT_SCALE: u64 = 1 << 30;

impl Choker {
    /// Interested peers that sent us data in the round now ending, or the equal-share fallback
    /// of the module doc when there are none.
    pub(super) fn propshare_regular(&mut self) -> BTreeSet<PeerKey> {
        let givers: BTreeSet<PeerKey> =
            self.peers.iter().filter(|(_, p)| p.interested && p.down[0] > 0).map(|(k, _)| *k).collect();
        if !givers.is_empty() {
            return givers;
        }
        let optimistic = self.optimistic;
        // Peers that refused our upload are left out (`reciprocity`).
        let mut ranked: Vec<(bool, u64, PeerKey)> = Vec::new();
        for (&peer, p) in &self.peers {
            if p.interested && Some(peer) != optimistic && !p.ledger.refused {
                ranked.push((p.unchoked, self.rng.random(), peer));
            }
        }
        ranked.sort_unstable_by_key(|r| std::cmp::Reverse((r.0, r.1)));
        // One place per host before any host gets a second (`hosts`).
        let ranked = self.first_per_host(ranked.into_iter().map(|(_, _, peer)| peer).collect());
        ranked.into_iter().take(self.config.slots).collect()
    }

    /// Each regular peer's part of the non-optimistic upload in proportion to what it sent
    /// (equal parts if none sent anything), and [`OPTIMISTIC_PERCENT`] for the optimistic peer.
    pub(super) fn propshare_weights(&self, regular: &BTreeSet<PeerKey>) -> BTreeMap<PeerKey, u64> {
        let reciprocal = u128::from(WEIGHT_SCALE / 100 * (100 - OPTIMISTIC_PERCENT));
        let sent = |peer: &PeerKey| self.peers.get(peer).map_or(0, |p| p.down[0]);
        let total: u64 = regular.iter().map(sent).sum();
        let mut weights = BTreeMap::new();
        for peer in regular {
            let part = if total == 0 {
                reciprocal / regular.len() as u128
            } else {
                reciprocal * u128::from(sent(peer)) / u128::from(total)
            };
            weights.insert(*peer, u64::try_from(part).unwrap_or(u64::MAX).max(1));
        }
        if let Some(o) = self.optimistic {
            weights.insert(o, WEIGHT_SCALE / 100 * OPTIMISTIC_PERCENT);
        }
        weights
    }
}
