//! Finding the peer that sent bad data, the way libtorrent's smart-ban does. A piece that
//! fails its hash check may have been assembled from several peers' blocks, and blaming them
//! all would ban honest peers next to a liar. So the hash of every block of a failed piece is
//! kept with the address that sent it; when the piece later passes, each kept block is
//! compared with the good one, and only the senders of blocks that differ are guilty.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::wire::message::BlockRef;

/// Block hashes of failed pieces kept at most, so a torrent that keeps failing cannot make
/// this grow without bound (about 20 MB of evidence at most).
const MAX_EVIDENCE: usize = 500_000;

#[derive(Debug, Default)]
pub struct SmartBan {
    /// Who delivered each block of the pieces being downloaded.
    sources: HashMap<u32, Vec<(BlockRef, IpAddr)>>,
    /// Blocks of failed pieces: who sent them and the SHA-1 of what they sent.
    suspects: HashMap<u32, Vec<(BlockRef, IpAddr, [u8; 20])>>,
    evidence: usize,
}

impl SmartBan {
    pub fn on_block(&mut self, block: BlockRef, from: IpAddr) {
        let blocks = self.sources.entry(block.index).or_default();
        // Endgame may deliver a block twice; the data on disk is the last write.
        blocks.retain(|(b, _)| *b != block);
        blocks.push((block, from));
    }

    /// The senders of the blocks of `piece`, forgotten here: the piece was just checked.
    pub fn take_sources(&mut self, piece: u32) -> Vec<(BlockRef, IpAddr)> {
        self.sources.remove(&piece).unwrap_or_default()
    }

    /// The blocks of `piece` written since it was last checked (to hash one by one if it
    /// fails, or to compare with kept evidence).
    pub fn blocks_of(&self, piece: u32) -> Vec<BlockRef> {
        self.sources.get(&piece).map(|v| v.iter().map(|(b, _)| *b).collect()).unwrap_or_default()
    }

    /// Whether blocks of an earlier failure of `piece` wait to be compared with good ones.
    pub fn has_suspects(&self, piece: u32) -> bool {
        self.suspects.contains_key(&piece)
    }

    /// Keeps the hashes of the blocks of a piece that failed its check.
    pub fn record_failure(&mut self, piece: u32, blocks: Vec<(BlockRef, IpAddr, [u8; 20])>) {
        if self.evidence + blocks.len() > MAX_EVIDENCE {
            return;
        }
        self.evidence += blocks.len();
        self.suspects.entry(piece).or_default().extend(blocks);
    }

    /// The piece passed: `good` gives the hash of each of its blocks as now on disk. Returns
    /// the addresses that had sent a different block for it, each once.
    pub fn on_verified(&mut self, piece: u32, good: impl Fn(BlockRef) -> Option<[u8; 20]>) -> Vec<IpAddr> {
        let Some(blocks) = self.suspects.remove(&piece) else { return Vec::new() };
        self.evidence -= blocks.len();
        let mut guilty = Vec::new();
        let mut seen = HashSet::new();
        for (block, ip, hash) in blocks {
            if good(block).is_some_and(|g| g != hash) && seen.insert(ip) {
                guilty.push(ip);
            }
        }
        guilty
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(index: u32, begin: u32) -> BlockRef {
        BlockRef { index, begin, length: 16384 }
    }

    #[test]
    fn only_the_sender_of_the_differing_block_is_guilty() {
        let honest: IpAddr = "127.0.0.2".parse().unwrap();
        let liar: IpAddr = "127.0.0.3".parse().unwrap();
        let mut sb = SmartBan::default();
        sb.on_block(b(4, 0), honest);
        sb.on_block(b(4, 16384), liar);
        let sources = sb.take_sources(4);
        assert_eq!(sources.len(), 2);
        // What was on disk when the piece failed: the liar's block hashed to [9; 20].
        sb.record_failure(4, vec![(b(4, 0), honest, [1; 20]), (b(4, 16384), liar, [9; 20])]);
        // Later the piece passes; the good blocks hash to [1; 20] and [2; 20].
        let good = |blk: BlockRef| Some(if blk.begin == 0 { [1; 20] } else { [2; 20] });
        assert_eq!(sb.on_verified(4, good), vec![liar]);
        assert!(sb.on_verified(4, good).is_empty(), "evidence is used once");
    }

    #[test]
    fn a_redelivered_block_counts_its_last_sender() {
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let c: IpAddr = "127.0.0.3".parse().unwrap();
        let mut sb = SmartBan::default();
        sb.on_block(b(1, 0), a);
        sb.on_block(b(1, 0), c);
        assert_eq!(sb.take_sources(1), vec![(b(1, 0), c)]);
        assert!(sb.take_sources(1).is_empty());
    }

    #[test]
    fn evidence_is_bounded() {
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let mut sb = SmartBan::default();
        sb.record_failure(0, vec![(b(0, 0), a, [0; 20]); MAX_EVIDENCE]);
        sb.record_failure(1, vec![(b(1, 0), a, [0; 20])]);
        assert_eq!(sb.evidence, MAX_EVIDENCE);
        assert!(sb.on_verified(1, |_| Some([1; 20])).is_empty(), "piece 1's evidence was not kept");
    }
}
