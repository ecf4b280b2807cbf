//! A node's disk in the harness: the torrent's bytes in memory, answering the core's `Write`,
//! `Read` and `Hash` actions as the real disk thread (`session::disk`) does — in the order
//! asked, a hash after the writes of its piece, the SHA-1 computed over the stored bytes (so a
//! wrong block really fails its piece). Each operation completes a set delay after it was
//! asked for, and never before the one asked for earlier (a FIFO, like the real queue).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

use crate::swarm::bitfield::Bitfield;
use crate::swarm::session::{DiskFault, DiskOp, Input};
use crate::torrent::Metainfo;
use crate::wire::message::BlockRef;

pub(super) struct MemDisk {
    meta: Arc<Metainfo>,
    data: Vec<u8>,
    delay: Duration,
    /// When the last queued operation completes: later ones complete after it.
    last: Option<Instant>,
    /// A write failed: later writes and hashes are skipped, as the real disk thread does.
    faulted: bool,
}

impl MemDisk {
    /// An empty disk (all zeros) for the torrent.
    pub fn empty(meta: Arc<Metainfo>, delay: Duration) -> MemDisk {
        let len = usize::try_from(meta.info.total_length).unwrap_or(0);
        MemDisk { meta, data: vec![0; len], delay, last: None, faulted: false }
    }

    /// A disk holding `content`, with every piece that hashes right marked as had.
    pub fn with_content(meta: Arc<Metainfo>, delay: Duration, content: Vec<u8>) -> (MemDisk, Bitfield) {
        let mut disk = MemDisk { meta, data: content, delay, last: None, faulted: false };
        let pieces = disk.meta.info.piece_count();
        let mut have = Bitfield::new(pieces);
        for i in 0..pieces {
            if disk.piece_ok(i) {
                have.set(i);
            }
        }
        disk.data.resize(usize::try_from(disk.meta.info.total_length).unwrap_or(0), 0);
        (disk, have)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// When an operation asked for at `now` completes.
    pub fn due(&mut self, now: Instant) -> Instant {
        let at = self.last.map_or(now + self.delay, |l| l.max(now + self.delay));
        self.last = Some(at);
        at
    }

    /// Carries out an operation; what to tell the core, if anything.
    pub fn run(&mut self, op: DiskOp) -> Option<Input> {
        match op {
            DiskOp::Write { block, data } => {
                if self.faulted {
                    return None;
                }
                let Some(range) = self.range(block) else {
                    self.faulted = true;
                    let fault =
                        DiskFault { what: "storage".into(), kind: None, reason: format!("{block:?} out of range") };
                    return Some(Input::WriteFailed { block, fault });
                };
                // The range was checked against the block's own length; a short or long
                // payload writes what fits.
                let n = data.len().min(range.len());
                self.data[range.start..range.start + n].copy_from_slice(&data[..n]);
                None
            }
            DiskOp::Read { key, block } => {
                let result =
                    self.range(block).map(|r| self.data[r].to_vec()).ok_or_else(|| format!("{block:?} out of range"));
                Some(Input::BlockRead { key, block, result })
            }
            DiskOp::Hash { index, blocks, always } => {
                if self.faulted {
                    return None;
                }
                let ok = self.piece_ok(index as usize);
                let blocks = if !ok || always {
                    blocks
                        .into_iter()
                        .filter_map(|b| Some((b, Sha1::digest(&self.data[self.range(b)?]).into())))
                        .collect()
                } else {
                    Vec::new()
                };
                Some(Input::PieceHashed { index, ok, blocks })
            }
        }
    }

    /// The bytes of a block within the torrent, `None` outside its piece.
    fn range(&self, b: BlockRef) -> Option<std::ops::Range<usize>> {
        let index = b.index as usize;
        let info = &self.meta.info;
        if index >= info.piece_count() || u64::from(b.begin) + u64::from(b.length) > info.piece_len(index) {
            return None;
        }
        let start = index as u64 * info.piece_length + u64::from(b.begin);
        let start = usize::try_from(start).ok()?;
        let end = start.checked_add(b.length as usize)?;
        (end <= self.data.len()).then_some(start..end)
    }

    fn piece_ok(&self, index: usize) -> bool {
        let info = &self.meta.info;
        let (Some(expected), Ok(start)) = (info.pieces.get(index), usize::try_from(index as u64 * info.piece_length))
        else {
            return false;
        };
        let end = start + info.piece_len(index) as usize;
        end <= self.data.len() && Sha1::digest(&self.data[start..end]).as_slice() == expected
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::harness::scenario::make_torrent;
    use crate::swarm::PeerKey;

    fn block(index: u32, begin: u32) -> BlockRef {
        BlockRef { index, begin, length: 16384 }
    }

    #[test]
    fn a_piece_passes_with_the_right_bytes_and_fails_with_a_wrong_block() {
        let content: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
        let meta = Arc::new(make_torrent("x", &content, 32 * 1024).expect("torrent"));
        let mut disk = MemDisk::empty(meta, Duration::ZERO);
        for b in [block(0, 0), block(0, 16384)] {
            let data = content[b.begin as usize..][..16384].to_vec();
            assert!(disk.run(DiskOp::Write { block: b, data }).is_none());
        }
        let hashed = disk.run(DiskOp::Hash { index: 0, blocks: vec![block(0, 0)], always: false });
        assert!(matches!(hashed, Some(Input::PieceHashed { index: 0, ok: true, ref blocks }) if blocks.is_empty()));
        // Piece 1 gets one wrong block: it fails, and the block hashes come back as evidence.
        let good = content[32768..49152].to_vec();
        disk.run(DiskOp::Write { block: block(1, 0), data: good });
        disk.run(DiskOp::Write { block: block(1, 16384), data: vec![0; 16384] });
        let hashed = disk.run(DiskOp::Hash { index: 1, blocks: vec![block(1, 0), block(1, 16384)], always: false });
        assert!(matches!(hashed, Some(Input::PieceHashed { index: 1, ok: false, ref blocks }) if blocks.len() == 2));
    }

    #[test]
    fn reads_out_of_range_are_errors_and_operations_complete_in_order() {
        let content = vec![5u8; 32 * 1024];
        let meta = Arc::new(make_torrent("x", &content, 32 * 1024).expect("torrent"));
        let (mut disk, have) = MemDisk::with_content(meta, Duration::from_millis(3), content);
        assert_eq!(have.count(), 1);
        let read = disk.run(DiskOp::Read { key: PeerKey(1), block: block(0, 0) });
        assert!(matches!(read, Some(Input::BlockRead { result: Ok(ref d), .. }) if d.len() == 16384));
        let read = disk.run(DiskOp::Read { key: PeerKey(1), block: block(1, 0) });
        assert!(matches!(read, Some(Input::BlockRead { result: Err(_), .. })));
        let t0 = super::super::test_epoch();
        let first = disk.due(t0 + Duration::from_millis(10));
        let second = disk.due(t0);
        assert_eq!(first, t0 + Duration::from_millis(13));
        assert_eq!(second, first, "never before an operation asked for earlier");
    }
}
