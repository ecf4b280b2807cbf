//! Cheating clients for the fair-play experiments (issue 13), built as [`Behaviour`]s over the
//! honest core, so they take part in the same swarm as the clients they cheat:
//!
//! - [`BitThief`] (Locher, Moor, Schmid and Wattenhofer, "Free Riding in BitTorrent is Cheap",
//!   HotNets 2006): never uploads a byte. Its unchokes never reach the wire and a request that
//!   reaches it anyway is never read from disk; its large view (dialling much of the swarm) is
//!   the dial plan's business (`fairplay::FairPlay`).
//! - [`Reveal`] (strategic piece revelation, the under-reporting Levin, LaCurts, Spring and
//!   Bhattacharjee discuss for BitTorrent's auction, SIGCOMM 2008): announces only part of what
//!   it holds. A fixed share of the pieces, chosen from a seed, is masked out of its bitfield
//!   and its `have`s for them are swallowed while it leeches, so peers are not drawn to it for
//!   those pieces and it keeps its uplink for peers it trades with.
//!
//! A Sybil needs no behaviour (it is an honest core under several peer ids, the dial plan's
//! business: `Swarm::dial_as`), and BitTyrant and PropShare are chokers in the core
//! (`ChokerKind`).

use std::time::Instant;

use super::Behaviour;
use crate::swarm::session::{Action, DiskOp, TorrentEvent};
use crate::wire::message::Message;

/// Never uploads: see the module doc.
#[derive(Debug, Default, Clone, Copy)]
pub struct BitThief;

impl Behaviour for BitThief {
    fn on_action(&mut self, _now: Instant, action: Action) -> Option<Action> {
        match action {
            Action::Send { msg: Message::Unchoke, .. } | Action::Disk(DiskOp::Read { .. }) => None,
            other => Some(other),
        }
    }
}

/// Hides a share of its pieces from peers while it leeches: see the module doc. Once complete
/// it announces everything to peers that connect afterwards (a seed has nothing to gain by
/// hiding), but the hook rewrites one action into at most one, so `have`s swallowed before
/// are not sent late.
#[derive(Debug, Clone)]
pub struct Reveal {
    seed: u64,
    hidden_per_mille: u32,
    complete: bool,
}

impl Reveal {
    /// Hides about `hidden_per_mille` out of every 1000 pieces, which ones chosen by `seed`.
    pub fn new(hidden_per_mille: u32, seed: u64) -> Reveal {
        Reveal { seed, hidden_per_mille: hidden_per_mille.min(1000), complete: false }
    }

    /// Whether piece `index` is one it keeps quiet about (while leeching).
    pub fn hides(&self, index: u32) -> bool {
        !self.complete && (mix(self.seed ^ u64::from(index)) % 1000) < u64::from(self.hidden_per_mille)
    }

    fn mask(&self, mut bytes: Vec<u8>) -> Vec<u8> {
        for (b, byte) in bytes.iter_mut().enumerate() {
            for bit in 0..8u32 {
                let index = b as u32 * 8 + bit;
                if self.hides(index) {
                    *byte &= !(0x80u8 >> bit);
                }
            }
        }
        bytes
    }
}

impl Behaviour for Reveal {
    fn on_action(&mut self, _now: Instant, action: Action) -> Option<Action> {
        match action {
            Action::Send { key, msg: Message::Bitfield(bytes) } => {
                Some(Action::Send { key, msg: Message::Bitfield(self.mask(bytes)) })
            }
            Action::Send { msg: Message::Have(index), .. } if self.hides(index) => None,
            Action::Event(TorrentEvent::Complete) => {
                self.complete = true;
                Some(action)
            }
            other => Some(other),
        }
    }
}

/// SplitMix64's finaliser: spreads consecutive piece indices over the whole range, so the
/// hidden pieces are scattered rather than a prefix.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::PeerKey;

    fn t0() -> Instant {
        super::super::test_epoch()
    }

    #[test]
    fn the_thief_sends_no_unchoke_and_reads_nothing_but_still_asks() {
        let mut b = BitThief;
        let key = PeerKey(1);
        assert!(b.on_action(t0(), Action::Send { key, msg: Message::Unchoke }).is_none());
        let block = crate::wire::message::BlockRef { index: 0, begin: 0, length: 16384 };
        assert!(b.on_action(t0(), Action::Disk(DiskOp::Read { key, block })).is_none());
        assert!(b.on_action(t0(), Action::Send { key, msg: Message::Interested }).is_some());
        assert!(b.on_action(t0(), Action::Send { key, msg: Message::Request(block) }).is_some());
    }

    #[test]
    fn reveal_masks_the_hidden_share_and_stops_hiding_once_complete() {
        let mut r = Reveal::new(500, 7);
        let hidden: Vec<u32> = (0..64).filter(|&i| r.hides(i)).collect();
        assert!((16..48).contains(&hidden.len()), "about half hidden: {}", hidden.len());
        let key = PeerKey(1);
        let Some(Action::Send { msg: Message::Bitfield(bytes), .. }) =
            r.on_action(t0(), Action::Send { key, msg: Message::Bitfield(vec![0xff; 8]) })
        else {
            panic!("the bitfield is rewritten, not dropped")
        };
        let shown: u32 = bytes.iter().map(|b| b.count_ones()).sum();
        assert_eq!(shown as usize, 64 - hidden.len());
        assert!(r.on_action(t0(), Action::Send { key, msg: Message::Have(hidden[0]) }).is_none());
        r.on_action(t0(), Action::Event(TorrentEvent::Complete));
        assert!(r.on_action(t0(), Action::Send { key, msg: Message::Have(hidden[0]) }).is_some());
    }
}
