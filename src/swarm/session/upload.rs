//! The upload side of the core (BEP 3 `request`/`piece`): which requests are valid, and
//! reading what we owe a peer no further ahead of its socket than `limits::WRITE_HIGH_WATER`,
//! so a peer that asks for everything and reads nothing costs us a megabyte, not the torrent.
//! When the choker gives the unchoked peers weights (PropShare, BitTyrant), reads are instead
//! ordered across all peers by those weights under one small budget ([`super::fair`]).

use std::time::Instant;

use super::fair::{stall_after, upload_budget};
use super::limits::WRITE_HIGH_WATER;
use super::{Action, CloseReason, DiskOp, TorrentCore};
use crate::swarm::PeerKey;
use crate::wire::message::BlockRef;

/// The largest block we serve; clients ask for 16 KiB.
pub(super) const MAX_REQUEST_LEN: u32 = 128 * 1024;

impl TorrentCore {
    /// A request the peer state queued: valid, and for a piece we announced?
    pub(super) fn check_request(&self, block: BlockRef) -> Result<(), CloseReason> {
        let (Some(meta), Some(picker)) = (&self.meta, &self.picker) else {
            return Err(CloseReason::Protocol("request before we have metadata".into()));
        };
        let index = block.index as usize;
        let valid = index < meta.info.piece_count()
            && block.length > 0
            && block.length <= MAX_REQUEST_LEN
            && u64::from(block.begin) + u64::from(block.length) <= meta.info.piece_len(index);
        if !valid {
            return Err(CloseReason::Protocol(format!("bad request {block:?}")));
        }
        if !picker.have().get(index) {
            // We only announce verified pieces, so this is no race with our own `have`.
            return Err(CloseReason::Protocol(format!("request for piece {index} we do not have")));
        }
        Ok(())
    }

    /// Reads owed blocks while what is queued for the peer (sent and being read) is under
    /// the high-water mark; in a weighted round, reads for whichever peers are due instead.
    pub(super) fn serve_owed(&mut self, now: Instant, key: PeerKey) {
        // What the state machine holds counts too (a block just read, say).
        self.flush(key);
        if self.choker.is_weighted() {
            return self.serve_weighted(now);
        }
        let Some(p) = self.peers.get_mut(&key) else { return };
        while p.queued() + (p.reading as usize) < WRITE_HIGH_WATER {
            let Some(block) = p.state.next_owed() else { break };
            p.reading += u64::from(block.length);
            self.actions.push_back(Action::Disk(DiskOp::Read { key, block }));
        }
    }

    /// Reads owed blocks in stride order (see [`super::fair`]) while the bytes queued and being
    /// read for all peers whose sockets are moving stay under the budget. A stalled peer
    /// (nothing taken for [`stall_after`]) is left out of the budget and gets no more until
    /// its socket takes something, so a peer that never reads cannot hold up the others.
    fn serve_weighted(&mut self, now: Instant) {
        let budget = upload_budget(self.upload_rate);
        let stall = stall_after(budget, self.upload_rate);
        let stalled = |p: &super::Peer| p.held() > 0 && now.saturating_duration_since(p.moved_at) >= stall;
        let mut in_flight: usize = self.peers.values().filter(|p| !stalled(p)).map(super::Peer::held).sum();
        // Each pass reads one block or stops, and every block read was owed: bounded.
        while in_flight < budget {
            let due = self.peers.iter().filter(|(k, p)| {
                p.state.has_owed() && !stalled(p) && p.held() < WRITE_HIGH_WATER && self.choker.weight(**k) > 0
            });
            let Some(key) = self.stride.pick(due.map(|(k, _)| *k)) else { break };
            let weight = self.choker.weight(key);
            let Some(p) = self.peers.get_mut(&key) else { break };
            let Some(block) = p.state.next_owed() else { break };
            if p.held() == 0 {
                p.moved_at = now;
            }
            p.reading += u64::from(block.length);
            in_flight += block.length as usize;
            self.stride.charge(key, weight, u64::from(block.length));
            self.actions.push_back(Action::Disk(DiskOp::Read { key, block }));
        }
    }

    /// A block read for a peer: sent, unless the peer left meanwhile.
    pub(super) fn on_block_read(
        &mut self,
        now: Instant,
        key: PeerKey,
        block: BlockRef,
        result: Result<Vec<u8>, String>,
    ) {
        let Some(p) = self.peers.get_mut(&key) else { return };
        p.reading = p.reading.saturating_sub(u64::from(block.length));
        let data = match result {
            Ok(data) => data,
            Err(e) => return self.close(key, CloseReason::Protocol(e)),
        };
        let len = data.len() as u64;
        self.counters.uploaded += len;
        self.choker.on_uploaded(key, now, len);
        self.choker.on_gave_piece(key, block.index);
        p.state.send_block(now, block, data);
        self.pump(now, key);
    }
}
