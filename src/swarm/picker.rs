//! Which blocks to ask which peer for (BEP 3 `request`, `piece`, `cancel`): partial pieces first,
//! a few random pieces to start trading, then rarest first, and an endgame that asks several
//! peers for the last blocks. Sans-IO: the driver reports what peers have and what arrived, and
//! sends the requests and cancels this hands back.
//!
//! Memory: per-piece counters (availability, one `u32` per piece) and one bitfield per peer; block
//! state exists only for pieces in progress, so a 100k-piece torrent costs a few hundred KiB, not
//! a record per block.
//!
//! Hash failures: the picker remembers which peer sent each block of a piece until the piece is
//! verified, and counts per peer how many failed pieces it contributed to ([`Picker::hash_failures`]).
//! Whether and when to ban is the caller's policy: one failure may be a peer that sent a single
//! bad block among good ones, so the count is a hint, not a verdict.

use std::collections::{BTreeMap, HashMap};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use thiserror::Error;

use super::bitfield::Bitfield;
use super::PeerKey;

/// Bytes per request: the size every client uses, and the largest most clients will serve.
pub const BLOCK: u32 = 16384;

/// One block of one piece: the same type the peer wire's `request`, `piece` and `cancel` use.
pub use crate::wire::message::BlockRef;

/// What a received block did to its piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockStatus {
    /// The last missing block: hash the piece and call [`Picker::on_piece_verified`].
    PieceComplete(usize),
    /// Stored; the piece still misses blocks.
    Partial,
    /// Already had it (an endgame race, or a piece we already verified): discard the data.
    Duplicate,
}

/// What [`Picker::on_block`] made of a block, and what to tell the other peers about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockOutcome {
    pub status: BlockStatus,
    /// `cancel` messages to send: other peers that still have this block requested.
    pub cancels: Vec<(PeerKey, BlockRef)>,
}

/// Input the picker refused. Each one from a peer means it is confused or hostile about this
/// torrent; the driver decides whether to disconnect.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PickerError {
    #[error("{piece_count} pieces of {piece_length} bytes cannot make a torrent of {total_length} bytes")]
    Geometry { piece_count: usize, piece_length: u32, total_length: u64 },
    #[error("bitfield of {got} pieces for a torrent of {expected} pieces")]
    BitfieldLength { got: usize, expected: usize },
    #[error("piece index {index} out of range: the torrent has {piece_count} pieces")]
    PieceOutOfRange { index: usize, piece_count: usize },
    #[error("block {block:?} is not a block of this torrent")]
    BadBlock { block: BlockRef },
}

/// Tuning that tests and unusual swarms may change; [`Picker::new`] uses the default.
#[derive(Debug, Clone)]
pub struct PickerConfig {
    /// While we have fewer than this many verified pieces, new pieces are chosen at random among
    /// those the peer has: the rarest piece is slow to get, and until we have something, nobody
    /// has a reason to unchoke us.
    pub random_first: usize,
    /// In endgame, how many peers besides the first may have the same block requested. More
    /// finishes the last pieces faster when one peer stalls, and wastes more bandwidth.
    pub endgame_duplicates: usize,
}

impl Default for PickerConfig {
    fn default() -> Self {
        PickerConfig { random_first: 4, endgame_duplicates: 2 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Block {
    Open,
    /// By one peer, or by several in endgame.
    Requested(Vec<PeerKey>),
    /// Kept with its sender so a piece that fails its hash can be blamed on someone.
    Received(PeerKey),
}

/// Block state of one piece in progress.
#[derive(Debug)]
struct InProgress {
    blocks: Vec<Block>,
    open: usize,
    received: usize,
}

impl InProgress {
    fn new(blocks: usize) -> Self {
        InProgress { blocks: vec![Block::Open; blocks], open: blocks, received: 0 }
    }

    /// Nothing requested or received: the state can go, the piece is as good as untouched.
    fn is_untouched(&self) -> bool {
        self.open == self.blocks.len()
    }

    fn contributors(&self) -> Vec<PeerKey> {
        let mut peers: Vec<PeerKey> = self
            .blocks
            .iter()
            .filter_map(|b| match b {
                Block::Received(p) => Some(*p),
                _ => None,
            })
            .collect();
        peers.sort_unstable();
        peers.dedup();
        peers
    }
}

/// The download state of one torrent: what we have, what each peer has, and which blocks are
/// requested from whom.
pub struct Picker {
    config: PickerConfig,
    piece_count: usize,
    piece_length: u32,
    total_length: u64,
    /// Verified pieces only; a piece whose blocks all arrived stays missing until its hash checks.
    have: Bitfield,
    /// How many connected peers have each piece.
    availability: Vec<u32>,
    /// Each peer's bitfield as we last heard it, so `peer_left` can take its share back out.
    peers: HashMap<PeerKey, Bitfield>,
    /// Ordered so that partial pieces and endgame candidates come out the same on every run.
    in_progress: BTreeMap<usize, InProgress>,
    hash_failures: HashMap<PeerKey, u32>,
    rng: StdRng,
}

impl Picker {
    /// A picker with the default [`PickerConfig`]. `have` is what we verified already (a resumed
    /// download); `seed` makes every random choice reproducible.
    pub fn new(
        piece_count: usize,
        piece_length: u32,
        total_length: u64,
        have: &Bitfield,
        seed: u64,
    ) -> Result<Self, PickerError> {
        Self::with_config(piece_count, piece_length, total_length, have, seed, PickerConfig::default())
    }

    pub fn with_config(
        piece_count: usize,
        piece_length: u32,
        total_length: u64,
        have: &Bitfield,
        seed: u64,
        config: PickerConfig,
    ) -> Result<Self, PickerError> {
        // The metainfo is as untrusted as the wire: a count that does not match the lengths would
        // later make block arithmetic underflow, so refuse it here, once.
        let consistent = piece_length > 0
            && total_length > 0
            && u64::try_from(piece_count).is_ok_and(|n| n == total_length.div_ceil(u64::from(piece_length)));
        if !consistent {
            return Err(PickerError::Geometry { piece_count, piece_length, total_length });
        }
        if have.len() != piece_count {
            return Err(PickerError::BitfieldLength { got: have.len(), expected: piece_count });
        }
        Ok(Picker {
            config,
            piece_count,
            piece_length,
            total_length,
            have: have.clone(),
            availability: vec![0; piece_count],
            peers: HashMap::new(),
            in_progress: BTreeMap::new(),
            hash_failures: HashMap::new(),
            rng: StdRng::seed_from_u64(seed),
        })
    }

    /// A peer's `bitfield` message. Replaces what we knew of the peer before.
    pub fn peer_has_bitfield(&mut self, peer: PeerKey, bitfield: &Bitfield) -> Result<(), PickerError> {
        if bitfield.len() != self.piece_count {
            return Err(PickerError::BitfieldLength { got: bitfield.len(), expected: self.piece_count });
        }
        self.forget_availability(peer);
        for i in bitfield.iter_set() {
            self.availability[i] += 1;
        }
        self.peers.insert(peer, bitfield.clone());
        Ok(())
    }

    /// A peer's `have` message. An index out of range changes nothing and is reported.
    pub fn peer_has(&mut self, peer: PeerKey, piece: usize) -> Result<(), PickerError> {
        if piece >= self.piece_count {
            return Err(PickerError::PieceOutOfRange { index: piece, piece_count: self.piece_count });
        }
        let count = self.piece_count;
        // A repeated `have` must not count the peer twice.
        if self.peers.entry(peer).or_insert_with(|| Bitfield::new(count)).set(piece) {
            self.availability[piece] += 1;
        }
        Ok(())
    }

    /// The peer disconnected: its pieces no longer count as available and its outstanding
    /// requests go back to be picked from others. Blocks it already delivered stay attributed.
    pub fn peer_left(&mut self, peer: PeerKey) {
        self.forget_availability(peer);
        self.peers.remove(&peer);
        for p in self.in_progress.values_mut() {
            for b in &mut p.blocks {
                if let Block::Requested(reqs) = b {
                    reqs.retain(|q| *q != peer);
                    if reqs.is_empty() {
                        *b = Block::Open;
                        p.open += 1;
                    }
                }
            }
        }
        self.in_progress.retain(|_, p| !p.is_untouched());
    }

    /// Up to `max` blocks to request from `peer`, which has the pieces in `peer_has`. The blocks
    /// are marked requested by that peer until they arrive, time out, are rejected or it leaves.
    pub fn pick(&mut self, peer: PeerKey, peer_has: &Bitfield, max: usize) -> Vec<BlockRef> {
        let mut out = Vec::new();
        if max == 0 {
            return out;
        }
        // Partial pieces first, the ones closest to fully requested first: every piece in
        // progress ties up memory and delays the moment we can offer it to others.
        let mut partial: Vec<(usize, usize)> = self
            .in_progress
            .iter()
            .filter(|(i, p)| p.open > 0 && peer_has.get(**i))
            .map(|(i, p)| (p.open, *i))
            .collect();
        partial.sort_unstable();
        for (_, index) in partial {
            self.take_open(index, peer, max, &mut out);
            if out.len() == max {
                return out;
            }
        }
        while out.len() < max {
            let Some(index) = self.choose_new_piece(peer_has) else { break };
            self.in_progress.insert(index, InProgress::new(self.block_count(index)));
            self.take_open(index, peer, max, &mut out);
        }
        if out.len() < max && self.in_endgame() {
            self.take_duplicates(peer, peer_has, max, &mut out);
        }
        out
    }

    /// A `piece` message from `peer`. A block nobody asked for (one that arrived after its request
    /// timed out, say) is still accepted: the data is as good, and refusing it wastes it.
    pub fn on_block(&mut self, peer: PeerKey, block: BlockRef) -> Result<BlockOutcome, PickerError> {
        let (index, at) = self.locate(block)?;
        let duplicate = BlockOutcome { status: BlockStatus::Duplicate, cancels: Vec::new() };
        if self.have.get(index) {
            return Ok(duplicate);
        }
        let blocks = self.block_count(index);
        let p = self.in_progress.entry(index).or_insert_with(|| InProgress::new(blocks));
        let mut cancels = Vec::new();
        match std::mem::replace(&mut p.blocks[at], Block::Received(peer)) {
            // The first copy wins the attribution; a second one changes nothing.
            Block::Received(first) => {
                p.blocks[at] = Block::Received(first);
                return Ok(duplicate);
            }
            Block::Open => p.open -= 1,
            Block::Requested(reqs) => cancels.extend(reqs.into_iter().filter(|q| *q != peer).map(|q| (q, block))),
        }
        p.received += 1;
        let status =
            if p.received == p.blocks.len() { BlockStatus::PieceComplete(index) } else { BlockStatus::Partial };
        Ok(BlockOutcome { status, cancels })
    }

    /// The hash check of a piece. A good piece is ours; a bad one goes back to missing with every
    /// block cleared, and each peer that contributed a block has its failure count raised. Returns
    /// those contributors (empty for a good piece). Out-of-range indices are ignored.
    pub fn on_piece_verified(&mut self, index: usize, ok: bool) -> Vec<PeerKey> {
        if index >= self.piece_count {
            return Vec::new();
        }
        let state = self.in_progress.remove(&index);
        if ok {
            self.have.set(index);
            return Vec::new();
        }
        // Also covers a piece we had that failed a recheck: it is missing again either way.
        self.have.clear(index);
        let contributors = state.map(|s| s.contributors()).unwrap_or_default();
        for peer in &contributors {
            *self.hash_failures.entry(*peer).or_insert(0) += 1;
        }
        contributors
    }

    /// Our request to `peer` went unanswered too long: someone else may have the block now.
    pub fn on_request_timeout(&mut self, peer: PeerKey, block: BlockRef) {
        self.release(peer, block);
    }

    /// A `reject_request` (BEP 6) or a choke that dropped the request. Anything not requested
    /// from that peer is ignored.
    pub fn on_rejected(&mut self, peer: PeerKey, block: BlockRef) {
        self.release(peer, block);
    }

    /// Peers that sent blocks of a piece still in progress or awaiting its hash check. Ask before
    /// [`Picker::on_piece_verified`], which forgets them (and returns them for a failed piece).
    pub fn contributors(&self, index: usize) -> Vec<PeerKey> {
        self.in_progress.get(&index).map(InProgress::contributors).unwrap_or_default()
    }

    /// How many failed pieces this peer sent at least one block of. Kept after the peer leaves,
    /// so a driver that keys peers by address sees a reconnecting bad peer's history.
    pub fn hash_failures(&self, peer: PeerKey) -> u32 {
        self.hash_failures.get(&peer).copied().unwrap_or(0)
    }

    pub fn is_complete(&self) -> bool {
        self.have.is_complete()
    }

    /// Verified pieces.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// Every missing block is requested or received: from here on, blocks are requested from
    /// several peers at once so that one slow peer cannot hold up the end of the download.
    pub fn in_endgame(&self) -> bool {
        !self.is_complete()
            && self.in_progress.len() == self.piece_count - self.have.count()
            && self.in_progress.values().all(|p| p.open == 0)
    }

    /// Pieces not verified yet, in ascending order.
    pub fn missing_pieces(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.piece_count).filter(|&i| !self.have.get(i))
    }

    /// How many connected peers have the piece (0 out of range).
    pub fn availability(&self, index: usize) -> u32 {
        self.availability.get(index).copied().unwrap_or(0)
    }

    /// Pieces that currently hold per-block state.
    pub fn pieces_in_progress(&self) -> usize {
        self.in_progress.len()
    }

    fn forget_availability(&mut self, peer: PeerKey) {
        if let Some(old) = self.peers.get(&peer) {
            for i in old.iter_set() {
                self.availability[i] = self.availability[i].saturating_sub(1);
            }
        }
    }

    fn piece_size(&self, index: usize) -> u32 {
        if index + 1 < self.piece_count {
            self.piece_length
        } else {
            // Checked in `new`: the last piece is between 1 and piece_length bytes.
            (self.total_length - (self.piece_count as u64 - 1) * u64::from(self.piece_length)) as u32
        }
    }

    fn block_count(&self, index: usize) -> usize {
        self.piece_size(index).div_ceil(BLOCK) as usize
    }

    fn block_ref(&self, index: usize, at: usize) -> BlockRef {
        let begin = at as u32 * BLOCK;
        BlockRef { index: index as u32, begin, length: BLOCK.min(self.piece_size(index) - begin) }
    }

    /// The piece and block number of a peer-supplied block, if it is exactly one of ours.
    fn locate(&self, block: BlockRef) -> Result<(usize, usize), PickerError> {
        let index = block.index as usize;
        if index >= self.piece_count {
            return Err(PickerError::PieceOutOfRange { index, piece_count: self.piece_count });
        }
        let at = (block.begin / BLOCK) as usize;
        if !block.begin.is_multiple_of(BLOCK) || at >= self.block_count(index) || self.block_ref(index, at) != block {
            return Err(PickerError::BadBlock { block });
        }
        Ok((index, at))
    }

    fn release(&mut self, peer: PeerKey, block: BlockRef) {
        let Ok((index, at)) = self.locate(block) else { return };
        let Some(p) = self.in_progress.get_mut(&index) else { return };
        if let Block::Requested(reqs) = &mut p.blocks[at] {
            reqs.retain(|q| *q != peer);
            if reqs.is_empty() {
                p.blocks[at] = Block::Open;
                p.open += 1;
            }
        }
        if p.is_untouched() {
            self.in_progress.remove(&index);
        }
    }

    /// Random among the pieces the peer has while we are starting out, rarest after that; ties
    /// broken at random so that peers picking at the same time spread over different pieces.
    fn choose_new_piece(&mut self, peer_has: &Bitfield) -> Option<usize> {
        let random = self.have.count() < self.config.random_first;
        let mut best = None;
        let mut best_availability = u32::MAX;
        let mut ties = 0u32;
        // Both ascend, so pieces in progress are skipped by walking their keys alongside, not
        // by a map lookup per piece: this runs once per piece started, over every piece the
        // peer has, and the lookups made it the picker's largest cost on a big torrent.
        let mut busy = self.in_progress.keys().copied().peekable();
        for index in peer_has.iter_set() {
            while busy.next_if(|&b| b < index).is_some() {}
            if index >= self.piece_count || self.have.get(index) || busy.peek() == Some(&index) {
                continue;
            }
            let availability = if random { 0 } else { self.availability[index] };
            if availability < best_availability {
                best = Some(index);
                best_availability = availability;
                ties = 1;
            } else if availability == best_availability {
                // Reservoir sampling: each of the `ties` equals ends up chosen with equal odds.
                ties += 1;
                if self.rng.random_range(0..ties) == 0 {
                    best = Some(index);
                }
            }
        }
        best
    }

    fn take_open(&mut self, index: usize, peer: PeerKey, max: usize, out: &mut Vec<BlockRef>) {
        let Some(p) = self.in_progress.get_mut(&index) else { return };
        let mut taken = Vec::new();
        for (at, b) in p.blocks.iter_mut().enumerate() {
            if out.len() + taken.len() == max {
                break;
            }
            if *b == Block::Open {
                *b = Block::Requested(vec![peer]);
                p.open -= 1;
                taken.push(at);
            }
        }
        out.extend(taken.into_iter().map(|at| self.block_ref(index, at)));
    }

    /// Endgame: blocks already requested from others, those with the fewest requesters first so
    /// that duplicates spread over the remaining blocks before any block gets a third peer.
    fn take_duplicates(&mut self, peer: PeerKey, peer_has: &Bitfield, max: usize, out: &mut Vec<BlockRef>) {
        let limit = 1 + self.config.endgame_duplicates;
        let mut candidates = Vec::new();
        for (&index, p) in &self.in_progress {
            if !peer_has.get(index) {
                continue;
            }
            for (at, b) in p.blocks.iter().enumerate() {
                if let Block::Requested(reqs) = b {
                    if reqs.len() < limit && !reqs.contains(&peer) {
                        candidates.push((reqs.len(), index, at));
                    }
                }
            }
        }
        candidates.sort_unstable();
        for (_, index, at) in candidates.into_iter().take(max - out.len()) {
            if let Some(Block::Requested(reqs)) = self.in_progress.get_mut(&index).map(|p| &mut p.blocks[at]) {
                reqs.push(peer);
            }
            out.push(self.block_ref(index, at));
        }
    }
}

#[cfg(test)]
mod tests;
