//! The download side of the core (BEP 3 `request`/`piece`/`cancel`): filling each peer's
//! request pipeline from the picker, taking blocks in (written by the driver, hashed once a
//! piece is whole), and acting on hash results. A piece that failed is fetched again from one
//! peer at a time (parole), so a second failure names the liar; smart ban compares the blocks
//! of a failed piece with the good ones once it passes; a peer proven to have sent bad data
//! and involved in `ban_after_failures` failed pieces is banned. A disk error stops the
//! torrent without losing what was verified.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::limits::MAX_OFFENDERS;
use super::messages::protocol;
use super::{Action, CloseReason, DiskFault, DiskOp, TorrentCore, TorrentEvent};
use crate::swarm::{BlockStatus, PeerKey};
use crate::wire::message::BlockRef;

/// How long one peer may hold a failed piece for itself (see `TorrentCore::parole`).
pub(super) const PAROLE_TIME: Duration = Duration::from_secs(5);

impl TorrentCore {
    /// Asks the peer for as many blocks as its pipeline has room for.
    pub(super) fn request_blocks(&mut self, now: Instant, key: PeerKey) {
        let (Some(p), Some(picker)) = (self.peers.get_mut(&key), self.picker.as_mut()) else { return };
        let room = p.state.request_room();
        let Some(pieces) = p.pieces.as_ref().filter(|_| room > 0) else { return };
        let mut picked = picker.pick(key, pieces.theirs(), room);
        // A piece that failed its hash is fetched again from one peer only, so that a second
        // failure names the liar. An owner that has not finished it within PAROLE_TIME loses
        // it, so a stuck owner cannot stall the download.
        picked.retain(|b| match self.parole.get_mut(&b.index) {
            None => true,
            Some(owner)
                if owner.is_none_or(|(o, since)| o == key || now.saturating_duration_since(since) >= PAROLE_TIME) =>
            {
                if owner.is_none_or(|(o, _)| o != key) {
                    *owner = Some((key, now));
                }
                true
            }
            Some(_) => {
                picker.on_rejected(key, *b);
                false
            }
        });
        for b in picked {
            p.state.request(now, b);
        }
    }

    /// A block we asked for arrived: counted, handed to the disk, and the piece hashed once
    /// whole.
    pub(super) fn on_block(
        &mut self,
        now: Instant,
        key: PeerKey,
        block: BlockRef,
        data: Vec<u8>,
    ) -> Result<(), CloseReason> {
        self.counters.received += data.len() as u64;
        self.choker.on_downloaded(key, now, data.len() as u64);
        if self.fault.is_some() {
            // The torrent stopped on a disk fault: nothing more is written.
            return Err(CloseReason::Closed);
        }
        let Some(picker) = self.picker.as_mut() else { return Ok(()) };
        let outcome = picker.on_block(key, block).map_err(protocol)?;
        if outcome.status == BlockStatus::Duplicate {
            // Never written: a second copy (endgame, a late answer) must not overwrite a block
            // already received, least of all one of a piece that already passed its check.
            return Ok(());
        }
        self.actions.push_back(Action::Disk(DiskOp::Write { block, data }));
        if let Some(ip) = self.peers.get(&key).map(|p| p.addr.ip()) {
            self.smart_ban.on_block(block, ip);
        }
        for (other, b) in outcome.cancels {
            // The cancel may be stale: the block could have failed its piece's check and been
            // handed to that peer again since. Telling the picker too keeps both in step; a
            // request the picker counts but the peer state forgot would never be re-sent nor
            // time out, and the download would stall on it.
            let Some(o) = self.peers.get_mut(&other) else { continue };
            if o.state.is_outstanding(&b) {
                o.state.cancel(now, b);
                if let Some(picker) = self.picker.as_mut() {
                    picker.on_rejected(other, b);
                }
                self.flush(other);
            }
        }
        if let BlockStatus::PieceComplete(index) = outcome.status {
            self.hash_later(index as u32);
        }
        Ok(())
    }

    /// Every block of `index` was handed to the disk: hash it there (after the writes).
    fn hash_later(&mut self, index: u32) {
        if !self.verifying.insert(index) {
            return;
        }
        let blocks = self.smart_ban.blocks_of(index);
        let always = self.smart_ban.has_suspects(index);
        self.actions.push_back(Action::Disk(DiskOp::Hash { index, blocks, always }));
    }

    pub(super) fn on_write_failed(&mut self, block: BlockRef, fault: DiskFault) {
        if self.fault.is_some() {
            return;
        }
        tracing::debug!(%fault, ?block, "disk fault: stopping the torrent");
        self.fault = Some(fault.clone());
        self.close_all();
        self.emit(TorrentEvent::Failed(fault));
    }

    /// Acts on a hash check: the picker, parole, smart ban and strikes, our `have`s.
    pub(super) fn on_piece_hashed(&mut self, now: Instant, index: u32, ok: bool, hashes: &[(BlockRef, [u8; 20])]) {
        if !self.verifying.remove(&index) || self.fault.is_some() {
            // After a fault the hash may have run on a half-written piece: it proves nothing.
            return;
        }
        let Some(picker) = self.picker.as_mut() else { return };
        picker.on_piece_verified(index as usize, ok);
        let now_complete = picker.is_complete();
        let block_hash = |b: BlockRef| hashes.iter().find(|(x, _)| *x == b).map(|(_, h)| *h);
        let sources = self.smart_ban.take_sources(index);
        let senders: HashSet<IpAddr> = sources.iter().map(|(_, ip)| *ip).collect();
        let involved: Vec<IpAddr> = if ok { Vec::new() } else { senders.iter().copied().collect() };
        let guilty = if ok {
            self.smart_ban.on_verified(index, block_hash)
        } else if senders.len() == 1 && self.parole.contains_key(&index) {
            // Fetched again from this peer alone, and wrong again.
            senders.into_iter().collect()
        } else {
            // Hashed before the picker hands the blocks out again and new data overwrites the
            // evidence.
            let evidence = sources.iter().filter_map(|(b, ip)| Some((*b, *ip, block_hash(*b)?))).collect();
            self.smart_ban.record_failure(index, evidence);
            Vec::new()
        };
        if ok {
            self.parole.remove(&index);
        } else {
            self.parole.insert(index, None);
        }
        let banned = self.strike(guilty, involved);
        for ip in &banned {
            tracing::warn!(%ip, "banning a peer that sent blocks which failed the hash check");
            self.emit(TorrentEvent::PeerBanned(*ip));
        }
        if !ok {
            self.counters.hash_failures += 1;
            self.emit(TorrentEvent::PieceFailed(index));
            // Its blocks are open again: whoever may fetch them asks now, not at its next tick.
            self.pump_all(now);
            return;
        }
        self.counters.fetched_pieces += 1;
        if let Some(m) = self.meta.as_ref() {
            self.verified_bytes += m.info.piece_len(index as usize);
        }
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            if let Some(p) = self.peers.get_mut(&key) {
                p.state.send(now, crate::wire::message::Message::Have(index));
                if let Some(pieces) = p.pieces.as_mut() {
                    pieces.our_have(index as usize);
                }
            }
            self.update_interest(now, key);
            self.flush(key);
        }
        self.emit(TorrentEvent::PieceVerified(index));
        if now_complete && !self.complete {
            self.complete = true;
            self.emit(TorrentEvent::Complete);
        }
    }

    /// Bookkeeping of bad data: `involved` sent blocks of a piece that just failed, `guilty`
    /// were proven to have sent a wrong block. A peer is banned once it is proven guilty and
    /// took part in `ban_after_failures` failed pieces: repeated failures, and evidence that
    /// they were its fault rather than a neighbour's. Returns the addresses banned now.
    pub(super) fn strike(&mut self, guilty: Vec<IpAddr>, involved: Vec<IpAddr>) -> Vec<IpAddr> {
        for ip in &involved {
            if self.strikes.len() >= MAX_OFFENDERS && !self.strikes.contains_key(ip) {
                // Full: one-off strikes of peers that are gone and proved nothing go first.
                let connected: HashSet<IpAddr> = self.peers.values().map(|p| p.addr.ip()).collect();
                let proven = &self.proven;
                self.strikes.retain(|ip, _| proven.contains(ip) || connected.contains(ip));
                if self.strikes.len() >= MAX_OFFENDERS {
                    continue;
                }
            }
            *self.strikes.entry(*ip).or_insert(0) += 1;
        }
        for ip in guilty {
            if self.proven.len() < MAX_OFFENDERS {
                self.proven.insert(ip);
            }
        }
        let mut banned: Vec<IpAddr> = self
            .proven
            .iter()
            .filter(|ip| self.strikes.get(ip).copied().unwrap_or(0) >= self.config.ban_after_failures)
            .filter(|ip| !self.banned.contains(ip))
            .copied()
            .collect();
        banned.sort();
        // Past the cap they are still dropped now, only not refused if they come back.
        let room = MAX_OFFENDERS.saturating_sub(self.banned.len());
        self.banned.extend(banned.iter().take(room).copied());
        self.roster += 1;
        let gone: Vec<PeerKey> =
            self.peers.iter().filter(|(_, p)| banned.contains(&p.addr.ip())).map(|(k, _)| *k).collect();
        for key in gone {
            self.close(key, CloseReason::Closed);
        }
        banned
    }
}
