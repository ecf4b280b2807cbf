//! Weighted fair sharing of our upload (stride scheduling, Waldspurger & Weihl 1995), for the
//! choker kinds that give the unchoked peers weights (PropShare, BitTyrant): the order in which
//! owed blocks are read and sent follows the weights, and since at most a small budget of
//! bytes waits for the sockets, the order we choose is the order they go on the wire.
//!
//! Each peer has a pass: the virtual time at which it is next due. Sending `len` bytes to a
//! peer of weight `w` moves its pass on by `len / w`, and the next block goes to the peer with
//! a block owed and the lowest pass. It is work-conserving: a peer with nothing owed is
//! skipped, so what it does not take goes to the others in their proportions. A peer that
//! comes back after a pause resumes at the current virtual time, not at its old pass, so it
//! cannot bank credit while idle and then take the uplink for a burst.
//!
//! Why a budget: each connection has its own socket buffer, and the uplink (the kernel, or the
//! harness's round-robin link) drains them alike. With a megabyte queued per peer as
//! tit-for-tat allows, every backlogged peer would get an equal share whatever its weight.
//! So while weighted, the bytes queued and being read for all peers together stay under
//! [`upload_budget`]: what is already queued is a few tens of milliseconds of the uplink, and
//! everything after it goes out in our order. What each peer gets is exactly what the stride
//! order gave it: the uplink only reorders within the budget. A peer whose socket stops
//! taking bytes is left out of the budget after [`stall_after`], so it cannot stall the others.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::swarm::PeerKey;

/// The budget never goes below two blocks: one on the wire and one ready behind it while the
/// next read comes back from the disk. More would let a slow uplink's round-robin over the
/// connections, not our order, decide who goes next.
pub const MIN_BUDGET: usize = 32 * 1024;
/// Nor above this: it is what a fast uplink may hold in socket buffers at once.
pub const MAX_BUDGET: usize = 8 << 20;
/// How much of the uplink's measured rate may wait in socket buffers: 50 ms is a small slice
/// of a 10 s round (so shares hold to a fraction of a percent), and on loopback, where the
/// upload runs at several hundred MB/s, it is megabytes, far more than one disk read and one
/// socket write round trip needs (a few hundred microseconds), so the budget is not what
/// limits a fast transfer. It starts at [`MIN_BUDGET`] and grows with the measured rate.
pub const BUDGET_WINDOW_MS: u64 = 50;

/// Bytes that may be queued or being read for all peers together, given our measured upload
/// rate in bytes per second.
pub fn upload_budget(rate: f64) -> usize {
    let window = rate.max(0.0) * BUDGET_WINDOW_MS as f64 / 1000.0;
    (window as usize).clamp(MIN_BUDGET, MAX_BUDGET)
}

/// How long a peer's queue may sit unmoved before it is taken for stalled and left out of
/// the budget: 2 s, or four times what the whole budget takes to drain at our rate on a slow
/// uplink, where a frame can legitimately wait longer than that behind the others.
pub fn stall_after(budget: usize, rate: f64) -> Duration {
    let drain = if rate > 0.0 { budget as f64 / rate } else { 0.0 };
    Duration::from_secs_f64((4.0 * drain).clamp(2.0, 60.0))
}

/// Stride scheduling state: one pass per peer that has been served.
#[derive(Debug, Default)]
pub struct Stride {
    pass: BTreeMap<PeerKey, u128>,
    /// The pass of the last peer served: where an idle peer rejoins.
    now: u128,
}

impl Stride {
    /// Among `(peer, weight)` candidates that each have a block owed, the one due first
    /// (lowest pass, ties to the lower key).
    pub fn pick(&self, candidates: impl IntoIterator<Item = PeerKey>) -> Option<PeerKey> {
        candidates.into_iter().min_by_key(|k| (self.start(*k), *k))
    }

    /// `bytes` were scheduled for `peer` at `weight`.
    pub fn charge(&mut self, peer: PeerKey, weight: u64, bytes: u64) {
        let start = self.start(peer);
        self.now = start;
        // Scaled so that a weight of 1 in 2^30 still moves by a whole number per byte.
        let step = u128::from(bytes) * (1u128 << 40) / u128::from(weight.max(1));
        self.pass.insert(peer, start + step);
    }

    pub fn forget(&mut self, peer: PeerKey) {
        self.pass.remove(&peer);
    }

    fn start(&self, peer: PeerKey) -> u128 {
        self.pass.get(&peer).copied().unwrap_or(0).max(self.now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlogged_peers_are_served_in_proportion_to_their_weights() {
        let mut s = Stride::default();
        let peers = [(PeerKey(1), 1), (PeerKey(2), 2), (PeerKey(3), 3)];
        let mut served = BTreeMap::new();
        for _ in 0..600 {
            let k = s.pick(peers.iter().map(|(k, _)| *k)).unwrap();
            let w = peers.iter().find(|(p, _)| *p == k).unwrap().1;
            s.charge(k, w, 16384);
            *served.entry(k).or_insert(0) += 1;
        }
        assert_eq!(served.values().copied().collect::<Vec<_>>(), vec![100, 200, 300]);
    }

    #[test]
    fn an_idle_peer_rejoins_at_the_current_pass_without_banked_credit() {
        let mut s = Stride::default();
        for _ in 0..100 {
            s.charge(PeerKey(1), 1, 16384);
        }
        // Peer 2 was idle all along: it gets the next block, then alternates with peer 1.
        let order: Vec<u64> = (0..6)
            .map(|_| {
                let k = s.pick([PeerKey(1), PeerKey(2)]).unwrap();
                s.charge(k, 1, 16384);
                k.0
            })
            .collect();
        assert_eq!(order, vec![2, 1, 2, 1, 2, 1]);
    }

    #[test]
    fn the_budget_follows_the_rate_within_its_bounds() {
        assert_eq!(upload_budget(0.0), MIN_BUDGET);
        assert_eq!(upload_budget(400e6), 20_000_000usize.min(MAX_BUDGET));
        assert_eq!(upload_budget(40e6), 2_000_000);
        assert_eq!(stall_after(MIN_BUDGET, 0.0), Duration::from_secs(2));
        assert_eq!(stall_after(1_000_000, 100_000.0), Duration::from_secs(40));
    }
}
