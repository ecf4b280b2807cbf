//! What one peer has and how much of it we lack, kept as a count so that deciding interest
//! is O(1) per `have` (theirs or ours). Rescanning the peer's bitfield on each of its `have`s
//! made a stream of them cost us a pass over every piece.
//!
//! `ours` is the core's view of our pieces: the picker's at the moment the peer's pieces were
//! first known, then every piece verified since. Keeping a copy per peer, not asking the
//! picker, keeps the count exact and O(1) per `have`. (A piece we had that fails a recheck is
//! not taken back here; we only stay less interested.)

use crate::swarm::bitfield::Bitfield;

#[derive(Debug)]
pub(crate) struct PeerPieces {
    theirs: Bitfield,
    ours: Bitfield,
    /// Pieces in `theirs` and not in `ours`.
    wanted: usize,
    /// Passes over a whole bitfield (a new bitfield from the peer), for the tests to count.
    #[cfg(test)]
    scans: std::cell::Cell<usize>,
}

impl PeerPieces {
    /// A peer with no pieces yet; `ours` is what we have now.
    pub fn new(ours: Bitfield) -> PeerPieces {
        PeerPieces {
            theirs: Bitfield::new(ours.len()),
            ours,
            wanted: 0,
            #[cfg(test)]
            scans: std::cell::Cell::new(0),
        }
    }

    pub fn theirs(&self) -> &Bitfield {
        &self.theirs
    }

    /// Their `bitfield` message, which replaces what they had: one pass, the size of the
    /// message itself. Its length must be ours (the caller parsed it for this torrent).
    pub fn set_theirs(&mut self, theirs: Bitfield) {
        debug_assert_eq!(theirs.len(), self.ours.len());
        #[cfg(test)]
        self.scans.set(self.scans.get() + 1);
        self.wanted =
            theirs.as_bytes().iter().zip(self.ours.as_bytes()).map(|(t, o)| (t & !o).count_ones() as usize).sum();
        self.theirs = theirs;
    }

    /// Their `have`; whether the piece is new from them.
    pub fn their_have(&mut self, index: usize) -> bool {
        if !self.theirs.set(index) {
            return false;
        }
        if !self.ours.get(index) {
            self.wanted += 1;
        }
        true
    }

    /// We verified `index` (the torrent's `have` to this task).
    pub fn our_have(&mut self, index: usize) {
        if self.ours.set(index) && self.theirs.get(index) {
            self.wanted -= 1;
        }
    }

    /// They have something we lack.
    pub fn interesting(&self) -> bool {
        self.wanted > 0
    }

    /// Whole-bitfield passes so far.
    #[cfg(test)]
    pub fn scans(&self) -> usize {
        self.scans.get()
    }

    /// The count as a full pass would find it, for the tests to compare with.
    #[cfg(test)]
    pub fn recount(&self) -> usize {
        self.theirs.iter_set().filter(|&i| !self.ours.get(i)).count()
    }
}

#[cfg(test)]
mod tests;
