//! One host, one claim: PropShare's defence against Sybils (issue 13).
//!
//! A Sybil attack (Levin et al., SIGCOMM 2008, section 5) runs several peer ids on one machine,
//! so that each neighbour holds several connections to it. PropShare's proportional part needs
//! no help: what the identities sent us is split between them, and so is what they get back.
//! Everything else a choker gives *per connection* multiplies, though: optimistic tickets, the
//! answer-at-once unchoke ([`super::reciprocity`]), places in the equal split of a round with
//! no givers, and a seed's regular slots. In the fair-play harness four identities on the
//! neighbours of one honest peer finished in 0.92 of its honest twin's time against PropShare.
//!
//! So for a PropShare choker, connections from one host (`net::addr::host_key`: an IPv4
//! address, an IPv6 /64) share what is handed out per peer:
//! - **Optimistic draw:** a host's connections split one host's tickets between them.
//! - **Answer at once:** a host gets one such unchoke at a time; its other connections wait
//!   for the round, where they share in proportion to what they sent.
//! - **Equal split and seed slots:** a connection whose host already holds a place ranks after
//!   every connection of a host that holds none. Slots still never stay empty.
//!
//! What this costs: peers behind one NAT address count as one host here, so they share one
//! optimistic ticket. Their proportional shares, what they earn by uploading, are untouched.
//! Tit-for-tat stays the stock BEP 3 choker, the yardstick of the fair-play experiments.

use std::collections::{BTreeMap, BTreeSet};

use super::{Choker, ChokerKind, PeerKey};

/// Tickets a host's connections split in the optimistic draw: divisible by every count up to
/// 16, so the split is exact for any realistic number of identities.
const HOST_TICKETS: u64 = 720_720;

impl Choker {
    /// Whether connections are grouped by host: PropShare, leeching or seeding.
    pub(super) fn judges_hosts(&self) -> bool {
        self.config.kind == ChokerKind::PropShare
    }

    /// Scales each candidate's optimistic weight so that a host's candidates together weigh
    /// what one candidate of that weight would.
    pub(super) fn tickets_per_host(&self, candidates: &mut [(PeerKey, u64)]) {
        if !self.judges_hosts() {
            return;
        }
        let mut per_host: BTreeMap<u128, u64> = BTreeMap::new();
        for (peer, _) in candidates.iter() {
            *per_host.entry(self.host_of(*peer)).or_default() += 1;
        }
        for (peer, weight) in candidates.iter_mut() {
            let share = per_host.get(&self.host_of(*peer)).copied().unwrap_or(1).max(1);
            *weight = (*weight * HOST_TICKETS / share).max(1);
        }
    }

    /// `ranked` with every connection after the first of its host moved to the end, order
    /// otherwise kept (a no-op unless [`Choker::judges_hosts`]).
    pub(super) fn first_per_host(&self, ranked: Vec<PeerKey>) -> Vec<PeerKey> {
        if !self.judges_hosts() {
            return ranked;
        }
        let mut seen = BTreeSet::new();
        let (first, rest): (Vec<PeerKey>, Vec<PeerKey>) =
            ranked.into_iter().partition(|peer| seen.insert(self.host_of(*peer)));
        first.into_iter().chain(rest).collect()
    }

    /// Whether another connection of `peer`'s host holds the optimistic unchoke or an answer
    /// given at once in this round.
    pub(super) fn host_holds_gift(&self, peer: PeerKey) -> bool {
        if !self.judges_hosts() {
            return false;
        }
        let host = self.host_of(peer);
        self.peers
            .iter()
            .filter(|(k, p)| **k != peer && p.host == host)
            .any(|(k, p)| self.optimistic == Some(*k) || (p.unchoked && p.ledger.answered))
    }

    fn host_of(&self, peer: PeerKey) -> u128 {
        self.peers.get(&peer).map_or(0, |p| p.host)
    }
}
