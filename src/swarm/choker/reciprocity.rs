//! Who answers our gifts: PropShare's defence against free riders while leeching.
//!
//! PropShare (see [`super::propshare`]) pays back what each peer gave in the last round, and
//! gives the rest — the optimistic share, and the equal split of a round in which nobody gave
//! us anything — to peers that gave nothing yet. That is how a newcomer bootstraps, and it is
//! what a free rider lives on: BitThief (Locher et al., HotNets 2006) never uploads, dials a
//! large part of the swarm and collects the optimistic unchokes of everyone it meets. In the
//! fair-play harness it got three quarters of its bytes that way and finished before its
//! honest twin.
//!
//! The rules, for a PropShare leecher:
//! - **Answer at once.** A peer we are choking that sends us data is unchoked when it arrives,
//!   with the optimistic share as its weight until the next round sizes it, instead of up to a
//!   round later. So an honest peer answers our gift within a round trip.
//! - **A gift to a peer that has something we want is a short trial.** If it has given us
//!   nothing in this round or the last and has not unchoked us, it is choked again once we
//!   have sent it [`Choker::trial_bytes`] since our unchoke: it *refused*. The signal is an
//!   unchoke, which costs an honest peer nothing however slow its uplink. (A byte credit,
//!   tried first, throttled slow honest peers that could not repay in time: the honest median
//!   rose 17–44 %.)
//! - **A peer with nothing we want gets [`DEBT_TRIALS`] trials' worth,** since its last byte to
//!   us, and is then choked as a refuser. A newcomer needs a few pieces to start trading; a
//!   free rider that holds only pieces we have would otherwise keep the whole optimistic turn.
//! - **A refuser is not drawn again,** for the optimistic unchoke or the equal split, until it
//!   sends us data; when it was the optimistic peer, another is drawn at once. A round that
//!   ends with our data delivered to it, us interested in it throughout, and not a byte from it
//!   also makes a refuser: an unchoke that never carries data buys no more than a round.
//!
//! Data from a refuser clears the record at once. What this costs: tit-for-tat clients
//! (libtorrent) unchoke by rank at their own rounds and do not answer a gift at once, so our
//! optimistic unchoke of one ends after the trial; it still gets a proportional share as soon
//! as it sends us anything, and its own optimistic unchokes find us as before. Measured in the
//! harness over 16 runs (`cargo bench --bench fairplay`): a BitThief takes about 3x its honest
//! twin's time, and the honest median stays within a few per cent of tit-for-tat's.

use std::time::Instant;

use super::{ChokeDecision, Choker, ChokerKind, PeerKey, OPTIMISTIC_PERCENT, WEIGHT_SCALE};

/// The weight of a peer unchoked between rounds, until the next round sizes it: the optimistic
/// share.
const OPTIMISTIC_WEIGHT: u64 = WEIGHT_SCALE / 100 * OPTIMISTIC_PERCENT;

/// The least a trial carries: two blocks. An honest peer's unchoke is under way once the first
/// block lands, so a trial needs to cover one round trip of our sending.
pub const MIN_TRIAL_BYTES: u64 = 32 * 1024;

/// A trial is also at least this fraction of a second of our upload (the last round's rate):
/// a quarter of a second covers a round trip of the links this is meant for.
const TRIAL_PER_SECOND_DIVISOR: u64 = 4;

/// Trials' worth a peer with nothing we want may take since its last byte to us.
pub const DEBT_TRIALS: u64 = 4;

/// What a peer did with our gifts.
#[derive(Debug, Default, Clone)]
pub(super) struct Ledger {
    /// We are interested in it now, and were at every moment of the current round.
    pub we_interested: bool,
    pub interested_all_round: bool,
    /// Bytes sent to it since our unchoke, its last unchoke of us, or its last data.
    pub trial: u64,
    /// Bytes sent to it since its last data.
    pub unanswered: u64,
    /// It refused our upload (see the module doc) and has given nothing since.
    pub refused: bool,
    /// It was unchoked at once for its data in this round (see the module doc).
    pub answered: bool,
}

impl Choker {
    /// PropShare while leeching: the only time the rules of this module apply.
    pub(super) fn judges_reciprocity(&self) -> bool {
        self.config.kind == ChokerKind::PropShare && !self.seeding
    }

    /// We became interested (true) or lost interest (false) in the peer's pieces. Unknown peers
    /// are ignored.
    pub fn we_are_interested(&mut self, peer: PeerKey, interested: bool) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.ledger.we_interested = interested;
            p.ledger.interested_all_round &= interested;
        }
    }

    /// Whether the peer refused our upload and gave nothing since (see the module doc).
    pub fn refused(&self, peer: PeerKey) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.ledger.refused)
    }

    /// Chokes and unchokes decided between rounds by the rules of this module, for the driver
    /// to send, in the order they were made. [`Choker::tick`] returns any not taken yet first.
    pub fn take_changes(&mut self) -> Vec<ChokeDecision> {
        std::mem::take(&mut self.changes)
    }

    /// What a trial carries: [`MIN_TRIAL_BYTES`], or a quarter of a second of our upload over
    /// the last round if that is more (a fast uplink sends more than two blocks per round trip).
    pub fn trial_bytes(&self) -> u64 {
        self.trial_limit
    }

    /// Sizes the trials of the round that starts (see [`Choker::trial_bytes`]): once per round,
    /// not per block sent.
    pub(super) fn size_trials(&mut self) {
        let last_round: u64 = self.peers.values().map(|p| p.up[1]).sum();
        let per_second = last_round / self.config.interval.as_secs().max(1);
        self.trial_limit = (per_second / TRIAL_PER_SECOND_DIVISOR).max(MIN_TRIAL_BYTES);
    }

    /// Data arrived from the peer: its record is cleared, and a choked giver is answered now.
    pub(super) fn answer_gift(&mut self, peer: PeerKey, now: Instant) {
        if !self.judges_reciprocity() {
            return;
        }
        let Some(p) = self.peers.get_mut(&peer) else { return };
        p.ledger.refused = false;
        p.ledger.trial = 0;
        p.ledger.unanswered = 0;
        // One such unchoke per host at a time (`hosts`). Checked only for a choked peer: this
        // runs for every block received, and the host check scans the peers.
        let answer = p.interested && !p.unchoked && self.weighted && !self.host_holds_gift(peer);
        if answer && self.unchoke_between_rounds(peer, now, Some(OPTIMISTIC_WEIGHT)) {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.ledger.answered = true;
            }
        }
    }

    /// We sent the peer `bytes` of data: ends its trial if it has had its fill (module doc).
    pub(super) fn charge_trial(&mut self, peer: PeerKey, now: Instant, bytes: u64) {
        if !self.judges_reciprocity() || !self.weighted {
            return;
        }
        let limit = self.trial_bytes();
        let Some(p) = self.peers.get_mut(&peer) else { return };
        if !p.unchoked || p.ledger.refused || p.down != [0, 0] {
            return;
        }
        let l = &mut p.ledger;
        l.trial += bytes;
        l.unanswered += bytes;
        let refused = if l.we_interested {
            !p.tyrant.unchokes_us && l.trial >= limit
        } else {
            l.unanswered >= DEBT_TRIALS * limit
        };
        if !refused {
            return;
        }
        l.refused = true;
        p.unchoked = false;
        p.turns = 0;
        self.weights.remove(&peer);
        self.changes.push(ChokeDecision { peer, unchoke: false });
        if self.optimistic == Some(peer) {
            self.redraw_optimistic(now, peer);
        }
    }

    /// The optimistic peer refused: the optimistic share goes to another candidate now rather
    /// than at the end of the turn.
    fn redraw_optimistic(&mut self, now: Instant, refuser: PeerKey) {
        let unchoked = self.peers.iter().filter(|(_, p)| p.unchoked).map(|(k, _)| *k).collect();
        self.optimistic = self.choose_optimistic(now, &unchoked, Some(refuser));
        self.optimistic_until = self.optimistic.map(|_| now + self.config.optimistic_interval);
        if let Some(o) = self.optimistic {
            self.unchoke_between_rounds(o, now, Some(OPTIMISTIC_WEIGHT));
        }
    }

    /// The peer unchoked us: its trial is answered.
    pub(super) fn trial_answered(&mut self, peer: PeerKey) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.ledger.trial = 0;
        }
    }

    /// Ends the round's records (before the round's choices are made): a peer that got our data
    /// for a whole round of interest and sent none refused it; one that sent data is cleared.
    pub(super) fn close_reciprocity_round(&mut self) {
        for p in self.peers.values_mut() {
            let l = &mut p.ledger;
            if p.down[0] > 0 {
                l.refused = false;
            } else if p.unchoked && p.up[0] > 0 && l.interested_all_round {
                l.refused = true;
            }
            l.interested_all_round = l.we_interested;
        }
    }
}
