//! Which leechers pass on what a PropShare seed gives them: the seed's defence against free
//! riders, in the spirit of super-seeding (BEP 16).
//!
//! A seed gets nothing back from anyone, so it cannot tell a free rider by what it returns.
//! It can tell by what happens to its pieces. When the seed has given piece *i* to exactly one
//! peer A and then another peer announces *i*, that copy came, directly or through others, from
//! A (or from another seed: the evidence is good in a swarm the seed started and noisy in a big
//! one, which is why it only orders the queue). A's piece has *spread*. BitThief (Locher et
//! al., HotNets 2006) never uploads, so nothing it took from the seed ever spreads; in the
//! fair-play harness, once leechers stopped feeding it, the seed gave it two thirds of its
//! bytes.
//!
//! A leecher is a *sink* once [`SINK_PIECES`] pieces it alone got from us have not spread and
//! none of them has: it ranks after every other waiting peer for the seeding slots (turns and
//! rates decide among the rest as before), and one spread piece lifts it back. A sink is still
//! served when nobody else wants anything, so the rule never idles the seed.
//!
//! Memory is one small record per piece of the torrent (no more than the torrent's piece count,
//! which the wire limits bound) and two counters per peer.

use super::{Choker, ChokerKind, PeerKey};

/// Pieces given to a peer alone, none of them seen elsewhere since, that make it a sink. Eight:
/// an honest leecher is asked for a rare piece within seconds (everyone else wants it, by
/// rarest first), while eight pieces are a small part of any torrent a seed serves.
pub const SINK_PIECES: u32 = 8;

/// Who the seed gave a piece to, as far as spreading goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Given {
    #[default]
    Nobody,
    /// To this peer alone, and nobody else has announced it since.
    One(PeerKey),
    /// To more than one peer, or already spread: no further evidence in it.
    Settled,
}

/// Per peer: pieces only it got from us, and how many of those it has spread.
#[derive(Debug, Default, Clone)]
pub(super) struct Spread {
    pub alone: u32,
    pub spread: u32,
}

impl Spread {
    pub fn is_sink(&self) -> bool {
        self.spread == 0 && self.alone >= SINK_PIECES
    }
}

impl Choker {
    /// PropShare while seeding: the only time the sink rule applies.
    pub(super) fn judges_spread(&self) -> bool {
        self.config.kind == ChokerKind::PropShare && self.seeding
    }

    /// The torrent has `count` pieces (once the metadata is known).
    pub fn set_piece_count(&mut self, count: usize) {
        self.given = vec![Given::Nobody; count];
    }

    /// We sent the peer a block of piece `index` while seeding.
    pub fn on_gave_piece(&mut self, peer: PeerKey, index: u32) {
        if !self.judges_spread() {
            return;
        }
        let Some(given) = self.given.get_mut(index as usize) else { return };
        match *given {
            Given::Nobody => {
                *given = Given::One(peer);
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.spread.alone += 1;
                }
            }
            Given::One(other) if other != peer => {
                *given = Given::Settled;
                if let Some(p) = self.peers.get_mut(&other) {
                    p.spread.alone = p.spread.alone.saturating_sub(1);
                }
            }
            _ => {}
        }
    }

    /// `peer` announced piece `index` (a `have`): if only one other peer got it from us, that
    /// peer spread it.
    pub fn on_have_piece(&mut self, peer: PeerKey, index: u32) {
        let Some(given) = self.given.get_mut(index as usize) else { return };
        if let Given::One(holder) = *given {
            if holder != peer {
                *given = Given::Settled;
                if let Some(p) = self.peers.get_mut(&holder) {
                    p.spread.spread += 1;
                }
            }
        }
    }

    /// Whether the peer took pieces from us as a seed and passed none of them on.
    pub fn is_sink(&self, peer: PeerKey) -> bool {
        self.judges_spread() && self.peers.get(&peer).is_some_and(|p| p.spread.is_sink())
    }
}
